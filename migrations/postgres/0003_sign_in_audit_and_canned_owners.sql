-- Canned responses are shared (admins manage them) or personal (only their owner does);
-- those that existed before are shared.
ALTER TABLE canned_responses ADD COLUMN shared BOOLEAN NOT NULL DEFAULT TRUE;

-- Newly audited: failed and refused sign-ins, canned-response changes.
ALTER TABLE audit_log DROP CONSTRAINT audit_log_action_check;
ALTER TABLE audit_log ADD CONSTRAINT audit_log_action_check CHECK (action IN ('reply', 'note', 'assign',
    'release', 'resolve', 'status', 'priority', 'category', 'hand_back', 'presence', 'create_account',
    'update_account', 'sign_in_failed', 'sign_in_refused', 'canned_response'));
