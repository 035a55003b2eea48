//! Posts webhook deliveries over HTTP (reqwest); the core decides what, when and how often.

use std::time::Duration;
use switchboard_core::webhooks::{PostOutcome, WebhookPoster};

pub struct HttpPoster {
    client: reqwest::Client,
}

impl HttpPoster {
    pub fn new() -> anyhow::Result<Self> {
        // Redirects are not followed: a receiver that moved says so in the delivery log.
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("Switchboard-Webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { client })
    }
}

#[async_trait::async_trait]
impl WebhookPoster for HttpPoster {
    async fn post(&self, url: &str, headers: Vec<(&'static str, String)>, body: String, timeout: Duration) -> PostOutcome {
        let mut request = self.client.post(url).timeout(timeout).header(reqwest::header::CONTENT_TYPE, "application/json").body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let body = response.text().await.unwrap_or_default();
                PostOutcome::Answered { status, body }
            }
            Err(error) if error.is_timeout() => PostOutcome::NoAnswer(format!("no answer within {} s", timeout.as_secs())),
            Err(error) if error.is_connect() => PostOutcome::NoAnswer(format!("could not connect: {}", source_text(&error))),
            Err(error) => PostOutcome::NoAnswer(source_text(&error)),
        }
    }
}

/// The innermost cause, which names what went wrong (refused, reset, unknown host).
fn source_text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut inner = error;
    while let Some(next) = inner.source() {
        inner = next;
    }
    inner.to_string()
}
