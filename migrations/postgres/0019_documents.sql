-- Documents customers send for review (a proof of payment, an ID, an invoice): each a file of
-- a message with its type and a state, pending until an agent approves or rejects it (a
-- rejection says why). The file itself stays in the blob store under `file_key`; retention may
-- remove it later (`purged_at`), leaving the record that it existed.
CREATE TABLE documents (
    id              TEXT PRIMARY KEY NOT NULL,
    conversation_id TEXT NOT NULL REFERENCES conversations (id) DEFERRABLE INITIALLY DEFERRED,
    contact_id      TEXT NOT NULL REFERENCES contacts (id) DEFERRABLE INITIALLY DEFERRED,
    channel         TEXT NOT NULL CHECK (channel IN ('webchat', 'telegram', 'discord', 'email')),
    message_seq     BIGINT NOT NULL,
    file_key        TEXT NOT NULL,
    file_name       TEXT NOT NULL,
    content_type    TEXT NOT NULL,
    size            BIGINT NOT NULL,
    kind            TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'rejected')),
    reviewer_id     TEXT REFERENCES agents (id) DEFERRABLE INITIALLY DEFERRED,
    decided_at      BIGINT,
    note            TEXT,
    created_at      BIGINT NOT NULL,
    purged_at       BIGINT,
    CHECK ((state = 'pending') = (decided_at IS NULL)),
    CHECK (state <> 'rejected' OR note IS NOT NULL)
);
CREATE INDEX documents_by_state ON documents (state, created_at);
CREATE INDEX documents_by_conversation ON documents (conversation_id, created_at);
CREATE INDEX documents_by_decision ON documents (decided_at) WHERE decided_at IS NOT NULL;

-- Decisions on documents are audited.
ALTER TABLE audit_log DROP CONSTRAINT audit_log_action_check;
ALTER TABLE audit_log ADD CONSTRAINT audit_log_action_check CHECK (action IN ('reply', 'note', 'assign',
    'release', 'resolve', 'status', 'priority', 'category', 'hand_back', 'presence', 'create_account',
    'update_account', 'sign_in_failed', 'sign_in_refused', 'canned_response', 'review_document'));
