use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use switchboard_core::EngineError;

/// An error answer: a status, a stable machine code and a sentence saying what to do.
/// Internal details go to the log, never to the client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    /// The message is cut at 600 characters: an error never echoes a large input back.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: switchboard_core::clipped(message.into()) }
    }

    pub fn unavailable() -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", switchboard_core::UNAVAILABLE)
    }
}

impl From<EngineError> for ApiError {
    fn from(error: EngineError) -> Self {
        let (status, code, message) = error.public_answer();
        Self::new(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), code, message)
    }
}

impl From<switchboard_core::ports::StoreError> for ApiError {
    fn from(error: switchboard_core::ports::StoreError) -> Self {
        EngineError::Store(error).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code, "message": self.message } });
        (self.status, Json(body)).into_response()
    }
}
