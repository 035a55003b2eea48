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
        reported_language: None,
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
    // The quiet-conversation timers alone (SLA timers have their own test).
    let mut server = TestServer::start_with_clock(clock.clone(), |config| config.sla.enabled = false).await;
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
    let server = TestServer::start_with_clock(clock.clone(), |c| {
        c.bot.remind_waiting_after_hours = 0;
        c.sla.enabled = false;
    })
    .await;
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
    // The address the customer leaves is kept on their contact, confirmed, and shown to agents.
    let left = engine.handle(from_customer("weekend", 3, "sure, it's Ida.Berg@Example.com.", engine.now())).await.unwrap();
    assert_eq!(texts(&left), ["Thanks, we've noted ida.berg@example.com. The team will get back to you as soon as they're back."]);
    let contact = engine.store().contact(handed.conversation.contact_id).await.unwrap().unwrap();
    assert_eq!(contact.email.as_deref(), Some("ida.berg@example.com"));

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
    // Handed over while open, nobody asked for an address: one in a message is just text.
    let mentioned = engine.handle(from_customer("monday", 3, "my login is bob@example.com", engine.now())).await.unwrap();
    assert!(texts(&mentioned).is_empty(), "{:?}", texts(&mentioned));
    assert_eq!(engine.store().contact(monday.conversation.contact_id).await.unwrap().unwrap().email, None);
    // Agents see the address the weekend's customer left.
    let password = "a long enough password";
    switchboard_admin_web::accounts::create_account(engine.accounts(), "lee@example.com", "Lee", switchboard_models::Role::Agent, password, None)
        .await
        .unwrap();
    let panel = switchboard_tests::panel::PanelClient::sign_in(&server.url(""), "lee@example.com", password).await;
    let page = panel.get(&format!("/panel/conversations/{}", handed.conversation.id)).await.body;
    assert!(page.contains("href=\"mailto:ida.berg@example.com\""), "the agent sees where to write");
    let token = panel.new_api_token("reports").await;
    let detail: serde_json::Value = reqwest::Client::new()
        .get(server.url(&format!("/api/conversations/{}", handed.conversation.id)))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(detail["customer"]["email"], "ida.berg@example.com");
}

async fn notices_of(server: &TestServer, agent: switchboard_models::AgentId) -> Vec<(switchboard_models::NotificationKind, String)> {
    let all = server.engine().notifications().notifications_of(agent, None, 100).await.unwrap();
    all.into_iter().rev().map(|n| (n.kind, n.text)).collect()
}

#[tokio::test]
async fn sla_clocks_warn_then_breach_once_across_a_restart_and_a_first_reply_stops_its_clock() {
    use switchboard_models::NotificationKind::{Assigned, SlaBreach, SlaWarning};
    let clock = Arc::new(ManualClock::new(start()));
    let mut server = TestServer::start_with_clock(clock.clone(), |config| {
        config.sla.on_breach = "raise_priority".into();
        config.sla.high = switchboard::config::SlaTargetConfig { first_reply_minutes: 60, resolution_hours: 8 };
    })
    .await;
    let minutes = chrono::Duration::minutes;
    let root = server.add_agent("Root", "root@example.com").await;
    let mut admin = server.engine().store().agent(root).await.unwrap().unwrap();
    admin.role = switchboard_models::Role::Admin;
    admin.presence = switchboard_models::Presence::Away;
    server.engine().store().save_agent(&admin).await.unwrap();

    // Nobody is online: the conversation waits in the queue with its clocks running.
    let engine = server.engine();
    let asked = engine.handle(from_customer("sla", 1, "I want to talk to a person", engine.now())).await.unwrap();
    let id = asked.conversation.id;
    engine.change_ticket(id, root, switchboard_core::TicketChange::Priority(switchboard_models::Priority::High), None).await.unwrap();
    let c = engine.store().conversation(id).await.unwrap().unwrap();
    let escalated_at = c.escalation.as_ref().unwrap().at;
    assert_eq!(c.first_reply_due_at, Some(escalated_at + minutes(60)), "an hour for a high priority's first reply");
    assert_eq!(c.resolution_due_at, Some(escalated_at + minutes(8 * 60)));
    assert_eq!(
        timers(&server, id).await,
        [(TimerKind::FirstReplyWarning, 30), (TimerKind::FirstReplyBreach, 60), (TimerKind::ResolutionWarning, 8 * 60 - 30), (TimerKind::ResolutionBreach, 8 * 60)]
    );

    // Queued: the warning goes to the admins.
    clock.advance(minutes(31));
    fire_until(&server, "the first-reply warning", || async { !notices_of(&server, root).await.is_empty() }).await;
    assert_eq!(notices_of(&server, root).await, [(SlaWarning, "First reply due in 29 min, priority high.".to_string())]);

    // The breach comes due while the server is down: it fires once after the start, raises
    // the priority as configured, and is audited.
    server.stop().await;
    clock.advance(minutes(40));
    server.start_again().await;
    fire_until(&server, "the first-reply breach", || async { notices_of(&server, root).await.len() == 2 }).await;
    let breach = &notices_of(&server, root).await[1];
    assert_eq!(breach.0, SlaBreach);
    assert!(breach.1.starts_with("First reply overdue since ") && breach.1.ends_with(", priority high. Raised to urgent."), "{breach:?}");
    let c = server.engine().store().conversation(id).await.unwrap().unwrap();
    assert_eq!(c.priority, Some(switchboard_models::Priority::Urgent));
    server.engine().fire_due_timers().await.unwrap();
    assert_eq!(notices_of(&server, root).await.len(), 2, "announced once");
    let audit = server.engine().store().audit_page(None, 50).await.unwrap();
    assert!(audit.iter().any(|(_, e)| e.conversation == Some(id) && e.after.as_deref().is_some_and(|a| a.contains("first_reply_breach came due"))));

    // Ann takes it and replies: the first reply's clock stops; the resolution's runs on.
    let ann = server.add_agent("Ann", "ann@example.com").await;
    server.engine().change_ticket(id, root, switchboard_core::TicketChange::Assign(ann), None).await.unwrap();
    assert_eq!(notices_of(&server, ann).await.first().map(|n| n.0), Some(Assigned), "given by someone else: Ann is told");
    server.engine().agent_reply(id, ann, "Hi, Ann here.".into(), Vec::new()).await.unwrap();
    let c = server.engine().store().conversation(id).await.unwrap().unwrap();
    assert_eq!(c.first_reply_due_at, None);
    let kinds: Vec<TimerKind> = timers(&server, id).await.into_iter().map(|(k, _)| k).collect();
    assert_eq!(kinds, [TimerKind::ResolutionWarning, TimerKind::ResolutionBreach, TimerKind::RemindWaiting, TimerKind::ResolveWaiting]);
    // The resolution warning goes to the assignee now.
    clock.advance(minutes(8 * 60 - 71 - 20));
    fire_until(&server, "the resolution warning", || async { notices_of(&server, ann).await.iter().any(|n| n.0 == SlaWarning) }).await;
    // Resolved in time: no breach is due any more.
    server.engine().change_ticket(id, ann, switchboard_core::TicketChange::Status(Status::Resolved), None).await.unwrap();
    assert!(!timers(&server, id).await.iter().any(|(k, _)| *k == TimerKind::ResolutionBreach));
    assert_eq!(server.engine().store().conversation(id).await.unwrap().unwrap().resolution_due_at, None);
}

#[tokio::test]
async fn a_customer_writing_to_an_assigned_agent_and_a_mention_in_a_note_notify_that_agent() {
    use switchboard_models::NotificationKind::{CustomerReplied, Mentioned};
    let server = TestServer::start_with(|config| config.sla.enabled = false).await;
    let ann = server.add_agent("Ann Lee", "ann@example.com").await;
    let password = "a long enough password";
    let bob = switchboard_admin_web::accounts::create_account(server.engine().accounts(), "bob@example.com", "Bob", switchboard_models::Role::Agent, password, None)
        .await
        .unwrap()
        .id;
    let engine = server.engine();
    // Away, so nothing is given to them automatically.
    for agent in [ann, bob] {
        engine.set_presence(agent, switchboard_models::Presence::Away).await.unwrap();
    }
    let asked = engine.handle(from_customer("notes", 1, "I want to talk to a person", engine.now())).await.unwrap();
    let id = asked.conversation.id;
    engine.change_ticket(id, ann, switchboard_core::TicketChange::Take, None).await.unwrap();
    assert!(notices_of(&server, ann).await.is_empty(), "taking it yourself tells you nothing");
    engine.handle(from_customer("notes", 2, "my order 4411 never arrived", engine.now())).await.unwrap();
    assert_eq!(notices_of(&server, ann).await, [(CustomerReplied, "my order 4411 never arrived".to_string())]);
    engine.add_note(id, ann, "@bob could you check the courier? cc ann@example.com".into()).await.unwrap();
    assert_eq!(notices_of(&server, bob).await, [(Mentioned, "Ann Lee mentioned you: @bob could you check the courier? cc ann@example.com".to_string())]);
    assert_eq!(notices_of(&server, ann).await.len(), 1, "no mention of yourself, nor an email address");

    // Bob's lists mark the conversation he was mentioned in, until he opens it.
    let panel = switchboard_tests::panel::PanelClient::sign_in(&server.url(""), "bob@example.com", password).await;
    let list = panel.get("/panel/conversations").await.body;
    let row = list.split("data-test=\"conversation-row\"").find(|row| row.starts_with(&format!(" data-id=\"{id}\""))).expect("the row");
    assert!(row.contains("data-test=\"row-unread\">1 new<"), "{row}");
    assert_eq!(list.matches("data-test=\"row-unread\"").count(), 1, "only that row");
    panel.get(&format!("/panel/conversations/{id}")).await;
    assert!(!panel.get("/panel/conversations").await.body.contains("data-test=\"row-unread\""), "read by opening it");
}

/// Runs the due jobs and waits until the job `name` has finished a run started at `at`. The
/// server's own loop may take the run first, so the test waits for the run's record, whoever ran it.
async fn run_job_until_done(server: &TestServer, name: &str, at: chrono::DateTime<chrono::Utc>) -> switchboard_core::ports::ScheduledJob {
    let mut finished = server.scheduler().finished_runs();
    server.scheduler().run_due().await.unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let jobs = server.engine().jobs().scheduled_jobs().await.unwrap();
        let job = jobs.into_iter().find(|j| j.name == name).expect("the job is entered");
        if job.last_started_at == Some(at) && job.last_ok.is_some() {
            return job;
        }
        // A run finished on another task (or the one above is not ours): look again after the next.
        match tokio::time::timeout_at(deadline, finished.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => panic!("the scheduler is gone while waiting for {name}: {error}"),
            Err(_) => panic!("{name} did not run at {at}"),
        }
    }
}

fn utc(text: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&chrono::Utc)
}

#[tokio::test]
async fn a_scheduled_job_runs_at_its_time_once_and_a_run_missed_while_stopped_runs_once_at_start() {
    let clock = Arc::new(ManualClock::new(utc("2026-12-03T02:00:00Z")));
    let mut server = TestServer::start_with_clock(clock.clone(), |c| {
        c.jobs.time_zone = "Europe/Berlin".into();
        // 03:30 in Berlin is 02:30 UTC in winter.
        c.jobs.retention.schedule = "30 3 * * *".into();
        c.jobs.reports.schedule = String::new();
    })
    .await;
    let store = server.engine().store();
    let lee = server.add_agent("Lee", "lee@example.com").await;
    let record = switchboard_core::SessionRecord { agent: lee, csrf: "c".into(), expires_at: utc("2026-12-02T12:00:00Z") };
    store.create_session("expired-session", &record).await.unwrap();

    // Entered at start with its first run; nothing is due before it.
    let jobs = server.engine().jobs().scheduled_jobs().await.unwrap();
    let job = jobs.iter().find(|j| j.name == "retention").unwrap();
    assert_eq!((job.name.as_str(), job.next_run_at), ("retention", utc("2026-12-03T02:30:00Z")));
    assert!(server.scheduler().run_due().await.unwrap().is_empty(), "not due yet");

    clock.set(utc("2026-12-03T02:30:00Z"));
    let ran = run_job_until_done(&server, "retention", utc("2026-12-03T02:30:00Z")).await;
    assert_eq!(ran.last_ok, Some(true));
    assert_eq!(ran.last_outcome.as_deref(), Some("deleted 1 expired sessions, 0 read notifications"));
    assert_eq!(ran.next_run_at, utc("2026-12-04T02:30:00Z"));
    assert!(store.session("expired-session", utc("2026-12-01T00:00:00Z")).await.unwrap().is_none());
    assert!(server.scheduler().run_due().await.unwrap().is_empty(), "once per due time");

    // Stopped for three days: the missed runs are one run at the start, and the next is counted
    // from then.
    server.stop().await;
    clock.set(utc("2026-12-07T09:00:00Z"));
    server.start_again().await;
    let caught_up = run_job_until_done(&server, "retention", utc("2026-12-07T09:00:00Z")).await;
    assert_eq!(caught_up.next_run_at, utc("2026-12-08T02:30:00Z"));
    assert!(server.scheduler().run_due().await.unwrap().is_empty(), "the missed runs ran once, not three times");

    // A changed schedule is planned anew at the next start.
    server.stop().await;
    server.config.jobs.retention.schedule = "0 12 * * MON-FRI".into();
    server.start_again().await;
    let jobs = server.engine().jobs().scheduled_jobs().await.unwrap();
    let replanned = jobs.iter().find(|j| j.name == "retention").unwrap();
    assert_eq!((replanned.schedule.as_str(), replanned.next_run_at), ("0 12 * * MON-FRI Europe/Berlin", utc("2026-12-07T11:00:00Z")));
}

#[tokio::test]
async fn scheduled_backups_keep_the_newest_copies_and_a_failure_is_recorded_with_its_reason() {
    if switchboard_tests::test_backend() == switchboard_tests::databases::Backend::Postgres {
        // Scheduled backups copy the embedded database; PostgreSQL uses pg_dump (refused by the config check).
        return;
    }
    let clock = Arc::new(ManualClock::new(utc("2026-12-03T02:00:00Z")));
    let backups = tempfile::tempdir().unwrap();
    let dir = backups.path().join("nightly");
    let mut server = TestServer::start_with_clock(clock.clone(), |c| {
        c.jobs.backup.schedule = "0 3 * * *".into();
        c.jobs.backup.dir = dir.clone();
        c.jobs.backup.keep = 2;
        c.jobs.retention.schedule = String::new();
    })
    .await;
    for day in ["03", "04", "05"] {
        let at = utc(&format!("2026-12-{day}T03:00:00Z"));
        clock.set(at);
        let ran = run_job_until_done(&server, "backup", at).await;
        assert_eq!(ran.last_ok, Some(true), "{:?}", ran.last_outcome);
    }
    let mut kept: Vec<String> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    kept.sort();
    assert_eq!(kept, ["switchboard-20261204T030000Z.db", "switchboard-20261205T030000Z.db"], "the newest two");
    // Each copy is a sound database that restores.
    let restored = backups.path().join("restored.db");
    switchboard_store::backup::restore(&dir.join(&kept[1]), &format!("sqlite://{}", restored.display()), false).await.unwrap();

    // The directory is gone and a file is in its place: the run fails and says why.
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::write(&dir, "not a directory").unwrap();
    let at = utc("2026-12-06T03:00:00Z");
    clock.set(at);
    let failed = run_job_until_done(&server, "backup", at).await;
    assert_eq!(failed.last_ok, Some(false));
    assert!(failed.last_outcome.as_deref().is_some_and(|o| o.starts_with("cannot create jobs.backup.dir")), "{:?}", failed.last_outcome);
    server.stop().await;
    server.start_again().await;
    let jobs = server.engine().jobs().scheduled_jobs().await.unwrap();
    assert_eq!(jobs[0].last_ok, Some(false), "the record survives a restart");
}

#[tokio::test]
async fn notices_from_timers_are_copied_by_mail_to_a_customer_who_left_an_address() {
    let clock = Arc::new(ManualClock::new(start()));
    // A mail server that is away: the copies wait in their queue, where the test reads them.
    let away = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let server = TestServer::start_with_clock(clock.clone(), move |c| {
        c.sla.enabled = false;
        c.email.address = Some("support@example.test".into());
        c.email.imap_username = "support@example.test".into();
        c.email.imap_password = Some(switchboard::config::Secret("unused".into()));
        c.email.imap_port = away;
        c.email.imap_security = "none".into();
        c.email.smtp_port = away;
        c.email.smtp_security = "none".into();
    })
    .await;
    let agent = server.add_agent("Ann", "ann@example.com").await;
    let engine = server.engine();
    let asked = engine.handle(from_customer("copied", 1, "I want to talk to a person", engine.now())).await.unwrap();
    let id = asked.conversation.id;
    let left = switchboard_core::StepWrite { contact_email: Some((asked.conversation.contact_id, "ida@example.com".into())), ..Default::default() };
    engine.store().commit(left).await.unwrap();
    engine.agent_reply(id, agent, "Restart the router, then tell me if it works.".into(), Vec::new()).await.unwrap();
    let reminder = server.config.bot.waiting_reminder.clone();

    clock.advance(chrono::Duration::hours(49));
    fire_until(&server, "the reminder", || async { bot_texts(&server, id).await.contains(&reminder) }).await;
    let waiting = engine.store().customer_mails_to_send(10).await.unwrap();
    assert!(waiting.iter().any(|m| m.text == reminder && m.address == "ida@example.com" && m.conversation_id == id), "{waiting:?}");
}
