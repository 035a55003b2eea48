-- Customers found by any part of their name or channel id: the two, lower-cased, in one stored
-- column with a trigram index that answers LIKE substrings of three or more characters (ILIKE
-- on the raw columns made the planner expect a cheap scan that took 110 ms at 100,000
-- customers). pg_trgm ships with PostgreSQL and is a trusted extension (PostgreSQL 13+): the
-- database's owner may create it.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
ALTER TABLE contacts ADD COLUMN search_text TEXT
    GENERATED ALWAYS AS (lower(COALESCE(display_name, '') || E'\n' || external_id)) STORED;
CREATE INDEX contacts_search_text ON contacts USING GIN (search_text gin_trgm_ops);

-- Message words as the search reads them (runs of letters and digits, as SQLite's FTS5 splits
-- them): the 'simple' parser alone kept "SB-4242" as 'sb' and '-4242' and an address as one
-- token, so a search for 4242 or for example.com's "com" found nothing. Stored, so a search for
-- a common word, which walks the newest messages instead of the index, reads the words rather
-- than parsing every body again.
DROP INDEX messages_body_search;
ALTER TABLE messages ADD COLUMN body_words tsvector
    GENERATED ALWAYS AS (to_tsvector('simple', regexp_replace(body, '[[:punct:]]+', ' ', 'g'))) STORED;
CREATE INDEX messages_body_words ON messages USING GIN (body_words);
