//! A Yjs socket's session: reads the client's binary frames, checks that they are
//! well-formed y-protocol messages, limits their rate and hands them to the document.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use yrs::sync::protocol::MessageReader;
use yrs::sync::{Message, SyncMessage};
use yrs::updates::decoder::DecoderV1;

use crate::conn::Conn;
use crate::limit::Limiter;
use crate::liveness::{Liveness, Verdict};
use crate::notice::SessionNotice;
use crate::outbox::{self, CloseReason, Outbound, Outbox, OutboxReader};
use crate::registry::{Realtime, Shared, SocketPermit};
use crate::session::WireIn;
use crate::stats::Stats;

use super::doc::{DocActor, DocMsg, Open};

/// A Yjs socket's session: checks and forwards the client's messages to its document.
pub struct YjsSession {
    shared: Arc<Shared>,
    id: u64,
    user: i64,
    doc: Addr<DocActor>,
    writable: bool,
    outbox: Arc<Outbox>,
    limiter: Limiter,
    /// Silence, and the expiry of the token the socket was opened with, end the socket
    /// (1000 `heartbeat_timeout`, 1008 `token_expired`: y-websocket has no message to renew
    /// a token; a client reconnects with a fresh one in its URL).
    liveness: Liveness,
    /// When the socket's access was checked.
    authorized_at: Instant,
    /// The login and issue time of the socket's token.
    token: crate::TokenTag,
    closing: bool,
    /// `stopped()` ran (its bookkeeping is not to be done again on drop).
    ended: bool,
    _permit: SocketPermit,
}

impl YjsSession {
    /// Starts the session of an accepted Yjs socket on `document` (in `workspace`);
    /// `writable` is false for viewers; `expires_at` is the token's expiry (Unix seconds);
    /// `authorized_at` is when `writable` was decided (taken before the check began).
    /// `None` when no document store is configured.
    #[allow(clippy::too_many_arguments)]
    pub fn start<S>(
        realtime: &Realtime,
        permit: SocketPermit,
        document: i64,
        workspace: i64,
        writable: bool,
        expires_at: i64,
        authorized_at: Instant,
        incoming: S,
    ) -> Option<OutboxReader>
    where
        S: futures_core::Stream<Item = WireIn> + 'static,
    {
        let shared = realtime.shared.clone();
        let doc = shared.docs.actor(&shared.env, document, workspace)?;
        let limits = shared.limits();
        let (outbox, reader) = outbox::channel(limits.outbound_queue, limits.outbound_queue_bytes);
        // Editors send an update per keystroke and an awareness change per cursor move:
        // a wider allowance than a channel client's.
        let limiter = Limiter::new(
            limits.messages_per_sec.saturating_mul(4),
            limits.message_burst.saturating_mul(4),
        );
        let liveness = Liveness::new(limits.heartbeat_timeout, expires_at);
        let id = shared.env.next_id();
        let user = permit.user();
        let token = permit.token();
        YjsSession::create(move |ctx| {
            ctx.add_stream(incoming);
            YjsSession {
                shared,
                id,
                user,
                doc,
                writable,
                outbox,
                limiter,
                liveness,
                authorized_at,
                token,
                closing: false,
                ended: false,
                _permit: permit,
            }
        });
        Some(reader)
    }

    /// Closes the socket (1011, if the session had not chosen to) and leaves the document,
    /// once.
    fn end(&mut self) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        if !self.closing {
            self.closing = true;
            self.outbox.close(
                CloseReason {
                    code: 1011,
                    reason: "internal_error",
                },
                true,
            );
        }
        self.doc.do_send(DocMsg::Leave(self.id));
        self.shared.sessions.remove(&self.id);
        self.shared
            .stats()
            .yjs_connections
            .fetch_sub(1, Ordering::Relaxed);
    }

    /// Closes the socket for silence or an expired token, or checks again when the earlier
    /// of the two is due: one timer per socket, as channel sessions have.
    fn check_liveness(&mut self, ctx: &mut Context<Self>) {
        match self.liveness.check(Instant::now(), crate::clock::now_ms()) {
            Verdict::Silent => self.close(1000, "heartbeat_timeout", false, ctx),
            Verdict::Expired => {
                tracing::debug!(
                    session = self.id,
                    "closing a Yjs socket whose token expired"
                );
                self.close(1008, "token_expired", false, ctx);
            }
            Verdict::CheckIn(next) => {
                ctx.run_later(next, |act, ctx| act.check_liveness(ctx));
            }
        }
    }

    fn close(&mut self, code: u16, reason: &'static str, discard: bool, ctx: &mut Context<Self>) {
        if !self.closing {
            self.closing = true;
            self.outbox.close(CloseReason { code, reason }, discard);
        }
        ctx.stop();
    }

    fn on_binary(&mut self, bytes: Vec<u8>, ctx: &mut Context<Self>) {
        if !self.limiter.take() || !self.shared.user_allows(self.user) {
            Stats::add(&self.shared.stats().rate_limited, 1);
            // The client reconnects and syncs again: nothing it holds is lost.
            return self.close(1008, "rate_limited", false, ctx);
        }
        let mut decoder = DecoderV1::from(bytes.as_slice());
        let mut messages = Vec::new();
        for m in MessageReader::new(&mut decoder) {
            match m {
                Ok(m) => messages.push(m),
                Err(_) => return self.close(1007, "malformed y-protocol message", false, ctx),
            }
        }
        if messages.is_empty() {
            return self.close(1007, "malformed y-protocol message", false, ctx);
        }
        let msg = match <[Message; 1]>::try_from(messages) {
            // A frame that is one update (an editor typing): relayed as it came, with no
            // second encoding.
            Ok([Message::Sync(SyncMessage::Update(update))]) => {
                DocMsg::Update(self.id, update, bytes.into())
            }
            Ok([m]) => DocMsg::In(self.id, vec![m]),
            Err(messages) => DocMsg::In(self.id, messages),
        };
        if self.doc.try_send(msg).is_err() {
            // The document is overloaded: the client reconnects and syncs again.
            self.close(1013, "try_again_later", false, ctx);
        }
    }
}

impl Actor for YjsSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let conn = Conn::new(
            self.id,
            self.user,
            self.outbox.clone(),
            ctx.address().recipient(),
        );
        self.shared
            .stats()
            .yjs_connections
            .fetch_add(1, Ordering::Relaxed);
        self.shared
            .sessions
            .insert(self.id, (self.user, ctx.address().recipient()));
        self.doc.do_send(DocMsg::Open(Open {
            conn,
            user: self.user,
            writable: self.writable,
            authorized_at: self.authorized_at,
        }));
        self.check_liveness(ctx);
        if self.shared.shutting_down() {
            ctx.address().do_send(SessionNotice::GoAway);
        }
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        self.end();
    }
}

impl Drop for YjsSession {
    /// Whatever ended the actor, its socket is closed and its document left by now: by
    /// `stopped()`, or here if it did not run.
    fn drop(&mut self) {
        self.end();
    }
}

impl StreamHandler<WireIn> for YjsSession {
    fn handle(&mut self, item: WireIn, ctx: &mut Context<Self>) {
        self.liveness.seen();
        self.shared.stats().received("yjs");
        match item {
            WireIn::Binary(bytes) => self.on_binary(bytes, ctx),
            WireIn::Text(_) => self.close(1003, "text frames are not supported", false, ctx),
            WireIn::Ping(data) => {
                if self.outbox.send(Outbound::Pong(data)).is_err() {
                    self.close(1008, "slow_consumer", true, ctx);
                }
            }
            WireIn::Pong => {}
            WireIn::TooLarge => self.close(1009, "frame too large", false, ctx),
            WireIn::Close => self.close(1000, "", false, ctx),
            WireIn::Broken(_) => self.close(1002, "protocol error", false, ctx),
            WireIn::Invalid(_) => self.close(1007, "invalid payload", false, ctx),
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        self.close(1000, "", false, ctx);
    }
}

impl Handler<SessionNotice> for YjsSession {
    type Result = ();
    fn handle(&mut self, msg: SessionNotice, ctx: &mut Context<Self>) {
        match msg {
            SessionNotice::Overflow => {
                Stats::add(&self.shared.stats().slow_consumers, 1);
                self.close(1008, "slow_consumer", true, ctx);
            }
            SessionNotice::Dropped { topic, .. } => {
                let reason = match topic.as_str() {
                    "membership_revoked" => "membership_revoked",
                    "workspace_deleted" => "workspace_deleted",
                    "document_deleted" => "document_deleted",
                    "malformed_update" => "malformed_update",
                    "role_changed" => "role_changed",
                    "unavailable" => "unavailable",
                    _ => "revoked",
                };
                let code = if reason == "unavailable" { 1011 } else { 1008 };
                self.close(code, reason, false, ctx);
            }
            SessionNotice::GoAway => self.close(1001, "going_away", false, ctx),
            SessionNotice::Ended(end) => {
                if self.token.ended_by(self.user, &end) {
                    self.close(1008, crate::ended::close_reason(&end), false, ctx);
                }
            }
            #[cfg(feature = "faults")]
            SessionNotice::Crash => panic!("injected session fault"),
        }
    }
}
