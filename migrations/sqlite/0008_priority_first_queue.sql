-- The queue in the order it is worked: urgent, high, medium, low, none, then waiting longest
-- (ports::next_in_line_key; the store's NEXT_IN_LINE_KEY is the same expression).
CREATE INDEX conversations_next_in_line ON conversations (
    ((CASE priority WHEN 'urgent' THEN 0 WHEN 'high' THEN 1 WHEN 'medium' THEN 2 WHEN 'low' THEN 3 ELSE 4 END) * 10000000000000
        + COALESCE(escalated_at, created_at)),
    id
) WHERE handler = 'queue';
