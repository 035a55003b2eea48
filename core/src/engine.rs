//! The thin shell around `step`: classify, load, decide, persist in one transaction, then publish.

mod intents;
mod dead_letters;
mod linking;
mod webhooks;

pub use dead_letters::{FailedAttempts, InboundReplay};
pub use webhooks::WebhookEdit;

pub use intents::IntentsEdit;

use crate::arrival::{ArrivalOrder, ArrivalTicket};
use crate::events::EventBus;
use crate::outbox::HandoffLease;
use crate::policy::{Policy, QueueView};
use crate::assignment::pick_agent;
use crate::attachments::{UploadError, check_upload, clean_file_name};
use crate::ports::{
    Accounts, AdminWrite, Assistant, BlobStore, Classifier, Clock, LocalClassification, Committed, Conversations, DocumentDecision, Documents, FeedbackWrite, Listings, Outbox, Queue,
    Ratings, StepWrite, Store, StoreError,
};
use crate::timers::TimerKind;
use crate::step::{Decision, Feedback, Input, ReplyBody, step};
use crate::summary::{TRANSCRIPT_MESSAGES, extractive_summary, transcript};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use tokio::sync::{Mutex, Notify, oneshot};
use switchboard_models::{
    Agent, AgentId, Attachment, AuditAction, AuditEntry, Awaiting, Category, Channel, Contact, ContactId, Conversation, ConversationId, Document, DocumentId,
    DocumentState, DomainEvent,
    EscalationRecord, Handler, Inbound, Message, MessageId, OutboundMessage, Presence, Priority, Role, Sender, Status, Thread, Timestamp,
};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("message rejected: {0}")]
    Invalid(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The actor may not do this (e.g. the conversation is someone else's).
    #[error("not allowed: {0}")]
    Forbidden(String),
    /// The conversation changed since the actor looked at it.
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("file rejected: {0}")]
    Upload(#[from] UploadError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An account's fields to change (`Engine::edit_agent`); `None` keeps the field.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentEdit {
    pub name: Option<String>,
    pub email: Option<String>,
    pub role: Option<Role>,
    pub capacity: Option<u32>,
    pub active: Option<bool>,
    /// Checked already (`switchboard_models::skills_from`).
    pub skills: Option<Vec<String>>,
}

impl EngineError {
    /// What a client is told: an HTTP status, a stable machine code and a sentence saying what
    /// to do. A storage failure is logged here and told only as "try again".
    pub fn public_answer(&self) -> (u16, &'static str, String) {
        match self {
            Self::Invalid(reason) => (422, "invalid_message", reason.clone()),
            Self::Forbidden(reason) => (403, "forbidden", reason.clone()),
            Self::Conflict(reason) => (409, "conflict", reason.clone()),
            Self::NotFound(what) => (404, "not_found", format!("No such {what}.")),
            Self::Upload(reason) => (422, "file_rejected", format!("The file was refused: {reason}.")),
            Self::Store(StoreError::Missing(what)) => (410, "gone", format!("The {what} is no longer kept: retention removed it.")),
            Self::Store(StoreError::Stale(reason)) => (409, "conflict", reason.clone()),
            Self::Store(error) => {
                tracing::error!(%error, "store failure");
                (503, "unavailable", UNAVAILABLE.into())
            }
        }
    }
}

/// Tries at storing one escalation's LLM summary before the extractive one is left in place.
const SUMMARY_ATTEMPTS: u32 = 3;

/// An error message as a client may see it: at most 600 characters, so an error never echoes a
/// large input back.
pub fn clipped(mut message: String) -> String {
    if let Some((end, _)) = message.char_indices().nth(600) {
        message.truncate(end);
        message.push('…');
    }
    message
}

/// How long after a close a rating the customer sends still answers the question asked then.
const RATING_AFTER_CLOSE_DAYS: i64 = 7;

/// Timers claimed and fired in one pass; a full pass is followed at once by the next.
pub const TIMER_BATCH: u32 = 100;

/// The answer to a write that could not be stored.
pub const UNAVAILABLE: &str = "The service cannot store messages right now; nothing was saved. Try again shortly.";

/// An agent's change to a ticket from the panel or the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketChange {
    Status(Status),
    Priority(Priority),
    Category(Category),
    /// Give it to this agent.
    Assign(AgentId),
    /// The acting agent takes it.
    Take,
    /// Back to the queue.
    Release,
    /// Back to the bot.
    HandBack,
}

/// What `Engine::handle` did with an inbound message.
#[derive(Debug, Clone, PartialEq)]
pub struct HandleOutcome {
    /// The stored customer message (the earlier copy when this was a duplicate).
    pub message: Message,
    pub duplicate: bool,
    /// As the message left it, auto-assignment included.
    pub conversation: Conversation,
    /// Messages queued for the customer in reply (empty for duplicates).
    pub replies: Vec<Message>,
    /// This message escalated the conversation.
    pub escalated: bool,
}

/// A customer message stored (so it may be acknowledged) and not yet answered.
#[derive(Debug)]
pub struct Received {
    /// The stored message (the earlier copy when this was a duplicate).
    pub message: Message,
    pub duplicate: bool,
    /// The conversation it joined, as it was before the bot's step.
    pub conversation: Conversation,
    /// Its place among the contact's unanswered messages; none for a duplicate.
    place: Option<Place>,
    /// The sender's language as the channel reported it (not stored: a message answered after
    /// a restart is judged by its text and its conversation's language).
    reported_language: Option<String>,
    /// The bot's step, when it was stored with the message (`classify_before_storing`).
    answered: Option<HandleOutcome>,
    /// Its classification when it was made before storing and its step was not stored with it
    /// (an earlier message of the contact waited for its answer, or the hosted LLM is to be asked).
    classified: Option<LocalClassification>,
}

/// A customer message decided on before it is stored (its step is stored with it): what the
/// step would otherwise read of it.
struct Receipt<'a> {
    text: &'a str,
    customer_name: Option<&'a str>,
}

/// The customer texts an escalation's summary is made from.
const RECENT_TEXTS: u32 = 20;

/// A customer message's step, decided and not yet stored.
struct DecidedAnswer {
    /// The conversation as it was decided on.
    before: Conversation,
    write: StepWrite,
    /// The conversation after the step.
    conversation: Conversation,
    replies: Vec<Message>,
    /// Whether the step changes the conversation (it is then written).
    changed: bool,
    escalated: bool,
}

/// Keeps each contact's messages answered in the order they were stored, while their
/// classifications run concurrently: every place waits for the one taken before it.
#[derive(Default)]
struct AnswerOrder {
    latest: Arc<std::sync::Mutex<HashMap<ContactId, (i64, oneshot::Receiver<()>)>>>,
}

impl AnswerOrder {
    fn take_place(&self, contact: ContactId, seq: i64, contact_key: (Channel, String)) -> Place {
        let (done, mine) = oneshot::channel();
        let mut latest = self.latest.lock().expect("answer order");
        let after = latest.insert(contact, (seq, mine)).map(|(_, earlier)| earlier);
        Place { contact, seq, contact_key, after, _done: done, latest: self.latest.clone() }
    }

    /// Whether a message of `contact` still waits for its answer.
    fn waits(&self, contact: ContactId) -> bool {
        self.latest.lock().expect("answer order").contains_key(&contact)
    }
}

/// A message's turn to be answered; dropping it lets the contact's next message go.
#[derive(Debug)]
struct Place {
    contact: ContactId,
    seq: i64,
    /// The lock key of the contact's turn.
    contact_key: (Channel, String),
    /// Resolves when the contact's previous message has been answered.
    after: Option<oneshot::Receiver<()>>,
    _done: oneshot::Sender<()>,
    latest: Arc<std::sync::Mutex<HashMap<ContactId, (i64, oneshot::Receiver<()>)>>>,
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut latest = self.latest.lock().expect("answer order");
        if latest.get(&self.contact).is_some_and(|(seq, _)| *seq == self.seq) {
            latest.remove(&self.contact);
        }
    }
}

/// Steps slower than this are logged with where the time went.
const SLOW_STEP: std::time::Duration = std::time::Duration::from_millis(50);

/// Logs slow steps at most every ten seconds, with how many there were, so an overload
/// shows in the log without flooding it.
#[derive(Default)]
struct SlowSteps {
    since_last_log: std::sync::atomic::AtomicU64,
    last_log: std::sync::Mutex<Option<std::time::Instant>>,
}

impl SlowSteps {
    fn note(&self, decided: std::time::Duration, commit: std::time::Duration) {
        use std::sync::atomic::Ordering;
        let count = self.since_last_log.fetch_add(1, Ordering::Relaxed) + 1;
        let mut last = self.last_log.lock().expect("slow step log");
        if last.is_some_and(|at| at.elapsed() < std::time::Duration::from_secs(10)) {
            return;
        }
        *last = Some(std::time::Instant::now());
        self.since_last_log.store(0, Ordering::Relaxed);
        tracing::warn!(count, ?decided, ?commit, "slow message steps (the latest one's timing)");
    }
}

pub struct EngineLimits {
    pub max_text_chars: usize,
    pub max_upload_bytes: u64,
    /// Failed attempts at an inbound event before it is set aside (`server.inbound_attempts`).
    pub inbound_attempts: u32,
}

/// Locks that serialise work per contact, so one conversation sees one event at a time
/// while different conversations proceed in parallel.
struct ContactLocks(Vec<Mutex<()>>);

impl ContactLocks {
    fn new(shards: usize) -> Self {
        Self((0..shards).map(|_| Mutex::new(())).collect())
    }

    fn for_key(&self, key: impl Hash) -> &Mutex<()> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut hasher);
        &self.0[(hasher.finish() as usize) % self.0.len()]
    }
}

pub struct Engine {
    store: Arc<dyn Store>,
    blobs: Arc<dyn BlobStore>,
    classifier: Arc<dyn Classifier>,
    clock: Arc<dyn Clock>,
    bus: EventBus,
    /// Replaced whole when admins change settings (`apply_settings`).
    policy: std::sync::RwLock<Arc<Policy>>,
    limits: EngineLimits,
    locks: ContactLocks,
    /// Each sender's messages stored in the order they arrived.
    arrivals: ArrivalOrder,
    /// One assignment pass at a time, so no conversation or slot is given out twice.
    assigning: Mutex<()>,
    slow_steps: SlowSteps,
    /// How long steps have been taking to commit (shared with the classifier).
    commit_lag: Arc<crate::gauge::CommitLag>,
    answer_order: AnswerOrder,
    /// Answers running in the background, so a stop can let them finish.
    answering: tokio_util::task::TaskTracker,
    outbox_wake: Arc<crate::outbox::OutboxWake>,
    storage_problem: std::sync::Mutex<Option<(Timestamp, String)>>,
    /// Escalated conversations whose summary the assistant should rewrite (when one is configured).
    /// Escalations are summarised by the hosted LLM (`summaries_wanted`); woken on each.
    summaries: Option<Arc<Notify>>,
    /// Set when other nodes share the store: after this long unanswered, a customer message
    /// stored by another node is answered here.
    takeover_after: Option<chrono::Duration>,
    /// How the outside connections are doing, reported by the adapters as they work.
    health: Arc<crate::health::HealthBoard>,
}

impl Engine {
    pub fn new(
        store: Arc<dyn Store>,
        blobs: Arc<dyn BlobStore>,
        classifier: Arc<dyn Classifier>,
        clock: Arc<dyn Clock>,
        bus: EventBus,
        policy: Policy,
        limits: EngineLimits,
    ) -> Self {
        Self {
            store,
            blobs,
            classifier,
            clock,
            bus,
            policy: std::sync::RwLock::new(Arc::new(policy)),
            limits,
            locks: ContactLocks::new(1024),
            arrivals: ArrivalOrder::default(),
            assigning: Mutex::new(()),
            slow_steps: SlowSteps::default(),
            commit_lag: Arc::default(),
            answer_order: AnswerOrder::default(),
            answering: tokio_util::task::TaskTracker::new(),
            outbox_wake: Arc::new(crate::outbox::OutboxWake::default()),
            storage_problem: std::sync::Mutex::new(None),
            summaries: None,
            takeover_after: None,
            health: Arc::new(crate::health::HealthBoard::new("local")),
        }
    }

    /// Steps' commit times go to `lag` (the classifier reads it: `ModelClassifier::with_commit_lag`).
    pub fn with_commit_lag(mut self, lag: Arc<crate::gauge::CommitLag>) -> Self {
        self.commit_lag = lag;
        self
    }

    /// Connections report their state to `board` (shared with whoever writes and reads it).
    pub fn with_health(mut self, board: Arc<crate::health::HealthBoard>) -> Self {
        self.health = board;
        self
    }

    /// Tells a customer something outside their conversation (a file refused, a message the
    /// bot cannot open), durably: queued now and sent by the outbox, so a crash or a channel
    /// outage delays it and loses nothing. `key` names it, so an event handled again queues it once.
    pub async fn tell_customer(&self, channel: Channel, recipient: &str, key: &str, text: &str) -> Result<(), EngineError> {
        let notice = crate::ports::DirectNotice {
            channel,
            recipient: recipient.to_string(),
            key: format!("{channel}:{key}"),
            text: text.to_string(),
            // The outbox's retry window runs on real time.
            created_at: chrono::Utc::now(),
        };
        self.store.queue_direct_notice(&notice).await?;
        self.outbox_wake.notice_queued();
        Ok(())
    }

    /// Where channel adapters and the LLM client report how their connections are doing.
    pub fn health(&self) -> &crate::health::HealthBoard {
        &self.health
    }

    /// Each configured connection with its latest state from any node (none: nobody reported it yet).
    pub async fn connection_states(&self) -> Result<Vec<(&'static str, Option<crate::health::ChannelState>)>, EngineError> {
        Ok(self.health.states(self.store.as_ref()).await?)
    }

    /// Other nodes share the store: a contact's messages stored on different nodes are still
    /// answered in order, and one a node left unanswered for `takeover_after` (it died) is
    /// answered here (`answer_stranded`).
    pub fn shared_with_other_nodes(mut self, takeover_after: chrono::Duration) -> Self {
        self.takeover_after = Some(takeover_after);
        self
    }

    /// Whether other nodes share the store (see `shared_with_other_nodes`).
    pub fn has_other_nodes(&self) -> bool {
        self.takeover_after.is_some()
    }

    /// Escalations then want an abstractive summary, kept with the escalating step and written
    /// by `write_wanted_summaries`, which the returned `Notify` wakes.
    pub fn with_summaries(mut self) -> (Self, Arc<Notify>) {
        let wake = Arc::new(Notify::new());
        self.summaries = Some(wake.clone());
        (self, wake)
    }

    /// Writes the LLM summary of each escalation that wants one and is due, leased for
    /// `lease` (longer than the assistant's timeout) so one node asks at a time; a summary that
    /// could not be stored is tried again a minute later, at most `SUMMARY_ATTEMPTS` times.
    /// Returns how many were taken.
    pub async fn write_wanted_summaries(&self, assistant: &dyn Assistant, lease: chrono::Duration) -> Result<usize, EngineError> {
        let now = chrono::Utc::now();
        let wanted = self.store.claim_wanted_summaries(now, now + lease, 16).await?;
        for (id, attempts) in &wanted {
            let retry_at = match self.summarize_with(*id, assistant).await {
                Ok(_) => None,
                Err(error) if attempts + 1 < SUMMARY_ATTEMPTS => {
                    tracing::warn!(conversation_id = %id, %error, "could not store the LLM summary; trying again in a minute");
                    Some(chrono::Utc::now() + chrono::Duration::minutes(1))
                }
                Err(error) => {
                    tracing::warn!(conversation_id = %id, %error, "could not store the LLM summary; the extractive one stays");
                    None
                }
            };
            self.store.summary_done(*id, retry_at).await?;
        }
        Ok(wanted.len())
    }

    /// Replaces the extractive summary of an escalated conversation with the assistant's. The
    /// customer never waits for this: it runs after the escalation is committed and answered.
    pub async fn summarize_with(&self, id: ConversationId, assistant: &dyn Assistant) -> Result<bool, EngineError> {
        let agents = self.store.list_agents().await?;
        let messages = self.store.latest_conversation_messages(id, None, TRANSCRIPT_MESSAGES).await?;
        let lines = transcript(&messages, &agents);
        if lines.is_empty() {
            return Ok(false);
        }
        let summary = match assistant.summarize(&lines).await {
            Ok(summary) => summary,
            Err(why) => {
                tracing::warn!(conversation_id = %id, "keeping the extractive summary: {why}");
                return Ok(false);
            }
        };
        for _ in 0..CONFLICT_RETRIES {
            let (_turn, read) = self.turn_of(id).await?;
            let mut current = read.clone();
            let Some(escalation) = current.escalation.as_mut() else {
                return Ok(false);
            };
            escalation.summary = summary.clone();
            // Same `updated_at`: the summary is not something an agent edits, so open views stay valid.
            if self.commit_change(&read, current, Vec::new(), None, None, Vec::new()).await?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The whole store, for wiring and tests. Handlers read through the focused ports below and
    /// write through the engine's methods, which keep each rule and its audit entry together.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Messages, contacts and conversations, to read (steps write them).
    pub fn conversations(&self) -> &dyn Conversations {
        self.store.as_ref()
    }

    /// Agents, credentials, canned responses and the audit log.
    pub fn accounts(&self) -> &dyn Accounts {
        self.store.as_ref()
    }

    /// When the team answering `channel` works, if business hours are set.
    pub fn business_hours(&self, channel: Channel) -> Option<crate::hours::BusinessHours> {
        self.policy().hours_for(channel).cloned()
    }

    /// The bot's policy in force now.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// What waits for an agent, and who is online.
    pub fn queue(&self) -> &dyn Queue {
        self.store.as_ref()
    }

    /// The panel's lists and counts.
    pub fn listings(&self) -> &dyn Listings {
        self.store.as_ref()
    }

    pub fn jobs(&self) -> &dyn crate::ports::Jobs {
        self.store.as_ref()
    }

    /// What was posted to webhooks (reads; check the caller with `webhook` first).
    pub fn webhook_deliveries(&self) -> &dyn crate::ports::Webhooks {
        self.store.as_ref()
    }

    /// Customers' ratings of the help they got.
    pub fn ratings(&self) -> &dyn Ratings {
        self.store.as_ref()
    }

    /// The Reports page's numbers for a period, the zone its days are in, and its filters.
    pub async fn report(&self, query: &crate::reports::ReportQuery) -> Result<crate::reports::Report, EngineError> {
        let reports: &dyn crate::ports::Reports = self.store.as_ref();
        let unsure_below = self.policy().low_confidence_threshold;
        let (period, offsets) = (query.period(), query.offsets());
        let (hours, states, events, waits, intents, ratings, unsure) = tokio::try_join!(
            reports.started_by_hour(&period, &offsets),
            reports.started_by_state(&period),
            reports.event_counts(&period),
            reports.wait_percentiles(&period),
            reports.intent_counts(&period),
            reports.ratings_given(&period),
            reports.unsure_messages(&period, unsure_below, UNSURE_MESSAGES_READ),
        )?;
        Ok(crate::reports::report(query, &crate::reports::ReportInput { hours, states, events, waits, intents, ratings, unsure }))
    }

    /// Customers' identities across channels and the joins between them (reads; joins go
    /// through `join_customers` and `separate_customers`).
    pub fn identities(&self) -> &dyn crate::ports::Identities {
        self.store.as_ref()
    }

    /// Documents customers sent for review.
    pub fn documents(&self) -> &dyn Documents {
        self.store.as_ref()
    }

    /// The document types reviewers choose from.
    /// The largest file a customer or an agent may send, in bytes (`attachments.max_bytes`).
    pub fn max_upload_bytes(&self) -> u64 {
        self.limits.max_upload_bytes
    }

    pub fn document_types(&self) -> Vec<String> {
        self.policy().documents.types.clone()
    }

    /// Puts the policy the stored settings make in force (at start, and when any node's
    /// admins changed them); on an error the policy in force stays.
    pub async fn apply_settings(&self, catalog: &dyn crate::ports::SettingsCatalog) -> Result<(), EngineError> {
        let stored = self.store.stored_settings().await?;
        let policy = catalog.apply(&stored).map_err(EngineError::Invalid)?;
        *self.policy.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(policy);
        Ok(())
    }

    /// Every setting admins may change, with its value and where it comes from.
    pub async fn settings(&self, catalog: &dyn crate::ports::SettingsCatalog) -> Result<Vec<crate::ports::SettingView>, EngineError> {
        Ok(catalog.describe(&self.store.stored_settings().await?))
    }

    /// Stores an admin's settings changes (checked as the configuration loads them, audited),
    /// puts them in force here and tells the other nodes. Nothing is stored when any is refused.
    pub async fn change_settings(&self, catalog: &dyn crate::ports::SettingsCatalog, changes: &[(String, Option<String>)], by: &Agent) -> Result<(), EngineError> {
        if by.role != Role::Admin {
            return Err(EngineError::Forbidden("only admins change settings".into()));
        }
        let stored = self.store.stored_settings().await?;
        let before = catalog.describe(&stored);
        let values = catalog.check(&stored, changes).map_err(|e| EngineError::Invalid(e.to_string()))?;
        let now = self.clock.now();
        let audit = values
            .iter()
            .map(|(key, value)| AuditEntry {
                at: now,
                actor: Some(by.id),
                action: AuditAction::Settings,
                conversation: None,
                subject_agent: None,
                before: before.iter().find(|s| s.key == *key).map(|s| format!("{key} = {}", s.value)),
                after: Some(match value {
                    Some(value) => format!("{key} = {value}"),
                    None => format!("{key}: the config file's value"),
                }),
            })
            .collect();
        let write = crate::ports::AdminWrite { settings: values, settings_by: Some((by.id, now)), audit, ..crate::ports::AdminWrite::default() };
        self.store.commit_admin(write).await?;
        self.apply_settings(catalog).await?;
        self.bus.publish(DomainEvent::SettingsChanged);
        Ok(())
    }

    /// What agents are told in the panel.
    pub fn notifications(&self) -> &dyn crate::ports::Notifications {
        self.store.as_ref()
    }

    /// The outbox, for its backlog (readiness) and delivery records (channels' receipts).
    pub fn outbox(&self) -> &dyn Outbox {
        self.store.as_ref()
    }

    pub fn bus(&self) -> &EventBus {
        &self.bus
    }

    /// Since when, and why, the store refuses the engine's writes; `None` while they succeed.
    /// Readiness and the panel's banner show it.
    pub fn storage_problem(&self) -> Option<(Timestamp, String)> {
        self.storage_problem.lock().expect("storage problem").clone()
    }

    /// Every write of the engine goes through here, so a refusing store shows in readiness.
    async fn commit(&self, mut write: StepWrite) -> Result<Committed, StoreError> {
        write.wants_summary = self.summaries.is_some() && write.escalation.is_some();
        let notices = write.notices.clone();
        let result = self.store.commit(write).await;
        if matches!(result, Ok(Committed::Stored { .. })) {
            // Open panels show them at once (the rows are written already).
            for notice in notices {
                let to = match notice.to {
                    crate::step::Recipient::Agent(agent) => Some(agent),
                    crate::step::Recipient::Admins => None,
                };
                self.bus.publish(DomainEvent::Notified { to, kind: notice.kind, conversation: notice.conversation, text: notice.text });
            }
        }
        let mut problem = self.storage_problem.lock().expect("storage problem");
        match &result {
            Err(StoreError::Backend(reason)) => {
                problem.get_or_insert_with(|| (self.clock.now(), reason.clone()));
            }
            _ => *problem = None,
        }
        result
    }

    /// A lease of this node's outbox for `write`'s replies when all go to contact `recipient`:
    /// stored leased, they are handed to the outbox after the commit, not claimed from the store.
    fn lease_replies(&self, write: &mut StepWrite, recipient: ContactId) -> Option<HandoffLease> {
        if write.outbound.is_empty() || write.outbound.iter().any(|reply| reply.contact_id != recipient) {
            return None;
        }
        let lease = self.outbox_wake.lease()?;
        write.outbound_leased_until = Some(lease.until);
        Some(lease)
    }

    /// Gives stored replies to the outbox: handed over under `lease` (to `recipient`, the
    /// contact's channel identity), else claimable from the store.
    fn queue_replies(&self, replies: &[Message], lease: Option<HandoffLease>, recipient: &str) {
        if replies.is_empty() {
            return;
        }
        match lease {
            Some(lease) => lease.hand_over(replies.iter().map(|reply| OutboundMessage {
                attempts: 0,
                retry_from: None,
                message: reply.clone(),
                recipient_external_id: recipient.to_string(),
            })),
            None => self.outbox_wake.replies_queued(),
        }
    }

    /// Woken after every commit that queued outbound messages, and when a direct notice is queued.
    pub fn outbox_wake(&self) -> Arc<crate::outbox::OutboxWake> {
        self.outbox_wake.clone()
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Records a customer message and answers it (`receive`, then `answer`). Idempotent on
    /// (channel, external id): a repeat returns the stored message and changes nothing.
    pub async fn handle(&self, inbound: Inbound) -> Result<HandleOutcome, EngineError> {
        let received = self.receive(inbound).await?;
        self.answer(received).await
    }

    /// Stores a customer message: once this returns Ok the message is durable and may be
    /// acknowledged. Classified by the local model first, it is stored with the bot's step
    /// when nothing stands in the way (`classify_before_storing`); otherwise the step (maybe a
    /// hosted LLM, the reply) is `answer`, which keeps this message's place among its
    /// contact's messages.
    pub async fn receive(&self, inbound: Inbound) -> Result<Received, EngineError> {
        let arrival = self.arrival(inbound.channel, &inbound.sender_external_id);
        self.receive_in_turn(inbound, arrival).await
    }

    /// A place in the sender's line for a message that has arrived and is not yet handed to
    /// `receive_in_turn` (a socket reading a customer's next message while the last is in
    /// receipt): messages are stored in the order their places were taken.
    pub fn arrival(&self, channel: Channel, sender: &str) -> ArrivalTicket {
        self.arrivals.ticket(channel, sender)
    }

    /// `receive`, with the message's place in its sender's line taken when it arrived
    /// (`arrival`, for the same channel and sender). It is classified at once, beside the
    /// sender's earlier messages still in receipt, and stored after them.
    pub async fn receive_in_turn(&self, inbound: Inbound, mut arrival: ArrivalTicket) -> Result<Received, EngineError> {
        debug_assert_eq!(arrival.sender(), (inbound.channel, inbound.sender_external_id.as_str()), "a place in another sender's line");
        self.check(&inbound)?;
        // A stop waits for this as for an answer (`finish_answers`): the bot's step it may store
        // with the message then gets the outbox's last pass.
        let _in_flight = self.in_flight();
        let classified = self.classify_before_storing(&inbound).await;
        arrival.turn().await;
        // A conflict means another node stored this customer, or started their conversation,
        // between our read and our write: read again.
        for _ in 0..CONFLICT_RETRIES {
            if let Some(received) = self.receive_once(inbound.clone(), classified.clone()).await? {
                return Ok(received);
            }
        }
        Err(EngineError::Conflict("the customer's conversation kept changing on other nodes; send the message again".into()))
    }

    async fn receive_once(&self, inbound: Inbound, classified: Option<LocalClassification>) -> Result<Option<Received>, EngineError> {
        let contact_key = (inbound.channel, inbound.sender_external_id.clone());
        let _turn = self.locks.for_key(&contact_key).lock().await;
        let now = self.clock.now();
        let (known, current) = match self
            .store
            .contact_and_current_conversation(inbound.channel, &inbound.sender_external_id)
            .await?
        {
            Some((contact, conversation)) => (Some(contact), conversation),
            None => (None, None),
        };
        let (contact, contact_write) = match known {
            // Writing again makes an unreachable customer reachable: the contact is written to clear that.
            Some(contact)
                if (inbound.sender_name.is_none() || contact.display_name == inbound.sender_name)
                    && contact.unreachable_since.is_none() =>
            {
                (contact, None)
            }
            Some(mut contact) => {
                // As the store keeps it (a missing name does not erase the known one).
                contact.display_name = inbound.sender_name.clone().or(contact.display_name.take());
                (contact.clone(), Some(contact))
            }
            None => {
                let contact = Contact {
                    id: ContactId::new(),
                    channel: inbound.channel,
                    external_id: inbound.sender_external_id.clone(),
                    display_name: inbound.sender_name.clone(),
                    created_at: now,
                    unreachable_since: None,
                    unreachable_reason: None,
                    email: None,
                };
                (contact.clone(), Some(contact))
            }
        };
        let loaded = match inbound.thread {
            Thread::Current => current,
            Thread::New => None,
            Thread::Continue(id) => self
                .store
                .conversation(id)
                .await?
                .filter(|c| c.contact_id == contact.id && !c.status.is_final()),
        };
        // A rating sent after an unconfirmed resolution was closed answers that conversation's
        // question; anything else starts a new conversation.
        // (A mail names its thread: the rating answers that conversation if it asked.)
        let loaded = match loaded {
            None if crate::closing::rating_in(&inbound.text).is_some() => {
                let asked = match inbound.thread {
                    Thread::Current => self.store.contact_conversations(contact.id).await?.into_iter().next().map(|summary| summary.conversation),
                    Thread::Continue(id) => self.store.conversation(id).await?.filter(|c| c.contact_id == contact.id),
                    Thread::New => None,
                };
                asked.filter(|c| self.asks_rating_after_close(c))
            }
            found => found,
        };
        let started = loaded.is_none();
        let starts_current = started && matches!(inbound.thread, Thread::Current);
        let conversation = loaded.unwrap_or_else(|| Conversation::new(contact.id, inbound.channel, now));
        let mut message = new_message(&conversation, Sender::Customer, inbound.text, now);
        message.external_id = Some(inbound.external_id.clone());
        message.attachments = inbound.attachments.into_iter().chain(inbound.original).collect();
        let mut write = StepWrite {
            inbound: Some(message.clone()),
            contact: contact_write,
            conversation: started.then(|| conversation.clone()),
            // A new conversation starts with the timers of its first state (a bot chat's idle close).
            timers: started.then(|| {
                (conversation.id, crate::timers::timers_after(&conversation, &self.policy().quiet, &self.policy().sla, self.policy().hours_for(conversation.channel), now))
            }),
            starts_current,
            ..StepWrite::default()
        }
        .with_history(None, now);
        // Classified already, and no earlier message of the contact waits for its answer: the
        // bot's step is decided now and stored with the message, in one write (a write group, a
        // commit and the answer's own statements saved).
        let (instant, classified) = match classified {
            Some(LocalClassification::Settled(classification)) if !self.answer_order.waits(contact.id) => (Some(classification), None),
            other => (None, other),
        };
        let step_started = std::time::Instant::now();
        let answer = match instant {
            Some(classification) => {
                message.classification = Some(classification.clone());
                let receipt = Receipt { text: &message.text, customer_name: contact.display_name.as_deref() };
                let mut answer = self.decide_answer(conversation.clone(), &message, classification, None, Some(&receipt)).await?;
                write = with_answer(write, std::mem::take(&mut answer.write), &message);
                Some(answer)
            }
            None => None,
        };
        let decided = step_started.elapsed();
        let lease = self.lease_replies(&mut write, contact.id);
        let committed = self.commit(write).await?;
        if answer.is_some() {
            self.step_timed(step_started, decided);
        }
        match committed {
            Committed::Conflict => Ok(None),
            Committed::Duplicate => {
                let existing = self
                    .store
                    .message_by_external_id(inbound.channel, &inbound.external_id)
                    .await?
                    .ok_or_else(|| StoreError::Corrupt("duplicate message vanished".into()))?;
                let conversation = self
                    .store
                    .conversation(existing.conversation_id)
                    .await?
                    .ok_or_else(|| StoreError::Corrupt("message without conversation".into()))?;
                Ok(Some(Received { message: existing, duplicate: true, conversation, place: None, reported_language: None, answered: None, classified: None }))
            }
            Committed::Stored { seqs } => {
                message.seq = seqs[0];
                let conversation = if started { written(conversation) } else { conversation };
                metrics::counter!("switchboard_messages_received_total", "channel" => message.channel.as_str()).increment(1);
                self.publish(&conversation, std::iter::once(&message));
                if let Some(answer) = answer {
                    // A new conversation is stored at the version after the one decided on.
                    let moved_on = answer.changed || started;
                    let outcome = self.answered(answer, &message, &seqs[1..], moved_on, lease, &contact_key.1);
                    return Ok(Some(Received { message, duplicate: false, conversation, place: None, reported_language: None, answered: Some(outcome), classified: None }));
                }
                let place = self.answer_order.take_place(contact.id, message.seq, contact_key);
                Ok(Some(Received { message, duplicate: false, conversation, place: Some(place), reported_language: inbound.reported_language.clone(), answered: None, classified }))
            }
        }
    }

    /// Runs the bot's step on a received message: classifies it (outside any lock, so a slow
    /// hosted LLM holds up nobody else), waits until the contact's earlier messages are
    /// answered, then decides and commits. A storage error is retried until it clears, keeping
    /// the contact's later messages waiting behind this one.
    pub async fn answer(&self, received: Received) -> Result<HandleOutcome, EngineError> {
        let Received { mut message, duplicate, conversation, place, reported_language, answered, classified } = received;
        if let Some(outcome) = answered {
            return Ok(self.after_answer(outcome).await);
        }
        let Some(mut place) = place else {
            return Ok(HandleOutcome { message, duplicate, conversation, replies: Vec::new(), escalated: false });
        };
        let reported = reported_language.as_deref().and_then(switchboard_models::reported_language);
        let classification = match classified {
            Some(LocalClassification::Settled(classification)) => classification,
            Some(LocalClassification::Unsure(local)) => self.classifier.consult(&message.text, local).await,
            None => self.classifier.classify_in(&message.text, reported).await,
        };
        // With no earlier message of this contact in hand, the conversation as read when this
        // one was stored is likely still current: the step is decided on it (a read saved), and
        // the write is refused if the row moved on since, which only costs a retry with a fresh read.
        let mut read_at_receipt = place.after.is_none().then_some(conversation);
        if let Some(earlier) = place.after.take() {
            // Ok or a dropped sender both mean the earlier message is done with.
            let _ = earlier.await;
        }
        message.classification = Some(classification);
        let link = self.link_answer(message.contact_id, message.conversation_id, &message.text).await?;
        let mut retry = std::time::Duration::from_millis(100);
        let outcome = loop {
            match self.answer_in_turn(&place.contact_key, &message, link.as_ref(), read_at_receipt.take()).await {
                // Changed on another node since it was read, or another node holds an earlier
                // message of this customer: wait for that one, then decide again.
                Ok(None) => {
                    if let Some(takeover_after) = self.takeover_after {
                        self.after_earlier_elsewhere(&message, takeover_after).await?;
                    }
                }
                Err(EngineError::Store(StoreError::Backend(reason))) => {
                    if retry == std::time::Duration::from_millis(100) {
                        tracing::error!(seq = message.seq, "answering a stored message failed; retrying until storage recovers: {reason}");
                    }
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(std::time::Duration::from_secs(5));
                }
                Ok(Some(outcome)) => break outcome,
                Err(error) => return Err(error),
            }
        };
        drop(place);
        Ok(self.after_answer(outcome).await)
    }

    /// What follows a stored answer: the summary writer woken, the queue assigned.
    async fn after_answer(&self, mut outcome: HandleOutcome) -> HandleOutcome {
        if let (true, Some(wake)) = (outcome.escalated, &self.summaries) {
            // The wish is stored with the step; this only saves the writer its next poll.
            wake.notify_one();
        }
        if outcome.conversation.handler == Handler::Queue {
            // Committed already: a failure here leaves the conversation queued, not lost.
            match self.assign_waiting().await {
                // Someone was given a conversation, maybe this one: report it as it is now.
                Ok(assigned) if assigned > 0 => {
                    if let Ok(Some(now)) = self.store.conversation(outcome.conversation.id).await {
                        outcome.conversation = now;
                    }
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "auto-assignment failed; the conversation waits in the queue"),
            }
        }
        outcome
    }

    /// Answers `received` in the background (see `answer`); `finish_answers` waits for it.
    pub fn answer_later(self: &Arc<Self>, received: Received) -> tokio::task::JoinHandle<Result<HandleOutcome, EngineError>> {
        let engine = self.clone();
        self.answering.spawn(async move { engine.answer(received).await })
    }

    /// Counts as work in flight until dropped: a stop's drain (`finish_answers`) waits for it. A
    /// channel holds one from before `receive` until its `answer_later` is under way, so the
    /// drain cannot fall between the two.
    pub fn in_flight(&self) -> tokio_util::task::task_tracker::TaskTrackerToken {
        self.answering.token()
    }

    /// Waits for the background answers and receipts running now (a stop's drain); later ones
    /// still run.
    pub async fn finish_answers(&self) {
        self.answering.close();
        self.answering.wait().await;
        self.answering.reopen();
    }

    /// Customer messages stored but never answered (the process stopped in between), oldest
    /// first, each holding its place. Take them before any channel starts, then `answer` each.
    pub async fn unanswered(&self) -> Result<Vec<Received>, EngineError> {
        let mut received = Vec::new();
        for message in self.store.unanswered_messages(100_000).await? {
            let contact = self.store.contact(message.contact_id).await?.ok_or(EngineError::NotFound("contact"))?;
            let conversation = self
                .store
                .conversation(message.conversation_id)
                .await?
                .ok_or(EngineError::NotFound("conversation"))?;
            let place = self.answer_order.take_place(contact.id, message.seq, (contact.channel, contact.external_id));
            received.push(Received { message, duplicate: false, conversation, place: Some(place), reported_language: None, answered: None, classified: None });
        }
        Ok(received)
    }

    /// The message's classification by the local model, made before it is stored so that its
    /// step can be stored with it, in one write: at once (keyword rules, a message the first
    /// stage is sure of, the fast path under overload) or after the sentence encoder's queue
    /// (within its budget). A message whose classification waits for the hosted LLM is stored
    /// first (`Unsure`), so a slow LLM never holds up an acknowledgement. `None` when not
    /// classified here: with several nodes (a contact's earlier message may be another node's),
    /// files (their documents name the stored message), a link request (it issues codes), or
    /// no queue budget (the wait would have no bound). A duplicate is classified before the
    /// store finds it one: a redelivery costs a classification.
    async fn classify_before_storing(&self, inbound: &Inbound) -> Option<LocalClassification> {
        let classifiable = !self.has_other_nodes()
            && inbound.attachments.is_empty()
            && inbound.original.is_none()
            && crate::identity::link_request(&inbound.text).is_none();
        if !classifiable {
            return None;
        }
        let reported = inbound.reported_language.as_deref().and_then(switchboard_models::reported_language);
        match self.classifier.classify_now(&inbound.text, reported) {
            Some(classification) => Some(LocalClassification::Settled(classification)),
            None => self.classifier.classify_declined_locally(&inbound.text, reported).await,
        }
    }

    /// With several nodes, a contact's earlier message may be in another node's hands (the
    /// store refused `message`'s answer for it): waits until it is answered, or answers it here
    /// once it waited `takeover_after` (its node died).
    async fn after_earlier_elsewhere(&self, message: &Message, takeover_after: chrono::Duration) -> Result<(), EngineError> {
        let mut pause = std::time::Duration::from_millis(5);
        while let Some(earlier) = self.store.earlier_unanswered(message.contact_id, message.seq).await? {
            if self.clock.now() - earlier.created_at >= takeover_after {
                self.answer_stranded(earlier).await?;
            } else {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_millis(200));
            }
        }
        Ok(())
    }

    /// Answers the customer messages that waited `takeover_after` unanswered, oldest first: a
    /// node that stored them died before answering (several nodes). Returns how many were
    /// taken over; should their node answer one meanwhile, only the first answer is stored.
    pub async fn answer_stranded_messages(&self) -> Result<u32, EngineError> {
        let Some(takeover_after) = self.takeover_after else { return Ok(0) };
        let cutoff = self.clock.now() - takeover_after;
        let mut taken = 0;
        for message in self.store.unanswered_messages(100).await? {
            if message.created_at > cutoff {
                break;
            }
            self.answer_stranded(message).await?;
            taken += 1;
        }
        Ok(taken)
    }

    /// Answers a customer message another node stored and left (unless it was answered meanwhile).
    async fn answer_stranded(&self, mut message: Message) -> Result<(), EngineError> {
        tracing::info!(seq = message.seq, "answering a customer message its node left unanswered");
        let contact = self.store.contact(message.contact_id).await?.ok_or(EngineError::NotFound("contact"))?;
        message.classification = Some(self.classifier.classify(&message.text).await);
        let link = self.link_answer(contact.id, message.conversation_id, &message.text).await?;
        let contact_key = (contact.channel, contact.external_id);
        for _ in 0..CONFLICT_RETRIES {
            let Some(outcome) = self.answer_in_turn(&contact_key, &message, link.as_ref(), None).await? else { continue };
            if outcome.conversation.handler == Handler::Queue {
                self.assign_waiting().await?;
            }
            return Ok(());
        }
        Err(EngineError::Conflict("a stranded message's conversation kept changing; it is answered on the next pass".into()))
    }

    /// One step for a stored, classified customer message, under its contact's turn; `None`
    /// when the conversation changed on another node meanwhile (nothing was written).
    /// `read_before`: the conversation as read earlier, decided on instead of reading it again;
    /// the write then names the version it was read at (claimed with several nodes, checked
    /// on one), so a stale read is refused, not written.
    async fn answer_in_turn(
        &self,
        contact_key: &(Channel, String),
        message: &Message,
        link: Option<&linking::LinkAnswer>,
        read_before: Option<Conversation>,
    ) -> Result<Option<HandleOutcome>, EngineError> {
        let _turn = self.locks.for_key(contact_key).lock().await;
        let started = std::time::Instant::now();
        let classification = message.classification.clone().expect("classified before its step");
        let read_before = read_before.filter(|c| c.id == message.conversation_id);
        let decided_on_earlier_read = read_before.is_some();
        let before = match read_before {
            Some(read) => read,
            None => self
                .store
                .conversation(message.conversation_id)
                .await?
                .ok_or_else(|| StoreError::Corrupt("message without conversation".into()))?,
        };
        let mut answer = self.decide_answer(before, message, classification, link, None).await?;
        let mut write = std::mem::take(&mut answer.write);
        write.decided_on = self.claim(&answer.before);
        // On one node every other writer holds the contact's turn and reads afresh, so a
        // check of the version suffices where the step was decided on an earlier read.
        write.unchanged_since = (decided_on_earlier_read && !self.has_other_nodes()).then_some((answer.before.id, answer.before.version));
        write.in_order = self.has_other_nodes();
        let decided = started.elapsed();
        let lease = self.lease_replies(&mut write, message.contact_id);
        let committed = self.commit(write).await?;
        self.step_timed(started, decided);
        let seqs = match committed {
            Committed::Stored { seqs } => seqs,
            Committed::Conflict => return Ok(None),
            // Answered already (by a run before a restart, or by another node): nothing more to do.
            Committed::Duplicate => {
                return Ok(Some(HandleOutcome { message: message.clone(), duplicate: false, conversation: answer.before, replies: Vec::new(), escalated: false }));
            }
        };
        let moved_on = answer.changed || self.has_other_nodes();
        Ok(Some(self.answered(answer, message, &seqs, moved_on, lease, &contact_key.1)))
    }

    /// Records how long a step took to decide and to commit (from `started`), logging slow ones.
    fn step_timed(&self, started: std::time::Instant, decided: std::time::Duration) {
        let total = started.elapsed();
        metrics::histogram!("switchboard_step_decide_seconds").record(decided.as_secs_f64());
        metrics::histogram!("switchboard_step_commit_seconds").record((total - decided).as_secs_f64());
        self.commit_lag.record(total - decided);
        if total > SLOW_STEP {
            self.slow_steps.note(decided, total - decided);
        }
    }

    /// Decides the bot's step for a customer message on the conversation as `before`: the
    /// write (without its claim or check, which the caller adds) and what it sends.
    async fn decide_answer(
        &self,
        before: Conversation,
        message: &Message,
        classification: switchboard_models::Classification,
        link: Option<&linking::LinkAnswer>,
        receipt: Option<&Receipt<'_>>,
    ) -> Result<DecidedAnswer, EngineError> {
        let now = self.clock.now();
        let resolver_available = match &before.awaiting {
            Some(Awaiting::Confirmation { agent, .. }) => {
                self.store.agent(*agent).await?.is_some_and(|a| a.active && a.presence == Presence::Online)
            }
            _ => false,
        };
        let input = Input::CustomerMessage {
            text: &message.text,
            classification: &classification,
            has_attachments: message.attachments.iter().any(|a| !a.original),
            resolver_available,
        };
        // A message written before the agent resolved is part of the resolved work, not an
        // answer to the question asked after it: the question stands, nothing is said.
        let predates_question = matches!(&before.awaiting, Some(Awaiting::Confirmation { resolved_at, .. }) if message.created_at < *resolved_at);
        let decision = match link {
            _ if predates_question => unchanged(&before),
            Some(link) => bot_says(&before, &link.text),
            None => step(&before, &input, &self.policy(), now),
        };
        let escalated = decision.escalated.is_some();
        let intent_unused = decision.answered_question || link.is_some();
        let answered_from_intent = decision.answered_from_intent && link.is_none() && !predates_question;
        let timers = decision.timers.clone();
        let notices = notice_writes(before.id, &decision.notices, now, &self.policy().mailed_notices);
        let contact_email = decision.contact_email.clone().map(|address| (before.contact_id, address));
        let feedback = feedback_write(&before, decision.feedback.clone(), now);
        let asked_for = decision.document_kind.clone();
        let documents = if self.policy().documents.review_files || asked_for.is_some() {
            documents_in(message, asked_for.as_deref().unwrap_or(self.policy().documents.unsorted()), now)
        } else {
            Vec::new()
        };
        // The summary reads the message with the earlier ones: stored already, or in `receipt`.
        let (conversation, replies) = self.replies_for(decision, now, receipt).await?;
        let changed = !same_state(&before, &conversation);
        let escalation = conversation.escalation.as_ref().filter(|_| escalated).map(|e| EscalationRecord {
            conversation_id: conversation.id,
            at: e.at,
            reason: e.reason.clone(),
            confidence: Some(classification.confidence),
            priority: conversation.priority,
            category: conversation.category,
        });
        let keep_embedding = !intent_unused && (classification.intent.is(switchboard_models::IntentName::OUT_OF_SCOPE) || classification.confidence < self.policy().low_confidence_threshold);
        let write = StepWrite {
            answers: Some((message.seq, classification)),
            intent_unused,
            answered_from_intent,
            keep_embedding,
            conversation: changed.then(|| conversation.clone()),
            outbound: replies.clone(),
            timers: timers.map(|timers| (conversation.id, timers)),
            notices,
            contact_email,
            feedback,
            escalation,
            documents,
            customer_mails: link.and_then(|l| l.mail.clone()).into_iter().collect(),
            ..StepWrite::default()
        }
        .with_history(Some(&before), now);
        Ok(DecidedAnswer { before, write, conversation, replies, changed, escalated })
    }

    /// After a decided answer was stored (`reply_seqs`: its replies' seqs, in order): gives its
    /// replies to the outbox (`queue_replies`), publishes, and returns the outcome. `moved_on`:
    /// the stored conversation's version is the one after `before`'s (written, or claimed).
    fn answered(&self, answer: DecidedAnswer, message: &Message, reply_seqs: &[i64], moved_on: bool, lease: Option<HandoffLease>, recipient: &str) -> HandleOutcome {
        let DecidedAnswer { conversation, mut replies, escalated, .. } = answer;
        let conversation = if moved_on { written(conversation) } else { conversation };
        for (reply, seq) in replies.iter_mut().zip(reply_seqs) {
            reply.seq = *seq;
        }
        self.queue_replies(&replies, lease, recipient);
        if escalated {
            metrics::counter!("switchboard_escalations_total").increment(1);
        }
        self.publish(&conversation, replies.iter());
        tracing::debug!(conversation_id = %conversation.id, replies = replies.len(), "step committed");
        HandleOutcome { message: message.clone(), duplicate: false, conversation, replies, escalated }
    }

    /// Checks an uploaded file by its content and stores it; the result goes into an `Inbound`
    /// or an agent reply.
    pub async fn accept_upload(&self, file_name: &str, bytes: &[u8]) -> Result<Attachment, EngineError> {
        let content_type = check_upload(bytes, self.limits.max_upload_bytes)?;
        let key = self.blobs.put(bytes).await?;
        Ok(Attachment {
            key,
            file_name: clean_file_name(file_name, content_type),
            content_type: content_type.to_string(),
            size: bytes.len() as u64,
            original: false,
        })
    }

    /// Deletes an accepted upload no message came to hold (refused, or a repeat of one stored).
    pub async fn discard_upload(&self, attachment: &Attachment) {
        if let Err(error) = self.blobs.delete(&attachment.key).await {
            tracing::warn!(%error, key = %attachment.key, "an unused upload could not be deleted");
        }
    }

    /// Keeps a channel's raw original (e.g. a whole email) without judging its content: it is
    /// stored for agents to download, never shown inline.
    pub async fn keep_original(&self, file_name: &str, content_type: &str, bytes: &[u8]) -> Result<Attachment, EngineError> {
        let size = bytes.len() as u64;
        let limit = self.limits.max_upload_bytes;
        if size > limit {
            return Err(UploadError::TooLarge { size, limit }.into());
        }
        let key = self.blobs.put(bytes).await?;
        Ok(Attachment { key, file_name: file_name.to_string(), content_type: content_type.to_string(), size, original: true })
    }

    pub async fn attachment_bytes(&self, attachment: &Attachment) -> Result<Vec<u8>, EngineError> {
        Ok(self.blobs.get(&attachment.key).await?)
    }

    /// An agent's reply to the customer, out on the conversation's channel. An agent who is not
    /// yet handling the conversation takes it first (the customer is told who joined).
    pub async fn agent_reply(
        &self,
        conversation_id: ConversationId,
        agent_id: AgentId,
        text: String,
        attachments: Vec<Attachment>,
    ) -> Result<Message, EngineError> {
        if text.trim().is_empty() && attachments.is_empty() {
            return Err(EngineError::Invalid("the reply is empty".into()));
        }
        self.check_length("reply", &text)?;
        let agent = self.store.agent(agent_id).await?.filter(|a| a.active).ok_or(EngineError::NotFound("agent"))?;
        for _ in 0..CONFLICT_RETRIES {
            if let Some(reply) = self.agent_reply_once(conversation_id, &agent, &text, &attachments).await? {
                return Ok(reply);
            }
        }
        Err(EngineError::Conflict("the conversation kept changing while the reply was sent; reload and send it again".into()))
    }

    /// `agent_reply` on the conversation as it is now; `None` when it changed on another node
    /// before the write (nothing was written).
    async fn agent_reply_once(
        &self,
        conversation_id: ConversationId,
        agent: &Agent,
        text: &str,
        attachments: &[Attachment],
    ) -> Result<Option<Message>, EngineError> {
        let (_turn, conversation) = self.turn_of(conversation_id).await?;
        if conversation.status.is_final() {
            return Err(EngineError::Invalid(format!(
                "the conversation is {}; replies can no longer be sent",
                conversation.status
            )));
        }
        self.may_act(agent, &conversation).await?;
        let now = self.clock.now();
        let mut outbound = Vec::new();
        let before = conversation.clone();
        let mut current = conversation;
        let newly_assigned = current.handler != Handler::Agent(agent.id);
        if newly_assigned {
            let joined = step(&current, &Input::AgentJoined { agent: agent.id, agent_name: &agent.name, given: false }, &self.policy(), now);
            let (next, replies) = self.replies_for(joined, now, None).await?;
            outbound.extend(replies);
            current = next;
        }
        let replied = step(&current, &Input::AgentReplied { agent: agent.id }, &self.policy(), now);
        let timers = replied.timers.clone();
        let mut reply = new_message(&replied.conversation, Sender::Agent, text.to_string(), now);
        reply.agent_id = Some(agent.id);
        reply.attachments = attachments.to_vec();
        outbound.push(reply);
        let conversation = replied.conversation;
        let audit = Audit { actor: Some(agent.id), action: AuditAction::Reply, subject_agent: None, note: None };
        let entry = audit.entry(now, &before, &conversation);
        let Some((conversation, mut stored)) = self.commit_change(&before, conversation, outbound, Some(entry), timers, Vec::new()).await? else {
            return Ok(None);
        };
        if newly_assigned {
            self.bus.publish(DomainEvent::Assigned { conversation, agent: agent.id });
        }
        Ok(Some(stored.pop().expect("the reply is last")))
    }

    /// An agents' note on the conversation: kept with it, never shown or sent to the customer.
    /// An agent asks for a failed (or still retrying) reply to be sent again now.
    pub async fn retry_delivery(&self, conversation: ConversationId, seq: i64) -> Result<Message, EngineError> {
        let Some(message) = self.store.retry_delivery(conversation, seq, self.clock.now()).await? else {
            return Err(EngineError::Conflict(format!(
                "reply {seq} of this conversation was delivered already, or is not a reply of this conversation; reload it"
            )));
        };
        self.outbox_wake.replies_queued();
        self.bus.publish(DomainEvent::DeliveryChanged(message.clone()));
        Ok(message)
    }

    /// A channel learned after the fact that a reply never arrived (an email bounce). Returns
    /// the reply, or None when the id is not one of our replies.
    pub async fn delivery_failed(&self, message: MessageId, reason: &str, unreachable: bool) -> Result<Option<Message>, EngineError> {
        let now = self.clock.now();
        let Some(failed) = self.store.fail_delivery(message, reason, now).await? else { return Ok(None) };
        if unreachable {
            self.store.mark_unreachable(failed.contact_id, now, reason).await?;
        }
        metrics::counter!("switchboard_delivery_give_ups_total", "channel" => failed.channel.as_str()).increment(1);
        self.bus.publish(DomainEvent::DeliveryChanged(failed.clone()));
        Ok(Some(failed))
    }

    /// The customer saw the replies of theirs up to `up_to_seq` (web chat).
    pub async fn mark_seen(&self, contact: ContactId, up_to_seq: i64) -> Result<(), EngineError> {
        for message in self.store.mark_seen(contact, up_to_seq, self.clock.now()).await? {
            self.bus.publish(DomainEvent::DeliveryChanged(message));
        }
        Ok(())
    }

    pub async fn add_note(&self, conversation_id: ConversationId, agent_id: AgentId, text: String) -> Result<Message, EngineError> {
        if text.trim().is_empty() {
            return Err(EngineError::Invalid("the note is empty".into()));
        }
        self.check_length("note", &text)?;
        let agent = self.store.agent(agent_id).await?.filter(|a| a.active).ok_or(EngineError::NotFound("agent"))?;
        let conversation = self.store.conversation(conversation_id).await?.ok_or(EngineError::NotFound("conversation"))?;
        let now = self.clock.now();
        let mut note = new_message(&conversation, Sender::Agent, text, now);
        note.agent_id = Some(agent.id);
        note.internal = true;
        let audit = AuditEntry {
            at: now,
            actor: Some(agent.id),
            action: AuditAction::Note,
            conversation: Some(conversation.id),
            subject_agent: None,
            before: None,
            after: None,
        };
        // `@Ann` (or `@"Ann Lee"`'s first name) tells that colleague.
        let mentioned = self.store.list_agents().await?.into_iter().filter(|a| a.active && a.id != agent.id && mentions(&note.text, &a.name));
        let notices = mentioned
            .map(|a| crate::ports::NoticeWrite {
                to: crate::step::Recipient::Agent(a.id),
                kind: switchboard_models::NotificationKind::Mentioned,
                conversation: Some(conversation.id),
                text: format!("{} mentioned you: {}", agent.name, crate::step::snippet(&note.text)),
                at: now,
                by_email: self.policy().mailed_notices.contains(&switchboard_models::NotificationKind::Mentioned),
            })
            .collect();
        let write = StepWrite { notes: vec![note.clone()], audit: Some(audit), notices, ..StepWrite::default() };
        let Committed::Stored { seqs } = self.commit(write).await? else {
            return Err(StoreError::Corrupt("a note was taken for a duplicate".into()).into());
        };
        note.seq = seqs[0];
        self.publish(&conversation, std::iter::once(&note));
        Ok(note)
    }

    /// Applies an agent's change to a ticket. `version` (the conversation's `updated_at` in
    /// milliseconds, as the agent last saw it) guards against overwriting someone else's change.
    pub async fn change_ticket(
        &self,
        conversation_id: ConversationId,
        actor_id: AgentId,
        change: TicketChange,
        version: Option<i64>,
    ) -> Result<Conversation, EngineError> {
        let actor = self.store.agent(actor_id).await?.filter(|a| a.active).ok_or(EngineError::NotFound("agent"))?;
        if change == TicketChange::Status(Status::Confirmed) {
            return Err(EngineError::Invalid("only the customer confirms a resolution; resolve it and they are asked".into()));
        }
        let seen = self.store.conversation(conversation_id).await?.ok_or(EngineError::NotFound("conversation"))?;
        if seen.status.is_final() {
            return Err(EngineError::Invalid(format!("the conversation is {}; it can no longer be changed", seen.status)));
        }
        if let Some(version) = version
            && version != seen.updated_at.timestamp_millis()
        {
            return Err(EngineError::Conflict(
                "someone changed this conversation since you opened it; reload to see their change".into(),
            ));
        }
        if change != TicketChange::Take || matches!(seen.handler, Handler::Agent(_)) {
            self.may_act(&actor, &seen).await?;
        }
        let assignee = match change {
            TicketChange::Assign(agent) => {
                Some(self.store.agent(agent).await?.filter(|a| a.active).ok_or(EngineError::NotFound("agent"))?)
            }
            TicketChange::Take => Some(actor.clone()),
            _ => None,
        };
        let (input, action) = match (&change, &assignee) {
            // Resolving through the status asks the customer to confirm, like the Resolve button.
            (TicketChange::Status(Status::Resolved), _) => (Input::Resolved { agent: actor.id, agent_name: &actor.name }, AuditAction::Status),
            (TicketChange::Status(status), _) => (Input::StatusSet(*status), AuditAction::Status),
            (TicketChange::Priority(priority), _) => (Input::PrioritySet(*priority), AuditAction::Priority),
            (TicketChange::Category(category), _) => (Input::CategorySet(*category), AuditAction::Category),
            (TicketChange::Assign(_) | TicketChange::Take, Some(agent)) => {
                (Input::AgentJoined { agent: agent.id, agent_name: &agent.name, given: agent.id != actor.id }, AuditAction::Assign)
            }
            (TicketChange::Release, _) => (Input::Released { agent_name: &actor.name }, AuditAction::Release),
            (TicketChange::HandBack, _) => (Input::HandedBackToBot, AuditAction::HandBack),
            (TicketChange::Assign(_) | TicketChange::Take, None) => unreachable!("assignee resolved above"),
        };
        let over_capacity = match &assignee {
            Some(agent) if seen.handler != Handler::Agent(agent.id) => self.over_capacity(agent, conversation_id).await?,
            _ => None,
        };
        let audit = Audit { actor: Some(actor.id), action, subject_agent: assignee.as_ref().map(|a| a.id), note: over_capacity };
        let unchanged = |c: &Conversation| c.updated_at == seen.updated_at && !c.status.is_final();
        let changed = self.change(conversation_id, unchanged, input, Some(audit)).await?.ok_or_else(|| {
            EngineError::Conflict("someone changed this conversation at the same moment; reload and try again".into())
        })?;
        if let Some(agent) = assignee {
            self.bus.publish(DomainEvent::Assigned { conversation: changed.clone(), agent: agent.id });
        }
        if matches!(change, TicketChange::Release | TicketChange::HandBack | TicketChange::Status(_)) {
            self.assign_waiting().await?;
        }
        Ok(changed)
    }

    /// When giving `agent` one more conversation goes past their capacity: refused when the
    /// policy forbids it, else the note the audit entry carries ("over capacity: 3 of 2").
    async fn over_capacity(&self, agent: &Agent, taking: ConversationId) -> Result<Option<String>, EngineError> {
        let open = self.store.agent_load(agent.id, Some(taking)).await?;
        if open < agent.capacity {
            return Ok(None);
        }
        if !self.policy().allow_over_capacity {
            return Err(EngineError::Forbidden(format!(
                "{} has {} of {} conversations; finish or release one first (bot.allow_over_capacity is off)",
                agent.name,
                crate::assignment::load_words(open),
                agent.capacity
            )));
        }
        Ok(Some(format!("over capacity: {} of {}", crate::assignment::load_words(open + 1), agent.capacity)))
    }

    /// An agent's unfinished conversations and their capacity.
    pub async fn load_of(&self, agent: &Agent) -> Result<(u32, u32), EngineError> {
        Ok((self.store.agent_load(agent.id, None).await?, agent.capacity))
    }

    /// Agents act on conversations that are theirs or nobody's; admins on any.
    async fn may_act(&self, actor: &Agent, conversation: &Conversation) -> Result<(), EngineError> {
        match conversation.handler {
            Handler::Agent(owner) if owner != actor.id && actor.role != Role::Admin => {
                let name = self.store.agent(owner).await?.map(|a| a.name).unwrap_or_else(|| "another agent".into());
                Err(EngineError::Forbidden(format!(
                    "this conversation is assigned to {name}; ask them or an admin to release it first"
                )))
            }
            _ => Ok(()),
        }
    }

    /// Gives waiting conversations, longest waiting first, to online agents with room.
    /// Returns how many were assigned.
    pub async fn assign_waiting(&self) -> Result<u32, EngineError> {
        let _one_at_a_time = self.assigning.lock().await;
        // And one node at a time, so no slot is given out twice across nodes either.
        let _everywhere = self.store.exclusive("assignment").await?;
        let mut assigned = 0;
        while let Some(waiting) = self.store.queued_conversations(1).await?.pop() {
            let loads = self.store.assignment_candidates().await?;
            let Some(agent) = pick_agent(&loads, &waiting.wanted_skills()).cloned() else { break };
            if self.take(waiting.id, &agent).await? {
                assigned += 1;
            }
        }
        Ok(assigned)
    }

    /// An admin changes an agent's capacity or whether the account is active. Deactivating
    /// hands the agent's conversations back to the queue first, and ends their sessions and API
    /// tokens for good (reactivating does not bring them back); the change, the revocation and
    /// the audit entry are written together.
    pub async fn update_agent(&self, actor: AgentId, id: AgentId, capacity: u32, active: bool) -> Result<Agent, EngineError> {
        self.edit_agent(actor, id, AgentEdit { capacity: Some(capacity), active: Some(active), ..AgentEdit::default() }).await
    }

    /// `update_agent` for any of an account's name, email, role, capacity, skills and activity (what is
    /// `None` stays). No one deactivates their own account or takes their own admin role (another
    /// admin can); an email address belongs to one account. Names and addresses come checked.
    pub async fn edit_agent(&self, actor: AgentId, id: AgentId, edit: AgentEdit) -> Result<Agent, EngineError> {
        let mut agent = self.store.agent(id).await?.ok_or(EngineError::NotFound("agent"))?;
        let active = edit.active.unwrap_or(agent.active);
        let deactivating = agent.active && !active;
        if deactivating && agent.id == actor {
            return Err(EngineError::Invalid("you cannot deactivate your own account".into()));
        }
        if agent.id == actor && agent.role == Role::Admin && edit.role.is_some_and(|r| r != Role::Admin) {
            return Err(EngineError::Invalid("you cannot take away your own admin role; another admin can".into()));
        }
        if let Some(email) = edit.email.as_deref().filter(|e| *e != agent.email) {
            if self.store.agent_by_email(email).await?.is_some() {
                return Err(EngineError::Invalid(format!("{email} belongs to another account")));
            }
        }
        let describe = |a: &Agent| {
            let skills = if a.skills.is_empty() { String::new() } else { format!(", skills {}", a.skills.join(" ")) };
            format!("{} <{}>, {}, capacity {}, active {}{skills}", a.name, a.email, a.role.as_str(), a.capacity, a.active)
        };
        let before = describe(&agent);
        if deactivating {
            // Their conversations go back to the queue first, while the account can still act.
            self.set_presence(agent.id, Presence::Offline).await?;
            agent.presence = Presence::Offline;
        }
        agent.name = edit.name.unwrap_or(agent.name);
        agent.email = edit.email.unwrap_or(agent.email);
        agent.role = edit.role.unwrap_or(agent.role);
        agent.capacity = edit.capacity.unwrap_or(agent.capacity);
        agent.skills = edit.skills.unwrap_or(agent.skills);
        agent.active = active;
        let audit = AuditEntry {
            at: self.clock.now(),
            actor: Some(actor),
            action: AuditAction::UpdateAccount,
            conversation: None,
            subject_agent: Some(agent.id),
            before: Some(before),
            after: Some(describe(&agent)),
        };
        let write = AdminWrite {
            agent: Some(agent.clone()),
            revoke_credentials: deactivating.then_some(agent.id),
            audit: vec![audit],
            ..AdminWrite::default()
        };
        self.store.commit_admin(write).await?;
        self.assign_waiting().await?;
        Ok(agent)
    }

    /// The agent becomes online, away or offline. Online agents get waiting conversations; an
    /// agent going offline hands theirs back to the queue, for someone else to take.
    pub async fn set_presence(&self, agent_id: AgentId, presence: Presence) -> Result<(), EngineError> {
        let agent = self.store.agent(agent_id).await?.filter(|a| a.active).ok_or(EngineError::NotFound("agent"))?;
        let now = self.clock.now();
        let audit = (agent.presence != presence).then(|| AuditEntry {
            at: now,
            actor: Some(agent.id),
            action: AuditAction::Presence,
            conversation: None,
            subject_agent: Some(agent.id),
            before: Some(agent.presence.to_string()),
            after: Some(presence.to_string()),
        });
        let changed = audit.is_some();
        let write = AdminWrite { presence: Some((agent.id, presence, now)), audit: audit.into_iter().collect(), ..AdminWrite::default() };
        self.store.commit_admin(write).await?;
        if changed {
            self.bus.publish(DomainEvent::PresenceChanged { agent: agent.id, presence });
        }
        if presence == Presence::Offline {
            for conversation in self.store.agent_conversations(agent.id).await? {
                let released = Input::Released { agent_name: &agent.name };
                let audit = Audit { actor: Some(agent.id), action: AuditAction::Release, subject_agent: None, note: None };
                self.change(conversation.id, |c| c.handler == Handler::Agent(agent.id), released, Some(audit)).await?;
            }
        }
        self.assign_waiting().await?;
        Ok(())
    }

    /// Marks the conversation resolved (the bot answers again if the customer writes) and
    /// gives the freed slot to whoever waits.
    pub async fn resolve(&self, conversation_id: ConversationId, by: AgentId) -> Result<(), EngineError> {
        let agent = self.store.agent(by).await?.ok_or(EngineError::NotFound("agent"))?;
        let audit = Audit { actor: Some(by), action: AuditAction::Resolve, subject_agent: None, note: None };
        let resolved = Input::Resolved { agent: by, agent_name: &agent.name };
        self.change(conversation_id, |c| !c.status.is_final(), resolved, Some(audit)).await?;
        self.assign_waiting().await?;
        Ok(())
    }

    /// Resolves a conversation whose documents are all approved, unless it is resolved or
    /// finished already (checked in its turn, so two last approvals at once resolve it once).
    async fn resolve_when_all_approved(&self, conversation_id: ConversationId, actor: &Agent) -> Result<(), EngineError> {
        let filter = crate::ports::DocumentFilter { conversation: Some(conversation_id), limit: 200, ..Default::default() };
        if !self.store.documents(&filter).await?.iter().all(|d| d.document.state == DocumentState::Approved) {
            return Ok(());
        }
        let audit = Audit { actor: Some(actor.id), action: AuditAction::Resolve, subject_agent: None, note: Some("every document approved".into()) };
        let resolved = Input::Resolved { agent: actor.id, agent_name: &actor.name };
        let still_open = |c: &Conversation| !c.status.is_final() && !matches!(c.status, Status::Resolved | Status::Confirmed);
        self.change(conversation_id, still_open, resolved, Some(audit)).await?;
        Ok(())
    }

    /// An agent reopens a closed or rejected conversation to follow up: it is theirs, in
    /// progress, and their replies reach the customer again. Refused while the customer has
    /// another open conversation (follow up there).
    pub async fn reopen(&self, conversation_id: ConversationId, actor_id: AgentId) -> Result<Conversation, EngineError> {
        let actor = self.store.agent(actor_id).await?.filter(|a| a.active).ok_or(EngineError::NotFound("agent"))?;
        let seen = self.store.conversation(conversation_id).await?.ok_or(EngineError::NotFound("conversation"))?;
        if !seen.status.is_final() {
            return Err(EngineError::Invalid(format!("the conversation is {}, not closed; reply to it instead", seen.status)));
        }
        if let Some(open) = self.store.current_conversation(seen.contact_id).await? {
            return Err(EngineError::Conflict(format!(
                "the customer has an open conversation already; follow up there (/panel/conversations/{})",
                open.id
            )));
        }
        let audit = Audit { actor: Some(actor.id), action: AuditAction::Status, subject_agent: Some(actor.id), note: None };
        let reopened = self.change(conversation_id, |c| c.status.is_final(), Input::Reopened { agent: actor.id }, Some(audit)).await?;
        reopened.ok_or_else(|| EngineError::Conflict("the conversation changed meanwhile; reload and try again".into()))
    }

    /// A reviewer approves or rejects a pending document (giving its type; a rejection needs a
    /// reason), and the customer is told on their channel. Audited. When two decide at once,
    /// one wins and the other gets a conflict naming the decision.
    pub async fn decide_document(
        &self,
        id: DocumentId,
        actor_id: AgentId,
        approved: bool,
        kind: &str,
        note: Option<String>,
    ) -> Result<Document, EngineError> {
        let actor = self.store.agent(actor_id).await?.filter(|a| a.active).ok_or(EngineError::NotFound("agent"))?;
        let document = self.store.document(id).await?.ok_or(EngineError::NotFound("document"))?;
        let note = note.map(|n| n.trim().to_string()).filter(|n| !n.is_empty());
        if !approved && note.is_none() {
            return Err(EngineError::Invalid("a rejection needs a reason the customer can act on".into()));
        }
        if let Some(note) = &note {
            self.check_length("note", note)?;
        }
        // Its own type stays allowed when the configured list dropped it since.
        if kind != document.kind && !self.policy().documents.types.iter().any(|t| t == kind) {
            return Err(EngineError::Invalid(format!("`{kind}` is not a document type; use one of: {}", self.policy().documents.types.join(", "))));
        }
        if document.state != DocumentState::Pending {
            return Err(self.decided_already(&document).await?);
        }
        let (turn, current) = self.turn_of(document.conversation_id).await?;
        self.may_act(&actor, &current).await?;
        let now = self.clock.now();
        let input = Input::DocumentDecided { kind, approved, note: note.as_deref() };
        let decision = step(&current, &input, &self.policy(), now);
        let (conversation, outbound) = self.replies_for(decision, now, None).await?;
        let state = if approved { DocumentState::Approved } else { DocumentState::Rejected };
        let described = |state: &str| format!("{} {} ({}): {state}", crate::documents::type_label(&document.kind), document.id, document.file.file_name);
        let audit = AuditEntry {
            at: now,
            actor: Some(actor.id),
            action: AuditAction::ReviewDocument,
            conversation: Some(document.conversation_id),
            subject_agent: None,
            before: Some(described("pending")),
            after: Some(match &note {
                Some(note) => format!("{} as {kind} ({note})", described(state.as_str())),
                None => format!("{} as {kind}", described(state.as_str())),
            }),
        };
        let decides = DocumentDecision { document: id, state, kind: kind.to_string(), reviewer: actor.id, note: note.clone(), at: now };
        let decided_on = self.claim(&current);
        let customer_mails = self.mail_copies(&conversation, &input, &outbound, now).await?;
        let write = StepWrite { conversation: Some(conversation), outbound, audit: Some(audit), decided_on, decides: Some(decides), customer_mails, ..StepWrite::default() }
            .with_history(Some(&current), now);
        if self.commit_write(write).await?.is_none() {
            let now_stored = self.store.document(id).await?.ok_or(EngineError::NotFound("document"))?;
            return Err(if now_stored.state == DocumentState::Pending {
                EngineError::Conflict("the conversation changed meanwhile; reload and decide again".into())
            } else {
                self.decided_already(&now_stored).await?
            });
        }
        // Resolving takes the conversation's turn itself. The decision is stored: a failure to
        // resolve is logged, not reported as the decision's.
        drop(turn);
        if approved && self.policy().documents.resolve_when_approved {
            if let Err(error) = self.resolve_when_all_approved(document.conversation_id, &actor).await {
                tracing::warn!(%error, conversation = %document.conversation_id, "the approved documents' conversation was not resolved");
            }
        }
        Ok(Document { state, kind: kind.to_string(), reviewer_id: Some(actor.id), decided_at: Some(now), note, ..document })
    }

    /// The conflict a second reviewer gets: who decided what.
    async fn decided_already(&self, document: &Document) -> Result<EngineError, EngineError> {
        let by = match document.reviewer_id {
            Some(reviewer) => self.store.agent(reviewer).await?.map_or("someone".to_string(), |a| a.name),
            None => "someone".to_string(),
        };
        Ok(EngineError::Conflict(format!("this document was {} by {by} already", document.state)))
    }

    /// An agent writes first to a known customer: a new conversation, theirs, with `text` as
    /// its first message, on the customer's channel. Refused where the channel cannot start a
    /// chat (a Telegram group, a Discord server thread), for an unreachable customer, and while
    /// the customer has an open conversation (write there).
    pub async fn start_conversation(&self, contact_id: ContactId, actor_id: AgentId, text: String) -> Result<(Conversation, Message), EngineError> {
        let actor = self.store.agent(actor_id).await?.filter(|a| a.active).ok_or(EngineError::NotFound("agent"))?;
        let contact = self.store.contact(contact_id).await?.ok_or(EngineError::NotFound("contact"))?;
        if text.trim().is_empty() {
            return Err(EngineError::Invalid("the message is empty".into()));
        }
        self.check_length("message", &text)?;
        if let Some(why) = cannot_write_first(&contact) {
            return Err(EngineError::Invalid(why));
        }
        let _turn = self.locks.for_key((contact.channel, contact.external_id.as_str())).lock().await;
        if let Some(open) = self.store.current_conversation(contact.id).await? {
            return Err(EngineError::Conflict(format!(
                "the customer has an open conversation already; write there (/panel/conversations/{})",
                open.id
            )));
        }
        let now = self.clock.now();
        let started = Conversation::new(contact.id, contact.channel, now);
        let taken = step(&started, &Input::Reopened { agent: actor.id }, &self.policy(), now).conversation;
        let replied = step(&taken, &Input::AgentReplied { agent: actor.id }, &self.policy(), now);
        let mut message = new_message(&replied.conversation, Sender::Agent, text, now);
        message.agent_id = Some(actor.id);
        let audit = Audit { actor: Some(actor.id), action: AuditAction::Reply, subject_agent: None, note: Some("started the conversation".into()) };
        let entry = audit.entry(now, &started, &replied.conversation);
        let write = StepWrite {
            conversation: Some(replied.conversation),
            outbound: vec![message],
            audit: Some(entry),
            timers: replied.timers.map(|timers| (started.id, timers)),
            starts_current: true,
            ..StepWrite::default()
        }
        .with_history(None, now);
        match self.commit_write(write).await? {
            Some((conversation, mut stored)) => Ok((conversation, stored.pop().expect("the message was written"))),
            None => Err(EngineError::Conflict("the customer started a conversation at the same moment; reload and write there".into())),
        }
    }

    /// The customer of `contact` rates the conversation's latest resolution (widget stars, the
    /// API): taken only while a rating is awaited from them, so a late, repeated or forged rating
    /// changes nothing. Returns whether it was taken.
    pub async fn rate(&self, conversation_id: ConversationId, contact: ContactId, score: u8) -> Result<bool, EngineError> {
        if !(1..=5).contains(&score) {
            return Err(EngineError::Invalid(format!("a rating is 1 to 5, not {score}")));
        }
        let awaits_rating = |c: &Conversation| c.contact_id == contact && matches!(c.awaiting, Some(Awaiting::Rating { .. }));
        // No agent acted: no audit entry.
        Ok(self.change(conversation_id, awaits_rating, Input::Rated { score }, None).await?.is_some())
    }

    /// Fires the timers due now, each through a step that deletes it in its own transaction,
    /// so each fires once however many nodes try. Returns how many fired.
    pub async fn fire_due_timers(&self) -> Result<u32, EngineError> {
        let now = self.clock.now();
        // Leased for a minute: a node that dies holding timers leaves them to another then.
        let due = self.store.claim_due_timers(now, now + chrono::Duration::seconds(60), TIMER_BATCH).await?;
        let mut fired = 0;
        for timer in due {
            for _ in 0..CONFLICT_RETRIES {
                match self.fire(&timer).await {
                    Ok(Some(true)) => fired += 1,
                    Ok(Some(false)) | Err(EngineError::NotFound(_)) => {}
                    // The conversation changed on another node meanwhile: decide again.
                    Ok(None) => continue,
                    Err(error) => return Err(error),
                }
                break;
            }
        }
        Ok(fired)
    }

    /// Fires one claimed timer: `Some(true)` when it fired, `Some(false)` when it was gone,
    /// `None` when the conversation changed since it was read (nothing was written).
    async fn fire(&self, timer: &crate::timers::Timer) -> Result<Option<bool>, EngineError> {
        let (_turn, current) = self.turn_of(timer.conversation).await?;
        let now = self.clock.now();
        let newest = self.store.latest_conversation_messages(current.id, None, 1).await?;
        let last_message = newest.first().map_or(current.updated_at, |m| m.created_at);
        let decision = step(&current, &Input::TimerFired { kind: timer.kind, last_message }, &self.policy(), now);
        let timers = decision.timers.clone().map(|timers| (current.id, timers));
        let notices = notice_writes(current.id, &decision.notices, now, &self.policy().mailed_notices);
        let (mut conversation, mut replies) = self.replies_for(decision, now, None).await?;
        if same_state(&current, &Conversation { sla_notices: current.sla_notices, ..conversation.clone() }) {
            // Only an SLA notice was recorded: open views of it stay current.
            conversation.updated_at = current.updated_at;
        }
        let changed = !same_state(&current, &conversation);
        let audit = Audit { actor: None, action: AuditAction::Status, subject_agent: None, note: Some(format!("{} came due", timer.kind.as_str())) };
        let customer_mails = self.mail_copies(&conversation, &Input::TimerFired { kind: timer.kind, last_message }, &replies, now).await?;
        let write = StepWrite {
            conversation: changed.then(|| conversation.clone()),
            outbound: replies.clone(),
            audit: changed.then(|| audit.entry(now, &current, &conversation)),
            timers,
            fires: Some(*timer),
            decided_on: self.claim(&current),
            notices,
            customer_mails,
            ..StepWrite::default()
        }
        .with_history(Some(&current), now);
        let seqs = match self.commit(write).await? {
            Committed::Stored { seqs } => seqs,
            Committed::Duplicate => return Ok(Some(false)),
            Committed::Conflict => return Ok(None),
        };
        for (reply, seq) in replies.iter_mut().zip(seqs) {
            reply.seq = seq;
        }
        if !replies.is_empty() {
            self.outbox_wake.replies_queued();
        }
        let conversation = if changed || self.has_other_nodes() { written(conversation) } else { conversation };
        self.publish(&conversation, replies.iter());
        if conversation.handler == Handler::Queue && current.handler != Handler::Queue {
            // Back in the queue (an SLA breach reassigning it): someone else may take it now.
            self.assign_waiting().await?;
        }
        Ok(Some(true))
    }

    /// Gives a waiting conversation to `agent`, if it is still waiting.
    async fn take(&self, conversation_id: ConversationId, agent: &Agent) -> Result<bool, EngineError> {
        let joined = Input::AgentJoined { agent: agent.id, agent_name: &agent.name, given: true };
        let audit = Audit { actor: None, action: AuditAction::Assign, subject_agent: Some(agent.id), note: None };
        match self.change(conversation_id, |c| c.handler == Handler::Queue, joined, Some(audit)).await? {
            Some(conversation) => {
                self.bus.publish(DomainEvent::Assigned { conversation, agent: agent.id });
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Runs one step on a conversation outside a customer message, under its contact's turn,
    /// if `applies` still holds once the turn is ours. Returns the new state when it ran.
    async fn change(
        &self,
        conversation_id: ConversationId,
        applies: impl Fn(&Conversation) -> bool,
        input: Input<'_>,
        audit: Option<Audit>,
    ) -> Result<Option<Conversation>, EngineError> {
        for _ in 0..CONFLICT_RETRIES {
            let (_turn, current) = self.turn_of(conversation_id).await?;
            if !applies(&current) {
                return Ok(None);
            }
            let now = self.clock.now();
            let decision = step(&current, &input, &self.policy(), now);
            let timers = decision.timers.clone();
            let notices = notice_writes(current.id, &decision.notices, now, &self.policy().mailed_notices);
            let feedback = feedback_write(&current, decision.feedback.clone(), now);
            let (conversation, replies) = self.replies_for(decision, now, None).await?;
            let audit = audit.as_ref().map(|audit| audit.entry(now, &current, &conversation));
            let timers = timers.map(|timers| (conversation.id, timers));
            let decided_on = self.claim(&conversation);
            // A reopened conversation becomes the contact's current one again: refused while
            // they have another open one.
            let starts_current = matches!(input, Input::Reopened { .. });
            let customer_mails = self.mail_copies(&conversation, &input, &replies, now).await?;
            let write = StepWrite {
                conversation: Some(conversation),
                outbound: replies,
                audit,
                timers,
                decided_on,
                notices,
                feedback,
                starts_current,
                customer_mails,
                ..StepWrite::default()
            }
            .with_history(Some(&current), now);
            if let Some((conversation, _)) = self.commit_write(write).await? {
                return Ok(Some(conversation));
            }
        }
        Err(EngineError::Conflict("the conversation kept changing on other nodes; reload and try again".into()))
    }

    /// Names a customer, and keeps their email, as their channel vouches for them (the embedding
    /// site's signed user, or what a visitor wrote in the pre-chat form). The contact is created
    /// when they have not written yet; a name or email left out keeps what was known.
    pub async fn identify_contact(&self, channel: Channel, external_id: &str, name: Option<String>, email: Option<String>) -> Result<Contact, EngineError> {
        let name = name.map(|n| n.trim().to_string()).filter(|n| !n.is_empty());
        if let Some(name) = &name {
            let chars = name.chars().count();
            if chars > 120 {
                return Err(EngineError::Invalid(format!("the name has {chars} characters; the limit is 120")));
            }
        }
        let email = match email.map(|e| e.trim().to_lowercase()).filter(|e| !e.is_empty()) {
            Some(given) if crate::step::email_address_in(&given).as_deref() == Some(given.as_str()) && given.len() <= 254 => Some(given),
            Some(given) => return Err(EngineError::Invalid(format!("`{given}` is not an email address"))),
            None => None,
        };
        let contact_key = (channel, external_id.to_string());
        for _ in 0..CONFLICT_RETRIES {
            let _turn = self.locks.for_key(&contact_key).lock().await;
            let contact = match self.store.contact_by_external_id(channel, external_id).await? {
                Some(known) => Contact { display_name: name.clone().or(known.display_name.clone()), ..known },
                None => Contact {
                    id: ContactId::new(),
                    channel,
                    external_id: external_id.to_string(),
                    display_name: name.clone(),
                    created_at: self.clock.now(),
                    unreachable_since: None,
                    unreachable_reason: None,
                    email: None,
                },
            };
            let contact_email = email.clone().map(|address| (contact.id, address));
            let write = StepWrite { contact: Some(contact.clone()), contact_email, ..StepWrite::default() };
            if matches!(self.store.commit(write).await?, Committed::Stored { .. }) {
                return Ok(Contact { email: email.or(contact.email.clone()), ..contact });
            }
        }
        Err(EngineError::Conflict("the customer kept changing on other nodes; try again".into()))
    }

    /// An agent was shown the conversation up to the customer's message `up_to_seq`: it is
    /// marked seen (web chat shows the mark). Only an agent who may act there counts.
    pub async fn agent_saw(&self, conversation: &Conversation, agent: &Agent, up_to_seq: i64) -> Result<(), EngineError> {
        if !agent.active || self.may_act(agent, conversation).await.is_err() {
            return Ok(());
        }
        if self.store.mark_seen_by_agent(conversation.id, agent.id, up_to_seq, self.clock.now()).await? {
            self.bus.publish(DomainEvent::SeenByAgent { conversation: conversation.id, up_to_seq });
        }
        Ok(())
    }

    /// The customer is typing in their current conversation: a cue for agents' open views.
    pub fn customer_typing(&self, conversation: ConversationId) {
        self.bus.publish(DomainEvent::Typing { conversation, agent_name: None });
    }

    /// An agent is typing a reply: a cue for the customer, where their channel shows one. Only
    /// an agent who may reply there is announced.
    pub async fn agent_typing(&self, conversation_id: ConversationId, agent_id: AgentId) -> Result<(), EngineError> {
        let agent = self.store.agent(agent_id).await?.filter(|a| a.active).ok_or(EngineError::NotFound("agent"))?;
        let conversation = self.store.conversation(conversation_id).await?.ok_or(EngineError::NotFound("conversation"))?;
        self.may_act(&agent, &conversation).await?;
        if !conversation.status.is_final() {
            self.bus.publish(DomainEvent::Typing { conversation: conversation_id, agent_name: Some(agent.name) });
        }
        Ok(())
    }

    /// A conversation closed within the last week with a rating still asked for: a rating the
    /// customer sends answers it (a digit weeks later is a new message).
    fn asks_rating_after_close(&self, c: &Conversation) -> bool {
        let recent = self.clock.now() - c.updated_at <= chrono::Duration::days(RATING_AFTER_CLOSE_DAYS);
        c.status == Status::Closed && matches!(c.awaiting, Some(Awaiting::Rating { .. })) && recent
    }

    /// Copies by email of the notices an agent's action or a timer sends, for a customer who left
    /// an address while writing on another channel (`closing.email_copies`).
    async fn mail_copies(&self, conversation: &Conversation, input: &Input<'_>, replies: &[Message], now: Timestamp) -> Result<Vec<crate::ports::CustomerMailWrite>, EngineError> {
        let notice = matches!(input, Input::Resolved { .. } | Input::StatusSet(_) | Input::HandedBackToBot | Input::DocumentDecided { .. } | Input::TimerFired { .. });
        let texts: Vec<&str> = replies.iter().filter(|m| m.sender == Sender::Bot && !m.text.trim().is_empty()).map(|m| m.text.as_str()).collect();
        if !self.policy().closing.email_copies || !notice || conversation.channel == Channel::Email || texts.is_empty() {
            return Ok(Vec::new());
        }
        let Some(address) = self.store.contact(conversation.contact_id).await?.and_then(|c| c.email) else {
            return Ok(Vec::new());
        };
        Ok(texts.into_iter().map(|text| crate::ports::CustomerMailWrite { conversation: conversation.id, address: address.clone(), text: text.to_string(), at: now }).collect())
    }

    /// Waits for the conversation's contact's turn, then reads the conversation as it is now.
    async fn turn_of(
        &self,
        conversation_id: ConversationId,
    ) -> Result<(tokio::sync::MutexGuard<'_, ()>, Conversation), EngineError> {
        let not_found = || EngineError::NotFound("conversation");
        let first_look = self.store.conversation(conversation_id).await?.ok_or_else(not_found)?;
        let contact = self.store.contact(first_look.contact_id).await?.ok_or(EngineError::NotFound("contact"))?;
        let turn = self.locks.for_key((contact.channel, contact.external_id.as_str())).lock().await;
        let current = self.store.conversation(conversation_id).await?.ok_or_else(not_found)?;
        Ok((turn, current))
    }

    /// Writes a conversation's new state with the messages it sends, then wakes the outbox and
    /// publishes. Returns the state and the messages as stored (with their `seq`), or `None`
    /// when the conversation changed since it was read (nothing was written: decide again).
    async fn commit_change(
        &self,
        before: &Conversation,
        conversation: Conversation,
        outbound: Vec<Message>,
        audit: Option<AuditEntry>,
        timers: Option<Vec<(TimerKind, Timestamp)>>,
        notices: Vec<crate::ports::NoticeWrite>,
    ) -> Result<Option<(Conversation, Vec<Message>)>, EngineError> {
        let timers = timers.map(|timers| (conversation.id, timers));
        let decided_on = self.claim(&conversation);
        let now = self.clock.now();
        let write = StepWrite { conversation: Some(conversation), outbound, audit, timers, decided_on, notices, ..StepWrite::default() };
        self.commit_write(write.with_history(Some(before), now)).await
    }

    /// Commits a step that changes a conversation outside a customer message, then wakes the
    /// outbox and publishes; `None` when the conversation changed since it was read.
    async fn commit_write(&self, write: StepWrite) -> Result<Option<(Conversation, Vec<Message>)>, EngineError> {
        let seqs = match self.commit(write.clone()).await? {
            Committed::Stored { seqs } => seqs,
            Committed::Conflict => return Ok(None),
            Committed::Duplicate => {
                return Err(StoreError::Corrupt("a step without a customer message was taken for a duplicate".into()).into());
            }
        };
        let conversation = written(write.conversation.expect("written above"));
        let mut stored = write.outbound;
        for (message, seq) in stored.iter_mut().zip(seqs) {
            message.seq = seq;
        }
        if !stored.is_empty() {
            self.outbox_wake.replies_queued();
        }
        self.publish(&conversation, stored.iter());
        Ok(Some((conversation, stored)))
    }

    /// With other nodes sharing the store, a step's write is refused when the conversation it
    /// was decided on (`read`) changed meanwhile. One node needs no check: it takes each
    /// contact's steps in turn (`locks`).
    fn claim(&self, read: &Conversation) -> Option<(ConversationId, i64)> {
        self.has_other_nodes().then_some((read.id, read.version))
    }

    /// Agents' texts have the same limit as customers'.
    fn check_length(&self, what: &str, text: &str) -> Result<(), EngineError> {
        let chars = text.chars().count();
        if chars > self.limits.max_text_chars {
            return Err(EngineError::Invalid(format!("the {what} has {chars} characters; the limit is {}", self.limits.max_text_chars)));
        }
        Ok(())
    }

    fn check(&self, inbound: &Inbound) -> Result<(), EngineError> {
        if inbound.text.trim().is_empty() && inbound.attachments.is_empty() {
            return Err(EngineError::Invalid("the message is empty".into()));
        }
        self.check_length("message", &inbound.text)?;
        if inbound.external_id.is_empty() || inbound.sender_external_id.is_empty() {
            return Err(EngineError::Invalid("the message has no id or no sender".into()));
        }
        Ok(())
    }

    /// Words the decided replies and fills the escalation summary from the stored customer texts.
    async fn replies_for(
        &self,
        decision: Decision,
        now: Timestamp,
        receipt: Option<&Receipt<'_>>,
    ) -> Result<(Conversation, Vec<Message>), EngineError> {
        let Decision { mut conversation, replies, escalated, .. } = decision;
        if escalated.is_some() {
            let mut texts = self.store.recent_customer_texts(conversation.id, RECENT_TEXTS).await?;
            if let Some(receipt) = receipt {
                if texts.len() >= RECENT_TEXTS as usize {
                    texts.remove(0);
                }
                texts.push(receipt.text.to_string());
            }
            if let Some(escalation) = conversation.escalation.as_mut() {
                escalation.summary = extractive_summary(&texts);
            }
        }
        let mut messages = Vec::with_capacity(replies.len());
        let mut customer_name: Option<Option<String>> = receipt.map(|r| r.customer_name.map(str::to_string));
        let policy = self.policy();
        // The handoff and waiting notices in the conversation's language, where configured.
        let policy = policy.in_language(conversation.language.as_deref());
        for reply in replies {
            let text = match reply.body {
                ReplyBody::Text(text) if reply.sender == Sender::Bot => {
                    let text = policy.fill_hours(text, now, conversation.channel);
                    if text.contains(crate::policy::CUSTOMER_NAME_FIELD) && customer_name.is_none() {
                        customer_name = Some(self.store.contact(conversation.contact_id).await?.and_then(|c| c.display_name));
                    }
                    crate::policy::fill_customer(text, customer_name.clone().flatten().as_deref(), conversation.channel)
                }
                ReplyBody::Text(text) => text,
                ReplyBody::HandoffNotice => {
                    // The place in line the queue is worked in (urgent first), as the waiting notice says it.
                    let queue = QueueView { waiting: self.store.queued_ahead_of(&conversation).await?, ..self.store.queue_view().await? };
                    policy.handoff_text(queue, now, conversation.channel)
                }
                ReplyBody::WaitingNotice => {
                    let position = self.store.queued_ahead_of(&conversation).await? + 1;
                    // Waits that began outside business hours say nothing of how long one takes now.
                    let hours = policy.hours_for(conversation.channel);
                    let recent = self.store.recent_first_replies(RECENT_FIRST_REPLIES).await?;
                    let waits = recent.into_iter().filter(|(at, _)| hours.is_none_or(|h| h.is_open(*at))).map(|(_, wait)| wait).collect();
                    policy.waiting_text(position, median(waits), now, conversation.channel)
                }
            };
            let mut message = new_message(&conversation, reply.sender, text, now);
            message.quick_replies = reply.quick_replies;
            messages.push(message);
        }
        Ok((conversation, messages))
    }

    fn publish<'a>(&self, conversation: &Conversation, messages: impl Iterator<Item = &'a Message>) {
        if !self.bus.has_subscribers() {
            return;
        }
        for message in messages {
            self.bus.publish(DomainEvent::MessageStored(message.clone()));
        }
        self.bus.publish(DomainEvent::ConversationChanged(conversation.clone()));
    }
}

/// How many recent first replies the expected wait is the median of.
const RECENT_FIRST_REPLIES: u32 = 20;
/// The newest messages the bot was unsure of that a report groups for teaching.
const UNSURE_MESSAGES_READ: u32 = 500;

fn median(mut waits: Vec<chrono::Duration>) -> Option<chrono::Duration> {
    waits.sort();
    waits.get(waits.len() / 2).copied()
}

/// Who did an action outside a customer message, for the audit log.
struct Audit {
    actor: Option<AgentId>,
    action: AuditAction,
    subject_agent: Option<AgentId>,
    /// Said after the state change, e.g. that it went past the agent's capacity.
    note: Option<String>,
}

impl Audit {
    fn entry(&self, at: Timestamp, before: &Conversation, after: &Conversation) -> AuditEntry {
        AuditEntry {
            at,
            actor: self.actor,
            action: self.action,
            conversation: Some(after.id),
            subject_agent: self.subject_agent,
            before: Some(state_line(before)),
            after: Some(match &self.note {
                Some(note) => format!("{} ({note})", state_line(after)),
                None => state_line(after),
            }),
        }
    }
}

/// A conversation's ticket state in one line, for before → after in the audit log.
fn state_line(c: &Conversation) -> String {
    let handler = match c.handler {
        Handler::Bot => "bot".to_string(),
        Handler::Queue => "queue".to_string(),
        Handler::Agent(id) => format!("agent {id}"),
    };
    let priority = c.priority.map(|p| p.as_str()).unwrap_or("none");
    format!("handler {handler}, status {}, priority {priority}", c.status)
}

/// How often a step decided on a conversation that another node changed meanwhile is decided
/// again before the caller is told to try later.
const CONFLICT_RETRIES: usize = 20;

/// A received message's write joined with the bot's step for it: the message is stored
/// classified (it never waits), and the step's conversation, timers and events join the
/// receipt's (a new conversation: created, then what the step did to it).
fn with_answer(received: StepWrite, answer: StepWrite, message: &Message) -> StepWrite {
    let mut events = received.events;
    events.extend(answer.events);
    StepWrite {
        inbound: Some(message.clone()),
        answers: None,
        contact: received.contact,
        starts_current: received.starts_current,
        conversation: answer.conversation.or(received.conversation),
        timers: answer.timers.or(received.timers),
        events,
        ..answer
    }
}

/// The state as stored by a step that wrote or claimed `conversation` (each moves its version on by one).
fn written(mut conversation: Conversation) -> Conversation {
    conversation.version += 1;
    conversation
}

/// Whether `text` mentions the agent called `name`: `@` and their full name without spaces, or
/// their first name, not followed by another letter or digit.
fn mentions(text: &str, name: &str) -> bool {
    let lower = text.to_lowercase();
    let name = name.to_lowercase();
    let handles = [name.split_whitespace().collect::<String>(), name.split_whitespace().next().unwrap_or_default().to_string()];
    handles.iter().filter(|h| !h.is_empty()).any(|handle| {
        let needle = format!("@{handle}");
        lower.match_indices(&needle).any(|(at, _)| {
            let before_ok = lower[..at].chars().next_back().is_none_or(|c| !c.is_alphanumeric());
            let after_ok = lower[at + needle.len()..].chars().next().is_none_or(|c| !c.is_alphanumeric());
            before_ok && after_ok
        })
    })
}

/// A step's notices as written for `conversation` at `now`.
fn notice_writes(
    conversation: ConversationId,
    notices: &[crate::step::Notice],
    now: Timestamp,
    mailed: &[switchboard_models::NotificationKind],
) -> Vec<crate::ports::NoticeWrite> {
    notices
        .iter()
        .map(|n| crate::ports::NoticeWrite {
            to: n.to,
            kind: n.kind,
            conversation: Some(conversation),
            text: n.text.clone(),
            at: now,
            by_email: mailed.contains(&n.kind),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_write_first_only_where_the_channel_lets_a_chat_start() {
        let contact = |channel: Channel, external_id: &str| Contact {
            id: ContactId::new(),
            channel,
            external_id: external_id.into(),
            display_name: None,
            created_at: chrono::Utc::now(),
            unreachable_since: None,
            unreachable_reason: None,
            email: None,
        };
        for (channel, id) in [(Channel::WebChat, "v-1"), (Channel::Email, "ann@example.com"), (Channel::Telegram, "501"), (Channel::Discord, "dm/910")] {
            assert_eq!(cannot_write_first(&contact(channel, id)), None, "{channel} {id}");
        }
        for (channel, id) in [(Channel::Telegram, "-100123"), (Channel::Discord, "thread/42")] {
            assert!(cannot_write_first(&contact(channel, id)).is_some_and(|why| why.contains("only where the customer writes")), "{channel} {id}");
        }
        let mut blocked = contact(Channel::Telegram, "501");
        blocked.unreachable_since = Some(chrono::Utc::now());
        blocked.unreachable_reason = Some("The customer blocked the bot on Telegram.".into());
        assert!(cannot_write_first(&blocked).unwrap().contains("blocked the bot"));
    }

    #[test]
    fn a_mention_is_the_handle_as_a_word() {
        assert!(super::mentions("@ann can you look?", "Ann Lee"));
        assert!(super::mentions("cc @AnnLee.", "Ann Lee"));
        assert!(!super::mentions("@annabel please", "Ann Lee"), "another name that starts alike");
        assert!(!super::mentions("mail ann@example.com", "Ann Lee"), "an email address");
        assert!(!super::mentions("Ann will know", "Ann Lee"), "no @");
    }
}

/// Whether a step changed anything worth writing (the timestamp alone is not).
/// A decision that changes nothing and says nothing.
/// The bot answers `text` and nothing else changes.
fn bot_says(conversation: &Conversation, text: &str) -> Decision {
    let reply = crate::step::Reply { sender: Sender::Bot, body: ReplyBody::Text(text.to_string()), quick_replies: Vec::new() };
    Decision { replies: vec![reply], ..unchanged(conversation) }
}

fn unchanged(conversation: &Conversation) -> Decision {
    Decision {
        conversation: conversation.clone(),
        replies: Vec::new(),
        escalated: None,
        timers: None,
        notices: Vec::new(),
        contact_email: None,
        feedback: None,
        document_kind: None,
        answered_question: false,
        answered_from_intent: false,
    }
}

/// The files of a customer message, as documents waiting for review.
fn documents_in(message: &Message, kind: &str, now: Timestamp) -> Vec<Document> {
    message
        .attachments
        .iter()
        .filter(|file| !file.original)
        .map(|file| Document {
            id: DocumentId::new(),
            conversation_id: message.conversation_id,
            contact_id: message.contact_id,
            channel: message.channel,
            message_seq: message.seq,
            file: file.clone(),
            kind: kind.to_string(),
            state: DocumentState::Pending,
            reviewer_id: None,
            decided_at: None,
            note: None,
            created_at: now,
            purged_at: None,
        })
        .collect()
}

/// Why an agent cannot write first to this customer, if they cannot: a Telegram group or a
/// Discord server thread is answered only where the customer writes; nothing reaches an
/// unreachable customer.
fn cannot_write_first(contact: &Contact) -> Option<String> {
    if contact.unreachable_since.is_some() {
        let why = contact.unreachable_reason.as_deref().unwrap_or("the channel refused our messages");
        return Some(format!("the customer cannot be reached: {why}"));
    }
    let private = match contact.channel {
        Channel::WebChat | Channel::Email => true,
        // Private chats have positive ids; groups negative.
        Channel::Telegram => contact.external_id.parse::<i64>().is_ok_and(|id| id > 0),
        Channel::Discord => contact.external_id.starts_with("dm/"),
    };
    (!private).then(|| format!("a {} group or server thread is answered only where the customer writes", contact.channel))
}

/// The rating or comment a step read, as the store writes it.
fn feedback_write(conversation: &Conversation, feedback: Option<Feedback>, now: Timestamp) -> Option<FeedbackWrite> {
    feedback.map(|feedback| FeedbackWrite { conversation_id: conversation.id, channel: conversation.channel, feedback, at: now })
}

fn same_state(before: &Conversation, after: &Conversation) -> bool {
    let mut after = after.clone();
    after.updated_at = before.updated_at;
    *before == after
}

fn new_message(conversation: &Conversation, sender: Sender, text: String, now: Timestamp) -> Message {
    Message {
        id: MessageId::new(),
        seq: 0,
        conversation_id: conversation.id,
        contact_id: conversation.contact_id,
        channel: conversation.channel,
        sender,
        agent_id: None,
        text,
        attachments: Vec::new(),
        internal: false,
        quick_replies: Vec::new(),
        classification: None,
        external_id: None,
        created_at: now,
        delivery: None,
    }
}
