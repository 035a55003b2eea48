-- Rate-limit token buckets all nodes share. A SQLite installation is one node and keeps its
-- buckets in memory; the table is here so both backends have the same schema.
CREATE TABLE rate_buckets (
    scope      TEXT NOT NULL,
    key        TEXT NOT NULL,
    tokens     DOUBLE PRECISION NOT NULL,
    touched_at BIGINT NOT NULL,
    refused    BOOLEAN NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX rate_buckets_touched ON rate_buckets (touched_at);
