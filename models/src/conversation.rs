use crate::{AgentId, Category, Channel, ContactId, ConversationId, IntentName, Priority, Status, Timestamp};
use serde::{Deserialize, Serialize};

/// Who answers the conversation now. The bot answers only when this is `Bot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "agent_id", rename_all = "snake_case")]
pub enum Handler {
    Bot,
    /// Escalated, waiting for an agent.
    Queue,
    Agent(AgentId),
}

/// Why the bot handed a conversation to people; shown to the agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EscalationReason {
    HumanRequested,
    AlwaysHumanIntent { intent: IntentName },
    LowConfidence { times: u32 },
    NegativeSentiment { sentiment: f32 },
    Urgent,
    /// The customer sent files for a person to look at.
    DocumentReview,
}

impl EscalationReason {
    /// One line for agents.
    pub fn describe(&self) -> String {
        match self {
            Self::HumanRequested => "The customer asked for a person.".to_string(),
            Self::AlwaysHumanIntent { intent } => {
                format!("Intent `{intent}` is always handled by a person.")
            }
            Self::LowConfidence { times } => {
                format!("The bot did not understand the customer {times} times in a row.")
            }
            Self::NegativeSentiment { sentiment } => {
                format!("The customer sounds upset (sentiment {sentiment:.2}).")
            }
            Self::Urgent => "The customer says it is urgent.".to_string(),
            Self::DocumentReview => "The customer sent a file to review.".to_string(),
        }
    }
}

/// The ticket fields set when a conversation is escalated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Escalation {
    pub reason: EscalationReason,
    pub summary: String,
    pub at: Timestamp,
}

/// A customer as known on one channel (a Telegram user, a widget visitor, an email address).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contact {
    pub id: ContactId,
    pub channel: Channel,
    /// The channel's own identity of the customer.
    pub external_id: String,
    pub display_name: Option<String>,
    pub created_at: Timestamp,
    /// Set when the channel said messages can no longer reach the customer (e.g. bot blocked).
    pub unreachable_since: Option<Timestamp>,
}

/// The state `step` works on: one conversation of one contact on one channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    pub id: ConversationId,
    pub contact_id: ContactId,
    pub channel: Channel,
    pub handler: Handler,
    pub status: Status,
    pub category: Option<Category>,
    pub priority: Option<Priority>,
    pub escalation: Option<Escalation>,
    /// Customer messages in a row the bot was unsure of.
    pub low_confidence_streak: u32,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Conversation {
    pub fn new(contact_id: ContactId, channel: Channel, now: Timestamp) -> Self {
        Self {
            id: ConversationId::new(),
            contact_id,
            channel,
            handler: Handler::Bot,
            status: Status::Open,
            category: None,
            priority: None,
            escalation: None,
            low_confidence_streak: 0,
            created_at: now,
            updated_at: now,
        }
    }
}
