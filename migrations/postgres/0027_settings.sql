-- Settings admins change in the panel (`settings` holds the server's own values): each overrides the config file's value of its key (the
-- environment still wins) until it is reset. `value` is JSON.
CREATE TABLE panel_settings (
    key        TEXT PRIMARY KEY NOT NULL,
    value      TEXT NOT NULL,
    updated_by TEXT REFERENCES agents (id),
    updated_at BIGINT NOT NULL
);

-- Settings changes are audited too.
ALTER TABLE audit_log DROP CONSTRAINT audit_log_action_check;
ALTER TABLE audit_log ADD CONSTRAINT audit_log_action_check CHECK (action IN ('reply', 'note', 'assign',
    'release', 'resolve', 'status', 'priority', 'category', 'hand_back', 'presence', 'create_account',
    'update_account', 'sign_in_failed', 'sign_in_refused', 'canned_response', 'review_document',
    'join_contacts', 'separate_contacts', 'intents', 'sign_in', 'sign_out', 'api_token', 'settings'));
