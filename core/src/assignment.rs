//! Who gets the next waiting conversation: among online agents below their capacity, the one
//! whose skills cover most of what it is about (its category, its language), then the one with
//! the fewest unfinished conversations (ties: the earliest created account, so it is stable).
//! Skills decide who is asked first; nobody waits for a skill while someone else has room.

use crate::ports::AgentLoad;
use switchboard_models::Agent;

/// An agent's load is counted up to here: past it the exact number changes no decision, and
/// counting an agent who holds 50,000 conversations cost more than the rest of their page.
pub const LOAD_COUNTED_UP_TO: u32 = 1000;

/// A load as words: "3", or "1000 or more" once counting stopped.
pub fn load_words(open: u32) -> String {
    if open >= LOAD_COUNTED_UP_TO { format!("{LOAD_COUNTED_UP_TO} or more") } else { open.to_string() }
}

/// What the panel and the API tell an agent past their capacity.
pub fn over_capacity_warning(open: u32, capacity: u32) -> Option<String> {
    (open > capacity).then(|| format!("You have {} conversations; your capacity is {capacity}.", load_words(open)))
}

/// `wanted`: what the conversation is about, as skills are written (`Conversation::wanted_skills`).
pub fn pick_agent<'a>(loads: &'a [AgentLoad], wanted: &[&str]) -> Option<&'a Agent> {
    loads
        .iter()
        .filter(|load| load.agent.active && load.open < load.agent.capacity)
        .min_by_key(|load| (std::cmp::Reverse(load.agent.skills_matching(wanted)), load.open, load.agent.created_at, load.agent.id))
        .map(|load| &load.agent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_models::{AgentId, Presence, Role};

    fn load(name: &str, capacity: u32, open: u32, minute: u32) -> AgentLoad {
        AgentLoad {
            agent: Agent {
                id: AgentId::new(),
                email: format!("{name}@example.com"),
                name: name.into(),
                role: Role::Agent,
                presence: Presence::Online,
                capacity,
                active: true,
                created_at: chrono::DateTime::from_timestamp(i64::from(minute) * 60, 0).unwrap(),
                skills: Vec::new(),
            },
            open,
        }
    }

    #[test]
    fn the_least_loaded_agent_with_room_gets_it() {
        let loads = [load("ann", 3, 2, 1), load("bo", 3, 1, 2), load("cy", 1, 1, 0)];
        assert_eq!(pick_agent(&loads, &[]).unwrap().name, "bo");
        let full = [load("ann", 2, 2, 1), load("cy", 1, 1, 0)];
        assert!(pick_agent(&full, &[]).is_none(), "nobody has room");
        let tie = [load("bo", 3, 1, 2), load("ann", 3, 1, 1)];
        assert_eq!(pick_agent(&tie, &[]).unwrap().name, "ann", "ties go to the longest-standing account");
    }

    #[test]
    fn skills_decide_who_is_asked_first_but_nobody_waits_for_one() {
        let skilled = |name: &str, open: u32, skills: &[&str]| {
            let mut load = load(name, 3, open, 1);
            load.agent.skills = skills.iter().map(|s| s.to_string()).collect();
            load
        };
        let team = [skilled("ann", 0, &[]), skilled("bo", 2, &["billing"]), skilled("cy", 1, &["billing", "de"])];
        assert_eq!(pick_agent(&team, &["billing", "de"]).unwrap().name, "cy", "covers both, though not the least loaded");
        assert_eq!(pick_agent(&team, &["billing", "en"]).unwrap().name, "cy", "one each: the less loaded of bo and cy");
        assert_eq!(pick_agent(&team, &["technical_support"]).unwrap().name, "ann", "no one has the skill: the least loaded");
        let busy = [skilled("ann", 0, &[]), skilled("bo", 3, &["billing"])];
        assert_eq!(pick_agent(&busy, &["billing"]).unwrap().name, "ann", "the skilled agent is full: someone with room");
    }

    #[test]
    fn loads_past_the_count_are_worded_as_a_bound() {
        assert_eq!(load_words(3), "3");
        assert_eq!(load_words(LOAD_COUNTED_UP_TO), format!("{LOAD_COUNTED_UP_TO} or more"));
        assert_eq!(over_capacity_warning(2, 2), None);
        assert_eq!(over_capacity_warning(3, 2).as_deref(), Some("You have 3 conversations; your capacity is 2."));
    }
}
