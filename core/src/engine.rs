//! The thin shell around `step`: classify, load, decide, persist in one transaction, then publish.

use crate::events::EventBus;
use crate::policy::Policy;
use crate::assignment::pick_agent;
use crate::attachments::{UploadError, check_upload, clean_file_name};
use crate::ports::{Assistant, BlobStore, Classifier, Clock, Committed, Store, StepWrite, StoreError};
use crate::step::{Decision, Input, ReplyBody, step};
use crate::summary::{extractive_summary, transcript};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use tokio::sync::{Mutex, Notify};
use switchboard_models::{
    Agent, AgentId, Attachment, AuditAction, AuditEntry, Category, Contact, ContactId, Conversation, ConversationId, DomainEvent, Handler,
    Inbound, Message, MessageId, Presence, Priority, Role, Sender, Status, Thread, Timestamp,
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
    pub conversation: Conversation,
    /// Messages queued for the customer in reply (empty for duplicates).
    pub replies: Vec<Message>,
    /// This message escalated the conversation.
    pub escalated: bool,
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
    policy: Policy,
    limits: EngineLimits,
    locks: ContactLocks,
    /// One assignment pass at a time, so no conversation or slot is given out twice.
    assigning: Mutex<()>,
    slow_steps: SlowSteps,
    outbox_wake: Arc<Notify>,
    /// Escalated conversations whose summary the assistant should rewrite (when one is configured).
    summary_requests: Option<tokio::sync::mpsc::Sender<ConversationId>>,
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
            policy,
            limits,
            locks: ContactLocks::new(1024),
            assigning: Mutex::new(()),
            slow_steps: SlowSteps::default(),
            outbox_wake: Arc::new(Notify::new()),
            summary_requests: None,
        }
    }

    /// Escalations are then sent to `requests` for an abstractive summary (see `summarize_with`).
    pub fn with_summary_requests(mut self, requests: tokio::sync::mpsc::Sender<ConversationId>) -> Self {
        self.summary_requests = Some(requests);
        self
    }

    /// Replaces the extractive summary of an escalated conversation with the assistant's. The
    /// customer never waits for this: it runs after the escalation is committed and answered.
    pub async fn summarize_with(&self, id: ConversationId, assistant: &dyn Assistant) -> Result<bool, EngineError> {
        let agents = self.store.list_agents().await?;
        let messages = self.store.conversation_messages(id, 0, 5000).await?;
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
        let (_turn, mut current) = self.turn_of(id).await?;
        let Some(escalation) = current.escalation.as_mut() else {
            return Ok(false);
        };
        escalation.summary = summary;
        // Same version: the summary is not something an agent edits, so open views stay valid.
        self.commit_change(&current, Vec::new(), None).await?;
        Ok(true)
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn bus(&self) -> &EventBus {
        &self.bus
    }

    /// Woken after every commit that queued outbound messages.
    pub fn outbox_wake(&self) -> Arc<Notify> {
        self.outbox_wake.clone()
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Records a customer message and runs the conversation one step. Idempotent on
    /// (channel, external id): a repeat returns the stored message and changes nothing.
    pub async fn handle(&self, inbound: Inbound) -> Result<HandleOutcome, EngineError> {
        let outcome = self.handle_in_turn(inbound).await?;
        if let (true, Some(requests)) = (outcome.escalated, &self.summary_requests) {
            // A full queue only means the extractive summary stays.
            let _ = requests.try_send(outcome.conversation.id);
        }
        if outcome.conversation.handler == Handler::Queue && !outcome.duplicate {
            // Committed already: a failure here leaves the conversation queued, not lost.
            if let Err(error) = self.assign_waiting().await {
                tracing::warn!(%error, "auto-assignment failed; the conversation waits in the queue");
            }
        }
        Ok(outcome)
    }

    async fn handle_in_turn(&self, inbound: Inbound) -> Result<HandleOutcome, EngineError> {
        self.check(&inbound)?;
        let _turn = self
            .locks
            .for_key((inbound.channel, inbound.sender_external_id.as_str()))
            .lock()
            .await;

        let started = std::time::Instant::now();
        let classification = self.classifier.classify(&inbound.text).await;
        let now = self.clock.now();
        // A repeated message goes through the same path: the store refuses its write as a duplicate.
        let (known, loaded) = match self
            .store
            .contact_and_current_conversation(inbound.channel, &inbound.sender_external_id)
            .await?
        {
            Some((contact, conversation)) => (Some(contact), conversation),
            None => (None, None),
        };
        let (contact, contact_write) = match known {
            Some(contact) if inbound.sender_name.is_none() || contact.display_name == inbound.sender_name => {
                (contact, None)
            }
            Some(mut contact) => {
                contact.display_name = inbound.sender_name.clone();
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
                };
                (contact.clone(), Some(contact))
            }
        };
        let loaded = match inbound.thread {
            Thread::Current => loaded,
            Thread::New => None,
            Thread::Continue(id) => self
                .store
                .conversation(id)
                .await?
                .filter(|c| c.contact_id == contact.id && !c.status.is_final()),
        };
        let conversation = loaded.clone().unwrap_or_else(|| Conversation::new(contact.id, inbound.channel, now));
        let mut message = new_message(&conversation, Sender::Customer, inbound.text.clone(), now);
        message.external_id = Some(inbound.external_id.clone());
        message.classification = Some(classification.clone());
        message.attachments = inbound.attachments.iter().chain(&inbound.original).cloned().collect();
        let input = Input::CustomerMessage {
            text: &inbound.text,
            classification: &classification,
            has_attachments: !inbound.attachments.is_empty(),
        };
        let decision = step(&conversation, &input, &self.policy, now);
        let escalated = decision.escalated.is_some();
        let (conversation, replies) = self.replies_for(decision, Some(&inbound.text), now).await?;

        let changed = loaded.as_ref().is_none_or(|before| !same_state(before, &conversation));
        let write = StepWrite {
            inbound: Some(message.clone()),
            contact: contact_write,
            conversation: changed.then(|| conversation.clone()),
            outbound: replies.clone(),
            ..StepWrite::default()
        };
        let decided = started.elapsed();
        let committed = self.store.commit(write).await?;
        if started.elapsed() > SLOW_STEP {
            self.slow_steps.note(decided, started.elapsed() - decided);
        }
        match committed {
            Committed::Duplicate => {
                // Stored elsewhere between our check and our write.
                let existing = self
                    .store
                    .message_by_external_id(inbound.channel, &inbound.external_id)
                    .await?
                    .ok_or_else(|| StoreError::Corrupt("duplicate message vanished".into()))?;
                self.duplicate(existing).await
            }
            Committed::Stored { seqs } => {
                let mut replies = replies;
                message.seq = seqs[0];
                for (reply, seq) in replies.iter_mut().zip(&seqs[1..]) {
                    reply.seq = *seq;
                }
                if !replies.is_empty() {
                    self.outbox_wake.notify_one();
                }
                self.publish(&conversation, std::iter::once(&message).chain(&replies));
                tracing::debug!(conversation_id = %conversation.id, contact_id = %contact.id, replies = replies.len(), "step committed");
                Ok(HandleOutcome { message, duplicate: false, conversation, replies, escalated })
            }
        }
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
        })
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
        Ok(Attachment { key, file_name: file_name.to_string(), content_type: content_type.to_string(), size })
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
        let agent = self.store.agent(agent_id).await?.filter(|a| a.active).ok_or(EngineError::NotFound("agent"))?;
        let (_turn, conversation) = self.turn_of(conversation_id).await?;
        if conversation.status.is_final() {
            return Err(EngineError::Invalid(format!(
                "the conversation is {}; replies can no longer be sent",
                conversation.status
            )));
        }
        self.may_act(&agent, &conversation).await?;
        let now = self.clock.now();
        let mut outbound = Vec::new();
        let before = conversation.clone();
        let mut current = conversation;
        let newly_assigned = current.handler != Handler::Agent(agent.id);
        if newly_assigned {
            let joined = step(&current, &Input::AgentJoined { agent: agent.id, agent_name: &agent.name }, &self.policy, now);
            let (next, replies) = self.replies_for(joined, None, now).await?;
            outbound.extend(replies);
            current = next;
        }
        let replied = step(&current, &Input::AgentReplied { agent: agent.id }, &self.policy, now);
        let mut reply = new_message(&replied.conversation, Sender::Agent, text, now);
        reply.agent_id = Some(agent.id);
        reply.attachments = attachments;
        outbound.push(reply);
        let conversation = replied.conversation;
        let audit = Audit { actor: Some(agent.id), action: AuditAction::Reply, subject_agent: None };
        let entry = audit.entry(now, &before, &conversation);
        let mut stored = self.commit_change(&conversation, outbound, Some(entry)).await?;
        if newly_assigned {
            self.bus.publish(DomainEvent::Assigned { conversation, agent: agent.id });
        }
        Ok(stored.pop().expect("the reply is last"))
    }

    /// An agents' note on the conversation: kept with it, never shown or sent to the customer.
    pub async fn add_note(&self, conversation_id: ConversationId, agent_id: AgentId, text: String) -> Result<Message, EngineError> {
        if text.trim().is_empty() {
            return Err(EngineError::Invalid("the note is empty".into()));
        }
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
        let write = StepWrite { notes: vec![note.clone()], audit: Some(audit), ..StepWrite::default() };
        let Committed::Stored { seqs } = self.store.commit(write).await? else {
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
            (TicketChange::Status(status), _) => (Input::StatusSet(*status), AuditAction::Status),
            (TicketChange::Priority(priority), _) => (Input::PrioritySet(*priority), AuditAction::Priority),
            (TicketChange::Category(category), _) => (Input::CategorySet(*category), AuditAction::Category),
            (TicketChange::Assign(_) | TicketChange::Take, Some(agent)) => {
                (Input::AgentJoined { agent: agent.id, agent_name: &agent.name }, AuditAction::Assign)
            }
            (TicketChange::Release, _) => (Input::Released { agent_name: &actor.name }, AuditAction::Release),
            (TicketChange::HandBack, _) => (Input::HandedBackToBot, AuditAction::HandBack),
            (TicketChange::Assign(_) | TicketChange::Take, None) => unreachable!("assignee resolved above"),
        };
        let audit = Audit { actor: Some(actor.id), action, subject_agent: assignee.as_ref().map(|a| a.id) };
        let unchanged = |c: &Conversation| c.updated_at == seen.updated_at && !c.status.is_final();
        let changed = self.change(conversation_id, unchanged, input, audit).await?.ok_or_else(|| {
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
        let mut assigned = 0;
        while let Some(waiting) = self.store.queued_conversations(1).await?.pop() {
            let loads = self.store.assignment_candidates().await?;
            let Some(agent) = pick_agent(&loads).cloned() else { break };
            if self.take(waiting.id, &agent).await? {
                assigned += 1;
            }
        }
        Ok(assigned)
    }

    /// The agent becomes online, away or offline. Online agents get waiting conversations; an
    /// agent going offline hands theirs back to the queue, for someone else to take.
    pub async fn set_presence(&self, agent_id: AgentId, presence: Presence) -> Result<(), EngineError> {
        let agent = self.store.agent(agent_id).await?.filter(|a| a.active).ok_or(EngineError::NotFound("agent"))?;
        let now = self.clock.now();
        self.store.set_presence(agent.id, presence, now).await?;
        if agent.presence != presence {
            self.store
                .record_audit(&AuditEntry {
                    at: now,
                    actor: Some(agent.id),
                    action: AuditAction::Presence,
                    conversation: None,
                    subject_agent: Some(agent.id),
                    before: Some(agent.presence.to_string()),
                    after: Some(presence.to_string()),
                })
                .await?;
        }
        if presence == Presence::Offline {
            for conversation in self.store.agent_conversations(agent.id).await? {
                let released = Input::Released { agent_name: &agent.name };
                let audit = Audit { actor: Some(agent.id), action: AuditAction::Release, subject_agent: None };
                self.change(conversation.id, |c| c.handler == Handler::Agent(agent.id), released, audit).await?;
            }
        }
        self.assign_waiting().await?;
        Ok(())
    }

    /// Marks the conversation resolved (the bot answers again if the customer writes) and
    /// gives the freed slot to whoever waits.
    pub async fn resolve(&self, conversation_id: ConversationId, by: AgentId) -> Result<(), EngineError> {
        let audit = Audit { actor: Some(by), action: AuditAction::Resolve, subject_agent: None };
        self.change(conversation_id, |c| !c.status.is_final(), Input::Resolved, audit).await?;
        self.assign_waiting().await?;
        Ok(())
    }

    /// Gives a waiting conversation to `agent`, if it is still waiting.
    async fn take(&self, conversation_id: ConversationId, agent: &Agent) -> Result<bool, EngineError> {
        let joined = Input::AgentJoined { agent: agent.id, agent_name: &agent.name };
        let audit = Audit { actor: None, action: AuditAction::Assign, subject_agent: Some(agent.id) };
        match self.change(conversation_id, |c| c.handler == Handler::Queue, joined, audit).await? {
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
        audit: Audit,
    ) -> Result<Option<Conversation>, EngineError> {
        let (_turn, current) = self.turn_of(conversation_id).await?;
        if !applies(&current) {
            return Ok(None);
        }
        let now = self.clock.now();
        let decision = step(&current, &input, &self.policy, now);
        let (conversation, replies) = self.replies_for(decision, None, now).await?;
        let entry = audit.entry(now, &current, &conversation);
        self.commit_change(&conversation, replies, Some(entry)).await?;
        Ok(Some(conversation))
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
    /// publishes. Returns the messages as stored (with their `seq`).
    async fn commit_change(
        &self,
        conversation: &Conversation,
        outbound: Vec<Message>,
        audit: Option<AuditEntry>,
    ) -> Result<Vec<Message>, EngineError> {
        let write = StepWrite { conversation: Some(conversation.clone()), outbound, audit, ..StepWrite::default() };
        let Committed::Stored { seqs } = self.store.commit(write.clone()).await? else {
            return Err(StoreError::Corrupt("a step without a customer message was taken for a duplicate".into()).into());
        };
        let mut stored = write.outbound;
        for (message, seq) in stored.iter_mut().zip(seqs) {
            message.seq = seq;
        }
        if !stored.is_empty() {
            self.outbox_wake.notify_one();
        }
        self.publish(conversation, stored.iter());
        Ok(stored)
    }

    fn check(&self, inbound: &Inbound) -> Result<(), EngineError> {
        let chars = inbound.text.chars().count();
        if inbound.text.trim().is_empty() && inbound.attachments.is_empty() {
            return Err(EngineError::Invalid("the message is empty".into()));
        }
        if chars > self.limits.max_text_chars {
            return Err(EngineError::Invalid(format!(
                "the message has {chars} characters; the limit is {}",
                self.limits.max_text_chars
            )));
        }
        if inbound.external_id.is_empty() || inbound.sender_external_id.is_empty() {
            return Err(EngineError::Invalid("the message has no id or no sender".into()));
        }
        Ok(())
    }

    async fn duplicate(&self, existing: Message) -> Result<HandleOutcome, EngineError> {
        let conversation = self
            .store
            .conversation(existing.conversation_id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("message without conversation".into()))?;
        Ok(HandleOutcome { message: existing, duplicate: true, conversation, replies: Vec::new(), escalated: false })
    }

    /// Words the decided replies and fills the escalation summary; `current_text` is the
    /// customer message being handled, not yet stored.
    async fn replies_for(
        &self,
        decision: Decision,
        current_text: Option<&str>,
        now: Timestamp,
    ) -> Result<(Conversation, Vec<Message>), EngineError> {
        let Decision { mut conversation, replies, escalated } = decision;
        if escalated.is_some() {
            let mut texts = self.store.recent_customer_texts(conversation.id, 20).await?;
            texts.extend(current_text.map(String::from));
            if let Some(escalation) = conversation.escalation.as_mut() {
                escalation.summary = extractive_summary(&texts);
            }
        }
        let mut messages = Vec::with_capacity(replies.len());
        for reply in replies {
            let text = match reply.body {
                ReplyBody::Text(text) => text,
                ReplyBody::HandoffNotice => self.policy.handoff_text(self.store.queue_view().await?),
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

/// Who did an action outside a customer message, for the audit log.
struct Audit {
    actor: Option<AgentId>,
    action: AuditAction,
    subject_agent: Option<AgentId>,
}

impl Audit {
    fn entry(self, at: Timestamp, before: &Conversation, after: &Conversation) -> AuditEntry {
        AuditEntry {
            at,
            actor: self.actor,
            action: self.action,
            conversation: Some(after.id),
            subject_agent: self.subject_agent,
            before: Some(state_line(before)),
            after: Some(state_line(after)),
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

/// Whether a step changed anything worth writing (the timestamp alone is not).
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
    }
}
