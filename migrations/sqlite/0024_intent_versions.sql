-- The bot's intents as versions: each save in the panel, each lesson taught from traffic, each
-- restore and each change of the intents file on disk is a new version, kept whole (the TOML
-- text) so any can be restored. `file_digest`: the intents file's SHA-256 as last read when the
-- version was recorded; a file that no longer matches it changed on disk and wins.
CREATE TABLE intents_versions (
    number          INTEGER PRIMARY KEY NOT NULL,
    text            TEXT NOT NULL,
    digest          TEXT NOT NULL,
    file_digest     TEXT NOT NULL,
    origin          TEXT NOT NULL CHECK (origin IN ('file', 'built_in', 'panel', 'teaching', 'restore')),
    note            TEXT NOT NULL,
    author_id       TEXT REFERENCES agents (id),
    created_at      INTEGER NOT NULL,
    -- How the messages labelled so far were classified before this version and with it.
    labelled        INTEGER,
    accuracy_before REAL,
    accuracy_after  REAL,
    measured_at     INTEGER
);

-- Customer messages an admin assigned to an intent: the labelled history each version is
-- measured on. The text is kept here, as it was taught, whatever retention does to the message.
CREATE TABLE intent_labels (
    message_seq INTEGER PRIMARY KEY NOT NULL,
    text        TEXT NOT NULL,
    intent      TEXT NOT NULL,
    version     INTEGER NOT NULL REFERENCES intents_versions (number),
    agent_id    TEXT REFERENCES agents (id),
    labelled_at INTEGER NOT NULL
);

-- Changes of the intents are audited. SQLite cannot change a CHECK constraint in place, so the
-- audit log (which no table refers to) is rebuilt with the same rows.
CREATE TABLE audit_log_next (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    at              INTEGER NOT NULL,
    actor_id        TEXT REFERENCES agents (id) DEFERRABLE INITIALLY DEFERRED,
    action          TEXT NOT NULL CHECK (action IN ('reply', 'note', 'assign', 'release', 'resolve',
                        'status', 'priority', 'category', 'hand_back', 'presence', 'create_account',
                        'update_account', 'sign_in_failed', 'sign_in_refused', 'canned_response',
                        'review_document', 'join_contacts', 'separate_contacts', 'intents')),
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
