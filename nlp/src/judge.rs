//! `switchboard nlu judge`: how good the service's whole decision is on labelled support
//! messages — category (or out of scope), escalate now, priority and tone — as configured,
//! without training anything on the data. The labelled set is `nlp/eval/support.csv`.

use crate::eval::{ConfusedPair, EvalError};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use switchboard_models::{Need, Priority};

/// The label of a message that is no support request for the business at all.
pub const OUT_OF_SCOPE: &str = "oos";

/// Tone bands on the classifier's sentiment score (-1 ..= 1).
const NEGATIVE_AT_OR_BELOW: f32 = -0.2;
const POSITIVE_AT_OR_ABOVE: f32 = 0.2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tone {
    Negative,
    Neutral,
    Positive,
}

impl Tone {
    const ALL: [Tone; 3] = [Tone::Negative, Tone::Neutral, Tone::Positive];

    pub fn of(score: f32) -> Tone {
        if score <= NEGATIVE_AT_OR_BELOW {
            Tone::Negative
        } else if score >= POSITIVE_AT_OR_ABOVE {
            Tone::Positive
        } else {
            Tone::Neutral
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Tone> {
        match text {
            "negative" => Some(Tone::Negative),
            "neutral" => Some(Tone::Neutral),
            "positive" => Some(Tone::Positive),
            _ => None,
        }
    }
}

/// One labelled message. Only `text` and `category` are required; a column the CSV lacks is
/// simply not scored.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    pub id: String,
    pub text: String,
    pub language: Option<String>,
    /// A category name, or `oos`.
    pub category: String,
    pub escalate_now: Option<bool>,
    pub priority: Option<Priority>,
    pub tone: Option<Tone>,
    pub need: Option<Need>,
}

/// What the service decided for one message.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// A category name, or `oos` when the bot took it as out of scope.
    pub category: String,
    pub escalate_now: bool,
    /// None when the step set no priority (counted as low).
    pub priority: Option<Priority>,
    pub sentiment: f32,
    /// None when the classifier made no judgement.
    pub need: Option<Need>,
    pub millis: f64,
    /// Decided by the classifier's first stage, without the sentence encoder.
    pub first_stage: bool,
    /// Decided by the fast path (the words-only head or the first stage's ranking) instead of
    /// the sentence encoder: shed under load, or asked for (`nlu judge --fast-path`).
    pub fast_path: bool,
}

/// Reads the labelled CSV: a header naming at least `text` and `category`; `id`, `language`,
/// `escalate_now` (true/false), `priority` and `sentiment` (negative/neutral/positive) are used
/// when present. A bad value is an error naming its row.
pub fn read_cases(path: &Path) -> Result<Vec<Case>, EvalError> {
    let error = |reason: String| EvalError::Data { path: path.display().to_string(), reason };
    let mut reader = csv::Reader::from_path(path).map_err(|e| error(e.to_string()))?;
    let headers = reader.headers().map_err(|e| error(e.to_string()))?.clone();
    let column = |name: &str| headers.iter().position(|h| h.trim().eq_ignore_ascii_case(name));
    let required = |name: &str| column(name).ok_or_else(|| error(format!("no `{name}` column; the header must name `text` and `category`")));
    let (text_at, category_at) = (required("text")?, required("category")?);
    let (id_at, language_at, escalate_at, priority_at, tone_at, need_at) =
        (column("id"), column("language"), column("escalate_now"), column("priority"), column("sentiment"), column("need"));
    let mut cases = Vec::new();
    for (index, record) in reader.records().enumerate() {
        let row = index + 2;
        let record = record.map_err(|e| error(format!("row {row}: {e}")))?;
        let field = |at: Option<usize>| at.and_then(|at| record.get(at)).map(str::trim).filter(|v| !v.is_empty());
        let bad = |what: &str, value: &str, expected: &str| error(format!("row {row}: {what} `{value}`; expected {expected}"));
        let (Some(text), Some(category)) = (field(Some(text_at)), field(Some(category_at))) else {
            return Err(error(format!("row {row}: empty text or category")));
        };
        let escalate_now = match field(escalate_at) {
            None => None,
            Some("true") => Some(true),
            Some("false") => Some(false),
            Some(other) => return Err(bad("escalate_now", other, "true or false")),
        };
        let priority = field(priority_at)
            .map(|p| p.parse::<Priority>().map_err(|_| bad("priority", p, "urgent, high, medium or low")))
            .transpose()?;
        let tone = field(tone_at).map(|t| Tone::parse(t).ok_or_else(|| bad("sentiment", t, "negative, neutral or positive"))).transpose()?;
        let need = field(need_at).map(|n| n.parse::<Need>().map_err(|e| error(format!("row {row}: {e}")))).transpose()?;
        cases.push(Case {
            id: field(id_at).map(str::to_string).unwrap_or_else(|| format!("row {row}")),
            text: text.to_string(),
            language: field(language_at).map(str::to_string),
            category: category.to_string(),
            escalate_now,
            priority,
            tone,
            need,
        });
    }
    if cases.is_empty() {
        return Err(error("no rows".into()));
    }
    Ok(cases)
}

/// Precision, recall and F1 of one yes/no decision.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Binary {
    pub true_positives: usize,
    pub false_positives: usize,
    pub false_negatives: usize,
    pub true_negatives: usize,
    pub precision: f32,
    pub recall: f32,
    pub f1: f32,
}

impl Binary {
    fn of(pairs: impl Iterator<Item = (bool, bool)>) -> Binary {
        let mut b = Binary::default();
        for (expected, predicted) in pairs {
            match (expected, predicted) {
                (true, true) => b.true_positives += 1,
                (false, true) => b.false_positives += 1,
                (true, false) => b.false_negatives += 1,
                (false, false) => b.true_negatives += 1,
            }
        }
        let ratio = |a: usize, b: usize| if a + b == 0 { 0.0 } else { a as f32 / (a + b) as f32 };
        b.precision = ratio(b.true_positives, b.false_positives);
        b.recall = ratio(b.true_positives, b.false_negatives);
        b.f1 = if b.precision + b.recall == 0.0 { 0.0 } else { 2.0 * b.precision * b.recall / (b.precision + b.recall) };
        b
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupScore {
    /// A language code, or a length band such as `6-20 words`.
    pub group: String,
    pub cases: usize,
    pub category_accuracy: f32,
    /// Over this language's labelled rows; None when it has none.
    pub escalate_f1: Option<f32>,
}

/// A message the service got wrong on category or escalation, for reading.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mistake {
    pub id: String,
    pub text: String,
    pub expected: String,
    pub decided: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub cases: usize,
    pub category_accuracy: f32,
    pub category_confusions: Vec<ConfusedPair>,
    /// "Out of scope" as a yes/no decision.
    pub out_of_scope: Binary,
    pub escalate_now: Option<Binary>,
    pub sentiment_accuracy: Option<f32>,
    /// Rows: labelled negative, neutral, positive; columns: decided the same.
    pub sentiment_confusion: [[usize; 3]; 3],
    pub priority_exact: Option<f32>,
    pub priority_within_one_level: Option<f32>,
    /// Over rows with a labelled need, when the classifier judged needs.
    pub need_accuracy: Option<f32>,
    pub need_confusions: Vec<ConfusedPair>,
    pub by_language: Vec<GroupScore>,
    /// By length in words: short messages and long emails fail differently.
    pub by_length: Vec<GroupScore>,
    pub latency_p50_ms: f64,
    pub latency_p95_ms: f64,
    pub mistakes: Vec<Mistake>,
    /// The messages the first stage decided, and how well.
    pub first_stage: FirstStageShare,
    /// How many the fast path decided instead of the sentence encoder.
    pub fast_path: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FirstStageShare {
    pub taken: usize,
    /// Category right among them.
    pub category_accuracy: Option<f32>,
    /// Among them, labelled "escalate now" (the bot answered instead).
    pub should_have_escalated: usize,
}

fn accuracy(pairs: impl Iterator<Item = bool>) -> Option<f32> {
    let (mut right, mut all) = (0usize, 0usize);
    for ok in pairs {
        all += 1;
        right += usize::from(ok);
    }
    (all > 0).then(|| right as f32 / all as f32)
}

/// Bands in words, named so that they sort in order. Chinese and Japanese are written without
/// spaces: two of their characters count as a word.
fn length_band(text: &str) -> &'static str {
    let ideographs = text.chars().filter(|c| matches!(*c as u32, 0x3040..=0x30FF | 0x4E00..=0x9FFF)).count();
    match text.split_whitespace().count() + ideographs / 2 {
        0..=5 => "1) up to 5 words",
        6..=20 => "2) 6-20 words",
        21..=60 => "3) 21-60 words",
        _ => "4) over 60 words",
    }
}

/// Priorities as levels: urgent 0 … low 3; no priority counts as low.
fn level(priority: Option<Priority>) -> i32 {
    match priority.unwrap_or(Priority::Low) {
        Priority::Urgent => 0,
        Priority::High => 1,
        Priority::Medium => 2,
        Priority::Low => 3,
    }
}

/// Scores `verdicts` (one per case, in order) against the labels.
pub fn score(cases: &[Case], verdicts: &[Verdict]) -> Report {
    assert_eq!(cases.len(), verdicts.len(), "one verdict per case");
    let both = || cases.iter().zip(verdicts);
    let category_accuracy = accuracy(both().map(|(c, v)| c.category == v.category)).unwrap_or(0.0);
    let mut confusions: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (case, verdict) in both().filter(|(c, v)| c.category != v.category) {
        *confusions.entry((case.category.clone(), verdict.category.clone())).or_default() += 1;
    }
    let mut category_confusions: Vec<ConfusedPair> =
        confusions.into_iter().map(|((expected, predicted), count)| ConfusedPair { expected, predicted, count }).collect();
    category_confusions.sort_by(|a, b| b.count.cmp(&a.count));
    category_confusions.truncate(12);
    let out_of_scope = Binary::of(both().map(|(c, v)| (c.category == OUT_OF_SCOPE, v.category == OUT_OF_SCOPE)));
    let escalation = |rows: &mut dyn Iterator<Item = (&Case, &Verdict)>| {
        let labelled: Vec<(bool, bool)> = rows.filter_map(|(c, v)| c.escalate_now.map(|e| (e, v.escalate_now))).collect();
        (!labelled.is_empty()).then(|| Binary::of(labelled.into_iter()))
    };
    let escalate_now = escalation(&mut both());
    let mut sentiment_confusion = [[0usize; 3]; 3];
    for (case, verdict) in both() {
        if let Some(tone) = case.tone {
            let decided = Tone::of(verdict.sentiment);
            let at = |t: Tone| Tone::ALL.iter().position(|x| *x == t).unwrap_or(1);
            sentiment_confusion[at(tone)][at(decided)] += 1;
        }
    }
    let sentiment_accuracy = accuracy(both().filter_map(|(c, v)| c.tone.map(|t| t == Tone::of(v.sentiment))));
    let priority_exact = accuracy(both().filter_map(|(c, v)| c.priority.map(|p| level(Some(p)) == level(v.priority))));
    let priority_within_one_level =
        accuracy(both().filter_map(|(c, v)| c.priority.map(|p| (level(Some(p)) - level(v.priority)).abs() <= 1)));
    let needs = || both().filter_map(|(c, v)| Some((c.need?, v.need?)));
    let need_accuracy = accuracy(needs().map(|(expected, decided)| expected == decided));
    let mut need_pairs: BTreeMap<(Need, Need), usize> = BTreeMap::new();
    for pair in needs().filter(|(expected, decided)| expected != decided) {
        *need_pairs.entry(pair).or_default() += 1;
    }
    let mut need_confusions: Vec<ConfusedPair> = need_pairs
        .into_iter()
        .map(|((expected, predicted), count)| ConfusedPair { expected: expected.to_string(), predicted: predicted.to_string(), count })
        .collect();
    need_confusions.sort_by(|a, b| b.count.cmp(&a.count));
    need_confusions.truncate(12);

    let by_group = |group_of: &dyn Fn(&Case) -> String| -> Vec<GroupScore> {
        let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (index, case) in cases.iter().enumerate() {
            groups.entry(group_of(case)).or_default().push(index);
        }
        groups
            .into_iter()
            .map(|(group, rows)| GroupScore {
                cases: rows.len(),
                category_accuracy: accuracy(rows.iter().map(|&i| cases[i].category == verdicts[i].category)).unwrap_or(0.0),
                escalate_f1: escalation(&mut rows.iter().map(|&i| (&cases[i], &verdicts[i]))).map(|b| b.f1),
                group,
            })
            .collect()
    };
    let by_language = by_group(&|case| case.language.clone().unwrap_or_else(|| "?".into()));
    let by_length = by_group(&|case| length_band(&case.text).to_string());

    let taken = || both().filter(|(_, v)| v.first_stage);
    let first_stage = FirstStageShare {
        taken: taken().count(),
        category_accuracy: accuracy(taken().map(|(c, v)| c.category == v.category)),
        should_have_escalated: taken().filter(|(c, _)| c.escalate_now == Some(true)).count(),
    };
    let mut times: Vec<f64> = verdicts.iter().map(|v| v.millis).collect();
    times.sort_by(f64::total_cmp);
    let percentile = |q: f64| times.get(((times.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(0.0);
    let describe = |category: &str, escalate: Option<bool>| match escalate {
        Some(true) => format!("{category}, escalate now"),
        Some(false) => format!("{category}, bot answers"),
        None => category.to_string(),
    };
    let mistakes = both()
        .filter(|(c, v)| c.category != v.category || c.escalate_now.is_some_and(|e| e != v.escalate_now))
        .take(60)
        .map(|(c, v)| Mistake {
            id: c.id.clone(),
            text: c.text.chars().take(160).collect(),
            expected: describe(&c.category, c.escalate_now),
            decided: describe(&v.category, Some(v.escalate_now)),
        })
        .collect();
    Report {
        cases: cases.len(),
        category_accuracy,
        category_confusions,
        out_of_scope,
        escalate_now,
        sentiment_accuracy,
        sentiment_confusion,
        priority_exact,
        priority_within_one_level,
        need_accuracy,
        need_confusions,
        by_language,
        by_length,
        latency_p50_ms: percentile(0.5),
        latency_p95_ms: percentile(0.95),
        mistakes,
        first_stage,
        fast_path: verdicts.iter().filter(|v| v.fast_path).count(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(category: &str, escalate: bool, priority: Priority, tone: Tone) -> Case {
        Case {
            id: "x".into(),
            text: "t".into(),
            language: Some("en".into()),
            category: category.into(),
            escalate_now: Some(escalate),
            priority: Some(priority),
            tone: Some(tone),
            need: None,
        }
    }

    fn verdict(category: &str, escalate: bool, priority: Option<Priority>, sentiment: f32) -> Verdict {
        Verdict { category: category.into(), escalate_now: escalate, priority, sentiment, need: None, millis: 1.0, first_stage: false, fast_path: false }
    }

    #[test]
    fn every_part_of_the_decision_is_scored() {
        let cases = [
            case("billing", true, Priority::High, Tone::Negative),
            case("billing", false, Priority::Low, Tone::Neutral),
            case(OUT_OF_SCOPE, false, Priority::Low, Tone::Positive),
            case("complaint", true, Priority::Urgent, Tone::Negative),
        ];
        let verdicts = [
            verdict("billing", true, Some(Priority::Urgent), -0.7),
            verdict("billing", true, None, 0.0),
            verdict("general_inquiry", false, None, 0.5),
            verdict(OUT_OF_SCOPE, false, Some(Priority::Low), 0.1),
        ];
        let report = score(&cases, &verdicts);
        assert_eq!(report.category_accuracy, 0.5);
        let escalate = report.escalate_now.unwrap();
        assert_eq!((escalate.true_positives, escalate.false_positives, escalate.false_negatives), (1, 1, 1));
        assert_eq!((escalate.precision, escalate.recall, escalate.f1), (0.5, 0.5, 0.5));
        assert_eq!((report.out_of_scope.true_positives, report.out_of_scope.false_positives), (0, 1));
        assert_eq!(report.sentiment_accuracy, Some(0.75), "the last one is neutral, labelled negative");
        assert_eq!(report.sentiment_confusion[0], [1, 1, 0]);
        assert_eq!(report.priority_exact, Some(0.5), "no priority counts as low");
        assert_eq!(report.priority_within_one_level, Some(0.75), "urgent decided as low is three levels off");
        assert_eq!(report.mistakes.len(), 3);
        assert_eq!(report.mistakes[0].expected, "billing, bot answers");
        assert_eq!(report.by_language[0].cases, 4);
        assert_eq!(report.by_length.iter().map(|g| g.cases).sum::<usize>(), 4);
    }

    #[test]
    fn tone_bands() {
        assert_eq!((Tone::of(-0.2), Tone::of(-0.19), Tone::of(0.19), Tone::of(0.2)), (Tone::Negative, Tone::Neutral, Tone::Neutral, Tone::Positive));
    }

    #[test]
    fn the_csv_must_hold_valid_labels_and_says_which_row_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cases.csv");
        std::fs::write(&path, "id,text,category,escalate_now,priority,sentiment\ne1,hello,general_inquiry,false,low,neutral\n").unwrap();
        let cases = read_cases(&path).unwrap();
        assert_eq!((cases[0].escalate_now, cases[0].priority, cases[0].tone), (Some(false), Some(Priority::Low), Some(Tone::Neutral)));
        std::fs::write(&path, "text,category,priority\nhello,billing,soon\n").unwrap();
        let error = read_cases(&path).unwrap_err().to_string();
        assert!(error.contains("row 2: priority `soon`; expected urgent, high, medium or low"), "{error}");
        std::fs::write(&path, "text,label\nhello,billing\n").unwrap();
        assert!(read_cases(&path).unwrap_err().to_string().contains("no `category` column"));
    }

    #[test]
    fn the_shipped_evaluation_set_reads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("eval/support.csv");
        let cases = read_cases(&path).unwrap();
        assert!(cases.len() >= 600, "{}", cases.len());
        assert!(cases.iter().all(|c| c.escalate_now.is_some() && c.priority.is_some() && c.tone.is_some()));
    }
}
