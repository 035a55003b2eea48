//! Row ↔ domain conversions. Text columns holding enums are parsed, never trusted.

use sqlx::Row;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use switchboard_core::ports::StoreError;
use switchboard_models::{
    customer_label, Agent, Delivery, DeliveryState, AgentId, AuditEntry, Contact, ContactId, Conversation, ConversationId, Escalation, Handler, Message,
    MessageId, Notification, Timestamp,
};

pub(crate) fn backend(error: sqlx::Error) -> StoreError {
    StoreError::Backend(error.to_string())
}

/// The column types the schema uses, read the same way from either backend's rows.
pub(crate) trait Columns {
    fn text(&self, column: &str) -> Result<String, StoreError>;
    fn text_opt(&self, column: &str) -> Result<Option<String>, StoreError>;
    fn int(&self, column: &str) -> Result<i64, StoreError>;
    fn int_opt(&self, column: &str) -> Result<Option<i64>, StoreError>;
    fn flag(&self, column: &str) -> Result<bool, StoreError>;
    fn flag_opt(&self, column: &str) -> Result<Option<bool>, StoreError>;
    fn real_opt(&self, column: &str) -> Result<Option<f64>, StoreError>;
    fn bytes_opt(&self, column: &str) -> Result<Option<Vec<u8>>, StoreError>;
}

macro_rules! columns_of {
    ($row:ty) => {
        impl Columns for $row {
            fn text(&self, column: &str) -> Result<String, StoreError> {
                self.try_get(column).map_err(backend)
            }
            fn text_opt(&self, column: &str) -> Result<Option<String>, StoreError> {
                self.try_get(column).map_err(backend)
            }
            fn int(&self, column: &str) -> Result<i64, StoreError> {
                self.try_get(column).map_err(backend)
            }
            fn real_opt(&self, column: &str) -> Result<Option<f64>, StoreError> {
                self.try_get(column).map_err(backend)
            }
            fn int_opt(&self, column: &str) -> Result<Option<i64>, StoreError> {
                self.try_get(column).map_err(backend)
            }
            fn flag(&self, column: &str) -> Result<bool, StoreError> {
                self.try_get(column).map_err(backend)
            }
            fn flag_opt(&self, column: &str) -> Result<Option<bool>, StoreError> {
                self.try_get(column).map_err(backend)
            }
            fn bytes_opt(&self, column: &str) -> Result<Option<Vec<u8>>, StoreError> {
                self.try_get(column).map_err(backend)
            }
        }
    };
}
columns_of!(SqliteRow);
columns_of!(PgRow);

pub(crate) fn millis(at: Timestamp) -> i64 {
    at.timestamp_millis()
}

pub(crate) fn instant_of(ms: i64) -> Result<Timestamp, StoreError> {
    instant(ms)
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

pub(crate) fn parsed<T: std::str::FromStr>(column: &str, text: &str) -> Result<T, StoreError>
where
    T::Err: std::fmt::Display,
{
    text.parse().map_err(|e| StoreError::Corrupt(format!("column {column}: {e}")))
}

fn uuid_col(row: &impl Columns, column: &str) -> Result<uuid::Uuid, StoreError> {
    let text = row.text(column)?;
    parsed(column, &text)
}

pub(crate) fn optional<T: std::str::FromStr>(row: &impl Columns, column: &str) -> Result<Option<T>, StoreError>
where
    T::Err: std::fmt::Display,
{
    let text = row.text_opt(column)?;
    text.map(|t| parsed(column, &t)).transpose()
}

pub(crate) fn contact_from_row(row: &impl Columns) -> Result<Contact, StoreError> {
    contact_from_columns(row, ["id", "channel", "external_id", "display_name", "created_at", "email"])
}

/// A contact selected beside a conversation, with its columns renamed to not collide.
pub(crate) fn contact_from_prefixed_row(row: &impl Columns) -> Result<Contact, StoreError> {
    contact_from_columns(
        row,
        ["contact_id_", "contact_channel", "contact_external_id", "display_name", "contact_created_at", "contact_email"],
    )
}

fn contact_from_columns(row: &impl Columns, [id, channel, external_id, name, created, email]: [&str; 6]) -> Result<Contact, StoreError> {
    Ok(Contact {
        id: ContactId(uuid_col(row, id)?),
        channel: parsed(channel, &row.text(channel)?)?,
        external_id: row.text(external_id)?,
        display_name: row.text_opt(name)?,
        created_at: instant(row.int(created)?)?,
        unreachable_since: row.int_opt("unreachable_since")?
            .map(instant)
            .transpose()?,
        unreachable_reason: row.text_opt("unreachable_reason")?,
        email: row.text_opt(email)?,
    })
}

pub(crate) fn agent_from_row(row: &impl Columns) -> Result<Agent, StoreError> {
    Ok(Agent {
        id: AgentId(uuid_col(row, "id")?),
        email: row.text("email")?,
        name: row.text("name")?,
        role: parsed("role", &row.text("role")?)?,
        presence: parsed("presence", &row.text("presence")?)?,
        capacity: row.int("capacity")? as u32,
        active: row.flag("active")?,
        created_at: instant(row.int("created_at")?)?,
        skills: row.text("skills")?.split(',').filter(|s| !s.is_empty()).map(String::from).collect(),
    })
}

pub(crate) fn conversation_from_row(row: &impl Columns) -> Result<Conversation, StoreError> {
    let handler_text = row.text("handler")?;
    let agent: Option<uuid::Uuid> = optional(row, "agent_id")?;
    let handler = match (handler_text.as_str(), agent) {
        ("bot", None) => Handler::Bot,
        ("queue", None) => Handler::Queue,
        ("agent", Some(id)) => Handler::Agent(AgentId(id)),
        (other, _) => return Err(StoreError::Corrupt(format!("handler `{other}` with agent {agent:?}"))),
    };
    let reason = row.text_opt("escalation_reason")?;
    let escalation = match reason {
        Some(reason) => Some(Escalation {
            reason: from_json("escalation_reason", &reason)?,
            summary: row.text_opt("escalation_summary")?
                .unwrap_or_default(),
            at: instant(
                row.int_opt("escalated_at")?.unwrap_or_default(),
            )?,
        }),
        None => None,
    };
    Ok(Conversation {
        id: ConversationId(uuid_col(row, "id")?),
        contact_id: ContactId(uuid_col(row, "contact_id")?),
        channel: parsed("channel", &row.text("channel")?)?,
        handler,
        status: parsed("status", &row.text("status")?)?,
        category: optional(row, "category")?,
        priority: optional(row, "priority")?,
        escalation,
        low_confidence_streak: row.int("low_confidence_streak")? as u32,
        waiting_notice_at: row.int_opt("waiting_notice_at")?.map(instant).transpose()?,
        first_reply_due_at: row.int_opt("first_reply_due_at")?.map(instant).transpose()?,
        resolution_due_at: row.int_opt("resolution_due_at")?.map(instant).transpose()?,
        sla_notices: switchboard_models::SlaNotices(u8::try_from(row.int("sla_notices")?).unwrap_or(u8::MAX)),
        awaiting: row.text_opt("awaiting")?.map(|text| from_json("awaiting", &text)).transpose()?,
        language: row.text_opt("language")?,
        version: row.int("version")?,
        created_at: instant(row.int("created_at")?)?,
        updated_at: instant(row.int("updated_at")?)?,
    })
}

pub(crate) fn message_from_row(row: &impl Columns) -> Result<Message, StoreError> {
    let classification = row.text_opt("classification")?;
    Ok(Message {
        id: MessageId(uuid_col(row, "id")?),
        seq: row.int("seq")?,
        conversation_id: ConversationId(uuid_col(row, "conversation_id")?),
        contact_id: ContactId(uuid_col(row, "contact_id")?),
        channel: parsed("channel", &row.text("channel")?)?,
        sender: parsed("sender", &row.text("sender")?)?,
        agent_id: optional::<uuid::Uuid>(row, "agent_id")?.map(AgentId),
        text: row.text("body")?,
        internal: row.flag("internal")?,
        attachments: from_json("attachments", &row.text("attachments")?)?,
        quick_replies: from_json("quick_replies", &row.text("quick_replies")?)?,
        classification: classification.map(|c| from_json("classification", &c)).transpose()?,
        external_id: row.text_opt("external_id")?,
        created_at: instant(row.int("created_at")?)?,
        delivery: if row.flag("outbound")? { Some(delivery_from_row(row)?) } else { None },
    })
}

fn delivery_from_row(row: &impl Columns) -> Result<Delivery, StoreError> {
    let time = |column: &str| row.int_opt(column)?.map(instant).transpose();
    let attempts = row.int("attempts")? as u32;
    let (sent_at, seen_at, failed_at) = (time("delivered_at")?, time("seen_at")?, time("gave_up_at")?);
    let state = Delivery::state_of(attempts, sent_at, seen_at, failed_at);
    Ok(Delivery {
        state,
        attempts,
        next_attempt_at: if state == DeliveryState::Retrying { time("next_attempt_at")? } else { None },
        sent_at,
        sent_id: row.text_opt("sent_id")?,
        seen_at,
        failed_at,
        error: row.text_opt("last_error")?,
    })
}

pub(crate) fn notification_from_row(row: &impl Columns) -> Result<Notification, StoreError> {
    Ok(Notification {
        id: row.int("id")?,
        agent_id: AgentId(uuid_col(row, "agent_id")?),
        kind: parsed("kind", &row.text("kind")?)?,
        conversation_id: optional::<uuid::Uuid>(row, "conversation_id")?.map(ConversationId),
        text: row.text("text")?,
        created_at: instant(row.int("created_at")?)?,
        read_at: row.int_opt("read_at")?.map(instant).transpose()?,
    })
}

pub(crate) fn customer_mail_from_row(row: &impl Columns) -> Result<switchboard_core::ports::CustomerMail, StoreError> {
    Ok(switchboard_core::ports::CustomerMail {
        id: row.int("id")?,
        conversation_id: ConversationId(uuid_col(row, "conversation_id")?),
        channel: parsed("channel", &row.text("channel")?)?,
        address: row.text("address")?,
        text: row.text("text")?,
        created_at: instant(row.int("created_at")?)?,
    })
}

pub(crate) fn rating_from_row(row: &impl Columns) -> Result<switchboard_models::Rating, StoreError> {
    Ok(switchboard_models::Rating {
        conversation_id: ConversationId(uuid_col(row, "conversation_id")?),
        agent_id: optional::<uuid::Uuid>(row, "agent_id")?.map(AgentId),
        channel: parsed("channel", &row.text("channel")?)?,
        resolved_at: instant(row.int("resolved_at")?)?,
        score: u8::try_from(row.int("score")?).map_err(|_| StoreError::Corrupt("ratings.score out of range".into()))?,
        comment: row.text_opt("comment")?,
        created_at: instant(row.int("created_at")?)?,
    })
}

pub(crate) fn document_from_row(row: &impl Columns) -> Result<switchboard_models::Document, StoreError> {
    Ok(switchboard_models::Document {
        id: switchboard_models::DocumentId(uuid_col(row, "id")?),
        conversation_id: ConversationId(uuid_col(row, "conversation_id")?),
        contact_id: ContactId(uuid_col(row, "contact_id")?),
        channel: parsed("channel", &row.text("channel")?)?,
        message_seq: row.int("message_seq")?,
        file: switchboard_models::Attachment {
            key: row.text("file_key")?,
            file_name: row.text("file_name")?,
            content_type: row.text("content_type")?,
            size: u64::try_from(row.int("size")?).unwrap_or(0),
            original: false,
        },
        kind: row.text("kind")?,
        state: parsed("state", &row.text("state")?)?,
        reviewer_id: optional::<uuid::Uuid>(row, "reviewer_id")?.map(AgentId),
        decided_at: row.int_opt("decided_at")?.map(instant).transpose()?,
        note: row.text_opt("note")?,
        created_at: instant(row.int("created_at")?)?,
        purged_at: row.int_opt("purged_at")?.map(instant).transpose()?,
    })
}

pub(crate) fn escalation_from_row(row: &impl Columns) -> Result<switchboard_models::EscalationRecord, StoreError> {
    Ok(switchboard_models::EscalationRecord {
        conversation_id: ConversationId(uuid_col(row, "conversation_id")?),
        at: instant(row.int("at")?)?,
        reason: from_json("escalations.reason", &row.text("reason")?)?,
        confidence: row.real_opt("confidence")?.map(|c| c as f32),
        priority: optional(row, "priority")?,
        category: optional(row, "category")?,
    })
}

pub(crate) fn scheduled_job_from_row(row: &impl Columns) -> Result<switchboard_core::ports::ScheduledJob, StoreError> {
    Ok(switchboard_core::ports::ScheduledJob {
        name: row.text("name")?,
        schedule: row.text("schedule")?,
        next_run_at: instant(row.int("next_run_at")?)?,
        last_started_at: row.int_opt("last_started_at")?.map(instant).transpose()?,
        last_node: row.text_opt("last_node")?,
        last_finished_at: row.int_opt("last_finished_at")?.map(instant).transpose()?,
        last_ok: row.flag_opt("last_ok")?,
        last_outcome: row.text_opt("last_outcome")?,
    })
}

pub(crate) fn audit_from_row(row: &impl Columns) -> Result<AuditEntry, StoreError> {
    Ok(AuditEntry {
        at: instant(row.int("at")?)?,
        actor: optional::<uuid::Uuid>(row, "actor_id")?.map(AgentId),
        action: parsed("action", &row.text("action")?)?,
        conversation: optional::<uuid::Uuid>(row, "conversation_id")?.map(ConversationId),
        subject_agent: optional::<uuid::Uuid>(row, "subject_agent")?.map(AgentId),
        before: row.text_opt("before_state")?,
        after: row.text_opt("after_state")?,
    })
}

pub(crate) fn summary_from_row(row: &impl Columns) -> Result<switchboard_core::ConversationSummary, StoreError> {
    let conversation = conversation_from_row(row)?;
    let customer = customer_label(row.text_opt("customer_name")?.as_deref(), &row.text("customer_external_id")?, conversation.channel);
    Ok(switchboard_core::ConversationSummary {
        conversation,
        customer,
        agent_name: row.text_opt("agent_name")?,
        undelivered: row.int("undelivered")? as u32,
        customer_unreachable: row.int_opt("customer_unreachable_since")?.is_some(),
        last_text: row.text_opt("last_text")?,
        // Only a search's rows carry it.
        matched_text: row.text_opt("matched_text").ok().flatten(),
        last_activity: instant(row.int("last_activity")?)?,
    })
}

pub(crate) fn timer_from_row(row: &impl Columns) -> Result<switchboard_core::timers::Timer, StoreError> {
    let kind = row.text("kind")?;
    Ok(switchboard_core::timers::Timer {
        conversation: ConversationId(uuid_col(row, "conversation_id")?),
        kind: switchboard_core::timers::TimerKind::parse(&kind).ok_or_else(|| StoreError::Corrupt(format!("timer kind `{kind}`")))?,
        due_at: instant(row.int("due_at")?)?,
    })
}

/// Claimed timers, earliest first (RETURNING gives no order guarantee).
pub(crate) fn due_first(rows: &[impl Columns]) -> Result<Vec<switchboard_core::timers::Timer>, StoreError> {
    let mut timers = rows.iter().map(timer_from_row).collect::<Result<Vec<_>, StoreError>>()?;
    timers.sort_by_key(|timer| timer.due_at);
    Ok(timers)
}

/// Claimed outbox rows in delivery order (by seq; RETURNING gives no order guarantee).
pub(crate) fn claimed_in_order(rows: &[impl Columns]) -> Result<Vec<switchboard_models::OutboundMessage>, StoreError> {
    let mut claimed = rows.iter().map(outbound_from_row).collect::<Result<Vec<_>, StoreError>>()?;
    claimed.sort_by_key(|o| o.message.seq);
    Ok(claimed)
}

/// A claimed outbox row: the message, its attempts so far and its recipient's channel identity.
fn outbound_from_row(row: &impl Columns) -> Result<switchboard_models::OutboundMessage, StoreError> {
    Ok(switchboard_models::OutboundMessage {
        attempts: row.int("attempts")? as u32,
        retry_from: row.int_opt("retry_from")?.map(instant).transpose()?,
        recipient_external_id: row.text("recipient")?,
        message: message_from_row(row)?,
    })
}

pub(crate) fn contact_link_from_row(row: &impl Columns) -> Result<switchboard_models::ContactLink, StoreError> {
    Ok(switchboard_models::ContactLink {
        id: switchboard_models::LinkId(uuid_col(row, "id")?),
        person: ContactId(uuid_col(row, "person_id")?),
        joined: ContactId(uuid_col(row, "joined_id")?),
        moved: from_json("moved", &row.text("moved")?)?,
        proof: parsed("proof", &row.text("proof")?)?,
        agent: optional::<uuid::Uuid>(row, "agent_id")?.map(AgentId),
        at: instant(row.int("created_at")?)?,
        undone_at: row.int_opt("undone_at")?.map(instant).transpose()?,
        undone_by: optional::<uuid::Uuid>(row, "undone_by")?.map(AgentId),
    })
}

pub(crate) fn link_code_from_row(row: &impl Columns) -> Result<switchboard_models::LinkCode, StoreError> {
    Ok(switchboard_models::LinkCode {
        code_hash: row.text("code_hash")?,
        contact: ContactId(uuid_col(row, "contact_id")?),
        email: row.text_opt("email")?,
        created_at: instant(row.int("created_at")?)?,
        expires_at: instant(row.int("expires_at")?)?,
        used_at: row.int_opt("used_at")?.map(instant).transpose()?,
    })
}

pub(crate) fn intents_version_from_row(row: &impl Columns) -> Result<switchboard_core::ports::IntentsVersion, StoreError> {
    let accuracy = match (row.int_opt("labelled")?, row.real_opt("accuracy_before")?, row.real_opt("accuracy_after")?, row.int_opt("measured_at")?) {
        (Some(labelled), Some(before), Some(after), Some(at)) => Some(switchboard_core::ports::IntentsAccuracy {
            labelled: u32::try_from(labelled).map_err(|e| StoreError::Corrupt(format!("intents_versions.labelled: {e}")))?,
            before,
            after,
            measured_at: instant(at)?,
        }),
        _ => None,
    };
    Ok(switchboard_core::ports::IntentsVersion {
        number: row.int("number")?,
        digest: row.text("digest")?,
        file_digest: row.text("file_digest")?,
        origin: parsed("origin", &row.text("origin")?)?,
        note: row.text("note")?,
        author: optional::<uuid::Uuid>(row, "author_id")?.map(AgentId),
        created_at: instant(row.int("created_at")?)?,
        accuracy,
    })
}

/// Rows of `intent`, `n` and `answered`: customer messages counted per intent.
pub(crate) fn intent_rows(rows: &[impl Columns]) -> Result<Vec<(Option<String>, i64, i64)>, StoreError> {
    rows.iter().map(|row| Ok((row.text_opt("intent")?, row.int("n")?, row.int("answered")?))).collect()
}

pub(crate) fn webhook_from_row(row: &impl Columns) -> Result<switchboard_core::ports::Webhook, StoreError> {
    let events = row.text("events")?;
    Ok(switchboard_core::ports::Webhook {
        id: row.text("id")?,
        url: row.text("url")?,
        events: events.split(',').filter(|e| !e.is_empty()).map(|e| parsed("events", e)).collect::<Result<_, _>>()?,
        secret: row.text("secret")?,
        active: row.flag("active")?,
        description: row.text("description")?,
        consecutive_failures: u32::try_from(row.int("consecutive_failures")?).unwrap_or(u32::MAX),
        disabled_reason: row.text_opt("disabled_reason")?,
        created_by: optional::<uuid::Uuid>(row, "created_by")?.map(AgentId),
        created_at: instant(row.int("created_at")?)?,
        updated_at: instant(row.int("updated_at")?)?,
    })
}

pub(crate) fn webhook_delivery_from_row(row: &impl Columns) -> Result<switchboard_core::ports::WebhookDelivery, StoreError> {
    let state = row.text("state")?;
    Ok(switchboard_core::ports::WebhookDelivery {
        id: row.int("id")?,
        webhook_id: row.text("webhook_id")?,
        event: parsed("event", &row.text("event")?)?,
        event_id: row.text("event_id")?,
        payload: row.text("payload")?,
        state: switchboard_core::ports::WebhookDeliveryState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("column state: unknown webhook delivery state `{state}`")))?,
        attempts: u32::try_from(row.int("attempts")?).unwrap_or(u32::MAX),
        created_at: instant(row.int("created_at")?)?,
        next_attempt_at: instant(row.int("next_attempt_at")?)?,
        last_attempt_at: row.int_opt("last_attempt_at")?.map(instant).transpose()?,
        last_status: row.int_opt("last_status")?.and_then(|s| u16::try_from(s).ok()),
        last_response: row.text_opt("last_response")?,
        last_error: row.text_opt("last_error")?,
    })
}

pub(crate) fn dead_letter_from_row(row: &impl Columns) -> Result<switchboard_core::ports::DeadLetter, StoreError> {
    let state = row.text("state")?;
    Ok(switchboard_core::ports::DeadLetter {
        id: row.int("id")?,
        letter: switchboard_core::ports::NewDeadLetter {
            channel: parsed("channel", &row.text("channel")?)?,
            external_id: row.text("external_id")?,
            payload: row.bytes_opt("payload")?.unwrap_or_default(),
            error: row.text("error")?,
            attempts: u32::try_from(row.int("attempts")?).unwrap_or(u32::MAX),
            first_failed_at: instant(row.int("first_failed_at")?)?,
            last_failed_at: instant(row.int("last_failed_at")?)?,
        },
        state: switchboard_core::ports::DeadLetterState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("column state: unknown dead letter state `{state}`")))?,
        settled_by: optional::<uuid::Uuid>(row, "settled_by")?.map(AgentId),
        settled_at: row.int_opt("settled_at")?.map(instant).transpose()?,
    })
}

pub(crate) fn channel_state_from_row(row: &impl Columns) -> Result<switchboard_core::ChannelState, StoreError> {
    Ok(switchboard_core::ChannelState {
        name: row.text("name")?,
        node: row.text("node")?,
        up: row.flag("up")?,
        detail: row.text("detail")?,
        last_ok_at: row.int_opt("last_ok_at")?.map(instant).transpose()?,
        last_error: row.text_opt("last_error")?,
        last_error_at: row.int_opt("last_error_at")?.map(instant).transpose()?,
        updated_at: instant(row.int("updated_at")?)?,
    })
}
