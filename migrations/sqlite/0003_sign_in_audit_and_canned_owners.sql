-- Canned responses are shared (admins manage them) or personal (only their owner does);
-- those that existed before are shared.
ALTER TABLE canned_responses ADD COLUMN shared INTEGER NOT NULL DEFAULT 1 CHECK (shared IN (0, 1));

-- Newly audited: failed and refused sign-ins, canned-response changes. SQLite cannot change a
-- CHECK constraint in place, so the audit log is rebuilt with the same rows.
CREATE TABLE audit_log_next (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    at              INTEGER NOT NULL,
    actor_id        TEXT REFERENCES agents (id) DEFERRABLE INITIALLY DEFERRED,
    action          TEXT NOT NULL CHECK (action IN ('reply', 'note', 'assign', 'release', 'resolve',
                        'status', 'priority', 'category', 'hand_back', 'presence', 'create_account',
                        'update_account', 'sign_in_failed', 'sign_in_refused', 'canned_response')),
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
