//! Several `switchboard serve` processes on one PostgreSQL database: live news crosses nodes.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
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
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard-under-test"))
            .arg("serve")
            .current_dir(dir.path())
            .env("SWITCHBOARD_DATABASE__URL", database_url)
            .env("SWITCHBOARD_SERVER__LISTEN", "127.0.0.1:0")
            .env("SWITCHBOARD_NLP__ENABLED", "false")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let addr = line.trim().rsplit("http://").next().unwrap().to_string();
        assert!(addr.starts_with("127.0.0.1:"), "{line}");
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
