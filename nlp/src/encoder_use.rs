//! Google's Universal Sentence Encoder Multilingual v3 (Apache-2.0; from PyPI, converted by
//! `scripts/use-multilingual.py`): a second view of a message for the judgement. Its vectors
//! place the same request in sixteen languages close together, where the English sentence
//! encoder scatters them; no attention, so it costs a fraction of the transformer.
//!
//! The network: each word piece's vector (an 8-bit table), projected and passed through three
//! convolutions over 2, 3 and 5 neighbouring pieces, normalised, summed over the message and
//! reduced by a small feed-forward stack to 512 values of unit length.

use crate::encoder::{EncoderError, SentenceEncoder};
use candle_core::safetensors::{Load, MmapedSafetensors};
use candle_core::{DType, Device, Tensor};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::{NormalizedString, Normalizer};

/// Longest input in word pieces: the rest of a long email adds little and costs linearly.
const MAX_PIECES: usize = 512;
/// Width of the word table and of the output.
const WIDTH: usize = 512;
/// Width of each convolution branch.
const BRANCH: usize = 256;
/// The convolutions: how many neighbouring pieces each sees, and how many of them lie before.
const BRANCHES: [(usize, usize); 3] = [(2, 0), (3, 1), (5, 2)];
const MOST_BEFORE: usize = 2;
const MOST_AFTER: usize = 2;
/// The word piece unknown to the vocabulary, and the marks around a message: never matched
/// in a message's text ("<s>" typed by a customer is three characters, not a mark).
const UNKNOWN: u32 = 0;
const START: u32 = 1;
const END: u32 = 2;
const RESERVED: [&str; 3] = ["<unk>", "<s>", "</s>"];
/// Changes whenever `SentencePieces::split` would split some text differently.
const SPLIT_VERSION: u32 = 1;

pub struct MultilingualEncoder {
    id: String,
    tokenizer: SentencePieces,
    /// The weights file, mapped: its `table` holds one 8-bit row of `WIDTH` per word piece (row
    /// r is in quantisation chunk r % chunks), read in place, so only the rows of pieces that
    /// messages use take memory (the whole table is 64 MiB; 128,010 pieces in 16 languages).
    words: MmapedSafetensors,
    table_scale: Vec<f32>,
    table_offset: Vec<f32>,
    weights: Weights,
}

struct Weights {
    /// The three branches' projections side by side: 512 × 768, and its bias and normalisation.
    projection: Tensor,
    projection_bias: Tensor,
    projection_gain: Tensor,
    projection_shift: Tensor,
    /// Per branch: (first convolution, its bias, second convolution, its bias).
    convolutions: Vec<(Tensor, Tensor, Tensor, Tensor)>,
    gain: Tensor,
    shift: Tensor,
    pooled: Tensor,
    pooled_bias: Tensor,
    d0: Tensor,
    d1: Tensor,
    d2: Tensor,
    d3: Tensor,
    p1: Tensor,
    p3: Tensor,
    eps: f64,
}

impl MultilingualEncoder {
    pub const FILES: [&'static str; 2] = ["tokenizer.json", "use-multilingual.safetensors"];

    /// Loads and checks the converted model in `dir`: a missing or broken file is refused at
    /// start (saying what to do), not found on the first message.
    pub fn load(dir: &Path) -> Result<Self, EncoderError> {
        let load_error = |reason: String| EncoderError::Load { dir: dir.to_path_buf(), reason };
        for file in Self::FILES {
            if !dir.join(file).is_file() {
                return Err(load_error(format!(
                    "no {file}; run ./scripts/fetch-model.sh, point nlp.multilingual_dir at it, or set nlp.multilingual = false"
                )));
            }
        }
        let tokenizer_bytes = std::fs::read(dir.join("tokenizer.json")).map_err(|e| load_error(format!("tokenizer.json: {e}")))?;
        let tokenizer = SentencePieces::load(&tokenizer_bytes).map_err(|e| load_error(format!("tokenizer.json: {e}")))?;
        let weights_path = dir.join(Self::FILES[1]);
        let broken = |e: &dyn std::fmt::Display| load_error(format!("{}: {e}; delete this directory and run ./scripts/fetch-model.sh again", Self::FILES[1]));
        let hashed_weights = hashed(&weights_path).map_err(|e| load_error(format!("{}: {e}", Self::FILES[1])))?;
        // SAFETY: mapped read-only; fetch-model.sh never writes an installed file in place (it
        // replaces the whole directory), so the mapped bytes do not change while they are read.
        let words = unsafe { MmapedSafetensors::new(&weights_path) }.map_err(|e| broken(&e))?;
        let mut take = |name: &str| -> Result<Tensor, EncoderError> {
            let view = words.get(name).map_err(|_| broken(&format!("no `{name}` tensor")))?;
            view.load(&Device::Cpu).map_err(|e| broken(&e))
        };
        let vector = |t: Tensor| t.to_dtype(DType::F32).and_then(|t| t.flatten_all()).and_then(|t| t.to_vec1::<f32>());
        let table = words.get("table").map_err(|_| broken(&"no `table` tensor"))?;
        let pieces = tokenizer.scores.len();
        match *table.shape() {
            [rows, width] if width == WIDTH && rows >= pieces && DType::try_from(table.dtype()).ok() == Some(DType::U8) => {}
            ref shape => return Err(broken(&format!("a word table of shape {shape:?} (8-bit values) for {pieces} pieces"))),
        }
        let table_scale = vector(take("table_scale")?).map_err(|e| load_error(e.to_string()))?;
        let table_offset = vector(take("table_offset")?).map_err(|e| load_error(e.to_string()))?;
        if table_scale.is_empty() || table_scale.len() != table_offset.len() {
            return Err(load_error(format!(
                "{} word-table scales for {} offsets; delete this directory and run ./scripts/fetch-model.sh again",
                table_scale.len(),
                table_offset.len()
            )));
        }
        let joined = |names: [&str; 3], take: &mut dyn FnMut(&str) -> Result<Tensor, EncoderError>| -> Result<Tensor, EncoderError> {
            let parts = names.iter().map(|n| take(n)).collect::<Result<Vec<_>, _>>()?;
            let dim = parts[0].rank() - 1;
            Tensor::cat(&parts, dim).map_err(|e| load_error(e.to_string()))
        };
        let projection = joined(["proj2", "proj3", "proj5"], &mut take)?;
        let projection_bias = joined(["proj_b2", "proj_b3", "proj_b5"], &mut take)?;
        let projection_gain = joined(["ln_g2", "ln_g3", "ln_g5"], &mut take)?;
        let projection_shift = joined(["ln_b2", "ln_b3", "ln_b5"], &mut take)?;
        let mut convolutions = Vec::new();
        for (span, _) in BRANCHES {
            convolutions.push((take(&format!("w1_{span}"))?, take(&format!("b1_{span}"))?, take(&format!("w2_{span}"))?, take(&format!("b2_{span}"))?));
        }
        let eps = vector(take("eps")?).map_err(|e| load_error(e.to_string()))?.first().copied().unwrap_or(1e-6) as f64;
        let weights = Weights {
            projection,
            projection_bias,
            projection_gain,
            projection_shift,
            convolutions,
            gain: take("ln_g")?,
            shift: take("ln_b")?,
            pooled: take("cnn_W")?,
            pooled_bias: take("cnn_b")?,
            d0: take("d0")?,
            d1: take("d1")?,
            d2: take("d2")?,
            d3: take("d3")?,
            p1: take("p1")?,
            p3: take("p3")?,
            eps,
        };
        // Cached vectors are keyed by this id: it names both files and how this code splits text.
        let digest = hex::encode(hashed_weights.chain_update(&tokenizer_bytes).finalize());
        let encoder = Self { id: format!("use-multilingual-v3/{}/{SPLIT_VERSION}", &digest[..16]), tokenizer, words, table_scale, table_offset, weights };
        // Weights of the wrong shape fail here, at start, rather than on a customer's message.
        encoder.encode(&["ok"]).map_err(|e| load_error(format!("{}: {e}; delete this directory and run ./scripts/fetch-model.sh again", Self::FILES[1])))?;
        Ok(encoder)
    }

    /// The word pieces of `text` with its start and end marks.
    fn pieces(&self, text: &str) -> Result<Vec<u32>, EncoderError> {
        let mut ids = vec![START];
        ids.extend(self.tokenizer.split(text)?);
        ids.truncate(MAX_PIECES - 1);
        ids.push(END);
        Ok(ids)
    }

    fn encode_group(&self, groups: &[Vec<u32>]) -> candle_core::Result<Vec<Vec<f32>>> {
        let w = &self.weights;
        let device = Device::Cpu;
        let tokens: usize = groups.iter().map(Vec::len).sum();
        let chunks = self.table_scale.len();
        let table = self.words.get("table")?;
        let table = table.data();
        let mut embedded = Vec::with_capacity(tokens * WIDTH);
        for &id in groups.iter().flatten() {
            let row = &table[id as usize * WIDTH..][..WIDTH];
            let (scale, offset) = (self.table_scale[id as usize % chunks], self.table_offset[id as usize % chunks]);
            embedded.extend(row.iter().map(|&q| q as f32 * scale + offset));
        }
        let embedded = Tensor::from_vec(embedded, (tokens, WIDTH), &device)?;
        let projected = embedded.matmul(&w.projection)?.broadcast_add(&w.projection_bias)?;
        let projected = layer_norm(&projected, &w.projection_gain, &w.projection_shift, w.eps)?;

        // Each token's neighbours within its own message; `tokens` points at a row of zeros.
        let mut window = Vec::with_capacity(tokens * (MOST_BEFORE + 1 + MOST_AFTER));
        let mut start = 0;
        for group in groups {
            for t in 0..group.len() {
                for offset in 0..=MOST_BEFORE + MOST_AFTER {
                    let at = (t + offset).checked_sub(MOST_BEFORE).filter(|&at| at < group.len());
                    window.push(at.map_or(tokens, |at| start + at) as u32);
                }
            }
            start += group.len();
        }
        let zero = Tensor::zeros((1, BRANCH), DType::F32, &device)?;
        let mut features = vec![embedded];
        for (branch, &(span, before)) in BRANCHES.iter().enumerate() {
            let columns: Vec<u32> = window
                .chunks_exact(MOST_BEFORE + 1 + MOST_AFTER)
                .flat_map(|row| row[MOST_BEFORE - before..MOST_BEFORE - before + span].iter().copied())
                .collect();
            let columns = Tensor::from_vec(columns, tokens * span, &device)?;
            let neighbours = |x: &Tensor| Tensor::cat(&[x, &zero], 0)?.index_select(&columns, 0)?.reshape((tokens, span * BRANCH));
            let (w1, b1, w2, b2) = &w.convolutions[branch];
            let x = projected.narrow(1, branch * BRANCH, BRANCH)?.contiguous()?;
            let h = (neighbours(&x)?.matmul(w1)?.broadcast_add(b1)?.relu()? + &x)?;
            let c = (neighbours(&h)?.matmul(w2)?.broadcast_add(b2)?.relu()? + &h)?;
            features.push(c);
        }
        let features = layer_norm(&Tensor::cat(&features, 1)?, &w.gain, &w.shift, w.eps)?;

        // Summed per message, then projected (the sum commutes with the linear projection).
        let mut membership = vec![0f32; groups.len() * tokens];
        let mut start = 0;
        for (g, group) in groups.iter().enumerate() {
            membership[g * tokens + start..g * tokens + start + group.len()].fill(1.0);
            start += group.len();
        }
        let lengths: Vec<f32> = groups.iter().map(|g| g.len() as f32).collect();
        let lengths = Tensor::from_vec(lengths, (groups.len(), 1), &device)?;
        let summed = Tensor::from_vec(membership, (groups.len(), tokens), &device)?.matmul(&features)?;
        let pooled = summed.matmul(&w.pooled)?.broadcast_add(&w.pooled_bias.unsqueeze(0)?.broadcast_mul(&lengths)?)?;
        let pooled = pooled.broadcast_div(&lengths.sqrt()?)?;

        let y0 = pooled.matmul(&w.d0)?.relu()?;
        let y1 = (pooled.matmul(&w.p1)? + y0.matmul(&w.d1)?)?.relu()?;
        let y2 = y1.matmul(&w.d2)?.relu()?;
        let z = (y1.matmul(&w.p3)? + y2.matmul(&w.d3)?)?.tanh()?;
        let norms = z.sqr()?.sum_keepdim(1)?.clamp(w.eps, f64::MAX)?.sqrt()?;
        z.broadcast_div(&norms)?.to_vec2::<f32>()
    }
}

/// The file's bytes fed to SHA-256, read in pieces (not through the map, whose pages would
/// then all stay resident).
fn hashed(path: &Path) -> std::io::Result<Sha256> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut buffer)? {
            0 => return Ok(hasher),
            n => hasher.update(&buffer[..n]),
        }
    }
}

fn layer_norm(x: &Tensor, gain: &Tensor, shift: &Tensor, eps: f64) -> candle_core::Result<Tensor> {
    let centred = x.broadcast_sub(&x.mean_keepdim(1)?)?;
    let variance = centred.sqr()?.mean_keepdim(1)?;
    centred.broadcast_div(&(variance + eps)?.sqrt()?)?.broadcast_mul(gain)?.broadcast_add(shift)
}

/// SentencePiece's unigram model, split as the package's reference code splits (SentencePiece's
/// algorithm): the normalisation the file names, spaces as "▁" with one before the text, then
/// the most likely split (Viterbi); each character unknown to the vocabulary is a piece of its
/// own, and an empty text is one unknown piece. (The `tokenizers` crate's unigram model kept a
/// trie of maps that took ~120 MB for these 128,000 pieces.)
struct SentencePieces {
    normalizer: NormalizerWrapper,
    ids: HashMap<Box<str>, u32>,
    scores: Vec<f32>,
    /// Longest piece, in characters.
    longest: usize,
    unknown_score: f64,
}

#[derive(serde::Deserialize)]
struct TokenizerFile {
    normalizer: NormalizerWrapper,
    model: UnigramFile,
}

#[derive(serde::Deserialize)]
struct UnigramFile {
    vocab: Vec<(String, f64)>,
}

impl SentencePieces {
    fn load(bytes: &[u8]) -> Result<Self, String> {
        let file: TokenizerFile = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let vocab = file.model.vocab;
        if vocab.len() <= END as usize || vocab.iter().zip(RESERVED).any(|((piece, _), reserved)| piece != reserved) {
            return Err(format!("{} pieces, not starting with {RESERVED:?}; delete this directory and run ./scripts/fetch-model.sh again", vocab.len()));
        }
        let longest = vocab.iter().map(|(piece, _)| piece.chars().count()).max().unwrap_or(1);
        let lowest = vocab.iter().map(|(_, score)| *score).fold(f64::INFINITY, f64::min);
        let scores = vocab.iter().map(|(_, score)| *score as f32).collect();
        let ids = vocab
            .into_iter()
            .enumerate()
            .skip(RESERVED.len())
            .map(|(id, (piece, _))| (piece.into_boxed_str(), id as u32))
            .collect();
        Ok(Self { normalizer: file.normalizer, ids, scores, longest, unknown_score: lowest - 10.0 })
    }

    fn split(&self, text: &str) -> Result<Vec<u32>, EncoderError> {
        let mut normalized = NormalizedString::from(text);
        self.normalizer.normalize(&mut normalized).map_err(|e| EncoderError::Encode(e.to_string()))?;
        if normalized.get().is_empty() {
            return Ok(vec![UNKNOWN]);
        }
        let text = format!("\u{2581}{}", normalized.get().replace(' ', "\u{2581}"));
        // Byte offset of each character, and of the end.
        let bounds: Vec<usize> = text.char_indices().map(|(at, _)| at).chain([text.len()]).collect();
        let characters = bounds.len() - 1;
        // best[j]: the best split of the first j characters, ending in `piece[j]` from `from[j]`.
        let mut best = vec![f64::NEG_INFINITY; characters + 1];
        let (mut from, mut piece) = (vec![0usize; characters + 1], vec![UNKNOWN; characters + 1]);
        best[0] = 0.0;
        for i in 0..characters {
            let mut single = false;
            for j in i + 1..=(i + self.longest).min(characters) {
                if let Some(&id) = self.ids.get(&text[bounds[i]..bounds[j]]) {
                    let score = best[i] + self.scores[id as usize] as f64;
                    if score > best[j] {
                        (best[j], from[j], piece[j]) = (score, i, id);
                    }
                    single |= j == i + 1;
                }
            }
            if !single && best[i] + self.unknown_score > best[i + 1] {
                (best[i + 1], from[i + 1], piece[i + 1]) = (best[i] + self.unknown_score, i, UNKNOWN);
            }
        }
        let mut ids = Vec::new();
        let mut at = characters;
        while at > 0 {
            ids.push(piece[at]);
            at = from[at];
        }
        ids.reverse();
        Ok(ids)
    }
}

/// Word pieces per pass: several messages share each pass over the weights, and the pass's
/// intermediates stay small (384 gave the same speed and 22 MiB more server memory under load).
const PIECES_PER_PASS: usize = 128;

impl SentenceEncoder for MultilingualEncoder {
    fn id(&self) -> &str {
        &self.id
    }

    fn dimension(&self) -> usize {
        WIDTH
    }

    fn encode(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EncoderError> {
        let mut out = Vec::with_capacity(texts.len());
        let mut group: Vec<Vec<u32>> = Vec::new();
        let mut pieces = 0;
        let encode = |group: &[Vec<u32>]| self.encode_group(group).map_err(|e| EncoderError::Encode(e.to_string()));
        for text in texts {
            let ids = self.pieces(text)?;
            if !group.is_empty() && pieces + ids.len() > PIECES_PER_PASS {
                out.extend(encode(&group)?);
                group.clear();
                pieces = 0;
            }
            pieces += ids.len();
            group.push(ids);
        }
        if !group.is_empty() {
            out.extend(encode(&group)?);
        }
        Ok(out)
    }
}

/// The sentence encoder's vector and the multilingual one side by side: what the judgement
/// reads when both are installed. Its id names both, so cached vectors of either alone are not
/// taken for it.
pub struct JoinedEncoder {
    id: String,
    first: std::sync::Arc<dyn SentenceEncoder>,
    second: std::sync::Arc<dyn SentenceEncoder>,
}

impl JoinedEncoder {
    pub fn new(first: std::sync::Arc<dyn SentenceEncoder>, second: std::sync::Arc<dyn SentenceEncoder>) -> Self {
        Self { id: format!("{}+{}", first.id(), second.id()), first, second }
    }

    /// Both vectors of one message, as `encode` joins them.
    pub fn join(first: &[f32], second: &[f32]) -> Vec<f32> {
        [first, second].concat()
    }
}

impl SentenceEncoder for JoinedEncoder {
    fn id(&self) -> &str {
        &self.id
    }

    fn dimension(&self) -> usize {
        self.first.dimension() + self.second.dimension()
    }

    fn encode(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EncoderError> {
        let first = self.first.encode(texts)?;
        let second = self.second.encode(texts)?;
        Ok(first.iter().zip(&second).map(|(a, b)| Self::join(a, b)).collect())
    }
}

/// Sentences with the package's own tokens and vectors (`reference.json`, written by
/// `scripts/use-multilingual.py`), to check this encoder against.
#[derive(serde::Deserialize)]
pub struct ReferenceSentence {
    pub text: String,
    pub ids: Vec<u32>,
    pub vector: Vec<f32>,
}

impl MultilingualEncoder {
    pub fn reference(dir: &Path) -> Result<Vec<ReferenceSentence>, String> {
        let path: PathBuf = dir.join("reference.json");
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The word pieces this encoder reads for `text` (for checks against the reference).
    pub fn pieces_of(&self, text: &str) -> Result<Vec<u32>, EncoderError> {
        self.pieces(text)
    }
}
