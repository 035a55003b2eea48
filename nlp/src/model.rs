//! A trained intent model: head, calibration temperature and out-of-scope threshold, all learned
//! from labelled examples, and stored as one file so a restart skips training.

use crate::head::{Features, LinearHead, TrainParams, Vocabulary, softmax_in_place};
use crate::neighbours::{NeighbourHeader, Neighbours};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::path::Path;

/// A labelled training example whose embedding is already computed.
pub struct LabelledText<'a> {
    pub text: &'a str,
    pub embedding: &'a [f32],
    pub label: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IntentModel {
    pub labels: Vec<String>,
    pub vocabulary: Vocabulary,
    pub head: LinearHead,
    /// Logits are divided by this before the softmax so that probabilities match accuracy.
    pub temperature: f32,
    /// Below this calibrated probability nothing fits: the message is out of scope.
    pub out_of_scope_threshold: f32,
    /// From this calibrated probability up, the top intent was right for at least
    /// `SURE_PRECISION` of held-out in-scope messages; above 1: never sure. The first stage's
    /// bar for taking its answer without the sentence encoder. (Out-of-scope messages are not
    /// counted: whole intents held out are often near a kept one, and the first stage takes
    /// only what the judgement finds on topic.)
    pub sure_at: f32,
    /// The nearest training examples' vote: it moves the choice among the intents, never the
    /// probability (a message far from every example must stay unsure).
    pub neighbours: Neighbours,
}

/// A ranked prediction: (label index, the head's calibrated probability), the choice of the head
/// and the nearest examples first (so a probability may exceed the one before it).
pub type Ranking = Vec<(usize, f32)>;

impl IntentModel {
    /// Trains on everything after learning temperature and threshold from a held-out split:
    /// a fifth of each intent's examples (in scope) and a sixth of the intents (out of scope).
    pub fn train(labels: Vec<String>, examples: &[LabelledText<'_>], params: &TrainParams) -> Self {
        let classes = labels.len();
        let Calibration { temperature, out_of_scope_threshold, sure_at } = if classes >= 3 {
            calibrate(classes, examples, params)
        } else {
            Calibration::NONE
        };
        let texts: Vec<&str> = examples.iter().map(|e| e.text).collect();
        let vocabulary = Vocabulary::fit(&texts);
        let features: Vec<Features> = examples.iter().map(|e| features_of(&vocabulary, e)).collect();
        let training: Vec<(&Features, usize)> = features.iter().zip(examples.iter().map(|e| e.label)).collect();
        let dense_dim = examples.first().map_or(0, |e| e.embedding.len());
        let head = LinearHead::train(&training, classes, dense_dim, vocabulary.len(), params);
        let neighbours = Neighbours::new(params.neighbours, examples.iter().map(|e| (e.embedding, e.label)));
        Self { labels, vocabulary, head, temperature, out_of_scope_threshold, sure_at, neighbours }
    }

    pub fn rank(&self, text: &str, embedding: &[f32]) -> Ranking {
        let features = Features { dense: embedding.to_vec(), sparse: self.vocabulary.features(text) };
        let p = calibrated(&self.head.logits(&features), self.temperature);
        self.neighbours.order(&p, embedding).into_iter().map(|class| (class, p[class])).collect()
    }

    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let header = Header {
            format: FORMAT,
            labels: self.labels.clone(),
            terms: {
                let mut terms: Vec<(&String, &u32)> = self.vocabulary.index.iter().collect();
                terms.sort_by_key(|(_, i)| **i);
                terms.into_iter().map(|(t, _)| t.clone()).collect()
            },
            dense_dim: self.head.dense_dim,
            dense_scale: self.head.dense_scale,
            sparse_scale: self.head.sparse_scale,
            temperature: self.temperature,
            out_of_scope_threshold: self.out_of_scope_threshold,
            sure_at: self.sure_at,
            neighbours: self.neighbours.header(),
        };
        // A name of our own: other processes may be writing the same head at the same time.
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let partial = path.with_extension(format!("partial-{}-{nanos}", std::process::id()));
        {
            let mut file = std::io::BufWriter::new(std::fs::File::create(&partial)?);
            let header = serde_json::to_vec(&header)?;
            file.write_all(&(header.len() as u64).to_le_bytes())?;
            file.write_all(&header)?;
            for values in [&self.vocabulary.idf, &self.head.dense_weights, &self.head.sparse_weights, &self.head.bias] {
                for v in values.iter() {
                    file.write_all(&v.to_le_bytes())?;
                }
            }
            self.neighbours.write(&mut file)?;
            file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        }
        std::fs::rename(partial, path)
    }

    pub fn load(path: &Path) -> std::io::Result<Self> {
        let invalid = |reason: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, reason.to_string());
        let mut bytes = Vec::new();
        std::fs::File::open(path)?.read_to_end(&mut bytes)?;
        let header_len = u64::from_le_bytes(bytes.get(..8).ok_or_else(|| invalid("truncated"))?.try_into().unwrap()) as usize;
        let header: Header = serde_json::from_slice(bytes.get(8..8 + header_len).ok_or_else(|| invalid("truncated"))?)?;
        if header.format != FORMAT {
            return Err(invalid("written by another version"));
        }
        let (classes, terms, dense_dim) = (header.labels.len(), header.terms.len(), header.dense_dim);
        let expected = terms + classes * dense_dim + terms * classes + classes;
        if bytes.len() - 8 - header_len != expected * 4 + header.neighbours.file_len() {
            return Err(invalid("size does not match its header"));
        }
        let (float_bytes, neighbour_bytes) = bytes[8 + header_len..].split_at(expected * 4);
        let floats: Vec<f32> = float_bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        let (idf, rest) = floats.split_at(terms);
        let (dense_weights, rest) = rest.split_at(classes * dense_dim);
        let (sparse_weights, bias) = rest.split_at(terms * classes);
        Ok(Self {
            vocabulary: Vocabulary {
                index: header.terms.into_iter().enumerate().map(|(i, t)| (t, i as u32)).collect(),
                idf: idf.to_vec(),
            },
            head: LinearHead {
                classes,
                dense_dim,
                sparse_dim: terms,
                dense_scale: header.dense_scale,
                sparse_scale: header.sparse_scale,
                dense_weights: dense_weights.to_vec(),
                sparse_weights: sparse_weights.to_vec(),
                bias: bias.to_vec(),
            },
            labels: header.labels,
            temperature: header.temperature,
            out_of_scope_threshold: header.out_of_scope_threshold,
            sure_at: header.sure_at,
            neighbours: Neighbours::read(&header.neighbours, neighbour_bytes)?,
        })
    }
}

const FORMAT: u32 = 2;

#[derive(Serialize, Deserialize)]
struct Header {
    format: u32,
    labels: Vec<String>,
    terms: Vec<String>,
    dense_dim: usize,
    dense_scale: f32,
    sparse_scale: f32,
    temperature: f32,
    out_of_scope_threshold: f32,
    /// Absent in files written before the first stage: never sure.
    #[serde(default = "never_sure")]
    sure_at: f32,
    neighbours: NeighbourHeader,
}

fn never_sure() -> f32 {
    NEVER_SURE
}

/// A `sure_at` no calibrated probability reaches.
pub const NEVER_SURE: f32 = 1.01;

/// The share of held-out messages at or above `sure_at` whose top intent is right.
pub const SURE_PRECISION: f32 = 0.985;

/// What the held-out split teaches besides the head.
struct Calibration {
    temperature: f32,
    out_of_scope_threshold: f32,
    sure_at: f32,
}

impl Calibration {
    const NONE: Self = Self { temperature: 1.0, out_of_scope_threshold: 0.0, sure_at: NEVER_SURE };
}

fn features_of(vocabulary: &Vocabulary, example: &LabelledText<'_>) -> Features {
    Features { dense: example.embedding.to_vec(), sparse: vocabulary.features(example.text) }
}

fn calibrated(logits: &[f32], temperature: f32) -> Vec<f32> {
    let mut p: Vec<f32> = logits.iter().map(|v| v / temperature).collect();
    softmax_in_place(&mut p);
    p
}

/// Deterministic pseudo-random choice from a string, so the split is the same on every run.
fn bucket(key: &str, buckets: u64) -> u64 {
    let mut hash: u64 = 0xcbf29ce484222325;
    for b in key.bytes() {
        hash ^= b as u64;
        hash = hash.wrapping_mul(0x100000001b3);
    }
    hash % buckets
}

/// Learns the temperature (on held-out in-scope examples), the out-of-scope threshold (best
/// balance of in-scope accuracy and out-of-scope recall, with whole intents held out) and the
/// bar of sure answers.
fn calibrate(classes: usize, examples: &[LabelledText<'_>], params: &TrainParams) -> Calibration {
    let held_out_class = |label: usize| label % 6 == 3;
    let mut kept_label = vec![usize::MAX; classes];
    let mut next = 0;
    for (label, slot) in kept_label.iter_mut().enumerate() {
        if !held_out_class(label) {
            *slot = next;
            next += 1;
        }
    }
    let mut train = Vec::new();
    let mut in_scope = Vec::new();
    let mut out_of_scope = Vec::new();
    for (i, example) in examples.iter().enumerate() {
        if kept_label[example.label] == usize::MAX {
            out_of_scope.push(example);
        } else if bucket(&format!("{i}{}", example.text), 5) == 0 {
            in_scope.push(example);
        } else {
            train.push(example);
        }
    }
    if next < 2 || in_scope.is_empty() || train.is_empty() {
        return Calibration::NONE;
    }
    let texts: Vec<&str> = train.iter().map(|e| e.text).collect();
    let vocabulary = Vocabulary::fit(&texts);
    let features: Vec<Features> = train.iter().map(|e| features_of(&vocabulary, e)).collect();
    let training: Vec<(&Features, usize)> =
        features.iter().zip(train.iter().map(|e| kept_label[e.label])).collect();
    let head = LinearHead::train(&training, next, train[0].embedding.len(), vocabulary.len(), params);

    let logits_of = |e: &LabelledText<'_>| head.logits(&features_of(&vocabulary, e));
    let in_scope_logits: Vec<(Vec<f32>, usize)> =
        in_scope.iter().map(|e| (logits_of(e), kept_label[e.label])).collect();
    let out_logits: Vec<Vec<f32>> = out_of_scope.iter().map(|e| logits_of(e)).collect();

    let temperature = (1..=60)
        .map(|step| step as f32 * 0.05)
        .map(|t| (t, negative_log_likelihood(&in_scope_logits, t)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(1.0, |(t, _)| t);

    // The head alone: the neighbours only move the choice, and a probability they move is
    // never above the head's best (so the bars learnt here hold at least as firmly).
    let top = |logits: &[f32]| {
        let p = calibrated(logits, temperature);
        p.iter().copied().enumerate().max_by(|a, b| a.1.total_cmp(&b.1)).unwrap_or((0, 0.0))
    };
    let in_scope_top: Vec<(bool, f32)> = in_scope_logits
        .iter()
        .map(|(l, label)| {
            let (best, prob) = top(l);
            (best == *label, prob)
        })
        .collect();
    let out_top: Vec<f32> = out_logits.iter().map(|l| top(l).1).collect();
    let threshold = best_threshold(&in_scope_top, &out_top);
    let sure_at = sure_threshold(&in_scope_top, SURE_PRECISION);
    Calibration { temperature, out_of_scope_threshold: threshold, sure_at }
}

/// The lowest probability from which at least `precision` of the held-out messages at or above
/// it were answered right, with at least 20 such messages; `NEVER_SURE` when there is none.
pub fn sure_threshold(in_scope: &[(bool, f32)], precision: f32) -> f32 {
    (50..100)
        .map(|step| step as f32 / 100.0)
        .find(|&t| {
            let right = in_scope.iter().filter(|(ok, p)| *ok && *p >= t).count();
            let taken = in_scope.iter().filter(|(_, p)| *p >= t).count();
            taken >= 20 && right as f32 >= precision * taken as f32
        })
        .unwrap_or(NEVER_SURE)
}

fn negative_log_likelihood(logits: &[(Vec<f32>, usize)], temperature: f32) -> f32 {
    logits
        .iter()
        .map(|(l, label)| {
            let mut p: Vec<f32> = l.iter().map(|v| v / temperature).collect();
            softmax_in_place(&mut p);
            -(p[*label].max(1e-12)).ln()
        })
        .sum::<f32>()
}

/// The threshold that rejects the most out-of-scope messages while keeping at least 95 % of the
/// in-scope accuracy (correct and accepted) that no threshold would give. Ties go to the lower
/// threshold. With no out-of-scope data, the one that keeps 97 % of correct answers.
pub fn best_threshold(in_scope: &[(bool, f32)], out_of_scope: &[f32]) -> f32 {
    let accuracy_at = |t: f32| in_scope.iter().filter(|(ok, p)| *ok && *p >= t).count() as f32 / in_scope.len().max(1) as f32;
    if out_of_scope.is_empty() {
        let mut correct: Vec<f32> = in_scope.iter().filter(|(ok, _)| *ok).map(|(_, p)| *p).collect();
        correct.sort_by(f32::total_cmp);
        return correct.get(correct.len() * 3 / 100).copied().unwrap_or(0.0);
    }
    let floor = accuracy_at(0.0) * 0.95;
    let mut best = (0.0f32, f32::MIN);
    for step in 0..100 {
        let t = step as f32 / 100.0;
        if accuracy_at(t) < floor {
            break;
        }
        let recall = out_of_scope.iter().filter(|p| **p < t).count() as f32 / out_of_scope.len() as f32;
        if recall > best.1 {
            best = (t, recall);
        }
    }
    best.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::neighbours::NeighbourSettings;

    /// One example of class 1 sits among class 0's: the head calls its place 0, the nearest
    /// example (itself) says 1. With the whole vote the example's own class is chosen, at the
    /// head's (low) probability of it; a saved model loads with its vote.
    #[test]
    fn the_nearest_examples_move_the_choice_not_the_confidence_and_are_saved() {
        let place = |class: usize, i: usize| -> Vec<f32> { (0..4).map(|d| if d == class { 1.0 } else { (i % 3) as f32 * 0.05 }).collect() };
        let mut embeddings: Vec<(Vec<f32>, usize)> = (0..40).map(|i| (place(i % 4, i), i % 4)).collect();
        let odd_one = vec![0.97, 0.2, 0.0, 0.0];
        embeddings.push((odd_one.clone(), 1));
        let examples: Vec<LabelledText<'_>> = embeddings.iter().map(|(e, label)| LabelledText { text: "same words", embedding: e, label: *label }).collect();
        let labels: Vec<String> = (0..4).map(|i| format!("intent{i}")).collect();
        let params = TrainParams { neighbours: NeighbourSettings { k: 1, weight: 1.0, temperature: 0.01 }, ..TrainParams::default() };
        let model = IntentModel::train(labels.clone(), &examples, &params);
        let plain = IntentModel::train(labels, &examples, &params.without_neighbours());
        assert_eq!(plain.rank("same words", &odd_one)[0].0, 0, "the head alone calls it 0");
        let (choice, confidence) = model.rank("same words", &odd_one)[0];
        let head_probability = plain.rank("same words", &odd_one).iter().find(|(c, _)| *c == 1).expect("ranked").1;
        assert_eq!((choice, confidence), (1, head_probability));

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("head.bin");
        model.save(&file).unwrap();
        let loaded = IntentModel::load(&file).unwrap();
        assert_eq!(loaded, model);
        assert_eq!(loaded.rank("same words", &odd_one)[0].0, 1);
    }

    #[test]
    fn the_threshold_keeps_in_scope_accuracy_and_rejects_what_it_can() {
        // 20 correct answers at 0.5..0.99, out-of-scope messages at 0.2..0.6.
        let in_scope: Vec<(bool, f32)> = (0..20).map(|i| (true, 0.5 + i as f32 * 0.025)).collect();
        let out: Vec<f32> = (0..10).map(|i| 0.2 + i as f32 * 0.04).collect();
        let t = best_threshold(&in_scope, &out);
        // 0.49 already rejects 8 of 10 out-of-scope messages and keeps every correct answer;
        // going higher could only cost correct answers (one of 20 is the most allowed).
        assert!((t - 0.49).abs() < 1e-6, "{t}");
        let wide: Vec<f32> = (0..10).map(|i| 0.2 + i as f32 * 0.034).collect();
        let t = best_threshold(&in_scope, &wide);
        assert!((t - 0.51).abs() < 1e-6, "{t}");
        assert_eq!(best_threshold(&in_scope, &[]), 0.5);
    }

    #[test]
    fn sure_answers_start_where_held_out_answers_were_right_often_enough() {
        // 100 answers at 0.50..0.995: right from 0.70 up, and one wrong one at 0.805.
        let mut in_scope: Vec<(bool, f32)> = (0..100).map(|i| (i >= 40, 0.5 + i as f32 * 0.005)).collect();
        in_scope[61].0 = false;
        let t = sure_threshold(&in_scope, 0.985);
        // Up to 0.80 the wrong one is among at most 60 answers (59 of 60 right is under
        // 98.5 %); from 0.81 all 38 taken are right.
        assert!((t - 0.81).abs() < 1e-6, "{t}");
        assert_eq!(sure_threshold(&in_scope[..10], 0.985), NEVER_SURE, "too few to tell");
    }
}
