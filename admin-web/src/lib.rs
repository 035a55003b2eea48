//! The HTTP face of Switchboard: web-chat endpoints and widget assets for now; the admin panel
//! and REST API join here. The only crate that knows HTML and JSON shapes.

pub mod accounts;
mod client;
mod error;
pub mod limits;
pub mod panel;
pub mod probes;
mod ratelimit;
mod reports;
pub mod signin;
mod telegram;
pub mod webchat;

use axum::Router;
use std::sync::Arc;
use switchboard_channels::telegram::TelegramAdapter;
use switchboard_channels::webchat::WebChatHub;
use switchboard_core::Engine;

pub use client::{AddressLimits, TrustedProxies};
pub use error::ApiError;
pub use ratelimit::RateLimiter;
pub use webchat::{AllowedOrigins, VisitorKeys, WebChatSettings, WidgetLook};

/// Everything the handlers share; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    pub hub: Arc<WebChatHub>,
    pub webchat: Arc<WebChatSettings>,
    pub visitor_keys: Arc<VisitorKeys>,
    pub rate_limiter: Arc<RateLimiter>,
    /// Set when the Telegram channel is on (its webhook route answers).
    pub telegram: Option<Arc<TelegramAdapter>>,
    pub views: Arc<panel::Views>,
    /// Sign-in limits per address and per (account, address).
    pub sign_in: Arc<signin::SignInGuard>,
    /// Whose forwarded client address to believe.
    pub trusted_proxies: Arc<TrustedProxies>,
    /// Web-chat sessions and messages per client address.
    pub address_limits: Arc<AddressLimits>,
    /// API requests per token.
    pub api_limiter: Arc<RateLimiter>,
    /// Cookies carry `Secure` (the public URL is https).
    pub secure_cookies: bool,
    /// What `/metrics` renders.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// When set, `/metrics` asks for it as a bearer token.
    pub metrics_token: Option<String>,
    /// The hosted LLM's helpers (reply drafts), when one is configured.
    pub assistant: Option<Arc<dyn switchboard_core::ports::Assistant>>,
    /// Set when the model classifier runs.
    pub intents_reloader: Option<Arc<dyn switchboard_core::ports::IntentsReloader>>,
    /// Cancelled when the server stops: live connections (widget sockets, long polls, the
    /// panel's event stream) end so the stop need not wait for them.
    pub closing: tokio_util::sync::CancellationToken,
}

/// The whole HTTP application.
pub fn app(state: AppState) -> Router {
    webchat::routes(state.clone())
        .merge(telegram::routes())
        .merge(probes::routes())
        .merge(panel::routes())
        .route_layer(axum::middleware::from_fn(probes::record_latency))
        .layer(axum::extract::DefaultBodyLimit::max(limits::BODY_BYTES))
        .layer(axum::middleware::from_fn(limits::refuse_large_bodies))
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(state)
}

/// Every answer: no MIME sniffing, no referrer to other sites. The panel and the API also: no
/// framing by any site (clickjacking) and a content policy allowing only our own scripts and
/// styles. The widget's routes go without those two: its script runs inside customers' sites.
async fn security_headers(request: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    use axum::http::HeaderValue;
    let path = request.uri().path();
    let panel = ["/panel", "/api", "/static/"].iter().any(|prefix| path.starts_with(prefix));
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    headers.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    if panel {
        headers.insert(
            "content-security-policy",
            HeaderValue::from_static(
                "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
            ),
        );
        headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    }
    response
}
