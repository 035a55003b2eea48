//! The Store port's contract, run against the SQLite store.

use chrono::Utc;
use switchboard_core::ports::{Committed, StepWrite, Store};
use switchboard_models::{
    Channel, Contact, ContactId, Conversation, Handler, Message, MessageId, Sender, Status,
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
        attachments: Vec::new(),
        internal: false,
        quick_replies: vec!["Yes".into()],
        classification: None,
        external_id: external_id.map(String::from),
        created_at: Utc::now(),
    }
}

/// A contact with one saved conversation.
async fn conversation(store: &SqliteStore, who: &str) -> Conversation {
    let contact = Contact {
        id: ContactId::new(),
        channel: Channel::WebChat,
        external_id: who.into(),
        display_name: Some("Ann".into()),
        created_at: Utc::now(),
        unreachable_since: None,
    };
    let conversation = Conversation::new(contact.id, Channel::WebChat, Utc::now());
    let write = StepWrite { contact: Some(contact), conversation: Some(conversation.clone()), ..StepWrite::default() };
    assert_eq!(store.commit(write).await.unwrap(), Committed::Stored { seqs: vec![] });
    conversation
}

fn step_write(inbound: Option<Message>, outbound: Vec<Message>) -> StepWrite {
    StepWrite { inbound, outbound, ..StepWrite::default() }
}

#[tokio::test]
async fn a_message_with_a_known_external_id_is_a_duplicate_and_writes_nothing() {
    let (store, _dir) = fresh().await;
    let conversation = conversation(&store, "visitor-1").await;
    let first = store
        .commit(step_write(
            Some(message(&conversation, Sender::Customer, "hi", Some("v1:c1"))),
            vec![message(&conversation, Sender::Bot, "hello!", None)],
        ))
        .await
        .unwrap();
    let Committed::Stored { seqs } = first else { panic!("stored") };
    assert_eq!(seqs.len(), 2);
    assert!(seqs[0] < seqs[1], "inbound first, then replies");

    let mut changed = conversation.clone();
    changed.status = Status::Rejected;
    let again = StepWrite {
        inbound: Some(message(&conversation, Sender::Customer, "hi", Some("v1:c1"))),
        conversation: Some(changed),
        outbound: vec![message(&conversation, Sender::Bot, "hello again!", None)],
        ..StepWrite::default()
    };
    assert_eq!(store.commit(again).await.unwrap(), Committed::Duplicate);

    let stored = store.message_by_external_id(Channel::WebChat, "v1:c1").await.unwrap().unwrap();
    assert_eq!(stored.text, "hi");
    assert_eq!(stored.quick_replies, vec!["Yes".to_string()]);
    let all = store.contact_messages(conversation.contact_id, 0, 100).await.unwrap();
    assert_eq!(all.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(), ["hi", "hello!"], "the duplicate's reply was not stored");
    assert_eq!(store.conversation(conversation.id).await.unwrap().unwrap().status, Status::Open, "nor its state change");
    let later = store.contact_messages(conversation.contact_id, all[0].seq, 100).await.unwrap();
    assert_eq!(later.len(), 1, "history pages from a cursor");
}

#[tokio::test]
async fn contacts_are_upserted_and_conversations_round_trip() {
    let (store, _dir) = fresh().await;
    let mut conversation = conversation(&store, "visitor-2").await;
    let contact = store.contact_by_external_id(Channel::WebChat, "visitor-2").await.unwrap().unwrap();
    assert_eq!(contact.id, conversation.contact_id);
    let renamed = Contact { display_name: None, ..contact.clone() };
    conversation.handler = Handler::Queue;
    conversation.priority = Some(switchboard_models::Priority::High);
    conversation.escalation = Some(switchboard_models::Escalation {
        reason: switchboard_models::EscalationReason::LowConfidence { times: 2 },
        summary: "card charged twice".into(),
        at: chrono::DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap(),
    });
    let write = StepWrite { contact: Some(renamed), conversation: Some(conversation.clone()), ..StepWrite::default() };
    store.commit(write).await.unwrap();
    let same = store.contact_by_external_id(Channel::WebChat, "visitor-2").await.unwrap().unwrap();
    assert_eq!(same.display_name.as_deref(), Some("Ann"), "a missing name keeps the known one");
    let loaded = store.conversation(conversation.id).await.unwrap().unwrap();
    assert_eq!(loaded.handler, Handler::Queue);
    assert_eq!(loaded.escalation, conversation.escalation);
    assert_eq!(store.current_conversation(conversation.contact_id).await.unwrap().unwrap().id, conversation.id);
    assert_eq!(store.queue_view().await.unwrap().waiting, 1);

    conversation.status = Status::Closed;
    let write = StepWrite { conversation: Some(conversation.clone()), ..StepWrite::default() };
    store.commit(write).await.unwrap();
    assert_eq!(store.current_conversation(conversation.contact_id).await.unwrap(), None, "closed is not current");
}

#[tokio::test]
async fn a_failing_step_fails_alone_and_leaves_nothing() {
    let (store, _dir) = fresh().await;
    let conversation = conversation(&store, "visitor-3").await;
    // A reply in a conversation that does not exist breaks a foreign key at commit.
    let orphan = Conversation::new(ContactId::new(), Channel::WebChat, Utc::now());
    let bad = step_write(
        Some(message(&orphan, Sender::Customer, "lost?", Some("v3:x"))),
        vec![message(&orphan, Sender::Bot, "reply", None)],
    );
    let good = step_write(Some(message(&conversation, Sender::Customer, "fine", Some("v3:y"))), vec![]);
    let (bad, good) = tokio::join!(store.commit(bad), store.commit(good));
    assert!(bad.is_err(), "{bad:?}");
    assert!(matches!(good, Ok(Committed::Stored { .. })), "{good:?}");
    assert!(store.message_by_external_id(Channel::WebChat, "v3:x").await.unwrap().is_none());
    assert!(store.message_by_external_id(Channel::WebChat, "v3:y").await.unwrap().is_some());
}

async fn queue_replies(store: &SqliteStore, conversation: &Conversation, texts: &[&str]) {
    let replies = texts.iter().map(|t| message(conversation, Sender::Bot, t, None)).collect();
    store.commit(step_write(None, replies)).await.unwrap();
}

#[tokio::test]
async fn outbound_messages_are_leased_delivered_and_retried() {
    let (store, _dir) = fresh().await;
    let conversation = conversation(&store, "visitor-4").await;
    let now = Utc::now() + chrono::Duration::seconds(1);
    queue_replies(&store, &conversation, &["one", "two"]).await;

    let lease = now + chrono::Duration::seconds(30);
    let claimed = store.claim_outbox(now, lease, 10).await.unwrap();
    assert_eq!(claimed.iter().map(|o| o.message.text.as_str()).collect::<Vec<_>>(), ["one", "two"]);
    assert_eq!(claimed[0].recipient_external_id, "visitor-4");
    assert!(store.claim_outbox(now, lease, 10).await.unwrap().is_empty(), "leased messages are not claimed twice");

    store.mark_delivered(&[claimed[0].message.seq], now).await.unwrap();
    store.mark_failed(claimed[1].message.seq, "timeout", Some(now + chrono::Duration::seconds(5))).await.unwrap();
    assert!(store.claim_outbox(now, lease, 10).await.unwrap().is_empty(), "a retry waits for its time");
    let retried = store.claim_outbox(now + chrono::Duration::seconds(6), lease, 10).await.unwrap();
    assert_eq!(retried.len(), 1);
    assert_eq!(retried[0].message.text, "two");
    assert_eq!(retried[0].attempts, 1);

    store.mark_failed(retried[0].message.seq, "blocked", None).await.unwrap();
    let much_later = now + chrono::Duration::days(1);
    assert!(store.claim_outbox(much_later, much_later, 10).await.unwrap().is_empty(), "given up for good");
}

#[tokio::test]
async fn an_expired_lease_is_claimed_again() {
    let (store, _dir) = fresh().await;
    let conversation = conversation(&store, "visitor-5").await;
    let now = Utc::now() + chrono::Duration::seconds(1);
    queue_replies(&store, &conversation, &["hi"]).await;
    let lease = now + chrono::Duration::seconds(30);
    assert_eq!(store.claim_outbox(now, lease, 10).await.unwrap().len(), 1);
    let after_lease = lease + chrono::Duration::seconds(1);
    assert_eq!(store.claim_outbox(after_lease, after_lease, 10).await.unwrap().len(), 1, "a crash mid-delivery is retried");
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
