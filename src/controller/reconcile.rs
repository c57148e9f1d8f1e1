//! Reconciling one policy: the shared run pipeline ([`pipeline::run_policy`]) with the Kubernetes
//! parts around it: the policy and its Secret read from the API server (`get` only), the due
//! decision, status written with server-side apply (`patch`), events and metrics, and the requeue
//! that stands in for a Secret watch. Does Kubernetes and cloud I/O.

use super::events;
use super::pipeline::{self, Blocked, Due, Finished, Host, Outcome, SecretData};
use super::schedule;
use super::status::{self, whole_seconds};
use crate::api::{
    ConditionType, CredentialSource, FailedTaskCleanupPolicy, FailedTaskCleanupPolicyStatus, Reason,
    ValidatedSpec,
};
use crate::cloud::CloudHttp;
use crate::cloud::credentials::Credentials;
use crate::observability::Metrics;
use crate::observability::metrics::{PolicyLabels, RunLabels, TargetLabels};
use crate::purge::{self, Fence};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use kube::{Api, Client, Resource, ResourceExt};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tracing::Instrument;

/// Setting this annotation to a new value runs the policy now.
pub const REQUESTED_AT: &str = "taskreaper.io/requested-at";
/// The field manager of every status write.
pub const FIELD_MANAGER: &str = "taskreaper";
pub use super::pipeline::AUTH_RETRY;

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    /// Who publishes the events.
    pub reporter: Reporter,
    pub metrics: Arc<Metrics>,
    pub http: CloudHttp,
    /// Temporary credentials for policies with a workload identity; `None` when not enabled.
    pub workload_identity: Option<super::identity::WorkloadIdentity>,
    /// IAM and its cached answers for policies with `spec.projectDiscovery`.
    pub discovery: super::discover::ProjectDiscovery,
    /// Per policy uid: the Secret's resourceVersion when the cloud last rejected its credentials.
    pub auth_failures: Mutex<HashMap<String, Option<String>>>,
    /// Per policy uid: consecutive reconcile errors, for backoff.
    pub errors: Mutex<HashMap<String, u32>>,
    /// Whether this replica may still delete (leader election) and whether it is shutting down.
    pub fence: Fence,
    /// Per policy uid: a finished pass's status whose write failed (the API server was away); it is
    /// written first on the next pass, so a run's measured result is not lost.
    pub unwritten: Mutex<HashMap<String, FailedTaskCleanupPolicyStatus>>,
    /// Per policy uid: what this replica's last successful pass left, so that the watch events of
    /// its own status writes (and relists that bring nothing new) cost no API request.
    pub last_pass: Mutex<HashMap<String, LastPass>>,
}

/// The end of a successful pass over a policy.
#[derive(Clone, Debug, Default)]
pub struct LastPass {
    /// The resourceVersions the pass read or wrote: a policy that still has one of them is
    /// unchanged but for this replica's own status writes.
    pub versions: Vec<String>,
    /// When the pass asked to be run again; `None` when it waits for a change.
    pub until: Option<tokio::time::Instant>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("policy has no namespace")]
    ReadNamespace,
    #[error("reading the policy")]
    GetPolicy {
        #[source]
        source: kube::Error,
    },
    #[error("reading Secret {name}")]
    GetSecret {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("writing status")]
    PatchStatus(#[source] kube::Error),
    #[error("getting temporary credentials for {identity}")]
    WorkloadIdentity {
        identity: String,
        #[source]
        source: super::identity::IdentityError,
    },
}

impl Context {
    /// A recorder for one event. kube's `Recorder` folds later events with the same reason about
    /// the same object into a series that keeps the first event's note, which would show the
    /// counts of the first run forever; a fresh recorder publishes each run's own note.
    pub fn recorder(&self) -> Recorder {
        Recorder::new(self.client.clone(), self.reporter.clone())
    }
}

/// One pass over a policy.
pub async fn reconcile(
    policy: Arc<FailedTaskCleanupPolicy>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    ctx.metrics.reconciles.inc();
    // Every line the pass logs, cloud calls and audit records included, names the policy.
    // (`policy`, not `name`: the JSON log format gives each span a `name` key of its own.)
    let span = tracing::info_span!(
        "reconcile",
        namespace = %policy.namespace().unwrap_or_default(),
        policy = %policy.name_any(),
    );
    let result = reconcile_inner(&policy, &ctx).instrument(span).await;
    let uid = policy.uid().unwrap_or_default();
    if result.is_ok()
        && let Ok(mut errors) = ctx.errors.lock()
    {
        errors.remove(&uid);
    }
    result
}

/// Retries a failed reconcile with exponential backoff per policy (5 s doubling to 5 min).
pub fn error_policy(
    policy: Arc<FailedTaskCleanupPolicy>,
    error: &ReconcileError,
    ctx: Arc<Context>,
) -> Action {
    ctx.metrics.reconcile_errors.inc();
    let attempts = ctx
        .errors
        .lock()
        .map(|mut errors| {
            let n = errors.entry(policy.uid().unwrap_or_default()).or_insert(0);
            *n = n.saturating_add(1);
            *n
        })
        .unwrap_or(1);
    let delay = Duration::from_secs(5).saturating_mul(1 << attempts.min(6)).min(Duration::from_secs(300));
    tracing::warn!(policy = %policy.name_any(), error = %pipeline::error_chain(error), retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// The Kubernetes side of [`pipeline::run_policy`]: Secrets from the API server, the schedule and
/// the memory of rejected credentials, status written with server-side apply.
struct Kube<'a> {
    ctx: &'a Context,
    policy: &'a FailedTaskCleanupPolicy,
    api: Api<FailedTaskCleanupPolicy>,
    secrets: Api<Secret>,
    uid: &'a str,
    /// resourceVersions of the status writes of this pass that changed nothing but the status.
    written: Vec<String>,
    /// Whether a status write of this pass showed a change made by someone else.
    changed: bool,
}

impl Host for Kube<'_> {
    fn discovery(&self) -> Option<&super::discover::ProjectDiscovery> {
        Some(&self.ctx.discovery)
    }

    type Error = ReconcileError;

    fn fence(&self) -> Fence {
        self.ctx.fence.clone()
    }

    async fn secret(&mut self, name: &str) -> Result<Option<SecretData>, ReconcileError> {
        let secret = self
            .secrets
            .get_opt(name)
            .await
            .map_err(|source| ReconcileError::GetSecret { name: name.to_string(), source })?;
        Ok(secret.map(|s| SecretData {
            version: s.resource_version(),
            data: s.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect(),
        }))
    }

    async fn federated(
        &mut self,
        source: &CredentialSource,
        now: Timestamp,
    ) -> Result<Result<Credentials, Blocked>, ReconcileError> {
        let Some(identity) = &self.ctx.workload_identity else {
            return Ok(Err(Blocked {
                reason: Reason::CredentialsNotFound,
                message: format!(
                    "{} needs workload identity, which this controller was started without (--token-audience)",
                    source.describe()
                ),
            }));
        };
        let namespace = self.policy.namespace().unwrap_or_default();
        let result = identity.credentials(&self.ctx.client, &namespace, source, now).await;
        let credentials = result
            .map_err(|e| ReconcileError::WorkloadIdentity { identity: source.describe(), source: e })?;
        if credentials.is_ok() {
            tracing::debug!(policy = %self.policy.name_any(), %namespace, identity = %source.describe(), "temporary credentials from workload identity");
        }
        Ok(credentials)
    }

    fn due(
        &mut self,
        valid: &ValidatedSpec,
        status: &FailedTaskCleanupPolicyStatus,
        secret_version: Option<&str>,
        now: Timestamp,
    ) -> Due {
        let created = self.policy.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0);
        let last_run = status.last_schedule_time.as_ref().map(|t| t.0);
        let rejected_version = self.ctx.auth_failures.lock().ok().and_then(|f| f.get(self.uid).cloned());
        let credentials_changed = rejected_version.as_ref().is_none_or(|v| v.as_deref() != secret_version);
        let mut next_run = schedule::next_run(&valid.schedule, last_run, created, self.uid);
        if status.reason(ConditionType::Ready) == Some(Reason::AuthenticationFailed) {
            next_run = if credentials_changed {
                Some(now)
            } else {
                next_run.map(|n| n.max(pipeline::after_auth_retry(last_run)))
            };
        }
        next_run = status::earliest(next_run, status::retry_time(status));
        let request = self
            .policy
            .annotations()
            .get(REQUESTED_AT)
            .filter(|r| status.last_handled_requested_at.as_ref() != Some(*r))
            .cloned();
        if request.is_some() || next_run.is_some_and(|n| n <= now) {
            tracing::info!(policy = %self.policy.name_any(), namespace = %self.policy.namespace().unwrap_or_default(), manual = request.is_some(), "purge run started");
            Due::Now { request }
        } else {
            Due::Later { next_run }
        }
    }

    async fn write(&mut self, status: &FailedTaskCleanupPolicyStatus) -> Result<(), ReconcileError> {
        let patch = |status: &FailedTaskCleanupPolicyStatus| {
            serde_json::json!({
                "apiVersion": FailedTaskCleanupPolicy::api_version(&()),
                "kind": FailedTaskCleanupPolicy::kind(&()),
                "status": status,
            })
        };
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let name = self.policy.name_any();
        let written = match self.api.patch_status(&name, &params, &Patch::Apply(&patch(status))).await {
            // Refused for its size: the rows go, the run's sums and conditions stay; never kept
            // pending to fail again.
            Err(error) if too_large(&error) => {
                tracing::warn!(policy = %name, %error, "status refused for its size; writing it without lastRun.targets");
                let shrunk = status::without_rows(status);
                self.api.patch_status(&name, &params, &Patch::Apply(&patch(&shrunk))).await
            }
            other => other,
        };
        let mut unwritten = self.ctx.unwritten.lock().unwrap_or_else(PoisonError::into_inner);
        match written {
            Ok(written) => {
                unwritten.remove(self.uid);
                // A status write does not conflict with a change made since the policy was read: its
                // version holds that change too, and stands for "unchanged" only when it has none.
                let meta = (&written.metadata, &self.policy.metadata);
                let same = meta.0.generation == meta.1.generation
                    && meta.0.annotations == meta.1.annotations
                    && meta.0.labels == meta.1.labels
                    && meta.0.deletion_timestamp == meta.1.deletion_timestamp;
                if same && !self.changed {
                    self.written.extend(written.resource_version());
                } else {
                    self.changed = true;
                }
                self.ctx.metrics.status_writes.inc();
                Ok(())
            }
            Err(error) => {
                // Only a finished pass is kept: a lost "run started" needs no second try.
                if status.condition(ConditionType::Reconciling).is_none_or(|c| c.status != "True") {
                    unwritten.insert(self.uid.to_string(), status.clone());
                }
                Err(ReconcileError::PatchStatus(error))
            }
        }
    }
}

/// Whether the API server refused a write for its size (413 from the API server, or etcd's
/// "request is too large").
fn too_large(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(e) if e.code == 413 || e.message.contains("too large"))
}

async fn reconcile_inner(policy: &FailedTaskCleanupPolicy, ctx: &Context) -> Result<Action, ReconcileError> {
    // Shutting down: no run starts; the next leader picks the policy up.
    if ctx.fence.stopping() {
        return Ok(Action::await_change());
    }
    if let Some(action) = unchanged_since_last_pass(policy, ctx) {
        return Ok(action);
    }
    // Until this pass ends well, the policy is reconciled in full whatever triggers it.
    if let Some(uid) = policy.uid() {
        ctx.last_pass.lock().unwrap_or_else(PoisonError::into_inner).remove(&uid);
    }
    let namespace = policy.namespace().ok_or(ReconcileError::ReadNamespace)?;
    let api: Api<FailedTaskCleanupPolicy> = Api::namespaced(ctx.client.clone(), &namespace);
    // The cache may not hold this controller's last status write yet; the API server does, and
    // deciding from a stale status could run a policy twice.
    let Some(policy) =
        api.get_opt(&policy.name_any()).await.map_err(|source| ReconcileError::GetPolicy { source })?
    else {
        return Ok(Action::await_change());
    };
    let uid = policy.uid().unwrap_or_default();
    let mut versions: Vec<String> = policy.resource_version().into_iter().collect();
    // A finished pass whose status did not reach the API server goes first.
    let pending = ctx.unwritten.lock().unwrap_or_else(PoisonError::into_inner).get(&uid).cloned();
    let mut policy = policy;
    if let Some(pending) = pending
        && policy.status.as_ref() != Some(&pending)
    {
        let secrets = Api::<Secret>::namespaced(ctx.client.clone(), &namespace);
        let mut kube = Kube {
            ctx,
            policy: &policy,
            api: api.clone(),
            secrets,
            uid: &uid,
            written: Vec::new(),
            changed: false,
        };
        kube.write(&pending).await?;
        versions.append(&mut kube.written);
        policy.status = Some(pending);
    }
    let policy = &policy;
    // Status times are stored to the second; a run's next time computed from a finer start time
    // would differ from the one computed later from the stored start, and be written again.
    let now = whole_seconds(Timestamp::now());
    let secrets = Api::<Secret>::namespaced(ctx.client.clone(), &namespace);
    let mut kube = Kube { ctx, policy, api, secrets, uid: &uid, written: Vec::new(), changed: false };
    let Finished { outcome, status } = pipeline::run_policy(policy, &mut kube, &ctx.http, now).await?;
    versions.append(&mut kube.written);
    let wait = match outcome {
        Outcome::Blocked { blocked, changed } => {
            // The event goes out only when the status changed, not on every pass.
            if changed {
                events::blocked(&ctx.recorder(), policy, &blocked).await;
            }
            blocked.retry()
        }
        Outcome::Suspended => None,
        Outcome::Waiting { next_run } => until(next_run, now),
        Outcome::Ran { report, started, finished, secret_version, identity } => {
            if let Ok(mut failures) = ctx.auth_failures.lock() {
                if pipeline::auth_failed(&report) {
                    failures.insert(uid.clone(), secret_version);
                } else {
                    failures.remove(&uid);
                }
            }
            record(ctx, &report, &status, finished.duration_since(started));
            let policy_labels = PolicyLabels { namespace: namespace.clone(), name: policy.name_any() };
            let ready = status.condition(ConditionType::Ready).is_some_and(|c| c.status == "True");
            ctx.metrics.run_ended(policy_labels, ready);
            events::ran(&ctx.recorder(), policy, &status, &identity).await;
            tracing::info!(
                policy = %policy.name_any(),
                namespace,
                found = report.found(),
                deleted = report.deleted(),
                remaining = report.remaining(),
                failed_calls = report.failed_calls,
                "purge run finished"
            );
            // The status may bring the next run forward to retry a transient failure.
            until(status.next_schedule_time.as_ref().map(|t| t.0), finished)
        }
    };
    // Secrets are not watched: a policy waiting for its Secret reads it again soon.
    let wait = wait.into_iter().chain(pipeline::secret_retry(&status, now)).min();
    let until = wait.map(|w| tokio::time::Instant::now() + w);
    ctx.last_pass.lock().unwrap_or_else(PoisonError::into_inner).insert(uid, LastPass { versions, until });
    Ok(wait.map_or_else(Action::await_change, Action::requeue))
}

/// When the policy as the watch shows it is one this replica's last pass read or wrote, and the
/// time that pass asked to be run again has not come: nothing but this replica's own status writes
/// changed, and the last pass's decision stands. The action it asked for, then; `None` otherwise
/// (a change, a requeue that is due, a status still to write, no pass yet), which reads the policy
/// from the API server and runs a full pass.
fn unchanged_since_last_pass(policy: &FailedTaskCleanupPolicy, ctx: &Context) -> Option<Action> {
    let uid = policy.uid()?;
    let version = policy.resource_version()?;
    if ctx.unwritten.lock().unwrap_or_else(PoisonError::into_inner).contains_key(&uid) {
        return None;
    }
    let passes = ctx.last_pass.lock().unwrap_or_else(PoisonError::into_inner);
    let last = passes.get(&uid)?;
    if !last.versions.contains(&version) {
        return None;
    }
    match last.until {
        None => Some(Action::await_change()),
        Some(until) => {
            let left = until.checked_duration_since(tokio::time::Instant::now())?;
            // A requeue about to fire is as good as due: run it in full.
            (left > Duration::from_millis(500)).then(|| Action::requeue(left))
        }
    }
}

/// How long until `next_run` (at least a second), or `None` when nothing is scheduled.
fn until(next_run: Option<Timestamp>, now: Timestamp) -> Option<Duration> {
    let at = next_run?;
    let wait = Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO);
    Some(wait.max(Duration::from_secs(1)))
}

fn record(
    ctx: &Context,
    report: &purge::RunReport,
    status: &FailedTaskCleanupPolicyStatus,
    took: SignedDuration,
) {
    let m = &ctx.metrics;
    let reason = status.reason(ConditionType::Ready).map_or("", Reason::as_str).to_string();
    m.runs.get_or_create(&RunLabels { reason }).inc();
    m.run_seconds.observe(took.as_secs_f64());
    m.failed_calls.inc_by(report.failed_calls);
    for t in &report.targets {
        let labels = TargetLabels {
            service: t.service.as_str().into(),
            scope: t.scope.as_str().into(),
            outcome: t.outcome.as_str().into(),
        };
        m.targets.get_or_create(&labels).inc();
        m.deleted.get_or_create(&labels).inc_by(t.deleted.unwrap_or(0));
        if t.not_removed > 0 {
            m.not_removed.get_or_create(&labels).inc_by(t.not_removed);
        }
    }
}
