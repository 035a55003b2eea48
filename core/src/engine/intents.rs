//! The engine's side of the bot's intents as admins change them in the panel: an edited text,
//! customer messages taught as examples, an earlier version restored. Each change is checked as
//! the bot would load it, recorded as the next version with its audit entry, and announced:
//! every node then trains it and puts it in use (`BotIntents`).

use super::{Engine, EngineError};
use crate::ports::{AdminWrite, BotIntents, IntentLabel, IntentVersions, IntentsVersion, NewIntentsVersion};
use switchboard_models::{Agent, AuditAction, AuditEntry, Category, DomainEvent, IntentsOrigin, Role};

/// Most customer messages taught in one go.
const MAX_TAUGHT_AT_ONCE: usize = 50;

/// A change of the bot's intents.
#[derive(Debug, Clone, PartialEq)]
pub enum IntentsEdit {
    /// The whole text, as edited from version `after`.
    Text { after: i64, text: String, note: String },
    /// Customer messages (by `seq`) taught as examples of `intent`: a new intent in `category`
    /// when there is none of that name.
    Teach { seqs: Vec<i64>, intent: String, category: Option<Category> },
    /// One intent written whole (added when new), edited from version `after`.
    Intent { after: i64, intent: crate::ports::IntentOutline },
    /// The words that hand any message to a person, edited from version `after`.
    EscalateWords { after: i64, words: Vec<String> },
    /// An earlier version becomes the newest again.
    Restore { number: i64 },
}

/// An edit made on version `after` is saved only while that is still the newest.
fn edited_newest(after: i64, newest: i64) -> Result<(), EngineError> {
    match after == newest {
        true => Ok(()),
        false => Err(EngineError::Conflict(format!(
            "Version {newest} was saved after the version you edited ({after}), so your change was not saved. \
             Open the Bot page again and make your change on the newest version."
        ))),
    }
}

impl Engine {
    /// Records `edit` as the next version of the bot's intents; refused whole (nothing written)
    /// when the result would not load, or when another version was recorded meanwhile.
    pub async fn edit_intents(&self, bot: &dyn BotIntents, edit: IntentsEdit, by: &Agent) -> Result<IntentsVersion, EngineError> {
        if by.role != Role::Admin {
            return Err(EngineError::Forbidden("Only admins change the bot's intents.".into()));
        }
        let versions: &dyn IntentVersions = self.store.as_ref();
        let Some((latest, latest_text)) = versions.latest_intents().await? else {
            return Err(EngineError::Conflict(
                "The bot's intents are not recorded yet: the model classifier records them when it starts. Try again in a minute.".into(),
            ));
        };
        let (text, origin, note, labels) = match edit {
            IntentsEdit::Text { after, text, note } => {
                edited_newest(after, latest.number)?;
                let note = match note.trim() {
                    "" => "edited in the panel".to_string(),
                    note => note.chars().take(200).collect(),
                };
                (text, IntentsOrigin::Panel, note, Vec::new())
            }
            IntentsEdit::Teach { seqs, intent, category } => {
                if seqs.is_empty() || seqs.len() > MAX_TAUGHT_AT_ONCE {
                    return Err(EngineError::Invalid(format!("Choose between 1 and {MAX_TAUGHT_AT_ONCE} messages to teach.")));
                }
                let texts = versions.customer_texts(&seqs).await?;
                if texts.len() != seqs.len() {
                    return Err(EngineError::NotFound("customer message"));
                }
                let intent = intent.trim().to_string();
                let known = bot.outline(&latest_text).map_err(EngineError::Invalid)?.intents.iter().any(|i| i.name == intent);
                let examples: Vec<String> = texts.iter().map(|(_, text)| text.trim().to_string()).collect();
                let text = bot.with_examples(&latest_text, &intent, category.filter(|_| !known), &examples).map_err(EngineError::Invalid)?;
                let note = match known {
                    true => format!("taught {} message(s) as `{intent}`", texts.len()),
                    false => format!("started the intent `{intent}` from {} message(s)", texts.len()),
                };
                let labels = texts.into_iter().map(|(message_seq, text)| IntentLabel { message_seq, text, intent: intent.clone() }).collect();
                (text, IntentsOrigin::Teaching, note, labels)
            }
            IntentsEdit::Intent { after, intent } => {
                edited_newest(after, latest.number)?;
                let known = bot.outline(&latest_text).map_err(EngineError::Invalid)?.intents.iter().any(|i| i.name == intent.name);
                let text = bot.with_intent(&latest_text, &intent).map_err(EngineError::Invalid)?;
                let note = match known {
                    true => format!("edited the intent `{}`", intent.name),
                    false => format!("added the intent `{}`", intent.name),
                };
                (text, IntentsOrigin::Panel, note, Vec::new())
            }
            IntentsEdit::EscalateWords { after, words } => {
                edited_newest(after, latest.number)?;
                let text = bot.with_escalate_words(&latest_text, &words).map_err(EngineError::Invalid)?;
                let count = words.iter().filter(|w| !w.trim().is_empty()).count();
                (text, IntentsOrigin::Panel, format!("set {count} word(s) that always hand to a person"), Vec::new())
            }
            IntentsEdit::Restore { number } => {
                if number == latest.number {
                    return Err(EngineError::Conflict(format!("Version {number} is the newest version already.")));
                }
                let (_, text) = versions.intents_text(number).await?.ok_or(EngineError::NotFound("version of the intents"))?;
                (text, IntentsOrigin::Restore, format!("restored version {number}"), Vec::new())
            }
        };
        let number = latest.number + 1;
        let text = bot.with_version(&text, number).map_err(EngineError::Invalid)?;
        let outline = bot.outline(&text).map_err(EngineError::Invalid)?;
        let now = self.clock.now();
        let audit = AuditEntry {
            at: now,
            actor: Some(by.id),
            action: AuditAction::Intents,
            conversation: None,
            subject_agent: None,
            before: Some(format!("version {}", latest.number)),
            after: Some(format!("version {number}: {note}")),
        };
        let version = IntentsVersion {
            number,
            digest: outline.digest.clone(),
            file_digest: latest.file_digest.clone(),
            origin,
            note: note.clone(),
            author: Some(by.id),
            created_at: now,
            accuracy: None,
        };
        let write = NewIntentsVersion {
            after: latest.number,
            text,
            digest: outline.digest,
            file_digest: latest.file_digest,
            origin,
            note,
            author: Some(by.id),
            at: now,
            labels,
        };
        self.store.commit_admin(AdminWrite { intents: Some(write), audit: vec![audit], ..AdminWrite::default() }).await?;
        self.bus.publish(DomainEvent::IntentsChanged { version: number, in_use: false });
        Ok(version)
    }

    /// The bot's intents as recorded: versions, labelled history, texts.
    pub fn intent_versions(&self) -> &dyn IntentVersions {
        self.store.as_ref()
    }
}
