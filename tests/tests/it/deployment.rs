//! The deployment examples in docs/deploy, run for real: the systemd unit passes
//! `systemd-analyze verify` and its command line serves; nginx with the example site (its
//! addresses and certificate paths swapped for the test's) carries HTTPS, the widget's
//! WebSocket and the panel's server-sent events to a running server.

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use switchboard_admin_web::accounts::create_account;
use switchboard_models::Role;
use switchboard_tests::TestServer;
use switchboard_tests::mail::test_ca_file;
use switchboard_tests::panel::PanelClient;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const NGINX: &str = "/usr/sbin/nginx";
const WAIT: Duration = Duration::from_secs(15);

fn example(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/deploy").join(name)).unwrap()
}

/// `text` with `from` replaced; fails when the example no longer says `from`.
fn swapped(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "the example no longer has `{from}`: update this test with it");
    text.replace(from, to)
}

/// A child process stopped when the test ends, however it ends: SIGTERM, which an nginx
/// master passes on to its workers (SIGKILL would leave them running), then waited for.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.0.id().to_string()).status();
        let _ = self.0.wait();
    }
}

#[test]
fn the_systemd_unit_is_valid_and_its_command_line_serves_and_stops_on_its_signal() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("switchboard.toml");
    std::fs::write(&config, format!("[database]\nurl = \"sqlite://{}/switchboard.db\"\n\n[nlp]\nenabled = false\n", dir.path().display())).unwrap();
    let unit = example("switchboard.service");
    let unit = swapped(&unit, "/usr/local/bin/switchboard", env!("CARGO_BIN_EXE_switchboard-under-test"));
    let unit = swapped(&unit, "/etc/switchboard/switchboard.toml", config.to_str().unwrap());
    let unit = swapped(&unit, "/var/lib/switchboard", dir.path().to_str().unwrap());
    let unit_file = dir.path().join("switchboard.service");
    std::fs::write(&unit_file, &unit).unwrap();
    let verified = Command::new("systemd-analyze").arg("verify").arg(&unit_file).output().expect("systemd-analyze (./scripts/test.sh installs systemd)");
    let said = String::from_utf8_lossy(&verified.stderr);
    let about_ours: Vec<&str> = said.lines().filter(|l| l.contains("switchboard.service")).collect();
    assert!(verified.status.success() && about_ours.is_empty(), "systemd-analyze: {said}");

    // The unit's own command line, in its working directory, stopped with its KillSignal.
    let exec = unit.lines().find_map(|l| l.strip_prefix("ExecStart=")).expect("ExecStart");
    let mut words = exec.split_whitespace();
    let mut child = Command::new(words.next().unwrap())
        .args(words)
        .current_dir(dir.path())
        .env("SWITCHBOARD_SERVER__LISTEN", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let mut server = Running(child);
    let address = line.trim().rsplit(' ').next().unwrap().trim_start_matches("http://").to_string();
    let health = http_get(&address, "/healthz");
    assert!(health.starts_with("HTTP/1.1 200") && health.contains("\"ok\""), "{line} {health}");
    let signal = unit.lines().find_map(|l| l.strip_prefix("KillSignal=SIG")).expect("KillSignal");
    assert!(Command::new("kill").arg(format!("-{signal}")).arg(server.0.id().to_string()).status().unwrap().success());
    let stop_within: u64 = unit.lines().find_map(|l| l.strip_prefix("TimeoutStopSec=")).expect("TimeoutStopSec").parse().unwrap();
    // As systemd would: a process still there after TimeoutStopSec is killed (and the test fails).
    let (stopped, watching) = std::sync::mpsc::channel::<()>();
    let pid = server.0.id().to_string();
    let watchdog = std::thread::spawn(move || {
        let overdue = watching.recv_timeout(Duration::from_secs(stop_within)).is_err();
        if overdue {
            let _ = Command::new("kill").arg("-KILL").arg(&pid).status();
        }
        overdue
    });
    let exit = server.0.wait().unwrap();
    let _ = stopped.send(());
    assert!(!watchdog.join().unwrap(), "not stopped within TimeoutStopSec");
    assert_eq!(exit.code(), Some(0), "a clean stop, so Restart=on-failure leaves it stopped");
    assert!(dir.path().join("switchboard.db").exists(), "the database is in the working directory the unit gives");
}

fn http_get(host: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// nginx serving the example site in front of `upstream`: (process, https port, http port).
fn nginx_in_front_of(upstream: std::net::SocketAddr, dir: &Path) -> (Running, u16, u16) {
    assert!(Path::new(NGINX).exists(), "nginx is not installed; ./scripts/test.sh installs it");
    let tls: PathBuf = test_ca_file().parent().unwrap().to_path_buf();
    let (https, http) = (free_port(), free_port());
    let site = example("nginx.conf");
    let site = swapped(&site, "server 127.0.0.1:8080;", &format!("server {upstream};"));
    let site = swapped(&site, "listen 80;", &format!("listen 127.0.0.1:{http};"));
    let site = swapped(&site, "listen 443 ssl http2;", &format!("listen 127.0.0.1:{https} ssl http2;"));
    let site = swapped(&site, "/etc/ssl/certs/support.example.com.pem", tls.join("cert.pem").to_str().unwrap());
    let site = swapped(&site, "/etc/ssl/private/support.example.com.key", tls.join("key.pem").to_str().unwrap());
    std::fs::write(dir.join("site.conf"), site).unwrap();
    let d = dir.display();
    let main = format!(
        "user root;\ndaemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\nevents {{ worker_connections 256; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  \
         uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  include {d}/site.conf;\n}}\n"
    );
    std::fs::write(dir.join("nginx.conf"), main).unwrap();
    let tested = Command::new(NGINX).arg("-t").arg("-p").arg(dir).arg("-c").arg(dir.join("nginx.conf")).output().unwrap();
    assert!(tested.status.success(), "nginx -t: {}", String::from_utf8_lossy(&tested.stderr));
    let child = Command::new(NGINX).arg("-p").arg(dir).arg("-c").arg(dir.join("nginx.conf")).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while std::net::TcpStream::connect(("127.0.0.1", https)).is_err() {
        assert!(std::time::Instant::now() < deadline, "nginx never listened: {}", std::fs::read_to_string(dir.join("error.log")).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(50));
    }
    (Running(child), https, http)
}

/// A TLS connection to 127.0.0.1:`port` that trusts the test CA (HTTP/1.1, as a WebSocket needs).
async fn tls_to(port: u16) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use rustls_pki_types::pem::PemObject;
    use tokio_rustls::rustls;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(test_ca_file()).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.expect("a TLS session through nginx")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_with_the_example_site_carries_https_the_widget_socket_and_live_panel_events() {
    let server = TestServer::start_with(|c| {
        c.server.public_url = Some("https://127.0.0.1".into());
        c.server.trusted_proxies = vec!["127.0.0.1".into()];
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (_nginx, https, http) = nginx_in_front_of(server.addr, dir.path());
    let base = format!("https://127.0.0.1:{https}");
    let ca = std::fs::read(test_ca_file()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    let plain = client.get(format!("http://127.0.0.1:{http}/panel/")).send().await.unwrap();
    assert_eq!(plain.status(), reqwest::StatusCode::MOVED_PERMANENTLY, "plain HTTP is sent to HTTPS");
    assert!(plain.headers()["location"].to_str().unwrap().starts_with("https://"));
    let health = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), reqwest::StatusCode::OK);

    // The panel's live events pass through unbuffered: one arrives while the stream is open.
    create_account(server.engine().store().as_ref(), "root@example.com", "Root", Role::Admin, "a long enough password", None).await.unwrap();
    let admin = PanelClient::sign_in_trusting(&base, &ca, "root@example.com", "a long enough password").await;
    let mut events = admin.event_stream("/panel/events").await;

    // The widget's WebSocket through the proxy: a message in, the bot's answer out.
    let session: Value = client.post(format!("{base}/webchat/session")).send().await.unwrap().json().await.unwrap();
    let token = session["token"].as_str().unwrap();
    let request = format!("wss://127.0.0.1:{https}/webchat/ws?token={token}").into_client_request().unwrap();
    let (mut socket, _) = tokio_tungstenite::client_async(request, tls_to(https).await).await.expect("a WebSocket through nginx");
    socket.send(WsMessage::Text(json!({"type": "send", "client_id": "c1", "text": "I want to talk to a person"}).to_string().into())).await.unwrap();
    let answered = tokio::time::timeout(WAIT, async {
        while let Some(Ok(frame)) = socket.next().await {
            if let WsMessage::Text(text) = frame {
                let frame: Value = serde_json::from_str(&text).unwrap();
                if frame["type"] == "message" && frame["message"]["sender"] == "bot" {
                    return frame;
                }
            }
        }
        panic!("the socket closed before the bot answered");
    })
    .await
    .expect("the bot's answer through nginx");
    assert!(!answered["message"]["text"].as_str().unwrap().is_empty());
    let event = tokio::time::timeout(WAIT, events.next_event()).await.expect("a live event through nginx within 15 s").unwrap();
    assert!(!event.is_empty());

    // The session cookie is Secure behind https.
    let login = client.get(format!("{base}/panel/login")).send().await.unwrap();
    let cookie = login.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_string()).collect::<Vec<_>>().join(" | ");
    assert!(cookie.contains("Secure"), "{cookie}");
}
