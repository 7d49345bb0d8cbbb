//! One actor per WebSocket connection.
//!
//! The transport (the server's endpoint) feeds the actor [`WireIn`] items and drains the
//! connection's bounded outbound queue into the socket; the actor never writes to the socket
//! itself. Everything for the client — replies from here, pushes from topics — goes through
//! that one queue, so a client that stops reading fills it, and the next push finds it full:
//! the session then closes the connection with `slow_consumer` instead of buffering more.
//!
//! # Joins, in order
//!
//! As in Phoenix, every join gets exactly one reply, and the messages of one topic are
//! handled in the order they were sent. While a join is being authorised, whatever else the
//! client sends on that topic (a push, a leave, another join) waits behind it, and is
//! handled once the join has its answer. A join of a topic already joined first closes the
//! earlier join (`phx_close` to its ref), then proceeds.
//!
//! # Limits
//!
//! Every message but a heartbeat costs one from the connection's allowance and one from its
//! user's (shared by all their sockets on this node). Messages to a topic are offered to its
//! mailbox without waiting: a topic that is behind refuses them (`topic_busy`) rather than
//! letting its mailbox grow.
//!
//! # Crashes
//!
//! A session stops only when it decides to, and notes that it did. Ending any other way —
//! a panic in one of its handlers — it closes its socket with 1011 and tells the topics it
//! joined that it is gone, so a crashed session never leaves a silent open socket behind.
//! This happens in `stopped()` (which actix runs even while dropping a panicked actor) or,
//! failing that, in `Drop`; neither relies on knowing whether the thread is unwinding.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use serde_json::{json, Map, Value};
use stoa_protocol::bus::{topic_channel, Body};
use stoa_protocol::frame::{encode_parts, encode_reply};
use stoa_protocol::{Frame, FrameError, Inbound, ReplyStatus, Topic, PHOENIX_TOPIC};

use crate::clock::now_ms;
use crate::conn::Conn;
use crate::limit::Limiter;
use crate::liveness::{Liveness, Verdict};
use crate::notice::SessionNotice;
use crate::outbox::{self, CloseReason, Outbound, Outbox, OutboxReader, Refused};
use crate::ports::{Denied, Grant};
use crate::registry::{Realtime, Shared, SocketPermit};
use crate::stats::Stats;
use crate::topic::{
    Broadcast, Disconnect, Join, Leave, Ticket, TopicActor, TopicRef, UpdatePresence,
};

/// Messages that may wait behind joins in progress, over all topics of a connection.
const MAX_WAITING: usize = 64;

/// What the server adds to a presence meta as it is sent (`phx_ref`, `phx_ref_prev`,
/// `online_at`, the key and punctuation), at most.
pub const PRESENCE_META_OVERHEAD: usize = 128;

/// What the transport reads from the socket.
#[derive(Debug)]
pub enum WireIn {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong,
    /// The client closed the connection.
    Close,
    /// A frame over the size limit.
    TooLarge,
    /// Anything the WebSocket layer could not read.
    Broken(String),
    /// A text message or close reason that is not UTF-8.
    Invalid(String),
}

/// An authorised join on its way to the topic.
struct Pending {
    topic: Topic,
    grant: Grant,
    frame: Frame,
    since: Option<i64>,
    track: bool,
    authorized_at: Instant,
}

/// A client message kept for later: the frame and the size of its text.
struct Held {
    frame: Frame,
    size: usize,
}

/// One topic as this connection sees it.
enum Channel {
    /// A join being authorised or attached; the topic's later messages wait in `queue`.
    /// `sent` is the topic the join went to, once it has gone (so that a session ending
    /// before the answer still tells the topic it is gone).
    Joining {
        join_ref: Option<String>,
        queue: VecDeque<Held>,
        sent: Option<TopicRef>,
    },
    Joined {
        join_ref: Option<String>,
        topic: TopicRef,
    },
}

pub struct SessionActor {
    shared: Arc<Shared>,
    id: u64,
    user_id: i64,
    /// Silence and the token's expiry end the socket.
    liveness: Liveness,
    /// The login and issue time of the token the socket is on now (the first, or one sent
    /// since with `access_token`).
    token: crate::TokenTag,
    outbox: Arc<Outbox>,
    conn: Option<Conn>,
    /// The socket is being closed (the close reason is set).
    closing: bool,
    /// The session chose to stop; stopping without having chosen is a crash.
    stopping: bool,
    channels: HashMap<String, Channel>,
    /// Messages waiting in the channels' queues.
    waiting: usize,
    limiter: Limiter,
    /// Counts this socket against its user's limit until the session ends.
    permit: Option<SocketPermit>,
}

impl SessionActor {
    /// Starts the session of an authenticated connection. `incoming` is the socket's read
    /// side; frames for the client, and at the end how to close the socket, are taken from
    /// the returned reader.
    pub fn start<S>(
        realtime: &Realtime,
        permit: SocketPermit,
        expires_at: i64,
        incoming: S,
    ) -> (Addr<SessionActor>, OutboxReader)
    where
        S: futures_core::Stream<Item = WireIn> + 'static,
    {
        let shared = realtime.shared.clone();
        let user_id = permit.user();
        let token = permit.token();
        let limits = shared.limits();
        let (outbox, reader) = outbox::channel(limits.outbound_queue, limits.outbound_queue_bytes);
        let limiter = Limiter::new(limits.messages_per_sec, limits.message_burst);
        let liveness = Liveness::new(limits.heartbeat_timeout, expires_at);
        let id = shared.env.next_id();
        let addr = SessionActor::create(move |ctx| {
            ctx.add_stream(incoming);
            SessionActor {
                shared,
                id,
                user_id,
                liveness,
                token,
                outbox,
                conn: None,
                closing: false,
                stopping: false,
                channels: HashMap::new(),
                waiting: 0,
                limiter,
                permit: Some(permit),
            }
        });
        (addr, reader)
    }

    fn stats(&self) -> &Stats {
        self.shared.stats()
    }

    fn send(&mut self, frame: String, ctx: &mut Context<Self>) {
        self.stats().sent(crate::stats::Out::Reply, 1);
        self.queue(Outbound::Text(frame), ctx);
    }

    fn queue(&mut self, item: Outbound, ctx: &mut Context<Self>) {
        match self.outbox.send(item) {
            Ok(()) => {}
            Err(Refused::Full) => self.overflowed(ctx),
            // Closing already, or the socket is gone.
            Err(Refused::Closed) => self.stop(ctx),
        }
    }

    fn reply(&mut self, f: &Frame, status: ReplyStatus, response: Value, ctx: &mut Context<Self>) {
        let text = encode_reply(
            f.join_ref.as_deref(),
            f.msg_ref.as_deref(),
            &f.topic,
            status,
            &response,
        );
        self.send(text, ctx);
    }

    fn error(&mut self, f: &Frame, reason: &str, ctx: &mut Context<Self>) {
        self.reply(f, ReplyStatus::Error, json!({ "reason": reason }), ctx);
    }

    fn overflowed(&mut self, ctx: &mut Context<Self>) {
        if !self.closing {
            Stats::add(&self.stats().slow_consumers, 1);
            tracing::info!(
                session = self.id,
                user = self.user_id,
                "closing a slow consumer"
            );
        }
        self.close_with(1008, "slow_consumer", ctx);
    }

    /// Ends the session and has the transport close the socket with `code` and `reason`,
    /// after what is already queued (except for a slow consumer, whose queue is dropped).
    fn close_with(&mut self, code: u16, reason: &'static str, ctx: &mut Context<Self>) {
        let discard = reason == "slow_consumer";
        self.end(CloseReason { code, reason }, discard);
        self.stop(ctx);
    }

    fn stop(&mut self, ctx: &mut Context<Self>) {
        self.stopping = true;
        ctx.stop();
    }

    /// The crash path: closes the socket with 1011 (dropping what was queued) and leaves
    /// every topic.
    fn crashed(&mut self) {
        if self.closing {
            return;
        }
        Stats::add(&self.stats().session_crashes, 1);
        tracing::error!(
            session = self.id,
            user = self.user_id,
            "session actor crashed; closing its socket"
        );
        self.disconnect_all();
        let reason = CloseReason {
            code: 1011,
            reason: "internal_error",
        };
        self.end(reason, true);
    }

    /// Stops counting this socket, then has the transport close it: a client that sees the
    /// close frame may open a new socket at once.
    fn end(&mut self, reason: CloseReason, discard: bool) {
        self.shared.sessions.remove(&self.id);
        if self.permit.take().is_some() {
            self.stats().connections.fetch_sub(1, Ordering::Relaxed);
        }
        if !self.closing {
            self.closing = true;
            self.outbox.close(reason, discard);
        }
    }

    /// Tells every topic joined that this connection is gone.
    fn disconnect_all(&mut self) {
        for (_, channel) in self.channels.drain() {
            let topic = match channel {
                Channel::Joined { topic, .. } => Some(topic),
                Channel::Joining { sent, .. } => sent,
            };
            if let Some(topic) = topic {
                topic.addr.do_send(Disconnect { session: self.id });
            }
        }
    }

    fn on_text(&mut self, text: String, ctx: &mut Context<Self>) {
        let frame = match Frame::decode(&text, self.shared.limits().max_frame_bytes) {
            Ok(f) => f,
            Err(e) => {
                self.stats().received("");
                return self.bad_frame(&text, e, ctx);
            }
        };
        let heartbeat = frame.topic == PHOENIX_TOPIC && frame.event == "heartbeat";
        // A heartbeat is one only on the `phoenix` topic; elsewhere it is an unknown event.
        let stray = !heartbeat && frame.event == "heartbeat";
        self.stats()
            .received(if stray { "other" } else { &frame.event });
        if heartbeat {
            // Free: a client that keeps its socket alive is never refused for it.
            return self.reply(&frame, ReplyStatus::Ok, json!({}), ctx);
        }
        if !self.limiter.take() {
            Stats::add(&self.stats().rate_limited, 1);
            return self.error(&frame, "rate_limited", ctx);
        }
        if !self.shared.user_allows(self.user_id) {
            Stats::add(&self.stats().user_rate_limited, 1);
            return self.error(&frame, "rate_limited", ctx);
        }
        let held = Held {
            frame,
            size: text.len(),
        };
        if let Some(Channel::Joining { queue, .. }) = self.channels.get_mut(&held.frame.topic) {
            if self.waiting >= MAX_WAITING {
                return self.error(&held.frame, "too many messages waiting for joins", ctx);
            }
            queue.push_back(held);
            self.waiting += 1;
            return;
        }
        self.dispatch(held, ctx);
    }

    /// Handles one client message whose topic has no join in progress.
    fn dispatch(&mut self, held: Held, ctx: &mut Context<Self>) {
        let Held { frame, size } = held;
        match Inbound::from_frame(&frame) {
            Err(e) => self.error(&frame, &e.to_string(), ctx),
            Ok(Inbound::Heartbeat) => self.reply(&frame, ReplyStatus::Ok, json!({}), ctx),
            Ok(Inbound::Join { since }) => self.join(frame, since, ctx),
            Ok(Inbound::Leave) => self.leave(frame, ctx),
            Ok(Inbound::Broadcast(payload)) => self.broadcast(frame, size, payload, ctx),
            Ok(Inbound::PresenceUpdate(fields)) => self.update_presence(frame, fields, ctx),
            Ok(Inbound::AccessToken(token)) => self.refresh_token(frame, &token, ctx),
            Ok(Inbound::Unknown(event)) => {
                if self.joined_to(&frame).is_some() {
                    let reason = format!("unknown event {:?}", truncate(&event, 64));
                    self.error(&frame, &reason, ctx)
                } else {
                    self.error(&frame, "unmatched topic", ctx)
                }
            }
        }
    }

    /// A frame that is not a Phoenix frame: answered on the `phoenix` topic (there are no
    /// refs to answer it with), and the connection stays up.
    fn bad_frame(&mut self, text: &str, e: FrameError, ctx: &mut Context<Self>) {
        tracing::debug!(session = self.id, error = %e, len = text.len(), "bad frame");
        let payload = json!({ "reason": format!("bad frame: {e}") });
        let frame = encode_parts(None, None, PHOENIX_TOPIC, "phx_error", &payload);
        if !self.limiter.take() {
            Stats::add(&self.stats().rate_limited, 1);
            return;
        }
        self.send(frame, ctx);
    }

    fn join(&mut self, frame: Frame, since: Option<i64>, ctx: &mut Context<Self>) {
        let topic = match Topic::parse(&frame.topic) {
            Ok(t) if frame.topic != PHOENIX_TOPIC => t,
            _ => {
                Stats::add(&self.stats().joins_refused, 1);
                return self.error(&frame, "unknown topic", ctx);
            }
        };
        // A second join of the same topic closes the first (as Phoenix does): `phx_close`
        // to the old join ref, queued by the topic before anything of the new join.
        if let Some(Channel::Joined { topic, .. }) = self.channels.remove(&frame.topic) {
            topic.addr.do_send(Leave {
                session: self.id,
                msg_ref: None,
            });
        }
        if self.channels.len() >= self.shared.limits().max_topics_per_connection {
            Stats::add(&self.stats().joins_refused, 1);
            return self.error(&frame, "too_many_topics", ctx);
        }
        let track = !matches!(frame.payload.get("presence"), Some(Value::Bool(false)));
        self.channels.insert(
            frame.topic.clone(),
            Channel::Joining {
                join_ref: frame.join_ref.clone(),
                queue: VecDeque::new(),
                sent: None,
            },
        );
        let authorizer = self.shared.authorizer.clone();
        let user = self.user_id;
        let authorized_at = Instant::now();
        let fut = async move { authorizer.authorize(user, topic).await };
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| match res {
            Ok(grant) => {
                let join = Pending {
                    topic,
                    grant,
                    frame,
                    since,
                    track,
                    authorized_at,
                };
                act.attach(join, 0, ctx)
            }
            Err(denied) => {
                Stats::add(&act.stats().joins_refused, 1);
                act.error(&frame, denied.reason(), ctx);
                act.settle(&frame.topic, None, ctx);
            }
        }));
    }

    /// Subscribes to the topic's actor; retried once if the actor stopped on the way.
    fn attach(&mut self, join: Pending, attempt: u8, ctx: &mut Context<Self>) {
        let Some(conn) = self.conn.clone() else {
            return;
        };
        let topic = self.shared.topic_actor(join.topic, &join.grant);
        let msg = Join {
            conn,
            join_ref: join.frame.join_ref.clone(),
            msg_ref: join.frame.msg_ref.clone(),
            since: join.since,
            track: join.track,
            info: join.grant.info.clone(),
            authorized_at: join.authorized_at,
        };
        if let Some(Channel::Joining { sent, .. }) = self.channels.get_mut(&join.frame.topic) {
            *sent = Some(topic.clone());
        }
        let request = topic.addr.send(msg);
        ctx.spawn(request.into_actor(self).map(move |res, act, ctx| {
            let name = join.frame.topic.clone();
            match res {
                Ok(true) => act.settle(&name, Some(topic), ctx),
                // Refused by the topic, which replied.
                Ok(false) => act.settle(&name, None, ctx),
                Err(_) if attempt == 0 => act.attach(join, 1, ctx),
                Err(_) => {
                    act.error(&join.frame, Denied::Unavailable.reason(), ctx);
                    act.settle(&name, None, ctx);
                }
            }
        }));
    }

    /// A join has its answer: the channel is joined (to `joined`) or gone, and the messages
    /// that waited behind it are handled in order — until one of them starts another join,
    /// which the rest then wait behind.
    fn settle(&mut self, topic: &str, joined: Option<TopicRef>, ctx: &mut Context<Self>) {
        let Some(Channel::Joining {
            join_ref, queue, ..
        }) = self.channels.remove(topic)
        else {
            return;
        };
        if let Some(joined) = joined {
            let channel = Channel::Joined {
                join_ref,
                topic: joined,
            };
            self.channels.insert(topic.to_string(), channel);
        }
        let mut queue = queue;
        while let Some(held) = queue.pop_front() {
            self.waiting -= 1;
            self.dispatch(held, ctx);
            if let Some(Channel::Joining { queue: next, .. }) = self.channels.get_mut(topic) {
                next.append(&mut queue);
                return;
            }
        }
    }

    fn leave(&mut self, frame: Frame, ctx: &mut Context<Self>) {
        if let Some(Channel::Joined { topic, .. }) = self.channels.remove(&frame.topic) {
            // The topic replies, then sends phx_close, after anything it already queued.
            topic.addr.do_send(Leave {
                session: self.id,
                msg_ref: frame.msg_ref.clone(),
            });
            return;
        }
        // Nothing joined: the leave is simply acknowledged (as Phoenix does).
        self.reply(&frame, ReplyStatus::Ok, json!({}), ctx);
    }

    /// The topic, if this connection has joined it under the frame's join ref (or the
    /// frame names none).
    fn joined_to(&self, frame: &Frame) -> Option<&TopicRef> {
        match self.channels.get(&frame.topic) {
            Some(Channel::Joined { join_ref, topic })
                if *join_ref == frame.join_ref || frame.join_ref.is_none() =>
            {
                Some(topic)
            }
            _ => None,
        }
    }

    /// Offers a client message to its topic without waiting: refused (`topic_busy`) when
    /// the topic has `topic_mailbox` messages waiting already. True when it was queued.
    fn offer<M>(
        &mut self,
        frame: &Frame,
        msg: impl FnOnce(Conn, Ticket) -> M,
        ctx: &mut Context<Self>,
    ) -> bool
    where
        M: Message + Send + 'static,
        M::Result: Send,
        TopicActor: Handler<M>,
    {
        let capacity = self.shared.limits().topic_mailbox;
        let (Some(topic), Some(conn)) = (self.joined_to(frame), self.conn.clone()) else {
            self.error(frame, "unmatched topic", ctx);
            return false;
        };
        let Some(ticket) = topic.ticket(capacity) else {
            Stats::add(&self.stats().topic_shed, 1);
            self.error(frame, "topic_busy", ctx);
            return false;
        };
        // The ticket is the bound (actix's own `try_send` parks a sender and then refuses
        // it however empty the mailbox is).
        if topic.addr.connected() {
            topic.addr.do_send(msg(conn, ticket));
            return true;
        }
        self.error(frame, Denied::Unavailable.reason(), ctx);
        false
    }

    fn broadcast(
        &mut self,
        frame: Frame,
        size: usize,
        payload: Map<String, Value>,
        ctx: &mut Context<Self>,
    ) {
        let Some(topic) = self.joined_to(&frame) else {
            return self.error(&frame, "unmatched topic", ctx);
        };
        let limit = self.shared.limits().max_broadcast_bytes;
        if size > limit {
            let reason = format!("broadcast too large ({size} bytes, limit {limit})");
            return self.error(&frame, &reason, ctx);
        }
        // The topic's budget, shared by every sender: whoever floods, the subscribers
        // receive at most this much. Checked here, so a refused broadcast never reaches
        // the topic's mailbox.
        if !topic.admit_relay(size) {
            Stats::add(&self.stats().topic_rate_limited, 1);
            return self.error(&frame, "rate_limited", ctx);
        }
        let (session, user_id) = (self.id, self.user_id);
        // The other nodes' subscribers get it over the bus, with the sender set here.
        let remote = self.shared.has_bus().then(|| {
            let mut remote = payload.clone();
            remote.insert("from".into(), json!(user_id));
            remote
        });
        let born = crate::hist::stamp();
        let msg = |_conn, ticket| Broadcast {
            session,
            user_id,
            payload,
            born,
            ticket,
        };
        if self.offer(&frame, msg, ctx) {
            self.reply(&frame, ReplyStatus::Ok, json!({}), ctx);
            if let Some(payload) = remote {
                let body = Body::Broadcast {
                    topic: frame.topic.clone(),
                    payload,
                    event: None,
                };
                let channel = match Topic::parse(&frame.topic) {
                    Ok(topic) => topic_channel(topic),
                    Err(_) => return,
                };
                self.shared.bus_send(&channel, body);
            }
        }
    }

    fn update_presence(
        &mut self,
        frame: Frame,
        fields: Map<String, Value>,
        ctx: &mut Context<Self>,
    ) {
        if self.joined_to(&frame).is_none() {
            return self.error(&frame, "unmatched topic", ctx);
        }
        let limit = self.shared.limits().max_presence_meta_bytes;
        let size = serde_json::to_string(&fields).map_or(usize::MAX, |s| s.len());
        if size > limit {
            let reason = format!("presence meta too large ({size} bytes, limit {limit})");
            return self.error(&frame, &reason, ctx);
        }
        // Every subscriber receives the old meta leaving and the new one joining: the
        // update draws on the same relay budget as broadcasts.
        let relayed = 2 * (size + PRESENCE_META_OVERHEAD);
        let within = self
            .joined_to(&frame)
            .is_some_and(|topic| topic.admit_relay(relayed));
        if !within {
            Stats::add(&self.stats().topic_rate_limited, 1);
            return self.error(&frame, "rate_limited", ctx);
        }
        let (join_ref, msg_ref) = (frame.join_ref.clone(), frame.msg_ref.clone());
        let msg = |conn, ticket| UpdatePresence {
            conn,
            join_ref,
            msg_ref,
            fields,
            ticket,
        };
        // The topic answers (it knows whether presence is tracked on this join).
        self.offer(&frame, msg, ctx);
    }

    fn refresh_token(&mut self, frame: Frame, token: &str, ctx: &mut Context<Self>) {
        let authorizer = self.shared.authorizer.clone();
        let token = token.to_string();
        let fut = async move { authorizer.verify_token(&token).await };
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| match res {
            Ok(id) if id.user_id == act.user_id => {
                let ended =
                    act.shared
                        .ended
                        .ended(id.user_id, id.session.as_deref(), id.issued_at_ms);
                if let Some(end) = ended {
                    return act.error(&frame, crate::ended::close_reason(&end), ctx);
                }
                act.token = crate::TokenTag {
                    session: id.session.map(Arc::from),
                    issued_at_ms: id.issued_at_ms,
                };
                let expires_at = act.liveness.extend(id.expires_at);
                let response = json!({ "expires_at": expires_at });
                act.reply(&frame, ReplyStatus::Ok, response, ctx);
            }
            Ok(_) => act.error(&frame, "token belongs to another user", ctx),
            Err(e) => act.error(&frame, e.reason(), ctx),
        }));
    }

    /// Closes the connection when it has been silent too long or its token expired, with
    /// one timer set for the earlier of the two moments and set again when it finds that a
    /// heartbeat or a new token moved them on: an idle socket whose client heartbeats wakes
    /// about once per heartbeat timeout, not every few seconds.
    fn check_liveness(&mut self, ctx: &mut Context<Self>) {
        match self.liveness.check(Instant::now(), now_ms()) {
            Verdict::Silent => {
                tracing::debug!(session = self.id, "closing a silent connection");
                self.close_with(1000, "heartbeat_timeout", ctx);
            }
            Verdict::Expired => {
                tracing::debug!(
                    session = self.id,
                    "closing a connection whose token expired"
                );
                self.close_with(1008, "token_expired", ctx);
            }
            Verdict::CheckIn(next) => {
                ctx.run_later(next, |act, ctx| act.check_liveness(ctx));
            }
        }
    }
}

impl Actor for SessionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.conn = Some(Conn::new(
            self.id,
            self.user_id,
            self.outbox.clone(),
            ctx.address().recipient(),
        ));
        self.stats().connections.fetch_add(1, Ordering::Relaxed);
        self.shared
            .sessions
            .insert(self.id, (self.user_id, ctx.address().recipient()));
        // A socket accepted just as the node began to drain is not in the drain's list
        // (taken after the flag was set): it goes away at once.
        if self.shared.shutting_down() {
            ctx.address().do_send(SessionNotice::GoAway);
        }
        self.check_liveness(ctx);
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        if !self.stopping && self.shared.shutting_down() {
            self.disconnect_all();
            let reason = CloseReason {
                code: 1001,
                reason: "going_away",
            };
            return self.end(reason, false);
        }
        if !self.stopping {
            return self.crashed();
        }
        self.disconnect_all();
        let reason = CloseReason {
            code: 1000,
            reason: "closed",
        };
        self.end(reason, false);
    }
}

impl Drop for SessionActor {
    /// Whatever ended the actor, its socket is closed by now: by the session itself, by
    /// `stopped()`, or here if neither ran.
    fn drop(&mut self) {
        self.crashed();
    }
}

impl StreamHandler<WireIn> for SessionActor {
    fn handle(&mut self, item: WireIn, ctx: &mut Context<Self>) {
        self.liveness.seen();
        match item {
            WireIn::Text(text) => self.on_text(text, ctx),
            WireIn::Ping(data) => self.queue(Outbound::Pong(data), ctx),
            WireIn::Pong => {}
            WireIn::Binary(_) => self.close_with(1003, "binary frames are not supported", ctx),
            WireIn::TooLarge => self.close_with(1009, "frame too large", ctx),
            WireIn::Close => self.stop(ctx),
            WireIn::Broken(e) => {
                tracing::debug!(session = self.id, error = %e, "websocket protocol error");
                self.close_with(1002, "protocol error", ctx);
            }
            WireIn::Invalid(e) => {
                tracing::debug!(session = self.id, error = %e, "websocket payload invalid");
                self.close_with(1007, "invalid payload data", ctx);
            }
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        self.stop(ctx);
    }
}

impl Handler<SessionNotice> for SessionActor {
    type Result = ();

    fn handle(&mut self, notice: SessionNotice, ctx: &mut Context<Self>) {
        match notice {
            SessionNotice::Overflow => self.overflowed(ctx),
            SessionNotice::Dropped { topic, join_ref } => {
                let ours = matches!(
                    self.channels.get(&topic),
                    Some(Channel::Joined { join_ref: jr, .. }) if *jr == join_ref
                );
                if ours {
                    self.channels.remove(&topic);
                }
            }
            #[cfg(feature = "faults")]
            SessionNotice::Crash => panic!("fault injected into session {}", self.id),
            SessionNotice::GoAway => self.close_with(1001, "going_away", ctx),
            SessionNotice::Ended(end) => {
                if self.token.ended_by(self.user_id, &end) {
                    self.close_with(1008, crate::ended::close_reason(&end), ctx);
                }
            }
        }
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
