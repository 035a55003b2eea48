//! The embedded store: one SQLite file in WAL mode. Writes go through a single connection
//! (SQLite has one writer anyway; this avoids busy retries), reads through a small pool.

use crate::rows::{contact_from_row, conversation_from_row, message_from_row, millis, to_json};
use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, Sqlite, SqlitePool, Transaction};
use std::str::FromStr;
use std::time::Duration;
use switchboard_core::QueueView;
use switchboard_core::ports::{Inserted, Store, StoreError, StoreTx};
use switchboard_models::{
    Channel, Contact, ContactId, Conversation, ConversationId, Handler, Message, OutboundMessage,
    Timestamp,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

pub(crate) fn backend(error: sqlx::Error) -> StoreError {
    StoreError::Backend(error.to_string())
}

#[derive(Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url`, e.g. `sqlite://switchboard.db`.
    /// Does not migrate; call `migrate` first.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Backend(format!("invalid SQLite URL `{url}`: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            .pragma("cache_size", "-16000");
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .connect_with(options.clone())
            .await
            .map_err(|e| StoreError::Backend(format!("cannot open `{url}`: {e}")))?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await
            .map_err(|e| StoreError::Backend(format!("cannot open `{url}` for reading: {e}")))?;
        Ok(Self { writer, reader })
    }

    /// Applies the embedded migrations that have not run yet.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR
            .run(&self.writer)
            .await
            .map_err(|e| StoreError::Backend(format!("migration failed: {e}")))
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn begin(&self) -> Result<Box<dyn StoreTx>, StoreError> {
        let tx = self.writer.begin().await.map_err(backend)?;
        Ok(Box::new(SqliteTx { tx }))
    }

    async fn message_by_external_id(
        &self,
        channel: Channel,
        external_id: &str,
    ) -> Result<Option<Message>, StoreError> {
        sqlx::query(
            "SELECT seq, id, conversation_id, contact_id, channel, sender, agent_id, body, \
             quick_replies, classification, external_id, created_at \
             FROM messages WHERE channel = $1 AND external_id = $2",
        )
        .bind(channel.as_str())
        .bind(external_id)
        .fetch_optional(&self.reader)
        .await
        .map_err(backend)?
        .map(|row| message_from_row(&row))
        .transpose()
    }

    async fn conversation(&self, id: ConversationId) -> Result<Option<Conversation>, StoreError> {
        sqlx::query(
            "SELECT id, contact_id, channel, handler, agent_id, status, category, priority, \
             escalation_reason, escalation_summary, escalated_at, low_confidence_streak, \
             created_at, updated_at FROM conversations WHERE id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(&self.reader)
        .await
        .map_err(backend)?
        .map(|row| conversation_from_row(&row))
        .transpose()
    }

    async fn contact_by_external_id(
        &self,
        channel: Channel,
        external_id: &str,
    ) -> Result<Option<Contact>, StoreError> {
        sqlx::query(
            "SELECT id, channel, external_id, display_name, created_at FROM contacts \
             WHERE channel = $1 AND external_id = $2",
        )
        .bind(channel.as_str())
        .bind(external_id)
        .fetch_optional(&self.reader)
        .await
        .map_err(backend)?
        .map(|row| contact_from_row(&row))
        .transpose()
    }

    async fn current_conversation(&self, contact: ContactId) -> Result<Option<Conversation>, StoreError> {
        current_conversation(&self.reader, contact).await
    }

    async fn contact_messages(
        &self,
        contact: ContactId,
        after: i64,
        limit: u32,
    ) -> Result<Vec<Message>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, id, conversation_id, contact_id, channel, sender, agent_id, body, \
             quick_replies, classification, external_id, created_at \
             FROM messages WHERE contact_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(contact.to_string())
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        rows.iter().map(message_from_row).collect()
    }

    async fn claim_outbox(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<OutboundMessage>, StoreError> {
        let mut tx = self.writer.begin().await.map_err(backend)?;
        let claimed: Vec<(i64, i64)> = sqlx::query_as(
            "UPDATE outbox SET lease_until = $1 WHERE id IN ( \
                SELECT id FROM outbox WHERE delivered_at IS NULL AND gave_up_at IS NULL \
                AND next_attempt_at <= $2 AND (lease_until IS NULL OR lease_until <= $2) \
                ORDER BY id LIMIT $3) \
             RETURNING id, attempts",
        )
        .bind(millis(lease_until))
        .bind(millis(now))
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        if claimed.is_empty() {
            tx.commit().await.map_err(backend)?;
            return Ok(Vec::new());
        }
        let ids = claimed.iter().map(|(id, _)| id.to_string()).collect::<Vec<_>>().join(",");
        let sql = format!(
            "SELECT o.id AS outbox_id, o.attempts AS attempts, c.external_id AS recipient, \
             m.seq, m.id, m.conversation_id, m.contact_id, m.channel, m.sender, m.agent_id, m.body, \
             m.quick_replies, m.classification, m.external_id, m.created_at \
             FROM outbox o JOIN messages m ON m.seq = o.message_seq \
             JOIN contacts c ON c.id = m.contact_id WHERE o.id IN ({ids}) ORDER BY o.id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&mut *tx).await.map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        rows.iter()
            .map(|row| {
                Ok(OutboundMessage {
                    outbox_id: row.try_get("outbox_id").map_err(backend)?,
                    attempts: row.try_get::<i64, _>("attempts").map_err(backend)? as u32,
                    recipient_external_id: row.try_get("recipient").map_err(backend)?,
                    message: message_from_row(row)?,
                })
            })
            .collect()
    }

    async fn mark_delivered(&self, outbox_ids: &[i64], now: Timestamp) -> Result<(), StoreError> {
        let ids = outbox_ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        let sql = format!(
            "UPDATE outbox SET delivered_at = $1, lease_until = NULL, attempts = attempts + 1 \
             WHERE id IN ({ids})"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(millis(now))
            .execute(&self.writer)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn mark_failed(
        &self,
        outbox_id: i64,
        error: &str,
        retry_at: Option<Timestamp>,
    ) -> Result<(), StoreError> {
        let now = millis(chrono::Utc::now());
        sqlx::query(
            "UPDATE outbox SET attempts = attempts + 1, last_error = $2, lease_until = NULL, \
             next_attempt_at = COALESCE($3, next_attempt_at), \
             gave_up_at = CASE WHEN $3 IS NULL THEN $4 ELSE NULL END WHERE id = $1",
        )
        .bind(outbox_id)
        .bind(error)
        .bind(retry_at.map(millis))
        .bind(now)
        .execute(&self.writer)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn setting_or_insert(&self, key: &str, value: &str) -> Result<String, StoreError> {
        sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
            .bind(key)
            .bind(value)
            .execute(&self.writer)
            .await
            .map_err(backend)?;
        sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_one(&self.writer)
            .await
            .map_err(backend)
    }
}

async fn current_conversation<'e>(
    executor: impl sqlx::SqliteExecutor<'e>,
    contact: ContactId,
) -> Result<Option<Conversation>, StoreError> {
    sqlx::query(
        "SELECT id, contact_id, channel, handler, agent_id, status, category, priority, \
         escalation_reason, escalation_summary, escalated_at, low_confidence_streak, \
         created_at, updated_at FROM conversations \
         WHERE contact_id = $1 AND status NOT IN ('closed', 'rejected') \
         ORDER BY created_at DESC, id DESC LIMIT 1",
    )
    .bind(contact.to_string())
    .fetch_optional(executor)
    .await
    .map_err(backend)?
    .map(|row| conversation_from_row(&row))
    .transpose()
}

struct SqliteTx {
    tx: Transaction<'static, Sqlite>,
}

#[async_trait]
impl StoreTx for SqliteTx {
    async fn upsert_contact(
        &mut self,
        channel: Channel,
        external_id: &str,
        display_name: Option<&str>,
        now: Timestamp,
    ) -> Result<Contact, StoreError> {
        let row = sqlx::query(
            "INSERT INTO contacts (id, channel, external_id, display_name, created_at) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (channel, external_id) DO UPDATE \
             SET display_name = COALESCE(excluded.display_name, contacts.display_name) \
             RETURNING id, channel, external_id, display_name, created_at",
        )
        .bind(ContactId::new().to_string())
        .bind(channel.as_str())
        .bind(external_id)
        .bind(display_name)
        .bind(millis(now))
        .fetch_one(&mut *self.tx)
        .await
        .map_err(backend)?;
        contact_from_row(&row)
    }

    async fn current_conversation(&mut self, contact: ContactId) -> Result<Option<Conversation>, StoreError> {
        current_conversation(&mut *self.tx, contact).await
    }

    async fn save_conversation(&mut self, c: &Conversation) -> Result<(), StoreError> {
        let (handler, agent_id) = match c.handler {
            Handler::Bot => ("bot", None),
            Handler::Queue => ("queue", None),
            Handler::Agent(id) => ("agent", Some(id.to_string())),
        };
        let escalation = c.escalation.as_ref();
        sqlx::query(
            "INSERT INTO conversations (id, contact_id, channel, handler, agent_id, status, category, \
             priority, escalation_reason, escalation_summary, escalated_at, low_confidence_streak, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
             ON CONFLICT (id) DO UPDATE SET handler = excluded.handler, agent_id = excluded.agent_id, \
             status = excluded.status, category = excluded.category, priority = excluded.priority, \
             escalation_reason = excluded.escalation_reason, \
             escalation_summary = excluded.escalation_summary, escalated_at = excluded.escalated_at, \
             low_confidence_streak = excluded.low_confidence_streak, updated_at = excluded.updated_at",
        )
        .bind(c.id.to_string())
        .bind(c.contact_id.to_string())
        .bind(c.channel.as_str())
        .bind(handler)
        .bind(agent_id)
        .bind(c.status.as_str())
        .bind(c.category.map(|v| v.as_str()))
        .bind(c.priority.map(|v| v.as_str()))
        .bind(escalation.map(|e| to_json(&e.reason)))
        .bind(escalation.map(|e| e.summary.as_str()))
        .bind(escalation.map(|e| millis(e.at)))
        .bind(i64::from(c.low_confidence_streak))
        .bind(millis(c.created_at))
        .bind(millis(c.updated_at))
        .execute(&mut *self.tx)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn insert_message(&mut self, m: &Message) -> Result<Inserted, StoreError> {
        let seq: Option<i64> = sqlx::query_scalar(
            "INSERT INTO messages (id, conversation_id, contact_id, channel, sender, agent_id, body, \
             quick_replies, classification, external_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (channel, external_id) DO NOTHING RETURNING seq",
        )
        .bind(m.id.to_string())
        .bind(m.conversation_id.to_string())
        .bind(m.contact_id.to_string())
        .bind(m.channel.as_str())
        .bind(m.sender.as_str())
        .bind(m.agent_id.map(|a| a.to_string()))
        .bind(&m.text)
        .bind(to_json(&m.quick_replies))
        .bind(m.classification.as_ref().map(to_json))
        .bind(m.external_id.as_deref())
        .bind(millis(m.created_at))
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(backend)?;
        Ok(match seq {
            Some(seq) => Inserted::New { seq },
            None => Inserted::Duplicate,
        })
    }

    async fn recent_customer_texts(
        &mut self,
        conversation: ConversationId,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        let mut texts: Vec<String> = sqlx::query_scalar(
            "SELECT body FROM messages WHERE conversation_id = $1 AND sender = 'customer' \
             ORDER BY seq DESC LIMIT $2",
        )
        .bind(conversation.to_string())
        .bind(i64::from(limit))
        .fetch_all(&mut *self.tx)
        .await
        .map_err(backend)?;
        texts.reverse();
        Ok(texts)
    }

    async fn queue_view(&mut self, conversation: ConversationId) -> Result<QueueView, StoreError> {
        let (position, agents_online): (i64, i64) = sqlx::query_as(
            "SELECT \
               (SELECT COUNT(*) FROM conversations q, conversations me WHERE me.id = $1 \
                  AND q.handler = 'queue' \
                  AND (q.escalated_at < me.escalated_at OR (q.escalated_at = me.escalated_at AND q.id <= me.id))), \
               (SELECT COUNT(*) FROM agents WHERE presence = 'online' AND active = 1)",
        )
        .bind(conversation.to_string())
        .fetch_one(&mut *self.tx)
        .await
        .map_err(backend)?;
        Ok(QueueView { position: position as u32, agents_online: agents_online as u32 })
    }

    async fn enqueue_outbox(&mut self, message_seq: i64, now: Timestamp) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO outbox (message_seq, next_attempt_at, created_at) VALUES ($1, $2, $2) \
             ON CONFLICT (message_seq) DO NOTHING",
        )
        .bind(message_seq)
        .bind(millis(now))
        .execute(&mut *self.tx)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        self.tx.commit().await.map_err(backend)
    }
}
