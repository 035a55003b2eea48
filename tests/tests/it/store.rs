//! The Store port's contract, run against the SQLite store.

use chrono::Utc;
use switchboard_core::ports::{Inserted, Store};
use switchboard_models::{
    Channel, Conversation, Handler, Message, MessageId, Sender, Status,
};
use switchboard_store::SqliteStore;

async fn fresh() -> (SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    let store = SqliteStore::open(&url).await.unwrap();
    store.migrate().await.unwrap();
    (store, dir)
}

fn message(conversation: &Conversation, sender: Sender, text: &str, external_id: Option<&str>) -> Message {
    Message {
        id: MessageId::new(),
        seq: 0,
        conversation_id: conversation.id,
        contact_id: conversation.contact_id,
        channel: conversation.channel,
        sender,
        agent_id: None,
        text: text.into(),
        quick_replies: vec!["Yes".into()],
        classification: None,
        external_id: external_id.map(String::from),
        created_at: Utc::now(),
    }
}

/// A contact with one saved conversation.
async fn conversation(store: &SqliteStore, who: &str) -> Conversation {
    let mut tx = store.begin().await.unwrap();
    let contact = tx.upsert_contact(Channel::WebChat, who, Some("Ann"), Utc::now()).await.unwrap();
    let conversation = Conversation::new(contact.id, Channel::WebChat, Utc::now());
    tx.save_conversation(&conversation).await.unwrap();
    tx.commit().await.unwrap();
    conversation
}

#[tokio::test]
async fn a_message_with_a_known_external_id_is_a_duplicate() {
    let (store, _dir) = fresh().await;
    let conversation = conversation(&store, "visitor-1").await;
    let mut tx = store.begin().await.unwrap();
    let first = tx.insert_message(&message(&conversation, Sender::Customer, "hi", Some("v1:c1"))).await.unwrap();
    let again = tx.insert_message(&message(&conversation, Sender::Customer, "hi", Some("v1:c1"))).await.unwrap();
    // Messages without an external id (bot replies) never collide.
    let bot_a = tx.insert_message(&message(&conversation, Sender::Bot, "a", None)).await.unwrap();
    let bot_b = tx.insert_message(&message(&conversation, Sender::Bot, "b", None)).await.unwrap();
    tx.commit().await.unwrap();
    assert!(matches!(first, Inserted::New { .. }));
    assert_eq!(again, Inserted::Duplicate);
    assert!(matches!((bot_a, bot_b), (Inserted::New { .. }, Inserted::New { .. })));

    let stored = store.message_by_external_id(Channel::WebChat, "v1:c1").await.unwrap().unwrap();
    assert_eq!(stored.text, "hi");
    assert_eq!(stored.quick_replies, vec!["Yes".to_string()]);
    let all = store.contact_messages(conversation.contact_id, 0, 100).await.unwrap();
    assert_eq!(all.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(), ["hi", "a", "b"]);
    let later = store.contact_messages(conversation.contact_id, all[0].seq, 100).await.unwrap();
    assert_eq!(later.len(), 2, "history pages from a cursor");
}

#[tokio::test]
async fn contacts_are_upserted_and_conversations_round_trip() {
    let (store, _dir) = fresh().await;
    let mut conversation = conversation(&store, "visitor-2").await;
    let mut tx = store.begin().await.unwrap();
    let same = tx.upsert_contact(Channel::WebChat, "visitor-2", None, Utc::now()).await.unwrap();
    assert_eq!(same.id, conversation.contact_id, "same channel identity, same contact");
    assert_eq!(same.display_name.as_deref(), Some("Ann"), "a missing name keeps the known one");
    conversation.handler = Handler::Queue;
    conversation.priority = Some(switchboard_models::Priority::High);
    conversation.escalation = Some(switchboard_models::Escalation {
        reason: switchboard_models::EscalationReason::LowConfidence { times: 2 },
        summary: "card charged twice".into(),
        at: chrono::DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap(),
    });
    tx.save_conversation(&conversation).await.unwrap();
    tx.commit().await.unwrap();
    let loaded = store.conversation(conversation.id).await.unwrap().unwrap();
    assert_eq!(loaded.handler, Handler::Queue);
    assert_eq!(loaded.escalation, conversation.escalation);
    assert_eq!(store.current_conversation(conversation.contact_id).await.unwrap().unwrap().id, conversation.id);

    conversation.status = Status::Closed;
    let mut tx = store.begin().await.unwrap();
    tx.save_conversation(&conversation).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(store.current_conversation(conversation.contact_id).await.unwrap(), None, "closed is not current");
}

#[tokio::test]
async fn an_uncommitted_transaction_leaves_nothing() {
    let (store, _dir) = fresh().await;
    let conversation = conversation(&store, "visitor-3").await;
    {
        let mut tx = store.begin().await.unwrap();
        tx.insert_message(&message(&conversation, Sender::Customer, "lost?", Some("v3:x"))).await.unwrap();
        // dropped without commit
    }
    assert!(store.message_by_external_id(Channel::WebChat, "v3:x").await.unwrap().is_none());
}

#[tokio::test]
async fn outbox_entries_are_leased_delivered_and_retried() {
    let (store, _dir) = fresh().await;
    let conversation = conversation(&store, "visitor-4").await;
    let now = Utc::now();
    let mut tx = store.begin().await.unwrap();
    let mut seqs = Vec::new();
    for text in ["one", "two"] {
        let Inserted::New { seq } = tx.insert_message(&message(&conversation, Sender::Bot, text, None)).await.unwrap() else {
            panic!("new message")
        };
        tx.enqueue_outbox(seq, now).await.unwrap();
        seqs.push(seq);
    }
    tx.commit().await.unwrap();

    let lease = now + chrono::Duration::seconds(30);
    let claimed = store.claim_outbox(now, lease, 10).await.unwrap();
    assert_eq!(claimed.iter().map(|o| o.message.text.as_str()).collect::<Vec<_>>(), ["one", "two"]);
    assert_eq!(claimed[0].recipient_external_id, "visitor-4");
    assert!(store.claim_outbox(now, lease, 10).await.unwrap().is_empty(), "leased entries are not claimed twice");

    store.mark_delivered(&[claimed[0].outbox_id], now).await.unwrap();
    store.mark_failed(claimed[1].outbox_id, "timeout", Some(now + chrono::Duration::seconds(5))).await.unwrap();
    assert!(store.claim_outbox(now, lease, 10).await.unwrap().is_empty(), "retry waits for its time");
    let retried = store.claim_outbox(now + chrono::Duration::seconds(6), lease, 10).await.unwrap();
    assert_eq!(retried.len(), 1);
    assert_eq!(retried[0].message.text, "two");
    assert_eq!(retried[0].attempts, 1);

    store.mark_failed(retried[0].outbox_id, "blocked", None).await.unwrap();
    let much_later = now + chrono::Duration::days(1);
    assert!(store.claim_outbox(much_later, much_later, 10).await.unwrap().is_empty(), "given up for good");
    // An expired lease makes an undelivered entry claimable again (crash during delivery).
}

#[tokio::test]
async fn an_expired_lease_is_claimed_again() {
    let (store, _dir) = fresh().await;
    let conversation = conversation(&store, "visitor-5").await;
    let now = Utc::now();
    let mut tx = store.begin().await.unwrap();
    let Inserted::New { seq } = tx.insert_message(&message(&conversation, Sender::Bot, "hi", None)).await.unwrap() else {
        panic!()
    };
    tx.enqueue_outbox(seq, now).await.unwrap();
    tx.commit().await.unwrap();
    let lease = now + chrono::Duration::seconds(30);
    assert_eq!(store.claim_outbox(now, lease, 10).await.unwrap().len(), 1);
    let after_lease = lease + chrono::Duration::seconds(1);
    assert_eq!(store.claim_outbox(after_lease, after_lease, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn settings_keep_the_first_value() {
    let (store, _dir) = fresh().await;
    assert_eq!(store.setting_or_insert("k", "first").await.unwrap(), "first");
    assert_eq!(store.setting_or_insert("k", "second").await.unwrap(), "first");
}

#[tokio::test]
async fn unknown_enum_values_are_refused_by_the_schema() {
    let (_store, dir) = fresh().await;
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let error = sqlx::query(
        "INSERT INTO contacts (id, channel, external_id, created_at) VALUES ('x', 'fax', 'y', 0)",
    )
    .execute(&pool)
    .await
    .unwrap_err();
    assert!(error.to_string().contains("CHECK constraint failed"), "{error}");
}
