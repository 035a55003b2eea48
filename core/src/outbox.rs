//! Delivers committed outbound messages on their channels, retrying with backoff.

use crate::events::EventBus;
use crate::ports::{DeliveryError, Outbound, Store};
use chrono::Duration as ChronoDuration;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use switchboard_models::{Channel, ConversationId, Delivery, DeliveryState, DomainEvent, OutboundMessage, Timestamp};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

const BATCH: u32 = 256;
const LEASE: ChronoDuration = ChronoDuration::seconds(60);
const IDLE_POLL: Duration = Duration::from_secs(1);
/// Handed-over replies delivered in one pass at most.
const HANDOFFS_PER_PASS: usize = 1024;
/// A handed-over reply is delivered only while its lease lasts this much longer: sending and
/// marking it must end before a claim could take it again.
const DELIVERY_TIME: ChronoDuration = ChronoDuration::seconds(15);

/// What wakes the outbox early: a commit that queued replies, or a direct notice queued. A
/// pass claims direct notices only when one was queued here or a second has passed (notices of
/// other nodes, retries): a claim per commit was a statement per message for a table that is
/// nearly always empty. The bot's replies are mostly handed over in memory (`lease`), stored
/// already leased to this node, so its passes claim from the store only when replies were
/// queued without a handover, or a second has passed (retries, replies whose node died).
#[derive(Default)]
pub struct OutboxWake {
    notify: Notify,
    notice_queued: AtomicBool,
    replies_queued: AtomicBool,
    handoffs: Mutex<Handoffs>,
}

/// Replies a commit stored leased to this node's outbox, waiting for its worker.
#[derive(Default)]
struct Handoffs {
    /// A worker runs and takes handovers: from its start until its last pass.
    open: bool,
    /// Leases taken whose commit has not handed its replies over (or given up) yet.
    in_flight: usize,
    queued: Vec<(OutboundMessage, Timestamp)>,
}

impl OutboxWake {
    /// Replies were stored claimable (not handed over): the next pass claims from the store.
    pub fn replies_queued(&self) {
        self.replies_queued.store(true, Ordering::SeqCst);
        self.notify.notify_one();
    }

    pub fn notice_queued(&self) {
        self.notice_queued.store(true, Ordering::SeqCst);
        self.notify.notify_one();
    }

    /// A lease for one commit's replies, to store them with (`StepWrite::outbound_leased_until`)
    /// and hand them over once stored; `None` while no worker of this process takes handovers
    /// (the replies are then stored claimable).
    pub fn lease(self: &Arc<Self>) -> Option<HandoffLease> {
        let mut handoffs = self.handoffs.lock().unwrap_or_else(|e| e.into_inner());
        if !handoffs.open {
            return None;
        }
        handoffs.in_flight += 1;
        Some(HandoffLease { wake: self.clone(), until: chrono::Utc::now() + LEASE })
    }

    fn open_handoffs(&self) {
        self.handoffs.lock().unwrap_or_else(|e| e.into_inner()).open = true;
    }

    /// Takes no more handovers and waits for the leases in flight to hand theirs over.
    async fn close_handoffs(&self) {
        self.handoffs.lock().unwrap_or_else(|e| e.into_inner()).open = false;
        while self.handoffs.lock().unwrap_or_else(|e| e.into_inner()).in_flight > 0 {
            let _ = tokio::time::timeout(Duration::from_millis(10), self.notify.notified()).await;
        }
    }

    /// Up to `limit` handed-over replies whose lease lasts past `deliverable_until`, oldest
    /// first, and whether more wait. One whose lease runs out sooner is dropped here: a claim
    /// takes it from the store once the lease ends, so it is never sent twice at once.
    fn take_handoffs(&self, deliverable_until: Timestamp, limit: usize) -> (Vec<OutboundMessage>, bool) {
        let mut handoffs = self.handoffs.lock().unwrap_or_else(|e| e.into_inner());
        let take = handoffs.queued.len().min(limit);
        let taken: Vec<OutboundMessage> = handoffs
            .queued
            .drain(..take)
            .filter_map(|(reply, until)| (until > deliverable_until).then_some(reply))
            .collect();
        (taken, !handoffs.queued.is_empty())
    }
}

/// One commit's claim on this node's outbox: its replies are stored leased `until`, then handed
/// over. Dropped without a handover (the commit failed or stored nothing), it only ends.
pub struct HandoffLease {
    wake: Arc<OutboxWake>,
    pub until: Timestamp,
}

impl HandoffLease {
    /// Gives the worker the replies just stored under this lease.
    pub fn hand_over(self, replies: impl IntoIterator<Item = OutboundMessage>) {
        let until = self.until;
        self.wake.handoffs.lock().unwrap_or_else(|e| e.into_inner()).queued.extend(replies.into_iter().map(|reply| (reply, until)));
    }
}

impl Drop for HandoffLease {
    fn drop(&mut self) {
        self.wake.handoffs.lock().unwrap_or_else(|e| e.into_inner()).in_flight -= 1;
        self.wake.notify.notify_one();
    }
}

pub struct OutboxWorker {
    store: Arc<dyn Store>,
    senders: HashMap<Channel, Arc<dyn Outbound>>,
    wake: Arc<OutboxWake>,
    bus: EventBus,
    /// How long a reply that fails for a passing reason is retried, from when it was queued.
    retry_window: ChronoDuration,
}

impl OutboxWorker {
    pub fn new(
        store: Arc<dyn Store>,
        senders: Vec<Arc<dyn Outbound>>,
        wake: Arc<OutboxWake>,
        bus: EventBus,
        retry_window: Duration,
    ) -> Self {
        let senders = senders.into_iter().map(|s| (s.channel(), s)).collect();
        let retry_window = ChronoDuration::from_std(retry_window).unwrap_or(ChronoDuration::hours(24));
        Self { store, senders, wake, bus, retry_window }
    }

    /// Runs until `stop`, then makes one last pass (replies committed while stopping) and
    /// returns. Wakes on commit, and every second for retries.
    pub async fn run(self, stop: CancellationToken) {
        self.wake.open_handoffs();
        let mut notices_claimed_at: Option<Instant> = None;
        let mut replies_claimed_at: Option<Instant> = None;
        let (mut more_notices, mut more_replies) = (false, false);
        loop {
            // A pass that starts after the stop sees every reply committed before it.
            let last_pass = stop.is_cancelled();
            if last_pass {
                self.wake.close_handoffs().await;
            }
            let due = |queued: &AtomicBool, more: bool, claimed_at: &mut Option<Instant>| {
                let due = queued.swap(false, Ordering::SeqCst) || more || last_pass || claimed_at.is_none_or(|at| at.elapsed() >= IDLE_POLL);
                if due {
                    *claimed_at = Some(Instant::now());
                }
                due
            };
            let claim_replies = due(&self.wake.replies_queued, more_replies, &mut replies_claimed_at);
            let claim_notices = due(&self.wake.notice_queued, more_notices, &mut notices_claimed_at);
            match self.drain(claim_replies, claim_notices).await {
                Ok((replies_left, notices)) => {
                    more_replies = replies_left;
                    more_notices = notices >= BATCH as usize;
                    if more_replies || more_notices {
                        continue;
                    }
                }
                Err(error) => tracing::warn!(%error, "outbox pass failed; retrying"),
            }
            if last_pass {
                return;
            }
            tokio::select! {
                _ = tokio::time::timeout(IDLE_POLL, self.wake.notify.notified()) => {}
                _ = stop.cancelled() => {}
            }
        }
    }

    /// Delivers the replies handed over, and claims one batch of replies (`claim_replies`) and
    /// one of direct notices (`claim_notices`) and delivers them; whether replies are left for
    /// another pass, and how many notices it claimed.
    async fn drain(&self, claim_replies: bool, claim_notices: bool) -> Result<(bool, usize), crate::ports::StoreError> {
        let replies_left = self.drain_replies(claim_replies).await?;
        let notices = if claim_notices { self.drain_notices().await? } else { 0 };
        Ok((replies_left, notices))
    }

    /// Sends the due direct notices one by one; a passing failure is retried within the
    /// retry window, as replies are.
    async fn drain_notices(&self) -> Result<usize, crate::ports::StoreError> {
        let now = chrono::Utc::now();
        let notices = self.store.claim_direct_notices(now, now + LEASE, BATCH).await?;
        for queued in &notices {
            let notice = &queued.notice;
            let result = match self.senders.get(&notice.channel) {
                Some(sender) => sender.tell(&notice.recipient, &notice.text).await,
                None => Err(DeliveryError::Permanent { reason: format!("no sender for channel {}", notice.channel) }),
            };
            let now = chrono::Utc::now();
            let (error, retry_at) = match result {
                Ok(()) => (None, None),
                Err(DeliveryError::Retry { reason, after }) => {
                    let wait = ChronoDuration::from_std(after.unwrap_or_else(|| backoff(queued.attempts))).unwrap_or(ChronoDuration::minutes(10));
                    (Some(reason), Some(now + wait).filter(|at| *at <= notice.created_at + self.retry_window))
                }
                Err(DeliveryError::Permanent { reason } | DeliveryError::Unreachable { reason }) => (Some(reason), None),
            };
            if let Some(reason) = &error {
                tracing::warn!(notice = queued.id, channel = %notice.channel, gave_up = retry_at.is_none(), reason, "a direct notice was not sent");
            }
            self.store.direct_notice_attempted(queued.id, now, error.as_deref(), retry_at).await?;
        }
        Ok(notices.len())
    }

    /// Takes the replies handed over and (`claim`) one batch from the store, and delivers them:
    /// in order within a conversation, conversations in parallel. Whether more are left.
    async fn drain_replies(&self, claim: bool) -> Result<bool, crate::ports::StoreError> {
        let now = chrono::Utc::now();
        let (mut batch, more_handed_over) = self.wake.take_handoffs(now + DELIVERY_TIME, HANDOFFS_PER_PASS);
        // A failed claim still lets the handed-over replies go first.
        let (claimed, claim_failed) = match claim {
            true => match self.store.claim_outbox(now, now + LEASE, BATCH).await {
                Ok(claimed) => (claimed, None),
                Err(error) => (Vec::new(), Some(error)),
            },
            false => (Vec::new(), None),
        };
        let more_claimable = claimed.len() >= BATCH as usize;
        batch.extend(claimed);
        batch.sort_by_key(|item| item.message.seq);
        let mut by_conversation: BTreeMap<ConversationId, Vec<OutboundMessage>> = BTreeMap::new();
        for item in batch {
            by_conversation.entry(item.message.conversation_id).or_default().push(item);
        }
        let results = futures::future::join_all(
            by_conversation.into_values().map(|items| self.deliver_in_order(items)),
        )
        .await;
        let delivered: Vec<(OutboundMessage, Option<String>)> = results.into_iter().flatten().collect();
        if !delivered.is_empty() {
            let now = chrono::Utc::now();
            let sent: Vec<(i64, Option<String>)> = delivered.iter().map(|(item, id)| (item.message.seq, id.clone())).collect();
            self.store.mark_delivered(&sent, now).await?;
            if self.bus.has_subscribers() {
                for (item, id) in delivered {
                    let attempts = item.attempts + 1;
                    let delivery = Delivery { state: DeliveryState::Sent, attempts, sent_at: Some(now), sent_id: id, ..delivery_of(&item) };
                    self.announce(&item, delivery);
                }
            }
        }
        match claim_failed {
            Some(error) => Err(error),
            None => Ok(more_handed_over || more_claimable),
        }
    }

    /// Tells live views where a reply is now (the row itself was just written).
    fn announce(&self, item: &OutboundMessage, delivery: Delivery) {
        let mut message = item.message.clone();
        message.delivery = Some(delivery);
        self.bus.publish(DomainEvent::DeliveryChanged(message));
    }

    /// Returns the messages delivered with the channel's ids for them; stops at the first
    /// failure so order is kept.
    async fn deliver_in_order(&self, items: Vec<OutboundMessage>) -> Vec<(OutboundMessage, Option<String>)> {
        let mut delivered = Vec::new();
        for item in items {
            let Some(sender) = self.senders.get(&item.message.channel) else {
                self.fail(&item, &format!("no sender for channel {}", item.message.channel), None)
                    .await;
                break;
            };
            let result = sender.deliver(&item).await;
            let outcome = match &result {
                Ok(_) => "delivered",
                Err(DeliveryError::Retry { .. }) => "retry",
                Err(DeliveryError::Permanent { .. }) => "failed",
                Err(DeliveryError::Unreachable { .. }) => "unreachable",
            };
            metrics::counter!("switchboard_deliveries_total", "channel" => item.message.channel.as_str(), "outcome" => outcome).increment(1);
            match result {
                Ok(sent_id) => delivered.push((item, sent_id)),
                Err(DeliveryError::Retry { reason, after }) => {
                    self.fail(&item, &reason, Some(after.unwrap_or_else(|| backoff(item.attempts))))
                        .await;
                    break;
                }
                Err(DeliveryError::Permanent { reason }) => {
                    self.fail(&item, &reason, None).await;
                }
                Err(DeliveryError::Unreachable { reason }) => {
                    self.fail(&item, &reason, None).await;
                    let contact = item.message.contact_id;
                    if let Err(error) = self.store.mark_unreachable(contact, chrono::Utc::now(), &reason).await {
                        tracing::error!(%error, %contact, "could not mark the contact unreachable");
                    }
                }
            }
        }
        delivered
    }

    async fn fail(&self, item: &OutboundMessage, reason: &str, retry_in: Option<Duration>) {
        let now = chrono::Utc::now();
        let window_ends = item.retry_from.unwrap_or(item.message.created_at) + self.retry_window;
        let retry_at = retry_in
            .and_then(|d| ChronoDuration::from_std(d).ok())
            .map(|d| now + d)
            .filter(|at| *at <= window_ends);
        tracing::warn!(
            seq = item.message.seq,
            conversation_id = %item.message.conversation_id,
            channel = %item.message.channel,
            attempts = item.attempts + 1,
            gave_up = retry_at.is_none(),
            reason,
            "outbound delivery failed"
        );
        if retry_at.is_none() {
            metrics::counter!("switchboard_delivery_give_ups_total", "channel" => item.message.channel.as_str()).increment(1);
        }
        if let Err(error) = self.store.mark_failed(item.message.seq, reason, retry_at).await {
            tracing::error!(%error, seq = item.message.seq, "could not record delivery failure");
            return;
        }
        let delivery = Delivery {
            state: if retry_at.is_some() { DeliveryState::Retrying } else { DeliveryState::Failed },
            attempts: item.attempts + 1,
            next_attempt_at: retry_at,
            failed_at: retry_at.is_none().then_some(now),
            error: Some(reason.to_string()),
            ..delivery_of(item)
        };
        self.announce(item, delivery);
    }
}

/// The delivery record of a claimed reply before this attempt.
fn delivery_of(item: &OutboundMessage) -> Delivery {
    item.message.delivery.clone().unwrap_or(Delivery {
        state: DeliveryState::Queued,
        attempts: item.attempts,
        next_attempt_at: None,
        sent_at: None,
        sent_id: None,
        seen_at: None,
        failed_at: None,
        error: None,
    })
}

/// 1 s, 2 s, 4 s … capped at 10 minutes.
fn backoff(attempts: u32) -> Duration {
    Duration::from_secs(1u64 << attempts.min(10)).min(Duration::from_secs(600))
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_models::{ContactId, MessageId, Sender};

    fn reply(seq: i64) -> OutboundMessage {
        OutboundMessage {
            attempts: 0,
            retry_from: None,
            recipient_external_id: "visitor".into(),
            message: switchboard_models::Message {
                id: MessageId::new(),
                seq,
                conversation_id: ConversationId::new(),
                contact_id: ContactId::new(),
                channel: Channel::WebChat,
                sender: Sender::Bot,
                agent_id: None,
                text: format!("reply {seq}"),
                attachments: Vec::new(),
                internal: false,
                quick_replies: Vec::new(),
                classification: None,
                external_id: None,
                created_at: chrono::Utc::now(),
                delivery: None,
            },
        }
    }

    #[test]
    fn replies_are_handed_over_only_while_a_worker_takes_them_and_never_near_their_lease_end() {
        let wake = Arc::new(OutboxWake::default());
        assert!(wake.lease().is_none(), "no worker: replies are stored claimable");
        wake.open_handoffs();
        let lease = wake.lease().expect("a worker takes handovers");
        assert!(lease.until > chrono::Utc::now() + LEASE - ChronoDuration::seconds(1));
        let until = lease.until;
        lease.hand_over([reply(1), reply(2)]);
        let (taken, more) = wake.take_handoffs(chrono::Utc::now(), 1);
        assert_eq!(taken.iter().map(|r| r.message.seq).collect::<Vec<_>>(), [1]);
        assert!(more);
        // The second's lease ends before it could be delivered: left to a claim, not sent.
        let (taken, more) = wake.take_handoffs(until, 10);
        assert!(taken.is_empty() && !more, "{taken:?}");
    }

    #[tokio::test]
    async fn the_last_pass_waits_for_commits_holding_a_lease() {
        let wake = Arc::new(OutboxWake::default());
        wake.open_handoffs();
        let lease = wake.lease().expect("open");
        let closing = tokio::spawn({
            let wake = wake.clone();
            async move { wake.close_handoffs().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!closing.is_finished(), "a commit in flight may still hand its replies over");
        assert!(wake.lease().is_none(), "closed to new leases");
        lease.hand_over([reply(7)]);
        closing.await.unwrap();
        let (taken, _) = wake.take_handoffs(chrono::Utc::now(), 10);
        assert_eq!(taken.len(), 1, "the last pass delivers it");
    }
}
