//! What an operator watches: `/metrics` in the Prometheus format, `/readyz` and the System page.

use reqwest::StatusCode;
use switchboard::config::Secret;
use switchboard_tests::TestServer;

/// The value of the first sample of `name` whose labels contain every one of `labels`.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| line.split([' ', '{']).next() == Some(name))
        .find(|line| labels.iter().all(|label| line.contains(label)))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
}

/// A signed-in admin's panel client.
async fn admin(server: &TestServer) -> switchboard_tests::panel::PanelClient {
    switchboard_admin_web::accounts::create_account(
        server.engine().store().as_ref(), "ada@example.com", "Ada", switchboard_models::Role::Admin, "tangerine harbour lantern 42", None,
    )
    .await
    .unwrap();
    switchboard_tests::panel::PanelClient::sign_in(&server.url(""), "ada@example.com", "tangerine harbour lantern 42").await
}

#[tokio::test]
async fn metrics_count_messages_steps_deliveries_and_requests_behind_a_token() {
    let server = TestServer::start_with(|c| c.server.metrics_token = Some(Secret("scrape-secret-123".into()))).await;
    let (_, token) = server.new_visitor().await;
    let mut widget = server.connect(&token).await;
    widget.next_of("ready").await;
    // Subscribed first, so the outbox's record of the delivery cannot be missed.
    let mut events = server.engine().bus().subscribe();
    widget.say("c1", "hello").await;
    widget.next_reply().await;
    // The widget may show the reply a moment before the outbox records it delivered.
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            if let Ok(switchboard_models::DomainEvent::DeliveryChanged(m)) = events.recv().await
                && m.delivery.is_some_and(|d| d.state == switchboard_models::DeliveryState::Sent)
            {
                break;
            }
        }
    })
    .await
    .expect("the reply was never recorded delivered");

    let http = reqwest::Client::new();
    let refused = http.get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED, "the token is asked for");
    let scrape = http.get(server.url("/metrics")).bearer_auth("scrape-secret-123").send().await.unwrap();
    assert_eq!(scrape.status(), StatusCode::OK);
    assert!(scrape.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = scrape.text().await.unwrap();
    // Tests share one process-wide recorder, so counts are at least this test's own.
    assert!(sample(&text, "switchboard_messages_received_total", &["channel=\"webchat\""]).unwrap_or(0.0) >= 1.0, "{text}");
    assert!(sample(&text, "switchboard_deliveries_total", &["channel=\"webchat\"", "outcome=\"delivered\""]).unwrap_or(0.0) >= 1.0, "{text}");
    assert!(sample(&text, "switchboard_step_commit_seconds_count", &[]).unwrap_or(0.0) >= 1.0, "{text}");
    // The group commits: how busy the committers are (the sum of their times), how many steps each held.
    assert!(sample(&text, "switchboard_store_group_commit_seconds_count", &[]).unwrap_or(0.0) >= 1.0, "{text}");
    assert!(sample(&text, "switchboard_store_group_steps_sum", &[]).unwrap_or(0.0) >= 1.0, "{text}");
    assert!(
        sample(&text, "switchboard_http_request_seconds_count", &["route=\"/webchat/session\"", "status=\"200\""]).unwrap_or(0.0) >= 1.0,
        "requests are counted by route pattern: {text}"
    );
    assert!(!text.contains(&token), "no visitor token or path ends up in a label");
    assert!(sample(&text, "switchboard_webchat_sockets", &[]).unwrap_or(0.0) >= 1.0, "the open socket is counted: {text}");

    let ready: serde_json::Value = reqwest::get(server.url("/readyz")).await.unwrap().json().await.unwrap();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["outbox"]["backlog"], 0, "the reply was delivered: {ready}");

    // Admins see the same on the System page.
    let ada = admin(&server).await;
    let system = ada.get("/panel/admin/system").await;
    assert!(system.body.contains("data-test=\"system-status\">ready<"), "{}", system.body);
    assert!(system.body.contains("data-test=\"system-backlog\">0<"), "{}", system.body);
}

#[tokio::test]
async fn the_telegram_poller_reports_its_state_in_readyz_and_on_the_system_page() {
    use switchboard_tests::fake_telegram::{FakeTelegram, TOKEN};
    let telegram = FakeTelegram::start().await;
    let url = telegram.url();
    let server = TestServer::start_with(move |c| {
        c.telegram.token = Some(Secret(TOKEN.into()));
        c.telegram.api_url = Some(url);
        c.llm.base_url = Some("http://127.0.0.1:9/v1".into());
    })
    .await;
    let up = server.connection_state("telegram", |c| c["state"] == "up").await;
    assert_eq!(up["detail"], "long polling");
    assert!(up["last_ok_at"].is_string() && up["last_error"].is_null(), "{up}");
    let llm = server.connection_state("llm", |_| true).await;
    assert_eq!(llm["state"], "waiting", "the LLM was not called yet: {llm}");

    telegram.set_polling_outage(true);
    let down = server.connection_state("telegram", |c| c["state"] == "down").await;
    assert!(down["detail"].as_str().unwrap().contains("getUpdates failed"), "{down}");
    assert!(down["last_error"].as_str().unwrap().contains("Bad Gateway"), "{down}");
    assert!(down["last_ok_at"].as_str().unwrap() >= up["last_ok_at"].as_str().unwrap(), "the last success stays known: {down}");

    telegram.set_polling_outage(false);
    let again = server.connection_state("telegram", |c| c["state"] == "up").await;
    assert!(again["last_error"].as_str().unwrap().contains("Bad Gateway"), "the last error stays known: {again}");

    // The states are written for the other nodes' probes too.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let stored = server.engine().store().channel_states().await.unwrap();
        if stored.iter().any(|s| s.name == "telegram" && s.up && s.last_error.is_some()) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never written: {stored:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    let ada = admin(&server).await;
    let system = ada.get("/panel/admin/system").await;
    let row = system.body.split("data-name=\"telegram\"").nth(1).unwrap_or_else(|| panic!("a Telegram row: {}", system.body)).split("</tr>").next().unwrap().to_string();
    assert!(row.contains("data-test=\"connection-state\">up<") && row.contains("long polling"), "{row}");
    assert!(row.contains("Bad Gateway"), "the last error is shown: {row}");
    let llm_row = system.body.split("data-name=\"llm\"").nth(1).expect("an LLM row").split("</tr>").next().unwrap().to_string();
    assert!(llm_row.contains(">waiting<") && llm_row.contains("not reported by any node yet"), "{llm_row}");
}
