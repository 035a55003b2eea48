-- The customer messages stored and acknowledged but not answered yet, one narrow row each:
-- added with the message, removed by the step that answers it. Marking a message answered no
-- longer changes a column that an index of `messages` holds or filters on, so on PostgreSQL
-- that update stays on the row's page (a heap-only update) instead of adding an entry to every
-- index of the table; and a message row is otherwise written once.
CREATE TABLE waiting_messages (
    message_seq BIGINT PRIMARY KEY,
    contact_id  TEXT NOT NULL,
    channel     TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
-- One contact's messages are answered in order: the earliest waiting one first.
CREATE INDEX waiting_messages_by_contact ON waiting_messages (contact_id, message_seq);
-- The reports count the messages of a period still waiting for their answer.
CREATE INDEX waiting_messages_by_time ON waiting_messages (created_at, channel);
INSERT INTO waiting_messages (message_seq, contact_id, channel, created_at)
    SELECT seq, contact_id, channel, created_at FROM messages WHERE sender = 'customer' AND classification IS NULL;
DROP INDEX messages_unanswered;
DROP INDEX messages_waiting_by_time;
-- The reports' indexes of customer messages keep the time and conversation only; the intent,
-- confidence and answer are read from the row (an index holding them would take an entry per
-- answered message).
DROP INDEX messages_by_time;
CREATE INDEX messages_by_time ON messages (created_at) WHERE sender = 'customer';
DROP INDEX messages_customer_by_conversation;
CREATE INDEX messages_customer_by_conversation ON messages (conversation_id, created_at) WHERE sender = 'customer';
-- Room on each new page for the answered version of its customer messages.
ALTER TABLE messages SET (fillfactor = 75);
