//! The in-process event bus: domain events fan out to live views after commit.

use switchboard_models::DomainEvent;
use tokio::sync::broadcast;

/// Cheap to clone; publishing never blocks. A subscriber that falls behind misses events
/// (it sees `Lagged`) and must reload from the store.
#[derive(Clone)]
pub struct EventBus {
    sender: broadcast::Sender<DomainEvent>,
}

impl EventBus {
    pub fn new(capacity: usize) -> Self {
        Self { sender: broadcast::channel(capacity).0 }
    }

    pub fn publish(&self, event: DomainEvent) {
        // No subscribers is fine: nobody is watching.
        let _ = self.sender.send(event);
    }

    /// Whether anyone listens; lets publishers skip building events nobody reads.
    pub fn has_subscribers(&self) -> bool {
        self.sender.receiver_count() > 0
    }

    pub fn subscribe(&self) -> broadcast::Receiver<DomainEvent> {
        self.sender.subscribe()
    }
}
