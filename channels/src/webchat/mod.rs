//! Web-chat endpoints: the widget's WebSocket, its HTTP fallback (send, history, long-poll),
//! the widget script and the demo page.

mod frames;
mod http;
mod hub;
mod origin;
mod socket;
mod visitor;

use crate::http_error::HttpError;
use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse};
use axum::routing::{get, post};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use switchboard_core::ports::TokenBuckets;
use switchboard_core::{Engine, RateLimiter, TrustedProxies};
use switchboard_models::{Channel, Conversation, Inbound, Message};
use tokio_util::sync::CancellationToken;

pub use hub::{LiveEvent, Subscription, WebChatHub, WebChatOutbound, show_agents_cues, show_cue};
pub use origin::AllowedOrigins;
pub use visitor::{VisitorKeys, sign_site_user};

/// The largest request body the web-chat routes take (a message is far smaller).
pub const BODY_BYTES: usize = 1 << 20;

/// What the web-chat routes share; cheap to clone.
#[derive(Clone)]
pub struct WebChatState {
    pub engine: Arc<Engine>,
    pub hub: Arc<WebChatHub>,
    pub settings: Arc<WebChatSettings>,
    pub visitor_keys: Arc<VisitorKeys>,
    /// Messages per visitor.
    pub visitor_limiter: Arc<RateLimiter>,
    /// Sessions and messages per client address, whatever visitor ids it uses.
    pub address_limits: Arc<AddressLimits>,
    /// Whose forwarded client address to believe.
    pub trusted_proxies: Arc<TrustedProxies>,
    /// Cancelled when the server stops: sockets and long polls end so the stop need not wait.
    pub closing: CancellationToken,
}

/// Web-chat limits per client address, whatever visitor ids it uses.
pub struct AddressLimits {
    pub sessions: RateLimiter,
    pub messages: RateLimiter,
}

impl AddressLimits {
    /// Counted in `shared` buckets when several nodes share them.
    pub fn new(sessions_per_minute: u32, messages_per_minute: u32, shared: Option<Arc<dyn TokenBuckets>>) -> Self {
        Self {
            sessions: RateLimiter::new(sessions_per_minute, sessions_per_minute.div_ceil(4)).shared("webchat_address_sessions", shared.clone()),
            messages: RateLimiter::new(messages_per_minute, messages_per_minute.div_ceil(4)).shared("webchat_address_messages", shared),
        }
    }

    /// New limits from now on (admins changed them).
    pub fn set(&self, sessions_per_minute: u32, messages_per_minute: u32) {
        self.sessions.set(sessions_per_minute, sessions_per_minute.div_ceil(4));
        self.messages.set(messages_per_minute, messages_per_minute.div_ceil(4));
    }
}

/// The client's address, believing forwarded headers only from trusted proxies.
fn client_address(state: &WebChatState, peer: std::net::IpAddr, headers: &axum::http::HeaderMap) -> std::net::IpAddr {
    let values = |name: &str| headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>();
    state.trusted_proxies.client_address(peer, &values("forwarded"), &values("x-forwarded-for"))
}


/// How the widget looks; sent to it from `/webchat/config`, overridable per embed.
#[derive(Debug, Clone, Serialize)]
pub struct WidgetLook {
    pub title: String,
    pub primary_color: String,
    pub text_color: String,
    /// "right" or "left".
    pub position: String,
    pub welcome_message: String,
}

/// What admins change on the Widget page, in force at once: the look, the pre-chat questions and
/// the sites that may embed the widget.
#[derive(Debug, Clone)]
pub struct WidgetAppearance {
    pub look: WidgetLook,
    /// What the widget asks an anonymous visitor before the first message ("name", "email").
    pub prechat_fields: Vec<String>,
    pub allowed_origins: AllowedOrigins,
}

/// The widget's appearance now; replaced whole when admins change it.
#[derive(Debug)]
pub struct LiveAppearance(std::sync::RwLock<Arc<WidgetAppearance>>);

impl LiveAppearance {
    pub fn new(appearance: WidgetAppearance) -> Self {
        Self(std::sync::RwLock::new(Arc::new(appearance)))
    }

    pub fn get(&self) -> Arc<WidgetAppearance> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set(&self, appearance: WidgetAppearance) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(appearance);
    }
}

#[derive(Debug, Clone)]
pub struct WebChatSettings {
    pub max_message_chars: usize,
    pub appearance: Arc<LiveAppearance>,
    /// How long a long-poll waits for news before answering empty.
    pub long_poll: Duration,
    /// Open sockets per visitor; a newer one closes the oldest.
    pub max_sockets_per_visitor: usize,
    /// The embedding site's signing secret for its signed-in users (`webchat.identity_secret`).
    pub identity_secret: Option<Vec<u8>>,
}

/// The widget's routes, the widget script and the demo page, with their state.
pub fn routes(state: WebChatState) -> Router {
    let webchat = Router::new()
        .route("/session", post(http::create_session))
        .route("/profile", post(http::profile))
        .route("/config", get(http::widget_config))
        .route("/messages", get(http::history).post(http::send))
        .route("/files", post(http::send_file).layer(axum::extract::DefaultBodyLimit::max(upload_body_limit(&state))))
        .route("/files/{conversation}/{key}", get(http::file))
        .route("/poll", get(http::poll))
        .route("/seen", post(http::seen))
        .route("/feedback", post(http::feedback))
        .route("/conversations", get(http::conversations))
        .route("/ws", get(socket::upgrade))
        .layer(axum::middleware::from_fn_with_state(state.clone(), origin::guard));
    Router::new()
        .route("/", get(demo_page))
        .route("/widget.js", get(widget_script))
        .nest("/webchat", webchat)
        .with_state(state)
}

/// A file upload's body: the largest file allowed, and room for the form around it.
pub fn upload_body_limit(state: &WebChatState) -> usize {
    usize::try_from(state.engine.max_upload_bytes()).unwrap_or(usize::MAX).saturating_add(64 * 1024)
}

async fn demo_page() -> Html<&'static str> {
    Html(include_str!("../../assets/demo.html"))
}

async fn widget_script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/javascript; charset=utf-8")),
            (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300")),
        ],
        include_str!("../../assets/widget.js"),
    )
}

/// A client-generated message id: 1–64 characters of `A-Z a-z 0-9 - _`.
fn valid_client_id(client_id: &str) -> bool {
    (1..=64).contains(&client_id.len())
        && client_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A message the rate limits let through (`admit`): only such a message is received.
pub(super) struct Admitted(());

/// Counts a message against the visitor's and their address's budgets; however many visitor
/// ids one address makes up, it shares one budget. Both in one round trip when several nodes
/// share the counts. A file upload is admitted before its body is read.
async fn admit(state: &WebChatState, visitor: &str, address: std::net::IpAddr) -> Result<Admitted, HttpError> {
    let address = address.to_string();
    let checks = [(state.visitor_limiter.as_ref(), visitor), (&state.address_limits.messages, address.as_str())];
    let [per_visitor, per_address]: [Result<(), std::time::Duration>; 2] =
        RateLimiter::check_all(&checks).await.try_into().expect("one result per check");
    if let Err(wait) = per_visitor {
        return Err(HttpError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("Too many messages; try again in {} ms.", wait.as_millis().max(1)),
        ));
    }
    if let Err(wait) = per_address {
        return Err(HttpError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("Too many messages from your network; try again in {} ms.", wait.as_millis().max(1)),
        ));
    }
    Ok(Admitted(()))
}

/// The one way a widget message enters the engine, from the socket or the HTTP fallback.
/// `admitted`: counted already (a file upload, before its body was read); else it is counted
/// here, once the message is valid. `arrival`: its place in the visitor's line, taken when the
/// socket read it; else taken here.
#[allow(clippy::too_many_arguments)]
async fn receive(
    state: &WebChatState,
    admitted: Option<Admitted>,
    arrival: Option<switchboard_core::ArrivalTicket>,
    visitor: &str,
    address: std::net::IpAddr,
    client_id: &str,
    text: String,
    language: Option<String>,
    files: Vec<(String, Vec<u8>)>,
) -> Result<Acknowledged, HttpError> {
    if !valid_client_id(client_id) {
        return Err(HttpError::new(
            StatusCode::BAD_REQUEST,
            "invalid_client_id",
            "client_id must be 1-64 characters of letters, digits, '-' or '_'",
        ));
    }
    let chars = text.chars().count();
    if chars > state.settings.max_message_chars {
        return Err(HttpError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "message_too_large",
            format!(
                "The message has {chars} characters; the limit is {}. Shorten it or split it.",
                state.settings.max_message_chars
            ),
        ));
    }
    if admitted.is_none() {
        admit(state, visitor, address).await?;
    }
    // Files are checked and kept only once the message may be sent; none outlives a refusal.
    let mut attachments = Vec::with_capacity(files.len());
    for (name, bytes) in files {
        match state.engine.accept_upload(&name, &bytes).await {
            Ok(attachment) => attachments.push(attachment),
            Err(error) => {
                discard(state, &attachments).await;
                return Err(error.into());
            }
        }
    }
    let inbound = Inbound {
        channel: Channel::WebChat,
        // Scoped by visitor so one visitor's ids can never collide with another's.
        external_id: format!("{visitor}:{client_id}"),
        sender_external_id: visitor.to_string(),
        sender_name: None,
        text,
        attachments: attachments.clone(),
        original: None,
        thread: switchboard_models::Thread::Current,
        received_at: state.engine.now(),
        reported_language: language,
    };
    state.hub.publish(visitor, LiveEvent::Typing(true));
    // Until the background answer below is under way: a stop's drain waits for both.
    let _in_flight = state.engine.in_flight();
    let arrival = arrival.unwrap_or_else(|| state.engine.arrival(Channel::WebChat, visitor));
    let received = match state.engine.receive_in_turn(inbound, arrival).await {
        Ok(received) => received,
        Err(error) => {
            state.hub.publish(visitor, LiveEvent::Typing(false));
            discard(state, &attachments).await;
            return Err(error.into());
        }
    };
    if received.duplicate {
        // The first delivery holds its own copy of the files.
        discard(state, &attachments).await;
    }
    let acknowledged = Acknowledged {
        message: received.message.clone(),
        duplicate: received.duplicate,
        conversation: received.conversation.clone(),
    };
    if received.duplicate {
        state.hub.publish(visitor, LiveEvent::Typing(false));
        return Ok(acknowledged);
    }
    // Stored: acknowledge now; the bot answers in the background (a hosted LLM may be slow).
    let (hub, visitor) = (state.hub.clone(), visitor.to_string());
    let before = received.conversation.clone();
    let answering = state.engine.answer_later(received);
    tokio::spawn(async move {
        match answering.await {
            Ok(Ok(outcome)) => {
                if outcome.replies.is_empty() {
                    hub.publish(&visitor, LiveEvent::Typing(false));
                }
                if outcome.conversation.handler != before.handler || outcome.conversation.status != before.status {
                    hub.publish(&visitor, LiveEvent::Conversation(Arc::new(outcome.conversation)));
                }
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "a stored web-chat message was not answered; it is answered on the next start");
                hub.publish(&visitor, LiveEvent::Typing(false));
            }
            // Cut off by a stop: it is answered on the next start.
            Err(_) => {}
        }
    });
    Ok(acknowledged)
}

async fn discard(state: &WebChatState, uploads: &[switchboard_models::Attachment]) {
    for upload in uploads {
        state.engine.discard_upload(upload).await;
    }
}

/// What the widget is told once its message is stored.
struct Acknowledged {
    message: Message,
    duplicate: bool,
    /// As it was before the bot's step; a `conversation` frame follows when the step changes it.
    conversation: Conversation,
}
