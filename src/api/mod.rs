//! The `FailedTaskCleanupPolicy` custom resource (`taskreaper.io/v1alpha1`): spec and status
//! types, admission rules, typed conditions, full Rust validation and CRD rendering. No I/O.

pub mod conditions;
pub mod crd;
pub mod duration;
pub mod patterns;
pub mod policy;
pub mod status;
pub mod validate;

/// A complete example policy (every target kind, endpoint overrides, a per-project region).
pub const EXAMPLE_POLICY: &str = include_str!("example.yaml");

/// YAML as `kubectl` writes it: every string on one line, never a folded block.
pub fn to_yaml<T: serde::Serialize>(value: &T) -> Result<String, serde_saphyr::ser::Error> {
    serde_saphyr::to_string_with_options(value, serde_saphyr::ser_options! { prefer_block_scalars: false })
}

pub use conditions::{ConditionType, Reason};
pub use crd::{crd, crd_yaml, write_crd};
pub use duration::{DurationError, parse_duration};
pub use policy::{
    CredentialsRef, Endpoints, FailedTaskCleanupPolicy, FailedTaskCleanupPolicySpec, KpsOperateType, Project,
    ProjectDiscovery, Schedule, Scope, SdrsFailureStatus, SdrsResourceType, Service, Target, TaskMatch,
    WorkloadIdentity,
};
pub use status::{
    CallError, FailedTaskCleanupPolicyStatus, FailureClass, RunSummary, TargetOutcome, TargetResult,
};
pub use validate::{
    CredentialSource, EndpointProblem, ScheduleKind, SpecError, ValidDiscovery, ValidMatch, ValidProject,
    ValidSchedule, ValidTarget, ValidatedSpec, endpoint_problems, validate,
};
