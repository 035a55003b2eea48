//! The widget in a real headless Chromium (driven by tests/browser/widget.mjs) against the server.

use std::path::Path;
use std::process::Command;
use switchboard_tests::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_widget_works_in_a_real_browser() {
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed; run ./scripts/test.sh, which installs it and Chromium"
    );
    let server = TestServer::start().await;
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../test-artifacts/browser");
    let url = server.url("");
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node").arg("widget.mjs").arg(url).arg(artifacts).current_dir(browser_dir).output()
    })
    .await
    .unwrap()
    .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "browser test failed\n{stdout}\n{stderr}");
    assert!(stdout.contains("browser widget test passed"), "{stdout}");
}
