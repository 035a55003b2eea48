//! The Store port's contract: every test runs against SQLite and against PostgreSQL.

use chrono::Utc;
use std::sync::Arc;
use switchboard_core::ports::{
    AdminWrite, Assignee, CannedChange, Committed, ConversationFilter, CustomerCursor, CustomerFilter, ListCursor, ListOrder, ListTotal, SessionRecord, StepWrite, Store,
};
use switchboard_models::{
    Agent, Attachment, Classification, ClassificationSource, IntentName, Urgency, AgentId, ApiToken, AuditAction, AuditEntry, CannedResponse, Category, Channel, Contact, ContactId,
    Conversation, ConversationId, DeliveryState, Handler, Message, MessageId, Presence, Priority, Role, Sender, Status, Timestamp,
};
use switchboard_core::timers::{Timer, TimerKind};
use switchboard_tests::databases::{Backend, TestDatabase};

/// Each contract test once per backend: `sqlite::name` and `postgres::name`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test] async fn $name() { super::$name(super::Backend::Sqlite).await })*
        }
        mod postgres {
            $(#[tokio::test] async fn $name() { super::$name(super::Backend::Postgres).await })*
        }
    };
}

on_both_backends!(
    a_message_with_a_known_external_id_is_a_duplicate_and_writes_nothing,
    contacts_are_upserted_and_conversations_round_trip,
    a_conversation_written_with_its_messages_round_trips_every_field,
    a_failing_step_fails_alone_and_leaves_nothing,
    outbound_messages_are_leased_delivered_and_retried,
    an_expired_lease_is_claimed_again,
    settings_keep_the_first_value,
    unknown_enum_values_are_refused_by_the_schema,
    agents_presence_and_assignment_candidates,
    sessions_api_tokens_and_canned_responses,
    lists_filters_search_and_counts,
    audit_entries_newest_first,
    message_pages_and_recent_customer_texts,
    stored_messages_wait_unanswered_until_one_step_answers_them,
    a_lease_has_one_holder_until_it_expires_or_is_released,
    a_connection_state_keeps_its_last_success_and_error_and_the_newest_report_wins,
    a_connection_its_node_still_runs_is_stamped_again_and_one_it_gave_up_is_not,
    a_direct_notice_is_queued_once_claimed_by_one_and_retried_until_sent,
    exclusive_work_waits_for_the_holder_on_another_connection,
    the_outbox_backlog_counts_undelivered_replies_and_dates_the_oldest,
    replies_handed_to_the_outbox_are_claimed_only_once_their_lease_ends,
    each_reply_has_a_delivery_state_and_failures_flag_the_conversation,
    lists_page_by_cursor_in_both_orders_and_stay_stable_while_rows_arrive,
    customers_page_newest_first_with_search_channel_and_counts,
    timers_are_set_with_their_step_claimed_when_due_and_fire_once,
    a_step_decided_on_a_stale_read_is_refused_whole,
    a_customer_stored_or_given_a_conversation_meanwhile_is_a_conflict,
    a_contacts_messages_are_answered_only_in_the_order_stored,
    an_admin_change_and_its_audit_entries_are_written_together_or_not_at_all,
    a_message_is_found_by_its_seq,
    a_closed_store_refuses_work_and_sqlite_is_one_file_again,
    the_queue_says_who_is_ahead_and_how_long_first_replies_took,
    steps_committed_at_once_are_each_stored_refused_or_failed_on_their_own,
    steps_saving_their_conversation_committed_at_once_each_keep_their_own_messages_and_state,
    refused_steps_amid_others_committed_at_once_write_nothing,
    notifications_are_written_with_their_step_for_an_agent_or_every_admin_and_read_once,
    notifications_to_mail_wait_until_mailed_or_given_up,
    customers_notice_copies_wait_until_mailed_or_given_up,
    a_scheduled_job_run_is_taken_once_and_replanned_only_when_its_schedule_changes,
    retention_counts_then_deletes_expired_sessions_and_old_read_notifications,
    sla_clocks_round_trip_and_lists_sort_by_the_nearest_due_time,
    one_rating_per_resolution_its_comment_and_every_escalation_are_kept,
    documents_wait_pending_first_and_are_decided_once,
    contacts_join_into_one_person_with_proof_and_separate_again,
    how_far_an_agent_saw_a_conversation_only_moves_forward,
    reports_count_a_periods_conversations_events_waits_intents_and_ratings_in_the_database,
    reports_count_whole_past_days_once_and_late_answers_still_count,
    intents_versions_follow_one_another_with_their_labels_and_are_measured_once,
    a_password_link_is_used_once_before_it_expires_and_ends_the_sessions,
    settings_are_stored_replaced_and_reset_with_their_audit,
    webhook_events_are_queued_with_their_step_claimed_once_and_a_failing_webhook_turns_off_once,
    inbound_events_set_aside_are_kept_with_a_notice_and_settled_once,
    an_escalation_wanting_a_summary_is_kept_with_its_step_and_claimed_once,
    two_factor_codes_are_taken_once_and_a_sign_in_challenge_is_one_per_agent_until_it_ends,
);

/// Every method of every store port is called by a contract test here, so each one is held to
/// the same behaviour on both backends. A new port method fails this until a test uses it.
#[test]
fn every_store_port_method_has_a_contract_test() {
    let ports = include_str!("../../../core/src/ports.rs");
    let tests = include_str!("store.rs");
    let traits = ["Conversations", "Queue", "Timers", "Outbox", "Accounts", "Listings", "Notifications", "Ratings", "Reports", "IntentVersions", "PanelSettings", "Documents", "Identities", "Jobs", "Webhooks", "DeadLetters", "Coordination"];
    let mut untested = Vec::new();
    for name in traits {
        let start = ports.find(&format!("pub trait {name}: Send + Sync {{")).unwrap_or_else(|| panic!("port {name} is gone from ports.rs"));
        let body = &ports[start..start + ports[start..].find("\n}\n").expect("the trait's end")];
        for line in body.lines().map(str::trim).filter(|l| l.starts_with("async fn ")) {
            let method = &line["async fn ".len()..line.find('(').expect("a signature")];
            if !tests.contains(&format!(".{method}(")) {
                untested.push(format!("{name}::{method}"));
            }
        }
    }
    assert!(untested.is_empty(), "store port methods without a contract test in store.rs: {untested:?}");
}

/// Instants as the store keeps them (milliseconds), so round trips compare equal.
fn now() -> Timestamp {
    chrono::DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap()
}

async fn fresh(backend: Backend) -> (Arc<dyn Store>, TestDatabase) {
    let db = TestDatabase::new(backend).await;
    (db.open().await, db)
}

pub(crate) fn message(conversation: &Conversation, sender: Sender, text: &str, external_id: Option<&str>) -> Message {
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
        created_at: now(),
        delivery: None,
    }
}

/// A contact with one saved conversation.
async fn conversation(store: &dyn Store, who: &str) -> Conversation {
    let contact = Contact {
        id: ContactId::new(),
        channel: Channel::WebChat,
        external_id: who.into(),
        display_name: Some("Ann".into()),
        created_at: now(),
        unreachable_since: None,
        unreachable_reason: None,
        email: None,
    };
    let conversation = Conversation::new(contact.id, Channel::WebChat, now());
    let write = StepWrite { contact: Some(contact), conversation: Some(conversation.clone()), ..StepWrite::default() };
    assert_eq!(store.commit(write).await.unwrap(), Committed::Stored { seqs: vec![] });
    conversation
}

async fn save(store: &dyn Store, conversation: &Conversation) {
    let write = StepWrite { conversation: Some(conversation.clone()), ..StepWrite::default() };
    store.commit(write).await.unwrap();
}

fn step_write(inbound: Option<Message>, outbound: Vec<Message>) -> StepWrite {
    StepWrite { inbound, outbound, ..StepWrite::default() }
}

/// Stores `conversation` as changed by a customer message (text, external id) and the bot's reply.
async fn commit_with_exchange(store: &dyn Store, conversation: &Conversation, (text, external_id): (&str, &str), reply: &str) {
    let step = StepWrite {
        conversation: Some(conversation.clone()),
        ..step_write(Some(message(conversation, Sender::Customer, text, Some(external_id))), vec![message(conversation, Sender::Bot, reply, None)])
    };
    assert!(matches!(store.commit(step).await.unwrap(), Committed::Stored { .. }));
}

fn agent(name: &str, presence: Presence) -> Agent {
    Agent {
        id: AgentId::new(),
        email: format!("{}@example.com", name.to_lowercase()),
        name: name.into(),
        role: Role::Agent,
        presence,
        capacity: 3,
        active: true,
        created_at: now(),
        skills: Vec::new(),
    }
}

async fn a_message_with_a_known_external_id_is_a_duplicate_and_writes_nothing(backend: Backend) {
    let (store, db) = fresh(backend).await;
    let conversation = conversation(store.as_ref(), "visitor-1").await;
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
    if matches!(backend, Backend::Sqlite) {
        // The duplicate's reply was inserted and deleted again before its group's end filled
        // the full-text index: the index still matches the messages (FTS5 fails the check
        // otherwise).
        db.execute("INSERT INTO messages_fts (messages_fts, rank) VALUES ('integrity-check', 1)")
            .await
            .expect("the full-text index matches the stored messages");
        let indexed = db.count("SELECT COUNT(*) FROM messages_fts WHERE messages_fts MATCH 'hello'").await;
        assert_eq!(indexed, 1, "the stored reply is indexed, the duplicate's is not");
    }
}

async fn a_conversation_written_with_its_messages_round_trips_every_field(backend: Backend) {
    let (store, _db) = fresh(backend).await;
    // Started by a customer's first message, in one write, as the bot's one-write step does.
    let contact = Contact {
        id: ContactId::new(),
        channel: Channel::WebChat,
        external_id: "visitor-fold".into(),
        display_name: None,
        created_at: now(),
        unreachable_since: None,
        unreachable_reason: None,
        email: None,
    };
    let mut conversation = Conversation::new(contact.id, Channel::WebChat, now());
    conversation.priority = Some(Priority::Low);
    conversation.language = Some("de".into());
    let started = StepWrite {
        contact: Some(contact),
        conversation: Some(conversation.clone()),
        ..step_write(Some(message(&conversation, Sender::Customer, "Hallo", Some("v9:c1"))), vec![message(&conversation, Sender::Bot, "Hallo!", None)])
    };
    let Committed::Stored { seqs } = store.commit(started).await.unwrap() else { panic!("stored") };
    assert_eq!(seqs.len(), 2);
    let loaded = store.conversation(conversation.id).await.unwrap().unwrap();
    assert_eq!(loaded, Conversation { version: 1, ..conversation.clone() });

    // Every column changed by the next message's step.
    let mut changed = loaded.clone();
    changed.handler = Handler::Queue;
    changed.status = Status::Open;
    changed.category = Some(Category::Billing);
    changed.priority = Some(Priority::Urgent);
    changed.escalation = Some(switchboard_models::Escalation {
        reason: switchboard_models::EscalationReason::LowConfidence { times: 3 },
        summary: "charged twice".into(),
        at: now(),
    });
    changed.low_confidence_streak = 3;
    changed.updated_at = now() + chrono::Duration::seconds(1);
    changed.waiting_notice_at = Some(now() + chrono::Duration::seconds(2));
    changed.first_reply_due_at = Some(now() + chrono::Duration::minutes(15));
    changed.resolution_due_at = Some(now() + chrono::Duration::hours(4));
    changed.sla_notices = switchboard_models::SlaNotices(switchboard_models::SlaNotices::FIRST_REPLY_WARNING);
    changed.awaiting = Some(switchboard_models::Awaiting::Document { document_type: "invoice".into() });
    changed.language = Some("fr".into());
    commit_with_exchange(store.as_ref(), &changed, ("Bonjour", "v9:c2"), "Un instant").await;
    assert_eq!(store.conversation(conversation.id).await.unwrap().unwrap(), Conversation { version: 2, ..changed.clone() });

    // Only columns no index holds (SQLite then leaves the indexed ones alone), then only one
    // indexed column: each step's changes are stored, and the lists find the row by them.
    let mut quiet = Conversation { version: 2, ..changed };
    quiet.low_confidence_streak = 0;
    quiet.language = Some("it".into());
    quiet.updated_at = now() + chrono::Duration::seconds(3);
    commit_with_exchange(store.as_ref(), &quiet, ("Ciao", "v9:c3"), "Ciao!").await;
    assert_eq!(store.conversation(conversation.id).await.unwrap().unwrap(), Conversation { version: 3, ..quiet.clone() });
    let mut lowered = Conversation { version: 3, ..quiet };
    lowered.priority = Some(Priority::Low);
    commit_with_exchange(store.as_ref(), &lowered, ("Grazie", "v9:c4"), "Prego").await;
    assert_eq!(store.conversation(conversation.id).await.unwrap().unwrap(), Conversation { version: 4, ..lowered });
    let listed = |priority| {
        let store = store.clone();
        async move {
            let filter = switchboard_core::ports::ConversationFilter { priority: Some(priority), limit: 10, ..Default::default() };
            store.list_conversations(&filter).await.unwrap().into_iter().map(|summary| summary.conversation.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(listed(Priority::Low).await, [conversation.id], "found by its new priority");
    assert!(listed(Priority::Urgent).await.is_empty(), "no longer under its old one");
}

async fn contacts_are_upserted_and_conversations_round_trip(backend: Backend) {
    let (store, _db) = fresh(backend).await;
    let mut conversation = conversation(store.as_ref(), "visitor-2").await;
    let contact = store.contact_by_external_id(Channel::WebChat, "visitor-2").await.unwrap().unwrap();
    assert_eq!(contact.id, conversation.contact_id);
    assert_eq!(store.contact(contact.id).await.unwrap(), Some(contact.clone()));
    let renamed = Contact { display_name: None, ..contact.clone() };
    conversation.handler = Handler::Queue;
    conversation.priority = Some(Priority::High);
    conversation.escalation = Some(switchboard_models::Escalation {
        reason: switchboard_models::EscalationReason::LowConfidence { times: 2 },
        summary: "card charged twice".into(),
        at: now(),
    });
    let write = StepWrite { contact: Some(renamed), conversation: Some(conversation.clone()), ..StepWrite::default() };
    store.commit(write).await.unwrap();
    let same = store.contact_by_external_id(Channel::WebChat, "visitor-2").await.unwrap().unwrap();
    assert_eq!(same.display_name.as_deref(), Some("Ann"), "a missing name keeps the known one");
    let loaded = store.conversation(conversation.id).await.unwrap().unwrap();
    assert_eq!(loaded, Conversation { version: 1, ..conversation.clone() }, "stored rows start at version 1");
    assert_eq!(store.current_conversation(conversation.contact_id).await.unwrap().unwrap().id, conversation.id);
    let (both_contact, both_conversation) =
        store.contact_and_current_conversation(Channel::WebChat, "visitor-2").await.unwrap().unwrap();
    assert_eq!((both_contact.id, both_conversation.map(|c| c.id)), (contact.id, Some(conversation.id)));
    assert_eq!(store.queue_view().await.unwrap().waiting, 1);
    assert_eq!(store.queued_conversations(10).await.unwrap().iter().map(|c| c.id).collect::<Vec<_>>(), [conversation.id]);

    let since = now();
    store.mark_unreachable(contact.id, since, "The customer blocked the bot on Telegram.").await.unwrap();
    store.mark_unreachable(contact.id, since + chrono::Duration::seconds(5), "later").await.unwrap();
    let unreachable = store.contact(contact.id).await.unwrap().unwrap();
    assert_eq!(unreachable.unreachable_since, Some(since), "the first time is kept");
    assert_eq!(unreachable.unreachable_reason.as_deref(), Some("The customer blocked the bot on Telegram."));
    let writes_again = StepWrite { contact: Some(unreachable.clone()), ..StepWrite::default() };
    store.commit(writes_again).await.unwrap();
    let reachable = store.contact(contact.id).await.unwrap().unwrap();
    assert_eq!((reachable.unreachable_since, reachable.unreachable_reason), (None, None), "writing again clears it");

    // An address the customer left is kept with a step, and survives their next message.
    store.commit(StepWrite { contact_email: Some((contact.id, "ann@example.com".into())), ..StepWrite::default() }).await.unwrap();
    store.commit(StepWrite { contact: Some(store.contact(contact.id).await.unwrap().unwrap()), ..StepWrite::default() }).await.unwrap();
    assert_eq!(store.contact(contact.id).await.unwrap().unwrap().email.as_deref(), Some("ann@example.com"));
    let (found, _) = store.contact_and_current_conversation(Channel::WebChat, "visitor-2").await.unwrap().unwrap();
    assert_eq!(found.email.as_deref(), Some("ann@example.com"));

    conversation.status = Status::Closed;
    save(store.as_ref(), &conversation).await;
    assert_eq!(store.current_conversation(conversation.contact_id).await.unwrap(), None, "closed is not current");
    let (_, none) = store.contact_and_current_conversation(Channel::WebChat, "visitor-2").await.unwrap().unwrap();
    assert_eq!(none, None);
    assert_eq!(store.contact_and_current_conversation(Channel::WebChat, "nobody").await.unwrap(), None);
}

async fn a_failing_step_fails_alone_and_leaves_nothing(backend: Backend) {
    let (store, _db) = fresh(backend).await;
    let conversation = conversation(store.as_ref(), "visitor-3").await;
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
    let later = step_write(Some(message(&conversation, Sender::Customer, "after", Some("v3:z"))), vec![]);
    assert!(matches!(store.commit(later).await, Ok(Committed::Stored { .. })), "the store goes on after a failed step");
}

async fn queue_replies(store: &dyn Store, conversation: &Conversation, texts: &[&str]) {
    let replies = texts.iter().map(|t| message(conversation, Sender::Bot, t, None)).collect();
    store.commit(step_write(None, replies)).await.unwrap();
}

async fn outbound_messages_are_leased_delivered_and_retried(backend: Backend) {
    let (store, _db) = fresh(backend).await;
    let conversation = conversation(store.as_ref(), "visitor-4").await;
    let now = Utc::now() + chrono::Duration::seconds(1);
    queue_replies(store.as_ref(), &conversation, &["one", "two"]).await;

    let lease = now + chrono::Duration::seconds(30);
    let claimed = store.claim_outbox(now, lease, 10).await.unwrap();
    assert_eq!(claimed.iter().map(|o| o.message.text.as_str()).collect::<Vec<_>>(), ["one", "two"]);
    assert_eq!(claimed[0].recipient_external_id, "visitor-4");
    assert!(store.claim_outbox(now, lease, 10).await.unwrap().is_empty(), "leased messages are not claimed twice");

    store.mark_delivered(&[(claimed[0].message.seq, None)], now).await.unwrap();
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

/// A step's replies stored leased (handed to this node's outbox in memory) are not claimable
/// until the lease ends: then any node's pass takes them (their node died), once.
async fn replies_handed_to_the_outbox_are_claimed_only_once_their_lease_ends(backend: Backend) {
    let (store, _db) = fresh(backend).await;
    let conversation = conversation(store.as_ref(), "visitor-5").await;
    let now = Utc::now() + chrono::Duration::seconds(1);
    let leased_until = now + chrono::Duration::seconds(60);
    let mut write = step_write(None, vec![message(&conversation, Sender::Bot, "handed over", None)]);
    write.outbound_leased_until = Some(leased_until);
    store.commit(write).await.unwrap();
    queue_replies(store.as_ref(), &conversation, &["claimable"]).await;

    let claimed = store.claim_outbox(now, now + chrono::Duration::seconds(30), 10).await.unwrap();
    assert_eq!(claimed.iter().map(|o| o.message.text.as_str()).collect::<Vec<_>>(), ["claimable"], "a leased reply is not claimed");
    assert_eq!(store.outbox_backlog().await.unwrap().0, 2, "both wait for delivery");
    let after_lease = leased_until + chrono::Duration::seconds(1);
    let taken_over = store.claim_outbox(after_lease, after_lease + chrono::Duration::seconds(30), 10).await.unwrap();
    let texts: Vec<&str> = taken_over.iter().map(|o| o.message.text.as_str()).collect();
    assert!(texts.contains(&"handed over"), "once the lease ends the reply is claimed: {texts:?}");
    assert_eq!(taken_over[texts.iter().position(|t| *t == "handed over").unwrap()].recipient_external_id, "visitor-5");
    assert!(store.claim_outbox(after_lease, after_lease, 10).await.unwrap().is_empty(), "and leased again by that claim");

    // Delivered by its own node in time: never claimed.
    let mut write = step_write(None, vec![message(&conversation, Sender::Bot, "sent in time", None)]);
    write.outbound_leased_until = Some(leased_until);
    let Committed::Stored { seqs } = store.commit(write).await.unwrap() else { panic!("stored") };
    store.mark_delivered(&[(seqs[0], None)], now).await.unwrap();
    let much_later = now + chrono::Duration::days(1);
    let texts: Vec<String> = store.claim_outbox(much_later, much_later, 10).await.unwrap().into_iter().map(|o| o.message.text).collect();
    assert!(!texts.contains(&"sent in time".to_string()), "{texts:?}");
}

async fn each_reply_has_a_delivery_state_and_failures_flag_the_conversation(backend: Backend) {
    let (store, _db) = fresh(backend).await;
    let conversation = conversation(store.as_ref(), "visitor-9").await;
    let other = self::conversation(store.as_ref(), "visitor-10").await;
    let now = now() + chrono::Duration::seconds(1);
    queue_replies(store.as_ref(), &conversation, &["sent", "retrying", "failed", "queued"]).await;
    let state_of = |messages: &[Message], text: &str| messages.iter().find(|m| m.text == text).and_then(|m| m.delivery.clone());
    let page = store.conversation_messages(conversation.id, 0, 10).await.unwrap();
    assert!(page.iter().all(|m| m.delivery.as_ref().is_some_and(|d| d.state == DeliveryState::Queued && d.attempts == 0)));

    let claimed = store.claim_outbox(now, now + chrono::Duration::seconds(30), 3).await.unwrap();
    store.mark_delivered(&[(claimed[0].message.seq, Some("tg-42".into()))], now).await.unwrap();
    let retry_at = now + chrono::Duration::seconds(30);
    store.mark_failed(claimed[1].message.seq, "Telegram could not be reached", Some(retry_at)).await.unwrap();
    store.mark_failed(claimed[2].message.seq, "The customer blocked the bot on Telegram.", None).await.unwrap();

    let page = store.conversation_messages(conversation.id, 0, 10).await.unwrap();
    let sent = state_of(&page, "sent").unwrap();
    assert_eq!((sent.state, sent.sent_id.as_deref(), sent.sent_at, sent.attempts), (DeliveryState::Sent, Some("tg-42"), Some(now), 1));
    let retrying = state_of(&page, "retrying").unwrap();
    assert_eq!((retrying.state, retrying.attempts, retrying.next_attempt_at), (DeliveryState::Retrying, 1, Some(retry_at)));
    let failed = state_of(&page, "failed").unwrap();
    assert_eq!(failed.state, DeliveryState::Failed);
    assert_eq!(failed.error.as_deref(), Some("The customer blocked the bot on Telegram."));
    assert!(failed.failed_at.is_some());
    assert_eq!(state_of(&page, "queued").unwrap().state, DeliveryState::Queued);

    let all = ConversationFilter { limit: 50, ..Default::default() };
    let listed = store.list_conversations(&all).await.unwrap();
    let undelivered = |id| listed.iter().find(|s| s.conversation.id == id).unwrap().undelivered;
    assert_eq!((undelivered(conversation.id), undelivered(other.id)), (1, 0));
    let flagged = store.list_conversations(&ConversationFilter { undelivered: true, ..all.clone() }).await.unwrap();
    assert_eq!(flagged.iter().map(|s| s.conversation.id).collect::<Vec<_>>(), [conversation.id]);

    let failed_seq = page.iter().find(|m| m.text == "failed").unwrap().seq;
    assert!(store.retry_delivery(other.id, failed_seq, now).await.unwrap().is_none(), "only within its conversation");
    let sent_seq = page.iter().find(|m| m.text == "sent").unwrap().seq;
    assert!(store.retry_delivery(conversation.id, sent_seq, now).await.unwrap().is_none(), "a sent reply is not sent again");
    let later = now + chrono::Duration::seconds(60);
    let retried = store.retry_delivery(conversation.id, failed_seq, later).await.unwrap().unwrap();
    assert_eq!(retried.delivery.map(|d| (d.state, d.attempts, d.error)), Some((DeliveryState::Queued, 0, None)));
    let again = store.claim_outbox(later, later + chrono::Duration::seconds(30), 10).await.unwrap();
    let again = again.iter().find(|o| o.message.seq == failed_seq).expect("claimed again at once");
    assert_eq!(again.retry_from, Some(later), "a new retry window starts");
    assert!(store.list_conversations(&ConversationFilter { undelivered: true, ..all.clone() }).await.unwrap().is_empty());

    // A bounce after the channel took it; seen once, and never a failed reply.
    let sent_id = page.iter().find(|m| m.text == "sent").unwrap().id;
    let bounced = store.fail_delivery(sent_id, "The mailbox does not exist (5.1.1).", later).await.unwrap().unwrap();
    assert_eq!(bounced.delivery.map(|d| d.state), Some(DeliveryState::Failed));
    assert!(store.fail_delivery(MessageId::new(), "x", later).await.unwrap().is_none(), "not ours");
    store.mark_delivered(&[(again.message.seq, None)], later).await.unwrap();
    let seen = store.mark_seen(conversation.contact_id, i64::MAX, later).await.unwrap();
    let mut seen_texts: Vec<&str> = seen.iter().map(|m| m.text.as_str()).collect();
    seen_texts.sort();
    assert_eq!(seen_texts, ["failed", "queued", "retrying"], "a widget may show a reply before it is recorded sent; never a bounced one");
    assert!(seen.iter().all(|m| m.delivery.as_ref().map(|d| d.state) == Some(DeliveryState::Seen)));
    assert!(store.mark_seen(conversation.contact_id, i64::MAX, later).await.unwrap().is_empty());
}

async fn lists_page_by_cursor_in_both_orders_and_stay_stable_while_rows_arrive(backend: Backend) {
    let (store, _db) = fresh(backend).await;
    let base = now() - chrono::Duration::hours(1);
    let mut queued = Vec::new();
    // Seven queued conversations: the later created, the earlier updated and escalated; two were
    // escalated at the same time, so the id breaks the tie.
    for i in 0..7i64 {
        let mut c = conversation(store.as_ref(), &format!("pager-{i}")).await;
        c.handler = Handler::Queue;
        c.updated_at = base - chrono::Duration::minutes(i);
        c.escalation = Some(switchboard_models::Escalation {
            reason: switchboard_models::EscalationReason::HumanRequested,
            summary: String::new(),
            at: base - chrono::Duration::minutes(i.min(5)),
        });
        save(store.as_ref(), &c).await;
        queued.push(c);
    }
    let pages = |order: ListOrder| {
        let store = store.clone();
        async move {
            let mut seen = Vec::new();
            let mut after = None;
            loop {
                let filter = ConversationFilter { assignee: Some(Assignee::Queue), order, after, limit: 3, ..Default::default() };
                let page = store.list_conversations(&filter).await.unwrap();
                seen.extend(page.iter().map(|s| s.conversation.id));
                if page.len() < 3 {
                    return seen;
                }
                after = Some(ListCursor::after(page.last().unwrap(), order));
            }
        }
    };
    let recent = pages(ListOrder::Recent).await;
    let waiting = pages(ListOrder::LongestWaiting).await;
    assert_eq!(recent.len(), 7, "every row once");
    assert_eq!(recent.iter().collect::<std::collections::HashSet<_>>().len(), 7);
    assert_eq!(recent, queued.iter().map(|c| c.id).collect::<Vec<_>>(), "the latest update first");
    assert_eq!(waiting[..2].iter().collect::<std::collections::HashSet<_>>(), [queued[5].id, queued[6].id].iter().collect(), "escalated earliest on top");
    assert_eq!(waiting[2..], [queued[4].id, queued[3].id, queued[2].id, queued[1].id, queued[0].id]);

    // Next in line: the most urgent first, then waiting longest; auto-assignment takes the same order.
    for (i, priority) in [(0, Priority::Urgent), (1, Priority::High), (3, Priority::Low)] {
        queued[i].priority = Some(priority);
        save(store.as_ref(), &queued[i]).await;
    }
    let next = pages(ListOrder::NextInLine).await;
    assert_eq!(next[..3], [queued[0].id, queued[1].id, queued[3].id], "urgent, high, low, though they waited least");
    assert_eq!(next[3..5].iter().collect::<std::collections::HashSet<_>>(), [queued[5].id, queued[6].id].iter().collect());
    assert_eq!(next[5..], [queued[4].id, queued[2].id], "then without a priority, longest waiting first");
    let taken_in_order: Vec<_> = store.queued_conversations(10).await.unwrap().iter().map(|c| c.id).collect();
    assert_eq!(taken_in_order, next);

    // A row that arrives between pages neither repeats nor hides one.
    let first = store.list_conversations(&ConversationFilter { order: ListOrder::Recent, limit: 3, ..Default::default() }).await.unwrap();
    let mut newest = conversation(store.as_ref(), "pager-new").await;
    newest.updated_at = now();
    save(store.as_ref(), &newest).await;
    let after = Some(ListCursor::after(first.last().unwrap(), ListOrder::Recent));
    let second = store.list_conversations(&ConversationFilter { order: ListOrder::Recent, after, limit: 3, ..Default::default() }).await.unwrap();
    assert!(second.iter().all(|s| s.conversation.id != newest.id && !first.iter().any(|f| f.conversation.id == s.conversation.id)));
    assert_eq!(second.len(), 3);
    assert_eq!(ListCursor::decode(&ListCursor::after(&second[0], ListOrder::Recent).encode()), Some(ListCursor::after(&second[0], ListOrder::Recent)));
    assert_eq!(ListCursor::decode("12.not-an-id"), None);
}

async fn customers_page_newest_first_with_search_channel_and_counts(backend: Backend) {
    let (store, _db) = fresh(backend).await;
    let base = now() - chrono::Duration::hours(1);
    // Seven customers, one a minute; two first wrote at the same instant, so the id breaks the tie.
    let mut contacts = Vec::new();
    for i in 0..7i64 {
        let contact = Contact {
            id: ContactId::new(),
            channel: if i % 2 == 0 { Channel::Telegram } else { Channel::Email },
            external_id: if i % 2 == 0 { format!("{}", 5550 + i) } else { format!("person{i}@Example.com") },
            display_name: (i != 3).then(|| if i == 5 { "Chidi Okafor".to_string() } else { format!("Customer {i}") }),
            created_at: base + chrono::Duration::minutes(i.min(5)),
            unreachable_since: None,
            unreachable_reason: None,
            email: None,
        };
        store.commit(StepWrite { contact: Some(contact.clone()), ..StepWrite::default() }).await.unwrap();
        contacts.push(contact);
    }
    // The fifth has two conversations, the later one is the latest; the seventh has none.
    let older = Conversation::new(contacts[4].id, contacts[4].channel, base);
    let mut newer = Conversation::new(contacts[4].id, contacts[4].channel, base + chrono::Duration::minutes(30));
    newer.status = Status::Resolved;
    for c in [&older, &newer] {
        save(store.as_ref(), c).await;
    }

    let pages = |filter: CustomerFilter| {
        let store = store.clone();
        async move {
            let mut seen = Vec::new();
            let mut after = None;
            loop {
                let page = store.list_customers(&CustomerFilter { after, limit: 2, ..filter.clone() }).await.unwrap();
                seen.extend(page.iter().cloned());
                if page.len() < 2 {
                    return seen;
                }
                after = Some(CustomerCursor::after_customer(page.last().unwrap()));
            }
        }
    };
    let all = pages(CustomerFilter::default()).await;
    let ids: Vec<_> = all.iter().map(|c| c.contact.id).collect();
    assert_eq!(ids.len(), 7, "every customer once");
    assert_eq!(ids[2..], [contacts[4].id, contacts[3].id, contacts[2].id, contacts[1].id, contacts[0].id], "newest first");
    assert_eq!(ids[..2].iter().collect::<std::collections::HashSet<_>>(), [contacts[5].id, contacts[6].id].iter().collect());
    assert_eq!(store.count_customers(&CustomerFilter::default()).await.unwrap(), 7);

    let fifth = all.iter().find(|c| c.contact.id == contacts[4].id).unwrap();
    assert_eq!(fifth.contact, contacts[4]);
    assert_eq!(fifth.conversations, 2);
    assert_eq!(fifth.latest.as_ref().map(|c| (c.id, c.status)), Some((newer.id, Status::Resolved)), "the latest conversation");
    let seventh = all.iter().find(|c| c.contact.id == contacts[6].id).unwrap();
    assert_eq!((seventh.conversations, seventh.latest.is_none()), (0, true));

    // Search: any part of a name or channel id, any case; with a channel filter; nothing.
    let found = |text: &str, channel: Option<Channel>| {
        let filter = CustomerFilter { text: Some(text.into()), channel, ..Default::default() };
        let pages = pages(filter.clone());
        let store = store.clone();
        async move {
            let ids: Vec<_> = pages.await.iter().map(|c| c.contact.id).collect();
            assert_eq!(store.count_customers(&filter).await.unwrap(), ids.len() as u64, "the total counts the rows for {filter:?}");
            ids
        }
    };
    assert_eq!(found("okaf", None).await, [contacts[5].id]);
    assert_eq!(found("EXAMPLE.COM", None).await, [contacts[5].id, contacts[3].id, contacts[1].id]);
    assert_eq!(found("555", Some(Channel::Telegram)).await, [contacts[6].id, contacts[4].id, contacts[2].id, contacts[0].id]);
    assert_eq!(found("customer", Some(Channel::Email)).await, [contacts[1].id]);
    assert_eq!(found("55", None).await.len(), 4, "short text still finds ids");
    assert!(found("zebra", None).await.is_empty());

    // A customer who arrives between pages neither repeats nor hides one.
    let first = store.list_customers(&CustomerFilter { limit: 3, ..Default::default() }).await.unwrap();
    let late = Contact { id: ContactId::new(), created_at: now(), external_id: "late".into(), ..contacts[0].clone() };
    store.commit(StepWrite { contact: Some(late.clone()), ..StepWrite::default() }).await.unwrap();
    let after = Some(CustomerCursor::after_customer(first.last().unwrap()));
    let second = store.list_customers(&CustomerFilter { after, limit: 3, ..Default::default() }).await.unwrap();
    assert_eq!(first.last().map(|c| c.contact.id), Some(contacts[4].id));
    assert_eq!(second.iter().map(|c| c.contact.id).collect::<Vec<_>>(), [contacts[3].id, contacts[2].id, contacts[1].id]);
    let cursor = CustomerCursor::after_customer(&second[0]);
    assert_eq!(CustomerCursor::decode(&cursor.encode()), Some(cursor));
}

async fn timers_are_set_with_their_step_claimed_when_due_and_fire_once(backend: Backend) {
    let (store, _db) = fresh(backend).await;
    let waiting = conversation(store.as_ref(), "timed-1").await;
    let resolved = conversation(store.as_ref(), "timed-2").await;
    let t0 = now();
    let at = |minutes: i64| t0 + chrono::Duration::minutes(minutes);
    let set = |c: &Conversation, timers: Vec<(TimerKind, Timestamp)>| StepWrite { timers: Some((c.id, timers)), ..StepWrite::default() };
    store.commit(set(&waiting, vec![(TimerKind::RemindWaiting, at(10)), (TimerKind::ResolveWaiting, at(30))])).await.unwrap();
    store.commit(set(&resolved, vec![(TimerKind::CloseResolved, at(20))])).await.unwrap();
    let kinds = |timers: Vec<Timer>| timers.into_iter().map(|t| (t.kind, t.due_at)).collect::<Vec<_>>();
    assert_eq!(kinds(store.timers_of(waiting.id).await.unwrap()), [(TimerKind::RemindWaiting, at(10)), (TimerKind::ResolveWaiting, at(30))]);

    // Due ones only, earliest first; a claimed timer is not claimed again until its lease ends.
    assert!(store.claim_due_timers(at(5), at(6), 10).await.unwrap().is_empty());
    let due = store.claim_due_timers(at(25), at(26), 10).await.unwrap();
    assert_eq!(due.iter().map(|t| (t.conversation, t.kind)).collect::<Vec<_>>(), [(waiting.id, TimerKind::RemindWaiting), (resolved.id, TimerKind::CloseResolved)]);
    assert!(store.claim_due_timers(at(25), at(26), 10).await.unwrap().is_empty(), "leased");
    let again = store.claim_due_timers(at(27), at(28), 1).await.unwrap();
    assert_eq!(again.len(), 1, "the lease ended; at most `limit` at a time");

    // Firing deletes the timer with the step; a second firing of the same timer writes nothing.
    let fire = |timer: Timer, text: &str| StepWrite { fires: Some(timer), outbound: vec![message(&waiting, Sender::Bot, text, None)], ..StepWrite::default() };
    assert!(matches!(store.commit(fire(due[0], "reminder")).await.unwrap(), Committed::Stored { .. }));
    assert_eq!(store.commit(fire(due[0], "reminder again")).await.unwrap(), Committed::Duplicate);
    assert_eq!(kinds(store.timers_of(waiting.id).await.unwrap()), [(TimerKind::ResolveWaiting, at(30))]);
    let texts: Vec<String> = store.conversation_messages(waiting.id, 0, 10).await.unwrap().into_iter().map(|m| m.text).collect();
    assert_eq!(texts, ["reminder"]);

    // A step that sets the timers anew replaces them; a timer claimed before that no longer fires.
    let stale = Timer { conversation: resolved.id, kind: TimerKind::CloseResolved, due_at: at(20) };
    store.commit(set(&resolved, vec![(TimerKind::CloseIdleBot, at(90))])).await.unwrap();
    assert_eq!(store.commit(StepWrite { fires: Some(stale), ..StepWrite::default() }).await.unwrap(), Committed::Duplicate);
    assert_eq!(kinds(store.timers_of(resolved.id).await.unwrap()), [(TimerKind::CloseIdleBot, at(90))]);
    store.commit(set(&resolved, vec![])).await.unwrap();
    assert!(store.timers_of(resolved.id).await.unwrap().is_empty());
}

async fn an_expired_lease_is_claimed_again(backend: Backend) {
    let (store, _db) = fresh(backend).await;
    let conversation = conversation(store.as_ref(), "visitor-5").await;
    let now = Utc::now() + chrono::Duration::seconds(1);
    queue_replies(store.as_ref(), &conversation, &["hi"]).await;
    let lease = now + chrono::Duration::seconds(30);
    assert_eq!(store.claim_outbox(now, lease, 10).await.unwrap().len(), 1);
    let after_lease = lease + chrono::Duration::seconds(1);
    assert_eq!(store.claim_outbox(after_lease, after_lease, 10).await.unwrap().len(), 1, "a crash mid-delivery is retried");
}

async fn settings_keep_the_first_value(backend: Backend) {
    let (store, _db) = fresh(backend).await;
    assert_eq!(store.setting_or_insert("k", "first").await.unwrap(), "first");
    assert_eq!(store.setting_or_insert("k", "second").await.unwrap(), "first");
}

async fn unknown_enum_values_are_refused_by_the_schema(backend: Backend) {
    let (_store, db) = fresh(backend).await;
    let error = db
        .execute("INSERT INTO contacts (id, channel, external_id, created_at) VALUES ('x', 'fax', 'y', 0)")
        .await
        .unwrap_err();
    let text = error.to_string().to_lowercase();
    assert!(text.contains("check constraint"), "{error}");
}

async fn agents_presence_and_assignment_candidates(backend: Backend) {
    let (store, _db) = fresh(backend).await;
    let ann = Agent { skills: vec!["billing".into(), "de".into()], ..agent("Ann", Presence::Online) };
    let mut bob = agent("Bob", Presence::Offline);
    store.save_agent(&ann).await.unwrap();
    store.save_agent(&bob).await.unwrap();
    assert_eq!(store.agent(ann.id).await.unwrap(), Some(ann.clone()));
    assert_eq!(store.agent_by_email("bob@example.com").await.unwrap(), Some(bob.clone()));
    assert_eq!(store.agent_by_email("carol@example.com").await.unwrap(), None);
    assert_eq!(store.list_agents().await.unwrap().iter().map(|a| a.name.as_str()).collect::<Vec<_>>(), ["Ann", "Bob"]);

    assert_eq!(store.password_hash(ann.id).await.unwrap(), None, "no account has a default password");
    store.commit_admin(AdminWrite { password_hash: Some((ann.id, "$argon2id$v=19$hash".into())), ..AdminWrite::default() }).await.unwrap();
    assert_eq!(store.password_hash(ann.id).await.unwrap().as_deref(), Some("$argon2id$v=19$hash"));

    let mut busy = conversation(store.as_ref(), "visitor-6").await;
    busy.handler = Handler::Agent(ann.id);
    busy.status = Status::InProgress;
    save(store.as_ref(), &busy).await;
    let candidates = store.assignment_candidates().await.unwrap();
    assert_eq!(candidates.iter().map(|c| (c.agent.name.as_str(), c.open)).collect::<Vec<_>>(), [("Ann", 1)], "only online agents");
    assert_eq!(candidates[0].agent.skills, ["billing", "de"], "with their skills");
    assert_eq!(store.agent_conversations(ann.id).await.unwrap().iter().map(|c| c.id).collect::<Vec<_>>(), [busy.id]);

    let start = now();
    store.set_presence(bob.id, Presence::Online, start).await.unwrap();
    store.set_presence(bob.id, Presence::Online, start + chrono::Duration::seconds(1)).await.unwrap();
    store.set_presence(bob.id, Presence::Away, start + chrono::Duration::seconds(2)).await.unwrap();
    let changes = store.presence_changes(start).await.unwrap();
    assert_eq!(
        changes,
        [(bob.id, Presence::Online, start), (bob.id, Presence::Away, start + chrono::Duration::seconds(2))],
        "an unchanged presence is not logged again"
    );
    bob.active = false;
    bob.presence = Presence::Online;
    store.save_agent(&bob).await.unwrap();
    assert_eq!(store.assignment_candidates().await.unwrap().len(), 1, "inactive accounts get nothing");
    assert_eq!(store.queue_view().await.unwrap().agents_online, 1);
}

async fn sessions_api_tokens_and_canned_responses(backend: Backend) {
    let (store, _db) = fresh(backend).await;
    let ann = agent("Ann", Presence::Online);
    store.save_agent(&ann).await.unwrap();
    let at = now();
    let session = SessionRecord { agent: ann.id, csrf: "csrf-1".into(), expires_at: at + chrono::Duration::hours(1) };
    store.create_session("hash-1", &session).await.unwrap();
    assert_eq!(store.session("hash-1", at).await.unwrap(), Some(session.clone()));
    assert_eq!(store.session("hash-1", at + chrono::Duration::hours(2)).await.unwrap(), None, "expired");
    store.delete_session("hash-1").await.unwrap();
    assert_eq!(store.session("hash-1", at).await.unwrap(), None);

    let token = ApiToken { id: uuid::Uuid::new_v4(), agent: ann.id, name: "ci".into(), created_at: at };
    store.create_api_token("token-hash", &token).await.unwrap();
    assert_eq!(store.api_token_agent("token-hash").await.unwrap(), Some(ann.id));
    assert_eq!(store.api_tokens(ann.id).await.unwrap(), [token.clone()]);
    assert!(!store.delete_api_token(AgentId::new(), token.id).await.unwrap(), "only the owner revokes");
    assert!(store.delete_api_token(ann.id, token.id).await.unwrap());
    assert_eq!(store.api_token_agent("token-hash").await.unwrap(), None);

    let mut canned =
        CannedResponse { id: uuid::Uuid::new_v4(), title: "Refunds".into(), body: "5 days".into(), created_by: Some(ann.id), created_at: at, shared: false };
    let save = |canned: &CannedResponse| AdminWrite { canned: Some(CannedChange::Save(canned.clone())), ..AdminWrite::default() };
    store.commit_admin(save(&canned)).await.unwrap();
    canned.body = "3 to 5 days".into();
    canned.shared = true;
    store.commit_admin(save(&canned)).await.unwrap();
    assert_eq!(store.canned_responses().await.unwrap(), [canned.clone()]);
    let delete = AdminWrite { canned: Some(CannedChange::Delete(canned.id)), ..AdminWrite::default() };
    store.commit_admin(delete.clone()).await.unwrap();
    store.commit_admin(delete).await.expect("deleting what is gone changes nothing");
    assert!(store.canned_responses().await.unwrap().is_empty());

    // Revoking ends every session and token of that agent, and only theirs.
    let bob = agent("Bob", Presence::Online);
    store.save_agent(&bob).await.unwrap();
    for (hash, who) in [("ann-session", ann.id), ("bob-session", bob.id)] {
        store.create_session(hash, &SessionRecord { agent: who, csrf: "c".into(), expires_at: at + chrono::Duration::hours(1) }).await.unwrap();
    }
    store.create_api_token("ann-token", &ApiToken { id: uuid::Uuid::new_v4(), agent: ann.id, name: "a".into(), created_at: at }).await.unwrap();
    store.create_api_token("bob-token", &ApiToken { id: uuid::Uuid::new_v4(), agent: bob.id, name: "b".into(), created_at: at }).await.unwrap();
    store.commit_admin(AdminWrite { revoke_credentials: Some(ann.id), ..AdminWrite::default() }).await.unwrap();
    assert_eq!(store.session("ann-session", at).await.unwrap(), None);
    assert_eq!(store.api_token_agent("ann-token").await.unwrap(), None);
    assert!(store.session("bob-session", at).await.unwrap().is_some());
    assert_eq!(store.api_token_agent("bob-token").await.unwrap(), Some(bob.id));
}

async fn lists_filters_search_and_counts(backend: Backend) {
    let (store, _db) = fresh(backend).await;
    let ann = agent("Ann", Presence::Online);
    store.save_agent(&ann).await.unwrap();
    let mut billing = conversation(store.as_ref(), "visitor-7").await;
    billing.handler = Handler::Queue;
    billing.category = Some(Category::Billing);
    billing.priority = Some(Priority::Urgent);
    billing.updated_at = now() + chrono::Duration::seconds(1);
    save(store.as_ref(), &billing).await;
    store
        .commit(step_write(Some(message(&billing, Sender::Customer, "My Card was charged twice", Some("v7:1"))), vec![]))
        .await
        .unwrap();
    let mut taken = conversation(store.as_ref(), "visitor-8").await;
    taken.handler = Handler::Agent(ann.id);
    taken.status = Status::InProgress;
    save(store.as_ref(), &taken).await;
    let mut resolved = conversation(store.as_ref(), "visitor-9").await;
    resolved.status = Status::Resolved;
    save(store.as_ref(), &resolved).await;

    let ids = |list: Vec<switchboard_core::ConversationSummary>| list.into_iter().map(|s| s.conversation.id).collect::<Vec<_>>();
    let all = |filter: ConversationFilter| ConversationFilter { limit: 50, ..filter };
    assert_eq!(ids(store.list_conversations(&all(ConversationFilter::default())).await.unwrap()).len(), 3);
    let queue = store.list_conversations(&all(ConversationFilter { assignee: Some(Assignee::Queue), ..Default::default() })).await.unwrap();
    assert_eq!(queue[0].last_text.as_deref(), Some("My Card was charged twice"));
    assert_eq!(queue[0].customer, "Ann");
    assert_eq!(ids(queue), [billing.id]);
    let mine = ConversationFilter { assignee: Some(Assignee::Agent(ann.id)), ..Default::default() };
    let mine = store.list_conversations(&all(mine)).await.unwrap();
    assert_eq!(store.agent_load(ann.id, None).await.unwrap(), 1);
    assert_eq!(store.agent_load(ann.id, Some(taken.id)).await.unwrap(), 0, "the conversation being taken is not counted");
    assert_eq!(mine[0].agent_name.as_deref(), Some("Ann"));
    assert_eq!(ids(mine), [taken.id]);
    let urgent = ConversationFilter { priority: Some(Priority::Urgent), category: Some(Category::Billing), ..Default::default() };
    assert_eq!(ids(store.list_conversations(&all(urgent)).await.unwrap()), [billing.id]);
    let status = ConversationFilter { status: Some(Status::Resolved), channel: Some(Channel::WebChat), ..Default::default() };
    assert_eq!(ids(store.list_conversations(&all(status)).await.unwrap()), [resolved.id]);
    let search = |text: &str| all(ConversationFilter { text: Some(text.into()), ..Default::default() });
    assert_eq!(ids(store.list_conversations(&search("card WAS charged")).await.unwrap()), [billing.id], "search ignores case");
    assert_eq!(ids(store.list_conversations(&search("visitor-8")).await.unwrap()), [taken.id]);
    assert!(store.list_conversations(&search("100%_")).await.unwrap().is_empty(), "wildcards are literal");
    // Message text goes through the full-text index: whole words in any order; the last word,
    // with three letters or more, also matches as a prefix, shorter ones only whole.
    assert_eq!(ids(store.list_conversations(&search("charged card")).await.unwrap()), [billing.id], "any order");
    assert_eq!(ids(store.list_conversations(&search("charged TWI")).await.unwrap()), [billing.id], "the last word as a prefix");
    assert!(store.list_conversations(&search("CHARG twice")).await.unwrap().is_empty(), "words before the last match whole");
    assert!(store.list_conversations(&search("charged tw")).await.unwrap().is_empty(), "a two-letter word matches only whole");
    let found = store.list_conversations(&search("twice")).await.unwrap();
    assert_eq!(found[0].matched_text.as_deref(), Some("My Card was charged twice"), "the matching message comes with the row");
    assert_eq!(store.list_page(&search("twice")).await.unwrap().1, ListTotal { count: 1, search_capped: false });
    assert_eq!(store.list_page(&search("zebra")).await.unwrap().1.count, 0);
    assert_eq!(store.list_page(&all(ConversationFilter::default())).await.unwrap().1.count, 3);
    assert!(store.list_conversations(&search("card refunded")).await.unwrap().is_empty(), "every word must be there");
    for syntax in ["\"", "card OR NOT*", "body:card", "(card", "***", "card & | !"] {
        let found = store.list_conversations(&search(syntax)).await;
        assert!(found.is_ok(), "`{syntax}` is read as words, never as query syntax: {found:?}");
    }
    let later = message(&billing, Sender::Customer, "Überweisung storniert, bitte prüfen", Some("fts:1"));
    store.commit(step_write(Some(later), vec![])).await.unwrap();
    assert_eq!(ids(store.list_conversations(&search("überweisung")).await.unwrap()), [billing.id], "new messages are found at once");
    let reference = message(&billing, Sender::Bot, "Case SB-4242 is open; write to help@example.com (v2.5)", None);
    store.commit(step_write(None, vec![reference])).await.unwrap();
    for words in ["4242", "sb 4242", "example com", "help", "v2 5"] {
        assert_eq!(ids(store.list_conversations(&search(words)).await.unwrap()), [billing.id], "`{words}`: words are runs of letters and digits");
    }
    // Names and channel ids match by any part, in any case, through their own index; a rename
    // is searchable at once and the old name no longer finds the customer.
    assert_eq!(ids(store.list_conversations(&search("SITOR-8")).await.unwrap()), [taken.id], "part of an id, any case");
    assert_eq!(ids(store.list_conversations(&search("-8")).await.unwrap()), [taken.id], "two characters still match");
    assert_eq!(store.list_page(&search("ann")).await.unwrap().1.count, 3, "every customer named Ann");
    let contact = store.contact(taken.contact_id).await.unwrap().unwrap();
    let renamed = Contact { display_name: Some("Chidi Okafor-Brown".into()), ..contact };
    store.commit(StepWrite { contact: Some(renamed), ..StepWrite::default() }).await.unwrap();
    assert_eq!(ids(store.list_conversations(&search("kafor-b")).await.unwrap()), [taken.id], "the new name is found");
    assert_eq!(store.list_page(&search("ann")).await.unwrap().1.count, 2, "the old name is gone from the index");
    assert!(store.list_conversations(&search("\"Okafor\"")).await.unwrap().is_empty(), "quotes are literal");
    let limited = ConversationFilter { limit: 1, ..Default::default() };
    assert_eq!(store.list_conversations(&limited).await.unwrap().len(), 1);
    assert_eq!(ids(store.contact_conversations(billing.contact_id).await.unwrap()), [billing.id]);

    let counts = store.dashboard_counts(now() - chrono::Duration::hours(1), now()).await.unwrap();
    assert_eq!((counts.urgent, counts.new, counts.in_progress, counts.resolved_today, counts.waiting), (1, 1, 1, 1, 0));
}

async fn audit_entries_newest_first(backend: Backend) {
    let (store, _db) = fresh(backend).await;
    let ann = agent("Ann", Presence::Online);
    store.save_agent(&ann).await.unwrap();
    let conversation = conversation(store.as_ref(), "visitor-10").await;
    let entry = |action, at| AuditEntry {
        at,
        actor: Some(ann.id),
        action,
        conversation: Some(conversation.id),
        subject_agent: None,
        before: Some("open".into()),
        after: Some("resolved".into()),
    };
    let first = entry(AuditAction::Presence, now());
    store.record_audit(&first).await.unwrap();
    let second = entry(AuditAction::Status, now() + chrono::Duration::seconds(1));
    let write = StepWrite { conversation: Some(conversation.clone()), audit: Some(second.clone()), ..StepWrite::default() };
    store.commit(write).await.unwrap();
    assert_eq!(store.audit_entries(10).await.unwrap(), [second.clone(), first.clone()]);
    assert_eq!(store.audit_entries(1).await.unwrap(), [second.clone()]);
    let newest = store.audit_page(None, 1).await.unwrap();
    assert_eq!(newest.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>(), [second.clone()]);
    let older = store.audit_page(Some(newest[0].0), 10).await.unwrap();
    assert_eq!(older.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>(), [first.clone()], "the page after the newest holds the rest");
    assert!(store.audit_page(Some(older[0].0), 10).await.unwrap().is_empty());

    // Filtered by actor, action and period, in the same keyset pages.
    use switchboard_core::ports::AuditFilter;
    let bo = agent("Bo", Presence::Online);
    store.save_agent(&bo).await.unwrap();
    let third = AuditEntry { actor: Some(bo.id), ..entry(AuditAction::SignIn, now() + chrono::Duration::days(2)) };
    store.record_audit(&third).await.unwrap();
    let entries = |page: Vec<(i64, AuditEntry)>| page.into_iter().map(|(_, e)| e).collect::<Vec<_>>();
    let by = |actor| AuditFilter { actor: Some(actor), ..AuditFilter::default() };
    assert_eq!(entries(store.audit_search(&by(bo.id), None, 10).await.unwrap()), [third.clone()]);
    assert_eq!(entries(store.audit_search(&by(ann.id), None, 10).await.unwrap()).len(), 2);
    let status = AuditFilter { action: Some(AuditAction::Status), ..AuditFilter::default() };
    assert_eq!(entries(store.audit_search(&status, None, 10).await.unwrap()), [second.clone()]);
    let before_bo = AuditFilter { actor: Some(ann.id), to: Some(now() + chrono::Duration::days(1)), ..AuditFilter::default() };
    let page = store.audit_search(&before_bo, None, 1).await.unwrap();
    assert_eq!(entries(page.clone()), [second.clone()]);
    assert_eq!(entries(store.audit_search(&before_bo, Some(page[0].0), 1).await.unwrap()), [first.clone()], "pages keep the filter");
    let later = AuditFilter { from: Some(now() + chrono::Duration::days(1)), ..AuditFilter::default() };
    assert_eq!(entries(store.audit_search(&later, None, 10).await.unwrap()), [third]);
}

async fn message_pages_and_recent_customer_texts(backend: Backend) {
    let (store, _db) = fresh(backend).await;
    let conversation = conversation(store.as_ref(), "visitor-11").await;
    for (i, text) in ["one", "two", "three"].iter().enumerate() {
        let inbound = message(&conversation, Sender::Customer, text, Some(&format!("v11:{i}")));
        store.commit(step_write(Some(inbound), vec![message(&conversation, Sender::Bot, "ok", None)])).await.unwrap();
    }
    let mut note = message(&conversation, Sender::Agent, "internal only", None);
    note.internal = true;
    store.commit(StepWrite { notes: vec![note], ..StepWrite::default() }).await.unwrap();

    let page = store.conversation_messages(conversation.id, 0, 4).await.unwrap();
    assert_eq!(page.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(), ["one", "ok", "two", "ok"]);
    let rest = store.conversation_messages(conversation.id, page[3].seq, 100).await.unwrap();
    assert_eq!(rest.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(), ["three", "ok", "internal only"]);
    let customer_view = store.contact_messages(conversation.contact_id, 0, 100).await.unwrap();
    assert!(customer_view.iter().all(|m| !m.internal), "customers never see notes");
    assert_eq!(customer_view.len(), 6);
    assert_eq!(store.recent_customer_texts(conversation.id, 2).await.unwrap(), ["two", "three"]);

    // Read backwards, a page at a time, each page oldest first.
    let texts = |page: &[Message]| page.iter().map(|m| m.text.clone()).collect::<Vec<_>>();
    let newest = store.latest_conversation_messages(conversation.id, None, 3).await.unwrap();
    assert_eq!(texts(&newest), ["three", "ok", "internal only"]);
    let before = store.latest_conversation_messages(conversation.id, Some(newest[0].seq), 3).await.unwrap();
    assert_eq!(texts(&before), ["ok", "two", "ok"]);
    let first = store.latest_conversation_messages(conversation.id, Some(before[0].seq), 3).await.unwrap();
    assert_eq!(texts(&first), ["one"]);

    // A file is found by its key in its own conversation only, with wildcards taken literally.
    let mut with_file = message(&conversation, Sender::Customer, "receipt", Some("v11:file"));
    with_file.attachments = vec![Attachment { key: "blob_7%a".into(), file_name: "receipt.pdf".into(), content_type: "application/pdf".into(), size: 3, original: false }];
    store.commit(step_write(Some(with_file), vec![])).await.unwrap();
    let found = store.message_with_attachment(conversation.id, "blob_7%a").await.unwrap();
    assert_eq!(found.map(|m| m.text), Some("receipt".to_string()));
    assert_eq!(store.message_with_attachment(conversation.id, "blob_7").await.unwrap(), None, "the whole key, not a part");
    assert_eq!(store.message_with_attachment(conversation.id, "blob%7").await.unwrap(), None, "% is literal");
    let other = self::conversation(store.as_ref(), "visitor-12").await;
    assert_eq!(store.message_with_attachment(other.id, "blob_7%a").await.unwrap(), None, "another conversation's file");
}

fn classified_as(intent: &str) -> Classification {
    Classification {
        intent: IntentName::parse(intent).unwrap(),
        category: Category::GeneralInquiry,
        confidence: 0.8,
        alternatives: Vec::new(),
        sentiment: 0.0,
        urgency: Urgency::None,
        language: None,
        answer: None,
        always_escalate: false,
        collect_document: None,
        source: ClassificationSource::Keywords,
        judgement: None,
        embedding: None,
    }
}

async fn stored_messages_wait_unanswered_until_one_step_answers_them(backend: Backend) {
    let (store, _db) = fresh(backend).await;
    let conversation = conversation(store.as_ref(), "visitor-1").await;
    let mut seqs = Vec::new();
    for n in 1..=3 {
        let inbound = message(&conversation, Sender::Customer, &format!("question {n}"), Some(&format!("v1:q{n}")));
        let Committed::Stored { seqs: stored } = store.commit(step_write(Some(inbound), Vec::new())).await.unwrap() else {
            panic!("stored")
        };
        seqs.push(stored[0]);
    }
    // A bot message without a classification is not waiting for an answer.
    store.commit(step_write(None, vec![message(&conversation, Sender::Bot, "one moment", None)])).await.unwrap();
    let waiting = store.unanswered_messages(10).await.unwrap();
    assert_eq!(waiting.iter().map(|m| m.seq).collect::<Vec<_>>(), seqs, "oldest first, customers' only");
    assert_eq!(store.unanswered_messages(2).await.unwrap().len(), 2, "the limit holds");
    assert_eq!(
        store.latest_inbound_by_contact(Channel::WebChat).await.unwrap(),
        vec![("visitor-1".to_string(), "v1:q3".to_string())],
        "each contact's latest customer message (the bot's later one does not count)"
    );
    assert!(store.latest_inbound_by_contact(Channel::Discord).await.unwrap().is_empty());

    let answer = |seq: i64, text: &str| StepWrite {
        answers: Some((seq, classified_as("greeting"))),
        outbound: vec![message(&conversation, Sender::Bot, text, None)],
        ..StepWrite::default()
    };
    let Committed::Stored { seqs: replies } = store.commit(answer(seqs[0], "hello there")).await.unwrap() else {
        panic!("the first answer is written")
    };
    assert_eq!(replies.len(), 1);
    assert_eq!(store.commit(answer(seqs[0], "hello again")).await.unwrap(), Committed::Duplicate, "answered once only");
    let stored = store.message_by_external_id(Channel::WebChat, "v1:q1").await.unwrap().unwrap();
    assert_eq!(stored.classification.unwrap().intent.as_str(), "greeting");
    let history = store.conversation_messages(conversation.id, 0, 100).await.unwrap();
    let bot: Vec<&str> = history.iter().filter(|m| m.sender == Sender::Bot).map(|m| m.text.as_str()).collect();
    assert_eq!(bot, ["one moment", "hello there"], "the refused answer wrote nothing");
    let waiting = store.unanswered_messages(10).await.unwrap();
    assert_eq!(waiting.iter().map(|m| m.seq).collect::<Vec<_>>(), seqs[1..]);
}

async fn a_lease_has_one_holder_until_it_expires_or_is_released(backend: Backend) {
    let (store, _db) = fresh(backend).await;
    let at = now();
    let secs = |n: i64| at + chrono::Duration::seconds(n);
    assert!(store.acquire_lease("telegram", "node-a", at, secs(10)).await.unwrap());
    assert!(!store.acquire_lease("telegram", "node-b", secs(1), secs(11)).await.unwrap(), "held by node-a");
    assert!(store.acquire_lease("telegram", "node-a", secs(3), secs(13)).await.unwrap(), "the holder renews");
    assert!(!store.acquire_lease("telegram", "node-b", secs(12), secs(22)).await.unwrap(), "renewed, so still held");
    assert!(store.acquire_lease("discord", "node-b", secs(12), secs(22)).await.unwrap(), "leases are per name");
    assert!(store.acquire_lease("telegram", "node-b", secs(14), secs(24)).await.unwrap(), "expired: taken over");
    assert!(!store.acquire_lease("telegram", "node-a", secs(15), secs(25)).await.unwrap(), "the old holder lost it");
    store.release_lease("telegram", "node-a").await.unwrap();
    assert!(!store.acquire_lease("telegram", "node-a", secs(16), secs(26)).await.unwrap(), "only the holder releases");
    store.release_lease("telegram", "node-b").await.unwrap();
    assert!(store.acquire_lease("telegram", "node-a", secs(16), secs(26)).await.unwrap(), "released: free at once");
}

async fn a_connection_state_keeps_its_last_success_and_error_and_the_newest_report_wins(backend: Backend) {
    let (store, _db) = fresh(backend).await;
    let at = now();
    let secs = |n: i64| at + chrono::Duration::seconds(n);
    let up = switchboard_core::ChannelState {
        name: "telegram".into(),
        node: "node-a".into(),
        up: true,
        detail: "long polling".into(),
        last_ok_at: Some(secs(1)),
        last_error: None,
        last_error_at: None,
        updated_at: secs(1),
    };
    store.record_channel_state(&up).await.unwrap();
    let down = switchboard_core::ChannelState {
        node: "node-b".into(),
        up: false,
        detail: "getUpdates failed: connection refused".into(),
        last_ok_at: None,
        last_error: Some("getUpdates failed: connection refused".into()),
        last_error_at: Some(secs(5)),
        updated_at: secs(5),
        ..up.clone()
    };
    store.record_channel_state(&down).await.unwrap();
    // A late write of an older report (a node that lost the lease) changes nothing.
    store.record_channel_state(&switchboard_core::ChannelState { updated_at: secs(3), ..up.clone() }).await.unwrap();
    let states = store.channel_states().await.unwrap();
    assert_eq!(states.len(), 1);
    let state = &states[0];
    assert_eq!((state.node.as_str(), state.up, state.detail.as_str()), ("node-b", false, "getUpdates failed: connection refused"));
    assert_eq!(state.last_ok_at.map(|t| t.timestamp_millis()), Some(secs(1).timestamp_millis()), "the last success is kept");
    assert_eq!(state.last_error_at.map(|t| t.timestamp_millis()), Some(secs(5).timestamp_millis()));
    assert_eq!(state.updated_at.timestamp_millis(), secs(5).timestamp_millis());
}

async fn a_connection_its_node_still_runs_is_stamped_again_and_one_it_gave_up_is_not(backend: Backend) {
    use switchboard_core::HealthBoard;
    let (store, _db) = fresh(backend).await;
    let board = Arc::new(HealthBoard::new("node-a"));
    board.expect("discord");
    board.expect("telegram");
    // Reported once, then quiet for a long time, as a healthy Discord gateway is.
    board.up("discord", "gateway connected as bot");
    board.up("telegram", "long polling");
    let writer = tokio::spawn(board.clone().run(store.clone(), std::time::Duration::from_millis(50)));
    let stamp = |name: &'static str| {
        let store = store.clone();
        async move { store.channel_states().await.unwrap().into_iter().find(|s| s.name == name).map(|s| s.updated_at) }
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let first = loop {
        if let (Some(discord), Some(_)) = (stamp("discord").await, stamp("telegram").await) {
            break discord;
        }
        assert!(tokio::time::Instant::now() < deadline, "never written");
        tokio::task::yield_now().await;
    };
    // Another node took Telegram over: this one stops stamping it, and keeps stamping Discord.
    board.forget("telegram");
    let next_heartbeat = |after: Timestamp| {
        let stamp = &stamp;
        async move {
            loop {
                let discord = stamp("discord").await.unwrap();
                if discord > after {
                    return discord;
                }
                assert!(tokio::time::Instant::now() < deadline, "the quiet connection was never stamped again");
                tokio::task::yield_now().await;
            }
        }
    };
    let in_flight = next_heartbeat(first).await;
    // This heartbeat began after the one that may have been under way when Telegram was given
    // up had ended: no write for Telegram is still to come.
    let after_forgetting = next_heartbeat(in_flight).await;
    let given_up = stamp("telegram").await.unwrap();
    next_heartbeat(after_forgetting).await;
    assert_eq!(stamp("telegram").await, Some(given_up), "a connection this node gave up is not stamped by it");
    writer.abort();
}

async fn a_direct_notice_is_queued_once_claimed_by_one_and_retried_until_sent(backend: Backend) {
    use switchboard_core::ports::DirectNotice;
    let (store, _db) = fresh(backend).await;
    let at = now();
    let secs = |n: i64| at + chrono::Duration::seconds(n);
    let notice = DirectNotice { channel: Channel::Telegram, recipient: "512".into(), key: "telegram:512:2:file".into(), text: "Sorry".into(), created_at: at };
    store.queue_direct_notice(&notice).await.unwrap();
    store.queue_direct_notice(&DirectNotice { text: "Sorry again".into(), ..notice.clone() }).await.unwrap();
    let claimed = store.claim_direct_notices(at, secs(60), 10).await.unwrap();
    assert_eq!(claimed.len(), 1, "one notice per key");
    assert_eq!((claimed[0].notice.text.as_str(), claimed[0].attempts), ("Sorry", 0));
    assert_eq!(claimed[0].notice.created_at.timestamp_millis(), at.timestamp_millis());
    assert!(store.claim_direct_notices(secs(1), secs(61), 10).await.unwrap().is_empty(), "leased");
    store.direct_notice_attempted(claimed[0].id, secs(1), Some("502 Bad Gateway"), Some(secs(5))).await.unwrap();
    assert!(store.claim_direct_notices(secs(4), secs(64), 10).await.unwrap().is_empty(), "not due yet");
    let again = store.claim_direct_notices(secs(5), secs(65), 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 1);
    store.direct_notice_attempted(again[0].id, secs(6), None, None).await.unwrap();
    assert!(store.claim_direct_notices(secs(100), secs(160), 10).await.unwrap().is_empty(), "sent: done");
    let other = DirectNotice { key: "telegram:512:3:file".into(), ..notice };
    store.queue_direct_notice(&other).await.unwrap();
    let claimed = store.claim_direct_notices(secs(100), secs(160), 10).await.unwrap();
    store.direct_notice_attempted(claimed[0].id, secs(100), Some("chat not found"), None).await.unwrap();
    assert!(store.claim_direct_notices(secs(200), secs(260), 10).await.unwrap().is_empty(), "given up: done");
}

async fn exclusive_work_waits_for_the_holder_on_another_connection(backend: Backend) {
    let (store, db) = fresh(backend).await;
    let held = store.exclusive("assignment").await.unwrap();
    if backend == Backend::Sqlite {
        // One process per SQLite file: the engine's own lock serialises, and the store's guard
        // never waits (a second one while the first is held would otherwise hang this test).
        let second = tokio::time::timeout(std::time::Duration::from_secs(5), store.exclusive("assignment")).await;
        assert!(second.is_ok_and(|guard| guard.is_ok()), "SQLite's guard is immediate");
        return;
    }
    // Another node: its own store on the same database.
    let other = db.open().await;
    let released = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let waiter = {
        let released = released.clone();
        tokio::spawn(async move {
            let _mine = other.exclusive("assignment").await.unwrap();
            released.load(std::sync::atomic::Ordering::SeqCst)
        })
    };
    let elsewhere = store.exclusive("another name").await.unwrap();
    // The server itself says the other node is waiting for the lock.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while db.count("SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted").await == 0 {
        assert!(std::time::Instant::now() < deadline, "the other node never waited for the lock");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(!waiter.is_finished(), "the other node waits while the work is held");
    released.store(true, std::sync::atomic::Ordering::SeqCst);
    drop(held);
    assert!(waiter.await.unwrap(), "and gets in once it is released");
    drop(elsewhere);
}

async fn the_outbox_backlog_counts_undelivered_replies_and_dates_the_oldest(backend: Backend) {
    let (store, _db) = fresh(backend).await;
    assert_eq!(store.outbox_backlog().await.unwrap(), (0, None));
    let conversation = conversation(store.as_ref(), "visitor-1").await;
    queue_replies(store.as_ref(), &conversation, &["one", "two", "three"]).await;
    let (backlog, oldest) = store.outbox_backlog().await.unwrap();
    assert_eq!(backlog, 3);
    assert!(oldest.is_some_and(|at| at <= Utc::now()));
    let claimed = store.claim_outbox(Utc::now(), Utc::now() + chrono::Duration::seconds(30), 10).await.unwrap();
    store.mark_delivered(&[(claimed[0].message.seq, None)], Utc::now()).await.unwrap();
    store.mark_failed(claimed[1].message.seq, "gone", None).await.unwrap();
    assert_eq!(store.outbox_backlog().await.unwrap().0, 1, "delivered and given-up replies are not backlog");
}

async fn a_step_decided_on_a_stale_read_is_refused_whole(backend: Backend) {
    let (store, _db) = fresh(backend).await;
    let created = conversation(store.as_ref(), "visitor-v").await;
    let read = store.conversation(created.id).await.unwrap().unwrap();
    assert_eq!(read.version, 1);
    // Two nodes read the same state; an agent's assignment commits first.
    let (mut assigned, mut bot_step) = (read.clone(), read.clone());
    let ada = agent("Ada", Presence::Online);
    store.save_agent(&ada).await.unwrap();
    assigned.handler = Handler::Agent(ada.id);
    let assignment = StepWrite { conversation: Some(assigned.clone()), decided_on: Some((read.id, read.version)), ..StepWrite::default() };
    assert!(matches!(store.commit(assignment).await.unwrap(), Committed::Stored { .. }));
    assert_eq!(store.conversation(created.id).await.unwrap().unwrap().version, 2, "each write moves the version on");

    // The bot's step, decided on the older read, would hand the chat back to the bot.
    let inbound = message(&read, Sender::Customer, "still there?", Some("vv:1"));
    let Committed::Stored { seqs } = store.commit(step_write(Some(inbound), Vec::new())).await.unwrap() else { panic!("stored") };
    bot_step.handler = Handler::Bot;
    bot_step.status = Status::Resolved;
    let stale = StepWrite {
        answers: Some((seqs[0], classified_as("greeting"))),
        conversation: Some(bot_step),
        outbound: vec![message(&read, Sender::Bot, "the bot again", None)],
        audit: Some(AuditEntry {
            at: now(),
            actor: None,
            action: AuditAction::Status,
            conversation: Some(read.id),
            subject_agent: None,
            before: None,
            after: Some("stale".into()),
        }),
        timers: Some((read.id, vec![(TimerKind::CloseIdleBot, now())])),
        decided_on: Some((read.id, read.version)),
        ..StepWrite::default()
    };
    assert_eq!(store.commit(stale.clone()).await.unwrap(), Committed::Conflict);
    // A step that would leave the state as it was is refused too: its reply was decided on the old read.
    let unchanged = StepWrite { conversation: None, decided_on: Some((read.id, read.version)), ..stale.clone() };
    assert_eq!(store.commit(unchanged).await.unwrap(), Committed::Conflict);
    let now_stored = store.conversation(created.id).await.unwrap().unwrap();
    assert_eq!((now_stored.handler, now_stored.version), (Handler::Agent(ada.id), 2), "the agent's change stands");
    let history = store.conversation_messages(created.id, 0, 100).await.unwrap();
    assert!(history.iter().all(|m| m.sender != Sender::Bot), "no reply of the refused step: {history:?}");
    assert_eq!(store.unanswered_messages(10).await.unwrap().len(), 1, "the message still waits for its answer");
    assert!(store.audit_entries(10).await.unwrap().iter().all(|e| e.after.as_deref() != Some("stale")));
    assert!(store.timers_of(created.id).await.unwrap().is_empty(), "no timer of the refused step");

    // Decided again on what is there now, it is written; the version moves on even when the
    // state does not.
    let retried = StepWrite { conversation: None, decided_on: Some((now_stored.id, now_stored.version)), ..stale };
    assert!(matches!(store.commit(retried.clone()).await.unwrap(), Committed::Stored { .. }));
    let after = store.conversation(created.id).await.unwrap().unwrap();
    assert_eq!((after.handler, after.version), (Handler::Agent(ada.id), 3));
    // Answered already: a second answer on the current read is a duplicate, not a conflict.
    let again = StepWrite { decided_on: Some((after.id, after.version)), ..retried };
    assert_eq!(store.commit(again).await.unwrap(), Committed::Duplicate);

    // Concurrent writers of one read: exactly one wins.
    let read = store.conversation(created.id).await.unwrap().unwrap();
    let writes = (0..4).map(|n| {
        let mut mine = read.clone();
        mine.low_confidence_streak = n + 1;
        let store = store.clone();
        let decided_on = Some((mine.id, mine.version));
        async move { store.commit(StepWrite { conversation: Some(mine), decided_on, ..StepWrite::default() }).await.unwrap() }
    });
    let results = futures::future::join_all(writes).await;
    let won = results.iter().filter(|r| matches!(r, Committed::Stored { .. })).count();
    assert_eq!(won, 1, "{results:?}");
    assert_eq!(results.iter().filter(|r| **r == Committed::Conflict).count(), 3);
    assert_eq!(store.conversation(created.id).await.unwrap().unwrap().version, read.version + 1, "moved once");

    // Answers of one message decided at once on one read (nodes racing): exactly one is stored.
    let read = store.conversation(created.id).await.unwrap().unwrap();
    let inbound = message(&read, Sender::Customer, "one more thing", Some("vv:2"));
    let Committed::Stored { seqs } = store.commit(step_write(Some(inbound), Vec::new())).await.unwrap() else { panic!("stored") };
    let answers = (0..3).map(|n| {
        let store = store.clone();
        let write = StepWrite {
            answers: Some((seqs[0], classified_as("greeting"))),
            outbound: vec![message(&read, Sender::Bot, &format!("racing answer {n}"), None)],
            decided_on: Some((read.id, read.version)),
            in_order: true,
            ..StepWrite::default()
        };
        async move { store.commit(write).await.unwrap() }
    });
    let results = futures::future::join_all(answers).await;
    assert_eq!(results.iter().filter(|r| matches!(r, Committed::Stored { .. })).count(), 1, "{results:?}");
    assert_eq!(results.iter().filter(|r| **r == Committed::Conflict).count(), 2, "{results:?}");
    let history = store.conversation_messages(created.id, 0, 100).await.unwrap();
    assert_eq!(history.iter().filter(|m| m.text.starts_with("racing answer")).count(), 1, "{history:?}");
    assert!(store.unanswered_messages(10).await.unwrap().iter().all(|m| m.seq != seqs[0]), "answered");
}

async fn a_customer_stored_or_given_a_conversation_meanwhile_is_a_conflict(backend: Backend) {
    let (store, _db) = fresh(backend).await;
    // Two nodes see a new customer and each stores them under its own id: the second is refused.
    let first = conversation(store.as_ref(), "visitor-race").await;
    let other_contact = Contact {
        id: ContactId::new(),
        channel: Channel::WebChat,
        external_id: "visitor-race".into(),
        display_name: None,
        created_at: now(),
        unreachable_since: None,
        unreachable_reason: None,
        email: None,
    };
    let theirs = Conversation::new(other_contact.id, Channel::WebChat, now());
    let late = StepWrite {
        inbound: Some(message(&theirs, Sender::Customer, "hello?", Some("race:1"))),
        contact: Some(other_contact),
        conversation: Some(theirs.clone()),
        starts_current: true,
        ..StepWrite::default()
    };
    assert_eq!(store.commit(late).await.unwrap(), Committed::Conflict);
    assert!(store.message_by_external_id(Channel::WebChat, "race:1").await.unwrap().is_none(), "nothing of it is stored");
    assert!(store.conversation(theirs.id).await.unwrap().is_none());
    assert_eq!(store.contact_by_external_id(Channel::WebChat, "visitor-race").await.unwrap().unwrap().id, first.contact_id);

    // Two nodes each start "the" current conversation of a known customer: the second is refused.
    let second = Conversation::new(first.contact_id, Channel::WebChat, now());
    let starts = StepWrite {
        inbound: Some(message(&second, Sender::Customer, "me again", Some("race:2"))),
        conversation: Some(second.clone()),
        starts_current: true,
        ..StepWrite::default()
    };
    assert_eq!(store.commit(starts.clone()).await.unwrap(), Committed::Conflict);
    assert!(store.message_by_external_id(Channel::WebChat, "race:2").await.unwrap().is_none());
    // A new thread the customer asked for (an email without references) is not a race.
    let new_thread = StepWrite { starts_current: false, ..starts };
    assert!(matches!(store.commit(new_thread).await.unwrap(), Committed::Stored { .. }));
    assert!(store.conversation(second.id).await.unwrap().is_some());
}

async fn a_contacts_messages_are_answered_only_in_the_order_stored(backend: Backend) {
    let (store, _db) = fresh(backend).await;
    let mine = conversation(store.as_ref(), "visitor-e").await;
    let someone_else = conversation(store.as_ref(), "visitor-f").await;
    let mut seqs = Vec::new();
    for (conversation, id) in [(&mine, "e:1"), (&someone_else, "f:1"), (&mine, "e:2"), (&mine, "e:3")] {
        let inbound = message(conversation, Sender::Customer, id, Some(id));
        let Committed::Stored { seqs: stored } = store.commit(step_write(Some(inbound), Vec::new())).await.unwrap() else {
            panic!("stored")
        };
        seqs.push(stored[0]);
    }
    let earlier = |seq: i64| {
        let store = store.clone();
        async move { store.earlier_unanswered(mine.contact_id, seq).await.unwrap().map(|m| m.text) }
    };
    assert_eq!(earlier(seqs[3]).await.as_deref(), Some("e:1"), "the oldest of the contact's, not another's");
    assert_eq!(earlier(seqs[0]).await, None, "nothing before the first");
    let in_order = |seq: i64| StepWrite {
        answers: Some((seq, classified_as("greeting"))),
        outbound: vec![message(&mine, Sender::Bot, "hi", None)],
        in_order: true,
        ..StepWrite::default()
    };
    assert_eq!(store.commit(in_order(seqs[2])).await.unwrap(), Committed::Conflict, "e:1 waits for its answer");
    assert_eq!(store.unanswered_messages(10).await.unwrap().len(), 4, "the refused answer wrote nothing");
    assert!(store.conversation_messages(mine.id, 0, 100).await.unwrap().iter().all(|m| m.sender == Sender::Customer));
    assert!(matches!(store.commit(in_order(seqs[0])).await.unwrap(), Committed::Stored { .. }));
    assert_eq!(earlier(seqs[3]).await.as_deref(), Some("e:2"));
    assert_eq!(earlier(seqs[2]).await, None, "another customer's message does not count");
    assert!(matches!(store.commit(in_order(seqs[1])).await.unwrap(), Committed::Stored { .. }), "nor does it hold theirs");
    assert_eq!(store.commit(in_order(seqs[3])).await.unwrap(), Committed::Conflict, "e:2 now waits");
    assert!(matches!(store.commit(in_order(seqs[2])).await.unwrap(), Committed::Stored { .. }));
    assert_eq!(store.commit(in_order(seqs[2])).await.unwrap(), Committed::Duplicate, "answered once");
    assert!(matches!(store.commit(in_order(seqs[3])).await.unwrap(), Committed::Stored { .. }));
}

async fn an_admin_change_and_its_audit_entries_are_written_together_or_not_at_all(backend: Backend) {
    let (store, _db) = fresh(backend).await;
    let ann = agent("Ann", Presence::Offline);
    let at = now();
    let audit = |action, after: &str| AuditEntry {
        at,
        actor: None,
        action,
        conversation: None,
        subject_agent: Some(ann.id),
        before: None,
        after: Some(after.into()),
    };
    let created = AdminWrite {
        agent: Some(ann.clone()),
        password_hash: Some((ann.id, "argon2-hash".into())),
        presence: Some((ann.id, Presence::Online, at)),
        audit: vec![audit(AuditAction::CreateAccount, "agent Ann")],
        ..AdminWrite::default()
    };
    store.commit_admin(created).await.unwrap();
    assert_eq!(store.agent(ann.id).await.unwrap().map(|a| a.presence), Some(Presence::Online), "the presence applies after the account is stored");
    assert_eq!(store.password_hash(ann.id).await.unwrap().as_deref(), Some("argon2-hash"));
    assert_eq!(store.presence_changes(at - chrono::Duration::seconds(1)).await.unwrap(), [(ann.id, Presence::Online, at)]);
    assert_eq!(store.audit_entries(10).await.unwrap().len(), 1);

    // The canned response names an author who does not exist, which the schema refuses after
    // the new account and the revocation were written: none of the write is kept.
    let bob = agent("Bob", Presence::Online);
    let canned = CannedResponse { id: uuid::Uuid::new_v4(), title: "Hi".into(), body: "Hello".into(), created_by: Some(AgentId::new()), created_at: at, shared: true };
    let broken = AdminWrite {
        agent: Some(bob.clone()),
        revoke_credentials: Some(ann.id),
        canned: Some(CannedChange::Save(canned)),
        audit: vec![audit(AuditAction::CreateAccount, "agent Bob")],
        ..AdminWrite::default()
    };
    store.create_session("ann-session", &SessionRecord { agent: ann.id, csrf: "c".into(), expires_at: at + chrono::Duration::hours(1) }).await.unwrap();
    assert!(store.commit_admin(broken).await.is_err(), "an unknown author is refused");
    assert_eq!(store.agent(bob.id).await.unwrap(), None, "the account written first was rolled back");
    assert!(store.session("ann-session", at).await.unwrap().is_some(), "so was the revocation");
    assert!(store.canned_responses().await.unwrap().is_empty());
    assert_eq!(store.audit_entries(10).await.unwrap().len(), 1, "and no audit entry records what did not happen");
}

async fn a_message_is_found_by_its_seq(backend: Backend) {
    let (store, _db) = fresh(backend).await;
    let conversation = conversation(store.as_ref(), "visitor-seq").await;
    let inbound = message(&conversation, Sender::Customer, "where is my order", Some("v:1"));
    let Committed::Stored { seqs } = store.commit(step_write(Some(inbound.clone()), Vec::new())).await.unwrap() else { panic!("stored") };
    let found = store.message_by_seq(seqs[0]).await.unwrap().expect("stored");
    assert_eq!((found.id, found.text.as_str(), found.seq), (inbound.id, "where is my order", seqs[0]));
    assert_eq!(store.message_by_seq(seqs[0] + 1000).await.unwrap(), None);
}

async fn a_closed_store_refuses_work_and_sqlite_is_one_file_again(backend: Backend) {
    let (store, db) = fresh(backend).await;
    let ann = agent("Ann", Presence::Online);
    store.save_agent(&ann).await.unwrap();
    store.close().await;
    assert!(store.agent(ann.id).await.is_err(), "a closed store answers with an error, never a stale or empty result");
    if let Some(path) = db.sqlite_path() {
        let wal = std::fs::metadata(format!("{}-wal", path.display())).map(|m| m.len()).unwrap_or(0);
        assert_eq!(wal, 0, "everything is folded into the database file");
    }
    let reopened = db.open().await;
    assert_eq!(reopened.agent(ann.id).await.unwrap().map(|a| a.name), Some("Ann".into()), "what was committed survives the close");
}

/// A conversation escalated at `at` with `priority`, waiting in the queue (or, with `handler`,
/// taken already).
async fn notifications_are_written_with_their_step_for_an_agent_or_every_admin_and_read_once(backend: Backend) {
    use switchboard_core::ports::NoticeWrite;
    use switchboard_core::Recipient;
    use switchboard_models::NotificationKind;
    let (store, _db) = fresh(backend).await;
    let ann = agent("Ann", Presence::Online);
    let root = Agent { role: Role::Admin, ..agent("Root", Presence::Online) };
    let boss = Agent { role: Role::Admin, ..agent("Boss", Presence::Offline) };
    let gone = Agent { role: Role::Admin, active: false, ..agent("Gone", Presence::Offline) };
    for a in [&ann, &root, &boss, &gone] {
        store.save_agent(a).await.unwrap();
    }
    let c = conversation(store.as_ref(), "notified").await;
    let notice = |to, kind, text: &str| NoticeWrite { to, kind, conversation: Some(c.id), text: text.into(), at: now(), by_email: false };
    let write = StepWrite {
        notices: vec![
            notice(Recipient::Agent(ann.id), NotificationKind::Assigned, "A conversation was assigned to you."),
            notice(Recipient::Admins, NotificationKind::SlaBreach, "First reply overdue."),
        ],
        ..StepWrite::default()
    };
    assert!(matches!(store.commit(write).await.unwrap(), Committed::Stored { .. }));
    let of = |a: &Agent| {
        let (store, id) = (store.clone(), a.id);
        async move { store.notifications_of(id, None, 10).await.unwrap() }
    };
    assert_eq!(of(&ann).await.iter().map(|n| n.kind).collect::<Vec<_>>(), [NotificationKind::Assigned]);
    assert_eq!(of(&root).await.iter().map(|n| n.text.as_str()).collect::<Vec<_>>(), ["First reply overdue."], "each active admin");
    assert_eq!(of(&boss).await.len(), 1);
    assert!(of(&gone).await.is_empty(), "not a deactivated admin");
    assert_eq!(store.unread_notifications(ann.id).await.unwrap(), 1);

    // A refused step writes none of its notifications.
    let stale = StepWrite { decided_on: Some((c.id, 99)), notices: vec![notice(Recipient::Agent(ann.id), NotificationKind::Mentioned, "x")], ..StepWrite::default() };
    assert_eq!(store.commit(stale).await.unwrap(), Committed::Conflict);
    assert_eq!(store.unread_notifications(ann.id).await.unwrap(), 1);

    // Newest first, paged by id; read per conversation or all, once.
    let other = conversation(store.as_ref(), "notified-2").await;
    let later = NoticeWrite { conversation: Some(other.id), ..notice(Recipient::Agent(ann.id), NotificationKind::CustomerReplied, "hello?") };
    store.commit(StepWrite { notices: vec![later], ..StepWrite::default() }).await.unwrap();
    let page = of(&ann).await;
    assert_eq!(page.iter().map(|n| n.text.as_str()).collect::<Vec<_>>(), ["hello?", "A conversation was assigned to you."]);
    let older = store.notifications_of(ann.id, Some(page[0].id), 10).await.unwrap();
    assert_eq!(older.len(), 1);
    let unread_in = |ids: Vec<ConversationId>| {
        let store = store.clone();
        async move {
            let mut found = store.unread_by_conversation(ann.id, &ids).await.unwrap();
            found.sort();
            found
        }
    };
    let mut both = vec![(c.id, 1), (other.id, 1)];
    both.sort();
    assert_eq!(unread_in(vec![c.id, other.id, ConversationId::new()]).await, both, "per conversation, only those asked about");
    assert!(unread_in(Vec::new()).await.is_empty());
    assert_eq!(store.mark_notifications_read(ann.id, Some(other.id), now()).await.unwrap(), 1);
    assert_eq!(unread_in(vec![c.id, other.id]).await, [(c.id, 1)]);
    assert_eq!(store.unread_notifications(ann.id).await.unwrap(), 1);
    assert_eq!(store.mark_notifications_read(ann.id, None, now()).await.unwrap(), 1);
    assert_eq!(store.mark_notifications_read(ann.id, None, now()).await.unwrap(), 0, "read once");
    assert!(of(&ann).await.iter().all(|n| n.read_at.is_some()));
    assert_eq!(store.unread_notifications(root.id).await.unwrap(), 1, "another agent's stay unread");
}

async fn notifications_to_mail_wait_until_mailed_or_given_up(backend: Backend) {
    use switchboard_core::ports::NoticeWrite;
    use switchboard_core::Recipient;
    use switchboard_models::NotificationKind;
    let (store, _db) = fresh(backend).await;
    let ann = agent("Ann", Presence::Online);
    let root = Agent { role: Role::Admin, ..agent("Root", Presence::Online) };
    for a in [&ann, &root] {
        store.save_agent(a).await.unwrap();
    }
    let c = conversation(store.as_ref(), "mailed").await;
    let notice = |to, text: &str, by_email| NoticeWrite {
        to,
        kind: NotificationKind::Assigned,
        conversation: Some(c.id),
        text: text.into(),
        at: now(),
        by_email,
    };
    let write = StepWrite {
        notices: vec![
            notice(Recipient::Agent(ann.id), "mail me", true),
            notice(Recipient::Agent(ann.id), "panel only", false),
            notice(Recipient::Admins, "mail the admins", true),
        ],
        ..StepWrite::default()
    };
    store.commit(write).await.unwrap();
    let pending = store.notices_to_mail(10).await.unwrap();
    let texts: Vec<(&str, &str, bool)> =
        pending.iter().map(|m| (m.notification.text.as_str(), m.agent_email.as_str(), m.agent_active)).collect();
    assert_eq!(texts, [("mail me", ann.email.as_str(), true), ("mail the admins", root.email.as_str(), true)], "oldest first");
    assert_eq!(pending[0].agent_name, "Ann");
    assert_eq!(store.notices_to_mail(1).await.unwrap().len(), 1, "up to the limit");

    // Sent, or given up: either way it waits no more. Mailing leaves it unread in the panel.
    store.notice_mailed(pending[0].notification.id, now(), None).await.unwrap();
    store.notice_mailed(pending[1].notification.id, now(), Some("the mail server refused it")).await.unwrap();
    assert!(store.notices_to_mail(10).await.unwrap().is_empty());
    assert_eq!(store.unread_notifications(ann.id).await.unwrap(), 2);

    // A deactivated agent's pending mail is still handed out, marked, so it can be given up.
    store.commit(StepWrite { notices: vec![notice(Recipient::Agent(ann.id), "late", true)], ..StepWrite::default() }).await.unwrap();
    store.save_agent(&Agent { active: false, ..ann.clone() }).await.unwrap();
    let pending = store.notices_to_mail(10).await.unwrap();
    assert_eq!(pending.iter().map(|m| (m.notification.text.as_str(), m.agent_active)).collect::<Vec<_>>(), [("late", false)]);
}

async fn customers_notice_copies_wait_until_mailed_or_given_up(backend: Backend) {
    use switchboard_core::ports::CustomerMailWrite;
    let (store, _db) = fresh(backend).await;
    let c = conversation(store.as_ref(), "copied").await;
    let t0 = now();
    let copy = |text: &str, at: Timestamp| CustomerMailWrite { conversation: c.id, address: "ann@example.com".into(), text: text.into(), at };
    let write = StepWrite { customer_mails: vec![copy("This conversation is closed.", t0), copy("Second", t0)], ..StepWrite::default() };
    store.commit(write).await.unwrap();
    let pending = store.customer_mails_to_send(10).await.unwrap();
    assert_eq!(
        pending.iter().map(|m| (m.text.as_str(), m.address.as_str(), m.conversation_id, m.channel, m.created_at)).collect::<Vec<_>>(),
        [("This conversation is closed.", "ann@example.com", c.id, c.channel, t0), ("Second", "ann@example.com", c.id, c.channel, t0)],
        "oldest first, with the channel the customer writes on"
    );
    assert_eq!(store.customer_mails_to_send(1).await.unwrap().len(), 1, "up to the limit");
    store.customer_mail_sent(pending[0].id, now(), None).await.unwrap();
    store.customer_mail_sent(pending[1].id, now(), Some("the customer's email `x` is not an address")).await.unwrap();
    assert!(store.customer_mails_to_send(10).await.unwrap().is_empty(), "sent or given up, none waits");

    // Written with their step or not at all.
    let refused = StepWrite { customer_mails: vec![copy("lost with its step", t0)], decided_on: Some((c.id, -5)), ..StepWrite::default() };
    assert_eq!(store.commit(refused).await.unwrap(), Committed::Conflict);
    assert!(store.customer_mails_to_send(10).await.unwrap().is_empty());
}

async fn a_scheduled_job_run_is_taken_once_and_replanned_only_when_its_schedule_changes(backend: Backend) {
    let (store, _db) = fresh(backend).await;
    let t0 = now();
    let hours = chrono::Duration::hours;
    assert!(store.scheduled_jobs().await.unwrap().is_empty());
    store.plan_job("backup", "0 3 * * *", t0 + hours(1)).await.unwrap();
    // A restart plans again with a later next run: the stored one stays (a run missed while
    // stopped is still due).
    store.plan_job("backup", "0 3 * * *", t0 + hours(25)).await.unwrap();
    let jobs = store.scheduled_jobs().await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!((jobs[0].name.as_str(), jobs[0].schedule.as_str(), jobs[0].next_run_at), ("backup", "0 3 * * *", t0 + hours(1)));
    assert_eq!((jobs[0].last_started_at, jobs[0].last_ok), (None, None));

    // Two nodes take the same due run: one wins.
    let due = t0 + hours(1);
    let (a, b) = tokio::join!(
        store.take_job_run("backup", due, t0 + hours(25), "node-a", due),
        store.take_job_run("backup", due, t0 + hours(25), "node-b", due)
    );
    assert!(a.unwrap() ^ b.unwrap(), "exactly one node runs it");
    assert!(!store.take_job_run("backup", due, t0 + hours(25), "node-a", due).await.unwrap(), "taken already");
    let running = &store.scheduled_jobs().await.unwrap()[0];
    assert_eq!((running.next_run_at, running.last_started_at, running.last_ok), (t0 + hours(25), Some(due), None));
    assert!(running.last_node.as_deref().is_some_and(|n| n.starts_with("node-")));
    store.job_finished("backup", due + chrono::Duration::seconds(3), false, "disk full").await.unwrap();
    let done = &store.scheduled_jobs().await.unwrap()[0];
    assert_eq!((done.last_finished_at, done.last_ok, done.last_outcome.as_deref()), (Some(due + chrono::Duration::seconds(3)), Some(false), Some("disk full")));

    // A new schedule replans the next run.
    store.plan_job("backup", "0 4 * * *", t0 + hours(26)).await.unwrap();
    let replanned = &store.scheduled_jobs().await.unwrap()[0];
    assert_eq!((replanned.schedule.as_str(), replanned.next_run_at), ("0 4 * * *", t0 + hours(26)));
    assert_eq!(replanned.last_outcome.as_deref(), Some("disk full"), "the last run's record stays");
}

async fn retention_counts_then_deletes_expired_sessions_and_old_read_notifications(backend: Backend) {
    use switchboard_core::ports::{NoticeWrite, PurgeRules, Purged};
    use switchboard_core::Recipient;
    use switchboard_models::NotificationKind;
    let (store, _db) = fresh(backend).await;
    let ann = agent("Ann", Presence::Online);
    store.save_agent(&ann).await.unwrap();
    let t0 = now();
    let days = chrono::Duration::days;
    for (hash, expires) in [("expired", t0 - days(1)), ("live", t0 + days(1))] {
        let session = SessionRecord { agent: ann.id, csrf: "c".into(), expires_at: expires };
        store.create_session(hash, &session).await.unwrap();
    }
    let c = conversation(store.as_ref(), "retained").await;
    for (text, at) in [("old", t0 - days(200)), ("recent", t0 - days(1))] {
        let notice = NoticeWrite { to: Recipient::Agent(ann.id), kind: NotificationKind::Assigned, conversation: Some(c.id), text: text.into(), at, by_email: false };
        store.commit(StepWrite { notices: vec![notice], ..StepWrite::default() }).await.unwrap();
    }
    store.mark_notifications_read(ann.id, None, t0).await.unwrap();
    // Written after the read: as old, but unread.
    let kept_unread = NoticeWrite { to: Recipient::Agent(ann.id), kind: NotificationKind::Assigned, conversation: Some(c.id), text: "old, still unread".into(), at: t0 - days(300), by_email: false };
    store.commit(StepWrite { notices: vec![kept_unread], ..StepWrite::default() }).await.unwrap();

    let rules = PurgeRules { sessions_expired_before: t0, read_notifications_before: Some(t0 - days(180)) };
    let counted = store.purge(&rules, true).await.unwrap();
    assert_eq!(counted, Purged { sessions: 1, notifications: 1 });
    assert_eq!(store.notifications_of(ann.id, None, 10).await.unwrap().len(), 3, "a dry run deletes nothing");
    assert!(store.session("expired", t0 - days(2)).await.unwrap().is_some());
    assert_eq!(store.purge(&rules, false).await.unwrap(), counted);
    let left: Vec<String> = store.notifications_of(ann.id, None, 10).await.unwrap().into_iter().map(|n| n.text).collect();
    assert_eq!(left, ["old, still unread", "recent"], "unread and recent ones stay");
    assert!(store.session("expired", t0 - days(2)).await.unwrap().is_none());
    assert!(store.session("live", t0).await.unwrap().is_some());
    assert_eq!(store.purge(&rules, false).await.unwrap(), Purged::default(), "nothing twice");
    let keep_all = PurgeRules { read_notifications_before: None, ..rules };
    assert_eq!(store.purge(&keep_all, true).await.unwrap(), Purged::default());
}

async fn sla_clocks_round_trip_and_lists_sort_by_the_nearest_due_time(backend: Backend) {
    let (store, _db) = fresh(backend).await;
    let t0 = now();
    let hours = chrono::Duration::hours;
    let mut soon = escalated(store.as_ref(), "due-soon", Priority::High, t0, Handler::Queue).await;
    soon.first_reply_due_at = Some(t0 + hours(1));
    soon.resolution_due_at = Some(t0 + hours(24));
    soon.sla_notices = switchboard_models::SlaNotices(switchboard_models::SlaNotices::FIRST_REPLY_WARNING);
    save(store.as_ref(), &soon).await;
    let mut late = escalated(store.as_ref(), "due-late", Priority::Low, t0, Handler::Queue).await;
    late.resolution_due_at = Some(t0 - hours(2));
    save(store.as_ref(), &late).await;
    let none = escalated(store.as_ref(), "due-none", Priority::Urgent, t0, Handler::Queue).await;
    let loaded = store.conversation(soon.id).await.unwrap().unwrap();
    assert_eq!((loaded.first_reply_due_at, loaded.resolution_due_at, loaded.sla_notices), (soon.first_reply_due_at, soon.resolution_due_at, soon.sla_notices));
    let by_due = ConversationFilter { order: ListOrder::DueFirst, limit: 2, ..ConversationFilter::default() };
    let first = store.list_conversations(&by_due).await.unwrap();
    assert_eq!(first.iter().map(|s| s.conversation.id).collect::<Vec<_>>(), [late.id, soon.id], "overdue first, none last");
    let after = ListCursor::after(first.last().unwrap(), ListOrder::DueFirst);
    let rest = store.list_conversations(&ConversationFilter { after: Some(after), ..by_due }).await.unwrap();
    assert_eq!(rest.iter().map(|s| s.conversation.id).collect::<Vec<_>>(), [none.id]);
    assert_eq!(store.dashboard_counts(t0, t0).await.unwrap().overdue, 1);
    assert_eq!(store.dashboard_counts(t0, t0 + hours(2)).await.unwrap().overdue, 2);
}

async fn one_rating_per_resolution_its_comment_and_every_escalation_are_kept(backend: Backend) {
    use switchboard_core::Feedback;
    use switchboard_core::ports::FeedbackWrite;
    use switchboard_models::{Awaiting, EscalationReason, EscalationRecord};
    let (store, _db) = fresh(backend).await;
    let t0 = now();
    let ann = agent("Ann", Presence::Online);
    store.save_agent(&ann).await.unwrap();
    let mut c = escalated(store.as_ref(), "rated", Priority::High, t0, Handler::Queue).await;
    // The awaited answer and the new status round trip.
    c.status = Status::Confirmed;
    c.handler = Handler::Bot;
    c.awaiting = Some(Awaiting::Rating { agent: ann.id, agent_name: "Ann".into(), resolved_at: t0 });
    save(store.as_ref(), &c).await;
    let loaded = store.conversation(c.id).await.unwrap().unwrap();
    assert_eq!((loaded.status, loaded.awaiting.clone()), (Status::Confirmed, c.awaiting.clone()));

    let feedback = |feedback: Feedback, at: Timestamp| StepWrite {
        feedback: Some(FeedbackWrite { conversation_id: c.id, channel: c.channel, feedback, at }),
        ..StepWrite::default()
    };
    let rated = |score: u8| Feedback::Rated { agent: ann.id, resolved_at: t0, score };
    store.commit(feedback(rated(4), t0)).await.unwrap();
    store.commit(feedback(rated(1), t0)).await.unwrap();
    store.commit(feedback(Feedback::Commented { resolved_at: t0, text: "Quick and kind".into() }, t0)).await.unwrap();
    store.commit(feedback(Feedback::Commented { resolved_at: t0, text: "a second comment".into() }, t0)).await.unwrap();
    let later = t0 + chrono::Duration::days(2);
    store.commit(feedback(Feedback::Rated { agent: ann.id, resolved_at: later, score: 2 }, later)).await.unwrap();
    let ratings = store.ratings_of(c.id).await.unwrap();
    assert_eq!(
        ratings.iter().map(|r| (r.score, r.comment.as_deref(), r.resolved_at)).collect::<Vec<_>>(),
        [(4, Some("Quick and kind"), t0), (2, None, later)],
        "one rating per resolution, the first; one comment, the first"
    );
    assert_eq!(ratings[0].agent_id, Some(ann.id));
    let averages = store.agent_ratings(t0).await.unwrap();
    assert_eq!(averages.len(), 1);
    assert_eq!((averages[0].agent_id, averages[0].count, averages[0].average), (ann.id, 2, 3.0));
    assert_eq!(store.agent_ratings(t0 + chrono::Duration::days(1)).await.unwrap()[0].count, 1, "only those since");

    let escalation = |at: Timestamp, reason: EscalationReason, priority: Priority| EscalationRecord {
        conversation_id: c.id,
        at,
        reason,
        confidence: Some(0.25),
        priority: Some(priority),
        category: Some(Category::Billing),
    };
    let first = escalation(t0, EscalationReason::HumanRequested, Priority::Medium);
    let second = escalation(later, EscalationReason::LowConfidence { times: 2 }, Priority::High);
    store.commit(StepWrite { escalation: Some(second.clone()), ..StepWrite::default() }).await.unwrap();
    store.commit(StepWrite { escalation: Some(first.clone()), ..StepWrite::default() }).await.unwrap();
    assert_eq!(store.escalations_of(c.id).await.unwrap(), [first, second], "every escalation, oldest first");
}

async fn documents_wait_pending_first_and_are_decided_once(backend: Backend) {
    use switchboard_core::ports::{DocumentDecision, DocumentFilter};
    use switchboard_models::{Document, DocumentId, DocumentState};
    let (store, _db) = fresh(backend).await;
    let t0 = now();
    let ann = agent("Ann", Presence::Online);
    store.save_agent(&ann).await.unwrap();
    let c = conversation(store.as_ref(), "docs").await;
    let document = |name: &str, at: Timestamp| Document {
        id: DocumentId::new(),
        conversation_id: c.id,
        contact_id: c.contact_id,
        channel: c.channel,
        message_seq: 1,
        file: Attachment { key: format!("key-{name}"), file_name: name.into(), content_type: "image/png".into(), size: 42, original: false },
        kind: "other".into(),
        state: DocumentState::Pending,
        reviewer_id: None,
        decided_at: None,
        note: None,
        created_at: at,
        purged_at: None,
    };
    let older = document("older.png", t0 - chrono::Duration::minutes(5));
    let newer = document("newer.png", t0);
    let third = document("third.png", t0 + chrono::Duration::minutes(1));
    store.commit(StepWrite { documents: vec![newer.clone(), older.clone(), third.clone()], ..StepWrite::default() }).await.unwrap();
    assert_eq!(store.document(older.id).await.unwrap().as_ref(), Some(&older), "a document round trips");

    let decide = |id: DocumentId, state: DocumentState, note: Option<&str>, at: Timestamp| StepWrite {
        decides: Some(DocumentDecision { document: id, state, kind: "invoice".into(), reviewer: ann.id, note: note.map(String::from), at }),
        ..StepWrite::default()
    };
    assert_eq!(store.commit(decide(newer.id, DocumentState::Approved, None, t0)).await.unwrap(), Committed::Stored { seqs: vec![] });
    assert_eq!(store.commit(decide(newer.id, DocumentState::Rejected, Some("late"), t0)).await.unwrap(), Committed::Conflict, "decided once");
    store.commit(decide(third.id, DocumentState::Rejected, Some("blurry"), t0 + chrono::Duration::minutes(2))).await.unwrap();
    let decided = store.document(newer.id).await.unwrap().unwrap();
    assert_eq!((decided.state, decided.kind.as_str(), decided.reviewer_id, decided.decided_at), (DocumentState::Approved, "invoice", Some(ann.id), Some(t0)));

    let all = store.documents(&DocumentFilter { limit: 10, ..DocumentFilter::default() }).await.unwrap();
    assert_eq!(
        all.iter().map(|d| d.document.file.file_name.as_str()).collect::<Vec<_>>(),
        ["older.png", "third.png", "newer.png"],
        "pending first, then the newest decision"
    );
    assert_eq!(all[1].reviewer_name.as_deref(), Some("Ann"));
    assert_eq!(all[0].customer, "Ann", "with the customer's name");
    let rejected = store.documents(&DocumentFilter { state: Some(DocumentState::Rejected), limit: 10, ..DocumentFilter::default() }).await.unwrap();
    assert_eq!(rejected.iter().map(|d| d.document.note.as_deref()).collect::<Vec<_>>(), [Some("blurry")]);
    let invoices = store.documents(&DocumentFilter { kind: Some("invoice".into()), conversation: Some(c.id), limit: 1, ..DocumentFilter::default() }).await.unwrap();
    assert_eq!(invoices.len(), 1, "limited");
    let counts = store.document_counts(t0 - chrono::Duration::seconds(1)).await.unwrap();
    assert_eq!((counts.pending, counts.approved_today, counts.rejected_today), (1, 1, 1));
    assert_eq!(store.document_counts(t0 + chrono::Duration::minutes(1)).await.unwrap().approved_today, 0, "only decisions since the day began");

    // Retention lets go of the files of decided documents received before a time.
    let cutoff = t0 + chrono::Duration::minutes(5);
    let names = |documents: Vec<Document>| documents.into_iter().map(|d| d.file.file_name).collect::<Vec<_>>();
    assert_eq!(names(store.documents_to_purge(cutoff, 10).await.unwrap()), ["newer.png", "third.png"], "decided ones, oldest first; the pending one waits");
    assert_eq!(names(store.documents_to_purge(t0, 10).await.unwrap()), Vec::<String>::new(), "only those received before the time");
    assert_eq!(store.documents_to_purge(cutoff, 1).await.unwrap().len(), 1, "limited");
    store.mark_document_purged(newer.id, cutoff).await.unwrap();
    store.mark_document_purged(newer.id, cutoff + chrono::Duration::minutes(1)).await.unwrap();
    assert_eq!(store.document(newer.id).await.unwrap().unwrap().purged_at, Some(cutoff), "removed once, the first time kept");
    assert_eq!(names(store.documents_to_purge(cutoff, 10).await.unwrap()), ["third.png"]);
}

async fn escalated(store: &dyn Store, who: &str, priority: Priority, at: Timestamp, handler: Handler) -> Conversation {
    let mut c = conversation(store, who).await;
    c.handler = handler;
    c.priority = Some(priority);
    c.escalation = Some(switchboard_models::Escalation { reason: switchboard_models::EscalationReason::HumanRequested, summary: String::new(), at });
    save(store, &c).await;
    store.conversation(c.id).await.unwrap().unwrap()
}

async fn the_queue_says_who_is_ahead_and_how_long_first_replies_took(backend: Backend) {
    let (store, _db) = fresh(backend).await;
    let start = now() - chrono::Duration::hours(2);
    let minutes = |n: i64| start + chrono::Duration::minutes(n);
    let medium = escalated(store.as_ref(), "q-medium", Priority::Medium, minutes(0), Handler::Queue).await;
    let urgent = escalated(store.as_ref(), "q-urgent", Priority::Urgent, minutes(1), Handler::Queue).await;
    let later = escalated(store.as_ref(), "q-later", Priority::Medium, minutes(2), Handler::Queue).await;
    let ann = agent("Ann", Presence::Online);
    store.save_agent(&ann).await.unwrap();
    let taken = escalated(store.as_ref(), "q-taken", Priority::Urgent, minutes(0), Handler::Agent(ann.id)).await;
    assert_eq!(store.queued_ahead_of(&urgent).await.unwrap(), 0, "urgent goes first");
    assert_eq!(store.queued_ahead_of(&medium).await.unwrap(), 1);
    assert_eq!(store.queued_ahead_of(&later).await.unwrap(), 2, "then the longest waiting; a taken conversation is not in line");
    assert_eq!(store.queued_ahead_of(&taken).await.unwrap(), 0);

    // First replies: `taken` got an internal note after 1 minute (not a reply) and Ann's reply
    // after 12; a newer escalation got its reply after 4; the queued ones have none yet.
    let reply = |c: &Conversation, sender: Sender, internal: bool, at: Timestamp| {
        let mut m = message(c, sender, "on it", None);
        m.agent_id = Some(ann.id);
        m.internal = internal;
        m.created_at = at;
        m
    };
    store.commit(StepWrite { notes: vec![reply(&taken, Sender::Agent, true, minutes(1))], ..StepWrite::default() }).await.unwrap();
    store.commit(step_write(None, vec![reply(&taken, Sender::Agent, false, minutes(12))])).await.unwrap();
    let newer = escalated(store.as_ref(), "q-newer", Priority::Low, minutes(30), Handler::Agent(ann.id)).await;
    store.commit(step_write(None, vec![reply(&newer, Sender::Bot, false, minutes(31))])).await.unwrap();
    store.commit(step_write(None, vec![reply(&newer, Sender::Agent, false, minutes(34))])).await.unwrap();
    assert_eq!(
        store.recent_first_replies(10).await.unwrap(),
        [(minutes(30), chrono::Duration::minutes(4)), (minutes(0), chrono::Duration::minutes(12))],
        "newest escalation first, with when it was escalated; bot messages and notes are no reply"
    );
    assert_eq!(store.recent_first_replies(1).await.unwrap(), [(minutes(30), chrono::Duration::minutes(4))]);
}

/// Both backends commit steps waiting at the same moment together: a duplicate and a failing
/// step among them change nothing for the others.
async fn steps_committed_at_once_are_each_stored_refused_or_failed_on_their_own(backend: Backend) {
    let (store, _db) = fresh(backend).await;
    let conversation = conversation(store.as_ref(), "visitor-group").await;
    let first = step_write(Some(message(&conversation, Sender::Customer, "first", Some("g:0"))), vec![]);
    assert!(matches!(store.commit(first).await, Ok(Committed::Stored { .. })));
    let orphan = Conversation::new(ContactId::new(), Channel::WebChat, Utc::now());
    let mut writes: Vec<StepWrite> = (1..=30)
        .map(|n| step_write(Some(message(&conversation, Sender::Customer, &format!("message {n}"), Some(&format!("g:{n}")))), vec![]))
        .collect();
    writes.insert(10, step_write(Some(message(&conversation, Sender::Customer, "again", Some("g:0"))), vec![]));
    writes.insert(20, step_write(Some(message(&orphan, Sender::Customer, "lost?", Some("g:orphan"))), vec![]));
    let results = futures::future::join_all(writes.into_iter().map(|write| store.commit(write))).await;
    assert!(matches!(results[10], Ok(Committed::Duplicate)), "{:?}", results[10]);
    assert!(results[20].is_err(), "{:?}", results[20]);
    let stored = results.iter().filter(|r| matches!(r, Ok(Committed::Stored { .. }))).count();
    assert_eq!(stored, 30, "every good step is stored: {results:?}");
    assert!(store.message_by_external_id(Channel::WebChat, "g:orphan").await.unwrap().is_none());
    assert_eq!(store.conversation_messages(conversation.id, 0, 100).await.unwrap().len(), 31, "the first, then 30; the duplicate added nothing");
}

/// The bot's one-write steps (a customer message, its reply, the conversation saved with them)
/// sent at once, as many customers' steps reach the writer together (most of them in the same
/// group, though nothing forces it): each step's seqs are its own messages', each conversation
/// holds what its own step saved, and a duplicate amid them changes nothing.
async fn steps_saving_their_conversation_committed_at_once_each_keep_their_own_messages_and_state(backend: Backend) {
    let (store, _db) = fresh(backend).await;
    let mut conversations = Vec::new();
    for n in 0..20 {
        conversations.push(conversation(store.as_ref(), &format!("visitor-batch-{n}")).await);
    }
    let repeated = conversation(store.as_ref(), "visitor-batch-repeat").await;
    let first = step_write(Some(message(&repeated, Sender::Customer, "first", Some("batch:first"))), vec![]);
    assert!(matches!(store.commit(first).await, Ok(Committed::Stored { .. })));
    let one_write = |conversation: &Conversation, n: usize, external_id: &str| {
        let mut saved = conversation.clone();
        saved.language = Some(format!("l{n}"));
        saved.priority = Some(if n % 2 == 0 { Priority::Low } else { Priority::High });
        StepWrite {
            conversation: Some(saved),
            ..step_write(Some(message(conversation, Sender::Customer, &format!("q{n}"), Some(external_id))), vec![message(conversation, Sender::Bot, &format!("a{n}"), None)])
        }
    };
    let mut writes: Vec<StepWrite> = conversations.iter().enumerate().map(|(n, c)| one_write(c, n, &format!("batch:{n}"))).collect();
    let mut again = one_write(&repeated, 99, "batch:first");
    again.conversation.as_mut().unwrap().status = Status::Rejected;
    writes.insert(7, again);
    let results = futures::future::join_all(writes.into_iter().map(|write| store.commit(write))).await;
    assert!(matches!(results[7], Ok(Committed::Duplicate)), "{:?}", results[7]);
    let stored: Vec<&Vec<i64>> = results
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 7)
        .map(|(_, r)| match r {
            Ok(Committed::Stored { seqs }) => seqs,
            other => panic!("every other step is stored: {other:?}"),
        })
        .collect();
    for (n, (seqs, conversation)) in stored.into_iter().zip(&conversations).enumerate() {
        assert_eq!(seqs.len(), 2, "step {n}: {seqs:?}");
        let (question, answer) = (store.message_by_seq(seqs[0]).await.unwrap().unwrap(), store.message_by_seq(seqs[1]).await.unwrap().unwrap());
        assert_eq!((question.text, answer.text), (format!("q{n}"), format!("a{n}")), "step {n}'s seqs are its own messages'");
        assert_eq!((question.conversation_id, answer.conversation_id), (conversation.id, conversation.id));
        let loaded = store.conversation(conversation.id).await.unwrap().unwrap();
        assert_eq!((loaded.language, loaded.priority), (Some(format!("l{n}")), Some(if n % 2 == 0 { Priority::Low } else { Priority::High })), "step {n}");
    }
    let untouched = store.conversation(repeated.id).await.unwrap().unwrap();
    assert_eq!((untouched.status, untouched.language), (Status::Open, None), "the duplicate's conversation was not saved");
    let texts: Vec<String> = store.conversation_messages(repeated.id, 0, 100).await.unwrap().into_iter().map(|m| m.text).collect();
    assert_eq!(texts, ["first"], "nor its reply stored");
}

/// Steps refused amid others sent at once (in one transaction) leave nothing behind, and the
/// steps around them are stored whole.
async fn refused_steps_amid_others_committed_at_once_write_nothing(backend: Backend) {
    let (store, _db) = fresh(backend).await;
    let conversation = conversation(store.as_ref(), "visitor-amid").await;
    let Committed::Stored { seqs } = store.commit(step_write(Some(message(&conversation, Sender::Customer, "first", Some("amid:0"))), vec![])).await.unwrap() else {
        panic!("stored")
    };
    let answer = |reply: &str| StepWrite {
        answers: Some((seqs[0], classified_as("greeting"))),
        outbound: vec![message(&conversation, Sender::Bot, reply, None)],
        ..StepWrite::default()
    };
    assert!(matches!(store.commit(answer("answered once")).await, Ok(Committed::Stored { .. })));
    assert!(store.unanswered_messages(10).await.unwrap().is_empty(), "answered, so no longer waiting");
    let mut writes: Vec<StepWrite> = (1..=20)
        .map(|n| step_write(Some(message(&conversation, Sender::Customer, &format!("m{n}"), Some(&format!("amid:{n}")))), vec![message(&conversation, Sender::Bot, &format!("r{n}"), None)]))
        .collect();
    writes.insert(5, answer("answered twice"));
    writes.insert(12, step_write(Some(message(&conversation, Sender::Customer, "again", Some("amid:0"))), vec![message(&conversation, Sender::Bot, "reply to again", None)]));
    let results = futures::future::join_all(writes.into_iter().map(|write| store.commit(write))).await;
    assert!(matches!(results[5], Ok(Committed::Duplicate)), "{:?}", results[5]);
    assert!(matches!(results[12], Ok(Committed::Duplicate)), "{:?}", results[12]);
    assert_eq!(results.iter().filter(|r| matches!(r, Ok(Committed::Stored { .. }))).count(), 20, "{results:?}");
    let texts: Vec<String> = store.conversation_messages(conversation.id, 0, 100).await.unwrap().into_iter().map(|m| m.text).collect();
    assert_eq!(texts.len(), 2 + 40, "{texts:?}");
    assert!(!texts.iter().any(|t| t == "answered twice" || t == "again" || t == "reply to again"), "{texts:?}");
    let waiting = store.unanswered_messages(100).await.unwrap();
    assert_eq!(waiting.len(), 20, "each new customer message waits for its answer, the refused ones add none");
    assert!(waiting.windows(2).all(|w| w[0].seq < w[1].seq), "oldest first");
}

async fn contacts_join_into_one_person_with_proof_and_separate_again(backend: Backend) {
    use switchboard_core::ports::JoinContacts;
    use switchboard_models::{LinkCode, LinkProof};
    let (store, _db) = fresh(backend).await;
    let web = conversation(store.as_ref(), "ann-web").await;
    let telegram = conversation(store.as_ref(), "ann-telegram").await;
    let carl = conversation(store.as_ref(), "carl").await;
    let (a, b, c) = (web.contact_id, telegram.contact_id, carl.contact_id);
    let ids = |contacts: Vec<Contact>| contacts.into_iter().map(|c| c.id).collect::<Vec<_>>();
    assert_eq!(ids(store.identities(a).await.unwrap()), [a]);

    let code = LinkCode { code_hash: "h1".into(), contact: a, email: None, created_at: now(), expires_at: now() + chrono::Duration::minutes(15), used_at: None };
    store.save_link_code(&code).await.unwrap();
    assert_eq!(store.link_code("h1").await.unwrap(), Some(code));
    assert_eq!(store.link_code("h2").await.unwrap(), None);
    let audit = |action| AuditEntry { at: now(), actor: None, action, conversation: Some(telegram.id), subject_agent: None, before: None, after: None };
    let by_code = JoinContacts { person: a, joined: b, proof: LinkProof::LinkCode, agent: None, at: now(), code_hash: Some("h1".into()), audit: Some(audit(AuditAction::JoinContacts)) };
    let first = store.join_contacts(&by_code).await.unwrap().expect("joined by the code");
    assert_eq!((first.person, first.joined, first.moved.clone(), first.proof), (a, b, vec![b], LinkProof::LinkCode));
    assert_eq!(ids(store.identities(b).await.unwrap()), [a, b], "one person, seen from either contact");
    let mut shared: Vec<_> = store.person_conversations(b).await.unwrap().into_iter().map(|s| s.conversation.id).collect();
    shared.sort();
    let mut expected = vec![web.id, telegram.id];
    expected.sort();
    assert_eq!(shared, expected);
    assert_eq!(store.link_code("h1").await.unwrap().unwrap().used_at.map(|_| ()), Some(()));
    // A used code proves nothing again; two contacts of one person are not joined twice.
    assert_eq!(store.join_contacts(&by_code).await.unwrap(), None);
    assert_eq!(store.join_contacts(&JoinContacts { code_hash: None, ..by_code.clone() }).await.unwrap(), None);
    // An expired code is refused.
    let expired = LinkCode { code_hash: "old".into(), contact: c, email: None, created_at: now(), expires_at: now() - chrono::Duration::seconds(1), used_at: None };
    store.save_link_code(&expired).await.unwrap();
    assert_eq!(store.join_contacts(&JoinContacts { person: c, joined: a, code_hash: Some("old".into()), ..by_code.clone() }).await.unwrap(), None);

    // An agent joins Ann (both her contacts move) to Carl's customer.
    let robin = agent("Robin", Presence::Online);
    store.commit_admin(AdminWrite { agent: Some(robin.clone()), ..AdminWrite::default() }).await.unwrap();
    let by_agent = JoinContacts { person: c, joined: b, proof: LinkProof::Agent, agent: Some(robin.id), at: now(), code_hash: None, audit: None };
    let second = store.join_contacts(&by_agent).await.unwrap().unwrap();
    assert_eq!((second.joined, second.moved.clone(), second.agent), (a, vec![a, b], Some(robin.id)), "the joined group is named by the contact standing for it");
    assert_eq!(ids(store.identities(a).await.unwrap()), [a, b, c]);
    let links = store.contact_links(b).await.unwrap();
    assert_eq!(links.iter().map(|l| l.id).collect::<Vec<_>>(), [second.id, first.id], "newest first");

    // Undoing the first join takes Telegram out again; Ann's web chat stays with Carl's customer.
    let undone = store.undo_contact_link(first.id, Some(robin.id), now(), Some(audit(AuditAction::SeparateContacts))).await.unwrap().unwrap();
    assert_eq!(undone.moved, [b]);
    assert_eq!(ids(store.identities(b).await.unwrap()), [b]);
    assert_eq!(ids(store.identities(c).await.unwrap()), [a, c]);
    assert_eq!(store.undo_contact_link(first.id, Some(robin.id), now(), None).await.unwrap(), None, "undone once");
    let stored = store.contact_link(first.id).await.unwrap().unwrap();
    assert_eq!((stored.undone_by, stored.undone_at.is_some()), (Some(robin.id), true));
    assert_eq!(store.contact_links(b).await.unwrap().len(), 1, "the separated contact still shows the join it left");
    // Undoing the second separates the rest; the person's conversations follow.
    store.undo_contact_link(second.id, None, now(), None).await.unwrap().unwrap();
    for contact in [a, b, c] {
        assert_eq!(ids(store.identities(contact).await.unwrap()), [contact]);
    }
    assert_eq!(store.person_conversations(c).await.unwrap().len(), 1);
    let actions: Vec<_> = store.audit_page(None, 10).await.unwrap().into_iter().map(|(_, e)| e.action).collect();
    assert_eq!(actions, [AuditAction::SeparateContacts, AuditAction::JoinContacts]);
}

async fn how_far_an_agent_saw_a_conversation_only_moves_forward(backend: Backend) {
    let (store, _db) = fresh(backend).await;
    let conversation = conversation(store.as_ref(), "seen").await;
    let robin = agent("Robin", Presence::Online);
    store.commit_admin(AdminWrite { agent: Some(robin.clone()), ..AdminWrite::default() }).await.unwrap();
    assert_eq!(store.seen_by_agent(conversation.id).await.unwrap(), None);
    assert!(store.mark_seen_by_agent(conversation.id, robin.id, 5, now()).await.unwrap());
    assert!(!store.mark_seen_by_agent(conversation.id, robin.id, 5, now()).await.unwrap(), "seen that far already");
    assert!(!store.mark_seen_by_agent(conversation.id, robin.id, 3, now()).await.unwrap(), "never back");
    assert_eq!(store.seen_by_agent(conversation.id).await.unwrap(), Some(5));
    assert!(store.mark_seen_by_agent(conversation.id, robin.id, 9, now()).await.unwrap());
    assert_eq!(store.seen_by_agent(conversation.id).await.unwrap(), Some(9));
}

async fn reports_count_a_periods_conversations_events_waits_intents_and_ratings_in_the_database(backend: Backend) {
    use switchboard_core::Feedback;
    use switchboard_core::ports::{EventCount, FeedbackWrite, ReportPeriod, StateCount, WaitPercentiles, ZoneOffsets};
    use switchboard_models::{ConversationEvent, EventKind};
    let (store, _db) = fresh(backend).await;
    let t0 = now();
    let (from, to) = (t0 - chrono::Duration::hours(1), t0 + chrono::Duration::hours(1));
    let period = ReportPeriod { from, to, channel: None, category: None, agent: None };
    let ann = agent("Ann", Presence::Online);
    store.save_agent(&ann).await.unwrap();
    let mut c = conversation(store.as_ref(), "reported").await;
    let kept = conversation(store.as_ref(), "kept by the bot").await;
    c.handler = Handler::Agent(ann.id);
    c.status = Status::Resolved;
    c.category = Some(Category::Billing);
    c.escalation = Some(switchboard_models::Escalation { reason: switchboard_models::EscalationReason::Urgent, summary: String::new(), at: t0 });
    let event = |kind: EventKind, at: Timestamp, wait_minutes: Option<i64>| ConversationEvent {
        conversation_id: c.id,
        kind,
        at,
        channel: Channel::WebChat,
        agent_id: (kind != EventKind::Escalated).then_some(ann.id),
        category: Some(Category::Billing),
        priority: Some(Priority::Urgent),
        reason: (kind == EventKind::Escalated).then(|| "urgent".to_string()),
        wait_ms: wait_minutes.map(|m| m * 60_000),
    };
    let minutes = chrono::Duration::minutes;
    let mut events = vec![event(EventKind::Escalated, t0, None), event(EventKind::FirstReply, t0 + minutes(5), Some(5))];
    // Resolved four times (reopened in between): waits of 30, 10, 20 and 40 minutes.
    events.extend([30, 10, 20, 40].map(|wait| event(EventKind::Resolved, t0 + minutes(wait), Some(wait))));
    let write = StepWrite { conversation: Some(c.clone()), events, ..StepWrite::default() };
    assert!(matches!(store.commit(write).await.unwrap(), Committed::Stored { .. }));
    // A second first reply is not one; an event after the period is not read.
    let again = StepWrite { events: vec![event(EventKind::FirstReply, t0 + minutes(40), Some(40))], ..StepWrite::default() };
    store.commit(again).await.unwrap();
    store.commit(StepWrite { events: vec![event(EventKind::Resolved, to, Some(1))], ..StepWrite::default() }).await.unwrap();

    // Conversations per local hour: the zone's offset moves them onto its wall clock.
    let hour_of = |at: Timestamp, offset: i64| (at.timestamp_millis() + offset) / 3_600_000;
    let hours = store.started_by_hour(&period, &ZoneOffsets(vec![(from, 0)])).await.unwrap();
    assert_eq!(hours.iter().map(|h| (h.local_hour, h.channel, h.count)).collect::<Vec<_>>(), [(hour_of(c.created_at, 0), Channel::WebChat, 2)]);
    let shifted = store.started_by_hour(&period, &ZoneOffsets(vec![(from, 19_800_000)])).await.unwrap();
    assert_eq!(shifted[0].local_hour, hour_of(c.created_at, 19_800_000), "UTC+5:30");
    let mut states = store.started_by_state(&period).await.unwrap();
    states.sort_by_key(|s| s.escalated);
    assert_eq!(
        states,
        [StateCount { status: Status::Open, escalated: false, count: 1 }, StateCount { status: Status::Resolved, escalated: true, count: 1 }]
    );
    let annes = ReportPeriod { agent: Some(ann.id), ..period };
    assert_eq!(store.started_by_state(&annes).await.unwrap().len(), 1, "only the conversation Ann has");
    let telegram = ReportPeriod { channel: Some(Channel::Telegram), ..period };
    assert!(store.started_by_state(&telegram).await.unwrap().is_empty());
    assert!(store.started_by_hour(&ReportPeriod { from: to, to: to + chrono::Duration::hours(1), ..period }, &ZoneOffsets(vec![(to, 0)])).await.unwrap().is_empty());

    let mut counted = store.event_counts(&period).await.unwrap();
    counted.sort_by_key(|e| e.kind.as_str());
    let count = |kind, agent_id, reason: Option<&str>, n| EventCount {
        kind,
        agent_id,
        reason: reason.map(String::from),
        category: Some(Category::Billing),
        priority: Some(Priority::Urgent),
        count: n,
    };
    assert_eq!(
        counted,
        [
            count(EventKind::Escalated, None, Some("urgent"), 1),
            EventCount { category: None, priority: None, ..count(EventKind::FirstReply, Some(ann.id), None, 1) },
            EventCount { category: None, priority: None, ..count(EventKind::Resolved, Some(ann.id), None, 4) },
        ],
        "the second first reply ignored, the event after the period not read; escalations by category and priority, the rest by agent"
    );
    assert!(store.event_counts(&ReportPeriod { category: Some(Category::Account), ..period }).await.unwrap().is_empty());
    let mut waits = store.wait_percentiles(&period).await.unwrap();
    waits.sort_by_key(|w| (w.kind.as_str(), w.agent_id.is_some()));
    let wait = |kind, agent_id, count, median: i64, p90: i64| WaitPercentiles { kind, agent_id, count, median_ms: median * 60_000, p90_ms: p90 * 60_000 };
    assert_eq!(
        waits,
        [
            wait(EventKind::FirstReply, None, 1, 5, 5),
            wait(EventKind::FirstReply, Some(ann.id), 1, 5, 5),
            wait(EventKind::Resolved, None, 4, 20, 40),
            wait(EventKind::Resolved, Some(ann.id), 4, 20, 40),
        ],
        "nearest rank: of 10, 20, 30, 40 the median is 20 and the 90th percentile 40"
    );

    let asked = message(&c, Sender::Customer, "refund please", Some("reported:1"));
    let Committed::Stored { seqs } = store.commit(step_write(Some(asked), Vec::new())).await.unwrap() else { panic!("stored") };
    store.commit(StepWrite { answers: Some((seqs[0], classified_as("refund"))), answered_from_intent: true, ..StepWrite::default() }).await.unwrap();
    store.commit(step_write(Some(message(&kept, Sender::Customer, "hello?", Some("reported:2"))), Vec::new())).await.unwrap();
    // An answer to what the bot asked: its intent played no part, so it needs no teaching.
    let Committed::Stored { seqs } = store.commit(step_write(Some(message(&c, Sender::Customer, "yes", Some("reported:3"))), Vec::new())).await.unwrap() else {
        panic!("stored")
    };
    store.commit(StepWrite { answers: Some((seqs[0], classified_as("thanks"))), intent_unused: true, ..StepWrite::default() }).await.unwrap();
    store.commit(step_write(None, vec![message(&c, Sender::Bot, "not counted", None)])).await.unwrap();
    let intents = |counts: Vec<switchboard_core::ports::IntentCount>| {
        let mut counts: Vec<(Option<String>, i64, i64)> = counts.into_iter().map(|i| (i.intent, i.count, i.answered)).collect();
        counts.sort();
        counts
    };
    assert_eq!(
        intents(store.intent_counts(&period).await.unwrap()),
        [(None, 1, 0), (Some("refund".to_string()), 1, 1), (Some("thanks".to_string()), 1, 0)],
        "customers' messages only, the unanswered one without an intent; the refund's answer was sent"
    );
    assert_eq!(intents(store.intent_counts(&annes).await.unwrap()).len(), 2, "not the message of the conversation the bot kept");
    let unsure = store.unsure_messages(&period, 0.9, 10).await.unwrap();
    assert_eq!(unsure.iter().map(|m| (m.text.as_str(), m.intent.as_deref())).collect::<Vec<_>>(), [("refund please", Some("refund"))], "answered below 0.9");
    assert!((unsure[0].confidence.unwrap() - 0.8).abs() < 1e-6 && unsure[0].conversation_id == c.id);
    assert!(store.unsure_messages(&period, 0.5, 10).await.unwrap().is_empty(), "sure enough at 0.5");
    assert!(store.unsure_messages(&period, 0.9, 0).await.unwrap().is_empty(), "the limit holds");
    assert!(store.unsure_messages(&telegram, 0.9, 10).await.unwrap().is_empty(), "the filters hold");

    let rated = StepWrite {
        feedback: Some(FeedbackWrite { conversation_id: c.id, channel: c.channel, feedback: Feedback::Rated { agent: ann.id, resolved_at: t0, score: 4 }, at: t0 }),
        ..StepWrite::default()
    };
    store.commit(rated).await.unwrap();
    let ratings = store.ratings_given(&period).await.unwrap();
    assert_eq!(ratings.iter().map(|r| (r.score, r.agent_id)).collect::<Vec<_>>(), [(4, Some(ann.id))]);
    assert!(store.ratings_given(&telegram).await.unwrap().is_empty());
    assert!(store.ratings_given(&ReportPeriod { from: to, to: to + chrono::Duration::hours(1), ..period }).await.unwrap().is_empty());
}

async fn reports_count_whole_past_days_once_and_late_answers_still_count(backend: Backend) {
    use switchboard_core::ports::{IntentCount, ReportPeriod};
    let (store, _db) = fresh(backend).await;
    let day_ms = 86_400_000;
    let today = now().timestamp_millis().div_euclid(day_ms);
    let day = |n: i64, hour: i64| chrono::DateTime::from_timestamp_millis((today - n) * day_ms + hour * 3_600_000).unwrap();
    let mut c = conversation(store.as_ref(), "long ago").await;
    c.category = Some(Category::GeneralInquiry);
    store.commit(StepWrite { conversation: Some(c.clone()), ..StepWrite::default() }).await.unwrap();
    let telegram = conversation(store.as_ref(), "on telegram").await;
    // Customer messages of four days ago, three days ago and today, some answered now, some later.
    let mut stored = Vec::new();
    for (n, (days_ago, hour, conversation)) in [(4, 10, &c), (4, 11, &c), (4, 23, &c), (3, 0, &telegram), (3, 5, &c), (0, 0, &c)].into_iter().enumerate() {
        let mut asked = message(conversation, Sender::Customer, &format!("question {n}"), Some(&format!("old:{n}")));
        asked.created_at = day(days_ago, hour);
        if conversation.id == telegram.id {
            asked.channel = Channel::Telegram;
        }
        let Committed::Stored { seqs } = store.commit(step_write(Some(asked), Vec::new())).await.unwrap() else { panic!("stored") };
        stored.push(seqs[0]);
    }
    let answer = |seq: i64, intent: &str, answered_from_intent: bool| StepWrite {
        answers: Some((seq, classified_as(intent))),
        answered_from_intent,
        ..StepWrite::default()
    };
    for (seq, intent, sent) in [(stored[0], "refund", true), (stored[1], "refund", false), (stored[3], "greeting", true), (stored[5], "refund", true)] {
        store.commit(answer(seq, intent, sent)).await.unwrap();
    }
    let counts = |counts: Vec<IntentCount>| {
        let mut counts: Vec<(Option<String>, i64, i64)> = counts.into_iter().map(|i| (i.intent, i.count, i.answered)).collect();
        counts.sort();
        counts
    };
    // Periods that begin and end inside days, on whole days, with and without filters.
    let periods = [
        ReportPeriod { from: day(5, 0), to: day(0, 0) + chrono::Duration::hours(23), channel: None, category: None, agent: None },
        ReportPeriod { from: day(4, 10) + chrono::Duration::minutes(30), to: day(3, 3), channel: None, category: None, agent: None },
        ReportPeriod { from: day(4, 0), to: day(2, 0), channel: Some(Channel::Telegram), category: None, agent: None },
        ReportPeriod { from: day(4, 0), to: day(2, 0), channel: None, category: Some(Category::GeneralInquiry), agent: None },
    ];
    let mut before = Vec::new();
    for period in &periods {
        before.push(counts(store.intent_counts(period).await.unwrap()));
    }
    assert_eq!(
        before[0],
        [(None, 2, 0), (Some("greeting".to_string()), 1, 1), (Some("refund".to_string()), 3, 2)],
        "two wait for an answer"
    );

    // Days before yesterday are counted, a week at most per call, and each once.
    assert_eq!(store.roll_up_reports(today - 1, 1).await.unwrap(), 1, "the first message's day; the empty days before it are passed over");
    assert_eq!(store.roll_up_reports(today - 1, 7).await.unwrap(), 2, "three and two days ago");
    assert_eq!(store.roll_up_reports(today - 1, 7).await.unwrap(), 0, "nothing left");
    for (period, counted_before) in periods.iter().zip(&before) {
        assert_eq!(&counts(store.intent_counts(period).await.unwrap()), counted_before, "the same figures from the per-day counts: {period:?}");
    }

    // A message of a counted day answered only now is added to its day.
    store.commit(answer(stored[2], "greeting", true)).await.unwrap();
    assert_eq!(
        counts(store.intent_counts(&periods[0]).await.unwrap()),
        [(None, 1, 0), (Some("greeting".to_string()), 2, 2), (Some("refund".to_string()), 3, 2)],
    );
    assert_eq!(
        counts(store.intent_counts(&periods[3]).await.unwrap()),
        [(None, 1, 0), (Some("greeting".to_string()), 1, 1), (Some("refund".to_string()), 2, 1)],
        "by the conversation's category: not Telegram's greeting"
    );
}

async fn intents_versions_follow_one_another_with_their_labels_and_are_measured_once(backend: Backend) {
    use switchboard_core::ports::{IntentLabel, IntentsAccuracy, NewIntentsVersion};
    use switchboard_models::IntentsOrigin;
    let (store, _db) = fresh(backend).await;
    let t0 = now();
    let ann = agent("Ann", Presence::Online);
    store.save_agent(&ann).await.unwrap();
    assert!(store.latest_intents().await.unwrap().is_none());
    let version = |after: i64, text: &str, origin: IntentsOrigin, labels: Vec<IntentLabel>| NewIntentsVersion {
        after,
        text: text.to_string(),
        digest: format!("digest of {text}"),
        file_digest: "file".into(),
        origin,
        note: format!("note {}", after + 1),
        author: (origin != IntentsOrigin::File).then_some(ann.id),
        at: t0 + chrono::Duration::seconds(after),
        labels,
    };
    let audit = |n: i64| AuditEntry {
        at: t0,
        actor: Some(ann.id),
        action: AuditAction::Intents,
        conversation: None,
        subject_agent: None,
        before: None,
        after: Some(format!("version {n}")),
    };
    let write = |v: NewIntentsVersion| AdminWrite { audit: vec![audit(v.after + 1)], intents: Some(v), ..AdminWrite::default() };
    store.commit_admin(write(version(0, "first", IntentsOrigin::File, Vec::new()))).await.unwrap();

    // Customer messages to teach; the bot was unsure of both.
    let c = conversation(store.as_ref(), "taught").await;
    let mut seqs = Vec::new();
    for (i, text) in ["my parcel never came", "where is the courier"].iter().enumerate() {
        let asked = message(&c, Sender::Customer, text, Some(&format!("taught:{i}")));
        let Committed::Stored { seqs: stored } = store.commit(step_write(Some(asked), Vec::new())).await.unwrap() else { panic!("stored") };
        store.commit(StepWrite { answers: Some((stored[0], classified_as("order_status"))), ..StepWrite::default() }).await.unwrap();
        seqs.push(stored[0]);
    }
    let bot_line = message(&c, Sender::Bot, "not a customer's", None);
    store.commit(step_write(None, vec![bot_line])).await.unwrap();
    let texts = store.customer_texts(&[seqs[1], 999_999, seqs[0]]).await.unwrap();
    assert_eq!(texts, [(seqs[1], "where is the courier".to_string()), (seqs[0], "my parcel never came".to_string())], "customer messages only, in the order asked");
    let period = switchboard_core::ports::ReportPeriod { from: t0 - chrono::Duration::hours(1), to: t0 + chrono::Duration::hours(1), channel: None, category: None, agent: None };
    assert_eq!(store.unsure_messages(&period, 0.9, 10).await.unwrap().len(), 2);

    let label = |seq: i64, text: &str| IntentLabel { message_seq: seq, text: text.into(), intent: "lost_parcel".into() };
    let taught = version(1, "second", IntentsOrigin::Teaching, vec![label(seqs[0], "my parcel never came")]);
    store.commit_admin(write(taught)).await.unwrap();
    // A version decided on version 1 while 2 exists is refused whole: no version, no label, no audit.
    let audit_before = store.audit_entries(100).await.unwrap().len();
    let stale = store.commit_admin(write(version(1, "late", IntentsOrigin::Panel, vec![label(seqs[1], "where is the courier")]))).await.unwrap_err();
    assert!(matches!(stale, switchboard_core::ports::StoreError::Stale(_)), "{stale:?}");
    assert_eq!(store.audit_entries(100).await.unwrap().len(), audit_before);
    assert_eq!(store.labelled_messages().await.unwrap(), [("my parcel never came".to_string(), "lost_parcel".to_string())]);
    let unsure = store.unsure_messages(&period, 0.9, 10).await.unwrap();
    assert_eq!(unsure.iter().map(|m| m.seq).collect::<Vec<_>>(), [seqs[1]], "a taught message needs no more teaching");

    let (latest, text) = store.latest_intents().await.unwrap().unwrap();
    assert_eq!((latest.number, text.as_str(), latest.origin, latest.author, latest.note.as_str()), (2, "second", IntentsOrigin::Teaching, Some(ann.id), "note 2"));
    assert_eq!((latest.digest.as_str(), latest.file_digest.as_str(), latest.created_at, latest.accuracy), ("digest of second", "file", t0 + chrono::Duration::seconds(1), None));
    let (first, text) = store.intents_text(1).await.unwrap().unwrap();
    assert_eq!((first.number, text.as_str(), first.author), (1, "first", None));
    assert!(store.intents_text(3).await.unwrap().is_none());

    let measured = IntentsAccuracy { labelled: 1, before: 0.0, after: 1.0, measured_at: t0 };
    store.record_intents_accuracy(2, &measured).await.unwrap();
    store.record_intents_accuracy(2, &IntentsAccuracy { labelled: 1, before: 0.5, after: 0.5, measured_at: t0 }).await.unwrap();
    let listed = store.intents_versions(10).await.unwrap();
    assert_eq!(listed.iter().map(|v| v.number).collect::<Vec<_>>(), [2, 1], "newest first");
    assert_eq!(listed[0].accuracy, Some(measured), "the first measurement stays");
    assert_eq!(store.intents_versions(1).await.unwrap().len(), 1);
    let actions: Vec<AuditAction> = store.audit_entries(100).await.unwrap().into_iter().map(|e| e.action).collect();
    assert_eq!(actions.iter().filter(|a| **a == AuditAction::Intents).count(), 2);
}

async fn two_factor_codes_are_taken_once_and_a_sign_in_challenge_is_one_per_agent_until_it_ends(backend: Backend) {
    let (store, _db) = fresh(backend).await;
    let (ann, bo) = (agent("Ann", Presence::Online), agent("Bo", Presence::Online));
    store.save_agent(&ann).await.unwrap();
    store.save_agent(&bo).await.unwrap();
    assert!(!store.take_two_factor_step(ann.id, 5).await.unwrap(), "off: no code is taken");
    store.commit_admin(AdminWrite { two_factor: Some((ann.id, Some("JBSWY3DPEHPK3PXP".into()))), ..AdminWrite::default() }).await.unwrap();
    assert_eq!(store.two_factor_secret(ann.id).await.unwrap().as_deref(), Some("JBSWY3DPEHPK3PXP"));
    assert_eq!(store.two_factor_secret(bo.id).await.unwrap(), None);
    assert_eq!(store.two_factor_agents().await.unwrap(), vec![ann.id]);
    assert!(store.take_two_factor_step(ann.id, 5).await.unwrap());
    assert!(!store.take_two_factor_step(ann.id, 5).await.unwrap(), "the same code again");
    assert!(!store.take_two_factor_step(ann.id, 4).await.unwrap(), "an older code");
    assert!(store.take_two_factor_step(ann.id, 6).await.unwrap());

    let t0 = now();
    let open = |hash: &str| AdminWrite { sign_in_challenge: Some((hash.into(), ann.id, t0 + chrono::Duration::minutes(5))), ..AdminWrite::default() };
    store.commit_admin(open("first")).await.unwrap();
    assert_eq!(store.sign_in_challenge("first", t0).await.unwrap(), Some(ann.id));
    assert_eq!(store.sign_in_challenge("first", t0 + chrono::Duration::minutes(6)).await.unwrap(), None, "expired");
    assert_eq!(store.sign_in_challenge_failed("first").await.unwrap(), 1);
    assert_eq!(store.sign_in_challenge_failed("first").await.unwrap(), 2);
    store.commit_admin(open("second")).await.unwrap();
    assert_eq!(store.sign_in_challenge("first", t0).await.unwrap(), None, "a new sign-in replaces the agent's last challenge");
    assert_eq!(store.sign_in_challenge("second", t0).await.unwrap(), Some(ann.id));
    store.commit_admin(AdminWrite { end_sign_in_challenge: Some("second".into()), ..AdminWrite::default() }).await.unwrap();
    assert_eq!(store.sign_in_challenge("second", t0).await.unwrap(), None);

    store.commit_admin(AdminWrite { two_factor: Some((ann.id, None)), ..AdminWrite::default() }).await.unwrap();
    assert_eq!(store.two_factor_secret(ann.id).await.unwrap(), None);
    assert!(store.two_factor_agents().await.unwrap().is_empty());
    // On again: steps start afresh with the new secret.
    store.commit_admin(AdminWrite { two_factor: Some((ann.id, Some("GEZDGNBVGY3TQOJQ".into()))), ..AdminWrite::default() }).await.unwrap();
    assert!(store.take_two_factor_step(ann.id, 1).await.unwrap());
}

async fn a_password_link_is_used_once_before_it_expires_and_ends_the_sessions(backend: Backend) {
    use switchboard_core::ports::{PasswordReset, PasswordResetChange, StoreError};
    let (store, _db) = fresh(backend).await;
    let (ann, ada) = (agent("Ann", Presence::Online), agent("Ada", Presence::Online));
    store.save_agent(&ann).await.unwrap();
    store.save_agent(&ada).await.unwrap();
    let t0 = now();
    let reset = |hash: &str, expires_in: i64| PasswordReset {
        token_hash: hash.into(),
        agent: ann.id,
        created_by: Some(ada.id),
        created_at: t0,
        expires_at: t0 + chrono::Duration::hours(expires_in),
        used_at: None,
    };
    for (hash, hours) in [("fresh", 24), ("stale", 1)] {
        store.commit_admin(AdminWrite { password_reset: Some(PasswordResetChange::Create(reset(hash, hours))), ..AdminWrite::default() }).await.unwrap();
    }
    assert_eq!(store.password_reset("fresh").await.unwrap(), Some(reset("fresh", 24)));
    assert!(store.password_reset("unknown").await.unwrap().is_none());
    let session = SessionRecord { agent: ann.id, csrf: "c".into(), expires_at: t0 + chrono::Duration::days(1) };
    store.create_session("ann-session", &session).await.unwrap();
    let use_at = |hash: &str, at: Timestamp| AdminWrite {
        password_hash: Some((ann.id, format!("hash set with {hash}"))),
        password_reset: Some(PasswordResetChange::Use { token_hash: hash.into(), at }),
        end_sessions_of: Some(ann.id),
        audit: vec![AuditEntry { at, actor: Some(ann.id), action: AuditAction::UpdateAccount, conversation: None, subject_agent: None, before: None, after: Some(hash.into()) }],
        ..AdminWrite::default()
    };
    // Expired: refused whole, the password and the sessions as they were.
    let late = store.commit_admin(use_at("stale", t0 + chrono::Duration::hours(2))).await.unwrap_err();
    assert!(matches!(late, StoreError::Stale(_)), "{late:?}");
    assert!(store.session("ann-session", t0).await.unwrap().is_some());
    assert_ne!(store.password_hash(ann.id).await.unwrap().as_deref(), Some("hash set with stale"));
    store.commit_admin(use_at("fresh", t0 + chrono::Duration::hours(2))).await.unwrap();
    assert_eq!(store.password_hash(ann.id).await.unwrap().as_deref(), Some("hash set with fresh"));
    assert!(store.session("ann-session", t0).await.unwrap().is_none(), "the sessions ended");
    assert_eq!(store.password_reset("fresh").await.unwrap().unwrap().used_at, Some(t0 + chrono::Duration::hours(2)));
    assert!(matches!(store.commit_admin(use_at("fresh", t0 + chrono::Duration::hours(3))).await, Err(StoreError::Stale(_))), "used once");

    // The last sign-in of each agent, from the audit log.
    let signed_in = |who: AgentId, minutes: i64| AuditEntry {
        at: t0 + chrono::Duration::minutes(minutes),
        actor: Some(who),
        action: AuditAction::SignIn,
        conversation: None,
        subject_agent: None,
        before: None,
        after: None,
    };
    for entry in [signed_in(ann.id, 1), signed_in(ann.id, 5), signed_in(ada.id, 3)] {
        store.record_audit(&entry).await.unwrap();
    }
    let mut last = store.last_sign_ins().await.unwrap();
    last.sort_by_key(|(_, at)| *at);
    assert_eq!(last, [(ada.id, t0 + chrono::Duration::minutes(3)), (ann.id, t0 + chrono::Duration::minutes(5))]);
}

async fn settings_are_stored_replaced_and_reset_with_their_audit(backend: Backend) {
    let (store, _db) = fresh(backend).await;
    let t0 = now();
    let robin = agent("Robin", Presence::Online);
    store.save_agent(&robin).await.unwrap();
    assert!(store.stored_settings().await.unwrap().is_empty());
    let audit = |after: &str| AuditEntry {
        at: t0,
        actor: Some(robin.id),
        action: AuditAction::Settings,
        conversation: None,
        subject_agent: None,
        before: None,
        after: Some(after.to_string()),
    };
    let set = |changes: Vec<(&str, Option<&str>)>, at: Timestamp| AdminWrite {
        settings: changes.into_iter().map(|(k, v)| (k.to_string(), v.map(String::from))).collect(),
        settings_by: Some((robin.id, at)),
        audit: vec![audit("changed")],
        ..AdminWrite::default()
    };
    store.commit_admin(set(vec![("bot.low_confidence_threshold", Some("0.3")), ("bot.handoff_offline", Some("\"Back soon\""))], t0)).await.unwrap();
    let later = t0 + chrono::Duration::minutes(5);
    store.commit_admin(set(vec![("bot.low_confidence_threshold", Some("0.4"))], later)).await.unwrap();
    let stored = store.stored_settings().await.unwrap();
    assert_eq!(
        stored.iter().map(|s| (s.key.as_str(), s.value.as_str(), s.updated_by, s.updated_at)).collect::<Vec<_>>(),
        [("bot.handoff_offline", "\"Back soon\"", Some(robin.id), t0), ("bot.low_confidence_threshold", "0.4", Some(robin.id), later)],
        "by key, the second change replacing the first"
    );
    store.commit_admin(set(vec![("bot.handoff_offline", None)], later)).await.unwrap();
    assert_eq!(store.stored_settings().await.unwrap().len(), 1, "reset to the config file's");
    let audited = store.audit_entries(10).await.unwrap();
    assert_eq!(audited.iter().filter(|e| e.action == AuditAction::Settings).count(), 3, "each change audited in its transaction");
}

async fn webhook_events_are_queued_with_their_step_claimed_once_and_a_failing_webhook_turns_off_once(backend: Backend) {
    use switchboard_core::ports::{AttemptOutcome, Webhook, WebhookAttempt, WebhookChange, WebhookDeliveryState};
    use switchboard_models::{EventKind, NotificationKind, WebhookEvent};
    let (store, _db) = fresh(backend).await;
    let t0 = now();
    let mut admin = agent("Robin", Presence::Online);
    admin.role = Role::Admin;
    store.save_agent(&admin).await.unwrap();
    let hook = |id: &str, events: Vec<WebhookEvent>, active: bool| Webhook {
        id: id.into(),
        url: format!("http://127.0.0.1:9/{id}"),
        events,
        secret: "whsec_test".into(),
        active,
        description: String::new(),
        consecutive_failures: 0,
        disabled_reason: None,
        created_by: Some(admin.id),
        created_at: t0,
        updated_at: t0,
    };
    let add = |webhook: Webhook| AdminWrite { webhook: Some(WebhookChange::Save(webhook)), ..AdminWrite::default() };
    store.commit_admin(add(hook("messages", vec![WebhookEvent::MessageStored], true))).await.unwrap();
    store.commit_admin(add(hook("created", vec![WebhookEvent::ConversationCreated, WebhookEvent::RatingReceived], true))).await.unwrap();
    store.commit_admin(add(hook("off", vec![WebhookEvent::MessageStored, WebhookEvent::ConversationCreated], false))).await.unwrap();
    let listed = store.webhooks().await.unwrap();
    assert_eq!(listed.iter().map(|w| w.id.as_str()).collect::<Vec<_>>(), ["created", "messages", "off"]);
    assert_eq!(listed[0].events, [WebhookEvent::ConversationCreated, WebhookEvent::RatingReceived], "events round trip");

    // A step with a new conversation and two messages: each webhook gets only what it chose.
    let conversation = conversation(store.as_ref(), "hooked").await;
    let mut write = step_write(Some(message(&conversation, Sender::Customer, "hello", Some("h:1"))), vec![message(&conversation, Sender::Bot, "hi there", None)]);
    write.events = vec![switchboard_models::ConversationEvent {
        conversation_id: conversation.id,
        kind: EventKind::Created,
        at: t0,
        channel: Channel::WebChat,
        agent_id: None,
        category: None,
        priority: None,
        reason: None,
        wait_ms: None,
    }];
    let Committed::Stored { seqs } = store.commit(write).await.unwrap() else { panic!("stored") };
    let later = now() + chrono::Duration::seconds(1);
    let lease = later + chrono::Duration::seconds(60);
    let claimed = store.claim_webhook_deliveries(later, lease, 10).await.unwrap();
    let mut seen: Vec<(&str, WebhookEvent)> = claimed.iter().map(|d| (d.webhook_id.as_str(), d.event)).collect();
    seen.sort();
    assert_eq!(
        seen,
        [("created", WebhookEvent::ConversationCreated), ("messages", WebhookEvent::MessageStored), ("messages", WebhookEvent::MessageStored)],
        "nothing for the webhook that is off"
    );
    let customer: serde_json::Value = serde_json::from_str(&claimed.iter().find(|d| d.payload.contains("hello")).unwrap().payload).unwrap();
    assert_eq!(customer["type"], "message.stored");
    assert_eq!(customer["data"]["message"]["seq"], seqs[0], "the stored message's number");
    assert_eq!(customer["data"]["message"]["sender"], "customer");
    assert!(store.claim_webhook_deliveries(later, lease, 10).await.unwrap().is_empty(), "leased: claimed once");

    // A refused step queues nothing.
    let duplicate = step_write(Some(message(&conversation, Sender::Customer, "hello again", Some("h:1"))), vec![]);
    assert_eq!(store.commit(duplicate).await.unwrap(), Committed::Duplicate);
    let after_lease = lease + chrono::Duration::seconds(1);
    assert_eq!(store.claim_webhook_deliveries(after_lease, after_lease + chrono::Duration::seconds(60), 10).await.unwrap().len(), 3, "a lapsed lease is claimed again; no more were queued");

    // Delivered, retried, given up; failures in a row counted per webhook.
    let messages: Vec<_> = claimed.iter().filter(|d| d.webhook_id == "messages").collect();
    let attempt = |delivery: i64, error: Option<&str>, outcome| WebhookAttempt {
        delivery,
        webhook: "messages".into(),
        at: later,
        status: Some(if error.is_some() { 500 } else { 200 }),
        response: Some("ok".into()),
        error: error.map(String::from),
        outcome,
    };
    let retry_at = later + chrono::Duration::seconds(10);
    assert_eq!(store.record_webhook_attempt(&attempt(messages[0].id, Some("HTTP 500"), AttemptOutcome::RetryAt(retry_at))).await.unwrap(), 1);
    assert_eq!(store.record_webhook_attempt(&attempt(messages[1].id, Some("HTTP 500"), AttemptOutcome::GaveUp)).await.unwrap(), 2);
    let log = store.webhook_deliveries("messages", None, 10).await.unwrap();
    assert_eq!(log.iter().map(|d| (d.id, d.state, d.attempts)).collect::<Vec<_>>(), [
        (messages[1].id, WebhookDeliveryState::Failed, 1),
        (messages[0].id, WebhookDeliveryState::Pending, 1),
    ], "newest first");
    assert_eq!((log[1].next_attempt_at, log[1].last_status, log[1].last_error.as_deref()), (retry_at, Some(500), Some("HTTP 500")));
    assert_eq!(store.webhook_deliveries("messages", Some(messages[1].id), 10).await.unwrap().len(), 1, "paged back");
    assert!(store.retry_webhook_delivery("messages", messages[1].id, later).await.unwrap(), "a given-up delivery is sent again");
    assert!(!store.retry_webhook_delivery("messages", messages[1].id, later).await.unwrap(), "not while pending");
    assert!(!store.retry_webhook_delivery("created", messages[1].id, later).await.unwrap(), "only through its own webhook");
    assert_eq!(store.record_webhook_attempt(&attempt(messages[1].id, None, AttemptOutcome::Delivered)).await.unwrap(), 0, "a success ends the run of failures");

    // Turned off once, with one notice per admin; its deliveries then wait, and a test event
    // goes only to the webhook it names.
    assert!(store.turn_off_webhook("messages", "failing", "The webhook was turned off.", later).await.unwrap());
    assert!(!store.turn_off_webhook("messages", "failing", "The webhook was turned off.", later).await.unwrap(), "once");
    let notices = store.notifications_of(admin.id, None, 10).await.unwrap();
    assert_eq!(notices.iter().filter(|n| n.kind == NotificationKind::WebhookDisabled).count(), 1);
    let far = retry_at + chrono::Duration::hours(1);
    assert!(store.claim_webhook_deliveries(far, far, 10).await.unwrap().iter().all(|d| d.webhook_id != "messages"), "an off webhook's deliveries wait");
    let ping = switchboard_core::webhooks::QueuedEvent::new(WebhookEvent::Ping, later, serde_json::json!({}));
    store.queue_webhook_event("created", &ping, later).await.unwrap();
    let mut back_on = store.webhooks().await.unwrap().into_iter().find(|w| w.id == "messages").unwrap();
    assert_eq!((back_on.active, back_on.disabled_reason.as_deref()), (false, Some("failing")));
    back_on.active = true;
    store.commit_admin(add(back_on)).await.unwrap();
    let again = store.webhooks().await.unwrap().into_iter().find(|w| w.id == "messages").unwrap();
    assert_eq!((again.active, again.disabled_reason, again.consecutive_failures), (true, None, 0), "on again, its failures forgotten");
    let due = store.claim_webhook_deliveries(far, far, 10).await.unwrap();
    assert!(due.iter().any(|d| d.webhook_id == "messages" && d.id == messages[0].id), "the waiting delivery goes out once it is on");
    assert_eq!(due.iter().filter(|d| d.event == WebhookEvent::Ping).map(|d| d.webhook_id.as_str()).collect::<Vec<_>>(), ["created"]);

    store.commit_admin(AdminWrite { webhook: Some(WebhookChange::Delete("messages".into())), ..AdminWrite::default() }).await.unwrap();
    assert!(store.webhook_deliveries("messages", None, 10).await.unwrap().is_empty(), "deleted with its log");
}

async fn inbound_events_set_aside_are_kept_with_a_notice_and_settled_once(backend: Backend) {
    use switchboard_core::ports::{DeadLetterState, NewDeadLetter};
    use switchboard_models::NotificationKind;
    let (store, _db) = fresh(backend).await;
    let t0 = now();
    let mut admin = agent("Robin", Presence::Online);
    admin.role = Role::Admin;
    store.save_agent(&admin).await.unwrap();
    let letter = |external_id: &str, payload: &[u8], attempts: u32| NewDeadLetter {
        channel: Channel::Email,
        external_id: external_id.into(),
        payload: payload.to_vec(),
        error: "the attachment could not be kept".into(),
        attempts,
        first_failed_at: t0,
        last_failed_at: t0 + chrono::Duration::seconds(30),
    };
    // Bytes that are not UTF-8 (a mail in Latin-1) round trip exactly.
    let raw = b"Subject: caf\xe9\r\n\r\nbody".to_vec();
    let first = store.keep_dead_letter(&letter("<a@example.com>", &raw, 8), "A mail was set aside.").await.unwrap();
    let second = store.keep_dead_letter(&letter("<b@example.com>", b"two", 8), "A mail was set aside.").await.unwrap();
    let kept = store.dead_letter(first).await.unwrap().unwrap();
    assert_eq!((kept.letter.payload.as_slice(), kept.letter.attempts, kept.state), (raw.as_slice(), 8, DeadLetterState::Dead));
    assert_eq!(kept.letter, letter("<a@example.com>", &raw, 8));
    assert_eq!(store.dead_letters(false, 10).await.unwrap().iter().map(|l| l.id).collect::<Vec<_>>(), [second, first], "newest first");
    let notices = store.notifications_of(admin.id, None, 10).await.unwrap();
    assert_eq!(notices.iter().filter(|n| n.kind == NotificationKind::InboundFailed).count(), 2);

    assert!(store.settle_dead_letter(first, DeadLetterState::Replayed, admin.id, t0).await.unwrap());
    assert!(!store.settle_dead_letter(first, DeadLetterState::Dismissed, admin.id, t0).await.unwrap(), "settled once");
    assert_eq!(store.dead_letters(false, 10).await.unwrap().len(), 1, "only what waits");
    assert_eq!(store.dead_letters(true, 10).await.unwrap().len(), 2, "settled ones too");
    let settled = store.dead_letter(first).await.unwrap().unwrap();
    assert_eq!((settled.state, settled.settled_by, settled.settled_at), (DeadLetterState::Replayed, Some(admin.id), Some(t0)));

    // Failing again after a replay: the same row, waiting again, its attempts added up.
    let again = store.keep_dead_letter(&letter("<a@example.com>", &raw, 2), "A mail was set aside again.").await.unwrap();
    assert_eq!(again, first);
    let waiting = store.dead_letter(first).await.unwrap().unwrap();
    assert_eq!((waiting.state, waiting.letter.attempts, waiting.settled_by), (DeadLetterState::Dead, 10, None));
    assert!(store.dead_letter(first + 1000).await.unwrap().is_none());
}

async fn an_escalation_wanting_a_summary_is_kept_with_its_step_and_claimed_once(backend: Backend) {
    let (store, _db) = fresh(backend).await;
    let conversation = conversation(store.as_ref(), "summarised").await;
    let escalation = |wants_summary: bool| StepWrite {
        escalation: Some(switchboard_models::EscalationRecord {
            conversation_id: conversation.id,
            at: now(),
            reason: switchboard_models::EscalationReason::HumanRequested,
            confidence: None,
            priority: None,
            category: None,
        }),
        wants_summary,
        ..StepWrite::default()
    };
    store.commit(escalation(false)).await.unwrap();
    let t = now() + chrono::Duration::seconds(1);
    assert!(store.claim_wanted_summaries(t, t + chrono::Duration::seconds(30), 10).await.unwrap().is_empty(), "not wanted without an LLM");
    store.commit(escalation(true)).await.unwrap();
    assert_eq!(store.claim_wanted_summaries(t, t + chrono::Duration::seconds(30), 10).await.unwrap(), [(conversation.id, 0)]);
    assert!(store.claim_wanted_summaries(t, t + chrono::Duration::seconds(30), 10).await.unwrap().is_empty(), "leased: claimed once");
    let later = t + chrono::Duration::seconds(31);
    assert_eq!(store.claim_wanted_summaries(later, later + chrono::Duration::seconds(30), 10).await.unwrap().len(), 1, "a lapsed lease is claimed again");
    store.summary_done(conversation.id, Some(later + chrono::Duration::seconds(60))).await.unwrap();
    let retry = later + chrono::Duration::seconds(61);
    assert_eq!(store.claim_wanted_summaries(retry, retry, 10).await.unwrap(), [(conversation.id, 1)], "tried again then, counted");
    store.summary_done(conversation.id, None).await.unwrap();
    let far = retry + chrono::Duration::hours(1);
    assert!(store.claim_wanted_summaries(far, far, 10).await.unwrap().is_empty(), "done");
}
