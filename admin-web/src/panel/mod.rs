//! The agents' panel under `/panel`: server-rendered pages, forms with CSRF tokens, live updates
//! over SSE; and the JSON API under `/api` for the same actions, by API token.

mod account;
pub mod api;
pub mod auth;
mod bot;
mod customer;
mod customers;
mod documents;
mod files;
mod manage_api;
mod reports;
mod dead_letters;
mod settings;
mod two_factor;
mod webhooks;
mod views;

use crate::AppState;
use crate::error::ApiError;
use crate::limits;
use auth::{LOGIN_CSRF_COOKIE, SESSION_COOKIE, Signed, SignedAdmin, cookie, hash_token, random_token};
use axum::Router;
use axum::extract::{ConnectInfo, Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use std::net::SocketAddr;
use switchboard_core::{Assignee, ConversationFilter, ConversationSummary, ListCursor, ListOrder, ListTotal, SessionRecord, TicketChange};
use switchboard_core::ports::{AdminWrite, ApiTokenChange, CannedChange, Conversations, Listings};
use axum::extract::rejection::QueryRejection;
use crate::signin::Admission;
use switchboard_models::{Agent, AgentId, ApiToken, AuditAction, AuditEntry, CannedResponse, ConversationId, DeliveryState, DomainEvent, Handler, Presence, Role};
pub use views::Views;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/panel/login", get(login_page).post(login))
        .merge(two_factor::routes())
        .route("/panel/logout", post(logout))
        .route("/panel/presence", post(presence))
        .route("/panel/", get(dashboard))
        .route("/panel", get(|| async { Redirect::to("/panel/") }))
        .route("/panel/conversations", get(conversations))
        .route("/panel/conversations/{id}", get(conversation))
        .route("/panel/conversations/{id}/attachments/{key}", get(attachment))
        .route("/panel/conversations/{id}/reply", post(reply).layer(limits::upload_body_limit()))
        .route("/panel/conversations/{id}/typing", post(typing))

        .route("/panel/conversations/{id}/{action}", post(act))
        .route("/panel/canned", get(canned).post(create_canned))
        .route("/panel/canned/{id}/delete", post(delete_canned))
        .route("/panel/account/tokens", get(tokens).post(create_token))
        .route("/panel/account/tokens/{id}/delete", post(delete_token))
        .route("/panel/admin/agents", get(agents).post(create_agent))
        .route("/panel/admin/agents/{id}", post(update_agent))
        .route("/panel/admin/audit", get(audit))
        .route("/panel/admin/audit.csv", get(audit_csv))
        .route("/panel/admin/system", get(system))
        .route("/panel/events", get(events))
        .route("/panel/notifications", get(notifications))
        .route("/panel/notifications/read", post(read_notifications))
        .route("/static/admin.css", get(|| async { asset("text/css", include_str!("../../assets/admin.css")) }))
        .route("/static/admin.js", get(|| async { asset("application/javascript", include_str!("../../assets/admin.js")) }))
        .merge(api::routes())
        .merge(customers::routes())
        .merge(customer::routes())
        .merge(documents::routes())
        .merge(files::routes())
        .merge(reports::routes())
        .merge(bot::routes())
        .merge(account::routes())
        .merge(settings::routes())
        .merge(webhooks::routes())
        .merge(dead_letters::routes())
        .merge(manage_api::routes())
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "public, max-age=300")], body)
}

/// The data every page's header needs.
/// A JSON body, or a 400 that says what was wrong with it.
fn json_body<T>(body: Result<axum::Json<T>, axum::extract::rejection::JsonRejection>) -> Result<T, ApiError> {
    body.map(|axum::Json(body)| body).map_err(|rejection| ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", rejection.body_text()))
}

fn page(signed: &Signed, nav: &str, title: &str, mut data: Value) -> Value {
    let me = &signed.agent;
    let base = json!({
        "title": title,
        "nav": nav,
        "csrf": signed.csrf,
        "flash": null,
        "storage_problem": signed.storage_problem,
        "unread": signed.unread,
        "me": {"id": me.id.to_string(), "name": me.name, "email": me.email, "role": me.role.as_str(), "is_admin": me.role == Role::Admin, "presence": me.presence.as_str()},
    });
    if let (Some(data), Value::Object(base)) = (data.as_object_mut(), base) {
        for (key, value) in base {
            data.entry(key).or_insert(value);
        }
    }
    data
}

/// Errors on panel pages are pages too, with a way back.
fn error_page(state: &AppState, error: ApiError, back: &str) -> Response {
    let status = error.status;
    let body = json!({"status": status.as_u16(), "message": error.message, "back": back});
    match state.views.render("error", &body) {
        Ok(html) => (status, html).into_response(),
        Err(error) => error.into_response(),
    }
}

#[derive(Deserialize)]
struct LoginForm {
    email: String,
    password: String,
    csrf: String,
}

async fn login_page(State(state): State<AppState>) -> Result<Response, ApiError> {
    let csrf = random_token();
    let html = state.views.render("login", &json!({"csrf": csrf, "error": null, "email": ""}))?;
    let cookie = format!("{LOGIN_CSRF_COOKIE}={csrf}; Path=/panel; HttpOnly; SameSite=Strict; Max-Age=3600{}", secure(&state));
    Ok(([(header::SET_COOKIE, cookie)], html).into_response())
}

async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, ApiError> {
    let email = form.email.trim().to_lowercase();
    let again = |error: &str| login_form(&state, StatusCode::UNAUTHORIZED, &email, error);
    if !cookie(&headers, LOGIN_CSRF_COOKIE).is_some_and(|c| auth::constant_time_eq(c, &form.csrf)) {
        return again("The login form expired; please sign in again.");
    }
    let address = crate::client::client_address(&state.trusted_proxies, peer.ip(), &headers);
    let accounts = state.engine.accounts();
    let agent = accounts.agent_by_email(&email).await?.filter(|a| a.active);
    let audit = |action, after: String| switchboard_models::AuditEntry {
        at: state.engine.now(),
        actor: None,
        action,
        conversation: None,
        subject_agent: agent.as_ref().map(|a| a.id),
        before: None,
        after: Some(after),
    };
    match state.sign_in.admit(&email, address).await {
        Admission::Refused { retry_after } => {
            let seconds = retry_after.as_secs().max(1);
            let who = if agent.is_some() { String::new() } else { format!(" (unknown account {})", limits::shown(&email, 60)) };
            accounts.record_audit(&audit(AuditAction::SignInRefused, format!("from {address}{who}; retry in {seconds} s"))).await?;
            return Ok(too_many_attempts(seconds));
        }
        Admission::Go { slowdown } => tokio::time::sleep(slowdown).await,
    }
    let hash = match &agent {
        Some(agent) => accounts.password_hash(agent.id).await?,
        None => None,
    };
    // An unknown email costs the same hash check as a wrong password: timing tells no one
    // which accounts exist.
    let verified = match hash.as_deref() {
        Some(hash) => verify_password(&form.password, hash),
        None => {
            let _ = verify_password(&form.password, stand_in_hash());
            false
        }
    };
    let Some(agent) = agent.clone().filter(|_| verified) else {
        state.sign_in.failed(&email);
        let who = if agent.is_some() { String::new() } else { format!(" (unknown account {})", limits::shown(&email, 60)) };
        accounts.record_audit(&audit(AuditAction::SignInFailed, format!("from {address}{who}"))).await?;
        return again("Wrong email or password.");
    };
    if accounts.two_factor_secret(agent.id).await?.is_some() {
        return two_factor::ask_for_code(&state, &agent).await;
    }
    begin_session(&state, &agent, address, None).await
}

/// A sign-in step refused by the limits: try again in `seconds`.
fn too_many_attempts(seconds: u64) -> Response {
    let message = format!("Too many sign-in attempts from your address; try again in {seconds} seconds.");
    let mut response = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message).into_response();
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// The sign-in form again, with `error`.
fn login_form(state: &AppState, status: StatusCode, email: &str, error: &str) -> Result<Response, ApiError> {
    let csrf = random_token();
    let html = state.views.render("login", &json!({"csrf": csrf, "error": error, "email": email}))?;
    let cookie = format!("{LOGIN_CSRF_COOKIE}={csrf}; Path=/panel; HttpOnly; SameSite=Strict; Max-Age=3600{}", secure(state));
    Ok((status, [(header::SET_COOKIE, cookie)], html).into_response())
}

/// A sign-in completed (password, and code when two-factor sign-in is on): a new session,
/// audited, and the challenge it answered ended.
async fn begin_session(state: &AppState, agent: &Agent, address: std::net::IpAddr, answered: Option<String>) -> Result<Response, ApiError> {
    state.sign_in.succeeded(&agent.email, address);
    let token = random_token();
    let session = SessionRecord {
        agent: agent.id,
        csrf: random_token(),
        expires_at: state.engine.now() + chrono::Duration::days(i64::from(state.account_rules.session_days())),
    };
    let signed_in = switchboard_models::AuditEntry {
        at: state.engine.now(),
        actor: Some(agent.id),
        action: AuditAction::SignIn,
        conversation: None,
        subject_agent: Some(agent.id),
        before: None,
        after: Some(format!("from {address}")),
    };
    let write = AdminWrite { session: Some((hash_token(&token), session)), end_sign_in_challenge: answered, audit: vec![signed_in], ..AdminWrite::default() };
    state.engine.accounts().commit_admin(write).await?;
    let cookie = format!("{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{}", i64::from(state.account_rules.session_days()) * 86_400, secure(state));
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/panel/")).into_response())
}

/// `; Secure` when the public URL is https: the browser then never sends the cookie in clear.
fn secure(state: &AppState) -> &'static str {
    if state.secure_cookies { "; Secure" } else { "" }
}

/// A hash no password is checked against for real; made once, with the same parameters.
fn stand_in_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| crate::accounts::hash_password(&random_token()).expect("hashing works"))
}

fn verify_password(password: &str, hash: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    PasswordHash::new(hash).is_ok_and(|parsed| argon2::Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
}

#[derive(Deserialize)]
struct CsrfOnly {
    csrf: String,
}

async fn logout(State(state): State<AppState>, signed: Signed, Form(form): Form<CsrfOnly>) -> Result<Response, ApiError> {
    signed.check_csrf(&form.csrf)?;
    let signed_out = account_audit(&state, &signed.agent, AuditAction::SignOut, None, None);
    state
        .engine
        .accounts()
        .commit_admin(AdminWrite { end_session: Some(signed.token_hash.clone()), audit: vec![signed_out], ..AdminWrite::default() })
        .await?;
    let cookie = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{}", secure(&state));
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/panel/login")).into_response())
}

#[derive(Deserialize)]
struct PresenceForm {
    csrf: String,
    presence: String,
}

async fn presence(State(state): State<AppState>, signed: Signed, headers: HeaderMap, Form(form): Form<PresenceForm>) -> Result<Response, ApiError> {
    signed.check_csrf(&form.csrf)?;
    let presence: Presence = form.presence.parse().map_err(|e: switchboard_models::UnknownVariant| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_presence", e.to_string())
    })?;
    state.engine.set_presence(signed.agent.id, presence).await?;
    Ok(Redirect::to(back_to(&headers)).into_response())
}

/// The page a form came from, when it is one of ours.
fn back_to(headers: &HeaderMap) -> &str {
    headers
        .get(header::REFERER)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| r.find("/panel/").map(|i| &r[i..]))
        .unwrap_or("/panel/")
}

async fn dashboard(State(state): State<AppState>, signed: Signed) -> Result<Html<String>, ApiError> {
    let accounts = state.engine.accounts();
    let listings = state.engine.listings();
    let day_start = state.engine.now().date_naive().and_hms_opt(0, 0, 0).expect("midnight").and_utc();
    let counts = listings.dashboard_counts(day_start, state.engine.now()).await?;
    let documents = state.engine.documents().document_counts(day_start).await?;
    let agents = accounts.list_agents().await?;
    let mine = listings
        .list_conversations(&ConversationFilter { assignee: Some(Assignee::Agent(signed.agent.id)), limit: 50, ..Default::default() })
        .await?;
    // Newest first, so finished ones among the 50 just drop out of "mine"; the queue in the
    // order it is worked, and beside it whoever has waited longest.
    let queued = |order, limit| ConversationFilter { assignee: Some(Assignee::Queue), order, limit, ..Default::default() };
    let longest = listings.list_conversations(&queued(ListOrder::LongestWaiting, 1)).await?;
    let queue = listings.list_conversations(&queued(ListOrder::NextInLine, 50)).await?;
    let now = state.engine.now();
    let oldest_wait = longest.first().map(|s| views::wait(now - switchboard_core::ports::waiting_since(&s.conversation)));
    let data = json!({
        "oldest_wait": oldest_wait,
        "documents": {"pending": documents.pending, "approved_today": documents.approved_today, "rejected_today": documents.rejected_today},
        "counts": {"urgent": counts.urgent, "new": counts.new, "waiting": counts.waiting, "in_progress": counts.in_progress, "resolved_today": counts.resolved_today, "overdue": counts.overdue},
        "unread": signed.unread,
        "mine": mark_unread(&state, &signed, mine.iter().filter(|s| !s.conversation.status.is_final()).map(|s| views::row(s, &agents, now)).collect()).await?,
        "queue": mark_unread(&state, &signed, queue.iter().map(|s| views::row(s, &agents, now)).collect()).await?,
    });
    state.views.render("dashboard", &page(&signed, "dashboard", "Dashboard", data))
}

/// A list's query string. Anything else is refused, so a misspelt parameter never silently does nothing.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct ListQuery {
    status: String,
    priority: String,
    category: String,
    channel: String,
    assignee: String,
    q: String,
    /// "1": only conversations with a reply that was not delivered.
    undelivered: String,
    /// "recent" (the default), "next_in_line" (priority first, then waiting longest: the
    /// default for the queue), "longest_waiting" or "due" (nearest SLA due time first).
    sort: String,
    /// The `next` cursor of the page before.
    after: String,
    /// Rows per page, 1 to 200 (default 50).
    limit: String,
}

/// The query string, or a 400 that says what was wrong and what is accepted.
pub(crate) fn list_query(query: Result<Query<ListQuery>, QueryRejection>) -> Result<ListQuery, ApiError> {
    query.map(|Query(query)| query).map_err(|rejection| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!(
                "{}. Lists take status, priority, category, channel, assignee, q, undelivered, sort, after and limit.",
                rejection.body_text().trim_end_matches('.')
            ),
        )
    })
}

/// One page of a list, the cursor of the next one when there is more, and how many rows the
/// filters match in all.
pub(crate) async fn list_page(
    store: &dyn Listings,
    filter: &ConversationFilter,
) -> Result<(Vec<ConversationSummary>, Option<String>, ListTotal), ApiError> {
    let one_more = ConversationFilter { limit: filter.limit + 1, ..filter.clone() };
    let (rows, total) = store.list_page(&one_more).await?;
    let (rows, next) = cut_page(rows, filter.limit, |last| ListCursor::after(last, filter.order).encode());
    Ok((rows, next, total))
}

/// A page read with one row more than `limit`: the page, and when that extra row came, the
/// cursor after the page's last row.
pub(crate) fn cut_page<T>(mut rows: Vec<T>, limit: u32, cursor: impl Fn(&T) -> String) -> (Vec<T>, Option<String>) {
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next = if more { rows.last().map(cursor) } else { None };
    (rows, next)
}

fn parse_filter<T: std::str::FromStr<Err = switchboard_models::UnknownVariant>>(value: &str) -> Result<Option<T>, ApiError> {
    if value.is_empty() {
        return Ok(None);
    }
    value.parse().map(Some).map_err(|e: switchboard_models::UnknownVariant| ApiError::new(StatusCode::BAD_REQUEST, "invalid_filter", e.to_string()))
}

/// Whether `agent` may read conversation `c`: everyone may, unless
/// `server.agents_see_only_own_and_queued` limits agents to the queue's and their own.
pub(crate) fn may_read(state: &AppState, agent: &Agent, c: &switchboard_models::Conversation) -> bool {
    !state.own_and_queued_only || agent.role == Role::Admin || matches!(c.handler, Handler::Queue) || c.handler == Handler::Agent(agent.id)
}

/// The conversations an agent's lists hold, under the same rule as `may_read`.
pub(crate) fn visible_to(state: &AppState, agent: &Agent) -> Option<AgentId> {
    (state.own_and_queued_only && agent.role != Role::Admin).then_some(agent.id)
}

pub(crate) fn filter_of(state: &AppState, query: &ListQuery, agent: &Agent) -> Result<ConversationFilter, ApiError> {
    let me = agent.id;
    let assignee = match query.assignee.as_str() {
        "" => None,
        "queue" => Some(Assignee::Queue),
        "me" => Some(Assignee::Agent(me)),
        other => Some(Assignee::Agent(AgentId::parse(other).map_err(|_| {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_filter", format!("assignee `{other}` is not me, queue or an agent id"))
        })?)),
    };
    Ok(ConversationFilter {
        status: parse_filter(&query.status)?,
        priority: parse_filter(&query.priority)?,
        category: parse_filter(&query.category)?,
        channel: parse_filter(&query.channel)?,
        assignee,
        visible_to: visible_to(state, agent),
        text: Some(query.q.clone()).filter(|q| !q.trim().is_empty()),
        order: match (query.sort.as_str(), query.assignee.as_str()) {
            ("", "queue") | ("next_in_line", _) => ListOrder::NextInLine,
            ("longest_waiting", _) => ListOrder::LongestWaiting,
            ("due", _) => ListOrder::DueFirst,
            ("" | "recent", _) => ListOrder::Recent,
            (other, _) => return Err(bad_filter(format!("sort `{other}` must be recent, next_in_line, longest_waiting or due"))),
        },
        after: match query.after.as_str() {
            "" => None,
            cursor => Some(ListCursor::decode(cursor).ok_or_else(|| {
                bad_filter(format!("after `{cursor}` is not a cursor; use the `next` of the page before"))
            })?),
        },
        undelivered: match query.undelivered.as_str() {
            "" | "0" => false,
            "1" => true,
            other => {
                let why = format!("undelivered `{other}` must be 1 (only conversations with an undelivered reply) or left out");
                return Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid_filter", why));
            }
        },
        limit: match query.limit.as_str() {
            "" => 50,
            given => given.parse().ok().filter(|n| (1..=200).contains(n)).ok_or_else(|| bad_filter(format!("limit `{given}` must be 1 to 200")))?,
        },
    })
}

fn bad_filter(why: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_filter", why)
}

async fn conversations(
    State(state): State<AppState>,
    signed: Signed,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (query, filter) = match list_query(query).and_then(|query| filter_of(&state, &query, &signed.agent).map(|filter| (query, filter))) {
        Ok(both) => both,
        Err(error) => return Ok(error_page(&state, error, "/panel/conversations")),
    };
    let accounts = state.engine.accounts();
    let agents = accounts.list_agents().await?;
    let (rows, next, total) = list_page(state.engine.listings(), &filter).await?;
    // The same filters, from the start or after a cursor.
    let page_url = |after: Option<&str>| {
        let mut url = url::form_urlencoded::Serializer::new(String::new());
        let given = [
            ("status", &query.status), ("priority", &query.priority), ("category", &query.category),
            ("channel", &query.channel), ("assignee", &query.assignee), ("q", &query.q),
            ("undelivered", &query.undelivered), ("sort", &query.sort), ("limit", &query.limit),
        ];
        for (key, value) in given.into_iter().filter(|(_, value)| !value.is_empty()) {
            url.append_pair(key, value);
        }
        if let Some(after) = after {
            url.append_pair("after", after);
        }
        format!("/panel/conversations?{}", url.finish())
    };
    let next_url = next.as_deref().map(|cursor| page_url(Some(cursor)));
    let words = switchboard_core::search::search_words(&query.q);
    let data = json!({
        "filters": {"status": query.status, "priority": query.priority, "category": query.category, "channel": query.channel, "assignee": query.assignee, "q": query.q, "undelivered": query.undelivered == "1", "sort": query.sort},
        "options": views::all_options(&agents),
        "rows": mark_unread(&state, &signed, rows.iter().map(|s| views::search_row(s, &agents, &words, state.engine.now())).collect()).await?,
        "total": views::total_label(total, !query.q.trim().is_empty()),
        "search_capped": total.search_capped,
        "search_hits": views::count(u64::from(switchboard_core::ports::SEARCH_HITS)),
        "next_url": next_url,
        "first_url": (!query.after.is_empty()).then(|| page_url(None)),
        "order_note": match filter.order {
            ListOrder::NextInLine => Some("Next in line first: most urgent, then longest waiting"),
            ListOrder::LongestWaiting => Some("Longest waiting first"),
            ListOrder::DueFirst => Some("Nearest SLA due time first"),
            ListOrder::Recent => None,
        },
    });
    Ok(state.views.render("conversations", &page(&signed, "conversations", "Conversations", data))?.into_response())
}

pub(crate) fn conversation_id(text: &str) -> Result<ConversationId, ApiError> {
    ConversationId::parse(text).map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "not_found", "No such conversation."))
}

/// `?done=ACTION` after an action on the conversation page: confirm it and put focus back.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConversationQuery {
    done: Option<String>,
    /// Show the page of messages before this seq (the "Earlier messages" link).
    before: Option<i64>,
    /// Show only the messages with these words.
    q: Option<String>,
}

/// The newest `limit` messages of one conversation that hold every word of `text`, oldest
/// first, with how many matched in all. The conversation index bounds the read to its
/// messages; the words follow the list search's rules.
pub(crate) async fn conversation_matches(
    store: &dyn Conversations,
    id: ConversationId,
    text: &str,
    limit: usize,
) -> Result<(Vec<switchboard_models::Message>, usize), ApiError> {
    let words = switchboard_core::search::search_words(text);
    let mut found = std::collections::VecDeque::new();
    let mut count = 0;
    let mut after = 0;
    loop {
        let page = store.conversation_messages(id, after, 1000).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for message in page {
            if switchboard_core::search::matches_all(&message.text, &words) {
                count += 1;
                found.push_back(message);
                if found.len() > limit {
                    found.pop_front();
                }
            }
        }
    }
    Ok((found.into(), count))
}

/// The newest `limit` messages before `before` (oldest first), and the `before` cursor of the
/// page preceding them when there is one.
pub(crate) async fn messages_before(
    store: &dyn Conversations,
    id: ConversationId,
    before: Option<i64>,
    limit: u32,
) -> Result<(Vec<switchboard_models::Message>, Option<i64>), ApiError> {
    // One more than asked for tells whether there is an earlier page.
    let mut page = store.latest_conversation_messages(id, before, limit + 1).await?;
    let more = page.len() > limit as usize;
    if more {
        page.remove(0);
    }
    let earlier = more.then(|| page.first().map(|m| m.seq)).flatten();
    Ok((page, earlier))
}

/// Messages on one conversation page; older ones are a link away.
const MESSAGES_PER_PAGE: u32 = 200;

async fn conversation(
    State(state): State<AppState>,
    mut signed: Signed,
    Path(id): Path<String>,
    Query(query): Query<ConversationQuery>,
) -> Result<Response, ApiError> {
    let id = conversation_id(&id)?;
    // Seeing the conversation is reading what it notified.
    if signed.unread > 0 {
        let read = state.engine.notifications().mark_notifications_read(signed.agent.id, Some(id), state.engine.now()).await?;
        signed.unread = signed.unread.saturating_sub(u32::try_from(read).unwrap_or(u32::MAX));
    }
    let done = query.done.as_deref().and_then(views::action_done);
    let shown = match query.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
        Some(q) => MessagesShown::Matching(q.to_string()),
        None => MessagesShown::Before(query.before),
    };
    render_conversation(&state, &signed, id, Draft::None, done, shown).await
}

/// Which of a conversation's messages its page shows.
enum MessagesShown {
    /// The page before this seq (`None`: the newest).
    Before(Option<i64>),
    /// Those with these words.
    Matching(String),
}

/// What the reply box is prefilled with.
enum Draft {
    None,
    Text(String),
    Failed(String),
}

async fn render_conversation(
    state: &AppState,
    signed: &Signed,
    id: ConversationId,
    draft: Draft,
    done: Option<views::ActionDone>,
    shown: MessagesShown,
) -> Result<Response, ApiError> {
    let accounts = state.engine.accounts();
    let conversations = state.engine.conversations();
    let Some(c) = conversations.conversation(id).await?.filter(|c| may_read(state, &signed.agent, c)) else {
        return Ok(error_page(state, ApiError::new(StatusCode::NOT_FOUND, "not_found", "No such conversation."), "/panel/conversations"));
    };
    let agents = accounts.list_agents().await?;
    let contact = conversations.contact(c.contact_id).await?.ok_or(ApiError::new(StatusCode::NOT_FOUND, "not_found", "No such customer."))?;
    let customer = contact.label();
    let (messages, earlier, search) = match &shown {
        MessagesShown::Before(before) => {
            let (messages, earlier) = messages_before(state.engine.conversations(), c.id, *before, MESSAGES_PER_PAGE).await?;
            // The newest page, opened or refreshed live: the customer's latest message is seen
            // (a failure only loses that mark).
            let latest = messages.iter().rev().find(|m| m.sender == switchboard_models::Sender::Customer);
            if let (None, Some(latest)) = (before, latest)
                && let Err(error) = state.engine.agent_saw(&c, &signed.agent, latest.seq).await
            {
                tracing::warn!(%error, conversation = %c.id, "could not mark the conversation seen");
            }
            (messages, earlier, None)
        }
        MessagesShown::Matching(q) => {
            let (messages, count) = conversation_matches(state.engine.conversations(), c.id, q, MESSAGES_PER_PAGE as usize).await?;
            let label = match count {
                0 => format!("No message here has “{q}”."),
                1 => format!("1 message has “{q}”."),
                n if n > messages.len() => format!("{} messages have “{q}”; the newest {} are shown.", views::count(n as u64), messages.len()),
                n => format!("{} messages have “{q}”.", views::count(n as u64)),
            };
            (messages, None, Some(json!({"q": q, "label": label})))
        }
    };
    let undelivered = messages_failed(&messages);
    let (open, capacity) = state.engine.load_of(&signed.agent).await?;
    // The person's conversations on every channel they were joined on.
    let others: Vec<_> = state.engine.identities().person_conversations(c.contact_id).await?.into_iter().filter(|s| may_read(state, &signed.agent, &s.conversation)).collect();
    let canned = visible_canned(accounts.canned_responses().await?, &signed.agent);
    let escalations = conversations.escalations_of(c.id).await?;
    let filter = switchboard_core::ports::DocumentFilter { conversation: Some(c.id), limit: 50, ..Default::default() };
    let documents = state.engine.documents().documents(&filter).await?;
    let ratings = state.engine.ratings().ratings_of(c.id).await?;
    let data = json!({
        "c": {
            "id": c.id.to_string(),
            "status": c.status.as_str(),
            "status_label": views::status_label(c.status),
            "priority": c.priority.map(|p| p.as_str()),
            "priority_class": views::priority_class(c.priority),
            "category": c.category.map(|v| v.as_str()),
            "channel": c.channel.as_str(),
            "customer": customer,
            "handler_label": views::handler_label(c.handler, &agents),
            "sla": views::sla(&c, state.engine.now()).map(|(text, class)| json!({"text": text, "class": class})),
            "assigned_to_me": c.handler == switchboard_models::Handler::Agent(signed.agent.id),
            "in_queue": c.handler == switchboard_models::Handler::Queue,
            "version": c.updated_at.timestamp_millis().to_string(),
            "closed": c.status.is_final(),
            "escalation": c.escalation.as_ref().map(|e| json!({"reason": e.reason.describe(), "summary": e.summary, "at": views::time(&e.at)})),
            "undelivered": undelivered,
            "undelivered_label": views::undelivered_label(undelivered),
            "email": contact.email,
            "contact_id": contact.id.to_string(),
            "unreachable": contact.unreachable_since.map(|since| json!({
                "since": views::time(&since),
                "reason": contact.unreachable_reason.clone().unwrap_or_else(|| "The channel refused our messages.".into()),
            })),
        },
        "messages": messages.iter().map(|m| views::message(m, &c, &customer, &agents)).collect::<Vec<_>>(),
        "escalations": views::escalations(&escalations),
        "documents": documents.iter().map(|d| documents::document_view(d, &state.engine.document_types(), state.engine.now())).collect::<Vec<_>>(),
        "back": "conversation",
        "ratings": ratings.iter().map(|r| views::rating(r, &agents)).collect::<Vec<_>>(),
        "earlier": earlier,
        "paged_back": !matches!(shown, MessagesShown::Before(None)),
        "search": search,
        "others": others.iter().filter(|o| o.conversation.id != c.id).map(|o| json!({
            "id": o.conversation.id.to_string(),
            "status_label": views::status_label(o.conversation.status),
            "channel": (o.conversation.channel != c.channel).then(|| views::channel_label(o.conversation.channel)),
            "updated_at": views::time(&o.last_activity),
            "last_text": o.last_text.clone().unwrap_or_default(),
        })).collect::<Vec<_>>(),
        "canned": canned.iter().map(|c| json!({"title": c.title, "body": c.body})).collect::<Vec<_>>(),
        "agents": views::all_options(&agents)["agents"],
        "options": views::all_options(&agents),
        "ai_drafts": state.assistant.is_some(),
        "max_upload": switchboard_core::attachments::size_words(state.engine.max_upload_bytes()),
        "draft": match &draft { Draft::Text(text) => text.as_str(), _ => "" },
        "draft_error": match &draft { Draft::Failed(why) => why.as_str(), _ => "" },
        "flash": done.map(|d| json!({"kind": "ok", "text": d.confirmation})),
        "over_capacity": switchboard_core::assignment::over_capacity_warning(open, capacity),
        "focus": match (&draft, done) {
            (Draft::Text(_) | Draft::Failed(_), _) => "reply-text",
            (_, Some(d)) => d.focus,
            _ => "",
        },
    });
    let title = format!("{customer} · {}", views::status_label(c.status));
    Ok(state.views.render("conversation", &page(signed, "conversations", &title, data))?.into_response())
}

/// Replies in `messages` that failed for good.
fn messages_failed(messages: &[switchboard_models::Message]) -> u32 {
    messages.iter().filter(|m| m.delivery.as_ref().is_some_and(|d| d.state == DeliveryState::Failed)).count() as u32
}

async fn attachment(State(state): State<AppState>, signed: Signed, Path((id, key)): Path<(String, String)>) -> Result<Response, ApiError> {
    let conversations = state.engine.conversations();
    let id = conversation_id(&id)?;
    if !conversations.conversation(id).await?.is_some_and(|c| may_read(&state, &signed.agent, &c)) {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", "No such file in this conversation."));
    }
    let message = conversations.message_with_attachment(id, &key).await?;
    let found = message.as_ref().and_then(|m| m.attachments.iter().find(|a| a.key == key));
    let Some(file) = found else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", "No such file in this conversation."));
    };
    let bytes = state.engine.attachment_bytes(file).await?;
    let disposition = if file.is_image() { "inline" } else { "attachment" };
    let name: String = file.file_name.chars().filter(|c| c.is_ascii_graphic() && *c != '"' || *c == ' ').collect();
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(&file.content_type).unwrap_or(HeaderValue::from_static("application/octet-stream")));
    headers.insert(header::CONTENT_DISPOSITION, HeaderValue::from_str(&format!("{disposition}; filename=\"{name}\"")).unwrap_or(HeaderValue::from_static("attachment")));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'; sandbox"));
    Ok(response)
}

#[derive(Deserialize)]
struct ActionForm {
    csrf: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    priority: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    agent_id: String,
    /// The reply to send again (retry).
    #[serde(default)]
    seq: String,
    #[serde(default)]
    version: String,
}

/// What a conversation action does; shared by the panel and the API.
pub(crate) async fn apply_action(
    state: &AppState,
    actor: &Agent,
    id: ConversationId,
    action: &str,
    text: String,
    value: &str,
    version: Option<i64>,
) -> Result<(), ApiError> {
    let engine = &state.engine;
    let bad = |what: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_value", what);
    let change = match action {
        "reply" => {
            engine.agent_reply(id, actor.id, text, Vec::new()).await?;
            return Ok(());
        }
        "note" => {
            engine.add_note(id, actor.id, text).await?;
            return Ok(());
        }
        "retry" => {
            let seq = value.parse().map_err(|_| bad(format!("`{value}` is not a message seq; send the seq of the reply to retry")))?;
            engine.retry_delivery(id, seq).await?;
            return Ok(());
        }
        "reopen" => {
            engine.reopen(id, actor.id).await?;
            return Ok(());
        }
        "take" => TicketChange::Take,
        "release" => TicketChange::Release,
        "handback" => TicketChange::HandBack,
        "status" => TicketChange::Status(value.parse().map_err(|e: switchboard_models::UnknownVariant| bad(e.to_string()))?),
        "priority" => TicketChange::Priority(value.parse().map_err(|e: switchboard_models::UnknownVariant| bad(e.to_string()))?),
        "category" => TicketChange::Category(value.parse().map_err(|e: switchboard_models::UnknownVariant| bad(e.to_string()))?),
        "assign" => TicketChange::Assign(AgentId::parse(value).map_err(|_| bad(format!("`{value}` is not an agent id")))?),
        other => return Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("No action `{other}`."))),
    };
    engine.change_ticket(id, actor.id, change, version).await?;
    Ok(())
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

/// The agent is writing a reply (the page says so every few seconds while they type): the
/// customer's widget shows "Dana is typing…".
async fn typing(State(state): State<AppState>, signed: Signed, Path(id): Path<String>, Form(form): Form<CsrfForm>) -> Result<StatusCode, ApiError> {
    signed.check_csrf(&form.csrf)?;
    state.engine.agent_typing(conversation_id(&id)?, signed.agent.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The reply form: its text and, sent as a multipart form, one file; a urlencoded form (the
/// form without a file, or a script) sends text only.
async fn reply(State(state): State<AppState>, signed: Signed, Path(id): Path<String>, request: axum::extract::Request) -> Result<Response, ApiError> {
    let id = conversation_id(&id)?;
    let back = format!("/panel/conversations/{id}");
    let multipart = request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("multipart/"));
    let (csrf, text, file) = if multipart {
        let form = <axum::extract::Multipart as axum::extract::FromRequest<AppState>>::from_request(request, &state).await.map_err(|e| {
            ApiError::new(StatusCode::BAD_REQUEST, "malformed_request", format!("Expected a form with csrf, text and a file: {}", e.body_text()))
        })?;
        let mut fields = files::read_form(form, &["csrf", "text"], state.engine.max_upload_bytes()).await?;
        (fields.take("csrf"), fields.take("text"), fields.file)
    } else {
        let Form(form) = <Form<ActionForm> as axum::extract::FromRequest<AppState>>::from_request(request, &state)
            .await
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "malformed_request", e.body_text()))?;
        (form.csrf, form.text, None)
    };
    signed.check_csrf(&csrf)?;
    match files::reply_with_file(&state, &signed.agent, id, text, file).await {
        Ok(_) => Ok(Redirect::to(&format!("{back}?done=reply")).into_response()),
        Err(error) => Ok(error_page(&state, error, &back)),
    }
}

async fn act(State(state): State<AppState>, signed: Signed, Path((id, action)): Path<(String, String)>, Form(form): Form<ActionForm>) -> Result<Response, ApiError> {
    signed.check_csrf(&form.csrf)?;
    let id = conversation_id(&id)?;
    if action == "draft" {
        let draft = match draft_reply(&state, &signed.agent, id).await {
            Ok(text) => Draft::Text(text),
            Err(error) => Draft::Failed(error.message),
        };
        return render_conversation(&state, &signed, id, draft, None, MessagesShown::Before(None)).await;
    }
    let value = match action.as_str() {
        "status" => form.status.as_str(),
        "priority" => form.priority.as_str(),
        "category" => form.category.as_str(),
        "assign" => form.agent_id.as_str(),
        "retry" => form.seq.as_str(),
        _ => "",
    };
    let back = format!("/panel/conversations/{id}");
    let version = match form.version.trim() {
        "" => None,
        given => match given.parse() {
            Ok(version) => Some(version),
            Err(_) => {
                let why = "The form's version is not a number; reload the conversation and try again.";
                return Ok(error_page(&state, ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_version", why), &back));
            }
        },
    };
    match apply_action(&state, &signed.agent, id, &action, form.text, value, version).await {
        Ok(()) => Ok(Redirect::to(&format!("{back}?done={action}")).into_response()),
        Err(error) => Ok(error_page(&state, error, &back)),
    }
}

/// The canned responses `agent` may use: the shared ones and their own.
pub(crate) fn visible_canned(all: Vec<CannedResponse>, agent: &Agent) -> Vec<CannedResponse> {
    all.into_iter().filter(|c| c.shared || c.created_by == Some(agent.id)).collect()
}

/// Shared responses are the admins' to manage; personal ones their owner's.
pub(crate) fn may_manage(canned: &CannedResponse, agent: &Agent) -> bool {
    if canned.shared { agent.role == Role::Admin } else { canned.created_by == Some(agent.id) }
}

async fn canned(State(state): State<AppState>, signed: Signed) -> Result<Html<String>, ApiError> {
    let canned = visible_canned(state.engine.accounts().canned_responses().await?, &signed.agent);
    let data = json!({
        "canned": canned.iter().map(|c| json!({
            "id": c.id.to_string(), "title": c.title, "body": c.body, "shared": c.shared,
            "manageable": may_manage(c, &signed.agent),
        })).collect::<Vec<_>>(),
        "limits": {"title": limits::CANNED_TITLE, "body": limits::CANNED_BODY},
    });
    state.views.render("canned", &page(&signed, "canned", "Canned responses", data))
}

#[derive(Deserialize)]
struct CannedForm {
    csrf: String,
    title: String,
    body: String,
    /// "true" asks for a shared response (admins only).
    #[serde(default)]
    shared: String,
}

async fn create_canned(State(state): State<AppState>, signed: Signed, Form(form): Form<CannedForm>) -> Result<Response, ApiError> {
    signed.check_csrf(&form.csrf)?;
    match add_canned(&state, &signed.agent, &form.title, form.body, form.shared == "true").await {
        Ok(_) => Ok(Redirect::to("/panel/canned").into_response()),
        Err(error) => Ok(error_page(&state, error, "/panel/canned")),
    }
}

/// Saves a new canned response of `agent`'s (`shared`: everyone's, admins only), audited.
pub(crate) async fn add_canned(state: &AppState, agent: &Agent, title: &str, body: String, shared: bool) -> Result<CannedResponse, ApiError> {
    limits::check(&[("title", title, limits::CANNED_TITLE), ("text", &body, limits::CANNED_BODY)])?;
    if title.trim().is_empty() || body.trim().is_empty() {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", "A canned response needs a title and a text."));
    }
    if shared && agent.role != Role::Admin {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "Only admins add shared responses; save it as your own."));
    }
    let canned = CannedResponse {
        id: uuid::Uuid::now_v7(),
        title: title.trim().to_string(),
        body,
        created_by: Some(agent.id),
        created_at: state.engine.now(),
        shared,
    };
    let audit = vec![canned_audit(state, agent, None, Some(&canned))];
    state.engine.accounts().commit_admin(AdminWrite { canned: Some(CannedChange::Save(canned.clone())), audit, ..AdminWrite::default() }).await?;
    Ok(canned)
}

async fn delete_canned(State(state): State<AppState>, signed: Signed, Path(id): Path<String>, Form(form): Form<CsrfOnly>) -> Result<Response, ApiError> {
    signed.check_csrf(&form.csrf)?;
    match remove_canned(&state, &signed.agent, &id).await {
        Ok(()) => Ok(Redirect::to("/panel/canned").into_response()),
        Err(error) if error.status == StatusCode::FORBIDDEN => Ok(error_page(&state, error, "/panel/canned")),
        Err(error) => Err(error),
    }
}

/// Deletes a canned response `agent` may manage, audited.
pub(crate) async fn remove_canned(state: &AppState, agent: &Agent, id: &str) -> Result<(), ApiError> {
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "not_found", "No such canned response.");
    let id = uuid::Uuid::parse_str(id).map_err(|_| not_found())?;
    let accounts = state.engine.accounts();
    let canned = visible_canned(accounts.canned_responses().await?, agent).into_iter().find(|c| c.id == id).ok_or_else(not_found)?;
    if !may_manage(&canned, agent) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "This is a shared response; only admins change or delete it."));
    }
    let audit = vec![canned_audit(state, agent, Some(&canned), None)];
    accounts.commit_admin(AdminWrite { canned: Some(CannedChange::Delete(id)), audit, ..AdminWrite::default() }).await?;
    Ok(())
}

/// A canned response created (no `before`) or deleted (no `after`), for the audit log.
fn canned_audit(state: &AppState, actor: &Agent, before: Option<&CannedResponse>, after: Option<&CannedResponse>) -> switchboard_models::AuditEntry {
    let line = |c: &CannedResponse| format!("{} \"{}\"", if c.shared { "shared" } else { "personal" }, c.title);
    account_audit(state, actor, AuditAction::CannedResponse, before.map(line), after.map(line))
}

async fn tokens_page(state: &AppState, signed: &Signed, new_token: Option<String>) -> Result<Html<String>, ApiError> {
    let tokens = state.engine.accounts().api_tokens(signed.agent.id).await?;
    let data = json!({
        "tokens": tokens.iter().map(|t| json!({"id": t.id.to_string(), "name": t.name, "created_at": views::time(&t.created_at)})).collect::<Vec<_>>(),
        "new_token": new_token,
    });
    state.views.render("tokens", &page(signed, "tokens", "API tokens", data))
}

async fn tokens(State(state): State<AppState>, signed: Signed) -> Result<Html<String>, ApiError> {
    tokens_page(&state, &signed, None).await
}

#[derive(Deserialize)]
struct TokenForm {
    csrf: String,
    name: String,
}

async fn create_token(State(state): State<AppState>, signed: Signed, Form(form): Form<TokenForm>) -> Result<Html<String>, ApiError> {
    signed.check_csrf(&form.csrf)?;
    limits::check(&[("name", &form.name, limits::TOKEN_NAME)])?;
    let secret = random_token();
    let token = ApiToken {
        id: uuid::Uuid::now_v7(),
        agent: signed.agent.id,
        name: Some(form.name.trim().to_string()).filter(|n| !n.is_empty()).unwrap_or_else(|| "API token".into()),
        created_at: state.engine.now(),
    };
    let audit = account_audit(&state, &signed.agent, AuditAction::ApiToken, None, Some(format!("token \"{}\"", token.name)));
    let change = ApiTokenChange::Create { token_hash: hash_token(&secret), token };
    state.engine.accounts().commit_admin(AdminWrite { api_token: Some(change), audit: vec![audit], ..AdminWrite::default() }).await?;
    // Shown once: only its hash is kept.
    tokens_page(&state, &signed, Some(secret)).await
}

async fn delete_token(State(state): State<AppState>, signed: Signed, Path(id): Path<String>, Form(form): Form<CsrfOnly>) -> Result<Response, ApiError> {
    signed.check_csrf(&form.csrf)?;
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "not_found", "No such token.");
    let id = uuid::Uuid::parse_str(&id).map_err(|_| not_found())?;
    let accounts = state.engine.accounts();
    let token = accounts.api_tokens(signed.agent.id).await?.into_iter().find(|t| t.id == id).ok_or_else(not_found)?;
    let audit = account_audit(&state, &signed.agent, AuditAction::ApiToken, Some(format!("token \"{}\"", token.name)), None);
    let change = ApiTokenChange::Revoke { agent: signed.agent.id, id };
    accounts.commit_admin(AdminWrite { api_token: Some(change), audit: vec![audit], ..AdminWrite::default() }).await?;
    Ok(Redirect::to("/panel/account/tokens").into_response())
}

/// An account's own action (sign-out, API tokens), for the audit log.
fn account_audit(state: &AppState, agent: &Agent, action: AuditAction, before: Option<String>, after: Option<String>) -> switchboard_models::AuditEntry {
    switchboard_models::AuditEntry { at: state.engine.now(), actor: Some(agent.id), action, conversation: None, subject_agent: None, before, after }
}

/// The agents page shows each agent's ratings over this many days.
pub(crate) const RATINGS_DAYS: i64 = 30;

async fn agents(State(state): State<AppState>, SignedAdmin(signed): SignedAdmin) -> Result<Html<String>, ApiError> {
    let agents = state.engine.accounts().list_agents().await?;
    let signed_in = state.engine.accounts().last_sign_ins().await?;
    let rated = state.engine.ratings().agent_ratings(state.engine.now() - chrono::Duration::days(RATINGS_DAYS)).await?;
    let two_factor = state.engine.accounts().two_factor_agents().await?;
    let data = json!({"ratings_days": RATINGS_DAYS, "agents": agents.iter().map(|a| json!({
        "two_factor": two_factor.contains(&a.id),
        "id": a.id.to_string(), "name": a.name, "email": a.email, "role": a.role.as_str(),
        "presence": a.presence.as_str(), "capacity": a.capacity, "active": a.active, "skills": a.skills.join(", "),
        "rating": rated.iter().find(|r| r.agent_id == a.id).map(|r| format!("{:.1} of 5 ({} rated)", r.average, r.count)),
        "last_sign_in": signed_in.iter().find(|(id, _)| *id == a.id).map(|(_, at)| views::time(at)),
        "is_admin": a.role == Role::Admin,
        "is_me": a.id == signed.agent.id,
    })).collect::<Vec<_>>()});
    state.views.render("agents", &page(&signed, "agents", "Agents", data))
}

#[derive(Deserialize)]
struct NewAgentForm {
    csrf: String,
    name: String,
    email: String,
    password: String,
    role: String,
    capacity: u32,
}

async fn create_agent(State(state): State<AppState>, SignedAdmin(signed): SignedAdmin, Form(form): Form<NewAgentForm>) -> Result<Response, ApiError> {
    signed.check_csrf(&form.csrf)?;
    let fields = [("name", form.name.as_str(), limits::AGENT_NAME), ("email", &form.email, limits::EMAIL), ("password", &form.password, limits::PASSWORD)];
    if let Err(error) = limits::check(&fields) {
        return Ok(error_page(&state, error, "/panel/admin/agents"));
    }
    let role: Role = match form.role.parse() {
        Ok(role) => role,
        Err(error) => return Ok(error_page(&state, ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", format!("{error}")), "/panel/admin/agents")),
    };
    let created = crate::accounts::create_account_with_capacity(
        state.engine.accounts(),
        &form.email,
        &form.name,
        role,
        &form.password,
        Some(signed.agent.id),
        form.capacity,
        state.account_rules.min_password_chars(),
    )
    .await;
    match created {
        Ok(_) => Ok(Redirect::to("/panel/admin/agents").into_response()),
        Err(reason) => Ok(error_page(&state, ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", reason.to_string()), "/panel/admin/agents")),
    }
}

#[derive(Deserialize)]
struct UpdateAgentForm {
    csrf: String,
    capacity: u32,
    active: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    skills: Option<String>,
}

async fn update_agent(State(state): State<AppState>, SignedAdmin(signed): SignedAdmin, Path(id): Path<String>, Form(form): Form<UpdateAgentForm>) -> Result<Response, ApiError> {
    signed.check_csrf(&form.csrf)?;
    let id = AgentId::parse(&id).map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "not_found", "No such agent."))?;
    if state.engine.accounts().agent(id).await?.is_none() {
        return Ok(error_page(&state, ApiError::new(StatusCode::NOT_FOUND, "not_found", "No such agent."), "/panel/admin/agents"));
    }
    if id == signed.agent.id && form.active != "true" {
        return Ok(error_page(&state, ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", "You cannot deactivate your own account."), "/panel/admin/agents"));
    }
    let role = match form.role.as_deref().map(str::parse::<Role>).transpose() {
        Ok(role) => role,
        Err(error) => return Ok(error_page(&state, ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", error.to_string()), "/panel/admin/agents")),
    };
    let skills = match form.skills.as_deref().map(switchboard_models::skills_from).transpose() {
        Ok(skills) => skills,
        Err(error) => return Ok(error_page(&state, ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", format!("{error}.")), "/panel/admin/agents")),
    };
    let edit = switchboard_core::AgentEdit { name: form.name, email: form.email, role, capacity: Some(form.capacity), active: Some(form.active == "true"), skills };
    match edit_account(&state, &signed.agent, id, edit).await {
        Ok(_) => Ok(Redirect::to("/panel/admin/agents").into_response()),
        Err(error) => Ok(error_page(&state, error, "/panel/admin/agents")),
    }
}

/// An admin's change of an account: a name and an address checked as at creation.
pub(crate) async fn edit_account(state: &AppState, admin: &Agent, id: AgentId, mut edit: switchboard_core::AgentEdit) -> Result<Agent, ApiError> {
    let invalid = |why: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", why);
    if let Some(name) = edit.name.take() {
        limits::check(&[("name", &name, limits::AGENT_NAME)])?;
        let name = name.trim().to_string();
        if name.is_empty() {
            return Err(invalid("A name cannot be blank.".into()));
        }
        edit.name = Some(name);
    }
    if let Some(email) = edit.email.take() {
        limits::check(&[("email", &email, limits::EMAIL)])?;
        let email = email.trim().to_lowercase();
        crate::accounts::check_email(&email).map_err(|e| invalid(format!("{e}.")))?;
        edit.email = Some(email);
    }
    Ok(state.engine.edit_agent(admin.id, id, edit).await?)
}

/// The audit log's query: `before` (an entry number: the page after the one that ended there)
/// and the filters.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct AuditQuery {
    before: Option<i64>,
    actor: String,
    action: String,
    from: String,
    to: String,
}

impl AuditQuery {
    fn filter_params(&self) -> AuditFilterParams {
        AuditFilterParams { actor: self.actor.clone(), action: self.action.clone(), from: self.from.clone(), to: self.to.clone() }
    }
}

/// The audit log's filters as a query takes them: an agent's id, an action, and the first and
/// last day (YYYY-MM-DD, UTC); empty means any.
#[derive(Default, Clone)]
pub(crate) struct AuditFilterParams {
    pub actor: String,
    pub action: String,
    pub from: String,
    pub to: String,
}

impl AuditFilterParams {
    pub(crate) fn filter(&self) -> Result<switchboard_core::ports::AuditFilter, ApiError> {
        let invalid = |why: String| ApiError::new(StatusCode::BAD_REQUEST, "invalid_filter", why);
        let day = |field: &str, text: &str| -> Result<Option<chrono::NaiveDate>, ApiError> {
            match text.trim() {
                "" => Ok(None),
                text => chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").map(Some).map_err(|_| invalid(format!("{field} `{}` must be a date as YYYY-MM-DD", limits::shown(text, 40)))),
            }
        };
        let midnight = |day: chrono::NaiveDate| day.and_hms_opt(0, 0, 0).expect("midnight").and_utc();
        Ok(switchboard_core::ports::AuditFilter {
            actor: match self.actor.trim() {
                "" => None,
                id => Some(AgentId::parse(id).map_err(|_| invalid(format!("actor `{}` is not an agent id", limits::shown(id, 40))))?),
            },
            action: parse_filter(self.action.trim())?,
            from: day("from", &self.from)?.map(midnight),
            to: day("to", &self.to)?.map(|d| midnight(d.succ_opt().expect("a next day"))),
        })
    }

    /// The filters as a query string (for paging links and the CSV file).
    fn query(&self) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (key, value) in [("actor", &self.actor), ("action", &self.action), ("from", &self.from), ("to", &self.to)] {
            if !value.trim().is_empty() {
                query.append_pair(key, value.trim());
            }
        }
        query.finish()
    }
}

const AUDIT_PER_PAGE: u32 = 100;
/// Most entries one CSV file holds.
const AUDIT_CSV_ROWS: usize = 100_000;

fn audit_query(query: Result<Query<AuditQuery>, QueryRejection>) -> Result<AuditQuery, ApiError> {
    query.map(|Query(q)| q).map_err(|rejection| {
        let why = rejection.body_text();
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", format!("{}. The audit log takes before, actor, action, from and to.", why.trim_end_matches('.')))
    })
}

async fn audit(
    State(state): State<AppState>,
    SignedAdmin(signed): SignedAdmin,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Html<String>, ApiError> {
    let query = audit_query(query)?;
    let params = query.filter_params();
    let filter = params.filter()?;
    let accounts = state.engine.accounts();
    let agents = accounts.list_agents().await?;
    let name = |id: Option<AgentId>| id.map(|id| agents.iter().find(|a| a.id == id).map(|a| a.name.clone()).unwrap_or_else(|| id.to_string()));
    let mut numbered = accounts.audit_search(&filter, query.before, AUDIT_PER_PAGE + 1).await?;
    let more = numbered.len() > AUDIT_PER_PAGE as usize;
    numbered.truncate(AUDIT_PER_PAGE as usize);
    let filters = params.query();
    let and_filters = if filters.is_empty() { String::new() } else { format!("&{filters}") };
    let older = more.then(|| numbered.last().map(|(number, _)| format!("/panel/admin/audit?before={number}{and_filters}"))).flatten();
    let filtered = filter != switchboard_core::ports::AuditFilter::default();
    // Entries are numbered in order and never deleted, so the newest number is the total (an
    // entry whose transaction PostgreSQL rolled back leaves its number unused: at most a few).
    let newest = match query.before {
        None => numbered.first().map(|(number, _)| *number),
        Some(_) => accounts.audit_page(None, 1).await?.first().map(|(number, _)| *number),
    };
    let shown = match (numbered.first(), numbered.last(), newest, filtered) {
        (Some((first, _)), Some((last, _)), Some(newest), false) => {
            Some(format!("Entries {} to {} of {}", views::count(*first as u64), views::count(*last as u64), views::count(newest as u64)))
        }
        (Some(_), Some(_), _, true) => Some(format!("{} matching entries{}", numbered.len(), if more { " on this page" } else { "" })),
        _ => None,
    };
    let option = |value: &str, label: &str, selected: &str| json!({"value": value, "label": label, "selected": value == selected});
    let entries: Vec<&AuditEntry> = numbered.iter().map(|(_, entry)| entry).collect();
    let data = json!({
        "older_url": older,
        "paged": query.before.is_some(),
        "first_url": format!("/panel/admin/audit{}", if filters.is_empty() { String::new() } else { format!("?{filters}") }),
        "csv_url": format!("/panel/admin/audit.csv?{filters}"),
        "filtered": filtered,
        "shown": shown,
        "actors": agents.iter().map(|a| option(&a.id.to_string(), &a.name, params.actor.trim())).collect::<Vec<_>>(),
        "actions": AuditAction::ALL.iter().map(|a| option(a.as_str(), &views::title_case(&a.as_str().replace('_', " ")), params.action.trim())).collect::<Vec<_>>(),
        "from": params.from.trim(),
        "to": params.to.trim(),
        "entries": entries.iter().map(|e| json!({
            "at": views::time(&e.at),
            "actor": name(e.actor).unwrap_or_else(|| "Switchboard".into()),
            "action": e.action.as_str(),
            "conversation": e.conversation.map(|c| c.to_string()),
            "subject": name(e.subject_agent),
            "before": e.before, "after": e.after,
        })).collect::<Vec<_>>(),
    });
    state.views.render("audit", &page(&signed, "audit", "Audit log", data))
}

/// Every entry the filters select, newest first, as CSV.
async fn audit_csv(State(state): State<AppState>, SignedAdmin(_): SignedAdmin, query: Result<Query<AuditQuery>, QueryRejection>) -> Result<Response, ApiError> {
    let query = audit_query(query)?;
    let filter = query.filter_params().filter()?;
    let accounts = state.engine.accounts();
    let agents = accounts.list_agents().await?;
    let name = |id: Option<AgentId>| id.map(|id| agents.iter().find(|a| a.id == id).map(|a| a.name.clone()).unwrap_or_else(|| id.to_string())).unwrap_or_default();
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut before = query.before;
    while rows.len() < AUDIT_CSV_ROWS {
        let page = accounts.audit_search(&filter, before, 1000).await?;
        let Some((last, _)) = page.last() else { break };
        before = Some(*last);
        rows.extend(page.iter().map(|(number, e)| {
            vec![
                number.to_string(),
                e.at.to_rfc3339(),
                name(e.actor),
                e.action.as_str().to_string(),
                e.conversation.map(|c| c.to_string()).unwrap_or_default(),
                name(e.subject_agent),
                e.before.clone().unwrap_or_default(),
                e.after.clone().unwrap_or_default(),
            ]
        }));
    }
    let body = reports::csv(&["number", "at", "actor", "action", "conversation", "subject", "before", "after"], &rows);
    let disposition = "attachment; filename=\"switchboard-audit.csv\"".to_string();
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()), (header::CONTENT_DISPOSITION, disposition)], body).into_response())
}

const NOTIFICATIONS_PER_PAGE: u32 = 50;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NotificationsQuery {
    before: Option<i64>,
}

async fn notifications(
    State(state): State<AppState>,
    signed: Signed,
    query: Result<Query<NotificationsQuery>, QueryRejection>,
) -> Result<Html<String>, ApiError> {
    let Query(query) = query.map_err(|rejection| {
        let why = rejection.body_text();
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", format!("{}. Notifications take before (a notification number).", why.trim_end_matches('.')))
    })?;
    let mut shown = state.engine.notifications().notifications_of(signed.agent.id, query.before, NOTIFICATIONS_PER_PAGE + 1).await?;
    let more = shown.len() > NOTIFICATIONS_PER_PAGE as usize;
    shown.truncate(NOTIFICATIONS_PER_PAGE as usize);
    let older = more.then(|| shown.last().map(|n| format!("/panel/notifications?before={}", n.id))).flatten();
    let data = json!({"older_url": older, "notifications": shown.iter().map(|n| json!({
        "kind": n.kind.as_str(),
        "label": views::notification_label(n.kind),
        "text": n.text,
        "conversation": n.conversation_id.map(|c| c.to_string()),
        "at": views::time(&n.created_at),
        "iso": n.created_at.to_rfc3339(),
        "read": n.read_at.is_some(),
    })).collect::<Vec<_>>()});
    state.views.render("notifications", &page(&signed, "notifications", "Notifications", data))
}

async fn read_notifications(State(state): State<AppState>, signed: Signed, Form(form): Form<CsrfOnly>) -> Result<Response, ApiError> {
    signed.check_csrf(&form.csrf)?;
    state.engine.notifications().mark_notifications_read(signed.agent.id, None, state.engine.now()).await?;
    Ok(Redirect::to("/panel/notifications").into_response())
}

/// Gives each row the count of the signed-in agent's unread notifications about it.
async fn mark_unread(state: &AppState, signed: &Signed, mut rows: Vec<serde_json::Value>) -> Result<Vec<serde_json::Value>, ApiError> {
    if signed.unread == 0 || rows.is_empty() {
        return Ok(rows);
    }
    let ids: Vec<ConversationId> = rows.iter().filter_map(|row| ConversationId::parse(row["id"].as_str()?).ok()).collect();
    let unread = state.engine.notifications().unread_by_conversation(signed.agent.id, &ids).await?;
    for row in &mut rows {
        if let Some((_, count)) = unread.iter().find(|(id, _)| row["id"].as_str() == Some(id.to_string().as_str())) {
            row["unread"] = json!(count);
        }
    }
    Ok(rows)
}

/// What `/readyz` and `/metrics` say, for admins: whether the node takes traffic and why not,
/// the outbox's backlog, the queue and who is connected.
async fn system(State(state): State<AppState>, SignedAdmin(signed): SignedAdmin, Query(flash): Query<dead_letters::Flash>) -> Result<Html<String>, ApiError> {
    let mut data = system_data(&state, &signed).await?;
    if let Some(text) = flash.text() {
        data["flash"] = json!({"kind": "ok", "text": text});
    }
    state.views.render("system", &page(&signed, "system", "System", data))
}

/// The System page's figures, jobs and the inbound messages set aside.
async fn system_data(state: &AppState, signed: &Signed) -> Result<Value, ApiError> {
    let (backlog, oldest) = state.engine.outbox().outbox_backlog().await?;
    let queue = state.engine.queue().queue_view().await?;
    let now = state.engine.now();
    let when = |at: chrono::DateTime<chrono::Utc>| at.format("%Y-%m-%d %H:%M UTC").to_string();
    let jobs: Vec<serde_json::Value> = state
        .engine
        .jobs()
        .scheduled_jobs()
        .await?
        .into_iter()
        .map(|job| {
            let last = match (job.last_started_at, job.last_ok) {
                (None, _) => "never ran".to_string(),
                (Some(at), None) => format!("started {}, running or cut off", when(at)),
                (Some(at), Some(ok)) => format!("{} {}", if ok { "done" } else { "FAILED" }, when(at)),
            };
            json!({
                "name": job.name,
                "schedule": job.schedule,
                "next": when(job.next_run_at),
                "last": last,
                "failed": job.last_ok == Some(false),
                "outcome": job.last_outcome.unwrap_or_default(),
            })
        })
        .collect();
    let (status, problem) = match (state.closing.is_cancelled(), state.engine.storage_problem()) {
        (true, _) => ("stopping", Some("Switchboard is stopping.".to_string())),
        (false, Some((since, reason))) => ("unavailable", Some(auth::storage_problem_text(since, &reason))),
        (false, None) => ("ready", None),
    };
    let data = json!({
        "status": status,
        "problem": problem,
        "backlog": backlog,
        "oldest": oldest.map(|at| format!("{:.1} s", (now - at).num_milliseconds().max(0) as f64 / 1000.0)),
        "waiting": queue.waiting,
        "agents_online": queue.agents_online,
        "visitors_connected": state.visitors.connected_visitors(),
        "jobs": jobs,
        "connections": connection_rows(state).await?,
        "dead_letters": dead_letters::waiting_rows(state, &signed.agent).await?,
    });
    Ok(data)
}

/// The outside connections as the System page shows them: state, what it does or what failed,
/// which node, the last success and the last error.
async fn connection_rows(state: &AppState) -> Result<Vec<Value>, ApiError> {
    let now = chrono::Utc::now();
    let ago = |at: chrono::DateTime<chrono::Utc>| match (now - at).num_seconds().max(0) {
        seconds @ 0..120 => format!("{seconds} s ago"),
        seconds @ 120..7200 => format!("{} min ago", seconds / 60),
        _ => at.format("%Y-%m-%d %H:%M UTC").to_string(),
    };
    let label = |name: &str| match name {
        "telegram" => "Telegram",
        "discord" => "Discord gateway",
        "email" => "Email (IMAP)",
        "smtp" => "Email (SMTP)",
        "llm" => "Hosted LLM",
        other => other,
    }
    .to_string();
    Ok(state
        .engine
        .connection_states()
        .await?
        .into_iter()
        .map(|(name, reported)| match reported {
            None => json!({
                "name": name,
                "label": label(name),
                "state": "waiting",
                "trouble": false,
                "detail": "not reported by any node yet",
                "node": "",
                "last_ok": null,
                "last_error": null,
                "last_error_when": null,
            }),
            Some(reported) => json!({
                "name": name,
                "label": label(name),
                "state": reported.condition(now),
                "trouble": reported.condition(now) != "up",
                "detail": reported.detail,
                "node": reported.node,
                "last_ok": reported.last_ok_at.map(ago),
                "last_error": reported.last_error,
                "last_error_when": reported.last_error_at.map(ago),
            }),
        })
        .collect())
}

/// Live updates for open panel pages: which conversation changed.
async fn events(State(state): State<AppState>, signed: Signed) -> Sse<impl futures::Stream<Item = Result<Event, std::convert::Infallible>>> {
    let receiver = state.engine.bus().subscribe();
    let open = switchboard_core::OpenGauge::new("switchboard_panel_event_streams");
    let me = (signed.agent.id, signed.agent.role == Role::Admin);
    let stream = futures::stream::unfold((receiver, open), move |(mut receiver, open)| async move {
        loop {
            let mut failed_reply_of = None;
            let (kind, id, at) = match receiver.recv().await {
                // Only the agent it is for sees a notification (the admins, one for them all).
                Ok(DomainEvent::Notified { to, kind, conversation, text }) => {
                    if to.map_or(!me.1, |agent| agent != me.0) {
                        continue;
                    }
                    let data = json!({
                        "kind": "notification",
                        "notification": kind.as_str(),
                        "conversation_id": conversation.map(|c| c.to_string()),
                        "text": text,
                        "at": chrono::Utc::now().timestamp_millis(),
                    });
                    return Some((Ok(Event::default().data(data.to_string())), (receiver, open)));
                }
                Ok(DomainEvent::Typing { conversation, agent_name: None }) => ("typing", conversation, chrono::Utc::now()),
                // Agents' typing is the customer's cue.
                Ok(DomainEvent::Typing { agent_name: Some(_), .. }) => continue,
                // The customer's cue.
                Ok(DomainEvent::SeenByAgent { .. }) => continue,
                // The Bot page shows it when opened.
                Ok(DomainEvent::IntentsChanged { .. }) => continue,
                // The Settings page shows them when opened.
                Ok(DomainEvent::SettingsChanged) => continue,
                // The agents page shows who is online as it changes.
                Ok(DomainEvent::PresenceChanged { agent, presence }) => {
                    let data = json!({"kind": "presence", "agent_id": agent.to_string(), "presence": presence.as_str(), "at": chrono::Utc::now().timestamp_millis()});
                    return Some((Ok(Event::default().data(data.to_string())), (receiver, open)));
                }
                Ok(DomainEvent::MessageStored(m)) => ("message", m.conversation_id, m.created_at),
                Ok(DomainEvent::ConversationChanged(c)) => ("conversation", c.id, c.updated_at),
                Ok(DomainEvent::Assigned { conversation, .. }) => ("conversation", conversation.id, conversation.updated_at),
                Ok(DomainEvent::DeliveryChanged(m)) => {
                    if m.delivery.as_ref().is_some_and(|d| d.state == DeliveryState::Failed) {
                        failed_reply_of = Some(m.agent_id.map(|a| a.to_string()).unwrap_or_default());
                    }
                    ("delivery", m.conversation_id, chrono::Utc::now())
                }
                // Fell behind: tell the page to reload everything.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    ("reload", ConversationId(uuid::Uuid::nil()), chrono::Utc::now())
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            };
            // `at`: when it happened, so a page (or a benchmark) can tell how fresh the news is.
            let mut data = json!({"kind": kind, "conversation_id": id.to_string(), "at": at.timestamp_millis()});
            // A reply that failed for good: the page tells its writer (an empty id: the bot's).
            if let Some(writer) = failed_reply_of {
                data["failed_reply_of"] = json!(writer);
            }
            let data = data.to_string();
            return Some((Ok(Event::default().data(data)), (receiver, open)));
        }
    });
    Sse::new(stream.take_until(state.closing.clone().cancelled_owned())).keep_alive(KeepAlive::default())
}

/// An LLM-written reply for `agent` to edit; never sent by itself.
pub(crate) async fn draft_reply(state: &AppState, agent: &Agent, id: ConversationId) -> Result<String, ApiError> {
    let Some(assistant) = &state.assistant else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_llm",
            "AI drafts need a hosted LLM: set llm.base_url (and llm.api_key) in the configuration.",
        ));
    };
    let accounts = state.engine.accounts();
    let conversations = state.engine.conversations();
    let conversation = conversations
        .conversation(id)
        .await?
        .filter(|c| may_read(state, agent, c))
        .ok_or(ApiError::new(StatusCode::NOT_FOUND, "not_found", "No such conversation."))?;
    let agents = accounts.list_agents().await?;
    let messages = conversations.latest_conversation_messages(conversation.id, None, switchboard_core::TRANSCRIPT_MESSAGES).await?;
    let transcript = switchboard_core::transcript(&messages, &agents);
    if transcript.is_empty() {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "empty", "There is nothing to reply to yet."));
    }
    assistant.draft_reply(&transcript, &agent.name).await.map_err(|why| {
        ApiError::new(StatusCode::BAD_GATEWAY, "llm_failed", format!("No AI draft this time ({why}). Write the reply yourself or try again."))
    })
}
