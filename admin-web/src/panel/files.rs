//! Agents' files: one file with a reply, from the panel's reply form or the API's multipart
//! endpoint; checked and limited like customers' files, and nothing of a refused one is kept.

use super::auth::ApiCaller;
use super::conversation_id;
use crate::AppState;
use crate::error::ApiError;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};
use switchboard_core::attachments::size_words;
use switchboard_models::{Agent, ConversationId};

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/conversations/{id}/files", post(send_file).layer(crate::limits::upload_body_limit()))
}

/// A multipart form's text fields and its one file (`None` when no file was chosen).
pub(crate) struct FormFields {
    values: Vec<(String, String)>,
    pub file: Option<(String, Vec<u8>)>,
}

impl FormFields {
    /// The field's text; empty when the form left it out.
    pub fn take(&mut self, name: &str) -> String {
        self.values.iter().position(|(n, _)| n == name).map(|i| self.values.swap_remove(i).1).unwrap_or_default()
    }
}

/// Reads `form`: the text fields named in `known`, and at most one `file`.
pub(crate) async fn read_form(mut form: Multipart, known: &[&str], max_upload: u64) -> Result<FormFields, ApiError> {
    let malformed = |why: String| ApiError::new(StatusCode::BAD_REQUEST, "malformed_request", format!("Expected a form with {} and one file: {why}", known.join(", ")));
    let too_large = || {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "file_too_large", format!("The file is larger than {}; nothing was saved. Send a smaller one.", size_words(max_upload)))
    };
    let mut fields = FormFields { values: Vec::new(), file: None };
    loop {
        let field = match form.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => return Ok(fields),
            Err(error) if error.status() == StatusCode::PAYLOAD_TOO_LARGE => return Err(too_large()),
            Err(error) => return Err(malformed(error.body_text())),
        };
        let name = field.name().unwrap_or_default().to_string();
        let file_name = field.file_name().unwrap_or_default().to_string();
        let bytes = match field.bytes().await {
            Ok(bytes) => bytes.to_vec(),
            Err(error) if error.status() == StatusCode::PAYLOAD_TOO_LARGE => return Err(too_large()),
            Err(error) => return Err(malformed(error.body_text())),
        };
        match name.as_str() {
            // A form's file input with nothing chosen sends an empty part without a name.
            "file" if file_name.is_empty() && bytes.is_empty() => {}
            "file" if fields.file.is_some() => return Err(malformed("send one file per reply".into())),
            "file" => fields.file = Some((file_name, bytes)),
            known_field if known.contains(&known_field) => {
                let text = String::from_utf8(bytes).map_err(|_| malformed(format!("`{name}` is not UTF-8 text")))?;
                fields.values.push((name, text));
            }
            other => return Err(malformed(format!("unknown field `{other}`"))),
        }
    }
}

/// Sends an agent's reply with its file; a refused file or reply keeps nothing of the file.
pub(crate) async fn reply_with_file(state: &AppState, agent: &Agent, id: ConversationId, text: String, file: Option<(String, Vec<u8>)>) -> Result<switchboard_models::Message, ApiError> {
    let attachments = match file {
        Some((name, bytes)) => vec![state.engine.accept_upload(&name, &bytes).await?],
        None => Vec::new(),
    };
    match state.engine.agent_reply(id, agent.id, text, attachments.clone()).await {
        Ok(reply) => Ok(reply),
        Err(error) => {
            for upload in &attachments {
                state.engine.discard_upload(upload).await;
            }
            Err(error.into())
        }
    }
}

/// `POST /api/conversations/{id}/files`: a reply with one file, as `multipart/form-data` with
/// `file` and an optional `text`.
async fn send_file(
    State(state): State<AppState>,
    ApiCaller(agent): ApiCaller,
    Path(id): Path<String>,
    form: Result<Multipart, MultipartRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let id = conversation_id(&id)?;
    let form = form.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "malformed_request", format!("Expected a multipart form with text and one file: {}", e.body_text())))?;
    let mut fields = read_form(form, &["text"], state.engine.max_upload_bytes()).await?;
    let Some(file) = fields.file.take() else {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "malformed_request", "The file is missing; send it as the form's `file` part."));
    };
    let reply = reply_with_file(&state, &agent, id, fields.take("text"), Some(file)).await?;
    let files: Vec<Value> = reply.attachments.iter().map(|a| json!({"name": a.file_name, "content_type": a.content_type, "size": a.size})).collect();
    Ok((StatusCode::CREATED, Json(json!({"message": {"id": reply.id, "seq": reply.seq, "text": reply.text, "attachments": files}}))))
}
