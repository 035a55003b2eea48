//! Escalation and priority rules, and the bot's fixed wording. Plain data handed to `step`.

use crate::hours::BusinessHours;
use serde::{Deserialize, Serialize};
use switchboard_models::{Category, Channel, Classification, IntentName, Priority, Timestamp, Urgency};

/// An admin's rule: when every condition given holds, the ticket gets at least `priority`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriorityRule {
    /// Any of these words or phrases in the message (case-insensitive, whole words).
    #[serde(default)]
    pub words: Vec<String>,
    #[serde(default)]
    pub category: Option<Category>,
    #[serde(default)]
    pub intent: Option<IntentName>,
    pub priority: Priority,
}

impl PriorityRule {
    fn matches(&self, category: Category, classification: &Classification, text: &str) -> bool {
        let words_hold = self.words.is_empty() || {
            let lower = format!(" {} ", normalise(text));
            self.words.iter().any(|w| lower.contains(&format!(" {} ", normalise(w))))
        };
        words_hold
            && self.category.is_none_or(|c| c == category)
            && self.intent.as_ref().is_none_or(|i| *i == classification.intent)
    }
}

/// Lowercase words separated by single spaces, punctuation dropped.
fn normalise(text: &str) -> String {
    text.to_lowercase()
        .split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Below this confidence the bot is unsure of the intent.
    pub low_confidence_threshold: f32,
    /// Unsure answers in a row before escalating (the first ones get a clarifying question).
    pub low_confidence_escalate_after: u32,
    /// Sentiment at or below this escalates at once (when the classifier makes no judgement).
    pub negative_sentiment_threshold: f32,
    /// The judgement's likelihood that a person should take over, at or above which the bot
    /// hands over at once.
    pub escalate_at_least: f32,
    pub clarifying_question: String,
    /// Said to a message the judgement finds off topic (a film tip, homework): what the bot is
    /// for, rather than asking to rephrase something that was clear.
    pub off_topic_reply: String,
    pub clarifying_quick_replies: Vec<String>,
    /// Told on escalation when agents are online; `{position}` is the place in the queue.
    pub handoff_queued: String,
    /// Told on escalation when no agent is online.
    pub handoff_offline: String,
    /// A customer writing while queued is told their place and expected wait, at most this
    /// often (`None`: never).
    pub waiting_notice_every: Option<std::time::Duration>,
    /// `{position}` in the queue and `{expected_wait}` ("about 15 minutes").
    pub waiting_notice: String,
    /// The same outside business hours: `{position}` and `{next_open}`.
    pub waiting_notice_closed: String,
    /// When the team works; `None` is always open.
    pub hours: Option<BusinessHours>,
    /// Channels whose team works other hours (`None`: always open on that channel).
    pub channel_hours: Vec<(Channel, Option<BusinessHours>)>,
    /// Told on escalation outside business hours; `{next_open}` is when the team is back
    /// ("Monday 09:00 CET"), `{business_hours}` the weekly schedule.
    pub handoff_closed: String,
    /// Added to the closed handoff on channels without a reply address (all but email), when
    /// admins want customers asked for an email address to be answered later.
    pub ask_email_outside_hours: Option<String>,
    /// Said when a queued customer, asked for it, leaves an email address; `{email}` is it.
    pub email_noted: String,
    /// Checked after the built-in priority; each matching rule can only raise it.
    pub priority_rules: Vec<PriorityRule>,
    /// Whether an agent may take (or be given) a conversation beyond their capacity by hand: an
    /// override, audited and warned about. Automatic assignment never goes past it.
    pub allow_over_capacity: bool,
    /// How long conversations may stay quiet before the bot reminds, resolves or closes them.
    pub quiet: crate::timers::QuietRules,
    /// How soon escalated conversations are owed a first reply and a resolution.
    pub sla: crate::sla::SlaPolicy,
    /// Notifications of these kinds are also mailed to their agent (none without email).
    pub mailed_notices: Vec<switchboard_models::NotificationKind>,
    /// What the bot asks and says once agents are done: confirmation, rating, notices.
    pub closing: crate::closing::ClosingPolicy,
    /// Which files wait for review, their types, and what the customer is told of a decision.
    pub documents: crate::documents::DocumentPolicy,
    /// The bot's own texts above in other languages (`[bot.languages.de]`), by ISO 639-1 code
    /// and the name of the text; a text a language leaves out is said as above.
    pub languages: crate::closing::Languages,
}

/// The bot's texts a language may replace (`[bot.languages.<code>]`).
pub const BOT_TEXTS: &[&str] = &[
    "clarifying_question", "off_topic_reply", "handoff_queued", "handoff_offline", "handoff_closed", "waiting_notice", "waiting_notice_closed",
    "ask_email", "email_noted", "waiting_reminder", "waiting_resolved",
];

impl Default for Policy {
    fn default() -> Self {
        Self {
            low_confidence_threshold: 0.5,
            low_confidence_escalate_after: 2,
            negative_sentiment_threshold: -0.6,
            escalate_at_least: 0.5,
            off_topic_reply: "I'm the support assistant, so I can't help with that one. Is there something about \
                              your order, account or billing I can do for you?"
                .to_string(),
            clarifying_question: "Sorry, I'm not sure I understood. Could you put it another way, \
                                  or pick a topic below?"
                .to_string(),
            clarifying_quick_replies: vec![
                "Billing".to_string(),
                "Technical problem".to_string(),
                "My account".to_string(),
                "Talk to a person".to_string(),
            ],
            handoff_queued: "I've handed your conversation to our team. You're number {position} \
                             in the queue; an agent will reply here."
                .to_string(),
            handoff_offline: "I've handed your conversation to our team. Nobody is online right \
                              now, so we'll get back to you here as soon as someone is available."
                .to_string(),
            waiting_notice_every: Some(std::time::Duration::from_secs(10 * 60)),
            waiting_notice: "Thanks, your message is with the team. You're number {position} in the queue; \
                             the expected wait is {expected_wait}."
                .to_string(),
            waiting_notice_closed: "Thanks, your message is with the team. You're number {position} in the \
                                    queue; we're closed right now and back {next_open}."
                .to_string(),
            hours: None,
            channel_hours: Vec::new(),
            handoff_closed: "I've handed your conversation to our team. We're closed right now and back \
                             {next_open}; an agent will reply here then."
                .to_string(),
            ask_email_outside_hours: None,
            email_noted: "Thanks, we've noted {email}. The team will get back to you as soon as they're back.".to_string(),
            priority_rules: Vec::new(),
            allow_over_capacity: true,
            quiet: crate::timers::QuietRules::default(),
            mailed_notices: Vec::new(),
            sla: crate::sla::SlaPolicy::default(),
            closing: crate::closing::ClosingPolicy::default(),
            documents: crate::documents::DocumentPolicy::default(),
            languages: crate::closing::Languages::new(),
        }
    }
}

/// How many conversations wait and how many agents could take them, when a handoff is worded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueView {
    /// Escalated conversations waiting for an agent.
    pub waiting: u32,
    pub agents_online: u32,
}

/// What a customer may be told of business hours in a bot answer or handoff.
pub const BUSINESS_HOURS_FIELD: &str = "{{business_hours}}";
pub const NEXT_OPEN_FIELD: &str = "{{next_open}}";
/// The customer's name in a bot answer ("there" when they gave none: "Hi there!").
pub const CUSTOMER_NAME_FIELD: &str = "{{customer.name}}";
/// The channel the customer writes on, as they know it ("Telegram", "the web chat").
pub const CHANNEL_FIELD: &str = "{{channel}}";

/// A bot answer with `{{customer.name}}` and `{{channel}}` filled in.
pub fn fill_customer(text: String, name: Option<&str>, channel: Channel) -> String {
    if !text.contains(CUSTOMER_NAME_FIELD) && !text.contains(CHANNEL_FIELD) {
        return text;
    }
    let name = name.map(str::trim).filter(|n| !n.is_empty()).unwrap_or("there");
    let channel = match channel {
        Channel::WebChat => "the web chat",
        Channel::Telegram => "Telegram",
        Channel::Discord => "Discord",
        Channel::Email => "email",
    };
    text.replace(CUSTOMER_NAME_FIELD, name).replace(CHANNEL_FIELD, channel)
}

impl Policy {
    /// This policy with the texts of `language` (ISO 639-1) where they are configured.
    pub fn in_language(&self, language: Option<&str>) -> std::borrow::Cow<'_, Policy> {
        use std::borrow::Cow;
        let own = language.and_then(|code| self.languages.get(code));
        let mut localized = match (self.closing.in_language(language), self.documents.in_language(language), own) {
            (Cow::Borrowed(_), Cow::Borrowed(_), None) => return Cow::Borrowed(self),
            (closing, documents, _) => Policy { closing: closing.into_owned(), documents: documents.into_owned(), ..self.clone() },
        };
        for (name, text) in own.into_iter().flatten() {
            let field = match name.as_str() {
                "clarifying_question" => &mut localized.clarifying_question,
                "off_topic_reply" => &mut localized.off_topic_reply,
                "handoff_queued" => &mut localized.handoff_queued,
                "handoff_offline" => &mut localized.handoff_offline,
                "handoff_closed" => &mut localized.handoff_closed,
                "waiting_notice" => &mut localized.waiting_notice,
                "waiting_notice_closed" => &mut localized.waiting_notice_closed,
                "email_noted" => &mut localized.email_noted,
                "waiting_reminder" => &mut localized.quiet.waiting_reminder,
                "waiting_resolved" => &mut localized.quiet.waiting_resolved,
                "ask_email" => match &mut localized.ask_email_outside_hours {
                    Some(ask) => ask,
                    None => continue,
                },
                _ => continue,
            };
            field.clone_from(text);
        }
        Cow::Owned(localized)
    }

    /// The first problem with `[bot.languages]`, as (key, what is wrong).
    pub fn languages_problem(&self) -> Option<(String, String)> {
        crate::closing::check_languages("bot", &self.languages, BOT_TEXTS)
    }

    /// When the team answering `channel` works (`None`: always).
    pub fn hours_for(&self, channel: Channel) -> Option<&BusinessHours> {
        match self.channel_hours.iter().find(|(c, _)| *c == channel) {
            Some((_, hours)) => hours.as_ref(),
            None => self.hours.as_ref(),
        }
    }

    /// What a customer on `channel` joining the queue described by `queue` at `now` is told.
    pub fn handoff_text(&self, queue: QueueView, now: Timestamp, channel: Channel) -> String {
        if let Some(hours) = self.hours_for(channel).filter(|hours| !hours.is_open(now)) {
            let next_open = hours.describe_next_open(now).unwrap_or_else(|| "as soon as someone is available".into());
            let mut text = self.handoff_closed.replace("{next_open}", &next_open).replace("{business_hours}", &hours.summary());
            if let Some(ask) = self.ask_email_outside_hours.as_ref().filter(|_| channel != Channel::Email) {
                text.push(' ');
                text.push_str(ask);
            }
            return text;
        }
        if queue.agents_online == 0 {
            self.handoff_offline.clone()
        } else {
            self.handoff_queued.replace("{position}", &(queue.waiting + 1).to_string())
        }
    }

    /// What a customer at `position` in the queue is told when they write again; `typical_wait`
    /// is how long recent customers waited for a first reply, if any did.
    pub fn waiting_text(&self, position: u32, typical_wait: Option<chrono::Duration>, now: Timestamp, channel: Channel) -> String {
        if let Some(hours) = self.hours_for(channel).filter(|hours| !hours.is_open(now)) {
            let next_open = hours.describe_next_open(now).unwrap_or_else(|| "as soon as someone is available".into());
            return self.waiting_notice_closed.replace("{position}", &position.to_string()).replace("{next_open}", &next_open);
        }
        let expected = match typical_wait.map(|wait| wait.num_minutes().max(1)) {
            None => "not known yet".to_string(),
            Some(1) => "about a minute".to_string(),
            Some(minutes) if minutes < 90 => format!("about {minutes} minutes"),
            Some(minutes) => format!("about {} hours", (minutes + 30) / 60),
        };
        self.waiting_notice.replace("{position}", &position.to_string()).replace("{expected_wait}", &expected)
    }

    /// A bot answer with `{{business_hours}}` (the weekly schedule) and `{{next_open}}` (when the
    /// team is back, "now" while open) filled in for `now`; without business hours the team is
    /// always there.
    pub fn fill_hours(&self, text: String, now: Timestamp, channel: Channel) -> String {
        if !text.contains(BUSINESS_HOURS_FIELD) && !text.contains(NEXT_OPEN_FIELD) {
            return text;
        }
        let (schedule, next_open) = match self.hours_for(channel) {
            Some(hours) if hours.is_open(now) => (hours.summary(), "now".to_string()),
            Some(hours) => (hours.summary(), hours.describe_next_open(now).unwrap_or_else(|| "as soon as someone is available".into())),
            None => ("around the clock".to_string(), "now".to_string()),
        };
        text.replace(BUSINESS_HOURS_FIELD, &schedule).replace(NEXT_OPEN_FIELD, &next_open)
    }
}

/// Priority from category, raised by tone and urgency, then by the admin's rules.
pub fn priority_for(category: Category, classification: &Classification, text: &str, rules: &[PriorityRule]) -> Priority {
    let built_in = built_in_priority(category, classification);
    rules
        .iter()
        .filter(|rule| rule.matches(category, classification, text))
        // Priority orders from most to least urgent: the most urgent is the smallest.
        .fold(built_in, |p, rule| p.min(rule.priority))
}

fn built_in_priority(category: Category, classification: &Classification) -> Priority {
    if let Some(judgement) = &classification.judgement {
        return judgement.priority;
    }
    let base = match category {
        Category::Complaint => Priority::High,
        Category::Billing | Category::TechnicalSupport | Category::Account => Priority::Medium,
        Category::GeneralInquiry | Category::FeatureRequest => Priority::Low,
    };
    if classification.urgency == Urgency::Critical {
        return Priority::Urgent;
    }
    let mut raise = 0;
    if classification.urgency == Urgency::Elevated {
        raise += 1;
    }
    if classification.sentiment <= -0.5 {
        raise += 1;
    }
    (0..raise).fold(base, |p, _| raised(p))
}

pub(crate) fn raised(priority: Priority) -> Priority {
    match priority {
        Priority::Low => Priority::Medium,
        Priority::Medium => Priority::High,
        Priority::High | Priority::Urgent => Priority::Urgent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_models::ClassificationSource;

    #[test]
    fn answers_greet_the_customer_by_name_on_their_channel() {
        let answer = || "Hi {{customer.name}}, thanks for writing on {{channel}}.".to_string();
        assert_eq!(fill_customer(answer(), Some("Dana"), Channel::Telegram), "Hi Dana, thanks for writing on Telegram.");
        assert_eq!(fill_customer(answer(), Some("  "), Channel::WebChat), "Hi there, thanks for writing on the web chat.");
        assert_eq!(fill_customer("No fields.".into(), None, Channel::Email), "No fields.");
    }

    fn said(intent: &str, sentiment: f32, urgency: Urgency) -> Classification {
        Classification {
            intent: IntentName::parse(intent).unwrap(),
            category: Category::Billing,
            confidence: 0.9,
            alternatives: Vec::new(),
            sentiment,
            urgency,
            language: None,
            answer: None,
            always_escalate: false,
            collect_document: None,
            source: ClassificationSource::Model,
            judgement: None,
            embedding: None,
        }
    }

    #[test]
    fn category_tone_and_urgency_set_the_priority() {
        let calm = said("invoice_copy", 0.0, Urgency::None);
        assert_eq!(priority_for(Category::Billing, &calm, "", &[]), Priority::Medium);
        assert_eq!(priority_for(Category::FeatureRequest, &calm, "", &[]), Priority::Low);
        assert_eq!(priority_for(Category::Complaint, &calm, "", &[]), Priority::High);
        let angry = said("invoice_copy", -0.8, Urgency::Elevated);
        assert_eq!(priority_for(Category::Billing, &angry, "", &[]), Priority::Urgent);
        let critical = said("invoice_copy", 0.0, Urgency::Critical);
        assert_eq!(priority_for(Category::FeatureRequest, &critical, "", &[]), Priority::Urgent);
    }

    #[test]
    fn rules_only_raise_and_need_every_condition() {
        let rules: Vec<PriorityRule> = toml::from_str::<toml::Value>(
            r#"
            [[r]]
            words = ["chargeback", "bank dispute"]
            priority = "urgent"
            [[r]]
            category = "billing"
            intent = "invoice_copy"
            priority = "high"
            [[r]]
            words = ["whenever"]
            priority = "low"
            "#,
        )
        .unwrap()["r"]
            .clone()
            .try_into()
            .unwrap();
        let calm = said("invoice_copy", 0.0, Urgency::None);
        assert_eq!(priority_for(Category::Billing, &calm, "I opened a bank dispute.", &rules), Priority::Urgent);
        assert_eq!(priority_for(Category::Billing, &calm, "Send the invoice", &rules), Priority::High);
        assert_eq!(priority_for(Category::Account, &calm, "Send the invoice", &rules), Priority::Medium);
        // "bank" alone is not the phrase; a low rule never lowers.
        assert_eq!(priority_for(Category::Account, &calm, "my bank, whenever", &rules), Priority::Medium);
    }

    #[test]
    fn answers_and_handoffs_say_when_the_team_is_back() {
        let days: Vec<(String, String)> = ["monday", "tuesday", "wednesday", "thursday", "friday"].iter().map(|d| (d.to_string(), "09:00-17:00".to_string())).collect();
        let hours = crate::hours::BusinessHours::parse("business_hours", "Europe/Berlin", &days, &[]).unwrap();
        let policy = Policy { hours: Some(hours), ask_email_outside_hours: Some("Leave your email.".into()), ..Policy::default() };
        let saturday: Timestamp = "2026-12-05T12:00:00Z".parse().unwrap();
        let monday: Timestamp = "2026-12-07T09:00:00Z".parse().unwrap();
        let answer = "We answer {{business_hours}}; next: {{next_open}}.".to_string();
        assert_eq!(policy.fill_hours(answer.clone(), saturday, Channel::WebChat), "We answer Monday–Friday 09:00–17:00 (Europe/Berlin); next: Monday 09:00 CET.");
        assert_eq!(policy.fill_hours(answer.clone(), monday, Channel::WebChat), "We answer Monday–Friday 09:00–17:00 (Europe/Berlin); next: now.");
        assert_eq!(Policy::default().fill_hours(answer.clone(), saturday, Channel::WebChat), "We answer around the clock; next: now.", "no business hours: always there");
        let queue = QueueView { waiting: 2, agents_online: 1 };
        let closed = policy.handoff_text(queue, saturday, Channel::WebChat);
        assert!(closed.contains("back Monday 09:00 CET") && closed.ends_with("Leave your email."), "{closed}");
        assert!(!policy.handoff_text(queue, saturday, Channel::Email).contains("Leave your email."), "an email customer has an address already");
        assert!(policy.handoff_text(queue, monday, Channel::WebChat).contains("number 3"), "open: the queue's wording");

        // Email is answered around the clock by another team; Telegram keeps the default hours.
        let policy = Policy { channel_hours: vec![(Channel::Email, None)], ..policy };
        assert!(policy.handoff_text(queue, saturday, Channel::Email).contains("number 3"), "email: always open");
        assert_eq!(policy.fill_hours(answer, saturday, Channel::Email), "We answer around the clock; next: now.");
        assert!(policy.handoff_text(queue, saturday, Channel::Telegram).contains("back Monday 09:00 CET"));
    }

    #[test]
    fn the_waiting_notice_gives_the_place_and_a_rounded_wait() {
        let policy = Policy::default();
        let now: Timestamp = "2026-12-03T12:00:00Z".parse().unwrap();
        let told = |wait| policy.waiting_text(2, wait, now, Channel::Telegram);
        assert!(told(None).ends_with("number 2 in the queue; the expected wait is not known yet."), "{}", told(None));
        assert!(told(Some(chrono::Duration::seconds(20))).ends_with("about a minute."));
        assert!(told(Some(chrono::Duration::minutes(25))).ends_with("about 25 minutes."));
        assert!(told(Some(chrono::Duration::minutes(150))).ends_with("about 3 hours."));
    }

    #[test]
    fn the_bot_says_its_own_texts_in_a_configured_language_and_unknown_names_are_refused() {
        let mut policy = Policy::default();
        policy.languages.insert("de".into(), [("handoff_offline".to_string(), "Gerade ist niemand da.".to_string())].into());
        let german = policy.in_language(Some("de"));
        assert_eq!(german.handoff_offline, "Gerade ist niemand da.");
        assert_eq!(german.handoff_queued, policy.handoff_queued, "a text the language leaves out is said as configured");
        assert!(matches!(policy.in_language(Some("fr")), std::borrow::Cow::Borrowed(_)));
        assert!(policy.languages_problem().is_none());
        policy.languages.insert("de".into(), [("handoff_offlin".to_string(), "?".to_string())].into());
        let (key, problem) = policy.languages_problem().unwrap();
        assert_eq!(key, "bot.languages.de.handoff_offlin");
        assert!(problem.contains("handoff_offline"), "{problem}");
    }

}
