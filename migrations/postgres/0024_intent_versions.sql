-- The bot's intents as versions: each save in the panel, each lesson taught from traffic, each
-- restore and each change of the intents file on disk is a new version, kept whole (the TOML
-- text) so any can be restored. `file_digest`: the intents file's SHA-256 as last read when the
-- version was recorded; a file that no longer matches it changed on disk and wins.
CREATE TABLE intents_versions (
    number          BIGINT PRIMARY KEY NOT NULL,
    text            TEXT NOT NULL,
    digest          TEXT NOT NULL,
    file_digest     TEXT NOT NULL,
    origin          TEXT NOT NULL CHECK (origin IN ('file', 'built_in', 'panel', 'teaching', 'restore')),
    note            TEXT NOT NULL,
    author_id       TEXT REFERENCES agents (id),
    created_at      BIGINT NOT NULL,
    -- How the messages labelled so far were classified before this version and with it.
    labelled        BIGINT,
    accuracy_before DOUBLE PRECISION,
    accuracy_after  DOUBLE PRECISION,
    measured_at     BIGINT
);

-- Customer messages an admin assigned to an intent: the labelled history each version is
-- measured on. The text is kept here, as it was taught, whatever retention does to the message.
CREATE TABLE intent_labels (
    message_seq BIGINT PRIMARY KEY NOT NULL,
    text        TEXT NOT NULL,
    intent      TEXT NOT NULL,
    version     BIGINT NOT NULL REFERENCES intents_versions (number),
    agent_id    TEXT REFERENCES agents (id),
    labelled_at BIGINT NOT NULL
);

-- Changes of the intents are audited.
ALTER TABLE audit_log DROP CONSTRAINT audit_log_action_check;
ALTER TABLE audit_log ADD CONSTRAINT audit_log_action_check CHECK (action IN ('reply', 'note', 'assign',
    'release', 'resolve', 'status', 'priority', 'category', 'hand_back', 'presence', 'create_account',
    'update_account', 'sign_in_failed', 'sign_in_refused', 'canned_response', 'review_document',
    'join_contacts', 'separate_contacts', 'intents'));
