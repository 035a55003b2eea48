//! Web chat: the live side of the widget. Connected widgets subscribe per contact; the outbox
//! delivers by pushing to them. Nothing is lost when no widget is connected: the message is
//! already stored, and a widget reloads history from its last seen `seq` when it reconnects.

use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use switchboard_core::ports::{DeliveryError, Outbound};
use std::sync::Arc;
use switchboard_models::{Channel, Conversation, Message, OutboundMessage};
use tokio::sync::mpsc;

/// What a connected widget is told.
#[derive(Debug, Clone, PartialEq)]
pub enum LiveEvent {
    Message(Arc<Message>),
    /// The bot is working on an answer.
    Typing(bool),
    /// The conversation changed hands or status (e.g. it now waits for the team).
    Conversation(Arc<Conversation>),
    /// Too many sockets for this visitor: this one, the oldest, is closed.
    Displaced,
}

/// Per-subscriber buffer; a widget that falls this far behind is dropped and resyncs.
const SUBSCRIBER_BUFFER: usize = 64;

/// Widgets are keyed by the visitor id (the contact's external id on web chat), which exists
/// before the first message creates the contact.
type VisitorId = String;

#[derive(Default)]
pub struct WebChatHub {
    /// Per visitor: (id, is a socket, sender), oldest first.
    subscribers: Mutex<HashMap<VisitorId, Vec<(u64, bool, mpsc::Sender<LiveEvent>)>>>,
    next_id: AtomicU64,
}

/// Ends the subscription when dropped.
pub struct Subscription<'a> {
    hub: &'a WebChatHub,
    visitor: VisitorId,
    id: u64,
    pub events: mpsc::Receiver<LiveEvent>,
}

impl Drop for Subscription<'_> {
    fn drop(&mut self) {
        let mut subscribers = self.hub.subscribers.lock().expect("hub lock");
        if let Some(list) = subscribers.get_mut(&self.visitor) {
            list.retain(|(id, _, _)| *id != self.id);
            if list.is_empty() {
                subscribers.remove(&self.visitor);
            }
        }
    }
}

impl WebChatHub {
    /// A short-lived listener (an HTTP long poll).
    pub fn subscribe(&self, visitor: &str) -> Subscription<'_> {
        self.add(visitor, None)
    }

    /// A widget socket. A visitor holds at most `max_sockets`; a new one displaces the oldest,
    /// which is told so (`LiveEvent::Displaced`) and dropped.
    pub fn subscribe_socket(&self, visitor: &str, max_sockets: usize) -> Subscription<'_> {
        self.add(visitor, Some(max_sockets.max(1)))
    }

    fn add(&self, visitor: &str, max_sockets: Option<usize>) -> Subscription<'_> {
        let (sender, events) = mpsc::channel(SUBSCRIBER_BUFFER);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut subscribers = self.subscribers.lock().expect("hub lock");
        let list = subscribers.entry(visitor.to_string()).or_default();
        if let Some(max) = max_sockets {
            while list.iter().filter(|(_, socket, _)| *socket).count() >= max {
                let oldest = list.iter().position(|(_, socket, _)| *socket).expect("counted above");
                let (_, _, displaced) = list.remove(oldest);
                let _ = displaced.try_send(LiveEvent::Displaced);
            }
        }
        list.push((id, max_sockets.is_some(), sender));
        Subscription { hub: self, visitor: visitor.to_string(), id, events }
    }

    /// Sends to every widget of the contact; returns how many took it. A full or closed
    /// subscriber is removed (its widget reconnects and catches up from history).
    pub fn publish(&self, visitor: &str, event: LiveEvent) -> usize {
        let mut subscribers = self.subscribers.lock().expect("hub lock");
        let Some(list) = subscribers.get_mut(visitor) else {
            return 0;
        };
        list.retain(|(_, _, sender)| sender.try_send(event.clone()).is_ok());
        let delivered = list.len();
        if list.is_empty() {
            subscribers.remove(visitor);
        }
        delivered
    }

    pub fn connected_visitors(&self) -> usize {
        self.subscribers.lock().expect("hub lock").len()
    }
}

/// The outbox's sender for web chat.
pub struct WebChatOutbound {
    hub: Arc<WebChatHub>,
    /// With several nodes: the seq of each delivered reply, for widgets connected elsewhere.
    relay: Option<mpsc::UnboundedSender<i64>>,
}

impl WebChatOutbound {
    pub fn new(hub: Arc<WebChatHub>) -> Self {
        Self { hub, relay: None }
    }

    pub fn relayed(mut self, relay: mpsc::UnboundedSender<i64>) -> Self {
        self.relay = Some(relay);
        self
    }
}

#[async_trait]
impl Outbound for WebChatOutbound {
    fn channel(&self) -> Channel {
        Channel::WebChat
    }

    /// Delivered once stored and pushed to whichever widgets are open; a closed widget
    /// reads it from history, so there is nothing to retry.
    async fn deliver(&self, message: &OutboundMessage) -> Result<Option<String>, DeliveryError> {
        self.hub.publish(
            &message.recipient_external_id,
            LiveEvent::Message(Arc::new(message.message.clone())),
        );
        if let Some(relay) = &self.relay {
            let _ = relay.send(message.message.seq);
        }
        Ok(None)
    }
}
