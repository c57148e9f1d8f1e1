//! When a policy runs next. Pure: the clock and the last run are passed in, so a restart computes
//! the same answer and neither skips nor doubles a run.

use croner::Cron;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use sha2::{Digest, Sha256};
use std::str::FromStr;
use std::time::Duration;

/// A compiled schedule.
#[derive(Clone, Debug)]
pub enum Schedule {
    /// Every `every`, counted from the last run; the first run happens at once.
    Interval { every: Duration, jitter: Duration },
    /// At each cron occurrence in `tz`, after the last run (or after creation for the first).
    Cron { cron: Box<Cron>, tz: TimeZone, jitter: Duration },
}

/// Why a schedule could not be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScheduleError {
    #[error("cron expression {expr:?} is invalid: {reason}; use five fields, e.g. \"0 3 * * *\"")]
    ParseCron { expr: String, reason: String },
    #[error("time zone {0:?} is not an IANA time zone name such as \"Asia/Shanghai\" or \"UTC\"")]
    LookupTimeZone(String),
}

impl Schedule {
    /// Compiles a cron schedule; the time zone defaults to UTC.
    pub fn cron(expr: &str, time_zone: Option<&str>, jitter: Duration) -> Result<Self, ScheduleError> {
        let fields = expr.split_whitespace().count();
        if fields != 5 && !expr.trim_start().starts_with('@') {
            return Err(ScheduleError::ParseCron {
                expr: expr.into(),
                reason: format!("it has {fields} fields"),
            });
        }
        let cron = Cron::from_str(expr)
            .map_err(|e| ScheduleError::ParseCron { expr: expr.into(), reason: e.to_string() })?;
        let tz = match time_zone {
            None => TimeZone::UTC,
            Some(name) => TimeZone::get(name).map_err(|_| ScheduleError::LookupTimeZone(name.into()))?,
        };
        Ok(Self::Cron { cron: Box::new(cron), tz, jitter })
    }

    fn jitter(&self) -> Duration {
        match self {
            Self::Interval { jitter, .. } | Self::Cron { jitter, .. } => *jitter,
        }
    }

    /// The next planned run. `last_run` is `status.lastScheduleTime`; `created` the policy's creation
    /// time; `key` makes the jitter stable per policy (its uid). `None` when a cron never fires again.
    pub fn next_run(&self, last_run: Option<Timestamp>, created: Timestamp, key: &str) -> Option<Timestamp> {
        let base = match (self, last_run) {
            (Self::Interval { .. }, None) => return Some(created),
            (Self::Interval { every, .. }, Some(last)) => {
                last.checked_add(SignedDuration::try_from(*every).ok()?).ok()?
            }
            (Self::Cron { cron, tz, .. }, last) => {
                let after = last.unwrap_or(created).to_zoned(tz.clone());
                cron.find_next_occurrence(&after, false).ok()?.timestamp()
            }
        };
        base.checked_add(jitter_offset(self.jitter(), key, base)).ok()
    }
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

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn interval_runs_at_once_then_every_interval_from_the_last_run() {
        let s = Schedule::Interval { every: HOUR, jitter: Duration::ZERO };
        let created = t("2026-11-22T00:00:00Z");
        assert_eq!(s.next_run(None, created, "uid"), Some(created));
        assert_eq!(
            s.next_run(Some(t("2026-11-22T05:10:00Z")), created, "uid"),
            Some(t("2026-11-22T06:10:00Z"))
        );
    }

    #[test]
    fn restart_neither_skips_nor_doubles() {
        // The same status gives the same answer however often it is asked.
        let s = Schedule::cron("0 3 * * *", Some("Asia/Shanghai"), Duration::from_secs(60)).unwrap();
        let last = Some(t("2026-11-21T19:00:00Z"));
        let a = s.next_run(last, t("2026-01-01T00:00:00Z"), "uid");
        let b = s.next_run(last, t("2026-01-01T00:00:00Z"), "uid");
        assert_eq!(a, b);
        let a = a.unwrap();
        assert!(a >= t("2026-11-22T19:00:00Z") && a < t("2026-11-22T19:01:00Z"), "{a}");
    }

    #[test]
    fn cron_follows_the_time_zone() {
        // 03:00 in Shanghai is 19:00 UTC the day before.
        let s = Schedule::cron("0 3 * * *", Some("Asia/Shanghai"), Duration::ZERO).unwrap();
        assert_eq!(s.next_run(None, t("2026-11-22T10:00:00Z"), "k"), Some(t("2026-11-22T19:00:00Z")));
        let utc = Schedule::cron("*/15 * * * *", None, Duration::ZERO).unwrap();
        assert_eq!(
            utc.next_run(Some(t("2026-11-22T10:07:00Z")), t("2026-01-01T00:00:00Z"), "k"),
            Some(t("2026-11-22T10:15:00Z"))
        );
    }

    #[test]
    fn jitter_is_bounded_stable_and_spreads_policies() {
        let s = Schedule::Interval { every: HOUR, jitter: Duration::from_secs(600) };
        let last = Some(t("2026-11-22T00:00:00Z"));
        let created = t("2026-11-01T00:00:00Z");
        let offsets: Vec<Timestamp> =
            (0..20).map(|i| s.next_run(last, created, &format!("uid-{i}")).unwrap()).collect();
        assert!(offsets.iter().all(|n| *n >= t("2026-11-22T01:00:00Z") && *n < t("2026-11-22T01:10:00Z")));
        assert!(offsets.iter().collect::<std::collections::BTreeSet<_>>().len() > 10);
        assert_eq!(s.next_run(last, created, "uid-3"), Some(offsets[3]));
    }

    #[test]
    fn bad_cron_and_zone_explain_themselves() {
        assert!(matches!(
            Schedule::cron("0 3 * *", None, Duration::ZERO),
            Err(ScheduleError::ParseCron { .. })
        ));
        assert!(matches!(
            Schedule::cron("99 3 * * *", None, Duration::ZERO),
            Err(ScheduleError::ParseCron { .. })
        ));
        assert_eq!(
            Schedule::cron("0 3 * * *", Some("Mars/Olympus"), Duration::ZERO).unwrap_err(),
            ScheduleError::LookupTimeZone("Mars/Olympus".into())
        );
    }
}
