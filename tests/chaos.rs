//! Chaos on the real control plane: the controller against a faulty cloud, an API server that
//! goes away mid-run, and a controller process SIGKILLed mid-run.
//!
//! Every test puts a recording HTTPS front ([`common::recorder::Recorder`]) between the controller
//! and a plain-HTTP emulator, so each DELETE is known by the id or protection group it named, and
//! seeds tasks no policy targets, to prove none of them is ever named by a DELETE or goes missing.
//!
//! 1. [`purges_exactly_the_targets_through_injected_faults`]: three policies over three projects
//!    (SDRS All, Matching and ProtectionGroups; KPS All and Matching) plus a project no policy
//!    names; the emulator injects on every call, DELETEs included, 20% 503, 10% 429 with
//!    Retry-After, 3% connection resets, 2% answers of 200 with an HTML page and 50 ms latency, and
//!    answers 10% of DELETEs 2xx without deleting anything; `TASKREAPER_CHAOS_SEED` picks the seed of
//!    those chances. At every status write: counts no larger than what left the emulator, and
//!    Ready=True only with every task the policy targets gone. A run that still fails after the client's own
//!    retries would be retried by the controller 30 s later, doubling (`schedule::retry_run`,
//!    `RETRY_MIN` is a constant with no setting); to stay within the time budget the test asks for
//!    the next run at once with `taskreaper.io/requested-at` instead. Every status write is
//!    watched and checked as it happens.
//! 2. [`a_run_survives_the_api_server_going_away`]: a private control plane whose kube-apiserver is
//!    killed mid-run (etcd kept) and started again.
//! 3. [`a_sigkilled_controller_resumes_within_the_run_budget`]: the `taskreaper run` binary
//!    SIGKILLed mid-run and started again, with a Matching policy whose maxDeletionsPerRun is below
//!    the number of matching tasks.
//!
//! What the code does on a restart (read from `controller::pipeline` and `controller::status`):
//! a run writes only `Reconciling=True/Running` when it starts; `lastScheduleTime`, `lastRun`
//! (with `budgetUsed`) and `totalDeleted` are written when it ends. A run that never wrote its
//! end (the process died, or the API server refused the write) therefore leaves a status from
//! which the next reconcile computes the same scheduled run as still due and runs it again, with
//! the whole `maxDeletionsPerRun` (`budget_spent_before` shares a budget only with a run that
//! ended with a transient failure). Tests 2 and 3 assert the behaviour the product promises (the
//! run's result is counted; one scheduled run spends at most its budget) and name this cause in
//! their failure messages.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use common::control_plane::{ControlPlane, Identity};
use common::e2e::{self, AK, PROJECT_A, PROJECT_B, PROJECT_C, SECRET_NAME, SK};
use common::recorder::Recorder;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ListParams, ObjectMeta, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use taskreaper::api::{
    ConditionType, FailedTaskCleanupPolicy, FailedTaskCleanupPolicyStatus, KpsOperateType, RunSummary,
    SdrsResourceType, Target, TaskMatch,
};
use taskreaper::cloud::credentials::Secret as SecretValue;
use taskreaper::cloud::model::{FailedTask, FailureJob, ProtectionGroup};
use taskreaper::cloud::{Allowlist, EndpointPolicy, HttpConfig, RateLimit, RetryPolicy};
use taskreaper::controller::reconcile::REQUESTED_AT;
use taskreaper::controller::{ControllerError, Settings};
use taskreaper::emulator::{self, Emulator, Faults, SeededJob, Store};
use taskreaper::observability::{Health, Metrics};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A project no policy names.
const PROJECT_D: &str = "d0d1d2d3d4d5d6d7d8d9dadbdcdddedf";
const POLL: Duration = Duration::from_millis(50);

// ---------------------------------------------------------------------------------------------
// What is seeded, and what each DELETE can touch.

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Sdrs,
    Kps,
}

/// One seeded failed task, and the policy that targets it (`None`: no policy does).
#[derive(Clone, Debug)]
struct Seeded {
    project: &'static str,
    kind: Kind,
    id: String,
    /// SDRS: the protection group a failure is inside; `None` for a group-level failure.
    group: Option<String>,
    policy: Option<&'static str>,
}

/// Everything seeded, with the emulator it went into.
#[derive(Clone, Default)]
struct World {
    tasks: Vec<Seeded>,
}

impl World {
    fn group(&mut self, store: &Store, project: &'static str, id: &str) {
        let group = ProtectionGroup { id: id.into(), name: format!("pg-{id}"), status: "protected".into() };
        store.add_server_groups(project, [group]);
    }

    #[allow(clippy::too_many_arguments)]
    fn jobs(
        &mut self,
        store: &Store,
        project: &'static str,
        prefix: &str,
        n: usize,
        resource_type: &str,
        name: &str,
        group: Option<&str>,
        policy: Option<&'static str>,
    ) {
        for i in 0..n {
            let id = format!("{prefix}-{i}");
            let job = FailureJob {
                job_id: id.clone(),
                resource_type: resource_type.into(),
                resource_id: format!("res-{id}"),
                resource_name: format!("{name}{id}"),
                failure_status: "createFail".into(),
                ..FailureJob::default()
            };
            store.add_failure_jobs(project, [SeededJob::new(job, group.map(str::to_string))]);
            let group = group.map(str::to_string);
            self.tasks.push(Seeded { project, kind: Kind::Sdrs, id, group, policy });
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn kps(
        &mut self,
        store: &Store,
        project: &'static str,
        prefix: &str,
        n: usize,
        operate_type: &str,
        keypair: &str,
        policy: Option<&'static str>,
    ) {
        for i in 0..n {
            let id = format!("{prefix}-{i}");
            let task = FailedTask {
                task_id: id.clone(),
                operate_type: operate_type.into(),
                keypair_name: format!("{keypair}{id}"),
                ..FailedTask::default()
            };
            store.add_failed_tasks(project, [task]);
            self.tasks.push(Seeded { project, kind: Kind::Kps, id, group: None, policy });
        }
    }

    fn targeted_by(&self, policy: &str) -> Vec<&Seeded> {
        self.tasks.iter().filter(|t| t.policy == Some(policy)).collect()
    }

    fn targeted(&self) -> Vec<&Seeded> {
        self.tasks.iter().filter(|t| t.policy.is_some()).collect()
    }

    fn untargeted(&self) -> Vec<&Seeded> {
        self.tasks.iter().filter(|t| t.policy.is_none()).collect()
    }
}

/// Ids still in the emulator, per (project, kind).
fn present(store: &Store) -> BTreeSet<(String, Kind, String)> {
    let mut out = BTreeSet::new();
    for project in store.projects().keys() {
        for job in store.failure_jobs(project) {
            out.insert((project.clone(), Kind::Sdrs, job.job_id));
        }
        for task in store.failed_tasks(project) {
            out.insert((project.clone(), Kind::Kps, task.task_id));
        }
    }
    out
}

fn is_present(present: &BTreeSet<(String, Kind, String)>, task: &Seeded) -> bool {
    present.contains(&(task.project.to_string(), task.kind, task.id.clone()))
}

/// How many of `tasks` are gone from the emulator.
fn gone(store: &Store, tasks: &[&Seeded]) -> u64 {
    let now = present(store);
    tasks.iter().filter(|t| !is_present(&now, t)).count() as u64
}

/// A DELETE as the recorder saw it, by what it names.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Delete {
    KpsOne { project: String, id: String },
    KpsAll { project: String },
    SdrsOne { project: String, id: String },
    SdrsGroupLevel { project: String },
    SdrsGroup { project: String, group: String },
    Other(String),
}

fn classify(path: &str) -> Delete {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let p = |i: usize| parts[i].to_string();
    match parts.as_slice() {
        ["v3", _, "failed-tasks"] => Delete::KpsAll { project: p(1) },
        ["v3", _, "failed-tasks", _] => Delete::KpsOne { project: p(1), id: p(3) },
        ["v1", _, "task-center", "failure-jobs", "batch"] => Delete::SdrsGroupLevel { project: p(1) },
        ["v1", _, "task-center", "failure-jobs", _] => Delete::SdrsOne { project: p(1), id: p(4) },
        ["v1", _, "task-center", _, "failure-jobs", "batch"] => {
            Delete::SdrsGroup { project: p(1), group: p(3) }
        }
        _ => Delete::Other(path.to_string()),
    }
}

/// Whether a DELETE, had it been served, would remove `task`.
fn touches(delete: &Delete, task: &Seeded) -> bool {
    match delete {
        Delete::KpsOne { project, id } => task.kind == Kind::Kps && task.project == project && task.id == *id,
        Delete::KpsAll { project } => task.kind == Kind::Kps && task.project == project,
        Delete::SdrsOne { project, id } => {
            task.kind == Kind::Sdrs && task.project == project && task.id == *id
        }
        Delete::SdrsGroupLevel { project } => {
            task.kind == Kind::Sdrs && task.project == project && task.group.is_none()
        }
        Delete::SdrsGroup { project, group } => {
            task.kind == Kind::Sdrs && task.project == project && task.group.as_deref() == Some(group)
        }
        Delete::Other(_) => true,
    }
}

/// Every recorded DELETE that named (or would sweep) an untargeted task, with the task.
fn untargeted_deletes(front: &Recorder, world: &World) -> Vec<String> {
    let mut out = Vec::new();
    for recorded in front.deletes() {
        let delete = classify(&recorded.path);
        for task in world.untargeted() {
            if touches(&delete, task) {
                out.push(format!(
                    "{} touches untargeted {}/{:?}/{}",
                    recorded.path, task.project, task.kind, task.id
                ));
            }
        }
    }
    out
}

/// Fails loudly unless every untargeted task is still there and no DELETE ever named one.
fn assert_untargeted_untouched(front: &Recorder, world: &World, store: &Store) -> usize {
    assert_eq!(
        front.unparsed(),
        0,
        "the recorder could not read every request; the DELETE log is incomplete"
    );
    let now = present(store);
    let missing: Vec<String> = world
        .untargeted()
        .iter()
        .filter(|t| !is_present(&now, t))
        .map(|t| format!("{}/{:?}/{}", t.project, t.kind, t.id))
        .collect();
    assert!(missing.is_empty(), "untargeted tasks were deleted: {missing:?}");
    let named = untargeted_deletes(front, world);
    assert!(named.is_empty(), "DELETEs reached the emulator for untargeted tasks:\n{}", named.join("\n"));
    missing.len() + named.len()
}

// ---------------------------------------------------------------------------------------------
// A namespace with credentials, a plain-HTTP emulator and the recording front, on any control
// plane (the shared one or a private one).

struct Lab<'a> {
    cp: &'a ControlPlane,
    ns: String,
    admin: Client,
    emulator: Emulator,
    front: Recorder,
}

/// The seed of the emulator's fault chances: `TASKREAPER_CHAOS_SEED` (decimal), or a fixed one, so
/// a failing seed can be run again exactly.
fn chaos_seed() -> u64 {
    match std::env::var("TASKREAPER_CHAOS_SEED") {
        Ok(seed) => seed.trim().parse().expect("TASKREAPER_CHAOS_SEED must be a decimal u64"),
        Err(_) => 0x00c0_ffee,
    }
}

impl<'a> Lab<'a> {
    async fn start(cp: &'a ControlPlane, prefix: &str, faults: Faults) -> Lab<'a> {
        let ns = cp.new_namespace(prefix).await;
        let admin = cp.admin_client().await;
        let config = emulator::Config {
            access_keys: BTreeMap::from([(AK.to_string(), SecretValue::new(SK))]),
            tls: false,
            faults,
            fault_seed: chaos_seed(),
            ..emulator::Config::default()
        };
        let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let emulator = Emulator::start(loopback, config, emulator::Seed::Empty)
            .await
            .expect("the emulator starts on loopback");
        let front = Recorder::start(emulator.addr()).await;
        let secret = Secret {
            metadata: ObjectMeta { name: Some(SECRET_NAME.into()), ..ObjectMeta::default() },
            data: Some(BTreeMap::from([
                ("accessKeyId".to_string(), ByteString(AK.as_bytes().to_vec())),
                ("secretAccessKey".to_string(), ByteString(SK.as_bytes().to_vec())),
            ])),
            ..Secret::default()
        };
        Api::<Secret>::namespaced(admin.clone(), &ns)
            .create(&PostParams::default(), &secret)
            .await
            .expect("creating the credentials Secret");
        Lab { cp, ns, admin, emulator, front }
    }

    fn store(&self) -> &Store {
        self.emulator.store()
    }

    fn policies(&self) -> Api<FailedTaskCleanupPolicy> {
        Api::namespaced(self.admin.clone(), &self.ns)
    }

    /// A policy with both endpoints at the recording front and an hourly schedule.
    fn policy(
        &self,
        name: &str,
        projects: &[&str],
        targets: Vec<Target>,
        max: u32,
    ) -> FailedTaskCleanupPolicy {
        common::e2e::policy_at(&self.ns, name, &self.front.url(), projects, targets, max)
    }

    async fn create(&self, policy: &FailedTaskCleanupPolicy) {
        self.policies()
            .create(&PostParams::default(), policy)
            .await
            .unwrap_or_else(|e| panic!("creating policy {}: {e}", policy.name_any()));
    }

    async fn request_run(&self, name: &str, value: &str) {
        let patch = json!({"metadata": {"annotations": { REQUESTED_AT: value }}});
        self.policies()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap_or_else(|e| panic!("setting {REQUESTED_AT} on {name}: {e}"));
    }

    /// Polls the policy until `done` holds; fails after `timeout` with the status. Read errors
    /// (an API server that is down) are retried until the deadline.
    async fn wait_for(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        done: impl Fn(&FailedTaskCleanupPolicy) -> bool,
    ) -> FailedTaskCleanupPolicy {
        let deadline = Instant::now() + timeout;
        let mut last: String;
        loop {
            match self.policies().get_opt(name).await {
                Ok(Some(policy)) if done(&policy) => return policy,
                Ok(Some(policy)) => last = e2e::status_yaml(&policy),
                Ok(None) => last = "(policy not found)".into(),
                Err(e) => last = format!("(reading it failed: {e})"),
            }
            assert!(
                Instant::now() < deadline,
                "policy {}/{name}: timed out after {timeout:?} waiting for {what}; last seen:\n{last}",
                self.ns
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits for a finished run: a lastRun with a completion time and no run in progress, and,
    /// when `request` is given, that request handled.
    async fn wait_run_finished(
        &self,
        name: &str,
        request: Option<&str>,
        timeout: Duration,
    ) -> FailedTaskCleanupPolicy {
        self.wait_for(name, &format!("a finished run (request {request:?})"), timeout, |p| {
            let Some(s) = &p.status else { return false };
            request.is_none_or(|r| s.last_handled_requested_at.as_deref() == Some(r))
                && s.last_run.as_ref().is_some_and(|r| r.completion_time.is_some())
                && e2e::condition(p, ConditionType::Reconciling).is_some_and(|c| c.status == "False")
        })
        .await
    }
}

/// Ready=True after a finished run that left nothing in scope.
fn purged(policy: &FailedTaskCleanupPolicy) -> bool {
    let Some(s) = &policy.status else { return false };
    e2e::condition(policy, ConditionType::Ready).is_some_and(|c| c.status == "True")
        && e2e::condition(policy, ConditionType::Reconciling).is_some_and(|c| c.status == "False")
        && s.last_run.as_ref().is_some_and(|r| r.completion_time.is_some() && r.remaining == Some(0))
}

// ---------------------------------------------------------------------------------------------
// The controller in process, with a handle on its task.

struct InProcess {
    metrics: Arc<Metrics>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ControllerError>>,
}

impl InProcess {
    async fn start(
        cp: &ControlPlane,
        ns: &str,
        ca_pem: &str,
        max_in_flight: usize,
        retry: RetryPolicy,
    ) -> Self {
        let roomy = std::num::NonZeroU32::new(1000).expect("non-zero");
        let settings = Settings {
            namespaces: vec![ns.to_string()],
            label_selector: None,
            http: HttpConfig {
                max_in_flight,
                connect_timeout: Duration::from_secs(2),
                request_timeout: Duration::from_secs(5),
                ca_bundle_pem: Some(ca_pem.as_bytes().to_vec()),
                endpoints: EndpointPolicy {
                    allowlist: Allowlist::parse(["127.0.0.1"]).expect("allowlist pattern"),
                    allow_http: false,
                },
                retry,
                ..HttpConfig::default()
            },
            rate_limit: RateLimit { per_second: roomy, burst: roomy }.into(),
            instance: Some("chaos".into()),
            max_concurrent_reconciles: 32,
            workload_identity: None,
            iam_endpoint: None,
        };
        let metrics = Arc::new(Metrics::default());
        let health = Arc::new(Health::default());
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let client = cp.controller_client().await;
        let task = tokio::spawn(taskreaper::controller::serve(
            client,
            settings,
            metrics.clone(),
            health.clone(),
            shutdown,
        ));
        let deadline = Instant::now() + Duration::from_secs(60);
        while !health.is_ready() {
            assert!(!task.is_finished(), "the controller stopped before it became ready");
            assert!(Instant::now() < deadline, "the controller did not become ready within 60 s");
            tokio::time::sleep(POLL).await;
        }
        InProcess { metrics, stop: Some(stop), task }
    }

    /// Fails when the controller task has ended (returned or panicked) while it should run.
    fn assert_running(&self) {
        assert!(!self.task.is_finished(), "the controller task ended during the run (panicked or returned)");
    }

    /// Stops it and fails unless it returned cleanly: a panic shows as a JoinError here.
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match tokio::time::timeout(Duration::from_secs(30), self.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => panic!("the controller failed: {e}"),
            Ok(Err(e)) => panic!("the controller task panicked or was cancelled: {e}"),
            Err(_) => panic!("the controller did not stop within 30 s of the shutdown signal"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Every status write of every policy in a namespace, checked as it arrives.

/// One policy's view as the status writes come in.
#[derive(Default)]
struct Ledger {
    writes: u64,
    runs: u64,
    /// Sum of lastRun.deleted over the distinct runs seen.
    deleted: u64,
    /// Targets of those runs whose counts could not be measured (a list failed).
    unmeasured: u64,
    /// Sum of lastRun.notRemoved: tasks the emulator kept after accepting their DELETE twice.
    not_removed: u64,
    last_run: Option<RunSummary>,
    /// Problems found, as they were found.
    violations: Vec<String>,
}

#[derive(Clone, Default)]
struct Watch {
    ledgers: Arc<Mutex<BTreeMap<String, Ledger>>>,
    /// Times the watch had to list again (an expired resourceVersion): writes in between may be
    /// unseen.
    relists: Arc<Mutex<u64>>,
}

impl Watch {
    /// Watches the policies of `api`'s namespace from now on; `targets(name)` are the tasks the
    /// policy targets, read against `store` at each write.
    fn start(
        api: Api<FailedTaskCleanupPolicy>,
        store: Store,
        targets: BTreeMap<String, Vec<Seeded>>,
    ) -> (Watch, JoinHandle<()>) {
        let watch = Watch::default();
        let w = watch.clone();
        let task = tokio::spawn(async move {
            let mut version = String::from("0");
            let mut seen: BTreeMap<String, Option<FailedTaskCleanupPolicyStatus>> = BTreeMap::new();
            loop {
                if version == "0" {
                    match api.list(&ListParams::default()).await {
                        Ok(list) => {
                            for p in list.items {
                                w.observe(&p, &mut seen, &store, &targets);
                            }
                            version = list.metadata.resource_version.unwrap_or_else(|| "0".into());
                        }
                        Err(_) => {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            continue;
                        }
                    }
                }
                let params = WatchParams::default().timeout(290);
                let stream = match api.watch(&params, &version).await {
                    Ok(stream) => stream,
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                };
                let mut stream = stream.boxed();
                loop {
                    match stream.try_next().await {
                        Ok(Some(WatchEvent::Added(p) | WatchEvent::Modified(p))) => {
                            if let Some(v) = p.resource_version() {
                                version = v;
                            }
                            w.observe(&p, &mut seen, &store, &targets);
                        }
                        Ok(Some(WatchEvent::Bookmark(b))) => version = b.metadata.resource_version,
                        Ok(Some(WatchEvent::Deleted(_))) => {}
                        Ok(Some(WatchEvent::Error(e))) => {
                            if e.code == 410 {
                                *w.relists.lock().unwrap_or_else(PoisonError::into_inner) += 1;
                                version = "0".into();
                            }
                            break;
                        }
                        Ok(None) | Err(_) => break,
                    }
                }
            }
        });
        (watch, task)
    }

    fn observe(
        &self,
        policy: &FailedTaskCleanupPolicy,
        seen: &mut BTreeMap<String, Option<FailedTaskCleanupPolicyStatus>>,
        store: &Store,
        targets: &BTreeMap<String, Vec<Seeded>>,
    ) {
        let name = policy.name_any();
        let status = policy.status.clone();
        if seen.get(&name) == Some(&status) {
            return; // not a status write (metadata or spec changed)
        }
        seen.insert(name.clone(), status.clone());
        let Some(status) = status else { return };
        let mut ledgers = self.ledgers.lock().unwrap_or_else(PoisonError::into_inner);
        let ledger = ledgers.entry(name.clone()).or_default();
        ledger.writes += 1;
        if status.last_run != ledger.last_run {
            if let Some(run) = &status.last_run {
                ledger.runs += 1;
                ledger.deleted += run.deleted;
                ledger.unmeasured += run.targets.iter().filter(|t| t.deleted.is_none()).count() as u64;
                ledger.not_removed += run.not_removed;
                let mut problems = check_run(run);
                let mine: Vec<&Seeded> = targets.get(&name).map(|t| t.iter().collect()).unwrap_or_default();
                let left = gone(store, &mine);
                // Ready=True after a run says every task the policy covers is gone: nothing adds
                // failed tasks during the test, so what the emulator holds now it held then.
                if purged(policy) && left < mine.len() as u64 {
                    problems.push(format!(
                        "Ready=True with {} of the policy's {} targeted tasks still in the emulator",
                        mine.len() as u64 - left,
                        mine.len()
                    ));
                }
                if ledger.deleted > left {
                    problems.push(format!(
                        "the runs so far claim {} deleted, but only {left} of the policy's targets left the emulator",
                        ledger.deleted
                    ));
                }
                for p in problems {
                    ledger.violations.push(format!("{name} run {}: {p}", ledger.runs));
                }
            }
            ledger.last_run = status.last_run.clone();
        }
        if status.total_deleted != ledger.deleted {
            ledger.violations.push(format!(
                "{name} write {}: totalDeleted {} but the runs seen deleted {} in all",
                ledger.writes, status.total_deleted, ledger.deleted
            ));
        }
    }

    fn report(&self, name: &str) -> (u64, u64, u64, Vec<String>) {
        let ledgers = self.ledgers.lock().unwrap_or_else(PoisonError::into_inner);
        ledgers
            .get(name)
            .map_or((0, 0, 0, Vec::new()), |l| (l.writes, l.runs, l.deleted, l.violations.clone()))
    }

    fn unmeasured(&self, name: &str) -> u64 {
        let ledgers = self.ledgers.lock().unwrap_or_else(PoisonError::into_inner);
        ledgers.get(name).map_or(0, |l| l.unmeasured)
    }

    fn not_removed(&self, name: &str) -> u64 {
        let ledgers = self.ledgers.lock().unwrap_or_else(PoisonError::into_inner);
        ledgers.get(name).map_or(0, |l| l.not_removed)
    }

    fn relists(&self) -> u64 {
        *self.relists.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What one lastRun must satisfy by itself.
fn check_run(run: &RunSummary) -> Vec<String> {
    let mut problems = Vec::new();
    if run.deleted > run.found {
        problems.push(format!("deleted {} > found {}", run.deleted, run.found));
    }
    let sum = |f: fn(&taskreaper::api::status::TargetResult) -> Option<u64>| -> u64 {
        run.targets.iter().filter_map(f).sum()
    };
    if sum(|t| t.found) != run.found {
        problems.push(format!("found {} is not the targets' sum {}", run.found, sum(|t| t.found)));
    }
    if sum(|t| t.deleted) != run.deleted {
        problems.push(format!("deleted {} is not the targets' sum {}", run.deleted, sum(|t| t.deleted)));
    }
    for t in &run.targets {
        if let (Some(found), Some(deleted)) = (t.found, t.deleted) {
            if deleted > found {
                problems.push(format!(
                    "target {}/{}: deleted {deleted} > found {found}",
                    t.project, t.target_index
                ));
            }
            // Nothing is added during these tests, so what was found either left or remains.
            if let Some(remaining) = t.remaining
                && found != deleted + remaining
            {
                problems.push(format!(
                    "target {}/{}: found {found} != deleted {deleted} + remaining {remaining}",
                    t.project, t.target_index
                ));
            }
        }
    }
    let all_measured = run.targets.iter().all(|t| t.remaining.is_some());
    match run.remaining {
        Some(r) if !all_measured => {
            problems.push(format!("remaining {r} although a target was not measured"))
        }
        Some(r) if r != sum(|t| t.remaining) => {
            problems.push(format!("remaining {r} is not the targets' sum {}", sum(|t| t.remaining)))
        }
        None if all_measured => problems.push("remaining absent although every target was measured".into()),
        _ => {}
    }
    problems
}

/// A protection group id (a lowercase UUID, as the CRD requires) from a short hex tag.
fn gid(tag: &str) -> String {
    format!("00000000-0000-4000-8000-{tag:0>12}")
}

fn kps_matching(types: &[KpsOperateType], pattern: &str) -> Target {
    e2e::kps_matching(TaskMatch {
        operate_types: Some(types.to_vec()),
        name_pattern: Some(pattern.into()),
        ..TaskMatch::default()
    })
}

/// Logs of the code under test, shown for failing tests (RUST_LOG overrides the default).
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("taskreaper=info,taskreaper::audit=warn,warn")
    });
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(false).with_test_writer().try_init();
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

// ---------------------------------------------------------------------------------------------
// 1. Chaos across several policies and projects.

/// The calls one run of each chaos policy makes when nothing fails, from the executor's plan
/// (`purge::execute`): per project and service, the lists the targets need (SDRS: the protection
/// groups once, the group-level list when a target needs it, one list per group in scope; KPS:
/// one list), then per target its deletes and the same lists again. Every list fits one page.
fn ideal_calls() -> u64 {
    // all-a (project A): SDRS All over 3 groups: groups + group-level + 3 group lists; the
    // group-level batch and 3 group batches; group-level + 3 group lists again. KPS All: list,
    // delete-all, list.
    let all_a = (1 + 1 + 3) + (1 + 3) + (1 + 3) + (1 + 1 + 1);
    // match-b (project B): SDRS Matching protected_instances: groups + 2 group lists, 10 single
    // deletes, 2 group lists; KPS Matching: list, 12 single deletes, list.
    let match_b = (1 + 2) + 10 + 2 + (1 + 12 + 1);
    // groups-c (project C): SDRS ProtectionGroups [gc1]: list, group batch, list; KPS Matching:
    // list, 10 single deletes, list.
    let groups_c = (1 + 1 + 1) + (1 + 10 + 1);
    all_a + match_b + groups_c
}

fn seed_chaos(store: &Store) -> World {
    let mut w = World::default();
    let (a, b, c) = (Some("all-a"), Some("match-b"), Some("groups-c"));
    // Project A: everything is targeted by SDRS All + KPS All.
    for tag in ["a1", "a2", "a3"] {
        let g = gid(tag);
        w.group(store, PROJECT_A, &g);
        w.jobs(store, PROJECT_A, &format!("a-{tag}"), 4, "protected_instances", "vm-", Some(&g), a);
    }
    w.jobs(store, PROJECT_A, "a-gl", 6, "server_groups", "pg-", None, a);
    w.kps(store, PROJECT_A, "a-kps", 15, "FAILED_UNBIND", "kp-", a);
    // Project B: Matching protected_instances named tmp-*, and KPS FAILED_UNBIND on tmp-* keypairs.
    for tag in ["b1", "b2"] {
        let g = gid(tag);
        w.group(store, PROJECT_B, &g);
        w.jobs(store, PROJECT_B, &format!("b-{tag}-hit"), 5, "protected_instances", "tmp-", Some(&g), b);
        w.jobs(store, PROJECT_B, &format!("b-{tag}-keep"), 3, "protected_instances", "keep-", Some(&g), None);
        w.jobs(store, PROJECT_B, &format!("b-{tag}-rep"), 2, "replications", "tmp-", Some(&g), None);
    }
    w.jobs(store, PROJECT_B, "b-gl", 4, "server_groups", "tmp-", None, None);
    w.kps(store, PROJECT_B, "b-unbind", 12, "FAILED_UNBIND", "tmp-", b);
    w.kps(store, PROJECT_B, "b-unbind-keep", 4, "FAILED_UNBIND", "keep-", None);
    w.kps(store, PROJECT_B, "b-reset", 4, "FAILED_RESET", "tmp-", None);
    // Project C: protection group gc1 only; KPS FAILED_RESET.
    w.group(store, PROJECT_C, &gid("c1"));
    w.group(store, PROJECT_C, &gid("c2"));
    w.jobs(store, PROJECT_C, "c-c1", 8, "replications", "rep-", Some(&gid("c1")), c);
    w.jobs(store, PROJECT_C, "c-c2", 5, "replications", "rep-", Some(&gid("c2")), None);
    w.jobs(store, PROJECT_C, "c-gl", 3, "server_groups", "pg-", None, None);
    w.kps(store, PROJECT_C, "c-reset", 10, "FAILED_RESET", "kp-", c);
    w.kps(store, PROJECT_C, "c-replace", 5, "FAILED_REPLACE", "kp-", None);
    // Project D: no policy names it.
    w.group(store, PROJECT_D, &gid("d1"));
    w.jobs(store, PROJECT_D, "d-d1", 3, "protected_instances", "tmp-", Some(&gid("d1")), None);
    w.jobs(store, PROJECT_D, "d-gl", 3, "server_groups", "tmp-", None, None);
    w.kps(store, PROJECT_D, "d-kps", 5, "FAILED_UNBIND", "tmp-", None);
    w
}

fn chaos_policies(lab: &Lab<'_>) -> Vec<FailedTaskCleanupPolicy> {
    let max = taskreaper::api::policy::DEFAULT_MAX_DELETIONS_PER_RUN;
    vec![
        lab.policy("all-a", &[PROJECT_A], vec![e2e::sdrs_all(), e2e::kps_all()], max),
        lab.policy(
            "match-b",
            &[PROJECT_B],
            vec![
                e2e::sdrs_matching(TaskMatch {
                    resource_types: Some(vec![SdrsResourceType::ProtectedInstances]),
                    name_pattern: Some("^tmp-".into()),
                    ..TaskMatch::default()
                }),
                kps_matching(&[KpsOperateType::FailedUnbind], "^tmp-"),
            ],
            max,
        ),
        lab.policy(
            "groups-c",
            &[PROJECT_C],
            vec![e2e::sdrs_groups(&[&gid("c1")]), kps_matching(&[KpsOperateType::FailedReset], ".")],
            max,
        ),
    ]
}

/// The client's own retries in the chaos test: 3 attempts per call (as the shared e2e fixture;
/// the shipped default is 5, which makes a failed run so rare under these rates that the runs
/// after a failure would go untested), short waits, and a Retry-After honoured up to 250 ms (the
/// client caps it at `max_delay`).
fn chaos_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(250),
        max_total: Duration::from_secs(10),
    }
}

/// Most runs a chaos policy may take to purge everything (the first, scheduled one included).
const MAX_RUNS: usize = 8;
/// Bound on the whole purge under faults, from the policies' creation.
const PURGE_BOUND: Duration = Duration::from_secs(90);
/// Calls made may be at most this many times the ideal. Per attempt, a call fails with about
/// p = 1 - 0.97 * 0.70 * 0.98 = 0.33 (resets, error statuses, HTML pages), so it takes
/// 1 / (1 - p) = 1.5 attempts on average (a DELETE accepted but ignored adds a list and a repeat); a run that still fails is repeated, which lists again
/// (about half of a run's calls are lists). Expected: about 2x; 4x allows for bad luck without
/// allowing, say, retry storms or re-deleting what is gone.
const CALL_FACTOR: u64 = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purges_exactly_the_targets_through_injected_faults() {
    init_tracing();
    let cp = ControlPlane::shared();
    e2e::install(cp).await;

    // The ideal, measured: the same data and policies without faults, one run each.
    let ideal = ideal_calls();
    {
        let lab = Lab::start(cp, "chaos-ideal", Faults::default()).await;
        let world = seed_chaos(lab.store());
        let controller = InProcess::start(cp, &lab.ns, lab.front.ca_pem(), 8, chaos_retry()).await;
        for policy in chaos_policies(&lab) {
            lab.create(&policy).await;
        }
        for policy in chaos_policies(&lab) {
            let name = policy.name_any();
            lab.wait_for(&name, "one clean run that purges everything", Duration::from_secs(60), purged)
                .await;
        }
        let measured = lab.store().calls().total;
        assert_eq!(gone(lab.store(), &world.targeted()), world.targeted().len() as u64);
        assert_eq!(
            measured,
            ideal,
            "without faults the controller made {measured} calls; the plan says {ideal} (calls: {:?})",
            lab.store().calls().by_route
        );
        controller.stop().await;
        lab.emulator.shutdown().await;
    }

    let faults = Faults {
        latency_ms: 50,
        error_rate: 0.30,
        // Two in three injected errors are 503, one in three 429: 20% and 10% of calls.
        error_statuses: vec![503, 503, 429],
        retry_after_secs: 1,
        reset_rate: 0.03,
        malformed_rate: 0.0,
        // On every call, DELETEs included: a 200 whose body is the gateway's HTML page.
        html_rate: 0.02,
        // A DELETE answered 2xx that deleted nothing.
        ignore_delete_rate: 0.10,
        fail_next: Vec::new(),
        hostile_ids: false,
    };
    let lab = Lab::start(cp, "chaos", faults).await;
    let world = seed_chaos(lab.store());
    let policies = chaos_policies(&lab);
    let targets: BTreeMap<String, Vec<Seeded>> = policies
        .iter()
        .map(|p| (p.name_any(), world.targeted_by(&p.name_any()).into_iter().cloned().collect()))
        .collect();
    let (watch, watch_task) = Watch::start(lab.policies(), lab.store().clone(), targets.clone());
    let controller = InProcess::start(cp, &lab.ns, lab.front.ca_pem(), 8, chaos_retry()).await;
    let started = Instant::now();
    for policy in &policies {
        lab.create(policy).await;
    }

    let mut runs_needed = BTreeMap::new();
    for policy in &policies {
        let name = policy.name_any();
        let mut latest = lab.wait_run_finished(&name, None, PURGE_BOUND).await;
        let mut runs = 1;
        while !purged(&latest) {
            controller.assert_running();
            assert!(
                runs < MAX_RUNS,
                "{name} still not purged after {runs} runs:\n{}",
                e2e::status_yaml(&latest)
            );
            let left = PURGE_BOUND.saturating_sub(started.elapsed());
            assert!(!left.is_zero(), "{name} not purged within {PURGE_BOUND:?}");
            runs += 1;
            let request = format!("chaos-{runs}");
            lab.request_run(&name, &request).await;
            latest = lab.wait_run_finished(&name, Some(&request), left).await;
        }
        runs_needed.insert(name, runs);
    }
    let took = started.elapsed();
    controller.assert_running();

    // Every targeted task is gone; nothing else was touched.
    let targeted = world.targeted();
    let left: Vec<String> = {
        let now = present(lab.store());
        targeted.iter().filter(|t| is_present(&now, t)).map(|t| format!("{}/{}", t.project, t.id)).collect()
    };
    assert!(left.is_empty(), "targeted tasks left after every policy reported Purged: {left:?}");
    let untargeted_deleted = assert_untargeted_untouched(&lab.front, &world, lab.store());

    // Status truth, as watched at every write.
    let mut violations = Vec::new();
    let mut lines = Vec::new();
    for policy in &policies {
        let name = policy.name_any();
        let final_status =
            lab.policies().get(&name).await.expect("reading the policy").status.unwrap_or_default();
        // Wait until the watch has seen the final write.
        e2e::eventually(&format!("the watch to see {name}'s final status"), Duration::from_secs(10), || {
            let (_, _, deleted, _) = watch.report(&name);
            let total = final_status.total_deleted;
            async move {
                if deleted == total { Ok(()) } else { Err(format!("watched {deleted}, status {total}")) }
            }
        })
        .await;
        let (writes, runs, deleted, problems) = watch.report(&name);
        let actually = gone(lab.store(), &targets[&name].iter().collect::<Vec<_>>());
        violations.extend(problems);
        if deleted > actually {
            violations
                .push(format!("{name}: statuses claim {deleted} deleted, {actually} left the emulator"));
        }
        lines.push(format!(
            "  {name}: {} targeted, {actually} purged; {runs} runs seen in {writes} status writes \
             ({} runs needed); totalDeleted {} = sum of lastRun.deleted {deleted}; {} target rows \
             unmeasured (a list failed), whose deletions no status counts; {} not removed after an \
             accepted DELETE",
            targets[&name].len(),
            runs_needed[&name],
            final_status.total_deleted,
            watch.unmeasured(&name),
            watch.not_removed(&name),
        ));
    }
    watch_task.abort();

    let calls = lab.store().calls();
    println!(
        "chaos: seed {}: injected on every call 20% 503, 10% 429 (Retry-After 1 s), 3% resets, 2% 200 \
         with an HTML page, 50 ms latency; 10% of DELETEs answered 2xx without deleting\n\
         chaos: {} tasks targeted, {} purged in {} (bound {PURGE_BOUND:?}); {} untargeted, {untargeted_deleted} \
         of them deleted or named by a DELETE\n{}\n\
         chaos: calls made {} vs ideal {ideal} ({:.2}x; bound {CALL_FACTOR}x); DELETE requests {}; \
         watch relists {}",
        chaos_seed(),
        targeted.len(),
        gone(lab.store(), &targeted),
        secs(took),
        world.untargeted().len(),
        lines.join("\n"),
        calls.total,
        calls.total as f64 / ideal as f64,
        lab.front.deletes().len(),
        watch.relists(),
    );
    assert!(violations.is_empty(), "the status did not tell the truth:\n{}", violations.join("\n"));
    assert_eq!(watch.relists(), 0, "the status watch had to relist, so some writes may be unchecked");
    assert!(
        calls.total <= CALL_FACTOR * ideal,
        "{} calls made, more than {CALL_FACTOR} x the ideal {ideal}: {:?}",
        calls.total,
        calls.by_route
    );
    controller.stop().await;
    lab.emulator.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 2. The API server stopped and restarted mid-run.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_survives_the_api_server_going_away() {
    init_tracing();
    let cp = ControlPlane::start();
    e2e::install_on(&cp).await;
    // Slow calls, one at a time, so the run lasts a few seconds.
    let lab = Lab::start(&cp, "chaos-apiserver", Faults { latency_ms: 150, ..Faults::default() }).await;
    let mut world = World::default();
    let store = lab.store().clone();
    world.group(&store, PROJECT_A, &gid("a1"));
    world.group(&store, PROJECT_A, &gid("a2"));
    world.jobs(&store, PROJECT_A, "r-a1", 4, "replications", "rep-", Some(&gid("a1")), Some("restart"));
    world.jobs(&store, PROJECT_A, "r-a2", 3, "replications", "rep-", Some(&gid("a2")), None);
    world.kps(&store, PROJECT_A, "r-unbind", 20, "FAILED_UNBIND", "tmp-", Some("restart"));
    world.kps(&store, PROJECT_A, "r-reset", 5, "FAILED_RESET", "tmp-", None);
    let targeted = world.targeted();
    let single_ids: BTreeSet<String> =
        targeted.iter().filter(|t| t.kind == Kind::Kps).map(|t| t.id.clone()).collect();

    let controller = InProcess::start(&cp, &lab.ns, lab.front.ca_pem(), 1, RetryPolicy::default()).await;
    let policy = lab.policy(
        "restart",
        &[PROJECT_A],
        vec![e2e::sdrs_groups(&[&gid("a1")]), kps_matching(&[KpsOperateType::FailedUnbind], "^tmp-")],
        taskreaper::api::policy::DEFAULT_MAX_DELETIONS_PER_RUN,
    );
    lab.create(&policy).await;

    // Mid-run: some deletes have landed, not all.
    e2e::eventually("the run to be under way (4 targeted tasks gone)", Duration::from_secs(60), || {
        let n = gone(&store, &targeted);
        async move { if n >= 4 { Ok(()) } else { Err(format!("{n} gone")) } }
    })
    .await;
    let gone_at_stop = gone(&store, &targeted);
    let errors_before = controller.metrics.reconcile_errors.get();
    tokio::task::block_in_place(|| cp.stop_apiserver());
    let stopped = Instant::now();
    // The run goes on against the cloud; its closing status write then fails, which the controller
    // counts as a reconcile error. Keep the API server down until then.
    e2e::eventually(
        "the run's closing status write to fail against the stopped API server",
        Duration::from_secs(60),
        || {
            let errors = controller.metrics.reconcile_errors.get();
            async move {
                if errors > errors_before { Ok(()) } else { Err(format!("{errors} reconcile errors")) }
            }
        },
    )
    .await;
    let gone_while_down = gone(&store, &targeted);
    let down_for = stopped.elapsed();
    let starting = Instant::now();
    tokio::task::block_in_place(|| cp.start_apiserver());
    let restarted = Instant::now();
    let start_took = starting.elapsed();
    let end = lab
        .wait_for(
            "restart",
            "Ready=True with nothing left after the restart",
            Duration::from_secs(90),
            purged,
        )
        .await;
    let recovery = restarted.elapsed();
    controller.assert_running();

    let status = end.status.clone().unwrap_or_default();
    let deletes: Vec<Delete> = lab.front.deletes().iter().map(|r| classify(&r.path)).collect();
    let mut per_id: BTreeMap<String, u64> = BTreeMap::new();
    for d in &deletes {
        if let Delete::KpsOne { id, .. } = d {
            *per_id.entry(id.clone()).or_default() += 1;
        }
    }
    let single_deletes: u64 = per_id.values().sum();
    let group_batches = deletes.iter().filter(|d| matches!(d, Delete::SdrsGroup { .. })).count();
    let purged_now = gone(&store, &targeted);
    // A run lists KPS before deleting and, when it deleted anything, after; a run that finds
    // nothing lists once. One run plus one idempotent repeat: 3.
    let kps_lists = store.calls().project_route(PROJECT_A, "GET", emulator::KPS_TASKS);
    let untargeted_deleted = assert_untargeted_untouched(&lab.front, &world, &store);
    println!(
        "apiserver: {} targeted ({} single deletes, 1 group batch), {gone_at_stop} gone when kube-apiserver \
         was killed, {gone_while_down} while it was down ({}); kube-apiserver took {} to be ready again; recovery restart->Ready {}\n\
         apiserver: DELETE requests: {single_deletes} single (ideal {}, most for one id {}), {group_batches} \
         group batches (ideal 1); purged {purged_now}; untargeted deleted {untargeted_deleted}\n\
         apiserver: KPS lists {kps_lists} (2 = one run, 3 = one run and a repeat that found nothing); final status: Ready {:?}, lastRun found {} \
         deleted {} remaining {:?}, totalDeleted {}",
        targeted.len(),
        single_ids.len(),
        secs(down_for),
        secs(start_took),
        secs(recovery),
        single_ids.len(),
        per_id.values().max().copied().unwrap_or(0),
        e2e::condition(&end, ConditionType::Ready).map(|c| (&c.status, &c.reason)),
        status.last_run.as_ref().map_or(0, |r| r.found),
        status.last_run.as_ref().map_or(0, |r| r.deleted),
        status.last_run.as_ref().and_then(|r| r.remaining),
        status.total_deleted,
    );
    assert_eq!(purged_now, targeted.len() as u64, "every targeted task is gone");
    assert!(per_id.keys().all(|id| single_ids.contains(id)), "single DELETEs named only targeted ids");
    // One idempotent repeat at most: no id deleted more than twice, no more than twice the ideal.
    assert!(per_id.values().all(|n| *n <= 2), "an id was DELETEd more than twice: {per_id:?}");
    assert!(single_deletes <= 2 * single_ids.len() as u64 && group_batches <= 2, "{deletes:?}");
    controller.stop().await;
    // The run's result must not be lost: the status counts what left the emulator.
    assert_eq!(
        status.total_deleted,
        purged_now,
        "after the API server came back the policy is Ready but totalDeleted {} does not match the {} \
         tasks that left the emulator (the run whose closing write failed was repeated from an \
         unchanged status, and the repeat found nothing); status:\n{}",
        status.total_deleted,
        purged_now,
        e2e::status_yaml(&end)
    );
    lab.emulator.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 3. The controller SIGKILLed mid-run and started again.

fn start_binary(lab: &Lab<'_>, ca: &std::path::Path, log: &std::path::Path) -> tokio::process::Child {
    let log = std::fs::File::create(log).expect("creating the controller log");
    let log2 = log.try_clone().expect("duplicating a file handle");
    common::binary::taskreaper()
        .args(["run", "--metrics-addr", "127.0.0.1:0", "--concurrency", "1", "--requests-per-second", "100"])
        .args(["--namespace", &lab.ns, "--endpoint-allowlist", "127.0.0.1"])
        .arg("--ca-bundle")
        .arg(ca)
        .env("KUBECONFIG", lab.cp.kubeconfig_path(Identity::Controller))
        .env("POD_NAME", "chaos-binary")
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log2))
        .spawn()
        .expect(common::binary::START_FAILED)
}

/// maxDeletionsPerRun of the budget policy, and how many tasks it matches.
const BUDGET: u32 = 10;
const MATCHING: usize = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_controller_resumes_within_the_run_budget() {
    init_tracing();
    let cp = ControlPlane::shared();
    e2e::install(cp).await;
    let lab = Lab::start(cp, "chaos-sigkill", Faults { latency_ms: 300, ..Faults::default() }).await;
    let store = lab.store().clone();
    let mut world = World::default();
    world.kps(&store, PROJECT_B, "k-unbind", MATCHING, "FAILED_UNBIND", "tmp-", Some("budget"));
    world.kps(&store, PROJECT_B, "k-reset", 6, "FAILED_RESET", "tmp-", None);
    world.kps(&store, PROJECT_B, "k-keep", 4, "FAILED_UNBIND", "keep-", None);
    world.kps(&store, PROJECT_D, "k-other", 5, "FAILED_UNBIND", "tmp-", None);
    let targeted = world.targeted();

    let dir = tempfile::tempdir().expect("temp dir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, lab.front.ca_pem()).expect("writing the CA");
    let mut first = start_binary(&lab, &ca, &dir.path().join("first.log"));
    lab.create(&lab.policy(
        "budget",
        &[PROJECT_B],
        vec![kps_matching(&[KpsOperateType::FailedUnbind], "^tmp-")],
        BUDGET,
    ))
    .await;

    // Mid-run: 3 of the run's 10 single deletes have landed (one at a time, 300 ms each).
    e2e::eventually("the run to be under way (3 deletes landed)", Duration::from_secs(60), || {
        let n = gone(&store, &targeted);
        async move { if n >= 3 { Ok(()) } else { Err(format!("{n} gone")) } }
    })
    .await;
    first.kill().await.expect("SIGKILL the controller");
    let status = first.wait().await.expect("reaping the controller");
    let gone_at_kill = gone(&store, &targeted);
    let during = lab.policies().get("budget").await.expect("reading the policy");

    let mut second = start_binary(&lab, &ca, &dir.path().join("second.log"));
    let restarted = Instant::now();
    let after = lab
        .wait_for("budget", "a finished run after the restart", Duration::from_secs(60), |p| {
            e2e::condition(p, ConditionType::Ready).is_some_and(|c| c.status == "True")
                && e2e::condition(p, ConditionType::Reconciling).is_some_and(|c| c.status == "False")
                && p.status
                    .as_ref()
                    .and_then(|s| s.last_run.as_ref())
                    .is_some_and(|r| r.completion_time.is_some())
        })
        .await;
    let recovery = restarted.elapsed();
    // What landed for the scheduled run: before the kill, in flight at the kill, and after the
    // restart; no manual request has been made yet.
    let landed = gone(&store, &targeted);
    let run = after.status.as_ref().and_then(|s| s.last_run.clone()).unwrap_or_default();
    let total_deleted = after.status.as_ref().map_or(0, |s| s.total_deleted);
    let single_requests_scheduled = lab.front.deletes().len();

    // Purge the rest with manual runs (each has a whole budget), without the latency.
    store.set_faults(Faults::default());
    let mut manual = 0;
    while gone(&store, &targeted) < targeted.len() as u64 {
        manual += 1;
        assert!(manual <= 4, "the budget policy still has targets left after {manual} manual runs");
        let request = format!("after-kill-{manual}");
        lab.request_run("budget", &request).await;
        lab.wait_run_finished("budget", Some(&request), Duration::from_secs(60)).await;
    }
    let untargeted_deleted = assert_untargeted_untouched(&lab.front, &world, &store);
    assert!(second.try_wait().expect("polling the controller").is_none(), "the restarted controller exited");
    second.kill().await.expect("stopping the controller");

    println!(
        "sigkill: {} targeted (maxDeletionsPerRun {BUDGET} over {MATCHING} matching), SIGKILL ({status}) after \
         {gone_at_kill} landed; status at the kill: Reconciling {:?}, lastScheduleTime {:?}\n\
         sigkill: recovery restart->Ready {}; the scheduled run landed {landed} single deletes in all \
         ({single_requests_scheduled} DELETE requests); lastRun after the restart: found {} deleted {} \
         budgetUsed {}; totalDeleted {total_deleted}\n\
         sigkill: {manual} manual runs purged the rest: {} of {} purged; untargeted deleted {untargeted_deleted}",
        targeted.len(),
        e2e::condition(&during, ConditionType::Reconciling).map(|c| (&c.status, &c.reason)),
        during.status.as_ref().and_then(|s| s.last_schedule_time.as_ref()).map(|t| t.0),
        secs(recovery),
        run.found,
        run.deleted,
        run.budget_used,
        gone(&store, &targeted),
        targeted.len(),
    );
    for log in ["first.log", "second.log"] {
        let text = std::fs::read_to_string(dir.path().join(log)).expect("reading a controller log");
        assert!(!text.contains("panicked"), "the controller panicked ({log}):\n{text}");
    }
    assert!(
        landed <= u64::from(BUDGET),
        "the deletion budget did not hold across the SIGKILL: maxDeletionsPerRun is {BUDGET}, but {landed} \
         single deletes landed for the one scheduled run ({gone_at_kill} before the kill, {} after the \
         restart), while lastRun.budgetUsed says {}. The run that was killed left only \
         Reconciling=True/Running in the status (no lastScheduleTime, no budgetUsed), so the restarted \
         controller ran the same scheduled run again with the whole budget.",
        landed - gone_at_kill,
        run.budget_used
    );
    lab.emulator.shutdown().await;
}
