//! Storage faults: a write that fails is refused, never acknowledged; nothing refused is half
//! stored; the store recovers by itself when the cause goes away. On both backends.

use chrono::Utc;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use switchboard_admin_web::accounts::create_account;
use switchboard_core::ports::{Committed, StepWrite, Store};
use crate::store::message;
use switchboard_models::{Channel, Contact, ContactId, Conversation, Role, Sender};
use switchboard_tests::TestServer;
use switchboard_tests::databases::TestDatabase;
use switchboard_tests::panel::PanelClient;

/// A customer message and the bot's reply to it, as one step.
fn step(conversation: &Conversation, external_id: &str, text: String) -> StepWrite {
    let inbound = message(conversation, Sender::Customer, &text, Some(external_id));
    let reply = message(conversation, Sender::Bot, &format!("reply to {external_id}"), None);
    StepWrite { inbound: Some(inbound), outbound: vec![reply], ..StepWrite::default() }
}

async fn new_conversation(store: &dyn Store) -> Conversation {
    let contact = Contact {
        id: ContactId::new(),
        channel: Channel::WebChat,
        external_id: "visitor-faults".into(),
        display_name: None,
        created_at: Utc::now(),
        unreachable_since: None,
        unreachable_reason: None,
        email: None,
    };
    let conversation = Conversation::new(contact.id, Channel::WebChat, Utc::now());
    let write = StepWrite { contact: Some(contact), conversation: Some(conversation.clone()), ..StepWrite::default() };
    store.commit(write).await.expect("first write");
    conversation
}

/// What the store answered for each message sent.
#[derive(Default)]
struct Answers {
    acknowledged: Vec<String>,
    refused: Vec<String>,
}

impl Answers {
    async fn send(&mut self, store: &dyn Store, conversation: &Conversation, text_bytes: usize) -> bool {
        let id = format!("m{}", self.acknowledged.len() + self.refused.len());
        match store.commit(step(conversation, &id, "x".repeat(text_bytes))).await {
            Ok(Committed::Stored { .. }) => {
                self.acknowledged.push(id);
                true
            }
            Ok(refused @ (Committed::Duplicate | Committed::Conflict)) => panic!("{id} was never sent before and nothing changed the conversation: {refused:?}"),
            Err(_) => {
                self.refused.push(id);
                false
            }
        }
    }

    /// Every acknowledged message is stored once with its reply queued; nothing refused is.
    async fn check_against(&self, db: &TestDatabase) {
        let store = db.open().await;
        for id in &self.acknowledged {
            assert!(store.message_by_external_id(Channel::WebChat, id).await.unwrap().is_some(), "acknowledged {id} was lost");
        }
        for id in &self.refused {
            assert!(store.message_by_external_id(Channel::WebChat, id).await.unwrap().is_none(), "refused {id} was stored");
        }
        let customer = db.count("SELECT COUNT(*) FROM messages WHERE sender = 'customer'").await;
        let replies = db.count("SELECT COUNT(*) FROM messages WHERE sender = 'bot'").await;
        assert_eq!(customer as usize, self.acknowledged.len(), "customer messages stored");
        assert_eq!(replies as usize, self.acknowledged.len(), "a reply is queued only for a stored message");
    }
}

/// A small tmpfs mounted for one test, unmounted when dropped (needs root, as the test command runs).
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(megabytes: u32) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(status.success(), "mounting a small tmpfs failed: this test needs root (./scripts/test.sh runs as root)");
        Self { dir }
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

#[tokio::test]
async fn sqlite_a_full_disk_refuses_messages_and_writes_resume_when_space_returns() {
    let disk = SmallDisk::mount(6);
    let ballast = disk.path().join("ballast");
    std::fs::write(&ballast, vec![0u8; 2 << 20]).unwrap();
    let db = TestDatabase::sqlite_at(&disk.path().join("switchboard.db"));
    let store = db.open().await;
    let conversation = new_conversation(store.as_ref()).await;

    let mut answers = Answers::default();
    while answers.refused.is_empty() {
        answers.send(store.as_ref(), &conversation, 32 * 1024).await;
        assert!(answers.acknowledged.len() < 1000, "6 MB should have filled up");
    }
    // Still full: whatever is answered must be true.
    for _ in 0..20 {
        answers.send(store.as_ref(), &conversation, 32 * 1024).await;
    }

    std::fs::remove_file(&ballast).unwrap();
    for _ in 0..10 {
        assert!(answers.send(store.as_ref(), &conversation, 100).await, "writes resume without a restart");
    }
    let claimed = store.claim_outbox(Utc::now(), Utc::now() + chrono::Duration::seconds(30), 10_000).await.unwrap();
    assert_eq!(claimed.len(), answers.acknowledged.len(), "the outbox holds the replies of stored messages only");
    drop(store);
    answers.check_against(&db).await;
}

#[tokio::test]
async fn postgres_a_read_only_database_refuses_messages_and_writes_resume_when_it_returns() {
    let db = TestDatabase::postgres().await;
    let store: Arc<dyn Store> = db.open().await;
    let conversation = new_conversation(store.as_ref()).await;
    let mut answers = Answers::default();
    for _ in 0..5 {
        assert!(answers.send(store.as_ref(), &conversation, 100).await);
    }

    // The database turns read-only and every session is cut, as in a failover to a replica.
    db.execute_on_server(&format!("ALTER DATABASE {} SET default_transaction_read_only = on", db.postgres_name())).await;
    db.terminate_sessions().await;
    for _ in 0..5 {
        assert!(!answers.send(store.as_ref(), &conversation, 100).await, "a write to a read-only database is refused");
    }

    db.execute_on_server(&format!("ALTER DATABASE {} RESET default_transaction_read_only", db.postgres_name())).await;
    // Connections opened while read-only keep that setting; each failed one is discarded.
    let mut resumed = false;
    for _ in 0..40 {
        if answers.send(store.as_ref(), &conversation, 100).await {
            resumed = true;
            break;
        }
    }
    assert!(resumed, "writes resume without a restart");
    for _ in 0..5 {
        assert!(answers.send(store.as_ref(), &conversation, 100).await, "and stay resumed");
    }
    db.terminate_sessions().await;
    let mut after_cut = 0;
    for _ in 0..10 {
        after_cut += usize::from(answers.send(store.as_ref(), &conversation, 100).await);
    }
    assert!(after_cut >= 9, "a cut connection costs at most the write that used it ({after_cut} of 10)");
    drop(store);
    answers.check_against(&db).await;
}

/// The widget's HTTP fallback send: its status and JSON body.
async fn send(server: &TestServer, token: &str, client_id: &str, text: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(server.url("/webchat/messages"))
        .bearer_auth(token)
        .json(&json!({"client_id": client_id, "text": text}))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
}

async fn readiness(server: &TestServer) -> (u16, Value) {
    let response = reqwest::get(server.url("/readyz")).await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// Sends until the server refuses one; returns its client id.
async fn send_until_refused(server: &TestServer, token: &str, text: &str, at_most: usize) -> String {
    for n in 1..=at_most {
        let client_id = format!("m{n}");
        let (status, body) = send(server, token, &client_id, text).await;
        if status == 503 {
            assert_eq!(body["error"]["code"], "unavailable", "{body}");
            return client_id;
        }
        assert_eq!(status, 201, "{body}");
    }
    panic!("no send was refused in {at_most}");
}

/// Resends the refused message, as the widget does on `unavailable`, until it is stored; a
/// resend after that is a duplicate. (On PostgreSQL a pooled connection opened while the
/// database was read-only fails once more before it is discarded: that send is refused too.)
async fn resend_until_stored(server: &TestServer, token: &str, client_id: &str, text: &str) {
    let answered = || async {
        for _ in 0..50 {
            let status = send(server, token, client_id, text).await.0;
            if status != 503 {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        503
    };
    assert_eq!(answered().await, 201, "the refused message is stored once the cause is gone, without a restart");
    assert_eq!(answered().await, 200, "and only once");
}

/// While writes are refused: readiness is red with the reason, and admins see a banner.
async fn unready_with_a_banner(server: &TestServer, admin: &PanelClient) {
    let (status, ready) = readiness(server).await;
    assert_eq!(status, 503, "{ready}");
    assert!(ready["reason"].as_str().unwrap().contains("refused writes"), "{ready}");
    let page = admin.get("/panel/conversations").await;
    assert!(page.body.contains("data-test=\"storage-banner\""), "admins are told: {}", page.body);
    let system = admin.get("/panel/admin/system").await;
    assert!(system.body.contains("data-test=\"system-status\">unavailable<"), "and the System page says why: {}", system.body);
}

async fn ready_without_a_banner(server: &TestServer, admin: &PanelClient) {
    assert_eq!(readiness(server).await.0, 200);
    assert!(!admin.get("/panel/conversations").await.body.contains("storage-banner"));
}

async fn signed_in_admin(server: &TestServer) -> PanelClient {
    let store = server.engine().store();
    create_account(store.as_ref(), "ada@example.com", "Ada", Role::Admin, "a long enough password", None).await.unwrap();
    PanelClient::sign_in(&server.url(""), "ada@example.com", "a long enough password").await
}

#[tokio::test]
async fn sqlite_server_on_a_full_disk_refuses_turns_unready_and_recovers_without_a_restart() {
    let disk = SmallDisk::mount(8);
    let database = disk.path().join("switchboard.db");
    let server = TestServer::start_with(|config| {
        config.database.url = format!("sqlite://{}", database.display());
        // How many messages fit before the disk refuses one depends on how much of the WAL
        // file a checkpoint had freed for reuse: the visitor's rate limit must not end it first.
        config.webchat.rate_limit_per_minute = 100_000;
        config.webchat.rate_limit_burst = 10_000;
    })
    .await;
    let admin = signed_in_admin(&server).await;
    let (_, token) = server.new_visitor().await;
    assert_eq!(send(&server, &token, "m0", "hello").await.0, 201);
    assert_eq!(readiness(&server).await.0, 200);

    // Fill every byte that is left.
    let ballast = disk.path().join("ballast");
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&ballast).unwrap();
        while file.write_all(&[0u8; 64 * 1024]).is_ok() {}
    }
    let text = "my order has not arrived ".repeat(60);
    let refused = send_until_refused(&server, &token, &text, 3000).await;
    unready_with_a_banner(&server, &admin).await;

    std::fs::remove_file(&ballast).unwrap();
    resend_until_stored(&server, &token, &refused, &text).await;
    ready_without_a_banner(&server, &admin).await;
}

#[tokio::test]
async fn postgres_server_on_a_read_only_database_refuses_turns_unready_and_recovers_without_a_restart() {
    let db = TestDatabase::postgres().await;
    let url = db.url.clone();
    let server = TestServer::start_with(|config| config.database.url = url).await;
    let admin = signed_in_admin(&server).await;
    let (_, token) = server.new_visitor().await;
    assert_eq!(send(&server, &token, "m0", "hello").await.0, 201);

    db.execute_on_server(&format!("ALTER DATABASE {} SET default_transaction_read_only = on", db.postgres_name())).await;
    db.terminate_sessions().await;
    let refused = send_until_refused(&server, &token, "where is my order?", 40).await;
    unready_with_a_banner(&server, &admin).await;

    db.execute_on_server(&format!("ALTER DATABASE {} RESET default_transaction_read_only", db.postgres_name())).await;
    resend_until_stored(&server, &token, &refused, "where is my order?").await;
    ready_without_a_banner(&server, &admin).await;
}
