-- Customers found by any part of their name or channel id: trigram indexes answer ILIKE
-- substrings of three or more characters. pg_trgm ships with PostgreSQL and is a trusted
-- extension (PostgreSQL 13+): the database's owner may create it.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX contacts_name_trigram ON contacts USING GIN (display_name gin_trgm_ops);
CREATE INDEX contacts_external_id_trigram ON contacts USING GIN (external_id gin_trgm_ops);

-- Message words as the search reads them (runs of letters and digits, as SQLite's FTS5 splits
-- them): the 'simple' parser alone kept "SB-4242" as 'sb' and '-4242' and an address as one
-- token, so a search for 4242 or for example.com's "com" found nothing.
DROP INDEX messages_body_search;
CREATE INDEX messages_body_words ON messages USING GIN (to_tsvector('simple', regexp_replace(body, '[[:punct:]]+', ' ', 'g')));
