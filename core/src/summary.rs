//! Extractive summary of what the customer said, for the agent's first look at a ticket.

use crate::ports::TranscriptLine;
use switchboard_models::{Agent, Message, Sender};

const MAX_CHARS: usize = 400;

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

/// The customer's first message (what it is about), then the latest ones (where it stands),
/// clipped to a few hundred characters. `texts` are oldest first.
pub fn extractive_summary(texts: &[String]) -> String {
    let texts: Vec<&str> = texts.iter().map(|t| t.trim()).filter(|t| !t.is_empty()).collect();
    let mut picked: Vec<&str> = Vec::new();
    if let Some(first) = texts.first() {
        picked.push(first);
    }
    for text in texts.iter().skip(1).rev().take(2).rev() {
        picked.push(text);
    }
    let joined = picked.join(" … ");
    if joined.chars().count() <= MAX_CHARS {
        return joined;
    }
    let mut clipped: String = joined.chars().take(MAX_CHARS - 1).collect();
    clipped.push('…');
    clipped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_first_and_the_last_two_messages() {
        let texts: Vec<String> =
            ["My card was charged twice", "ok", "still waiting", "I want a person"]
                .map(String::from)
                .to_vec();
        assert_eq!(
            extractive_summary(&texts),
            "My card was charged twice … still waiting … I want a person"
        );
        assert_eq!(extractive_summary(&[]), "");
        let long = vec!["x".repeat(1000)];
        assert_eq!(extractive_summary(&long).chars().count(), MAX_CHARS);
    }
}
