-- What happened to each conversation, as typed events written in the same transaction as the
-- step that made it happen: the reports read these instead of prose in the audit log.
-- `wait_ms`: for `first_reply`, how long the customer waited for a person (since the
-- escalation, or since the start); for `resolved`, how long the conversation had been open.
CREATE TABLE conversation_events (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL REFERENCES conversations (id) DEFERRABLE INITIALLY DEFERRED,
    kind            TEXT NOT NULL CHECK (kind IN ('created', 'escalated', 'assigned', 'first_reply',
                        'resolved', 'reopened', 'closed')),
    at              INTEGER NOT NULL,
    channel         TEXT NOT NULL CHECK (channel IN ('webchat', 'telegram', 'discord', 'email')),
    agent_id        TEXT REFERENCES agents (id) DEFERRABLE INITIALLY DEFERRED,
    category        TEXT CHECK (category IN ('billing', 'technical_support', 'account',
                        'general_inquiry', 'complaint', 'feature_request')),
    priority        TEXT CHECK (priority IN ('urgent', 'high', 'medium', 'low')),
    reason          TEXT,
    wait_ms         INTEGER
);
CREATE INDEX conversation_events_by_kind ON conversation_events (kind, at);
CREATE INDEX conversation_events_by_conversation ON conversation_events (conversation_id, at);
-- A conversation's first reply by a person is recorded once.
CREATE UNIQUE INDEX conversation_events_first_reply ON conversation_events (conversation_id) WHERE kind = 'first_reply';

-- The history of conversations stored before it was recorded, as far as it can be told.
INSERT INTO conversation_events (conversation_id, kind, at, channel, category, priority)
    SELECT id, 'created', created_at, channel, category, priority FROM conversations;
INSERT INTO conversation_events (conversation_id, kind, at, channel, category, priority, reason)
    SELECT e.conversation_id, 'escalated', e.at, c.channel, e.category, e.priority, json_extract(e.reason, '$.kind')
    FROM escalations e JOIN conversations c ON c.id = e.conversation_id;
INSERT INTO conversation_events (conversation_id, kind, at, channel, agent_id, category, priority, wait_ms)
    SELECT c.id, 'first_reply', r.at, c.channel, r.agent_id, c.category, c.priority,
           r.at - COALESCE((SELECT MIN(e.at) FROM escalations e WHERE e.conversation_id = c.id AND e.at <= r.at), c.created_at)
    FROM conversations c
    JOIN (SELECT conversation_id, MIN(created_at) AS at, MIN(agent_id) AS agent_id FROM messages
          WHERE sender = 'agent' AND internal = FALSE GROUP BY conversation_id) r ON r.conversation_id = c.id;
INSERT INTO conversation_events (conversation_id, kind, at, channel, agent_id, category, priority, wait_ms)
    SELECT c.id, 'resolved', a.at, c.channel, a.actor_id, c.category, c.priority, a.at - c.created_at
    FROM audit_log a JOIN conversations c ON c.id = a.conversation_id WHERE a.action = 'resolve';

-- The intent of each answered customer message and how sure the bot was, as columns the
-- reports group and filter by (they were only inside the classification's JSON), and an index
-- for counting messages over a period. `confidence` stays NULL for a message whose step did not
-- act on its intent (an answer to the bot's own question).
ALTER TABLE messages ADD COLUMN intent TEXT;
ALTER TABLE messages ADD COLUMN confidence DOUBLE PRECISION;
UPDATE messages SET intent = json_extract(classification, '$.intent'), confidence = json_extract(classification, '$.confidence')
    WHERE sender = 'customer' AND classification IS NOT NULL;
CREATE INDEX messages_by_time ON messages (created_at, intent) WHERE sender = 'customer';

-- The reports read the conversations started in a period.
CREATE INDEX conversations_by_start ON conversations (created_at);

-- The agent a conversation had last: it stays theirs in the reports once the bot takes it back
-- (a confirmation, a rating) or it is handed back to the queue.
ALTER TABLE conversations ADD COLUMN last_agent_id TEXT;
UPDATE conversations SET last_agent_id = agent_id WHERE agent_id IS NOT NULL;
UPDATE conversations SET last_agent_id = (
    SELECT e.agent_id FROM conversation_events e
    WHERE e.conversation_id = conversations.id AND e.agent_id IS NOT NULL ORDER BY e.at DESC, e.id DESC LIMIT 1)
WHERE last_agent_id IS NULL;
