//! Wiring: builds every part from a `Config` and starts the server. `main` is the CLI around it;
//! the integration tests start the same server through `start`.

pub mod config;
mod intents_keeper;
pub mod jobs;
mod relay;
pub mod settings;
mod singleton;
mod webhooks;

use anyhow::Context;
use config::{Config, TelegramMode};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use switchboard_admin_web::AppState;
use switchboard_admin_web::signin::SignInGuard;
use switchboard_channels::email::{EmailAdapter, NotificationMailer, EmailOutbound, EmailSettings, ImapSecurity, ImapSettings, SmtpSecurity, SmtpSettings};
use switchboard_channels::discord::{DiscordAdapter, DiscordOutbound, DiscordSettings};
use switchboard_channels::telegram::{Mode as TelegramModeSetting, TelegramAdapter, TelegramOutbound, TelegramSettings};
use switchboard_channels::webchat::{
    AddressLimits, VisitorKeys, WebChatHub, WebChatOutbound, WebChatSettings, WebChatState,
};
use switchboard_core::ports::{BlobStore, Clock, Outbound, Store, SystemClock, TokenBuckets};
use switchboard_core::{Engine, EngineLimits, EventBus, OutboxWorker, Policy, RateLimiter, TrustedProxies};
use switchboard_core::ports::{Assistant, BotIntents, Classifier};
use switchboard_nlp::{
    EncoderError, IntentsSource, KeywordClassifier, LlmClient, LlmSettings, MiniLmEncoder, ModelClassifier, SentenceEncoder,
};
use switchboard_store::{FileBlobs, PgBuckets};
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use singleton::Singletons;

/// A started server. Dropping it does not stop it; call `shutdown`.
pub struct Running {
    pub addr: SocketAddr,
    pub engine: Arc<Engine>,
    /// Set when the model classifier runs: the bot's intents (reload on SIGHUP, the Bot page).
    pub intents: Option<Arc<dyn BotIntents>>,
    /// Runs the `[jobs]` when due (tests call `run_due` after moving the clock).
    pub scheduler: Arc<switchboard_core::schedule::Scheduler>,
    store: Arc<dyn Store>,
    stop: oneshot::Sender<()>,
    /// Cancelled first on a stop: live connections end (widgets are told to reconnect).
    closing: CancellationToken,
    /// Cancelled once in-flight answers are done: the outbox makes its last pass.
    outbox_stop: CancellationToken,
    outbox: JoinHandle<()>,
    server: JoinHandle<std::io::Result<()>>,
    /// Channel sessions and helpers; stopped where they stand (each resumes from the store).
    workers: Vec<JoinHandle<()>>,
    /// Leases of the channel sessions, given up on a clean stop.
    singletons: Arc<Singletons>,
    shutdown_timeout: Duration,
}

impl Running {
    /// A clean stop within `server.shutdown_timeout_seconds`: stop accepting, tell widgets to
    /// reconnect (WebSocket close 1012), let open requests and in-flight answers finish, make a
    /// last outbox pass, stop the channel sessions, then close the store (SQLite folds its WAL
    /// into the database file). Whatever is cut off by the deadline is stored already and is
    /// answered or delivered on the next start.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + self.shutdown_timeout;
        self.closing.cancel();
        let _ = self.stop.send(());
        let served = until(deadline, "open requests", self.server).await;
        until(deadline, "answers in flight", self.engine.finish_answers()).await;
        self.outbox_stop.cancel();
        until(deadline, "the outbox's last pass", self.outbox).await;
        for worker in self.workers {
            worker.abort();
        }
        self.singletons.release_all().await;
        self.store.close().await;
        match served {
            Some(joined) => joined.context("server task panicked")?.context("server failed"),
            None => Ok(()),
        }
    }

    /// Serves until `stop` completes, then stops as `shutdown` does; returns early if the
    /// server fails.
    pub async fn serve_until(mut self, stop: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
        tokio::select! {
            joined = &mut self.server => joined.context("server task panicked")?.context("server failed"),
            _ = stop => self.shutdown().await,
        }
    }

    /// Waits until the server stops (it stops on its own only on error).
    pub async fn wait(self) -> anyhow::Result<()> {
        self.server.await.context("server task panicked")?.context("server failed")
    }
}

/// Hands memory freed after a large read (a search's full-text doclists, a big page) back to
/// the system every 10 s: glibc keeps freed heap pages otherwise, and a node's RSS would settle
/// at its busiest moment instead of its working set. Each return is counted
/// (`switchboard_memory_returns_total`) and logged (debug, target `switchboard::memory`), so a
/// measurement from outside can start right after one.
async fn return_freed_memory() {
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(10)).await;
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        {
            // SAFETY: malloc_trim only releases free pages; it is safe to call from any thread.
            let _ = tokio::task::spawn_blocking(|| unsafe { libc::malloc_trim(0) }).await;
            metrics::counter!("switchboard_memory_returns_total").increment(1);
            tracing::debug!(target: "switchboard::memory", "returned freed heap to the system");
        }
    }
}

/// Several nodes: every minute, drops the rate-limit buckets idle for ten (full again by then).
async fn forget_idle_buckets(buckets: Arc<dyn TokenBuckets>) {
    loop {
        tokio::time::sleep(Duration::from_secs(60)).await;
        if let Err(error) = buckets.forget_idle(chrono::Utc::now() - chrono::Duration::minutes(10)).await {
            tracing::warn!(%error, "forgetting idle rate-limit buckets failed; trying again in a minute");
        }
    }
}

/// Several nodes: every 5 s, answers the customer messages a dead node stored and left.
async fn take_over_stranded_answers(engine: Arc<Engine>) {
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        match engine.answer_stranded_messages().await {
            Ok(0) => {}
            Ok(taken) => tracing::warn!(taken, "answered customer messages another node stored and left unanswered"),
            Err(error) => tracing::warn!(%error, "answering messages another node left failed; trying again in 5 s"),
        }
    }
}

/// Fires due timers every second; at start, those that came due while the server was stopped.
/// A full batch is followed at once by the next, so a backlog drains at the store's pace.
async fn fire_timers(engine: Arc<Engine>) {
    loop {
        match engine.fire_due_timers().await {
            Ok(0) => {}
            Ok(fired) if fired >= switchboard_core::TIMER_BATCH => continue,
            Ok(fired) => tracing::debug!(fired, "timers fired"),
            Err(error) => tracing::warn!(%error, "firing due timers failed; trying again in a second"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Gauges read from the store every 5 s: the outbox's backlog and its oldest reply's age, and
/// the conversations waiting for an agent.
async fn sample_backlogs(store: Arc<dyn Store>) {
    loop {
        if let Ok((backlog, oldest)) = store.outbox_backlog().await {
            metrics::gauge!("switchboard_outbox_backlog").set(backlog as f64);
            let age = oldest.map_or(0.0, |at| (chrono::Utc::now() - at).num_milliseconds().max(0) as f64 / 1000.0);
            metrics::gauge!("switchboard_outbox_oldest_seconds").set(age);
        }
        if let Ok(queue) = store.queue_view().await {
            metrics::gauge!("switchboard_queue_waiting").set(f64::from(queue.waiting));
            metrics::gauge!("switchboard_agents_online").set(f64::from(queue.agents_online));
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// The process's metrics recorder, installed by the first server started in it (tests start
/// several); `None` if another recorder was installed first. Histograms are drained every 5 s.
fn metrics_handle() -> Option<metrics_exporter_prometheus::PrometheusHandle> {
    static HANDLE: std::sync::OnceLock<Option<metrics_exporter_prometheus::PrometheusHandle>> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder().ok()?;
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(Duration::from_secs(5));
                    upkeep.run_upkeep();
                })
                .ok()?;
            Some(handle)
        })
        .clone()
}

/// Waits for `what` until `deadline`; past it, logs what was cut off and gives up on it.
async fn until<T>(deadline: tokio::time::Instant, what: &str, future: impl std::future::Future<Output = T>) -> Option<T> {
    let done = tokio::time::timeout_at(deadline, future).await.ok();
    if done.is_none() {
        tracing::warn!("the stop deadline (server.shutdown_timeout_seconds) passed while waiting for {what}; it resumes on the next start");
    }
    done
}

/// Opens and migrates the database `database.url` names: SQLite (`sqlite://…`, the embedded
/// default) or PostgreSQL (`postgres://…`, shared by several nodes).
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    let shown = config.database.redacted_url();
    let hint = if config.database.is_postgres() { "; is PostgreSQL running and the URL right?" } else { "" };
    switchboard_store::open_with(&config.database.url, config.database.max_connections)
        .await
        .with_context(|| format!("opening the database (database.url = {shown}){hint}"))
}

pub async fn start(config: &Config) -> anyhow::Result<Running> {
    start_with_clock(config, Arc::new(SystemClock)).await
}

/// `start` with the engine's clock given (tests move a `ManualClock` instead of sleeping).
pub async fn start_with_clock(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Running> {
    let store = open_store(config).await?;
    // Settings admins changed in the panel override the configuration from the start.
    let settings = Arc::new(settings::ConfigSettings::new(config.clone()));
    let stored = store.stored_settings().await.context("reading the panel's settings")?;
    let effective = settings.effective(&stored).unwrap_or_else(|error| {
        tracing::error!(%error, "the panel's settings do not apply; running on the configuration alone until they are fixed on the Settings page");
        config.clone()
    });
    let config = &effective;
    let secret = match &config.server.secret {
        Some(secret) => secret.0.clone(),
        None => store.setting_or_insert("visitor_token_secret", &random_secret()).await?,
    };
    // How the outside connections are doing, written for every node's /readyz and System page.
    let health = Arc::new(switchboard_core::HealthBoard::new(config.node_name()));
    let llm = llm_client(config, Some(health.clone()));
    let commit_lag = Arc::new(switchboard_core::CommitLag::default());
    let nlu = build_classifier(config, llm.clone(), commit_lag.clone()).await?;
    let blobs: Arc<dyn BlobStore> = Arc::new(
        FileBlobs::open(&config.attachments.dir)
            .with_context(|| format!("attachments.dir = {}", config.attachments.dir.display()))?,
    );
    let engine = Engine::new(
        store.clone(),
        blobs.clone(),
        nlu.classifier.clone(),
        clock.clone(),
        EventBus::new(4096),
        policy(config),
        EngineLimits {
            max_text_chars: config.webchat.max_message_chars,
            max_upload_bytes: config.attachments.max_bytes,
            inbound_attempts: config.server.inbound_attempts,
        },
    );
    let engine = engine.with_health(health.clone()).with_commit_lag(commit_lag);
    let engine = match config.database.is_postgres() {
        true => engine.shared_with_other_nodes(chrono::Duration::seconds(config.server.takeover_after_seconds as i64)),
        false => engine,
    };
    let mut workers = Vec::new();
    // The model's intents as recorded versions: the file (when new or changed) or the newest
    // version edited in the panel, followed as any node records another.
    let intents = match nlu.model.clone() {
        Some(model) => {
            let keeper = Arc::new(intents_keeper::IntentsKeeper::new(model, store.clone(), engine.bus().clone(), clock.clone(), config.nlp.intents_file.clone()));
            let report = keeper.sync().await.map_err(anyhow::Error::msg).context("recording and loading the intents (nlp.intents_file)")?;
            tracing::info!("{report}");
            workers.push(tokio::spawn(keeper.clone().follow()));
            Some(keeper as Arc<dyn BotIntents>)
        }
        None => None,
    };
    let engine = match &llm {
        Some(assistant) => {
            let (engine, wake) = engine.with_summaries();
            let engine = Arc::new(engine);
            // A lease past the assistant's timeout: a node that died mid-request is replaced after it.
            let lease = chrono::Duration::milliseconds(3 * config.llm.timeout_ms as i64).max(chrono::Duration::seconds(5));
            workers.push(tokio::spawn(write_summaries(engine.clone(), assistant.clone(), wake, lease)));
            engine
        }
        None => Arc::new(engine),
    };
    // Messages stored before the last stop but never answered keep their place ahead of any
    // new message, so they are taken before a channel starts.
    let unanswered = engine.unanswered().await.context("reading the messages still to answer")?;
    if !unanswered.is_empty() {
        tracing::info!(count = unanswered.len(), "answering messages stored before the last stop");
    }
    for received in unanswered {
        engine.answer_later(received);
    }
    let hub = Arc::new(WebChatHub::default());
    // On PostgreSQL other nodes may share the database: news goes both ways over LISTEN/NOTIFY.
    let (delivered, delivered_here) = tokio::sync::mpsc::unbounded_channel();
    let webchat_outbound = match config.database.is_postgres() {
        true => WebChatOutbound::new(hub.clone()).relayed(delivered),
        false => WebChatOutbound::new(hub.clone()),
    };
    if config.database.is_postgres() {
        let relaying = relay::start(&config.database.url, engine.clone(), hub.clone(), delivered_here).await;
        workers.extend(relaying.context("listening for the other nodes' news (database.url)")?);
    }
    let mut senders: Vec<Arc<dyn Outbound>> = vec![Arc::new(webchat_outbound)];
    let singletons = Arc::new(Singletons::new(store.clone(), config.node_name(), config.database.is_postgres(), health.clone()));
    // The adapters that read a set-aside inbound event again (System page, /api/dead-letters).
    let mut replayers: Vec<Arc<dyn switchboard_core::InboundReplay>> = Vec::new();
    let telegram = match telegram_settings(config, store.as_ref()).await? {
        Some(settings) => {
            senders.push(Arc::new(TelegramOutbound::new(&settings, blobs.clone())));
            let adapter = Arc::new(TelegramAdapter::new(engine.clone(), settings.clone()));
            replayers.push(adapter.clone());
            match settings.mode {
                TelegramModeSetting::Polling => {
                    let adapter = adapter.clone();
                    workers.push(singletons.spawn("telegram", move || tokio::spawn(adapter.clone().run_polling())));
                }
                TelegramModeSetting::Webhook { .. } => {
                    if let Err(error) = adapter.register_webhook().await {
                        tracing::error!(%error, "could not register the Telegram webhook; check telegram.webhook_url and the token");
                    }
                }
            }
            health.expect("telegram");
            tracing::info!(mode = ?config.telegram.mode, "Telegram channel on");
            Some(adapter)
        }
        None => None,
    };
    if let Some(token) = &config.discord.token {
        let settings = DiscordSettings {
            token: token.0.clone(),
            rest_proxy: config.discord.api_proxy.clone(),
            served_channels: config.discord.served_channels.clone(),
            max_file_bytes: config.attachments.max_bytes,
        };
        senders.push(Arc::new(DiscordOutbound::new(&settings, blobs.clone())));
        let adapter = Arc::new(DiscordAdapter::new(engine.clone(), settings));
        replayers.push(adapter.clone());
        workers.push(singletons.spawn("discord", move || tokio::spawn(adapter.clone().run())));
        health.expect("discord");
        tracing::info!("Discord channel on");
    }
    if let Some(settings) = email_settings(config) {
        let outbound = EmailOutbound::new(settings.clone(), store.clone(), blobs.clone()).map_err(anyhow::Error::msg)?.reporting_to(health.clone());
        senders.push(Arc::new(outbound));
        if config.email.notify_agents || config.closing.email_copies {
            // Agents' notifications and customers' notice copies: one mailer for both.
            let mailer = Arc::new(NotificationMailer::new(settings.clone(), store.clone(), config.server.public_url.clone()).map_err(anyhow::Error::msg)?);
            let bus = engine.bus().clone();
            workers.push(singletons.spawn("notification_mail", move || tokio::spawn(mailer.clone().run(bus.subscribe_local()))));
        }
        let adapter = Arc::new(EmailAdapter::new(engine.clone(), settings));
        replayers.push(adapter.clone());
        workers.push(singletons.spawn("email", move || tokio::spawn(adapter.clone().run())));
        health.expect("email");
        health.expect("smtp");
        tracing::info!("email channel on");
    }
    workers.push(tokio::spawn(sample_backlogs(store.clone())));
    workers.push(tokio::spawn(switchboard_channels::webchat::show_agents_cues(engine.clone(), hub.clone())));
    workers.push(tokio::spawn(fire_timers(engine.clone())));
    let scheduler = Arc::new(jobs::scheduler(config, store.clone(), blobs.clone(), clock.clone())?);
    scheduler.plan().await.context("entering the scheduled jobs ([jobs])")?;
    if !scheduler.is_empty() {
        workers.push(tokio::spawn(jobs::run_scheduled(scheduler.clone())));
    }
    // The reports' per-day counts catch up at once (after an upgrade: the whole history), not
    // at the job's next hour; counting a day twice is impossible (`roll_up_reports`).
    if !config.jobs.reports.schedule.trim().is_empty() {
        let (store, clock) = (store.clone(), clock.clone());
        workers.push(tokio::spawn(async move {
            if let Err(error) = jobs::roll_up_reports(store.as_ref(), clock.now()).await {
                tracing::warn!(%error, "counting the reports' past days failed; the reports job tries again within the hour");
            }
        }));
    }
    // Several nodes share rate limits through the database; one node counts in memory.
    let buckets: Option<Arc<dyn TokenBuckets>> = match config.database.is_postgres() {
        true => {
            let buckets: Arc<dyn TokenBuckets> = Arc::new(PgBuckets::connect(&config.database.url).await?);
            workers.push(tokio::spawn(take_over_stranded_answers(engine.clone())));
            workers.push(tokio::spawn(forget_idle_buckets(buckets.clone())));
            Some(buckets)
        }
        false => None,
    };
    workers.push(tokio::spawn(return_freed_memory()));
    workers.push(tokio::spawn(health.clone().run(store.clone(), switchboard_core::health::HEARTBEAT)));
    // Every node posts webhooks: a delivery is claimed by one node at a time.
    let webhooks = switchboard_core::webhooks::WebhookWorker::new(store.clone(), Arc::new(webhooks::HttpPoster::new()?), config.webhooks.rules());
    workers.push(tokio::spawn(webhooks.run(CancellationToken::new())));
    let outbox_stop = CancellationToken::new();
    let retry_window = Duration::from_secs(config.server.delivery_retry_window_seconds);
    let outbox = OutboxWorker::new(store.clone(), senders, engine.outbox_wake(), engine.bus().clone(), retry_window);
    let outbox = tokio::spawn(outbox.run(outbox_stop.clone()));
    let closing = CancellationToken::new();

    let w = &config.webchat;
    let trusted_proxies = Arc::new(TrustedProxies::parse(&config.server.trusted_proxies).map_err(anyhow::Error::msg)?);
    let limits = settings::LiveLimits {
        visitor: Arc::new(RateLimiter::new(w.rate_limit_per_minute, w.rate_limit_burst).shared("webchat_visitor", buckets.clone())),
        address: Arc::new(AddressLimits::new(w.sessions_per_address_per_minute, w.messages_per_address_per_minute, buckets.clone())),
        sign_in: Arc::new(SignInGuard::new(config.server.sign_in_per_minute, config.server.sign_in_burst, buckets.clone())),
        api: Arc::new(RateLimiter::new(config.server.api_requests_per_minute, config.server.api_requests_per_minute.div_ceil(5)).shared("api_token", buckets)),
        accounts: Arc::new(switchboard_admin_web::accounts::AccountRules::new(config.server.session_days, config.server.password_min_chars)),
        widget: Arc::new(switchboard_channels::webchat::LiveAppearance::new(settings::widget_appearance(config))),
    };
    let webchat = WebChatState {
        engine: engine.clone(),
        hub: hub.clone(),
        settings: Arc::new(WebChatSettings {
            appearance: limits.widget.clone(),
            max_message_chars: w.max_message_chars,
            long_poll: Duration::from_secs(w.long_poll_seconds),
            max_sockets_per_visitor: w.max_sockets_per_visitor,
            identity_secret: w.identity_secret.as_ref().map(|s| s.0.clone().into_bytes()),
        }),
        visitor_keys: Arc::new(VisitorKeys::new(secret.into_bytes())),
        visitor_limiter: limits.visitor.clone(),
        address_limits: limits.address.clone(),
        trusted_proxies: trusted_proxies.clone(),
        closing: closing.clone(),
    };
    let channel_routes = switchboard_channels::webchat::routes(webchat).merge(switchboard_channels::telegram::webhook_routes(telegram));
    let state = AppState {
        engine: engine.clone(),
        visitors: hub,
        views: Arc::new(switchboard_admin_web::panel::Views::new()),
        sign_in: limits.sign_in.clone(),
        trusted_proxies,
        api_limiter: limits.api.clone(),
        account_rules: limits.accounts.clone(),
        secure_cookies: config.server.public_url.as_deref().is_some_and(|url| url.starts_with("https://")),
        public_url: config.server.public_url.clone(),
        metrics: metrics_handle(),
        metrics_token: config.server.metrics_token.as_ref().map(|t| t.0.clone()),
        assistant: llm.map(|l| l as Arc<dyn Assistant>),
        intents: intents.clone(),
        settings: settings.clone(),
        own_and_queued_only: config.server.agents_see_only_own_and_queued,
        replayers: Arc::new(replayers),
        closing: closing.clone(),
    };
    settings.hold_limits(limits);
    workers.push(tokio::spawn(follow_settings(engine.clone(), settings.clone())));
    let listen = config.listen_addr()?;
    let listener = TcpListener::bind(listen).await.with_context(|| format!("listening on {listen} (server.listen)"))?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let app = switchboard_admin_web::app(state, channel_routes).into_make_service_with_connect_info::<SocketAddr>();
    let server = tokio::spawn(async move {
        axum::serve(listener.tap_io(no_delay), app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    Ok(Running {
        addr,
        engine,
        intents,
        scheduler,
        store,
        stop,
        closing,
        outbox_stop,
        outbox,
        server,
        workers,
        singletons,
        shutdown_timeout: Duration::from_secs(config.server.shutdown_timeout_seconds),
    })
}

/// Puts the settings in force whenever any node's admins change them (the saving node put them
/// in force already; applying them again is harmless).
async fn follow_settings(engine: Arc<Engine>, settings: Arc<settings::ConfigSettings>) {
    let mut events = engine.bus().subscribe();
    loop {
        match events.recv().await {
            Ok(switchboard_models::DomainEvent::SettingsChanged) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                if let Err(error) = engine.apply_settings(settings.as_ref()).await {
                    tracing::error!(%error, "the changed settings could not be put in force; the ones before stay");
                }
            }
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Replies are small frames written right after an `ack`: without TCP_NODELAY, Nagle's
/// algorithm holds the second one until the peer's delayed ACK, about 40 ms per reply.
fn no_delay(socket: &mut tokio::net::TcpStream) {
    if let Err(error) = socket.set_nodelay(true) {
        tracing::debug!(%error, "could not set TCP_NODELAY on an accepted connection");
    }
}

/// Asks the LLM for the summary of each escalation that wants one (stored with its step, so
/// none is lost to a crash), when woken by an escalation and every 5 s.
async fn write_summaries(engine: Arc<Engine>, assistant: Arc<LlmClient>, wake: Arc<tokio::sync::Notify>, lease: chrono::Duration) {
    loop {
        match engine.write_wanted_summaries(assistant.as_ref(), lease).await {
            Ok(taken) if taken > 0 => continue,
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "could not read the summaries wanted; trying again"),
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), wake.notified()).await;
    }
}

/// The classifier the engine uses, and the model classifier when it is one.
struct Nlu {
    classifier: Arc<dyn Classifier>,
    model: Option<Arc<ModelClassifier>>,
}

fn llm_client(config: &Config, health: Option<Arc<switchboard_core::HealthBoard>>) -> Option<Arc<LlmClient>> {
    let l = &config.llm;
    let base_url = l.base_url.clone()?;
    tracing::info!(%base_url, model = %l.model, timeout_ms = l.timeout_ms, "hosted LLM on");
    let client = LlmClient::new(LlmSettings {
        base_url,
        api_key: l.api_key.as_ref().map(|k| k.0.clone()),
        model: l.model.clone(),
        timeout: Duration::from_millis(l.timeout_ms),
        max_requests_per_minute: l.max_requests_per_minute,
    });
    Some(Arc::new(match health {
        Some(board) => {
            board.expect("llm");
            client.reporting_to(board)
        }
        None => client,
    }))
}

/// The classifier `serve` would run with this configuration (the hosted LLM included when set).
pub async fn service_classifier(config: &Config) -> anyhow::Result<Arc<dyn Classifier>> {
    // No engine commits here: the lag stays zero.
    Ok(build_classifier(config, llm_client(config, None), Arc::default()).await?.classifier)
}

/// The model classifier when the model loads; otherwise the keyword rules, saying why. A broken
/// intents file stops the start: there is no earlier good one to keep.
/// `commit_lag`: the engine's commit times, which the model classifier reads.
async fn build_classifier(config: &Config, llm: Option<Arc<LlmClient>>, commit_lag: Arc<switchboard_core::CommitLag>) -> anyhow::Result<Nlu> {
    let keywords = |why: String| {
        tracing::warn!("classifier: keyword rules ({why})");
        Ok(Nlu { classifier: Arc::new(KeywordClassifier), model: None })
    };
    let n = config.nlp.clone();
    if !n.enabled {
        return keywords("nlp.enabled is false".into());
    }
    let encoders = match tokio::task::spawn_blocking(move || load_encoders(&n)).await? {
        Ok(encoders) => encoders,
        Err(e) => return keywords(e.to_string()),
    };
    let n = config.nlp.clone();
    let source = match &n.intents_file {
        Some(path) => IntentsSource::File(path.clone()),
        None => IntentsSource::BuiltIn,
    };
    let loaded = tokio::task::spawn_blocking(move || {
        ModelClassifier::load(encoders, source, Some(n.cache_dir.clone()), llm, n.llm_below)
    })
    .await?;
    let (classifier, report) = loaded.context("loading the intents (nlp.intents_file)")?;
    let classifier = classifier
        .with_llm_answers(config.llm.answer_out_of_scope)
        .with_queue_budget(Duration::from_millis(config.nlp.queue_budget_ms))
        .with_commit_lag(commit_lag);
    let n = config.nlp.clone();
    let classifier = tokio::task::spawn_blocking(move || with_first_stage(classifier, &n)).await??;
    tracing::info!(
        model = %config.nlp.model_dir.display(),
        backend = %config.nlp.resolved_backend(),
        "classifier: sentence encoder; {report}"
    );
    let classifier = Arc::new(classifier);
    Ok(Nlu { classifier: classifier.clone(), model: Some(classifier) })
}

/// Adds the first stage when `nlp.first_stage` is on and its static vectors are installed;
/// without them every message goes through the sentence encoder, as the log says.
pub fn with_first_stage(classifier: ModelClassifier, nlp: &config::NlpConfig) -> anyhow::Result<ModelClassifier> {
    if !nlp.first_stage {
        return Ok(classifier);
    }
    match switchboard_nlp::StaticEncoder::load(&nlp.model_dir) {
        Ok(encoder) => {
            let classifier = classifier.with_first_stage(Arc::new(encoder)).context("training the classifier's first stage")?;
            tracing::info!("classifier: first stage on (static token vectors): plain messages it is sure of skip the sentence encoder");
            Ok(classifier)
        }
        Err(e) => {
            tracing::warn!("classifier: first stage off ({e}); every message goes through the sentence encoder");
            Ok(classifier)
        }
    }
}

/// The sentence encoder, and the judgement's multilingual encoder when `nlp.multilingual` is on
/// and it is installed (otherwise the log says why the judgement reads English vectors only).
pub fn load_encoders(nlp: &config::NlpConfig) -> Result<switchboard_nlp::Encoders, EncoderError> {
    let sentence = load_encoder(nlp)?;
    if !nlp.multilingual {
        return Ok(sentence.into());
    }
    match switchboard_nlp::MultilingualEncoder::load(&nlp.multilingual_dir) {
        Ok(encoder) => Ok(switchboard_nlp::Encoders { sentence, multilingual: Some(Arc::new(encoder)) }),
        Err(e) => {
            tracing::warn!("classifier: the judgement reads the English sentence encoder alone, without the multilingual one ({e})");
            Ok(sentence.into())
        }
    }
}

/// The sentence encoder on the engine `nlp.backend` names.
pub fn load_encoder(nlp: &config::NlpConfig) -> Result<Arc<dyn SentenceEncoder>, EncoderError> {
    match nlp.resolved_backend() {
        config::BACKEND_ONNX => {
            Ok(Arc::new(switchboard_nlp::OnnxMiniLmEncoder::load(&nlp.model_dir, &nlp.onnx_model_path(), &nlp.onnx_runtime)?))
        }
        config::BACKEND_RUST_BERT => {
            #[cfg(feature = "rust-bert")]
            return Ok(Arc::new(switchboard_nlp::RustBertEncoder::load(&nlp.model_dir)?));
            // Config validation refuses this already; kept for configs built in code.
            #[cfg(not(feature = "rust-bert"))]
            return Err(EncoderError::Load {
                dir: nlp.model_dir.clone(),
                reason: "this binary was built without the rust-bert backend; rebuild with `--features rust-bert`".into(),
            });
        }
        _ => Ok(Arc::new(MiniLmEncoder::load(&nlp.model_dir)?)),
    }
}

/// Telegram's settings when a token is configured.
async fn telegram_settings(config: &Config, store: &dyn Store) -> anyhow::Result<Option<TelegramSettings>> {
    let t = &config.telegram;
    let Some(token) = &t.token else {
        return Ok(None);
    };
    let parse = |key: &str, url: &str| url::Url::parse(url).with_context(|| format!("{key} = {url}"));
    let mode = match t.mode {
        TelegramMode::Polling => TelegramModeSetting::Polling,
        TelegramMode::Webhook => {
            let url = t.webhook_url.as_deref().context("telegram.webhook_url is required in webhook mode")?;
            let secret = match &t.webhook_secret {
                Some(secret) => secret.0.clone(),
                None => store.setting_or_insert("telegram_webhook_secret", &random_secret()).await?,
            };
            TelegramModeSetting::Webhook { url: parse("telegram.webhook_url", url)?, secret }
        }
    };
    Ok(Some(TelegramSettings {
        token: token.0.clone(),
        api_url: t.api_url.as_deref().map(|u| parse("telegram.api_url", u)).transpose()?,
        mode,
        group_chats: t.group_chats.clone(),
        max_file_bytes: config.attachments.max_bytes,
    }))
}

fn email_settings(config: &Config) -> Option<EmailSettings> {
    let e = &config.email;
    let address = e.address.clone()?;
    Some(EmailSettings {
        imap: ImapSettings {
            host: e.imap_host.clone(),
            port: e.imap_port,
            security: if e.imap_security == "none" { ImapSecurity::None } else { ImapSecurity::Tls },
            ca_file: e.imap_ca_file.clone(),
            username: e.imap_username.clone(),
            password: e.imap_password.as_ref().map(|s| s.0.clone()).unwrap_or_default(),
            mailbox: e.imap_mailbox.clone(),
            poll_interval: Duration::from_secs(e.poll_seconds),
        },
        smtp: SmtpSettings {
            host: e.smtp_host.clone(),
            port: e.smtp_port,
            security: match e.smtp_security.as_str() {
                "none" => SmtpSecurity::None,
                "tls" => SmtpSecurity::Tls,
                _ => SmtpSecurity::StartTls,
            },
            username: e.smtp_username.clone(),
            password: e.smtp_password.as_ref().map(|s| s.0.clone()),
        },
        address,
        display_name: e.display_name.clone(),
        per_sender_per_minute: e.per_sender_per_minute,
    })
}

/// The bot's policy from the configuration, as `serve` runs it (a validated configuration:
/// its business hours parse).
pub fn policy(config: &Config) -> Policy {
    let bot = &config.bot;
    let hours = config.business_hours.schedule().unwrap_or_else(|error| {
        tracing::error!(%error, "business hours are invalid; running without them");
        None
    });
    let ask_email = config.business_hours.outside_hours == "ask_email";
    let channel_hours = config.business_hours.channel_schedules().unwrap_or_default();
    Policy {
        hours,
        channel_hours,
        handoff_closed: bot.handoff_closed.clone(),
        waiting_notice_every: (bot.waiting_notice_minutes > 0).then(|| std::time::Duration::from_secs(bot.waiting_notice_minutes * 60)),
        waiting_notice: bot.waiting_notice.clone(),
        waiting_notice_closed: bot.waiting_notice_closed.clone(),
        ask_email_outside_hours: ask_email.then(|| bot.ask_email.clone()),
        email_noted: bot.email_noted.clone(),
        low_confidence_threshold: bot.low_confidence_threshold,
        clarifying_question: bot.clarifying_question.clone(),
        low_confidence_escalate_after: bot.low_confidence_escalate_after,
        negative_sentiment_threshold: bot.negative_sentiment_threshold,
        escalate_at_least: bot.escalate_at_least,
        handoff_queued: bot.handoff_queued.clone(),
        handoff_offline: bot.handoff_offline.clone(),
        priority_rules: bot.priority_rules.clone(),
        allow_over_capacity: bot.allow_over_capacity,
        quiet: switchboard_core::timers::QuietRules {
            remind_waiting_after: after_hours(bot.remind_waiting_after_hours),
            resolve_waiting_after: after_hours(bot.resolve_waiting_after_hours),
            close_resolved_after: after_hours(bot.close_resolved_after_hours),
            close_idle_bot_after: after_hours(bot.close_idle_bot_after_hours),
            waiting_reminder: bot.waiting_reminder.clone(),
            waiting_resolved: bot.waiting_resolved.clone(),
        },
        sla: config.sla.policy(),
        mailed_notices: config.mailed_notices().unwrap_or_default(),
        // Copies are mailed only where the email channel can send them.
        closing: switchboard_core::closing::ClosingPolicy {
            email_copies: config.closing.email_copies && email_settings(config).is_some(),
            ..config.closing.clone()
        },
        documents: config.documents.clone(),
        languages: bot.languages.clone(),
        ..Policy::default()
    }
}

/// A quiet-conversation rule from its hours in the configuration (0: off).
fn after_hours(hours: u64) -> Option<std::time::Duration> {
    (hours > 0).then(|| std::time::Duration::from_secs(hours * 3600))
}

fn random_secret() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}
