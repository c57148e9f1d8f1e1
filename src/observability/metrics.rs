//! Prometheus metrics of the controller. No I/O here; `server` exposes them.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

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
        }
    }
}

impl Metrics {
    /// The text exposition format.
    pub fn encode(&self) -> String {
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
}
