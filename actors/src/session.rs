//! One actor per WebSocket connection.
//!
//! The transport (the server's endpoint) feeds the actor [`WireIn`] items and drains the
//! connection's bounded outbound queue into the socket; the actor never writes to the socket
//! itself. Everything for the client — replies from here, pushes from topics — goes through
//! that one queue, so a client that stops reading fills it, and the next push finds it full:
//! the session then closes the connection with `slow_consumer` instead of buffering more.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use serde_json::{json, Map, Value};
use stoa_protocol::frame::{encode_parts, encode_reply};
use stoa_protocol::{Frame, FrameError, Inbound, ReplyStatus, Topic, PHOENIX_TOPIC};

use crate::conn::{
    self, CloseReason, Conn, Outbound, Outbox, OutboxReader, Refused, SessionNotice,
};
use crate::ports::{Denied, Grant};
use crate::registry::{Realtime, Shared, SocketPermit};
use crate::topic::{Broadcast, Disconnect, Join, Leave, TopicActor, UpdatePresence};
use crate::{now_ms, Bucket, Stats};

/// What the transport reads from the socket.
#[derive(Debug)]
pub enum WireIn {
    Text(String),
    Binary,
    Ping(Vec<u8>),
    Pong,
    /// The client closed the connection.
    Close,
    /// A frame over the size limit.
    TooLarge,
    /// Anything the WebSocket layer could not read.
    Broken(String),
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

struct Joined {
    join_ref: Option<String>,
    addr: Addr<TopicActor>,
}

pub struct SessionActor {
    shared: Arc<Shared>,
    id: u64,
    user_id: i64,
    expires_at: i64,
    outbox: Arc<Outbox>,
    conn: Option<Conn>,
    closing: bool,
    joined: HashMap<String, Joined>,
    /// Joins waiting for authorisation: topic name → join ref.
    joining: HashMap<String, Option<String>>,
    last_seen: Instant,
    bucket: Bucket,
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
        let limits = &shared.limits;
        let (outbox, reader) = conn::channel(limits.outbound_queue);
        let bucket = Bucket::new(limits.messages_per_sec, limits.message_burst);
        let id = shared.next_id();
        let addr = SessionActor::create(move |ctx| {
            ctx.add_stream(incoming);
            SessionActor {
                shared,
                id,
                user_id,
                expires_at,
                outbox,
                conn: None,
                closing: false,
                joined: HashMap::new(),
                joining: HashMap::new(),
                last_seen: Instant::now(),
                bucket,
                permit: Some(permit),
            }
        });
        (addr, reader)
    }

    fn send(&mut self, frame: String, ctx: &mut Context<Self>) {
        Stats::add(&self.shared.stats.frames_out, 1);
        self.queue(Outbound::Text(frame), ctx);
    }

    fn queue(&mut self, item: Outbound, ctx: &mut Context<Self>) {
        match self.outbox.send(item) {
            Ok(()) => {}
            Err(Refused::Full) => self.overflowed(ctx),
            // Closing already, or the socket is gone.
            Err(Refused::Closed) => ctx.stop(),
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
            Stats::add(&self.shared.stats.slow_consumers, 1);
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
        ctx.stop();
    }

    /// Stops counting this socket, then has the transport close it: a client that sees the
    /// close frame may open a new socket at once.
    fn end(&mut self, reason: CloseReason, discard: bool) {
        if self.permit.take().is_some() {
            self.shared
                .stats
                .connections
                .fetch_sub(1, Ordering::Relaxed);
        }
        if !self.closing {
            self.closing = true;
            self.outbox.close(reason, discard);
        }
    }

    fn on_text(&mut self, text: String, ctx: &mut Context<Self>) {
        Stats::add(&self.shared.stats.frames_in, 1);
        let frame = match Frame::decode(&text, self.shared.limits.max_frame_bytes) {
            Ok(f) => f,
            Err(e) => return self.bad_frame(&text, e, ctx),
        };
        let inbound = Inbound::from_frame(&frame);
        if !matches!(inbound, Ok(Inbound::Heartbeat)) && !self.bucket.take() {
            Stats::add(&self.shared.stats.rate_limited, 1);
            return self.error(&frame, "rate_limited", ctx);
        }
        match inbound {
            Err(e) => self.error(&frame, &e.to_string(), ctx),
            Ok(Inbound::Heartbeat) => self.reply(&frame, ReplyStatus::Ok, json!({}), ctx),
            Ok(Inbound::Join { since }) => self.join(frame, since, ctx),
            Ok(Inbound::Leave) => self.leave(frame, ctx),
            Ok(Inbound::Broadcast(payload)) => self.broadcast(frame, text.len(), payload, ctx),
            Ok(Inbound::PresenceUpdate(fields)) => self.update_presence(frame, fields, ctx),
            Ok(Inbound::AccessToken(token)) => self.refresh_token(frame, &token, ctx),
            Ok(Inbound::Unknown(event)) => {
                let reason = format!("unknown event {:?}", truncate(&event, 64));
                self.error(&frame, &reason, ctx)
            }
        }
    }

    /// A frame that is not a Phoenix frame: answered on the `phoenix` topic (there are no
    /// refs to answer it with), and the connection stays up.
    fn bad_frame(&mut self, text: &str, e: FrameError, ctx: &mut Context<Self>) {
        tracing::debug!(session = self.id, error = %e, len = text.len(), "bad frame");
        let payload = json!({ "reason": format!("bad frame: {e}") });
        let frame = encode_parts(None, None, PHOENIX_TOPIC, "phx_error", &payload);
        if !self.bucket.take() {
            Stats::add(&self.shared.stats.rate_limited, 1);
            return;
        }
        self.send(frame, ctx);
    }

    fn join(&mut self, frame: Frame, since: Option<i64>, ctx: &mut Context<Self>) {
        if frame.topic == PHOENIX_TOPIC {
            return self.error(&frame, "unknown topic", ctx);
        }
        let topic = match Topic::parse(&frame.topic) {
            Ok(t) => t,
            Err(_) => {
                Stats::add(&self.shared.stats.joins_refused, 1);
                return self.error(&frame, "unknown topic", ctx);
            }
        };
        // A second join of the same topic replaces the first (as Phoenix does).
        if let Some(old) = self.joined.remove(&frame.topic) {
            old.addr.do_send(Disconnect { session: self.id });
        }
        if self.joined.len() + self.joining.len() >= self.shared.limits.max_topics_per_connection {
            Stats::add(&self.shared.stats.joins_refused, 1);
            return self.error(&frame, "too_many_topics", ctx);
        }
        let track = !matches!(frame.payload.get("presence"), Some(Value::Bool(false)));
        self.joining
            .insert(frame.topic.clone(), frame.join_ref.clone());
        let authorizer = self.shared.authorizer.clone();
        let user = self.user_id;
        let authorized_at = Instant::now();
        let fut = async move { authorizer.authorize(user, topic).await };
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            if act.joining.get(&frame.topic) != Some(&frame.join_ref) {
                return; // left, or joined again, while this one was being checked
            }
            act.joining.remove(&frame.topic);
            match res {
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
                    Stats::add(&act.shared.stats.joins_refused, 1);
                    act.error(&frame, denied.reason(), ctx);
                }
            }
        }));
    }

    /// Subscribes to the topic's actor; retried once if the actor stopped on the way.
    fn attach(&mut self, join: Pending, attempt: u8, ctx: &mut Context<Self>) {
        let Some(conn) = self.conn.clone() else {
            return;
        };
        let addr = self.shared.topic_actor(join.topic, &join.grant);
        let frame = &join.frame;
        self.joined.insert(
            frame.topic.clone(),
            Joined {
                join_ref: frame.join_ref.clone(),
                addr: addr.clone(),
            },
        );
        let msg = Join {
            conn,
            join_ref: frame.join_ref.clone(),
            msg_ref: frame.msg_ref.clone(),
            since: join.since,
            track: join.track,
            info: join.grant.info.clone(),
            authorized_at: join.authorized_at,
        };
        ctx.spawn(addr.send(msg).into_actor(self).map(move |res, act, ctx| {
            if res.is_ok() {
                return;
            }
            let frame = &join.frame;
            let still_ours = act
                .joined
                .get(&frame.topic)
                .is_some_and(|j| j.join_ref == frame.join_ref);
            if !still_ours {
                return;
            }
            act.joined.remove(&frame.topic);
            if attempt == 0 {
                act.attach(join, 1, ctx);
            } else {
                act.error(&join.frame, Denied::Unavailable.reason(), ctx);
            }
        }));
    }

    fn leave(&mut self, frame: Frame, ctx: &mut Context<Self>) {
        if let Some(joined) = self.joined.remove(&frame.topic) {
            // The topic replies, then sends phx_close, after anything it already queued.
            joined.addr.do_send(Leave {
                session: self.id,
                msg_ref: frame.msg_ref.clone(),
            });
            return;
        }
        self.joining.remove(&frame.topic);
        self.reply(&frame, ReplyStatus::Ok, json!({}), ctx);
        let jr = frame.join_ref.as_deref();
        let close = encode_parts(jr, jr, &frame.topic, "phx_close", &json!({}));
        self.send(close, ctx);
    }

    fn joined_to(&mut self, frame: &Frame, ctx: &mut Context<Self>) -> Option<Addr<TopicActor>> {
        match self.joined.get(&frame.topic) {
            Some(j) if j.join_ref == frame.join_ref || frame.join_ref.is_none() => {
                Some(j.addr.clone())
            }
            _ => {
                self.error(frame, "unmatched topic", ctx);
                None
            }
        }
    }

    fn broadcast(
        &mut self,
        frame: Frame,
        size: usize,
        payload: Map<String, Value>,
        ctx: &mut Context<Self>,
    ) {
        let Some(addr) = self.joined_to(&frame, ctx) else {
            return;
        };
        if size > self.shared.limits.max_broadcast_bytes {
            let reason = format!(
                "broadcast too large ({size} bytes, limit {})",
                self.shared.limits.max_broadcast_bytes
            );
            return self.error(&frame, &reason, ctx);
        }
        addr.do_send(Broadcast {
            session: self.id,
            payload,
        });
        self.reply(&frame, ReplyStatus::Ok, json!({}), ctx);
    }

    fn update_presence(
        &mut self,
        frame: Frame,
        fields: Map<String, Value>,
        ctx: &mut Context<Self>,
    ) {
        let Some(addr) = self.joined_to(&frame, ctx) else {
            return;
        };
        let Some(conn) = self.conn.clone() else {
            return;
        };
        addr.do_send(UpdatePresence {
            conn,
            join_ref: frame.join_ref,
            msg_ref: frame.msg_ref,
            fields,
        });
    }

    fn refresh_token(&mut self, frame: Frame, token: &str, ctx: &mut Context<Self>) {
        match self.shared.authorizer.verify_token(token) {
            Ok(id) if id.user_id == self.user_id => {
                self.expires_at = self.expires_at.max(id.expires_at);
                let response = json!({ "expires_at": self.expires_at });
                self.reply(&frame, ReplyStatus::Ok, response, ctx);
            }
            Ok(_) => self.error(&frame, "token belongs to another user", ctx),
            Err(e) => self.error(&frame, e.reason(), ctx),
        }
    }

    /// Closes the connection when it has been silent too long or its token expired.
    fn check_liveness(&mut self, ctx: &mut Context<Self>) {
        if self.last_seen.elapsed() > self.shared.limits.heartbeat_timeout {
            tracing::debug!(session = self.id, "closing a silent connection");
            return self.close_with(1000, "heartbeat_timeout", ctx);
        }
        if now_ms() / 1000 >= self.expires_at {
            tracing::debug!(
                session = self.id,
                "closing a connection whose token expired"
            );
            self.close_with(1008, "token_expired", ctx);
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
        self.shared
            .stats
            .connections
            .fetch_add(1, Ordering::Relaxed);
        let timeout = self.shared.limits.heartbeat_timeout;
        let every = (timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
        ctx.run_interval(every, |act, ctx| act.check_liveness(ctx));
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        for joined in self.joined.values() {
            joined.addr.do_send(Disconnect { session: self.id });
        }
        let reason = CloseReason {
            code: 1000,
            reason: "closed",
        };
        self.end(reason, false);
    }
}

impl StreamHandler<WireIn> for SessionActor {
    fn handle(&mut self, item: WireIn, ctx: &mut Context<Self>) {
        self.last_seen = Instant::now();
        match item {
            WireIn::Text(text) => self.on_text(text, ctx),
            WireIn::Ping(data) => self.queue(Outbound::Pong(data), ctx),
            WireIn::Pong => {}
            WireIn::Binary => self.close_with(1003, "binary frames are not supported", ctx),
            WireIn::TooLarge => self.close_with(1009, "frame too large", ctx),
            WireIn::Close => ctx.stop(),
            WireIn::Broken(e) => {
                tracing::debug!(session = self.id, error = %e, "websocket protocol error");
                self.close_with(1002, "protocol error", ctx);
            }
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Handler<SessionNotice> for SessionActor {
    type Result = ();

    fn handle(&mut self, notice: SessionNotice, ctx: &mut Context<Self>) {
        match notice {
            SessionNotice::Overflow => self.overflowed(ctx),
            SessionNotice::Dropped { topic, join_ref } => {
                if self
                    .joined
                    .get(&topic)
                    .is_some_and(|j| j.join_ref == join_ref)
                {
                    self.joined.remove(&topic);
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
