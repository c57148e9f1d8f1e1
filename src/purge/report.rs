//! What a purge run measured: one row per project x target, and the failures it met. No I/O.

use super::policy::PurgePolicy;
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
    /// Tasks the target covered before its calls; `None` when the list failed.
    pub found: Option<u64>,
    /// Tasks it covered before its calls that are gone after them; `None` when not measured.
    pub deleted: Option<u64>,
    /// In a dry run, what a real run would delete.
    pub would_delete: u64,
    /// Tasks the target still covers after its calls; `None` when not measured.
    pub remaining: Option<u64>,
    /// Why a count is `None`.
    pub unmeasured: Option<String>,
    /// Covered tasks left alone because an id their removal needs is not safe in a path.
    pub unsafe_ids: u64,
    /// Covered tasks the list after their calls still showed though the cloud accepted their
    /// DELETE, after one more try.
    pub not_removed: u64,
    /// `maxDeletionsPerRun` cut this target short.
    pub limited: bool,
    pub error: Option<CallFailure>,
}

impl TargetReport {
    /// A row for project `p` and target `t` of `policy`, with nothing measured yet.
    pub fn new(policy: &PurgePolicy, p: usize, t: usize, outcome: Outcome) -> Self {
        let target = &policy.targets[t];
        Self {
            project_index: p,
            target_index: t,
            project: policy.projects[p].id.clone(),
            service: target.service(),
            scope: target.scope(),
            outcome,
            found: None,
            deleted: None,
            would_delete: 0,
            remaining: None,
            unmeasured: None,
            unsafe_ids: 0,
            not_removed: 0,
            limited: false,
            error: None,
        }
    }
}

/// A whole run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunReport {
    pub targets: Vec<TargetReport>,
    /// Calls that failed after their retries.
    pub failed_calls: u64,
    /// Calls sent, list and delete.
    pub calls: u64,
    /// Single deletes planned against the deletion budget (or, in a dry run, that would be); the
    /// pipeline adds what earlier attempts of the same scheduled run spent.
    pub budget_spent: u64,
}

impl RunReport {
    /// Tasks found, over the rows whose list succeeded.
    pub fn found(&self) -> u64 {
        self.targets.iter().filter_map(|t| t.found).sum()
    }

    /// Tasks measured gone; a row whose count is unknown adds nothing, so this never overstates.
    pub fn deleted(&self) -> u64 {
        self.targets.iter().filter_map(|t| t.deleted).sum()
    }

    pub fn would_delete(&self) -> u64 {
        self.targets.iter().map(|t| t.would_delete).sum()
    }

    /// Tasks still in scope, or `None` when any row could not measure it.
    pub fn remaining(&self) -> Option<u64> {
        self.targets.iter().map(|t| t.remaining).sum()
    }

    /// Covered tasks left alone because of unsafe ids.
    pub fn unsafe_ids(&self) -> u64 {
        self.targets.iter().map(|t| t.unsafe_ids).sum()
    }

    /// Covered tasks the cloud kept after accepting their DELETE.
    pub fn not_removed(&self) -> u64 {
        self.targets.iter().map(|t| t.not_removed).sum()
    }

    /// Rows whose counts are unknown.
    pub fn unmeasured(&self) -> usize {
        self.targets.iter().filter(|t| t.unmeasured.is_some()).count()
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
            found: Some(3),
            deleted: Some(2),
            would_delete: 0,
            remaining: Some(1),
            unmeasured: None,
            unsafe_ids: 0,
            not_removed: 0,
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
            budget_spent: 0,
        };
        assert_eq!((report.found(), report.deleted(), report.remaining()), (9, 6, Some(3)));
        let mut unknown = report.clone();
        unknown.targets[0].deleted = None;
        unknown.targets[0].remaining = None;
        unknown.targets[0].unmeasured = Some("the list after deleting failed".into());
        assert_eq!((unknown.deleted(), unknown.remaining(), unknown.unmeasured()), (4, None, 1));
        assert_eq!(report.projects(), 2);
        assert_eq!(report.worst_failure().unwrap().kind, FailureKind::Authentication);
    }
}
