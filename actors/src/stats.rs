//! The counters the server exports as metrics, kept by the actors and the transport.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::hist;

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
