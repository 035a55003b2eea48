//! The Webhooks page and `/api/webhooks` (admins): URLs told about conversations, messages and
//! ratings, each post signed; the delivery log with payloads and answers, a test post, and a
//! delivery sent again.

use super::auth::{ApiCaller, Signed, SignedAdmin};
use super::{json_body, page};
use crate::AppState;
use crate::error::ApiError;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use switchboard_core::ports::{Webhook, WebhookDelivery};
use switchboard_core::webhooks::{CHOOSABLE, DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER};
use switchboard_core::{EngineError, WebhookEdit};
use switchboard_models::WebhookEvent;

/// Deliveries shown per page of the log.
const LOG_PAGE: u32 = 50;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/panel/admin/webhooks", get(webhooks_page).post(add_from_form))
        .route("/panel/admin/webhooks/{id}", get(webhook_page).post(change_from_form))
        .route("/api/webhooks", get(list_webhooks).post(create_webhook))
        .route("/api/webhooks/{id}", get(get_webhook).patch(update_webhook).delete(delete_webhook))
        .route("/api/webhooks/{id}/deliveries", get(list_deliveries))
        .route("/api/webhooks/{id}/ping", post(ping_webhook))
        .route("/api/webhooks/{id}/deliveries/{delivery}/retry", post(retry_delivery))
}

fn webhook_json(webhook: &Webhook) -> Value {
    json!({
        "id": webhook.id,
        "url": webhook.url,
        "events": webhook.events,
        "secret": webhook.secret,
        "active": webhook.active,
        "description": webhook.description,
        "consecutive_failures": webhook.consecutive_failures,
        "disabled_reason": webhook.disabled_reason,
        "created_at": webhook.created_at,
        "updated_at": webhook.updated_at,
    })
}

fn delivery_json(delivery: &WebhookDelivery) -> Value {
    json!({
        "id": delivery.id,
        "event": delivery.event,
        "event_id": delivery.event_id,
        "state": delivery.state.as_str(),
        "attempts": delivery.attempts,
        "created_at": delivery.created_at,
        "next_attempt_at": (delivery.state == switchboard_core::ports::WebhookDeliveryState::Pending).then_some(delivery.next_attempt_at),
        "last_attempt_at": delivery.last_attempt_at,
        "last_status": delivery.last_status,
        "last_response": delivery.last_response,
        "last_error": delivery.last_error,
        "payload": serde_json::from_str::<Value>(&delivery.payload).unwrap_or(Value::String(delivery.payload.clone())),
    })
}

async fn list_webhooks(State(state): State<AppState>, ApiCaller(agent): ApiCaller) -> Result<Json<Value>, ApiError> {
    let webhooks = state.engine.webhooks(&agent).await?;
    Ok(Json(json!({"webhooks": webhooks.iter().map(webhook_json).collect::<Vec<_>>()})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookBody {
    url: Option<String>,
    events: Option<Vec<WebhookEvent>>,
    active: Option<bool>,
    description: Option<String>,
    #[serde(default)]
    new_secret: bool,
}

impl From<WebhookBody> for WebhookEdit {
    fn from(body: WebhookBody) -> Self {
        WebhookEdit { url: body.url, events: body.events, active: body.active, description: body.description, new_secret: body.new_secret }
    }
}

/// Adds a webhook: `{"url": "https://…", "events": ["conversation.escalated"]}`; the answer
/// holds its signing secret.
async fn create_webhook(State(state): State<AppState>, ApiCaller(agent): ApiCaller, body: Result<Json<WebhookBody>, JsonRejection>) -> Result<(StatusCode, Json<Value>), ApiError> {
    let edit: WebhookEdit = json_body(body)?.into();
    if edit.url.is_none() || edit.events.is_none() {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_message", "A new webhook needs `url` and `events`."));
    }
    let webhook = state.engine.save_webhook(None, edit, &agent).await?;
    Ok((StatusCode::CREATED, Json(webhook_json(&webhook))))
}

/// A webhook with its latest deliveries.
async fn get_webhook(State(state): State<AppState>, ApiCaller(agent): ApiCaller, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let webhook = state.engine.webhook(&id, &agent).await?;
    let deliveries = state.engine.webhook_deliveries().webhook_deliveries(&webhook.id, None, LOG_PAGE).await?;
    let mut answer = webhook_json(&webhook);
    answer["deliveries"] = deliveries.iter().map(delivery_json).collect();
    Ok(Json(answer))
}

/// Changes what is given; `"active": true` turns a webhook on again, `"new_secret": true`
/// replaces its secret.
async fn update_webhook(State(state): State<AppState>, ApiCaller(agent): ApiCaller, Path(id): Path<String>, body: Result<Json<WebhookBody>, JsonRejection>) -> Result<Json<Value>, ApiError> {
    let webhook = state.engine.save_webhook(Some(&id), json_body(body)?.into(), &agent).await?;
    Ok(Json(webhook_json(&webhook)))
}

async fn delete_webhook(State(state): State<AppState>, ApiCaller(agent): ApiCaller, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    state.engine.delete_webhook(&id, &agent).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogQuery {
    before: Option<i64>,
    limit: Option<u32>,
}

/// The delivery log, newest first; `?before=<id>` pages back.
async fn list_deliveries(State(state): State<AppState>, ApiCaller(agent): ApiCaller, Path(id): Path<String>, query: Result<Query<LogQuery>, QueryRejection>) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(|rejection| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", rejection.body_text()))?;
    let limit = query.limit.unwrap_or(LOG_PAGE).clamp(1, 500);
    let webhook = state.engine.webhook(&id, &agent).await?;
    let deliveries = state.engine.webhook_deliveries().webhook_deliveries(&webhook.id, query.before, limit).await?;
    let next = (deliveries.len() == limit as usize).then(|| deliveries.last().map(|d| d.id)).flatten();
    Ok(Json(json!({"deliveries": deliveries.iter().map(delivery_json).collect::<Vec<_>>(), "next_before": next})))
}

/// Queues a `ping` event for this webhook.
async fn ping_webhook(State(state): State<AppState>, ApiCaller(agent): ApiCaller, Path(id): Path<String>) -> Result<(StatusCode, Json<Value>), ApiError> {
    let event_id = state.engine.ping_webhook(&id, &agent).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"event_id": event_id}))))
}

async fn retry_delivery(State(state): State<AppState>, ApiCaller(agent): ApiCaller, Path((id, delivery)): Path<(String, i64)>) -> Result<(StatusCode, Json<Value>), ApiError> {
    state.engine.retry_webhook_delivery(&id, delivery, &agent).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"queued": delivery}))))
}

fn event_choices(chosen: &[WebhookEvent]) -> Vec<Value> {
    CHOOSABLE
        .iter()
        .map(|event| json!({"name": event.as_str(), "id": event.as_str().replace('.', "-"), "checked": chosen.contains(event)}))
        .collect()
}

fn webhook_row(webhook: &Webhook) -> Value {
    let mut row = webhook_json(webhook);
    row["events_text"] = json!(webhook.events.iter().map(|e| e.as_str()).collect::<Vec<_>>().join(", "));
    row
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Flash {
    done: String,
}

fn flash_of(done: &str) -> Option<&'static str> {
    match done {
        "added" => Some("Webhook added. Its secret is below: receivers check each post's signature with it."),
        "saved" => Some("Webhook saved."),
        "pinged" => Some("A test post is queued; it shows in the log below within a second or two."),
        "resent" => Some("The delivery is queued to be sent again."),
        "secret" => Some("A new secret is in use; the old one no longer signs posts."),
        "deleted" => Some("Webhook deleted with its delivery log."),
        _ => None,
    }
}

async fn list_data(state: &AppState, signed: &Signed, typed: Option<(&str, &[WebhookEvent], &str)>, error: Option<String>) -> Result<Value, ApiError> {
    let webhooks = state.engine.webhooks(&signed.agent).await?;
    let (url, events, description) = typed.unwrap_or(("", &[], ""));
    Ok(json!({
        "webhooks": webhooks.iter().map(webhook_row).collect::<Vec<_>>(),
        "form": {"url": url, "description": description, "events": event_choices(events)},
        "error": error,
        "signature_header": SIGNATURE_HEADER,
        "event_header": EVENT_HEADER,
        "delivery_header": DELIVERY_HEADER,
    }))
}

async fn webhooks_page(State(state): State<AppState>, SignedAdmin(signed): SignedAdmin, Query(flash): Query<Flash>) -> Result<Html<String>, ApiError> {
    let mut data = list_data(&state, &signed, None, None).await?;
    if let Some(text) = flash_of(&flash.done) {
        data["flash"] = json!({"kind": "ok", "text": text});
    }
    state.views.render("webhooks", &page(&signed, "webhooks", "Webhooks", data))
}

/// A form's fields: `csrf`, `url`, `description`, `action`, one `event` per box ticked.
fn form_field<'a>(fields: &'a [(String, String)], name: &str) -> &'a str {
    fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str()).unwrap_or_default()
}

fn form_events(fields: &[(String, String)]) -> Result<Vec<WebhookEvent>, String> {
    fields.iter().filter(|(n, _)| n == "event").map(|(_, v)| v.parse::<WebhookEvent>().map_err(|e| e.to_string())).collect()
}

async fn add_from_form(State(state): State<AppState>, SignedAdmin(signed): SignedAdmin, Form(fields): Form<Vec<(String, String)>>) -> Result<Response, ApiError> {
    signed.check_csrf(form_field(&fields, "csrf"))?;
    let (url, description) = (form_field(&fields, "url"), form_field(&fields, "description"));
    let events = form_events(&fields).map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_message", e))?;
    let edit = WebhookEdit { url: Some(url.to_string()), events: Some(events.clone()), description: Some(description.to_string()), ..WebhookEdit::default() };
    match state.engine.save_webhook(None, edit, &signed.agent).await {
        Ok(webhook) => Ok(Redirect::to(&format!("/panel/admin/webhooks/{}?done=added", webhook.id)).into_response()),
        Err(EngineError::Invalid(problem)) => {
            let data = list_data(&state, &signed, Some((url, &events, description)), Some(format!("Not added. {problem}"))).await?;
            let html = state.views.render("webhooks", &page(&signed, "webhooks", "Webhooks", data))?;
            Ok((StatusCode::UNPROCESSABLE_ENTITY, html).into_response())
        }
        Err(error) => Err(error.into()),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct WebhookPageQuery {
    done: String,
    before: Option<i64>,
}

async fn detail_data(state: &AppState, webhook: &Webhook, before: Option<i64>, error: Option<String>) -> Result<Value, ApiError> {
    let deliveries = state.engine.webhook_deliveries().webhook_deliveries(&webhook.id, before, LOG_PAGE).await?;
    let older = (deliveries.len() == LOG_PAGE as usize).then(|| deliveries.last().map(|d| d.id)).flatten();
    let rows: Vec<Value> = deliveries
        .iter()
        .map(|d| {
            let mut row = delivery_json(d);
            row["payload_text"] = json!(serde_json::from_str::<Value>(&d.payload).ok().and_then(|v| serde_json::to_string_pretty(&v).ok()).unwrap_or(d.payload.clone()));
            row["resendable"] = json!(d.state != switchboard_core::ports::WebhookDeliveryState::Pending);
            row["created_text"] = json!(d.created_at.format("%Y-%m-%d %H:%M:%S UTC").to_string());
            row["next_text"] = json!(d.next_attempt_at.format("%H:%M:%S UTC").to_string());
            row
        })
        .collect();
    Ok(json!({
        "webhook": webhook_row(webhook),
        "events": event_choices(&webhook.events),
        "deliveries": rows,
        "older": older,
        "error": error,
        "signature_header": SIGNATURE_HEADER,
    }))
}

async fn webhook_page(State(state): State<AppState>, SignedAdmin(signed): SignedAdmin, Path(id): Path<String>, Query(query): Query<WebhookPageQuery>) -> Result<Html<String>, ApiError> {
    let webhook = state.engine.webhook(&id, &signed.agent).await?;
    let mut data = detail_data(&state, &webhook, query.before, None).await?;
    if let Some(text) = flash_of(&query.done) {
        data["flash"] = json!({"kind": "ok", "text": text});
    }
    state.views.render("webhook", &page(&signed, "webhooks", "Webhook", data))
}

/// The detail page's forms: `action` is save, on, off, secret, ping, delete or resend (with
/// `delivery`).
async fn change_from_form(State(state): State<AppState>, SignedAdmin(signed): SignedAdmin, Path(id): Path<String>, Form(fields): Form<Vec<(String, String)>>) -> Result<Response, ApiError> {
    signed.check_csrf(form_field(&fields, "csrf"))?;
    let done = |what: &str| Ok(Redirect::to(&format!("/panel/admin/webhooks/{id}?done={what}")).into_response());
    let agent = &signed.agent;
    let outcome = match form_field(&fields, "action") {
        "save" => {
            let events = form_events(&fields).map_err(EngineError::Invalid);
            match events {
                Ok(events) => {
                    let edit = WebhookEdit {
                        url: Some(form_field(&fields, "url").to_string()),
                        events: Some(events),
                        description: Some(form_field(&fields, "description").to_string()),
                        ..WebhookEdit::default()
                    };
                    state.engine.save_webhook(Some(&id), edit, agent).await.map(|_| "saved")
                }
                Err(error) => Err(error),
            }
        }
        "on" | "off" => {
            let active = form_field(&fields, "action") == "on";
            state.engine.save_webhook(Some(&id), WebhookEdit { active: Some(active), ..WebhookEdit::default() }, agent).await.map(|_| "saved")
        }
        "secret" => state.engine.save_webhook(Some(&id), WebhookEdit { new_secret: true, ..WebhookEdit::default() }, agent).await.map(|_| "secret"),
        "ping" => state.engine.ping_webhook(&id, agent).await.map(|_| "pinged"),
        "resend" => match form_field(&fields, "delivery").parse::<i64>() {
            Ok(delivery) => state.engine.retry_webhook_delivery(&id, delivery, agent).await.map(|_| "resent"),
            Err(_) => Err(EngineError::Invalid("the delivery to send again is not a number; reload the page".into())),
        },
        "delete" => {
            state.engine.delete_webhook(&id, agent).await?;
            return Ok(Redirect::to("/panel/admin/webhooks?done=deleted").into_response());
        }
        other => Err(EngineError::Invalid(format!("unknown action `{other}`; reload the page"))),
    };
    match outcome {
        Ok(what) => done(what),
        Err(EngineError::Invalid(problem) | EngineError::Conflict(problem)) => {
            let webhook = state.engine.webhook(&id, agent).await?;
            let data = detail_data(&state, &webhook, None, Some(format!("Not done. {problem}"))).await?;
            let html = state.views.render("webhook", &page(&signed, "webhooks", "Webhook", data))?;
            Ok((StatusCode::UNPROCESSABLE_ENTITY, html).into_response())
        }
        Err(error) => Err(error.into()),
    }
}
