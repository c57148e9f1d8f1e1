//! Prometheus metrics of the controller. No I/O here; `server` exposes them.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::cloud::RateLimiters;

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
    pub failed_calls: Counter,
    pub status_writes: Counter,
    /// Current rate of each client-side limiter, refreshed from [`Self::track_rate_limiters`] at
    /// every scrape, so the hot path of a call never touches it.
    pub rate_limit: Family<RateLimitLabels, Gauge<f64, AtomicU64>>,
    limiters: Mutex<Option<Arc<RateLimiters>>>,
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
        let failed_calls = Counter::default();
        let status_writes = Counter::default();
        let rate_limit = Family::default();
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
        Self {
            registry,
            reconciles,
            reconcile_errors,
            runs,
            run_seconds,
            targets,
            deleted,
            failed_calls,
            status_writes,
            rate_limit,
            limiters: Mutex::default(),
        }
    }
}

impl Metrics {
    /// Shows the current rate of every key of `limiters` in [`Self::rate_limit`] from now on, in
    /// place of any limiters tracked before.
    pub fn track_rate_limiters(&self, limiters: Arc<RateLimiters>) {
        *self.limiters.lock().unwrap_or_else(PoisonError::into_inner) = Some(limiters);
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
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
}
