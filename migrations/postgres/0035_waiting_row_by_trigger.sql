-- Nothing to change here: on PostgreSQL the message's INSERT already writes its waiting row
-- (a data-modifying WITH). SQLite does it with a trigger from this version on.
SELECT 1;
