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

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use dashmap::DashMap;
use serde_json::Value;
use stoa_protocol::Topic;

use crate::env::{Env, Revoked};
use crate::limit::Limiter;
use crate::ports::{Authorizer, EventLog, Grant, LiveEvent};
use crate::topic::{
    Crash, CrashSessions, Notify, Publish, Revoke, Stall, Ticket, TopicActor, TopicRef,
};
use crate::{Limits, Stats};

/// Restarts allowed to one topic within `RESTART_WINDOW`.
const MAX_RESTARTS: u32 = 3;
const RESTART_WINDOW: Duration = Duration::from_secs(10);

/// A topic's recent restarts, carried from each actor to its successor.
#[derive(Debug, Clone, Copy)]
struct Restarts {
    count: u32,
    since: Instant,
}

impl Restarts {
    fn none() -> Restarts {
        Restarts {
            count: 0,
            since: Instant::now(),
        }
    }

    /// Counts one more; `None` when that is more than the window allows.
    fn one_more(self) -> Option<Restarts> {
        let mut next = if self.since.elapsed() > RESTART_WINDOW {
            Restarts::none()
        } else {
            self
        };
        next.count += 1;
        (next.count <= MAX_RESTARTS).then_some(next)
    }
}

pub(crate) struct Shared {
    pub(crate) env: Arc<Env>,
    pub(crate) authorizer: Arc<dyn Authorizer>,
    topics: DashMap<Topic, TopicRef>,
    /// The threads topic actors run on, apart from the threads serving sockets, so that a
    /// busy topic never delays a session's own work (heartbeats, overflow handling).
    arbiters: Vec<actix::dev::ArbiterHandle>,
    /// Workspace id → ids of its documents that have a topic actor (cleaned lazily).
    documents: DashMap<i64, HashSet<i64>>,
    /// Per user with a socket open on this node: how many, and the rate of messages they
    /// may send over all of them together.
    users: DashMap<i64, UserSlot>,
    /// The node is shutting down: actors stopped now are not crashing.
    shutting_down: std::sync::atomic::AtomicBool,
}

struct UserSlot {
    sockets: u32,
    messages: Limiter,
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

    /// The topic's actor, started if there is none (or the previous one died).
    pub(crate) fn topic_actor(self: &Arc<Self>, topic: Topic, grant: &Grant) -> TopicRef {
        if let Some(addr) = self.live(topic) {
            return addr;
        }
        let addr = {
            let mut entry = self
                .topics
                .entry(topic)
                .or_insert_with(|| self.start_topic(topic, grant.workspace_id, Restarts::none()));
            if !entry.addr.connected() {
                *entry = self.start_topic(topic, grant.workspace_id, Restarts::none());
            }
            entry.clone()
        };
        // Never hold a `topics` guard while taking a `documents` one: `workspace_actors`
        // takes them in the other order.
        if let (Topic::Document(doc), Some(ws)) = (topic, grant.workspace_id) {
            self.documents.entry(ws).or_default().insert(doc);
        }
        addr
    }

    /// Starts a topic actor on one of the topic threads, with its watcher beside it.
    fn start_topic(
        self: &Arc<Self>,
        topic: Topic,
        workspace: Option<i64>,
        restarts: Restarts,
    ) -> TopicRef {
        let (goodbye, watch) = tokio::sync::oneshot::channel::<()>();
        let actor = TopicActor::new(topic, workspace, self.env.clone(), goodbye);
        let capacity = self.limits().topic_mailbox;
        let slot = (self.env.next_id() as usize) % self.arbiters.len().max(1);
        let arbiter = self.arbiters.get(slot);
        let addr = match arbiter {
            Some(arbiter) => TopicActor::start_in_arbiter(arbiter, move |ctx| {
                ctx.set_mailbox_capacity(capacity);
                actor
            }),
            None => TopicActor::create(move |ctx| {
                ctx.set_mailbox_capacity(capacity);
                actor
            }),
        };
        let topic_ref = TopicRef::new(addr, self.limits());
        let shared = self.clone();
        let watched = topic_ref.clone();
        let watcher = async move {
            let clean = watch.await.is_ok();
            shared.topic_ended(topic, workspace, &watched, clean, restarts);
        };
        match arbiter {
            Some(arbiter) => {
                arbiter.spawn(watcher);
            }
            None => {
                actix::spawn(watcher);
            }
        }
        topic_ref
    }

    /// The supervisor's decision when a topic actor ended.
    fn topic_ended(
        self: &Arc<Self>,
        topic: Topic,
        workspace: Option<i64>,
        dead: &TopicRef,
        clean: bool,
        restarts: Restarts,
    ) {
        if clean || self.shutting_down() {
            self.topics.remove_if(&topic, |_, a| a == dead);
            return;
        }
        Stats::add(&self.stats().topic_crashes, 1);
        let Some(restarts) = restarts.one_more() else {
            tracing::error!(%topic, "topic actor crashed again; not restarted until joined");
            self.topics.remove_if(&topic, |_, a| a == dead);
            return;
        };
        tracing::error!(%topic, "topic actor crashed; starting a fresh one");
        if let Some(mut entry) = self.topics.get_mut(&topic) {
            if *entry == *dead {
                *entry = self.start_topic(topic, workspace, restarts);
                Stats::add(&self.stats().topic_restarts, 1);
            }
        }
    }

    pub(crate) fn shutting_down(&self) -> bool {
        self.shutting_down
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Takes one message from `user`'s allowance (all their sockets together).
    pub(crate) fn user_allows(&self, user: i64) -> bool {
        self.users
            .get(&user)
            .is_none_or(|slot| slot.messages.take())
    }

    /// The live actors of a workspace's topic and of its documents' topics.
    fn workspace_actors(&self, ws: i64) -> Vec<TopicRef> {
        let mut out: Vec<_> = self.live(Topic::Workspace(ws)).into_iter().collect();
        if let Some(mut docs) = self.documents.get_mut(&ws) {
            docs.retain(|doc| match self.live(Topic::Document(*doc)) {
                Some(addr) => {
                    out.push(addr);
                    true
                }
                None => false,
            });
        }
        out
    }

    /// Delivers a message a topic may do without (it heals from the log, or the client
    /// reads it over REST): dropped and counted when the topic's mailbox is full.
    fn offer<M>(&self, topic: &TopicRef, msg: impl FnOnce(Ticket) -> M)
    where
        M: Message + Send + 'static,
        M::Result: Send,
        TopicActor: Handler<M>,
    {
        match topic.ticket(self.limits().topic_mailbox) {
            Some(ticket) => topic.addr.do_send(msg(ticket)),
            None => Stats::add(&self.stats().topic_shed, 1),
        }
    }
}

/// One admitted socket of a user; the session holds it for as long as it lives.
pub struct SocketPermit {
    shared: Arc<Shared>,
    user: i64,
}

impl SocketPermit {
    pub fn user(&self) -> i64 {
        self.user
    }
}

impl Drop for SocketPermit {
    fn drop(&mut self) {
        self.shared.users.remove_if_mut(&self.user, |_, slot| {
            slot.sockets = slot.sockets.saturating_sub(1);
            slot.sockets == 0
        });
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
        let arbiters = (0..limits.topic_threads)
            .map(|_| actix::Arbiter::new().handle())
            .collect();
        Realtime {
            shared: Arc::new(Shared {
                env: Arc::new(Env::new(log, limits)),
                authorizer,
                topics: DashMap::new(),
                arbiters,
                documents: DashMap::new(),
                users: DashMap::new(),
                shutting_down: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    pub fn limits(&self) -> &Limits {
        self.shared.limits()
    }

    /// Counts a new socket of `user`, unless they already have
    /// `limits.max_sockets_per_user` open; the count drops with the permit.
    pub fn admit(&self, user: i64) -> Option<SocketPermit> {
        let limits = self.limits();
        let mut slot = self.shared.users.entry(user).or_insert_with(|| UserSlot {
            sockets: 0,
            messages: Limiter::new(limits.user_messages_per_sec, limits.user_message_burst),
        });
        if slot.sockets >= limits.max_sockets_per_user {
            return None;
        }
        slot.sockets += 1;
        Some(SocketPermit {
            shared: self.shared.clone(),
            user,
        })
    }

    pub fn stats(&self) -> &Stats {
        self.shared.stats()
    }

    pub fn authorizer(&self) -> &dyn Authorizer {
        &*self.shared.authorizer
    }

    /// A committed event: pushed to the workspace's topic and, for events about a
    /// document, to that document's topic. Each topic puts events in offset order itself,
    /// so callers may publish from any thread in any order. A topic whose mailbox is full
    /// drops it and reads it from the log instead (its gap fill or log check).
    pub fn publish(&self, event: LiveEvent) {
        for topic in self.shared.workspace_actors(event.workspace_id) {
            self.shared
                .offer(&topic, |ticket| Publish(event.clone(), ticket));
        }
    }

    /// Closes `user`'s channels on a workspace and its documents (membership removed).
    pub fn revoke_member(&self, workspace: i64, user: i64, reason: &'static str) {
        self.shared
            .env
            .record_revocation(Revoked::Workspace(workspace, Some(user)));
        for topic in self.shared.workspace_actors(workspace) {
            // Never dropped: access must end even when the topic is busy.
            topic.addr.do_send(Revoke {
                user: Some(user),
                reason,
            });
        }
    }

    /// Closes every channel on a workspace and its documents (workspace deleted).
    pub fn close_workspace(&self, workspace: i64, reason: &'static str) {
        self.shared
            .env
            .record_revocation(Revoked::Workspace(workspace, None));
        for topic in self.shared.workspace_actors(workspace) {
            topic.addr.do_send(Revoke { user: None, reason });
        }
    }

    /// Closes every channel on one document (document deleted).
    pub fn close_document(&self, document: i64, reason: &'static str) {
        self.shared
            .env
            .record_revocation(Revoked::Document(document));
        if let Some(topic) = self.shared.live(Topic::Document(document)) {
            topic.addr.do_send(Revoke { user: None, reason });
        }
    }

    /// The notification hub: pushes `notification` to every session of `user` joined to
    /// `user:{id}` (dropped if that topic is overloaded: the notification is stored, and
    /// the client's next unread count or list shows it).
    pub fn notify_user(&self, user: i64, payload: Value) {
        if let Some(topic) = self.shared.live(Topic::User(user)) {
            let payload = Arc::new(payload);
            self.shared.offer(&topic, |ticket| Notify(payload, ticket));
        }
    }

    /// Marks the node as shutting down: sessions and topics stopped from now on are told
    /// `going_away` (close 1001), not treated as crashes.
    pub fn begin_shutdown(&self) {
        self.shared
            .shutting_down
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Stops the topic threads (at shutdown).
    pub fn shutdown(&self) {
        for arbiter in &self.shared.arbiters {
            arbiter.stop();
        }
    }

    /// Fault injection: makes the topic's actor panic, as a bug would. Its subscribers
    /// receive `phx_error` and rejoin; nothing else is affected. False if not active.
    pub fn inject_panic(&self, topic: Topic) -> bool {
        self.fault(topic, Crash)
    }

    /// Fault injection: makes the session of every subscriber of `topic` panic. Each
    /// socket is closed with 1011; the topics forget those sessions.
    pub fn inject_session_panics(&self, topic: Topic) -> bool {
        self.fault(topic, CrashSessions)
    }

    /// Fault injection: blocks the topic's thread for `duration`, as a slow handler would,
    /// so that its mailbox fills.
    pub fn inject_stall(&self, topic: Topic, duration: Duration) -> bool {
        self.fault(topic, Stall(duration))
    }

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
