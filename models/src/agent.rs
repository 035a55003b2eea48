use crate::{AgentId, AuditAction, ConversationId, Presence, Role, Timestamp};
use serde::{Deserialize, Serialize};

/// A person who answers escalated conversations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agent {
    pub id: AgentId,
    pub email: String,
    /// Shown to customers when the agent joins.
    pub name: String,
    pub role: Role,
    pub presence: Presence,
    /// Open conversations the agent takes at most.
    pub capacity: u32,
    pub active: bool,
    pub created_at: Timestamp,
}

/// One line of the audit log: who did what, when, and the state before → after.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub at: Timestamp,
    /// `None` for Switchboard itself (auto-assignment).
    pub actor: Option<AgentId>,
    pub action: AuditAction,
    pub conversation: Option<ConversationId>,
    /// Another account the action was about (presence of, account created).
    pub subject_agent: Option<AgentId>,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// Something an agent is told in the panel: an assignment, their customer's reply, a mention in
/// a note, an SLA about to be (or already) missed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Increasing: newer notifications have larger ids.
    pub id: i64,
    pub agent_id: AgentId,
    pub kind: crate::NotificationKind,
    pub conversation_id: Option<ConversationId>,
    pub text: String,
    pub created_at: Timestamp,
    pub read_at: Option<Timestamp>,
}

/// A reply agents insert instead of typing it again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CannedResponse {
    pub id: uuid::Uuid,
    pub title: String,
    pub body: String,
    pub created_by: Option<AgentId>,
    pub created_at: Timestamp,
    /// Shared with everyone (admins manage it), or personal to `created_by` (only they do).
    pub shared: bool,
}

/// An API token's public half: what it is called and whose it is (the secret is never stored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiToken {
    pub id: uuid::Uuid,
    pub agent: AgentId,
    pub name: String,
    pub created_at: Timestamp,
}
