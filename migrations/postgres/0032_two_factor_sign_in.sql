-- Optional two-factor sign-in (TOTP): the agent's secret (base32) while it is on, and the last
-- time step a code was taken for, so each code signs in once, on any node.
ALTER TABLE agents ADD COLUMN totp_secret TEXT;
ALTER TABLE agents ADD COLUMN totp_last_step BIGINT;

-- A sign-in whose password was right and whose code is still to come, by its token's hash;
-- one per agent (a new one replaces it). Times in milliseconds.
CREATE TABLE sign_in_challenges (
    token_hash TEXT PRIMARY KEY NOT NULL,
    agent_id   TEXT NOT NULL REFERENCES agents (id),
    expires_at BIGINT NOT NULL,
    failures   BIGINT NOT NULL DEFAULT 0
);

-- Two-factor changes are audited.
ALTER TABLE audit_log DROP CONSTRAINT audit_log_action_check;
ALTER TABLE audit_log ADD CONSTRAINT audit_log_action_check CHECK (action IN ('reply', 'note', 'assign',
    'release', 'resolve', 'status', 'priority', 'category', 'hand_back', 'presence', 'create_account',
    'update_account', 'sign_in_failed', 'sign_in_refused', 'canned_response', 'review_document',
    'join_contacts', 'separate_contacts', 'intents', 'sign_in', 'sign_out', 'api_token', 'settings', 'webhook',
    'two_factor'));
