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

#[cfg(test)]
mod tests {
    use super::*;

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
