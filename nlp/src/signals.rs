//! Tone, urgency and language of a message, computed locally from lexicons and rules tuned for
//! support conversations (complaints read as complaints even without swear words).

use switchboard_models::Urgency;

/// Word (or phrase) and how positive (> 0) or negative (< 0) it sounds.
const TONE: &[(&str, f32)] = &[
    ("useless", -2.5), ("terrible", -2.8), ("awful", -2.6), ("worst", -3.0), ("horrible", -2.8),
    ("ridiculous", -2.4), ("unacceptable", -2.8), ("pathetic", -2.8), ("disgusting", -2.8),
    ("incompetent", -2.8), ("scam", -3.0), ("fraud", -2.0), ("rip off", -2.8), ("ripoff", -2.8),
    ("angry", -2.4), ("furious", -3.0), ("livid", -3.0), ("annoyed", -1.8), ("annoying", -1.8),
    ("frustrated", -2.0), ("frustrating", -2.0), ("disappointed", -2.0), ("disappointing", -2.0),
    ("upset", -1.8), ("hate", -2.6), ("sucks", -2.4), ("crap", -2.4), ("rubbish", -2.2),
    ("garbage", -2.4), ("joke", -1.4), ("never again", -2.4), ("fed up", -2.4), ("sick of", -2.2),
    ("waste", -2.0), ("wasted", -2.0), ("broken", -1.2), ("bad", -1.6), ("poor", -1.5), ("wrong", -0.8),
    ("problem", -0.6), ("issue", -0.4), ("fail", -1.2), ("failed", -1.2), ("fails", -1.2),
    ("error", -0.6), ("can't", -0.5), ("cannot", -0.5), ("unhappy", -2.0), ("lawyer", -2.0),
    ("sue", -2.2), ("complaint", -1.6), ("cancel", -0.6), ("refund", -0.6), ("still", -0.4),
    ("again", -0.4), ("nobody", -0.8), ("ignored", -1.8), ("ignoring", -1.8), ("lied", -2.6),
    ("stole", -2.6), ("charged twice", -1.6), ("shame", -1.8), ("shameful", -2.4), ("wtf", -2.6),
    ("thanks", 1.6), ("thank", 1.6), ("great", 2.2), ("good", 1.4), ("love", 2.4), ("awesome", 2.6),
    ("amazing", 2.6), ("excellent", 2.8), ("perfect", 2.6), ("helpful", 2.0), ("happy", 2.0),
    ("nice", 1.6), ("appreciate", 2.0), ("wonderful", 2.6), ("fantastic", 2.6), ("brilliant", 2.4),
    ("works", 0.8), ("solved", 1.6), ("fixed", 1.2), ("pleased", 2.0), ("glad", 1.8), ("cool", 1.2),
    ("please", 0.2), ("kind", 1.4), ("fast", 0.8), ("easy", 1.2),
];

const NEGATIONS: &[&str] = &["not", "no", "never", "don't", "doesn't", "didn't", "isn't", "wasn't", "aren't", "nothing", "hardly"];
const BOOSTERS: &[&str] = &["very", "so", "really", "extremely", "totally", "completely", "absolutely", "utterly", "beyond", "incredibly"];

/// Sentiment in -1..=1 (VADER-style normalisation of summed word scores).
pub fn sentiment(text: &str) -> f32 {
    let lower = text.to_lowercase();
    let words = words(&lower);
    let mut sum = 0.0f32;
    let mut i = 0;
    while i < words.len() {
        let (score, width) = match phrase_at(&words, i) {
            Some(found) => found,
            None => {
                i += 1;
                continue;
            }
        };
        let before = &words[i.saturating_sub(3)..i];
        let mut value = score;
        if before.iter().any(|w| BOOSTERS.contains(&w.as_str())) {
            value *= 1.3;
        }
        if before.iter().any(|w| NEGATIONS.contains(&w.as_str())) {
            value *= -0.6;
        }
        sum += value;
        i += width;
    }
    if sum < 0.0 {
        // Shouting and exclamation marks make a complaint stronger, not a compliment weaker.
        let letters: Vec<char> = text.chars().filter(|c| c.is_alphabetic()).collect();
        let upper = letters.iter().filter(|c| c.is_uppercase()).count();
        if letters.len() >= 8 && upper * 10 >= letters.len() * 7 {
            sum *= 1.4;
        }
        sum -= 0.3 * text.matches('!').count().min(3) as f32;
    }
    sum / (sum * sum + 6.0).sqrt()
}

/// Urgency from wording. Critical ones escalate on their own; elevated raises the priority.
pub fn urgency(text: &str) -> Urgency {
    const CRITICAL: &[&str] = &[
        "urgent", "urgently", "emergency", "asap", "as soon as possible", "immediately", "right now",
        "right away", "fraud", "fraudulent", "stolen", "hacked", "unauthorized", "unauthorised",
        "security breach", "data breach", "locked out", "is down", "are down", "outage", "critical",
        "legal action", "lawyer",
    ];
    const ELEVATED: &[&str] = &[
        "today", "tonight", "quickly", "soon", "deadline", "still waiting", "still not", "again",
        "for days", "for hours", "for a week", "several times", "multiple times", "no response",
        "can't access", "cannot access", "not working", "doesn't work", "stopped working", "!!",
    ];
    let lower = text.to_lowercase();
    let words = words(&lower);
    let has = |list: &[&str]| list.iter().any(|phrase| contains_phrase(&words, &lower, phrase));
    if has(CRITICAL) {
        Urgency::Critical
    } else if has(ELEVATED) {
        Urgency::Elevated
    } else {
        Urgency::None
    }
}

/// ISO 639-1 code of the text's language, when the text is long enough to tell reliably.
pub fn language(text: &str) -> Option<String> {
    if text.chars().filter(|c| c.is_alphabetic()).count() < 12 {
        return None;
    }
    let info = whatlang::detect(text)?;
    // whatlang's own "reliable" flag rejects most short messages; its confidence is enough here.
    if info.confidence() < 0.3 {
        return None;
    }
    code_of(info.lang()).map(str::to_string)
}

/// The ISO 639-1 code of a detected language we name (`switchboard_models::DETECTED_LANGUAGES`).
fn code_of(lang: whatlang::Lang) -> Option<&'static str> {
    use whatlang::Lang::*;
    let code = match lang {
        Eng => "en", Deu => "de", Fra => "fr", Spa => "es", Ita => "it", Por => "pt", Nld => "nl",
        Rus => "ru", Ukr => "uk", Pol => "pl", Tur => "tr", Ara => "ar", Jpn => "ja", Cmn => "zh",
        Kor => "ko", Hin => "hi", Swe => "sv", Dan => "da", Fin => "fi", Ces => "cs", Ell => "el",
        Heb => "he", Hun => "hu", Ron => "ro", Ind => "id", Vie => "vi", Tha => "th",
        _ => return None,
    };
    Some(code)
}

fn words(lower: &str) -> Vec<String> {
    lower
        .split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

fn phrase_at(words: &[String], i: usize) -> Option<(f32, usize)> {
    TONE.iter()
        .filter_map(|(phrase, score)| {
            let parts: Vec<&str> = phrase.split(' ').collect();
            let fits = words.len() >= i + parts.len() && parts.iter().enumerate().all(|(k, p)| words[i + k] == *p);
            fits.then_some((*score, parts.len()))
        })
        .max_by_key(|(_, width)| *width)
}

fn contains_phrase(words: &[String], lower: &str, phrase: &str) -> bool {
    if !phrase.chars().any(char::is_alphanumeric) {
        return lower.contains(phrase);
    }
    let parts: Vec<&str> = phrase.split(' ').collect();
    words.windows(parts.len()).any(|w| w.iter().zip(&parts).all(|(a, b)| a == b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_language_told_apart_is_one_the_configuration_may_name() {
        let named: Vec<&str> = whatlang::Lang::all().iter().filter_map(|lang| code_of(*lang)).collect();
        let mut sorted = named.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, switchboard_models::DETECTED_LANGUAGES, "the codes in DETECTED_LANGUAGES, each once");
    }

    #[test]
    fn complaints_read_as_strongly_negative() {
        for text in [
            "Your support team is useless, I want a refund now!",
            "This is the worst service ever. Absolutely unacceptable.",
            "I'm furious, you charged me twice AGAIN",
            "THIS IS RIDICULOUS, NOTHING WORKS",
        ] {
            assert!(sentiment(text) <= -0.6, "{text}: {}", sentiment(text));
        }
    }

    #[test]
    fn neutral_and_positive_messages() {
        assert!(sentiment("How do I change my email address?").abs() < 0.2);
        assert!(sentiment("Thanks, that was really helpful!") > 0.5);
        assert!(sentiment("The app is not bad at all") > -0.3);
        assert!(sentiment("not good") < 0.0);
    }

    #[test]
    fn urgency_levels() {
        assert_eq!(urgency("My card was stolen, block it immediately"), Urgency::Critical);
        assert_eq!(urgency("The whole site is down"), Urgency::Critical);
        assert_eq!(urgency("I need this fixed today"), Urgency::Elevated);
        assert_eq!(urgency("How do I export my data?"), Urgency::None);
        assert_eq!(urgency("The downloads page"), Urgency::None);
    }

    /// The evaluation set's 733 messages (twelve languages, two words to long emails): most are
    /// told in their own language, the rest left unsaid (too short or unsure, or nearest a
    /// language we do not name: then the channel's report, or none, decides), very few told
    /// wrong. A wrong language picks the localized texts a customer is sent, and can send a
    /// foreign message to the English-only first stage or an English one past it.
    #[test]
    fn the_evaluation_sets_languages_are_told_or_left_unsaid_and_rarely_mistaken() {
        let mut reader = csv::Reader::from_path(concat!(env!("CARGO_MANIFEST_DIR"), "/eval/support.csv")).expect("nlp/eval/support.csv");
        let (mut told, mut unsaid, mut wrong) = (0, 0, Vec::new());
        for row in reader.records() {
            let row = row.expect("a CSV row");
            let (text, labelled) = (&row[1], &row[2]);
            match language(text) {
                Some(detected) if detected == labelled => told += 1,
                Some(detected) => wrong.push(format!("{labelled} read as {detected}: {text}")),
                None => unsaid += 1,
            }
        }
        eprintln!("told {told}, unsaid {unsaid}, wrong {}", wrong.len());
        assert!(told >= 600, "told {told}, unsaid {unsaid}");
        // 12 today: English read as Danish, French or German, romanised Hindi as Turkish.
        // Detecting among the named languages only (whatlang's allow list) was measured: 17.
        assert!(wrong.len() <= 12, "{wrong:#?}");
    }

    #[test]
    fn language_only_when_reliable() {
        assert_eq!(language("I cannot log into my account since yesterday evening").as_deref(), Some("en"));
        assert_eq!(language("Ich kann mich seit gestern nicht mehr in mein Konto einloggen").as_deref(), Some("de"));
        assert_eq!(language("ok"), None);
    }
}
