//! Recurring jobs on cron schedules (`[jobs]`). Each job's next run is kept in the store; a node
//! runs a due job only after moving that next run on (`Jobs::take_job_run`), so with several
//! nodes each run happens once, and runs missed while every node was down happen once, at the
//! next start. The engine's clock decides what is due, so tests move time instead of sleeping.

use crate::ports::{Clock, Jobs, StoreError};
use chrono::Utc;
use std::str::FromStr;
use std::sync::Arc;
use switchboard_models::Timestamp;

/// A cron expression: five fields (minute hour day-of-month month day-of-week) as people write
/// them, or six or seven with seconds first and a year last.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    text: String,
    cron: cron::Schedule,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "{key} = \"{value}\" is not a schedule: {problem}. Write a cron expression of five fields, minute hour \
     day-of-month month day-of-week, e.g. \"30 3 * * *\" (03:30 every day) or \"0 9 * * MON-FRI\"; \
     name weekdays (SUN-SAT) rather than numbering them"
)]
pub struct ScheduleError {
    pub key: String,
    pub value: String,
    pub problem: String,
}

impl CronSchedule {
    /// Parses `text`, the value of the config key `key` (named in the error).
    pub fn parse(key: &str, text: &str) -> Result<Self, ScheduleError> {
        let refused = |problem: String| ScheduleError { key: key.into(), value: text.into(), problem };
        let text = text.trim();
        let full = match text.split_whitespace().count() {
            5 => format!("0 {text}"),
            6 | 7 => text.to_string(),
            n => return Err(refused(format!("it has {n} fields"))),
        };
        // This crate counts weekdays from 1 = Sunday, people from 0 = Sunday and 1 = Monday:
        // a number would silently run on the wrong day.
        let weekday_field = full.split_whitespace().nth(5).unwrap_or_default();
        if weekday_field.chars().any(|c| c.is_ascii_digit()) {
            return Err(refused(format!("the day-of-week field `{weekday_field}` has a number; write MON-FRI, SUN and so on")));
        }
        let cron = cron::Schedule::from_str(&full).map_err(|e| refused(e.to_string()))?;
        if cron.upcoming(Utc).next().is_none() {
            return Err(refused("it never comes due".into()));
        }
        Ok(Self { text: text.to_string(), cron })
    }

    /// The first time after `at` the schedule names, read as wall-clock time in `zone`. A time
    /// the clocks skip (spring forward) runs when they reach it, an hour later; a time they pass
    /// twice (autumn) runs at its first pass, or its second when the first is over.
    pub fn next_after(&self, at: Timestamp, zone: chrono_tz::Tz) -> Option<Timestamp> {
        use chrono::{LocalResult, TimeZone};
        // The schedule is walked on the zone's wall clock, then each wall time placed in the zone.
        let wall = at.with_timezone(&zone).naive_local().and_utc();
        for candidate in self.cron.after(&wall).take(1000) {
            let naive = candidate.naive_utc();
            let instant = match zone.from_local_datetime(&naive) {
                LocalResult::Single(t) => t,
                LocalResult::Ambiguous(first, second) => {
                    if first.with_timezone(&Utc) > at {
                        first
                    } else {
                        second
                    }
                }
                LocalResult::None => zone.from_local_datetime(&(naive + chrono::Duration::hours(1))).earliest()?,
            }
            .with_timezone(&Utc);
            if instant > at {
                return Some(instant);
            }
        }
        None
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// Work done on a schedule (a backup, retention).
#[async_trait::async_trait]
pub trait Job: Send + Sync {
    /// Does the work at `now`; says what it did, or why it failed and what to do.
    async fn run(&self, now: Timestamp) -> Result<String, String>;
}

/// A configured job: its name in the store and the config, its schedule and its work.
pub struct PlannedJob {
    pub name: &'static str,
    pub schedule: CronSchedule,
    pub job: Arc<dyn Job>,
}

/// How one run went.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRun {
    pub name: &'static str,
    pub ok: bool,
    pub outcome: String,
}

/// Runs the configured jobs when they come due.
pub struct Scheduler {
    store: Arc<dyn Jobs>,
    clock: Arc<dyn Clock>,
    zone: chrono_tz::Tz,
    node: String,
    jobs: Vec<PlannedJob>,
    /// Counts finished runs, so a waiter learns of each (tests, the System page).
    finished: tokio::sync::watch::Sender<u64>,
}

impl Scheduler {
    pub fn new(store: Arc<dyn Jobs>, clock: Arc<dyn Clock>, zone: chrono_tz::Tz, node: String, jobs: Vec<PlannedJob>) -> Self {
        Self { store, clock, zone, node, jobs, finished: tokio::sync::watch::channel(0).0 }
    }

    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// Enters every job; a job whose schedule is unchanged keeps its next run, so a run that
    /// came due while the server was stopped is still due.
    pub async fn plan(&self) -> Result<(), StoreError> {
        let now = self.clock.now();
        for planned in &self.jobs {
            self.store.plan_job(planned.name, &self.stored_schedule(planned), self.next_after(planned, now)).await?;
        }
        Ok(())
    }

    /// The schedule as stored: the expression and its zone, so a new zone plans anew too.
    fn stored_schedule(&self, planned: &PlannedJob) -> String {
        format!("{} {}", planned.schedule.as_str(), self.zone.name())
    }

    /// Runs each job that is due now and that no other node took first; returns the runs made here.
    pub async fn run_due(&self) -> Result<Vec<JobRun>, StoreError> {
        let now = self.clock.now();
        let stored = self.store.scheduled_jobs().await?;
        let mut runs = Vec::new();
        for planned in &self.jobs {
            let Some(state) = stored.iter().find(|s| s.name == planned.name && s.schedule == self.stored_schedule(planned)) else {
                continue;
            };
            if state.next_run_at > now {
                continue;
            }
            // The next run is counted from now: runs missed while stopped happen once, not each.
            let next = self.next_after(planned, now);
            if !self.store.take_job_run(planned.name, state.next_run_at, next, &self.node, now).await? {
                continue;
            }
            let result = planned.job.run(now).await;
            let ok = result.is_ok();
            let outcome = result.unwrap_or_else(|why| why);
            match ok {
                true => tracing::info!(job = planned.name, %outcome, "scheduled job done"),
                false => tracing::error!(job = planned.name, %outcome, "scheduled job failed"),
            }
            metrics::counter!("switchboard_job_runs_total", "job" => planned.name, "outcome" => if ok { "ok" } else { "failed" }).increment(1);
            self.store.job_finished(planned.name, self.clock.now(), ok, &outcome).await?;
            self.finished.send_modify(|count| *count += 1);
            runs.push(JobRun { name: planned.name, ok, outcome });
        }
        Ok(runs)
    }

    /// Changes each time a run finishes.
    pub fn finished_runs(&self) -> tokio::sync::watch::Receiver<u64> {
        self.finished.subscribe()
    }

    fn next_after(&self, planned: &PlannedJob, now: Timestamp) -> Timestamp {
        // A schedule was checked to come due; far future is only for one that ran out (a year field).
        planned.schedule.next_after(now, self.zone).unwrap_or(chrono::DateTime::<Utc>::MAX_UTC)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn five_fields_are_read_as_people_write_them_in_the_given_zone() {
        let daily = CronSchedule::parse("jobs.backup.schedule", "30 3 * * *").unwrap();
        let berlin: chrono_tz::Tz = "Europe/Berlin".parse().unwrap();
        let at = Utc.with_ymd_and_hms(2026, 12, 3, 10, 0, 0).unwrap();
        // 03:30 in Berlin (UTC+1 in December) is 02:30 UTC, the next day.
        assert_eq!(daily.next_after(at, berlin), Some(Utc.with_ymd_and_hms(2026, 12, 4, 2, 30, 0).unwrap()));
        let weekdays = CronSchedule::parse("k", "0 9 * * MON-FRI").unwrap();
        let friday_evening = Utc.with_ymd_and_hms(2026, 12, 4, 18, 0, 0).unwrap();
        assert_eq!(weekdays.next_after(friday_evening, chrono_tz::UTC), Some(Utc.with_ymd_and_hms(2026, 12, 7, 9, 0, 0).unwrap()));
        let seconds = CronSchedule::parse("k", "15 */5 * * * *").unwrap();
        assert_eq!(seconds.next_after(at, chrono_tz::UTC), Some(Utc.with_ymd_and_hms(2026, 12, 3, 10, 0, 15).unwrap()));
    }

    #[test]
    fn clock_changes_neither_skip_nor_repeat_a_run() {
        let berlin: chrono_tz::Tz = "Europe/Berlin".parse().unwrap();
        let nightly = CronSchedule::parse("k", "30 2 * * *").unwrap();
        // 2027-03-28: 02:00 CET becomes 03:00 CEST; 02:30 never shows, so the run is at 03:30 CEST.
        let before_spring = Utc.with_ymd_and_hms(2027, 3, 28, 0, 0, 0).unwrap();
        assert_eq!(nightly.next_after(before_spring, berlin), Some(Utc.with_ymd_and_hms(2027, 3, 28, 1, 30, 0).unwrap()));
        // 2026-10-25: 03:00 CEST becomes 02:00 CET; 02:30 shows twice: the first runs, then the next day.
        let before_autumn = Utc.with_ymd_and_hms(2026, 10, 25, 0, 0, 0).unwrap();
        let first = nightly.next_after(before_autumn, berlin).unwrap();
        assert_eq!(first, Utc.with_ymd_and_hms(2026, 10, 25, 0, 30, 0).unwrap(), "02:30 CEST");
        assert_eq!(nightly.next_after(first, berlin), Some(Utc.with_ymd_and_hms(2026, 10, 26, 1, 30, 0).unwrap()), "not again at 02:30 CET");
        // Always after the instant asked about, inside the repeated hour too.
        let repeated = Utc.with_ymd_and_hms(2026, 10, 25, 1, 10, 0).unwrap();
        assert!(nightly.next_after(repeated, berlin).unwrap() > repeated);
    }

    #[test]
    fn numbered_weekdays_are_refused_because_they_would_mean_another_day() {
        let error = CronSchedule::parse("jobs.backup.schedule", "0 9 * * 1-5").unwrap_err().to_string();
        assert!(error.contains("`1-5` has a number") && error.contains("MON-FRI"), "{error}");
        assert!(CronSchedule::parse("k", "0 9 1-5 * *").is_ok(), "days of the month are numbers");
    }

    #[test]
    fn a_wrong_schedule_is_refused_with_its_key_value_and_the_expected_form() {
        for (text, problem) in [("every day", "it has 2 fields"), ("61 3 * * *", ""), ("0 0 30 2 *", "it never comes due"), ("", "it has 0 fields")] {
            let error = CronSchedule::parse("jobs.retention.schedule", text).unwrap_err();
            let shown = error.to_string();
            assert!(shown.starts_with(&format!("jobs.retention.schedule = \"{text}\" is not a schedule: ")), "{shown}");
            assert!(shown.contains(problem), "{shown}");
            assert!(shown.contains("\"30 3 * * *\""), "says what is expected: {shown}");
        }
    }
}
