//! The node's live actors, found through concurrent maps; the supervisor of topic actors;
//! and the handle the rest of the server uses to reach them.
//!
//! # Supervision
//!
//! Every topic actor is started with a watcher beside it on the same thread. An actor that
//! decides to stop (idle, or unable to read its log) says goodbye through a oneshot channel
//! as it decides, and the watcher forgets it. An actor that panics never says goodbye: its
//! task ends and drops the sender, which the watcher reads as a crash. (The goodbye is not
//! said in `stopped()`, because actix runs `stopped()` even for an actor whose handler
//! panicked, while it drops the actor's task.) It counts the crash and puts a
//! fresh actor in the dead one's place, so publications and notifications reach a live
//! topic at once; the dead actor's subscribers were sent `phx_error` as it was dropped and
//! rejoin (phoenix.js does so by itself, with `since` when the app passes a params closure).
//! A topic restarted `MAX_RESTARTS` times within `RESTART_WINDOW` is not restarted again, so
//! a crash that recurs at once cannot loop; the next join starts it afresh.

mod cluster;
mod permit;
mod supervise;

use cluster::Redo;
pub use permit::{Refusal, SocketPermit};

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix::prelude::*;
use dashmap::DashMap;
use serde_json::{json, Map, Value};
use stoa_protocol::bus::{self as wire, Body, Revocation, SessionEnd};
use stoa_protocol::Topic;

use crate::bus::{Bus, BusInbox, Cluster};
use crate::env::{Env, Revoked};
use crate::limit::KeyedLimiter;
use crate::limits::Limits;
use crate::ports::{Authorizer, EventLog, LiveEvent};
use crate::stats::Stats;
#[cfg(feature = "faults")]
use crate::topic::{Crash, CrashSessions, Stall};
use crate::topic::{Notify, Publish, RemoteBroadcast, Revoke, Ticket, TopicActor, TopicRef};

/// Why a server-side publish was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishRefused {
    #[error("the payload is {size} bytes; broadcasts are at most {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("event must be 1 to 64 letters, digits, _ . : or -, and not phx_*, event, presence_state, presence_diff or notification")]
    Event,
    #[error("the topic's broadcast budget is spent; try again shortly")]
    RateLimited,
}

/// Another node as its last heartbeat left it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Heard {
    pub(crate) at: Instant,
    /// How long it said to wait for the next heartbeat.
    pub(crate) expiry: Duration,
    pub(crate) incarnation: u64,
    pub(crate) load: stoa_protocol::bus::NodeLoad,
}

/// A live node of the cluster, as `GET /api/v1/cluster` shows it.
type RelayHandler = Box<dyn Fn(String, Value) + Send + Sync>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub id: String,
    /// Milliseconds since it was last heard (0 for this node).
    pub last_heard_ms: u64,
    pub load: stoa_protocol::bus::NodeLoad,
}

/// Documents caught up at once at start-up.
const CATCH_UP_AT_ONCE: usize = 16;

pub(crate) struct Shared {
    pub(crate) env: Arc<Env>,
    /// Presence work to do again shortly (see [`Shared::later`]).
    redo: dashmap::DashSet<Redo>,
    /// This node's core itself, for work it schedules for later.
    me: std::sync::OnceLock<std::sync::Weak<Shared>>,
    pub(crate) authorizer: Arc<dyn Authorizer>,
    topics: DashMap<Topic, TopicRef>,
    /// The threads topic actors run on, apart from the threads serving sockets, so that a
    /// busy topic never delays a session's own work (heartbeats, overflow handling).
    arbiters: Vec<actix::dev::ArbiterHandle>,
    /// Workspace id → ids of its documents that have a topic actor (cleaned lazily).
    documents: DashMap<i64, HashSet<i64>>,
    /// Sockets open on this node, per user.
    users: DashMap<i64, u32>,
    /// The transport threads' inboxes, for the metric of what waits in them.
    inboxes: Mutex<Vec<Arc<crate::outbox::Inbox>>>,
    /// The messages each user may send, over all their sockets together. Kept apart from
    /// the socket count, so that closing every socket and opening a new one does not give
    /// a fresh allowance; opening a socket costs one message too.
    user_messages: KeyedLimiter<i64>,
    /// What the publish API may send to each topic from this node (count, bytes): the
    /// same budget a topic gives its clients' broadcasts.
    published: KeyedLimiter<Topic>,
    published_bytes: KeyedLimiter<Topic>,
    /// The node is shutting down: actors stopped now are not crashing.
    shutting_down: std::sync::atomic::AtomicBool,
    pub(crate) cluster: Cluster,
    /// The other nodes heard from: when last, how long they said to wait for the next,
    /// and which start of theirs.
    nodes: DashMap<String, Heard>,
    /// Told how long each message took over the bus (for the metrics).
    lag_observer: std::sync::OnceLock<Box<dyn Fn(Duration) + Send + Sync>>,
    /// Hears relays to this node: the sending node and the payload.
    relay_handler: std::sync::OnceLock<RelayHandler>,
    /// Every session of this node and its user, to send away when it shuts down or its
    /// login ends.
    pub(crate) sessions: DashMap<u64, (i64, Recipient<crate::notice::SessionNotice>)>,
    /// Sessions ended before their tokens expire.
    pub(crate) ended: crate::ended::Ended,
    /// The Yjs documents open on this node.
    pub(crate) docs: Arc<crate::yjs::Docs>,
}

/// The bus channels a topic's actor needs while it lives.
fn channels_of(topic: Topic, workspace: Option<i64>) -> Vec<String> {
    let mut out = vec![wire::topic_channel(topic)];
    if let (Topic::Workspace(_) | Topic::Document(_), Some(ws)) = (topic, workspace) {
        out.push(wire::event_channel(ws));
    }
    out
}

/// A reason from another node, as one of ours (the client reads it).
fn known_reason(reason: &str) -> &'static str {
    match reason {
        "membership_revoked" => "membership_revoked",
        "left" => "left",
        "workspace_deleted" => "workspace_deleted",
        "document_deleted" => "document_deleted",
        _ => "revoked",
    }
}

impl Shared {
    pub(crate) fn limits(&self) -> &Limits {
        &self.env.limits
    }

    pub(crate) fn stats(&self) -> &Stats {
        &self.env.stats
    }

    fn live(&self, topic: Topic) -> Option<TopicRef> {
        self.topics
            .get(&topic)
            .map(|t| t.clone())
            .filter(|t| t.addr.connected())
    }

    pub(crate) fn shutting_down(&self) -> bool {
        self.shutting_down
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Sends a message to the other nodes (nothing without a bus).
    pub(crate) fn bus_send(&self, channel: &str, body: Body) {
        self.env.bus_send(channel, body);
    }

    pub(crate) fn has_bus(&self) -> bool {
        self.env.has_bus()
    }

    /// Counts interest in channels; the bus hears a channel while some topic needs it.
    pub(crate) fn interest(&self, channels: &[String], more: bool) {
        self.env.interest(channels, more);
    }

    /// Delivers an event to this node's topics of its workspace.
    fn publish_local(&self, event: LiveEvent) {
        for topic in self.workspace_actors(event.workspace_id) {
            self.offer(&topic, |ticket| Publish(event.clone(), ticket));
        }
    }

    fn notify_local(&self, user: i64, payload: Value) {
        if let Some(topic) = self.live(Topic::User(user)) {
            let payload = Arc::new(payload);
            self.offer(&topic, |ticket| Notify(payload, ticket));
        }
    }

    /// Closes the channels a revocation covers on this node, and remembers it for joins
    /// still being authorised.
    fn revoke_local(&self, what: Revocation, reason: &'static str) {
        match what {
            Revocation::Member { workspace, user } => {
                self.env
                    .record_revocation(Revoked::Workspace(workspace, Some(user)));
                for topic in self.workspace_actors(workspace) {
                    // Never dropped: access must end even when the topic is busy.
                    topic.addr.do_send(Revoke {
                        user: Some(user),
                        reason,
                    });
                }
                self.docs.revoke(Some(workspace), None, Some(user), reason);
            }
            Revocation::Workspace { workspace } => {
                self.env
                    .record_revocation(Revoked::Workspace(workspace, None));
                for topic in self.workspace_actors(workspace) {
                    topic.addr.do_send(Revoke { user: None, reason });
                }
                self.docs.revoke(Some(workspace), None, None, reason);
            }
            Revocation::Document { document } => {
                self.env.record_revocation(Revoked::Document(document));
                if let Some(topic) = self.live(Topic::Document(document)) {
                    topic.addr.do_send(Revoke { user: None, reason });
                }
                self.docs.revoke(None, Some(document), None, reason);
            }
        }
    }

    /// Remembers a session end (token checks refuse what it names from now on) and
    /// closes this node's sockets opened with such tokens.
    fn session_ended_local(&self, end: SessionEnd) {
        let end = Arc::new(end);
        if !self.ended.record(end.clone()) {
            return;
        }
        for entry in self.sessions.iter() {
            let (user, session) = entry.value();
            if *user == end.user {
                session.do_send(crate::notice::SessionNotice::Ended(end.clone()));
            }
        }
    }

    /// Applies a role change to the live documents on this node, and remembers it for
    /// sockets still being authorised.
    fn role_changed_local(&self, workspace: i64, user: i64, writable: bool) {
        self.env.record_revocation(Revoked::Role(workspace, user));
        self.docs.role_changed(workspace, user, writable);
    }

    /// Takes one message from `user`'s allowance (all their sockets together).
    pub(crate) fn user_allows(&self, user: i64) -> bool {
        self.user_messages.take(&user)
    }

    /// The live actors of a workspace's topic and of its documents' topics.
    /// (The index keeps a document whose actor is between a crash and its restart: the
    /// supervisor, not liveness, decides when a document leaves it.)
    fn workspace_actors(&self, ws: i64) -> Vec<TopicRef> {
        let mut out: Vec<_> = self.live(Topic::Workspace(ws)).into_iter().collect();
        if let Some(docs) = self.documents.get(&ws) {
            out.extend(
                docs.iter()
                    .filter_map(|doc| self.live(Topic::Document(*doc))),
            );
        }
        out
    }

    /// Delivers a message a topic may do without (it heals from the log, or the client
    /// reads it over REST): dropped and counted when the topic's mailbox is full.
    /// Whether it was delivered.
    fn offer<M>(&self, topic: &TopicRef, msg: impl FnOnce(Ticket) -> M) -> bool
    where
        M: Message + Send + 'static,
        M::Result: Send,
        TopicActor: Handler<M>,
    {
        match topic.ticket(self.limits().topic_mailbox) {
            Some(ticket) => {
                topic.addr.do_send(msg(ticket));
                true
            }
            None => {
                Stats::add(&self.stats().topic_shed, 1);
                false
            }
        }
    }
}

/// The handle on the node's real-time state: cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct Realtime {
    pub(crate) shared: Arc<Shared>,
}

impl Realtime {
    /// Must be called inside an actix system: it starts `limits.topic_threads` arbiter
    /// threads for topic actors.
    pub fn new(
        authorizer: Arc<dyn Authorizer>,
        log: Arc<dyn EventLog>,
        limits: Limits,
    ) -> Realtime {
        Realtime::in_cluster(authorizer, log, limits, Cluster::default())
    }

    /// Like [`Realtime::new`], for a node of a cluster: connect its bus with
    /// [`Realtime::connect_bus`].
    pub fn in_cluster(
        authorizer: Arc<dyn Authorizer>,
        log: Arc<dyn EventLog>,
        limits: Limits,
        cluster: Cluster,
    ) -> Realtime {
        let arbiters = (0..limits.topic_threads)
            .map(|_| actix::Arbiter::new().handle())
            .collect();
        let user_messages =
            KeyedLimiter::new(limits.user_messages_per_sec, limits.user_message_burst);
        let (per_sec, bytes) = (
            limits.topic_broadcasts_per_sec,
            limits.topic_broadcast_bytes_per_sec,
        );
        let published = KeyedLimiter::new(per_sec, per_sec.saturating_mul(2));
        let published_bytes = KeyedLimiter::new(
            bytes,
            bytes.max(u32::try_from(limits.max_broadcast_bytes).unwrap_or(u32::MAX)),
        );
        let realtime = Realtime {
            shared: Arc::new(Shared {
                env: Arc::new(Env::new(
                    log,
                    limits,
                    cluster.node_id.clone(),
                    cluster.key.clone(),
                )),
                authorizer,
                topics: DashMap::new(),
                arbiters,
                documents: DashMap::new(),
                users: DashMap::new(),
                inboxes: Mutex::default(),
                user_messages,
                published,
                published_bytes,
                shutting_down: std::sync::atomic::AtomicBool::new(false),
                cluster,
                nodes: DashMap::new(),
                sessions: DashMap::new(),
                ended: crate::ended::Ended::default(),
                lag_observer: std::sync::OnceLock::new(),
                relay_handler: std::sync::OnceLock::new(),
                docs: Arc::default(),
                redo: dashmap::DashSet::new(),
                me: std::sync::OnceLock::new(),
            }),
        };
        let _ = realtime.shared.me.set(Arc::downgrade(&realtime.shared));
        let publisher: Arc<dyn crate::ports::Publisher> = realtime.shared.clone();
        realtime
            .shared
            .docs
            .set_publisher(Arc::downgrade(&publisher));
        realtime
    }

    /// Where a bus delivers what it hears for this node.
    pub fn inbox(&self) -> BusInbox {
        let node: Arc<dyn crate::bus::Listener> = self.shared.clone();
        BusInbox(Arc::downgrade(&node))
    }

    /// Joins the node to the others through `bus` (once; later calls are ignored). The node
    /// hears the control channel from now on, and every channel its live topics need.
    pub fn connect_bus(&self, bus: Arc<dyn Bus>) {
        if self.shared.env.bus.set(bus.clone()).is_err() {
            return;
        }
        bus.subscribe(wire::CONTROL_CHANNEL);
        bus.subscribe(&wire::node_channel(&self.shared.cluster.node_id));
        // Heartbeats, and expiry of the nodes that stop sending them.
        let weak = Arc::downgrade(&self.shared);
        let every = self.shared.cluster.heartbeat;
        let beat = async move {
            loop {
                let Some(shared) = weak.upgrade() else { return };
                shared.heartbeat();
                drop(shared);
                actix::clock::sleep(every).await;
            }
        };
        match self.shared.arbiters.first() {
            Some(arbiter) => {
                arbiter.spawn(beat);
            }
            None => {
                actix::spawn(beat);
            }
        }
        self.shared.env.subscribe_all(bus.as_ref());
    }

    /// Calls `observe` with how long each message heard from another node took, by the
    /// sender's clock (once; later calls are ignored).
    pub fn on_bus_lag(&self, observe: impl Fn(Duration) + Send + Sync + 'static) {
        let _ = self.shared.lag_observer.set(Box::new(observe));
    }

    /// Whether the node has a bus to other nodes (it is in a cluster).
    pub fn has_bus(&self) -> bool {
        self.shared.has_bus()
    }

    /// Calls `hear` with the sending node and the payload of every relay to this node
    /// (once; later calls are ignored). It runs on the bus's task: it must not block.
    pub fn on_relay(&self, hear: impl Fn(String, Value) + Send + Sync + 'static) {
        let _ = self.shared.relay_handler.set(Box::new(hear));
    }

    /// Sends `payload` to node `to` alone (nothing without a bus). At most once, like
    /// everything on the bus: the caller waits for an answer with a deadline.
    pub fn relay(&self, to: &str, payload: Value) {
        self.shared.bus_send(
            &wire::node_channel(to),
            Body::Relay {
                to: to.to_string(),
                payload,
            },
        );
    }

    pub fn node_id(&self) -> &str {
        &self.shared.cluster.node_id
    }

    /// The other live nodes this node has heard from, with the time since each was last
    /// heard and the load its heartbeat carried.
    pub fn nodes(&self) -> Vec<NodeInfo> {
        let mut nodes: Vec<NodeInfo> = self
            .shared
            .nodes
            .iter()
            .map(|n| NodeInfo {
                id: n.key().clone(),
                last_heard_ms: u64::try_from(n.value().at.elapsed().as_millis())
                    .unwrap_or(u64::MAX),
                load: n.value().load,
            })
            .collect();
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        nodes
    }

    /// This node's own load, as its heartbeat carries it.
    pub fn load(&self) -> stoa_protocol::bus::NodeLoad {
        self.shared.load()
    }

    pub fn limits(&self) -> &Limits {
        self.shared.limits()
    }

    /// Counts a new socket of `user`, unless they already have
    /// `limits.max_sockets_per_user` open or are over their message rate (opening a socket
    /// costs one message); the count drops with the permit.
    pub fn admit(&self, user: i64) -> Result<SocketPermit, Refusal> {
        let limits = self.limits();
        let mut open = self.shared.users.entry(user).or_insert(0);
        if *open >= limits.max_sockets_per_user {
            return Err(Refusal::TooManySockets);
        }
        if !self.shared.user_messages.take(&user) {
            return Err(Refusal::RateLimited);
        }
        *open += 1;
        Ok(SocketPermit {
            shared: self.shared.clone(),
            user,
            token: crate::TokenTag::default(),
        })
    }

    /// Forgets the message allowances of users whose allowance is whole again (call it
    /// every minute or so); returns how many users are still tracked.
    pub fn sweep(&self) -> usize {
        self.shared.ended.sweep(self.limits().token_lifetime);
        self.shared.published.sweep();
        self.shared.published_bytes.sweep();
        self.shared.user_messages.sweep();
        self.shared.user_messages.len()
    }

    pub fn stats(&self) -> &Stats {
        self.shared.stats()
    }

    /// A new inbox for a transport thread (see [`Realtime::inbox_bytes`]).
    pub fn thread_inbox(&self) -> Arc<crate::outbox::Inbox> {
        let inbox = crate::outbox::Inbox::new();
        let mut all = self
            .shared
            .inboxes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        all.push(inbox.clone());
        inbox
    }

    /// Bytes waiting in the transport threads' inboxes, read when asked (a count every
    /// frame would update would be one more cache line crossing cores per frame).
    pub fn inbox_bytes(&self) -> usize {
        let all = self
            .shared
            .inboxes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        all.iter().map(|inbox| inbox.bytes()).sum()
    }

    pub fn authorizer(&self) -> &dyn Authorizer {
        &*self.shared.authorizer
    }

    /// A committed event: pushed to the workspace's topic and, for events about a
    /// document, to that document's topic, here and (once, on the workspace's event
    /// channel) on every other node. Each topic puts events in offset order itself, so
    /// callers may publish from any thread in any order. A topic whose mailbox is full, or
    /// a node the bus lost the message for, reads it from the log instead (gap fill, log
    /// check).
    pub fn publish(&self, event: LiveEvent) {
        crate::ports::Publisher::publish(self.shared.as_ref(), event);
    }

    /// Closes `user`'s channels on a workspace and its documents (membership removed), on
    /// every node.
    pub fn revoke_member(&self, workspace: i64, user: i64, reason: &'static str) {
        self.revoke(Revocation::Member { workspace, user }, reason);
    }

    /// Closes every channel on a workspace and its documents (workspace deleted).
    pub fn close_workspace(&self, workspace: i64, reason: &'static str) {
        self.revoke(Revocation::Workspace { workspace }, reason);
    }

    /// Closes every channel on one document (document deleted).
    pub fn close_document(&self, document: i64, reason: &'static str) {
        self.revoke(Revocation::Document { document }, reason);
    }

    /// Ends sessions before their tokens expire (logout, password change, a disabled
    /// account): on every node, tokens it names are refused from now on and the sockets
    /// opened with them are closed (1008 with the reason).
    pub fn end_sessions(&self, end: SessionEnd) {
        self.shared.session_ended_local(end.clone());
        self.shared
            .bus_send(wire::CONTROL_CHANNEL, Body::SessionEnded(end));
    }

    /// Session ends read from the database (those the bus did not bring: a node that was
    /// away, a Redis outage, an end recorded by the command line), applied here only.
    pub fn sessions_ended(&self, ends: Vec<SessionEnd>) {
        for end in ends {
            self.shared.ended.advance(end.id);
            self.shared.session_ended_local(end);
        }
    }

    /// The last session end read from the database.
    pub fn session_ends_read_through(&self) -> i64 {
        self.shared.ended.read_through()
    }

    /// Why a token of `user` from login `session` issued at `issued_at_ms` is no longer
    /// good, if it is not: the reason its session ended.
    pub fn session_ended(
        &self,
        user: i64,
        session: Option<&str>,
        issued_at_ms: i64,
    ) -> Option<&'static str> {
        self.shared
            .ended
            .ended(user, session, issued_at_ms)
            .map(|end| crate::ended::close_reason(&end))
    }

    /// A member's role changed (`writable`: editor or above): their open Yjs sockets on
    /// every node may write from now on, or are read-only from now on, and a socket being
    /// authorised meanwhile is closed to be checked again.
    pub fn role_changed(&self, workspace: i64, user: i64, writable: bool) {
        self.shared.role_changed_local(workspace, user, writable);
        self.shared.bus_send(
            wire::CONTROL_CHANNEL,
            Body::RoleChanged {
                workspace,
                user,
                writable,
            },
        );
    }

    fn revoke(&self, what: Revocation, reason: &'static str) {
        self.shared.revoke_local(what, reason);
        self.shared.bus_send(
            wire::CONTROL_CHANNEL,
            Body::Revoke {
                what,
                reason: reason.to_string(),
            },
        );
    }

    /// The notification hub: pushes `notification` to every session of `user` joined to
    /// `user:{id}`, on every node (dropped where that topic is overloaded: the notification
    /// is stored, and the client's next unread count or list shows it).
    pub fn notify_user(&self, user: i64, payload: Value) {
        if self.shared.has_bus() {
            let body = Body::Notify {
                user,
                payload: payload.clone(),
            };
            self.shared
                .bus_send(&wire::topic_channel(Topic::User(user)), body);
        }
        self.shared.notify_local(user, payload);
    }

    /// A server-side publish: `event` with `payload` (and `from`, set here) to every
    /// subscriber of `topic` on every node, never stored. Refused when the payload is over
    /// `max_broadcast_bytes`, when `event` is not a name a publish may use
    /// ([`crate::topic::publishable_event`]), or when the topic's publish budget on this
    /// node (the numbers of a topic's client broadcasts) is spent.
    pub fn publish_broadcast(
        &self,
        topic: Topic,
        event: &str,
        mut payload: Map<String, Value>,
        from: i64,
    ) -> Result<(), PublishRefused> {
        if !crate::topic::publishable_event(event) {
            return Err(PublishRefused::Event);
        }
        payload.insert("from".into(), json!(from));
        let size = serde_json::to_vec(&payload).map_or(usize::MAX, |v| v.len());
        let limit = self.limits().max_broadcast_bytes;
        if size > limit {
            return Err(PublishRefused::TooLarge { size, limit });
        }
        let size = u32::try_from(size).unwrap_or(u32::MAX);
        if !(self.shared.published.take(&topic) && self.shared.published_bytes.take_n(&topic, size))
        {
            Stats::add(&self.stats().topic_rate_limited, 1);
            return Err(PublishRefused::RateLimited);
        }
        if self.shared.has_bus() {
            let body = Body::Broadcast {
                topic: topic.to_string(),
                payload: payload.clone(),
                event: Some(event.to_string()),
            };
            self.shared.bus_send(&wire::topic_channel(topic), body);
        }
        if let Some(live) = self.shared.live(topic) {
            let event = Some(event.to_string());
            self.shared.offer(&live, |ticket| RemoteBroadcast {
                payload,
                event,
                ticket,
            });
        }
        Ok(())
    }

    /// Marks the node as shutting down: sessions and topics stopped from now on are told
    /// `going_away` (close 1001), not treated as crashes.
    pub fn begin_shutdown(&self) {
        let first = !self
            .shared
            .shutting_down
            .swap(true, std::sync::atomic::Ordering::AcqRel);
        if first {
            // The others drop this node's presences now, not after its heartbeats stop.
            self.shared.bus_send(wire::CONTROL_CHANNEL, Body::Leaving);
        }
    }

    /// Whether the node is shutting down (new sockets are refused then).
    pub fn is_shutting_down(&self) -> bool {
        self.shared.shutting_down()
    }

    /// Closes every socket with 1001 (going away), spread evenly over `over`, so that the
    /// clients reconnect elsewhere a few at a time rather than all at once. Call after
    /// [`Realtime::begin_shutdown`]; returns when the last has been told.
    pub async fn drain(&self, over: Duration) {
        let sessions: Vec<Recipient<crate::notice::SessionNotice>> = self
            .shared
            .sessions
            .iter()
            .map(|s| s.value().1.clone())
            .collect();
        if sessions.is_empty() {
            return;
        }
        tracing::info!(
            sockets = sessions.len(),
            seconds = over.as_secs_f64(),
            "draining: closing sockets with 1001"
        );
        // In steps of at least 20 ms, each closing its share.
        let steps = (over.as_millis() / 20).clamp(1, sessions.len() as u128) as usize;
        let per_step = sessions.len().div_ceil(steps);
        let pause = over / steps as u32;
        for (i, batch) in sessions.chunks(per_step).enumerate() {
            if i > 0 {
                actix::clock::sleep(pause).await;
            }
            for session in batch {
                session.do_send(crate::notice::SessionNotice::GoAway);
            }
        }
    }

    /// Waits (at most `limit`) until no socket is open on this node.
    pub async fn sockets_closed(&self, limit: Duration) {
        let deadline = std::time::Instant::now() + limit;
        while self
            .stats()
            .sockets
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
            && std::time::Instant::now() < deadline
        {
            actix::clock::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Tells live editors of a document that REST wrote its text (making `version`): the
    /// change reaches them as a Yjs update (on every node). A document nobody has open is
    /// loaded for as long as writing the change takes.
    pub fn document_text_written(&self, document: i64, workspace: i64, text: String, version: i64) {
        self.shared
            .docs
            .set_text(&self.shared.env, document, workspace, text, version);
    }

    /// Brings documents whose text, events or rollups are behind their update log up to
    /// date (start-up, after a crash), a few at a time; each is closed again once written
    /// unless someone opened it meanwhile. Returns when all are done (or given up after
    /// `limit` each).
    pub async fn catch_up_documents(&self, documents: &[(i64, i64)], limit: Duration) {
        for batch in documents.chunks(CATCH_UP_AT_ONCE) {
            self.shared
                .docs
                .catch_up(&self.shared.env, batch, limit)
                .await;
        }
    }

    /// Waits (at most `limit`) until what this node's actor of the document applied before
    /// now is in the update log: a REST write handed to it, live edits. Editors typing on
    /// do not hold it back.
    pub async fn document_written(&self, document: i64, workspace: i64, limit: Duration) {
        self.shared
            .docs
            .written(&self.shared.env, document, workspace, limit)
            .await;
    }

    /// Whether a Yjs socket on `document` may be opened: it is open here already, or
    /// fewer than `max_open_documents` have connections (a document loaded only to take a
    /// REST write or to catch up does not count).
    pub fn may_open_document(&self, document: i64) -> bool {
        let docs = &self.shared.docs;
        docs.is_open(document) || docs.live_count() < self.limits().max_open_documents
    }

    /// Has Yjs documents kept in `store` (the `/yjs` endpoint needs one).
    pub fn set_doc_store(&self, store: Arc<dyn crate::DocStore>) {
        self.shared.docs.set_store(store);
    }

    /// Waits (at most `limit`) until every open document has written every update it
    /// applied (at shutdown, after the sockets have closed).
    pub async fn documents_written(&self, limit: Duration) {
        self.shared.docs.flush(limit).await;
    }

    /// Stops the topic threads (at shutdown).
    pub fn shutdown(&self) {
        for arbiter in &self.shared.arbiters {
            arbiter.stop();
        }
    }

    #[cfg(feature = "faults")]
    /// Fault injection: makes the topic's actor panic, as a bug would. Its subscribers
    /// receive `phx_error` and rejoin; nothing else is affected. False if not active.
    pub fn inject_panic(&self, topic: Topic) -> bool {
        self.fault(topic, Crash)
    }

    #[cfg(feature = "faults")]
    /// Fault injection: makes the session of every subscriber of `topic` panic. Each
    /// socket is closed with 1011; the topics forget those sessions.
    pub fn inject_session_panics(&self, topic: Topic) -> bool {
        self.fault(topic, CrashSessions)
    }

    #[cfg(feature = "faults")]
    /// Fault injection: blocks the topic's thread for `duration`, as a slow handler would,
    /// so that its mailbox fills.
    pub fn inject_stall(&self, topic: Topic, duration: Duration) -> bool {
        self.fault(topic, Stall(duration))
    }

    #[cfg(feature = "faults")]
    fn fault<M>(&self, topic: Topic, msg: M) -> bool
    where
        M: Message + Send + 'static,
        M::Result: Send,
        TopicActor: Handler<M>,
    {
        match self.shared.live(topic) {
            Some(topic) => {
                topic.addr.do_send(msg);
                true
            }
            None => false,
        }
    }
}

impl crate::ports::Publisher for Shared {
    fn publish(&self, event: LiveEvent) {
        if self.has_bus() {
            let body = Body::Event {
                workspace: event.workspace_id,
                offset: event.offset,
                document: event.document_id,
                payload: (*event.payload).clone(),
            };
            self.bus_send(&wire::event_channel(event.workspace_id), body);
        }
        self.publish_local(event);
    }
}
