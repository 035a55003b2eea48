//! Telegram end to end: teloxide inside the server against a local fake Bot API.

use serde_json::json;
use std::time::Duration;
use switchboard::config::{Secret, TelegramMode};
use switchboard_models::{Channel, DeliveryState, Handler, Message, Sender};
use switchboard_tests::TestServer;
use switchboard_tests::fake_telegram::{
    BOT_USERNAME, Failure, FakeTelegram, TOKEN, group_text, private_document, private_photo, private_text,
};

const WAIT: Duration = Duration::from_secs(15);
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR fake image body";
const PDF: &[u8] = b"%PDF-1.7\n1 0 obj << >> endobj\ntrailer\n%%EOF";

async fn server_with(telegram: &FakeTelegram, adjust: impl FnOnce(&mut switchboard::config::Config)) -> TestServer {
    let url = telegram.url();
    TestServer::start_with(move |c| {
        c.telegram.token = Some(Secret(TOKEN.into()));
        c.telegram.api_url = Some(url);
        adjust(c);
    })
    .await
}

/// The messages stored for a Telegram contact, once at least `count` exist.
async fn stored(server: &TestServer, contact: &str, count: usize) -> Vec<Message> {
    let store = server.engine().store();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(contact) = store.contact_by_external_id(Channel::Telegram, contact).await.unwrap() {
            let messages = store.contact_messages(contact.id, 0, 100).await.unwrap();
            if messages.len() >= count {
                return messages;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "fewer than {count} messages stored for {contact}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Updates are handled one at a time, in order: once a later update from another chat is
/// answered, every update pushed before it has been handled (a barrier, not a pause).
async fn barrier(telegram: &FakeTelegram, user: i64) {
    telegram.push_message(private_text(user, 1, "hello"));
    telegram.wait_sent(user, 1, WAIT).await;
}

#[tokio::test]
async fn start_text_and_a_handoff_in_a_private_chat() {
    let telegram = FakeTelegram::start().await;
    let server = server_with(&telegram, |_| {}).await;
    telegram.push_message(private_text(501, 1, "/start"));
    let welcome = telegram.wait_sent(501, 1, WAIT).await;
    assert!(welcome[0].text.as_deref().unwrap().starts_with("Hi!"), "{welcome:?}");

    telegram.push_message(private_text(501, 2, "I forgot my password"));
    let sent = telegram.wait_sent(501, 2, WAIT).await;
    assert!(sent[1].text.as_deref().unwrap().contains("Forgot password"), "{sent:?}");
    assert_eq!(sent[1].parse_mode.as_deref(), Some("HTML"));

    telegram.push_message(private_text(501, 3, "I want to talk to a person"));
    let sent = telegram.wait_sent(501, 3, WAIT).await;
    assert!(sent[2].text.as_deref().unwrap().contains("handed your conversation"), "{sent:?}");
    let messages = stored(&server, "501", 6).await;
    let conversation = server.engine().store().conversation(messages[5].conversation_id).await.unwrap().unwrap();
    assert_eq!(conversation.handler, Handler::Queue);
    assert_eq!(messages[0].sender, Sender::Customer);
    assert_eq!(messages[0].external_id.as_deref(), Some("501:1"));

    telegram.push_message(private_text(501, 4, "hello?"));
    barrier(&telegram, 591).await;
    assert_eq!(stored(&server, "501", 7).await.len(), 7, "the message stored, no answer to it");
    assert_eq!(telegram.sent().iter().filter(|s| s.chat_id == 501).count(), 3, "the bot is quiet after the handoff");
}

/// The language Telegram reports for the user is the bot's for a message too short to tell.
#[tokio::test]
async fn the_users_telegram_language_is_the_bots_for_a_short_message() {
    let telegram = FakeTelegram::start().await;
    let german = "Ich habe Ihr Anliegen an unser Team übergeben.";
    let server = server_with(&telegram, move |c| {
        let texts = ["handoff_offline", "handoff_queued"].map(|key| (key.to_string(), german.to_string()));
        c.bot.languages.insert("de".into(), texts.into());
    })
    .await;
    let mut update = private_text(521, 1, "agent");
    update["from"]["language_code"] = json!("de");
    telegram.push_message(update);
    let sent = telegram.wait_sent(521, 1, WAIT).await;
    assert_eq!(sent[0].text.as_deref(), Some(german), "{sent:?}");
    let messages = stored(&server, "521", 2).await;
    let conversation = server.engine().store().conversation(messages[0].conversation_id).await.unwrap().unwrap();
    assert_eq!(conversation.language.as_deref(), Some("de"));
    // Without a reported language: the default texts.
    telegram.push_message(private_text(522, 1, "agent"));
    let sent = telegram.wait_sent(522, 1, WAIT).await;
    assert!(sent[0].text.as_deref().unwrap().contains("handed your conversation"), "{sent:?}");
}

#[tokio::test]
async fn agent_replies_reach_the_chat_escaped_with_files() {
    let telegram = FakeTelegram::start().await;
    let server = server_with(&telegram, |_| {}).await;
    telegram.push_message(private_text(502, 1, "talk to a human please"));
    telegram.wait_sent(502, 1, WAIT).await;
    let conversation_id = stored(&server, "502", 2).await[0].conversation_id;
    let dana = server.add_agent("Dana", "dana@example.com").await;

    let engine = server.engine();
    let pdf = engine.accept_upload("refund-form.pdf", PDF).await.unwrap();
    let png = engine.accept_upload("screenshot.png", PNG).await.unwrap();
    engine.agent_reply(conversation_id, dana, "Use <b>this</b> form & reply".into(), vec![]).await.unwrap();
    engine.agent_reply(conversation_id, dana, "Here you go".into(), vec![png, pdf]).await.unwrap();

    let sent = telegram.wait_sent(502, 5, WAIT).await;
    assert_eq!(sent[1].text.as_deref(), Some("Dana joined the conversation."));
    assert_eq!(sent[2].text.as_deref(), Some("Use &lt;b&gt;this&lt;/b&gt; form &amp; reply"), "HTML is escaped");
    assert_eq!(sent[3].method, "sendphoto");
    assert_eq!(sent[3].file_bytes.as_deref(), Some(PNG));
    assert_eq!(sent[3].text.as_deref(), Some("Here you go"), "the text rides as the first file's caption");
    assert_eq!(sent[4].method, "senddocument");
    assert_eq!(sent[4].file_name.as_deref(), Some("refund-form.pdf"));
    assert_eq!(sent[4].file_bytes.as_deref(), Some(PDF));
    let conversation = engine.store().conversation(conversation_id).await.unwrap().unwrap();
    assert_eq!(conversation.handler, Handler::Agent(dana));
}

#[tokio::test]
async fn photos_and_documents_from_the_customer_are_stored_for_the_agent() {
    let telegram = FakeTelegram::start().await;
    let server = server_with(&telegram, |_| {}).await;
    telegram.add_file("photo-1", PNG.to_vec());
    telegram.add_file("doc-1", PDF.to_vec());
    telegram.add_file("fake-1", b"MZ\x90\x00 this is a program".to_vec());

    telegram.push_message(private_photo(503, 1, "photo-1", PNG.len(), Some("proof of payment")));
    telegram.push_message(private_document(503, 2, "doc-1", "statement.pdf", PDF.len()));
    telegram.push_message(private_document(503, 3, "fake-1", "invoice.pdf", 24));
    let messages = stored(&server, "503", 3).await;
    let customer: Vec<&Message> = messages.iter().filter(|m| m.sender == Sender::Customer).collect();
    assert_eq!(customer.len(), 2, "the disguised program is not stored: {messages:#?}");
    assert_eq!(customer[0].text, "proof of payment");
    assert_eq!(customer[0].attachments[0].content_type, "image/png");
    assert_eq!(customer[1].attachments[0].file_name, "statement.pdf");
    assert_eq!(server.engine().attachment_bytes(&customer[1].attachments[0]).await.unwrap(), PDF);
    let conversation = server.engine().store().conversation(customer[0].conversation_id).await.unwrap().unwrap();
    assert_eq!(
        conversation.escalation.unwrap().reason,
        switchboard_models::EscalationReason::DocumentReview,
        "a document goes to a person"
    );
    let notices = telegram.wait_sent(503, 2, WAIT).await;
    assert!(notices.iter().any(|s| s.text.as_deref().unwrap_or_default().contains("couldn't accept \"invoice.pdf\"")), "{notices:#?}");
}

#[tokio::test]
async fn voice_video_and_stickers_are_answered_with_what_the_bot_can_read() {
    let telegram = FakeTelegram::start().await;
    let server = server_with(&telegram, |_| {}).await;
    let with = |id: i64, key: &str, value: serde_json::Value| {
        let mut message = private_text(512, id, "");
        let object = message.as_object_mut().unwrap();
        object.remove("text");
        object.insert(key.into(), value);
        message
    };
    telegram.push_message(with(1, "voice", json!({"file_id": "v1", "file_unique_id": "v", "duration": 3, "mime_type": "audio/ogg", "file_size": 9000})));
    let told = telegram.wait_sent(512, 1, WAIT).await;
    assert_eq!(told[0].text.as_deref(), Some("Sorry, I can't open voice messages or audio here. Please write your message, or send a photo or a PDF."));
    // A notice is queued before its update counts as handled: an outage and a restart delay
    // it, and it is sent once.
    telegram.set_outage(true);
    telegram.push_message(with(2, "video_note", json!({"file_id": "n1", "file_unique_id": "n", "length": 240, "duration": 5})));
    let deadline = tokio::time::Instant::now() + WAIT;
    while telegram.refused_sends() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "the notice was never tried during the outage");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut server = server;
    server.restart().await;
    telegram.set_outage(false);
    let told = telegram.wait_sent(512, 2, WAIT).await;
    assert!(told[1].text.as_deref().unwrap().starts_with("Sorry, I can't open videos here."), "{told:?}");
    let contact = server.engine().store().contact_by_external_id(Channel::Telegram, "512").await.unwrap();
    assert!(contact.is_none(), "nothing to store: the customer was told what works");

    // A sticker says what its emoji says.
    let sticker = json!({"file_id": "s1", "file_unique_id": "s", "type": "regular", "width": 512, "height": 512,
        "is_animated": false, "is_video": false, "emoji": "👋"});
    telegram.push_message(with(3, "sticker", sticker));
    let messages = stored(&server, "512", 2).await;
    assert_eq!(messages.iter().find(|m| m.sender == Sender::Customer).map(|m| m.text.as_str()), Some("👋"));
    // The video's update may have been handled twice (before and after the restart); its notice is one row.
    telegram.wait_sent(512, 3, WAIT).await;
    assert_eq!(telegram.sent().iter().filter(|s| s.chat_id == 512).count(), 3, "two notices and the answer, none repeated");
}

#[tokio::test]
async fn a_repeated_update_is_stored_once() {
    let telegram = FakeTelegram::start().await;
    let server = server_with(&telegram, |_| {}).await;
    telegram.push_message(private_text(504, 7, "hello"));
    telegram.push_message(private_text(504, 7, "hello"));
    telegram.wait_sent(504, 1, WAIT).await;
    barrier(&telegram, 594).await;
    assert_eq!(stored(&server, "504", 2).await.len(), 2, "one message and one answer");
    assert_eq!(telegram.sent().iter().filter(|s| s.chat_id == 504).count(), 1);
}

#[tokio::test]
async fn a_restart_mid_stream_loses_nothing_and_repeats_nothing() {
    let telegram = FakeTelegram::start().await;
    let mut server = server_with(&telegram, |_| {}).await;
    for id in 1..=5 {
        telegram.push_message(private_text(505, id, &format!("hello {id}")));
    }
    server.restart().await;
    for id in 6..=8 {
        telegram.push_message(private_text(505, id, &format!("hello {id}")));
    }
    stored(&server, "505", 16).await;
    // Telegram resends everything it thinks is unconfirmed after the restart.
    server.restart().await;
    telegram.redeliver_all();
    let deadline = tokio::time::Instant::now() + WAIT;
    while telegram.pending_updates() > 0 {
        assert!(tokio::time::Instant::now() < deadline, "redelivered updates were never confirmed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    barrier(&telegram, 595).await;
    let messages = stored(&server, "505", 16).await;
    let texts: Vec<&str> = messages.iter().filter(|m| m.sender == Sender::Customer).map(|m| m.text.as_str()).collect();
    assert_eq!(texts, (1..=8).map(|i| format!("hello {i}")).collect::<Vec<_>>(), "each once, in order");
    assert_eq!(messages.len(), 16, "and each answered once");
}

#[tokio::test]
async fn flood_control_is_waited_out_and_a_blocked_user_is_not_retried() {
    let telegram = FakeTelegram::start().await;
    let server = server_with(&telegram, |_| {}).await;
    telegram.fail_next_send(Failure::TooManyRequests { retry_after: 1 });
    let started = tokio::time::Instant::now();
    telegram.push_message(private_text(506, 1, "hello"));
    telegram.wait_sent(506, 1, WAIT).await;
    assert!(started.elapsed() >= Duration::from_secs(1), "retry_after was honoured");
    assert_eq!(telegram.refused_sends(), 1);

    telegram.block(507);
    telegram.push_message(private_text(507, 1, "hello"));
    let store = server.engine().store();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let contact = store.contact_by_external_id(Channel::Telegram, "507").await.unwrap();
        if contact.is_some_and(|c| c.unreachable_since.is_some()) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the blocked contact was never marked unreachable");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Refused for good in the same pass that marked the contact: nothing is left to retry.
    let contact = store.contact_by_external_id(Channel::Telegram, "507").await.unwrap().unwrap();
    let replies: Vec<_> = store.contact_messages(contact.id, 0, 100).await.unwrap().into_iter().filter(|m| m.sender == Sender::Bot).collect();
    assert!(!replies.is_empty() && replies.iter().all(|m| m.delivery.as_ref().is_some_and(|d| d.state == DeliveryState::Failed && d.next_attempt_at.is_none())), "{replies:#?}");
    assert_eq!(telegram.refused_sends(), 2, "one refused attempt for the blocked chat, no retries");
}

#[tokio::test]
async fn groups_are_served_only_when_the_bot_is_mentioned() {
    let telegram = FakeTelegram::start().await;
    let server = server_with(&telegram, |_| {}).await;
    telegram.push_message(group_text(-100, 601, 1, "hello everyone"));
    telegram.push_message(group_text(-100, 601, 2, &format!("@{BOT_USERNAME} hello")));
    let sent = telegram.wait_sent(-100, 1, WAIT).await;
    assert!(sent[0].text.as_deref().unwrap().starts_with("Hi!"));
    let messages = stored(&server, "-100/601", 2).await;
    assert_eq!(messages.len(), 2, "only the mention was taken: {messages:#?}");
}

#[tokio::test]
async fn in_a_group_only_the_person_asked_can_answer_with_the_buttons() {
    let telegram = FakeTelegram::start().await;
    let server = server_with(&telegram, |_| {}).await;
    let dana = server.add_agent("Dana", "dana@example.com").await;
    telegram.push_message(group_text(-300, 611, 1, &format!("@{BOT_USERNAME} talk to a human please")));
    let asked = stored(&server, "-300/611", 2).await;
    let id = asked[0].conversation_id;
    server.engine().agent_reply(id, dana, "Try again now, please.".into(), Vec::new()).await.unwrap();
    server.engine().resolve(id, dana).await.unwrap();
    let question = telegram
        .wait_until("the question reaches the group", WAIT, |t| {
            t.sent().into_iter().find(|s| s.chat_id == -300 && s.text.as_deref().is_some_and(|t| t.contains("marked this as solved")))
        })
        .await;
    let yes = &question.reply_markup.as_ref().unwrap()["inline_keyboard"][0][0];
    assert_eq!((yes["text"].as_str(), yes["callback_data"].as_str()), (Some("Yes, it's fixed"), Some("611|Yes, it's fixed")), "the buttons say whom they are for");

    // Someone else in the group presses: told so, and nothing changes.
    let other = telegram.press_group_button(-300, 622, question.message_id, "611|Yes, it's fixed");
    telegram.wait_until("the other person's press is answered", WAIT, |t| t.answered_presses().contains(&other).then_some(())).await;
    let store = server.engine().store();
    assert!(store.contact_by_external_id(Channel::Telegram, "-300/622").await.unwrap().is_none(), "the press was no message of theirs");
    assert!(telegram.buttons_removed().is_empty(), "the buttons stay for the person asked");
    assert_eq!(store.conversation(id).await.unwrap().unwrap().status, switchboard_models::Status::Resolved);

    // The person asked presses: their answer, which the bot takes up with the rating question.
    telegram.press_group_button(-300, 611, question.message_id, "611|Yes, it's fixed");
    telegram
        .wait_until("the rating is asked", WAIT, |t| t.sent().into_iter().find(|s| s.chat_id == -300 && s.text.as_deref().is_some_and(|t| t.contains("How would you rate"))))
        .await;
    assert_eq!(store.conversation(id).await.unwrap().unwrap().status, switchboard_models::Status::Confirmed);
}

#[tokio::test]
async fn webhook_mode_checks_the_secret_and_answers_after_storing() {
    let telegram = FakeTelegram::start().await;
    let server = server_with(&telegram, |c| {
        c.telegram.mode = TelegramMode::Webhook;
        c.telegram.webhook_url = Some("https://support.example.com/telegram/webhook".into());
        c.telegram.webhook_secret = Some(Secret("right-secret_1".into()));
    })
    .await;
    let (url, secret) = telegram.webhook().expect("setWebhook was called");
    assert_eq!(url, "https://support.example.com/telegram/webhook");
    assert_eq!(secret.as_deref(), Some("right-secret_1"));

    let http = reqwest::Client::new();
    let update = json!({"update_id": 1, "message": private_text(508, 1, "hello")});
    let post = |secret: Option<&'static str>, body: String| {
        let mut request = http.post(server.url("/telegram/webhook")).header("content-type", "application/json").body(body);
        if let Some(secret) = secret {
            request = request.header("x-telegram-bot-api-secret-token", secret);
        }
        request.send()
    };
    assert_eq!(post(Some("wrong"), update.to_string()).await.unwrap().status(), 401);
    assert_eq!(post(None, update.to_string()).await.unwrap().status(), 401);
    assert_eq!(post(Some("right-secret_1"), "{\"update_id\":".into()).await.unwrap().status(), 400);
    let store = server.engine().store();
    assert!(store.contact_by_external_id(Channel::Telegram, "508").await.unwrap().is_none(), "nothing stored yet");

    assert_eq!(post(Some("right-secret_1"), update.to_string()).await.unwrap().status(), 200);
    // Answered only after the commit: the message is there already.
    assert!(store.message_by_external_id(Channel::Telegram, "508:1").await.unwrap().is_some());
    assert_eq!(post(Some("right-secret_1"), update.to_string()).await.unwrap().status(), 200, "a redelivery is fine");
    let sent = telegram.wait_sent(508, 1, WAIT).await;
    assert!(sent[0].text.as_deref().unwrap().starts_with("Hi!"));
    assert_eq!(stored(&server, "508", 2).await.len(), 2);
}

#[tokio::test]
async fn choices_come_as_quick_reply_buttons() {
    let telegram = FakeTelegram::start().await;
    let _server = server_with(&telegram, |_| {}).await;
    telegram.push_message(private_text(509, 1, "qwerty zxcv"));
    let sent = telegram.wait_sent(509, 1, WAIT).await;
    let keyboard = sent[0].reply_markup.clone().expect("a keyboard with the choices");
    let rows = keyboard["inline_keyboard"].as_array().expect("buttons under the message");
    let buttons: Vec<(&str, &str)> =
        rows.iter().map(|row| (row[0]["text"].as_str().unwrap(), row[0]["callback_data"].as_str().unwrap())).collect();
    let texts = ["Billing", "Technical problem", "My account", "Talk to a person"];
    assert_eq!(buttons, texts.map(|t| (t, t)), "one per row; a press answers with the button's text");
}

#[tokio::test]
async fn an_update_that_keeps_failing_is_set_aside_the_chat_goes_on_and_an_admin_replays_it() {
    use switchboard_admin_web::accounts::create_account;
    let telegram = FakeTelegram::start().await;
    let server = server_with(&telegram, |c| c.server.inbound_attempts = 3).await;
    let store = server.engine().store();
    let admin = create_account(store.as_ref(), "root@example.com", "Root", switchboard_models::Role::Admin, "a long enough password", None).await.unwrap();
    // Telegram answers "invalid file_id" for this photo: storing it fails every time.
    telegram.push_message(private_photo(521, 1, "lost-photo", PNG.len(), Some("my receipt")));
    telegram.push_message(private_text(522, 1, "I forgot my password"));
    let answered = telegram.wait_sent(522, 1, WAIT).await;
    assert!(answered[0].text.as_deref().unwrap().contains("Forgot password"), "the next update is served: {answered:?}");

    let letters = server.engine().dead_letters(false, 10, &admin).await.unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    let letter = &letters[0];
    assert_eq!((letter.letter.channel, letter.letter.attempts), (Channel::Telegram, 3));
    assert!(letter.letter.error.contains("invalid file_id"), "{}", letter.letter.error);
    assert!(String::from_utf8_lossy(&letter.letter.payload).contains("my receipt"), "the update as it arrived");
    let notices = store.notifications_of(admin.id, None, 10).await.unwrap();
    assert!(notices.iter().any(|n| n.kind == switchboard_models::NotificationKind::InboundFailed && n.text.contains("set aside")), "{notices:?}");
    assert!(store.contact_by_external_id(Channel::Telegram, "521").await.unwrap().is_none(), "nothing of it was stored");

    // Replayed while the cause remains: it stays set aside with the reason.
    let panel = switchboard_tests::panel::PanelClient::sign_in(&server.url(""), "root@example.com", "a long enough password").await;
    let refused = panel.post(&format!("/panel/admin/system/dead-letters/{}", letter.id), &[("action", "replay")]).await;
    assert_eq!(refused.status, reqwest::StatusCode::CONFLICT);
    assert!(refused.body.contains("it failed again") && refused.body.contains("invalid file_id"), "{}", refused.body);

    // Once Telegram has the file, the replay stores it and the customer is answered.
    telegram.add_file("lost-photo", PNG.to_vec());
    let page = panel.get("/panel/admin/system").await;
    assert!(page.body.contains("lost-photo") || page.body.contains("my receipt"), "{}", page.body);
    let replayed = panel.post(&format!("/panel/admin/system/dead-letters/{}", letter.id), &[("action", "replay")]).await;
    assert_eq!(replayed.status, reqwest::StatusCode::SEE_OTHER, "{}", replayed.body);
    let messages = stored(&server, "521", 1).await;
    assert_eq!(messages[0].text, "my receipt");
    assert_eq!(messages[0].attachments.len(), 1);
    assert!(server.engine().dead_letters(false, 10, &admin).await.unwrap().is_empty(), "settled");
    let settled = server.engine().dead_letter(letter.id, &admin).await.unwrap();
    assert_eq!((settled.state, settled.settled_by), (switchboard_core::ports::DeadLetterState::Replayed, Some(admin.id)));
}
