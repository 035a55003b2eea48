//! Escalation and priority rules, and the bot's fixed wording. Plain data handed to `step`.

use switchboard_models::{Category, Classification, Priority, Urgency};

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

/// Priority from category, then raised by tone and urgency.
pub fn priority_for(category: Category, classification: &Classification) -> Priority {
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
