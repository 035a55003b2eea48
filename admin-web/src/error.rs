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
        let mut message: String = message.into();
        if let Some((end, _)) = message.char_indices().nth(600) {
            message.truncate(end);
            message.push('…');
        }
        Self { status, code, message }
    }

    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "The service cannot store messages right now; nothing was saved. Try again shortly.",
        )
    }
}

impl From<EngineError> for ApiError {
    fn from(error: EngineError) -> Self {
        match error {
            EngineError::Invalid(reason) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_message", reason)
            }
            EngineError::Forbidden(reason) => Self::new(StatusCode::FORBIDDEN, "forbidden", reason),
            EngineError::Conflict(reason) => Self::new(StatusCode::CONFLICT, "conflict", reason),
            EngineError::NotFound(what) => {
                Self::new(StatusCode::NOT_FOUND, "not_found", format!("No such {what}."))
            }
            EngineError::Upload(reason) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "file_rejected", format!("The file was refused: {reason}."))
            }
            EngineError::Store(error) => {
                tracing::error!(%error, "store failure");
                Self::unavailable()
            }
        }
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
