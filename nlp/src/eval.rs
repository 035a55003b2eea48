//! `switchboard nlu eval`: how well the encoder + intent head does on a labelled set, how the
//! out-of-scope threshold trades accuracy for rejection, and how fast classification is.

use crate::embedding_cache::EmbeddingCache;
use crate::encoder::{EncoderError, SentenceEncoder};
use crate::head::TrainParams;
use crate::model::{IntentModel, LabelledText, best_threshold};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Instant;

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub text: String,
    pub label: String,
}

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{path}: {reason}")]
    Data { path: String, reason: String },
    #[error(transparent)]
    Encoder(#[from] EncoderError),
}

/// Reads a CSV with a header naming a `text` column and a `label` (or `intent`, or `category`)
/// column, in any order; other columns are ignored.
pub fn read_csv(path: &Path) -> Result<Vec<Sample>, EvalError> {
    let error = |reason: String| EvalError::Data { path: path.display().to_string(), reason };
    let mut reader = csv::Reader::from_path(path).map_err(|e| error(e.to_string()))?;
    let headers = reader.headers().map_err(|e| error(e.to_string()))?.clone();
    let column = |names: &[&str]| {
        names
            .iter()
            .find_map(|name| headers.iter().position(|h| h.trim().eq_ignore_ascii_case(name)))
            .ok_or_else(|| error(format!("no `{}` column; the header must name `text` and `label`", names[0])))
    };
    let (text_at, label_at) = (column(&["text"])?, column(&["label", "intent", "category"])?);
    let mut samples = Vec::new();
    for (row, record) in reader.records().enumerate() {
        let record = record.map_err(|e| error(format!("row {}: {e}", row + 2)))?;
        let (Some(text), Some(label)) = (record.get(text_at), record.get(label_at)) else {
            return Err(error(format!("row {}: missing the text or the label", row + 2)));
        };
        if text.trim().is_empty() || label.trim().is_empty() {
            return Err(error(format!("row {}: empty text or label", row + 2)));
        }
        samples.push(Sample { text: text.trim().to_string(), label: label.trim().to_string() });
    }
    if samples.is_empty() {
        return Err(error("no rows".into()));
    }
    Ok(samples)
}

/// A deterministic stratified split: every fifth sample of each label is for testing. Rows
/// labelled `out_of_scope_label` are never trained on: they all test rejection.
pub fn split(samples: Vec<Sample>, out_of_scope_label: &str) -> (Vec<Sample>, Vec<Sample>) {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for sample in samples {
        if sample.label == out_of_scope_label {
            test.push(sample);
            continue;
        }
        let n = seen.entry(sample.label.clone()).or_default();
        *n += 1;
        if *n % 5 == 0 { test.push(sample) } else { train.push(sample) }
    }
    (train, test)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Embedding,
    Training,
    Latency,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfusedPair {
    pub expected: String,
    pub predicted: String,
    pub count: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct SweepPoint {
    pub threshold: f32,
    /// Share of in-scope test messages classified correctly and above the threshold.
    pub in_scope_accuracy: f32,
    /// Share of out-of-scope test messages (labelled so, or of intents held out of training)
    /// that fall below the threshold.
    pub out_of_scope_recall: f32,
}

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub single_p50_ms: f64,
    pub single_p95_ms: f64,
    pub batch_size: usize,
    pub batch_messages_per_second: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub train_samples: usize,
    pub test_samples: usize,
    pub intents: usize,
    pub accuracy: f32,
    pub macro_f1: f32,
    pub confused_pairs: Vec<ConfusedPair>,
    pub held_out_intents: Vec<String>,
    /// Test rows labelled out of scope, or with a label the training data lack: the model
    /// should reject them.
    pub out_of_scope_test_samples: usize,
    /// The labels of those rows (other than the out-of-scope label itself), with their counts.
    pub untrained_labels: Vec<(String, usize)>,
    /// On the test data, with the held-out intents left out of training: informative only,
    /// nothing is chosen from it.
    pub sweep: Vec<SweepPoint>,
    /// Chosen on a validation split of the training data (a fifth of each kept intent's
    /// examples; the held-out intents' training examples as out of scope), never on the test.
    pub chosen_threshold: f32,
    /// The test figures at that threshold.
    pub chosen: SweepPoint,
    /// The threshold the service itself would set, trained on the same (kept) intents.
    pub service_threshold: f32,
    /// The test figures at the service's threshold.
    pub service: SweepPoint,
    pub latency: Latency,
    pub train_seconds: f64,
    /// The classifier's first stage on the same data, when it was given.
    pub first_stage: Option<FirstStageReport>,
}

/// How the first stage (static token vectors) does, and what the service's two stages do
/// together: the first stage's answer where it takes the message (`first_stage_takes`, with
/// its built-in judgement), the sentence encoder's elsewhere.
#[derive(Debug, Clone, Serialize)]
pub struct FirstStageReport {
    pub encoder: String,
    /// Its intent head alone, on every test message.
    pub accuracy_alone: f32,
    /// Its bar of sure answers, learnt on the training data.
    pub sure_at: f32,
    /// Share of the test messages it takes.
    pub taken: f32,
    /// Accuracy on the messages it takes, and the sentence encoder's on the same messages.
    pub taken_accuracy: f32,
    pub encoder_accuracy_on_taken: f32,
    /// Both stages together, as the service classifies.
    pub accuracy: f32,
    /// One message through the first stage (vectors, intent head, judgement).
    pub single_p50_ms: f64,
}

pub struct EvalOptions {
    pub held_out_intents: usize,
    /// Test rows with this label are out of scope (`oos` by default).
    pub out_of_scope_label: String,
    pub cache_dir: Option<std::path::PathBuf>,
    pub params: TrainParams,
    /// The first stage's encoder (static token vectors): scored beside the sentence encoder.
    pub first_stage: Option<std::sync::Arc<dyn SentenceEncoder>>,
}

pub fn evaluate(
    encoder: &dyn SentenceEncoder,
    train: &[Sample],
    test: &[Sample],
    options: &EvalOptions,
    progress: &mut dyn FnMut(Stage, usize, usize),
) -> Result<Report, EvalError> {
    let labels: Vec<String> = {
        let mut l: Vec<String> = train.iter().map(|s| s.label.clone()).collect();
        l.sort();
        l.dedup();
        l
    };
    if labels.iter().any(|l| *l == options.out_of_scope_label) {
        return Err(EvalError::Data {
            path: "training data".into(),
            reason: format!("rows labelled `{0}` are out of scope and cannot be trained on; drop them from the training data or name another --out-of-scope-label", options.out_of_scope_label),
        });
    }
    let index: HashMap<&str, usize> = labels.iter().enumerate().map(|(i, l)| (l.as_str(), i)).collect();
    // Rows the model cannot name (labelled out of scope, or of an untrained label) test rejection.
    let (test, rejected): (Vec<&Sample>, Vec<&Sample>) = test.iter().partition(|s| index.contains_key(s.label.as_str()));
    let mut untrained: BTreeMap<String, usize> = BTreeMap::new();
    for sample in rejected.iter().filter(|s| s.label != options.out_of_scope_label) {
        *untrained.entry(sample.label.clone()).or_default() += 1;
    }

    let mut cache = EmbeddingCache::open(options.cache_dir.as_deref(), encoder);
    let all_texts: Vec<&str> = train
        .iter()
        .map(|s| s.text.as_str())
        .chain(test.iter().map(|s| s.text.as_str()))
        .chain(rejected.iter().map(|s| s.text.as_str()))
        .collect();
    let total = all_texts.len();
    let embeddings = cache.embed_all(encoder, &all_texts, &mut |done| progress(Stage::Embedding, done, total))?;
    let (train_embeddings, rest) = embeddings.split_at(train.len());
    let (test_embeddings, rejected_embeddings) = rest.split_at(test.len());

    // 1. All intents: accuracy, macro-F1, confusions.
    progress(Stage::Training, 0, 2);
    let started = Instant::now();
    let labelled: Vec<LabelledText<'_>> = train
        .iter()
        .zip(train_embeddings)
        .map(|(s, e)| LabelledText { text: &s.text, embedding: e, label: index[s.label.as_str()] })
        .collect();
    let model = IntentModel::train(labels.clone(), &labelled, &options.params);
    let train_seconds = started.elapsed().as_secs_f64();
    progress(Stage::Training, 1, 2);
    let predictions: Vec<usize> =
        test.iter().zip(test_embeddings).map(|(s, e)| model.rank(&s.text, e)[0].0).collect();
    let truth: Vec<usize> = test.iter().map(|s| index[s.label.as_str()]).collect();
    let correct = predictions.iter().zip(&truth).filter(|(p, t)| p == t).count();
    let accuracy = correct as f32 / test.len().max(1) as f32;
    let macro_f1 = macro_f1(&truth, &predictions, labels.len());
    let mut confusions: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    for (p, t) in predictions.iter().zip(&truth) {
        if p != t {
            *confusions.entry((*t, *p)).or_default() += 1;
        }
    }
    let mut confused_pairs: Vec<ConfusedPair> = confusions
        .into_iter()
        .map(|((t, p), count)| ConfusedPair { expected: labels[t].clone(), predicted: labels[p].clone(), count })
        .collect();
    confused_pairs.sort_by(|a, b| b.count.cmp(&a.count));
    confused_pairs.truncate(10);

    // 2. Some intents held out of training: their messages are out of scope. The threshold is
    // chosen on a validation split of the training data; the test data only report figures.
    let stride = (labels.len() / options.held_out_intents.max(1)).max(1);
    let held_out: Vec<usize> = (0..labels.len())
        .filter(|i| i % stride == stride / 2)
        .take(options.held_out_intents.min(labels.len().saturating_sub(2)))
        .collect();
    let kept: Vec<usize> = (0..labels.len()).filter(|i| !held_out.contains(i)).collect();
    let remap: HashMap<usize, usize> = kept.iter().enumerate().map(|(new, old)| (*old, new)).collect();
    let kept_labels: Vec<String> = kept.iter().map(|&i| labels[i].clone()).collect();
    // Validation: every fifth example of each kept intent, and every example of the held-out ones.
    let mut seen = vec![0usize; labels.len()];
    let (mut fit, mut validation_in, mut validation_out) = (Vec::new(), Vec::new(), Vec::new());
    for l in &labelled {
        seen[l.label] += 1;
        match remap.get(&l.label) {
            None => validation_out.push(l),
            Some(&label) if seen[l.label] % 5 == 0 => validation_in.push((l, label)),
            Some(&label) => fit.push(LabelledText { text: l.text, embedding: l.embedding, label }),
        }
    }
    let validating = IntentModel::train(kept_labels.clone(), &fit, &options.params);
    let in_scope_validation: Vec<(bool, f32)> = validation_in
        .iter()
        .map(|(l, label)| {
            let (best, p) = validating.rank(l.text, l.embedding)[0];
            (best == *label, p)
        })
        .collect();
    let out_of_scope_validation: Vec<f32> = validation_out.iter().map(|l| validating.rank(l.text, l.embedding)[0].1).collect();
    let chosen_threshold = best_threshold(&in_scope_validation, &out_of_scope_validation);

    let kept_labelled: Vec<LabelledText<'_>> = labelled
        .iter()
        .filter_map(|l| remap.get(&l.label).map(|&label| LabelledText { text: l.text, embedding: l.embedding, label }))
        .collect();
    let partial = IntentModel::train(kept_labels, &kept_labelled, &options.params);
    progress(Stage::Training, 2, 2);
    let mut in_scope = Vec::new();
    let mut out_of_scope = Vec::new();
    for ((sample, embedding), &t) in test.iter().zip(test_embeddings).zip(&truth) {
        let (best, p) = partial.rank(&sample.text, embedding)[0];
        match remap.get(&t) {
            Some(&label) => in_scope.push((best == label, p)),
            None => out_of_scope.push(p),
        }
    }
    for (sample, embedding) in rejected.iter().zip(rejected_embeddings) {
        out_of_scope.push(partial.rank(&sample.text, embedding)[0].1);
    }
    let sweep: Vec<SweepPoint> = (0..=20)
        .map(|step| {
            let threshold = step as f32 / 20.0;
            rates(&in_scope, &out_of_scope, threshold)
        })
        .collect();
    let chosen = rates(&in_scope, &out_of_scope, chosen_threshold);
    let service = rates(&in_scope, &out_of_scope, partial.out_of_scope_threshold);

    // 3. Speed of the whole path (encode + head) on real test messages, uncached.
    let sample: Vec<&str> = test.iter().take(320).map(|s| s.text.as_str()).collect();
    let singles = sample.len().min(100);
    let mut times = Vec::with_capacity(singles);
    for (i, text) in sample.iter().take(singles).enumerate() {
        let started = Instant::now();
        let embedding = encoder.encode(&[text])?;
        std::hint::black_box(model.rank(text, &embedding[0]));
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        progress(Stage::Latency, i + 1, singles + 1);
    }
    times.sort_by(f64::total_cmp);
    let percentile = |q: f64| times.get(((times.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(0.0);
    let started = Instant::now();
    let embeddings = encoder.encode(&sample)?;
    for (text, embedding) in sample.iter().zip(&embeddings) {
        std::hint::black_box(model.rank(text, embedding));
    }
    let batch_messages_per_second = sample.len() as f64 / started.elapsed().as_secs_f64();
    progress(Stage::Latency, singles + 1, singles + 1);

    let first_stage = match &options.first_stage {
        Some(static_encoder) => {
            Some(evaluate_first_stage(static_encoder.as_ref(), &labels, &labelled, &test, &truth, &predictions, options)?)
        }
        None => None,
    };

    Ok(Report {
        train_samples: train.len(),
        test_samples: test.len(),
        intents: labels.len(),
        accuracy,
        macro_f1,
        confused_pairs,
        held_out_intents: held_out.iter().map(|&i| labels[i].clone()).collect(),
        out_of_scope_test_samples: rejected.len(),
        untrained_labels: untrained.into_iter().collect(),
        sweep,
        chosen_threshold,
        chosen,
        service_threshold: partial.out_of_scope_threshold,
        service,
        latency: Latency {
            single_p50_ms: percentile(0.5),
            single_p95_ms: percentile(0.95),
            batch_size: 32,
            batch_messages_per_second,
        },
        train_seconds,
        first_stage,
    })
}

/// The first stage trained on the same examples, and the two stages together on the test
/// (`predictions`: the sentence encoder's).
fn evaluate_first_stage(
    static_encoder: &dyn SentenceEncoder,
    labels: &[String],
    labelled: &[LabelledText<'_>],
    test: &[&Sample],
    truth: &[usize],
    predictions: &[usize],
    options: &EvalOptions,
) -> Result<FirstStageReport, EvalError> {
    let texts: Vec<&str> = labelled.iter().map(|l| l.text).collect();
    let train_vectors = static_encoder.encode(&texts)?;
    let static_labelled: Vec<LabelledText<'_>> = labelled
        .iter()
        .zip(&train_vectors)
        .map(|(l, v)| LabelledText { text: l.text, embedding: v, label: l.label })
        .collect();
    let model = IntentModel::train(labels.to_vec(), &static_labelled, &options.params.without_neighbours());
    let judgement = crate::judgement::JudgementModel::load_or_train_built_in(
        static_encoder,
        options.cache_dir.as_deref(),
        &crate::judgement::first_stage_judgement_params(),
    )?;
    let (mut alone, mut taken, mut taken_right, mut encoder_right_on_taken, mut right) = (0, 0, 0, 0, 0);
    let mut times = Vec::with_capacity(test.len());
    for ((sample, &t), &encoder_prediction) in test.iter().zip(truth).zip(predictions) {
        let started = Instant::now();
        let vector = static_encoder.encode(&[&sample.text])?.pop().unwrap_or_default();
        let ranking = model.rank(&sample.text, &vector);
        let judged = judgement.judge(&sample.text, &vector);
        let takes = crate::classifier::first_stage_takes(crate::classifier::message_language(&sample.text, None).as_deref(), &model, &ranking, &judged);
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        let best = ranking[0].0;
        alone += usize::from(best == t);
        if takes {
            taken += 1;
            taken_right += usize::from(best == t);
            encoder_right_on_taken += usize::from(encoder_prediction == t);
        }
        right += usize::from(if takes { best } else { encoder_prediction } == t);
    }
    times.sort_by(f64::total_cmp);
    let share = |n: usize, of: usize| n as f32 / of.max(1) as f32;
    Ok(FirstStageReport {
        encoder: static_encoder.id().to_string(),
        accuracy_alone: share(alone, test.len()),
        sure_at: model.sure_at,
        taken: share(taken, test.len()),
        taken_accuracy: share(taken_right, taken),
        encoder_accuracy_on_taken: share(encoder_right_on_taken, taken),
        accuracy: share(right, test.len()),
        single_p50_ms: times.get(times.len() / 2).copied().unwrap_or(0.0),
    })
}

fn rates(in_scope: &[(bool, f32)], out_of_scope: &[f32], threshold: f32) -> SweepPoint {
    SweepPoint {
        threshold,
        in_scope_accuracy: in_scope.iter().filter(|(ok, p)| *ok && *p >= threshold).count() as f32
            / in_scope.len().max(1) as f32,
        out_of_scope_recall: out_of_scope.iter().filter(|p| **p < threshold).count() as f32
            / out_of_scope.len().max(1) as f32,
    }
}

pub fn macro_f1(truth: &[usize], predicted: &[usize], classes: usize) -> f32 {
    let mut tp = vec![0usize; classes];
    let mut fp = vec![0usize; classes];
    let mut fn_ = vec![0usize; classes];
    for (&t, &p) in truth.iter().zip(predicted) {
        if t == p {
            tp[t] += 1;
        } else {
            fp[p] += 1;
            fn_[t] += 1;
        }
    }
    let present: Vec<usize> = (0..classes).filter(|&c| tp[c] + fn_[c] > 0).collect();
    let sum: f32 = present
        .iter()
        .map(|&c| {
            let denominator = 2 * tp[c] + fp[c] + fn_[c];
            if denominator == 0 { 0.0 } else { 2.0 * tp[c] as f32 / denominator as f32 }
        })
        .sum();
    sum / present.len().max(1) as f32
}

/// The threshold sweep as a small SVG line chart: in-scope accuracy and out-of-scope recall.
pub fn sweep_chart(report: &Report) -> String {
    let (width, height, margin) = (640.0, 400.0, 50.0);
    let x = |t: f32| margin + t as f64 * (width - 2.0 * margin);
    let y = |v: f32| height - margin - v as f64 * (height - 2.0 * margin);
    let line = |value: &dyn Fn(&SweepPoint) -> f32| {
        report.sweep.iter().map(|p| format!("{:.1},{:.1}", x(p.threshold), y(value(p)))).collect::<Vec<_>>().join(" ")
    };
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{margin}\" y=\"24\" font-size=\"14\">Confidence threshold sweep ({} intents, {} held out)</text>\n",
        report.intents,
        report.held_out_intents.len()
    );
    for step in 0..=10 {
        let v = step as f32 / 10.0;
        svg.push_str(&format!(
            "<line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{v:.1}</text>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{v:.1}</text>\n",
            x(0.0), y(v), x(1.0), y(v), x(0.0) - 6.0, y(v) + 4.0, x(v), y(0.0) + 18.0
        ));
    }
    svg.push_str(&format!(
        "<polyline fill=\"none\" stroke=\"#1f6feb\" stroke-width=\"2\" points=\"{}\"/>\n\
         <polyline fill=\"none\" stroke=\"#d1242f\" stroke-width=\"2\" points=\"{}\"/>\n\
         <line x1=\"{cx:.1}\" y1=\"{:.1}\" x2=\"{cx:.1}\" y2=\"{:.1}\" stroke=\"#555\" stroke-dasharray=\"4 4\"/>\n\
         <text x=\"{:.1}\" y=\"{:.1}\" fill=\"#1f6feb\">in-scope accuracy</text>\n\
         <text x=\"{:.1}\" y=\"{:.1}\" fill=\"#d1242f\">out-of-scope recall</text>\n\
         <text x=\"{:.1}\" y=\"{:.1}\">chosen {:.2}</text>\n\
         <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">threshold</text>\n</svg>\n",
        line(&|p| p.in_scope_accuracy),
        line(&|p| p.out_of_scope_recall),
        y(0.0),
        y(1.0),
        x(0.02), y(1.0) - 8.0,
        x(0.35), y(1.0) - 8.0,
        x(report.chosen_threshold) + 4.0, y(0.5),
        report.chosen_threshold,
        x(0.5), height - 10.0,
        cx = x(report.chosen_threshold),
    ));
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macro_f1_averages_per_class_scores() {
        assert_eq!(macro_f1(&[0, 0, 1, 1], &[0, 0, 1, 1], 2), 1.0);
        // class 0: tp 1, fn 1, fp 0 -> 2/3; class 1: tp 2, fp 1 -> 0.8
        let f1 = macro_f1(&[0, 0, 1, 1], &[0, 1, 1, 1], 2);
        assert!((f1 - (2.0 / 3.0 + 0.8) / 2.0).abs() < 1e-6, "{f1}");
    }

    #[test]
    fn split_is_stratified_and_stable() {
        let samples: Vec<Sample> =
            (0..20).map(|i| Sample { text: format!("t{i}"), label: if i % 2 == 0 { "a" } else { "b" }.into() }).collect();
        let (train, test) = split(samples.clone(), "oos");
        assert_eq!((train.len(), test.len()), (16, 4));
        assert_eq!(test.iter().filter(|s| s.label == "a").count(), 2);
        assert_eq!(split(samples.clone(), "oos").1, test);
        let mut with_oos = samples;
        with_oos.extend((0..3).map(|i| Sample { text: format!("o{i}"), label: "oos".into() }));
        let (train, test) = split(with_oos, "oos");
        assert!(train.iter().all(|s| s.label != "oos"), "out-of-scope rows are never trained on");
        assert_eq!(test.iter().filter(|s| s.label == "oos").count(), 3);
    }
}
