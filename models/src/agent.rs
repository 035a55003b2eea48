use crate::{AgentId, Presence, Role, Timestamp};
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
