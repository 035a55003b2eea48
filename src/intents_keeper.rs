//! Keeps this node's intents in step with the recorded versions and the intents file. The file
//! (or the built-in default) is recorded as a version when it is new, and the file again
//! whenever it changed on disk (the file wins); the newest version is trained and put in use
//! here on start, on reload (SIGHUP, the API) and whenever any node records a version.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use switchboard_core::EventBus;
use switchboard_core::ports::{
    AdminWrite, BotIntents, Clock, IntentOutline, IntentsAccuracy, IntentsOutline, NewIntentsVersion, Store, StoreError,
};
use switchboard_models::{AuditAction, AuditEntry, Category, DomainEvent, IntentsOrigin};
use switchboard_nlp::intents::{DEFAULT_INTENTS, text_digest};
use switchboard_nlp::{IntentSet, ModelClassifier, intents_edit};

#[derive(Clone, Copy)]
enum ReadFile {
    Yes,
    No,
}

/// Why the file could not be recorded.
enum Unsynced {
    /// Another version was recorded meanwhile.
    Stale,
    Failed(String),
}

impl From<StoreError> for Unsynced {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Stale(_) => Self::Stale,
            error => Self::Failed(format!("the intents versions cannot be read or written: {error}")),
        }
    }
}

pub struct IntentsKeeper {
    classifier: Arc<ModelClassifier>,
    store: Arc<dyn Store>,
    bus: EventBus,
    clock: Arc<dyn Clock>,
    /// `nlp.intents_file`; `None`: the built-in intents.
    file: Option<PathBuf>,
    in_use: std::sync::Mutex<Option<i64>>,
    /// One sync at a time on this node.
    syncing: tokio::sync::Mutex<()>,
}

impl IntentsKeeper {
    pub fn new(classifier: Arc<ModelClassifier>, store: Arc<dyn Store>, bus: EventBus, clock: Arc<dyn Clock>, file: Option<PathBuf>) -> Self {
        Self { classifier, store, bus, clock, file, in_use: std::sync::Mutex::new(None), syncing: tokio::sync::Mutex::new(()) }
    }

    /// Records the intents file when it is new or changed, then puts the newest version in use
    /// (on start and on reload).
    pub async fn sync(&self) -> Result<String, String> {
        self.sync_with(ReadFile::Yes).await
    }

    /// `sync`, reading the file only when asked: following another node's version must not
    /// record this node's file over it (two nodes with different files would take turns).
    async fn sync_with(&self, read_file: ReadFile) -> Result<String, String> {
        let _one_at_a_time = self.syncing.lock().await;
        let (number, text, digest) = loop {
            let newest = match read_file {
                ReadFile::Yes => self.record_file_if_new().await,
                ReadFile::No => self.newest().await,
            };
            match newest {
                Ok(newest) => break newest,
                // Another node recorded the same file first: read again.
                Err(Unsynced::Stale) => continue,
                Err(Unsynced::Failed(why)) => return Err(why),
            }
        };
        let running = format!("intents version {number} is in use: {} intents", IntentSet::parse(Path::new("intents"), &text).map_or(0, |set| set.intents.len()));
        if *self.in_use.lock().unwrap_or_else(|e| e.into_inner()) == Some(number) {
            return Ok(running);
        }
        let report = match self.classifier.digest_in_use() == digest {
            true => running,
            false => self.train_and_use(number, text).await?,
        };
        *self.in_use.lock().unwrap_or_else(|e| e.into_inner()) = Some(number);
        self.bus.publish(DomainEvent::IntentsChanged { version: number, in_use: true });
        Ok(report)
    }

    /// Syncs whenever any node records a version.
    pub async fn follow(self: Arc<Self>) {
        let mut events = self.bus.subscribe();
        loop {
            match events.recv().await {
                Ok(DomainEvent::IntentsChanged { in_use: false, .. }) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    if let Err(why) = self.sync_with(ReadFile::No).await {
                        tracing::error!("the newest intents could not be put in use; the running ones stay: {why}");
                    }
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    /// The newest version (number, text, digest) as recorded.
    async fn newest(&self) -> Result<(i64, String, String), Unsynced> {
        match self.store.latest_intents().await? {
            Some((version, text)) => Ok((version.number, text, version.digest)),
            // Nothing recorded yet (this node starts and records it): the file's turn.
            None => self.record_file_if_new().await,
        }
    }

    /// The newest version (number, text, digest) after recording the file as one when it is
    /// new or changed on disk.
    async fn record_file_if_new(&self) -> Result<(i64, String, String), Unsynced> {
        let (path, file_text, origin) = match &self.file {
            Some(path) => {
                let text = tokio::fs::read_to_string(path)
                    .await
                    .map_err(|e| Unsynced::Failed(format!("{}: cannot read the intents file: {e}", path.display())))?;
                (path.display().to_string(), text, IntentsOrigin::File)
            }
            None => ("the built-in intents".to_string(), DEFAULT_INTENTS.to_string(), IntentsOrigin::BuiltIn),
        };
        let file_digest = text_digest(&file_text);
        let latest = self.store.latest_intents().await?;
        let note = match (&latest, origin) {
            (Some((version, text)), _) if version.file_digest == file_digest => return Ok((version.number, text.clone(), version.digest.clone())),
            (None, IntentsOrigin::File) => format!("read from {path}"),
            (None, _) => "the built-in intents".to_string(),
            (Some(_), IntentsOrigin::File) => format!("{path} changed on disk"),
            // A release with other built-in intents: taken only while nobody edited them.
            (Some((version, text)), _) if version.origin != IntentsOrigin::BuiltIn => return Ok((version.number, text.clone(), version.digest.clone())),
            (Some(_), _) => "the built-in intents of this release".to_string(),
        };
        // The file wins only once it loads.
        IntentSet::parse(Path::new(&path), &file_text).map_err(|e| Unsynced::Failed(e.to_string()))?;
        let after = latest.as_ref().map_or(0, |(version, _)| version.number);
        let now = self.clock.now();
        let digest = text_digest(&file_text);
        let audit = AuditEntry {
            at: now,
            actor: None,
            action: AuditAction::Intents,
            conversation: None,
            subject_agent: None,
            before: latest.as_ref().map(|(version, _)| format!("version {}", version.number)),
            after: Some(format!("version {}: {note}", after + 1)),
        };
        let write = NewIntentsVersion {
            after,
            text: file_text.clone(),
            digest: digest.clone(),
            file_digest,
            origin,
            note,
            author: None,
            at: now,
            labels: Vec::new(),
        };
        self.store.commit_admin(AdminWrite { intents: Some(write), audit: vec![audit], ..AdminWrite::default() }).await?;
        tracing::info!(version = after + 1, "recorded the intents file as a new version");
        Ok((after + 1, file_text, digest))
    }

    /// Trains version `number`, measures the labelled messages before and with it, and puts
    /// it in use.
    async fn train_and_use(&self, number: i64, text: String) -> Result<String, String> {
        let labelled = self.store.labelled_messages().await.map_err(|e| e.to_string())?;
        let classifier = self.classifier.clone();
        let trained = tokio::task::spawn_blocking(move || {
            let prepared = classifier.prepare(Path::new(&format!("intents version {number}")), &text).map_err(|e| e.to_string())?;
            let before = classifier.accuracy(None, &labelled).map_err(|e| e.to_string())?;
            let after = classifier.accuracy(Some(&prepared), &labelled).map_err(|e| e.to_string())?;
            Ok::<_, String>((classifier.install(prepared), labelled.len(), before, after))
        })
        .await
        .map_err(|e| format!("training stopped: {e}"))??;
        let (report, labelled, before, after) = trained;
        if labelled > 0 {
            let accuracy = IntentsAccuracy { labelled: labelled as u32, before, after, measured_at: self.clock.now() };
            if let Err(error) = self.store.record_intents_accuracy(number, &accuracy).await {
                tracing::warn!(%error, "could not record how the new intents classify the labelled messages");
            }
        }
        tracing::info!("intents version {number} in use: {report}");
        Ok(format!("intents version {number} in use: {report}"))
    }
}

#[async_trait::async_trait]
impl BotIntents for IntentsKeeper {
    fn outline(&self, text: &str) -> Result<IntentsOutline, String> {
        let set = IntentSet::parse(Path::new("intents"), text).map_err(|e| match e.line {
            0 => e.reason,
            line => format!("line {line}: {}", e.reason),
        })?;
        Ok(IntentsOutline {
            digest: set.digest,
            escalate_words: set.escalate_words,
            intents: set
                .intents
                .into_iter()
                .map(|i| IntentOutline {
                    name: i.name.to_string(),
                    category: i.category,
                    examples: i.examples,
                    answer: i.answer,
                    answers: i.answers,
                    always_escalate: i.always_escalate,
                    enabled: i.enabled,
                })
                .collect(),
        })
    }

    fn with_examples(&self, text: &str, intent: &str, category: Option<Category>, examples: &[String]) -> Result<String, String> {
        intents_edit::with_examples(text, intent, category, examples)
    }

    fn with_intent(&self, text: &str, intent: &IntentOutline) -> Result<String, String> {
        let fields = intents_edit::IntentFields {
            name: &intent.name,
            category: intent.category,
            examples: &intent.examples,
            answer: intent.answer.as_deref(),
            answers: &intent.answers,
            always_escalate: intent.always_escalate,
            enabled: intent.enabled,
        };
        intents_edit::with_intent(text, &fields)
    }

    fn with_escalate_words(&self, text: &str, words: &[String]) -> Result<String, String> {
        intents_edit::with_escalate_words(text, words)
    }

    fn with_version(&self, text: &str, version: i64) -> Result<String, String> {
        intents_edit::with_version(text, version)
    }

    fn in_use(&self) -> Option<i64> {
        *self.in_use.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn reload(&self) -> Result<String, String> {
        self.sync().await
    }
}
