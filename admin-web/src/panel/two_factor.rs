//! Two-factor sign-in (TOTP, `crate::totp`): an agent turns it on from the Account page with a
//! code from an authenticator app, and sign-in then asks for a code after the password (a
//! challenge by cookie, stored, so any node takes the code). Each code signs in once; wrong
//! codes count as failed sign-ins, and five end the challenge. An admin turns it off for an
//! agent who lost their device. Every change is audited.

use super::auth::{LOGIN_CSRF_COOKIE, Signed, SignedAdmin, constant_time_eq, cookie, hash_token, random_token};
use super::{account_audit, login_form, secure, verify_password};
use crate::AppState;
use crate::error::ApiError;
use crate::signin::Admission;
use crate::totp;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::post;
use axum::{Form, Router};
use serde::Deserialize;
use serde_json::json;
use std::net::SocketAddr;
use switchboard_core::ports::AdminWrite;
use switchboard_models::{Agent, AgentId, AuditAction, AuditEntry};

/// The pending sign-in's token, for the code form only.
pub const CHALLENGE_COOKIE: &str = "sb_sign_in_code";
/// How long the code may take after the password.
const CHALLENGE_MINUTES: i64 = 5;
/// Wrong codes that end a challenge (the password is asked again).
const MAX_WRONG_CODES: u32 = 5;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/panel/login/code", post(login_code))
        .route("/panel/account/two-factor/setup", post(setup))
        .route("/panel/account/two-factor/on", post(turn_on))
        .route("/panel/account/two-factor/off", post(turn_off))
        .route("/panel/admin/agents/{id}/two-factor-off", post(admin_turn_off))
}

/// The password was right and two-factor sign-in is on: open a challenge and ask for the code.
pub(super) async fn ask_for_code(state: &AppState, agent: &Agent) -> Result<Response, ApiError> {
    let challenge = random_token();
    let until = state.engine.now() + chrono::Duration::minutes(CHALLENGE_MINUTES);
    let write = AdminWrite { sign_in_challenge: Some((hash_token(&challenge), agent.id, until)), ..AdminWrite::default() };
    state.engine.accounts().commit_admin(write).await?;
    let cookie = format!("{CHALLENGE_COOKIE}={challenge}; Path=/panel/login; HttpOnly; SameSite=Strict; Max-Age={}{}", CHALLENGE_MINUTES * 60, secure(state));
    code_page(state, StatusCode::OK, None, Some(cookie))
}

/// The code form, with a fresh form token (and the challenge's cookie when it was just opened).
fn code_page(state: &AppState, status: StatusCode, error: Option<&str>, challenge_cookie: Option<String>) -> Result<Response, ApiError> {
    let csrf = random_token();
    let html = state.views.render("login_code", &json!({"csrf": csrf, "error": error}))?;
    let csrf_cookie = format!("{LOGIN_CSRF_COOKIE}={csrf}; Path=/panel; HttpOnly; SameSite=Strict; Max-Age=3600{}", secure(state));
    let mut response = (status, axum::response::Html(html.0)).into_response();
    for cookie in std::iter::once(csrf_cookie).chain(challenge_cookie) {
        let value = HeaderValue::from_str(&cookie).map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("a cookie could not be set: {e}")))?;
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    Ok(response)
}

#[derive(Deserialize)]
struct CodeForm {
    csrf: String,
    code: String,
}

async fn login_code(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<CodeForm>,
) -> Result<Response, ApiError> {
    if !cookie(&headers, LOGIN_CSRF_COOKIE).is_some_and(|c| constant_time_eq(c, &form.csrf)) {
        return code_page(&state, StatusCode::UNAUTHORIZED, Some("The form expired; enter the code again."), None);
    }
    let address = crate::client::client_address(&state.trusted_proxies, peer.ip(), &headers);
    let accounts = state.engine.accounts();
    let now = state.engine.now();
    let challenge = cookie(&headers, CHALLENGE_COOKIE).map(hash_token);
    let agent = match &challenge {
        Some(hash) => accounts.sign_in_challenge(hash, now).await?,
        None => None,
    };
    let agent = match agent {
        Some(id) => accounts.agent(id).await?.filter(|agent| agent.active),
        None => None,
    };
    let (Some(agent), Some(challenge)) = (agent, challenge) else {
        return login_form(&state, StatusCode::UNAUTHORIZED, "", "The sign-in took too long or was ended; enter your password again.");
    };
    if let Admission::Refused { retry_after } = state.sign_in.admit(&agent.email, address).await {
        return Ok(super::too_many_attempts(retry_after.as_secs().max(1)));
    }
    let secret = accounts.two_factor_secret(agent.id).await?.and_then(|secret| totp::from_base32(&secret));
    let step = secret.and_then(|secret| totp::matching_step(&secret, &form.code, now.timestamp()));
    let taken = match step {
        Some(step) => accounts.take_two_factor_step(agent.id, step).await?,
        None => false,
    };
    if taken {
        return super::begin_session(&state, &agent, address, Some(challenge)).await;
    }
    state.sign_in.failed(&agent.email);
    let wrong = accounts.sign_in_challenge_failed(&challenge).await?;
    let failed = AuditEntry {
        at: now,
        actor: None,
        action: AuditAction::SignInFailed,
        conversation: None,
        subject_agent: Some(agent.id),
        before: None,
        after: Some(format!("a wrong two-factor code from {address}")),
    };
    if wrong >= MAX_WRONG_CODES {
        accounts.commit_admin(AdminWrite { end_sign_in_challenge: Some(challenge), audit: vec![failed], ..AdminWrite::default() }).await?;
        return login_form(&state, StatusCode::UNAUTHORIZED, &agent.email, "Too many wrong codes; sign in again.");
    }
    accounts.record_audit(&failed).await?;
    code_page(&state, StatusCode::UNAUTHORIZED, Some("That code is not right, or it was used already. Enter the code your app shows now."), None)
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

/// A new secret to add to an authenticator app, shown until a code from it confirms it.
async fn setup(State(state): State<AppState>, signed: Signed, Form(form): Form<CsrfForm>) -> Result<Response, ApiError> {
    signed.check_csrf(&form.csrf)?;
    Ok(super::account::render(&state, &signed, None, Some(&totp::new_secret())).await?.into_response())
}

#[derive(Deserialize)]
struct TurnOnForm {
    csrf: String,
    secret: String,
    code: String,
    current: String,
}

async fn turn_on(State(state): State<AppState>, signed: Signed, Form(form): Form<TurnOnForm>) -> Result<Response, ApiError> {
    signed.check_csrf(&form.csrf)?;
    let secret = totp::from_base32(&form.secret).filter(|secret| secret.len() >= 16).ok_or_else(|| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", "The setup key was damaged; start the setup again.")
    })?;
    let me = signed.agent.id;
    let hash = state.engine.accounts().password_hash(me).await?;
    let step = totp::matching_step(&secret, &form.code, state.engine.now().timestamp());
    let step = match (hash.is_some_and(|hash| verify_password(&form.current, &hash)), step) {
        (true, Some(step)) => step,
        (password_right, _) => {
            let problem = match password_right {
                false => "Your current password is not right.",
                true => "That code does not match the key: check the key in your app and enter the code it shows now.",
            };
            let page = super::account::render(&state, &signed, Some(("error", problem.to_string())), Some(&secret)).await?;
            return Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response());
        }
    };
    let audit = account_audit(&state, &signed.agent, AuditAction::TwoFactor, Some("off".into()), Some("on".into()));
    let write = AdminWrite { two_factor: Some((me, Some(totp::base32(&secret)))), audit: vec![audit], ..AdminWrite::default() };
    state.engine.accounts().commit_admin(write).await?;
    // The code that confirmed it does not sign in afterwards.
    state.engine.accounts().take_two_factor_step(me, step).await?;
    Ok(Redirect::to("/panel/account?done=two-factor-on").into_response())
}

#[derive(Deserialize)]
struct TurnOffForm {
    csrf: String,
    current: String,
}

async fn turn_off(State(state): State<AppState>, signed: Signed, Form(form): Form<TurnOffForm>) -> Result<Response, ApiError> {
    signed.check_csrf(&form.csrf)?;
    let me = signed.agent.id;
    let hash = state.engine.accounts().password_hash(me).await?;
    if !hash.is_some_and(|hash| verify_password(&form.current, &hash)) {
        let page = super::account::render(&state, &signed, Some(("error", "Your current password is not right.".into())), None).await?;
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response());
    }
    switch_off(&state, &signed.agent, me).await?;
    Ok(Redirect::to("/panel/account?done=two-factor-off").into_response())
}

/// For an agent who lost the device with their codes.
async fn admin_turn_off(State(state): State<AppState>, SignedAdmin(signed): SignedAdmin, Path(id): Path<String>, Form(form): Form<CsrfForm>) -> Result<Response, ApiError> {
    signed.check_csrf(&form.csrf)?;
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "not_found", "No such agent.");
    let id = uuid::Uuid::parse_str(&id).map(AgentId).map_err(|_| not_found())?;
    state.engine.accounts().agent(id).await?.ok_or_else(not_found)?;
    switch_off(&state, &signed.agent, id).await?;
    Ok(Redirect::to("/panel/admin/agents").into_response())
}

async fn switch_off(state: &AppState, actor: &Agent, agent: AgentId) -> Result<(), ApiError> {
    let mut audit = account_audit(state, actor, AuditAction::TwoFactor, Some("on".into()), Some("off".into()));
    audit.subject_agent = Some(agent);
    state.engine.accounts().commit_admin(AdminWrite { two_factor: Some((agent, None)), audit: vec![audit], ..AdminWrite::default() }).await?;
    Ok(())
}
