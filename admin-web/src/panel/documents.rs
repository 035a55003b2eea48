//! Documents customers sent for review: the Documents page (pending first), the decision
//! forms it and the conversation page share, and `/api/documents`.

use super::auth::{ApiCaller, Signed};
use super::{error_page, page, views};
use crate::AppState;
use crate::error::ApiError;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use switchboard_core::documents::type_label;
use switchboard_core::ports::{DocumentFilter, DocumentSummary};
use switchboard_models::{DocumentId, DocumentState};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/panel/documents", get(documents_page))
        .route("/panel/documents/{id}/decision", post(decide_form))
        .route("/api/documents", get(documents_api))
        .route("/api/documents/{id}/decision", post(decide_api))
}

/// The lists' query string; anything else is refused.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct DocumentQuery {
    state: String,
    #[serde(rename = "type")]
    kind: String,
    limit: Option<u32>,
    /// After a decision on the page: `approved` or `rejected`.
    done: String,
}

const PAGE_SIZE: u32 = 50;

fn filter_of(state: &AppState, query: Result<Query<DocumentQuery>, QueryRejection>) -> Result<(DocumentQuery, DocumentFilter), ApiError> {
    let bad = |why: String| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", format!("{why}. Documents take state, type and limit (1 to 200)."));
    let Query(query) = query.map_err(|rejection| bad(rejection.body_text().trim_end_matches('.').to_string()))?;
    let doc_state = match query.state.as_str() {
        "" => None,
        given => Some(given.parse::<DocumentState>().map_err(|e| bad(e.to_string()))?),
    };
    let kind = match query.kind.as_str() {
        "" => None,
        given if state.engine.document_types().iter().any(|t| t == given) => Some(given.to_string()),
        given => return Err(bad(format!("type `{given}` is not one of: {}", state.engine.document_types().join(", ")))),
    };
    let limit = query.limit.unwrap_or(PAGE_SIZE);
    if !(1..=200).contains(&limit) {
        return Err(bad(format!("limit `{limit}` must be 1 to 200")));
    }
    Ok((query, DocumentFilter { state: doc_state, kind, conversation: None, limit }))
}

/// One document for the pages: preview, who, what, where it stands.
pub(crate) fn document_view(summary: &DocumentSummary, types: &[String], now: chrono::DateTime<chrono::Utc>) -> Value {
    let d = &summary.document;
    let file_url = format!("/panel/conversations/{}/attachments/{}", d.conversation_id, d.file.key);
    json!({
        "id": d.id.to_string(),
        "conversation_id": d.conversation_id.to_string(),
        "customer": summary.customer,
        "channel": d.channel.as_str(),
        "channel_label": views::title_case(d.channel.as_str()),
        "kind": d.kind,
        "kind_label": views::title_case(&type_label(&d.kind)),
        "file_name": d.file.file_name,
        "file_url": (d.purged_at.is_none()).then_some(file_url),
        "is_image": d.file.is_image(),
        "state": d.state.as_str(),
        "state_label": views::title_case(d.state.as_str()),
        "pending": d.state == DocumentState::Pending,
        "received": views::time(&d.created_at),
        "age": views::wait(now - d.created_at),
        "reviewer": summary.reviewer_name,
        "decided_at": d.decided_at.as_ref().map(views::time),
        "note": d.note,
        "types": type_options(types, &d.kind),
    })
}

/// The configured types to choose from, the document's own first when it is no longer one of them.
fn type_options(types: &[String], current: &str) -> Vec<Value> {
    let option = |t: &str| json!({"value": t, "label": views::title_case(&type_label(t)), "selected": t == current});
    let unlisted = (!types.iter().any(|t| t == current)).then(|| option(current));
    unlisted.into_iter().chain(types.iter().map(|t| option(t))).collect()
}

async fn documents_page(State(state): State<AppState>, signed: Signed, query: Result<Query<DocumentQuery>, QueryRejection>) -> Result<Response, ApiError> {
    let (query, filter) = match filter_of(&state, query) {
        Ok(both) => both,
        Err(error) => return Ok(error_page(&state, error, "/panel/documents")),
    };
    let listed = state.engine.documents().documents(&filter).await?;
    let types = state.engine.document_types();
    let now = state.engine.now();
    let data = json!({
        "filters": {"state": query.state, "type": query.kind},
        "states": views::options(DocumentState::ALL, |s| views::title_case(s.as_str())),
        "type_options": types.iter().map(|t| json!({"value": t, "label": views::title_case(&type_label(t))})).collect::<Vec<_>>(),
        "documents": listed.iter().map(|d| document_view(d, &types, now)).collect::<Vec<_>>(),
        "total": match listed.len() { 1 => "1 document".to_string(), n => format!("{n} documents") },
        "back": "documents",
        "flash": views::action_done(&query.done).map(|d| json!({"kind": "ok", "text": d.confirmation})),
    });
    Ok(state.views.render("documents", &page(&signed, "documents", "Documents", data))?.into_response())
}

#[derive(Deserialize)]
struct DecisionForm {
    csrf: String,
    decision: String,
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    note: String,
    /// Where the form was: "documents" or "conversation".
    #[serde(default)]
    back: String,
}

async fn decide_form(State(state): State<AppState>, signed: Signed, Path(id): Path<String>, Form(form): Form<DecisionForm>) -> Result<Response, ApiError> {
    signed.check_csrf(&form.csrf)?;
    let id = document_id(&id)?;
    let document = state.engine.documents().document(id).await?.ok_or_else(not_found)?;
    let back = match form.back.as_str() {
        "conversation" => format!("/panel/conversations/{}", document.conversation_id),
        _ => "/panel/documents".to_string(),
    };
    match decide(&state, &signed.agent, id, &form.decision, &form.kind, form.note).await {
        Ok(decided) => {
            let mark = if back.contains('?') { '&' } else { '?' };
            Ok(Redirect::to(&format!("{back}{mark}done={}#document-{}", decided.state, decided.id)).into_response())
        }
        Err(error) => Ok(error_page(&state, error, &back)),
    }
}

async fn decide(
    state: &AppState,
    agent: &switchboard_models::Agent,
    id: DocumentId,
    decision: &str,
    kind: &str,
    note: String,
) -> Result<switchboard_models::Document, ApiError> {
    let approved = match decision {
        "approve" => true,
        "reject" => false,
        other => return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_value", format!("decision `{other}` is not approve or reject"))),
    };
    let current = state.engine.documents().document(id).await?.ok_or_else(not_found)?;
    let kind = if kind.is_empty() { current.kind.as_str() } else { kind };
    Ok(state.engine.decide_document(id, agent.id, approved, kind, Some(note)).await?)
}

fn document_id(text: &str) -> Result<DocumentId, ApiError> {
    DocumentId::parse(text).map_err(|_| not_found())
}

fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "No such document.")
}

fn document_json(summary: &DocumentSummary) -> Value {
    let d = &summary.document;
    json!({
        "id": d.id, "conversation_id": d.conversation_id, "customer": summary.customer, "channel": d.channel,
        "type": d.kind, "state": d.state, "file_name": d.file.file_name, "content_type": d.file.content_type, "size": d.file.size,
        "file_url": d.purged_at.is_none().then(|| format!("/panel/conversations/{}/attachments/{}", d.conversation_id, d.file.key)),
        "received_at": d.created_at, "reviewer": summary.reviewer_name, "reviewer_id": d.reviewer_id, "decided_at": d.decided_at,
        "note": d.note, "purged_at": d.purged_at,
    })
}

/// Documents as JSON: pending first (the longest waiting first), then the decided, newest first.
async fn documents_api(State(state): State<AppState>, _caller: ApiCaller, query: Result<Query<DocumentQuery>, QueryRejection>) -> Result<Json<Value>, ApiError> {
    let (_, filter) = filter_of(&state, query)?;
    let listed = state.engine.documents().documents(&filter).await?;
    Ok(Json(json!({ "documents": listed.iter().map(document_json).collect::<Vec<_>>() })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionBody {
    decision: String,
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    note: String,
}

/// Records a decision: `{"decision": "approve" | "reject", "type": "...", "note": "..."}` (a
/// rejection needs a note). 409 when someone decided first.
async fn decide_api(State(state): State<AppState>, ApiCaller(agent): ApiCaller, Path(id): Path<String>, body: Result<Json<DecisionBody>, JsonRejection>) -> Result<Json<Value>, ApiError> {
    let Json(body) = body.map_err(|rejection| {
        ApiError::new(StatusCode::BAD_REQUEST, "malformed_request", format!("Expected JSON {{\"decision\": \"approve\" or \"reject\", \"note\": \"…\"}}: {}", rejection.body_text()))
    })?;
    let decided = decide(&state, &agent, document_id(&id)?, &body.decision, &body.kind, body.note).await?;
    Ok(Json(json!({"id": decided.id, "state": decided.state, "type": decided.kind, "note": decided.note})))
}
