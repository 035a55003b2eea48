//! The keyword classifier: the fallback that runs with no model at all. Word and phrase
//! matches pick the intent; a small lexicon gives sentiment and urgency.

use async_trait::async_trait;
use switchboard_core::ports::Classifier;
use switchboard_models::{Category, Classification, ClassificationSource, IntentName, IntentScore, Urgency};

struct KeywordIntent {
    name: &'static str,
    category: Category,
    /// Lowercase words or phrases; a phrase matches on word boundaries.
    keywords: &'static [&'static str],
    answer: Option<&'static str>,
    always_escalate: bool,
    /// The answer asks for a document of this type.
    collect_document: Option<&'static str>,
}

const INTENTS: &[KeywordIntent] = &[
    KeywordIntent {
        name: IntentName::GREETING,
        category: Category::GeneralInquiry,
        keywords: &["hello", "hi", "hey", "good morning", "good afternoon", "good evening", "hiya"],
        answer: Some("Hi! I'm the support assistant. How can I help you today?"),
        always_escalate: false,
        collect_document: None,
    },
    KeywordIntent {
        name: IntentName::GOODBYE,
        category: Category::GeneralInquiry,
        keywords: &["bye", "goodbye", "see you", "that's all", "that is all"],
        answer: Some("Goodbye! Write again any time."),
        always_escalate: false,
        collect_document: None,
    },
    KeywordIntent {
        name: IntentName::THANKS,
        category: Category::GeneralInquiry,
        keywords: &["thanks", "thank you", "thx", "cheers", "appreciate"],
        answer: Some("You're welcome! Is there anything else I can help with?"),
        always_escalate: false,
        collect_document: None,
    },
    KeywordIntent {
        name: IntentName::HUMAN_REQUEST,
        category: Category::GeneralInquiry,
        keywords: &[
            "human", "person", "real person", "agent", "someone", "somebody", "representative",
            "operator", "talk to", "speak to", "staff", "support team",
        ],
        answer: None,
        always_escalate: false,
        collect_document: None,
    },
    KeywordIntent {
        name: "billing_question",
        category: Category::Billing,
        keywords: &[
            "invoice", "bill", "billing", "charge", "charged", "payment", "pay", "paid", "price",
            "subscription", "card", "receipt",
        ],
        answer: Some(
            "Invoices and payment details are under Settings → Billing. If a charge looks wrong, \
             tell me the date and amount and I'll pass it to our billing team.",
        ),
        always_escalate: false,
        collect_document: None,
    },
    KeywordIntent {
        name: "send_payment_proof",
        category: Category::Billing,
        keywords: &["proof of payment", "payment proof", "payment receipt", "transfer receipt", "bank slip"],
        answer: Some("Please send your proof of payment here, as a photo or a PDF."),
        always_escalate: false,
        collect_document: Some("proof_of_payment"),
    },
    KeywordIntent {
        name: "refund_request",
        category: Category::Billing,
        keywords: &["refund", "money back", "reimburse", "chargeback"],
        answer: None,
        always_escalate: true,
        collect_document: None,
    },
    KeywordIntent {
        name: "technical_problem",
        category: Category::TechnicalSupport,
        keywords: &[
            "error", "bug", "crash", "crashes", "broken", "not working", "doesn't work",
            "does not work", "fails", "failed", "slow", "down", "outage",
        ],
        answer: Some(
            "Sorry about the trouble. Restarting the app and checking our status page fixes most \
             problems. If it persists, tell me what you see (an error message helps) and I'll \
             get a technician on it.",
        ),
        always_escalate: false,
        collect_document: None,
    },
    KeywordIntent {
        name: "account_access",
        category: Category::Account,
        keywords: &["password", "login", "log in", "sign in", "account", "locked", "username", "2fa"],
        answer: Some(
            "You can reset your password with \"Forgot password\" on the sign-in page. If your \
             account is locked, tell me the email address on it.",
        ),
        always_escalate: false,
        collect_document: None,
    },
    KeywordIntent {
        name: "complaint",
        category: Category::Complaint,
        keywords: &["complaint", "complain", "unacceptable", "disappointed", "terrible service"],
        answer: None,
        always_escalate: true,
        collect_document: None,
    },
    KeywordIntent {
        name: "feature_request",
        category: Category::FeatureRequest,
        keywords: &["feature", "suggestion", "would be nice", "please add", "wish"],
        answer: Some("Thanks for the idea! I've noted it for our product team."),
        always_escalate: false,
        collect_document: None,
    },
    KeywordIntent {
        name: "opening_hours",
        category: Category::GeneralInquiry,
        keywords: &["opening hours", "open", "hours", "when are you"],
        answer: Some("Our team is available Monday to Friday, 9:00–18:00 CET. I'm here around the clock."),
        always_escalate: false,
        collect_document: None,
    },
];

const NEGATIVE: &[&str] = &[
    "angry", "terrible", "awful", "useless", "worst", "hate", "ridiculous", "unacceptable",
    "scam", "furious", "disgusting", "horrible", "pathetic", "never again", "fed up",
];
const POSITIVE: &[&str] = &["thanks", "thank you", "great", "love", "awesome", "perfect", "excellent", "happy"];
const CRITICAL: &[&str] = &["fraud", "stolen", "hacked", "emergency", "security breach"];
const ELEVATED: &[&str] = &["urgent", "urgently", "asap", "immediately", "right now", "as soon as possible"];

#[derive(Default)]
pub struct KeywordClassifier;

impl KeywordClassifier {
    pub fn classify_text(&self, text: &str) -> Classification {
        // A chat app's start command (Telegram's /start) opens the conversation: greet.
        let text = if text.trim() == "/start" || text.trim().starts_with("/start ") { "hello" } else { text };
        let normalised = normalise(text);
        let mut scores: Vec<(usize, f32)> = INTENTS
            .iter()
            .enumerate()
            .map(|(i, intent)| (i, weight(&normalised, intent.keywords)))
            .filter(|(_, score)| *score > 0.0)
            .collect();
        // "Hi, I forgot my password" is about the password: pleasantries yield to a topic.
        let social = |i: usize| [IntentName::GREETING, IntentName::THANKS, IntentName::GOODBYE].contains(&INTENTS[i].name);
        if scores.iter().any(|&(i, _)| !social(i)) {
            for (i, score) in scores.iter_mut() {
                if social(*i) {
                    *score *= 0.5;
                }
            }
        }
        scores.sort_by(|a, b| b.1.total_cmp(&a.1));
        let total: f32 = scores.iter().map(|(_, s)| s).sum();
        let sentiment = sentiment(&normalised);
        let urgency = if CRITICAL.iter().any(|w| contains_phrase(&normalised, w)) {
            Urgency::Critical
        } else if ELEVATED.iter().any(|w| contains_phrase(&normalised, w)) {
            Urgency::Elevated
        } else {
            Urgency::None
        };
        let Some(&(best, best_score)) = scores.first() else {
            return Classification {
                intent: IntentName::parse(IntentName::OUT_OF_SCOPE).expect("valid name"),
                category: Category::GeneralInquiry,
                confidence: 0.0,
                alternatives: Vec::new(),
                sentiment,
                urgency,
                language: None,
                answer: None,
                always_escalate: false,
                collect_document: None,
                source: ClassificationSource::Keywords,
                judgement: None,
                embedding: None,
            };
        };
        // Share of the evidence, damped for single weak matches.
        let confidence = (best_score / total) * (best_score / (best_score + 0.5)).min(1.0) + 0.25;
        let intent = &INTENTS[best];
        Classification {
            intent: IntentName::parse(intent.name).expect("built-in names are valid"),
            category: intent.category,
            confidence: confidence.min(0.95),
            alternatives: scores
                .iter()
                .skip(1)
                .take(3)
                .map(|&(i, s)| IntentScore {
                    intent: IntentName::parse(INTENTS[i].name).expect("built-in names are valid"),
                    confidence: s / total,
                })
                .collect(),
            sentiment,
            urgency,
            language: None,
            answer: intent.answer.map(str::to_string),
            always_escalate: intent.always_escalate,
            collect_document: intent.collect_document.map(str::to_string),
            source: ClassificationSource::Keywords,
            judgement: None,
            embedding: None,
        }
    }
}

#[async_trait]
impl Classifier for KeywordClassifier {
    async fn classify(&self, text: &str) -> Classification {
        self.classify_text(text)
    }

    fn classify_now(&self, text: &str, language: Option<&str>) -> Option<Classification> {
        Some(switchboard_core::ports::in_reported_language(self.classify_text(text), language))
    }
}

/// Lowercase words separated by single spaces, with a space at each end for phrase matching.
fn normalise(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push(' ');
    for word in text
        .split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
    {
        out.push_str(&word.to_lowercase().replace('’', "'"));
        out.push(' ');
    }
    out
}

fn contains_phrase(normalised: &str, phrase: &str) -> bool {
    normalised.contains(&format!(" {phrase} "))
}

/// Longer phrases count more: they are more specific.
fn weight(normalised: &str, keywords: &[&str]) -> f32 {
    keywords
        .iter()
        .filter(|k| contains_phrase(normalised, k))
        .map(|k| 1.0 + k.matches(' ').count() as f32)
        .sum()
}

fn sentiment(normalised: &str) -> f32 {
    let negative = NEGATIVE.iter().filter(|w| contains_phrase(normalised, w)).count() as f32;
    let positive = POSITIVE.iter().filter(|w| contains_phrase(normalised, w)).count() as f32;
    ((positive - negative * 0.7) / 2.0).clamp(-1.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intent(text: &str) -> String {
        KeywordClassifier.classify_text(text).intent.to_string()
    }

    #[test]
    fn recognises_the_everyday_intents() {
        assert_eq!(intent("hello"), "greeting");
        assert_eq!(intent("I want to talk to a person"), "human_request");
        assert_eq!(intent("I was charged twice on my card"), "billing_question");
        assert_eq!(intent("I forgot my password"), "account_access");
        assert_eq!(intent("qwerty zxcv"), "out_of_scope");
        assert_eq!(intent("Hi, I forgot my password"), "account_access", "the topic beats the greeting");
        let greeting = KeywordClassifier.classify_text("hello");
        assert!(greeting.confidence >= 0.5, "{greeting:?}");
        assert!(greeting.answer.is_some());
    }

    #[test]
    fn hears_anger_and_urgency() {
        let angry = KeywordClassifier.classify_text("This is useless and ridiculous, I hate it");
        assert!(angry.sentiment <= -0.6, "{angry:?}");
        assert_eq!(KeywordClassifier.classify_text("my account was hacked").urgency, Urgency::Critical);
        assert_eq!(KeywordClassifier.classify_text("please fix asap").urgency, Urgency::Elevated);
    }
}
