//! Row ↔ domain conversions. Text columns holding enums are parsed, never trusted.

use crate::sqlite::backend;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use switchboard_core::ports::StoreError;
use switchboard_models::{
    Agent, AgentId, AuditEntry, Contact, ContactId, Conversation, ConversationId, Escalation, Handler, Message,
    MessageId, Timestamp,
};

pub(crate) fn millis(at: Timestamp) -> i64 {
    at.timestamp_millis()
}

fn instant(ms: i64) -> Result<Timestamp, StoreError> {
    chrono::DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {ms} out of range")))
}

pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("domain types serialise to JSON")
}

fn from_json<T: serde::de::DeserializeOwned>(column: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("column {column}: {e}")))
}

fn parsed<T: std::str::FromStr>(column: &str, text: &str) -> Result<T, StoreError>
where
    T::Err: std::fmt::Display,
{
    text.parse().map_err(|e| StoreError::Corrupt(format!("column {column}: {e}")))
}

fn uuid_col(row: &SqliteRow, column: &str) -> Result<uuid::Uuid, StoreError> {
    let text: String = row.try_get(column).map_err(backend)?;
    parsed(column, &text)
}

fn optional<T: std::str::FromStr>(row: &SqliteRow, column: &str) -> Result<Option<T>, StoreError>
where
    T::Err: std::fmt::Display,
{
    let text: Option<String> = row.try_get(column).map_err(backend)?;
    text.map(|t| parsed(column, &t)).transpose()
}

pub(crate) fn contact_from_row(row: &SqliteRow) -> Result<Contact, StoreError> {
    contact_from_columns(row, ["id", "channel", "external_id", "display_name", "created_at"])
}

/// A contact selected beside a conversation, with its columns renamed to not collide.
pub(crate) fn contact_from_prefixed_row(row: &SqliteRow) -> Result<Contact, StoreError> {
    contact_from_columns(
        row,
        ["contact_id_", "contact_channel", "contact_external_id", "display_name", "contact_created_at"],
    )
}

fn contact_from_columns(row: &SqliteRow, [id, channel, external_id, name, created]: [&str; 5]) -> Result<Contact, StoreError> {
    Ok(Contact {
        id: ContactId(uuid_col(row, id)?),
        channel: parsed(channel, &row.try_get::<String, _>(channel).map_err(backend)?)?,
        external_id: row.try_get(external_id).map_err(backend)?,
        display_name: row.try_get(name).map_err(backend)?,
        created_at: instant(row.try_get(created).map_err(backend)?)?,
        unreachable_since: row
            .try_get::<Option<i64>, _>("unreachable_since")
            .map_err(backend)?
            .map(instant)
            .transpose()?,
    })
}

pub(crate) fn agent_from_row(row: &SqliteRow) -> Result<Agent, StoreError> {
    Ok(Agent {
        id: AgentId(uuid_col(row, "id")?),
        email: row.try_get("email").map_err(backend)?,
        name: row.try_get("name").map_err(backend)?,
        role: parsed("role", &row.try_get::<String, _>("role").map_err(backend)?)?,
        presence: parsed("presence", &row.try_get::<String, _>("presence").map_err(backend)?)?,
        capacity: row.try_get::<i64, _>("capacity").map_err(backend)? as u32,
        active: row.try_get("active").map_err(backend)?,
        created_at: instant(row.try_get("created_at").map_err(backend)?)?,
    })
}

pub(crate) fn conversation_from_row(row: &SqliteRow) -> Result<Conversation, StoreError> {
    let handler_text: String = row.try_get("handler").map_err(backend)?;
    let agent: Option<uuid::Uuid> = optional(row, "agent_id")?;
    let handler = match (handler_text.as_str(), agent) {
        ("bot", None) => Handler::Bot,
        ("queue", None) => Handler::Queue,
        ("agent", Some(id)) => Handler::Agent(AgentId(id)),
        (other, _) => return Err(StoreError::Corrupt(format!("handler `{other}` with agent {agent:?}"))),
    };
    let reason: Option<String> = row.try_get("escalation_reason").map_err(backend)?;
    let escalation = match reason {
        Some(reason) => Some(Escalation {
            reason: from_json("escalation_reason", &reason)?,
            summary: row
                .try_get::<Option<String>, _>("escalation_summary")
                .map_err(backend)?
                .unwrap_or_default(),
            at: instant(
                row.try_get::<Option<i64>, _>("escalated_at").map_err(backend)?.unwrap_or_default(),
            )?,
        }),
        None => None,
    };
    Ok(Conversation {
        id: ConversationId(uuid_col(row, "id")?),
        contact_id: ContactId(uuid_col(row, "contact_id")?),
        channel: parsed("channel", &row.try_get::<String, _>("channel").map_err(backend)?)?,
        handler,
        status: parsed("status", &row.try_get::<String, _>("status").map_err(backend)?)?,
        category: optional(row, "category")?,
        priority: optional(row, "priority")?,
        escalation,
        low_confidence_streak: row.try_get::<i64, _>("low_confidence_streak").map_err(backend)? as u32,
        created_at: instant(row.try_get("created_at").map_err(backend)?)?,
        updated_at: instant(row.try_get("updated_at").map_err(backend)?)?,
    })
}

pub(crate) fn message_from_row(row: &SqliteRow) -> Result<Message, StoreError> {
    let classification: Option<String> = row.try_get("classification").map_err(backend)?;
    Ok(Message {
        id: MessageId(uuid_col(row, "id")?),
        seq: row.try_get("seq").map_err(backend)?,
        conversation_id: ConversationId(uuid_col(row, "conversation_id")?),
        contact_id: ContactId(uuid_col(row, "contact_id")?),
        channel: parsed("channel", &row.try_get::<String, _>("channel").map_err(backend)?)?,
        sender: parsed("sender", &row.try_get::<String, _>("sender").map_err(backend)?)?,
        agent_id: optional::<uuid::Uuid>(row, "agent_id")?.map(AgentId),
        text: row.try_get("body").map_err(backend)?,
        internal: row.try_get("internal").map_err(backend)?,
        attachments: from_json("attachments", &row.try_get::<String, _>("attachments").map_err(backend)?)?,
        quick_replies: from_json("quick_replies", &row.try_get::<String, _>("quick_replies").map_err(backend)?)?,
        classification: classification.map(|c| from_json("classification", &c)).transpose()?,
        external_id: row.try_get("external_id").map_err(backend)?,
        created_at: instant(row.try_get("created_at").map_err(backend)?)?,
    })
}

pub(crate) fn audit_from_row(row: &SqliteRow) -> Result<AuditEntry, StoreError> {
    Ok(AuditEntry {
        at: instant(row.try_get("at").map_err(backend)?)?,
        actor: optional::<uuid::Uuid>(row, "actor_id")?.map(AgentId),
        action: parsed("action", &row.try_get::<String, _>("action").map_err(backend)?)?,
        conversation: optional::<uuid::Uuid>(row, "conversation_id")?.map(ConversationId),
        subject_agent: optional::<uuid::Uuid>(row, "subject_agent")?.map(AgentId),
        before: row.try_get("before_state").map_err(backend)?,
        after: row.try_get("after_state").map_err(backend)?,
    })
}

pub(crate) fn summary_from_row(row: &SqliteRow) -> Result<switchboard_core::ConversationSummary, StoreError> {
    Ok(switchboard_core::ConversationSummary {
        conversation: conversation_from_row(row)?,
        customer: row.try_get("customer").map_err(backend)?,
        agent_name: row.try_get("agent_name").map_err(backend)?,
        last_text: row.try_get("last_text").map_err(backend)?,
        last_activity: instant(row.try_get("last_activity").map_err(backend)?)?,
    })
}
