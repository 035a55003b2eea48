//! Outbound webhooks: which events a step tells the registered URLs (queued in the step's own
//! transaction, so an event is never told without having happened nor lost once it did), how
//! each post is signed, and the worker that posts what is queued, retrying with backoff and
//! turning a webhook off after it failed again and again.

use crate::ports::{Store, StepWrite, StoreError};
use chrono::Duration as ChronoDuration;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use switchboard_models::{EventKind, Message, Sender, Timestamp, WebhookEvent};
use tokio_util::sync::CancellationToken;

/// `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" keyed by the webhook's secret>`.
pub const SIGNATURE_HEADER: &str = "Switchboard-Signature";
/// The event's name (`conversation.escalated`).
pub const EVENT_HEADER: &str = "Switchboard-Event";
/// The delivery's number: the same on every attempt, so a receiver can drop repeats.
pub const DELIVERY_HEADER: &str = "Switchboard-Delivery";
/// How old a signature a receiver should accept (the timestamp is signed with the body).
pub const REPLAY_WINDOW: ChronoDuration = ChronoDuration::minutes(5);
/// How much of a receiver's answer is kept in the delivery log.
pub const RESPONSE_KEPT: usize = 2_000;

const BATCH: u32 = 64;
const LEASE: ChronoDuration = ChronoDuration::seconds(60);
const IDLE_POLL: Duration = Duration::from_millis(500);

/// The events admins choose from (a `ping` goes to one webhook when asked, whatever it chose).
pub const CHOOSABLE: &[WebhookEvent] = &[
    WebhookEvent::ConversationCreated,
    WebhookEvent::ConversationEscalated,
    WebhookEvent::ConversationAssigned,
    WebhookEvent::ConversationResolved,
    WebhookEvent::ConversationReopened,
    WebhookEvent::ConversationClosed,
    WebhookEvent::MessageStored,
    WebhookEvent::RatingReceived,
];

/// One event to queue for every active webhook that wants its kind.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedEvent {
    pub kind: WebhookEvent,
    /// The same for every webhook told about this event.
    pub event_id: String,
    /// The JSON body posted: `{"id", "type", "created_at", "data"}`.
    pub payload: String,
}

impl QueuedEvent {
    pub fn new(kind: WebhookEvent, at: Timestamp, data: Value) -> Self {
        let event_id = uuid::Uuid::new_v4().to_string();
        let payload = json!({"id": event_id, "type": kind.as_str(), "created_at": at, "data": data}).to_string();
        Self { kind, event_id, payload }
    }
}

/// What a committed step tells webhooks: its conversation's history events, every message it
/// stored but agents' notes (`seq_of` gives the stored message's number), and a rating.
pub fn events_of(write: &StepWrite, seq_of: impl Fn(&Message) -> Option<i64>) -> Vec<QueuedEvent> {
    let conversation_event = |event: &&switchboard_models::ConversationEvent| -> Option<QueuedEvent> {
        let kind = match event.kind {
            EventKind::Created => WebhookEvent::ConversationCreated,
            EventKind::Escalated => WebhookEvent::ConversationEscalated,
            EventKind::Assigned => WebhookEvent::ConversationAssigned,
            EventKind::Resolved => WebhookEvent::ConversationResolved,
            EventKind::Reopened => WebhookEvent::ConversationReopened,
            EventKind::Closed => WebhookEvent::ConversationClosed,
            EventKind::FirstReply => return None,
        };
        let conversation = write.conversation.as_ref().filter(|c| c.id == event.conversation_id);
        let mut data = json!({
            "conversation_id": event.conversation_id,
            "channel": event.channel,
            "agent_id": event.agent_id,
            "category": event.category,
            "priority": event.priority,
            "reason": event.reason,
        });
        if let Some(conversation) = conversation {
            data["contact_id"] = json!(conversation.contact_id);
            data["status"] = json!(conversation.status);
            if kind == WebhookEvent::ConversationEscalated {
                data["summary"] = json!(conversation.escalation.as_ref().map(|e| &e.summary));
            }
        }
        Some(QueuedEvent::new(kind, event.at, data))
    };
    let message_stored = |message: &Message| QueuedEvent::new(WebhookEvent::MessageStored, message.created_at, json!({"message": message_data(message, seq_of(message))}));
    // A conversation's creation, the customer message that started or joined it, then what the
    // bot's step did: a step stored with its message tells them in the order two writes would.
    let (created, later): (Vec<_>, Vec<_>) = write.events.iter().partition(|e| e.kind == EventKind::Created);
    let mut events: Vec<QueuedEvent> = created.iter().filter_map(conversation_event).collect();
    events.extend(write.inbound.iter().map(message_stored));
    events.extend(later.iter().filter_map(conversation_event));
    events.extend(write.outbound.iter().map(message_stored));
    if let Some(feedback) = &write.feedback {
        let data = match &feedback.feedback {
            crate::step::Feedback::Rated { agent, resolved_at, score } => {
                json!({"conversation_id": feedback.conversation_id, "channel": feedback.channel, "agent_id": agent, "resolved_at": resolved_at, "score": score})
            }
            crate::step::Feedback::Commented { resolved_at, text } => {
                json!({"conversation_id": feedback.conversation_id, "channel": feedback.channel, "resolved_at": resolved_at, "comment": text})
            }
        };
        events.push(QueuedEvent::new(WebhookEvent::RatingReceived, feedback.at, data));
    }
    events
}

/// A message as webhooks see it: no storage keys, no model internals.
fn message_data(message: &Message, seq: Option<i64>) -> Value {
    let mut data = json!({
        "id": message.id,
        "seq": seq,
        "conversation_id": message.conversation_id,
        "contact_id": message.contact_id,
        "channel": message.channel,
        "sender": message.sender,
        "agent_id": message.agent_id,
        "text": message.text,
        "attachments": message.attachments.iter().filter(|a| !a.original)
            .map(|a| json!({"file_name": a.file_name, "content_type": a.content_type, "size": a.size})).collect::<Vec<_>>(),
        "created_at": message.created_at,
    });
    if message.sender == Sender::Customer
        && let Some(classification) = &message.classification
    {
        data["intent"] = json!(classification.intent.as_str());
        data["category"] = json!(classification.category);
        data["confidence"] = json!(classification.confidence);
    }
    data
}

/// The signature header's value for `body` sent at `at` (unix seconds).
pub fn signature(secret: &str, at: i64, body: &[u8]) -> String {
    format!("t={at},v1={}", hex::encode(mac(secret, at, body).finalize().into_bytes()))
}

/// The MAC of `"<at>.<body>"` keyed by the secret, before it is finished.
fn mac(secret: &str, at: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(at.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature header is not `t=<unix seconds>,v1=<hex>`")]
    Malformed,
    #[error("the signature was made {0} s away from now, outside the replay window")]
    OutsideWindow(i64),
    #[error("the signature does not match the body and the secret")]
    Mismatch,
}

/// Checks a received post as a receiver should: the signature matches the body and the secret,
/// and was made within `window` of `now` (a replayed old post is refused).
pub fn verify(secret: &str, header: &str, body: &[u8], now: Timestamp, window: ChronoDuration) -> Result<(), SignatureError> {
    let mut at = None;
    let mut given = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => at = value.parse::<i64>().ok(),
            Some(("v1", value)) => given = hex::decode(value).ok(),
            _ => {}
        }
    }
    let (Some(at), Some(given)) = (at, given) else { return Err(SignatureError::Malformed) };
    let skew = now.timestamp() - at;
    if skew.abs() > window.num_seconds() {
        return Err(SignatureError::OutsideWindow(skew));
    }
    mac(secret, at, body).verify_slice(&given).map_err(|_| SignatureError::Mismatch)
}

/// A new webhook's signing secret.
pub fn new_secret() -> String {
    format!("whsec_{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

/// How the worker retries and when it gives up (`[webhooks]`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WebhookRules {
    /// Attempts per delivery before it is given up.
    pub attempts: u32,
    /// The wait after the first failure; each next one doubles, up to an hour.
    pub first_retry: Duration,
    /// Failed attempts in a row (any deliveries) after which the webhook is turned off.
    pub turn_off_after: u32,
    /// How long the worker waits for a receiver's answer.
    pub timeout: Duration,
}

impl Default for WebhookRules {
    fn default() -> Self {
        Self { attempts: 10, first_retry: Duration::from_secs(10), turn_off_after: 50, timeout: Duration::from_secs(10) }
    }
}

impl WebhookRules {
    /// The wait before attempt `attempts + 1`, after `attempts` failed ones.
    pub fn retry_after(&self, attempts: u32) -> Duration {
        let doubled = self.first_retry.saturating_mul(1u32 << attempts.saturating_sub(1).min(16));
        doubled.min(Duration::from_secs(3600))
    }
}

/// How a receiver answered one post.
#[derive(Debug, Clone, PartialEq)]
pub enum PostOutcome {
    /// It answered with this status and body (2xx is success).
    Answered { status: u16, body: String },
    /// No answer: the connection failed or timed out.
    NoAnswer(String),
}

/// Posts one signed body (the HTTP client lives outside the core).
#[async_trait::async_trait]
pub trait WebhookPoster: Send + Sync {
    async fn post(&self, url: &str, headers: Vec<(&'static str, String)>, body: String, timeout: Duration) -> PostOutcome;
}

/// Posts queued deliveries: one webhook's in the order queued, webhooks in parallel.
pub struct WebhookWorker {
    store: Arc<dyn Store>,
    poster: Arc<dyn WebhookPoster>,
    rules: WebhookRules,
}

impl WebhookWorker {
    pub fn new(store: Arc<dyn Store>, poster: Arc<dyn WebhookPoster>, rules: WebhookRules) -> Self {
        Self { store, poster, rules }
    }

    /// Runs until `stop`; a post in flight finishes first.
    pub async fn run(self, stop: CancellationToken) {
        while !stop.is_cancelled() {
            match self.drain_once().await {
                Ok(claimed) if claimed >= BATCH as usize => continue,
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "webhook pass failed; retrying"),
            }
            tokio::select! {
                _ = tokio::time::sleep(IDLE_POLL) => {}
                _ = stop.cancelled() => {}
            }
        }
    }

    /// Claims one batch of due deliveries and posts them.
    pub async fn drain_once(&self) -> Result<usize, StoreError> {
        let now = chrono::Utc::now();
        let batch = self.store.claim_webhook_deliveries(now, now + LEASE, BATCH).await?;
        if batch.is_empty() {
            return Ok(0);
        }
        let claimed = batch.len();
        let webhooks: BTreeMap<String, crate::ports::Webhook> = self.store.webhooks().await?.into_iter().map(|w| (w.id.clone(), w)).collect();
        let mut by_webhook: BTreeMap<String, Vec<crate::ports::WebhookDelivery>> = BTreeMap::new();
        for delivery in batch {
            by_webhook.entry(delivery.webhook_id.clone()).or_default().push(delivery);
        }
        let posts = by_webhook.into_iter().filter_map(|(id, deliveries)| webhooks.get(&id).map(|webhook| self.post_in_order(webhook, deliveries)));
        for result in futures::future::join_all(posts).await {
            result?;
        }
        Ok(claimed)
    }

    async fn post_in_order(&self, webhook: &crate::ports::Webhook, deliveries: Vec<crate::ports::WebhookDelivery>) -> Result<(), StoreError> {
        for delivery in deliveries {
            let sent_at = chrono::Utc::now();
            let headers = vec![
                (SIGNATURE_HEADER, signature(&webhook.secret, sent_at.timestamp(), delivery.payload.as_bytes())),
                (EVENT_HEADER, delivery.event.as_str().to_string()),
                (DELIVERY_HEADER, delivery.id.to_string()),
            ];
            let outcome = self.poster.post(&webhook.url, headers, delivery.payload.clone(), self.rules.timeout).await;
            let attempts = delivery.attempts + 1;
            let (status, response, error) = match &outcome {
                PostOutcome::Answered { status, body } => {
                    let error = (!(200..300).contains(status)).then(|| format!("the receiver answered HTTP {status}"));
                    (Some(*status), Some(clipped(body)), error)
                }
                PostOutcome::NoAnswer(reason) => (None, None, Some(reason.clone())),
            };
            let next = match &error {
                None => crate::ports::AttemptOutcome::Delivered,
                Some(_) if attempts >= self.rules.attempts => crate::ports::AttemptOutcome::GaveUp,
                Some(_) => crate::ports::AttemptOutcome::RetryAt(
                    chrono::Utc::now() + ChronoDuration::from_std(self.rules.retry_after(attempts)).unwrap_or(ChronoDuration::hours(1)),
                ),
            };
            let label = match next {
                crate::ports::AttemptOutcome::Delivered => "delivered",
                crate::ports::AttemptOutcome::RetryAt(_) => "retry",
                crate::ports::AttemptOutcome::GaveUp => "failed",
            };
            metrics::counter!("switchboard_webhook_posts_total", "event" => delivery.event.as_str(), "outcome" => label).increment(1);
            let attempt = crate::ports::WebhookAttempt { delivery: delivery.id, webhook: webhook.id.clone(), at: sent_at, status, response, error: error.clone(), outcome: next };
            let failures = self.store.record_webhook_attempt(&attempt).await?;
            if let Some(error) = error {
                tracing::warn!(webhook = %webhook.id, url = %webhook.url, delivery = delivery.id, attempts, %error, "webhook post failed");
                if failures >= self.rules.turn_off_after {
                    let reason = format!("turned off after {failures} failed posts in a row; the last: {error}");
                    let notice = format!(
                        "The webhook to {} was turned off after {failures} failed posts in a row (the last: {error}). Its events wait; fix the receiver and turn it on again on the Webhooks page.",
                        webhook.url
                    );
                    if self.store.turn_off_webhook(&webhook.id, &reason, &notice, chrono::Utc::now()).await? {
                        tracing::error!(webhook = %webhook.id, url = %webhook.url, failures, "webhook turned off");
                    }
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

/// At most `RESPONSE_KEPT` bytes of a receiver's answer, cut at a character boundary.
fn clipped(body: &str) -> String {
    let mut end = body.len().min(RESPONSE_KEPT);
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    body[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_with_its_body_secret_and_time() {
        let now = chrono::Utc::now();
        let header = signature("whsec_a", now.timestamp(), b"{\"id\":1}");
        assert_eq!(verify("whsec_a", &header, b"{\"id\":1}", now, REPLAY_WINDOW), Ok(()));
        assert_eq!(verify("whsec_b", &header, b"{\"id\":1}", now, REPLAY_WINDOW), Err(SignatureError::Mismatch));
        assert_eq!(verify("whsec_a", &header, b"{\"id\":2}", now, REPLAY_WINDOW), Err(SignatureError::Mismatch));
        let later = now + ChronoDuration::minutes(6);
        assert!(matches!(verify("whsec_a", &header, b"{\"id\":1}", later, REPLAY_WINDOW), Err(SignatureError::OutsideWindow(_))));
        assert_eq!(verify("whsec_a", "v1=abc", b"", now, REPLAY_WINDOW), Err(SignatureError::Malformed));
    }

    #[test]
    fn retries_double_from_the_first_wait_up_to_an_hour() {
        let rules = WebhookRules { first_retry: Duration::from_secs(10), ..WebhookRules::default() };
        assert_eq!(rules.retry_after(1), Duration::from_secs(10));
        assert_eq!(rules.retry_after(2), Duration::from_secs(20));
        assert_eq!(rules.retry_after(4), Duration::from_secs(80));
        assert_eq!(rules.retry_after(30), Duration::from_secs(3600));
    }

    #[test]
    fn an_answer_is_kept_clipped_at_a_character_boundary() {
        let long = "é".repeat(RESPONSE_KEPT);
        let kept = clipped(&long);
        assert!(kept.len() <= RESPONSE_KEPT && kept.chars().all(|c| c == 'é'));
    }
}
