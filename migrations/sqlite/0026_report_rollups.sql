-- Reports over months read a row per day instead of every customer message: customer messages
-- counted per UTC day (days since 1970-01-01), channel, category (the conversation's when its
-- day was counted; '' for none) and intent. The `reports` job adds whole
-- days that ended a while ago and moves `report_rollup.through_day` (the first day not added);
-- a message of an added day that is answered only later is added by the step that answers it.
-- Messages not answered yet are never added: the reports count those from `messages`.
CREATE TABLE intent_days (
    day      BIGINT NOT NULL,
    channel  TEXT NOT NULL,
    category TEXT NOT NULL,
    intent   TEXT NOT NULL,
    messages BIGINT NOT NULL,
    answered BIGINT NOT NULL,
    PRIMARY KEY (day, channel, category, intent)
);
CREATE TABLE report_rollup (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    through_day BIGINT NOT NULL
);
INSERT INTO report_rollup (id, through_day) VALUES (1, 0);

-- The reports group a period's conversations and events in the database, reading only these
-- indexes (no table rows): conversations by start, events by kind and time, and the customer
-- messages still waiting for an answer.
CREATE INDEX conversations_reported ON conversations (created_at, channel, status, escalated_at, category, last_agent_id);
CREATE INDEX conversation_events_reported ON conversation_events (kind, at, channel, agent_id, wait_ms, reason, category, priority);
CREATE INDEX messages_waiting_by_time ON messages (created_at, channel) WHERE sender = 'customer' AND classification IS NULL;
-- A filter by category or agent reads those conversations' ids first.
CREATE INDEX conversations_by_category ON conversations (category, id);
CREATE INDEX conversations_by_last_agent ON conversations (last_agent_id, id);

-- The sentence embeddings of customer messages the bot was unsure of (each component of the
-- unit vector times 127, one signed byte each), so "Needs teaching" groups similar messages.
CREATE TABLE message_embeddings (
    message_seq BIGINT PRIMARY KEY,
    vector      BLOB NOT NULL
);
