-- A customer message is stored (and acknowledged) before the bot answers it; until then its
-- classification is empty. After a crash these are answered again on start, in order.
CREATE INDEX messages_unanswered ON messages (seq) WHERE sender = 'customer' AND classification IS NULL;
