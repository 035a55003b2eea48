//! Web chat end to end: the server on port 0, a real WebSocket client and a real HTTP client.

use serde_json::{Value, json};
use std::time::Duration;
use switchboard_core::StepWrite;
use switchboard_models::{Channel, Sender};
use switchboard_tests::TestServer;

async fn visitor_socket(server: &TestServer) -> (String, switchboard_tests::Widget) {
    let (_, token) = server.new_visitor().await;
    let mut widget = server.connect(&token).await;
    let ready = widget.next_of("ready").await;
    assert!(ready["visitor_id"].is_string());
    assert_eq!(ready["conversation"], Value::Null, "a new visitor has no conversation yet");
    (token, widget)
}

/// GET a web-chat endpoint as the visitor with `token`.
async fn get_json(server: &TestServer, path: &str, token: &str) -> Value {
    reqwest::Client::new()
        .get(server.url(path))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn hello_gets_a_bot_answer() {
    let server = TestServer::start().await;
    let (_, mut widget) = visitor_socket(&server).await;
    widget.say("c1", "hello").await;
    let ack = widget.next_of("ack").await;
    assert_eq!(ack["client_id"], "c1");
    assert_eq!(ack["duplicate"], false);
    assert_eq!(ack["message"]["sender"], "customer");
    assert_eq!(ack["conversation"]["handler"], "bot");
    let reply = widget.next_reply().await;
    assert_eq!(reply["sender"], "bot");
    assert!(reply["text"].as_str().unwrap().starts_with("Hi!"), "{reply}");
    assert!(reply["seq"].as_i64().unwrap() > ack["message"]["seq"].as_i64().unwrap());
}

/// A widget may send before its last message is answered: the socket goes on sending replies
/// while it answers a frame, yet each message is stored and acknowledged in the order sent,
/// and a reply never arrives before the acknowledgement of the message it answers.
#[tokio::test]
async fn frames_sent_back_to_back_are_acknowledged_in_order_each_before_its_reply() {
    let server = TestServer::start().await;
    let (_, mut widget) = visitor_socket(&server).await;
    // Within the visitor's burst (10), so none is refused.
    let count = 8;
    for n in 0..count {
        widget.say(&format!("c{n}"), "hello").await;
    }
    let (mut acked, mut replies) = (Vec::new(), 0);
    while acked.len() < count || replies < count {
        let frame = widget.next_frame().await.expect("socket open");
        match frame["type"].as_str() {
            Some("ack") => acked.push((frame["client_id"].as_str().unwrap().to_string(), frame["message"]["seq"].as_i64().unwrap())),
            Some("message") if frame["message"]["sender"] == "bot" => {
                let seq = frame["message"]["seq"].as_i64().unwrap();
                let answered = acked.iter().filter(|(_, acked_seq)| *acked_seq < seq).count();
                assert!(answered > replies, "reply {seq} arrived before the acknowledgement of the message it answers: {acked:?}");
                replies += 1;
            }
            _ => {}
        }
    }
    let sent: Vec<String> = (0..count).map(|n| format!("c{n}")).collect();
    assert_eq!(acked.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>(), sent, "acknowledged in the order sent");
    assert!(acked.windows(2).all(|w| w[0].1 < w[1].1), "stored in the order sent: {acked:?}");
}

#[tokio::test]
async fn asking_for_a_person_escalates_and_the_bot_goes_quiet() {
    let server = TestServer::start().await;
    let (_, mut widget) = visitor_socket(&server).await;
    widget.say("c1", "I want to talk to a person").await;
    let ack = widget.next_of("ack").await;
    assert_eq!(ack["conversation"]["handler"], "bot", "acknowledged as stored, before the bot's step");
    // The step escalates: the widget hears of the new handler and gets the handoff notice.
    let (mut handler, mut handoff) = (None, None);
    while handler.is_none() || handoff.is_none() {
        let frame = widget.next_frame().await.expect("socket open");
        match frame["type"].as_str() {
            Some("conversation") => handler = Some(frame["conversation"]["handler"].clone()),
            Some("message") if frame["message"]["sender"] == "bot" => handoff = Some(frame["message"].clone()),
            _ => {}
        }
    }
    assert_eq!(handler.unwrap(), "queue");
    let handoff = handoff.unwrap();
    assert!(
        handoff["text"].as_str().unwrap().contains("we'll get back to you"),
        "nobody is online, so the customer is told we'll get back: {handoff}"
    );

    widget.say("c2", "hello? anyone?").await;
    let ack = widget.next_of("ack").await;
    assert_eq!(ack["conversation"]["handler"], "queue");
    let later = widget.frames_within(Duration::from_millis(800)).await;
    assert!(
        later.iter().all(|f| f["type"] != "message" || f["message"]["sender"] == "customer"),
        "the bot must not answer an escalated conversation: {later:?}"
    );

    let conversation = server
        .engine()
        .store()
        .conversation(switchboard_models::ConversationId::parse(ack["conversation"]["id"].as_str().unwrap()).unwrap())
        .await
        .unwrap()
        .unwrap();
    let escalation = conversation.escalation.expect("escalation recorded");
    assert_eq!(escalation.reason, switchboard_models::EscalationReason::HumanRequested);
    assert!(escalation.summary.contains("talk to a person"), "{}", escalation.summary);
}

#[tokio::test]
async fn reconnecting_returns_the_history_and_a_resent_message_is_stored_once() {
    let server = TestServer::start().await;
    let (token, mut widget) = visitor_socket(&server).await;
    widget.say("c1", "hello").await;
    widget.next_of("ack").await;
    widget.next_reply().await;
    widget.close().await;

    let mut widget = server.connect(&token).await;
    let ready = widget.next_of("ready").await;
    assert_eq!(ready["conversation"]["handler"], "bot", "the conversation is still there");
    // The widget resends what it had not seen acknowledged; the server keeps one copy.
    widget.say("c1", "hello").await;
    let ack = widget.next_of("ack").await;
    assert_eq!(ack["duplicate"], true);
    widget.send_json(json!({"type": "history", "after": 0})).await;
    let history = widget.next_of("history").await;
    let lines: Vec<String> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| format!("{}: {}", m["sender"].as_str().unwrap(), m["text"].as_str().unwrap()))
        .collect();
    assert_eq!(lines.len(), 2, "one customer message, one answer: {lines:?}");
    assert_eq!(lines[0], "customer: hello");
    assert!(lines[1].starts_with("bot: Hi!"));
}

#[tokio::test]
async fn history_survives_a_server_restart() {
    let mut server = TestServer::start().await;
    let (token, mut widget) = visitor_socket(&server).await;
    widget.say("c1", "I forgot my password").await;
    widget.next_reply().await;
    widget.close().await;
    server.restart().await;
    let mut widget = server.connect(&token).await;
    widget.next_of("ready").await;
    widget.send_json(json!({"type": "history", "after": 0})).await;
    let history = widget.next_of("history").await;
    assert_eq!(history["messages"].as_array().unwrap().len(), 2);
    assert_eq!(history["messages"][0]["text"], "I forgot my password");
}

#[tokio::test]
async fn the_http_fallback_reaches_the_same_conversation() {
    let server = TestServer::start().await;
    let (token, mut widget) = visitor_socket(&server).await;
    widget.say("ws-1", "hello").await;
    let ws_ack = widget.next_of("ack").await;
    widget.next_reply().await;
    let http = reqwest::Client::new();
    let auth = format!("Bearer {token}");

    let sent = http
        .post(server.url("/webchat/messages"))
        .header("authorization", &auth)
        .json(&json!({"client_id": "http-1", "text": "I forgot my password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 201);
    let sent: Value = sent.json().await.unwrap();
    assert_eq!(sent["conversation"]["id"], ws_ack["conversation"]["id"]);
    let seq = sent["message"]["seq"].as_i64().unwrap();

    let polled: Value = get_json(&server, &format!("/webchat/poll?after={seq}"), &token).await;
    assert_eq!(polled["messages"][0]["sender"], "bot", "{polled}");
    assert!(polled["messages"][0]["text"].as_str().unwrap().contains("password"));

    // The socket of the same visitor sees the reply too.
    let pushed = widget.next_reply().await;
    assert_eq!(pushed["id"], polled["messages"][0]["id"]);

    let again = http
        .post(server.url("/webchat/messages"))
        .header("authorization", &auth)
        .json(&json!({"client_id": "http-1", "text": "I forgot my password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(again.json::<Value>().await.unwrap()["duplicate"], true);

    let history: Value = get_json(&server, "/webchat/messages?after=0", &token).await;
    assert_eq!(history["messages"].as_array().unwrap().len(), 4);

    // A long-poll with nothing new answers empty after its wait.
    let last = history["messages"][3]["seq"].as_i64().unwrap();
    let empty: Value = get_json(&server, &format!("/webchat/poll?after={last}"), &token).await;
    assert_eq!(empty["messages"], json!([]));
}

#[tokio::test]
async fn bad_frames_get_error_frames_and_the_connection_lives_on() {
    let server = TestServer::start_with(|c| c.webchat.max_message_chars = 100).await;
    let (token, mut widget) = visitor_socket(&server).await;

    widget.say("big", &"x".repeat(101)).await;
    let error = widget.next_of("error").await;
    assert_eq!(error["code"], "message_too_large");
    assert_eq!(error["client_id"], "big");
    assert!(error["message"].as_str().unwrap().contains("limit is 100"));

    widget.send_raw("{not json").await;
    assert_eq!(widget.next_of("error").await["code"], "malformed_frame");
    widget.send_json(json!({"type": "teleport"})).await;
    assert_eq!(widget.next_of("error").await["code"], "malformed_frame");
    widget.say("bad id with spaces", "hi").await;
    assert_eq!(widget.next_of("error").await["code"], "invalid_client_id");
    widget.say("empty", "   ").await;
    assert_eq!(widget.next_of("error").await["code"], "invalid_message");

    widget.send_json(json!({"type": "ping"})).await;
    assert_eq!(widget.next_of("pong").await["type"], "pong");
    widget.say("ok", "hello").await;
    assert_eq!(widget.next_of("ack").await["duplicate"], false);

    let history = get_json(&server, "/webchat/messages", &token).await;
    assert_eq!(history["messages"][0]["text"], "hello", "nothing bad was stored");
}

#[tokio::test]
async fn a_flooding_visitor_is_limited_without_harming_others() {
    let server = TestServer::start_with(|c| {
        c.webchat.rate_limit_burst = 3;
        c.webchat.rate_limit_per_minute = 6;
    })
    .await;
    let (_, mut flooder) = visitor_socket(&server).await;
    let (_, mut neighbour) = visitor_socket(&server).await;
    let mut limited = 0;
    for i in 0..6 {
        flooder.say(&format!("f{i}"), "hello").await;
        loop {
            let frame = flooder.next_frame().await.expect("still connected");
            if frame["type"] == "ack" {
                break;
            }
            if frame["type"] == "error" {
                assert_eq!(frame["code"], "rate_limited");
                assert!(frame["message"].as_str().unwrap().contains("try again in"));
                limited += 1;
                break;
            }
        }
    }
    assert_eq!(limited, 3, "a burst of 3 passes, the rest are refused");
    neighbour.say("n1", "hello").await;
    assert_eq!(neighbour.next_of("ack").await["duplicate"], false);
}

#[tokio::test]
async fn only_configured_origins_and_genuine_tokens_get_in() {
    let server = TestServer::start_with(|c| c.webchat.allowed_origins = vec!["https://shop.example.com".into()]).await;
    let (_, token) = server.new_visitor().await;
    assert_eq!(server.connect_from(&token, Some("https://evil.example.net")).await.err(), Some(403));
    assert!(server.connect_from(&token, Some("https://shop.example.com")).await.is_ok());
    let same_origin = format!("http://{}", server.addr);
    assert!(server.connect_from(&token, Some(&same_origin)).await.is_ok());
    assert_eq!(server.connect_from("forged.token", None).await.err(), Some(401));
    let (_, other_token) = server.new_visitor().await;
    let tampered = format!("{}.{}", other_token.split_once('.').unwrap().0, token.split_once('.').unwrap().1);
    assert_eq!(server.connect_from(&tampered, None).await.err(), Some(401));

    let http = reqwest::Client::new();
    let refused = http
        .get(server.url("/webchat/config"))
        .header("origin", "https://evil.example.net")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let body: Value = refused.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("webchat.allowed_origins"));
    let preflight = http
        .request(reqwest::Method::OPTIONS, server.url("/webchat/messages"))
        .header("origin", "https://shop.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    assert_eq!(preflight.headers()["access-control-allow-origin"], "https://shop.example.com");
    let unauthorised = http.get(server.url("/webchat/messages")).send().await.unwrap();
    assert_eq!(unauthorised.status(), 401);
}

#[tokio::test]
async fn every_open_tab_of_a_visitor_sees_the_conversation() {
    let server = TestServer::start().await;
    let (token, mut first) = visitor_socket(&server).await;
    let mut second = server.connect(&token).await;
    second.next_of("ready").await;
    first.say("c1", "hello").await;
    let reply = second.next_reply().await;
    assert!(reply["text"].as_str().unwrap().starts_with("Hi!"));
}

#[tokio::test]
async fn the_demo_page_embeds_the_widget_script() {
    let server = TestServer::start().await;
    let page = reqwest::get(server.url("/")).await.unwrap().text().await.unwrap();
    assert!(page.contains("<script src=\"/widget.js\""), "demo page embeds the widget");
    let script = reqwest::get(server.url("/widget.js")).await.unwrap();
    assert!(script.headers()["content-type"].to_str().unwrap().starts_with("application/javascript"));
    assert!(script.text().await.unwrap().contains("/webchat/ws"));
    let config: Value = reqwest::get(server.url("/webchat/config")).await.unwrap().json().await.unwrap();
    assert_eq!(config["look"]["position"], "right");
}

/// The server's end of the TCP connection from `peer`, found among this process's descriptors
/// (the test server runs in the test process), and whether it has TCP_NODELAY set.
fn server_side_nodelay(server: std::net::SocketAddr, peer: std::net::SocketAddr) -> Option<bool> {
    for entry in std::fs::read_dir("/proc/self/fd").ok()?.flatten() {
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        // Only queried, never closed or written; a descriptor closed meanwhile just errors.
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let socket = socket2::SockRef::from(&borrowed);
        let (Ok(local), Ok(remote)) = (socket.local_addr(), socket.peer_addr()) else { continue };
        if local.as_socket() == Some(server) && remote.as_socket() == Some(peer) {
            return socket.tcp_nodelay().ok();
        }
    }
    None
}

#[tokio::test]
async fn accepted_connections_send_small_frames_at_once() {
    // Without TCP_NODELAY a reply frame written right after the ack waits ~40 ms for the
    // client's delayed ACK (Nagle's algorithm).
    let server = TestServer::start().await;
    let (_, token) = server.new_visitor().await;
    let mut widget = server.connect(&token).await;
    widget.next_of("ready").await;
    let peer = widget.local_addr();
    assert_eq!(server_side_nodelay(server.addr, peer), Some(true), "TCP_NODELAY on the server's end of {peer}");
}

#[tokio::test]
async fn a_message_stored_but_not_answered_before_a_stop_is_answered_on_start() {
    let mut server = TestServer::start().await;
    let (token, mut widget) = visitor_socket(&server).await;
    widget.say("c1", "hello").await;
    let ack = widget.next_of("ack").await;
    widget.next_reply().await;
    widget.close().await;

    // As if the process died after storing a message and before answering it.
    let store = switchboard_store::open(&server.config.database.url).await.unwrap();
    let conversation_id = switchboard_models::ConversationId::parse(ack["conversation"]["id"].as_str().unwrap()).unwrap();
    let conversation = store.conversation(conversation_id).await.unwrap().unwrap();
    let mut unanswered = crate::store::message(&conversation, Sender::Customer, "I forgot my password", Some("stored-before-a-crash"));
    unanswered.quick_replies.clear();
    store.commit(StepWrite { inbound: Some(unanswered), ..StepWrite::default() }).await.unwrap();
    assert_eq!(store.unanswered_messages(10).await.unwrap().len(), 1);

    server.restart().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let texts = loop {
        let history = get_json(&server, "/webchat/messages?after=0", &token).await;
        let texts: Vec<String> = history["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| format!("{}: {}", m["sender"].as_str().unwrap(), m["text"].as_str().unwrap()))
            .collect();
        if texts.len() >= 4 || std::time::Instant::now() > deadline {
            break texts;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(texts.len(), 4, "hello, its answer, the stored message and its answer: {texts:?}");
    assert_eq!(texts[2], "customer: I forgot my password");
    assert!(texts[3].starts_with("bot: "), "{texts:?}");
    assert!(store.unanswered_messages(10).await.unwrap().is_empty());
    let answered = store.message_by_external_id(Channel::WebChat, "stored-before-a-crash").await.unwrap().unwrap();
    assert!(answered.classification.is_some(), "classified when answered");
}

#[tokio::test]
async fn an_error_never_echoes_a_large_input_back() {
    let server = TestServer::start().await;
    let (_, token) = server.new_visitor().await;
    let huge = "x".repeat(50_000);
    let response = reqwest::Client::new()
        .post(server.url("/webchat/seen"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(format!("{{\"seq\": \"{huge}\"}}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.chars().count() <= 601 && message.ends_with('…'), "{} characters", message.chars().count());
}

/// A `multipart/form-data` body as browsers send it: `fields`, then a `file` part if given.
fn multipart(fields: &[(&str, &str)], file: Option<(&str, &str, &[u8])>) -> (String, Vec<u8>) {
    let boundary = "----switchboard-test-boundary";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes());
    }
    if let Some((name, content_type, bytes)) = file {
        body.extend(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: {content_type}\r\n\r\n").as_bytes());
        body.extend_from_slice(bytes);
        body.extend(b"\r\n");
    }
    body.extend(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// How many files the attachment store holds.
fn stored_files(server: &TestServer) -> usize {
    let Ok(folders) = std::fs::read_dir(&server.config.attachments.dir) else { return 0 };
    folders.flatten().filter_map(|folder| std::fs::read_dir(folder.path()).ok()).map(|files| files.count()).sum()
}

#[tokio::test]
async fn a_visitor_sends_files_only_they_can_download_and_gets_the_agents_file() {
    use switchboard_tests::samples::{PDF, PNG};
    let server = TestServer::start_with(|c| c.attachments.max_bytes = 64 * 1024).await;
    let (token, mut widget) = visitor_socket(&server).await;
    let http = reqwest::Client::new();
    let upload = |token: &str, fields: &[(&str, &str)], file: Option<(&str, &str, &[u8])>| {
        let (content_type, body) = multipart(fields, file);
        http.post(server.url("/webchat/files")).bearer_auth(token).header("content-type", content_type).body(body).send()
    };

    let sent = upload(&token, &[("client_id", "f1"), ("text", "my receipt")], Some(("receipt.png", "image/png", PNG))).await.unwrap();
    assert_eq!(sent.status().as_u16(), 201);
    let sent: Value = sent.json().await.unwrap();
    assert_eq!(sent["message"]["text"], "my receipt");
    let file = &sent["message"]["attachments"][0];
    assert_eq!((file["name"].as_str(), file["content_type"].as_str(), file["size"].as_u64()), (Some("receipt.png"), Some("image/png"), Some(PNG.len() as u64)));
    let url = file["url"].as_str().unwrap().to_string();
    let files_kept = stored_files(&server);

    let downloaded = http.get(server.url(&url)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(downloaded.status().as_u16(), 200);
    let header = |name: &str| downloaded.headers()[name].to_str().unwrap().to_string();
    assert_eq!((header("content-type"), header("x-content-type-options")), ("image/png".to_string(), "nosniff".to_string()));
    assert!(header("content-security-policy").contains("sandbox"));
    assert_eq!(downloaded.bytes().await.unwrap().as_ref(), PNG);
    let (_, stranger) = server.new_visitor().await;
    assert_eq!(http.get(server.url(&url)).bearer_auth(&stranger).send().await.unwrap().status().as_u16(), 404, "another visitor's file");
    assert_eq!(http.get(server.url(&url)).send().await.unwrap().status().as_u16(), 401, "no token");

    // Like every customer file, it waits for review: stored with the bot's handoff answer.
    let conversation = switchboard_models::ConversationId::parse(sent["conversation"]["id"].as_str().unwrap()).unwrap();
    assert_eq!(widget.next_reply().await["sender"], "bot");
    let filter = switchboard_core::ports::DocumentFilter { conversation: Some(conversation), limit: 5, ..Default::default() };
    assert_eq!(server.engine().documents().documents(&filter).await.unwrap().len(), 1);

    // Refused with the reason, and nothing of a refused or repeated file is kept.
    let repeated = upload(&token, &[("client_id", "f1")], Some(("receipt.png", "image/png", PNG))).await.unwrap();
    assert_eq!(repeated.status().as_u16(), 200, "the same client_id is the same message");
    let fake = upload(&token, &[("client_id", "f2")], Some(("invoice.pdf", "application/pdf", b"MZ\x90\x00\x03\x00 a program"))).await.unwrap();
    assert_eq!(fake.status().as_u16(), 422);
    assert!(fake.text().await.unwrap().contains("not an accepted type"));
    let big = [PNG, &vec![0u8; 70 * 1024]].concat();
    let over_limit = upload(&token, &[("client_id", "f3")], Some(("big.png", "image/png", &big))).await.unwrap();
    assert_eq!(over_limit.status().as_u16(), 422);
    assert!(over_limit.text().await.unwrap().contains("the limit is 65536 bytes"));
    let huge = [PNG, &vec![0u8; 200 * 1024]].concat();
    let oversized = upload(&token, &[("client_id", "f3")], Some(("huge.png", "image/png", &huge))).await.unwrap();
    assert_eq!(oversized.status().as_u16(), 413, "refused before the body is read");
    assert!(oversized.text().await.unwrap().contains("larger than 64 KiB"));
    let two = {
        let (content_type, mut body) = multipart(&[("client_id", "f4")], Some(("a.png", "image/png", PNG)));
        let (_, second) = multipart(&[], Some(("b.png", "image/png", PNG)));
        body.splice(body.len() - "------switchboard-test-boundary--\r\n".len().., second);
        http.post(server.url("/webchat/files")).bearer_auth(&token).header("content-type", content_type).body(body).send().await.unwrap()
    };
    assert_eq!(two.status().as_u16(), 400, "one file per message");
    let without = upload(&token, &[("client_id", "f5")], None).await.unwrap();
    assert_eq!(without.status().as_u16(), 400);
    assert!(without.text().await.unwrap().contains("the file is missing"));
    assert_eq!(stored_files(&server), files_kept, "no refused or repeated upload left a file behind");

    // The agent's file, sent through the API, reaches the widget and downloads with the visitor's token.
    let password = "files test password";
    let store = server.engine().store();
    switchboard_admin_web::accounts::create_account(store.as_ref(), "dana@example.com", "Dana", switchboard_models::Role::Agent, password, None).await.unwrap();
    let panel = switchboard_tests::panel::PanelClient::sign_in(&server.url(""), "dana@example.com", password).await;
    let api_token = panel.new_api_token("files").await;
    let api_upload = |file: Option<(&str, &str, &[u8])>| {
        let (content_type, body) = multipart(&[("text", "Here are the steps.")], file);
        http.post(server.url(&format!("/api/conversations/{conversation}/files"))).bearer_auth(&api_token).header("content-type", content_type).body(body).send()
    };
    let refused = api_upload(Some(("steps.pdf", "application/pdf", b"MZ\x90\x00 a program"))).await.unwrap();
    assert_eq!(refused.status().as_u16(), 422, "an agent's file is checked like a customer's");
    assert_eq!(stored_files(&server), files_kept, "and nothing of it is kept");
    let sent = api_upload(Some(("steps.pdf", "application/pdf", PDF))).await.unwrap();
    assert_eq!(sent.status().as_u16(), 201);
    let sent: Value = sent.json().await.unwrap();
    assert_eq!(sent["message"]["attachments"][0]["name"], "steps.pdf");
    let reply = loop {
        let reply = widget.next_reply().await;
        if reply["text"] == "Here are the steps." {
            break reply;
        }
    };
    let pdf_url = reply["attachments"][0]["url"].as_str().unwrap();
    let pdf = http.get(server.url(pdf_url)).bearer_auth(&token).send().await.unwrap();
    assert!(pdf.headers()["content-disposition"].to_str().unwrap().starts_with("attachment; filename=\"steps.pdf\""));
    assert_eq!(pdf.bytes().await.unwrap().as_ref(), PDF);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_real_browser_the_widget_sends_a_photo_and_downloads_the_agents_pdf() {
    use switchboard_tests::samples::{PDF, PNG};
    let server = TestServer::start().await;
    let password = "files test password";
    let dana = switchboard_admin_web::accounts::create_account(server.engine().store().as_ref(), "dana@example.com", "Dana", switchboard_models::Role::Agent, password, None)
        .await
        .unwrap();
    let samples = tempfile::tempdir().unwrap();
    let (png, pdf) = (samples.path().join("receipt.png"), samples.path().join("steps.pdf"));
    std::fs::write(&png, PNG).unwrap();
    std::fs::write(&pdf, PDF).unwrap();
    let args = vec![
        server.url(""),
        crate::browser::artifacts(),
        png.display().to_string(),
        pdf.display().to_string(),
        "dana@example.com".into(),
        password.into(),
    ];
    crate::browser::run_script("widget-files.mjs", args, "browser widget files test passed").await;

    let documents = server.engine().documents().documents(&switchboard_core::ports::DocumentFilter { limit: 5, ..Default::default() }).await.unwrap();
    let photo = &documents.iter().find(|d| d.document.channel == Channel::WebChat).expect("the photo waits for review").document;
    assert_eq!((photo.file.file_name.as_str(), photo.file.content_type.as_str()), ("receipt.png", "image/png"));
    let messages = server.engine().store().conversation_messages(photo.conversation_id, 0, 50).await.unwrap();
    let reply = messages.iter().find(|m| m.sender == Sender::Agent).expect("the agent's reply");
    assert_eq!((reply.text.as_str(), reply.agent_id), ("Here are the steps.", Some(dana.id)));
    assert_eq!(reply.attachments.iter().map(|a| a.file_name.as_str()).collect::<Vec<_>>(), ["steps.pdf"]);
}

#[tokio::test]
async fn the_sites_signed_user_is_one_visitor_on_every_device_and_a_forged_one_stays_anonymous() {
    use switchboard_channels::webchat::sign_site_user;
    const SECRET: &str = "the site's long shared secret";
    let server = TestServer::start_with(|c| {
        c.webchat.identity_secret = Some(switchboard::config::Secret(SECRET.into()));
        c.webchat.prechat_fields = vec!["name".into(), "email".into()];
    })
    .await;
    let http = reqwest::Client::new();
    let session = |body: Value| http.post(server.url("/webchat/session")).json(&body).send();
    let ann = json!({"user": {"id": "42", "name": "Ann Lee", "email": "Ann@Example.com", "hash": sign_site_user(SECRET.as_bytes(), "42")}});
    let laptop: Value = session(ann.clone()).await.unwrap().json().await.unwrap();
    assert_eq!(laptop["identified"], true);
    let token = laptop["token"].as_str().unwrap();
    let sent = http.post(server.url("/webchat/messages")).bearer_auth(token).json(&json!({"client_id": "d1", "text": "hello from my laptop"})).send().await.unwrap();
    assert_eq!(sent.status().as_u16(), 201);

    // Another device, the same signed user: the same visitor and history.
    let phone: Value = session(ann).await.unwrap().json().await.unwrap();
    assert_eq!(phone["visitor_id"], laptop["visitor_id"]);
    let history = get_json(&server, "/webchat/messages", phone["token"].as_str().unwrap()).await;
    assert!(history["messages"].as_array().unwrap().iter().any(|m| m["text"] == "hello from my laptop"), "{history}");
    let visitor = laptop["visitor_id"].as_str().unwrap();
    let contact = server.engine().store().contact_by_external_id(Channel::WebChat, visitor).await.unwrap().unwrap();
    assert_eq!((contact.display_name.as_deref(), contact.email.as_deref()), (Some("Ann Lee"), Some("ann@example.com")), "agents see who it is");
    // The site vouched for her address: her mail to us is hers too, joined once.
    let store = server.engine().store();
    let identities: Vec<(Channel, String)> = store.identities(contact.id).await.unwrap().into_iter().map(|c| (c.channel, c.external_id)).collect();
    assert!(identities.contains(&(Channel::Email, "ann@example.com".into())), "{identities:?}");
    let joins = store.contact_links(contact.id).await.unwrap();
    assert_eq!(joins.iter().map(|j| j.proof).collect::<Vec<_>>(), [switchboard_models::LinkProof::SiteIdentity]);

    // Posing as user 42 without the site's signature: an anonymous visitor who sees nothing of hers.
    let forged: Value = session(json!({"user": {"id": "42", "name": "Mallory", "hash": sign_site_user(b"a guessed secret", "42")}})).await.unwrap().json().await.unwrap();
    assert_eq!(forged["identified"], false);
    assert_ne!(forged["visitor_id"], laptop["visitor_id"]);
    let seen = get_json(&server, "/webchat/messages", forged["token"].as_str().unwrap()).await;
    assert_eq!(seen["messages"], json!([]));
    let still = server.engine().store().contact_by_external_id(Channel::WebChat, visitor).await.unwrap().unwrap();
    assert_eq!(still.display_name.as_deref(), Some("Ann Lee"), "nobody renames her");
    let malformed = http.post(server.url("/webchat/session")).header("content-type", "application/json").body("{\"user\": 42}").send().await.unwrap();
    assert_eq!(malformed.status().as_u16(), 400);

    // An anonymous visitor answers the pre-chat form the config asks for.
    let config = http.get(server.url("/webchat/config")).send().await.unwrap().json::<Value>().await.unwrap();
    assert_eq!(config["prechat_fields"], json!(["name", "email"]));
    let anonymous = forged["token"].as_str().unwrap();
    let profile = |body: Value| http.post(server.url("/webchat/profile")).bearer_auth(anonymous).json(&body).send();
    let refused = profile(json!({"name": "Bo", "email": "not an address"})).await.unwrap();
    assert_eq!(refused.status().as_u16(), 422);
    assert!(refused.text().await.unwrap().contains("is not an email address"));
    assert_eq!(profile(json!({"name": "Bo", "email": "bo@example.com"})).await.unwrap().status().as_u16(), 204);
    let bo = server.engine().store().contact_by_external_id(Channel::WebChat, forged["visitor_id"].as_str().unwrap()).await.unwrap().unwrap();
    assert_eq!((bo.display_name.as_deref(), bo.email.as_deref()), (Some("Bo"), Some("bo@example.com")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_real_browser_a_signed_user_is_named_in_the_panel_and_a_visitor_fills_the_pre_chat_form() {
    const SECRET: &str = "the site's long shared secret";
    let server = TestServer::start_with(|c| {
        c.webchat.identity_secret = Some(switchboard::config::Secret(SECRET.into()));
        c.webchat.prechat_fields = vec!["name".into(), "email".into()];
    })
    .await;
    let password = "identity test password";
    switchboard_admin_web::accounts::create_account(server.engine().store().as_ref(), "root@example.com", "Root", switchboard_models::Role::Admin, password, None)
        .await
        .unwrap();
    let user = json!({"id": "42", "name": "Ann Lee", "email": "ann@example.com", "hash": switchboard_channels::webchat::sign_site_user(SECRET.as_bytes(), "42")});
    let args = vec![server.url(""), crate::browser::artifacts(), user.to_string(), "root@example.com".into(), password.into()];
    crate::browser::run_script("widget-identity.mjs", args, "browser widget identity test passed").await;
    let bo = server.engine().listings().list_conversations(&switchboard_core::ConversationFilter::default()).await.unwrap();
    assert!(bo.iter().any(|s| s.customer == "Bo Visitor"), "the pre-chat name is the customer's");
}

#[tokio::test]
async fn the_customer_and_the_agent_each_see_the_other_typing() {
    let server = TestServer::start().await;
    let password = "typing test password";
    let store = server.engine().store();
    switchboard_admin_web::accounts::create_account(store.as_ref(), "dana@example.com", "Dana", switchboard_models::Role::Agent, password, None).await.unwrap();
    switchboard_admin_web::accounts::create_account(store.as_ref(), "eli@example.com", "Eli", switchboard_models::Role::Agent, password, None).await.unwrap();
    let dana = switchboard_tests::panel::PanelClient::sign_in(&server.url(""), "dana@example.com", password).await;
    let (_, mut widget) = visitor_socket(&server).await;
    widget.say("t1", "I want to talk to a person").await;
    let ack = widget.next_of("ack").await;
    let id = ack["conversation"]["id"].as_str().unwrap().to_string();
    // The handoff is done before anyone acts on the conversation.
    while !widget.next_reply().await["text"].as_str().unwrap_or("").contains("handed your conversation") {}

    // The customer types: the agent's open panel hears it.
    let mut events = dana.event_stream("/panel/events").await;
    widget.send_json(json!({"type": "typing"})).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline - tokio::time::Instant::now();
        let event: Value = serde_json::from_str(&tokio::time::timeout(left, events.next_event()).await.expect("no typing news").unwrap()).unwrap();
        if event["kind"] == "typing" {
            assert_eq!(event["conversation_id"], json!(id));
            break;
        }
    }

    // The agent types: the widget names them.
    let path = format!("/panel/conversations/{id}/typing");
    assert_eq!(dana.post(&path, &[]).await.status.as_u16(), 204);
    // (The bot's own "typing" frames around its handoff answer carry no name.)
    let typing = loop {
        let frame = widget.next_of("typing").await;
        if frame["name"].is_string() {
            break frame;
        }
    };
    assert_eq!((typing["on"].as_bool(), typing["name"].as_str()), (Some(true), Some("Dana")));
    assert_eq!(dana.post_raw(&path, &[("csrf", "forged")]).await.status.as_u16(), 403, "the form's token is checked");

    // Once Dana has it, a colleague's typing is not announced as hers or theirs.
    let conversation = switchboard_models::ConversationId::parse(&id).unwrap();
    let dana_id = store.agent_by_email("dana@example.com").await.unwrap().unwrap().id;
    server.engine().change_ticket(conversation, dana_id, switchboard_core::TicketChange::Take, None).await.unwrap();
    let eli = switchboard_tests::panel::PanelClient::sign_in(&server.url(""), "eli@example.com", password).await;
    assert_eq!(eli.post(&path, &[]).await.status.as_u16(), 403);
}

#[tokio::test]
async fn the_customer_sees_when_an_agent_has_opened_their_conversation() {
    let server = TestServer::start().await;
    let password = "seen test password";
    let store = server.engine().store();
    for (email, name) in [("dana@example.com", "Dana"), ("eli@example.com", "Eli")] {
        switchboard_admin_web::accounts::create_account(store.as_ref(), email, name, switchboard_models::Role::Agent, password, None).await.unwrap();
    }
    let dana = switchboard_tests::panel::PanelClient::sign_in(&server.url(""), "dana@example.com", password).await;
    let (token, mut widget) = visitor_socket(&server).await;
    widget.say("s1", "I want to talk to a person").await;
    let ack = widget.next_of("ack").await;
    let (id, asked) = (ack["conversation"]["id"].as_str().unwrap().to_string(), ack["message"]["seq"].as_i64().unwrap());
    while !widget.next_reply().await["text"].as_str().unwrap_or("").contains("handed your conversation") {}

    // Dana opens the conversation: the customer's message is seen, live.
    assert_eq!(dana.get(&format!("/panel/conversations/{id}")).await.status.as_u16(), 200);
    assert_eq!(widget.next_of("seen").await["seq"].as_i64(), Some(asked));
    // A widget opened later knows it too.
    let mut later = server.connect(&token).await;
    assert_eq!(later.next_of("ready").await["conversation"]["seen_up_to"].as_i64(), Some(asked));

    // The customer writes again: not seen until an agent who may act opens it again.
    widget.say("s2", "Is anyone there?").await;
    let again = widget.next_of("ack").await["message"]["seq"].as_i64().unwrap();
    let conversation = switchboard_models::ConversationId::parse(&id).unwrap();
    let dana_id = store.agent_by_email("dana@example.com").await.unwrap().unwrap().id;
    server.engine().change_ticket(conversation, dana_id, switchboard_core::TicketChange::Take, None).await.unwrap();
    let eli = switchboard_tests::panel::PanelClient::sign_in(&server.url(""), "eli@example.com", password).await;
    eli.get(&format!("/panel/conversations/{id}")).await;
    assert_eq!(store.seen_by_agent(conversation).await.unwrap(), Some(asked), "another agent's look is not the owner's");
    dana.get(&format!("/panel/conversations/{id}")).await;
    assert_eq!(widget.next_of("seen").await["seq"].as_i64(), Some(again));
    assert_eq!(store.seen_by_agent(conversation).await.unwrap(), Some(again));
}
