//! Time passing: conversations left quiet are reminded, resolved and closed by timers written
//! with the step that set them; the timers survive a restart and each fires once. The engine's
//! clock is moved, never slept on.

use std::sync::Arc;
use switchboard_core::ports::ManualClock;
use switchboard_core::timers::TimerKind;
use switchboard_models::{Channel, ConversationId, Inbound, Sender, Status, Thread};
use switchboard_tests::TestServer;

/// Now, in whole milliseconds as the store keeps instants, so due times compare exactly.
fn start() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(chrono::Utc::now().timestamp_millis()).unwrap()
}

fn from_customer(visitor: &str, n: u32, text: &str, at: chrono::DateTime<chrono::Utc>) -> Inbound {
    Inbound {
        channel: Channel::WebChat,
        external_id: format!("{visitor}:{n}"),
        sender_external_id: visitor.into(),
        sender_name: Some("Ida".into()),
        text: text.into(),
        attachments: Vec::new(),
        original: None,
        thread: Thread::Current,
        received_at: at,
    }
}

/// Fires due timers until `done` holds: the server's own worker may be firing the same ones,
/// so the test waits for the outcome, not for its own call to fire them.
async fn fire_until(server: &TestServer, id: ConversationId, what: &str, done: impl Fn(Status, &[String]) -> bool) {
    for _ in 0..200 {
        server.engine().fire_due_timers().await.unwrap();
        let status = server.engine().store().conversation(id).await.unwrap().unwrap().status;
        if done(status, &bot_texts(server, id).await) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{what} did not happen");
}

async fn bot_texts(server: &TestServer, id: ConversationId) -> Vec<String> {
    let messages = server.engine().store().conversation_messages(id, 0, 1000).await.unwrap();
    messages.into_iter().filter(|m| m.sender == Sender::Bot).map(|m| m.text).collect()
}

async fn timers(server: &TestServer, id: ConversationId) -> Vec<(TimerKind, i64)> {
    let start = server.engine().now();
    let timers = server.engine().store().timers_of(id).await.unwrap();
    timers.into_iter().map(|t| (t.kind, (t.due_at - start).num_minutes())).collect()
}

#[tokio::test]
async fn a_conversation_waiting_on_the_customer_is_reminded_then_resolved_then_closed_once_each() {
    let clock = Arc::new(ManualClock::new(start()));
    let mut server = TestServer::start_with_clock(clock.clone(), |_| {}).await;
    let agent = server.add_agent("Ann", "ann@example.com").await;
    let hour = chrono::Duration::hours(1);
    let engine = server.engine();
    let asked = engine.handle(from_customer("quiet", 1, "I want to talk to a person", engine.now())).await.unwrap();
    let id = asked.conversation.id;
    engine.agent_reply(id, agent, "Restart the router, then tell me if it works.".into(), Vec::new()).await.unwrap();
    assert_eq!(timers(&server, id).await, [(TimerKind::RemindWaiting, 48 * 60), (TimerKind::ResolveWaiting, 120 * 60)]);
    let reminder = server.config.bot.waiting_reminder.clone();
    let resolved_notice = server.config.bot.waiting_resolved.clone();

    clock.advance(hour * 47);
    assert_eq!(server.engine().fire_due_timers().await.unwrap(), 0, "nothing is due before 48 hours");
    clock.advance(hour * 2);
    fire_until(&server, id, "the reminder", |_, texts| texts.contains(&reminder)).await;
    assert_eq!(server.engine().store().conversation(id).await.unwrap().unwrap().status, Status::WaitingOnCustomer);
    assert_eq!(timers(&server, id).await, [(TimerKind::ResolveWaiting, (120 - 49) * 60)], "the resolution keeps its time");

    // The timer outlives a restart, and one missed while stopped fires after the start.
    server.stop().await;
    clock.advance(hour * 72);
    server.start_again().await;
    fire_until(&server, id, "the resolution", |status, _| status == Status::Resolved).await;
    assert_eq!(timers(&server, id).await, [(TimerKind::CloseResolved, 168 * 60)]);
    for _ in 0..3 {
        server.engine().fire_due_timers().await.unwrap();
    }
    let texts = bot_texts(&server, id).await;
    assert_eq!(texts.iter().filter(|t| **t == reminder).count(), 1, "reminded once: {texts:?}");
    assert_eq!(texts.iter().filter(|t| **t == resolved_notice).count(), 1, "told once: {texts:?}");
    let audit = server.engine().store().audit_page(None, 50).await.unwrap();
    assert!(audit.iter().any(|(_, e)| e.conversation == Some(id) && e.actor.is_none() && e.after.as_deref().is_some_and(|a| a.contains("status resolved") && a.contains("resolve_waiting came due"))));

    clock.advance(hour * 169);
    fire_until(&server, id, "the close", |status, _| status == Status::Closed).await;
    assert!(timers(&server, id).await.is_empty());
}

#[tokio::test]
async fn a_customer_who_writes_again_stops_the_clock_and_an_idle_bot_conversation_closes() {
    let clock = Arc::new(ManualClock::new(start()));
    let server = TestServer::start_with_clock(clock.clone(), |c| c.bot.remind_waiting_after_hours = 0).await;
    let agent = server.add_agent("Ann", "ann@example.com").await;
    let hour = chrono::Duration::hours(1);
    let engine = server.engine();

    // Waiting on the customer, who answers: no timer runs while an agent has the next move.
    let asked = engine.handle(from_customer("back", 1, "I want to talk to a person", engine.now())).await.unwrap();
    let id = asked.conversation.id;
    engine.agent_reply(id, agent, "Which plan are you on?".into(), Vec::new()).await.unwrap();
    assert_eq!(timers(&server, id).await, [(TimerKind::ResolveWaiting, 120 * 60)], "the reminder is turned off");
    clock.advance(hour * 100);
    engine.handle(from_customer("back", 2, "The family plan", engine.now())).await.unwrap();
    assert!(timers(&server, id).await.is_empty());
    clock.advance(hour * 30);
    server.engine().fire_due_timers().await.unwrap();
    assert_ne!(server.engine().store().conversation(id).await.unwrap().unwrap().status, Status::Resolved);

    // A conversation only the bot handled closes a day after its last message.
    let chat = engine.handle(from_customer("idle", 1, "hello", engine.now())).await.unwrap();
    let chat_id = chat.conversation.id;
    assert_eq!(timers(&server, chat_id).await, [(TimerKind::CloseIdleBot, 24 * 60)]);
    clock.advance(hour * 23);
    engine.handle(from_customer("idle", 2, "thanks", engine.now())).await.unwrap();
    assert_eq!(timers(&server, chat_id).await, [(TimerKind::CloseIdleBot, 60)], "a message does not rewrite the timer");
    // It comes due an hour later, finds the chat went on, and moves to a day after the last message.
    clock.advance(hour * 2);
    let mut moved = Vec::new();
    for _ in 0..200 {
        server.engine().fire_due_timers().await.unwrap();
        moved = timers(&server, chat_id).await;
        if moved != [(TimerKind::CloseIdleBot, -60)] {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(moved, [(TimerKind::CloseIdleBot, 22 * 60)], "a day after the last message");
    assert_ne!(server.engine().store().conversation(chat_id).await.unwrap().unwrap().status, Status::Closed);
    clock.advance(hour * 23);
    fire_until(&server, chat_id, "the idle close", |status, _| status == Status::Closed).await;
    assert!(bot_texts(&server, chat_id).await.iter().all(|t| !t.contains("heard back")), "closing an idle chat says nothing");
}
