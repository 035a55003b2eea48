-- no-transaction
-- Resolution is confirmed by the customer (a new status), the bot remembers what it waits for
-- after a resolution (a confirmation, a rating, a comment), ratings are kept one per resolution,
-- and every escalation of a conversation is kept, not only the latest.
--
-- SQLite changes a CHECK by rebuilding the table. Other tables refer to conversations, so the
-- rebuild runs with foreign keys off (which only works outside a transaction) inside its own
-- transaction. It can run twice safely: a crash before sqlx records it just rebuilds again.
PRAGMA foreign_keys = OFF;
BEGIN;
DROP TABLE IF EXISTS conversations_next;
CREATE TABLE conversations_next (
    id                    TEXT PRIMARY KEY NOT NULL,
    contact_id            TEXT NOT NULL REFERENCES contacts (id) DEFERRABLE INITIALLY DEFERRED,
    channel               TEXT NOT NULL CHECK (channel IN ('webchat', 'telegram', 'discord', 'email')),
    handler               TEXT NOT NULL CHECK (handler IN ('bot', 'queue', 'agent')),
    agent_id              TEXT REFERENCES agents (id) DEFERRABLE INITIALLY DEFERRED,
    status                TEXT NOT NULL CHECK (status IN ('open', 'assigned', 'in_progress',
                              'waiting_on_customer', 'resolved', 'confirmed', 'closed', 'rejected')),
    category              TEXT CHECK (category IN ('billing', 'technical_support', 'account',
                              'general_inquiry', 'complaint', 'feature_request')),
    priority              TEXT CHECK (priority IN ('urgent', 'high', 'medium', 'low')),
    escalation_reason     TEXT,
    escalation_summary    TEXT,
    escalated_at          INTEGER,
    low_confidence_streak INTEGER NOT NULL DEFAULT 0,
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL,
    version               BIGINT NOT NULL DEFAULT 1,
    waiting_notice_at     INTEGER,
    first_reply_due_at    INTEGER,
    resolution_due_at     INTEGER,
    sla_notices           INTEGER NOT NULL DEFAULT 0,
    -- What the bot waits for from the customer (JSON: confirmation, rating or comment).
    awaiting              TEXT,
    CHECK ((handler = 'agent') = (agent_id IS NOT NULL))
);
INSERT INTO conversations_next (id, contact_id, channel, handler, agent_id, status, category, priority,
        escalation_reason, escalation_summary, escalated_at, low_confidence_streak, created_at, updated_at,
        version, waiting_notice_at, first_reply_due_at, resolution_due_at, sla_notices)
    SELECT id, contact_id, channel, handler, agent_id, status, category, priority,
        escalation_reason, escalation_summary, escalated_at, low_confidence_streak, created_at, updated_at,
        version, waiting_notice_at, first_reply_due_at, resolution_due_at, sla_notices
    FROM conversations;
DROP TABLE conversations;
ALTER TABLE conversations_next RENAME TO conversations;
CREATE INDEX conversations_by_contact ON conversations (contact_id, created_at);
CREATE INDEX conversations_by_agent ON conversations (agent_id, status) WHERE agent_id IS NOT NULL;
CREATE INDEX conversations_by_update ON conversations (updated_at);
CREATE INDEX conversations_by_agent_update ON conversations (agent_id, updated_at) WHERE agent_id IS NOT NULL;
CREATE INDEX conversations_queue_by_update ON conversations (updated_at) WHERE handler = 'queue';
CREATE INDEX conversations_by_status ON conversations (status, updated_at);
CREATE INDEX conversations_by_priority ON conversations (priority, status);
CREATE INDEX conversations_queue ON conversations (escalated_at, id) WHERE handler = 'queue';
CREATE INDEX conversations_queue_wait ON conversations (COALESCE(escalated_at, created_at), id) WHERE handler = 'queue';
CREATE INDEX conversations_next_in_line ON conversations (
    ((CASE priority WHEN 'urgent' THEN 0 WHEN 'high' THEN 1 WHEN 'medium' THEN 2 WHEN 'low' THEN 3 ELSE 4 END) * 10000000000000
        + COALESCE(escalated_at, created_at)),
    id
) WHERE handler = 'queue';
CREATE INDEX conversations_by_escalation ON conversations (escalated_at) WHERE escalated_at IS NOT NULL;
CREATE INDEX conversations_by_due ON conversations (COALESCE(first_reply_due_at, resolution_due_at, 9000000000000000));

-- One rating per resolution (`resolved_at` names the resolution it rates), of the agent who
-- resolved it.
CREATE TABLE IF NOT EXISTS ratings (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL REFERENCES conversations (id) DEFERRABLE INITIALLY DEFERRED,
    agent_id        TEXT REFERENCES agents (id) DEFERRABLE INITIALLY DEFERRED,
    channel         TEXT NOT NULL CHECK (channel IN ('webchat', 'telegram', 'discord', 'email')),
    resolved_at     INTEGER NOT NULL,
    score           INTEGER NOT NULL CHECK (score BETWEEN 1 AND 5),
    comment         TEXT,
    created_at      INTEGER NOT NULL,
    UNIQUE (conversation_id, resolved_at)
);
CREATE INDEX IF NOT EXISTS ratings_by_agent ON ratings (agent_id, created_at);
CREATE INDEX IF NOT EXISTS ratings_by_time ON ratings (created_at);

-- Every escalation, as it was decided: why, when, how sure the model was, at what priority.
CREATE TABLE IF NOT EXISTS escalations (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL REFERENCES conversations (id) DEFERRABLE INITIALLY DEFERRED,
    at              INTEGER NOT NULL,
    reason          TEXT NOT NULL,
    confidence      DOUBLE PRECISION,
    priority        TEXT CHECK (priority IN ('urgent', 'high', 'medium', 'low')),
    category        TEXT CHECK (category IN ('billing', 'technical_support', 'account',
                        'general_inquiry', 'complaint', 'feature_request'))
);
CREATE INDEX IF NOT EXISTS escalations_by_conversation ON escalations (conversation_id, at);
-- The latest escalation of conversations escalated before this history existed.
INSERT INTO escalations (conversation_id, at, reason, priority, category)
    SELECT id, escalated_at, escalation_reason, priority, category FROM conversations
    WHERE escalated_at IS NOT NULL AND escalation_reason IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM escalations e WHERE e.conversation_id = conversations.id);
COMMIT;
PRAGMA foreign_keys = ON;
