//! A local stand-in for the Telegram Bot API, speaking its HTTP protocol on 127.0.0.1:
//! `/bot<token>/<method>` (JSON or multipart) and `/file/bot<token>/<path>`. Tests queue updates,
//! register files, inject failures, and read back what the bot sent.

use axum::Router;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

pub const TOKEN: &str = "123456:TEST-token";
pub const BOT_USERNAME: &str = "switchboard_test_bot";

/// Something the bot sent.
#[derive(Debug, Clone)]
pub struct Sent {
    /// Lowercase method name: sendmessage, sendphoto, senddocument.
    pub method: String,
    pub chat_id: i64,
    pub text: Option<String>,
    pub parse_mode: Option<String>,
    pub reply_markup: Option<Value>,
    pub file_name: Option<String>,
    pub file_bytes: Option<Vec<u8>>,
    /// The id the sent message got.
    pub message_id: i64,
}

/// A failure the next send to a chat gets.
#[derive(Debug, Clone, Copy)]
pub enum Failure {
    TooManyRequests { retry_after: u32 },
}

#[derive(Default)]
struct State_ {
    /// Updates not yet confirmed by an offset past them.
    pending: VecDeque<Value>,
    /// Every update ever queued, for redelivery.
    history: Vec<Value>,
    next_update_id: u32,
    highest_offset: i64,
    sent: Vec<Sent>,
    refused_sends: u32,
    failures: VecDeque<Failure>,
    blocked: HashSet<i64>,
    /// Every send answers 502 Bad Gateway, as Telegram does during an outage.
    outage: bool,
    /// getUpdates answers 502 Bad Gateway.
    polling_outage: bool,
    files: HashMap<String, Vec<u8>>,
    /// Button presses the bot acknowledged (answerCallbackQuery), by query id.
    answered_presses: Vec<String>,
    /// Messages whose buttons the bot took off: (chat, message id).
    buttons_removed: Vec<(i64, i64)>,
    next_press_id: u32,
    webhook: Option<(String, Option<String>)>,
    next_message_id: i64,
    /// getUpdates requests being answered now, and those refused because one already was.
    polling: u32,
    conflicts: u32,
}

#[derive(Clone)]
pub struct FakeTelegram {
    state: Arc<Mutex<State_>>,
    changed: Arc<Notify>,
    /// Woken whenever the bot sends, answers a press or edits a message.
    bot_acted: Arc<Notify>,
    pub addr: SocketAddr,
}

impl FakeTelegram {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(State_ { next_update_id: 1000, next_message_id: 1, ..Default::default() }));
        let changed = Arc::new(Notify::new());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind fake Telegram");
        let addr = listener.local_addr().unwrap();
        let fake = Self { state, changed, bot_acted: Arc::new(Notify::new()), addr };
        let app = Router::new()
            .route("/file/{bot}/{*path}", get(download))
            .route("/{bot}/{method}", any(method))
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        fake
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State_> {
        self.state.lock().expect("fake Telegram state")
    }

    /// Queues an update with `message` (update_id assigned) and returns its id.
    pub fn push_message(&self, message: Value) -> u32 {
        let id = {
            let mut state = self.lock();
            state.next_update_id += 1;
            let id = state.next_update_id;
            let update = json!({"update_id": id, "message": message});
            state.pending.push_back(update.clone());
            state.history.push(update);
            id
        };
        self.changed.notify_waiters();
        id
    }

    /// Queues the customer `user` pressing the inline button with `data` under the bot's message
    /// `message_id` in their private chat; returns the press (callback query) id.
    pub fn press_button(&self, user: i64, message_id: i64, data: &str) -> String {
        self.press_button_in(json!({"id": user, "type": "private", "first_name": "Ann"}), user, message_id, data)
    }

    /// Queues `user` pressing a button with `data` under the bot's message in group `chat`.
    pub fn press_group_button(&self, chat: i64, user: i64, message_id: i64, data: &str) -> String {
        self.press_button_in(json!({"id": chat, "type": "group", "title": "Customers"}), user, message_id, data)
    }

    fn press_button_in(&self, chat: Value, user: i64, message_id: i64, data: &str) -> String {
        let press = {
            let mut state = self.lock();
            state.next_update_id += 1;
            state.next_press_id += 1;
            let press = format!("press-{}", state.next_press_id);
            let update = json!({
                "update_id": state.next_update_id,
                "callback_query": {
                    "id": press,
                    "from": {"id": user, "is_bot": false, "first_name": "Ann", "last_name": "Lee"},
                    "message": {
                        "message_id": message_id, "date": 1_760_000_000,
                        "chat": chat,
                        "from": {"id": 123456, "is_bot": true, "first_name": "Support", "username": BOT_USERNAME},
                        "text": "(the bot's message)",
                    },
                    "chat_instance": "instance-1",
                    "data": data,
                },
            });
            state.pending.push_back(update.clone());
            state.history.push(update);
            press
        };
        self.changed.notify_waiters();
        press
    }

    /// Button presses the bot acknowledged, by press id.
    pub fn answered_presses(&self) -> Vec<String> {
        self.lock().answered_presses.clone()
    }

    /// Messages whose buttons the bot took off, as (chat, message id).
    pub fn buttons_removed(&self) -> Vec<(i64, i64)> {
        self.lock().buttons_removed.clone()
    }

    /// Waits until what the bot did makes `found` give something (checked at once, then at
    /// each thing the bot does); panics naming `what` after `timeout`.
    pub async fn wait_until<T>(&self, what: &str, timeout: Duration, found: impl Fn(&FakeTelegram) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let acted = self.bot_acted.notified();
            tokio::pin!(acted);
            acted.as_mut().enable();
            if let Some(found) = found(self) {
                return found;
            }
            if tokio::time::timeout_at(deadline, acted).await.is_err() {
                panic!("{what} within {timeout:?}; the bot sent {:#?}", self.sent());
            }
        }
    }

    /// Makes every update ever queued pending again, as Telegram does after a lost offset.
    pub fn redeliver_all(&self) {
        let mut state = self.lock();
        state.pending = state.history.iter().cloned().collect();
        drop(state);
        self.changed.notify_waiters();
    }

    pub fn add_file(&self, file_id: &str, bytes: Vec<u8>) {
        self.lock().files.insert(file_id.to_string(), bytes);
    }

    pub fn fail_next_send(&self, failure: Failure) {
        self.lock().failures.push_back(failure);
    }

    /// Starts or ends an outage: while it lasts every send is refused with 502.
    pub fn set_outage(&self, on: bool) {
        self.lock().outage = on;
    }

    /// Starts or ends an outage of getUpdates: while it lasts every poll is refused with 502.
    pub fn set_polling_outage(&self, on: bool) {
        self.lock().polling_outage = on;
    }

    pub fn block(&self, chat_id: i64) {
        self.lock().blocked.insert(chat_id);
    }

    pub fn sent(&self) -> Vec<Sent> {
        self.lock().sent.clone()
    }

    pub fn refused_sends(&self) -> u32 {
        self.lock().refused_sends
    }

    /// getUpdates calls refused with 409 because another was in progress, as Telegram refuses a
    /// second bot instance polling at the same time.
    pub fn conflicts(&self) -> u32 {
        self.lock().conflicts
    }

    /// Every message update ever queued, in order (what a correct bot stores, once each).
    pub fn pushed(&self) -> usize {
        self.lock().history.len()
    }

    pub fn pending_updates(&self) -> usize {
        self.lock().pending.len()
    }

    pub fn webhook(&self) -> Option<(String, Option<String>)> {
        self.lock().webhook.clone()
    }

    /// Waits until `count` sends to `chat_id` satisfy `pred`; returns them all.
    pub async fn wait_sent(&self, chat_id: i64, count: usize, timeout: Duration) -> Vec<Sent> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let sent: Vec<Sent> = self.sent().into_iter().filter(|s| s.chat_id == chat_id).collect();
            if sent.len() >= count {
                return sent;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("expected {count} sends to chat {chat_id} within {timeout:?}, got {sent:#?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A private-chat message from user `user` (chat id = user id).
pub fn private_text(user: i64, message_id: i64, text: &str) -> Value {
    json!({
        "message_id": message_id,
        "date": 1_760_000_000,
        "chat": {"id": user, "type": "private", "first_name": "Ann"},
        "from": {"id": user, "is_bot": false, "first_name": "Ann", "last_name": "Lee"},
        "text": text,
    })
}

pub fn group_text(chat: i64, user: i64, message_id: i64, text: &str) -> Value {
    json!({
        "message_id": message_id,
        "date": 1_760_000_000,
        "chat": {"id": chat, "type": "group", "title": "Customers"},
        "from": {"id": user, "is_bot": false, "first_name": "Bo"},
        "text": text,
    })
}

pub fn private_photo(user: i64, message_id: i64, file_id: &str, size: usize, caption: Option<&str>) -> Value {
    let mut message = private_text(user, message_id, "");
    let object = message.as_object_mut().unwrap();
    object.remove("text");
    object.insert(
        "photo".into(),
        json!([
            {"file_id": format!("{file_id}-small"), "file_unique_id": "s", "width": 90, "height": 90, "file_size": 100},
            {"file_id": file_id, "file_unique_id": "b", "width": 800, "height": 600, "file_size": size},
        ]),
    );
    if let Some(caption) = caption {
        object.insert("caption".into(), json!(caption));
    }
    message
}

pub fn private_document(user: i64, message_id: i64, file_id: &str, name: &str, size: usize) -> Value {
    let mut message = private_text(user, message_id, "");
    let object = message.as_object_mut().unwrap();
    object.remove("text");
    object.insert(
        "document".into(),
        json!({"file_id": file_id, "file_unique_id": "d", "file_name": name, "mime_type": "application/pdf", "file_size": size}),
    );
    message
}

fn ok(result: Value) -> Response {
    axum::Json(json!({"ok": true, "result": result})).into_response()
}

fn error(code: u16, description: &str, parameters: Option<Value>) -> Response {
    let mut body = json!({"ok": false, "error_code": code, "description": description});
    if let Some(parameters) = parameters {
        body["parameters"] = parameters;
    }
    (StatusCode::from_u16(code).unwrap(), axum::Json(body)).into_response()
}

async fn download(State(fake): State<FakeTelegram>, Path((_bot, path)): Path<(String, String)>) -> Response {
    let id = path.trim_start_matches("files/").to_string();
    match fake.lock().files.get(&id) {
        Some(bytes) => bytes.clone().into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Parameters from a JSON body or a multipart form (files as `(name, bytes)`).
async fn parameters(request: Request) -> (Value, Option<(String, Vec<u8>)>) {
    let multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/"));
    if !multipart {
        let bytes = axum::body::to_bytes(request.into_body(), 64 << 20).await.unwrap_or_default();
        return (serde_json::from_slice(&bytes).unwrap_or(json!({})), None);
    }
    let mut form = Multipart::from_request(request, &()).await.expect("multipart body");
    let mut fields = serde_json::Map::new();
    let mut files = HashMap::new();
    while let Ok(Some(field)) = form.next_field().await {
        let name = field.name().unwrap_or_default().to_string();
        let file_name = field.file_name().map(String::from);
        let bytes = field.bytes().await.unwrap_or_default().to_vec();
        match file_name {
            Some(file_name) => {
                files.insert(name, (file_name, bytes));
            }
            None => {
                let text = String::from_utf8_lossy(&bytes).to_string();
                let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
                fields.insert(name, value);
            }
        }
    }
    // `photo=attach://<id>` names the part holding the file.
    let file = ["photo", "document"].iter().find_map(|key| {
        let reference = fields.get(*key)?.as_str()?.strip_prefix("attach://")?.to_string();
        files.remove(&reference)
    });
    (Value::Object(fields), file.or_else(|| files.into_values().next()))
}

fn chat_id(params: &Value) -> i64 {
    match &params["chat_id"] {
        Value::Number(n) => n.as_i64().unwrap_or_default(),
        Value::String(s) => s.parse().unwrap_or_default(),
        _ => 0,
    }
}

async fn method(State(fake): State<FakeTelegram>, Path((bot, method)): Path<(String, String)>, request: Request) -> Response {
    if bot != format!("bot{TOKEN}") {
        return error(401, "Unauthorized", None);
    }
    let method = method.to_lowercase();
    let (params, file) = parameters(request).await;
    match method.as_str() {
        "getme" => ok(json!({
            "id": 123456, "is_bot": true, "first_name": "Support", "username": BOT_USERNAME,
            "can_join_groups": true, "can_read_all_group_messages": false,
            "supports_inline_queries": false, "has_main_web_app": false
        })),
        "getwebhookinfo" => ok(json!({"url": "", "has_custom_certificate": false, "pending_update_count": 0})),
        "deletewebhook" => ok(json!(true)),
        "setwebhook" => {
            let url = params["url"].as_str().unwrap_or_default().to_string();
            let secret = params["secret_token"].as_str().map(String::from);
            fake.lock().webhook = Some((url, secret));
            ok(json!(true))
        }
        "getupdates" => get_updates(&fake, &params).await,
        "getfile" => {
            let id = params["file_id"].as_str().unwrap_or_default().to_string();
            match fake.lock().files.get(&id) {
                Some(bytes) => ok(json!({"file_id": id, "file_unique_id": "u", "file_size": bytes.len(), "file_path": format!("files/{id}")})),
                None => error(400, "Bad Request: invalid file_id", None),
            }
        }
        "sendmessage" | "sendphoto" | "senddocument" => send(&fake, &method, &params, file),
        "answercallbackquery" => {
            let press = params["callback_query_id"].as_str().unwrap_or_default().to_string();
            fake.lock().answered_presses.push(press);
            fake.bot_acted.notify_waiters();
            ok(json!(true))
        }
        "editmessagereplymarkup" => {
            let (chat, message_id) = (chat_id(&params), params["message_id"].as_i64().unwrap_or_default());
            fake.lock().buttons_removed.push((chat, message_id));
            fake.bot_acted.notify_waiters();
            ok(json!({"message_id": message_id, "date": 1_760_000_000, "chat": {"id": chat, "type": "private", "first_name": "Ann"}, "text": "(the bot's message)"}))
        }
        _ => error(404, "Not Found: method not found", None),
    }
}

/// One getUpdates in progress; counted down however the request ends.
struct Polling(FakeTelegram);

impl Drop for Polling {
    fn drop(&mut self) {
        self.0.lock().polling -= 1;
    }
}

async fn get_updates(fake: &FakeTelegram, params: &Value) -> Response {
    {
        let mut state = fake.lock();
        if state.polling_outage {
            return error(502, "Bad Gateway", None);
        }
        if state.polling > 0 {
            state.conflicts += 1;
            return error(409, "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running", None);
        }
        state.polling += 1;
    }
    let _polling = Polling(fake.clone());
    let offset = params["offset"].as_i64().unwrap_or(0);
    let deadline = tokio::time::Instant::now() + Duration::from_millis(200);
    loop {
        let notified = fake.changed.notified();
        {
            let mut state = fake.lock();
            state.highest_offset = state.highest_offset.max(offset);
            // An offset confirms every update below it.
            state.pending.retain(|u| u["update_id"].as_i64().unwrap_or(0) >= offset);
            if !state.pending.is_empty() {
                return ok(Value::Array(state.pending.iter().cloned().collect()));
            }
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return ok(json!([]));
        }
    }
}

fn send(fake: &FakeTelegram, method: &str, params: &Value, file: Option<(String, Vec<u8>)>) -> Response {
    let chat = chat_id(params);
    let mut state = fake.lock();
    if state.blocked.contains(&chat) {
        state.refused_sends += 1;
        return error(403, "Forbidden: bot was blocked by the user", None);
    }
    if state.outage {
        state.refused_sends += 1;
        return error(502, "Bad Gateway", None);
    }
    if let Some(Failure::TooManyRequests { retry_after }) = state.failures.pop_front() {
        state.refused_sends += 1;
        return error(
            429,
            &format!("Too Many Requests: retry after {retry_after}"),
            Some(json!({"retry_after": retry_after})),
        );
    }
    let text = params["text"].as_str().or(params["caption"].as_str()).map(String::from);
    state.next_message_id += 1;
    let message_id = state.next_message_id;
    let (file_name, file_bytes) = file.map(|(n, b)| (Some(n), Some(b))).unwrap_or((None, None));
    state.sent.push(Sent {
        method: method.to_string(),
        chat_id: chat,
        text: text.clone(),
        parse_mode: params["parse_mode"].as_str().map(String::from),
        reply_markup: params.get("reply_markup").cloned(),
        file_name: file_name.clone(),
        file_bytes: file_bytes.clone(),
        message_id,
    });
    let mut message = json!({
        "message_id": message_id, "date": 1_760_000_000,
        "chat": {"id": chat, "type": "private", "first_name": "Ann"},
    });
    let size = file_bytes.as_ref().map(Vec::len).unwrap_or(0);
    match method {
        "sendphoto" => {
            message["photo"] = json!([{"file_id": "sent", "file_unique_id": "s", "width": 1, "height": 1, "file_size": size}]);
            message["caption"] = json!(text);
        }
        "senddocument" => {
            message["document"] = json!({"file_id": "sent", "file_unique_id": "s", "file_name": file_name, "file_size": size});
            message["caption"] = json!(text);
        }
        _ => message["text"] = json!(text.unwrap_or_default()),
    }
    drop(state);
    fake.bot_acted.notify_waiters();
    ok(message)
}
