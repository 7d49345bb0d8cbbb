//! Logging set-up: human-readable text or one JSON object per line, filtered by `log.level`.

use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSettings};

/// Installs the global subscriber. Safe to call more than once (later calls are ignored).
///
/// Beside the log, a second layer hears the database driver's per-statement reports
/// (target `sqlx::query`, at DEBUG whatever `log.level` says) and counts their latency in
/// [`crate::metrics::DB_STATEMENTS`]; those reports reach the log only if `log.level`
/// asks for them.
pub fn init(settings: &LogSettings) {
    let filter = EnvFilter::try_new(filter_directives(&settings.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let statements = StatementTimings.with_filter(tracing_subscriber::filter::filter_fn(|m| {
        m.target() == "sqlx::query"
    }));
    // Colours only for a person at a terminal: a file, a pipe or a journal would keep the
    // escape codes as text.
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let registry = tracing_subscriber::registry().with(statements);
    let _ = match settings.format {
        LogFormat::Json => registry
            .with(
                fmt.json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_filter(filter),
            )
            .try_init(),
        LogFormat::Text => registry.with(fmt.with_filter(filter)).try_init(),
    };
}

/// Counts each database statement's `elapsed_secs` under its first word.
struct StatementTimings;

impl<S: tracing::Subscriber> Layer<S> for StatementTimings {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        #[derive(Default)]
        struct Fields {
            kind: Option<usize>,
            secs: Option<f64>,
        }
        impl tracing::field::Visit for Fields {
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                if field.name() == "summary" {
                    self.kind = Some(crate::metrics::db_statement_index(value));
                }
            }
            fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
                if field.name() == "elapsed_secs" {
                    self.secs = Some(value);
                }
            }
            fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        if let (Some(kind), Some(secs)) = (fields.kind, fields.secs) {
            let us = (secs * 1e6) as u64;
            crate::metrics::DB_STATEMENTS[kind].observe(us);
        }
    }
}

/// `log.level`, plus silence for actix-http's connection dispatcher unless the operator
/// asks for it by name: it logs every malformed request a client sends (a bad header, a
/// truncated body) at ERROR, and what a client sends is not a server error.
fn filter_directives(level: &str) -> String {
    if level.contains("actix_http") {
        level.to_string()
    } else {
        format!("{level},actix_http::h1::dispatcher=off")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_dispatcher_is_silenced_unless_named() {
        assert_eq!(
            super::filter_directives("info"),
            "info,actix_http::h1::dispatcher=off"
        );
        assert_eq!(
            super::filter_directives("debug,actix_http=trace"),
            "debug,actix_http=trace"
        );
    }
}
