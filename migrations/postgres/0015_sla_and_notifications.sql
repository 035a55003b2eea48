-- SLA clocks: when the first agent reply and the resolution are due (in business time), and
-- which of the warnings and breaches were already announced (bits: 1 first-reply warning,
-- 2 first-reply breach, 4 resolution warning, 8 resolution breach), so none is announced twice.
ALTER TABLE conversations ADD COLUMN first_reply_due_at BIGINT;
ALTER TABLE conversations ADD COLUMN resolution_due_at BIGINT;
ALTER TABLE conversations ADD COLUMN sla_notices BIGINT NOT NULL DEFAULT 0;
-- Lists sort by the nearest due time (none: last, as the year 287,000); the dashboard counts the
-- overdue.
CREATE INDEX conversations_by_due ON conversations (COALESCE(first_reply_due_at, resolution_due_at, 9000000000000000));

-- The SLA timers join the quiet-conversation ones.
ALTER TABLE timers DROP CONSTRAINT timers_kind_check;
ALTER TABLE timers ADD CONSTRAINT timers_kind_check CHECK (kind IN ('remind_waiting', 'resolve_waiting', 'close_resolved', 'close_idle_bot',
    'first_reply_warning', 'first_reply_breach', 'resolution_warning', 'resolution_breach'));

-- What an agent is told: assigned a conversation, their customer wrote, a colleague mentioned
-- them in a note, an SLA is about to be missed or was missed. Written in the same transaction
-- as the step that caused it.
CREATE TABLE notifications (
    id              BIGSERIAL PRIMARY KEY,
    agent_id        TEXT NOT NULL REFERENCES agents (id),
    kind            TEXT NOT NULL CHECK (kind IN ('assigned', 'customer_replied', 'mentioned', 'sla_warning', 'sla_breach')),
    conversation_id TEXT REFERENCES conversations (id) DEFERRABLE INITIALLY DEFERRED,
    text            TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    read_at         BIGINT
);
CREATE INDEX notifications_of_agent ON notifications (agent_id, id);
CREATE INDEX notifications_unread ON notifications (agent_id) WHERE read_at IS NULL;
