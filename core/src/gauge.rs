//! Counts of open things for `/metrics`.

/// Counts something open (a widget socket, a panel's event stream) in a gauge while it lives.
pub struct OpenGauge(&'static str);

impl OpenGauge {
    pub fn new(gauge: &'static str) -> Self {
        metrics::gauge!(gauge).increment(1.0);
        Self(gauge)
    }
}

impl Drop for OpenGauge {
    fn drop(&mut self) {
        metrics::gauge!(self.0).decrement(1.0);
    }
}

/// How long the store has been taking to commit the engine's steps over about the last second
/// (a moving average weighted by time, so it forgets an overload as soon as commits are quick
/// again, however few they are): written by the engine, read by a classifier that can decide
/// more cheaply while it is high (a message classified without the judgement changes less, so
/// its step writes less).
pub struct CommitLag {
    epoch: std::time::Instant,
    average_nanos: std::sync::atomic::AtomicU64,
    /// When the last commit was recorded (nanoseconds since `epoch`).
    recorded_at: std::sync::atomic::AtomicU64,
}

impl Default for CommitLag {
    fn default() -> Self {
        Self { epoch: std::time::Instant::now(), average_nanos: Default::default(), recorded_at: Default::default() }
    }
}

impl CommitLag {
    /// How far back the average looks: a commit this long after the last one replaces it.
    const WINDOW: std::time::Duration = std::time::Duration::from_secs(1);

    pub fn record(&self, took: std::time::Duration) {
        self.record_at(std::time::Instant::now(), took);
    }

    /// `record` for a commit that ended at `now`.
    pub fn record_at(&self, now: std::time::Instant, took: std::time::Duration) {
        use std::sync::atomic::Ordering::Relaxed;
        let now = self.nanos(now);
        let since = now.saturating_sub(self.recorded_at.swap(now, Relaxed));
        let share = (since as f64 / Self::WINDOW.as_nanos() as f64).min(1.0);
        // Racing steps may each miss another's update: an average needs no more.
        let average = self.average_nanos.load(Relaxed) as f64;
        let next = average + (took.as_nanos() as f64 - average) * share;
        self.average_nanos.store(next.max(0.0) as u64, Relaxed);
    }

    pub fn over(&self, limit: std::time::Duration) -> bool {
        self.over_at(std::time::Instant::now(), limit)
    }

    /// Whether the average is past `limit` at `now`; after a spell longer than the window with
    /// no commit it is not (the next message's own commit has not been recorded yet).
    pub fn over_at(&self, now: std::time::Instant, limit: std::time::Duration) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let quiet = self.nanos(now).saturating_sub(self.recorded_at.load(Relaxed)) > Self::WINDOW.as_nanos() as u64;
        !quiet && u128::from(self.average_nanos.load(Relaxed)) > limit.as_nanos()
    }

    fn nanos(&self, at: std::time::Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_nanos().min(u64::MAX as u128) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    const LIMIT: Duration = Duration::from_millis(100);

    #[test]
    fn a_second_of_slow_commits_raises_the_average_and_quick_ones_bring_it_down() {
        let lag = CommitLag::default();
        let start = Instant::now();
        assert!(!lag.over(LIMIT));
        let mut at = start;
        for _ in 0..2000 {
            at += Duration::from_millis(1);
            lag.record_at(at, Duration::from_millis(150));
        }
        assert!(lag.over(LIMIT), "two seconds of slow commits");
        for _ in 0..2000 {
            at += Duration::from_millis(1);
            lag.record_at(at, Duration::from_millis(2));
        }
        assert!(!lag.over(LIMIT), "recovered");
        at += Duration::from_millis(1);
        lag.record_at(at, Duration::from_secs(1));
        assert!(!lag.over(LIMIT), "one slow commit among many does not count");
    }

    #[test]
    fn after_a_quiet_spell_the_next_commit_is_the_average() {
        let lag = CommitLag::default();
        let mut at = Instant::now();
        for _ in 0..2000 {
            at += Duration::from_millis(1);
            lag.record_at(at, Duration::from_millis(400));
        }
        assert!(lag.over_at(at, LIMIT));
        // The overload ended; one customer writes a few seconds later: quick again before its
        // own commit is recorded, and after.
        assert!(!lag.over_at(at + Duration::from_secs(3), LIMIT), "no commit for longer than the window");
        lag.record_at(at + Duration::from_secs(3), Duration::from_millis(2));
        assert!(!lag.over(LIMIT), "not held for the next hundred messages");
    }
}
