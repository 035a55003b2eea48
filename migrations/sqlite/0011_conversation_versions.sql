-- Every write of a conversation's state names the version it read and is refused when the row
-- has moved on since (another node, or an agent, changed it): no change is ever overwritten.
-- A stored row's version starts at 1; 0 means a conversation not stored yet.
ALTER TABLE conversations ADD COLUMN version BIGINT NOT NULL DEFAULT 1;
