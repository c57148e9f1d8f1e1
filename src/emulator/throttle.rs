//! The API gateway's per-caller rate limit: a token bucket per access key, refilled at the set rate
//! and holding at most one second's worth (or the set burst). Pure given the time passed in; no I/O.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The server-side rate limit. Missing JSON fields take their defaults; all zero means no limit.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct RateLimitSetting {
    /// Requests per second each access key (or all IAM tokens together) may make; 0: unlimited.
    pub per_key: u32,
    /// Requests a key may make at once after a quiet spell; 0: one second's worth (`per_key`).
    pub burst: u32,
}

impl RateLimitSetting {
    fn capacity(&self) -> f64 {
        f64::from(if self.burst == 0 { self.per_key } else { self.burst }).max(1.0)
    }
}

/// One bucket per caller.
#[derive(Debug, Default)]
pub struct Throttle {
    setting: RateLimitSetting,
    buckets: HashMap<String, (f64, Instant)>,
}

impl Throttle {
    pub fn setting(&self) -> RateLimitSetting {
        self.setting
    }

    /// Replaces the limit; every bucket starts full again.
    pub fn set(&mut self, setting: RateLimitSetting) {
        self.setting = setting;
        self.buckets.clear();
    }

    /// Takes a token for `caller` at `now`, or says how long until one is free (the `Retry-After`).
    pub fn admit(&mut self, caller: &str, now: Instant) -> Result<(), Duration> {
        if self.setting.per_key == 0 {
            return Ok(());
        }
        let rate = f64::from(self.setting.per_key);
        let capacity = self.setting.capacity();
        let (tokens, last) = self.buckets.entry(caller.to_string()).or_insert((capacity, now));
        let elapsed = now.saturating_duration_since(*last).as_secs_f64();
        *tokens = (*tokens + elapsed * rate).min(capacity);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            return Ok(());
        }
        Err(Duration::try_from_secs_f64((1.0 - *tokens) / rate).unwrap_or(Duration::from_secs(1)))
    }
}

/// `Retry-After` in whole seconds, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0).max(u64::from(wait.as_secs() == 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_gets_its_rate_and_one_second_of_burst() {
        let mut t = Throttle::default();
        let start = Instant::now();
        assert!((0..1000).all(|_| t.admit("ak", start).is_ok()), "no limit by default");
        t.set(RateLimitSetting { per_key: 10, burst: 0 });
        assert!((0..10).all(|_| t.admit("ak", start).is_ok()));
        let wait = t.admit("ak", start).unwrap_err();
        assert_eq!(wait, Duration::from_millis(100));
        assert_eq!(retry_after_secs(wait), 1);
        assert!(t.admit("other", start).is_ok(), "keys are separate");
        let later = start + Duration::from_millis(250);
        assert!(t.admit("ak", later).is_ok() && t.admit("ak", later).is_ok());
        assert!(t.admit("ak", later).is_err(), "refilled at 10 per second: 2.5 tokens");
        t.set(RateLimitSetting { per_key: 5, burst: 2 });
        assert!(
            t.admit("ak", later).is_ok() && t.admit("ak", later).is_ok() && t.admit("ak", later).is_err()
        );
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(20)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_secs(Duration::from_millis(2100)), 3);
    }

    #[test]
    fn partial_json_keeps_defaults() {
        let s: RateLimitSetting = serde_json::from_str(r#"{"per_key":50}"#).unwrap();
        assert_eq!(s, RateLimitSetting { per_key: 50, burst: 0 });
    }
}
