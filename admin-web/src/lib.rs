//! The admin panel, its JSON API, probes and metrics; `app` also serves the channels' own routes
//! (the web-chat widget, Telegram's webhook) under the same limits and headers. The only crate
//! that knows the panel's HTML and the API's JSON shapes.

pub mod openapi;
pub mod accounts;
mod client;
mod error;
pub mod limits;
pub mod panel;
pub mod probes;
mod charts;
mod working_hours;
pub mod signin;
pub mod totp;

use axum::Router;
use std::sync::Arc;
use switchboard_core::ports::ConnectedVisitors;
use switchboard_core::{Engine, RateLimiter, TrustedProxies};

pub use error::ApiError;

/// Everything the handlers share; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    /// Widgets connected to this node, for the dashboard.
    pub visitors: Arc<dyn ConnectedVisitors>,
    pub views: Arc<panel::Views>,
    /// Sign-in limits per address and per (account, address).
    pub sign_in: Arc<signin::SignInGuard>,
    /// Whose forwarded client address to believe.
    pub trusted_proxies: Arc<TrustedProxies>,
    /// API requests per token.
    pub api_limiter: Arc<RateLimiter>,
    /// Cookies carry `Secure` (the public URL is https).
    pub secure_cookies: bool,
    /// `server.public_url`: where customers and agents reach this server (links, the embed code).
    pub public_url: Option<String>,
    /// What `/metrics` renders.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// When set, `/metrics` asks for it as a bearer token.
    pub metrics_token: Option<String>,
    /// The hosted LLM's helpers (reply drafts), when one is configured.
    pub assistant: Option<Arc<dyn switchboard_core::ports::Assistant>>,
    /// Agents read only the queue's conversations and their own
    /// (`server.agents_see_only_own_and_queued`); admins read all.
    pub own_and_queued_only: bool,
    /// Set when the model classifier runs: the bot's intents (the Bot page, reload).
    pub intents: Option<Arc<dyn switchboard_core::ports::BotIntents>>,
    /// The settings admins change on the Settings page.
    pub settings: Arc<dyn switchboard_core::ports::SettingsCatalog>,
    /// Session lifetime and password length, as the Settings page last set them.
    pub account_rules: Arc<accounts::AccountRules>,
    /// The channels' adapters that read a set-aside inbound event again.
    pub replayers: Arc<Vec<Arc<dyn switchboard_core::InboundReplay>>>,
    /// Cancelled when the server stops: the panel's event streams end so the stop need not
    /// wait for them.
    pub closing: tokio_util::sync::CancellationToken,
}

/// The whole HTTP application: the panel, the API and probes, and `channel_routes` (the
/// channels' own endpoints), all under the same body limits, latency metrics and headers.
pub fn app(state: AppState, channel_routes: Router) -> Router {
    let upload = limits::UploadLimit(state.engine.max_upload_bytes().saturating_add(limits::FORM_BYTES));
    let own = probes::routes().merge(panel::routes()).merge(openapi::routes()).with_state(state);
    own.merge(channel_routes)
        .route_layer(axum::middleware::from_fn(probes::record_latency))
        .layer(axum::extract::DefaultBodyLimit::max(limits::BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(upload, limits::refuse_large_bodies))
        .layer(axum::middleware::from_fn(security_headers))
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
