//! Delivers committed outbound messages on their channels, retrying with backoff.

use crate::events::EventBus;
use crate::ports::{DeliveryError, Outbound, Store};
use chrono::Duration as ChronoDuration;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use switchboard_models::{Channel, ConversationId, Delivery, DeliveryState, DomainEvent, OutboundMessage};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

const BATCH: u32 = 256;
const LEASE: ChronoDuration = ChronoDuration::seconds(60);
const IDLE_POLL: Duration = Duration::from_secs(1);

/// What wakes the outbox early: a commit that queued replies, or a direct notice queued. A
/// pass claims direct notices only when one was queued here or a second has passed (notices of
/// other nodes, retries): a claim per commit was a statement per message for a table that is
/// nearly always empty.
#[derive(Default)]
pub struct OutboxWake {
    notify: Notify,
    notice_queued: AtomicBool,
}

impl OutboxWake {
    pub fn replies_queued(&self) {
        self.notify.notify_one();
    }

    pub fn notice_queued(&self) {
        self.notice_queued.store(true, Ordering::SeqCst);
        self.notify.notify_one();
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
        let mut notices_claimed_at: Option<Instant> = None;
        let mut more_notices = false;
        loop {
            // A pass that starts after the stop sees every reply committed before it.
            let last_pass = stop.is_cancelled();
            let notices_due = self.wake.notice_queued.swap(false, Ordering::SeqCst)
                || more_notices
                || last_pass
                || notices_claimed_at.is_none_or(|at| at.elapsed() >= IDLE_POLL);
            if notices_due {
                notices_claimed_at = Some(Instant::now());
            }
            match self.drain(notices_due).await {
                Ok((replies, notices)) => {
                    more_notices = notices >= BATCH as usize;
                    if replies >= BATCH as usize || more_notices {
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

    /// Claims one batch of replies (and, `with_notices`, one of direct notices) and delivers
    /// them; how many of each it claimed.
    async fn drain(&self, with_notices: bool) -> Result<(usize, usize), crate::ports::StoreError> {
        let replies = self.drain_replies().await?;
        let notices = if with_notices { self.drain_notices().await? } else { 0 };
        Ok((replies, notices))
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

    /// Claims one batch and delivers it: in order within a conversation, conversations in parallel.
    async fn drain_replies(&self) -> Result<usize, crate::ports::StoreError> {
        let now = chrono::Utc::now();
        let batch = self.store.claim_outbox(now, now + LEASE, BATCH).await?;
        let claimed = batch.len();
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
        Ok(claimed)
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
