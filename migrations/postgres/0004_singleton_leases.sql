-- Work only one node may do at a time (Telegram long polling, the Discord gateway, the IMAP
-- session): the node named in holder does it until expires_at (milliseconds), renewing as it goes.
CREATE TABLE leases (
    name       TEXT PRIMARY KEY NOT NULL,
    holder     TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
