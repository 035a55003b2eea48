-- The language the customer last wrote in (ISO 639-1, when the classifier could tell): the
-- bot's notices use that language's texts where `[closing.languages.<code>]` configures them.
ALTER TABLE conversations ADD COLUMN language TEXT;
