use crate::{
    AgentId, Attachment, Channel, Classification, ContactId, Conversation, ConversationId, DeliveryState, MessageId,
    Sender, Timestamp,
};
use serde::{Deserialize, Serialize};

/// A customer message as a channel adapter hands it to the engine.
#[derive(Debug, Clone, PartialEq)]
pub struct Inbound {
    pub channel: Channel,
    /// The channel's id of the message (Telegram update id, Message-ID, the widget's client id).
    /// Unique per channel: a second message with the same id is a duplicate and changes nothing.
    pub external_id: String,
    /// The channel's identity of the sender.
    pub sender_external_id: String,
    pub sender_name: Option<String>,
    /// May be empty when the message carries attachments.
    pub text: String,
    /// Already stored (see `Engine::accept_upload`).
    pub attachments: Vec<Attachment>,
    /// The channel's raw original when the text is a cleaned-up view of it (a whole email).
    pub original: Option<Attachment>,
    /// Which conversation the message belongs to, when the channel can tell.
    pub thread: Thread,
    pub received_at: Timestamp,
    /// The language the channel reports for the sender, as it gave it (an IETF tag such as
    /// `pt-BR`): the bot's language when the text does not tell.
    pub reported_language: Option<String>,
}

/// Where an inbound message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Thread {
    /// The contact's current conversation, or a new one if there is none (chat channels).
    #[default]
    Current,
    /// This conversation, if it is the contact's and still open; else a new one.
    Continue(ConversationId),
    /// Always a new conversation (e.g. an email that replies to nothing of ours).
    New,
}

/// A stored message of any sender.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub id: MessageId,
    /// Store-assigned, increasing: the cursor for history and live catch-up.
    pub seq: i64,
    pub conversation_id: ConversationId,
    pub contact_id: ContactId,
    pub channel: Channel,
    pub sender: Sender,
    pub agent_id: Option<AgentId>,
    pub text: String,
    pub attachments: Vec<Attachment>,
    /// An agents' note: stored with the conversation, never shown or sent to the customer.
    #[serde(default)]
    pub internal: bool,
    /// Buttons the customer may tap instead of typing.
    pub quick_replies: Vec<String>,
    pub classification: Option<Classification>,
    pub external_id: Option<String>,
    pub created_at: Timestamp,
    /// For a reply going out on the channel: what happened to it. None for everything else.
    #[serde(default)]
    pub delivery: Option<Delivery>,
}

/// What happened to one outgoing message, as the outbox recorded it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    pub state: DeliveryState,
    /// Attempts so far.
    pub attempts: u32,
    /// When the next attempt is due, while retrying.
    pub next_attempt_at: Option<Timestamp>,
    /// When the channel accepted it, and the channel's id for it where it gives one.
    pub sent_at: Option<Timestamp>,
    pub sent_id: Option<String>,
    /// When the customer saw it (web chat).
    pub seen_at: Option<Timestamp>,
    /// When delivery was given up.
    pub failed_at: Option<Timestamp>,
    /// The last failure's reason, in plain words.
    pub error: Option<String>,
}

impl Delivery {
    /// The state the recorded times add up to: a failure or a sighting beats a send, a send beats retrying.
    pub fn state_of(attempts: u32, sent_at: Option<Timestamp>, seen_at: Option<Timestamp>, failed_at: Option<Timestamp>) -> DeliveryState {
        match (failed_at, seen_at, sent_at) {
            (Some(_), _, _) => DeliveryState::Failed,
            (None, Some(_), _) => DeliveryState::Seen,
            (None, None, Some(_)) => DeliveryState::Sent,
            (None, None, None) if attempts > 0 => DeliveryState::Retrying,
            _ => DeliveryState::Queued,
        }
    }
}

/// A stored reply waiting to be delivered on its channel (the outbox is the set of these).
#[derive(Debug, Clone, PartialEq)]
pub struct OutboundMessage {
    /// Delivery attempts so far.
    pub attempts: u32,
    /// Set by a manual retry: the retry window runs from then instead of from `created_at`.
    pub retry_from: Option<Timestamp>,
    pub message: Message,
    /// The contact's identity on the channel, where the message goes.
    pub recipient_external_id: String,
}

/// What happened, published on the event bus after commit.
#[derive(Debug, Clone, PartialEq)]
pub enum DomainEvent {
    MessageStored(Message),
    ConversationChanged(Conversation),
    /// An agent took (or was given) the conversation.
    Assigned { conversation: Conversation, agent: AgentId },
    /// A reply's delivery changed: sent, seen, retrying or failed (the message as it is now).
    DeliveryChanged(Message),
    /// An agent (`None`: every admin) was notified; the notification is stored already.
    Notified { to: Option<AgentId>, kind: crate::NotificationKind, conversation: Option<ConversationId>, text: String },
    /// Someone is typing in the conversation: the agent `agent_name`, or (`None`) the customer.
    /// Nothing is stored; a cue for the other side's open view.
    Typing { conversation: ConversationId, agent_name: Option<String> },
    /// An agent opened the conversation and saw the customer's messages up to `up_to_seq`.
    SeenByAgent { conversation: ConversationId, up_to_seq: i64 },
    /// The bot's intents: version `version` was recorded (`in_use` false; every node trains
    /// it), or this node put it in use (`in_use` true; this node's news only).
    IntentsChanged { version: i64, in_use: bool },
    /// An agent became online, away or offline (stored already).
    PresenceChanged { agent: AgentId, presence: crate::Presence },
    /// Admins changed settings in the panel (stored already): every node applies them.
    SettingsChanged,
}
