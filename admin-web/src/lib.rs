//! The HTTP face of Switchboard: web-chat endpoints and widget assets for now; the admin panel
//! and REST API join here. The only crate that knows HTML and JSON shapes.

pub mod accounts;
mod error;
pub mod panel;
mod probes;
mod ratelimit;
mod reports;
mod telegram;
pub mod webchat;

use axum::Router;
use std::sync::Arc;
use switchboard_channels::telegram::TelegramAdapter;
use switchboard_channels::webchat::WebChatHub;
use switchboard_core::Engine;

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
    /// Sign-in attempts per address and per email.
    pub login_limiter: Arc<RateLimiter>,
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
    webchat::routes(state.clone()).merge(telegram::routes()).merge(probes::routes()).merge(panel::routes()).with_state(state)
}
