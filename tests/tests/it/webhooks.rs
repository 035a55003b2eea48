//! Outbound webhooks end to end: an admin registers a URL through the API, customers and agents
//! do things, and a real HTTP receiver on loopback gets each event signed, retried when it
//! failed, and a webhook that keeps failing is turned off with a notice and sends what waited
//! once it is on again.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchboard_admin_web::accounts::create_account;
use switchboard_core::webhooks::{DELIVERY_HEADER, EVENT_HEADER, REPLAY_WINDOW, SIGNATURE_HEADER, verify};
use switchboard_models::{Channel, Inbound, Role, Thread};
use switchboard_tests::TestServer;
use switchboard_tests::panel::PanelClient;
use tokio::sync::mpsc;

const PASSWORD: &str = "a long enough password";

/// One post as the receiver got it.
#[derive(Debug, Clone)]
struct Post {
    event: String,
    delivery: String,
    signature: String,
    body: Bytes,
}

impl Post {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// A receiver on 127.0.0.1: answers test posts (`ping`) with the statuses queued in `answers`
/// (then 200), everything else with 200, and hands every post it got to the test.
struct Receiver {
    url: String,
    answers: Arc<Mutex<VecDeque<u16>>>,
    posts: mpsc::UnboundedReceiver<Post>,
}

impl Receiver {
    async fn start() -> Self {
        let (sender, posts) = mpsc::unbounded_channel();
        let answers: Arc<Mutex<VecDeque<u16>>> = Arc::default();
        let state = (sender, answers.clone());
        let app = Router::new().route(
            "/hook",
            post(|State((sender, answers)): State<(mpsc::UnboundedSender<Post>, Arc<Mutex<VecDeque<u16>>>)>, headers: HeaderMap, body: Bytes| async move {
                let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
                let post = Post { event: header(EVENT_HEADER), delivery: header(DELIVERY_HEADER), signature: header(SIGNATURE_HEADER), body };
                let ping = post.event == "ping";
                let status = if ping { answers.lock().unwrap().pop_front().unwrap_or(200) } else { 200 };
                let _ = sender.send(post);
                (StatusCode::from_u16(status).unwrap(), format!("answered {status}"))
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app.with_state(state)).await.unwrap() });
        Self { url, answers, posts }
    }

    /// The next post, or a failure naming what never came.
    async fn next(&mut self, waiting_for: &str) -> Post {
        match tokio::time::timeout(Duration::from_secs(30), self.posts.recv()).await {
            Ok(Some(post)) => post,
            _ => panic!("no webhook post arrived within 30 s: {waiting_for}"),
        }
    }

    /// Posts until one of `event` arrives; returns it with those before it.
    async fn until(&mut self, event: &str) -> (Post, Vec<Post>) {
        self.until_one(event, |post| post.event == event).await
    }

    /// Posts until one that `is_it` (described by `waiting_for`); returns it with those before it.
    async fn until_one(&mut self, waiting_for: &str, is_it: impl Fn(&Post) -> bool) -> (Post, Vec<Post>) {
        let mut before = Vec::new();
        loop {
            let post = self.next(waiting_for).await;
            if is_it(&post) {
                return (post, before);
            }
            before.push(post);
        }
    }
}

async fn admin_token(server: &TestServer) -> (PanelClient, String) {
    let store = server.engine().store();
    create_account(store.as_ref(), "root@example.com", "Root", Role::Admin, PASSWORD, None).await.unwrap();
    let admin = PanelClient::sign_in(&server.url(""), "root@example.com", PASSWORD).await;
    let token = admin.new_api_token("webhooks").await;
    (admin, token)
}

async fn api(server: &TestServer, token: &str, method: reqwest::Method, path: &str, body: Option<Value>) -> (reqwest::StatusCode, Value) {
    let mut request = reqwest::Client::new().request(method, server.url(path)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let reply = request.send().await.unwrap();
    (reply.status(), reply.json().await.unwrap_or(Value::Null))
}

async fn customer_writes(server: &TestServer, visitor: &str, n: u32, text: &str) {
    let inbound = Inbound {
        channel: Channel::WebChat,
        external_id: format!("{visitor}:{n}"),
        sender_external_id: visitor.into(),
        sender_name: Some("Cal".into()),
        text: text.into(),
        attachments: Vec::new(),
        original: None,
        thread: Thread::Current,
        received_at: chrono::Utc::now(),
        reported_language: None,
    };
    server.engine().handle(inbound).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_a_webhook_signed_and_a_failed_post_is_sent_again_until_answered() {
    use reqwest::Method;
    let server = TestServer::start_with(|c| c.webhooks.first_retry_seconds = 1).await;
    let (_admin, token) = admin_token(&server).await;
    let mut receiver = Receiver::start().await;

    let (status, refused) = api(&server, &token, Method::POST, "/api/webhooks", Some(json!({"url": "ftp://example.com", "events": ["message.stored"]}))).await;
    assert_eq!(status, reqwest::StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused["error"]["message"].as_str().unwrap().contains("not an http:// or https:// URL"), "{refused}");
    let (status, unknown) = api(&server, &token, Method::POST, "/api/webhooks", Some(json!({"url": receiver.url, "events": ["message.sent"]}))).await;
    assert_eq!(status, reqwest::StatusCode::BAD_REQUEST);
    assert!(unknown["error"]["message"].as_str().unwrap().contains("unknown webhook event `message.sent`"), "{unknown}");

    let events = json!(["conversation.created", "conversation.escalated", "message.stored"]);
    let (status, webhook) = api(&server, &token, Method::POST, "/api/webhooks", Some(json!({"url": receiver.url, "events": events}))).await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{webhook}");
    let (id, secret) = (webhook["id"].as_str().unwrap().to_string(), webhook["secret"].as_str().unwrap().to_string());
    assert!(secret.starts_with("whsec_"));

    customer_writes(&server, "v1", 1, "I want to talk to a person about my invoice").await;
    let (escalated, before) = receiver.until("conversation.escalated").await;
    let mut all = before.clone();
    all.push(escalated.clone());
    for post in &all {
        verify(&secret, &post.signature, &post.body, chrono::Utc::now(), REPLAY_WINDOW).unwrap_or_else(|e| panic!("{}: {e}", post.event));
        assert_eq!(post.json()["type"], post.event, "the header names the body's event");
        assert!(verify("whsec_other", &post.signature, &post.body, chrono::Utc::now(), REPLAY_WINDOW).is_err(), "only the secret signs");
    }
    let customer = all.iter().find(|p| p.event == "message.stored" && p.json()["data"]["message"]["sender"] == "customer").expect("the customer's message");
    assert_eq!(customer.json()["data"]["message"]["text"], "I want to talk to a person about my invoice");
    assert!(all.iter().any(|p| p.event == "conversation.created"), "{:?}", all.iter().map(|p| &p.event).collect::<Vec<_>>());
    let data = &escalated.json()["data"];
    assert_eq!(data["status"], "open");
    assert!(data["reason"].as_str().is_some_and(|r| !r.is_empty()), "{data}");

    // A test post answered 500 twice is sent again, the same delivery each time, until a 200.
    receiver.answers.lock().unwrap().extend([500, 503]);
    let (status, _) = api(&server, &token, Method::POST, &format!("/api/webhooks/{id}/ping"), None).await;
    assert_eq!(status, reqwest::StatusCode::ACCEPTED);
    let (first, _) = receiver.until("ping").await;
    let (second, _) = receiver.until("ping").await;
    let (third, _) = receiver.until("ping").await;
    assert_eq!([&second.delivery, &third.delivery], [&first.delivery, &first.delivery], "one delivery, posted three times");
    assert_eq!(first.json()["id"], third.json()["id"], "the same event");
    let delivery: i64 = first.delivery.parse().unwrap();
    let log = poll_log(&server, &token, &id, delivery, |d| d["state"] == "delivered").await;
    assert_eq!((log["attempts"].as_u64(), log["last_status"].as_u64()), (Some(3), Some(200)), "{log}");
    assert_eq!(log["last_response"], "answered 200");

    // Sent again on request; the admin's changes are audited.
    let (status, _) = api(&server, &token, Method::POST, &format!("/api/webhooks/{id}/deliveries/{delivery}/retry"), None).await;
    assert_eq!(status, reqwest::StatusCode::ACCEPTED);
    let (again, _) = receiver.until("ping").await;
    assert_eq!(again.delivery, first.delivery);
    let (status, _) = api(&server, &token, Method::PATCH, &format!("/api/webhooks/{id}"), Some(json!({"events": ["rating.received"]}))).await;
    assert_eq!(status, reqwest::StatusCode::OK);
    let (_, audit) = api(&server, &token, Method::GET, "/api/audit?action=webhook", None).await;
    let audited = audit.to_string();
    assert!(audited.contains("rating.received") && audited.contains(&receiver.url), "{audit}");
    let (status, _) = api(&server, &token, Method::DELETE, &format!("/api/webhooks/{id}"), None).await;
    assert_eq!(status, reqwest::StatusCode::NO_CONTENT);
    let (status, _) = api(&server, &token, Method::GET, &format!("/api/webhooks/{id}"), None).await;
    assert_eq!(status, reqwest::StatusCode::NOT_FOUND);
}

/// The delivery `delivery` of webhook `id` once `done` holds for it (within 30 s).
async fn poll_log(server: &TestServer, token: &str, id: &str, delivery: i64, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, log) = api(server, token, reqwest::Method::GET, &format!("/api/webhooks/{id}/deliveries"), None).await;
        let found = log["deliveries"].as_array().and_then(|all| all.iter().find(|d| d["id"] == delivery).cloned());
        if let Some(found) = found.filter(|d| done(d)) {
            return found;
        }
        assert!(tokio::time::Instant::now() < deadline, "delivery {delivery} never got there: {log}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_that_keeps_failing_is_turned_off_admins_are_told_and_what_waited_is_sent_once_it_is_on() {
    use reqwest::Method;
    let server = TestServer::start_with(|c| {
        c.webhooks.first_retry_seconds = 0;
        c.webhooks.turn_off_after_failures = 3;
    })
    .await;
    let (admin, token) = admin_token(&server).await;
    // A port nobody listens on: every post fails to connect.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_url = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    let (_, webhook) = api(&server, &token, Method::POST, "/api/webhooks", Some(json!({"url": dead_url, "events": ["message.stored"]}))).await;
    let id = webhook["id"].as_str().unwrap().to_string();
    customer_writes(&server, "v2", 1, "Hello, is anyone there?").await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let off = loop {
        let (_, webhook) = api(&server, &token, Method::GET, &format!("/api/webhooks/{id}"), None).await;
        if webhook["active"] == false {
            break webhook;
        }
        assert!(tokio::time::Instant::now() < deadline, "never turned off: {webhook}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(off["disabled_reason"].as_str().unwrap().contains("3 failed posts in a row"), "{off}");
    assert!(off["disabled_reason"].as_str().unwrap().contains("could not connect"), "{off}");
    let notices = admin.get("/panel/notifications").await;
    assert!(notices.body.contains("was turned off after 3 failed posts") && notices.body.contains(&dead_url), "{}", notices.body);
    let page = admin.get(&format!("/panel/admin/webhooks/{id}")).await;
    assert!(page.body.contains("Off.") && page.body.contains("Turn on"), "{}", page.body);
    let waiting: Vec<Value> = off["deliveries"].as_array().unwrap().iter().filter(|d| d["state"] == "pending").cloned().collect();
    assert!(!waiting.is_empty(), "the undelivered messages wait: {off}");

    // Pointed at a live receiver and turned on: what waited is posted.
    let mut receiver = Receiver::start().await;
    let (status, on) = api(&server, &token, Method::PATCH, &format!("/api/webhooks/{id}"), Some(json!({"url": receiver.url, "active": true}))).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{on}");
    assert_eq!(on["consecutive_failures"], 0);
    let mut texts = Vec::new();
    for _ in 0..waiting.len() {
        let post = receiver.next("the messages that waited").await;
        texts.push(post.json()["data"]["message"]["text"].as_str().unwrap().to_string());
    }
    assert!(texts.contains(&"Hello, is anyone there?".to_string()), "{texts:?}");
}

#[tokio::test]
async fn the_webhooks_page_adds_refuses_and_shows_the_log_to_admins_only() {
    let server = TestServer::start().await;
    let (admin, _) = admin_token(&server).await;
    let store = server.engine().store();
    create_account(store.as_ref(), "ann@example.com", "Ann", Role::Agent, PASSWORD, None).await.unwrap();
    let ann = PanelClient::sign_in(&server.url(""), "ann@example.com", PASSWORD).await;
    assert_eq!(ann.get("/panel/admin/webhooks").await.status, reqwest::StatusCode::FORBIDDEN);
    assert_eq!(ann.post("/panel/admin/webhooks", &[("url", "https://crm.example.com/x"), ("event", "message.stored")]).await.status, reqwest::StatusCode::FORBIDDEN);

    let refused = admin.post("/panel/admin/webhooks", &[("url", "https://crm.example.com/in"), ("description", "CRM")]).await;
    assert_eq!(refused.status, reqwest::StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.body.contains("choose at least one of") && refused.body.contains("https://crm.example.com/in"), "what was typed stays: {}", refused.body);
    let added = admin.post("/panel/admin/webhooks", &[("url", "https://crm.example.com/in"), ("description", "CRM"), ("event", "conversation.escalated")]).await;
    assert_eq!(added.status, reqwest::StatusCode::SEE_OTHER, "{}", added.body);
    let location = added.location.clone().unwrap();
    let page = admin.get(&location).await;
    assert!(page.body.contains("Webhook added") && page.body.contains("whsec_") && page.body.contains("Nothing posted yet"), "{}", page.body);
    let list = admin.get("/panel/admin/webhooks").await;
    assert!(list.body.contains("https://crm.example.com/in") && list.body.contains("conversation.escalated"), "{}", list.body);
}

/// The SQLite writer keeps whether any webhook is active (a statement per group saved): a
/// webhook added after messages flowed, and one turned on again, get the very next message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_added_or_turned_on_while_messages_flow_gets_the_next_message() {
    use reqwest::Method;
    let server = TestServer::start().await;
    let (_admin, token) = admin_token(&server).await;
    customer_writes(&server, "v3", 1, "Hello before any webhook").await;

    let mut receiver = Receiver::start().await;
    let (status, webhook) = api(&server, &token, Method::POST, "/api/webhooks", Some(json!({"url": receiver.url, "events": ["message.stored"]}))).await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{webhook}");
    let id = webhook["id"].as_str().unwrap().to_string();
    customer_writes(&server, "v3", 2, "Hello after the webhook was added").await;
    let texts = texts_before(&mut receiver, "Hello after the webhook was added").await;
    assert!(!texts.iter().any(|t| t == "Hello before any webhook"), "stored before it existed: {texts:?}");

    for active in [false, true] {
        let (status, changed) = api(&server, &token, Method::PATCH, &format!("/api/webhooks/{id}"), Some(json!({"active": active}))).await;
        assert_eq!((status, changed["active"].as_bool()), (reqwest::StatusCode::OK, Some(active)), "{changed}");
        let text = if active { "Hello once it is on again" } else { "Hello while it is off" };
        customer_writes(&server, "v3", if active { 4 } else { 3 }, text).await;
    }
    let texts = texts_before(&mut receiver, "Hello once it is on again").await;
    assert!(!texts.iter().any(|t| t == "Hello while it is off"), "stored while it was off: {texts:?}");
}

/// The texts of the stored messages posted before the one with `text` (the bot's replies among them).
async fn texts_before(receiver: &mut Receiver, text: &str) -> Vec<String> {
    let text_of = |post: &Post| post.json()["data"]["message"]["text"].as_str().unwrap_or_default().to_string();
    let (_, before) = receiver.until_one(text, |post| text_of(post) == text).await;
    before.iter().map(text_of).collect()
}
