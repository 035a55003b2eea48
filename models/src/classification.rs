use crate::{Category, Need, Priority};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The name of an intent from the intents file: lowercase letters, digits and `_`, 1–64 chars.
/// Intents are data, so this is a checked name rather than an enum; the few intents the state
/// machine itself reacts to are the constants below.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IntentName(String);

impl IntentName {
    pub const HUMAN_REQUEST: &'static str = "human_request";
    pub const GREETING: &'static str = "greeting";
    pub const GOODBYE: &'static str = "goodbye";
    pub const THANKS: &'static str = "thanks";
    /// What the classifier reports when nothing fits.
    pub const OUT_OF_SCOPE: &'static str = "out_of_scope";

    pub fn parse(text: &str) -> Result<Self, String> {
        let valid = !text.is_empty()
            && text.len() <= 64
            && text
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if valid {
            Ok(Self(text.to_string()))
        } else {
            Err(format!(
                "intent name `{text}` must be 1-64 characters of a-z, 0-9 and _"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is(&self, name: &str) -> bool {
        self.0 == name
    }
}

impl TryFrom<String> for IntentName {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        Self::parse(&value)
    }
}

impl From<IntentName> for String {
    fn from(value: IntentName) -> String {
        value.0
    }
}

impl fmt::Display for IntentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One candidate intent and its probability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntentScore {
    pub intent: IntentName,
    pub confidence: f32,
}

/// How pressing a message sounds, from urgency words and tone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Urgency {
    None,
    Elevated,
    Critical,
}

/// What the classifier made of one customer message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Classification {
    pub intent: IntentName,
    pub category: Category,
    /// Calibrated probability of `intent`, 0..=1.
    pub confidence: f32,
    /// Next best intents, most likely first.
    pub alternatives: Vec<IntentScore>,
    /// -1 (very negative) ..= 1 (very positive).
    pub sentiment: f32,
    pub urgency: Urgency,
    /// ISO 639-1 code when the classifier can tell.
    pub language: Option<String>,
    /// The bot's answer for this intent, already rendered, when the intent has one.
    pub answer: Option<String>,
    /// The intent is configured to always go to a person.
    pub always_escalate: bool,
    /// The intent's answer asks for a document of this type (`collect_document`): a file the
    /// customer sends next is that document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collect_document: Option<String>,
    /// What decided the intent.
    #[serde(default)]
    pub source: ClassificationSource,
    /// The trained judgement of the message, when the model classifier made one (the keyword
    /// classifier does not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judgement: Option<Judgement>,
    /// The message's sentence embedding, when the model classifier encoded it: kept for the
    /// messages the bot was unsure of, so the reports group similar ones. Never part of the
    /// stored classification.
    #[serde(skip)]
    pub embedding: Option<Embedding>,
}

/// A sentence embedding in bytes: each component of the unit vector times 127, rounded (a
/// quarter of the floats' size, and similarities within about 0.01 of theirs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Embedding(pub std::sync::Arc<[i8]>);

impl Embedding {
    /// Quantises `vector`, normalising it first.
    pub fn quantise(vector: &[f32]) -> Self {
        let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt().max(f32::EPSILON);
        Self(vector.iter().map(|x| (x / norm * 127.0).round().clamp(-127.0, 127.0) as i8).collect())
    }

    /// The bytes as stored.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.iter().map(|&b| b as u8).collect()
    }

    pub fn from_bytes(bytes: &[u8]) -> Self {
        Self(bytes.iter().map(|&b| b as i8).collect())
    }

    /// Cosine similarity, -1..=1 (0 for vectors of different lengths).
    pub fn similarity(&self, other: &Embedding) -> f32 {
        if self.0.len() != other.0.len() {
            return 0.0;
        }
        let (mut dot, mut a, mut b) = (0i32, 0i32, 0i32);
        for (&x, &y) in self.0.iter().zip(other.0.iter()) {
            let (x, y) = (i32::from(x), i32::from(y));
            dot += x * y;
            a += x * x;
            b += y * y;
        }
        if a == 0 || b == 0 {
            return 0.0;
        }
        dot as f32 / ((a as f32).sqrt() * (b as f32).sqrt())
    }
}

/// What a person reading the message would conclude, apart from which intent it is: the model's
/// heads trained on labelled support traffic (`nlp/judgement/`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Judgement {
    pub need: Need,
    /// The message is no support request for this business at all.
    pub off_topic: bool,
    /// Probability that a good support lead would want a person on this now, 0..=1.
    pub escalate: f32,
    /// How soon a person should look, had this message a ticket.
    pub priority: Priority,
}

/// Which part of the NLP stack chose the intent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClassificationSource {
    /// Keyword rules: no model is loaded.
    #[default]
    Keywords,
    /// The local sentence encoder and intent head.
    Model,
    /// The classifier's first stage: static token vectors distilled from the sentence encoder,
    /// sure of a plain message (on topic, calm, nothing to escalate), which then skipped the
    /// sentence encoder.
    FirstStage,
    /// The hosted LLM, asked because the local model was unsure. Its choice counts as confident.
    Llm,
    /// The encoder's queue was over its time budget (`nlp.queue_budget_ms`), so the message
    /// skipped the sentence encoder: ranked and judged by the first stage, or, without one, by
    /// the intent head on its words alone.
    FastPath,
}

/// The languages the classifier tells apart, as the ISO 639-1 codes `Classification::language`
/// carries: texts configured for any other code would never be used.
pub const DETECTED_LANGUAGES: &[&str] = &[
    "ar", "cs", "da", "de", "el", "en", "es", "fi", "fr", "he", "hi", "hu", "id", "it", "ja", "ko", "nl", "pl", "pt", "ro",
    "ru", "sv", "th", "tr", "uk", "vi", "zh",
];

/// The language a channel reports for a sender (an IETF tag such as `pt-br` or `de-CH`), as one
/// of `DETECTED_LANGUAGES`; None for any other.
pub fn reported_language(tag: &str) -> Option<&'static str> {
    let primary = tag.trim().split(['-', '_']).next()?.to_ascii_lowercase();
    DETECTED_LANGUAGES.iter().copied().find(|code| *code == primary)
}

#[cfg(test)]
mod reported_language_tests {
    use super::reported_language;

    #[test]
    fn a_channels_language_tag_is_read_as_a_language_the_bot_tells_apart() {
        assert_eq!(reported_language("de"), Some("de"));
        assert_eq!(reported_language("pt-br"), Some("pt"));
        assert_eq!(reported_language("zh_Hans"), Some("zh"));
        assert_eq!(reported_language(" EN-gb "), Some("en"));
        assert_eq!(reported_language("en_"), Some("en"));
        for unknown in ["", "-", "xx", "tlh", "deu"] {
            assert_eq!(reported_language(unknown), None, "{unknown:?}");
        }
    }
}
