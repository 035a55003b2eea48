//! Inbound events a channel cannot store. A channel retries each with backoff (it must not
//! skip one); after `server.inbound_attempts` failed attempts that were not a storage outage
//! (those wait for the database, however long) the event is set aside as a dead letter, admins
//! are told, and the channel moves on. An admin replays it (through the channel's adapter, as
//! if it had just arrived) or dismisses it.

use super::{Engine, EngineError};
use crate::ports::{DeadLetter, DeadLetterState, NewDeadLetter};
use std::sync::Arc;
use switchboard_models::{Agent, Channel, Role, Timestamp};

/// A channel's adapter reading a set-aside event again.
#[async_trait::async_trait]
pub trait InboundReplay: Send + Sync {
    fn channel(&self) -> Channel;
    /// Stores the event as if it had just arrived; the error says why not.
    async fn replay(&self, payload: &[u8]) -> Result<(), String>;
}

/// One inbound event's failed attempts so far.
#[derive(Debug, Default)]
pub struct FailedAttempts {
    attempts: u32,
    first: Option<Timestamp>,
}

impl FailedAttempts {
    pub fn count(&self) -> u32 {
        self.attempts
    }
}

fn admin_only(by: &Agent) -> Result<(), EngineError> {
    match by.role {
        Role::Admin => Ok(()),
        Role::Agent => Err(EngineError::Forbidden("only admins replay or dismiss messages set aside".into())),
    }
}

impl Engine {
    /// Counts a failed attempt at an inbound event; once there were enough (and the store is
    /// not what fails), sets it aside and returns true: the channel moves on. False: retry it.
    pub async fn set_aside_after(&self, tries: &mut FailedAttempts, channel: Channel, external_id: &str, payload: impl FnOnce() -> Vec<u8>, error: &str) -> bool {
        let now = self.clock.now();
        tries.attempts += 1;
        let first = *tries.first.get_or_insert(now);
        if tries.attempts < self.limits.inbound_attempts || self.storage_problem().is_some() {
            return false;
        }
        let letter = NewDeadLetter {
            channel,
            external_id: external_id.to_string(),
            payload: payload(),
            error: error.to_string(),
            attempts: tries.attempts,
            first_failed_at: first,
            last_failed_at: now,
        };
        let notice = format!(
            "A {} message ({external_id}) could not be stored after {} attempts and was set aside so the channel goes on (the last error: {error}). Replay or dismiss it on the System page.",
            channel.as_str(),
            tries.attempts
        );
        match self.store.keep_dead_letter(&letter, &notice).await {
            Ok(id) => {
                metrics::counter!("switchboard_inbound_set_aside_total", "channel" => channel.as_str()).increment(1);
                tracing::error!(id, %channel, external_id, attempts = tries.attempts, error, "inbound event set aside");
                true
            }
            Err(store_error) => {
                tracing::warn!(%store_error, %channel, external_id, "could not set the inbound event aside; retrying it");
                false
            }
        }
    }

    /// Events set aside, newest first (those settled too when asked).
    pub async fn dead_letters(&self, settled_too: bool, limit: u32, by: &Agent) -> Result<Vec<DeadLetter>, EngineError> {
        admin_only(by)?;
        Ok(self.store.dead_letters(settled_too, limit).await?)
    }

    /// One event set aside, with its whole payload.
    pub async fn dead_letter(&self, id: i64, by: &Agent) -> Result<DeadLetter, EngineError> {
        admin_only(by)?;
        self.store.dead_letter(id).await?.ok_or(EngineError::NotFound("message set aside"))
    }

    async fn waiting_letter(&self, id: i64, by: &Agent) -> Result<DeadLetter, EngineError> {
        let letter = self.dead_letter(id, by).await?;
        if letter.state != DeadLetterState::Dead {
            return Err(EngineError::Conflict(format!("it was {} already", letter.state.as_str())));
        }
        Ok(letter)
    }

    /// Stores a set-aside event through its channel's adapter; it stays set aside, with the
    /// reason, when that fails again.
    pub async fn replay_dead_letter(&self, id: i64, replayers: &[Arc<dyn InboundReplay>], by: &Agent) -> Result<(), EngineError> {
        let letter = self.waiting_letter(id, by).await?;
        let channel = letter.letter.channel;
        let Some(replayer) = replayers.iter().find(|r| r.channel() == channel) else {
            return Err(EngineError::Conflict(format!("the {} channel is not configured on this node, so it cannot read this message again", channel.as_str())));
        };
        replayer.replay(&letter.letter.payload).await.map_err(|error| EngineError::Conflict(format!("it failed again: {error}")))?;
        self.store.settle_dead_letter(id, DeadLetterState::Replayed, by.id, self.clock.now()).await?;
        Ok(())
    }

    /// Settles a set-aside event without storing it.
    pub async fn dismiss_dead_letter(&self, id: i64, by: &Agent) -> Result<(), EngineError> {
        self.waiting_letter(id, by).await?;
        match self.store.settle_dead_letter(id, DeadLetterState::Dismissed, by.id, self.clock.now()).await? {
            true => Ok(()),
            false => Err(EngineError::Conflict("it was settled meanwhile".into())),
        }
    }
}
