//! Reports: conversation volume, the bot's containment and escalations, waits for a person,
//! satisfaction, intents and busiest hours, over a period in a time zone, filtered by channel,
//! category and agent. One computation (`switchboard_core::reports`) serves the page (SVG
//! charts and tables), `GET /api/reports` (JSON) and every section as CSV. Agents see the
//! report of their own conversations; admins choose.

use super::auth::{ApiCaller, Signed, SignedAdmin};
use super::views::{channel_label, title_case, wait};
use super::{error_page, page, parse_filter};
use crate::AppState;
use crate::charts::{Series, bars, stacked_bars};
use crate::error::ApiError;
use axum::Json;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{NaiveDate, TimeZone};
use chrono_tz::Tz;
use serde::Deserialize;
use serde_json::{Value, json};
use switchboard_core::reports::{Durations, Report, ReportQuery};
use switchboard_models::{Agent, AgentId, Channel, Role, Timestamp};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/panel/reports", get(reports_page))
        .route("/panel/reports/{file}", get(panel_csv))
        .route("/api/reports", get(reports_api))
        .route("/api/reports/{file}", get(api_csv))
        .route("/panel/admin/hours", get(hours_page))
        .route("/panel/admin/hours.csv", get(hours_csv))
        .route("/api/hours", get(hours_api))
}

/// The longest custom period, in days.
const MAX_DAYS: i64 = 366;

/// The reports' query string; anything else is refused.
#[derive(Deserialize, Default, Clone)]
#[serde(default, deny_unknown_fields)]
struct ReportParams {
    /// today, 7d (default), 30d or custom (with from and to).
    range: String,
    /// First and last day of a custom period, YYYY-MM-DD, in `zone`.
    from: String,
    to: String,
    /// An IANA time zone; the business hours' zone (else UTC) when left out.
    zone: String,
    channel: String,
    category: String,
    /// An agent's id: conversations with them now. Agents always see their own.
    agent: String,
    /// The page only: the version of the intents just taught from the list.
    taught: String,
}

fn parse_params(query: Result<Query<ReportParams>, QueryRejection>) -> Result<ReportParams, ApiError> {
    query.map(|Query(q)| q).map_err(|rejection| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!("{}. Reports take range, from, to, zone, channel, category and agent.", rejection.body_text().trim_end_matches('.')),
        )
    })
}

fn invalid(why: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_report", why)
}

/// Midnight starting `day` in `zone` (or the first instant of that day, where midnight is skipped).
fn start_of(day: NaiveDate, zone: Tz) -> Timestamp {
    let midnight = day.and_hms_opt(0, 0, 0).expect("midnight");
    (0..3)
        .find_map(|hours| zone.from_local_datetime(&(midnight + chrono::Duration::hours(hours))).earliest())
        .map(|at| at.with_timezone(&chrono::Utc))
        .unwrap_or_else(|| midnight.and_utc())
}

fn report_query(state: &AppState, me: &Agent, params: &ReportParams) -> Result<ReportQuery, ApiError> {
    let zone: Tz = match params.zone.trim() {
        "" => state.engine.business_hours(Channel::WebChat).map(|hours| hours.zone()).unwrap_or(chrono_tz::UTC),
        name => name.parse().map_err(|_| invalid(format!("time zone `{name}` is unknown; use an IANA name such as Europe/Berlin or UTC")))?,
    };
    let today = state.engine.now().with_timezone(&zone).date_naive();
    let day = |field: &str, text: &str| {
        NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").map_err(|_| invalid(format!("{field} `{text}` must be a date as YYYY-MM-DD")))
    };
    let (first, last) = match params.range.as_str() {
        "today" => (today, today),
        "" | "7d" => (today - chrono::Duration::days(6), today),
        "30d" => (today - chrono::Duration::days(29), today),
        "custom" => {
            let (first, last) = (day("from", &params.from)?, day("to", &params.to)?);
            if last < first {
                return Err(invalid(format!("to ({last}) is before from ({first}); the period runs from its first to its last day")));
            }
            if (last - first).num_days() >= MAX_DAYS {
                return Err(invalid(format!("a period is at most {MAX_DAYS} days; {first} to {last} is longer")));
            }
            (first, last)
        }
        other => return Err(invalid(format!("range `{other}` must be today, 7d, 30d or custom"))),
    };
    let agent = match (me.role, params.agent.trim()) {
        (Role::Agent, _) => Some(me.id),
        (Role::Admin, "") => None,
        (Role::Admin, id) => Some(AgentId::parse(id).map_err(|_| invalid(format!("agent `{id}` is not an agent id")))?),
    };
    Ok(ReportQuery {
        from: start_of(first, zone),
        to: start_of(last.succ_opt().expect("a next day"), zone),
        zone,
        channel: parse_filter(&params.channel)?,
        category: parse_filter(&params.category)?,
        agent,
    })
}

fn seconds(ms: Option<i64>) -> Option<i64> {
    ms.map(|ms| ms / 1000)
}

fn shown(ms: Option<i64>) -> String {
    ms.map_or_else(|| "–".to_string(), |ms| wait(chrono::Duration::milliseconds(ms)))
}

fn percent(share: Option<f64>) -> String {
    share.map_or_else(|| "–".to_string(), |s| format!("{:.0} %", s * 100.0))
}

fn name_of(agents: &[Agent], id: AgentId) -> String {
    agents.iter().find(|a| a.id == id).map_or_else(|| id.to_string(), |a| a.name.clone())
}

fn durations(d: &Durations) -> Value {
    json!({"count": d.count, "median": shown(d.median_ms), "p90": shown(d.p90_ms), "within_sla": d.within_sla.map(|share| percent(Some(share)))})
}

const CHANNEL_COLOURS: [(Channel, &str); 4] =
    [(Channel::WebChat, "#0969da"), (Channel::Telegram, "#1a7f37"), (Channel::Discord, "#8250df"), (Channel::Email, "#9a6700")];
const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// The tables of a report, as (CSV file name, header, rows): the page, the JSON and the CSV
/// files show the same numbers.
fn sections(report: &Report, agents: &[Agent]) -> Vec<(&'static str, Vec<&'static str>, Vec<Vec<String>>)> {
    let volume = report
        .days
        .iter()
        .map(|d| {
            let mut row = vec![d.day.to_string(), d.total.to_string()];
            row.extend(CHANNEL_COLOURS.iter().map(|(c, _)| d.by_channel.get(c).copied().unwrap_or(0).to_string()));
            row
        })
        .collect();
    let counts = |counts: &[switchboard_core::reports::Count]| counts.iter().map(|c| vec![c.name.clone(), c.count.to_string()]).collect::<Vec<_>>();
    let mut escalations = Vec::new();
    for (dimension, counts) in [("reason", &report.bot.by_reason), ("category", &report.bot.by_category), ("priority", &report.bot.by_priority)] {
        escalations.extend(counts.iter().map(|c| vec![dimension.to_string(), c.name.clone(), c.count.to_string()]));
    }
    let opt = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
    let agent_rows = report
        .agents
        .iter()
        .map(|a| {
            vec![
                name_of(agents, a.agent_id),
                a.assigned.to_string(),
                opt(seconds(a.first_reply.median_ms)),
                opt(seconds(a.first_reply.p90_ms)),
                a.resolved.to_string(),
                opt(seconds(a.resolution.median_ms)),
                opt(seconds(a.resolution.p90_ms)),
                a.ratings.to_string(),
                a.average_rating.map(|r| format!("{r:.2}")).unwrap_or_default(),
            ]
        })
        .collect();
    let satisfaction = report.satisfaction.distribution.iter().enumerate().map(|(i, n)| vec![(i + 1).to_string(), n.to_string()]).collect();
    let mut hours = Vec::new();
    for (weekday, row) in report.busiest_hours.iter().enumerate() {
        hours.extend(row.iter().enumerate().map(|(hour, n)| vec![WEEKDAYS[weekday].to_string(), hour.to_string(), n.to_string()]));
    }
    let teaching = report
        .needs_teaching
        .iter()
        .flat_map(|group| {
            group.examples.iter().map(|e| {
                vec![group.leaning.clone(), e.text.clone(), e.confidence.map(|c| format!("{c:.2}")).unwrap_or_default(), e.at.to_rfc3339(), e.conversation_id.to_string()]
            })
        })
        .collect();
    vec![
        ("volume", vec!["day", "conversations", "webchat", "telegram", "discord", "email"], volume),
        ("status", vec!["status", "conversations"], counts(&report.by_status)),
        ("escalations", vec!["by", "value", "escalations"], escalations),
        (
            "agents",
            vec![
                "agent",
                "assigned",
                "first_reply_median_seconds",
                "first_reply_p90_seconds",
                "resolved",
                "resolution_median_seconds",
                "resolution_p90_seconds",
                "ratings",
                "average_rating",
            ],
            agent_rows,
        ),
        ("satisfaction", vec!["score", "ratings"], satisfaction),
        ("intents", vec!["intent", "customer_messages"], counts(&report.intents)),
        ("answers", vec!["intent", "answers_sent"], counts(&report.answers_sent)),
        ("hours", vec!["weekday", "hour", "conversations_started"], hours),
        ("teaching", vec!["leaning_to", "message", "confidence", "at", "conversation_id"], teaching),
    ]
}

/// One CSV field: quoted when it must be, and never read as a formula by a spreadsheet.
fn csv_field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@']) && text.parse::<f64>().is_err() { format!("'{text}") } else { text.to_string() };
    if text.contains([',', '"', '\n', '\r']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text }
}

pub(super) fn csv(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = header.join(",");
    out.push_str("\r\n");
    for row in rows {
        out.push_str(&row.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(","));
        out.push_str("\r\n");
    }
    out
}

async fn csv_response(state: &AppState, me: &Agent, file: &str, params: ReportParams) -> Result<Response, ApiError> {
    let query = report_query(state, me, &params)?;
    let report = state.engine.report(&query).await?;
    let agents = state.engine.accounts().list_agents().await?;
    let all = sections(&report, &agents);
    let names: Vec<&str> = all.iter().map(|(name, _, _)| *name).collect();
    let not_found = || {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("`{file}` is no report file; the files are {}", names.iter().map(|n| format!("{n}.csv")).collect::<Vec<_>>().join(", ")))
    };
    let name = file.strip_suffix(".csv").ok_or_else(not_found)?;
    let (_, columns, rows) = all.iter().find(|(n, _, _)| *n == name).ok_or_else(not_found)?;
    let from = query.from.with_timezone(&query.zone).date_naive();
    let to = (query.to - chrono::Duration::milliseconds(1)).with_timezone(&query.zone).date_naive();
    let disposition = format!("attachment; filename=\"switchboard-{name}-{from}-{to}.csv\"");
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()), (header::CONTENT_DISPOSITION, disposition)], csv(columns, rows)).into_response())
}

async fn panel_csv(
    State(state): State<AppState>,
    signed: Signed,
    Path(file): Path<String>,
    query: Result<Query<ReportParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    csv_response(&state, &signed.agent, &file, parse_params(query)?).await
}

async fn api_csv(
    State(state): State<AppState>,
    ApiCaller(agent): ApiCaller,
    Path(file): Path<String>,
    query: Result<Query<ReportParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    csv_response(&state, &agent, &file, parse_params(query)?).await
}

/// `GET /api/reports`: the whole report as JSON, with the period it covers.
async fn reports_api(
    State(state): State<AppState>,
    ApiCaller(agent): ApiCaller,
    query: Result<Query<ReportParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let query = report_query(&state, &agent, &parse_params(query)?)?;
    let report = state.engine.report(&query).await?;
    let agents = state.engine.accounts().list_agents().await?;
    let mut body = serde_json::to_value(&report).map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    if let Some(rows) = body.get_mut("agents").and_then(Value::as_array_mut) {
        for (row, numbers) in rows.iter_mut().zip(&report.agents) {
            row["name"] = json!(name_of(&agents, numbers.agent_id));
        }
    }
    if let Some(agent) = query.agent {
        body["online_today_minutes"] = json!(online_today(&state, agent, query.zone).await?);
    }
    body["period"] = json!({
        "from": query.from.to_rfc3339(),
        "to": query.to.to_rfc3339(),
        "zone": query.zone.name(),
        "channel": query.channel.map(|c| c.as_str()),
        "category": query.category.map(|c| c.as_str()),
        "agent": query.agent.map(|a| a.to_string()),
    });
    Ok(Json(body))
}

/// Minutes `agent` has been online today, in `zone`.
async fn online_today(state: &AppState, agent: AgentId, zone: Tz) -> Result<i64, ApiError> {
    let now = state.engine.now();
    let today = start_of(now.with_timezone(&zone).date_naive(), zone);
    let accounts = state.engine.accounts();
    // A week back: the state the day started in is the last change before it.
    let changes = accounts.presence_changes(today - chrono::Duration::days(7)).await?;
    let presence = accounts.agent(agent).await?.map_or(switchboard_models::Presence::Offline, |a| a.presence);
    Ok(crate::working_hours::online_minutes(&changes, agent, presence, today, now))
}

async fn reports_page(State(state): State<AppState>, signed: Signed, query: Result<Query<ReportParams>, QueryRejection>) -> Response {
    match render_page(&state, &signed, query).await {
        Ok(page) => page,
        Err(error) => error_page(&state, error, "/panel/reports"),
    }
}

async fn render_page(state: &AppState, signed: &Signed, query: Result<Query<ReportParams>, QueryRejection>) -> Result<Response, ApiError> {
    let params = parse_params(query)?;
    let query = report_query(state, &signed.agent, &params)?;
    let report = state.engine.report(&query).await?;
    let agents = state.engine.accounts().list_agents().await?;
    let online_today = match query.agent {
        Some(agent) => Some(online_today(state, agent, query.zone).await?),
        None => None,
    };
    // Admins teach the listed messages to the bot, when it runs the model.
    let intent_names = match signed.agent.role {
        Role::Admin => super::bot::intent_names(state).await,
        Role::Agent => Vec::new(),
    };
    let labels: Vec<String> = report.days.iter().map(|d| d.day.format("%-d %b").to_string()).collect();
    let series: Vec<Series<'_>> = CHANNEL_COLOURS.iter().map(|(c, colour)| Series { name: channel_label(*c), colour }).collect();
    let values: Vec<Vec<i64>> =
        CHANNEL_COLOURS.iter().map(|(c, _)| report.days.iter().map(|d| d.by_channel.get(c).copied().unwrap_or(0)).collect()).collect();
    let volume_chart = stacked_bars("Conversations per day", &labels, &series, &values);
    let pairs = |counts: &[switchboard_core::reports::Count]| counts.iter().map(|c| (title_case(&c.name.replace('_', " ")), c.count)).collect::<Vec<_>>();
    let reason_chart = (!report.bot.by_reason.is_empty()).then(|| bars("Escalations by reason", &pairs(&report.bot.by_reason), "#cf222e"));
    let status_chart = (!report.by_status.is_empty()).then(|| bars("Conversations by status", &pairs(&report.by_status), "#0969da"));
    let peak = report.busiest_hours.iter().flatten().copied().max().unwrap_or(0);
    let heat: Vec<Value> = report
        .busiest_hours
        .iter()
        .enumerate()
        .map(|(day, hours)| {
            let cells: Vec<Value> = hours
                .iter()
                .enumerate()
                .map(|(hour, n)| json!({"n": n, "hour": hour, "level": if *n == 0 || peak == 0 { 0 } else { 1 + (n * 3 / peak).min(3) }}))
                .collect();
            json!({"day": WEEKDAYS[day], "cells": cells})
        })
        .collect();
    let tables = sections(&report, &agents);
    let table = |name: &str| tables.iter().find(|(n, _, _)| *n == name).map(|(_, _, rows)| rows.clone()).unwrap_or_default();
    let from_day = query.from.with_timezone(&query.zone).date_naive();
    let to_day = (query.to - chrono::Duration::milliseconds(1)).with_timezone(&query.zone).date_naive();
    let mut csv_query = url::form_urlencoded::Serializer::new(String::new());
    csv_query.append_pair("range", "custom").append_pair("from", &from_day.to_string()).append_pair("to", &to_day.to_string()).append_pair("zone", query.zone.name());
    for (key, value) in [("channel", &params.channel), ("category", &params.category), ("agent", &params.agent)] {
        if !value.is_empty() {
            csv_query.append_pair(key, value);
        }
    }
    let is_admin = signed.agent.role == Role::Admin;
    let csv_query = csv_query.finish();
    let back = format!("/panel/reports?{csv_query}");
    let option = |value: &str, label: &str, selected: &str| json!({"value": value, "label": label, "selected": value == selected});
    let data = json!({
        "is_admin": is_admin,
        "range": params.range.clone(),
        "ranges": [option("today", "Today", &params.range), option("7d", "Last 7 days", if params.range.is_empty() { "7d" } else { &params.range }), option("30d", "Last 30 days", &params.range), option("custom", "Custom", &params.range)],
        "from": from_day.to_string(),
        "to": to_day.to_string(),
        "zone": query.zone.name(),
        "channels": Channel::ALL.iter().map(|c| option(c.as_str(), channel_label(*c), &params.channel)).collect::<Vec<_>>(),
        "categories": switchboard_models::Category::ALL.iter().map(|c| option(c.as_str(), &title_case(&c.as_str().replace('_', " ")), &params.category)).collect::<Vec<_>>(),
        "agents": agents.iter().map(|a| option(&a.id.to_string(), &a.name, &params.agent)).collect::<Vec<_>>(),
        "period": format!("{} to {} ({})", from_day.format("%-d %b %Y"), to_day.format("%-d %b %Y"), query.zone.name()),
        "csv_query": csv_query,
        "online_today": online_today.map(|m| format!("{} h {:02} min", m / 60, m % 60)),
        "summary": {
            "conversations": report.conversations,
            "contained": report.bot.contained,
            "escalation_rate": percent(report.bot.escalation_rate),
            "escalations": report.bot.escalations,
            "first_reply": durations(&report.first_reply),
            "resolution": durations(&report.resolution),
            "satisfaction": report.satisfaction.average.map_or_else(|| "–".to_string(), |a| format!("{a:.1} / 5")),
            "ratings": report.satisfaction.ratings,
            "customer_messages": report.customer_messages,
            "messages_per_conversation": report.messages_per_conversation.map_or_else(|| "–".to_string(), |m| format!("{m:.1}")),
        },
        "volume_chart": volume_chart,
        "volume": table("volume"),
        "reason_chart": reason_chart,
        "status_chart": status_chart,
        "status": table("status"),
        "escalations": table("escalations"),
        "agent_rows": report.agents.iter().map(|a| json!({
            "name": name_of(&agents, a.agent_id),
            "assigned": a.assigned,
            "first_reply": durations(&a.first_reply),
            "resolved": a.resolved,
            "resolution": durations(&a.resolution),
            "ratings": a.ratings,
            "average_rating": a.average_rating.map(|r| format!("{r:.1}")),
        })).collect::<Vec<_>>(),
        "satisfaction": table("satisfaction"),
        "intents": report.intents.iter().take(15).map(|c| json!({"name": c.name, "count": c.count})).collect::<Vec<_>>(),
        "answers_sent": report.answers_sent.iter().take(15).map(|c| json!({"name": c.name, "count": c.count})).collect::<Vec<_>>(),
        "heat": heat,
        "can_teach": !intent_names.is_empty(),
        "teach_back": back,
        "flash": params.taught.parse::<i64>().ok().map(|n| json!({"kind": "ok", "text": format!("Taught. Version {n} of the intents is training; the bot answers with it in a few seconds.")})),
        "teaching": report.needs_teaching.iter().enumerate().map(|(group, g)| json!({
            "group": group,
            "leaning": title_case(&g.leaning.replace('_', " ")),
            "count": g.count,
            "intent_options": intent_names.iter().map(|name| json!({"name": name, "selected": *name == g.leaning})).collect::<Vec<_>>(),
            "examples": g.examples.iter().map(|e| json!({
                "seq": e.seq,
                "text": e.text,
                "confidence": e.confidence.map(|c| format!("{:.0} %", c * 100.0)),
                "href": format!("/panel/conversations/{}", e.conversation_id),
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "hours": (0..24).collect::<Vec<_>>(),
    });
    let title = if is_admin { "Reports" } else { "My numbers" };
    Ok(state.views.render("reports", &page(signed, "reports", title, data))?.into_response())
}

/// The working-hours page's period: days (UTC) from `from` to `to`, the last 14 by default.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct HoursParams {
    from: String,
    to: String,
}

/// Minutes online per agent and day over the period, and each agent's total, by name.
async fn working_hours(state: &AppState, query: Result<Query<HoursParams>, QueryRejection>) -> Result<(NaiveDate, NaiveDate, Vec<(String, NaiveDate, i64)>), ApiError> {
    let Query(params) = query.map_err(|rejection| {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", format!("{}. Working hours take from and to (YYYY-MM-DD).", rejection.body_text().trim_end_matches('.')))
    })?;
    let now = state.engine.now();
    let today = now.date_naive();
    let day = |field: &str, text: &str, default: NaiveDate| match text.trim() {
        "" => Ok(default),
        text => NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| invalid(format!("{field} `{text}` must be a date as YYYY-MM-DD"))),
    };
    let first = day("from", &params.from, today - chrono::Duration::days(13))?;
    let last = day("to", &params.to, today)?;
    if last < first || (last - first).num_days() >= MAX_DAYS {
        return Err(invalid(format!("from {first} to {last} is no period of 1 to {MAX_DAYS} days")));
    }
    // A day starts with whoever was online since the day before.
    let since = start_of(first, chrono_tz::UTC) - chrono::Duration::days(1);
    let until = start_of(last.succ_opt().expect("a next day"), chrono_tz::UTC).min(now);
    let accounts = state.engine.accounts();
    let changes: Vec<_> = accounts.presence_changes(since).await?.into_iter().filter(|(_, _, at)| *at < until).collect();
    let agents = accounts.list_agents().await?;
    let rows = crate::working_hours::online_hours(&changes, &agents, until).into_iter().filter(|(_, day, _)| (first..=last).contains(day)).collect();
    Ok((first, last, rows))
}

fn hours_and_minutes(minutes: i64) -> String {
    format!("{}h {:02}m", minutes / 60, minutes % 60)
}

async fn hours_page(State(state): State<AppState>, SignedAdmin(signed): SignedAdmin, query: Result<Query<HoursParams>, QueryRejection>) -> Response {
    let page_of = async {
        let (first, last, rows) = working_hours(&state, query).await?;
        let mut totals: std::collections::BTreeMap<&str, i64> = std::collections::BTreeMap::new();
        for (agent, _, minutes) in &rows {
            *totals.entry(agent.as_str()).or_default() += minutes;
        }
        let data = json!({
            "from": first.to_string(),
            "to": last.to_string(),
            "rows": rows.iter().map(|(agent, day, minutes)| json!({"agent": agent, "day": day.to_string(), "online": hours_and_minutes(*minutes)})).collect::<Vec<_>>(),
            "totals": totals.iter().map(|(agent, minutes)| json!({"agent": agent, "online": hours_and_minutes(*minutes)})).collect::<Vec<_>>(),
        });
        state.views.render("hours", &page(&signed, "hours", "Working hours", data))
    };
    match page_of.await {
        Ok(html) => html.into_response(),
        Err(error) => error_page(&state, error, "/panel/admin/hours"),
    }
}

async fn hours_csv(State(state): State<AppState>, SignedAdmin(_): SignedAdmin, query: Result<Query<HoursParams>, QueryRejection>) -> Result<Response, ApiError> {
    let (first, last, rows) = working_hours(&state, query).await?;
    let rows: Vec<Vec<String>> = rows.into_iter().map(|(agent, day, minutes)| vec![agent, day.to_string(), minutes.to_string()]).collect();
    let disposition = format!("attachment; filename=\"switchboard-hours-{first}-{last}.csv\"");
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()), (header::CONTENT_DISPOSITION, disposition)], csv(&["agent", "day", "minutes_online"], &rows)).into_response())
}

/// Working hours as JSON: minutes online per agent and day (UTC), and each agent's total.
async fn hours_api(State(state): State<AppState>, ApiCaller(agent): ApiCaller, query: Result<Query<HoursParams>, QueryRejection>) -> Result<Json<Value>, ApiError> {
    if agent.role != Role::Admin {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "Only admins read working hours."));
    }
    let (first, last, rows) = working_hours(&state, query).await?;
    let mut totals: std::collections::BTreeMap<&str, i64> = std::collections::BTreeMap::new();
    for (name, _, minutes) in &rows {
        *totals.entry(name.as_str()).or_default() += minutes;
    }
    Ok(Json(json!({
        "from": first.to_string(),
        "to": last.to_string(),
        "days": rows.iter().map(|(name, day, minutes)| json!({"agent": name, "day": day.to_string(), "minutes": minutes})).collect::<Vec<_>>(),
        "totals": totals.iter().map(|(name, minutes)| json!({"agent": name, "minutes": minutes})).collect::<Vec<_>>(),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_it_must_and_never_starts_a_formula() {
        assert_eq!(csv(&["a", "b"], &[vec!["x,y".into(), "say \"hi\"".into()]]), "a,b\r\n\"x,y\",\"say \"\"hi\"\"\"\r\n");
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("-3"), "-3", "a negative number stays a number");
        assert_eq!(csv_field("@ann"), "'@ann");
    }

    #[test]
    fn a_day_starts_at_its_local_midnight() {
        let berlin = chrono_tz::Europe::Berlin;
        let day = NaiveDate::from_ymd_opt(2026, 3, 29).unwrap();
        assert_eq!(start_of(day, berlin).to_rfc3339(), "2026-03-28T23:00:00+00:00");
        assert_eq!(start_of(day.succ_opt().unwrap(), berlin).to_rfc3339(), "2026-03-29T22:00:00+00:00", "the clocks moved on at 02:00");
    }
}
