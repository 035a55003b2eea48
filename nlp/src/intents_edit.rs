//! Edits of intents text that keep everything else in it (comments, order, layout): what the
//! panel's teaching and saving do before the text is checked like any intents file.

use switchboard_models::Category;
use std::collections::BTreeMap;
use toml_edit::{Array, DocumentMut, InlineTable, Item, Table, Value, value};

/// `text` with `examples` added to the intent `intent` (an example it has already, in any
/// case, is skipped); when there is no such intent, a new one in `category` is appended.
pub fn with_examples(text: &str, intent: &str, category: Option<Category>, examples: &[String]) -> Result<String, String> {
    let mut doc = parse(text)?;
    let intents = doc
        .get_mut("intent")
        .and_then(Item::as_array_of_tables_mut)
        .ok_or("the intents define no [[intent]] tables")?;
    let found = intents.iter().position(|t| t.get("name").and_then(Item::as_str) == Some(intent));
    match found {
        Some(index) => {
            let table = intents.get_mut(index).expect("found at this index");
            let array = table
                .get_mut("examples")
                .and_then(Item::as_array_mut)
                .ok_or_else(|| format!("intent `{intent}` has no list of examples"))?;
            let one_per_line = array.iter().any(|v| v.decor().prefix().and_then(|p| p.as_str()).is_some_and(|p| p.contains('\n')));
            for example in examples {
                let known = array.iter().any(|v| v.as_str().is_some_and(|s| s.trim().to_lowercase() == example.trim().to_lowercase()));
                if !known {
                    push(array, example, one_per_line);
                }
            }
        }
        None => {
            let Some(category) = category else {
                return Err(format!("there is no intent `{intent}`; choose a category to start it as a new intent"));
            };
            let mut table = Table::new();
            table["name"] = value(intent);
            table["category"] = value(category.as_str());
            let mut array = Array::new();
            for example in examples {
                push(&mut array, example, true);
            }
            table["examples"] = value(array);
            intents.push(table);
        }
    }
    Ok(doc.to_string())
}

/// What one intent says, to write over the intent of that name (or to append as a new one).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IntentFields<'a> {
    pub name: &'a str,
    pub category: Category,
    pub examples: &'a [String],
    pub answer: Option<&'a str>,
    /// The answer in other languages, by language code (`answers = { de = "…" }`).
    pub answers: &'a BTreeMap<String, String>,
    pub always_escalate: bool,
    pub enabled: bool,
}

/// `text` with the intent `fields.name` set to `fields`, keeping its other keys (a document
/// it collects), its comments and its place; appended when there is none of that name.
pub fn with_intent(text: &str, fields: &IntentFields<'_>) -> Result<String, String> {
    let mut doc = parse(text)?;
    let intents = doc
        .get_mut("intent")
        .and_then(Item::as_array_of_tables_mut)
        .ok_or("the intents define no [[intent]] tables")?;
    let found = intents.iter().position(|t| t.get("name").and_then(Item::as_str) == Some(fields.name));
    let table = match found {
        Some(index) => intents.get_mut(index).expect("found at this index"),
        None => {
            let mut table = Table::new();
            table["name"] = value(fields.name);
            intents.push(table);
            intents.iter_mut().last().expect("just pushed")
        }
    };
    table["category"] = value(fields.category.as_str());
    let mut examples = Array::new();
    for example in fields.examples.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
        push(&mut examples, example, true);
    }
    table["examples"] = value(examples);
    match fields.answer.map(str::trim).filter(|a| !a.is_empty()) {
        Some(answer) => table["answer"] = value(answer),
        None => {
            table.remove("answer");
        }
    }
    let translated: InlineTable = fields
        .answers
        .iter()
        .filter(|(_, text)| !text.trim().is_empty())
        .map(|(language, text)| (language.as_str(), Value::from(text.trim())))
        .collect();
    if translated.is_empty() {
        table.remove("answers");
    } else {
        table["answers"] = value(translated);
    }
    match fields.always_escalate {
        true => table["always_escalate"] = value(true),
        false => {
            table.remove("always_escalate");
        }
    }
    match fields.enabled {
        true => {
            table.remove("enabled");
        }
        false => table["enabled"] = value(false),
    }
    Ok(doc.to_string())
}

/// `text` with its `escalate_words` set (removed when there are none).
pub fn with_escalate_words(text: &str, words: &[String]) -> Result<String, String> {
    let mut doc = parse(text)?;
    let words: Vec<&str> = words.iter().map(|w| w.trim()).filter(|w| !w.is_empty()).collect();
    if words.is_empty() {
        doc.remove("escalate_words");
    } else {
        let mut array = Array::new();
        for word in words {
            push(&mut array, word, true);
        }
        // Before the first [[intent]], where top-level keys belong.
        doc["escalate_words"] = value(array);
    }
    Ok(doc.to_string())
}

/// `text` with its `version` set to `version`.
pub fn with_version(text: &str, version: i64) -> Result<String, String> {
    let mut doc = parse(text)?;
    doc["version"] = value(version);
    Ok(doc.to_string())
}

fn parse(text: &str) -> Result<DocumentMut, String> {
    text.parse::<DocumentMut>().map_err(|e| format!("the intents are not valid TOML: {}", e.message().trim()))
}

fn push(array: &mut Array, example: &str, one_per_line: bool) {
    let mut item = Value::from(example.trim());
    if one_per_line {
        item.decor_mut().set_prefix("\n  ");
        array.push_formatted(item);
        array.set_trailing_comma(true);
        array.set_trailing("\n");
    } else {
        array.push(item);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::IntentSet;
    use std::path::Path;

    const TEXT: &str = r#"# Our intents
version = 3

# Money matters
[[intent]]
name = "refund_status"
category = "billing"
examples = [
  "where is my refund",
  "refund not received",
  "when do I get my money back",
]
answer = "Refunds take 5 days."

[[intent]]
name = "human_request"
category = "general_inquiry"
examples = ["a person please", "talk to a human", "real agent"]
"#;

    #[test]
    fn examples_join_their_intent_one_per_line_and_the_rest_stays() {
        let text = with_examples(TEXT, "refund_status", None, &["Refund still missing after two weeks".into(), "REFUND NOT RECEIVED".into()]).unwrap();
        assert!(text.starts_with("# Our intents\nversion = 3\n\n# Money matters\n"), "{text}");
        assert!(text.contains("  \"when do I get my money back\",\n  \"Refund still missing after two weeks\",\n]"), "{text}");
        let set = IntentSet::parse(Path::new("t.toml"), &text).unwrap();
        assert_eq!(set.get(&switchboard_models::IntentName::parse("refund_status").unwrap()).unwrap().examples.len(), 4, "a known example in other case is not added twice");
        let inline = with_examples(TEXT, "human_request", None, &["get me a manager".into()]).unwrap();
        assert!(inline.contains(r#"examples = ["a person please", "talk to a human", "real agent", "get me a manager"]"#), "{inline}");
    }

    #[test]
    fn a_new_intent_needs_a_category_and_is_checked_like_any_file() {
        let missing = with_examples(TEXT, "lost_card", None, &["I lost my card".into()]).unwrap_err();
        assert!(missing.contains("choose a category"), "{missing}");
        let examples: Vec<String> = ["I lost my card", "my card was stolen", "block my card please"].map(String::from).to_vec();
        let text = with_examples(TEXT, "lost_card", Some(Category::Account), &examples).unwrap();
        let set = IntentSet::parse(Path::new("t.toml"), &text).unwrap();
        let lost = set.get(&switchboard_models::IntentName::parse("lost_card").unwrap()).unwrap();
        assert_eq!((lost.category, lost.examples.len(), lost.answer.is_none()), (Category::Account, 3, true));
        let one = with_examples(TEXT, "lost_card", Some(Category::Account), &examples[..1]).unwrap();
        let error = IntentSet::parse(Path::new("t.toml"), &one).unwrap_err();
        assert!(error.reason.contains("give at least 3"), "{error}");
    }

    #[test]
    fn an_intent_is_written_whole_in_its_place_or_appended() {
        let examples: Vec<String> = ["where's my refund", "refund missing", "no refund yet"].map(String::from).to_vec();
        let none = BTreeMap::new();
        let fields = IntentFields {
            name: "refund_status",
            category: Category::Billing,
            examples: &examples,
            answer: None,
            answers: &none,
            always_escalate: true,
            enabled: false,
        };
        let text = with_intent(TEXT, &fields).unwrap();
        assert!(text.starts_with("# Our intents\nversion = 3\n\n# Money matters\n[[intent]]\nname = \"refund_status\""), "{text}");
        let set = IntentSet::parse(Path::new("t.toml"), &text).unwrap();
        let refund = set.get(&switchboard_models::IntentName::parse("refund_status").unwrap()).unwrap();
        assert_eq!((refund.examples.len(), refund.answer.is_none(), refund.always_escalate, refund.enabled), (3, true, true, false));
        assert_eq!(set.intents[0].name.as_str(), "refund_status", "it keeps its place");
        let shipping_examples: Vec<String> = ["shipping cost", "how much is delivery", "postage fee"].map(String::from).to_vec();
        let shipping_fields = IntentFields { name: "shipping", examples: &shipping_examples, answer: Some("Free over 50 EUR."), always_escalate: false, enabled: true, ..fields };
        let added = with_intent(TEXT, &shipping_fields).unwrap();
        let set = IntentSet::parse(Path::new("t.toml"), &added).unwrap();
        let shipping = set.intents.last().unwrap();
        assert_eq!((shipping.name.as_str(), shipping.answer.as_deref(), shipping.enabled), ("shipping", Some("Free over 50 EUR."), true));
        let translations = BTreeMap::from([("de".to_string(), " Gratis ab 50 EUR. ".to_string()), ("es".to_string(), String::new())]);
        let translated = with_intent(&added, &IntentFields { answers: &translations, ..shipping_fields }).unwrap();
        assert!(translated.contains(r#"answers = { de = "Gratis ab 50 EUR." }"#), "a blank translation is left out: {translated}");
        let set = IntentSet::parse(Path::new("t.toml"), &translated).unwrap();
        assert_eq!(set.intents.last().unwrap().answers.get("de").map(String::as_str), Some("Gratis ab 50 EUR."));
        let untranslated = with_intent(&translated, &shipping_fields).unwrap();
        assert!(!untranslated.contains("answers"), "{untranslated}");
        let human_examples: Vec<String> = ["a person please", "talk to a human", "real agent"].map(String::from).to_vec();
        let human = IntentFields { name: "human_request", category: Category::GeneralInquiry, examples: &human_examples, always_escalate: false, enabled: false, ..fields };
        let error = IntentSet::parse(Path::new("t.toml"), &with_intent(TEXT, &human).unwrap()).unwrap_err();
        assert!(error.reason.contains("cannot be disabled"), "{error}");
    }

    #[test]
    fn escalate_words_are_set_and_removed() {
        let text = with_escalate_words(TEXT, &["chargeback".into(), " lawyer ".into(), "".into()]).unwrap();
        let set = IntentSet::parse(Path::new("t.toml"), &text).unwrap();
        assert_eq!(set.escalate_words, ["chargeback", "lawyer"]);
        assert_eq!(set.intents.len(), 2, "the intents stay");
        let none = with_escalate_words(&text, &[]).unwrap();
        assert!(!none.contains("escalate_words"), "{none}");
    }

    #[test]
    fn the_version_is_set_and_broken_text_is_named() {
        assert!(with_version(TEXT, 12).unwrap().contains("version = 12\n"));
        assert!(with_examples("version = [", "x", None, &[]).unwrap_err().starts_with("the intents are not valid TOML"));
    }
}
