-- Contacts, conversations and messages; outbound messages double as the outbox.
-- Instants are Unix milliseconds (UTC). Foreign keys are checked at commit, so one step's rows
-- may be written in any order within its transaction.
-- Enum columns carry CHECK constraints matching the Rust enums' text forms.

CREATE TABLE settings (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

CREATE TABLE contacts (
    id           TEXT PRIMARY KEY NOT NULL,
    channel      TEXT NOT NULL CHECK (channel IN ('webchat', 'telegram', 'discord', 'email')),
    external_id  TEXT NOT NULL,
    display_name TEXT,
    created_at   INTEGER NOT NULL,
    unreachable_since INTEGER,
    UNIQUE (channel, external_id)
);

CREATE TABLE agents (
    id         TEXT PRIMARY KEY NOT NULL,
    email      TEXT NOT NULL UNIQUE,
    name       TEXT NOT NULL,
    role       TEXT NOT NULL CHECK (role IN ('agent', 'admin')),
    presence   TEXT NOT NULL DEFAULT 'offline' CHECK (presence IN ('online', 'away', 'offline')),
    capacity   INTEGER NOT NULL DEFAULT 5 CHECK (capacity >= 0),
    active     INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    created_at INTEGER NOT NULL,
    -- Argon2id PHC string; NULL until a password is set (no account has a default password).
    password_hash TEXT
);

-- Every presence change, for working-hours reports.
CREATE TABLE agent_presence_log (
    agent_id TEXT NOT NULL REFERENCES agents (id),
    presence TEXT NOT NULL CHECK (presence IN ('online', 'away', 'offline')),
    at       INTEGER NOT NULL
);
CREATE INDEX agent_presence_log_by_agent ON agent_presence_log (agent_id, at);

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
    escalated_at          INTEGER,
    low_confidence_streak INTEGER NOT NULL DEFAULT 0,
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL,
    CHECK ((handler = 'agent') = (agent_id IS NOT NULL))
);
CREATE INDEX conversations_by_contact ON conversations (contact_id, created_at);
CREATE INDEX conversations_by_agent ON conversations (agent_id, status) WHERE agent_id IS NOT NULL;
-- The panel: lists newest first, counts by status and priority.
CREATE INDEX conversations_by_update ON conversations (updated_at);
CREATE INDEX conversations_by_agent_update ON conversations (agent_id, updated_at) WHERE agent_id IS NOT NULL;
CREATE INDEX conversations_queue_by_update ON conversations (updated_at) WHERE handler = 'queue';
CREATE INDEX conversations_by_status ON conversations (status, updated_at);
CREATE INDEX conversations_by_priority ON conversations (priority, status);
CREATE INDEX conversations_queue ON conversations (escalated_at, id) WHERE handler = 'queue';

CREATE TABLE messages (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT NOT NULL UNIQUE,
    conversation_id TEXT NOT NULL REFERENCES conversations (id) DEFERRABLE INITIALLY DEFERRED,
    contact_id      TEXT NOT NULL REFERENCES contacts (id) DEFERRABLE INITIALLY DEFERRED,
    channel         TEXT NOT NULL CHECK (channel IN ('webchat', 'telegram', 'discord', 'email')),
    sender          TEXT NOT NULL CHECK (sender IN ('customer', 'bot', 'agent', 'system')),
    agent_id        TEXT REFERENCES agents (id) DEFERRABLE INITIALLY DEFERRED,
    body            TEXT NOT NULL,
    -- Agents' notes: never shown or sent to the customer.
    internal        INTEGER NOT NULL DEFAULT 0 CHECK (internal IN (0, 1)),
    attachments     TEXT NOT NULL DEFAULT '[]',
    quick_replies   TEXT NOT NULL DEFAULT '[]',
    classification  TEXT,
    external_id     TEXT,
    created_at      INTEGER NOT NULL,
    -- Delivery, for replies going out on the channel (outbound = 1): the outbox.
    outbound        INTEGER NOT NULL DEFAULT 0 CHECK (outbound IN (0, 1)),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER,
    lease_until     INTEGER,
    delivered_at    INTEGER,
    gave_up_at      INTEGER,
    last_error      TEXT,
    UNIQUE (channel, external_id),
    CHECK (outbound = 0 OR next_attempt_at IS NOT NULL),
    CHECK (internal = 0 OR outbound = 0)
);
CREATE INDEX messages_by_conversation ON messages (conversation_id, seq);
CREATE INDEX messages_by_contact ON messages (contact_id, seq);
CREATE INDEX messages_outbox ON messages (next_attempt_at)
    WHERE outbound = 1 AND delivered_at IS NULL AND gave_up_at IS NULL;


-- Every agent and admin action: who, what, when, before -> after.
CREATE TABLE audit_log (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    at              INTEGER NOT NULL,
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
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);

CREATE TABLE api_tokens (
    id         TEXT PRIMARY KEY NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    agent_id   TEXT NOT NULL REFERENCES agents (id),
    name       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE canned_responses (
    id         TEXT PRIMARY KEY NOT NULL,
    title      TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_by TEXT REFERENCES agents (id),
    created_at INTEGER NOT NULL
);
