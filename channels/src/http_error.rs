//! An error answer on the channels' HTTP routes (web chat, Telegram's webhook), in the same shape
//! as the panel's API: a status, a stable machine code and a sentence saying what to do.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use switchboard_core::EngineError;
use switchboard_core::ports::StoreError;

#[derive(Debug)]
pub struct HttpError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl HttpError {
    /// The message is cut at 600 characters: an error never echoes a large input back.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: switchboard_core::clipped(message.into()) }
    }

    /// A whole request over the body limit.
    pub fn too_large(limit_bytes: usize) -> Self {
        let kib = limit_bytes / 1024;
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", format!("The request body is larger than {kib} KiB; nothing was saved. Send less."))
    }
}

impl From<EngineError> for HttpError {
    fn from(error: EngineError) -> Self {
        let (status, code, message) = error.public_answer();
        Self::new(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), code, message)
    }
}

impl From<StoreError> for HttpError {
    fn from(error: StoreError) -> Self {
        EngineError::Store(error).into()
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code, "message": self.message } });
        (self.status, Json(body)).into_response()
    }
}
