//! A deterministic generator of realistic failed tasks for demos, tests and benchmarks: the same
//! projects, count, seed and `now` always give the same data. Pure.

use jiff::{SignedDuration, Timestamp};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{RngExt, SeedableRng};

use crate::cloud::model::{
    FailedTask, FailureJob, KPS_OPERATE_TYPES, SDRS_FAILURE_STATUSES, SDRS_RESOURCE_TYPES, SERVER_GROUPS,
};

use super::store::{ProjectSeed, SeedFile, SeededJob};

/// Protection groups made per project.
pub const GROUPS_PER_PROJECT: usize = 3;
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

/// `tasks_per_kind` SDRS jobs for each resource type and as many KPS tasks for each operate type,
/// in every project, aged between [`MIN_AGE`] and [`MAX_AGE`] before `now`, newest first.
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

/// `2026-11-01T12:00:00Z`, as KPS writes `task_time`.
pub fn kps_time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn noun(resource_type: &str) -> (&'static str, &'static str) {
    match resource_type {
        "server_groups" => ("ServerGroup", "pg"),
        "protected_instances" => ("ProtectedInstance", "vm"),
        "replications" => ("Replication", "rep"),
        _ => ("DisasterRecoveryDrill", "drill"),
    }
}

fn project(rng: &mut StdRng, n: usize, now: Timestamp) -> ProjectSeed {
    let mut prefix = rng.random_range(0..NAME_PREFIXES.len());
    let mut next_prefix = move || {
        prefix = (prefix + 1) % NAME_PREFIXES.len();
        NAME_PREFIXES[prefix]
    };
    let groups: Vec<(String, String)> =
        (1..=GROUPS_PER_PROJECT).map(|k| (uuid(rng), format!("{}-pg-{k:02}", next_prefix()))).collect();
    let mut status = rng.random_range(0..SDRS_FAILURE_STATUSES.len());

    let mut jobs: Vec<(Timestamp, SeededJob)> = Vec::new();
    for resource_type in SDRS_RESOURCE_TYPES {
        let (noun, short) = noun(resource_type);
        for i in 0..n {
            status = (status + 1) % SDRS_FAILURE_STATUSES.len();
            let failure_status = SDRS_FAILURE_STATUSES[status];
            let (group_id, group_name) = groups.choose(rng).cloned().unwrap_or_default();
            let (resource_id, resource_name) = if resource_type == SERVER_GROUPS {
                (group_id.clone(), group_name)
            } else {
                (uuid(rng), format!("{}-{short}-{:02}", next_prefix(), i + 1))
            };
            let (error_code, fail_reason) = SDRS_FAILURES.choose(rng).copied().unwrap_or_default();
            let begin = at(now, age(rng, i, n));
            let job = FailureJob {
                job_id: uuid(rng),
                job_type: format!("{}{noun}", failure_status.trim_end_matches("Fail")),
                job_status: "FAIL".into(),
                begin_time: sdrs_time(begin),
                failure_status: failure_status.into(),
                resource_id,
                resource_name,
                resource_type: resource_type.into(),
                error_code: error_code.into(),
                fail_reason: fail_reason.into(),
            };
            jobs.push((begin, SeededJob::new(job, Some(group_id))));
        }
    }

    let mut keypair = rng.random_range(0..KEYPAIR_PREFIXES.len());
    let mut tasks: Vec<(Timestamp, FailedTask)> = Vec::new();
    for operate_type in KPS_OPERATE_TYPES {
        for i in 0..n {
            keypair = (keypair + 1) % KEYPAIR_PREFIXES.len();
            let role = KEYPAIR_ROLES.choose(rng).copied().unwrap_or("web");
            let (task_error_code, task_error_msg) = KPS_FAILURES.choose(rng).copied().unwrap_or_default();
            let time = at(now, age(rng, i, n));
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
        failure_jobs: jobs.into_iter().map(|(_, j)| j).collect(),
        failed_tasks: tasks.into_iter().map(|(_, t)| t).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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

    #[test]
    fn covers_every_kind_status_and_operate_type() {
        let seed = generate(&projects(), 10, 7, now());
        for data in seed.projects.values() {
            assert_eq!(data.failure_jobs.len(), 40);
            assert_eq!(data.failed_tasks.len(), 30);
            for kind in SDRS_RESOURCE_TYPES {
                assert_eq!(data.failure_jobs.iter().filter(|j| j.job.resource_type == kind).count(), 10);
            }
            let statuses: BTreeSet<&str> =
                data.failure_jobs.iter().map(|j| j.job.failure_status.as_str()).collect();
            assert_eq!(statuses.len(), SDRS_FAILURE_STATUSES.len());
            for op in KPS_OPERATE_TYPES {
                assert_eq!(data.failed_tasks.iter().filter(|t| t.operate_type == op).count(), 10);
            }
            assert!(data.failure_jobs.iter().all(|j| j.job.job_status == "FAIL"));
        }
    }

    #[test]
    fn names_and_groups_vary() {
        let seed = generate(&projects(), 10, 7, now());
        for data in seed.projects.values() {
            let names: Vec<&str> = data.failure_jobs.iter().map(|j| j.job.resource_name.as_str()).collect();
            assert!(names.iter().any(|n| n.starts_with("tmp-")), "{names:?}");
            assert!(names.iter().any(|n| n.starts_with("prod-")), "{names:?}");
            let keypairs: Vec<&str> = data.failed_tasks.iter().map(|t| t.keypair_name.as_str()).collect();
            assert!(keypairs.iter().any(|n| n.starts_with("kp-")), "{keypairs:?}");
            assert!(keypairs.iter().any(|n| !n.starts_with("kp-")), "{keypairs:?}");
            let groups: BTreeSet<&str> = data.failure_jobs.iter().filter_map(|j| j.group_id()).collect();
            assert_eq!(groups.len(), GROUPS_PER_PROJECT);
            for j in data.failure_jobs.iter().filter(|j| j.job.resource_type == SERVER_GROUPS) {
                assert_eq!(j.group_id(), Some(j.job.resource_id.as_str()));
            }
            let ids: BTreeSet<&str> = data.failure_jobs.iter().map(|j| j.job.job_id.as_str()).collect();
            assert_eq!(ids.len(), 40, "job ids are unique");
            assert_eq!(data.failure_jobs[0].job.job_id.len(), 36);
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
        let task_ages: Vec<SignedDuration> =
            data.failed_tasks.iter().map(|t| now().duration_since(t.task_time.parse().unwrap())).collect();
        assert!(task_ages.iter().any(|a| *a < SignedDuration::from_hours(72)));
        assert!(task_ages.iter().any(|a| *a > SignedDuration::from_hours(14 * 24)));
    }

    #[test]
    fn time_formats_match_the_services() {
        let t: Timestamp = "2026-11-01T12:00:00.5Z".parse().unwrap();
        assert_eq!(sdrs_time(t), "2026-11-01T12:00:00.500Z");
        assert_eq!(kps_time(t), "2026-11-01T12:00:00Z");
        let seed = generate(&projects(), 1, 1, now());
        let job = &seed.projects[&projects()[0]].failure_jobs[0].job;
        assert!(
            regex::Regex::new(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$").unwrap().is_match(&job.begin_time)
        );
        assert!(job.job_type.ends_with(noun(&job.resource_type).0));
    }

    #[test]
    fn zero_tasks_gives_empty_projects() {
        let seed = generate(&projects(), 0, 1, now());
        assert_eq!(seed.projects.len(), 2);
        assert!(seed.projects.values().all(|p| p.failure_jobs.is_empty() && p.failed_tasks.is_empty()));
    }
}
