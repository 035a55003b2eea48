//! The reports' SQL pieces: the filters of a report as conditions with numbered parameters,
//! and a column's instant moved onto a zone's wall clock.

use switchboard_core::ports::{ReportPeriod, ZoneOffsets};

/// Milliseconds in a UTC day, the unit `intent_days` counts in.
pub(crate) const DAY_MS: i64 = 86_400_000;

/// What a report's rows are, and so how each filter reaches them.
#[derive(Clone, Copy)]
pub(crate) enum ReportRows<'a> {
    /// Conversations (aliased `c`): their channel, category and last agent now.
    Conversations,
    /// Rows of a conversation aliased as given, with their own `channel`; the category and
    /// agent are the conversation's now.
    Of(&'a str),
    /// Conversation events (aliased `e`): the channel and category recorded with each event;
    /// the agent is the conversation's now.
    Events,
    /// The per-day counts (`intent_days`, aliased `d`): channel and category as counted. They
    /// cannot tell the agent: a filter by agent reads the messages.
    Counted,
}

/// `AND …` conditions selecting the rows of the period's filters, numbering parameters from
/// `$first`, and the values to bind to them in order. A column compared as `column || ''` is
/// still read from a covering index but never leads the query: the period does (SQLite would
/// otherwise take an index led by the channel or category over all of history).
pub(crate) fn filter_conditions(period: &ReportPeriod, rows: ReportRows<'_>, first: usize) -> (String, Vec<String>) {
    let mut values: Vec<String> = Vec::new();
    let mut param = |value: String| {
        values.push(value);
        format!("${}", first + values.len() - 1)
    };
    let alias = match rows {
        ReportRows::Conversations => "c",
        ReportRows::Of(alias) => alias,
        ReportRows::Events => "e",
        ReportRows::Counted => "d",
    };
    let mut sql = String::new();
    if let Some(channel) = period.channel {
        sql += &format!(" AND {alias}.channel || '' = {}", param(channel.as_str().into()));
    }
    let mut of_conversation = Vec::new();
    if let Some(category) = period.category {
        let value = param(category.as_str().into());
        match rows {
            ReportRows::Conversations | ReportRows::Events => sql += &format!(" AND {alias}.category || '' = {value}"),
            ReportRows::Counted => sql += &format!(" AND d.category = {value}"),
            ReportRows::Of(_) => of_conversation.push(format!("category = {value}")),
        }
    }
    if let Some(agent) = period.agent {
        let value = param(agent.to_string());
        match rows {
            ReportRows::Conversations => sql += &format!(" AND c.last_agent_id || '' = {value}"),
            ReportRows::Counted => {}
            ReportRows::Of(_) | ReportRows::Events => of_conversation.push(format!("last_agent_id = {value}")),
        }
    }
    if !of_conversation.is_empty() {
        // One agent's conversations are few: read their rows by conversation. A category's are
        // many: read the period's rows and keep theirs.
        let by_conversation = if period.agent.is_some() { "" } else { " || ''" };
        sql += &format!(" AND {alias}.conversation_id{by_conversation} IN (SELECT id FROM conversations WHERE {})", of_conversation.join(" AND "));
    }
    (sql, values)
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
        assert_eq!(sql, " AND c.channel || '' = $1 AND c.category || '' = $2 AND c.last_agent_id || '' = $3");
        let (sql, _) = filter_conditions(&all, ReportRows::Events, 3);
        assert_eq!(sql, " AND e.channel || '' = $3 AND e.category || '' = $4 AND e.conversation_id IN (SELECT id FROM conversations WHERE last_agent_id = $5)");
        let category = ReportPeriod { agent: None, channel: None, ..all };
        assert_eq!(filter_conditions(&category, ReportRows::Of("m"), 1).0, " AND m.conversation_id || '' IN (SELECT id FROM conversations WHERE category = $1)");
        let counted = ReportPeriod { agent: None, ..all };
        assert_eq!(filter_conditions(&counted, ReportRows::Counted, 3).0, " AND d.channel || '' = $3 AND d.category = $4");
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
