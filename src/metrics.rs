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
    realtime: std::sync::Arc<std::sync::Mutex<Option<RealtimeMetrics>>>,
    bus: std::sync::Arc<std::sync::Mutex<Option<BusMetrics>>>,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub http_in_flight: IntGauge,
    pub rate_limited: IntCounterVec,
    pub refresh_reuse: IntCounter,
    pub refresh_tokens_pruned: IntCounter,
    pub auth_limiter_keys: IntGauge,
    pub password_busy: IntCounter,
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
        let refresh_tokens_pruned = IntCounter::new(
            "refresh_tokens_pruned_total",
            "Expired or long-spent refresh tokens deleted",
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        let auth_limiter_keys = IntGauge::new(
            "auth_rate_limit_keys",
            "Addresses and accounts the authentication rate limits currently track",
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        let password_busy = IntCounter::new(
            "password_hash_busy_total",
            "Logins and registrations refused because every password-hashing slot was busy",
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
            Box::new(refresh_tokens_pruned.clone()),
            Box::new(auth_limiter_keys.clone()),
            Box::new(password_busy.clone()),
            Box::new(build_info),
        ] {
            // Names are unique by construction; a clash would be a programming error.
            registry.register(c).unwrap_or_else(|e| unreachable!("{e}"));
        }
        Metrics {
            registry,
            realtime: Default::default(),
            bus: Default::default(),
            http_requests,
            http_duration,
            http_in_flight,
            rate_limited,
            refresh_reuse,
            refresh_tokens_pruned,
            auth_limiter_keys,
            password_busy,
        }
    }

    /// Registers a collector owned elsewhere (e.g. database pool gauges).
    pub fn register(&self, c: Box<dyn prometheus::core::Collector>) {
        if let Err(e) = self.registry.register(c) {
            tracing::warn!(error = %e, "metric not registered");
        }
    }

    /// Exports the real-time core's counters (read at each scrape).
    pub fn observe_realtime(&self, realtime: crate::realtime::Realtime) {
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).unwrap_or_else(|e| unreachable!("{e}"));
            self.register(Box::new(g.clone()));
            g
        };
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).unwrap_or_else(|e| unreachable!("{e}"));
            self.register(Box::new(c.clone()));
            c
        };
        let m = RealtimeMetrics {
            connections: gauge("ws_connections", "WebSocket sessions alive"),
            sockets: gauge(
                "ws_sockets",
                "WebSocket connections open at the TCP level (a session may have ended before its peer is disconnected)",
            ),
            topics: gauge("ws_topics", "Topic actors alive on this node"),
            subscriptions: gauge("ws_subscriptions", "Channel joins currently held"),
            nodes: gauge(
                "cluster_nodes",
                "Live nodes of the cluster as this node sees them, itself included",
            ),
            yjs_connections: gauge("yjs_connections", "Yjs sessions alive"),
            yjs_documents: gauge("yjs_documents_open", "Documents loaded by their actor"),
            counters: vec![
                counter("ws_joins_total", "Channel joins accepted"),
                counter("ws_joins_refused_total", "Channel joins refused"),
                counter("ws_frames_in_total", "Text frames received from clients"),
                counter("ws_frames_out_total", "Frames queued for clients"),
                counter(
                    "ws_events_replayed_total",
                    "Events replayed to joins with since",
                ),
                counter(
                    "ws_rate_limited_total",
                    "Client messages refused as rate_limited",
                ),
                counter(
                    "ws_slow_consumers_total",
                    "Connections closed as slow_consumer",
                ),
                counter("ws_topic_crashes_total", "Topic actors that panicked"),
                counter(
                    "ws_topic_restarts_total",
                    "Topic actors started again by their supervisor after a crash",
                ),
                counter(
                    "ws_session_crashes_total",
                    "Session actors that panicked (socket closed with 1011)",
                ),
                counter(
                    "ws_user_rate_limited_total",
                    "Client messages refused by their user's rate limit (all sockets)",
                ),
                counter(
                    "ws_topic_rate_limited_total",
                    "Broadcasts refused by their topic's budget",
                ),
                counter(
                    "ws_topic_shed_total",
                    "Messages refused or dropped because a topic's mailbox was full",
                ),
                counter(
                    "ws_presence_untracked_total",
                    "Joins left out of presence because the topic tracks its maximum",
                ),
                counter(
                    "ws_sockets_refused_total",
                    "Sockets refused because their user had too many open",
                ),
                counter(
                    "ws_revocations_total",
                    "Channels closed by membership revocation",
                ),
                counter(
                    "bus_messages_out_total",
                    "Messages this node sent to the other nodes over the bus",
                ),
                counter(
                    "bus_messages_in_total",
                    "Messages this node heard from the other nodes over the bus",
                ),
                counter("yjs_updates_total", "Yjs updates applied from clients"),
                counter(
                    "yjs_updates_refused_total",
                    "Yjs updates refused (sent by viewers)",
                ),
                counter(
                    "yjs_updates_written_total",
                    "Yjs updates written to the database",
                ),
                counter(
                    "bus_messages_undecodable_total",
                    "Bus messages this node could not read (another format, or garbage)",
                ),
                counter(
                    "cluster_nodes_expired_total",
                    "Nodes taken for dead after their heartbeats stopped",
                ),
            ],
            realtime,
        };
        if let Ok(mut slot) = self.realtime.lock() {
            *slot = Some(m);
        }
        let lag = prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "bus_lag_seconds",
                "Time from a message's sending on another node to its arrival here (by the sender's clock)",
            )
            .buckets(vec![
                0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
            ]),
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        self.register(Box::new(lag.clone()));
        if let Ok(slot) = self.realtime.lock() {
            if let Some(m) = slot.as_ref() {
                m.realtime.on_bus_lag(move |d| lag.observe(d.as_secs_f64()));
            }
        }
    }

    /// Exports the Redis bus's state (read at each scrape).
    pub fn observe_bus(&self, health: std::sync::Arc<crate::bus::BusHealth>) {
        let connected = IntGauge::new(
            "bus_connected",
            "1 while this node's subscription connection to the bus is up",
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        let counters = [
            ("bus_reconnects_total", "Times the bus connection came back after a loss"),
            ("bus_published_total", "Messages written to Redis"),
            (
                "bus_dropped_total",
                "Messages not sent because Redis was away or the queue was full (the log heals them)",
            ),
        ]
        .map(|(name, help)| {
            let c = IntCounter::new(name, help).unwrap_or_else(|e| unreachable!("{e}"));
            self.register(Box::new(c.clone()));
            c
        });
        self.register(Box::new(connected.clone()));
        if let Ok(mut slot) = self.bus.lock() {
            *slot = Some(BusMetrics {
                health,
                connected,
                counters,
            });
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        if let Ok(slot) = self.realtime.lock() {
            if let Some(m) = slot.as_ref() {
                m.sync();
            }
        }
        if let Ok(slot) = self.bus.lock() {
            if let Some(m) = slot.as_ref() {
                m.sync();
            }
        }
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

struct RealtimeMetrics {
    realtime: crate::realtime::Realtime,
    connections: IntGauge,
    sockets: IntGauge,
    topics: IntGauge,
    subscriptions: IntGauge,
    nodes: IntGauge,
    yjs_connections: IntGauge,
    yjs_documents: IntGauge,
    /// In the order of [`RealtimeMetrics::totals`].
    counters: Vec<IntCounter>,
}

impl RealtimeMetrics {
    /// In the order of `counters`.
    fn totals(&self) -> [u64; 23] {
        use std::sync::atomic::Ordering::Relaxed;
        let s = self.realtime.stats();
        [
            s.joins.load(Relaxed),
            s.joins_refused.load(Relaxed),
            s.frames_in.load(Relaxed),
            s.frames_out.load(Relaxed),
            s.events_replayed.load(Relaxed),
            s.rate_limited.load(Relaxed),
            s.slow_consumers.load(Relaxed),
            s.topic_crashes.load(Relaxed),
            s.topic_restarts.load(Relaxed),
            s.session_crashes.load(Relaxed),
            s.user_rate_limited.load(Relaxed),
            s.topic_rate_limited.load(Relaxed),
            s.topic_shed.load(Relaxed),
            s.presence_untracked.load(Relaxed),
            s.sockets_refused.load(Relaxed),
            s.revocations.load(Relaxed),
            s.bus_out.load(Relaxed),
            s.bus_in.load(Relaxed),
            s.yjs_updates.load(Relaxed),
            s.yjs_updates_refused.load(Relaxed),
            s.yjs_updates_written.load(Relaxed),
            s.bus_undecodable.load(Relaxed),
            s.nodes_expired.load(Relaxed),
        ]
    }

    /// Brings the exported values up to the core's counters (called under the lock).
    fn sync(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        let s = self.realtime.stats();
        self.connections.set(s.connections.load(Relaxed));
        self.sockets.set(s.sockets.load(Relaxed));
        self.topics.set(s.topics.load(Relaxed));
        self.subscriptions.set(s.subscriptions.load(Relaxed));
        self.yjs_connections.set(s.yjs_connections.load(Relaxed));
        self.yjs_documents.set(s.yjs_documents.load(Relaxed));
        let others = i64::try_from(self.realtime.nodes().len()).unwrap_or(i64::MAX);
        self.nodes.set(others.saturating_add(1));
        for (counter, total) in self.counters.iter().zip(self.totals()) {
            let seen = counter.get();
            if total > seen {
                counter.inc_by(total - seen);
            }
        }
    }
}

struct BusMetrics {
    health: std::sync::Arc<crate::bus::BusHealth>,
    connected: IntGauge,
    counters: [IntCounter; 3],
}

impl BusMetrics {
    fn sync(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        self.connected.set(i64::from(self.health.connected()));
        let totals = [
            self.health.reconnects.load(Relaxed),
            self.health.published.load(Relaxed),
            self.health.dropped.load(Relaxed),
        ];
        for (counter, total) in self.counters.iter().zip(totals) {
            let seen = counter.get();
            if total > seen {
                counter.inc_by(total - seen);
            }
        }
    }
}
