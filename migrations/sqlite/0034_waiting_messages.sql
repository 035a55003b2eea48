-- The customer messages stored and acknowledged but not answered yet, one narrow row each:
-- added with the message, removed by the step that answers it (on PostgreSQL this keeps the
-- answer's update of the message off the indexes of `messages`; both backends keep one schema).
CREATE TABLE waiting_messages (
    message_seq INTEGER PRIMARY KEY,
    contact_id  TEXT NOT NULL,
    channel     TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
-- One contact's messages are answered in order: the earliest waiting one first.
CREATE INDEX waiting_messages_by_contact ON waiting_messages (contact_id, message_seq);
-- The reports count the messages of a period still waiting for their answer.
CREATE INDEX waiting_messages_by_time ON waiting_messages (created_at, channel);
INSERT INTO waiting_messages (message_seq, contact_id, channel, created_at)
    SELECT seq, contact_id, channel, created_at FROM messages WHERE sender = 'customer' AND classification IS NULL;
DROP INDEX messages_unanswered;
DROP INDEX messages_waiting_by_time;
