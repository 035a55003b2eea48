-- Full-text search over message bodies: words as they are written (the 'simple' configuration:
-- lower-cased, no stemming, any language), indexed for existing and new messages alike.
CREATE INDEX messages_body_search ON messages USING GIN (to_tsvector('simple', body));
