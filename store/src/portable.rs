//! The SQL both backends share. The schema is the same in SQLite and PostgreSQL (text ids,
//! integer milliseconds, boolean flags), so one text serves both; the macro compiles it once per
//! backend against that backend's concrete sqlx types. What differs (committing, claiming the
//! outbox, text search) is passed in by the backend module.

pub(crate) const MESSAGE_COLUMNS: &str = "seq, id, conversation_id, contact_id, channel, sender, agent_id, body, \
     internal, attachments, quick_replies, classification, external_id, created_at, \
     outbound, attempts, next_attempt_at, delivered_at, gave_up_at, last_error, sent_id, seen_at";
pub(crate) const DOCUMENT_COLUMNS: &str = "d.id, d.conversation_id, d.contact_id, d.channel, d.message_seq, d.file_key, d.file_name, \
     d.content_type, d.size, d.kind, d.state, d.reviewer_id, d.decided_at, d.note, d.created_at, d.purged_at";
pub(crate) const CONTACT_COLUMNS: &str = "id, channel, external_id, display_name, created_at, unreachable_since, unreachable_reason, email";
pub(crate) const AGENT_COLUMNS: &str = "id, email, name, role, presence, capacity, active, created_at, skills";
/// The contact that stands for the person contact `$1` belongs to (itself, unless joined).
pub(crate) const PERSON_OF_1: &str = "SELECT COALESCE(person_id, id) FROM contacts WHERE id = $1";
/// `ports::due_key` in SQL, the expression `conversations_by_due` indexes.
pub(crate) const DUE_KEY: &str = "COALESCE(c.first_reply_due_at, c.resolution_due_at, 9000000000000000)";
pub(crate) const CONVERSATION_COLUMNS: &str = "id, contact_id, channel, handler, agent_id, status, category, priority, \
     escalation_reason, escalation_summary, escalated_at, low_confidence_streak, created_at, updated_at, version, waiting_notice_at, \
     first_reply_due_at, resolution_due_at, sla_notices, awaiting, language";

/// A conversation with its customer's name, agent's name and latest visible message.
pub(crate) const SUMMARY_SELECT: &str = "SELECT c.*, k.display_name AS customer_name, k.external_id AS customer_external_id, a.name AS agent_name, \
     k.unreachable_since AS customer_unreachable_since, \
     (SELECT COUNT(*) FROM messages f WHERE f.conversation_id = c.id AND f.gave_up_at IS NOT NULL) AS undelivered, \
     (SELECT m.body FROM messages m WHERE m.conversation_id = c.id AND m.internal = FALSE ORDER BY m.seq DESC LIMIT 1) AS last_text, \
     COALESCE((SELECT m.created_at FROM messages m WHERE m.conversation_id = c.id ORDER BY m.seq DESC LIMIT 1), c.updated_at) AS last_activity \
     FROM conversations c JOIN contacts k ON k.id = c.contact_id LEFT JOIN agents a ON a.id = c.agent_id";

/// `ports::next_in_line_key` in SQL, over the conversation aliased `c`. Migration 0008 indexes
/// the same expression for the queue; change both together, in a new migration.
pub(crate) const NEXT_IN_LINE_KEY: &str = "((CASE c.priority WHEN 'urgent' THEN 0 WHEN 'high' THEN 1 \
     WHEN 'medium' THEN 2 WHEN 'low' THEN 3 ELSE 4 END) * 10000000000000 + COALESCE(c.escalated_at, c.created_at))";

/// SQL with the column lists spliced in once, at first use.
macro_rules! sql {
    ($($part:expr),+ $(,)?) => {{
        static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        sqlx::AssertSqlSafe(TEXT.get_or_init(|| [$($part),+].concat()).as_str())
    }};
}
pub(crate) use sql;

/// A LIKE pattern (with `ESCAPE '\'`) matching text that contains `text` literally.
pub(crate) fn contains_pattern(text: &str) -> String {
    format!("%{}%", text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"))
}

/// Emits the shared step-writing helpers (`portable::write_step` and what it calls) and the
/// impls of the focused store ports for `$store`, with its backend-specific methods spliced in.
macro_rules! portable_store {
    (store: $store:ty, conn: $conn:ty, db: $db:ty, contact_search: $contact_search:path, text_search: $text_search:path, claim_timers: $claim_timers:expr, outbox_due: $outbox_due:expr, gather_search_first: $gather_first:expr, chained_writes: $chained_writes:expr, conversations: { $($conversations:tt)* }, outbox: { $($outbox:tt)* }, coordination: { $($coordination:tt)* }) => {
        pub(crate) mod portable {
            #![allow(unused_imports)]
            use super::*;
            use crate::portable::{AGENT_COLUMNS, CONTACT_COLUMNS, DOCUMENT_COLUMNS, CONVERSATION_COLUMNS, DUE_KEY, MESSAGE_COLUMNS, NEXT_IN_LINE_KEY, PERSON_OF_1, SUMMARY_SELECT, sql};
            use crate::rows::{
                Columns, agent_from_row, audit_from_row, backend, contact_from_prefixed_row, contact_from_row,
                conversation_from_row, claimed_in_order, due_first, message_from_row, millis, notification_from_row, scheduled_job_from_row, summary_from_row,
                timer_from_row, to_json,
            };
            use async_trait::async_trait;
            use sqlx::Row;
            use switchboard_core::QueueView;
            use switchboard_core::ports::{
                AgentLoad, Assignee, Committed, ConversationFilter, ConversationSummary, CustomerFilter, CustomerSummary, DashboardCounts, ListOrder, ListTotal, SEARCH_HITS, SessionRecord,
                AdminWrite, CannedChange, Conversations, NoticeMail, NoticeWrite, PurgeRules, Purged, ScheduledJob, StepWrite, StoreError,
            };
            use switchboard_core::Recipient;
            use switchboard_core::timers::{Timer, TimerKind};
            use switchboard_models::{
                Agent, AgentId, ApiToken, AuditEntry, CannedResponse, Channel, Contact, ContactId, Conversation,
                ConversationId, Handler, Message, MessageId, Notification, OutboundMessage, Presence, Timestamp,
            };

/// A list's filters as SQL. Structure is built here; every value is bound.
struct ListSql {
    /// A `WITH` clause (what a search found), or empty.
    with: String,
    /// The conversations to read, aliased `c`: the table, or what a search gathered.
    source: &'static str,
    /// Conditions on `c`.
    conditions: Vec<String>,
    /// The values they bind, in order.
    binds: Vec<String>,
    /// Whether a `hit` table holds the matching messages.
    message_hits: bool,
}

fn list_conditions(filter: &ConversationFilter) -> ListSql {
    let mut conditions: Vec<String> = Vec::new();
    let mut binds: Vec<String> = Vec::new();
    let mut with = String::new();
    let mut source = "conversations c";
    let mut message_hits = false;
    let bind = |condition: &str, value: String, binds: &mut Vec<String>| {
        binds.push(value);
        condition.replace('?', &format!("${}", binds.len()))
    };
    if let Some(status) = filter.status {
        conditions.push(bind("c.status = ?", status.as_str().into(), &mut binds));
    }
    if let Some(priority) = filter.priority {
        conditions.push(bind("c.priority = ?", priority.as_str().into(), &mut binds));
    }
    if let Some(category) = filter.category {
        conditions.push(bind("c.category = ?", category.as_str().into(), &mut binds));
    }
    if let Some(channel) = filter.channel {
        conditions.push(bind("c.channel = ?", channel.as_str().into(), &mut binds));
    }
    match filter.assignee {
        Some(Assignee::Queue) => conditions.push("c.handler = 'queue'".into()),
        Some(Assignee::Agent(agent)) => conditions.push(bind("c.agent_id = ?", agent.to_string(), &mut binds)),
        None => {}
    }
    if let Some(agent) = filter.visible_to {
        conditions.push(bind("(c.handler = 'queue' OR c.agent_id = ?)", agent.to_string(), &mut binds));
    }
    if filter.undelivered {
        conditions.push("EXISTS (SELECT 1 FROM messages f WHERE f.conversation_id = c.id AND f.gave_up_at IS NOT NULL)".into());
    }
    if let Some(text) = filter.text.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        let (contacts, value) = $contact_search(text);
        binds.push(value);
        let contacts = contacts.replace('?', &format!("${}", binds.len()));
        // Names and channel ids through the contacts' own index (one row per customer); message
        // text through the full-text index: its newest SEARCH_HITS matches, so a word in every
        // message costs no more than a rare one.
        let words = switchboard_core::search::search_words(text);
        let hits = (!words.is_empty()).then(|| {
            let (hits, query) = $text_search(&words, SEARCH_HITS);
            binds.push(query);
            message_hits = true;
            hits.replace('?', &format!("${}", binds.len()))
        });
        let by_customer = format!("SELECT f.* FROM conversations f WHERE f.contact_id IN ({contacts})");
        if $gather_first {
            // The conversations found are gathered first, whole, so each index is planned on its
            // own (PostgreSQL otherwise scanned every contact for a hashed subplan) and the page
            // and its total read them without looking each one up again.
            with = match hits {
                Some(hits) => format!(
                    "WITH hit AS MATERIALIZED ({hits}), \
                     found AS MATERIALIZED ({by_customer} UNION \
                     SELECT f.* FROM conversations f WHERE f.id IN (SELECT h.conversation_id FROM hit h))"
                ),
                None => format!("WITH found AS MATERIALIZED ({by_customer})"),
            };
            source = "found c";
        } else {
            // One pass over the indexes the OR names (SQLite's multi-index OR).
            let in_messages = match hits {
                Some(hits) => {
                    with = format!("WITH hit AS MATERIALIZED ({hits})");
                    " OR c.id IN (SELECT h.conversation_id FROM hit h)"
                }
                None => "",
            };
            conditions.push(format!("(c.contact_id IN ({contacts}){in_messages})"));
        }
    }
    ListSql { with, source, conditions, binds, message_hits }
}

/// Whether a search read only the newest SEARCH_HITS matching messages, as SQL.
fn search_capped(message_hits: bool) -> String {
    if message_hits { format!("(SELECT COUNT(*) FROM hit) >= {SEARCH_HITS}") } else { "FALSE".into() }
}

/// `WHERE …` for some conditions, or nothing.
fn where_all(conditions: &[String]) -> String {
    if conditions.is_empty() { String::new() } else { format!("WHERE {}", conditions.join(" AND ")) }
}

/// One page of a list as SQL, and its binds: the page's ids are picked first (a MATERIALIZED
/// `page`), then summarised, so a summary's subqueries (last message, undelivered) run for the
/// page's rows only. With `total`, every row also carries the filters' total, and a row with
/// no conversation carries it for an empty page; the search is read once for both.
fn page_sql(filter: &ConversationFilter, total: bool) -> (String, Vec<String>) {
    let ListSql { with, source, conditions, mut binds, message_hits } = list_conditions(filter);
    let (sort_key, direction, comparison) = match filter.order {
        ListOrder::Recent => ("c.updated_at", "DESC", "<"),
        ListOrder::LongestWaiting => ("COALESCE(c.escalated_at, c.created_at)", "ASC", ">"),
        ListOrder::NextInLine => (NEXT_IN_LINE_KEY, "ASC", ">"),
        ListOrder::DueFirst => (DUE_KEY, "ASC", ">"),
    };
    let mut paged = conditions.clone();
    if let Some(cursor) = filter.after {
        binds.push(cursor.key.to_string());
        let key_at = binds.len();
        binds.push(cursor.id.to_string());
        let id_at = binds.len();
        let key = format!("CAST(${key_at} AS BIGINT)");
        // The bare range first, so the sort index is entered at the cursor instead of being
        // walked from its start (deep pages cost what the first one does).
        let inclusive = format!("{comparison}=");
        paged.push(format!("{sort_key} {inclusive} {key} AND ({sort_key} {comparison} {key} OR c.id {comparison} ${id_at})"));
    }
    // A search names the newest matching message of each row.
    let matched = if message_hits {
        "(SELECT b.body FROM messages b WHERE b.seq = (SELECT MAX(h.seq) FROM hit h WHERE h.conversation_id = c.id))"
    } else {
        "NULL"
    };
    let select = SUMMARY_SELECT.replacen("SELECT ", &format!("SELECT {matched} AS matched_text, {sort_key} AS sort_key, "), 1);
    let order = format!("ORDER BY {sort_key} {direction}, c.id {direction}");
    let mut ctes = vec![format!(
        "page AS MATERIALIZED (SELECT c.id FROM {source} {} {order} LIMIT {})",
        where_all(&paged),
        filter.limit.clamp(1, 1000)
    )];
    if total {
        let capped = search_capped(message_hits);
        ctes.push(format!(
            "total AS MATERIALIZED (SELECT COUNT(*) AS total_count, {capped} AS total_capped FROM {source} {})",
            where_all(&conditions)
        ));
    }
    let with = if with.is_empty() { format!("WITH {}", ctes.join(", ")) } else { format!("{with}, {}", ctes.join(", ")) };
    let rows = format!("{select} WHERE c.id IN (SELECT p.id FROM page p)");
    let sql = if total {
        format!("{with} SELECT t.total_count, t.total_capped, s.* FROM total t LEFT JOIN ({rows}) s ON TRUE ORDER BY s.sort_key {direction}, s.id {direction}")
    } else {
        format!("{with} {rows} {order}")
    };
    (sql, binds)
}

/// The customers list's filters as conditions on `n` (contacts) and the values they bind.
fn customer_conditions(filter: &CustomerFilter) -> (Vec<String>, Vec<String>) {
    let mut conditions = Vec::new();
    let mut binds = Vec::new();
    if let Some(channel) = filter.channel {
        binds.push(channel.as_str().to_string());
        conditions.push(format!("n.channel = ${}", binds.len()));
    }
    if let Some(text) = filter.text.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        let (contacts, value) = $contact_search(text);
        binds.push(value);
        conditions.push(format!("n.id IN ({})", contacts.replace('?', &format!("${}", binds.len()))));
    }
    (conditions, binds)
}

/// The messages go in one statement, inbound first; if the inbound one is a duplicate, the
/// replies it carried are taken out again and nothing else of the step is written.
/// Writes one step. A refused step (`Duplicate`, `Conflict`) writes nothing it guards: each check
/// comes before what it guards (a group commit shares one transaction) or undoes what it
/// inserted. (A contact's name, written before its message turns out a duplicate, stays.)
/// `webhooks_active`: whether any webhook is active, when the caller knows it for the whole
/// group (otherwise the message INSERT tells, or the events are queued for whoever listens).
pub(crate) async fn write_step(tx: &mut $conn, write: &StepWrite, webhooks_active: Option<bool>) -> Result<Committed, StoreError> {
    // On PostgreSQL an answer's claim rides in the statement that marks the message answered
    // (below): one round trip less. Only when nothing of the step is written before that
    // statement, so a refused claim still leaves the step unwritten.
    let claim_with_answer =
        $chained_writes && write.answers.is_some() && write.contact.is_none() && !write.starts_current && write.fires.is_none();
    // A step refused after it took a timer or answered a message would keep that half (no step
    // has a savepoint), so no step does both that and what is checked later.
    debug_assert!(
        !((write.fires.is_some() || write.answers.is_some()) && (write.decides.is_some() || write.inbound.is_some())),
        "a step that fires a timer or answers a message cannot also decide a document or store a customer message"
    );
    debug_assert!(
        write.unchanged_since.is_none()
            || (write.answers.is_some() && write.decided_on.is_none() && write.contact.is_none() && !write.starts_current && write.fires.is_none()),
        "a check of the conversation's version rides in the answer's mark, which must be the step's first write"
    );
    // First, so a refused step has changed nothing (a group commit shares one transaction).
    if let Some((conversation, version)) = write.decided_on.filter(|_| !claim_with_answer) {
        // Claims the row (a row lock on PostgreSQL until commit) if nobody wrote it since it was read.
        let claimed = sqlx::query("UPDATE conversations SET version = $2 + 1 WHERE id = $1 AND version = $2")
            .bind(conversation.to_string())
            .bind(version)
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected();
        if claimed == 0 {
            return Ok(Committed::Conflict);
        }
    }
    if let Some(contact) = &write.contact
        && upsert_contact(tx, contact).await? != contact.id.to_string()
    {
        // Another node stored this customer first, under another id.
        return Ok(Committed::Conflict);
    }
    if write.starts_current
        && let Some(conversation) = &write.conversation
        && another_open_conversation(tx, conversation).await?
    {
        return Ok(Committed::Conflict);
    }
    if let Some(timer) = &write.fires {
        let deleted = sqlx::query("DELETE FROM timers WHERE conversation_id = $1 AND kind = $2 AND due_at = $3")
            .bind(timer.conversation.to_string())
            .bind(timer.kind.as_str())
            .bind(millis(timer.due_at))
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected();
        if deleted == 0 {
            return Ok(Committed::Duplicate);
        }
    }
    if let Some((seq, classification)) = &write.answers {
        // The classification marks the message answered; only the first answer counts.
        let mark = |sql| {
            sqlx::query(sql)
                .bind(*seq)
                .bind(to_json(classification))
                .bind(classification.intent.as_str())
                .bind((!write.intent_unused).then(|| f64::from(classification.confidence)))
                .bind(write.answered_from_intent)
        };
        // $6 and $7: the conversation and version a claim or a check names.
        let mark_checked = |sql| match write.unchanged_since {
            Some((conversation, version)) => mark(sql).bind(conversation.to_string()).bind(version),
            None => mark(sql),
        };
        let checked = write.unchanged_since.is_some();
        let marked: Option<(i64, String, String)> = if let Some((conversation, version)) = write.decided_on.filter(|_| claim_with_answer) {
            // Claimed, taken and marked in one statement; the take waits for the claim.
            let sql = format!(
                "WITH c AS ({CLAIM}), w AS ({}), answered AS ({MARK_ANSWERED_TAKEN}) SELECT EXISTS (SELECT 1 FROM c) AS claimed, \
                 answered.created_at, answered.channel, answered.conversation_id FROM (SELECT 1) one LEFT JOIN answered ON TRUE",
                take_waiting(write.in_order, true, false)
            );
            let row = mark(sqlx::AssertSqlSafe(sql)).bind(conversation.to_string()).bind(version).fetch_one(&mut *tx).await.map_err(backend)?;
            if !row.flag("claimed")? {
                return Ok(Committed::Conflict);
            }
            match row.int_opt("created_at")? {
                Some(created_at) => Some((created_at, row.text("channel")?, row.text("conversation_id")?)),
                None => None,
            }
        } else if $chained_writes {
            // One statement: no second round trip to the server.
            let sql = format!("WITH w AS ({}) {MARK_ANSWERED_TAKEN}", take_waiting(write.in_order, false, checked));
            match mark_checked(sqlx::AssertSqlSafe(sql)).fetch_optional(&mut *tx).await.map_err(backend)? {
                Some(row) => Some((row.int("created_at")?, row.text("channel")?, row.text("conversation_id")?)),
                None => None,
            }
        } else {
            // Marked only while it waits; a trigger (migration 0035) then takes its waiting row.
            match mark_checked(sqlx::AssertSqlSafe(mark_answered_if_waiting(write.in_order, checked))).fetch_optional(&mut *tx).await.map_err(backend)? {
                Some(row) => Some((row.int("created_at")?, row.text("channel")?, row.text("conversation_id")?)),
                None => None,
            }
        };
        let Some((created_at, channel, conversation)) = marked else {
            if let Some((conversation, version)) = write.unchanged_since
                && moved_on(tx, conversation, version).await?
            {
                return Ok(Committed::Conflict);
            }
            if write.in_order && unanswered(tx, *seq).await? {
                return Ok(Committed::Conflict);
            }
            return Ok(Committed::Duplicate);
        };
        count_late_answer(tx, created_at, &channel, &conversation, classification.intent.as_str(), write.answered_from_intent).await?;
        if write.keep_embedding {
            keep_embedding(tx, *seq, classification).await?;
        }
    }
    if let Some(decision) = &write.decides {
        // Only a pending document is decided: the first of two reviewers wins.
        let decided = sqlx::query(
            "UPDATE documents SET state = $2, kind = $3, reviewer_id = $4, note = $5, decided_at = $6 \
             WHERE id = $1 AND state = 'pending'",
        )
        .bind(decision.document.to_string())
        .bind(decision.state.as_str())
        .bind(&decision.kind)
        .bind(decision.reviewer.to_string())
        .bind(decision.note.as_deref())
        .bind(millis(decision.at))
        .execute(&mut *tx)
        .await
        .map_err(backend)?
        .rows_affected();
        if decided == 0 {
            return Ok(Committed::Conflict);
        }
    }
    let rows: Vec<(&Message, Option<Timestamp>)> = write
        .inbound
        .iter()
        .map(|m| (m, None))
        .chain(write.outbound.iter().map(|m| (m, Some(m.created_at))))
        .chain(write.notes.iter().map(|m| (m, None)))
        .collect();
    let (inserted, webhooks_listen) = insert_messages(tx, &rows, write).await?;
    // With messages, the conversation was saved by their statement (`insert_messages`).
    let conversation_saved = !rows.is_empty();
    let webhooks_listen = webhooks_active.unwrap_or(webhooks_listen);
    if let Some(inbound) = &write.inbound
        && !inserted.iter().any(|(_, id)| *id == inbound.id.to_string())
    {
        // A duplicate: undo what was inserted with it.
        let ids: Vec<String> = inserted.into_iter().map(|(_, id)| id).collect();
        delete_messages(tx, &ids).await?;
        return Ok(Committed::Duplicate);
    }
    if inserted.len() != rows.len() {
        return Err(StoreError::Corrupt("an outbound message collided with a stored one".into()));
    }
    if let Some(inbound) = &write.inbound
        && inbound.sender == switchboard_models::Sender::Customer
        && let Some(classification) = &inbound.classification
    {
        // Classified before it was stored: answered by this step (`StepWrite`'s answer columns).
        count_late_answer(tx, millis(inbound.created_at), inbound.channel.as_str(), &inbound.conversation_id.to_string(), classification.intent.as_str(), write.answered_from_intent).await?;
        if write.keep_embedding
            && let Some(seq) = inserted.iter().find(|(_, id)| *id == inbound.id.to_string()).map(|(seq, _)| *seq)
        {
            keep_embedding(tx, seq, classification).await?;
        }
    }
    if let Some(conversation) = write.conversation.as_ref().filter(|_| !conversation_saved) {
        save_conversation(tx, conversation).await?;
    }
    if let Some(entry) = &write.audit {
        insert_audit(&mut *tx, entry).await?;
    }
    if let Some((conversation, timers)) = &write.timers {
        set_timers(tx, *conversation, timers).await?;
    }
    for notice in &write.notices {
        insert_notice(tx, notice).await?;
    }
    for mail in &write.customer_mails {
        sqlx::query("INSERT INTO customer_mails (conversation_id, address, text, created_at) VALUES ($1, $2, $3, $4)")
            .bind(mail.conversation.to_string())
            .bind(&mail.address)
            .bind(&mail.text)
            .bind(millis(mail.at))
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
    }
    if let Some((contact, email)) = &write.contact_email {
        sqlx::query("UPDATE contacts SET email = $2 WHERE id = $1")
            .bind(contact.to_string())
            .bind(email)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
    }
    if let Some(feedback) = &write.feedback {
        write_feedback(tx, feedback).await?;
    }
    for document in &write.documents {
        sqlx::query(
            "INSERT INTO documents (id, conversation_id, contact_id, channel, message_seq, file_key, file_name, content_type, \
             size, kind, state, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(document.id.to_string())
        .bind(document.conversation_id.to_string())
        .bind(document.contact_id.to_string())
        .bind(document.channel.as_str())
        .bind(document.message_seq)
        .bind(&document.file.key)
        .bind(&document.file.file_name)
        .bind(&document.file.content_type)
        .bind(i64::try_from(document.file.size).unwrap_or(i64::MAX))
        .bind(&document.kind)
        .bind(document.state.as_str())
        .bind(millis(document.created_at))
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
    }
    if let Some(escalation) = &write.escalation {
        sqlx::query("INSERT INTO escalations (conversation_id, at, reason, confidence, priority, category) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(escalation.conversation_id.to_string())
            .bind(millis(escalation.at))
            .bind(to_json(&escalation.reason))
            .bind(escalation.confidence.map(f64::from))
            .bind(escalation.priority.map(|p| p.as_str()))
            .bind(escalation.category.map(|c| c.as_str()))
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
    }
    for event in &write.events {
        insert_event(tx, event).await?;
    }
    if write.wants_summary
        && let Some(escalation) = &write.escalation
    {
        sqlx::query(
            "INSERT INTO summaries_wanted (conversation_id, wanted_at, due_at) VALUES ($1, $2, $2) \
             ON CONFLICT (conversation_id) DO UPDATE SET wanted_at = excluded.wanted_at, due_at = excluded.due_at, attempts = 0",
        )
        .bind(escalation.conversation_id.to_string())
        .bind(chrono::Utc::now().timestamp_millis())
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
    }
    // Seqs in the order given: inbound, then replies, then notes.
    let seq_of = |m: &Message| inserted.iter().find(|(_, id)| *id == m.id.to_string()).map(|(seq, _)| *seq);
    if webhooks_listen {
        queue_webhook_events(tx, &switchboard_core::webhooks::events_of(write, seq_of), None).await?;
    }
    let seqs = rows.iter().filter_map(|(m, _)| seq_of(m)).collect();
    Ok(Committed::Stored { seqs })
}

/// Queues each event for every active webhook that wants its kind (or only for `webhook`), in
/// the caller's transaction: one statement whatever the number of webhooks.
async fn queue_webhook_events(tx: &mut $conn, events: &[switchboard_core::webhooks::QueuedEvent], webhook: Option<&str>) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let values = (0..events.len()).map(|i| format!("(${}, ${}, ${})", 3 + i * 3, 4 + i * 3, 5 + i * 3)).collect::<Vec<_>>().join(", ");
    let sql = format!(
        "INSERT INTO webhook_deliveries (webhook_id, event, event_id, payload, created_at, next_attempt_at) \
         SELECT w.id, e.column1, e.column2, e.column3, $1, $1 FROM webhooks w JOIN (VALUES {values}) e \
         ON (w.events LIKE '%,' || e.column1 || ',%' OR e.column1 = 'ping') WHERE w.active = TRUE AND ($2 IS NULL OR w.id = $2)"
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(chrono::Utc::now().timestamp_millis()).bind(webhook);
    for event in events {
        query = query.bind(event.kind.as_str()).bind(&event.event_id).bind(&event.payload);
    }
    query.execute(&mut *tx).await.map_err(backend)?;
    Ok(())
}

/// Writes one event of a conversation's history; a second first reply is ignored.
async fn insert_event(tx: &mut $conn, event: &switchboard_models::ConversationEvent) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO conversation_events (conversation_id, kind, at, channel, agent_id, category, priority, reason, wait_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
    )
    .bind(event.conversation_id.to_string())
    .bind(event.kind.as_str())
    .bind(millis(event.at))
    .bind(event.channel.as_str())
    .bind(event.agent_id.map(|a| a.to_string()))
    .bind(event.category.map(|c| c.as_str()))
    .bind(event.priority.map(|p| p.as_str()))
    .bind(event.reason.as_deref())
    .bind(event.wait_ms)
    .execute(&mut *tx)
    .await
    .map_err(backend)?;
    Ok(())
}

/// Keeps a customer message's sentence embedding for the reports (`StepWrite::keep_embedding`).
async fn keep_embedding(tx: &mut $conn, seq: i64, classification: &switchboard_models::Classification) -> Result<(), StoreError> {
    if let Some(embedding) = &classification.embedding {
        sqlx::query("INSERT INTO message_embeddings (message_seq, vector) VALUES ($1, $2)")
            .bind(seq)
            .bind(embedding.to_bytes())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
    }
    Ok(())
}

const MESSAGE_INSERT_COLUMNS: usize = 19;

/// Inserts messages, skipping any whose (channel, external id) is taken; returns `(seq, id)` of
/// those inserted, and whether any webhook may want the step's events (`false` only when the
/// same statement found none active: the step then skips queueing them, a round trip saved).
/// A `Some` delivery instant queues the message for the outbox from then (leased until
/// `write.outbound_leased_until` when the engine hands it to its outbox itself). A customer message
/// stored classified takes `write`'s answer columns (`intent_unused`, `answered_from_intent`).
/// `write`'s conversation, if any, is saved by the same round trip, only when the first row
/// was inserted (a duplicate customer message changes nothing).
async fn insert_messages(
    tx: &mut $conn,
    rows: &[(&Message, Option<Timestamp>)],
    write: &StepWrite,
) -> Result<(Vec<(i64, String)>, bool), StoreError> {
    if rows.is_empty() {
        return Ok((Vec::new(), true));
    }
    let values = (0..rows.len())
        .map(|r| {
            let params: Vec<String> =
                (1..=MESSAGE_INSERT_COLUMNS).map(|c| format!("${}", r * MESSAGE_INSERT_COLUMNS + c)).collect();
            format!("({})", params.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ");
    let insert = format!(
        "INSERT INTO messages (id, conversation_id, contact_id, channel, sender, agent_id, body, internal, \
         attachments, quick_replies, classification, intent, confidence, external_id, created_at, outbound, next_attempt_at, \
         lease_until, answered_from_intent) VALUES {values} ON CONFLICT (channel, external_id) DO NOTHING RETURNING seq, id"
    );
    // A customer message stored without its answer waits for one (`waiting_messages`): on
    // PostgreSQL written by this statement, on SQLite by a trigger (migration 0035).
    let after_rows = rows.len() * MESSAGE_INSERT_COLUMNS;
    let sql = if $chained_writes {
        let conversation = match write.conversation {
            Some(_) => format!("c AS ({}), ", conversation_upsert(after_rows, Some("m"))),
            None => String::new(),
        };
        format!(
            "WITH m AS ({insert}, contact_id, channel, created_at, sender, classification), {conversation}\
             w AS (INSERT INTO waiting_messages (message_seq, contact_id, channel, created_at) \
             SELECT seq, contact_id, channel, created_at FROM m WHERE sender = 'customer' AND classification IS NULL) \
             SELECT seq, id, EXISTS (SELECT 1 FROM webhooks WHERE active = TRUE) AS webhooks_listen FROM m"
        )
    } else {
        match write.conversation {
            // Two statements in one call: one trip to the connection's thread.
            Some(_) => format!("{insert}; {}", conversation_upsert(after_rows, Some("messages"))),
            None => insert,
        }
    };
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for (m, deliver_from) in rows {
        let answered_here = m.sender == switchboard_models::Sender::Customer && m.classification.is_some();
        query = query
            .bind(m.id.to_string())
            .bind(m.conversation_id.to_string())
            .bind(m.contact_id.to_string())
            .bind(m.channel.as_str())
            .bind(m.sender.as_str())
            .bind(m.agent_id.map(|a| a.to_string()))
            .bind(m.text.clone())
            .bind(m.internal)
            .bind(to_json(&m.attachments))
            .bind(to_json(&m.quick_replies))
            .bind(m.classification.as_ref().map(to_json))
            .bind(m.classification.as_ref().map(|c| c.intent.as_str().to_string()))
            .bind(m.classification.as_ref().filter(|_| !(answered_here && write.intent_unused)).map(|c| f64::from(c.confidence)))
            .bind(m.external_id.clone())
            .bind(millis(m.created_at))
            .bind(deliver_from.is_some())
            .bind(deliver_from.map(millis))
            .bind(deliver_from.and(write.outbound_leased_until).map(millis))
            .bind(answered_here && write.answered_from_intent);
    }
    if let Some(conversation) = &write.conversation {
        query = bind_conversation(query, conversation);
    }
    let returned = query.fetch_all(&mut *tx).await.map_err(backend)?;
    let inserted = returned.iter().map(|row| Ok((row.int("seq")?, row.text("id")?))).collect::<Result<Vec<_>, StoreError>>()?;
    if $chained_writes {
        let webhooks_listen = match returned.first() {
            Some(row) => row.flag("webhooks_listen")?,
            None => true,
        };
        return Ok((inserted, webhooks_listen));
    }
    Ok((inserted, true))
}

/// Takes customer message `$1` off the waiting list (the first answer wins); `in_order`: only
/// when no earlier message of the same contact still waits; `claimed`: only when the claim
/// named `c` of the same statement held; `checked`: only while conversation $6 is at version $7.
fn take_waiting(in_order: bool, claimed: bool, checked: bool) -> String {
    let earlier_waits = " AND NOT EXISTS (SELECT 1 FROM waiting_messages e WHERE e.contact_id = waiting_messages.contact_id AND e.message_seq < $1)";
    format!(
        "DELETE FROM waiting_messages WHERE message_seq = $1{}{}{} RETURNING message_seq, created_at, channel",
        if in_order { earlier_waits } else { "" },
        if claimed { " AND EXISTS (SELECT 1 FROM c)" } else { "" },
        if checked { UNCHANGED_SINCE } else { "" }
    )
}
/// SQLite: marks customer message $1 answered while it waits for its answer (the first answer
/// wins); the trigger of migration 0035 takes its waiting row in the same statement.
/// `in_order`: unless an earlier message of the same contact still waits; `checked`: only while
/// conversation $6 is at version $7.
fn mark_answered_if_waiting(in_order: bool, checked: bool) -> String {
    format!(
        "UPDATE messages SET classification = $2, intent = $3, confidence = $4, answered_from_intent = $5 \
         WHERE seq = $1 AND EXISTS (SELECT 1 FROM waiting_messages w WHERE w.message_seq = $1{}){} \
         RETURNING created_at, channel, conversation_id",
        if in_order { " AND NOT EXISTS (SELECT 1 FROM waiting_messages e WHERE e.contact_id = w.contact_id AND e.message_seq < $1)" } else { "" },
        if checked { UNCHANGED_SINCE } else { "" }
    )
}
/// The condition of `StepWrite::unchanged_since`: conversation $6 is still at version $7.
const UNCHANGED_SINCE: &str = " AND EXISTS (SELECT 1 FROM conversations v WHERE v.id = $6 AND v.version = $7)";
/// Claims conversation $6 read at version $7 (after the answer's five binds).
const CLAIM: &str = "UPDATE conversations SET version = $7 + 1 WHERE id = $6 AND version = $7 RETURNING id";
/// The answered message's classification after `take_waiting`'s statement named `w`, in one statement;
/// no index of `messages` holds these columns, so on PostgreSQL the update stays on the row's page.
const MARK_ANSWERED_TAKEN: &str = "UPDATE messages m SET classification = $2, intent = $3, confidence = $4, answered_from_intent = $5 \
     FROM w WHERE m.seq = w.message_seq RETURNING w.created_at, w.channel, m.conversation_id";

/// Adds a customer message answered now to the reports' per-day counts when its day was counted
/// already (`Reports::roll_up_reports`): only a message from before today can be in such a day,
/// so only those take the lock on `report_rollup` the roll-up holds while it counts.
async fn count_late_answer(tx: &mut $conn, created_at: i64, channel: &str, conversation: &str, intent: &str, answered: bool) -> Result<(), StoreError> {
    use crate::report_sql::DAY_MS;
    let day = created_at.div_euclid(DAY_MS);
    if day >= chrono::Utc::now().timestamp_millis().div_euclid(DAY_MS) {
        return Ok(());
    }
    let (through,): (i64,) = sqlx::query_as("UPDATE report_rollup SET through_day = through_day WHERE id = 1 RETURNING through_day")
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?;
    if day < through {
        sqlx::query(
            "INSERT INTO intent_days (day, channel, category, intent, messages, answered) \
             SELECT $1, $2, COALESCE(c.category, ''), $3, 1, $4 FROM conversations c WHERE c.id = $5 \
             ON CONFLICT (day, channel, category, intent) DO UPDATE SET messages = intent_days.messages + 1, answered = intent_days.answered + excluded.answered",
        )
        .bind(day)
        .bind(channel)
        .bind(intent)
        .bind(i64::from(answered))
        .bind(conversation)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
    }
    Ok(())
}

/// Whether `conversation` is no longer at `version` (a check of `unchanged_since` failed).
async fn moved_on(tx: &mut $conn, conversation: switchboard_models::ConversationId, version: i64) -> Result<bool, StoreError> {
    let stored: Option<(i64,)> = sqlx::query_as("SELECT version FROM conversations WHERE id = $1")
        .bind(conversation.to_string())
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
    Ok(stored.is_none_or(|(stored,)| stored != version))
}

/// Whether the customer message `seq` still waits for its answer.
async fn unanswered(tx: &mut $conn, seq: i64) -> Result<bool, StoreError> {
    let waiting: Option<(i64,)> = sqlx::query_as("SELECT message_seq FROM waiting_messages WHERE message_seq = $1")
        .bind(seq)
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
    Ok(waiting.is_some())
}

/// A report's query: the period's bounds as `$1` and `$2`, then the filters' values.
fn report_query(sql: &str, period: &switchboard_core::ports::ReportPeriod, values: &[String]) -> sqlx::query::Query<'static, $db, <$db as sqlx::Database>::Arguments> {
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.to_string())).bind(millis(period.from)).bind(millis(period.to));
    for value in values {
        query = query.bind(value.clone());
    }
    query
}

async fn delete_messages(tx: &mut $conn, ids: &[String]) -> Result<(), StoreError> {
    for id in ids {
        sqlx::query("DELETE FROM waiting_messages WHERE message_seq = (SELECT seq FROM messages WHERE id = $1)")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        sqlx::query("DELETE FROM messages WHERE id = $1").bind(id).execute(&mut *tx).await.map_err(backend)?;
    }
    Ok(())
}

/// An admin change and its audit entries, in the caller's transaction.
async fn write_admin(tx: &mut $conn, write: &AdminWrite) -> Result<(), StoreError> {
    if let Some(agent) = &write.agent {
        sqlx::query(
            "INSERT INTO agents (id, email, name, role, presence, capacity, active, created_at, skills) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO UPDATE SET \
             email = excluded.email, name = excluded.name, role = excluded.role, \
             presence = excluded.presence, capacity = excluded.capacity, active = excluded.active, \
             skills = excluded.skills",
        )
        .bind(agent.id.to_string())
        .bind(&agent.email)
        .bind(&agent.name)
        .bind(agent.role.as_str())
        .bind(agent.presence.as_str())
        .bind(i64::from(agent.capacity))
        .bind(agent.active)
        .bind(millis(agent.created_at))
        .bind(agent.skills.join(","))
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
    }
    if let Some((agent, secret)) = &write.two_factor {
        sqlx::query("UPDATE agents SET totp_secret = $2, totp_last_step = NULL WHERE id = $1")
            .bind(agent.to_string())
            .bind(secret)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
    }
    if let Some((hash, agent, until)) = &write.sign_in_challenge {
        sqlx::query("DELETE FROM sign_in_challenges WHERE agent_id = $1").bind(agent.to_string()).execute(&mut *tx).await.map_err(backend)?;
        sqlx::query("INSERT INTO sign_in_challenges (token_hash, agent_id, expires_at) VALUES ($1, $2, $3)")
            .bind(hash)
            .bind(agent.to_string())
            .bind(millis(*until))
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
    }
    if let Some(hash) = &write.end_sign_in_challenge {
        sqlx::query("DELETE FROM sign_in_challenges WHERE token_hash = $1").bind(hash).execute(&mut *tx).await.map_err(backend)?;
    }
    if let Some((agent, hash)) = &write.password_hash {
        sqlx::query("UPDATE agents SET password_hash = $2 WHERE id = $1")
            .bind(agent.to_string())
            .bind(hash)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
    }
    for (key, value) in &write.settings {
        match value {
            Some(value) => {
                let (by, at) = write.settings_by.map_or((None, 0), |(by, at)| (Some(by.to_string()), millis(at)));
                sqlx::query(
                    "INSERT INTO panel_settings (key, value, updated_by, updated_at) VALUES ($1, $2, $3, $4) ON CONFLICT (key) DO UPDATE SET \
                     value = excluded.value, updated_by = excluded.updated_by, updated_at = excluded.updated_at",
                )
                .bind(key)
                .bind(value)
                .bind(by)
                .bind(at)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            }
            None => {
                sqlx::query("DELETE FROM panel_settings WHERE key = $1").bind(key).execute(&mut *tx).await.map_err(backend)?;
            }
        }
    }
    match &write.webhook {
        Some(switchboard_core::ports::WebhookChange::Save(webhook)) => {
            let events: String = webhook.events.iter().map(|e| format!(",{}", e.as_str())).collect::<String>() + ",";
            sqlx::query(
                "INSERT INTO webhooks (id, url, events, secret, active, description, created_by, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO UPDATE SET url = excluded.url, events = excluded.events, \
                 secret = excluded.secret, active = excluded.active, description = excluded.description, updated_at = excluded.updated_at, \
                 consecutive_failures = CASE WHEN excluded.active AND NOT webhooks.active THEN 0 ELSE webhooks.consecutive_failures END, \
                 disabled_reason = CASE WHEN excluded.active THEN NULL ELSE webhooks.disabled_reason END",
            )
            .bind(&webhook.id)
            .bind(&webhook.url)
            .bind(events)
            .bind(&webhook.secret)
            .bind(webhook.active)
            .bind(&webhook.description)
            .bind(webhook.created_by.map(|a| a.to_string()))
            .bind(millis(webhook.created_at))
            .bind(millis(webhook.updated_at))
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        Some(switchboard_core::ports::WebhookChange::Delete(id)) => {
            sqlx::query("DELETE FROM webhook_deliveries WHERE webhook_id = $1").bind(id).execute(&mut *tx).await.map_err(backend)?;
            sqlx::query("DELETE FROM webhooks WHERE id = $1").bind(id).execute(&mut *tx).await.map_err(backend)?;
        }
        None => {}
    }
    if let Some(agent) = write.end_sessions_of {
        sqlx::query("DELETE FROM sessions WHERE agent_id = $1").bind(agent.to_string()).execute(&mut *tx).await.map_err(backend)?;
    }
    match &write.password_reset {
        Some(switchboard_core::ports::PasswordResetChange::Create(reset)) => {
            sqlx::query("INSERT INTO password_resets (token_hash, agent_id, created_by, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)")
                .bind(&reset.token_hash)
                .bind(reset.agent.to_string())
                .bind(reset.created_by.map(|a| a.to_string()))
                .bind(millis(reset.created_at))
                .bind(millis(reset.expires_at))
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        Some(switchboard_core::ports::PasswordResetChange::Use { token_hash, at }) => {
            let used = sqlx::query("UPDATE password_resets SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2")
                .bind(token_hash)
                .bind(millis(*at))
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            if used.rows_affected() == 0 {
                return Err(StoreError::Stale("this link was used or has expired; ask an admin for a new one".into()));
            }
        }
        None => {}
    }
    if let Some(agent) = write.revoke_credentials {
        for sql in ["DELETE FROM sessions WHERE agent_id = $1", "DELETE FROM api_tokens WHERE agent_id = $1"] {
            sqlx::query(sql).bind(agent.to_string()).execute(&mut *tx).await.map_err(backend)?;
        }
    }
    if let Some((agent, presence, at)) = write.presence {
        let changed = sqlx::query("UPDATE agents SET presence = $2 WHERE id = $1 AND presence <> $2")
            .bind(agent.to_string())
            .bind(presence.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected();
        if changed > 0 {
            sqlx::query("INSERT INTO agent_presence_log (agent_id, presence, at) VALUES ($1, $2, $3)")
                .bind(agent.to_string())
                .bind(presence.as_str())
                .bind(millis(at))
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
    }
    match &write.canned {
        Some(CannedChange::Save(canned)) => {
            sqlx::query(
                "INSERT INTO canned_responses (id, title, body, created_by, created_at, shared) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (id) DO UPDATE SET title = excluded.title, body = excluded.body, shared = excluded.shared",
            )
            .bind(canned.id.to_string())
            .bind(&canned.title)
            .bind(&canned.body)
            .bind(canned.created_by.map(|a| a.to_string()))
            .bind(millis(canned.created_at))
            .bind(canned.shared)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        Some(CannedChange::Delete(id)) => {
            sqlx::query("DELETE FROM canned_responses WHERE id = $1").bind(id.to_string()).execute(&mut *tx).await.map_err(backend)?;
        }
        None => {}
    }
    if let Some(version) = &write.intents {
        write_intents_version(tx, version).await?;
    }
    if let Some((token_hash, session)) = &write.session {
        sqlx::query("INSERT INTO sessions (token_hash, agent_id, csrf, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(token_hash)
            .bind(session.agent.to_string())
            .bind(&session.csrf)
            .bind(millis(chrono::Utc::now()))
            .bind(millis(session.expires_at))
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
    }
    if let Some(token_hash) = &write.end_session {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1").bind(token_hash).execute(&mut *tx).await.map_err(backend)?;
    }
    match &write.api_token {
        Some(switchboard_core::ports::ApiTokenChange::Create { token_hash, token }) => {
            sqlx::query("INSERT INTO api_tokens (id, token_hash, agent_id, name, created_at) VALUES ($1, $2, $3, $4, $5)")
                .bind(token.id.to_string())
                .bind(token_hash)
                .bind(token.agent.to_string())
                .bind(&token.name)
                .bind(millis(token.created_at))
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        Some(switchboard_core::ports::ApiTokenChange::Revoke { agent, id }) => {
            sqlx::query("DELETE FROM api_tokens WHERE id = $1 AND agent_id = $2")
                .bind(id.to_string())
                .bind(agent.to_string())
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        None => {}
    }
    for entry in &write.audit {
        insert_audit(&mut *tx, entry).await?;
    }
    Ok(())
}

/// The next version only while `after` is the newest (else `Stale`), and its labels.
async fn write_intents_version(tx: &mut $conn, version: &switchboard_core::ports::NewIntentsVersion) -> Result<(), StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO intents_versions (number, text, digest, file_digest, origin, note, author_id, created_at) \
         SELECT $1 + 1, $2, $3, $4, $5, $6, $7, $8 WHERE (SELECT COALESCE(MAX(number), 0) FROM intents_versions) = $1",
    )
    .bind(version.after)
    .bind(&version.text)
    .bind(&version.digest)
    .bind(&version.file_digest)
    .bind(version.origin.as_str())
    .bind(&version.note)
    .bind(version.author.map(|a| a.to_string()))
    .bind(millis(version.at))
    .execute(&mut *tx)
    .await;
    let stale = || StoreError::Stale(format!("another version of the intents was recorded after version {}; nothing was saved", version.after));
    match inserted {
        Ok(done) if done.rows_affected() == 1 => {}
        Ok(_) => return Err(stale()),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => return Err(stale()),
        Err(e) => return Err(backend(e)),
    }
    for label in &version.labels {
        sqlx::query(
            "INSERT INTO intent_labels (message_seq, text, intent, version, agent_id, labelled_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (message_seq) DO UPDATE SET text = excluded.text, intent = excluded.intent, version = excluded.version, \
             agent_id = excluded.agent_id, labelled_at = excluded.labelled_at",
        )
        .bind(label.message_seq)
        .bind(&label.text)
        .bind(&label.intent)
        .bind(version.after + 1)
        .bind(version.author.map(|a| a.to_string()))
        .bind(millis(version.at))
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
    }
    Ok(())
}

/// One row per recipient: the agent, or every active admin.
async fn insert_notice(tx: &mut $conn, notice: &NoticeWrite) -> Result<(), StoreError> {
    let agent = match notice.to {
        Recipient::Agent(agent) => Some(agent.to_string()),
        Recipient::Admins => None,
    };
    sqlx::query(
        "INSERT INTO notifications (agent_id, kind, conversation_id, text, created_at, mail_pending) \
         SELECT id, $2, $3, $4, $5, $6 FROM agents WHERE active = TRUE AND (id = $1 OR ($1 IS NULL AND role = 'admin'))",
    )
    .bind(agent)
    .bind(notice.kind.as_str())
    .bind(notice.conversation.map(|c| c.to_string()))
    .bind(&notice.text)
    .bind(millis(notice.at))
    .bind(notice.by_email)
    .execute(&mut *tx)
    .await
    .map_err(backend)?;
    Ok(())
}

async fn insert_audit<'e>(executor: impl sqlx::Executor<'e, Database = $db>, entry: &AuditEntry) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_log (at, actor_id, action, conversation_id, subject_agent, before_state, after_state) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(millis(entry.at))
    .bind(entry.actor.map(|a| a.to_string()))
    .bind(entry.action.as_str())
    .bind(entry.conversation.map(|c| c.to_string()))
    .bind(entry.subject_agent.map(|a| a.to_string()))
    .bind(entry.before.as_deref())
    .bind(entry.after.as_deref())
    .execute(executor)
    .await
    .map_err(backend)?;
    Ok(())
}

/// Inserts the contact or updates the one stored for its channel id; returns the stored id.
async fn upsert_contact(tx: &mut $conn, contact: &Contact) -> Result<String, StoreError> {
    let (id,): (String,) = sqlx::query_as(
        "INSERT INTO contacts (id, channel, external_id, display_name, created_at) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (channel, external_id) DO UPDATE \
         SET display_name = COALESCE(excluded.display_name, contacts.display_name), \
             unreachable_since = NULL, unreachable_reason = NULL \
         RETURNING id",
    )
    .bind(contact.id.to_string())
    .bind(contact.channel.as_str())
    .bind(&contact.external_id)
    .bind(contact.display_name.as_deref())
    .bind(millis(contact.created_at))
    .fetch_one(&mut *tx)
    .await
    .map_err(backend)?;
    Ok(id)
}

/// Whether the conversation's contact has an open conversation other than this new one. The
/// contact's row is locked first (written by this step), so two nodes starting one for the
/// same customer take turns here and the second sees the first's.
async fn another_open_conversation(tx: &mut $conn, conversation: &Conversation) -> Result<bool, StoreError> {
    sqlx::query("UPDATE contacts SET external_id = external_id WHERE id = $1")
        .bind(conversation.contact_id.to_string())
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
    let (open,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM conversations WHERE contact_id = $1 AND id <> $2 AND status NOT IN ('closed', 'rejected')",
    )
    .bind(conversation.contact_id.to_string())
    .bind(conversation.id.to_string())
    .fetch_one(&mut *tx)
    .await
    .map_err(backend)?;
    Ok(open > 0)
}

/// Replaces a conversation's timers.
async fn set_timers(tx: &mut $conn, conversation: ConversationId, timers: &[(TimerKind, Timestamp)]) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM timers WHERE conversation_id = $1")
        .bind(conversation.to_string())
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
    for (kind, due_at) in timers {
        sqlx::query("INSERT INTO timers (conversation_id, kind, due_at) VALUES ($1, $2, $3)")
            .bind(conversation.to_string())
            .bind(kind.as_str())
            .bind(millis(*due_at))
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
    }
    Ok(())
}

/// One rating per resolution: a second for the same one is ignored; a comment joins its rating.
async fn write_feedback(tx: &mut $conn, write: &switchboard_core::ports::FeedbackWrite) -> Result<(), StoreError> {
    let conversation = write.conversation_id.to_string();
    let query = match &write.feedback {
        switchboard_core::Feedback::Rated { agent, resolved_at, score } => sqlx::query(
            "INSERT INTO ratings (conversation_id, agent_id, channel, resolved_at, score, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (conversation_id, resolved_at) DO NOTHING",
        )
        .bind(conversation)
        .bind(agent.to_string())
        .bind(write.channel.as_str())
        .bind(millis(*resolved_at))
        .bind(i64::from(*score))
        .bind(millis(write.at)),
        switchboard_core::Feedback::Commented { resolved_at, text } => {
            sqlx::query("UPDATE ratings SET comment = $3 WHERE conversation_id = $1 AND resolved_at = $2 AND comment IS NULL")
                .bind(conversation)
                .bind(millis(*resolved_at))
                .bind(text.clone())
        }
    };
    query.execute(&mut *tx).await.map_err(backend)?;
    Ok(())
}

async fn save_conversation(tx: &mut $conn, c: &Conversation) -> Result<(), StoreError> {
    let sql = conversation_upsert(0, None);
    bind_conversation(sqlx::query(sqlx::AssertSqlSafe(sql)), c).execute(&mut *tx).await.map_err(backend)?;
    Ok(())
}

/// How many values `bind_conversation` binds.
const CONVERSATION_VALUES: usize = 21;

/// Inserts or updates a conversation from the values `bind_conversation` binds after the
/// first `after` parameters; with `only_if_message`, only when that message (a table or, on
/// PostgreSQL, the statement's `m`) holds the row whose id is `$1`.
///
/// On SQLite (no chained writes: its statements are joined in one call) an update is split.
/// SQLite rewrites the entry of every index that holds a column the UPDATE sets, changed or not,
/// and the conversation has sixteen indexes; most steps change only the columns no index holds and
/// `updated_at`. So the upsert sets those, and a second statement sets the indexed columns only
/// when one of them changed.
/// PostgreSQL writes a new entry in every index on any update anyway: one statement there.
fn conversation_upsert(after: usize, only_if_message: Option<&str>) -> String {
    let p = |column: usize| format!("${}", after + column);
    let values = (1..=CONVERSATION_VALUES).map(p).collect::<Vec<_>>().join(", ");
    let (source, guard) = match only_if_message {
        Some(messages) => (
            format!("SELECT {values}, {} WHERE EXISTS (SELECT 1 FROM {messages} WHERE id = $1)", p(5)),
            format!(" AND EXISTS (SELECT 1 FROM {messages} WHERE id = $1)"),
        ),
        None => (format!("VALUES ({values}, {})", p(5)), String::new()),
    };
    let insert = format!(
        "INSERT INTO conversations (id, contact_id, channel, handler, agent_id, status, category, \
         priority, escalation_reason, escalation_summary, escalated_at, low_confidence_streak, \
         created_at, updated_at, version, waiting_notice_at, first_reply_due_at, resolution_due_at, sla_notices, awaiting, language, last_agent_id) \
         {source} ON CONFLICT (id) DO UPDATE SET "
    );
    let unindexed = "escalation_reason = excluded.escalation_reason, escalation_summary = excluded.escalation_summary, \
         low_confidence_streak = excluded.low_confidence_streak, updated_at = excluded.updated_at, \
         version = excluded.version, waiting_notice_at = excluded.waiting_notice_at, \
         sla_notices = excluded.sla_notices, awaiting = excluded.awaiting, language = excluded.language";
    if $chained_writes {
        return format!(
            "{insert}handler = excluded.handler, agent_id = excluded.agent_id, \
             last_agent_id = COALESCE(excluded.agent_id, conversations.last_agent_id), \
             status = excluded.status, category = excluded.category, priority = excluded.priority, \
             escalated_at = excluded.escalated_at, first_reply_due_at = excluded.first_reply_due_at, \
             resolution_due_at = excluded.resolution_due_at, {unindexed}"
        );
    }
    // The indexed columns besides `updated_at`, with their value numbers in `bind_conversation`.
    let indexed = [("handler", 4), ("agent_id", 5), ("status", 6), ("category", 7), ("priority", 8), ("escalated_at", 11), ("first_reply_due_at", 17), ("resolution_due_at", 18)];
    let set = indexed.iter().map(|(column, value)| format!("{column} = {}", p(*value))).collect::<Vec<_>>().join(", ");
    let changed = indexed.iter().map(|(column, value)| format!("{column} IS NOT {}", p(*value))).collect::<Vec<_>>().join(" OR ");
    format!(
        "{insert}{unindexed}; \
         UPDATE conversations SET {set}, last_agent_id = COALESCE({}, last_agent_id) WHERE id = {} AND ({changed}){guard}",
        p(5),
        p(1)
    )
}

/// Binds conversation `c`'s `CONVERSATION_VALUES` values, in `conversation_upsert`'s order.
fn bind_conversation<'q>(
    query: sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments>,
    c: &Conversation,
) -> sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments> {
    let (handler, agent_id) = match c.handler {
        Handler::Bot => ("bot", None),
        Handler::Queue => ("queue", None),
        Handler::Agent(id) => ("agent", Some(id.to_string())),
    };
    let escalation = c.escalation.as_ref();
    query
        .bind(c.id.to_string())
        .bind(c.contact_id.to_string())
        .bind(c.channel.as_str())
        .bind(handler)
        .bind(agent_id)
        .bind(c.status.as_str())
        .bind(c.category.map(|v| v.as_str()))
        .bind(c.priority.map(|v| v.as_str()))
        .bind(escalation.map(|e| to_json(&e.reason)))
        .bind(escalation.map(|e| e.summary.clone()))
        .bind(escalation.map(|e| millis(e.at)))
        .bind(i64::from(c.low_confidence_streak))
        .bind(millis(c.created_at))
        .bind(millis(c.updated_at))
        // The copy carries the version it was read at; what is stored is the next one.
        .bind(c.version + 1)
        .bind(c.waiting_notice_at.map(millis))
        .bind(c.first_reply_due_at.map(millis))
        .bind(c.resolution_due_at.map(millis))
        .bind(i64::from(c.sla_notices.0))
        .bind(c.awaiting.as_ref().map(to_json))
        .bind(c.language.clone())
}

impl $store {
    /// Tells the backend that webhooks changed while the writing connection is still held, so
    /// that no step group takes it before the backend knows (the SQLite step writer keeps
    /// whether any is active).
    fn webhooks_changed_holding(&self, connection: sqlx::pool::PoolConnection<$db>) {
        self.webhooks_changed();
        drop(connection);
    }

    /// A page of messages for `sql` selecting by one id, a `seq` cursor and a limit.
    async fn message_page(
        &self,
        sql: sqlx::AssertSqlSafe<&'static str>,
        id: String,
        after: i64,
        limit: u32,
    ) -> Result<Vec<Message>, StoreError> {
        let rows = sqlx::query(sql)
            .bind(id)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await
            .map_err(backend)?;
        rows.iter().map(message_from_row).collect()
    }
}

            impl $store {
                /// Runs a claim: $1 the lease's end, $2 now, $3 how many.
                async fn claim(
                    &self,
                    claim: sqlx::AssertSqlSafe<&'static str>,
                    now: Timestamp,
                    lease_until: Timestamp,
                    limit: u32,
                ) -> Result<Vec<<$db as sqlx::Database>::Row>, StoreError> {
                    sqlx::query(claim)
                        .bind(millis(lease_until))
                        .bind(millis(now))
                        .bind(i64::from(limit))
                        .fetch_all(&self.writer)
                        .await
                        .map_err(backend)
                }
            }

            #[async_trait]
            impl switchboard_core::ports::Conversations for $store {
                $($conversations)*
    async fn claim_wanted_summaries(&self, now: Timestamp, lease_until: Timestamp, limit: u32) -> Result<Vec<(ConversationId, u32)>, StoreError> {
        // As with webhook deliveries: the outer condition is checked again on a row another
        // node took meanwhile, so each is claimed once.
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "UPDATE summaries_wanted SET due_at = $2 WHERE due_at <= $1 AND conversation_id IN \
             (SELECT conversation_id FROM summaries_wanted WHERE due_at <= $1 ORDER BY due_at LIMIT $3) RETURNING conversation_id, attempts",
        )
        .bind(millis(now))
        .bind(millis(lease_until))
        .bind(i64::from(limit))
        .fetch_all(&self.writer)
        .await
        .map_err(backend)?;
        rows.into_iter()
            .map(|(id, attempts)| Ok((ConversationId(crate::rows::parsed("conversation_id", &id)?), u32::try_from(attempts).unwrap_or(u32::MAX))))
            .collect()
    }

    async fn summary_done(&self, conversation: ConversationId, retry_at: Option<Timestamp>) -> Result<(), StoreError> {
        let query = match retry_at {
            None => sqlx::query("DELETE FROM summaries_wanted WHERE conversation_id = $1").bind(conversation.to_string()),
            Some(at) => sqlx::query("UPDATE summaries_wanted SET attempts = attempts + 1, due_at = $2 WHERE conversation_id = $1")
                .bind(conversation.to_string())
                .bind(millis(at)),
        };
        query.execute(&self.writer).await.map_err(backend)?;
        Ok(())
    }
    async fn message_by_external_id(
        &self,
        channel: Channel,
        external_id: &str,
    ) -> Result<Option<Message>, StoreError> {
        sqlx::query(sql!("SELECT ", MESSAGE_COLUMNS, " FROM messages WHERE channel = $1 AND external_id = $2"))
            .bind(channel.as_str())
            .bind(external_id)
            .fetch_optional(&self.reader)
            .await
            .map_err(backend)?
            .map(|row| message_from_row(&row))
            .transpose()
    }

    async fn conversation(&self, id: ConversationId) -> Result<Option<Conversation>, StoreError> {
        sqlx::query(sql!("SELECT ", CONVERSATION_COLUMNS, " FROM conversations WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await
            .map_err(backend)?
            .map(|row| conversation_from_row(&row))
            .transpose()
    }

    async fn contact_by_external_id(
        &self,
        channel: Channel,
        external_id: &str,
    ) -> Result<Option<Contact>, StoreError> {
        sqlx::query(sql!("SELECT ", CONTACT_COLUMNS, " FROM contacts WHERE channel = $1 AND external_id = $2"))
        .bind(channel.as_str())
        .bind(external_id)
        .fetch_optional(&self.reader)
        .await
        .map_err(backend)?
        .map(|row| contact_from_row(&row))
        .transpose()
    }

    async fn current_conversation(&self, contact: ContactId) -> Result<Option<Conversation>, StoreError> {
        sqlx::query(sql!(
            "SELECT ",
            CONVERSATION_COLUMNS,
            " FROM conversations WHERE contact_id = $1 AND status NOT IN ('closed', 'rejected') \
             ORDER BY created_at DESC, id DESC LIMIT 1"
        ))
        .bind(contact.to_string())
        .fetch_optional(&self.reader)
        .await
        .map_err(backend)?
        .map(|row| conversation_from_row(&row))
        .transpose()
    }

    async fn contact(&self, id: ContactId) -> Result<Option<Contact>, StoreError> {
        sqlx::query(sql!("SELECT ", CONTACT_COLUMNS, " FROM contacts WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await
            .map_err(backend)?
            .map(|row| contact_from_row(&row))
            .transpose()
    }

    async fn contact_and_current_conversation(
        &self,
        channel: Channel,
        external_id: &str,
    ) -> Result<Option<(Contact, Option<Conversation>)>, StoreError> {
        let Some(row) = sqlx::query(sql!(
            "SELECT k.id AS contact_id_, k.channel AS contact_channel, k.external_id AS contact_external_id, \
             k.display_name, k.created_at AS contact_created_at, k.unreachable_since, k.unreachable_reason, k.email AS contact_email, c.* \
             FROM contacts k LEFT JOIN conversations c ON c.id = ( \
                SELECT id FROM conversations WHERE contact_id = k.id AND status NOT IN ('closed', 'rejected') \
                ORDER BY created_at DESC, id DESC LIMIT 1) \
             WHERE k.channel = $1 AND k.external_id = $2"
        ))
        .bind(channel.as_str())
        .bind(external_id)
        .fetch_optional(&self.reader)
        .await
        .map_err(backend)?
        else {
            return Ok(None);
        };
        let contact = contact_from_prefixed_row(&row)?;
        let has_conversation = row.try_get::<Option<String>, _>("id").map_err(backend)?.is_some();
        let conversation = if has_conversation { Some(conversation_from_row(&row)?) } else { None };
        Ok(Some((contact, conversation)))
    }

    async fn mark_unreachable(&self, contact: ContactId, since: Timestamp, reason: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE contacts SET unreachable_since = COALESCE(unreachable_since, $2), \
             unreachable_reason = COALESCE(unreachable_reason, $3) WHERE id = $1",
        )
            .bind(contact.to_string())
            .bind(millis(since))
            .bind(reason)
            .execute(&self.writer)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn mark_seen_by_agent(&self, conversation: ConversationId, agent: AgentId, up_to_seq: i64, at: Timestamp) -> Result<bool, StoreError> {
        let changed = sqlx::query(
            "INSERT INTO conversation_seen (conversation_id, up_to_seq, agent_id, seen_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (conversation_id) DO UPDATE SET up_to_seq = excluded.up_to_seq, agent_id = excluded.agent_id, seen_at = excluded.seen_at \
             WHERE conversation_seen.up_to_seq < excluded.up_to_seq",
        )
        .bind(conversation.to_string())
        .bind(up_to_seq)
        .bind(agent.to_string())
        .bind(millis(at))
        .execute(&self.writer)
        .await
        .map_err(backend)?
        .rows_affected();
        Ok(changed > 0)
    }

    async fn seen_by_agent(&self, conversation: ConversationId) -> Result<Option<i64>, StoreError> {
        let row: Option<(i64,)> = sqlx::query_as("SELECT up_to_seq FROM conversation_seen WHERE conversation_id = $1")
            .bind(conversation.to_string())
            .fetch_optional(&self.reader)
            .await
            .map_err(backend)?;
        Ok(row.map(|(seq,)| seq))
    }

    async fn message_by_seq(&self, seq: i64) -> Result<Option<Message>, StoreError> {
        sqlx::query(sql!("SELECT ", MESSAGE_COLUMNS, " FROM messages WHERE seq = $1"))
            .bind(seq)
            .fetch_optional(&self.reader)
            .await
            .map_err(backend)?
            .map(|row| message_from_row(&row))
            .transpose()
    }

    async fn unanswered_messages(&self, limit: u32) -> Result<Vec<Message>, StoreError> {
        let rows = sqlx::query(sql!(
            "SELECT ",
            MESSAGE_COLUMNS,
            " FROM messages WHERE seq IN (SELECT message_seq FROM waiting_messages ORDER BY message_seq LIMIT $1) ORDER BY seq"
        ))
        .bind(i64::from(limit))
        .fetch_all(&self.writer)
        .await
        .map_err(backend)?;
        rows.iter().map(message_from_row).collect()
    }

    async fn earlier_unanswered(&self, contact: ContactId, seq: i64) -> Result<Option<Message>, StoreError> {
        let row = sqlx::query(sql!(
            "SELECT ",
            MESSAGE_COLUMNS,
            " FROM messages WHERE seq = (SELECT message_seq FROM waiting_messages WHERE contact_id = $1 AND message_seq < $2 \
             ORDER BY message_seq LIMIT 1)"
        ))
        .bind(contact.to_string())
        .bind(seq)
        .fetch_optional(&self.writer)
        .await
        .map_err(backend)?;
        row.as_ref().map(message_from_row).transpose()
    }

    async fn contact_messages(
        &self,
        contact: ContactId,
        after: i64,
        limit: u32,
    ) -> Result<Vec<Message>, StoreError> {
        let sql = sql!(
            "SELECT ",
            MESSAGE_COLUMNS,
            " FROM messages WHERE contact_id = $1 AND seq > $2 AND internal = FALSE ORDER BY seq LIMIT $3"
        );
        self.message_page(sql, contact.to_string(), after, limit).await
    }

    async fn conversation_messages(
        &self,
        conversation: ConversationId,
        after: i64,
        limit: u32,
    ) -> Result<Vec<Message>, StoreError> {
        let sql = sql!("SELECT ", MESSAGE_COLUMNS, " FROM messages WHERE conversation_id = $1 AND seq > $2 ORDER BY seq LIMIT $3");
        self.message_page(sql, conversation.to_string(), after, limit).await
    }

    async fn latest_conversation_messages(
        &self,
        conversation: ConversationId,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Message>, StoreError> {
        let sql = sql!("SELECT ", MESSAGE_COLUMNS, " FROM messages WHERE conversation_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3");
        let mut page = self.message_page(sql, conversation.to_string(), before.unwrap_or(i64::MAX), limit).await?;
        page.reverse();
        Ok(page)
    }

    async fn message_with_attachment(&self, conversation: ConversationId, key: &str) -> Result<Option<Message>, StoreError> {
        // Attachments are stored as JSON in their message; the conversation index narrows the
        // scan to one conversation and the pattern to messages naming this key.
        let pattern = crate::portable::contains_pattern(key);
        let rows = sqlx::query(sql!(
            "SELECT ",
            MESSAGE_COLUMNS,
            " FROM messages WHERE conversation_id = $1 AND attachments LIKE $2 ESCAPE '\\' ORDER BY seq"
        ))
        .bind(conversation.to_string())
        .bind(pattern)
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        for row in &rows {
            let message = message_from_row(row)?;
            if message.attachments.iter().any(|a| a.key == key) {
                return Ok(Some(message));
            }
        }
        Ok(None)
    }

    async fn recent_customer_texts(
        &self,
        conversation: ConversationId,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        let mut texts: Vec<String> = sqlx::query_scalar(
            "SELECT body FROM messages WHERE conversation_id = $1 AND sender = 'customer' \
             ORDER BY seq DESC LIMIT $2",
        )
        .bind(conversation.to_string())
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        texts.reverse();
        Ok(texts)
    }

    async fn escalations_of(&self, conversation: ConversationId) -> Result<Vec<switchboard_models::EscalationRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT conversation_id, at, reason, confidence, priority, category FROM escalations \
             WHERE conversation_id = $1 ORDER BY at, id",
        )
        .bind(conversation.to_string())
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        rows.iter().map(crate::rows::escalation_from_row).collect()
    }
            }

            #[async_trait]
            impl switchboard_core::ports::Documents for $store {
    async fn document(&self, id: switchboard_models::DocumentId) -> Result<Option<switchboard_models::Document>, StoreError> {
        sqlx::query(sql!("SELECT ", DOCUMENT_COLUMNS, " FROM documents d WHERE d.id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await
            .map_err(backend)?
            .map(|row| crate::rows::document_from_row(&row))
            .transpose()
    }

    async fn documents(&self, filter: &switchboard_core::ports::DocumentFilter) -> Result<Vec<switchboard_core::ports::DocumentSummary>, StoreError> {
        let mut conditions: Vec<String> = Vec::new();
        let mut binds: Vec<String> = Vec::new();
        for (column, value) in [
            ("d.state", filter.state.map(|s| s.as_str().to_string())),
            ("d.kind", filter.kind.clone()),
            ("d.conversation_id", filter.conversation.map(|c| c.to_string())),
        ] {
            if let Some(value) = value {
                binds.push(value);
                conditions.push(format!("{column} = ${}", binds.len()));
            }
        }
        let and_filter: String = conditions.iter().map(|c| format!(" AND {c}")).collect();
        let limit = filter.limit.clamp(1, 200);
        // Pending first, the longest waiting first; then decisions, the newest first. Each half
        // is read in the order of its own index and only the page's rows are sorted.
        let sql = format!(
            "SELECT {DOCUMENT_COLUMNS}, k.display_name AS customer_name, k.external_id AS customer_external_id, a.name AS reviewer_name FROM ( \
             SELECT * FROM (SELECT d.*, 0 AS half, d.created_at AS sort_key FROM documents d \
               WHERE d.state = 'pending'{and_filter} ORDER BY d.created_at, d.id LIMIT {limit}) pending \
             UNION ALL \
             SELECT * FROM (SELECT d.*, 1 AS half, -d.decided_at AS sort_key FROM documents d \
               WHERE d.decided_at IS NOT NULL{and_filter} ORDER BY d.decided_at DESC, d.id LIMIT {limit}) decided \
             ) d JOIN contacts k ON k.id = d.contact_id LEFT JOIN agents a ON a.id = d.reviewer_id \
             ORDER BY d.half, d.sort_key, d.id LIMIT {limit}"
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for value in binds {
            query = query.bind(value);
        }
        let rows = query.fetch_all(&self.reader).await.map_err(backend)?;
        rows.iter()
            .map(|row| {
                let document = crate::rows::document_from_row(row)?;
                let customer = switchboard_models::customer_label(row.text_opt("customer_name")?.as_deref(), &row.text("customer_external_id")?, document.channel);
                Ok(switchboard_core::ports::DocumentSummary { document, customer, reviewer_name: row.text_opt("reviewer_name")? })
            })
            .collect()
    }

    async fn document_counts(&self, day_start: Timestamp) -> Result<switchboard_core::ports::DocumentCounts, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) FILTER (WHERE state = 'pending') AS pending, \
             COUNT(*) FILTER (WHERE state = 'approved' AND decided_at >= $1) AS approved, \
             COUNT(*) FILTER (WHERE state = 'rejected' AND decided_at >= $1) AS rejected \
             FROM documents WHERE state = 'pending' OR decided_at >= $1",
        )
        .bind(millis(day_start))
        .fetch_one(&self.reader)
        .await
        .map_err(backend)?;
        let count = |column: &str| row.int(column).map(|n| n.max(0) as u64);
        Ok(switchboard_core::ports::DocumentCounts { pending: count("pending")?, approved_today: count("approved")?, rejected_today: count("rejected")? })
    }

    async fn documents_to_purge(&self, before: Timestamp, limit: u32) -> Result<Vec<switchboard_models::Document>, StoreError> {
        let rows = sqlx::query(sql!(
            "SELECT ", DOCUMENT_COLUMNS, " FROM documents d WHERE d.state IN ('approved', 'rejected') \
             AND d.purged_at IS NULL AND d.created_at < $1 ORDER BY d.created_at, d.id LIMIT $2"
        ))
        .bind(millis(before))
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        rows.iter().map(|row| crate::rows::document_from_row(row)).collect()
    }

    async fn mark_document_purged(&self, id: switchboard_models::DocumentId, at: Timestamp) -> Result<(), StoreError> {
        sqlx::query("UPDATE documents SET purged_at = $2 WHERE id = $1 AND purged_at IS NULL")
            .bind(id.to_string())
            .bind(millis(at))
            .execute(&self.writer)
            .await
            .map_err(backend)?;
        Ok(())
    }
            }

            #[async_trait]
            impl switchboard_core::ports::Identities for $store {
    async fn identities(&self, contact: ContactId) -> Result<Vec<Contact>, StoreError> {
        let rows = sqlx::query(sql!("SELECT ", CONTACT_COLUMNS, " FROM contacts WHERE id = (", PERSON_OF_1, ") OR person_id = (", PERSON_OF_1, ") ORDER BY created_at, id"))
            .bind(contact.to_string())
            .fetch_all(&self.reader)
            .await
            .map_err(backend)?;
        rows.iter().map(contact_from_row).collect()
    }

    async fn person_conversations(&self, contact: ContactId) -> Result<Vec<ConversationSummary>, StoreError> {
        let rows = sqlx::query(sql!(
            SUMMARY_SELECT,
            " WHERE c.contact_id IN (SELECT p.id FROM contacts p WHERE p.id = (", PERSON_OF_1, ") OR p.person_id = (", PERSON_OF_1, ")) ",
            "ORDER BY c.created_at DESC LIMIT 100"
        ))
        .bind(contact.to_string())
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        rows.iter().map(summary_from_row).collect()
    }

    async fn contact_links(&self, contact: ContactId) -> Result<Vec<switchboard_models::ContactLink>, StoreError> {
        let rows = sqlx::query(sql!(
            "SELECT * FROM contact_links WHERE person_id IN (SELECT p.id FROM contacts p WHERE p.id = (", PERSON_OF_1, ") OR p.person_id = (", PERSON_OF_1, ")) ",
            "OR joined_id IN (SELECT p.id FROM contacts p WHERE p.id = (", PERSON_OF_1, ") OR p.person_id = (", PERSON_OF_1, ")) ",
            "ORDER BY created_at DESC, id DESC LIMIT 100"
        ))
        .bind(contact.to_string())
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        rows.iter().map(crate::rows::contact_link_from_row).collect()
    }

    async fn contact_link(&self, id: switchboard_models::LinkId) -> Result<Option<switchboard_models::ContactLink>, StoreError> {
        sqlx::query("SELECT * FROM contact_links WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await
            .map_err(backend)?
            .map(|row| crate::rows::contact_link_from_row(&row))
            .transpose()
    }

    async fn save_link_code(&self, code: &switchboard_models::LinkCode) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await.map_err(backend)?;
        sqlx::query("DELETE FROM link_codes WHERE expires_at < $1")
            .bind(millis(code.created_at - chrono::Duration::days(1)))
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        sqlx::query("INSERT INTO link_codes (code_hash, contact_id, email, created_at, expires_at, used_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(&code.code_hash)
            .bind(code.contact.to_string())
            .bind(code.email.as_deref())
            .bind(millis(code.created_at))
            .bind(millis(code.expires_at))
            .bind(code.used_at.map(millis))
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn link_code(&self, code_hash: &str) -> Result<Option<switchboard_models::LinkCode>, StoreError> {
        sqlx::query("SELECT * FROM link_codes WHERE code_hash = $1")
            .bind(code_hash)
            .fetch_optional(&self.reader)
            .await
            .map_err(backend)?
            .map(|row| crate::rows::link_code_from_row(&row))
            .transpose()
    }

    async fn join_contacts(&self, join: &switchboard_core::ports::JoinContacts) -> Result<Option<switchboard_models::ContactLink>, StoreError> {
        let mut tx = self.writer.begin().await.map_err(backend)?;
        if let Some(hash) = &join.code_hash {
            let used = sqlx::query("UPDATE link_codes SET used_at = $2 WHERE code_hash = $1 AND used_at IS NULL AND expires_at > $2")
                .bind(hash)
                .bind(millis(join.at))
                .execute(&mut *tx)
                .await
                .map_err(backend)?
                .rows_affected();
            if used == 0 {
                return Ok(None);
            }
        }
        let mut keys = Vec::with_capacity(2);
        for contact in [join.person, join.joined] {
            let key: Option<(String,)> = sqlx::query_as(sql!(PERSON_OF_1))
                .bind(contact.to_string())
                .fetch_optional(&mut *tx)
                .await
                .map_err(backend)?;
            keys.push(key.map(|(key,)| key));
        }
        let [Some(person), Some(joined)] = [keys[0].take(), keys[1].take()] else { return Ok(None) };
        if person == joined {
            return Ok(None);
        }
        let moved: Vec<(String,)> = sqlx::query_as("SELECT id FROM contacts WHERE id = $1 OR person_id = $1 ORDER BY created_at, id")
            .bind(&joined)
            .fetch_all(&mut *tx)
            .await
            .map_err(backend)?;
        sqlx::query("UPDATE contacts SET person_id = $1 WHERE id = $2 OR person_id = $2")
            .bind(&person)
            .bind(&joined)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        let contact_id = |text: &str| text.parse().map(ContactId).map_err(|e| StoreError::Corrupt(format!("contacts.id: {e}")));
        let link = switchboard_models::ContactLink {
            id: switchboard_models::LinkId::new(),
            person: contact_id(&person)?,
            joined: contact_id(&joined)?,
            moved: moved.iter().map(|(id,)| contact_id(id)).collect::<Result<_, _>>()?,
            proof: join.proof,
            agent: join.agent,
            at: join.at,
            undone_at: None,
            undone_by: None,
        };
        sqlx::query(
            "INSERT INTO contact_links (id, person_id, joined_id, moved, proof, agent_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(link.id.to_string())
        .bind(&person)
        .bind(&joined)
        .bind(to_json(&link.moved))
        .bind(link.proof.as_str())
        .bind(link.agent.map(|a| a.to_string()))
        .bind(millis(link.at))
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        if let Some(entry) = &join.audit {
            insert_audit(&mut *tx, entry).await?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(Some(link))
    }

    async fn undo_contact_link(
        &self,
        id: switchboard_models::LinkId,
        by: Option<AgentId>,
        at: Timestamp,
        audit: Option<AuditEntry>,
    ) -> Result<Option<switchboard_models::ContactLink>, StoreError> {
        let mut tx = self.writer.begin().await.map_err(backend)?;
        let undone = sqlx::query("UPDATE contact_links SET undone_at = $2, undone_by = $3 WHERE id = $1 AND undone_at IS NULL")
            .bind(id.to_string())
            .bind(millis(at))
            .bind(by.map(|a| a.to_string()))
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected();
        if undone == 0 {
            return Ok(None);
        }
        let row = sqlx::query("SELECT * FROM contact_links WHERE id = $1").bind(id.to_string()).fetch_one(&mut *tx).await.map_err(backend)?;
        let link = crate::rows::contact_link_from_row(&row)?;
        let (current,): (String,) = sqlx::query_as(sql!(PERSON_OF_1)).bind(link.person.to_string()).fetch_one(&mut *tx).await.map_err(backend)?;
        // Only what is still with that person goes back: a contact a later join or undo moved
        // elsewhere stays where it is.
        for contact in &link.moved {
            sqlx::query(sql!(
                "UPDATE contacts SET person_id = CASE WHEN id = $2 THEN NULL ELSE $2 END ",
                "WHERE id = $1 AND COALESCE(person_id, id) = $3"
            ))
            .bind(contact.to_string())
            .bind(link.joined.to_string())
            .bind(&current)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        if let Some(entry) = &audit {
            insert_audit(&mut *tx, entry).await?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(Some(link))
    }
            }

            #[async_trait]
            impl switchboard_core::ports::Ratings for $store {
    async fn ratings_of(&self, conversation: ConversationId) -> Result<Vec<switchboard_models::Rating>, StoreError> {
        let rows = sqlx::query(
            "SELECT conversation_id, agent_id, channel, resolved_at, score, comment, created_at FROM ratings \
             WHERE conversation_id = $1 ORDER BY resolved_at",
        )
        .bind(conversation.to_string())
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        rows.iter().map(crate::rows::rating_from_row).collect()
    }

    async fn agent_ratings(&self, since: Timestamp) -> Result<Vec<switchboard_core::ports::AgentRatings>, StoreError> {
        let rows = sqlx::query(
            "SELECT agent_id, COUNT(*) AS n, CAST(SUM(score) AS BIGINT) AS total FROM ratings \
             WHERE created_at >= $1 AND agent_id IS NOT NULL GROUP BY agent_id ORDER BY agent_id",
        )
        .bind(millis(since))
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|row| {
                let agent_id = row.text("agent_id")?.parse().map(AgentId).map_err(|e| StoreError::Corrupt(format!("ratings.agent_id: {e}")))?;
                let count = row.int("n")?;
                Ok(switchboard_core::ports::AgentRatings {
                    agent_id,
                    count: u32::try_from(count).unwrap_or(u32::MAX),
                    average: row.int("total")? as f64 / count.max(1) as f64,
                })
            })
            .collect()
    }
            }

            #[async_trait]
            impl switchboard_core::ports::Reports for $store {
    async fn started_by_hour(&self, period: &switchboard_core::ports::ReportPeriod, offsets: &switchboard_core::ports::ZoneOffsets) -> Result<Vec<switchboard_core::ports::HourCount>, StoreError> {
        let (filter, values) = crate::report_sql::filter_conditions(period, crate::report_sql::ReportRows::Conversations, 3);
        let local = crate::report_sql::wall_clock("c.created_at", offsets);
        let sql = format!(
            "SELECT {local} / 3600000 AS local_hour, c.channel, COUNT(*) AS n FROM conversations c \
             WHERE c.created_at >= $1 AND c.created_at < $2{filter} GROUP BY 1, c.channel"
        );
        let rows = report_query(&sql, period, &values).fetch_all(&self.reader).await.map_err(backend)?;
        rows.iter()
            .map(|row| Ok(switchboard_core::ports::HourCount { local_hour: row.int("local_hour")?, channel: crate::rows::parsed("channel", &row.text("channel")?)?, count: row.int("n")? }))
            .collect()
    }

    async fn started_by_state(&self, period: &switchboard_core::ports::ReportPeriod) -> Result<Vec<switchboard_core::ports::StateCount>, StoreError> {
        let (filter, values) = crate::report_sql::filter_conditions(period, crate::report_sql::ReportRows::Conversations, 3);
        let sql = format!(
            "SELECT c.status, CAST(CASE WHEN c.escalated_at IS NULL THEN 0 ELSE 1 END AS BIGINT) AS escalated, COUNT(*) AS n \
             FROM conversations c WHERE c.created_at >= $1 AND c.created_at < $2{filter} GROUP BY c.status, 2"
        );
        let rows = report_query(&sql, period, &values).fetch_all(&self.reader).await.map_err(backend)?;
        rows.iter()
            .map(|row| {
                Ok(switchboard_core::ports::StateCount { status: crate::rows::parsed("status", &row.text("status")?)?, escalated: row.int("escalated")? == 1, count: row.int("n")? })
            })
            .collect()
    }

    async fn event_counts(&self, period: &switchboard_core::ports::ReportPeriod) -> Result<Vec<switchboard_core::ports::EventCount>, StoreError> {
        let (filter, values) = crate::report_sql::filter_conditions(period, crate::report_sql::ReportRows::Events, 3);
        // Grouped by what the reports read of each kind: half the grouping work of all five columns.
        let sql = format!(
            "SELECT e.kind, CAST(NULL AS TEXT) AS agent_id, e.reason, e.category, e.priority, COUNT(*) AS n FROM conversation_events e \
             WHERE e.kind = 'escalated' AND e.at >= $1 AND e.at < $2{filter} GROUP BY e.kind, e.reason, e.category, e.priority \
             UNION ALL \
             SELECT e.kind, e.agent_id, e.reason, CAST(NULL AS TEXT), CAST(NULL AS TEXT), COUNT(*) FROM conversation_events e \
             WHERE e.kind IN ('assigned', 'first_reply', 'resolved') AND e.at >= $1 AND e.at < $2{filter} GROUP BY e.kind, e.agent_id, e.reason"
        );
        let rows = report_query(&sql, period, &values).fetch_all(&self.reader).await.map_err(backend)?;
        rows.iter()
            .map(|row| {
                Ok(switchboard_core::ports::EventCount {
                    kind: crate::rows::parsed("kind", &row.text("kind")?)?,
                    agent_id: crate::rows::optional::<uuid::Uuid>(row, "agent_id")?.map(AgentId),
                    reason: row.text_opt("reason")?,
                    category: crate::rows::optional(row, "category")?,
                    priority: crate::rows::optional(row, "priority")?,
                    count: row.int("n")?,
                })
            })
            .collect()
    }

    async fn wait_percentiles(&self, period: &switchboard_core::ports::ReportPeriod) -> Result<Vec<switchboard_core::ports::WaitPercentiles>, StoreError> {
        use switchboard_core::reports::percentile_rank;
        let (filter, values) = crate::report_sql::filter_conditions(period, crate::report_sql::ReportRows::Events, 3);
        // The waits themselves (two integers each, from the covering index), ranked here: a
        // window ranking in SQL sorts them twice and costs several times as much.
        let sql = format!(
            "SELECT e.kind, e.agent_id, e.wait_ms FROM conversation_events e \
             WHERE e.kind IN ('first_reply', 'resolved') AND e.at >= $1 AND e.at < $2 AND e.wait_ms IS NOT NULL{filter}"
        );
        let rows = report_query(&sql, period, &values).fetch_all(&self.reader).await.map_err(backend)?;
        let mut waits: std::collections::BTreeMap<(String, Option<String>), Vec<i64>> = std::collections::BTreeMap::new();
        for row in &rows {
            let (kind, agent, wait) = (row.text("kind")?, row.text_opt("agent_id")?, row.int("wait_ms")?);
            if agent.is_some() {
                waits.entry((kind.clone(), agent)).or_default().push(wait);
            }
            waits.entry((kind, None)).or_default().push(wait);
        }
        waits
            .into_iter()
            .map(|((kind, agent), mut values)| {
                values.sort_unstable();
                let count = values.len() as i64;
                let at = |p: i64| values[(percentile_rank(count, p) - 1) as usize];
                Ok(switchboard_core::ports::WaitPercentiles {
                    kind: crate::rows::parsed("kind", &kind)?,
                    agent_id: agent.map(|a| a.parse::<uuid::Uuid>().map(AgentId).map_err(|e| StoreError::Corrupt(format!("conversation_events.agent_id: {e}")))).transpose()?,
                    count,
                    median_ms: at(50),
                    p90_ms: at(90),
                })
            })
            .collect()
    }

    async fn intent_counts(&self, period: &switchboard_core::ports::ReportPeriod) -> Result<Vec<switchboard_core::ports::IntentCount>, StoreError> {
        use crate::report_sql::DAY_MS;
        let (from, to) = (period.from.timestamp_millis(), period.to.timestamp_millis());
        let mut counts: std::collections::BTreeMap<Option<String>, (i64, i64)> = std::collections::BTreeMap::new();
        let mut add = |rows: Vec<(Option<String>, i64, i64)>| {
            for (intent, n, answered) in rows {
                let entry = counts.entry(intent).or_default();
                *entry = (entry.0 + n, entry.1 + answered);
            }
        };
        // Whole days already counted per day are read from `intent_days`; the rest of the
        // period, and the messages still waiting for an answer, from the messages themselves.
        let first_day = (from + DAY_MS - 1).div_euclid(DAY_MS);
        let through_day: i64 = if period.agent.is_some() {
            first_day
        } else {
            let (through,): (i64,) = sqlx::query_as("SELECT through_day FROM report_rollup WHERE id = 1").fetch_one(&self.reader).await.map_err(backend)?;
            through.min(to.div_euclid(DAY_MS))
        };
        if through_day > first_day {
            let (filter, values) = crate::report_sql::filter_conditions(period, crate::report_sql::ReportRows::Counted, 3);
            let sql = format!(
                "SELECT d.intent, CAST(SUM(d.messages) AS BIGINT) AS n, CAST(SUM(d.answered) AS BIGINT) AS answered FROM intent_days d \
                 WHERE d.day >= $1 AND d.day < $2{filter} GROUP BY d.intent"
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(first_day).bind(through_day);
            for value in &values {
                query = query.bind(value.clone());
            }
            add(crate::rows::intent_rows(&query.fetch_all(&self.reader).await.map_err(backend)?)?);
            let counted = (first_day * DAY_MS, through_day * DAY_MS);
            add(self.message_intents(period, from, counted.0, false).await?);
            add(self.message_intents(period, counted.0, counted.1, true).await?);
            add(self.message_intents(period, counted.1, to, false).await?);
        } else {
            add(self.message_intents(period, from, to, false).await?);
        }
        Ok(counts.into_iter().map(|(intent, (count, answered))| switchboard_core::ports::IntentCount { intent, count, answered }).collect())
    }

    async fn unsure_messages(&self, period: &switchboard_core::ports::ReportPeriod, below: f32, limit: u32) -> Result<Vec<switchboard_core::ports::UnsureMessage>, StoreError> {
        let (filter, values) = crate::report_sql::filter_conditions(period, crate::report_sql::ReportRows::Of("m"), 5);
        let sql = format!(
            "SELECT m.seq, m.conversation_id, m.body, m.intent, m.confidence, m.created_at, v.vector FROM messages m \
             LEFT JOIN message_embeddings v ON v.message_seq = m.seq WHERE m.sender = 'customer' AND m.created_at >= $1 AND m.created_at < $2 \
             AND m.confidence IS NOT NULL AND (m.intent = 'out_of_scope' OR m.confidence < $3){filter} \
             AND NOT EXISTS (SELECT 1 FROM intent_labels l WHERE l.message_seq = m.seq) ORDER BY m.created_at DESC LIMIT $4"
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(millis(period.from)).bind(millis(period.to)).bind(f64::from(below)).bind(i64::from(limit));
        for value in &values {
            query = query.bind(value.clone());
        }
        let rows = query.fetch_all(&self.reader).await.map_err(backend)?;
        rows.iter()
            .map(|row| {
                Ok(switchboard_core::ports::UnsureMessage {
                    seq: row.int("seq")?,
                    conversation_id: row.text("conversation_id")?.parse().map(ConversationId).map_err(|e| StoreError::Corrupt(format!("messages.conversation_id: {e}")))?,
                    text: row.text("body")?,
                    intent: row.text_opt("intent")?,
                    confidence: row.real_opt("confidence")?,
                    at: crate::rows::instant_of(row.int("created_at")?)?,
                    embedding: row.bytes_opt("vector")?.map(|bytes| switchboard_models::Embedding::from_bytes(&bytes)),
                })
            })
            .collect()
    }

    async fn ratings_given(&self, period: &switchboard_core::ports::ReportPeriod) -> Result<Vec<switchboard_models::Rating>, StoreError> {
        let (filter, values) = crate::report_sql::filter_conditions(period, crate::report_sql::ReportRows::Of("r"), 3);
        let sql = format!(
            "SELECT r.conversation_id, r.agent_id, r.channel, r.resolved_at, r.score, r.comment, r.created_at FROM ratings r \
             WHERE r.created_at >= $1 AND r.created_at < $2{filter} ORDER BY r.created_at"
        );
        let rows = report_query(&sql, period, &values).fetch_all(&self.reader).await.map_err(backend)?;
        rows.iter().map(crate::rows::rating_from_row).collect()
    }

    async fn roll_up_reports(&self, before_day: i64, max_days: i64) -> Result<i64, StoreError> {
        use crate::report_sql::DAY_MS;
        let mut tx = self.writer.begin().await.map_err(backend)?;
        // Locks the row first: a step answering a message of these days waits, then counts it
        // itself (see `count_late_answer`); one that answered before is in the counts below.
        let (through,): (i64,) = sqlx::query_as("UPDATE report_rollup SET through_day = through_day WHERE id = 1 RETURNING through_day")
            .fetch_one(&mut *tx)
            .await
            .map_err(backend)?;
        if through >= before_day {
            return Ok(0);
        }
        let (first,): (Option<i64>,) = sqlx::query_as("SELECT MIN(created_at) FROM messages WHERE sender = 'customer' AND created_at >= $1")
            .bind(through * DAY_MS)
            .fetch_one(&mut *tx)
            .await
            .map_err(backend)?;
        let start = first.map_or(before_day, |at| at.div_euclid(DAY_MS)).clamp(through, before_day);
        let end = (start + max_days.max(1)).min(before_day);
        if start < end {
            sqlx::query(
                "INSERT INTO intent_days (day, channel, category, intent, messages, answered) \
                 SELECT m.created_at / 86400000, m.channel, COALESCE(c.category, ''), m.intent, COUNT(*), \
                 SUM(CASE WHEN m.answered_from_intent THEN 1 ELSE 0 END) \
                 FROM messages m JOIN conversations c ON c.id = m.conversation_id \
                 WHERE m.sender = 'customer' AND m.intent IS NOT NULL AND m.created_at >= $1 AND m.created_at < $2 \
                 GROUP BY m.created_at / 86400000, m.channel, COALESCE(c.category, ''), m.intent",
            )
            .bind(start * DAY_MS)
            .bind(end * DAY_MS)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        sqlx::query("UPDATE report_rollup SET through_day = $1 WHERE id = 1").bind(end).execute(&mut *tx).await.map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(end - start)
    }
            }

            impl $store {
    /// Customer messages created in `[from, to)` and selected by the period's filters, counted
    /// per intent; with `waiting_only`, only those not answered yet.
    async fn message_intents(&self, period: &switchboard_core::ports::ReportPeriod, from: i64, to: i64, waiting_only: bool) -> Result<Vec<(Option<String>, i64, i64)>, StoreError> {
        if from >= to {
            return Ok(Vec::new());
        }
        let (filter, values) = crate::report_sql::filter_conditions(period, crate::report_sql::ReportRows::Of("m"), 3);
        let rows = match waiting_only {
            true => "waiting_messages w JOIN messages m ON m.seq = w.message_seq WHERE w.created_at >= $1 AND w.created_at < $2",
            false => "messages m WHERE m.sender = 'customer' AND m.created_at >= $1 AND m.created_at < $2",
        };
        let sql = format!(
            "SELECT m.intent, COUNT(*) AS n, CAST(SUM(CASE WHEN m.answered_from_intent THEN 1 ELSE 0 END) AS BIGINT) AS answered \
             FROM {rows}{filter} GROUP BY m.intent"
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(from).bind(to);
        for value in &values {
            query = query.bind(value.clone());
        }
        crate::rows::intent_rows(&query.fetch_all(&self.reader).await.map_err(backend)?)
    }
            }

            #[async_trait]
            impl switchboard_core::ports::PanelSettings for $store {
    async fn stored_settings(&self) -> Result<Vec<switchboard_core::ports::StoredSetting>, StoreError> {
        let rows = sqlx::query("SELECT key, value, updated_by, updated_at FROM panel_settings ORDER BY key").fetch_all(&self.reader).await.map_err(backend)?;
        rows.iter()
            .map(|row| {
                Ok(switchboard_core::ports::StoredSetting {
                    key: row.text("key")?,
                    value: row.text("value")?,
                    updated_by: crate::rows::optional::<uuid::Uuid>(row, "updated_by")?.map(AgentId),
                    updated_at: crate::rows::instant_of(row.int("updated_at")?)?,
                })
            })
            .collect()
    }
            }

            #[async_trait]
            impl switchboard_core::ports::IntentVersions for $store {
    async fn latest_intents(&self) -> Result<Option<(switchboard_core::ports::IntentsVersion, String)>, StoreError> {
        let row = sqlx::query("SELECT * FROM intents_versions ORDER BY number DESC LIMIT 1").fetch_optional(&self.reader).await.map_err(backend)?;
        row.map(|row| Ok((crate::rows::intents_version_from_row(&row)?, row.text("text")?))).transpose()
    }

    async fn intents_text(&self, number: i64) -> Result<Option<(switchboard_core::ports::IntentsVersion, String)>, StoreError> {
        let row = sqlx::query("SELECT * FROM intents_versions WHERE number = $1").bind(number).fetch_optional(&self.reader).await.map_err(backend)?;
        row.map(|row| Ok((crate::rows::intents_version_from_row(&row)?, row.text("text")?))).transpose()
    }

    async fn intents_versions(&self, limit: u32) -> Result<Vec<switchboard_core::ports::IntentsVersion>, StoreError> {
        let rows = sqlx::query(
            "SELECT number, digest, file_digest, origin, note, author_id, created_at, labelled, accuracy_before, accuracy_after, measured_at \
             FROM intents_versions ORDER BY number DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        rows.iter().map(crate::rows::intents_version_from_row).collect()
    }

    async fn record_intents_accuracy(&self, number: i64, accuracy: &switchboard_core::ports::IntentsAccuracy) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE intents_versions SET labelled = $2, accuracy_before = $3, accuracy_after = $4, measured_at = $5 \
             WHERE number = $1 AND measured_at IS NULL",
        )
        .bind(number)
        .bind(i64::from(accuracy.labelled))
        .bind(accuracy.before)
        .bind(accuracy.after)
        .bind(millis(accuracy.measured_at))
        .execute(&self.writer)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn labelled_messages(&self) -> Result<Vec<(String, String)>, StoreError> {
        sqlx::query_as("SELECT text, intent FROM intent_labels ORDER BY labelled_at, message_seq")
            .fetch_all(&self.reader)
            .await
            .map_err(backend)
    }

    async fn customer_texts(&self, seqs: &[i64]) -> Result<Vec<(i64, String)>, StoreError> {
        let mut texts = Vec::with_capacity(seqs.len());
        for &seq in seqs {
            let text: Option<String> = sqlx::query_scalar("SELECT body FROM messages WHERE seq = $1 AND sender = 'customer'")
                .bind(seq)
                .fetch_optional(&self.reader)
                .await
                .map_err(backend)?;
            if let Some(text) = text {
                texts.push((seq, text));
            }
        }
        Ok(texts)
    }
            }

            #[async_trait]
            impl switchboard_core::ports::Queue for $store {
    async fn assignment_candidates(&self) -> Result<Vec<AgentLoad>, StoreError> {
        let rows = sqlx::query(sql!(
            "SELECT ",
            AGENT_COLUMNS,
            ", (SELECT COUNT(*) FROM conversations c WHERE c.agent_id = agents.id \
                AND c.status NOT IN ('resolved', 'closed', 'rejected')) AS open \
             FROM agents WHERE active = TRUE AND presence = 'online' ORDER BY id"
        ))
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|row| {
                Ok(AgentLoad { agent: agent_from_row(row)?, open: row.try_get::<i64, _>("open").map_err(backend)? as u32 })
            })
            .collect()
    }

    async fn queued_conversations(&self, limit: u32) -> Result<Vec<Conversation>, StoreError> {
        let rows = sqlx::query(sql!(
            "SELECT ",
            CONVERSATION_COLUMNS,
            " FROM conversations c WHERE c.handler = 'queue' ORDER BY ",
            NEXT_IN_LINE_KEY,
            ", c.id LIMIT $1"
        ))
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        rows.iter().map(conversation_from_row).collect()
    }

    async fn agent_conversations(&self, agent: AgentId) -> Result<Vec<Conversation>, StoreError> {
        let rows = sqlx::query(sql!(
            "SELECT ",
            CONVERSATION_COLUMNS,
            " FROM conversations WHERE agent_id = $1 AND status NOT IN ('resolved', 'closed', 'rejected') \
             ORDER BY updated_at"
        ))
        .bind(agent.to_string())
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        rows.iter().map(conversation_from_row).collect()
    }

    async fn agent_load(&self, agent: AgentId, except: Option<ConversationId>) -> Result<u32, StoreError> {
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM (SELECT 1 FROM conversations WHERE agent_id = $1 \
             AND status NOT IN ('resolved', 'closed', 'rejected') AND id <> $2 LIMIT $3) counted",
        )
        .bind(agent.to_string())
        .bind(except.map(|id| id.to_string()).unwrap_or_default())
        .bind(i64::from(switchboard_core::assignment::LOAD_COUNTED_UP_TO))
        .fetch_one(&self.reader)
        .await
        .map_err(backend)?;
        Ok(count as u32)
    }

    async fn queued_ahead_of(&self, conversation: &Conversation) -> Result<u32, StoreError> {
        let ahead: i64 = sqlx::query_scalar(sql!(
            "SELECT COUNT(*) FROM conversations c WHERE c.handler = 'queue' AND (",
            NEXT_IN_LINE_KEY,
            " < $1 OR (",
            NEXT_IN_LINE_KEY,
            " = $1 AND c.id < $2))"
        ))
        .bind(switchboard_core::ports::next_in_line_key(conversation))
        .bind(conversation.id.to_string())
        .fetch_one(&self.reader)
        .await
        .map_err(backend)?;
        Ok(ahead as u32)
    }

    async fn recent_first_replies(&self, limit: u32) -> Result<Vec<(Timestamp, chrono::Duration)>, StoreError> {
        // The latest escalations (index `conversations_by_escalation`), each with its first
        // reply an agent sent after it; those still waiting have none and are left out.
        let rows: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT escalated_at, first_reply FROM (SELECT c.escalated_at, \
             (SELECT MIN(m.created_at) FROM messages m WHERE m.conversation_id = c.id AND m.sender = 'agent' \
              AND m.internal = FALSE AND m.created_at >= c.escalated_at) AS first_reply \
             FROM conversations c WHERE c.escalated_at IS NOT NULL ORDER BY c.escalated_at DESC LIMIT $2) recent \
             WHERE first_reply IS NOT NULL ORDER BY escalated_at DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .bind(i64::from(limit) * 4)
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        rows.into_iter()
            .map(|(escalated, replied)| {
                let at = chrono::DateTime::from_timestamp_millis(escalated).ok_or_else(|| StoreError::Corrupt("escalated_at".into()))?;
                Ok((at, chrono::Duration::milliseconds(replied - escalated)))
            })
            .collect()
    }

    async fn queue_view(&self) -> Result<QueueView, StoreError> {
        let (waiting, agents_online): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM conversations WHERE handler = 'queue'), \
                    (SELECT COUNT(*) FROM agents WHERE presence = 'online' AND active = TRUE)",
        )
        .fetch_one(&self.reader)
        .await
        .map_err(backend)?;
        Ok(QueueView { waiting: waiting as u32, agents_online: agents_online as u32 })
    }
            }

            #[async_trait]
            impl switchboard_core::ports::Timers for $store {
    /// Skips timers another node is claiming right now (PostgreSQL) instead of waiting.
    async fn claim_due_timers(&self, now: Timestamp, lease_until: Timestamp, limit: u32) -> Result<Vec<Timer>, StoreError> {
        due_first(&self.claim(sqlx::AssertSqlSafe($claim_timers), now, lease_until, limit).await?)
    }

    async fn timers_of(&self, conversation: ConversationId) -> Result<Vec<Timer>, StoreError> {
        let rows = sqlx::query("SELECT conversation_id, kind, due_at FROM timers WHERE conversation_id = $1 ORDER BY due_at, kind")
            .bind(conversation.to_string())
            .fetch_all(&self.reader)
            .await
            .map_err(backend)?;
        rows.iter().map(timer_from_row).collect()
    }
            }

            #[async_trait]
            impl switchboard_core::ports::Outbox for $store {
                $($outbox)*
    /// One statement: lease the due replies and return them with their recipient.
    async fn claim_outbox(&self, now: Timestamp, lease_until: Timestamp, limit: u32) -> Result<Vec<OutboundMessage>, StoreError> {
        let leased = sql!(
            "UPDATE messages SET lease_until = $1 WHERE seq IN (",
            $outbox_due,
            ") RETURNING ",
            MESSAGE_COLUMNS,
            ", retry_from, (SELECT external_id FROM contacts c WHERE c.id = messages.contact_id) AS recipient"
        );
        claimed_in_order(&self.claim(leased, now, lease_until, limit).await?)
    }

    async fn mark_delivered(&self, sent: &[(i64, Option<String>)], now: Timestamp) -> Result<(), StoreError> {
        let (with_id, without_id): (Vec<_>, Vec<_>) = sent.iter().partition(|(_, id)| id.is_some());
        if !without_id.is_empty() {
            let list = without_id.iter().map(|(seq, _)| seq.to_string()).collect::<Vec<_>>().join(",");
            let sql = format!(
                "UPDATE messages SET delivered_at = $1, lease_until = NULL, attempts = attempts + 1, \
                 last_error = NULL WHERE seq IN ({list})"
            );
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(millis(now)).execute(&self.writer).await.map_err(backend)?;
        }
        if with_id.is_empty() {
            return Ok(());
        }
        // One transaction for the batch: one commit (one fsync on SQLite), not one per reply.
        let mut tx = self.writer.begin().await.map_err(backend)?;
        for (seq, id) in with_id {
            sqlx::query(
                "UPDATE messages SET delivered_at = $1, lease_until = NULL, attempts = attempts + 1, \
                 last_error = NULL, sent_id = $3 WHERE seq = $2",
            )
            .bind(millis(now))
            .bind(seq)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)
    }

    async fn mark_failed(&self, seq: i64, error: &str, retry_at: Option<Timestamp>) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE messages SET attempts = attempts + 1, last_error = $2, lease_until = NULL, \
             next_attempt_at = COALESCE($3, next_attempt_at), \
             gave_up_at = CASE WHEN $3 IS NULL THEN $4 ELSE NULL END WHERE seq = $1",
        )
        .bind(seq)
        .bind(error)
        .bind(retry_at.map(millis))
        .bind(millis(chrono::Utc::now()))
        .execute(&self.writer)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn retry_delivery(&self, conversation: ConversationId, seq: i64, now: Timestamp) -> Result<Option<Message>, StoreError> {
        let retried = sqlx::query(
            "UPDATE messages SET gave_up_at = NULL, attempts = 0, last_error = NULL, lease_until = NULL, \
             next_attempt_at = $3, retry_from = $3 \
             WHERE seq = $2 AND conversation_id = $1 AND outbound = TRUE AND delivered_at IS NULL",
        )
        .bind(conversation.to_string())
        .bind(seq)
        .bind(millis(now))
        .execute(&self.writer)
        .await
        .map_err(backend)?
        .rows_affected();
        if retried == 0 {
            return Ok(None);
        }
        self.message_by_seq(seq).await
    }

    async fn fail_delivery(&self, message: MessageId, reason: &str, now: Timestamp) -> Result<Option<Message>, StoreError> {
        let row = sqlx::query(
            "UPDATE messages SET gave_up_at = COALESCE(gave_up_at, $3), last_error = $2, lease_until = NULL \
             WHERE id = $1 AND outbound = TRUE RETURNING seq",
        )
        .bind(message.to_string())
        .bind(reason)
        .bind(millis(now))
        .fetch_optional(&self.writer)
        .await
        .map_err(backend)?;
        match row {
            Some(row) => self.message_by_seq(row.try_get::<i64, _>("seq").map_err(backend)?).await,
            None => Ok(None),
        }
    }

    async fn mark_seen(&self, contact: ContactId, up_to_seq: i64, now: Timestamp) -> Result<Vec<Message>, StoreError> {
        let rows = sqlx::query(sql!(
            // Not only sent ones: the widget shows a reply live before the outbox records it sent,
            // and stored replies in its history.
            "UPDATE messages SET seen_at = $3 WHERE contact_id = $1 AND seq <= $2 AND outbound = TRUE \
             AND seen_at IS NULL AND gave_up_at IS NULL RETURNING ",
            MESSAGE_COLUMNS
        ))
        .bind(contact.to_string())
        .bind(up_to_seq)
        .bind(millis(now))
        .fetch_all(&self.writer)
        .await
        .map_err(backend)?;
        rows.iter().map(message_from_row).collect()
    }

    async fn latest_inbound_by_contact(&self, channel: Channel) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT k.external_id AS contact, m.external_id AS latest FROM contacts k \
             JOIN messages m ON m.seq = (SELECT MAX(i.seq) FROM messages i WHERE i.contact_id = k.id AND i.sender = 'customer') \
             WHERE k.channel = $1 AND m.external_id IS NOT NULL ORDER BY k.external_id",
        )
        .bind(channel.as_str())
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        rows.iter().map(|row| Ok((row.text("contact")?, row.text("latest")?))).collect()
    }

    async fn queue_direct_notice(&self, notice: &switchboard_core::ports::DirectNotice) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO direct_notices (channel, recipient, key, text, created_at, next_attempt_at) VALUES ($1, $2, $3, $4, $5, $5) \
             ON CONFLICT (key) DO NOTHING",
        )
        .bind(notice.channel.as_str())
        .bind(&notice.recipient)
        .bind(&notice.key)
        .bind(&notice.text)
        .bind(millis(notice.created_at))
        .execute(&self.writer)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn claim_direct_notices(&self, now: Timestamp, lease_until: Timestamp, limit: u32) -> Result<Vec<switchboard_core::ports::QueuedNotice>, StoreError> {
        // The outer condition is checked again on a row another node claimed meanwhile
        // (PostgreSQL re-reads it after the lock), so a notice is claimed once.
        let claim = sqlx::AssertSqlSafe(
            "UPDATE direct_notices SET next_attempt_at = $1 WHERE next_attempt_at <= $2 AND id IN \
             (SELECT id FROM direct_notices WHERE next_attempt_at <= $2 ORDER BY id LIMIT $3) \
             RETURNING id, channel, recipient, key, text, created_at, attempts",
        );
        let mut claimed = self
            .claim(claim, now, lease_until, limit)
            .await?
            .iter()
            .map(|row| {
                Ok(switchboard_core::ports::QueuedNotice {
                    id: row.int("id")?,
                    notice: switchboard_core::ports::DirectNotice {
                        channel: crate::rows::parsed("channel", &row.text("channel")?)?,
                        recipient: row.text("recipient")?,
                        key: row.text("key")?,
                        text: row.text("text")?,
                        created_at: crate::rows::instant_of(row.int("created_at")?)?,
                    },
                    attempts: u32::try_from(row.int("attempts")?).unwrap_or(u32::MAX),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        claimed.sort_by_key(|queued| queued.id);
        Ok(claimed)
    }

    async fn direct_notice_attempted(&self, id: i64, now: Timestamp, error: Option<&str>, retry_at: Option<Timestamp>) -> Result<(), StoreError> {
        let (sent_at, gave_up_at) = match (error, retry_at) {
            (None, _) => (Some(millis(now)), None),
            (Some(_), Some(_)) => (None, None),
            (Some(_), None) => (None, Some(millis(now))),
        };
        let retry_at = retry_at.filter(|_| error.is_some()).map(millis);
        sqlx::query(
            "UPDATE direct_notices SET attempts = attempts + 1, next_attempt_at = $2, sent_at = $3, gave_up_at = $4, \
             last_error = COALESCE($5, last_error) WHERE id = $1",
        )
        .bind(id)
        .bind(retry_at)
        .bind(sent_at)
        .bind(gave_up_at)
        .bind(error)
        .execute(&self.writer)
        .await
        .map_err(backend)?;
        Ok(())
    }
            }

            #[async_trait]
            impl switchboard_core::ports::Accounts for $store {
    async fn commit_admin(&self, write: AdminWrite) -> Result<(), StoreError> {
        let mut connection = self.writer.acquire().await.map_err(backend)?;
        let mut tx = sqlx::Connection::begin(&mut *connection).await.map_err(backend)?;
        write_admin(&mut tx, &write).await?;
        tx.commit().await.map_err(backend)?;
        if write.webhook.is_some() {
            self.webhooks_changed_holding(connection);
        }
        Ok(())
    }

    async fn agent(&self, id: AgentId) -> Result<Option<Agent>, StoreError> {
        sqlx::query(sql!("SELECT ", AGENT_COLUMNS, " FROM agents WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await
            .map_err(backend)?
            .map(|row| agent_from_row(&row))
            .transpose()
    }

    async fn agent_by_email(&self, email: &str) -> Result<Option<Agent>, StoreError> {
        sqlx::query(sql!("SELECT ", AGENT_COLUMNS, " FROM agents WHERE email = $1"))
            .bind(email)
            .fetch_optional(&self.reader)
            .await
            .map_err(backend)?
            .map(|row| agent_from_row(&row))
            .transpose()
    }

    async fn list_agents(&self) -> Result<Vec<Agent>, StoreError> {
        let rows = sqlx::query(sql!("SELECT ", AGENT_COLUMNS, " FROM agents ORDER BY name, id"))
            .fetch_all(&self.reader)
            .await
            .map_err(backend)?;
        rows.iter().map(agent_from_row).collect()
    }

    async fn two_factor_secret(&self, agent: AgentId) -> Result<Option<String>, StoreError> {
        let secret: Option<Option<String>> = sqlx::query_scalar("SELECT totp_secret FROM agents WHERE id = $1")
            .bind(agent.to_string())
            .fetch_optional(&self.reader)
            .await
            .map_err(backend)?;
        Ok(secret.flatten())
    }

    async fn two_factor_agents(&self) -> Result<Vec<AgentId>, StoreError> {
        let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM agents WHERE totp_secret IS NOT NULL").fetch_all(&self.reader).await.map_err(backend)?;
        ids.iter().map(|id| Ok(AgentId(crate::rows::parsed("id", id)?))).collect()
    }

    async fn take_two_factor_step(&self, agent: AgentId, step: i64) -> Result<bool, StoreError> {
        let taken = sqlx::query(
            "UPDATE agents SET totp_last_step = $2 WHERE id = $1 AND totp_secret IS NOT NULL AND (totp_last_step IS NULL OR totp_last_step < $2)",
        )
        .bind(agent.to_string())
        .bind(step)
        .execute(&self.writer)
        .await
        .map_err(backend)?;
        Ok(taken.rows_affected() == 1)
    }

    async fn sign_in_challenge(&self, token_hash: &str, now: Timestamp) -> Result<Option<AgentId>, StoreError> {
        let agent: Option<String> = sqlx::query_scalar("SELECT agent_id FROM sign_in_challenges WHERE token_hash = $1 AND expires_at > $2")
            .bind(token_hash)
            .bind(millis(now))
            .fetch_optional(&self.reader)
            .await
            .map_err(backend)?;
        agent.map(|id| Ok(AgentId(crate::rows::parsed("agent_id", &id)?))).transpose()
    }

    async fn sign_in_challenge_failed(&self, token_hash: &str) -> Result<u32, StoreError> {
        let failures: Option<i64> = sqlx::query_scalar("UPDATE sign_in_challenges SET failures = failures + 1 WHERE token_hash = $1 RETURNING failures")
            .bind(token_hash)
            .fetch_optional(&self.writer)
            .await
            .map_err(backend)?;
        Ok(failures.map_or(u32::MAX, |n| u32::try_from(n).unwrap_or(u32::MAX)))
    }

    async fn password_hash(&self, agent: AgentId) -> Result<Option<String>, StoreError> {
        let hash: Option<Option<String>> = sqlx::query_scalar("SELECT password_hash FROM agents WHERE id = $1")
            .bind(agent.to_string())
            .fetch_optional(&self.reader)
            .await
            .map_err(backend)?;
        Ok(hash.flatten())
    }

    async fn password_reset(&self, token_hash: &str) -> Result<Option<switchboard_core::ports::PasswordReset>, StoreError> {
        let row: Option<(String, Option<String>, i64, i64, Option<i64>)> =
            sqlx::query_as("SELECT agent_id, created_by, created_at, expires_at, used_at FROM password_resets WHERE token_hash = $1")
                .bind(token_hash)
                .fetch_optional(&self.reader)
                .await
                .map_err(backend)?;
        let agent_of = |id: &str| uuid::Uuid::parse_str(id).map(AgentId).map_err(|e| StoreError::Corrupt(format!("password_resets: {e}")));
        row.map(|(agent, by, created, expires, used)| {
            Ok(switchboard_core::ports::PasswordReset {
                token_hash: token_hash.to_string(),
                agent: agent_of(&agent)?,
                created_by: by.as_deref().map(agent_of).transpose()?,
                created_at: crate::rows::instant_of(created)?,
                expires_at: crate::rows::instant_of(expires)?,
                used_at: used.map(crate::rows::instant_of).transpose()?,
            })
        })
        .transpose()
    }

    async fn last_sign_ins(&self) -> Result<Vec<(AgentId, Timestamp)>, StoreError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT actor_id, MAX(at) FROM audit_log WHERE action = 'sign_in' AND actor_id IS NOT NULL GROUP BY actor_id")
                .fetch_all(&self.reader)
                .await
                .map_err(backend)?;
        rows.into_iter()
            .map(|(agent, at)| {
                let agent = uuid::Uuid::parse_str(&agent).map(AgentId).map_err(|e| StoreError::Corrupt(format!("audit_log.actor_id: {e}")))?;
                Ok((agent, crate::rows::instant_of(at)?))
            })
            .collect()
    }

    async fn presence_changes(&self, since: Timestamp) -> Result<Vec<(AgentId, Presence, Timestamp)>, StoreError> {
        let rows: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT agent_id, presence, at FROM agent_presence_log WHERE at >= $1 ORDER BY at")
                .bind(millis(since))
                .fetch_all(&self.reader)
                .await
                .map_err(backend)?;
        rows.into_iter()
            .map(|(agent, presence, at)| {
                let agent = uuid::Uuid::parse_str(&agent).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                let presence = presence.parse().map_err(|e: switchboard_models::UnknownVariant| StoreError::Corrupt(e.to_string()))?;
                let at = chrono::DateTime::from_timestamp_millis(at).ok_or_else(|| StoreError::Corrupt("time".into()))?;
                Ok((AgentId(agent), presence, at))
            })
            .collect()
    }

    async fn create_session(&self, token_hash: &str, session: &SessionRecord) -> Result<(), StoreError> {
        self.commit_admin(AdminWrite { session: Some((token_hash.to_string(), session.clone())), ..AdminWrite::default() }).await
    }

    async fn session(&self, token_hash: &str, now: Timestamp) -> Result<Option<SessionRecord>, StoreError> {
        let row: Option<(String, String, i64)> =
            sqlx::query_as("SELECT agent_id, csrf, expires_at FROM sessions WHERE token_hash = $1 AND expires_at > $2")
                .bind(token_hash)
                .bind(millis(now))
                .fetch_optional(&self.reader)
                .await
                .map_err(backend)?;
        row.map(|(agent, csrf, expires)| {
            Ok(SessionRecord {
                agent: AgentId(uuid::Uuid::parse_str(&agent).map_err(|e| StoreError::Corrupt(e.to_string()))?),
                csrf,
                expires_at: chrono::DateTime::from_timestamp_millis(expires).ok_or_else(|| StoreError::Corrupt("time".into()))?,
            })
        })
        .transpose()
    }

    async fn delete_session(&self, token_hash: &str) -> Result<(), StoreError> {
        self.commit_admin(AdminWrite { end_session: Some(token_hash.to_string()), ..AdminWrite::default() }).await
    }

    async fn create_api_token(&self, token_hash: &str, token: &ApiToken) -> Result<(), StoreError> {
        let change = switchboard_core::ports::ApiTokenChange::Create { token_hash: token_hash.to_string(), token: token.clone() };
        self.commit_admin(AdminWrite { api_token: Some(change), ..AdminWrite::default() }).await
    }

    async fn api_token_agent(&self, token_hash: &str) -> Result<Option<AgentId>, StoreError> {
        let agent: Option<String> = sqlx::query_scalar("SELECT agent_id FROM api_tokens WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(&self.reader)
            .await
            .map_err(backend)?;
        agent.map(|a| uuid::Uuid::parse_str(&a).map(AgentId).map_err(|e| StoreError::Corrupt(e.to_string()))).transpose()
    }

    async fn api_tokens(&self, agent: AgentId) -> Result<Vec<ApiToken>, StoreError> {
        let rows: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT id, name, created_at FROM api_tokens WHERE agent_id = $1 ORDER BY created_at")
                .bind(agent.to_string())
                .fetch_all(&self.reader)
                .await
                .map_err(backend)?;
        rows.into_iter()
            .map(|(id, name, created)| {
                Ok(ApiToken {
                    id: uuid::Uuid::parse_str(&id).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    agent,
                    name,
                    created_at: chrono::DateTime::from_timestamp_millis(created).ok_or_else(|| StoreError::Corrupt("time".into()))?,
                })
            })
            .collect()
    }

    async fn delete_api_token(&self, agent: AgentId, id: uuid::Uuid) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM api_tokens WHERE id = $1 AND agent_id = $2")
            .bind(id.to_string())
            .bind(agent.to_string())
            .execute(&self.writer)
            .await
            .map_err(backend)?;
        Ok(done.rows_affected() > 0)
    }

    async fn canned_responses(&self) -> Result<Vec<CannedResponse>, StoreError> {
        let rows: Vec<(String, String, String, Option<String>, i64, bool)> =
            sqlx::query_as("SELECT id, title, body, created_by, created_at, shared FROM canned_responses ORDER BY title")
                .fetch_all(&self.reader)
                .await
                .map_err(backend)?;
        rows.into_iter()
            .map(|(id, title, body, by, created, shared)| {
                let corrupt = |e: uuid::Error| StoreError::Corrupt(e.to_string());
                Ok(CannedResponse {
                    id: uuid::Uuid::parse_str(&id).map_err(corrupt)?,
                    title,
                    body,
                    created_by: by.map(|b| uuid::Uuid::parse_str(&b).map(AgentId).map_err(corrupt)).transpose()?,
                    created_at: chrono::DateTime::from_timestamp_millis(created).ok_or_else(|| StoreError::Corrupt("time".into()))?,
                    shared,
                })
            })
            .collect()
    }

    async fn audit_search(&self, filter: &switchboard_core::ports::AuditFilter, before: Option<i64>, limit: u32) -> Result<Vec<(i64, AuditEntry)>, StoreError> {
        // Structure is built here from which filters are set; every value is bound.
        let mut sql = String::from(
            "SELECT id, at, actor_id, action, conversation_id, subject_agent, before_state, after_state FROM audit_log WHERE id < $1",
        );
        let mut n = 1;
        let mut next = |column: &str, op: &str| {
            n += 1;
            format!(" AND {column} {op} ${n}")
        };
        if filter.actor.is_some() {
            sql += &next("actor_id", "=");
        }
        if filter.action.is_some() {
            sql += &next("action", "=");
        }
        if filter.from.is_some() {
            sql += &next("at", ">=");
        }
        if filter.to.is_some() {
            sql += &next("at", "<");
        }
        sql += &format!(" ORDER BY id DESC LIMIT ${}", n + 1);
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(before.unwrap_or(i64::MAX));
        if let Some(actor) = filter.actor {
            query = query.bind(actor.to_string());
        }
        if let Some(action) = filter.action {
            query = query.bind(action.as_str());
        }
        if let Some(from) = filter.from {
            query = query.bind(millis(from));
        }
        if let Some(to) = filter.to {
            query = query.bind(millis(to));
        }
        let rows = query.bind(i64::from(limit)).fetch_all(&self.reader).await.map_err(backend)?;
        rows.iter().map(|row| Ok((row.try_get::<i64, _>("id").map_err(backend)?, audit_from_row(row)?))).collect()
    }
            }

            #[async_trait]
            impl switchboard_core::ports::Listings for $store {
    async fn list_conversations(&self, filter: &ConversationFilter) -> Result<Vec<ConversationSummary>, StoreError> {
        let (sql, binds) = page_sql(filter, false);
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for value in binds {
            query = query.bind(value);
        }
        let rows = query.fetch_all(&self.reader).await.map_err(backend)?;
        rows.iter().map(summary_from_row).collect()
    }

    async fn list_page(&self, filter: &ConversationFilter) -> Result<(Vec<ConversationSummary>, ListTotal), StoreError> {
        let (sql, binds) = page_sql(filter, true);
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for value in binds {
            query = query.bind(value);
        }
        let rows = query.fetch_all(&self.reader).await.map_err(backend)?;
        let first = rows.first().ok_or_else(|| StoreError::Corrupt("a list page came without its total".into()))?;
        let total = ListTotal {
            count: first.try_get::<i64, _>("total_count").map_err(backend)? as u64,
            search_capped: first.try_get("total_capped").map_err(backend)?,
        };
        // An empty page is one row holding the total and no conversation.
        let summaries = rows.iter().filter(|row| matches!(row.text_opt("id"), Ok(Some(_)))).map(summary_from_row).collect::<Result<_, _>>()?;
        Ok((summaries, total))
    }

    async fn dashboard_counts(&self, day_start: Timestamp, now: Timestamp) -> Result<DashboardCounts, StoreError> {
        // Each count reads one index, so the dashboard stays fast on large stores.
        let row = sqlx::query(
            "SELECT \
               (SELECT COUNT(*) FROM conversations WHERE priority = 'urgent' \
                  AND status IN ('open', 'assigned', 'in_progress', 'waiting_on_customer')) AS urgent, \
               (SELECT COUNT(*) FROM conversations WHERE handler = 'queue') AS new, \
               (SELECT COUNT(*) FROM conversations WHERE status = 'waiting_on_customer') AS waiting, \
               (SELECT COUNT(*) FROM conversations WHERE status IN ('assigned', 'in_progress')) AS in_progress, \
               (SELECT COUNT(*) FROM conversations WHERE status IN ('resolved', 'confirmed') AND updated_at >= $1) AS resolved_today, \
               (SELECT COUNT(*) FROM conversations WHERE COALESCE(first_reply_due_at, resolution_due_at, 9000000000000000) <= $2) AS overdue",
        )
        .bind(millis(day_start))
        .bind(millis(now))
        .fetch_one(&self.reader)
        .await
        .map_err(backend)?;
        let count = |name: &str| row.try_get::<i64, _>(name).map(|n| n as u32).map_err(backend);
        Ok(DashboardCounts {
            urgent: count("urgent")?,
            new: count("new")?,
            waiting: count("waiting")?,
            in_progress: count("in_progress")?,
            resolved_today: count("resolved_today")?,
            overdue: count("overdue")?,
        })
    }

    async fn contact_conversations(&self, contact: ContactId) -> Result<Vec<ConversationSummary>, StoreError> {
        let sql = format!("{SUMMARY_SELECT} WHERE c.contact_id = $1 ORDER BY c.created_at DESC LIMIT 50");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(contact.to_string())
            .fetch_all(&self.reader)
            .await
            .map_err(backend)?;
        rows.iter().map(summary_from_row).collect()
    }

    async fn list_customers(&self, filter: &CustomerFilter) -> Result<Vec<CustomerSummary>, StoreError> {
        let (mut conditions, mut binds) = customer_conditions(filter);
        if let Some(cursor) = filter.after {
            binds.push(cursor.key.to_string());
            let key = format!("CAST(${} AS BIGINT)", binds.len());
            binds.push(cursor.id.to_string());
            let id_at = binds.len();
            conditions.push(format!("n.created_at <= {key} AND (n.created_at < {key} OR n.id < ${id_at})"));
        }
        let filter_sql = if conditions.is_empty() { String::new() } else { format!("WHERE {}", conditions.join(" AND ")) };
        // The page's ids first, then each one's newest conversation and count.
        let sql = format!(
            "WITH page AS MATERIALIZED (SELECT n.id FROM contacts n {filter_sql} ORDER BY n.created_at DESC, n.id DESC LIMIT {}) \
             SELECT c.*, n.id AS contact_id_, n.channel AS contact_channel, n.external_id AS contact_external_id, \
             n.display_name, n.created_at AS contact_created_at, n.unreachable_since, n.unreachable_reason, n.email AS contact_email, \
             (SELECT COUNT(*) FROM conversations k WHERE k.contact_id = n.id) AS conversation_count \
             FROM contacts n LEFT JOIN conversations c ON c.id = \
             (SELECT l.id FROM conversations l WHERE l.contact_id = n.id ORDER BY l.created_at DESC, l.id DESC LIMIT 1) \
             WHERE n.id IN (SELECT p.id FROM page p) ORDER BY n.created_at DESC, n.id DESC",
            filter.limit.clamp(1, 1000)
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for value in binds {
            query = query.bind(value);
        }
        let rows = query.fetch_all(&self.reader).await.map_err(backend)?;
        rows.iter()
            .map(|row| {
                let latest = if row.text_opt("id")?.is_some() { Some(conversation_from_row(row)?) } else { None };
                Ok(CustomerSummary {
                    contact: contact_from_prefixed_row(row)?,
                    conversations: row.int("conversation_count")? as u32,
                    latest,
                })
            })
            .collect()
    }

    async fn count_customers(&self, filter: &CustomerFilter) -> Result<u64, StoreError> {
        let (conditions, binds) = customer_conditions(filter);
        let filter_sql = if conditions.is_empty() { String::new() } else { format!("WHERE {}", conditions.join(" AND ")) };
        let mut query = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) AS n FROM contacts n {filter_sql}")));
        for value in binds {
            query = query.bind(value);
        }
        let row = query.fetch_one(&self.reader).await.map_err(backend)?;
        Ok(row.try_get::<i64, _>("n").map_err(backend)? as u64)
    }
            }

            #[async_trait]
            impl switchboard_core::ports::Notifications for $store {
    async fn notifications_of(&self, agent: AgentId, before: Option<i64>, limit: u32) -> Result<Vec<Notification>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, agent_id, kind, conversation_id, text, created_at, read_at FROM notifications \
             WHERE agent_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
        )
        .bind(agent.to_string())
        .bind(before.unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        rows.iter().map(notification_from_row).collect()
    }

    async fn unread_notifications(&self, agent: AgentId) -> Result<u32, StoreError> {
        let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM notifications WHERE agent_id = $1 AND read_at IS NULL")
            .bind(agent.to_string())
            .fetch_one(&self.reader)
            .await
            .map_err(backend)?;
        Ok(u32::try_from(count).unwrap_or(u32::MAX))
    }

    async fn mark_notifications_read(&self, agent: AgentId, conversation: Option<ConversationId>, now: Timestamp) -> Result<u64, StoreError> {
        let marked = sqlx::query(
            "UPDATE notifications SET read_at = $2 WHERE agent_id = $1 AND read_at IS NULL \
             AND ($3 IS NULL OR conversation_id = $3)",
        )
        .bind(agent.to_string())
        .bind(millis(now))
        .bind(conversation.map(|c| c.to_string()))
        .execute(&self.writer)
        .await
        .map_err(backend)?
        .rows_affected();
        Ok(marked)
    }

    async fn unread_by_conversation(&self, agent: AgentId, conversations: &[ConversationId]) -> Result<Vec<(ConversationId, u32)>, StoreError> {
        if conversations.is_empty() {
            return Ok(Vec::new());
        }
        let marks: Vec<String> = (2..conversations.len() + 2).map(|n| format!("${n}")).collect();
        let sql = format!(
            "SELECT conversation_id, COUNT(*) AS n FROM notifications \
             WHERE agent_id = $1 AND read_at IS NULL AND conversation_id IN ({}) GROUP BY conversation_id",
            marks.join(", ")
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(agent.to_string());
        for conversation in conversations {
            query = query.bind(conversation.to_string());
        }
        let rows = query.fetch_all(&self.reader).await.map_err(backend)?;
        rows.iter()
            .map(|row| {
                let id = row.text("conversation_id")?.parse().map(ConversationId).map_err(|e| StoreError::Corrupt(format!("notifications.conversation_id: {e}")))?;
                Ok((id, u32::try_from(row.int("n")?).unwrap_or(u32::MAX)))
            })
            .collect()
    }

    async fn notices_to_mail(&self, limit: u32) -> Result<Vec<NoticeMail>, StoreError> {
        let rows = sqlx::query(
            "SELECT n.id, n.agent_id, n.kind, n.conversation_id, n.text, n.created_at, n.read_at, \
                    a.name AS agent_name, a.email AS agent_email, a.active AS agent_active \
             FROM notifications n JOIN agents a ON a.id = n.agent_id \
             WHERE n.mail_pending ORDER BY n.id LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|row| {
                Ok(NoticeMail {
                    notification: notification_from_row(row)?,
                    agent_name: row.text("agent_name")?,
                    agent_email: row.text("agent_email")?,
                    agent_active: row.flag("agent_active")?,
                })
            })
            .collect()
    }

    async fn notice_mailed(&self, id: i64, at: Timestamp, error: Option<&str>) -> Result<(), StoreError> {
        sqlx::query("UPDATE notifications SET mail_pending = FALSE, mailed_at = $2, mail_error = $3 WHERE id = $1")
            .bind(id)
            .bind(error.is_none().then(|| millis(at)))
            .bind(error)
            .execute(&self.writer)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn customer_mails_to_send(&self, limit: u32) -> Result<Vec<switchboard_core::ports::CustomerMail>, StoreError> {
        let rows = sqlx::query(
            "SELECT m.id, m.conversation_id, c.channel, m.address, m.text, m.created_at \
             FROM customer_mails m JOIN conversations c ON c.id = m.conversation_id \
             WHERE m.mail_pending ORDER BY m.id LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        rows.iter().map(|row| crate::rows::customer_mail_from_row(row)).collect()
    }

    async fn customer_mail_sent(&self, id: i64, at: Timestamp, error: Option<&str>) -> Result<(), StoreError> {
        sqlx::query("UPDATE customer_mails SET mail_pending = FALSE, mailed_at = $2, mail_error = $3 WHERE id = $1")
            .bind(id)
            .bind(error.is_none().then(|| millis(at)))
            .bind(error)
            .execute(&self.writer)
            .await
            .map_err(backend)?;
        Ok(())
    }
            }

            #[async_trait]
            impl switchboard_core::ports::Jobs for $store {
    async fn plan_job(&self, name: &str, schedule: &str, next_run_at: Timestamp) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO scheduled_jobs (name, schedule, next_run_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET schedule = excluded.schedule, next_run_at = excluded.next_run_at \
             WHERE scheduled_jobs.schedule <> excluded.schedule",
        )
        .bind(name)
        .bind(schedule)
        .bind(millis(next_run_at))
        .execute(&self.writer)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn take_job_run(&self, name: &str, due: Timestamp, next: Timestamp, node: &str, now: Timestamp) -> Result<bool, StoreError> {
        let taken = sqlx::query(
            "UPDATE scheduled_jobs SET next_run_at = $3, last_started_at = $5, last_node = $4, \
                 last_finished_at = NULL, last_ok = NULL, last_outcome = NULL \
             WHERE name = $1 AND next_run_at = $2",
        )
        .bind(name)
        .bind(millis(due))
        .bind(millis(next))
        .bind(node)
        .bind(millis(now))
        .execute(&self.writer)
        .await
        .map_err(backend)?
        .rows_affected();
        Ok(taken == 1)
    }

    async fn job_finished(&self, name: &str, at: Timestamp, ok: bool, outcome: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE scheduled_jobs SET last_finished_at = $2, last_ok = $3, last_outcome = $4 WHERE name = $1")
            .bind(name)
            .bind(millis(at))
            .bind(ok)
            .bind(outcome)
            .execute(&self.writer)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn scheduled_jobs(&self) -> Result<Vec<ScheduledJob>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, schedule, next_run_at, last_started_at, last_node, last_finished_at, last_ok, last_outcome \
             FROM scheduled_jobs ORDER BY name",
        )
        .fetch_all(&self.writer)
        .await
        .map_err(backend)?;
        rows.iter().map(scheduled_job_from_row).collect()
    }

    async fn purge(&self, rules: &PurgeRules, dry_run: bool) -> Result<Purged, StoreError> {
        let notifications_before = rules.read_notifications_before.map(millis);
        // (count, delete) per kind of row: the same condition for both, bound the same way.
        let sessions = ("FROM sessions WHERE expires_at < $1", Some(millis(rules.sessions_expired_before)));
        let notifications = ("FROM notifications WHERE read_at IS NOT NULL AND NOT mail_pending AND created_at < $1", notifications_before);
        let mut counts = [0u64; 2];
        for (count, (condition, bound)) in counts.iter_mut().zip([sessions, notifications]) {
            let Some(bound) = bound else { continue };
            *count = if dry_run {
                let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) {condition}")))
                    .bind(bound)
                    .fetch_one(&self.reader)
                    .await
                    .map_err(backend)?;
                n as u64
            } else {
                sqlx::query(sqlx::AssertSqlSafe(format!("DELETE {condition}")))
                    .bind(bound)
                    .execute(&self.writer)
                    .await
                    .map_err(backend)?
                    .rows_affected()
            };
        }
        Ok(Purged { sessions: counts[0], notifications: counts[1] })
    }
            }

            #[async_trait]
            impl switchboard_core::ports::DeadLetters for $store {
    async fn keep_dead_letter(&self, letter: &switchboard_core::ports::NewDeadLetter, notice: &str) -> Result<i64, StoreError> {
        let mut tx = self.writer.begin().await.map_err(backend)?;
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO inbound_dead_letters (channel, external_id, payload, error, attempts, first_failed_at, last_failed_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (channel, external_id) DO UPDATE SET payload = excluded.payload, \
             error = excluded.error, attempts = inbound_dead_letters.attempts + excluded.attempts, last_failed_at = excluded.last_failed_at, \
             state = 'dead', settled_by = NULL, settled_at = NULL RETURNING id",
        )
        .bind(letter.channel.as_str())
        .bind(&letter.external_id)
        .bind(&letter.payload)
        .bind(&letter.error)
        .bind(i64::from(letter.attempts))
        .bind(millis(letter.first_failed_at))
        .bind(millis(letter.last_failed_at))
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?;
        let notice = NoticeWrite {
            to: Recipient::Admins,
            kind: switchboard_models::NotificationKind::InboundFailed,
            conversation: None,
            text: notice.to_string(),
            at: letter.last_failed_at,
            by_email: false,
        };
        insert_notice(&mut tx, &notice).await?;
        tx.commit().await.map_err(backend)?;
        Ok(id)
    }

    async fn dead_letters(&self, settled_too: bool, limit: u32) -> Result<Vec<switchboard_core::ports::DeadLetter>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, channel, external_id, payload, error, attempts, first_failed_at, last_failed_at, state, settled_by, settled_at \
             FROM inbound_dead_letters WHERE ($1 OR state = 'dead') ORDER BY id DESC LIMIT $2",
        )
        .bind(settled_too)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        rows.iter().map(crate::rows::dead_letter_from_row).collect()
    }

    async fn dead_letter(&self, id: i64) -> Result<Option<switchboard_core::ports::DeadLetter>, StoreError> {
        sqlx::query(
            "SELECT id, channel, external_id, payload, error, attempts, first_failed_at, last_failed_at, state, settled_by, settled_at \
             FROM inbound_dead_letters WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.reader)
        .await
        .map_err(backend)?
        .map(|row| crate::rows::dead_letter_from_row(&row))
        .transpose()
    }

    async fn settle_dead_letter(&self, id: i64, state: switchboard_core::ports::DeadLetterState, by: AgentId, at: Timestamp) -> Result<bool, StoreError> {
        let settled = sqlx::query("UPDATE inbound_dead_letters SET state = $2, settled_by = $3, settled_at = $4 WHERE id = $1 AND state = 'dead'")
            .bind(id)
            .bind(state.as_str())
            .bind(by.to_string())
            .bind(millis(at))
            .execute(&self.writer)
            .await
            .map_err(backend)?
            .rows_affected();
        Ok(settled == 1)
    }
            }

            #[async_trait]
            impl switchboard_core::ports::Webhooks for $store {
    async fn webhooks(&self) -> Result<Vec<switchboard_core::ports::Webhook>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, url, events, secret, active, description, consecutive_failures, disabled_reason, created_by, created_at, updated_at \
             FROM webhooks ORDER BY created_at, id",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        rows.iter().map(crate::rows::webhook_from_row).collect()
    }

    async fn claim_webhook_deliveries(&self, now: Timestamp, lease_until: Timestamp, limit: u32) -> Result<Vec<switchboard_core::ports::WebhookDelivery>, StoreError> {
        // The outer condition is checked again on a row another node claimed meanwhile
        // (PostgreSQL re-reads it after the lock), so a delivery is claimed once.
        let claim = sqlx::AssertSqlSafe(
            "UPDATE webhook_deliveries SET next_attempt_at = $1 WHERE state = 'pending' AND next_attempt_at <= $2 AND id IN \
             (SELECT d.id FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id \
              WHERE d.state = 'pending' AND d.next_attempt_at <= $2 AND w.active = TRUE ORDER BY d.id LIMIT $3) \
             RETURNING id, webhook_id, event, event_id, payload, state, attempts, created_at, next_attempt_at, last_attempt_at, last_status, last_response, last_error",
        );
        let rows = self.claim(claim, now, lease_until, limit).await?;
        let mut claimed: Vec<_> = rows.iter().map(crate::rows::webhook_delivery_from_row).collect::<Result<_, _>>()?;
        claimed.sort_by_key(|d: &switchboard_core::ports::WebhookDelivery| d.id);
        Ok(claimed)
    }

    async fn record_webhook_attempt(&self, attempt: &switchboard_core::ports::WebhookAttempt) -> Result<u32, StoreError> {
        use switchboard_core::ports::AttemptOutcome;
        let (state, next) = match attempt.outcome {
            AttemptOutcome::Delivered => ("delivered", attempt.at),
            AttemptOutcome::RetryAt(at) => ("pending", at),
            AttemptOutcome::GaveUp => ("failed", attempt.at),
        };
        let mut tx = self.writer.begin().await.map_err(backend)?;
        sqlx::query(
            "UPDATE webhook_deliveries SET state = $2, attempts = attempts + 1, next_attempt_at = $3, last_attempt_at = $4, \
             last_status = $5, last_response = $6, last_error = $7 WHERE id = $1",
        )
        .bind(attempt.delivery)
        .bind(state)
        .bind(millis(next))
        .bind(millis(attempt.at))
        .bind(attempt.status.map(i64::from))
        .bind(attempt.response.as_deref())
        .bind(attempt.error.as_deref())
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        let failures: Option<(i64,)> = sqlx::query_as(
            "UPDATE webhooks SET consecutive_failures = CASE WHEN $2 THEN consecutive_failures + 1 ELSE 0 END WHERE id = $1 RETURNING consecutive_failures",
        )
        .bind(&attempt.webhook)
        .bind(attempt.error.is_some())
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(failures.map_or(0, |(n,)| u32::try_from(n).unwrap_or(u32::MAX)))
    }

    async fn turn_off_webhook(&self, id: &str, reason: &str, notice: &str, at: Timestamp) -> Result<bool, StoreError> {
        let mut connection = self.writer.acquire().await.map_err(backend)?;
        let mut tx = sqlx::Connection::begin(&mut *connection).await.map_err(backend)?;
        let turned = sqlx::query("UPDATE webhooks SET active = FALSE, disabled_reason = $2, updated_at = $3 WHERE id = $1 AND active = TRUE")
            .bind(id)
            .bind(reason)
            .bind(millis(at))
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected()
            == 1;
        if turned {
            // What waits (and what this pass had leased) goes out as soon as it is on again.
            sqlx::query("UPDATE webhook_deliveries SET next_attempt_at = $2 WHERE webhook_id = $1 AND state = 'pending' AND next_attempt_at > $2")
                .bind(id)
                .bind(millis(at))
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            let notice = NoticeWrite {
                to: Recipient::Admins,
                kind: switchboard_models::NotificationKind::WebhookDisabled,
                conversation: None,
                text: notice.to_string(),
                at,
                by_email: false,
            };
            insert_notice(&mut tx, &notice).await?;
        }
        tx.commit().await.map_err(backend)?;
        self.webhooks_changed_holding(connection);
        Ok(turned)
    }

    async fn webhook_deliveries(&self, webhook: &str, before: Option<i64>, limit: u32) -> Result<Vec<switchboard_core::ports::WebhookDelivery>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, webhook_id, event, event_id, payload, state, attempts, created_at, next_attempt_at, last_attempt_at, last_status, last_response, last_error \
             FROM webhook_deliveries WHERE webhook_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
        )
        .bind(webhook)
        .bind(before.unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        rows.iter().map(crate::rows::webhook_delivery_from_row).collect()
    }

    async fn retry_webhook_delivery(&self, webhook: &str, delivery: i64, now: Timestamp) -> Result<bool, StoreError> {
        let queued = sqlx::query(
            "UPDATE webhook_deliveries SET state = 'pending', attempts = 0, next_attempt_at = $3 WHERE id = $2 AND webhook_id = $1 AND state <> 'pending'",
        )
        .bind(webhook)
        .bind(delivery)
        .bind(millis(now))
        .execute(&self.writer)
        .await
        .map_err(backend)?
        .rows_affected();
        Ok(queued == 1)
    }

    async fn queue_webhook_event(&self, webhook: &str, event: &switchboard_core::webhooks::QueuedEvent, _now: Timestamp) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await.map_err(backend)?;
        queue_webhook_events(&mut tx, std::slice::from_ref(event), Some(webhook)).await?;
        tx.commit().await.map_err(backend)
    }
            }

            #[async_trait]
            impl switchboard_core::ports::Coordination for $store {
                $($coordination)*
    async fn acquire_lease(&self, name: &str, holder: &str, now: Timestamp, until: Timestamp) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $4) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE leases.holder = excluded.holder OR leases.expires_at < $3",
        )
        .bind(name)
        .bind(holder)
        .bind(millis(now))
        .bind(millis(until))
        .execute(&self.writer)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(&self.writer)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn record_channel_state(&self, state: &switchboard_core::ChannelState) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO channel_states (name, node, up, detail, last_ok_at, last_error, last_error_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (name) DO UPDATE SET node = excluded.node, up = excluded.up, detail = excluded.detail, \
             last_ok_at = COALESCE(excluded.last_ok_at, channel_states.last_ok_at), \
             last_error = COALESCE(excluded.last_error, channel_states.last_error), \
             last_error_at = COALESCE(excluded.last_error_at, channel_states.last_error_at), updated_at = excluded.updated_at \
             WHERE channel_states.updated_at <= excluded.updated_at",
        )
        .bind(&state.name)
        .bind(&state.node)
        .bind(state.up)
        .bind(&state.detail)
        .bind(state.last_ok_at.map(millis))
        .bind(&state.last_error)
        .bind(state.last_error_at.map(millis))
        .bind(millis(state.updated_at))
        .execute(&self.writer)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn channel_states(&self) -> Result<Vec<switchboard_core::ChannelState>, StoreError> {
        let rows = sqlx::query("SELECT * FROM channel_states ORDER BY name").fetch_all(&self.reader).await.map_err(backend)?;
        rows.iter().map(crate::rows::channel_state_from_row).collect()
    }

    async fn setting_or_insert(&self, key: &str, value: &str) -> Result<String, StoreError> {
        sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
            .bind(key)
            .bind(value)
            .execute(&self.writer)
            .await
            .map_err(backend)?;
        sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_one(&self.writer)
            .await
            .map_err(backend)
    }
            }

        }
    };
}
pub(crate) use portable_store;
