-- Notices to customers outside any conversation's record (a file refused, a message the bot
-- cannot open), queued before the event that caused them counts as handled and sent by the
-- outbox like replies, so a crash or a channel outage delays one and loses none. key names the
-- notice (channel, event, what), so an event handled again queues it once. next_attempt_at is
-- NULL once the notice is sent or given up. Times in milliseconds.
CREATE TABLE direct_notices (
    id              BIGSERIAL PRIMARY KEY,
    channel         TEXT NOT NULL,
    recipient       TEXT NOT NULL,
    key             TEXT NOT NULL UNIQUE,
    text            TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT,
    sent_at         BIGINT,
    gave_up_at      BIGINT,
    last_error      TEXT
);
CREATE INDEX direct_notices_due ON direct_notices (next_attempt_at) WHERE next_attempt_at IS NOT NULL;
