-- Rate-limit token buckets all nodes share (web chat per visitor and per address, API tokens,
-- sign-ins), so a limit holds whichever node a client reaches. UNLOGGED: a bucket is worth no
-- fsync, and after a crash every bucket simply starts full.
CREATE UNLOGGED TABLE rate_buckets (
    scope      TEXT NOT NULL,
    key        TEXT NOT NULL,
    tokens     DOUBLE PRECISION NOT NULL,
    touched_at BIGINT NOT NULL,
    refused    BOOLEAN NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX rate_buckets_touched ON rate_buckets (touched_at);
