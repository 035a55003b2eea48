-- What happened to each reply: the channel's id for it once sent, when the customer saw it
-- (web chat), and since when the current retry window runs (a manual retry starts a new one).
-- Why a contact is unreachable, in plain words. Conversations with replies that failed for good
-- are found through their own index.
ALTER TABLE messages ADD COLUMN sent_id TEXT;
ALTER TABLE messages ADD COLUMN seen_at BIGINT;
ALTER TABLE messages ADD COLUMN retry_from BIGINT;
ALTER TABLE contacts ADD COLUMN unreachable_reason TEXT;
CREATE INDEX messages_undelivered ON messages (conversation_id) WHERE gave_up_at IS NOT NULL;
