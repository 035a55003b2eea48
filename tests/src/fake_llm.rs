//! A local stand-in for an OpenAI-compatible API: `POST /v1/chat/completions` on 127.0.0.1.
//! Tests choose how it behaves (answer, stall, fail, garbage, refuse) and read the requests.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone)]
pub enum Behaviour {
    /// Replies with this assistant text.
    Answer(String),
    /// Never answers within any sane timeout.
    Stall,
    /// HTTP 500 with an OpenAI-style error body.
    Fail,
    /// 200 with a body that is not a chat completion.
    Garbage,
    /// A refusal instead of content.
    Refuse(String),
    /// Replies with this text once `release` is called; until then every request waits.
    Held(String),
    /// Answers by task, as a real model would: intent choice (`{"intent": <this>}`), summary, draft.
    Helpful { intent: Option<String>, summary: String, draft: String },
}

#[derive(Clone)]
pub struct FakeLlm {
    pub addr: SocketAddr,
    behaviour: Arc<Mutex<Behaviour>>,
    requests: Arc<Mutex<Vec<Value>>>,
    /// How many requests have arrived (`asked`).
    arrived: Arc<tokio::sync::watch::Sender<usize>>,
    released: Arc<tokio::sync::watch::Sender<bool>>,
}

impl FakeLlm {
    pub async fn start(behaviour: Behaviour) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind fake LLM");
        let fake = Self {
            addr: listener.local_addr().expect("local addr"),
            behaviour: Arc::new(Mutex::new(behaviour)),
            requests: Arc::default(),
            arrived: Arc::new(tokio::sync::watch::Sender::new(0)),
            released: Arc::new(tokio::sync::watch::Sender::new(false)),
        };
        let app = Router::new().route("/v1/chat/completions", post(complete)).with_state(fake.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        fake
    }

    /// The base URL to configure (`llm.base_url`).
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn set(&self, behaviour: Behaviour) {
        *self.behaviour.lock().unwrap() = behaviour;
    }

    /// Lets held requests (and later ones) answer.
    pub fn release(&self) {
        self.released.send_replace(true);
    }

    /// Returns once `count` requests have arrived; panics after `within`.
    pub async fn asked(&self, count: usize, within: Duration) {
        let mut arrived = self.arrived.subscribe();
        tokio::time::timeout(within, arrived.wait_for(|n| *n >= count))
            .await
            .unwrap_or_else(|_| panic!("the LLM was not asked {count} times within {within:?}"))
            .expect("the fake LLM is running");
    }

    /// Request bodies received so far.
    pub fn requests(&self) -> Vec<Value> {
        self.requests.lock().unwrap().clone()
    }
}

async fn complete(State(fake): State<FakeLlm>, body: String) -> Response {
    let request: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    fake.requests.lock().unwrap().push(request.clone());
    fake.arrived.send_modify(|n| *n += 1);
    let behaviour = fake.behaviour.lock().unwrap().clone();
    let model = request["model"].as_str().unwrap_or("test-model").to_string();
    let completion = |message: Value| {
        json!({
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": "stop", "logprobs": null}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
        })
    };
    match behaviour {
        Behaviour::Answer(text) => {
            axum::Json(completion(json!({"role": "assistant", "content": text, "refusal": null}))).into_response()
        }
        Behaviour::Helpful { intent, summary, draft } => {
            let system = request["messages"][0]["content"].as_str().unwrap_or_default();
            let text = if system.contains("classify") {
                json!({ "intent": intent }).to_string()
            } else if system.contains("Summarise") {
                summary
            } else {
                draft
            };
            axum::Json(completion(json!({"role": "assistant", "content": text, "refusal": null}))).into_response()
        }
        Behaviour::Held(text) => {
            let _ = fake.released.subscribe().wait_for(|released| *released).await;
            axum::Json(completion(json!({"role": "assistant", "content": text, "refusal": null}))).into_response()
        }
        Behaviour::Refuse(why) => {
            axum::Json(completion(json!({"role": "assistant", "content": null, "refusal": why}))).into_response()
        }
        Behaviour::Stall => {
            tokio::time::sleep(Duration::from_secs(600)).await;
            StatusCode::GATEWAY_TIMEOUT.into_response()
        }
        Behaviour::Fail => (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(json!({"error": {"message": "The server had an error", "type": "server_error", "param": null, "code": null}})),
        )
            .into_response(),
        Behaviour::Garbage => {
            ([("content-type", "application/json")], "{\"choices\": \"not a list\", ").into_response()
        }
    }
}
