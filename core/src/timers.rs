//! What happens to a conversation because time passed. A step says which timers its
//! conversation has from then on; they are written in the same transaction as the step, and
//! the engine fires the due ones through another step, which deletes the fired timer in its own
//! transaction: a timer fires once, also after a restart or with several nodes.

use std::time::Duration;
use switchboard_models::{ConversationId, Handler, Status, Timestamp};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimerKind {
    /// Waiting on the customer: remind them.
    RemindWaiting,
    /// Still waiting on the customer: resolve, and tell them.
    ResolveWaiting,
    /// Resolved and nobody wrote again: close.
    CloseResolved,
    /// A conversation only the bot handled went quiet: close it.
    CloseIdleBot,
}

impl TimerKind {
    pub const ALL: [TimerKind; 4] = [Self::RemindWaiting, Self::ResolveWaiting, Self::CloseResolved, Self::CloseIdleBot];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::RemindWaiting => "remind_waiting",
            Self::ResolveWaiting => "resolve_waiting",
            Self::CloseResolved => "close_resolved",
            Self::CloseIdleBot => "close_idle_bot",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == text)
    }
}

/// A due time for one thing to happen to one conversation (at most one of each kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timer {
    pub conversation: ConversationId,
    pub kind: TimerKind,
    pub due_at: Timestamp,
}

/// How long conversations may stay quiet, and what customers are told. `None` turns a rule off.
#[derive(Debug, Clone, PartialEq)]
pub struct QuietRules {
    pub remind_waiting_after: Option<Duration>,
    pub resolve_waiting_after: Option<Duration>,
    pub close_resolved_after: Option<Duration>,
    pub close_idle_bot_after: Option<Duration>,
    pub waiting_reminder: String,
    pub waiting_resolved: String,
}

impl Default for QuietRules {
    fn default() -> Self {
        let days = |n: u64| Some(Duration::from_secs(n * 24 * 3600));
        Self {
            remind_waiting_after: days(2),
            resolve_waiting_after: days(5),
            close_resolved_after: days(7),
            close_idle_bot_after: days(1),
            waiting_reminder: "We're still here: is there anything more we can do for you on this? Just reply here."
                .to_string(),
            waiting_resolved: "We haven't heard back, so we've marked this as solved. Write here any time and we'll \
                               pick it up again."
                .to_string(),
        }
    }
}

/// The timers a conversation has after a step left it in `status` with `handler`, counted
/// from `now`: waiting on the customer, a reminder and then resolution; resolved, closing; a
/// bot conversation, closing when idle; otherwise none.
pub fn timers_after(status: Status, handler: Handler, rules: &QuietRules, now: Timestamp) -> Vec<(TimerKind, Timestamp)> {
    let at = |after: Option<Duration>| after.and_then(|after| chrono::Duration::from_std(after).ok()).map(|after| now + after);
    let wanted = match (status, handler) {
        (Status::WaitingOnCustomer, _) => {
            vec![(TimerKind::RemindWaiting, at(rules.remind_waiting_after)), (TimerKind::ResolveWaiting, at(rules.resolve_waiting_after))]
        }
        (Status::Resolved, _) => vec![(TimerKind::CloseResolved, at(rules.close_resolved_after))],
        (status, Handler::Bot) if !status.is_final() => vec![(TimerKind::CloseIdleBot, at(rules.close_idle_bot_after))],
        _ => Vec::new(),
    };
    wanted.into_iter().filter_map(|(kind, due)| due.map(|due| (kind, due))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_state_has_its_timers_and_a_rule_turned_off_has_none() {
        let now = chrono::Utc::now();
        let rules = QuietRules::default();
        let kinds = |status, handler, rules: &QuietRules| timers_after(status, handler, rules, now).into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        let agent = Handler::Agent(switchboard_models::AgentId::new());
        assert_eq!(kinds(Status::WaitingOnCustomer, agent, &rules), [TimerKind::RemindWaiting, TimerKind::ResolveWaiting]);
        assert_eq!(kinds(Status::Resolved, Handler::Bot, &rules), [TimerKind::CloseResolved]);
        assert_eq!(kinds(Status::Open, Handler::Bot, &rules), [TimerKind::CloseIdleBot]);
        assert!(kinds(Status::Open, Handler::Queue, &rules).is_empty(), "waiting for a person is the queue's business");
        assert!(kinds(Status::Closed, Handler::Bot, &rules).is_empty());
        let off = QuietRules { remind_waiting_after: None, ..QuietRules::default() };
        assert_eq!(kinds(Status::WaitingOnCustomer, agent, &off), [TimerKind::ResolveWaiting]);
        let due = timers_after(Status::Resolved, Handler::Bot, &rules, now)[0].1;
        assert_eq!(due - now, chrono::Duration::days(7));
    }

    #[test]
    fn kinds_round_trip_and_unknown_ones_are_refused() {
        for kind in TimerKind::ALL {
            assert_eq!(TimerKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(TimerKind::parse("explode"), None);
    }
}
