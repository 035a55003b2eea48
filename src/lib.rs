//! Wiring: builds every part from a `Config` and starts the server. `main` is the CLI around it;
//! the integration tests start the same server through `start`.

pub mod config;

use anyhow::Context;
use config::Config;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use switchboard_admin_web::{AllowedOrigins, AppState, RateLimiter, VisitorKeys, WebChatSettings, WidgetLook};
use switchboard_channels::webchat::{WebChatHub, WebChatOutbound};
use switchboard_core::ports::{Store, SystemClock};
use switchboard_core::{Engine, EngineLimits, EventBus, OutboxWorker, Policy};
use switchboard_nlp::KeywordClassifier;
use switchboard_store::SqliteStore;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A started server. Dropping it does not stop it; call `shutdown`.
pub struct Running {
    pub addr: SocketAddr,
    pub engine: Arc<Engine>,
    stop: oneshot::Sender<()>,
    server: JoinHandle<std::io::Result<()>>,
    workers: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stops accepting, lets open requests finish, and stops the workers.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        // Open WebSockets would hold a graceful shutdown forever; give them a moment.
        let result = tokio::time::timeout(Duration::from_secs(2), self.server).await;
        for worker in self.workers {
            worker.abort();
        }
        match result {
            Ok(joined) => joined.context("server task panicked")?.context("server failed"),
            Err(_) => Ok(()),
        }
    }

    /// Waits until the server stops (it stops on its own only on error).
    pub async fn wait(self) -> anyhow::Result<()> {
        self.server.await.context("server task panicked")?.context("server failed")
    }
}

pub async fn open_store(config: &Config) -> anyhow::Result<SqliteStore> {
    let store = SqliteStore::open(&config.database.url)
        .await
        .with_context(|| format!("opening the database (database.url = {})", config.database.url))?;
    store.migrate().await.context("migrating the database")?;
    Ok(store)
}

pub async fn start(config: &Config) -> anyhow::Result<Running> {
    let store: Arc<dyn Store> = Arc::new(open_store(config).await?);
    let secret = match &config.server.secret {
        Some(secret) => secret.0.clone(),
        None => store.setting_or_insert("visitor_token_secret", &random_secret()).await?,
    };
    tracing::info!("classifier: keyword rules (no NLP model configured)");
    let engine = Arc::new(Engine::new(
        store.clone(),
        Arc::new(KeywordClassifier),
        Arc::new(SystemClock),
        EventBus::new(4096),
        policy(config),
        EngineLimits { max_text_chars: config.webchat.max_message_chars },
    ));
    let hub = Arc::new(WebChatHub::default());
    let outbox = OutboxWorker::new(
        store.clone(),
        vec![Arc::new(WebChatOutbound::new(hub.clone()))],
        engine.outbox_wake(),
    );
    let workers = vec![tokio::spawn(outbox.run())];

    let w = &config.webchat;
    let state = AppState {
        engine: engine.clone(),
        hub,
        webchat: Arc::new(WebChatSettings {
            allowed_origins: if w.allowed_origins.iter().any(|o| o == "*") {
                AllowedOrigins::Any
            } else {
                AllowedOrigins::List(w.allowed_origins.clone())
            },
            max_message_chars: w.max_message_chars,
            long_poll: Duration::from_secs(w.long_poll_seconds),
            look: WidgetLook {
                title: w.title.clone(),
                primary_color: w.primary_color.clone(),
                text_color: w.text_color.clone(),
                position: w.position.clone(),
                welcome_message: w.welcome_message.clone(),
            },
        }),
        visitor_keys: Arc::new(VisitorKeys::new(secret.into_bytes())),
        rate_limiter: Arc::new(RateLimiter::new(w.rate_limit_per_minute, w.rate_limit_burst)),
    };
    let listen = config.listen_addr()?;
    let listener = TcpListener::bind(listen).await.with_context(|| format!("listening on {listen} (server.listen)"))?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let app = switchboard_admin_web::app(state).into_make_service_with_connect_info::<SocketAddr>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    Ok(Running { addr, engine, stop, server, workers })
}

fn policy(config: &Config) -> Policy {
    let bot = &config.bot;
    Policy {
        low_confidence_threshold: bot.low_confidence_threshold,
        low_confidence_escalate_after: bot.low_confidence_escalate_after,
        negative_sentiment_threshold: bot.negative_sentiment_threshold,
        handoff_queued: bot.handoff_queued.clone(),
        handoff_offline: bot.handoff_offline.clone(),
        ..Policy::default()
    }
}

fn random_secret() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}
