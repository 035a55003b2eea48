-- Resolution is confirmed by the customer (a new status), the bot remembers what it waits for
-- after a resolution (a confirmation, a rating, a comment), ratings are kept one per resolution,
-- and every escalation of a conversation is kept, not only the latest.
ALTER TABLE conversations DROP CONSTRAINT conversations_status_check;
ALTER TABLE conversations ADD CONSTRAINT conversations_status_check CHECK (status IN ('open', 'assigned', 'in_progress',
    'waiting_on_customer', 'resolved', 'confirmed', 'closed', 'rejected'));
-- What the bot waits for from the customer (JSON: confirmation, rating or comment).
ALTER TABLE conversations ADD COLUMN awaiting TEXT;

-- One rating per resolution (`resolved_at` names the resolution it rates), of the agent who
-- resolved it.
CREATE TABLE ratings (
    id              BIGSERIAL PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES conversations (id) DEFERRABLE INITIALLY DEFERRED,
    agent_id        TEXT REFERENCES agents (id) DEFERRABLE INITIALLY DEFERRED,
    channel         TEXT NOT NULL CHECK (channel IN ('webchat', 'telegram', 'discord', 'email')),
    resolved_at     BIGINT NOT NULL,
    score           BIGINT NOT NULL CHECK (score BETWEEN 1 AND 5),
    comment         TEXT,
    created_at      BIGINT NOT NULL,
    UNIQUE (conversation_id, resolved_at)
);
CREATE INDEX ratings_by_agent ON ratings (agent_id, created_at);
CREATE INDEX ratings_by_time ON ratings (created_at);

-- Every escalation, as it was decided: why, when, how sure the model was, at what priority.
CREATE TABLE escalations (
    id              BIGSERIAL PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES conversations (id) DEFERRABLE INITIALLY DEFERRED,
    at              BIGINT NOT NULL,
    reason          TEXT NOT NULL,
    confidence      DOUBLE PRECISION,
    priority        TEXT CHECK (priority IN ('urgent', 'high', 'medium', 'low')),
    category        TEXT CHECK (category IN ('billing', 'technical_support', 'account',
                        'general_inquiry', 'complaint', 'feature_request'))
);
CREATE INDEX escalations_by_conversation ON escalations (conversation_id, at);
-- The latest escalation of conversations escalated before this history existed.
INSERT INTO escalations (conversation_id, at, reason, priority, category)
    SELECT id, escalated_at, escalation_reason, priority, category FROM conversations
    WHERE escalated_at IS NOT NULL AND escalation_reason IS NOT NULL;
