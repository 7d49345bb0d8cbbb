//! Stoa's live state, owned by actix actors.
//!
//! - a [`SessionActor`] per WebSocket connection: decodes frames, enforces the connection's
//!   limits and routes each message to the topic it names;
//! - a [`TopicActor`] per active topic on the node: subscribers, presence, fan-out, and the
//!   gap-free hand-off from the event log to live events;
//! - the notification hub ([`Realtime::notify_user`]): a user's `user:{id}` topic fans a
//!   notification out to every session of that user.
//!
//! Live actors are found through concurrent maps ([`dashmap`]). A topic actor that panics
//! dies alone: its supervisor puts a fresh actor in its place, and its subscribers receive
//! `phx_error` and rejoin. A session that panics closes its socket (1011) and leaves its
//! topics. Every queue is bounded: outboxes in frames and bytes, topic mailboxes by the
//! tickets client messages take, and client messages by rates per connection, per user and
//! per topic.
//! What the actors need from outside (the event log, authorisation) are the traits in
//! [`ports`]; the server implements them.

pub mod bus;
mod conn;
mod ended;
mod env;
pub mod hist;
mod limit;
pub mod ports;
mod registry;
mod session;
mod topic;
mod yjs;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

pub use bus::{Bus, BusInbox, Cluster, LocalBus, LocalHub};
pub use conn::{
    CloseReason, Conn, Delivery, Fanout, Inbox, Outbound, Outbox, OutboxReader, PushHead, Queued,
    Refused, SessionNotice, Take, Target, Targets, INBOX_BYTES, TARGETS_PER_CHUNK,
};
pub use ended::TokenTag;
pub use ports::{Authorizer, Denied, DocAccess, EventLog, Grant, Identity, LiveEvent, LogError};
pub use registry::{Realtime, Refusal, SocketPermit};
pub use session::{SessionActor, WireIn, PRESENCE_META_OVERHEAD};
pub use stoa_protocol::bus::SessionEnd;
pub use topic::TopicActor;
pub use yjs::{DocError, DocStore, Projection, StoredDoc, YjsSession};

/// Per-connection, per-user and per-topic limits. The defaults are safe for a public server.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest text frame a client may send, in bytes.
    pub max_frame_bytes: usize,
    /// Largest `broadcast` payload, in bytes of frame text.
    pub max_broadcast_bytes: usize,
    /// Sockets one user may have open on this node at once.
    pub max_sockets_per_user: u32,
    /// Topics one connection may have joined (or be joining) at once.
    pub max_topics_per_connection: usize,
    /// Sustained client messages per second per connection (heartbeats not counted).
    pub messages_per_sec: u32,
    /// Messages a connection may send in a burst above the sustained rate.
    pub message_burst: u32,
    /// Sustained messages per second of one user, all their sockets on this node together.
    pub user_messages_per_sec: u32,
    /// The burst allowed to one user above that rate.
    pub user_message_burst: u32,
    /// Broadcasts one topic relays per second (in a burst: twice as many), whoever sends them.
    pub topic_broadcasts_per_sec: u32,
    /// Bytes of broadcasts one topic relays per second (in a burst: one second's worth, and
    /// never less than one broadcast of the largest size).
    pub topic_broadcast_bytes_per_sec: u32,
    /// `presence:update` messages per second per connection and topic.
    pub presence_updates_per_sec: u32,
    /// Largest presence meta a client may set, in bytes of JSON.
    pub max_presence_meta_bytes: usize,
    /// Connections one topic tracks in its presence; later joins are not tracked.
    pub max_presence_metas: usize,
    /// Presence changes within this interval go out as one `presence_diff` (zero: each at
    /// once).
    pub presence_batch: Duration,
    /// Frames queued for one client before it counts as too slow and is disconnected.
    pub outbound_queue: usize,
    /// Bytes queued for one client before it counts as too slow (a single frame larger than
    /// this is still accepted into an empty queue).
    pub outbound_queue_bytes: usize,
    /// Messages a topic actor's mailbox holds; client messages beyond it are refused.
    pub topic_mailbox: usize,
    /// A connection silent for this long is closed.
    pub heartbeat_timeout: Duration,
    /// How far back (in events) a join with `since` may ask to be replayed.
    pub max_replay: i64,
    /// How long an out-of-order event waits for the events before it to arrive before
    /// they are read from the log.
    pub gap_grace: Duration,
    /// How often a quiet topic with subscribers reads its log for events whose live
    /// publication was lost (a publisher stopped between commit and publish, or the topic
    /// shed it while its mailbox was full).
    pub log_check: Duration,
    /// How long a topic actor without subscribers stays alive.
    pub topic_idle: Duration,
    /// Threads that run topic actors.
    pub topic_threads: usize,
    /// How long a document stays loaded after its last Yjs connection has gone.
    pub doc_idle: Duration,
    /// Largest message a Yjs client may send.
    pub max_yjs_message_bytes: usize,
    /// Documents with connections at once on this node.
    pub max_open_documents: usize,
    /// Largest a document's state may grow to through Yjs updates.
    pub max_document_bytes: usize,
    /// How long an access token lives (with the leeway its checks allow): how long a
    /// session end must be remembered.
    pub token_lifetime: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_frame_bytes: 64 * 1024,
            max_broadcast_bytes: 16 * 1024,
            max_sockets_per_user: 100,
            max_topics_per_connection: 100,
            messages_per_sec: 50,
            message_burst: 100,
            user_messages_per_sec: 100,
            user_message_burst: 200,
            topic_broadcasts_per_sec: 200,
            topic_broadcast_bytes_per_sec: 512 * 1024,
            presence_updates_per_sec: 10,
            max_presence_meta_bytes: 1024,
            max_presence_metas: 500,
            presence_batch: Duration::from_millis(25),
            outbound_queue: 1024,
            outbound_queue_bytes: 1024 * 1024,
            topic_mailbox: 4096,
            heartbeat_timeout: Duration::from_secs(60),
            max_replay: 10_000,
            gap_grace: Duration::from_millis(100),
            log_check: Duration::from_secs(5),
            topic_idle: Duration::from_secs(30),
            topic_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            doc_idle: Duration::from_secs(10),
            max_yjs_message_bytes: 4 * 1024 * 1024,
            max_open_documents: 10_000,
            max_document_bytes: 4 * 1024 * 1024,
            token_lifetime: Duration::from_secs(900 + 5),
        }
    }
}

/// Counters the server exports as metrics.
#[derive(Debug, Default)]
pub struct Stats {
    /// Sessions alive.
    pub connections: AtomicI64,
    /// Sockets open at the transport level (kept by the transport).
    pub sockets: AtomicI64,
    /// The most sockets open at once since the memory keeper last looked (kept by the
    /// transport; the keeper resets it).
    pub sockets_peak: AtomicI64,
    pub topics: AtomicI64,
    pub subscriptions: AtomicI64,
    pub joins: AtomicU64,
    /// Joins accepted, by the kind of topic ([`TOPIC_KINDS`]).
    pub joins_by_kind: [AtomicU64; TOPIC_KINDS.len()],
    /// Sockets refused because their user had too many open.
    pub sockets_refused: AtomicU64,
    pub joins_refused: AtomicU64,
    /// Frames received, by event ([`FRAMES_IN`]).
    pub frames_in: [AtomicU64; FRAMES_IN.len()],
    /// Frames queued for clients, by event ([`FRAMES_OUT`]).
    pub frames_out: [AtomicU64; FRAMES_OUT.len()],
    /// From an event's commit (or a broadcast's arrival) to its frame's write to a socket,
    /// one observation per socket write (µs).
    pub fanout_latency: hist::Histogram,
    /// Frames an outbox held when the transport took them for the socket.
    pub outbound_depth: hist::DepthHistogram,
    /// From a Yjs update's arrival at its document's actor to its relay to the local peers
    /// and the bus (µs).
    pub yjs_update_latency: hist::Histogram,
    /// One batch of Yjs updates written to the store (µs).
    pub yjs_persist_latency: hist::Histogram,
    /// Yjs connections open.
    pub yjs_connections: AtomicI64,
    /// Documents loaded by their actor.
    pub yjs_documents: AtomicI64,
    /// Yjs updates applied.
    pub yjs_updates: AtomicU64,
    /// Yjs updates refused (sent by viewers, or growing a document past its limit).
    pub yjs_updates_refused: AtomicU64,
    /// Yjs updates written to the store.
    pub yjs_updates_written: AtomicU64,
    /// Saves of a document's text or updates the database refused for good.
    pub yjs_saves_failed: AtomicU64,
    /// Documents whose text and edits were behind their log when loaded (a node stopped
    /// before recording them), brought up to date.
    pub yjs_catch_ups: AtomicU64,
    pub events_replayed: AtomicU64,
    /// Client messages refused by the connection's own rate limit.
    pub rate_limited: AtomicU64,
    /// Client messages refused by their user's rate limit (all sockets together).
    pub user_rate_limited: AtomicU64,
    /// Broadcasts refused by their topic's budget.
    pub topic_rate_limited: AtomicU64,
    /// Messages refused or dropped because a topic's mailbox was full.
    pub topic_shed: AtomicU64,
    /// Presence joins not tracked because the topic tracks its maximum already.
    pub presence_untracked: AtomicU64,
    pub slow_consumers: AtomicU64,
    pub topic_crashes: AtomicU64,
    /// Topic actors started again by their supervisor after a crash.
    pub topic_restarts: AtomicU64,
    /// Session actors that panicked (their socket was closed with 1011).
    pub session_crashes: AtomicU64,
    pub revocations: AtomicU64,
    /// Messages sent to, and heard from, other nodes over the bus.
    pub bus_out: AtomicU64,
    pub bus_in: AtomicU64,
    /// Bus messages that failed the cluster key's seal, or came more than a minute late.
    pub bus_rejected: AtomicU64,
    /// Bus messages that could not be read (another format, or garbage).
    pub bus_undecodable: AtomicU64,
    /// Nodes taken for dead after their heartbeats stopped.
    pub nodes_expired: AtomicU64,
}

/// Topic kinds, as `stoa_ws_joins_total{kind}` names them.
pub const TOPIC_KINDS: [&str; 3] = ["workspace", "document", "user"];

/// Client frames, as `stoa_ws_frames_in_total{event}` names them.
pub const FRAMES_IN: [&str; 9] = [
    "heartbeat",
    "phx_join",
    "phx_leave",
    "broadcast",
    "presence:update",
    "access_token",
    "other",
    "malformed",
    "yjs",
];

/// Server frames, as `stoa_ws_frames_out_total{event}` names them.
pub const FRAMES_OUT: [&str; 7] = [
    "phx_reply",
    "event",
    "broadcast",
    "notification",
    "presence_state",
    "presence_diff",
    "yjs",
];

/// Index in [`FRAMES_OUT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Out {
    Reply,
    Event,
    Broadcast,
    Notification,
    PresenceState,
    PresenceDiff,
    Yjs,
}

impl Stats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn sent(&self, kind: Out, n: u64) {
        Stats::add(&self.frames_out[kind as usize], n);
    }

    /// Counts a client frame by its event name (heartbeats are recognised by the caller,
    /// which knows the topic).
    pub fn received(&self, event: &str) {
        let i = match event {
            "heartbeat" => 0,
            "phx_join" => 1,
            "phx_leave" => 2,
            "broadcast" => 3,
            "presence:update" => 4,
            "access_token" => 5,
            "" => 7,
            "yjs" => 8,
            _ => 6,
        };
        Stats::add(&self.frames_in[i], 1);
    }

    pub fn frames_in_total(&self) -> u64 {
        self.frames_in
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    pub fn frames_out_total(&self) -> u64 {
        self.frames_out
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }
}

/// Wall-clock microseconds since the Unix epoch.
pub(crate) fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Wall-clock milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
