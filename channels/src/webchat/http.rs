//! The HTTP fallback for widgets that cannot keep a socket: session, send, history, long-poll.

use super::frames::{ConversationView, MessageView};
use super::receive;
use super::WebChatState;
use crate::http_error::HttpError;
use axum::Json;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::net::SocketAddr;
use switchboard_models::Channel;

const HISTORY_PAGE: u32 = 500;

/// The visitor id of a genuine `Authorization: Bearer <token>`.
pub(super) fn visitor_from(state: &WebChatState, token: Option<&str>) -> Result<String, HttpError> {
    let token = token.ok_or_else(|| {
        HttpError::new(
            StatusCode::UNAUTHORIZED,
            "missing_token",
            "Send the visitor token from POST /webchat/session.",
        )
    })?;
    state.visitor_keys.verify(token).ok_or_else(|| {
        HttpError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "The visitor token is not valid here; start a new session with POST /webchat/session.",
        )
    })
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

#[derive(Serialize)]
pub struct SessionCreated {
    visitor_id: String,
    token: String,
    /// The embedding site's signed user was recognised: this visitor is that user everywhere.
    identified: bool,
}

/// `POST /webchat/session`'s optional body: the embedding site's signed-in user.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SessionBody {
    #[serde(default)]
    user: Option<SiteUser>,
}

/// A user as the embedding site vouches for them: `hash` is HMAC-SHA256 of `id` under the
/// shared `webchat.identity_secret`, computed on the site's server, as hex.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteUser {
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    email: Option<String>,
    hash: String,
}

pub async fn create_session(
    State(state): State<WebChatState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<SessionCreated>, HttpError> {
    // Sessions are cheap to mint, so limit them per address.
    let address = super::client_address(&state, peer.ip(), &headers);
    if let Err(wait) = state.address_limits.sessions.check(&address.to_string()).await {
        return Err(HttpError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("Too many new chats from this address; try again in {} ms.", wait.as_millis().max(1)),
        ));
    }
    let body: SessionBody = match body.iter().all(u8::is_ascii_whitespace) {
        true => SessionBody::default(),
        false => serde_json::from_slice(&body).map_err(|e| {
            HttpError::new(
                StatusCode::BAD_REQUEST,
                "malformed_request",
                format!("Expected no body, or JSON {{\"user\": {{\"id\": \"…\", \"name\": \"…\", \"email\": \"…\", \"hash\": \"…\"}}}}: {e}"),
            )
        })?,
    };
    // A user the site did not sign (or no secret to check with) stays an anonymous visitor.
    let signed = body.user.filter(|user| {
        let secret = state.settings.identity_secret.as_deref();
        let genuine = (1..=200).contains(&user.id.len()) && secret.is_some_and(|secret| super::visitor::site_signed(secret, &user.id, &user.hash));
        if !genuine {
            let shown: String = user.id.chars().take(64).collect();
            tracing::warn!(user = %shown, configured = secret.is_some(), "a widget identity without a genuine signature was ignored; the visitor stays anonymous");
        }
        genuine
    });
    let Some(user) = signed else {
        let (visitor_id, token) = state.visitor_keys.issue();
        return Ok(Json(SessionCreated { visitor_id, token, identified: false }));
    };
    let (visitor_id, token) = state.visitor_keys.issue_for_site_user(&user.id);
    let contact = state.engine.identify_contact(Channel::WebChat, &visitor_id, user.name, user.email).await?;
    // The site vouches for the address: the user's mail to us is theirs too. Failing that only
    // leaves the two unjoined.
    if let Err(error) = state.engine.join_site_users_address(&contact).await {
        tracing::warn!(%error, "could not join a signed site user with their email address");
    }
    Ok(Json(SessionCreated { visitor_id, token, identified: true }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    email: Option<String>,
}

/// The pre-chat form: the visitor's name and email, as they give them (unverified).
pub async fn profile(
    State(state): State<WebChatState>,
    headers: HeaderMap,
    body: Result<Json<ProfileBody>, axum::extract::rejection::JsonRejection>,
) -> Result<StatusCode, HttpError> {
    let visitor = visitor_from(&state, bearer(&headers))?;
    let Json(ProfileBody { name, email }) = body.map_err(|rejection| {
        HttpError::new(StatusCode::BAD_REQUEST, "malformed_request", format!("Expected JSON {{\"name\": \"…\", \"email\": \"…\"}}: {}", rejection.body_text()))
    })?;
    state.engine.identify_contact(Channel::WebChat, &visitor, name, email).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The widget's look and limits, and whether the team is there now (`hours`: null without
/// business hours; else `open`, `next_open` as customers read it, `next_open_at` as an RFC 3339
/// instant, and the weekly `schedule`).
pub async fn widget_config(State(state): State<WebChatState>) -> Json<Value> {
    let now = state.engine.now();
    let hours = state.engine.business_hours(Channel::WebChat).map(|hours| {
        let next_open_at = hours.next_open(now).map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        json!({ "open": hours.is_open(now), "next_open": hours.describe_next_open(now), "next_open_at": next_open_at, "schedule": hours.summary() })
    });
    let appearance = state.settings.appearance.get();
    Json(json!({
        "look": appearance.look,
        "max_message_chars": state.settings.max_message_chars,
        "hours": hours,
        "prechat_fields": appearance.prechat_fields,
    }))
}

#[derive(Deserialize)]
pub struct After {
    #[serde(default)]
    after: i64,
}

#[derive(Serialize)]
pub struct Page {
    pub(super) messages: Vec<MessageView>,
    pub(super) conversation: Option<ConversationView>,
}

/// Messages after a cursor and the current conversation, for one visitor.
pub(super) async fn page(state: &WebChatState, visitor: &str, after: i64) -> Result<Page, HttpError> {
    let store = state.engine.conversations();
    let Some(contact) = store.contact_by_external_id(Channel::WebChat, visitor).await? else {
        return Ok(Page { messages: Vec::new(), conversation: None });
    };
    let messages = store.contact_messages(contact.id, after, HISTORY_PAGE).await?;
    let conversation = match store.current_conversation(contact.id).await? {
        Some(current) => Some(ConversationView { seen_up_to: store.seen_by_agent(current.id).await?, ..ConversationView::from(&current) }),
        None => None,
    };
    Ok(Page { messages: MessageView::with_authors(state.engine.accounts(), &messages).await?, conversation })
}

pub async fn history(
    State(state): State<WebChatState>,
    headers: HeaderMap,
    Query(After { after }): Query<After>,
) -> Result<Json<Page>, HttpError> {
    let visitor = visitor_from(&state, bearer(&headers))?;
    Ok(Json(page(&state, &visitor, after).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendBody {
    client_id: String,
    text: String,
    /// The page's language, as on the socket.
    #[serde(default)]
    language: Option<String>,
}

#[derive(Serialize)]
pub struct Sent {
    message: MessageView,
    duplicate: bool,
    conversation: ConversationView,
}

pub async fn send(
    State(state): State<WebChatState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Json<SendBody>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Sent>), HttpError> {
    let visitor = visitor_from(&state, bearer(&headers))?;
    let Json(body) = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return HttpError::too_large(super::BODY_BYTES);
        }
        HttpError::new(
            StatusCode::BAD_REQUEST,
            "malformed_request",
            format!("Expected JSON {{\"client_id\": \"…\", \"text\": \"…\"}}: {}", rejection.body_text()),
        )
    })?;
    let address = super::client_address(&state, peer.ip(), &headers);
    let outcome = receive(&state, None, None, &visitor, address, &body.client_id, body.text, body.language, Vec::new()).await?;
    Ok(stored(&outcome))
}

/// The answer to a stored message: 201, or 200 when it was stored already.
fn stored(outcome: &super::Acknowledged) -> (StatusCode, Json<Sent>) {
    let status = if outcome.duplicate { StatusCode::OK } else { StatusCode::CREATED };
    let sent = Sent {
        message: MessageView::from(&outcome.message),
        duplicate: outcome.duplicate,
        conversation: ConversationView::from(&outcome.conversation),
    };
    (status, Json(sent))
}

/// A message with a file, as `multipart/form-data`: `client_id`, an optional `text` (a
/// caption) and one `file`. The file passes the same content checks and size limit as on
/// every channel; refused, nothing of it is kept.
pub async fn send_file(
    State(state): State<WebChatState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: Result<axum::extract::Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<(StatusCode, Json<Sent>), HttpError> {
    let visitor = visitor_from(&state, bearer(&headers))?;
    let malformed = |why: String| {
        HttpError::new(StatusCode::BAD_REQUEST, "malformed_request", format!("Expected a multipart form with client_id, text and one file: {why}"))
    };
    let too_large = || {
        let limit = switchboard_core::attachments::size_words(state.engine.max_upload_bytes());
        HttpError::new(StatusCode::PAYLOAD_TOO_LARGE, "file_too_large", format!("The file is larger than {limit}; nothing was saved. Send a smaller one."))
    };
    let mut form = form.map_err(|rejection| malformed(rejection.body_text()))?;
    // Counted before the file is read: a flood of uploads is refused before it fills memory.
    let address = super::client_address(&state, peer.ip(), &headers);
    let admitted = super::admit(&state, &visitor, address).await?;
    let (mut client_id, mut text, mut file) = (None, String::new(), None);
    loop {
        let field = match form.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(error) if error.status() == StatusCode::PAYLOAD_TOO_LARGE => return Err(too_large()),
            Err(error) => return Err(malformed(error.body_text())),
        };
        let name = field.name().unwrap_or_default().to_string();
        let file_name = field.file_name().map(str::to_string);
        let bytes = match field.bytes().await {
            Ok(bytes) => bytes,
            Err(error) if error.status() == StatusCode::PAYLOAD_TOO_LARGE => return Err(too_large()),
            Err(error) => return Err(malformed(error.body_text())),
        };
        let as_text = || String::from_utf8(bytes.to_vec()).map_err(|_| malformed(format!("`{name}` is not UTF-8 text")));
        match name.as_str() {
            "client_id" => client_id = Some(as_text()?),
            "text" => text = as_text()?,
            "file" if file.is_none() => file = Some((file_name.unwrap_or_else(|| "file".into()), bytes.to_vec())),
            "file" => return Err(malformed("send one file per message".into())),
            other => return Err(malformed(format!("unknown field `{other}`"))),
        }
    }
    let client_id = client_id.ok_or_else(|| malformed("client_id is missing".into()))?;
    let file = file.ok_or_else(|| malformed("the file is missing".into()))?;
    let outcome = receive(&state, Some(admitted), None, &visitor, address, &client_id, text, None, vec![file]).await?;
    Ok(stored(&outcome))
}

/// A file of the visitor's own conversations, for their token only; served so that no
/// browser sniffs or runs it (downloads, except images shown inline).
pub async fn file(
    State(state): State<WebChatState>,
    headers: HeaderMap,
    axum::extract::Path((conversation, key)): axum::extract::Path<(String, String)>,
) -> Result<axum::response::Response, HttpError> {
    use axum::response::IntoResponse;
    let visitor = visitor_from(&state, bearer(&headers))?;
    let not_found = || HttpError::new(StatusCode::NOT_FOUND, "not_found", "No such file in your conversations.");
    let conversation = switchboard_models::ConversationId::parse(&conversation).map_err(|_| not_found())?;
    let store = state.engine.conversations();
    let contact = store.contact_by_external_id(Channel::WebChat, &visitor).await?.ok_or_else(not_found)?;
    let owned = store.conversation(conversation).await?.is_some_and(|c| c.contact_id == contact.id);
    let message = if owned { store.message_with_attachment(conversation, &key).await? } else { None };
    let file = message.and_then(|m| m.attachments.into_iter().find(|a| a.key == key && !a.original)).ok_or_else(not_found)?;
    let bytes = state.engine.attachment_bytes(&file).await?;
    let disposition = if file.is_image() { "inline" } else { "attachment" };
    let name: String = file.file_name.chars().filter(|c| c.is_ascii_graphic() && *c != '"' || *c == ' ').collect();
    let value = |text: &str| axum::http::HeaderValue::from_str(text).unwrap_or(axum::http::HeaderValue::from_static("application/octet-stream"));
    let mut response = bytes.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, value(&file.content_type));
    h.insert(header::CONTENT_DISPOSITION, axum::http::HeaderValue::from_str(&format!("{disposition}; filename=\"{name}\"")).unwrap_or(axum::http::HeaderValue::from_static("attachment")));
    h.insert("x-content-type-options", axum::http::HeaderValue::from_static("nosniff"));
    h.insert(header::CONTENT_SECURITY_POLICY, axum::http::HeaderValue::from_static("default-src 'none'; sandbox"));
    h.insert(header::CACHE_CONTROL, axum::http::HeaderValue::from_static("private, no-store"));
    Ok(response)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeenBody {
    seq: i64,
}

/// The HTTP fallback's `seen` frame: the customer saw the replies up to `seq`.
pub async fn seen(
    State(state): State<WebChatState>,
    headers: HeaderMap,
    body: Result<Json<SeenBody>, axum::extract::rejection::JsonRejection>,
) -> Result<StatusCode, HttpError> {
    let visitor = visitor_from(&state, bearer(&headers))?;
    let Json(SeenBody { seq }) = body.map_err(|rejection| {
        HttpError::new(StatusCode::BAD_REQUEST, "malformed_request", format!("Expected JSON {{\"seq\": 12}}: {}", rejection.body_text()))
    })?;
    super::socket::seen(&state, &visitor, seq).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A returning visitor sees this many of their latest requests.
const REQUESTS_LISTED: usize = 20;

/// Where one of the visitor's conversations stands, in the customer's words.
fn customer_state(c: &switchboard_models::Conversation) -> (&'static str, &'static str) {
    use switchboard_models::{Awaiting, Status};
    match (c.status, &c.awaiting) {
        (_, Some(Awaiting::Confirmation { .. })) | (Status::WaitingOnCustomer, _) => ("waiting_for_you", "Waiting for you"),
        (Status::Resolved | Status::Confirmed, _) => ("solved", "Solved"),
        (Status::Closed | Status::Rejected, _) => ("closed", "Closed"),
        _ => ("open", "Open"),
    }
}

/// The visitor's requests, newest first, with where each stands (open, waiting for them,
/// solved), so a returning visitor sees where things are.
pub async fn conversations(State(state): State<WebChatState>, headers: HeaderMap) -> Result<Json<Value>, HttpError> {
    let visitor = visitor_from(&state, bearer(&headers))?;
    let Some(contact) = state.engine.conversations().contact_by_external_id(Channel::WebChat, &visitor).await? else {
        return Ok(Json(json!({ "conversations": [] })));
    };
    let mut listed = state.engine.listings().contact_conversations(contact.id).await?;
    listed.truncate(REQUESTS_LISTED);
    let current = listed.iter().find(|s| !s.conversation.status.is_final()).map(|s| s.conversation.id);
    let mut requests = Vec::with_capacity(listed.len());
    for s in &listed {
        let (code, label) = customer_state(&s.conversation);
        // What the request was about: the customer's first words in it.
        let opening = state.engine.conversations().conversation_messages(s.conversation.id, 0, 5).await?;
        let first = opening.iter().find(|m| m.sender == switchboard_models::Sender::Customer).map(|m| m.text.as_str());
        let text: String = first.or(s.last_text.as_deref()).unwrap_or("").chars().take(140).collect();
        requests.push(json!({
            "id": s.conversation.id.to_string(),
            "state": code,
            "state_label": label,
            "text": text,
            "updated_at": s.last_activity.to_rfc3339(),
            "current": Some(s.conversation.id) == current,
        }));
    }
    Ok(Json(json!({ "conversations": requests })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedbackBody {
    score: u8,
    /// The conversation rated; the visitor's current one when absent.
    #[serde(default)]
    conversation_id: Option<uuid::Uuid>,
}

/// The widget's stars: the visitor rates the help they got. Taken only while the bot waits for
/// that visitor's rating; a late, repeated or someone else's conversation's rating is refused
/// with 409 and changes nothing.
pub async fn feedback(
    State(state): State<WebChatState>,
    headers: HeaderMap,
    body: Result<Json<FeedbackBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, HttpError> {
    let visitor = visitor_from(&state, bearer(&headers))?;
    let Json(FeedbackBody { score, conversation_id }) = body.map_err(|rejection| {
        HttpError::new(StatusCode::BAD_REQUEST, "malformed_request", format!("Expected JSON {{\"score\": 1 to 5}}: {}", rejection.body_text()))
    })?;
    if !(1..=5).contains(&score) {
        return Err(HttpError::new(StatusCode::BAD_REQUEST, "invalid_score", format!("A rating is 1 to 5, not {score}.")));
    }
    let not_awaited = || {
        HttpError::new(StatusCode::CONFLICT, "no_rating_awaited", "No rating is awaited for this conversation (rated already, or not resolved).")
    };
    let Some((contact, current)) = state.engine.conversations().contact_and_current_conversation(Channel::WebChat, &visitor).await? else {
        return Err(not_awaited());
    };
    let Some(conversation) = conversation_id.map(switchboard_models::ConversationId).or(current.map(|c| c.id)) else {
        return Err(not_awaited());
    };
    // Someone else's or a made-up conversation: the same answer as one not awaiting a rating.
    match state.engine.rate(conversation, contact.id, score).await {
        Ok(true) => {}
        Ok(false) | Err(switchboard_core::EngineError::NotFound(_)) => return Err(not_awaited()),
        Err(error) => return Err(error.into()),
    }
    Ok(Json(json!({ "rated": score })))
}

/// Long-poll: answers as soon as there are messages after `after`, or empty after a while.
pub async fn poll(
    State(state): State<WebChatState>,
    headers: HeaderMap,
    Query(After { after }): Query<After>,
) -> Result<Json<Page>, HttpError> {
    let visitor = visitor_from(&state, bearer(&headers))?;
    // Subscribe before reading, so nothing stored in between is missed.
    let mut subscription = state.hub.subscribe(&visitor);
    let deadline = tokio::time::Instant::now() + state.settings.long_poll;
    loop {
        let current = page(&state, &visitor, after).await?;
        if !current.messages.is_empty() {
            return Ok(Json(current));
        }
        tokio::select! {
            event = tokio::time::timeout_at(deadline, subscription.events.recv()) => match event {
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => return Ok(Json(current)),
            },
            // Stopping: answer now; the widget polls again (another node, or this one restarted).
            _ = state.closing.cancelled() => return Ok(Json(current)),
        }
    }
}
