//! The node's live actors, found through concurrent maps, and the handle the rest of the
//! server uses to reach them.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix::prelude::*;
use dashmap::DashMap;
use serde_json::Value;
use stoa_protocol::Topic;

use crate::ports::{Authorizer, EventLog, Grant, LiveEvent};
use crate::topic::{Crash, Notify, Publish, Revoke, TopicActor};
use crate::{Limits, Stats};

pub(crate) struct Shared {
    pub(crate) authorizer: Arc<dyn Authorizer>,
    pub(crate) log: Arc<dyn EventLog>,
    pub(crate) limits: Limits,
    pub(crate) stats: Stats,
    topics: DashMap<Topic, Addr<TopicActor>>,
    /// The threads topic actors run on, apart from the threads serving sockets, so that a
    /// busy topic never delays a session's own work (heartbeats, overflow handling).
    arbiters: Vec<actix::dev::ArbiterHandle>,
    /// Workspace id → ids of its documents that have a topic actor (cleaned lazily).
    documents: DashMap<i64, HashSet<i64>>,
    /// Open sockets per user.
    sockets: DashMap<i64, u32>,
    /// Recent revocations, oldest first: a join whose authorisation began before one of
    /// these was checked against a membership that no longer exists.
    revocations: Mutex<VecDeque<Revocation>>,
    next_id: AtomicU64,
}

/// What a revocation took away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Revoked {
    /// One user's membership of a workspace, or (`None`) the whole workspace.
    Workspace(i64, Option<i64>),
    Document(i64),
}

struct Revocation {
    what: Revoked,
    at: Instant,
}

/// How long revocations are remembered: far longer than any authorisation check takes.
const REVOCATION_MEMORY: Duration = Duration::from_secs(600);

impl Shared {
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn live(&self, topic: Topic) -> Option<Addr<TopicActor>> {
        self.topics
            .get(&topic)
            .map(|a| a.clone())
            .filter(|a| a.connected())
    }

    /// The topic's actor, started on the calling thread's arbiter if there is none (or the
    /// previous one died).
    pub(crate) fn topic_actor(self: &Arc<Self>, topic: Topic, grant: &Grant) -> Addr<TopicActor> {
        if let Some(addr) = self.live(topic) {
            return addr;
        }
        let start = || {
            let actor = TopicActor::new(topic, grant.workspace_id, self.clone());
            let slot = (self.next_id() as usize) % self.arbiters.len().max(1);
            match self.arbiters.get(slot) {
                Some(arbiter) => TopicActor::start_in_arbiter(arbiter, move |_| actor),
                None => actor.start(),
            }
        };
        let addr = {
            let mut entry = self.topics.entry(topic).or_insert_with(start);
            if !entry.connected() {
                *entry = start();
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

    /// Forgets a stopping topic actor, unless the map already holds its successor.
    pub(crate) fn forget(&self, topic: Topic, addr: &Addr<TopicActor>) {
        self.topics.remove_if(&topic, |_, a| a == addr);
    }

    fn record_revocation(&self, what: Revoked) {
        let now = Instant::now();
        let mut list = self
            .revocations
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while list
            .front()
            .is_some_and(|r| now.duration_since(r.at) > REVOCATION_MEMORY)
        {
            list.pop_front();
        }
        list.push_back(Revocation { what, at: now });
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
            })
    }

    /// The live actors of a workspace's topic and of its documents' topics.
    fn workspace_actors(&self, ws: i64) -> Vec<Addr<TopicActor>> {
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
        self.shared.sockets.remove_if_mut(&self.user, |_, open| {
            *open = open.saturating_sub(1);
            *open == 0
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
                authorizer,
                log,
                limits,
                stats: Stats::default(),
                topics: DashMap::new(),
                arbiters,
                documents: DashMap::new(),
                sockets: DashMap::new(),
                revocations: Mutex::new(VecDeque::new()),
                next_id: AtomicU64::new(1),
            }),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.shared.limits
    }

    /// Counts a new socket of `user`, unless they already have
    /// `limits.max_sockets_per_user` open; the count drops with the permit.
    pub fn admit(&self, user: i64) -> Option<SocketPermit> {
        let mut open = self.shared.sockets.entry(user).or_insert(0);
        if *open >= self.shared.limits.max_sockets_per_user {
            return None;
        }
        *open += 1;
        Some(SocketPermit {
            shared: self.shared.clone(),
            user,
        })
    }

    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    pub fn authorizer(&self) -> &dyn Authorizer {
        &*self.shared.authorizer
    }

    /// A committed event: pushed to the workspace's topic and, for events about a
    /// document, to that document's topic. Each topic puts events in offset order itself,
    /// so callers may publish from any thread in any order.
    pub fn publish(&self, event: LiveEvent) {
        for addr in self.shared.workspace_actors(event.workspace_id) {
            addr.do_send(Publish(event.clone()));
        }
    }

    /// Closes `user`'s channels on a workspace and its documents (membership removed).
    pub fn revoke_member(&self, workspace: i64, user: i64, reason: &'static str) {
        self.shared
            .record_revocation(Revoked::Workspace(workspace, Some(user)));
        for addr in self.shared.workspace_actors(workspace) {
            addr.do_send(Revoke {
                user: Some(user),
                reason,
            });
        }
    }

    /// Closes every channel on a workspace and its documents (workspace deleted).
    pub fn close_workspace(&self, workspace: i64, reason: &'static str) {
        self.shared
            .record_revocation(Revoked::Workspace(workspace, None));
        for addr in self.shared.workspace_actors(workspace) {
            addr.do_send(Revoke { user: None, reason });
        }
    }

    /// Closes every channel on one document (document deleted).
    pub fn close_document(&self, document: i64, reason: &'static str) {
        self.shared.record_revocation(Revoked::Document(document));
        if let Some(addr) = self.shared.live(Topic::Document(document)) {
            addr.do_send(Revoke { user: None, reason });
        }
    }

    /// The notification hub: pushes `notification` to every session of `user` joined to
    /// `user:{id}`.
    pub fn notify_user(&self, user: i64, payload: Value) {
        if let Some(addr) = self.shared.live(Topic::User(user)) {
            addr.do_send(Notify(Arc::new(payload)));
        }
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
        match self.shared.live(topic) {
            Some(addr) => {
                addr.do_send(Crash);
                true
            }
            None => false,
        }
    }
}
