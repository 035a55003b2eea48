//! Telegram's webhook: answered 200 only after the update is stored, so Telegram redelivers
//! whatever we could not take.

use super::{TelegramAdapter, WebhookError};
use crate::http_error::HttpError;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use std::sync::Arc;

const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";

/// `POST /telegram/webhook`; without Telegram configured it answers 404 saying so.
pub fn webhook_routes(telegram: Option<Arc<TelegramAdapter>>) -> Router {
    Router::new().route("/telegram/webhook", post(webhook)).with_state(telegram)
}

async fn webhook(State(telegram): State<Option<Arc<TelegramAdapter>>>, headers: HeaderMap, body: Bytes) -> Result<StatusCode, HttpError> {
    let Some(telegram) = &telegram else {
        return Err(HttpError::new(StatusCode::NOT_FOUND, "not_found", "Telegram is not configured on this server."));
    };
    let secret = headers.get(SECRET_HEADER).and_then(|v| v.to_str().ok());
    match telegram.handle_webhook(secret, &body).await {
        Ok(()) => Ok(StatusCode::OK),
        Err(WebhookError::Unauthorized) => {
            Err(HttpError::new(StatusCode::UNAUTHORIZED, "unauthorized", WebhookError::Unauthorized.to_string()))
        }
        Err(error @ WebhookError::Malformed(_)) => {
            Err(HttpError::new(StatusCode::BAD_REQUEST, "malformed_update", error.to_string()))
        }
        Err(error @ WebhookError::Unavailable(_)) => {
            tracing::warn!(%error, "Telegram webhook update not stored; Telegram will retry");
            Err(HttpError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", error.to_string()))
        }
    }
}
