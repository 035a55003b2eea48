//! The judgement: what a support lead would conclude from a message apart from which intent it
//! is — its topic (or that it is off topic), what the customer needs, their tone, how soon a
//! person should look, and whether a person should take it now.
//!
//! Five linear heads share one input: the sentence embedding, a few surface cues (shouting,
//! exclamation marks, the lexicon's tone) and character n-grams, which carry the scripts and
//! languages an English encoder blurs. They are trained on `nlp/judgement/train.csv` when the
//! classifier loads; that set was written apart from the evaluation set (`nlp/eval/`).

use crate::encoder::{EncoderError, SentenceEncoder};
use crate::head::{softmax_in_place, Features, LinearHead, TrainParams, Vocabulary};
use crate::neighbours::{NeighbourHeader, NeighbourSettings, Neighbours};
use crate::judge::Tone;
use crate::signals;
use crate::EmbeddingCache;
use std::path::Path;
use switchboard_models::{Category, Need, Priority, Urgency};

/// The built-in training set.
pub const TRAINING_SET: &str = include_str!("../judgement/train.csv");

/// The label for a message that is no support request for the business.
const OFF_TOPIC: &str = "oos";

/// One labelled training message.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainingRow {
    pub text: String,
    /// None: off topic.
    pub category: Option<Category>,
    pub need: Need,
    pub escalate: bool,
    pub priority: Priority,
    pub tone: Tone,
    /// The part of the set the row was written in (its id's letters: one writer each), or empty
    /// without an `id` column. Cross-validation by writer keeps each part on one side.
    pub writer: String,
}

/// Reads a training CSV with the columns `text, category, need, escalate_now, priority,
/// sentiment` (others are ignored). A bad value is an error naming its row and the choices.
pub fn read_training(csv_text: &str) -> Result<Vec<TrainingRow>, String> {
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let headers = reader.headers().map_err(|e| e.to_string())?.clone();
    let column = |name: &str| headers.iter().position(|h| h == name).ok_or_else(|| format!("no `{name}` column"));
    let at = [column("text")?, column("category")?, column("need")?, column("escalate_now")?, column("priority")?, column("sentiment")?];
    let id_column = headers.iter().position(|h| h == "id");
    let mut rows = Vec::new();
    for (index, record) in reader.records().enumerate() {
        let row = index + 2;
        let record = record.map_err(|e| format!("row {row}: {e}"))?;
        let field = |i: usize| record.get(at[i]).unwrap_or("").trim();
        let category = match field(1) {
            OFF_TOPIC => None,
            other => Some(other.parse::<Category>().map_err(|e| format!("row {row}: {e} or {OFF_TOPIC}"))?),
        };
        let escalate = match field(3) {
            "true" => true,
            "false" => false,
            other => return Err(format!("row {row}: escalate_now `{other}`; expected true or false")),
        };
        rows.push(TrainingRow {
            text: field(0).to_string(),
            category,
            need: field(2).parse().map_err(|e| format!("row {row}: {e}"))?,
            escalate,
            priority: field(4).parse().map_err(|e| format!("row {row}: {e}"))?,
            tone: Tone::parse(field(5)).ok_or_else(|| format!("row {row}: sentiment `{}`; expected negative, neutral or positive", field(5)))?,
            writer: id_column.and_then(|i| record.get(i)).unwrap_or("").chars().take_while(|c| c.is_alphabetic()).collect(),
        });
    }
    Ok(rows)
}

/// What the heads concluded about one message.
#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    /// None: off topic.
    pub category: Option<Category>,
    /// Probability of the chosen category (or of off topic).
    pub category_confidence: f32,
    pub need: Need,
    /// P(positive) − P(negative), -1 ..= 1.
    pub sentiment: f32,
    pub priority: Priority,
    /// Probability that a person should take this now.
    pub escalate: f32,
}

impl Judged {
    /// The urgency the priority implies.
    pub fn urgency(&self) -> Urgency {
        match self.priority {
            Priority::Urgent => Urgency::Critical,
            Priority::High => Urgency::Elevated,
            Priority::Medium | Priority::Low => Urgency::None,
        }
    }
}

pub struct JudgementModel {
    vocabulary: Vocabulary,
    category: LinearHead,
    need: LinearHead,
    tone: LinearHead,
    priority: LinearHead,
    escalate: LinearHead,
    /// Votes on the category only: blended into the other heads too, it cost the tone more
    /// than it gave (BENCHMARKS.md).
    neighbours: Neighbours,
}


/// The categories in head order; the last class is off topic.
fn category_class(category: Option<Category>) -> usize {
    category.map_or(Category::ALL.len(), |c| Category::ALL.iter().position(|x| *x == c).expect("listed"))
}

const TONES: [Tone; 3] = [Tone::Negative, Tone::Neutral, Tone::Positive];

const FORMAT: u32 = 2;

/// What a saved judgement file starts with.
#[derive(serde::Serialize, serde::Deserialize)]
struct Header {
    format: u32,
    terms: Vec<String>,
    dense_dim: usize,
    dense_scale: f32,
    sparse_scale: f32,
    classes: [usize; 5],
    neighbours: NeighbourHeader,
}

/// Classes of the five judgements, in this order: category (and off topic), need, tone,
/// priority, escalate.
const HEAD_CLASSES: [usize; 5] = [Category::ALL.len() + 1, Need::ALL.len(), TONES.len(), Priority::ALL.len(), 2];

fn labels_of(row: &TrainingRow) -> [usize; 5] {
    [
        category_class(row.category),
        Need::ALL.iter().position(|n| *n == row.need).expect("listed"),
        TONES.iter().position(|t| *t == row.tone).expect("listed"),
        Priority::ALL.iter().position(|p| *p == row.priority).expect("listed"),
        usize::from(row.escalate),
    ]
}

/// The judgement's settings, chosen by cross-validation on the training set (`switchboard
/// nlu cross-validate`; see BENCHMARKS.md), never on the evaluation set: the intent head's,
/// with the sentence embedding weighted half as much against the character n-grams (the
/// category rose by 0.4–0.6 points over 5 and 10 folds, falling steadily at weights above 2);
/// the category's vote blended with its ten nearest training messages' (86.6 → 87.2 % over 10
/// folds).
pub fn judgement_params() -> TrainParams {
    TrainParams {
        dense_scale: 2.0,
        neighbours: NeighbourSettings { k: 10, weight: 0.3, temperature: 0.1 },
        ..TrainParams::default()
    }
}

/// The first stage's judgement (on static token vectors): the same heads, without the
/// neighbours' vote, which was chosen on the sentence encoders' vectors and took the shed
/// messages' category from 77.2 to 73.9 % on the static ones (BENCHMARKS.md).
pub fn first_stage_judgement_params() -> TrainParams {
    judgement_params().without_neighbours()
}

/// Terms seen in fewer training messages than this are dropped: they only memorise.
const MIN_DOCUMENT_FREQUENCY: u32 = 2;

impl JudgementModel {
    /// Trains the heads on `rows` with their embeddings (same order).
    pub fn train(rows: &[TrainingRow], embeddings: &[Vec<f32>], params: &TrainParams) -> Self {
        let term_lists: Vec<Vec<String>> = rows.iter().map(|r| char_terms(&r.text)).collect();
        let vocabulary = Vocabulary::fit_terms(&term_lists, MIN_DOCUMENT_FREQUENCY);
        let features: Vec<Features> =
            rows.iter().zip(embeddings).map(|(row, embedding)| features(&vocabulary, &row.text, embedding)).collect();
        let dense_dim = features.first().map_or(0, |f| f.dense.len());
        let head = |classes: usize, label: &dyn Fn(&TrainingRow) -> usize| {
            let examples: Vec<(&Features, usize)> = features.iter().zip(rows).map(|(f, row)| (f, label(row))).collect();
            LinearHead::train(&examples, classes, dense_dim, vocabulary.len(), params)
        };
        let [category, need, tone, priority, escalate] = std::array::from_fn(|h| head(HEAD_CLASSES[h], &|r| labels_of(r)[h]));
        let categories = rows.iter().map(|r| category_class(r.category));
        let neighbours = Neighbours::new(params.neighbours, embeddings.iter().map(Vec::as_slice).zip(categories));
        Self { vocabulary, category, need, tone, priority, escalate, neighbours }
    }

    /// Trains on the built-in set, encoding its messages through `cache` (so a restart with the
    /// same encoder encodes nothing).
    pub fn train_built_in(encoder: &dyn SentenceEncoder, cache_dir: Option<&Path>, params: &TrainParams) -> Result<Self, EncoderError> {
        let (rows, embeddings) = built_in_training(encoder, cache_dir)?;
        Ok(Self::train(&rows, &embeddings, params))
    }

    /// The built-in heads from `cache_dir` when they were trained there for this encoder,
    /// training set and settings; otherwise trained (and kept there).
    pub fn load_or_train_built_in(encoder: &dyn SentenceEncoder, cache_dir: Option<&Path>, params: &TrainParams) -> Result<Self, EncoderError> {
        use sha2::{Digest, Sha256};
        let key = Sha256::digest(format!("{}|{}|{params:?}", TRAINING_SET, encoder.id()));
        let file = cache_dir.map(|dir| dir.join(format!("judgement-{}.bin", &hex::encode(key)[..24])));
        if let Some(model) = file.as_deref().and_then(|f| Self::load(f).ok()) {
            return Ok(model);
        }
        // Said before as well as after: a first start is otherwise silent for a minute.
        tracing::info!(encoder = encoder.id(), "training the judgement on its built-in training set: once for this set and encoder, up to a minute on two cores");
        let started = std::time::Instant::now();
        let model = Self::train_built_in(encoder, cache_dir, params)?;
        tracing::info!(seconds = started.elapsed().as_secs(), "trained the judgement on its built-in training set (kept in nlp.cache_dir: later starts load it)");
        if let (Some(file), Some(dir)) = (&file, cache_dir) {
            if let Err(e) = std::fs::create_dir_all(dir).and_then(|_| model.save(file)) {
                tracing::warn!(file = %file.display(), error = %e, "cannot cache the trained judgement");
            }
        }
        Ok(model)
    }

    fn heads(&self) -> [&LinearHead; 5] {
        [&self.category, &self.need, &self.tone, &self.priority, &self.escalate]
    }

    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        use std::io::Write;
        let mut terms: Vec<(&String, &u32)> = self.vocabulary.index.iter().collect();
        terms.sort_by_key(|(_, i)| **i);
        let header = Header {
            format: FORMAT,
            terms: terms.into_iter().map(|(t, _)| t.clone()).collect(),
            dense_dim: self.category.dense_dim,
            dense_scale: self.category.dense_scale,
            sparse_scale: self.category.sparse_scale,
            classes: self.heads().map(|h| h.classes),
            neighbours: self.neighbours.header(),
        };
        // A name of our own: another process may be writing the same file.
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let partial = path.with_extension(format!("partial-{}-{nanos}", std::process::id()));
        {
            let mut file = std::io::BufWriter::new(std::fs::File::create(&partial)?);
            let header = serde_json::to_vec(&header)?;
            file.write_all(&(header.len() as u64).to_le_bytes())?;
            file.write_all(&header)?;
            let mut floats: Vec<&[f32]> = vec![&self.vocabulary.idf];
            for head in self.heads() {
                floats.extend([head.dense_weights.as_slice(), head.sparse_weights.as_slice(), head.bias.as_slice()]);
            }
            for v in floats.into_iter().flatten() {
                file.write_all(&v.to_le_bytes())?;
            }
            self.neighbours.write(&mut file)?;
            file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        }
        std::fs::rename(partial, path)
    }

    pub fn load(path: &Path) -> std::io::Result<Self> {
        let invalid = |reason: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, reason.to_string());
        let bytes = std::fs::read(path)?;
        let header_len = u64::from_le_bytes(bytes.get(..8).ok_or_else(|| invalid("truncated"))?.try_into().expect("8 bytes")) as usize;
        let header: Header = serde_json::from_slice(bytes.get(8..8 + header_len).ok_or_else(|| invalid("truncated"))?)?;
        if header.format != FORMAT || header.classes != HEAD_CLASSES {
            return Err(invalid("written by another version"));
        }
        let terms = header.terms.len();
        let float_count = terms + header.classes.iter().map(|c| c * header.dense_dim + terms * c + c).sum::<usize>();
        if (bytes.len() - 8 - header_len) != float_count * 4 + header.neighbours.file_len() {
            return Err(invalid("size does not match its header"));
        }
        let (float_bytes, neighbour_bytes) = bytes[8 + header_len..].split_at(float_count * 4);
        let mut floats = float_bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")));
        let mut take = |n: usize| floats.by_ref().take(n).collect::<Vec<f32>>();
        let idf = take(terms);
        let mut heads = header.classes.map(|classes| LinearHead {
            classes,
            dense_dim: header.dense_dim,
            sparse_dim: terms,
            dense_scale: header.dense_scale,
            sparse_scale: header.sparse_scale,
            dense_weights: Vec::new(),
            sparse_weights: Vec::new(),
            bias: Vec::new(),
        });
        for head in &mut heads {
            head.dense_weights = take(head.classes * header.dense_dim);
            head.sparse_weights = take(terms * head.classes);
            head.bias = take(head.classes);
        }
        let [category, need, tone, priority, escalate] = heads;
        let neighbours = Neighbours::read(&header.neighbours, neighbour_bytes)?;
        let index = header.terms.into_iter().enumerate().map(|(i, t)| (t, i as u32)).collect();
        Ok(Self { vocabulary: Vocabulary { index, idf }, category, need, tone, priority, escalate, neighbours })
    }

    pub fn judge(&self, text: &str, embedding: &[f32]) -> Judged {
        let x = features(&self.vocabulary, text, embedding);
        let probabilities = |head: &LinearHead| {
            let mut p = head.logits(&x);
            softmax_in_place(&mut p);
            p
        };
        let best = |p: &[f32]| p.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i);
        let [mut category, need, tone, priority, escalate] = self.heads().map(probabilities);
        // Blended: the vote is evidence for the category, and off topic is one of its classes.
        self.neighbours.blend(&mut category, embedding);
        let category_at = best(&category);
        Judged {
            category: Category::ALL.get(category_at).copied(),
            category_confidence: category[category_at],
            need: Need::ALL[best(&need)],
            sentiment: tone[2] - tone[0],
            priority: Priority::ALL[best(&priority)],
            escalate: escalation(escalate[1], &priority, &need),
        }
    }
}

/// Whether a person should take over now is, by the labelling rules, nearly the same decision
/// as "priority high or urgent, or a request for a person": the three heads vote together.
fn escalation(escalate: f32, priority: &[f32], need: &[f32]) -> f32 {
    let at = |p: Priority| Priority::ALL.iter().position(|x| *x == p).expect("listed");
    let pressing = priority[at(Priority::Urgent)] + priority[at(Priority::High)];
    let person = need[Need::ALL.iter().position(|n| *n == Need::HumanRequest).expect("listed")];
    0.5 * escalate + 0.5 * pressing.max(person)
}

/// How well the heads generalise within a training set: each of `folds` parts judged by heads
/// trained on the others. For choosing training settings without touching the evaluation set.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CrossValidation {
    pub rows: usize,
    pub folds: usize,
    pub category_accuracy: f32,
    pub need_accuracy: f32,
    pub tone_accuracy: f32,
    pub priority_within_one_level: f32,
    /// At the service's default bar (`bot.escalate_at_least` = 0.5).
    pub escalate_f1: f32,
    /// `(bar, F1)` for bars around the default: a bar is chosen here, on the training set,
    /// never on the evaluation set.
    pub escalate_f1_at: Vec<(f32, f32)>,
}

/// Bars the cross-validation scores escalation at.
const ESCALATE_BARS: [f32; 7] = [0.35, 0.40, 0.45, 0.50, 0.55, 0.60, 0.65];

/// Cross-validation on `folds` folds of every `folds`-th row.
pub fn cross_validate(rows: &[TrainingRow], embeddings: &[Vec<f32>], params: &TrainParams, folds: usize) -> CrossValidation {
    let folds = folds.max(2);
    let fold_of: Vec<usize> = (0..rows.len()).map(|i| i % folds).collect();
    cross_validate_in(rows, embeddings, params, &fold_of)
}

/// Folds that keep each writer's rows together (`TrainingRow::writer`), balanced by size: the
/// heads are scored on writers they never saw, as on the evaluation set. Rows written as pairs
/// on one subject otherwise sit on both sides of a fold and flatter the figures.
pub fn folds_by_writer(rows: &[TrainingRow], folds: usize) -> Result<Vec<usize>, String> {
    let folds = folds.max(2);
    let mut sizes: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for row in rows {
        *sizes.entry(row.writer.as_str()).or_default() += 1;
    }
    let mut writers: Vec<(&str, usize)> = sizes.into_iter().collect();
    writers.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let mut fold_sizes = vec![0usize; folds];
    let mut fold_of_writer = std::collections::HashMap::new();
    for (writer, size) in writers {
        let smallest = (0..folds).min_by_key(|f| fold_sizes[*f]).expect("at least two folds");
        fold_sizes[smallest] += size;
        fold_of_writer.insert(writer, smallest);
    }
    if fold_of_writer.len() < 2 {
        return Err("cross-validation by writer needs rows from two writers or more: give the rows ids whose letters name the part \
             each was written in (a1, a2, b1, ...)"
            .into());
    }
    Ok(rows.iter().map(|row| fold_of_writer[row.writer.as_str()]).collect())
}

/// Cross-validation on the given folds (`fold_of[i]`: the fold of row `i`).
pub fn cross_validate_in(rows: &[TrainingRow], embeddings: &[Vec<f32>], params: &TrainParams, fold_of: &[usize]) -> CrossValidation {
    assert_eq!(fold_of.len(), rows.len(), "a fold for every row");
    let folds = fold_of.iter().max().map_or(0, |last| last + 1);
    let mut judged: Vec<Option<Judged>> = vec![None; rows.len()];
    for fold in 0..folds {
        let (train_rows, train_embeddings): (Vec<TrainingRow>, Vec<Vec<f32>>) = rows
            .iter()
            .zip(embeddings)
            .enumerate()
            .filter(|(i, _)| fold_of[*i] != fold)
            .map(|(_, (r, e))| (r.clone(), e.clone()))
            .unzip();
        if train_rows.is_empty() || train_rows.len() == rows.len() {
            continue;
        }
        let model = JudgementModel::train(&train_rows, &train_embeddings, params);
        for (i, (row, embedding)) in rows.iter().zip(embeddings).enumerate().filter(|(i, _)| fold_of[*i] == fold) {
            judged[i] = Some(model.judge(&row.text, embedding));
        }
    }
    let judged: Vec<Judged> = judged.into_iter().map(|j| j.expect("every row is in one fold, and every fold leaves rows to train on")).collect();
    let share = |hits: usize| hits as f32 / rows.len().max(1) as f32;
    let level = |p: Priority| Priority::ALL.iter().position(|x| *x == p).expect("listed") as i32;
    let f1_at = |bar: f32| {
        let (mut tp, mut fp, mut fn_) = (0usize, 0usize, 0usize);
        for (row, j) in rows.iter().zip(&judged) {
            match (row.escalate, j.escalate >= bar) {
                (true, true) => tp += 1,
                (false, true) => fp += 1,
                (true, false) => fn_ += 1,
                _ => {}
            }
        }
        if tp == 0 { 0.0 } else { 2.0 * tp as f32 / (2 * tp + fp + fn_) as f32 }
    };
    CrossValidation {
        rows: rows.len(),
        folds,
        category_accuracy: share(rows.iter().zip(&judged).filter(|(r, j)| r.category == j.category).count()),
        need_accuracy: share(rows.iter().zip(&judged).filter(|(r, j)| r.need == j.need).count()),
        tone_accuracy: share(rows.iter().zip(&judged).filter(|(r, j)| r.tone == Tone::of(j.sentiment)).count()),
        priority_within_one_level: share(rows.iter().zip(&judged).filter(|(r, j)| (level(r.priority) - level(j.priority)).abs() <= 1).count()),
        escalate_f1: f1_at(0.5),
        escalate_f1_at: ESCALATE_BARS.iter().map(|&bar| (bar, f1_at(bar))).collect(),
    }
}

/// The built-in training set and its embeddings, for cross-validation.
pub fn built_in_training(encoder: &dyn SentenceEncoder, cache_dir: Option<&Path>) -> Result<(Vec<TrainingRow>, Vec<Vec<f32>>), EncoderError> {
    let rows = read_training(TRAINING_SET).expect("the built-in training set is valid (tested)");
    let texts: Vec<&str> = rows.iter().map(|r| r.text.as_str()).collect();
    let mut cache = EmbeddingCache::open(cache_dir, encoder);
    let embeddings = cache.embed_all(encoder, &texts, &mut |_| {})?;
    Ok((rows, embeddings))
}

/// The embedding joined with surface cues a frozen embedding misses.
fn features(vocabulary: &Vocabulary, text: &str, embedding: &[f32]) -> Features {
    let mut dense = embedding.to_vec();
    dense.extend(surface_cues(text));
    Features { dense, sparse: vocabulary.features_visiting(|visit| each_char_term(text, visit)) }
}

/// Shouting, exclamation and question marks, the lexicon's tone and urgency words, length.
fn surface_cues(text: &str) -> [f32; 9] {
    let letters = text.chars().filter(|c| c.is_alphabetic()).count();
    let upper = text.chars().filter(|c| c.is_uppercase()).count();
    let caps = if letters >= 8 { upper as f32 / letters as f32 } else { 0.0 };
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    let urgency = signals::urgency(text);
    [
        caps,
        flag(caps >= 0.7),
        text.matches('!').count().min(3) as f32 / 3.0,
        flag(text.contains('?') || text.contains('？') || text.contains('؟')),
        flag(text.contains("!!") || text.contains("??")),
        signals::sentiment(text),
        flag(urgency == Urgency::Critical),
        flag(urgency == Urgency::Elevated),
        (1.0 + text.chars().count() as f32).ln() / 7.0,
    ]
}

/// Words, and character 2- to 4-grams of each word with its boundaries: they match across
/// inflections, typos and scripts written without spaces.
pub fn char_terms(text: &str) -> Vec<String> {
    let mut terms = Vec::new();
    each_char_term(text, &mut |term| terms.push(term.to_string()));
    terms
}

/// Visits what `char_terms` lists, each built in one reused buffer.
fn each_char_term(text: &str, visit: &mut dyn FnMut(&str)) {
    let lower = text.to_lowercase();
    let (mut term, mut chars) = (String::new(), Vec::<char>::new());
    for word in lower.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        term.clear();
        term.push_str("w:");
        term.push_str(word);
        visit(&term);
        chars.clear();
        chars.push('<');
        chars.extend(word.chars());
        chars.push('>');
        let long_word = chars.len() - 2 > 2;
        for n in 2..=4 {
            for gram in chars.windows(n) {
                // "<a" and "a>" say little; longer edges and inner grams say more.
                if n == 2 && (gram[0] == '<' || gram[1] == '>') && long_word {
                    continue;
                }
                term.clear();
                term.extend(gram);
                visit(&term);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_training_set_is_valid_and_covers_every_label() {
        let rows = read_training(TRAINING_SET).expect("valid");
        assert!(rows.len() >= 1000, "{} rows", rows.len());
        for need in Need::ALL {
            assert!(rows.iter().filter(|r| r.need == *need).count() >= 20, "need {need:?}");
        }
        for category in Category::ALL.iter().map(|c| Some(*c)).chain([None]) {
            assert!(rows.iter().filter(|r| r.category == category).count() >= 30, "category {category:?}");
        }
        for priority in Priority::ALL {
            assert!(rows.iter().filter(|r| r.priority == *priority).count() >= 50, "priority {priority:?}");
        }
        assert!(rows.iter().all(|r| r.priority != Priority::Urgent || r.escalate), "every urgent row escalates");
    }

    /// Cross-validation scores escalation at each bar, the default's figure among them; with an
    /// embedding that tells escalations apart, every bar near the default finds them.
    #[test]
    fn cross_validation_scores_escalation_at_each_bar() {
        let rows: Vec<TrainingRow> = read_training(TRAINING_SET).expect("valid").into_iter().step_by(10).collect();
        let embeddings: Vec<Vec<f32>> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| (0..384).map(|d| if d == 0 { if r.escalate { 1.0 } else { -1.0 } } else { ((i * 31 + d * 7) % 13) as f32 / 130.0 }).collect())
            .collect();
        let report = cross_validate(&rows, &embeddings, &TrainParams::default().without_neighbours(), 3);
        let bars: Vec<f32> = report.escalate_f1_at.iter().map(|(bar, _)| *bar).collect();
        assert_eq!(bars, ESCALATE_BARS);
        let at_default = report.escalate_f1_at.iter().find(|(bar, _)| *bar == 0.5).expect("the default bar").1;
        assert_eq!(at_default, report.escalate_f1);
        assert!(report.escalate_f1_at.iter().all(|(_, f1)| (0.0..=1.0).contains(f1)));
        assert!(report.escalate_f1 > 0.8, "{report:?}");
    }

    /// Each writer's rows land in one fold, the folds as even as whole parts allow, and every
    /// part of the built-in set is a writer.
    #[test]
    fn folds_by_writer_keep_each_writers_rows_together() {
        let rows = read_training(TRAINING_SET).expect("valid");
        let fold_of = folds_by_writer(&rows, 5).expect("many writers");
        let mut folds_of_writer: std::collections::HashMap<&str, std::collections::HashSet<usize>> = Default::default();
        for (row, fold) in rows.iter().zip(&fold_of) {
            assert!(!row.writer.is_empty(), "a row without a part: {}", row.text);
            folds_of_writer.entry(row.writer.as_str()).or_default().insert(*fold);
        }
        assert!(folds_of_writer.len() >= 10, "{} writers", folds_of_writer.len());
        assert!(folds_of_writer.values().all(|folds| folds.len() == 1), "a writer split across folds");
        let sizes: Vec<usize> = (0..5).map(|f| fold_of.iter().filter(|x| **x == f).count()).collect();
        let largest_part = folds_of_writer.keys().map(|w| rows.iter().filter(|r| r.writer == *w).count()).max().unwrap();
        assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= largest_part, "{sizes:?}");
        let one_writer: Vec<TrainingRow> = rows.iter().take(20).map(|r| TrainingRow { writer: String::new(), ..r.clone() }).collect();
        assert!(folds_by_writer(&one_writer, 5).unwrap_err().contains("two writers"));
    }

    /// The evaluation set stays unseen: no training message equals one of its messages or
    /// shares half its character 4-grams with one (what a light rewording keeps).
    #[test]
    fn no_training_message_is_a_near_copy_of_an_evaluation_message() {
        use std::collections::HashSet;
        let normal = |t: &str| t.to_lowercase().split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ");
        let grams = |t: &str| {
            let chars: Vec<char> = normal(t).chars().collect();
            chars.windows(4.min(chars.len().max(1))).map(|w| w.iter().collect::<String>()).collect::<HashSet<String>>()
        };
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("eval/support.csv");
        let evaluation: Vec<(String, HashSet<String>)> =
            crate::judge::read_cases(&path).expect("the evaluation set reads").iter().map(|c| (normal(&c.text), grams(&c.text))).collect();
        let mut near = Vec::new();
        for row in read_training(TRAINING_SET).expect("valid") {
            let (text, mine) = (normal(&row.text), grams(&row.text));
            for (other_text, theirs) in &evaluation {
                let (small, large) = (mine.len().min(theirs.len()), mine.len().max(theirs.len()));
                if text == *other_text || (small * 2 >= large && small > 0 && {
                    let shared = mine.intersection(theirs).count();
                    shared * 2 >= mine.len() + theirs.len() - shared
                }) {
                    near.push(row.text.clone());
                    break;
                }
            }
        }
        assert!(near.is_empty(), "training messages too close to evaluation ones: {near:?}");
    }

    #[test]
    fn saved_heads_load_and_judge_the_same() {
        let rows = read_training(TRAINING_SET).expect("valid");
        let rows = &rows[..200];
        // Stand-in embeddings: the round trip is about the file, not the vectors.
        let embeddings: Vec<Vec<f32>> = rows.iter().enumerate().map(|(i, _)| (0..8).map(|d| ((i * 7 + d) % 5) as f32 / 5.0).collect()).collect();
        let neighbours = NeighbourSettings { k: 5, weight: 0.3, temperature: 0.1 };
        let params = TrainParams { epochs: 2, min_steps: 10, neighbours, ..TrainParams::default() };
        let model = JudgementModel::train(rows, &embeddings, &params);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("judgement.bin");
        model.save(&file).unwrap();
        let loaded = JudgementModel::load(&file).unwrap();
        for (row, embedding) in rows.iter().zip(&embeddings).take(20) {
            assert_eq!(loaded.judge(&row.text, embedding), model.judge(&row.text, embedding));
        }
        std::fs::write(&file, b"broken").unwrap();
        assert!(JudgementModel::load(&file).is_err());
    }

    /// Letter counts as a stand-in sentence encoder: the cache is about files, not vectors.
    struct LetterCounts;

    impl SentenceEncoder for LetterCounts {
        fn id(&self) -> &str {
            "letter-counts"
        }
        fn dimension(&self) -> usize {
            26
        }
        fn encode(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EncoderError> {
            Ok(texts
                .iter()
                .map(|text| {
                    let mut counts = vec![0.01f32; 26];
                    text.bytes().filter(u8::is_ascii_lowercase).for_each(|b| counts[usize::from(b - b'a')] += 1.0);
                    let norm = counts.iter().map(|c| c * c).sum::<f32>().sqrt();
                    counts.into_iter().map(|c| c / norm).collect()
                })
                .collect())
        }
    }

    /// Heads trained once are kept for their encoder and settings: the next start loads them
    /// (and judges the same); other settings train and keep heads of their own.
    #[test]
    fn trained_heads_are_kept_for_their_encoder_and_settings() {
        let dir = tempfile::tempdir().unwrap();
        let kept = || std::fs::read_dir(dir.path()).unwrap().filter_map(Result::ok).filter(|f| f.file_name().to_string_lossy().starts_with("judgement-")).count();
        let params = TrainParams { epochs: 1, min_steps: 1, ..first_stage_judgement_params() };
        let trained = JudgementModel::load_or_train_built_in(&LetterCounts, Some(dir.path()), &params).expect("trains");
        assert_eq!(kept(), 1);
        let loaded = JudgementModel::load_or_train_built_in(&LetterCounts, Some(dir.path()), &params).expect("loads");
        assert_eq!(kept(), 1, "loaded, not trained again");
        let text = "my card was charged twice";
        let embedding = LetterCounts.encode(&[text]).unwrap().remove(0);
        assert_eq!(loaded.judge(text, &embedding), trained.judge(text, &embedding));
        JudgementModel::load_or_train_built_in(&LetterCounts, Some(dir.path()), &TrainParams { epochs: 2, ..params }).expect("trains");
        assert_eq!(kept(), 2, "other settings keep heads of their own");
    }

    /// With the whole vote theirs, the nearest training message decides the category: a
    /// training message is judged with its own, whatever the head learnt.
    #[test]
    fn the_nearest_training_messages_vote_on_the_category() {
        let rows: Vec<TrainingRow> = read_training(TRAINING_SET).expect("valid").into_iter().step_by(50).collect();
        let embeddings: Vec<Vec<f32>> = (0..rows.len()).map(|i| (0..rows.len()).map(|d| if d == i { 1.0 } else { 0.01 }).collect()).collect();
        let neighbours = NeighbourSettings { k: 3, weight: 1.0, temperature: 0.01 };
        let params = TrainParams { epochs: 1, min_steps: 1, neighbours, ..TrainParams::default() };
        let model = JudgementModel::train(&rows, &embeddings, &params);
        for (row, embedding) in rows.iter().zip(&embeddings) {
            assert_eq!(model.judge(&row.text, embedding).category, row.category, "{}", row.text);
        }
        let without = JudgementModel::train(&rows, &embeddings, &params.without_neighbours());
        let differs = rows.iter().zip(&embeddings).filter(|(row, e)| without.judge(&row.text, e).category != row.category).count();
        assert!(differs > 0, "one pass of the heads alone already fits every row; the test shows nothing");
    }

    #[test]
    fn bad_labels_name_the_row_and_the_choices() {
        let csv = "text,category,need,escalate_now,priority,sentiment\nhi,general_inquiry,greeting,false,low,neutral\nx,billing,rant,false,low,neutral\n";
        let error = read_training(csv).unwrap_err();
        assert!(error.starts_with("row 3: unknown need `rant`"), "{error}");
        assert!(error.contains("harm_report"), "{error}");
    }

    #[test]
    fn terms_reach_into_words_and_scripts_without_spaces() {
        let terms = char_terms("Rückerstattung 退款");
        assert!(terms.contains(&"w:rückerstattung".to_string()));
        assert!(terms.contains(&"<rüc".to_string()));
        assert!(terms.contains(&"退款".to_string()), "{terms:?}");
    }
}
