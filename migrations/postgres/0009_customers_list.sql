-- The customers list, newest first, a page at a time (keyset on created_at, id).
CREATE INDEX contacts_newest ON contacts (created_at, id);
