//! Discord end to end: serenity inside the server against a local fake REST API and gateway.

use serde_json::json;
use std::time::Duration;
use switchboard::config::Secret;
use switchboard_models::{Channel, DeliveryState, Handler, Message, Sender};
use switchboard_tests::TestServer;
use switchboard_tests::fake_discord::{FakeDiscord, TOKEN, attachment, message};

const WAIT: Duration = Duration::from_secs(20);
const SERVED: u64 = 6001;
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR fake image body";
const PDF: &[u8] = b"%PDF-1.7\n1 0 obj << >> endobj\ntrailer\n%%EOF";

async fn server_with(discord: &FakeDiscord) -> TestServer {
    server_adjusted(discord, |_| {}).await
}

async fn server_adjusted(discord: &FakeDiscord, adjust: impl FnOnce(&mut switchboard::config::Config)) -> TestServer {
    let proxy = discord.url();
    let server = TestServer::start_with(move |c| {
        c.discord.token = Some(Secret(TOKEN.into()));
        c.discord.api_proxy = Some(proxy);
        c.discord.served_channels = vec![SERVED];
        adjust(c);
    })
    .await;
    discord.wait_connected(WAIT).await;
    server
}

async fn stored(server: &TestServer, contact: &str, count: usize) -> Vec<Message> {
    let store = server.engine().store();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(contact) = store.contact_by_external_id(Channel::Discord, contact).await.unwrap() {
            let messages = store.contact_messages(contact.id, 0, 100).await.unwrap();
            if messages.len() >= count {
                return messages;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "fewer than {count} messages stored for {contact}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Events are stored one at a time in Discord's order: once a later DM from someone else is
/// answered, every event dispatched before it has been handled (a barrier, not a pause).
async fn barrier(discord: &FakeDiscord, user: u64, dm_channel: u64) {
    discord.set_dm_channel(user, dm_channel);
    dm(discord, user, dm_channel, "hello");
    discord.wait_posted(dm_channel, 1, WAIT).await;
}

fn dm(discord: &FakeDiscord, user: u64, dm_channel: u64, text: &str) -> u64 {
    let id = discord.new_id();
    discord.dispatch("MESSAGE_CREATE", message(id, dm_channel, false, user, text, json!([])));
    id
}

#[tokio::test]
async fn a_direct_message_is_answered_and_a_handoff_reaches_an_agent() {
    let discord = FakeDiscord::start().await;
    let server = server_with(&discord).await;
    discord.set_dm_channel(901, 5001);
    dm(&discord, 901, 5001, "hello");
    let posted = discord.wait_posted(5001, 1, WAIT).await;
    assert!(posted[0].content.as_deref().unwrap().starts_with("Hi!"), "{posted:?}");

    dm(&discord, 901, 5001, "I want to talk to a person");
    let posted = discord.wait_posted(5001, 2, WAIT).await;
    assert!(posted[1].content.as_deref().unwrap().contains("handed your conversation"));
    let messages = stored(&server, "dm/901", 4).await;
    let conversation_id = messages[0].conversation_id;
    let store = server.engine().store();
    assert_eq!(store.conversation(conversation_id).await.unwrap().unwrap().handler, Handler::Queue);

    let agent = server.add_agent("Kim", "kim@example.com").await;
    let pdf = server.engine().accept_upload("guide.pdf", PDF).await.unwrap();
    server.engine().agent_reply(conversation_id, agent, "@everyone here is the guide".into(), vec![pdf]).await.unwrap();
    let posted = discord.wait_posted(5001, 4, WAIT).await;
    assert_eq!(posted[2].content.as_deref(), Some("Kim joined the conversation."));
    assert_eq!(posted[3].content.as_deref(), Some("@everyone here is the guide"));
    assert_eq!(
        posted[3].allowed_mentions,
        json!({"parse": [], "roles": [], "users": []}),
        "agent text never pings anyone"
    );
    assert_eq!(posted[3].files, vec![("guide.pdf".to_string(), PDF.to_vec())]);
}

#[tokio::test]
async fn a_served_channel_opens_a_thread_per_case() {
    let discord = FakeDiscord::start().await;
    let server = server_with(&discord).await;
    let first = discord.new_id();
    discord.dispatch("MESSAGE_CREATE", message(first, SERVED, true, 902, "I forgot my password", json!([])));
    let posted = discord.wait_posted(first, 1, WAIT).await;
    assert!(discord.threads().contains(&first), "the case got a thread");
    assert!(posted[0].content.as_deref().unwrap().contains("Forgot password"));

    // The customer continues in the thread; someone else's message there is not their case.
    let next = discord.new_id();
    discord.dispatch("MESSAGE_CREATE", message(next, first, true, 902, "thanks", json!([])));
    discord.dispatch("MESSAGE_CREATE", message(discord.new_id(), first, true, 903, "me too", json!([])));
    discord.dispatch("MESSAGE_CREATE", message(discord.new_id(), 6999, true, 904, "hello", json!([])));
    let posted = discord.wait_posted(first, 2, WAIT).await;
    assert!(posted[1].content.as_deref().unwrap().contains("welcome"));
    barrier(&discord, 991, 5991).await;
    assert_eq!(stored(&server, &format!("thread/{first}/902"), 4).await.len(), 4);
    let store = server.engine().store();
    assert!(store.contact_by_external_id(Channel::Discord, &format!("thread/{first}/903")).await.unwrap().is_none());
    assert!(discord.posted().iter().all(|p| p.channel_id != 6999), "unserved channels are ignored");
}

#[tokio::test]
async fn attachments_are_stored_and_choices_come_as_buttons() {
    let discord = FakeDiscord::start().await;
    let server = server_with(&discord).await;
    discord.set_dm_channel(905, 5005);
    let url = discord.add_cdn_file("receipt.png", PNG.to_vec());
    let id = discord.new_id();
    let files = json!([attachment(id + 7, "receipt.png", &url, PNG.len(), "image/png")]);
    discord.dispatch("MESSAGE_CREATE", message(id, 5005, false, 905, "my receipt", files));
    let messages = stored(&server, "dm/905", 2).await;
    let customer = &messages[0];
    assert_eq!(customer.attachments.len(), 1);
    assert_eq!(customer.attachments[0].content_type, "image/png");
    assert_eq!(server.engine().attachment_bytes(&customer.attachments[0]).await.unwrap(), PNG);

    discord.set_dm_channel(906, 5006);
    dm(&discord, 906, 5006, "qwerty zxcv");
    let posted = discord.wait_posted(5006, 1, WAIT).await;
    let labels: Vec<&str> = posted[0].components[0]["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["Billing", "Technical problem", "My account", "Talk to a person"]);
}

#[tokio::test]
async fn a_dropped_gateway_resumes_without_losing_or_repeating_messages() {
    let discord = FakeDiscord::start().await;
    let server = server_with(&discord).await;
    discord.set_dm_channel(907, 5007);
    let first = dm(&discord, 907, 5007, "hello 1");
    discord.wait_posted(5007, 1, WAIT).await;
    let gateway = server.connection_state("discord", |c| c["state"] == "up").await;
    assert!(gateway["detail"].as_str().unwrap().starts_with("gateway connected as"), "{gateway}");
    // A repeated dispatch of the same message changes nothing.
    discord.dispatch("MESSAGE_CREATE", message(first, 5007, false, 907, "hello 1", json!([])));

    discord.drop_gateway();
    for n in 2..=4 {
        dm(&discord, 907, 5007, &format!("hello {n}"));
    }
    discord.wait_posted(5007, 4, WAIT).await;
    let (identifies, resumes) = discord.identifies_and_resumes();
    assert_eq!((identifies, resumes), (1, 1), "the session was resumed, not restarted");
    let gateway = server.connection_state("discord", |c| c["detail"] == "gateway connected (resumed)").await;
    assert_eq!(gateway["state"], "up", "{gateway}");
    barrier(&discord, 992, 5992).await;
    let messages = stored(&server, "dm/907", 8).await;
    let texts: Vec<&str> = messages.iter().filter(|m| m.sender == Sender::Customer).map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["hello 1", "hello 2", "hello 3", "hello 4"]);
    assert_eq!(messages.len(), 8);
    assert_eq!(discord.posted().iter().filter(|p| p.channel_id == 5007).count(), 4);
}

#[tokio::test]
async fn rate_limits_are_retried_and_closed_dms_stop_delivery() {
    let discord = FakeDiscord::start().await;
    let server = server_with(&discord).await;
    discord.set_dm_channel(908, 5008);
    discord.rate_limit_next();
    dm(&discord, 908, 5008, "hello");
    discord.wait_posted(5008, 1, WAIT).await;
    assert_eq!(discord.refused(), 1);

    discord.set_dm_channel(909, 5009);
    discord.cannot_dm(909);
    dm(&discord, 909, 5009, "hello");
    let store = server.engine().store();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let contact = store.contact_by_external_id(Channel::Discord, "dm/909").await.unwrap();
        if contact.is_some_and(|c| c.unreachable_since.is_some()) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the contact was never marked unreachable");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Refused for good in the same pass that marked the contact: nothing is left to retry.
    let contact = store.contact_by_external_id(Channel::Discord, "dm/909").await.unwrap().unwrap();
    let replies: Vec<_> = store.contact_messages(contact.id, 0, 100).await.unwrap().into_iter().filter(|m| m.sender == Sender::Bot).collect();
    assert!(!replies.is_empty() && replies.iter().all(|m| m.delivery.as_ref().is_some_and(|d| d.state == DeliveryState::Failed && d.next_attempt_at.is_none())), "{replies:#?}");
    assert_eq!(discord.refused(), 2, "no retries for a user who closed DMs");
}

#[tokio::test]
async fn pressing_a_quick_reply_button_counts_as_saying_it() {
    let discord = FakeDiscord::start().await;
    let server = server_with(&discord).await;
    discord.set_dm_channel(910, 5010);
    dm(&discord, 910, 5010, "qwerty zxcv");
    discord.wait_posted(5010, 1, WAIT).await;
    let press = discord.new_id();
    discord.dispatch(
        "INTERACTION_CREATE",
        json!({
            "id": press.to_string(), "application_id": switchboard_tests::fake_discord::BOT_ID.to_string(),
            "type": 3, "data": {"custom_id": "qr:Talk to a person", "component_type": 2},
            "channel_id": "5010", "user": switchboard_tests::fake_discord::user(910, "ann"),
            "token": "interaction-token", "version": 1,
            "message": message(discord.new_id(), 5010, false, switchboard_tests::fake_discord::BOT_ID, "choose", json!([])),
            "locale": "en-US", "entitlements": [], "attachment_size_limit": 8388608
        }),
    );
    let posted = discord.wait_posted(5010, 2, WAIT).await;
    assert!(posted[1].content.as_deref().unwrap().contains("handed your conversation"), "{posted:?}");
    assert_eq!(discord.deferred(), vec![press.to_string()], "the press was acknowledged");
    let messages = stored(&server, "dm/910", 4).await;
    assert_eq!(messages[2].text, "Talk to a person");
    assert_eq!(messages[2].external_id.as_deref(), Some(format!("interaction:{press}").as_str()));
}

#[tokio::test]
async fn messages_written_while_stopped_are_fetched_on_start_in_order_and_once() {
    let discord = FakeDiscord::start().await;
    let mut server = server_with(&discord).await;
    discord.set_dm_channel(905, 5005);
    dm(&discord, 905, 5005, "hello");
    discord.wait_posted(5005, 1, WAIT).await;
    let case = discord.new_id();
    discord.dispatch("MESSAGE_CREATE", message(case, SERVED, true, 906, "I forgot my password", json!([])));
    discord.wait_posted(case, 1, WAIT).await;
    stored(&server, "dm/905", 2).await;
    stored(&server, &format!("thread/{case}/906"), 2).await;

    server.stop().await;
    let away = |channel: u64, guild: bool, author: u64, text: &str| {
        discord.write_while_away(message(discord.new_id(), channel, guild, author, text, json!([])));
    };
    away(5005, false, 905, "are you there?");
    away(5005, false, 905, "my order 42 has not arrived");
    away(case, true, 906, "the reset mail never came");
    away(case, true, 907, "someone else's words in the thread");
    let new_case = discord.new_id();
    discord.write_while_away(message(new_case, SERVED, true, 908, "I want to talk to a person", json!([])));
    server.start_again().await;

    let texts = |messages: Vec<Message>| -> Vec<String> {
        messages.into_iter().filter(|m| m.sender == Sender::Customer).map(|m| m.text).collect()
    };
    assert_eq!(texts(stored(&server, "dm/905", 6).await), ["hello", "are you there?", "my order 42 has not arrived"]);
    assert_eq!(texts(stored(&server, &format!("thread/{case}/906"), 4).await), ["I forgot my password", "the reset mail never came"]);
    assert_eq!(texts(stored(&server, &format!("thread/{new_case}/908"), 2).await), ["I want to talk to a person"]);
    assert!(discord.threads().contains(&new_case), "a case opened while away gets its thread");
    discord.wait_posted(5005, 3, WAIT).await;

    // Nothing is fetched twice: another start finds nothing new. A live message sent after the
    // start is stored after the catch-up (a new session's catch-up comes first), so once it is
    // there, the catch-up has run.
    let (identified, _) = discord.identifies_and_resumes();
    server.restart().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while discord.identifies_and_resumes().0 == identified {
        assert!(tokio::time::Instant::now() < deadline, "the restarted server never opened a new session");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    dm(&discord, 905, 5005, "thanks");
    let again = stored(&server, "dm/905", 7).await;
    assert_eq!(texts(again), ["hello", "are you there?", "my order 42 has not arrived", "thanks"]);
    let store = server.engine().store();
    assert!(store.contact_by_external_id(Channel::Discord, &format!("thread/{case}/907")).await.unwrap().is_none());
}

#[tokio::test]
async fn a_message_that_keeps_failing_is_set_aside_the_next_is_served_and_a_replay_stores_it() {
    use switchboard_admin_web::accounts::create_account;
    let discord = FakeDiscord::start().await;
    let server = server_adjusted(&discord, |c| c.server.inbound_attempts = 3).await;
    let store = server.engine().store();
    let admin = create_account(store.as_ref(), "root@example.com", "Root", switchboard_models::Role::Admin, "a long enough password", None).await.unwrap();
    // The attachments folder is broken: storing the message's file fails every time.
    let folder = server.config.attachments.dir.clone();
    let kept_aside = folder.with_extension("aside");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::rename(&folder, &kept_aside).unwrap();
    std::fs::write(&folder, b"not a folder").unwrap();
    discord.set_dm_channel(931, 5031);
    let url = discord.add_cdn_file("lost.png", PNG.to_vec());
    let id = discord.new_id();
    discord.dispatch("MESSAGE_CREATE", message(id, 5031, false, 931, "see the screenshot", json!([attachment(id + 1, "lost.png", &url, PNG.len(), "image/png")])));
    discord.set_dm_channel(932, 5032);
    dm(&discord, 932, 5032, "hello there");
    stored(&server, "dm/932", 2).await;

    let letters = server.engine().dead_letters(false, 10, &admin).await.unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!((letters[0].letter.channel, letters[0].letter.external_id.clone(), letters[0].letter.attempts), (Channel::Discord, id.to_string(), 3));
    assert!(store.contact_by_external_id(Channel::Discord, "dm/931").await.unwrap().is_none(), "nothing of it was stored");

    std::fs::remove_file(&folder).unwrap();
    std::fs::rename(&kept_aside, &folder).unwrap();
    let (status, body) = {
        let panel = switchboard_tests::panel::PanelClient::sign_in(&server.url(""), "root@example.com", "a long enough password").await;
        let token = panel.new_api_token("replay").await;
        let reply = reqwest::Client::new().post(server.url(&format!("/api/dead-letters/{}/replay", letters[0].id))).bearer_auth(token).send().await.unwrap();
        (reply.status(), reply.text().await.unwrap())
    };
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    let messages = stored(&server, "dm/931", 1).await;
    assert_eq!((messages[0].text.as_str(), messages[0].attachments.len()), ("see the screenshot", 1));
}
