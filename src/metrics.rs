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
    /// Mails that could not be sent (after a retry).
    pub mail_failures: IntCounter,
    /// Attachment bytes stored and served (`direction`: `in`, `out`).
    pub attachment_bytes: IntCounterVec,
    /// Uploads being received now (at most `storage.max_concurrent_uploads`).
    pub attachment_uploads: IntGauge,
    /// Blobs removed by the sweeper, and removals that failed (retried later).
    pub blobs_removed: IntCounter,
    pub blob_sweep_failures: IntCounter,
    /// LongPoll sessions open on this node.
    pub longpoll_sessions: IntGauge,
}

impl Metrics {
    /// A registry whose every series carries `node="{node}"`.
    pub fn new(node: &str) -> Metrics {
        let labels = std::collections::HashMap::from([("node".to_string(), node.to_string())]);
        let registry = Registry::new_custom(Some("stoa".into()), Some(labels))
            .unwrap_or_else(|_| Registry::new());
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
        let mail_failures = IntCounter::new(
            "mail_failures_total",
            "Mails (verification, invitation, password reset) the SMTP server did not take after a retry",
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        let attachment_bytes = IntCounterVec::new(
            Opts::new(
                "attachment_bytes_total",
                "Attachment bytes stored (in) and served (out)",
            ),
            &["direction"],
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        let attachment_uploads = IntGauge::new(
            "attachment_uploads_in_progress",
            "Attachment uploads being received (at most storage.max_concurrent_uploads)",
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        let blobs_removed = IntCounter::new(
            "blobs_removed_total",
            "Blobs of deleted attachments (or cut-off uploads) removed from the blob store",
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        let longpoll_sessions = IntGauge::new(
            "longpoll_sessions",
            "LongPoll sessions open on this node (clients whose network refuses WebSockets)",
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        let blob_sweep_failures = IntCounter::new(
            "blob_sweep_failures_total",
            "Blob removals the blob store refused or did not answer (retried at the next sweep)",
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
            Box::new(mail_failures.clone()),
            Box::new(attachment_bytes.clone()),
            Box::new(attachment_uploads.clone()),
            Box::new(longpoll_sessions.clone()),
            Box::new(blobs_removed.clone()),
            Box::new(blob_sweep_failures.clone()),
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
            mail_failures,
            attachment_bytes,
            attachment_uploads,
            longpoll_sessions,
            blobs_removed,
            blob_sweep_failures,
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
            inbox_bytes: gauge(
                "ws_inbox_bytes",
                "Bytes of frames waiting in the transport threads' inboxes (a fan-out's shared bytes once)",
            ),
            counters: vec![
                counter("ws_joins_refused_total", "Channel joins refused"),
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
                    "Yjs updates refused (sent by viewers, or growing a document past realtime.max_document_bytes)",
                ),
                counter(
                    "yjs_updates_written_total",
                    "Yjs updates written to the database",
                ),
                counter(
                    "yjs_saves_failed_total",
                    "Saves of a document's text or updates the database refused for good (logged once per document, not retried)",
                ),
                counter(
                    "yjs_catch_ups_total",
                    "Documents whose text and edits were behind their update log when loaded, brought up to date",
                ),
                counter(
                    "bus_messages_rejected_total",
                    "Bus messages dropped because the cluster key's seal did not hold (not from a node of this cluster) or they were over a minute old",
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
        let families = RealtimeFamilies(m.realtime.clone());
        self.register(Box::new(families::Computed::new(
            REALTIME_FAMILIES,
            move || families.collect(),
        )));
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

    /// Exports the database pools' use and the statements' latency (read at each scrape).
    pub fn observe_database(&self, store: std::sync::Arc<crate::store::SqlStore>) {
        let families = DatabaseFamilies(store);
        self.register(Box::new(families::Computed::new(
            DATABASE_FAMILIES,
            move || families.collect(),
        )));
    }

    /// Exports the process's memory, CPU and file descriptors (read at each scrape).
    pub fn observe_process(&self) {
        self.register(Box::new(families::Computed::new(PROCESS_FAMILIES, || {
            ProcessFamilies.collect()
        })));
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

struct RealtimeMetrics {
    realtime: crate::realtime::Realtime,
    connections: IntGauge,
    sockets: IntGauge,
    topics: IntGauge,
    subscriptions: IntGauge,
    nodes: IntGauge,
    yjs_connections: IntGauge,
    yjs_documents: IntGauge,
    inbox_bytes: IntGauge,
    /// In the order of [`RealtimeMetrics::totals`].
    counters: Vec<IntCounter>,
}

impl RealtimeMetrics {
    /// In the order of `counters`.
    fn totals(&self) -> [u64; 23] {
        use std::sync::atomic::Ordering::Relaxed;
        let s = self.realtime.stats();
        [
            s.joins_refused.load(Relaxed),
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
            s.yjs_saves_failed.load(Relaxed),
            s.yjs_catch_ups.load(Relaxed),
            s.bus_rejected.load(Relaxed),
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
        self.inbox_bytes
            .set(i64::try_from(self.realtime.inbox_bytes()).unwrap_or(i64::MAX));
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

/// Families computed at each scrape from state owned elsewhere: what the `prometheus`
/// crate's own types cannot hold (labelled counts kept as atomic arrays, histograms filled
/// on the hot paths).
mod families {
    use prometheus::core::{Collector, Desc};
    use prometheus::proto::{
        Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
    };
    use stoa_actors::hist::Snapshot;

    pub struct Family {
        inner: MetricFamily,
    }

    impl Family {
        pub fn new(name: &str, help: &str, kind: MetricType) -> Family {
            let mut inner = MetricFamily::default();
            inner.set_name(name.to_string());
            inner.set_help(help.to_string());
            inner.set_field_type(kind);
            Family { inner }
        }

        fn labelled(labels: &[(&str, &str)]) -> Metric {
            let pairs = labels
                .iter()
                .map(|(k, v)| {
                    let mut p = LabelPair::default();
                    p.set_name(k.to_string());
                    p.set_value(v.to_string());
                    p
                })
                .collect();
            Metric::from_label(pairs)
        }

        fn push(&mut self, m: Metric) {
            let mut all = self.inner.take_metric();
            all.push(m);
            self.inner.set_metric(all);
        }

        pub fn counter(mut self, labels: &[(&str, &str)], value: f64) -> Family {
            let mut m = Family::labelled(labels);
            let mut c = Counter::default();
            c.set_value(value);
            m.set_counter(c);
            self.push(m);
            self
        }

        pub fn gauge(mut self, labels: &[(&str, &str)], value: f64) -> Family {
            let mut m = Family::labelled(labels);
            let mut g = Gauge::default();
            g.set_value(value);
            m.set_gauge(g);
            self.push(m);
            self
        }

        /// `per_unit`: snapshot units per metric unit (1e6 for µs to seconds; dividing
        /// keeps bounds such as 50 µs exact as 5e-05).
        pub fn histogram(mut self, labels: &[(&str, &str)], s: &Snapshot, per_unit: f64) -> Family {
            let mut m = Family::labelled(labels);
            let mut h = Histogram::default();
            h.set_sample_count(s.count);
            h.set_sample_sum(s.sum as f64 / per_unit);
            h.set_bucket(
                s.bounds
                    .iter()
                    .zip(&s.cumulative)
                    .map(|(bound, n)| {
                        let mut b = Bucket::default();
                        b.set_upper_bound(*bound as f64 / per_unit);
                        b.set_cumulative_count(*n);
                        b
                    })
                    .collect(),
            );
            m.set_histogram(h);
            self.push(m);
            self
        }

        pub fn done(self) -> MetricFamily {
            self.inner
        }
    }

    /// A collector of families computed at each scrape: their names, help and labels
    /// (which the registry checks are unique), and the function that computes them.
    pub struct Computed {
        descs: Vec<Desc>,
        collect: Box<dyn Fn() -> Vec<MetricFamily> + Send + Sync>,
    }

    impl Computed {
        pub fn new(
            names: &[(&str, &str, &[&str])],
            collect: impl Fn() -> Vec<MetricFamily> + Send + Sync + 'static,
        ) -> Computed {
            let descs = names
                .iter()
                .filter_map(|(name, help, labels)| {
                    let labels = labels.iter().map(|l| l.to_string()).collect();
                    Desc::new(
                        name.to_string(),
                        help.to_string(),
                        labels,
                        Default::default(),
                    )
                    .ok()
                })
                .collect();
            Computed {
                descs,
                collect: Box::new(collect),
            }
        }
    }

    impl Collector for Computed {
        fn desc(&self) -> Vec<&Desc> {
            self.descs.iter().collect()
        }

        fn collect(&self) -> Vec<MetricFamily> {
            (self.collect)()
        }
    }
}

use families::Family;
use prometheus::proto::{MetricFamily, MetricType};

/// Microseconds per second.
const US: f64 = 1e6;

/// The real-time core's labelled counts and hot-path histograms.
struct RealtimeFamilies(crate::realtime::Realtime);

const REALTIME_FAMILIES: &[(&str, &str, &[&str])] = &[
    (
        "ws_joins_total",
        "Channel joins accepted, by topic kind",
        &["kind"],
    ),
    (
        "ws_frames_in_total",
        "Frames received from clients, by event",
        &["event"],
    ),
    (
        "ws_frames_out_total",
        "Frames queued for clients, by event",
        &["event"],
    ),
    (
        "ws_fanout_latency_seconds",
        "From an event's commit (or a broadcast's arrival) to its write to a subscriber's socket",
        &[],
    ),
    (
        "ws_outbound_queue_frames",
        "Frames a connection's outbound queue held when the transport wrote them",
        &[],
    ),
    (
        "yjs_update_duration_seconds",
        "From a Yjs update's arrival at its document's actor to its relay to the local peers",
        &[],
    ),
    (
        "yjs_persist_duration_seconds",
        "One batch of Yjs updates written to the database",
        &[],
    ),
];

impl RealtimeFamilies {
    fn collect(&self) -> Vec<MetricFamily> {
        use std::sync::atomic::Ordering::Relaxed;
        let s = self.0.stats();
        let help = |i: usize| REALTIME_FAMILIES[i].1;
        let name = |i: usize| REALTIME_FAMILIES[i].0;
        let labelled =
            |i: usize, label: &str, names: &[&str], counts: &[std::sync::atomic::AtomicU64]| {
                names
                    .iter()
                    .zip(counts)
                    .fold(
                        Family::new(name(i), help(i), MetricType::COUNTER),
                        |f, (n, c)| f.counter(&[(label, n)], c.load(Relaxed) as f64),
                    )
                    .done()
            };
        let histogram = |i: usize, snapshot, per_unit| {
            Family::new(name(i), help(i), MetricType::HISTOGRAM)
                .histogram(&[], &snapshot, per_unit)
                .done()
        };
        vec![
            labelled(0, "kind", &stoa_actors::TOPIC_KINDS, &s.joins_by_kind),
            labelled(1, "event", &stoa_actors::FRAMES_IN, &s.frames_in),
            labelled(2, "event", &stoa_actors::FRAMES_OUT, &s.frames_out),
            histogram(3, s.fanout_latency.snapshot(), US),
            histogram(4, s.outbound_depth.snapshot(), 1.0),
            histogram(5, s.yjs_update_latency.snapshot(), US),
            histogram(6, s.yjs_persist_latency.snapshot(), US),
        ]
    }
}

/// Statement latency, by the statement's first word, as the database driver reports it
/// (see [`crate::telemetry`]). Process-wide: the driver's reports carry no pool.
pub static DB_STATEMENTS: std::sync::LazyLock<[stoa_actors::hist::Histogram; 5]> =
    std::sync::LazyLock::new(|| std::array::from_fn(|_| stoa_actors::hist::Histogram::latency()));

/// The labels of [`DB_STATEMENTS`], in order.
pub const DB_STATEMENT_KINDS: [&str; 5] = ["select", "insert", "update", "delete", "other"];

/// Where a statement's latency is counted, from the SQL's first word.
pub fn db_statement_index(sql: &str) -> usize {
    let word = sql.split_whitespace().next().unwrap_or("");
    DB_STATEMENT_KINDS[..4]
        .iter()
        .position(|k| word.eq_ignore_ascii_case(k))
        .or_else(|| word.eq_ignore_ascii_case("with").then_some(0))
        .unwrap_or(4)
}

struct DatabaseFamilies(std::sync::Arc<crate::store::SqlStore>);

const DATABASE_FAMILIES: &[(&str, &str, &[&str])] = &[
    (
        "db_pool_connections",
        "Database connections by pool and state (idle or in_use)",
        &["pool", "state"],
    ),
    (
        "db_pool_max_connections",
        "Most connections a pool opens",
        &["pool"],
    ),
    (
        "db_query_duration_seconds",
        "Database statement latency, by the statement's kind",
        &["statement"],
    ),
];

impl DatabaseFamilies {
    fn collect(&self) -> Vec<MetricFamily> {
        let [conns, max, queries] = [0, 1, 2].map(|i| {
            let (name, help, _) = DATABASE_FAMILIES[i];
            let kind = if i == 2 {
                MetricType::HISTOGRAM
            } else {
                MetricType::GAUGE
            };
            Family::new(name, help, kind)
        });
        let (mut conns, mut max) = (conns, max);
        for (pool, open, idle, most) in self.0.pool_use() {
            let in_use = open.saturating_sub(idle);
            conns = conns
                .gauge(&[("pool", pool), ("state", "idle")], f64::from(idle))
                .gauge(&[("pool", pool), ("state", "in_use")], f64::from(in_use));
            max = max.gauge(&[("pool", pool)], f64::from(most));
        }
        let queries = DB_STATEMENT_KINDS
            .iter()
            .zip(DB_STATEMENTS.iter())
            .fold(queries, |f, (kind, h)| {
                f.histogram(&[("statement", kind)], &h.snapshot(), US)
            });
        vec![conns.done(), max.done(), queries.done()]
    }
}

/// Memory, CPU and descriptors of this process, from `/proc` (Linux; nothing elsewhere).
struct ProcessFamilies;

const PROCESS_FAMILIES: &[(&str, &str, &[&str])] = &[
    (
        "process_resident_memory_bytes",
        "Resident memory of the server process",
        &[],
    ),
    (
        "process_cpu_seconds_total",
        "CPU time the server process used, user and system",
        &[],
    ),
    (
        "process_open_fds",
        "File descriptors the server process holds open",
        &[],
    ),
    (
        "process_max_fds",
        "Most file descriptors the server process may open",
        &[],
    ),
    (
        "process_heap_bytes",
        "The allocator's heap: in_use is what the server holds, free what the allocator keeps for reuse (glibc)",
        &["state"],
    ),
];

/// USER_HZ, the unit of `/proc/self/stat`'s times: 100 on every Linux architecture Stoa
/// builds for.
const CLOCK_TICKS_PER_SEC: f64 = 100.0;

impl ProcessFamilies {
    fn collect(&self) -> Vec<MetricFamily> {
        let mut out = Vec::new();
        let gauge = |i: usize, v: f64| {
            let (name, help, _) = PROCESS_FAMILIES[i];
            Family::new(name, help, MetricType::GAUGE)
                .gauge(&[], v)
                .done()
        };
        if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
            if let Some(kb) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            {
                out.push(gauge(0, kb * 1024.0));
            }
        }
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
            // Fields after the command name (which may hold spaces, so split after its `)`):
            // state is field 3, utime 14 and stime 15.
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .map(|(_, rest)| rest.split_whitespace().collect())
                .unwrap_or_default();
            let ticks = |i: usize| fields.get(i - 3).and_then(|v| v.parse::<f64>().ok());
            if let (Some(user), Some(system)) = (ticks(14), ticks(15)) {
                let (name, help, _) = PROCESS_FAMILIES[1];
                let secs = (user + system) / CLOCK_TICKS_PER_SEC;
                out.push(
                    Family::new(name, help, MetricType::COUNTER)
                        .counter(&[], secs)
                        .done(),
                );
            }
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            out.push(gauge(2, dir.count() as f64));
        }
        if let Ok(limits) = std::fs::read_to_string("/proc/self/limits") {
            if let Some(max) = limits
                .lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse::<f64>().ok())
            {
                out.push(gauge(3, max));
            }
        }
        if let Some((in_use, free)) = heap() {
            let (name, help, _) = PROCESS_FAMILIES[4];
            out.push(
                Family::new(name, help, MetricType::GAUGE)
                    .gauge(&[("state", "in_use")], in_use as f64)
                    .gauge(&[("state", "free")], free as f64)
                    .done(),
            );
        }
        out
    }
}

/// Bytes of the allocator's heap held by the server and kept free (glibc's `mallinfo2`:
/// every arena, blocks mapped on their own counted as in use).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn heap() -> Option<(usize, usize)> {
    // SAFETY: mallinfo2 only reads the allocator's statistics, under its own locks.
    let info = unsafe { libc::mallinfo2() };
    Some((info.uordblks + info.hblkhd, info.fordblks))
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn heap() -> Option<(usize, usize)> {
    None
}
