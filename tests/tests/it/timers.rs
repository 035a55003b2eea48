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

/// Fires the due timers and waits until `done` holds. The server's own worker may be firing the
/// same timer, so the test waits for the conversation's change event, whoever fired it; the
/// state is read after subscribing, so a change committed before that is seen too.
async fn fire_until<F, Fut>(server: &TestServer, what: &str, done: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let mut events = server.engine().bus().subscribe();
    server.engine().fire_due_timers().await.unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !done().await {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(error)) => panic!("the event bus closed while waiting for {what}: {error}"),
            Err(_) => panic!("{what} did not happen"),
        }
    }
}

async fn status(server: &TestServer, id: ConversationId) -> Status {
    server.engine().store().conversation(id).await.unwrap().unwrap().status
}

/// No timer of any conversation is due now, so none can fire (claiming with a lease ending now
/// leaves them free for the server's worker).
async fn nothing_due(server: &TestServer) -> bool {
    let now = server.engine().now();
    server.engine().store().claim_due_timers(now, now, 100).await.unwrap().is_empty()
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
    assert!(nothing_due(&server).await, "nothing is due before 48 hours");
    clock.advance(hour * 2);
    fire_until(&server, "the reminder", || async { bot_texts(&server, id).await.contains(&reminder) }).await;
    assert_eq!(server.engine().store().conversation(id).await.unwrap().unwrap().status, Status::WaitingOnCustomer);
    assert_eq!(timers(&server, id).await, [(TimerKind::ResolveWaiting, (120 - 49) * 60)], "the resolution keeps its time");

    // The timer outlives a restart, and one missed while stopped fires after the start.
    server.stop().await;
    clock.advance(hour * 72);
    server.start_again().await;
    fire_until(&server, "the resolution", || async { status(&server, id).await == Status::Resolved }).await;
    assert_eq!(timers(&server, id).await, [(TimerKind::CloseResolved, 168 * 60)]);
    assert!(nothing_due(&server).await, "the fired timers are gone: nothing more fires until the close");
    let texts = bot_texts(&server, id).await;
    assert_eq!(texts.iter().filter(|t| **t == reminder).count(), 1, "reminded once: {texts:?}");
    assert_eq!(texts.iter().filter(|t| **t == resolved_notice).count(), 1, "told once: {texts:?}");
    let audit = server.engine().store().audit_page(None, 50).await.unwrap();
    assert!(audit.iter().any(|(_, e)| e.conversation == Some(id) && e.actor.is_none() && e.after.as_deref().is_some_and(|a| a.contains("status resolved") && a.contains("resolve_waiting came due"))));

    clock.advance(hour * 169);
    fire_until(&server, "the close", || async { status(&server, id).await == Status::Closed }).await;
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
    assert!(nothing_due(&server).await, "no resolution is due, 130 hours after the agent wrote");

    // A conversation only the bot handled closes a day after its last message.
    let chat = engine.handle(from_customer("idle", 1, "hello", engine.now())).await.unwrap();
    let chat_id = chat.conversation.id;
    assert_eq!(timers(&server, chat_id).await, [(TimerKind::CloseIdleBot, 24 * 60)]);
    clock.advance(hour * 23);
    engine.handle(from_customer("idle", 2, "thanks", engine.now())).await.unwrap();
    assert_eq!(timers(&server, chat_id).await, [(TimerKind::CloseIdleBot, 60)], "a message does not rewrite the timer");
    // It comes due an hour later, finds the chat went on, and moves to a day after the last message.
    clock.advance(hour * 2);
    let overdue = [(TimerKind::CloseIdleBot, -60)];
    fire_until(&server, "the idle timer moving", || async { timers(&server, chat_id).await != overdue }).await;
    assert_eq!(timers(&server, chat_id).await, [(TimerKind::CloseIdleBot, 22 * 60)], "a day after the last message");
    assert_ne!(status(&server, chat_id).await, Status::Closed);
    clock.advance(hour * 23);
    fire_until(&server, "the idle close", || async { status(&server, chat_id).await == Status::Closed }).await;
    assert!(bot_texts(&server, chat_id).await.iter().all(|t| !t.contains("heard back")), "closing an idle chat says nothing");
}
