-- Optional two-factor sign-in (TOTP): the agent's secret (base32) while it is on, and the last
-- time step a code was taken for, so each code signs in once, on any node.
ALTER TABLE agents ADD COLUMN totp_secret TEXT;
ALTER TABLE agents ADD COLUMN totp_last_step INTEGER;

-- A sign-in whose password was right and whose code is still to come, by its token's hash;
-- one per agent (a new one replaces it). Times in milliseconds.
CREATE TABLE sign_in_challenges (
    token_hash TEXT PRIMARY KEY NOT NULL,
    agent_id   TEXT NOT NULL REFERENCES agents (id),
    expires_at INTEGER NOT NULL,
    failures   INTEGER NOT NULL DEFAULT 0
);

-- Two-factor changes are audited. SQLite cannot change a CHECK constraint in place, so the audit
-- log is rebuilt with the same rows.
CREATE TABLE audit_log_next (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    at              INTEGER NOT NULL,
    actor_id        TEXT REFERENCES agents (id) DEFERRABLE INITIALLY DEFERRED,
    action          TEXT NOT NULL CHECK (action IN ('reply', 'note', 'assign', 'release', 'resolve',
                        'status', 'priority', 'category', 'hand_back', 'presence', 'create_account',
                        'update_account', 'sign_in_failed', 'sign_in_refused', 'canned_response',
                        'review_document', 'join_contacts', 'separate_contacts', 'intents', 'sign_in',
                        'sign_out', 'api_token', 'settings', 'webhook', 'two_factor')),
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
