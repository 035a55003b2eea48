//! The traits the core drives. Implementations live in `store`, `nlp` and `channels`.

use crate::policy::QueueView;
use crate::timers::{Timer, TimerKind};
use async_trait::async_trait;
use std::time::Duration;
use switchboard_models::{
    Agent, AgentId, ApiToken, AuditAction, AuditEntry, CannedResponse, Category, Channel, Presence, Priority, Status, Classification, Contact, ContactId, Conversation, ConversationId,
    ContactLink, Document, DocumentId, DocumentState, EscalationRecord, IntentsOrigin, LinkCode, LinkId, LinkProof, Message, MessageId, Notification, Rating, NotificationKind, OutboundMessage, Timestamp, WebhookEvent,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the database is unavailable or failed: {0}")]
    Backend(String),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    /// A file that is not (or no longer) kept: retention removed it.
    #[error("{0} is no longer kept")]
    Missing(String),
    /// The write was decided on what another write changed meanwhile; nothing was written.
    #[error("{0}")]
    Stale(String),
}

/// An agent and their current number of unfinished conversations.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentLoad {
    pub agent: Agent,
    pub open: u32,
}

/// Which conversations a list shows.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConversationFilter {
    pub status: Option<Status>,
    pub priority: Option<Priority>,
    pub category: Option<Category>,
    pub channel: Option<Channel>,
    pub assignee: Option<Assignee>,
    /// Words in the customer's name or in any message.
    pub text: Option<String>,
    /// Only conversations with a reply that failed for good.
    pub undelivered: bool,
    /// Only the queue's and this agent's (`server.agents_see_only_own_and_queued`).
    pub visible_to: Option<AgentId>,
    pub order: ListOrder,
    /// Continue after this row (keyset paging: stable while new rows arrive).
    pub after: Option<ListCursor>,
    pub limit: u32,
}

/// How a list is sorted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ListOrder {
    /// Most recently updated first.
    #[default]
    Recent,
    /// Waiting longest first (since escalation, else since creation).
    LongestWaiting,
    /// The order the queue is worked in: urgent before high before medium before low before
    /// none, then waiting longest. Auto-assignment takes conversations in this order.
    NextInLine,
    /// The nearest SLA due time first (first reply, else resolution); those without last.
    DueFirst,
}

/// A conversation's place when sorted by due time: the nearest due instant in milliseconds, or
/// `NO_DUE_KEY` when no SLA clock runs. The store sorts by the same expression.
pub fn due_key(c: &Conversation) -> i64 {
    c.first_reply_due_at.or(c.resolution_due_at).map_or(NO_DUE_KEY, |due| due.timestamp_millis())
}

/// After every real due time (the year 287,000).
pub const NO_DUE_KEY: i64 = 9_000_000_000_000_000;

/// A queued conversation's place in line as one number: the priority's rank, then the wait
/// start in milliseconds (below 10^13 until the year 2286). The store sorts by the same sum.
pub fn next_in_line_key(c: &Conversation) -> i64 {
    let rank = match c.priority {
        Some(Priority::Urgent) => 0,
        Some(Priority::High) => 1,
        Some(Priority::Medium) => 2,
        Some(Priority::Low) => 3,
        None => 4,
    };
    rank * NEXT_IN_LINE_RANK_STEP + waiting_since(c).timestamp_millis()
}

/// What one priority rank adds to `next_in_line_key`.
pub const NEXT_IN_LINE_RANK_STEP: i64 = 10_000_000_000_000;

/// When a conversation started waiting for a person: its escalation, else its creation.
pub fn waiting_since(c: &Conversation) -> Timestamp {
    c.escalation.as_ref().map(|e| e.at).unwrap_or(c.created_at)
}

/// Where a page ended: the sort key and id of its last row (keyset paging, stable while
/// new rows arrive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor<Id> {
    pub key: i64,
    pub id: Id,
}

/// A place in a conversation list.
pub type ListCursor = Cursor<ConversationId>;
/// A place in the customers list: when the customer first wrote, and who.
pub type CustomerCursor = Cursor<ContactId>;

impl ListCursor {
    /// The cursor after `summary` in `order`.
    pub fn after(summary: &ConversationSummary, order: ListOrder) -> Self {
        let c = &summary.conversation;
        let key = match order {
            ListOrder::Recent => c.updated_at.timestamp_millis(),
            ListOrder::LongestWaiting => waiting_since(c).timestamp_millis(),
            ListOrder::NextInLine => next_in_line_key(c),
            ListOrder::DueFirst => due_key(c),
        };
        Self { key, id: c.id }
    }
}

impl CustomerCursor {
    /// The cursor after `customer` in the customers list (newest first).
    pub fn after_customer(customer: &CustomerSummary) -> Self {
        Self { key: customer.contact.created_at.timestamp_millis(), id: customer.contact.id }
    }
}

impl<Id: std::fmt::Display + std::str::FromStr> Cursor<Id> {
    /// `<millis>.<id>`, as it travels in URLs.
    pub fn encode(&self) -> String {
        format!("{}.{}", self.key, self.id)
    }

    pub fn decode(text: &str) -> Option<Self> {
        let (key, id) = text.split_once('.')?;
        Some(Self { key: key.parse().ok()?, id: id.parse().ok()? })
    }
}

/// Which customers a list shows, newest first.
#[derive(Debug, Clone, Default)]
pub struct CustomerFilter {
    /// Text in the customer's name or channel id, any part, any case.
    pub text: Option<String>,
    pub channel: Option<Channel>,
    pub after: Option<CustomerCursor>,
    pub limit: u32,
}

/// A customer as the customers list shows them.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerSummary {
    pub contact: Contact,
    /// How many conversations they have had.
    pub conversations: u32,
    /// Their newest conversation.
    pub latest: Option<Conversation>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignee {
    Queue,
    Agent(AgentId),
}

/// A conversation as a list shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationSummary {
    pub conversation: Conversation,
    pub customer: String,
    pub agent_name: Option<String>,
    /// Replies in it that failed for good.
    pub undelivered: u32,
    /// The customer cannot be reached on their channel (blocked the bot, mail bounces).
    pub customer_unreachable: bool,
    /// The latest message the customer can see.
    pub last_text: Option<String>,
    /// In a search: the newest message that holds the words.
    pub matched_text: Option<String>,
    pub last_activity: Timestamp,
}

/// How many message hits a search reads at most, newest first: every page an agent reads, and
/// fast whether the words are rare or in every message. More hits means "narrow the search".
pub const SEARCH_HITS: u32 = 2000;

/// How many rows a list's filters match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ListTotal {
    pub count: u64,
    /// The search's words are in more than SEARCH_HITS messages: the count covers the newest.
    pub search_capped: bool,
}

/// The panel's headline numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DashboardCounts {
    /// Unfinished and urgent.
    pub urgent: u32,
    /// Waiting in the queue.
    pub new: u32,
    pub waiting: u32,
    pub in_progress: u32,
    pub resolved_today: u32,
    /// Past an SLA due time (first reply or resolution).
    pub overdue: u32,
}

/// A signed-in panel session.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    pub agent: AgentId,
    pub csrf: String,
    pub expires_at: Timestamp,
}

/// Everything one step changes, written atomically by `Conversations::commit`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StepWrite {
    /// The customer message that caused the step; unique on (channel, external id). Stored
    /// with a classification, it is answered by this same step (it never waits for an answer,
    /// and the three fields after `answers` apply to it).
    pub inbound: Option<Message>,
    /// The stored customer message this step answers (its `seq`) and its classification. The
    /// write is refused as `Duplicate` when that message was answered already.
    pub answers: Option<(i64, Classification)>,
    /// With `answers` (or a classified `inbound`): the step did not act on the message's intent
    /// (it answered a question the bot had asked, or was a link code), so the reports do not
    /// count how sure the bot was.
    pub intent_unused: bool,
    /// With `answers` (or a classified `inbound`): the bot replied with the answer of the
    /// message's intent (the reports' automated responses).
    pub answered_from_intent: bool,
    /// With `answers` (or a classified `inbound`): the bot was unsure of the message, so its
    /// embedding (when the classification has one) is kept for the reports to group it with
    /// similar ones.
    pub keep_embedding: bool,
    /// Inserted, or its display name updated, when present.
    pub contact: Option<Contact>,
    /// Inserted or updated when present (absent when the step left it unchanged); stored with
    /// the version after the one it was read at.
    pub conversation: Option<Conversation>,
    /// The conversation (id, version) the step was decided on: the step is refused as
    /// `Conflict` when the row has moved on since (another node changed it), whether or not it
    /// writes a new state (the bot must not answer a conversation an agent took meanwhile).
    pub decided_on: Option<(ConversationId, i64)>,
    /// On one node, for a customer message's answer only: the conversation (id, version) the
    /// step was decided on, read before the contact's turn was taken again. The answer is
    /// refused as `Conflict` when the row has moved on since; unlike `decided_on` the version
    /// stays (every other writer on the node reads the row afresh under the contact's turn).
    pub unchanged_since: Option<(ConversationId, i64)>,
    /// Replies to deliver on the conversation's channel: stored and queued for the outbox together.
    pub outbound: Vec<Message>,
    /// The replies are stored leased until then: this node's outbox was handed them in memory
    /// (no claim statement), and no other pass takes them unless that lease runs out (the
    /// node died first). `None`: claimable at once.
    pub outbound_leased_until: Option<Timestamp>,
    /// Agents' notes: stored, never delivered.
    pub notes: Vec<Message>,
    /// The action this step records in the audit log.
    pub audit: Option<AuditEntry>,
    /// The conversation's timers from now on, replacing all it had.
    pub timers: Option<(ConversationId, Vec<(TimerKind, Timestamp)>)>,
    /// The timer this step fires: deleted with the step, which is refused as `Duplicate` when
    /// it is gone (fired already, or set anew since it was claimed).
    pub fires: Option<Timer>,
    /// With `answers`: refused as `Conflict` while one of the contact's earlier customer
    /// messages waits for its answer (another node holds it), so answers keep their order.
    pub in_order: bool,
    /// `conversation` is new and becomes its contact's current one: refused as `Conflict` when
    /// the contact has an open conversation already (another node started one meanwhile).
    pub starts_current: bool,
    /// Notifications for agents (to every active admin for `Recipient::Admins`).
    pub notices: Vec<NoticeWrite>,
    /// An email address the customer left, kept on their contact.
    pub contact_email: Option<(ContactId, String)>,
    /// A rating (one per resolution: a second is ignored) or the comment to it.
    pub feedback: Option<FeedbackWrite>,
    /// The escalation this step decided, kept in the conversation's history.
    pub escalation: Option<EscalationRecord>,
    /// Files of the answered customer message that wait for review.
    pub documents: Vec<Document>,
    /// A reviewer's decision on a document: the step is refused as `Conflict` when the document
    /// is no longer pending (someone decided first).
    pub decides: Option<DocumentDecision>,
    /// Copies by email of the notices this step sends, for a customer on another channel.
    pub customer_mails: Vec<CustomerMailWrite>,
    /// What the step made happen to its conversation, for the reports (`with_history`).
    pub events: Vec<switchboard_models::ConversationEvent>,
    /// With `escalation`: the hosted LLM is to summarise the conversation; kept with the step
    /// (`summaries_wanted`) so a crash before it is written loses nothing.
    pub wants_summary: bool,
}

/// A reviewer's decision on a pending document.
#[derive(Debug, Clone, PartialEq)]
pub struct DocumentDecision {
    pub document: DocumentId,
    pub state: DocumentState,
    pub kind: String,
    pub reviewer: AgentId,
    pub note: Option<String>,
    pub at: Timestamp,
}

/// Which documents a list shows: pending first, then newest decided.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DocumentFilter {
    pub state: Option<DocumentState>,
    pub kind: Option<String>,
    pub conversation: Option<ConversationId>,
    /// At most this many (1 to 200).
    pub limit: u32,
}

/// A document with who sent it, for lists.
#[derive(Debug, Clone, PartialEq)]
pub struct DocumentSummary {
    pub document: Document,
    pub customer: String,
    pub reviewer_name: Option<String>,
}

/// The dashboard's document figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DocumentCounts {
    pub pending: u64,
    pub approved_today: u64,
    pub rejected_today: u64,
}

/// The customer's rating or comment, written with the step that read it.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedbackWrite {
    pub conversation_id: ConversationId,
    pub channel: Channel,
    pub feedback: crate::step::Feedback,
    pub at: Timestamp,
}

/// A notification written with a step.
#[derive(Debug, Clone, PartialEq)]
pub struct NoticeWrite {
    pub to: crate::step::Recipient,
    pub kind: NotificationKind,
    pub conversation: Option<ConversationId>,
    pub text: String,
    pub at: Timestamp,
    /// Also mailed to each recipient (`email.notify_agents`): the row waits as the mail's outbox.
    pub by_email: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Committed {
    /// Store-assigned `seq`s: the inbound message's first (when there is one), then the replies'.
    Stored { seqs: Vec<i64> },
    /// The inbound message was already stored, or the message it answers already answered;
    /// nothing was written.
    Duplicate,
    /// What the step was decided on changed meanwhile (the conversation's version moved on, the
    /// contact was stored or given an open conversation by another node), or an answer `in_order`
    /// came before an earlier one; nothing was written. Read again and decide again.
    Conflict,
}

/// An account or admin change outside any conversation, with the audit entries that record
/// it: written atomically by `Accounts::commit_admin`, all of it or nothing.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AdminWrite {
    /// Added or updated (email, name, role, presence, capacity, active).
    pub agent: Option<Agent>,
    /// A new password hash for the agent (never the password).
    pub password_hash: Option<(AgentId, String)>,
    /// Ends every session and API token of this agent (deactivation).
    pub revoke_credentials: Option<AgentId>,
    /// Sets an agent's presence at a time, logged for working-hours reports when it changes.
    pub presence: Option<(AgentId, Presence, Timestamp)>,
    pub canned: Option<CannedChange>,
    /// A new version of the bot's intents (with the messages it was taught from).
    pub intents: Option<NewIntentsVersion>,
    /// A panel session begun (stored by its token's hash).
    pub session: Option<(String, SessionRecord)>,
    /// The panel session with this token hash ended.
    pub end_session: Option<String>,
    pub api_token: Option<ApiTokenChange>,
    /// Ends every panel session of this agent (a password set anew), API tokens kept.
    pub end_sessions_of: Option<AgentId>,
    pub password_reset: Option<PasswordResetChange>,
    /// Settings set (`Some` JSON value) or reset to the config file's (`None`), by key.
    pub settings: Vec<(String, Option<String>)>,
    /// Who changed the settings, and when.
    pub settings_by: Option<(AgentId, Timestamp)>,
    pub webhook: Option<WebhookChange>,
    /// Two-factor sign-in turned on with this secret (base32), or off (`None`).
    pub two_factor: Option<(AgentId, Option<String>)>,
    /// A sign-in waiting for its code: (token hash, agent, open until).
    pub sign_in_challenge: Option<(String, AgentId, Timestamp)>,
    /// The sign-in challenge with this token hash ended (signed in, or too many wrong codes).
    pub end_sign_in_challenge: Option<String>,
    pub audit: Vec<AuditEntry>,
}

/// A one-time link to set a password (stored by its token's hash).
#[derive(Debug, Clone, PartialEq)]
pub struct PasswordReset {
    pub token_hash: String,
    pub agent: AgentId,
    pub created_by: Option<AgentId>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub used_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PasswordResetChange {
    Create(PasswordReset),
    /// Used at this time: refused whole (`StoreError::Stale`) unless unused and unexpired then.
    Use { token_hash: String, at: Timestamp },
}

#[derive(Debug, Clone, PartialEq)]
pub enum ApiTokenChange {
    /// Stored by its secret's hash.
    Create { token_hash: String, token: ApiToken },
    /// The agent's token, revoked.
    Revoke { agent: AgentId, id: uuid::Uuid },
}

/// Which audit entries a page shows: by whom, what, and when (`[from, to)`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct AuditFilter {
    pub actor: Option<AgentId>,
    pub action: Option<AuditAction>,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
}

/// A version of the bot's intents to record: see `IntentVersions`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewIntentsVersion {
    /// The version this one follows (0: the first). When another version followed it first,
    /// the whole write is refused with `StoreError::Stale`.
    pub after: i64,
    /// The intents file's text (TOML), checked already.
    pub text: String,
    pub digest: String,
    /// The intents file's digest as last read (see `IntentsVersion::file_digest`).
    pub file_digest: String,
    pub origin: IntentsOrigin,
    pub note: String,
    pub author: Option<AgentId>,
    pub at: Timestamp,
    /// Customer messages taught as examples in this version.
    pub labels: Vec<IntentLabel>,
}

/// A customer message an admin assigned to an intent.
#[derive(Debug, Clone, PartialEq)]
pub struct IntentLabel {
    pub message_seq: i64,
    pub text: String,
    pub intent: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CannedChange {
    Save(CannedResponse),
    Delete(uuid::Uuid),
}

/// What the engine reads and writes to decide and store a step: messages, contacts and
/// conversations. Reads may lag a concurrent commit; one contact's steps are serialised by the
/// engine within a node, and across nodes a step decided on a stale read is refused
/// (`Committed::Conflict`), so no step overwrites another.
#[async_trait]
pub trait Conversations: Send + Sync {
    /// Leases up to `limit` conversations whose LLM summary is wanted and due at `now` until
    /// `lease_until`: `(conversation, attempts so far)`.
    async fn claim_wanted_summaries(&self, now: Timestamp, lease_until: Timestamp, limit: u32) -> Result<Vec<(ConversationId, u32)>, StoreError>;
    /// The summary was written or given up (`retry_at: None`), or is to be asked again then.
    async fn summary_done(&self, conversation: ConversationId, retry_at: Option<Timestamp>) -> Result<(), StoreError>;
    /// Writes a step atomically: all of it or nothing.
    async fn commit(&self, write: StepWrite) -> Result<Committed, StoreError>;

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
    async fn contact(&self, id: ContactId) -> Result<Option<Contact>, StoreError>;
    /// The contact with this channel identity and its current conversation, in one read.
    async fn contact_and_current_conversation(
        &self,
        channel: Channel,
        external_id: &str,
    ) -> Result<Option<(Contact, Option<Conversation>)>, StoreError>;
    /// Marks a contact the channel can no longer reach (e.g. it blocked the bot), and why; the
    /// first time and reason are kept. Cleared when the customer writes again.
    async fn mark_unreachable(&self, contact: ContactId, since: Timestamp, reason: &str) -> Result<(), StoreError>;
    async fn message_by_seq(&self, seq: i64) -> Result<Option<Message>, StoreError>;
    /// Customer messages stored but not yet answered (no classification yet), oldest first.
    async fn unanswered_messages(&self, limit: u32) -> Result<Vec<Message>, StoreError>;
    /// The contact's oldest unanswered customer message stored before `seq`.
    async fn earlier_unanswered(&self, contact: ContactId, seq: i64) -> Result<Option<Message>, StoreError>;
    /// What the customer may see of all their conversations (no internal notes) with
    /// `seq > after`, oldest first.
    async fn contact_messages(
        &self,
        contact: ContactId,
        after: i64,
        limit: u32,
    ) -> Result<Vec<Message>, StoreError>;
    /// Messages of one conversation with `seq > after`, oldest first.
    async fn conversation_messages(
        &self,
        conversation: ConversationId,
        after: i64,
        limit: u32,
    ) -> Result<Vec<Message>, StoreError>;
    /// The newest `limit` messages of a conversation with `seq < before` (from the end when
    /// `None`), oldest first: a page of its history, read backwards.
    /// Records that an agent saw the conversation up to message `up_to_seq`; false when it was
    /// seen that far already.
    async fn mark_seen_by_agent(&self, conversation: ConversationId, agent: AgentId, up_to_seq: i64, at: Timestamp) -> Result<bool, StoreError>;
    /// Up to which message an agent has seen the conversation.
    async fn seen_by_agent(&self, conversation: ConversationId) -> Result<Option<i64>, StoreError>;
    async fn latest_conversation_messages(
        &self,
        conversation: ConversationId,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Message>, StoreError>;
    /// The message of a conversation that carries the attachment stored under `key`.
    async fn message_with_attachment(&self, conversation: ConversationId, key: &str) -> Result<Option<Message>, StoreError>;
    /// The latest customer texts of a conversation, oldest first.
    async fn recent_customer_texts(
        &self,
        conversation: ConversationId,
        limit: u32,
    ) -> Result<Vec<String>, StoreError>;
    /// Every escalation of a conversation, oldest first.
    async fn escalations_of(&self, conversation: ConversationId) -> Result<Vec<EscalationRecord>, StoreError>;
}

/// Who can take a conversation, and what waits for someone.
#[async_trait]
pub trait Queue: Send + Sync {
    /// Active online agents with how many unfinished conversations each handles.
    async fn assignment_candidates(&self) -> Result<Vec<AgentLoad>, StoreError>;
    /// Conversations waiting for an agent, next in line first (`ListOrder::NextInLine`).
    async fn queued_conversations(&self, limit: u32) -> Result<Vec<Conversation>, StoreError>;
    /// The agent's unfinished conversations.
    async fn agent_conversations(&self, agent: AgentId) -> Result<Vec<Conversation>, StoreError>;
    /// How many unfinished conversations `agent` has, not counting `except`: their load,
    /// counted up to `assignment::LOAD_COUNTED_UP_TO`.
    async fn agent_load(&self, agent: AgentId, except: Option<ConversationId>) -> Result<u32, StoreError>;
    /// Conversations waiting in the queue now, and agents online.
    async fn queue_view(&self) -> Result<QueueView, StoreError>;
    /// How many queued conversations come before `conversation` in line (`ListOrder::NextInLine`).
    async fn queued_ahead_of(&self, conversation: &Conversation) -> Result<u32, StoreError>;
    /// The latest escalated conversations that got an agent's reply: when each was escalated
    /// and how long it waited for that reply, newest escalation first, at most `limit`.
    async fn recent_first_replies(&self, limit: u32) -> Result<Vec<(Timestamp, chrono::Duration)>, StoreError>;
}

/// Timers written by steps (`StepWrite::timers`), fired by the timer worker.
#[async_trait]
pub trait Timers: Send + Sync {
    /// Leases up to `limit` timers due at `now` until `lease_until`, earliest first; a timer
    /// leased by someone else is skipped until its lease ends.
    async fn claim_due_timers(&self, now: Timestamp, lease_until: Timestamp, limit: u32) -> Result<Vec<Timer>, StoreError>;
    /// A conversation's timers, earliest first.
    async fn timers_of(&self, conversation: ConversationId) -> Result<Vec<Timer>, StoreError>;
}

/// Replies waiting for their channel, claimed by the outbox worker.
#[async_trait]
pub trait Outbox: Send + Sync {
    /// Leases up to `limit` undelivered outbound messages due at `now` until `lease_until`.
    async fn claim_outbox(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<OutboundMessage>, StoreError>;
    /// Records replies the channel accepted: (seq, the channel's id for it when it gave one).
    async fn mark_delivered(&self, sent: &[(i64, Option<String>)], now: Timestamp) -> Result<(), StoreError>;
    /// Records a failed attempt; `retry_at: None` gives up for good.
    async fn mark_failed(
        &self,
        seq: i64,
        error: &str,
        retry_at: Option<Timestamp>,
    ) -> Result<(), StoreError>;
    /// Queues a reply of `conversation` again now, with a fresh retry window, unless it was sent.
    /// Returns the message as it is now, or None when there was nothing to retry.
    async fn retry_delivery(&self, conversation: ConversationId, seq: i64, now: Timestamp) -> Result<Option<Message>, StoreError>;
    /// Marks a reply failed for good after the fact (an email bounce); None if it is not ours.
    async fn fail_delivery(&self, message: MessageId, reason: &str, now: Timestamp) -> Result<Option<Message>, StoreError>;
    /// Marks the contact's replies up to `up_to_seq` seen (all but failed ones: a widget may show
    /// a reply before the outbox records it sent); returns those that changed.
    async fn mark_seen(&self, contact: ContactId, up_to_seq: i64, now: Timestamp) -> Result<Vec<Message>, StoreError>;
    /// Replies not yet delivered (nor given up): how many, and when the oldest was queued.
    async fn outbox_backlog(&self) -> Result<(u64, Option<Timestamp>), StoreError>;
    /// Each contact on `channel` with the external id of its latest customer message:
    /// `(contact external id, message external id)`. Channels without a replayable cursor
    /// (Discord) catch up from these after a stop.
    async fn latest_inbound_by_contact(&self, channel: Channel) -> Result<Vec<(String, String)>, StoreError>;

    /// Queues a notice to a customer outside any conversation (a file refused, a message the
    /// bot cannot open); a notice with a key already queued is that notice, and changes nothing.
    async fn queue_direct_notice(&self, notice: &DirectNotice) -> Result<(), StoreError>;
    /// Leases up to `limit` direct notices due at `now` until `lease_until`, oldest first.
    async fn claim_direct_notices(&self, now: Timestamp, lease_until: Timestamp, limit: u32) -> Result<Vec<QueuedNotice>, StoreError>;
    /// Records an attempt at notice `id`: sent (no error), to try again at `retry_at`, or given
    /// up (an error and no retry).
    async fn direct_notice_attempted(&self, id: i64, now: Timestamp, error: Option<&str>, retry_at: Option<Timestamp>) -> Result<(), StoreError>;
}

/// A notice to a customer that is not part of a conversation's record.
#[derive(Debug, Clone, PartialEq)]
pub struct DirectNotice {
    pub channel: Channel,
    /// The customer's address on the channel (a contact's external id).
    pub recipient: String,
    /// Names the notice: the event it answers and what about it, so a retried event queues it once.
    pub key: String,
    pub text: String,
    pub created_at: Timestamp,
}

/// A direct notice claimed for sending.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedNotice {
    pub id: i64,
    pub notice: DirectNotice,
    /// Attempts before this one.
    pub attempts: u32,
}

/// Agents, their credentials, canned responses and the audit log. Every change goes through
/// `commit_admin`, so a change and the audit entry that records it land together.
#[async_trait]
pub trait Accounts: Send + Sync {
    /// Writes an admin change atomically: all of it or nothing.
    async fn commit_admin(&self, write: AdminWrite) -> Result<(), StoreError>;

    /// Adds or updates an agent account (no audit entry: seeding and tests).
    async fn save_agent(&self, agent: &Agent) -> Result<(), StoreError> {
        self.commit_admin(AdminWrite { agent: Some(agent.clone()), ..AdminWrite::default() }).await
    }
    /// Sets an agent's presence and logs the change (for working-hours reports).
    async fn set_presence(&self, agent: AgentId, presence: Presence, at: Timestamp) -> Result<(), StoreError> {
        self.commit_admin(AdminWrite { presence: Some((agent, presence, at)), ..AdminWrite::default() }).await
    }
    /// Records an action that changes nothing else (a refused sign-in).
    async fn record_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        self.commit_admin(AdminWrite { audit: vec![entry.clone()], ..AdminWrite::default() }).await
    }

    async fn agent(&self, id: AgentId) -> Result<Option<Agent>, StoreError>;
    async fn agent_by_email(&self, email: &str) -> Result<Option<Agent>, StoreError>;
    async fn list_agents(&self) -> Result<Vec<Agent>, StoreError>;
    async fn password_hash(&self, agent: AgentId) -> Result<Option<String>, StoreError>;
    /// The agent's two-factor secret (base32) while two-factor sign-in is on.
    async fn two_factor_secret(&self, agent: AgentId) -> Result<Option<String>, StoreError>;
    /// The agents with two-factor sign-in on.
    async fn two_factor_agents(&self) -> Result<Vec<AgentId>, StoreError>;
    /// Takes a code's time step for the agent; false when that step or a later one was taken
    /// already (a code signs in once, on any node).
    async fn take_two_factor_step(&self, agent: AgentId, step: i64) -> Result<bool, StoreError>;
    /// The agent of a sign-in challenge still open at `now`.
    async fn sign_in_challenge(&self, token_hash: &str, now: Timestamp) -> Result<Option<AgentId>, StoreError>;
    /// Counts a wrong code against a challenge; returns its wrong codes so far.
    async fn sign_in_challenge_failed(&self, token_hash: &str) -> Result<u32, StoreError>;
    async fn password_reset(&self, token_hash: &str) -> Result<Option<PasswordReset>, StoreError>;
    /// When each agent last signed in (from the audit log).
    async fn last_sign_ins(&self) -> Result<Vec<(AgentId, Timestamp)>, StoreError>;
    /// Presence changes since `since`, oldest first: (agent, presence, when).
    async fn presence_changes(&self, since: Timestamp) -> Result<Vec<(AgentId, Presence, Timestamp)>, StoreError>;

    async fn create_session(&self, token_hash: &str, session: &SessionRecord) -> Result<(), StoreError>;
    /// The unexpired session with this token hash.
    async fn session(&self, token_hash: &str, now: Timestamp) -> Result<Option<SessionRecord>, StoreError>;
    async fn delete_session(&self, token_hash: &str) -> Result<(), StoreError>;
    async fn create_api_token(&self, token_hash: &str, token: &ApiToken) -> Result<(), StoreError>;
    async fn api_token_agent(&self, token_hash: &str) -> Result<Option<AgentId>, StoreError>;
    async fn api_tokens(&self, agent: AgentId) -> Result<Vec<ApiToken>, StoreError>;
    /// Revokes the agent's token; false when the agent has no such token.
    async fn delete_api_token(&self, agent: AgentId, id: uuid::Uuid) -> Result<bool, StoreError>;

    /// Every canned response, shared and personal; callers show each agent what is theirs to see.
    async fn canned_responses(&self) -> Result<Vec<CannedResponse>, StoreError>;

    /// The latest audit entries, newest first.
    async fn audit_entries(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        Ok(self.audit_page(None, limit).await?.into_iter().map(|(_, entry)| entry).collect())
    }
    /// Up to `limit` audit entries older than the entry numbered `before` (from the newest when
    /// `None`), newest first, each with its number: the cursor of the page after it.
    async fn audit_page(&self, before: Option<i64>, limit: u32) -> Result<Vec<(i64, AuditEntry)>, StoreError> {
        self.audit_search(&AuditFilter::default(), before, limit).await
    }
    /// As `audit_page`, of the entries `filter` selects.
    async fn audit_search(&self, filter: &AuditFilter, before: Option<i64>, limit: u32) -> Result<Vec<(i64, AuditEntry)>, StoreError>;
}

/// The panel's lists and counts.
#[async_trait]
pub trait Listings: Send + Sync {
    async fn list_conversations(&self, filter: &ConversationFilter) -> Result<Vec<ConversationSummary>, StoreError>;
    /// A list's page and how many conversations its filters match in all (its cursor and limit
    /// aside), in one read: a search is run once for both.
    async fn list_page(&self, filter: &ConversationFilter) -> Result<(Vec<ConversationSummary>, ListTotal), StoreError>;
    /// Counts as of `now`, with those resolved since `day_start`.
    async fn dashboard_counts(&self, day_start: Timestamp, now: Timestamp) -> Result<DashboardCounts, StoreError>;
    async fn contact_conversations(&self, contact: ContactId) -> Result<Vec<ConversationSummary>, StoreError>;
    /// Customers newest first, a page at a time.
    async fn list_customers(&self, filter: &CustomerFilter) -> Result<Vec<CustomerSummary>, StoreError>;
    /// How many customers `filter` matches (its cursor and limit aside).
    async fn count_customers(&self, filter: &CustomerFilter) -> Result<u64, StoreError>;
}

/// What agents are told in the panel (written with the steps that cause it, `StepWrite::notices`).
#[async_trait]
pub trait Notifications: Send + Sync {
    /// An agent's notifications, newest first, older than `before` (an id) when given.
    async fn notifications_of(&self, agent: AgentId, before: Option<i64>, limit: u32) -> Result<Vec<Notification>, StoreError>;
    async fn unread_notifications(&self, agent: AgentId) -> Result<u32, StoreError>;
    /// Marks the agent's notifications read: those of `conversation` when given, else all.
    /// Returns how many were unread.
    async fn mark_notifications_read(&self, agent: AgentId, conversation: Option<ConversationId>, now: Timestamp) -> Result<u64, StoreError>;
    /// How many unread notifications the agent has about each of `conversations` (those with any).
    async fn unread_by_conversation(&self, agent: AgentId, conversations: &[ConversationId]) -> Result<Vec<(ConversationId, u32)>, StoreError>;
    /// The oldest notifications still to be mailed, with their agent, up to `limit`.
    async fn notices_to_mail(&self, limit: u32) -> Result<Vec<NoticeMail>, StoreError>;
    /// Ends a notification's mail: sent at `at`, or given up for `error`.
    async fn notice_mailed(&self, id: i64, at: Timestamp, error: Option<&str>) -> Result<(), StoreError>;
    /// The oldest copies of notices still to be mailed to customers, up to `limit`.
    async fn customer_mails_to_send(&self, limit: u32) -> Result<Vec<CustomerMail>, StoreError>;
    /// Ends a customer mail: sent at `at`, or given up for `error`.
    async fn customer_mail_sent(&self, id: i64, at: Timestamp, error: Option<&str>) -> Result<(), StoreError>;
}

/// A copy of a notice to mail to a customer (`StepWrite::customer_mails`).
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerMailWrite {
    pub conversation: ConversationId,
    pub address: String,
    pub text: String,
    pub at: Timestamp,
}

/// A copy of a notice waiting to be mailed to a customer.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerMail {
    pub id: i64,
    pub conversation_id: ConversationId,
    /// Where the customer writes to us: the mail says to answer there.
    pub channel: Channel,
    pub address: String,
    pub text: String,
    pub created_at: Timestamp,
}

/// A notification waiting to be mailed, and whom to.
#[derive(Debug, Clone, PartialEq)]
pub struct NoticeMail {
    pub notification: Notification,
    pub agent_name: String,
    pub agent_email: String,
    /// A deactivated agent is mailed nothing more.
    pub agent_active: bool,
}

/// The bot's intents as versions, each kept whole so any can be restored, and the customer
/// messages admins labelled from traffic, on which every version is measured. A version is
/// written by `Accounts::commit_admin` (`AdminWrite::intents`) with its audit entry.
#[async_trait]
pub trait IntentVersions: Send + Sync {
    /// The newest version and its text.
    async fn latest_intents(&self) -> Result<Option<(IntentsVersion, String)>, StoreError>;
    async fn intents_text(&self, number: i64) -> Result<Option<(IntentsVersion, String)>, StoreError>;
    /// The versions, newest first, at most `limit`.
    async fn intents_versions(&self, limit: u32) -> Result<Vec<IntentsVersion>, StoreError>;
    /// Records how the labelled messages were classified before the version and with it; the
    /// first measurement of a version stays (every node measures the version it trains).
    async fn record_intents_accuracy(&self, number: i64, accuracy: &IntentsAccuracy) -> Result<(), StoreError>;
    /// Every labelled message as (text, intent), oldest first.
    async fn labelled_messages(&self) -> Result<Vec<(String, String)>, StoreError>;
    /// The text of those of `seqs` that are customer messages, in the order given.
    async fn customer_texts(&self, seqs: &[i64]) -> Result<Vec<(i64, String)>, StoreError>;
}

/// A recorded version of the bot's intents (its text is read on its own).
#[derive(Debug, Clone, PartialEq)]
pub struct IntentsVersion {
    pub number: i64,
    /// SHA-256 of the text.
    pub digest: String,
    /// The intents file's SHA-256 as last read when this version was recorded: a file that no
    /// longer matches the newest version's changed on disk, and becomes the next version.
    pub file_digest: String,
    pub origin: IntentsOrigin,
    pub note: String,
    pub author: Option<AgentId>,
    pub created_at: Timestamp,
    pub accuracy: Option<IntentsAccuracy>,
}

/// The share of labelled messages classified as labelled, with the intents before a version
/// and with it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IntentsAccuracy {
    pub labelled: u32,
    pub before: f64,
    pub after: f64,
    pub measured_at: Timestamp,
}

/// Documents customers sent for review.
#[async_trait]
pub trait Documents: Send + Sync {
    async fn document(&self, id: DocumentId) -> Result<Option<Document>, StoreError>;
    /// Pending first (oldest first: the longest waiting), then the decided, newest first.
    async fn documents(&self, filter: &DocumentFilter) -> Result<Vec<DocumentSummary>, StoreError>;
    /// Pending now, and approved and rejected since `day_start`.
    async fn document_counts(&self, day_start: Timestamp) -> Result<DocumentCounts, StoreError>;
    /// Decided documents received before `before` whose file is still kept, oldest first.
    async fn documents_to_purge(&self, before: Timestamp, limit: u32) -> Result<Vec<Document>, StoreError>;
    /// Records that retention removed the document's file; the record stays.
    async fn mark_document_purged(&self, id: DocumentId, at: Timestamp) -> Result<(), StoreError>;
}

/// What customers said of the help they got.
#[async_trait]
pub trait Ratings: Send + Sync {
    /// A conversation's ratings, oldest first.
    async fn ratings_of(&self, conversation: ConversationId) -> Result<Vec<Rating>, StoreError>;
    /// Per agent rated since `since`: how many ratings, and their average.
    async fn agent_ratings(&self, since: Timestamp) -> Result<Vec<AgentRatings>, StoreError>;
}

/// What the Reports page reads, each over a period and its filters (`ReportPeriod`), grouped
/// and counted in the database so a report over months reads a few hundred rows: the rest is
/// computed in `crate::reports`.
#[async_trait]
pub trait Reports: Send + Sync {
    /// Conversations started in the period, counted per channel and local hour: hours since
    /// 1970-01-01 on the wall clock of a zone whose offsets are `offsets` (see `ZoneOffsets`).
    async fn started_by_hour(&self, period: &ReportPeriod, offsets: &ZoneOffsets) -> Result<Vec<HourCount>, StoreError>;
    /// Conversations started in the period, counted by their status now and whether they were
    /// ever handed to people.
    async fn started_by_state(&self, period: &ReportPeriod) -> Result<Vec<StateCount>, StoreError>;
    /// The period's conversation events: escalations counted per reason, category and
    /// priority; assignments, first replies and resolutions per agent and reason (`created`,
    /// `reopened` and `closed` are not counted).
    async fn event_counts(&self, period: &ReportPeriod) -> Result<Vec<EventCount>, StoreError>;
    /// The waits of the period's `first_reply` and `resolved` events: their nearest-rank median
    /// and 90th percentile, for everyone (`agent_id: None`) and per agent.
    async fn wait_percentiles(&self, period: &ReportPeriod) -> Result<Vec<WaitPercentiles>, StoreError>;
    /// Customer messages of the period, counted per intent (`None`: not answered yet).
    async fn intent_counts(&self, period: &ReportPeriod) -> Result<Vec<IntentCount>, StoreError>;
    /// Customer messages of the period the bot was unsure of (confidence below `below`, or out
    /// of scope), newest first, at most `limit`; not those whose intent played no part
    /// (`StepWrite::intent_unused`), nor those admins taught already.
    async fn unsure_messages(&self, period: &ReportPeriod, below: f32, limit: u32) -> Result<Vec<UnsureMessage>, StoreError>;
    /// The ratings given in the period, oldest first.
    async fn ratings_given(&self, period: &ReportPeriod) -> Result<Vec<Rating>, StoreError>;
    /// Adds the customer messages of whole UTC days before `before_day` (days since
    /// 1970-01-01) not added yet to the per-day counts `intent_counts` reads, at most
    /// `max_days` days in one transaction (days without customer messages are passed over
    /// free); returns how many days with messages it counted (0: caught up).
    async fn roll_up_reports(&self, before_day: i64, max_days: i64) -> Result<i64, StoreError>;
}

/// A report's period `[from, to)` and the conversations it covers: those on a channel, in a
/// category and with an agent now (the last agent they had, once a person is done with them).
/// Events are selected by the category recorded with them, and customer messages of a counted
/// day by the category their conversation had when the day was counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportPeriod {
    pub from: Timestamp,
    pub to: Timestamp,
    pub channel: Option<Channel>,
    pub category: Option<Category>,
    pub agent: Option<AgentId>,
}

/// A time zone's offsets from UTC over a period, in milliseconds: the first applies until the
/// instant of the second, and so on (a zone changes its offset a few times a year at most).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneOffsets(pub Vec<(Timestamp, i64)>);

/// Conversations started in one local hour on one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HourCount {
    pub local_hour: i64,
    pub channel: Channel,
    pub count: i64,
}

/// Conversations started with one status now, handed to people or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateCount {
    pub status: Status,
    pub escalated: bool,
    pub count: i64,
}

/// Conversation events of one kind with the same agent, reason, category and priority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventCount {
    pub kind: switchboard_models::EventKind,
    pub agent_id: Option<AgentId>,
    pub reason: Option<String>,
    pub category: Option<Category>,
    pub priority: Option<Priority>,
    pub count: i64,
}

/// The waits of one kind of event (`first_reply`, `resolved`), everyone's or one agent's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitPercentiles {
    pub kind: switchboard_models::EventKind,
    pub agent_id: Option<AgentId>,
    pub count: i64,
    pub median_ms: i64,
    pub p90_ms: i64,
}

/// A customer message the bot was unsure of: what it made of it and how sure it was.
#[derive(Debug, Clone, PartialEq)]
pub struct UnsureMessage {
    pub seq: i64,
    pub conversation_id: ConversationId,
    pub text: String,
    pub intent: Option<String>,
    pub confidence: Option<f64>,
    pub at: Timestamp,
    /// Its sentence embedding, when the model classifier encoded it.
    pub embedding: Option<switchboard_models::Embedding>,
}

/// How many customer messages had one intent.
#[derive(Debug, Clone, PartialEq)]
pub struct IntentCount {
    pub intent: Option<String>,
    pub count: i64,
    /// Of them, those the bot replied to with the intent's answer.
    pub answered: i64,
}

/// An agent's ratings over a period.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRatings {
    pub agent_id: AgentId,
    pub count: u32,
    pub average: f64,
}

/// One person behind several channel identities: the contacts grouped by joins, the joins
/// with their proof, and the one-time codes that prove them.
#[async_trait]
pub trait Identities: Send + Sync {
    /// Every contact of the person `contact` belongs to, itself included, oldest first.
    async fn identities(&self, contact: ContactId) -> Result<Vec<Contact>, StoreError>;
    /// The conversations of every contact of that person, newest activity first.
    async fn person_conversations(&self, contact: ContactId) -> Result<Vec<ConversationSummary>, StoreError>;
    /// The joins that involved any contact of that person (undone ones too), newest first.
    async fn contact_links(&self, contact: ContactId) -> Result<Vec<ContactLink>, StoreError>;
    async fn contact_link(&self, id: LinkId) -> Result<Option<ContactLink>, StoreError>;
    /// Stores a new code (and forgets codes expired a day ago).
    async fn save_link_code(&self, code: &LinkCode) -> Result<(), StoreError>;
    async fn link_code(&self, code_hash: &str) -> Result<Option<LinkCode>, StoreError>;
    /// In one transaction: uses the code (when given; only while unused and unexpired), moves
    /// the person `join.joined` belongs to into the person `join.person` belongs to, records the
    /// join (`moved` filled in here) and its audit entry. `None`, and nothing written, when the
    /// code was used or expired meanwhile or the two are one person already.
    async fn join_contacts(&self, join: &JoinContacts) -> Result<Option<ContactLink>, StoreError>;
    /// Separates what the join moved, back into the group it had, with an audit entry; `None`
    /// when it is unknown or undone already.
    async fn undo_contact_link(&self, id: LinkId, by: Option<AgentId>, at: Timestamp, audit: Option<AuditEntry>) -> Result<Option<ContactLink>, StoreError>;
}

/// A join to write: see `Identities::join_contacts`.
#[derive(Debug, Clone)]
pub struct JoinContacts {
    pub person: ContactId,
    pub joined: ContactId,
    pub proof: LinkProof,
    pub agent: Option<AgentId>,
    pub at: Timestamp,
    /// The code's hash, used by this join.
    pub code_hash: Option<String>,
    pub audit: Option<AuditEntry>,
}

/// Recurring jobs (`[jobs]`, cron schedules) and the housekeeping they do.
#[async_trait]
pub trait Jobs: Send + Sync {
    /// Enters a job with its schedule and first run; a job already entered keeps its next run
    /// unless its schedule changed (then it runs next at `next_run_at`).
    async fn plan_job(&self, name: &str, schedule: &str, next_run_at: Timestamp) -> Result<(), StoreError>;
    /// Takes the job's run due at `due` for `node`, moving its next run to `next`; false when
    /// another node took it first (the next run is no longer `due`).
    async fn take_job_run(&self, name: &str, due: Timestamp, next: Timestamp, node: &str, now: Timestamp) -> Result<bool, StoreError>;
    /// Records how the run that started last ended.
    async fn job_finished(&self, name: &str, at: Timestamp, ok: bool, outcome: &str) -> Result<(), StoreError>;
    /// Every job entered, by name.
    async fn scheduled_jobs(&self) -> Result<Vec<ScheduledJob>, StoreError>;
    /// Deletes what retention lets go (or, with `dry_run`, only counts it).
    async fn purge(&self, rules: &PurgeRules, dry_run: bool) -> Result<Purged, StoreError>;
}

/// A recurring job as stored: its schedule, next run and how the last one went.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduledJob {
    pub name: String,
    pub schedule: String,
    pub next_run_at: Timestamp,
    pub last_started_at: Option<Timestamp>,
    pub last_node: Option<String>,
    pub last_finished_at: Option<Timestamp>,
    pub last_ok: Option<bool>,
    pub last_outcome: Option<String>,
}

/// What retention deletes: panel sessions expired before `sessions_expired_before`, read
/// notifications created before `read_notifications_before`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PurgeRules {
    pub sessions_expired_before: Timestamp,
    pub read_notifications_before: Option<Timestamp>,
}

/// How many rows retention deleted (or would delete).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub sessions: u64,
    pub notifications: u64,
}

/// What several nodes coordinate through, and the store's own lifecycle.
#[async_trait]
pub trait Coordination: Send + Sync {
    /// Waits until no other node holds `name`, then holds it until the guard is dropped. Work
    /// that must not run on two nodes at once (an assignment pass) runs under it. One node
    /// alone (SQLite) holds it at once.
    async fn exclusive(&self, name: &str) -> Result<Box<dyn Exclusive>, StoreError>;

    /// Takes or renews the lease `name` for `holder` until `until`; false while another holder's
    /// lease has not expired at `now`.
    async fn acquire_lease(&self, name: &str, holder: &str, now: Timestamp, until: Timestamp) -> Result<bool, StoreError>;
    /// Gives the lease up (a clean stop), so another node takes over at once.
    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError>;

    /// Writes a connection's latest state (`health::HealthBoard` on the node running it).
    async fn record_channel_state(&self, state: &crate::health::ChannelState) -> Result<(), StoreError>;
    /// Every connection's last written state.
    async fn channel_states(&self) -> Result<Vec<crate::health::ChannelState>, StoreError>;

    /// A named value kept across restarts; written once, the first writer wins.
    async fn setting_or_insert(&self, key: &str, value: &str) -> Result<String, StoreError>;

    /// Ends a clean stop: the store tidies up (SQLite folds its WAL into the database file) and
    /// closes its connections. Nothing may use the store afterwards.
    async fn close(&self);
}

/// Outbound webhooks: the URLs admins registered and what was posted to them. Deliveries are
/// queued by the step that caused their event (`webhooks::events_of`, in its transaction).
#[async_trait]
pub trait Webhooks: Send + Sync {
    /// Every webhook, oldest first.
    async fn webhooks(&self) -> Result<Vec<Webhook>, StoreError>;
    /// Leases up to `limit` pending deliveries of active webhooks due at `now` until `lease_until`.
    async fn claim_webhook_deliveries(&self, now: Timestamp, lease_until: Timestamp, limit: u32) -> Result<Vec<WebhookDelivery>, StoreError>;
    /// Records one post's outcome on its delivery and its webhook; returns the webhook's failed
    /// posts in a row since (0 after a success).
    async fn record_webhook_attempt(&self, attempt: &WebhookAttempt) -> Result<u32, StoreError>;
    /// Turns an active webhook off (its pending deliveries wait, due as soon as it is on again)
    /// and tells every active admin `notice`; false when it was off already (another node did it).
    async fn turn_off_webhook(&self, id: &str, reason: &str, notice: &str, at: Timestamp) -> Result<bool, StoreError>;
    /// A webhook's deliveries, newest first, those numbered below `before` when given.
    async fn webhook_deliveries(&self, webhook: &str, before: Option<i64>, limit: u32) -> Result<Vec<WebhookDelivery>, StoreError>;
    /// Queues a failed or delivered delivery of `webhook` again, due now, with its attempts
    /// counted afresh; false when there is no such delivery or it is pending already.
    async fn retry_webhook_delivery(&self, webhook: &str, delivery: i64, now: Timestamp) -> Result<bool, StoreError>;
    /// Queues one event for one webhook (the panel's test post).
    async fn queue_webhook_event(&self, webhook: &str, event: &crate::webhooks::QueuedEvent, now: Timestamp) -> Result<(), StoreError>;
}

/// Inbound events a channel could not store after repeated attempts, set aside so the channel
/// moves on, until an admin replays or dismisses them.
#[async_trait]
pub trait DeadLetters: Send + Sync {
    /// Sets an event aside (again: its error, attempts and last failure are updated and it is
    /// `Dead` once more) and tells every active admin `notice`; returns its id.
    async fn keep_dead_letter(&self, letter: &NewDeadLetter, notice: &str) -> Result<i64, StoreError>;
    /// Newest first; only those still waiting unless `settled_too`.
    async fn dead_letters(&self, settled_too: bool, limit: u32) -> Result<Vec<DeadLetter>, StoreError>;
    async fn dead_letter(&self, id: i64) -> Result<Option<DeadLetter>, StoreError>;
    /// Marks a waiting letter replayed or dismissed; false when it was settled already.
    async fn settle_dead_letter(&self, id: i64, state: DeadLetterState, by: AgentId, at: Timestamp) -> Result<bool, StoreError>;
}

/// An inbound event to set aside.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDeadLetter {
    pub channel: Channel,
    /// The channel's id for it (update id, message id, mail Message-ID or UID).
    pub external_id: String,
    /// What arrived, as the channel's adapter can read it again.
    pub payload: Vec<u8>,
    pub error: String,
    pub attempts: u32,
    pub first_failed_at: Timestamp,
    pub last_failed_at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterState {
    Dead,
    Replayed,
    Dismissed,
}

impl DeadLetterState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dead => "dead",
            Self::Replayed => "replayed",
            Self::Dismissed => "dismissed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Dead, Self::Replayed, Self::Dismissed].into_iter().find(|s| s.as_str() == text)
    }
}

/// An inbound event set aside, and what became of it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub id: i64,
    pub letter: NewDeadLetter,
    pub state: DeadLetterState,
    pub settled_by: Option<AgentId>,
    pub settled_at: Option<Timestamp>,
}

/// A URL told about events, signed with its secret.
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    pub id: String,
    pub url: String,
    pub events: Vec<WebhookEvent>,
    pub secret: String,
    pub active: bool,
    pub description: String,
    pub consecutive_failures: u32,
    /// Why it was turned off, when the worker did it.
    pub disabled_reason: Option<String>,
    pub created_by: Option<AgentId>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A webhook added or changed (active again: its failures are forgotten), or deleted with its
/// deliveries.
#[derive(Debug, Clone, PartialEq)]
pub enum WebhookChange {
    Save(Webhook),
    Delete(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookDeliveryState {
    Pending,
    Delivered,
    Failed,
}

impl WebhookDeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Pending, Self::Delivered, Self::Failed].into_iter().find(|s| s.as_str() == text)
    }
}

/// One event for one webhook, and how posting it went so far.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookDelivery {
    pub id: i64,
    pub webhook_id: String,
    pub event: WebhookEvent,
    pub event_id: String,
    pub payload: String,
    pub state: WebhookDeliveryState,
    pub attempts: u32,
    pub created_at: Timestamp,
    pub next_attempt_at: Timestamp,
    pub last_attempt_at: Option<Timestamp>,
    pub last_status: Option<u16>,
    /// The start of the receiver's last answer.
    pub last_response: Option<String>,
    pub last_error: Option<String>,
}

/// What to do with a delivery after a post.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AttemptOutcome {
    Delivered,
    RetryAt(Timestamp),
    GaveUp,
}

/// One post of a delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookAttempt {
    pub delivery: i64,
    pub webhook: String,
    pub at: Timestamp,
    pub status: Option<u16>,
    pub response: Option<String>,
    /// Why it failed (a status outside 2xx, or no answer); None when delivered.
    pub error: Option<String>,
    pub outcome: AttemptOutcome,
}

/// The whole store: every focused port above. Wiring holds it; each part of the code names
/// the ports it uses (`&dyn Accounts`, `&dyn Listings`, …).
pub trait Store: Conversations + Queue + Timers + Outbox + Accounts + Listings + Notifications + Ratings + Reports + IntentVersions + PanelSettings + Documents + Identities + Jobs + Webhooks + DeadLetters + Coordination {}

impl<T: Conversations + Queue + Timers + Outbox + Accounts + Listings + Notifications + Ratings + Reports + IntentVersions + PanelSettings + Documents + Identities + Jobs + Webhooks + DeadLetters + Coordination> Store for T {}

/// Settings admins changed in the panel, each overriding the config file's value of its key.
#[async_trait]
pub trait PanelSettings: Send + Sync {
    /// Every stored setting, by key.
    async fn stored_settings(&self) -> Result<Vec<StoredSetting>, StoreError>;
}

/// A setting as stored: its config key (`bot.low_confidence_threshold`), its value as JSON, who
/// set it and when.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSetting {
    pub key: String,
    pub value: String,
    pub updated_by: Option<AgentId>,
    pub updated_at: Timestamp,
}

/// The settings admins may change, as the configuration reads them: what each is, where its
/// value comes from, the checks a change must pass, and the policy they make.
pub trait SettingsCatalog: Send + Sync {
    /// Every setting with its value and source, given what is stored.
    fn describe(&self, stored: &[StoredSetting]) -> Vec<SettingView>;
    /// Checks changes typed in the panel (key → text; `None`: back to the config file's value)
    /// on top of what is stored, as the configuration would load them: the values to store as
    /// JSON, or what is wrong and how to fix it.
    fn check(&self, stored: &[StoredSetting], changes: &[(String, Option<String>)]) -> Result<Vec<(String, Option<String>)>, SettingError>;
    /// Puts the stored settings in force outside the engine (the rate limits) and returns the
    /// bot's policy they make, for the engine to put in force.
    fn apply(&self, stored: &[StoredSetting]) -> Result<crate::policy::Policy, String>;
}

/// A refused settings change: the key, and the reason with what to do.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct SettingError {
    pub key: String,
    pub problem: String,
}

/// One setting as the Settings page shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SettingView {
    pub key: String,
    pub group: &'static str,
    pub label: &'static str,
    pub help: &'static str,
    pub kind: SettingKind,
    /// The value in force, as typed in the panel.
    pub value: String,
    pub source: SettingSource,
}

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SettingKind {
    Number,
    Integer,
    Text,
    /// Lines of text, one item each (stored as a list).
    List,
    /// TOML: `[[bot.priority_rules]]` tables.
    Rules,
}

/// The group of settings the Widget page shows (the Settings page shows the others).
pub const WIDGET_SETTINGS: &str = "Widget";

/// Where a setting's value comes from; the later ones win.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum SettingSource {
    Default,
    File,
    Panel { by: Option<AgentId>, at: Timestamp },
    /// Set by this environment variable: the panel cannot change it.
    Environment { variable: String },
}

/// Held work across nodes (`Coordination::exclusive`); dropping it lets the next node in.
pub trait Exclusive: Send + Sync {}

/// Rate-limit token buckets every node sees (several nodes on PostgreSQL), so a limit holds
/// for a client whichever node it reaches. One node keeps its buckets in memory instead.
#[async_trait]
pub trait TokenBuckets: Send + Sync {
    /// Takes one token from each bucket at `now`, in one round trip (each `(scope, key)` once).
    /// Per take, in order: `None` when taken; `Some(wait)` when empty, with how long until a
    /// token is free.
    async fn take_tokens(&self, takes: &[BucketTake<'_>], now: Timestamp) -> Result<Vec<Option<std::time::Duration>>, StoreError>;

    /// Forgets buckets untouched since `before` (they are full again by then); returns how many.
    async fn forget_idle(&self, before: Timestamp) -> Result<u64, StoreError>;
}

/// One token from the bucket `key` of `scope`, which holds `capacity` tokens at most and
/// refills at `per_second`.
#[derive(Debug, Clone, Copy)]
pub struct BucketTake<'a> {
    pub scope: &'a str,
    pub key: &'a str,
    pub capacity: f64,
    pub per_second: f64,
}

/// Understands customer text. Never fails: an implementation falls back to something weaker.
#[async_trait]
pub trait Classifier: Send + Sync {
    async fn classify(&self, text: &str) -> Classification;

    /// `classify` for a sender whose channel reports `language` (one of `DETECTED_LANGUAGES`):
    /// the message's language when its text does not tell (too short), so the answer is said
    /// in it.
    async fn classify_in(&self, text: &str, language: Option<&str>) -> Classification {
        in_reported_language(self.classify(text).await, language)
    }

    /// `classify_in` without waiting, where that is possible (keyword rules; a message a first
    /// stage is sure of; any message while the model's queue is behind, on its fast path): the
    /// bot's step is then stored with the message. None: it needs
    /// `classify_in` (or `classify_declined_locally`).
    fn classify_now(&self, _text: &str, _language: Option<&str>) -> Option<Classification> {
        None
    }

    /// What the local model makes of a message `classify_now` declined (skipping what that
    /// tried), without the hosted LLM, when it can tell within a bounded wait (the encoder's
    /// queue budget): the engine stores the message and its step at once when this is
    /// `Settled`, and asks `consult` after storing it when it is `Unsure`. None: the wait has no
    /// bound, so the message is stored (and acknowledged) first and classified in `answer`.
    async fn classify_declined_locally(&self, text: &str, language: Option<&str>) -> Option<LocalClassification> {
        Some(LocalClassification::Settled(self.classify_in(text, language).await))
    }

    /// The hosted LLM's view of a message the local model was `Unsure` of; the local
    /// classification when it fails or is not configured.
    async fn consult(&self, _text: &str, unsure: Classification) -> Classification {
        unsure
    }
}

/// A classification by the local model alone (`Classifier::classify_declined_locally`).
#[derive(Debug, Clone)]
pub enum LocalClassification {
    /// Final: no hosted LLM would be asked.
    Settled(Classification),
    /// The hosted LLM would be asked (`Classifier::consult`): the local model is unsure, or
    /// finds the message out of scope.
    Unsure(Classification),
}

/// A classification whose text did not tell its language takes the one the channel reported.
pub fn in_reported_language(mut classification: Classification, language: Option<&str>) -> Classification {
    if classification.language.is_none() {
        classification.language = language.map(str::to_string);
    }
    classification
}

/// One line of a conversation as an assistant reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct TranscriptLine {
    /// "Customer", "Bot", "Agent <name>".
    pub speaker: String,
    pub text: String,
}

/// The hosted-LLM helpers. Errors are for the person who asked: what failed and what to do.
#[async_trait]
pub trait Assistant: Send + Sync {
    /// A reply the agent edits before sending.
    async fn draft_reply(&self, transcript: &[TranscriptLine], agent_name: &str) -> Result<String, String>;
    /// A short abstractive summary of the conversation for the ticket.
    async fn summarize(&self, transcript: &[TranscriptLine]) -> Result<String, String>;
}

/// The bot's intents as the model classifier reads them: checking and editing intents text,
/// and which version this node runs. On any error the running intents stay.
#[async_trait]
pub trait BotIntents: Send + Sync {
    /// What the text defines, or the line and the reason it would be refused.
    fn outline(&self, text: &str) -> Result<IntentsOutline, String>;
    /// `text` with `examples` added to `intent` (a new intent in `category` when it has none).
    fn with_examples(&self, text: &str, intent: &str, category: Option<Category>, examples: &[String]) -> Result<String, String>;
    /// `text` with the intent `intent.name` written as `intent` (appended when new).
    fn with_intent(&self, text: &str, intent: &IntentOutline) -> Result<String, String>;
    /// `text` with its `escalate_words` set.
    fn with_escalate_words(&self, text: &str, words: &[String]) -> Result<String, String>;
    /// `text` with its `version` set.
    fn with_version(&self, text: &str, version: i64) -> Result<String, String>;
    /// The version this node put in use last.
    fn in_use(&self) -> Option<i64>;
    /// Reads the intents file again (a file changed on disk becomes the next version) and puts
    /// the newest version in use: a one-line report of what runs, or what is wrong.
    async fn reload(&self) -> Result<String, String>;
}

/// What intents text defines.
#[derive(Debug, Clone, PartialEq)]
pub struct IntentsOutline {
    /// SHA-256 of the text.
    pub digest: String,
    pub intents: Vec<IntentOutline>,
    /// Words or phrases that hand any message containing them to a person.
    pub escalate_words: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IntentOutline {
    pub name: String,
    pub category: Category,
    pub examples: Vec<String>,
    pub answer: Option<String>,
    /// The answer in other languages, by language code.
    pub answers: std::collections::BTreeMap<String, String>,
    pub always_escalate: bool,
    /// A disabled intent is kept but not trained or answered.
    pub enabled: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("temporary delivery failure: {reason}")]
    Retry { reason: String, after: Option<Duration> },
    #[error("permanent delivery failure: {reason}")]
    Permanent { reason: String },
    /// The customer cannot be reached on this channel any more; stop sending to them.
    #[error("recipient unreachable: {reason}")]
    Unreachable { reason: String },
}

/// Files by generated key, outside any web root.
#[async_trait]
pub trait BlobStore: Send + Sync {
    /// Stores `bytes` and returns a new key for them.
    async fn put(&self, bytes: &[u8]) -> Result<String, StoreError>;
    /// `Missing` when no file has the key (never stored, or deleted).
    async fn get(&self, key: &str) -> Result<Vec<u8>, StoreError>;
    /// Deletes the file; deleting one that is gone already is no error.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
}

/// Sends stored messages out on one channel.
#[async_trait]
pub trait Outbound: Send + Sync {
    fn channel(&self) -> Channel;
    /// Ok carries the channel's id for the sent message, when it gives one.
    async fn deliver(&self, message: &OutboundMessage) -> Result<Option<String>, DeliveryError>;
    /// Sends a direct notice (plain text) to `recipient`, a contact's external id.
    async fn tell(&self, recipient: &str, _text: &str) -> Result<(), DeliveryError> {
        Err(DeliveryError::Permanent { reason: format!("{} takes no direct notices (to {recipient})", self.channel()) })
    }
}

/// How many customers have a live widget connection to this node (for the dashboard).
pub trait ConnectedVisitors: Send + Sync {
    fn connected_visitors(&self) -> usize;
}

pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

/// A clock that moves only when told, so tests move time instead of sleeping for a timer.
pub struct ManualClock(std::sync::Mutex<Timestamp>);

impl ManualClock {
    pub fn new(at: Timestamp) -> Self {
        Self(std::sync::Mutex::new(at))
    }

    pub fn set(&self, at: Timestamp) {
        *self.0.lock().expect("clock") = at;
    }

    pub fn advance(&self, by: chrono::Duration) {
        *self.0.lock().expect("clock lock") += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().expect("clock lock")
    }
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        chrono::Utc::now()
    }
}
