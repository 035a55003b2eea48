//! Business hours: a weekly schedule in a time zone, with holidays. Pure: every question takes
//! the instant it is asked about, so tests move a clock instead of waiting for Monday.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

/// When the team works. Outside these hours a handoff says when the team is back.
#[derive(Debug, Clone, PartialEq)]
pub struct BusinessHours {
    zone: Tz,
    /// Per weekday, Monday first: open intervals in local time, sorted, not overlapping.
    week: [Vec<(NaiveTime, NaiveTime)>; 7],
    /// Whole local days closed whatever the weekday says.
    holidays: Vec<NaiveDate>,
}

/// What was wrong with a schedule, and where: fit for a configuration error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key} = {value:?}: {expected}")]
pub struct HoursError {
    pub key: String,
    pub value: String,
    pub expected: String,
}

const DAYS: [&str; 7] = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];

/// How far ahead `next_open` looks: a year and a week covers any list of holidays.
const LOOK_AHEAD_DAYS: i64 = 372;

impl BusinessHours {
    /// `zone` is an IANA name (`Europe/Berlin`); `days` holds each weekday's hours by its
    /// lower-case English name (`"09:00-17:00"`, `"09:00-12:30, 13:30-18:00"`, `"closed"`; a
    /// missing day is closed); `holidays` are local dates (`2026-12-25`). `prefix` names the
    /// configuration section in errors.
    pub fn parse(prefix: &str, zone: &str, days: &[(String, String)], holidays: &[String]) -> Result<Self, HoursError> {
        let error = |key: &str, value: &str, expected: &str| HoursError {
            key: format!("{prefix}.{key}"),
            value: value.to_string(),
            expected: expected.to_string(),
        };
        let zone: Tz = zone
            .parse()
            .map_err(|_| error("time_zone", zone, "an IANA time zone name such as Europe/Berlin, America/New_York or UTC"))?;
        let mut week: [Vec<(NaiveTime, NaiveTime)>; 7] = Default::default();
        for (day, text) in days {
            let index = DAYS
                .iter()
                .position(|d| d == day)
                .ok_or_else(|| error(day, text, "a weekday: monday, tuesday, wednesday, thursday, friday, saturday or sunday"))?;
            let expected = "hours like \"09:00-17:00\", several separated by commas (\"09:00-12:00, 13:00-17:00\"), or \"closed\"";
            week[index] = parse_day(text).ok_or_else(|| error(day, text, expected))?;
        }
        let holidays = holidays
            .iter()
            .map(|h| NaiveDate::parse_from_str(h.trim(), "%Y-%m-%d").map_err(|_| error("holidays", h, "dates like \"2026-12-25\"")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { zone, week, holidays })
    }

    pub fn zone(&self) -> Tz {
        self.zone
    }

    /// Whether the team works at `at`.
    pub fn is_open(&self, at: DateTime<Utc>) -> bool {
        let local = at.with_timezone(&self.zone).naive_local();
        self.intervals(local.date()).iter().any(|(from, to)| (*from..*to).contains(&local.time()))
    }

    /// The next instant the team starts work after `at` (`at` itself when it is open then);
    /// `None` when the schedule never opens.
    pub fn next_open(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.is_open(at) {
            return Some(at);
        }
        let local = at.with_timezone(&self.zone).naive_local();
        (0..LOOK_AHEAD_DAYS).find_map(|offset| {
            let day = local.date() + Duration::days(offset);
            self.intervals(day)
                .iter()
                .map(|(from, _)| NaiveDateTime::new(day, *from))
                .filter(|start| *start > local)
                // In an hour repeated by a clock change a local time is two instants: the first
                // one after `at` counts.
                .find_map(|start| {
                    let both = self.zone.from_local_datetime(&start);
                    let instants = [both.earliest(), both.latest()].into_iter().flatten().map(|i| i.with_timezone(&Utc));
                    instants.chain(self.instant(start)).find(|instant| *instant > at)
                })
        })
    }

    /// When the team is back, as a customer reads it: "Monday 09:00 CET" within a week,
    /// "Monday 4 January 09:00 CET" beyond; "today 14:00 CET" later the same day.
    pub fn describe_next_open(&self, at: DateTime<Utc>) -> Option<String> {
        let next = self.next_open(at)?.with_timezone(&self.zone);
        let today = at.with_timezone(&self.zone).date_naive();
        let days_ahead = (next.date_naive() - today).num_days();
        let when = match days_ahead {
            0 => next.format("today %H:%M %Z"),
            1 => next.format("tomorrow %H:%M %Z"),
            2..=6 => next.format("%A %H:%M %Z"),
            _ => next.format("%A %-d %B %H:%M %Z"),
        };
        Some(when.to_string())
    }

    /// The weekly schedule in a line: "Monday–Friday 09:00–17:00, Saturday 10:00–14:00 (Europe/Berlin)".
    pub fn summary(&self) -> String {
        let name = |i: usize| {
            let day = DAYS[i];
            format!("{}{}", day[..1].to_uppercase(), &day[1..])
        };
        let hours = |intervals: &[(NaiveTime, NaiveTime)]| {
            intervals.iter().map(|(f, t)| format!("{}–{}", f.format("%H:%M"), t.format("%H:%M"))).collect::<Vec<_>>().join(", ")
        };
        let mut parts = Vec::new();
        let mut i = 0;
        while i < 7 {
            let mut j = i;
            while j + 1 < 7 && self.week[j + 1] == self.week[i] {
                j += 1;
            }
            if !self.week[i].is_empty() {
                let days = if i == j { name(i) } else { format!("{}–{}", name(i), name(j)) };
                parts.push(format!("{days} {}", hours(&self.week[i])));
            }
            i = j + 1;
        }
        if parts.is_empty() {
            return format!("closed ({})", self.zone.name());
        }
        format!("{} ({})", parts.join(", "), self.zone.name())
    }

    /// The instant `working` of open time after `start` has passed: an SLA of 4 hours set on
    /// Friday at 16:00 in a 09:00–17:00 week is due Monday at 12:00. `None` when the schedule
    /// never opens.
    pub fn after_working(&self, start: DateTime<Utc>, working: Duration) -> Option<DateTime<Utc>> {
        let mut at = start;
        let mut left = working;
        // Each pass consumes one open interval; a year of them bounds any target.
        for _ in 0..(LOOK_AHEAD_DAYS * 4) {
            at = self.next_open(at)?;
            let Some(closes) = self.closes_after(at) else {
                // An interval ending in an hour a clock change repeats: step past it.
                at += Duration::minutes(30);
                continue;
            };
            let open_for = closes - at;
            if left <= open_for {
                return Some(at + left);
            }
            left -= open_for;
            at = closes;
        }
        None
    }

    /// How much open time lies between `start` and `end`.
    pub fn working_between(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> Duration {
        let mut at = start;
        let mut total = Duration::zero();
        for _ in 0..(LOOK_AHEAD_DAYS * 4) {
            let Some(open) = self.next_open(at).filter(|open| *open < end) else { break };
            let Some(closes) = self.closes_after(open) else {
                at = open + Duration::minutes(30);
                continue;
            };
            total += closes.min(end) - open;
            if closes >= end {
                break;
            }
            at = closes;
        }
        total
    }

    /// When the open interval around `at` (open then) ends.
    fn closes_after(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = at.with_timezone(&self.zone).naive_local();
        let (_, to) = self.intervals(local.date()).iter().find(|(from, to)| (*from..*to).contains(&local.time()))?;
        self.instant(NaiveDateTime::new(local.date(), *to)).filter(|end| *end > at)
    }

    fn intervals(&self, day: NaiveDate) -> &[(NaiveTime, NaiveTime)] {
        if self.holidays.contains(&day) {
            return &[];
        }
        &self.week[day.weekday().num_days_from_monday() as usize]
    }

    /// A local time as an instant; a time skipped by a clock change counts from the change.
    fn instant(&self, local: NaiveDateTime) -> Option<DateTime<Utc>> {
        let mut probe = local;
        for _ in 0..4 {
            if let Some(at) = self.zone.from_local_datetime(&probe).earliest() {
                return Some(at.with_timezone(&Utc));
            }
            probe += Duration::minutes(30);
        }
        None
    }
}

/// "09:00-17:00, 18:00-20:00" or "closed"; `None` when malformed, reversed or overlapping.
fn parse_day(text: &str) -> Option<Vec<(NaiveTime, NaiveTime)>> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("closed") || text.is_empty() {
        return Some(Vec::new());
    }
    let time = |t: &str| NaiveTime::parse_from_str(t.trim(), "%H:%M").ok().or_else(|| (t.trim() == "24:00").then(|| NaiveTime::from_hms_milli_opt(23, 59, 59, 999)).flatten());
    let mut intervals = text
        .split(',')
        .map(|part| {
            let (from, to) = part.split_once('-')?;
            let (from, to) = (time(from)?, time(to)?);
            (from < to).then_some((from, to))
        })
        .collect::<Option<Vec<_>>>()?;
    intervals.sort();
    intervals.windows(2).all(|w| w[0].1 <= w[1].0).then_some(intervals)
}


#[cfg(test)]
mod tests {
    use super::*;

    fn office() -> BusinessHours {
        let days: Vec<(String, String)> = DAYS[..5].iter().map(|d| (d.to_string(), "09:00-17:00".to_string())).collect();
        BusinessHours::parse("business_hours", "Europe/Berlin", &days, &["2026-12-25".into()]).unwrap()
    }

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn working_time_counts_only_open_hours() {
        let hours = office();
        // Friday 4 December 2026 16:00 local (15:00 UTC): one hour left that day.
        let friday = utc("2026-12-04T15:00:00Z");
        assert_eq!(hours.after_working(friday, Duration::minutes(30)), Some(utc("2026-12-04T15:30:00Z")));
        assert_eq!(hours.after_working(friday, Duration::hours(4)), Some(utc("2026-12-07T11:00:00Z")), "Monday 12:00 local");
        // Saturday: the clock starts Monday 09:00.
        assert_eq!(hours.after_working(utc("2026-12-05T10:00:00Z"), Duration::hours(1)), Some(utc("2026-12-07T09:00:00Z")));
        // Christmas Day is a holiday: Thursday 24th 16:00 local + 2 h is Monday 28th 10:00.
        assert_eq!(hours.after_working(utc("2026-12-24T15:00:00Z"), Duration::hours(2)), Some(utc("2026-12-28T09:00:00Z")));
        let never = BusinessHours::parse("b", "UTC", &[], &[]).unwrap();
        assert_eq!(never.after_working(friday, Duration::hours(1)), None);
    }

    #[test]
    fn open_within_the_local_hours_of_a_working_day() {
        let hours = office();
        // Thursday 3 December 2026, Berlin is UTC+1 in winter.
        assert!(hours.is_open(utc("2026-12-03T08:00:00Z")), "09:00 local");
        assert!(!hours.is_open(utc("2026-12-03T07:59:00Z")), "08:59 local");
        assert!(!hours.is_open(utc("2026-12-03T16:00:00Z")), "17:00 local is closing time");
        assert!(!hours.is_open(utc("2026-12-05T10:00:00Z")), "Saturday");
        assert!(!hours.is_open(utc("2026-12-25T10:00:00Z")), "a holiday on a Friday");
    }

    #[test]
    fn the_next_opening_skips_weekends_and_holidays_and_is_worded_for_customers() {
        let hours = office();
        let friday_evening = utc("2026-12-04T18:00:00Z");
        assert_eq!(hours.next_open(friday_evening), Some(utc("2026-12-07T08:00:00Z")));
        assert_eq!(hours.describe_next_open(friday_evening).as_deref(), Some("Monday 09:00 CET"));
        let early = utc("2026-12-03T06:00:00Z");
        assert_eq!(hours.describe_next_open(early).as_deref(), Some("today 09:00 CET"));
        assert_eq!(hours.describe_next_open(utc("2026-12-03T20:00:00Z")).as_deref(), Some("tomorrow 09:00 CET"));
        // Christmas Eve evening: Friday 25 is a holiday, so Monday 28.
        assert_eq!(hours.next_open(utc("2026-12-24T18:00:00Z")), Some(utc("2026-12-28T08:00:00Z")));
        assert_eq!(hours.next_open(utc("2026-12-03T10:00:00Z")), Some(utc("2026-12-03T10:00:00Z")), "open now");
    }

    #[test]
    fn summer_time_moves_the_opening_in_utc() {
        let hours = office();
        // Monday 29 June 2026: Berlin is UTC+2.
        assert_eq!(hours.next_open(utc("2026-06-27T12:00:00Z")), Some(utc("2026-06-29T07:00:00Z")));
        assert_eq!(hours.describe_next_open(utc("2026-06-27T12:00:00Z")).as_deref(), Some("Monday 09:00 CEST"));
    }

    #[test]
    fn an_opening_in_the_hour_repeated_in_autumn_is_the_one_still_ahead() {
        // Sunday 25 October 2026: Berlin's clocks go from 03:00 CEST back to 02:00 CET.
        let hours = BusinessHours::parse("business_hours", "Europe/Berlin", &[("sunday".into(), "02:30-04:00".into())], &[]).unwrap();
        let second_two_fifteen = utc("2026-10-25T01:15:00Z");
        assert!(!hours.is_open(second_two_fifteen));
        assert_eq!(hours.next_open(second_two_fifteen), Some(utc("2026-10-25T01:30:00Z")), "02:30 CET, not the 02:30 CEST already past");
        assert_eq!(hours.next_open(utc("2026-10-25T00:10:00Z")), Some(utc("2026-10-25T00:30:00Z")), "before it: 02:30 CEST");
    }

    #[test]
    fn the_summary_groups_days_with_the_same_hours() {
        let mut days: Vec<(String, String)> = DAYS[..5].iter().map(|d| (d.to_string(), "09:00-17:00".to_string())).collect();
        days.push(("saturday".into(), "10:00-12:00, 13:00-14:00".into()));
        let hours = BusinessHours::parse("business_hours", "UTC", &days, &[]).unwrap();
        assert_eq!(hours.summary(), "Monday–Friday 09:00–17:00, Saturday 10:00–12:00, 13:00–14:00 (UTC)");
        let never = BusinessHours::parse("business_hours", "UTC", &[], &[]).unwrap();
        assert_eq!(never.next_open(utc("2026-12-03T10:00:00Z")), None, "a schedule that never opens");
    }

    #[test]
    fn bad_schedules_name_the_key_the_value_and_what_is_expected() {
        let bad_zone = BusinessHours::parse("business_hours", "Mars/Olympus", &[], &[]).unwrap_err();
        assert_eq!(bad_zone.key, "business_hours.time_zone");
        assert!(bad_zone.to_string().contains("Mars/Olympus") && bad_zone.to_string().contains("IANA"), "{bad_zone}");
        for bad in ["9-5", "17:00-09:00", "09:00-12:00, 11:00-13:00", "25:00-26:00"] {
            let error = BusinessHours::parse("business_hours", "UTC", &[("monday".into(), bad.into())], &[]).unwrap_err();
            assert_eq!(error.key, "business_hours.monday", "{bad}");
            assert_eq!(error.value, bad);
        }
        let error = BusinessHours::parse("business_hours", "UTC", &[("funday".into(), "closed".into())], &[]).unwrap_err();
        assert_eq!(error.key, "business_hours.funday");
        let error = BusinessHours::parse("business_hours", "UTC", &[], &["25.12.2026".into()]).unwrap_err();
        assert_eq!(error.key, "business_hours.holidays");
    }
}
