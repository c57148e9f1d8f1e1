//! Fault injection for cloud calls: added latency, random error statuses, connection resets,
//! malformed list bodies, and a deterministic queue of statuses for the next calls. The decision is
//! pure given the seeded random generator.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

/// In `fail_next`, the code that closes the connection without an answer.
pub const RESET: u16 = 0;
/// What a random error picks from when `error_statuses` is empty.
pub const DEFAULT_ERROR_STATUS: u16 = 503;

/// Faults applied to cloud endpoints (never to `/_emulator`). Missing JSON fields take their
/// defaults, which inject nothing.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Faults {
    /// Added before every cloud call is handled.
    pub latency_ms: u64,
    /// Chance (0..=1) that a call is answered with one of `error_statuses`.
    pub error_rate: f64,
    /// Statuses (400..=599) a random error picks from; empty means 503.
    pub error_statuses: Vec<u16>,
    /// `Retry-After` seconds sent with every 429.
    pub retry_after_secs: u64,
    /// Chance (0..=1) that the connection is closed without an answer.
    pub reset_rate: f64,
    /// Chance (0..=1) that a successful list answer is cut short or replaced by HTML.
    pub malformed_rate: f64,
    /// Chance (0..=1) that any call, DELETEs included, is answered 200 with an HTML page (a
    /// gateway's error page) and not handled at all.
    pub html_rate: f64,
    /// Chance (0..=1) that a DELETE is answered as a success (204 for SDRS, 200 for KPS) without
    /// deleting anything.
    pub ignore_delete_rate: f64,
    /// Statuses for the next cloud calls, in order, before any random fault; 0 closes the
    /// connection without an answer.
    pub fail_next: Vec<u16>,
    /// Every list answer also shows tasks whose ids are not safe in a path (empty, `.`, `..`,
    /// `batch`, `a/b`, `../failure-jobs/batch`, over-long, with `?`, `#` or `%2F`), copies of a
    /// real task of the same list so that they match the same filters, and the protection group
    /// list shows a group with the id `.`; see [`super::hostile`]. They are never stored.
    pub hostile_ids: bool,
}

/// Why a fault configuration was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FaultsError {
    #[error("{name} must be between 0 and 1, got {value}")]
    RateOutOfRange { name: &'static str, value: f64 },
    #[error("{name} holds {status}, but only 400..=599{reset} are allowed")]
    BadStatus { name: &'static str, status: u16, reset: &'static str },
}

impl Faults {
    /// Checks rates and statuses.
    pub fn validate(&self) -> Result<(), FaultsError> {
        for (name, value) in [
            ("error_rate", self.error_rate),
            ("reset_rate", self.reset_rate),
            ("malformed_rate", self.malformed_rate),
            ("html_rate", self.html_rate),
            ("ignore_delete_rate", self.ignore_delete_rate),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(FaultsError::RateOutOfRange { name, value });
            }
        }
        if let Some(&status) = self.error_statuses.iter().find(|s| !(400..=599).contains(*s)) {
            return Err(FaultsError::BadStatus { name: "error_statuses", status, reset: "" });
        }
        if let Some(&status) = self.fail_next.iter().find(|s| **s != RESET && !(400..=599).contains(*s)) {
            return Err(FaultsError::BadStatus { name: "fail_next", status, reset: " and 0 (reset)" });
        }
        Ok(())
    }

    pub fn latency(&self) -> Duration {
        Duration::from_millis(self.latency_ms)
    }
}

/// How a malformed list answer is broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// The JSON cut in half.
    Truncated,
    /// An HTML page instead of JSON.
    Html,
}

/// What to do with one cloud call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultAction {
    Serve,
    Reset,
    Status(u16),
    Malformed(Malformed),
    /// 200 with an HTML page, the call not handled.
    HtmlPage,
    /// A DELETE answered as a success, nothing deleted.
    IgnoreDelete,
}

/// The current faults and the generator their chances draw from.
#[derive(Debug)]
pub struct FaultState {
    faults: Faults,
    rng: StdRng,
}

/// A rate as a probability `random_bool` accepts.
fn chance(rate: f64) -> f64 {
    if rate.is_nan() { 0.0 } else { rate.clamp(0.0, 1.0) }
}

impl FaultState {
    pub fn new(faults: Faults, seed: u64) -> Self {
        Self { faults, rng: StdRng::seed_from_u64(seed) }
    }

    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    pub fn set(&mut self, faults: Faults) {
        self.faults = faults;
    }

    /// Decides the fate of the next call. `is_list` marks the calls whose body may be malformed,
    /// `is_delete` the calls that may be accepted and ignored. The queue comes first; chances of
    /// zero draw nothing from the generator.
    pub fn decide(&mut self, is_list: bool, is_delete: bool) -> FaultAction {
        if !self.faults.fail_next.is_empty() {
            return match self.faults.fail_next.remove(0) {
                RESET => FaultAction::Reset,
                status => FaultAction::Status(status),
            };
        }
        let roll = |rate: f64, rng: &mut StdRng| rate > 0.0 && rng.random_bool(chance(rate));
        if roll(self.faults.reset_rate, &mut self.rng) {
            return FaultAction::Reset;
        }
        if roll(self.faults.error_rate, &mut self.rng) {
            let status = self.faults.error_statuses.choose(&mut self.rng).copied();
            return FaultAction::Status(status.unwrap_or(DEFAULT_ERROR_STATUS));
        }
        if roll(self.faults.html_rate, &mut self.rng) {
            return FaultAction::HtmlPage;
        }
        if is_delete && roll(self.faults.ignore_delete_rate, &mut self.rng) {
            return FaultAction::IgnoreDelete;
        }
        if is_list && roll(self.faults.malformed_rate, &mut self.rng) {
            let kind = if self.rng.random_bool(0.5) { Malformed::Truncated } else { Malformed::Html };
            return FaultAction::Malformed(kind);
        }
        FaultAction::Serve
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_is_served_in_order_then_normal() {
        let mut state = FaultState::new(Faults { fail_next: vec![429, 0, 503], ..Faults::default() }, 1);
        assert_eq!(state.decide(false, false), FaultAction::Status(429));
        assert_eq!(state.decide(true, false), FaultAction::Reset);
        assert_eq!(state.decide(false, false), FaultAction::Status(503));
        assert_eq!(state.decide(true, false), FaultAction::Serve);
        assert!(state.faults().fail_next.is_empty());
    }

    #[test]
    fn rates_of_one_always_fire_and_zero_never() {
        let mut state = FaultState::new(Faults { reset_rate: 1.0, ..Faults::default() }, 1);
        assert!((0..50).all(|_| state.decide(false, false) == FaultAction::Reset));
        let mut state = FaultState::new(
            Faults { error_rate: 1.0, error_statuses: vec![500, 502], ..Faults::default() },
            1,
        );
        let picked: Vec<FaultAction> = (0..200).map(|_| state.decide(false, false)).collect();
        assert!(picked.contains(&FaultAction::Status(500)) && picked.contains(&FaultAction::Status(502)));
        assert!(picked.iter().all(|a| matches!(a, FaultAction::Status(500 | 502))));
        let mut state = FaultState::new(Faults { error_rate: 1.0, ..Faults::default() }, 1);
        assert_eq!(state.decide(false, false), FaultAction::Status(DEFAULT_ERROR_STATUS));
        let mut state = FaultState::new(Faults::default(), 1);
        assert!((0..50).all(|_| state.decide(true, false) == FaultAction::Serve));
    }

    #[test]
    fn malformed_only_hits_lists() {
        let mut state = FaultState::new(Faults { malformed_rate: 1.0, ..Faults::default() }, 3);
        assert_eq!(state.decide(false, false), FaultAction::Serve);
        let kinds: Vec<FaultAction> = (0..100).map(|_| state.decide(true, false)).collect();
        assert!(kinds.contains(&FaultAction::Malformed(Malformed::Truncated)));
        assert!(kinds.contains(&FaultAction::Malformed(Malformed::Html)));
    }

    #[test]
    fn html_pages_hit_every_call_and_ignored_deletes_only_deletes() {
        let mut state = FaultState::new(Faults { html_rate: 1.0, ..Faults::default() }, 3);
        assert!(
            [(false, false), (true, false), (false, true)]
                .iter()
                .all(|&(list, delete)| state.decide(list, delete) == FaultAction::HtmlPage)
        );
        let mut state = FaultState::new(Faults { ignore_delete_rate: 1.0, ..Faults::default() }, 3);
        assert_eq!(state.decide(true, false), FaultAction::Serve);
        assert_eq!(state.decide(false, true), FaultAction::IgnoreDelete);
        assert!(Faults { ignore_delete_rate: 2.0, ..Faults::default() }.validate().is_err());
    }

    #[test]
    fn partial_rates_are_roughly_honoured_and_seeded() {
        let run = |seed| {
            let mut state = FaultState::new(Faults { error_rate: 0.3, ..Faults::default() }, seed);
            (0..1000).map(|_| state.decide(false, false)).collect::<Vec<_>>()
        };
        let a = run(9);
        assert_eq!(a, run(9), "same seed, same faults");
        let errors = a.iter().filter(|x| **x != FaultAction::Serve).count();
        assert!((220..380).contains(&errors), "{errors}");
    }

    #[test]
    fn validation_names_the_bad_field() {
        assert_eq!(Faults::default().validate(), Ok(()));
        assert_eq!(
            Faults { reset_rate: 1.5, ..Faults::default() }.validate(),
            Err(FaultsError::RateOutOfRange { name: "reset_rate", value: 1.5 })
        );
        assert!(Faults { error_rate: f64::NAN, ..Faults::default() }.validate().is_err());
        assert!(Faults { error_statuses: vec![200], ..Faults::default() }.validate().is_err());
        assert!(Faults { fail_next: vec![0, 429, 504], ..Faults::default() }.validate().is_ok());
        assert!(Faults { error_statuses: vec![0], ..Faults::default() }.validate().is_err());
        let err = Faults { fail_next: vec![302], ..Faults::default() }.validate().unwrap_err();
        assert_eq!(err.to_string(), "fail_next holds 302, but only 400..=599 and 0 (reset) are allowed");
    }

    #[test]
    fn partial_json_keeps_defaults() {
        let f: Faults = serde_json::from_str(r#"{"fail_next":[429,0],"retry_after_secs":2}"#).unwrap();
        assert_eq!(f, Faults { fail_next: vec![429, 0], retry_after_secs: 2, ..Faults::default() });
        let f: Faults = serde_json::from_str(r#"{"hostile_ids":true}"#).unwrap();
        assert_eq!(f, Faults { hostile_ids: true, ..Faults::default() });
    }
}
