//! Fuzzing what arrives from outside (bolero): widget frames on a real socket, Telegram webhook
//! bodies at a real server, MIME mail, intents files, uploads and link requests. Under
//! `cargo test` each target runs random and generated inputs (and, when present, the corpus
//! and crash cases bolero keeps in `tests/it/__fuzz__/<target>/`); `cargo bolero test` runs
//! them coverage-guided. What a target checks besides "no panic" is said in it.

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::panic::AssertUnwindSafe;
use std::sync::Mutex;
use std::time::Duration;
use switchboard::config::{Secret, TelegramMode};
use switchboard_tests::TestServer;
use switchboard_tests::fake_telegram::{FakeTelegram, TOKEN};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const ITERATIONS: usize = 2_000;

/// A frame kind, a client id, a text and a number, or raw text: a widget frame, well formed
/// or not.
fn frame_of((kind, id, text, number, raw): &(u8, String, String, i64, bool)) -> String {
    if *raw {
        return text.clone();
    }
    let kinds = ["send", "history", "seen", "typing", "ping", "unknown"];
    let kind = kinds[usize::from(*kind) % kinds.len()];
    match kind {
        "send" => json!({"type": kind, "client_id": id, "text": text}),
        "history" => json!({"type": kind, "after": number}),
        "seen" => json!({"type": kind, "seq": number, "extra": text}),
        _ => json!({"type": kind}),
    }
    .to_string()
}

#[test]
fn widget_frames_of_any_shape_get_an_answer_and_never_break_the_socket() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(TestServer::start_with(|c| {
        // Flood limits are tested elsewhere; here every frame should reach the parser.
        c.webchat.rate_limit_per_minute = 100_000;
        c.webchat.rate_limit_burst = 100_000;
        c.webchat.messages_per_address_per_minute = 100_000;
    }));
    let socket = runtime.block_on(async {
        let (_, token) = server.new_visitor().await;
        let request = format!("ws://{}/webchat/ws?token={token}", server.addr).into_client_request().unwrap();
        tokio_tungstenite::connect_async(request).await.unwrap().0
    });
    let socket = Mutex::new(socket);
    let runtime = AssertUnwindSafe(&runtime);
    bolero::check!().with_type::<(u8, String, String, i64, bool)>().with_iterations(ITERATIONS).for_each(|input| {
        let frame = frame_of(input);
        runtime.block_on(async {
            let mut socket = socket.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            socket.send(WsMessage::Text(frame.clone().into())).await.unwrap();
            // A ping after it is the barrier: everything the frame caused comes first.
            socket.send(WsMessage::Text(json!({"type": "ping"}).to_string().into())).await.unwrap();
            loop {
                let next = tokio::time::timeout(Duration::from_secs(10), socket.next()).await.expect("an answer within 10 s");
                let Some(Ok(WsMessage::Text(text))) = next else { panic!("the socket closed after {frame:?}: {next:?}") };
                let answer: Value = serde_json::from_str(&text).expect("every server frame is JSON");
                match answer["type"].as_str() {
                    Some("pong") => break,
                    Some("error") => assert!(answer["message"].as_str().is_some_and(|m| !m.is_empty()) && answer["code"].is_string(), "{answer}"),
                    Some(_) => {}
                    None => panic!("a frame without a type: {answer}"),
                }
            }
        });
    });
    runtime.block_on(async move {
        let mut server = server;
        server.stop().await;
    });
}

/// A Telegram update with generated text, entities and a chat, or raw bytes.
fn update_of((text, offset, length, chat, kind, raw): &(String, u16, u16, i64, u8, Vec<u8>)) -> Vec<u8> {
    if kind % 4 == 3 {
        return raw.clone();
    }
    let entity_kind = ["mention", "bot_command", "bold", "text_link"][usize::from(*kind) % 4];
    let entity = json!([{"type": entity_kind, "offset": offset, "length": length, "url": "https://example.com"}]);
    let private = kind % 2 == 0;
    let chat_json = if private { json!({"id": chat, "type": "private", "first_name": "Fuzz"}) } else { json!({"id": -chat.abs() - 1, "type": "supergroup", "title": "Group"}) };
    json!({
        "update_id": chat.unsigned_abs() % 1_000_000,
        "message": {
            "message_id": offset, "date": 1_700_000_000, "chat": chat_json,
            "from": {"id": 4242, "is_bot": false, "first_name": "Fuzz", "language_code": text.chars().take(3).collect::<String>()},
            "text": text, "entities": entity,
        }
    })
    .to_string()
    .into_bytes()
}

#[test]
fn telegram_webhook_bodies_of_any_shape_are_stored_ignored_or_refused_never_failed() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (telegram, server) = runtime.block_on(async {
        let telegram = FakeTelegram::start().await;
        let url = telegram.url();
        let server = TestServer::start_with(move |c| {
            c.telegram.token = Some(Secret(TOKEN.into()));
            c.telegram.api_url = Some(url);
            c.telegram.mode = TelegramMode::Webhook;
            c.telegram.webhook_url = Some("https://support.example.com/telegram/webhook".into());
            c.telegram.webhook_secret = Some(Secret("fuzz-secret".into()));
        })
        .await;
        (telegram, server)
    });
    let http = AssertUnwindSafe(reqwest::Client::new());
    let url = server.url("/telegram/webhook");
    let runtime = AssertUnwindSafe(&runtime);
    bolero::check!().with_type::<(String, u16, u16, i64, u8, Vec<u8>)>().with_iterations(ITERATIONS).for_each(|input| {
        let body = update_of(input);
        let status = runtime.block_on(async {
            http.post(&url).header("x-telegram-bot-api-secret-token", "fuzz-secret").header("content-type", "application/json").body(body.clone()).send().await.unwrap().status()
        });
        assert!(status == 200 || status == 400, "HTTP {status} for {}", String::from_utf8_lossy(&body));
    });
    runtime.block_on(async move {
        let mut server = server;
        server.stop().await;
        drop(telegram);
    });
}

#[test]
fn mail_of_any_shape_is_classified_without_panicking_and_ids_are_only_ours_when_ours() {
    use switchboard_channels::email::{bounce, threading};
    bolero::check!().with_type::<(Vec<u8>, String, String, bool)>().with_iterations(ITERATIONS * 10).for_each(|(raw, header, body, templated)| {
        let mail = if *templated {
            format!(
                "From: {header}\r\nTo: support@example.test\r\nSubject: {body}\r\nMessage-ID: <{header}>\r\nIn-Reply-To: {body}\r\n\
                 Content-Type: multipart/report; report-type=delivery-status; boundary=\"{header}\"\r\n\r\n--{header}\r\n{body}\r\n--{header}--\r\n"
            )
            .into_bytes()
        } else {
            raw.clone()
        };
        let _ = bounce::classify(&mail);
        for text in [header.as_str(), body.as_str()] {
            let found = threading::conversation_in_message_id(text);
            if let Some(conversation) = found {
                assert!(text.contains(&conversation.to_string()), "an id is found only where it is written: {text:?}");
            }
            let _ = threading::our_reply_in_message_id(text);
            let _ = threading::conversation_in_address(text, "support@example.test");
        }
    });
}

#[test]
fn intents_files_of_any_shape_load_or_are_refused_with_a_reason() {
    let path = std::path::Path::new("intents.toml");
    bolero::check!().with_type::<(String, String, String, bool)>().with_iterations(ITERATIONS * 10).for_each(|(name, example, answer, raw)| {
        let text = if *raw {
            format!("{name}{example}{answer}")
        } else {
            format!("[[intent]]\nname = {name:?}\ncategory = \"billing\"\nexamples = [{example:?}, {answer:?}]\nanswer = {answer:?}\n")
        };
        if let Err(error) = switchboard_nlp::IntentSet::parse(path, &text) {
            assert!(!error.to_string().trim().is_empty(), "a refusal says why");
        }
    });
}

#[test]
fn uploads_of_any_bytes_and_names_are_sniffed_by_content_and_named_safely() {
    use switchboard_core::attachments::{check_upload, clean_file_name, sniff};
    bolero::check!().with_type::<(Vec<u8>, String, u16)>().with_iterations(ITERATIONS * 10).for_each(|(bytes, name, limit)| {
        let limit = u64::from(*limit);
        match check_upload(bytes, limit) {
            Ok(kind) => {
                assert!(bytes.len() as u64 <= limit, "{} bytes accepted under a limit of {limit}", bytes.len());
                assert_eq!(sniff(bytes), Some(kind), "accepted only for what the content is");
            }
            Err(error) => assert!(!error.to_string().is_empty()),
        }
        let cleaned = clean_file_name(name, sniff(bytes).unwrap_or("application/octet-stream"));
        assert!(!cleaned.is_empty() && !cleaned.contains('/') && !cleaned.contains('\\') && !cleaned.contains('\0'), "{name:?} became {cleaned:?}");
        assert!(cleaned != "." && cleaned != "..", "{name:?} became {cleaned:?}");
    });
}

#[test]
fn link_requests_are_read_from_any_text_without_panicking() {
    bolero::check!().with_type::<String>().with_iterations(ITERATIONS * 10).for_each(|text| {
        let _ = switchboard_core::identity::link_request(text);
        let _ = switchboard_core::search::search_words(text);
    });
}
