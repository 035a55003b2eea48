//! Service levels: how soon a person must first reply to, and resolve, an escalated
//! conversation of each priority. Counted in business hours when the team keeps them, so a
//! Friday-evening ticket is not overdue by Monday morning.

use crate::hours::BusinessHours;
use std::time::Duration;
use switchboard_models::{Conversation, Priority, SlaNotices, Timestamp};

/// The targets of one priority.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlaTarget {
    pub first_reply: Duration,
    pub resolution: Duration,
}

/// What happens when a target is missed, beyond telling the admins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreachAction {
    /// Admins (and the assignee) are told; nothing else changes.
    Notify,
    /// Also one priority level up (urgent stays urgent).
    RaisePriority,
    /// Also back to the queue, for someone else to take, when a missed first reply was an
    /// assigned agent's.
    Reassign,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SlaPolicy {
    /// Per priority, most urgent first (`Priority::ALL` order); `None` turns SLAs off.
    pub targets: Option<[SlaTarget; 4]>,
    /// The assignee is warned this long before a due time (at most half the target).
    pub warn_before: Duration,
    pub on_breach: BreachAction,
}

impl Default for SlaPolicy {
    fn default() -> Self {
        let minutes = |m: u64| Duration::from_secs(m * 60);
        let hours = |h: u64| Duration::from_secs(h * 3600);
        Self {
            // Resolution: urgent at once (within the working morning), high a day, medium two
            // days, low a week; first replies well inside each.
            targets: Some([
                SlaTarget { first_reply: minutes(15), resolution: hours(4) },
                SlaTarget { first_reply: hours(1), resolution: hours(24) },
                SlaTarget { first_reply: hours(4), resolution: hours(48) },
                SlaTarget { first_reply: hours(24), resolution: hours(168) },
            ]),
            warn_before: minutes(30),
            on_breach: BreachAction::Notify,
        }
    }
}

impl SlaPolicy {
    pub fn target(&self, priority: Priority) -> Option<SlaTarget> {
        let index = Priority::ALL.iter().position(|p| *p == priority)?;
        self.targets.map(|targets| targets[index])
    }
}

/// Starts (or restarts after a priority change) a conversation's clocks from `from`: the first
/// reply's while none was sent (`first_reply_pending`), the resolution's while unresolved.
/// Notices already given for a clock that moves into the future are given again when due.
pub fn start_clocks(c: &mut Conversation, policy: &SlaPolicy, hours: Option<&BusinessHours>, from: Timestamp, first_reply_pending: bool, now: Timestamp) {
    let Some(target) = c.priority.and_then(|p| policy.target(p)) else {
        c.first_reply_due_at = None;
        c.resolution_due_at = None;
        return;
    };
    let due = |after: Duration| {
        let after = chrono::Duration::from_std(after).unwrap_or(chrono::Duration::MAX);
        match hours {
            Some(hours) => hours.after_working(from, after),
            None => from.checked_add_signed(after),
        }
    };
    c.first_reply_due_at = if first_reply_pending { due(target.first_reply) } else { None };
    c.resolution_due_at = due(target.resolution);
    let mut notices = c.sla_notices;
    for (due, warning, breach) in [
        (c.first_reply_due_at, SlaNotices::FIRST_REPLY_WARNING, SlaNotices::FIRST_REPLY_BREACH),
        (c.resolution_due_at, SlaNotices::RESOLUTION_WARNING, SlaNotices::RESOLUTION_BREACH),
    ] {
        if due.is_some_and(|due| due > now) {
            notices.0 &= !(warning | breach);
        }
    }
    c.sla_notices = notices;
}

/// When to warn before `due` on a clock started at `started`: `warn_before` ahead, but never
/// earlier than halfway; counted in open time when the clock runs in business hours, so a
/// ticket due at 09:10 on Monday is warned about at 16:40 on Friday, not at 08:40 on Monday.
pub fn warning_at(started: Timestamp, due: Timestamp, warn_before: Duration, hours: Option<&BusinessHours>) -> Timestamp {
    let before = chrono::Duration::from_std(warn_before).unwrap_or(chrono::Duration::MAX);
    match hours {
        Some(hours) => {
            let working = hours.working_between(started, due);
            hours.after_working(started, working - before.min(working / 2)).unwrap_or(due - before).clamp(started.min(due), due)
        }
        None => due - before.min((due - started) / 2),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_models::{Channel, ContactId};

    fn at(text: &str) -> Timestamp {
        chrono::DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&chrono::Utc)
    }

    #[test]
    fn clocks_follow_the_priority_and_business_hours() {
        let now = at("2026-12-04T15:00:00Z");
        let mut c = Conversation::new(ContactId::new(), Channel::WebChat, now);
        c.priority = Some(Priority::High);
        let policy = SlaPolicy::default();
        start_clocks(&mut c, &policy, None, now, true, now);
        assert_eq!(c.first_reply_due_at, Some(at("2026-12-04T16:00:00Z")));
        assert_eq!(c.resolution_due_at, Some(at("2026-12-05T15:00:00Z")));

        let days: Vec<(String, String)> =
            ["monday", "tuesday", "wednesday", "thursday", "friday"].iter().map(|d| (d.to_string(), "09:00-17:00".to_string())).collect();
        let office = BusinessHours::parse("business_hours", "UTC", &days, &[]).unwrap();
        start_clocks(&mut c, &policy, Some(&office), now, true, now);
        assert_eq!(c.first_reply_due_at, Some(at("2026-12-04T16:00:00Z")), "an hour left on Friday");
        assert_eq!(c.resolution_due_at, Some(at("2026-12-09T15:00:00Z")), "24 working hours: 2 Friday, 8 Mon, 8 Tue, 6 Wed");

        // A first reply was sent: only the resolution clock runs; notices of a clock moved
        // into the future are due again.
        c.sla_notices = SlaNotices(SlaNotices::RESOLUTION_WARNING | SlaNotices::FIRST_REPLY_BREACH);
        start_clocks(&mut c, &policy, None, now, false, now);
        assert_eq!(c.first_reply_due_at, None);
        assert_eq!(c.sla_notices, SlaNotices(SlaNotices::FIRST_REPLY_BREACH));

        let off = SlaPolicy { targets: None, ..SlaPolicy::default() };
        start_clocks(&mut c, &off, None, now, true, now);
        assert_eq!((c.first_reply_due_at, c.resolution_due_at), (None, None));
    }

    #[test]
    fn the_warning_comes_before_the_due_time_but_not_before_halfway() {
        let start = at("2026-12-04T12:00:00Z");
        let thirty = Duration::from_secs(1800);
        assert_eq!(warning_at(start, at("2026-12-04T16:00:00Z"), thirty, None), at("2026-12-04T15:30:00Z"));
        assert_eq!(warning_at(start, at("2026-12-04T12:15:00Z"), thirty, None), at("2026-12-04T12:07:30Z"));
        // In business hours (09:00-17:00 on weekdays, UTC): due Monday 09:10, started Friday
        // 16:00; the warning comes with 30 open minutes left, Friday 16:40, not Monday 08:40.
        let days: Vec<(String, String)> =
            ["monday", "tuesday", "wednesday", "thursday", "friday"].iter().map(|d| (d.to_string(), "09:00-17:00".to_string())).collect();
        let office = BusinessHours::parse("business_hours", "UTC", &days, &[]).unwrap();
        let friday = at("2026-12-04T16:00:00Z");
        assert_eq!(office.working_between(friday, at("2026-12-07T09:10:00Z")), chrono::Duration::minutes(70));
        assert_eq!(warning_at(friday, at("2026-12-07T09:10:00Z"), thirty, Some(&office)), at("2026-12-04T16:40:00Z"));
        // Halfway still bounds it: 70 open minutes, a two-hour warning comes after 35 of them.
        assert_eq!(warning_at(friday, at("2026-12-07T09:10:00Z"), Duration::from_secs(7200), Some(&office)), at("2026-12-04T16:35:00Z"));
    }
}
