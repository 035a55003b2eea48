//! Probes for supervisors and load balancers: `/healthz` (the process answers) and `/readyz`
//! (it can take traffic: the database accepts writes and it is not stopping).

use crate::AppState;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde_json::json;

pub fn routes() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz))
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(state): State<AppState>) -> Response {
    let unavailable = |status: &str, reason: String| {
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": status, "reason": reason}))).into_response()
    };
    if state.closing.is_cancelled() {
        return unavailable("stopping", "Switchboard is stopping; send new traffic to another node.".into());
    }
    match state.engine.storage_problem() {
        Some((since, reason)) => unavailable("unavailable", crate::panel::auth::storage_problem_text(since, &reason)),
        None => Json(json!({"status": "ready"})).into_response(),
    }
}
