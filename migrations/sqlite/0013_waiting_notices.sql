-- When a customer waiting in the queue was last told their place and expected wait, so they
-- are told at most once per `bot.waiting_notice_minutes` however often they write.
ALTER TABLE conversations ADD COLUMN waiting_notice_at INTEGER;
-- The expected wait comes from the latest escalations' first replies, newest first.
CREATE INDEX conversations_by_escalation ON conversations (escalated_at) WHERE escalated_at IS NOT NULL;
