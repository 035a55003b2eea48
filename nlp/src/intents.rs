//! The intents file: what the bot understands and answers, as data an admin edits (TOML).
//! Loading checks everything a running bot would trip over later and names the line.

use handlebars::Handlebars;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use switchboard_models::{Category, IntentName};
use toml::Spanned;

/// Fewest example phrases an intent needs for the classifier to learn it.
/// What an answer template may use: `{{message}}`, the customer's text; `{{business_hours}}`,
/// `{{next_open}}`, `{{customer.name}}` and `{{channel}}` pass through unrendered, for the
/// engine to fill at reply time (the answer is chosen before anyone knows when it is sent, or
/// to whom).
pub fn answer_fields(message: &str) -> serde_json::Value {
    serde_json::json!({
        "message": message,
        "business_hours": switchboard_core::policy::BUSINESS_HOURS_FIELD,
        "next_open": switchboard_core::policy::NEXT_OPEN_FIELD,
        "customer": {"name": switchboard_core::policy::CUSTOMER_NAME_FIELD},
        "channel": switchboard_core::policy::CHANNEL_FIELD,
    })
}

pub const MIN_EXAMPLES: usize = 3;
/// Most `escalate_words`, and the longest of them.
const MAX_ESCALATE_WORDS: usize = 200;
const MAX_ESCALATE_WORD_CHARS: usize = 60;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}:{line}: {reason}", path.display())]
pub struct IntentsError {
    pub path: PathBuf,
    /// 1-based; 0 when the problem is the file as a whole.
    pub line: usize,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct Intent {
    pub name: IntentName,
    pub category: Category,
    pub examples: Vec<String>,
    /// A handlebars template; `{{message}}` is the customer's text.
    pub answer: Option<String>,
    /// The answer in other languages, by ISO 639-1 code (`answers = { de = "…" }`): said to a
    /// customer whose message is in that language.
    pub answers: std::collections::BTreeMap<String, String>,
    pub always_escalate: bool,
    /// The answer asks for a document of this type; the file sent next is it.
    pub collect_document: Option<String>,
    /// A disabled intent is kept in the file but not trained or answered.
    pub enabled: bool,
}

#[derive(Debug, Clone)]
pub struct IntentSet {
    pub version: u32,
    pub intents: Vec<Intent>,
    /// Words or phrases that hand a message to a person whatever its intent (lowercase).
    pub escalate_words: Vec<String>,
    /// SHA-256 of the file's text: identifies a trained head.
    pub digest: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileShape {
    version: Spanned<u32>,
    #[serde(default)]
    escalate_words: Vec<Spanned<String>>,
    #[serde(default, rename = "intent")]
    intents: Vec<IntentShape>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IntentShape {
    name: Spanned<IntentName>,
    category: Category,
    examples: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    answer: Option<Spanned<String>>,
    #[serde(default)]
    answers: Option<Spanned<std::collections::BTreeMap<String, Spanned<String>>>>,
    #[serde(default)]
    always_escalate: bool,
    #[serde(default)]
    collect_document: Option<Spanned<String>>,
    #[serde(default = "enabled_by_default")]
    enabled: bool,
}

fn enabled_by_default() -> bool {
    true
}

impl IntentSet {
    pub fn load(path: &Path) -> Result<Self, IntentsError> {
        let text = std::fs::read_to_string(path).map_err(|e| IntentsError {
            path: path.to_path_buf(),
            line: 0,
            reason: format!("cannot read the intents file: {e}"),
        })?;
        Self::parse(path, &text)
    }

    /// `path` only names the file in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self, IntentsError> {
        let error_at = |offset: usize, reason: String| IntentsError {
            path: path.to_path_buf(),
            line: line_of(text, offset),
            reason,
        };
        let shape: FileShape = toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            error_at(offset, e.message().trim().to_string())
        })?;
        if *shape.version.get_ref() == 0 {
            return Err(error_at(shape.version.span().start, "version must be 1 or more".into()));
        }
        if shape.intents.is_empty() {
            return Err(IntentsError {
                path: path.to_path_buf(),
                line: 0,
                reason: "the file defines no intents; add [[intent]] tables".into(),
            });
        }

        let templates = Handlebars::new();
        let mut seen_names: HashMap<String, usize> = HashMap::new();
        let mut seen_examples: HashMap<String, (String, usize)> = HashMap::new();
        let mut intents = Vec::with_capacity(shape.intents.len());
        for shape in shape.intents {
            let name = shape.name.get_ref().clone();
            let name_line = line_of(text, shape.name.span().start);
            if name.is(IntentName::OUT_OF_SCOPE) {
                return Err(error_at(
                    shape.name.span().start,
                    "`out_of_scope` is reserved: it is what the classifier reports when no intent fits".into(),
                ));
            }
            if let Some(first) = seen_names.insert(name.to_string(), name_line) {
                return Err(error_at(
                    shape.name.span().start,
                    format!("intent `{name}` is defined twice (first on line {first})"),
                ));
            }
            let mut examples = Vec::new();
            for example in shape.examples.get_ref() {
                let phrase = example.get_ref().trim();
                if phrase.is_empty() {
                    return Err(error_at(example.span().start, format!("intent `{name}` has an empty example")));
                }
                let key = phrase.to_lowercase();
                let line = line_of(text, example.span().start);
                match seen_examples.get(&key) {
                    Some((other, other_line)) if *other != name.as_str() => {
                        return Err(error_at(
                            example.span().start,
                            format!(
                                "example \"{phrase}\" is in both `{other}` (line {other_line}) and `{name}`; \
                                 one phrase can teach only one intent"
                            ),
                        ));
                    }
                    Some(_) => continue,
                    None => {
                        seen_examples.insert(key, (name.to_string(), line));
                    }
                }
                examples.push(phrase.to_string());
            }
            if examples.len() < MIN_EXAMPLES {
                return Err(error_at(
                    shape.examples.span().start,
                    format!(
                        "intent `{name}` has {} distinct example(s); give at least {MIN_EXAMPLES}",
                        examples.len()
                    ),
                ));
            }
            let answer = match shape.answer {
                Some(answer) => {
                    let template = answer.get_ref().trim().to_string();
                    if template.is_empty() {
                        return Err(error_at(answer.span().start, format!("intent `{name}` has an empty answer")));
                    }
                    templates.render_template(&template, &answer_fields("")).map_err(|e| {
                        error_at(answer.span().start, format!("answer of `{name}` is not a valid template: {e}"))
                    })?;
                    Some(template)
                }
                None => None,
            };
            let mut answers = std::collections::BTreeMap::new();
            let (answers_at, translations) = match &shape.answers {
                Some(answers) => (answers.span().start, answers.get_ref().iter().collect::<Vec<_>>()),
                None => (0, Vec::new()),
            };
            for (code, translated) in translations {
                let at = translated.span().start;
                if !switchboard_models::DETECTED_LANGUAGES.contains(&code.as_str()) {
                    let codes = switchboard_models::DETECTED_LANGUAGES.join(", ");
                    return Err(error_at(at, format!("answers of `{name}`: `{code}` is not a language the bot tells apart; use one of: {codes}")));
                }
                let template = translated.get_ref().trim().to_string();
                if template.is_empty() {
                    return Err(error_at(at, format!("intent `{name}` has an empty answer in `{code}`")));
                }
                templates.render_template(&template, &answer_fields("")).map_err(|e| {
                    error_at(at, format!("answer of `{name}` in `{code}` is not a valid template: {e}"))
                })?;
                answers.insert(code.clone(), template);
            }
            if !answers.is_empty() && answer.is_none() {
                return Err(error_at(answers_at, format!("intent `{name}` has answers in other languages but no answer; add `answer` for everyone else")));
            }
            if shape.always_escalate && answer.is_some() {
                return Err(error_at(
                    shape.name.span().start,
                    format!("intent `{name}` always escalates, so its answer would never be sent; remove one"),
                ));
            }
            let collect_document = match &shape.collect_document {
                Some(kind) => {
                    let valid = !kind.get_ref().is_empty()
                        && kind.get_ref().len() <= 40
                        && kind.get_ref().bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
                    if !valid {
                        return Err(error_at(kind.span().start, format!("collect_document of `{name}` must be a document type: 1-40 characters of a-z, 0-9 and _")));
                    }
                    if answer.is_none() {
                        return Err(error_at(kind.span().start, format!("intent `{name}` collects a document, so it needs an answer asking for it")));
                    }
                    Some(kind.get_ref().clone())
                }
                None => None,
            };
            if !shape.enabled && name.is(IntentName::HUMAN_REQUEST) {
                return Err(error_at(
                    shape.name.span().start,
                    format!("`{}` cannot be disabled: customers must always be able to ask for a person", IntentName::HUMAN_REQUEST),
                ));
            }
            intents.push(Intent {
                name,
                category: shape.category,
                examples,
                answer,
                answers,
                always_escalate: shape.always_escalate,
                collect_document,
                enabled: shape.enabled,
            });
        }
        if !seen_names.contains_key(IntentName::HUMAN_REQUEST) {
            return Err(IntentsError {
                path: path.to_path_buf(),
                line: 0,
                reason: format!(
                    "the file needs a `{}` intent: customers must always be able to ask for a person",
                    IntentName::HUMAN_REQUEST
                ),
            });
        }
        let mut escalate_words: Vec<String> = Vec::new();
        for word in &shape.escalate_words {
            let phrase = word.get_ref().trim().to_lowercase();
            if phrase.is_empty() || phrase.chars().count() > MAX_ESCALATE_WORD_CHARS {
                return Err(error_at(word.span().start, format!("each of escalate_words must be 1-{MAX_ESCALATE_WORD_CHARS} characters")));
            }
            if !escalate_words.contains(&phrase) {
                escalate_words.push(phrase);
            }
        }
        if escalate_words.len() > MAX_ESCALATE_WORDS {
            return Err(IntentsError { path: path.to_path_buf(), line: 0, reason: format!("escalate_words lists {} words; at most {MAX_ESCALATE_WORDS}", escalate_words.len()) });
        }
        Ok(Self { version: *shape.version.get_ref(), intents, escalate_words, digest: text_digest(text) })
    }

    pub fn get(&self, name: &IntentName) -> Option<&Intent> {
        self.intents.iter().find(|i| &i.name == name)
    }

    /// The first of `escalate_words` in `text`, as a whole word or phrase, in any case.
    pub fn escalate_word_in(&self, text: &str) -> Option<&str> {
        if self.escalate_words.is_empty() {
            return None;
        }
        let words: Vec<String> = text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect();
        let spaced = format!(" {} ", words.join(" "));
        self.escalate_words.iter().map(String::as_str).find(|phrase| {
            let wanted: Vec<&str> = phrase.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).collect();
            !wanted.is_empty() && spaced.contains(&format!(" {} ", wanted.join(" ")))
        })
    }
}

/// SHA-256 of intents text: names a version and the head trained from it.
pub fn text_digest(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1
}

/// The intents file the project ships: a new deployment answers common support questions.
pub const DEFAULT_INTENTS: &str = include_str!("../intents/default.toml");

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<IntentSet, IntentsError> {
        IntentSet::parse(Path::new("intents.toml"), text)
    }

    const HUMAN: &str = r#"
[[intent]]
name = "human_request"
category = "general_inquiry"
examples = ["a person please", "talk to a human", "real agent"]
"#;

    #[test]
    fn the_shipped_file_is_valid() {
        let set = parse(DEFAULT_INTENTS).unwrap();
        assert!(set.intents.len() >= 20, "{}", set.intents.len());
        for required in [IntentName::GREETING, IntentName::GOODBYE, IntentName::THANKS, IntentName::HUMAN_REQUEST] {
            assert!(set.intents.iter().any(|i| i.name.is(required)), "{required}");
        }
        for category in Category::ALL {
            assert!(set.intents.iter().any(|i| i.category == *category), "{category}");
        }
    }

    #[test]
    fn errors_name_the_line_and_the_reason() {
        let cases = [
            ("version = 1\n[[intent]]\nname = \"a\"\ncategory = \"bills\"\nexamples = [\"x\", \"y\", \"z\"]\n", 4, "unknown category `bills`"),
            ("version = 1\n[[intent]]\nname = \"Bad Name\"\n", 3, "must be 1-64 characters"),
            ("version = 1\n[[intent]]\nname = \"a\"\ncategory = \"billing\"\nexamples = [\"x\", \"y\"]\n", 5, "at least 3"),
            ("version = 1\n[[intent]]\nname = \"a\"\ncategory = \"billing\"\nexamples = [\"x\", \"y\", \"z\"]\ncolour = 1\n", 6, "unknown field `colour`"),
            ("version = 1\n[[intent]]\nname = \"a\"\ncategory = \"billing\"\nexamples = [\"x\", \"y\", \"z\"]\nanswer = \"{{#if}}\"\n", 6, "not a valid template"),
            ("version = 1\n[[intent]\n", 2, ""),
        ];
        for (text, line, reason) in cases {
            let error = parse(text).unwrap_err();
            assert_eq!(error.line, line, "{error}");
            assert!(error.reason.contains(reason), "{error}");
            assert!(error.to_string().starts_with(&format!("intents.toml:{line}: ")), "{error}");
        }
    }

    #[test]
    fn answers_in_other_languages_are_checked_like_the_answer() {
        let intent = |answers: &str| {
            format!("version = 1\n{HUMAN}\n[[intent]]\nname = \"hours\"\ncategory = \"general_inquiry\"\nexamples = [\"open\", \"hours\", \"when\"]\n{answers}")
        };
        let set = parse(&intent("answer = \"9 to 5\"\nanswers = { de = \"9 bis 17 Uhr\", es = \"de 9 a 17\" }\n")).unwrap();
        let hours = set.get(&IntentName::parse("hours").unwrap()).unwrap();
        assert_eq!(hours.answers.get("de").map(String::as_str), Some("9 bis 17 Uhr"));
        assert_eq!(hours.answers.len(), 2);
        let unknown = parse(&intent("answer = \"9 to 5\"\nanswers = { xx = \"?\" }\n")).unwrap_err();
        assert!(unknown.reason.contains("`xx` is not a language the bot tells apart"), "{unknown}");
        assert_eq!(unknown.line, 13, "the `answers` line: {unknown}");
        let broken = parse(&intent("answer = \"9 to 5\"\nanswers = { de = \"{{#if}}\" }\n")).unwrap_err();
        assert!(broken.reason.contains("in `de` is not a valid template"), "{broken}");
        let alone = parse(&intent("answers = { de = \"9 bis 17 Uhr\" }\n")).unwrap_err();
        assert!(alone.reason.contains("no answer"), "{alone}");
    }

    #[test]
    fn one_phrase_cannot_teach_two_intents() {
        let text = format!(
            "version = 2\n{HUMAN}\n[[intent]]\nname = \"refund\"\ncategory = \"billing\"\nexamples = [\"money back\", \"refund\", \"return\"]\n\
             [[intent]]\nname = \"cancel\"\ncategory = \"account\"\nexamples = [\"cancel\", \"Money back\", \"stop\"]\n"
        );
        let error = parse(&text).unwrap_err();
        assert_eq!(error.line, 15, "{error}");
        assert!(error.reason.contains("`refund` (line 11)"), "{error}");
    }

    #[test]
    fn reserved_duplicate_and_missing_intents_are_refused() {
        let dup = format!("version = 1\n{HUMAN}{HUMAN}");
        assert!(parse(&dup).unwrap_err().reason.contains("defined twice (first on line 4)"));
        let oos = format!("version = 1\n{}", HUMAN.replace("human_request", "out_of_scope"));
        assert!(parse(&oos).unwrap_err().reason.contains("reserved"));
        let no_human = HUMAN.replace("human_request", "help");
        assert!(parse(&format!("version = 1\n{no_human}")).unwrap_err().reason.contains("`human_request` intent"));
        assert!(parse("version = 0\n").unwrap_err().reason.contains("version must be 1"));
    }

    #[test]
    fn escalate_words_match_whole_words_in_any_case() {
        let set = parse(&format!("version = 1\nescalate_words = [\"Chargeback\", \"file a complaint\", \"chargeback\"]\n{HUMAN}")).unwrap();
        assert_eq!(set.escalate_words, ["chargeback", "file a complaint"]);
        assert_eq!(set.escalate_word_in("I will do a CHARGEBACK today!"), Some("chargeback"));
        assert_eq!(set.escalate_word_in("I want to File a complaint."), Some("file a complaint"));
        assert_eq!(set.escalate_word_in("chargebacks are slow"), None, "whole words only");
        assert!(parse(&format!("version = 1\nescalate_words = [\" \"]\n{HUMAN}")).unwrap_err().reason.contains("1-60 characters"));
    }

    #[test]
    fn a_good_file_loads_with_its_digest() {
        let text = format!("version = 7\n{HUMAN}");
        let set = parse(&text).unwrap();
        assert_eq!(set.version, 7);
        assert_eq!(set.intents[0].examples.len(), 3);
        assert_ne!(set.digest, parse(&format!("version = 8\n{HUMAN}")).unwrap().digest);
    }
}
