//! What the node hears from the others over the bus, and what it tells them: messages
//! checked and dispatched, heartbeats and departures, presence asked for again.

use super::*;
use crate::topic::{
    CheckLog, ForgetNode, RemoteBroadcast, RemotePresence, RemoteSnapshot, Resync, SendSnapshot,
};

impl Shared {
    /// A message another node sent.
    pub(crate) fn heard(&self, channel: &str, message: &[u8]) {
        let envelope = match self.env.key.open(channel, message, crate::clock::now_us()) {
            Ok(envelope) => envelope,
            Err(wire::Unsealed::Unreadable) => {
                Stats::add(&self.stats().bus_undecodable, 1);
                return;
            }
            Err(wire::Unsealed::Forged | wire::Unsealed::Stale) => {
                // Not from a node of this cluster (or replayed): dropped, counted.
                Stats::add(&self.stats().bus_rejected, 1);
                return;
            }
        };
        if envelope.node == self.cluster.node_id {
            return; // our own, back from the bus
        }
        Stats::add(&self.stats().bus_in, 1);
        if let (Some(at), Some(observe)) = (envelope.at, self.lag_observer.get()) {
            observe(Duration::from_micros(
                crate::clock::now_us().saturating_sub(at),
            ));
        }
        let node = envelope.node;
        match envelope.body {
            Body::Event {
                workspace,
                offset,
                document,
                payload,
            } => self.publish_local(LiveEvent {
                workspace_id: workspace,
                offset,
                document_id: document,
                payload: Arc::new(payload),
                born: crate::hist::stamp(),
            }),
            Body::YjsUpdates { document, updates } => {
                self.docs.heard_updates(&self.env, document, updates)
            }
            Body::YjsAwareness { document, update } => {
                self.docs.heard_awareness(&self.env, document, update)
            }
            Body::Broadcast {
                topic,
                payload,
                event,
            } => {
                let Some(topic) = Topic::parse(&topic).ok().and_then(|t| self.live(t)) else {
                    return;
                };
                // Only a name a publish could have given: a sealed message from a node of
                // an older or newer release is still checked like one from outside.
                let event = match event {
                    None => None,
                    Some(name) if crate::topic::publishable_event(&name) => Some(name),
                    Some(_) => return,
                };
                self.offer(&topic, |ticket| RemoteBroadcast {
                    payload,
                    event,
                    ticket,
                });
            }
            Body::Notify { user, payload } => self.notify_local(user, payload),
            Body::Revoke { what, reason } => self.revoke_local(what, known_reason(&reason)),
            Body::RoleChanged {
                workspace,
                user,
                writable,
            } => self.role_changed_local(workspace, user, writable),
            Body::SessionEnded(end) => self.session_ended_local(end),
            // Presence from other nodes takes a ticket like every local message: a topic
            // whose mailbox is full sheds it, and asks the other nodes for their whole
            // presence again a moment later (their snapshots replace what it holds of them).
            Body::Presence {
                topic,
                joins,
                leaves,
            } => {
                if let Some(live) = Topic::parse(&topic).ok().and_then(|t| self.live(t)) {
                    let delivered = self.offer(&live, |ticket| RemotePresence {
                        node,
                        joins,
                        leaves,
                        ticket,
                    });
                    if !delivered {
                        self.later(Redo::AskPresence(topic));
                    }
                }
            }
            Body::PresenceSnapshot { topic, metas } => {
                if let Some(live) = Topic::parse(&topic).ok().and_then(|t| self.live(t)) {
                    if !self.offer(&live, |ticket| RemoteSnapshot {
                        node,
                        metas,
                        ticket,
                    }) {
                        self.later(Redo::AskPresence(topic));
                    }
                }
            }
            Body::PresenceRequest { topic } => {
                if let Some(live) = Topic::parse(&topic).ok().and_then(|t| self.live(t)) {
                    if !self.offer(&live, SendSnapshot) {
                        self.later(Redo::SendPresence(topic));
                    }
                }
            }
            Body::Heartbeat {
                expiry_ms,
                incarnation,
                load,
            } => {
                let expiry = Duration::from_millis(expiry_ms.clamp(100, 3_600_000));
                let heard = Heard {
                    at: Instant::now(),
                    expiry,
                    incarnation,
                    load,
                };
                match self.nodes.insert(node.clone(), heard) {
                    None => tracing::info!(%node, "a node joined the cluster"),
                    Some(before) if before.incarnation != incarnation => {
                        tracing::warn!(%node, "a node restarted; its earlier presences leave");
                        self.forget_node(&node);
                    }
                    Some(_) => {}
                }
            }
            Body::Leaving => {
                tracing::info!(%node, "a node left the cluster");
                self.nodes.remove(&node);
                self.forget_node(&node);
            }
            Body::Relay { to, payload } => {
                if to == self.cluster.node_id {
                    if let Some(hear) = self.relay_handler.get() {
                        hear(node, payload);
                    }
                }
            }
            Body::Unknown => {}
        }
    }

    /// Every presence a node held leaves this node's topics.
    pub(super) fn forget_node(&self, node: &str) {
        let topics: Vec<TopicRef> = self.topics.iter().map(|t| t.clone()).collect();
        for topic in topics {
            topic.addr.do_send(ForgetNode(node.to_string()));
        }
    }

    /// This node's load, for its heartbeat and the cluster page.
    pub(super) fn load(&self) -> stoa_protocol::bus::NodeLoad {
        let count = |v: &std::sync::atomic::AtomicI64| {
            u64::try_from(v.load(std::sync::atomic::Ordering::Relaxed)).unwrap_or(0)
        };
        let stats = self.stats();
        stoa_protocol::bus::NodeLoad {
            sessions: count(&stats.connections),
            yjs_connections: count(&stats.yjs_connections),
            documents: count(&stats.yjs_documents),
        }
    }

    /// Says this node is alive, and forgets nodes that stopped saying so.
    pub(super) fn heartbeat(&self) {
        let expiry_ms = u64::try_from(self.cluster.node_expiry.as_millis()).unwrap_or(u64::MAX);
        self.bus_send(
            wire::CONTROL_CHANNEL,
            Body::Heartbeat {
                expiry_ms,
                incarnation: self.env.incarnation,
                load: self.load(),
            },
        );
        let dead: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| n.value().at.elapsed() > n.value().expiry)
            .map(|n| n.key().clone())
            .collect();
        for node in dead {
            if self
                .nodes
                .remove_if(&node, |_, heard| heard.at.elapsed() > heard.expiry)
                .is_some()
            {
                tracing::warn!(%node, "a node stopped answering; its presences leave");
                Stats::add(&self.stats().nodes_expired, 1);
                self.forget_node(&node);
            }
        }
    }

    /// The bus is back after an outage: every topic reads its log now rather than at its
    /// next check (events published meanwhile were lost on the bus).
    pub(crate) fn bus_reconnected(&self) {
        let topics: Vec<TopicRef> = self.topics.iter().map(|t| t.clone()).collect();
        for topic in topics {
            topic.addr.do_send(CheckLog);
            topic.addr.do_send(Resync);
        }
    }

    /// Does `redo` after [`REDO_AFTER`] (once, however many times it is asked for
    /// meanwhile): what a topic shed of another node's presence is asked for again, and a
    /// snapshot it could not take a request for is sent after all.
    pub(super) fn later(&self, redo: Redo) {
        let Some(weak) = self.me.get().cloned() else {
            return;
        };
        if !self.redo.insert(redo.clone()) {
            return;
        }
        let task = async move {
            actix::clock::sleep(REDO_AFTER).await;
            let Some(shared) = weak.upgrade() else { return };
            shared.redo.remove(&redo);
            match redo {
                Redo::AskPresence(topic) => {
                    shared.bus_send(wire::CONTROL_CHANNEL, Body::PresenceRequest { topic });
                }
                Redo::SendPresence(topic) => {
                    if let Some(live) = Topic::parse(&topic).ok().and_then(|t| shared.live(t)) {
                        if !shared.offer(&live, SendSnapshot) {
                            shared.later(Redo::SendPresence(topic));
                        }
                    }
                }
            }
        };
        match self.arbiters.first() {
            Some(arbiter) => {
                arbiter.spawn(task);
            }
            None => {
                actix::spawn(task);
            }
        }
    }
}

/// How long a topic that shed presence from another node waits before it asks again.
const REDO_AFTER: Duration = Duration::from_secs(1);

/// Presence work a full topic could not take, done again after [`REDO_AFTER`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Redo {
    /// Ask the other nodes for their snapshots of this topic.
    AskPresence(String),
    /// Send this node's snapshot of this topic.
    SendPresence(String),
}

impl crate::bus::Listener for Shared {
    fn heard(&self, channel: &str, message: &[u8]) {
        Shared::heard(self, channel, message);
    }

    fn reconnected(&self) {
        self.bus_reconnected();
    }
}
