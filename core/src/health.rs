//! How the outside connections are doing: the Telegram poller, the Discord gateway, the IMAP
//! session, the mail server and the hosted LLM each report here as they work. The board keeps
//! this node's reports in memory and writes them to the store (`channel_states`), so `/readyz`
//! and the System page on any node show a singleton that runs on another.
//!
//! Writes are few: a change (up to down, another detail, another error) is written at once;
//! otherwise every `HEARTBEAT`, stamped with its time, which says the reporting node still runs
//! the connection. A node that stops running one (its lease went to another node) forgets it.

use crate::ports::{Coordination, StoreError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchboard_models::Timestamp;
use tokio::sync::Notify;

/// How often unchanged states are written again (their last success, and that the node lives).
pub const HEARTBEAT: Duration = Duration::from_secs(20);
/// A state not written for this long comes from a node that stopped reporting.
pub const SILENT_AFTER: chrono::Duration = chrono::Duration::seconds(90);

/// One connection's latest report.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ChannelState {
    /// `telegram`, `discord`, `email` (IMAP), `smtp`, `llm`.
    pub name: String,
    /// The node that reported it (`server.node_name`).
    pub node: String,
    pub up: bool,
    /// What it is doing when up ("long polling"), or what failed when down.
    pub detail: String,
    pub last_ok_at: Option<Timestamp>,
    pub last_error: Option<String>,
    pub last_error_at: Option<Timestamp>,
    /// When its node last reported it or said it still runs it.
    pub updated_at: Timestamp,
}

impl ChannelState {
    /// Up, down, or silent (its node stopped reporting), as of `now`.
    pub fn condition(&self, now: Timestamp) -> &'static str {
        match (now - self.updated_at > SILENT_AFTER, self.up) {
            (true, _) => "silent",
            (false, true) => "up",
            (false, false) => "down",
        }
    }
}

struct Entry {
    state: ChannelState,
    /// Changed since it was last written.
    dirty: bool,
}

pub struct HealthBoard {
    node: String,
    entries: Mutex<HashMap<&'static str, Entry>>,
    /// Names this node runs or may run (its configuration), in the order to show them.
    expected: Mutex<Vec<&'static str>>,
    wake: Notify,
}

impl HealthBoard {
    pub fn new(node: impl Into<String>) -> Self {
        Self { node: node.into(), entries: Mutex::new(HashMap::new()), expected: Mutex::new(Vec::new()), wake: Notify::new() }
    }

    /// `name` is configured on this node: it is shown even before anyone reports it.
    pub fn expect(&self, name: &'static str) {
        let mut expected = self.expected.lock().unwrap_or_else(|e| e.into_inner());
        if !expected.contains(&name) {
            expected.push(name);
        }
    }

    /// `name` works: `detail` says how ("long polling").
    pub fn up(&self, name: &'static str, detail: &str) {
        self.report(name, true, detail);
    }

    /// `name` failed with `error`.
    pub fn down(&self, name: &'static str, error: &str) {
        self.report(name, false, error);
    }

    fn report(&self, name: &'static str, up: bool, detail: &str) {
        let now = chrono::Utc::now();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let entry = entries.entry(name).or_insert_with(|| Entry {
            state: ChannelState {
                name: name.to_string(),
                node: self.node.clone(),
                up,
                detail: String::new(),
                last_ok_at: None,
                last_error: None,
                last_error_at: None,
                updated_at: now,
            },
            dirty: true,
        });
        let state = &mut entry.state;
        let changed = entry.dirty || state.up != up || state.detail != detail;
        state.up = up;
        state.detail = detail.to_string();
        state.updated_at = now;
        if up {
            state.last_ok_at = Some(now);
        } else {
            state.last_error = Some(detail.to_string());
            state.last_error_at = Some(now);
        }
        if changed {
            entry.dirty = true;
            self.wake.notify_one();
        }
    }

    /// This node no longer runs `name` (another node took it over): it stops reporting it.
    pub fn forget(&self, name: &str) {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).remove(name);
    }

    /// This node's reports, as they are now.
    fn local(&self) -> Vec<ChannelState> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).values().map(|entry| entry.state.clone()).collect()
    }

    /// Each expected connection with the freshest of this node's and the store's states (a
    /// singleton may run on another node); none when nobody reported it yet.
    pub async fn states(&self, store: &dyn Coordination) -> Result<Vec<(&'static str, Option<ChannelState>)>, StoreError> {
        let mut freshest: HashMap<String, ChannelState> = HashMap::new();
        for state in store.channel_states().await?.into_iter().chain(self.local()) {
            if freshest.get(&state.name).is_none_or(|known| known.updated_at < state.updated_at) {
                freshest.insert(state.name.clone(), state);
            }
        }
        let expected = self.expected.lock().unwrap_or_else(|e| e.into_inner()).clone();
        Ok(expected.into_iter().map(|name| (name, freshest.remove(name))).collect())
    }

    /// Writes changes at once and everything every `heartbeat` (`HEARTBEAT`; stamped now) until
    /// the future is dropped.
    pub async fn run(self: Arc<Self>, store: Arc<dyn Coordination>, heartbeat: Duration) {
        let mut heartbeat = tokio::time::interval(heartbeat);
        loop {
            let everything = tokio::select! {
                _ = heartbeat.tick() => true,
                _ = self.wake.notified() => false,
            };
            let now = chrono::Utc::now();
            let due: Vec<ChannelState> = {
                let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
                entries
                    .values_mut()
                    .filter(|entry| everything || entry.dirty)
                    .map(|entry| {
                        entry.dirty = false;
                        if everything {
                            // Still running here: a Discord gateway or an IMAP IDLE may report
                            // nothing for minutes, and is not silent for that.
                            entry.state.updated_at = now;
                        }
                        entry.state.clone()
                    })
                    .collect()
            };
            for state in due {
                if let Err(error) = store.record_channel_state(&state).await {
                    tracing::warn!(%error, name = %state.name, "could not record a connection's state; trying again later");
                    if let Some(entry) = self.entries.lock().unwrap_or_else(|e| e.into_inner()).get_mut(state.name.as_str()) {
                        entry.dirty = true;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_keeps_the_last_success_and_a_recovery_keeps_the_last_error() {
        let board = HealthBoard::new("node-a");
        board.up("telegram", "long polling");
        board.down("telegram", "connection refused");
        board.up("telegram", "long polling");
        let state = board.local().pop().unwrap();
        assert!(state.up);
        assert_eq!(state.detail, "long polling");
        assert_eq!(state.last_error.as_deref(), Some("connection refused"));
        assert!(state.last_error_at.unwrap() <= state.last_ok_at.unwrap());
        assert_eq!(state.node, "node-a");
        assert_eq!(state.condition(state.updated_at), "up");
        assert_eq!(state.condition(state.updated_at + SILENT_AFTER + chrono::Duration::seconds(1)), "silent");
        board.forget("telegram");
        assert!(board.local().is_empty(), "a node that no longer runs it stops reporting it");
    }
}
