//! Panel sign-in: session cookies (only a hash of the token is stored), a CSRF token per session
//! checked on every form, and API tokens for the JSON API.

use crate::AppState;
use crate::error::ApiError;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use sha2::{Digest, Sha256};
use switchboard_models::{Agent, Role};

pub const SESSION_COOKIE: &str = "sb_session";
pub const LOGIN_CSRF_COOKIE: &str = "sb_login_csrf";

/// 32 random bytes as hex: session tokens, CSRF tokens, API tokens.
pub fn random_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// What the database keeps of a secret token.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// A signed-in agent on a panel page.
pub struct Signed {
    pub agent: Agent,
    pub csrf: String,
    pub token_hash: String,
    /// For admins: why the database refuses writes right now, if it does.
    pub storage_problem: Option<String>,
    /// The agent's unread notifications, for the header's badge.
    pub unread: u32,
}

impl Signed {
    /// Every state-changing form carries the session's CSRF token.
    pub fn check_csrf(&self, sent: &str) -> Result<(), ApiError> {
        if constant_time_eq(sent, &self.csrf) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf",
                "This form has expired or did not come from this panel. Reload the page and try again.",
            ))
        }
    }
}

/// Not signed in: pages send the browser to the login form.
pub struct ToLogin;

impl IntoResponse for ToLogin {
    fn into_response(self) -> Response {
        Redirect::to("/panel/login").into_response()
    }
}

impl FromRequestParts<AppState> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(ToLogin.into_response());
        };
        let token_hash = hash_token(token);
        let store = state.engine.accounts();
        let session = store
            .session(&token_hash, state.engine.now())
            .await
            .map_err(|e| ApiError::from(e).into_response())?
            .ok_or_else(|| ToLogin.into_response())?;
        let agent = store
            .agent(session.agent)
            .await
            .map_err(|e| ApiError::from(e).into_response())?
            .filter(|a| a.active)
            .ok_or_else(|| ToLogin.into_response())?;
        let storage_problem = (agent.role == switchboard_models::Role::Admin)
            .then(|| state.engine.storage_problem())
            .flatten()
            .map(|(since, reason)| storage_problem_text(since, &reason));
        // A badge is not worth failing a page for.
        let unread = state.engine.notifications().unread_notifications(agent.id).await.unwrap_or(0);
        Ok(Signed { agent, csrf: session.csrf, token_hash, storage_problem, unread })
    }
}

/// A signed-in admin.
pub struct SignedAdmin(pub Signed);

impl FromRequestParts<AppState> for SignedAdmin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let signed = Signed::from_request_parts(parts, state).await?;
        if signed.agent.role != Role::Admin {
            return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "Only admins may open this page.").into_response());
        }
        Ok(SignedAdmin(signed))
    }
}

/// A caller of the JSON API, by `Authorization: Bearer <API token>`.
pub struct ApiCaller(pub Agent);

impl FromRequestParts<AppState> for ApiCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let unauthorized = || {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Send an API token as `Authorization: Bearer <token>`; create one under API tokens in the panel.",
            )
        };
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(unauthorized)?;
        let store = state.engine.accounts();
        let token_hash = hash_token(token);
        let agent = store.api_token_agent(&token_hash).await?.ok_or_else(unauthorized)?;
        let agent = store.agent(agent).await?.filter(|a| a.active).ok_or_else(unauthorized)?;
        if let Err(wait) = state.api_limiter.check(&token_hash).await {
            let seconds = wait.as_secs().max(1);
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("Too many API requests with this token; try again in {seconds} seconds (server.api_requests_per_minute)."),
            ));
        }
        Ok(ApiCaller(agent))
    }
}

/// What the banner and readiness say when the store refuses writes.
pub fn storage_problem_text(since: switchboard_models::Timestamp, reason: &str) -> String {
    format!(
        "The database has refused writes since {} UTC: {reason}. Customers' messages are not accepted until it recovers \
         (widgets keep them and resend); free disk space or restore the database connection.",
        since.format("%Y-%m-%d %H:%M:%S")
    )
}
