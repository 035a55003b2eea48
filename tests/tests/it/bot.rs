//! The bot's intents as versions, on the real model: an admin teaches messages the bot was
//! unsure of, edits and restores versions through the API, and the bot answers from each version
//! once it is in use; the intents file changed on disk wins on reload.

use reqwest::StatusCode;
use serde_json::json;
use switchboard_admin_web::accounts::create_account;
use switchboard_models::{DomainEvent, Role};
use switchboard_tests::panel::{ApiClient, PanelClient};
use switchboard_tests::{TestServer, webchat_inbound};
use tokio::sync::broadcast;

const PASSWORD: &str = "bot test password";

/// The three small intents and three more: a shop's.
fn intents() -> String {
    format!("{}{MORE_INTENTS}", switchboard_tests::SMALL_INTENTS)
}

const MORE_INTENTS: &str = r#"
[[intent]]
name = "password_reset"
category = "account"
examples = ["I forgot my password", "how do I reset my password", "can't log in, lost my password", "password reset link please"]
answer = "Use the 'Forgot password' link on the sign-in page."

[[intent]]
name = "cancel_subscription"
category = "account"
examples = ["cancel my subscription", "I want to stop my plan", "how do I end my membership", "unsubscribe me from the monthly plan"]
answer = "You can cancel under Account, Plan."

[[intent]]
name = "store_location"
category = "general_inquiry"
examples = ["where is your shop", "what is your address", "do you have a store in Berlin", "how do I find your office"]
answer = "Our shop is at 1 Main Street."
"#;

struct Shop {
    server: TestServer,
    admin: ApiClient,
    agent: ApiClient,
    file: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

/// The built-in intents, whose 39 intents give the model calibrated doubt about what none covers.
fn built_in() -> String {
    switchboard_nlp::intents::DEFAULT_INTENTS.to_string()
}

async fn shop(intents: &str) -> Shop {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("intents.toml");
    std::fs::write(&file, intents).unwrap();
    let intents_file = file.clone();
    let server = TestServer::start_with(move |config| {
        config.nlp.enabled = true;
        config.nlp.model_dir = switchboard_tests::model_dir();
        config.nlp.cache_dir = config.attachments.dir.with_file_name("nlp-cache");
        config.nlp.intents_file = Some(intents_file);
    })
    .await;
    let store = server.engine().store().clone();
    create_account(store.as_ref(), "robin@example.com", "Robin", Role::Admin, PASSWORD, None).await.unwrap();
    create_account(store.as_ref(), "ann@example.com", "Ann", Role::Agent, PASSWORD, None).await.unwrap();
    let token = |email: &'static str| {
        let url = server.url("");
        async move { PanelClient::sign_in(&url, email, PASSWORD).await.new_api_token("bot").await }
    };
    let admin = ApiClient::new(server.url(""), token("robin@example.com").await);
    let agent = ApiClient::new(server.url(""), token("ann@example.com").await);
    Shop { server, admin, agent, file, _dir: dir }
}

/// Waits until this node put `version` in use.
async fn in_use(events: &mut broadcast::Receiver<DomainEvent>, version: i64) {
    let wait = async {
        loop {
            match events.recv().await {
                Ok(DomainEvent::IntentsChanged { version: v, in_use: true }) if v == version => return,
                Ok(_) => {}
                Err(e) => panic!("the bus ended: {e}"),
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(120), wait).await.unwrap_or_else(|_| panic!("version {version} was never put in use"));
}

/// The bot's reply to a new visitor's `text`, and the message's seq.
async fn ask(server: &TestServer, visitor: &str, text: &str) -> (i64, Vec<String>) {
    let outcome = server.engine().handle(webchat_inbound(visitor, None, 1, text)).await.unwrap();
    (outcome.message.seq, outcome.replies.iter().map(|r| r.text.clone()).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taught_messages_edits_and_restores_become_versions_the_bot_answers_from() {
    let shop = shop(&built_in()).await;
    let mut events = shop.server.engine().bus().subscribe();
    let first = shop.admin.get("/api/intents").await;
    assert_eq!((first["version"].as_i64(), first["in_use"].as_i64()), (Some(1), Some(1)), "{first}");
    assert_eq!(first["versions"][0]["origin"], "file");
    assert_eq!(first["intents"].as_array().unwrap().len(), 39);

    // The bot knows nothing of jobs: those messages need teaching.
    let jobs = [
        "are you hiring at the moment",
        "I would like to apply for a job with you",
        "do you have any open positions",
        "where can I send my CV",
        "is there an internship for students",
        "how do I join your team as an engineer",
    ];
    let mut asked = Vec::new();
    for (n, text) in jobs.iter().enumerate() {
        asked.push(ask(&shop.server, &format!("job-{n}"), text).await.0);
    }
    let day = chrono::Utc::now().date_naive();
    let period = format!("range=custom&from={day}&to={day}&zone=UTC");
    let listed_to_teach = |report: &serde_json::Value| -> Vec<i64> {
        report["needs_teaching"].as_array().unwrap().iter().flat_map(|g| g["examples"].as_array().unwrap().iter().map(|e| e["seq"].as_i64().unwrap())).collect()
    };
    // Nor of parrots: grouped apart from the jobs by what the messages say.
    let (parrot, _) = ask(&shop.server, "parrot", "my parrot sings opera").await;
    let report = shop.admin.get(&format!("/api/reports?{period}")).await;
    let unsure = listed_to_teach(&report);
    let seqs: Vec<i64> = asked.iter().copied().filter(|seq| unsure.contains(seq)).collect();
    assert!(seqs.len() >= 3, "most job messages are listed to teach: {unsure:?} of {asked:?}");
    let groups: Vec<Vec<i64>> = report["needs_teaching"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["examples"].as_array().unwrap().iter().map(|e| e["seq"].as_i64().unwrap()).collect())
        .collect();
    let parrots = groups.iter().find(|g| g.contains(&parrot)).unwrap_or_else(|| panic!("the parrot is listed: {groups:?}"));
    assert_eq!(parrots, &[parrot], "alone in its group: {groups:?}");
    assert!(groups.iter().any(|g| g.iter().filter(|seq| seqs.contains(seq)).count() >= 2), "job messages share a group: {groups:?} of {seqs:?}");
    // Agents may not; a new intent needs three examples and a category.
    let teach = |messages: &[i64], intent: &str, category: Option<&str>| json!({"messages": messages, "intent": intent, "category": category});
    let (status, _) = shop.agent.post("/api/intents/teach", teach(&seqs[..3], "job_application", Some("general_inquiry"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, error) = shop.admin.post("/api/intents/teach", teach(&seqs[..1], "job_application", Some("general_inquiry"))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    assert!(error["error"]["message"].as_str().unwrap().contains("give at least 3"), "{error}");
    let (status, error) = shop.admin.post("/api/intents/teach", teach(&seqs[..3], "job_application", None)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    assert!(error["error"]["message"].as_str().unwrap().contains("choose a category"), "{error}");

    let (status, taught) = shop.admin.post("/api/intents/teach", teach(&seqs, "job_application", Some("general_inquiry"))).await;
    assert_eq!((status, taught["version"].as_i64()), (StatusCode::OK, Some(2)), "{taught}");
    in_use(&mut events, 2).await;
    let still = listed_to_teach(&shop.admin.get(&format!("/api/reports?{period}")).await);
    assert!(seqs.iter().all(|seq| !still.contains(seq)), "taught messages need no more teaching: {still:?}");
    let versions = shop.admin.get("/api/intents").await;
    let two = &versions["versions"][0];
    assert_eq!((two["number"].as_i64(), two["origin"].as_str(), two["author"].as_str()), (Some(2), Some("teaching"), Some("Robin")), "{two}");
    assert_eq!(two["accuracy"]["labelled"].as_u64(), Some(seqs.len() as u64), "{two}");
    assert_eq!(two["accuracy"]["before"], 0.0, "nothing was job_application before: {two}");
    assert!(two["accuracy"]["after"].as_f64().unwrap() > 0.5, "{two}");

    // The taught intent has no answer yet: an edit of the text adds one.
    let text = shop.admin.get("/api/intents/versions/2").await["text"].as_str().unwrap().to_string();
    assert!(text.starts_with("# Switchboard default intents\n") && text.contains("\nversion = 2\n"), "comments and layout stay; the version follows");
    assert!(text.contains("name = \"job_application\"\ncategory = \"general_inquiry\"\nexamples = [\n  \""), "the new intent, one example per line: {text}");
    let answered = text.replace("name = \"job_application\"\n", "name = \"job_application\"\nanswer = \"Thanks for your interest! Our open positions are on the Careers page.\"\n");
    let (status, stale) = shop.admin.post("/api/intents", json!({"after": 1, "text": answered})).await;
    assert_eq!(status, StatusCode::CONFLICT, "an edit of an older version is refused: {stale}");
    let broken = answered.replace("category = \"general_inquiry\"", "category = \"careers\"");
    let (status, error) = shop.admin.post("/api/intents", json!({"after": 2, "text": broken})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let why = error["error"]["message"].as_str().unwrap();
    assert!(why.starts_with("line ") && why.contains("unknown category `careers`"), "{why}");
    let (status, saved) = shop.admin.post("/api/intents", json!({"after": 2, "text": answered, "note": "answer for job seekers"})).await;
    assert_eq!((status, saved["version"].as_i64()), (StatusCode::OK, Some(3)), "{saved}");
    in_use(&mut events, 3).await;
    // A taught phrase, from another customer: before, the bot was unsure of it.
    let taught_text = jobs[asked.iter().position(|seq| *seq == seqs[0]).unwrap()];
    let (_, replies) = ask(&shop.server, "job-new", taught_text).await;
    assert!(replies.iter().any(|r| r == "Thanks for your interest! Our open positions are on the Careers page."), "the bot answers from version 3: {replies:?}");

    // Restoring version 1 is version 4: the bot no longer knows jobs.
    let (status, restored) = shop.admin.post("/api/intents/versions/1/restore", json!({})).await;
    assert_eq!((status, restored["version"].as_i64()), (StatusCode::OK, Some(4)), "{restored}");
    in_use(&mut events, 4).await;
    let (_, replies) = ask(&shop.server, "job-after", taught_text).await;
    assert!(!replies.iter().any(|r| r.contains("Careers page")), "{replies:?}");
    let listed = shop.admin.get("/api/intents").await;
    let notes: Vec<&str> = listed["versions"].as_array().unwrap().iter().map(|v| v["note"].as_str().unwrap()).collect();
    let started = format!("started the intent `job_application` from {} message(s)", seqs.len());
    assert_eq!(notes[..3], ["restored version 1", "answer for job seekers", started.as_str()]);
    let (status, _) = shop.admin.post("/api/intents/versions/4/restore", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "the newest version is restored already");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_intents_file_changed_on_disk_wins_over_panel_edits_on_reload() {
    let shop = shop(&intents()).await;
    let mut events = shop.server.engine().bus().subscribe();
    let text = shop.admin.get("/api/intents/versions/1").await["text"].as_str().unwrap().to_string();
    let edited = text.replace("We are open 9 to 5.", "We are open 8 to 8.");
    let (status, saved) = shop.admin.post("/api/intents", json!({"after": 1, "text": edited})).await;
    assert_eq!((status, saved["version"].as_i64()), (StatusCode::OK, Some(2)));
    in_use(&mut events, 2).await;
    let (_, replies) = ask(&shop.server, "hours-1", "when are you open").await;
    assert!(replies.iter().any(|r| r == "We are open 8 to 8."), "{replies:?}");

    // The file changed on disk is taken on the next start or reload, not while this node
    // follows versions recorded in the panel (or by other nodes, whose files may differ).
    std::fs::write(&shop.file, intents().replace("We are open 9 to 5.", "We are open at dawn.")).unwrap();
    let text = shop.admin.get("/api/intents/versions/2").await["text"].as_str().unwrap().to_string();
    let (status, saved) = shop.admin.post("/api/intents", json!({"after": 2, "text": text.replace("8 to 8", "8 to 9")})).await;
    assert_eq!((status, saved["version"].as_i64()), (StatusCode::OK, Some(3)));
    in_use(&mut events, 3).await;
    assert_eq!(shop.admin.get("/api/intents").await["version"], 3, "following a version records no file");
    std::fs::write(&shop.file, intents()).unwrap();

    // A reload with the file unchanged keeps the panel's version.
    let (status, reloaded) = shop.admin.post("/api/admin/intents/reload", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{reloaded}");
    assert_eq!(shop.admin.get("/api/intents").await["version"], 3);

    // A broken file is refused, and the running version stays.
    std::fs::write(&shop.file, intents().replace("category = \"billing\"", "category = \"money\"")).unwrap();
    let (status, error) = shop.admin.post("/api/admin/intents/reload", json!({})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    assert!(error["error"]["message"].as_str().unwrap().contains("unknown category `money`"), "{error}");
    assert_eq!(shop.admin.get("/api/intents").await["version"], 3);

    std::fs::write(&shop.file, intents().replace("We are open 9 to 5.", "We are open around the clock.")).unwrap();
    let (status, reloaded) = shop.admin.post("/api/admin/intents/reload", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{reloaded}");
    in_use(&mut events, 4).await;
    let listed = shop.admin.get("/api/intents").await;
    assert_eq!((listed["version"].as_i64(), listed["versions"][0]["origin"].as_str()), (Some(4), Some("file")), "{listed}");
    assert!(listed["versions"][0]["note"].as_str().unwrap().ends_with("changed on disk"), "{listed}");
    let (_, replies) = ask(&shop.server, "hours-2", "when are you open").await;
    assert!(replies.iter().any(|r| r == "We are open around the clock."), "{replies:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_teaches_edits_and_restores_on_the_pages_and_they_pass_axe_in_chromium() {
    let shop = shop(&built_in()).await;
    // Off topic for every intent, so out of scope on any CPU (the int8 engine's products differ
    // slightly between CPUs with and without VNNI; borderline confidences move with them).
    let off_topic = ["what is the boiling point of mercury in kelvin", "recommend me a good pasta recipe with mushrooms", "who won the football world cup in 1998"];
    for (n, text) in off_topic.iter().enumerate() {
        ask(&shop.server, &format!("page-job-{n}"), text).await;
    }
    let day = chrono::Utc::now().date_naive().to_string();
    let args = vec![shop.server.url(""), crate::browser::artifacts(), "robin@example.com".into(), PASSWORD.into(), day];
    crate::browser::run_script("bot.mjs", args, "browser bot test passed").await;
    let versions = shop.server.engine().intent_versions();
    let labelled = versions.labelled_messages().await.unwrap();
    assert!(!labelled.is_empty() && labelled.iter().all(|(_, intent)| intent == "invoice_copy"), "{labelled:?}");
    let (latest, text) = versions.latest_intents().await.unwrap().unwrap();
    assert_eq!((latest.number, latest.origin), (5, switchboard_models::IntentsOrigin::Panel));
    assert!(text.contains("the Contact page of our website") && !text.contains("our Help page"), "version 1's answers came back with version 4");
    assert!(text.contains("answer = \"Dark mode is under Settings. You wrote: {{message}}\""), "version 5 edited one answer");
    assert!(text.contains(r#"answers = { de = "Den dunklen Modus finden Sie unter Einstellungen, {{customer.name}}." }"#), "with its German translation: {text}");
    assert!(!text.contains("gift_cards"), "the refused intent was not saved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_intent_is_edited_disabled_or_added_and_the_bot_answers_from_the_new_version() {
    let shop = shop(&intents()).await;
    let mut events = shop.server.engine().bus().subscribe();
    let examples = |list: &[&str]| list.iter().map(|e| e.to_string()).collect::<Vec<_>>();
    let hours = json!({
        "after": 1, "name": "opening_hours", "category": "general_inquiry",
        "examples": examples(&["when are you open", "what are your opening hours", "are you open on sunday", "business hours?", "Guten Tag, können Sie mir bitte sagen, wann Ihr Geschäft am Samstag geöffnet hat?"]),
        "answer": "We are open 7 to 7.",
        "answers": {"de": "Wir haben von 7 bis 7 geöffnet."},
    });
    let (status, saved) = shop.admin.post("/api/intents/intent", hours.clone()).await;
    assert_eq!((status, saved["version"].as_i64()), (StatusCode::OK, Some(2)), "{saved}");
    in_use(&mut events, 2).await;
    let (_, replies) = ask(&shop.server, "edit-1", "when are you open").await;
    assert!(replies.iter().any(|r| r == "We are open 7 to 7."), "{replies:?}");
    let (_, replies) = ask(&shop.server, "edit-1-de", "Guten Tag, können Sie mir bitte sagen, wann Ihr Geschäft am Samstag geöffnet hat?").await;
    assert!(replies.iter().any(|r| r == "Wir haben von 7 bis 7 geöffnet."), "the German translation answers German: {replies:?}");
    let listed = shop.admin.get("/api/intents").await;
    let opening = listed["intents"].as_array().unwrap().iter().find(|i| i["name"] == "opening_hours").unwrap().clone();
    assert_eq!(opening["answers"], json!({"de": "Wir haben von 7 bis 7 geöffnet."}));
    let (status, error) = shop.admin.post("/api/intents/intent", json!({"after": 2, "name": "opening_hours", "category": "general_inquiry", "examples": examples(&["when are you open", "opening hours", "business hours?"]), "answer": "Open.", "answers": {"klingon": "Qapla'"}})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    // An answer greets the customer by name, on their channel.
    let greeting = json!({
        "after": 2, "name": "opening_hours", "category": "general_inquiry",
        "examples": examples(&["when are you open", "what are your opening hours", "are you open on sunday", "business hours?"]),
        "answer": "Hi {{customer.name}}, we are open 7 to 7 (you wrote on {{channel}}).",
    });
    let (status, saved) = shop.admin.post("/api/intents/intent", greeting).await;
    assert_eq!((status, saved["version"].as_i64()), (StatusCode::OK, Some(3)), "{saved}");
    in_use(&mut events, 3).await;
    let named = shop.server.engine().handle(webchat_inbound("edit-named", Some("Dana"), 1, "when are you open")).await.unwrap();
    let texts: Vec<&str> = named.replies.iter().map(|r| r.text.as_str()).collect();
    assert!(texts.contains(&"Hi Dana, we are open 7 to 7 (you wrote on the web chat)."), "{texts:?}");
    let (status, _) = shop.admin.post("/api/intents/intent", hours).await;
    assert_eq!(status, StatusCode::CONFLICT, "edited from version 1, which is no longer the newest");

    // Disabled: kept in the file, no longer answered.
    let invoices = json!({
        "after": 3, "name": "invoice_copy", "category": "billing", "enabled": false, "answer": "Invoices are under Billing.",
        "examples": examples(&["send me my invoice", "I need a copy of my bill", "where can I download invoices", "receipt for my payment"]),
    });
    let (status, saved) = shop.admin.post("/api/intents/intent", invoices).await;
    assert_eq!((status, saved["version"].as_i64()), (StatusCode::OK, Some(4)), "{saved}");
    in_use(&mut events, 4).await;
    let (_, replies) = ask(&shop.server, "edit-2", "send me my invoice").await;
    assert!(!replies.iter().any(|r| r == "Invoices are under Billing."), "{replies:?}");
    let listed = shop.admin.get("/api/intents").await;
    let invoice = listed["intents"].as_array().unwrap().iter().find(|i| i["name"] == "invoice_copy").unwrap().clone();
    assert_eq!(invoice["enabled"], false);

    // Added.
    let shipping = json!({
        "after": 4, "name": "shipping_cost", "category": "general_inquiry", "answer": "Shipping is free over 50 EUR.",
        "examples": examples(&["how much is shipping", "delivery fee to germany", "do you charge for postage", "shipping costs"]),
    });
    let (status, saved) = shop.admin.post("/api/intents/intent", shipping).await;
    assert_eq!((status, saved["version"].as_i64(), saved["note"].as_str()), (StatusCode::OK, Some(5), Some("added the intent `shipping_cost`")), "{saved}");
    in_use(&mut events, 5).await;
    let (_, replies) = ask(&shop.server, "edit-3", "how much is shipping").await;
    assert!(replies.iter().any(|r| r == "Shipping is free over 50 EUR."), "{replies:?}");

    // What would not load is refused with the reason, and nothing is recorded.
    let person = json!({"after": 5, "name": "human_request", "category": "general_inquiry", "enabled": false, "examples": examples(&["I want a person", "talk to a human", "get me an agent"])});
    let (status, error) = shop.admin.post("/api/intents/intent", person).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error["error"]["message"].as_str().unwrap().contains("cannot be disabled"), "{error}");
    let (status, error) = shop.admin.post("/api/intents/intent", json!({"after": 5, "name": "Bad Name", "category": "billing", "examples": []})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    let (status, error) = shop.admin.post("/api/intents/intent", json!({"after": 5, "name": "thin", "category": "billing", "examples": examples(&["one"])})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error["error"]["message"].as_str().unwrap().contains("give at least 3"), "{error}");
    assert_eq!(shop.admin.get("/api/intents").await["version"], 5);

    // Words that always hand to a person, whatever the message is about.
    let (status, saved) = shop.admin.post("/api/intents/escalate-words", json!({"after": 5, "words": ["chargeback", "Legal action"]})).await;
    assert_eq!((status, saved["version"].as_i64()), (StatusCode::OK, Some(6)), "{saved}");
    in_use(&mut events, 6).await;
    assert_eq!(shop.admin.get("/api/intents").await["escalate_words"], json!(["chargeback", "legal action"]));
    let plain = shop.server.engine().handle(webchat_inbound("words-1", None, 1, "when are you open")).await.unwrap();
    assert!(!plain.escalated);
    let warned = shop.server.engine().handle(webchat_inbound("words-2", None, 1, "When are you open? Otherwise I start LEGAL ACTION.")).await.unwrap();
    assert!(warned.escalated, "an escalate word hands it to a person");
    let (status, _) = shop.admin.post("/api/intents/escalate-words", json!({"after": 5, "words": []})).await;
    assert_eq!(status, StatusCode::CONFLICT);
}
