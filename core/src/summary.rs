//! Extractive summary of what the customer said, for the agent's first look at a ticket.

use crate::ports::TranscriptLine;
use switchboard_models::{Agent, Message, Sender};

const MAX_CHARS: usize = 400;

/// How many of a conversation's newest messages to read for a transcript: enough for its last
/// lines even when internal notes are among them.
pub const TRANSCRIPT_MESSAGES: u32 = 200;

/// The conversation as an assistant reads it: what the customer saw (no internal notes), the
/// last 30 lines, oldest first.
pub fn transcript(messages: &[Message], agents: &[Agent]) -> Vec<TranscriptLine> {
    const LAST: usize = 30;
    let visible: Vec<&Message> = messages.iter().filter(|m| !m.internal && !m.text.trim().is_empty()).collect();
    visible[visible.len().saturating_sub(LAST)..]
        .iter()
        .map(|m| TranscriptLine {
            speaker: match m.sender {
                Sender::Customer => "Customer".into(),
                Sender::Bot => "Bot".into(),
                Sender::System => "System".into(),
                Sender::Agent => {
                    let name = m.agent_id.and_then(|id| agents.iter().find(|a| a.id == id)).map_or("Agent", |a| a.name.as_str());
                    format!("Agent {name}")
                }
            },
            text: m.text.clone(),
        })
        .collect()
}

/// Words that carry no topic.
const STOPWORDS: &[&str] = &[
    "the", "and", "for", "you", "your", "yours", "are", "was", "were", "has", "have", "had", "this", "that",
    "with", "from", "but", "not", "can", "could", "would", "should", "will", "just", "what", "when", "why",
    "how", "who", "which", "there", "their", "them", "they", "then", "than", "its", "it's", "i'm", "i've",
    "don't", "can't", "please", "thanks", "thank", "hello", "hi", "hey", "yes", "any", "all", "some", "about",
    "been", "being", "did", "does", "doing", "again", "still", "also", "very", "really", "get", "got", "now",
    "our", "out", "one", "too", "him", "her", "she", "his", "want", "need", "know", "like", "here",
];

/// The customer's sentences that say most about the case, in the order they were written,
/// clipped to a few hundred characters. Sentences score by how often their topic words recur in
/// the conversation; the first message (what it is about) and the latest (where it stands) get
/// a bonus; small talk and repeats are left out. `texts` are the customer's messages, oldest first.
pub fn extractive_summary(texts: &[String]) -> String {
    let messages: Vec<&str> = texts.iter().map(|t| t.trim()).filter(|t| !t.is_empty()).collect();
    let mut sentences: Vec<(usize, &str, Vec<String>)> = Vec::new();
    for (index, message) in messages.iter().enumerate() {
        for sentence in split_sentences(message) {
            sentences.push((index, sentence, topic_words(sentence)));
        }
    }
    let mut frequency: std::collections::HashMap<&str, f32> = std::collections::HashMap::new();
    for (_, _, words) in &sentences {
        for word in words {
            *frequency.entry(word.as_str()).or_default() += 1.0;
        }
    }
    let last = messages.len().saturating_sub(1);
    let mut ranked: Vec<(f32, usize)> = sentences
        .iter()
        .enumerate()
        .filter(|(_, (_, sentence, words))| !words.is_empty() && sentence.split_whitespace().count() >= 3)
        .map(|(at, (message, _, words))| {
            let weight: f32 = words.iter().map(|w| frequency[w.as_str()]).sum::<f32>() / (words.len() as f32).sqrt();
            let bonus = if *message == 0 { 1.5 } else if *message == last { 1.0 } else { 0.0 };
            (weight + bonus, at)
        })
        .collect();
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));

    let mut picked: Vec<usize> = Vec::new();
    let mut length = 0;
    for (_, at) in ranked {
        let (_, sentence, words) = &sentences[at];
        let repeat = picked.iter().any(|&p| sentences[p].2 == *words);
        if repeat || (!picked.is_empty() && length + sentence.chars().count() > MAX_CHARS) {
            continue;
        }
        length += sentence.chars().count() + 3;
        picked.push(at);
        if picked.len() == 3 {
            break;
        }
    }
    if picked.is_empty() {
        // Only small talk: keep what there is.
        return clip(&messages.join(" … "));
    }
    picked.sort_unstable();
    clip(&picked.iter().map(|&at| sentences[at].1).collect::<Vec<_>>().join(" … "))
}

fn split_sentences(text: &str) -> Vec<&str> {
    let mut sentences = Vec::new();
    let mut start = 0;
    for (at, c) in text.char_indices() {
        if matches!(c, '.' | '!' | '?' | '\n') {
            let end = at + c.len_utf8();
            let sentence = text[start..end].trim();
            if !sentence.trim_matches(|c: char| !c.is_alphanumeric()).is_empty() {
                sentences.push(sentence);
            }
            start = end;
        }
    }
    let rest = text[start..].trim();
    if !rest.trim_matches(|c: char| !c.is_alphanumeric()).is_empty() {
        sentences.push(rest);
    }
    sentences
}

fn topic_words(sentence: &str) -> Vec<String> {
    let mut words: Vec<String> = sentence
        .split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .map(str::to_lowercase)
        .filter(|w| w.chars().count() >= 3 && !STOPWORDS.contains(&w.as_str()))
        .collect();
    words.sort();
    words.dedup();
    words
}

fn clip(text: &str) -> String {
    if text.chars().count() <= MAX_CHARS {
        return text.to_string();
    }
    let mut clipped: String = text.chars().take(MAX_CHARS - 1).collect();
    clipped.push('…');
    clipped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_what_the_case_is_about_and_where_it_stands() {
        let texts: Vec<String> = [
            "Hi!",
            "My card was charged twice for the March invoice. I have the receipt.",
            "ok",
            "Is anyone there?",
            "The double charge on my card is still not refunded, I want a person.",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            extractive_summary(&texts),
            "My card was charged twice for the March invoice. … I have the receipt. … \
             The double charge on my card is still not refunded, I want a person."
        );
    }

    #[test]
    fn small_talk_repeats_and_length() {
        assert_eq!(extractive_summary(&[]), "");
        let chatter: Vec<String> = ["hello", "ok thanks"].map(String::from).to_vec();
        assert_eq!(extractive_summary(&chatter), "hello … ok thanks");
        let repeated: Vec<String> =
            ["The app crashes on start.", "The app crashes on start!", "It crashes on start every time."].map(String::from).to_vec();
        assert_eq!(extractive_summary(&repeated), "The app crashes on start. … It crashes on start every time.");
        let long = vec!["word ".repeat(300)];
        assert_eq!(extractive_summary(&long).chars().count(), MAX_CHARS);
    }
}
