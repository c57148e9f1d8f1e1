//! The emulator's state: protection groups and failed tasks per project, call counts, faults, modes
//! and the clock, shared by the HTTP handlers and by tests in the same process. In memory only; no
//! I/O.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::cloud::model::{
    FailedTask, FailedTaskPage, FailureJob, FailureJobPage, ProtectionGroup, ProtectionGroupPage,
};

use super::calls::CallCounts;
use super::clock::Clock;
use super::faults::{FaultAction, FaultState, Faults};
use super::hostile;
use super::modes::Modes;
use super::query::{self, FailureJobQuery, Page, ServerGroupQuery};
use super::throttle::{RateLimitSetting, Throttle};

/// An SDRS failed job with its scope, which the list call does not show: with a `server_group_id`
/// it is a failure inside that protection group (protected instance, replication pair, DR drill),
/// without one a protection-group-level failure (a failed creation or deletion of a group, which
/// may name a group that no longer exists). `resource_type` does not decide the scope.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeededJob {
    #[serde(flatten)]
    pub job: FailureJob,
    /// The protection group the failure is inside; absent (or empty) for a group-level failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_group_id: Option<String>,
}

impl SeededJob {
    pub fn new(job: FailureJob, server_group_id: Option<String>) -> Self {
        Self { job, server_group_id }
    }

    /// A protection-group-level failure.
    pub fn group_level(job: FailureJob) -> Self {
        Self { job, server_group_id: None }
    }

    /// A failure inside protection group `group`.
    pub fn in_group(job: FailureJob, group: impl Into<String>) -> Self {
        Self { job, server_group_id: Some(group.into()) }
    }

    /// The protection group the failure is inside; `None` for a group-level failure.
    pub fn group_id(&self) -> Option<&str> {
        self.server_group_id.as_deref().filter(|g| !g.is_empty())
    }

    /// Whether this is a protection-group-level failure.
    pub fn is_group_level(&self) -> bool {
        self.group_id().is_none()
    }
}

impl From<FailureJob> for SeededJob {
    fn from(job: FailureJob) -> Self {
        Self { job, server_group_id: None }
    }
}

/// The protection groups and failed tasks of one project.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProjectSeed {
    /// The protection groups `GET /v1/{project_id}/server-groups` lists and the per-group batch
    /// delete accepts.
    pub server_groups: Vec<ProtectionGroup>,
    pub failure_jobs: Vec<SeededJob>,
    pub failed_tasks: Vec<FailedTask>,
}

/// The seed file: `{"projects": {"<project_id>": {"server_groups": [...], "failure_jobs": [...],
/// "failed_tasks": [...]}}}`, each item in the shape the services' list calls show, a failure job
/// with its `server_group_id` when it is inside a group.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SeedFile {
    pub projects: BTreeMap<String, ProjectSeed>,
}

/// How many tasks a project holds, for the admin overview.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectCounts {
    pub server_groups: usize,
    pub failure_jobs: usize,
    pub failed_tasks: usize,
}

/// Shared state; cloning gives another handle to the same data.
#[derive(Clone, Debug)]
pub struct Store {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    projects: RwLock<BTreeMap<String, ProjectSeed>>,
    calls: Mutex<CallCounts>,
    /// The `Signature=` value of every Authorization header received, in order.
    signatures: Mutex<Vec<String>>,
    faults: Mutex<FaultState>,
    modes: Mutex<Modes>,
    throttle: Mutex<Throttle>,
    clock: RwLock<Clock>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Store {
    /// An empty store. `fault_seed` seeds the generator that fault chances draw from.
    pub fn new(faults: Faults, fault_seed: u64, clock: Clock) -> Self {
        Self {
            inner: Arc::new(Inner {
                projects: RwLock::default(),
                calls: Mutex::default(),
                signatures: Mutex::default(),
                faults: Mutex::new(FaultState::new(faults, fault_seed)),
                modes: Mutex::default(),
                throttle: Mutex::default(),
                clock: RwLock::new(clock),
            }),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, BTreeMap<String, ProjectSeed>> {
        self.inner.projects.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, BTreeMap<String, ProjectSeed>> {
        self.inner.projects.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds every project's protection groups and tasks from a seed.
    pub fn load(&self, seed: SeedFile) {
        let mut projects = self.write();
        for (id, data) in seed.projects {
            let project = projects.entry(id).or_default();
            project.server_groups.extend(data.server_groups);
            project.failure_jobs.extend(data.failure_jobs);
            project.failed_tasks.extend(data.failed_tasks);
        }
    }

    /// Adds protection groups.
    pub fn add_server_groups(&self, project: &str, groups: impl IntoIterator<Item = ProtectionGroup>) {
        self.write().entry(project.to_string()).or_default().server_groups.extend(groups);
    }

    /// The protection groups of a project.
    pub fn server_groups(&self, project: &str) -> Vec<ProtectionGroup> {
        self.read().get(project).map(|p| p.server_groups.clone()).unwrap_or_default()
    }

    /// Adds SDRS failed jobs (a [`FailureJob`] converts into a group-level job).
    pub fn add_failure_jobs<J: Into<SeededJob>>(&self, project: &str, jobs: impl IntoIterator<Item = J>) {
        let mut projects = self.write();
        let entry = projects.entry(project.to_string()).or_default();
        entry.failure_jobs.extend(jobs.into_iter().map(Into::into));
    }

    /// Adds KPS failed tasks.
    pub fn add_failed_tasks(&self, project: &str, tasks: impl IntoIterator<Item = FailedTask>) {
        self.write().entry(project.to_string()).or_default().failed_tasks.extend(tasks);
    }

    /// The SDRS failed jobs a project still holds, as the list call shows them.
    pub fn failure_jobs(&self, project: &str) -> Vec<FailureJob> {
        self.seeded_failure_jobs(project).into_iter().map(|j| j.job).collect()
    }

    /// The SDRS failed jobs a project still holds, with their groups.
    pub fn seeded_failure_jobs(&self, project: &str) -> Vec<SeededJob> {
        self.read().get(project).map(|p| p.failure_jobs.clone()).unwrap_or_default()
    }

    /// The KPS failed tasks a project still holds.
    pub fn failed_tasks(&self, project: &str) -> Vec<FailedTask> {
        self.read().get(project).map(|p| p.failed_tasks.clone()).unwrap_or_default()
    }

    /// Every project the store has seen, with what it holds.
    pub fn projects(&self) -> BTreeMap<String, ProjectCounts> {
        self.read()
            .iter()
            .map(|(id, p)| {
                (
                    id.clone(),
                    ProjectCounts {
                        server_groups: p.server_groups.len(),
                        failure_jobs: p.failure_jobs.len(),
                        failed_tasks: p.failed_tasks.len(),
                    },
                )
            })
            .collect()
    }

    pub fn calls(&self) -> CallCounts {
        lock(&self.inner.calls).clone()
    }

    pub fn reset_calls(&self) {
        *lock(&self.inner.calls) = CallCounts::default();
    }

    /// Replaces the faults; takes effect on the next call. Out-of-range rates are clamped when used.
    pub fn set_faults(&self, faults: Faults) {
        lock(&self.inner.faults).set(faults);
    }

    /// The faults in force, with what remains of `fail_next`.
    pub fn faults(&self) -> Faults {
        lock(&self.inner.faults).faults().clone()
    }

    /// The readings in force.
    pub fn modes(&self) -> Modes {
        *lock(&self.inner.modes)
    }

    /// Replaces the readings; takes effect on the next call.
    pub fn set_modes(&self, modes: Modes) {
        *lock(&self.inner.modes) = modes;
    }

    /// Replaces the per-access-key rate limit; takes effect on the next call, with full buckets.
    pub fn set_rate_limit(&self, setting: RateLimitSetting) {
        lock(&self.inner.throttle).set(setting);
    }

    /// The per-access-key rate limit in force.
    pub fn rate_limit(&self) -> RateLimitSetting {
        lock(&self.inner.throttle).setting()
    }

    /// Takes a token of `caller`'s rate limit, or says how long until one is free.
    pub(crate) fn admit(&self, caller: &str) -> Result<(), Duration> {
        lock(&self.inner.throttle).admit(caller, std::time::Instant::now())
    }

    /// Counts a call answered 429.
    pub(crate) fn record_throttled(&self) {
        lock(&self.inner.calls).throttled += 1;
    }

    /// Replaces the clock used for signature dates.
    pub fn set_clock(&self, clock: Clock) {
        *self.inner.clock.write().unwrap_or_else(PoisonError::into_inner) = clock;
    }

    pub fn now(&self) -> Timestamp {
        self.inner.clock.read().unwrap_or_else(PoisonError::into_inner).now()
    }

    pub(crate) fn record_call(&self, method: &str, template: &str, project: &str, user_agent: &str) {
        let at_micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        lock(&self.inner.calls).record_from(method, template, project, user_agent, at_micros);
    }

    pub(crate) fn record_signature(&self, signature: &str) {
        lock(&self.inner.signatures).push(signature.to_string());
    }

    /// The `Signature=` value of every Authorization header received so far, valid or not, so that
    /// tests can prove no request signature leaks into logs, events or status.
    pub fn signatures(&self) -> Vec<String> {
        lock(&self.inner.signatures).clone()
    }

    pub(crate) fn record_unmatched(&self, method: &str) {
        lock(&self.inner.calls).record_unmatched(method);
    }

    /// The latency to add and the fault to apply to the next cloud call.
    pub(crate) fn next_fault(&self, is_list: bool, is_delete: bool) -> (Duration, FaultAction) {
        let mut state = lock(&self.inner.faults);
        let latency = state.faults().latency();
        (latency, state.decide(is_list, is_delete))
    }

    /// Whether list answers show made-up tasks with unsafe ids ([`Faults::hostile_ids`]).
    fn hostile(&self) -> bool {
        lock(&self.inner.faults).faults().hostile_ids
    }

    /// `GET /v1/{project_id}/server-groups`.
    pub(crate) fn list_server_groups(&self, project: &str, q: &ServerGroupQuery) -> ProtectionGroupPage {
        let hostile = self.hostile();
        let projects = self.read();
        let groups = projects.get(project).map(|p| p.server_groups.as_slice()).unwrap_or_default();
        let mut matching: Vec<ProtectionGroup> = groups.iter().filter(|g| q.matches(g)).cloned().collect();
        if hostile {
            matching.push(hostile::protection_group(q));
        }
        ProtectionGroupPage {
            count: matching.len() as u64,
            server_groups: query::page(matching.iter(), q.page),
        }
    }

    /// `GET /v1/{project_id}/task-center/failure-jobs`, scoped as the current [`Modes`] say.
    pub(crate) fn list_failure_jobs(&self, project: &str, q: &FailureJobQuery) -> FailureJobPage {
        let listing = self.modes().sdrs_listing;
        let hostile = self.hostile();
        let now = self.now();
        let projects = self.read();
        let jobs = projects.get(project).map(|p| p.failure_jobs.as_slice()).unwrap_or_default();
        let mut matching: Vec<FailureJob> =
            jobs.iter().filter(|j| query::matches(j, &q.filter, listing)).map(|j| j.job.clone()).collect();
        if hostile {
            let made_up = hostile::failure_jobs(matching.first(), &q.filter, now);
            matching.extend(made_up);
        }
        FailureJobPage { count: matching.len() as u64, failure_jobs: query::page(matching.iter(), q.page) }
    }

    fn retain_jobs(&self, project: &str, keep: impl Fn(&SeededJob) -> bool) -> usize {
        let mut projects = self.write();
        let Some(p) = projects.get_mut(project) else { return 0 };
        let before = p.failure_jobs.len();
        p.failure_jobs.retain(keep);
        before - p.failure_jobs.len()
    }

    /// `DELETE /v1/{project_id}/task-center/failure-jobs/batch`: protection-group-level jobs only.
    pub(crate) fn delete_server_group_level_jobs(&self, project: &str) -> usize {
        self.retain_jobs(project, |j| !j.is_group_level())
    }

    /// `DELETE /v1/{project_id}/task-center/{server_group_id}/failure-jobs/batch`: the failures
    /// inside that group; `None` when the project has no such protection group.
    pub(crate) fn delete_group_jobs(&self, project: &str, group: &str) -> Option<usize> {
        let mut projects = self.write();
        let p = projects.get_mut(project)?;
        if !p.server_groups.iter().any(|g| g.id == group) {
            return None;
        }
        let before = p.failure_jobs.len();
        p.failure_jobs.retain(|j| j.group_id() != Some(group));
        Some(before - p.failure_jobs.len())
    }

    /// `DELETE /v1/{project_id}/task-center/failure-jobs/{failure_job_id}`; false when absent.
    pub(crate) fn delete_failure_job(&self, project: &str, job_id: &str) -> bool {
        self.retain_jobs(project, |j| j.job.job_id != job_id) > 0
    }

    /// `GET /v3/{project_id}/failed-tasks`.
    pub(crate) fn list_failed_tasks(&self, project: &str, page: Page) -> FailedTaskPage {
        let hostile = self.hostile();
        let now = self.now();
        let projects = self.read();
        let tasks = projects.get(project).map(|p| p.failed_tasks.as_slice()).unwrap_or_default();
        if !hostile {
            return FailedTaskPage { total: tasks.len() as u64, tasks: query::page(tasks.iter(), page) };
        }
        let mut all = tasks.to_vec();
        all.extend(hostile::failed_tasks(tasks.first(), now));
        FailedTaskPage { total: all.len() as u64, tasks: query::page(all.iter(), page) }
    }

    /// `DELETE /v3/{project_id}/failed-tasks`.
    pub(crate) fn delete_all_failed_tasks(&self, project: &str) -> usize {
        self.write().get_mut(project).map(|p| std::mem::take(&mut p.failed_tasks).len()).unwrap_or(0)
    }

    /// `DELETE /v3/{project_id}/failed-tasks/{task_id}`; false when absent.
    pub(crate) fn delete_failed_task(&self, project: &str, task_id: &str) -> bool {
        let mut projects = self.write();
        let Some(p) = projects.get_mut(project) else { return false };
        let before = p.failed_tasks.len();
        p.failed_tasks.retain(|t| t.task_id != task_id);
        p.failed_tasks.len() < before
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::model::FailureJobFilter;
    use crate::emulator::modes::SdrsListing;

    fn job(id: &str, kind: &str, resource_id: &str, group: Option<&str>) -> SeededJob {
        SeededJob::new(
            FailureJob {
                job_id: id.into(),
                resource_type: kind.into(),
                resource_id: resource_id.into(),
                resource_name: format!("name-{id}"),
                failure_status: "createFail".into(),
                ..FailureJob::default()
            },
            group.map(str::to_string),
        )
    }

    fn task(id: &str) -> FailedTask {
        FailedTask { task_id: id.into(), operate_type: "FAILED_RESET".into(), ..FailedTask::default() }
    }

    fn group(id: &str, status: &str) -> ProtectionGroup {
        ProtectionGroup { id: id.into(), name: format!("pg-{id}"), status: status.into() }
    }

    /// Groups g1 and g2; group-level j1 (g1), j3 (g2) and j6 (a group that is gone); in-group j2
    /// (g1), j4 (g2), j5 (g1).
    fn store() -> Store {
        let s = Store::new(Faults::default(), 0, Clock::System);
        s.add_server_groups("p", [group("g1", "protected"), group("g2", "available")]);
        s.add_failure_jobs(
            "p",
            [
                job("j1", "server_groups", "g1", None),
                job("j2", "protected_instances", "vm1", Some("g1")),
                job("j3", "server_groups", "g2", None),
                job("j4", "replications", "rep1", Some("g2")),
                job("j5", "disaster_recovery_drills", "d1", Some("g1")),
                job("j6", "server_groups", "gone", None),
            ],
        );
        s.add_failed_tasks("p", [task("t1"), task("t2"), task("t3")]);
        s
    }

    fn ids(jobs: &[FailureJob]) -> Vec<&str> {
        jobs.iter().map(|j| j.job_id.as_str()).collect()
    }

    fn q(filter: FailureJobFilter, limit: usize, offset: usize) -> FailureJobQuery {
        FailureJobQuery { filter, page: Page { limit, offset } }
    }

    fn in_group(g: &str) -> FailureJobFilter {
        FailureJobFilter { server_group_id: Some(g.into()), ..Default::default() }
    }

    #[test]
    fn the_strict_list_shows_group_level_failures_unless_a_group_is_named() {
        let s = store();
        let page = s.list_failure_jobs("p", &q(FailureJobFilter::default(), 2, 1));
        assert_eq!((page.count, ids(&page.failure_jobs)), (3, vec!["j3", "j6"]));
        let page = s.list_failure_jobs("p", &q(in_group("g1"), 1000, 0));
        assert_eq!((page.count, ids(&page.failure_jobs)), (2, vec!["j2", "j5"]));
        let page = s.list_failure_jobs("p", &q(in_group("gone"), 1000, 0));
        assert_eq!(page, FailureJobPage::default(), "a group-level job is not inside the group it names");
        let instances =
            FailureJobFilter { resource_type: Some("protected_instances".into()), ..Default::default() };
        assert_eq!(s.list_failure_jobs("p", &q(instances.clone(), 1000, 0)).count, 0);
        let both = FailureJobFilter { server_group_id: Some("g1".into()), ..instances };
        assert_eq!(ids(&s.list_failure_jobs("p", &q(both, 1000, 0)).failure_jobs), ["j2"]);
        let empty = s.list_failure_jobs("unknown", &q(FailureJobFilter::default(), 1000, 0));
        assert_eq!(empty, FailureJobPage::default());
    }

    #[test]
    fn the_loose_list_shows_every_failure_and_can_be_switched_back() {
        let s = store();
        s.set_modes(Modes { sdrs_listing: SdrsListing::Loose, ..Modes::default() });
        let page = s.list_failure_jobs("p", &q(FailureJobFilter::default(), 1000, 0));
        assert_eq!(ids(&page.failure_jobs), ["j1", "j2", "j3", "j4", "j5", "j6"]);
        let page = s.list_failure_jobs("p", &q(in_group("g2"), 1000, 0));
        assert_eq!(ids(&page.failure_jobs), ["j4"], "server_group_id scopes the same in both readings");
        s.clone().set_modes(Modes::default());
        assert_eq!(s.list_failure_jobs("p", &q(FailureJobFilter::default(), 1000, 0)).count, 3);
    }

    #[test]
    fn batch_delete_removes_group_level_failures_only() {
        let s = store();
        s.add_failure_jobs("p", [job("j7", "protectedInstance", "vm9", None)]);
        assert_eq!(s.delete_server_group_level_jobs("p"), 4, "scope, not resource_type, decides");
        assert_eq!(ids(&s.failure_jobs("p")), ["j2", "j4", "j5"]);
        assert_eq!(s.delete_server_group_level_jobs("p"), 0);
        assert_eq!(s.delete_server_group_level_jobs("unknown"), 0);
    }

    #[test]
    fn group_delete_removes_that_groups_in_group_failures_and_needs_the_group() {
        let s = store();
        assert_eq!(s.delete_group_jobs("p", "g1"), Some(2));
        assert_eq!(ids(&s.failure_jobs("p")), ["j1", "j3", "j4", "j6"], "the group-level j1 stays");
        assert_eq!(s.delete_group_jobs("p", "g1"), Some(0));
        assert_eq!(s.delete_group_jobs("p", "gone"), None, "no such protection group");
        assert_eq!(s.delete_group_jobs("unknown", "g1"), None);
        assert_eq!(s.failure_jobs("p").len(), 4);
    }

    #[test]
    fn server_groups_page_and_filter() {
        let s = store();
        s.add_server_groups("p", [group("prod-3", "protected")]);
        let all = ServerGroupQuery::default();
        let page = s.list_server_groups("p", &ServerGroupQuery { page: Page { limit: 2, offset: 1 }, ..all });
        assert_eq!(page.count, 3);
        assert_eq!(page.server_groups, [group("g2", "available"), group("prod-3", "protected")]);
        let protected = ServerGroupQuery { status: Some("protected".into()), ..ServerGroupQuery::default() };
        let page = s.list_server_groups("p", &protected);
        assert_eq!(page.count, 2);
        let named = ServerGroupQuery { name: Some("prod".into()), ..protected };
        assert_eq!(s.list_server_groups("p", &named).server_groups, [group("prod-3", "protected")]);
        assert_eq!(
            s.list_server_groups("unknown", &ServerGroupQuery::default()),
            ProtectionGroupPage::default()
        );
    }

    #[test]
    fn single_deletes_report_absence() {
        let s = store();
        assert!(s.delete_failure_job("p", "j5"));
        assert!(!s.delete_failure_job("p", "j5"));
        assert!(!s.delete_failure_job("other", "j1"));
        assert!(s.delete_failed_task("p", "t2"));
        assert!(!s.delete_failed_task("p", "t2"));
        let page = s.list_failed_tasks("p", Page { limit: 1, offset: 1 });
        assert_eq!(page.total, 2);
        assert_eq!(page.tasks[0].task_id, "t3");
        assert_eq!(s.delete_all_failed_tasks("p"), 2);
        assert_eq!(s.failed_tasks("p"), []);
        assert_eq!(s.projects()["p"], ProjectCounts { server_groups: 2, failure_jobs: 5, failed_tasks: 0 });
    }

    #[test]
    fn seed_file_round_trips_with_groups() {
        let text = r#"{"projects":{"p":{"server_groups":[{"id":"g","name":"pg","status":"available"}],
            "failure_jobs":[{"job_id":"a","resource_type":"replications","server_group_id":"g"},
            {"job_id":"b","resource_type":"server_groups","resource_id":"g","server_group_id":null}],
            "failed_tasks":[{"task_id":"t","task_error_code":null}]}}}"#;
        let seed: SeedFile = serde_json::from_str(text).unwrap();
        let s = Store::new(Faults::default(), 0, Clock::System);
        s.load(seed);
        let jobs = s.seeded_failure_jobs("p");
        assert_eq!((jobs[0].group_id(), jobs[1].group_id()), (Some("g"), None));
        assert_eq!(s.server_groups("p")[0].name, "pg");
        assert_eq!(s.failed_tasks("p")[0].task_id, "t");
        let wire = serde_json::to_value(&s.failure_jobs("p")[0]).unwrap();
        assert!(wire.get("server_group_id").is_none(), "the wire job has no group: {wire}");
        let empty_group = SeededJob::new(FailureJob::default(), Some(String::new()));
        assert!(empty_group.is_group_level(), "an empty group id counts as none");
    }

    #[test]
    fn the_hostile_fault_adds_made_up_tasks_to_every_list_and_stores_none() {
        let s = store();
        s.set_faults(Faults { hostile_ids: true, ..Faults::default() });
        let n = hostile::task_ids().len();
        let all = q(FailureJobFilter::default(), 1000, 0);
        let page = s.list_failure_jobs("p", &all);
        assert_eq!((page.count as usize, page.failure_jobs.len()), (3 + n, 3 + n));
        let copies = &page.failure_jobs[3..];
        assert!(copies.iter().all(|j| j.resource_type == "server_groups" && j.resource_name == "name-j1"));
        // Paging walks the real and the made-up tasks alike.
        let tail = s.list_failure_jobs("p", &q(FailureJobFilter::default(), 1000, 3 + n - 1));
        assert_eq!(tail.failure_jobs.len(), 1);
        let page = s.list_failure_jobs("p", &q(in_group("g1"), 1000, 0));
        assert!(page.failure_jobs[2..].iter().all(|j| j.resource_type == "protected_instances"));
        let page = s.list_failure_jobs("p", &q(in_group(hostile::GROUP_ID), 1000, 0));
        assert_eq!(page.count as usize, n, "the made-up group has made-up failures only");
        let groups = s.list_server_groups("p", &ServerGroupQuery::default());
        assert_eq!(groups.server_groups.last().map(|g| g.id.as_str()), Some(hostile::GROUP_ID));
        let tasks = s.list_failed_tasks("p", Page::default());
        assert_eq!(tasks.total as usize, 3 + n);
        assert!(tasks.tasks[3..].iter().all(|t| t.operate_type == "FAILED_RESET"));
        // Nothing was stored, and the fault can be switched off.
        assert_eq!(s.projects()["p"], ProjectCounts { server_groups: 2, failure_jobs: 6, failed_tasks: 3 });
        s.set_faults(Faults::default());
        assert_eq!(s.list_failed_tasks("p", Page::default()).total, 3);
    }

    #[test]
    fn faults_modes_and_calls_are_shared_between_handles() {
        let s = store();
        let other = s.clone();
        other.set_faults(Faults { fail_next: vec![500], latency_ms: 5, ..Faults::default() });
        assert_eq!(s.next_fault(false, false), (Duration::from_millis(5), FaultAction::Status(500)));
        assert_eq!(s.faults().fail_next, Vec::<u16>::new());
        other.record_call("GET", "/x", "p", "");
        assert_eq!(s.calls().total, 1);
        s.reset_calls();
        assert_eq!(other.calls(), CallCounts::default());
        assert_eq!(s.modes(), Modes::default());
        other.set_modes(Modes { sdrs_listing: SdrsListing::Loose, ..Modes::default() });
        assert_eq!(s.modes().sdrs_listing, SdrsListing::Loose);
    }
}
