//! The longest input each field and request takes. Longer input is refused with the field and
//! its limit named (`422 too_long`, or `413 too_large` for a whole request), never stored and
//! never echoed back.

use crate::error::ApiError;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

pub const CANNED_TITLE: usize = 200;
pub const CANNED_BODY: usize = 4000;
pub const TOKEN_NAME: usize = 100;
pub const AGENT_NAME: usize = 100;
pub const EMAIL: usize = 254;
pub const PASSWORD: usize = 1024;
/// Any request body (forms and JSON); no route takes files yet.
pub const BODY_BYTES: usize = 1 << 20;

/// The first field longer than its limit, as a `422`.
pub fn check(fields: &[(&str, &str, usize)]) -> Result<(), ApiError> {
    for (field, value, max) in fields {
        let chars = value.chars().count();
        if chars > *max {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "too_long",
                format!("`{field}` has {chars} characters; the limit is {max}. Shorten it."),
            ));
        }
    }
    Ok(())
}

/// At most `max` characters of `text` for a message or the audit log, control characters dropped.
pub fn shown(text: &str, max: usize) -> String {
    let mut shown: String = text.chars().filter(|c| !c.is_control()).take(max).collect();
    if text.chars().count() > max {
        shown.push('…');
    }
    shown
}

pub fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!("The request body is larger than {} KiB; nothing was saved. Send less.", BODY_BYTES / 1024),
    )
}

/// Room for the form around an uploaded file.
pub const FORM_BYTES: u64 = 64 * 1024;

/// Routes that take a file, with the larger body `UploadLimit` allows: the widget's, the
/// panel's reply form and the API's.
fn takes_a_file(path: &str) -> bool {
    let under = |prefix: &str, suffix: &str| path.strip_prefix(prefix).and_then(|rest| rest.strip_suffix(suffix)).is_some_and(|id| !id.contains('/'));
    path == "/webchat/files" || under("/panel/conversations/", "/reply") || under("/api/conversations/", "/files")
}

/// The extractors' limit on a route that takes a file: none, because `refuse_large_bodies`
/// admits only bodies that declare a length within `UploadLimit` there.
pub fn upload_body_limit() -> axum::extract::DefaultBodyLimit {
    axum::extract::DefaultBodyLimit::disable()
}

/// The largest body of a file upload: the largest file and room for the form around it.
#[derive(Clone, Copy)]
pub struct UploadLimit(pub u64);

/// Refuses a declared oversized body on every route before anything reads it; a body without
/// a length is cut off at the limit by the extractors (`DefaultBodyLimit`), which answer 413 too.
pub async fn refuse_large_bodies(axum::extract::State(upload): axum::extract::State<UploadLimit>, request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let file = takes_a_file(request.uri().path());
    let limit = if file { upload.0 } else { BODY_BYTES as u64 };
    if file && declared.is_none() && request.method() == axum::http::Method::POST {
        // The file routes lift the extractors' limit (`upload_body_limit`): a body must say its size.
        let why = "Send a file with a Content-Length header (browsers and HTTP clients do by default).";
        return ApiError::new(StatusCode::LENGTH_REQUIRED, "length_required", why).into_response();
    }
    if declared.is_some_and(|length| length > limit) {
        if limit != BODY_BYTES as u64 {
            let file_limit = switchboard_core::attachments::size_words(limit.saturating_sub(FORM_BYTES));
            let message = format!("The file is larger than {file_limit}; nothing was saved. Send a smaller one.");
            return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "file_too_large", message).into_response();
        }
        return too_large().into_response();
    }
    next.run(request).await
}
