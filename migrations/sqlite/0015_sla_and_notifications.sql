-- SLA clocks: when the first agent reply and the resolution are due (in business time), and
-- which of the warnings and breaches were already announced (bits: 1 first-reply warning,
-- 2 first-reply breach, 4 resolution warning, 8 resolution breach), so none is announced twice.
ALTER TABLE conversations ADD COLUMN first_reply_due_at INTEGER;
ALTER TABLE conversations ADD COLUMN resolution_due_at INTEGER;
ALTER TABLE conversations ADD COLUMN sla_notices INTEGER NOT NULL DEFAULT 0;
-- Lists sort by the nearest due time (none: last, as the year 287,000); the dashboard counts the
-- overdue.
CREATE INDEX conversations_by_due ON conversations (COALESCE(first_reply_due_at, resolution_due_at, 9000000000000000));

-- The SLA timers join the quiet-conversation ones (SQLite changes a CHECK by rebuilding the table).
ALTER TABLE timers RENAME TO timers_before_sla;
CREATE TABLE timers (
    conversation_id TEXT NOT NULL REFERENCES conversations (id) DEFERRABLE INITIALLY DEFERRED,
    kind            TEXT NOT NULL CHECK (kind IN ('remind_waiting', 'resolve_waiting', 'close_resolved', 'close_idle_bot',
                                                  'first_reply_warning', 'first_reply_breach', 'resolution_warning', 'resolution_breach')),
    due_at          INTEGER NOT NULL,
    claimed_until   INTEGER,
    PRIMARY KEY (conversation_id, kind)
);
INSERT INTO timers (conversation_id, kind, due_at, claimed_until)
    SELECT conversation_id, kind, due_at, claimed_until FROM timers_before_sla;
DROP TABLE timers_before_sla;
CREATE INDEX timers_due ON timers (due_at);

-- What an agent is told: assigned a conversation, their customer wrote, a colleague mentioned
-- them in a note, an SLA is about to be missed or was missed. Written in the same transaction
-- as the step that caused it.
CREATE TABLE notifications (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    agent_id        TEXT NOT NULL REFERENCES agents (id),
    kind            TEXT NOT NULL CHECK (kind IN ('assigned', 'customer_replied', 'mentioned', 'sla_warning', 'sla_breach')),
    conversation_id TEXT REFERENCES conversations (id) DEFERRABLE INITIALLY DEFERRED,
    text            TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    read_at         INTEGER
);
CREATE INDEX notifications_of_agent ON notifications (agent_id, id);
CREATE INDEX notifications_unread ON notifications (agent_id) WHERE read_at IS NULL;
