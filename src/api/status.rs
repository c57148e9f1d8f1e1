//! The `FailedTaskCleanupPolicy` status: conditions, schedule times and the measured result of
//! the last run. No I/O.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::conditions::{ConditionType, Reason};
use super::policy::{Scope, Service};

/// What the controller observed and did.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FailedTaskCleanupPolicyStatus {
    /// The metadata.generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Ready (the last run did what the policy asks), Reconciling (a run is in progress) and
    /// Stalled (the user must change something before the policy can run), keyed by type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// The last value of the annotation taskreaper.io/requested-at that triggered a run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_requested_at: Option<String>,

    /// When the last run started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<Time>,

    /// When the last run that ended without failures started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_time: Option<Time>,

    /// When the next scheduled run starts; absent while suspended or stalled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_schedule_time: Option<Time>,

    /// The result of the last run, measured by listing before and after deleting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<RunSummary>,

    /// Failed tasks deleted since the policy was created, summed over every run.
    #[serde(default)]
    #[schemars(extend("format" = "int64"))]
    pub total_deleted: u64,
}

impl FailedTaskCleanupPolicyStatus {
    /// The condition of the given type, if present.
    pub fn condition(&self, condition_type: ConditionType) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == condition_type.as_str())
    }

    /// The reason of the condition of the given type, read back as a [`Reason`]; `None` when the
    /// condition is absent or its reason is not one this version writes.
    pub fn reason(&self, condition_type: ConditionType) -> Option<Reason> {
        self.condition(condition_type)?.reason.parse().ok()
    }
}

/// The result of one run.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    /// When the run started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,

    /// When the run ended; absent while it is in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,

    /// Failed tasks in scope found before deleting, over all projects and targets.
    #[serde(default)]
    #[schemars(extend("format" = "int64"))]
    pub found: u64,

    /// Failed tasks that are gone after the run (measured: found minus what a second listing
    /// still shows); targets whose counts are unknown add nothing.
    #[serde(default)]
    #[schemars(extend("format" = "int64"))]
    pub deleted: u64,

    /// In a dry run: failed tasks that would have been deleted.
    #[serde(default)]
    #[schemars(extend("format" = "int64"))]
    pub would_delete: u64,

    /// Failed tasks in scope still present after the run; absent when a target could not list
    /// after deleting (see the targets' `unmeasured`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "int64"))]
    pub remaining: Option<u64>,

    /// Cloud calls that failed after retries.
    #[serde(default)]
    #[schemars(extend("format" = "int64"))]
    pub failed_calls: u64,

    /// Single deletes (Matching targets) this scheduled run has spent of maxDeletionsPerRun, the
    /// attempts that retried it after a transient failure included: a retry shares the budget of
    /// the run it retries.
    #[serde(default)]
    #[schemars(extend("format" = "int64"))]
    pub budget_used: u64,

    /// Failed tasks in scope left alone because the cloud gave them an id (or a protection group
    /// id) that is not safe in a URL path: empty, longer than 128 characters, or holding anything
    /// but letters, digits, '-' and '_', or the word batch. Sending such an id could delete
    /// something else, so it is never sent; the tasks stay and count in remaining. Summed over
    /// every target; omitted when 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    #[schemars(extend("format" = "int64"))]
    pub unsafe_ids: u64,

    /// Failed tasks the list after their calls still showed although the cloud accepted their
    /// DELETE, sent twice; summed over every target, omitted when 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    #[schemars(extend("format" = "int64"))]
    pub not_removed: u64,

    /// Whose credentials the run used, never a secret: "Secret <name>", or "ServiceAccount <name>
    /// via identity provider <id>" (or the controller's own token) for workload identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<String>,

    /// One entry per project and target, at most 128 of them (failed ones first); the rest
    /// summed per project and service (see summedRows).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1024))]
    pub targets: Vec<TargetResult>,
}

/// The result of one target in one project.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TargetResult {
    /// The project id.
    pub project: String,

    /// Position of the target in spec.targets, counting from 0.
    #[serde(default)]
    #[schemars(extend("format" = "int32"))]
    pub target_index: u32,

    /// The target's service.
    pub service: Service,

    /// The target's scope.
    pub scope: Scope,

    /// Purged (deleted what was in scope), DryRun (counted only), Failed (a call failed; see
    /// error), Throttled (the cloud kept answering 429), Skipped (not attempted, for example
    /// because maxDeletionsPerRun was reached).
    pub outcome: TargetOutcome,

    /// Failed tasks in scope found before this target's calls; absent when the list failed.
    /// Tasks an earlier target of the same project removed are not found again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "int64"))]
    pub found: Option<u64>,

    /// Failed tasks found before this target's calls and gone after them; absent when not
    /// measured (see unmeasured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "int64"))]
    pub deleted: Option<u64>,

    /// In a dry run: failed tasks that would have been deleted.
    #[serde(default)]
    #[schemars(extend("format" = "int64"))]
    pub would_delete: u64,

    /// Failed tasks in scope still present after this target's calls; absent when not measured
    /// (see unmeasured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "int64"))]
    pub remaining: Option<u64>,

    /// Why found, deleted or remaining is absent, for example "the list after deleting failed".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unmeasured: Option<String>,

    /// Failed tasks this target covers that were left alone because their id (or their
    /// protection group's id) is not safe in a URL path: empty, longer than 128 characters, or
    /// holding anything but letters, digits, '-' and '_', or the word batch. They count in found
    /// and remaining; omitted when 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    #[schemars(extend("format" = "int64"))]
    pub unsafe_ids: u64,

    /// Failed tasks this target covers that the list after its calls still showed although the
    /// cloud accepted their DELETE, sent twice. They count in remaining, never in deleted; the
    /// row fails with code NotRemoved and the policy is retried soon. Omitted when 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    #[schemars(extend("format" = "int64"))]
    pub not_removed: u64,

    /// On a row that sums others, so that the status stays under its size ceiling: how many
    /// rows of this project and service it stands for (targetIndex is the first of them; scope
    /// is All when they differ). Failed rows are kept one by one first. Omitted on a plain row.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    #[schemars(extend("format" = "int32"))]
    pub summed_rows: u32,

    /// The failed call, when outcome is Failed or Throttled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<CallError>,
}

/// Whether a count is zero, so that it is left out of the status.
fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

/// How one target fared in one project.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TargetOutcome {
    /// Everything in scope was deleted (or nothing was found).
    Purged,
    /// Counted only; nothing was deleted.
    DryRun,
    /// A call failed; see error.
    Failed,
    /// The cloud throttled the calls and retries ran out.
    Throttled,
    /// Not attempted.
    Skipped,
}

impl TargetOutcome {
    /// The name used in the status, events and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            TargetOutcome::Purged => "Purged",
            TargetOutcome::DryRun => "DryRun",
            TargetOutcome::Failed => "Failed",
            TargetOutcome::Throttled => "Throttled",
            TargetOutcome::Skipped => "Skipped",
        }
    }
}

/// A failed Huawei Cloud call, as reported by the cloud. Never contains credentials.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CallError {
    /// The HTTP status, absent when no response arrived (for example a connection failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "int32"))]
    pub http_status: Option<u16>,

    /// Authentication (the credentials were refused), Throttled (the cloud kept answering 429),
    /// Unavailable (no answer, a timeout, 408 or 5xx) or Rejected (a refusal that comes back the
    /// same on every try: another 4xx, a body too large or of the wrong shape, endless paging).
    /// Throttled and Unavailable bring the next run forward; the others wait for the schedule or a
    /// change to the policy or its Secret. Absent in statuses written by earlier versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<FailureClass>,

    /// The cloud's error code, such as SDRS.1601 or KPS.XXX, or a short local code when no
    /// response arrived.
    #[serde(default)]
    pub code: String,

    /// The cloud's error message.
    #[serde(default)]
    pub message: String,

    /// The X-Request-Id of the failed response, to quote to Huawei Cloud support.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// Why the call failed, which alone decides whether the next run comes early: Authentication (the
/// credentials were refused; waits for the Secret to change), Throttled (the cloud kept answering
/// 429) and Unavailable (no answer, a timeout, 408, 5xx or a garbled body) are tried again soon;
/// Rejected (another 4xx, a body too large or of the wrong shape, endless paging) waits for the
/// schedule or a change to the policy.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailureClass {
    /// The credentials were refused (HTTP 401 or 403). Waits for the Secret to change.
    Authentication,
    /// The cloud kept answering 429 after retries. Tried again soon.
    Throttled,
    /// No answer, a timeout, 408, 5xx or a garbled body after retries. Tried again soon.
    Unavailable,
    /// Refused in a way that comes back the same on every try. Waits for the schedule or a change.
    Rejected,
}

impl FailureClass {
    /// Whether the same call may succeed when simply tried again, without anyone changing anything.
    pub const fn is_transient(self) -> bool {
        match self {
            FailureClass::Throttled | FailureClass::Unavailable => true,
            FailureClass::Authentication | FailureClass::Rejected => false,
        }
    }
}
