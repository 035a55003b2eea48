//! Sign-in limits that protect an account without handing strangers a way to lock it: attempts
//! are limited per address and per (account, address) pair; failures from other addresses only
//! slow the account down, a little more with each, and never refuse it. An address the account
//! signed in from before is never refused for other addresses' sake.

use switchboard_core::RateLimiter;
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use switchboard_core::ports::TokenBuckets;
use std::time::{Duration, Instant};

/// Failures of one account within this window slow its sign-ins.
const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Failures an account takes before sign-ins slow down.
const FREE_FAILURES: usize = 5;
const SLOWDOWN_STEP: Duration = Duration::from_millis(20);
const MAX_SLOWDOWN: Duration = Duration::from_secs(1);
/// Accounts and addresses remembered at most (oldest forgotten first when over).
const MAX_TRACKED: usize = 50_000;

pub struct SignInGuard {
    per_address: RateLimiter,
    per_pair: RateLimiter,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
    known_addresses: Mutex<HashMap<String, HashSet<IpAddr>>>,
}

/// Whether an attempt may go ahead.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// Check the password after waiting this long (zero unless the account is under attack).
    Go { slowdown: Duration },
    /// Refused; try again after this long.
    Refused { retry_after: Duration },
}

impl SignInGuard {
    /// `per_minute` attempts sustained, `burst` at once, per address and per (account, address);
    /// counted in `shared` buckets when several nodes share them.
    pub fn new(per_minute: u32, burst: u32, shared: Option<Arc<dyn TokenBuckets>>) -> Self {
        Self {
            per_address: RateLimiter::new(per_minute, burst).shared("sign_in_address", shared.clone()),
            per_pair: RateLimiter::new(per_minute, burst).shared("sign_in_pair", shared),
            failures: Mutex::new(HashMap::new()),
            known_addresses: Mutex::new(HashMap::new()),
        }
    }

    /// New limits from now on (admins changed them).
    pub fn set_limits(&self, per_minute: u32, burst: u32) {
        self.per_address.set(per_minute, burst);
        self.per_pair.set(per_minute, burst);
    }

    pub async fn admit(&self, email: &str, address: IpAddr) -> Admission {
        let known = self.known_addresses.lock().expect("sign-in guard").get(email).is_some_and(|a| a.contains(&address));
        let (pair, address) = (format!("{email}|{address}"), address.to_string());
        let mut checks = vec![(&self.per_pair, pair.as_str())];
        if !known {
            checks.push((&self.per_address, address.as_str()));
        }
        let waits = RateLimiter::check_all(&checks).await;
        if let Some(wait) = waits.into_iter().filter_map(Result::err).max() {
            return Admission::Refused { retry_after: wait.max(Duration::from_secs(1)) };
        }
        let recent = self.recent_failures(email);
        let extra = recent.saturating_sub(FREE_FAILURES) as u32;
        Admission::Go { slowdown: (SLOWDOWN_STEP * extra).min(MAX_SLOWDOWN) }
    }

    pub fn failed(&self, email: &str) {
        let mut failures = self.failures.lock().expect("sign-in guard");
        if failures.len() > MAX_TRACKED {
            failures.retain(|_, times| times.back().is_some_and(|t| t.elapsed() < FAILURE_WINDOW));
        }
        failures.entry(email.to_string()).or_default().push_back(Instant::now());
    }

    pub fn succeeded(&self, email: &str, address: IpAddr) {
        let mut known = self.known_addresses.lock().expect("sign-in guard");
        if known.len() > MAX_TRACKED {
            known.clear();
        }
        known.entry(email.to_string()).or_default().insert(address);
    }

    fn recent_failures(&self, email: &str) -> usize {
        let mut failures = self.failures.lock().expect("sign-in guard");
        let Some(times) = failures.get_mut(email) else { return 0 };
        while times.front().is_some_and(|t| t.elapsed() >= FAILURE_WINDOW) {
            times.pop_front();
        }
        times.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn strangers_failures_slow_an_account_but_never_refuse_a_clean_address() {
        let guard = SignInGuard::new(10, 5, None);
        let ann = "ann@example.com";
        for n in 2..=6u8 {
            let stranger = IpAddr::from([10, 0, 0, n]);
            for _ in 0..5 {
                assert!(matches!(guard.admit(ann, stranger).await, Admission::Go { .. }));
                guard.failed(ann);
            }
            assert!(matches!(guard.admit(ann, stranger).await, Admission::Refused { .. }), "that address is limited");
        }
        match guard.admit(ann, IpAddr::from([10, 0, 0, 7])).await {
            Admission::Go { slowdown } => assert!(slowdown > Duration::ZERO && slowdown <= MAX_SLOWDOWN, "{slowdown:?}"),
            refused => panic!("a clean address is never refused: {refused:?}"),
        }
    }

    #[tokio::test]
    async fn an_address_the_account_used_before_is_not_refused_for_its_neighbours() {
        let guard = SignInGuard::new(10, 2, None);
        let shared = IpAddr::from([10, 0, 0, 9]);
        guard.succeeded("ann@example.com", shared);
        for _ in 0..3 {
            let _ = guard.admit("mallory@example.com", shared).await;
        }
        assert!(matches!(guard.admit("bob@example.com", shared).await, Admission::Refused { .. }), "the address is limited");
        assert!(matches!(guard.admit("ann@example.com", shared).await, Admission::Go { .. }), "but not for Ann, who used it");
    }
}
