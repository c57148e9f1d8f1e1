//! What a purge run measured: one row per project x target, and the failures it met. No I/O.

use crate::api::{Scope, Service, TargetOutcome};

/// Why a cloud call failed, as far as a purge cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// 401/403: the credentials were refused. Retrying cannot help.
    Authentication,
    /// 429 after retries.
    Throttled,
    /// 408, 5xx, timeouts, resets or garbage bodies after retries.
    Unavailable,
    /// Any other 4xx: the request itself was refused.
    Rejected,
}

/// A failed call, as status and events report it. Holds no secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallFailure {
    pub kind: FailureKind,
    pub http_status: Option<u16>,
    pub code: String,
    pub message: String,
    pub request_id: Option<String>,
}

impl CallFailure {
    pub fn new(kind: FailureKind, http_status: Option<u16>, code: &str, message: &str) -> Self {
        Self { kind, http_status, code: code.into(), message: message.into(), request_id: None }
    }
}

/// How one project x target ended.
pub type Outcome = TargetOutcome;

/// The outcome a failed call gives its target.
pub fn outcome_of(failure: &CallFailure) -> Outcome {
    match failure.kind {
        FailureKind::Throttled => Outcome::Throttled,
        _ => Outcome::Failed,
    }
}

/// One project x target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetReport {
    pub project_index: usize,
    pub target_index: usize,
    pub project: String,
    pub service: Service,
    pub scope: Scope,
    pub outcome: Outcome,
    /// Tasks the target covered before the run.
    pub found: u64,
    /// Tasks that were there before and are gone after.
    pub deleted: u64,
    /// In a dry run, what a real run would delete.
    pub would_delete: u64,
    /// Tasks the target still covers after the run.
    pub remaining: u64,
    /// `maxDeletionsPerRun` cut this target short.
    pub limited: bool,
    pub error: Option<CallFailure>,
}

/// A whole run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunReport {
    pub targets: Vec<TargetReport>,
    /// Calls that failed after their retries.
    pub failed_calls: u64,
    /// Calls sent, list and delete.
    pub calls: u64,
}

impl RunReport {
    fn sum(&self, f: impl Fn(&TargetReport) -> u64) -> u64 {
        self.targets.iter().map(f).sum()
    }

    pub fn found(&self) -> u64 {
        self.sum(|t| t.found)
    }

    pub fn deleted(&self) -> u64 {
        self.sum(|t| t.deleted)
    }

    pub fn would_delete(&self) -> u64 {
        self.sum(|t| t.would_delete)
    }

    pub fn remaining(&self) -> u64 {
        self.sum(|t| t.remaining)
    }

    pub fn limited(&self) -> bool {
        self.targets.iter().any(|t| t.limited)
    }

    /// The first failure of the most telling kind: authentication, then throttling, then the rest.
    pub fn worst_failure(&self) -> Option<&CallFailure> {
        let errors = || self.targets.iter().filter_map(|t| t.error.as_ref());
        [FailureKind::Authentication, FailureKind::Throttled, FailureKind::Unavailable, FailureKind::Rejected]
            .into_iter()
            .find_map(|kind| errors().find(|e| e.kind == kind))
    }

    /// Number of distinct projects in the report.
    pub fn projects(&self) -> usize {
        let mut ids: Vec<&str> = self.targets.iter().map(|t| t.project.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        ids.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(project: &str, error: Option<CallFailure>) -> TargetReport {
        TargetReport {
            project_index: 0,
            target_index: 0,
            project: project.into(),
            service: Service::Kps,
            scope: Scope::All,
            outcome: Outcome::Purged,
            found: 3,
            deleted: 2,
            would_delete: 0,
            remaining: 1,
            limited: false,
            error,
        }
    }

    #[test]
    fn sums_and_picks_the_most_telling_failure() {
        let report = RunReport {
            targets: vec![
                row("a", Some(CallFailure::new(FailureKind::Unavailable, Some(503), "503", "down"))),
                row("b", Some(CallFailure::new(FailureKind::Authentication, Some(401), "APIGW.0301", "bad"))),
                row("a", None),
            ],
            failed_calls: 2,
            calls: 9,
        };
        assert_eq!((report.found(), report.deleted(), report.remaining()), (9, 6, 3));
        assert_eq!(report.projects(), 2);
        assert_eq!(report.worst_failure().unwrap().kind, FailureKind::Authentication);
    }
}
