-- What happens to a conversation because time passed: one timer of each kind at most, written
-- with the step that set it, fired (and deleted) by another step; claimed_until leases a due
-- timer to the node firing it.
CREATE TABLE timers (
    conversation_id TEXT NOT NULL REFERENCES conversations (id) DEFERRABLE INITIALLY DEFERRED,
    kind            TEXT NOT NULL CHECK (kind IN ('remind_waiting', 'resolve_waiting', 'close_resolved', 'close_idle_bot')),
    due_at          BIGINT NOT NULL,
    claimed_until   BIGINT,
    PRIMARY KEY (conversation_id, kind)
);
CREATE INDEX timers_due ON timers (due_at);
