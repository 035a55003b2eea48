//! The widget protocol: JSON frames on the socket, the same shapes over HTTP.

use crate::http_error::HttpError;
use serde::{Deserialize, Serialize};
use switchboard_core::ports::{Accounts, StoreError};
use switchboard_models::{Conversation, Handler, Message, Sender, Status};

/// What a widget sends on its socket.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientFrame {
    /// A customer message; `client_id` makes retries safe. `language`: the page's (an IETF tag
    /// such as `de-CH`), for messages too short to tell.
    Send {
        client_id: String,
        text: String,
        #[serde(default)]
        language: Option<String>,
    },
    /// Messages with `seq > after`, as a `history` frame.
    History { after: i64 },
    /// The customer has seen the replies up to this seq (the chat is open and visible).
    Seen { seq: i64 },
    /// The customer is typing (sent every few seconds while they do).
    Typing,
    Ping,
}

/// What the server sends on a widget's socket.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// First frame on every connection.
    Ready { visitor_id: String, conversation: Option<ConversationView> },
    History { messages: Vec<MessageView>, conversation: Option<ConversationView> },
    Message { message: MessageView },
    /// The customer message `client_id` is stored (or was already: `duplicate`).
    Ack { client_id: String, message: MessageView, duplicate: bool, conversation: ConversationView },
    /// The bot is working on an answer, or (`name`) an agent is typing one.
    Typing {
        on: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    /// An agent opened the conversation: the customer's messages up to `seq` are seen.
    Seen { seq: i64 },
    /// The conversation changed hands or status since the widget last heard of it.
    Conversation { conversation: ConversationView },
    Pong,
    Error {
        code: &'static str,
        message: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
    },
}

impl ServerFrame {
    pub fn error(error: HttpError, client_id: Option<String>) -> Self {
        ServerFrame::Error { code: error.code, message: error.message, client_id }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct MessageView {
    pub id: String,
    pub seq: i64,
    pub sender: Sender,
    pub text: String,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub quick_replies: Vec<String>,
    /// The widget's own id for its customer messages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The name of the agent who wrote an agent message, so the widget can say who is speaking.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub author: Option<String>,
    /// Files in the message; `url` answers only with the visitor's token.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub attachments: Vec<FileView>,
    pub created_at: String,
}

/// A file as the widget shows it: a thumbnail for images, a chip for the rest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileView {
    pub name: String,
    pub content_type: String,
    pub size: u64,
    pub url: String,
}

impl MessageView {
    /// Views of `messages`, agent messages carrying their agent's name.
    pub async fn with_authors(store: &dyn Accounts, messages: &[Message]) -> Result<Vec<MessageView>, StoreError> {
        let agents = if messages.iter().any(|m| m.agent_id.is_some()) { store.list_agents().await? } else { Vec::new() };
        Ok(messages
            .iter()
            .map(|message| {
                let mut view = MessageView::from(message);
                view.author = message.agent_id.and_then(|id| agents.iter().find(|a| a.id == id)).map(|a| a.name.clone());
                view
            })
            .collect())
    }
}

impl From<&Message> for MessageView {
    fn from(message: &Message) -> Self {
        Self {
            id: message.id.to_string(),
            seq: message.seq,
            sender: message.sender,
            text: message.text.clone(),
            quick_replies: message.quick_replies.clone(),
            client_id: message
                .external_id
                .as_deref()
                .and_then(|id| id.split_once(':'))
                .map(|(_, client_id)| client_id.to_string()),
            author: None,
            attachments: message
                .attachments
                .iter()
                .filter(|a| !a.original)
                .map(|a| FileView {
                    name: a.file_name.clone(),
                    content_type: a.content_type.clone(),
                    size: a.size,
                    url: format!("/webchat/files/{}/{}", message.conversation_id, a.key),
                })
                .collect(),
            created_at: message.created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        }
    }
}

/// What the customer may know of their conversation: who answers, and whether it is open.
#[derive(Debug, Serialize, Deserialize)]
pub struct ConversationView {
    pub id: String,
    /// "bot", "queue" or "agent".
    pub handler: String,
    pub status: Status,
    /// An agent opened the conversation after the customer's message with this seq: "seen".
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub seen_up_to: Option<i64>,
}

impl From<&Conversation> for ConversationView {
    fn from(conversation: &Conversation) -> Self {
        let handler = match conversation.handler {
            Handler::Bot => "bot",
            Handler::Queue => "queue",
            Handler::Agent(_) => "agent",
        };
        Self { id: conversation.id.to_string(), handler: handler.to_string(), status: conversation.status, seen_up_to: None }
    }
}
