//! The one metrics registry. Every metric Stoa exports is declared here, so the names a
//! dashboard relies on live in one file. Each app instance owns its registry (no globals),
//! which keeps several servers in one test process apart.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub http_in_flight: IntGauge,
    pub rate_limited: IntCounterVec,
    pub refresh_reuse: IntCounter,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry =
            Registry::new_custom(Some("stoa".into()), None).unwrap_or_else(|_| Registry::new());
        let http_requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by route pattern and status",
            ),
            &["method", "route", "status"],
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency by route pattern",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["method", "route"],
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        let http_in_flight = IntGauge::new("http_requests_in_flight", "HTTP requests being served")
            .unwrap_or_else(|e| unreachable!("{e}"));
        let rate_limited = IntCounterVec::new(
            Opts::new("rate_limited_total", "Requests refused by a rate limit"),
            &["limit"],
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        let refresh_reuse = IntCounter::new(
            "refresh_token_reuse_total",
            "Spent refresh tokens presented again (token family revoked)",
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        let build_info = IntGauge::with_opts(
            Opts::new("build_info", "Always 1; labels say which build is running")
                .const_label("version", env!("CARGO_PKG_VERSION")),
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        build_info.set(1);
        for c in [
            Box::new(http_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(http_duration.clone()),
            Box::new(http_in_flight.clone()),
            Box::new(rate_limited.clone()),
            Box::new(refresh_reuse.clone()),
            Box::new(build_info),
        ] {
            // Names are unique by construction; a clash would be a programming error.
            registry.register(c).unwrap_or_else(|e| unreachable!("{e}"));
        }
        Metrics {
            registry,
            http_requests,
            http_duration,
            http_in_flight,
            rate_limited,
            refresh_reuse,
        }
    }

    /// Registers a collector owned elsewhere (e.g. database pool gauges).
    pub fn register(&self, c: Box<dyn prometheus::core::Collector>) {
        if let Err(e) = self.registry.register(c) {
            tracing::warn!(error = %e, "metric not registered");
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "metrics encoding failed");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}
