-- Automated responses: a customer message the bot replied to with its intent's answer. Set by
-- the step that answers it; messages answered before this release count as not answered so.
ALTER TABLE messages ADD COLUMN answered_from_intent INTEGER NOT NULL DEFAULT 0 CHECK (answered_from_intent IN (0, 1));

-- A complete audit trail: sign-ins, sign-outs and API tokens made or revoked are audited too,
-- and the log is filtered by actor and by action. SQLite cannot change a CHECK constraint in
-- place, so the audit log (which no table refers to) is rebuilt with the same rows.
CREATE TABLE audit_log_next (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    at              INTEGER NOT NULL,
    actor_id        TEXT REFERENCES agents (id) DEFERRABLE INITIALLY DEFERRED,
    action          TEXT NOT NULL CHECK (action IN ('reply', 'note', 'assign', 'release', 'resolve',
                        'status', 'priority', 'category', 'hand_back', 'presence', 'create_account',
                        'update_account', 'sign_in_failed', 'sign_in_refused', 'canned_response',
                        'review_document', 'join_contacts', 'separate_contacts', 'intents', 'sign_in',
                        'sign_out', 'api_token')),
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

-- One-time links to set a password, made by an admin: only a SHA-256 of each is kept, it
-- expires, and it works once.
CREATE TABLE password_resets (
    token_hash TEXT PRIMARY KEY NOT NULL,
    agent_id   TEXT NOT NULL REFERENCES agents (id),
    created_by TEXT REFERENCES agents (id),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
);
CREATE INDEX password_resets_by_agent ON password_resets (agent_id);
