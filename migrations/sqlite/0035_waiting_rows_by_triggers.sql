-- A customer message's waiting row comes and goes with the message's own statements, not with
-- statements of their own: every statement of a step is a round trip to SQLite's worker
-- thread, and the single writer is what bounds the messages stored per second.
-- Stored without its answer: it waits.
CREATE TRIGGER messages_waiting_row AFTER INSERT ON messages
WHEN NEW.sender = 'customer' AND NEW.classification IS NULL
BEGIN
    INSERT INTO waiting_messages (message_seq, contact_id, channel, created_at)
    VALUES (NEW.seq, NEW.contact_id, NEW.channel, NEW.created_at);
END;
-- Its first classification is its answer: it no longer waits.
CREATE TRIGGER messages_answered AFTER UPDATE OF classification ON messages
WHEN OLD.classification IS NULL AND NEW.classification IS NOT NULL
BEGIN
    DELETE FROM waiting_messages WHERE message_seq = NEW.seq;
END;
