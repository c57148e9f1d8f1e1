//! Typed condition types and reasons of a `FailedTaskCleanupPolicy` status, shared by the
//! controller, the status computation and the `purge` command. No I/O.

use std::fmt;
use std::str::FromStr;

/// Condition types a policy reports, following the kstatus convention.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConditionType {
    /// True when the last run did what the policy asks; False says why not.
    Ready,
    /// True while a run is in progress.
    Reconciling,
    /// True when the controller cannot make progress until the user changes something.
    Stalled,
}

impl ConditionType {
    /// Every condition type, in the order they appear in the status.
    pub const ALL: [ConditionType; 3] =
        [ConditionType::Ready, ConditionType::Reconciling, ConditionType::Stalled];

    /// The `type` string written to the status.
    pub const fn as_str(self) -> &'static str {
        match self {
            ConditionType::Ready => "Ready",
            ConditionType::Reconciling => "Reconciling",
            ConditionType::Stalled => "Stalled",
        }
    }
}

/// Machine-readable `reason` of a condition (also used for event reasons and metric labels).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// The last run deleted every failed task in scope (or there were none).
    Purged,
    /// The last run was a dry run: it listed and counted, and deleted nothing.
    DryRun,
    /// `spec.suspend` is true: no cloud calls are made.
    Suspended,
    /// The policy is accepted and waits for its first scheduled run.
    Waiting,
    /// A run is in progress.
    Running,
    /// No run is in progress.
    Idle,
    /// Nothing blocks the policy.
    AsExpected,
    /// The Secret named by `spec.credentialsRef` does not exist in the policy's namespace, or the
    /// controller was started without workload identity for a policy that asks for it.
    CredentialsNotFound,
    /// The Secret exists but holds neither `accessKeyId` + `secretAccessKey` nor `authToken`, or the
    /// controller may not request tokens for the ServiceAccount of `spec.workloadIdentity`.
    CredentialsInvalid,
    /// Huawei Cloud rejected the credentials (HTTP 401 or 403).
    AuthenticationFailed,
    /// An endpoint override is not on the controller's endpoint allowlist.
    EndpointNotAllowed,
    /// Huawei Cloud throttled the calls (HTTP 429) and retries ran out.
    Throttled,
    /// Some projects or targets failed while others succeeded.
    PartialFailure,
    /// Huawei Cloud could not be reached or answered with a server error.
    CloudUnavailable,
    /// `spec.maxDeletionsPerRun` stopped the run before every match was deleted.
    DeletionLimitReached,
    /// The spec passed admission but the controller cannot use it (see the message).
    InvalidSpec,
}

impl Reason {
    /// Every reason.
    pub const ALL: [Reason; 16] = [
        Reason::Purged,
        Reason::DryRun,
        Reason::Suspended,
        Reason::Waiting,
        Reason::Running,
        Reason::Idle,
        Reason::AsExpected,
        Reason::CredentialsNotFound,
        Reason::CredentialsInvalid,
        Reason::AuthenticationFailed,
        Reason::EndpointNotAllowed,
        Reason::Throttled,
        Reason::PartialFailure,
        Reason::CloudUnavailable,
        Reason::DeletionLimitReached,
        Reason::InvalidSpec,
    ];

    /// The `reason` string written to the status (UpperCamelCase, as Kubernetes requires).
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::Purged => "Purged",
            Reason::DryRun => "DryRun",
            Reason::Suspended => "Suspended",
            Reason::Waiting => "Waiting",
            Reason::Running => "Running",
            Reason::Idle => "Idle",
            Reason::AsExpected => "AsExpected",
            Reason::CredentialsNotFound => "CredentialsNotFound",
            Reason::CredentialsInvalid => "CredentialsInvalid",
            Reason::AuthenticationFailed => "AuthenticationFailed",
            Reason::EndpointNotAllowed => "EndpointNotAllowed",
            Reason::Throttled => "Throttled",
            Reason::PartialFailure => "PartialFailure",
            Reason::CloudUnavailable => "CloudUnavailable",
            Reason::DeletionLimitReached => "DeletionLimitReached",
            Reason::InvalidSpec => "InvalidSpec",
        }
    }
}

/// A string that names no known condition type or reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConditionsError {
    /// Parsing a condition type failed.
    #[error("unknown condition type {0:?}")]
    ParseConditionType(String),
    /// Parsing a reason failed.
    #[error("unknown condition reason {0:?}")]
    ParseReason(String),
}

impl FromStr for ConditionType {
    type Err = ConditionsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ConditionType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| ConditionsError::ParseConditionType(s.to_owned()))
    }
}

impl FromStr for Reason {
    type Err = ConditionsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reason::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| ConditionsError::ParseReason(s.to_owned()))
    }
}

impl fmt::Display for ConditionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_follow_kubernetes_reason_syntax() {
        // metav1.Condition: reason must match ^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$.
        let reason_syntax = regex::Regex::new("^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$").unwrap();
        for r in Reason::ALL {
            assert_eq!(r.as_str().parse::<Reason>(), Ok(r));
            assert_eq!(r.to_string(), r.as_str());
            assert!(reason_syntax.is_match(r.as_str()), "{r}");
        }
        for t in ConditionType::ALL {
            assert_eq!(t.as_str().parse::<ConditionType>(), Ok(t));
        }
        let names: std::collections::BTreeSet<_> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), Reason::ALL.len(), "reasons are distinct");
    }

    #[test]
    fn unknown_names_are_errors() {
        assert_eq!(
            "ready".parse::<ConditionType>(),
            Err(ConditionsError::ParseConditionType("ready".into()))
        );
        assert_eq!("Nope".parse::<Reason>(), Err(ConditionsError::ParseReason("Nope".into())));
    }

    #[test]
    fn design_reasons_exist() {
        for name in [
            "Purged",
            "DryRun",
            "Suspended",
            "CredentialsNotFound",
            "CredentialsInvalid",
            "AuthenticationFailed",
            "EndpointNotAllowed",
            "Throttled",
            "PartialFailure",
            "CloudUnavailable",
            "InvalidSpec",
        ] {
            assert!(name.parse::<Reason>().is_ok(), "{name}");
        }
    }
}
