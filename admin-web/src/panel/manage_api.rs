//! The JSON API for what the panel's management pages do: one's own presence, canned responses,
//! agents' accounts and the audit log, with the panel's role rules (canned responses are shared
//! by admins and personal to their owner; accounts and the audit log are the admins'). Each
//! change goes through the same functions as its panel form, audited the same way.

use super::auth::ApiCaller;
use super::json_body as body;
use super::{RATINGS_DAYS, add_canned, may_manage, remove_canned, visible_canned};
use crate::AppState;
use crate::error::ApiError;
use crate::limits;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use switchboard_models::{Agent, AgentId, Presence, Role};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/presence", post(set_presence))
        .route("/api/canned", get(list_canned).post(create_canned))
        .route("/api/canned/{id}", axum::routing::delete(delete_canned))
        .route("/api/agents", get(list_agents).post(create_agent))
        .route("/api/agents/{id}", post(update_agent))
        .route("/api/audit", get(audit))
}

fn admin_only(agent: &Agent, what: &str) -> Result<(), ApiError> {
    match agent.role {
        Role::Admin => Ok(()),
        Role::Agent => Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", format!("Only admins {what}."))),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PresenceBody {
    presence: Presence,
}

/// The caller's own presence: online (takes conversations), away or offline.
async fn set_presence(State(state): State<AppState>, ApiCaller(agent): ApiCaller, request: Result<Json<PresenceBody>, JsonRejection>) -> Result<Json<Value>, ApiError> {
    let request = body(request)?;
    state.engine.set_presence(agent.id, request.presence).await?;
    Ok(Json(json!({"presence": request.presence})))
}

fn canned_json(canned: &switchboard_models::CannedResponse, agent: &Agent) -> Value {
    json!({
        "id": canned.id.to_string(),
        "title": canned.title,
        "body": canned.body,
        "shared": canned.shared,
        "created_at": canned.created_at.to_rfc3339(),
        "manageable": may_manage(canned, agent),
    })
}

/// The shared responses and the caller's own.
async fn list_canned(State(state): State<AppState>, ApiCaller(agent): ApiCaller) -> Result<Json<Value>, ApiError> {
    let canned = visible_canned(state.engine.accounts().canned_responses().await?, &agent);
    Ok(Json(json!({"canned": canned.iter().map(|c| canned_json(c, &agent)).collect::<Vec<_>>()})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CannedBody {
    title: String,
    body: String,
    #[serde(default)]
    shared: bool,
}

async fn create_canned(State(state): State<AppState>, ApiCaller(agent): ApiCaller, request: Result<Json<CannedBody>, JsonRejection>) -> Result<(StatusCode, Json<Value>), ApiError> {
    let request = body(request)?;
    let canned = add_canned(&state, &agent, &request.title, request.body, request.shared).await?;
    Ok((StatusCode::CREATED, Json(canned_json(&canned, &agent))))
}

async fn delete_canned(State(state): State<AppState>, ApiCaller(agent): ApiCaller, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    remove_canned(&state, &agent, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn agent_json(agent: &Agent, rating: Option<&switchboard_core::ports::AgentRatings>) -> Value {
    json!({
        "id": agent.id.to_string(),
        "name": agent.name,
        "email": agent.email,
        "role": agent.role,
        "presence": agent.presence,
        "capacity": agent.capacity,
        "skills": agent.skills,
        "active": agent.active,
        "created_at": agent.created_at.to_rfc3339(),
        "rating": rating.map(|r| json!({"average": r.average, "count": r.count, "days": RATINGS_DAYS})),
    })
}

/// Every account with its presence, capacity and recent rating (admins).
async fn list_agents(State(state): State<AppState>, ApiCaller(agent): ApiCaller) -> Result<Json<Value>, ApiError> {
    admin_only(&agent, "list the accounts")?;
    let agents = state.engine.accounts().list_agents().await?;
    let rated = state.engine.ratings().agent_ratings(state.engine.now() - chrono::Duration::days(RATINGS_DAYS)).await?;
    Ok(Json(json!({"agents": agents.iter().map(|a| agent_json(a, rated.iter().find(|r| r.agent_id == a.id))).collect::<Vec<_>>()})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAgentBody {
    name: String,
    email: String,
    password: String,
    role: Role,
    #[serde(default = "one")]
    capacity: u32,
}

fn one() -> u32 {
    1
}

async fn create_agent(State(state): State<AppState>, ApiCaller(admin): ApiCaller, request: Result<Json<NewAgentBody>, JsonRejection>) -> Result<(StatusCode, Json<Value>), ApiError> {
    admin_only(&admin, "create accounts")?;
    let request = body(request)?;
    limits::check(&[("name", &request.name, limits::AGENT_NAME), ("email", &request.email, limits::EMAIL), ("password", &request.password, limits::PASSWORD)])?;
    let created = crate::accounts::create_account_with_capacity(
        state.engine.accounts(),
        &request.email,
        &request.name,
        request.role,
        &request.password,
        Some(admin.id),
        request.capacity,
        state.account_rules.min_password_chars(),
    )
    .await
    .map_err(|reason| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", reason.to_string()))?;
    Ok((StatusCode::CREATED, Json(agent_json(&created, None))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateAgentBody {
    capacity: Option<u32>,
    active: Option<bool>,
    name: Option<String>,
    email: Option<String>,
    role: Option<Role>,
    /// Replaces the account's skills (`[]`: none).
    skills: Option<Vec<String>>,
}

/// An account's name, email, role, capacity, skills and whether it may sign in (deactivating
/// ends its sessions and tokens).
async fn update_agent(State(state): State<AppState>, ApiCaller(admin): ApiCaller, Path(id): Path<String>, request: Result<Json<UpdateAgentBody>, JsonRejection>) -> Result<Json<Value>, ApiError> {
    admin_only(&admin, "change accounts")?;
    let request = body(request)?;
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "not_found", "No such agent.");
    let id = AgentId::parse(&id).map_err(|_| not_found())?;
    let current = state.engine.accounts().agent(id).await?.ok_or_else(not_found)?;
    let active = request.active.unwrap_or(current.active);
    if id == admin.id && !active {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", "You cannot deactivate your own account."));
    }
    let skills = request
        .skills
        .map(|skills| switchboard_models::skills_checked(skills.iter().map(String::as_str)))
        .transpose()
        .map_err(|reason| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", format!("{reason}.")))?;
    let edit = switchboard_core::AgentEdit { name: request.name, email: request.email, role: request.role, capacity: request.capacity, active: Some(active), skills };
    let updated = super::edit_account(&state, &admin, id, edit).await?;
    Ok(Json(agent_json(&updated, None)))
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct AuditQuery {
    /// An entry number: the entries before it.
    before: Option<i64>,
    /// 1 to 500 (default 100).
    limit: Option<u32>,
    /// An agent's id.
    actor: String,
    action: String,
    /// First and last day, YYYY-MM-DD (UTC).
    from: String,
    to: String,
}

/// The audit log, newest first, by keyset pages (`older`: the next page's `before`).
async fn audit(State(state): State<AppState>, ApiCaller(admin): ApiCaller, query: Result<Query<AuditQuery>, QueryRejection>) -> Result<Json<Value>, ApiError> {
    admin_only(&admin, "read the audit log")?;
    let Query(query) = query.map_err(|rejection| {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", format!("{}. The audit log takes before, limit, actor, action, from and to.", rejection.body_text().trim_end_matches('.')))
    })?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", format!("limit {limit} must be 1 to 500.")));
    }
    let filter = super::AuditFilterParams { actor: query.actor, action: query.action, from: query.from, to: query.to }.filter()?;
    let accounts = state.engine.accounts();
    let mut page = accounts.audit_search(&filter, query.before, limit + 1).await?;
    let more = page.len() > limit as usize;
    page.truncate(limit as usize);
    Ok(Json(json!({
        "entries": page.iter().map(|(number, e)| json!({
            "number": number,
            "at": e.at.to_rfc3339(),
            "actor": e.actor.map(|a| a.to_string()),
            "action": e.action,
            "conversation": e.conversation.map(|c| c.to_string()),
            "subject_agent": e.subject_agent.map(|a| a.to_string()),
            "before": e.before,
            "after": e.after,
        })).collect::<Vec<_>>(),
        "older": more.then(|| page.last().map(|(number, _)| *number)).flatten(),
    })))
}
