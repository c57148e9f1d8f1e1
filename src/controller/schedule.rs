//! When a policy runs next. Pure: the clock and the last run are passed in, so a restart computes
//! the same answer and neither skips nor doubles a run.

use crate::api::{ScheduleKind, ValidSchedule};
use jiff::{SignedDuration, Timestamp};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// The next planned run. `last_run` is `status.lastScheduleTime`; `created` the policy's creation
/// time; `key` makes the jitter stable per policy (its uid). An interval schedule runs at once the
/// first time, then every interval from the last run; a cron schedule runs at each occurrence in
/// its time zone after the last run (or after creation). `None` when a cron never fires again.
pub fn next_run(
    schedule: &ValidSchedule,
    last_run: Option<Timestamp>,
    created: Timestamp,
    key: &str,
) -> Option<Timestamp> {
    let base = match (&schedule.kind, last_run) {
        (ScheduleKind::Interval(_), None) => return Some(created),
        (ScheduleKind::Interval(every), Some(last)) => {
            last.checked_add(SignedDuration::try_from(*every).ok()?).ok()?
        }
        (ScheduleKind::Cron { cron, time_zone }, last) => {
            let after = last.unwrap_or(created).to_zoned(time_zone.clone());
            cron.find_next_occurrence(&after, false).ok()?.timestamp()
        }
    };
    base.checked_add(jitter_offset(schedule.jitter, key, base)).ok()
}

/// The first wait before retrying a run that failed for a reason a retry can fix.
pub const RETRY_MIN: Duration = Duration::from_secs(30);
/// The longest such wait.
pub const RETRY_MAX: Duration = Duration::from_secs(10 * 60);

/// When to retry a run that failed transiently (throttled, unavailable, timed out). The wait is
/// how long the policy has been failing, between [`RETRY_MIN`] and [`RETRY_MAX`], so consecutive
/// failures back off exponentially (30s, 30s, 1m, 2m, 4m, ...), and a restart computes the same
/// time from the status: `last_run` is `status.lastScheduleTime`, `failing_since` the time the
/// Ready condition turned False.
pub fn retry_run(last_run: Timestamp, failing_since: Timestamp) -> Timestamp {
    let failing = Duration::try_from(last_run.duration_since(failing_since)).unwrap_or(Duration::ZERO);
    let wait = SignedDuration::try_from(failing.clamp(RETRY_MIN, RETRY_MAX)).unwrap_or(SignedDuration::ZERO);
    last_run.checked_add(wait).unwrap_or(Timestamp::MAX)
}

/// A deterministic offset in `[0, jitter)` from a hash of the key and the planned time, so replicas
/// and restarts agree while policies spread out.
fn jitter_offset(jitter: Duration, key: &str, planned: Timestamp) -> SignedDuration {
    let millis = u64::try_from(jitter.as_millis()).unwrap_or(u64::MAX);
    if millis == 0 {
        return SignedDuration::ZERO;
    }
    let digest = Sha256::digest(format!("{key}/{}", planned.as_second()).as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    SignedDuration::from_millis(i64::try_from(u64::from_be_bytes(first) % millis).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use croner::Cron;
    use jiff::tz::TimeZone;
    use std::str::FromStr;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    const HOUR: Duration = Duration::from_secs(3600);

    fn interval(every: Duration, jitter: Duration) -> ValidSchedule {
        ValidSchedule { kind: ScheduleKind::Interval(every), jitter }
    }

    fn cron(expr: &str, zone: &str, jitter: Duration) -> ValidSchedule {
        let kind = ScheduleKind::Cron {
            cron: Box::new(Cron::from_str(expr).unwrap()),
            time_zone: TimeZone::get(zone).unwrap(),
        };
        ValidSchedule { kind, jitter }
    }

    #[test]
    fn interval_runs_at_once_then_every_interval_from_the_last_run() {
        let s = interval(HOUR, Duration::ZERO);
        let created = t("2026-11-22T00:00:00Z");
        assert_eq!(next_run(&s, None, created, "uid"), Some(created));
        assert_eq!(
            next_run(&s, Some(t("2026-11-22T05:10:00Z")), created, "uid"),
            Some(t("2026-11-22T06:10:00Z"))
        );
    }

    #[test]
    fn restart_neither_skips_nor_doubles() {
        // The same status gives the same answer however often it is asked.
        let s = cron("0 3 * * *", "Asia/Shanghai", Duration::from_secs(60));
        let last = Some(t("2026-11-21T19:00:00Z"));
        let a = next_run(&s, last, t("2026-01-01T00:00:00Z"), "uid");
        assert_eq!(a, next_run(&s, last, t("2026-01-01T00:00:00Z"), "uid"));
        let a = a.unwrap();
        assert!(a >= t("2026-11-22T19:00:00Z") && a < t("2026-11-22T19:01:00Z"), "{a}");
    }

    #[test]
    fn cron_follows_the_time_zone() {
        // 03:00 in Shanghai is 19:00 UTC the day before.
        let s = cron("0 3 * * *", "Asia/Shanghai", Duration::ZERO);
        assert_eq!(next_run(&s, None, t("2026-11-22T10:00:00Z"), "k"), Some(t("2026-11-22T19:00:00Z")));
        let utc = cron("*/15 * * * *", "UTC", Duration::ZERO);
        let last = Some(t("2026-11-22T10:07:00Z"));
        assert_eq!(next_run(&utc, last, t("2026-01-01T00:00:00Z"), "k"), Some(t("2026-11-22T10:15:00Z")));
    }

    #[test]
    fn transient_failures_back_off_exponentially_up_to_the_cap() {
        // Each run starts when the previous retry is due; the first failure was recorded when the
        // first run ended, a second after it started.
        let first = t("2026-11-22T00:00:00Z");
        let since = t("2026-11-22T00:00:01Z");
        let mut run = first;
        let mut waits = Vec::new();
        for _ in 0..8 {
            let next = retry_run(run, since);
            waits.push(next.duration_since(run).as_secs());
            run = next;
        }
        assert_eq!(waits, [30, 30, 59, 118, 236, 472, 600, 600]);
    }

    #[test]
    fn jitter_is_bounded_stable_and_spreads_policies() {
        let s = interval(HOUR, Duration::from_secs(600));
        let last = Some(t("2026-11-22T00:00:00Z"));
        let created = t("2026-11-01T00:00:00Z");
        let runs: Vec<Timestamp> =
            (0..20).map(|i| next_run(&s, last, created, &format!("uid-{i}")).unwrap()).collect();
        assert!(runs.iter().all(|n| *n >= t("2026-11-22T01:00:00Z") && *n < t("2026-11-22T01:10:00Z")));
        assert!(runs.iter().collect::<std::collections::BTreeSet<_>>().len() > 10);
        assert_eq!(next_run(&s, last, created, "uid-3"), Some(runs[3]));
    }
}
