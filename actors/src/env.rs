//! What every live actor may use, and nothing more: the event log, the limits, the counters,
//! unique ids, the bus and which of its channels the node hears, and the record of recent
//! revocations. Topics and documents receive this and never the registry, so neither can
//! reach other topics or start actors; the registry supervises them from outside (a
//! document publishes the events it records through the `Publisher` port).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use stoa_protocol::bus::{Body, Envelope};
use stoa_protocol::Topic;

use crate::bus::Bus;
use crate::limits::Limits;
use crate::ports::EventLog;
use crate::stats::Stats;

pub(crate) struct Env {
    pub(crate) log: Arc<dyn EventLog>,
    pub(crate) limits: Limits,
    pub(crate) stats: Stats,
    /// This node's id in the cluster.
    pub(crate) node_id: String,
    /// Seals the messages it sends to the other nodes.
    pub(crate) key: stoa_protocol::bus::ClusterKey,
    /// The bus to the other nodes, once connected (none: a node on its own).
    pub(crate) bus: OnceLock<Arc<dyn Bus>>,
    next_id: AtomicU64,
    /// This start of this node (its start time in microseconds): ids made here, such as
    /// `phx_ref`s, carry it so that a restart under the same node id never repeats one.
    pub(crate) incarnation: u64,
    /// Recent revocations, oldest first: a join whose authorisation began before one of
    /// these was checked against a membership that no longer exists.
    revocations: Mutex<VecDeque<Revocation>>,
    /// How many live actors need each bus channel: the bus hears a channel while one does.
    interest: Mutex<HashMap<String, usize>>,
}

/// What a revocation took away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Revoked {
    /// One user's membership of a workspace, or (`None`) the whole workspace.
    Workspace(i64, Option<i64>),
    Document(i64),
    /// A member's role in a workspace changed (what they may write, not whether they may
    /// read).
    Role(i64, i64),
}

struct Revocation {
    what: Revoked,
    at: Instant,
}

/// How long revocations are remembered: far longer than any authorisation check takes (a
/// check that waits for the database gives up after 30 s). Every deleted document is one,
/// so this, not a count, bounds the list: at a thousand deletions a second, 120,000 entries
/// of 48 bytes. It was ten minutes, and the list's storage, which never shrank, held the
/// most it ever had (heaptrack after a soak: `record_revocation` among the largest live
/// allocations).
const REVOCATION_MEMORY: Duration = Duration::from_secs(120);

impl Env {
    pub(crate) fn new(
        log: Arc<dyn EventLog>,
        limits: Limits,
        node_id: String,
        key: stoa_protocol::bus::ClusterKey,
    ) -> Env {
        Env {
            log,
            limits,
            stats: Stats::default(),
            node_id,
            key,
            bus: OnceLock::new(),
            next_id: AtomicU64::new(1),
            incarnation: crate::clock::now_us(),
            revocations: Mutex::new(VecDeque::new()),
            interest: Mutex::new(HashMap::new()),
        }
    }

    /// Counts interest in channels; the bus hears a channel while some actor needs it.
    pub(crate) fn interest(&self, channels: &[String], more: bool) {
        let mut interest = self.interest.lock().unwrap_or_else(PoisonError::into_inner);
        for channel in channels {
            let count = interest.entry(channel.clone()).or_insert(0);
            let before = *count;
            *count = if more {
                before + 1
            } else {
                before.saturating_sub(1)
            };
            let now = *count;
            if now == 0 {
                interest.remove(channel);
            }
            if let Some(bus) = self.bus.get() {
                if before == 0 && now == 1 {
                    bus.subscribe(channel);
                } else if before >= 1 && now == 0 {
                    bus.unsubscribe(channel);
                }
            }
        }
    }

    /// Has a bus just connected hear every channel some actor needs now (under the same
    /// lock as [`Env::interest`], so no change of interest slips between).
    pub(crate) fn subscribe_all(&self, bus: &dyn Bus) {
        let interest = self.interest.lock().unwrap_or_else(PoisonError::into_inner);
        for channel in interest.keys() {
            bus.subscribe(channel);
        }
    }

    /// Sends a message to the other nodes (nothing without a bus).
    pub(crate) fn bus_send(&self, channel: &str, body: Body) {
        if let Some(bus) = self.bus.get() {
            let envelope = Envelope::new(&self.node_id, body).at(crate::clock::now_us());
            let message = self.key.seal(channel, &envelope);
            Stats::add(&self.stats.bus_out, 1);
            bus.publish(channel, message);
        }
    }

    pub(crate) fn has_bus(&self) -> bool {
        self.bus.get().is_some()
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn record_revocation(&self, what: Revoked) {
        let mut list = self
            .revocations
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Read under the lock, so the list stays in time order (`revoked_since` stops at
        // the first entry older than what it asks about).
        let now = Instant::now();
        while list
            .front()
            .is_some_and(|r| now.duration_since(r.at) > REVOCATION_MEMORY)
        {
            list.pop_front();
        }
        list.push_back(Revocation { what, at: now });
        // What a burst grew is given back once the list is small again.
        if list.capacity() > 1024 && list.len() < list.capacity() / 4 {
            let keep = list.len() * 2;
            list.shrink_to(keep);
        }
    }

    /// Whether `user`'s access to `topic` (of `workspace`) was revoked after `since`.
    pub(crate) fn revoked_since(
        &self,
        topic: Topic,
        workspace: Option<i64>,
        user: i64,
        since: Instant,
    ) -> bool {
        let list = self
            .revocations
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        list.iter()
            .rev()
            .take_while(|r| r.at > since)
            .any(|r| match r.what {
                Revoked::Workspace(ws, who) => {
                    workspace == Some(ws) && who.is_none_or(|u| u == user)
                }
                Revoked::Document(doc) => topic == Topic::Document(doc),
                Revoked::Role(..) => false,
            })
    }

    /// Whether `user`'s role in `workspace` changed after `since`.
    pub(crate) fn role_changed_since(&self, workspace: i64, user: i64, since: Instant) -> bool {
        let list = self
            .revocations
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        list.iter()
            .rev()
            .take_while(|r| r.at > since)
            .any(|r| r.what == Revoked::Role(workspace, user))
    }
}
