//! Implementations of the core's `Classifier` port: the model classifier (sentence encoder +
//! intent head trained from the intents file, LLM fallback) and the keyword classifier that runs
//! when no model is installed.

mod backlog;
mod classifier;
mod embedding_cache;
pub mod encoder;
pub mod encoder_onnx;
pub mod encoder_static;
pub mod encoder_use;
#[cfg(feature = "rust-bert")]
pub mod encoder_rust_bert;
pub mod eval;
pub mod head;
pub mod intents;
pub mod intents_edit;
pub mod judge;
pub mod judgement;
mod keyword;
pub mod llm;
pub mod model;
pub mod neighbours;
pub mod signals;

pub use classifier::{first_stage_takes, Encoders, IntentsSource, LLM_CONFIDENCE, LoadError, LoadReport, ModelClassifier, Prepared};
pub use embedding_cache::EmbeddingCache;
pub use encoder::{EncoderError, MiniLmEncoder, SentenceEncoder};
pub use encoder_onnx::OnnxMiniLmEncoder;
pub use encoder_static::StaticEncoder;
pub use encoder_use::{JoinedEncoder, MultilingualEncoder};
#[cfg(feature = "rust-bert")]
pub use encoder_rust_bert::RustBertEncoder;
pub use intents::{IntentSet, IntentsError};
pub use keyword::KeywordClassifier;
pub use llm::{LlmClient, LlmError, LlmSettings};
