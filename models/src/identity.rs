use crate::{AgentId, ContactId, LinkId, LinkProof, Timestamp};
use serde::{Deserialize, Serialize};

/// Two people's identities shown to be one person (a Telegram account and a mail address), or
/// two such groups joined. Messages and conversations keep their own contact; the join only
/// groups contacts, so undoing it separates them as they were.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContactLink {
    pub id: LinkId,
    /// The contact that stands for the person the other one joined.
    pub person: ContactId,
    /// The contact (standing for its own group then) that joined them.
    pub joined: ContactId,
    /// Every contact the join moved: the joined one and those already grouped with it.
    pub moved: Vec<ContactId>,
    pub proof: LinkProof,
    /// The agent who joined them by hand.
    pub agent: Option<AgentId>,
    pub at: Timestamp,
    pub undone_at: Option<Timestamp>,
    pub undone_by: Option<AgentId>,
}

/// A one-time code that proves two identities are one person. With `email`, it was mailed to
/// that address and is typed back by `contact`; without, `contact` was shown it and sends it
/// from their other channel.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkCode {
    /// SHA-256 (hex) of the code; the code itself is never stored.
    pub code_hash: String,
    pub contact: ContactId,
    pub email: Option<String>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub used_at: Option<Timestamp>,
}
