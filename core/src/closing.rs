//! Closing the loop with the customer after a person's work: the confirmation question, the
//! rating and its comment, and the notices of status changes. Pure: what is asked, and how a
//! customer's short answer is read.

/// What the bot says and asks once agents are done, and whether it asks at all: the
/// `[closing]` section of the configuration.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClosingPolicy {
    /// Ask the customer whether an agent's resolution fixed it (else resolving just resolves).
    pub confirm_resolution: bool,
    /// Ask for a rating, 1 to 5, once the customer confirmed.
    pub ask_rating: bool,
    /// `{agent}` is who resolved it.
    pub confirm_question: String,
    pub yes_label: String,
    pub no_label: String,
    /// Said to a "yes" when no rating is asked.
    pub confirmed: String,
    /// Said to a "no" when `{agent}` is online and takes it back.
    pub reopened_to_agent: String,
    /// Said to a "no" when the agent is away: the conversation goes back to the queue.
    pub reopened_to_queue: String,
    /// Said to a "yes" with the rating scale as quick replies; `{agent}` is who helped.
    pub rating_question: String,
    /// Asked when a resolution the customer did not confirm is closed; `{agent}` is who helped.
    pub rating_question_after_close: String,
    /// Said to a rating: an optional comment is welcome.
    pub comment_question: String,
    pub skip_label: String,
    /// Said once the feedback is complete.
    pub thanks: String,
    /// Told when an agent closes the conversation.
    pub closed_notice: String,
    /// Told when an agent rejects the request.
    pub rejected_notice: String,
    /// Told when an agent hands the conversation back to the bot.
    pub back_to_bot_notice: String,
    /// Also mail these notices (and document decisions) to a customer who left an email address
    /// while writing on another channel; needs the email channel (`[email]`) for sending.
    pub email_copies: bool,
    /// The texts above in other languages, by ISO 639-1 code (`[closing.languages.de]`): said
    /// to customers who write in that language; a text a language leaves out is said as above.
    pub languages: Languages,
}

/// Texts by language code, then by the name of the text they replace.
pub type Languages = std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>;

/// Replaces each text `field` finds by its name with that language's; names no field finds
/// are refused (as "section.languages.code.name", what is wrong).
pub fn check_languages(section: &str, languages: &Languages, known: &[&str]) -> Option<(String, String)> {
    for (code, texts) in languages {
        if !switchboard_models::DETECTED_LANGUAGES.contains(&code.as_str()) {
            let codes = switchboard_models::DETECTED_LANGUAGES.join(", ");
            return Some((format!("{section}.languages.{code}"), format!("is not a language the bot tells apart; use one of: {codes}")));
        }
        if let Some(unknown) = texts.keys().find(|name| !known.contains(&name.as_str())) {
            return Some((format!("{section}.languages.{code}.{unknown}"), format!("is no text of [{section}]; use one of: {}", known.join(", "))));
        }
    }
    None
}

/// The texts of `[closing]` a language may replace.
const CLOSING_TEXTS: &[&str] = &[
    "confirm_question", "yes_label", "no_label", "confirmed", "reopened_to_agent", "reopened_to_queue", "rating_question",
    "rating_question_after_close", "comment_question", "skip_label", "thanks", "closed_notice", "rejected_notice", "back_to_bot_notice",
];

impl Default for ClosingPolicy {
    fn default() -> Self {
        Self {
            confirm_resolution: true,
            ask_rating: true,
            confirm_question: "{agent} marked this as solved. Did that fix it?".into(),
            yes_label: "Yes, it's fixed".into(),
            no_label: "No, not yet".into(),
            confirmed: "Great, glad it's sorted. Write here any time if you need us again.".into(),
            reopened_to_agent: "Sorry it isn't fixed yet. I've passed it back to {agent}, who will reply here.".into(),
            reopened_to_queue: "Sorry it isn't fixed yet. I've passed it back to the team; someone will reply here."
                .into(),
            rating_question: "Glad to hear it! How would you rate the help you got from {agent}? \
                              1 is poor, 5 is excellent."
                .into(),
            rating_question_after_close: "Before you go: how would you rate the help you got from {agent}? 1 is poor, 5 is excellent."
                .into(),
            comment_question: "Thank you! Anything you'd like to tell us? Write it here, or tap Skip.".into(),
            skip_label: "Skip".into(),
            thanks: "Thank you for your feedback.".into(),
            closed_notice: "This conversation is closed. Write here any time to start a new one.".into(),
            rejected_notice: "We're unable to help with this request here. Write here any time if there's \
                              something else we can do."
                .into(),
            back_to_bot_notice: "You're back with the assistant. Ask away, or say \"agent\" to reach a person again."
                .into(),
            email_copies: true,
            languages: Languages::new(),
        }
    }
}

impl ClosingPolicy {
    /// The first problem with these settings, as (key, what is wrong).
    pub fn problem(&self) -> Option<(String, String)> {
        if let Some(problem) = check_languages("closing", &self.languages, CLOSING_TEXTS) {
            return Some(problem);
        }
        // Each language's texts, put in place, must make sense as well.
        let codes = std::iter::once(None).chain(self.languages.keys().map(|code| Some(code.as_str())));
        codes.map(|code| (code, self.in_language(code))).find_map(|(code, texts)| {
            let (key, problem) = texts.own_problem()?;
            let key = match code {
                Some(code) => format!("closing.languages.{code}.{key}"),
                None => format!("closing.{key}"),
            };
            Some((key, problem.to_string()))
        })
    }

    fn own_problem(&self) -> Option<(&'static str, &'static str)> {
        let blank = |text: &str| text.trim().is_empty();
        if self.confirm_resolution && blank(&self.confirm_question) {
            return Some(("confirm_question", "is empty; write the question or set closing.confirm_resolution = false"));
        }
        if self.confirm_resolution && (blank(&self.yes_label) || blank(&self.no_label)) {
            return Some(("yes_label", "the yes and no buttons need a label each"));
        }
        if self.ask_rating && (blank(&self.rating_question) || blank(&self.skip_label)) {
            return Some(("rating_question", "is empty (or skip_label is); write it or set closing.ask_rating = false"));
        }
        None
    }

    /// The texts to use with a customer writing in `language`.
    pub fn in_language(&self, language: Option<&str>) -> std::borrow::Cow<'_, ClosingPolicy> {
        let Some(texts) = language.and_then(|code| self.languages.get(code)) else {
            return std::borrow::Cow::Borrowed(self);
        };
        let mut localized = self.clone();
        for (name, text) in texts {
            let field = match name.as_str() {
                "confirm_question" => &mut localized.confirm_question,
                "yes_label" => &mut localized.yes_label,
                "no_label" => &mut localized.no_label,
                "confirmed" => &mut localized.confirmed,
                "reopened_to_agent" => &mut localized.reopened_to_agent,
                "reopened_to_queue" => &mut localized.reopened_to_queue,
                "rating_question" => &mut localized.rating_question,
                "rating_question_after_close" => &mut localized.rating_question_after_close,
                "comment_question" => &mut localized.comment_question,
                "skip_label" => &mut localized.skip_label,
                "thanks" => &mut localized.thanks,
                "closed_notice" => &mut localized.closed_notice,
                "rejected_notice" => &mut localized.rejected_notice,
                "back_to_bot_notice" => &mut localized.back_to_bot_notice,
                _ => continue,
            };
            field.clone_from(text);
        }
        std::borrow::Cow::Owned(localized)
    }
}

/// The rating scale as quick replies: every channel shows them its own way (widget stars,
/// keyboard buttons) and a typed digit works the same.
pub const RATING_CHOICES: [&str; 5] = ["1", "2", "3", "4", "5"];

/// A customer's answer to "did that fix it?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Yes,
    No,
}

const YES_WORDS: &[&str] = &[
    "yes", "y", "yeah", "yep", "yup", "ya", "sure", "fixed", "solved", "sorted", "resolved", "works", "ok", "okay",
    "perfect", "great", "👍", "✅", "ja", "jawohl", "oui", "si", "sí", "sim", "da", "tak", "evet", "igen", "kyllä", "sì",
];
const NO_WORDS: &[&str] = &[
    "no", "n", "nope", "nah", "not", "still", "didn't", "didnt", "doesn't", "doesnt", "isn't", "isnt", "👎", "❌", "nein",
    "non", "não", "nao", "nee", "nie", "hayır", "nem", "ei",
];

/// Greetings a mail's answer may start with.
const GREETINGS: &[&str] = &["hi", "hello", "hey", "dear", "hallo", "bonjour", "hola", "ciao", "hej"];

/// Words at most, for a message to be read as a short answer rather than something new.
const SHORT_ANSWER_WORDS: usize = 8;

fn words(text: &str) -> Vec<String> {
    text.split_whitespace()
        .map(|w| w.trim_matches(|c: char| c.is_ascii_punctuation() && c != '\'').to_lowercase())
        .filter(|w| !w.is_empty())
        .collect()
}


/// Reads a short "yes" or "no" (its first word, in several languages, or a quick reply's
/// label). Anything longer or else is a new message: `None`.
pub fn confirmation_answer(text: &str, policy: &ClosingPolicy) -> Option<Answer> {
    let trimmed = text.trim();
    if trimmed.eq_ignore_ascii_case(policy.yes_label.trim()) {
        return Some(Answer::Yes);
    }
    if trimmed.eq_ignore_ascii_case(policy.no_label.trim()) {
        return Some(Answer::No);
    }
    let mut words = words(trimmed);
    // A mail's "Hi," before the answer.
    if words.len() > 1 && GREETINGS.contains(&words[0].as_str()) {
        words.remove(0);
    }
    if words.is_empty() || words.len() > SHORT_ANSWER_WORDS {
        return None;
    }
    // "not fixed", "still broken", "didn't work" lead with a no word; "no problem, thanks" is
    // the one common "no" that means yes.
    if words.len() >= 2 && words[0] == "no" && matches!(words[1].as_str(), "problem" | "worries") {
        return Some(Answer::Yes);
    }
    let first = words[0].as_str();
    if NO_WORDS.contains(&first) {
        Some(Answer::No)
    } else if YES_WORDS.contains(&first) {
        // "Yes but it still fails", "ok, now I get an error": not a plain yes.
        let doubts = words[1..].iter().any(|w| NO_WORDS.contains(&w.as_str()) || matches!(w.as_str(), "but" | "however" | "error" | "aber" | "mais" | "pero"));
        (!doubts).then_some(Answer::Yes)
    } else {
        None
    }
}

/// Reads a rating, 1 to 5: a digit ("4", "4/5", "4 stars") or as many stars ("★★★★", "⭐⭐⭐⭐").
/// Anything else, or more than a few words, is not a rating.
pub fn rating_in(text: &str) -> Option<u8> {
    let trimmed = text.trim();
    let stars = trimmed.chars().filter(|c| matches!(c, '★' | '⭐')).count();
    if stars > 0 {
        let only_stars = trimmed.chars().all(|c| matches!(c, '★' | '⭐' | '☆' | '\u{fe0f}') || c.is_whitespace());
        return (only_stars && (1..=5).contains(&stars)).then_some(stars as u8);
    }
    let words = words(trimmed);
    if words.is_empty() || words.len() > 5 {
        return None;
    }
    let first = words[0].strip_suffix("/5").unwrap_or(&words[0]);
    let score: u8 = first.parse().ok()?;
    let rest_ok = words[1..].iter().all(|w| matches!(w.as_str(), "/5" | "5" | "of" | "out" | "stars" | "star" | "/"));
    ((1..=5).contains(&score) && rest_ok).then_some(score)
}

/// Whether the customer declines to comment (or to rate).
pub fn declines(text: &str, policy: &ClosingPolicy) -> bool {
    let trimmed = text.trim();
    if trimmed.eq_ignore_ascii_case(policy.skip_label.trim()) {
        return true;
    }
    let words = words(trimmed);
    matches!(words.iter().map(String::as_str).collect::<Vec<_>>().as_slice(), ["skip"] | ["no"] | ["nope"] | ["no", "thanks"] | ["no", "thank", "you"] | ["nothing"] | ["no", "comment"] | ["-"])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_language_replaces_the_texts_it_names_and_keeps_the_rest() {
        let mut policy = ClosingPolicy::default();
        policy.languages.insert("de".into(), [("yes_label".to_string(), "Ja".to_string())].into());
        let german = policy.in_language(Some("de"));
        assert_eq!((german.yes_label.as_str(), german.no_label.as_str()), ("Ja", "No, not yet"));
        assert!(matches!(policy.in_language(Some("fr")), std::borrow::Cow::Borrowed(_)), "a language without texts says the defaults");
        assert!(matches!(policy.in_language(None), std::borrow::Cow::Borrowed(_)));
        assert_eq!(policy.problem(), None);
    }

    #[test]
    fn a_language_with_an_unknown_code_or_text_or_an_empty_question_is_refused_naming_the_key() {
        let with = |code: &str, name: &str, text: &str| {
            let mut policy = ClosingPolicy::default();
            policy.languages.insert(code.into(), [(name.to_string(), text.to_string())].into());
            policy.problem().map(|(key, _)| key)
        };
        assert_eq!(with("German", "yes_label", "Ja").as_deref(), Some("closing.languages.German"));
        assert_eq!(with("nb", "yes_label", "Ja").as_deref(), Some("closing.languages.nb"), "a language the bot never detects");
        assert_eq!(with("de", "yes_lable", "Ja").as_deref(), Some("closing.languages.de.yes_lable"));
        assert_eq!(with("de", "confirm_question", " ").as_deref(), Some("closing.languages.de.confirm_question"));
        assert_eq!(with("de", "confirm_question", "Gelöst?"), None);
    }

    #[test]
    fn short_answers_are_read_in_several_languages_and_anything_longer_is_a_new_message() {
        let policy = ClosingPolicy::default();
        for yes in ["yes", "Yes!", "yep, thanks", "Yes, it's fixed", "👍", "ja danke", "oui merci", "sí", "no problem, thanks", "Hi,\n\nyes it works"] {
            assert_eq!(confirmation_answer(yes, &policy), Some(Answer::Yes), "{yes}");
        }
        for no in ["no", "No.", "nope", "No, not yet", "still broken", "not fixed", "didn't work", "nein", "non", "não"] {
            assert_eq!(confirmation_answer(no, &policy), Some(Answer::No), "{no}");
        }
        for other in [
            "how do I change my password?",
            "",
            "   ",
            "I want to order a pizza with extra cheese and olives please now",
            "yes but it still doesn't work",
            "ok, now I get error 500",
        ] {
            assert_eq!(confirmation_answer(other, &policy), None, "{other}");
        }
    }

    #[test]
    fn ratings_are_digits_or_stars_one_to_five() {
        for (text, score) in [("4", 4), (" 5 ", 5), ("3/5", 3), ("2 stars", 2), ("1 out of 5", 1), ("3 out of 5 stars", 3), ("★★★★", 4), ("⭐⭐⭐⭐⭐", 5), ("⭐️⭐️⭐️", 3)] {
            assert_eq!(rating_in(text), Some(score), "{text}");
        }
        for text in ["0", "6", "10", "★★★★★★", "4 reasons why this is bad", "my order 12345", "four", "", "★ great"] {
            assert_eq!(rating_in(text), None, "{text}");
        }
    }

    #[test]
    fn declining_is_skip_or_a_plain_no() {
        let policy = ClosingPolicy::default();
        assert!(declines("Skip", &policy));
        assert!(declines("no thanks", &policy));
        assert!(!declines("no, the agent was rude", &policy));
    }
}
