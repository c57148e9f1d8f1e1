//! Telemetry: tracing setup (here), Prometheus metrics, and the metrics/health HTTP endpoint.

pub mod metrics;
pub mod server;

pub use metrics::Metrics;
pub use server::Health;

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A second call (tests) keeps the first subscriber.
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}
