//! Prometheus metrics of the controller. No I/O here; `server` exposes them.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::cloud::observe::{CallObserver, status_class};
use crate::cloud::{RateLimiters, Service};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunLabels {
    /// The Ready reason the run ended with.
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabels {
    pub service: String,
    pub scope: String,
    pub outcome: String,
}

/// One rate limiter: the endpoint host and the credentials identity (an access key id or a hash of
/// a token, never a secret).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RateLimitLabels {
    pub host: String,
    pub identity: String,
}

/// The HTTP status of an answer as a label value, `none` when there was no answer.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct StatusCode(pub Option<u16>);

impl EncodeLabelValue for StatusCode {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        use std::fmt::Write as _;
        match self.0 {
            Some(code) => write!(encoder, "{code}"),
            None => encoder.write_str("none"),
        }
    }
}

/// One HTTP request to a cloud service, by how it was answered.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CloudRequestLabels {
    /// `SDRS` or `KPS`.
    pub service: &'static str,
    /// The API operation, as Huawei Cloud names it (`ListFailureJobs`, `DeleteFailedTask`, ...).
    pub operation: &'static str,
    /// `2xx`, `3xx`, `4xx`, `5xx`, or `error` when no answer came.
    pub class: &'static str,
    pub code: StatusCode,
}

/// One operation of a cloud service.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub service: &'static str,
    pub operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabels {
    pub service: &'static str,
}

/// Watched policies by their Ready condition.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReadyLabels {
    /// `True`, `False` or `Unknown` (no Ready condition yet).
    pub ready: String,
    /// The Ready reason; empty when there is no Ready condition.
    pub reason: String,
}

/// One policy.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct PolicyLabels {
    pub namespace: String,
    pub name: String,
}

/// One watched policy as the controller's cache shows it, for [`Metrics::track_policies`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyState {
    pub policy: PolicyLabels,
    pub ready: ReadyLabels,
}

/// Lists the watched policies, at each scrape.
pub type PolicySource = Arc<dyn Fn() -> Vec<PolicyState> + Send + Sync>;

/// A [`PolicySource`]; shown by `Debug` as nothing more than that.
#[derive(Clone)]
struct Tracked(PolicySource);

impl std::fmt::Debug for Tracked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PolicySource")
    }
}

/// All metrics, registered once per process.
#[derive(Debug)]
pub struct Metrics {
    pub registry: Registry,
    pub reconciles: Counter,
    pub reconcile_errors: Counter,
    pub runs: Family<RunLabels, Counter>,
    pub run_seconds: Histogram,
    pub targets: Family<TargetLabels, Counter>,
    pub deleted: Family<TargetLabels, Counter>,
    /// Covered tasks still listed after the cloud accepted their DELETE twice.
    pub not_removed: Family<TargetLabels, Counter>,
    pub failed_calls: Counter,
    pub status_writes: Counter,
    /// Current rate of each client-side limiter, refreshed from [`Self::track_rate_limiters`] at
    /// every scrape, so the hot path of a call never touches it.
    pub rate_limit: Family<RateLimitLabels, Gauge<f64, AtomicU64>>,
    /// HTTP requests to the cloud, each attempt on its own.
    pub cloud_requests: Family<CloudRequestLabels, Counter>,
    pub cloud_request_seconds: Family<OperationLabels, Histogram>,
    /// Requests answered 429.
    pub cloud_throttled: Family<OperationLabels, Counter>,
    /// Seconds slept before retries because the service throttled.
    pub cloud_throttle_wait: Family<ServiceLabels, Counter<f64, AtomicU64>>,
    /// 1 while this replica holds the leader Lease (or runs without leader election).
    pub leader: Gauge,
    /// Filled at each scrape from [`Self::track_policies`].
    pub policies: Family<ReadyLabels, Gauge>,
    /// Filled at each scrape from [`Self::not_ready_runs`], for the policies still watched.
    pub policy_not_ready_runs: Family<PolicyLabels, Gauge>,
    limiters: Mutex<Option<Arc<RateLimiters>>>,
    policy_source: Mutex<Option<Tracked>>,
    /// Consecutive runs that ended not Ready, per policy.
    not_ready_runs: Mutex<HashMap<PolicyLabels, i64>>,
    /// Held while a scrape rebuilds the families it fills, so two scrapes cannot interleave.
    scrape: Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("taskreaper");
        let reconciles = Counter::default();
        let reconcile_errors = Counter::default();
        let runs = Family::default();
        let run_seconds = Histogram::new(exponential_buckets(0.05, 2.0, 14));
        let targets = Family::default();
        let deleted = Family::default();
        let not_removed = Family::default();
        let failed_calls = Counter::default();
        let status_writes = Counter::default();
        let rate_limit = Family::default();
        let cloud_requests = Family::default();
        let cloud_request_seconds = Family::<OperationLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.005, 2.0, 14))) as fn() -> Histogram,
        );
        let cloud_throttled: Family<OperationLabels, Counter> = Family::default();
        let cloud_throttle_wait: Family<ServiceLabels, Counter<f64, AtomicU64>> = Family::default();
        let leader = Gauge::default();
        let policies = Family::default();
        let policy_not_ready_runs = Family::default();
        // Known label sets start at 0, so that rates and alerts over them work before the first 429.
        for (service, operations) in [
            (Service::Sdrs, &crate::cloud::sdrs::OPERATIONS[..]),
            (Service::Kps, &crate::cloud::kps::OPERATIONS[..]),
        ] {
            let service = service.as_str();
            for &operation in operations {
                let _ = cloud_throttled.get_or_create(&OperationLabels { service, operation });
            }
            let _ = cloud_throttle_wait.get_or_create(&ServiceLabels { service });
        }
        registry.register("reconciles", "Reconciliations of policies", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Reconciliations that failed and will retry",
            reconcile_errors.clone(),
        );
        registry.register("runs", "Purge runs by the Ready reason they ended with", runs.clone());
        registry.register("run_duration_seconds", "Wall time of purge runs", run_seconds.clone());
        registry.register("targets", "Project x target results by outcome", targets.clone());
        registry.register("deleted_tasks", "Failed tasks measured as deleted", deleted.clone());
        registry.register(
            "not_removed_tasks",
            "Failed tasks still listed after the cloud accepted their DELETE twice",
            not_removed.clone(),
        );
        registry.register(
            "failed_calls",
            "Cloud calls that failed after their retries",
            failed_calls.clone(),
        );
        registry.register("status_writes", "Status patches sent to the API server", status_writes.clone());
        registry.register(
            "rate_limit_requests_per_second",
            "Current client-side rate limit per endpoint host and credentials identity",
            rate_limit.clone(),
        );
        registry.register(
            "cloud_requests",
            "HTTP requests to the cloud, each attempt on its own, by answer class and status code",
            cloud_requests.clone(),
        );
        registry.register(
            "cloud_request_duration_seconds",
            "Time from sending a cloud request to the end of its answer",
            cloud_request_seconds.clone(),
        );
        registry.register("cloud_throttled", "Cloud requests answered 429", cloud_throttled.clone());
        registry.register(
            "cloud_retry_after_wait_seconds",
            "Seconds waited before retries because the cloud throttled (Retry-After or backoff)",
            cloud_throttle_wait.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease (always 1 without leader election), else 0",
            leader.clone(),
        );
        registry.register("policies", "Watched policies by Ready status and reason", policies.clone());
        registry.register(
            "policy_not_ready_runs",
            "Consecutive runs of the policy that ended not Ready (0 after a Ready run)",
            policy_not_ready_runs.clone(),
        );
        Self {
            registry,
            reconciles,
            reconcile_errors,
            runs,
            run_seconds,
            targets,
            deleted,
            not_removed,
            failed_calls,
            status_writes,
            rate_limit,
            cloud_requests,
            cloud_request_seconds,
            cloud_throttled,
            cloud_throttle_wait,
            leader,
            policies,
            policy_not_ready_runs,
            limiters: Mutex::default(),
            policy_source: Mutex::default(),
            not_ready_runs: Mutex::default(),
            scrape: Mutex::default(),
        }
    }
}

impl Metrics {
    /// Shows the current rate of every key of `limiters` in [`Self::rate_limit`] from now on, in
    /// place of any limiters tracked before.
    pub fn track_rate_limiters(&self, limiters: Arc<RateLimiters>) {
        *self.limiters.lock().unwrap_or_else(PoisonError::into_inner) = Some(limiters);
    }

    /// Shows the policies `source` lists in [`Self::policies`] from now on, and keeps
    /// [`Self::policy_not_ready_runs`] to those policies.
    pub fn track_policies(&self, source: PolicySource) {
        *self.policy_source.lock().unwrap_or_else(PoisonError::into_inner) = Some(Tracked(source));
    }

    /// Counts a finished run of `policy`: back to 0 when it ended Ready, one more otherwise.
    pub fn run_ended(&self, policy: PolicyLabels, ready: bool) {
        let mut runs = self.not_ready_runs.lock().unwrap_or_else(PoisonError::into_inner);
        let count = runs.entry(policy).or_insert(0);
        *count = if ready { 0 } else { count.saturating_add(1) };
    }

    /// Rebuilds the families filled at scrape time. Label sets that no longer apply disappear:
    /// each family is cleared, then filled.
    fn refresh(&self) {
        let source = self.policy_source.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let Some(Tracked(source)) = source else { return };
        let states = source();
        let mut counts: BTreeMap<(String, String), i64> = BTreeMap::new();
        for state in &states {
            *counts.entry((state.ready.ready.clone(), state.ready.reason.clone())).or_default() += 1;
        }
        self.policies.clear();
        for ((ready, reason), n) in counts {
            self.policies.get_or_create(&ReadyLabels { ready, reason }).set(n);
        }
        let mut runs = self.not_ready_runs.lock().unwrap_or_else(PoisonError::into_inner);
        runs.retain(|policy, _| states.iter().any(|s| s.policy == *policy));
        self.policy_not_ready_runs.clear();
        for (policy, n) in runs.iter() {
            self.policy_not_ready_runs.get_or_create(policy).set(*n);
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let _scrape = self.scrape.lock().unwrap_or_else(PoisonError::into_inner);
        self.refresh();
        if let Some(limiters) = self.limiters.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
            for (key, rate) in limiters.rates() {
                let labels = RateLimitLabels { host: key.host, identity: key.identity };
                self.rate_limit.get_or_create(&labels).set(rate);
            }
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl CallObserver for Metrics {
    fn request(&self, service: Service, operation: &'static str, status: Option<u16>, elapsed: Duration) {
        let service = service.as_str();
        let labels =
            CloudRequestLabels { service, operation, class: status_class(status), code: StatusCode(status) };
        self.cloud_requests.get_or_create(&labels).inc();
        let op = OperationLabels { service, operation };
        self.cloud_request_seconds.get_or_create(&op).observe(elapsed.as_secs_f64());
        if status == Some(429) {
            self.cloud_throttled.get_or_create(&op).inc();
        }
    }

    fn throttle_wait(&self, service: Service, waited: Duration) {
        let labels = ServiceLabels { service: service.as_str() };
        self.cloud_throttle_wait.get_or_create(&labels).inc_by(waited.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_what_was_counted() {
        let m = Metrics::default();
        m.runs.get_or_create(&RunLabels { reason: "Purged".into() }).inc();
        m.deleted
            .get_or_create(&TargetLabels {
                service: "SDRS".into(),
                scope: "All".into(),
                outcome: "Purged".into(),
            })
            .inc_by(7);
        let text = m.encode();
        assert!(text.contains("taskreaper_runs_total{reason=\"Purged\"} 1"), "{text}");
        assert!(
            text.contains(
                "taskreaper_deleted_tasks_total{service=\"SDRS\",scope=\"All\",outcome=\"Purged\"} 7"
            ),
            "{text}"
        );
    }

    #[tokio::test]
    async fn shows_the_rate_of_every_limiter() {
        use crate::cloud::ratelimit::{LimiterKey, Outcome};
        use crate::cloud::{AdaptiveRate, RateLimiters};
        let m = Metrics::default();
        let limiters = RateLimiters::new(AdaptiveRate::default());
        m.track_rate_limiters(limiters.clone());
        let key = LimiterKey { host: "sdrs.example.com".into(), identity: "AKID".into() };
        limiters.acquire(&key).await;
        let text = m.encode();
        let line = "taskreaper_rate_limit_requests_per_second{host=\"sdrs.example.com\",identity=\"AKID\"}";
        assert!(text.contains(&format!("{line} 20.0")), "{text}");
        limiters.record(&key, Outcome::Throttled);
        assert!(m.encode().contains(&format!("{line} 10.0")), "refreshed at each scrape");
    }

    #[test]
    fn encodes_cloud_requests_by_class_and_code() {
        let m = Metrics::default();
        m.request(Service::Sdrs, "ListFailureJobs", Some(200), Duration::from_millis(20));
        m.request(Service::Sdrs, "ListFailureJobs", Some(200), Duration::from_millis(30));
        m.request(Service::Kps, "DeleteFailedTask", Some(429), Duration::from_millis(1));
        m.request(Service::Kps, "DeleteFailedTask", None, Duration::from_secs(30));
        m.throttle_wait(Service::Kps, Duration::from_millis(1500));
        let text = m.encode();
        for line in [
            r#"taskreaper_cloud_requests_total{service="SDRS",operation="ListFailureJobs",class="2xx",code="200"} 2"#,
            r#"taskreaper_cloud_requests_total{service="KPS",operation="DeleteFailedTask",class="4xx",code="429"} 1"#,
            r#"taskreaper_cloud_requests_total{service="KPS",operation="DeleteFailedTask",class="error",code="none"} 1"#,
            r#"taskreaper_cloud_request_duration_seconds_count{service="SDRS",operation="ListFailureJobs"} 2"#,
            r#"taskreaper_cloud_request_duration_seconds_bucket{le="0.04",service="SDRS",operation="ListFailureJobs"} 2"#,
            r#"taskreaper_cloud_throttled_total{service="KPS",operation="DeleteFailedTask"} 1"#,
            r#"taskreaper_cloud_retry_after_wait_seconds_total{service="KPS"} 1.5"#,
            "# TYPE taskreaper_cloud_request_duration_seconds histogram",
            "# TYPE taskreaper_leader gauge",
            "taskreaper_leader 0",
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
        let zero = r#"taskreaper_cloud_throttled_total{service="SDRS",operation="DeleteFailureJob"} 0"#;
        assert!(text.contains(zero), "known label sets start at 0: {text}");
        assert!(
            text.contains(r#"taskreaper_cloud_retry_after_wait_seconds_total{service="SDRS"} 0.0"#),
            "{text}"
        );
    }

    fn state(name: &str, ready: &str, reason: &str) -> PolicyState {
        PolicyState {
            policy: PolicyLabels { namespace: "team-a".into(), name: name.into() },
            ready: ReadyLabels { ready: ready.into(), reason: reason.into() },
        }
    }

    #[test]
    fn policies_are_counted_afresh_at_each_scrape() {
        let m = Metrics::default();
        let watched = Arc::new(Mutex::new(vec![
            state("a", "True", "Purged"),
            state("b", "True", "Purged"),
            state("c", "False", "Throttled"),
        ]));
        let source = watched.clone();
        m.track_policies(Arc::new(move || source.lock().unwrap().clone()));
        let text = m.encode();
        assert!(text.contains(r#"taskreaper_policies{ready="True",reason="Purged"} 2"#), "{text}");
        assert!(text.contains(r#"taskreaper_policies{ready="False",reason="Throttled"} 1"#), "{text}");
        *watched.lock().unwrap() = vec![state("a", "True", "Purged"), state("c", "True", "Purged")];
        let text = m.encode();
        assert!(text.contains(r#"taskreaper_policies{ready="True",reason="Purged"} 2"#), "{text}");
        assert!(!text.contains("Throttled"), "no stale label set: {text}");
    }

    #[test]
    fn not_ready_runs_count_up_reset_and_leave_with_the_policy() {
        let m = Metrics::default();
        let watched =
            Arc::new(Mutex::new(vec![state("a", "False", "Throttled"), state("b", "True", "Purged")]));
        let source = watched.clone();
        m.track_policies(Arc::new(move || source.lock().unwrap().clone()));
        let a = PolicyLabels { namespace: "team-a".into(), name: "a".into() };
        let b = PolicyLabels { namespace: "team-a".into(), name: "b".into() };
        m.run_ended(a.clone(), false);
        m.run_ended(a.clone(), false);
        m.run_ended(b.clone(), true);
        let text = m.encode();
        assert!(
            text.contains(r#"taskreaper_policy_not_ready_runs{namespace="team-a",name="a"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"taskreaper_policy_not_ready_runs{namespace="team-a",name="b"} 0"#),
            "{text}"
        );
        m.run_ended(a.clone(), true);
        assert!(m.encode().contains(r#"taskreaper_policy_not_ready_runs{namespace="team-a",name="a"} 0"#));
        watched.lock().unwrap().retain(|s| s.policy.name != "a");
        let text = m.encode();
        assert!(!text.contains(r#"name="a""#), "the deleted policy's series is gone: {text}");
        assert!(text.contains(r#"name="b"} 0"#), "{text}");
    }
}
