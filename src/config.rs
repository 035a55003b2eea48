//! Typed configuration: defaults, then a TOML file, then `SWITCHBOARD_SECTION__KEY` env vars.
//! Loaded once in `main` and passed down. Every error names the key and says what is accepted.

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub webchat: WebChatConfig,
    pub bot: BotConfig,
    pub business_hours: BusinessHoursConfig,
    pub sla: SlaConfig,
    /// `[closing]`: confirming resolutions, ratings and status notices to customers.
    pub closing: switchboard_core::closing::ClosingPolicy,
    /// `[documents]`: files customers send for review, their types, the notices of decisions.
    pub documents: switchboard_core::documents::DocumentPolicy,
    pub jobs: JobsConfig,
    pub webhooks: WebhooksConfig,
    pub attachments: AttachmentsConfig,
    pub telegram: TelegramConfig,
    pub discord: DiscordConfig,
    pub email: EmailConfig,
    pub nlp: NlpConfig,
    pub llm: LlmConfig,
    pub log: LogConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NlpConfig {
    /// false runs the keyword classifier only.
    pub enabled: bool,
    /// all-MiniLM-L6-v2 (config.json, tokenizer.json, model.safetensors); ./scripts/fetch-model.sh fills it.
    pub model_dir: PathBuf,
    /// The engine that runs the model: "auto" (ONNX Runtime when its library and model file are
    /// installed, otherwise candle), "onnx", "candle" (built in) or "rust-bert" (libtorch; only in
    /// a binary built with `--features rust-bert`). candle and rust-bert give the exact vectors;
    /// ONNX Runtime runs int8 weights, several times faster, within a cosine of 0.97 of them.
    pub backend: String,
    /// The ONNX model file; relative to `model_dir` unless absolute.
    pub onnx_model: PathBuf,
    /// ONNX Runtime's shared library (libonnxruntime.so), loaded when the "onnx" engine runs.
    pub onnx_runtime: PathBuf,
    /// The intents file (TOML); unset uses the built-in intents.
    pub intents_file: Option<PathBuf>,
    /// Embeddings and trained heads, so restarts skip training.
    pub cache_dir: PathBuf,
    /// Below this confidence, or when out of scope, the LLM (when configured) chooses the intent.
    pub llm_below: f32,
    /// Under overload, a message that waited longer than this for the sentence encoder is
    /// classified without it (marked `fast_path`) so replies keep coming: by the first stage,
    /// or on its words alone without one; while the queue is behind by half of this, new
    /// messages take that path at once, and while the store's commits take an eighth of this
    /// on average, they and the messages waiting for the encoder go on their words alone;
    /// 0: never.
    pub queue_budget_ms: u64,
    /// Plain messages the first stage (static token vectors distilled from the sentence
    /// encoder, `static-embeddings.safetensors` in `model_dir`) is sure of skip the sentence
    /// encoder, and messages shed under overload are judged by it (the default; not installed:
    /// off, as the log says); false: every message goes through the sentence encoder, and shed
    /// ones are ranked on their words alone.
    pub first_stage: bool,
    /// The judgement (topic, need, tone, priority, escalation) also reads the message with a
    /// multilingual encoder (Universal Sentence Encoder Multilingual v3, in `multilingual_dir`),
    /// which places a request in other languages near the English one; false, or not
    /// installed: it reads the sentence encoder's vector alone.
    pub multilingual: bool,
    /// `tokenizer.json` and `use-multilingual.safetensors`; ./scripts/fetch-model.sh fills it.
    pub multilingual_dir: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LlmConfig {
    /// An OpenAI-compatible API such as https://api.openai.com/v1; unset turns the LLM off.
    pub base_url: Option<String>,
    pub api_key: Option<Secret>,
    pub model: String,
    /// Longest wait for one answer; the customer never waits longer.
    pub timeout_ms: u64,
    pub max_requests_per_minute: u32,
    /// Let the LLM answer customers itself when no intent fits (otherwise: clarify, then a person).
    pub answer_out_of_scope: bool,
}

/// `nlp.backend` values.
pub const BACKEND_AUTO: &str = "auto";
pub const BACKEND_ONNX: &str = "onnx";
pub const BACKEND_CANDLE: &str = "candle";
pub const BACKEND_RUST_BERT: &str = "rust-bert";

impl NlpConfig {
    /// The ONNX model file this configuration names.
    pub fn onnx_model_path(&self) -> PathBuf {
        self.model_dir.join(&self.onnx_model)
    }

    /// The engine that runs: "auto" resolved by what is installed.
    pub fn resolved_backend(&self) -> &str {
        match self.backend.as_str() {
            BACKEND_AUTO if self.onnx_runtime.is_file() && self.onnx_model_path().is_file() => BACKEND_ONNX,
            BACKEND_AUTO => BACKEND_CANDLE,
            other => other,
        }
    }
}

impl Default for NlpConfig {
    fn default() -> Self {
        let cache = std::env::var_os("HOME").map_or_else(|| PathBuf::from(".cache"), |h| PathBuf::from(h).join(".cache"));
        Self {
            enabled: true,
            model_dir: cache.join("switchboard/models/all-MiniLM-L6-v2"),
            backend: BACKEND_AUTO.into(),
            onnx_model: PathBuf::from("model.int8.onnx"),
            onnx_runtime: cache.join("switchboard/onnxruntime/libonnxruntime.so"),
            intents_file: None,
            cache_dir: cache.join("switchboard/nlp"),
            llm_below: 0.5,
            queue_budget_ms: 200,
            first_stage: true,
            multilingual: true,
            multilingual_dir: cache.join("switchboard/models/use-multilingual-v3"),
        }
    }
}

impl Default for LlmConfig {
    fn default() -> Self {
        Self { base_url: None, api_key: None, model: "gpt-4o-mini".into(), timeout_ms: 4000, max_requests_per_minute: 60, answer_out_of_scope: false }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EmailConfig {
    /// The support address; email is off while it is unset. Replies come from it, and
    /// `<local>+c<conversation>@<domain>` must reach the same mailbox (plus addressing).
    pub address: Option<String>,
    pub display_name: String,
    pub imap_host: String,
    pub imap_port: u16,
    /// "tls" (IMAPS) or "none" (plain IMAP, only for a server on this host).
    pub imap_security: String,
    /// Extra trusted root certificates (PEM) for IMAP, e.g. a private CA.
    pub imap_ca_file: Option<PathBuf>,
    pub imap_username: String,
    pub imap_password: Option<Secret>,
    pub imap_mailbox: String,
    /// How long one IMAP IDLE lasts (and the polling interval without IDLE).
    pub poll_seconds: u64,
    pub smtp_host: String,
    pub smtp_port: u16,
    /// "none", "starttls" or "tls".
    pub smtp_security: String,
    pub smtp_username: Option<String>,
    pub smtp_password: Option<Secret>,
    /// Mails taken from one sender per minute; more wait on the server.
    pub per_sender_per_minute: u32,
    /// Mail agents their notifications too (the kinds in `notify_about`), through a durable
    /// queue: a crash or a mail server that is down delays a mail, never loses it.
    pub notify_agents: bool,
    /// Which notifications are mailed: assigned, customer_replied, mentioned, sla_warning, sla_breach.
    pub notify_about: Vec<String>,
}

impl Default for EmailConfig {
    fn default() -> Self {
        Self {
            address: None,
            display_name: "Support".into(),
            imap_host: "127.0.0.1".into(),
            imap_port: 993,
            imap_security: "tls".into(),
            imap_ca_file: None,
            imap_username: String::new(),
            imap_password: None,
            imap_mailbox: "INBOX".into(),
            poll_seconds: 60,
            smtp_host: "127.0.0.1".into(),
            smtp_port: 587,
            smtp_security: "starttls".into(),
            smtp_username: None,
            smtp_password: None,
            per_sender_per_minute: 10,
            notify_agents: false,
            notify_about: ["assigned", "mentioned", "sla_warning", "sla_breach"].map(String::from).to_vec(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct DiscordConfig {
    /// The bot token; Discord is off while it is unset.
    pub token: Option<Secret>,
    /// Guild channel ids where customers open cases, each continued in its own thread.
    pub served_channels: Vec<u64>,
    /// Send REST and gateway lookups to this base URL instead of Discord (a local stand-in).
    /// Serenity's rate limiter is off in this mode.
    pub api_proxy: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AttachmentsConfig {
    /// Where uploaded files are kept (generated names, never served directly).
    pub dir: PathBuf,
    /// Larger files are refused.
    pub max_bytes: u64,
}

impl Default for AttachmentsConfig {
    fn default() -> Self {
        Self { dir: PathBuf::from("attachments"), max_bytes: 20 * 1024 * 1024 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TelegramConfig {
    /// The bot token from @BotFather; Telegram is off while it is unset.
    pub token: Option<Secret>,
    /// "polling" (works behind NAT) or "webhook".
    pub mode: TelegramMode,
    /// The Bot API base URL; unset means Telegram's own.
    pub api_url: Option<String>,
    /// Webhook mode: the public HTTPS URL of this server's /telegram/webhook.
    pub webhook_url: Option<String>,
    /// Webhook mode: the secret Telegram must send back; generated and kept when unset.
    pub webhook_secret: Option<Secret>,
    /// Group chats served without an @mention.
    pub group_chats: Vec<i64>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum TelegramMode {
    #[default]
    Polling,
    Webhook,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on; port 0 picks a free port.
    pub listen: String,
    /// Signs visitor tokens. When unset, one is generated and kept in the database.
    pub secret: Option<Secret>,
    /// How long a stop (SIGTERM, SIGINT) may take to finish what is in flight before it exits.
    pub shutdown_timeout_seconds: u64,
    /// Panel sign-in attempts per minute, sustained, per address and per (account, address).
    pub sign_in_per_minute: u32,
    /// Sign-in attempts at once before that limit applies.
    pub sign_in_burst: u32,
    /// Where users reach Switchboard, e.g. https://support.example.com; https makes every cookie
    /// `Secure`.
    pub public_url: Option<String>,
    /// API requests per token per minute (bursts of a fifth of it).
    pub api_requests_per_minute: u32,
    /// How long a reply that fails for a passing reason (a channel or mail server down) is
    /// retried before it is marked failed; refusals that cannot change fail at once.
    pub delivery_retry_window_seconds: u64,
    /// When set, `/metrics` asks for it as a bearer token.
    pub metrics_token: Option<Secret>,
    /// This node's name, for leases and logs when several nodes share a PostgreSQL database.
    /// Unset: the host name and process id.
    pub node_name: Option<String>,
    /// Several nodes: a customer message stored by a node that has not answered it after this
    /// long (the node died) is answered by another node.
    pub takeover_after_seconds: u64,
    /// How long a panel sign-in lasts, in days (a change applies to new sign-ins).
    pub session_days: u32,
    /// The shortest password an account may be given.
    pub password_min_chars: usize,
    /// Failed attempts at storing an inbound Telegram update, Discord message or mail (not a
    /// storage outage) before it is set aside for an admin and its channel moves on.
    pub inbound_attempts: u32,
    /// Reverse proxies (addresses or CIDR ranges) whose `Forwarded`/`X-Forwarded-For` header is
    /// believed; every per-address limit then uses the client's address. Empty: the peer's.
    pub trusted_proxies: Vec<String>,
    /// Agents see only the queue's conversations and their own (lists, pages, the API, customer
    /// pages); admins see all. Off: everyone sees every conversation.
    pub agents_see_only_own_and_queued: bool,
}

#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://path` (embedded) or `postgres://user:password@host/database`.
    pub url: String,
    /// PostgreSQL: the most connections this node's pool opens (each node also keeps a few of
    /// its own for rate limits, live news and exclusive work).
    pub max_connections: u32,
}

impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig").field("url", &self.redacted_url()).field("max_connections", &self.max_connections).finish()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WebChatConfig {
    /// Origins allowed to embed the widget, e.g. "https://shop.example.com"; "*" allows any.
    /// The server's own origin is always allowed.
    pub allowed_origins: Vec<String>,
    pub max_message_chars: usize,
    pub rate_limit_per_minute: u32,
    pub rate_limit_burst: u32,
    /// Open widget sockets per visitor; a newer one closes the oldest.
    pub max_sockets_per_visitor: usize,
    /// New visitor sessions per client address per minute (bursts of a quarter of it).
    pub sessions_per_address_per_minute: u32,
    /// Messages per client address per minute, whatever visitors they come from.
    pub messages_per_address_per_minute: u32,
    pub long_poll_seconds: u64,
    pub title: String,
    pub primary_color: String,
    pub text_color: String,
    pub position: String,
    pub welcome_message: String,
    /// Shared with the embedding site: it signs its signed-in user's id with HMAC-SHA256 under
    /// this secret, so the widget knows who the visitor is (the same history on every device).
    pub identity_secret: Option<Secret>,
    /// What the widget asks an anonymous visitor before the first message: "name", "email"
    /// (both optional to answer); empty asks nothing.
    pub prechat_fields: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BotConfig {
    pub low_confidence_threshold: f32,
    pub low_confidence_escalate_after: u32,
    pub negative_sentiment_threshold: f32,
    /// The model's judgement that a person should take over, 0..=1, at or above which the bot
    /// hands over at once.
    pub escalate_at_least: f32,
    /// Asked when the bot is unsure what the customer means.
    pub clarifying_question: String,
    pub handoff_queued: String,
    pub handoff_offline: String,
    /// Told on escalation outside business hours; `{next_open}`: "Monday 09:00 CET".
    pub handoff_closed: String,
    /// Added to it when `business_hours.outside_hours = "ask_email"` (not on email).
    pub ask_email: String,
    /// Said when a queued customer leaves an email address after being asked; `{email}` is it.
    pub email_noted: String,
    /// A customer writing while queued is told their place and expected wait at most this
    /// often (0: never).
    pub waiting_notice_minutes: u64,
    /// `{position}` and `{expected_wait}` ("about 15 minutes").
    pub waiting_notice: String,
    /// Outside business hours: `{position}` and `{next_open}`.
    pub waiting_notice_closed: String,
    /// `[[bot.priority_rules]]` with `words`, `category`, `intent` (all optional) and `priority`.
    pub priority_rules: Vec<switchboard_core::policy::PriorityRule>,
    /// false: agents cannot take conversations beyond their capacity by hand.
    pub allow_over_capacity: bool,
    /// Waiting on the customer this long: remind them once (0: never).
    pub remind_waiting_after_hours: u64,
    /// Waiting on the customer this long: resolve, and tell them (0: never).
    pub resolve_waiting_after_hours: u64,
    /// Resolved this long with no new message: close (0: never).
    pub close_resolved_after_hours: u64,
    /// A conversation only the bot handled, quiet this long: close (0: never).
    pub close_idle_bot_after_hours: u64,
    pub waiting_reminder: String,
    pub waiting_resolved: String,
    /// The texts above in other languages, by ISO 639-1 code (`[bot.languages.de]`): said to
    /// customers whose conversation is in that language; a text a language leaves out is said as above.
    pub languages: switchboard_core::closing::Languages,
}

/// `[sla]`: how soon escalated conversations are owed a first reply and a resolution, per
/// priority, in business hours when `[business_hours]` is set.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SlaConfig {
    pub enabled: bool,
    /// The assignee (or, while queued, the admins) is warned this long before a due time.
    pub warn_before_minutes: u64,
    /// On a breach the admins are told, and: "notify" (nothing more), "raise_priority", or
    /// "reassign" (a first reply an assigned agent missed goes back to the queue).
    pub on_breach: String,
    pub urgent: SlaTargetConfig,
    pub high: SlaTargetConfig,
    pub medium: SlaTargetConfig,
    pub low: SlaTargetConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SlaTargetConfig {
    pub first_reply_minutes: u64,
    pub resolution_hours: u64,
}

impl Default for SlaConfig {
    fn default() -> Self {
        let policy = switchboard_core::sla::SlaPolicy::default();
        let targets = policy.targets.expect("on by default");
        let target = |i: usize| SlaTargetConfig {
            first_reply_minutes: targets[i].first_reply.as_secs() / 60,
            resolution_hours: targets[i].resolution.as_secs() / 3600,
        };
        Self {
            enabled: true,
            warn_before_minutes: policy.warn_before.as_secs() / 60,
            on_breach: "notify".into(),
            urgent: target(0),
            high: target(1),
            medium: target(2),
            low: target(3),
        }
    }
}

impl SlaConfig {
    pub const BREACH_ACTIONS: [&'static str; 3] = ["notify", "raise_priority", "reassign"];

    pub fn policy(&self) -> switchboard_core::sla::SlaPolicy {
        use switchboard_core::sla::{BreachAction, SlaPolicy, SlaTarget};
        let target = |t: &SlaTargetConfig| SlaTarget {
            first_reply: std::time::Duration::from_secs(t.first_reply_minutes * 60),
            resolution: std::time::Duration::from_secs(t.resolution_hours * 3600),
        };
        SlaPolicy {
            targets: self.enabled.then(|| [target(&self.urgent), target(&self.high), target(&self.medium), target(&self.low)]),
            warn_before: std::time::Duration::from_secs(self.warn_before_minutes * 60),
            on_breach: match self.on_breach.as_str() {
                "raise_priority" => BreachAction::RaisePriority,
                "reassign" => BreachAction::Reassign,
                _ => BreachAction::Notify,
            },
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, problem: String| Err(ConfigError::Invalid { key: key.to_string(), problem });
        if !Self::BREACH_ACTIONS.contains(&self.on_breach.as_str()) {
            return invalid("sla.on_breach", format!("`{}` is not one of: {}", self.on_breach, Self::BREACH_ACTIONS.join(", ")));
        }
        for (name, target) in [("urgent", &self.urgent), ("high", &self.high), ("medium", &self.medium), ("low", &self.low)] {
            if target.first_reply_minutes == 0 || target.first_reply_minutes > 60 * 24 * 365 {
                return invalid(&format!("sla.{name}.first_reply_minutes"), format!("{} is not within 1..=525600 (a year)", target.first_reply_minutes));
            }
            if target.resolution_hours == 0 || target.resolution_hours > 24 * 365 {
                return invalid(&format!("sla.{name}.resolution_hours"), format!("{} is not within 1..=8760 (a year)", target.resolution_hours));
            }
        }
        if self.warn_before_minutes > 60 * 24 * 30 {
            return invalid("sla.warn_before_minutes", format!("{} is more than 30 days", self.warn_before_minutes));
        }
        Ok(())
    }
}

/// `[webhooks]`: how posts to the URLs admins registered (the panel's Webhooks page) are retried.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Posts of one event before it is given up (it stays in the delivery log to send again).
    pub attempts: u32,
    /// The wait after a failed post; it doubles after each next one, up to an hour.
    pub first_retry_seconds: u64,
    /// Failed posts in a row after which a webhook is turned off and admins are told.
    pub turn_off_after_failures: u32,
    /// How long a receiver has to answer.
    pub timeout_seconds: u64,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        let rules = switchboard_core::webhooks::WebhookRules::default();
        Self {
            attempts: rules.attempts,
            first_retry_seconds: rules.first_retry.as_secs(),
            turn_off_after_failures: rules.turn_off_after,
            timeout_seconds: rules.timeout.as_secs(),
        }
    }
}

impl WebhooksConfig {
    pub fn rules(&self) -> switchboard_core::webhooks::WebhookRules {
        switchboard_core::webhooks::WebhookRules {
            attempts: self.attempts,
            first_retry: std::time::Duration::from_secs(self.first_retry_seconds),
            turn_off_after: self.turn_off_after_failures,
            timeout: std::time::Duration::from_secs(self.timeout_seconds),
        }
    }

    fn problem(&self) -> Option<(&'static str, String)> {
        if self.attempts == 0 || self.attempts > 100 {
            return Some(("webhooks.attempts", format!("{} is not within 1..=100", self.attempts)));
        }
        if self.turn_off_after_failures == 0 {
            return Some(("webhooks.turn_off_after_failures", "must be at least 1".into()));
        }
        if self.timeout_seconds == 0 || self.timeout_seconds > 300 {
            return Some(("webhooks.timeout_seconds", format!("{} is not within 1..=300", self.timeout_seconds)));
        }
        None
    }
}

/// `[jobs]`: recurring work on cron schedules. Each job runs once per due time, on one node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    /// The IANA zone schedules are read in; empty: `business_hours.time_zone`, else UTC.
    pub time_zone: String,
    pub backup: BackupJobConfig,
    pub retention: RetentionJobConfig,
    pub reports: ReportsJobConfig,
}

/// `[jobs.reports]`: counts each finished day's customer messages once, so reports over
/// months stay fast.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ReportsJobConfig {
    /// A cron expression; empty: reports count every message each time (slower over months).
    pub schedule: String,
}

impl Default for ReportsJobConfig {
    fn default() -> Self {
        Self { schedule: "17 * * * *".into() }
    }
}

/// `[jobs.backup]`: a consistent copy of the embedded database (SQLite only).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BackupJobConfig {
    /// A cron expression ("0 3 * * *" is 03:00 daily); empty: no scheduled backups.
    pub schedule: String,
    pub dir: PathBuf,
    /// How many backups are kept; older ones are deleted after a good new one.
    pub keep: u32,
}

/// `[jobs.retention]`: deletes what is no longer needed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionJobConfig {
    /// A cron expression; empty: retention never runs on its own (`switchboard db purge` still does).
    pub schedule: String,
    /// Read notifications older than this are deleted; 0 keeps them.
    pub read_notifications_days: u64,
    /// Files of decided documents received longer ago than this are deleted (the record of the
    /// document stays, marked removed); 0 keeps them. Pending documents are never removed.
    pub document_files_days: u64,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self { time_zone: String::new(), backup: BackupJobConfig::default(), retention: RetentionJobConfig::default(), reports: ReportsJobConfig::default() }
    }
}

impl Default for BackupJobConfig {
    fn default() -> Self {
        Self { schedule: String::new(), dir: PathBuf::from("backups"), keep: 7 }
    }
}

impl Default for RetentionJobConfig {
    fn default() -> Self {
        Self { schedule: "30 3 * * *".into(), read_notifications_days: 180, document_files_days: 0 }
    }
}

impl Config {
    /// The zone `[jobs]` schedules are read in.
    pub fn jobs_time_zone(&self) -> Result<chrono_tz::Tz, ConfigError> {
        let (key, zone) = match (self.jobs.time_zone.trim(), self.business_hours.time_zone.trim()) {
            ("", "") => return Ok(chrono_tz::UTC),
            ("", zone) => ("business_hours.time_zone", zone),
            (zone, _) => ("jobs.time_zone", zone),
        };
        zone.parse().map_err(|_| ConfigError::Invalid {
            key: key.into(),
            problem: format!("`{zone}` is not an IANA time zone such as Europe/Berlin or UTC"),
        })
    }

    /// The configured jobs' schedules, by name: (name, config key, schedule).
    pub fn job_schedules(&self) -> Result<Vec<(&'static str, switchboard_core::schedule::CronSchedule)>, ConfigError> {
        let mut schedules = Vec::new();
        for (name, text) in [("backup", &self.jobs.backup.schedule), ("retention", &self.jobs.retention.schedule), ("reports", &self.jobs.reports.schedule)] {
            if text.trim().is_empty() {
                continue;
            }
            let key = format!("jobs.{name}.schedule");
            let schedule = switchboard_core::schedule::CronSchedule::parse(&key, text)
                .map_err(|error| ConfigError::Invalid { key, problem: error.to_string() })?;
            schedules.push((name, schedule));
        }
        Ok(schedules)
    }

    /// The kinds of notification mailed to agents (none unless `email.notify_agents`).
    pub fn mailed_notices(&self) -> Result<Vec<switchboard_models::NotificationKind>, ConfigError> {
        let kinds = self
            .email
            .notify_about
            .iter()
            .map(|kind| {
                kind.parse().map_err(|_| ConfigError::Invalid {
                    key: "email.notify_about".into(),
                    problem: format!("`{kind}` is not one of: assigned, customer_replied, mentioned, sla_warning, sla_breach"),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        match self.email.notify_agents && self.email.address.is_some() {
            true => Ok(kinds),
            false => Ok(Vec::new()),
        }
    }

    fn validate_jobs(&self) -> Result<(), ConfigError> {
        self.jobs_time_zone()?;
        let schedules = self.job_schedules()?;
        if schedules.iter().any(|(name, _)| *name == "backup") {
            if self.database.is_postgres() {
                return Err(ConfigError::Invalid {
                    key: "jobs.backup.schedule".into(),
                    problem: "scheduled backups copy the embedded SQLite database; on PostgreSQL schedule `pg_dump` \
                              instead (docs/DEPLOYMENT.md) and leave this empty"
                        .into(),
                });
            }
            if self.jobs.backup.keep == 0 {
                return Err(ConfigError::Invalid { key: "jobs.backup.keep".into(), problem: "must be at least 1".into() });
            }
        }
        self.mailed_notices()?;
        let bot_languages = switchboard_core::Policy { languages: self.bot.languages.clone(), ..switchboard_core::Policy::default() };
        if let Some((key, problem)) = self.closing.problem().or_else(|| self.documents.problem()).or_else(|| bot_languages.languages_problem()) {
            return Err(ConfigError::Invalid { key, problem });
        }
        Ok(())
    }
}

/// `[business_hours]`: when the team works. Without a `time_zone` the team is always there.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BusinessHoursConfig {
    /// An IANA time zone such as "Europe/Berlin"; empty: no business hours (always open).
    pub time_zone: String,
    /// Each day's hours: "09:00-17:00", "09:00-12:00, 13:00-17:00" or "closed" (the default).
    pub monday: String,
    pub tuesday: String,
    pub wednesday: String,
    pub thursday: String,
    pub friday: String,
    pub saturday: String,
    pub sunday: String,
    /// Local dates closed all day: ["2026-12-25", "2027-01-01"].
    pub holidays: Vec<String>,
    /// Outside hours: "queue" (the handoff says when the team is back) or "ask_email" (it also
    /// asks customers on web chat, Telegram and Discord for an email address, `bot.ask_email`).
    pub outside_hours: String,
    /// `[business_hours.channels.email]` and so on: a channel whose team works other hours:
    /// its own `time_zone` (none: always open on that channel), days and holidays.
    pub channels: std::collections::BTreeMap<String, BusinessHoursConfig>,
}

impl Default for BusinessHoursConfig {
    fn default() -> Self {
        Self {
            time_zone: String::new(),
            monday: "closed".into(),
            tuesday: "closed".into(),
            wednesday: "closed".into(),
            thursday: "closed".into(),
            friday: "closed".into(),
            saturday: "closed".into(),
            sunday: "closed".into(),
            holidays: Vec::new(),
            outside_hours: "queue".into(),
            channels: std::collections::BTreeMap::new(),
        }
    }
}

impl BusinessHoursConfig {
    /// The schedule, or `None` when business hours are off.
    pub fn schedule(&self) -> Result<Option<switchboard_core::hours::BusinessHours>, switchboard_core::hours::HoursError> {
        self.schedule_at("business_hours")
    }

    /// Each channel with hours of its own, and its schedule.
    pub fn channel_schedules(
        &self,
    ) -> Result<Vec<(switchboard_models::Channel, Option<switchboard_core::hours::BusinessHours>)>, switchboard_core::hours::HoursError> {
        self.channels
            .iter()
            .map(|(name, hours)| {
                let prefix = format!("business_hours.channels.{name}");
                let refused = |expected: &str| switchboard_core::hours::HoursError { key: prefix.clone(), value: name.clone(), expected: expected.into() };
                let channel = name.parse().map_err(|_| refused("a channel: webchat, telegram, discord or email"))?;
                if !hours.channels.is_empty() || hours.outside_hours != BusinessHoursConfig::default().outside_hours {
                    return Err(refused("a channel's own time_zone, days and holidays; `channels` and `outside_hours` are set once, in [business_hours]"));
                }
                Ok((channel, hours.schedule_at(&prefix)?))
            })
            .collect()
    }

    fn schedule_at(&self, prefix: &str) -> Result<Option<switchboard_core::hours::BusinessHours>, switchboard_core::hours::HoursError> {
        if self.time_zone.trim().is_empty() {
            return Ok(None);
        }
        let days = [
            ("monday", &self.monday),
            ("tuesday", &self.tuesday),
            ("wednesday", &self.wednesday),
            ("thursday", &self.thursday),
            ("friday", &self.friday),
            ("saturday", &self.saturday),
            ("sunday", &self.sunday),
        ]
        .map(|(day, hours)| (day.to_string(), hours.clone()));
        switchboard_core::hours::BusinessHours::parse(prefix, self.time_zone.trim(), &days, &self.holidays).map(Some)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A tracing filter such as "info" or "switchboard=debug,info".
    pub level: String,
    /// "text" or "json".
    pub format: String,
}

/// A secret string: never printed by `Debug`.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            secret: None,
            shutdown_timeout_seconds: 10,
            sign_in_per_minute: 10,
            sign_in_burst: 5,
            trusted_proxies: Vec::new(),
            agents_see_only_own_and_queued: false,
            node_name: None,
            public_url: None,
            api_requests_per_minute: 600,
            delivery_retry_window_seconds: 24 * 60 * 60,
            metrics_token: None,
            takeover_after_seconds: 30,
            inbound_attempts: 8,
            session_days: switchboard_admin_web::accounts::SESSION_DAYS,
            password_min_chars: switchboard_admin_web::accounts::MIN_PASSWORD_CHARS,
        }
    }
}

impl DatabaseConfig {
    pub fn is_postgres(&self) -> bool {
        switchboard_store::is_postgres(&self.url)
    }

    /// The URL with any password replaced, for logs and error messages.
    pub fn redacted_url(&self) -> String {
        match url::Url::parse(&self.url) {
            Ok(mut parsed) if parsed.password().is_some() => {
                let _ = parsed.set_password(Some("***"));
                parsed.to_string()
            }
            _ => self.url.clone(),
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self { url: "sqlite://switchboard.db".into(), max_connections: switchboard_store::PgStore::DEFAULT_CONNECTIONS }
    }
}

impl Default for WebChatConfig {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            max_message_chars: 4000,
            rate_limit_per_minute: 30,
            rate_limit_burst: 10,
            max_sockets_per_visitor: 5,
            sessions_per_address_per_minute: 20,
            messages_per_address_per_minute: 120,
            long_poll_seconds: 25,
            title: "Support".into(),
            primary_color: "#2563eb".into(),
            text_color: "#ffffff".into(),
            position: "right".into(),
            welcome_message: "Hi! How can we help you today?".into(),
            identity_secret: None,
            prechat_fields: Vec::new(),
        }
    }
}

/// A quiet-conversation rule in whole hours, 0 when off.
fn hours(after: Option<std::time::Duration>) -> u64 {
    after.map_or(0, |after| after.as_secs() / 3600)
}

impl Default for BotConfig {
    fn default() -> Self {
        let policy = switchboard_core::Policy::default();
        Self {
            low_confidence_threshold: policy.low_confidence_threshold,
            low_confidence_escalate_after: policy.low_confidence_escalate_after,
            negative_sentiment_threshold: policy.negative_sentiment_threshold,
            escalate_at_least: policy.escalate_at_least,
            clarifying_question: policy.clarifying_question,
            handoff_queued: policy.handoff_queued,
            handoff_offline: policy.handoff_offline,
            handoff_closed: policy.handoff_closed,
            waiting_notice_minutes: policy.waiting_notice_every.map_or(0, |every| every.as_secs() / 60),
            waiting_notice: policy.waiting_notice,
            waiting_notice_closed: policy.waiting_notice_closed,
            ask_email: "If you'd like our answer by email instead, write your email address here.".into(),
            email_noted: switchboard_core::Policy::default().email_noted,
            priority_rules: policy.priority_rules,
            allow_over_capacity: policy.allow_over_capacity,
            remind_waiting_after_hours: hours(policy.quiet.remind_waiting_after),
            resolve_waiting_after_hours: hours(policy.quiet.resolve_waiting_after),
            close_resolved_after_hours: hours(policy.quiet.close_resolved_after),
            close_idle_bot_after_hours: hours(policy.quiet.close_idle_bot_after),
            waiting_reminder: policy.quiet.waiting_reminder,
            waiting_resolved: policy.quiet.waiting_resolved,
            languages: switchboard_core::closing::Languages::new(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { level: "info".into(), format: "text".into() }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server: ServerConfig::default(),
            database: DatabaseConfig::default(),
            webchat: WebChatConfig::default(),
            bot: BotConfig::default(),
            business_hours: BusinessHoursConfig::default(),
            sla: SlaConfig::default(),
            closing: switchboard_core::closing::ClosingPolicy::default(),
            documents: switchboard_core::documents::DocumentPolicy::default(),
            jobs: JobsConfig::default(),
            webhooks: WebhooksConfig::default(),
            attachments: AttachmentsConfig::default(),
            telegram: TelegramConfig::default(),
            discord: DiscordConfig::default(),
            email: EmailConfig::default(),
            nlp: NlpConfig::default(),
            llm: LlmConfig::default(),
            log: LogConfig::default(),
        }
    }
}

/// The file read when `--config` is not given, if it exists.
pub const DEFAULT_CONFIG_FILE: &str = "switchboard.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0} does not exist; create it or leave out --config to use defaults")]
    MissingFile(PathBuf),
    #[error("{0}")]
    Parse(String),
    #[error("config key `{key}`: {problem}")]
    Invalid { key: String, problem: String },
}

impl Config {
    /// Defaults, then `path` (or `switchboard.toml` when present), then environment variables.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        match path {
            Some(path) if !path.exists() => return Err(ConfigError::MissingFile(path.to_path_buf())),
            Some(path) => figment = figment.merge(Toml::file_exact(path)),
            None if Path::new(DEFAULT_CONFIG_FILE).exists() => {
                figment = figment.merge(Toml::file_exact(DEFAULT_CONFIG_FILE))
            }
            None => {}
        }
        // Only SWITCHBOARD_<SECTION>__<KEY> is config; other SWITCHBOARD_* variables (a deployment
        // script's SWITCHBOARD_BIN, say) belong to someone else.
        figment = figment.merge(Env::prefixed("SWITCHBOARD_").filter(|key| key.as_str().contains("__")).split("__"));
        let config: Config = figment.extract().map_err(|e| ConfigError::Parse(describe(e)))?;
        config.validate()?;
        Ok(config)
    }

    /// `server.node_name`, or the host name and process id.
    pub fn node_name(&self) -> String {
        self.server.node_name.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "switchboard".into());
            format!("{host}:{}", std::process::id())
        })
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.server.listen.parse().map_err(|_| ConfigError::Invalid {
            key: "server.listen".into(),
            problem: format!("`{}` is not an address like 127.0.0.1:8080", self.server.listen),
        })
    }

    /// The checks a loaded configuration passes (the panel's settings pass them too).
    pub fn check(&self) -> Result<(), ConfigError> {
        self.validate()
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, problem: String| Err(ConfigError::Invalid { key: key.to_string(), problem });
        self.listen_addr()?;
        let fewest = switchboard_store::PgStore::MIN_CONNECTIONS;
        if !(fewest..=10_000).contains(&self.database.max_connections) {
            return invalid("database.max_connections", format!("{} is not within {fewest}..=10000", self.database.max_connections));
        }
        if let Err(error) = self.business_hours.schedule().and(self.business_hours.channel_schedules()) {
            return invalid(&error.key, format!("`{}` is not valid; expected {}", error.value, error.expected));
        }
        self.sla.validate()?;
        self.validate_jobs()?;
        if let Some((key, problem)) = self.webhooks.problem() {
            return invalid(key, problem);
        }
        if !["queue", "ask_email"].contains(&self.business_hours.outside_hours.as_str()) {
            return invalid("business_hours.outside_hours", format!("`{}` is not one of: queue, ask_email", self.business_hours.outside_hours));
        }
        let url = &self.database.url;
        if !url.starts_with("sqlite:") && !self.database.is_postgres() {
            return invalid(
                "database.url",
                format!(
                    "`{}` is not supported; use sqlite://switchboard.db (embedded) or postgres://user@host/database",
                    self.database.redacted_url()
                ),
            );
        }
        let w = &self.webchat;
        for origin in &w.allowed_origins {
            if origin != "*" && !is_origin(origin) {
                return invalid(
                    "webchat.allowed_origins",
                    format!("`{origin}` is not an origin like https://shop.example.com (no path) or \"*\""),
                );
            }
        }
        if let Some(url) = &self.server.public_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return invalid("server.public_url", format!("`{url}` is not a URL like https://support.example.com"));
        }
        if self.server.delivery_retry_window_seconds == 0 {
            return invalid("server.delivery_retry_window_seconds", "must be at least 1 (24 hours is 86400)".into());
        }
        if self.server.takeover_after_seconds == 0 || self.server.takeover_after_seconds > 86_400 {
            return invalid(
                "server.takeover_after_seconds",
                "must be from 1 to 86400; keep it above the longest classification (the LLM's timeout); 30 is the default".into(),
            );
        }
        if !(1..=365).contains(&self.server.session_days) {
            return invalid("server.session_days", format!("{} is not within 1..=365 (7 is the default)", self.server.session_days));
        }
        if !(8..=128).contains(&self.server.password_min_chars) {
            return invalid("server.password_min_chars", format!("{} is not within 8..=128 (12 is the default)", self.server.password_min_chars));
        }
        if !(1..=100).contains(&self.server.inbound_attempts) {
            return invalid("server.inbound_attempts", format!("{} is not within 1..=100 (8 is the default)", self.server.inbound_attempts));
        }
        if self.server.api_requests_per_minute == 0 {
            return invalid("server.api_requests_per_minute", "must be at least 1".into());
        }
        if let Err(problem) = switchboard_core::TrustedProxies::parse(&self.server.trusted_proxies) {
            return invalid("server.trusted_proxies", problem);
        }
        if w.max_sockets_per_visitor == 0 || w.sessions_per_address_per_minute == 0 || w.messages_per_address_per_minute == 0 {
            return invalid("webchat.max_sockets_per_visitor", "web-chat caps must be at least 1".into());
        }
        if self.server.sign_in_per_minute == 0 || self.server.sign_in_burst == 0 {
            return invalid("server.sign_in_per_minute", "sign-in limits must be at least 1".into());
        }
        if !(1..=100_000).contains(&w.max_message_chars) {
            return invalid("webchat.max_message_chars", format!("{} is not within 1..=100000", w.max_message_chars));
        }
        if w.rate_limit_per_minute == 0 || w.rate_limit_burst == 0 {
            return invalid("webchat.rate_limit_per_minute", "rate limits must be at least 1".into());
        }
        if !(1..=120).contains(&w.long_poll_seconds) {
            return invalid("webchat.long_poll_seconds", format!("{} is not within 1..=120", w.long_poll_seconds));
        }
        for (key, colour) in [("webchat.primary_color", &w.primary_color), ("webchat.text_color", &w.text_color)] {
            if !is_hex_colour(colour) {
                return invalid(key, format!("`{colour}` is not a colour like #2563eb"));
            }
        }
        if w.position != "left" && w.position != "right" {
            return invalid("webchat.position", format!("`{}` is not one of: left, right", w.position));
        }
        if let Some(field) = w.prechat_fields.iter().find(|f| !["name", "email"].contains(&f.as_str())) {
            return invalid("webchat.prechat_fields", format!("`{field}` is not one of: name, email"));
        }
        if w.identity_secret.as_ref().is_some_and(|s| s.0.len() < 16) {
            return invalid("webchat.identity_secret", "is shorter than 16 characters; use a long random secret (e.g. `openssl rand -hex 32`)".into());
        }
        match self.nlp.backend.as_str() {
            BACKEND_AUTO | BACKEND_ONNX | BACKEND_CANDLE => {}
            BACKEND_RUST_BERT if cfg!(feature = "rust-bert") => {}
            BACKEND_RUST_BERT => {
                return invalid(
                    "nlp.backend",
                    "this binary was built without the rust-bert backend; rebuild with `--features rust-bert` \
                     (README: Understanding customers) or use \"candle\""
                        .into(),
                );
            }
            other => {
                return invalid("nlp.backend", format!("`{other}` is not one of: {BACKEND_AUTO}, {BACKEND_ONNX}, {BACKEND_CANDLE}, {BACKEND_RUST_BERT}"));
            }
        }
        if !(0.0..=1.0).contains(&self.nlp.llm_below) {
            return invalid("nlp.llm_below", format!("{} is not within 0..=1", self.nlp.llm_below));
        }
        if let Some(url) = &self.llm.base_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return invalid("llm.base_url", format!("`{url}` is not an http(s) URL like https://api.openai.com/v1"));
            }
        }
        if !(100..=120_000).contains(&self.llm.timeout_ms) {
            return invalid("llm.timeout_ms", format!("{} is not within 100..=120000", self.llm.timeout_ms));
        }
        if self.llm.max_requests_per_minute == 0 {
            return invalid("llm.max_requests_per_minute", "must be at least 1; unset llm.base_url to turn the LLM off".into());
        }
        let b = &self.bot;
        if !(0.0..=1.0).contains(&b.low_confidence_threshold) {
            return invalid("bot.low_confidence_threshold", format!("{} is not within 0..=1", b.low_confidence_threshold));
        }
        if b.low_confidence_escalate_after == 0 {
            return invalid("bot.low_confidence_escalate_after", "must be at least 1".into());
        }
        if b.remind_waiting_after_hours > 0 && b.resolve_waiting_after_hours > 0 && b.resolve_waiting_after_hours <= b.remind_waiting_after_hours {
            return invalid(
                "bot.resolve_waiting_after_hours",
                format!(
                    "{} comes before the reminder at {} hours; make it longer, or 0 to never resolve by itself",
                    b.resolve_waiting_after_hours, b.remind_waiting_after_hours
                ),
            );
        }
        for (key, hours) in [
            ("bot.remind_waiting_after_hours", b.remind_waiting_after_hours),
            ("bot.resolve_waiting_after_hours", b.resolve_waiting_after_hours),
            ("bot.close_resolved_after_hours", b.close_resolved_after_hours),
            ("bot.close_idle_bot_after_hours", b.close_idle_bot_after_hours),
        ] {
            if hours > 24 * 3650 {
                return invalid(key, format!("{hours} hours is more than ten years; use 0 to turn the rule off"));
            }
        }
        if !(-1.0..=1.0).contains(&b.negative_sentiment_threshold) {
            return invalid(
                "bot.negative_sentiment_threshold",
                format!("{} is not within -1..=1", b.negative_sentiment_threshold),
            );
        }
        if !(0.0..=1.0).contains(&b.escalate_at_least) {
            return invalid("bot.escalate_at_least", format!("{} is not within 0..=1 (a probability)", b.escalate_at_least));
        }
        if self.attachments.max_bytes == 0 {
            return invalid("attachments.max_bytes", "must be at least 1".into());
        }
        let t = &self.telegram;
        if let Some(url) = &t.api_url
            && url::Url::parse(url).is_err()
        {
            return invalid("telegram.api_url", format!("`{url}` is not a URL like https://api.telegram.org"));
        }
        if t.token.is_some() && t.mode == TelegramMode::Webhook {
            match &t.webhook_url {
                None => return invalid("telegram.webhook_url", "webhook mode needs the public URL of /telegram/webhook".into()),
                Some(url) if url::Url::parse(url).is_err() => {
                    return invalid("telegram.webhook_url", format!("`{url}` is not a URL"));
                }
                Some(_) => {}
            }
        }
        if let Some(secret) = &t.webhook_secret
            && (secret.0.is_empty()
                || secret.0.len() > 256
                || !secret.0.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))
        {
            return invalid("telegram.webhook_secret", "must be 1-256 characters of A-Z, a-z, 0-9, _ and -".into());
        }
        if let Some(proxy) = &self.discord.api_proxy
            && url::Url::parse(proxy).is_err()
        {
            return invalid("discord.api_proxy", format!("`{proxy}` is not a URL like http://127.0.0.1:9000"));
        }
        let e = &self.email;
        if let Some(address) = &e.address {
            let valid = address.split_once('@').is_some_and(|(l, d)| !l.is_empty() && !l.contains('+') && d.contains('.'));
            if !valid {
                return invalid("email.address", format!("`{address}` is not an address like support@example.com (no +tag)"));
            }
            if e.imap_username.is_empty() || e.imap_password.is_none() {
                return invalid("email.imap_username", "email needs imap_username and imap_password".into());
            }
            if !["none", "tls"].contains(&e.imap_security.as_str()) {
                return invalid("email.imap_security", format!("`{}` is not one of: tls, none", e.imap_security));
            }
            if let Some(path) = &e.imap_ca_file
                && !path.is_file()
            {
                return invalid("email.imap_ca_file", format!("{} is not a readable file", path.display()));
            }
            if !["none", "starttls", "tls"].contains(&e.smtp_security.as_str()) {
                return invalid("email.smtp_security", format!("`{}` is not one of: none, starttls, tls", e.smtp_security));
            }
            if !(1..=1740).contains(&e.poll_seconds) {
                return invalid("email.poll_seconds", format!("{} is not within 1..=1740 (IMAP IDLE must be renewed within 29 minutes)", e.poll_seconds));
            }
            if e.per_sender_per_minute == 0 {
                return invalid("email.per_sender_per_minute", "must be at least 1".into());
            }
        }
        if self.log.format != "text" && self.log.format != "json" {
            return invalid("log.format", format!("`{}` is not one of: text, json", self.log.format));
        }
        if let Some(secret) = &self.server.secret
            && secret.0.len() < 32
        {
            return invalid("server.secret", "must be at least 32 characters (use a long random string)".into());
        }
        Ok(())
    }
}

/// Figment's message plus where the bad value came from (file or env var).
fn describe(error: figment::Error) -> String {
    error
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let env_var = format!("SWITCHBOARD_{}", e.path.join("__").to_uppercase());
            let source = match e.metadata.as_ref().and_then(|m| m.source.as_ref()) {
                Some(source) => format!(" (from {source})"),
                None if !key.is_empty() && std::env::var_os(&env_var).is_some() => {
                    format!(" (from environment variable {env_var})")
                }
                None => String::new(),
            };
            let suggestion = match &e.kind {
                figment::error::Kind::UnknownField(found, expected) => nearest(found, expected)
                    .map(|near| {
                        let section = e.path.iter().filter(|p| p.as_str() != found.as_str()).cloned().chain([near.to_string()]);
                        let path: Vec<String> = section.collect();
                        format!(
                            "; did you mean `{}` (environment variable SWITCHBOARD_{})?",
                            path.join("."),
                            path.join("__").to_uppercase()
                        )
                    })
                    .unwrap_or_default(),
                _ => String::new(),
            };
            let key = if key.is_empty() { String::new() } else { format!("config key `{key}`: ") };
            format!("{key}{}{source}{suggestion}", e.kind)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The known key closest to a misspelt one, when it is close enough to be a likely typo.
fn nearest<'a>(found: &str, known: &[&'a str]) -> Option<&'a str> {
    let found = found.to_lowercase();
    known
        .iter()
        .map(|k| (edit_distance(&found, k), *k))
        .filter(|(distance, k)| *distance <= (k.len() / 3).max(2))
        .min()
        .map(|(_, k)| k)
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != *cb)).min(row[j] + 1).min(above + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

fn is_origin(text: &str) -> bool {
    let Some(rest) = text.strip_prefix("https://").or_else(|| text.strip_prefix("http://")) else {
        return false;
    };
    !rest.is_empty() && !rest.contains('/') && !rest.contains('?') && !rest.contains('#')
}

fn is_hex_colour(text: &str) -> bool {
    text.len() == 7 && text.starts_with('#') && text[1..].bytes().all(|b| b.is_ascii_hexdigit())
}
