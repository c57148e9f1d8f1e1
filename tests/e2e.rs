//! End-to-end scenarios of the controller: a real kube-apiserver (RBAC on, the shipped CRD and
//! ClusterRole), the controller in process as `taskreaper-controller`, and the SDRS/KPS emulator
//! over HTTPS. Each test has its own namespace, emulator and controller, and checks status,
//! conditions, Events and what the emulator still holds.
//!
//! Run through `bash tests/run.sh`, or with `TASKREAPER_CONTROL_PLANE_BIN` set.

mod common;

use std::time::Duration;

use common::e2e::{
    AK, Env, PROJECT_A, PROJECT_B, PROJECT_C, SECRET_PICKUP, SK, condition, condition_is, eventually,
    kps_all, kps_matching, sdrs_all, sdrs_groups, sdrs_matching, status_yaml,
};
use jiff::{SignedDuration, Timestamp};
use serde_json::json;
use taskreaper::api::{
    ConditionType, FailedTaskCleanupPolicy, FailedTaskCleanupPolicyStatus, KpsOperateType, RunSummary, Scope,
    SdrsFailureStatus, SdrsResourceType, Service, TargetOutcome, TaskMatch,
};
use taskreaper::cloud::model::{FailedTask, FailureJob, ProtectionGroup};
use taskreaper::controller::pipeline::SECRET_RETRY_MIN;
use taskreaper::emulator::{
    KPS_ONE, KPS_TASKS, KpsTaskTime, Modes, SDRS_BATCH, SDRS_GROUP_BATCH, SDRS_GROUPS, SDRS_LIST, SDRS_ONE,
    SdrsListing, Seed, SeededJob,
};

const GROUP_1: &str = "897f57b2-6e94-4179-b414-9532726c59f2";
const GROUP_2: &str = "3d1c4e5f-0a9b-4c8d-9e7f-6a5b4c3d2e1f";
const GROUP_3: &str = "5b7e2c1d-8f4a-4e3b-9c6d-1a2b3c4d5e6f";
const GROUP_EMPTY: &str = "0e1d2c3b-4a59-4687-a5b4-c3d2e1f0a9b8";

/// Generated tasks: per project `tasks_per_kind` KPS tasks of each documented operate type plus one
/// outside the enum (3n + 1), and 4n + 2 SDRS failures in and above three protection groups.
fn generated(projects: &[&str], tasks_per_kind: usize) -> Seed {
    Seed::Generated {
        projects: projects.iter().map(|p| (*p).to_string()).collect(),
        tasks_per_kind,
        seed: 11,
    }
}

fn ago(hours: i64) -> Timestamp {
    Timestamp::now() - SignedDuration::from_hours(hours)
}

/// An SDRS failed job: inside protection group `group`, or protection-group-level without one.
fn job(
    id: &str,
    resource_type: &str,
    failure_status: &str,
    name: &str,
    hours_ago: i64,
    group: Option<&str>,
) -> SeededJob {
    SeededJob::new(
        FailureJob {
            job_id: id.into(),
            job_type: "createProtectedInstance".into(),
            job_status: "FAIL".into(),
            begin_time: taskreaper::emulator::sdrs_time(ago(hours_ago)),
            failure_status: failure_status.into(),
            resource_id: format!("res-{id}"),
            resource_name: name.into(),
            resource_type: resource_type.into(),
            error_code: "SDRS.1201".into(),
            fail_reason: "The ECS quota in the target AZ is insufficient.".into(),
        },
        group.map(str::to_string),
    )
}

/// A KPS failed task.
fn task(id: &str, operate_type: &str, keypair: &str, hours_ago: i64) -> FailedTask {
    FailedTask {
        task_id: id.into(),
        operate_type: operate_type.into(),
        task_time: taskreaper::emulator::kps_time(ago(hours_ago)),
        task_error_code: "KPS.2011".into(),
        task_error_msg: "The ECS is not in the stopped state.".into(),
        server_name: format!("ecs-{id}"),
        server_id: format!("srv-{id}"),
        keypair_name: keypair.into(),
    }
}

fn status(policy: &FailedTaskCleanupPolicy) -> &FailedTaskCleanupPolicyStatus {
    policy
        .status
        .as_ref()
        .unwrap_or_else(|| panic!("policy {} has no status", policy.metadata.name.as_deref().unwrap_or("?")))
}

fn last_run(policy: &FailedTaskCleanupPolicy) -> &RunSummary {
    status(policy).last_run.as_ref().unwrap_or_else(|| panic!("no lastRun in:\n{}", status_yaml(policy)))
}

fn ready_message(policy: &FailedTaskCleanupPolicy) -> String {
    condition(policy, ConditionType::Ready).map(|c| c.message.clone()).unwrap_or_default()
}

/// The checks every successful run shares: counts add up per target, conditions are settled and
/// describe the current generation, schedule times are set.
fn assert_settled_run(policy: &FailedTaskCleanupPolicy) {
    let yaml = status_yaml(policy);
    let s = status(policy);
    let run = last_run(policy);
    assert_eq!(s.observed_generation, policy.metadata.generation, "{yaml}");
    for c in &s.conditions {
        assert_eq!(c.observed_generation, policy.metadata.generation, "condition {}: {yaml}", c.type_);
    }
    assert!(condition_is(policy, ConditionType::Reconciling, "False", "Idle"), "{yaml}");
    assert!(condition_is(policy, ConditionType::Stalled, "False", "AsExpected"), "{yaml}");
    assert!(run.targets.iter().all(|t| t.unmeasured.is_none() && t.deleted.is_some()), "{yaml}");
    assert_eq!(run.found, run.targets.iter().filter_map(|t| t.found).sum::<u64>(), "{yaml}");
    assert_eq!(run.deleted, run.targets.iter().filter_map(|t| t.deleted).sum::<u64>(), "{yaml}");
    assert_eq!(run.remaining, run.targets.iter().map(|t| t.remaining).sum::<Option<u64>>(), "{yaml}");
    let started =
        s.last_schedule_time.as_ref().map(|t| t.0).unwrap_or_else(|| panic!("no lastScheduleTime: {yaml}"));
    let next =
        s.next_schedule_time.as_ref().map(|t| t.0).unwrap_or_else(|| panic!("no nextScheduleTime: {yaml}"));
    assert_eq!(next.duration_since(started), SignedDuration::from_hours(1), "an hourly interval: {yaml}");
    assert!(run.start_time.is_some() && run.completion_time.is_some(), "{yaml}");
}

// --- 1-5: each target kind deletes exactly what it covers --------------------------------------

/// Runs an SDRS scenario under each reading of the list call: the strict one (the unfiltered list
/// shows only protection-group-level failures) and the loose one (it shows every failure).
macro_rules! under_both_readings {
    ($name:ident, $scenario:ident) => {
        mod $name {
            #[tokio::test]
            async fn strict() {
                super::$scenario(taskreaper::emulator::SdrsListing::Strict).await;
            }
            #[tokio::test]
            async fn loose() {
                super::$scenario(taskreaper::emulator::SdrsListing::Loose).await;
            }
        }
    };
}

fn reading(listing: SdrsListing) -> &'static str {
    match listing {
        SdrsListing::Strict => "strict",
        SdrsListing::Loose => "loose",
    }
}

/// Prints what the status reported beside what left the emulator, for the test log.
fn report_counts(scenario: &str, run: &RunSummary, before: usize, after: usize) {
    println!(
        "{scenario}: status found {} deleted {} remaining {:?}; the emulator held {before}, now {after}: {} left",
        run.found,
        run.deleted,
        run.remaining,
        before - after
    );
}

/// An emulator reading the list call as `listing` says, with protection groups 1-3 and an empty one.
async fn sdrs_env(prefix: &str, listing: SdrsListing) -> Env {
    let env = Env::with_credentials(&format!("{prefix}-{}", reading(listing)), Seed::Empty).await;
    let store = env.emulator.store();
    store.set_modes(Modes { sdrs_listing: listing, ..store.modes() });
    let group = |id: &str, name: &str| ProtectionGroup {
        id: id.into(),
        name: name.into(),
        status: "available".into(),
    };
    store.add_server_groups(
        PROJECT_A,
        [
            group(GROUP_1, "prod-pg-01"),
            group(GROUP_2, "dr-pg-02"),
            group(GROUP_3, "tmp-pg-03"),
            group(GROUP_EMPTY, "empty-pg"),
        ],
    );
    env
}

/// Group-level failures (one naming a group that no longer exists) and failures inside three groups.
fn three_groups() -> Vec<SeededJob> {
    vec![
        job("pg-1", "server_groups", "createFail", "prod-pg-01", 5, None),
        job("pg-gone", "server_groups", "deleteFail", "old-pg", 50, None),
        job("g1-vm", "protected_instances", "attachFail", "prod-vm-01", 6, Some(GROUP_1)),
        job("g1-rep", "replications", "createFail", "prod-rep-01", 7, Some(GROUP_1)),
        job("g2-vm", "protected_instances", "createFail", "tmp-vm-02", 48, Some(GROUP_2)),
        job("g2-drill", "disaster_recovery_drills", "createFail", "dr-drill-02", 8, Some(GROUP_2)),
        job("g3-vm", "protectedInstance", "createFail", "tmp-vm-03", 60, Some(GROUP_3)),
        job("g3-rep", "replications", "expandFail", "tmp-rep-03", 9, Some(GROUP_3)),
    ]
}

async fn sdrs_all_clears_every_sdrs_failure(listing: SdrsListing) {
    let env = sdrs_env("e2e-sdrs-all", listing).await;
    let store = env.emulator.store();
    store.add_failure_jobs(PROJECT_A, three_groups());
    store.add_failed_tasks(PROJECT_A, [task("t1", "FAILED_UNBIND", "kp-a", 100)]);

    env.create(&env.policy("sdrs-all", &[PROJECT_A], vec![sdrs_all()])).await;
    let policy = env.wait_ready("sdrs-all", "True", "Purged").await;
    let yaml = status_yaml(&policy);
    assert_settled_run(&policy);

    let run = last_run(&policy);
    assert_eq!((run.found, run.deleted, run.remaining, run.failed_calls), (8, 8, Some(0), 0), "{yaml}");
    assert_eq!(run.targets.len(), 1, "{yaml}");
    let row = &run.targets[0];
    assert_eq!((row.project.as_str(), row.service, row.scope), (PROJECT_A, Service::Sdrs, Scope::All));
    assert_eq!(
        (row.outcome, row.found, row.deleted, row.remaining),
        (TargetOutcome::Purged, Some(8), Some(8), Some(0)),
        "{yaml}"
    );
    assert!(row.error.is_none(), "{yaml}");
    assert_eq!(status(&policy).total_deleted, 8, "{yaml}");
    assert_eq!(ready_message(&policy), "1 project: 8 deleted, 0 remaining");
    assert!(status(&policy).last_successful_time.is_some(), "{yaml}");

    // Every SDRS failure went, group-level and in-group alike; KPS was not touched.
    assert!(env.job_ids(PROJECT_A).is_empty(), "{:?}", env.job_ids(PROJECT_A));
    report_counts(
        &format!("SDRS All ({})", reading(listing)),
        run,
        three_groups().len(),
        env.job_ids(PROJECT_A).len(),
    );
    assert_eq!(env.task_ids(PROJECT_A), ["t1"]);
    let calls = env.calls();
    assert_eq!(calls.route("DELETE", SDRS_BATCH), 1, "{calls:?}");
    assert_eq!(calls.route("DELETE", SDRS_GROUP_BATCH), 3, "one per group with failures: {calls:?}");
    assert_eq!(calls.deletes, 4, "{calls:?}");
    assert_eq!(calls.route("GET", SDRS_GROUPS), 1, "protection groups are listed once per run: {calls:?}");
    // The group-level list and the four groups' lists, before and after.
    assert_eq!(calls.route("GET", SDRS_LIST), 2 * 5, "{calls:?}");

    env.wait_event("sdrs-all", "Normal", "Purged", |note| {
        note == "1 project: 8 deleted, 0 remaining (credentials: Secret hwcloud-credentials)"
    })
    .await;
    env.assert_secret_never_shown("sdrs-all").await;
    env.finish().await;
}
under_both_readings!(sdrs_all_clears_group_level_and_in_group_failures, sdrs_all_clears_every_sdrs_failure);

async fn sdrs_protection_groups_clear_only_the_listed_groups(listing: SdrsListing) {
    let env = sdrs_env("e2e-sdrs-groups", listing).await;
    env.emulator.store().add_failure_jobs(PROJECT_A, three_groups());

    let targets = vec![sdrs_groups(&[GROUP_1, GROUP_2, GROUP_EMPTY])];
    env.create(&env.policy("groups", &[PROJECT_A], targets)).await;
    let policy = env.wait_ready("groups", "True", "Purged").await;
    let yaml = status_yaml(&policy);
    assert_settled_run(&policy);
    let run = last_run(&policy);
    assert_eq!((run.found, run.deleted, run.remaining), (4, 4, Some(0)), "{yaml}");
    assert_eq!(run.targets.len(), 1, "{yaml}");
    assert_eq!(
        (run.targets[0].scope, run.targets[0].outcome),
        (Scope::ProtectionGroups, TargetOutcome::Purged)
    );

    assert_eq!(
        env.job_ids(PROJECT_A),
        ["g3-rep", "g3-vm", "pg-1", "pg-gone"],
        "the unlisted group's failures and the group-level failures stay"
    );
    report_counts(
        &format!("SDRS ProtectionGroups ({})", reading(listing)),
        run,
        three_groups().len(),
        env.job_ids(PROJECT_A).len(),
    );
    let calls = env.calls();
    // Each listed group is listed before; the two with failures are batch-deleted and listed again.
    assert_eq!(calls.route("GET", SDRS_LIST), 3 + 3, "{calls:?}");
    assert_eq!(calls.route("GET", SDRS_GROUPS), 0, "listed groups need no discovery: {calls:?}");
    assert_eq!(calls.route("DELETE", SDRS_GROUP_BATCH), 2, "{calls:?}");
    assert_eq!(calls.deletes, 2, "{calls:?}");

    env.wait_event("groups", "Normal", "Purged", |note| note.contains("4 deleted")).await;
    env.assert_secret_never_shown("groups").await;
    env.finish().await;
}
under_both_readings!(
    sdrs_protection_groups_delete_only_the_listed_groups,
    sdrs_protection_groups_clear_only_the_listed_groups
);

async fn sdrs_matching_finds_instances_in_every_group(listing: SdrsListing) {
    let env = sdrs_env("e2e-sdrs-match", listing).await;
    env.emulator.store().add_failure_jobs(
        PROJECT_A,
        [
            job("match-g1", "protected_instances", "createFail", "tmp-a", 48, Some(GROUP_1)),
            job("match-g2", "protected_instances", "createFail", "tmp-b", 100, Some(GROUP_2)),
            job("match-g3", "protected_instances", "createFail", "tmp-c", 30, Some(GROUP_3)),
            job("too-young", "protected_instances", "createFail", "tmp-d", 1, Some(GROUP_1)),
            job("other-status", "protected_instances", "deleteFail", "tmp-e", 48, Some(GROUP_2)),
            job("other-type", "replications", "createFail", "tmp-f", 48, Some(GROUP_2)),
            job("odd-type", "protectedInstance", "createFail", "tmp-g", 48, Some(GROUP_3)),
            job("other-name", "protected_instances", "createFail", "prod-h", 48, Some(GROUP_3)),
            job("group-level", "server_groups", "createFail", "tmp-pg", 48, None),
        ],
    );
    let seeded = env.job_ids(PROJECT_A).len();
    let filter = TaskMatch {
        resource_types: Some(vec![SdrsResourceType::ProtectedInstances]),
        failure_statuses: Some(vec![SdrsFailureStatus::CreateFail]),
        name_pattern: Some("^tmp-".into()),
        older_than: Some("24h".into()),
        ..TaskMatch::default()
    };
    env.create(&env.policy("sdrs-match", &[PROJECT_A], vec![sdrs_matching(filter)])).await;
    let policy = env.wait_ready("sdrs-match", "True", "Purged").await;
    let yaml = status_yaml(&policy);
    assert_settled_run(&policy);
    let run = last_run(&policy);
    assert_eq!((run.found, run.deleted, run.remaining), (3, 3, Some(0)), "{yaml}");
    assert_eq!(run.targets[0].scope, Scope::Matching);

    assert_eq!(
        env.job_ids(PROJECT_A),
        ["group-level", "odd-type", "other-name", "other-status", "other-type", "too-young"]
    );
    report_counts(
        &format!("SDRS Matching protected instances ({})", reading(listing)),
        run,
        seeded,
        env.job_ids(PROJECT_A).len(),
    );
    let calls = env.calls();
    assert_eq!(calls.route("DELETE", SDRS_ONE), 3, "{calls:?}");
    assert_eq!(calls.deletes, 3, "one delete per match, no batch: {calls:?}");
    assert_eq!(calls.route("GET", SDRS_GROUPS), 1, "{calls:?}");
    // Only the groups' lists: protected instances are not group-level failures.
    assert_eq!(calls.route("GET", SDRS_LIST), 2 * 4, "{calls:?}");

    env.wait_event("sdrs-match", "Normal", "Purged", |note| {
        note == "1 project: 3 deleted, 0 remaining (credentials: Secret hwcloud-credentials)"
    })
    .await;
    env.assert_secret_never_shown("sdrs-match").await;
    env.finish().await;
}
under_both_readings!(
    sdrs_matching_deletes_protected_instances_across_groups,
    sdrs_matching_finds_instances_in_every_group
);

/// KPS failed tasks in the documented shape: times as epoch-millisecond strings (or numbers),
/// `null` error fields, an operate type outside the enum.
async fn kps_documented_shape(time: KpsTaskTime) {
    let name = match time {
        KpsTaskTime::String => "e2e-kps-shape-string",
        KpsTaskTime::Number => "e2e-kps-shape-number",
    };
    let env = Env::with_credentials(name, Seed::Empty).await;
    let store = env.emulator.store();
    store.set_modes(Modes { kps_task_time: time, ..store.modes() });
    let bare =
        |t: FailedTask| FailedTask { task_error_code: String::new(), task_error_msg: String::new(), ..t };
    store.add_failed_tasks(
        PROJECT_A,
        [
            bare(task("old-unbind", "FAILED_UNBIND", "kp-a", 100)),
            task("older-unbind", "FAILED_UNBIND", "kp-b", 400),
            task("young-unbind", "FAILED_UNBIND", "kp-c", 10),
            bare(task("running-reset", "RUNNING_RESET", "kp-d", 100)),
        ],
    );
    let filter = TaskMatch {
        operate_types: Some(vec![KpsOperateType::FailedUnbind]),
        name_pattern: Some("^kp-".into()),
        older_than: Some("72h".into()),
        ..TaskMatch::default()
    };
    env.create(&env.policy("kps-shape", &[PROJECT_A], vec![kps_matching(filter)])).await;
    let policy = env.wait_ready("kps-shape", "True", "Purged").await;
    let yaml = status_yaml(&policy);
    assert_settled_run(&policy);
    assert_eq!((last_run(&policy).found, last_run(&policy).deleted), (2, 2), "{yaml}");
    assert_eq!(env.task_ids(PROJECT_A), ["running-reset", "young-unbind"]);
    report_counts(
        &format!("KPS Matching, documented shape ({name})"),
        last_run(&policy),
        4,
        env.task_ids(PROJECT_A).len(),
    );

    // KPS All takes the rest, the task outside the enum included.
    env.patch_spec("kps-shape", json!({"targets": [{"service": "KPS", "scope": "All"}]})).await;
    env.request_run("kps-shape", "all", "touch").await;
    let policy = env.wait_handled("kps-shape", "all").await;
    let yaml = status_yaml(&policy);
    assert_eq!((last_run(&policy).found, last_run(&policy).deleted), (2, 2), "{yaml}");
    assert!(env.task_ids(PROJECT_A).is_empty());
    assert_eq!(status(&policy).total_deleted, 4, "{yaml}");
    report_counts(
        &format!("KPS All, documented shape ({name})"),
        last_run(&policy),
        2,
        env.task_ids(PROJECT_A).len(),
    );
    env.finish().await;
}

#[tokio::test]
async fn kps_bodies_in_the_documented_shape_with_times_as_strings() {
    kps_documented_shape(KpsTaskTime::String).await;
}

#[tokio::test]
async fn kps_bodies_in_the_documented_shape_with_times_as_numbers() {
    kps_documented_shape(KpsTaskTime::Number).await;
}

#[tokio::test]
async fn overlapping_kps_all_and_matching_count_each_task_once() {
    let env = Env::with_credentials("e2e-overlap", Seed::Empty).await;
    let tasks: Vec<FailedTask> = (1..=15)
        .map(|i| {
            task(
                &format!("t{i:02}"),
                if i % 3 == 0 { "FAILED_RESET" } else { "FAILED_UNBIND" },
                &format!("kp-{i}"),
                100,
            )
        })
        .collect();
    env.emulator.store().add_failed_tasks(PROJECT_A, tasks);
    let filter =
        TaskMatch { operate_types: Some(vec![KpsOperateType::FailedUnbind]), ..TaskMatch::default() };
    // As in the shipped example: KPS All first, then KPS Matching over the same tasks.
    env.create(&env.policy("overlap", &[PROJECT_A], vec![kps_all(), kps_matching(filter)])).await;
    let policy = env.wait_ready("overlap", "True", "Purged").await;
    let yaml = status_yaml(&policy);
    assert_settled_run(&policy);
    let run = last_run(&policy);
    let counts = |t: &taskreaper::api::TargetResult| (t.scope, t.found, t.deleted, t.remaining);
    assert_eq!(counts(&run.targets[0]), (Scope::All, Some(15), Some(15), Some(0)), "{yaml}");
    assert_eq!(counts(&run.targets[1]), (Scope::Matching, Some(0), Some(0), Some(0)), "{yaml}");
    assert_eq!((run.found, run.deleted, status(&policy).total_deleted), (15, 15, 15), "{yaml}");
    assert!(env.task_ids(PROJECT_A).is_empty());
    report_counts("KPS All + KPS Matching, overlapping", run, 15, env.task_ids(PROJECT_A).len());
    let calls = env.calls();
    assert_eq!(calls.route("DELETE", KPS_ONE), 0, "no budget spent on tasks already gone: {calls:?}");
    assert_eq!(calls.deletes, 1, "{calls:?}");
    env.finish().await;
}

#[tokio::test]
async fn kps_all_deletes_every_failed_task() {
    let env = Env::with_credentials("e2e-kps-all", generated(&[PROJECT_A], 3)).await;
    let jobs_before = env.job_ids(PROJECT_A);
    let tasks = env.task_ids(PROJECT_A).len() as u64;
    assert_eq!(tasks, 10, "3 of each documented operate type, 1 outside the enum");

    env.create(&env.policy("kps-all", &[PROJECT_A], vec![kps_all()])).await;
    let policy = env.wait_ready("kps-all", "True", "Purged").await;
    let yaml = status_yaml(&policy);
    assert_settled_run(&policy);
    let run = last_run(&policy);
    assert_eq!((run.found, run.deleted, run.remaining), (tasks, tasks, Some(0)), "{yaml}");
    let row = &run.targets[0];
    assert_eq!((row.service, row.scope, row.outcome), (Service::Kps, Scope::All, TargetOutcome::Purged));

    assert!(env.task_ids(PROJECT_A).is_empty());
    assert_eq!(env.job_ids(PROJECT_A), jobs_before, "SDRS is not touched");
    let calls = env.calls();
    assert_eq!((calls.route("GET", KPS_TASKS), calls.route("DELETE", KPS_TASKS)), (2, 1), "{calls:?}");
    assert_eq!(calls.deletes, 1, "{calls:?}");

    env.wait_event("kps-all", "Normal", "Purged", |note| {
        note == "1 project: 10 deleted, 0 remaining (credentials: Secret hwcloud-credentials)"
    })
    .await;
    env.assert_secret_never_shown("kps-all").await;
    env.finish().await;
}

#[tokio::test]
async fn kps_matching_deletes_only_what_matches_every_filter() {
    let env = Env::with_credentials("e2e-kps-match", Seed::Empty).await;
    env.emulator.store().add_failed_tasks(
        PROJECT_A,
        [
            task("match-old", "FAILED_UNBIND", "kp-a", 100),
            task("match-older", "FAILED_UNBIND", "kp-b", 400),
            task("too-young", "FAILED_UNBIND", "kp-c", 10),
            task("other-op", "FAILED_RESET", "kp-d", 100),
            task("other-name", "FAILED_UNBIND", "ops-e", 100),
        ],
    );
    let filter = TaskMatch {
        operate_types: Some(vec![KpsOperateType::FailedUnbind]),
        name_pattern: Some("^kp-".into()),
        older_than: Some("72h".into()),
        ..TaskMatch::default()
    };
    env.create(&env.policy("kps-match", &[PROJECT_A], vec![kps_matching(filter)])).await;
    let policy = env.wait_ready("kps-match", "True", "Purged").await;
    let yaml = status_yaml(&policy);
    assert_settled_run(&policy);
    let run = last_run(&policy);
    assert_eq!((run.found, run.deleted, run.remaining), (2, 2, Some(0)), "{yaml}");
    assert_eq!((run.targets[0].service, run.targets[0].scope), (Service::Kps, Scope::Matching));

    assert_eq!(env.task_ids(PROJECT_A), ["other-name", "other-op", "too-young"]);
    let calls = env.calls();
    assert_eq!(calls.route("DELETE", KPS_ONE), 2, "{calls:?}");
    assert_eq!(calls.deletes, 2, "{calls:?}");

    env.wait_event("kps-match", "Normal", "Purged", |note| note.contains("2 deleted")).await;
    env.assert_secret_never_shown("kps-match").await;
    env.finish().await;
}

// --- 6: several projects ---------------------------------------------------------------------------

#[tokio::test]
async fn several_projects_get_one_row_per_project_and_target() {
    let projects = [PROJECT_A, PROJECT_B, PROJECT_C];
    let env = Env::with_credentials("e2e-projects", generated(&projects, 2)).await;
    let store = env.emulator.store();
    let expected: u64 =
        projects.iter().map(|p| (store.failure_jobs(p).len() + store.failed_tasks(p).len()) as u64).sum();

    let mut policy = env.policy("projects", &projects, vec![sdrs_all(), kps_all()]);
    policy.spec.projects[1].region = Some("cn-east-3".into());
    policy.spec.projects[2].region = Some("ap-southeast-1".into());
    env.create(&policy).await;
    let policy = env.wait_ready("projects", "True", "Purged").await;
    let yaml = status_yaml(&policy);
    assert_settled_run(&policy);
    let run = last_run(&policy);
    assert_eq!((run.found, run.deleted, run.remaining), (expected, expected, Some(0)), "{yaml}");
    let rows: Vec<(&str, u32, Service, Scope)> =
        run.targets.iter().map(|t| (t.project.as_str(), t.target_index, t.service, t.scope)).collect();
    let mut wanted = Vec::new();
    for p in projects {
        wanted.push((p, 0, Service::Sdrs, Scope::All));
        wanted.push((p, 1, Service::Kps, Scope::All));
    }
    assert_eq!(rows, wanted, "one row per project x target: {yaml}");
    assert!(
        run.targets.iter().all(|t| t.outcome == TargetOutcome::Purged && t.remaining == Some(0)),
        "{yaml}"
    );
    assert_eq!(ready_message(&policy), format!("3 projects: {expected} deleted, 0 remaining"));
    env.wait_event("projects", "Normal", "Purged", |note| note.contains(&format!("{expected} deleted")))
        .await;

    let calls = env.calls();
    for p in projects {
        assert!(store.failure_jobs(p).is_empty(), "project {p}: {:?}", store.failure_jobs(p));
        assert!(store.failed_tasks(p).is_empty(), "project {p}");
        assert_eq!(calls.project_route(p, "DELETE", SDRS_BATCH), 1, "{calls:?}");
        assert_eq!(calls.project_route(p, "DELETE", KPS_TASKS), 1, "{calls:?}");
    }
    env.assert_secret_never_shown("projects").await;
    env.finish().await;
}

/// A policy that gives regions instead of project ids: IAM (signed with the policy's Secret keys)
/// lists the projects at the start of the run, each discovered project is purged, projects of
/// other regions are left alone, the rows name the discovered ids and Ready says how many were
/// discovered. Then every project of the credentials, filtered by region and name.
#[tokio::test]
async fn a_policy_with_regions_instead_of_project_ids_purges_every_discovered_project() {
    let projects = [PROJECT_A, PROJECT_B, PROJECT_C];
    let env = Env::with_credentials("e2e-discovery", generated(&projects, 2)).await;
    env.emulator.iam().name_projects([
        (PROJECT_A.to_string(), "cn-north-4".to_string()),
        (PROJECT_B.to_string(), "cn-north-4_team-a".to_string()),
        (PROJECT_C.to_string(), "cn-east-3".to_string()),
    ]);
    let store = env.emulator.store();
    let count = |p: &str| (store.failure_jobs(p).len() + store.failed_tasks(p).len()) as u64;
    let (in_a, in_b, in_c) = (count(PROJECT_A), count(PROJECT_B), count(PROJECT_C));
    assert!(in_a > 0 && in_b > 0 && in_c > 0);

    let mut policy = env.policy("by-region", &[], vec![sdrs_all(), kps_all()]);
    policy.spec.project_discovery = Some(taskreaper::api::ProjectDiscovery {
        regions: vec!["cn-north-4".into()],
        all_projects: None,
        name_pattern: None,
        max_projects: 64,
    });
    env.create(&policy).await;
    let policy = env.wait_ready("by-region", "True", "Purged").await;
    let yaml = status_yaml(&policy);
    assert_settled_run(&policy);
    let run = last_run(&policy);
    assert_eq!((run.found, run.deleted, run.remaining), (in_a, in_a, Some(0)), "{yaml}");
    let rows: Vec<&str> = run.targets.iter().map(|t| t.project.as_str()).collect();
    assert_eq!(rows, [PROJECT_A, PROJECT_A], "the discovered project, once per target: {yaml}");
    assert_eq!(
        ready_message(&policy),
        format!("1 project discovered at IAM in cn-north-4; 1 project: {in_a} deleted, 0 remaining")
    );
    assert_eq!(count(PROJECT_A), 0);
    assert_eq!((count(PROJECT_B), count(PROJECT_C)), (in_b, in_c), "other projects are left alone");
    let iam_calls = env.emulator.iam().calls();
    assert_eq!(iam_calls.get("GET /v3/projects"), Some(&1), "{iam_calls:?}");

    // Every project of the credentials in cn-north-4 whose name matches: the sub-project only.
    let mut policy = env.policy("all-projects", &[], vec![sdrs_all(), kps_all()]);
    policy.spec.project_discovery = Some(taskreaper::api::ProjectDiscovery {
        regions: vec!["cn-north-4".into()],
        all_projects: Some(true),
        name_pattern: Some("_team-".into()),
        max_projects: 64,
    });
    env.create(&policy).await;
    let policy = env.wait_ready("all-projects", "True", "Purged").await;
    let yaml = status_yaml(&policy);
    let run = last_run(&policy);
    assert_eq!((run.found, run.deleted), (in_b, in_b), "{yaml}");
    assert!(run.targets.iter().all(|t| t.project == PROJECT_B), "{yaml}");
    assert_eq!((count(PROJECT_B), count(PROJECT_C)), (0, in_c), "cn-east-3 is never touched");
    assert_eq!(env.emulator.iam().calls().get("GET /v3/auth/projects"), Some(&1));

    // More matches than maxProjects stop the run with a message naming the count.
    let mut policy = env.policy("too-many", &[], vec![kps_all()]);
    policy.spec.project_discovery = Some(taskreaper::api::ProjectDiscovery {
        regions: Vec::new(),
        all_projects: Some(true),
        name_pattern: None,
        max_projects: 2,
    });
    env.create(&policy).await;
    let policy = env.wait_ready("too-many", "False", "InvalidSpec").await;
    assert!(
        ready_message(&policy).contains("3 projects match, more than the 2 allowed"),
        "{}",
        status_yaml(&policy)
    );
    assert_eq!(count(PROJECT_C), in_c);
    env.assert_secret_never_shown("by-region").await;
    env.finish().await;
}

// --- 7-8: dry run and the deletion bound ------------------------------------------------------

#[tokio::test]
async fn dry_run_reports_what_it_would_delete_and_sends_no_delete() {
    let env = Env::with_credentials("e2e-dry-run", generated(&[PROJECT_A], 3)).await;
    let store = env.emulator.store();
    let groups = store.failure_jobs(PROJECT_A).len() as u64;
    let unbinds =
        store.failed_tasks(PROJECT_A).iter().filter(|t| t.operate_type == "FAILED_UNBIND").count() as u64;
    let (jobs_before, tasks_before) = (env.job_ids(PROJECT_A), env.task_ids(PROJECT_A));

    let filter =
        TaskMatch { operate_types: Some(vec![KpsOperateType::FailedUnbind]), ..TaskMatch::default() };
    let mut policy = env.policy("dry", &[PROJECT_A], vec![sdrs_all(), kps_matching(filter)]);
    policy.spec.dry_run = true;
    env.create(&policy).await;
    let policy = env.wait_ready("dry", "True", "DryRun").await;
    let yaml = status_yaml(&policy);
    let run = last_run(&policy);
    assert_eq!(run.would_delete, groups + unbinds, "{yaml}");
    assert_eq!((run.found, run.deleted), (groups + unbinds, 0), "{yaml}");
    assert!(run.targets.iter().all(|t| t.outcome == TargetOutcome::DryRun && t.deleted == Some(0)), "{yaml}");
    assert_eq!(run.targets.iter().map(|t| t.would_delete).collect::<Vec<_>>(), [groups, unbinds], "{yaml}");
    assert_eq!(status(&policy).total_deleted, 0, "{yaml}");
    assert_eq!(
        ready_message(&policy),
        format!("1 project: {} would be deleted, {} found", groups + unbinds, groups + unbinds)
    );

    let calls = env.calls();
    assert_eq!(calls.deletes, 0, "a dry run never sends a DELETE: {calls:?}");
    assert!(calls.by_route.keys().all(|k| k.starts_with("GET ")), "{calls:?}");
    assert!(calls.total > 0, "a dry run lists: {calls:?}");
    assert_eq!((env.job_ids(PROJECT_A), env.task_ids(PROJECT_A)), (jobs_before, tasks_before));

    env.wait_event("dry", "Normal", "DryRun", |note| note.contains("would be deleted")).await;
    env.assert_secret_never_shown("dry").await;
    env.finish().await;
}

#[tokio::test]
async fn max_deletions_per_run_stops_a_matching_purge_at_the_bound() {
    let env = Env::with_credentials("e2e-limit", Seed::Empty).await;
    // Seven matches, oldest first t7 .. t1, and two tasks outside the match.
    let matches: Vec<FailedTask> =
        (1..=7).map(|i| task(&format!("t{i}"), "FAILED_UNBIND", &format!("kp-{i}"), 10 * i)).collect();
    env.emulator.store().add_failed_tasks(PROJECT_A, matches);
    env.emulator.store().add_failed_tasks(
        PROJECT_A,
        [task("reset-1", "FAILED_RESET", "kp-r1", 500), task("reset-2", "FAILED_RESET", "kp-r2", 1)],
    );

    let filter =
        TaskMatch { operate_types: Some(vec![KpsOperateType::FailedUnbind]), ..TaskMatch::default() };
    let mut policy = env.policy("limit", &[PROJECT_A], vec![kps_matching(filter)]);
    policy.spec.max_deletions_per_run = 3;
    env.create(&policy).await;
    let policy = env.wait_ready("limit", "True", "DeletionLimitReached").await;
    let yaml = status_yaml(&policy);
    let run = last_run(&policy);
    assert_eq!((run.found, run.deleted, run.remaining), (7, 3, Some(4)), "{yaml}");
    assert_eq!(status(&policy).total_deleted, 3, "{yaml}");
    assert_eq!(
        ready_message(&policy),
        "stopped at maxDeletionsPerRun=3: 1 project: 3 deleted, 4 remaining",
        "{yaml}"
    );

    // The three oldest matches went; the rest waits for the next run.
    assert_eq!(env.task_ids(PROJECT_A), ["reset-1", "reset-2", "t1", "t2", "t3", "t4"]);
    let calls = env.calls();
    assert_eq!((calls.route("DELETE", KPS_ONE), calls.deletes), (3, 3), "{calls:?}");

    env.wait_event("limit", "Warning", "DeletionLimitReached", |note| {
        note.starts_with("stopped at maxDeletionsPerRun=3") && note.contains("4 remaining")
    })
    .await;
    env.assert_secret_never_shown("limit").await;
    env.finish().await;
}

// --- 9-10: credentials ------------------------------------------------------------------------------

#[tokio::test]
async fn a_missing_secret_stalls_until_it_is_created() {
    let env = Env::start("e2e-no-secret", generated(&[PROJECT_A], 2)).await;
    env.create(&env.policy("no-secret", &[PROJECT_A], vec![kps_all()])).await;
    let policy = env.wait_ready("no-secret", "False", "CredentialsNotFound").await;
    let yaml = status_yaml(&policy);
    assert!(condition_is(&policy, ConditionType::Stalled, "True", "CredentialsNotFound"), "{yaml}");
    assert!(ready_message(&policy).contains("hwcloud-credentials"), "the message names the Secret: {yaml}");
    assert!(status(&policy).next_schedule_time.is_none(), "{yaml}");
    env.wait_event("no-secret", "Warning", "CredentialsNotFound", |note| {
        note.contains("hwcloud-credentials")
    })
    .await;
    assert_eq!(env.calls().total, 0, "no cloud call without credentials");

    // Creating the Secret is enough: the controller does not watch Secrets, but a policy waiting
    // for one reads it again within SECRET_RETRY_MAX.
    env.create_secret(AK, SK).await;
    let policy = env.wait_ready_within("no-secret", "True", "Purged", SECRET_PICKUP).await;
    assert_settled_run(&policy);
    assert_eq!(last_run(&policy).credentials.as_deref(), Some("Secret hwcloud-credentials"));
    assert_eq!(last_run(&policy).deleted, 7, "{}", status_yaml(&policy));
    assert!(env.task_ids(PROJECT_A).is_empty());
    env.wait_event("no-secret", "Normal", "Purged", |note| note.contains("7 deleted")).await;
    env.assert_secret_never_shown("no-secret").await;
    env.finish().await;
}

#[tokio::test]
async fn rejected_keys_stall_without_a_hot_loop() {
    const WRONG_SK: &str = "e2e-wrong-sk-also-never-shown-2b9d";
    let env = Env::start("e2e-bad-keys", generated(&[PROJECT_A], 2)).await;
    env.create_secret(AK, WRONG_SK).await;
    let (jobs_before, tasks_before) = (env.job_ids(PROJECT_A), env.task_ids(PROJECT_A));
    env.create(&env.policy("bad-keys", &[PROJECT_A], vec![sdrs_all(), kps_all()])).await;
    let policy = env.wait_ready("bad-keys", "False", "AuthenticationFailed").await;
    let yaml = status_yaml(&policy);
    assert!(condition_is(&policy, ConditionType::Stalled, "True", "AuthenticationFailed"), "{yaml}");
    assert!(ready_message(&policy).contains("HTTP 401"), "{yaml}");
    assert!(status(&policy).last_successful_time.is_none(), "{yaml}");
    let run = last_run(&policy);
    assert!(run.targets.iter().all(|t| t.outcome == TargetOutcome::Failed), "{yaml}");
    assert!(
        run.targets.iter().all(|t| t.error.as_ref().is_some_and(|e| e.http_status == Some(401))),
        "each target records the 401: {yaml}"
    );
    env.wait_event("bad-keys", "Warning", "AuthenticationFailed", |note| note.contains("HTTP 401")).await;
    let described = env.kubectl(&["describe", "ftcp", "bad-keys"]).await;
    println!("kubectl describe ftcp bad-keys:\n{described}");
    assert_readme_describe_example_holds(&described);

    // Rejected credentials are not retried in a loop: a few seconds later no further call was made.
    let after_run = env.calls().total;
    assert!(after_run <= 4, "one list per target at most, got {:?}", env.calls());
    let reconciles = env.controller().reconciles();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(env.calls().total, after_run, "calls after the failed run: {:?}", env.calls());
    assert!(
        env.controller().reconciles() <= reconciles + 2,
        "reconciles went from {reconciles} to {}",
        env.controller().reconciles()
    );
    assert_eq!((env.job_ids(PROJECT_A), env.task_ids(PROJECT_A)), (jobs_before, tasks_before));

    env.assert_secret_never_shown("bad-keys").await;
    let policy = env.get("bad-keys").await;
    let text = serde_json::to_string(&policy).expect("serialize");
    assert!(!text.contains(WRONG_SK), "the rejected secret key shows in the policy: {text}");
    for event in env.events("bad-keys").await {
        assert!(!event.note.unwrap_or_default().contains(WRONG_SK));
    }

    // Fixing the Secret takes effect without waiting for the 15-minute retry of rejected keys: it
    // is read again within SECRET_RETRY_MAX, and a changed Secret runs at once.
    env.set_secret_key(SK).await;
    let policy = env.wait_ready_within("bad-keys", "True", "Purged", SECRET_PICKUP).await;
    assert_settled_run(&policy);
    assert!(env.task_ids(PROJECT_A).is_empty(), "the run with the fixed keys purged KPS");
    env.assert_secret_never_shown("bad-keys").await;
    env.finish().await;
}

// --- 11-14: suspend, manual trigger, spec changes, deletion ------------------------------------

#[tokio::test]
async fn suspend_stops_calls_and_resume_runs() {
    let env = Env::with_credentials("e2e-suspend", generated(&[PROJECT_A], 2)).await;
    let mut policy = env.policy("suspended", &[PROJECT_A], vec![kps_all()]);
    policy.spec.suspend = true;
    env.create(&policy).await;
    let policy = env.wait_ready("suspended", "False", "Suspended").await;
    let yaml = status_yaml(&policy);
    assert!(condition_is(&policy, ConditionType::Stalled, "False", "AsExpected"), "{yaml}");
    assert!(status(&policy).next_schedule_time.is_none() && status(&policy).last_run.is_none(), "{yaml}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(env.calls().total, 0, "a suspended policy makes no cloud call");
    assert_eq!(env.task_ids(PROJECT_A).len(), 7);

    env.patch_spec("suspended", json!({"suspend": false})).await;
    let policy = env.wait_ready("suspended", "True", "Purged").await;
    assert_settled_run(&policy);
    assert_eq!(policy.metadata.generation, Some(2));
    assert_eq!(last_run(&policy).deleted, 7, "{}", status_yaml(&policy));
    assert!(env.task_ids(PROJECT_A).is_empty());
    let events = env.events("suspended").await;
    let reasons: Vec<_> = events.iter().filter_map(|e| e.reason.as_deref()).collect();
    assert_eq!(reasons, ["Purged"], "no event while suspended, one for the run after resuming");
    env.wait_event("suspended", "Normal", "Purged", |note| note.contains("7 deleted")).await;
    env.assert_secret_never_shown("suspended").await;
    env.finish().await;
}

#[tokio::test]
async fn the_manual_trigger_runs_once_per_value() {
    let env = Env::with_credentials("e2e-trigger", generated(&[PROJECT_A], 1)).await;
    env.create(&env.policy("trigger", &[PROJECT_A], vec![kps_all()])).await;
    let first = env.wait_ready("trigger", "True", "Purged").await;
    assert_eq!(last_run(&first).deleted, 4);
    assert!(status(&first).last_handled_requested_at.is_none());
    let first_start = status(&first).last_schedule_time.clone();

    // New failures; the next scheduled run is an hour away, so only the trigger can remove them.
    env.emulator.store().add_failed_tasks(
        PROJECT_A,
        [task("new-1", "FAILED_RESET", "kp-n1", 2), task("new-2", "FAILED_REPLACE", "kp-n2", 3)],
    );
    let calls_before = env.calls().total;
    env.request_run("trigger", "2026-05-01T10:00:00Z", "a").await;
    let second = env.wait_handled("trigger", "2026-05-01T10:00:00Z").await;
    let yaml = status_yaml(&second);
    assert!(condition_is(&second, ConditionType::Ready, "True", "Purged"), "{yaml}");
    assert_eq!((last_run(&second).found, last_run(&second).deleted), (2, 2), "{yaml}");
    assert_eq!(status(&second).total_deleted, 6, "{yaml}");
    assert!(status(&second).last_schedule_time >= first_start, "{yaml}");
    assert!(env.task_ids(PROJECT_A).is_empty());
    assert!(env.calls().total > calls_before);
    env.wait_event("trigger", "Normal", "Purged", |note| {
        note == "1 project: 2 deleted, 0 remaining (credentials: Secret hwcloud-credentials)"
    })
    .await;

    // The same value again (with another change so the controller looks) does not run again.
    env.emulator.store().add_failed_tasks(PROJECT_A, [task("later", "FAILED_UNBIND", "kp-l", 1)]);
    let calls_before = env.calls().total;
    let reconciles = env.controller().reconciles();
    env.request_run("trigger", "2026-05-01T10:00:00Z", "b").await;
    eventually("a reconcile of the relabelled policy", Duration::from_secs(30), || async {
        let n = env.controller().reconciles();
        if n > reconciles { Ok(()) } else { Err(format!("reconciles still {n}")) }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let third = env.get("trigger").await;
    assert_eq!(status(&third).last_run, status(&second).last_run, "{}", status_yaml(&third));
    assert_eq!(env.calls().total, calls_before, "the handled value does not run again: {:?}", env.calls());
    assert_eq!(env.task_ids(PROJECT_A), ["later"]);
    env.assert_secret_never_shown("trigger").await;
    env.finish().await;
}

#[tokio::test]
async fn a_spec_change_updates_observed_generation() {
    let env = Env::with_credentials("e2e-generation", generated(&[PROJECT_A], 1)).await;
    env.create(&env.policy("generation", &[PROJECT_A], vec![kps_all()])).await;
    let policy = env.wait_ready("generation", "True", "Purged").await;
    assert_eq!((policy.metadata.generation, status(&policy).observed_generation), (Some(1), Some(1)));
    env.wait_event("generation", "Normal", "Purged", |note| note.contains("4 deleted")).await;
    let (calls, run) = (env.calls(), status(&policy).last_run.clone());
    env.emulator.store().add_failed_tasks(PROJECT_A, [task("after-change", "FAILED_UNBIND", "kp-y", 1)]);

    env.patch_spec("generation", json!({"maxDeletionsPerRun": 500})).await;
    let policy = env
        .wait_for("generation", "observedGeneration 2 on the status and every condition", |p| {
            p.status.as_ref().is_some_and(|s| {
                s.observed_generation == Some(2)
                    && s.conditions.iter().all(|c| c.observed_generation == Some(2))
            })
        })
        .await;
    let yaml = status_yaml(&policy);
    assert_eq!(policy.metadata.generation, Some(2));
    assert!(condition_is(&policy, ConditionType::Ready, "True", "Purged"), "{yaml}");
    assert_eq!(status(&policy).conditions.len(), 3, "{yaml}");
    // A spec change is observed, not a reason to run before the schedule says so.
    assert_eq!(status(&policy).last_run, run, "{yaml}");
    assert_eq!(env.calls(), calls);
    assert_eq!(env.task_ids(PROJECT_A), ["after-change"]);
    assert_eq!(env.events("generation").await.len(), 1, "only the first run's event");
    env.assert_secret_never_shown("generation").await;
    env.finish().await;
}

#[tokio::test]
async fn a_deleted_policy_makes_no_further_calls() {
    // The policy waits for its Secret with its first run due: creating the Secret would run it at
    // its next Secret retry (as a_missing_secret_stalls_until_it_is_created shows) if the controller
    // still knew it.
    let env = Env::start("e2e-deleted", generated(&[PROJECT_A], 1)).await;
    env.create(&env.policy("deleted", &[PROJECT_A], vec![kps_all()])).await;
    let policy = env.wait_ready("deleted", "False", "CredentialsNotFound").await;
    assert!(status(&policy).last_run.is_none(), "{}", status_yaml(&policy));
    env.wait_event("deleted", "Warning", "CredentialsNotFound", |note| note.contains("hwcloud-credentials"))
        .await;
    env.delete("deleted").await;
    eventually("the policy to be gone", Duration::from_secs(30), || async {
        match env.policies().get_opt("deleted").await {
            Ok(None) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let reconciles = env.controller().reconciles();

    env.create_secret(AK, SK).await;
    // Past the first Secret retry of the stalled policy.
    tokio::time::sleep(SECRET_RETRY_MIN + Duration::from_secs(2)).await;
    assert_eq!(env.calls().total, 0, "calls after the policy was deleted: {:?}", env.calls());
    assert_eq!(env.task_ids(PROJECT_A).len(), 4, "the tasks are untouched");
    assert!(
        env.controller().reconciles() <= reconciles + 1,
        "reconciles went from {reconciles} to {}",
        env.controller().reconciles()
    );
    env.finish().await;
}

// --- 15-16: kubectl, and no needless status writes --------------------------------------------

#[tokio::test]
async fn kubectl_shows_the_columns_and_waits_for_ready() {
    let env = Env::with_credentials("e2e-kubectl", generated(&[PROJECT_A], 2)).await;
    env.create(&env.policy("shown", &[PROJECT_A], vec![kps_all()])).await;
    env.kubectl(&["wait", "--for=condition=Ready", "ftcp/shown", "--timeout=60s"]).await;
    let policy = env.wait_ready("shown", "True", "Purged").await;
    let deleted = status(&policy).total_deleted;
    assert_eq!(deleted, 7);

    let table = env.kubectl(&["get", "ftcp"]).await;
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "READY", "REASON", "SUSPENDED", "LAST", "RUN", "NEXT", "RUN", "DELETED", "AGE"],
        "{table}"
    );
    let row: Vec<&str> = lines.next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(row.len(), 8, "every column has a value:\n{table}");
    assert_eq!(&row[..4], ["shown", "True", "Purged", "false"], "{table}");
    for (column, value) in [("LAST RUN", row[4]), ("NEXT RUN", row[5]), ("AGE", row[7])] {
        assert!(
            !value.starts_with('<') && value.chars().next().is_some_and(|c| c.is_ascii_digit()),
            "{column} shows {value:?} (kube-apiserver renders a `date` printer column holding a future \
             time, such as nextScheduleTime, as <invalid>):\n{table}"
        );
    }
    assert_eq!(row[6], deleted.to_string(), "{table}");

    // describe shows the conditions and the events.
    let described = env.kubectl(&["describe", "ftcp", "shown"]).await;
    assert!(described.contains("Purged") && described.contains("7 deleted"), "{described}");
    let events = described.split_once("\nEvents:").map(|(_, e)| e).unwrap_or_default();
    assert!(
        events
            .lines()
            .any(|l| l.trim_start().starts_with("Normal") && l.contains("Purged") && l.contains("7 deleted")),
        "describe lists the Purged event:\n{described}"
    );
    assert!(!described.contains(SK));
    env.finish().await;
}

#[tokio::test]
async fn an_unchanged_status_is_not_written_again() {
    let env = Env::with_credentials("e2e-quiet", generated(&[PROJECT_A], 1)).await;
    // With jitter the next run is not a whole number of seconds after the last one.
    let mut policy = env.policy("quiet", &[PROJECT_A], vec![sdrs_all(), kps_all()]);
    policy.spec.schedule.jitter = Some("17m".into());
    env.create(&policy).await;
    env.wait_ready("quiet", "True", "Purged").await;
    // Let the reconciles that the run's own status writes trigger settle.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let settled = env.get("quiet").await;
    let version = settled.metadata.resource_version.clone();
    let writes = env.controller().status_writes();
    assert_eq!(writes, 2, "one write when the run starts, one when it ends");
    let calls = env.calls();

    // Each label change of the policy triggers a reconcile that finds nothing to change.
    for round in 0..3 {
        let reconciles = env.controller().reconciles();
        env.touch("quiet", &format!("round-{round}")).await;
        eventually("a reconcile triggered by the label", Duration::from_secs(30), || async {
            let n = env.controller().reconciles();
            if n > reconciles { Ok(()) } else { Err(format!("reconciles still {n}")) }
        })
        .await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = env.get("quiet").await;
    assert_eq!(env.controller().status_writes(), writes, "status writes:\n{}", status_yaml(&after));
    // The labels changed the policy's metadata; its status stayed as it was.
    assert_ne!(after.metadata.resource_version, version, "the labels were set");
    assert_eq!(after.status, settled.status);
    assert_eq!(env.calls(), calls, "nothing was due");
    env.assert_secret_never_shown("quiet").await;
    env.finish().await;
}

// --- 17: the cloud misbehaving ------------------------------------------------------------------

#[tokio::test]
async fn throttling_outages_and_garbage_become_conditions_and_events() {
    use taskreaper::emulator::Faults;
    let env = Env::with_credentials("e2e-faults", generated(&[PROJECT_A], 2)).await;
    let tasks_before = env.task_ids(PROJECT_A);
    let jobs_before = env.job_ids(PROJECT_A);
    let set_faults = |faults: Faults| env.emulator.store().set_faults(faults);

    // Every call throttled: the run ends Throttled, nothing is deleted, the retries are bounded.
    set_faults(Faults { error_rate: 1.0, error_statuses: vec![429], ..Faults::default() });
    env.create(&env.policy("faulty", &[PROJECT_A], vec![sdrs_all(), kps_all()])).await;
    let policy = env.wait_ready("faulty", "False", "Throttled").await;
    let yaml = status_yaml(&policy);
    assert!(
        condition_is(&policy, ConditionType::Stalled, "False", "AsExpected"),
        "throttling is not the user's to fix: {yaml}"
    );
    let run = last_run(&policy);
    assert!(run.targets.iter().all(|t| t.outcome == TargetOutcome::Throttled), "{yaml}");
    assert!(
        run.targets.iter().all(|t| t.error.as_ref().is_some_and(|e| e.http_status == Some(429))),
        "{yaml}"
    );
    assert_eq!(run.failed_calls, 2, "one failed list per target: {yaml}");
    env.wait_event("faulty", "Warning", "Throttled", |note| note.contains("HTTP 429")).await;
    let calls = env.calls();
    assert_eq!(calls.deletes, 0, "{calls:?}");
    assert!(calls.total <= 2 * 3, "each list tried at most 3 times: {calls:?}");

    // Server errors: CloudUnavailable and a PurgeFailed event.
    set_faults(Faults { error_rate: 1.0, error_statuses: vec![503], ..Faults::default() });
    env.request_run("faulty", "outage", "1").await;
    let policy = env.wait_handled("faulty", "outage").await;
    assert!(
        condition_is(&policy, ConditionType::Ready, "False", "CloudUnavailable"),
        "{}",
        status_yaml(&policy)
    );
    env.wait_event("faulty", "Warning", "PurgeFailed", |note| note.contains("HTTP 503")).await;

    // Garbage list bodies are not trusted: still CloudUnavailable, still nothing deleted.
    set_faults(Faults { malformed_rate: 1.0, ..Faults::default() });
    env.request_run("faulty", "garbage", "2").await;
    let policy = env.wait_handled("faulty", "garbage").await;
    assert!(
        condition_is(&policy, ConditionType::Ready, "False", "CloudUnavailable"),
        "{}",
        status_yaml(&policy)
    );
    assert_eq!(env.calls().deletes, 0);
    assert_eq!((env.task_ids(PROJECT_A), env.job_ids(PROJECT_A)), (tasks_before, jobs_before.clone()));

    // The cloud recovers: the next run purges.
    set_faults(Faults::default());
    env.request_run("faulty", "recovered", "3").await;
    let policy = env.wait_handled("faulty", "recovered").await;
    assert!(condition_is(&policy, ConditionType::Ready, "True", "Purged"), "{}", status_yaml(&policy));
    assert!(env.task_ids(PROJECT_A).is_empty());
    assert!(env.job_ids(PROJECT_A).len() < jobs_before.len());
    env.assert_secret_never_shown("faulty").await;
    env.finish().await;
}

#[tokio::test]
async fn a_transient_failure_is_retried_without_a_trigger() {
    use taskreaper::emulator::Faults;
    let env = Env::with_credentials("e2e-retry", generated(&[PROJECT_A], 1)).await;
    env.emulator.store().set_faults(Faults {
        error_rate: 1.0,
        error_statuses: vec![503],
        ..Faults::default()
    });
    env.create(&env.policy("retried", &[PROJECT_A], vec![kps_all()])).await;
    let failed = env.wait_ready("retried", "False", "CloudUnavailable").await;
    let yaml = status_yaml(&failed);
    let last = status(&failed).last_schedule_time.as_ref().expect("lastScheduleTime").0;
    let next = status(&failed).next_schedule_time.as_ref().expect("nextScheduleTime").0;
    assert_eq!(
        next.duration_since(last),
        SignedDuration::from_secs(30),
        "retried in 30s, not in an hour: {yaml}"
    );
    assert!(condition_is(&failed, ConditionType::Stalled, "False", "AsExpected"), "{yaml}");
    env.wait_event("retried", "Warning", "PurgeFailed", |note| note.contains("HTTP 503")).await;
    assert_eq!(env.task_ids(PROJECT_A).len(), 4);

    // The cloud recovers. No trigger and no spec change: the retry purges.
    env.emulator.store().set_faults(Faults::default());
    let policy = env.wait_ready("retried", "True", "Purged").await;
    let yaml = status_yaml(&policy);
    assert_settled_run(&policy);
    assert!(status(&policy).last_handled_requested_at.is_none(), "{yaml}");
    let retried = status(&policy).last_schedule_time.as_ref().expect("lastScheduleTime").0;
    assert!(retried >= next, "the retry ran when planned: {yaml}");
    let back_on_schedule = status(&policy).next_schedule_time.as_ref().expect("nextScheduleTime").0;
    assert_eq!(back_on_schedule.duration_since(retried), SignedDuration::from_hours(1), "{yaml}");
    assert!(env.task_ids(PROJECT_A).is_empty());
    env.wait_event("retried", "Normal", "Purged", |note| note.contains("4 deleted")).await;
    env.assert_secret_never_shown("retried").await;
    env.finish().await;
}

// --- hostile ids -----------------------------------------------------------------------------------

/// The cloud lists tasks (and a protection group) whose ids are not safe in a DELETE path, dressed
/// like the real tasks so that the Matching filters select them. The controller deletes only the
/// safe matching tasks, one by one; no call reaches the SDRS batch, the per-group batch, the KPS
/// delete-all or any unpublished path; the status counts what was left alone and a Warning says so.
#[tokio::test]
async fn hostile_ids_from_the_cloud_are_never_deleted_and_are_reported() {
    use taskreaper::emulator::{Faults, hostile};
    let env = sdrs_env("e2e-hostile", SdrsListing::Strict).await;
    let store = env.emulator.store();
    // Each group's first failure is a match, so the made-up copies in its list match too.
    store.add_failure_jobs(
        PROJECT_A,
        [
            job("match-g1", "protected_instances", "createFail", "tmp-a", 48, Some(GROUP_1)),
            job("match-g2", "protected_instances", "createFail", "tmp-b", 100, Some(GROUP_2)),
            job("too-young", "protected_instances", "createFail", "tmp-d", 1, Some(GROUP_1)),
            job("other-name", "protected_instances", "createFail", "prod-h", 48, Some(GROUP_2)),
            job("group-level", "server_groups", "createFail", "tmp-pg", 48, None),
        ],
    );
    store.add_failed_tasks(
        PROJECT_A,
        [
            task("match-old", "FAILED_UNBIND", "kp-a", 100),
            task("match-older", "FAILED_UNBIND", "kp-b", 400),
            task("too-young", "FAILED_UNBIND", "kp-c", 10),
            task("other-op", "FAILED_RESET", "kp-d", 100),
        ],
    );
    store.set_faults(Faults { hostile_ids: true, ..Faults::default() });
    let sdrs_filter = TaskMatch {
        resource_types: Some(vec![SdrsResourceType::ProtectedInstances]),
        failure_statuses: Some(vec![SdrsFailureStatus::CreateFail]),
        name_pattern: Some("^tmp-".into()),
        older_than: Some("24h".into()),
        ..TaskMatch::default()
    };
    let kps_filter = TaskMatch {
        operate_types: Some(vec![KpsOperateType::FailedUnbind]),
        name_pattern: Some("^kp-".into()),
        older_than: Some("72h".into()),
        ..TaskMatch::default()
    };
    let targets = vec![sdrs_matching(sdrs_filter), kps_matching(kps_filter)];
    env.create(&env.policy("hostile", &[PROJECT_A], targets)).await;
    let policy = env.wait_ready("hostile", "True", "Purged").await;
    let yaml = status_yaml(&policy);
    assert_settled_run(&policy);

    // What the cloud listed: every hostile id in each of the 5 group lists (4 real groups and the
    // group "."), the non-empty ones joined by id, the empty one kept once per list; and once in
    // the KPS list.
    let n = hostile::task_ids().len() as u64;
    let sdrs_lists = 5;
    let sdrs_unsafe = (n - 1) + sdrs_lists;
    let run = last_run(&policy);
    let (sdrs, kps) = (&run.targets[0], &run.targets[1]);
    assert_eq!((sdrs.service, kps.service), (Service::Sdrs, Service::Kps), "{yaml}");
    assert_eq!((sdrs.unsafe_ids, kps.unsafe_ids), (sdrs_unsafe, n), "{yaml}");
    assert_eq!(run.unsafe_ids, sdrs_unsafe + n, "{yaml}");
    assert_eq!((sdrs.deleted, kps.deleted, run.deleted), (Some(2), Some(2), 4), "{yaml}");
    assert!(
        ready_message(&policy).contains(&format!("; {} failed tasks left alone", sdrs_unsafe + n)),
        "{yaml}"
    );

    // The safe matches are gone, nothing else is.
    assert_eq!(env.job_ids(PROJECT_A), ["group-level", "other-name", "too-young"]);
    assert_eq!(env.task_ids(PROJECT_A), ["other-op", "too-young"]);

    // Four single deletes of the four safe ids, and no other DELETE anywhere.
    let calls = env.calls();
    assert_eq!(calls.route("DELETE", SDRS_ONE), 2, "{calls:?}");
    assert_eq!(calls.route("DELETE", KPS_ONE), 2, "{calls:?}");
    assert_eq!(calls.route("DELETE", SDRS_BATCH), 0, "{calls:?}");
    assert_eq!(calls.route("DELETE", SDRS_GROUP_BATCH), 0, "{calls:?}");
    assert_eq!(calls.route("DELETE", KPS_TASKS), 0, "{calls:?}");
    assert_eq!(calls.deletes, 4, "{calls:?}");
    assert!(calls.unmatched.is_empty(), "no call to an unpublished path: {calls:?}");
    assert_eq!(calls.route("GET", SDRS_LIST), 2 * sdrs_lists, "{calls:?}");

    let counts = format!("({PROJECT_A} SDRS: {sdrs_unsafe}, {PROJECT_A} KPS: {n})");
    env.wait_event("hostile", "Warning", "UnsafeTaskIds", |note| {
        note.starts_with(&format!("{} failed tasks left alone", sdrs_unsafe + n)) && note.ends_with(&counts)
    })
    .await;
    env.wait_event("hostile", "Normal", "Purged", |note| note.contains("4 deleted")).await;
    env.assert_secret_never_shown("hostile").await;
    env.finish().await;
}

/// Every line of the README's `kubectl describe` example (up to a `...` where it is trimmed) is a
/// line of what `kubectl describe` really printed, spacing aside.
fn assert_readme_describe_example_holds(described: &str) {
    let readme = include_str!("../README.md");
    let start =
        readme.find("A policy whose keys the cloud refuses shows").expect("the README's describe example");
    let block = readme[start..].split("```").nth(1).expect("its code block");
    let squeeze = |line: &str| line.split_whitespace().collect::<Vec<_>>().join(" ");
    let real: Vec<String> = described.lines().map(squeeze).collect();
    for line in block.lines().skip(1).filter(|l| !l.trim().is_empty() && l.trim() != "...") {
        let shown = squeeze(line.split("...").next().unwrap_or(line));
        assert!(
            real.iter().any(|r| r.starts_with(&shown)),
            "README's describe example line {line:?} is not in the real output:\n{described}"
        );
    }
}
