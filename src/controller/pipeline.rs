//! One run of one policy, as a visible pipeline that the controller and the `purge` and `demo`
//! commands share: prepare (validate and compile), honour suspend, read the credentials, build the
//! cloud client (endpoint allowlist), decide whether a run is due, discover the projects (for
//! `spec.projectDiscovery`, see [`super::discover`]), execute, and compute the next status. What
//! differs between callers comes in through [`Host`]: where the Secret comes from,
//! whether a run is due, where a status goes. Does cloud I/O, and whatever I/O the host does.

use super::schedule;
use super::status::{Observed, Verdict, budget_spent_before, next_status};
use crate::api::{
    ConditionType, CredentialSource, FailedTaskCleanupPolicy, FailedTaskCleanupPolicySpec,
    FailedTaskCleanupPolicyStatus, Reason, ValidatedSpec,
};
use crate::cloud::CloudHttp;
use crate::cloud::credentials::Credentials;
use crate::purge::{CloudApi, FailureKind, Fence, PurgePolicy, RunReport};
use jiff::{SignedDuration, Timestamp};
use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

/// After Huawei Cloud rejected the credentials, the policy runs again no sooner than this unless
/// its Secret changes.
pub const AUTH_RETRY: Duration = Duration::from_secs(15 * 60);

/// The controller neither watches nor lists Secrets (least privilege: it may only `get` them), so
/// a policy waiting for its Secret looks again on a backoff that grows with the time it has waited:
/// the first retry after [`SECRET_RETRY_MIN`], then never more than [`SECRET_RETRY_MAX`] apart. A
/// Secret created or fixed is therefore picked up within [`SECRET_RETRY_MAX`].
pub const SECRET_RETRY_MIN: Duration = Duration::from_secs(10);
/// See [`SECRET_RETRY_MIN`].
pub const SECRET_RETRY_MAX: Duration = Duration::from_secs(60);

/// Whether a policy stalled for this reason waits for its Secret to be created or changed.
pub fn waits_for_secret(reason: Reason) -> bool {
    match reason {
        Reason::CredentialsNotFound | Reason::CredentialsInvalid | Reason::AuthenticationFailed => true,
        Reason::Purged
        | Reason::DryRun
        | Reason::Suspended
        | Reason::Waiting
        | Reason::Running
        | Reason::Idle
        | Reason::AsExpected
        | Reason::EndpointNotAllowed
        | Reason::Throttled
        | Reason::PartialFailure
        | Reason::CloudUnavailable
        | Reason::DeletionLimitReached
        | Reason::InvalidSpec => false,
    }
}

/// How long until the policy reads its Secret again, when its status says it is stalled waiting
/// for the Secret (missing, invalid, or rejected by the cloud): the time it has been stalled,
/// bounded to [`SECRET_RETRY_MIN`]..=[`SECRET_RETRY_MAX`]. `None` when it is not waiting for it.
pub fn secret_retry(status: &FailedTaskCleanupPolicyStatus, now: Timestamp) -> Option<Duration> {
    let stalled = status.condition(ConditionType::Stalled)?;
    let reason = status.reason(ConditionType::Stalled)?;
    if stalled.status != "True" || !waits_for_secret(reason) {
        return None;
    }
    let waited =
        Duration::try_from(now.duration_since(stalled.last_transition_time.0)).unwrap_or(Duration::ZERO);
    Some(waited.clamp(SECRET_RETRY_MIN, SECRET_RETRY_MAX))
}

/// Why a policy cannot run until the user changes something.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocked {
    pub reason: Reason,
    pub message: String,
}

impl Blocked {
    /// How soon a pass blocked this way looks again by itself: soon when the cloud (IAM, for
    /// project discovery) was away or throttling; otherwise the user must act (a spec change is
    /// watched; a Secret is retried by [`secret_retry`]).
    pub fn retry(&self) -> Option<Duration> {
        matches!(self.reason, Reason::CloudUnavailable | Reason::Throttled).then_some(SECRET_RETRY_MAX)
    }

    pub fn verdict(&self) -> Verdict<'static> {
        Verdict::Blocked { reason: self.reason, message: self.message.clone() }
    }
}

/// A policy ready to run: the compiled spec (schedule, endpoints, budget, ...) and the purge's
/// view of it.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub valid: ValidatedSpec,
    pub policy: PurgePolicy,
}

/// Validates the spec and compiles it; the raw spec is not read again after this. `name` names
/// the policy in audit records.
pub fn prepare(name: String, spec: &FailedTaskCleanupPolicySpec) -> Result<Prepared, Blocked> {
    let valid = crate::api::validate(spec).map_err(|errors| Blocked {
        reason: Reason::InvalidSpec,
        message: errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "),
    })?;
    let policy = PurgePolicy::new(name, &valid);
    Ok(Prepared { valid, policy })
}

/// Reads credentials from a Secret's data; `None` when the Secret does not exist.
pub fn credentials(secret: &str, data: Option<&BTreeMap<String, Vec<u8>>>) -> Result<Credentials, Blocked> {
    let data = data.ok_or_else(|| Blocked {
        reason: Reason::CredentialsNotFound,
        message: format!("Secret {secret:?} not found in the policy's namespace; create it with accessKeyId and secretAccessKey, or authToken"),
    })?;
    Credentials::from_map(|key| data.get(key).map(Vec::as_slice)).map_err(|e| Blocked {
        reason: Reason::CredentialsInvalid,
        message: format!("Secret {secret:?}: {e}"),
    })
}

/// The cloud as the policy reaches it, once every endpoint it needs passed the allowlist.
pub fn cloud_api(
    prepared: &Prepared,
    credentials: Credentials,
    http: &CloudHttp,
) -> Result<CloudApi, Blocked> {
    let api = CloudApi::new(http.clone(), credentials, prepared.valid.endpoints.clone());
    api.check_endpoints(&prepared.policy).map_err(|e| Blocked {
        reason: Reason::EndpointNotAllowed,
        message: format!(
            "{}; allow it with the controller's --endpoint-allowlist or remove the override",
            error_chain(&e)
        ),
    })?;
    Ok(api)
}

/// A credentials Secret as the host read it. Its `Debug` shows the keys, never the values.
#[derive(Clone, Default)]
pub struct SecretData {
    /// Its keys and values.
    pub data: BTreeMap<String, Vec<u8>>,
    /// Its resourceVersion, to tell a fixed Secret from the one the cloud rejected.
    pub version: Option<String>,
}

impl std::fmt::Debug for SecretData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretData")
            .field("keys", &self.data.keys().collect::<Vec<_>>())
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// Whether a policy that can run should run now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Due {
    /// Run now; `request` is the `taskreaper.io/requested-at` value handled, if that is why.
    Now { request: Option<String> },
    /// Not yet: wait for `next_run` (none when nothing is scheduled).
    Later { next_run: Option<Timestamp> },
}

/// What the caller of [`run_policy`] provides around the shared steps.
pub trait Host {
    type Error;
    /// Reads the Secret `name` in the policy's namespace; `None` when it does not exist.
    fn secret(&mut self, name: &str) -> impl Future<Output = Result<Option<SecretData>, Self::Error>> + Send;
    /// Temporary credentials for a workload-identity `source` (never [`CredentialSource::Secret`]):
    /// an ID token exchanged at IAM, cached and refreshed. `Ok(Err(_))` when the user must act.
    /// Hosts without workload identity refuse it.
    fn federated(
        &mut self,
        source: &CredentialSource,
        now: Timestamp,
    ) -> impl Future<Output = Result<Result<Credentials, Blocked>, Self::Error>> + Send {
        let _ = now;
        let message = format!(
            "{} needs the controller (taskreaper run with --token-audience): this command reads credentials from a Secret only",
            source.describe()
        );
        async move { Ok(Err(Blocked { reason: Reason::CredentialsNotFound, message })) }
    }
    /// IAM and its cached answers, for policies with `spec.projectDiscovery`; `None` refuses them.
    fn discovery(&self) -> Option<&super::discover::ProjectDiscovery> {
        None
    }
    /// Decides whether a policy that can run runs now, from its compiled spec, its status, the
    /// version of its Secret and the clock.
    fn due(
        &mut self,
        valid: &ValidatedSpec,
        status: &FailedTaskCleanupPolicyStatus,
        secret_version: Option<&str>,
        now: Timestamp,
    ) -> Due;
    /// How audit records name `policy`: `namespace/name` unless the host knows better.
    fn policy_name(&self, policy: &FailedTaskCleanupPolicy) -> String {
        format!(
            "{}/{}",
            policy.metadata.namespace.as_deref().unwrap_or_default(),
            policy.metadata.name.as_deref().unwrap_or_default()
        )
    }
    /// Whether this caller may still delete; the controller's is fed by leader election and
    /// shutdown. Unfenced unless the host says otherwise.
    fn fence(&self) -> Fence {
        Fence::unfenced()
    }
    /// Stores a status that differs from the last one.
    fn write(
        &mut self,
        status: &FailedTaskCleanupPolicyStatus,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// How a pass over a policy ended.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// The user must change something; `changed` says whether the status changed because of it.
    Blocked { blocked: Blocked, changed: bool },
    /// `spec.suspend` is true: no cloud call was made.
    Suspended,
    /// Ready to run, but not due until `next_run`.
    Waiting { next_run: Option<Timestamp> },
    /// A run happened.
    Ran {
        report: RunReport,
        started: Timestamp,
        finished: Timestamp,
        /// The version of the Secret the run used.
        secret_version: Option<String>,
        /// Which identity the run's credentials came from ([`CredentialSource::describe`]).
        identity: String,
    },
}

/// The outcome of [`run_policy`] and the status it left.
#[derive(Clone, Debug)]
pub struct Finished {
    pub outcome: Outcome,
    pub status: FailedTaskCleanupPolicyStatus,
}

/// The one pass over a policy that every caller shares: prepare, suspend, credentials, cloud
/// client, due?, discovered projects, execute, next status. Each status along the way goes to
/// [`Host::write`] when it
/// differs from the one before; `now` is when the pass (and a run it starts) began.
pub async fn run_policy<H: Host>(
    policy: &FailedTaskCleanupPolicy,
    host: &mut H,
    http: &CloudHttp,
    now: Timestamp,
) -> Result<Finished, H::Error> {
    let mut status = policy.status.clone().unwrap_or_default();
    let observed = |next_run, handled_request, now| Observed {
        generation: policy.metadata.generation,
        next_run,
        handled_request,
        now,
    };

    // Prepare.
    let mut prepared = match prepare(host.policy_name(policy), &policy.spec) {
        Ok(prepared) => prepared,
        Err(blocked) => return block(host, status, &observed(None, None, now), blocked).await,
    };
    let valid = &prepared.valid;

    // Suspend.
    if valid.suspend {
        apply(host, &mut status, &observed(None, None, now), &Verdict::Suspended, None).await?;
        return Ok(Finished { outcome: Outcome::Suspended, status });
    }

    // Credentials (from a Secret, or temporary ones from workload identity) and endpoints.
    let (resolved, secret_version) = match &valid.credentials {
        CredentialSource::Secret(name) => {
            let secret = host.secret(name).await?;
            let version = secret.as_ref().and_then(|s| s.version.clone());
            (credentials(name, secret.as_ref().map(|s| &s.data)), version)
        }
        source => (host.federated(source, now).await?, None),
    };
    let fence = host.fence();
    let credentials = match resolved {
        Ok(credentials) => credentials,
        Err(blocked) => return block(host, status, &observed(None, None, now), blocked).await,
    };
    let mut cloud = match cloud_api(&prepared, credentials.clone(), http) {
        Ok(cloud) => cloud.with_fence(fence.clone()),
        Err(blocked) => return block(host, status, &observed(None, None, now), blocked).await,
    };

    // Due?
    let request = match host.due(valid, &status, secret_version.as_deref(), now) {
        Due::Now { request } => request,
        Due::Later { next_run } => {
            apply(host, &mut status, &observed(next_run, None, now), &Verdict::Waiting, None).await?;
            return Ok(Finished { outcome: Outcome::Waiting { next_run }, status });
        }
    };

    // Discovered projects (a cached IAM answer, or a fresh one), whose endpoints pass the allowlist.
    let mut discovered = None;
    if let Some(discovery) = &valid.discovery {
        let projects = match host.discovery() {
            Some(d) => d.projects(discovery, &credentials, now).await,
            None => Err(Blocked {
                reason: Reason::InvalidSpec,
                message: "spec.projectDiscovery is not supported here; list spec.projects instead".into(),
            }),
        };
        let mut with_projects = prepared.clone();
        let found = projects.and_then(|projects| {
            discovered = Some(super::discover::note(discovery, projects.len()));
            with_projects.policy.projects = projects;
            cloud_api(&with_projects, credentials.clone(), http)
        });
        match found {
            Ok(api) => cloud = api.with_fence(fence),
            Err(blocked) => return block(host, status, &observed(None, None, now), blocked).await,
        }
        prepared = with_projects;
    }
    let valid = &prepared.valid;

    // Run, with what is left of the scheduled run's budget when this retries it.
    let created = policy.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0);
    let uid = policy.metadata.uid.as_deref().unwrap_or_default();
    let last_run = status.last_schedule_time.as_ref().map(|t| t.0);
    let on_schedule = schedule::next_run(&valid.schedule, last_run, created, uid);
    let max = prepared.policy.max_deletions;
    let spent_before = budget_spent_before(&status, on_schedule, request.is_some(), now, max);
    let scheduled = status.next_schedule_time.as_ref().map(|t| t.0);
    apply(host, &mut status, &observed(scheduled, request.clone(), now), &Verdict::Running, None).await?;
    let budget = max.saturating_sub(spent_before);
    let mut report = crate::purge::execute(&cloud, &prepared.policy, now, budget).await;
    report.budget_spent += spent_before;
    let finished = Timestamp::now();

    // Next status.
    let mut next_run = schedule::next_run(&valid.schedule, Some(now), created, uid);
    if auth_failed(&report) {
        next_run = next_run.map(|n| n.max(after_auth_retry(Some(now))));
    }
    let identity = valid.credentials.describe();
    let verdict = Verdict::Ran {
        report: &report,
        started: now,
        dry_run: valid.dry_run,
        discovered: discovered.as_deref(),
        credentials: Some(&identity),
    };
    apply(host, &mut status, &observed(next_run, request, finished), &verdict, Some(valid.max_deletions))
        .await?;
    Ok(Finished {
        outcome: Outcome::Ran { report, started: now, finished, secret_version, identity },
        status,
    })
}

/// Computes the next status and hands it to the host when it differs. Returns whether it did.
async fn apply<H: Host>(
    host: &mut H,
    status: &mut FailedTaskCleanupPolicyStatus,
    observed: &Observed,
    verdict: &Verdict<'_>,
    max_deletions: Option<u64>,
) -> Result<bool, H::Error> {
    let next = next_status(status, observed, verdict, max_deletions);
    if next == *status {
        return Ok(false);
    }
    host.write(&next).await?;
    *status = next;
    Ok(true)
}

async fn block<H: Host>(
    host: &mut H,
    mut status: FailedTaskCleanupPolicyStatus,
    observed: &Observed,
    blocked: Blocked,
) -> Result<Finished, H::Error> {
    let changed = apply(host, &mut status, observed, &blocked.verdict(), None).await?;
    Ok(Finished { outcome: Outcome::Blocked { blocked, changed }, status })
}

/// Whether the cloud refused the run's credentials.
pub fn auth_failed(report: &RunReport) -> bool {
    report.worst_failure().is_some_and(|f| f.kind == FailureKind::Authentication)
}

/// The earliest a run may follow one at `last_run` whose credentials were refused.
pub fn after_auth_retry(last_run: Option<Timestamp>) -> Timestamp {
    let retry = SignedDuration::try_from(AUTH_RETRY).unwrap_or(SignedDuration::ZERO);
    last_run.and_then(|l| l.checked_add(retry).ok()).unwrap_or(Timestamp::MAX)
}

/// An error and its sources, joined with ": ".
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        message.push_str(": ");
        message.push_str(&e.to_string());
        source = e.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_data_debug_names_keys_never_values() {
        let data = SecretData {
            data: BTreeMap::from([("secretAccessKey".to_string(), b"very-secret-value".to_vec())]),
            version: Some("7".into()),
        };
        let shown = format!("{data:?}");
        assert!(shown.contains("secretAccessKey") && !shown.contains("very-secret"), "{shown}");
        assert!(!shown.contains("118, 101"), "no raw bytes either: {shown}");
    }
    use crate::cloud::{HttpConfig, RateLimit, RateLimiters, SystemClock};
    use std::convert::Infallible;
    use std::sync::Arc;

    fn example() -> FailedTaskCleanupPolicySpec {
        serde_saphyr::from_str::<FailedTaskCleanupPolicy>(crate::api::EXAMPLE_POLICY).unwrap().spec
    }

    /// Records what the pipeline asked of it; a run is never due, so no cloud call is made.
    #[derive(Default)]
    struct Probe {
        secret: Option<SecretData>,
        asked: Vec<&'static str>,
        written: Vec<FailedTaskCleanupPolicyStatus>,
    }

    impl Host for Probe {
        type Error = Infallible;

        async fn secret(&mut self, _name: &str) -> Result<Option<SecretData>, Infallible> {
            self.asked.push("secret");
            Ok(self.secret.clone())
        }

        fn due(
            &mut self,
            _: &ValidatedSpec,
            _: &FailedTaskCleanupPolicyStatus,
            _: Option<&str>,
            _: Timestamp,
        ) -> Due {
            self.asked.push("due");
            Due::Later { next_run: Some("2026-11-22T01:00:00Z".parse().unwrap()) }
        }

        async fn write(&mut self, status: &FailedTaskCleanupPolicyStatus) -> Result<(), Infallible> {
            self.written.push(status.clone());
            Ok(())
        }
    }

    async fn pass(spec: FailedTaskCleanupPolicySpec, probe: &mut Probe) -> Finished {
        let policy = FailedTaskCleanupPolicy::new("p", spec);
        let http = CloudHttp::new(
            HttpConfig::default(),
            RateLimiters::new(RateLimit::default()),
            Arc::new(SystemClock),
        )
        .unwrap();
        let now = "2026-11-22T00:00:00Z".parse().unwrap();
        match run_policy(&policy, probe, &http, now).await {
            Ok(finished) => finished,
            Err(never) => match never {},
        }
    }

    fn token() -> Option<SecretData> {
        Some(SecretData { data: BTreeMap::from([("authToken".to_string(), b"t".to_vec())]), version: None })
    }

    #[tokio::test]
    async fn a_suspended_policy_reads_no_secret_and_says_so() {
        let mut spec = example();
        spec.suspend = true;
        let mut probe = Probe { secret: token(), ..Probe::default() };
        let finished = pass(spec, &mut probe).await;
        assert!(matches!(finished.outcome, Outcome::Suspended));
        assert!(probe.asked.is_empty(), "{:?}", probe.asked);
        assert_eq!(finished.status.reason(ConditionType::Ready), Some(Reason::Suspended));
        assert_eq!(probe.written, [finished.status]);
    }

    #[tokio::test]
    async fn a_missing_secret_or_a_refused_endpoint_blocks_before_the_due_decision() {
        let mut probe = Probe::default();
        let finished = pass(example(), &mut probe).await;
        assert!(matches!(finished.outcome, Outcome::Blocked { changed: true, .. }));
        assert_eq!(finished.status.reason(ConditionType::Stalled), Some(Reason::CredentialsNotFound));
        assert_eq!(probe.asked, ["secret"]);

        let mut spec = example();
        spec.endpoints =
            Some(crate::api::Endpoints { sdrs: Some("https://evil.example.com".into()), kps: None });
        let mut probe = Probe { secret: token(), ..Probe::default() };
        let finished = pass(spec, &mut probe).await;
        assert_eq!(finished.status.reason(ConditionType::Ready), Some(Reason::EndpointNotAllowed));
        assert_eq!(probe.asked, ["secret"]);
    }

    #[tokio::test]
    async fn a_policy_that_is_not_due_waits_and_writes_once() {
        let mut probe = Probe { secret: token(), ..Probe::default() };
        let finished = pass(example(), &mut probe).await;
        assert!(matches!(finished.outcome, Outcome::Waiting { next_run: Some(_) }));
        assert_eq!(probe.asked, ["secret", "due"]);
        assert_eq!(finished.status.reason(ConditionType::Ready), Some(Reason::Waiting));
        assert_eq!(probe.written.len(), 1);
    }

    #[test]
    fn an_invalid_spec_blocks_with_every_problem() {
        let mut spec = example();
        spec.projects[0].id = "nothex".into();
        spec.schedule.interval = Some("10s".into());
        spec.schedule.cron = None;
        spec.schedule.time_zone = None;
        let blocked = prepare("p".into(), &spec).unwrap_err();
        assert_eq!(blocked.reason, Reason::InvalidSpec);
        assert!(blocked.message.contains("32 lowercase hexadecimal"), "{}", blocked.message);
        assert!(blocked.message.contains("at least 1m"), "{}", blocked.message);
    }

    #[test]
    fn a_policy_waiting_for_its_secret_retries_on_a_bounded_backoff() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
        let since: Timestamp = "2026-11-22T00:00:00Z".parse().unwrap();
        let stalled = |status: &str, reason: Reason| FailedTaskCleanupPolicyStatus {
            conditions: vec![Condition {
                type_: ConditionType::Stalled.as_str().into(),
                status: status.into(),
                reason: reason.as_str().into(),
                message: String::new(),
                last_transition_time: Time(since),
                observed_generation: None,
            }],
            ..FailedTaskCleanupPolicyStatus::default()
        };
        let at = |secs: i64| since + SignedDuration::from_secs(secs);
        let missing = stalled("True", Reason::CredentialsNotFound);
        let retries: Vec<u64> =
            [0, 5, 10, 25, 59, 60, 600].map(|s| secret_retry(&missing, at(s)).unwrap().as_secs()).to_vec();
        assert_eq!(retries, [10, 10, 10, 25, 59, 60, 60]);
        for reason in [Reason::CredentialsInvalid, Reason::AuthenticationFailed] {
            assert_eq!(secret_retry(&stalled("True", reason), at(0)), Some(SECRET_RETRY_MIN));
        }
        // A clock behind the condition still waits the minimum.
        assert_eq!(secret_retry(&missing, at(-30)), Some(SECRET_RETRY_MIN));
        // Other stalls wait for a spec change; a policy that is not stalled follows its schedule.
        assert_eq!(secret_retry(&stalled("True", Reason::InvalidSpec), at(0)), None);
        assert_eq!(secret_retry(&stalled("True", Reason::EndpointNotAllowed), at(0)), None);
        assert_eq!(secret_retry(&stalled("False", Reason::AsExpected), at(0)), None);
        assert_eq!(secret_retry(&FailedTaskCleanupPolicyStatus::default(), at(0)), None);
    }

    #[test]
    fn a_cloud_that_was_away_is_retried_without_stalling() {
        let away = Blocked { reason: Reason::CloudUnavailable, message: "IAM: timeout".into() };
        assert_eq!(away.retry(), Some(SECRET_RETRY_MAX));
        let now = "2026-11-22T00:00:00Z".parse().unwrap();
        let observed = Observed { generation: Some(1), next_run: None, handled_request: None, now };
        let status = next_status(&FailedTaskCleanupPolicyStatus::default(), &observed, &away.verdict(), None);
        assert_eq!(status.reason(ConditionType::Ready), Some(Reason::CloudUnavailable));
        assert_eq!(status.condition(ConditionType::Stalled).map(|c| c.status.as_str()), Some("False"));
        let invalid = Blocked { reason: Reason::InvalidSpec, message: "3 projects match".into() };
        assert_eq!(invalid.retry(), None);
        let status =
            next_status(&FailedTaskCleanupPolicyStatus::default(), &observed, &invalid.verdict(), None);
        assert_eq!(status.reason(ConditionType::Stalled), Some(Reason::InvalidSpec));
    }

    #[test]
    fn credentials_are_found_or_explained() {
        assert_eq!(credentials("creds", None).unwrap_err().reason, Reason::CredentialsNotFound);
        let empty = BTreeMap::new();
        let blocked = credentials("creds", Some(&empty)).unwrap_err();
        assert_eq!(blocked.reason, Reason::CredentialsInvalid);
        assert!(blocked.message.contains("accessKeyId"), "{}", blocked.message);
        let data = BTreeMap::from([("authToken".to_string(), b"t".to_vec())]);
        assert!(credentials("creds", Some(&data)).is_ok());
    }
}
