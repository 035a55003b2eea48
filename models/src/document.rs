use crate::{AgentId, Attachment, Channel, ContactId, ConversationId, DocumentId, DocumentState, Timestamp};
use serde::{Deserialize, Serialize};

/// A file a customer sent for review (a proof of payment, an ID, an invoice), with its type and
/// where the review stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    pub id: DocumentId,
    pub conversation_id: ConversationId,
    pub contact_id: ContactId,
    pub channel: Channel,
    /// The customer message that carried it.
    pub message_seq: i64,
    pub file: Attachment,
    /// The document type, one of `[documents] types` ("proof_of_payment").
    pub kind: String,
    pub state: DocumentState,
    pub reviewer_id: Option<AgentId>,
    pub decided_at: Option<Timestamp>,
    /// Why it was rejected (required then), or the reviewer's remark.
    pub note: Option<String>,
    pub created_at: Timestamp,
    /// When retention removed the file (the record stays).
    pub purged_at: Option<Timestamp>,
}
