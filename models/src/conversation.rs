use crate::{AgentId, Category, Channel, ContactId, ConversationId, IntentName, Need, Priority, Status, Timestamp};
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
    /// The customer said an agent's resolution did not fix it.
    NotFixed,
    /// The trained judgement says a person should take this now: a harm report, an angry or
    /// stuck customer, money taken wrongly.
    NeedsPerson { need: Need, likelihood: f32 },
}

impl EscalationReason {
    /// The reason's kind as stored and reported (its JSON tag).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::HumanRequested => "human_requested",
            Self::AlwaysHumanIntent { .. } => "always_human_intent",
            Self::LowConfidence { .. } => "low_confidence",
            Self::NegativeSentiment { .. } => "negative_sentiment",
            Self::Urgent => "urgent",
            Self::DocumentReview => "document_review",
            Self::NotFixed => "not_fixed",
            Self::NeedsPerson { .. } => "needs_person",
        }
    }

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
            Self::NotFixed => "The customer says the resolution did not fix it.".to_string(),
            Self::NeedsPerson { need, likelihood } => {
                let what = match need {
                    Need::HarmReport => "reports harm (fraud, a takeover, a safety issue or an outage)",
                    Need::Complaint => "is unhappy",
                    Need::HumanRequest => "asked for a person",
                    _ => "needs a person",
                };
                format!("The customer {what} ({:.0} % sure).", likelihood * 100.0)
            }
        }
    }
}

/// The SLA warnings and breaches already announced for a conversation's current clocks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlaNotices(pub u8);

impl SlaNotices {
    pub const FIRST_REPLY_WARNING: u8 = 1;
    pub const FIRST_REPLY_BREACH: u8 = 2;
    pub const RESOLUTION_WARNING: u8 = 4;
    pub const RESOLUTION_BREACH: u8 = 8;

    pub fn has(self, notice: u8) -> bool {
        self.0 & notice != 0
    }

    pub fn with(self, notice: u8) -> Self {
        Self(self.0 | notice)
    }
}

/// What the bot waits for from the customer once a person's work ended. While it waits, a
/// "yes" or a "4" is an answer to the question asked, not a message to classify.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Awaiting {
    /// "Ann marked this as solved. Did that fix it?"
    Confirmation { agent: AgentId, agent_name: String, resolved_at: Timestamp },
    /// A rating, 1 to 5, of the help `agent` gave up to the resolution of `resolved_at`.
    Rating { agent: AgentId, agent_name: String, resolved_at: Timestamp },
    /// An optional comment to the rating of that resolution.
    Comment { resolved_at: Timestamp },
    /// The bot asked for a document of this type: the file sent next is it.
    Document { document_type: String },
}

/// A customer's rating of one resolution, with their comment if they left one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rating {
    pub conversation_id: ConversationId,
    /// The agent who resolved the conversation.
    pub agent_id: Option<AgentId>,
    pub channel: Channel,
    /// The resolution rated: one rating each.
    pub resolved_at: Timestamp,
    pub score: u8,
    pub comment: Option<String>,
    pub created_at: Timestamp,
}

/// One escalation of a conversation, kept as it was decided (a later one does not overwrite it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EscalationRecord {
    pub conversation_id: ConversationId,
    pub at: Timestamp,
    pub reason: EscalationReason,
    /// The model's confidence in the intent of the message that escalated.
    pub confidence: Option<f32>,
    pub priority: Option<Priority>,
    pub category: Option<Category>,
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
    /// Why, in plain words ("The customer blocked the bot on Telegram.").
    #[serde(default)]
    pub unreachable_reason: Option<String>,
    /// An address the customer left to be answered at (not verified).
    #[serde(default)]
    pub email: Option<String>,
}

impl Contact {
    /// What a person reads for this customer: see [`customer_label`].
    pub fn label(&self) -> String {
        customer_label(self.display_name.as_deref(), &self.external_id, self.channel)
    }
}

/// A customer's name, or a short readable label instead of a channel's opaque id:
/// "Visitor 4821 · web chat" for an anonymous widget visitor, "Telegram user 123456" for a
/// Telegram chat without a name. Email addresses are readable already and stay as they are.
pub fn customer_label(display_name: Option<&str>, external_id: &str, channel: Channel) -> String {
    if let Some(name) = display_name.map(str::trim).filter(|name| !name.is_empty()) {
        return name.to_string();
    }
    match channel {
        Channel::WebChat => format!("Visitor {} · web chat", visitor_number(external_id)),
        Channel::Telegram => format!("Telegram user {external_id}"),
        Channel::Discord => format!("Discord user {external_id}"),
        Channel::Email => external_id.to_string(),
    }
}

/// A stable four-digit number for a visitor id (FNV-1a), easy to say aloud and to tell apart.
fn visitor_number(external_id: &str) -> u32 {
    let hash = external_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3));
    1000 + (hash % 9000) as u32
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
    /// When a customer waiting in the queue was last told their place (the handoff counts).
    #[serde(default)]
    pub waiting_notice_at: Option<Timestamp>,
    /// When the first agent reply is due (the SLA of its priority), until one is sent.
    #[serde(default)]
    pub first_reply_due_at: Option<Timestamp>,
    /// When resolution is due, until the conversation is resolved.
    #[serde(default)]
    pub resolution_due_at: Option<Timestamp>,
    /// Which SLA warnings and breaches were announced already: each only once.
    #[serde(default)]
    pub sla_notices: SlaNotices,
    /// What the bot waits for from the customer after a resolution, if anything.
    #[serde(default)]
    pub awaiting: Option<Awaiting>,
    /// The language the customer last wrote in (ISO 639-1), when the classifier could tell:
    /// the bot's notices use that language's texts where they are configured.
    #[serde(default)]
    pub language: Option<String>,
    /// How many times the stored row had been rewritten when this copy was read (0: never
    /// stored). A write of this copy is refused when the row has moved on since.
    pub version: i64,
}

impl Conversation {
    /// What the conversation is about, as agents' skills name it: its category and language.
    pub fn wanted_skills(&self) -> Vec<&str> {
        self.category.map(|c| c.as_str()).into_iter().chain(self.language.as_deref()).collect()
    }

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
            waiting_notice_at: None,
            first_reply_due_at: None,
            resolution_due_at: None,
            sla_notices: SlaNotices::default(),
            awaiting: None,
            language: None,
            version: 0,
        }
    }
}

/// One thing that happened to a conversation, written with the step that made it happen. It
/// carries what the reports group by, as it was at that moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationEvent {
    pub conversation_id: ConversationId,
    pub kind: crate::EventKind,
    pub at: Timestamp,
    pub channel: Channel,
    /// The agent it happened to or by: assigned to, replying, resolving.
    pub agent_id: Option<AgentId>,
    pub category: Option<Category>,
    pub priority: Option<Priority>,
    /// For `escalated`: the reason's kind (`human_requested`, `urgent`, ...); for `first_reply`
    /// and `resolved` under an SLA: `sla_met` or `sla_missed`.
    pub reason: Option<String>,
    /// For `first_reply`: how long the customer waited for a person (since the escalation, or
    /// the start); for `resolved`: how long the conversation had been open. Milliseconds.
    pub wait_ms: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn customers_without_a_name_get_a_readable_label() {
        let visitor = "3f1c2a9e-5b7d-4e21-9c0a-6d8e2f4b1a77";
        let label = customer_label(None, visitor, Channel::WebChat);
        assert!(label.starts_with("Visitor ") && label.ends_with(" · web chat"), "{label}");
        let number: u32 = label["Visitor ".len().."Visitor ".len() + 4].parse().unwrap();
        assert!((1000..10000).contains(&number));
        assert_eq!(customer_label(None, visitor, Channel::WebChat), label, "the same visitor keeps their number");
        assert_ne!(customer_label(None, "another-visitor", Channel::WebChat), label);
        assert_eq!(customer_label(Some("  Ann "), visitor, Channel::WebChat), "Ann");
        assert_eq!(customer_label(Some(""), "4242", Channel::Telegram), "Telegram user 4242");
        assert_eq!(customer_label(None, "ann@example.com", Channel::Email), "ann@example.com");
    }
}

