//! Storage faults: a write that fails is refused, never acknowledged; nothing refused is half
//! stored; the store recovers by itself when the cause goes away. On both backends.

use chrono::Utc;
use std::sync::Arc;
use switchboard_core::ports::{Committed, StepWrite, Store};
use crate::store::message;
use switchboard_models::{Channel, Contact, ContactId, Conversation, Sender};
use switchboard_tests::databases::TestDatabase;

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
            Ok(Committed::Duplicate) => panic!("{id} was never sent before"),
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
