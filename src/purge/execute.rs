//! The executor: lists, plans, deletes and lists again through a [`FailedTaskApi`], so every count
//! in the report is measured. Does I/O only through that trait.

use super::plan::{self, DeleteCall, ListQuery, Listing};
use super::policy::{Project, PurgePolicy};
use super::report::{CallFailure, Outcome, RunReport, TargetReport, outcome_of};
use futures::future::join_all;
use jiff::Timestamp;
use std::collections::BTreeSet;
use std::future::Future;
use tokio::sync::Semaphore;

/// The cloud calls a purge needs. A 404 on a single delete is success (already gone).
pub trait FailedTaskApi: Sync {
    fn list(
        &self,
        project: &Project,
        query: &ListQuery,
    ) -> impl Future<Output = Result<Listing, CallFailure>> + Send;
    fn delete(
        &self,
        project: &Project,
        call: &DeleteCall,
    ) -> impl Future<Output = Result<(), CallFailure>> + Send;
}

/// What listing one project x target found: its listings, or the failure that stopped it.
type Observed = (plan::Unit, Result<Vec<Listing>, CallFailure>);

/// Runs one purge of `policy`. `permits` bounds the calls in flight; share it across policies to
/// bound the whole process.
pub async fn execute<A: FailedTaskApi>(
    api: &A,
    policy: &PurgePolicy,
    now: Timestamp,
    permits: &Semaphore,
) -> RunReport {
    let units: Vec<plan::Unit> =
        (0..policy.projects.len()).flat_map(|p| (0..policy.targets.len()).map(move |t| (p, t))).collect();
    let mut calls = 0u64;

    let before: Vec<Observed> =
        join_all(units.iter().map(|&key| async move { (key, list_unit(api, policy, key, permits).await) }))
            .await;
    calls += before.iter().map(|(key, _)| list_calls(policy, *key)).sum::<u64>();
    let observed: Vec<plan::Observation> =
        before.iter().map(|(key, r)| (*key, r.as_ref().ok().cloned())).collect();
    let plans = plan::plan(policy, &observed, now);

    let outcomes = join_all(plans.iter().map(|unit| async move {
        let project = &policy.projects[unit.project];
        let results = join_all(unit.calls.iter().map(|call| async move {
            let _permit = permits.acquire().await;
            api.delete(project, call).await
        }))
        .await;
        let failures: Vec<CallFailure> = results.into_iter().filter_map(Result::err).collect();
        let after = if unit.calls.is_empty() {
            None
        } else {
            Some(list_unit(api, policy, (unit.project, unit.target), permits).await)
        };
        (unit, failures, after)
    }))
    .await;

    let mut report = RunReport::default();
    for ((p, t), result) in &before {
        if let Err(failure) = result {
            report.failed_calls += 1;
            report.targets.push(row(
                policy,
                (*p, *t),
                outcome_of(failure),
                0,
                0,
                0,
                0,
                false,
                Some(failure.clone()),
            ));
        }
    }
    for (unit, failures, after) in outcomes {
        calls += unit.calls.len() as u64;
        report.failed_calls += failures.len() as u64;
        let target = &policy.targets[unit.target];
        let (remaining_ids, after_failure): (BTreeSet<String>, Option<CallFailure>) = match after {
            None => (unit.found.clone(), None),
            Some(Ok(listings)) => {
                calls += list_calls(policy, (unit.project, unit.target));
                (plan::covered_ids(target, &listings, now), None)
            }
            Some(Err(failure)) => {
                calls += list_calls(policy, (unit.project, unit.target));
                report.failed_calls += 1;
                (unit.found.clone(), Some(failure))
            }
        };
        let deleted = unit.found.iter().filter(|id| !remaining_ids.contains(*id)).count() as u64;
        let error = failures.into_iter().next().or(after_failure);
        let outcome = match &error {
            Some(failure) => outcome_of(failure),
            None if policy.dry_run => Outcome::DryRun,
            None if unit.limited && unit.selected.is_empty() => Outcome::Skipped,
            None => Outcome::Purged,
        };
        let would_delete = if policy.dry_run { unit.selected.len() as u64 } else { 0 };
        report.targets.push(row(
            policy,
            (unit.project, unit.target),
            outcome,
            unit.found.len() as u64,
            deleted,
            would_delete,
            remaining_ids.len() as u64,
            unit.limited,
            error,
        ));
    }
    report.targets.sort_by_key(|r| (r.project_index, r.target_index));
    report.calls = calls;
    report
}

fn list_calls(policy: &PurgePolicy, (_, t): plan::Unit) -> u64 {
    plan::list_queries(&policy.targets[t]).len() as u64
}

async fn list_unit<A: FailedTaskApi>(
    api: &A,
    policy: &PurgePolicy,
    (p, t): plan::Unit,
    permits: &Semaphore,
) -> Result<Vec<Listing>, CallFailure> {
    let project = &policy.projects[p];
    let queries = plan::list_queries(&policy.targets[t]);
    join_all(queries.iter().map(|q| async move {
        let _permit = permits.acquire().await;
        api.list(project, q).await
    }))
    .await
    .into_iter()
    .collect()
}

#[allow(clippy::too_many_arguments)]
fn row(
    policy: &PurgePolicy,
    (p, t): plan::Unit,
    outcome: Outcome,
    found: u64,
    deleted: u64,
    would_delete: u64,
    remaining: u64,
    limited: bool,
    error: Option<CallFailure>,
) -> TargetReport {
    let target = &policy.targets[t];
    TargetReport {
        project_index: p,
        target_index: t,
        project: policy.projects[p].id.clone(),
        service: target.service(),
        scope: target.scope(),
        outcome,
        found,
        deleted,
        would_delete,
        remaining,
        limited,
        error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::model::{FailedTask, FailureJob};
    use crate::purge::policy::{KpsMatch, Target};
    use crate::purge::report::FailureKind;
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    /// An in-memory cloud for executor unit tests; the emulator proves the same end to end.
    #[derive(Default)]
    struct Fake {
        jobs: Mutex<BTreeMap<String, Vec<FailureJob>>>,
        tasks: Mutex<BTreeMap<String, Vec<FailedTask>>>,
        deletes: Mutex<Vec<DeleteCall>>,
        fail_lists: Option<FailureKind>,
    }

    impl FailedTaskApi for Fake {
        async fn list(&self, project: &Project, query: &ListQuery) -> Result<Listing, CallFailure> {
            if let Some(kind) = self.fail_lists {
                return Err(CallFailure::new(kind, Some(429), "APIGW.0308", "throttled"));
            }
            Ok(match query {
                ListQuery::Sdrs(f) => Listing::Sdrs(
                    self.jobs
                        .lock()
                        .unwrap()
                        .get(&project.id)
                        .into_iter()
                        .flatten()
                        .filter(|j| f.resource_type.as_ref().is_none_or(|r| *r == j.resource_type))
                        .cloned()
                        .collect(),
                ),
                ListQuery::Kps => {
                    Listing::Kps(self.tasks.lock().unwrap().get(&project.id).cloned().unwrap_or_default())
                }
            })
        }

        async fn delete(&self, project: &Project, call: &DeleteCall) -> Result<(), CallFailure> {
            self.deletes.lock().unwrap().push(call.clone());
            let mut jobs = self.jobs.lock().unwrap();
            let mut tasks = self.tasks.lock().unwrap();
            let jobs = jobs.entry(project.id.clone()).or_default();
            let tasks = tasks.entry(project.id.clone()).or_default();
            match call {
                DeleteCall::SdrsBatch => jobs.retain(|j| j.resource_type != "server_groups"),
                DeleteCall::SdrsGroupBatch(_) => jobs.clear(),
                DeleteCall::SdrsDelete(id) => jobs.retain(|j| &j.job_id != id),
                DeleteCall::KpsDeleteAll => tasks.clear(),
                DeleteCall::KpsDelete(id) => tasks.retain(|t| &t.task_id != id),
            }
            Ok(())
        }
    }

    fn project(id: &str) -> Project {
        Project { id: id.into(), region: "cn-north-4".into() }
    }

    fn seeded() -> Fake {
        let fake = Fake::default();
        for p in ["p0", "p1"] {
            fake.jobs.lock().unwrap().insert(
                p.into(),
                ["server_groups", "server_groups", "protected_instances"]
                    .iter()
                    .enumerate()
                    .map(|(i, rt)| FailureJob {
                        job_id: format!("{p}-j{i}"),
                        resource_type: rt.to_string(),
                        ..Default::default()
                    })
                    .collect(),
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

    #[tokio::test]
    async fn measures_before_and_after() {
        let fake = seeded();
        let policy = PurgePolicy {
            projects: vec![project("p0"), project("p1")],
            targets: vec![Target::SdrsAll, Target::KpsAll],
            dry_run: false,
            max_deletions: 100,
        };
        let report = execute(&fake, &policy, now(), &Semaphore::new(4)).await;
        assert_eq!(report.targets.len(), 4);
        assert_eq!(report.found(), 2 * 2 + 2 * 4);
        assert_eq!(report.deleted(), 12);
        assert_eq!(report.remaining(), 0);
        assert_eq!(report.failed_calls, 0);
        assert!(report.targets.iter().all(|r| r.outcome == Outcome::Purged));
        assert_eq!(fake.jobs.lock().unwrap()["p0"].len(), 1, "the instance-level failure stays");
        // 4 lists before, 4 deletes, 4 lists after.
        assert_eq!(report.calls, 12);
    }

    #[tokio::test]
    async fn dry_run_sends_no_delete() {
        let fake = seeded();
        let policy = PurgePolicy {
            projects: vec![project("p0")],
            targets: vec![Target::KpsAll],
            dry_run: true,
            max_deletions: 1,
        };
        let report = execute(&fake, &policy, now(), &Semaphore::new(1)).await;
        assert!(fake.deletes.lock().unwrap().is_empty());
        assert_eq!(report.targets[0].outcome, Outcome::DryRun);
        assert_eq!(
            (report.targets[0].would_delete, report.targets[0].remaining, report.deleted()),
            (4, 4, 0)
        );
    }

    #[tokio::test]
    async fn the_budget_stops_matching_and_says_so() {
        let fake = seeded();
        let policy = PurgePolicy {
            projects: vec![project("p0"), project("p1")],
            targets: vec![Target::KpsMatching(KpsMatch::default())],
            dry_run: false,
            max_deletions: 4,
        };
        let report = execute(&fake, &policy, now(), &Semaphore::new(2)).await;
        assert_eq!(fake.deletes.lock().unwrap().len(), 4);
        assert_eq!(report.deleted(), 4);
        assert_eq!(report.remaining(), 4);
        assert_eq!(report.targets[1].outcome, Outcome::Skipped);
        assert!(report.limited());
    }

    #[tokio::test]
    async fn a_failed_listing_deletes_nothing_and_reports_the_class() {
        let fake = Fake { fail_lists: Some(FailureKind::Throttled), ..seeded() };
        let policy = PurgePolicy {
            projects: vec![project("p0")],
            targets: vec![Target::KpsAll],
            dry_run: false,
            max_deletions: 9,
        };
        let report = execute(&fake, &policy, now(), &Semaphore::new(1)).await;
        assert!(fake.deletes.lock().unwrap().is_empty());
        assert_eq!(report.targets[0].outcome, Outcome::Throttled);
        assert_eq!(report.failed_calls, 1);
        assert_eq!(report.targets[0].error.as_ref().unwrap().code, "APIGW.0308");
    }
}
