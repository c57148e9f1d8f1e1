//! Wire types of the SDRS and KPS failed-task APIs, shared by the client and the emulator. No I/O.

use serde::{Deserialize, Serialize};

/// One failed SDRS job, as `GET /v1/{project_id}/task-center/failure-jobs` returns it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FailureJob {
    pub job_id: String,
    pub job_type: String,
    pub job_status: String,
    /// `2019-04-01T12:00:00.000Z`.
    pub begin_time: String,
    pub failure_status: String,
    pub resource_id: String,
    pub resource_name: String,
    pub resource_type: String,
    pub error_code: String,
    pub fail_reason: String,
}

/// A page of the SDRS list; `count` is the total number of matching jobs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FailureJobPage {
    pub failure_jobs: Vec<FailureJob>,
    pub count: u64,
}

/// Filters of the SDRS list. Empty fields are not sent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FailureJobFilter {
    pub failure_status: Option<String>,
    pub resource_name: Option<String>,
    pub server_group_id: Option<String>,
    pub resource_type: Option<String>,
}

/// One failed KPS task, as `GET /v3/{project_id}/failed-tasks` returns it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FailedTask {
    pub task_id: String,
    /// FAILED_RESET, FAILED_REPLACE or FAILED_UNBIND.
    pub operate_type: String,
    pub task_time: String,
    pub task_error_code: String,
    pub task_error_msg: String,
    pub server_name: String,
    pub server_id: String,
    pub keypair_name: String,
}

/// A page of the KPS list; `total` is the total number of failed tasks.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FailedTaskPage {
    pub total: u64,
    pub tasks: Vec<FailedTask>,
}

/// SDRS `resource_type` values.
pub const SDRS_RESOURCE_TYPES: [&str; 4] =
    ["server_groups", "protected_instances", "replications", "disaster_recovery_drills"];
/// The resource type the SDRS batch delete clears.
pub const SERVER_GROUPS: &str = "server_groups";
/// SDRS `failure_status` values.
pub const SDRS_FAILURE_STATUSES: [&str; 11] = [
    "createFail",
    "deleteFail",
    "attachFail",
    "detachFail",
    "expandFail",
    "resizeFail",
    "startFail",
    "stopFail",
    "reverseFail",
    "failoverFail",
    "reprotectFail",
];
/// KPS `operate_type` values.
pub const KPS_OPERATE_TYPES: [&str; 3] = ["FAILED_RESET", "FAILED_REPLACE", "FAILED_UNBIND"];
/// Largest page both list calls accept.
pub const MAX_PAGE: u32 = 1000;
