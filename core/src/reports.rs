//! The Reports page's numbers, computed from what `ports::Reports` counts for a period: days
//! and hours in the viewer's time zone, rates, and per-agent rows.

use crate::ports::{EventCount, HourCount, IntentCount, ReportPeriod, StateCount, UnsureMessage, WaitPercentiles, ZoneOffsets};
use chrono::{Datelike, NaiveDate, Offset, TimeZone, Timelike};
use chrono_tz::Tz;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use switchboard_models::{AgentId, Category, Channel, ConversationId, EventKind, Priority, Rating, Status, Timestamp};

/// Which conversations a report covers, over `[from, to)`, and the zone its days are in.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportQuery {
    pub from: Timestamp,
    pub to: Timestamp,
    pub zone: Tz,
    pub channel: Option<Channel>,
    pub category: Option<Category>,
    /// Conversations with this agent now; the per-agent rows show only them.
    pub agent: Option<AgentId>,
}

impl ReportQuery {
    /// The period and filters, as the store reads them.
    pub fn period(&self) -> ReportPeriod {
        ReportPeriod { from: self.from, to: self.to, channel: self.channel, category: self.category, agent: self.agent }
    }

    /// The zone's offsets over the period: where they change, found to the second.
    pub fn offsets(&self) -> ZoneOffsets {
        let offset_at = |at: Timestamp| i64::from(self.zone.offset_from_utc_datetime(&at.naive_utc()).fix().local_minus_utc()) * 1000;
        let mut offsets = vec![(self.from, offset_at(self.from))];
        let mut at = self.from;
        while at < self.to {
            let next = (at + chrono::Duration::hours(1)).min(self.to);
            let current = offsets.last().expect("one offset").1;
            if offset_at(next) != current {
                // The change lies in (at, next]: halve the gap down to a second.
                let (mut before, mut after) = (at, next);
                while after - before > chrono::Duration::seconds(1) {
                    let middle = before + (after - before) / 2;
                    if offset_at(middle) == current { before = middle } else { after = middle }
                }
                offsets.push((after, offset_at(after)));
            }
            at = next;
        }
        ZoneOffsets(offsets)
    }
}

/// What was read from the store for one report.
pub struct ReportInput {
    pub hours: Vec<HourCount>,
    pub states: Vec<StateCount>,
    pub events: Vec<EventCount>,
    pub waits: Vec<WaitPercentiles>,
    pub intents: Vec<IntentCount>,
    pub ratings: Vec<Rating>,
    /// Messages the bot was unsure of, newest first.
    pub unsure: Vec<UnsureMessage>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub days: Vec<DayVolume>,
    pub conversations: i64,
    pub by_status: Vec<Count>,
    pub bot: BotReport,
    pub first_reply: Durations,
    pub resolution: Durations,
    pub agents: Vec<AgentReport>,
    pub satisfaction: Satisfaction,
    pub intents: Vec<Count>,
    /// Automated responses: how often each intent's answer was sent, most first.
    pub answers_sent: Vec<Count>,
    pub customer_messages: i64,
    /// Customer messages per conversation started in the period.
    pub messages_per_conversation: Option<f64>,
    /// Conversations started, by weekday (Monday first) and hour, in the report's zone.
    pub busiest_hours: Vec<Vec<i64>>,
    /// What the bot should learn: the messages it was unsure of, grouped by the intent it
    /// leaned to, largest group first.
    pub needs_teaching: Vec<TeachingGroup>,
}

/// Messages the bot was unsure of that say much the same (their embeddings are alike), or,
/// without embeddings, that it leaned to the same intent; `leaning` is the intent most of them
/// leaned to (or out of scope).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TeachingGroup {
    pub leaning: String,
    pub count: usize,
    /// The newest few.
    pub examples: Vec<TeachingExample>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TeachingExample {
    pub conversation_id: ConversationId,
    pub seq: i64,
    pub text: String,
    pub confidence: Option<f64>,
    pub at: Timestamp,
}

/// Examples shown per group.
const EXAMPLES_PER_GROUP: usize = 5;
/// How alike (cosine) a message must be to a group's centroid (the sum of its members'
/// embeddings) to join it. Measured with the default encoder: messages asking the same thing
/// in other words score 0.35–0.65 against their group, messages on other topics below 0.2.
pub const SIMILAR_ENOUGH: f32 = 0.35;

fn needs_teaching(unsure: &[UnsureMessage]) -> Vec<TeachingGroup> {
    struct Forming<'a> {
        /// The sum of the members' embeddings; `None` for a group by leaning alone.
        centroid: Option<Vec<f32>>,
        leanings: Vec<String>,
        members: Vec<&'a UnsureMessage>,
    }
    let cosine = |centroid: &[f32], embedding: &[i8]| {
        let (mut dot, mut a, mut b) = (0f32, 0f32, 0f32);
        for (&c, &e) in centroid.iter().zip(embedding) {
            let e = f32::from(e);
            dot += c * e;
            a += c * c;
            b += e * e;
        }
        if a == 0.0 || b == 0.0 || centroid.len() != embedding.len() { 0.0 } else { dot / (a.sqrt() * b.sqrt()) }
    };
    let leaning_of = |m: &UnsureMessage| m.intent.clone().unwrap_or_else(|| "out_of_scope".into());
    let mut forming: Vec<Forming> = Vec::new();
    for message in unsure {
        let leaning = leaning_of(message);
        let joins = match &message.embedding {
            Some(embedding) => forming
                .iter()
                .enumerate()
                .filter_map(|(index, group)| group.centroid.as_ref().map(|centroid| (index, cosine(centroid, &embedding.0))))
                .filter(|(_, similarity)| *similarity >= SIMILAR_ENOUGH)
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(index, _)| index),
            None => forming.iter().position(|group| group.centroid.is_none() && group.leanings[0] == leaning),
        };
        let index = joins.unwrap_or_else(|| {
            let centroid = message.embedding.as_ref().map(|e| vec![0.0; e.0.len()]);
            forming.push(Forming { centroid, leanings: Vec::new(), members: Vec::new() });
            forming.len() - 1
        });
        let group = &mut forming[index];
        if let (Some(centroid), Some(embedding)) = (group.centroid.as_mut(), &message.embedding) {
            centroid.iter_mut().zip(embedding.0.iter()).for_each(|(c, &e)| *c += f32::from(e));
        }
        group.leanings.push(leaning);
        group.members.push(message);
    }
    let mut groups: Vec<TeachingGroup> = forming
        .into_iter()
        .map(|group| {
            // The leaning most of the group shares; ties go to the newest message's.
            let mut tally: Vec<(&String, usize)> = Vec::new();
            for leaning in &group.leanings {
                match tally.iter_mut().find(|(name, _)| *name == leaning) {
                    Some((_, n)) => *n += 1,
                    None => tally.push((leaning, 1)),
                }
            }
            let most = tally.iter().map(|(_, n)| *n).max().unwrap_or(0);
            let leaning = tally.iter().find(|(_, n)| *n == most).map(|(name, _)| (*name).clone()).unwrap_or_default();
            TeachingGroup {
                leaning,
                count: group.members.len(),
                examples: group
                    .members
                    .iter()
                    .take(EXAMPLES_PER_GROUP)
                    .map(|m| TeachingExample { conversation_id: m.conversation_id, seq: m.seq, text: m.text.clone(), confidence: m.confidence, at: m.at })
                    .collect(),
            }
        })
        .collect();
    groups.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.leaning.cmp(&b.leaning)));
    groups
}

/// Conversations started on one day, per channel.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DayVolume {
    pub day: NaiveDate,
    pub total: i64,
    pub by_channel: BTreeMap<Channel, i64>,
}

/// How many had one value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Count {
    pub name: String,
    pub count: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BotReport {
    /// Conversations started in the period that the bot handled to the end without a person.
    pub contained: i64,
    /// Of those started in the period, the share handed to people (0..=1).
    pub escalation_rate: Option<f64>,
    /// Escalations made in the period.
    pub escalations: i64,
    pub by_reason: Vec<Count>,
    pub by_category: Vec<Count>,
    pub by_priority: Vec<Count>,
}

/// Waits, in milliseconds, and how many of those under an SLA were in time.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Durations {
    pub count: usize,
    pub median_ms: Option<i64>,
    pub p90_ms: Option<i64>,
    /// Of the waits an SLA applied to, the share within it (0..=1).
    pub within_sla: Option<f64>,
}

impl Durations {
    /// The waits of `kind` (everyone's with `agent: None`), and how many of the events an SLA
    /// applied to were within it.
    fn of(input: &ReportInput, kind: EventKind, agent: Option<AgentId>) -> Self {
        let (mut met, mut under_sla) = (0i64, 0i64);
        for count in input.events.iter().filter(|e| e.kind == kind && (agent.is_none() || e.agent_id == agent)) {
            match count.reason.as_deref() {
                Some("sla_met") => (met, under_sla) = (met + count.count, under_sla + count.count),
                Some("sla_missed") => under_sla += count.count,
                _ => {}
            }
        }
        let waits = input.waits.iter().find(|w| w.kind == kind && w.agent_id == agent);
        Self {
            count: waits.map_or(0, |w| usize::try_from(w.count).unwrap_or(0)),
            median_ms: waits.map(|w| w.median_ms),
            p90_ms: waits.map(|w| w.p90_ms),
            within_sla: (under_sla > 0).then(|| met as f64 / under_sla as f64),
        }
    }
}

/// The nearest-rank position (1-based) of the `p`th percentile among `count` sorted values;
/// the store picks the values at these ranks.
pub fn percentile_rank(count: i64, p: i64) -> i64 {
    (p * count + 99).div_euclid(100).max(1)
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentReport {
    pub agent_id: AgentId,
    /// Conversations given to or taken by the agent in the period.
    pub assigned: i64,
    pub first_reply: Durations,
    pub resolved: i64,
    pub resolution: Durations,
    pub ratings: i64,
    pub average_rating: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Satisfaction {
    pub ratings: i64,
    pub average: Option<f64>,
    /// How many gave 1, 2, 3, 4 and 5.
    pub distribution: [i64; 5],
}

pub fn report(query: &ReportQuery, input: &ReportInput) -> Report {
    let zone = query.zone;
    let local_day = |at: Timestamp| at.with_timezone(&zone).date_naive();
    let mut days: BTreeMap<NaiveDate, DayVolume> = BTreeMap::new();
    let mut day = local_day(query.from);
    let last = local_day(query.to - chrono::Duration::milliseconds(1));
    while day <= last {
        days.insert(day, DayVolume { day, total: 0, by_channel: BTreeMap::new() });
        day = day.succ_opt().expect("a day after");
    }
    let mut busiest_hours = vec![vec![0i64; 24]; 7];
    for hour in &input.hours {
        let Some(local) = chrono::DateTime::from_timestamp_millis(hour.local_hour * 3_600_000).map(|t| t.naive_utc()) else { continue };
        if let Some(volume) = days.get_mut(&local.date()) {
            volume.total += hour.count;
            *volume.by_channel.entry(hour.channel).or_default() += hour.count;
        }
        busiest_hours[local.weekday().num_days_from_monday() as usize][local.hour() as usize] += hour.count;
    }
    let mut by_status: BTreeMap<Status, i64> = BTreeMap::new();
    let (mut started, mut escalated, mut contained) = (0i64, 0i64, 0i64);
    let finished = |s: Status| matches!(s, Status::Resolved | Status::Confirmed | Status::Closed);
    for state in &input.states {
        *by_status.entry(state.status).or_default() += state.count;
        started += state.count;
        if state.escalated {
            escalated += state.count;
        } else if finished(state.status) {
            contained += state.count;
        }
    }

    let of_kind = |kind: EventKind| input.events.iter().filter(move |e| e.kind == kind);
    let mut reasons: HashMap<String, i64> = HashMap::new();
    let mut categories: HashMap<String, i64> = HashMap::new();
    let mut priorities: BTreeMap<Option<Priority>, i64> = BTreeMap::new();
    for e in of_kind(EventKind::Escalated) {
        *reasons.entry(e.reason.clone().unwrap_or_else(|| "unknown".into())).or_default() += e.count;
        *categories.entry(e.category.map_or("none", |c| c.as_str()).to_string()).or_default() += e.count;
        *priorities.entry(e.priority).or_default() += e.count;
    }
    let counted = |kind: EventKind, agent: AgentId| of_kind(kind).filter(|e| e.agent_id == Some(agent)).map(|e| e.count).sum::<i64>();

    let ratings = &input.ratings;
    let mut distribution = [0i64; 5];
    for r in ratings {
        if (1..=5).contains(&r.score) {
            distribution[usize::from(r.score) - 1] += 1;
        }
    }
    let average = |scores: &[&Rating]| (!scores.is_empty()).then(|| scores.iter().map(|r| f64::from(r.score)).sum::<f64>() / scores.len() as f64);
    let agents: BTreeSet<AgentId> = input
        .events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Assigned | EventKind::FirstReply | EventKind::Resolved))
        .filter_map(|e| e.agent_id)
        .chain(ratings.iter().filter_map(|r| r.agent_id))
        .collect();
    let agents = agents
        .into_iter()
        .map(|agent| {
            let theirs: Vec<&Rating> = ratings.iter().filter(|r| r.agent_id == Some(agent)).collect();
            AgentReport {
                agent_id: agent,
                assigned: counted(EventKind::Assigned, agent),
                first_reply: Durations::of(input, EventKind::FirstReply, Some(agent)),
                resolved: counted(EventKind::Resolved, agent),
                resolution: Durations::of(input, EventKind::Resolved, Some(agent)),
                ratings: theirs.len() as i64,
                average_rating: average(&theirs),
            }
        })
        .collect();

    let mut intents: HashMap<String, i64> = HashMap::new();
    let mut answers_sent: HashMap<String, i64> = HashMap::new();
    let mut customer_messages = 0;
    for count in &input.intents {
        customer_messages += count.count;
        let name = count.intent.clone().unwrap_or_else(|| "(not answered yet)".into());
        if count.answered > 0 {
            *answers_sent.entry(name.clone()).or_default() += count.answered;
        }
        *intents.entry(name).or_default() += count.count;
    }

    let all_ratings: Vec<&Rating> = ratings.iter().collect();
    Report {
        days: days.into_values().collect(),
        conversations: started,
        by_status: by_status.into_iter().map(|(s, n)| Count { name: s.as_str().into(), count: n }).collect(),
        bot: BotReport {
            contained,
            escalation_rate: (started > 0).then(|| escalated as f64 / started as f64),
            escalations: of_kind(EventKind::Escalated).map(|e| e.count).sum(),
            by_reason: ranked(reasons),
            by_category: ranked(categories),
            by_priority: priorities.into_iter().map(|(p, n)| Count { name: p.map_or("none", |p| p.as_str()).into(), count: n }).collect(),
        },
        first_reply: Durations::of(input, EventKind::FirstReply, None),
        resolution: Durations::of(input, EventKind::Resolved, None),
        agents,
        satisfaction: Satisfaction { ratings: ratings.len() as i64, average: average(&all_ratings), distribution },
        intents: ranked(intents),
        answers_sent: ranked(answers_sent),
        customer_messages,
        messages_per_conversation: (started > 0).then(|| customer_messages as f64 / started as f64),
        busiest_hours,
        needs_teaching: needs_teaching(&input.unsure),
    }
}

/// Most first; ties by name.
fn ranked(counts: HashMap<String, i64>) -> Vec<Count> {
    let mut counts: Vec<Count> = counts.into_iter().map(|(name, count)| Count { name, count }).collect();
    counts.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(day: u32, hour: u32) -> Timestamp {
        chrono::NaiveDate::from_ymd_opt(2026, 3, day).unwrap().and_hms_opt(hour, 0, 0).unwrap().and_utc()
    }

    fn query(from: Timestamp, to: Timestamp, zone: Tz) -> ReportQuery {
        ReportQuery { from, to, zone, channel: None, category: None, agent: None }
    }

    #[test]
    fn percentile_ranks_are_nearest_rank() {
        assert_eq!((percentile_rank(10, 50), percentile_rank(10, 90)), (5, 9));
        assert_eq!((percentile_rank(1, 50), percentile_rank(1, 90)), (1, 1));
        assert_eq!((percentile_rank(3, 50), percentile_rank(3, 90)), (2, 3));
    }

    #[test]
    fn a_zones_offsets_change_where_its_clocks_do() {
        // Berlin springs forward at 01:00 UTC on 29 March 2026.
        let march = query(at(28, 0), at(31, 0), chrono_tz::Europe::Berlin).offsets();
        assert_eq!(march.0, [(at(28, 0), 3_600_000), (at(29, 1), 7_200_000)]);
        assert_eq!(query(at(2, 0), at(9, 0), chrono_tz::Asia::Kolkata).offsets().0, [(at(2, 0), 19_800_000)]);
        assert_eq!(query(at(2, 0), at(2, 0), chrono_tz::UTC).offsets().0, [(at(2, 0), 0)]);
    }

    #[test]
    fn days_and_hours_are_the_viewers_and_counts_add_up() {
        let ann = AgentId::new();
        // Local hours in Berlin (UTC+1 in early March): 00:30 on the 2nd is 23:30 UTC on the 1st.
        let local_hour = |day: u32, hour: u32| at(day, hour).timestamp_millis() / 3_600_000;
        let event = |kind, agent, reason: Option<&str>, count| EventCount {
            kind,
            agent_id: agent,
            reason: reason.map(String::from),
            category: Some(Category::Billing),
            priority: Some(Priority::High),
            count,
        };
        let input = ReportInput {
            hours: vec![
                HourCount { local_hour: local_hour(2, 0), channel: Channel::Telegram, count: 1 },
                HourCount { local_hour: local_hour(2, 10), channel: Channel::WebChat, count: 2 },
            ],
            states: vec![
                StateCount { status: Status::Closed, escalated: false, count: 1 },
                StateCount { status: Status::Resolved, escalated: true, count: 1 },
                StateCount { status: Status::Open, escalated: false, count: 1 },
            ],
            events: vec![
                event(EventKind::Escalated, None, Some("human_requested"), 1),
                event(EventKind::Assigned, Some(ann), None, 1),
                event(EventKind::FirstReply, Some(ann), Some("sla_met"), 1),
                event(EventKind::FirstReply, Some(ann), Some("sla_missed"), 1),
                event(EventKind::Resolved, Some(ann), None, 1),
            ],
            waits: vec![
                WaitPercentiles { kind: EventKind::FirstReply, agent_id: None, count: 2, median_ms: 240_000, p90_ms: 600_000 },
                WaitPercentiles { kind: EventKind::FirstReply, agent_id: Some(ann), count: 2, median_ms: 240_000, p90_ms: 600_000 },
                WaitPercentiles { kind: EventKind::Resolved, agent_id: None, count: 1, median_ms: 10_800_000, p90_ms: 10_800_000 },
            ],
            intents: vec![
                IntentCount { intent: Some("refund".into()), count: 3, answered: 0 },
                IntentCount { intent: Some("greeting".into()), count: 1, answered: 1 },
                IntentCount { intent: Some("opening_hours".into()), count: 2, answered: 2 },
            ],
            ratings: Vec::new(),
            unsure: ["refund", "refund", "out_of_scope"]
                .iter()
                .enumerate()
                .map(|(n, intent)| UnsureMessage {
                    seq: n as i64,
                    conversation_id: ConversationId::new(),
                    text: format!("message {n}"),
                    intent: Some(intent.to_string()),
                    confidence: Some(0.3),
                    at: at(2, 9),
                    embedding: None,
                })
                .collect(),
        };
        let all = report(&query(at(1, 0), at(3, 0), chrono_tz::Europe::Berlin), &input);
        assert_eq!(all.days.len(), 3, "the 1st, 2nd and, from 23:00 UTC on the 2nd, the 3rd in Berlin");
        assert_eq!(all.days.iter().map(|d| d.total).collect::<Vec<_>>(), [0, 3, 0]);
        assert_eq!(all.days[1].by_channel.get(&Channel::WebChat), Some(&2));
        assert_eq!(all.conversations, 3);
        assert_eq!(all.bot.contained, 1, "only the closed conversation the bot kept");
        assert_eq!(all.bot.escalation_rate, Some(1.0 / 3.0));
        assert_eq!(all.first_reply, Durations { count: 2, median_ms: Some(4 * 60_000), p90_ms: Some(10 * 60_000), within_sla: Some(0.5) });
        assert_eq!(all.resolution.median_ms, Some(180 * 60_000));
        assert_eq!(all.busiest_hours[0][0], 1, "Monday 2 March 00:00-01:00 local");
        assert_eq!(all.busiest_hours[0][10], 2);
        assert_eq!(all.intents[0], Count { name: "refund".into(), count: 3 });
        assert_eq!(
            all.answers_sent,
            [Count { name: "opening_hours".into(), count: 2 }, Count { name: "greeting".into(), count: 1 }],
            "only the answers sent, most first"
        );
        assert_eq!(all.messages_per_conversation, Some(6.0 / 3.0));
        assert_eq!(all.agents.len(), 1);
        assert_eq!((all.agents[0].assigned, all.agents[0].resolved, all.agents[0].first_reply.count), (1, 1, 2));
        assert_eq!(all.agents[0].resolution.count, 0, "no per-agent waits were read");
        assert_eq!(all.needs_teaching.iter().map(|g| (g.leaning.as_str(), g.count)).collect::<Vec<_>>(), [("refund", 2), ("out_of_scope", 1)]);
    }

    #[test]
    fn unsure_messages_that_say_the_same_group_together_whatever_the_bot_leaned_to() {
        let vector = |values: &[f32]| Some(switchboard_models::Embedding::quantise(values));
        let unsure = |seq: i64, intent: &str, embedding| UnsureMessage {
            seq,
            conversation_id: ConversationId::new(),
            text: format!("message {seq}"),
            intent: Some(intent.into()),
            confidence: Some(0.3),
            at: at(2, 9),
            embedding,
        };
        let groups = needs_teaching(&[
            unsure(1, "refund", vector(&[1.0, 0.1, 0.0])),
            unsure(2, "out_of_scope", vector(&[0.9, 0.2, 0.0])),
            unsure(3, "out_of_scope", vector(&[0.95, 0.0, 0.1])),
            unsure(4, "refund", vector(&[0.0, 0.0, 1.0])),
            unsure(5, "refund", None),
            unsure(6, "refund", None),
        ]);
        let seen: Vec<(&str, usize, Vec<i64>)> = groups.iter().map(|g| (g.leaning.as_str(), g.count, g.examples.iter().map(|e| e.seq).collect())).collect();
        assert_eq!(
            seen,
            [("out_of_scope", 3, vec![1, 2, 3]), ("refund", 2, vec![5, 6]), ("refund", 1, vec![4])],
            "alike messages form one group named after what most leaned to; without embeddings, by leaning"
        );
    }
}
