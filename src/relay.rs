//! Several nodes on one PostgreSQL database: this node's events go out to the others, and
//! theirs come in to this node's live views (the panel's event stream, widgets connected here).

use std::sync::Arc;
use switchboard_channels::webchat::WebChatHub;
use switchboard_core::Engine;
use switchboard_models::{AgentId, ConversationId, DomainEvent};
use switchboard_store::relay::{News, PgRelay};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

/// Starts relaying; `delivered` carries each web-chat reply this node delivered (seq, visitor).
pub async fn start(
    url: &str,
    engine: Arc<Engine>,
    hub: Arc<WebChatHub>,
    delivered: mpsc::UnboundedReceiver<(i64, String)>,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let relay = Arc::new(PgRelay::connect(url).await?);
    let incoming = relay.listen().await?;
    let outgoing = tokio::spawn(announce(relay, engine.bus().subscribe_local(), delivered));
    let showing = tokio::spawn(show(incoming, engine, hub));
    Ok(vec![outgoing, showing])
}

/// News announced in one statement at most.
const BATCH: usize = 256;

/// Sends this node's news out, everything waiting at once (one commit on the server per batch).
async fn announce(relay: Arc<PgRelay>, mut events: broadcast::Receiver<DomainEvent>, mut delivered: mpsc::UnboundedReceiver<(i64, String)>) {
    loop {
        let mut batch = Vec::new();
        tokio::select! {
            event = events.recv() => match event {
                Err(broadcast::error::RecvError::Closed) => return,
                event => batch.extend(news_of(event)),
            },
            reply = delivered.recv() => match reply {
                Some((seq, visitor)) => batch.push(News::WebChat { seq, visitor }),
                None => return,
            },
        }
        while batch.len() < BATCH {
            match events.try_recv() {
                Ok(event) => batch.extend(news_of(Ok(event))),
                Err(broadcast::error::TryRecvError::Lagged(missed)) => batch.extend(news_of(Err(broadcast::error::RecvError::Lagged(missed)))),
                Err(_) => break,
            }
        }
        while batch.len() < BATCH {
            let Ok((seq, visitor)) = delivered.try_recv() else { break };
            batch.push(News::WebChat { seq, visitor });
        }
        if batch.is_empty() {
            continue;
        }
        if let Err(error) = relay.announce(batch).await {
            tracing::warn!(%error, "could not announce live news to the other nodes");
        }
    }
}

/// The news of one local event, by reference.
fn news_of(event: Result<DomainEvent, broadcast::error::RecvError>) -> Option<News> {
    match event {
        Ok(DomainEvent::MessageStored(message)) => Some(News::Message { seq: message.seq }),
        Ok(DomainEvent::DeliveryChanged(message)) => Some(News::Delivery { seq: message.seq }),
        Ok(DomainEvent::ConversationChanged(conversation)) => Some(News::Conversation { id: conversation.id.to_string() }),
        Ok(DomainEvent::Assigned { conversation, agent }) => Some(News::Assigned { id: conversation.id.to_string(), agent: agent.to_string() }),
        Ok(DomainEvent::Notified { to, kind, conversation, text }) => Some(News::Notified {
            agent: to.map(|a| a.to_string()).unwrap_or_default(),
            about: kind.as_str().to_string(),
            conversation: conversation.map(|c| c.to_string()).unwrap_or_default(),
            text,
        }),
        // A passing cue: shown by the node where it happened (see docs/DEPLOYMENT.md).
        Ok(DomainEvent::Typing { .. }) => None,
        Ok(DomainEvent::SeenByAgent { conversation, up_to_seq }) => Some(News::Seen { conversation: conversation.to_string(), seq: up_to_seq }),
        Ok(DomainEvent::IntentsChanged { version, in_use: false }) => Some(News::Intents { version }),
        Ok(DomainEvent::PresenceChanged { agent, presence }) => Some(News::Presence { agent: agent.to_string(), presence: presence.as_str().to_string() }),
        Ok(DomainEvent::SettingsChanged) => Some(News::Settings),
        // Which version runs where is each node's own.
        Ok(DomainEvent::IntentsChanged { in_use: true, .. }) => None,
        Err(broadcast::error::RecvError::Lagged(missed)) => {
            tracing::warn!(missed, "live news fell behind; other nodes' views catch up on their next reload");
            None
        }
        Err(broadcast::error::RecvError::Closed) => None,
    }
}

async fn show(incoming: impl futures::Stream<Item = News>, engine: Arc<Engine>, hub: Arc<WebChatHub>) {
    use futures::StreamExt;
    let mut incoming = std::pin::pin!(incoming);
    while let Some(news) = incoming.next().await {
        if let Err(error) = show_one(news, &engine, &hub).await {
            tracing::warn!(%error, "could not show another node's news");
        }
    }
}

async fn show_one(news: News, engine: &Engine, hub: &WebChatHub) -> anyhow::Result<()> {
    // Nobody here would see it: reading the rows would only load the database.
    let watched = match &news {
        News::WebChat { visitor, .. } => hub.is_connected(visitor),
        // Whether a widget of that customer is connected here is known once it is read.
        News::Seen { .. } | News::Intents { .. } => true,
        _ => engine.bus().has_live_views(),
    };
    if !watched {
        return Ok(());
    }
    let store = engine.store();
    let conversation = |id: &str| {
        let id = ConversationId::parse(id);
        async move { anyhow::Ok(store.conversation(id?).await?) }
    };
    match news {
        News::Message { seq } => {
            if let Some(message) = store.message_by_seq(seq).await? {
                engine.bus().publish_remote(DomainEvent::MessageStored(message));
            }
        }
        News::Delivery { seq } => {
            if let Some(message) = store.message_by_seq(seq).await? {
                engine.bus().publish_remote(DomainEvent::DeliveryChanged(message));
            }
        }
        News::Conversation { id } => {
            if let Some(conversation) = conversation(&id).await? {
                engine.bus().publish_remote(DomainEvent::ConversationChanged(conversation));
            }
        }
        News::Assigned { id, agent } => {
            if let (Some(conversation), Ok(agent)) = (conversation(&id).await?, AgentId::parse(&agent)) {
                engine.bus().publish_remote(DomainEvent::Assigned { conversation, agent });
            }
        }
        News::Notified { agent, about, conversation, text } => {
            let to = if agent.is_empty() { None } else { Some(AgentId::parse(&agent)?) };
            let conversation = if conversation.is_empty() { None } else { Some(ConversationId::parse(&conversation)?) };
            engine.bus().publish_remote(DomainEvent::Notified { to, kind: about.parse()?, conversation, text });
        }
        News::Seen { conversation, seq } => {
            let cue = switchboard_channels::webchat::LiveEvent::Seen(seq);
            switchboard_channels::webchat::show_cue(engine, hub, ConversationId::parse(&conversation)?, cue).await;
        }
        News::WebChat { seq, visitor } => {
            if let Some(message) = store.message_by_seq(seq).await? {
                hub.publish_relayed(&visitor, Arc::new(message));
            }
        }
        News::Intents { version } => engine.bus().publish_remote(DomainEvent::IntentsChanged { version, in_use: false }),
        News::Presence { agent, presence } => engine.bus().publish_remote(DomainEvent::PresenceChanged { agent: AgentId::parse(&agent)?, presence: presence.parse()? }),
        News::Settings => engine.bus().publish_remote(DomainEvent::SettingsChanged),
    }
    Ok(())
}
