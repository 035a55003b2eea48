//! The engine's side of outbound webhooks as admins manage them: added, changed, turned on and
//! off, deleted (each audited), a test post queued, a delivery sent again.

use super::{Engine, EngineError};
use crate::ports::{AdminWrite, Webhook, WebhookChange};
use crate::webhooks::QueuedEvent;
use serde_json::json;
use switchboard_models::{Agent, AuditAction, AuditEntry, Role, WebhookEvent};

const MAX_URL: usize = 2_000;
const MAX_DESCRIPTION: usize = 200;

/// What an admin asks of a webhook; `None` keeps the field (all but `url` and `events` may be
/// left out when adding).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WebhookEdit {
    pub url: Option<String>,
    pub events: Option<Vec<WebhookEvent>>,
    pub active: Option<bool>,
    pub description: Option<String>,
    /// A new signing secret (the old one stops working at once).
    pub new_secret: bool,
}

/// An absolute http(s) URL with a host, or why not.
pub fn check_url(url: &str) -> Result<(), String> {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    let Some(rest) = rest else {
        return Err(format!("`{}` is not an http:// or https:// URL", shortened(url)));
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || host.starts_with(':') {
        return Err(format!("`{}` names no host", shortened(url)));
    }
    if url.len() > MAX_URL || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("the URL must be one line without spaces, at most {MAX_URL} characters"));
    }
    Ok(())
}

/// A URL as an error may repeat it.
fn shortened(url: &str) -> String {
    match url.char_indices().nth(60) {
        Some((end, _)) => format!("{}…", &url[..end]),
        None => url.to_string(),
    }
}

fn admin_only(by: &Agent) -> Result<(), EngineError> {
    match by.role {
        Role::Admin => Ok(()),
        Role::Agent => Err(EngineError::Forbidden("only admins manage webhooks".into())),
    }
}

/// What the audit log says of a webhook: its address, events and whether it is on.
fn described(webhook: &Webhook) -> String {
    let events: Vec<&str> = webhook.events.iter().map(|e| e.as_str()).collect();
    format!("{} [{}]{}", webhook.url, events.join(", "), if webhook.active { "" } else { " (off)" })
}

impl Engine {
    /// Every webhook, oldest first.
    pub async fn webhooks(&self, by: &Agent) -> Result<Vec<Webhook>, EngineError> {
        admin_only(by)?;
        Ok(self.store.webhooks().await?)
    }

    pub async fn webhook(&self, id: &str, by: &Agent) -> Result<Webhook, EngineError> {
        self.webhooks(by).await?.into_iter().find(|w| w.id == id).ok_or(EngineError::NotFound("webhook"))
    }

    /// Adds a webhook (`id: None`; it gets a new secret) or changes one; audited. Turning a
    /// webhook on again forgets its failures, and its waiting deliveries are posted.
    pub async fn save_webhook(&self, id: Option<&str>, edit: WebhookEdit, by: &Agent) -> Result<Webhook, EngineError> {
        admin_only(by)?;
        let now = self.clock.now();
        let before = match id {
            Some(id) => Some(self.webhook(id, by).await?),
            None => None,
        };
        let mut webhook = before.clone().unwrap_or_else(|| Webhook {
            id: uuid::Uuid::new_v4().to_string(),
            url: String::new(),
            events: Vec::new(),
            secret: crate::webhooks::new_secret(),
            active: true,
            description: String::new(),
            consecutive_failures: 0,
            disabled_reason: None,
            created_by: Some(by.id),
            created_at: now,
            updated_at: now,
        });
        if let Some(url) = edit.url {
            webhook.url = url.trim().to_string();
        }
        check_url(&webhook.url).map_err(|problem| EngineError::Invalid(format!("url: {problem}")))?;
        if let Some(mut events) = edit.events {
            events.sort();
            events.dedup();
            webhook.events = events;
        }
        if webhook.events.is_empty() {
            let known: Vec<&str> = crate::webhooks::CHOOSABLE.iter().map(|e| e.as_str()).collect();
            return Err(EngineError::Invalid(format!("events: choose at least one of: {}", known.join(", "))));
        }
        if let Some(description) = edit.description {
            webhook.description = description.trim().to_string();
        }
        if webhook.description.chars().count() > MAX_DESCRIPTION {
            return Err(EngineError::Invalid(format!("description: at most {MAX_DESCRIPTION} characters")));
        }
        if let Some(active) = edit.active {
            webhook.active = active;
        }
        if edit.new_secret {
            webhook.secret = crate::webhooks::new_secret();
        }
        webhook.updated_at = now;
        let audit = AuditEntry {
            at: now,
            actor: Some(by.id),
            action: AuditAction::Webhook,
            conversation: None,
            subject_agent: None,
            before: before.as_ref().map(described),
            after: Some(described(&webhook) + if edit.new_secret && before.is_some() { " (new secret)" } else { "" }),
        };
        let write = AdminWrite { webhook: Some(WebhookChange::Save(webhook.clone())), audit: vec![audit], ..AdminWrite::default() };
        self.store.commit_admin(write).await?;
        self.webhook(&webhook.id, by).await
    }

    /// Deletes a webhook and its delivery log; audited.
    pub async fn delete_webhook(&self, id: &str, by: &Agent) -> Result<(), EngineError> {
        let webhook = self.webhook(id, by).await?;
        let audit = AuditEntry {
            at: self.clock.now(),
            actor: Some(by.id),
            action: AuditAction::Webhook,
            conversation: None,
            subject_agent: None,
            before: Some(described(&webhook)),
            after: Some("deleted".into()),
        };
        let write = AdminWrite { webhook: Some(WebhookChange::Delete(webhook.id)), audit: vec![audit], ..AdminWrite::default() };
        Ok(self.store.commit_admin(write).await?)
    }

    /// Queues a `ping` for one webhook, whatever events it chose; returns the event's id.
    pub async fn ping_webhook(&self, id: &str, by: &Agent) -> Result<String, EngineError> {
        let webhook = self.webhook(id, by).await?;
        if !webhook.active {
            return Err(EngineError::Conflict("the webhook is off; turn it on to send a test post".into()));
        }
        let now = self.clock.now();
        let event = QueuedEvent::new(WebhookEvent::Ping, now, json!({"webhook_id": webhook.id, "by": by.id}));
        self.store.queue_webhook_event(&webhook.id, &event, now).await?;
        Ok(event.event_id)
    }

    /// Sends a delivered or given-up delivery again.
    pub async fn retry_webhook_delivery(&self, webhook: &str, delivery: i64, by: &Agent) -> Result<(), EngineError> {
        let webhook = self.webhook(webhook, by).await?;
        match self.store.retry_webhook_delivery(&webhook.id, delivery, self.clock.now()).await? {
            true => Ok(()),
            false => Err(EngineError::NotFound("webhook delivery to send again")),
        }
    }
}
