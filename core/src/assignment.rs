//! Who gets the next waiting conversation: the online agent with the fewest unfinished
//! conversations below their capacity (ties: the earliest created account, so it is stable).

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

pub fn pick_agent(loads: &[AgentLoad]) -> Option<&Agent> {
    loads
        .iter()
        .filter(|load| load.agent.active && load.open < load.agent.capacity)
        .min_by_key(|load| (load.open, load.agent.created_at, load.agent.id))
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
            },
            open,
        }
    }

    #[test]
    fn the_least_loaded_agent_with_room_gets_it() {
        let loads = [load("ann", 3, 2, 1), load("bo", 3, 1, 2), load("cy", 1, 1, 0)];
        assert_eq!(pick_agent(&loads).unwrap().name, "bo");
        let full = [load("ann", 2, 2, 1), load("cy", 1, 1, 0)];
        assert!(pick_agent(&full).is_none(), "nobody has room");
        let tie = [load("bo", 3, 1, 2), load("ann", 3, 1, 1)];
        assert_eq!(pick_agent(&tie).unwrap().name, "ann", "ties go to the longest-standing account");
    }

    #[test]
    fn loads_past_the_count_are_worded_as_a_bound() {
        assert_eq!(load_words(3), "3");
        assert_eq!(load_words(LOAD_COUNTED_UP_TO), format!("{LOAD_COUNTED_UP_TO} or more"));
        assert_eq!(over_capacity_warning(2, 2), None);
        assert_eq!(over_capacity_warning(3, 2).as_deref(), Some("You have 3 conversations; your capacity is 2."));
    }
}
