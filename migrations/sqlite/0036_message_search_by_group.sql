-- The full-text index is filled once per write group (the writer's last statement before its
-- commit) instead of by a trigger in every message's INSERT: FTS5 writes out its pending terms
-- at each statement's savepoint, so under load every message wrote, and later merged, an index
-- segment of its own. `messages_fts_through` holds the last seq indexed; the triggers below
-- touch only indexed rows (a message deleted or edited before its group's indexing needs none).
DROP TRIGGER messages_fts_insert;
DROP TRIGGER messages_fts_delete;
DROP TRIGGER messages_fts_update;
CREATE TABLE messages_fts_through (seq INTEGER NOT NULL);
INSERT INTO messages_fts_through (seq) SELECT COALESCE(MAX(seq), 0) FROM messages;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages
WHEN OLD.seq <= (SELECT seq FROM messages_fts_through)
BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, body) VALUES ('delete', OLD.seq, OLD.body);
END;
CREATE TRIGGER messages_fts_update AFTER UPDATE OF body ON messages
WHEN OLD.seq <= (SELECT seq FROM messages_fts_through)
BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, body) VALUES ('delete', OLD.seq, OLD.body);
    INSERT INTO messages_fts (rowid, body) VALUES (NEW.seq, NEW.body);
END;
