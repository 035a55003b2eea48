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

/// How long the store has been taking to commit the engine's steps lately (a moving average):
/// written by the engine, read by a classifier that can decide more cheaply while it is high
/// (a message classified without the judgement changes less, so its step writes less).
#[derive(Default)]
pub struct CommitLag {
    average_nanos: std::sync::atomic::AtomicU64,
}

impl CommitLag {
    /// Weight of the newest commit in the average: about the last hundred steps count.
    const NEWEST_SHARE: u64 = 64;

    pub fn record(&self, took: std::time::Duration) {
        use std::sync::atomic::Ordering::Relaxed;
        let took = took.as_nanos().min(u64::MAX as u128) as u64;
        let average = self.average_nanos.load(Relaxed);
        // Racing steps may each miss another's update: an average needs no more.
        let next = average - average / Self::NEWEST_SHARE + took / Self::NEWEST_SHARE;
        self.average_nanos.store(next, Relaxed);
    }

    pub fn over(&self, limit: std::time::Duration) -> bool {
        u128::from(self.average_nanos.load(std::sync::atomic::Ordering::Relaxed)) > limit.as_nanos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn slow_commits_raise_the_average_and_fast_ones_bring_it_down() {
        let lag = CommitLag::default();
        assert!(!lag.over(Duration::from_millis(100)));
        for _ in 0..400 {
            lag.record(Duration::from_millis(150));
        }
        assert!(lag.over(Duration::from_millis(100)), "a run of slow commits");
        for _ in 0..400 {
            lag.record(Duration::from_millis(2));
        }
        assert!(!lag.over(Duration::from_millis(100)), "recovered");
        lag.record(Duration::from_secs(1));
        assert!(!lag.over(Duration::from_millis(100)), "one slow commit alone does not count");
    }
}
