//! One actor per active topic on the node: its subscribers, their presence, fan-out, and
//! the hand-off from the event log to live events.
//!
//! # Gap-free delivery
//!
//! The topic keeps `head`, the offset of the last event it has put in order. Events are
//! published after their transaction commits, from any thread, so they may arrive out of
//! order, twice (from a log read and live), or never (the publisher died between commit and
//! publish). Arrivals at or below `head` are dropped; arrivals above `head + 1` wait in
//! `pending`, and if the gap is still open after `gap_grace` the missing events are read
//! from the log. So the topic sees every offset exactly once, in order. That bookkeeping is
//! [`sequence::Sequence`], a plain struct with tests of its own.
//!
//! A join with `since` starts as *catching up*, with a `cursor`: the last offset it was
//! sent. It is skipped by live delivery while pages of the log after its cursor are read and
//! sent; when its cursor reaches the events still held in memory (`recent`) or `head`, the
//! rest comes from `recent` and it turns live, all inside one handler, so no event can fall
//! between the log read and the live stream. A live subscriber has had every event up to
//! `head`, or further when the log gave it events not yet published to the topic: such a
//! subscriber is *ahead*, and live delivery skips it until `head` reaches its cursor, so it
//! never gets an event twice.
//!
//! # Fan-out
//!
//! The subscribers are also kept as one list per transport thread serving their sockets
//! (a [`Lane`]): a push to the topic is one [`Fanout`] handed to each thread's inbox, which
//! shares the list, so this actor's thread does no work per subscriber. Every frame for one
//! socket passes through the same inbox, so a subscriber sees this topic's frames in the
//! order the topic sent them, whichever way each went.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use actix::prelude::*;
use serde_json::{json, Map, Value};
use stoa_protocol::bus::{topic_channel, Body, KeyedMeta, CONTROL_CHANNEL};
use stoa_protocol::frame::{encode_parts, encode_reply, Push};
use stoa_protocol::{PresenceMeta, PresenceState, ReplyStatus, Topic};

use crate::clock::now_ms;
mod join;
mod presence;
mod remote;
mod sequence;

use presence::Changes;
use remote::RemoteMetas;
use sequence::Sequence;

use crate::conn::Conn;
use crate::env::Env;
use crate::limit::Limiter;
use crate::notice::SessionNotice;
use crate::outbox::{Delivery, Fanout, Inbox, Outbound, PushHead, Targets};
use crate::ports::{Denied, LiveEvent};
use crate::stats::Out;
use crate::stats::Stats;

/// A topic actor's address, with what its senders share: the count of client messages and
/// live pushes waiting in its mailbox, and its broadcast budget.
///
/// actix bounds a mailbox per sender (each `Addr` clone may always add one more), so the
/// bound that matters — how much one topic may have queued, from everyone — is kept here: a
/// bounded message carries a [`Ticket`] that frees its place once the message has been
/// handled or dropped. The budget is checked by the sending session before the message is
/// queued at all, so a broadcast over it costs the topic nothing.
#[derive(Clone)]
pub(crate) struct TopicRef {
    pub(crate) addr: Addr<TopicActor>,
    gate: Arc<Gate>,
}

struct Gate {
    waiting: AtomicUsize,
    /// Broadcasts relayed, and their bytes (GCRA, shared by every sender).
    broadcasts: Limiter,
    broadcast_bytes: Limiter,
}

impl TopicRef {
    pub(crate) fn new(addr: Addr<TopicActor>, limits: &crate::limits::Limits) -> TopicRef {
        let per_sec = limits.topic_broadcasts_per_sec;
        let bytes = limits.topic_broadcast_bytes_per_sec;
        let byte_burst = bytes.max(u32::try_from(limits.max_broadcast_bytes).unwrap_or(u32::MAX));
        TopicRef {
            addr,
            gate: Arc::new(Gate {
                waiting: AtomicUsize::new(0),
                broadcasts: Limiter::new(per_sec, per_sec.saturating_mul(2)),
                broadcast_bytes: Limiter::new(bytes, byte_burst),
            }),
        }
    }

    /// A place in the mailbox, or `None` when `capacity` messages are waiting already.
    pub(crate) fn ticket(&self, capacity: usize) -> Option<Ticket> {
        let before = self.gate.waiting.fetch_add(1, Ordering::AcqRel);
        let ticket = Ticket(self.gate.clone());
        (before < capacity).then_some(ticket)
    }

    /// Takes one message of `size` bytes from the topic's relay budget (broadcasts and
    /// presence updates share it); false when over it.
    pub(crate) fn admit_relay(&self, size: usize) -> bool {
        let size = u32::try_from(size).unwrap_or(u32::MAX);
        self.gate.broadcasts.take() && self.gate.broadcast_bytes.take_n(size)
    }
}

impl PartialEq for TopicRef {
    fn eq(&self, other: &TopicRef) -> bool {
        self.addr == other.addr
    }
}

/// One place in a topic's mailbox, given back when dropped.
pub(crate) struct Ticket(Arc<Gate>);

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Events read from the log per page.
const PAGE: u32 = 500;

/// Subscribe a connection (or re-subscribe it: a second join replaces the first). The
/// answer says whether it joined: false when the join was refused (a revocation landed
/// first) or its client could not take the reply.
#[derive(Message)]
#[rtype(result = "bool")]
pub(crate) struct Join {
    pub conn: Conn,
    pub join_ref: Option<String>,
    pub msg_ref: Option<String>,
    pub since: Option<i64>,
    /// Whether this connection appears in the topic's presence.
    pub track: bool,
    /// Extra fields for the join reply (e.g. the unread count on `user:{id}`).
    pub info: Map<String, Value>,
    /// When the authorisation check that allowed this join began.
    pub authorized_at: std::time::Instant,
}

/// The subscription ends: the client left (reply ok to `msg_ref`, then `phx_close`), or
/// joined again (`msg_ref` is `None`: only `phx_close`, to the old join).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Leave {
    pub session: u64,
    pub msg_ref: Option<String>,
}

/// The connection is gone.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Disconnect {
    pub session: u64,
}

#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Publish(pub LiveEvent, #[allow(dead_code)] pub Ticket);

/// Relay a client's `broadcast` to the other subscribers (the sending session checked the
/// topic's budget and answered the client).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Broadcast {
    pub session: u64,
    pub user_id: i64,
    pub payload: Map<String, Value>,
    /// When the session took it from the client ([`crate::hist::stamp`]).
    pub born: u64,
    /// Held, never read: its place in the mailbox is freed when the message is dropped.
    #[allow(dead_code)]
    pub ticket: Ticket,
}

/// Replace a connection's presence meta; the topic replies.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct UpdatePresence {
    pub conn: Conn,
    pub join_ref: Option<String>,
    pub msg_ref: Option<String>,
    pub fields: Map<String, Value>,
    #[allow(dead_code)]
    pub ticket: Ticket,
}

/// Close the channels of one user (or of everyone) with a reason.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Revoke {
    pub user: Option<i64>,
    pub reason: &'static str,
}

/// A notification for the user of a `user:{id}` topic.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Notify(pub Arc<Value>, #[allow(dead_code)] pub Ticket);

/// A broadcast relayed from another node: to every subscriber here.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct RemoteBroadcast {
    pub payload: Map<String, Value>,
    /// The event a server-side publish named (`None`: `broadcast`).
    pub event: Option<String>,
    #[allow(dead_code)]
    pub ticket: Ticket,
}

/// Whether `name` may be the event of a server-side publish: 1 to 64 letters, digits, `_`,
/// `.`, `:` or `-`, and none of the names the protocol gives its own meaning (`phx_*`,
/// presence, the log's `event`, `notification`).
pub fn publishable_event(name: &str) -> bool {
    const RESERVED: [&str; 4] = ["event", "presence_state", "presence_diff", "notification"];
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b))
        && !name.starts_with("phx_")
        && !RESERVED.contains(&name)
}

/// Presence changes another node made on this topic.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct RemotePresence {
    pub node: String,
    pub joins: Vec<KeyedMeta>,
    pub leaves: Vec<String>,
    #[allow(dead_code)]
    pub ticket: Ticket,
}

/// Everything another node holds on this topic.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct RemoteSnapshot {
    pub node: String,
    pub metas: Vec<KeyedMeta>,
    #[allow(dead_code)]
    pub ticket: Ticket,
}

/// Another node asks what this node holds on the topic.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct SendSnapshot(#[allow(dead_code)] pub Ticket);

/// The bus is back: tell the others what this node holds, and ask what they hold.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Resync;

/// A node is gone: every presence it held leaves.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct ForgetNode(pub String);

/// Read the log now (the bus was away: publications may have been lost).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct CheckLog;

/// Fault injection: panic inside the handler.
#[cfg(feature = "faults")]
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Crash;

/// Fault injection: the session of every subscriber panics.
#[cfg(feature = "faults")]
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct CrashSessions;

/// Fault injection: the handler blocks its thread for this long.
#[cfg(feature = "faults")]
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Stall(pub std::time::Duration);

struct Sub {
    conn: Conn,
    join_ref: Option<String>,
    /// `[` and the join_ref as JSON: the start of every push to this subscriber.
    head: PushHead,
    /// Distinguishes this join from an earlier one of the same connection.
    generation: u64,
    /// While catching up (or ahead), the last offset it was sent.
    cursor: i64,
    catching_up: bool,
    /// Live, but the log gave it events the topic has not put in order yet (up to
    /// `cursor`): live delivery skips it until `head` reaches its cursor.
    ahead: bool,
    /// Its lane, and its place in the lane's targets.
    lane: usize,
    slot: usize,
    presence: Option<PresenceMeta>,
    presence_limiter: Limiter,
    /// The last presence change its `presence_state` already contained.
    presence_seen: u64,
}

/// The subscribers whose sockets one transport thread serves (`inbox`), or, with no inbox,
/// sockets no thread serves (their frames are queued from here).
struct Lane {
    inbox: Option<Arc<Inbox>>,
    targets: Arc<Targets>,
}

/// One presence change waiting to be sent as part of a `presence_diff`.
/// Send the presence changes gathered so far.
#[derive(Message)]
#[rtype(result = "()")]
struct FlushPresence;

pub struct TopicActor {
    topic: Topic,
    name: Arc<str>,
    /// The workspace whose log feeds this topic.
    workspace: Option<i64>,
    env: Arc<Env>,
    /// Told to the supervisor when the actor stops cleanly; dropped unsent on a crash.
    goodbye: Option<tokio::sync::oneshot::Sender<()>>,
    /// Subscribers whose connection appears in the presence.
    tracked: usize,
    /// Presences other nodes hold on this topic: node → `phx_ref` → meta.
    remote: RemoteMetas,
    /// This node's presence changes not yet sent to the other nodes.
    bus_joins: Vec<KeyedMeta>,
    bus_leaves: Vec<String>,
    /// The events in offset order, and the recent ones.
    seq: Sequence,
    gap_fill: Option<SpawnHandle>,
    /// Whether a publication arrived since the last log check.
    heard: bool,
    subs: HashMap<u64, Sub>,
    /// The subscribers again, by the thread serving them.
    lanes: Vec<Lane>,
    /// Subscribers live delivery must look at one by one: catching up, or ahead.
    filtered: usize,
    /// Presence changes not yet sent, in order, numbered.
    changes: Changes,
    /// Subscribers (id, generation) that joined since the last flush and wait for their
    /// `presence_state`: the window's joiners share one encoding of it.
    state_waiting: Vec<(u64, u64)>,
    flush_scheduled: bool,
    idle: Option<SpawnHandle>,
    me: Option<Addr<TopicActor>>,
}

impl TopicActor {
    pub(crate) fn new(
        topic: Topic,
        workspace: Option<i64>,
        env: Arc<Env>,
        goodbye: tokio::sync::oneshot::Sender<()>,
    ) -> TopicActor {
        TopicActor {
            goodbye: Some(goodbye),
            tracked: 0,
            remote: RemoteMetas::default(),
            bus_joins: Vec::new(),
            bus_leaves: Vec::new(),
            topic,
            name: topic.to_string().into(),
            workspace: match topic {
                Topic::User(_) => None,
                _ => workspace,
            },
            env,
            seq: Sequence::default(),
            gap_fill: None,
            heard: false,
            subs: HashMap::new(),
            lanes: Vec::new(),
            filtered: 0,
            changes: Changes::default(),
            state_waiting: Vec::new(),
            flush_scheduled: false,
            idle: None,
            me: None,
        }
    }

    fn stats(&self) -> &Stats {
        &self.env.stats
    }

    fn has_presence(&self) -> bool {
        !matches!(self.topic, Topic::User(_))
    }

    /// Whether this topic shows an event to its subscribers (all of them cursor past it).
    fn shows(&self, ev: &LiveEvent) -> bool {
        match self.topic {
            Topic::Workspace(_) => true,
            Topic::Document(doc) => ev.document_id == Some(doc),
            Topic::User(_) => false,
        }
    }

    fn push_to(&self, sub: &Sub, frame: String) -> bool {
        self.stats().sent(Out::Reply, 1);
        sub.conn.push(frame)
    }

    fn control(&self, join_ref: Option<&str>, event: &str, payload: &Value) -> String {
        encode_parts(join_ref, join_ref, &self.name, event, payload)
    }

    // ---- events ---------------------------------------------------------------------

    fn accept(&mut self, ev: LiveEvent, ctx: &mut Context<Self>) {
        self.seq.offer(ev);
        while let Some(ev) = self.seq.next_ready() {
            self.deliver(ev);
        }
        if self.seq.has_gap() && self.gap_fill.is_none() {
            let grace = self.env.limits.gap_grace;
            self.gap_fill = Some(ctx.run_later(grace, |act, ctx| act.fill_gap(ctx)));
        }
    }

    /// Reads the events between `head` and the first pending one from the log.
    fn fill_gap(&mut self, ctx: &mut Context<Self>) {
        let Some(want) = self.seq.missing(PAGE) else {
            self.gap_fill = None;
            return;
        };
        self.read_log(want, ctx);
    }

    /// Reads the log after `head` when no publication arrived since the last check: an event
    /// whose live publication was lost, and nothing after it, would otherwise wait for the next.
    fn check_log(&mut self, ctx: &mut Context<Self>) {
        let heard = std::mem::take(&mut self.heard);
        if !heard && !self.subs.is_empty() && self.gap_fill.is_none() {
            self.read_log(PAGE, ctx);
        }
    }

    /// Reads up to `want` events after `head` and puts them in order; a gap still open
    /// afterwards is retried after `gap_grace`.
    fn read_log(&mut self, want: u32, ctx: &mut Context<Self>) {
        let Some(ws) = self.workspace else {
            self.gap_fill = None;
            return;
        };
        let log = self.env.log.clone();
        let since = self.seq.head();
        let fut = async move { log.events_after(ws, since, want).await };
        self.gap_fill = Some(ctx.spawn(fut.into_actor(self).map(|res, act, ctx| {
            act.gap_fill = None;
            match res {
                Ok(events) => {
                    for ev in events {
                        act.accept(ev, ctx);
                    }
                }
                Err(e) => {
                    tracing::warn!(topic = %act.name, error = %e, "cannot read the event log")
                }
            }
            if act.seq.has_gap() && act.gap_fill.is_none() {
                let grace = act.env.limits.gap_grace;
                act.gap_fill = Some(ctx.run_later(grace, |act, ctx| act.fill_gap(ctx)));
            }
        })));
    }

    /// Sends the next in-order event to every live subscriber.
    fn deliver(&mut self, ev: LiveEvent) {
        // Those catching up read it from the log (or `recent`); those ahead had it from the
        // log already.
        let mut skip = Vec::new();
        if self.filtered > 0 {
            let mut caught_up = 0;
            for (id, sub) in self.subs.iter_mut() {
                if sub.catching_up {
                    skip.push(*id);
                } else if sub.ahead {
                    if sub.cursor >= ev.offset {
                        skip.push(*id);
                    }
                    if sub.cursor <= ev.offset {
                        sub.ahead = false;
                        caught_up += 1;
                    }
                }
            }
            self.filtered -= caught_up;
            skip.sort_unstable();
        }
        if self.shows(&ev) {
            let push = Push::new(&self.name, "event", &*ev.payload);
            let sent = self.subs.len() - skip.len();
            self.fan(push.tail(), ev.born, skip);
            self.env.stats.sent(Out::Event, sent as u64);
        }
        self.seq.remember(ev);
    }

    /// Hands a push to every lane's thread, for its subscribers but those in `skip`
    /// (sorted).
    fn fan(&mut self, tail: &Arc<str>, born: u64, skip: Vec<u64>) {
        let mut gone = Vec::new();
        let mut first = true;
        for lane in &self.lanes {
            if lane.targets.is_empty() {
                continue;
            }
            let Some(inbox) = &lane.inbox else {
                // Sockets no thread serves: queued from here.
                for t in lane
                    .targets
                    .iter()
                    .filter(|t| skip.binary_search(&t.id).is_err())
                {
                    let item = Outbound::Push {
                        head: t.head.clone(),
                        tail: tail.clone(),
                        born,
                    };
                    match t.outbox.send(item) {
                        Ok(()) => {}
                        Err(crate::outbox::Refused::Full) => {
                            t.outbox.overflow();
                            gone.push(t.id);
                        }
                        Err(crate::outbox::Refused::Closed) => gone.push(t.id),
                    }
                }
                continue;
            };
            // Each thread counts references to a tail of its own.
            let tail = if std::mem::take(&mut first) {
                tail.clone()
            } else {
                Arc::from(&**tail)
            };
            let fanout = Fanout {
                targets: lane.targets.clone(),
                skip: skip.clone(),
                tail,
                born,
            };
            if let Err(Delivery::Many(refused)) = inbox.deliver(Delivery::Many(fanout)) {
                // That thread is far behind: its subscribers here are slow consumers.
                for t in refused.targets.iter().filter(|t| !refused.skips(t.id)) {
                    t.outbox.overflow();
                    gone.push(t.id);
                }
            }
        }
        for id in gone {
            self.drop_sub(id, None);
        }
    }

    /// Adds a subscriber to the lane of the thread serving its socket.
    fn enlist(&mut self, id: u64) {
        let Some(sub) = self.subs.get_mut(&id) else {
            return;
        };
        let inbox = sub.conn.inbox();
        let same = |lane: &Lane| match (&lane.inbox, inbox) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        let lane = match self.lanes.iter().position(same) {
            Some(i) => i,
            None => {
                self.lanes.push(Lane {
                    inbox: inbox.cloned(),
                    targets: Arc::default(),
                });
                self.lanes.len() - 1
            }
        };
        // What a fan-out in flight still holds is copied, by chunks.
        let targets = Arc::make_mut(&mut self.lanes[lane].targets);
        sub.slot = targets.push(sub.conn.target(sub.head.clone()));
        sub.lane = lane;
    }

    /// Takes a removed subscriber out of its lane.
    fn delist(&mut self, sub: &Sub) {
        let Some(lane) = self.lanes.get_mut(sub.lane) else {
            return;
        };
        let targets = Arc::make_mut(&mut lane.targets);
        let id = sub.conn.id;
        let slot = match targets.get(sub.slot) {
            Some(t) if t.id == id => sub.slot,
            // Never expected (slots move only here); looked for rather than trusted.
            _ => match targets.iter().position(|t| t.id == id) {
                Some(slot) => slot,
                None => return,
            },
        };
        if let Some(moved) = targets.swap_remove(slot) {
            if let Some(m) = self.subs.get_mut(&moved) {
                m.slot = slot;
            }
        }
    }

    // ---- subscribers and presence ---------------------------------------------------

    /// Every meta of the topic: this node's connections', then those other nodes hold.
    fn presence_state(&self) -> PresenceState {
        let mut state = PresenceState::new();
        for sub in self.subs.values() {
            if let Some(meta) = &sub.presence {
                state
                    .entry(sub.conn.user_id.to_string())
                    .or_default()
                    .metas
                    .push(meta.clone());
            }
        }
        for km in self.remote.metas() {
            state
                .entry(km.key.clone())
                .or_default()
                .metas
                .push(km.meta.clone());
        }
        state
    }

    /// The metas of this node's connections, as the other nodes are told them.
    fn local_metas(&self) -> Vec<KeyedMeta> {
        self.subs
            .values()
            .filter_map(|sub| {
                sub.presence.as_ref().map(|meta| KeyedMeta {
                    key: sub.conn.user_id.to_string(),
                    meta: meta.clone(),
                })
            })
            .collect()
    }

    /// Notes a change of one of this node's presences: for the local subscribers (see
    /// [`TopicActor::record_change`]) and, with the next flush, for the other nodes.
    fn record(&mut self, key: String, meta: PresenceMeta, join: bool) {
        if self.env.has_bus() {
            if join {
                self.bus_joins.push(KeyedMeta {
                    key: key.clone(),
                    meta: meta.clone(),
                });
            } else {
                self.bus_leaves.push(meta.phx_ref.clone());
            }
        }
        self.record_change(key, meta, join);
    }

    /// Applies what another node says about the presences it holds. `snapshot`: the metas
    /// given are all it holds (the rest of what was known of it leaves).
    fn apply_remote(
        &mut self,
        node: String,
        joins: Vec<KeyedMeta>,
        leaves: Vec<String>,
        snapshot: bool,
    ) {
        let changes = self.remote.apply(&node, joins, leaves, snapshot);
        for (km, join) in changes {
            self.record_change(km.key, km.meta, join);
        }
    }

    /// Notes a presence change. Changes are sent as one `presence_diff` per
    /// `presence_batch` interval, so a crowd joining costs a diff per interval, not one per
    /// join, for each subscriber (the window grows with the topic: see `schedule_flush`).
    fn record_change(&mut self, key: String, meta: PresenceMeta, join: bool) {
        self.changes.record(key, meta, join);
        self.schedule_flush();
    }

    /// Has the presence changes and waiting states go out at the end of the batching
    /// window (at once if there is none).
    fn schedule_flush(&mut self) {
        let wait = self.env.limits.presence_batch;
        if wait.is_zero() {
            return self.flush_presence();
        }
        let wait = presence::window(wait, self.subs.len());
        if !self.flush_scheduled {
            if let Some(me) = self.me.clone() {
                self.flush_scheduled = true;
                actix::spawn(async move {
                    actix::clock::sleep(wait).await;
                    me.do_send(FlushPresence);
                });
            }
        }
    }

    /// Sends each subscriber the changes its presence state does not hold yet: one shared
    /// diff for those that joined before the batch, their own for those that joined during it.
    fn flush_presence(&mut self) {
        self.flush_scheduled = false;
        self.send_waiting_states();
        let Some(first) = self.changes.first() else {
            return;
        };
        let all = self.changes.diff_after(first - 1);
        let shared = (!all.is_empty()).then(|| Push::new(&self.name, "presence_diff", &all));
        let mut gone = Vec::new();
        let mut sent = 0;
        for (id, sub) in &self.subs {
            let ok = if sub.presence_seen < first {
                let Some(push) = &shared else { continue };
                sub.conn.push_shared(&sub.head, push.tail(), 0)
            } else if sub.presence_seen < self.changes.last() {
                let diff = self.changes.diff_after(sub.presence_seen);
                if diff.is_empty() {
                    continue;
                }
                let push = Push::new(&self.name, "presence_diff", &diff);
                sub.conn.push_shared(&sub.head, push.tail(), 0)
            } else {
                continue;
            };
            sent += 1;
            if !ok {
                gone.push(*id);
            }
        }
        self.changes.clear();
        self.env.stats.sent(Out::PresenceDiff, sent);
        for id in gone {
            self.drop_sub(id, None);
        }
        // This node's own changes of the window, to the other nodes, in one message.
        if !self.bus_joins.is_empty() || !self.bus_leaves.is_empty() {
            let body = Body::Presence {
                topic: self.name.to_string(),
                joins: std::mem::take(&mut self.bus_joins),
                leaves: std::mem::take(&mut self.bus_leaves),
            };
            self.env.bus_send(&topic_channel(self.topic), body);
        }
    }

    /// The window's joiners get the state as it is now, encoded once and shared (a crowd
    /// joining costs one encoding per window, and the bytes are held once however many
    /// outboxes queue them). It holds every change so far, so the window's diff is not
    /// theirs.
    fn send_waiting_states(&mut self) {
        if self.state_waiting.is_empty() {
            return;
        }
        let waiting = std::mem::take(&mut self.state_waiting);
        let state = Push::new(&self.name, "presence_state", &self.presence_state());
        let mut gone = Vec::new();
        let mut sent = 0;
        for (id, generation) in waiting {
            let Some(sub) = self.subs.get_mut(&id) else {
                continue;
            };
            if sub.generation != generation {
                continue;
            }
            sub.presence_seen = self.changes.last();
            sent += 1;
            if !sub.conn.push_shared(&sub.head, state.tail(), 0) {
                gone.push(id);
            }
        }
        self.env.stats.sent(Out::PresenceState, sent);
        for id in gone {
            self.drop_sub(id, None);
        }
    }

    fn send_snapshot(&self) {
        let body = Body::PresenceSnapshot {
            topic: self.name.to_string(),
            metas: self.local_metas(),
        };
        self.env.bus_send(CONTROL_CHANNEL, body);
    }

    fn request_snapshots(&self) {
        let body = Body::PresenceRequest {
            topic: self.name.to_string(),
        };
        self.env.bus_send(CONTROL_CHANNEL, body);
    }

    /// `born`: when the message was committed or arrived ([`crate::hist::stamp`]).
    fn fan_out(&mut self, push: &Push, except: Option<u64>, kind: Out, born: u64) {
        let skip: Vec<u64> = except
            .filter(|id| self.subs.contains_key(id))
            .into_iter()
            .collect();
        let sent = self.subs.len() - skip.len();
        self.fan(push.tail(), born, skip);
        self.env.stats.sent(kind, sent as u64);
    }

    /// Removes a subscriber, tells the others its presence left, and optionally sends it a
    /// closing control event (`phx_close` with a reason, or `phx_error`).
    fn drop_sub(&mut self, id: u64, closing: Option<&str>) {
        self.drop_sub_with(id, closing, None)
    }

    fn drop_sub_with(&mut self, id: u64, closing: Option<&str>, reason: Option<&str>) {
        let Some(sub) = self.subs.remove(&id) else {
            return;
        };
        self.delist(&sub);
        if sub.catching_up || sub.ahead {
            self.filtered -= 1;
        }
        self.env
            .stats
            .subscriptions
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(event) = closing {
            let payload = match reason {
                Some(r) => json!({ "reason": r }),
                None => json!({}),
            };
            sub.conn
                .push(self.control(sub.join_ref.as_deref(), event, &payload));
            sub.conn.notify(SessionNotice::Dropped {
                topic: self.name.to_string(),
                join_ref: sub.join_ref.clone(),
            });
        }
        if let Some(meta) = sub.presence {
            self.tracked -= 1;
            self.record(sub.conn.user_id.to_string(), meta, false);
        }
    }

    fn schedule_idle_stop(&mut self, ctx: &mut Context<Self>) {
        if !self.subs.is_empty() || self.idle.is_some() {
            return;
        }
        let idle = self.env.limits.topic_idle;
        self.idle = Some(ctx.run_later(idle, |act, ctx| {
            act.idle = None;
            if act.subs.is_empty() {
                act.stop_cleanly(ctx);
            }
        }));
    }

    /// Stops, telling the supervisor this is no crash (it then forgets this actor).
    fn stop_cleanly(&mut self, ctx: &mut Context<Self>) {
        if let Some(goodbye) = self.goodbye.take() {
            let _ = goodbye.send(());
        }
        ctx.stop();
    }

    /// A `phx_ref` unique in the cluster and over restarts: this node's id, this start of
    /// it, then a number of its own.
    fn new_ref(&self) -> String {
        format!(
            "{}-{:x}.{:x}",
            self.env.node_id,
            self.env.incarnation,
            self.env.next_id()
        )
    }
}

impl Actor for TopicActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.me = Some(ctx.address());
        self.env
            .stats
            .topics
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(ws) = self.workspace {
            // Nothing else is handled until the head is known.
            let log = self.env.log.clone();
            let fut = async move { log.latest_offset(ws).await };
            ctx.wait(fut.into_actor(self).map(|res, act, ctx| match res {
                Ok(head) => act.seq.start_at(head),
                Err(e) => {
                    tracing::error!(topic = %act.name, error = %e, "cannot read the log head");
                    act.stop_cleanly(ctx);
                }
            }));
            let every = self.env.limits.log_check;
            ctx.run_interval(every, |act, ctx| act.check_log(ctx));
        }
        if self.has_presence() && self.env.has_bus() {
            // Ask the other nodes what they hold here, once this node hears the topic's
            // channel (the subscription is made as the actor starts; give it a moment).
            ctx.run_later(std::time::Duration::from_millis(250), |act, _| {
                act.request_snapshots();
            });
        }
        self.schedule_idle_stop(ctx);
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.me = None;
    }
}

impl Drop for TopicActor {
    /// Runs whenever the actor goes, stopped or crashed: any subscriber still here (only
    /// after a crash: a clean stop happens without subscribers) gets `phx_error`, so its
    /// client rejoins and reaches the actor the supervisor put in this one's place.
    fn drop(&mut self) {
        let stats = &self.env.stats;
        stats
            .topics
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        for sub in std::mem::take(&mut self.subs).into_values() {
            stats
                .subscriptions
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            let jr = sub.join_ref.as_deref();
            sub.conn
                .push(encode_parts(jr, jr, &self.name, "phx_error", &json!({})));
            sub.conn.notify(SessionNotice::Dropped {
                topic: self.name.to_string(),
                join_ref: sub.join_ref.clone(),
            });
        }
    }
}

impl Handler<FlushPresence> for TopicActor {
    type Result = ();

    fn handle(&mut self, _: FlushPresence, _: &mut Context<Self>) {
        self.flush_presence();
    }
}

impl Handler<Leave> for TopicActor {
    type Result = ();

    fn handle(&mut self, msg: Leave, ctx: &mut Context<Self>) {
        if let Some(sub) = self.subs.get(&msg.session) {
            let jr = sub.join_ref.clone();
            let conn = sub.conn.clone();
            self.drop_sub(msg.session, None);
            if msg.msg_ref.is_some() {
                conn.push(encode_reply(
                    jr.as_deref(),
                    msg.msg_ref.as_deref(),
                    &self.name,
                    ReplyStatus::Ok,
                    &json!({}),
                ));
            }
            conn.push(self.control(jr.as_deref(), "phx_close", &json!({})));
        }
        self.schedule_idle_stop(ctx);
    }
}

impl Handler<Disconnect> for TopicActor {
    type Result = ();

    fn handle(&mut self, msg: Disconnect, ctx: &mut Context<Self>) {
        self.drop_sub(msg.session, None);
        self.schedule_idle_stop(ctx);
    }
}

impl Handler<Publish> for TopicActor {
    type Result = ();

    fn handle(&mut self, msg: Publish, ctx: &mut Context<Self>) {
        if self.workspace == Some(msg.0.workspace_id) {
            self.heard = true;
            self.accept(msg.0, ctx);
        }
    }
}

impl Handler<Broadcast> for TopicActor {
    type Result = ();

    fn handle(&mut self, mut msg: Broadcast, _: &mut Context<Self>) {
        if !self.subs.contains_key(&msg.session) {
            return; // left meanwhile
        }
        // Who sent it is the server's word, never the client's.
        msg.payload.insert("from".into(), json!(msg.user_id));
        let push = Push::new(&self.name, "broadcast", &msg.payload);
        self.fan_out(&push, Some(msg.session), Out::Broadcast, msg.born);
    }
}

impl Handler<UpdatePresence> for TopicActor {
    type Result = ();

    fn handle(&mut self, msg: UpdatePresence, _: &mut Context<Self>) {
        let reply = |status, response: Value| {
            encode_reply(
                msg.join_ref.as_deref(),
                msg.msg_ref.as_deref(),
                &self.name,
                status,
                &response,
            )
        };
        let new_ref = self.new_ref();
        let Some(sub) = self.subs.get_mut(&msg.conn.id) else {
            msg.conn
                .push(reply(ReplyStatus::Error, json!({"reason": "not joined"})));
            return;
        };
        let Some(old) = sub.presence.clone() else {
            sub.conn.push(reply(
                ReplyStatus::Error,
                json!({"reason": "presence not tracked on this join"}),
            ));
            return;
        };
        if !sub.presence_limiter.take() {
            Stats::add(&self.env.stats.rate_limited, 1);
            sub.conn
                .push(reply(ReplyStatus::Error, json!({"reason": "rate_limited"})));
            return;
        }
        let mut fields = msg.fields;
        if let Some(online_at) = old.fields.get("online_at") {
            fields.insert("online_at".into(), online_at.clone());
        }
        let meta = PresenceMeta {
            phx_ref: new_ref,
            phx_ref_prev: Some(old.phx_ref.clone()),
            fields,
        };
        sub.presence = Some(meta.clone());
        let user = sub.conn.user_id.to_string();
        sub.conn.push(reply(ReplyStatus::Ok, json!({})));
        self.record(user.clone(), old, false);
        self.record(user, meta, true);
    }
}

impl Handler<Revoke> for TopicActor {
    type Result = ();

    fn handle(&mut self, msg: Revoke, ctx: &mut Context<Self>) {
        let ids: Vec<u64> = self
            .subs
            .iter()
            .filter(|(_, s)| msg.user.is_none_or(|u| s.conn.user_id == u))
            .map(|(id, _)| *id)
            .collect();
        Stats::add(&self.env.stats.revocations, ids.len() as u64);
        for id in ids {
            self.drop_sub_with(id, Some("phx_close"), Some(msg.reason));
        }
        self.schedule_idle_stop(ctx);
    }
}

impl Handler<Notify> for TopicActor {
    type Result = ();

    fn handle(&mut self, msg: Notify, _: &mut Context<Self>) {
        let push = Push::new(&self.name, "notification", &*msg.0);
        self.fan_out(&push, None, Out::Notification, crate::hist::stamp());
    }
}

#[cfg(feature = "faults")]
impl Handler<Crash> for TopicActor {
    type Result = ();

    fn handle(&mut self, _: Crash, _: &mut Context<Self>) {
        panic!("fault injected into topic {}", self.name);
    }
}

#[cfg(feature = "faults")]
impl Handler<CrashSessions> for TopicActor {
    type Result = ();

    fn handle(&mut self, _: CrashSessions, _: &mut Context<Self>) {
        for sub in self.subs.values() {
            sub.conn.notify(SessionNotice::Crash);
        }
    }
}

#[cfg(feature = "faults")]
impl Handler<Stall> for TopicActor {
    type Result = ();

    fn handle(&mut self, msg: Stall, _: &mut Context<Self>) {
        std::thread::sleep(msg.0);
    }
}

impl Handler<RemoteBroadcast> for TopicActor {
    type Result = ();

    fn handle(&mut self, msg: RemoteBroadcast, _: &mut Context<Self>) {
        // The sending node set `from`; its sender is not here, so everyone receives it.
        let event = msg.event.as_deref().unwrap_or("broadcast");
        let push = Push::new(&self.name, event, &msg.payload);
        self.fan_out(&push, None, Out::Broadcast, crate::hist::stamp());
    }
}

impl Handler<CheckLog> for TopicActor {
    type Result = ();

    fn handle(&mut self, _: CheckLog, ctx: &mut Context<Self>) {
        if !self.subs.is_empty() && self.gap_fill.is_none() {
            self.read_log(PAGE, ctx);
        }
    }
}

impl Handler<RemotePresence> for TopicActor {
    type Result = ();

    fn handle(&mut self, msg: RemotePresence, _: &mut Context<Self>) {
        if self.has_presence() {
            self.apply_remote(msg.node, msg.joins, msg.leaves, false);
        }
    }
}

impl Handler<RemoteSnapshot> for TopicActor {
    type Result = ();

    fn handle(&mut self, msg: RemoteSnapshot, _: &mut Context<Self>) {
        if self.has_presence() {
            self.apply_remote(msg.node, msg.metas, Vec::new(), true);
        }
    }
}

impl Handler<SendSnapshot> for TopicActor {
    type Result = ();

    fn handle(&mut self, _: SendSnapshot, _: &mut Context<Self>) {
        if self.has_presence() {
            self.send_snapshot();
        }
    }
}

impl Handler<Resync> for TopicActor {
    type Result = ();

    fn handle(&mut self, _: Resync, _: &mut Context<Self>) {
        if self.has_presence() {
            self.send_snapshot();
            self.request_snapshots();
        }
    }
}

impl Handler<ForgetNode> for TopicActor {
    type Result = ();

    fn handle(&mut self, msg: ForgetNode, _: &mut Context<Self>) {
        if self.has_presence() && self.remote.holds(&msg.0) {
            self.apply_remote(msg.0, Vec::new(), Vec::new(), true);
        }
    }
}
