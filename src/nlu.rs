//! `switchboard nlu ...`: intents-file checks and offline evaluation of the local model.

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::Path;
use switchboard::config::Config;
use switchboard_nlp::eval::{self, EvalOptions, Stage};
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

pub fn eval(config: &Config, data: &Path, train: Option<&Path>, held_out: usize, out: &Path, params: TrainParams) -> anyhow::Result<()> {
    // The engine the service runs (nlp.backend): its embeddings and latency are the ones that count.
    let encoder = switchboard::load_encoder(&config.nlp)?;
    let test = eval::read_csv(data)?;
    let (train, test) = match train {
        Some(path) => (eval::read_csv(path)?, test),
        None => eval::split(test),
    };
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len} ({eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let mut stage_seen = None;
    let options = EvalOptions { held_out_intents: held_out, cache_dir: Some(config.nlp.cache_dir.clone()), params };
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
        "out of scope     {} intents held out; chosen threshold {:.2}: in-scope accuracy {:.2} %, out-of-scope recall {:.2} %",
        report.held_out_intents.len(),
        report.chosen_threshold,
        report.chosen_in_scope_accuracy * 100.0,
        report.chosen_out_of_scope_recall * 100.0
    );
    println!("threshold sweep  threshold  in-scope acc  OOS recall");
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
    println!("training         {:.1} s", report.train_seconds);
    println!("written          {} and {}", json_path.display(), chart_path.display());
    Ok(())
}
