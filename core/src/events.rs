//! The event bus: domain events fan out to live views after commit. On PostgreSQL with several
//! nodes, each node relays its own events to the others (`src/relay.rs`), which publish them
//! here as remote events.

use switchboard_models::DomainEvent;
use tokio::sync::broadcast;

/// Cheap to clone; publishing never blocks. A subscriber that falls behind misses events
/// (it sees `Lagged`) and must reload from the store.
#[derive(Clone)]
pub struct EventBus {
    /// Everything: this node's events and those relayed from other nodes.
    sender: broadcast::Sender<DomainEvent>,
    /// This node's own events only, for relaying them to the other nodes (and for side effects
    /// that must happen once, on the node where the event happened).
    local: broadcast::Sender<DomainEvent>,
}

impl EventBus {
    pub fn new(capacity: usize) -> Self {
        Self { sender: broadcast::channel(capacity).0, local: broadcast::channel(capacity).0 }
    }

    pub fn publish(&self, event: DomainEvent) {
        // No subscribers is fine: nobody is watching.
        let _ = self.local.send(event.clone());
        let _ = self.sender.send(event);
    }

    /// An event that happened on another node, for this node's live views.
    pub fn publish_remote(&self, event: DomainEvent) {
        let _ = self.sender.send(event);
    }

    /// Whether anyone listens; lets publishers skip building events nobody reads.
    pub fn has_subscribers(&self) -> bool {
        self.sender.receiver_count() > 0 || self.local.receiver_count() > 0
    }

    /// Whether any live view listens to every event (the relay skips other nodes' news otherwise).
    pub fn has_live_views(&self) -> bool {
        self.sender.receiver_count() > 0
    }

    /// Every event, wherever it happened (live views).
    pub fn subscribe(&self) -> broadcast::Receiver<DomainEvent> {
        self.sender.subscribe()
    }

    /// This node's events only.
    pub fn subscribe_local(&self) -> broadcast::Receiver<DomainEvent> {
        self.local.subscribe()
    }
}
