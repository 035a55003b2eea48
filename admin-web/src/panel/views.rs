//! Templates (handlebars, strict, auto-escaped) and the data shapes they are rendered with.

use crate::error::ApiError;
use axum::http::StatusCode;
use axum::response::Html;
use handlebars::Handlebars;
use serde_json::{Value, json};
use switchboard_core::ConversationSummary;
use switchboard_models::{Agent, Category, Channel, Conversation, Delivery, DeliveryState, Handler, Message, NotificationKind, Priority, Status};

pub struct Views {
    registry: Handlebars<'static>,
}

const TEMPLATES: &[(&str, &str)] = &[
    ("layout_header", include_str!("../../templates/layout_header.hbs")),
    ("layout_footer", include_str!("../../templates/layout_footer.hbs")),
    ("system", include_str!("../../templates/system.hbs")),
    ("login", include_str!("../../templates/login.hbs")),
    ("dashboard", include_str!("../../templates/dashboard.hbs")),
    ("conversations", include_str!("../../templates/conversations.hbs")),
    ("conversation", include_str!("../../templates/conversation.hbs")),
    ("canned", include_str!("../../templates/canned.hbs")),
    ("agents", include_str!("../../templates/agents.hbs")),
    ("audit", include_str!("../../templates/audit.hbs")),
    ("customers", include_str!("../../templates/customers.hbs")),
    ("documents", include_str!("../../templates/documents.hbs")),
    ("customer", include_str!("../../templates/customer.hbs")),
    ("document_card", include_str!("../../templates/document_card.hbs")),
    ("hours", include_str!("../../templates/hours.hbs")),
    ("reports", include_str!("../../templates/reports.hbs")),
    ("bot", include_str!("../../templates/bot.hbs")),
    ("intent", include_str!("../../templates/intent.hbs")),
    ("account", include_str!("../../templates/account.hbs")),
    ("login_code", include_str!("../../templates/login_code.hbs")),
    ("widget", include_str!("../../templates/widget.hbs")),
    ("settings_form", include_str!("../../templates/settings_form.hbs")),
    ("settings", include_str!("../../templates/settings.hbs")),
    ("webhooks", include_str!("../../templates/webhooks.hbs")),
    ("webhook", include_str!("../../templates/webhook.hbs")),
    ("reset_link", include_str!("../../templates/reset_link.hbs")),
    ("reset", include_str!("../../templates/reset.hbs")),
    ("tokens", include_str!("../../templates/tokens.hbs")),
    ("notifications", include_str!("../../templates/notifications.hbs")),
    ("error", include_str!("../../templates/error.hbs")),
];

impl Views {
    pub fn new() -> Self {
        let mut registry = Handlebars::new();
        registry.set_strict_mode(true);
        for (name, source) in TEMPLATES {
            registry.register_template_string(name, *source).expect("templates are valid");
        }
        Self { registry }
    }

    pub fn render(&self, name: &str, data: &Value) -> Result<Html<String>, ApiError> {
        self.registry.render(name, data).map(Html).map_err(|error| {
            tracing::error!(%error, template = name, "template failed");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "template", "The page could not be drawn; this is a bug.")
        })
    }
}

impl Default for Views {
    fn default() -> Self {
        Self::new()
    }
}

pub fn time(at: &chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%d %H:%M").to_string()
}

/// The nearest SLA due time as agents read it: "First reply due in 2 h", "Resolution overdue
/// 40 min"; with a class for its colour (`sla-overdue`, `sla-soon` within the hour, `sla-ok`).
pub fn sla(c: &Conversation, now: chrono::DateTime<chrono::Utc>) -> Option<(String, &'static str)> {
    let (what, due) = match (c.first_reply_due_at, c.resolution_due_at) {
        (Some(first), _) => ("First reply", first),
        (None, Some(resolution)) => ("Resolution", resolution),
        (None, None) => return None,
    };
    let span = |d: chrono::Duration| {
        let minutes = d.num_minutes().max(1);
        match minutes {
            m if m < 60 => format!("{m} min"),
            m if m < 48 * 60 => format!("{} h", (m + 30) / 60),
            m => format!("{} days", (m + 12 * 60) / (24 * 60)),
        }
    };
    Some(if due <= now {
        (format!("{what} overdue {}", span(now - due)), "sla-overdue")
    } else {
        let left = due - now;
        (format!("{what} due in {}", span(left)), if left <= chrono::Duration::hours(1) { "sla-soon" } else { "sla-ok" })
    })
}

pub fn notification_label(kind: NotificationKind) -> &'static str {
    match kind {
        NotificationKind::Assigned => "Assigned",
        NotificationKind::CustomerReplied => "Customer replied",
        NotificationKind::Mentioned => "Mentioned",
        NotificationKind::SlaWarning => "SLA warning",
        NotificationKind::SlaBreach => "SLA missed",
        NotificationKind::WebhookDisabled => "Webhook turned off",
        NotificationKind::InboundFailed => "Message set aside",
    }
}

pub fn status_label(status: Status) -> &'static str {
    match status {
        Status::Open => "Open",
        Status::Assigned => "Assigned",
        Status::InProgress => "In progress",
        Status::WaitingOnCustomer => "Waiting on customer",
        Status::Resolved => "Resolved",
        Status::Confirmed => "Confirmed by the customer",
        Status::Closed => "Closed",
        Status::Rejected => "Rejected",
    }
}

/// A conversation's escalations for its page (the list shows when there was more than one).
pub fn escalations(history: &[switchboard_models::EscalationRecord]) -> Value {
    json!({
        "more_than_one": history.len() > 1,
        "count": history.len(),
        "list": history.iter().map(|e| json!({
            "at": time(&e.at),
            "reason": e.reason.describe(),
            "priority": e.priority.map(|p| p.as_str()),
            "confidence": e.confidence.map(|c| format!("{:.0} %", c * 100.0)),
        })).collect::<Vec<_>>(),
    })
}

/// A customer's rating for the conversation page.
pub fn rating(rating: &switchboard_models::Rating, agents: &[Agent]) -> Value {
    let agent = rating.agent_id.and_then(|id| agents.iter().find(|a| a.id == id)).map(|a| a.name.clone());
    json!({"score": rating.score, "agent": agent, "at": time(&rating.created_at), "comment": rating.comment})
}

pub fn priority_class(priority: Option<Priority>) -> String {
    format!("prio-{}", priority.map(|p| p.as_str()).unwrap_or("none"))
}

pub fn handler_label(handler: Handler, agents: &[Agent]) -> String {
    match handler {
        Handler::Bot => "Bot".into(),
        Handler::Queue => "Queue".into(),
        Handler::Agent(id) => agents.iter().find(|a| a.id == id).map(|a| a.name.clone()).unwrap_or_else(|| "Agent".into()),
    }
}

fn short(text: Option<&str>) -> String {
    let text = text.unwrap_or_default().replace('\n', " ");
    if text.chars().count() > 90 { format!("{}…", text.chars().take(89).collect::<String>()) } else { text }
}

pub fn row(summary: &ConversationSummary, agents: &[Agent], now: chrono::DateTime<chrono::Utc>) -> Value {
    let c = &summary.conversation;
    let (sla, sla_class) = sla(c, now).map_or((None, None), |(text, class)| (Some(text), Some(class)));
    json!({
        // Set by `mark_unread` for the agent looking.
        "unread": 0,
        "sla": sla,
        "sla_class": sla_class,
        "id": c.id.to_string(),
        "priority": c.priority.map(|p| p.as_str()),
        "priority_class": priority_class(c.priority),
        "status": c.status.as_str(),
        "status_label": status_label(c.status),
        "channel": c.channel.as_str(),
        "category": c.category.map(|v| v.as_str()),
        "customer": summary.customer,
        "undelivered": summary.undelivered,
        "undelivered_label": undelivered_label(summary.undelivered),
        "unreachable": summary.customer_unreachable,
        "handler_label": handler_label(c.handler, agents),
        "last_text": short(summary.last_text.as_deref()),
        "updated_at": time(&summary.last_activity),
    })
}

/// A list row; in a search, with the newest matching message cut around its match and the
/// words marked (`matched`: pieces of text, `mark` on the matches).
pub fn search_row(
    summary: &ConversationSummary,
    agents: &[Agent],
    words: &[switchboard_core::search::SearchWord],
    now: chrono::DateTime<chrono::Utc>,
) -> Value {
    let mut row = row(summary, agents, now);
    if let Some(text) = summary.matched_text.as_deref().filter(|_| !words.is_empty()) {
        let pieces = switchboard_core::search::highlight(text, words, 90);
        row["matched"] = Value::Array(pieces.into_iter().map(|(text, mark)| json!({"text": text, "mark": mark})).collect());
    }
    row
}

/// "1,234 conversations", or for a search "1,234 found".
pub fn total_label(total: switchboard_core::ListTotal, search: bool) -> String {
    let noun = if total.count == 1 { "conversation" } else { "conversations" };
    let found = if search { " found" } else { "" };
    format!("{} {noun}{found}", count(total.count))
}

/// A number with thousands separated: 12,345.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

pub fn options<T: Copy + Into<&'static str>>(all: &[T], label: impl Fn(T) -> String) -> Value {
    Value::Array(all.iter().map(|v| json!({"value": (*v).into(), "label": label(*v)})).collect())
}

pub fn title_case(text: &str) -> String {
    let spaced = text.replace('_', " ");
    let mut chars = spaced.chars();
    chars.next().map(|c| c.to_uppercase().collect::<String>() + chars.as_str()).unwrap_or_default()
}

pub fn all_options(agents: &[Agent]) -> Value {
    json!({
        "statuses": options(Status::ALL, |s| status_label(s).into()),
        "priorities": options(Priority::ALL, |p| title_case(p.as_str())),
        "categories": options(Category::ALL, |c| title_case(c.as_str())),
        "channels": options(Channel::ALL, |c| title_case(c.as_str())),
        "agents": agents.iter().filter(|a| a.active).map(|a| json!({"value": a.id.to_string(), "label": a.name})).collect::<Vec<_>>(),
    })
}

pub fn message(message: &Message, conversation: &Conversation, customer: &str, agents: &[Agent]) -> Value {
    let sender_label = match message.sender {
        switchboard_models::Sender::Customer => customer.to_string(),
        switchboard_models::Sender::Bot => "Bot".into(),
        switchboard_models::Sender::System => "System".into(),
        switchboard_models::Sender::Agent => message
            .agent_id
            .and_then(|id| agents.iter().find(|a| a.id == id))
            .map(|a| a.name.clone())
            .unwrap_or_else(|| "Agent".into()),
    };
    json!({
        "seq": message.seq,
        "sender": message.sender.as_str(),
        "sender_label": sender_label,
        "text": message.text,
        "at": time(&message.created_at),
        "internal": message.internal,
        "classification": message.classification.as_ref().map(|c| json!({
            "intent": c.intent.as_str(),
            "category": c.category.as_str(),
            "language": c.language,
            "source": format!("{:?}", c.source).to_lowercase(),
            "alternatives": c.alternatives.iter().map(|a| json!({"intent": a.intent.as_str(), "confidence": format!("{:.2}", a.confidence)})).collect::<Vec<_>>(),
            "confidence": format!("{:.2}", c.confidence),
            "sentiment": format!("{:.2}", c.sentiment),
            "urgency": format!("{:?}", c.urgency).to_lowercase(),
        })),
        "delivery": message.delivery.as_ref().map(delivery),
        "attachments": message.attachments.iter().map(|a| json!({
            "name": a.file_name,
            "url": format!("/panel/conversations/{}/attachments/{}", conversation.id, a.key),
            "is_image": a.is_image(),
        })).collect::<Vec<_>>(),
    })
}


/// What the conversation page says after an action, and which field gets focus back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActionDone {
    pub confirmation: &'static str,
    /// The id of the element the agent most likely wants next.
    pub focus: &'static str,
}

pub fn action_done(action: &str) -> Option<ActionDone> {
    let (confirmation, focus) = match action {
        "reply" => ("Reply sent.", "reply-text"),
        "note" => ("Note added.", "note-text"),
        "take" => ("You took this conversation.", "reply-text"),
        "release" => ("Released to the queue.", "reply-text"),
        "handback" => ("Handed back to the bot.", "reply-text"),
        "status" => ("Status changed.", "set-status"),
        "priority" => ("Priority changed.", "set-priority"),
        "category" => ("Category changed.", "set-category"),
        "assign" => ("Assigned.", "assign-agent"),
        "retry" => ("The reply will be sent again now.", "reply-text"),
        "reopen" => ("Reopened: the conversation is yours again.", "reply-text"),
        "approved" => ("Document approved; the customer was told.", "reply-text"),
        "rejected" => ("Document rejected; the customer was told why.", "reply-text"),
        _ => return None,
    };
    Some(ActionDone { confirmation, focus })
}

/// "1 reply not delivered", or nothing.
pub fn undelivered_label(count: u32) -> String {
    match count {
        0 => String::new(),
        1 => "1 reply not delivered".into(),
        n => format!("{n} replies not delivered"),
    }
}

/// A reply's delivery as the conversation page shows it, discreetly unless it failed.
fn delivery(d: &Delivery) -> Value {
    let at = |t: Option<chrono::DateTime<chrono::Utc>>| t.map(|t| t.format("%H:%M").to_string()).unwrap_or_default();
    let label = match d.state {
        DeliveryState::Queued => "Queued".to_string(),
        DeliveryState::Retrying => format!("Retrying (attempt {}, next at {})", d.attempts + 1, at(d.next_attempt_at)),
        DeliveryState::Sent => format!("Sent {}", at(d.sent_at)),
        DeliveryState::Seen => format!("Seen {}", at(d.seen_at)),
        DeliveryState::Failed => format!("Not delivered {}", at(d.failed_at)),
    };
    json!({
        "state": d.state.as_str(),
        "label": label,
        "reason": if matches!(d.state, DeliveryState::Failed | DeliveryState::Retrying) { d.error.clone() } else { None },
        "failed": d.state == DeliveryState::Failed,
        "can_retry": matches!(d.state, DeliveryState::Failed | DeliveryState::Retrying),
    })
}

/// A waiting time as people say it: "45 s", "12 min", "3 h 5 min", "2 d 4 h".
pub fn wait(waited: chrono::Duration) -> String {
    let seconds = waited.num_seconds().max(0);
    match seconds {
        s if s < 60 => format!("{s} s"),
        s if s < 3600 => format!("{} min", s / 60),
        s if s < 86_400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        s => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::wait;
    use chrono::Duration;

    #[test]
    fn waits_read_as_people_say_them() {
        assert_eq!(wait(Duration::seconds(45)), "45 s");
        assert_eq!(wait(Duration::seconds(12 * 60 + 30)), "12 min");
        assert_eq!(wait(Duration::minutes(185)), "3 h 5 min");
        assert_eq!(wait(Duration::hours(52)), "2 d 4 h");
        assert_eq!(wait(Duration::seconds(-3)), "0 s", "clock skew never shows a negative wait");
    }
}

/// A channel's name for people.
pub fn channel_label(channel: switchboard_models::Channel) -> &'static str {
    match channel {
        switchboard_models::Channel::WebChat => "Web chat",
        switchboard_models::Channel::Telegram => "Telegram",
        switchboard_models::Channel::Discord => "Discord",
        switchboard_models::Channel::Email => "Email",
    }
}
