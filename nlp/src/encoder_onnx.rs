//! all-MiniLM-L6-v2 on ONNX Runtime, loaded at run time from its shared library (the PyPI
//! `onnxruntime` wheel's; ./scripts/fetch-model.sh installs it). With int8 weights it encodes
//! several times faster than candle on a CPU (BENCHMARKS.md), within a cosine of 0.97 of the
//! exact vectors (tested); the heads are trained on this encoder's own vectors.

use crate::encoder::{BATCH, EncoderError, MAX_TOKENS, SentenceEncoder, encode_in_batches, load_tokenizer};
use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::TensorRef;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokenizers::Tokenizer;

/// Width of the model's vectors.
const DIMENSION: usize = 384;

pub struct OnnxMiniLmEncoder {
    id: String,
    /// One session per core, each running on its own thread: concurrent messages never wait for
    /// each other, and one message's products are too small to gain from splitting.
    sessions: Vec<Mutex<Session>>,
    next_session: AtomicUsize,
    tokenizer: Tokenizer,
}

impl OnnxMiniLmEncoder {
    /// `model_dir` holds the tokenizer; `model` is the ONNX file; `runtime_library` is
    /// libonnxruntime.so (loaded once per process).
    pub fn load(model_dir: &Path, model: &Path, runtime_library: &Path) -> Result<Self, EncoderError> {
        let tokenizer = load_tokenizer(model_dir)?;
        let missing = |path: &Path, what: &str| EncoderError::Load {
            dir: path.to_path_buf(),
            reason: format!("{what} is missing; run ./scripts/fetch-model.sh, or set nlp.backend = \"candle\""),
        };
        if !runtime_library.is_file() {
            return Err(missing(runtime_library, "the ONNX Runtime library (nlp.onnx_runtime)"));
        }
        if !model.is_file() {
            return Err(missing(model, "the ONNX model (nlp.onnx_model)"));
        }
        let load_error = |path: &Path, reason: String| EncoderError::Load { dir: path.to_path_buf(), reason };
        let environment = environment(runtime_library)?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut sessions = Vec::with_capacity(cores);
        for _ in 0..cores {
            let session = Session::builder(&environment)
                .and_then(|builder| Ok(builder.with_optimization_level(GraphOptimizationLevel::All)?))
                .and_then(|builder| Ok(builder.with_intra_threads(1)?))
                .and_then(|builder| Ok(builder.with_inter_threads(1)?))
                .and_then(|mut builder| builder.commit_from_file(model))
                .map_err(|e| load_error(model, e.to_string()))?;
            let produces_hidden_states = session.outputs().iter().any(|o| o.name() == "last_hidden_state");
            if !produces_hidden_states {
                return Err(load_error(model, "the model has no `last_hidden_state` output; it is not a sentence encoder export".into()));
            }
            sessions.push(Mutex::new(session));
        }
        let file_name = model.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let model_len = std::fs::metadata(model).map(|m| m.len()).unwrap_or(0);
        Ok(Self {
            id: format!("minilm-onnx/{file_name}/w{model_len}/t{MAX_TOKENS}"),
            sessions,
            next_session: AtomicUsize::new(0),
            tokenizer,
        })
    }

    /// Each text in a run of its own: the int8 products quantise a run's activations with one
    /// scale, so in a batch a text's vector would depend on the texts beside it (cosine 0.98
    /// to its own), and a message's classification on what else was waiting.
    fn encode_each(&self, session: &mut Session, texts: &[&str]) -> Result<Vec<Vec<f32>>, EncoderError> {
        texts.iter().map(|text| self.encode_one(session, text)).collect()
    }

    fn encode_one(&self, session: &mut Session, text: &str) -> Result<Vec<f32>, EncoderError> {
        let err = |e: &dyn std::fmt::Display| EncoderError::Encode(e.to_string());
        let encoding = self.tokenizer.encode(text, true).map_err(|e| err(&e))?;
        let ids: Vec<i64> = encoding.get_ids().iter().map(|&id| i64::from(id)).collect();
        let mask: Vec<i64> = encoding.get_attention_mask().iter().map(|&m| i64::from(m)).collect();
        let token_types = vec![0_i64; ids.len()];
        let shape = [1, ids.len()];
        let outputs = session
            .run(ort::inputs![
                "input_ids" => TensorRef::from_array_view((shape, &ids[..])).map_err(|e| err(&e))?,
                "attention_mask" => TensorRef::from_array_view((shape, &mask[..])).map_err(|e| err(&e))?,
                "token_type_ids" => TensorRef::from_array_view((shape, &token_types[..])).map_err(|e| err(&e))?,
            ])
            .map_err(|e| err(&e))?;
        let hidden = outputs.get("last_hidden_state").ok_or_else(|| err(&"no last_hidden_state output"))?;
        let (hidden_shape, hidden) = hidden.try_extract_tensor::<f32>().map_err(|e| err(&e))?;
        if hidden_shape.len() != 3 || hidden_shape[2] as usize != DIMENSION || hidden.len() != ids.len() * DIMENSION {
            return Err(err(&format!("unexpected output shape {hidden_shape:?}")));
        }
        Ok(mean_pooled(hidden, &mask))
    }

    /// A free session, or (all busy) the next one in turn to wait for.
    fn with_session<T>(&self, work: impl FnOnce(&mut Session) -> T) -> T {
        let start = self.next_session.fetch_add(1, Ordering::Relaxed);
        for offset in 0..self.sessions.len() {
            if let Ok(mut session) = self.sessions[(start + offset) % self.sessions.len()].try_lock() {
                return work(&mut session);
            }
        }
        let mut session = self.sessions[start % self.sessions.len()].lock().unwrap_or_else(|e| e.into_inner());
        work(&mut session)
    }
}

/// ONNX Runtime allows one environment per process: every encoder shares the first one made
/// (and the library it loaded).
fn environment(runtime_library: &Path) -> Result<Environment, EncoderError> {
    static ENVIRONMENT: Mutex<Option<Environment>> = Mutex::new(None);
    let mut shared = ENVIRONMENT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(environment) = shared.as_ref() {
        return Ok(environment.clone());
    }
    let load_error = |reason: String| EncoderError::Load { dir: runtime_library.to_path_buf(), reason };
    let environment = ort::init_from(runtime_library)
        .map_err(|e| load_error(e.to_string()))?
        .with_name("switchboard")
        .with_telemetry(false)
        .build()
        .map_err(|e| load_error(e.to_string()))?;
    *shared = Some(environment.clone());
    Ok(environment)
}

/// The mean of the token vectors the mask keeps, scaled to unit length (sentence-transformers'
/// pooling for this model).
fn mean_pooled(tokens: &[f32], mask: &[i64]) -> Vec<f32> {
    let mut sum = vec![0.0_f32; DIMENSION];
    let mut kept = 0.0_f32;
    for (token, &keep) in tokens.chunks_exact(DIMENSION).zip(mask) {
        if keep != 0 {
            kept += 1.0;
            for (s, v) in sum.iter_mut().zip(token) {
                *s += v;
            }
        }
    }
    let kept = kept.max(1e-9);
    let norm = sum.iter().map(|s| (s / kept) * (s / kept)).sum::<f32>().sqrt().max(1e-12);
    sum.iter().map(|s| s / kept / norm).collect()
}

impl SentenceEncoder for OnnxMiniLmEncoder {
    fn id(&self) -> &str {
        &self.id
    }

    fn dimension(&self) -> usize {
        DIMENSION
    }

    fn encode(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EncoderError> {
        if texts.len() <= BATCH {
            return self.with_session(|session| self.encode_each(session, texts));
        }
        encode_in_batches(texts, &self.sessions, |session, batch| {
            self.encode_each(&mut session.lock().unwrap_or_else(|e| e.into_inner()), batch)
        })
    }
}
