//! `switchboard nlu ...`: intents-file checks and offline evaluation of the local model.

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::Path;
use switchboard::config::Config;
use switchboard_core::{Input, step};
use switchboard_models::{Channel, ContactId, Conversation, IntentName};
use switchboard_nlp::eval::{self, EvalOptions, Stage};
use switchboard_nlp::judge::{self, OUT_OF_SCOPE, Verdict};
use switchboard_nlp::head::TrainParams;
use switchboard_nlp::IntentSet;

pub fn check(config: &Config, intents: Option<&Path>) -> anyhow::Result<()> {
    let set = match intents.or(config.nlp.intents_file.as_deref()) {
        Some(path) => IntentSet::load(path)?,
        None => IntentSet::parse(Path::new("(built-in intents)"), switchboard_nlp::intents::DEFAULT_INTENTS)?,
    };
    let examples: usize = set.intents.iter().map(|i| i.examples.len()).sum();
    let answered = set.intents.iter().filter(|i| i.answer.is_some()).count();
    let escalating = set.intents.iter().filter(|i| i.always_escalate).count();
    println!(
        "intents file OK: version {}, {} intents, {examples} examples, {answered} with answers, {escalating} always escalate",
        set.version,
        set.intents.len()
    );
    Ok(())
}

pub fn eval(
    config: &Config,
    data: &Path,
    train: Option<&Path>,
    held_out: usize,
    out_of_scope_label: &str,
    out: &Path,
    params: TrainParams,
) -> anyhow::Result<()> {
    // The engine the service runs (nlp.backend): its embeddings and latency are the ones that count.
    let encoder = switchboard::load_encoder(&config.nlp)?;
    let test = eval::read_csv(data)?;
    let (train, test) = match train {
        Some(path) => (eval::read_csv(path)?, test),
        None => eval::split(test, out_of_scope_label),
    };
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len} ({eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let mut stage_seen = None;
    let options = EvalOptions {
        held_out_intents: held_out,
        out_of_scope_label: out_of_scope_label.to_string(),
        cache_dir: Some(config.nlp.cache_dir.clone()),
        params,
        // Scored whenever installed (nlp.first_stage or not), beside the sentence encoder.
        first_stage: switchboard_nlp::StaticEncoder::load(&config.nlp.model_dir)
            .map(|e| std::sync::Arc::new(e) as std::sync::Arc<dyn switchboard_nlp::SentenceEncoder>)
            .ok(),
    };
    let report = eval::evaluate(encoder.as_ref(), &train, &test, &options, &mut |stage, done, total| {
        if stage_seen != Some(stage) {
            stage_seen = Some(stage);
            bar.set_message(match stage {
                Stage::Embedding => "embedding",
                Stage::Training => "training",
                Stage::Latency => "latency",
            });
            bar.set_length(total as u64);
        }
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();

    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let json_path = out.join("report.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&report)?).with_context(|| format!("writing {}", json_path.display()))?;
    let chart_path = out.join("threshold-sweep.svg");
    std::fs::write(&chart_path, eval::sweep_chart(&report)).with_context(|| format!("writing {}", chart_path.display()))?;

    println!("model            {}", encoder.id());
    println!("data             {} train / {} test, {} intents", report.train_samples, report.test_samples, report.intents);
    println!("accuracy         {:.2} %", report.accuracy * 100.0);
    println!("macro-F1         {:.2} %", report.macro_f1 * 100.0);
    println!("most confused    (expected -> predicted: count)");
    for pair in report.confused_pairs.iter().take(5) {
        println!("                 {} -> {}: {}", pair.expected, pair.predicted, pair.count);
    }
    println!(
        "out of scope     {} intents held out, {} test rows labelled `{out_of_scope_label}` or untrained",
        report.held_out_intents.len(),
        report.out_of_scope_test_samples
    );
    if !report.untrained_labels.is_empty() {
        let listed: Vec<String> = report.untrained_labels.iter().map(|(label, n)| format!("{label} ({n})")).collect();
        println!("                 labels the training data lack, scored as out of scope: {}", listed.join(", "));
    }
    for (what, threshold, at) in [
        ("chosen on validation", report.chosen_threshold, &report.chosen),
        ("the service's own", report.service_threshold, &report.service),
    ] {
        println!(
            "                 threshold {threshold:.2} ({what}): in-scope accuracy {:.2} %, out-of-scope recall {:.2} % on the test",
            at.in_scope_accuracy * 100.0,
            at.out_of_scope_recall * 100.0
        );
    }
    println!("threshold sweep  on the test, for reading only (nothing is chosen from it)");
    println!("                 threshold  in-scope acc  OOS recall");
    for point in report.sweep.iter().step_by(2) {
        println!(
            "                 {:>9.2}  {:>11.2} %  {:>8.2} %",
            point.threshold,
            point.in_scope_accuracy * 100.0,
            point.out_of_scope_recall * 100.0
        );
    }
    println!(
        "latency          one message p50 {:.1} ms, p95 {:.1} ms; batches of {}: {:.0} messages/s",
        report.latency.single_p50_ms, report.latency.single_p95_ms, report.latency.batch_size, report.latency.batch_messages_per_second
    );
    if let Some(f) = &report.first_stage {
        println!("first stage      {} alone: accuracy {:.2} %; one message p50 {:.2} ms", f.encoder, f.accuracy_alone * 100.0, f.single_p50_ms);
        println!(
            "                 sure from {:.2}: takes {:.1} % of the test, {:.2} % of them right (the sentence encoder: {:.2} %)",
            f.sure_at,
            f.taken * 100.0,
            f.taken_accuracy * 100.0,
            f.encoder_accuracy_on_taken * 100.0
        );
        println!("both stages      accuracy {:.2} % (as the service classifies)", f.accuracy * 100.0);
    }
    println!("training         {:.1} s", report.train_seconds);
    println!("written          {} and {}", json_path.display(), chart_path.display());
    Ok(())
}

pub fn cross_validate(config: &Config, folds: usize, by_writer: bool, params: TrainParams) -> anyhow::Result<()> {
    use switchboard_nlp::judgement;
    let encoder = switchboard::load_encoders(&config.nlp)?.for_judgement();
    let (rows, embeddings) = judgement::built_in_training(encoder.as_ref(), Some(&config.nlp.cache_dir))?;
    let report = if by_writer {
        let fold_of = judgement::folds_by_writer(&rows, folds).map_err(anyhow::Error::msg)?;
        judgement::cross_validate_in(&rows, &embeddings, &params, &fold_of)
    } else {
        judgement::cross_validate(&rows, &embeddings, &params, folds)
    };
    let percent = |v: f32| format!("{:.1} %", v * 100.0);
    let split = if by_writer { "folds by writer" } else { "folds" };
    println!("training set     {} rows, {} {split}, {params:?}", report.rows, report.folds);
    println!("category         {}", percent(report.category_accuracy));
    println!("need             {}", percent(report.need_accuracy));
    println!("tone             {}", percent(report.tone_accuracy));
    println!("priority         within one level {}", percent(report.priority_within_one_level));
    println!("escalate now     F1 {:.3}", report.escalate_f1);
    let bars: Vec<String> = report.escalate_f1_at.iter().map(|(bar, f1)| format!("{:.0} %: {f1:.3}", bar * 100.0)).collect();
    println!("                 by bar (bot.escalate_at_least) {}", bars.join(", "));
    Ok(())
}

pub async fn judge(config: &Config, data: &Path, out: &Path, fast_path: bool) -> anyhow::Result<()> {
    let cases = judge::read_cases(data)?;
    let classifier: std::sync::Arc<dyn switchboard_core::ports::Classifier> = match fast_path {
        // No queue budget: what else runs on this machine must not move the figures (under
        // load the service sheds messages to the fast path, and so would every figure here).
        false => {
            let mut unhurried = config.clone();
            unhurried.nlp.queue_budget_ms = 0;
            switchboard::service_classifier(&unhurried).await?
        }
        true => {
            let encoder = switchboard::load_encoders(&config.nlp)?;
            let source = match &config.nlp.intents_file {
                Some(path) => switchboard_nlp::IntentsSource::File(path.clone()),
                None => switchboard_nlp::IntentsSource::BuiltIn,
            };
            let (model, _) = switchboard_nlp::ModelClassifier::load(encoder, source, Some(config.nlp.cache_dir.clone()), None, 0.0)?;
            // No message can keep a budget of a nanosecond: each takes the fast path.
            std::sync::Arc::new(switchboard::with_first_stage(model.with_queue_budget(std::time::Duration::from_nanos(1)), &config.nlp)?)
        }
    };
    let policy = switchboard::policy(config);
    let bar = ProgressBar::new(cases.len() as u64);
    let mut verdicts = Vec::with_capacity(cases.len());
    for case in &cases {
        let started = std::time::Instant::now();
        let classification = classifier.classify(&case.text).await;
        let millis = started.elapsed().as_secs_f64() * 1000.0;
        // The first message of a new conversation, as the bot would take it.
        let now = chrono::Utc::now();
        let conversation = Conversation::new(ContactId::new(), Channel::WebChat, now);
        let input = Input::CustomerMessage { text: &case.text, classification: &classification, has_attachments: false, resolver_available: false };
        let decision = step(&conversation, &input, &policy, now);
        let off_topic = match &classification.judgement {
            Some(judgement) => judgement.off_topic,
            None => classification.intent.is(IntentName::OUT_OF_SCOPE),
        };
        let category = if off_topic {
            OUT_OF_SCOPE.to_string()
        } else {
            classification.category.as_str().to_string()
        };
        verdicts.push(Verdict {
            category,
            escalate_now: decision.escalated.is_some(),
            priority: decision.conversation.priority,
            sentiment: classification.sentiment,
            need: classification.judgement.as_ref().map(|j| j.need),
            millis,
            first_stage: classification.source == switchboard_models::ClassificationSource::FirstStage,
            fast_path: classification.source == switchboard_models::ClassificationSource::FastPath,
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
    let report = judge::score(&cases, &verdicts);
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let json_path = out.join("report.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&report)?).with_context(|| format!("writing {}", json_path.display()))?;

    let percent = |v: f32| format!("{:.1} %", v * 100.0);
    let optional = |v: Option<f32>| v.map(percent).unwrap_or_else(|| "(not labelled)".into());
    println!("data             {} messages from {}", report.cases, data.display());
    println!("category         {} right (out of scope counts as a category)", percent(report.category_accuracy));
    let o = &report.out_of_scope;
    println!("out of scope     precision {}, recall {} ({} taken as out of scope, {} really were)", percent(o.precision), percent(o.recall), o.true_positives + o.false_positives, o.true_positives + o.false_negatives);
    match &report.escalate_now {
        Some(e) => println!("escalate now     F1 {:.2} (precision {}, recall {}; {} escalated, {} should have been)", e.f1, percent(e.precision), percent(e.recall), e.true_positives + e.false_positives, e.true_positives + e.false_negatives),
        None => println!("escalate now     (not labelled)"),
    }
    println!("sentiment        {} right; rows labelled negative/neutral/positive, columns decided:", optional(report.sentiment_accuracy));
    for (label, row) in ["negative", "neutral", "positive"].iter().zip(report.sentiment_confusion) {
        println!("                 {label:>8}: {:>4} {:>4} {:>4}", row[0], row[1], row[2]);
    }
    println!("priority         exact {}, within one level {}", optional(report.priority_exact), optional(report.priority_within_one_level));
    println!("need             {} right", optional(report.need_accuracy));
    for pair in report.need_confusions.iter().take(6) {
        println!("                 {} -> {}: {}", pair.expected, pair.predicted, pair.count);
    }
    for (title, column, groups) in [("by language", "language", &report.by_language), ("by length", "words", &report.by_length)] {
        println!("{title:<16} {column:<16}  messages  category  escalate F1");
        for g in groups {
            println!("{:<16} {:<16}  {:>8}  {:>8}  {}", "", g.group, g.cases, percent(g.category_accuracy), g.escalate_f1.map(|f| format!("{f:.2}")).unwrap_or_default());
        }
    }
    println!("most confused    (labelled -> decided: count)");
    for pair in report.category_confusions.iter().take(6) {
        println!("                 {} -> {}: {}", pair.expected, pair.predicted, pair.count);
    }
    println!("latency          one message p50 {:.1} ms, p95 {:.1} ms (classification)", report.latency_p50_ms, report.latency_p95_ms);
    let f = &report.first_stage;
    println!(
        "first stage      decided {} of {} without the sentence encoder: category right {}, {} of them labelled \"escalate now\"",
        f.taken,
        report.cases,
        optional(f.category_accuracy),
        f.should_have_escalated
    );
    println!("fast path        decided {} of {} instead of the sentence encoder", report.fast_path, report.cases);
    println!("written          {} (with the first {} mistakes)", json_path.display(), report.mistakes.len());
    Ok(())
}
