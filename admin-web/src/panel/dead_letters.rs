//! Inbound messages a channel set aside after repeated failures (admins): listed on the System
//! page and at `/api/dead-letters`, replayed through their channel or dismissed.

use super::auth::{ApiCaller, Signed, SignedAdmin};
use super::page;
use crate::AppState;
use crate::error::ApiError;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use switchboard_core::EngineError;
use switchboard_core::ports::DeadLetter;
use switchboard_models::Agent;

/// Set-aside messages shown or listed at once.
const SHOWN: u32 = 100;
/// How much of a payload the list shows.
const PAYLOAD_SHOWN: usize = 4_000;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/panel/admin/system/dead-letters/{id}", post(settle_from_form))
        .route("/api/dead-letters", get(list))
        .route("/api/dead-letters/{id}", get(one))
        .route("/api/dead-letters/{id}/replay", post(replay))
        .route("/api/dead-letters/{id}/dismiss", post(dismiss))
}

/// The payload as text (mails and JSON are text; anything else shows its replacement marks).
fn payload_text(letter: &DeadLetter, limit: usize) -> String {
    let text = String::from_utf8_lossy(&letter.letter.payload);
    match text.char_indices().nth(limit) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.into_owned(),
    }
}

fn letter_json(letter: &DeadLetter, payload_limit: usize) -> Value {
    json!({
        "id": letter.id,
        "channel": letter.letter.channel,
        "external_id": letter.letter.external_id,
        "error": letter.letter.error,
        "attempts": letter.letter.attempts,
        "first_failed_at": letter.letter.first_failed_at,
        "last_failed_at": letter.letter.last_failed_at,
        "state": letter.state.as_str(),
        "settled_by": letter.settled_by,
        "settled_at": letter.settled_at,
        "payload": payload_text(letter, payload_limit),
    })
}

/// The System page's rows: messages still set aside, newest first.
pub(super) async fn waiting_rows(state: &AppState, admin: &Agent) -> Result<Vec<Value>, ApiError> {
    let letters = state.engine.dead_letters(false, SHOWN, admin).await?;
    Ok(letters
        .iter()
        .map(|letter| {
            let mut row = letter_json(letter, PAYLOAD_SHOWN);
            row["failed_text"] = json!(letter.letter.last_failed_at.format("%Y-%m-%d %H:%M:%S UTC").to_string());
            row
        })
        .collect())
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct Flash {
    done: String,
}

impl Flash {
    pub(super) fn text(&self) -> Option<&'static str> {
        match self.done.as_str() {
            "replayed" => Some("The message was stored and is answered like any other."),
            "dismissed" => Some("The message was dismissed."),
            _ => None,
        }
    }
}

async fn settle_from_form(State(state): State<AppState>, SignedAdmin(signed): SignedAdmin, Path(id): Path<i64>, Form(fields): Form<Vec<(String, String)>>) -> Result<Response, ApiError> {
    let field = |name: &str| fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str()).unwrap_or_default();
    signed.check_csrf(field("csrf"))?;
    let outcome = match field("action") {
        "replay" => state.engine.replay_dead_letter(id, &state.replayers, &signed.agent).await.map(|()| "replayed"),
        "dismiss" => state.engine.dismiss_dead_letter(id, &signed.agent).await.map(|()| "dismissed"),
        other => Err(EngineError::Invalid(format!("unknown action `{other}`; reload the page"))),
    };
    match outcome {
        Ok(done) => Ok(Redirect::to(&format!("/panel/admin/system?done={done}")).into_response()),
        Err(EngineError::Conflict(problem) | EngineError::Invalid(problem)) => refused(&state, &signed, &problem).await,
        Err(error) => Err(error.into()),
    }
}

async fn refused(state: &AppState, signed: &Signed, problem: &str) -> Result<Response, ApiError> {
    let mut data = super::system_data(state, signed).await?;
    data["flash"] = json!({"kind": "error", "text": format!("Not done: {problem}.")});
    let html = state.views.render("system", &page(signed, "system", "System", data))?;
    Ok((StatusCode::CONFLICT, html).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// Settled ones too.
    #[serde(default)]
    all: bool,
    limit: Option<u32>,
}

/// Set-aside messages, newest first; `?all=true` includes replayed and dismissed ones.
async fn list(State(state): State<AppState>, ApiCaller(agent): ApiCaller, query: Result<Query<ListQuery>, QueryRejection>) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(|rejection| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", format!("{} The list takes all and limit.", rejection.body_text())))?;
    let letters = state.engine.dead_letters(query.all, query.limit.unwrap_or(SHOWN).clamp(1, 1_000), &agent).await?;
    Ok(Json(json!({"dead_letters": letters.iter().map(|l| letter_json(l, PAYLOAD_SHOWN)).collect::<Vec<_>>()})))
}

/// One set-aside message with its whole payload.
async fn one(State(state): State<AppState>, ApiCaller(agent): ApiCaller, Path(id): Path<i64>) -> Result<Json<Value>, ApiError> {
    let letter = state.engine.dead_letter(id, &agent).await?;
    Ok(Json(letter_json(&letter, usize::MAX)))
}

async fn replay(State(state): State<AppState>, ApiCaller(agent): ApiCaller, Path(id): Path<i64>) -> Result<Json<Value>, ApiError> {
    state.engine.replay_dead_letter(id, &state.replayers, &agent).await?;
    Ok(Json(json!({"id": id, "state": "replayed"})))
}

async fn dismiss(State(state): State<AppState>, ApiCaller(agent): ApiCaller, Path(id): Path<i64>) -> Result<Json<Value>, ApiError> {
    state.engine.dismiss_dead_letter(id, &agent).await?;
    Ok(Json(json!({"id": id, "state": "dismissed"})))
}
