-- Customers found by any part of their name or channel id: a trigram index answers substrings of
-- three or more characters in any case, filled from the contacts already stored and kept in step
-- by triggers. It keeps its own copy of the two columns: contacts has no stable integer key.
CREATE VIRTUAL TABLE contacts_search USING fts5(contact_id UNINDEXED, display_name, external_id, tokenize = 'trigram');
INSERT INTO contacts_search (contact_id, display_name, external_id)
    SELECT id, COALESCE(display_name, ''), external_id FROM contacts;
CREATE TRIGGER contacts_search_insert AFTER INSERT ON contacts BEGIN
    INSERT INTO contacts_search (contact_id, display_name, external_id)
        VALUES (new.id, COALESCE(new.display_name, ''), new.external_id);
END;
-- Every message upserts its contact; only a real change of name or id touches the index.
CREATE TRIGGER contacts_search_update AFTER UPDATE OF display_name, external_id ON contacts
WHEN old.display_name IS NOT new.display_name OR old.external_id IS NOT new.external_id BEGIN
    DELETE FROM contacts_search WHERE contact_id = old.id;
    INSERT INTO contacts_search (contact_id, display_name, external_id)
        VALUES (new.id, COALESCE(new.display_name, ''), new.external_id);
END;
CREATE TRIGGER contacts_search_delete AFTER DELETE ON contacts BEGIN
    DELETE FROM contacts_search WHERE contact_id = old.id;
END;
