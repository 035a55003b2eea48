//! Embeddings of training phrases, kept on disk by content hash so retraining after a restart or
//! an edit of the intents file only encodes the phrases that are new.

use crate::encoder::{EncoderError, SentenceEncoder};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

type Key = [u8; 16];

pub struct EmbeddingCache {
    /// None keeps the cache in memory only.
    file: Option<PathBuf>,
    encoder_id: String,
    dimension: usize,
    vectors: HashMap<Key, Vec<f32>>,
}

impl EmbeddingCache {
    /// Opens (or starts) the cache for `encoder` in `dir`. A damaged tail, as a crash mid-write
    /// leaves, is ignored: those phrases are encoded again.
    pub fn open(dir: Option<&Path>, encoder: &dyn SentenceEncoder) -> Self {
        let encoder_id = encoder.id().to_string();
        let dimension = encoder.dimension();
        let file = dir.map(|d| d.join(format!("embeddings-{}.bin", &hex::encode(Sha256::digest(&encoder_id))[..16])));
        let mut vectors = HashMap::new();
        if let Some((path, bytes)) = file.as_ref().and_then(|f| Some((f, std::fs::read(f).ok()?))) {
            let record = 16 + 4 * dimension;
            if bytes.len() % record != 0 {
                // Cut the half-written record so later appends stay aligned.
                let whole = (bytes.len() - bytes.len() % record) as u64;
                let _ = std::fs::OpenOptions::new().write(true).open(path).and_then(|f| f.set_len(whole));
            }
            for chunk in bytes.chunks_exact(record) {
                let key: Key = chunk[..16].try_into().unwrap();
                let vector = chunk[16..].chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
                vectors.insert(key, vector);
            }
        }
        Self { file, encoder_id, dimension, vectors }
    }

    fn key(&self, text: &str) -> Key {
        let mut hasher = Sha256::new();
        hasher.update(self.encoder_id.as_bytes());
        hasher.update([0]);
        hasher.update(text.as_bytes());
        hasher.finalize()[..16].try_into().unwrap()
    }

    /// Embeddings of `texts`, encoding the missing ones in chunks; `progress` gets the number done.
    pub fn embed_all(
        &mut self,
        encoder: &dyn SentenceEncoder,
        texts: &[&str],
        progress: &mut dyn FnMut(usize),
    ) -> Result<Vec<Vec<f32>>, EncoderError> {
        let mut missing: Vec<&str> = texts.iter().copied().filter(|t| !self.vectors.contains_key(&self.key(t))).collect();
        missing.sort_unstable();
        missing.dedup();
        // Batches pad to their longest text: texts of like length together waste least.
        missing.sort_by_key(|t| t.len());
        let mut done = texts.len() - missing.len();
        progress(done);
        for chunk in missing.chunks(256) {
            let vectors = encoder.encode(chunk)?;
            let mut appended = Vec::with_capacity(chunk.len() * (16 + 4 * self.dimension));
            for (text, vector) in chunk.iter().zip(vectors) {
                let key = self.key(text);
                appended.extend_from_slice(&key);
                for v in &vector {
                    appended.extend_from_slice(&v.to_le_bytes());
                }
                self.vectors.insert(key, vector);
            }
            self.append(&appended);
            done += chunk.len();
            progress(done.min(texts.len()));
        }
        Ok(texts.iter().map(|t| self.vectors[&self.key(t)].clone()).collect())
    }

    fn append(&self, bytes: &[u8]) {
        let Some(file) = &self.file else { return };
        let written = (|| {
            if let Some(dir) = file.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::OpenOptions::new().create(true).append(true).open(file)?.write_all(bytes)
        })();
        if let Err(e) = written {
            // The cache only saves time; training goes on without it.
            tracing::warn!(file = %file.display(), error = %e, "cannot write the embedding cache");
        }
    }
}
