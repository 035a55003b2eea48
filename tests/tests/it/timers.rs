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

fn texts(outcome: &switchboard_core::HandleOutcome) -> Vec<String> {
    outcome.replies.iter().map(|m| m.text.clone()).collect()
}

#[tokio::test]
async fn a_customer_writing_while_queued_is_told_their_place_and_wait_at_most_every_interval() {
    let clock = Arc::new(ManualClock::new(start()));
    let server = TestServer::start_with_clock(clock.clone(), |config| config.bot.waiting_notice_minutes = 10).await;
    let engine = server.engine();
    let minutes = chrono::Duration::minutes;

    // An earlier customer waited 12 minutes for Ann's first reply; Ann then stepped away, so
    // nobody takes the next conversations.
    let earlier = engine.handle(from_customer("earlier", 1, "I want to talk to a person", engine.now())).await.unwrap();
    clock.advance(minutes(12));
    let ann = server.add_agent("Ann", "ann@example.com").await;
    engine.agent_reply(earlier.conversation.id, ann, "Hi, Ann here.".into(), Vec::new()).await.unwrap();
    engine.set_presence(ann, switchboard_models::Presence::Away).await.unwrap();

    let first = engine.handle(from_customer("first", 1, "I want to talk to a person", engine.now())).await.unwrap();
    let second = engine.handle(from_customer("second", 1, "I want to talk to a person", engine.now())).await.unwrap();
    assert_eq!(second.conversation.handler, switchboard_models::Handler::Queue, "nobody online takes it");
    assert_eq!(first.replies.len(), 1, "the handoff");

    let again = engine.handle(from_customer("second", 2, "hello?", engine.now())).await.unwrap();
    assert!(again.replies.is_empty(), "the handoff just said where they are: {:?}", texts(&again));

    clock.advance(minutes(11));
    let told = engine.handle(from_customer("second", 3, "anyone there?", engine.now())).await.unwrap();
    assert_eq!(
        texts(&told),
        ["Thanks, your message is with the team. You're number 2 in the queue; the expected wait is about 12 minutes."],
        "behind the first customer; recent customers waited 12 minutes"
    );
    let once = engine.handle(from_customer("second", 4, "still here", engine.now())).await.unwrap();
    assert!(once.replies.is_empty(), "at most once per interval: {:?}", texts(&once));
    let stored = server.engine().store().conversation(second.conversation.id).await.unwrap().unwrap();
    assert_eq!(stored.waiting_notice_at, Some(engine.now()), "the notice time is stored with the step");
}

#[tokio::test]
async fn outside_business_hours_the_handoff_and_the_widget_say_when_the_team_is_back() {
    // Saturday 5 December 2026, 13:00 in Berlin.
    let saturday = chrono::DateTime::parse_from_rfc3339("2026-12-05T12:00:00Z").unwrap().with_timezone(&chrono::Utc);
    let clock = Arc::new(ManualClock::new(saturday));
    let server = TestServer::start_with_clock(clock.clone(), |config| {
        let hours = &mut config.business_hours;
        hours.time_zone = "Europe/Berlin".into();
        for day in [&mut hours.monday, &mut hours.tuesday, &mut hours.wednesday, &mut hours.thursday, &mut hours.friday] {
            *day = "09:00-17:00".into();
        }
        hours.outside_hours = "ask_email".into();
    })
    .await;
    let engine = server.engine();
    let handed = engine.handle(from_customer("weekend", 1, "I want to talk to a person", engine.now())).await.unwrap();
    assert_eq!(
        texts(&handed),
        ["I've handed your conversation to our team. We're closed right now and back Monday 09:00 CET; an agent will reply here then. \
          If you'd like our answer by email instead, write your email address here."]
    );
    let config: serde_json::Value = reqwest::get(server.url("/webchat/config")).await.unwrap().json().await.unwrap();
    assert_eq!(config["hours"]["open"], false);
    assert_eq!(config["hours"]["next_open"], "Monday 09:00 CET");
    assert_eq!(config["hours"]["next_open_at"], "2026-12-07T08:00:00Z");
    assert_eq!(config["hours"]["schedule"], "Monday–Friday 09:00–17:00 (Europe/Berlin)");

    clock.advance(chrono::Duration::minutes(30));
    let waiting = engine.handle(from_customer("weekend", 2, "ok, thanks", engine.now())).await.unwrap();
    assert_eq!(
        texts(&waiting),
        ["Thanks, your message is with the team. You're number 1 in the queue; we're closed right now and back Monday 09:00 CET."]
    );

    // Monday 09:30: open, and the widget says so.
    clock.advance(chrono::Duration::hours(44));
    let config: serde_json::Value = reqwest::get(server.url("/webchat/config")).await.unwrap().json().await.unwrap();
    assert_eq!(config["hours"]["open"], true);

    // Ann answers the weekend's customer after some 45 hours, then steps away. That wait began
    // while the team was closed, so it says nothing of Monday's waits.
    let ann = server.add_agent("Ann", "ann@example.com").await;
    engine.agent_reply(handed.conversation.id, ann, "Good morning!".into(), Vec::new()).await.unwrap();
    engine.set_presence(ann, switchboard_models::Presence::Away).await.unwrap();
    let monday = engine.handle(from_customer("monday", 1, "I want to talk to a person", engine.now())).await.unwrap();
    assert!(texts(&monday)[0].contains("Nobody is online right now"), "open, but Ann is away: {:?}", texts(&monday));
    clock.advance(chrono::Duration::minutes(11));
    let waiting = engine.handle(from_customer("monday", 2, "hello?", engine.now())).await.unwrap();
    assert_eq!(texts(&waiting), ["Thanks, your message is with the team. You're number 1 in the queue; the expected wait is not known yet."]);
}
