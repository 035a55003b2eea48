//! all-MiniLM-L6-v2 on libtorch through rust-bert (`--features rust-bert`): a second backend
//! beside the candle one, reading the same model directory and giving the same vectors.
//! Build notes (libtorch, LIBTORCH) are in README.md; ./scripts/fetch-libtorch.sh gets libtorch.

use crate::encoder::{BATCH, EncoderError, SentenceEncoder, encode_in_batches};
use rust_bert::pipelines::common::ModelType;
use rust_bert::pipelines::sentence_embeddings::{SentenceEmbeddingsConfig, SentenceEmbeddingsModel};
use rust_bert::resources::LocalResource;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Copies of the model at most: one per core lets batches run side by side, but each copy
/// holds its own 90 MB of weights.
const MAX_REPLICAS: usize = 4;

/// The sentence-transformers pipeline (BERT, mean pooling, L2 normalisation) run by rust-bert.
pub struct RustBertEncoder {
    id: String,
    dimension: usize,
    /// libtorch tensors are `Send` but not `Sync`: each copy runs one batch at a time.
    replicas: Vec<Mutex<SentenceEmbeddingsModel>>,
    next_replica: AtomicUsize,
}

#[derive(serde::Deserialize)]
struct BertShape {
    hidden_size: usize,
    num_hidden_layers: usize,
}

#[derive(serde::Deserialize)]
struct SentenceBertConfig {
    max_seq_length: usize,
}

impl RustBertEncoder {
    /// rust-bert reads the sentence-transformers files beside the weights (pooling, normalisation,
    /// tokenizer settings) and tokenizes with vocab.txt; ./scripts/fetch-model.sh installs them all.
    pub const FILES: [&'static str; 7] = [
        "config.json",
        "model.safetensors",
        "vocab.txt",
        "tokenizer_config.json",
        "sentence_bert_config.json",
        "modules.json",
        "1_Pooling/config.json",
    ];

    pub fn load(dir: &Path) -> Result<Self, EncoderError> {
        for file in Self::FILES {
            if !dir.join(file).is_file() {
                return Err(EncoderError::MissingFile { dir: dir.to_path_buf(), file });
            }
        }
        let load_error = |reason: String| EncoderError::Load { dir: dir.to_path_buf(), reason };
        // rust-bert panics on a malformed config file: parse the ones we need first, to say which.
        let read_json = |file: &str| -> Result<serde_json::Value, EncoderError> {
            let text = std::fs::read_to_string(dir.join(file)).map_err(|e| load_error(format!("{file}: {e}")))?;
            serde_json::from_str(&text).map_err(|e| load_error(format!("{file}: {e}")))
        };
        let shape: BertShape =
            serde_json::from_value(read_json("config.json")?).map_err(|e| load_error(format!("config.json: {e}")))?;
        let sentence_bert: SentenceBertConfig = serde_json::from_value(read_json("sentence_bert_config.json")?)
            .map_err(|e| load_error(format!("sentence_bert_config.json: {e}")))?;
        for file in ["tokenizer_config.json", "modules.json", "1_Pooling/config.json"] {
            read_json(file)?;
        }

        // One batch per model copy and one libtorch thread per batch, as the candle backend runs:
        // two concurrent batches of 32 then take as long as one. libtorch's default of a thread
        // per core on top oversubscribes the cores, which on a busy machine was several times
        // slower. OMP_NUM_THREADS, when set, wins (2 halves a lone batch's time on an idle 2-core
        // machine).
        if std::env::var_os("OMP_NUM_THREADS").is_none() {
            tch::set_num_threads(1);
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let replicas = (0..cores.clamp(1, MAX_REPLICAS))
            .map(|_| Self::load_model(dir).map(Mutex::new).map_err(load_error))
            .collect::<Result<Vec<_>, _>>()?;
        let dimension = replicas[0]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_embedding_dim()
            .map_err(|e| load_error(e.to_string()))? as usize;
        let weights_len = std::fs::metadata(dir.join("model.safetensors")).map(|m| m.len()).unwrap_or(0);
        Ok(Self {
            // Not the candle id: the two engines' vectors differ in the last digits, and cached
            // embeddings must come from the engine that serves.
            id: format!(
                "minilm-rust-bert/h{}/l{}/w{weights_len}/t{}",
                shape.hidden_size, shape.num_hidden_layers, sentence_bert.max_seq_length
            ),
            dimension,
            replicas,
            next_replica: AtomicUsize::new(0),
        })
    }

    fn load_model(dir: &Path) -> Result<SentenceEmbeddingsModel, String> {
        let resource = |file: &str| Box::new(LocalResource::from(dir.join(file)));
        // Built by hand: SentenceEmbeddingsBuilder::local expects `rust_model.ot`, while
        // rust-bert loads the `.safetensors` file we share with the candle backend just as well.
        let config = SentenceEmbeddingsConfig {
            modules_config_resource: resource("modules.json"),
            transformer_type: ModelType::Bert,
            transformer_config_resource: resource("config.json"),
            transformer_weights_resource: resource("model.safetensors"),
            pooling_config_resource: resource("1_Pooling/config.json"),
            dense_config_resource: None,
            dense_weights_resource: None,
            sentence_bert_config_resource: resource("sentence_bert_config.json"),
            tokenizer_config_resource: resource("tokenizer_config.json"),
            tokenizer_vocab_resource: resource("vocab.txt"),
            tokenizer_merges_resource: None,
            device: tch::Device::Cpu,
            kind: None,
        };
        // rust-bert and tch panic on some bad inputs instead of returning an error.
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| SentenceEmbeddingsModel::new(config))) {
            Ok(Ok(model)) => Ok(model),
            Ok(Err(e)) => Err(e.to_string()),
            Err(panic) => Err(panic_message(&panic)),
        }
    }

    fn encode_batch(model: &SentenceEmbeddingsModel, texts: &[&str]) -> Result<Vec<Vec<f32>>, EncoderError> {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| model.encode(texts))) {
            Ok(result) => result.map_err(|e| EncoderError::Encode(e.to_string())),
            Err(panic) => Err(EncoderError::Encode(panic_message(&panic))),
        }
    }

    /// A copy nobody is using, or else the next in turn (then we wait for it).
    fn lock_any_replica(&self) -> std::sync::MutexGuard<'_, SentenceEmbeddingsModel> {
        for replica in &self.replicas {
            if let Ok(model) = replica.try_lock() {
                return model;
            }
        }
        let turn = self.next_replica.fetch_add(1, Ordering::Relaxed) % self.replicas.len();
        // A panic while encoding leaves the weights untouched: a poisoned lock is still usable.
        self.replicas[turn].lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "rust-bert panicked".into())
}

impl SentenceEncoder for RustBertEncoder {
    fn id(&self) -> &str {
        &self.id
    }

    fn dimension(&self) -> usize {
        self.dimension
    }

    fn encode(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EncoderError> {
        // rust-bert rejects an empty batch.
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        if texts.len() <= BATCH {
            return Self::encode_batch(&self.lock_any_replica(), texts);
        }
        // One batch per model copy at a time.
        encode_in_batches(texts, &self.replicas, |replica, batch| {
            Self::encode_batch(&replica.lock().unwrap_or_else(|e| e.into_inner()), batch)
        })
    }
}
