//! The audit trail: one structured record per failed task a run deleted, at info level under the
//! target `taskreaper::audit`. Writes only through `tracing`.

use super::plan::AuditFields;
use crate::api::Service;

/// The `tracing` target of audit records.
pub const TARGET: &str = "taskreaper::audit";

/// Where a deleted task lived and which policy deleted it.
#[derive(Clone, Copy, Debug)]
pub struct Origin<'a> {
    /// `namespace/name` of the policy, or the file `taskreaper purge` read it from.
    pub policy: &'a str,
    pub project: &'a str,
    pub service: Service,
}

/// Records that the task `id` was deleted.
pub fn deleted(origin: &Origin<'_>, id: &str, fields: &AuditFields<'_>) {
    tracing::info!(
        target: TARGET,
        id,
        project = origin.project,
        service = origin.service.as_str(),
        "type" = fields.kind,
        resource = fields.resource,
        status = fields.status,
        error_code = fields.error_code,
        task_time = &*fields.task_time,
        policy = origin.policy,
        "deleted failed task"
    );
}
