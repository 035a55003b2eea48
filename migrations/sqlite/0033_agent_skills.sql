-- What each agent is asked first for: categories, languages or a team's own words,
-- comma-separated, lowercase and sorted (empty: none). Auto-assignment prefers the agent
-- with room whose skills cover most of a waiting conversation's category and language.
ALTER TABLE agents ADD COLUMN skills TEXT NOT NULL DEFAULT '';
