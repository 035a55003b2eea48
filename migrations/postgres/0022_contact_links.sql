-- One person behind several channel identities. A contact joined to another points at the
-- contact that stands for the person (`person_id`; NULL: it stands for itself). A join moves
-- these pointers only: every message and conversation keeps the contact it came from, so
-- undoing a join separates the two people exactly as they were. No foreign key: `db copy`
-- copies contacts in batches, and a pointer may name a contact of a later batch.
ALTER TABLE contacts ADD COLUMN person_id TEXT;
CREATE INDEX contacts_by_person ON contacts (person_id) WHERE person_id IS NOT NULL;

-- Every join with its proof and who made it; `moved` lists (JSON) the contacts it moved, for undo.
CREATE TABLE contact_links (
    id         TEXT PRIMARY KEY NOT NULL,
    person_id  TEXT NOT NULL REFERENCES contacts (id),
    joined_id  TEXT NOT NULL REFERENCES contacts (id),
    moved      TEXT NOT NULL,
    proof      TEXT NOT NULL CHECK (proof IN ('link_code', 'email_code', 'site_identity', 'agent')),
    agent_id   TEXT REFERENCES agents (id),
    created_at BIGINT NOT NULL,
    undone_at  BIGINT,
    undone_by  TEXT REFERENCES agents (id)
);
CREATE INDEX contact_links_by_person ON contact_links (person_id);
CREATE INDEX contact_links_by_joined ON contact_links (joined_id);

-- One-time codes proving two identities are one person: shown on one channel and sent from
-- another, or mailed to an address and typed back where they were asked for. Only a SHA-256
-- of each code is kept.
CREATE TABLE link_codes (
    code_hash  TEXT PRIMARY KEY NOT NULL,
    contact_id TEXT NOT NULL REFERENCES contacts (id),
    email      TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX link_codes_by_expiry ON link_codes (expires_at);

-- How far an agent has seen each conversation (the customer's last message when they opened
-- it): the web chat shows the customer a "seen" mark under that message.
CREATE TABLE conversation_seen (
    conversation_id TEXT PRIMARY KEY NOT NULL REFERENCES conversations (id) DEFERRABLE INITIALLY DEFERRED,
    up_to_seq       BIGINT NOT NULL,
    agent_id        TEXT REFERENCES agents (id),
    seen_at         BIGINT NOT NULL
);

-- Joins and their undoing are audited.
ALTER TABLE audit_log DROP CONSTRAINT audit_log_action_check;
ALTER TABLE audit_log ADD CONSTRAINT audit_log_action_check CHECK (action IN ('reply', 'note', 'assign',
    'release', 'resolve', 'status', 'priority', 'category', 'hand_back', 'presence', 'create_account',
    'update_account', 'sign_in_failed', 'sign_in_refused', 'canned_response', 'review_document',
    'join_contacts', 'separate_contacts'));
