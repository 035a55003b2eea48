//! Discord on serenity: DMs are served directly; in a served guild channel each customer's
//! case gets its own thread (started from their first message, so the thread's id is that
//! message's id). Gateway drops are resumed by serenity, which replays missed events; a replayed
//! or repeated event is a duplicate (unique on the Discord message id). Discord does not replay
//! what was written while no session was open, so each new session first fetches it (catch-up).
//!
//! Contacts are addressed by where the conversation lives: `dm/<user>` or `thread/<thread>/<user>`.

use async_trait::async_trait;
use serenity::all::{
    ChannelId, ComponentInteraction, Context, CreateActionRow, CreateAllowedMentions, CreateAttachment,
    CreateButton, CreateMessage, CreateThread, EventHandler, GatewayIntents, GetMessages, Http, HttpBuilder,
    Interaction, Message, MessageId, UserId,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use switchboard_core::ports::{BlobStore, DeliveryError, Outbound};
use switchboard_core::{Engine, EngineError};
use switchboard_models::{Attachment, Channel, Inbound, OutboundMessage, Thread};

#[derive(Clone)]
pub struct DiscordSettings {
    pub token: String,
    /// Send REST calls (and the gateway lookup) to this base instead of Discord; tests only.
    /// Serenity ignores a proxy unless its rate limiter is off, so this also turns it off.
    pub rest_proxy: Option<String>,
    /// Guild channels where customers open cases (each in its own thread).
    pub served_channels: Vec<u64>,
    pub max_file_bytes: u64,
}

impl std::fmt::Debug for DiscordSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiscordSettings")
            .field("token", &"<secret>")
            .field("rest_proxy", &self.rest_proxy)
            .field("served_channels", &self.served_channels)
            .finish_non_exhaustive()
    }
}

/// A REST client; in production with serenity's rate limiter, which honours Discord's limits.
pub fn http(settings: &DiscordSettings) -> Http {
    match &settings.rest_proxy {
        Some(proxy) => HttpBuilder::new(&settings.token).proxy(proxy).ratelimiter_disabled(true).build(),
        None => Http::new(&settings.token),
    }
}

const QUICK_REPLY_PREFIX: &str = "qr:";
const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub struct DiscordAdapter {
    engine: Arc<Engine>,
    settings: DiscordSettings,
}

impl DiscordAdapter {
    pub fn new(engine: Arc<Engine>, settings: DiscordSettings) -> Self {
        Self { engine, settings }
    }

    /// Runs the gateway client until the task is dropped, restarting it after failures.
    pub async fn run(self: Arc<Self>) {
        let intents = GatewayIntents::GUILD_MESSAGES | GatewayIntents::DIRECT_MESSAGES | GatewayIntents::MESSAGE_CONTENT;
        let (events, incoming) = mpsc::unbounded_channel();
        tokio::spawn(self.clone().store_in_order(incoming));
        let mut failures = 0;
        loop {
            let built = serenity::client::ClientBuilder::new_with_http(http(&self.settings), intents)
                .event_handler(Handler { events: events.clone(), engine: self.engine.clone() })
                .await;
            let health = self.engine.health();
            match built {
                Ok(mut client) => match client.start().await {
                    Err(error) => {
                        tracing::warn!(%error, "Discord gateway client stopped");
                        health.down("discord", &format!("the gateway connection ended: {error}"));
                    }
                    Ok(()) => health.down("discord", "the gateway connection ended"),
                },
                Err(error) => {
                    tracing::warn!(%error, "Discord client could not start");
                    health.down("discord", &format!("the Discord client could not start: {error}"));
                }
            }
            failures += 1;
            tokio::time::sleep(backoff(failures)).await;
        }
    }

    /// Serenity hands each gateway event to its own task, so neighbours (a replay after a
    /// resume, say) can reach us swapped. One task stores them: it waits a moment for
    /// stragglers, then takes each batch in Discord's order (snowflake ids grow with time).
    async fn store_in_order(self: Arc<Self>, mut incoming: mpsc::UnboundedReceiver<(Arc<Http>, Incoming)>) {
        let mut batch = Vec::new();
        while incoming.recv_many(&mut batch, 256).await > 0 {
            tokio::time::sleep(REORDER_WINDOW).await;
            while let Ok(more) = incoming.try_recv() {
                batch.push(more);
            }
            batch.sort_by_key(|(_, event)| event.id());
            for (http, event) in batch.drain(..) {
                match event {
                    Incoming::NewSession => {
                        for missed in self.missed_until_done(&http).await {
                            self.store_until_done(&http, &Incoming::Message(Box::new(missed))).await;
                        }
                    }
                    event => self.store_until_done(&http, &event).await,
                }
            }
        }
    }

    /// What customers wrote while no gateway session was open (Switchboard stopped, or a session
    /// that could not be resumed), oldest first: each known DM and case thread after its latest
    /// stored message, and the served channels after the newest stored message. Discord does
    /// not replay these. A channel that cannot be read is skipped with a warning; a store that
    /// cannot be read is retried.
    async fn missed_until_done(&self, http: &Http) -> Vec<Message> {
        let mut attempt = 0;
        let latest = loop {
            match self.engine.outbox().latest_inbound_by_contact(Channel::Discord).await {
                Ok(latest) => break latest,
                Err(error) => {
                    attempt += 1;
                    tracing::warn!(%error, attempt, "Discord catch-up cannot read the store yet; retrying");
                    tokio::time::sleep(backoff(attempt)).await;
                }
            }
        };
        // Interaction ids are snowflakes too, so they mark a time as well as message ids do.
        let snowflake = |id: &str| id.trim_start_matches("interaction:").parse::<u64>().ok();
        let mut sources: Vec<(String, u64)> = Vec::new();
        for (contact, latest) in &latest {
            if let Some(after) = snowflake(latest) {
                sources.push((contact.clone(), after));
            }
        }
        // With nothing stored yet there is no "since": old channel history is not a new case.
        if let Some(newest) = latest.iter().filter_map(|(_, id)| snowflake(id)).max() {
            sources.extend(self.settings.served_channels.iter().map(|served| (format!("served/{served}"), newest)));
        }
        let mut missed = Vec::new();
        for (source, after) in sources {
            let channel = match source.strip_prefix("served/") {
                Some(served) => served.parse().map(ChannelId::new).map_err(|_| serenity::Error::Other("served channel id")),
                None => reply_channel(http, &source).await,
            };
            let found = match channel {
                Ok(channel) => messages_after(http, channel, after).await,
                Err(error) => Err(error),
            };
            match found {
                Ok(found) => missed.extend(found.into_iter().filter(|m| !m.author.bot)),
                Err(error) => tracing::warn!(%error, source, "Discord catch-up could not read this channel; skipped"),
            }
        }
        missed.sort_by_key(|m| m.id);
        missed.dedup_by_key(|m| m.id);
        if !missed.is_empty() {
            tracing::info!(count = missed.len(), "Discord messages written while Switchboard was away");
        }
        missed
    }

    /// Discord will not send the event again: keep trying until it is stored.
    /// After `server.inbound_attempts` failures that were not the store's, it is set aside
    /// for an admin and the next event is taken.
    async fn store_until_done(&self, http: &Http, event: &Incoming) {
        let mut tries = switchboard_core::FailedAttempts::default();
        loop {
            let result = match event {
                Incoming::Message(message) => self.handle_message(http, message).await,
                Incoming::Press(press) => self.handle_button(http, press).await,
                Incoming::NewSession => return,
            };
            let Err(error) = result else { return };
            tracing::warn!(%error, id = event.id(), attempt = tries.count() + 1, "Discord event not stored yet; retrying");
            let payload = || match event {
                Incoming::Message(message) => serde_json::to_vec(&SetAside::Message(message.clone())),
                Incoming::Press(press) => serde_json::to_vec(&SetAside::Press(press.clone())),
                Incoming::NewSession => Ok(Vec::new()),
            }
            .unwrap_or_default();
            if self.engine.set_aside_after(&mut tries, Channel::Discord, &event.id().to_string(), payload, &error.to_string()).await {
                return;
            }
            tokio::time::sleep(backoff(tries.count())).await;
        }
    }

    /// Where a message's conversation lives, or `None` when it is not ours to answer.
    async fn location(&self, ctx_http: &Http, message: &Message) -> Result<Option<String>, TaskError> {
        let user = message.author.id;
        if message.guild_id.is_none() {
            return Ok(Some(format!("dm/{user}")));
        }
        if self.settings.served_channels.contains(&message.channel_id.get()) {
            // A new case: a thread from this message (its id is the message's id).
            let thread = ChannelId::new(message.id.get());
            let name: String = format!("Support: {}", message.author.name).chars().take(90).collect();
            match message.channel_id.create_thread_from_message(ctx_http, message.id, CreateThread::new(name)).await {
                Ok(_) => {}
                // Already created for this message (a repeated event): the same thread.
                Err(serenity::Error::Http(serenity::http::HttpError::UnsuccessfulRequest(response)))
                    if response.error.code == 160004 => {}
                Err(error) => return Err(TaskError::Discord(error)),
            }
            return Ok(Some(format!("thread/{thread}/{user}")));
        }
        // A message inside a case thread, from the customer whose case it is.
        let contact = format!("thread/{}/{user}", message.channel_id);
        let known = self.engine.conversations().contact_by_external_id(Channel::Discord, &contact).await.map_err(EngineError::from)?;
        Ok(known.map(|_| contact))
    }

    async fn handle_message(&self, ctx_http: &Http, message: &Message) -> Result<(), TaskError> {
        let external_id = message.id.to_string();
        let store = self.engine.conversations();
        if store.message_by_external_id(Channel::Discord, &external_id).await.map_err(EngineError::from)?.is_some() {
            return Ok(()); // a repeated dispatch
        }
        let Some(contact) = self.location(ctx_http, message).await? else {
            return Ok(());
        };
        let attachments = self.download_attachments(message, &contact).await?;
        if message.content.trim().is_empty() && attachments.is_empty() {
            return Ok(());
        }
        self.submit(&contact, external_id, message.author.global_name.clone().unwrap_or(message.author.name.clone()), message.content.clone(), attachments).await
    }

    async fn submit(
        &self,
        contact: &str,
        external_id: String,
        name: String,
        text: String,
        attachments: Vec<Attachment>,
    ) -> Result<(), TaskError> {
        let notice_key = format!("{external_id}:refused");
        let inbound = Inbound {
            channel: Channel::Discord,
            external_id,
            sender_external_id: contact.to_string(),
            sender_name: Some(name),
            text,
            attachments,
            original: None,
            thread: Thread::Current,
            received_at: self.engine.now(),
            reported_language: None,
        };
        match self.engine.handle(inbound).await {
            Ok(_) => Ok(()),
            Err(EngineError::Invalid(reason)) => {
                self.tell(contact, &notice_key, &format!("Sorry, I couldn't take that message: {reason}.")).await
            }
            Err(error) => Err(error.into()),
        }
    }

    /// A quick-reply button press counts as the customer sending the button's text.
    async fn handle_button(&self, ctx_http: &Http, press: &ComponentInteraction) -> Result<(), TaskError> {
        let Some(label) = press.data.custom_id.strip_prefix(QUICK_REPLY_PREFIX) else {
            return Ok(());
        };
        press.defer(ctx_http).await.map_err(TaskError::Discord)?;
        let user = press.user.id;
        let contact = match press.guild_id {
            None => format!("dm/{user}"),
            Some(_) => format!("thread/{}/{user}", press.channel_id),
        };
        let name = press.user.global_name.clone().unwrap_or(press.user.name.clone());
        self.submit(&contact, format!("interaction:{}", press.id), name, label.to_string(), Vec::new()).await
    }

    async fn download_attachments(&self, message: &Message, contact: &str) -> Result<Vec<Attachment>, TaskError> {
        let mut stored = Vec::new();
        for (n, file) in message.attachments.iter().enumerate() {
            let key = format!("{}:file{n}", message.id);
            if u64::from(file.size) > self.settings.max_file_bytes {
                let limit = self.settings.max_file_bytes;
                self.tell(contact, &key, &format!("Sorry, \"{}\" is larger than the {limit} bytes I can accept.", file.filename)).await?;
                continue;
            }
            let bytes = file.download().await.map_err(TaskError::Discord)?;
            match self.engine.accept_upload(&file.filename, &bytes).await {
                Ok(attachment) => stored.push(attachment),
                Err(EngineError::Upload(reason)) => {
                    self.tell(contact, &key, &format!("Sorry, I couldn't accept \"{}\": {reason}.", file.filename)).await?;
                }
                Err(error) => return Err(error.into()),
            }
        }
        Ok(stored)
    }

    /// A direct notice about the customer's own input (not part of the conversation record),
    /// queued durably before the event counts as handled; `key` names it within the event.
    async fn tell(&self, contact: &str, key: &str, text: &str) -> Result<(), TaskError> {
        Ok(self.engine.tell_customer(Channel::Discord, contact, key, text).await?)
    }
}

#[derive(Debug, thiserror::Error)]
enum TaskError {
    #[error("Discord: {0}")]
    Discord(serenity::Error),
    #[error("storing the message failed: {0}")]
    Engine(#[from] EngineError),
}

/// How long the storing task waits for events that may arrive out of order.
const REORDER_WINDOW: Duration = Duration::from_millis(50);

/// A gateway event we act on.
/// A Discord event as it is set aside, to be read again on replay.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum SetAside {
    Message(Box<Message>),
    Press(Box<ComponentInteraction>),
}

#[async_trait]
impl switchboard_core::InboundReplay for DiscordAdapter {
    fn channel(&self) -> Channel {
        Channel::Discord
    }

    async fn replay(&self, payload: &[u8]) -> Result<(), String> {
        let event: SetAside = serde_json::from_slice(payload).map_err(|e| format!("the stored event cannot be read: {e}"))?;
        let http = http(&self.settings);
        let result = match &event {
            SetAside::Message(message) => self.handle_message(&http, message).await,
            SetAside::Press(press) => self.handle_button(&http, press).await,
        };
        result.map_err(|e| e.to_string())
    }
}

enum Incoming {
    Message(Box<Message>),
    Press(Box<ComponentInteraction>),
    /// A new gateway session (not a resume): what was written before it must be fetched.
    NewSession,
}

impl Incoming {
    /// Discord's order; a new session sorts before the events it delivers.
    fn id(&self) -> u64 {
        match self {
            Incoming::Message(message) => message.id.get(),
            Incoming::Press(press) => press.id.get(),
            Incoming::NewSession => 0,
        }
    }
}

/// A channel's messages after `after`, oldest first, a page of 100 at a time.
async fn messages_after(http: &Http, channel: ChannelId, mut after: u64) -> Result<Vec<Message>, serenity::Error> {
    const PAGE: u8 = 100;
    let mut found = Vec::new();
    loop {
        let page = channel.messages(http, GetMessages::new().after(MessageId::new(after)).limit(PAGE)).await?;
        let full = page.len() == usize::from(PAGE);
        let newest = page.iter().map(|m| m.id.get()).max();
        found.extend(page);
        match newest {
            Some(newest) if full => after = newest,
            _ => break,
        }
    }
    found.sort_by_key(|m| m.id);
    Ok(found)
}

/// Hands events to the storing task in arrival order; never blocks the gateway.
struct Handler {
    events: mpsc::UnboundedSender<(Arc<Http>, Incoming)>,
    /// For reporting the gateway's state.
    engine: Arc<Engine>,
}

#[async_trait]
impl EventHandler for Handler {
    async fn ready(&self, ctx: Context, ready: serenity::all::Ready) {
        self.engine.health().up("discord", &format!("gateway connected as {}", ready.user.name));
        let _ = self.events.send((ctx.http.clone(), Incoming::NewSession));
    }

    async fn resume(&self, _ctx: Context, _resumed: serenity::all::ResumedEvent) {
        self.engine.health().up("discord", "gateway connected (resumed)");
    }

    /// A connection lost: the gateway reconnects on its own, and says so with `resume`/`ready`.
    async fn shard_stage_update(&self, _ctx: Context, event: serenity::all::ShardStageUpdateEvent) {
        use serenity::gateway::ConnectionStage;
        if event.new == ConnectionStage::Disconnected || (event.old == ConnectionStage::Connected && event.new != ConnectionStage::Connected) {
            self.engine.health().down("discord", &format!("gateway {}", event.new));
        }
    }

    async fn message(&self, ctx: Context, message: Message) {
        if !message.author.bot {
            let _ = self.events.send((ctx.http.clone(), Incoming::Message(Box::new(message))));
        }
    }

    async fn interaction_create(&self, ctx: Context, interaction: Interaction) {
        if let Interaction::Component(press) = interaction {
            let _ = self.events.send((ctx.http.clone(), Incoming::Press(Box::new(press))));
        }
    }
}

fn backoff(attempt: u32) -> Duration {
    (Duration::from_millis(250) * 2u32.saturating_pow(attempt.min(8))).min(MAX_BACKOFF)
}

/// The channel a contact's conversation lives in.
async fn reply_channel(http: &Http, contact: &str) -> Result<ChannelId, serenity::Error> {
    let mut parts = contact.split('/');
    let invalid = || serenity::Error::Other("not a Discord contact address");
    match (parts.next(), parts.next()) {
        (Some("dm"), Some(user)) => {
            let user: u64 = user.parse().map_err(|_| invalid())?;
            Ok(UserId::new(user).create_dm_channel(http).await?.id)
        }
        (Some("thread"), Some(thread)) => Ok(ChannelId::new(thread.parse().map_err(|_| invalid())?)),
        _ => Err(invalid()),
    }
}

/// The outbox's sender for Discord: text without pings, files as attachments, quick replies as
/// buttons.
pub struct DiscordOutbound {
    http: Http,
    blobs: Arc<dyn BlobStore>,
}

impl DiscordOutbound {
    pub fn new(settings: &DiscordSettings, blobs: Arc<dyn BlobStore>) -> Self {
        Self { http: http(settings), blobs }
    }
}

#[async_trait]
impl Outbound for DiscordOutbound {
    fn channel(&self) -> Channel {
        Channel::Discord
    }

    async fn tell(&self, recipient: &str, text: &str) -> Result<(), DeliveryError> {
        let channel = reply_channel(&self.http, recipient).await.map_err(delivery_error)?;
        let create = CreateMessage::new().content(text).allowed_mentions(CreateAllowedMentions::new());
        channel.send_message(&self.http, create).await.map_err(delivery_error)?;
        Ok(())
    }

    async fn deliver(&self, outbound: &OutboundMessage) -> Result<Option<String>, DeliveryError> {
        let message = &outbound.message;
        let channel = reply_channel(&self.http, &outbound.recipient_external_id).await.map_err(delivery_error)?;
        let mut create = CreateMessage::new().allowed_mentions(CreateAllowedMentions::new());
        if !message.text.is_empty() {
            create = create.content(&message.text);
        }
        for attachment in &message.attachments {
            let bytes = crate::attachment_bytes(self.blobs.as_ref(), attachment).await?;
            create = create.add_file(CreateAttachment::bytes(bytes, attachment.file_name.clone()));
        }
        if !message.quick_replies.is_empty() {
            let buttons = message
                .quick_replies
                .iter()
                .take(5)
                .map(|label| {
                    let id: String = format!("{QUICK_REPLY_PREFIX}{label}").chars().take(100).collect();
                    CreateButton::new(id).label(label.chars().take(80).collect::<String>())
                })
                .collect();
            create = create.components(vec![CreateActionRow::Buttons(buttons)]);
        }
        let sent = channel.send_message(&self.http, create).await.map_err(delivery_error)?;
        Ok(Some(sent.id.to_string()))
    }
}

fn delivery_error(error: serenity::Error) -> DeliveryError {
    use serenity::http::HttpError;
    match error {
        serenity::Error::Http(HttpError::UnsuccessfulRequest(response)) => {
            let status = response.status_code.as_u16();
            let said = format!("{status} {}", response.error.message);
            let unreachable = |why: &str| DeliveryError::Unreachable { reason: format!("Discord: {why} ({said}).") };
            match (status, response.error.code) {
                (_, 50007) => unreachable("cannot send messages to this user; they may have closed direct messages or left the server"),
                (_, 10003) => unreachable("the conversation's channel no longer exists"),
                (_, 10013) => unreachable("this user no longer exists"),
                (429, _) => DeliveryError::Retry { reason: format!("Discord asked us to slow down ({said})."), after: Some(Duration::from_secs(1)) },
                (500.., _) => DeliveryError::Retry { reason: format!("Discord had a server error ({said})."), after: None },
                _ => DeliveryError::Permanent { reason: format!("Discord refused the message ({said}).") },
            }
        }
        other => DeliveryError::Retry { reason: format!("Discord could not be reached: {other}"), after: None },
    }
}
