//! The planner: what a project must list for its targets, what a listing holds, which tasks each
//! target covers, and the exact calls that remove them. Pure: no I/O, no clock.
//!
//! SDRS lists by protection group: without `server_group_id` the list shows protection-group-level
//! failures, with it the failures inside that group. A [`Snapshot`] joins those lists, remembering
//! which group's list showed each failure, so the planner can choose the batch call that removes it.
//!
//! A snapshot keeps of each task only what planning and counting need (its id, its time, its group
//! and which targets cover it, decided page by page as the lists arrive), about 100 bytes a task.

use super::policy::{KpsMatch, SdrsMatch, Target};
use crate::cloud::model::{FailedTask, FailureJob, SERVER_GROUPS, parse_task_time};
use jiff::Timestamp;
use std::collections::{BTreeSet, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

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

/// One page of a list call, with only the items not seen on earlier pages.
#[derive(Clone, Debug, PartialEq)]
pub enum Page {
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

/// One task as a run keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    pub id: Box<str>,
    /// When it began, in epoch milliseconds; `i64::MAX` when unreadable, so it sorts last.
    created_ms: i64,
    /// SDRS: the protection group whose list showed it; `None` for the group-level list.
    pub group: Option<Arc<str>>,
    /// Bit `i` is set when target `i` of the lane (the targets of one service, in spec order)
    /// covers the task.
    covers: u32,
}

/// Most targets one lane can tell apart (the CRD allows 16 per policy).
pub const MAX_LANE_TARGETS: usize = 32;

/// Turns listed tasks into [`Item`]s for the targets of one lane, page by page.
#[derive(Clone, Copy)]
pub struct Coverage<'a> {
    pub targets: &'a [&'a Target],
    pub now: Timestamp,
}

impl Coverage<'_> {
    fn bits(&self, covers: impl Fn(&Target) -> bool) -> u32 {
        self.targets
            .iter()
            .take(MAX_LANE_TARGETS)
            .enumerate()
            .filter(|(_, t)| covers(t))
            .fold(0, |b, (i, _)| b | 1 << i)
    }

    /// SDRS failures from the list of `group` (`None`: the group-level list).
    pub fn jobs(&self, group: Option<&Arc<str>>, jobs: Vec<FailureJob>) -> Vec<Item> {
        jobs.into_iter()
            .map(|job| Item {
                covers: self.bits(|t| match t {
                    Target::SdrsAll => true,
                    Target::SdrsProtectionGroups(ids) => {
                        group.is_some_and(|g| ids.iter().any(|id| **id == **g))
                    }
                    Target::SdrsMatching(m) => sdrs_matches(m, &job, self.now),
                    Target::KpsAll | Target::KpsMatching(_) => false,
                }),
                created_ms: millis(&job.begin_time),
                group: group.cloned(),
                id: job.job_id.into_boxed_str(),
            })
            .collect()
    }

    /// KPS failed tasks.
    pub fn tasks(&self, tasks: Vec<FailedTask>) -> Vec<Item> {
        tasks
            .into_iter()
            .map(|task| Item {
                covers: self.bits(|t| match t {
                    Target::KpsAll => true,
                    Target::KpsMatching(m) => kps_matches(m, &task, self.now),
                    Target::SdrsAll | Target::SdrsProtectionGroups(_) | Target::SdrsMatching(_) => false,
                }),
                created_ms: millis(&task.task_time),
                group: None,
                id: task.task_id.into_boxed_str(),
            })
            .collect()
    }
}

fn millis(time: &str) -> i64 {
    parse_task_time(time).map_or(i64::MAX, |t| t.as_millisecond())
}

/// What one project holds of one service, as its lists showed it at one moment.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    items: Vec<Item>,
    hasher: RandomState,
}

impl Snapshot {
    /// Joins lists taken at the same moment, the protection groups' lists before the group-level
    /// one: a failure that several lists show (a looser reading of the list call) is kept once,
    /// with its group. Tasks without an id are all kept.
    pub fn join(mut lists: Vec<(Option<Arc<str>>, Vec<Item>)>) -> Self {
        lists.sort_by_key(|(group, _)| group.is_none());
        let hasher = RandomState::new();
        let mut seen: HashSet<u64> = HashSet::new();
        let mut items = Vec::with_capacity(lists.iter().map(|(_, l)| l.len()).sum());
        for (_, list) in lists {
            items
                .extend(list.into_iter().filter(|i| i.id.is_empty() || seen.insert(hasher.hash_one(&*i.id))));
        }
        Snapshot { items, hasher }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn items(&self) -> &[Item] {
        &self.items
    }

    /// Hashes of every id, to tell which tasks of an earlier snapshot are gone.
    pub fn id_hashes(&self) -> HashSet<u64> {
        self.items.iter().map(|i| self.hasher.hash_one(&*i.id)).collect()
    }

    /// How many of `indexes` (into `self`) name tasks that `later` no longer holds.
    pub fn gone_in(&self, indexes: &[u32], later: &Snapshot) -> usize {
        let present: HashSet<u64> = later.items.iter().map(|i| self.hasher.hash_one(&*i.id)).collect();
        indexes
            .iter()
            .filter(|&&i| !present.contains(&self.hasher.hash_one(&*self.items[i as usize].id)))
            .count()
    }

    /// How many tasks lane target `lane_index` covers.
    pub fn covered(&self, lane_index: usize) -> usize {
        self.items.iter().filter(|i| i.covers & 1 << lane_index != 0).count()
    }

    /// Drops the tasks at `indexes`, as a dry run imagines its deletes.
    pub fn remove(&mut self, indexes: &[u32]) {
        let drop: HashSet<u32> = indexes.iter().copied().collect();
        let mut position = 0u32;
        self.items.retain(|_| {
            let keep = !drop.contains(&position);
            position += 1;
            keep
        });
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

/// What one target does to one project.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TargetPlan {
    /// Indexes (into the snapshot planned from) of the tasks the target covers, oldest first.
    pub found: Vec<u32>,
    /// Indexes of the tasks the plan removes (or would, in a dry run).
    pub selected: Vec<u32>,
    /// The calls to send; empty in a dry run.
    pub calls: Vec<DeleteCall>,
    /// The deletion budget cut this target short.
    pub limited: bool,
    /// Covered tasks left alone because their id (or their protection group's id) is not safe to
    /// put in a path; see [`is_safe_id`].
    pub unsafe_ids: u64,
}

/// Plans the target at `lane_index` of its lane against what its project holds now. A `Matching`
/// target deletes one by one, oldest first, at most `budget` tasks (the rest of
/// `maxDeletionsPerRun`); the other scopes use the batch calls, which take no budget. A dry run
/// selects but sends nothing.
pub fn plan_target(
    target: &Target,
    lane_index: usize,
    snapshot: &Snapshot,
    budget: u64,
    dry_run: bool,
) -> TargetPlan {
    let items = snapshot.items();
    let mut found: Vec<u32> =
        (0..items.len() as u32).filter(|&i| items[i as usize].covers & 1 << lane_index != 0).collect();
    found.sort_by(|&a, &b| {
        let (a, b) = (&items[a as usize], &items[b as usize]);
        (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id))
    });
    // The id a task's removal puts in a path: its own for a single delete, its group's for a
    // per-group batch; none for the group-level batch and the KPS delete-all.
    fn path_id<'i>(target: &Target, item: &'i Item) -> Option<&'i str> {
        match target {
            Target::SdrsMatching(_) | Target::KpsMatching(_) => Some(&item.id),
            Target::SdrsAll | Target::SdrsProtectionGroups(_) => item.group.as_deref(),
            Target::KpsAll => None,
        }
    }
    let (deletable, refused): (Vec<u32>, Vec<u32>) =
        found.iter().partition(|&&i| path_id(target, &items[i as usize]).is_none_or(is_safe_id));
    let (selected, limited): (&[u32], bool) = match target {
        Target::SdrsMatching(_) | Target::KpsMatching(_) => {
            let take = usize::try_from(budget).unwrap_or(usize::MAX).min(deletable.len());
            (&deletable[..take], take < deletable.len())
        }
        Target::SdrsAll | Target::SdrsProtectionGroups(_) | Target::KpsAll => (&deletable, false),
    };
    let calls = if dry_run || selected.is_empty() {
        Vec::new()
    } else {
        let id = |&i: &u32| items[i as usize].id.to_string();
        match target {
            // The group-level batch for failures the group-level list showed, the per-group batch
            // for each group whose list showed any.
            Target::SdrsAll | Target::SdrsProtectionGroups(_) => selected
                .iter()
                .map(|&i| match &items[i as usize].group {
                    None => DeleteCall::SdrsBatch,
                    Some(g) => DeleteCall::SdrsGroupBatch(g.to_string()),
                })
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
            Target::SdrsMatching(_) => selected.iter().map(|i| DeleteCall::SdrsDelete(id(i))).collect(),
            Target::KpsAll => vec![DeleteCall::KpsDeleteAll],
            Target::KpsMatching(_) => selected.iter().map(|i| DeleteCall::KpsDelete(id(i))).collect(),
        }
    };
    TargetPlan { selected: selected.to_vec(), unsafe_ids: refused.len() as u64, found, calls, limited }
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

    /// Joins SDRS lists as seen by one lane of `targets`.
    fn sdrs_snapshot(targets: &[&Target], lists: Vec<(Option<&str>, Vec<FailureJob>)>) -> Snapshot {
        let coverage = Coverage { targets, now: now() };
        Snapshot::join(
            lists
                .into_iter()
                .map(|(group, jobs)| {
                    let group: Option<Arc<str>> = group.map(Arc::from);
                    let items = coverage.jobs(group.as_ref(), jobs);
                    (group, items)
                })
                .collect(),
        )
    }

    fn kps_snapshot(targets: &[&Target], tasks: Vec<FailedTask>) -> Snapshot {
        Snapshot::join(vec![(None, Coverage { targets, now: now() }.tasks(tasks))])
    }

    /// A group-level failure `a` and, in groups g1 and g2, instance failures b..f.
    fn sdrs_lists() -> Vec<(Option<&'static str>, Vec<FailureJob>)> {
        vec![
            (None, vec![job("a", "server_groups", "createFail", "tmp-a", "2026-11-01T00:00:00.000Z")]),
            (
                Some("g1"),
                vec![
                    job("b", "protected_instances", "createFail", "tmp-b", "2026-11-20T00:00:00.000Z"),
                    job("c", "protected_instances", "createFail", "prod-c", "2026-11-01T00:00:00.000Z"),
                    job("d", "protected_instances", "deleteFail", "tmp-d", "2026-10-01T00:00:00.000Z"),
                ],
            ),
            (
                Some("g2"),
                vec![
                    job("e", "protected_instances", "createFail", "tmp-e", "not a time"),
                    job("f", "protected_instances", "createFail", "tmp-f", "1760486400000"),
                ],
            ),
        ]
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

    fn names(snapshot: &Snapshot, indexes: &[u32]) -> BTreeSet<String> {
        indexes.iter().map(|&i| snapshot.items()[i as usize].id.to_string()).collect()
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
        // The looser reading: the unfiltered list shows the in-group failure too, and may come first.
        let all = Target::SdrsAll;
        let pg = Target::SdrsProtectionGroups(vec!["g1".into()]);
        let snap = sdrs_snapshot(
            &[&all, &pg],
            vec![
                (None, vec![job("a", SERVER_GROUPS, "", "", ""), job("b", "replications", "", "", "")]),
                (Some("g1"), vec![job("b", "replications", "", "", "")]),
            ],
        );
        assert_eq!(snap.len(), 2);
        let plan = plan_target(&all, 0, &snap, 0, false);
        assert_eq!(plan.calls, vec![DeleteCall::SdrsBatch, DeleteCall::SdrsGroupBatch("g1".into())]);
        assert_eq!(names(&snap, &plan_target(&pg, 1, &snap, 0, false).found), ids(&["b"]));
    }

    #[test]
    fn all_uses_the_group_level_batch_and_each_groups_batch() {
        let snap = sdrs_snapshot(&[&Target::SdrsAll], sdrs_lists());
        let plan = plan_target(&Target::SdrsAll, 0, &snap, 0, false);
        assert_eq!(names(&snap, &plan.found), ids(&["a", "b", "c", "d", "e", "f"]));
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
        let target = matching(&["protected_instances"]);
        let snap = sdrs_snapshot(&[&target], sdrs_lists());
        let plan = plan_target(&target, 0, &snap, 1000, false);
        // b is too young, c has the wrong name, d the wrong status, e no readable time, a the wrong
        // type; f (epoch milliseconds, October) matches.
        assert_eq!(names(&snap, &plan.selected), ids(&["f"]));
        assert_eq!(plan.calls, vec![DeleteCall::SdrsDelete("f".into())]);
    }

    #[test]
    fn protection_groups_batch_only_their_groups_with_failures() {
        let target = Target::SdrsProtectionGroups(vec!["g2".into(), "g3".into()]);
        let snap = sdrs_snapshot(&[&target], sdrs_lists());
        let plan = plan_target(&target, 0, &snap, 0, false);
        assert_eq!(names(&snap, &plan.found), ids(&["e", "f"]));
        assert_eq!(plan.calls, vec![DeleteCall::SdrsGroupBatch("g2".into())]);
    }

    #[test]
    fn empty_targets_send_nothing() {
        let empty = kps_snapshot(&[&Target::KpsAll], vec![]);
        assert_eq!(plan_target(&Target::KpsAll, 0, &empty, 9, false), TargetPlan::default());
        let empty = sdrs_snapshot(&[&Target::SdrsAll], vec![]);
        assert_eq!(plan_target(&Target::SdrsAll, 0, &empty, 9, false), TargetPlan::default());
    }

    #[test]
    fn dry_run_selects_but_never_calls_and_imagines_its_deletes() {
        let mut snap = sdrs_snapshot(&[&Target::SdrsAll], sdrs_lists());
        let plan = plan_target(&Target::SdrsAll, 0, &snap, 0, true);
        assert!(plan.calls.is_empty());
        assert_eq!(plan.selected.len(), 6);
        let keep_b = plan
            .selected
            .iter()
            .copied()
            .filter(|&i| &*snap.items()[i as usize].id != "b")
            .collect::<Vec<_>>();
        snap.remove(&keep_b);
        assert_eq!(snap.items().iter().map(|i| &*i.id).collect::<Vec<_>>(), ["b"]);
    }

    #[test]
    fn the_budget_takes_the_oldest_first() {
        let m = Target::KpsMatching(KpsMatch {
            operate_types: vec!["FAILED_UNBIND".into()],
            name_pattern: Some(Regex::new("^kp-").unwrap()),
            older_than: None,
        });
        let snap = kps_snapshot(
            &[&m, &Target::KpsAll],
            vec![
                task("new", "FAILED_UNBIND", "kp-x", "2026-11-20T00:00:00Z"),
                task("old", "FAILED_UNBIND", "kp-y", "1700000000000"),
                task("older", "FAILED_UNBIND", "kp-y", "1600000000"),
                task("reset", "FAILED_RESET", "kp-z", "2026-11-01T00:00:00Z"),
                task("odd", "RUNNING_RESET", "kp-z", "2026-11-01T00:00:00Z"),
                task("other", "FAILED_UNBIND", "other", "2026-11-01T00:00:00Z"),
            ],
        );
        let plan = plan_target(&m, 0, &snap, 2, false);
        assert_eq!(names(&snap, &plan.found), ids(&["new", "old", "older"]));
        assert_eq!(
            plan.calls,
            vec![DeleteCall::KpsDelete("older".into()), DeleteCall::KpsDelete("old".into())]
        );
        assert!(plan.limited);
        let none = plan_target(&m, 0, &snap, 0, false);
        assert!(none.calls.is_empty() && none.selected.is_empty() && none.limited);
        let all = plan_target(&Target::KpsAll, 1, &snap, 0, false);
        assert_eq!((all.calls, all.found.len()), (vec![DeleteCall::KpsDeleteAll], 6));
    }

    #[test]
    fn counts_compare_snapshots_by_id() {
        let before = kps_snapshot(
            &[&Target::KpsAll],
            vec![task("a", "", "", ""), task("b", "", "", ""), task("c", "", "", "")],
        );
        let after = kps_snapshot(&[&Target::KpsAll], vec![task("b", "", "", "")]);
        let plan = plan_target(&Target::KpsAll, 0, &before, 0, false);
        assert_eq!(before.gone_in(&plan.found, &after), 2);
        assert_eq!((after.covered(0), after.id_hashes().len()), (1, 1));
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
        let m = Target::KpsMatching(KpsMatch::default());
        let snap = kps_snapshot(
            &[&m, &Target::KpsAll],
            vec![
                task("", "FAILED_UNBIND", "kp-a", "1600000000"),
                task("batch", "FAILED_UNBIND", "kp-b", "1600000000"),
                task("..", "FAILED_UNBIND", "kp-c", "1600000000"),
                task("ok-1", "FAILED_UNBIND", "kp-d", "1600000000"),
            ],
        );
        let plan = plan_target(&m, 0, &snap, 10, false);
        assert_eq!(plan.calls, vec![DeleteCall::KpsDelete("ok-1".into())]);
        assert_eq!((plan.found.len(), plan.unsafe_ids), (4, 3));
        // The delete-all puts no id in its path.
        let all = plan_target(&Target::KpsAll, 1, &snap, 0, false);
        assert_eq!((all.calls, all.unsafe_ids), (vec![DeleteCall::KpsDeleteAll], 0));
        // A protection group id that is not safe gets no per-group batch.
        let groups = sdrs_snapshot(
            &[&Target::SdrsAll],
            vec![
                (Some("../x"), vec![job("j1", "replications", "", "", "")]),
                (Some("g1"), vec![job("j2", "replications", "", "", "")]),
            ],
        );
        let plan = plan_target(&Target::SdrsAll, 0, &groups, 0, false);
        assert_eq!((plan.calls, plan.unsafe_ids), (vec![DeleteCall::SdrsGroupBatch("g1".into())], 1));
    }
}
