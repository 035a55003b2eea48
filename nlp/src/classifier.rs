//! The model classifier: sentence encoder + intent head trained from the intents file, local
//! tone/urgency/language, and the hosted LLM when the head is unsure.

use crate::backlog::EncoderBacklog;
use crate::embedding_cache::EmbeddingCache;
use crate::encoder::{EncoderError, SentenceEncoder};
use crate::encoder_use::JoinedEncoder;
use crate::head::TrainParams;
use crate::intents::{IntentSet, IntentsError};
use crate::judgement::{first_stage_judgement_params, judgement_params, Judged, JudgementModel};
use crate::llm::{IntentChoice, LlmChoice, LlmClient};
use crate::model::{IntentModel, LabelledText, Ranking};
use crate::signals;
use async_trait::async_trait;
use handlebars::Handlebars;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use switchboard_core::ports::{Classifier, LocalClassification};
use switchboard_models::{Category, Classification, ClassificationSource, IntentName, IntentScore, Judgement, Need, Priority};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Intents(#[from] IntentsError),
    #[error(transparent)]
    Encoder(#[from] EncoderError),
}

/// Where the intents come from: the admin's file, or the built-in default.
#[derive(Debug, Clone, PartialEq)]
pub enum IntentsSource {
    File(PathBuf),
    BuiltIn,
}

impl IntentsSource {
    fn load(&self) -> Result<IntentSet, IntentsError> {
        match self {
            Self::File(path) => IntentSet::load(path),
            Self::BuiltIn => IntentSet::parse(Path::new("(built-in intents)"), crate::intents::DEFAULT_INTENTS),
        }
    }
}

/// The encoders a model classifier reads a message with.
#[derive(Clone)]
pub struct Encoders {
    /// Ranks the intents and, with `multilingual`, feeds the judgement.
    pub sentence: Arc<dyn SentenceEncoder>,
    /// A second view for the judgement that places the same request in other languages close
    /// to the English one (`MultilingualEncoder`); without it the judgement reads `sentence`.
    pub multilingual: Option<Arc<dyn SentenceEncoder>>,
}

impl From<Arc<dyn SentenceEncoder>> for Encoders {
    fn from(sentence: Arc<dyn SentenceEncoder>) -> Self {
        Self { sentence, multilingual: None }
    }
}

impl Encoders {
    /// What the judgement's heads are trained on and read.
    pub fn for_judgement(&self) -> Arc<dyn SentenceEncoder> {
        match &self.multilingual {
            Some(second) => Arc::new(JoinedEncoder::new(self.sentence.clone(), second.clone())),
            None => self.sentence.clone(),
        }
    }
}

/// What a (re)load did, for the log and the reload API.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadReport {
    pub version: u32,
    pub intents: usize,
    pub examples: usize,
    /// The head came from the cache rather than being trained.
    pub cached: bool,
    pub out_of_scope_threshold: f32,
    pub millis: u128,
}

struct Trained {
    intents: IntentSet,
    model: IntentModel,
    /// The same intents on their examples' words alone (no embedding), calibrated on its own:
    /// the fast path under overload when there is no first stage.
    words_only: IntentModel,
    first_stage: Option<FirstStage>,
}

/// The same intents, and the judgement, on static token vectors distilled from the sentence
/// encoder: it answers plain messages it is sure of without the sentence encoder, and every
/// message shed under overload.
#[derive(Clone)]
struct FirstStage {
    encoder: Arc<dyn SentenceEncoder>,
    model: IntentModel,
    judgement: Arc<JudgementModel>,
}

impl FirstStage {
    /// The text's static vector and its intents, most likely first.
    fn embed_and_rank(&self, text: &str) -> Result<(Vec<f32>, Ranking), EncoderError> {
        let embedding = self.encoder.encode(&[text])?.pop().unwrap_or_default();
        let ranking = self.model.rank(text, &embedding);
        Ok((embedding, ranking))
    }

    fn rank_and_judge(&self, text: &str) -> Result<(Ranking, Judged), EncoderError> {
        let (embedding, ranking) = self.embed_and_rank(text)?;
        Ok((ranking, self.judgement.judge(text, &embedding)))
    }

}

/// Whether the first stage takes a message without the sentence encoder: sure of the intent
/// (`model.sure_at`), and the message plain: English (the static vectors are English word
/// pieces; `language` as `message_language` resolves it, so the channel's counts for texts too
/// short to tell), on topic, a question or a social message, calm, not pressing, nothing a
/// person should take now. Anything else is the sentence encoder's.
pub fn first_stage_takes(language: Option<&str>, model: &IntentModel, ranking: &Ranking, judged: &Judged) -> bool {
    let confidence = ranking.first().map_or(0.0, |&(_, p)| p);
    confidence >= model.sure_at.max(model.out_of_scope_threshold)
        && judged.category.is_some()
        && matches!(judged.need, Need::Question | Need::Greeting | Need::Thanks | Need::Goodbye)
        && matches!(judged.priority, Priority::Medium | Priority::Low)
        && judged.sentiment > -PLAIN_TONE_ABOVE
        && judged.escalate < PLAIN_ESCALATE_BELOW
        && language.is_none_or(|language| language == "en")
}

/// The language the text is in, or, when it does not tell, the one its channel reported.
pub fn message_language(text: &str, reported: Option<&str>) -> Option<String> {
    signals::language(text).or_else(|| reported.map(str::to_string))
}

/// A plain message's tone is above minus this (P(positive) − P(negative)).
const PLAIN_TONE_ABOVE: f32 = 0.3;
/// A plain message's escalation probability is below this (the service's bar is 0.5).
const PLAIN_ESCALATE_BELOW: f32 = 0.25;

pub struct ModelClassifier {
    local: Arc<Local>,
    /// Messages waiting for the encoder thread, which takes all that are waiting as one batch.
    pending: std::sync::mpsc::Sender<Request>,
    source: IntentsSource,
    cache_dir: Option<PathBuf>,
    llm: Option<Arc<LlmClient>>,
    /// Below this confidence the LLM (when configured) is asked to choose.
    llm_below: f32,
    /// The LLM may answer messages that fit no intent (`llm.answer_out_of_scope`).
    llm_answers: bool,
}

/// Intents parsed and trained, not yet in use (`ModelClassifier::prepare`).
pub struct Prepared {
    trained: Trained,
    pub report: LoadReport,
}

/// The part that runs on a blocking thread.
struct Local {
    encoder: Arc<dyn SentenceEncoder>,
    /// The judgement's second view, when installed.
    multilingual: Option<Arc<dyn SentenceEncoder>>,
    trained: RwLock<Arc<Trained>>,
    judgement: Arc<JudgementModel>,
    templates: Handlebars<'static>,
    /// A message no encoder thread has begun within this takes the fast path (0: never).
    queue_budget_nanos: std::sync::atomic::AtomicU64,
    /// Messages waiting for an encoder thread (watched: `queue_emptied`).
    waiting: tokio::sync::watch::Sender<usize>,
    /// How far behind that queue is: past half the budget, new messages take the fast path at once.
    backlog: EncoderBacklog,
    /// How long the engine's steps take to commit; past an eighth of the budget, new messages take the
    /// words-only fast path at once (no judgement: their steps write less).
    commit_lag: std::sync::OnceLock<Arc<switchboard_core::CommitLag>>,
    /// The first stage's encoder, once set (`ModelClassifier::with_first_stage`); reloads
    /// train the first stage with it.
    first_stage_encoder: std::sync::OnceLock<Arc<dyn SentenceEncoder>>,
    /// The encoder threads' kernel thread ids (Linux; for /proc), all known once loaded.
    encoder_threads: std::sync::OnceLock<Vec<i64>>,
}

impl ModelClassifier {
    /// Loads the intents and trains (or loads the cached) head. Blocking: seconds on first run.
    pub fn load(
        encoders: impl Into<Encoders>,
        source: IntentsSource,
        cache_dir: Option<PathBuf>,
        llm: Option<Arc<LlmClient>>,
        llm_below: f32,
    ) -> Result<(Self, LoadReport), LoadError> {
        let encoders = encoders.into();
        let encoder = encoders.sentence.clone();
        let (trained, report) = train(encoder.as_ref(), None, &source, cache_dir.as_deref())?;
        let judgement = judgement_for(encoders.for_judgement().as_ref(), cache_dir.as_deref(), &judgement_params())?;
        let mut templates = Handlebars::new();
        templates.set_strict_mode(false);
        let local = Arc::new(Local {
            encoder,
            multilingual: encoders.multilingual,
            trained: RwLock::new(Arc::new(trained)),
            judgement,
            templates,
            queue_budget_nanos: std::sync::atomic::AtomicU64::new(0),
            waiting: tokio::sync::watch::Sender::new(0),
            backlog: EncoderBacklog::new(),
            commit_lag: std::sync::OnceLock::new(),
            first_stage_encoder: std::sync::OnceLock::new(),
            encoder_threads: std::sync::OnceLock::new(),
        });
        let pending = spawn_encoder_threads(local.clone());
        let classifier = Self { local, pending, source, cache_dir, llm, llm_below, llm_answers: false };
        Ok((classifier, report))
    }

    /// Lets the LLM answer messages that fit no intent itself (off by default: the bot then
    /// says only what the intents file says).
    pub fn with_llm_answers(mut self, allowed: bool) -> Self {
        self.llm_answers = allowed;
        self
    }

    /// Adds the first stage on `encoder` (static token vectors, `StaticEncoder`): plain messages
    /// it is sure of skip the sentence encoder, and messages shed under overload are ranked and
    /// judged by it rather than on their words alone. Blocking: trains its heads (cached).
    pub fn with_first_stage(self, encoder: Arc<dyn SentenceEncoder>) -> Result<Self, LoadError> {
        let current = self.local.current();
        let stage = train_first_stage(&encoder, &current.intents, self.cache_dir.as_deref(), &TrainParams::default())?;
        let trained = Trained {
            intents: current.intents.clone(),
            model: current.model.clone(),
            words_only: current.words_only.clone(),
            first_stage: Some(stage),
        };
        *self.local.trained.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(trained);
        let _ = self.local.first_stage_encoder.set(encoder);
        Ok(self)
    }

    /// Under overload, a message that waited longer than `budget` for the encoder is classified
    /// without it (`ClassificationSource::FastPath`: by the first stage, or on its words alone
    /// without one) so replies keep coming, and while the queue is behind by half the budget new
    /// messages take that path at once (`classify_now`: stored with their answer in one write);
    /// while the store is behind (`with_commit_lag`) new and waiting messages take the
    /// words-only path. Zero never skips the encoder. None until set: the service sets `nlp.queue_budget_ms`.
    pub fn with_queue_budget(self, budget: Duration) -> Self {
        self.local.queue_budget_nanos.store(budget.as_nanos().min(u64::MAX as u128) as u64, std::sync::atomic::Ordering::Relaxed);
        self
    }

    /// Reads how long the engine's steps take to commit (`Engine::with_commit_lag`): while the
    /// average is past an eighth of the queue budget, the store is what falls behind, and every new
    /// message is classified on its words alone, without a judgement (a judged message keeps its
    /// conversation's priority current, one more row for the writer).
    pub fn with_commit_lag(self, lag: Arc<switchboard_core::CommitLag>) -> Self {
        let _ = self.local.commit_lag.set(lag);
        self
    }

    /// Returns once no message waits for the encoder: shed messages stay queued until an
    /// encoder thread, which runs on spare CPU only, next looks.
    pub async fn queue_emptied(&self) {
        let _ = self.local.waiting.subscribe().wait_for(|depth| *depth == 0).await;
    }

    /// The encoder threads' kernel thread ids (Linux; empty elsewhere): their scheduling can be
    /// read in `/proc/self/task/<id>`.
    pub fn encoder_thread_ids(&self) -> Vec<i64> {
        self.local.encoder_threads.get().cloned().unwrap_or_default()
    }

    /// Re-reads the intents file. On any error the running model stays as it was.
    pub fn reload(&self) -> Result<LoadReport, LoadError> {
        let (trained, report) = train(self.local.encoder.as_ref(), self.local.first_stage_encoder.get(), &self.source, self.cache_dir.as_deref())?;
        *self.local.trained.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(trained);
        Ok(report)
    }

    /// Parses and trains intents text (`origin` names it in errors) without putting it in
    /// use. Blocking: seconds when the head is not cached.
    pub fn prepare(&self, origin: &Path, text: &str) -> Result<Prepared, LoadError> {
        let intents = IntentSet::parse(origin, text)?;
        let (trained, report) =
            train_set(self.local.encoder.as_ref(), self.local.first_stage_encoder.get(), intents, self.cache_dir.as_deref(), Instant::now())?;
        Ok(Prepared { trained, report })
    }

    /// The share of `labelled` (text, intent name) that `prepared` (`None`: the intents in
    /// use) puts in the labelled intent, on the intent head alone. Blocking.
    pub fn accuracy(&self, prepared: Option<&Prepared>, labelled: &[(String, String)]) -> Result<f64, EncoderError> {
        if labelled.is_empty() {
            return Ok(1.0);
        }
        let in_use;
        let trained = match prepared {
            Some(prepared) => &prepared.trained,
            None => {
                in_use = self.local.current();
                in_use.as_ref()
            }
        };
        let texts: Vec<&str> = labelled.iter().map(|(text, _)| text.as_str()).collect();
        let embeddings = self.local.encoder.encode(&texts)?;
        let model = &trained.model;
        let right = labelled
            .iter()
            .zip(&embeddings)
            .filter(|((text, intent), embedding)| {
                let predicted = match model.rank(text, embedding).first() {
                    Some(&(label, p)) if p >= model.out_of_scope_threshold => model.labels[label].as_str(),
                    _ => IntentName::OUT_OF_SCOPE,
                };
                predicted == intent
            })
            .count();
        Ok(right as f64 / labelled.len() as f64)
    }

    /// Puts prepared intents in use.
    pub fn install(&self, prepared: Prepared) -> LoadReport {
        *self.local.trained.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(prepared.trained);
        prepared.report
    }

    /// The SHA-256 of the intents text in use.
    pub fn digest_in_use(&self) -> String {
        self.local.current().intents.digest.clone()
    }

    /// Asks the LLM to choose when the head is unsure; any LLM failure keeps the local result.
    async fn consult_llm(&self, llm: &LlmClient, text: &str, mut local: Classification) -> Classification {
        let trained = self.local.current();
        let choices: Vec<IntentChoice> = trained
            .intents
            .intents
            .iter()
            .map(|i| IntentChoice { name: i.name.clone(), examples: i.examples.clone() })
            .collect();
        match llm.choose_intent(text, &choices, self.llm_answers).await {
            Ok(LlmChoice::Intent(name)) => {
                let intent = trained.intents.get(&name).expect("choose_intent only returns listed intents");
                local.alternatives.retain(|a| a.intent != name);
                if !local.intent.is(IntentName::OUT_OF_SCOPE) {
                    local.alternatives.insert(0, IntentScore { intent: local.intent.clone(), confidence: local.confidence });
                    local.alternatives.truncate(3);
                }
                self.local.apply_intent(&mut local, intent, text);
                local.confidence = LLM_CONFIDENCE;
                local.source = ClassificationSource::Llm;
                // The LLM found an intent that fits: the message is not off topic after all.
                if let Some(judgement) = local.judgement.as_mut() {
                    judgement.off_topic = false;
                }
            }
            Ok(choice @ (LlmChoice::Nothing | LlmChoice::Answer(_))) => {
                // The LLM agrees nothing fits: report out of scope rather than a weak guess.
                if !local.intent.is(IntentName::OUT_OF_SCOPE) {
                    local.alternatives.insert(0, IntentScore { intent: local.intent.clone(), confidence: local.confidence });
                    local.alternatives.truncate(3);
                    local.intent = out_of_scope();
                    local.always_escalate = false;
                    local.collect_document = None;
                }
                local.answer = match choice {
                    LlmChoice::Answer(reply) => {
                        local.confidence = LLM_CONFIDENCE;
                        Some(reply)
                    }
                    _ => None,
                };
                local.source = ClassificationSource::Llm;
            }
            Err(e) => tracing::warn!(error = %e, "LLM fallback failed; using the local classification"),
        }
        local
    }
}

/// Why a message took the fast path instead of the sentence encoder: the label of
/// `switchboard_classifications_fast_path_total`, so that an overload says what tipped it.
#[derive(Clone, Copy)]
enum ShedReason {
    /// The engine's steps commit slower than an eighth of the budget (`store_behind`).
    StoreBehind,
    /// The encoder's queue would keep a new message past half the budget (`encoder_behind`).
    EncoderBehind,
    /// The message waited the whole budget for the encoder: in its queue, or begun and not
    /// done within one more budget.
    WaitedPastBudget,
}

impl ShedReason {
    fn count(self) {
        let reason = match self {
            Self::StoreBehind => "store_behind",
            Self::EncoderBehind => "encoder_behind",
            Self::WaitedPastBudget => "waited_past_budget",
        };
        metrics::counter!("switchboard_classifications_fast_path_total", "reason" => reason).increment(1);
    }
}

impl Local {
    fn current(&self) -> Arc<Trained> {
        self.trained.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Without the sentence encoder: the first stage (or, without one, the words-only intent
    /// head with no judgement), sure or not: microseconds instead of milliseconds, less sure.
    fn classify_fast(&self, text: &str, reported: Option<&str>) -> Classification {
        let trained = self.current();
        let by_first_stage = trained.first_stage.as_ref().and_then(|stage| stage.rank_and_judge(text).ok());
        self.fast_path(&trained, text, message_language(text, reported), by_first_stage)
    }

    /// A message shed to the fast path, counted with its reason. While the store is behind, on
    /// its words alone without a judgement (a judged message keeps its conversation's priority
    /// current, one more row to write); otherwise `classify_fast`.
    fn classify_shed(&self, reason: ShedReason, text: &str, reported: Option<&str>) -> Classification {
        reason.count();
        match reason {
            ShedReason::StoreBehind => self.fast_path(&self.current(), text, message_language(text, reported), None),
            ShedReason::EncoderBehind | ShedReason::WaitedPastBudget => self.classify_fast(text, reported),
        }
    }

    /// `classify_fast` with the first stage's ranking and judgement when it made them already.
    fn fast_path(&self, trained: &Trained, text: &str, language: Option<String>, by_first_stage: Option<(Ranking, Judged)>) -> Classification {
        let mut classification = match (trained.first_stage.as_ref(), by_first_stage) {
            (Some(stage), Some((ranking, judged))) => self.describe_with(trained, &stage.model, text, language, &ranking, Some(judged)),
            _ => {
                let ranking = trained.words_only.rank(text, &[]);
                self.describe_with(trained, &trained.words_only, text, language, &ranking, None)
            }
        };
        classification.source = ClassificationSource::FastPath;
        classification
    }

    /// Without waiting: the first stage's classification when it takes the message
    /// (`first_stage_takes`), or, while the encoder's queue is behind (`encoder_behind`), the
    /// fast path's. None: the message is the sentence encoder's.
    fn classify_at_once(&self, text: &str, reported: Option<&str>) -> Option<Classification> {
        let trained = self.current();
        let shed = |reason: ShedReason, by_first_stage: Option<(Ranking, Judged)>, language: Option<String>| {
            reason.count();
            self.fast_path(&trained, text, language, by_first_stage)
        };
        if self.store_behind() {
            return Some(self.classify_shed(ShedReason::StoreBehind, text, reported));
        }
        let behind = self.encoder_behind();
        let Some((stage, (embedding, ranking))) =
            trained.first_stage.as_ref().and_then(|stage| Some((stage, stage.embed_and_rank(text).ok()?)))
        else {
            return behind.then(|| shed(ShedReason::EncoderBehind, None, message_language(text, reported)));
        };
        // Most messages it declines are not sure enough: judging them would be wasted work.
        let sure = ranking.first().is_some_and(|&(_, p)| p >= stage.model.sure_at);
        if !sure && !behind {
            return None;
        }
        let judged = stage.judgement.judge(text, &embedding);
        let language = message_language(text, reported);
        if sure && first_stage_takes(language.as_deref(), &stage.model, &ranking, &judged) {
            let mut classification = self.describe_with(&trained, &stage.model, text, language, &ranking, Some(judged));
            classification.source = ClassificationSource::FirstStage;
            metrics::counter!("switchboard_classifications_first_stage_total").increment(1);
            return Some(classification);
        }
        behind.then(|| shed(ShedReason::EncoderBehind, Some((ranking, judged)), language))
    }

    /// Whether the engine's steps commit slower than an eighth of the budget on average (they
    /// commit in a few milliseconds while the writer keeps up; tens of milliseconds is its queue
    /// growing, and judged messages, which write their conversation too, made it grow
    /// faster: at twice capacity a half-budget mark let the queue reach seconds); never without
    /// a budget.
    fn store_behind(&self) -> bool {
        match (self.commit_lag.get(), self.queue_budget()) {
            (Some(lag), Some(budget)) => lag.over(budget / STORE_BEHIND_AT_BUDGET_SHARE),
            _ => false,
        }
    }

    /// Whether a message queued now would wait past half the budget (`EncoderBacklog::behind`);
    /// never without a budget.
    fn encoder_behind(&self) -> bool {
        self.queue_budget().is_some_and(|budget| self.backlog.behind(Instant::now(), *self.waiting.borrow(), budget / 2))
    }

    /// Takes a batch off the queue: those whose caller stopped waiting are dropped, those over
    /// the budget, or all while the store is behind, are sent back to be shed (their callers take the fast path on their own
    /// tasks: under overload this thread runs last), the rest are taken for the encoder (their
    /// callers then wait one more budget: the work is begun).
    fn shed_late(&self, batch: Vec<Request>) -> Vec<Request> {
        self.waiting.send_modify(|depth| *depth -= batch.len());
        let now = Instant::now();
        let oldest = batch.iter().map(|request| now.saturating_duration_since(request.queued_at)).max().unwrap_or_default();
        self.backlog.taken(now, oldest);
        metrics::gauge!("switchboard_encoder_queue_depth").set(*self.waiting.borrow() as f64);
        let budget = self.queue_budget();
        // While steps commit slowly the encoder takes no CPU at all: its idle-priority share
        // still slowed the store's writer (twice capacity: about a tenth fewer steps a second).
        let store_behind = self.store_behind();
        let mut taken = Vec::with_capacity(batch.len());
        for request in batch {
            let waited = request.queued_at.elapsed();
            metrics::histogram!("switchboard_encoder_wait_seconds").record(waited.as_secs_f64());
            if request.answer.is_closed() {
                continue;
            }
            if store_behind || budget.is_some_and(|budget| waited > budget) {
                if request.turn.give_up() {
                    let reason = if store_behind { ShedReason::StoreBehind } else { ShedReason::WaitedPastBudget };
                    let _ = request.answer.send(Encoded::Shed(reason));
                }
            } else if request.turn.take() {
                taken.push(request);
            }
        }
        taken
    }

    /// How long a message may wait for the encoder; None: as long as it takes.
    fn queue_budget(&self) -> Option<Duration> {
        let nanos = self.queue_budget_nanos.load(std::sync::atomic::Ordering::Relaxed);
        (nanos > 0).then(|| Duration::from_nanos(nanos))
    }

    /// Each message's text and the language its channel reported.
    fn classify_batch(&self, messages: &[(&str, Option<&str>)]) -> Vec<Classification> {
        let trained = self.current();
        let texts: Vec<&str> = messages.iter().map(|(text, _)| *text).collect();
        // The judgement's second view; should it fail, these messages keep their intents and
        // go without a judgement (its heads read both vectors or none).
        let second = self.multilingual.as_ref().map(|encoder| {
            encoder.encode(&texts).inspect_err(|e| {
                tracing::error!(error = %e, "the multilingual encoder failed; these messages are classified without a judgement")
            })
        });
        match self.encoder.encode(&texts) {
            Ok(embeddings) => messages
                .iter()
                .zip(embeddings)
                .enumerate()
                .map(|(i, (&(text, reported), embedding))| {
                    let judged = match &second {
                        None => Some(self.judgement.judge(text, &embedding)),
                        Some(Ok(second)) => Some(self.judgement.judge(text, &JoinedEncoder::join(&embedding, &second[i]))),
                        Some(Err(_)) => None,
                    };
                    let mut classification = self.describe(&trained, text, reported, &trained.model.rank(text, &embedding), judged);
                    classification.embedding = Some(switchboard_models::Embedding::quantise(&embedding));
                    classification
                })
                .collect(),
            Err(e) => {
                tracing::error!(error = %e, "the sentence encoder failed; treating the messages as out of scope");
                messages.iter().map(|&(text, reported)| self.describe(&trained, text, reported, &Vec::new(), None)).collect()
            }
        }
    }

    fn describe(&self, trained: &Trained, text: &str, reported: Option<&str>, ranking: &Ranking, judged: Option<Judged>) -> Classification {
        self.describe_with(trained, &trained.model, text, message_language(text, reported), ranking, judged)
    }

    /// `describe` with the ranking's model (its labels and out-of-scope threshold) and the
    /// message's language (`message_language`).
    fn describe_with(
        &self,
        trained: &Trained,
        model: &IntentModel,
        text: &str,
        language: Option<String>,
        ranking: &Ranking,
        judged: Option<Judged>,
    ) -> Classification {
        let intent_of = |label: usize| trained.intents.get(&IntentName::parse(&model.labels[label]).expect("trained on valid names"));
        let (best, confidence) = ranking.first().copied().unwrap_or((usize::MAX, 0.0));
        let alternatives: Vec<IntentScore> = ranking
            .iter()
            .skip(1)
            .take(3)
            .map(|&(label, p)| IntentScore { intent: IntentName::parse(&model.labels[label]).expect("valid"), confidence: p })
            .collect();
        // The judgement, when there is one, replaces the lexicon's tone and urgency.
        let (sentiment, urgency) = match &judged {
            Some(judged) => (judged.sentiment, judged.urgency()),
            None => (signals::sentiment(text), signals::urgency(text)),
        };
        let mut classification = Classification {
            intent: out_of_scope(),
            category: Category::GeneralInquiry,
            confidence,
            alternatives,
            sentiment,
            urgency,
            language,
            answer: None,
            always_escalate: false,
            collect_document: None,
            source: ClassificationSource::Model,
            judgement: None,
            embedding: None,
        };
        let off_topic = judged.as_ref().is_some_and(|j| j.category.is_none());
        if let Some(intent) = (best != usize::MAX).then(|| intent_of(best)).flatten() {
            // Out of scope keeps the best guess's category: it still tells the agent the area.
            classification.category = intent.category;
            // An off-topic message gets no intent's answer, however close its wording came.
            if confidence >= model.out_of_scope_threshold && !off_topic {
                self.apply_intent(&mut classification, intent, text);
            } else {
                classification.alternatives.insert(0, IntentScore { intent: intent.name.clone(), confidence });
                classification.alternatives.truncate(3);
            }
        }
        if let Some(judged) = judged {
            // A greeting, thanks or goodbye the intents' examples did not cover (another
            // language, say) still gets the social answer rather than a clarifying question.
            let social = match judged.need {
                Need::Greeting => Some(IntentName::GREETING),
                Need::Thanks => Some(IntentName::THANKS),
                Need::Goodbye => Some(IntentName::GOODBYE),
                _ => None,
            };
            // Also when the intent head took one social message for another ("gracias" as a greeting).
            let social_intents = [IntentName::GREETING, IntentName::THANKS, IntentName::GOODBYE];
            let unanswered = classification.intent.is(IntentName::OUT_OF_SCOPE)
                || social_intents.iter().any(|name| classification.intent.is(name));
            if let (true, Some(intent)) = (unanswered, social.and_then(|name| IntentName::parse(name).ok()).and_then(|name| trained.intents.get(&name))) {
                self.apply_intent(&mut classification, intent, text);
                classification.confidence = classification.confidence.max(SOCIAL_CONFIDENCE);
            }
            apply_judgement(&mut classification, judged);
        }
        classification
    }

    fn apply_intent(&self, classification: &mut Classification, intent: &crate::intents::Intent, text: &str) {
        classification.intent = intent.name.clone();
        classification.category = intent.category;
        classification.always_escalate = intent.always_escalate;
        classification.collect_document = intent.collect_document.clone();
        // In the message's language when the intent says it in that language.
        let translated = classification.language.as_ref().and_then(|code| intent.answers.get(code));
        classification.answer = translated.or(intent.answer.as_ref()).and_then(|template| {
            // Most answers are plain text: parsing them as a template every time was a few
            // per cent of a plain question's CPU.
            if !template.contains("{{") {
                return Some(template.clone());
            }
            self.templates
                .render_template(template, &crate::intents::answer_fields(text))
                .map_err(|e| tracing::warn!(intent = %intent.name, error = %e, "answer template failed"))
                .ok()
        });
    }
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "intents version {}: {} intents, {} examples, out-of-scope below {:.2}, {} in {} ms",
            self.version,
            self.intents,
            self.examples,
            self.out_of_scope_threshold,
            if self.cached { "head loaded from cache" } else { "head trained" },
            self.millis
        )
    }
}

/// The confidence reported for an intent the LLM chose (the bot treats it as sure).
pub const LLM_CONFIDENCE: f32 = 0.9;

fn out_of_scope() -> IntentName {
    IntentName::parse(IntentName::OUT_OF_SCOPE).expect("valid name")
}

#[async_trait]
impl Classifier for ModelClassifier {
    async fn classify(&self, text: &str) -> Classification {
        self.classify_in(text, None).await
    }

    async fn classify_in(&self, text: &str, language: Option<&str>) -> Classification {
        match self.classify_now(text, language) {
            Some(classification) => classification,
            None => self.classify_encoded(text, language).await,
        }
    }

    fn classify_now(&self, text: &str, language: Option<&str>) -> Option<Classification> {
        let classification = self.local.classify_at_once(text, language)?;
        Some(self.with_escalate_words(text, classification))
    }

    async fn classify_declined_locally(&self, text: &str, language: Option<&str>) -> Option<LocalClassification> {
        // Without a budget the encoder's queue may keep it any time: not before an acknowledgement.
        self.local.queue_budget()?;
        Some(self.settle_locally(text, language).await)
    }

    async fn consult(&self, text: &str, unsure: Classification) -> Classification {
        let classification = match &self.llm {
            Some(llm) if self.llm_would_help(&unsure) => self.consult_llm(llm, text, unsure).await,
            _ => unsure,
        };
        self.with_escalate_words(text, classification)
    }
}

impl ModelClassifier {
    /// By the sentence encoder (or, shed under overload, the fast path), then the LLM when
    /// unsure and configured.
    async fn classify_encoded(&self, text: &str, language: Option<&str>) -> Classification {
        match self.settle_locally(text, language).await {
            LocalClassification::Settled(classification) => classification,
            LocalClassification::Unsure(local) => self.consult(text, local).await,
        }
    }

    /// The local model's classification: `Unsure` when the LLM would be asked.
    async fn settle_locally(&self, text: &str, language: Option<&str>) -> LocalClassification {
        let local = self.classify_encoded_locally(text, language).await;
        if self.llm_would_help(&local) {
            LocalClassification::Unsure(local)
        } else {
            LocalClassification::Settled(self.with_escalate_words(text, local))
        }
    }

    /// Unsure, or out of scope for the local model: the LLM may know better. Not for a message
    /// shed under overload: that would turn a CPU overload into an LLM bill.
    fn llm_would_help(&self, local: &Classification) -> bool {
        self.llm.is_some()
            && local.source != ClassificationSource::FastPath
            && (local.confidence < self.llm_below || local.intent.is(IntentName::OUT_OF_SCOPE))
    }

    /// By the sentence encoder, or, shed under overload, the fast path; no LLM, no escalate words.
    async fn classify_encoded_locally(&self, text: &str, language: Option<&str>) -> Classification {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let queued_at = Instant::now();
        self.local.waiting.send_modify(|depth| {
            if *depth == 0 {
                self.local.backlog.filled(queued_at);
            }
            *depth += 1
        });
        let turn = Arc::new(Turn::default());
        let request = Request { text: text.to_string(), language: language.map(str::to_string), answer, queued_at, turn: turn.clone() };
        let sent = self.pending.send(request).is_ok();
        if !sent {
            self.local.waiting.send_modify(|depth| *depth -= 1);
        }
        // The budget is kept here, on the caller's task: under overload the encoder threads
        // (lower priority) may not even get to the queue in time to shed it.
        let waited = match (sent, self.local.queue_budget()) {
            (false, _) => Err(()),
            (true, None) => answered.await.map_err(|_| ()),
            (true, Some(budget)) => {
                let mut answered = answered;
                match tokio::time::timeout(budget, &mut answered).await {
                    Ok(encoded) => encoded.map_err(|_| ()),
                    // Not begun within the budget: shed; begun: its batch is under way, and gets
                    // one more budget (a starved encoder thread could take far longer).
                    Err(_) if turn.give_up() => Ok(Encoded::Shed(ShedReason::WaitedPastBudget)),
                    Err(_) => tokio::time::timeout(budget, answered).await.unwrap_or(Ok(Encoded::Shed(ShedReason::WaitedPastBudget))).map_err(|_| ()),
                }
            }
        };
        match waited {
            Ok(Encoded::Classified(classification)) => classification,
            Ok(Encoded::Shed(reason)) => self.local.classify_shed(reason, text, language),
            Err(()) => {
                tracing::error!("the encoder thread is gone; treating the message as out of scope");
                self.local.describe(&self.local.current(), text, language, &Vec::new(), None)
            }
        }
    }

    /// The admin's words hand the message to a person whatever it was classified as.
    fn with_escalate_words(&self, text: &str, mut classification: Classification) -> Classification {
        if self.local.current().intents.escalate_word_in(text).is_some() {
            classification.always_escalate = true;
            classification.answer = None;
        }
        classification
    }
}

/// A message waiting to be classified, and where its classification goes.
struct Request {
    text: String,
    /// The language the sender's channel reports.
    language: Option<String>,
    answer: tokio::sync::oneshot::Sender<Encoded>,
    queued_at: Instant,
    turn: Arc<Turn>,
}

/// Who has a waiting message: still the queue, the encoder (begun), or its caller again (shed).
/// Whichever moves it first decides, so no message is both encoded and shed.
#[derive(Default)]
struct Turn(std::sync::atomic::AtomicU8);

impl Turn {
    const WAITING: u8 = 0;
    const BEGUN: u8 = 1;
    const SHED: u8 = 2;

    fn take(&self) -> bool {
        self.moved_to(Self::BEGUN)
    }

    fn give_up(&self) -> bool {
        self.moved_to(Self::SHED)
    }

    fn moved_to(&self, next: u8) -> bool {
        use std::sync::atomic::Ordering::AcqRel;
        self.0.compare_exchange(Self::WAITING, next, AcqRel, std::sync::atomic::Ordering::Acquire).is_ok()
    }
}

/// What the encoder threads answer a waiting message.
enum Encoded {
    Classified(Classification),
    /// It waited past the budget, or the store fell behind while it waited: its caller
    /// classifies it on the fast path.
    Shed(ShedReason),
}

/// Most messages encoded in one pass.
const MAX_BATCH: usize = 32;

/// Steps committing slower than the budget divided by this, on average, is the store behind
/// (`Local::store_behind`).
const STORE_BEHIND_AT_BUDGET_SHARE: u32 = 8;

/// Encoder threads, one per core, own the encoding: concurrent messages are batched (one matrix
/// product instead of many) and the async workers never run CPU-heavy work. They end with the
/// classifier.
fn spawn_encoder_threads(local: Arc<Local>) -> std::sync::mpsc::Sender<Request> {
    let (pending, queue) = std::sync::mpsc::channel::<Request>();
    let queue = Arc::new(std::sync::Mutex::new(queue));
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (started, ids) = std::sync::mpsc::channel();
    for n in 0..threads {
        let (local, queue, started) = (local.clone(), queue.clone(), started.clone());
        std::thread::Builder::new()
            .name(format!("sentence-encoder-{n}"))
            .spawn(move || {
                let _ = started.send(kernel_thread_id());
                drop(started);
                let mut yielded = false;
                while let Some(batch) = next_batch(&queue) {
                    // Only with a budget: a message that waits past it is answered anyway.
                    // Without one (the evaluation commands, `nlp.queue_budget_ms = 0`) nothing
                    // would answer it while other work kept every core busy.
                    if !yielded && local.queue_budget().is_some() {
                        yield_to_the_message_path();
                        yielded = true;
                    }
                    let batch = local.shed_late(batch);
                    if batch.is_empty() {
                        continue;
                    }
                    let messages: Vec<(&str, Option<&str>)> =
                        batch.iter().map(|request| (request.text.as_str(), request.language.as_deref())).collect();
                    let results = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| local.classify_batch(&messages)));
                    match results {
                        Ok(results) => {
                            for (request, classification) in batch.into_iter().zip(results) {
                                let _ = request.answer.send(Encoded::Classified(classification));
                            }
                        }
                        // Dropping the answer channels makes each waiting caller fall back.
                        Err(_) => tracing::error!(messages = batch.len(), "classification panicked"),
                    }
                }
            })
            .expect("spawn an encoder thread");
    }
    drop(started);
    // Each thread says its id first thing: this waits microseconds, not for any work.
    let _ = local.encoder_threads.set(ids.iter().flatten().collect());
    pending
}

/// This thread's kernel id (Linux), as `/proc/self/task` names it.
fn kernel_thread_id() -> Option<i64> {
    #[cfg(target_os = "linux")]
    // SAFETY: a plain system call without arguments.
    return Some(unsafe { libc::syscall(libc::SYS_gettid) });
    #[cfg(not(target_os = "linux"))]
    None
}

/// With a queue budget, encoder threads run only on CPU time the rest of the service leaves (`SCHED_IDLE`; where
/// that is refused, nice 19): under overload the message path (sockets, storage, answers) keeps
/// the CPU it needs and the encoder's queue grows instead, so what waits past the budget takes
/// the fast path. At nice 10 the encoder threads still took half the CPU at 2x capacity and
/// replies queued behind storage unbounded.
fn yield_to_the_message_path() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain system calls on this thread's own id; a failure only leaves the priority.
    unsafe {
        let Some(thread) = kernel_thread_id() else { return };
        let thread = thread as libc::pid_t;
        let param = libc::sched_param { sched_priority: 0 };
        if libc::sched_setscheduler(thread, libc::SCHED_IDLE, &param) != 0 {
            libc::setpriority(libc::PRIO_PROCESS, thread as libc::id_t, 19);
        }
    }
}

/// Waits for one message, then takes what else is waiting, up to a batch. None when closed.
fn next_batch(
    queue: &std::sync::Mutex<std::sync::mpsc::Receiver<Request>>,
) -> Option<Vec<Request>> {
    let queue = queue.lock().unwrap_or_else(|e| e.into_inner());
    let mut batch = vec![queue.recv().ok()?];
    while batch.len() < MAX_BATCH {
        match queue.try_recv() {
            Ok(next) => batch.push(next),
            Err(_) => break,
        }
    }
    Some(batch)
}

/// The confidence reported for a social intent chosen from the judgement's need: sure enough
/// for the bot to answer.
const SOCIAL_CONFIDENCE: f32 = 0.6;

/// Below this probability the judgement's topic gives way to the intent's category.
const JUDGED_CATEGORY_AT_LEAST: f32 = 0.5;

/// The judgement decides the topic when it is sure (its tone and urgency are the
/// classification's from the start, `describe_with`).
fn apply_judgement(classification: &mut Classification, judged: Judged) {
    if let Some(category) = judged.category {
        if judged.category_confidence >= JUDGED_CATEGORY_AT_LEAST {
            classification.category = category;
        }
    }
    classification.judgement = Some(Judgement {
        need: judged.need,
        off_topic: judged.category.is_none(),
        escalate: judged.escalate,
        priority: judged.priority,
    });
}

/// The judgement heads for `encoder` and `params`, trained once per process: every classifier
/// built on the same encoder shares them (and a restart reads the training embeddings from the cache).
fn judgement_for(encoder: &dyn SentenceEncoder, cache_dir: Option<&Path>, params: &TrainParams) -> Result<Arc<JudgementModel>, EncoderError> {
    static TRAINED: std::sync::Mutex<Vec<(String, Arc<JudgementModel>)>> = std::sync::Mutex::new(Vec::new());
    let mut trained = TRAINED.lock().unwrap_or_else(|e| e.into_inner());
    let key = format!("{}|{params:?}", encoder.id());
    if let Some((_, model)) = trained.iter().find(|(id, _)| *id == key) {
        return Ok(model.clone());
    }
    let model = Arc::new(JudgementModel::load_or_train_built_in(encoder, cache_dir, params)?);
    trained.push((key, model.clone()));
    Ok(model)
}

fn head_file(cache_dir: &Path, intents: &IntentSet, encoder: &dyn SentenceEncoder, params: &TrainParams) -> PathBuf {
    let key = Sha256::digest(format!("{}|{}|{params:?}", intents.digest, encoder.id()));
    cache_dir.join(format!("head-{}.bin", &hex::encode(key)[..24]))
}

fn train(
    encoder: &dyn SentenceEncoder,
    first_stage_encoder: Option<&Arc<dyn SentenceEncoder>>,
    source: &IntentsSource,
    cache_dir: Option<&Path>,
) -> Result<(Trained, LoadReport), LoadError> {
    let started = Instant::now();
    train_set(encoder, first_stage_encoder, source.load()?, cache_dir, started)
}

fn train_set(
    encoder: &dyn SentenceEncoder,
    first_stage_encoder: Option<&Arc<dyn SentenceEncoder>>,
    intents: IntentSet,
    cache_dir: Option<&Path>,
    started: Instant,
) -> Result<(Trained, LoadReport), LoadError> {
    let params = TrainParams::default();
    // Disabled intents stay in the file, out of the model.
    let intents = IntentSet { intents: intents.intents.into_iter().filter(|i| i.enabled).collect(), ..intents };
    let examples = intents.intents.iter().map(|i| i.examples.len()).sum();
    let (model, cached) = intent_model(encoder, &intents, cache_dir, &params)?;
    // Trained before the report, so their time counts in the load's.
    let words_only = train_words_only(&intents, &params);
    let first_stage = first_stage_encoder.map(|e| train_first_stage(e, &intents, cache_dir, &params)).transpose()?;
    let report = report(&intents, &model, examples, cached, started);
    Ok((Trained { intents, model, words_only, first_stage }, report))
}

fn train_first_stage(
    encoder: &Arc<dyn SentenceEncoder>,
    intents: &IntentSet,
    cache_dir: Option<&Path>,
    params: &TrainParams,
) -> Result<FirstStage, EncoderError> {
    let (model, _) = intent_model(encoder.as_ref(), intents, cache_dir, &params.without_neighbours())?;
    Ok(FirstStage { encoder: encoder.clone(), model, judgement: judgement_for(encoder.as_ref(), cache_dir, &first_stage_judgement_params())? })
}

/// The intent head on `encoder`'s vectors: from the cache when trained there before (true),
/// otherwise trained and kept there.
fn intent_model(
    encoder: &dyn SentenceEncoder,
    intents: &IntentSet,
    cache_dir: Option<&Path>,
    params: &TrainParams,
) -> Result<(IntentModel, bool), EncoderError> {
    let cached_head = cache_dir.map(|dir| head_file(dir, intents, encoder, params));
    if let Some(model) = cached_head.as_ref().and_then(|f| IntentModel::load(f).ok()) {
        return Ok((model, true));
    }
    let mut texts = Vec::new();
    let mut labels = Vec::new();
    for (label, intent) in intents.intents.iter().enumerate() {
        for example in &intent.examples {
            texts.push(example.as_str());
            labels.push(label);
        }
    }
    let mut cache = EmbeddingCache::open(cache_dir, encoder);
    let embeddings = cache.embed_all(encoder, &texts, &mut |_| {})?;
    let labelled: Vec<LabelledText<'_>> = texts
        .iter()
        .zip(&embeddings)
        .zip(&labels)
        .map(|((text, embedding), &label)| LabelledText { text, embedding, label })
        .collect();
    let names = intents.intents.iter().map(|i| i.name.to_string()).collect();
    let model = IntentModel::train(names, &labelled, params);
    if let Some(file) = &cached_head {
        if let Err(e) = std::fs::create_dir_all(cache_dir.expect("set with the file")).and_then(|_| model.save(file)) {
            tracing::warn!(file = %file.display(), error = %e, "cannot cache the trained intent head");
        }
    }
    Ok((model, false))
}

/// The intent head on words alone (milliseconds to train: no embeddings).
fn train_words_only(intents: &IntentSet, params: &TrainParams) -> IntentModel {
    let mut labelled = Vec::new();
    for (label, intent) in intents.intents.iter().enumerate() {
        for example in &intent.examples {
            labelled.push(LabelledText { text: example.as_str(), embedding: &[], label });
        }
    }
    IntentModel::train(intents.intents.iter().map(|i| i.name.to_string()).collect(), &labelled, params)
}

fn report(intents: &IntentSet, model: &IntentModel, examples: usize, cached: bool, started: Instant) -> LoadReport {
    LoadReport {
        version: intents.version,
        intents: intents.intents.len(),
        examples,
        cached,
        out_of_scope_threshold: model.out_of_scope_threshold,
        millis: started.elapsed().as_millis(),
    }
}
