//! Sentence encoders: text in, one unit-length vector per text out. The rest of the crate only
//! sees the `SentenceEncoder` trait, so another backend (rust-bert, ONNX) slots in behind a feature.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use std::path::{Path, PathBuf};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

#[derive(Debug, thiserror::Error)]
pub enum EncoderError {
    #[error("model directory {dir} is missing {file}; run ./scripts/fetch-model.sh or set nlp.model_dir")]
    MissingFile { dir: PathBuf, file: &'static str },
    #[error("cannot load the model from {dir}: {reason}")]
    Load { dir: PathBuf, reason: String },
    #[error("encoding failed: {0}")]
    Encode(String),
}

pub trait SentenceEncoder: Send + Sync {
    /// Names the model and its settings; embeddings cached under another id are not reused.
    fn id(&self) -> &str;
    fn dimension(&self) -> usize;
    /// One L2-normalised vector per text, in order.
    fn encode(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EncoderError>;
}

/// Longest input in tokens, as sentence-transformers uses for this model.
pub(crate) const MAX_TOKENS: usize = 256;
/// Texts per forward pass; similar lengths are batched together to keep padding small.
pub(crate) const BATCH: usize = 32;

/// all-MiniLM-L6-v2 (a 6-layer BERT) run with candle on the CPU, mean-pooled like
/// sentence-transformers.
pub struct MiniLmEncoder {
    id: String,
    model: BertModel,
    tokenizer: Tokenizer,
    dimension: usize,
}

impl MiniLmEncoder {
    pub const FILES: [&'static str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];

    pub fn load(dir: &Path) -> Result<Self, EncoderError> {
        for file in Self::FILES {
            if !dir.join(file).is_file() {
                return Err(EncoderError::MissingFile { dir: dir.to_path_buf(), file });
            }
        }
        let load_error = |reason: String| EncoderError::Load { dir: dir.to_path_buf(), reason };
        let config_text = std::fs::read_to_string(dir.join("config.json")).map_err(|e| load_error(e.to_string()))?;
        let config: BertConfig =
            serde_json::from_str(&config_text).map_err(|e| load_error(format!("config.json: {e}")))?;
        let tokenizer = load_tokenizer(dir)?;
        let weights = dir.join("model.safetensors");
        // SAFETY: the weights file is memory-mapped read-only; it must not change while we run,
        // which the fetch script guarantees by installing into a fresh directory.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[weights], DType::F32, &Device::Cpu) }
            .map_err(|e| load_error(format!("model.safetensors: {e}")))?;
        let model = BertModel::load(vb, &config).map_err(|e| load_error(format!("weights: {e}")))?;
        let weights_len = std::fs::metadata(dir.join("model.safetensors")).map(|m| m.len()).unwrap_or(0);
        Ok(Self {
            id: format!("minilm-candle/h{}/l{}/w{weights_len}/t{MAX_TOKENS}", config.hidden_size, config.num_hidden_layers),
            dimension: config.hidden_size,
            model,
            tokenizer,
        })
    }

    fn encode_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EncoderError> {
        let err = |e: &dyn std::fmt::Display| EncoderError::Encode(e.to_string());
        let encodings = self.tokenizer.encode_batch(texts.to_vec(), true).map_err(|e| err(&e))?;
        let rows = encodings.len();
        let width = encodings.first().map_or(0, |e| e.get_ids().len());
        let mut ids = Vec::with_capacity(rows * width);
        let mut mask = Vec::with_capacity(rows * width);
        for encoding in &encodings {
            ids.extend(encoding.get_ids().iter().copied());
            mask.extend(encoding.get_attention_mask().iter().copied());
        }
        let device = Device::Cpu;
        let ids = Tensor::from_vec(ids, (rows, width), &device).map_err(|e| err(&e))?;
        let mask = Tensor::from_vec(mask, (rows, width), &device).map_err(|e| err(&e))?;
        let token_types = ids.zeros_like().map_err(|e| err(&e))?;
        let hidden = self.model.forward(&ids, &token_types, Some(&mask)).map_err(|e| err(&e))?;
        let pooled = (|| {
            let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
            let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
            let counts = mask.sum(1)?.clamp(1e-9, f32::MAX)?;
            let mean = summed.broadcast_div(&counts)?;
            let norms = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f32::MAX)?;
            mean.broadcast_div(&norms)?.to_vec2::<f32>()
        })()
        .map_err(|e| err(&e))?;
        Ok(pooled)
    }
}

impl SentenceEncoder for MiniLmEncoder {
    fn id(&self) -> &str {
        &self.id
    }

    fn dimension(&self) -> usize {
        self.dimension
    }

    fn encode(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EncoderError> {
        if texts.len() <= BATCH {
            // One batch: every core works on its matrix products (lowest latency).
            return self.encode_batch(texts);
        }
        // Many batches: one batch per core at a time. With candle's matrix products kept on one
        // thread (`switchboard` sets RAYON_NUM_THREADS=1), the service answered 216 rather than
        // 200 messages/s under load (BENCHMARKS.md).
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        encode_in_batches(texts, &vec![(); cores], |_, batch| self.encode_batch(batch))
    }
}

/// The model's tokenizer, padding each batch to its longest text and truncating like
/// sentence-transformers.
pub(crate) fn load_tokenizer(dir: &Path) -> Result<Tokenizer, EncoderError> {
    let path = dir.join("tokenizer.json");
    if !path.is_file() {
        return Err(EncoderError::MissingFile { dir: dir.to_path_buf(), file: "tokenizer.json" });
    }
    let load_error = |reason: String| EncoderError::Load { dir: dir.to_path_buf(), reason };
    let mut tokenizer = Tokenizer::from_file(path).map_err(|e| load_error(format!("tokenizer.json: {e}")))?;
    // The shipped tokenizer pads every input to 128; pad each batch to its longest instead.
    tokenizer.with_padding(Some(PaddingParams { strategy: PaddingStrategy::BatchLongest, ..Default::default() }));
    tokenizer
        .with_truncation(Some(TruncationParams { max_length: MAX_TOKENS, ..Default::default() }))
        .map_err(|e| load_error(format!("tokenizer truncation: {e}")))?;
    Ok(tokenizer)
}

/// Encodes `texts` as batches of similar length (padding is wasted work), with one thread per
/// lane taking the next batch until none is left; each lane is what one thread encodes with
/// (nothing, or a model copy of its own). Vectors come back in the order of `texts`.
pub(crate) fn encode_in_batches<Lane: Sync>(
    texts: &[&str],
    lanes: &[Lane],
    encode_batch: impl Fn(&Lane, &[&str]) -> Result<Vec<Vec<f32>>, EncoderError> + Sync,
) -> Result<Vec<Vec<f32>>, EncoderError> {
    let mut order: Vec<usize> = (0..texts.len()).collect();
    order.sort_by_key(|&i| texts[i].len());
    let chunks: Vec<&[usize]> = order.chunks(BATCH).collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let done: std::sync::Mutex<Vec<(usize, Result<Vec<Vec<f32>>, EncoderError>)>> = std::sync::Mutex::default();
    std::thread::scope(|scope| {
        for lane in lanes.iter().take(chunks.len()) {
            let (next, done, chunks, encode_batch) = (&next, &done, &chunks, &encode_batch);
            scope.spawn(move || {
                loop {
                    let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(chunk) = chunks.get(index) else { break };
                    let batch: Vec<&str> = chunk.iter().map(|&i| texts[i]).collect();
                    let result = encode_batch(lane, &batch);
                    done.lock().unwrap_or_else(|e| e.into_inner()).push((index, result));
                }
            });
        }
    });
    let mut out = vec![Vec::new(); texts.len()];
    for (index, result) in done.into_inner().unwrap_or_else(|e| e.into_inner()) {
        for (&i, vector) in chunks[index].iter().zip(result?) {
            out[i] = vector;
        }
    }
    Ok(out)
}
