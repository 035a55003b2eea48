//! Delivers committed outbound messages on their channels, retrying with backoff.

use crate::ports::{DeliveryError, Outbound, Store};
use chrono::Duration as ChronoDuration;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use switchboard_models::{Channel, ConversationId, OutboundMessage};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

const BATCH: u32 = 256;
const LEASE: ChronoDuration = ChronoDuration::seconds(60);
const IDLE_POLL: Duration = Duration::from_secs(1);
const MAX_ATTEMPTS: u32 = 12;

pub struct OutboxWorker {
    store: Arc<dyn Store>,
    senders: HashMap<Channel, Arc<dyn Outbound>>,
    wake: Arc<Notify>,
}

impl OutboxWorker {
    pub fn new(store: Arc<dyn Store>, senders: Vec<Arc<dyn Outbound>>, wake: Arc<Notify>) -> Self {
        let senders = senders.into_iter().map(|s| (s.channel(), s)).collect();
        Self { store, senders, wake }
    }

    /// Runs until `stop`, then makes one last pass (replies committed while stopping) and
    /// returns. Wakes on commit, and every second for retries.
    pub async fn run(self, stop: CancellationToken) {
        loop {
            // A pass that starts after the stop sees every reply committed before it.
            let last_pass = stop.is_cancelled();
            match self.drain_once().await {
                Ok(claimed) if claimed >= BATCH as usize => continue,
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "outbox pass failed; retrying"),
            }
            if last_pass {
                return;
            }
            tokio::select! {
                _ = tokio::time::timeout(IDLE_POLL, self.wake.notified()) => {}
                _ = stop.cancelled() => {}
            }
        }
    }

    /// Claims one batch and delivers it: in order within a conversation, conversations in parallel.
    pub async fn drain_once(&self) -> Result<usize, crate::ports::StoreError> {
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
        let delivered: Vec<i64> = results.into_iter().flatten().collect();
        if !delivered.is_empty() {
            self.store.mark_delivered(&delivered, chrono::Utc::now()).await?;
        }
        Ok(claimed)
    }

    /// Returns the seqs of the messages delivered; stops at the first failure so order is kept.
    async fn deliver_in_order(&self, items: Vec<OutboundMessage>) -> Vec<i64> {
        let mut delivered = Vec::new();
        for item in items {
            let Some(sender) = self.senders.get(&item.message.channel) else {
                self.fail(&item, &format!("no sender for channel {}", item.message.channel), None)
                    .await;
                break;
            };
            let result = sender.deliver(&item).await;
            let outcome = match &result {
                Ok(()) => "delivered",
                Err(DeliveryError::Retry { .. }) => "retry",
                Err(DeliveryError::Permanent { .. }) => "failed",
                Err(DeliveryError::Unreachable { .. }) => "unreachable",
            };
            metrics::counter!("switchboard_deliveries_total", "channel" => item.message.channel.as_str(), "outcome" => outcome).increment(1);
            match result {
                Ok(()) => delivered.push(item.message.seq),
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
                    if let Err(error) = self.store.mark_unreachable(contact, chrono::Utc::now()).await {
                        tracing::error!(%error, %contact, "could not mark the contact unreachable");
                    }
                }
            }
        }
        delivered
    }

    async fn fail(&self, item: &OutboundMessage, reason: &str, retry_in: Option<Duration>) {
        let retry_at = retry_in
            .filter(|_| item.attempts + 1 < MAX_ATTEMPTS)
            .and_then(|d| ChronoDuration::from_std(d).ok())
            .map(|d| chrono::Utc::now() + d);
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
        }
    }
}

/// 1 s, 2 s, 4 s … capped at 10 minutes.
fn backoff(attempts: u32) -> Duration {
    Duration::from_secs(1u64 << attempts.min(10)).min(Duration::from_secs(600))
}
