//! The JSON API described: `/api/openapi.json` (OpenAPI 3.1) and `/api/docs` (the same, as a
//! page), built from `OPERATIONS`. A test compares it with every `/api` route the routers
//! register, so a route cannot be added without its description (or described without a route).

use crate::AppState;
use axum::Router;
use axum::response::{Html, Json};
use axum::routing::get;
use serde_json::{Map, Value, json};

/// Who may call an operation.
#[derive(Clone, Copy, PartialEq)]
enum Who {
    /// Any agent's token (some answers depend on the role).
    Agent,
    Admin,
}

/// One operation: method, path (`{name}` for path parameters), what it does, who may call it,
/// its query parameters and JSON body fields (`name`, what it is, required), and its success
/// status.
struct Operation {
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    who: Who,
    query: &'static [(&'static str, &'static str)],
    body: &'static [(&'static str, &'static str, bool)],
    ok: u16,
}

const fn op(method: &'static str, path: &'static str, who: Who, summary: &'static str) -> Operation {
    Operation { method, path, summary, who, query: &[], body: &[], ok: 200 }
}

const PAGE: &[(&str, &str)] = &[("after", "the cursor `next` of the previous page"), ("limit", "rows per page (default 50, at most 200)")];

const OPERATIONS: &[Operation] = &[
    op("get", "/api/me", Who::Agent, "The caller's account."),
    Operation { query: &[("status", "open, assigned, in_progress, waiting_on_customer, resolved, confirmed, closed, rejected"), ("priority", "urgent, high, medium, low"), ("category", "a category"), ("channel", "web_chat, telegram, discord, email"), ("assignee", "queue, or an agent id"), ("q", "words or a name to search"), ("sort", "recent, longest_waiting, next_in_line, due"), ("undelivered", "true: only those with a reply that was not delivered"), ("after", "the cursor `next` of the previous page"), ("limit", "rows per page")], ..op("get", "/api/conversations", Who::Agent, "Conversations, filtered and paged by cursor, with a total.") },
    Operation { query: &[("before", "messages before this seq"), ("after", "messages after this seq"), ("limit", "at most 1,000")], ..op("get", "/api/conversations/{id}", Who::Agent, "A conversation with a page of its messages (`earlier`/`later` cursors).") },
    Operation { body: &[("action", "reply, note, take, release, assign, resolve, status, priority, category, hand_back, retry", true), ("text", "the reply or note", false), ("value", "the new status, priority, category or agent", false), ("version", "the conversation version the caller saw (stale: 409)", false)], ..op("post", "/api/conversations/{id}/actions", Who::Agent, "Acts on a conversation as an agent would in the panel.") },
    op("post", "/api/conversations/{id}/draft", Who::Agent, "A reply drafted by the hosted LLM for the agent to edit (503 without one)."),
    Operation { body: &[("score", "1 to 5", false), ("comment", "the customer's words", false)], ..op("post", "/api/conversations/{id}/rating", Who::Admin, "Records a customer's rating given another way.") },
    Operation { ok: 201, ..op("post", "/api/conversations/{id}/files", Who::Agent, "Sends a file to the customer (multipart form: `file`, optional `text`).") },
    Operation { query: &[("days", "the period, in days (default 30)")], ..op("get", "/api/ratings", Who::Agent, "Average ratings per agent.") },
    op("post", "/api/admin/intents/reload", Who::Admin, "Reads the intents file again and trains the bot on it."),
    Operation { query: &[("before", "notifications older than this id"), ("limit", "at most 200")], ..op("get", "/api/notifications", Who::Agent, "The caller's notifications, newest first, with the unread count.") },
    Operation { body: &[("conversation", "only this conversation's", false)], ..op("post", "/api/notifications/read", Who::Agent, "Marks the caller's notifications read.") },
    Operation { query: PAGE, ..op("get", "/api/customers", Who::Agent, "Customers, newest first, searchable (`q`) and filtered by `channel`.") },
    op("get", "/api/customers/{id}", Who::Agent, "A customer: their channels, conversations and joins."),
    Operation { body: &[("text", "the first message", true)], ok: 201, ..op("post", "/api/customers/{id}/conversations", Who::Agent, "Writes first to a known customer on their channel.") },
    Operation { body: &[("customer", "the other customer's id", true)], ..op("post", "/api/customers/{id}/joins", Who::Agent, "Joins two customers as one person (audited).") },
    op("post", "/api/customer-joins/{link}/undo", Who::Agent, "Separates a join again (audited)."),
    Operation { query: &[("state", "pending, approved, rejected"), ("kind", "a document type"), ("after", "cursor"), ("limit", "rows per page")], ..op("get", "/api/documents", Who::Agent, "Documents customers sent, pending first.") },
    Operation { body: &[("state", "approved or rejected", true), ("kind", "the document type", false), ("note", "the reason (needed to reject)", false)], ..op("post", "/api/documents/{id}/decision", Who::Agent, "Decides a pending document; the first decision wins.") },
    Operation { body: &[("presence", "online, away or offline", true)], ..op("post", "/api/presence", Who::Agent, "Sets the caller's presence.") },
    op("get", "/api/canned", Who::Agent, "Shared canned responses and the caller's own."),
    Operation { body: &[("title", "a short name", true), ("body", "the text", true), ("shared", "for everyone (admins only)", false)], ok: 201, ..op("post", "/api/canned", Who::Agent, "Adds a canned response.") },
    Operation { ok: 204, ..op("delete", "/api/canned/{id}", Who::Agent, "Deletes a canned response the caller may manage.") },
    op("get", "/api/agents", Who::Admin, "Every account with presence, load and last sign-in."),
    Operation { body: &[("email", "the sign-in address", true), ("name", "shown to customers", true), ("password", "long enough and hard to guess", true), ("role", "agent or admin", true), ("capacity", "conversations at once", false)], ok: 201, ..op("post", "/api/agents", Who::Admin, "Creates an account (audited).") },
    Operation { body: &[("name", "", false), ("email", "", false), ("role", "agent or admin", false), ("capacity", "", false), ("skills", "replaces them: categories, languages or your own words", false), ("active", "false deactivates and signs out", false)], ..op("post", "/api/agents/{id}", Who::Admin, "Changes an account (audited).") },
    Operation { query: &[("before", "entries older than this id"), ("limit", "at most 500"), ("actor", "an agent id"), ("action", "an audit action"), ("from", "YYYY-MM-DD"), ("to", "YYYY-MM-DD")], ..op("get", "/api/audit", Who::Admin, "The audit log, newest first (`older` names the next page).") },
    Operation { query: &[("from", "YYYY-MM-DD"), ("to", "YYYY-MM-DD")], ..op("get", "/api/hours", Who::Admin, "Minutes online per agent and day, and totals.") },
    Operation { query: &[("period", "today, 7d, 30d or custom"), ("from", "YYYY-MM-DD"), ("to", "YYYY-MM-DD"), ("zone", "an IANA time zone"), ("channel", ""), ("category", ""), ("agent", "an agent id")], ..op("get", "/api/reports", Who::Agent, "The Reports page's numbers (agents: their own conversations).") },
    Operation { query: &[("period", "as /api/reports"), ("from", ""), ("to", ""), ("zone", "")], ..op("get", "/api/reports/{file}", Who::Agent, "One report section as CSV: volume, status, escalations, agents, satisfaction, intents, answers, hours or teaching (`.csv`).") },
    op("get", "/api/settings", Who::Admin, "Every setting admins may change, with its value and source."),
    Operation { body: &[("settings", "key → value as typed, or null for the config file's", true)], ..op("post", "/api/settings", Who::Admin, "Changes settings, all or none (audited, in force at once).") },
    op("get", "/api/intents", Who::Admin, "The bot's intents: the newest version, its text and history."),
    Operation { body: &[("after", "the version the edit was made on", true), ("text", "the whole intents file", true), ("note", "what changed", false)], ..op("post", "/api/intents", Who::Admin, "Saves an edited intents text as the next version; the bot retrains.") },
    Operation { body: &[("seqs", "customer messages to teach", true), ("intent", "the intent they are examples of", true), ("category", "for a new intent", false)], ..op("post", "/api/intents/teach", Who::Admin, "Adds customer messages as examples of an intent.") },
    Operation { body: &[
        ("after", "the version the edit was made on", true), ("name", "a-z, 0-9 and _", true), ("category", "", true), ("examples", "at least 3", true),
        ("answer", "a template", false), ("answers", "the answer by language code", false), ("always_escalate", "", false), ("enabled", "", false),
    ], ..op("post", "/api/intents/intent", Who::Admin, "Adds or replaces one intent.") },
    Operation { body: &[("after", "the version the edit was made on", true), ("words", "words that always hand a message to a person", true)], ..op("post", "/api/intents/escalate-words", Who::Admin, "Sets the words that always escalate.") },
    op("get", "/api/intents/versions/{number}", Who::Admin, "One version of the intents with its accuracy."),
    op("post", "/api/intents/versions/{number}/restore", Who::Admin, "Makes an earlier version the newest again."),
    op("get", "/api/webhooks", Who::Admin, "Every webhook with its secret and state."),
    Operation { body: &[("url", "http(s) URL", true), ("events", "event names", true), ("description", "", false), ("active", "", false)], ok: 201, ..op("post", "/api/webhooks", Who::Admin, "Adds a webhook; the answer holds its signing secret.") },
    op("get", "/api/webhooks/{id}", Who::Admin, "A webhook with its latest deliveries."),
    Operation { body: &[("url", "", false), ("events", "", false), ("description", "", false), ("active", "true turns it on again", false), ("new_secret", "true replaces the secret", false)], ..op("patch", "/api/webhooks/{id}", Who::Admin, "Changes a webhook (audited).") },
    Operation { ok: 204, ..op("delete", "/api/webhooks/{id}", Who::Admin, "Deletes a webhook and its delivery log (audited).") },
    Operation { query: &[("before", "deliveries older than this id"), ("limit", "at most 500")], ..op("get", "/api/webhooks/{id}/deliveries", Who::Admin, "The delivery log, newest first (`next_before` pages back).") },
    Operation { ok: 202, ..op("post", "/api/webhooks/{id}/ping", Who::Admin, "Queues a `ping` event for this webhook.") },
    Operation { ok: 202, ..op("post", "/api/webhooks/{id}/deliveries/{delivery}/retry", Who::Admin, "Sends a delivered or given-up delivery again.") },
    Operation { query: &[("all", "true: replayed and dismissed ones too"), ("limit", "at most 1,000")], ..op("get", "/api/dead-letters", Who::Admin, "Inbound messages set aside after repeated failures.") },
    op("get", "/api/dead-letters/{id}", Who::Admin, "One message set aside, with everything that arrived."),
    op("post", "/api/dead-letters/{id}/replay", Who::Admin, "Stores it through its channel as if it had just arrived (409 with the reason if it fails again)."),
    op("post", "/api/dead-letters/{id}/dismiss", Who::Admin, "Settles it without storing it."),
];

fn parameters(operation: &Operation) -> Vec<Value> {
    let in_path = operation.path.split('/').filter_map(|part| part.strip_prefix('{')?.strip_suffix('}'));
    let mut parameters: Vec<Value> = in_path.map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}})).collect();
    parameters.extend(operation.query.iter().map(|(name, about)| json!({"name": name, "in": "query", "required": false, "description": about, "schema": {"type": "string"}})));
    parameters
}

fn body(operation: &Operation) -> Option<Value> {
    if operation.body.is_empty() {
        return None;
    }
    let mut properties = Map::new();
    for (name, about, _) in operation.body {
        properties.insert(name.to_string(), json!({"description": about}));
    }
    let required: Vec<&str> = operation.body.iter().filter(|(_, _, required)| *required).map(|(name, _, _)| *name).collect();
    Some(json!({"required": true, "content": {"application/json": {"schema": {"type": "object", "properties": properties, "required": required}}}}))
}

/// The OpenAPI 3.1 document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for operation in OPERATIONS {
        let mut answer = json!({
            "summary": operation.summary,
            "description": if operation.who == Who::Admin { "Admins only (others: 403)." } else { "Any agent; the panel's role rules apply." },
            "parameters": parameters(operation),
            "responses": {
                operation.ok.to_string(): {"description": "Done.", "content": {"application/json": {"schema": {"type": "object"}}}},
                "default": {"description": "Refused: the error says what was wrong and what to do.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            },
        });
        if let Some(body) = body(operation) {
            answer["requestBody"] = body;
        }
        let path = paths.entry(operation.path).or_insert_with(|| json!({}));
        path[operation.method] = answer;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Switchboard API", "version": env!("CARGO_PKG_VERSION"), "description": "Every panel action as JSON. Send a personal API token (Account → API tokens) as `Authorization: Bearer <token>`; requests are limited per token (429 says when to try again)."},
        "security": [{"token": []}],
        "components": {
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {"code": {"type": "string"}, "message": {"type": "string"}}, "required": ["code", "message"]}}}},
        },
        "paths": paths,
    })
}

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/openapi.json", get(|| async { Json(document()) })).route("/api/docs", get(|| async { Html(page()) }))
}

fn escaped(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The description as a page people read (no scripts, no CDN).
fn page() -> String {
    let mut html = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Switchboard API</title><link rel=\"stylesheet\" href=\"/static/admin.css\"></head><body><main class=\"page\">\
         <h1>Switchboard API</h1><p>Send a personal API token as <code>Authorization: Bearer &lt;token&gt;</code>. Errors are \
         <code>{\"error\": {\"code\", \"message\"}}</code>. Machine-readable: <a href=\"/api/openapi.json\">/api/openapi.json</a> (OpenAPI 3.1).</p>",
    );
    for operation in OPERATIONS {
        html.push_str(&format!(
            "<section class=\"panel\"><h2><code>{} {}</code></h2><p>{}{}</p>",
            operation.method.to_uppercase(),
            escaped(operation.path),
            escaped(operation.summary),
            if operation.who == Who::Admin { " Admins only." } else { "" }
        ));
        let fields: Vec<String> = operation
            .query
            .iter()
            .map(|(name, about)| format!("<li><code>?{}</code> {}</li>", escaped(name), escaped(about)))
            .chain(operation.body.iter().map(|(name, about, required)| format!("<li><code>{}</code>{} {}</li>", escaped(name), if *required { " (required)" } else { "" }, escaped(about))))
            .collect();
        if !fields.is_empty() {
            html.push_str(&format!("<ul>{}</ul>", fields.concat()));
        }
        html.push_str("</section>");
    }
    html.push_str("</main></body></html>");
    html
}
