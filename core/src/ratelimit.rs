//! Token buckets keyed by client (visitor id, IP address, API token). One node keeps them in
//! memory; several nodes share them through the database (`TokenBuckets`), so a client gets
//! the same limit whichever node it reaches.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use crate::ports::{BucketTake, TokenBuckets};

pub struct RateLimiter {
    /// Burst and refill rate as `f64` bits: admins change them while it runs (`set`).
    capacity: AtomicU64,
    per_second: AtomicU64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
    /// Several nodes: the shared buckets, under this limit's scope name.
    shared: Option<(&'static str, Arc<dyn TokenBuckets>)>,
}

/// Forget idle clients once the table grows past this.
const PRUNE_ABOVE: usize = 50_000;

impl RateLimiter {
    /// `per_minute` sustained, bursts of up to `burst`.
    pub fn new(per_minute: u32, burst: u32) -> Self {
        let limiter = Self { capacity: AtomicU64::new(0), per_second: AtomicU64::new(0), buckets: Mutex::new(HashMap::new()), shared: None };
        limiter.set(per_minute, burst);
        limiter
    }

    /// `per_minute` sustained and bursts of `burst` from now on (each client's count stays).
    pub fn set(&self, per_minute: u32, burst: u32) {
        self.capacity.store(f64::from(burst.max(1)).to_bits(), Ordering::Relaxed);
        self.per_second.store((f64::from(per_minute.max(1)) / 60.0).to_bits(), Ordering::Relaxed);
    }

    fn capacity(&self) -> f64 {
        f64::from_bits(self.capacity.load(Ordering::Relaxed))
    }

    fn per_second(&self) -> f64 {
        f64::from_bits(self.per_second.load(Ordering::Relaxed))
    }

    /// Counts in `buckets` (shared by every node) under `scope`, when given.
    pub fn shared(mut self, scope: &'static str, buckets: Option<Arc<dyn TokenBuckets>>) -> Self {
        self.shared = buckets.map(|buckets| (scope, buckets));
        self
    }

    /// Takes one token for `key`, or says how long until one is free. Should the shared buckets
    /// fail (the database is unreachable), this node's own count applies meanwhile.
    pub async fn check(&self, key: &str) -> Result<(), Duration> {
        Self::check_all(&[(self, key)]).await.remove(0)
    }

    /// Takes one token from each limiter for its key (each limiter once), in one round trip
    /// when they all count in the same shared buckets. Every token is taken even when another
    /// is refused.
    pub async fn check_all(checks: &[(&RateLimiter, &str)]) -> Vec<Result<(), Duration>> {
        let shared: Option<Vec<_>> = checks
            .iter()
            .map(|(limiter, key)| {
                limiter.shared.as_ref().map(|(scope, _)| BucketTake { scope, key, capacity: limiter.capacity(), per_second: limiter.per_second() })
            })
            .collect();
        let buckets = checks.first().and_then(|(limiter, _)| limiter.shared.as_ref()).map(|(_, buckets)| buckets);
        if let (Some(takes), Some(buckets)) = (shared, buckets) {
            match buckets.take_tokens(&takes, chrono::Utc::now()).await {
                Ok(waits) => return waits.into_iter().map(|wait| wait.map_or(Ok(()), Err)).collect(),
                Err(error) => tracing::warn!(%error, "shared rate limits unavailable; this node's own counts apply"),
            }
        }
        let now = Instant::now();
        checks.iter().map(|(limiter, key)| limiter.check_at(key, now)).collect()
    }

    pub fn check_at(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let (capacity, rate) = (self.capacity(), self.per_second());
        let mut buckets = self.buckets.lock().expect("rate limiter lock");
        if buckets.len() > PRUNE_ABOVE {
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.saturating_duration_since(*at).as_secs_f64() * rate < capacity
            });
        }
        let (tokens, at) = buckets.entry(key.to_string()).or_insert((capacity, now));
        let refilled = (*tokens + now.saturating_duration_since(*at).as_secs_f64() * rate).min(capacity);
        *at = now;
        if refilled >= 1.0 {
            *tokens = refilled - 1.0;
            Ok(())
        } else {
            *tokens = refilled;
            Err(Duration::from_secs_f64((1.0 - refilled) / rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_a_burst_then_refills_at_the_sustained_rate() {
        let limiter = RateLimiter::new(60, 3);
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check_at("a", start).is_ok());
        }
        let wait = limiter.check_at("a", start).unwrap_err();
        assert!(wait <= Duration::from_secs(1) && wait > Duration::from_millis(900), "{wait:?}");
        assert!(limiter.check_at("b", start).is_ok(), "clients are limited separately");
        assert!(limiter.check_at("a", start + Duration::from_secs(1)).is_ok());
        limiter.set(6, 1);
        assert!(limiter.check_at("c", start).is_ok());
        let wait = limiter.check_at("c", start).unwrap_err();
        assert!(wait > Duration::from_secs(9), "the new rate applies at once: {wait:?}");
    }
}
