//! What an operator watches: `/metrics` in the Prometheus format.

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
    switchboard_admin_web::accounts::create_account(
        server.engine().store().as_ref(), "ada@example.com", "Ada", switchboard_models::Role::Admin, "tangerine harbour lantern 42", None,
    )
    .await
    .unwrap();
    let ada = switchboard_tests::panel::PanelClient::sign_in(&server.url(""), "ada@example.com", "tangerine harbour lantern 42").await;
    let system = ada.get("/panel/admin/system").await;
    assert!(system.body.contains("data-test=\"system-status\">ready<"), "{}", system.body);
    assert!(system.body.contains("data-test=\"system-backlog\">0<"), "{}", system.body);
}
