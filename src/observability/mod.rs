//! Telemetry: tracing setup (here), Prometheus metrics, and the metrics/health HTTP endpoint. The
//! setup here writes only to stderr.

pub mod metrics;
pub mod server;

pub use metrics::Metrics;
pub use server::Health;

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// How log lines look.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per event; colours only when stderr is a terminal.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, the event's fields (`message`
    /// among them) at the top level, the innermost span as `span` and every enclosing span,
    /// outermost first, as `spans`.
    Json,
}

/// Whether text lines carry ANSI colour codes: only when they go to a terminal. JSON never does.
pub fn use_ansi(format: LogFormat, terminal: bool) -> bool {
    format == LogFormat::Text && terminal
}

/// The subscriber of `format`, filtered by `filter`, writing to `writer`.
pub fn subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    writer: W,
    ansi: bool,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    match format {
        LogFormat::Text => Box::new(builder.with_ansi(ansi).finish()),
        LogFormat::Json => Box::new(
            builder
                .json()
                .with_ansi(false)
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(true)
                .finish(),
        ),
    }
}

/// Logs to stderr in `format`, filtered by `RUST_LOG` (default `info`).
pub fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = use_ansi(format, std::io::stderr().is_terminal());
    // A second call (tests) keeps the first subscriber.
    let _ = tracing::subscriber::set_global_default(subscriber(format, filter, std::io::stderr, ansi));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex, PoisonError};

    /// A writer into a shared buffer.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Buffer {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    /// What `format` writes for one event inside a cloud call span inside a reconcile span.
    fn log_one(format: LogFormat, ansi: bool) -> String {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = subscriber(format, EnvFilter::new("info"), move || writer.clone(), ansi);
        tracing::subscriber::with_default(subscriber, || {
            // Callsites first seen under other tests' subscribers may have cached "never".
            tracing::callsite::rebuild_interest_cache();
            let reconcile = tracing::info_span!("reconcile", namespace = "team-a", policy = "full-cleanup");
            let _r = reconcile.enter();
            let call = tracing::info_span!(
                "cloud_call",
                service = "SDRS",
                operation = "ListFailureJobs",
                project = "p1",
                request_id = tracing::field::Empty
            );
            let _c = call.enter();
            call.record("request_id", "req-42");
            tracing::warn!(status = 503, "cloud call failed");
        });
        buffer.text()
    }

    #[test]
    fn only_a_terminal_gets_colours() {
        assert!(use_ansi(LogFormat::Text, true));
        assert!(!use_ansi(LogFormat::Text, false));
        assert!(!use_ansi(LogFormat::Json, true));
        assert!(!use_ansi(LogFormat::Json, false));
    }

    #[test]
    fn text_for_a_pipe_has_no_escape_codes() {
        let plain = log_one(LogFormat::Text, use_ansi(LogFormat::Text, false));
        assert!(!plain.contains('\x1b'), "{plain:?}");
        assert!(plain.contains("WARN") && plain.contains("cloud call failed"), "{plain}");
        assert!(plain.contains("request_id=\"req-42\"") || plain.contains("request_id=req-42"), "{plain}");
        // The same line for a terminal is coloured: the switch is what removes the codes.
        assert!(log_one(LogFormat::Text, true).contains('\x1b'));
    }

    #[test]
    fn json_lines_carry_the_event_and_its_spans() {
        let out = log_one(LogFormat::Json, true);
        assert!(!out.contains('\x1b'), "{out:?}");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 1, "{out}");
        let line: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["message"], "cloud call failed", "event fields are flattened: {line}");
        assert_eq!(line["status"], 503);
        assert_eq!(line["span"]["name"], "cloud_call");
        assert_eq!(line["span"]["service"], "SDRS");
        assert_eq!(line["span"]["operation"], "ListFailureJobs");
        assert_eq!(line["span"]["project"], "p1");
        assert_eq!(line["span"]["request_id"], "req-42", "recorded after the span began: {line}");
        let spans = line["spans"].as_array().unwrap();
        assert_eq!(spans[0]["name"], "reconcile");
        assert_eq!((&spans[0]["namespace"], &spans[0]["policy"]), (&"team-a".into(), &"full-cleanup".into()));
    }
}
