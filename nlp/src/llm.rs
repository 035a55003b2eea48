//! The optional hosted LLM (any OpenAI-compatible API). Every call is bounded by a timeout and a
//! per-minute budget; every failure is an `LlmError` the caller turns into the local result.

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::types::chat::{
    ChatCompletionRequestMessage, ChatCompletionRequestSystemMessageArgs, ChatCompletionRequestUserMessageArgs,
    CreateChatCompletionRequestArgs,
};
use serde::Deserialize;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use async_trait::async_trait;
use switchboard_core::ports::{Assistant, TranscriptLine};
use switchboard_models::IntentName;

#[derive(Debug, Clone, PartialEq)]
pub struct LlmSettings {
    /// e.g. `https://api.openai.com/v1`, or a local server's `/v1`.
    pub base_url: String,
    pub api_key: Option<String>,
    pub model: String,
    pub timeout: Duration,
    /// Calls allowed per minute; beyond it the local result stands.
    pub max_requests_per_minute: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("the LLM did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the LLM budget of {0} requests per minute is used up")]
    OverBudget(u32),
    #[error("the LLM request failed: {0}")]
    Request(String),
    #[error("the LLM answer was not what was asked for: {0}")]
    Malformed(String),
    #[error("the LLM refused: {0}")]
    Refused(String),
}


/// An intent the LLM may choose, with a few examples that say what it means.
#[derive(Debug, Clone, PartialEq)]
pub struct IntentChoice {
    pub name: IntentName,
    pub examples: Vec<String>,
}

/// What the LLM made of a message the local model was unsure of.
#[derive(Debug, Clone, PartialEq)]
pub enum LlmChoice {
    Intent(IntentName),
    /// No intent fits, and this is the LLM's own reply for the customer.
    Answer(String),
    Nothing,
}

pub struct LlmClient {
    client: Client<OpenAIConfig>,
    settings: LlmSettings,
    window: Mutex<(Instant, u32)>,
    /// Where each call's outcome is reported (`/readyz`, the System page), when anywhere.
    health: Option<std::sync::Arc<switchboard_core::HealthBoard>>,
}

impl LlmClient {
    pub fn new(settings: LlmSettings) -> Self {
        // reqwest is built without a bundled TLS provider; use ring, as the rest of the service.
        let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
        let mut config = OpenAIConfig::new().with_api_base(settings.base_url.trim_end_matches('/'));
        if let Some(key) = &settings.api_key {
            config = config.with_api_key(key);
        }
        Self { client: Client::with_config(config), settings, window: Mutex::new((Instant::now(), 0)), health: None }
    }

    /// Each call's outcome is reported to `board` as the `llm` connection.
    pub fn reporting_to(mut self, board: std::sync::Arc<switchboard_core::HealthBoard>) -> Self {
        self.health = Some(board);
        self
    }

    /// One chat completion, its outcome reported: a budget hit says nothing of the endpoint,
    /// and a refusal is an answer.
    async fn complete(&self, system: &str, user: &str, max_tokens: u32) -> Result<String, LlmError> {
        let result = self.complete_unreported(system, user, max_tokens).await;
        if let Some(board) = &self.health {
            match &result {
                Ok(_) | Err(LlmError::Refused(_)) => board.up("llm", &format!("answering ({})", self.settings.model)),
                Err(LlmError::OverBudget(_)) => {}
                Err(error) => board.down("llm", &error.to_string()),
            }
        }
        result
    }

    fn take_budget(&self) -> Result<(), LlmError> {
        let mut window = self.window.lock().unwrap_or_else(|e| e.into_inner());
        if window.0.elapsed() >= Duration::from_secs(60) {
            *window = (Instant::now(), 0);
        }
        if window.1 >= self.settings.max_requests_per_minute {
            return Err(LlmError::OverBudget(self.settings.max_requests_per_minute));
        }
        window.1 += 1;
        Ok(())
    }

    /// One chat completion: the reply text, or why there is none.
    async fn complete_unreported(&self, system: &str, user: &str, max_tokens: u32) -> Result<String, LlmError> {
        self.take_budget()?;
        let build = |e: async_openai::error::OpenAIError| LlmError::Request(e.to_string());
        let messages: Vec<ChatCompletionRequestMessage> = vec![
            ChatCompletionRequestSystemMessageArgs::default().content(system).build().map_err(build)?.into(),
            ChatCompletionRequestUserMessageArgs::default().content(user).build().map_err(build)?.into(),
        ];
        let request = CreateChatCompletionRequestArgs::default()
            .model(&self.settings.model)
            .messages(messages)
            .max_completion_tokens(max_tokens)
            .temperature(0.2)
            .build()
            .map_err(build)?;
        let response = tokio::time::timeout(self.settings.timeout, self.client.chat().create(request))
            .await
            .map_err(|_| LlmError::Timeout(self.settings.timeout))?
            .map_err(|e| match e {
                async_openai::error::OpenAIError::JSONDeserialize(e, _) => LlmError::Malformed(e.to_string()),
                other => LlmError::Request(other.to_string()),
            })?;
        let message = response
            .choices
            .into_iter()
            .next()
            .map(|c| c.message)
            .ok_or_else(|| LlmError::Malformed("no choices in the response".into()))?;
        if let Some(refusal) = message.refusal.filter(|r| !r.trim().is_empty()) {
            return Err(LlmError::Refused(refusal));
        }
        let content = message.content.unwrap_or_default().trim().to_string();
        if content.is_empty() {
            return Err(LlmError::Malformed("empty answer".into()));
        }
        Ok(content)
    }

    /// Which of `intents` the message means. When none fits: nothing, or (with `may_answer`) a
    /// short reply the bot can send.
    pub async fn choose_intent(&self, text: &str, intents: &[IntentChoice], may_answer: bool) -> Result<LlmChoice, LlmError> {
        let mut listing = String::new();
        for intent in intents {
            let examples: Vec<String> = intent.examples.iter().take(3).map(|e| format!("\"{e}\"")).collect();
            listing.push_str(&format!("- {}: e.g. {}\n", intent.name, examples.join(", ")));
        }
        let mut system = "You classify customer support messages. Answer with JSON only: \
                          {\"intent\": \"<one name from the list>\"} or {\"intent\": null} when none fits."
            .to_string();
        if may_answer {
            system.push_str(
                " When none fits but you can help with a short, general and safe reply, answer \
                 {\"intent\": null, \"answer\": \"<at most three sentences, plain text>\"}. Never invent \
                 account details, prices or promises.",
            );
        }
        let user = format!("Intents:\n{listing}\nMessage: {text}");
        let answer = self.complete(&system, &user, if may_answer { 250 } else { 60 }).await?;
        #[derive(Deserialize)]
        struct Choice {
            intent: Option<String>,
            #[serde(default)]
            answer: Option<String>,
        }
        let json = answer.trim().trim_start_matches("```json").trim_start_matches("```").trim_end_matches("```").trim();
        let choice: Choice = serde_json::from_str(json)
            .map_err(|e| LlmError::Malformed(format!("expected {{\"intent\": ...}}, got {answer:?}: {e}")))?;
        match choice.intent {
            Some(name) => intents
                .iter()
                .find(|i| i.name.as_str() == name)
                .map(|i| LlmChoice::Intent(i.name.clone()))
                .ok_or_else(|| LlmError::Malformed(format!("`{name}` is not one of the intents"))),
            None => match choice.answer.map(|a| a.trim().to_string()).filter(|a| !a.is_empty()) {
                Some(reply) if may_answer => Ok(LlmChoice::Answer(reply)),
                _ => Ok(LlmChoice::Nothing),
            },
        }
    }

    /// A few sentences an agent reads before opening the conversation.
    pub async fn summarize(&self, transcript: &[TranscriptLine]) -> Result<String, LlmError> {
        let system = "Summarise this support conversation for the agent taking it over, in at most three \
                      short sentences: what the customer wants, what was tried, what is still open. \
                      Plain text, no greeting.";
        self.complete(system, &render(transcript), 200).await
    }

    /// A reply the agent can edit and send.
    pub async fn draft_reply(&self, transcript: &[TranscriptLine], agent_name: &str) -> Result<String, LlmError> {
        let system = format!(
            "You are {agent_name}, a customer support agent. Write the next reply to the customer: \
             friendly, specific to what they asked, short. Do not promise what you cannot check. \
             Plain text only."
        );
        self.complete(&system, &render(transcript), 400).await
    }
}

fn render(transcript: &[TranscriptLine]) -> String {
    transcript.iter().map(|l| format!("{}: {}\n", l.speaker, l.text)).collect()
}

#[async_trait]
impl Assistant for LlmClient {
    async fn draft_reply(&self, transcript: &[TranscriptLine], agent_name: &str) -> Result<String, String> {
        LlmClient::draft_reply(self, transcript, agent_name).await.map_err(|e| e.to_string())
    }

    async fn summarize(&self, transcript: &[TranscriptLine]) -> Result<String, String> {
        LlmClient::summarize(self, transcript).await.map_err(|e| e.to_string())
    }
}
