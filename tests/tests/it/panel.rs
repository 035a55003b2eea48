//! The agents' panel and JSON API over HTTP: who may open what, CSRF, sign-in limits, the
//! conversation actions with their guards, escaping, and API tokens.

use reqwest::StatusCode;
use serde_json::{Value, json};
use switchboard_admin_web::accounts::create_account;
use switchboard_models::{Channel, ConversationId, Handler, Inbound, Role, Status, Thread};
use switchboard_tests::TestServer;
use switchboard_tests::panel::PanelClient;

const PASSWORD: &str = "a long enough password";

struct Team {
    admin: PanelClient,
    ann: PanelClient,
    bo: PanelClient,
    ann_id: switchboard_models::AgentId,
}

async fn team(server: &TestServer) -> Team {
    let store = server.engine().store();
    create_account(store.as_ref(), "root@example.com", "Root", Role::Admin, PASSWORD, None).await.unwrap();
    let ann = create_account(store.as_ref(), "ann@example.com", "Ann", Role::Agent, PASSWORD, None).await.unwrap();
    create_account(store.as_ref(), "bo@example.com", "Bo", Role::Agent, PASSWORD, None).await.unwrap();
    let base = server.url("");
    Team {
        admin: PanelClient::sign_in(&base, "root@example.com", PASSWORD).await,
        ann: PanelClient::sign_in(&base, "ann@example.com", PASSWORD).await,
        bo: PanelClient::sign_in(&base, "bo@example.com", PASSWORD).await,
        ann_id: ann.id,
    }
}

/// A web-chat customer called `name` asks for a person; the conversation waits in the queue.
async fn escalated(server: &TestServer, visitor: &str, name: &str, text: &str) -> ConversationId {
    let inbound = Inbound {
        channel: Channel::WebChat,
        external_id: format!("{visitor}:1"),
        sender_external_id: visitor.into(),
        sender_name: Some(name.into()),
        text: text.into(),
        attachments: Vec::new(),
        original: None,
        thread: Thread::Current,
        received_at: chrono::Utc::now(),
        reported_language: None,
    };
    server.engine().handle(inbound).await.unwrap().conversation.id
}

#[tokio::test]
async fn every_route_checks_who_is_asking() {
    let server = TestServer::start().await;
    let team = team(&server).await;
    let id = escalated(&server, "v1", "Cal", "I want to talk to a person").await;
    let anonymous = PanelClient::anonymous(&server.url(""));
    let pages = [
        "/panel/".to_string(),
        "/panel/conversations".into(),
        "/panel/customers".into(),
        format!("/panel/conversations/{id}"),
        "/panel/canned".into(),
        "/panel/account/tokens".into(),
        "/panel/notifications".into(),
    ];
    let admin_pages = ["/panel/admin/agents", "/panel/admin/audit", "/panel/admin/hours", "/panel/admin/system", "/panel/admin/settings", "/panel/admin/webhooks", "/panel/admin/widget"];
    for path in pages.iter().map(String::as_str).chain(admin_pages) {
        let reply = anonymous.get(path).await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "anonymous {path}");
        assert_eq!(reply.location.as_deref(), Some("/panel/login"), "anonymous {path}");
        assert_eq!(team.admin.get(path).await.status, StatusCode::OK, "admin {path}");
        let expected = if admin_pages.contains(&path) { StatusCode::FORBIDDEN } else { StatusCode::OK };
        assert_eq!(team.ann.get(path).await.status, expected, "agent {path}");
    }
    let posts = [
        format!("/panel/conversations/{id}/note"),
        "/panel/presence".into(),
        "/panel/canned".into(),
        "/panel/account/tokens".into(),
        "/panel/admin/agents".into(),
        format!("/panel/admin/agents/{}", uuid::Uuid::nil()),
        format!("/panel/canned/{}/delete", uuid::Uuid::nil()),
        format!("/panel/account/tokens/{}/delete", uuid::Uuid::nil()),
        format!("/panel/conversations/{id}/take"),
        "/panel/notifications/read".into(),
        "/panel/admin/settings".into(),
        "/panel/admin/webhooks".into(),
        format!("/panel/admin/webhooks/{}", uuid::Uuid::nil()),
        "/panel/admin/system/dead-letters/1".into(),
        "/panel/admin/widget".into(),
        "/panel/account/two-factor/setup".into(),
        "/panel/account/two-factor/on".into(),
        "/panel/account/two-factor/off".into(),
        format!("/panel/admin/agents/{}/two-factor-off", uuid::Uuid::nil()),
        "/panel/logout".into(),
    ];
    for path in &posts {
        let reply = anonymous.post_raw(path, &[("csrf", "x"), ("text", "hi")]).await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "anonymous POST {path}");
        assert_eq!(reply.location.as_deref(), Some("/panel/login"));
    }
    let forbidden = team.ann.post("/panel/admin/agents", &[("name", "X"), ("email", "x@example.com"), ("password", PASSWORD), ("role", "admin"), ("capacity", "3")]).await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN, "agents cannot create accounts");
    assert!(server.engine().store().agent_by_email("x@example.com").await.unwrap().is_none());
    let ann_id = server.engine().store().agent_by_email("ann@example.com").await.unwrap().unwrap().id;
    let demote = team.ann.post(&format!("/panel/admin/agents/{ann_id}"), &[("capacity", "99"), ("active", "true")]).await;
    assert_eq!(demote.status, StatusCode::FORBIDDEN, "agents cannot change accounts, not even their own");
    let bo_id = server.engine().store().agent_by_email("bo@example.com").await.unwrap().unwrap().id;
    let off = team.ann.post(&format!("/panel/admin/agents/{bo_id}/two-factor-off"), &[]).await;
    assert_eq!(off.status, StatusCode::FORBIDDEN, "agents cannot turn off another's two-factor sign-in");
    let widget = team.ann.post("/panel/admin/widget", &[("value:webchat.title", "Mine")]).await;
    assert_eq!(widget.status, StatusCode::FORBIDDEN, "agents cannot change the widget");
    for path in ["/api/me", "/api/conversations", "/api/customers", &format!("/api/conversations/{id}")] {
        let reply = reqwest::get(server.url(path)).await.unwrap();
        assert_eq!(reply.status(), StatusCode::UNAUTHORIZED, "API {path} without a token");
    }
    let http = reqwest::Client::new();
    for path in [format!("/api/conversations/{id}/actions"), format!("/api/conversations/{id}/draft"), "/api/admin/intents/reload".into()] {
        let reply = http.post(server.url(&path)).json(&serde_json::json!({"action": "take"})).send().await.unwrap();
        assert_eq!(reply.status(), StatusCode::UNAUTHORIZED, "API POST {path} without a token");
    }
    let ann_token = team.ann.new_api_token("matrix").await;
    let reload = http.post(server.url("/api/admin/intents/reload")).bearer_auth(&ann_token).send().await.unwrap();
    assert_eq!(reload.status(), StatusCode::FORBIDDEN, "only admins reload the intents");
    for path in ["/api/intents", "/api/intents/versions/1"] {
        let reply = http.get(server.url(path)).bearer_auth(&ann_token).send().await.unwrap();
        assert_eq!(reply.status(), StatusCode::FORBIDDEN, "only admins read the intents: {path}");
    }
    assert_eq!(team.ann.get("/panel/bot").await.status, StatusCode::FORBIDDEN, "only admins open the Bot page");
    let settings = http.get(server.url("/api/settings")).bearer_auth(&ann_token).send().await.unwrap();
    assert_eq!(settings.status(), StatusCode::FORBIDDEN, "only admins read the settings");
    let change = http.post(server.url("/api/settings")).bearer_auth(&ann_token).json(&json!({"settings": {"bot.handoff_offline": "x"}})).send().await.unwrap();
    assert_eq!(change.status(), StatusCode::FORBIDDEN, "only admins change the settings");
    let posted = team.ann.post("/panel/admin/settings", &[("value:bot.handoff_offline", "x")]).await;
    assert_eq!(posted.status, StatusCode::FORBIDDEN);
    assert!(server.engine().store().stored_settings().await.unwrap().is_empty());
    for (method, path) in [(reqwest::Method::GET, "/api/webhooks"), (reqwest::Method::POST, "/api/webhooks"), (reqwest::Method::GET, "/api/webhooks/x/deliveries"), (reqwest::Method::GET, "/api/dead-letters"), (reqwest::Method::POST, "/api/dead-letters/1/replay"), (reqwest::Method::POST, "/api/dead-letters/1/dismiss")] {
        let reply = http.request(method.clone(), server.url(path)).bearer_auth(&ann_token).json(&json!({"url": "https://x.example.com", "events": ["ping"]})).send().await.unwrap();
        assert_eq!(reply.status(), StatusCode::FORBIDDEN, "only admins manage webhooks and messages set aside: {method} {path}");
        let anonymous = http.request(method.clone(), server.url(path)).send().await.unwrap();
        assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED, "{method} {path} without a token");
    }
    assert!(server.engine().store().webhooks().await.unwrap().is_empty());
    for path in ["/healthz", "/readyz"] {
        assert_eq!(reqwest::get(server.url(path)).await.unwrap().status(), StatusCode::OK, "{path} is public: probes carry no secrets");
    }
    assert_eq!(anonymous.get("/panel/events").await.status, StatusCode::SEE_OTHER, "live updates need a session");
}

#[tokio::test]
async fn forms_need_the_session_csrf_token_and_sign_in_is_limited() {
    let server = TestServer::start().await;
    let team = team(&server).await;
    let id = escalated(&server, "v2", "Dee", "I want to talk to a person").await;
    let forged = team.ann.post_raw(&format!("/panel/conversations/{id}/take"), &[("csrf", "forged")]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(forged.body.contains("Reload the page"), "{}", forged.body);
    let stale = team.ann.post_raw(&format!("/panel/conversations/{id}/take"), &[("csrf", &team.bo.csrf)]).await;
    assert_eq!(stale.status, StatusCode::FORBIDDEN, "another session's token is refused");
    let conversation = server.engine().store().conversation(id).await.unwrap().unwrap();
    assert_eq!(conversation.handler, Handler::Queue, "nothing happened");

    let mut stranger = PanelClient::anonymous(&server.url(""));
    let wrong = stranger.try_sign_in("ann@example.com", "not the password").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.body.contains("Wrong email or password"));
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(stranger.try_sign_in("ann@example.com", "guess").await.status);
    }
    assert_eq!(statuses.last(), Some(&StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");
    let late = stranger.try_sign_in("ann@example.com", PASSWORD).await;
    assert_eq!(late.status, StatusCode::TOO_MANY_REQUESTS, "even the right password waits out the limit");
}

#[tokio::test]
async fn agents_work_conversations_with_guards_against_each_other() {
    let server = TestServer::start().await;
    let team = team(&server).await;
    let id = escalated(&server, "v3", "<script>alert('name')</script>", "<script>alert(1)</script> I need a human").await;
    let path = format!("/panel/conversations/{id}");

    let page = team.ann.get(&path).await;
    assert!(page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "customer text is escaped");
    assert!(!page.body.contains("<script>alert"), "no customer markup reaches the page");
    assert!(page.body.contains("The customer asked for a person."), "the escalation reason is shown");

    assert_eq!(team.ann.post(&format!("{path}/take"), &[]).await.status, StatusCode::SEE_OTHER);
    assert_eq!(team.ann.post(&format!("{path}/reply"), &[("text", "Hi, I'm Ann.")]).await.status, StatusCode::SEE_OTHER);
    assert_eq!(team.ann.post(&format!("{path}/note"), &[("text", "VIP customer")]).await.status, StatusCode::SEE_OTHER);
    let store = server.engine().store();
    let conversation = store.conversation(id).await.unwrap().unwrap();
    assert_eq!(conversation.handler, Handler::Agent(team.ann_id));
    let customer_view = store.contact_messages(conversation.contact_id, 0, 50).await.unwrap();
    assert!(customer_view.iter().any(|m| m.text == "Hi, I'm Ann."), "the reply goes to the customer");
    assert!(customer_view.iter().all(|m| m.text != "VIP customer"), "the note does not");

    let taken = team.bo.post(&format!("{path}/reply"), &[("text", "Bo here")]).await;
    assert_eq!(taken.status, StatusCode::FORBIDDEN);
    assert!(taken.body.contains("assigned to Ann"), "{}", taken.body);

    // Two agents with the same page open: the second change is refused, not silently lost.
    let version = conversation.updated_at.timestamp_millis().to_string();
    let first = team.ann.post(&format!("{path}/priority"), &[("priority", "urgent"), ("version", &version)]).await;
    assert_eq!(first.status, StatusCode::SEE_OTHER);
    let second = team.admin.post(&format!("{path}/priority"), &[("priority", "low"), ("version", &version)]).await;
    assert_eq!(second.status, StatusCode::CONFLICT);
    assert!(second.body.contains("reload"), "{}", second.body);
    assert_eq!(store.conversation(id).await.unwrap().unwrap().priority, Some(switchboard_models::Priority::Urgent));

    let bad = team.ann.post(&format!("{path}/status"), &[("status", "pending")]).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.body.contains("expected one of"), "{}", bad.body);
    assert_eq!(team.ann.post(&format!("{path}/status"), &[("status", "closed")]).await.status, StatusCode::SEE_OTHER);
    let closed = team.ann.post(&format!("{path}/reply"), &[("text", "one more thing")]).await;
    assert_eq!(closed.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(closed.body.contains("closed"), "{}", closed.body);

    let unknown = team.ann.get(&format!("/panel/conversations/{}", ConversationId::new())).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(team.ann.get("/panel/conversations/not-an-id").await.status, StatusCode::NOT_FOUND);
    assert_eq!(team.ann.get("/panel/conversations?status=bogus").await.status, StatusCode::BAD_REQUEST);

    let audit = team.admin.get("/panel/admin/audit").await.body;
    for action in ["take", "reply", "note", "priority", "status"] {
        let shown = if action == "take" { "assign" } else { action };
        assert!(audit.contains(shown), "audit shows {shown}");
    }
    let status = store.conversation(id).await.unwrap().unwrap().status;
    assert_eq!(status, Status::Closed);
}

#[tokio::test]
async fn lists_filter_and_the_dashboard_counts() {
    let server = TestServer::start().await;
    let team = team(&server).await;
    escalated(&server, "v4", "Eli", "I want to talk to a person").await;
    escalated(&server, "v5", "Fay", "my account was hacked").await;
    let dashboard = team.ann.get("/panel/").await.body;
    assert!(dashboard.contains("data-test=\"count-new\""));
    let count = |html: &str, key: &str| -> String {
        let at = html.find(&format!("data-test=\"count-{key}\"")).unwrap();
        let rest = &html[at..];
        let start = rest.find('>').unwrap() + 1;
        rest[start..].split('<').next().unwrap().trim().to_string()
    };
    assert_eq!(count(&dashboard, "new"), "2");
    assert!(count(&dashboard, "oldest_wait").ends_with(" s"), "the queue's longest wait is shown: {}", count(&dashboard, "oldest_wait"));
    assert_eq!(count(&dashboard, "urgent"), "1");
    let urgent = team.ann.get("/panel/conversations?priority=urgent").await.body;
    assert!(urgent.contains("Fay") && !urgent.contains("Eli"), "filtered by priority");
    assert!(urgent.contains("prio-urgent"));
    let searched = team.ann.get("/panel/conversations?q=hacked").await.body;
    assert!(searched.contains("Fay") && !searched.contains("Eli"), "text search");
    assert!(searched.contains("my account was <mark>hacked</mark>"), "the matching words are highlighted");
    assert!(searched.contains("data-test=\"list-total\">1 conversation found"), "the total is shown: {searched}");
    let queue = team.ann.get("/panel/conversations?assignee=queue").await.body;
    assert!(queue.contains("<option value=\"queue\" selected>"), "the assignee filter offers the queue");
    assert!(queue.contains("Fay") && queue.contains("Eli"), "both wait in the queue");
}

#[tokio::test]
async fn lists_page_by_cursor_with_the_queue_longest_waiting_first_and_refuse_unknown_parameters() {
    let server = TestServer::start().await;
    let team = team(&server).await;
    let mut waiting = Vec::new();
    for (i, name) in ["Ida", "Jo", "Kim", "Lou", "Max"].iter().enumerate() {
        waiting.push(escalated(&server, &format!("pv{i}"), name, "I want to talk to a person").await.to_string());
    }
    let token = team.ann.new_api_token("pager").await;
    let http = reqwest::Client::new();
    let get = |path: String| http.get(server.url(&path)).bearer_auth(&token).send();

    // Through the API, two at a time: the queue's head (waiting longest) first, each once.
    let mut seen = Vec::new();
    let mut path = "/api/conversations?assignee=queue&limit=2".to_string();
    loop {
        let page: Value = get(path.clone()).await.unwrap().json().await.unwrap();
        seen.extend(page["conversations"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_string()));
        match page["next"].as_str() {
            Some(next) => path = format!("/api/conversations?assignee=queue&limit=2&after={next}"),
            None => break,
        }
    }
    assert_eq!(seen, waiting, "longest waiting first, every one reached");
    let recent: Value = get("/api/conversations?limit=5".into()).await.unwrap().json().await.unwrap();
    assert_eq!(recent["conversations"][0]["id"], waiting[4], "without the queue filter, most recent first");

    // The panel pages the same way, with a link to the next page.
    let first = team.ann.get("/panel/conversations?assignee=queue&limit=2").await.body;
    assert!(first.contains("Next in line first: most urgent, then longest waiting") && first.contains("Ida") && !first.contains("Kim"), "{first}");
    let at = first.find("data-test=\"next-page\"").expect("a next page link");
    let href = first[..at].rsplit("href=\"").next().unwrap().split('"').next().unwrap().replace("&amp;", "&").replace("&#x3D;", "=");
    let second = team.ann.get(&href).await.body;
    assert!(second.contains("Kim") && second.contains("Lou") && !second.contains("Ida"), "{href}");
    assert!(second.contains("data-test=\"first-page\""));

    for (query, says) in [
        ("page=2", "unknown field `page`"),
        ("limit=0", "limit `0` must be 1 to 200"),
        ("after=yesterday", "after `yesterday` is not a cursor"),
        ("sort=random", "sort `random` must be recent, next_in_line, longest_waiting or due"),
    ] {
        let refused = get(format!("/api/conversations?{query}")).await.unwrap();
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST, "{query}");
        let body = refused.text().await.unwrap();
        assert!(body.contains(says), "{query}: {body}");
        assert_eq!(team.ann.get(&format!("/panel/conversations?{query}")).await.status, StatusCode::BAD_REQUEST, "{query}");
    }
}

#[tokio::test]
async fn customers_are_listed_newest_first_found_by_name_or_id_and_paged_in_the_panel_and_the_api() {
    let server = TestServer::start().await;
    let team = team(&server).await;
    let mut latest = Vec::new();
    for (i, name) in ["Ida Novak", "Jo Okafor", "Kim Novak"].iter().enumerate() {
        latest.push(escalated(&server, &format!("cv{i}"), name, "I want to talk to a person").await.to_string());
    }
    let token = team.ann.new_api_token("customers").await;
    let http = reqwest::Client::new();
    let get = |path: String| http.get(server.url(&path)).bearer_auth(&token).send();

    // Through the API, two at a time, newest first, each once, with the latest conversation.
    let mut seen = Vec::new();
    let mut path = "/api/customers?limit=2".to_string();
    loop {
        let page: Value = get(path.clone()).await.unwrap().json().await.unwrap();
        assert_eq!(page["total"]["count"], 3);
        for customer in page["customers"].as_array().unwrap() {
            assert_eq!(customer["conversations"], 1);
            seen.push((customer["name"].as_str().unwrap().to_string(), customer["latest_conversation"]["id"].as_str().unwrap().to_string()));
        }
        match page["next"].as_str() {
            Some(next) => path = format!("/api/customers?limit=2&after={next}"),
            None => break,
        }
    }
    let names: Vec<_> = seen.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["Kim Novak", "Jo Okafor", "Ida Novak"]);
    assert_eq!(seen.iter().map(|(_, id)| id.clone()).collect::<Vec<_>>(), latest.iter().rev().cloned().collect::<Vec<_>>());
    let found: Value = get("/api/customers?q=NOVAK&channel=webchat".into()).await.unwrap().json().await.unwrap();
    assert_eq!(found["total"]["count"], 2);
    assert_eq!(found["customers"][0]["external_id"], "cv2");
    let by_id: Value = get("/api/customers?q=cv1".into()).await.unwrap().json().await.unwrap();
    assert_eq!(by_id["customers"].as_array().unwrap().len(), 1);
    assert_eq!(by_id["customers"][0]["name"], "Jo Okafor");

    // The panel pages the same way; each row leads to the customer's latest conversation.
    let first = team.ann.get("/panel/customers?limit=2").await.body;
    assert!(first.contains("3 customers") && first.contains("Kim Novak") && first.contains("Jo Okafor") && !first.contains("Ida"), "{first}");
    assert!(first.contains(&format!("href=\"/panel/conversations/{}\"", latest[2])), "{first}");
    let at = first.find("data-test=\"next-page\"").expect("a next page link");
    let href = first[..at].rsplit("href=\"").next().unwrap().split('"').next().unwrap().replace("&amp;", "&").replace("&#x3D;", "=");
    let second = team.ann.get(&href).await.body;
    assert!(second.contains("Ida Novak") && !second.contains("Kim") && second.contains("data-test=\"first-page\""), "{href}");
    let searched = team.ann.get("/panel/customers?q=okafor").await.body;
    assert!(searched.contains("1 customer found") && searched.contains("Jo Okafor") && !searched.contains("Novak"), "{searched}");

    for (query, says) in [
        ("page=2", "unknown field `page`"),
        ("limit=500", "limit `500` must be 1 to 200"),
        ("after=yesterday", "after `yesterday` is not a cursor"),
        ("channel=fax", "fax"),
    ] {
        let refused = get(format!("/api/customers?{query}")).await.unwrap();
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST, "{query}");
        let body = refused.text().await.unwrap();
        assert!(body.contains(says), "{query}: {body}");
        assert_eq!(team.ann.get(&format!("/panel/customers?{query}")).await.status, StatusCode::BAD_REQUEST, "{query}");
    }
}

#[tokio::test]
async fn taking_past_capacity_is_an_override_warned_about_and_audited_or_refused_when_forbidden() {
    for allowed in [true, false] {
        let server = TestServer::start_with(|c| c.bot.allow_over_capacity = allowed).await;
        let team = team(&server).await;
        let store = server.engine().store();
        let mut ann = store.agent(team.ann_id).await.unwrap().unwrap();
        ann.capacity = 1;
        store.save_agent(&ann).await.unwrap();
        let first = escalated(&server, "cap1", "Nia", "I want to talk to a person").await;
        let second = escalated(&server, "cap2", "Oli", "I want to talk to a person").await;
        let token = team.ann.new_api_token("capacity").await;
        let http = reqwest::Client::new();
        let take = |id: ConversationId| {
            http.post(server.url(&format!("/api/conversations/{id}/actions"))).bearer_auth(&token).json(&json!({"action": "take"})).send()
        };
        let within: Value = take(first).await.unwrap().json().await.unwrap();
        assert_eq!(within["warning"], Value::Null, "one of one is within capacity");
        let over = take(second).await.unwrap();
        if allowed {
            assert_eq!(over.status(), StatusCode::OK);
            let over: Value = over.json().await.unwrap();
            assert_eq!(over["warning"], "You have 2 conversations; your capacity is 1.");
            let page = team.ann.get(&format!("/panel/conversations/{second}")).await.body;
            assert!(page.contains("data-test=\"over-capacity\""), "the conversation page warns");
            let audit = store.audit_entries(10).await.unwrap();
            assert!(audit.iter().any(|e| e.after.as_deref().is_some_and(|a| a.ends_with("(over capacity: 2 of 1)"))), "{audit:?}");
        } else {
            assert_eq!(over.status(), StatusCode::FORBIDDEN);
            let body = over.text().await.unwrap();
            assert!(body.contains("Ann has 1 of 1 conversations; finish or release one first"), "{body}");
            assert_eq!(store.conversation(second).await.unwrap().unwrap().handler, Handler::Queue, "still waiting");
        }
    }
}

#[tokio::test]
async fn the_json_api_works_with_a_personal_token() {
    let server = TestServer::start().await;
    let team = team(&server).await;
    let id = escalated(&server, "v6", "Gil", "I want to talk to a person").await;
    let token = team.ann.new_api_token("CRM").await;

    let http = reqwest::Client::new();
    let auth = format!("Bearer {token}");
    let me: Value = http.get(server.url("/api/me")).header("authorization", &auth).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["email"], "ann@example.com");
    let list: Value = http.get(server.url("/api/conversations?assignee=queue")).header("authorization", &auth).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["conversations"][0]["id"], id.to_string());
    let act = |body: Value| http.post(server.url(&format!("/api/conversations/{id}/actions"))).header("authorization", &auth).json(&body).send();
    assert_eq!(act(json!({"action": "take"})).await.unwrap().status(), StatusCode::OK);
    assert_eq!(act(json!({"action": "reply", "text": "From the CRM"})).await.unwrap().status(), StatusCode::OK);
    let garbage = act(json!({"action": "status", "value": "sideways"})).await.unwrap();
    assert_eq!(garbage.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let unknown_field = act(json!({"action": "take", "force": true})).await.unwrap();
    assert_eq!(unknown_field.status(), StatusCode::BAD_REQUEST);
    let detail: Value = http.get(server.url(&format!("/api/conversations/{id}"))).header("authorization", &auth).send().await.unwrap().json().await.unwrap();
    assert!(detail["messages"].as_array().unwrap().iter().any(|m| m["text"] == "From the CRM"));
    let forged = http.get(server.url("/api/me")).header("authorization", "Bearer 00ff").send().await.unwrap();
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
    let _ = team.admin;
}

#[tokio::test]
async fn a_long_conversation_is_read_a_page_at_a_time_backwards() {
    let server = TestServer::start().await;
    let team = team(&server).await;
    let id = escalated(&server, "long", "Lee", "I want to talk to a person").await;
    for n in 1..=230 {
        let inbound = Inbound {
            channel: Channel::WebChat,
            external_id: format!("long:line{n}"),
            sender_external_id: "long".into(),
            sender_name: Some("Lee".into()),
            text: format!("line {n} of my story"),
            attachments: Vec::new(),
            original: None,
            thread: Thread::Current,
            received_at: chrono::Utc::now(),
            reported_language: None,
        };
        server.engine().handle(inbound).await.unwrap();
    }
    let all = server.engine().store().conversation_messages(id, 0, 1000).await.unwrap();
    assert!(all.len() > 230, "every line was stored: {}", all.len());

    // The panel shows the newest messages and links to the earlier ones.
    let newest = team.ann.get(&format!("/panel/conversations/{id}")).await.body;
    assert!(newest.contains("line 230 of my story"));
    let opening = format!("data-seq=\"{}\"", all[0].seq);
    assert!(!newest.contains(&opening), "the opening is on an earlier page");
    assert!(!newest.contains("data-test=\"newest-messages\""));
    let earlier = newest.split("\" data-test=\"earlier-messages\"").next().unwrap().rsplit("href=\"").next().unwrap().to_string();
    let older = team.ann.get(&earlier).await;
    assert_eq!(older.status, 200);
    assert!(older.body.contains(&opening) && !older.body.contains("line 230 of my story"), "the earlier page");
    assert!(older.body.contains("data-test=\"newest-messages\""), "and a way back to the newest");
    assert!(!older.body.contains("data-test=\"earlier-messages\""), "nothing before the first message");

    // Search within the conversation: whole short words, every word, the newest matches.
    let one = team.ann.get(&format!("/panel/conversations/{id}?q=23+STORY")).await.body;
    assert!(one.contains("1 message has “23 STORY”."), "{one}");
    assert!(one.contains("line 23 of my story") && !one.contains("line 230 of my story") && !one.contains("line 123 of"));
    let many = team.ann.get(&format!("/panel/conversations/{id}?q=stor")).await.body;
    assert!(many.contains("230 messages have “stor”; the newest 200 are shown."), "{many}");
    assert!(many.contains("line 230 of my story") && !many.contains("line 30 of my story"));
    let none = team.ann.get(&format!("/panel/conversations/{id}?q=zebra")).await.body;
    assert!(none.contains("No message here has “zebra”.") && !none.contains("data-test=\"message\""));

    // The API pages the same way, both directions, and refuses what it does not know.
    let token = team.ann.new_api_token("reader").await;
    let http = reqwest::Client::new();
    let get = |path: String| http.get(server.url(&path)).bearer_auth(&token).send();
    let texts = |page: &Value| page["messages"].as_array().unwrap().iter().map(|m| m["text"].as_str().unwrap().to_string()).collect::<Vec<_>>();
    let first: Value = get(format!("/api/conversations/{id}?limit=100")).await.unwrap().json().await.unwrap();
    assert_eq!(texts(&first).len(), 100);
    assert_eq!(texts(&first).last().map(String::as_str), Some("line 230 of my story"));
    assert_eq!(first["later"], Value::Null, "nothing newer than the newest");
    let mut seen = texts(&first);
    let mut cursor = first["earlier"].as_i64().expect("an earlier page");
    loop {
        let page: Value = get(format!("/api/conversations/{id}?limit=100&before={cursor}")).await.unwrap().json().await.unwrap();
        seen.splice(0..0, texts(&page));
        match page["earlier"].as_i64() {
            Some(next) => cursor = next,
            None => break,
        }
    }
    assert_eq!(seen, all.iter().map(|m| m.text.clone()).collect::<Vec<_>>(), "paging backwards reaches every message once, in order");
    let forward: Value = get(format!("/api/conversations/{id}?after={}&limit=5", all[9].seq)).await.unwrap().json().await.unwrap();
    assert_eq!(texts(&forward), all[10..15].iter().map(|m| m.text.clone()).collect::<Vec<_>>());
    assert_eq!(forward["later"].as_i64(), Some(all[14].seq));
    for bad in ["?page=2", "?limit=0", "?limit=5000", "?before=x", "?before=5&after=2"] {
        let refused = get(format!("/api/conversations/{id}{bad}")).await.unwrap();
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST, "{bad}");
        let body: Value = refused.json().await.unwrap();
        assert!(body["error"]["message"].as_str().unwrap_or_default().contains("limit (1 to 1000)"), "{bad}: {body}");
    }
}

#[tokio::test]
async fn the_audit_log_pages_back_to_its_first_entry() {
    let server = TestServer::start().await;
    let team = team(&server).await;
    let store = server.engine().store();
    for n in 0..130 {
        let entry = switchboard_models::AuditEntry {
            at: chrono::Utc::now(),
            actor: Some(team.ann_id),
            action: switchboard_models::AuditAction::Presence,
            conversation: None,
            subject_agent: None,
            before: Some(format!("state-{n}-before")),
            after: Some(format!("state-{n}-after")),
        };
        store.record_audit(&entry).await.unwrap();
    }
    let total = store.audit_page(None, 1000).await.unwrap().len();
    let mut path = "/panel/admin/audit".to_string();
    let mut rows = 0;
    let mut pages = 0;
    loop {
        let page = team.admin.get(&path).await;
        assert_eq!(page.status, 200);
        let shown = page.body.matches("data-test=\"audit-row\"").count();
        let first_shown = total - rows;
        let says = format!("Entries {} to {} of {total}", first_shown, first_shown + 1 - shown);
        assert!(page.body.contains(&says), "{says}");
        rows += shown;
        pages += 1;
        let Some(next) = page.body.split("\" data-test=\"next-page\"").next().filter(|_| page.body.contains("data-test=\"next-page\"")) else {
            assert!(page.body.contains("state-0-before"), "the last page holds the first entry");
            break;
        };
        path = next.rsplit("href=\"").next().unwrap().replace("&amp;", "&").replace("&#x3D;", "=");
    }
    assert_eq!((rows, pages), (total, total.div_ceil(100)), "every entry once, 100 a page");
    assert_eq!(team.admin.get("/panel/admin/audit?page=2").await.status, StatusCode::BAD_REQUEST);
}

/// A request with the API token, any method: the status and the JSON answer (null when none).
async fn api(server: &TestServer, token: &str, method: reqwest::Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new().request(method, server.url(path)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let reply = request.send().await.unwrap();
    (reply.status(), reply.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_manages_presence_canned_responses_and_accounts_and_reads_the_audit_log_and_hours_by_the_panels_rules() {
    use reqwest::Method;
    let server = TestServer::start().await;
    let team = team(&server).await;
    let (admin, ann) = (team.admin.new_api_token("manage").await, team.ann.new_api_token("manage").await);
    let call = |token: &str, method: Method, path: &str, body: Option<Value>| {
        let token = token.to_string();
        let path = path.to_string();
        let server = &server;
        async move { api(server, &token, method, &path, body).await }
    };

    // One's own presence.
    assert_eq!(call(&ann, Method::POST, "/api/presence", Some(json!({"presence": "online"}))).await, (StatusCode::OK, json!({"presence": "online"})));
    let (status, error) = call(&ann, Method::POST, "/api/presence", Some(json!({"presence": "asleep"}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert!(error["error"]["message"].as_str().unwrap().contains("online, away, offline"), "{error}");

    // Canned responses: shared ones are the admins', personal ones their owner's.
    let (status, _) = call(&ann, Method::POST, "/api/canned", Some(json!({"title": "Hi", "body": "Hello!", "shared": true}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, own) = call(&ann, Method::POST, "/api/canned", Some(json!({"title": "Mine", "body": "My words"}))).await;
    assert_eq!((status, own["shared"].as_bool(), own["manageable"].as_bool()), (StatusCode::CREATED, Some(false), Some(true)));
    let (status, shared) = call(&admin, Method::POST, "/api/canned", Some(json!({"title": "Refunds", "body": "Refunds take 5 days.", "shared": true}))).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, error) = call(&ann, Method::POST, "/api/canned", Some(json!({"title": " ", "body": "x"}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    let (_, listed) = call(&ann, Method::GET, "/api/canned", None).await;
    let titles: Vec<(&str, bool)> = listed["canned"].as_array().unwrap().iter().map(|c| (c["title"].as_str().unwrap(), c["manageable"].as_bool().unwrap())).collect();
    assert_eq!(titles.len(), 2);
    assert!(titles.contains(&("Mine", true)) && titles.contains(&("Refunds", false)), "{titles:?}");
    let (_, theirs) = call(&admin, Method::GET, "/api/canned", None).await;
    assert_eq!(theirs["canned"].as_array().unwrap().len(), 1, "Ann's own response is hers alone");
    let shared_id = shared["id"].as_str().unwrap();
    assert_eq!(call(&ann, Method::DELETE, &format!("/api/canned/{shared_id}"), None).await.0, StatusCode::FORBIDDEN);
    assert_eq!(call(&ann, Method::DELETE, &format!("/api/canned/{}", own["id"].as_str().unwrap()), None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(call(&ann, Method::DELETE, "/api/canned/not-an-id", None).await.0, StatusCode::NOT_FOUND);

    // Accounts are the admins'.
    assert_eq!(call(&ann, Method::GET, "/api/agents", None).await.0, StatusCode::FORBIDDEN);
    let (status, agents) = call(&admin, Method::GET, "/api/agents", None).await;
    assert_eq!(status, StatusCode::OK);
    let ann_row = agents["agents"].as_array().unwrap().iter().find(|a| a["name"] == "Ann").unwrap().clone();
    assert_eq!((ann_row["presence"].as_str(), ann_row["role"].as_str()), (Some("online"), Some("agent")));
    let new = json!({"name": "Cleo", "email": "cleo@example.com", "password": "quiet harbour lantern 42", "role": "agent", "capacity": 3});
    let (status, cleo) = call(&admin, Method::POST, "/api/agents", Some(new.clone())).await;
    assert_eq!((status, cleo["capacity"].as_u64()), (StatusCode::CREATED, Some(3)), "{cleo}");
    assert_eq!(call(&admin, Method::POST, "/api/agents", Some(new)).await.0, StatusCode::UNPROCESSABLE_ENTITY, "the address is taken");
    assert_eq!(call(&ann, Method::POST, &format!("/api/agents/{}", team.ann_id), Some(json!({"capacity": 9}))).await.0, StatusCode::FORBIDDEN);
    let (status, updated) = call(&admin, Method::POST, &format!("/api/agents/{}", team.ann_id), Some(json!({"capacity": 5}))).await;
    assert_eq!((status, updated["capacity"].as_u64(), updated["active"].as_bool()), (StatusCode::OK, Some(5), Some(true)));
    let (status, updated) = call(&admin, Method::POST, &format!("/api/agents/{}", team.ann_id), Some(json!({"skills": ["Technical_Support", "es"]}))).await;
    assert_eq!((status, &updated["skills"]), (StatusCode::OK, &json!(["es", "technical_support"])), "{updated}");
    let (status, refused) = call(&admin, Method::POST, &format!("/api/agents/{}", team.ann_id), Some(json!({"skills": ["two words"]}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    let root = agents["agents"].as_array().unwrap().iter().find(|a| a["name"] == "Root").unwrap()["id"].as_str().unwrap().to_string();
    assert_eq!(call(&admin, Method::POST, &format!("/api/agents/{root}"), Some(json!({"active": false}))).await.0, StatusCode::UNPROCESSABLE_ENTITY);

    // The audit log, newest first, in keyset pages.
    assert_eq!(call(&ann, Method::GET, "/api/audit", None).await.0, StatusCode::FORBIDDEN);
    assert_eq!(call(&admin, Method::GET, "/api/audit?limit=0", None).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(call(&admin, Method::GET, "/api/audit?page=2", None).await.0, StatusCode::BAD_REQUEST);
    let (_, first) = call(&admin, Method::GET, "/api/audit?limit=2", None).await;
    assert_eq!(first["entries"].as_array().unwrap().len(), 2);
    let older = first["older"].as_i64().expect("more entries");
    let (_, rest) = call(&admin, Method::GET, &format!("/api/audit?before={older}&limit=500"), None).await;
    let actions: Vec<&str> = first["entries"].as_array().unwrap().iter().chain(rest["entries"].as_array().unwrap()).map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions[0], "update_account", "newest first: {actions:?}");
    for action in ["presence", "canned_response", "create_account", "sign_in", "api_token"] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
    assert!(rest["older"].is_null());
    let (_, tokens) = call(&admin, Method::GET, "/api/audit?action=api_token", None).await;
    let made: Vec<&str> = tokens["entries"].as_array().unwrap().iter().map(|e| e["after"].as_str().unwrap()).collect();
    assert_eq!(made, ["token \"manage\"", "token \"manage\""], "the admin's and Ann's tokens");
    let (_, hers) = call(&admin, Method::GET, &format!("/api/audit?actor={}", team.ann_id), None).await;
    assert!(hers["entries"].as_array().unwrap().iter().all(|e| e["actor"] == team.ann_id.to_string()), "{hers}");
    let (_, none) = call(&admin, Method::GET, "/api/audit?from=2000-01-01&to=2000-01-02", None).await;
    assert_eq!(none["entries"], json!([]));
    assert_eq!(call(&admin, Method::GET, "/api/audit?action=dancing", None).await.0, StatusCode::BAD_REQUEST);
    let csv = team.admin.get("/panel/admin/audit.csv?action=sign_in").await;
    assert_eq!(csv.status, StatusCode::OK);
    let lines: Vec<&str> = csv.body.lines().collect();
    assert_eq!(lines[0], "number,at,actor,action,conversation,subject,before,after");
    assert_eq!(lines.len(), 1 + 3, "Root, Ann and Bo signed in: {lines:?}");
    let filtered = team.admin.get("/panel/admin/audit?action=sign_in").await;
    assert!(filtered.body.contains("3 matching entries"), "{}", filtered.body);
    assert_eq!(team.ann.get("/panel/admin/audit.csv").await.status, StatusCode::FORBIDDEN);
    // Signing out is audited too.
    let signed_out = team.bo.post("/panel/logout", &[]).await;
    assert_eq!(signed_out.status, StatusCode::SEE_OTHER);
    let (_, out) = call(&admin, Method::GET, "/api/audit?action=sign_out", None).await;
    assert_eq!(out["entries"].as_array().unwrap().len(), 1);

    // Working hours.
    assert_eq!(call(&ann, Method::GET, "/api/hours", None).await.0, StatusCode::FORBIDDEN);
    let (status, hours) = call(&admin, Method::GET, "/api/hours", None).await;
    assert_eq!(status, StatusCode::OK, "{hours}");
    assert!(hours["totals"].as_array().unwrap().iter().any(|t| t["agent"] == "Ann"), "Ann is online now: {hours}");
    assert_eq!(call(&admin, Method::GET, "/api/hours?from=yesterday", None).await.0, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_are_edited_by_admins_and_their_owners_and_a_one_time_link_sets_a_password() {
    let server = TestServer::start().await;
    let team = team(&server).await;
    let store = server.engine().store().clone();
    let bo_id = store.agent_by_email("bo@example.com").await.unwrap().unwrap().id;
    let root_id = store.agent_by_email("root@example.com").await.unwrap().unwrap().id;
    let edit = |name: &'static str, email: &'static str, role: &'static str| [("name", name), ("email", email), ("role", role), ("capacity", "4"), ("active", "true")];

    // An admin edits an account: name, address, role.
    let saved = team.admin.post(&format!("/panel/admin/agents/{}", team.ann_id), &edit("Ann Lee", "Ann.Lee@Example.com", "admin")).await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let ann = store.agent(team.ann_id).await.unwrap().unwrap();
    assert_eq!((ann.name.as_str(), ann.email.as_str(), ann.role, ann.capacity), ("Ann Lee", "ann.lee@example.com", Role::Admin, 4));
    // Skills as people type them; a wrong one is refused with the reason, nothing changed.
    let skilled = team.admin.post(&format!("/panel/admin/agents/{bo_id}"), &[("name", "Bo"), ("email", "bo@example.com"), ("role", "agent"), ("capacity", "4"), ("active", "true"), ("skills", "Billing, de")]).await;
    assert_eq!(skilled.status, StatusCode::SEE_OTHER, "{}", skilled.body);
    assert_eq!(store.agent(bo_id).await.unwrap().unwrap().skills, ["billing", "de"]);
    let unskilled = team.admin.post(&format!("/panel/admin/agents/{bo_id}"), &[("name", "Bo"), ("email", "bo@example.com"), ("role", "agent"), ("capacity", "4"), ("active", "true"), ("skills", "billing, café")]).await;
    assert_eq!(unskilled.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(unskilled.body.contains("café&#x60; is not a skill"), "{}", unskilled.body);
    assert_eq!(store.agent(bo_id).await.unwrap().unwrap().skills, ["billing", "de"]);
    let listed = team.admin.get("/panel/admin/agents").await;
    assert!(listed.body.contains(r#"data-test="agent-skills">billing, de<"#), "{}", listed.body);
    let audit = store.audit_entries(50).await.unwrap();
    assert!(audit.iter().any(|e| e.after.as_deref().is_some_and(|a| a.ends_with("skills billing de"))), "the change is audited: {audit:?}");
    let taken = team.admin.post(&format!("/panel/admin/agents/{bo_id}"), &edit("Bo", "ann.lee@example.com", "agent")).await;
    assert_eq!(taken.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(taken.body.contains("belongs to another account"), "{}", taken.body);
    let bad = team.admin.post(&format!("/panel/admin/agents/{bo_id}"), &edit("Bo", "bo at example", "agent")).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.body);
    let demoted = team.admin.post(&format!("/panel/admin/agents/{root_id}"), &edit("Root", "root@example.com", "agent")).await;
    assert_eq!(demoted.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(demoted.body.contains("your own admin role"), "{}", demoted.body);
    let page = team.admin.get("/panel/admin/agents").await;
    assert!(page.body.contains("Ann Lee") && !page.body.contains(">never<"), "everyone here signed in: {}", page.body);

    // Everyone changes their own name and password.
    let renamed = team.ann.post("/panel/account/name", &[("name", "Ann L.")]).await;
    assert_eq!((renamed.status, renamed.location.as_deref()), (StatusCode::SEE_OTHER, Some("/panel/account?done=name")));
    assert!(team.ann.get("/panel/account?done=name").await.body.contains("Your name was saved."));
    let new_password = "violet orchard stepping stones";
    let change = |current: &'static str, new: &'static str, repeat: &'static str| [("current", current), ("new", new), ("repeat", repeat)];
    for (fields, why) in [
        (change("wrong password here", new_password, new_password), "current password is not right"),
        (change(PASSWORD, new_password, "something else entirely"), "differ"),
        (change(PASSWORD, "password1234", "password1234"), "too easy to guess"),
    ] {
        let refused = team.ann.post("/panel/account/password", &fields).await;
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(refused.body.contains(why), "{why}: {}", refused.body);
    }
    let changed = team.ann.post("/panel/account/password", &change(PASSWORD, new_password, new_password)).await;
    assert_eq!(changed.status, StatusCode::OK);
    assert!(changed.body.contains("Your password was changed."));
    PanelClient::sign_in(&server.url(""), "ann.lee@example.com", new_password).await;

    // An admin's one-time link lets Bo set a password; it signs Bo out elsewhere and works once.
    assert_eq!(team.bo.post(&format!("/panel/admin/agents/{}/reset", team.ann_id), &[]).await.status, StatusCode::FORBIDDEN);
    let made = team.admin.post(&format!("/panel/admin/agents/{bo_id}/reset"), &[]).await;
    assert_eq!(made.status, StatusCode::OK, "{}", made.body);
    let start = made.body.find("/panel/reset/").expect("the link is shown");
    let path: String = made.body[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || "/-_".contains(*c)).collect();
    let stranger = PanelClient::anonymous(&server.url(""));
    let form = stranger.get(&path).await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.body.contains("For Bo."), "{}", form.body);
    let weak = stranger.post_raw(&path, &[("new", "short"), ("repeat", "short")]).await;
    assert_eq!(weak.status, StatusCode::UNPROCESSABLE_ENTITY);
    let bo_password = "amber kettle under moonlight";
    let set = stranger.post_raw(&path, &[("new", bo_password), ("repeat", bo_password)]).await;
    assert_eq!((set.status, set.location.as_deref()), (StatusCode::SEE_OTHER, Some("/panel/login?reset=done")));
    assert_eq!(team.bo.get("/panel/").await.status, StatusCode::SEE_OTHER, "Bo's old session ended");
    assert_eq!(stranger.get(&path).await.status, StatusCode::GONE, "the link works once");
    assert_eq!(stranger.post_raw(&path, &[("new", "another fine passphrase"), ("repeat", "another fine passphrase")]).await.status, StatusCode::GONE);
    assert_eq!(stranger.get("/panel/reset/not-a-token").await.status, StatusCode::GONE);
    PanelClient::sign_in(&server.url(""), "bo@example.com", bo_password).await;
    let audit: Vec<String> = store.audit_entries(50).await.unwrap().into_iter().filter_map(|e| e.after).collect();
    for said in ["password changed", "password set with a one-time link", "a link to set a password, valid 24 hours"] {
        assert!(audit.iter().any(|a| a == said), "{said} in {audit:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agents_page_shows_presence_as_it_changes_in_chromium() {
    let server = TestServer::start().await;
    let team = team(&server).await;
    let token = team.ann.new_api_token("presence").await;
    let args = vec![server.url(""), crate::browser::artifacts(), "root@example.com".into(), PASSWORD.into(), team.ann_id.to_string(), token];
    crate::browser::run_script("presence.mjs", args, "browser presence test passed").await;
    let ann = server.engine().store().agent(team.ann_id).await.unwrap().unwrap();
    assert_eq!(ann.presence, switchboard_models::Presence::Away);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_rule_on_agents_see_only_the_queue_and_their_own_conversations() {
    use switchboard_core::TicketChange;
    let server = TestServer::start_with(|config| config.server.agents_see_only_own_and_queued = true).await;
    let team = team(&server).await;
    let engine = server.engine();
    let bo_id = engine.store().agent_by_email("bo@example.com").await.unwrap().unwrap().id;
    let mut escalated = Vec::new();
    for visitor in ["rule-queue", "rule-ann", "rule-bo"] {
        let outcome = engine.handle(switchboard_tests::webchat_inbound(visitor, Some(visitor), 1, "I want to talk to a person")).await.unwrap();
        assert!(outcome.escalated);
        escalated.push(outcome.conversation);
    }
    let bot_only = engine.handle(switchboard_tests::webchat_inbound("rule-bot", None, 1, "hello")).await.unwrap().conversation;
    engine.change_ticket(escalated[1].id, team.ann_id, TicketChange::Take, None).await.unwrap();
    engine.change_ticket(escalated[2].id, bo_id, TicketChange::Take, None).await.unwrap();
    let (queued, anns, bos) = (escalated[0].id, escalated[1].id, escalated[2].id);

    let ann_api = team.ann.new_api_token("rule").await;
    let admin_api = team.admin.new_api_token("rule").await;
    let ids = |body: &Value| -> Vec<String> { body["conversations"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_string()).collect() };
    let (_, listed) = api(&server, &ann_api, reqwest::Method::GET, "/api/conversations", None).await;
    let mut seen = ids(&listed);
    seen.sort();
    let mut expected = vec![queued.to_string(), anns.to_string()];
    expected.sort();
    assert_eq!(seen, expected, "Ann's list: the queue's and hers");
    let (_, everything) = api(&server, &admin_api, reqwest::Method::GET, "/api/conversations", None).await;
    assert_eq!(ids(&everything).len(), 4, "admins see every conversation");
    let (_, searched) = api(&server, &ann_api, reqwest::Method::GET, "/api/conversations?q=person", None).await;
    assert!(!ids(&searched).contains(&bos.to_string()), "a search finds no one else's");

    for other in [bos, bot_only.id] {
        assert_eq!(api(&server, &ann_api, reqwest::Method::GET, &format!("/api/conversations/{other}"), None).await.0, StatusCode::NOT_FOUND);
        assert_eq!(team.ann.get(&format!("/panel/conversations/{other}")).await.status, StatusCode::NOT_FOUND);
    }
    assert_eq!(api(&server, &ann_api, reqwest::Method::GET, &format!("/api/conversations/{queued}"), None).await.0, StatusCode::OK);
    assert_eq!(team.ann.get(&format!("/panel/conversations/{anns}")).await.status, StatusCode::OK);
    assert_eq!(api(&server, &admin_api, reqwest::Method::GET, &format!("/api/conversations/{bos}"), None).await.0, StatusCode::OK);
    let list_page = team.ann.get("/panel/conversations").await;
    assert!(list_page.body.contains(&anns.to_string()) && !list_page.body.contains(&bos.to_string()));
    // The customer page of Bo's customer lists none of the conversations for Ann.
    let (_, customer) = api(&server, &ann_api, reqwest::Method::GET, &format!("/api/customers/{}", escalated[2].contact_id), None).await;
    assert_eq!(customer["conversations"], json!([]), "{customer}");
}

/// The bot's words to a new web-chat customer asking for a person.
async fn handoff_said(server: &TestServer, visitor: &str) -> String {
    let inbound = Inbound {
        channel: Channel::WebChat,
        external_id: format!("{visitor}:1"),
        sender_external_id: visitor.into(),
        sender_name: None,
        text: "I want to talk to a person".into(),
        attachments: Vec::new(),
        original: None,
        thread: Thread::Current,
        received_at: chrono::Utc::now(),
        reported_language: None,
    };
    server.engine().handle(inbound).await.unwrap().replies.iter().map(|r| r.text.clone()).collect::<Vec<_>>().join(" ")
}

#[tokio::test]
async fn settings_change_the_bot_at_once_and_are_checked_audited_and_reset() {
    let server = TestServer::start().await;
    let team = team(&server).await;
    let default_offline = switchboard_core::Policy::default().handoff_offline;
    assert_eq!(handoff_said(&server, "before").await, default_offline, "nobody is online");
    let page = team.admin.get("/panel/admin/settings").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Unsure below") && page.body.contains("Default."), "{}", page.body);

    // Refused: the configuration's own check, with what the admin typed kept and nothing stored.
    let refused = team.admin.post("/panel/admin/settings", &[("value:bot.low_confidence_threshold", "2"), ("value:bot.handoff_offline", "Kept text")]).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.body.contains("bot.low_confidence_threshold") && refused.body.contains("2 is not within 0.."), "{}", refused.body);
    assert!(refused.body.contains("Kept text") && refused.body.contains("aria-invalid=\"true\""), "the typed values stay");
    assert!(server.engine().store().stored_settings().await.unwrap().is_empty(), "all or nothing");

    let text = "Nobody is in right now; we write back first thing tomorrow.";
    let saved = team.admin.post("/panel/admin/settings", &[("value:bot.handoff_offline", text), ("value:bot.low_confidence_threshold", "0.5")]).await;
    assert_eq!((saved.status, saved.location.as_deref()), (StatusCode::SEE_OTHER, Some("/panel/admin/settings?done=1")), "{}", saved.body);
    assert_eq!(handoff_said(&server, "after").await, text, "in force without a restart");
    let stored = server.engine().store().stored_settings().await.unwrap();
    assert_eq!(stored.iter().map(|s| s.key.as_str()).collect::<Vec<_>>(), ["bot.handoff_offline"], "only what changed (0.5 is the default)");
    let page = team.admin.get("/panel/admin/settings").await;
    assert!(page.body.contains("Set here by Root"), "{}", page.body);
    let audit = team.admin.get("/panel/admin/audit?action=settings").await;
    assert!(audit.body.contains("bot.handoff_offline"), "{}", audit.body);

    let reset = team.admin.post("/panel/admin/settings", &[("value:bot.handoff_offline", text), ("reset:bot.handoff_offline", "1")]).await;
    assert_eq!(reset.status, StatusCode::SEE_OTHER, "{}", reset.body);
    assert_eq!(handoff_said(&server, "reset").await, default_offline, "the config file's value again");
    assert!(server.engine().store().stored_settings().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_rate_limit_changed_in_settings_applies_without_a_restart() {
    let server = TestServer::start().await;
    let team = team(&server).await;
    let token = team.admin.new_api_token("limits").await;
    let http = reqwest::Client::new();
    let me = || http.get(server.url("/api/me")).bearer_auth(&token).send();
    for _ in 0..3 {
        assert_eq!(me().await.unwrap().status(), StatusCode::OK, "well within the configured limit");
    }
    let changed = http.post(server.url("/api/settings")).bearer_auth(&token).json(&json!({"settings": {"server.api_requests_per_minute": "1"}})).send().await.unwrap();
    assert_eq!(changed.status(), StatusCode::OK);
    // One request a minute, no burst: in force when the change is answered, without a restart.
    assert_eq!(me().await.unwrap().status(), StatusCode::OK, "the one request the new limit allows now");
    let refused = me().await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let said = refused.text().await.unwrap();
    assert!(said.contains("try again in") && said.contains("server.api_requests_per_minute"), "{said}");
}

#[tokio::test]
async fn the_session_lifetime_and_the_shortest_password_are_settings_in_force_at_once() {
    let server = TestServer::start().await;
    let team = team(&server).await;
    let token = team.admin.new_api_token("accounts").await;
    let new_agent = |password: &str| json!({"email": "cy@example.com", "name": "Cy", "password": password, "role": "agent", "capacity": 3});
    let strong_but_short = "violet tram 42 oak";
    let (status, changed) = api(&server, &token, reqwest::Method::POST, "/api/settings", Some(json!({"settings": {"server.password_min_chars": "24", "server.session_days": "1"}}))).await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    let (status, refused) = api(&server, &token, reqwest::Method::POST, "/api/agents", Some(new_agent(strong_but_short))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert!(refused.to_string().contains("at least 24 characters"), "{refused}");
    let (status, created) = api(&server, &token, reqwest::Method::POST, "/api/agents", Some(new_agent("violet tram 42 oak under the bridge"))).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");

    // A sign-in now lasts a day: the cookie says so.
    let page = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let login = page.get(server.url("/panel/login")).send().await.unwrap();
    let login_cookie = login.headers().get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).find(|v| v.starts_with("sb_login_csrf=")).unwrap().split(';').next().unwrap().to_string();
    let csrf = switchboard_tests::panel::csrf_of(&login.text().await.unwrap()).unwrap();
    let signed = page
        .post(server.url("/panel/login"))
        .header("cookie", login_cookie)
        .form(&[("email", "cy@example.com"), ("password", "violet tram 42 oak under the bridge"), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    let session = signed.headers().get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).find(|v| v.starts_with("sb_session=")).unwrap().to_string();
    assert!(session.contains("Max-Age=86400"), "{session}");
    let (status, refused) = api(&server, &token, reqwest::Method::POST, "/api/settings", Some(json!({"settings": {"server.password_min_chars": "4"}}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert!(refused.to_string().contains("not within 8..=128"), "{refused}");
}

#[tokio::test]
async fn the_widget_page_changes_the_look_the_questions_and_the_sites_at_once() {
    let server = TestServer::start_with(|c| c.server.public_url = Some("https://support.example.com".into())).await;
    let team = team(&server).await;
    let http = reqwest::Client::new();
    let config_from = |origin: &'static str| http.get(server.url("/webchat/config")).header("origin", origin).send();
    assert_eq!(config_from("https://shop.example.com").await.unwrap().status(), StatusCode::FORBIDDEN, "not an allowed site yet");

    let page = team.admin.get("/panel/admin/widget").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("data-test=\"widget-preview\"") && page.body.contains("name=\"value:webchat.title\""), "{}", page.body);
    assert!(page.body.contains("&lt;script src&#x3D;&quot;https://support.example.com/widget.js&quot; async&gt;&lt;/script&gt;"), "the embed code: {}", page.body);
    assert!(!team.admin.get("/panel/admin/settings").await.body.contains("value:webchat.title"), "the widget has its own page");
    assert_eq!(team.ann.get("/panel/admin/widget").await.status, StatusCode::FORBIDDEN, "admins only");

    // A bad colour is refused with its reason; nothing changes.
    let refused = team.admin.post("/panel/admin/widget", &[("value:webchat.primary_color", "blue"), ("value:webchat.title", "Acme help")]).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.body.contains("is not a colour like #2563eb") && refused.body.contains("Acme help"), "{}", refused.body);

    let saved = team
        .admin
        .post(
            "/panel/admin/widget",
            &[
                ("value:webchat.title", "Acme help"),
                ("value:webchat.primary_color", "#0f766e"),
                ("value:webchat.text_color", "#ffffff"),
                ("value:webchat.position", "left"),
                ("value:webchat.welcome_message", "Hello from Acme!"),
                ("value:webchat.prechat_fields", "name\r\nemail\r\n"),
                ("value:webchat.allowed_origins", "https://shop.example.com"),
            ],
        )
        .await;
    assert_eq!((saved.status, saved.location.as_deref()), (StatusCode::SEE_OTHER, Some("/panel/admin/widget?done=1")), "{}", saved.body);
    // In force at once, without a restart: the look, the questions and the new site.
    let config = config_from("https://shop.example.com").await.unwrap();
    assert_eq!(config.status(), StatusCode::OK, "the site may embed the widget now");
    let config: Value = config.json().await.unwrap();
    assert_eq!(config["look"]["title"], "Acme help");
    assert_eq!(config["look"]["primary_color"], "#0f766e");
    assert_eq!(config["look"]["position"], "left");
    assert_eq!(config["look"]["welcome_message"], "Hello from Acme!");
    assert_eq!(config["prechat_fields"], json!(["name", "email"]));
    let page = team.admin.get("/panel/admin/widget").await;
    assert!(page.body.contains("data-preview=\"title\">Acme help<") && page.body.contains("Set here by Root"), "{}", page.body);
    let audit = team.admin.get("/panel/admin/audit?action=settings").await;
    assert!(audit.body.contains("webchat.allowed_origins"), "{}", audit.body);
}
