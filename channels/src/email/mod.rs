//! Email: IMAP (async-imap) in, SMTP (lettre) out, MIME with mail-parser.
//!
//! A mail joins a conversation by, in order: a Message-ID it replies to (In-Reply-To, then
//! References) that is ours or a customer mail we stored; the `support+c<conversation>` address
//! it was sent to; otherwise it starts a new conversation. Never by subject.
//! A mail is flagged `$Switchboard` on the server only after it is committed; a crash before the
//! flag means it is read again and dropped as a duplicate (its Message-ID is the external id).

pub mod bounce;
pub mod threading;

pub use threading::{
    AutomationSigns, conversation_in_address, conversation_in_message_id, is_automatic, our_message_id, our_reply_in_message_id,
    strip_quotes_and_signature, token_address,
};

use async_trait::async_trait;
use futures::StreamExt;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Attachment as MailAttachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use mail_parser::{MessageParser, MimeHeaders};
use std::sync::Arc;
use std::time::Duration;
use switchboard_core::ports::{BlobStore, Conversations, DeliveryError, Notifications, Outbound};
use switchboard_core::{Engine, EngineError};
use switchboard_models::{Attachment, Channel, Inbound, OutboundMessage, Sender, Thread};
use tokio::net::TcpStream;

/// A mail has no buttons: the choices are written out, for the customer to reply with one.
fn with_choices(text: &str, choices: &[String]) -> String {
    if choices.is_empty() {
        return text.to_string();
    }
    let quoted: Vec<String> = choices.iter().map(|c| format!("“{c}”")).collect();
    format!("{text}\n\nReply with {}.", quoted.join(" or "))
}

/// The IMAP keyword that marks a mail as stored by Switchboard.
pub const PROCESSED_FLAG: &str = "$Switchboard";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImapSecurity {
    /// Plain IMAP; only for a server on the same host.
    None,
    /// IMAPS (TLS from the first byte), usually port 993.
    Tls,
}

#[derive(Clone)]
pub struct ImapSettings {
    pub host: String,
    pub port: u16,
    pub security: ImapSecurity,
    /// Extra trusted roots (PEM), e.g. a private CA; the public web roots are always trusted.
    pub ca_file: Option<std::path::PathBuf>,
    pub username: String,
    pub password: String,
    pub mailbox: String,
    /// Without IDLE (or as a safety net with it), look for new mail this often.
    pub poll_interval: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// Plain SMTP; only for a relay on the same host.
    None,
    StartTls,
    Tls,
}

#[derive(Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub username: Option<String>,
    pub password: Option<String>,
}

#[derive(Clone)]
pub struct EmailSettings {
    pub imap: ImapSettings,
    pub smtp: SmtpSettings,
    /// The support address customers write to and our mail comes from.
    pub address: String,
    pub display_name: String,
    /// Mails from one sender taken per minute; more wait on the server (never dropped).
    pub per_sender_per_minute: u32,
}

impl std::fmt::Debug for EmailSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailSettings")
            .field("address", &self.address)
            .field("imap", &format!("{}:{}", self.imap.host, self.imap.port))
            .field("smtp", &format!("{}:{}", self.smtp.host, self.smtp.port))
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    #[error("IMAP: {0}")]
    Imap(#[from] async_imap::error::Error),
    #[error("IMAP connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("storing the mail failed: {0}")]
    Engine(#[from] EngineError),
}

/// What became of one mail on the server.
enum Outcome {
    /// Stored or deliberately ignored: flag it.
    Done,
    /// Not now (the sender is over its rate): leave it for a later pass.
    Later,
}

type ImapSession = async_imap::Session<ImapStream>;

/// The IMAP connection, plain or TLS.
#[derive(Debug)]
pub enum ImapStream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl tokio::io::AsyncRead for ImapStream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            ImapStream::Plain(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            ImapStream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for ImapStream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            ImapStream::Plain(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            ImapStream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            ImapStream::Plain(s) => std::pin::Pin::new(s).poll_flush(cx),
            ImapStream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            ImapStream::Plain(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            ImapStream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Connects to the IMAP server, with TLS when configured (the certificate must verify for
/// `host`: a name or an IP address).
pub async fn connect_imap(settings: &ImapSettings) -> std::io::Result<ImapStream> {
    use std::io::{Error, ErrorKind};
    let tcp = TcpStream::connect((settings.host.as_str(), settings.port)).await?;
    if settings.security == ImapSecurity::None {
        return Ok(ImapStream::Plain(tcp));
    }
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = &settings.ca_file {
        use rustls_pki_types::pem::PemObject;
        let certificates = rustls_pki_types::CertificateDer::pem_file_iter(path)
            .map_err(|e| Error::new(ErrorKind::InvalidInput, format!("email.imap_ca_file {}: {e}", path.display())))?;
        for certificate in certificates {
            let certificate = certificate
                .map_err(|e| Error::new(ErrorKind::InvalidData, format!("email.imap_ca_file {}: {e}", path.display())))?;
            roots.add(certificate).map_err(|e| Error::new(ErrorKind::InvalidData, e))?;
        }
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::other(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from(settings.host.clone())
        .map_err(|e| Error::new(ErrorKind::InvalidInput, format!("email.imap_host: {e}")))?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await?;
    Ok(ImapStream::Tls(Box::new(tls)))
}

pub struct EmailAdapter {
    engine: Arc<Engine>,
    settings: EmailSettings,
    senders: std::sync::Mutex<std::collections::HashMap<String, (u32, tokio::time::Instant)>>,
    /// Failed attempts at mails not stored yet, by UID (across IMAP sessions).
    failing: std::sync::Mutex<std::collections::HashMap<u32, switchboard_core::FailedAttempts>>,
}

impl EmailAdapter {
    pub fn new(engine: Arc<Engine>, settings: EmailSettings) -> Self {
        Self { engine, settings, senders: Default::default(), failing: Default::default() }
    }

    /// Reads the mailbox until the task is dropped: IDLE when the server has it, polling
    /// otherwise; reconnects with backoff after any failure.
    pub async fn run(self: Arc<Self>) {
        let mut failures = 0u32;
        loop {
            match self.session().await {
                Ok(()) => failures = 0,
                Err(error) => {
                    self.engine.health().down("email", &format!("IMAP: {error}"));
                    failures += 1;
                    tracing::warn!(%error, failures, "IMAP session ended; reconnecting");
                }
            }
            tokio::time::sleep(Duration::from_millis(250) * 2u32.pow(failures.min(7))).await;
        }
    }

    async fn session(&self) -> Result<(), EmailError> {
        let imap = &self.settings.imap;
        let stream = connect_imap(imap).await?;
        let mut client = async_imap::Client::new(stream);
        client.read_response().await?;
        let mut session = client.login(&imap.username, &imap.password).await.map_err(|(error, _)| error)?;
        session.select(&imap.mailbox).await?;
        let idle = session.capabilities().await?.has_str("IDLE");
        let working = format!("IMAP session on {}, {}", imap.mailbox, if idle { "waiting with IDLE" } else { "polling" });
        loop {
            self.process_new(&mut session).await?;
            self.engine.health().up("email", &working);
            if idle {
                let mut waiting = session.idle();
                waiting.init().await?;
                let (wait, _interrupt) = waiting.wait_with_timeout(imap.poll_interval);
                wait.await?;
                session = waiting.done().await?;
            } else {
                tokio::time::sleep(imap.poll_interval).await;
                session.noop().await?;
            }
        }
    }

    /// Every mail not yet flagged, oldest first: stored, then flagged.
    async fn process_new(&self, session: &mut ImapSession) -> Result<(), EmailError> {
        let mut uids: Vec<u32> = session.uid_search(format!("UNKEYWORD {PROCESSED_FLAG}")).await?.into_iter().collect();
        uids.sort_unstable();
        for uid in uids {
            let raw = {
                let mut fetches = session.uid_fetch(uid.to_string(), "BODY.PEEK[]").await?;
                let mut raw = None;
                while let Some(fetch) = fetches.next().await {
                    if let Some(body) = fetch?.body() {
                        raw = Some(body.to_vec());
                    }
                }
                raw
            };
            let Some(raw) = raw else { continue };
            let ingested = match self.ingest(&raw).await {
                Ok(outcome) => outcome,
                Err(error) => {
                    let mut tries = self.failing.lock().expect("failing mails").remove(&uid).unwrap_or_default();
                    let id = MessageParser::default().parse(&raw).map_or_else(|| format!("imap-uid-{uid}"), |mail| message_id_of(&mail, &raw));
                    if !self.engine.set_aside_after(&mut tries, Channel::Email, &id, || raw.clone(), &error.to_string()).await {
                        self.failing.lock().expect("failing mails").insert(uid, tries);
                        return Err(error.into());
                    }
                    Outcome::Done
                }
            };
            self.failing.lock().expect("failing mails").remove(&uid);
            match ingested {
                Outcome::Later => continue,
                Outcome::Done => {
                    let updates = session.uid_store(uid.to_string(), format!("+FLAGS ({PROCESSED_FLAG})")).await?;
                    let _: Vec<_> = updates.collect().await;
                }
            }
        }
        Ok(())
    }

    /// Stores one raw mail as a customer message (or decides to ignore it). A bounce of one of
    /// our replies marks that reply failed instead; an auto-reply is dropped.
    async fn ingest(&self, raw: &[u8]) -> Result<Outcome, EngineError> {
        let Some(mail) = MessageParser::default().parse(raw) else {
            tracing::warn!("ignoring a mail that is not MIME");
            return Ok(Outcome::Done);
        };
        match bounce::classify_parsed(&mail) {
            Some(bounce::Automatic::Bounce(report)) => return self.bounced(report).await,
            Some(bounce::Automatic::AutoReply) => {
                tracing::info!("ignoring an automatic reply");
                return Ok(Outcome::Done);
            }
            None => {}
        }
        let Some(from) = mail.from().and_then(|a| a.first()) else {
            tracing::warn!("ignoring a mail without a From address");
            return Ok(Outcome::Done);
        };
        let address = from.address().unwrap_or_default().trim().to_lowercase();
        let signs = AutomationSigns {
            from: &address,
            auto_submitted: mail.header_raw("Auto-Submitted"),
            precedence: mail.header_raw("Precedence"),
            has_auto_reply_header: mail.header_raw("X-Autoreply").is_some() || mail.header_raw("X-Autorespond").is_some(),
            is_delivery_report: mail
                .content_type()
                .is_some_and(|t| t.ctype().eq_ignore_ascii_case("multipart") && t.subtype().is_some_and(|s| s.eq_ignore_ascii_case("report"))),
            return_path_empty: mail.header_raw("Return-Path").is_some_and(|v| matches!(v.trim(), "" | "<>")),
        };
        if address.is_empty() || address == self.settings.address.to_lowercase() || is_automatic(&signs) {
            tracing::info!(from = %address, "ignoring automatic mail (auto-reply, bounce or our own)");
            return Ok(Outcome::Done);
        }
        if !self.sender_may_write(&address) {
            tracing::warn!(from = %address, "sender over its mail rate; leaving the mail for later");
            return Ok(Outcome::Later);
        }
        let message_id = message_id_of(&mail, raw);
        let thread = self.thread_of(&mail).await?;
        let subject = mail.subject().unwrap_or("(no subject)").trim().to_string();
        let body = mail.body_text(0).map(|b| strip_quotes_and_signature(&b)).unwrap_or_default();
        let mut attachments = Vec::new();
        let mut refused = Vec::new();
        for part in mail.attachments() {
            let name = part.attachment_name().unwrap_or("attachment").to_string();
            match self.engine.accept_upload(&name, part.contents()).await {
                Ok(attachment) => attachments.push(attachment),
                Err(EngineError::Upload(reason)) => refused.push(format!("(The attachment \"{name}\" was refused: {reason}.)")),
                Err(error) => return Err(error),
            }
        }
        let original = self.engine.keep_original("original.eml", "message/rfc822", raw).await.ok();
        // The subject often says what the mail is about: it leads the text, on its own line. A
        // reply's "Re: …" only repeats its thread's subject: its body alone is what it says
        // (so "Re: Refund form" / "that worked" reads as no refund request, and a "5" as a rating).
        let repeats_thread = matches!(thread, Thread::Continue(_)) && subject.get(..3).is_some_and(|re| re.eq_ignore_ascii_case("re:"));
        let mut text = if repeats_thread && !body.trim().is_empty() { body } else { format!("{subject}\n\n{body}") };
        for note in refused {
            text.push_str("\n\n");
            text.push_str(&note);
        }
        let inbound = Inbound {
            channel: Channel::Email,
            external_id: message_id,
            sender_external_id: address,
            sender_name: from.name().map(str::to_string),
            text,
            attachments,
            original,
            thread,
            received_at: self.engine.now(),
            reported_language: None,
        };
        match self.engine.handle(inbound).await {
            Ok(_) => Ok(Outcome::Done),
            Err(EngineError::Invalid(reason)) => {
                tracing::warn!(%reason, "mail not taken");
                Ok(Outcome::Done)
            }
            Err(error) => Err(error),
        }
    }

    /// A delivery report: a permanent failure marks our reply failed with the reason (and the
    /// customer unreachable when their address is wrong); a delay only waits for the outcome.
    async fn bounced(&self, report: bounce::Bounce) -> Result<Outcome, EngineError> {
        let ours: Vec<_> = report.original_message_ids.iter().filter_map(|id| our_reply_in_message_id(id)).collect();
        if !report.permanent {
            tracing::info!(status = ?report.status, "a reply is delayed; the mail server keeps trying");
            return Ok(Outcome::Done);
        }
        // 5.1.x: the address itself is wrong, so later mail to it would bounce too.
        let address_gone = report.status.as_deref().is_some_and(|s| s.starts_with("5.1."));
        let mut marked = 0;
        for (_, message) in ours {
            if self.engine.delivery_failed(message, &report.reason, address_gone).await?.is_some() {
                marked += 1;
            }
        }
        if marked == 0 {
            tracing::warn!(reason = %report.reason, "a bounce about no reply of ours; ignored");
        }
        Ok(Outcome::Done)
    }

    /// In-Reply-To, then References (newest first), then our token address; else a new one.
    async fn thread_of(&self, mail: &mail_parser::Message<'_>) -> Result<Thread, EngineError> {
        let mut referenced: Vec<String> = header_ids(mail.in_reply_to());
        referenced.extend(header_ids(mail.references()).into_iter().rev());
        let store = self.engine.conversations();
        for id in &referenced {
            if let Some(conversation) = conversation_in_message_id(id) {
                return Ok(Thread::Continue(conversation));
            }
            let bracketed = format!("<{}>", id.trim_matches(['<', '>']));
            if let Some(earlier) = store.message_by_external_id(Channel::Email, &bracketed).await? {
                return Ok(Thread::Continue(earlier.conversation_id));
            }
        }
        let recipients = [mail.to(), mail.cc()]
            .into_iter()
            .flatten()
            .flat_map(|list| list.iter())
            .filter_map(|addr| addr.address())
            .chain(mail.header_raw("Delivered-To"));
        for recipient in recipients {
            if let Some(conversation) = conversation_in_address(recipient.trim(), &self.settings.address) {
                return Ok(Thread::Continue(conversation));
            }
        }
        Ok(Thread::New)
    }

    fn sender_may_write(&self, sender: &str) -> bool {
        let now = tokio::time::Instant::now();
        let mut senders = self.senders.lock().expect("sender rates");
        let (count, since) = senders.entry(sender.to_string()).or_insert((0, now));
        if now.duration_since(*since) >= Duration::from_secs(60) {
            *count = 0;
            *since = now;
        }
        *count += 1;
        *count <= self.settings.per_sender_per_minute
    }
}

fn header_ids(value: &mail_parser::HeaderValue<'_>) -> Vec<String> {
    match (value.as_text_list(), value.as_text()) {
        (Some(list), _) => list.iter().map(|id| id.to_string()).collect(),
        (None, Some(id)) => vec![id.to_string()],
        (None, None) => Vec::new(),
    }
}

/// SHA-256 of the raw mail: stable across versions, so a mail re-read after an upgrade is still
/// recognised as the same one.
fn hex_digest(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// The outbox's sender for email: a reply in the customer's thread (Re: subject, In-Reply-To
/// and References), from the support address with a Reply-To naming the conversation.
pub struct EmailOutbound {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    settings: EmailSettings,
    store: Arc<dyn Conversations>,
    blobs: Arc<dyn BlobStore>,
    /// Where the mail server's answers are reported (`smtp`), when anywhere.
    health: Option<Arc<switchboard_core::HealthBoard>>,
}

fn smtp_transport(smtp: &SmtpSettings) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    let builder = match smtp.security {
        SmtpSecurity::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host),
        SmtpSecurity::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host)
            .map_err(|e| format!("email.smtp_host `{}`: {e}", smtp.host))?,
        SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host)
            .map_err(|e| format!("email.smtp_host `{}`: {e}", smtp.host))?,
    };
    let mut builder = builder.port(smtp.port).timeout(Some(Duration::from_secs(30)));
    if let (Some(user), Some(password)) = (&smtp.username, &smtp.password) {
        builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
    }
    Ok(builder.build())
}

impl EmailOutbound {
    pub fn new(settings: EmailSettings, store: Arc<dyn Conversations>, blobs: Arc<dyn BlobStore>) -> Result<Self, String> {
        Ok(Self { transport: smtp_transport(&settings.smtp)?, settings, store, blobs, health: None })
    }

    /// The mail server's answers are reported to `board` as the `smtp` connection.
    pub fn reporting_to(mut self, board: Arc<switchboard_core::HealthBoard>) -> Self {
        self.health = Some(board);
        self
    }

    fn domain(&self) -> &str {
        self.settings.address.split_once('@').map(|(_, d)| d).unwrap_or("localhost")
    }

    async fn build(&self, outbound: &OutboundMessage) -> Result<lettre::Message, DeliveryError> {
        let message = &outbound.message;
        let permanent = |reason: String| DeliveryError::Permanent { reason };
        let history = self
            .store
            .conversation_messages(message.conversation_id, 0, 500)
            .await
            .map_err(|e| DeliveryError::Retry { reason: e.to_string(), after: None })?;
        // Notes never left the building: they are no part of the customer's thread.
        let earlier: Vec<_> = history.iter().filter(|m| m.seq < message.seq && !m.internal).collect();
        // Customer mails are stored as "<subject>\n\n<body>"; the first one names the thread.
        let subject = earlier
            .iter()
            .find(|m| m.sender == Sender::Customer)
            .and_then(|m| m.text.lines().next())
            .unwrap_or("Your support request");
        let subject = if subject.to_lowercase().starts_with("re:") { subject.to_string() } else { format!("Re: {subject}") };
        let references: Vec<String> = earlier
            .iter()
            .filter_map(|m| match m.sender {
                Sender::Customer => m.external_id.clone().filter(|id| id.starts_with('<')),
                _ => Some(our_message_id(m.conversation_id, m.id, self.domain())),
            })
            .collect();
        let last_customer = earlier.iter().rev().find(|m| m.sender == Sender::Customer).and_then(|m| m.external_id.clone());

        let from: Mailbox = format!("{} <{}>", self.settings.display_name, self.settings.address)
            .parse()
            .map_err(|e| permanent(format!("email.address: {e}")))?;
        let reply_to: Mailbox = token_address(&self.settings.address, message.conversation_id)
            .parse()
            .map_err(|e| permanent(format!("reply-to: {e}")))?;
        let to: Mailbox = outbound
            .recipient_external_id
            .parse()
            .map_err(|e| permanent(format!("`{}` is not an address: {e}", outbound.recipient_external_id)))?;
        let mut builder = lettre::Message::builder()
            .from(from)
            .reply_to(reply_to)
            .to(to)
            .subject(subject)
            .message_id(Some(our_message_id(message.conversation_id, message.id, self.domain())));
        if let Some(parent) = last_customer {
            builder = builder.in_reply_to(parent);
        }
        if !references.is_empty() {
            // Long threads: the first and the latest ids are the ones clients use.
            let keep: Vec<&String> = if references.len() > 12 {
                references.iter().take(1).chain(references.iter().rev().take(11).rev()).collect()
            } else {
                references.iter().collect()
            };
            builder = builder.references(keep.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" "));
        }
        if message.sender == Sender::Bot {
            // RFC 3834: tells the customer's autoresponder not to answer the bot.
            builder = builder.raw_header(HeaderValue::new(HeaderName::new_from_ascii_str("Auto-Submitted"), "auto-replied".into()));
        }
        let text = SinglePart::plain(with_choices(&message.text, &message.quick_replies));
        let files = self.files(&message.attachments).await?;
        let built = if files.is_empty() {
            builder.singlepart(text)
        } else {
            let mut parts = MultiPart::mixed().singlepart(text);
            for file in files {
                parts = parts.singlepart(file);
            }
            builder.multipart(parts)
        };
        built.map_err(|e| permanent(format!("building the mail: {e}")))
    }

    async fn files(&self, attachments: &[Attachment]) -> Result<Vec<SinglePart>, DeliveryError> {
        let mut parts = Vec::new();
        for attachment in attachments {
            let bytes = crate::attachment_bytes(self.blobs.as_ref(), attachment).await?;
            let content_type = ContentType::parse(&attachment.content_type).unwrap_or(ContentType::TEXT_PLAIN);
            parts.push(MailAttachment::new(attachment.file_name.clone()).body(bytes, content_type));
        }
        Ok(parts)
    }
}

#[async_trait]
impl Outbound for EmailOutbound {
    fn channel(&self) -> Channel {
        Channel::Email
    }

    async fn deliver(&self, outbound: &OutboundMessage) -> Result<Option<String>, DeliveryError> {
        let mail = self.build(outbound).await?;
        let message = &outbound.message;
        let sent_id = our_message_id(message.conversation_id, message.id, self.domain());
        let sent = self.transport.send(mail).await;
        if let Some(board) = &self.health {
            match &sent {
                // A refusal of one message still means the server answers.
                Ok(_) => board.up("smtp", "the mail server takes messages"),
                Err(error) if error.is_permanent() && !is_setup_problem(error) => board.up("smtp", "the mail server answers (it refused a message)"),
                Err(error) => board.down("smtp", &format!("the mail server could not take a message: {error}")),
            }
        }
        match sent {
            Ok(_) => Ok(Some(sent_id)),
            Err(error) if error.is_permanent() => {
                Err(DeliveryError::Permanent { reason: format!("The mail server refused the message: {error}") })
            }
            Err(error) => Err(DeliveryError::Retry { reason: format!("The mail server could not take the message now: {error}"), after: None }),
        }
    }
}

/// Mails agents their notifications. The notifications table is the queue: a notification to
/// mail is written with the step that caused it, and stays pending until the mail server took
/// it (or refused it for good), so a crash or a mail server that is down delays a mail and
/// never loses it. With several nodes it runs on one at a time (a singleton).
pub struct NotificationMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    store: Arc<dyn Notifications>,
    /// The panel's address for links (`server.public_url`); none: the mail names the conversation.
    panel_url: Option<String>,
}

/// A refusal of our sign-in (530, 535, 538) or by policy (enhanced code 5.7.x: relaying denied,
/// sender rejected): nothing would get through until the settings change.
fn is_setup_problem(error: &lettre::transport::smtp::Error) -> bool {
    let code = error.status().map(|code| code.to_string()).unwrap_or_default();
    ["530", "535", "538"].contains(&code.as_str()) || error.to_string().contains(" 5.7.")
}

/// Pending notifications mailed per pass.
const MAIL_BATCH: u32 = 50;

impl NotificationMailer {
    pub fn new(settings: EmailSettings, store: Arc<dyn Notifications>, panel_url: Option<String>) -> Result<Self, String> {
        let address = settings.address.parse().map_err(|e| format!("email.address `{}` is not an address: {e}", settings.address))?;
        let from = Mailbox::new(Some(settings.display_name.clone()), address);
        Ok(Self { transport: smtp_transport(&settings.smtp)?, from, store, panel_url })
    }

    /// Mails what is pending, then waits for news of a notification (or 5 s: one written on
    /// another node); backs off while the mail server is away.
    pub async fn run(self: Arc<Self>, mut events: tokio::sync::broadcast::Receiver<switchboard_models::DomainEvent>) {
        let mut backoff = Duration::from_secs(1);
        loop {
            match self.mail_pending().await {
                Ok(sent) if sent >= MAIL_BATCH as usize => continue,
                Ok(_) => backoff = Duration::from_secs(1),
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?backoff, "notification mails wait; they stay queued");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                    continue;
                }
            }
            let news = async {
                loop {
                    match events.recv().await {
                        Ok(switchboard_models::DomainEvent::Notified { .. }) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return,
                        Ok(_) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(5), news).await;
        }
    }

    /// Mails one batch of agents' notifications and one of customers' notice copies; returns
    /// how many it ended. An error means the mail server or the store is away: what is left
    /// stays pending.
    pub async fn mail_pending(&self) -> Result<usize, String> {
        let pending = self.store.notices_to_mail(MAIL_BATCH).await.map_err(|e| e.to_string())?;
        let mut ended = 0;
        for notice in pending {
            let id = notice.notification.id;
            let outcome = match notice.agent_active {
                false => Some("the agent's account is deactivated".to_string()),
                true => self.send(self.mail(&notice)).await?,
            };
            if let Some(why) = &outcome {
                tracing::warn!(notification = id, agent = %notice.agent_email, why, "notification not mailed");
            }
            self.store.notice_mailed(id, chrono::Utc::now(), outcome.as_deref()).await.map_err(|e| e.to_string())?;
            ended += 1;
        }
        let copies = self.store.customer_mails_to_send(MAIL_BATCH).await.map_err(|e| e.to_string())?;
        for copy in copies {
            let outcome = self.send(self.customer_mail(&copy)).await?;
            if let Some(why) = &outcome {
                tracing::warn!(customer_mail = copy.id, why, "a notice's copy was not mailed to the customer");
            }
            self.store.customer_mail_sent(copy.id, chrono::Utc::now(), outcome.as_deref()).await.map_err(|e| e.to_string())?;
            ended += 1;
        }
        Ok(ended)
    }

    /// Sends one mail: `Ok(None)` sent, `Ok(Some(why))` this mail is given up, `Err` every
    /// mail must wait (the server is away, or refuses our settings).
    async fn send(&self, mail: Result<lettre::Message, String>) -> Result<Option<String>, String> {
        let mail = match mail {
            Ok(mail) => mail,
            Err(error) => return Ok(Some(error)),
        };
        match self.transport.send(mail).await {
            Ok(_) => Ok(None),
            // A refused sign-in, relay or sender is the configuration's: every mail waits for
            // it. Any other refusal is this mail's own and ends it.
            Err(error) if error.is_permanent() && !is_setup_problem(&error) => Ok(Some(format!("the mail server refused it: {error}"))),
            Err(error) if error.is_permanent() => {
                Err(format!("the mail server refused to send ({error}); check email.smtp_username, email.smtp_password and email.address"))
            }
            Err(error) => Err(format!("the mail server could not take it now: {error}")),
        }
    }

    /// A copy of a notice for the customer, saying where to answer; an error is this mail's
    /// own (the address the customer left is no address).
    fn customer_mail(&self, copy: &switchboard_core::ports::CustomerMail) -> Result<lettre::Message, String> {
        let to: Mailbox = copy.address.parse().map_err(|e| format!("the customer's email `{}` is not an address: {e}", copy.address))?;
        let channel = match copy.channel {
            Channel::WebChat => "the chat on our website",
            Channel::Telegram => "Telegram",
            Channel::Discord => "Discord",
            Channel::Email => "this email thread",
        };
        let body = format!("{}\n\n(A copy of a message in your conversation with us on {channel}. Please answer there.)\n", copy.text);
        lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(copy.text.chars().take(100).collect::<String>())
            .raw_header(HeaderValue::new(HeaderName::new_from_ascii_str("Auto-Submitted"), "auto-generated".into()))
            .singlepart(SinglePart::plain(body))
            .map_err(|e| e.to_string())
    }

    /// The mail for `notice`; an error is this mail's own (a broken agent address).
    fn mail(&self, notice: &switchboard_core::ports::NoticeMail) -> Result<lettre::Message, String> {
        let n = &notice.notification;
        let link = match (n.conversation_id, &self.panel_url) {
            (Some(id), Some(url)) => format!("\n\n{}/panel/conversations/{id}\n", url.trim_end_matches('/')),
            (Some(id), None) => format!("\n\nConversation {id}\n"),
            (None, _) => "\n".to_string(),
        };
        let body = format!("Hello {},\n\n{}{link}", notice.agent_name, n.text);
        let to: Mailbox = notice.agent_email.parse().map_err(|e| format!("the agent's email `{}` is not an address: {e}", notice.agent_email))?;
        lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(n.text.chars().take(100).collect::<String>())
            .raw_header(HeaderValue::new(HeaderName::new_from_ascii_str("Auto-Submitted"), "auto-generated".into()))
            .singlepart(SinglePart::plain(body))
            .map_err(|e| e.to_string())
    }
}

/// The mail's Message-ID in angle brackets; without one, the content names it (a re-read of
/// the same mail is a duplicate).
fn message_id_of(mail: &mail_parser::Message, raw: &[u8]) -> String {
    match mail.message_id() {
        Some(id) => format!("<{}>", id.trim_matches(['<', '>'])),
        None => format!("<{}@no-message-id.invalid>", hex_digest(raw)),
    }
}

#[async_trait]
impl switchboard_core::InboundReplay for EmailAdapter {
    fn channel(&self) -> Channel {
        Channel::Email
    }

    async fn replay(&self, payload: &[u8]) -> Result<(), String> {
        self.ingest(payload).await.map(|_| ()).map_err(|e| e.to_string())
    }
}
