-- Outbound webhooks: URLs admins registered, with the events each wants (`events`: the names
-- between commas, `,conversation.created,message.stored,`) and the secret that signs them.
CREATE TABLE webhooks (
    id                   TEXT PRIMARY KEY NOT NULL,
    url                  TEXT NOT NULL,
    events               TEXT NOT NULL,
    secret               TEXT NOT NULL,
    active               BOOLEAN NOT NULL DEFAULT TRUE,
    description          TEXT NOT NULL DEFAULT '',
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    disabled_reason      TEXT,
    created_by           TEXT REFERENCES agents (id),
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL
);

-- One event for one webhook: queued in the transaction of the step that caused it, then posted
-- by whichever node claims it first (`next_attempt_at` moves past the lease while it is sent).
-- `state`: pending, delivered, failed (given up).
CREATE TABLE webhook_deliveries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id      TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event           TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    payload         TEXT NOT NULL,
    state           TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    last_attempt_at INTEGER,
    last_status     INTEGER,
    last_response   TEXT,
    last_error      TEXT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_of_webhook ON webhook_deliveries (webhook_id, id);

-- Inbound events a channel could not store after repeated attempts (not a storage outage: those
-- are retried until the database takes them), set aside so the channel moves on. `payload` is
-- what arrived (a Telegram update or Discord message as JSON, a mail as MIME); an admin replays
-- or dismisses each. `state`: dead, replayed, dismissed.
CREATE TABLE inbound_dead_letters (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    channel         TEXT NOT NULL,
    external_id     TEXT NOT NULL,
    payload         BLOB NOT NULL,
    error           TEXT NOT NULL,
    attempts        INTEGER NOT NULL,
    first_failed_at INTEGER NOT NULL,
    last_failed_at  INTEGER NOT NULL,
    state           TEXT NOT NULL DEFAULT 'dead' CHECK (state IN ('dead', 'replayed', 'dismissed')),
    settled_by      TEXT REFERENCES agents (id),
    settled_at      INTEGER,
    UNIQUE (channel, external_id)
);
CREATE INDEX inbound_dead_letters_waiting ON inbound_dead_letters (id) WHERE state = 'dead';

-- Escalations waiting for the hosted LLM's summary: written with the escalating step, taken by
-- one node at a time (`due_at` moves past a lease while it is asked), deleted once done.
CREATE TABLE summaries_wanted (
    conversation_id TEXT PRIMARY KEY NOT NULL REFERENCES conversations (id) DEFERRABLE INITIALLY DEFERRED,
    wanted_at       INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    due_at          INTEGER NOT NULL
);
CREATE INDEX summaries_wanted_due ON summaries_wanted (due_at);

-- Webhook changes are audited.
CREATE TABLE audit_log_next (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    at              INTEGER NOT NULL,
    actor_id        TEXT REFERENCES agents (id) DEFERRABLE INITIALLY DEFERRED,
    action          TEXT NOT NULL CHECK (action IN ('reply', 'note', 'assign', 'release', 'resolve',
                        'status', 'priority', 'category', 'hand_back', 'presence', 'create_account',
                        'update_account', 'sign_in_failed', 'sign_in_refused', 'canned_response',
                        'review_document', 'join_contacts', 'separate_contacts', 'intents', 'sign_in',
                        'sign_out', 'api_token', 'settings', 'webhook')),
    conversation_id TEXT REFERENCES conversations (id) DEFERRABLE INITIALLY DEFERRED,
    subject_agent   TEXT REFERENCES agents (id) DEFERRABLE INITIALLY DEFERRED,
    before_state    TEXT,
    after_state     TEXT
);
INSERT INTO audit_log_next (id, at, actor_id, action, conversation_id, subject_agent, before_state, after_state)
    SELECT id, at, actor_id, action, conversation_id, subject_agent, before_state, after_state FROM audit_log;
DROP TABLE audit_log;
ALTER TABLE audit_log_next RENAME TO audit_log;
CREATE INDEX audit_log_by_time ON audit_log (at);
CREATE INDEX audit_log_by_actor ON audit_log (actor_id, id);
CREATE INDEX audit_log_by_action ON audit_log (action, id);

-- Admins are told when a webhook was turned off after failing again and again, and when an
-- inbound event was set aside.
CREATE TABLE notifications_next (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    agent_id        TEXT NOT NULL REFERENCES agents (id),
    kind            TEXT NOT NULL CHECK (kind IN ('assigned', 'customer_replied', 'mentioned', 'sla_warning',
                        'sla_breach', 'webhook_disabled', 'inbound_failed')),
    conversation_id TEXT REFERENCES conversations (id) DEFERRABLE INITIALLY DEFERRED,
    text            TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    read_at         INTEGER,
    mail_pending    BOOLEAN NOT NULL DEFAULT FALSE,
    mailed_at       INTEGER,
    mail_error      TEXT
);
INSERT INTO notifications_next (id, agent_id, kind, conversation_id, text, created_at, read_at, mail_pending, mailed_at, mail_error)
    SELECT id, agent_id, kind, conversation_id, text, created_at, read_at, mail_pending, mailed_at, mail_error FROM notifications;
DROP TABLE notifications;
ALTER TABLE notifications_next RENAME TO notifications;
CREATE INDEX notifications_of_agent ON notifications (agent_id, id);
CREATE INDEX notifications_unread ON notifications (agent_id) WHERE read_at IS NULL;
CREATE INDEX notifications_to_mail ON notifications (id) WHERE mail_pending;
