//! What happens to a conversation because time passed. A step says which timers its
//! conversation has from then on; they are written in the same transaction as the step, and
//! the engine fires the due ones through another step, which deletes the fired timer in its own
//! transaction: a timer fires once, also after a restart or with several nodes.

use std::time::Duration;
use crate::hours::BusinessHours;
use crate::sla::{warning_at, SlaPolicy};
use switchboard_models::{Conversation, ConversationId, Handler, SlaNotices, Status, Timestamp};

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
    /// The first agent reply is due soon: warn the assignee.
    FirstReplyWarning,
    /// The first agent reply is overdue: tell the admins (and act, if configured).
    FirstReplyBreach,
    ResolutionWarning,
    ResolutionBreach,
}

impl TimerKind {
    pub const ALL: [TimerKind; 8] = [
        Self::RemindWaiting,
        Self::ResolveWaiting,
        Self::CloseResolved,
        Self::CloseIdleBot,
        Self::FirstReplyWarning,
        Self::FirstReplyBreach,
        Self::ResolutionWarning,
        Self::ResolutionBreach,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::RemindWaiting => "remind_waiting",
            Self::ResolveWaiting => "resolve_waiting",
            Self::CloseResolved => "close_resolved",
            Self::CloseIdleBot => "close_idle_bot",
            Self::FirstReplyWarning => "first_reply_warning",
            Self::FirstReplyBreach => "first_reply_breach",
            Self::ResolutionWarning => "resolution_warning",
            Self::ResolutionBreach => "resolution_breach",
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

/// The timers a conversation has after a step left it as `c`: those of its quiet state
/// (counted from `now`) and the SLA warnings and breaches not yet announced.
pub fn timers_after(c: &Conversation, rules: &QuietRules, sla: &SlaPolicy, hours: Option<&BusinessHours>, now: Timestamp) -> Vec<(TimerKind, Timestamp)> {
    let mut timers = quiet_timers(c.status, c.handler, rules, now);
    let started = c.escalation.as_ref().map_or(now, |e| e.at);
    for (due, warning, breach, kinds) in [
        (c.first_reply_due_at, SlaNotices::FIRST_REPLY_WARNING, SlaNotices::FIRST_REPLY_BREACH, (TimerKind::FirstReplyWarning, TimerKind::FirstReplyBreach)),
        (c.resolution_due_at, SlaNotices::RESOLUTION_WARNING, SlaNotices::RESOLUTION_BREACH, (TimerKind::ResolutionWarning, TimerKind::ResolutionBreach)),
    ] {
        let Some(due) = due else { continue };
        if !c.sla_notices.has(warning) && !c.sla_notices.has(breach) && !sla.warn_before.is_zero() {
            timers.push((kinds.0, warning_at(started, due, sla.warn_before, hours)));
        }
        if !c.sla_notices.has(breach) {
            timers.push((kinds.1, due));
        }
    }
    timers
}

/// Waiting on the customer, a reminder and then resolution; resolved, closing; a bot
/// conversation, closing when idle; otherwise none.
fn quiet_timers(status: Status, handler: Handler, rules: &QuietRules, now: Timestamp) -> Vec<(TimerKind, Timestamp)> {
    let at = |after: Option<Duration>| after.and_then(|after| chrono::Duration::from_std(after).ok()).map(|after| now + after);
    let wanted = match (status, handler) {
        (Status::WaitingOnCustomer, _) => {
            vec![(TimerKind::RemindWaiting, at(rules.remind_waiting_after)), (TimerKind::ResolveWaiting, at(rules.resolve_waiting_after))]
        }
        (Status::Resolved | Status::Confirmed, _) => vec![(TimerKind::CloseResolved, at(rules.close_resolved_after))],
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
        let kinds = |status, handler, rules: &QuietRules| quiet_timers(status, handler, rules, now).into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        let agent = Handler::Agent(switchboard_models::AgentId::new());
        assert_eq!(kinds(Status::WaitingOnCustomer, agent, &rules), [TimerKind::RemindWaiting, TimerKind::ResolveWaiting]);
        assert_eq!(kinds(Status::Resolved, Handler::Bot, &rules), [TimerKind::CloseResolved]);
        assert_eq!(kinds(Status::Open, Handler::Bot, &rules), [TimerKind::CloseIdleBot]);
        assert!(kinds(Status::Open, Handler::Queue, &rules).is_empty(), "waiting for a person is the queue's business");
        assert!(kinds(Status::Closed, Handler::Bot, &rules).is_empty());
        let off = QuietRules { remind_waiting_after: None, ..QuietRules::default() };
        assert_eq!(kinds(Status::WaitingOnCustomer, agent, &off), [TimerKind::ResolveWaiting]);
        let due = quiet_timers(Status::Resolved, Handler::Bot, &rules, now)[0].1;
        assert_eq!(due - now, chrono::Duration::days(7));
    }

    #[test]
    fn sla_timers_stop_once_announced() {
        let now = chrono::Utc::now();
        let mut c = Conversation::new(switchboard_models::ContactId::new(), switchboard_models::Channel::WebChat, now);
        c.handler = Handler::Queue;
        c.first_reply_due_at = Some(now + chrono::Duration::hours(1));
        c.resolution_due_at = Some(now + chrono::Duration::hours(24));
        let sla = SlaPolicy::default();
        let kinds = |c: &Conversation| timers_after(c, &QuietRules::default(), &sla, None, now).into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        assert_eq!(
            kinds(&c),
            [TimerKind::FirstReplyWarning, TimerKind::FirstReplyBreach, TimerKind::ResolutionWarning, TimerKind::ResolutionBreach]
        );
        c.sla_notices = SlaNotices(SlaNotices::FIRST_REPLY_WARNING);
        assert_eq!(kinds(&c), [TimerKind::FirstReplyBreach, TimerKind::ResolutionWarning, TimerKind::ResolutionBreach]);
        c.sla_notices = SlaNotices(SlaNotices::FIRST_REPLY_BREACH | SlaNotices::RESOLUTION_WARNING);
        assert_eq!(kinds(&c), [TimerKind::ResolutionBreach], "a breach announced makes its warning moot");
        let warning = timers_after(&Conversation { sla_notices: SlaNotices::default(), ..c.clone() }, &QuietRules::default(), &sla, None, now)[0].1;
        assert_eq!(warning, now + chrono::Duration::minutes(30), "warned 30 minutes before the first reply is due");
    }

    #[test]
    fn kinds_round_trip_and_unknown_ones_are_refused() {
        for kind in TimerKind::ALL {
            assert_eq!(TimerKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(TimerKind::parse("explode"), None);
    }
}
