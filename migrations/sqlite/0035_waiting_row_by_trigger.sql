-- A customer message stored without its answer gets its waiting row from its own INSERT, not
-- from a second statement: every statement of a step is a round trip to SQLite's worker
-- thread, and the single writer is what bounds the messages stored per second.
CREATE TRIGGER messages_waiting_row AFTER INSERT ON messages
WHEN NEW.sender = 'customer' AND NEW.classification IS NULL
BEGIN
    INSERT INTO waiting_messages (message_seq, contact_id, channel, created_at)
    VALUES (NEW.seq, NEW.contact_id, NEW.channel, NEW.created_at);
END;
