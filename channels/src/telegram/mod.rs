//! Telegram on teloxide: updates become `Inbound`s, stored replies become Bot API calls.
//!
//! An update is acknowledged only after its message is committed: in polling mode the offset
//! moves past an update only once `handle_update` succeeded; in webhook mode the HTTP answer
//! waits for the commit. A redelivered update is a duplicate (same chat and message id).

mod webhook_route;

pub use webhook_route::webhook_routes;

use async_trait::async_trait;
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use switchboard_core::ports::{BlobStore, DeliveryError, Outbound};
use switchboard_core::{Engine, EngineError};
use switchboard_models::{Attachment, Channel, Inbound, OutboundMessage, Thread};
use teloxide::net::Download;
use teloxide::payloads::{AnswerCallbackQuerySetters, GetUpdatesSetters, SendDocumentSetters, SendMessageSetters, SendPhotoSetters, SetWebhookSetters};
use teloxide::requests::Requester;
use teloxide::types::{
    CallbackQuery, ChatId, FileMeta, InlineKeyboardButton, InlineKeyboardMarkup, InputFile, KeyboardButton, KeyboardMarkup,
    Message, ParseMode, ReplyMarkup, Update, UpdateKind,
};
use teloxide::{ApiError, Bot, RequestError};

/// How the bot receives updates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// getUpdates long polling: works behind NAT, the default.
    Polling,
    /// Telegram POSTs updates to `url`, with `secret` in the X-Telegram-Bot-Api-Secret-Token header.
    Webhook { url: url::Url, secret: String },
}

#[derive(Clone)]
pub struct TelegramSettings {
    pub token: String,
    /// The Bot API base; a local stand-in in tests.
    pub api_url: Option<url::Url>,
    pub mode: Mode,
    /// Group chats served even without a mention.
    pub group_chats: Vec<i64>,
    /// Files larger than this are refused before download.
    pub max_file_bytes: u64,
}

impl std::fmt::Debug for TelegramSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelegramSettings")
            .field("token", &"<secret>")
            .field("api_url", &self.api_url)
            .field("group_chats", &self.group_chats)
            .finish_non_exhaustive()
    }
}

pub fn bot(settings: &TelegramSettings) -> Bot {
    let bot = Bot::new(&settings.token);
    match &settings.api_url {
        Some(url) => bot.set_api_url(url.clone()),
        None => bot,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TelegramError {
    #[error("Telegram API: {0}")]
    Api(#[from] RequestError),
    #[error("storing the message failed: {0}")]
    Engine(#[from] EngineError),
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("missing or wrong X-Telegram-Bot-Api-Secret-Token header")]
    Unauthorized,
    #[error("the body is not a Telegram update: {0}")]
    Malformed(String),
    #[error("the update could not be stored now; Telegram will redeliver it: {0}")]
    Unavailable(String),
}

const POLL_SECONDS: u32 = 10;
const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub struct TelegramAdapter {
    bot: Bot,
    engine: Arc<Engine>,
    settings: TelegramSettings,
    username: tokio::sync::OnceCell<String>,
}

impl TelegramAdapter {
    pub fn new(engine: Arc<Engine>, settings: TelegramSettings) -> Self {
        Self { bot: bot(&settings), engine, settings, username: tokio::sync::OnceCell::new() }
    }

    /// The bot's @username, for recognising mentions in groups.
    async fn username(&self) -> Result<&str, RequestError> {
        self.username
            .get_or_try_init(|| async { Ok(self.bot.get_me().await?.username().to_string()) })
            .await
            .map(String::as_str)
    }

    /// Long polling until the task is dropped. The offset passes an update only after it is
    /// stored, so a crash makes Telegram resend it and the store drops the repeat.
    pub async fn run_polling(self: Arc<Self>) {
        if let Err(error) = self.bot.delete_webhook().await {
            tracing::warn!(%error, "could not remove a previous webhook; polling may fail");
        }
        let mut offset = 0;
        let mut failures = 0u32;
        loop {
            let updates = match self.bot.get_updates().offset(offset).timeout(POLL_SECONDS).await {
                Ok(updates) => {
                    self.engine.health().up("telegram", "long polling");
                    updates
                }
                Err(error) => {
                    self.engine.health().down("telegram", &format!("getUpdates failed: {error}"));
                    failures += 1;
                    let wait = match &error {
                        RequestError::RetryAfter(seconds) => seconds.duration(),
                        _ => backoff(failures),
                    };
                    tracing::warn!(%error, ?wait, "Telegram getUpdates failed");
                    tokio::time::sleep(wait).await;
                    continue;
                }
            };
            failures = 0;
            for update in updates {
                let mut tries = switchboard_core::FailedAttempts::default();
                while let Err(error) = self.handle_update(&update).await {
                    let attempt = tries.count() + 1;
                    tracing::warn!(%error, update_id = update.id.0, attempt, "Telegram update not stored yet; retrying");
                    let payload = || serde_json::to_vec(&update).unwrap_or_default();
                    if self.engine.set_aside_after(&mut tries, Channel::Telegram, &update.id.0.to_string(), payload, &error.to_string()).await {
                        break;
                    }
                    tokio::time::sleep(backoff(tries.count())).await;
                }
                offset = update.id.as_offset();
            }
        }
    }

    /// Reads a set-aside update again (polling mode sets them aside; Telegram retries webhook
    /// deliveries itself).
    async fn replay_update(&self, payload: &[u8]) -> Result<(), String> {
        let update: Update = serde_json::from_slice(payload).map_err(|e| format!("the stored update cannot be read: {e}"))?;
        self.handle_update(&update).await.map_err(|e| e.to_string())
    }

    /// Points Telegram at our webhook, with the secret it must send back.
    pub async fn register_webhook(&self) -> Result<(), RequestError> {
        if let Mode::Webhook { url, secret } = &self.settings.mode {
            if let Err(error) = self.bot.set_webhook(url.clone()).secret_token(secret.clone()).await {
                self.engine.health().down("telegram", &format!("setWebhook failed: {error}"));
                return Err(error);
            }
            self.engine.health().up("telegram", "webhook registered");
        }
        Ok(())
    }

    /// One webhook delivery: answered only once the update is stored (or known to be ignorable).
    pub async fn handle_webhook(&self, secret: Option<&str>, body: &[u8]) -> Result<(), WebhookError> {
        let Mode::Webhook { secret: expected, .. } = &self.settings.mode else {
            return Err(WebhookError::Unauthorized);
        };
        if !secret.is_some_and(|given| constant_time_eq(given.as_bytes(), expected.as_bytes())) {
            return Err(WebhookError::Unauthorized);
        }
        self.engine.health().up("telegram", "receiving webhook updates");
        let update: Update = serde_json::from_slice(body).map_err(|e| WebhookError::Malformed(e.to_string()))?;
        self.handle_update(&update).await.map_err(|e| WebhookError::Unavailable(e.to_string()))
    }

    /// Stores one update's message and runs the conversation. `Ok` means it is safe to
    /// acknowledge: stored, or deliberately ignored (other update kinds, unserved groups).
    pub async fn handle_update(&self, update: &Update) -> Result<(), TelegramError> {
        let message = match &update.kind {
            UpdateKind::Message(message) => message,
            UpdateKind::CallbackQuery(pressed) => return self.handle_button(pressed).await,
            _ => return Ok(()),
        };
        let Some(user) = message.from.as_ref() else {
            return Ok(());
        };
        if user.is_bot || !self.served(message).await? {
            return Ok(());
        }
        let chat = message.chat.id;
        let mut text = message.text().or(message.caption()).unwrap_or_default().to_string();
        let attachments = self.download_attachments(message).await?;
        if text.trim().is_empty() && attachments.is_empty() {
            // A sticker says what its emoji says; anything else the bot cannot read is answered
            // with what it can, never dropped in silence.
            // Service messages (members joining, a pinned message) are nobody's question.
            match (message.sticker().and_then(|sticker| sticker.emoji.clone()), unreadable(message)) {
                (Some(emoji), _) => text = emoji,
                (None, Some(what)) => {
                    self.tell(message, "unreadable", &format!("Sorry, I can't open {what} here. Please write your message, or send a photo or a PDF.")).await?;
                    return Ok(());
                }
                (None, None) => {
                    tracing::debug!(chat = chat.0, "ignoring a Telegram service message");
                    return Ok(());
                }
            }
        }
        let sender_external_id = if message.chat.is_private() {
            chat.0.to_string()
        } else {
            // One conversation per person in a group; replies go to the group.
            format!("{}/{}", chat.0, user.id.0)
        };
        let inbound = Inbound {
            channel: Channel::Telegram,
            external_id: format!("{}:{}", chat.0, message.id.0),
            sender_external_id,
            sender_name: Some(user.full_name()),
            text,
            attachments,
            original: None,
            thread: Thread::Current,
            received_at: self.engine.now(),
            reported_language: user.language_code.clone(),
        };
        match self.engine.handle(inbound).await {
            Ok(_) => Ok(()),
            Err(EngineError::Invalid(reason)) => {
                self.tell(message, "refused", &format!("Sorry, I couldn't take that message: {reason}.")).await?;
                Ok(())
            }
            Err(error) => Err(error.into()),
        }
    }

    /// A pressed inline button is the customer answering with its text, stored like a message
    /// (once: the query id is its external id). The keyboard is then taken off the message, so
    /// an answer is given once; both are courtesies that may fail without losing the answer.
    async fn handle_button(&self, pressed: &CallbackQuery) -> Result<(), TelegramError> {
        let (Some(data), Some(message)) = (pressed.data.as_deref(), pressed.message.as_ref()) else {
            return Ok(());
        };
        let chat = message.chat();
        if pressed.from.is_bot || data.trim().is_empty() {
            return Ok(());
        }
        // In a group, the buttons answer the question of the person they were sent to.
        let (meant_for, data) = match data.split_once('|') {
            Some((user, answer)) if !chat.is_private() => (Some(user), answer),
            _ => (None, data),
        };
        if meant_for.is_some_and(|user| user != pressed.from.id.0.to_string()) {
            let told = self.bot.answer_callback_query(pressed.id.clone()).text("These buttons answer someone else's question.").await;
            if let Err(error) = told {
                tracing::debug!(%error, "could not answer a press of someone else's button");
            }
            return Ok(());
        }
        let sender_external_id = if chat.is_private() { chat.id.0.to_string() } else { format!("{}/{}", chat.id.0, pressed.from.id.0) };
        let inbound = Inbound {
            channel: Channel::Telegram,
            external_id: format!("button:{}", pressed.id.0),
            sender_external_id,
            sender_name: Some(pressed.from.full_name()),
            text: data.to_string(),
            attachments: Vec::new(),
            original: None,
            thread: Thread::Current,
            received_at: self.engine.now(),
            reported_language: pressed.from.language_code.clone(),
        };
        match self.engine.handle(inbound).await {
            Ok(_) | Err(EngineError::Invalid(_)) => {}
            Err(error) => return Err(error.into()),
        }
        if let Err(error) = self.bot.answer_callback_query(pressed.id.clone()).await {
            tracing::debug!(%error, "could not acknowledge a Telegram button press");
        }
        if let Err(error) = self.bot.edit_message_reply_markup(chat.id, message.id()).await {
            tracing::debug!(%error, "could not remove a Telegram message's buttons");
        }
        Ok(())
    }

    /// Private chats always; groups when configured or when the bot is @mentioned.
    async fn served(&self, message: &Message) -> Result<bool, RequestError> {
        if message.chat.is_private() || self.settings.group_chats.contains(&message.chat.id.0) {
            return Ok(true);
        }
        let text = message.text().or(message.caption()).unwrap_or_default();
        Ok(text.contains(&format!("@{}", self.username().await?)))
    }

    /// The photo (largest size) or document of a message, checked and stored. A refused file is
    /// explained to the customer and left out; a failed download is an error, so the update is
    /// retried rather than lost.
    async fn download_attachments(&self, message: &Message) -> Result<Vec<Attachment>, TelegramError> {
        let file: Option<(&FileMeta, String)> = if let Some(sizes) = message.photo() {
            sizes.iter().max_by_key(|p| p.width * p.height).map(|p| (&p.file, "photo.jpg".to_string()))
        } else if let Some(document) = message.document() {
            Some((&document.file, document.file_name.clone().unwrap_or_else(|| "document".into())))
        } else {
            None
        };
        let Some((meta, name)) = file else {
            return Ok(Vec::new());
        };
        if u64::from(meta.size) > self.settings.max_file_bytes {
            let limit = self.settings.max_file_bytes;
            self.tell(message, "file", &format!("Sorry, \"{name}\" is larger than the {limit} bytes I can accept.")).await?;
            return Ok(Vec::new());
        }
        let file = self.bot.get_file(meta.id.clone()).await?;
        let mut bytes = Vec::with_capacity(meta.size as usize);
        let mut stream = self.bot.download_file_stream(&file.path);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| RequestError::Network(Arc::new(e)))?;
            if (bytes.len() + chunk.len()) as u64 > self.settings.max_file_bytes {
                self.tell(message, "file", &format!("Sorry, \"{name}\" is too large for me to accept.")).await?;
                return Ok(Vec::new());
            }
            bytes.extend_from_slice(&chunk);
        }
        match self.engine.accept_upload(&name, &bytes).await {
            Ok(attachment) => Ok(vec![attachment]),
            Err(EngineError::Upload(reason)) => {
                self.tell(message, "file", &format!("Sorry, I couldn't accept \"{name}\": {reason}.")).await?;
                Ok(Vec::new())
            }
            Err(error) => Err(error.into()),
        }
    }

    /// A direct notice about the customer's own input (not part of the conversation record),
    /// queued durably before the update counts as handled; `what` tells one message's notices apart.
    async fn tell(&self, message: &Message, what: &str, text: &str) -> Result<(), TelegramError> {
        let chat = message.chat.id;
        let key = format!("{}:{}:{what}", chat.0, message.id.0);
        Ok(self.engine.tell_customer(Channel::Telegram, &chat.0.to_string(), &key, text).await?)
    }
}

fn backoff(attempt: u32) -> Duration {
    (Duration::from_millis(250) * 2u32.saturating_pow(attempt.min(8))).min(MAX_BACKOFF)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The outbox's sender for Telegram: text as HTML with everything escaped, files as photos or
/// documents, quick replies as buttons under the message.
pub struct TelegramOutbound {
    bot: Bot,
    blobs: Arc<dyn BlobStore>,
}

impl TelegramOutbound {
    pub fn new(settings: &TelegramSettings, blobs: Arc<dyn BlobStore>) -> Self {
        Self { bot: bot(settings), blobs }
    }
}

#[async_trait]
impl Outbound for TelegramOutbound {
    fn channel(&self) -> Channel {
        Channel::Telegram
    }

    async fn tell(&self, recipient: &str, text: &str) -> Result<(), DeliveryError> {
        self.bot.send_message(chat_of(recipient)?, text).await.map_err(delivery_error)?;
        Ok(())
    }

    async fn deliver(&self, outbound: &OutboundMessage) -> Result<Option<String>, DeliveryError> {
        let chat = chat_of(&outbound.recipient_external_id)?;
        let message = &outbound.message;
        let text = teloxide::utils::html::escape(&message.text);
        // In a group ("<chat>/<user>") the buttons carry whom they are for.
        let keyboard = keyboard_for(&message.quick_replies, outbound.recipient_external_id.split_once('/').map(|(_, user)| user));
        let mut caption = Some(text.clone()).filter(|t| !t.is_empty());
        let mut sent_ids = Vec::new();
        for attachment in &message.attachments {
            let bytes = crate::attachment_bytes(self.blobs.as_ref(), attachment).await?;
            let file = InputFile::memory(bytes).file_name(attachment.file_name.clone());
            let sent = if attachment.is_image() {
                let request = self.bot.send_photo(chat, file).parse_mode(ParseMode::Html);
                match caption.take() {
                    Some(caption) => request.caption(caption).await,
                    None => request.await,
                }
            } else {
                let request = self.bot.send_document(chat, file).parse_mode(ParseMode::Html);
                match caption.take() {
                    Some(caption) => request.caption(caption).await,
                    None => request.await,
                }
            };
            sent_ids.push(sent.map_err(delivery_error)?.id.0.to_string());
        }
        if let Some(text) = caption {
            let request = self.bot.send_message(chat, text).parse_mode(ParseMode::Html);
            let sent = match keyboard {
                Some(keyboard) => request.reply_markup(keyboard).await,
                None => request.await,
            }
            .map_err(delivery_error)?;
            sent_ids.push(sent.id.0.to_string());
        }
        Ok(Some(sent_ids.join(",")).filter(|ids| !ids.is_empty()))
    }
}

/// What kind of message a customer sent that the bot cannot read, in words for them; `None`
/// for what no customer writes (a member joined, a message was pinned).
fn unreadable(message: &Message) -> Option<&'static str> {
    if message.voice().is_some() || message.audio().is_some() {
        Some("voice messages or audio")
    } else if message.video().is_some() || message.video_note().is_some() || message.animation().is_some() {
        Some("videos")
    } else if message.sticker().is_some() {
        Some("this sticker")
    } else if message.location().is_some() || message.contact().is_some() || message.venue().is_some() {
        Some("locations or contact cards")
    } else if message.poll().is_some() || message.dice().is_some() {
        Some("polls or games")
    } else {
        None
    }
}

/// Quick replies as buttons under the message (a press answers with the button's text); short
/// ones, such as a 1–5 rating, share a row. Texts too long for a button's data (64 bytes) fall
/// back to a one-time keyboard that types them.
fn keyboard_for(quick_replies: &[String], for_user: Option<&str>) -> Option<ReplyMarkup> {
    if quick_replies.is_empty() {
        return None;
    }
    let data = |q: &String| for_user.map_or_else(|| q.clone(), |user| format!("{user}|{q}"));
    if quick_replies.iter().any(|q| data(q).len() > 64) {
        let rows = quick_replies.iter().map(|q| vec![KeyboardButton::new(q.clone())]);
        return Some(ReplyMarkup::Keyboard(KeyboardMarkup::new(rows).one_time_keyboard().resize_keyboard()));
    }
    let button = |q: &String| InlineKeyboardButton::callback(q.clone(), data(q));
    let one_row = quick_replies.len() <= 5 && quick_replies.iter().all(|q| q.chars().count() <= 3);
    let rows: Vec<Vec<InlineKeyboardButton>> =
        if one_row { vec![quick_replies.iter().map(button).collect()] } else { quick_replies.iter().map(|q| vec![button(q)]).collect() };
    Some(ReplyMarkup::InlineKeyboard(InlineKeyboardMarkup::new(rows)))
}

/// `"<chat>"` for private chats, `"<chat>/<user>"` for a person in a group: replies go to the chat.
fn chat_of(recipient: &str) -> Result<ChatId, DeliveryError> {
    recipient
        .split('/')
        .next()
        .and_then(|chat| chat.parse().ok())
        .map(ChatId)
        .ok_or_else(|| DeliveryError::Permanent { reason: format!("`{recipient}` is not a Telegram chat") })
}

fn is_server_trouble(description: &str) -> bool {
    ["Internal Server Error", "Bad Gateway", "Service Unavailable", "Gateway Timeout"]
        .iter()
        .any(|trouble| description.contains(trouble))
}

/// Telegram's refusals in words an agent can act on.
fn delivery_error(error: RequestError) -> DeliveryError {
    let unreachable = |reason: &str| DeliveryError::Unreachable { reason: reason.into() };
    match error {
        RequestError::RetryAfter(seconds) => DeliveryError::Retry {
            reason: "Telegram asked us to slow down (flood control); sending again shortly.".into(),
            after: Some(seconds.duration()),
        },
        RequestError::Api(ApiError::BotBlocked) => unreachable("The customer blocked the bot on Telegram."),
        RequestError::Api(ApiError::UserDeactivated) => unreachable("The customer's Telegram account was deleted."),
        RequestError::Api(ApiError::CantInitiateConversation) => {
            unreachable("The customer has not started a chat with the bot on Telegram.")
        }
        RequestError::Api(ApiError::ChatNotFound) => unreachable("Telegram no longer knows this chat."),
        RequestError::Api(ApiError::BotKicked | ApiError::BotKickedFromSupergroup) => {
            unreachable("The bot was removed from the customer's Telegram group.")
        }
        // Telegram's own server trouble (its 5xx answers) passes; anything else it refuses stays refused.
        RequestError::Api(ApiError::Unknown(description)) if is_server_trouble(&description) => DeliveryError::Retry {
            reason: format!("Telegram had a server error ({description}); sending again shortly."),
            after: None,
        },
        RequestError::Api(api) => DeliveryError::Permanent { reason: format!("Telegram refused the message: {api}") },
        other => DeliveryError::Retry { reason: format!("Telegram could not be reached: {other}"), after: None },
    }
}

#[async_trait]
impl switchboard_core::InboundReplay for TelegramAdapter {
    fn channel(&self) -> Channel {
        Channel::Telegram
    }

    async fn replay(&self, payload: &[u8]) -> Result<(), String> {
        self.replay_update(payload).await
    }
}
