//! The planner: from a policy, what each target's listings showed, and `now`, decide the exact calls
//! to make. Pure: no I/O, no clock.

use super::policy::{KpsMatch, PurgePolicy, SdrsMatch, Target};
use crate::cloud::model::{FailedTask, FailureJob, FailureJobFilter, SERVER_GROUPS, parse_task_time};
use jiff::Timestamp;
use std::collections::BTreeSet;

/// A list call whose result a target needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListQuery {
    Sdrs(FailureJobFilter),
    Kps,
}

/// What one list call returned.
#[derive(Clone, Debug, PartialEq)]
pub enum Listing {
    Sdrs(Vec<FailureJob>),
    Kps(Vec<FailedTask>),
}

/// A call that changes something in the cloud.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeleteCall {
    /// `DELETE /v1/{p}/task-center/failure-jobs/batch`
    SdrsBatch,
    /// `DELETE /v1/{p}/task-center/{server_group_id}/failure-jobs/batch`
    SdrsGroupBatch(String),
    /// `DELETE /v1/{p}/task-center/failure-jobs/{failure_job_id}`
    SdrsDelete(String),
    /// `DELETE /v3/{p}/failed-tasks`
    KpsDeleteAll,
    /// `DELETE /v3/{p}/failed-tasks/{task_id}`
    KpsDelete(String),
}

/// A project x target, as indexes into the policy's projects and targets.
pub type Unit = (usize, usize);

/// What listing a unit showed before the run: its listings, or `None` when listing failed.
pub type Observation = (Unit, Option<Vec<Listing>>);

/// The plan for one project x target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitPlan {
    pub project: usize,
    pub target: usize,
    /// Ids of the tasks the target covers, as listed before the run.
    pub found: BTreeSet<String>,
    /// Ids the plan removes (or would, in a dry run).
    pub selected: BTreeSet<String>,
    /// The calls to send; empty in a dry run.
    pub calls: Vec<DeleteCall>,
    /// `maxDeletionsPerRun` cut this target short.
    pub limited: bool,
}

/// The list calls a target needs, in order. A protection-group target lists each group.
pub fn list_queries(target: &Target) -> Vec<ListQuery> {
    let sdrs = |resource_type: Option<&str>, failure_status: Option<&str>, group: Option<&str>| {
        ListQuery::Sdrs(FailureJobFilter {
            resource_type: resource_type.map(str::to_string),
            failure_status: failure_status.map(str::to_string),
            server_group_id: group.map(str::to_string),
            resource_name: None,
        })
    };
    let single = |values: &[String]| match values {
        [one] => Some(one.clone()),
        _ => None,
    };
    match target {
        Target::SdrsAll => vec![sdrs(Some(SERVER_GROUPS), None, None)],
        Target::SdrsProtectionGroups(groups) => groups.iter().map(|g| sdrs(None, None, Some(g))).collect(),
        Target::SdrsMatching(m) => {
            vec![sdrs(single(&m.resource_types).as_deref(), single(&m.failure_statuses).as_deref(), None)]
        }
        Target::KpsAll | Target::KpsMatching(_) => vec![ListQuery::Kps],
    }
}

/// A task the target covers, with its age for ordering.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Candidate {
    id: String,
    created: Option<Timestamp>,
}

/// True when the task is at least `older_than` old. A task whose time cannot be read is never old
/// enough: the planner only deletes what it can prove matches.
fn old_enough(time: &str, older_than: Option<std::time::Duration>, now: Timestamp) -> bool {
    let Some(min_age) = older_than else { return true };
    let Some(created) = parse_task_time(time) else { return false };
    jiff::SignedDuration::try_from(min_age)
        .ok()
        .and_then(|d| now.checked_sub(d).ok())
        .is_some_and(|cutoff| created <= cutoff)
}

fn in_list(values: &[String], value: &str) -> bool {
    values.is_empty() || values.iter().any(|v| v == value)
}

/// True when an SDRS failure matches the target's filters.
pub fn sdrs_matches(m: &SdrsMatch, job: &FailureJob, now: Timestamp) -> bool {
    in_list(&m.resource_types, &job.resource_type)
        && in_list(&m.failure_statuses, &job.failure_status)
        && m.name_pattern.as_ref().is_none_or(|re| re.is_match(&job.resource_name))
        && old_enough(&job.begin_time, m.older_than, now)
}

/// True when a KPS failed task matches the target's filters.
pub fn kps_matches(m: &KpsMatch, task: &FailedTask, now: Timestamp) -> bool {
    in_list(&m.operate_types, &task.operate_type)
        && m.name_pattern.as_ref().is_none_or(|re| re.is_match(&task.keypair_name))
        && old_enough(&task.task_time, m.older_than, now)
}

/// The tasks a target covers in its listings (one listing per [`list_queries`] entry), oldest first.
fn candidates(target: &Target, listings: &[Listing], now: Timestamp) -> Vec<Candidate> {
    let sdrs = |keep: &dyn Fn(&FailureJob) -> bool| -> Vec<Candidate> {
        listings
            .iter()
            .filter_map(|l| match l {
                Listing::Sdrs(jobs) => Some(jobs),
                Listing::Kps(_) => None,
            })
            .flatten()
            .filter(|j| keep(j))
            .map(|j| Candidate { id: j.job_id.clone(), created: parse_task_time(&j.begin_time) })
            .collect()
    };
    let kps = |keep: &dyn Fn(&FailedTask) -> bool| -> Vec<Candidate> {
        listings
            .iter()
            .filter_map(|l| match l {
                Listing::Kps(tasks) => Some(tasks),
                Listing::Sdrs(_) => None,
            })
            .flatten()
            .filter(|t| keep(t))
            .map(|t| Candidate { id: t.task_id.clone(), created: parse_task_time(&t.task_time) })
            .collect()
    };
    let mut found = match target {
        Target::SdrsAll => sdrs(&|j| j.resource_type == SERVER_GROUPS),
        Target::SdrsProtectionGroups(_) => sdrs(&|_| true),
        Target::SdrsMatching(m) => sdrs(&|j| sdrs_matches(m, j, now)),
        Target::KpsAll => kps(&|_| true),
        Target::KpsMatching(m) => kps(&|t| kps_matches(m, t, now)),
    };
    // Oldest first; tasks without a readable time last; ties by id so the plan is deterministic.
    found.sort_by(|a, b| {
        (a.created.is_none(), a.created, &a.id).cmp(&(b.created.is_none(), b.created, &b.id))
    });
    found.dedup_by(|a, b| a.id == b.id);
    found
}

/// The ids a target covers in its listings; used before and after a run to measure it.
pub fn covered_ids(target: &Target, listings: &[Listing], now: Timestamp) -> BTreeSet<String> {
    candidates(target, listings, now).into_iter().map(|c| c.id).collect()
}

/// Plans a run. `observed` holds, per project x target, the listings of [`list_queries`] or `None`
/// when listing failed (such a target gets no calls). Matching targets share the deletion budget in
/// project order, then target order, oldest tasks first.
pub fn plan(policy: &PurgePolicy, observed: &[Observation], now: Timestamp) -> Vec<UnitPlan> {
    let mut budget = policy.max_deletions;
    let mut units: Vec<UnitPlan> = Vec::with_capacity(observed.len());
    let mut ordered: Vec<&Observation> = observed.iter().collect();
    ordered.sort_by_key(|(key, _)| *key);
    for ((project, target_index), listings) in ordered {
        let Some(target) = policy.targets.get(*target_index) else { continue };
        let Some(listings) = listings else { continue };
        let found = candidates(target, listings, now);
        let found_ids: BTreeSet<String> = found.iter().map(|c| c.id.clone()).collect();
        let (selected, limited): (Vec<&Candidate>, bool) = match target {
            Target::SdrsMatching(_) | Target::KpsMatching(_) => {
                let take = usize::try_from(budget).unwrap_or(usize::MAX).min(found.len());
                budget -= take as u64;
                (found.iter().take(take).collect(), take < found.len())
            }
            _ => (found.iter().collect(), false),
        };
        let calls = if policy.dry_run || selected.is_empty() {
            Vec::new()
        } else {
            match target {
                Target::SdrsAll => vec![DeleteCall::SdrsBatch],
                Target::SdrsProtectionGroups(groups) => groups
                    .iter()
                    .zip(listings)
                    .filter(|(_, l)| matches!(l, Listing::Sdrs(jobs) if !jobs.is_empty()))
                    .map(|(g, _)| DeleteCall::SdrsGroupBatch(g.clone()))
                    .collect(),
                Target::SdrsMatching(_) => {
                    selected.iter().map(|c| DeleteCall::SdrsDelete(c.id.clone())).collect()
                }
                Target::KpsAll => vec![DeleteCall::KpsDeleteAll],
                Target::KpsMatching(_) => {
                    selected.iter().map(|c| DeleteCall::KpsDelete(c.id.clone())).collect()
                }
            }
        };
        units.push(UnitPlan {
            project: *project,
            target: *target_index,
            selected: selected.iter().map(|c| c.id.clone()).collect(),
            found: found_ids,
            calls,
            limited,
        });
    }
    units
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::purge::policy::Project;
    use regex::Regex;
    use std::time::Duration;

    fn now() -> Timestamp {
        "2026-11-22T00:00:00Z".parse().unwrap()
    }

    fn job(id: &str, resource_type: &str, status: &str, name: &str, begin: &str) -> FailureJob {
        FailureJob {
            job_id: id.into(),
            resource_type: resource_type.into(),
            failure_status: status.into(),
            resource_name: name.into(),
            begin_time: begin.into(),
            ..FailureJob::default()
        }
    }

    fn task(id: &str, op: &str, keypair: &str, time: &str) -> FailedTask {
        FailedTask {
            task_id: id.into(),
            operate_type: op.into(),
            keypair_name: keypair.into(),
            task_time: time.into(),
            ..FailedTask::default()
        }
    }

    fn policy(targets: Vec<Target>, dry_run: bool, max_deletions: u64) -> PurgePolicy {
        let project = |id: &str| Project { id: id.into(), region: "cn-north-4".into() };
        PurgePolicy { projects: vec![project("p0"), project("p1")], targets, dry_run, max_deletions }
    }

    fn sdrs_listing() -> Vec<Listing> {
        vec![Listing::Sdrs(vec![
            job("a", "server_groups", "createFail", "tmp-a", "2026-11-01T00:00:00.000Z"),
            job("b", "protected_instances", "createFail", "tmp-b", "2026-11-20T00:00:00.000Z"),
            job("c", "protected_instances", "createFail", "prod-c", "2026-11-01T00:00:00.000Z"),
            job("d", "protected_instances", "deleteFail", "tmp-d", "2026-10-01T00:00:00.000Z"),
            job("e", "protected_instances", "createFail", "tmp-e", "not a time"),
            job("f", "protected_instances", "createFail", "tmp-f", "2026-10-15T00:00:00.000Z"),
        ])]
    }

    fn matching() -> Target {
        Target::SdrsMatching(SdrsMatch {
            resource_types: vec!["protected_instances".into()],
            failure_statuses: vec!["createFail".into()],
            name_pattern: Some(Regex::new("^tmp-").unwrap()),
            older_than: Some(Duration::from_secs(7 * 24 * 3600)),
        })
    }

    #[test]
    fn queries_push_single_filters_to_the_server() {
        let q = list_queries(&matching());
        let ListQuery::Sdrs(filter) = &q[0] else { panic!("sdrs query") };
        assert_eq!(filter.resource_type.as_deref(), Some("protected_instances"));
        assert_eq!(filter.failure_status.as_deref(), Some("createFail"));
        let ListQuery::Sdrs(all) = &list_queries(&Target::SdrsAll)[0] else { panic!("sdrs query") };
        assert_eq!(all.resource_type.as_deref(), Some(SERVER_GROUPS));
        assert_eq!(list_queries(&Target::SdrsProtectionGroups(vec!["g1".into(), "g2".into()])).len(), 2);
        assert_eq!(list_queries(&Target::KpsAll), vec![ListQuery::Kps]);
    }

    #[test]
    fn matching_deletes_only_what_matches_every_filter() {
        let p = policy(vec![matching()], false, 1000);
        let units = plan(&p, &[((0, 0), Some(sdrs_listing()))], now());
        assert_eq!(units.len(), 1);
        // b is too young, c has the wrong name, d the wrong status, e no readable time, a the wrong type.
        assert_eq!(units[0].selected, BTreeSet::from(["f".to_string()]));
        assert_eq!(units[0].calls, vec![DeleteCall::SdrsDelete("f".into())]);
        assert!(!units[0].limited);
    }

    #[test]
    fn all_scope_covers_only_server_groups_even_if_the_server_returns_more() {
        let p = policy(vec![Target::SdrsAll], false, 1);
        let units = plan(&p, &[((0, 0), Some(sdrs_listing()))], now());
        assert_eq!(units[0].found, BTreeSet::from(["a".to_string()]));
        assert_eq!(units[0].calls, vec![DeleteCall::SdrsBatch]);
        assert!(!units[0].limited, "the budget applies to Matching only");
    }

    #[test]
    fn empty_targets_send_nothing() {
        let p = policy(vec![Target::SdrsAll, Target::KpsAll], false, 10);
        let units = plan(
            &p,
            &[((0, 0), Some(vec![Listing::Sdrs(vec![])])), ((0, 1), Some(vec![Listing::Kps(vec![])]))],
            now(),
        );
        assert!(units.iter().all(|u| u.calls.is_empty() && u.found.is_empty()));
    }

    #[test]
    fn dry_run_selects_but_never_calls() {
        let p = policy(vec![matching(), Target::KpsAll], true, 1000);
        let kps = vec![Listing::Kps(vec![task("t1", "FAILED_UNBIND", "kp-1", "2026-01-01T00:00:00Z")])];
        let units = plan(&p, &[((0, 0), Some(sdrs_listing())), ((0, 1), Some(kps))], now());
        assert!(units.iter().all(|u| u.calls.is_empty()));
        assert_eq!(units.iter().map(|u| u.selected.len()).sum::<usize>(), 2);
    }

    #[test]
    fn budget_spans_projects_and_takes_oldest_first() {
        let m = Target::KpsMatching(KpsMatch {
            operate_types: vec!["FAILED_UNBIND".into()],
            name_pattern: Some(Regex::new("^kp-").unwrap()),
            older_than: None,
        });
        let p = policy(vec![m], false, 3);
        let listing = |prefix: &str| {
            Some(vec![Listing::Kps(vec![
                task(&format!("{prefix}-new"), "FAILED_UNBIND", "kp-x", "2026-11-20T00:00:00Z"),
                task(&format!("{prefix}-old"), "FAILED_UNBIND", "kp-y", "1700000000000"),
                task(&format!("{prefix}-reset"), "FAILED_RESET", "kp-z", "2026-11-01T00:00:00Z"),
                task(&format!("{prefix}-other"), "FAILED_UNBIND", "other", "2026-11-01T00:00:00Z"),
            ])])
        };
        let units = plan(&p, &[((1, 0), listing("q")), ((0, 0), listing("p"))], now());
        assert_eq!(units[0].project, 0, "projects in order");
        assert_eq!(units[0].selected, BTreeSet::from(["p-new".to_string(), "p-old".to_string()]));
        assert!(!units[0].limited);
        assert_eq!(units[1].calls, vec![DeleteCall::KpsDelete("q-old".into())]);
        assert!(units[1].limited);
        assert_eq!(units[1].found.len(), 2);
    }

    #[test]
    fn protection_groups_batch_only_groups_with_failures() {
        let p = policy(vec![Target::SdrsProtectionGroups(vec!["g1".into(), "g2".into()])], false, 10);
        let listings = vec![
            Listing::Sdrs(vec![job(
                "x",
                "protected_instances",
                "createFail",
                "n",
                "2026-11-01T00:00:00.000Z",
            )]),
            Listing::Sdrs(vec![]),
        ];
        let units = plan(&p, &[((0, 0), Some(listings))], now());
        assert_eq!(units[0].calls, vec![DeleteCall::SdrsGroupBatch("g1".into())]);
    }

    #[test]
    fn failed_listings_get_no_plan() {
        let p = policy(vec![Target::KpsAll], false, 10);
        assert!(plan(&p, &[((0, 0), None)], now()).is_empty());
    }
}
