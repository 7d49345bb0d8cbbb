//! The bus between the nodes of a cluster, as the actors see it: a port with a publish side
//! and a subscription side, and the inbox where an implementation hands what it hears.
//!
//! A node hears a channel only while it has a topic actor that needs it (see the registry's
//! interest counts), so traffic follows interest, not the number of nodes. The bus is the
//! fast path and may lose messages (Redis pub/sub is at-most-once); the event log stays the
//! truth, and the topics' gap fill and log check heal whatever the bus dropped.
//!
//! Two implementations: [`LocalHub`] here (nodes in one process: the default single node,
//! and tests), and Redis in the server crate. Nothing in this crate knows Redis.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

pub trait Bus: Send + Sync + 'static {
    /// Sends a message on a channel, without waiting; it may be lost.
    fn publish(&self, channel: &str, message: Vec<u8>);
    /// Starts hearing a channel (called once per channel, when the first interest begins).
    fn subscribe(&self, channel: &str);
    /// Stops hearing a channel (when the last interest ends).
    fn unsubscribe(&self, channel: &str);
    /// Whether the bus is connected now (an in-process bus always is). Nothing waits on
    /// it; it says when a message published now can reach the other nodes.
    fn connected(&self) -> bool {
        true
    }
}

/// The node's cluster identity and timing.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// Unique among the nodes; `phx_ref`s of presences carry it.
    pub node_id: String,
    /// How often the node says it is alive.
    pub heartbeat: Duration,
    /// A node silent this long is dead: its presences leave everywhere.
    pub node_expiry: Duration,
    /// Seals what this node sends and opens what it hears (every node of a cluster has
    /// the same).
    pub key: stoa_protocol::bus::ClusterKey,
}

impl Cluster {
    /// A random node id (8 hex digits).
    pub fn random_node_id() -> String {
        use std::collections::hash_map::RandomState;
        use std::hash::{BuildHasher, Hasher};
        let mut h = RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.write_u32(std::process::id());
        format!("{:08x}", h.finish() as u32)
    }
}

impl Default for Cluster {
    fn default() -> Cluster {
        Cluster {
            node_id: Cluster::random_node_id(),
            heartbeat: Duration::from_secs(2),
            node_expiry: Duration::from_secs(10),
            // The same for every node made with the defaults (tests, nodes in one process).
            key: stoa_protocol::bus::ClusterKey::derive(b"stoa default cluster key"),
        }
    }
}

/// What a node does with what its bus hears (the node's real-time core implements it).
pub(crate) trait Listener: Send + Sync {
    /// A message heard on `channel`.
    fn heard(&self, channel: &str, message: &[u8]);
    /// The bus was away and is back.
    fn reconnected(&self);
}

/// Where a bus hands a message it heard: the node's real-time core. Holding it does not
/// keep the core alive.
#[derive(Clone)]
pub struct BusInbox(pub(crate) Weak<dyn Listener>);

impl BusInbox {
    /// A message heard on `channel`.
    pub fn deliver(&self, channel: &str, message: &[u8]) {
        if let Some(node) = self.0.upgrade() {
            node.heard(channel, message);
        }
    }

    /// The bus was away and is back: messages may have been lost meanwhile, so the node
    /// reads its topics' logs and asks for the presences it holds views of again.
    pub fn reconnected(&self) {
        if let Some(node) = self.0.upgrade() {
            node.reconnected();
        }
    }
}

/// Nodes in one process, joined by a hub: the in-process bus.
#[derive(Default)]
pub struct LocalHub {
    subscribers: Mutex<HashMap<String, Vec<(usize, BusInbox)>>>,
    next: Mutex<usize>,
}

impl LocalHub {
    pub fn new() -> Arc<LocalHub> {
        Arc::new(LocalHub::default())
    }

    /// A bus endpoint for one node; `inbox` is that node's.
    pub fn endpoint(self: &Arc<Self>, inbox: BusInbox) -> LocalBus {
        let mut next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
        *next += 1;
        LocalBus {
            hub: self.clone(),
            me: *next,
            inbox,
        }
    }
}

/// One node's end of a [`LocalHub`]. Delivery is immediate, on the publisher's thread; a
/// node does not hear its own messages.
pub struct LocalBus {
    hub: Arc<LocalHub>,
    me: usize,
    inbox: BusInbox,
}

impl Bus for LocalBus {
    fn publish(&self, channel: &str, message: Vec<u8>) {
        let targets: Vec<BusInbox> = {
            let subs = self
                .hub
                .subscribers
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            subs.get(channel)
                .map(|list| {
                    list.iter()
                        .filter(|(node, _)| *node != self.me)
                        .map(|(_, inbox)| inbox.clone())
                        .collect()
                })
                .unwrap_or_default()
        };
        for inbox in targets {
            inbox.deliver(channel, &message);
        }
    }

    fn subscribe(&self, channel: &str) {
        let mut subs = self
            .hub
            .subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        subs.entry(channel.to_string())
            .or_default()
            .push((self.me, self.inbox.clone()));
    }

    fn unsubscribe(&self, channel: &str) {
        let mut subs = self
            .hub
            .subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(list) = subs.get_mut(channel) {
            list.retain(|(node, _)| *node != self.me);
            if list.is_empty() {
                subs.remove(channel);
            }
        }
    }
}
