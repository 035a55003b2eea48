-- Copies by email of the bot's status notices (resolved, closed, rejected, handed back, a
-- document decided) for a customer who left an email address while writing on another channel
-- (`closing.email_copies`). Written with the step that sends the notice: the row is the mail's
-- durable outbox, pending until sent or given up with a reason.
CREATE TABLE customer_mails (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL REFERENCES conversations (id) DEFERRABLE INITIALLY DEFERRED,
    address         TEXT NOT NULL,
    text            TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    mail_pending    BOOLEAN NOT NULL DEFAULT TRUE,
    mailed_at       INTEGER,
    mail_error      TEXT
);
CREATE INDEX customer_mails_to_send ON customer_mails (id) WHERE mail_pending;
