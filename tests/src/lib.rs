//! Shared harness for the integration tests and the bench: the whole server on port 0 over a
//! fresh SQLite file, a WebSocket widget client and an HTTP client.

pub mod databases;
pub mod fake_discord;
pub mod fake_llm;
pub mod fake_telegram;
pub mod mail;
pub mod panel;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::Duration;
use switchboard::config::Config;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub struct TestServer {
    pub addr: SocketAddr,
    pub running: Option<switchboard::Running>,
    pub config: Config,
    /// The database it runs on: SQLite by default, PostgreSQL when TEST_DATABASE=postgres.
    pub database: databases::TestDatabase,
    /// The engine's clock, kept across restarts.
    clock: std::sync::Arc<dyn switchboard_core::ports::Clock>,
    _dir: tempfile::TempDir,
}

/// The backend server tests run on: `TEST_DATABASE=postgres` runs them on PostgreSQL
/// (`scripts/test.sh` runs the server tests once on each).
pub fn test_backend() -> databases::Backend {
    match std::env::var("TEST_DATABASE").as_deref() {
        Ok("postgres") => databases::Backend::Postgres,
        Ok("sqlite") | Err(_) => databases::Backend::Sqlite,
        Ok(other) => panic!("TEST_DATABASE={other}: use sqlite or postgres"),
    }
}

/// A config for tests: loopback, port 0, a database in a new temporary directory.
pub fn test_config(dir: &std::path::Path) -> Config {
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".into();
    config.database.url = format!("sqlite://{}", dir.join("switchboard.db").display());
    config.attachments.dir = dir.join("attachments");
    config.webchat.long_poll_seconds = 2;
    // Channel and panel tests use the keyword rules; the NLP tests turn the model on.
    config.nlp.enabled = false;
    // The tests that turn it on assert its decisions: on two cores busy with the whole suite a
    // message can wait past the overload budget and be decided by the fast path instead.
    // Shedding is tested where a budget is set.
    config.nlp.queue_budget_ms = 0;
    // Their transcripts are the sentence encoder's decisions; the first stage is tested where
    // it is turned on.
    config.nlp.first_stage = false;
    // Every test client is 127.0.0.1: per-address caps are tested where they are set.
    config.webchat.sessions_per_address_per_minute = 100_000;
    config.webchat.messages_per_address_per_minute = 100_000;
    config
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        Self::start_with_clock(std::sync::Arc::new(switchboard_core::ports::SystemClock), adjust).await
    }

    /// With the sentence encoder (its cache beside the attachments), and a hosted LLM at
    /// `llm_base_url` that is given `llm_timeout_ms` to answer; then `adjust`.
    pub async fn start_with_model(llm_base_url: Option<String>, llm_timeout_ms: u64, adjust: impl FnOnce(&mut Config)) -> Self {
        Self::start_with(move |config| {
            config.nlp.enabled = true;
            config.nlp.model_dir = model_dir();
            config.nlp.cache_dir = config.attachments.dir.with_file_name("nlp-cache");
            config.llm.base_url = llm_base_url;
            config.llm.timeout_ms = llm_timeout_ms;
            adjust(config);
        })
        .await
    }

    /// A server whose engine reads `clock` (a `ManualClock` moves time in a test).
    pub async fn start_with_clock(clock: std::sync::Arc<dyn switchboard_core::ports::Clock>, adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = test_config(dir.path());
        let database = databases::TestDatabase::new(test_backend()).await;
        if database.backend == databases::Backend::Postgres {
            config.database.url = database.url.clone();
        }
        adjust(&mut config);
        let running = switchboard::start_with_clock(&config, clock.clone()).await.expect("server starts");
        Self { addr: running.addr, running: Some(running), config, database, clock, _dir: dir }
    }

    /// Stops the server and starts a new one on the same database (a restart).
    pub async fn restart(&mut self) {
        self.stop().await;
        self.start_again().await;
    }

    /// A clean stop; `start_again` starts it on the same database.
    pub async fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await.expect("clean shutdown");
        }
    }

    pub async fn start_again(&mut self) {
        let running = switchboard::start_with_clock(&self.config, self.clock.clone()).await.expect("server restarts");
        self.addr = running.addr;
        self.running = Some(running);
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn engine(&self) -> &switchboard_core::Engine {
        &self.running.as_ref().expect("server running").engine
    }

    /// `/readyz`'s entry for the connection `name` (telegram, discord, email, smtp, llm), once
    /// `wanted` holds for it; the node stays ready whatever the connection's state.
    pub async fn connection_state(&self, name: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let ready: Value = reqwest::get(self.url("/readyz")).await.expect("/readyz").json().await.expect("/readyz JSON");
            let found = ready["connections"].as_array().and_then(|all| all.iter().find(|c| c["name"] == name)).cloned();
            if let Some(found) = found.filter(|found| wanted(found)) {
                assert_eq!(ready["status"], "ready", "a connection's state does not take the node out: {ready}");
                return found;
            }
            assert!(tokio::time::Instant::now() < deadline, "{name} never reached the wanted state: {ready}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn scheduler(&self) -> &switchboard_core::schedule::Scheduler {
        &self.running.as_ref().expect("server running").scheduler
    }

    /// An active, online agent account.
    pub async fn add_agent(&self, name: &str, email: &str) -> switchboard_models::AgentId {
        let agent = switchboard_models::Agent {
            id: switchboard_models::AgentId::new(),
            email: email.into(),
            name: name.into(),
            role: switchboard_models::Role::Agent,
            presence: switchboard_models::Presence::Online,
            capacity: 5,
            active: true,
            created_at: chrono::Utc::now(),
            skills: Vec::new(),
        };
        self.engine().store().save_agent(&agent).await.expect("agent saved");
        agent.id
    }

    /// A new widget visitor: `(visitor_id, token)`.
    pub async fn new_visitor(&self) -> (String, String) {
        let body: Value = reqwest::Client::new()
            .post(self.url("/webchat/session"))
            .send()
            .await
            .expect("session request")
            .json()
            .await
            .expect("session JSON");
        (body["visitor_id"].as_str().unwrap().to_string(), body["token"].as_str().unwrap().to_string())
    }

    pub async fn connect(&self, token: &str) -> Widget {
        self.connect_from(token, None).await.expect("WebSocket connects")
    }

    /// Connects with an optional `Origin` header; the error carries the HTTP status on refusal.
    pub async fn connect_from(&self, token: &str, origin: Option<&str>) -> Result<Widget, u16> {
        Widget::connect(&self.addr.to_string(), token, origin).await
    }
}

impl Widget {
    /// A widget's socket to the server at `host:port`, with an optional `Origin` header; the
    /// error carries the HTTP status on refusal.
    pub async fn connect(host: &str, token: &str, origin: Option<&str>) -> Result<Widget, u16> {
        let mut request = format!("ws://{host}/webchat/ws?token={token}")
            .into_client_request()
            .expect("ws request");
        if let Some(origin) = origin {
            request.headers_mut().insert("origin", origin.parse().unwrap());
        }
        match tokio_tungstenite::connect_async(request).await {
            Ok((socket, _)) => Ok(Widget { socket }),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
            Err(other) => panic!("WebSocket connect failed: {other}"),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            // Best effort: the runtime may already be gone at the end of a test.
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    let _ = running.shutdown().await;
                });
            }
        }
    }
}

/// A widget's socket, speaking the JSON frame protocol.
pub struct Widget {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

pub const FRAME_TIMEOUT: Duration = Duration::from_secs(10);

impl Widget {
    /// This client's end of the connection.
    pub fn local_addr(&self) -> SocketAddr {
        match self.socket.get_ref() {
            MaybeTlsStream::Plain(stream) => stream.local_addr().expect("local address"),
            _ => panic!("test widgets connect without TLS"),
        }
    }

    pub async fn send_json(&mut self, frame: Value) {
        self.send_raw(&frame.to_string()).await;
    }

    pub async fn send_raw(&mut self, text: &str) {
        self.socket.send(WsMessage::Text(text.into())).await.expect("send frame");
    }

    pub async fn say(&mut self, client_id: &str, text: &str) {
        self.send_json(json!({"type": "send", "client_id": client_id, "text": text})).await;
    }

    /// The next JSON frame, or `None` if the socket closed. Panics after `FRAME_TIMEOUT`.
    pub async fn next_frame(&mut self) -> Option<Value> {
        loop {
            let message = tokio::time::timeout(FRAME_TIMEOUT, self.socket.next())
                .await
                .expect("a frame within the timeout");
            match message {
                Some(Ok(WsMessage::Text(text))) => {
                    return Some(serde_json::from_str(&text).expect("server frames are JSON"));
                }
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Skips frames until one of `kind` arrives, returning it.
    pub async fn next_of(&mut self, kind: &str) -> Value {
        loop {
            let frame = self.next_frame().await.unwrap_or_else(|| panic!("socket closed waiting for {kind}"));
            if frame["type"] == kind {
                return frame;
            }
        }
    }

    /// The next `message` frame from someone other than the customer.
    pub async fn next_reply(&mut self) -> Value {
        loop {
            let frame = self.next_of("message").await;
            if frame["message"]["sender"] != "customer" {
                return frame["message"].clone();
            }
        }
    }

    /// Frames that arrive within `window`, for checking that nothing else is said.
    pub async fn frames_within(&mut self, window: Duration) -> Vec<Value> {
        let mut frames = Vec::new();
        let deadline = tokio::time::Instant::now() + window;
        while let Ok(Some(Ok(message))) = tokio::time::timeout_at(deadline, self.socket.next()).await {
            if let WsMessage::Text(text) = message {
                frames.push(serde_json::from_str(&text).expect("JSON frame"));
            }
        }
        frames
    }

    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }

    /// Reads until the server closes the socket; the close code it sent, if any.
    pub async fn close_code(&mut self) -> Option<u16> {
        loop {
            let message = tokio::time::timeout(FRAME_TIMEOUT, self.socket.next()).await.expect("closed within the timeout");
            match message {
                Some(Ok(WsMessage::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                None | Some(Err(_)) => return None,
                Some(Ok(_)) => continue,
            }
        }
    }
}

/// The sentence-encoder model the test command fetched (`./scripts/fetch-model.sh`).
pub fn model_dir() -> std::path::PathBuf {
    let dir = std::env::var_os("SWITCHBOARD_MODEL_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| switchboard::config::NlpConfig::default().model_dir);
    assert!(
        dir.join("model.safetensors").is_file(),
        "no sentence-encoder model in {}; run ./scripts/fetch-model.sh (./scripts/test.sh does)",
        dir.display()
    );
    dir
}

/// The service's default configuration of the local model, on the fetched model (and the
/// multilingual encoder where fetch-model.sh put it).
pub fn nlp_config() -> switchboard::config::NlpConfig {
    let defaults = switchboard::config::NlpConfig::default();
    let multilingual_dir = std::env::var_os("SWITCHBOARD_MULTILINGUAL_DIR").map_or(defaults.multilingual_dir.clone(), std::path::PathBuf::from);
    switchboard::config::NlpConfig { model_dir: model_dir(), multilingual_dir, ..defaults }
}

/// One loaded encoder shared by the tests of this process: the engine the service runs by
/// default (ONNX Runtime once ./scripts/fetch-model.sh installed it).
pub fn encoder() -> std::sync::Arc<dyn switchboard_nlp::SentenceEncoder> {
    static ENCODER: std::sync::OnceLock<std::sync::Arc<dyn switchboard_nlp::SentenceEncoder>> = std::sync::OnceLock::new();
    ENCODER.get_or_init(|| switchboard::load_encoder(&nlp_config()).expect("load the model")).clone()
}

/// The judgement's multilingual encoder, as fetch-model.sh installs it.
pub fn multilingual_encoder() -> std::sync::Arc<switchboard_nlp::MultilingualEncoder> {
    static ENCODER: std::sync::OnceLock<std::sync::Arc<switchboard_nlp::MultilingualEncoder>> = std::sync::OnceLock::new();
    ENCODER
        .get_or_init(|| {
            let dir = nlp_config().multilingual_dir;
            assert!(dir.join("use-multilingual.safetensors").is_file(), "no multilingual encoder in {}; run ./scripts/fetch-model.sh", dir.display());
            std::sync::Arc::new(switchboard_nlp::MultilingualEncoder::load(&dir).expect("load the multilingual encoder (./scripts/fetch-model.sh)"))
        })
        .clone()
}

/// The encoders the service classifies with by default: the sentence encoder, and the
/// multilingual one for the judgement.
pub fn encoders() -> switchboard_nlp::Encoders {
    switchboard_nlp::Encoders { sentence: encoder(), multilingual: Some(multilingual_encoder()) }
}

/// As `encoders`, with the sentence encoder's exact export (`model.onnx`) instead of the int8
/// one: the int8 products differ between CPUs with and without AVX-512 VNNI, so a transcript of
/// borderline decisions reads the same on every machine only with the exact model.
pub fn exact_encoders() -> switchboard_nlp::Encoders {
    static ENCODER: std::sync::OnceLock<std::sync::Arc<dyn switchboard_nlp::SentenceEncoder>> = std::sync::OnceLock::new();
    let sentence = ENCODER
        .get_or_init(|| {
            let config = switchboard::config::NlpConfig { onnx_model: "model.onnx".into(), ..nlp_config() };
            switchboard::load_encoder(&config).expect("load the exact model (./scripts/fetch-model.sh)")
        })
        .clone();
    switchboard_nlp::Encoders { sentence, multilingual: Some(multilingual_encoder()) }
}

/// The first stage's static token vectors, as fetch-model.sh installs them beside the model.
pub fn static_encoder() -> std::sync::Arc<dyn switchboard_nlp::SentenceEncoder> {
    static ENCODER: std::sync::OnceLock<std::sync::Arc<dyn switchboard_nlp::SentenceEncoder>> = std::sync::OnceLock::new();
    ENCODER
        .get_or_init(|| std::sync::Arc::new(switchboard_nlp::StaticEncoder::load(&model_dir()).expect("load the static token vectors (./scripts/fetch-model.sh)")))
        .clone()
}

/// Message `n` of web-chat visitor `visitor`, as the widget would hand it to the engine.
pub fn webchat_inbound(visitor: &str, name: Option<&str>, n: u32, text: &str) -> switchboard_models::Inbound {
    switchboard_models::Inbound {
        channel: switchboard_models::Channel::WebChat,
        external_id: format!("{visitor}:{n}"),
        sender_external_id: visitor.into(),
        sender_name: name.map(String::from),
        text: text.into(),
        attachments: Vec::new(),
        original: None,
        thread: switchboard_models::Thread::Current,
        received_at: chrono::Utc::now(),
        reported_language: None,
    }
}

/// Small real files, as customers send them.
pub mod samples {
    /// A real 24×16 PNG, so browsers show the preview.
    pub const PNG: &[u8] = b"\x89\x50\x4e\x47\x0d\x0a\x1a\x0a\x00\x00\x00\x0d\x49\x48\x44\x52\x00\x00\x00\x18\x00\x00\x00\x10\x08\x02\x00\x00\x00\x83\x46\x28\xc2\x00\x00\x00\x1a\x49\x44\x41\x54\x78\xda\x63\x90\xab\x38\x41\x15\xc4\x30\x6a\xd0\xa8\x41\xa3\x06\x8d\x1a\x44\x19\x02\x00\xf3\xa4\x0d\x1f\x58\xfb\x16\xcf\x00\x00\x00\x00\x49\x45\x4e\x44\xae\x42\x60\x82";
    /// The smallest PDF readers open.
    pub const PDF: &[u8] = b"%PDF-1.7\n1 0 obj << >> endobj\ntrailer\n%%EOF";
}

/// Three intents for tests that train the model on a file of their own: quick to train.
pub const SMALL_INTENTS: &str = r#"
version = 1

[[intent]]
name = "human_request"
category = "general_inquiry"
examples = ["I want a person", "talk to a human", "get me an agent", "real person please"]

[[intent]]
name = "opening_hours"
category = "general_inquiry"
examples = ["when are you open", "what are your opening hours", "are you open on sunday", "business hours?"]
answer = "We are open 9 to 5."

[[intent]]
name = "invoice_copy"
category = "billing"
examples = ["send me my invoice", "I need a copy of my bill", "where can I download invoices", "receipt for my payment"]
answer = "Invoices are under Billing."
"#;
