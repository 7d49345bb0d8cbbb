//! Logging set-up: human-readable text or one JSON object per line, filtered by `log.level`.

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSettings};

/// Installs the global subscriber. Safe to call more than once (later calls are ignored).
pub fn init(settings: &LogSettings) {
    let filter = EnvFilter::try_new(filter_directives(&settings.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match settings.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
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
