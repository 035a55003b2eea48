//! One customer's page: every channel identity of the person, how each was joined (and the undo),
//! all their conversations, and joining another customer by hand; `/api/customers/{id}` too.

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
use std::collections::HashMap;
use switchboard_core::CustomerFilter;
use switchboard_models::{AgentId, Contact, ContactId, ContactLink, LinkId, LinkProof};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/panel/customers/{id}", get(customer_page))
        .route("/panel/customers/{id}/join", post(join_form))
        .route("/panel/customers/{id}/joins/{link}/undo", post(undo_form))
        .route("/api/customers/{id}", get(customer_api))
        .route("/api/customers/{id}/joins", post(join_api))
        .route("/api/customer-joins/{link}/undo", post(undo_api))
}

fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "No such customer.")
}

fn contact_id(text: &str) -> Result<ContactId, ApiError> {
    ContactId::parse(text).map_err(|_| not_found())
}

fn link_id(text: &str) -> Result<LinkId, ApiError> {
    LinkId::parse(text).map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "not_found", "No such join."))
}

/// The person `id` belongs to: their identities, joins (with every contact they name) and
/// conversations.
struct Person {
    contact: Contact,
    identities: Vec<Contact>,
    joins: Vec<ContactLink>,
    named: HashMap<ContactId, Contact>,
    conversations: Vec<switchboard_core::ConversationSummary>,
    agents: HashMap<AgentId, String>,
}

/// The person `id` belongs to, with the conversations `reader` may read.
async fn person(state: &AppState, id: ContactId, reader: &switchboard_models::Agent) -> Result<Person, ApiError> {
    let (store, people) = (state.engine.conversations(), state.engine.identities());
    let contact = store.contact(id).await?.ok_or_else(not_found)?;
    let (identities, joins, conversations, agents) =
        tokio::join!(people.identities(id), people.contact_links(id), people.person_conversations(id), state.engine.accounts().list_agents());
    let (identities, joins) = (identities?, joins?);
    let conversations = conversations?.into_iter().filter(|s| super::may_read(state, reader, &s.conversation)).collect();
    let mut named: HashMap<ContactId, Contact> = identities.iter().map(|c| (c.id, c.clone())).collect();
    for join in &joins {
        for id in join.moved.iter().chain([&join.person, &join.joined]) {
            if !named.contains_key(id)
                && let Some(found) = store.contact(*id).await?
            {
                named.insert(*id, found);
            }
        }
    }
    let agents = agents?.into_iter().map(|a| (a.id, a.name)).collect();
    Ok(Person { contact, identities, joins, named, conversations, agents })
}

fn proof_words(join: &ContactLink, agents: &HashMap<AgentId, String>) -> String {
    match join.proof {
        LinkProof::LinkCode => "the customer sent a link code from the other channel".into(),
        LinkProof::EmailCode => "the customer typed back a code mailed to the address".into(),
        LinkProof::SiteIdentity => "the website signed the customer's identity".into(),
        LinkProof::Agent => format!("joined by {}", join.agent.and_then(|a| agents.get(&a)).map_or("an agent", String::as_str)),
    }
}

impl Person {
    fn label(&self, id: &ContactId) -> String {
        self.named.get(id).map(Contact::label).unwrap_or_else(|| "a customer no longer kept".into())
    }

    fn view(&self) -> Value {
        json!({
            "id": self.contact.id.to_string(),
            "label": self.contact.label(),
            "identities": self.identities.iter().map(|c| json!({
                "id": c.id.to_string(),
                "label": c.label(),
                "channel": c.channel.as_str(),
                "channel_label": views::channel_label(c.channel),
                "external_id": c.external_id,
                "email": c.email,
                "since": views::time(&c.created_at),
                "unreachable": c.unreachable_since.is_some(),
                "this": c.id == self.contact.id,
            })).collect::<Vec<_>>(),
            "joins": self.joins.iter().map(|j| json!({
                "id": j.id.to_string(),
                "moved": j.moved.iter().map(|id| self.label(id)).collect::<Vec<_>>().join(", "),
                "person": self.label(&j.person),
                "how": proof_words(j, &self.agents),
                "at": views::time(&j.at),
                "undone": j.undone_at.map(|at| json!({
                    "at": views::time(&at),
                    "by": j.undone_by.and_then(|a| self.agents.get(&a)).cloned().unwrap_or_else(|| "an agent".into()),
                })),
            })).collect::<Vec<_>>(),
            "conversations": self.conversations.iter().map(|s| json!({
                "id": s.conversation.id.to_string(),
                "channel": s.conversation.channel.as_str(),
                "channel_label": views::channel_label(s.conversation.channel),
                "status": s.conversation.status.as_str(),
                "status_label": views::status_label(s.conversation.status),
                "updated_at": views::time(&s.last_activity),
                "last_text": s.last_text.clone().unwrap_or_default(),
            })).collect::<Vec<_>>(),
        })
    }

    fn json(&self) -> Value {
        let contact = |c: &Contact| {
            json!({
                "id": c.id, "label": c.label(), "name": c.display_name, "channel": c.channel, "external_id": c.external_id,
                "email": c.email, "created_at": c.created_at, "unreachable_since": c.unreachable_since,
            })
        };
        json!({
            "customer": contact(&self.contact),
            "identities": self.identities.iter().map(contact).collect::<Vec<_>>(),
            "joins": self.joins.iter().map(join_json).collect::<Vec<_>>(),
            "conversations": self.conversations.iter().map(|s| json!({
                "id": s.conversation.id, "contact_id": s.conversation.contact_id, "channel": s.conversation.channel,
                "status": s.conversation.status, "last_activity": s.last_activity, "last_text": s.last_text,
            })).collect::<Vec<_>>(),
        })
    }
}

fn join_json(join: &ContactLink) -> Value {
    json!({
        "id": join.id, "person": join.person, "joined": join.joined, "moved": join.moved, "proof": join.proof,
        "agent_id": join.agent, "at": join.at, "undone_at": join.undone_at, "undone_by": join.undone_by,
    })
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct CustomerPageQuery {
    /// Text to find the customer to join with.
    find: String,
    /// After a form: `joined` or `separated`.
    done: String,
}

async fn customer_page(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
    query: Result<Query<CustomerPageQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let back = format!("/panel/customers/{id}");
    let Ok(Query(query)) = query else {
        return Ok(error_page(&state, ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", "A customer's page takes find and done."), &back));
    };
    let person = person(&state, contact_id(&id)?, &signed.agent).await?;
    let find = query.find.trim();
    let candidates = if find.is_empty() {
        Vec::new()
    } else {
        let filter = CustomerFilter { text: Some(find.to_string()), channel: None, after: None, limit: 20 };
        let found = state.engine.listings().list_customers(&filter).await?;
        found
            .into_iter()
            .filter(|f| !person.identities.iter().any(|c| c.id == f.contact.id))
            .map(|f| json!({
                "id": f.contact.id.to_string(),
                "label": f.contact.label(),
                "channel_label": views::channel_label(f.contact.channel),
                "external_id": f.contact.external_id,
                "conversations": f.conversations,
            }))
            .collect()
    };
    let flash = match query.done.as_str() {
        "joined" => Some("Joined: both are one customer now."),
        "separated" => Some("Separated again."),
        _ => None,
    };
    let mut data = person.view();
    data["find"] = json!(find);
    data["searched"] = json!(!find.is_empty());
    data["candidates"] = json!(candidates);
    data["flash"] = json!(flash.map(|text| json!({"kind": "ok", "text": text})));
    let title = person.contact.label();
    Ok(state.views.render("customer", &page(&signed, "customers", &title, data))?.into_response())
}

#[derive(Deserialize)]
struct JoinForm {
    csrf: String,
    customer: String,
}

async fn join_form(State(state): State<AppState>, signed: Signed, Path(id): Path<String>, Form(form): Form<JoinForm>) -> Result<Response, ApiError> {
    signed.check_csrf(&form.csrf)?;
    let back = format!("/panel/customers/{id}");
    let joined = async { state.engine.join_customers(contact_id(&id)?, contact_id(&form.customer)?, signed.agent.id).await.map_err(ApiError::from) };
    match joined.await {
        Ok(_) => Ok(Redirect::to(&format!("{back}?done=joined")).into_response()),
        Err(error) => Ok(error_page(&state, error, &back)),
    }
}

#[derive(Deserialize)]
struct UndoForm {
    csrf: String,
}

async fn undo_form(
    State(state): State<AppState>,
    signed: Signed,
    Path((id, link)): Path<(String, String)>,
    Form(form): Form<UndoForm>,
) -> Result<Response, ApiError> {
    signed.check_csrf(&form.csrf)?;
    let back = format!("/panel/customers/{id}");
    let undone = async { state.engine.separate_customers(link_id(&link)?, signed.agent.id).await.map_err(ApiError::from) };
    match undone.await {
        Ok(_) => Ok(Redirect::to(&format!("{back}?done=separated")).into_response()),
        Err(error) => Ok(error_page(&state, error, &back)),
    }
}

async fn customer_api(State(state): State<AppState>, ApiCaller(caller): ApiCaller, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(person(&state, contact_id(&id)?, &caller).await?.json()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinBody {
    /// The customer to join with this one.
    customer: String,
}

async fn join_api(
    State(state): State<AppState>,
    ApiCaller(agent): ApiCaller,
    Path(id): Path<String>,
    body: Result<Json<JoinBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|rejection| {
        ApiError::new(StatusCode::BAD_REQUEST, "malformed_request", format!("Expected JSON {{\"customer\": \"<id>\"}}: {}", rejection.body_text()))
    })?;
    let join = state.engine.join_customers(contact_id(&id)?, contact_id(&body.customer)?, agent.id).await?;
    Ok((StatusCode::CREATED, Json(join_json(&join))).into_response())
}

async fn undo_api(State(state): State<AppState>, ApiCaller(agent): ApiCaller, Path(link): Path<String>) -> Result<Json<Value>, ApiError> {
    let join = state.engine.separate_customers(link_id(&link)?, agent.id).await?;
    Ok(Json(join_json(&join)))
}
