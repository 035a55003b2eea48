//! Working hours: minutes online per agent and day (UTC), from the presence log.

use chrono::NaiveDate;
use std::collections::BTreeMap;
use switchboard_models::{Agent, AgentId, Presence, Timestamp};

/// `(agent name, day, minutes online)`, by name then day. Agents count as offline before their
/// first change in `changes`; an agent online now counts up to `now`.
pub fn online_hours(changes: &[(AgentId, Presence, Timestamp)], agents: &[Agent], now: Timestamp) -> Vec<(String, NaiveDate, i64)> {
    let mut online_since: BTreeMap<AgentId, Timestamp> = BTreeMap::new();
    let mut minutes: BTreeMap<(String, NaiveDate), i64> = BTreeMap::new();
    let name = |id: AgentId| agents.iter().find(|a| a.id == id).map(|a| a.name.clone()).unwrap_or_else(|| id.to_string());
    let mut add = |id: AgentId, from: Timestamp, to: Timestamp| {
        let mut start = from;
        while start < to {
            let next_day = (start.date_naive() + chrono::Days::new(1)).and_hms_opt(0, 0, 0).expect("midnight").and_utc();
            let end = to.min(next_day);
            *minutes.entry((name(id), start.date_naive())).or_default() += (end - start).num_minutes();
            start = end;
        }
    };
    for (agent, presence, at) in changes {
        match (presence, online_since.get(agent).copied()) {
            (Presence::Online, None) => {
                online_since.insert(*agent, *at);
            }
            (Presence::Online, Some(_)) => {}
            (_, Some(since)) => {
                add(*agent, since, *at);
                online_since.remove(agent);
            }
            (_, None) => {}
        }
    }
    for (agent, since) in online_since {
        add(agent, since, now);
    }
    minutes.into_iter().map(|((agent, day), minutes)| (agent, day, minutes)).collect()
}

/// Minutes `agent` was online from `from` to `now`, from the presence log (`changes`, oldest
/// first, read from a while before `from`). Online at `from` is what their last change before it
/// says; without one, what their first change after it left (a change means they were in
/// another state; going away or offline is taken as leaving online), or, with no change at
/// all, their presence now.
pub fn online_minutes(changes: &[(AgentId, Presence, Timestamp)], agent: AgentId, presence_now: Presence, from: Timestamp, now: Timestamp) -> i64 {
    let theirs: Vec<(Presence, Timestamp)> = changes.iter().filter(|(a, _, _)| *a == agent).map(|(_, p, at)| (*p, *at)).collect();
    let mut online = match theirs.iter().rev().find(|(_, at)| *at < from) {
        Some((presence, _)) => *presence == Presence::Online,
        None => match theirs.iter().find(|(_, at)| *at >= from) {
            Some((presence, _)) => *presence != Presence::Online,
            None => presence_now == Presence::Online,
        },
    };
    let mut since = from;
    let mut minutes = 0;
    for (presence, at) in theirs.iter().filter(|(_, at)| *at >= from && *at <= now) {
        match (online, *presence == Presence::Online) {
            (true, false) => {
                minutes += (*at - since).num_minutes();
                online = false;
            }
            (false, true) => {
                since = *at;
                online = true;
            }
            _ => {}
        }
    }
    if online {
        minutes += (now - since).num_minutes();
    }
    minutes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn online_minutes_of_a_day_start_from_the_state_before_it() {
        let (ann, bob) = (AgentId::new(), AgentId::new());
        let at = |d: u32, h: u32, m: u32| chrono::NaiveDate::from_ymd_opt(2026, 1, d).unwrap().and_hms_opt(h, m, 0).unwrap().and_utc();
        let (today, now) = (at(2, 0, 0), at(2, 12, 0));
        // Online since yesterday evening, away 9:00-9:30, online until now.
        let changes = [
            (ann, Presence::Online, at(1, 20, 0)),
            (bob, Presence::Online, at(2, 8, 0)),
            (ann, Presence::Away, at(2, 9, 0)),
            (ann, Presence::Online, at(2, 9, 30)),
            (bob, Presence::Offline, at(2, 10, 15)),
        ];
        assert_eq!(online_minutes(&changes, ann, Presence::Online, today, now), 12 * 60 - 30);
        assert_eq!(online_minutes(&changes, bob, Presence::Offline, today, now), 2 * 60 + 15);
        // No change in the log: their presence now held all day.
        let carl = AgentId::new();
        assert_eq!(online_minutes(&changes, carl, Presence::Online, today, now), 12 * 60);
        assert_eq!(online_minutes(&changes, carl, Presence::Away, today, now), 0);
        // First seen going away this morning: online before it.
        let dana = AgentId::new();
        assert_eq!(online_minutes(&[(dana, Presence::Away, at(2, 1, 0))], dana, Presence::Away, today, now), 60);
    }

    #[test]
    fn online_time_is_split_by_day() {
        let id = AgentId::new();
        let agent = Agent {
            id,
            email: "a@example.com".into(),
            name: "Ann".into(),
            role: switchboard_models::Role::Agent,
            presence: Presence::Offline,
            capacity: 1,
            active: true,
            created_at: chrono::Utc::now(),
            skills: Vec::new(),
        };
        let at = |d: u32, h: u32, m: u32| chrono::NaiveDate::from_ymd_opt(2026, 1, d).unwrap().and_hms_opt(h, m, 0).unwrap().and_utc();
        let changes = [
            (id, Presence::Online, at(1, 9, 0)),
            (id, Presence::Away, at(1, 12, 30)),
            (id, Presence::Online, at(1, 23, 0)),
            (id, Presence::Offline, at(2, 1, 15)),
        ];
        let report = online_hours(&changes, &[agent], at(3, 0, 0));
        let day = |d| chrono::NaiveDate::from_ymd_opt(2026, 1, d).unwrap();
        assert_eq!(report, vec![("Ann".into(), day(1), 210 + 60), ("Ann".into(), day(2), 75)]);
    }
}
