//! Auto-assignment through the engine and the SQLite store: capacity, fairness, agents coming
//! online, going offline mid-conversation, and slots freed by resolving.

use switchboard_core::TicketChange;
use switchboard_models::{AgentId, Channel, Conversation, Handler, Inbound, Presence, Priority, Sender, Status, Thread};
use switchboard_tests::TestServer;
use switchboard_tests::fake_llm::{Behaviour, FakeLlm};

/// A customer on web chat asks for a person; returns their conversation as it is now.
async fn escalate(server: &TestServer, customer: &str) -> Conversation {
    let inbound = Inbound {
        channel: Channel::WebChat,
        external_id: format!("{customer}:1"),
        sender_external_id: customer.into(),
        sender_name: None,
        text: "I want to talk to a person".into(),
        attachments: Vec::new(),
        original: None,
        thread: Thread::Current,
        received_at: chrono::Utc::now(),
        reported_language: None,
    };
    let outcome = server.engine().handle(inbound).await.expect("stored");
    current(server, &outcome.conversation).await
}

async fn current(server: &TestServer, conversation: &Conversation) -> Conversation {
    server.engine().store().conversation(conversation.id).await.unwrap().unwrap()
}

async fn agent(server: &TestServer, name: &str, capacity: u32, presence: Presence) -> AgentId {
    let id = server.add_agent(name, &format!("{}@example.com", name.to_lowercase())).await;
    let store = server.engine().store();
    let mut account = store.agent(id).await.unwrap().unwrap();
    account.capacity = capacity;
    account.presence = presence;
    store.save_agent(&account).await.unwrap();
    id
}

#[tokio::test]
async fn capacity_is_respected_and_a_freed_slot_is_filled() {
    let server = TestServer::start().await;
    let ann = agent(&server, "Ann", 1, Presence::Online).await;
    let first = escalate(&server, "c1").await;
    let second = escalate(&server, "c2").await;
    assert_eq!(first.handler, Handler::Agent(ann));
    assert_eq!(first.status, Status::Assigned);
    assert_eq!(second.handler, Handler::Queue, "Ann is full");

    server.engine().resolve(first.id, ann).await.unwrap();
    assert_eq!(current(&server, &first).await.status, Status::Resolved);
    assert_eq!(current(&server, &second).await.handler, Handler::Agent(ann), "the freed slot went to the waiting one");
    let messages = server.engine().store().conversation_messages(second.id, 0, 10).await.unwrap();
    let joined = messages.iter().find(|m| m.sender == Sender::System).expect("the customer is told");
    assert_eq!(joined.text, "Ann joined the conversation.");
}

#[tokio::test]
async fn the_least_loaded_agent_gets_the_next_one() {
    let server = TestServer::start().await;
    let ann = agent(&server, "Ann", 5, Presence::Online).await;
    let bo = agent(&server, "Bo", 5, Presence::Online).await;
    let mut counts = std::collections::HashMap::new();
    for n in 0..6 {
        let conversation = escalate(&server, &format!("fair{n}")).await;
        let Handler::Agent(agent) = conversation.handler else { panic!("assigned: {conversation:?}") };
        *counts.entry(agent).or_insert(0) += 1;
    }
    assert_eq!(counts[&ann], 3);
    assert_eq!(counts[&bo], 3);
    let away = agent(&server, "Cy", 5, Presence::Away).await;
    let next = escalate(&server, "fair-next").await;
    assert_ne!(next.handler, Handler::Agent(away), "away agents get nothing new");
}

#[tokio::test]
async fn a_waiting_conversation_goes_first_to_the_agent_whose_skills_cover_it() {
    let server = TestServer::start().await;
    let ann = agent(&server, "Ann", 5, Presence::Offline).await;
    let bo = agent(&server, "Bo", 5, Presence::Offline).await;
    let waiting = escalate(&server, "skill-1").await;
    assert_eq!(waiting.handler, Handler::Queue, "nobody online");
    let wanted: Vec<String> = waiting.wanted_skills().iter().map(|s| s.to_string()).collect();
    assert!(!wanted.is_empty(), "the conversation has a category or a language: {waiting:?}");
    // Bo has the skill; Ann is the longer-standing account, whom a tie would favour.
    server.engine().edit_agent(bo, bo, switchboard_core::AgentEdit { skills: Some(wanted.clone()), ..Default::default() }).await.unwrap();
    let store = server.engine().store();
    for id in [ann, bo] {
        let mut account = store.agent(id).await.unwrap().unwrap();
        account.presence = Presence::Online;
        store.save_agent(&account).await.unwrap();
    }
    assert_eq!(server.engine().assign_waiting().await.unwrap(), 1);
    assert_eq!(current(&server, &waiting).await.handler, Handler::Agent(bo), "Bo's skills {wanted:?} cover it");
    // A second like it: Bo still has room and the skill, so Bo again, though Ann has none open.
    let next = escalate(&server, "skill-2").await;
    assert_eq!(next.wanted_skills(), waiting.wanted_skills());
    assert_eq!(next.handler, Handler::Agent(bo));
    // Bo full: nobody waits for a skill while someone has room.
    let mut full = store.agent(bo).await.unwrap().unwrap();
    full.capacity = 2;
    store.save_agent(&full).await.unwrap();
    assert_eq!(escalate(&server, "skill-3").await.handler, Handler::Agent(ann));
}

#[tokio::test]
async fn an_agent_coming_online_takes_the_queue_in_order() {
    let server = TestServer::start().await;
    let dee = agent(&server, "Dee", 2, Presence::Offline).await;
    let first = escalate(&server, "q1").await;
    let second = escalate(&server, "q2").await;
    let third = escalate(&server, "q3").await;
    assert_eq!(first.handler, Handler::Queue, "nobody online");
    let handoff = server.engine().store().conversation_messages(first.id, 0, 10).await.unwrap();
    assert!(handoff.iter().any(|m| m.text.contains("we'll get back to you")));

    server.engine().set_presence(dee, Presence::Online).await.unwrap();
    assert_eq!(current(&server, &first).await.handler, Handler::Agent(dee));
    assert_eq!(current(&server, &second).await.handler, Handler::Agent(dee));
    assert_eq!(current(&server, &third).await.handler, Handler::Queue, "capacity 2: the newest waits");
}

#[tokio::test]
async fn the_queue_is_taken_most_urgent_first_then_longest_waiting() {
    let server = TestServer::start().await;
    let dee = agent(&server, "Dee", 2, Presence::Offline).await;
    let medium = escalate(&server, "p1").await;
    let low = escalate(&server, "p2").await;
    let urgent = escalate(&server, "p3").await;
    for (conversation, priority) in [(&medium, Priority::Medium), (&low, Priority::Low), (&urgent, Priority::Urgent)] {
        server.engine().change_ticket(conversation.id, dee, TicketChange::Priority(priority), None).await.unwrap();
    }
    server.engine().set_presence(dee, Presence::Online).await.unwrap();
    assert_eq!(current(&server, &urgent).await.handler, Handler::Agent(dee), "urgent first, though it waited least");
    assert_eq!(current(&server, &medium).await.handler, Handler::Agent(dee), "then medium before low");
    assert_eq!(current(&server, &low).await.handler, Handler::Queue, "capacity 2: low waits");
}

#[tokio::test]
async fn an_agent_going_offline_hands_conversations_on() {
    let server = TestServer::start().await;
    let eve = agent(&server, "Eve", 5, Presence::Online).await;
    let conversation = escalate(&server, "o1").await;
    assert_eq!(conversation.handler, Handler::Agent(eve));
    let fay = agent(&server, "Fay", 5, Presence::Away).await;

    server.engine().set_presence(eve, Presence::Offline).await.unwrap();
    assert_eq!(current(&server, &conversation).await.handler, Handler::Queue, "nobody online to take it");
    let messages = server.engine().store().conversation_messages(conversation.id, 0, 20).await.unwrap();
    assert!(messages.iter().any(|m| m.text == "Eve is no longer available; another agent will take over."));

    server.engine().set_presence(fay, Presence::Online).await.unwrap();
    assert_eq!(current(&server, &conversation).await.handler, Handler::Agent(fay));
}

#[tokio::test]
async fn notes_stay_internal_and_every_action_is_audited() {
    let server = TestServer::start().await;
    let (_, token) = server.new_visitor().await;
    let mut widget = server.connect(&token).await;
    widget.next_of("ready").await;
    let gus = agent(&server, "Gus", 5, Presence::Online).await;
    widget.say("c1", "I want to talk to a person").await;
    let ack = widget.next_of("ack").await;
    let conversation_id =
        switchboard_models::ConversationId::parse(ack["conversation"]["id"].as_str().unwrap()).unwrap();
    // The bot's step escalates after the ack, and Gus, online with room, gets it.
    while widget.next_of("conversation").await["conversation"]["handler"] != "agent" {}
    let engine = server.engine();

    let note = engine.add_note(conversation_id, gus, "Customer is on the legacy plan <b>".into()).await.unwrap();
    assert!(note.internal);
    engine.agent_reply(conversation_id, gus, "Hello, I can help.".into(), vec![]).await.unwrap();
    let reply = widget.next_reply().await;
    let mut seen = vec![reply["text"].as_str().unwrap().to_string()];
    while seen.last().map(String::as_str) != Some("Hello, I can help.") {
        seen.push(widget.next_reply().await["text"].as_str().unwrap().to_string());
    }
    assert!(seen.iter().all(|t| !t.contains("legacy plan")), "the note never reaches the widget: {seen:?}");
    let history = engine.store().contact_messages(note.contact_id, 0, 50).await.unwrap();
    assert!(history.iter().all(|m| !m.internal), "customer history has no notes");
    let all = engine.store().conversation_messages(conversation_id, 0, 50).await.unwrap();
    assert_eq!(all.iter().filter(|m| m.internal).count(), 1, "agents see it");

    engine.set_presence(gus, Presence::Away).await.unwrap();
    engine.resolve(conversation_id, gus).await.unwrap();
    let log = engine.store().audit_entries(10).await.unwrap();
    let actions: Vec<&str> = log.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["resolve", "presence", "reply", "note", "assign"], "newest first");
    let assign = &log[4];
    assert_eq!(assign.actor, None, "auto-assignment is Switchboard's doing");
    assert_eq!(assign.subject_agent, Some(gus));
    assert!(assign.before.as_deref().unwrap().starts_with("handler queue"));
    assert!(assign.after.as_deref().unwrap().starts_with(&format!("handler agent {gus}")));
    assert_eq!((log[1].before.as_deref(), log[1].after.as_deref()), (Some("online"), Some("away")));
    assert_eq!(log[0].actor, Some(gus));
    assert!(log[0].after.as_deref().unwrap().contains("status resolved"));
}

/// The bot's step for a message is decided on the conversation as read when the message was
/// stored; an agent who takes the conversation meanwhile must not be overwritten by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_who_replies_while_the_bot_waits_for_the_llm_keeps_the_conversation() {
    let fake = FakeLlm::start(Behaviour::Held(r#"{"intent": "order_status"}"#.into())).await;
    let server = TestServer::start_with_model(Some(fake.base_url()), 120_000, |_| {}).await;
    let dana = server.add_agent("Dana", "dana@example.com").await;
    let (visitor, token) = server.new_visitor().await;
    let mut widget = server.connect(&token).await;
    widget.next_of("ready").await;

    // Stored with its new conversation, then held while the LLM thinks: the bot's step waits.
    widget.say("c1", "who won the football world cup in 1998").await;
    let ack = widget.next_of("ack").await;
    let id = switchboard_models::ConversationId::parse(ack["conversation"]["id"].as_str().unwrap()).unwrap();
    fake.asked(1, std::time::Duration::from_secs(20)).await;
    // Meanwhile Dana answers from the panel: the conversation is hers from now on.
    let engine = server.engine();
    engine.agent_reply(id, dana, "Dana here, let me look.".into(), Vec::new()).await.unwrap();
    fake.release();
    // The web chat answers in the background: wait for that answer to be done.
    tokio::time::timeout(std::time::Duration::from_secs(30), engine.finish_answers()).await.expect("the held message is answered within 30 s");

    let store = engine.store();
    let message = store.message_by_external_id(Channel::WebChat, &format!("{visitor}:c1")).await.unwrap().unwrap();
    assert_eq!(message.classification.expect("answered").intent.as_str(), "order_status", "the LLM's reading is kept");
    // Decided on the conversation as it was read when the message arrived, the bot would
    // have answered it and written the bot back as its handler.
    let conversation = store.conversation(id).await.unwrap().unwrap();
    assert_eq!(conversation.handler, Handler::Agent(dana), "{conversation:?}");
    let messages = store.conversation_messages(id, 0, 50).await.unwrap();
    let senders: Vec<_> = messages.iter().map(|m| (m.sender, m.agent_id, m.text.as_str())).collect();
    assert!(!senders.iter().any(|(sender, ..)| *sender == Sender::Bot), "the bot stays silent once Dana answered: {senders:?}");
    assert!(senders.contains(&(Sender::Agent, Some(dana), "Dana here, let me look.")), "{senders:?}");
}
