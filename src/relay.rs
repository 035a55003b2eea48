//! Several nodes on one PostgreSQL database: this node's events go out to the others, and
//! theirs come in to this node's live views (the panel's event stream, widgets connected here).

use std::sync::Arc;
use switchboard_channels::webchat::WebChatHub;
use switchboard_core::Engine;
use switchboard_models::{AgentId, ConversationId, DomainEvent};
use switchboard_store::relay::{News, PgRelay};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

/// Starts relaying; `delivered` carries the seq of each web-chat reply this node delivered.
pub async fn start(
    url: &str,
    engine: Arc<Engine>,
    hub: Arc<WebChatHub>,
    delivered: mpsc::UnboundedReceiver<i64>,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let relay = Arc::new(PgRelay::connect(url).await?);
    let incoming = relay.listen().await?;
    let outgoing = tokio::spawn(announce(relay, engine.bus().subscribe_local(), delivered));
    let showing = tokio::spawn(show(incoming, engine, hub));
    Ok(vec![outgoing, showing])
}

async fn announce(relay: Arc<PgRelay>, mut events: broadcast::Receiver<DomainEvent>, mut delivered: mpsc::UnboundedReceiver<i64>) {
    loop {
        let news = tokio::select! {
            event = events.recv() => match event {
                Ok(DomainEvent::MessageStored(message)) => News::Message { seq: message.seq },
                Ok(DomainEvent::DeliveryChanged(message)) => News::Delivery { seq: message.seq },
                Ok(DomainEvent::ConversationChanged(conversation)) => News::Conversation { id: conversation.id.to_string() },
                Ok(DomainEvent::Assigned { conversation, agent }) => {
                    News::Assigned { id: conversation.id.to_string(), agent: agent.to_string() }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "live news fell behind; other nodes' views catch up on their next reload");
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            seq = delivered.recv() => match seq {
                Some(seq) => News::WebChat { seq },
                None => return,
            },
        };
        if let Err(error) = relay.announce(news).await {
            tracing::warn!(%error, "could not announce live news to the other nodes");
        }
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
        News::WebChat { seq } => {
            let Some(message) = store.message_by_seq(seq).await? else { return Ok(()) };
            if let Some(contact) = store.contact(message.contact_id).await? {
                hub.publish_relayed(&contact.external_id, Arc::new(message));
            }
        }
    }
    Ok(())
}
