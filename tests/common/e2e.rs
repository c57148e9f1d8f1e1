//! End-to-end fixtures for the controller: the shipped CRD and ClusterRole installed once on the
//! shared control plane (and the shipped leader-election Role, per namespace, where a test needs
//! it), then per test a namespace, an HTTPS emulator and an in-process controller (running as
//! `taskreaper-controller`) stopped when the test ends. Also policy builders, waits that print the
//! current status on timeout, Event listing, emulator reads, the manual trigger, and every log line
//! of the process captured so tests can prove no secret is ever shown.
//! Does Kubernetes, network and process I/O.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding, RoleRef, Subject};
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use taskreaper::api::{
    ConditionType, CredentialsRef, Endpoints, FailedTaskCleanupPolicy, FailedTaskCleanupPolicySpec, Project,
    Schedule, Scope, Service, Target, TaskMatch,
};
use taskreaper::cloud::credentials::Secret as SecretValue;
use taskreaper::cloud::{Allowlist, EndpointPolicy, HttpConfig, RateLimit, RetryPolicy};
use taskreaper::controller::reconcile::REQUESTED_AT;
use taskreaper::controller::{ControllerError, Settings};
use taskreaper::emulator::{self, CallCounts, Emulator, Seed};
use taskreaper::observability::{Health, Metrics};
use tokio::sync::{OnceCell, oneshot};
use tokio::task::JoinHandle;

use super::control_plane::{ControlPlane, FIELD_MANAGER, Identity};

/// The access key the emulator accepts.
pub const AK: &str = "E2EACCESSKEYID00000001";
/// Its secret key; distinctive so tests can prove it never shows in status or events.
pub const SK: &str = "e2e-sk-never-shown-6d1f0c9a7b2e4f58";
/// A security token for temporary AK/SK credentials; distinctive, never to be shown.
pub const SECURITY_TOKEN: &str = "e2e-st-never-shown-91c4e7a05d3b";
/// An IAM token the emulator accepts; distinctive, never to be shown.
pub const AUTH_TOKEN: &str = "e2e-token-never-shown-3f7a2c9e10d4";
/// The Secret every policy references.
pub const SECRET_NAME: &str = "hwcloud-credentials";
/// Project ids (32 lowercase hex).
pub const PROJECT_A: &str = "0605767b5c00d4bb2f10c01a1e3b3a7e";
pub const PROJECT_B: &str = "1a2b3c4d5e6f708192a3b4c5d6e7f809";
pub const PROJECT_C: &str = "9f8e7d6c5b4a39281706f5e4d3c2b1a0";

/// How long a wait lasts before it fails with the current status.
pub const WAIT: Duration = Duration::from_secs(60);
/// How long a created or fixed Secret may take to be picked up: the controller reads a Secret it
/// waits for again within `SECRET_RETRY_MAX` (60 s), plus the run itself.
pub const SECRET_PICKUP: Duration =
    Duration::from_secs(taskreaper::controller::pipeline::SECRET_RETRY_MAX.as_secs() + 30);
const POLL: Duration = Duration::from_millis(100);

const CRD_YAML: &str = include_str!("../../crds/failedtaskcleanuppolicies.taskreaper.io.yaml");
const RBAC_YAML: &str = include_str!("../../deploy/base/rbac.yaml");
/// Name of the ClusterRoleBinding that grants the shipped ClusterRole to the test identity.
const BINDING_NAME: &str = "taskreaper-controller-e2e";
/// Name of the shipped leader-election Role.
pub const LEASE_ROLE: &str = "taskreaper-leader-election";

static INSTALLED: OnceCell<()> = OnceCell::const_new();

/// Installs the CRD and grants `taskreaper-controller` exactly the ClusterRole of
/// `deploy/base/rbac.yaml`, once per test binary, and waits until the grant is in force.
pub async fn install(cp: &'static ControlPlane) {
    INSTALLED.get_or_init(|| install_on(cp)).await;
}

/// [`install`] for a private control plane ([`ControlPlane::start`]): installs the CRD and the
/// shipped ClusterRole with its binding to `taskreaper-controller` every time it is called, and
/// waits until the grant is in force.
pub async fn install_on(cp: &ControlPlane) {
    cp.apply_crd(CRD_YAML).await;
    let admin = cp.admin_client().await;
    let role = shipped_cluster_role();
    let role_name = role.name_any();
    let apply = PatchParams::apply(FIELD_MANAGER).force();
    Api::<ClusterRole>::all(admin.clone())
        .patch(&role_name, &apply, &Patch::Apply(&role))
        .await
        .unwrap_or_else(|e| panic!("applying ClusterRole {role_name} from deploy/base/rbac.yaml: {e}"));
    let binding = ClusterRoleBinding {
        metadata: ObjectMeta { name: Some(BINDING_NAME.into()), ..ObjectMeta::default() },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: role_name.clone(),
        },
        subjects: Some(vec![controller_subject()]),
    };
    Api::<ClusterRoleBinding>::all(admin)
        .patch(BINDING_NAME, &apply, &Patch::Apply(&binding))
        .await
        .unwrap_or_else(|e| panic!("applying ClusterRoleBinding {BINDING_NAME}: {e}"));
    wait_for_grant(cp).await;
}

/// The documents of `kind` in `deploy/base/rbac.yaml`, as shipped.
pub fn shipped<T: serde::de::DeserializeOwned>(kind: &str) -> Vec<T> {
    let mut found = Vec::new();
    let documents: Vec<serde_json::Value> = serde_saphyr::from_multiple(RBAC_YAML)
        .unwrap_or_else(|e| panic!("deploy/base/rbac.yaml does not parse: {e}"));
    for value in documents {
        if value.get("kind").and_then(serde_json::Value::as_str) == Some(kind) {
            found.push(
                serde_json::from_value::<T>(value)
                    .unwrap_or_else(|e| panic!("a {kind} in deploy/base/rbac.yaml does not parse: {e}")),
            );
        }
    }
    found
}

/// The ClusterRole document of `deploy/base/rbac.yaml`, as shipped.
pub fn shipped_cluster_role() -> ClusterRole {
    let mut roles = shipped::<ClusterRole>("ClusterRole");
    assert_eq!(roles.len(), 1, "deploy/base/rbac.yaml must hold exactly one ClusterRole");
    roles.remove(0)
}

/// The leader-election Role of `deploy/base/rbac.yaml`, as shipped.
pub fn shipped_lease_role() -> Role {
    let roles = shipped::<Role>("Role");
    roles
        .into_iter()
        .find(|r| r.name_any() == LEASE_ROLE)
        .unwrap_or_else(|| panic!("deploy/base/rbac.yaml must hold the Role {LEASE_ROLE}"))
}

/// Grants `taskreaper-controller` the shipped leader-election Role in `namespace` (as the install
/// does in the controller's own namespace), and waits until the grant is in force.
pub async fn grant_leases(cp: &ControlPlane, namespace: &str) {
    let admin = cp.admin_client().await;
    let apply = PatchParams::apply(FIELD_MANAGER).force();
    let mut role = shipped_lease_role();
    role.metadata.namespace = Some(namespace.into());
    role.metadata.resource_version = None;
    Api::<Role>::namespaced(admin.clone(), namespace)
        .patch(LEASE_ROLE, &apply, &Patch::Apply(&role))
        .await
        .unwrap_or_else(|e| panic!("applying the shipped Role {LEASE_ROLE} in {namespace}: {e}"));
    let binding = RoleBinding {
        metadata: ObjectMeta {
            name: Some(LEASE_ROLE.into()),
            namespace: Some(namespace.into()),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: LEASE_ROLE.into(),
        },
        subjects: Some(vec![controller_subject()]),
    };
    Api::<RoleBinding>::namespaced(admin, namespace)
        .patch(LEASE_ROLE, &apply, &Patch::Apply(&binding))
        .await
        .unwrap_or_else(|e| panic!("applying RoleBinding {LEASE_ROLE} in {namespace}: {e}"));
    let leases =
        Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(cp.controller_client().await, namespace);
    eventually("the shipped lease Role to take effect", Duration::from_secs(30), || async {
        match leases.get_opt("taskreaper-leader").await {
            Ok(_) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
}

/// The test's controller identity as an RBAC subject.
pub fn controller_subject() -> Subject {
    Subject {
        api_group: Some("rbac.authorization.k8s.io".into()),
        kind: "User".into(),
        name: Identity::Controller.user().into(),
        ..Subject::default()
    }
}

/// RBAC changes reach the authorizer asynchronously: waits until the controller identity may list
/// policies everywhere and read a Secret (a missing one answers 404, not 403).
async fn wait_for_grant(cp: &ControlPlane) {
    let client = cp.controller_client().await;
    let policies = Api::<FailedTaskCleanupPolicy>::all(client.clone());
    let secrets = Api::<Secret>::namespaced(client, "default");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let lp = ListParams::default().limit(1);
        let result = match policies.list(&lp).await {
            Ok(_) => secrets.get_opt("taskreaper-e2e-grant-probe").await.map(|_| ()),
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => return,
            Err(e) if Instant::now() > deadline => {
                panic!("the shipped ClusterRole did not take effect for taskreaper-controller: {e}")
            }
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// Everything the process logged through `tracing`, for [`captured_logs`].
static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// Writes into [`LOGS`].
struct Capture;

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every log line of this test process so far (the in-process controller, the emulator, kube and
/// the HTTP stacks: taskreaper at TRACE, everything else at DEBUG), whatever RUST_LOG says.
pub fn captured_logs() -> String {
    String::from_utf8_lossy(&LOGS.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
}

/// Fails when any of `needles` occurs in the captured logs; `what` names them.
pub fn assert_not_logged(what: &str, needles: &[String]) {
    let logs = captured_logs();
    assert!(!logs.is_empty(), "no logs were captured: the capture layer is not installed");
    for needle in needles.iter().filter(|n| !n.is_empty()) {
        if let Some(at) = logs.find(needle.as_str()) {
            let line_start = logs[..at].rfind('\n').map_or(0, |i| i + 1);
            let line_end = logs[at..].find('\n').map_or(logs.len(), |i| at + i);
            panic!("{what} shows in the logs:\n{}", &logs[line_start..line_end]);
        }
    }
}

/// Logs of the code under test, shown for failing tests (RUST_LOG overrides the default).
/// Besides, every line at the capture level goes to [`captured_logs`].
pub fn init_tracing() {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("taskreaper=info,taskreaper::audit=warn,warn")
    });
    let shown = tracing_subscriber::fmt::layer().with_ansi(false).with_test_writer().with_filter(filter);
    let captured = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(|| Capture)
        .with_filter(tracing_subscriber::EnvFilter::new("taskreaper=trace,debug"));
    let _ = tracing_subscriber::registry().with(shown).with(captured).try_init();
}

/// An in-process controller; stopped by [`RunningController::stop`], aborted when dropped.
pub struct RunningController {
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ControllerError>>>,
}

impl RunningController {
    /// Starts `serve` as `taskreaper-controller`, watching `namespace` only, trusting the
    /// emulator's CA and allowing only 127.0.0.1 as an endpoint.
    pub async fn start(cp: &ControlPlane, namespace: &str, emulator: &Emulator) -> RunningController {
        let client = cp.controller_client().await;
        RunningController::start_watching(client, &[namespace], emulator).await
    }

    /// Starts `serve` with `client`, watching `namespaces` (all when empty), trusting the
    /// emulator's CA and allowing only 127.0.0.1 as an endpoint.
    pub async fn start_watching(
        client: Client,
        namespaces: &[&str],
        emulator: &Emulator,
    ) -> RunningController {
        RunningController::start_with(client, namespaces, emulator, |_| {}).await
    }

    /// [`RunningController::start_watching`] with settings changed by `tweak` first.
    pub async fn start_with(
        client: Client,
        namespaces: &[&str],
        emulator: &Emulator,
        tweak: impl FnOnce(&mut Settings),
    ) -> RunningController {
        let ca = emulator.ca_pem().expect("the e2e emulator serves HTTPS").as_bytes().to_vec();
        let roomy = std::num::NonZeroU32::new(1000).expect("non-zero");
        let settings = Settings {
            namespaces: namespaces.iter().map(|ns| (*ns).to_string()).collect(),
            label_selector: None,
            http: HttpConfig {
                max_in_flight: 8,
                connect_timeout: Duration::from_secs(2),
                request_timeout: Duration::from_secs(5),
                ca_bundle_pem: Some(ca),
                endpoints: EndpointPolicy {
                    allowlist: Allowlist::parse(["127.0.0.1"]).expect("allowlist pattern"),
                    allow_http: false,
                },
                retry: RetryPolicy {
                    max_attempts: 3,
                    base_delay: Duration::from_millis(5),
                    max_delay: Duration::from_millis(20),
                    max_total: Duration::from_secs(5),
                },
                ..HttpConfig::default()
            },
            rate_limit: RateLimit { per_second: roomy, burst: roomy }.into(),
            instance: None,
            max_concurrent_reconciles: 32,
            workload_identity: None,
            iam_endpoint: Some(emulator.url()),
        };
        let mut settings = settings;
        tweak(&mut settings);
        let metrics = Arc::new(Metrics::default());
        let health = Arc::new(Health::default());
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let task = tokio::spawn(taskreaper::controller::serve(
            client,
            settings,
            metrics.clone(),
            health.clone(),
            shutdown,
        ));
        let controller = RunningController { metrics, health, stop: Some(stop), task: Some(task) };
        controller.wait_synced().await;
        controller
    }

    async fn wait_synced(&self) {
        let deadline = Instant::now() + WAIT;
        while !self.health.is_ready() {
            if self.task.as_ref().is_some_and(JoinHandle::is_finished) {
                panic!("the controller stopped before it became ready");
            }
            assert!(Instant::now() < deadline, "the controller did not become ready within {WAIT:?}");
            tokio::time::sleep(POLL).await;
        }
    }

    /// Status writes so far.
    pub fn status_writes(&self) -> u64 {
        self.metrics.status_writes.get()
    }

    /// Reconciles so far.
    pub fn reconciles(&self) -> u64 {
        self.metrics.reconciles.get()
    }

    /// Asks the controller to stop and checks it returned cleanly.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            match tokio::time::timeout(Duration::from_secs(30), task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => panic!("the controller failed: {e}"),
                Ok(Err(e)) => panic!("the controller task failed: {e}"),
                Err(_) => panic!("the controller did not stop within 30s of the shutdown signal"),
            }
        }
    }
}

impl Drop for RunningController {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// One test's world: a namespace on the shared control plane, an emulator and a controller.
pub struct Env {
    pub cp: &'static ControlPlane,
    pub ns: String,
    pub admin: Client,
    pub emulator: Emulator,
    controller: Option<RunningController>,
}

impl Env {
    /// A fresh namespace, an HTTPS emulator accepting [`AK`]/[`SK`] seeded with `seed`, and a
    /// controller watching the namespace. No Secret exists yet.
    pub async fn start(prefix: &str, seed: Seed) -> Env {
        let mut env = Env::without_controller(prefix, seed).await;
        env.controller = Some(RunningController::start(env.cp, &env.ns, &env.emulator).await);
        env
    }

    /// [`Env::start`] without the in-process controller, for tests that run the binary.
    pub async fn without_controller(prefix: &str, seed: Seed) -> Env {
        init_tracing();
        let cp = ControlPlane::shared();
        install(cp).await;
        let ns = cp.new_namespace(prefix).await;
        let config = emulator::Config {
            access_keys: BTreeMap::from([(AK.to_string(), SecretValue::new(SK))]),
            auth_tokens: vec![SecretValue::new(AUTH_TOKEN)],
            tls: true,
            ..emulator::Config::default()
        };
        let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let emulator =
            Emulator::start(loopback, config, seed).await.expect("the emulator starts on loopback");
        let admin = cp.admin_client().await;
        Env { cp, ns, admin, emulator, controller: None }
    }

    /// [`Env::start`] plus the Secret with the right keys.
    pub async fn with_credentials(prefix: &str, seed: Seed) -> Env {
        let env = Env::start(prefix, seed).await;
        env.create_secret(AK, SK).await;
        env
    }

    /// Stops the controller cleanly, then the emulator.
    pub async fn finish(self) {
        if let Some(controller) = self.controller {
            controller.stop().await;
        }
        self.emulator.shutdown().await;
    }

    /// The in-process controller.
    pub fn controller(&self) -> &RunningController {
        self.controller.as_ref().expect("this Env runs an in-process controller")
    }

    pub fn policies(&self) -> Api<FailedTaskCleanupPolicy> {
        Api::namespaced(self.admin.clone(), &self.ns)
    }

    pub fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.admin.clone(), &self.ns)
    }

    /// Creates [`SECRET_NAME`] with AK/SK credentials.
    pub async fn create_secret(&self, access_key: &str, secret_key: &str) {
        self.create_secret_with(&[("accessKeyId", access_key), ("secretAccessKey", secret_key)]).await;
    }

    /// Creates [`SECRET_NAME`] holding these keys and values.
    pub async fn create_secret_with(&self, data: &[(&str, &str)]) {
        let secret = Secret {
            metadata: ObjectMeta { name: Some(SECRET_NAME.into()), ..ObjectMeta::default() },
            data: Some(
                data.iter().map(|(k, v)| ((*k).to_string(), ByteString(v.as_bytes().to_vec()))).collect(),
            ),
            ..Secret::default()
        };
        self.secrets()
            .create(&PostParams::default(), &secret)
            .await
            .expect("creating the credentials Secret");
    }

    /// Replaces the secret key in [`SECRET_NAME`].
    pub async fn set_secret_key(&self, secret_key: &str) {
        let patch = json!({"stringData": {"secretAccessKey": secret_key}});
        self.secrets()
            .patch(SECRET_NAME, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("updating the credentials Secret");
    }

    /// Sets a label on the policy, which triggers a reconcile without changing its spec.
    pub async fn touch(&self, name: &str, value: &str) {
        let patch = json!({"metadata": {"labels": {"e2e.taskreaper.io/touch": value}}});
        self.policies()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap_or_else(|e| panic!("labelling policy {name}: {e}"));
    }

    /// A policy over `projects` (default region cn-north-4) with both endpoints pointed at the
    /// emulator, an hourly schedule and the given targets.
    pub fn policy(&self, name: &str, projects: &[&str], targets: Vec<Target>) -> FailedTaskCleanupPolicy {
        let max = taskreaper::api::policy::DEFAULT_MAX_DELETIONS_PER_RUN;
        policy_at(&self.ns, name, &self.emulator.url(), projects, targets, max)
    }

    /// Creates a policy (through admission, as admin).
    pub async fn create(&self, policy: &FailedTaskCleanupPolicy) -> FailedTaskCleanupPolicy {
        self.policies()
            .create(&PostParams::default(), policy)
            .await
            .unwrap_or_else(|e| panic!("creating policy {}: {e}", policy.name_any()))
    }

    pub async fn get(&self, name: &str) -> FailedTaskCleanupPolicy {
        self.policies().get(name).await.unwrap_or_else(|e| panic!("reading policy {name}: {e}"))
    }

    /// Merge-patches a policy's spec.
    pub async fn patch_spec(&self, name: &str, spec: serde_json::Value) -> FailedTaskCleanupPolicy {
        self.policies()
            .patch(name, &PatchParams::default(), &Patch::Merge(&json!({ "spec": spec })))
            .await
            .unwrap_or_else(|e| panic!("patching the spec of {name}: {e}"))
    }

    /// Sets the `taskreaper.io/requested-at` annotation (and a label, so that the object changes
    /// even when the annotation already holds `value`).
    pub async fn request_run(&self, name: &str, value: &str, touch: &str) {
        let patch = json!({"metadata": {
            "annotations": { REQUESTED_AT: value },
            "labels": { "e2e.taskreaper.io/touch": touch },
        }});
        self.policies()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap_or_else(|e| panic!("setting {REQUESTED_AT} on {name}: {e}"));
    }

    pub async fn delete(&self, name: &str) {
        self.policies()
            .delete(name, &DeleteParams::default())
            .await
            .unwrap_or_else(|e| panic!("deleting policy {name}: {e}"));
    }

    /// Polls the policy until `done` holds; on timeout fails with `what` and the current status.
    pub async fn wait_for(
        &self,
        name: &str,
        what: &str,
        done: impl Fn(&FailedTaskCleanupPolicy) -> bool,
    ) -> FailedTaskCleanupPolicy {
        self.wait_for_within(name, what, WAIT, done).await
    }

    /// [`Env::wait_for`] with its own timeout.
    pub async fn wait_for_within(
        &self,
        name: &str,
        what: &str,
        wait: Duration,
        done: impl Fn(&FailedTaskCleanupPolicy) -> bool,
    ) -> FailedTaskCleanupPolicy {
        let deadline = Instant::now() + wait;
        loop {
            let policy =
                self.policies().get_opt(name).await.unwrap_or_else(|e| panic!("reading {name}: {e}"));
            if let Some(policy) = &policy
                && done(policy)
            {
                return policy.clone();
            }
            if Instant::now() > deadline {
                panic!(
                    "policy {}/{name}: timed out after {wait:?} waiting for {what}; current status:\n{}",
                    self.ns,
                    policy.as_ref().map_or_else(|| "(policy not found)".to_string(), status_yaml)
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until Ready has this status and reason, and the controller is not reconciling.
    pub async fn wait_ready(&self, name: &str, status: &str, reason: &str) -> FailedTaskCleanupPolicy {
        self.wait_ready_within(name, status, reason, WAIT).await
    }

    /// [`Env::wait_ready`] with its own timeout.
    pub async fn wait_ready_within(
        &self,
        name: &str,
        status: &str,
        reason: &str,
        wait: Duration,
    ) -> FailedTaskCleanupPolicy {
        self.wait_for_within(name, &format!("Ready={status} reason {reason}"), wait, |p| {
            condition_is(p, ConditionType::Ready, status, reason)
                && condition(p, ConditionType::Reconciling).is_none_or(|c| c.status == "False")
        })
        .await
    }

    /// Waits until a run has finished whose status echoes `request`.
    pub async fn wait_handled(&self, name: &str, request: &str) -> FailedTaskCleanupPolicy {
        self.wait_for(name, &format!("lastHandledRequestedAt={request} and a finished run"), |p| {
            p.status.as_ref().is_some_and(|s| s.last_handled_requested_at.as_deref() == Some(request))
                && condition(p, ConditionType::Reconciling).is_some_and(|c| c.status == "False")
        })
        .await
    }

    /// events.k8s.io/v1 Events about the policy, oldest first.
    pub async fn events(&self, name: &str) -> Vec<Event> {
        let mut events: Vec<Event> = Api::<Event>::namespaced(self.admin.clone(), &self.ns)
            .list(&ListParams::default())
            .await
            .expect("listing events")
            .items
            .into_iter()
            .filter(|e| {
                e.regarding.as_ref().is_some_and(|r| {
                    r.kind.as_deref() == Some("FailedTaskCleanupPolicy") && r.name.as_deref() == Some(name)
                })
            })
            .collect();
        events.sort_by_key(|e| e.event_time.as_ref().map(|t| t.0));
        events
    }

    /// Waits for an Event about the policy with this type and reason whose note satisfies `note`.
    pub async fn wait_event(
        &self,
        name: &str,
        type_: &str,
        reason: &str,
        note: impl Fn(&str) -> bool,
    ) -> Event {
        let deadline = Instant::now() + WAIT;
        loop {
            let events = self.events(name).await;
            if let Some(event) = events.iter().rev().find(|e| {
                e.type_.as_deref() == Some(type_)
                    && e.reason.as_deref() == Some(reason)
                    && note(e.note.as_deref().unwrap_or_default())
            }) {
                return event.clone();
            }
            if Instant::now() > deadline {
                panic!(
                    "no {type_} {reason} Event about {}/{name} within {WAIT:?}; events:\n{}",
                    self.ns,
                    describe_events(&events)
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The emulator's call counts.
    pub fn calls(&self) -> CallCounts {
        self.emulator.store().calls()
    }

    /// Ids of the SDRS failed jobs a project still holds, sorted.
    pub fn job_ids(&self, project: &str) -> Vec<String> {
        let mut ids: Vec<String> =
            self.emulator.store().failure_jobs(project).into_iter().map(|j| j.job_id).collect();
        ids.sort();
        ids
    }

    /// Ids of the KPS failed tasks a project still holds, sorted.
    pub fn task_ids(&self, project: &str) -> Vec<String> {
        let mut ids: Vec<String> =
            self.emulator.store().failed_tasks(project).into_iter().map(|t| t.task_id).collect();
        ids.sort();
        ids
    }

    /// Fails when the secret key shows in the policy (spec, metadata, status) or in any Event of
    /// the namespace, or when it or a signature this test's emulator received shows in the logs.
    pub async fn assert_secret_never_shown(&self, name: &str) {
        let mut needles = self.emulator.store().signatures();
        needles.extend([SK, SECURITY_TOKEN, AUTH_TOKEN].map(String::from));
        assert_not_logged("the secret key, a token or a request signature", &needles);
        let policy = self.get(name).await;
        let text = serde_json::to_string(&policy).expect("serializing the policy");
        assert!(!text.contains(SK), "the secret key shows in policy {name}:\n{text}");
        let events = Api::<Event>::namespaced(self.admin.clone(), &self.ns)
            .list(&ListParams::default())
            .await
            .expect("listing events");
        for event in events {
            let text = serde_json::to_string(&event).expect("serializing an event");
            assert!(!text.contains(SK), "the secret key shows in an Event:\n{text}");
        }
    }

    /// Runs kubectl as admin with `args` (`-n <ns>` is added) and returns stdout; fails with
    /// stderr when kubectl fails.
    pub async fn kubectl(&self, args: &[&str]) -> String {
        let output = tokio::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(self.cp.kubeconfig_path(Identity::Admin))
            .args(["-n", &self.ns])
            .args(args)
            .output()
            .await
            .unwrap_or_else(|e| panic!("running kubectl (is it installed?): {e}"));
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "kubectl {} failed ({}):\n{}{stdout}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }
}

/// A policy in `namespace` over `projects` (default region cn-north-4) with both endpoints at
/// `url`, an hourly schedule, the given targets and deletion budget.
pub fn policy_at(
    namespace: &str,
    name: &str,
    url: &str,
    projects: &[&str],
    targets: Vec<Target>,
    max_deletions_per_run: u32,
) -> FailedTaskCleanupPolicy {
    let spec = FailedTaskCleanupPolicySpec {
        credentials_ref: Some(CredentialsRef { name: SECRET_NAME.into() }),
        workload_identity: None,
        region: "cn-north-4".into(),
        endpoints: Some(Endpoints { sdrs: Some(url.to_string()), kps: Some(url.to_string()) }),
        projects: projects.iter().map(|id| Project { id: (*id).into(), region: None }).collect(),
        project_discovery: None,
        targets,
        schedule: Schedule { interval: Some("1h".into()), ..Schedule::default() },
        suspend: false,
        dry_run: false,
        max_deletions_per_run,
    };
    let mut policy = FailedTaskCleanupPolicy::new(name, spec);
    policy.metadata.namespace = Some(namespace.to_string());
    policy
}

/// The policy's status as YAML, for failure messages.
pub fn status_yaml(policy: &FailedTaskCleanupPolicy) -> String {
    serde_saphyr::to_string(&json!({
        "generation": policy.metadata.generation,
        "annotations": policy.metadata.annotations,
        "status": policy.status,
    }))
    .unwrap_or_else(|e| format!("(status does not serialize: {e})"))
}

fn describe_events(events: &[Event]) -> String {
    if events.is_empty() {
        return "(none)".into();
    }
    events
        .iter()
        .map(|e| {
            format!(
                "- {} {} x{}: {}",
                e.type_.as_deref().unwrap_or("?"),
                e.reason.as_deref().unwrap_or("?"),
                e.series.as_ref().map_or(1, |s| s.count),
                e.note.as_deref().unwrap_or("")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A condition of the policy's status.
pub fn condition(
    policy: &FailedTaskCleanupPolicy,
    type_: ConditionType,
) -> Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    policy.status.as_ref().and_then(|s| s.condition(type_))
}

/// True when the condition has this status and reason.
pub fn condition_is(
    policy: &FailedTaskCleanupPolicy,
    type_: ConditionType,
    status: &str,
    reason: &str,
) -> bool {
    condition(policy, type_).is_some_and(|c| c.status == status && c.reason == reason)
}

/// Waits, polling `check` every 100 ms, up to `timeout`; fails with `what` and the last answer.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) if Instant::now() > deadline => {
                panic!("timed out after {timeout:?} waiting for {what}: {last}")
            }
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

pub fn sdrs_all() -> Target {
    Target { service: Service::Sdrs, scope: Scope::All, protection_group_ids: None, filter: None }
}

pub fn sdrs_groups(ids: &[&str]) -> Target {
    Target {
        service: Service::Sdrs,
        scope: Scope::ProtectionGroups,
        protection_group_ids: Some(ids.iter().map(|s| (*s).to_string()).collect()),
        filter: None,
    }
}

pub fn sdrs_matching(filter: TaskMatch) -> Target {
    Target {
        service: Service::Sdrs,
        scope: Scope::Matching,
        protection_group_ids: None,
        filter: Some(filter),
    }
}

pub fn kps_all() -> Target {
    Target { service: Service::Kps, scope: Scope::All, protection_group_ids: None, filter: None }
}

pub fn kps_matching(filter: TaskMatch) -> Target {
    Target { service: Service::Kps, scope: Scope::Matching, protection_group_ids: None, filter: Some(filter) }
}
