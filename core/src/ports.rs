//! The traits the core drives. Implementations live in `store`, `nlp` and `channels`.

use crate::policy::QueueView;
use async_trait::async_trait;
use std::time::Duration;
use switchboard_models::{
    Channel, Classification, Contact, ContactId, Conversation, ConversationId, Message,
    OutboundMessage, Timestamp,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the database is unavailable or failed: {0}")]
    Backend(String),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
}

/// Whether an insert added a row or met an existing one with the same idempotency key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    New { seq: i64 },
    Duplicate,
}

/// Reads and the start of a transaction. All writes go through `StoreTx`.
#[async_trait]
pub trait Store: Send + Sync {
    async fn begin(&self) -> Result<Box<dyn StoreTx>, StoreError>;

    async fn message_by_external_id(
        &self,
        channel: Channel,
        external_id: &str,
    ) -> Result<Option<Message>, StoreError>;
    async fn conversation(&self, id: ConversationId) -> Result<Option<Conversation>, StoreError>;
    async fn contact_by_external_id(
        &self,
        channel: Channel,
        external_id: &str,
    ) -> Result<Option<Contact>, StoreError>;
    /// The contact's latest conversation that is not closed or rejected.
    async fn current_conversation(&self, contact: ContactId) -> Result<Option<Conversation>, StoreError>;
    /// Messages of all the contact's conversations with `seq > after`, oldest first.
    async fn contact_messages(
        &self,
        contact: ContactId,
        after: i64,
        limit: u32,
    ) -> Result<Vec<Message>, StoreError>;

    /// Leases up to `limit` undelivered outbox entries due at `now` until `lease_until`.
    async fn claim_outbox(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<OutboundMessage>, StoreError>;
    async fn mark_delivered(&self, outbox_ids: &[i64], now: Timestamp) -> Result<(), StoreError>;
    /// Records a failed attempt; `retry_at: None` gives up for good.
    async fn mark_failed(
        &self,
        outbox_id: i64,
        error: &str,
        retry_at: Option<Timestamp>,
    ) -> Result<(), StoreError>;

    /// A named value kept across restarts; written once, the first writer wins.
    async fn setting_or_insert(&self, key: &str, value: &str) -> Result<String, StoreError>;
}

/// One transaction. Dropped without `commit`, it rolls back.
#[async_trait]
pub trait StoreTx: Send {
    async fn upsert_contact(
        &mut self,
        channel: Channel,
        external_id: &str,
        display_name: Option<&str>,
        now: Timestamp,
    ) -> Result<Contact, StoreError>;
    async fn current_conversation(&mut self, contact: ContactId) -> Result<Option<Conversation>, StoreError>;
    /// Inserts or updates the conversation row.
    async fn save_conversation(&mut self, conversation: &Conversation) -> Result<(), StoreError>;
    /// Unique on (channel, external id) when the message has one.
    async fn insert_message(&mut self, message: &Message) -> Result<Inserted, StoreError>;
    async fn recent_customer_texts(
        &mut self,
        conversation: ConversationId,
        limit: u32,
    ) -> Result<Vec<String>, StoreError>;
    /// Queue position of `conversation` (already saved as queued) and agents online.
    async fn queue_view(&mut self, conversation: ConversationId) -> Result<QueueView, StoreError>;
    async fn enqueue_outbox(&mut self, message_seq: i64, now: Timestamp) -> Result<(), StoreError>;
    async fn commit(self: Box<Self>) -> Result<(), StoreError>;
}

/// Understands customer text. Never fails: an implementation falls back to something weaker.
#[async_trait]
pub trait Classifier: Send + Sync {
    async fn classify(&self, text: &str) -> Classification;
}

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("temporary delivery failure: {reason}")]
    Retry { reason: String, after: Option<Duration> },
    #[error("permanent delivery failure: {reason}")]
    Permanent { reason: String },
}

/// Sends stored messages out on one channel.
#[async_trait]
pub trait Outbound: Send + Sync {
    fn channel(&self) -> Channel;
    async fn deliver(&self, message: &OutboundMessage) -> Result<(), DeliveryError>;
}

pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        chrono::Utc::now()
    }
}
