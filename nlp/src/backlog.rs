//! Whether the sentence encoder's queue is behind. A message that would join a queue it leaves
//! only by the budget takes the fast path at once instead: it is then classified before it is
//! stored and written with its answer, rather than stored, kept waiting a budget, shed and
//! answered in a second write.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What the encoder threads last did, as seen by the callers that queue messages.
pub(crate) struct EncoderBacklog {
    epoch: Instant,
    /// When a batch was last taken, or the queue last filled from empty (nanoseconds since
    /// `epoch`): whatever waits now has waited at least since then without the encoder moving.
    moved_at: AtomicU64,
    /// How long the oldest message of the last batch taken had waited (nanoseconds).
    last_wait: AtomicU64,
}

impl EncoderBacklog {
    pub(crate) fn new() -> Self {
        Self { epoch: Instant::now(), moved_at: AtomicU64::new(0), last_wait: AtomicU64::new(0) }
    }

    /// A message joined a queue that was empty: what was taken before says nothing of it.
    pub(crate) fn filled(&self, now: Instant) {
        self.moved_at.fetch_max(self.nanos(now), Ordering::Relaxed);
        self.last_wait.store(0, Ordering::Relaxed);
    }

    /// An encoder thread took a batch whose oldest message had waited `oldest_wait`.
    pub(crate) fn taken(&self, now: Instant, oldest_wait: Duration) {
        self.moved_at.fetch_max(self.nanos(now), Ordering::Relaxed);
        self.last_wait.store(oldest_wait.as_nanos().min(u64::MAX as u128) as u64, Ordering::Relaxed);
    }

    /// Behind: messages wait (`depth`), and either the last ones taken had waited past `limit`
    /// or the encoder has not moved for `limit` (its threads get no CPU). An empty queue is never
    /// behind, so the first message after a drain is the encoder's again.
    pub(crate) fn behind(&self, now: Instant, depth: usize, limit: Duration) -> bool {
        let limit = limit.as_nanos().min(u64::MAX as u128) as u64;
        depth > 0
            && (self.last_wait.load(Ordering::Relaxed) > limit
                || self.nanos(now).saturating_sub(self.moved_at.load(Ordering::Relaxed)) > limit)
    }

    fn nanos(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_nanos().min(u64::MAX as u128) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_millis(100);

    #[test]
    fn a_queue_the_encoder_keeps_up_with_is_not_behind() {
        let backlog = EncoderBacklog::new();
        let start = Instant::now();
        backlog.filled(start);
        assert!(!backlog.behind(start + Duration::from_millis(5), 1, LIMIT), "just queued");
        backlog.taken(start + Duration::from_millis(20), Duration::from_millis(20));
        assert!(!backlog.behind(start + Duration::from_millis(90), 40, LIMIT), "taken recently, after a short wait");
    }

    #[test]
    fn messages_waiting_past_the_limit_without_the_encoder_moving_are_behind() {
        let backlog = EncoderBacklog::new();
        let start = Instant::now();
        // Idle for a long time, then a message arrives: the encoder's last move is its arrival.
        backlog.taken(start, Duration::ZERO);
        backlog.filled(start + Duration::from_secs(60));
        assert!(!backlog.behind(start + Duration::from_secs(60) + Duration::from_millis(50), 1, LIMIT));
        assert!(backlog.behind(start + Duration::from_secs(60) + Duration::from_millis(150), 1, LIMIT), "starved");
    }

    #[test]
    fn a_long_wait_of_the_last_batch_is_behind_until_the_queue_empties() {
        let backlog = EncoderBacklog::new();
        let start = Instant::now();
        backlog.taken(start, Duration::from_millis(180));
        assert!(backlog.behind(start + Duration::from_millis(1), 3, LIMIT));
        assert!(!backlog.behind(start + Duration::from_millis(1), 0, LIMIT), "drained: the next message is the encoder's");
        backlog.filled(start + Duration::from_millis(2));
        assert!(!backlog.behind(start + Duration::from_millis(3), 2, LIMIT), "nor those that follow it before it is taken");
        backlog.taken(start + Duration::from_millis(3), Duration::from_millis(1));
        assert!(!backlog.behind(start + Duration::from_millis(4), 1, LIMIT), "the wait is short again");
    }
}
