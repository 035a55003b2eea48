//! The widget and the panel in a real headless Chromium (driven by tests/browser/*.mjs).

use std::path::Path;
use std::process::Command;
use switchboard_tests::TestServer;

/// Runs a browser script against the server; its last line must be `passed_line`.
pub(crate) async fn run_script(script: &'static str, args: Vec<String>, passed_line: &str) {
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser");
    for package in ["playwright-core", "axe-core"] {
        assert!(
            browser_dir.join("node_modules").join(package).exists(),
            "{package} is not installed; run ./scripts/test.sh, which installs it and Chromium"
        );
    }
    let output = tokio::task::spawn_blocking(move || Command::new("node").arg(script).args(args).current_dir(browser_dir).output())
        .await
        .unwrap()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "browser test failed\n{stdout}\n{stderr}");
    assert!(stdout.contains(passed_line), "{stdout}");
}

pub(crate) fn artifacts() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../test-artifacts/browser").display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_widget_works_in_a_real_browser() {
    let server = TestServer::start().await;
    run_script("widget.mjs", vec![server.url(""), artifacts()], "browser widget test passed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_answers_a_widget_customer_live_in_the_panel() {
    let server = TestServer::start().await;
    let args = panel_args(&server, switchboard_models::Role::Agent).await;
    run_script("panel.mjs", args, "browser panel test passed").await;
}

/// The script arguments for a panel test: the server, the artifacts folder and a new account's email and password.
async fn panel_args(server: &TestServer, role: switchboard_models::Role) -> Vec<String> {
    let (email, password) = ("robin@example.com", "panel test password");
    switchboard_admin_web::accounts::create_account(server.engine().store().as_ref(), email, "Robin", role, password, None)
        .await
        .unwrap();
    vec![server.url(""), artifacts(), email.into(), password.into()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_business_hours_the_widget_header_says_when_the_team_is_back() {
    // Saturday noon in Berlin; the team works weekdays from 09:00.
    let saturday = chrono::DateTime::parse_from_rfc3339("2026-12-05T11:00:00Z").unwrap().with_timezone(&chrono::Utc);
    let clock = std::sync::Arc::new(switchboard_core::ports::ManualClock::new(saturday));
    let server = TestServer::start_with_clock(clock, |config| {
        config.business_hours.time_zone = "Europe/Berlin".into();
        config.business_hours.monday = "09:00-17:00".into();
        config.business_hours.tuesday = "09:00-17:00".into();
    })
    .await;
    run_script("widget-hours.mjs", vec![server.url(""), artifacts(), "Monday 09:00 CET".into()], "browser widget hours test passed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_widget_works_by_keyboard_and_screen_reader_and_passes_axe() {
    let server = TestServer::start().await;
    run_script("widget-access.mjs", vec![server.url(""), artifacts()], "browser widget accessibility test passed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_panel_works_by_keyboard_and_screen_reader_and_passes_axe() {
    let server = TestServer::start().await;
    let args = panel_args(&server, switchboard_models::Role::Admin).await;
    run_script("panel-access.mjs", args, "browser panel accessibility test passed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_changes_what_the_bot_says_on_the_settings_page_and_the_widget_hears_it_at_once() {
    let server = TestServer::start().await;
    let args = panel_args(&server, switchboard_models::Role::Admin).await;
    run_script("settings.mjs", args, "browser settings test passed").await;
}
