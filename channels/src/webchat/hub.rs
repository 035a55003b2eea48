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
    /// An agent (named) is typing a reply.
    AgentTyping(Arc<str>),
    /// An agent saw the customer's messages up to this seq.
    Seen(i64),
    /// The conversation changed hands or status (e.g. it now waits for the team).
    Conversation(Arc<Conversation>),
    /// Too many sockets for this visitor: this one, the oldest, is closed.
    Displaced,
}

/// Per-subscriber buffer; a widget that falls this far behind is dropped and resyncs. It must
/// hold what arrives while the socket waits for its own sends to be stored: at twice the
/// model's capacity a stalled commit released more than 64 events at once. Slots are taken
/// as used (blocks of 32), so an idle widget costs no more for a larger bound.
const SUBSCRIBER_BUFFER: usize = 1024;

/// Widgets are keyed by the visitor id (the contact's external id on web chat), which exists
/// before the first message creates the contact.
type VisitorId = String;

/// One live widget connection (or long poll).
struct Subscriber {
    id: u64,
    socket: bool,
    sender: mpsc::Sender<LiveEvent>,
    /// The newest seq the widget had when it connected: another node's news of an older reply
    /// is not news to it (it reads that reply from history), so it is not pushed again.
    caught_up_to: i64,
}

#[derive(Default)]
pub struct WebChatHub {
    /// Per visitor, oldest first.
    subscribers: Mutex<HashMap<VisitorId, Vec<Subscriber>>>,
    next_id: AtomicU64,
    /// New sockets reading their conversation for the `ready` frame at once. In a reconnect
    /// storm the rest wait here instead of all holding a store read's buffers together, which
    /// left the heap fragmented long after (bench idle --concurrency).
    openings: Openings,
}

struct Openings(tokio::sync::Semaphore);

impl Default for Openings {
    fn default() -> Self {
        Self(tokio::sync::Semaphore::new(OPENINGS_AT_ONCE))
    }
}

const OPENINGS_AT_ONCE: usize = 64;

impl WebChatHub {
    /// A turn to read a new socket's conversation; held until its `ready` frame is sent.
    pub async fn opening(&self) -> tokio::sync::SemaphorePermit<'_> {
        self.openings.0.acquire().await.expect("the openings semaphore is never closed")
    }
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
            list.retain(|subscriber| subscriber.id != self.id);
            if list.is_empty() {
                subscribers.remove(&self.visitor);
            }
        }
    }
}

impl WebChatHub {
    /// A short-lived listener (an HTTP long poll).
    pub fn subscribe(&self, visitor: &str) -> Subscription<'_> {
        self.add(visitor, None, 0)
    }

    /// A widget socket whose widget has (or reads from history) every message up to
    /// `caught_up_to`. A visitor holds at most `max_sockets`; a new one displaces the oldest,
    /// which is told so (`LiveEvent::Displaced`) and dropped.
    pub fn subscribe_socket(&self, visitor: &str, max_sockets: usize, caught_up_to: i64) -> Subscription<'_> {
        self.add(visitor, Some(max_sockets.max(1)), caught_up_to)
    }

    fn add(&self, visitor: &str, max_sockets: Option<usize>, caught_up_to: i64) -> Subscription<'_> {
        let (sender, events) = mpsc::channel(SUBSCRIBER_BUFFER);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut subscribers = self.subscribers.lock().expect("hub lock");
        let list = subscribers.entry(visitor.to_string()).or_default();
        if let Some(max) = max_sockets {
            while list.iter().filter(|subscriber| subscriber.socket).count() >= max {
                let oldest = list.iter().position(|subscriber| subscriber.socket).expect("counted above");
                let _ = list.remove(oldest).sender.try_send(LiveEvent::Displaced);
            }
        }
        list.push(Subscriber { id, socket: max_sockets.is_some(), sender, caught_up_to });
        Subscription { hub: self, visitor: visitor.to_string(), id, events }
    }

    /// Sends to every widget of the contact; returns how many took it. A full or closed
    /// subscriber is removed (its widget reconnects and catches up from history).
    pub fn publish(&self, visitor: &str, event: LiveEvent) -> usize {
        self.publish_to(visitor, event, |_| true)
    }

    /// Another node delivered `message`: sends it to the widgets that connected here before it
    /// was stored. News can arrive late; a widget that connected since has it from history.
    pub fn publish_relayed(&self, visitor: &str, message: Arc<Message>) -> usize {
        let seq = message.seq;
        self.publish_to(visitor, LiveEvent::Message(message), |subscriber| subscriber.caught_up_to < seq)
    }

    fn publish_to(&self, visitor: &str, event: LiveEvent, wants: impl Fn(&Subscriber) -> bool) -> usize {
        let mut subscribers = self.subscribers.lock().expect("hub lock");
        let Some(list) = subscribers.get_mut(visitor) else {
            return 0;
        };
        let mut delivered = 0;
        list.retain(|subscriber| {
            if !wants(subscriber) {
                return true;
            }
            let took = subscriber.sender.try_send(event.clone()).is_ok();
            delivered += usize::from(took);
            took
        });
        if list.is_empty() {
            subscribers.remove(visitor);
        }
        delivered
    }

    /// Whether a widget of `visitor` is connected here.
    pub fn is_connected(&self, visitor: &str) -> bool {
        self.subscribers.lock().expect("hub lock").contains_key(visitor)
    }

}

impl switchboard_core::ports::ConnectedVisitors for WebChatHub {
    fn connected_visitors(&self) -> usize {
        self.subscribers.lock().expect("hub lock").len()
    }
}

/// The outbox's sender for web chat.
pub struct WebChatOutbound {
    hub: Arc<WebChatHub>,
    /// With several nodes: each delivered reply (seq, visitor), for widgets connected elsewhere.
    relay: Option<mpsc::UnboundedSender<(i64, String)>>,
}

impl WebChatOutbound {
    pub fn new(hub: Arc<WebChatHub>) -> Self {
        Self { hub, relay: None }
    }

    pub fn relayed(mut self, relay: mpsc::UnboundedSender<(i64, String)>) -> Self {
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
            let _ = relay.send((message.message.seq, message.recipient_external_id.clone()));
        }
        Ok(None)
    }
}

/// Shows widgets on this node the agents' cues: typing to them (`DomainEvent::Typing`), and
/// their messages seen (`DomainEvent::SeenByAgent`).
pub async fn show_agents_cues(engine: Arc<switchboard_core::Engine>, hub: Arc<WebChatHub>) {
    use switchboard_models::DomainEvent;
    let mut events = engine.bus().subscribe_local();
    loop {
        let (conversation, cue) = match events.recv().await {
            Ok(DomainEvent::Typing { conversation, agent_name: Some(name) }) => (conversation, LiveEvent::AgentTyping(name.into())),
            Ok(DomainEvent::SeenByAgent { conversation, up_to_seq }) => (conversation, LiveEvent::Seen(up_to_seq)),
            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        };
        show_cue(&engine, &hub, conversation, cue).await;
    }
}

/// Shows `cue` to the widgets connected here of the conversation's web-chat customer.
pub async fn show_cue(engine: &switchboard_core::Engine, hub: &WebChatHub, conversation: switchboard_models::ConversationId, cue: LiveEvent) {
    let store = engine.conversations();
    let contact = match store.conversation(conversation).await {
        Ok(Some(c)) if c.channel == Channel::WebChat => store.contact(c.contact_id).await.ok().flatten(),
        _ => None,
    };
    if let Some(contact) = contact.filter(|c| hub.is_connected(&c.external_id)) {
        hub.publish(&contact.external_id, cue);
    }
}
