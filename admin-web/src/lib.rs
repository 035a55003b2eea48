//! The HTTP face of Switchboard: web-chat endpoints and widget assets for now; the admin panel
//! and REST API join here. The only crate that knows HTML and JSON shapes.

pub mod accounts;
mod client;
mod error;
pub mod limits;
pub mod panel;
mod probes;
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
        .layer(axum::extract::DefaultBodyLimit::max(limits::BODY_BYTES))
        .layer(axum::middleware::from_fn(limits::refuse_large_bodies))
        .with_state(state)
}
