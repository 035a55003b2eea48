//! Closing the loop with the customer on their own channel: an agent resolves, the customer
//! confirms or says it is not fixed, rates the help and comments.

use serde_json::{Value, json};
use std::time::Duration;
use switchboard_models::{Awaiting, Channel, Conversation, ConversationId, Handler, Presence, Status};
use switchboard_tests::TestServer;
use switchboard_tests::fake_discord::FakeDiscord;
use switchboard_tests::fake_telegram::{FakeTelegram, TOKEN, private_text};

const WAIT: Duration = Duration::from_secs(15);

async fn current(server: &TestServer, id: ConversationId) -> Conversation {
    server.engine().store().conversation(id).await.unwrap().unwrap()
}

/// The next bot message in the widget whose text contains `words`.
async fn bot_says(widget: &mut switchboard_tests::Widget, words: &str) -> Value {
    loop {
        let reply = widget.next_reply().await;
        if reply["sender"] == "bot" && reply["text"].as_str().unwrap_or("").contains(words) {
            return reply;
        }
    }
}

async fn post_feedback(server: &TestServer, token: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(server.url("/webchat/feedback"))
        .header("authorization", format!("Bearer {token}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn a_web_visitor_confirms_the_resolution_rates_it_with_stars_and_comments() {
    let server = TestServer::start().await;
    let dana = server.add_agent("Dana", "dana@example.com").await;
    let (_, token) = server.new_visitor().await;
    let mut widget = server.connect(&token).await;
    widget.say("c1", "I want to talk to a person").await;
    let ack = widget.next_of("ack").await;
    let id = ConversationId::parse(ack["conversation"]["id"].as_str().unwrap()).unwrap();
    bot_says(&mut widget, "handed your conversation").await;
    // Nothing is resolved yet: a rating now is refused and changes nothing.
    let (status, refused) = post_feedback(&server, &token, json!({"score": 5})).await;
    assert_eq!((status, refused["error"]["code"].as_str()), (409, Some("no_rating_awaited")), "{refused}");

    let states = |token: String| {
        let server = &server;
        async move {
            let listed = reqwest::Client::new()
                .get(server.url("/webchat/conversations"))
                .header("authorization", format!("Bearer {token}"))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap();
            listed["conversations"].as_array().unwrap().iter().map(|c| c["state"].as_str().unwrap().to_string()).collect::<Vec<_>>()
        }
    };
    assert_eq!(states(token.clone()).await, ["open"]);
    server.engine().agent_reply(id, dana, "Restarting the router fixes this.".into(), Vec::new()).await.unwrap();
    server.engine().resolve(id, dana).await.unwrap();
    let question = bot_says(&mut widget, "Dana marked this as solved").await;
    assert_eq!(states(token.clone()).await, ["waiting_for_you"], "the visitor's requests say it waits for them");
    assert_eq!(question["quick_replies"], json!(["Yes, it's fixed", "No, not yet"]));
    assert_eq!(current(&server, id).await.status, Status::Resolved);

    widget.say("c2", "Yes, it's fixed").await;
    let rating = bot_says(&mut widget, "How would you rate the help you got from Dana").await;
    assert_eq!(rating["quick_replies"], json!(["1", "2", "3", "4", "5"]), "the widget draws these as stars");
    let confirmed = current(&server, id).await;
    assert_eq!(confirmed.status, Status::Confirmed);
    assert!(matches!(confirmed.awaiting, Some(Awaiting::Rating { agent, .. }) if agent == dana));
    assert_eq!(states(token.clone()).await, ["solved"]);

    // Another visitor cannot rate this conversation, nor a made-up score count.
    let (_, stranger) = server.new_visitor().await;
    assert!(states(stranger.clone()).await.is_empty(), "a visitor sees only their own requests");
    // The stranger has a conversation of their own, so the refusal is the ownership check.
    let mut stranger_widget = server.connect(&stranger).await;
    stranger_widget.say("s1", "hello").await;
    stranger_widget.next_of("ack").await;
    let (status, _) = post_feedback(&server, &stranger, json!({"score": 1, "conversation_id": id.to_string()})).await;
    assert_eq!(status, 409, "someone else's conversation");
    let made_up = ConversationId::new().to_string();
    let (status, _) = post_feedback(&server, &token, json!({"score": 1, "conversation_id": made_up})).await;
    assert_eq!(status, 409, "a made-up conversation gets the same answer");
    let (status, bad) = post_feedback(&server, &token, json!({"score": 9})).await;
    assert_eq!((status, bad["error"]["code"].as_str()), (400, Some("invalid_score")));
    let (status, _) = post_feedback(&server, &token, json!({"stars": 5})).await;
    assert_eq!(status, 400, "an unknown field is refused");

    let (status, taken) = post_feedback(&server, &token, json!({"score": 5})).await;
    assert_eq!((status, &taken), (200, &json!({"rated": 5})));
    let invite = bot_says(&mut widget, "Anything you'd like to tell us").await;
    assert_eq!(invite["quick_replies"], json!(["Skip"]));
    let (status, _) = post_feedback(&server, &token, json!({"score": 1})).await;
    assert_eq!(status, 409, "one rating per resolution");

    widget.say("c3", "Dana explained it well").await;
    bot_says(&mut widget, "Thank you for your feedback").await;
    let ratings = server.engine().ratings().ratings_of(id).await.unwrap();
    assert_eq!(ratings.len(), 1, "{ratings:?}");
    assert_eq!((ratings[0].score, ratings[0].comment.as_deref(), ratings[0].agent_id), (5, Some("Dana explained it well"), Some(dana)));
    let after = current(&server, id).await;
    assert_eq!((after.status, after.awaiting), (Status::Confirmed, None));

    // A digit now is an ordinary message again: it reopens the conversation with the bot.
    widget.say("c4", "4").await;
    widget.next_reply().await;
    let reopened = current(&server, id).await;
    assert_eq!((reopened.status, reopened.handler, reopened.awaiting), (Status::Open, Handler::Bot, None));
    assert_eq!(server.engine().ratings().ratings_of(id).await.unwrap().len(), 1);
    let escalations = server.engine().conversations().escalations_of(id).await.unwrap();
    assert_eq!(escalations.len(), 1, "the handoff is in the escalation history");
    assert!(escalations[0].confidence.is_some());
}

async fn telegram_server(telegram: &FakeTelegram) -> TestServer {
    let url = telegram.url();
    TestServer::start_with(move |c| {
        c.telegram.token = Some(switchboard::config::Secret(TOKEN.into()));
        c.telegram.api_url = Some(url);
    })
    .await
}

/// The buttons of a Telegram message's keyboard, in order.
fn buttons(markup: &Option<Value>) -> Vec<String> {
    let rows = markup.as_ref().and_then(|m| m["inline_keyboard"].as_array().cloned()).unwrap_or_default();
    rows.iter().flat_map(|row| row.as_array().cloned().unwrap_or_default()).filter_map(|b| b["text"].as_str().map(String::from)).collect()
}

/// What the bot sends one Telegram chat, read in order.
struct Chat<'a> {
    telegram: &'a FakeTelegram,
    id: i64,
    read: usize,
}

impl Chat<'_> {
    /// The next message sent to the chat that contains `words`: its text and buttons.
    async fn said(&mut self, words: &str) -> (String, Vec<String>) {
        let (text, buttons, _) = self.said_in(words).await;
        (text, buttons)
    }

    /// Like `said`, with the message's id (to press its buttons).
    async fn said_in(&mut self, words: &str) -> (String, Vec<String>, i64) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let sent: Vec<_> = self.telegram.sent().into_iter().filter(|s| s.chat_id == self.id).collect();
            while self.read < sent.len() {
                let message = &sent[self.read];
                self.read += 1;
                let text = message.text.clone().unwrap_or_default();
                if text.contains(words) {
                    return (text, buttons(&message.reply_markup), message.message_id);
                }
            }
            assert!(tokio::time::Instant::now() < deadline, "the chat was not told “{words}”: {sent:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test]
async fn on_telegram_no_reopens_with_the_agent_or_the_queue_and_yes_leads_to_a_rating() {
    let telegram = FakeTelegram::start().await;
    let server = telegram_server(&telegram).await;
    let dana = server.add_agent("Dana", "dana@example.com").await;
    let engine = server.engine();
    let mut chat = Chat { telegram: &telegram, id: 611, read: 0 };
    telegram.push_message(private_text(chat.id, 1, "talk to a human please"));
    chat.said("handed your conversation").await;
    let contact = engine.store().contact_by_external_id(Channel::Telegram, &chat.id.to_string()).await.unwrap().unwrap();
    let id = engine.store().current_conversation(contact.id).await.unwrap().unwrap().id;
    engine.agent_reply(id, dana, "Please try again now.".into(), Vec::new()).await.unwrap();
    chat.said("Please try again now.").await;

    // Not fixed while Dana is online: back to her.
    engine.resolve(id, dana).await.unwrap();
    let (text, keyboard, asked) = chat.said_in("marked this as solved").await;
    assert_eq!(text, "Dana marked this as solved. Did that fix it?");
    assert_eq!(keyboard, ["Yes, it's fixed", "No, not yet"], "the answers are buttons");
    let press = telegram.press_button(chat.id, asked, "No, not yet");
    chat.said("passed it back to Dana").await;
    telegram.wait_until("the answered question's buttons go", WAIT, |t| t.buttons_removed().contains(&(chat.id, asked)).then_some(())).await;
    assert!(telegram.answered_presses().contains(&press), "the press is acknowledged");
    let reopened = current(&server, id).await;
    assert_eq!((reopened.status, reopened.handler, reopened.awaiting), (Status::InProgress, Handler::Agent(dana), None));

    // Not fixed while Dana is away: the queue.
    engine.resolve(id, dana).await.unwrap();
    chat.said("marked this as solved").await;
    engine.set_presence(dana, Presence::Offline).await.unwrap();
    telegram.push_message(private_text(chat.id, 3, "still broken"));
    chat.said("passed it back to the team").await;
    assert_eq!(current(&server, id).await.handler, Handler::Queue);

    // Fixed (typed): rated with a button, the comment skipped with one.
    engine.set_presence(dana, Presence::Online).await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while current(&server, id).await.handler != Handler::Agent(dana) {
        assert!(tokio::time::Instant::now() < deadline, "the queued conversation goes to Dana once she is back");
        engine.assign_waiting().await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    engine.resolve(id, dana).await.unwrap();
    chat.said("marked this as solved").await;
    telegram.push_message(private_text(chat.id, 4, "yes thanks"));
    let (_, keyboard, rating) = chat.said_in("How would you rate the help you got from Dana").await;
    assert_eq!(keyboard, ["1", "2", "3", "4", "5"]);
    let row = telegram.sent().into_iter().find(|s| s.message_id == rating).unwrap().reply_markup.unwrap();
    assert_eq!(row["inline_keyboard"].as_array().unwrap().len(), 1, "the five stars share a row");
    telegram.press_button(chat.id, rating, "4");
    let (_, keyboard, invite) = chat.said_in("Anything you'd like to tell us").await;
    assert_eq!(keyboard, ["Skip"]);
    telegram.press_button(chat.id, invite, "Skip");
    chat.said("Thank you for your feedback.").await;
    let ratings = engine.ratings().ratings_of(id).await.unwrap();
    assert_eq!(ratings.iter().map(|r| (r.score, r.comment.clone(), r.channel)).collect::<Vec<_>>(), [(4, None, Channel::Telegram)]);
    assert_eq!(current(&server, id).await.status, Status::Confirmed);
    let averages = engine.ratings().agent_ratings(chrono::Utc::now() - chrono::Duration::days(1)).await.unwrap();
    assert_eq!((averages[0].agent_id, averages[0].count), (dana, 1));
}

/// Presses a Discord button (a quick reply) in the DM channel `channel` as `user`.
fn press(discord: &FakeDiscord, channel: u64, user: u64, label: &str) {
    use switchboard_tests::fake_discord::{BOT_ID, message, user as discord_user};
    let press = discord.new_id();
    discord.dispatch(
        "INTERACTION_CREATE",
        json!({
            "id": press.to_string(), "application_id": BOT_ID.to_string(),
            "type": 3, "data": {"custom_id": format!("qr:{label}"), "component_type": 2},
            "channel_id": channel.to_string(), "user": discord_user(user, "ann"),
            "token": "interaction-token", "version": 1,
            "message": message(discord.new_id(), channel, false, BOT_ID, "choose", json!([])),
            "locale": "en-US", "entitlements": [], "attachment_size_limit": 8388608
        }),
    );
}

/// The labels of a Discord message's buttons, in order.
fn discord_buttons(components: &Value) -> Vec<String> {
    let rows = components.as_array().cloned().unwrap_or_default();
    rows.iter()
        .flat_map(|row| row["components"].as_array().cloned().unwrap_or_default())
        .filter_map(|b| b["label"].as_str().map(String::from))
        .collect()
}

#[tokio::test]
async fn on_discord_the_answers_and_the_rating_are_buttons() {
    use switchboard_tests::fake_discord::message;
    let discord = FakeDiscord::start().await;
    let proxy = discord.url();
    let server = TestServer::start_with(move |c| {
        c.discord.token = Some(switchboard::config::Secret(switchboard_tests::fake_discord::TOKEN.into()));
        c.discord.api_proxy = Some(proxy);
    })
    .await;
    discord.wait_connected(WAIT).await;
    let dana = server.add_agent("Dana", "dana@example.com").await;
    let engine = server.engine();
    let (user, channel) = (920, 5020);
    discord.set_dm_channel(user, channel);
    let said = |words: &'static str| {
        let discord = &discord;
        async move {
            let deadline = tokio::time::Instant::now() + WAIT;
            loop {
                let posted = discord.posted();
                if let Some(found) = posted.iter().rev().find(|p| p.channel_id == channel && p.content.as_deref().unwrap_or("").contains(words)) {
                    return discord_buttons(&found.components);
                }
                assert!(tokio::time::Instant::now() < deadline, "Discord was not told “{words}”: {posted:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    discord.dispatch("MESSAGE_CREATE", message(discord.new_id(), channel, false, user, "talk to a human please", json!([])));
    said("handed your conversation").await;
    let contact = engine.store().contact_by_external_id(Channel::Discord, &format!("dm/{user}")).await.unwrap().unwrap();
    let id = engine.store().current_conversation(contact.id).await.unwrap().unwrap().id;
    engine.agent_reply(id, dana, "Fixed on our side.".into(), Vec::new()).await.unwrap();
    engine.resolve(id, dana).await.unwrap();
    assert_eq!(said("Dana marked this as solved").await, ["Yes, it's fixed", "No, not yet"]);
    press(&discord, channel, user, "Yes, it's fixed");
    assert_eq!(said("How would you rate").await, ["1", "2", "3", "4", "5"]);
    press(&discord, channel, user, "3");
    assert_eq!(said("Anything you'd like to tell us").await, ["Skip"]);
    discord.dispatch("MESSAGE_CREATE", message(discord.new_id(), channel, false, user, "It took two tries", json!([])));
    said("Thank you for your feedback").await;
    let ratings = engine.ratings().ratings_of(id).await.unwrap();
    assert_eq!(
        ratings.iter().map(|r| (r.score, r.comment.as_deref(), r.channel)).collect::<Vec<_>>(),
        [(3, Some("It took two tries"), Channel::Discord)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_real_browser_the_widget_customer_confirms_and_rates_with_the_stars() {
    let server = TestServer::start().await;
    let dana = server.add_agent("Dana", "dana@example.com").await;
    let script = crate::browser::run_script("widget-rating.mjs", vec![server.url(""), crate::browser::artifacts()], "browser widget rating test passed");
    let agent_side = async {
        let engine = server.engine();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let id = loop {
            let listed = engine.listings().list_conversations(&switchboard_core::ConversationFilter::default()).await.unwrap();
            if let Some(found) = listed.iter().find(|s| s.conversation.escalation.is_some()) {
                break found.conversation.id;
            }
            assert!(tokio::time::Instant::now() < deadline, "the browser's customer never asked for a person");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        engine.agent_reply(id, dana, "Done: your order is on its way.".into(), Vec::new()).await.unwrap();
        engine.resolve(id, dana).await.unwrap();
        id
    };
    let ((), id) = tokio::join!(script, agent_side);
    let ratings = server.engine().ratings().ratings_of(id).await.unwrap();
    assert_eq!(ratings.iter().map(|r| (r.score, r.comment.as_deref())).collect::<Vec<_>>(), [(4, Some("Sorted in minutes, thank you"))]);
}

#[tokio::test]
async fn an_agent_reopens_a_closed_conversation_to_follow_up_unless_a_newer_one_is_open() {
    let server = TestServer::start().await;
    let dana = server.add_agent("Dana", "dana@example.com").await;
    let engine = server.engine();
    let (_, token) = server.new_visitor().await;
    let mut widget = server.connect(&token).await;
    widget.say("c1", "I want to talk to a person").await;
    let ack = widget.next_of("ack").await;
    let id = ConversationId::parse(ack["conversation"]["id"].as_str().unwrap()).unwrap();
    engine.agent_reply(id, dana, "Looking into it.".into(), Vec::new()).await.unwrap();
    let version = Some(current(&server, id).await.updated_at.timestamp_millis());
    engine.change_ticket(id, dana, switchboard_core::TicketChange::Status(Status::Closed), version).await.unwrap();
    bot_says(&mut widget, "This conversation is closed").await;
    let refused = engine.agent_reply(id, dana, "One more thing".into(), Vec::new()).await.unwrap_err();
    assert!(refused.to_string().contains("can no longer be sent"), "{refused}");

    let reopened = engine.reopen(id, dana).await.unwrap();
    assert_eq!((reopened.status, reopened.handler), (Status::InProgress, Handler::Agent(dana)));
    engine.agent_reply(id, dana, "Following up: your refund went out today.".into(), Vec::new()).await.unwrap();
    let reply = widget.next_reply().await;
    assert_eq!(reply["text"], "Following up: your refund went out today.");
    let again = engine.reopen(id, dana).await.unwrap_err();
    assert!(again.to_string().contains("not closed"), "{again}");

    // Closed again, then the customer starts a new conversation: the old one stays closed.
    let version = Some(current(&server, id).await.updated_at.timestamp_millis());
    engine.change_ticket(id, dana, switchboard_core::TicketChange::Status(Status::Closed), version).await.unwrap();
    widget.say("c2", "hello again").await;
    let newer = ConversationId::parse(widget.next_of("ack").await["conversation"]["id"].as_str().unwrap()).unwrap();
    assert_ne!(newer, id);
    let refused = engine.reopen(id, dana).await.unwrap_err();
    assert!(refused.to_string().contains(&format!("/panel/conversations/{newer}")), "{refused}");
    assert_eq!(current(&server, id).await.status, Status::Closed);
}

#[tokio::test]
async fn an_agent_writes_first_to_a_known_customer_through_the_api_and_reopens_through_the_panel() {
    use switchboard_admin_web::accounts::create_account;
    use switchboard_tests::panel::PanelClient;
    let telegram = FakeTelegram::start().await;
    let server = telegram_server(&telegram).await;
    let engine = server.engine();
    let password = "a long enough password";
    let ann = create_account(engine.store().as_ref(), "ann@example.com", "Ann", switchboard_models::Role::Agent, password, None).await.unwrap();
    let panel = PanelClient::sign_in(&server.url(""), "ann@example.com", password).await;
    let token = panel.new_api_token("crm").await;
    let mut chat = Chat { telegram: &telegram, id: 621, read: 0 };
    telegram.push_message(private_text(chat.id, 1, "hello"));
    chat.said("Hi").await;
    let contact = engine.store().contact_by_external_id(Channel::Telegram, "621").await.unwrap().unwrap();
    let first = engine.store().current_conversation(contact.id).await.unwrap().unwrap();
    engine.change_ticket(first.id, ann.id, switchboard_core::TicketChange::Status(Status::Closed), None).await.unwrap();
    chat.said("This conversation is closed").await;

    let start = |text: &'static str| {
        let (server, token) = (&server, &token);
        async move {
            let response = reqwest::Client::new()
                .post(server.url(&format!("/api/customers/{}/conversations", contact.id)))
                .bearer_auth(token)
                .json(&json!({"text": text}))
                .send()
                .await
                .unwrap();
            (response.status().as_u16(), response.json::<Value>().await.unwrap())
        }
    };
    let (status, started) = start("Your parcel left our warehouse today.").await;
    assert_eq!(status, 201, "{started}");
    let id = ConversationId::parse(started["conversation_id"].as_str().unwrap()).unwrap();
    assert_ne!(id, first.id, "a new conversation");
    chat.said("Your parcel left our warehouse today.").await;
    let new = current(&server, id).await;
    assert_eq!((new.status, new.handler), (Status::WaitingOnCustomer, Handler::Agent(ann.id)));
    let (status, refused) = start("Another thing").await;
    assert_eq!((status, refused["error"]["code"].as_str()), (409, Some("conflict")), "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap().contains(&format!("/panel/conversations/{id}")), "{refused}");
    let (status, _) = start("").await;
    assert_eq!(status, 422, "an empty message is refused");

    // The customer's answer joins the conversation Ann started, and she is told.
    telegram.push_message(private_text(chat.id, 2, "great, thanks!"));
    let deadline = tokio::time::Instant::now() + WAIT;
    while current(&server, id).await.status != Status::InProgress {
        assert!(tokio::time::Instant::now() < deadline, "the answer reaches Ann's conversation");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The first one, closed, is reopened from its page while the new one is finished.
    let refused = panel.post(&format!("/panel/conversations/{}/reopen", first.id), &[]).await;
    assert!(refused.body.contains("open conversation already"), "{}", refused.body);
    engine.change_ticket(id, ann.id, switchboard_core::TicketChange::Status(Status::Closed), None).await.unwrap();
    let page = panel.get(&format!("/panel/conversations/{}", first.id)).await.body;
    assert!(page.contains("data-test=\"reopen\""), "a closed conversation offers to reopen it");
    let reopened = panel.post(&format!("/panel/conversations/{}/reopen", first.id), &[]).await;
    let back = reopened.location.expect("back to the conversation");
    assert_eq!(back, format!("/panel/conversations/{}?done=reopen", first.id));
    let page = panel.get(&back).await.body;
    assert!(page.contains("Reopened: the conversation is yours again.") && !page.contains("data-test=\"reopen\""), "{page}");
    assert_eq!(current(&server, first.id).await.handler, Handler::Agent(ann.id));
}

#[tokio::test]
async fn through_the_api_only_an_admin_records_a_rating_and_reads_the_averages() {
    use switchboard_admin_web::accounts::create_account;
    use switchboard_tests::panel::PanelClient;
    let server = TestServer::start().await;
    let engine = server.engine();
    let password = "a long enough password";
    let dana = create_account(engine.store().as_ref(), "dana@example.com", "Dana", switchboard_models::Role::Agent, password, None).await.unwrap();
    create_account(engine.store().as_ref(), "root@example.com", "Root", switchboard_models::Role::Admin, password, None).await.unwrap();
    let dana_token = PanelClient::sign_in(&server.url(""), "dana@example.com", password).await.new_api_token("mine").await;
    let admin_token = PanelClient::sign_in(&server.url(""), "root@example.com", password).await.new_api_token("survey").await;
    engine.set_presence(dana.id, Presence::Online).await.unwrap();
    let (_, token) = server.new_visitor().await;
    let mut widget = server.connect(&token).await;
    widget.say("c1", "I want to talk to a person").await;
    let id = ConversationId::parse(widget.next_of("ack").await["conversation"]["id"].as_str().unwrap()).unwrap();
    engine.agent_reply(id, dana.id, "Done.".into(), Vec::new()).await.unwrap();
    engine.resolve(id, dana.id).await.unwrap();
    bot_says(&mut widget, "marked this as solved").await;
    widget.say("c2", "yes").await;
    bot_says(&mut widget, "How would you rate").await;

    let http = reqwest::Client::new();
    let rate = |token: &str| http.post(server.url(&format!("/api/conversations/{id}/rating"))).bearer_auth(token).json(&json!({"score": 5})).send();
    assert_eq!(rate(&dana_token).await.unwrap().status().as_u16(), 403, "nobody rates their own help");
    let taken = rate(&admin_token).await.unwrap();
    assert_eq!(taken.status().as_u16(), 200);
    assert_eq!(rate(&admin_token).await.unwrap().status().as_u16(), 409, "once");
    let averages = |token: &str| http.get(server.url("/api/ratings?days=7")).bearer_auth(token).send();
    assert_eq!(averages(&dana_token).await.unwrap().status().as_u16(), 403);
    let listed: Value = averages(&admin_token).await.unwrap().json().await.unwrap();
    assert_eq!(listed["agents"], json!([{"agent_id": dana.id.to_string(), "name": "Dana", "ratings": 1, "average": 5.0}]));
    let confirmed = engine.change_ticket(id, dana.id, switchboard_core::TicketChange::Status(Status::Confirmed), None).await.unwrap_err();
    assert!(confirmed.to_string().contains("only the customer confirms"), "{confirmed}");
}

#[tokio::test]
async fn a_customer_writing_german_is_asked_and_thanked_in_german_where_texts_are_configured() {
    let server = TestServer::start_with(|config| {
        config.nlp.enabled = true;
        config.nlp.model_dir = switchboard_tests::model_dir();
        let german = [
            ("confirm_question", "{agent} hat das als gelöst markiert. Hat das geholfen?"),
            ("yes_label", "Ja, gelöst"),
            ("no_label", "Nein, noch nicht"),
            ("rating_question", "Schön! Wie bewerten Sie die Hilfe von {agent}? 1 ist schlecht, 5 ist sehr gut."),
        ];
        let texts = german.iter().map(|(name, text)| (name.to_string(), text.to_string())).collect();
        config.closing.languages.insert("de".into(), texts);
        config.documents.languages.insert("de".into(), [("approved_notice".to_string(), "Ihr Dokument ({type}) wurde angenommen.".to_string())].into());
    })
    .await;
    let dana = server.add_agent("Dana", "dana@example.com").await;
    let (_, token) = server.new_visitor().await;
    let mut widget = server.connect(&token).await;
    widget.say("g1", "Guten Tag, mein Router funktioniert seit gestern nicht mehr richtig.").await;
    let ack = widget.next_of("ack").await;
    let id = ConversationId::parse(ack["conversation"]["id"].as_str().unwrap()).unwrap();
    widget.next_reply().await;
    assert_eq!(current(&server, id).await.language.as_deref(), Some("de"), "the language the customer writes in is kept");

    server.engine().change_ticket(id, dana, switchboard_core::TicketChange::Take, None).await.unwrap();
    server.engine().agent_reply(id, dana, "Bitte starten Sie den Router neu.".into(), Vec::new()).await.unwrap();
    server.engine().resolve(id, dana).await.unwrap();
    let question = bot_says(&mut widget, "Dana hat das als gelöst markiert. Hat das geholfen?").await;
    assert_eq!(question["quick_replies"], json!(["Ja, gelöst", "Nein, noch nicht"]), "the buttons in German too");
    widget.say("g2", "Ja, gelöst").await;
    let rating = bot_says(&mut widget, "Wie bewerten Sie die Hilfe von Dana?").await;
    assert_eq!(rating["quick_replies"], json!(["1", "2", "3", "4", "5"]));
    widget.say("g3", "5").await;
    // A text German leaves out is said in the default language.
    bot_says(&mut widget, "Anything you'd like to tell us").await;
    assert_eq!(server.engine().ratings().ratings_of(id).await.unwrap()[0].score, 5);
}

#[tokio::test]
async fn a_resolution_closed_unconfirmed_is_rated_by_the_next_rating_and_anything_else_starts_anew() {
    let server = TestServer::start().await;
    let dana = server.add_agent("Dana", "dana@example.com").await;
    let (_, token) = server.new_visitor().await;
    let mut widget = server.connect(&token).await;
    widget.say("k1", "I want to talk to a person").await;
    let ack = widget.next_of("ack").await;
    let id = ConversationId::parse(ack["conversation"]["id"].as_str().unwrap()).unwrap();
    bot_says(&mut widget, "handed your conversation").await;
    server.engine().agent_reply(id, dana, "The refund is on its way.".into(), Vec::new()).await.unwrap();
    server.engine().resolve(id, dana).await.unwrap();
    bot_says(&mut widget, "Dana marked this as solved").await;

    // Closed before the customer answered: the help is rated all the same.
    let closed = switchboard_core::TicketChange::Status(Status::Closed);
    server.engine().change_ticket(id, dana, closed, None).await.unwrap();
    let asked = bot_says(&mut widget, "Before you go: how would you rate the help you got from Dana?").await;
    assert_eq!(asked["quick_replies"], json!(["1", "2", "3", "4", "5"]));
    widget.say("k2", "4").await;
    let rated = widget.next_of("ack").await;
    assert_eq!(rated["conversation"]["id"], json!(id.to_string()), "the rating goes to the closed conversation");
    bot_says(&mut widget, "Thank you for your feedback.").await;
    let ratings = server.engine().ratings().ratings_of(id).await.unwrap();
    assert_eq!(ratings.iter().map(|r| (r.score, r.agent_id)).collect::<Vec<_>>(), [(4, Some(dana))]);
    let after = current(&server, id).await;
    assert_eq!((after.status, after.awaiting), (Status::Closed, None), "still closed, nothing more asked");

    // Once rated, a digit is a new message like any other: a new conversation.
    widget.say("k3", "5").await;
    let fresh = widget.next_of("ack").await;
    assert_ne!(fresh["conversation"]["id"], json!(id.to_string()));
    assert_eq!(server.engine().ratings().ratings_of(id).await.unwrap().len(), 1, "one rating per resolution");
}

#[tokio::test]
async fn a_rating_in_the_thread_of_a_closed_conversation_answers_it_like_a_mail_reply_does() {
    use switchboard_models::Thread;
    use switchboard_tests::webchat_inbound;
    let server = TestServer::start().await;
    let dana = server.add_agent("Dana", "dana@example.com").await;
    let engine = server.engine();
    let asked = engine.handle(webchat_inbound("threaded", None, 1, "I want to talk to a person")).await.unwrap();
    let id = asked.conversation.id;
    engine.agent_reply(id, dana, "The refund is on its way.".into(), Vec::new()).await.unwrap();
    engine.resolve(id, dana).await.unwrap();
    engine.change_ticket(id, dana, switchboard_core::TicketChange::Status(Status::Closed), None).await.unwrap();
    assert!(matches!(current(&server, id).await.awaiting, Some(Awaiting::Rating { .. })));

    // The customer answers in the closed conversation's thread (as a mail reply names it).
    let rating = switchboard_models::Inbound { thread: Thread::Continue(id), ..webchat_inbound("threaded", None, 2, "5") };
    let rated = engine.handle(rating).await.unwrap();
    assert_eq!(rated.conversation.id, id, "the rating goes to the conversation it answers");
    let ratings = engine.ratings().ratings_of(id).await.unwrap();
    assert_eq!(ratings.iter().map(|r| (r.score, r.agent_id)).collect::<Vec<_>>(), [(5, Some(dana))]);

    // Rated once: the next digit in that thread starts a new conversation.
    let again = switchboard_models::Inbound { thread: Thread::Continue(id), ..webchat_inbound("threaded", None, 3, "4") };
    assert_ne!(engine.handle(again).await.unwrap().conversation.id, id);
    assert_eq!(engine.ratings().ratings_of(id).await.unwrap().len(), 1);
}
