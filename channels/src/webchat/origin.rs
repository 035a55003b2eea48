//! Only configured origins may talk to the web-chat endpoints from a browser.
//! Requests without an `Origin` header (servers, native apps) are not browser cross-site
//! requests and pass; same-origin requests (the demo page) always pass.

use super::WebChatState;
use crate::http_error::HttpError;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

#[derive(Debug, Clone, PartialEq)]
pub enum AllowedOrigins {
    Any,
    /// Exact origins such as `https://shop.example.com` (scheme, host and port).
    List(Vec<String>),
}

impl AllowedOrigins {
    fn allows(&self, origin: &str, headers: &HeaderMap) -> bool {
        let same_origin = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .is_some_and(|host| {
                origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://")) == Some(host)
            });
        same_origin
            || match self {
                AllowedOrigins::Any => true,
                AllowedOrigins::List(list) => list.iter().any(|o| o == origin),
            }
    }
}

pub async fn guard(State(state): State<WebChatState>, request: Request, next: Next) -> Response {
    let Some(origin) = request.headers().get(header::ORIGIN).cloned() else {
        return next.run(request).await;
    };
    let origin_text = origin.to_str().unwrap_or_default().to_string();
    if !state.settings.appearance.get().allowed_origins.allows(&origin_text, request.headers()) {
        tracing::info!(origin = %origin_text, "web chat request from a disallowed origin");
        return HttpError::new(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            format!(
                "Origin {origin_text} may not use this chat. Add it to webchat.allowed_origins \
                 in the server's configuration."
            ),
        )
        .into_response();
    }
    let mut response = if request.method() == Method::OPTIONS {
        StatusCode::NO_CONTENT.into_response()
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type"),
    );
    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST"));
    response
}
