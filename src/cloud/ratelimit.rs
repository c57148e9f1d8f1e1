//! Client-side rate limiting shared by every policy and client in the process: one token bucket per
//! (endpoint host, credentials identity), and a pause per key when a 429 says `Retry-After`.
//! Waits on timers; no network I/O.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::time::Instant;

/// A requests-per-second budget with a burst allowance, applied per key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained requests per second.
    pub per_second: NonZeroU32,
    /// Requests that may go at once after a quiet period.
    pub burst: NonZeroU32,
}

impl Default for RateLimit {
    /// 10 requests per second with bursts of 20.
    fn default() -> Self {
        Self { per_second: NonZeroU32::MIN.saturating_add(9), burst: NonZeroU32::MIN.saturating_add(19) }
    }
}

/// What a limiter is keyed by. `identity` comes from `Credentials::identity()` and is never a secret.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LimiterKey {
    /// The endpoint's `Host` (with port when not default).
    pub host: String,
    pub identity: String,
}

struct KeyState {
    bucket: DefaultDirectRateLimiter,
    paused_until: Mutex<Option<Instant>>,
}

impl KeyState {
    fn paused_until(&self) -> Option<Instant> {
        *self.paused_until.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The process-wide set of limiters. Create one at start-up and share it (it is behind an `Arc`)
/// with every client, so that all policies using the same endpoint and credentials share a budget.
pub struct RateLimiters {
    limit: RateLimit,
    keys: Mutex<HashMap<LimiterKey, Arc<KeyState>>>,
}

impl std::fmt::Debug for RateLimiters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiters").field("limit", &self.limit).finish_non_exhaustive()
    }
}

impl RateLimiters {
    pub fn new(limit: RateLimit) -> Arc<Self> {
        Arc::new(Self { limit, keys: Mutex::new(HashMap::new()) })
    }

    fn state(&self, key: &LimiterKey) -> Arc<KeyState> {
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        keys.entry(key.clone())
            .or_insert_with(|| {
                let quota = Quota::per_second(self.limit.per_second).allow_burst(self.limit.burst);
                Arc::new(KeyState { bucket: RateLimiter::direct(quota), paused_until: Mutex::new(None) })
            })
            .clone()
    }

    /// Waits until a request for `key` may go: past any pause, then for a token from the bucket.
    pub async fn acquire(&self, key: &LimiterKey) {
        let state = self.state(key);
        Self::wait_out_pause(&state).await;
        state.bucket.until_ready().await;
        // A 429 seen by someone else while this task waited for a token still applies.
        Self::wait_out_pause(&state).await;
    }

    async fn wait_out_pause(state: &KeyState) {
        while let Some(until) = state.paused_until().filter(|u| *u > Instant::now()) {
            tokio::time::sleep_until(until).await;
        }
    }

    /// Holds every request for `key` for `wait` from now (a server's `Retry-After`). An existing
    /// longer pause is kept.
    pub fn pause(&self, key: &LimiterKey, wait: Duration) {
        let state = self.state(key);
        let until = Instant::now() + wait;
        let mut paused = state.paused_until.lock().unwrap_or_else(PoisonError::into_inner);
        if paused.is_none_or(|p| p < until) {
            *paused = Some(until);
        }
    }

    /// When the pause on `key` ends, if one is in force.
    pub fn paused_until(&self, key: &LimiterKey) -> Option<Instant> {
        self.state(key).paused_until().filter(|u| *u > Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(host: &str, identity: &str) -> LimiterKey {
        LimiterKey { host: host.into(), identity: identity.into() }
    }

    fn limit(per_second: u32, burst: u32) -> RateLimit {
        RateLimit { per_second: NonZeroU32::new(per_second).unwrap(), burst: NonZeroU32::new(burst).unwrap() }
    }

    #[tokio::test]
    async fn burst_then_sustained_rate() {
        let limiters = RateLimiters::new(limit(20, 5));
        let k = key("h", "ak");
        let start = std::time::Instant::now();
        for _ in 0..5 {
            limiters.acquire(&k).await;
        }
        assert!(start.elapsed() < Duration::from_millis(150), "the burst goes at once, not at 20/s");
        for _ in 0..4 {
            limiters.acquire(&k).await;
        }
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(150), "4 more at 20/s take about 200ms, took {elapsed:?}");
        assert!(elapsed < Duration::from_millis(600), "took {elapsed:?}");
    }

    #[tokio::test]
    async fn keys_have_separate_budgets() {
        let limiters = RateLimiters::new(limit(1, 1));
        let start = std::time::Instant::now();
        limiters.acquire(&key("h1", "ak")).await;
        limiters.acquire(&key("h2", "ak")).await;
        limiters.acquire(&key("h1", "ak2")).await;
        assert!(start.elapsed() < Duration::from_millis(500), "no key waited a second for another");
    }

    #[tokio::test]
    async fn a_pause_holds_everyone_on_the_key() {
        let limiters = RateLimiters::new(limit(1000, 1000));
        let k = key("h", "ak");
        limiters.pause(&k, Duration::from_millis(200));
        limiters.pause(&k, Duration::from_millis(50));
        assert!(limiters.paused_until(&k).is_some(), "a shorter pause does not shorten a longer one");
        assert!(limiters.paused_until(&key("h", "other")).is_none());
        let start = std::time::Instant::now();
        let (a, b) = tokio::join!(
            async {
                limiters.acquire(&k).await;
                start.elapsed()
            },
            async {
                limiters.acquire(&k).await;
                start.elapsed()
            }
        );
        for waited in [a, b] {
            assert!(waited >= Duration::from_millis(190), "waited {waited:?}");
        }
        assert!(limiters.paused_until(&k).is_none(), "the pause ends");
        let other = std::time::Instant::now();
        limiters.acquire(&key("h", "other")).await;
        assert!(other.elapsed() < Duration::from_millis(150));
    }
}
