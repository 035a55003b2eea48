//! The reports' SQL pieces: the filters of a report as conditions with numbered parameters,
//! and a column's instant moved onto a zone's wall clock.

use switchboard_core::ports::{ReportPeriod, ZoneOffsets};

/// Milliseconds in a UTC day, the unit `intent_days` counts in.
pub(crate) const DAY_MS: i64 = 86_400_000;

/// What a report's rows are: conversations (aliased `c`), or rows of a conversation aliased
/// as given, with their own `channel` and a `conversation_id`.
#[derive(Clone, Copy)]
pub(crate) enum ReportRows<'a> {
    Conversations,
    Of(&'a str),
}

/// `AND …` conditions selecting the rows of the period's filters, numbering parameters from
/// `$first`, and the values to bind to them in order.
pub(crate) fn filter_conditions(period: &ReportPeriod, rows: ReportRows<'_>, first: usize) -> (String, Vec<String>) {
    let mut values: Vec<String> = Vec::new();
    let mut param = |value: String| {
        values.push(value);
        format!("${}", first + values.len() - 1)
    };
    let alias = match rows {
        ReportRows::Conversations => "c",
        ReportRows::Of(alias) => alias,
    };
    let mut sql = String::new();
    if let Some(channel) = period.channel {
        // `|| ''`: no index led by the channel drives the query (SQLite would take the unique
        // (channel, external_id) index over every message of the channel); the period does.
        sql += &format!(" AND {alias}.channel || '' = {}", param(channel.as_str().into()));
    }
    let mut of_conversation = Vec::new();
    if let Some(category) = period.category {
        of_conversation.push(format!("category = {}", param(category.as_str().into())));
    }
    if let Some(agent) = period.agent {
        of_conversation.push(format!("last_agent_id = {}", param(agent.to_string())));
    }
    if !of_conversation.is_empty() {
        sql += &match rows {
            ReportRows::Conversations => of_conversation.iter().map(|c| format!(" AND c.{c}")).collect::<String>(),
            ReportRows::Of(alias) => format!(" AND {alias}.conversation_id IN (SELECT id FROM conversations WHERE {})", of_conversation.join(" AND ")),
        };
    }
    (sql, values)
}

/// Whether the filters select by the conversation's category or agent now, which per-day
/// counts cannot tell.
pub(crate) fn selects_by_conversation(period: &ReportPeriod) -> bool {
    period.category.is_some() || period.agent.is_some()
}

/// The instant in `column` (milliseconds) on the zone's wall clock: plus the offset in force
/// at that instant. The offsets are numbers the server computed, spliced in as literals.
pub(crate) fn wall_clock(column: &str, offsets: &ZoneOffsets) -> String {
    match offsets.0.as_slice() {
        [] => column.to_string(),
        [(_, only)] => format!("({column} + {only})"),
        [(_, first), rest @ ..] => {
            let mut sql = format!("({column} + CASE");
            let mut current = *first;
            for (from, offset) in rest {
                sql += &format!(" WHEN {column} < {} THEN {current}", from.timestamp_millis());
                current = *offset;
            }
            sql + &format!(" ELSE {current} END)")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_models::{AgentId, Category, Channel};

    fn period() -> ReportPeriod {
        let at = chrono::DateTime::from_timestamp_millis(0).unwrap();
        ReportPeriod { from: at, to: at, channel: None, category: None, agent: None }
    }

    #[test]
    fn filters_number_their_parameters_and_reach_the_conversation() {
        assert_eq!(filter_conditions(&period(), ReportRows::Of("m"), 3), (String::new(), Vec::new()));
        let agent = AgentId::new();
        let all = ReportPeriod { channel: Some(Channel::Telegram), category: Some(Category::Billing), agent: Some(agent), ..period() };
        let (sql, values) = filter_conditions(&all, ReportRows::Of("m"), 3);
        assert_eq!(sql, " AND m.channel || '' = $3 AND m.conversation_id IN (SELECT id FROM conversations WHERE category = $4 AND last_agent_id = $5)");
        assert_eq!(values, vec!["telegram".to_string(), "billing".into(), agent.to_string()]);
        let (sql, _) = filter_conditions(&all, ReportRows::Conversations, 1);
        assert_eq!(sql, " AND c.channel || '' = $1 AND c.category = $2 AND c.last_agent_id = $3");
    }

    #[test]
    fn the_wall_clock_adds_the_offset_in_force() {
        let at = |ms| chrono::DateTime::from_timestamp_millis(ms).unwrap();
        assert_eq!(wall_clock("c.created_at", &ZoneOffsets(vec![(at(0), 3_600_000)])), "(c.created_at + 3600000)");
        assert_eq!(
            wall_clock("x", &ZoneOffsets(vec![(at(0), 1), (at(10), 2), (at(20), 3)])),
            "(x + CASE WHEN x < 10 THEN 1 WHEN x < 20 THEN 2 ELSE 3 END)"
        );
    }
}
