//! A local stand-in for Discord: the REST API under `/api/v10` (reached through serenity's
//! proxy setting), a gateway WebSocket at `/gw` that supports identify, heartbeats and resume
//! with replay, and a CDN route for attachments.

use axum::Router;
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

pub const TOKEN: &str = "discord-test-token";
pub const BOT_ID: u64 = 700_000_000_000_000_001;
pub const GUILD_ID: u64 = 710_000_000_000_000_001;

#[derive(Debug, Clone)]
pub struct Posted {
    pub channel_id: u64,
    pub content: Option<String>,
    pub components: Value,
    pub allowed_mentions: Value,
    pub files: Vec<(String, Vec<u8>)>,
}

#[derive(Default)]
struct Gateway {
    /// Every dispatch sent in this session, for replay on resume.
    log: Vec<(u64, String)>,
    seq: u64,
    session: u32,
    live: Option<mpsc::UnboundedSender<String>>,
    kill: Option<oneshot::Sender<()>>,
    identifies: u32,
    resumes: u32,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    posted: Vec<Posted>,
    threads: HashSet<u64>,
    dms: HashMap<u64, u64>,
    cannot_dm: HashSet<u64>,
    rate_limit_next: u32,
    refused: u32,
    cdn: HashMap<String, Vec<u8>>,
    deferred: Vec<String>,
    /// Every message per channel (customers' and the bot's), for `GET …/messages`.
    history: HashMap<u64, Vec<Value>>,
    gateway: Gateway,
}

impl Inner {
    fn remember(&mut self, message: &Value) {
        let channel = message["channel_id"].as_str().and_then(|c| c.parse().ok()).expect("a message has a channel");
        self.history.entry(channel).or_default().push(message.clone());
    }
}

#[derive(Clone)]
pub struct FakeDiscord {
    inner: Arc<Mutex<Inner>>,
    pub addr: SocketAddr,
}

impl FakeDiscord {
    pub async fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner { next_id: 800_000_000_000_000_000, ..Default::default() }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind fake Discord");
        let addr = listener.local_addr().unwrap();
        let fake = Self { inner, addr };
        let app = Router::new()
            .route("/api/v10/gateway", get(gateway_url))
            .route("/api/v10/gateway/bot", get(gateway_url))
            .route("/api/v10/users/@me", get(|| async { axum::Json(bot_user()) }))
            .route("/api/v10/users/@me/channels", post(open_dm))
            .route("/api/v10/channels/{channel}/messages", post(create_message).get(list_messages))
            .route("/api/v10/channels/{channel}/messages/{message}/threads", post(create_thread))
            .route("/api/v10/interactions/{id}/{token}/callback", post(interaction_callback))
            .route("/cdn/{name}", get(cdn))
            .route("/gw", get(gateway))
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        fake
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("fake Discord state")
    }

    pub fn new_id(&self) -> u64 {
        let mut inner = self.lock();
        inner.next_id += 1;
        inner.next_id
    }

    /// A message written while no gateway session is open: kept in its channel's history only.
    pub fn write_while_away(&self, data: Value) {
        self.lock().remember(&data);
    }

    /// Sends a gateway event (to the live connection, and kept for replay on resume).
    pub fn dispatch(&self, event: &str, data: Value) {
        let mut inner = self.lock();
        if event == "MESSAGE_CREATE" {
            inner.remember(&data);
        }
        let gateway = &mut inner.gateway;
        gateway.seq += 1;
        let frame = json!({"op": 0, "t": event, "s": gateway.seq, "d": data}).to_string();
        gateway.log.push((gateway.seq, frame.clone()));
        if let Some(live) = &gateway.live {
            let _ = live.send(frame);
        }
    }

    /// Drops the gateway connection without a close frame, as a network failure would.
    pub fn drop_gateway(&self) {
        let mut inner = self.lock();
        inner.gateway.live = None;
        if let Some(kill) = inner.gateway.kill.take() {
            let _ = kill.send(());
        }
    }

    pub fn is_connected(&self) -> bool {
        self.lock().gateway.live.is_some()
    }

    pub fn identifies_and_resumes(&self) -> (u32, u32) {
        let gateway = &self.lock().gateway;
        (gateway.identifies, gateway.resumes)
    }

    pub fn add_cdn_file(&self, name: &str, bytes: Vec<u8>) -> String {
        self.lock().cdn.insert(name.to_string(), bytes);
        format!("{}/cdn/{name}", self.url())
    }

    /// The DM channel Discord has for `user` (as in real Discord, where DMs arrive).
    pub fn set_dm_channel(&self, user: u64, channel: u64) {
        self.lock().dms.insert(user, channel);
    }

    pub fn cannot_dm(&self, user: u64) {
        self.lock().cannot_dm.insert(user);
    }

    pub fn rate_limit_next(&self) {
        self.lock().rate_limit_next += 1;
    }

    pub fn refused(&self) -> u32 {
        self.lock().refused
    }

    pub fn threads(&self) -> HashSet<u64> {
        self.lock().threads.clone()
    }

    pub fn dm_channel(&self, user: u64) -> Option<u64> {
        self.lock().dms.get(&user).copied()
    }

    pub fn deferred(&self) -> Vec<String> {
        self.lock().deferred.clone()
    }

    pub fn posted(&self) -> Vec<Posted> {
        self.lock().posted.clone()
    }

    /// Waits until at least `count` messages were posted in `channel`.
    pub async fn wait_posted(&self, channel: u64, count: usize, timeout: Duration) -> Vec<Posted> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let posted: Vec<Posted> = self.posted().into_iter().filter(|p| p.channel_id == channel).collect();
            if posted.len() >= count {
                return posted;
            }
            assert!(tokio::time::Instant::now() < deadline, "expected {count} posts in {channel}, got {posted:#?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn wait_connected(&self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.is_connected() {
            assert!(tokio::time::Instant::now() < deadline, "the bot never connected to the gateway");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

pub fn bot_user() -> Value {
    json!({"id": BOT_ID.to_string(), "username": "support-bot", "global_name": null, "avatar": null, "bot": true, "discriminator": "0"})
}

pub fn user(id: u64, name: &str) -> Value {
    json!({"id": id.to_string(), "username": name, "global_name": name, "avatar": null, "bot": false, "discriminator": "0"})
}

/// A MESSAGE_CREATE payload; `guild` is set for guild channels and threads.
pub fn message(id: u64, channel: u64, guild: bool, author: u64, content: &str, attachments: Value) -> Value {
    let mut message = json!({
        "id": id.to_string(), "channel_id": channel.to_string(), "author": user(author, "ann"),
        "content": content, "timestamp": "2026-11-22T10:00:00.000000+00:00", "edited_timestamp": null,
        "tts": false, "mention_everyone": false, "mentions": [], "mention_roles": [],
        "attachments": attachments, "embeds": [], "pinned": false, "type": 0,
    });
    if guild {
        message["guild_id"] = json!(GUILD_ID.to_string());
    }
    message
}

pub fn attachment(id: u64, name: &str, url: &str, size: usize, content_type: &str) -> Value {
    json!({"id": id.to_string(), "filename": name, "size": size, "url": url, "proxy_url": url, "content_type": content_type})
}

async fn gateway_url(State(fake): State<FakeDiscord>) -> axum::Json<Value> {
    axum::Json(json!({
        "url": format!("ws://{}/gw", fake.addr), "shards": 1,
        "session_start_limit": {"total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1}
    }))
}

fn discord_error(status: u16, code: u32, message: &str) -> Response {
    let body = json!({"code": code, "message": message});
    (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response()
}

async fn open_dm(State(fake): State<FakeDiscord>, axum::Json(body): axum::Json<Value>) -> Response {
    let recipient: u64 = body["recipient_id"].as_str().and_then(|s| s.parse().ok()).or(body["recipient_id"].as_u64()).unwrap_or(0);
    let existing = fake.dm_channel(recipient);
    let channel = existing.unwrap_or_else(|| {
        let id = fake.new_id();
        fake.lock().dms.insert(recipient, id);
        id
    });
    axum::Json(json!({"id": channel.to_string(), "type": 1, "recipients": [user(recipient, "ann")], "last_message_id": null}))
        .into_response()
}

async fn create_message(State(fake): State<FakeDiscord>, Path(channel): Path<u64>, request: Request) -> Response {
    let multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/"));
    let (payload, files) = if multipart {
        let mut form = Multipart::from_request(request, &()).await.expect("multipart");
        let mut payload = json!({});
        let mut files = Vec::new();
        while let Ok(Some(field)) = form.next_field().await {
            let name = field.name().unwrap_or_default().to_string();
            let file_name = field.file_name().map(String::from);
            let bytes = field.bytes().await.unwrap_or_default().to_vec();
            if name == "payload_json" {
                payload = serde_json::from_slice(&bytes).unwrap_or_default();
            } else if let Some(file_name) = file_name {
                files.push((file_name, bytes));
            }
        }
        (payload, files)
    } else {
        let bytes = axum::body::to_bytes(request.into_body(), 64 << 20).await.unwrap_or_default();
        (serde_json::from_slice(&bytes).unwrap_or_default(), Vec::new())
    };
    let mut inner = fake.lock();
    if inner.rate_limit_next > 0 {
        inner.rate_limit_next -= 1;
        inner.refused += 1;
        return (
            StatusCode::TOO_MANY_REQUESTS,
            axum::Json(json!({"message": "You are being rate limited.", "retry_after": 0.5, "global": false, "code": 0})),
        )
            .into_response();
    }
    let blocked_dm = inner.dms.iter().any(|(user, dm)| *dm == channel && inner.cannot_dm.contains(user));
    if blocked_dm {
        inner.refused += 1;
        return discord_error(403, 50007, "Cannot send messages to this user");
    }
    inner.next_id += 1;
    let id = inner.next_id;
    inner.posted.push(Posted {
        channel_id: channel,
        content: payload["content"].as_str().map(String::from),
        components: payload["components"].clone(),
        allowed_mentions: payload["allowed_mentions"].clone(),
        files,
    });
    let mut reply = message(id, channel, false, BOT_ID, payload["content"].as_str().unwrap_or_default(), json!([]));
    reply["author"] = bot_user();
    inner.remember(&reply);
    axum::Json(reply).into_response()
}

#[derive(serde::Deserialize)]
struct Page {
    after: Option<u64>,
    limit: Option<usize>,
}

/// Messages after `after`, newest first, at most `limit` (50 by default), as Discord answers.
async fn list_messages(State(fake): State<FakeDiscord>, Path(channel): Path<u64>, Query(page): Query<Page>) -> Response {
    let inner = fake.lock();
    let id = |m: &Value| m["id"].as_str().and_then(|id| id.parse::<u64>().ok()).unwrap_or(0);
    let mut found: Vec<Value> = inner
        .history
        .get(&channel)
        .into_iter()
        .flatten()
        .filter(|m| id(m) > page.after.unwrap_or(0))
        .cloned()
        .collect();
    found.sort_by_key(|m| std::cmp::Reverse(id(m)));
    // With `after`, Discord returns the oldest messages past it.
    let limit = page.limit.unwrap_or(50).min(100);
    let skip = found.len().saturating_sub(limit);
    axum::Json(Value::Array(found.split_off(skip))).into_response()
}

async fn create_thread(State(fake): State<FakeDiscord>, Path((channel, message)): Path<(u64, u64)>, axum::Json(body): axum::Json<Value>) -> Response {
    let created = fake.lock().threads.insert(message);
    if !created {
        return discord_error(400, 160004, "A thread has already been created for this message");
    }
    axum::Json(json!({
        "id": message.to_string(), "type": 11, "guild_id": GUILD_ID.to_string(), "parent_id": channel.to_string(),
        "name": body["name"], "owner_id": BOT_ID.to_string(),
        "thread_metadata": {"archived": false, "auto_archive_duration": 1440, "archive_timestamp": "2026-11-22T10:00:00.000000+00:00", "locked": false}
    }))
    .into_response()
}

async fn interaction_callback(State(fake): State<FakeDiscord>, Path((id, _token)): Path<(String, String)>) -> StatusCode {
    fake.lock().deferred.push(id);
    StatusCode::NO_CONTENT
}

async fn cdn(State(fake): State<FakeDiscord>, Path(name): Path<String>) -> Response {
    match fake.lock().cdn.get(&name) {
        Some(bytes) => bytes.clone().into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn gateway(State(fake): State<FakeDiscord>, ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(move |socket| gateway_session(fake, socket))
}

async fn gateway_session(fake: FakeDiscord, socket: WebSocket) {
    let (mut sink, mut stream) = socket.split();
    let (live, mut outgoing) = mpsc::unbounded_channel::<String>();
    let (kill, mut killed) = oneshot::channel::<()>();
    let mut kill = Some(kill);
    let hello = json!({"op": 10, "d": {"heartbeat_interval": 41250}}).to_string();
    if sink.send(WsMessage::Text(hello.into())).await.is_err() {
        return;
    }
    'session: loop {
        let reply: Vec<String> = tokio::select! {
            _ = &mut killed => break 'session,
            frame = outgoing.recv() => match frame {
                Some(frame) => vec![frame],
                None => break 'session,
            },
            incoming = stream.next() => match incoming {
                Some(Ok(WsMessage::Text(text))) => {
                    let frame: Value = serde_json::from_str(&text).unwrap_or_default();
                    match frame["op"].as_u64() {
                        Some(1) => vec![json!({"op": 11}).to_string()],
                        Some(2) => identify(&fake, &live, &mut kill),
                        Some(6) => resume(&fake, &frame["d"], &live, &mut kill),
                        _ => Vec::new(),
                    }
                }
                Some(Ok(_)) => Vec::new(),
                _ => break 'session,
            },
        };
        for frame in reply {
            if sink.send(WsMessage::Text(frame.into())).await.is_err() {
                break 'session;
            }
        }
    }
    // This connection is gone: the bot is not connected until it identifies or resumes again.
    let mut inner = fake.lock();
    if inner.gateway.live.as_ref().is_some_and(|current| current.same_channel(&live)) {
        inner.gateway.live = None;
    }
}

/// A new session: READY, and this connection receives the dispatches from now on.
fn identify(fake: &FakeDiscord, live: &mpsc::UnboundedSender<String>, kill: &mut Option<oneshot::Sender<()>>) -> Vec<String> {
    let mut inner = fake.lock();
    let gateway = &mut inner.gateway;
    gateway.identifies += 1;
    gateway.session += 1;
    gateway.log.clear();
    gateway.seq += 1;
    gateway.live = Some(live.clone());
    gateway.kill = kill.take();
    vec![json!({"op": 0, "t": "READY", "s": gateway.seq, "d": {
        "v": 10, "user": bot_user(), "guilds": [],
        "session_id": format!("session-{}", gateway.session),
        "resume_gateway_url": format!("ws://{}/gw", fake.addr),
        "shard": [0, 1], "application": {"id": BOT_ID.to_string(), "flags": 0}
    }})
    .to_string()]
}

/// Resuming the current session replays what the client missed, then RESUMED; anything else
/// is an invalid session (the client identifies again).
fn resume(fake: &FakeDiscord, data: &Value, live: &mpsc::UnboundedSender<String>, kill: &mut Option<oneshot::Sender<()>>) -> Vec<String> {
    let mut inner = fake.lock();
    let gateway = &mut inner.gateway;
    if data["session_id"].as_str() != Some(format!("session-{}", gateway.session).as_str()) {
        return vec![json!({"op": 9, "d": false}).to_string()];
    }
    gateway.resumes += 1;
    let after = data["seq"].as_u64().unwrap_or(0);
    let mut frames: Vec<String> = gateway.log.iter().filter(|(seq, _)| *seq > after).map(|(_, f)| f.clone()).collect();
    gateway.seq += 1;
    frames.push(json!({"op": 0, "t": "RESUMED", "s": gateway.seq, "d": {}}).to_string());
    // Registered under the same lock as the replay list: later events go only to `live`.
    gateway.live = Some(live.clone());
    gateway.kill = kill.take();
    frames
}
