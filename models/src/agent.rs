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
    /// What the agent is asked first for (a category such as `billing`, a language such as
    /// `de`, or a team's own word): lowercase, sorted, see `skills_from`.
    #[serde(default)]
    pub skills: Vec<String>,
}

/// Skills an account carries at most.
pub const MAX_SKILLS: usize = 20;
/// Characters in one skill at most.
pub const MAX_SKILL_CHARS: usize = 32;

/// Skills as people type them ("Billing, de  technical_support"): split at commas and
/// whitespace, then checked as `skills_checked`.
pub fn skills_from(text: &str) -> Result<Vec<String>, String> {
    skills_checked(text.split([',', ' ', '\t', '\n']))
}

/// Skills one by one: lowercased, blanks and duplicates dropped, sorted. Each is 1-32
/// characters of a-z, 0-9, `_` and `-`.
pub fn skills_checked<'a>(given: impl IntoIterator<Item = &'a str>) -> Result<Vec<String>, String> {
    let mut skills: Vec<String> = given.into_iter().map(|s| s.trim().to_lowercase()).filter(|s| !s.is_empty()).collect();
    skills.sort();
    skills.dedup();
    if let Some(bad) = skills.iter().find(|s| s.chars().count() > MAX_SKILL_CHARS || !s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')) {
        let shown: String = bad.chars().take(MAX_SKILL_CHARS).collect();
        return Err(format!("`{shown}` is not a skill: use 1-{MAX_SKILL_CHARS} characters of a-z, 0-9, _ and -, such as billing or de"));
    }
    if skills.len() > MAX_SKILLS {
        return Err(format!("{} skills given; an account has at most {MAX_SKILLS}", skills.len()));
    }
    Ok(skills)
}

impl Agent {
    /// How many of `wanted` (what a conversation is about: its category, its language) the
    /// agent's skills cover.
    pub fn skills_matching(&self, wanted: &[&str]) -> usize {
        wanted.iter().filter(|w| self.skills.iter().any(|s| s == *w)).count()
    }
}

#[cfg(test)]
mod skills_tests {
    use super::{skills_checked, skills_from};

    #[test]
    fn skills_are_read_as_people_type_them() {
        assert_eq!(skills_from("Billing, de  technical_support,de").unwrap(), ["billing", "de", "technical_support"]);
        assert_eq!(skills_from(" ").unwrap(), Vec::<String>::new());
        let wrong = skills_from("billing, café").unwrap_err();
        assert!(wrong.contains("`café` is not a skill"), "{wrong}");
        let many: Vec<String> = (0..21).map(|n| format!("s{n}")).collect();
        assert!(skills_from(&many.join(",")).unwrap_err().contains("at most 20"));
        assert!(skills_from(&"x".repeat(33)).is_err());
        assert!(skills_checked(["two words"]).unwrap_err().contains("`two words` is not a skill"), "one skill is one word");
    }
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
