//! Domain types of Switchboard: ids, channels, conversations, messages, classifications and events.
//! No I/O, no async, no storage or HTTP types: every other crate speaks in these.

mod agent;
mod attachment;
mod classification;
mod conversation;
mod document;
mod enums;
mod identity;
mod ids;
mod message;

pub use agent::{Agent, ApiToken, AuditEntry, CannedResponse, MAX_SKILLS, Notification, skills_checked, skills_from};
pub use attachment::Attachment;
pub use document::Document;
pub use classification::{Classification, ClassificationSource, DETECTED_LANGUAGES, Embedding, IntentName, IntentScore, Judgement, Urgency, reported_language};
pub use conversation::{customer_label, Awaiting, Contact, Conversation, ConversationEvent, Escalation, EscalationReason, EscalationRecord, Handler, Rating, SlaNotices};
pub use enums::{AuditAction, Category, Channel, DeliveryState, DocumentState, EventKind, IntentsOrigin, LinkProof, Need, NotificationKind, Presence, Priority, Role, Sender, Status, UnknownVariant, WebhookEvent};
pub use identity::{ContactLink, LinkCode};
pub use ids::{AgentId, ContactId, ConversationId, DocumentId, LinkId, MessageId};
pub use message::{Delivery, DomainEvent, Inbound, Message, OutboundMessage, Thread};

/// Instants are UTC everywhere; the alias keeps signatures short.
pub type Timestamp = chrono::DateTime<chrono::Utc>;
