-- One agent's reports read the customer messages of that agent's conversations in a period:
-- by conversation, from the index alone (intent and whether it was answered) rather than by
-- scanning the period's messages of every conversation.
CREATE INDEX messages_customer_by_conversation ON messages (conversation_id, created_at, intent, answered_from_intent, confidence)
    WHERE sender = 'customer';
