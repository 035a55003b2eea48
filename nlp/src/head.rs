//! The intent head: a multinomial logistic regression over the sentence embedding joined with
//! TF-IDF word and word-pair features. The embedding carries meaning; the sparse features carry
//! the exact words ("top up" vs "transfer") that frozen embeddings blur together.

use crate::neighbours::NeighbourSettings;
use std::collections::HashMap;

/// Words and adjacent word pairs of `text`, lowercased.
pub fn terms(text: &str) -> Vec<String> {
    let words: Vec<String> = text
        .split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .map(|w| w.trim_matches('\'').to_lowercase())
        .filter(|w| !w.is_empty())
        .collect();
    let mut terms = words.clone();
    for pair in words.windows(2) {
        terms.push(format!("{} {}", pair[0], pair[1]));
    }
    terms
}

/// The sparse half of the features: a vocabulary learned from the training texts.
#[derive(Debug, Clone, PartialEq)]
pub struct Vocabulary {
    pub index: HashMap<String, u32>,
    pub idf: Vec<f32>,
}

impl Vocabulary {
    pub fn fit(texts: &[&str]) -> Self {
        let term_lists: Vec<Vec<String>> = texts.iter().map(|t| terms(t)).collect();
        Self::fit_terms(&term_lists, 1)
    }

    /// The vocabulary of terms found in at least `min_document_frequency` of the term lists.
    pub fn fit_terms(term_lists: &[Vec<String>], min_document_frequency: u32) -> Self {
        let mut document_frequency: HashMap<&str, u32> = HashMap::new();
        for list in term_lists {
            let mut unique: Vec<&str> = list.iter().map(String::as_str).collect();
            unique.sort_unstable();
            unique.dedup();
            for term in unique {
                *document_frequency.entry(term).or_default() += 1;
            }
        }
        let mut vocabulary: Vec<(&str, u32)> =
            document_frequency.into_iter().filter(|(_, df)| *df >= min_document_frequency).collect();
        vocabulary.sort();
        let documents = term_lists.len() as f32;
        let idf = vocabulary.iter().map(|(_, df)| ((1.0 + documents) / (1.0 + *df as f32)).ln() + 1.0).collect();
        let index = vocabulary.into_iter().enumerate().map(|(i, (term, _))| (term.to_string(), i as u32)).collect();
        Self { index, idf }
    }

    pub fn len(&self) -> usize {
        self.idf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.idf.is_empty()
    }

    /// Sublinear TF-IDF, unit length, of the known terms in `text`.
    pub fn features(&self, text: &str) -> Vec<(u32, f32)> {
        self.features_of_terms(terms(text))
    }

    /// Sublinear TF-IDF, unit length, of the known terms among `terms`.
    pub fn features_of_terms(&self, terms: Vec<String>) -> Vec<(u32, f32)> {
        self.features_visiting(|visit| terms.iter().for_each(|term| visit(term)))
    }

    /// Sublinear TF-IDF, unit length, of the known terms `each` visits (a term may be built in
    /// a buffer reused for the next: nothing is allocated per term).
    pub fn features_visiting(&self, each: impl FnOnce(&mut dyn FnMut(&str))) -> Vec<(u32, f32)> {
        let mut counts: HashMap<u32, f32> = HashMap::new();
        each(&mut |term| {
            if let Some(&i) = self.index.get(term) {
                *counts.entry(i).or_default() += 1.0;
            }
        });
        let mut features: Vec<(u32, f32)> =
            counts.into_iter().map(|(i, tf)| (i, (1.0 + tf.ln()) * self.idf[i as usize])).collect();
        features.sort_by_key(|(i, _)| *i);
        let norm = features.iter().map(|(_, v)| v * v).sum::<f32>().sqrt();
        if norm > 0.0 {
            for (_, v) in &mut features {
                *v /= norm;
            }
        }
        features
    }
}

/// One training or query point.
#[derive(Debug, Clone)]
pub struct Features {
    pub dense: Vec<f32>,
    pub sparse: Vec<(u32, f32)>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainParams {
    /// Passes over the data; few, because stopping early regularises (chosen on a validation
    /// split of BANKING77's training set, see BENCHMARKS.md).
    pub epochs: usize,
    /// Small intent files get more passes, up to this many optimiser steps in all.
    pub min_steps: usize,
    pub batch: usize,
    pub learning_rate: f32,
    /// Decoupled weight decay (AdamW) per step, relative to the learning rate.
    pub weight_decay: f32,
    /// Multiplies the embedding; sparse features have unit length.
    pub dense_scale: f32,
    pub sparse_scale: f32,
    pub seed: u64,
    /// The nearest training messages' vote blended into the head's (kept beside the head by
    /// the models that use it; the head itself ignores it).
    pub neighbours: NeighbourSettings,
}

impl Default for TrainParams {
    fn default() -> Self {
        Self {
            epochs: 10,
            min_steps: 600,
            batch: 32,
            learning_rate: 0.01,
            weight_decay: 1e-4,
            dense_scale: 4.0,
            sparse_scale: 1.0,
            seed: 0x5eed,
            // Chosen on a validation split of BANKING77's training set (BENCHMARKS.md).
            neighbours: NeighbourSettings { k: 5, weight: 0.3, temperature: 0.05 },
        }
    }
}

impl TrainParams {
    /// For the first stage's static vectors: the neighbours' vote was chosen on the sentence
    /// encoder's, and on the static ones it lowered the judgement (BENCHMARKS.md).
    pub fn without_neighbours(self) -> Self {
        Self { neighbours: NeighbourSettings::NONE, ..self }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LinearHead {
    pub classes: usize,
    pub dense_dim: usize,
    pub sparse_dim: usize,
    pub dense_scale: f32,
    pub sparse_scale: f32,
    /// classes × dense_dim, row per class.
    pub dense_weights: Vec<f32>,
    /// sparse_dim × classes, row per term (a term's weights are read together).
    pub sparse_weights: Vec<f32>,
    pub bias: Vec<f32>,
}

impl LinearHead {
    pub fn logits(&self, x: &Features) -> Vec<f32> {
        let mut out = self.bias.clone();
        for (class, logit) in out.iter_mut().enumerate() {
            let row = &self.dense_weights[class * self.dense_dim..(class + 1) * self.dense_dim];
            *logit += dot(row, &x.dense) * self.dense_scale;
        }
        for &(term, value) in &x.sparse {
            let term = term as usize;
            if term >= self.sparse_dim {
                continue;
            }
            let row = &self.sparse_weights[term * self.classes..(term + 1) * self.classes];
            for (logit, w) in out.iter_mut().zip(row) {
                *logit += w * value * self.sparse_scale;
            }
        }
        out
    }

    /// Fits the head to `examples` (features, class) with mini-batch AdamW.
    pub fn train(
        examples: &[(&Features, usize)],
        classes: usize,
        dense_dim: usize,
        sparse_dim: usize,
        params: &TrainParams,
    ) -> Self {
        let mut head = Self {
            classes,
            dense_dim,
            sparse_dim,
            dense_scale: params.dense_scale,
            sparse_scale: params.sparse_scale,
            dense_weights: vec![0.0; classes * dense_dim],
            sparse_weights: vec![0.0; sparse_dim * classes],
            bias: vec![0.0; classes],
        };
        let mut dense_adam = Adam::new(classes * dense_dim);
        let mut sparse_adam = Adam::new(sparse_dim * classes);
        let mut bias_adam = Adam::new(classes);
        let mut dense_grad = vec![0.0f32; classes * dense_dim];
        let mut sparse_grad = vec![0.0f32; sparse_dim * classes];
        let mut touched: Vec<u32> = Vec::new();
        let mut bias_grad = vec![0.0f32; classes];
        let mut order: Vec<usize> = (0..examples.len()).collect();
        let mut rng = params.seed | 1;
        let batches = examples.len().div_ceil(params.batch.max(1)).max(1);
        let epochs = params.epochs.max(params.min_steps.div_ceil(batches));
        let steps_total = epochs * batches;
        let mut step = 0usize;
        for _ in 0..epochs {
            shuffle(&mut order, &mut rng);
            for batch in order.chunks(params.batch.max(1)) {
                dense_grad.iter_mut().for_each(|g| *g = 0.0);
                bias_grad.iter_mut().for_each(|g| *g = 0.0);
                touched.clear();
                let scale = 1.0 / batch.len() as f32;
                for &i in batch {
                    let (x, label) = examples[i];
                    let mut p = head.logits(x);
                    softmax_in_place(&mut p);
                    p[label] -= 1.0;
                    for (class, &error) in p.iter().enumerate() {
                        let error = error * scale;
                        bias_grad[class] += error;
                        let row = &mut dense_grad[class * dense_dim..(class + 1) * dense_dim];
                        axpy(row, &x.dense, error * params.dense_scale);
                    }
                    for &(term, value) in &x.sparse {
                        let term = term as usize;
                        if sparse_grad[term * classes..(term + 1) * classes].iter().all(|g| *g == 0.0) {
                            touched.push(term as u32);
                        }
                        let row = &mut sparse_grad[term * classes..(term + 1) * classes];
                        axpy(row, &p, value * params.sparse_scale * scale);
                    }
                }
                step += 1;
                // Linear decay to a tenth of the rate: large steps early, settling at the end.
                let progress = step as f32 / steps_total as f32;
                let rate = params.learning_rate * (1.0 - 0.9 * progress);
                let adam = AdamStep::new(step, rate, params.weight_decay);
                dense_adam.step_all(&mut head.dense_weights, &dense_grad, adam);
                bias_adam.step_all(&mut head.bias, &bias_grad, AdamStep { decay: 0.0, ..adam });
                touched.sort_unstable();
                touched.dedup();
                for &term in &touched {
                    let range = term as usize * classes..(term as usize + 1) * classes;
                    sparse_adam.step_range(&mut head.sparse_weights, &sparse_grad, range.clone(), adam);
                    sparse_grad[range].iter_mut().for_each(|g| *g = 0.0);
                }
            }
        }
        head
    }
}

pub fn softmax_in_place(values: &mut [f32]) {
    let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in values.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in values.iter_mut() {
        *v /= sum;
    }
}

/// Eight independent sums so the compiler can use vector registers.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (a_chunks, b_chunks) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a_chunks.remainder().iter().zip(b_chunks.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in a_chunks.zip(b_chunks) {
        for lane in 0..8 {
            lanes[lane] += x[lane] * y[lane];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

fn axpy(target: &mut [f32], x: &[f32], factor: f32) {
    for (t, v) in target.iter_mut().zip(x) {
        *t += v * factor;
    }
}

fn shuffle(order: &mut [usize], state: &mut u64) {
    for i in (1..order.len()).rev() {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        order.swap(i, (*state % (i as u64 + 1)) as usize);
    }
}

/// Adam with one step count for all parameters; sparse rows are updated only when touched
/// ("lazy" Adam), which is what keeps training on large vocabularies fast.
struct Adam {
    m: Vec<f32>,
    v: Vec<f32>,
}

/// Bias corrections of one optimiser step, computed once for all parameters.
#[derive(Clone, Copy)]
struct AdamStep {
    rate: f32,
    decay: f32,
    correct_m: f32,
    correct_v: f32,
}

impl AdamStep {
    const B1: f32 = 0.9;
    const B2: f32 = 0.999;

    fn new(step: usize, rate: f32, decay: f32) -> Self {
        let t = step.min(i32::MAX as usize) as i32;
        Self { rate, decay, correct_m: 1.0 / (1.0 - Self::B1.powi(t)), correct_v: 1.0 / (1.0 - Self::B2.powi(t)) }
    }
}

impl Adam {
    fn new(len: usize) -> Self {
        Self { m: vec![0.0; len], v: vec![0.0; len] }
    }

    fn step_all(&mut self, weights: &mut [f32], grad: &[f32], step: AdamStep) {
        self.step_range(weights, grad, 0..weights.len(), step);
    }

    fn step_range(&mut self, weights: &mut [f32], grad: &[f32], range: std::ops::Range<usize>, step: AdamStep) {
        let (m, v, w, g) = (&mut self.m[range.clone()], &mut self.v[range.clone()], &mut weights[range.clone()], &grad[range]);
        for (((m, v), w), g) in m.iter_mut().zip(v.iter_mut()).zip(w.iter_mut()).zip(g) {
            *m = AdamStep::B1 * *m + (1.0 - AdamStep::B1) * g;
            *v = AdamStep::B2 * *v + (1.0 - AdamStep::B2) * g * g;
            let update = (*m * step.correct_m) / ((*v * step.correct_v).sqrt() + 1e-8);
            *w -= step.rate * (update + step.decay * *w);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_are_words_and_pairs() {
        assert_eq!(terms("Top-up didn't work!"), ["top", "up", "didn't", "work", "top up", "up didn't", "didn't work"]);
    }

    #[test]
    fn learns_a_separable_problem() {
        let texts = ["refund my money", "money back please", "reset my password", "forgot password"];
        let vocabulary = Vocabulary::fit(&texts);
        let features: Vec<Features> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| Features { dense: vec![if i < 2 { 1.0 } else { -1.0 }, 0.5], sparse: vocabulary.features(t) })
            .collect();
        let examples: Vec<(&Features, usize)> = features.iter().zip([0, 0, 1, 1]).collect();
        let head = LinearHead::train(&examples, 2, 2, vocabulary.len(), &TrainParams::default());
        let query = Features { dense: vec![0.0, 0.5], sparse: vocabulary.features("forgot password") };
        let mut p = head.logits(&query);
        softmax_in_place(&mut p);
        assert!(p[1] > 0.6, "{p:?}");
    }
}
