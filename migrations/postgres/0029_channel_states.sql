-- What each outside connection (the Telegram poller, the Discord gateway, the IMAP session, the
-- mail server, the hosted LLM) last reported, written by the node running it, so /readyz and the
-- System page on every node can show it. Times in milliseconds.
CREATE TABLE channel_states (
    name          TEXT PRIMARY KEY NOT NULL,
    node          TEXT NOT NULL,
    up            BOOLEAN NOT NULL,
    detail        TEXT NOT NULL,
    last_ok_at    BIGINT,
    last_error    TEXT,
    last_error_at BIGINT,
    updated_at    BIGINT NOT NULL
);
