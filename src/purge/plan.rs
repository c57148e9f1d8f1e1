//! The planner: what a project must list for its targets, what a listing holds, which tasks each
//! target covers, and the exact calls that remove them. Pure: no I/O, no clock.
//!
//! SDRS lists by protection group: without `server_group_id` the list shows protection-group-level
//! failures, with it the failures inside that group. A [`Snapshot`] joins those lists, remembering
//! which group's list showed each failure, so the planner can choose the batch call that removes it.

use super::policy::{KpsMatch, SdrsMatch, Target};
use crate::api::Service;
use crate::cloud::model::{FailedTask, FailureJob, SERVER_GROUPS, parse_task_time};
use jiff::Timestamp;
use std::collections::{BTreeMap, BTreeSet};

/// A list call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListQuery {
    /// `GET /v1/{p}/server-groups`, every page.
    SdrsGroups,
    /// `GET /v1/{p}/task-center/failure-jobs`, every page; with `server_group_id` when `group` is set.
    SdrsJobs { group: Option<String> },
    /// `GET /v3/{p}/failed-tasks`, every page.
    Kps,
}

/// What one list call returned.
#[derive(Clone, Debug, PartialEq)]
pub enum Listing {
    /// Protection group ids.
    SdrsGroups(Vec<String>),
    SdrsJobs(Vec<FailureJob>),
    Kps(Vec<FailedTask>),
}

/// A call that changes something in the cloud.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
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

/// Which protection groups an SDRS snapshot lists the failures of.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Groups {
    #[default]
    None,
    /// These ids, as given.
    Ids(BTreeSet<String>),
    /// Every group `GET /v1/{p}/server-groups` lists, and these ids too.
    All(BTreeSet<String>),
}

impl Groups {
    fn union(self, other: Groups) -> Groups {
        match (self, other) {
            (Groups::None, g) | (g, Groups::None) => g,
            (Groups::Ids(mut a), Groups::Ids(b)) => {
                a.extend(b);
                Groups::Ids(a)
            }
            (Groups::All(mut a), Groups::Ids(b) | Groups::All(b)) | (Groups::Ids(b), Groups::All(mut a)) => {
                a.extend(b);
                Groups::All(a)
            }
        }
    }
}

/// The lists a project must take for a set of targets of one service.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scope {
    /// SDRS: the list without `server_group_id` (protection-group-level failures).
    pub group_level: bool,
    /// SDRS: the protection groups whose failures are listed.
    pub groups: Groups,
    /// KPS: the failed-task list.
    pub kps: bool,
}

/// What `target` needs listed; for `Matching`, only the lists its `resourceTypes` can match in.
pub fn scope(target: &Target) -> Scope {
    let all_groups = || Groups::All(BTreeSet::new());
    match target {
        Target::SdrsAll => Scope { group_level: true, groups: all_groups(), kps: false },
        Target::SdrsProtectionGroups(ids) => {
            Scope { group_level: false, groups: Groups::Ids(ids.iter().cloned().collect()), kps: false }
        }
        Target::SdrsMatching(m) => {
            let any = m.resource_types.is_empty();
            let group_level = any || m.resource_types.iter().any(|t| t == SERVER_GROUPS);
            let in_group = any || m.resource_types.iter().any(|t| t != SERVER_GROUPS);
            Scope { group_level, groups: if in_group { all_groups() } else { Groups::None }, kps: false }
        }
        Target::KpsAll | Target::KpsMatching(_) => Scope { kps: true, ..Scope::default() },
    }
}

/// The union of what several targets need.
pub fn joint_scope<'a>(targets: impl IntoIterator<Item = &'a Target>) -> Scope {
    targets.into_iter().map(scope).fold(Scope::default(), |a, b| Scope {
        group_level: a.group_level || b.group_level,
        groups: a.groups.union(b.groups),
        kps: a.kps || b.kps,
    })
}

/// One SDRS failure and the protection group whose list showed it (`None`: the group-level list).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SdrsTask {
    pub job: FailureJob,
    pub group: Option<String>,
}

/// What one project holds of one service, as its lists showed it at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Snapshot {
    Sdrs(Vec<SdrsTask>),
    Kps(Vec<FailedTask>),
}

impl Snapshot {
    /// Joins the SDRS lists: the group-level list and each group's list, in any order. A failure that
    /// several lists show (a looser reading of the list call) is kept once, with its group.
    pub fn sdrs(lists: impl IntoIterator<Item = (Option<String>, Vec<FailureJob>)>) -> Self {
        let mut by_id: BTreeMap<String, usize> = BTreeMap::new();
        let mut tasks: Vec<SdrsTask> = Vec::new();
        for (group, jobs) in lists {
            for job in jobs {
                match by_id.get(&job.job_id) {
                    Some(&i) if !job.job_id.is_empty() => {
                        if tasks[i].group.is_none() {
                            tasks[i].group = group.clone();
                        }
                    }
                    _ => {
                        by_id.insert(job.job_id.clone(), tasks.len());
                        tasks.push(SdrsTask { job, group: group.clone() });
                    }
                }
            }
        }
        Snapshot::Sdrs(tasks)
    }

    pub fn service(&self) -> Service {
        match self {
            Snapshot::Sdrs(_) => Service::Sdrs,
            Snapshot::Kps(_) => Service::Kps,
        }
    }

    /// The ids of every task.
    pub fn ids(&self) -> BTreeSet<&str> {
        match self {
            Snapshot::Sdrs(tasks) => tasks.iter().map(|t| t.job.job_id.as_str()).collect(),
            Snapshot::Kps(tasks) => tasks.iter().map(|t| t.task_id.as_str()).collect(),
        }
    }

    /// Drops the tasks with these ids, as a dry run imagines its deletes.
    pub fn remove(&mut self, ids: &BTreeSet<String>) {
        match self {
            Snapshot::Sdrs(tasks) => tasks.retain(|t| !ids.contains(&t.job.job_id)),
            Snapshot::Kps(tasks) => tasks.retain(|t| !ids.contains(&t.task_id)),
        }
    }
}

/// Longest task or protection-group id the planner puts in a path.
pub const MAX_ID_LEN: usize = 128;

/// Whether an id from the cloud may go into a DELETE path: non-empty, at most [`MAX_ID_LEN`]
/// characters of `A-Z a-z 0-9 - _`, and not a word the API gives a meaning of its own (`batch`).
/// So it can never be read as another path: no `/`, no `.` or `..` segment, not the batch call, not
/// the empty id that would turn a single delete into the delete-all. Anything else is refused.
pub fn is_safe_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !id.eq_ignore_ascii_case("batch")
}

/// A task a target covers.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Candidate {
    id: String,
    created: Option<Timestamp>,
    /// SDRS: the protection group whose list showed it.
    group: Option<String>,
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

/// The tasks of `snapshot` that `target` covers, oldest first (unreadable times last, ties by id).
fn candidates(target: &Target, snapshot: &Snapshot, now: Timestamp) -> Vec<Candidate> {
    let mut found: Vec<Candidate> = match snapshot {
        Snapshot::Sdrs(tasks) => tasks
            .iter()
            .filter(|t| match target {
                Target::SdrsAll => true,
                Target::SdrsProtectionGroups(ids) => t.group.as_ref().is_some_and(|g| ids.contains(g)),
                Target::SdrsMatching(m) => sdrs_matches(m, &t.job, now),
                Target::KpsAll | Target::KpsMatching(_) => false,
            })
            .map(|t| Candidate {
                id: t.job.job_id.clone(),
                created: parse_task_time(&t.job.begin_time),
                group: t.group.clone(),
            })
            .collect(),
        Snapshot::Kps(tasks) => tasks
            .iter()
            .filter(|t| match target {
                Target::KpsAll => true,
                Target::KpsMatching(m) => kps_matches(m, t, now),
                Target::SdrsAll | Target::SdrsProtectionGroups(_) | Target::SdrsMatching(_) => false,
            })
            .map(|t| Candidate { id: t.task_id.clone(), created: parse_task_time(&t.task_time), group: None })
            .collect(),
    };
    found.sort_by(|a, b| {
        (a.created.is_none(), a.created, &a.id).cmp(&(b.created.is_none(), b.created, &b.id))
    });
    found
}

/// The ids of the tasks `target` covers in `snapshot`; used before and after its calls to measure them.
pub fn covered_ids(target: &Target, snapshot: &Snapshot, now: Timestamp) -> BTreeSet<String> {
    candidates(target, snapshot, now).into_iter().map(|c| c.id).collect()
}

/// What one target does to one project.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TargetPlan {
    /// Ids of the tasks the target covers.
    pub found: BTreeSet<String>,
    /// Ids the plan removes (or would, in a dry run).
    pub selected: BTreeSet<String>,
    /// The calls to send; empty in a dry run.
    pub calls: Vec<DeleteCall>,
    /// The deletion budget cut this target short.
    pub limited: bool,
    /// Covered tasks left alone because their id (or their protection group's id) is not safe to
    /// put in a path; see [`is_safe_id`].
    pub unsafe_ids: u64,
}

/// Plans one target against what its project holds now. A `Matching` target deletes one by one,
/// oldest first, at most `budget` tasks (the rest of `maxDeletionsPerRun`); the other scopes use
/// the batch calls, which take no budget. A dry run selects but sends nothing.
pub fn plan_target(
    target: &Target,
    snapshot: &Snapshot,
    budget: u64,
    dry_run: bool,
    now: Timestamp,
) -> TargetPlan {
    let found = candidates(target, snapshot, now);
    // The id a candidate's removal puts in a path: its own for a single delete, its group's for a
    // per-group batch; none for the group-level batch and the KPS delete-all.
    let path_id = |c: &Candidate| -> Option<String> {
        match target {
            Target::SdrsMatching(_) | Target::KpsMatching(_) => Some(c.id.clone()),
            Target::SdrsAll | Target::SdrsProtectionGroups(_) => c.group.clone(),
            Target::KpsAll => None,
        }
    };
    let (deletable, refused): (Vec<&Candidate>, Vec<&Candidate>) =
        found.iter().partition(|c| path_id(c).is_none_or(|id| is_safe_id(&id)));
    let (selected, limited): (&[&Candidate], bool) = match target {
        Target::SdrsMatching(_) | Target::KpsMatching(_) => {
            let take = usize::try_from(budget).unwrap_or(usize::MAX).min(deletable.len());
            (&deletable[..take], take < deletable.len())
        }
        Target::SdrsAll | Target::SdrsProtectionGroups(_) | Target::KpsAll => (&deletable, false),
    };
    let calls = if dry_run || selected.is_empty() {
        Vec::new()
    } else {
        match target {
            // The group-level batch for failures the group-level list showed, the per-group batch
            // for each group whose list showed any.
            Target::SdrsAll | Target::SdrsProtectionGroups(_) => selected
                .iter()
                .map(|c| match &c.group {
                    None => DeleteCall::SdrsBatch,
                    Some(g) => DeleteCall::SdrsGroupBatch(g.clone()),
                })
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
            Target::SdrsMatching(_) => {
                selected.iter().map(|c| DeleteCall::SdrsDelete(c.id.clone())).collect()
            }
            Target::KpsAll => vec![DeleteCall::KpsDeleteAll],
            Target::KpsMatching(_) => selected.iter().map(|c| DeleteCall::KpsDelete(c.id.clone())).collect(),
        }
    };
    TargetPlan {
        selected: selected.iter().map(|c| c.id.clone()).collect(),
        unsafe_ids: refused.len() as u64,
        found: found.iter().map(|c| c.id.clone()).collect(),
        calls,
        limited,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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

    /// A group-level failure `a` and, in groups g1 and g2, instance failures b..f.
    fn sdrs() -> Snapshot {
        Snapshot::sdrs([
            (None, vec![job("a", "server_groups", "createFail", "tmp-a", "2026-11-01T00:00:00.000Z")]),
            (
                Some("g1".to_string()),
                vec![
                    job("b", "protected_instances", "createFail", "tmp-b", "2026-11-20T00:00:00.000Z"),
                    job("c", "protected_instances", "createFail", "prod-c", "2026-11-01T00:00:00.000Z"),
                    job("d", "protected_instances", "deleteFail", "tmp-d", "2026-10-01T00:00:00.000Z"),
                ],
            ),
            (
                Some("g2".to_string()),
                vec![
                    job("e", "protected_instances", "createFail", "tmp-e", "not a time"),
                    job("f", "protected_instances", "createFail", "tmp-f", "1760486400000"),
                ],
            ),
        ])
    }

    fn matching(resource_types: &[&str]) -> Target {
        Target::SdrsMatching(SdrsMatch {
            resource_types: resource_types.iter().map(|s| s.to_string()).collect(),
            failure_statuses: vec!["createFail".into()],
            name_pattern: Some(Regex::new("^tmp-").unwrap()),
            older_than: Some(Duration::from_secs(7 * 24 * 3600)),
        })
    }

    fn ids(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn scopes_list_only_what_the_targets_need() {
        let all = scope(&Target::SdrsAll);
        assert!(all.group_level && all.groups == Groups::All(BTreeSet::new()) && !all.kps);
        let instances = scope(&matching(&["protected_instances"]));
        assert!(!instances.group_level, "instance failures are only in the groups' lists");
        assert_eq!(instances.groups, Groups::All(BTreeSet::new()));
        let groups_only = scope(&matching(&["server_groups"]));
        assert!(groups_only.group_level);
        assert_eq!(groups_only.groups, Groups::None);
        let pg = Target::SdrsProtectionGroups(vec!["g1".into(), "g2".into()]);
        assert_eq!(scope(&pg).groups, Groups::Ids(ids(&["g1", "g2"])));
        let joint = joint_scope([&pg, &matching(&["server_groups"])]);
        assert!(joint.group_level && joint.groups == Groups::Ids(ids(&["g1", "g2"])));
        assert_eq!(joint_scope([&pg, &Target::SdrsAll]).groups, Groups::All(ids(&["g1", "g2"])));
        assert!(joint_scope([&Target::KpsAll]).kps);
        assert_eq!(joint_scope([]), Scope::default());
    }

    #[test]
    fn a_failure_shown_by_two_lists_is_kept_once_with_its_group() {
        // The looser reading: the unfiltered list shows the in-group failure too.
        let snap = Snapshot::sdrs([
            (None, vec![job("a", SERVER_GROUPS, "", "", ""), job("b", "replications", "", "", "")]),
            (Some("g1".into()), vec![job("b", "replications", "", "", "")]),
        ]);
        let Snapshot::Sdrs(tasks) = &snap else { panic!("sdrs") };
        assert_eq!(tasks.len(), 2);
        assert_eq!(tasks[1].group.as_deref(), Some("g1"));
        let plan = plan_target(&Target::SdrsAll, &snap, 0, false, now());
        assert_eq!(plan.calls, vec![DeleteCall::SdrsBatch, DeleteCall::SdrsGroupBatch("g1".into())]);
    }

    #[test]
    fn all_uses_the_group_level_batch_and_each_groups_batch() {
        let plan = plan_target(&Target::SdrsAll, &sdrs(), 0, false, now());
        assert_eq!(plan.found, ids(&["a", "b", "c", "d", "e", "f"]));
        assert_eq!(
            plan.calls,
            vec![
                DeleteCall::SdrsBatch,
                DeleteCall::SdrsGroupBatch("g1".into()),
                DeleteCall::SdrsGroupBatch("g2".into())
            ]
        );
        assert!(!plan.limited, "the budget applies to Matching only");
    }

    #[test]
    fn matching_deletes_only_what_matches_every_filter_across_groups() {
        let plan = plan_target(&matching(&["protected_instances"]), &sdrs(), 1000, false, now());
        // b is too young, c has the wrong name, d the wrong status, e no readable time, a the wrong
        // type; f (epoch milliseconds, October) matches.
        assert_eq!(plan.selected, ids(&["f"]));
        assert_eq!(plan.calls, vec![DeleteCall::SdrsDelete("f".into())]);
    }

    #[test]
    fn protection_groups_batch_only_their_groups_with_failures() {
        let target = Target::SdrsProtectionGroups(vec!["g2".into(), "g3".into()]);
        let plan = plan_target(&target, &sdrs(), 0, false, now());
        assert_eq!(plan.found, ids(&["e", "f"]));
        assert_eq!(plan.calls, vec![DeleteCall::SdrsGroupBatch("g2".into())]);
    }

    #[test]
    fn empty_targets_send_nothing() {
        let empty = Snapshot::Kps(vec![]);
        assert_eq!(plan_target(&Target::KpsAll, &empty, 9, false, now()), TargetPlan::default());
        assert_eq!(
            plan_target(&Target::SdrsAll, &Snapshot::sdrs([]), 9, false, now()),
            TargetPlan::default()
        );
    }

    #[test]
    fn dry_run_selects_but_never_calls() {
        let plan = plan_target(&Target::SdrsAll, &sdrs(), 0, true, now());
        assert!(plan.calls.is_empty());
        assert_eq!(plan.selected.len(), 6);
    }

    #[test]
    fn the_budget_takes_the_oldest_first() {
        let m = Target::KpsMatching(KpsMatch {
            operate_types: vec!["FAILED_UNBIND".into()],
            name_pattern: Some(Regex::new("^kp-").unwrap()),
            older_than: None,
        });
        let snap = Snapshot::Kps(vec![
            task("new", "FAILED_UNBIND", "kp-x", "2026-11-20T00:00:00Z"),
            task("old", "FAILED_UNBIND", "kp-y", "1700000000000"),
            task("older", "FAILED_UNBIND", "kp-y", "1600000000"),
            task("reset", "FAILED_RESET", "kp-z", "2026-11-01T00:00:00Z"),
            task("odd", "RUNNING_RESET", "kp-z", "2026-11-01T00:00:00Z"),
            task("other", "FAILED_UNBIND", "other", "2026-11-01T00:00:00Z"),
        ]);
        let plan = plan_target(&m, &snap, 2, false, now());
        assert_eq!(plan.found, ids(&["new", "old", "older"]));
        assert_eq!(
            plan.calls,
            vec![DeleteCall::KpsDelete("older".into()), DeleteCall::KpsDelete("old".into())]
        );
        assert!(plan.limited);
        let none = plan_target(&m, &snap, 0, false, now());
        assert!(none.calls.is_empty() && none.selected.is_empty() && none.limited);
        assert_eq!(
            plan_target(&Target::KpsAll, &snap, 0, false, now()).calls,
            vec![DeleteCall::KpsDeleteAll]
        );
    }

    #[test]
    fn ids_that_could_name_another_path_are_refused() {
        for good in ["897f57b2-6e94-4179-b414-9532726c59f2", "ff808082686f229a0168707beaab014e", "a_b-C9"] {
            assert!(is_safe_id(good), "{good}");
        }
        let long = "a".repeat(MAX_ID_LEN + 1);
        for bad in ["", ".", "..", "batch", "BATCH", "a/b", "%2e%2e", "a b", "a?x=1", "a#b", "é", &long] {
            assert!(!is_safe_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn unsafe_ids_are_never_deleted_and_are_counted() {
        let snap = Snapshot::Kps(vec![
            task("", "FAILED_UNBIND", "kp-a", "1600000000"),
            task("batch", "FAILED_UNBIND", "kp-b", "1600000000"),
            task("..", "FAILED_UNBIND", "kp-c", "1600000000"),
            task("ok-1", "FAILED_UNBIND", "kp-d", "1600000000"),
        ]);
        let plan = plan_target(&Target::KpsMatching(KpsMatch::default()), &snap, 10, false, now());
        assert_eq!(plan.calls, vec![DeleteCall::KpsDelete("ok-1".into())]);
        assert_eq!((plan.found.len(), plan.unsafe_ids), (4, 3));
        // The delete-all puts no id in its path.
        let all = plan_target(&Target::KpsAll, &snap, 0, false, now());
        assert_eq!((all.calls, all.unsafe_ids), (vec![DeleteCall::KpsDeleteAll], 0));
        // A protection group id that is not safe gets no per-group batch.
        let groups = Snapshot::sdrs([
            (Some("../x".to_string()), vec![job("j1", "replications", "", "", "")]),
            (Some("g1".to_string()), vec![job("j2", "replications", "", "", "")]),
        ]);
        let plan = plan_target(&Target::SdrsAll, &groups, 0, false, now());
        assert_eq!((plan.calls, plan.unsafe_ids), (vec![DeleteCall::SdrsGroupBatch("g1".into())], 1));
    }

    #[test]
    fn a_dry_run_removes_what_it_selected_for_later_targets() {
        let mut snap = sdrs();
        snap.remove(&ids(&["a", "f"]));
        assert_eq!(snap.ids(), ["b", "c", "d", "e"].into_iter().collect());
    }
}
