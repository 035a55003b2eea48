//! The rust-bert backend gives the candle backend's vectors. Needs the model
//! (./scripts/fetch-model.sh) and libtorch (./scripts/fetch-libtorch.sh); runs only with
//! `--features rust-bert`.
#![cfg(feature = "rust-bert")]

use std::path::PathBuf;
use std::time::{Duration, Instant};
use switchboard_nlp::{MiniLmEncoder, RustBertEncoder, SentenceEncoder};

fn model_dir() -> PathBuf {
    let dir = std::env::var_os("SWITCHBOARD_MODEL_DIR").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/switchboard/models/all-MiniLM-L6-v2")
    });
    assert!(dir.join("model.safetensors").is_file(), "no model in {}; run ./scripts/fetch-model.sh", dir.display());
    dir
}

fn sentences() -> Vec<String> {
    let mut texts: Vec<String> = [
        "Where is my order?",
        "I want a refund now!",
        "Your support team is useless, I want a refund now!",
        "How do I reset my password?",
        "Can I change the delivery address after paying?",
        "The card payment was declined twice.",
        "hi",
        "Thanks, that solved it :)",
        "My parcel #A-1029-77 arrived damaged; the box was crushed.",
        "I was charged €49.99 instead of €39.99 on 2024-03-01.",
        "Crème brûlée for the café's naïve piñata",
        "CAN I TALK TO A HUMAN PLEASE",
        "Is there an app for Android or iOS?",
        "Kann ich meine Bestellung stornieren?",
        "Do you ship to São Paulo?",
        "The link in the email (https://shop.example.com/verify?token=abc123) does not work",
        "🙂 great service, thank you 👍",
        "",
        "What are your opening hours on public holidays?",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // Longer than the 256-token limit: both backends must truncate alike.
    texts.push("My account was locked after I tried to log in from a new phone. ".repeat(30));
    texts
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    dot / (norm(a) * norm(b))
}

fn norm(v: &[f32]) -> f32 {
    v.iter().map(|x| x * x).sum::<f32>().sqrt()
}

fn assert_same_vectors(texts: &[&str], candle: &[Vec<f32>], rust_bert: &[Vec<f32>]) -> f32 {
    assert_eq!(candle.len(), texts.len());
    assert_eq!(rust_bert.len(), texts.len());
    let mut lowest = f32::MAX;
    for ((text, a), b) in texts.iter().zip(candle).zip(rust_bert) {
        assert_eq!(a.len(), b.len(), "dimension differs for {text:?}");
        assert!((norm(a) - 1.0).abs() < 1e-4, "candle vector for {text:?} has length {}", norm(a));
        assert!((norm(b) - 1.0).abs() < 1e-4, "rust-bert vector for {text:?} has length {}", norm(b));
        let similarity = cosine(a, b);
        assert!(similarity > 0.9999, "cosine {similarity} for {text:?}");
        lowest = lowest.min(similarity);
    }
    lowest
}

#[test]
fn rust_bert_matches_candle() {
    let dir = model_dir();
    let candle = MiniLmEncoder::load(&dir).expect("load the candle encoder");
    let rust_bert = RustBertEncoder::load(&dir).expect("load the rust-bert encoder");
    assert_eq!(rust_bert.dimension(), candle.dimension());
    assert!(rust_bert.id().starts_with("minilm-rust-bert/"), "id {}", rust_bert.id());
    assert_ne!(rust_bert.id().split('/').next(), candle.id().split('/').next(), "the caches must not mix");
    assert!(rust_bert.encode(&[]).expect("empty input").is_empty());

    let owned = sentences();
    let texts: Vec<&str> = owned.iter().map(String::as_str).collect();
    let lowest = assert_same_vectors(
        &texts,
        &candle.encode(&texts).expect("candle"),
        &rust_bert.encode(&texts).expect("rust-bert"),
    );

    // More than one batch: the texts are sorted by length and spread over the model copies.
    let many: Vec<String> = (0..3).flat_map(|round| owned.iter().map(move |s| format!("{s} (#{round})"))).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let lowest_many = assert_same_vectors(
        &many,
        &candle.encode(&many).expect("candle"),
        &rust_bert.encode(&many).expect("rust-bert"),
    );
    eprintln!(
        "lowest cosine rust-bert vs candle: {lowest:.7} ({} texts), {lowest_many:.7} ({} texts)",
        texts.len(),
        many.len()
    );
}

fn median_time(runs: usize, mut f: impl FnMut()) -> Duration {
    f(); // warm-up
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[runs / 2]
}

/// Timings, not a check: `cargo test -p switchboard-nlp --features rust-bert --release
/// --test rust_bert -- --ignored --nocapture` (RAYON_NUM_THREADS=1 as `switchboard` sets it).
#[test]
#[ignore]
fn timings() {
    let dir = model_dir();
    let owned = sentences();
    // Short messages, as customers write them (the long text would pad every row to 256 tokens).
    let short = &owned[..owned.len() - 1];
    let batch: Vec<&str> = short.iter().cycle().take(32).map(String::as_str).collect();
    let single = ["Where is my order? It was due on Monday."];
    let encoders: Vec<(&str, Box<dyn SentenceEncoder>)> = vec![
        ("candle", Box::new(MiniLmEncoder::load(&dir).expect("candle"))),
        ("rust-bert", Box::new(RustBertEncoder::load(&dir).expect("rust-bert"))),
    ];
    for (name, encoder) in &encoders {
        let one = median_time(21, || {
            encoder.encode(&single).expect("encode");
        });
        let many = median_time(7, || {
            encoder.encode(&batch).expect("encode");
        });
        // As in the service, where two encoder threads may each run a batch.
        let two_callers = median_time(7, || {
            std::thread::scope(|scope| {
                for _ in 0..2 {
                    scope.spawn(|| encoder.encode(&batch).expect("encode"));
                }
            });
        });
        eprintln!(
            "{name:>9}: single {:.1} ms, batch of 32 {:.1} ms ({:.1} ms/sentence), two batches of 32 at once {:.1} ms",
            one.as_secs_f64() * 1e3,
            many.as_secs_f64() * 1e3,
            many.as_secs_f64() * 1e3 / 32.0,
            two_callers.as_secs_f64() * 1e3
        );
    }
}
