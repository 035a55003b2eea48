//! Several `switchboard serve` processes on one PostgreSQL database: live news crosses nodes.

use std::process::{Child, Command};
use std::time::Duration;
use switchboard_admin_web::accounts::create_account;
use switchboard_models::Role;
use switchboard_tests::databases::TestDatabase;
use switchboard_tests::panel::PanelClient;
use switchboard_tests::Widget;

const PASSWORD: &str = "tangerine harbour lantern 42";

/// A real `switchboard serve` process on the shared database.
struct Node {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Node {
    fn start(database_url: &str) -> Self {
        Self::start_with(database_url, &[])
    }

    fn start_with(database_url: &str, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let shared = [("SWITCHBOARD_DATABASE__URL", database_url), ("SWITCHBOARD_NLP__ENABLED", "false")];
        let env: Vec<(&str, &str)> = env.iter().copied().chain(shared).collect();
        let (child, addr) = crate::cli::serve_with(dir.path(), &env);
        Self { child, addr, _dir: dir }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A new web-chat session, made on `node` (any node's token is good on every node).
async fn new_session(node: &Node) -> serde_json::Value {
    reqwest::Client::new().post(format!("{}/webchat/session", node.url())).send().await.unwrap().json().await.unwrap()
}

/// A new visitor with one widget on each node (a load balancer without sticky sessions).
async fn one_visitor_on_both(a: &Node, b: &Node) -> (Widget, Widget) {
    let session = new_session(a).await;
    let token = session["token"].as_str().unwrap();
    let mut on_a = Widget::connect(&a.addr, token, None).await.unwrap();
    let mut on_b = Widget::connect(&b.addr, token, None).await.unwrap();
    on_a.next_of("ready").await;
    on_b.next_of("ready").await;
    (on_a, on_b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_widget_on_one_node_and_a_panel_on_another_see_each_other_live() {
    let db = TestDatabase::postgres().await;
    let store = db.open().await;
    create_account(store.as_ref(), "ada@example.com", "Ada", Role::Agent, PASSWORD, None).await.unwrap();
    let (a, b) = (Node::start(&db.url), Node::start(&db.url));

    // The customer is on node A; Ada's panel, with its live stream open, is on node B.
    let session = new_session(&a).await;
    let mut widget = Widget::connect(&a.addr, session["token"].as_str().unwrap(), None).await.unwrap();
    widget.next_of("ready").await;
    let ada = PanelClient::sign_in(&b.url(), "ada@example.com", PASSWORD).await;
    let mut events = ada.event_stream("/panel/events").await;

    widget.say("c1", "I want to talk to a person").await;
    let ack = widget.next_of("ack").await;
    let conversation = ack["conversation"]["id"].as_str().unwrap().to_string();
    let event = tokio::time::timeout(Duration::from_secs(10), events.next_event()).await.expect("news from node A").unwrap();
    assert!(event.contains(&conversation), "node B's panel hears of node A's message: {event}");

    // Ada answers on node B; the widget on node A shows it.
    let sent = ada.post(&format!("/panel/conversations/{conversation}/reply"), &[("text", "Hi, Ada here, from the other node.")]).await;
    assert_eq!(sent.status, reqwest::StatusCode::SEE_OTHER, "{}", sent.body);
    loop {
        let reply = widget.next_reply().await;
        if reply["text"] == "Hi, Ada here, from the other node." {
            assert_eq!(reply["sender"], "agent");
            break;
        }
    }
}

/// Customer messages stored from Telegram, by text.
async fn telegram_texts(db: &TestDatabase) -> Vec<String> {
    let store = db.open().await;
    let Some(contact) = store.contact_by_external_id(switchboard_models::Channel::Telegram, "505").await.unwrap() else {
        return Vec::new();
    };
    let messages = store.contact_messages(contact.id, 0, 1000).await.unwrap();
    messages.into_iter().filter(|m| m.sender == switchboard_models::Sender::Customer).map(|m| m.text).collect()
}

async fn wait_for_texts(db: &TestDatabase, count: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    loop {
        let texts = telegram_texts(db).await;
        if texts.len() >= count || std::time::Instant::now() > deadline {
            return texts;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_polls_telegram_and_another_takes_over_when_it_is_killed() {
    use switchboard_tests::fake_telegram::{FakeTelegram, TOKEN, private_text};
    let telegram = FakeTelegram::start().await;
    let db = TestDatabase::postgres().await;
    let api = telegram.url();
    let env = |name: &'static str| [("SWITCHBOARD_TELEGRAM__TOKEN", TOKEN), ("SWITCHBOARD_TELEGRAM__API_URL", api.as_str()), ("SWITCHBOARD_SERVER__NODE_NAME", name)];
    let mut nodes = vec![Node::start_with(&db.url, &env("node-a")), Node::start_with(&db.url, &env("node-b"))];
    for id in 1..=5 {
        telegram.push_message(private_text(505, id, &format!("before {id}")));
    }
    assert_eq!(wait_for_texts(&db, 5).await.len(), 5);
    // Wait for the holder to renew its lease twice: by then both nodes have tried for it more
    // than once, each renewal period, while one of them polled.
    let expiry = || db.count("SELECT expires_at FROM leases WHERE name = 'telegram'");
    let mut seen = expiry().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    for _ in 0..2 {
        loop {
            let now = expiry().await;
            if now > seen {
                seen = now;
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the lease is never renewed");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert_eq!(telegram.conflicts(), 0, "only one node polls: Telegram never saw two pollers at once");

    let holder = db.count("SELECT COUNT(*) FROM leases WHERE name = 'telegram' AND holder = 'node-b'").await;
    let killed = nodes.remove(holder as usize); // node-b when it holds the lease, else node-a
    let status = Command::new("kill").args(["-KILL", &killed.child.id().to_string()]).status().unwrap();
    assert!(status.success());
    drop(killed);
    for id in 6..=8 {
        telegram.push_message(private_text(505, id, &format!("after {id}")));
    }
    let texts = wait_for_texts(&db, 8).await;
    let expected: Vec<String> = (1..=5).map(|n| format!("before {n}")).chain((6..=8).map(|n| format!("after {n}"))).collect();
    assert_eq!(texts, expected, "the other node took over: nothing lost, nothing twice, in order");
}

/// Waits until no customer message waits for its answer, checking again at each piece of live
/// news the nodes announce (every answer they store is announced); fails with `what` after a
/// minute. Listening starts before the first check, so no answer can slip between them.
async fn all_answered(db: &TestDatabase, store: &dyn switchboard_core::ports::Store, what: &str) {
    let mut news = sqlx::postgres::PgListener::connect(&db.url).await.unwrap();
    news.listen(switchboard_store::relay::CHANNEL).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !store.unanswered_messages(1).await.unwrap().is_empty() {
        match tokio::time::timeout_at(deadline, news.recv()).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => panic!("the live news connection failed while waiting for: {what}: {error}"),
            Err(_) => assert!(store.unanswered_messages(1).await.unwrap().is_empty(), "{what}"),
        }
    }
}

/// The bot's messages in a conversation, oldest first.
async fn bot_texts(store: &dyn switchboard_core::ports::Store, conversation: switchboard_models::ConversationId) -> Vec<String> {
    let messages = store.conversation_messages(conversation, 0, 1000).await.unwrap();
    messages.into_iter().filter(|m| m.sender == switchboard_models::Sender::Bot).map(|m| m.text).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_writing_to_two_nodes_is_answered_in_order_even_behind_a_dead_nodes_message() {
    use switchboard_core::ports::{Committed, StepWrite};
    use switchboard_models::{Handler, Sender};
    let db = TestDatabase::postgres().await;
    let takeover = [("SWITCHBOARD_SERVER__TAKEOVER_AFTER_SECONDS", "2")];
    let (a, b) = (Node::start_with(&db.url, &takeover), Node::start_with(&db.url, &takeover));

    let (mut on_a, mut on_b) = one_visitor_on_both(&a, &b).await;
    on_a.say("c1", "hello").await;
    let ack = on_a.next_of("ack").await;
    let conversation_id: switchboard_models::ConversationId = ack["conversation"]["id"].as_str().unwrap().parse().unwrap();
    let greeting = on_a.next_reply().await["text"].as_str().unwrap().to_string();

    // Node C stored the customer's next message, acknowledged it, and died before answering.
    let store = db.open().await;
    let conversation = store.conversation(conversation_id).await.unwrap().unwrap();
    let stranded = crate::store::message(&conversation, Sender::Customer, "I want to talk to a person", Some("node-c:1"));
    let stored = store.commit(StepWrite { inbound: Some(stranded), ..StepWrite::default() }).await.unwrap();
    assert!(matches!(stored, Committed::Stored { .. }), "{stored:?}");

    // The customer writes again, through node B: its answer waits for the stranded one.
    on_b.say("c2", "hello again").await;
    on_b.next_of("ack").await;
    all_answered(&db, store.as_ref(), "a node answers what node C left, then the later message").await;
    // In order: the request for a person was answered first (a handoff), so the later "hello
    // again" found the conversation with the queue and got no bot answer. Answered the other way
    // round, the bot would have greeted first.
    let texts = bot_texts(store.as_ref(), conversation_id).await;
    assert_eq!(texts.len(), 2, "the greeting, then one answer for the two later messages: {texts:?}");
    assert_eq!(texts[0], greeting);
    assert_ne!(texts[1], greeting, "the handoff, not a second greeting: {texts:?}");
    let now = store.conversation(conversation_id).await.unwrap().unwrap();
    assert_eq!(now.handler, Handler::Queue, "{now:?}");
    let answered = store.conversation_messages(conversation_id, 0, 1000).await.unwrap();
    assert!(answered.iter().filter(|m| m.sender == Sender::Customer).all(|m| m.classification.is_some()), "each answered once");
}

/// Says `text` and tells whether it was taken (`ack`) or refused for the rate limit.
async fn taken(widget: &mut Widget, client_id: &str, text: &str) -> bool {
    widget.say(client_id, text).await;
    loop {
        let frame = widget.next_frame().await.expect("still connected");
        if frame["type"] == "ack" {
            return true;
        }
        if frame["type"] == "error" {
            assert_eq!(frame["code"], "rate_limited", "{frame}");
            return false;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitors_rate_limit_holds_across_nodes() {
    let db = TestDatabase::postgres().await;
    // A burst of 4, then one message a minute: the test is over long before a token returns.
    let limits = [("SWITCHBOARD_WEBCHAT__RATE_LIMIT_BURST", "4"), ("SWITCHBOARD_WEBCHAT__RATE_LIMIT_PER_MINUTE", "1")];
    let (a, b) = (Node::start_with(&db.url, &limits), Node::start_with(&db.url, &limits));
    let (mut on_a, mut on_b) = one_visitor_on_both(&a, &b).await;
    let mut outcomes = Vec::new();
    for n in 0..3 {
        outcomes.push(taken(&mut on_a, &format!("a{n}"), "hello").await);
        outcomes.push(taken(&mut on_b, &format!("b{n}"), "hello").await);
    }
    assert_eq!(outcomes, [true, true, true, true, false, false], "one budget of 4 for the visitor, not 4 on each node");

    // Another visitor has their own budget on either node.
    let other = new_session(&b).await;
    let mut neighbour = Widget::connect(&b.addr, other["token"].as_str().unwrap(), None).await.unwrap();
    neighbour.next_of("ready").await;
    assert!(taken(&mut neighbour, "n1", "hello").await);
}

/// What one visitor of the kill test saw.
struct VisitorLoad {
    visitor_id: String,
    acked: Vec<String>,
    /// Ids of the replies pushed live to this visitor's sockets.
    pushed: Vec<String>,
    connections: usize,
}

/// One widget visitor writing "hello" every `pace`, each message sent again until acknowledged,
/// moving to the next node whenever its node stops answering (as a load balancer would).
async fn visit(
    token: String,
    visitor_id: String,
    nodes: Vec<String>,
    messages: usize,
    pace: Duration,
    acks: tokio::sync::mpsc::UnboundedSender<()>,
) -> VisitorLoad {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message as WsMessage;
    let mut load = VisitorLoad { visitor_id, acked: Vec::new(), pushed: Vec::new(), connections: 0 };
    let mut node = 0;
    let mut socket = None;
    for n in 0..messages {
        let client_id = format!("m{n}");
        let started = tokio::time::Instant::now();
        'acked: loop {
            if socket.is_none() {
                match tokio_tungstenite::connect_async(format!("ws://{}/webchat/ws?token={token}", nodes[node])).await {
                    Ok((connected, _)) => {
                        socket = Some(connected);
                        load.connections += 1;
                    }
                    // Refused at once by a dead node: the next one.
                    Err(_) => {
                        node = (node + 1) % nodes.len();
                        continue;
                    }
                }
            }
            let ws = socket.as_mut().unwrap();
            let frame = serde_json::json!({"type": "send", "client_id": client_id, "text": "hello"}).to_string();
            if ws.send(WsMessage::Text(frame.into())).await.is_err() {
                socket = None;
                node = (node + 1) % nodes.len();
                continue;
            }
            loop {
                let next = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
                let Ok(Some(Ok(WsMessage::Text(text)))) = next else {
                    if matches!(next, Ok(Some(Ok(_)))) {
                        continue; // ping, pong
                    }
                    // Closed, failed or silent: this node is gone; send it again elsewhere.
                    socket = None;
                    node = (node + 1) % nodes.len();
                    continue 'acked;
                };
                let frame: serde_json::Value = serde_json::from_str(&text).unwrap();
                match frame["type"].as_str() {
                    Some("ack") if frame["client_id"] == client_id.as_str() => break 'acked,
                    Some("message") => load.pushed.push(format!("{}@{}#{}", frame["message"]["id"].as_str().unwrap(), node, load.connections)),
                    Some("error") => panic!("no message is refused, even while a node dies: {frame}"),
                    _ => {}
                }
            }
        }
        load.acked.push(client_id);
        let _ = acks.send(());
        // The load's shape (15 messages a second per visitor), not a wait for something.
        tokio::time::sleep_until(started + pace).await;
    }
    load
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_under_load_loses_no_acknowledged_message_and_answers_none_twice() {
    use switchboard_models::{Channel, Sender};
    let db = TestDatabase::postgres().await;
    let env = [
        ("SWITCHBOARD_SERVER__TAKEOVER_AFTER_SECONDS", "2"),
        ("SWITCHBOARD_WEBCHAT__RATE_LIMIT_PER_MINUTE", "100000"),
        ("SWITCHBOARD_WEBCHAT__RATE_LIMIT_BURST", "1000"),
        ("SWITCHBOARD_WEBCHAT__MESSAGES_PER_ADDRESS_PER_MINUTE", "1000000"),
        ("SWITCHBOARD_WEBCHAT__SESSIONS_PER_ADDRESS_PER_MINUTE", "100000"),
    ];
    let (a, b) = (Node::start_with(&db.url, &env), Node::start_with(&db.url, &env));
    // 20 visitors, half on each node, each writing 15 times a second: 300 messages a second.
    let (visitors, messages, pace) = (20, 45, Duration::from_millis(66));
    let mut tasks = Vec::new();
    let (acks, mut acked) = tokio::sync::mpsc::unbounded_channel();
    for v in 0..visitors {
        let session = new_session(&a).await;
        let (token, visitor_id) = (session["token"].as_str().unwrap().to_string(), session["visitor_id"].as_str().unwrap().to_string());
        let nodes = if v % 2 == 0 { vec![a.addr.clone(), b.addr.clone()] } else { vec![b.addr.clone(), a.addr.clone()] };
        tasks.push(tokio::spawn(visit(token, visitor_id, nodes, messages, pace, acks.clone())));
    }
    // Node A dies in the middle of the load: after about a second of it (300 acknowledgements).
    for _ in 0..300 {
        acked.recv().await.expect("the visitors are writing");
    }
    let status = Command::new("kill").args(["-KILL", &a.child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let mut loads = Vec::new();
    for task in tasks {
        loads.push(task.await.unwrap());
    }

    let store = db.open().await;
    all_answered(&db, store.as_ref(), "node B answers what node A acknowledged and left").await;
    let mut total = 0;
    for load in &loads {
        assert_eq!(load.acked.len(), messages);
        let contact = store.contact_by_external_id(Channel::WebChat, &load.visitor_id).await.unwrap().expect("the visitor is stored");
        let stored = store.contact_messages(contact.id, 0, 10_000).await.unwrap();
        let mut ids: Vec<String> = stored
            .iter()
            .filter(|m| m.sender == Sender::Customer)
            .map(|m| m.external_id.clone().unwrap().rsplit(':').next().unwrap().to_string())
            .collect();
        ids.sort();
        let mut acked = load.acked.clone();
        acked.sort();
        assert_eq!(ids, acked, "every acknowledged message is stored, once");
        let answers = stored.iter().filter(|m| m.sender == Sender::Bot).count();
        assert_eq!(answers, messages, "each 'hello' answered exactly once (one greeting each)");
        let mut pushed: Vec<&str> = load.pushed.iter().map(|p| p.split('@').next().unwrap()).collect();
        pushed.sort();
        pushed.dedup();
        assert_eq!(pushed.len(), load.pushed.len(), "no reply pushed to the widget twice: {:?}", load.pushed);
        total += stored.len();
    }
    assert_eq!(total, visitors * messages * 2);
}

/// The bot's first reply to a new visitor on `node` asking for a person.
async fn handoff_text(node: &Node) -> String {
    let session = new_session(node).await;
    let mut widget = Widget::connect(&node.addr, session["token"].as_str().unwrap(), None).await.unwrap();
    widget.next_of("ready").await;
    widget.say("c1", "I want to talk to a person").await;
    widget.next_reply().await["text"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_setting_saved_on_one_node_is_in_force_on_every_node_and_the_environment_still_wins() {
    let db = TestDatabase::postgres().await;
    let store = db.open().await;
    create_account(store.as_ref(), "robin@example.com", "Robin", Role::Admin, PASSWORD, None).await.unwrap();
    let pinned = "Queued by the environment.";
    let a = Node::start(&db.url);
    let b = Node::start_with(&db.url, &[("SWITCHBOARD_BOT__HANDOFF_QUEUED", pinned)]);
    let robin = PanelClient::sign_in(&a.url(), "robin@example.com", PASSWORD).await;
    let token = robin.new_api_token("settings").await;
    let http = reqwest::Client::new();
    let change = |node: &Node, body: serde_json::Value| http.post(format!("{}/api/settings", node.url())).bearer_auth(&token).json(&body).send();

    // Nobody is online: the offline handoff text, changed on node A, is said on node B.
    let text = "Everyone is out right now; we answer first thing tomorrow.";
    let saved = change(&a, serde_json::json!({"settings": {"bot.handoff_offline": text}})).await.unwrap();
    assert_eq!(saved.status(), reqwest::StatusCode::OK, "{}", saved.text().await.unwrap());
    // Node B applies the change when the news reaches it: ask it until it says the new text.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let said = handoff_text(&b).await;
        if said == text {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "node B follows the setting without a restart; it still says {said:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(handoff_text(&a).await, text);

    // Node B's environment sets the queued handoff: its panel shows that and refuses a change there.
    let listed: serde_json::Value = http.get(format!("{}/api/settings", b.url())).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    let queued = listed["settings"].as_array().unwrap().iter().find(|s| s["key"] == "bot.handoff_queued").unwrap().clone();
    assert_eq!((queued["value"].as_str(), queued["source"]["variable"].as_str()), (Some(pinned), Some("SWITCHBOARD_BOT__HANDOFF_QUEUED")), "{queued}");
    let refused = change(&b, serde_json::json!({"settings": {"bot.handoff_queued": "Changed in the panel."}})).await.unwrap();
    assert_eq!(refused.status(), reqwest::StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.text().await.unwrap().contains("SWITCHBOARD_BOT__HANDOFF_QUEUED"), "names the variable to change");
}
