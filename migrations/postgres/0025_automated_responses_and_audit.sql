-- Automated responses: a customer message the bot replied to with its intent's answer. Set by
-- the step that answers it; messages answered before this release count as not answered so.
ALTER TABLE messages ADD COLUMN answered_from_intent BOOLEAN NOT NULL DEFAULT FALSE;

-- A complete audit trail: sign-ins, sign-outs and API tokens made or revoked are audited too,
-- and the log is filtered by actor and by action.
ALTER TABLE audit_log DROP CONSTRAINT audit_log_action_check;
ALTER TABLE audit_log ADD CONSTRAINT audit_log_action_check CHECK (action IN ('reply', 'note', 'assign',
    'release', 'resolve', 'status', 'priority', 'category', 'hand_back', 'presence', 'create_account',
    'update_account', 'sign_in_failed', 'sign_in_refused', 'canned_response', 'review_document',
    'join_contacts', 'separate_contacts', 'intents', 'sign_in', 'sign_out', 'api_token'));
CREATE INDEX audit_log_by_actor ON audit_log (actor_id, id);
CREATE INDEX audit_log_by_action ON audit_log (action, id);

-- One-time links to set a password, made by an admin: only a SHA-256 of each is kept, it
-- expires, and it works once.
CREATE TABLE password_resets (
    token_hash TEXT PRIMARY KEY NOT NULL,
    agent_id   TEXT NOT NULL REFERENCES agents (id),
    created_by TEXT REFERENCES agents (id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX password_resets_by_agent ON password_resets (agent_id);
