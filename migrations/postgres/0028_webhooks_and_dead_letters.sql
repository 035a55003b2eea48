-- Outbound webhooks: URLs admins registered, with the events each wants (`events`: the names
-- between commas, `,conversation.created,message.stored,`) and the secret that signs them.
CREATE TABLE webhooks (
    id                   TEXT PRIMARY KEY NOT NULL,
    url                  TEXT NOT NULL,
    events               TEXT NOT NULL,
    secret               TEXT NOT NULL,
    active               BOOLEAN NOT NULL DEFAULT TRUE,
    description          TEXT NOT NULL DEFAULT '',
    consecutive_failures BIGINT NOT NULL DEFAULT 0,
    disabled_reason      TEXT,
    created_by           TEXT REFERENCES agents (id),
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL
);

-- One event for one webhook: queued in the transaction of the step that caused it, then posted
-- by whichever node claims it first (`next_attempt_at` moves past the lease while it is sent).
-- `state`: pending, delivered, failed (given up).
CREATE TABLE webhook_deliveries (
    id              BIGSERIAL PRIMARY KEY,
    webhook_id      TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event           TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    payload         TEXT NOT NULL,
    state           TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    last_attempt_at BIGINT,
    last_status     BIGINT,
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
    id              BIGSERIAL PRIMARY KEY,
    channel         TEXT NOT NULL,
    external_id     TEXT NOT NULL,
    payload         BYTEA NOT NULL,
    error           TEXT NOT NULL,
    attempts        BIGINT NOT NULL,
    first_failed_at BIGINT NOT NULL,
    last_failed_at  BIGINT NOT NULL,
    state           TEXT NOT NULL DEFAULT 'dead' CHECK (state IN ('dead', 'replayed', 'dismissed')),
    settled_by      TEXT REFERENCES agents (id),
    settled_at      BIGINT,
    UNIQUE (channel, external_id)
);
CREATE INDEX inbound_dead_letters_waiting ON inbound_dead_letters (id) WHERE state = 'dead';

-- Escalations waiting for the hosted LLM's summary: written with the escalating step, taken by
-- one node at a time (`due_at` moves past a lease while it is asked), deleted once done.
CREATE TABLE summaries_wanted (
    conversation_id TEXT PRIMARY KEY NOT NULL REFERENCES conversations (id) DEFERRABLE INITIALLY DEFERRED,
    wanted_at       BIGINT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    due_at          BIGINT NOT NULL
);
CREATE INDEX summaries_wanted_due ON summaries_wanted (due_at);

-- Webhook changes are audited.
ALTER TABLE audit_log DROP CONSTRAINT audit_log_action_check;
ALTER TABLE audit_log ADD CONSTRAINT audit_log_action_check CHECK (action IN ('reply', 'note', 'assign',
    'release', 'resolve', 'status', 'priority', 'category', 'hand_back', 'presence', 'create_account',
    'update_account', 'sign_in_failed', 'sign_in_refused', 'canned_response', 'review_document',
    'join_contacts', 'separate_contacts', 'intents', 'sign_in', 'sign_out', 'api_token', 'settings', 'webhook'));

-- Admins are told when a webhook was turned off after failing again and again, and when an
-- inbound event was set aside.
ALTER TABLE notifications DROP CONSTRAINT notifications_kind_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_kind_check CHECK (kind IN ('assigned', 'customer_replied',
    'mentioned', 'sla_warning', 'sla_breach', 'webhook_disabled', 'inbound_failed'));
