-- The same schema as migrations/sqlite/0001_foundation.sql, in PostgreSQL's types: instants are
-- Unix milliseconds (UTC, BIGINT), ids are UUID text, flags are BOOLEAN, integers are BIGINT.
-- Foreign keys are checked at commit, so one step's rows may be written in any order.

CREATE TABLE settings (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

CREATE TABLE contacts (
    id           TEXT PRIMARY KEY NOT NULL,
    channel      TEXT NOT NULL CHECK (channel IN ('webchat', 'telegram', 'discord', 'email')),
    external_id  TEXT NOT NULL,
    display_name TEXT,
    created_at   BIGINT NOT NULL,
    unreachable_since BIGINT,
    UNIQUE (channel, external_id)
);

CREATE TABLE agents (
    id         TEXT PRIMARY KEY NOT NULL,
    email      TEXT NOT NULL UNIQUE,
    name       TEXT NOT NULL,
    role       TEXT NOT NULL CHECK (role IN ('agent', 'admin')),
    presence   TEXT NOT NULL DEFAULT 'offline' CHECK (presence IN ('online', 'away', 'offline')),
    capacity   BIGINT NOT NULL DEFAULT 5 CHECK (capacity >= 0),
    active     BOOLEAN NOT NULL DEFAULT TRUE,
    created_at BIGINT NOT NULL,
    -- Argon2id PHC string; NULL until a password is set (no account has a default password).
    password_hash TEXT
);

-- Every presence change, for working-hours reports.
CREATE TABLE agent_presence_log (
    agent_id TEXT NOT NULL REFERENCES agents (id),
    presence TEXT NOT NULL CHECK (presence IN ('online', 'away', 'offline')),
    at       BIGINT NOT NULL
);
CREATE INDEX agent_presence_log_by_agent ON agent_presence_log (agent_id, at);
CREATE INDEX agent_presence_log_by_time ON agent_presence_log (at);

CREATE TABLE conversations (
    id                    TEXT PRIMARY KEY NOT NULL,
    contact_id            TEXT NOT NULL REFERENCES contacts (id) DEFERRABLE INITIALLY DEFERRED,
    channel               TEXT NOT NULL CHECK (channel IN ('webchat', 'telegram', 'discord', 'email')),
    handler               TEXT NOT NULL CHECK (handler IN ('bot', 'queue', 'agent')),
    agent_id              TEXT REFERENCES agents (id) DEFERRABLE INITIALLY DEFERRED,
    status                TEXT NOT NULL CHECK (status IN ('open', 'assigned', 'in_progress',
                              'waiting_on_customer', 'resolved', 'closed', 'rejected')),
    category              TEXT CHECK (category IN ('billing', 'technical_support', 'account',
                              'general_inquiry', 'complaint', 'feature_request')),
    priority              TEXT CHECK (priority IN ('urgent', 'high', 'medium', 'low')),
    escalation_reason     TEXT,
    escalation_summary    TEXT,
    escalated_at          BIGINT,
    low_confidence_streak BIGINT NOT NULL DEFAULT 0,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL,
    CHECK ((handler = 'agent') = (agent_id IS NOT NULL))
);
CREATE INDEX conversations_by_contact ON conversations (contact_id, created_at);
CREATE INDEX conversations_by_agent ON conversations (agent_id, status) WHERE agent_id IS NOT NULL;
CREATE INDEX conversations_by_update ON conversations (updated_at);
CREATE INDEX conversations_by_agent_update ON conversations (agent_id, updated_at) WHERE agent_id IS NOT NULL;
CREATE INDEX conversations_queue_by_update ON conversations (updated_at) WHERE handler = 'queue';
CREATE INDEX conversations_by_status ON conversations (status, updated_at);
CREATE INDEX conversations_by_priority ON conversations (priority, status);
CREATE INDEX conversations_queue ON conversations (escalated_at, id) WHERE handler = 'queue';

CREATE TABLE messages (
    seq             BIGSERIAL PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    conversation_id TEXT NOT NULL REFERENCES conversations (id) DEFERRABLE INITIALLY DEFERRED,
    contact_id      TEXT NOT NULL REFERENCES contacts (id) DEFERRABLE INITIALLY DEFERRED,
    channel         TEXT NOT NULL CHECK (channel IN ('webchat', 'telegram', 'discord', 'email')),
    sender          TEXT NOT NULL CHECK (sender IN ('customer', 'bot', 'agent', 'system')),
    agent_id        TEXT REFERENCES agents (id) DEFERRABLE INITIALLY DEFERRED,
    body            TEXT NOT NULL,
    -- Agents' notes: never shown or sent to the customer.
    internal        BOOLEAN NOT NULL DEFAULT FALSE,
    attachments     TEXT NOT NULL DEFAULT '[]',
    quick_replies   TEXT NOT NULL DEFAULT '[]',
    classification  TEXT,
    external_id     TEXT,
    created_at      BIGINT NOT NULL,
    -- Delivery, for replies going out on the channel (outbound): the outbox.
    outbound        BOOLEAN NOT NULL DEFAULT FALSE,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT,
    lease_until     BIGINT,
    delivered_at    BIGINT,
    gave_up_at      BIGINT,
    last_error      TEXT,
    UNIQUE (channel, external_id),
    CHECK (NOT outbound OR next_attempt_at IS NOT NULL),
    CHECK (NOT internal OR NOT outbound)
);
CREATE INDEX messages_by_conversation ON messages (conversation_id, seq);
CREATE INDEX messages_by_contact ON messages (contact_id, seq);
CREATE INDEX messages_outbox ON messages (next_attempt_at)
    WHERE outbound AND delivered_at IS NULL AND gave_up_at IS NULL;

-- Every agent and admin action: who, what, when, before -> after.
CREATE TABLE audit_log (
    id              BIGSERIAL PRIMARY KEY,
    at              BIGINT NOT NULL,
    actor_id        TEXT REFERENCES agents (id) DEFERRABLE INITIALLY DEFERRED,
    action          TEXT NOT NULL CHECK (action IN ('reply', 'note', 'assign', 'release', 'resolve',
                        'status', 'priority', 'category', 'hand_back', 'presence', 'create_account',
                        'update_account')),
    conversation_id TEXT REFERENCES conversations (id) DEFERRABLE INITIALLY DEFERRED,
    subject_agent   TEXT REFERENCES agents (id) DEFERRABLE INITIALLY DEFERRED,
    before_state    TEXT,
    after_state     TEXT
);
CREATE INDEX audit_log_by_time ON audit_log (at);

-- Panel sessions and API tokens: only SHA-256 hashes of the secrets are stored.
CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY NOT NULL,
    agent_id   TEXT NOT NULL REFERENCES agents (id),
    csrf       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE TABLE api_tokens (
    id         TEXT PRIMARY KEY NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    agent_id   TEXT NOT NULL REFERENCES agents (id),
    name       TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE canned_responses (
    id         TEXT PRIMARY KEY NOT NULL,
    title      TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_by TEXT REFERENCES agents (id),
    created_at BIGINT NOT NULL
);
