//! Reports on a seeded history with known answers: ten conversations, three handed to a person
//! who answered after 2, 4 and 6 minutes, one resolved and rated. The history is made through the
//! engine (a moved clock, no sleeps) and read through the JSON API and CSV files.

use reqwest::StatusCode;
use std::sync::Arc;
use switchboard_admin_web::accounts::create_account;
use switchboard_core::ports::ManualClock;
use switchboard_models::{Presence, Role, Status};
use switchboard_tests::panel::{ApiClient, PanelClient};
use switchboard_tests::{TestServer, webchat_inbound};

const PASSWORD: &str = "reports test password";

/// Noon UTC today, in whole milliseconds: a period of one day holds everything the test does.
fn noon() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now().date_naive().and_hms_opt(12, 0, 0).unwrap().and_utc()
}

async fn raw(server: &TestServer, token: &str, path: &str) -> (StatusCode, String, Option<String>) {
    let reply = reqwest::Client::new().get(server.url(path)).bearer_auth(token).send().await.unwrap();
    let kind = reply.headers().get("content-type").and_then(|v| v.to_str().ok()).map(String::from);
    (reply.status(), reply.text().await.unwrap(), kind)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seeded_history_reports_its_known_volume_escalations_waits_and_ratings() {
    let clock = Arc::new(ManualClock::new(noon()));
    // A first reply is due within 5 minutes, whatever the priority.
    let server = TestServer::start_with_clock(clock.clone(), |config| {
        for target in [&mut config.sla.urgent, &mut config.sla.high, &mut config.sla.medium, &mut config.sla.low] {
            target.first_reply_minutes = 5;
        }
    })
    .await;
    let engine = server.engine();
    let store = engine.store().clone();
    create_account(store.as_ref(), "robin@example.com", "Robin", Role::Admin, PASSWORD, None).await.unwrap();
    let ann = create_account(store.as_ref(), "ann@example.com", "Ann", Role::Agent, PASSWORD, None).await.unwrap();

    let mut conversations = Vec::new();
    for n in 0..10 {
        let outcome = engine.handle(webchat_inbound(&format!("visitor-{n}"), None, 1, "hello")).await.unwrap();
        assert!(!outcome.escalated);
        conversations.push(outcome.conversation);
    }
    // Something the bot cannot place: it needs teaching.
    engine.handle(webchat_inbound("visitor-9", None, 2, "my parrot sings opera")).await.unwrap();
    for conversation in &conversations[..3] {
        let visitor = store.contact(conversation.contact_id).await.unwrap().unwrap().external_id;
        let outcome = engine.handle(webchat_inbound(&visitor, None, 2, "I want to talk to a person")).await.unwrap();
        assert!(outcome.escalated, "a request for a person escalates");
    }
    for conversation in &conversations[..3] {
        clock.advance(chrono::Duration::minutes(2));
        engine.agent_reply(conversation.id, ann.id, "Hello, Ann here.".into(), Vec::new()).await.unwrap();
    }
    // A second reply is no first reply.
    engine.agent_reply(conversations[0].id, ann.id, "Still there?".into(), Vec::new()).await.unwrap();
    clock.advance(chrono::Duration::minutes(10));
    engine.resolve(conversations[0].id, ann.id).await.unwrap();
    engine.handle(webchat_inbound("visitor-0", None, 3, "Yes, it's fixed")).await.unwrap();
    assert_eq!(store.conversation(conversations[0].id).await.unwrap().unwrap().status, Status::Confirmed);
    assert!(engine.rate(conversations[0].id, conversations[0].contact_id, 4).await.unwrap());
    // Ann is online for 45 minutes.
    engine.set_presence(ann.id, Presence::Online).await.unwrap();
    clock.advance(chrono::Duration::minutes(45));
    engine.set_presence(ann.id, Presence::Away).await.unwrap();

    let admin_panel = PanelClient::sign_in(&server.url(""), "robin@example.com", PASSWORD).await;
    let admin = ApiClient::new(server.url(""), admin_panel.new_api_token("reports").await);
    let day = noon().date_naive();
    let period = format!("range=custom&from={day}&to={day}&zone=UTC");
    let report = admin.get(&format!("/api/reports?{period}")).await;
    assert_eq!(report["conversations"], 10);
    assert_eq!(report["bot"]["escalations"], 3);
    assert_eq!(report["bot"]["escalation_rate"], 0.3);
    assert_eq!(report["bot"]["by_reason"], serde_json::json!([{"name": "human_requested", "count": 3}]));
    let first_reply = &report["first_reply"];
    assert_eq!((first_reply["count"].as_i64(), first_reply["median_ms"].as_i64(), first_reply["p90_ms"].as_i64()), (Some(3), Some(240_000), Some(360_000)), "waits of 2, 4 and 6 minutes");
    assert!((first_reply["within_sla"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-9, "two of three within 5 minutes: {first_reply}");
    assert_eq!(report["resolution"]["within_sla"], 1.0);
    assert_eq!(report["resolution"]["count"], 1);
    assert_eq!(report["resolution"]["median_ms"], 16 * 60_000, "resolved 16 minutes after it started");
    assert_eq!(report["satisfaction"]["ratings"], 1);
    assert_eq!(report["satisfaction"]["distribution"], serde_json::json!([0, 0, 0, 1, 0]));
    assert_eq!(report["customer_messages"], 10 + 1 + 3 + 1);
    let teaching = report["needs_teaching"].as_array().unwrap();
    let parrot = teaching.iter().flat_map(|g| g["examples"].as_array().unwrap()).find(|e| e["text"] == "my parrot sings opera");
    assert!(parrot.is_some(), "the unplaced message waits to be taught: {teaching:?}");
    let examples: Vec<&str> = teaching.iter().flat_map(|g| g["examples"].as_array().unwrap()).filter_map(|e| e["text"].as_str()).collect();
    assert!(!examples.contains(&"Yes, it's fixed"), "an answer to the bot's question needs no teaching: {examples:?}");
    let greeting = report["intents"].as_array().unwrap().iter().find(|i| i["name"] == "greeting").expect("greetings counted");
    assert_eq!(greeting["count"], 10);
    assert_eq!(report["answers_sent"], serde_json::json!([{"name": "greeting", "count": 10}]), "the greeting's answer went out ten times; handoffs, unsure and awaited answers are none");
    let agents = report["agents"].as_array().unwrap();
    assert_eq!(agents.len(), 1, "{agents:?}");
    assert_eq!((agents[0]["name"].as_str(), agents[0]["assigned"].as_i64(), agents[0]["resolved"].as_i64()), (Some("Ann"), Some(3), Some(1)));
    let today: i64 = report["days"].as_array().unwrap().iter().map(|d| d["total"].as_i64().unwrap()).sum();
    assert_eq!(today, 10);
    assert_eq!(report["period"]["zone"], "UTC");

    // The filters: another channel has nothing; Ann's conversations are the three she took.
    let telegram = admin.get(&format!("/api/reports?{period}&channel=telegram")).await;
    assert_eq!((telegram["conversations"].as_i64(), telegram["bot"]["escalations"].as_i64()), (Some(0), Some(0)));
    let hers = admin.get(&format!("/api/reports?{period}&agent={}", ann.id)).await;
    assert_eq!(hers["conversations"], 3);
    // An agent sees their own numbers, whatever they ask for.
    let ann_panel = PanelClient::sign_in(&server.url(""), "ann@example.com", PASSWORD).await;
    let ann_api = ApiClient::new(server.url(""), ann_panel.new_api_token("mine").await);
    let own = ann_api.get(&format!("/api/reports?{period}")).await;
    assert_eq!((own["conversations"].as_i64(), own["period"]["agent"].as_str()), (Some(3), Some(ann.id.to_string().as_str())));
    let page = ann_panel.get(&format!("/panel/reports?{period}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("My numbers") && page.body.contains("<svg"), "{}", page.body);
    // Her online time today: 45 minutes, then away.
    assert_eq!((own["online_today_minutes"].as_i64(), hers["online_today_minutes"].as_i64()), (Some(45), Some(45)));
    assert!(page.body.contains("0 h 45 min"), "the page shows it");
    assert!(report.get("online_today_minutes").is_none(), "a report of everyone has no one's online time");

    // The same numbers as CSV.
    let (status, csv, kind) = raw(&server, admin.token(), &format!("/api/reports/agents.csv?{period}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(kind.as_deref(), Some("text/csv; charset=utf-8"));
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "agent,assigned,first_reply_median_seconds,first_reply_p90_seconds,resolved,resolution_median_seconds,resolution_p90_seconds,ratings,average_rating");
    assert_eq!(lines[1], "Ann,3,240,360,1,960,960,1,4.00");
    let (_, volume, _) = raw(&server, admin.token(), &format!("/api/reports/volume.csv?{period}")).await;
    assert_eq!(volume.lines().nth(1), Some(format!("{day},10,10,0,0,0").as_str()));

    // Working hours for any period, as CSV too.
    let hours = admin_panel.get(&format!("/panel/admin/hours.csv?from={day}&to={day}")).await;
    assert_eq!(hours.status, StatusCode::OK);
    assert_eq!(hours.body, format!("agent,day,minutes_online\r\nAnn,{day},45\r\n"));
    let page = admin_panel.get(&format!("/panel/admin/hours?from={day}&to={day}")).await;
    assert!(page.body.contains("0h 45m"), "{}", page.body);
    let earlier = day - chrono::Duration::days(3);
    let none = admin_panel.get(&format!("/panel/admin/hours.csv?from={earlier}&to={earlier}")).await;
    assert_eq!(none.body, "agent,day,minutes_online\r\n", "nothing outside the period");
    let backwards = admin_panel.get(&format!("/panel/admin/hours.csv?from={day}&to={earlier}")).await;
    assert_eq!(backwards.status, StatusCode::BAD_REQUEST);
    assert_eq!(ann_panel.get("/panel/admin/hours.csv").await.status, StatusCode::FORBIDDEN, "working hours are for admins");

    // Bad requests say what was wrong.
    let (status, body, _) = raw(&server, admin.token(), "/api/reports?zone=Mars/Olympus").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("IANA"), "{body}");
    let (status, body, _) = raw(&server, admin.token(), &format!("/api/reports?range=custom&from={day}&to=2020-01-01")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("before"), "{body}");
    let (status, body, _) = raw(&server, admin.token(), "/api/reports?range=forever").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("today, 7d, 30d or custom"), "{body}");
    let (status, body, _) = raw(&server, admin.token(), "/api/reports/everything.csv").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("agents.csv"), "{body}");
    let (status, _, _) = raw(&server, "not-a-token", "/api/reports").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reports_page_draws_its_charts_filters_and_exports_and_passes_axe_in_chromium() {
    let clock = Arc::new(ManualClock::new(noon()));
    let server = TestServer::start_with_clock(clock.clone(), |_| {}).await;
    let engine = server.engine();
    let store = engine.store().clone();
    create_account(store.as_ref(), "robin@example.com", "Robin", Role::Admin, PASSWORD, None).await.unwrap();
    let ann = create_account(store.as_ref(), "ann@example.com", "Ann", Role::Agent, PASSWORD, None).await.unwrap();
    let mut escalated = Vec::new();
    for n in 0..4 {
        let visitor = format!("page-visitor-{n}");
        engine.handle(webchat_inbound(&visitor, None, 1, "hello")).await.unwrap();
        if n < 2 {
            escalated.push(engine.handle(webchat_inbound(&visitor, None, 2, "I want to talk to a person")).await.unwrap().conversation.id);
        }
    }
    clock.advance(chrono::Duration::minutes(3));
    for id in escalated {
        engine.agent_reply(id, ann.id, "Hello, Ann here.".into(), Vec::new()).await.unwrap();
    }
    let args = vec![server.url(""), crate::browser::artifacts(), "robin@example.com".into(), PASSWORD.into(), noon().date_naive().to_string()];
    crate::browser::run_script("reports.mjs", args, "browser reports test passed").await;
}
