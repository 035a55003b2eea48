//! Sign-in and abuse resistance: each finding of the attack pass, as a test that failed before.

use reqwest::StatusCode;
use serde_json::json;
use std::net::IpAddr;
use std::time::Duration;
use switchboard_admin_web::accounts::create_account;
use switchboard_models::{AuditAction, Role};
use switchboard_tests::panel::PanelClient;
use switchboard_tests::{TestServer, Widget};

const PASSWORD: &str = "tangerine harbour lantern 42";

async fn account(server: &TestServer, email: &str, name: &str, role: Role) {
    create_account(server.engine().store().as_ref(), email, name, role, PASSWORD, None).await.unwrap();
}

fn from(n: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, n])
}

#[tokio::test]
async fn strangers_cannot_lock_an_account_out_and_sign_ins_are_audited() {
    let server = TestServer::start().await;
    account(&server, "ann@example.com", "Ann", Role::Agent).await;
    // Five addresses guess until each is refused.
    for n in 2..=6 {
        let mut stranger = PanelClient::anonymous_from(&server.url(""), from(n));
        let mut refused = None;
        for _ in 0..8 {
            let reply = stranger.try_sign_in("ann@example.com", "not the password").await;
            if reply.status == StatusCode::TOO_MANY_REQUESTS {
                refused = Some(reply);
                break;
            }
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        }
        let refused = refused.expect("a guessing address is refused");
        assert!(refused.body.contains("try again in"), "{}", refused.body);
        assert!(refused.retry_after.is_some_and(|s| s.parse::<u64>().unwrap() >= 1), "Retry-After says when");
    }
    // Ann, from a sixth address, signs in.
    let mut ann = PanelClient::anonymous_from(&server.url(""), from(7));
    let reply = ann.try_sign_in("ann@example.com", PASSWORD).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "the right password from a clean address is never refused: {}", reply.body);

    let log = server.engine().store().audit_entries(500).await.unwrap();
    let ann_id = server.engine().store().agent_by_email("ann@example.com").await.unwrap().unwrap().id;
    let failed = log.iter().filter(|e| e.action == AuditAction::SignInFailed && e.subject_agent == Some(ann_id)).count();
    let refused = log.iter().filter(|e| e.action == AuditAction::SignInRefused && e.subject_agent == Some(ann_id)).count();
    assert!(failed >= 25, "every failure is audited ({failed})");
    assert_eq!(refused, 5, "every refusal is audited");
    assert!(log.iter().any(|e| e.after.as_deref().is_some_and(|a| a.contains("127.0.0.3"))), "with the address");
    let signed_in = log.iter().find(|e| e.action == AuditAction::SignIn).expect("the sign-in is audited");
    assert_eq!((signed_in.actor, signed_in.after.as_deref()), (Some(ann_id), Some("from 127.0.0.7")));
}

#[tokio::test]
async fn deactivation_ends_sessions_and_tokens_for_good() {
    let server = TestServer::start().await;
    account(&server, "ada@example.com", "Ada", Role::Admin).await;
    account(&server, "bob@example.com", "Bob", Role::Agent).await;
    let admin = PanelClient::sign_in(&server.url(""), "ada@example.com", PASSWORD).await;
    let bob = PanelClient::sign_in(&server.url(""), "bob@example.com", PASSWORD).await;
    let token = bob.new_api_token("ci").await;
    let api = |token: String| {
        let url = server.url("/api/me");
        async move { reqwest::Client::new().get(url).bearer_auth(token).send().await.unwrap().status() }
    };
    assert_eq!(api(token.clone()).await, StatusCode::OK);
    let bob_id = server.engine().store().agent_by_email("bob@example.com").await.unwrap().unwrap().id;
    let path = format!("/panel/admin/agents/{bob_id}");
    assert_eq!(admin.post(&path, &[("capacity", "5"), ("active", "false")]).await.status, StatusCode::SEE_OTHER);
    assert_eq!(admin.post(&path, &[("capacity", "5"), ("active", "true")]).await.status, StatusCode::SEE_OTHER);

    let old_browser = PanelClient::with_session_cookie(&server.url(""), bob.session_cookie().unwrap());
    let page = old_browser.get("/panel/").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "the old session is dead");
    assert_eq!(page.location.as_deref(), Some("/panel/login"));
    assert_eq!(api(token).await, StatusCode::UNAUTHORIZED, "and so is the old token");
    PanelClient::sign_in(&server.url(""), "bob@example.com", PASSWORD).await;
}

#[tokio::test]
async fn canned_responses_are_shared_by_admins_or_personal_and_every_change_is_audited() {
    let server = TestServer::start().await;
    account(&server, "ada@example.com", "Ada", Role::Admin).await;
    account(&server, "bob@example.com", "Bob", Role::Agent).await;
    account(&server, "cy@example.com", "Cy", Role::Agent).await;
    let base = server.url("");
    let (ada, bob, cy) = (
        PanelClient::sign_in(&base, "ada@example.com", PASSWORD).await,
        PanelClient::sign_in(&base, "bob@example.com", PASSWORD).await,
        PanelClient::sign_in(&base, "cy@example.com", PASSWORD).await,
    );
    ada.post("/panel/canned", &[("title", "Refunds"), ("body", "Refunds take 5 days."), ("shared", "true")]).await;
    let refused = bob.post("/panel/canned", &[("title", "Mine shared"), ("body", "x"), ("shared", "true")]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "only admins share");
    bob.post("/panel/canned", &[("title", "Bob's greeting"), ("body", "Hi, Bob here.")]).await;

    let all = server.engine().store().canned_responses().await.unwrap();
    let shared = all.iter().find(|c| c.title == "Refunds").unwrap();
    let personal = all.iter().find(|c| c.title == "Bob's greeting").unwrap();
    assert!(shared.shared && !personal.shared);
    assert!(!cy.get("/panel/canned").await.body.contains("Bob&#x27;s greeting"), "personal ones are their owner's");
    assert!(!cy.get("/panel/canned").await.body.contains("Bob's greeting"));
    let delete = |id: uuid::Uuid| format!("/panel/canned/{id}/delete");
    assert_eq!(bob.post(&delete(shared.id), &[]).await.status, StatusCode::FORBIDDEN, "agents cannot delete shared ones");
    assert_eq!(cy.post(&delete(personal.id), &[]).await.status, StatusCode::NOT_FOUND, "nor someone else's");
    assert_eq!(bob.post(&delete(personal.id), &[]).await.status, StatusCode::SEE_OTHER, "their own, yes");
    assert_eq!(ada.post(&delete(shared.id), &[]).await.status, StatusCode::SEE_OTHER);

    let log = server.engine().store().audit_entries(50).await.unwrap();
    let changes: Vec<(Option<&str>, Option<&str>)> = log
        .iter()
        .filter(|e| e.action == AuditAction::CannedResponse)
        .map(|e| (e.before.as_deref(), e.after.as_deref()))
        .collect();
    assert_eq!(
        changes,
        [
            (Some("shared \"Refunds\""), None),
            (Some("personal \"Bob's greeting\""), None),
            (None, Some("personal \"Bob's greeting\"")),
            (None, Some("shared \"Refunds\"")),
        ],
        "newest first"
    );
}

#[tokio::test]
async fn oversized_fields_and_bodies_are_refused_naming_the_limit() {
    let server = TestServer::start().await;
    account(&server, "ada@example.com", "Ada", Role::Admin).await;
    let ada = PanelClient::sign_in(&server.url(""), "ada@example.com", PASSWORD).await;
    let long = "x".repeat(5_000);
    let reply = ada.post("/panel/canned", &[("title", "Long"), ("body", &long)]).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(reply.body.contains("has 5000 characters; the limit is 4000"), "{}", reply.body);
    let reply = ada.post("/panel/account/tokens", &[("name", &long)]).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    let reply = ada.post("/panel/admin/agents", &[("name", &long), ("email", "x@example.com"), ("password", PASSWORD), ("role", "agent"), ("capacity", "3")]).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    // A bad value is named, not echoed back whole.
    let reply = ada.post("/panel/presence", &[("presence", &"z".repeat(100_000))]).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(reply.body.len() < 2_000, "the error does not echo the input ({} bytes)", reply.body.len());

    let id = {
        let inbound = switchboard_tests::webchat_inbound("v-big", None, 1, "I want to talk to a person");
        server.engine().handle(inbound).await.unwrap().conversation.id
    };
    let note = ada.post(&format!("/panel/conversations/{id}/note"), &[("text", &"n".repeat(4_001))]).await;
    assert_eq!(note.status, StatusCode::UNPROCESSABLE_ENTITY, "a note has the message limit");

    // 20 MB declared: refused before a byte of it is read, JSON or form, on any route.
    let token = ada.new_api_token("big").await;
    let (status, body) = raw_post(&server, &format!("/api/conversations/{id}/actions"), &format!("authorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: {}", 20 << 20), &[]).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("too_large"), "{body}");
    let (status, _) = raw_post(&server, "/panel/login", &format!("content-type: application/x-www-form-urlencoded\r\ncontent-length: {}", 20 << 20), &[]).await;
    assert_eq!(status, 413, "forms too");
    // Without a declared length (chunked), reading stops at the limit and answers 413 as well.
    let (_, visitor_token) = server.new_visitor().await;
    let chunk = vec![b' '; 64 * 1024];
    let mut chunked = Vec::new();
    for _ in 0..17 {
        chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(&chunk);
        chunked.extend_from_slice(b"\r\n");
    }
    let head = format!("authorization: Bearer {visitor_token}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked");
    let (status, body) = raw_post(&server, "/webchat/messages", &head, &chunked).await;
    assert_eq!(status, 413, "{body}");
}

/// A POST over a raw socket: the head, then `body` (possibly less than declared); the status
/// and whatever body the server answered with.
async fn raw_post(server: &TestServer, path: &str, headers: &str, body: &[u8]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let head = format!("POST {path} HTTP/1.1\r\nhost: {}\r\n{headers}\r\n\r\n", server.addr);
    stream.write_all(head.as_bytes()).await.unwrap();
    let _ = stream.write_all(body).await;
    let mut response = vec![0u8; 64 * 1024];
    let mut read = 0;
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut response[read..])).await {
        if n == 0 {
            break;
        }
        read += n;
        let text = String::from_utf8_lossy(&response[..read]);
        if text.contains("\r\n\r\n") && text.contains('}') {
            break;
        }
    }
    let text = String::from_utf8_lossy(&response[..read]).to_string();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text)
}

#[tokio::test]
async fn weak_passwords_and_odd_emails_are_refused_with_the_reason() {
    let server = TestServer::start().await;
    let store = server.engine().store();
    let create = |email: &'static str, password: &'static str| {
        let store = store.clone();
        async move { create_account(store.as_ref(), email, "Eve", Role::Agent, password, None).await.map(|_| ()).map_err(|e| e.to_string()) }
    };
    let blank = create("eve@example.com", "            ").await.unwrap_err();
    assert!(blank.contains("blank"), "{blank}");
    let common = create("eve@example.com", "password1234").await.unwrap_err();
    assert!(common.contains("too easy to guess"), "{common}");
    let own_name = create("eve@example.com", "eve@example.com!").await.unwrap_err();
    assert!(own_name.contains("too easy to guess"), "the account's own email does not make a password: {own_name}");
    let injected = create("eve@example.com\r\nBcc: all@example.com", PASSWORD).await.unwrap_err();
    assert!(injected.contains("line breaks"), "{injected}");
    assert!(create("eve@@example.com", PASSWORD).await.is_err());
    assert!(create("eve@example", PASSWORD).await.is_err());
    create("eve@example.com", PASSWORD).await.unwrap();
}

#[tokio::test]
async fn one_visitor_holds_at_most_five_sockets_and_the_oldest_is_told_why() {
    let server = TestServer::start().await;
    let (_, token) = server.new_visitor().await;
    let host = server.addr.to_string();
    let mut sockets = Vec::new();
    for _ in 0..5 {
        let mut widget = Widget::connect(&host, &token, None).await.unwrap();
        widget.next_of("ready").await;
        sockets.push(widget);
    }
    let mut sixth = Widget::connect(&host, &token, None).await.unwrap();
    sixth.next_of("ready").await;
    assert_eq!(sockets[0].close_code().await, Some(1008), "the oldest is closed with a reason");
    sixth.say("c1", "hello").await;
    assert_eq!(sixth.next_reply().await["sender"], "bot", "the newest works");
    for widget in &mut sockets[1..] {
        assert_eq!(widget.next_reply().await["sender"], "bot", "the other four still get the fan-out");
    }
}

async fn new_session(server: &TestServer, forwarded_for: &str) -> StatusCode {
    reqwest::Client::new()
        .post(server.url("/webchat/session"))
        .header("x-forwarded-for", forwarded_for)
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn new_chats_are_capped_per_address_and_only_trusted_proxies_name_the_address() {
    // Not a trusted proxy: the forwarded header is ignored, so every claimed address shares one budget.
    let capped = |config: &mut switchboard::config::Config| config.webchat.sessions_per_address_per_minute = 20;
    let server = TestServer::start_with(capped).await;
    let mut statuses = Vec::new();
    for n in 0..10 {
        statuses.push(new_session(&server, &format!("198.51.100.{n}")).await);
    }
    assert!(statuses.contains(&StatusCode::TOO_MANY_REQUESTS), "one address, many claimed origins: {statuses:?}");

    let behind_proxy = TestServer::start_with(|config| {
        capped(config);
        config.server.trusted_proxies = vec!["127.0.0.1".into()];
    })
    .await;
    let mut first = Vec::new();
    for _ in 0..10 {
        first.push(new_session(&behind_proxy, "198.51.100.1").await);
    }
    assert!(first.contains(&StatusCode::TOO_MANY_REQUESTS), "one client behind the proxy is capped: {first:?}");
    assert_eq!(new_session(&behind_proxy, "198.51.100.2").await, StatusCode::OK, "another client behind it is not");

    // Messages: many visitor ids from one address share the address's budget.
    let spammer = TestServer::start_with(|config| config.webchat.messages_per_address_per_minute = 8).await;
    let mut refused = 0;
    for n in 0..6 {
        let (_, token) = spammer.new_visitor().await;
        for m in 0..2 {
            let sent = reqwest::Client::new()
                .post(spammer.url("/webchat/messages"))
                .bearer_auth(&token)
                .json(&json!({"client_id": format!("c{n}-{m}"), "text": "buy cheap watches"}))
                .send()
                .await
                .unwrap();
            refused += usize::from(sent.status() == StatusCode::TOO_MANY_REQUESTS);
        }
    }
    assert!(refused >= 2, "fresh visitor ids do not escape the address limit ({refused} refused)");
}

#[tokio::test]
async fn the_panel_cannot_be_framed_or_sniffed_and_cookies_follow_the_public_url() {
    let server = TestServer::start().await;
    for path in ["/panel/login", "/api/me", "/static/admin.css"] {
        let response = reqwest::get(server.url(path)).await.unwrap();
        let header = |name: &str| response.headers().get(name).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert!(header("content-security-policy").contains("frame-ancestors 'none'"), "{path}");
        assert!(header("content-security-policy").contains("default-src 'self'"), "{path}");
        assert_eq!(header("x-frame-options"), "DENY", "{path}");
        assert_eq!(header("referrer-policy"), "same-origin", "{path}");
    }
    let widget = reqwest::get(server.url("/widget.js")).await.unwrap();
    assert!(widget.headers().get("content-security-policy").is_none(), "the widget's script runs inside customers' pages");
    assert_eq!(widget.headers()["x-content-type-options"], "nosniff");

    let login_cookie = |server: &TestServer| {
        let url = server.url("/panel/login");
        async move {
            let response = reqwest::get(url).await.unwrap();
            response.headers()["set-cookie"].to_str().unwrap().to_string()
        }
    };
    assert!(!login_cookie(&server).await.contains("Secure"), "plain http: a Secure cookie would never come back");
    let https = TestServer::start_with(|c| c.server.public_url = Some("https://support.example.com".into())).await;
    assert!(login_cookie(&https).await.contains("; Secure"), "behind https every cookie is Secure");
}

#[tokio::test]
async fn a_malformed_version_is_refused_and_api_tokens_are_rate_limited() {
    let server = TestServer::start_with(|c| c.server.api_requests_per_minute = 10).await;
    account(&server, "ada@example.com", "Ada", Role::Admin).await;
    let ada = PanelClient::sign_in(&server.url(""), "ada@example.com", PASSWORD).await;
    let inbound = switchboard_tests::webchat_inbound("v-version", None, 1, "I want to talk to a person");
    let id = server.engine().handle(inbound).await.unwrap().conversation.id;
    let reply = ada.post(&format!("/panel/conversations/{id}/status"), &[("status", "resolved"), ("version", "yesterday")]).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "not a silent skip of the stale-view check");
    assert!(reply.body.contains("reload the conversation"), "{}", reply.body);
    let conversation = server.engine().store().conversation(id).await.unwrap().unwrap();
    assert_ne!(conversation.status, switchboard_models::Status::Resolved, "nothing changed");

    let token = ada.new_api_token("busy").await;
    let http = reqwest::Client::new();
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(http.get(server.url("/api/me")).bearer_auth(&token).send().await.unwrap().status());
    }
    assert_eq!(statuses[..2], [StatusCode::OK, StatusCode::OK], "{statuses:?}");
    assert_eq!(statuses[3], StatusCode::TOO_MANY_REQUESTS, "{statuses:?}");
}

/// The code an authenticator app shows for `key` (base32, as the page shows it, spaces and all)
/// `ahead` steps of 30 s from now: RFC 6238 computed here, independently of the server.
fn authenticator_code(key: &str, ahead: i64) -> String {
    use hmac::{Hmac, Mac};
    let compact: String = key.chars().filter(|c| !c.is_whitespace()).collect();
    let secret = data_encoding::BASE32_NOPAD.decode(compact.as_bytes()).expect("the key is base32");
    let step = chrono::Utc::now().timestamp() / 30 + ahead;
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(&secret).unwrap();
    mac.update(&step.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = usize::from(digest[19] & 0x0f);
    let value = u32::from_be_bytes([digest[offset] & 0x7f, digest[offset + 1], digest[offset + 2], digest[offset + 3]]);
    format!("{:06}", value % 1_000_000)
}

/// Some six digits that are not `code`.
fn other_than(code: &str) -> String {
    if code == "000000" { "111111".into() } else { "000000".into() }
}

#[tokio::test]
async fn two_factor_sign_in_asks_for_a_code_after_the_password_and_each_code_works_once() {
    // Codes count against the sign-in limits; this test makes more attempts than their default.
    let server = TestServer::start_with(|c| c.server.sign_in_burst = 30).await;
    account(&server, "ann@example.com", "Ann", Role::Agent).await;
    account(&server, "ada@example.com", "Ada", Role::Admin).await;
    let ann = PanelClient::sign_in(&server.url(""), "ann@example.com", PASSWORD).await;

    // Set up: a key to type into the app, confirmed by a code from it and the password.
    let setup = ann.post("/panel/account/two-factor/setup", &[]).await;
    assert_eq!(setup.status, StatusCode::OK, "{}", setup.body);
    let key = setup.body.split("data-test=\"two-factor-key\">").nth(1).and_then(|rest| rest.split('<').next()).expect("the key is shown").to_string();
    let secret = setup.body.split("name=\"secret\" value=\"").nth(1).and_then(|rest| rest.split('"').next()).expect("the key rides along").to_string();
    assert!(setup.body.contains("otpauth://totp/Switchboard:ann%40example.com?secret"), "a link for the app: {}", setup.body);
    let now = authenticator_code(&key, 0);
    let wrong = ann.post("/panel/account/two-factor/on", &[("secret", &secret), ("code", &other_than(&now)), ("current", PASSWORD)]).await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", wrong.body);
    assert!(wrong.body.contains("does not match the key"), "{}", wrong.body);
    let no_password = ann.post("/panel/account/two-factor/on", &[("secret", &secret), ("code", &now), ("current", "not my password")]).await;
    assert_eq!(no_password.status, StatusCode::UNPROCESSABLE_ENTITY);
    let on = ann.post("/panel/account/two-factor/on", &[("secret", &secret), ("code", &now), ("current", PASSWORD)]).await;
    assert_eq!(on.status, StatusCode::SEE_OTHER, "{}", on.body);
    assert!(ann.get("/panel/account?done=two-factor-on").await.body.contains("Two-factor sign-in is on"));

    // The password alone no longer signs in: a code page, and no session yet.
    let mut laptop = PanelClient::anonymous(&server.url(""));
    let asked = laptop.try_sign_in("ann@example.com", PASSWORD).await;
    assert_eq!(asked.status, StatusCode::OK, "{}", asked.body);
    assert!(asked.body.contains("data-test=\"code-form\""), "{}", asked.body);
    assert_eq!(laptop.get("/panel/").await.status, StatusCode::SEE_OTHER, "not signed in before the code");
    // The code that confirmed the setup was used; the app's next one works, once.
    let used = laptop.try_code(&asked, &now).await;
    assert_eq!(used.status, StatusCode::UNAUTHORIZED, "a code works once: {}", used.body);
    assert!(used.body.contains("used already"), "{}", used.body);
    let next = authenticator_code(&key, 1);
    let signed_in = laptop.try_code(&asked, &next).await;
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER, "{}", signed_in.body);
    assert_eq!(laptop.get("/panel/").await.status, StatusCode::OK);

    let mut thief = PanelClient::anonymous(&server.url(""));
    let asked = thief.try_sign_in("ann@example.com", PASSWORD).await;
    assert_eq!(thief.try_code(&asked, &next).await.status, StatusCode::UNAUTHORIZED, "a replayed code is refused");
    // Five wrong codes (the replayed one was the first) end the challenge: the password is asked again.
    let mut last = None;
    for _ in 0..4 {
        last = Some(thief.try_code(&asked, "123 456").await);
    }
    let last = last.unwrap();
    assert!(last.body.contains("Too many wrong codes") && last.body.contains("name=\"password\""), "{}", last.body);
    assert_eq!(thief.try_code(&asked, &authenticator_code(&key, 0)).await.status, StatusCode::UNAUTHORIZED, "the challenge is over");

    let log = server.engine().store().audit_entries(500).await.unwrap();
    assert!(log.iter().any(|e| e.action == AuditAction::TwoFactor && e.after.as_deref() == Some("on")), "{log:?}");
    assert!(log.iter().any(|e| e.action == AuditAction::SignInFailed && e.after.as_deref().is_some_and(|a| a.contains("two-factor code"))), "{log:?}");

    // An admin turns it off for an agent who lost the device.
    let ada = PanelClient::sign_in(&server.url(""), "ada@example.com", PASSWORD).await;
    let agents = ada.get("/panel/admin/agents").await;
    let ann_id = server.engine().store().agent_by_email("ann@example.com").await.unwrap().unwrap().id;
    assert!(agents.body.contains(&format!("/panel/admin/agents/{ann_id}/two-factor-off")), "the admin sees it is on");
    let off = ada.post(&format!("/panel/admin/agents/{ann_id}/two-factor-off"), &[]).await;
    assert_eq!(off.status, StatusCode::SEE_OTHER, "{}", off.body);
    PanelClient::sign_in(&server.url(""), "ann@example.com", PASSWORD).await;
}
