//! The controller: kube-runtime wiring ([`serve`], [`run`]), the reconcile pipeline, status,
//! events and schedule. Watches policies only, in every namespace or in a list of namespaces; a
//! policy's Secret is read with `get` when it runs and never watched or listed. Takes plain
//! settings; the flags of `taskreaper run` live in `cli::run`.

pub mod events;
pub mod pipeline;
pub mod reconcile;
pub mod schedule;
pub mod status;

use crate::api::FailedTaskCleanupPolicy;
use crate::cloud::{CloudHttp, HttpConfig, RateLimit, RateLimiters, SystemClock};
use crate::observability::{Health, Metrics};
use futures::{FutureExt, StreamExt};
use kube::api::ListParams;
use kube::runtime::events::Reporter;
use kube::runtime::{Controller, watcher};
use kube::{Api, Client};
use reconcile::{Context, error_policy, reconcile};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;

/// How long before its Lease lapses a leader renews it.
const LEASE_GRACE_SECS: u64 = 5;

/// What [`run`] needs: the reconcile settings, where to serve metrics, and leader election.
#[derive(Clone, Debug)]
pub struct RunSettings {
    pub settings: Settings,
    /// Address of /metrics, /livez and /readyz.
    pub metrics_addr: SocketAddr,
    /// Run only while holding a Lease; `None` runs unconditionally.
    pub leader_election: Option<LeaderElection>,
}

/// The Lease that lets several replicas run with one active.
#[derive(Clone, Debug)]
pub struct LeaderElection {
    pub lease_name: String,
    /// How long a leader's Lease lasts without renewal, in seconds.
    pub lease_duration_secs: u64,
    /// Namespace of the Lease; the client's default namespace when `None`.
    pub lease_namespace: Option<String>,
}

/// What [`serve`] needs besides a client.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The namespaces whose policies are handled; empty means every namespace.
    pub namespaces: Vec<String>,
    pub label_selector: Option<String>,
    pub concurrency: usize,
    pub http: HttpConfig,
    pub rate_limit: RateLimit,
    /// Identifies this replica in events.
    pub instance: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("connecting to Kubernetes")]
    ConnectKubernetes(#[source] kube::Error),
    #[error("building the cloud client")]
    BuildCloudClient(#[source] crate::cloud::CloudError),
    #[error("leader election")]
    ElectLeader(#[source] kube_lease_manager::LeaseManagerError),
    #[error("lost the leader-election lease; exiting so another replica takes over")]
    LoseLease,
    #[error("metrics endpoint")]
    ServeMetrics(#[source] crate::observability::server::ServerError),
    #[error("the metrics endpoint task stopped")]
    StopMetrics,
}

/// Reconciles policies with `client` until `shutdown` completes. Sets `health` ready once the
/// policies it watches can be listed.
pub async fn serve(
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), ControllerError> {
    let limiters = RateLimiters::new(settings.rate_limit);
    let http = CloudHttp::new(settings.http.clone(), limiters, Arc::new(SystemClock))
        .map_err(ControllerError::BuildCloudClient)?;
    let reporter = Reporter { controller: "taskreaper".into(), instance: settings.instance.clone() };
    let ctx = Arc::new(Context {
        client: client.clone(),
        reporter,
        metrics,
        http,
        permits: Semaphore::new(settings.concurrency),
        auth_failures: Mutex::default(),
        errors: Mutex::default(),
    });
    // Policies are watched per namespace in namespaced mode, so that RBAC need grant nothing
    // beyond those namespaces. Secrets are not watched at all: a policy waiting for its Secret is
    // retried on a short backoff (see `pipeline::secret_retry`).
    let policies: Vec<Api<FailedTaskCleanupPolicy>> = if settings.namespaces.is_empty() {
        vec![Api::all(client)]
    } else {
        settings.namespaces.iter().map(|ns| Api::namespaced(client.clone(), ns)).collect()
    };
    let mut policy_watch = watcher::Config::default().any_semantic();
    if let Some(selector) = &settings.label_selector {
        policy_watch = policy_watch.labels(selector);
    }
    let probe = tokio::spawn(ready_when_listable(policies.clone(), settings.label_selector.clone(), health));
    let shutdown = shutdown.shared();
    let controllers = policies.into_iter().map(|api| {
        Controller::new(api, policy_watch.clone())
            .graceful_shutdown_on(shutdown.clone())
            .run(reconcile, error_policy, ctx.clone())
            .for_each(|result| async move {
                if let Err(error) = result {
                    tracing::debug!(error = %crate::controller::pipeline::error_chain(&error), "reconcile trigger failed");
                }
            })
    });
    futures::future::join_all(controllers).await;
    probe.abort();
    Ok(())
}

/// Sets `health` ready once the policies this controller watches can be listed in every watched
/// namespace, retrying every second. Waiting on the policy stores' own readiness instead would
/// compete with the controllers for each store's single wake-up slot, leaving either a controller
/// or readiness stuck.
async fn ready_when_listable(
    policies: Vec<Api<FailedTaskCleanupPolicy>>,
    label_selector: Option<String>,
    health: Arc<Health>,
) {
    let params = ListParams { label_selector, limit: Some(1), ..ListParams::default() };
    for api in policies {
        while let Err(error) = api.list_metadata(&params).await {
            tracing::warn!(error = %crate::controller::pipeline::error_chain(&error), "listing policies failed; not ready");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    health.set_ready(true);
}

/// `taskreaper run`: the controller with its metrics endpoint and optional leader election.
pub async fn run(run: RunSettings) -> Result<(), ControllerError> {
    let RunSettings { settings, metrics_addr, leader_election } = run;
    let client = Client::try_default().await.map_err(ControllerError::ConnectKubernetes)?;
    let metrics = Arc::new(Metrics::default());
    let health = Arc::new(Health::default());
    let mut server =
        tokio::spawn(crate::observability::server::serve(metrics_addr, metrics.clone(), health.clone()));
    let server_stopped = |joined: Result<Result<(), _>, tokio::task::JoinError>| match joined {
        Ok(result) => result.map_err(ControllerError::ServeMetrics),
        Err(_) => Err(ControllerError::StopMetrics),
    };
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let Some(lease) = leader_election else {
        return tokio::select! {
            result = serve(client, settings, metrics, health, shutdown) => result,
            joined = &mut server => server_stopped(joined),
        };
    };
    let namespace = lease.lease_namespace.clone().unwrap_or_else(|| client.default_namespace().to_string());
    let identity = settings.instance.clone().unwrap_or_else(|| format!("taskreaper-{}", std::process::id()));
    let manager = kube_lease_manager::LeaseManagerBuilder::new(client.clone(), &lease.lease_name)
        .with_namespace(&namespace)
        .with_identity(&identity)
        .with_duration(lease.lease_duration_secs)
        .with_grace(LEASE_GRACE_SECS)
        .build()
        .await
        .map_err(ControllerError::ElectLeader)?;
    let (mut leader, _task) = manager.watch().await;
    // A standby replica is healthy: it is ready to take over. Reporting it unready would stall
    // rolling updates of the Deployment.
    health.set_ready(true);
    tokio::select! {
        joined = &mut server => return server_stopped(joined),
        _ = leader.wait_for(|is_leader| *is_leader) => {}
    }
    tracing::info!(identity, lease = %lease.lease_name, "acquired the leader lease");
    let mut lost = leader.clone();
    tokio::select! {
        result = serve(client, settings, metrics, health, shutdown) => result,
        _ = lost.wait_for(|is_leader| !*is_leader) => Err(ControllerError::LoseLease),
        joined = &mut server => server_stopped(joined),
    }
}
