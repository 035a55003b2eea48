//! What happened to each reply, for agents: a state per outgoing message, failures with the
//! channel's reason in plain words, the conversation flagged, retry, and web chat's sent and seen.

use crate::browser::{artifacts, run_script};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;
use switchboard::config::Secret;
use switchboard_admin_web::accounts::create_account;
use switchboard_models::{Channel, Handler, Role};
use switchboard_tests::TestServer;
use switchboard_tests::fake_telegram::{FakeTelegram, TOKEN, private_text};
use switchboard_tests::panel::{ApiClient, PanelClient};

const WAIT: Duration = Duration::from_secs(20);
const PASSWORD: &str = "delivery test password";

async fn telegram_server(telegram: &FakeTelegram, retry_window_seconds: u64) -> TestServer {
    let url = telegram.url();
    TestServer::start_with(move |c| {
        c.telegram.token = Some(Secret(TOKEN.into()));
        c.telegram.api_url = Some(url);
        c.server.delivery_retry_window_seconds = retry_window_seconds;
    })
    .await
}

/// A Telegram customer who asked for a person and waits in the queue; their conversation's id.
async fn waiting_customer(server: &TestServer, telegram: &FakeTelegram, chat: i64) -> String {
    telegram.push_message(private_text(chat, 1, "I want to talk to a person"));
    telegram.wait_sent(chat, 1, WAIT).await;
    let store = server.engine().store();
    let contact = store.contact_by_external_id(Channel::Telegram, &chat.to_string()).await.unwrap().expect("contact");
    let conversation = store.current_conversation(contact.id).await.unwrap().expect("conversation");
    assert_eq!(conversation.handler, Handler::Queue);
    conversation.id.to_string()
}

/// An agent's API client: (panel session, API token).
async fn agent(server: &TestServer, email: &str) -> (PanelClient, String) {
    create_account(server.engine().store().as_ref(), email, "Robin", Role::Agent, PASSWORD, None).await.unwrap();
    let panel = PanelClient::sign_in(&server.url(""), email, PASSWORD).await;
    let token = panel.new_api_token("delivery test").await;
    (panel, token)
}

struct Api(ApiClient);

impl Api {
    async fn get(&self, path: &str) -> Value {
        self.0.get(path).await
    }

    async fn act(&self, conversation: &str, body: Value) -> (StatusCode, Value) {
        self.0.post(&format!("/api/conversations/{conversation}/actions"), body).await
    }

    /// The message with `text`, once its delivery is in `state`.
    async fn reply_in_state(&self, conversation: &str, text: &str, state: &str) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let detail = self.get(&format!("/api/conversations/{conversation}")).await;
            let found = detail["messages"].as_array().unwrap().iter().find(|m| m["text"] == text).cloned();
            if let Some(message) = found.as_ref().filter(|m| m["delivery"]["state"] == state) {
                return message.clone();
            }
            assert!(tokio::time::Instant::now() < deadline, "`{text}` never reached {state}: {found:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn api(server: &TestServer, token: String) -> Api {
    Api(ApiClient::new(server.url(""), token))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_to_a_customer_who_blocked_the_bot_shows_as_not_delivered_with_the_reason() {
    let telegram = FakeTelegram::start().await;
    let server = telegram_server(&telegram, 24 * 60 * 60).await;
    let conversation = waiting_customer(&server, &telegram, 801).await;
    telegram.block(801);
    let (_panel, token) = agent(&server, "robin@example.com").await;

    // The agent takes it and answers in the panel, in Chromium; the page shows the failure live.
    let args = vec![server.url(""), artifacts(), "robin@example.com".into(), PASSWORD.into(), conversation.clone()];
    run_script("delivery.mjs", args, "browser delivery test passed").await;

    let api = api(&server, token);
    let reply = api.reply_in_state(&conversation, "Hello Ann, we refunded you.", "failed").await;
    assert_eq!(reply["delivery"]["error"], "The customer blocked the bot on Telegram.");
    assert_eq!(reply["delivery"]["attempts"], 1, "the agent's retry started a fresh count");
    // The joined notice and the reply, then the agent's one retry: never retried by itself.
    assert_eq!(telegram.refused_sends(), 3, "a blocked customer is not retried");
    let flagged = api.get("/api/conversations?undelivered=1").await;
    let rows = flagged["conversations"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0]["id"].as_str(), &rows[0]["undelivered"], &rows[0]["customer_unreachable"]), (Some(conversation.as_str()), &json!(2), &json!(true)));

    // Writing again makes the customer reachable.
    telegram.push_message(private_text(801, 2, "are you there?"));
    let store = server.engine().store();
    let deadline = tokio::time::Instant::now() + WAIT;
    while store.contact_by_external_id(Channel::Telegram, "801").await.unwrap().unwrap().unreachable_since.is_some() {
        assert!(tokio::time::Instant::now() < deadline, "the customer stayed unreachable after writing");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_failing_past_the_retry_window_is_failed_and_a_retry_delivers_it_once() {
    let telegram = FakeTelegram::start().await;
    let server = telegram_server(&telegram, 15).await;
    let conversation = waiting_customer(&server, &telegram, 802).await;
    let (_panel, token) = agent(&server, "robin@example.com").await;
    let api = api(&server, token);
    assert_eq!(api.act(&conversation, json!({"action": "take"})).await.0, StatusCode::OK);
    telegram.wait_sent(802, 2, WAIT).await; // the joined notice
    telegram.set_outage(true);
    let text = "Your refund is on its way.";
    assert_eq!(api.act(&conversation, json!({"action": "reply", "text": text})).await.0, StatusCode::OK);

    // teloxide waits 10 s after a 5xx: one retry fits in the 15 s window, a third try does not.
    let retrying = api.reply_in_state(&conversation, text, "retrying").await;
    assert!(retrying["delivery"]["next_attempt_at"].is_string(), "{retrying}");
    let failed = api.reply_in_state(&conversation, text, "failed").await;
    let error = failed["delivery"]["error"].as_str().unwrap();
    assert!(error.starts_with("Telegram had a server error (Bad Gateway)"), "{error}");
    assert_eq!(failed["delivery"]["attempts"], 2, "retried within the window, then given up: {failed}");
    let flagged = api.get("/api/conversations?undelivered=1").await;
    assert_eq!(flagged["conversations"].as_array().unwrap().len(), 1);

    telegram.set_outage(false);
    let seq = failed["seq"].as_i64().unwrap().to_string();
    let (status, _) = api.act(&conversation, json!({"action": "retry", "value": seq})).await;
    assert_eq!(status, StatusCode::OK);
    let sent = api.reply_in_state(&conversation, text, "sent").await;
    assert!(sent["delivery"]["sent_id"].as_str().is_some_and(|id| !id.is_empty()), "Telegram's message id: {sent}");
    let copies = telegram.sent().iter().filter(|s| s.chat_id == 802 && s.text.as_deref() == Some(text)).count();
    assert_eq!(copies, 1, "delivered once");
    assert!(api.get("/api/conversations?undelivered=1").await["conversations"].as_array().unwrap().is_empty());

    let (again, body) = api.act(&conversation, json!({"action": "retry", "value": seq})).await;
    assert_eq!(again, StatusCode::CONFLICT, "a sent reply is not sent again: {body}");
    let (bad, body) = api.act(&conversation, json!({"action": "retry", "value": "latest"})).await;
    assert_eq!(bad, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let refused = reqwest::Client::new()
        .get(server.url("/api/conversations?undelivered=maybe"))
        .bearer_auth(api.0.token())
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_chat_replies_are_sent_then_seen_and_the_panel_hears_of_both() {
    let server = TestServer::start().await;
    let (panel, token) = agent(&server, "robin@example.com").await;
    let api = api(&server, token);
    let mut events = panel.event_stream("/panel/events").await;
    let (_, visitor_token) = server.new_visitor().await;
    let mut widget = server.connect(&visitor_token).await;
    widget.next_of("ready").await;
    widget.say("c1", "hello").await;
    let conversation = widget.next_of("ack").await["conversation"]["id"].as_str().unwrap().to_string();
    let reply = widget.next_reply().await;
    let text = reply["text"].as_str().unwrap().to_string();
    let delivery_event = |event: &str| event.contains("\"kind\":\"delivery\"") && event.contains(&conversation);
    wait_for_event(&mut events, delivery_event).await;
    assert_eq!(api.reply_in_state(&conversation, &text, "sent").await["delivery"]["seen_at"], Value::Null);

    widget.send_json(json!({"type": "seen", "seq": reply["seq"]})).await;
    wait_for_event(&mut events, delivery_event).await;
    let seen = api.reply_in_state(&conversation, &text, "seen").await;
    assert!(seen["delivery"]["seen_at"].is_string());

    // The widget's HTTP fallback says the same with a POST.
    widget.say("c2", "thanks a lot").await;
    let reply = loop {
        let reply = widget.next_reply().await;
        if reply["text"] != text.as_str() {
            break reply;
        }
    };
    let http = reqwest::Client::new();
    let seen_url = server.url("/webchat/seen");
    let posted = http.post(&seen_url).bearer_auth(&visitor_token).json(&json!({"seq": reply["seq"]})).send().await.unwrap();
    assert_eq!(posted.status(), StatusCode::NO_CONTENT);
    api.reply_in_state(&conversation, reply["text"].as_str().unwrap(), "seen").await;
    let malformed = http.post(&seen_url).bearer_auth(&visitor_token).json(&json!({"seq": "last"})).send().await.unwrap();
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
}

async fn wait_for_event(events: &mut switchboard_tests::panel::EventStream, wanted: impl Fn(&str) -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let event = tokio::time::timeout(left, events.next_event()).await.expect("the panel heard nothing").expect("stream open");
        if wanted(&event) {
            return;
        }
    }
}
