//! Customers, newest first: the panel's Customers page and `GET /api/customers`, both paged
//! by keyset cursor and searchable by name or channel id.

use super::auth::{ApiCaller, Signed};
use super::{bad_filter, cut_page, error_page, page, parse_filter, views};
use crate::AppState;
use crate::error::ApiError;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use switchboard_core::ports::Listings;
use switchboard_core::{CustomerCursor, CustomerFilter, CustomerSummary};
use switchboard_models::Channel;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/panel/customers", get(customers_page))
        .route("/api/customers", get(customers_api))
        .route("/api/customers/{id}/conversations", axum::routing::post(start_conversation))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartBody {
    text: String,
}

/// The caller writes first to a known customer: a new conversation, theirs, on the customer's
/// channel (201 with it and the message). 409 while the customer has an open conversation.
async fn start_conversation(
    State(state): State<AppState>,
    ApiCaller(agent): ApiCaller,
    axum::extract::Path(id): axum::extract::Path<String>,
    body: Result<Json<StartBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(StartBody { text }) = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return crate::limits::too_large();
        }
        ApiError::new(StatusCode::BAD_REQUEST, "malformed_request", format!("Expected JSON {{\"text\": \"…\"}}: {}", rejection.body_text()))
    })?;
    let contact = uuid::Uuid::parse_str(&id)
        .map(switchboard_models::ContactId)
        .map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "not_found", "No such customer."))?;
    let (conversation, message) = state.engine.start_conversation(contact, agent.id, text).await?;
    let body = json!({"conversation_id": conversation.id.to_string(), "status": conversation.status.as_str(), "message_seq": message.seq});
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// The customers list's query string; anything else is refused.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct CustomerQuery {
    /// Text in the name or channel id.
    q: String,
    channel: String,
    /// The `next` cursor of the page before.
    after: String,
    /// Rows per page, 1 to 200 (default 50).
    limit: String,
}

fn customer_query(query: Result<Query<CustomerQuery>, QueryRejection>) -> Result<(CustomerQuery, CustomerFilter), ApiError> {
    let Query(query) = query.map_err(|rejection| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!("{}. The customers list takes q, channel, after and limit.", rejection.body_text().trim_end_matches('.')),
        )
    })?;
    let filter = CustomerFilter {
        text: Some(query.q.trim().to_string()).filter(|q| !q.is_empty()),
        channel: parse_filter::<Channel>(&query.channel)?,
        after: match query.after.as_str() {
            "" => None,
            cursor => Some(CustomerCursor::decode(cursor).ok_or_else(|| {
                bad_filter(format!("after `{cursor}` is not a cursor; use the `next` of the page before"))
            })?),
        },
        limit: match query.limit.as_str() {
            "" => 50,
            given => given
                .parse()
                .ok()
                .filter(|n| (1..=200).contains(n))
                .ok_or_else(|| bad_filter(format!("limit `{given}` must be 1 to 200")))?,
        },
    };
    Ok((query, filter))
}

/// One page, the cursor of the next when there is more, and how many match in all.
async fn customers_page_of(store: &dyn Listings, filter: &CustomerFilter) -> Result<(Vec<CustomerSummary>, Option<String>, u64), ApiError> {
    let one_more = CustomerFilter { limit: filter.limit + 1, ..filter.clone() };
    let (rows, total) = tokio::join!(store.list_customers(&one_more), store.count_customers(filter));
    let (rows, next) = cut_page(rows?, filter.limit, |last| CustomerCursor::after_customer(last).encode());
    Ok((rows, next, total?))
}

async fn customers_page(
    State(state): State<AppState>,
    signed: Signed,
    query: Result<Query<CustomerQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (query, filter) = match customer_query(query) {
        Ok(both) => both,
        Err(error) => return Ok(error_page(&state, error, "/panel/customers")),
    };
    let (rows, next, total) = customers_page_of(state.engine.listings(), &filter).await?;
    let page_url = |after: Option<&str>| {
        let mut url = url::form_urlencoded::Serializer::new(String::new());
        for (key, value) in [("q", &query.q), ("channel", &query.channel), ("limit", &query.limit)] {
            if !value.is_empty() {
                url.append_pair(key, value);
            }
        }
        if let Some(after) = after {
            url.append_pair("after", after);
        }
        format!("/panel/customers?{}", url.finish())
    };
    let noun = if total == 1 { "customer" } else { "customers" };
    let found = if filter.text.is_some() { " found" } else { "" };
    let data = json!({
        "filters": {"q": query.q, "channel": query.channel},
        "channels": views::options(Channel::ALL, |c| views::title_case(c.as_str())),
        "rows": rows.iter().map(customer_row).collect::<Vec<_>>(),
        "total": format!("{} {noun}{found}", views::count(total)),
        "next_url": next.as_deref().map(|cursor| page_url(Some(cursor))),
        "first_url": (!query.after.is_empty()).then(|| page_url(None)),
    });
    Ok(state.views.render("customers", &page(&signed, "customers", "Customers", data))?.into_response())
}

fn customer_row(customer: &CustomerSummary) -> Value {
    let contact = &customer.contact;
    json!({
        "id": contact.id.to_string(),
        "label": contact.label(),
        "channel": contact.channel.as_str(),
        "channel_label": views::title_case(contact.channel.as_str()),
        "external_id": contact.external_id,
        "since": views::time(&contact.created_at),
        "conversations": customer.conversations,
        "unreachable": contact.unreachable_since.is_some(),
        "latest": customer.latest.as_ref().map(|c| json!({
            "id": c.id.to_string(),
            "status": c.status.as_str(),
            "status_label": views::status_label(c.status),
            "updated_at": views::time(&c.updated_at),
        })),
    })
}

async fn customers_api(
    State(state): State<AppState>,
    _caller: ApiCaller,
    query: Result<Query<CustomerQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let (_, filter) = customer_query(query)?;
    let (rows, next, total) = customers_page_of(state.engine.listings(), &filter).await?;
    Ok(Json(json!({"next": next, "total": {"count": total}, "customers": rows.iter().map(|customer| {
        let contact = &customer.contact;
        json!({
            "id": contact.id, "name": contact.display_name, "label": contact.label(), "channel": contact.channel,
            "external_id": contact.external_id, "created_at": contact.created_at, "email": contact.email,
            "unreachable_since": contact.unreachable_since, "conversations": customer.conversations,
            "latest_conversation": customer.latest.as_ref().map(|c| json!({"id": c.id, "status": c.status, "updated_at": c.updated_at})),
        })
    }).collect::<Vec<_>>()})))
}
