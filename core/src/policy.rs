//! Escalation and priority rules, and the bot's fixed wording. Plain data handed to `step`.

use serde::{Deserialize, Serialize};
use switchboard_models::{Category, Classification, IntentName, Priority, Urgency};

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
    /// Sentiment at or below this escalates at once.
    pub negative_sentiment_threshold: f32,
    pub clarifying_question: String,
    pub clarifying_quick_replies: Vec<String>,
    /// Told on escalation when agents are online; `{position}` is the place in the queue.
    pub handoff_queued: String,
    /// Told on escalation when no agent is online.
    pub handoff_offline: String,
    /// Checked after the built-in priority; each matching rule can only raise it.
    pub priority_rules: Vec<PriorityRule>,
    /// Whether an agent may take (or be given) a conversation beyond their capacity by hand: an
    /// override, audited and warned about. Automatic assignment never goes past it.
    pub allow_over_capacity: bool,
    /// How long conversations may stay quiet before the bot reminds, resolves or closes them.
    pub quiet: crate::timers::QuietRules,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            low_confidence_threshold: 0.5,
            low_confidence_escalate_after: 2,
            negative_sentiment_threshold: -0.6,
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
            priority_rules: Vec::new(),
            allow_over_capacity: true,
            quiet: crate::timers::QuietRules::default(),
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

impl Policy {
    /// What a customer joining the queue described by `queue` is told.
    pub fn handoff_text(&self, queue: QueueView) -> String {
        if queue.agents_online == 0 {
            self.handoff_offline.clone()
        } else {
            self.handoff_queued.replace("{position}", &(queue.waiting + 1).to_string())
        }
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

fn raised(priority: Priority) -> Priority {
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
            source: ClassificationSource::Model,
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
}
