//! Static token vectors distilled from the sentence encoder (`scripts/static-embeddings.py`):
//! a text's vector is the mean of its tokens' rows. No attention, no context: microseconds per
//! message, sure enough for plain questions, which then skip the sentence encoder (the
//! classifier's first stage).

use crate::encoder::{load_tokenizer, EncoderError, SentenceEncoder};
use crate::neighbours::quantise_into;
use candle_core::{DType, Device};
use sha2::{Digest, Sha256};
use std::path::Path;
use tokenizers::Tokenizer;

pub struct StaticEncoder {
    id: String,
    tokenizer: Tokenizer,
    /// One row of `dimension` values per vocabulary entry, in 8 bits: a quarter of the file's
    /// 31 MB of f32 in memory; a word piece's row is one term of a mean, where the rounding
    /// (under 0.4 % of the row's largest value) is lost.
    table: Vec<i8>,
    /// Each row's scale back to its values.
    scales: Vec<f32>,
    dimension: usize,
    /// Word pieces without a letter (digits, punctuation) and special tokens: left out of the
    /// mean, where an order number or a pair of brackets only dilutes what the words say.
    unlettered: Vec<bool>,
}

impl StaticEncoder {
    /// Written beside the model by `scripts/fetch-model.sh`.
    pub const FILE: &'static str = "static-embeddings.safetensors";

    pub fn load(dir: &Path) -> Result<Self, EncoderError> {
        let path = dir.join(Self::FILE);
        if !path.is_file() {
            return Err(EncoderError::MissingFile { dir: dir.to_path_buf(), file: Self::FILE });
        }
        let load_error = |reason: String| EncoderError::Load { dir: dir.to_path_buf(), reason: format!("{}: {reason}", Self::FILE) };
        let tokenizer = load_tokenizer(dir)?;
        let bytes = std::fs::read(&path).map_err(|e| load_error(e.to_string()))?;
        let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).map_err(|e| load_error(e.to_string()))?;
        let embeddings = tensors.get("embeddings").ok_or_else(|| load_error("no `embeddings` tensor".into()))?;
        let (rows, dimension) = embeddings.dims2().map_err(|e| load_error(e.to_string()))?;
        if dimension == 0 {
            return Err(load_error("the table has no columns; run ./scripts/fetch-model.sh again".into()));
        }
        let vocabulary = tokenizer.get_vocab_size(true);
        if rows != vocabulary {
            return Err(load_error(format!("{rows} rows for a vocabulary of {vocabulary}; run ./scripts/fetch-model.sh again")));
        }
        let values = embeddings
            .to_dtype(DType::F32)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| load_error(e.to_string()))?;
        drop(tensors);
        let (table, scales) = quantise_rows(&values, dimension);
        let mut unlettered = vec![false; rows];
        for (piece, id) in tokenizer.get_vocab(true) {
            let special = piece.starts_with('[') && piece.ends_with(']');
            let slot = unlettered.get_mut(id as usize).ok_or_else(|| {
                load_error(format!("the tokenizer's `{piece}` has id {id}, past the table's {rows} rows; run ./scripts/fetch-model.sh again"))
            })?;
            *slot = special || !piece.chars().any(char::is_alphabetic);
        }
        let digest = hex::encode(Sha256::digest(&bytes));
        Ok(Self { id: format!("static/{}/d{dimension}/letters/i8", &digest[..16]), tokenizer, table, scales, dimension, unlettered })
    }

    fn encode_one(&self, text: &str) -> Result<Vec<f32>, EncoderError> {
        let encoding = self.tokenizer.encode(text, false).map_err(|e| EncoderError::Encode(e.to_string()))?;
        let mut sum = vec![0.0f32; self.dimension];
        for &id in encoding.get_ids().iter().filter(|&&id| !self.unlettered[id as usize]) {
            let row = &self.table[id as usize * self.dimension..][..self.dimension];
            let scale = self.scales[id as usize];
            sum.iter_mut().zip(row).for_each(|(s, &v)| *s += scale * f32::from(v));
        }
        // Unit length, as the sentence encoder's vectors are (the mean's scale drops out).
        let norm = sum.iter().map(|v| v * v).sum::<f32>().sqrt();
        if norm > 0.0 {
            sum.iter_mut().for_each(|v| *v /= norm);
        }
        Ok(sum)
    }
}

/// Each row as 8-bit values and the scale that maps 127 back to the row's largest magnitude.
fn quantise_rows(values: &[f32], dimension: usize) -> (Vec<i8>, Vec<f32>) {
    let mut table = Vec::with_capacity(values.len());
    let scales = values.chunks_exact(dimension).map(|row| quantise_into(row, &mut table)).collect();
    (table, scales)
}

impl SentenceEncoder for StaticEncoder {
    fn id(&self) -> &str {
        &self.id
    }

    fn dimension(&self) -> usize {
        self.dimension
    }

    fn encode(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EncoderError> {
        texts.iter().map(|text| self.encode_one(text)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_in_eight_bits_keep_their_values_within_half_a_step() {
        let values = [0.5, -0.25, 0.125, 0.0, 0.0, 0.0, -2.0, 1.0, 0.3];
        let (table, scales) = quantise_rows(&values, 3);
        assert_eq!(scales.len(), 3);
        for (row, (original, scale)) in table.chunks(3).zip(values.chunks(3).zip(&scales)) {
            for (&q, &v) in row.iter().zip(original) {
                assert!((f32::from(q) * scale - v).abs() <= scale / 2.0 + 1e-6, "{v} became {}", f32::from(q) * scale);
            }
        }
        assert_eq!(&table[3..6], &[0, 0, 0], "an all-zero row stays zero");
        assert_eq!(table[6], -127, "the largest magnitude takes the full range");
    }
}
