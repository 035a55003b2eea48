//! Test access to the local mail system started by scripts/mail-server.sh: send raw mail over
//! SMTP with lettre, read mailboxes over IMAP with async-imap.

use futures::StreamExt;
use lettre::address::Envelope;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use std::time::Duration;
use tokio::net::TcpStream;

pub const SMTP_PORT: u16 = 2525;
pub const IMAP_PORT: u16 = 10143;
pub const IMAPS_PORT: u16 = 10993;
pub const PASSWORD: &str = "secret";
pub const DOMAIN: &str = "example.test";

/// The CA that signed the test IMAPS server's certificate (made by scripts/mail-server.sh).
pub fn test_ca_file() -> std::path::PathBuf {
    let dir = std::env::var_os("SWITCHBOARD_MAIL_DIR").map(std::path::PathBuf::from).unwrap_or_else(|| {
        std::path::PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/switchboard/mail")
    });
    dir.join("etc/tls/ca.pem")
}

/// Whether the mail system answers on its ports.
pub async fn mail_system_running() -> bool {
    TcpStream::connect(("127.0.0.1", SMTP_PORT)).await.is_ok() && TcpStream::connect(("127.0.0.1", IMAP_PORT)).await.is_ok()
}

/// Submits `raw` (a whole RFC 5322 message) as `from` to `to`.
pub async fn send_raw(from: &str, to: &[&str], raw: &str) {
    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1").port(SMTP_PORT).build();
    let envelope = Envelope::new(
        Some(from.parse().expect("from address")),
        to.iter().map(|a| a.parse().expect("to address")).collect(),
    )
    .expect("envelope");
    transport.send_raw(&envelope, raw.replace("\r\n", "\n").replace('\n', "\r\n").as_bytes()).await.expect("SMTP submission");
}

pub struct TestMailbox {
    pub address: String,
}

type Session = async_imap::Session<TcpStream>;

impl TestMailbox {
    pub fn new(local: &str) -> Self {
        Self { address: format!("{local}@{DOMAIN}") }
    }

    async fn session(&self) -> Session {
        let stream = TcpStream::connect(("127.0.0.1", IMAP_PORT)).await.expect("IMAP connect");
        let mut client = async_imap::Client::new(stream);
        client.read_response().await.expect("IMAP greeting");
        let mut session = client.login(&self.address, PASSWORD).await.map_err(|(e, _)| e).expect("IMAP login");
        session.select("INBOX").await.expect("select INBOX");
        session
    }

    /// Deletes every message in the INBOX.
    pub async fn clear(&self) {
        let mut session = self.session().await;
        let uids = session.uid_search("ALL").await.expect("search");
        if !uids.is_empty() {
            let _: Vec<_> = session.uid_store("1:*", "+FLAGS (\\Deleted)").await.expect("store").collect().await;
            let _: Vec<_> = session.expunge().await.expect("expunge").collect().await;
        }
        let _ = session.logout().await;
    }

    /// Every message in the INBOX, oldest first, as raw bytes.
    pub async fn all(&self) -> Vec<Vec<u8>> {
        let mut session = self.session().await;
        let mut raw = Vec::new();
        let uids = session.uid_search("ALL").await.expect("search");
        if !uids.is_empty() {
            let mut fetches = session.uid_fetch("1:*", "(UID BODY.PEEK[])").await.expect("fetch");
            let mut by_uid = Vec::new();
            while let Some(fetch) = fetches.next().await {
                let fetch = fetch.expect("fetch item");
                by_uid.push((fetch.uid.unwrap_or(0), fetch.body().unwrap_or_default().to_vec()));
            }
            drop(fetches);
            by_uid.sort_by_key(|(uid, _)| *uid);
            raw = by_uid.into_iter().map(|(_, body)| body).collect();
        }
        let _ = session.logout().await;
        raw
    }

    /// Waits until the INBOX holds at least `count` messages; returns them all.
    pub async fn wait_count(&self, count: usize, timeout: Duration) -> Vec<Vec<u8>> {
        self.wait_until(timeout, |all| (all.len() >= count).then(|| all.to_vec()), |all| format!("{} has {} of {count} mails", self.address, all.len())).await
    }

    /// Reads the INBOX until `found` answers (the mail server is another process: it is polled,
    /// with a deadline); fails with `missing`'s account of what was there.
    async fn wait_until<T>(&self, timeout: Duration, found: impl Fn(&[Vec<u8>]) -> Option<T>, missing: impl Fn(&[Vec<u8>]) -> String) -> T {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let all = self.all().await;
            if let Some(answer) = found(&all) {
                return answer;
            }
            assert!(tokio::time::Instant::now() < deadline, "{}", missing(&all));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until a mail in the INBOX has `words` in its text body; returns that mail whole.
    pub async fn wait_for_body(&self, words: &str, timeout: Duration) -> Vec<u8> {
        let body = |raw: &[u8]| mail_parser::MessageParser::default().parse(raw).and_then(|m| m.body_text(0).map(|t| t.to_string())).unwrap_or_default();
        self.wait_until(
            timeout,
            |all| all.iter().find(|raw| body(raw).contains(words)).cloned(),
            |all| format!("no mail to {} says “{words}”: {:#?}", self.address, all.iter().map(|raw| body(raw)).collect::<Vec<_>>()),
        )
        .await
    }

    /// Removes a keyword from every message (as if a crash came between commit and flag).
    pub async fn remove_keyword(&self, keyword: &str) {
        let mut session = self.session().await;
        if !session.uid_search("ALL").await.expect("search").is_empty() {
            let _: Vec<_> = session.uid_store("1:*", format!("-FLAGS ({keyword})")).await.expect("store").collect().await;
        }
        let _ = session.logout().await;
    }

    /// How many messages carry `keyword`.
    pub async fn count_with(&self, keyword: &str) -> usize {
        let mut session = self.session().await;
        let n = session.uid_search(format!("KEYWORD {keyword}")).await.expect("search").len();
        let _ = session.logout().await;
        n
    }
}
