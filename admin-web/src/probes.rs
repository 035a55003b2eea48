//! Probes for supervisors and load balancers: `/healthz` (the process answers) and `/readyz`
//! (it can take traffic: the database accepts writes and it is not stopping); `/metrics` in the
//! Prometheus text format, behind `server.metrics_token` when one is set.

use crate::AppState;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde_json::json;

pub fn routes() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).route("/metrics", get(metrics))
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
    if let Some((since, reason)) = state.engine.storage_problem() {
        return unavailable("unavailable", crate::panel::auth::storage_problem_text(since, &reason));
    }
    let read = async { Ok::<_, switchboard_core::EngineError>((state.engine.outbox().outbox_backlog().await?, connections(&state).await?)) };
    match read.await {
        // A connection that is down does not make the node unready: every node shares it.
        Ok(((backlog, oldest), connections)) => {
            let oldest_seconds = oldest.map(|at| (state.engine.now() - at).num_milliseconds().max(0) as f64 / 1000.0);
            Json(json!({"status": "ready", "outbox": {"backlog": backlog, "oldest_seconds": oldest_seconds}, "connections": connections})).into_response()
        }
        Err(error) => unavailable("unavailable", format!("The database cannot be read: {error}")),
    }
}

/// Each configured outside connection (Telegram, Discord, IMAP, SMTP, the LLM) as the node
/// running it last reported: `state` is up, down, silent (that node stopped reporting) or
/// waiting (nobody reported it yet).
pub(crate) async fn connections(state: &AppState) -> Result<Vec<serde_json::Value>, switchboard_core::EngineError> {
    let now = chrono::Utc::now();
    let ago = |at: chrono::DateTime<chrono::Utc>| (now - at).num_milliseconds().max(0) as f64 / 1000.0;
    let rows = state.engine.connection_states().await?;
    Ok(rows
        .into_iter()
        .map(|(name, reported)| match reported {
            None => json!({"name": name, "state": "waiting", "detail": "not reported by any node yet"}),
            Some(reported) => json!({
                "name": name,
                "state": reported.condition(now),
                "detail": reported.detail,
                "node": reported.node,
                "last_ok_at": reported.last_ok_at,
                "last_ok_seconds_ago": reported.last_ok_at.map(ago),
                "last_error": reported.last_error,
                "last_error_at": reported.last_error_at,
                "reported_seconds_ago": ago(reported.updated_at),
            }),
        })
        .collect())
}

async fn metrics(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    if let Some(token) = &state.metrics_token {
        let given = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|given| crate::panel::auth::constant_time_eq(given, token)) {
            return crate::ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "Send server.metrics_token as `Authorization: Bearer <token>`.")
                .into_response();
        }
    }
    let Some(handle) = &state.metrics else {
        return crate::ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no_metrics", "Metrics are not recorded in this process.").into_response();
    };
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], handle.render()).into_response()
}

/// Every HTTP answer's latency, by route (the path pattern, never the path itself) and status.
pub async fn record_latency(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |path| path.as_str().to_string());
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!("switchboard_http_request_seconds", "route" => route, "status" => status).record(started.elapsed().as_secs_f64());
    response
}

