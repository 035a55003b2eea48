//! One customer across channels: a Telegram customer and a mail address joined by a code sent
//! from the other channel, or by a code mailed to the address and typed back; an agent's join;
//! the customer's page in Chromium; every join undone again. Real Telegram client against the
//! fake Bot API, real mail system (its own mailboxes), the panel's JSON API.

use crate::browser::{artifacts, run_script};
use reqwest::StatusCode;
use serde_json::json;
use std::time::Duration;
use switchboard::config::Secret;
use switchboard_admin_web::accounts::create_account;
use switchboard_models::{Channel, Role};
use switchboard_tests::TestServer;
use switchboard_tests::fake_telegram::{FakeTelegram, TOKEN, private_text};
use switchboard_tests::mail::{IMAPS_PORT, PASSWORD as MAIL_PASSWORD, SMTP_PORT, TestMailbox, mail_system_running, send_raw, test_ca_file};
use switchboard_tests::panel::{ApiClient, PanelClient};

const WAIT: Duration = Duration::from_secs(20);
const DESK: &str = "desk@example.test";
const ANN: &str = "ann@example.test";
const PASSWORD: &str = "identities test password";
const ANN_ON_TELEGRAM: i64 = 901;

async fn start_server(telegram: &FakeTelegram) -> TestServer {
    let url = telegram.url();
    TestServer::start_with(move |c| {
        c.telegram.token = Some(Secret(TOKEN.into()));
        c.telegram.api_url = Some(url);
        c.email.address = Some(DESK.into());
        c.email.imap_port = IMAPS_PORT;
        c.email.imap_security = "tls".into();
        c.email.imap_ca_file = Some(test_ca_file());
        c.email.imap_username = DESK.into();
        c.email.imap_password = Some(Secret(MAIL_PASSWORD.into()));
        c.email.poll_seconds = 1;
        c.email.smtp_port = SMTP_PORT;
        c.email.smtp_security = "none".into();
    })
    .await
}

/// The `XXXX-XXXX` code in `text`.
fn code_in(text: &str) -> String {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .find(|w| w.len() == 9 && w.as_bytes()[4] == b'-')
        .unwrap_or_else(|| panic!("no code in “{text}”"))
        .to_string()
}

/// The channels of the customer `id` is one of, sorted.
async fn channels_of(api: &ApiClient, id: &str) -> Vec<String> {
    let person = api.get(&format!("/api/customers/{id}")).await;
    let mut channels: Vec<String> = person["identities"].as_array().unwrap().iter().map(|i| i["channel"].as_str().unwrap().to_string()).collect();
    channels.sort();
    channels
}

/// The first message to Ann on Telegram with `words`, once sent.
async fn telegram_says(telegram: &FakeTelegram, words: &str) -> String {
    telegram
        .wait_until(&format!("a Telegram message saying “{words}”"), WAIT, |t| {
            t.sent().into_iter().filter(|s| s.chat_id == ANN_ON_TELEGRAM).filter_map(|s| s.text).find(|text| text.contains(words))
        })
        .await
}

/// The text of the first mail to `mailbox` that says `words`.
async fn mail_saying(mailbox: &TestMailbox, words: &str) -> String {
    let raw = mailbox.wait_for_body(words, WAIT).await;
    mail_parser::MessageParser::default().parse(&raw).and_then(|m| m.body_text(0).map(|t| t.to_string())).unwrap_or_default()
}

fn mail(subject: &str, message_id: &str, body: &str) -> String {
    format!(
        "From: Ann Lee <{ANN}>\nTo: {DESK}\nSubject: {subject}\nDate: Fri, 04 Dec 2026 10:00:00 +0000\nMessage-ID: {message_id}\n\
         MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\n{body}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telegram_and_email_of_one_person_are_joined_by_a_code_and_separated_again() {
    assert!(mail_system_running().await, "the local mail system is not running; ./scripts/test.sh starts it (scripts/mail-server.sh start)");
    let (desk, ann) = (TestMailbox::new("desk"), TestMailbox::new("ann"));
    for mailbox in [&desk, &ann] {
        mailbox.clear().await;
    }
    let telegram = FakeTelegram::start().await;
    let server = start_server(&telegram).await;
    let store = server.engine().store().clone();
    create_account(store.as_ref(), "robin@example.com", "Robin", Role::Agent, PASSWORD, None).await.unwrap();
    let panel = PanelClient::sign_in(&server.url(""), "robin@example.com", PASSWORD).await;
    let api = ApiClient::new(server.url(""), panel.new_api_token("identities test").await);

    // Ann writes on Telegram and by mail: two strangers so far.
    telegram.push_message(private_text(ANN_ON_TELEGRAM, 1, "Hello, where is my parcel?"));
    telegram.wait_sent(ANN_ON_TELEGRAM, 1, WAIT).await;
    send_raw(ANN, &[DESK], &mail("My parcel", "<p1@ann.example.test>", "Hello, my parcel did not arrive.")).await;
    ann.wait_count(1, WAIT).await;
    let on_telegram = store.contact_by_external_id(Channel::Telegram, &ANN_ON_TELEGRAM.to_string()).await.unwrap().expect("Telegram contact");
    let by_mail = store.contact_by_external_id(Channel::Email, ANN).await.unwrap().expect("email contact");
    let (telegram_id, mail_id) = (on_telegram.id.to_string(), by_mail.id.to_string());
    assert_eq!(channels_of(&api, &telegram_id).await, ["telegram"]);

    // She asks for a code on Telegram and mails it: both are one customer.
    telegram.push_message(private_text(ANN_ON_TELEGRAM, 3, "/link"));
    let shown = telegram_says(&telegram, "Your link code is").await;
    let code = code_in(&shown);
    assert!(shown.contains("Send it to us from your other channel"), "{shown}");
    send_raw(ANN, &[DESK], &mail("Linking", "<p2@ann.example.test>", &format!("Here is my code: {}", code.to_lowercase()))).await;
    let joined = mail_saying(&ann, "are now joined").await;
    assert!(joined.contains("your Telegram account"), "{joined}");
    assert_eq!(channels_of(&api, &mail_id).await, ["email", "telegram"]);
    let person = api.get(&format!("/api/customers/{telegram_id}")).await;
    let conversations = person["conversations"].as_array().unwrap();
    let mut channels: Vec<&str> = conversations.iter().map(|c| c["channel"].as_str().unwrap()).collect();
    channels.sort();
    channels.dedup();
    assert_eq!(channels, ["email", "telegram"], "the page lists both channels' conversations");
    let join = &person["joins"][0];
    assert_eq!((join["proof"].as_str(), join["person"].as_str(), join["joined"].as_str()), (Some("link_code"), Some(telegram_id.as_str()), Some(mail_id.as_str())));
    // The code is spent: sent again, it proves nothing new.
    telegram.push_message(private_text(ANN_ON_TELEGRAM, 4, &code));
    telegram_says(&telegram, "Send this code from your other channel").await;

    // In Chromium an agent sees both channels on the customer's page and separates them.
    let args = vec![server.url(""), artifacts(), "robin@example.com".into(), PASSWORD.into(), telegram_id.clone()];
    run_script("customer.mjs", args, "browser customer page test passed").await;
    assert_eq!(channels_of(&api, &telegram_id).await, ["telegram"]);
    assert_eq!(channels_of(&api, &mail_id).await, ["email"]);
    let person = api.get(&format!("/api/customers/{mail_id}")).await;
    assert_eq!(person["joins"][0]["undone_by"].as_str().map(|_| ()), Some(()), "the undone join stays listed, with who undid it");

    // A code mailed to the address and typed back on Telegram joins them again.
    telegram.push_message(private_text(ANN_ON_TELEGRAM, 5, &format!("/link {ANN}")));
    telegram_says(&telegram, &format!("I sent a code to {ANN}")).await;
    let mailed = mail_saying(&ann, "Your code to confirm this address").await;
    telegram.push_message(private_text(ANN_ON_TELEGRAM, 6, &format!("the code is {}", code_in(&mailed))));
    telegram_says(&telegram, "this chat and your email address are now joined").await;
    let person = api.get(&format!("/api/customers/{telegram_id}")).await;
    assert_eq!(person["joins"][0]["proof"], "email_code");
    assert_eq!(channels_of(&api, &telegram_id).await, ["email", "telegram"]);

    // Through the API: a join of one customer is refused; undo, then an agent's own join and its undo.
    let link = person["joins"][0]["id"].as_str().unwrap().to_string();
    let (status, body) = api.post(&format!("/api/customers/{telegram_id}/joins"), json!({"customer": mail_id})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("one customer already"), "{body}");
    assert_eq!(api.post(&format!("/api/customer-joins/{link}/undo"), json!({})).await.0, StatusCode::OK);
    assert_eq!(api.post(&format!("/api/customer-joins/{link}/undo"), json!({})).await.0, StatusCode::CONFLICT, "undone once");
    let (status, join) = api.post(&format!("/api/customers/{mail_id}/joins"), json!({"customer": telegram_id})).await;
    assert_eq!(status, StatusCode::CREATED, "{join}");
    assert_eq!((join["proof"].as_str(), join["moved"][0].as_str()), (Some("agent"), Some(telegram_id.as_str())));
    assert_eq!(channels_of(&api, &telegram_id).await, ["email", "telegram"]);
    let (status, _) = api.post(&format!("/api/customers/{mail_id}/joins"), json!({"customer": "not-an-id"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Joining never mixed their messages: each conversation keeps its own channel's customer.
    for summary in store.person_conversations(on_telegram.id).await.unwrap() {
        let messages = store.conversation_messages(summary.conversation.id, 0, 500).await.unwrap();
        assert!(messages.iter().all(|m| m.contact_id == summary.conversation.contact_id && m.channel == summary.conversation.channel));
    }
    // Every join and separation is in the audit log.
    let actions: Vec<String> = store.audit_page(None, 50).await.unwrap().into_iter().map(|(_, e)| e.action.as_str().to_string()).collect();
    assert_eq!(actions.iter().filter(|a| *a == "join_contacts").count(), 3, "{actions:?}");
    assert_eq!(actions.iter().filter(|a| *a == "separate_contacts").count(), 2, "{actions:?}");
}
