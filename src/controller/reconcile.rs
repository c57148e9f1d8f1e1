//! Reconciling one policy, as a visible pipeline: validate the spec, honour suspend, read the
//! credentials, check the endpoints, decide whether a run is due, run, and write status and events.
//! Does Kubernetes and cloud I/O.

use super::events;
use super::pipeline::{self, Blocked};
use super::schedule;
use super::status::{self, Observed, Verdict, next_status, whole_seconds};
use crate::api::{FailedTaskCleanupPolicy, FailedTaskCleanupPolicyStatus, Reason};
use crate::cloud::CloudHttp;
use crate::observability::Metrics;
use crate::observability::metrics::{RunLabels, TargetLabels};
use crate::purge;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use kube::{Api, Client, Resource, ResourceExt};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;

/// Setting this annotation to a new value runs the policy now.
pub const REQUESTED_AT: &str = "taskreaper.io/requested-at";
/// The field manager of every status write.
pub const FIELD_MANAGER: &str = "taskreaper";
/// After Huawei Cloud rejected the credentials, the policy runs again no sooner than this unless
/// its Secret changes.
pub const AUTH_RETRY: Duration = Duration::from_secs(15 * 60);

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    /// Who publishes the events.
    pub reporter: Reporter,
    pub metrics: Arc<Metrics>,
    pub http: CloudHttp,
    /// Bounds the cloud calls in flight across all policies.
    pub permits: Semaphore,
    /// Per policy uid: the Secret's resourceVersion when the cloud last rejected its credentials.
    pub auth_failures: Mutex<HashMap<String, Option<String>>>,
    /// Per policy uid: consecutive reconcile errors, for backoff.
    pub errors: Mutex<HashMap<String, u32>>,
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
    let result = reconcile_inner(&policy, &ctx).await;
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

struct Writer<'a> {
    ctx: &'a Context,
    policy: &'a FailedTaskCleanupPolicy,
    api: Api<FailedTaskCleanupPolicy>,
    status: FailedTaskCleanupPolicyStatus,
}

impl Writer<'_> {
    /// Computes the next status and writes it when it differs. Returns whether it was written.
    async fn apply(&mut self, observed: &Observed, verdict: &Verdict<'_>) -> Result<bool, ReconcileError> {
        let max = Some(u64::from(self.policy.spec.max_deletions_per_run));
        let next = next_status(&self.status, observed, verdict, max);
        if next == self.status {
            return Ok(false);
        }
        let patch = serde_json::json!({
            "apiVersion": FailedTaskCleanupPolicy::api_version(&()),
            "kind": FailedTaskCleanupPolicy::kind(&()),
            "status": next,
        });
        let params = PatchParams::apply(FIELD_MANAGER).force();
        self.api
            .patch_status(&self.policy.name_any(), &params, &Patch::Apply(&patch))
            .await
            .map_err(ReconcileError::PatchStatus)?;
        self.ctx.metrics.status_writes.inc();
        self.status = next;
        Ok(true)
    }

    /// Reports a policy that cannot run; the event goes out only when the status changed.
    async fn block(&mut self, observed: &Observed, blocked: &Blocked) -> Result<Action, ReconcileError> {
        if self.apply(observed, &blocked.verdict()).await? {
            events::blocked(&self.ctx.recorder(), self.policy, blocked).await;
        }
        Ok(Action::await_change())
    }
}

async fn reconcile_inner(policy: &FailedTaskCleanupPolicy, ctx: &Context) -> Result<Action, ReconcileError> {
    let namespace = policy.namespace().ok_or(ReconcileError::ReadNamespace)?;
    let api: Api<FailedTaskCleanupPolicy> = Api::namespaced(ctx.client.clone(), &namespace);
    // The cache may not hold this controller's last status write yet; the API server does, and
    // deciding from a stale status could run a policy twice.
    let Some(policy) =
        api.get_opt(&policy.name_any()).await.map_err(|source| ReconcileError::GetPolicy { source })?
    else {
        return Ok(Action::await_change());
    };
    let policy = &policy;
    // Status times are stored to the second; a run's next time computed from a finer start time
    // would differ from the one computed later from the stored start, and be written again.
    let now = whole_seconds(Timestamp::now());
    let uid = policy.uid().unwrap_or_default();
    let created = policy.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0);
    let mut writer = Writer { ctx, policy, api, status: policy.status.clone().unwrap_or_default() };
    let observed = |next_run, handled_request, now| Observed {
        generation: policy.metadata.generation,
        next_run,
        handled_request,
        now,
    };

    // Validate.
    let prepared = match pipeline::prepare(&policy.spec) {
        Ok(prepared) => prepared,
        Err(blocked) => return writer.block(&observed(None, None, now), &blocked).await,
    };

    // Suspend.
    if policy.spec.suspend {
        writer.apply(&observed(None, None, now), &Verdict::Suspended).await?;
        return Ok(Action::await_change());
    }

    // Credentials and endpoints.
    let secret_name = &policy.spec.credentials_ref.name;
    let secret = Api::<Secret>::namespaced(ctx.client.clone(), &namespace)
        .get_opt(secret_name)
        .await
        .map_err(|source| ReconcileError::GetSecret { name: secret_name.clone(), source })?;
    let secret_version = secret.as_ref().and_then(|s| s.resource_version());
    let data: Option<BTreeMap<String, Vec<u8>>> =
        secret.map(|s| s.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect());
    let cloud = match pipeline::credentials(secret_name, data.as_ref())
        .and_then(|credentials| pipeline::cloud_api(&policy.spec, &prepared.policy, credentials, &ctx.http))
    {
        Ok(cloud) => cloud,
        Err(blocked) => return writer.block(&observed(None, None, now), &blocked).await,
    };

    // Due?
    let last_run = writer.status.last_schedule_time.as_ref().map(|t| t.0);
    let rejected_version = ctx.auth_failures.lock().ok().and_then(|f| f.get(&uid).cloned());
    let credentials_changed = rejected_version.as_ref().is_none_or(|v| *v != secret_version);
    let mut next_run = schedule::next_run(&prepared.valid.schedule, last_run, created, &uid);
    if rejected_credentials(&writer.status) {
        next_run =
            if credentials_changed { Some(now) } else { next_run.map(|n| n.max(after_auth_retry(last_run))) };
    }
    next_run = status::earliest(next_run, status::retry_time(&writer.status));
    let request = policy
        .annotations()
        .get(REQUESTED_AT)
        .filter(|r| writer.status.last_handled_requested_at.as_ref() != Some(*r))
        .cloned();
    let due = request.is_some() || next_run.is_some_and(|n| n <= now);
    if !due {
        writer.apply(&observed(next_run, None, now), &Verdict::Waiting).await?;
        return Ok(requeue_at(next_run, now));
    }

    // Run.
    writer
        .apply(
            &observed(writer.status.next_schedule_time.as_ref().map(|t| t.0), request.clone(), now),
            &Verdict::Running,
        )
        .await?;
    tracing::info!(policy = %policy.name_any(), namespace, manual = request.is_some(), "purge run started");
    let report = purge::execute(&cloud, &prepared.policy, now, &ctx.permits).await;
    let finished = Timestamp::now();
    let auth_failed = report.worst_failure().is_some_and(|f| f.kind == purge::FailureKind::Authentication);
    if let Ok(mut failures) = ctx.auth_failures.lock() {
        if auth_failed {
            failures.insert(uid.clone(), secret_version);
        } else {
            failures.remove(&uid);
        }
    }
    let mut next_run = schedule::next_run(&prepared.valid.schedule, Some(now), created, &uid);
    if auth_failed {
        next_run = next_run.map(|n| n.max(after_auth_retry(Some(now))));
    }
    let verdict = Verdict::Ran { report: &report, started: now, dry_run: policy.spec.dry_run };
    writer.apply(&observed(next_run, request, finished), &verdict).await?;
    // The status may bring the next run forward to retry a transient failure.
    let next_run = writer.status.next_schedule_time.as_ref().map(|t| t.0);
    record(ctx, &report, &writer.status, finished.duration_since(now));
    events::ran(&ctx.recorder(), policy, &writer.status).await;
    tracing::info!(
        policy = %policy.name_any(),
        namespace,
        found = report.found(),
        deleted = report.deleted(),
        remaining = report.remaining(),
        failed_calls = report.failed_calls,
        "purge run finished"
    );
    Ok(requeue_at(next_run, finished))
}

fn rejected_credentials(status: &FailedTaskCleanupPolicyStatus) -> bool {
    status
        .condition(crate::api::ConditionType::Ready)
        .is_some_and(|c| c.reason == Reason::AuthenticationFailed.as_str())
}

fn after_auth_retry(last_run: Option<Timestamp>) -> Timestamp {
    let retry = SignedDuration::try_from(AUTH_RETRY).unwrap_or(SignedDuration::ZERO);
    last_run.and_then(|l| l.checked_add(retry).ok()).unwrap_or(Timestamp::MAX)
}

fn requeue_at(next_run: Option<Timestamp>, now: Timestamp) -> Action {
    match next_run {
        None => Action::await_change(),
        Some(at) => {
            let wait = Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO);
            Action::requeue(wait.max(Duration::from_secs(1)))
        }
    }
}

fn record(
    ctx: &Context,
    report: &purge::RunReport,
    status: &FailedTaskCleanupPolicyStatus,
    took: SignedDuration,
) {
    let m = &ctx.metrics;
    let reason =
        status.condition(crate::api::ConditionType::Ready).map(|c| c.reason.clone()).unwrap_or_default();
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
    }
}
