//! What a panel search looks for, shared by the stores (which match it with their full-text
//! indexes) and the panel (which highlights it).

/// A word to find. The last word of a search, when it has three letters or more, also matches
/// as the start of a longer word, as it is being typed ("card refun" finds "card refund");
/// the others match whole. Expanding every word made a search of two common words cost
/// PostgreSQL's index a bitmap of every message holding either; a short last word would
/// match too much ("3" is not every "30…").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchWord {
    pub text: String,
    pub prefix: bool,
}

impl SearchWord {
    fn matches(&self, word: &str) -> bool {
        let word = word.to_lowercase();
        if self.prefix { word.starts_with(&self.text) } else { word == self.text }
    }
}

/// The words of a search: letters and digits only, so no input can be read as query syntax;
/// at most 16.
pub fn search_words(text: &str) -> Vec<SearchWord> {
    let mut words: Vec<SearchWord> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(16)
        .map(|w| SearchWord { text: w.to_lowercase(), prefix: false })
        .collect();
    if let Some(last) = words.last_mut() {
        last.prefix = last.text.chars().count() >= 3;
    }
    words
}

/// Whether every word of a search is in `text`: the stores' full-text rule, for texts already
/// read (one conversation's messages).
pub fn matches_all(text: &str, words: &[SearchWord]) -> bool {
    let text_words: Vec<&str> = text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).collect();
    !words.is_empty() && words.iter().all(|word| text_words.iter().any(|candidate| word.matches(candidate)))
}

/// About `width` characters of `text` around its first match, cut into pieces that are a
/// match (`true`) or not, for the panel to mark. Newlines become spaces.
pub fn highlight(text: &str, words: &[SearchWord], width: usize) -> Vec<(String, bool)> {
    let text = text.replace(['\n', '\r'], " ");
    // Word boundaries by character index.
    let chars: Vec<char> = text.chars().collect();
    let mut marks = vec![false; chars.len()];
    let mut start = 0;
    let mut first_match = None;
    for end in 0..=chars.len() {
        let boundary = end == chars.len() || !chars[end].is_alphanumeric();
        if boundary {
            if end > start {
                let word: String = chars[start..end].iter().collect();
                if words.iter().any(|w| w.matches(&word)) {
                    marks[start..end].iter_mut().for_each(|m| *m = true);
                    first_match.get_or_insert(start);
                }
            }
            start = end + 1;
        }
    }
    // Start a little before the first match, so it is seen with some context.
    let from = first_match.map_or(0, |at| at.saturating_sub(width / 4));
    let to = (from + width).min(chars.len());
    let mut pieces: Vec<(String, bool)> = Vec::new();
    if from > 0 {
        pieces.push(("…".into(), false));
    }
    for index in from..to {
        match pieces.last_mut() {
            Some((piece, marked)) if *marked == marks[index] && piece != "…" => piece.push(chars[index]),
            _ => pieces.push((chars[index].to_string(), marks[index])),
        }
    }
    if to < chars.len() {
        pieces.push(("…".into(), false));
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_word_must_be_in_the_text() {
        let words = search_words("CARD refu");
        assert!(matches_all("Please refund my card.", &words));
        assert!(!matches_all("Please refund me.", &words));
        assert!(!matches_all("Please refund my cardigan.", &words), "only the last word is a prefix");
        assert!(!matches_all("Please refund my card.", &search_words("refu card")));
        assert!(!matches_all("scar of a cardinal refusal", &search_words("ar")), "short words match only whole");
        assert!(!matches_all("anything", &[]), "no words find nothing");
    }

    #[test]
    fn words_are_plain_and_short_ones_whole() {
        let words = search_words("Card \"OR\" 3*");
        assert_eq!(
            words,
            [
                SearchWord { text: "card".into(), prefix: false },
                SearchWord { text: "or".into(), prefix: false },
                SearchWord { text: "3".into(), prefix: false },
            ]
        );
        assert_eq!(search_words("3 card"), [SearchWord { text: "3".into(), prefix: false }, SearchWord { text: "card".into(), prefix: true }]);
    }

    #[test]
    fn highlight_marks_whole_words_that_start_with_a_search_word() {
        let pieces = highlight("My card was charged twice, refund the Card", &search_words("card charg"), 200);
        assert!(highlight("cards", &search_words("card x"), 200).iter().all(|(_, marked)| !marked), "whole words before the last");
        let marked: Vec<&str> = pieces.iter().filter(|(_, m)| *m).map(|(t, _)| t.as_str()).collect();
        assert_eq!(marked, ["card", "charged", "Card"]);
        assert_eq!(pieces.iter().map(|(t, _)| t.as_str()).collect::<String>(), "My card was charged twice, refund the Card");
    }

    #[test]
    fn highlight_keeps_a_long_text_around_its_first_match() {
        let text = format!("{} invoice {}", "a ".repeat(100), "b ".repeat(100));
        let pieces = highlight(&text, &search_words("invoice"), 40);
        let joined: String = pieces.iter().map(|(t, _)| t.as_str()).collect();
        assert!(joined.starts_with('…') && joined.ends_with('…'), "{joined}");
        assert!(pieces.iter().any(|(t, m)| *m && t == "invoice"));
        assert!(joined.chars().count() <= 42);
    }
}
