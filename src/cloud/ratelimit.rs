//! Client-side rate limiting shared by every policy and client in the process: one token bucket per
//! (endpoint host, credentials identity), whose rate adapts to the server (additive increase while
//! calls succeed, multiplicative decrease on 429) or stays fixed, and a pause per key when a 429
//! says `Retry-After`. Waits on timers; no network I/O.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use tokio::time::Instant;

/// A fixed requests-per-second budget with a burst allowance, applied per key.
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

impl RateLimit {
    /// `per_second` sustained, with a burst of one second's worth.
    pub fn per_second(per_second: NonZeroU32) -> Self {
        Self { per_second, burst: per_second }
    }
}

/// Bounds of an adaptive rate, in requests per second.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdaptiveRate {
    /// The rate a key starts at, and the least it returns to after an idle spell.
    pub start: f64,
    /// The rate never rises above this.
    pub max: f64,
    /// The rate never falls below this, however many 429s come.
    pub floor: f64,
}

/// Default start rate: above a sequential SDK loop at 20 ms (about 34 calls per second) within a
/// second and a half, and below most gateways' per-key limits.
pub const DEFAULT_START_RPS: u32 = 20;
/// Default ceiling of the adaptive rate.
pub const DEFAULT_MAX_RPS: u32 = 200;
/// The least an adaptive rate falls to.
pub const FLOOR_RPS: f64 = 1.0;

/// Growth per second of success: at least this many requests per second...
const INCREASE_RPS: f64 = 10.0;
/// ...or this fraction of the current rate, whichever is more (fast ramps at high rates).
const INCREASE_FRACTION: f64 = 0.2;
/// The fraction until a key's first 429 (a slow start, as TCP's): the server's limit is not known
/// yet, and a gateway's burst allowance absorbs the overshoot that finds it. The rate then grows as
/// fast as the send rate it is capped by (twice the measured rate) lets it: it doubles about every
/// measuring window while the calls keep up with it.
const SLOW_START_FRACTION: f64 = 4.0;
/// What a 429 multiplies the rate by.
const DECREASE_FACTOR: f64 = 0.5;
/// 429s within this long of a cut answer requests sent before it: they do not cut again.
const CUT_COOLDOWN: Duration = Duration::from_millis(500);
/// Success is credited for at most this long since the previous outcome, so a quiet spell does not
/// count as time of success.
const MAX_GROWTH_STEP: Duration = Duration::from_millis(250);
/// The send rate is measured over windows this long.
const MEASURE_WINDOW: Duration = Duration::from_millis(250);
/// The rate may rise to at most this multiple of the measured send rate: a limit far above what is
/// used would be a burst waiting to happen.
const HEADROOM: f64 = 2.0;

impl AdaptiveRate {
    /// Starts at `start` (lowered to `max` if above it), rises to at most `max`, never below
    /// [`FLOOR_RPS`] (or `max` if that is lower).
    pub fn new(start: NonZeroU32, max: NonZeroU32) -> Self {
        let max = f64::from(max.get());
        Self { start: f64::from(start.get()).min(max), max, floor: FLOOR_RPS.min(max) }
    }
}

impl Default for AdaptiveRate {
    /// From 20 up to 200 requests per second.
    fn default() -> Self {
        let n = |v: u32| NonZeroU32::new(v).unwrap_or(NonZeroU32::MIN);
        Self::new(n(DEFAULT_START_RPS), n(DEFAULT_MAX_RPS))
    }
}

/// How every key's rate is set.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RateControl {
    /// A static rate that no outcome changes.
    Fixed(RateLimit),
    /// A rate that follows the server: up while calls succeed, halved on 429.
    Adaptive(AdaptiveRate),
}

impl Default for RateControl {
    fn default() -> Self {
        Self::Adaptive(AdaptiveRate::default())
    }
}

impl From<RateLimit> for RateControl {
    fn from(limit: RateLimit) -> Self {
        Self::Fixed(limit)
    }
}

impl From<AdaptiveRate> for RateControl {
    fn from(rate: AdaptiveRate) -> Self {
        Self::Adaptive(rate)
    }
}

/// What the server made of one request, as far as its rate is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Answered without throttling.
    Ok,
    /// Answered 429.
    Throttled,
}

/// What a limiter is keyed by. `identity` comes from `Credentials::identity()` and is never a secret.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LimiterKey {
    /// The endpoint's `Host` (with port when not default).
    pub host: String,
    pub identity: String,
}

/// One key's bucket. `tokens` goes below zero while requests wait: each holds a reservation, so
/// waiters leave in order, one per `1 / rate`, without waking each other.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    tokens: f64,
    refilled: Instant,
    paused_until: Option<Instant>,
    last_outcome: Option<Instant>,
    /// `None` until the first 429: the key is still in slow start.
    last_cut: Option<Instant>,
    window_start: Instant,
    window_sent: u32,
    /// Smoothed send rate; `None` until the first window closes.
    measured: Option<f64>,
}

/// What `acquire` must wait for.
enum Wait {
    Pause(Instant),
    Token(Instant),
}

impl Bucket {
    fn new(control: &RateControl, now: Instant) -> Self {
        let (rate, tokens) = match control {
            RateControl::Fixed(limit) => (f64::from(limit.per_second.get()), f64::from(limit.burst.get())),
            RateControl::Adaptive(a) => (a.start, a.start),
        };
        Self {
            rate,
            tokens,
            refilled: now,
            paused_until: None,
            last_outcome: None,
            last_cut: None,
            window_start: now,
            window_sent: 0,
            measured: None,
        }
    }

    fn capacity(&self, control: &RateControl) -> f64 {
        match control {
            RateControl::Fixed(limit) => f64::from(limit.burst.get()),
            // About one second at the current rate.
            RateControl::Adaptive(_) => self.rate.max(1.0),
        }
    }

    /// Adds the tokens earned since the last refill, at the rate in force meanwhile.
    fn refill(&mut self, control: &RateControl, now: Instant) {
        // Nothing is earned during a pause (see `RateLimiters::pause`).
        if now <= self.refilled {
            return;
        }
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity(control));
        self.refilled = now;
    }

    /// Closes the measuring window once it is long enough.
    fn measure(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed < MEASURE_WINDOW {
            return;
        }
        let sent = f64::from(self.window_sent) / elapsed.as_secs_f64();
        // A rise counts at once (the cap it sets must not hold a ramp back); a fall is smoothed,
        // so one slow window does not pull the cap down.
        self.measured = Some(match self.measured {
            Some(m) if sent < m => 0.5 * m + 0.5 * sent,
            _ => sent,
        });
        self.window_start = now;
        self.window_sent = 0;
    }

    /// Takes a token, or says when to look again. Nothing is reserved ahead: a waiter looks again
    /// when a token would be there at the current rate, so a rate that rose meanwhile shortens
    /// every wait, and one that fell lengthens it.
    fn take(&mut self, control: &RateControl, now: Instant) -> Option<Wait> {
        if let Some(until) = self.paused_until.filter(|u| *u > now) {
            return Some(Wait::Pause(until));
        }
        self.refill(control, now);
        self.measure(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.window_sent = self.window_sent.saturating_add(1);
            return None;
        }
        let wait =
            Duration::try_from_secs_f64((1.0 - self.tokens) / self.rate).unwrap_or(Duration::from_secs(1));
        Some(Wait::Token(now + wait))
    }

    fn record(&mut self, adaptive: &AdaptiveRate, control: &RateControl, outcome: Outcome, now: Instant) {
        self.refill(control, now);
        self.measure(now);
        let since = self.last_outcome.map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        self.last_outcome = Some(now);
        match outcome {
            Outcome::Ok => {
                let step = since.min(MAX_GROWTH_STEP).as_secs_f64();
                let fraction = if self.last_cut.is_none() { SLOW_START_FRACTION } else { INCREASE_FRACTION };
                let growth = INCREASE_RPS.max(self.rate * fraction) * step;
                let used = self.measured.map_or(adaptive.start, |m| HEADROOM * m);
                let ceiling = adaptive.max.min(adaptive.start.max(used));
                self.rate = (self.rate + growth).min(ceiling).max(adaptive.floor);
            }
            Outcome::Throttled => {
                if self.last_cut.is_some_and(|cut| now.saturating_duration_since(cut) < CUT_COOLDOWN) {
                    return;
                }
                self.last_cut = Some(now);
                self.rate = (self.rate * DECREASE_FACTOR).clamp(adaptive.floor, adaptive.max);
                // No burst right after a 429: the next request waits for a token at the new rate.
                self.tokens = self.tokens.min(0.0);
            }
        }
    }
}

struct KeyState {
    bucket: Mutex<Bucket>,
}

impl KeyState {
    fn lock(&self) -> MutexGuard<'_, Bucket> {
        self.bucket.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn paused_until(&self) -> Option<Instant> {
        self.lock().paused_until
    }
}

/// The process-wide set of limiters. Create one at start-up and share it (it is behind an `Arc`)
/// with every client, so that all policies using the same endpoint and credentials share a budget.
/// Each key has its own small mutex, held for a few arithmetic steps and never across an await.
pub struct RateLimiters {
    control: RateControl,
    keys: RwLock<HashMap<LimiterKey, Arc<KeyState>>>,
}

impl std::fmt::Debug for RateLimiters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiters").field("control", &self.control).finish_non_exhaustive()
    }
}

impl RateLimiters {
    /// Limiters for every key, fixed ([`RateLimit`]) or adaptive ([`AdaptiveRate`]).
    pub fn new(control: impl Into<RateControl>) -> Arc<Self> {
        Arc::new(Self { control: control.into(), keys: RwLock::new(HashMap::new()) })
    }

    /// How every key's rate is set.
    pub fn control(&self) -> RateControl {
        self.control
    }

    fn state(&self, key: &LimiterKey) -> Arc<KeyState> {
        if let Some(state) = self.keys.read().unwrap_or_else(PoisonError::into_inner).get(key) {
            return state.clone();
        }
        let mut keys = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        keys.entry(key.clone())
            .or_insert_with(|| {
                Arc::new(KeyState { bucket: Mutex::new(Bucket::new(&self.control, Instant::now())) })
            })
            .clone()
    }

    /// Waits until a request for `key` may go: past any pause, then for a token from the bucket.
    pub async fn acquire(&self, key: &LimiterKey) {
        let state = self.state(key);
        loop {
            let wait = state.lock().take(&self.control, Instant::now());
            match wait {
                None => return,
                Some(Wait::Pause(until)) => tokio::time::sleep_until(until).await,
                Some(Wait::Token(at)) => tokio::time::sleep_until(at).await,
            }
        }
    }

    /// Tells the limiter of `key` how the server answered one request. In adaptive mode success
    /// raises the rate (by the larger of 10 requests per second or 20% of the rate, 400% before
    /// the key's first 429, per second of success, up to the maximum and to twice the measured send
    /// rate) and a 429 halves it (once per half second, down to the floor). A fixed rate ignores
    /// outcomes.
    pub fn record(&self, key: &LimiterKey, outcome: Outcome) {
        let RateControl::Adaptive(adaptive) = &self.control else {
            return;
        };
        self.state(key).lock().record(adaptive, &self.control, outcome, Instant::now());
    }

    /// Holds every request for `key` for `wait` from now (a server's `Retry-After`). An existing
    /// longer pause is kept.
    pub fn pause(&self, key: &LimiterKey, wait: Duration) {
        let state = self.state(key);
        let until = Instant::now() + wait;
        let mut bucket = state.lock();
        if bucket.paused_until.is_none_or(|p| p < until) {
            bucket.paused_until = Some(until);
        }
        // The bucket earns nothing while paused, so the end of a pause is not a burst.
        bucket.refill(&self.control, Instant::now());
        bucket.refilled = bucket.refilled.max(until);
    }

    /// When the pause on `key` ends, if one is in force.
    pub fn paused_until(&self, key: &LimiterKey) -> Option<Instant> {
        self.state(key).paused_until().filter(|u| *u > Instant::now())
    }

    /// The current rate of `key`, in requests per second.
    pub fn rate(&self, key: &LimiterKey) -> f64 {
        self.state(key).lock().rate
    }

    /// Every key seen so far with its current rate, for metrics.
    pub fn rates(&self) -> Vec<(LimiterKey, f64)> {
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        keys.iter().map(|(key, state)| (key.clone(), state.lock().rate)).collect()
    }
}

#[cfg(test)]
#[path = "ratelimit_tests.rs"]
mod tests;
