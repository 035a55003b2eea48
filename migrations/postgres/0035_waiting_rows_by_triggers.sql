-- Nothing to change here: on PostgreSQL the message's INSERT already writes its waiting row and
-- the answer's statement takes it (data-modifying WITH). SQLite does both with triggers from
-- this version on.
SELECT 1;
