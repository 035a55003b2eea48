-- Nothing to change here: on PostgreSQL the message's words are a generated column with its
-- own index (migration 0007). SQLite fills its full-text index once per write group from
-- this version on.
SELECT 1;
