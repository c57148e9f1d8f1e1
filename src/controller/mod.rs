//! The controller: kube-runtime wiring ([`serve`], [`run`]), the reconcile pipeline, status,
//! events and schedule. Watches policies only, in every namespace or in a list of namespaces; a
//! policy's Secret is read with `get` when it runs and never watched or listed. Takes plain
//! settings; the flags of `taskreaper run` live in `cli::run`.

pub mod discover;
pub mod events;
pub mod identity;
pub mod leader;
pub mod pipeline;
pub mod reconcile;
pub mod schedule;
pub mod status;

use crate::api::{ConditionType, FailedTaskCleanupPolicy};
use crate::cloud::{CloudHttp, HttpConfig, RateControl, RateLimiters, SystemClock};
use crate::observability::metrics::{PolicyLabels, PolicyState, ReadyLabels};
use crate::observability::{Health, Metrics};
use crate::purge::Fence;
use futures::{FutureExt, StreamExt};
use kube::api::ListParams;
use kube::runtime::events::Reporter;
use kube::runtime::reflector::Store;
use kube::runtime::{Controller, WatchStreamExt as _, reflector, watcher};
use kube::{Api, Client, Resource as _, ResourceExt};
use reconcile::{Context, error_policy, reconcile};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// After the shutdown grace ends, how long writing the cut runs' status may still take.
const STATUS_AFTER_GRACE: Duration = Duration::from_secs(5);
/// How long the leader-election task may take to give the Lease up at exit.
const RELEASE_WAIT: Duration = Duration::from_secs(11);

/// What [`run`] needs: the reconcile settings, where to serve metrics, and leader election.
#[derive(Clone, Debug)]
pub struct RunSettings {
    pub settings: Settings,
    /// Address of /metrics, /livez and /readyz.
    pub metrics_addr: SocketAddr,
    /// Run only while holding a Lease; `None` runs unconditionally.
    pub leader_election: Option<LeaderElection>,
    /// After SIGTERM or SIGINT, how long cloud calls in flight may still run.
    pub shutdown_grace: Duration,
}

/// The Lease that lets several replicas run with one active.
#[derive(Clone, Debug)]
pub struct LeaderElection {
    pub lease_name: String,
    /// How long the Lease lasts, and when its holder must stop deleting.
    pub timing: leader::LeaseTiming,
    /// Namespace of the Lease; the client's default namespace when `None`.
    pub lease_namespace: Option<String>,
}

/// What [`serve`] needs besides a client.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The namespaces whose policies are handled; empty means every namespace.
    pub namespaces: Vec<String>,
    pub label_selector: Option<String>,
    pub http: HttpConfig,
    /// How fast cloud calls may go per (endpoint host, credentials identity).
    pub rate_limit: RateControl,
    /// Identifies this replica in events.
    pub instance: Option<String>,
    /// Most policies reconciled at once (0: no bound). Each reconcile in flight holds a connection
    /// to the API server, so this bounds the controller's memory when many policies are due at once.
    pub max_concurrent_reconciles: u16,
    /// Temporary credentials from workload identity for policies that ask for it; `None` refuses
    /// them (the policy reports CredentialsNotFound).
    pub workload_identity: Option<identity::WorkloadIdentitySettings>,
    /// The IAM endpoint for project discovery (`spec.projectDiscovery`); the global
    /// `https://iam.myhuaweicloud.com` when `None`. It must pass the endpoint allowlist.
    pub iam_endpoint: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("connecting to Kubernetes")]
    ConnectKubernetes(#[source] kube::Error),
    #[error("building the cloud client")]
    BuildCloudClient(#[source] crate::cloud::CloudError),
    #[error("building the IAM client for workload identity")]
    BuildIamClient(#[source] crate::cloud::iam::IamError),
    #[error("listening for termination signals")]
    ListenSignals(#[source] std::io::Error),
    #[error("lost the leader-election lease; exiting so another replica takes over")]
    LoseLease,
    #[error("runs cut at shutdown did not write their status within {0:?} after the grace period")]
    StopInTime(Duration),
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
    serve_fenced(client, settings, metrics, health, Fence::unfenced(), shutdown).await
}

/// [`serve`], with every cloud call behind `fence`.
pub async fn serve_fenced(
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    fence: Fence,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), ControllerError> {
    let limiters = RateLimiters::new(settings.rate_limit);
    metrics.track_rate_limiters(limiters.clone());
    let http = CloudHttp::new(settings.http.clone(), limiters, Arc::new(SystemClock))
        .map_err(ControllerError::BuildCloudClient)?
        .with_observer(metrics.clone());
    let reporter = Reporter { controller: "taskreaper".into(), instance: settings.instance.clone() };
    let workload_identity = match settings.workload_identity.clone() {
        Some(wi) => Some(
            identity::WorkloadIdentity::new(wi, &settings.http).map_err(ControllerError::BuildIamClient)?,
        ),
        None => None,
    };
    let discovery = discover::ProjectDiscovery::new(&settings.http, settings.iam_endpoint.as_deref());
    let ctx = Arc::new(Context {
        workload_identity,
        discovery,
        client: client.clone(),
        reporter,
        metrics,
        http,
        auth_failures: Mutex::default(),
        unwritten: Mutex::default(),
        last_pass: Mutex::default(),
        errors: Mutex::default(),
        fence,
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
    let controllers: Vec<Controller<FailedTaskCleanupPolicy>> = policies
        .into_iter()
        .map(|api| {
            // The store keeps every policy for the controller's lifetime; their managedFields
            // (often larger than the rest of the object) are never read, so they are dropped on
            // arrival.
            let (store, writer) = reflector::store();
            let policies = watcher(api, policy_watch.clone())
                .default_backoff()
                .modify(|policy| policy.meta_mut().managed_fields = None)
                .reflect(writer)
                .applied_objects();
            Controller::for_stream(policies, store).with_config(
                kube::runtime::controller::Config::default().concurrency(settings.max_concurrent_reconciles),
            )
        })
        .collect();
    let stores: Vec<Store<FailedTaskCleanupPolicy>> = controllers.iter().map(Controller::store).collect();
    ctx.metrics.track_policies(Arc::new(move || policy_states(&stores)));
    let controllers = controllers.into_iter().map(|controller| {
        let unready_at_shutdown = {
            let (store, shutdown) = (controller.store(), shutdown.clone());
            async move {
                shutdown.await;
                // kube-runtime holds its runner until the policy store is ready, which it can no
                // longer become once the watches stop: stopped before the first list completed, the
                // controller would wait forever. No reconcile has started then; nothing to wait for.
                if !matches!(store.wait_until_ready().now_or_never(), Some(Ok(()))) {
                    return;
                }
                std::future::pending::<()>().await;
            }
        };
        let running = controller.graceful_shutdown_on(shutdown.clone()).run(reconcile, error_policy, ctx.clone()).for_each(
            |result| async move {
                if let Err(error) = result {
                    tracing::debug!(error = %crate::controller::pipeline::error_chain(&error), "reconcile trigger failed");
                }
            },
        );
        async move {
            tokio::select! {
                () = running => {}
                () = unready_at_shutdown => tracing::debug!("stopped before the policies were listed"),
            }
        }
    });
    futures::future::join_all(controllers).await;
    probe.abort();
    Ok(())
}

/// The policies the controller's caches hold, with their Ready condition, for the metrics.
fn policy_states(stores: &[Store<FailedTaskCleanupPolicy>]) -> Vec<PolicyState> {
    stores
        .iter()
        .flat_map(Store::state)
        .map(|policy| {
            let ready = policy.status.as_ref().and_then(|s| s.condition(ConditionType::Ready));
            PolicyState {
                policy: PolicyLabels {
                    namespace: policy.namespace().unwrap_or_default(),
                    name: policy.name_any(),
                },
                ready: ReadyLabels {
                    ready: ready.map_or("Unknown", |c| c.status.as_str()).to_string(),
                    reason: ready.map(|c| c.reason.clone()).unwrap_or_default(),
                },
            }
        })
        .collect()
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

/// Listens for SIGTERM and SIGINT; at the first, stops `fence` (calls still running after
/// `grace` are cut) and then turns `stop` true.
fn on_signal(fence: Fence, grace: Duration, stop: watch::Sender<bool>) -> Result<(), ControllerError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(ControllerError::ListenSignals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(ControllerError::ListenSignals)?;
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(
            signal = name,
            ?grace,
            "shutting down: no new runs or DELETEs; calls in flight get the grace period"
        );
        fence.stop(tokio::time::Instant::now() + grace);
        stop.send_replace(true);
    });
    Ok(())
}

/// `taskreaper run`: the controller with its metrics endpoint and optional leader election.
///
/// On SIGTERM or SIGINT no run starts and no DELETE is sent any more; calls in flight get
/// `shutdown_grace` to finish and are cut after it; each run cut short writes what it measured;
/// then the Lease is given up, so that a standby leads at once, and it returns `Ok`. The Lease is
/// kept (and renewed) until the cut runs are over, so that a standby never deletes beside them.
pub async fn run(run: RunSettings) -> Result<(), ControllerError> {
    let RunSettings { settings, metrics_addr, leader_election, shutdown_grace } = run;
    let client = Client::try_default().await.map_err(ControllerError::ConnectKubernetes)?;
    let metrics = Arc::new(Metrics::default());
    let health = Arc::new(Health::default());
    let mut server =
        tokio::spawn(crate::observability::server::serve(metrics_addr, metrics.clone(), health.clone()));
    let server_stopped = |joined: Result<Result<(), _>, tokio::task::JoinError>| match joined {
        Ok(result) => result.map_err(ControllerError::ServeMetrics),
        Err(_) => Err(ControllerError::StopMetrics),
    };
    let fence = if leader_election.is_some() { Fence::closed() } else { Fence::unfenced() };
    let (stop_tx, stop) = watch::channel(false);
    on_signal(fence.clone(), shutdown_grace, stop_tx)?;
    let stopped = |mut stop: watch::Receiver<bool>| async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let Some(lease) = leader_election else {
        // Without leader election this replica acts as the only one.
        metrics.leader.set(1);
        let serving = serve_fenced(client, settings, metrics, health, fence, stopped(stop.clone()));
        return tokio::select! {
            result = bounded_after(serving, stop, shutdown_grace) => result,
            joined = &mut server => server_stopped(joined),
        };
    };
    let namespace = lease.lease_namespace.clone().unwrap_or_else(|| client.default_namespace().to_string());
    // Without POD_NAME every replica would be "PID 1": the host name and a random suffix.
    let identity = settings.instance.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{:08x}", host.trim().chars().take(200).collect::<String>(), rand::random::<u32>())
    });
    let elector = leader::Elector::new(
        client.clone(),
        &namespace,
        &lease.lease_name,
        &identity,
        lease.timing,
        fence.clone(),
    )
    .with_gauge(metrics.leader.clone());
    let (leading_tx, mut leader) = watch::channel(false);
    let (release_tx, release) = watch::channel(false);
    let mut election = tokio::spawn(elector.run(leading_tx, release));
    // A standby replica is healthy: it is ready to take over. Reporting it unready would stall
    // rolling updates of the Deployment.
    health.set_ready(true);
    let result = tokio::select! {
        joined = &mut server => Some(server_stopped(joined)),
        _ = leader.wait_for(|is_leader| *is_leader) => None,
        () = stopped(stop.clone()) => Some(Ok(())),
    };
    let result = match result {
        Some(result) => result,
        None => {
            let mut lost = leader.clone();
            let serving = serve_fenced(client, settings, metrics, health, fence, stopped(stop.clone()));
            tokio::select! {
                result = bounded_after(serving, stop.clone(), shutdown_grace) => result,
                _ = lost.wait_for(|is_leader| !*is_leader) => Err(ControllerError::LoseLease),
                joined = &mut server => server_stopped(joined),
            }
        }
    };
    if matches!(result, Err(ControllerError::LoseLease)) {
        // Stepped down or taken over: there is nothing to give up.
        election.abort();
        return result;
    }
    // The election gives the Lease up if this replica holds it.
    release_tx.send_replace(true);
    if tokio::time::timeout(RELEASE_WAIT, &mut election).await.is_err() {
        tracing::warn!("leader election did not stop in time; the Lease lapses on its own");
        election.abort();
    }
    result
}

/// Runs `serving` to its end, but once `stop` turns true, no longer than the grace period and
/// the time to write the cut runs' status.
async fn bounded_after(
    serving: impl Future<Output = Result<(), ControllerError>>,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) -> Result<(), ControllerError> {
    let limit = grace + STATUS_AFTER_GRACE;
    let overrun = async move {
        let _ = stop.wait_for(|s| *s).await;
        tokio::time::sleep(limit).await;
    };
    tokio::select! {
        result = serving => result,
        () = overrun => Err(ControllerError::StopInTime(STATUS_AFTER_GRACE)),
    }
}
