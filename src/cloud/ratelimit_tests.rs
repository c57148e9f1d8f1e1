//! Tests of the rate limiters, on a paused tokio clock so that seconds of traffic take no time.

use super::*;

fn key(host: &str, identity: &str) -> LimiterKey {
    LimiterKey { host: host.into(), identity: identity.into() }
}

fn limit(per_second: u32, burst: u32) -> RateLimit {
    RateLimit { per_second: NonZeroU32::new(per_second).unwrap(), burst: NonZeroU32::new(burst).unwrap() }
}

fn adaptive(start: u32, max: u32) -> AdaptiveRate {
    AdaptiveRate::new(NonZeroU32::new(start).unwrap(), NonZeroU32::new(max).unwrap())
}

/// Sends through `k` as fast as the limiter lets, each call answered with `outcome`, for `span`;
/// returns the calls sent.
async fn traffic(limiters: &RateLimiters, k: &LimiterKey, span: Duration, outcome: Outcome) -> u32 {
    let end = Instant::now() + span;
    let mut sent = 0;
    while Instant::now() < end {
        limiters.acquire(k).await;
        sent += 1;
        limiters.record(k, outcome);
    }
    sent
}

#[tokio::test(start_paused = true)]
async fn burst_then_sustained_rate() {
    let limiters = RateLimiters::new(limit(20, 5));
    let k = key("h", "ak");
    let start = Instant::now();
    for _ in 0..5 {
        limiters.acquire(&k).await;
    }
    assert_eq!(start.elapsed(), Duration::ZERO, "the burst goes at once, not at 20/s");
    for _ in 0..4 {
        limiters.acquire(&k).await;
    }
    let elapsed = start.elapsed();
    assert!(elapsed >= Duration::from_millis(199) && elapsed <= Duration::from_millis(201), "{elapsed:?}");
}

#[tokio::test(start_paused = true)]
async fn keys_have_separate_budgets() {
    let limiters = RateLimiters::new(limit(1, 1));
    let start = Instant::now();
    limiters.acquire(&key("h1", "ak")).await;
    limiters.acquire(&key("h2", "ak")).await;
    limiters.acquire(&key("h1", "ak2")).await;
    assert_eq!(start.elapsed(), Duration::ZERO, "no key waited a second for another");
}

#[tokio::test(start_paused = true)]
async fn a_pause_holds_everyone_on_the_key() {
    let limiters = RateLimiters::new(limit(1000, 1000));
    let k = key("h", "ak");
    limiters.pause(&k, Duration::from_millis(200));
    limiters.pause(&k, Duration::from_millis(50));
    assert!(limiters.paused_until(&k).is_some(), "a shorter pause does not shorten a longer one");
    assert!(limiters.paused_until(&key("h", "other")).is_none());
    let start = Instant::now();
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
        assert!(waited >= Duration::from_millis(200), "waited {waited:?}");
    }
    assert!(limiters.paused_until(&k).is_none(), "the pause ends");
    let other = Instant::now();
    limiters.acquire(&key("h", "other")).await;
    assert_eq!(other.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn the_rate_rises_while_calls_succeed() {
    let limiters = RateLimiters::new(AdaptiveRate::default());
    let k = key("h", "ak");
    assert_eq!(limiters.rate(&k), f64::from(DEFAULT_START_RPS));
    let first = traffic(&limiters, &k, Duration::from_secs(1), Outcome::Ok).await;
    let after_one = limiters.rate(&k);
    assert!(after_one > 60.0, "more than tripled within a second of success: {after_one}");
    let sent = traffic(&limiters, &k, Duration::from_secs(4), Outcome::Ok).await;
    let after_five = limiters.rate(&k);
    println!("first second {first} calls, rate {after_one:.1}; next 4 s {sent} calls, rate {after_five:.1}");
    assert!(after_five >= after_one, "did not fall: {after_five}");
    assert!(f64::from(first + sent) / 5.0 > 34.0, "faster than a sequential loop at 20 ms over 5 s");
    traffic(&limiters, &k, Duration::from_secs(30), Outcome::Ok).await;
    assert_eq!(limiters.rate(&k), f64::from(DEFAULT_MAX_RPS), "up to the maximum and no further");
}

#[tokio::test(start_paused = true)]
async fn a_429_halves_the_rate_once_per_burst_of_them() {
    let limiters = RateLimiters::new(adaptive(40, 200));
    let k = key("h", "ak");
    limiters.record(&k, Outcome::Throttled);
    assert_eq!(limiters.rate(&k), 20.0);
    limiters.record(&k, Outcome::Throttled);
    tokio::time::advance(Duration::from_millis(100)).await;
    limiters.record(&k, Outcome::Throttled);
    assert_eq!(limiters.rate(&k), 20.0, "429s of requests already in flight cut once");
    tokio::time::advance(Duration::from_millis(500)).await;
    limiters.record(&k, Outcome::Throttled);
    assert_eq!(limiters.rate(&k), 10.0, "a later 429 cuts again");
}

#[tokio::test(start_paused = true)]
async fn no_burst_follows_a_429() {
    let limiters = RateLimiters::new(adaptive(100, 200));
    let k = key("h", "ak");
    limiters.record(&k, Outcome::Throttled);
    let start = Instant::now();
    for _ in 0..5 {
        limiters.acquire(&k).await;
    }
    let elapsed = start.elapsed();
    assert!(elapsed >= Duration::from_millis(99), "5 calls at 50/s after the cut: {elapsed:?}");
}

#[tokio::test(start_paused = true)]
async fn the_rate_stays_between_floor_and_max() {
    let limiters = RateLimiters::new(adaptive(20, 50));
    let k = key("h", "ak");
    for _ in 0..20 {
        limiters.record(&k, Outcome::Throttled);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(limiters.rate(&k) >= FLOOR_RPS);
    }
    assert_eq!(limiters.rate(&k), FLOOR_RPS, "down to the floor and no further");
    traffic(&limiters, &k, Duration::from_secs(20), Outcome::Ok).await;
    assert_eq!(limiters.rate(&k), 50.0, "back up to the maximum and no further");
    let start = AdaptiveRate::new(NonZeroU32::new(500).unwrap(), NonZeroU32::new(30).unwrap());
    assert_eq!((start.start, start.max), (30.0, 30.0), "the start is capped by the maximum");
}

#[tokio::test(start_paused = true)]
async fn the_rate_does_not_run_far_ahead_of_use() {
    let limiters = RateLimiters::new(adaptive(20, 1000));
    let k = key("h", "ak");
    // A caller that sends 10 a second, well under the limit, for ten seconds.
    for _ in 0..100 {
        limiters.acquire(&k).await;
        limiters.record(&k, Outcome::Ok);
        tokio::time::advance(Duration::from_millis(100)).await;
    }
    assert_eq!(limiters.rate(&k), 20.0, "an unused budget does not grow");
}

#[tokio::test(start_paused = true)]
async fn a_fixed_rate_never_changes() {
    let limiters = RateLimiters::new(RateLimit::per_second(NonZeroU32::new(10).unwrap()));
    let k = key("h", "ak");
    traffic(&limiters, &k, Duration::from_secs(3), Outcome::Ok).await;
    assert_eq!(limiters.rate(&k), 10.0);
    for _ in 0..5 {
        limiters.record(&k, Outcome::Throttled);
        tokio::time::advance(Duration::from_secs(1)).await;
    }
    assert_eq!(limiters.rate(&k), 10.0);
    let sent = traffic(&limiters, &k, Duration::from_secs(2), Outcome::Ok).await;
    assert!((20..=31).contains(&sent), "10/s plus one second's burst: {sent}");
}

#[tokio::test(start_paused = true)]
async fn adaptive_keys_are_independent() {
    let limiters = RateLimiters::new(AdaptiveRate::default());
    let (a, b) = (key("h", "ak1"), key("h", "ak2"));
    traffic(&limiters, &a, Duration::from_secs(3), Outcome::Ok).await;
    assert!(limiters.rate(&a) > 20.0);
    assert_eq!(limiters.rate(&b), 20.0, "another key's success does not raise this one");
    limiters.record(&b, Outcome::Throttled);
    assert_eq!(limiters.rate(&b), 10.0);
    assert!(limiters.rate(&a) > 20.0, "another key's 429 does not cut this one");
    let mut rates = limiters.rates();
    rates.sort_by(|x, y| x.0.identity.cmp(&y.0.identity));
    assert_eq!(rates.iter().map(|(k, _)| k.identity.as_str()).collect::<Vec<_>>(), ["ak1", "ak2"]);
}

#[tokio::test(start_paused = true)]
async fn a_burst_after_quiet_is_at_most_one_second_of_rate() {
    let limiters = RateLimiters::new(adaptive(50, 200));
    let k = key("h", "ak");
    tokio::time::advance(Duration::from_secs(10)).await;
    let start = Instant::now();
    let mut at_once = 0;
    while start.elapsed() == Duration::ZERO {
        limiters.acquire(&k).await;
        at_once += 1;
    }
    assert_eq!(at_once, 51, "50 at once, the 51st waited");
}

#[tokio::test(start_paused = true)]
async fn the_end_of_a_pause_is_not_a_burst() {
    let limiters = RateLimiters::new(adaptive(100, 200));
    let k = key("h", "ak");
    limiters.record(&k, Outcome::Throttled);
    limiters.pause(&k, Duration::from_secs(1));
    let start = Instant::now();
    for _ in 0..6 {
        limiters.acquire(&k).await;
    }
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1099),
        "after the pause, 6 calls at 50/s with nothing saved up: {elapsed:?}"
    );
}
