//! The Reports page's numbers, computed from what `ports::Reports` reads for a period: days
//! and hours in the viewer's time zone, the filters, medians and 90th percentiles.

use crate::ports::{ConversationFacts, IntentCount, ReportScope, UnsureMessage};
use chrono::{Datelike, NaiveDate, Timelike};
use chrono_tz::Tz;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use switchboard_models::{AgentId, Category, Channel, ConversationEvent, ConversationId, EventKind, Priority, Rating, Status, Timestamp};

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
    fn selects(&self, scope: &ReportScope) -> bool {
        self.channel.is_none_or(|c| c == scope.channel)
            && self.category.is_none_or(|c| Some(c) == scope.category)
            && self.agent.is_none_or(|a| Some(a) == scope.agent_id)
    }
}

/// What was read from the store for one report.
pub struct ReportInput {
    pub conversations: Vec<ConversationFacts>,
    pub events: Vec<(ConversationEvent, ReportScope)>,
    pub intents: Vec<IntentCount>,
    pub ratings: Vec<(Rating, ReportScope)>,
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

/// Messages the bot was unsure of that it leaned to one intent (or found out of scope).
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

fn needs_teaching(query: &ReportQuery, unsure: &[UnsureMessage]) -> Vec<TeachingGroup> {
    let mut groups: Vec<TeachingGroup> = Vec::new();
    for message in unsure.iter().filter(|m| query.selects(&m.scope)) {
        let leaning = message.intent.clone().unwrap_or_else(|| "out_of_scope".into());
        let index = match groups.iter().position(|g| g.leaning == leaning) {
            Some(index) => index,
            None => {
                groups.push(TeachingGroup { leaning, count: 0, examples: Vec::new() });
                groups.len() - 1
            }
        };
        let group = &mut groups[index];
        group.count += 1;
        if group.examples.len() < EXAMPLES_PER_GROUP {
            group.examples.push(TeachingExample {
                conversation_id: message.conversation_id,
                seq: message.seq,
                text: message.text.clone(),
                confidence: message.confidence,
                at: message.at,
            });
        }
    }
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
    fn of<'a>(events: impl Iterator<Item = &'a ConversationEvent>) -> Self {
        let (mut waits, mut met, mut under_sla) = (Vec::new(), 0usize, 0usize);
        for event in events {
            waits.extend(event.wait_ms);
            match event.reason.as_deref() {
                Some("sla_met") => (met, under_sla) = (met + 1, under_sla + 1),
                Some("sla_missed") => under_sla += 1,
                _ => {}
            }
        }
        waits.sort_unstable();
        Self {
            count: waits.len(),
            median_ms: percentile(&waits, 50),
            p90_ms: percentile(&waits, 90),
            within_sla: (under_sla > 0).then(|| met as f64 / under_sla as f64),
        }
    }
}

/// The nearest-rank percentile of sorted values.
fn percentile(sorted: &[i64], p: usize) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    Some(sorted[rank - 1])
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
    let started: Vec<&ConversationFacts> = input.conversations.iter().filter(|c| query.selects(&c.scope)).collect();

    let mut days: BTreeMap<NaiveDate, DayVolume> = BTreeMap::new();
    let mut day = local_day(query.from);
    let last = local_day(query.to - chrono::Duration::milliseconds(1));
    while day <= last {
        days.insert(day, DayVolume { day, total: 0, by_channel: BTreeMap::new() });
        day = day.succ_opt().expect("a day after");
    }
    let mut busiest_hours = vec![vec![0i64; 24]; 7];
    let mut by_status: BTreeMap<Status, i64> = BTreeMap::new();
    for c in &started {
        let local = c.created_at.with_timezone(&zone);
        if let Some(volume) = days.get_mut(&local.date_naive()) {
            volume.total += 1;
            *volume.by_channel.entry(c.scope.channel).or_default() += 1;
        }
        busiest_hours[local.weekday().num_days_from_monday() as usize][local.hour() as usize] += 1;
        *by_status.entry(c.status).or_default() += 1;
    }
    let finished = |s: Status| matches!(s, Status::Resolved | Status::Confirmed | Status::Closed);
    let escalated = started.iter().filter(|c| c.escalated).count() as i64;
    let contained = started.iter().filter(|c| !c.escalated && finished(c.status)).count() as i64;

    let events: Vec<&ConversationEvent> = input.events.iter().filter(|(_, scope)| query.selects(scope)).map(|(e, _)| e).collect();
    let of_kind = |kind: EventKind| events.iter().copied().filter(move |e| e.kind == kind);
    let mut reasons: HashMap<String, i64> = HashMap::new();
    let mut categories: HashMap<String, i64> = HashMap::new();
    let mut priorities: BTreeMap<Option<Priority>, i64> = BTreeMap::new();
    for e in of_kind(EventKind::Escalated) {
        *reasons.entry(e.reason.clone().unwrap_or_else(|| "unknown".into())).or_default() += 1;
        *categories.entry(e.category.map_or("none", |c| c.as_str()).to_string()).or_default() += 1;
        *priorities.entry(e.priority).or_default() += 1;
    }
    let waits = |kind: EventKind, agent: Option<AgentId>| Durations::of(of_kind(kind).filter(|e| agent.is_none() || e.agent_id == agent));

    let ratings: Vec<&Rating> = input.ratings.iter().filter(|(_, scope)| query.selects(scope)).map(|(r, _)| r).collect();
    let mut distribution = [0i64; 5];
    for r in &ratings {
        if (1..=5).contains(&r.score) {
            distribution[usize::from(r.score) - 1] += 1;
        }
    }
    let average = |scores: &[&Rating]| (!scores.is_empty()).then(|| scores.iter().map(|r| f64::from(r.score)).sum::<f64>() / scores.len() as f64);

    let mut agents: Vec<AgentId> = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Assigned | EventKind::FirstReply | EventKind::Resolved))
        .filter_map(|e| e.agent_id)
        .chain(ratings.iter().filter_map(|r| r.agent_id))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    agents.sort();
    let agents = agents
        .into_iter()
        .map(|agent| {
            let theirs: Vec<&Rating> = ratings.iter().copied().filter(|r| r.agent_id == Some(agent)).collect();
            AgentReport {
                agent_id: agent,
                assigned: of_kind(EventKind::Assigned).filter(|e| e.agent_id == Some(agent)).count() as i64,
                first_reply: waits(EventKind::FirstReply, Some(agent)),
                resolved: of_kind(EventKind::Resolved).filter(|e| e.agent_id == Some(agent)).count() as i64,
                resolution: waits(EventKind::Resolved, Some(agent)),
                ratings: theirs.len() as i64,
                average_rating: average(&theirs),
            }
        })
        .collect();

    let mut intents: HashMap<String, i64> = HashMap::new();
    let mut answers_sent: HashMap<String, i64> = HashMap::new();
    let mut customer_messages = 0;
    for count in input.intents.iter().filter(|c| query.selects(&c.scope)) {
        customer_messages += count.count;
        let name = count.intent.clone().unwrap_or_else(|| "(not answered yet)".into());
        if count.answered > 0 {
            *answers_sent.entry(name.clone()).or_default() += count.answered;
        }
        *intents.entry(name).or_default() += count.count;
    }

    Report {
        days: days.into_values().collect(),
        conversations: started.len() as i64,
        by_status: by_status.into_iter().map(|(s, n)| Count { name: s.as_str().into(), count: n }).collect(),
        bot: BotReport {
            contained,
            escalation_rate: (!started.is_empty()).then(|| escalated as f64 / started.len() as f64),
            escalations: of_kind(EventKind::Escalated).count() as i64,
            by_reason: ranked(reasons),
            by_category: ranked(categories),
            by_priority: priorities.into_iter().map(|(p, n)| Count { name: p.map_or("none", |p| p.as_str()).into(), count: n }).collect(),
        },
        first_reply: waits(EventKind::FirstReply, None),
        resolution: waits(EventKind::Resolved, None),
        agents,
        satisfaction: Satisfaction { ratings: ratings.len() as i64, average: average(&ratings), distribution },
        intents: ranked(intents),
        answers_sent: ranked(answers_sent),
        customer_messages,
        messages_per_conversation: (!started.is_empty()).then(|| customer_messages as f64 / started.len() as f64),
        busiest_hours,
        needs_teaching: needs_teaching(query, &input.unsure),
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
    use switchboard_models::ConversationId;

    fn at(day: u32, hour: u32) -> Timestamp {
        chrono::NaiveDate::from_ymd_opt(2026, 3, day).unwrap().and_hms_opt(hour, 0, 0).unwrap().and_utc()
    }

    fn scope(channel: Channel, agent: Option<AgentId>) -> ReportScope {
        ReportScope { channel, category: Some(Category::Billing), agent_id: agent }
    }

    fn event(kind: EventKind, at: Timestamp, agent: Option<AgentId>, wait_minutes: Option<i64>) -> ConversationEvent {
        ConversationEvent {
            conversation_id: ConversationId::new(),
            kind,
            at,
            channel: Channel::WebChat,
            agent_id: agent,
            category: Some(Category::Billing),
            priority: Some(Priority::High),
            reason: (kind == EventKind::Escalated).then(|| "human_requested".into()),
            wait_ms: wait_minutes.map(|m| m * 60_000),
        }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let values: Vec<i64> = (1..=10).collect();
        assert_eq!(percentile(&values, 50), Some(5));
        assert_eq!(percentile(&values, 90), Some(9));
        assert_eq!(percentile(&[7], 90), Some(7));
        assert_eq!(percentile(&[], 50), None);
    }

    #[test]
    fn days_and_hours_are_the_viewers_and_filters_select_conversations() {
        let ann = AgentId::new();
        let facts = |created_at, channel, escalated, status| ConversationFacts {
            created_at,
            status,
            priority: None,
            escalated,
            scope: scope(channel, escalated.then_some(ann)),
        };
        let input = ReportInput {
            conversations: vec![
                // 23:30 UTC on the 1st is the 2nd in Berlin.
                facts(at(1, 23) + chrono::Duration::minutes(30), Channel::Telegram, false, Status::Closed),
                facts(at(2, 9), Channel::WebChat, true, Status::Resolved),
                facts(at(2, 10), Channel::WebChat, false, Status::Open),
            ],
            events: vec![
                (event(EventKind::Escalated, at(2, 9), None, None), scope(Channel::WebChat, Some(ann))),
                (ConversationEvent { reason: Some("sla_met".into()), ..event(EventKind::FirstReply, at(2, 9), Some(ann), Some(4)) }, scope(Channel::WebChat, Some(ann))),
                (ConversationEvent { reason: Some("sla_missed".into()), ..event(EventKind::FirstReply, at(2, 11), Some(ann), Some(10)) }, scope(Channel::WebChat, Some(ann))),
                (event(EventKind::Resolved, at(2, 12), Some(ann), Some(180)), scope(Channel::WebChat, Some(ann))),
            ],
            intents: vec![
                IntentCount { intent: Some("refund".into()), scope: scope(Channel::WebChat, Some(ann)), count: 3, answered: 0 },
                IntentCount { intent: Some("greeting".into()), scope: scope(Channel::Telegram, None), count: 1, answered: 1 },
                IntentCount { intent: Some("opening_hours".into()), scope: scope(Channel::WebChat, None), count: 2, answered: 2 },
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
                    scope: scope(if n == 2 { Channel::Telegram } else { Channel::WebChat }, None),
                })
                .collect(),
        };
        let query = ReportQuery { from: at(1, 0), to: at(3, 0), zone: chrono_tz::Europe::Berlin, channel: None, category: None, agent: None };
        let all = report(&query, &input);
        assert_eq!(all.days.len(), 3, "the 1st, 2nd and, from 23:00 UTC on the 2nd, the 3rd in Berlin");
        assert_eq!(all.days.iter().map(|d| d.total).collect::<Vec<_>>(), [0, 3, 0]);
        assert_eq!(all.conversations, 3);
        assert_eq!(all.bot.contained, 1, "only the closed conversation the bot kept");
        assert_eq!(all.bot.escalation_rate, Some(1.0 / 3.0));
        assert_eq!(all.first_reply, Durations { count: 2, median_ms: Some(4 * 60_000), p90_ms: Some(10 * 60_000), within_sla: Some(0.5) });
        assert_eq!(all.resolution.median_ms, Some(180 * 60_000));
        assert_eq!(all.busiest_hours[0][0], 1, "Monday 2 March 00:30 in Berlin");
        assert_eq!(all.intents[0], Count { name: "refund".into(), count: 3 });
        assert_eq!(
            all.answers_sent,
            [Count { name: "opening_hours".into(), count: 2 }, Count { name: "greeting".into(), count: 1 }],
            "only the answers sent, most first"
        );
        assert_eq!(all.messages_per_conversation, Some(6.0 / 3.0));
        assert_eq!(all.agents.len(), 1);
        assert_eq!((all.agents[0].resolved, all.agents[0].first_reply.count), (1, 2));
        assert_eq!(all.needs_teaching.iter().map(|g| (g.leaning.as_str(), g.count)).collect::<Vec<_>>(), [("refund", 2), ("out_of_scope", 1)]);

        let telegram = report(&ReportQuery { channel: Some(Channel::Telegram), ..query.clone() }, &input);
        assert_eq!((telegram.conversations, telegram.customer_messages, telegram.first_reply.count), (1, 1, 0));
        assert_eq!(telegram.needs_teaching.len(), 1, "only the Telegram message");
        let annes = report(&ReportQuery { agent: Some(ann), ..query.clone() }, &input);
        assert_eq!((annes.conversations, annes.bot.escalations), (1, 1));
    }
}
