//! The JSON API: the panel's actions for integrations, authenticated by per-user API tokens.

use super::auth::ApiCaller;
use super::{ListQuery, apply_action, conversation_id, filter_of, list_page, list_query, messages_before};
use axum::extract::rejection::QueryRejection;
use crate::AppState;
use crate::error::ApiError;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use switchboard_models::{Conversation, Message};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/me", get(me))
        .route("/api/conversations", get(list))
        .route("/api/conversations/{id}", get(detail))
        .route("/api/conversations/{id}/actions", post(action))
        .route("/api/conversations/{id}/draft", post(draft))
        .route("/api/conversations/{id}/rating", post(rate))
        .route("/api/ratings", get(agent_ratings))
        .route("/api/admin/intents/reload", post(reload_intents))
        .route("/api/notifications", get(notifications))
        .route("/api/notifications/read", post(read_notifications))
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct NotificationsQuery {
    /// A notification id: only older ones.
    before: Option<i64>,
    /// 1 to 200 (default 50).
    limit: Option<u32>,
}

/// The caller's notifications, newest first, and how many are unread.
async fn notifications(
    State(state): State<AppState>,
    ApiCaller(agent): ApiCaller,
    query: Result<Query<NotificationsQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(|rejection| {
        let why = rejection.body_text();
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", format!("{}. Notifications take before (an id) and limit (1 to 200).", why.trim_end_matches('.')))
    })?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", format!("limit {limit} is not within 1..=200")));
    }
    let store = state.engine.notifications();
    let shown = store.notifications_of(agent.id, query.before, limit).await?;
    let unread = store.unread_notifications(agent.id).await?;
    Ok(Json(json!({"unread": unread, "notifications": shown})))
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct ReadBody {
    /// Only this conversation's notifications; all when absent.
    conversation_id: Option<String>,
}

async fn read_notifications(
    State(state): State<AppState>,
    ApiCaller(agent): ApiCaller,
    body: Result<Json<ReadBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(body) = body.map_err(|rejection| {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", format!("{} Send {{}} or {{\"conversation_id\": \"…\"}}.", rejection.body_text()))
    })?;
    let conversation = body.conversation_id.as_deref().map(conversation_id).transpose()?;
    let marked = state.engine.notifications().mark_notifications_read(agent.id, conversation, state.engine.now()).await?;
    Ok(Json(json!({"marked_read": marked})))
}

/// An AI-drafted reply to edit; nothing is sent.
async fn draft(State(state): State<AppState>, ApiCaller(agent): ApiCaller, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let text = super::draft_reply(&state, &agent, conversation_id(&id)?).await?;
    Ok(Json(json!({"draft": text})))
}

/// Re-reads the intents file; a broken file is refused with its line and the old intents stay.
async fn reload_intents(State(state): State<AppState>, ApiCaller(agent): ApiCaller) -> Result<Json<Value>, ApiError> {
    if agent.role != switchboard_models::Role::Admin {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "Only admins can reload the intents."));
    }
    let Some(intents) = state.intents.clone() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_model",
            "The keyword classifier is running (no NLP model loaded), so there are no intents to reload.",
        ));
    };
    let result = intents.reload().await;
    match result {
        Ok(report) => Ok(Json(json!({"reloaded": true, "report": report}))),
        Err(why) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_intents",
            format!("{why}. The previous intents are still in use."),
        )),
    }
}

async fn me(ApiCaller(agent): ApiCaller) -> Json<Value> {
    Json(json!({"id": agent.id, "email": agent.email, "name": agent.name, "role": agent.role, "presence": agent.presence}))
}

fn conversation_json(c: &Conversation) -> Value {
    json!({
        "id": c.id, "contact_id": c.contact_id, "channel": c.channel, "handler": c.handler, "status": c.status,
        "priority": c.priority, "category": c.category, "escalation": c.escalation,
        "version": c.updated_at.timestamp_millis(), "created_at": c.created_at, "updated_at": c.updated_at,
    })
}

fn message_json(m: &Message) -> Value {
    json!({
        "id": m.id, "seq": m.seq, "sender": m.sender, "agent_id": m.agent_id, "text": m.text, "internal": m.internal,
        "attachments": m.attachments.iter().map(|a| json!({"name": a.file_name, "content_type": a.content_type, "size": a.size})).collect::<Vec<_>>(),
        "classification": m.classification, "created_at": m.created_at, "delivery": m.delivery,
    })
}

async fn list(
    State(state): State<AppState>,
    ApiCaller(agent): ApiCaller,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let filter = filter_of(&state, &list_query(query)?, &agent)?;
    let (rows, next, total) = list_page(state.engine.listings(), &filter).await?;
    let total = json!({"count": total.count, "search_capped": total.search_capped});
    Ok(Json(json!({"next": next, "total": total, "conversations": rows.iter().map(|s| {
        let mut row = conversation_json(&s.conversation);
        row["customer"] = json!(s.customer);
        row["last_text"] = json!(s.last_text);
        if let Some(matched) = &s.matched_text {
            row["matched_text"] = json!(matched);
        }
        row["undelivered"] = json!(s.undelivered);
        row["customer_unreachable"] = json!(s.customer_unreachable);
        row
    }).collect::<Vec<_>>()})))
}

/// Which messages a conversation's detail carries: the newest page by default, older pages
/// with `before`, newer ones with `after` (to catch up from a seq already seen).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DetailQuery {
    before: Option<i64>,
    after: Option<i64>,
    limit: Option<u32>,
}

const DETAIL_MESSAGES: u32 = 200;
const DETAIL_MESSAGES_MAX: u32 = 1000;

async fn detail(
    State(state): State<AppState>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
    query: Result<Query<DetailQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let refused = |why: String| {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", format!("{why}. A conversation takes before or after (a message seq) and limit (1 to {DETAIL_MESSAGES_MAX})."))
    };
    let Query(query) = query.map_err(|rejection| refused(rejection.body_text().trim_end_matches('.').to_string()))?;
    let limit = query.limit.unwrap_or(DETAIL_MESSAGES);
    if !(1..=DETAIL_MESSAGES_MAX).contains(&limit) {
        return Err(refused(format!("limit {limit} is out of range")));
    }
    let store = state.engine.conversations();
    let c = store
        .conversation(conversation_id(&id)?)
        .await?
        .filter(|c| super::may_read(&state, &caller, c))
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", "No such conversation."))?;
    let (messages, earlier, later) = match (query.before, query.after) {
        (Some(_), Some(_)) => return Err(refused("before and after were both given".into())),
        (before, None) => {
            let (page, earlier) = messages_before(store, c.id, before, limit).await?;
            let later = before.and_then(|_| page.last().map(|m| m.seq));
            (page, earlier, later)
        }
        (None, Some(after)) => {
            let mut page = store.conversation_messages(c.id, after, limit + 1).await?;
            let more = page.len() > limit as usize;
            page.truncate(limit as usize);
            let later = more.then(|| page.last().map(|m| m.seq)).flatten();
            let earlier = page_first_seq(&page, after);
            (page, earlier, later)
        }
    };
    let contact = store.contact(c.contact_id).await?;
    let escalations = store.escalations_of(c.id).await?;
    let ratings = state.engine.ratings().ratings_of(c.id).await?;
    Ok(Json(json!({
        "conversation": conversation_json(&c),
        "escalations": escalations,
        "ratings": ratings,
        "customer": contact.map(|k| json!({"id": k.id, "name": k.display_name, "label": k.label(), "channel": k.channel, "external_id": k.external_id, "email": k.email})),
        "messages": messages.iter().map(message_json).collect::<Vec<_>>(),
        "earlier": earlier,
        "later": later,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RatingBody {
    score: u8,
}

/// Records the customer's rating of the conversation's latest resolution, as an integration
/// (a survey page of the site's own) got it: taken only while the bot waits for one, so a
/// late or repeated rating is refused with 409.
async fn rate(
    State(state): State<AppState>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
    body: Result<Json<RatingBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    // A customer's rating comes through an integration an admin set up, never from the
    // agent being rated.
    if caller.role != switchboard_models::Role::Admin {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "Only an admin's API token records customers' ratings."));
    }
    let Json(RatingBody { score }) = body.map_err(|rejection| {
        ApiError::new(StatusCode::BAD_REQUEST, "malformed_request", format!("Expected JSON {{\"score\": 1 to 5}}: {}", rejection.body_text()))
    })?;
    if !(1..=5).contains(&score) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid_score", format!("A rating is 1 to 5, not {score}.")));
    }
    let c = state
        .engine
        .conversations()
        .conversation(conversation_id(&id)?)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", "No such conversation."))?;
    if matches!(&c.awaiting, Some(switchboard_models::Awaiting::Rating { agent, .. }) if *agent == caller.id) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "Nobody records a rating of their own help."));
    }
    if !state.engine.rate(c.id, c.contact_id, score).await? {
        return Err(ApiError::new(StatusCode::CONFLICT, "no_rating_awaited", "No rating is awaited for this conversation (rated already, or not resolved)."));
    }
    Ok(Json(json!({ "rated": score })))
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RatingsQuery {
    /// The last this many days (default 30, at most 366).
    days: Option<u32>,
}

/// Each rated agent's number of ratings and average over the last days.
async fn agent_ratings(
    State(state): State<AppState>,
    ApiCaller(caller): ApiCaller,
    query: Result<Query<RatingsQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    if caller.role != switchboard_models::Role::Admin {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "Agents' ratings are for admins, as on the Agents page."));
    }
    let refused = |why: String| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", format!("{why}. Ratings take days (1 to 366)."));
    let Query(query) = query.map_err(|rejection| refused(rejection.body_text().trim_end_matches('.').to_string()))?;
    let days = query.days.unwrap_or(30);
    if !(1..=366).contains(&days) {
        return Err(refused(format!("days {days} is out of range")));
    }
    let since = state.engine.now() - chrono::Duration::days(i64::from(days));
    let agents = state.engine.accounts().list_agents().await?;
    let rated = state.engine.ratings().agent_ratings(since).await?;
    Ok(Json(json!({
        "days": days,
        "agents": rated.iter().map(|r| json!({
            "agent_id": r.agent_id,
            "name": agents.iter().find(|a| a.id == r.agent_id).map(|a| a.name.clone()),
            "ratings": r.count,
            "average": (r.average * 100.0).round() / 100.0,
        })).collect::<Vec<_>>(),
    })))
}

/// The `before` cursor for the messages preceding a page read forwards from `after`.
fn page_first_seq(page: &[Message], after: i64) -> Option<i64> {
    (after > 0).then(|| page.first().map_or(after + 1, |m| m.seq))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionBody {
    /// reply, note, take, release, handback, status, priority, category, assign or retry.
    action: String,
    #[serde(default)]
    text: String,
    /// The new status, priority or category, the agent id to assign to, or the seq of the reply to retry.
    #[serde(default)]
    value: String,
    /// The conversation's `version` as last read; a change made since is a 409.
    version: Option<i64>,
}

async fn action(
    State(state): State<AppState>,
    ApiCaller(agent): ApiCaller,
    Path(id): Path<String>,
    body: Result<Json<ActionBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(body) = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return crate::limits::too_large();
        }
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_request",
            format!("Expected JSON {{\"action\": \"…\", \"text\"?: \"…\", \"value\"?: \"…\", \"version\"?: 123}}: {}", rejection.body_text()),
        )
    })?;
    let id = conversation_id(&id)?;
    apply_action(&state, &agent, id, &body.action, body.text, &body.value, body.version).await?;
    let c = state.engine.conversations().conversation(id).await?.ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", "No such conversation."))?;
    let (open, capacity) = state.engine.load_of(&agent).await?;
    let warning = switchboard_core::assignment::over_capacity_warning(open, capacity);
    Ok(Json(json!({"conversation": conversation_json(&c), "warning": warning})))
}
