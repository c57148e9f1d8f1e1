//! The executor: for each project and service, lists, plans, deletes and lists again through a
//! [`FailedTaskApi`], one target at a time, so every count in the report is measured and every
//! removed task is counted once, by the target whose calls removed it. Does I/O only through that
//! trait.
//!
//! Projects and services run side by side; within one project and service the targets run in spec
//! order, and a list is never taken while deletes there are in flight. The list taken after one
//! target's deletes is the list the next target plans from, so overlapping targets neither count
//! the same task twice nor spend the deletion budget on tasks already gone. Lists are kept page by
//! page in compact form ([`Snapshot`]).

use super::audit::{self, Origin};
use super::plan::{self, Coverage, DeleteCall, Groups, ListQuery, Page, Scope, Snapshot, TargetPlan};
use super::policy::{Project, PurgePolicy, Target};
use super::report::{CallFailure, FailureKind, Outcome, RunReport, TargetReport, outcome_of};
use crate::api::Service;
use crate::cloud::DeleteOutcome;
use futures::future::join_all;
use futures::stream::{self, StreamExt};
use jiff::Timestamp;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use tokio::sync::Semaphore;

/// Most deletes one target has waiting for the cloud client at once (a bounded pool, never one
/// future per task); the client bounds what is on the wire.
const PENDING_DELETES: usize = 64;

/// Most project x service lanes of one run in progress at once, and most protection-group lists
/// one snapshot has in progress at once: both bounded like the deletes, whatever the policy names
/// or the cloud holds.
const LANES: usize = 16;
const PENDING_LISTS: usize = 16;

/// The cloud calls a purge needs. A 404 on a single delete is success
/// ([`DeleteOutcome::AlreadyGone`]); a batch delete that succeeds is [`DeleteOutcome::Deleted`].
pub trait FailedTaskApi: Sync {
    /// Lists every page of `query`, handing each page's new items to `each` as it arrives.
    fn list(
        &self,
        project: &Project,
        query: &ListQuery,
        each: &mut (dyn FnMut(Page) + Send),
    ) -> impl Future<Output = Result<(), CallFailure>> + Send;
    fn delete(
        &self,
        project: &Project,
        call: &DeleteCall,
    ) -> impl Future<Output = Result<DeleteOutcome, CallFailure>> + Send;
}

/// What a whole run shares: the deletion budget and the call counts.
struct Run<'a, A> {
    api: &'a A,
    policy: &'a PurgePolicy,
    now: Timestamp,
    /// What is left of `maxDeletionsPerRun`.
    budget: Mutex<u64>,
    calls: AtomicU64,
    failed_calls: AtomicU64,
    /// Turns of the lanes ([`LANES`]) and of the protection-group lists ([`PENDING_LISTS`]).
    lanes: Semaphore,
    lists: Semaphore,
}

/// Runs one purge of `policy`, with `budget` single deletes at most (normally `maxDeletionsPerRun`).
/// The budget is shared by every project, first come first served. How many calls are in flight
/// is the cloud client's to bound.
pub async fn execute<A: FailedTaskApi>(
    api: &A,
    policy: &PurgePolicy,
    now: Timestamp,
    budget: u64,
) -> RunReport {
    let run = Run {
        api,
        policy,
        now,
        budget: Mutex::new(budget),
        calls: AtomicU64::new(0),
        failed_calls: AtomicU64::new(0),
        lanes: Semaphore::new(LANES),
        lists: Semaphore::new(PENDING_LISTS),
    };
    let lanes = (0..policy.projects.len())
        .flat_map(|p| [Service::Sdrs, Service::Kps].into_iter().map(move |s| (p, s)))
        .filter(|(_, s)| policy.targets.iter().any(|t| t.service() == *s));
    let rows = join_all(lanes.map(|(p, s)| run.lane(p, s))).await;
    let mut targets: Vec<TargetReport> = rows.into_iter().flatten().collect();
    targets.sort_by_key(|r| (r.project_index, r.target_index));
    let spent = budget - run.budget.into_inner().unwrap_or_else(PoisonError::into_inner);
    RunReport {
        targets,
        failed_calls: run.failed_calls.into_inner(),
        calls: run.calls.into_inner(),
        budget_spent: spent,
    }
}

impl<A: FailedTaskApi> Run<'_, A> {
    /// The targets of one service in one project, in spec order.
    async fn lane(&self, p: usize, service: Service) -> Vec<TargetReport> {
        // The semaphore is never closed.
        let _turn = self.lanes.acquire().await.ok();
        let project = &self.policy.projects[p];
        let lane: Vec<(usize, &Target)> =
            self.policy.targets.iter().enumerate().filter(|(_, t)| t.service() == service).collect();
        let targets: Vec<&Target> = lane.iter().map(|(_, t)| *t).collect();
        let coverage = Coverage { targets: &targets, now: self.now };
        let mut scope = plan::joint_scope(targets.iter().copied());
        let mut rows = Vec::with_capacity(lane.len());
        let mut snapshot = self.snapshot(project, &mut scope, coverage).await;
        for (lane_index, (t, target)) in lane.iter().copied().enumerate() {
            let row = |outcome| TargetReport::new(self.policy, p, t, outcome);
            let before = match &mut snapshot {
                Ok(s) => s,
                Err(failure) => {
                    rows.push(TargetReport {
                        error: Some(failure.clone()),
                        unmeasured: Some("the list before deleting failed".into()),
                        ..row(outcome_of(failure))
                    });
                    continue;
                }
            };
            let planned = {
                // Held while planning, so that concurrent projects cannot spend the same budget.
                let mut budget = self.budget.lock().unwrap_or_else(PoisonError::into_inner);
                let planned = plan::plan_target(target, lane_index, before, *budget, self.policy.dry_run);
                if matches!(target, Target::SdrsMatching(_) | Target::KpsMatching(_)) {
                    *budget = budget.saturating_sub(planned.selected.len() as u64);
                }
                planned
            };
            let found = planned.found.len() as u64;
            let outcome = if self.policy.dry_run {
                Outcome::DryRun
            } else if planned.limited && planned.selected.is_empty() {
                Outcome::Skipped
            } else {
                Outcome::Purged
            };
            if !planned.has_calls() {
                let would_delete = if self.policy.dry_run { planned.selected.len() as u64 } else { 0 };
                rows.push(TargetReport {
                    found: Some(found),
                    deleted: Some(0),
                    would_delete,
                    remaining: Some(found),
                    limited: planned.limited,
                    unsafe_ids: planned.unsafe_ids,
                    ..row(outcome)
                });
                // A dry run imagines its deletes, so that later targets do not count them again.
                before.remove(&planned.selected);
                continue;
            }
            let origin = Origin { policy: &self.policy.name, project: &project.id, service };
            let lists = (&mut scope, coverage);
            let verified = self.delete_and_verify(project, target, &planned, before, &origin, lists);
            let Verified { after, failure, not_removed } = verified.await;
            let before = &*before;
            let measured = match &after {
                Ok(after) => TargetReport {
                    found: Some(found),
                    deleted: Some(before.gone_in(&planned.found, after) as u64),
                    remaining: Some(after.covered(lane_index) as u64),
                    not_removed,
                    ..row(outcome)
                },
                Err(failure) => TargetReport {
                    found: Some(found),
                    error: Some(failure.clone()),
                    unmeasured: Some("the list after deleting failed".into()),
                    ..row(outcome_of(failure))
                },
            };
            let error = failure
                .or(measured.error.clone())
                .or_else(|| (not_removed > 0).then(|| not_removed_failure(not_removed)));
            if not_removed > 0 {
                tracing::warn!(
                    policy = %self.policy.name,
                    project = %project.id,
                    service = service.as_str(),
                    not_removed,
                    "the cloud accepted DELETEs of failed tasks it still lists"
                );
            }
            rows.push(TargetReport {
                outcome: error.as_ref().map_or(measured.outcome, outcome_of),
                limited: planned.limited,
                unsafe_ids: planned.unsafe_ids,
                error,
                ..measured
            });
            snapshot = after;
        }
        rows
    }

    /// Sends `planned`'s calls, lists again and checks task by task what the list after them still
    /// shows: a task whose DELETE the cloud accepted but still listed is sent its call once more,
    /// after that list, and the project listed again. Writes the audit record of every task the
    /// list after its accepted DELETE no longer shows, and only those.
    async fn delete_and_verify(
        &self,
        project: &Project,
        target: &Target,
        planned: &TargetPlan,
        before: &Snapshot,
        origin: &Origin<'_>,
        (scope, coverage): (&mut Scope, Coverage<'_>),
    ) -> Verified {
        // Of each selected task (by position in `planned.selected`), what its last DELETE answered.
        let mut answers = vec![Answer::NotSent; planned.selected.len()];
        let mut failure =
            self.send(project, planned.calls(target, before), planned, target, before, &mut answers).await;
        let mut after = self.snapshot(project, scope, coverage).await;
        let mut repeat: Vec<usize> = Vec::new();
        if let Ok(listed) = &after {
            repeat = self.confirm(before, planned, &answers, listed, origin);
        }
        if !repeat.is_empty() {
            // The kept tasks' calls once more: their single deletes, or the batches that remove them.
            let again: Vec<u32> = repeat.iter().map(|&k| planned.selected[k]).collect();
            let batches = match planned.singles {
                true => BTreeSet::new(),
                false => again.iter().map(|&i| plan::removal(target, before, i)).collect::<BTreeSet<_>>(),
            };
            let retry = TargetPlan {
                selected: again,
                singles: planned.singles,
                batches: batches.into_iter().collect(),
                ..TargetPlan::default()
            };
            let mut retry_answers = vec![Answer::NotSent; retry.selected.len()];
            let calls = retry.calls(target, before);
            let second = self.send(project, calls, &retry, target, before, &mut retry_answers).await;
            failure = failure.or(second);
            after = self.snapshot(project, scope, coverage).await;
            if let Ok(listed) = &after {
                let kept = self.confirm(before, &retry, &retry_answers, listed, origin);
                return Verified { after, failure, not_removed: kept.len() as u64 };
            }
        }
        Verified { after, failure, not_removed: 0 }
    }

    /// Audits the selected tasks whose DELETE was accepted and that `after` no longer shows;
    /// returns the positions of those it still shows (not removed).
    fn confirm(
        &self,
        before: &Snapshot,
        planned: &TargetPlan,
        answers: &[Answer],
        after: &Snapshot,
        origin: &Origin<'_>,
    ) -> Vec<usize> {
        let mut kept = Vec::new();
        for (k, (&i, answer)) in planned.selected.iter().zip(answers).enumerate() {
            match (answer, after.holds(before.id_at(i))) {
                (Answer::NotSent, _) => {}
                (_, true) => kept.push(k),
                (Answer::Deleted, false) => audit_deleted(origin, before, i),
                (Answer::AlreadyGone, false) => {}
            }
        }
        kept
    }

    /// Sends `calls`, at most [`PENDING_DELETES`] at a time, and records in `answers` (by position
    /// in `planned.selected`) what the call that removes each selected task answered. Returns the
    /// first failure.
    async fn send(
        &self,
        project: &Project,
        calls: impl Iterator<Item = DeleteCall> + Send,
        planned: &TargetPlan,
        target: &Target,
        before: &Snapshot,
        answers: &mut [Answer],
    ) -> Option<CallFailure> {
        let mut replies = stream::iter(calls.enumerate())
            .map(|(k, call)| async move {
                let reply = self.delete(project, &call).await;
                (k, call, reply)
            })
            .buffer_unordered(PENDING_DELETES);
        let mut first_failure = None;
        let mut accepted: BTreeMap<DeleteCall, Answer> = BTreeMap::new();
        while let Some((k, call, reply)) = replies.next().await {
            let answer = match reply {
                Ok(DeleteOutcome::Deleted) => Answer::Deleted,
                Ok(DeleteOutcome::AlreadyGone) => Answer::AlreadyGone,
                Err(failure) => {
                    first_failure.get_or_insert(failure);
                    Answer::NotSent
                }
            };
            match planned.singles {
                true => answers[k] = answer,
                false => {
                    accepted.insert(call, answer);
                }
            }
        }
        if !planned.singles {
            for (k, &i) in planned.selected.iter().enumerate() {
                answers[k] =
                    accepted.get(&plan::removal(target, before, i)).copied().unwrap_or(Answer::NotSent);
            }
        }
        first_failure
    }

    /// Lists what `scope` covers in one project, keeping each page in compact form as it arrives.
    /// Protection groups are discovered once per run and kept in `scope`.
    async fn snapshot(
        &self,
        project: &Project,
        scope: &mut Scope,
        coverage: Coverage<'_>,
    ) -> Result<Snapshot, CallFailure> {
        // A dry run deletes nothing, so it keeps nothing to audit.
        let empty = || if self.policy.dry_run { Snapshot::default() } else { Snapshot::with_audit() };
        if scope.kps {
            let mut snapshot = empty();
            self.list(project, ListQuery::Kps, &mut |page| {
                if let Page::Kps(tasks) = page {
                    coverage.add_tasks(&mut snapshot, tasks);
                }
            })
            .await?;
            return Ok(snapshot);
        }
        if let Groups::All(extra) = &scope.groups {
            let mut all: BTreeSet<String> = extra.clone();
            self.list(project, ListQuery::SdrsGroups, &mut |page| {
                if let Page::SdrsGroups(ids) = page {
                    // An empty id would drop the filter and list the group-level failures again.
                    all.extend(ids.into_iter().filter(|id| !id.is_empty()));
                }
            })
            .await?;
            scope.groups = Groups::Ids(all);
        }
        let groups: Vec<Option<&str>> = match &scope.groups {
            Groups::Ids(ids) => ids.iter().map(|id| Some(id.as_str())).collect(),
            Groups::None | Groups::All(_) => Vec::new(),
        };
        // The lists run side by side and fill one snapshot as their pages arrive.
        let snapshot = Mutex::new(empty());
        let queries = scope.group_level.then_some(None).into_iter().chain(groups);
        join_all(queries.map(|group| self.list_jobs(project, group, coverage, &snapshot)))
            .await
            .into_iter()
            .collect::<Result<Vec<()>, CallFailure>>()?;
        Ok(snapshot.into_inner().unwrap_or_else(PoisonError::into_inner))
    }

    /// Lists the failures of `group` (`None`: the group-level list) into `snapshot`.
    async fn list_jobs(
        &self,
        project: &Project,
        group: Option<&str>,
        coverage: Coverage<'_>,
        snapshot: &Mutex<Snapshot>,
    ) -> Result<(), CallFailure> {
        let _turn = self.lists.acquire().await.ok();
        let query = ListQuery::SdrsJobs { group: group.map(str::to_string) };
        self.list(project, query, &mut |page| {
            if let Page::SdrsJobs(jobs) = page {
                let mut snapshot = snapshot.lock().unwrap_or_else(PoisonError::into_inner);
                coverage.add_jobs(&mut snapshot, group, jobs);
            }
        })
        .await
    }

    async fn delete(&self, project: &Project, call: &DeleteCall) -> Result<DeleteOutcome, CallFailure> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let result = self.api.delete(project, call).await;
        if result.is_err() {
            self.failed_calls.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    async fn list(
        &self,
        project: &Project,
        query: ListQuery,
        each: &mut (dyn FnMut(Page) + Send),
    ) -> Result<(), CallFailure> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let result = self.api.list(project, &query, each).await;
        if result.is_err() {
            self.failed_calls.fetch_add(1, Ordering::Relaxed);
        }
        result
    }
}

/// What the last DELETE that removes a selected task answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    /// Not sent, or it failed.
    NotSent,
    Deleted,
    /// A single delete answered 404.
    AlreadyGone,
}

/// What a target's calls left, as the list after them shows it.
struct Verified {
    after: Result<Snapshot, CallFailure>,
    /// The first call that failed.
    failure: Option<CallFailure>,
    /// Covered tasks still listed after their DELETE was accepted twice.
    not_removed: u64,
}

/// The code of the failure a row gets for tasks the cloud kept after accepting their DELETE.
pub const NOT_REMOVED: &str = "NotRemoved";

fn not_removed_failure(n: u64) -> CallFailure {
    let s = if n == 1 { "" } else { "s" };
    CallFailure::new(
        FailureKind::Unavailable,
        None,
        NOT_REMOVED,
        &format!(
            "the cloud kept {n} failed task{s} after accepting their DELETE twice; they are retried on the next run"
        ),
    )
}

/// The audit record of the task at `index` of `before`, which a run deleted.
fn audit_deleted(origin: &Origin<'_>, before: &Snapshot, index: u32) {
    let fields = before.audit_at(index).unwrap_or_default();
    audit::deleted(origin, before.id_at(index), &fields);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::model::{FailedTask, FailureJob};
    use crate::purge::policy::{KpsMatch, SdrsMatch};
    use crate::purge::report::FailureKind;
    use proptest::prelude::*;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    /// Whether a call deletes one task, and so spends the deletion budget.
    fn is_single(call: &DeleteCall) -> bool {
        matches!(call, DeleteCall::SdrsDelete(_) | DeleteCall::KpsDelete(_))
    }

    /// One SDRS failure in the fake cloud: `group` is None for a protection-group-level failure.
    #[derive(Clone, Debug)]
    struct Job {
        job: FailureJob,
        group: Option<String>,
    }

    /// An in-memory cloud for executor unit tests, with the strict SDRS list scoping; the emulator
    /// proves the same end to end. `vanish` removes tasks behind the executor's back on every list,
    /// as another client would.
    #[derive(Default)]
    struct Fake {
        groups: Mutex<BTreeMap<String, Vec<String>>>,
        jobs: Mutex<BTreeMap<String, Vec<Job>>>,
        tasks: Mutex<BTreeMap<String, Vec<FailedTask>>>,
        deletes: Mutex<Vec<DeleteCall>>,
        fail_lists: Option<FailureKind>,
        /// Fail every list after this many succeeded.
        lists_before_failing: Option<usize>,
        lists: AtomicU64,
        /// Every list first removes this many tasks of each kind, if there are any.
        vanish: usize,
        /// The looser reading of the SDRS list: without a group it shows every failure.
        loose: bool,
        /// Ids that left the cloud, by whatever hand.
        gone: Mutex<Vec<String>>,
        /// For each DELETE in turn while any are left: true accepts it (2xx) without deleting
        /// anything, as a flaky gateway in front of the service can.
        ignore: Mutex<Vec<bool>>,
    }

    impl Fake {
        fn vanish(&self, project: &str) {
            let mut gone = self.gone.lock().unwrap();
            let mut jobs = self.jobs.lock().unwrap();
            let jobs = jobs.entry(project.into()).or_default();
            for _ in 0..self.vanish.min(jobs.len()) {
                gone.push(jobs.remove(0).job.job_id);
            }
            let mut tasks = self.tasks.lock().unwrap();
            let tasks = tasks.entry(project.into()).or_default();
            for _ in 0..self.vanish.min(tasks.len()) {
                gone.push(tasks.remove(0).task_id);
            }
        }
    }

    impl FailedTaskApi for Fake {
        async fn list(
            &self,
            project: &Project,
            query: &ListQuery,
            each: &mut (dyn FnMut(Page) + Send),
        ) -> Result<(), CallFailure> {
            let n = self.lists.fetch_add(1, Ordering::SeqCst) as usize;
            if let Some(kind) = self.fail_lists {
                return Err(CallFailure::new(kind, Some(429), "APIGW.0308", "throttled"));
            }
            if self.lists_before_failing.is_some_and(|limit| n >= limit) {
                return Err(CallFailure::new(FailureKind::Unavailable, Some(503), "SDRS.0503", "down"));
            }
            self.vanish(&project.id);
            let page = match query {
                ListQuery::SdrsGroups => Page::SdrsGroups(
                    self.groups.lock().unwrap().get(&project.id).cloned().unwrap_or_default(),
                ),
                ListQuery::SdrsJobs { group } => Page::SdrsJobs(
                    self.jobs
                        .lock()
                        .unwrap()
                        .get(&project.id)
                        .into_iter()
                        .flatten()
                        .filter(|j| j.group == *group || (self.loose && group.is_none()))
                        .map(|j| j.job.clone())
                        .collect(),
                ),
                ListQuery::Kps => {
                    Page::Kps(self.tasks.lock().unwrap().get(&project.id).cloned().unwrap_or_default())
                }
            };
            each(page);
            Ok(())
        }

        async fn delete(&self, project: &Project, call: &DeleteCall) -> Result<DeleteOutcome, CallFailure> {
            self.deletes.lock().unwrap().push(call.clone());
            let ignored = {
                let mut ignore = self.ignore.lock().unwrap();
                !ignore.is_empty() && ignore.remove(0)
            };
            if ignored {
                return Ok(DeleteOutcome::Deleted);
            }
            let mut gone = self.gone.lock().unwrap();
            let gone_before = gone.len();
            let mut jobs = self.jobs.lock().unwrap();
            let mut tasks = self.tasks.lock().unwrap();
            let jobs = jobs.entry(project.id.clone()).or_default();
            let tasks = tasks.entry(project.id.clone()).or_default();
            let mut remove_jobs = |keep: &dyn Fn(&Job) -> bool| {
                let (kept, removed): (Vec<Job>, Vec<Job>) = jobs.drain(..).partition(|j| keep(j));
                *jobs = kept;
                gone.extend(removed.into_iter().map(|j| j.job.job_id));
            };
            match call {
                DeleteCall::SdrsBatch => remove_jobs(&|j| j.group.is_some()),
                DeleteCall::SdrsGroupBatch(g) => remove_jobs(&|j| j.group.as_ref() != Some(g)),
                DeleteCall::SdrsDelete(id) => remove_jobs(&|j| &j.job.job_id != id),
                DeleteCall::KpsDeleteAll => gone.extend(tasks.drain(..).map(|t| t.task_id)),
                DeleteCall::KpsDelete(id) => {
                    let (kept, removed): (Vec<_>, Vec<_>) = tasks.drain(..).partition(|t| &t.task_id != id);
                    *tasks = kept;
                    gone.extend(removed.into_iter().map(|t| t.task_id));
                }
            }
            // As the services answer: a single delete of a task that is not there is a 404.
            let removed = gone.len() > gone_before;
            Ok(if is_single(call) && !removed { DeleteOutcome::AlreadyGone } else { DeleteOutcome::Deleted })
        }
    }

    fn project(id: &str) -> Project {
        Project { id: id.into(), region: "cn-north-4".into() }
    }

    /// Per project: groups g1, g2; a group-level failure per group; two instance failures in each
    /// group; four KPS tasks.
    fn seeded() -> Fake {
        let fake = Fake::default();
        for p in ["p0", "p1"] {
            fake.groups.lock().unwrap().insert(p.into(), vec!["g1".into(), "g2".into()]);
            let job = |i: usize, resource_type: &str, group: Option<&str>| Job {
                job: FailureJob {
                    job_id: format!("{p}-j{i}"),
                    resource_type: resource_type.into(),
                    ..Default::default()
                },
                group: group.map(str::to_string),
            };
            fake.jobs.lock().unwrap().insert(
                p.into(),
                vec![
                    job(0, "server_groups", None),
                    job(1, "server_groups", None),
                    job(2, "protected_instances", Some("g1")),
                    job(3, "replications", Some("g1")),
                    job(4, "protected_instances", Some("g2")),
                    job(5, "protected_instances", Some("g2")),
                ],
            );
            fake.tasks.lock().unwrap().insert(
                p.into(),
                (0..4)
                    .map(|i| FailedTask {
                        task_id: format!("{p}-t{i}"),
                        operate_type: "FAILED_UNBIND".into(),
                        ..Default::default()
                    })
                    .collect(),
            );
        }
        fake
    }

    fn now() -> Timestamp {
        "2026-11-22T00:00:00Z".parse().unwrap()
    }

    fn policy(projects: &[&str], targets: Vec<Target>, dry_run: bool, max_deletions: u64) -> PurgePolicy {
        PurgePolicy {
            name: "team-a/p".into(),
            projects: projects.iter().map(|p| project(p)).collect(),
            targets,
            dry_run,
            max_deletions,
        }
    }

    fn instances() -> Target {
        Target::SdrsMatching(SdrsMatch {
            resource_types: vec!["protected_instances".into()],
            ..Default::default()
        })
    }

    #[tokio::test]
    async fn all_clears_group_level_and_in_group_failures_and_measures_them() {
        let fake = seeded();
        let policy = policy(&["p0", "p1"], vec![Target::SdrsAll, Target::KpsAll], false, 100);
        let report = execute(&fake, &policy, now(), policy.max_deletions).await;
        assert_eq!(report.targets.len(), 4);
        assert_eq!((report.found(), report.deleted(), report.remaining()), (2 * 6 + 2 * 4, 20, Some(0)));
        assert_eq!(report.failed_calls, 0);
        assert!(report.targets.iter().all(|r| r.outcome == Outcome::Purged));
        assert!(fake.jobs.lock().unwrap().values().all(Vec::is_empty));
        // Per project: SDRS groups + 3 job lists, 3 batches, 3 job lists; KPS list, delete-all, list.
        assert_eq!(report.calls, 2 * (4 + 3 + 3) + 2 * 3);
    }

    #[tokio::test]
    async fn all_counts_the_same_under_the_loose_reading() {
        let fake = Fake { loose: true, ..seeded() };
        let policy = policy(&["p0"], vec![Target::SdrsAll], false, 100);
        let report = execute(&fake, &policy, now(), policy.max_deletions).await;
        assert_eq!((report.found(), report.deleted(), report.remaining()), (6, 6, Some(0)));
        let batches = fake.deletes.lock().unwrap().clone();
        assert_eq!(
            batches,
            [
                DeleteCall::SdrsBatch,
                DeleteCall::SdrsGroupBatch("g1".into()),
                DeleteCall::SdrsGroupBatch("g2".into())
            ]
        );
    }

    #[tokio::test]
    async fn matching_finds_instance_failures_inside_every_group() {
        let fake = seeded();
        let policy = policy(&["p0"], vec![instances()], false, 100);
        let report = execute(&fake, &policy, now(), policy.max_deletions).await;
        assert_eq!((report.found(), report.deleted(), report.remaining()), (3, 3, Some(0)));
        let left: Vec<String> =
            fake.jobs.lock().unwrap()["p0"].iter().map(|j| j.job.job_id.clone()).collect();
        assert_eq!(left, ["p0-j0", "p0-j1", "p0-j3"], "group-level failures and replications stay");
    }

    #[tokio::test]
    async fn overlapping_targets_count_each_task_once() {
        let fake = seeded();
        let kps_matching = Target::KpsMatching(KpsMatch::default());
        let policy =
            policy(&["p0"], vec![Target::KpsAll, kps_matching, Target::SdrsAll, instances()], false, 100);
        let report = execute(&fake, &policy, now(), policy.max_deletions).await;
        let counts: Vec<(Option<u64>, Option<u64>)> =
            report.targets.iter().map(|r| (r.found, r.deleted)).collect();
        assert_eq!(counts, [(Some(4), Some(4)), (Some(0), Some(0)), (Some(6), Some(6)), (Some(0), Some(0))]);
        assert_eq!(report.deleted(), fake.gone.lock().unwrap().len() as u64);
        // Only batch calls went out: the Matching targets found nothing left to delete.
        assert!(fake.deletes.lock().unwrap().iter().all(|c| !is_single(c)));
    }

    #[tokio::test]
    async fn the_budget_is_not_spent_on_tasks_already_gone() {
        let fake = seeded();
        let kps_matching = Target::KpsMatching(KpsMatch::default());
        let policy = policy(&["p0"], vec![Target::KpsAll, kps_matching, instances()], false, 3);
        let report = execute(&fake, &policy, now(), policy.max_deletions).await;
        assert_eq!(report.targets[2].deleted, Some(3), "the budget is left for the instances");
        assert!(!report.limited());
    }

    #[tokio::test]
    async fn dry_run_sends_no_delete_and_counts_overlaps_once() {
        let fake = seeded();
        let policy = policy(&["p0"], vec![Target::KpsAll, Target::KpsMatching(KpsMatch::default())], true, 1);
        let report = execute(&fake, &policy, now(), policy.max_deletions).await;
        assert!(fake.deletes.lock().unwrap().is_empty());
        assert!(report.targets.iter().all(|r| r.outcome == Outcome::DryRun));
        assert_eq!(report.would_delete(), 4);
        assert_eq!((report.targets[0].remaining, report.deleted()), (Some(4), 0));
    }

    #[tokio::test]
    async fn the_budget_stops_matching_and_says_so() {
        let fake = seeded();
        let policy = policy(&["p0", "p1"], vec![Target::KpsMatching(KpsMatch::default())], false, 4);
        let report = execute(&fake, &policy, now(), policy.max_deletions).await;
        assert_eq!(fake.deletes.lock().unwrap().len(), 4);
        assert_eq!((report.deleted(), report.remaining()), (4, Some(4)));
        assert!(report.limited());
    }

    #[tokio::test]
    async fn a_failed_listing_deletes_nothing_and_counts_nothing() {
        let fake = Fake { fail_lists: Some(FailureKind::Throttled), ..seeded() };
        let policy =
            policy(&["p0"], vec![Target::KpsAll, Target::KpsMatching(KpsMatch::default())], false, 9);
        let report = execute(&fake, &policy, now(), policy.max_deletions).await;
        assert!(fake.deletes.lock().unwrap().is_empty());
        assert_eq!(report.failed_calls, 1, "one list, not one per target");
        for row in &report.targets {
            assert_eq!(row.outcome, Outcome::Throttled);
            assert_eq!((row.found, row.deleted, row.remaining), (None, None, None));
            assert_eq!(row.error.as_ref().unwrap().code, "APIGW.0308");
        }
        assert_eq!(report.remaining(), None);
    }

    #[tokio::test]
    async fn a_failed_list_after_deleting_leaves_the_counts_unknown() {
        let fake = Fake { lists_before_failing: Some(1), ..seeded() };
        let policy = policy(&["p0"], vec![Target::KpsAll], false, 9);
        let report = execute(&fake, &policy, now(), policy.max_deletions).await;
        let row = &report.targets[0];
        assert_eq!((row.found, row.deleted, row.remaining), (Some(4), None, None));
        assert_eq!(row.outcome, Outcome::Failed);
        assert_eq!(row.unmeasured.as_deref(), Some("the list after deleting failed"));
        assert_eq!(fake.gone.lock().unwrap().len(), 4, "the delete went out");
    }

    #[tokio::test]
    async fn a_batch_accepted_but_not_done_is_sent_once_more() {
        let fake = Fake { ignore: Mutex::new(vec![true]), ..seeded() };
        let policy = policy(&["p0"], vec![Target::KpsAll], false, 9);
        let (report, records) = audit_records(execute(&fake, &policy, now(), policy.max_deletions)).await;
        let row = &report.targets[0];
        assert_eq!(
            (row.outcome, row.deleted, row.remaining, row.not_removed),
            (Outcome::Purged, Some(4), Some(0), 0)
        );
        assert_eq!(*fake.deletes.lock().unwrap(), [DeleteCall::KpsDeleteAll, DeleteCall::KpsDeleteAll]);
        assert_eq!(records.len(), 4, "audited once each, after the list that shows them gone");
        assert_eq!(report.calls, 5, "list, delete-all, list, delete-all, list");
    }

    #[tokio::test]
    async fn tasks_the_cloud_keeps_after_two_accepted_deletes_fail_the_row_and_are_not_audited() {
        let fake = Fake { ignore: Mutex::new(vec![true, true]), ..seeded() };
        let policy = policy(&["p0"], vec![Target::SdrsGroupLevel], false, 9);
        let (report, records) = audit_records(execute(&fake, &policy, now(), policy.max_deletions)).await;
        let row = &report.targets[0];
        assert_eq!((row.found, row.deleted, row.remaining, row.not_removed), (Some(2), Some(0), Some(2), 2));
        assert_eq!(row.outcome, Outcome::Failed);
        let error = row.error.as_ref().unwrap();
        assert_eq!((error.kind, error.code.as_str()), (FailureKind::Unavailable, NOT_REMOVED));
        assert!(error.message.contains("kept 2 failed tasks"), "{}", error.message);
        assert!(records.is_empty(), "nothing left the cloud: {records:#?}");
        assert_eq!(*fake.deletes.lock().unwrap(), [DeleteCall::SdrsBatch, DeleteCall::SdrsBatch]);
    }

    #[tokio::test]
    async fn single_deletes_are_audited_only_once_the_list_shows_them_gone() {
        // t0 and t2 are accepted and kept on the first pass; t0 is kept again on the second.
        let ignore = vec![true, false, true, false, true, false];
        let fake = Fake { ignore: Mutex::new(ignore), ..seeded() };
        let policy = policy(&["p0"], vec![Target::KpsMatching(KpsMatch::default())], false, 4);
        let (report, records) = audit_records(execute(&fake, &policy, now(), policy.max_deletions)).await;
        let row = &report.targets[0];
        assert_eq!((row.deleted, row.remaining, row.not_removed), (Some(3), Some(1), 1));
        assert_eq!(row.error.as_ref().unwrap().code, NOT_REMOVED);
        let ids: BTreeSet<&str> = records.iter().map(|r| r["id"].as_str().unwrap()).collect();
        assert_eq!(ids, BTreeSet::from(["p0-t1", "p0-t2", "p0-t3"]));
        assert_eq!(fake.deletes.lock().unwrap().len(), 6, "four, then the two kept once more");
        assert_eq!(report.budget_spent, 4, "a repeat spends no budget");
    }

    fn arb_target() -> impl Strategy<Value = Target> {
        prop_oneof![
            Just(Target::SdrsAll),
            Just(Target::SdrsGroupLevel),
            Just(Target::KpsAll),
            Just(instances()),
            Just(Target::SdrsMatching(SdrsMatch::default())),
            Just(Target::KpsMatching(KpsMatch::default())),
            prop::sample::subsequence(vec!["g1".to_string(), "g2".to_string(), "g9".to_string()], 1..=3)
                .prop_map(Target::SdrsProtectionGroups),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Over random overlapping targets, budgets, both readings of the SDRS list and tasks
        /// vanishing behind the executor's back: no task is counted twice and the total never exceeds what left the cloud; with
        /// nothing vanishing, the total is exactly what left.
        #[test]
        fn counts_never_exceed_what_left_the_cloud(
            targets in prop::collection::vec(arb_target(), 1..6),
            budget in 0u64..8,
            vanish in 0usize..2,
            loose in any::<bool>(),
            ignore in prop::collection::vec(any::<bool>(), 0..24),
        ) {
            let fake = Fake { vanish, loose, ignore: Mutex::new(ignore), ..seeded() };
            let policy = policy(&["p0", "p1"], targets, false, budget);
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let (report, records) =
                runtime.block_on(audit_records(execute(&fake, &policy, now(), policy.max_deletions)));
            let gone = fake.gone.lock().unwrap().clone();
            let unique: BTreeSet<&String> = gone.iter().collect();
            prop_assert_eq!(unique.len(), gone.len(), "a task left the cloud twice");
            prop_assert!(report.deleted() <= gone.len() as u64);
            if vanish == 0 {
                prop_assert_eq!(report.deleted(), gone.len() as u64);
            }
            let singles: BTreeSet<DeleteCall> =
                fake.deletes.lock().unwrap().iter().filter(|c| is_single(c)).cloned().collect();
            prop_assert!(singles.len() as u64 <= budget, "{} tasks deleted one by one over a budget of {}", singles.len(), budget);
            for row in &report.targets {
                prop_assert!(row.deleted.unwrap_or(0) <= row.found.unwrap_or(0));
                if row.not_removed > 0 {
                    prop_assert_eq!(row.error.as_ref().map(|e| e.code.as_str()), Some(NOT_REMOVED));
                }
            }
            // Every audit record names a task that left the cloud, once.
            let audited: Vec<&str> = records.iter().map(|r| r["id"].as_str().unwrap()).collect();
            let audited_once: BTreeSet<&str> = audited.iter().copied().collect();
            prop_assert_eq!(audited_once.len(), audited.len(), "a task audited twice");
            for id in &audited {
                prop_assert!(unique.contains(&id.to_string()), "{} audited but still in the cloud", id);
            }
            // A run with no failure, no limit and no unsafe id left nothing its targets cover.
            if report.worst_failure().is_none() && !report.limited() && report.unsafe_ids() == 0 {
                prop_assert_eq!(report.remaining(), Some(0), "{:?}", report);
            }
        }
    }

    /// The audit records `run` logs, as JSON objects.
    async fn audit_records(run: impl Future<Output = RunReport>) -> (RunReport, Vec<serde_json::Value>) {
        #[derive(Clone, Default)]
        struct Lines(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Lines {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let lines = Lines::default();
        let writer = lines.clone();
        let filter = tracing_subscriber::EnvFilter::new("trace");
        let subscriber = crate::observability::subscriber(
            crate::observability::LogFormat::Json,
            filter,
            move || writer.clone(),
            false,
        );
        let report = {
            let _guard = tracing::subscriber::set_default(subscriber);
            // Callsites first seen while only other tests' subscribers existed may have cached
            // "never"; ask again now that this one is installed.
            tracing::callsite::rebuild_interest_cache();
            run.await
        };
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        let records = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v["target"] == audit::TARGET)
            .collect();
        (report, records)
    }

    #[tokio::test]
    async fn every_deleted_task_gets_one_audit_record_and_a_dry_run_none() {
        let fake = seeded();
        let kps = Target::KpsMatching(KpsMatch::default());
        let policy = policy(&["p0"], vec![Target::SdrsAll, kps], false, 100);
        let (report, records) = audit_records(execute(&fake, &policy, now(), policy.max_deletions)).await;
        assert_eq!(report.deleted(), 10);
        assert_eq!(records.len(), 10, "{records:#?}");
        let ids: BTreeSet<&str> = records.iter().map(|r| r["id"].as_str().unwrap()).collect();
        let gone: BTreeSet<String> = fake.gone.lock().unwrap().iter().cloned().collect();
        assert_eq!(ids, gone.iter().map(String::as_str).collect());
        for r in &records {
            assert_eq!(r["level"], "INFO");
            assert_eq!(r["message"], "deleted failed task");
            assert_eq!((&r["policy"], &r["project"]), (&"team-a/p".into(), &"p0".into()));
            for field in ["type", "resource", "status", "error_code", "task_time"] {
                assert!(r[field].is_string(), "{field} in {r}");
            }
        }
        let task = records.iter().find(|r| r["id"] == "p0-t0").unwrap();
        assert_eq!(
            (&task["service"], &task["type"], &task["status"]),
            (&"KPS".into(), &"FAILED_UNBIND".into(), &"FAILED".into())
        );
        assert_eq!(records.iter().filter(|r| r["service"] == "SDRS").count(), 6);

        let fake = seeded();
        let dry = policy.clone();
        let dry = PurgePolicy { dry_run: true, ..dry };
        let (report, records) = audit_records(execute(&fake, &dry, now(), dry.max_deletions)).await;
        assert_eq!((report.deleted(), report.would_delete()), (0, 10));
        assert!(records.is_empty(), "a dry run deletes nothing: {records:#?}");
    }

    #[tokio::test]
    async fn a_single_delete_the_service_answers_404_is_not_audited() {
        // Another client removes a task between the list and the deletes: its DELETE finds nothing.
        struct Racing(Fake);
        impl FailedTaskApi for Racing {
            async fn list(
                &self,
                project: &Project,
                query: &ListQuery,
                each: &mut (dyn FnMut(Page) + Send),
            ) -> Result<(), CallFailure> {
                self.0.list(project, query, each).await
            }
            async fn delete(
                &self,
                project: &Project,
                call: &DeleteCall,
            ) -> Result<DeleteOutcome, CallFailure> {
                if let DeleteCall::KpsDelete(id) = call
                    && id == "p0-t1"
                {
                    self.0
                        .tasks
                        .lock()
                        .unwrap()
                        .entry(project.id.clone())
                        .or_default()
                        .retain(|t| &t.task_id != id);
                }
                self.0.delete(project, call).await
            }
        }
        let racing = Racing(seeded());
        let policy = policy(&["p0"], vec![Target::KpsMatching(KpsMatch::default())], false, 100);
        let (report, records) = audit_records(execute(&racing, &policy, now(), policy.max_deletions)).await;
        assert_eq!(report.deleted(), 4, "the list after shows all four gone");
        let ids: BTreeSet<&str> = records.iter().map(|r| r["id"].as_str().unwrap()).collect();
        assert_eq!(ids, BTreeSet::from(["p0-t0", "p0-t2", "p0-t3"]));
    }
}
