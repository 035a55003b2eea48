-- Each bucket keeps its own refill rate, so several limits are taken in one statement. The
-- buckets are rebuilt: SQLite keeps its buckets in memory, so the table is empty, and this also
-- settles databases that got the column from an interim build of 0012.
DROP TABLE IF EXISTS rate_buckets;
CREATE TABLE rate_buckets (
    scope      TEXT NOT NULL,
    key        TEXT NOT NULL,
    tokens     DOUBLE PRECISION NOT NULL,
    per_second DOUBLE PRECISION NOT NULL,
    touched_at BIGINT NOT NULL,
    refused    BOOLEAN NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX rate_buckets_touched ON rate_buckets (touched_at);
