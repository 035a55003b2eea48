//! Several `switchboard serve` processes on one PostgreSQL database: live news crosses nodes.

use std::process::{Child, Command};
use std::time::Duration;
use switchboard_admin_web::accounts::create_account;
use switchboard_models::Role;
use switchboard_tests::databases::TestDatabase;
use switchboard_tests::panel::PanelClient;
use switchboard_tests::Widget;

const PASSWORD: &str = "tangerine harbour lantern 42";

/// A real `switchboard serve` process on the shared database.
struct Node {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Node {
    fn start(database_url: &str) -> Self {
        Self::start_with(database_url, &[])
    }

    fn start_with(database_url: &str, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let shared = [("SWITCHBOARD_DATABASE__URL", database_url), ("SWITCHBOARD_NLP__ENABLED", "false")];
        let env: Vec<(&str, &str)> = env.iter().copied().chain(shared).collect();
        let (child, addr) = crate::cli::serve_with(dir.path(), &env);
        Self { child, addr, _dir: dir }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_widget_on_one_node_and_a_panel_on_another_see_each_other_live() {
    let db = TestDatabase::postgres().await;
    let store = db.open().await;
    create_account(store.as_ref(), "ada@example.com", "Ada", Role::Agent, PASSWORD, None).await.unwrap();
    let (a, b) = (Node::start(&db.url), Node::start(&db.url));

    // The customer is on node A; Ada's panel, with its live stream open, is on node B.
    let session: serde_json::Value =
        reqwest::Client::new().post(format!("{}/webchat/session", a.url())).send().await.unwrap().json().await.unwrap();
    let mut widget = Widget::connect(&a.addr, session["token"].as_str().unwrap(), None).await.unwrap();
    widget.next_of("ready").await;
    let ada = PanelClient::sign_in(&b.url(), "ada@example.com", PASSWORD).await;
    let mut events = ada.event_stream("/panel/events").await;

    widget.say("c1", "I want to talk to a person").await;
    let ack = widget.next_of("ack").await;
    let conversation = ack["conversation"]["id"].as_str().unwrap().to_string();
    let event = tokio::time::timeout(Duration::from_secs(10), events.next_event()).await.expect("news from node A").unwrap();
    assert!(event.contains(&conversation), "node B's panel hears of node A's message: {event}");

    // Ada answers on node B; the widget on node A shows it.
    let sent = ada.post(&format!("/panel/conversations/{conversation}/reply"), &[("text", "Hi, Ada here, from the other node.")]).await;
    assert_eq!(sent.status, reqwest::StatusCode::SEE_OTHER, "{}", sent.body);
    loop {
        let reply = widget.next_reply().await;
        if reply["text"] == "Hi, Ada here, from the other node." {
            assert_eq!(reply["sender"], "agent");
            break;
        }
    }
}

/// Customer messages stored from Telegram, by text.
async fn telegram_texts(db: &TestDatabase) -> Vec<String> {
    let store = db.open().await;
    let Some(contact) = store.contact_by_external_id(switchboard_models::Channel::Telegram, "505").await.unwrap() else {
        return Vec::new();
    };
    let messages = store.contact_messages(contact.id, 0, 1000).await.unwrap();
    messages.into_iter().filter(|m| m.sender == switchboard_models::Sender::Customer).map(|m| m.text).collect()
}

async fn wait_for_texts(db: &TestDatabase, count: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    loop {
        let texts = telegram_texts(db).await;
        if texts.len() >= count || std::time::Instant::now() > deadline {
            return texts;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_polls_telegram_and_another_takes_over_when_it_is_killed() {
    use switchboard_tests::fake_telegram::{FakeTelegram, TOKEN, private_text};
    let telegram = FakeTelegram::start().await;
    let db = TestDatabase::postgres().await;
    let api = telegram.url();
    let env = |name: &'static str| [("SWITCHBOARD_TELEGRAM__TOKEN", TOKEN), ("SWITCHBOARD_TELEGRAM__API_URL", api.as_str()), ("SWITCHBOARD_SERVER__NODE_NAME", name)];
    let mut nodes = vec![Node::start_with(&db.url, &env("node-a")), Node::start_with(&db.url, &env("node-b"))];
    for id in 1..=5 {
        telegram.push_message(private_text(505, id, &format!("before {id}")));
    }
    assert_eq!(wait_for_texts(&db, 5).await.len(), 5);
    // Wait for the holder to renew its lease twice: by then both nodes have tried for it more
    // than once, each renewal period, while one of them polled.
    let expiry = || db.count("SELECT expires_at FROM leases WHERE name = 'telegram'");
    let mut seen = expiry().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    for _ in 0..2 {
        loop {
            let now = expiry().await;
            if now > seen {
                seen = now;
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the lease is never renewed");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert_eq!(telegram.conflicts(), 0, "only one node polls: Telegram never saw two pollers at once");

    let holder = db.count("SELECT COUNT(*) FROM leases WHERE name = 'telegram' AND holder = 'node-b'").await;
    let killed = nodes.remove(holder as usize); // node-b when it holds the lease, else node-a
    let status = Command::new("kill").args(["-KILL", &killed.child.id().to_string()]).status().unwrap();
    assert!(status.success());
    drop(killed);
    for id in 6..=8 {
        telegram.push_message(private_text(505, id, &format!("after {id}")));
    }
    let texts = wait_for_texts(&db, 8).await;
    let expected: Vec<String> = (1..=5).map(|n| format!("before {n}")).chain((6..=8).map(|n| format!("after {n}"))).collect();
    assert_eq!(texts, expected, "the other node took over: nothing lost, nothing twice, in order");
}
