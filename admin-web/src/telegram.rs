//! Telegram's webhook: answered 200 only after the update is stored, so Telegram redelivers
//! whatever we could not take.

use crate::AppState;
use crate::error::ApiError;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use switchboard_channels::telegram::WebhookError;

const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";

pub fn routes() -> Router<AppState> {
    Router::new().route("/telegram/webhook", post(webhook))
}

async fn webhook(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<StatusCode, ApiError> {
    let Some(telegram) = &state.telegram else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", "Telegram is not configured on this server."));
    };
    let secret = headers.get(SECRET_HEADER).and_then(|v| v.to_str().ok());
    match telegram.handle_webhook(secret, &body).await {
        Ok(()) => Ok(StatusCode::OK),
        Err(WebhookError::Unauthorized) => {
            Err(ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", WebhookError::Unauthorized.to_string()))
        }
        Err(error @ WebhookError::Malformed(_)) => {
            Err(ApiError::new(StatusCode::BAD_REQUEST, "malformed_update", error.to_string()))
        }
        Err(error @ WebhookError::Unavailable(_)) => {
            tracing::warn!(%error, "Telegram webhook update not stored; Telegram will retry");
            Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", error.to_string()))
        }
    }
}
