//! The hostile-ids fault: list answers that also show tasks (and a protection group) whose ids a
//! client must never put into a DELETE path, dressed like the real tasks around them so that any
//! filter that matches those matches these too. Pure: no I/O, the clock is passed in.
//!
//! A client that trusted them would send, for example, `DELETE .../failure-jobs/batch` (the id
//! `batch`, or `../failure-jobs/batch` once the path is normalized), `DELETE /v3/{p}/failed-tasks/`
//! (the empty id) or the per-group batch of the group `.`, which normalizes to the project-wide
//! batch. They are made up on every list call and never stored, so no delete removes them.

use jiff::{SignedDuration, Timestamp};

use crate::cloud::model::{FailedTask, FailureJob, FailureJobFilter, ProtectionGroup};

use super::generate::{kps_time, sdrs_time};
use super::query::ServerGroupQuery;

/// The protection group id the fault lists: `.`, so that
/// `/task-center/./failure-jobs/batch` is the project-wide batch once normalized.
pub const GROUP_ID: &str = ".";

/// How old the made-up tasks are when there is no real task to copy: older than any `olderThan`.
const AGE: SignedDuration = SignedDuration::from_hours(24 * 365);

/// The job and task ids the fault lists, each unsafe in a path: empty, `.`, `..`, the word `batch`,
/// slashes, a traversal to the batch call, an over-long id, `?`, `#`, an encoded slash and a space.
pub fn task_ids() -> Vec<String> {
    [
        "",
        ".",
        "..",
        "batch",
        "a/b",
        "../failure-jobs/batch",
        "../failed-tasks",
        "t?force=true",
        "t#fragment",
        "..%2Fbatch",
        "t x",
    ]
    .into_iter()
    .map(str::to_string)
    .chain([format!("t{}", "0".repeat(200))])
    .collect()
}

/// SDRS failures with the hostile ids, copies of `template` (a real failure the same list shows)
/// or, without one, made to pass `filter`.
pub fn failure_jobs(
    template: Option<&FailureJob>,
    filter: &FailureJobFilter,
    now: Timestamp,
) -> Vec<FailureJob> {
    let base = template.cloned().unwrap_or_else(|| {
        let in_group = filter.server_group_id.is_some();
        let default_type = if in_group { "protected_instances" } else { "server_groups" };
        FailureJob {
            job_type: "createProtectedInstance".into(),
            job_status: "FAIL".into(),
            begin_time: sdrs_time(now.checked_sub(AGE).unwrap_or(now)),
            failure_status: filter.failure_status.clone().unwrap_or_else(|| "createFail".into()),
            resource_id: "res-hostile".into(),
            resource_name: filter.resource_name.clone().unwrap_or_else(|| "tmp-hostile".into()),
            resource_type: filter.resource_type.clone().unwrap_or_else(|| default_type.into()),
            error_code: "SDRS.1201".into(),
            fail_reason: "The ECS quota in the target AZ is insufficient.".into(),
            ..FailureJob::default()
        }
    });
    task_ids().into_iter().map(|job_id| FailureJob { job_id, ..base.clone() }).collect()
}

/// KPS failed tasks with the hostile ids, copies of `template` (a real task) when there is one.
pub fn failed_tasks(template: Option<&FailedTask>, now: Timestamp) -> Vec<FailedTask> {
    let base = template.cloned().unwrap_or_else(|| FailedTask {
        operate_type: "FAILED_UNBIND".into(),
        keypair_name: "tmp-hostile".into(),
        server_id: "srv-hostile".into(),
        server_name: "ecs-hostile".into(),
        task_time: kps_time(now.checked_sub(AGE).unwrap_or(now)),
        task_error_code: "KPS.2011".into(),
        task_error_msg: "The ECS is not in the stopped state.".into(),
        ..FailedTask::default()
    });
    task_ids().into_iter().map(|task_id| FailedTask { task_id, ..base.clone() }).collect()
}

/// The protection group with the hostile id, made to pass `query`.
pub fn protection_group(query: &ServerGroupQuery) -> ProtectionGroup {
    ProtectionGroup {
        id: GROUP_ID.into(),
        name: query.name.clone().unwrap_or_else(|| "pg-hostile".into()),
        status: query.status.clone().unwrap_or_else(|| "protected".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::modes::SdrsListing;
    use crate::emulator::query;
    use crate::emulator::store::SeededJob;
    use crate::purge::plan::is_safe_id;

    #[test]
    fn every_id_is_unsafe_and_distinct() {
        let ids = task_ids();
        assert!(ids.iter().all(|id| !is_safe_id(id)), "{ids:?}");
        assert!(!is_safe_id(GROUP_ID));
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), ids.len());
        assert!(ids.iter().any(|id| id.len() > crate::purge::plan::MAX_ID_LEN));
    }

    #[test]
    fn made_up_jobs_pass_the_filter_they_answer() {
        let now = Timestamp::UNIX_EPOCH;
        let filter = FailureJobFilter {
            server_group_id: Some(GROUP_ID.into()),
            resource_type: Some("replications".into()),
            failure_status: Some("failoverFail".into()),
            resource_name: Some("tmp".into()),
        };
        for job in failure_jobs(None, &filter, now) {
            let seeded = SeededJob::in_group(job, GROUP_ID);
            assert!(query::matches(&seeded, &filter, SdrsListing::Strict), "{seeded:?}");
        }
        let template =
            FailureJob { job_id: "real".into(), resource_name: "db-1".into(), ..FailureJob::default() };
        let copies = failure_jobs(Some(&template), &FailureJobFilter::default(), now);
        assert!(copies.iter().all(|j| j.resource_name == "db-1" && j.job_id != "real"));
        let query = ServerGroupQuery { status: Some("available".into()), ..ServerGroupQuery::default() };
        assert!(query.matches(&protection_group(&query)));
        assert_eq!(failed_tasks(None, now).len(), task_ids().len());
    }
}
