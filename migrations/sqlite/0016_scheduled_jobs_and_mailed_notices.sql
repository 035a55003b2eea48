-- Recurring jobs from `[jobs]` (cron schedules): when each runs next. A node runs a due job only
-- after moving next_run_at on with one conditional UPDATE, so with several nodes each run happens
-- once, and runs missed while every node was down happen once, at the next start.
CREATE TABLE scheduled_jobs (
    name             TEXT PRIMARY KEY NOT NULL,
    schedule         TEXT NOT NULL,
    next_run_at      INTEGER NOT NULL,
    last_started_at  INTEGER,
    last_node        TEXT,
    last_finished_at INTEGER,
    last_ok          BOOLEAN,
    last_outcome     TEXT
);

-- Notifications that are also mailed to their agent (`email.notify_agents`): the row is the
-- mail's durable outbox, pending until sent or given up with a reason.
ALTER TABLE notifications ADD COLUMN mail_pending BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE notifications ADD COLUMN mailed_at INTEGER;
ALTER TABLE notifications ADD COLUMN mail_error TEXT;
CREATE INDEX notifications_to_mail ON notifications (id) WHERE mail_pending;
