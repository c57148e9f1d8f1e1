//! A deterministic generator of realistic failed tasks for demos, tests and benchmarks: the same
//! projects, count, seed and `now` always give the same data. Pure.

use jiff::{SignedDuration, Timestamp};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{RngExt, SeedableRng};

use crate::cloud::model::{
    FailedTask, FailureJob, KPS_OPERATE_TYPES, ProtectionGroup, SDRS_FAILURE_STATUSES, SERVER_GROUPS,
};

use super::store::{ProjectSeed, SeedFile, SeededJob};

/// Protection groups made per project.
pub const GROUPS_PER_PROJECT: usize = 3;
/// The status of the k-th protection group of a project.
pub const GROUP_STATUSES: [&str; GROUPS_PER_PROJECT] = ["protected", "available", "error-creating"];
/// The documented resource types of failures inside a protection group.
pub const IN_GROUP_RESOURCE_TYPES: [&str; 3] =
    ["protected_instances", "replications", "disaster_recovery_drills"];
/// The resource type of the one in-group failure per project outside the documented enum (the
/// reference's own example shows it).
pub const ODD_SDRS_RESOURCE_TYPE: &str = "protectedInstance";
/// The operate type of the one KPS task per project outside the documented enum (the reference's
/// own example shows it).
pub const ODD_KPS_OPERATE_TYPE: &str = "RUNNING_RESET";
/// The oldest generated task is at most this old.
pub const MAX_AGE: SignedDuration = SignedDuration::from_hours(6 * 7 * 24);
/// The newest generated task is at least this old.
pub const MIN_AGE: SignedDuration = SignedDuration::from_mins(5);

/// Name prefixes, cycled from a random start so that any ten names hold each of them.
const NAME_PREFIXES: [&str; 10] = ["tmp", "prod", "prod", "tmp", "dev", "prod", "tmp", "test", "prod", "dr"];
const KEYPAIR_PREFIXES: [&str; 5] = ["kp", "prod", "kp", "tmp", "ops"];
const KEYPAIR_ROLES: [&str; 5] = ["deploy", "bastion", "ci", "backup", "web"];

const SDRS_FAILURES: [(&str, &str); 5] = [
    ("SDRS.1201", "The ECS quota in the target AZ is insufficient."),
    ("SDRS.1502", "Failed to create the replication pair: the EVS disk is in an error state."),
    ("SDRS.1609", "The resource is being operated on by another task."),
    ("SDRS.1805", "Timed out waiting for the underlying job to finish."),
    ("SDRS.1003", "The request to the ECS service failed."),
];
const KPS_FAILURES: [(&str, &str); 4] = [
    ("KPS.2011", "The ECS is not in the stopped state."),
    ("KPS.2104", "Failed to inject the public key: the server is not running."),
    ("KPS.2005", "The key pair does not exist."),
    ("KPS.2033", "Timed out waiting for the ECS agent."),
];

/// The protection groups and failed tasks of every project, aged between [`MIN_AGE`] and
/// [`MAX_AGE`] before `now`, newest first. With `n = tasks_per_kind > 0`, each project holds:
///
/// - [`GROUPS_PER_PROJECT`] protection groups (statuses [`GROUP_STATUSES`]);
/// - `n + 1` protection-group-level failures (`resource_type` `server_groups`, no group): `n`
///   naming the project's groups in turn, and one naming a group that no longer exists;
/// - `n` in-group failures of each of [`IN_GROUP_RESOURCE_TYPES`], spread over the groups so that
///   each group has some, plus one of [`ODD_SDRS_RESOURCE_TYPE`] in the first group: `3n + 1`;
/// - `n` KPS tasks of each of [`KPS_OPERATE_TYPES`] plus one of [`ODD_KPS_OPERATE_TYPE`]: `3n + 1`.
///   The odd task and every documented one whose index is 2 mod 5 have `null` error code and
///   message; `task_time` is epoch milliseconds as a string ([`kps_time`]).
///
/// With `n = 0` a project has its groups and no tasks.
pub fn generate(projects: &[String], tasks_per_kind: usize, seed: u64, now: Timestamp) -> SeedFile {
    SeedFile {
        projects: projects
            .iter()
            .map(|p| {
                let mut rng = StdRng::seed_from_u64(seed ^ fnv1a(p.as_bytes()));
                (p.clone(), project(&mut rng, tasks_per_kind, now))
            })
            .collect(),
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

fn uuid(rng: &mut StdRng) -> String {
    let mut b: [u8; 16] = rng.random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

/// Ages spread over the whole range: the i-th of n falls in the i-th slice of a quadratic scale,
/// so every kind has tasks from the last hours and from weeks ago.
fn age(rng: &mut StdRng, i: usize, n: usize) -> SignedDuration {
    let position = (i as f64 + rng.random::<f64>()) / n as f64;
    let span = (MAX_AGE - MIN_AGE).as_secs_f64();
    let age = MIN_AGE + SignedDuration::from_secs_f64(span * position * position);
    SignedDuration::from_millis(age.as_millis() as i64)
}

fn at(now: Timestamp, age: SignedDuration) -> Timestamp {
    now.checked_sub(age).unwrap_or(now)
}

/// `2026-11-01T12:00:00.000Z`, as SDRS writes `begin_time`.
pub fn sdrs_time(t: Timestamp) -> String {
    format!("{}.{:03}Z", t.strftime("%Y-%m-%dT%H:%M:%S"), t.subsec_millisecond())
}

/// `1523342130000`: epoch milliseconds as text, as KPS writes `task_time` in its documented example.
pub fn kps_time(t: Timestamp) -> String {
    t.as_millisecond().to_string()
}

fn noun(resource_type: &str) -> (&'static str, &'static str) {
    match resource_type {
        "server_groups" => ("ServerGroup", "pg"),
        "protected_instances" | "protectedInstance" => ("ProtectedInstance", "vm"),
        "replications" => ("Replication", "rep"),
        _ => ("DisasterRecoveryDrill", "drill"),
    }
}

/// One failure job: everything but the scope.
struct JobSpec<'a> {
    resource_type: &'a str,
    failure_status: &'a str,
    resource_id: String,
    resource_name: String,
    begin: Timestamp,
}

fn failure_job(rng: &mut StdRng, spec: JobSpec<'_>) -> FailureJob {
    let (noun, _) = noun(spec.resource_type);
    let (error_code, fail_reason) = SDRS_FAILURES.choose(rng).copied().unwrap_or_default();
    FailureJob {
        job_id: uuid(rng),
        job_type: format!("{}{noun}", spec.failure_status.trim_end_matches("Fail")),
        job_status: "FAIL".into(),
        begin_time: sdrs_time(spec.begin),
        failure_status: spec.failure_status.into(),
        resource_id: spec.resource_id,
        resource_name: spec.resource_name,
        resource_type: spec.resource_type.into(),
        error_code: error_code.into(),
        fail_reason: fail_reason.into(),
    }
}

fn project(rng: &mut StdRng, n: usize, now: Timestamp) -> ProjectSeed {
    let mut prefix = rng.random_range(0..NAME_PREFIXES.len());
    let mut next_prefix = move || {
        prefix = (prefix + 1) % NAME_PREFIXES.len();
        NAME_PREFIXES[prefix]
    };
    let groups: Vec<ProtectionGroup> = GROUP_STATUSES
        .iter()
        .enumerate()
        .map(|(k, status)| ProtectionGroup {
            id: uuid(rng),
            name: format!("{}-pg-{:02}", next_prefix(), k + 1),
            status: (*status).into(),
        })
        .collect();
    if n == 0 {
        return ProjectSeed { server_groups: groups, ..ProjectSeed::default() };
    }

    let mut jobs: Vec<(Timestamp, SeededJob)> = Vec::new();
    // Protection-group level: failed creations and deletions of the groups, and of one that is gone.
    for i in 0..n {
        let group = &groups[i % groups.len()];
        let begin = at(now, age(rng, i, n));
        let spec = JobSpec {
            resource_type: SERVER_GROUPS,
            failure_status: if i % 2 == 0 { "createFail" } else { "deleteFail" },
            resource_id: group.id.clone(),
            resource_name: group.name.clone(),
            begin,
        };
        jobs.push((begin, SeededJob::group_level(failure_job(rng, spec))));
    }
    let begin = at(now, age(rng, 0, 1));
    let spec = JobSpec {
        resource_type: SERVER_GROUPS,
        failure_status: "createFail",
        resource_id: uuid(rng),
        resource_name: format!("{}-pg-{:02}", next_prefix(), GROUPS_PER_PROJECT + 1),
        begin,
    };
    jobs.push((begin, SeededJob::group_level(failure_job(rng, spec))));

    // Inside the groups: every documented resource type, then one the enum does not list.
    let mut status = rng.random_range(0..SDRS_FAILURE_STATUSES.len());
    for (t, resource_type) in IN_GROUP_RESOURCE_TYPES.into_iter().enumerate() {
        let (_, short) = noun(resource_type);
        for i in 0..n {
            status = (status + 1) % SDRS_FAILURE_STATUSES.len();
            let group = &groups[(i + t) % groups.len()];
            let begin = at(now, age(rng, i, n));
            let spec = JobSpec {
                resource_type,
                failure_status: SDRS_FAILURE_STATUSES[status],
                resource_id: uuid(rng),
                resource_name: format!("{}-{short}-{:02}", next_prefix(), i + 1),
                begin,
            };
            jobs.push((begin, SeededJob::in_group(failure_job(rng, spec), group.id.clone())));
        }
    }
    let begin = at(now, age(rng, 0, 1));
    let spec = JobSpec {
        resource_type: ODD_SDRS_RESOURCE_TYPE,
        failure_status: "createFail",
        resource_id: uuid(rng),
        resource_name: format!("{}-vm-{:02}", next_prefix(), n + 1),
        begin,
    };
    jobs.push((begin, SeededJob::in_group(failure_job(rng, spec), groups[0].id.clone())));

    let mut keypair = rng.random_range(0..KEYPAIR_PREFIXES.len());
    let mut tasks: Vec<(Timestamp, FailedTask)> = Vec::new();
    let kinds = KPS_OPERATE_TYPES.into_iter().map(|op| (op, n)).chain([(ODD_KPS_OPERATE_TYPE, 1)]);
    for (operate_type, count) in kinds {
        for i in 0..count {
            keypair = (keypair + 1) % KEYPAIR_PREFIXES.len();
            let role = KEYPAIR_ROLES.choose(rng).copied().unwrap_or("web");
            let (code, msg) = KPS_FAILURES.choose(rng).copied().unwrap_or_default();
            let null_error = operate_type == ODD_KPS_OPERATE_TYPE || i % 5 == 2;
            let (task_error_code, task_error_msg) = if null_error { ("", "") } else { (code, msg) };
            let time = at(now, age(rng, i, count));
            tasks.push((
                time,
                FailedTask {
                    task_id: uuid(rng),
                    operate_type: operate_type.into(),
                    task_time: kps_time(time),
                    task_error_code: task_error_code.into(),
                    task_error_msg: task_error_msg.into(),
                    server_name: format!("ecs-{}-{role}-{:02}", next_prefix(), i + 1),
                    server_id: uuid(rng),
                    keypair_name: format!(
                        "{}-{role}-{:02}",
                        KEYPAIR_PREFIXES[keypair],
                        rng.random_range(1..100)
                    ),
                },
            ));
        }
    }

    jobs.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
    tasks.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
    ProjectSeed {
        server_groups: groups,
        failure_jobs: jobs.into_iter().map(|(_, j)| j).collect(),
        failed_tasks: tasks.into_iter().map(|(_, t)| t).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::model::{SDRS_RESOURCE_TYPES, parse_task_time};
    use std::collections::BTreeSet;

    fn now() -> Timestamp {
        "2026-11-22T05:30:00Z".parse().unwrap()
    }

    fn projects() -> Vec<String> {
        vec!["0605767b5c00d4bb2f10c01a1e3b3a7e".into(), "1b2c3d4e5f60718293a4b5c6d7e8f901".into()]
    }

    #[test]
    fn same_inputs_same_data() {
        let a = generate(&projects(), 10, 42, now());
        assert_eq!(a, generate(&projects(), 10, 42, now()));
        assert_ne!(a, generate(&projects(), 10, 43, now()));
        let alone = generate(&projects()[1..], 10, 42, now());
        assert_eq!(alone.projects[&projects()[1]], a.projects[&projects()[1]], "a project's data is its own");
        assert_ne!(a.projects[&projects()[0]], a.projects[&projects()[1]]);
    }

    fn count<T>(items: &[T], pred: impl Fn(&T) -> bool) -> usize {
        items.iter().filter(|i| pred(i)).count()
    }

    #[test]
    fn counts_per_project_are_exact() {
        let seed = generate(&projects(), 10, 7, now());
        for data in seed.projects.values() {
            assert_eq!(data.server_groups.len(), GROUPS_PER_PROJECT);
            let statuses: Vec<&str> = data.server_groups.iter().map(|g| g.status.as_str()).collect();
            assert_eq!(statuses, GROUP_STATUSES);
            let jobs = &data.failure_jobs;
            assert_eq!(jobs.len(), 4 * 10 + 2);
            assert_eq!(count(jobs, |j| j.is_group_level()), 11);
            assert_eq!(count(jobs, |j| j.is_group_level() && j.job.resource_type == SERVER_GROUPS), 11);
            for kind in IN_GROUP_RESOURCE_TYPES {
                assert_eq!(count(jobs, |j| j.job.resource_type == kind), 10, "{kind}");
                assert_eq!(count(jobs, |j| j.job.resource_type == kind && j.group_id().is_some()), 10);
            }
            assert_eq!(
                count(jobs, |j| j.job.resource_type == ODD_SDRS_RESOURCE_TYPE && !j.is_group_level()),
                1
            );
            let statuses: BTreeSet<&str> = jobs.iter().map(|j| j.job.failure_status.as_str()).collect();
            assert_eq!(statuses.len(), SDRS_FAILURE_STATUSES.len());
            assert!(jobs.iter().all(|j| j.job.job_status == "FAIL"));

            let tasks = &data.failed_tasks;
            assert_eq!(tasks.len(), 3 * 10 + 1);
            for op in KPS_OPERATE_TYPES {
                assert_eq!(count(tasks, |t| t.operate_type == op), 10);
                assert_eq!(
                    count(tasks, |t| t.operate_type == op && t.task_error_code.is_empty()),
                    2,
                    "i = 2, 7"
                );
            }
            let odd: Vec<&FailedTask> =
                tasks.iter().filter(|t| t.operate_type == ODD_KPS_OPERATE_TYPE).collect();
            assert_eq!(odd.len(), 1);
            assert!(odd[0].task_error_code.is_empty() && odd[0].task_error_msg.is_empty());
        }
    }

    #[test]
    fn scopes_name_real_groups_and_one_dangling_group() {
        let seed = generate(&projects(), 4, 7, now());
        for data in seed.projects.values() {
            let group_ids: BTreeSet<&str> = data.server_groups.iter().map(|g| g.id.as_str()).collect();
            let members = |g: &str| count(&data.failure_jobs, |j| j.group_id() == Some(g));
            for g in &group_ids {
                assert!(members(g) >= 3, "every group has in-group failures: {g}");
            }
            assert!(data.failure_jobs.iter().filter_map(|j| j.group_id()).all(|g| group_ids.contains(g)));
            let named: Vec<&str> = data
                .failure_jobs
                .iter()
                .filter(|j| j.is_group_level())
                .map(|j| j.job.resource_id.as_str())
                .collect();
            assert_eq!(named.len(), 5);
            assert_eq!(named.iter().filter(|g| group_ids.contains(*g)).count(), 4);
            let named_groups: BTreeSet<&str> =
                named.iter().copied().filter(|g| group_ids.contains(g)).collect();
            assert_eq!(named_groups.len(), GROUPS_PER_PROJECT, "every group is named at group level");
            for j in data
                .failure_jobs
                .iter()
                .filter(|j| j.is_group_level() && group_ids.contains(j.job.resource_id.as_str()))
            {
                let group = data.server_groups.iter().find(|g| g.id == j.job.resource_id).unwrap();
                assert_eq!(j.job.resource_name, group.name);
                assert!(["createFail", "deleteFail"].contains(&j.job.failure_status.as_str()));
            }
        }
    }

    #[test]
    fn names_vary_and_ids_are_unique() {
        let seed = generate(&projects(), 10, 7, now());
        for data in seed.projects.values() {
            let names: Vec<&str> = data.failure_jobs.iter().map(|j| j.job.resource_name.as_str()).collect();
            assert!(names.iter().any(|n| n.starts_with("tmp-")), "{names:?}");
            assert!(names.iter().any(|n| n.starts_with("prod-")), "{names:?}");
            let keypairs: Vec<&str> = data.failed_tasks.iter().map(|t| t.keypair_name.as_str()).collect();
            assert!(keypairs.iter().any(|n| n.starts_with("kp-")), "{keypairs:?}");
            assert!(keypairs.iter().any(|n| !n.starts_with("kp-")), "{keypairs:?}");
            let ids: BTreeSet<&str> = data.failure_jobs.iter().map(|j| j.job.job_id.as_str()).collect();
            assert_eq!(ids.len(), 42, "job ids are unique");
            assert_eq!(data.failure_jobs[0].job.job_id.len(), 36);
            assert_eq!(data.server_groups[0].id.len(), 36);
        }
    }

    #[test]
    fn ages_span_weeks_newest_first() {
        let seed = generate(&projects(), 10, 7, now());
        let data = &seed.projects[&projects()[0]];
        let begin: Vec<Timestamp> =
            data.failure_jobs.iter().map(|j| j.job.begin_time.parse::<Timestamp>().unwrap()).collect();
        assert!(begin.windows(2).all(|w| w[0] >= w[1]), "newest first");
        for kind in SDRS_RESOURCE_TYPES {
            let ages: Vec<SignedDuration> = data
                .failure_jobs
                .iter()
                .filter(|j| j.job.resource_type == kind)
                .map(|j| now().duration_since(j.job.begin_time.parse().unwrap()))
                .collect();
            assert!(ages.iter().any(|a| *a < SignedDuration::from_hours(24)), "{kind} has a recent job");
            assert!(ages.iter().any(|a| *a > SignedDuration::from_hours(21 * 24)), "{kind} has an old job");
            assert!(ages.iter().all(|a| *a >= MIN_AGE && *a <= MAX_AGE));
        }
        let times: Vec<Timestamp> =
            data.failed_tasks.iter().map(|t| parse_task_time(&t.task_time).unwrap()).collect();
        assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");
        let task_ages: Vec<SignedDuration> = times.iter().map(|t| now().duration_since(*t)).collect();
        assert!(task_ages.iter().any(|a| *a < SignedDuration::from_hours(72)));
        assert!(task_ages.iter().any(|a| *a > SignedDuration::from_hours(14 * 24)));
        assert!(task_ages.iter().all(|a| *a >= MIN_AGE && *a <= MAX_AGE));
    }

    #[test]
    fn time_formats_match_the_services() {
        let t: Timestamp = "2018-04-10T06:35:30.5Z".parse().unwrap();
        assert_eq!(sdrs_time(t), "2018-04-10T06:35:30.500Z");
        assert_eq!(kps_time(t), "1523342130500");
        assert_eq!(
            kps_time("2018-04-10T06:35:30Z".parse().unwrap()),
            "1523342130000",
            "the documented value"
        );
        let seed = generate(&projects(), 1, 1, now());
        let data = &seed.projects[&projects()[0]];
        let job = &data.failure_jobs[0].job;
        assert!(
            regex::Regex::new(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$").unwrap().is_match(&job.begin_time)
        );
        assert!(job.job_type.ends_with(noun(&job.resource_type).0));
        assert!(
            data.failed_tasks
                .iter()
                .all(|t| t.task_time.len() == 13 && t.task_time.bytes().all(|b| b.is_ascii_digit()))
        );
    }

    #[test]
    fn one_per_kind_gives_the_odd_ones_too() {
        let seed = generate(&projects(), 1, 3, now());
        for data in seed.projects.values() {
            assert_eq!((data.failure_jobs.len(), data.failed_tasks.len()), (6, 4));
            assert_eq!(count(&data.failure_jobs, |j| j.is_group_level()), 2);
        }
    }

    #[test]
    fn zero_tasks_gives_groups_only() {
        let seed = generate(&projects(), 0, 1, now());
        assert_eq!(seed.projects.len(), 2);
        assert!(seed.projects.values().all(|p| p.failure_jobs.is_empty() && p.failed_tasks.is_empty()));
        assert!(seed.projects.values().all(|p| p.server_groups.len() == GROUPS_PER_PROJECT));
    }
}
