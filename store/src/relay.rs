//! Live news between the nodes sharing one PostgreSQL database, over LISTEN/NOTIFY. A node
//! announces what happened by reference (a message's seq, a conversation's id: NOTIFY payloads
//! are small), and the others read the rows and show them. News is for live views only: a node
//! that misses some (its listening connection dropped) loses nothing, since pages and widgets
//! reload from the store when they reconnect.

use crate::rows::backend;
use futures::Stream;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use switchboard_core::ports::StoreError;

pub const CHANNEL: &str = "switchboard_live";

/// What happened, by reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum News {
    /// `DomainEvent::MessageStored`.
    Message { seq: i64 },
    /// `DomainEvent::ConversationChanged`.
    Conversation { id: String },
    /// `DomainEvent::Assigned`.
    Assigned { id: String, agent: String },
    /// `DomainEvent::DeliveryChanged`.
    Delivery { seq: i64 },
    /// `DomainEvent::Notified`: small, so it travels whole (`agent` empty: the admins).
    Notified { agent: String, about: String, conversation: String, text: String },
    /// A reply delivered to web chat: widgets connected to other nodes show it too. `visitor`
    /// lets a node with no widget of theirs skip reading it.
    WebChat { seq: i64, visitor: String },
    /// `DomainEvent::SeenByAgent`: widgets connected to other nodes show the mark too.
    Seen { conversation: String, seq: i64 },
    /// `DomainEvent::IntentsChanged` (recorded): every node trains the version.
    Intents { version: i64 },
    /// `DomainEvent::PresenceChanged`.
    Presence { agent: String, presence: String },
    /// `DomainEvent::SettingsChanged`: every node applies the stored settings.
    Settings,
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    node: String,
    #[serde(flatten)]
    news: News,
}

/// One node's end of the relay.
pub struct PgRelay {
    pool: PgPool,
    url: String,
    node: String,
}

impl PgRelay {
    /// A relay for the database at `url`, with its own small pool for announcements.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool = sqlx::postgres::PgPoolOptions::new().max_connections(2).connect(url).await.map_err(backend)?;
        Ok(Self { pool, url: url.to_string(), node: uuid::Uuid::new_v4().to_string() })
    }

    /// Announces `news` in one statement: each NOTIFY is a commit on the server, so one per
    /// event would cost a WAL flush per event.
    pub async fn announce(&self, news: Vec<News>) -> Result<(), StoreError> {
        let payloads: Vec<String> = news
            .into_iter()
            .map(|news| serde_json::to_string(&Envelope { node: self.node.clone(), news }).expect("news serialises"))
            .collect();
        sqlx::query("SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload")
            .bind(CHANNEL)
            .bind(payloads)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    /// The other nodes' news, as it comes. The listening connection reconnects by itself after
    /// a drop (news sent meanwhile is missed, see above).
    pub async fn listen(&self) -> Result<impl Stream<Item = News> + use<>, StoreError> {
        let mut listener = PgListener::connect(&self.url).await.map_err(backend)?;
        listener.listen(CHANNEL).await.map_err(backend)?;
        let node = self.node.clone();
        Ok(futures::stream::unfold((listener, node), |(mut listener, node)| async move {
            loop {
                match listener.recv().await {
                    Ok(notification) => match serde_json::from_str::<Envelope>(notification.payload()) {
                        Ok(envelope) if envelope.node != node => return Some((envelope.news, (listener, node))),
                        Ok(_) => continue, // our own
                        Err(error) => tracing::warn!(%error, "ignoring unreadable live news"),
                    },
                    Err(error) => {
                        tracing::warn!(%error, "live news connection lost; reconnecting");
                        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    }
                }
            }
        }))
    }
}
