//! When to try a failed cloud call again: full-jitter exponential backoff bounded by attempts and
//! total time, with `Retry-After` honoured up to a cap. Pure: time and randomness are arguments.

use std::time::Duration;

use jiff::Timestamp;
use rand::{Rng, RngExt};

use crate::cloud::error::ErrorClass;

/// How hard to retry one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Requests sent at most for one call, the first included (1 = never retry).
    pub max_attempts: u32,
    /// The backoff cap of the first retry; doubled for each later one.
    pub base_delay: Duration,
    /// The largest single wait, also the cap on a server's `Retry-After`.
    pub max_delay: Duration,
    /// No retry starts once this much time has passed since the first request, or would pass
    /// during the wait before it.
    pub max_total: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_total: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// The upper bound of the wait after failed attempt `attempt` (1-based):
    /// `min(max_delay, base_delay * 2^(attempt-1))`.
    pub fn backoff_cap(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.saturating_sub(1)).unwrap_or(u32::MAX);
        self.base_delay.checked_mul(factor).map_or(self.max_delay, |d| d.min(self.max_delay))
    }

    /// Full jitter: a uniformly random wait in `[0, backoff_cap(attempt)]`.
    pub fn backoff(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let cap = u64::try_from(self.backoff_cap(attempt).as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rng.random_range(0..=cap))
    }

    /// The wait before retrying after failed attempt `attempt`, or `None` to give up: the class is
    /// not retryable, the attempts are spent, or the wait would end past `max_total` since the first
    /// request (`elapsed` is the time spent so far). A `Retry-After` replaces the backoff, capped at
    /// `max_delay`.
    pub fn next_delay(
        &self,
        class: ErrorClass,
        attempt: u32,
        elapsed: Duration,
        retry_after: Option<Duration>,
        rng: &mut impl Rng,
    ) -> Option<Duration> {
        if !class.is_retryable() || attempt >= self.max_attempts {
            return None;
        }
        let delay = match retry_after {
            Some(after) => after.min(self.max_delay),
            None => self.backoff(attempt, rng),
        };
        (elapsed.saturating_add(delay) <= self.max_total).then_some(delay)
    }
}

/// Reads a `Retry-After` value: delta-seconds, or an HTTP date (RFC 9110 IMF-fixdate) relative to
/// `now`. A date in the past means no wait.
pub fn parse_retry_after(value: &str, now: Timestamp) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
    Some(now.duration_until(at).try_into().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            max_total: Duration::from_secs(10),
        }
    }

    #[test]
    fn backoff_cap_doubles_then_saturates() {
        let p = policy();
        let caps: Vec<u128> = (1..=6).map(|a| p.backoff_cap(a).as_millis()).collect();
        assert_eq!(caps, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(p.backoff_cap(0), Duration::from_millis(100));
        assert_eq!(p.backoff_cap(200), Duration::from_secs(1), "huge attempt numbers do not overflow");
    }

    #[test]
    fn full_jitter_spans_zero_to_cap() {
        let p = policy();
        let mut rng = StdRng::seed_from_u64(7);
        for attempt in 1..=5 {
            let cap = p.backoff_cap(attempt);
            let samples: Vec<Duration> = (0..400).map(|_| p.backoff(attempt, &mut rng)).collect();
            assert!(samples.iter().all(|d| *d <= cap), "attempt {attempt}");
            assert!(samples.iter().any(|d| *d < cap / 4), "attempt {attempt}: low values occur");
            assert!(samples.iter().any(|d| *d > cap * 3 / 4), "attempt {attempt}: high values occur");
        }
        let same = |seed| {
            let mut r = StdRng::seed_from_u64(seed);
            (1..=4).map(|a| p.backoff(a, &mut r)).collect::<Vec<_>>()
        };
        assert_eq!(same(3), same(3), "the random source alone decides the jitter");
    }

    #[test]
    fn gives_up_on_non_retryable_classes() {
        let p = policy();
        let mut rng = StdRng::seed_from_u64(1);
        for class in [ErrorClass::Authentication, ErrorClass::NotFound, ErrorClass::Permanent] {
            assert_eq!(p.next_delay(class, 1, Duration::ZERO, None, &mut rng), None, "{class:?}");
        }
        for class in [ErrorClass::Throttled, ErrorClass::Transient, ErrorClass::Decode] {
            assert!(p.next_delay(class, 1, Duration::ZERO, None, &mut rng).is_some(), "{class:?}");
        }
    }

    #[test]
    fn bounded_by_attempts_and_total_time() {
        let p = policy();
        let mut rng = StdRng::seed_from_u64(2);
        assert!(p.next_delay(ErrorClass::Transient, 3, Duration::ZERO, None, &mut rng).is_some());
        assert_eq!(p.next_delay(ErrorClass::Transient, 4, Duration::ZERO, None, &mut rng), None);
        let after = Some(Duration::from_millis(500));
        assert_eq!(
            p.next_delay(ErrorClass::Throttled, 1, Duration::from_millis(9_600), after, &mut rng),
            None,
            "the wait would end past max_total"
        );
        assert_eq!(
            p.next_delay(ErrorClass::Throttled, 1, Duration::from_millis(9_500), after, &mut rng),
            after
        );
        let once = RetryPolicy { max_attempts: 1, ..p };
        assert_eq!(once.next_delay(ErrorClass::Transient, 1, Duration::ZERO, None, &mut rng), None);
    }

    #[test]
    fn retry_after_replaces_backoff_and_is_capped() {
        let p = policy();
        let mut rng = StdRng::seed_from_u64(3);
        let d = p.next_delay(
            ErrorClass::Throttled,
            1,
            Duration::ZERO,
            Some(Duration::from_millis(700)),
            &mut rng,
        );
        assert_eq!(d, Some(Duration::from_millis(700)));
        let d =
            p.next_delay(ErrorClass::Throttled, 1, Duration::ZERO, Some(Duration::from_secs(3600)), &mut rng);
        assert_eq!(d, Some(Duration::from_secs(1)), "capped at max_delay");
    }

    #[test]
    fn parses_retry_after_forms() {
        let now: Timestamp = "2015-10-21T07:27:50Z".parse().unwrap();
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now), Some(Duration::from_secs(10)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
