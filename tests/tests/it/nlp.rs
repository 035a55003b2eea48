//! The local NLP stack with the real all-MiniLM-L6-v2 weights: classification of unseen
//! phrasings, the cached head, intents-file reloads, the LLM fallback against a stand-in
//! OpenAI-compatible server, and the whole service (escalation summary, AI drafts).

use reqwest::StatusCode;
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_core::ports::Classifier;
use switchboard_models::{Category, ClassificationSource, Sender, Urgency};
use switchboard_nlp::{IntentsSource, LlmClient, LlmSettings, ModelClassifier};
use switchboard_tests::SMALL_INTENTS;
use switchboard_tests::fake_llm::{Behaviour, FakeLlm};
use switchboard_tests::panel::PanelClient;
use switchboard_tests::{TestServer, encoder, encoders, static_encoder, webchat_inbound};

fn built_in(cache: &Path, llm: Option<Arc<LlmClient>>, llm_below: f32) -> ModelClassifier {
    let (classifier, _) =
        ModelClassifier::load(encoders(), IntentsSource::BuiltIn, Some(cache.to_path_buf()), llm, llm_below).expect("loads");
    classifier
}

fn llm(fake: &FakeLlm, timeout: Duration, per_minute: u32) -> Arc<LlmClient> {
    Arc::new(LlmClient::new(LlmSettings {
        base_url: fake.base_url(),
        api_key: Some("test-key".into()),
        model: "test-model".into(),
        timeout,
        max_requests_per_minute: per_minute,
    }))
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>() / (a.iter().map(|x| x * x).sum::<f32>().sqrt() * b.iter().map(|y| y * y).sum::<f32>().sqrt())
}

/// ONNX Runtime runs the same model: its exact export gives candle's vectors, the int8 one (the
/// default) vectors close to them; "auto" picks it once ./scripts/fetch-model.sh installed it.
#[test]
fn the_onnx_engine_gives_the_models_vectors() {
    use switchboard_nlp::{MiniLmEncoder, OnnxMiniLmEncoder, SentenceEncoder};
    let config = switchboard_tests::nlp_config();
    assert_eq!(config.resolved_backend(), "onnx", "./scripts/fetch-model.sh installs ONNX Runtime and the ONNX model");
    let texts = [
        "hi",
        "Where is my order? It was due on Monday and the tracking page shows nothing since.",
        "I was charged twice for the same subscription, please refund one of the payments",
        "Ich möchte mit einem Menschen sprechen, bitte.",
        "¿Cómo cambio la dirección de entrega?",
        "我的账户被锁定了",
        "THIS IS THE THIRD TIME I WRITE. NOBODY ANSWERS!!!",
        &"Hello team, I hope you are well. I am writing about the invoice for last month. ".repeat(12),
    ];
    let candle = MiniLmEncoder::load(&config.model_dir).expect("candle");
    let reference = candle.encode(&texts).expect("candle encodes");
    let exact = OnnxMiniLmEncoder::load(&config.model_dir, &config.model_dir.join("model.onnx"), &config.onnx_runtime).expect("exact export");
    let int8 = encoder();
    assert!(int8.id().contains("model.int8.onnx"), "the default engine is the int8 export: {}", int8.id());
    for (engine, at_least) in [(&exact as &dyn SentenceEncoder, 0.9999_f32), (int8.as_ref(), 0.97)] {
        let vectors = engine.encode(&texts).expect("encodes");
        assert_eq!(vectors.len(), texts.len());
        for ((text, got), want) in texts.iter().zip(&vectors).zip(&reference) {
            assert_eq!(got.len(), 384);
            let similarity = cosine(got, want);
            assert!(similarity >= at_least, "{}: cosine {similarity} to candle's vector of {text:?}", engine.id());
        }
    }
    // More texts than one batch go through every session; each vector stays with its text and
    // is the one the text gets alone (int8 products would otherwise mix a batch's texts).
    let many: Vec<String> = (0..75).map(|i| format!("question {i}: {}", texts[i % texts.len()])).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let together = int8.encode(&many).expect("encodes many");
    for (text, vector) in many.iter().zip(&together).step_by(7) {
        let alone = int8.encode(&[text]).expect("encodes one");
        let similarity = cosine(vector, &alone[0]);
        assert!(similarity > 0.99999, "{text:?} got another vector than alone (cosine {similarity})");
    }

    let missing = OnnxMiniLmEncoder::load(&config.model_dir, &config.model_dir.join("model.int8.onnx"), Path::new("/nonexistent/libonnxruntime.so"))
        .err()
        .expect("no library, no engine")
        .to_string();
    assert!(missing.contains("nlp.onnx_runtime") && missing.contains("fetch-model.sh"), "{missing}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unseen_phrasings_get_the_right_intent_and_signals() {
    let cache = tempfile::tempdir().unwrap();
    let classifier = built_in(cache.path(), None, 0.0);
    // None of these is an example in the intents file.
    let cases = [
        ("hey there, good morning", "greeting"),
        ("I forgot my password and the reset email never arrived", "reset_password"),
        ("can you send me last month's invoice as a PDF?", "invoice_copy"),
        ("you took the payment two times this month", "double_charge"),
        ("I'd like to get my money back for the annual plan", "refund_request"),
        ("the app closes by itself whenever I open settings", "app_crash"),
        ("could I speak with an actual human being", "human_request"),
        ("it would be great if you added a calendar export", "feature_request"),
        ("thank you so much, that solved it", "thanks"),
        ("please remove my account and all my data", "delete_account"),
    ];
    let mut wrong = Vec::new();
    for (text, expected) in cases {
        let c = classifier.classify(text).await;
        assert_eq!(c.source, ClassificationSource::Model);
        if !c.intent.is(expected) {
            wrong.push(format!("{text:?}: expected {expected}, got {} ({:.2})", c.intent, c.confidence));
        }
    }
    assert!(wrong.is_empty(), "misclassified:\n{}", wrong.join("\n"));

    let c = classifier.classify("My card was charged twice and nobody answers, this is unacceptable!!").await;
    assert_eq!(c.category, Category::Billing);
    assert!(c.sentiment <= -0.6, "{}", c.sentiment);
    assert_eq!(c.language.as_deref(), Some("en"));
    assert_eq!(c.alternatives.len(), 3);
    assert!(c.alternatives.iter().all(|a| a.confidence <= c.confidence));

    let urgent = classifier.classify("someone hacked my account, lock it immediately").await;
    assert_eq!(urgent.urgency, Urgency::Critical);
    assert_eq!(urgent.category, Category::Account);

    let answered = classifier.classify("how do I reset my password?").await;
    assert!(answered.answer.is_some_and(|a| !a.is_empty()), "the intent has an answer");
    assert!(answered.confidence > 0.5, "{}", answered.confidence);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_overload_messages_over_the_queue_budget_take_the_fast_path_and_none_is_lost() {
    let cache = tempfile::tempdir().unwrap();
    let texts = ["I forgot my password", "where is my order", "I was charged twice", "hello", "cancel my subscription"];
    let burst = |classifier: Arc<ModelClassifier>, n: usize| async move {
        let calls = (0..n).map(|i| {
            let classifier = classifier.clone();
            let text = texts[i % texts.len()];
            async move { (text, classifier.classify(text).await) }
        });
        futures::future::join_all(calls).await
    };

    // A budget no message can keep: every one is classified on its words, with no judgement.
    let shedding = Arc::new(built_in(cache.path(), None, 0.0).with_queue_budget(Duration::from_nanos(1)));
    let answered = burst(shedding.clone(), 40).await;
    assert_eq!(answered.len(), 40);
    for (text, c) in &answered {
        assert_eq!(c.source, ClassificationSource::FastPath, "{text}");
        assert!(c.judgement.is_none());
    }
    let password = &answered.iter().find(|(t, _)| *t == "I forgot my password").unwrap().1;
    assert_eq!(password.intent.as_str(), "reset_password", "the words alone still know a plain request");
    // Shed messages' callers stop waiting at once; the encoder threads, which run on spare
    // CPU only, drop them from the queue when they next look.
    tokio::time::timeout(Duration::from_secs(30), shedding.queue_emptied()).await.expect("the encoder's queue empties");

    // A budget of 100 ms under a burst of 3,000 (two cores with AVX-512 VNNI encode these short
    // texts at some 2,800 a second, so at most some 560 fit in a budget and the one more a begun
    // batch gets): what the encoder begins in time is encoded, the rest shed; every message is
    // answered, the queue empties.
    let tight = Arc::new(built_in(cache.path(), None, 0.0).with_queue_budget(Duration::from_millis(100)));
    let started = Instant::now();
    let answered = burst(tight.clone(), 3000).await;
    let fast = answered.iter().filter(|(_, c)| c.source == ClassificationSource::FastPath).count();
    assert_eq!(answered.len(), 3000);
    // How many the encoder begins in time depends on spare CPU (its threads run on nothing
    // else), so only the shedding is certain: 3,000 cannot all be encoded within 100 ms.
    assert!(fast > 0, "some shed: {fast} of 3000 in {:?}", started.elapsed());
    assert!(answered.iter().all(|(_, c)| matches!(c.source, ClassificationSource::Model | ClassificationSource::FastPath)));
    tokio::time::timeout(Duration::from_secs(30), tight.queue_emptied()).await.expect("the encoder's queue empties");

    // No budget: the encoder takes every message, however long the wait.
    let patient = Arc::new(built_in(cache.path(), None, 0.0).with_queue_budget(Duration::ZERO));
    let answered = burst(patient, 100).await;
    assert!(answered.iter().all(|(_, c)| c.source == ClassificationSource::Model));
}

/// The encoder threads give way to the rest of the service (idle priority) only where a queue
/// budget lets a message that waits past it be answered anyway; without one (`nlu judge`,
/// `nlp.queue_budget_ms = 0`) they keep their share of the CPU, or a machine kept busy by
/// anything else would leave every message waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoder_threads_yield_the_cpu_only_when_a_queue_budget_backs_them() {
    let cache = tempfile::tempdir().unwrap();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    // (policy, nice) of a thread of this process: fields 41 and 19 of its stat line.
    let scheduling = |tid: i64| -> (u32, i32) {
        let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).expect("the thread's stat");
        let after_name: Vec<&str> = stat[stat.rfind(')').expect("a name in parentheses") + 2..].split(' ').collect();
        (after_name[41 - 3].parse().unwrap(), after_name[19 - 3].parse().unwrap())
    };
    let idle = |(policy, nice): (u32, i32)| policy == libc::SCHED_IDLE as u32 || nice == 19;
    for (budget, yields) in [(Duration::ZERO, false), (Duration::from_secs(60), true)] {
        let classifier = built_in(cache.path(), None, 0.0).with_queue_budget(budget);
        for text in ["I was charged twice for my order", "how do I reset my password", "my parcel never arrived"] {
            assert_eq!(classifier.classify(text).await.source, ClassificationSource::Model, "{text}");
        }
        let ids = classifier.encoder_thread_ids();
        assert_eq!(ids.len(), threads, "one encoder thread per core, each known once loaded");
        let states: Vec<(u32, i32)> = ids.iter().map(|tid| scheduling(*tid)).collect();
        if yields {
            assert!(states.iter().any(|s| idle(*s)), "with a budget, the threads that encoded run at idle priority: {states:?}");
        } else {
            assert!(states.iter().all(|s| !idle(*s)), "without a budget, none does: {states:?}");
        }
    }
}

/// The first stage answers plain questions it is sure of without the sentence encoder, and
/// leaves it everything else: anger, a request for a person, harm, another language.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_stage_answers_plain_questions_and_leaves_the_rest_to_the_sentence_encoder() {
    let cache = tempfile::tempdir().unwrap();
    let classifier = built_in(cache.path(), None, 0.0).with_first_stage(static_encoder()).expect("trains");
    let plain = [
        ("how do I reset my password?", "reset_password"),
        ("where is my order?", "order_status"),
        ("hello", "greeting"),
    ];
    for (text, intent) in plain {
        let c = classifier.classify(text).await;
        assert_eq!((c.source, c.intent.as_str()), (ClassificationSource::FirstStage, intent), "{text}");
        assert!(c.judgement.is_some(), "judged by the first stage's heads: {text}");
        assert!(c.answer.is_some_and(|a| !a.is_empty()), "answered: {text}");
    }
    let not_plain = [
        "My card was charged twice and nobody answers, this is unacceptable!!",
        "could I speak with an actual human being",
        "someone hacked my account, lock it immediately",
        "¿Dónde está mi pedido? Lo pedí hace dos semanas",
        "Wo ist meine Bestellung? Ich warte seit zwei Wochen",
    ];
    for text in not_plain {
        let c = classifier.classify(text).await;
        assert_eq!(c.source, ClassificationSource::Model, "{text}");
    }
    let angry = classifier.classify("My card was charged twice and nobody answers, this is unacceptable!!").await;
    assert_eq!(angry.category, Category::Billing, "the sentence encoder's judgement, as without a first stage");
    // Too short to tell its language, but the channel says German: not the English first stage's.
    let reported = classifier.classify_in("hallo", Some("de")).await;
    assert_eq!(reported.source, ClassificationSource::Model);
    // A reload retrains the first stage with the intents: plain questions still skip the encoder.
    classifier.reload().expect("reloads");
    assert_eq!(classifier.classify("hello").await.source, ClassificationSource::FirstStage);

    // Under overload the first stage judges what is shed, sure or not.
    let shedding = built_in(cache.path(), None, 0.0).with_queue_budget(Duration::from_nanos(1)).with_first_stage(static_encoder()).unwrap();
    let shed = shedding.classify("someone hacked my account, lock it immediately").await;
    assert_eq!(shed.source, ClassificationSource::FastPath);
    assert!(shed.judgement.is_some(), "judged without the sentence encoder");
    assert_eq!(shed.category, Category::Account);
}

/// While the engine's steps commit slowly (the store is what falls behind: 40 ms on average with
/// a 200 ms budget), every new message is classified at once on its words alone, without a
/// judgement, even one the first stage would take; when commits are quick again, the first stage
/// takes it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_commits_are_slow_messages_take_the_words_only_fast_path() {
    let cache = tempfile::tempdir().unwrap();
    let lag = Arc::new(switchboard_core::CommitLag::default());
    let classifier = built_in(cache.path(), None, 0.0)
        .with_queue_budget(Duration::from_millis(200))
        .with_commit_lag(lag.clone())
        .with_first_stage(static_encoder())
        .expect("trains");
    let plain = "how do I reset my password?";
    assert_eq!(classifier.classify_now(plain, None).map(|c| c.source), Some(ClassificationSource::FirstStage));

    // Commits of a few milliseconds are a writer keeping up.
    let mut at = Instant::now();
    for _ in 0..2000 {
        at += Duration::from_millis(1);
        lag.record_at(at, Duration::from_millis(5));
    }
    assert_eq!(classifier.classify_now(plain, None).map(|c| c.source), Some(ClassificationSource::FirstStage), "5 ms commits");
    // Tens of milliseconds, well under the budget, are its queue growing already.
    for _ in 0..2000 {
        at += Duration::from_millis(1);
        lag.record_at(at, Duration::from_millis(40));
    }
    // Counted as shed, with the store as the reason.
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    for text in [plain, "My card was charged twice and nobody answers, this is unacceptable!!"] {
        let c = metrics::with_local_recorder(&recorder, || classifier.classify_now(text, None)).expect("decided at once, not queued");
        assert_eq!(c.source, ClassificationSource::FastPath, "{text}");
        assert!(c.judgement.is_none(), "on its words alone: {text}");
    }
    let shed: Vec<(Vec<String>, metrics_util::debugging::DebugValue)> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| key.key().name() == "switchboard_classifications_fast_path_total")
        .map(|(key, _, _, value)| (key.key().labels().map(|l| format!("{}={}", l.key(), l.value())).collect(), value))
        .collect();
    assert_eq!(shed, vec![(vec!["reason=store_behind".to_string()], metrics_util::debugging::DebugValue::Counter(2))]);
    assert_eq!(classifier.classify_now(plain, None).unwrap().intent.as_str(), "reset_password", "the words still know it");

    // A message already on its way to the sentence encoder is shed when the encoder takes it:
    // while the store is behind, the encoder spends no CPU.
    let declined = "my parcel was supposed to come on tuesday and the tracking page has said nothing since";
    let shed = match classifier.classify_declined_locally(declined, None).await {
        Some(switchboard_core::ports::LocalClassification::Settled(c) | switchboard_core::ports::LocalClassification::Unsure(c)) => c,
        None => panic!("with a budget the encoder's classification is made before storing"),
    };
    assert_eq!(shed.source, ClassificationSource::FastPath, "shed by the encoder while the store is behind");
    assert!(shed.judgement.is_none(), "on its words alone");

    // A quick commit after the overload ends is the average again.
    lag.record_at(at + Duration::from_secs(2), Duration::from_millis(1));
    assert_eq!(classifier.classify_now(plain, None).map(|c| c.source), Some(ClassificationSource::FirstStage));
    let encoded = match classifier.classify_declined_locally(declined, None).await {
        Some(switchboard_core::ports::LocalClassification::Settled(c) | switchboard_core::ports::LocalClassification::Unsure(c)) => c,
        None => panic!("with a budget the encoder's classification is made before storing"),
    };
    assert_eq!(encoded.source, ClassificationSource::Model, "the encoder works again");
}

/// Static vectors missing, or made for another vocabulary, are refused with what to do (the
/// service then runs without its first stage, and says so).
#[test]
fn static_vectors_missing_or_for_another_vocabulary_are_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(switchboard_tests::model_dir().join("tokenizer.json"), dir.path().join("tokenizer.json")).unwrap();
    let missing = switchboard_nlp::StaticEncoder::load(dir.path()).err().expect("refused").to_string();
    assert!(missing.contains("static-embeddings.safetensors") && missing.contains("./scripts/fetch-model.sh"), "{missing}");

    // Ten rows of four values, in the safetensors layout the fetch script writes.
    let mut header = br#"{"embeddings":{"dtype":"F32","shape":[10,4],"data_offsets":[0,160]}}"#.to_vec();
    header.resize(header.len().div_ceil(8) * 8, b' ');
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend(&header);
    file.extend(std::iter::repeat_n(0u8, 160));
    std::fs::write(dir.path().join("static-embeddings.safetensors"), file).unwrap();
    let wrong = switchboard_nlp::StaticEncoder::load(dir.path()).err().expect("refused").to_string();
    assert!(wrong.contains("10 rows for a vocabulary of 30522; run ./scripts/fetch-model.sh again"), "{wrong}");
}

/// The multilingual encoder reads each reference sentence (twelve languages, odd spacing,
/// full-width letters, a Hindi one most of whose characters are unknown to it) as the package's
/// own code did when fetch-model.sh converted it: the same word pieces, a vector within rounding;
/// alone and batched together. The same request in other languages lands near the English one.
#[test]
fn the_multilingual_encoder_matches_its_reference_and_joins_languages() {
    use switchboard_nlp::{MultilingualEncoder, SentenceEncoder};
    let encoder = switchboard_tests::multilingual_encoder();
    let reference = MultilingualEncoder::reference(&switchboard_tests::nlp_config().multilingual_dir).expect("reference.json");
    assert!(reference.len() >= 12, "{} reference sentences", reference.len());
    let texts: Vec<&str> = reference.iter().map(|r| r.text.as_str()).collect();
    let batched = encoder.encode(&texts).expect("encodes");
    for (sentence, vector) in reference.iter().zip(&batched) {
        assert_eq!(encoder.pieces_of(&sentence.text).unwrap(), sentence.ids, "{:?}", sentence.text);
        let alone = encoder.encode(&[sentence.text.as_str()]).unwrap().remove(0);
        assert_eq!(alone.len(), 512);
        for candidate in [&alone, vector] {
            let similarity = cosine(candidate, &sentence.vector);
            assert!(similarity > 0.9999, "{:?}: cosine {similarity} to the package's vector", sentence.text);
        }
    }
    let vectors = encoder
        .encode(&["I want to talk to a person", "Ich möchte mit einem Menschen sprechen", "我想跟真人交谈", "What time do you open on Sunday?"])
        .unwrap();
    let (german, chinese, unrelated) = (cosine(&vectors[0], &vectors[1]), cosine(&vectors[0], &vectors[2]), cosine(&vectors[0], &vectors[3]));
    assert!(german > 0.7 && chinese > 0.7 && unrelated < 0.3, "german {german}, chinese {chinese}, unrelated {unrelated}");

    // The marks around a message are never read from its text; a long text keeps its end mark.
    let typed = encoder.pieces_of("I want <s>this</s> refunded <unk>").unwrap();
    assert_eq!((typed.first(), typed.last()), (Some(&1), Some(&2)), "{typed:?}");
    assert!(typed[1..typed.len() - 1].iter().all(|&id| id > 2), "{typed:?}");
    let long = encoder.pieces_of(&"Hello team, I am writing about the invoice for last month. ".repeat(60)).unwrap();
    assert_eq!((long.len(), long.last()), (512, Some(&2)));
    // Nothing to read is one unknown piece, as in the package; every text gets a unit vector.
    assert_eq!(encoder.pieces_of("").unwrap(), [1, 0, 2]);
    assert_eq!(encoder.pieces_of(" \n\t ").unwrap(), [1, 0, 2]);
    for vector in encoder.encode(&["", "   ", "ꯀꯁꯂ ᏣᎳᎩ", &"x".repeat(5000)]).unwrap() {
        let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-3, "norm {norm}");
    }

    let empty = tempfile::tempdir().unwrap();
    let missing = MultilingualEncoder::load(empty.path()).err().expect("refused").to_string();
    assert!(missing.contains("no tokenizer.json; run ./scripts/fetch-model.sh") && missing.contains("nlp.multilingual = false"), "{missing}");

    // The service reads it unless told not to, and runs without it when it is not installed.
    let config = switchboard_tests::nlp_config();
    assert!(switchboard::load_encoders(&config).unwrap().multilingual.is_some());
    let off = switchboard::config::NlpConfig { multilingual: false, ..config.clone() };
    assert!(switchboard::load_encoders(&off).unwrap().multilingual.is_none());
    let elsewhere = switchboard::config::NlpConfig { multilingual_dir: empty.path().into(), ..config };
    assert!(switchboard::load_encoders(&elsewhere).unwrap().multilingual.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_topic_messages_are_out_of_scope() {
    let cache = tempfile::tempdir().unwrap();
    let classifier = built_in(cache.path(), None, 0.0);
    let mut in_scope = Vec::new();
    for text in [
        "what is the boiling point of mercury in kelvin",
        "recommend me a good pasta recipe with mushrooms",
        "who won the football world cup in 1998",
    ] {
        let c = classifier.classify(text).await;
        if !c.intent.is("out_of_scope") {
            in_scope.push(format!("{text:?} -> {} ({:.2})", c.intent, c.confidence));
        }
        assert!(c.answer.is_none());
    }
    assert!(in_scope.is_empty(), "taken as in scope:\n{}", in_scope.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_loads_the_cached_head_and_answers_the_same() {
    let cache = tempfile::tempdir().unwrap();
    let (first, report) =
        ModelClassifier::load(encoder(), IntentsSource::BuiltIn, Some(cache.path().into()), None, 0.0).unwrap();
    assert!(!report.cached);
    let (second, report) =
        ModelClassifier::load(encoder(), IntentsSource::BuiltIn, Some(cache.path().into()), None, 0.0).unwrap();
    assert!(report.cached, "the second load reuses the trained head");
    for text in ["where is my parcel", "I was charged twice", "asdf qwerty"] {
        let (a, b) = (first.classify(text).await, second.classify(text).await);
        assert_eq!((a.source, b.source), (ClassificationSource::Model, ClassificationSource::Model), "{text:?}");
        assert_eq!((a.intent, a.confidence), (b.intent, b.confidence));
    }
}


#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_intents_file_is_refused_and_the_last_good_one_stays() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("intents.toml");
    std::fs::write(&file, SMALL_INTENTS).unwrap();
    let (classifier, report) =
        ModelClassifier::load(encoder(), IntentsSource::File(file.clone()), Some(dir.path().join("cache")), None, 0.0)
            .unwrap();
    assert_eq!((report.version, report.intents), (1, 3));
    assert!(classifier.classify("what time do you open tomorrow").await.intent.is("opening_hours"));

    let broken = SMALL_INTENTS.replace("category = \"billing\"", "category = \"money\"");
    std::fs::write(&file, &broken).unwrap();
    let error = classifier.reload().unwrap_err().to_string();
    assert!(error.contains("intents.toml:17:"), "{error}");
    assert!(error.contains("unknown category `money`"), "{error}");
    let still = classifier.classify("could you email me the invoice").await;
    assert!(still.intent.is("invoice_copy"), "the old intents still answer: {}", still.intent);

    let grown = SMALL_INTENTS.replace("version = 1", "version = 2")
        + r#"
[[intent]]
name = "shipping_cost"
category = "general_inquiry"
examples = ["how much is shipping", "delivery fee to germany", "do you charge for postage", "shipping costs"]
answer = "Shipping is free over 50 EUR."
"#;
    std::fs::write(&file, grown).unwrap();
    let report = classifier.reload().unwrap();
    assert_eq!((report.version, report.intents), (2, 4));
    let c = classifier.classify("what does delivery cost to france").await;
    assert!(c.intent.is("shipping_cost"), "{}", c.intent);
    assert_eq!(c.answer.as_deref(), Some("Shipping is free over 50 EUR."));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_llm_chooses_when_the_model_is_unsure_and_every_failure_keeps_the_local_result() {
    let cache = tempfile::tempdir().unwrap();
    let fake = FakeLlm::start(Behaviour::Answer(r#"{"intent": "order_status"}"#.into())).await;
    let timeout = Duration::from_millis(400);
    // llm_below 1.0: every message is "unsure", so every message asks the LLM.
    let classifier = built_in(cache.path(), Some(llm(&fake, timeout, 100)), 1.0);
    let text = "hmm so what about the thing I got last week";

    let chosen = classifier.classify(text).await;
    assert!(chosen.intent.is("order_status"), "{}", chosen.intent);
    assert_eq!(chosen.source, ClassificationSource::Llm);
    assert_eq!(chosen.confidence, switchboard_nlp::LLM_CONFIDENCE);
    let request = &fake.requests()[0];
    assert_eq!(request["model"], "test-model");
    let prompt = request["messages"][1]["content"].as_str().unwrap();
    assert!(prompt.contains("order_status") && prompt.contains(text), "{prompt}");

    fake.set(Behaviour::Answer(r#"{"intent": null}"#.into()));
    let none = classifier.classify(text).await;
    assert!(none.intent.is("out_of_scope"));
    assert_eq!(none.source, ClassificationSource::Llm);

    // An answer for a message no intent fits is used only where the admin allowed it.
    fake.set(Behaviour::Answer(r#"{"intent": null, "answer": "We are closed on public holidays."}"#.into()));
    let unanswered = classifier.classify(text).await;
    assert!(unanswered.intent.is("out_of_scope") && unanswered.answer.is_none());
    let answering = built_in(cache.path(), Some(llm(&fake, timeout, 100)), 1.0).with_llm_answers(true);
    let answered = answering.classify(text).await;
    assert!(answered.intent.is("out_of_scope"));
    assert_eq!(answered.answer.as_deref(), Some("We are closed on public holidays."));
    assert_eq!(answered.source, ClassificationSource::Llm);
    let policy = switchboard_core::Policy::default();
    let conversation = switchboard_models::Conversation::new(switchboard_models::ContactId::new(), switchboard_models::Channel::WebChat, chrono::Utc::now());
    let input = switchboard_core::Input::CustomerMessage { text, classification: &answered, has_attachments: false, resolver_available: false };
    let decision = switchboard_core::step(&conversation, &input, &policy, chrono::Utc::now());
    assert_eq!(decision.replies[0].body, switchboard_core::ReplyBody::Text("We are closed on public holidays.".into()));
    assert_eq!(decision.conversation.low_confidence_streak, 0, "an answered message is not a miss");
    let asked = fake.requests().last().unwrap()["messages"][0]["content"].clone();
    assert!(asked.as_str().unwrap().contains("\"answer\""), "the prompt offers answering: {asked}");

    let local = {
        let no_llm = built_in(cache.path(), None, 0.0);
        no_llm.classify(text).await
    };
    for behaviour in [
        Behaviour::Stall,
        Behaviour::Fail,
        Behaviour::Garbage,
        Behaviour::Refuse("I can't help with that".into()),
        Behaviour::Answer("order_status, I think".into()),
        Behaviour::Answer(r#"{"intent": "teleport_request"}"#.into()),
    ] {
        fake.set(behaviour.clone());
        let started = Instant::now();
        let c = classifier.classify(text).await;
        assert_eq!(c.source, ClassificationSource::Model, "{behaviour:?}");
        assert_eq!((&c.intent, c.confidence), (&local.intent, local.confidence), "{behaviour:?}");
        // The customer never waits for a stalled LLM beyond its timeout (generous bound for CI).
        assert!(started.elapsed() < timeout * 10, "{behaviour:?} took {:?}", started.elapsed());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_llm_budget_caps_requests_per_minute() {
    let cache = tempfile::tempdir().unwrap();
    let fake = FakeLlm::start(Behaviour::Answer(r#"{"intent": "greeting"}"#.into())).await;
    let classifier = built_in(cache.path(), Some(llm(&fake, Duration::from_secs(5), 2)), 1.0);
    let sources: Vec<ClassificationSource> = futures::future::join_all(
        ["one", "two", "three", "four"].map(|t| classifier.classify(t)),
    )
    .await
    .into_iter()
    .map(|c| c.source)
    .collect();
    assert_eq!(fake.requests().len(), 2);
    assert_eq!(sources.iter().filter(|s| **s == ClassificationSource::Llm).count(), 2);
}

async fn nlp_server(fake: Option<&FakeLlm>) -> TestServer {
    TestServer::start_with_model(fake.map(FakeLlm::base_url), 2000, |_| {}).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalations_get_the_llm_summary_and_agents_get_drafts_to_edit() {
    let fake = FakeLlm::start(Behaviour::Helpful {
        intent: None,
        summary: "Customer was charged twice for March and wants the duplicate refunded.".into(),
        draft: "Sorry about the double charge! I have asked billing to refund the duplicate.".into(),
    })
    .await;
    let server = nlp_server(Some(&fake)).await;
    let store = server.engine().store().clone();
    switchboard_admin_web::accounts::create_account(store.as_ref(), "ann@example.com", "Ann", switchboard_models::Role::Agent, "a long enough password", None)
        .await
        .unwrap();
    let inbound = |n: u32, text: &str| webchat_inbound("v1", Some("Dana"), n, text);
    server.engine().handle(inbound(1, "hello")).await.unwrap();
    let outcome = server.engine().handle(inbound(2, "I want to talk to a human, you charged me twice for March")).await.unwrap();
    assert!(outcome.escalated);
    let id = outcome.conversation.id;
    let escalation = outcome.conversation.escalation.clone().expect("escalated");
    assert!(escalation.summary.contains("charged me twice"), "extractive first: {}", escalation.summary);

    // The LLM summary replaces the extractive one after the customer was answered.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let c = store.conversation(id).await.unwrap().unwrap();
        let summary = c.escalation.unwrap().summary;
        if summary.starts_with("Customer was charged twice") {
            break;
        }
        assert!(Instant::now() < deadline, "no LLM summary: {summary}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let summary_request = fake.requests().into_iter().find(|r| r["messages"][0]["content"].as_str().unwrap().contains("Summarise")).unwrap();
    assert!(summary_request["messages"][1]["content"].as_str().unwrap().contains("Customer: I want to talk to a human, you charged me twice"));

    // The agent asks for a draft: it fills the reply box and nothing is sent.
    let ann = PanelClient::sign_in(&server.url(""), "ann@example.com", "a long enough password").await;
    let page = ann.get(&format!("/panel/conversations/{id}")).await;
    assert!(page.body.contains("data-test=\"draft-button\""));
    // Each customer message shows what the classifier made of it.
    assert!(page.body.contains("data-test=\"intent\">greeting<"), "{}", page.body);
    assert!(page.body.contains("data-test=\"intent\">human_request<"), "{}", page.body);
    assert!(page.body.contains("also: "), "the next best intents are shown");
    let before = store.conversation_messages(id, 0, 100).await.unwrap().len();
    let drafted = ann.post(&format!("/panel/conversations/{id}/draft"), &[("text", ""), ("version", "0")]).await;
    assert_eq!(drafted.status, StatusCode::OK, "{}", drafted.body);
    assert!(drafted.body.contains(">Sorry about the double charge! I have asked billing to refund the duplicate.</textarea>"), "{}", drafted.body);
    assert!(drafted.body.contains("data-test=\"draft-note\""));
    assert_eq!(store.conversation_messages(id, 0, 100).await.unwrap().len(), before, "a draft is not sent");

    // Same over the API; a failing LLM gives a clear error and no draft.
    let token = ann.new_api_token("CRM").await;
    let http = reqwest::Client::new();
    let draft = || http.post(server.url(&format!("/api/conversations/{id}/draft"))).bearer_auth(&token).send();
    let body: Value = draft().await.unwrap().json().await.unwrap();
    assert_eq!(body["draft"], "Sorry about the double charge! I have asked billing to refund the duplicate.");
    fake.set(Behaviour::Fail);
    let failed = draft().await.unwrap();
    assert_eq!(failed.status(), StatusCode::BAD_GATEWAY);
    let body: Value = failed.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("Write the reply yourself"), "{body}");
    let page = ann.post(&format!("/panel/conversations/{id}/draft"), &[("text", ""), ("version", "0")]).await;
    assert!(page.body.contains("data-test=\"draft-error\""), "{}", page.body);
    // The operator sees the LLM failing, with its last success still known.
    let llm = server.connection_state("llm", |c| c["state"] == "down").await;
    assert!(llm["last_error"].as_str().unwrap().contains("LLM request failed"), "{llm}");
    assert!(llm["last_ok_at"].is_string(), "{llm}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_llm_there_is_no_draft_button_and_the_api_says_why() {
    let server = nlp_server(None).await;
    let store = server.engine().store().clone();
    switchboard_admin_web::accounts::create_account(store.as_ref(), "root@example.com", "Root", switchboard_models::Role::Admin, "a long enough password", None)
        .await
        .unwrap();
    let root = PanelClient::sign_in(&server.url(""), "root@example.com", "a long enough password").await;
    let token = root.new_api_token("ops").await;
    let http = reqwest::Client::new();
    let missing = http
        .post(server.url(&format!("/api/conversations/{}/draft", uuid::Uuid::now_v7())))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = missing.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("llm.base_url"), "{body}");

    // The service runs the model with the built-in intents; a reload says what it loaded.
    let reloaded: Value = http.post(server.url("/api/admin/intents/reload")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    assert_eq!(reloaded["reloaded"], true, "{reloaded}");
    assert!(reloaded["report"].as_str().unwrap().contains("39 intents"), "{reloaded}");
}

/// Customer lines through the real classifier and `step`, rendered as a transcript.
async fn transcript_with_model(classifier: &ModelClassifier, lines: &[&str]) -> String {
    let policy = switchboard_core::Policy::default();
    let start = chrono::Utc::now();
    let mut conversation = switchboard_models::Conversation::new(switchboard_models::ContactId::new(), switchboard_models::Channel::WebChat, start);
    let mut out = String::new();
    for text in lines {
        let c = classifier.classify(text).await;
        let input = switchboard_core::Input::CustomerMessage { text, classification: &c, has_attachments: false, resolver_available: false };
        let decision = switchboard_core::step(&conversation, &input, &policy, start);
        out.push_str(&format!("customer: {text}\n  intent {} ({:?}, urgency {:?})\n", c.intent, c.category, c.urgency));
        if let Some(j) = &c.judgement {
            let tone = switchboard_nlp::judge::Tone::of(c.sentiment);
            let topic = if j.off_topic { "off topic".to_string() } else { format!("{:?}", c.category) };
            out.push_str(&format!("  judged: {topic}, need {}, tone {tone:?}, priority {}\n", j.need, j.priority));
        }
        for reply in &decision.replies {
            let body = match &reply.body {
                switchboard_core::ReplyBody::Text(text) if text == &policy.clarifying_question => "<clarifying question>".to_string(),
                switchboard_core::ReplyBody::Text(text) if text == &policy.off_topic_reply => "<off-topic reply>".to_string(),
                switchboard_core::ReplyBody::Text(_) => "<the intent's answer>".to_string(),
                switchboard_core::ReplyBody::HandoffNotice => "<handoff notice>".to_string(),
                switchboard_core::ReplyBody::WaitingNotice => "<waiting notice>".to_string(),
            };
            out.push_str(&format!("  {}: {body}\n", reply.sender));
        }
        if let Some(reason) = &decision.escalated {
            let next = &decision.conversation;
            // A likelihood's last digits depend on the CPU's int8 products (with or without
            // VNNI); the transcript keeps the decision: the need, over the policy's bar.
            let described = match reason {
                switchboard_models::EscalationReason::NeedsPerson { need, likelihood } => {
                    assert!(*likelihood >= policy.escalate_at_least, "{text:?}: escalated at {likelihood}");
                    format!("needs a person: {need}, at least {:.0} % sure", policy.escalate_at_least * 100.0)
                }
                other => other.describe(),
            };
            out.push_str(&format!(
                "  escalated: {} (priority {}, category {})\n",
                described,
                next.priority.map_or("-".into(), |p| p.to_string()),
                next.category.map_or("-".into(), |c| c.to_string())
            ));
        }
        conversation = decision.conversation;
        if decision.escalated.is_some() {
            // The next line starts a fresh conversation with the bot.
            conversation = switchboard_models::Conversation::new(conversation.contact_id, conversation.channel, start);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalation_policy_with_the_real_model() {
    let cache = tempfile::tempdir().unwrap();
    // Borderline decisions (a refund demand near the escalation bar) read the same on every CPU
    // only with the exact model.
    let (classifier, _) = ModelClassifier::load(switchboard_tests::exact_encoders(), IntentsSource::BuiltIn, Some(cache.path().to_path_buf()), None, 0.0).expect("loads");
    let transcript = transcript_with_model(
        &classifier,
        &[
            "hi there",
            "how can I download my invoices?",
            "zxqv blorp fnord",
            "purple monkey dishwasher",
            "I want my money back for this month",
            "This is the worst service ever, absolutely unacceptable",
            "someone logged into my account and changed my email, urgent",
            "can I talk to a real person please",
        ],
    )
    .await;
    expect_test::expect![[r#"
        customer: hi there
          intent greeting (GeneralInquiry, urgency None)
          judged: GeneralInquiry, need greeting, tone Neutral, priority low
          bot: <the intent's answer>
        customer: how can I download my invoices?
          intent invoice_copy (Billing, urgency None)
          judged: Billing, need question, tone Neutral, priority low
          bot: <the intent's answer>
        customer: zxqv blorp fnord
          intent out_of_scope (GeneralInquiry, urgency None)
          judged: off topic, need other, tone Negative, priority low
          bot: <off-topic reply>
        customer: purple monkey dishwasher
          intent out_of_scope (TechnicalSupport, urgency None)
          judged: off topic, need other, tone Neutral, priority low
          bot: <off-topic reply>
        customer: I want my money back for this month
          intent refund_request (Billing, urgency None)
          judged: Billing, need complaint, tone Negative, priority low
          bot: <the intent's answer>
        customer: This is the worst service ever, absolutely unacceptable
          intent complaint (Complaint, urgency Elevated)
          judged: Complaint, need complaint, tone Negative, priority high
          bot: <handoff notice>
          escalated: needs a person: complaint, at least 50 % sure (priority high, category complaint)
        customer: someone logged into my account and changed my email, urgent
          intent out_of_scope (Account, urgency Critical)
          judged: Account, need harm_report, tone Neutral, priority urgent
          bot: <handoff notice>
          escalated: needs a person: harm_report, at least 50 % sure (priority urgent, category account)
        customer: can I talk to a real person please
          intent human_request (GeneralInquiry, urgency None)
          judged: GeneralInquiry, need human_request, tone Neutral, priority medium
          bot: <handoff notice>
          escalated: The customer asked for a person. (priority medium, category general_inquiry)
    "#]].assert_eq(&transcript);
}

/// The kinds of misjudgement users reported, each as a customer would write it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn judgement_on_the_reported_failure_kinds() {
    let cache = tempfile::tempdir().unwrap();
    let classifier = built_in(cache.path(), None, 0.0);
    let transcript = transcript_with_model(
        &classifier,
        &[
            "Quick question about your refund policy: can I return a sale item after 30 days?",
            "no rush at all, but could you tell me right now what the delivery fee to Leeds is?",
            "Third time I'm writing about the same broken heater. Nobody calls back. I'm done.",
            "There are two card payments of 89.99 on my statement that I never made.",
            "Nobody in our office can log in since 9am, the whole team is blocked",
            "I AM SO DONE WITH THIS COMPANY. CANCEL EVERYTHING.",
            "Stop charging my card. I cancelled in March.",
            "Könnte ich bitte mit jemandem vom Kundenservice sprechen?",
            "Je voudrais parler à un conseiller, s'il vous plaît",
            "Can you recommend a good film for tonight?",
            "Thanks so much, that fixed it! Have a great day",
            "Guten Morgen zusammen!",
            "Muchas gracias por la ayuda, muy amables",
        ],
    )
    .await;
    expect_test::expect![[r#"
        customer: Quick question about your refund policy: can I return a sale item after 30 days?
          intent refund_request (Billing, urgency None)
          judged: Billing, need question, tone Neutral, priority low
          bot: <the intent's answer>
        customer: no rush at all, but could you tell me right now what the delivery fee to Leeds is?
          intent order_status (Billing, urgency None)
          judged: Billing, need question, tone Neutral, priority low
          bot: <the intent's answer>
        customer: Third time I'm writing about the same broken heater. Nobody calls back. I'm done.
          intent complaint (Complaint, urgency Elevated)
          judged: Complaint, need complaint, tone Negative, priority high
          bot: <handoff notice>
          escalated: needs a person: complaint, at least 50 % sure (priority high, category complaint)
        customer: There are two card payments of 89.99 on my statement that I never made.
          intent double_charge (Billing, urgency Critical)
          judged: Billing, need harm_report, tone Neutral, priority urgent
          bot: <handoff notice>
          escalated: Intent `double_charge` is always handled by a person. (priority urgent, category billing)
        customer: Nobody in our office can log in since 9am, the whole team is blocked
          intent outage_report (TechnicalSupport, urgency Critical)
          judged: TechnicalSupport, need harm_report, tone Negative, priority urgent
          bot: <handoff notice>
          escalated: Intent `outage_report` is always handled by a person. (priority urgent, category technical_support)
        customer: I AM SO DONE WITH THIS COMPANY. CANCEL EVERYTHING.
          intent cancel_subscription (Complaint, urgency Elevated)
          judged: Complaint, need complaint, tone Negative, priority high
          bot: <handoff notice>
          escalated: needs a person: complaint, at least 50 % sure (priority high, category complaint)
        customer: Stop charging my card. I cancelled in March.
          intent cancel_subscription (Billing, urgency Elevated)
          judged: Billing, need complaint, tone Negative, priority high
          bot: <handoff notice>
          escalated: needs a person: complaint, at least 50 % sure (priority high, category billing)
        customer: Könnte ich bitte mit jemandem vom Kundenservice sprechen?
          intent out_of_scope (GeneralInquiry, urgency None)
          judged: GeneralInquiry, need human_request, tone Neutral, priority medium
          bot: <handoff notice>
          escalated: The customer asked for a person. (priority medium, category general_inquiry)
        customer: Je voudrais parler à un conseiller, s'il vous plaît
          intent out_of_scope (GeneralInquiry, urgency None)
          judged: GeneralInquiry, need human_request, tone Neutral, priority medium
          bot: <handoff notice>
          escalated: The customer asked for a person. (priority medium, category general_inquiry)
        customer: Can you recommend a good film for tonight?
          intent out_of_scope (GeneralInquiry, urgency None)
          judged: off topic, need question, tone Neutral, priority low
          bot: <off-topic reply>
        customer: Thanks so much, that fixed it! Have a great day
          intent thanks (GeneralInquiry, urgency None)
          judged: GeneralInquiry, need thanks, tone Positive, priority low
          bot: <the intent's answer>
        customer: Guten Morgen zusammen!
          intent greeting (GeneralInquiry, urgency None)
          judged: GeneralInquiry, need greeting, tone Positive, priority low
          bot: <the intent's answer>
        customer: Muchas gracias por la ayuda, muy amables
          intent thanks (GeneralInquiry, urgency None)
          judged: GeneralInquiry, need thanks, tone Positive, priority low
          bot: <the intent's answer>
    "#]].assert_eq(&transcript);
}

#[tokio::test]
async fn without_the_model_the_service_runs_on_keyword_rules() {
    let server = TestServer::start_with(|config| {
        config.nlp.enabled = true;
        config.nlp.model_dir = config.attachments.dir.with_file_name("no-model-here");
    })
    .await;
    let outcome = server.engine().handle(webchat_inbound("v9", None, 1, "hello")).await.unwrap();
    let classification = outcome.message.classification.unwrap();
    assert_eq!(classification.source, ClassificationSource::Keywords);
    assert!(classification.intent.is("greeting"));
    assert_eq!(outcome.replies.len(), 1, "the bot still answers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_is_acknowledged_before_a_slow_llm_answers_and_answers_keep_their_order() {
    let second = answered_after_a_message_the_llm_holds(false, "hey there, good morning").await;
    assert_eq!((second.intent.as_str(), second.source), ("greeting", ClassificationSource::Model));
}

/// A message the first stage is sure of could be answered as it is stored; it still waits for
/// the customer's earlier message, held by the LLM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_the_first_stage_is_sure_of_still_waits_for_the_answer_before_it() {
    let second = answered_after_a_message_the_llm_holds(true, "hello").await;
    assert_eq!((second.intent.as_str(), second.source), ("greeting", ClassificationSource::FirstStage));
}

/// A server with the model and a queue budget, so messages are classified before they are
/// stored (without one the wait has no bound and they are stored first); the budget is long
/// enough that a busy machine sheds nothing.
async fn classifying_before_storing(first_stage: bool) -> TestServer {
    TestServer::start_with_model(None, 2000, |config| {
        config.nlp.first_stage = first_stage;
        config.nlp.queue_budget_ms = 60_000;
    })
    .await
}

/// Without a queue budget the encoder's wait has no bound: the message is stored first and
/// acknowledged, its reply follows from `answer`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_queue_budget_a_message_is_stored_before_the_encoder_classifies_it() {
    let server = TestServer::start_with_model(None, 2000, |config| config.nlp.first_stage = false).await;
    let engine = server.engine();
    let received = engine.receive(webchat_inbound("v9", None, 1, "hey there, good morning")).await.unwrap();
    let store = engine.store();
    let unanswered = store.unanswered_messages(10).await.unwrap();
    assert_eq!(unanswered.iter().map(|m| m.seq).collect::<Vec<_>>(), [received.message.seq], "stored, waiting for its answer");
    let outcome = engine.answer(received).await.unwrap();
    assert_eq!(outcome.replies.len(), 1);
    assert_eq!(outcome.message.classification.map(|c| c.source), Some(ClassificationSource::Model));
}

/// A message the sentence encoder classifies, with no hosted LLM to ask, is stored with the
/// bot's step in one write: once `receive` returns, before any `answer`, the message is
/// classified and its reply is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_the_sentence_encoder_classifies_is_stored_with_its_reply() {
    let server = classifying_before_storing(false).await;
    let engine = server.engine();
    let received = engine.receive(webchat_inbound("v9", None, 1, "hey there, good morning")).await.unwrap();
    let store = engine.store();
    let unanswered = store.unanswered_messages(10).await.unwrap();
    assert!(unanswered.is_empty(), "stored classified, not waiting for its answer: {unanswered:?}");
    let stored = store.conversation_messages(received.conversation.id, 0, 10).await.unwrap();
    let senders: Vec<_> = stored.iter().map(|message| message.sender.clone()).collect();
    assert_eq!(senders, [Sender::Customer, Sender::Bot], "the message and the bot's reply, stored before any answer");
    let classification = stored[0].classification.as_ref().expect("classified as stored");
    assert_eq!((classification.intent.as_str(), classification.source), ("greeting", ClassificationSource::Model));
    assert_eq!(stored[1].text.as_str(), classification.answer.as_deref().expect("a greeting has an answer"));
    let outcome = engine.answer(received).await.unwrap();
    assert_eq!(outcome.replies.len(), 1, "answering it again changes nothing and reports its reply");
    assert_eq!(store.conversation_messages(outcome.conversation.id, 0, 10).await.unwrap().len(), 2);
}

/// Two messages of one sender handed over at once (as Discord's events are): the first waits
/// for the sentence encoder, the second the first stage decides at once. They are still stored
/// in the order they arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_decided_sooner_does_not_overtake_its_senders_earlier_one() {
    let server = classifying_before_storing(true).await;
    let engine = server.engine();
    let slow = "my parcel was supposed to come on tuesday and the tracking page has said nothing since";
    let (first, second) = tokio::join!(
        engine.receive(webchat_inbound("v9", None, 1, slow)),
        engine.receive(webchat_inbound("v9", None, 2, "hello")),
    );
    let (first, second) = (first.unwrap(), second.unwrap());
    let source = |message: &switchboard_models::Message| message.classification.as_ref().map(|c| c.source);
    assert_eq!(source(&first.message), Some(ClassificationSource::Model), "the first needed the sentence encoder");
    assert_eq!(source(&second.message), Some(ClassificationSource::FirstStage), "the second was decided at once");
    assert!(first.message.seq < second.message.seq, "stored in the order they arrived: {} then {}", first.message.seq, second.message.seq);
}

/// A widget's socket reads a customer's next messages while the first is still with the
/// sentence encoder, and classifies them meanwhile: those the first stage decides at once still
/// wait for their turn, so every message is stored and acknowledged in the order sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_widgets_quick_messages_are_stored_and_acknowledged_in_the_order_sent() {
    let server = classifying_before_storing(true).await;
    let (visitor, token) = server.new_visitor().await;
    let mut widget = server.connect(&token).await;
    widget.next_of("ready").await;
    let texts = [
        "my parcel was supposed to come on tuesday and the tracking page has said nothing since",
        "hello",
        "the invoice from last month lists a charge i never made and nobody has explained it",
        "hi",
        "thanks",
    ];
    for (n, text) in texts.iter().enumerate() {
        widget.say(&format!("c{n}"), text).await;
    }
    let mut acked = Vec::new();
    while acked.len() < texts.len() {
        let ack = widget.next_of("ack").await;
        acked.push((ack["client_id"].as_str().unwrap().to_string(), ack["message"]["seq"].as_i64().unwrap()));
    }
    let sent: Vec<String> = (0..texts.len()).map(|n| format!("c{n}")).collect();
    assert_eq!(acked.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>(), sent, "acknowledged in the order sent");
    assert!(acked.windows(2).all(|w| w[0].1 < w[1].1), "stored in the order sent: {acked:?}");
    let store = server.engine().store();
    let mut sources = Vec::new();
    for id in &sent {
        let message = store.message_by_external_id(switchboard_models::Channel::WebChat, &format!("{visitor}:{id}")).await.unwrap().unwrap();
        sources.push(message.classification.map(|c| c.source));
    }
    let model = Some(ClassificationSource::Model);
    let at_once = Some(ClassificationSource::FirstStage);
    assert_eq!(sources, [model, at_once, model, at_once, at_once], "later messages decided sooner than earlier ones");
}

/// A customer's out-of-scope message waits for a held LLM while a greeting (`second`) follows:
/// both are acknowledged at once, and answered in the order they were sent. Returns the
/// greeting's classification.
async fn answered_after_a_message_the_llm_holds(first_stage: bool, second: &str) -> switchboard_models::Classification {
    let fake = FakeLlm::start(Behaviour::Held(r#"{"intent": "order_status"}"#.into())).await;
    // Far longer than the test waits: only `release` lets the LLM answer.
    let server = TestServer::start_with_model(Some(fake.base_url()), 120_000, |config| config.nlp.first_stage = first_stage).await;
    let (visitor, token) = server.new_visitor().await;
    let mut widget = server.connect(&token).await;
    widget.next_of("ready").await;

    // Out of scope for the local model, so the LLM is asked, and it holds its answer.
    widget.say("c1", "who won the football world cup in 1998").await;
    assert_eq!(widget.next_of("ack").await["client_id"], "c1", "stored and acknowledged while the LLM thinks");
    fake.asked(1, Duration::from_secs(20)).await;
    // The local model is sure of this one, but it is answered after the first.
    widget.say("c2", second).await;
    assert_eq!(widget.next_of("ack").await["client_id"], "c2");
    // Had the second been answered while the first waits for the LLM, its reply would come first.
    fake.release();
    let first = widget.next_reply().await;
    let second = widget.next_reply().await;
    let store = server.engine().store();
    let classified = |client_id: &str| {
        let external_id = format!("{visitor}:{client_id}");
        async move {
            let message = store.message_by_external_id(switchboard_models::Channel::WebChat, &external_id).await.unwrap().unwrap();
            message.classification.expect("classified once answered")
        }
    };
    let (c1, c2) = (classified("c1").await, classified("c2").await);
    assert_eq!((c1.intent.as_str(), c1.source), ("order_status", ClassificationSource::Llm));
    assert_eq!(first["text"].as_str(), c1.answer.as_deref(), "the first message is answered first");
    assert_eq!(second["text"].as_str(), c2.answer.as_deref());
    assert!(first["seq"].as_i64() < second["seq"].as_i64());
    c2
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_llm_summary_asked_when_the_server_stopped_is_asked_again_after_the_restart() {
    // Every request waits: the summary is in flight when the server stops.
    let fake = FakeLlm::start(Behaviour::Held("never seen".into())).await;
    let mut server = nlp_server(Some(&fake)).await;
    let inbound = |n: u32, text: &str| webchat_inbound("v9", Some("Dana"), n, text);
    let outcome = server.engine().handle(inbound(1, "I want to talk to a human, you charged me twice for March")).await.unwrap();
    assert!(outcome.escalated);
    let id = outcome.conversation.id;
    let asked = |fake: &FakeLlm| fake.requests().iter().filter(|r| r["messages"][0]["content"].as_str().is_some_and(|c| c.contains("Summarise"))).count();
    let deadline = Instant::now() + Duration::from_secs(20);
    while asked(&fake) == 0 {
        assert!(Instant::now() < deadline, "the summary was never asked for");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.restart().await;
    fake.set(Behaviour::Helpful {
        intent: None,
        summary: "Customer was charged twice for March.".into(),
        draft: "Sorry about that.".into(),
    });
    fake.release();
    let store = server.engine().store().clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let summary = store.conversation(id).await.unwrap().unwrap().escalation.unwrap().summary;
        if summary == "Customer was charged twice for March." {
            break;
        }
        assert!(Instant::now() < deadline, "the summary wanted before the stop was never written: {summary}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(asked(&fake) >= 2, "asked again after the restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_are_answered_in_the_language_they_write() {
    let handoff_es = "Ahora no hay nadie del equipo conectado; te responderemos aquí en cuanto podamos.";
    let server = TestServer::start_with(move |config| {
        config.nlp.enabled = true;
        config.nlp.model_dir = switchboard_tests::model_dir();
        config.nlp.cache_dir = config.attachments.dir.with_file_name("nlp-cache");
        config.bot.languages.insert("es".into(), [("handoff_offline".to_string(), handoff_es.to_string())].into());
    })
    .await;
    let said = |outcome: &switchboard_core::HandleOutcome| outcome.replies.iter().map(|m| m.text.clone()).collect::<Vec<_>>().join(" | ");
    // An intent's answer in the message's language (the shipped intents say thanks in Spanish).
    let thanks = server.engine().handle(webchat_inbound("v-es", Some("Lucía"), 1, "¡Muchas gracias por toda tu ayuda, de verdad!")).await.unwrap();
    assert_eq!(said(&thanks), "¡De nada! ¿Hay algo más en lo que pueda ayudarte?", "{:?}", thanks.message.classification);
    // The bot's own texts in the conversation's language, from [bot.languages.es].
    let handoff = server.engine().handle(webchat_inbound("v-es", Some("Lucía"), 2, "Quiero hablar con una persona de verdad, por favor")).await.unwrap();
    assert!(handoff.escalated, "{:?}", handoff.message.classification);
    assert_eq!(said(&handoff), handoff_es);
    // Someone writing in English hears the defaults.
    let english = server.engine().handle(webchat_inbound("v-en", Some("Ann"), 1, "Thank you so much for all your help!")).await.unwrap();
    assert_eq!(said(&english), "You're welcome! Is there anything else I can help with?");

    // "hallo" is too short to tell; the language the channel reports decides (Telegram's
    // language_code, the widget page's lang), and the conversation keeps it.
    let reported = |visitor: &str, n: u32, text: &str, language: Option<&str>| switchboard_models::Inbound {
        reported_language: language.map(str::to_string),
        ..webchat_inbound(visitor, None, n, text)
    };
    let german = server.engine().handle(reported("v-de", 1, "hallo", Some("de-AT"))).await.unwrap();
    assert_eq!(said(&german), "Hallo! Ich bin der Support-Assistent. Wie kann ich helfen?");
    assert_eq!(german.conversation.language.as_deref(), Some("de"));
    let unknown = server.engine().handle(reported("v-xx", 1, "hallo", Some("tlh"))).await.unwrap();
    assert_eq!(said(&unknown), "Hi! I'm the support assistant. How can I help you today?", "a language the bot does not tell apart is ignored");
    // A text that tells its language wins over the channel's.
    let written = server.engine().handle(reported("v-de2", 1, "¡Muchas gracias por toda tu ayuda, de verdad!", Some("de"))).await.unwrap();
    assert_eq!(said(&written), "¡De nada! ¿Hay algo más en lo que pueda ayudarte?");
    // The widget sends its page's language with each message.
    let (_, token) = server.new_visitor().await;
    let mut widget = server.connect(&token).await;
    widget.next_of("ready").await;
    widget.send_json(serde_json::json!({"type": "send", "client_id": "m1", "text": "hola", "language": "es-MX"})).await;
    assert_eq!(widget.next_reply().await["text"], "¡Hola! Soy el asistente de soporte. ¿En qué puedo ayudarte?");
}
