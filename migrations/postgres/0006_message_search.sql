-- Full-text search over message bodies: words as they are written (the 'simple' configuration:
-- lower-cased, no stemming, any language), indexed for existing and new messages alike.
CREATE INDEX messages_body_search ON messages USING GIN (to_tsvector('simple', body));

-- The queue, longest waiting first (since escalation, else creation), without sorting it whole.
CREATE INDEX conversations_queue_wait ON conversations (COALESCE(escalated_at, created_at), id) WHERE handler = 'queue';
