//! Accounts beyond creation: everyone changes their own name and password (the Account page);
//! admins make a one-time link that lets an agent set a new password (shown once, 24 hours,
//! stored as SHA-256), which works without signing in and ends the agent's other sessions.

use super::auth::{Signed, SignedAdmin, hash_token, random_token};
use super::{account_audit, error_page, page, verify_password};
use crate::AppState;
use crate::accounts::{check_password, hash_password};
use crate::error::ApiError;
use crate::limits;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;
use serde_json::json;
use switchboard_core::AgentEdit;
use switchboard_core::ports::{AdminWrite, PasswordReset, PasswordResetChange};
use switchboard_models::{AgentId, AuditAction, AuditEntry};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/panel/account", get(account_page))
        .route("/panel/account/name", post(change_name))
        .route("/panel/account/password", post(change_password))
        .route("/panel/admin/agents/{id}/reset", post(make_reset_link))
        .route("/panel/reset/{token}", get(reset_page).post(reset_password))
}

/// How long a link to set a password works.
const RESET_HOURS: i64 = 24;

#[derive(Deserialize, Default)]
#[serde(default)]
struct AccountQuery {
    /// `name`: the name was just saved.
    done: String,
}

async fn account_page(State(state): State<AppState>, signed: Signed, Query(query): Query<AccountQuery>) -> Result<Html<String>, ApiError> {
    let flash = match query.done.as_str() {
        "name" => Some("Your name was saved."),
        "two-factor-on" => Some("Two-factor sign-in is on: signing in now also asks for a code from your app."),
        "two-factor-off" => Some("Two-factor sign-in is off."),
        _ => None,
    };
    render(&state, &signed, flash.map(|text| ("ok", text.to_string())), None).await
}

/// The Account page; `setup`: a new two-factor secret to show for confirming.
pub(super) async fn render(state: &AppState, signed: &Signed, flash: Option<(&str, String)>, setup: Option<&[u8]>) -> Result<Html<String>, ApiError> {
    let on = state.engine.accounts().two_factor_secret(signed.agent.id).await?.is_some();
    let setup = setup.filter(|_| !on).map(|secret| {
        let key = crate::totp::base32(secret);
        let grouped = key.as_bytes().chunks(4).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join(" ");
        json!({"secret": key, "key": grouped, "uri": crate::totp::setup_uri("Switchboard", &signed.agent.email, secret)})
    });
    let mut data = json!({"limits": {"name": limits::AGENT_NAME, "password": limits::PASSWORD}, "two_factor": {"on": on, "setup": setup}});
    if let Some((kind, text)) = flash {
        data["flash"] = json!({"kind": kind, "text": text});
    }
    state.views.render("account", &page(signed, "account", "Your account", data))
}

#[derive(Deserialize)]
struct NameForm {
    csrf: String,
    name: String,
}

async fn change_name(State(state): State<AppState>, signed: Signed, Form(form): Form<NameForm>) -> Result<Response, ApiError> {
    signed.check_csrf(&form.csrf)?;
    let name = form.name.trim();
    if let Err(error) = limits::check(&[("name", name, limits::AGENT_NAME)]) {
        return Ok(error_page(&state, error, "/panel/account"));
    }
    if name.is_empty() {
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&state, &signed, Some(("error", "Your name cannot be blank.".into())), None).await?).into_response());
    }
    let me = signed.agent.id;
    state.engine.edit_agent(me, me, AgentEdit { name: Some(name.to_string()), ..AgentEdit::default() }).await?;
    Ok(Redirect::to("/panel/account?done=name").into_response())
}

#[derive(Deserialize)]
struct PasswordForm {
    csrf: String,
    current: String,
    new: String,
    repeat: String,
}

async fn change_password(State(state): State<AppState>, signed: Signed, Form(form): Form<PasswordForm>) -> Result<Response, ApiError> {
    signed.check_csrf(&form.csrf)?;
    let (state, signed) = (&state, &signed);
    let refuse = |why: String| async move { Ok::<_, ApiError>((StatusCode::UNPROCESSABLE_ENTITY, render(state, signed, Some(("error", why)), None).await?).into_response()) };
    if let Err(error) = limits::check(&[("password", &form.new, limits::PASSWORD), ("current password", &form.current, limits::PASSWORD)]) {
        return refuse(error.message).await;
    }
    let me = &signed.agent;
    let hash = state.engine.accounts().password_hash(me.id).await?;
    if !hash.as_deref().is_some_and(|hash| verify_password(&form.current, hash)) {
        return refuse("Your current password is not right; nothing was changed.".into()).await;
    }
    if form.new != form.repeat {
        return refuse("The two new passwords differ; type the same one twice.".into()).await;
    }
    if let Err(why) = check_password(&form.new, &[&me.email, &me.name], state.account_rules.min_password_chars()) {
        return refuse(format!("Not changed: {why}.")).await;
    }
    let hash = hash_password(&form.new).map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    let audit = account_audit(&state, me, AuditAction::UpdateAccount, None, Some("password changed".into()));
    let write = AdminWrite { password_hash: Some((me.id, hash)), audit: vec![audit], ..AdminWrite::default() };
    state.engine.accounts().commit_admin(write).await?;
    Ok((StatusCode::OK, render(&state, &signed, Some(("ok", "Your password was changed.".into())), None).await?).into_response())
}

/// Makes a link for the agent to set a new password, and shows it once to the admin.
async fn make_reset_link(State(state): State<AppState>, SignedAdmin(signed): SignedAdmin, headers: HeaderMap, Path(id): Path<String>, Form(form): Form<super::CsrfOnly>) -> Result<Response, ApiError> {
    signed.check_csrf(&form.csrf)?;
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "not_found", "No such agent.");
    let id = AgentId::parse(&id).map_err(|_| not_found())?;
    let Some(agent) = state.engine.accounts().agent(id).await?.filter(|a| a.active) else {
        return Ok(error_page(&state, ApiError::new(StatusCode::NOT_FOUND, "not_found", "No such active agent: reactivate the account first."), "/panel/admin/agents"));
    };
    let token = random_token();
    let now = state.engine.now();
    let reset = PasswordReset {
        token_hash: hash_token(&token),
        agent: agent.id,
        created_by: Some(signed.agent.id),
        created_at: now,
        expires_at: now + chrono::Duration::hours(RESET_HOURS),
        used_at: None,
    };
    let audit = AuditEntry {
        subject_agent: Some(agent.id),
        ..account_audit(&state, &signed.agent, AuditAction::UpdateAccount, None, Some(format!("a link to set a password, valid {RESET_HOURS} hours")))
    };
    let write = AdminWrite { password_reset: Some(PasswordResetChange::Create(reset)), audit: vec![audit], ..AdminWrite::default() };
    state.engine.accounts().commit_admin(write).await?;
    let scheme = if state.secure_cookies { "https" } else { "http" };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    let link = format!("{scheme}://{host}/panel/reset/{token}");
    let data = json!({"agent": agent.name, "link": link, "hours": RESET_HOURS});
    Ok(state.views.render("reset_link", &page(&signed, "agents", "A link to set a password", data))?.into_response())
}

/// The link's reset, when it can still be used.
async fn usable_reset(state: &AppState, token: &str) -> Result<Option<PasswordReset>, ApiError> {
    let reset = state.engine.accounts().password_reset(&hash_token(token)).await?;
    Ok(reset.filter(|r| r.used_at.is_none() && r.expires_at > state.engine.now()))
}

fn reset_form(state: &AppState, token: &str, name: Option<&str>, error: Option<String>, status: StatusCode) -> Result<Response, ApiError> {
    let html = state.views.render("reset", &json!({"token": token, "name": name, "error": error, "limits": {"password": limits::PASSWORD}}))?;
    Ok((status, [(header::CACHE_CONTROL, "no-store")], html).into_response())
}

async fn reset_page(State(state): State<AppState>, Path(token): Path<String>) -> Result<Response, ApiError> {
    match usable_reset(&state, &token).await? {
        Some(reset) => {
            let name = state.engine.accounts().agent(reset.agent).await?.map(|a| a.name);
            reset_form(&state, &token, name.as_deref(), None, StatusCode::OK)
        }
        None => reset_form(&state, "", None, Some(GONE.into()), StatusCode::GONE),
    }
}

const GONE: &str = "This link was used already or has expired. Ask an admin for a new one.";

#[derive(Deserialize)]
struct ResetForm {
    new: String,
    repeat: String,
}

async fn reset_password(State(state): State<AppState>, Path(token): Path<String>, Form(form): Form<ResetForm>) -> Result<Response, ApiError> {
    let Some(reset) = usable_reset(&state, &token).await? else {
        return reset_form(&state, "", None, Some(GONE.into()), StatusCode::GONE);
    };
    let Some(agent) = state.engine.accounts().agent(reset.agent).await?.filter(|a| a.active) else {
        return reset_form(&state, "", None, Some(GONE.into()), StatusCode::GONE);
    };
    let again = |why: String| reset_form(&state, &token, Some(&agent.name), Some(why), StatusCode::UNPROCESSABLE_ENTITY);
    if let Err(error) = limits::check(&[("password", &form.new, limits::PASSWORD)]) {
        return again(error.message);
    }
    if form.new != form.repeat {
        return again("The two passwords differ; type the same one twice.".into());
    }
    if let Err(why) = check_password(&form.new, &[&agent.email, &agent.name], state.account_rules.min_password_chars()) {
        return again(format!("Not set: {why}."));
    }
    let hash = hash_password(&form.new).map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    let audit = account_audit(&state, &agent, AuditAction::UpdateAccount, None, Some("password set with a one-time link".into()));
    let write = AdminWrite {
        password_hash: Some((agent.id, hash)),
        password_reset: Some(PasswordResetChange::Use { token_hash: reset.token_hash, at: state.engine.now() }),
        end_sessions_of: Some(agent.id),
        audit: vec![audit],
        ..AdminWrite::default()
    };
    match state.engine.accounts().commit_admin(write).await {
        Ok(()) => Ok(Redirect::to("/panel/login?reset=done").into_response()),
        // Used a moment ago by another request: nothing was written.
        Err(switchboard_core::ports::StoreError::Stale(_)) => reset_form(&state, "", None, Some(GONE.into()), StatusCode::GONE),
        Err(error) => Err(error.into()),
    }
}
