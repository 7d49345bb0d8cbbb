//! The documents open on this node, and one actor per document: it holds the `yrs` doc and
//! its awareness, applies what editors send, relays it to the document's other connections
//! and the other nodes, appends every update to the store in small batches, keeps the text
//! REST serves, and unloads once idle.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use actix::prelude::*;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use dashmap::DashMap;
use stoa_protocol::bus::{doc_channel, Body};
use yrs::sync::{Awareness, AwarenessUpdate, Message, SyncMessage};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{ReadTxn, StateVector, Transact, Update};

use crate::conn::Conn;
use crate::env::Env;
use crate::notice::SessionNotice;
use crate::ports::{LiveEvent, Publisher};
use crate::stats::Stats;

use super::text::{text_of, write_text};
use crate::ports::{DocError, DocStore, StoredDoc};

/// Updates appended since the last compaction after which the log is compacted.
const COMPACT_AFTER: usize = 256;
/// How long a failed write waits before it is tried again.
const RETRY: Duration = Duration::from_secs(1);
/// How long edits gather before the document's text is saved and its editors' edits are
/// recorded (one `document.edited` event per editor per window).
const PROJECT_AFTER: Duration = Duration::from_secs(2);

/// When a loaded document reads the store again for updates written by other nodes between
/// its load and the moment the bus began to bring them (subscribing takes a moment).
const CATCH_UP: Duration = Duration::from_secs(1);

/// The documents open on this node.
#[derive(Default)]
pub(crate) struct Docs {
    store: std::sync::OnceLock<Arc<dyn DocStore>>,
    open: DashMap<i64, Addr<DocActor>>,
    /// Documents with at least one connection: what `max_open_documents` bounds. A document
    /// opened only to take a REST write or to catch up after a crash is not counted (it
    /// closes once its work is written).
    live: std::sync::atomic::AtomicUsize,
    /// Publishes the events documents record.
    publisher: std::sync::OnceLock<Weak<dyn Publisher>>,
    /// Documents that shed updates from other nodes and are to read their log (one
    /// `Remote::Reread` in flight per document).
    reread: dashmap::DashSet<i64>,
    /// Messages from other nodes waiting in each document's mailbox.
    remote_waiting: DashMap<i64, Arc<std::sync::atomic::AtomicUsize>>,
}

/// One place in a document's mailbox taken by a message from another node, given back when
/// the message has been handled or dropped.
struct RemoteTicket(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for RemoteTicket {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Docs {
    pub(crate) fn set_store(&self, store: Arc<dyn DocStore>) {
        let _ = self.store.set(store);
    }

    pub(crate) fn is_open(&self, document: i64) -> bool {
        self.open.contains_key(&document)
    }

    /// Documents with connections on this node.
    pub(crate) fn live_count(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// Updates another node applied and wrote. They wait in the document's mailbox like
    /// its own clients' messages, within its bound: a document whose mailbox is full sheds
    /// them and reads its log instead (they are written before they are sent), once however
    /// many were shed meanwhile.
    pub(crate) fn heard_updates(&self, env: &Env, document: i64, updates: Vec<String>) {
        let Some(addr) = self.open.get(&document).map(|a| a.clone()) else {
            return;
        };
        let updates = updates
            .iter()
            .filter_map(|u| BASE64.decode(u).ok())
            .collect();
        match self.ticket(env, document) {
            Some(ticket) => addr.do_send(Remote::Updates(updates, ticket)),
            None => {
                Stats::add(&env.stats.topic_shed, 1);
                if self.reread.insert(document) {
                    addr.do_send(Remote::Reread);
                }
            }
        }
    }

    /// A place in the document's mailbox for a message from another node, or `None` when
    /// `topic_mailbox` of them wait already. (actix's own bound is per sender: every new
    /// sender may always add one more.)
    fn ticket(&self, env: &Env, document: i64) -> Option<RemoteTicket> {
        let waiting = self.remote_waiting.entry(document).or_default().clone();
        let before = waiting.fetch_add(1, Ordering::AcqRel);
        let ticket = RemoteTicket(waiting);
        (before < env.limits.topic_mailbox).then_some(ticket)
    }

    /// An awareness change from a client of another node (shed when the document's mailbox
    /// is full: the next change of that client's cursor replaces it).
    pub(crate) fn heard_awareness(&self, env: &Env, document: i64, update: String) {
        let Some(addr) = self.open.get(&document).map(|a| a.clone()) else {
            return;
        };
        if let Some(update) = BASE64
            .decode(update)
            .ok()
            .and_then(|b| AwarenessUpdate::decode_v1(&b).ok())
        {
            match self.ticket(env, document) {
                Some(ticket) => addr.do_send(Remote::Awareness(update, ticket)),
                None => Stats::add(&env.stats.topic_shed, 1),
            }
        }
    }

    /// Tells the open documents of a workspace (or one document) to close connections.
    pub(crate) fn revoke(
        &self,
        workspace: Option<i64>,
        document: Option<i64>,
        user: Option<i64>,
        reason: &'static str,
    ) {
        for entry in self.open.iter() {
            let addr = entry.value();
            if document.is_some_and(|d| d != *entry.key()) {
                continue;
            }
            addr.do_send(RevokeDoc {
                workspace,
                user,
                reason,
            });
        }
    }

    /// Tells the open documents of a workspace that a member's role changed: their
    /// connections may write from now on, or no longer.
    pub(crate) fn role_changed(&self, workspace: i64, user: i64, writable: bool) {
        for entry in self.open.iter() {
            entry.value().do_send(RoleChanged {
                workspace,
                user,
                writable,
            });
        }
    }
}

impl Docs {
    /// The document's actor, started on this thread if it is not open.
    pub(crate) fn actor(
        self: &Arc<Self>,
        env: &Arc<Env>,
        document: i64,
        workspace: i64,
    ) -> Option<Addr<DocActor>> {
        let store = self.store.get()?.clone();
        let start = || DocActor::start_on(env, self, document, workspace, store.clone());
        let entry = self
            .open
            .entry(document)
            .and_modify(|addr| {
                if !addr.connected() {
                    *addr = start();
                }
            })
            .or_insert_with(start);
        Some(entry.value().clone())
    }

    /// Who publishes the events a document records (the node's real-time core; set once).
    pub(crate) fn set_publisher(&self, publisher: Weak<dyn Publisher>) {
        let _ = self.publisher.set(publisher);
    }

    fn publish(&self, event: LiveEvent) {
        if let Some(publisher) = self.publisher.get().and_then(Weak::upgrade) {
            publisher.publish(event);
        }
    }
}

struct DocConn {
    conn: Conn,
    user: i64,
    writable: bool,
    /// The awareness clients this connection has announced.
    clients: HashSet<u64>,
}

pub struct DocActor {
    id: i64,
    workspace: i64,
    env: Arc<Env>,
    docs: Arc<Docs>,
    store: Arc<dyn DocStore>,
    awareness: Awareness,
    conns: HashMap<u64, DocConn>,
    /// Updates not yet written, and who made them (user, updates).
    pending: Vec<Vec<u8>>,
    pending_editors: Vec<(i64, u32)>,
    /// The version of a REST write whose text is among `pending` (or is being written).
    pending_text_version: Option<i64>,
    /// The newest REST write this actor made a change of: an older one reaching it later
    /// (two writes taken at once on this node, their hand-offs crossing) is already
    /// superseded and is not applied over it.
    rest_version: i64,
    writing: bool,
    since_compact: usize,
    /// The position of the last update written (here or by the last load).
    last_seq: i64,
    /// The position of the last update the load read.
    loaded_seq: i64,
    /// The position up to which the text was saved and the edits recorded.
    projected_seq: i64,
    /// Told when everything applied has been written.
    flushed: Vec<tokio::sync::oneshot::Sender<()>>,
    /// Batches of updates started and written: a barrier waits for the batch that holds
    /// what was applied before it, not for the document to fall quiet.
    batches_started: u64,
    batches_written: u64,
    barriers: Vec<(u64, tokio::sync::oneshot::Sender<()>)>,
    /// When the document last did something without a connection: its last connection
    /// left, it took a REST write or caught up. It is unloaded once written and quiet.
    idle_since: Instant,
    /// Whether a connection was ever open: a document that only took a REST write or
    /// caught up closes as soon as that is written, one that editors left waits
    /// `Limits::doc_idle` for them to come back.
    had_connections: bool,
    /// The text as last saved (what REST serves).
    saved_text: String,
    /// A save of the text is scheduled, or under way.
    projection_due: bool,
    projecting: bool,
    /// A compaction is under way.
    compacting: bool,
    /// The size of the document's state, in bytes: exact after a load or a check, then an
    /// upper bound (each applied update adds its own size).
    size: usize,
    /// Whether `size` is exact (nothing applied since it was measured).
    size_exact: bool,
    /// A save that failed for good has been logged (once per document).
    failure_logged: bool,
}

impl DocActor {
    fn start_on(
        env: &Arc<Env>,
        docs: &Arc<Docs>,
        id: i64,
        workspace: i64,
        store: Arc<dyn DocStore>,
    ) -> Addr<DocActor> {
        let actor = DocActor {
            id,
            workspace,
            env: env.clone(),
            docs: docs.clone(),
            store,
            awareness: Awareness::new(yrs::Doc::new()),
            conns: HashMap::new(),
            pending: Vec::new(),
            pending_editors: Vec::new(),
            pending_text_version: None,
            rest_version: 0,
            writing: false,
            since_compact: 0,
            last_seq: 0,
            loaded_seq: 0,
            projected_seq: 0,
            flushed: Vec::new(),
            batches_started: 0,
            batches_written: 0,
            barriers: Vec::new(),
            idle_since: Instant::now(),
            had_connections: false,
            saved_text: String::new(),
            projection_due: false,
            projecting: false,
            compacting: false,
            size: 0,
            size_exact: true,
            failure_logged: false,
        };
        let capacity = env.limits.topic_mailbox;
        // On the thread of the socket that opens it, not on a topic thread: an update read
        // on that thread is applied there and relayed to the editors on it with no
        // cross-thread wake-up, and under an editing load the topic threads stay idle
        // (docs/BENCHMARKS.md, "Yjs").
        DocActor::create(move |ctx| {
            ctx.set_mailbox_capacity(capacity);
            actor
        })
    }

    fn stats(&self) -> &Stats {
        &self.env.stats
    }

    fn send_to(&self, conn: &Conn, bytes: &Arc<[u8]>) {
        if conn.push_binary(bytes) {
            self.stats().sent(crate::stats::Out::Yjs, 1);
        }
    }

    /// Sends `bytes` to every connection but `except`.
    fn relay(&self, bytes: &Arc<[u8]>, except: Option<u64>) {
        for (id, c) in &self.conns {
            if Some(*id) != except {
                self.send_to(&c.conn, bytes);
            }
        }
    }

    fn greet(&self, c: &DocConn) {
        let sv = self.awareness.doc().transact().state_vector();
        let step1: Arc<[u8]> = Message::Sync(SyncMessage::SyncStep1(sv)).encode_v1().into();
        self.send_to(&c.conn, &step1);
        if let Ok(update) = self.awareness.update() {
            if !update.clients.is_empty() {
                let msg: Arc<[u8]> = Message::Awareness(update).encode_v1().into();
                self.send_to(&c.conn, &msg);
            }
        }
    }

    /// Tells a connection its updates are refused, and why (y-websocket's `auth` message:
    /// the provider reports it and keeps the socket).
    fn refuse(&self, conn: &Conn, reason: &str) {
        let refusal: Arc<[u8]> = Message::Auth(Some(reason.into())).encode_v1().into();
        self.send_to(conn, &refusal);
    }

    /// Keeps the count of documents with connections as a connection is added or removed.
    fn count_live(&self, before: usize) {
        let live = &self.docs.live;
        match (before, self.conns.len()) {
            (0, n) if n > 0 => {
                live.fetch_add(1, Ordering::Relaxed);
            }
            (b, 0) if b > 0 => {
                live.fetch_sub(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }

    fn handle(&mut self, msg: DocMsg, ctx: &mut Context<Self>) {
        match msg {
            DocMsg::Open(open) => self.open(open),
            DocMsg::In(conn_id, messages) => {
                for m in messages {
                    self.on_message(conn_id, m, None, ctx);
                }
            }
            DocMsg::Update(conn_id, update, frame) => {
                let m = Message::Sync(SyncMessage::Update(update));
                self.on_message(conn_id, m, Some(frame), ctx);
            }
            DocMsg::Leave(conn_id) => self.leave(conn_id, ctx),
        }
    }

    fn open(&mut self, open: Open) {
        let env = &self.env;
        let topic = stoa_protocol::Topic::Document(self.id);
        let (user, since) = (open.user, open.authorized_at);
        if env.revoked_since(topic, Some(self.workspace), user, since) {
            // Allowed by a membership (or a document) taken away while the socket was on
            // its way here.
            open.conn.notify(SessionNotice::Dropped {
                topic: "membership_revoked".into(),
                join_ref: None,
            });
            return;
        }
        if env.role_changed_since(self.workspace, user, since) {
            // Its right to write was decided under a role that has changed since: the
            // client reconnects and is checked again.
            open.conn.notify(SessionNotice::Dropped {
                topic: "role_changed".into(),
                join_ref: None,
            });
            return;
        }
        let c = DocConn {
            conn: open.conn,
            user,
            writable: open.writable,
            clients: HashSet::new(),
        };
        self.greet(&c);
        let before = self.conns.len();
        self.had_connections = true;
        self.conns.insert(c.conn.id, c);
        self.count_live(before);
    }

    /// `frame`, when given, is `msg` as it arrived (relayed as it is).
    fn on_message(
        &mut self,
        conn_id: u64,
        msg: Message,
        frame: Option<Arc<[u8]>>,
        ctx: &mut Context<Self>,
    ) {
        let Some(c) = self.conns.get(&conn_id) else {
            return;
        };
        match msg {
            Message::Sync(SyncMessage::SyncStep1(sv)) => {
                let update = self
                    .awareness
                    .doc()
                    .transact()
                    .encode_state_as_update_v1(&sv);
                let reply: Arc<[u8]> = Message::Sync(SyncMessage::SyncStep2(update))
                    .encode_v1()
                    .into();
                self.send_to(&c.conn, &reply);
            }
            Message::Sync(SyncMessage::SyncStep2(update) | SyncMessage::Update(update)) => {
                if !c.writable {
                    self.refuse(&c.conn, "read-only: viewers cannot edit");
                    Stats::add(&self.stats().yjs_updates_refused, 1);
                    return;
                }
                self.apply(conn_id, update, frame, ctx);
            }
            Message::Awareness(update) => self.on_awareness(conn_id, update),
            Message::AwarenessQuery => {
                if let Ok(update) = self.awareness.update() {
                    let msg: Arc<[u8]> = Message::Awareness(update).encode_v1().into();
                    self.send_to(&c.conn, &msg);
                }
            }
            Message::Auth(_) | Message::Custom(..) => {}
        }
    }

    /// Whether the document can take `incoming` more bytes of update within
    /// `realtime.max_document_bytes`. The running size is an upper bound; near the limit
    /// it is measured (the state encoded), and only then is anything refused.
    fn has_room(&mut self, incoming: usize) -> bool {
        let max = self.env.limits.max_document_bytes;
        if self.size.saturating_add(incoming) <= max {
            return true;
        }
        if !self.size_exact {
            self.size = self
                .awareness
                .doc()
                .transact()
                .encode_state_as_update_v1(&StateVector::default())
                .len();
            self.size_exact = true;
        }
        self.size.saturating_add(incoming) <= max
    }

    /// Applies an editor's update; `frame` is its message as it arrived, when it came alone.
    fn apply(
        &mut self,
        conn_id: u64,
        update: Vec<u8>,
        frame: Option<Arc<[u8]>>,
        ctx: &mut Context<Self>,
    ) {
        let started = crate::hist::stamp();
        let decoded = match Update::decode_v1(&update) {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(document = self.id, error = %e, "undecodable update");
                self.drop_conn(conn_id, "malformed_update");
                return;
            }
        };
        if decoded.is_empty() {
            // Nothing to apply (a sync reply from a client that had nothing new).
            return;
        }
        if !self.has_room(update.len()) {
            if let Some(c) = self.conns.get(&conn_id) {
                let max = self.env.limits.max_document_bytes;
                self.refuse(
                    &c.conn,
                    &format!("document_too_large: the document would exceed {max} bytes"),
                );
            }
            Stats::add(&self.stats().yjs_updates_refused, 1);
            return;
        }
        let applied = self.awareness.doc().transact_mut().apply_update(decoded);
        if let Err(e) = applied {
            tracing::debug!(document = self.id, error = %e, "update not applied");
            self.drop_conn(conn_id, "malformed_update");
            return;
        }
        self.size = self.size.saturating_add(update.len());
        self.size_exact = false;
        Stats::add(&self.stats().yjs_updates, 1);
        if let Some(user) = self.conns.get(&conn_id).map(|c| c.user) {
            count_edits(&mut self.pending_editors, user, 1);
        }
        let relayed: Arc<[u8]> = frame.unwrap_or_else(|| {
            Message::Sync(SyncMessage::Update(update.clone()))
                .encode_v1()
                .into()
        });
        self.relay(&relayed, Some(conn_id));
        self.pending.push(update);
        self.write(ctx);
        if let Some(us) = crate::hist::since(started) {
            self.stats().yjs_update_latency.observe(us);
        }
    }

    fn on_awareness(&mut self, conn_id: u64, update: AwarenessUpdate) {
        if let Some(c) = self.conns.get_mut(&conn_id) {
            for (client, entry) in &update.clients {
                if &*entry.json == "null" {
                    c.clients.remove(&client.get());
                } else {
                    c.clients.insert(client.get());
                }
            }
        }
        let raw = update.encode_v1();
        let relayed: Arc<[u8]> = Message::Awareness(update.clone()).encode_v1().into();
        if self.awareness.apply_update(update).is_err() {
            return;
        }
        // To everyone, the sender too: a lone client hears its own renewals and so knows
        // the connection is alive (y-websocket reconnects after 30 s of silence).
        self.relay(&relayed, None);
        if self.env.has_bus() {
            let body = Body::YjsAwareness {
                document: self.id,
                update: BASE64.encode(raw),
            };
            self.env.bus_send(&doc_channel(self.id), body);
        }
    }

    /// Updates another node applied (and wrote): applied and relayed here, not written.
    fn apply_remote(&mut self, updates: Vec<Vec<u8>>) {
        for update in updates {
            let Ok(decoded) = Update::decode_v1(&update) else {
                continue;
            };
            let applied = self.awareness.doc().transact_mut().apply_update(decoded);
            if applied.is_err() {
                continue;
            }
            self.size = self.size.saturating_add(update.len());
            self.size_exact = false;
            let relayed: Arc<[u8]> = Message::Sync(SyncMessage::Update(update))
                .encode_v1()
                .into();
            self.relay(&relayed, None);
        }
    }

    /// Removes a connection's awareness states and tells the others they are gone.
    fn forget_clients(&mut self, clients: HashSet<u64>) {
        if clients.is_empty() {
            return;
        }
        let ids: Vec<yrs::ClientID> = clients
            .into_iter()
            .map(yrs::ClientID::new)
            .filter(|id| self.awareness.meta(*id).is_some())
            .collect();
        for id in &ids {
            self.awareness.remove_state(*id);
        }
        if let Ok(update) = self.awareness.update_with_clients(ids) {
            let msg: Arc<[u8]> = Message::Awareness(update).encode_v1().into();
            self.relay(&msg, None);
        }
    }

    fn leave(&mut self, conn_id: u64, ctx: &mut Context<Self>) {
        self.remove_conn(conn_id);
        self.maybe_unload(ctx);
    }

    fn remove_conn(&mut self, conn_id: u64) -> Option<DocConn> {
        let before = self.conns.len();
        let c = self.conns.remove(&conn_id)?;
        self.count_live(before);
        if self.conns.is_empty() {
            self.idle_since = Instant::now();
        }
        let clients = c.clients.clone();
        self.forget_clients(clients);
        Some(c)
    }

    fn drop_conn(&mut self, conn_id: u64, reason: &'static str) {
        if let Some(c) = self.remove_conn(conn_id) {
            c.conn.notify(SessionNotice::Dropped {
                topic: reason.to_string(),
                join_ref: None,
            });
        }
    }

    /// Unloads the document if it has no connection, everything it applied is written, and
    /// it has been quiet long enough: `Limits::doc_idle` after its editors left (they may
    /// come back), a moment after a REST write or a catch-up for a document nobody opened.
    /// Called whenever one of those may have become true, and by the idle timer.
    fn maybe_unload(&mut self, ctx: &mut Context<Self>) {
        if !self.conns.is_empty() || !self.written() {
            return;
        }
        let quiet = if self.had_connections {
            self.env.limits.doc_idle
        } else {
            UNOPENED_GRACE
        };
        if self.idle_since.elapsed() >= quiet {
            self.unload(ctx);
        }
    }

    /// Writes what is pending, one batch at a time.
    fn write(&mut self, ctx: &mut Context<Self>) {
        if self.writing {
            return;
        }
        if self.pending.is_empty() {
            self.notify_flushed(ctx);
            return;
        }
        self.writing = true;
        self.batches_started += 1;
        let batch_no = self.batches_started;
        let batch = std::mem::take(&mut self.pending);
        let editors = std::mem::take(&mut self.pending_editors);
        let text_version = self.pending_text_version.take();
        let count = batch.len() as u64;
        // One row (and one bus message) for the batch: Yjs merges updates losslessly.
        let batch = match batch.len() {
            0 | 1 => batch,
            _ => match yrs::merge_updates_v1(&batch) {
                Ok(merged) => vec![merged],
                Err(_) => batch,
            },
        };
        let store = self.store.clone();
        let id = self.id;
        let started = crate::hist::stamp();
        let fut = async move {
            let result = store.append(id, &batch, &editors).await;
            if let (Ok(seq), Some(version)) = (&result, text_version) {
                if let Err(e) = store.text_in_log(id, version, *seq).await {
                    // Harmless: the next load finds the text already in the log.
                    tracing::debug!(document = id, error = %e, "cannot mark the REST text written");
                }
            }
            (batch, editors, result)
        };
        ctx.spawn(
            fut.into_actor(self)
                .map(move |(batch, editors, result), act, ctx| {
                    act.writing = false;
                    match result {
                        Ok(seq) => {
                            act.batches_written = act.batches_written.max(batch_no);
                            let done = act.batches_written;
                            for (_, tx) in act.barriers.extract_if(.., |(need, _)| *need <= done) {
                                let _ = tx.send(());
                            }
                            if let Some(us) = crate::hist::since(started) {
                                act.stats().yjs_persist_latency.observe(us);
                            }
                            act.last_seq = act.last_seq.max(seq);
                            if act.env.has_bus() {
                                let body = Body::YjsUpdates {
                                    document: act.id,
                                    updates: batch.iter().map(|u| BASE64.encode(u)).collect(),
                                };
                                act.env.bus_send(&doc_channel(act.id), body);
                            }
                            act.since_compact += batch.len();
                            Stats::add(&act.stats().yjs_updates_written, count);
                            if act.since_compact >= COMPACT_AFTER {
                                act.compact(ctx);
                            }
                            // What was written is recorded within PROJECT_AFTER, or at
                            // once when someone waits for everything to be written (a REST
                            // write's version, a catch-up).
                            if act.last_seq > act.projected_seq {
                                if act.flushed.is_empty() {
                                    act.schedule_projection(ctx, PROJECT_AFTER);
                                } else if !act.projecting {
                                    act.project(ctx);
                                }
                            }
                            act.write(ctx);
                        }
                        Err(e) if e.permanent => {
                            // The database refuses these bytes, and always will: they are
                            // dropped, the document carries on.
                            act.failed_for_good("updates", &e);
                            act.write(ctx);
                        }
                        Err(e) => {
                            tracing::warn!(document = act.id, error = %e, "cannot write document updates; retrying");
                            let mut later = batch;
                            later.append(&mut act.pending);
                            act.pending = later;
                            for (user, n) in editors {
                                count_edits(&mut act.pending_editors, user, n);
                            }
                            act.pending_text_version = act.pending_text_version.or(text_version);
                            ctx.run_later(RETRY, |act, ctx| act.write(ctx));
                        }
                    }
                }),
        );
    }

    /// A save that will never succeed: logged once per document, counted every time.
    fn failed_for_good(&mut self, what: &str, e: &DocError) {
        Stats::add(&self.stats().yjs_saves_failed, 1);
        if !self.failure_logged {
            self.failure_logged = true;
            tracing::error!(document = self.id, error = %e, what, "the database refuses this document's {what}; not retrying");
        }
    }

    fn schedule_projection(&mut self, ctx: &mut Context<Self>, after: Duration) {
        if !self.projection_due {
            self.projection_due = true;
            ctx.run_later(after, |act, ctx| act.project(ctx));
        }
    }

    /// Saves the text and records the edits of what is written.
    fn project(&mut self, ctx: &mut Context<Self>) {
        if self.projecting {
            ctx.run_later(PROJECT_AFTER, |act, ctx| act.project(ctx));
            return;
        }
        self.projection_due = false;
        let text = storable(text_of(self.awareness.doc()));
        let through = self.last_seq;
        if through <= self.projected_seq && text == self.saved_text {
            self.notify_flushed(ctx);
            return;
        }
        self.projecting = true;
        let store = self.store.clone();
        let id = self.id;
        let fut = async move {
            let result = store.save_text(id, &text, through).await;
            (text, result)
        };
        ctx.spawn(fut.into_actor(self).map(move |(text, result), act, ctx| {
            act.projecting = false;
            match result {
                Ok(projection) => {
                    act.saved_text = text;
                    act.projected_seq = act.projected_seq.max(through);
                    for event in projection.events {
                        act.docs.publish(event);
                    }
                    if let Some((text, version)) = projection.adopt {
                        tracing::info!(
                            document = act.id,
                            version,
                            "putting a REST write whose node stopped into the document"
                        );
                        act.set_text(&text, Some(version), ctx);
                    }
                }
                Err(e) if e.permanent => {
                    act.failed_for_good("text", &e);
                    act.saved_text = text;
                    act.projected_seq = act.projected_seq.max(through);
                }
                Err(e) => {
                    tracing::warn!(document = act.id, error = %e, "cannot save the document's text; retrying");
                    act.schedule_projection(ctx, PROJECT_AFTER);
                }
            }
            act.notify_flushed(ctx);
        }));
    }

    /// Makes the document's text `text` ([`write_text`]: a REST write, whose `version` is
    /// marked as in the log once written) as the server's own edit: live editors receive
    /// it, the log and the bus carry it.
    fn set_text(&mut self, text: &str, version: Option<i64>, ctx: &mut Context<Self>) {
        self.idle_since = Instant::now();
        if let Some(v) = version {
            self.rest_version = self.rest_version.max(v);
        }
        let Some(update) = write_text(self.awareness.doc(), text) else {
            // Already the text: only the mark is missing.
            if let Some(version) = version {
                let store = self.store.clone();
                let id = self.id;
                let seq = self.last_seq;
                ctx.spawn(
                    async move { store.text_in_log(id, version, seq).await }
                        .into_actor(self)
                        .map(|result, act, ctx| {
                            if let Err(e) = result {
                                tracing::debug!(document = act.id, error = %e, "cannot mark the REST text written");
                            }
                            act.maybe_unload(ctx);
                        }),
                );
            } else {
                self.maybe_unload(ctx);
            }
            return;
        };
        self.saved_text = storable(text_of(self.awareness.doc()));
        self.size = self.size.saturating_add(update.len());
        self.size_exact = false;
        let relayed: Arc<[u8]> = Message::Sync(SyncMessage::Update(update.clone()))
            .encode_v1()
            .into();
        self.relay(&relayed, None);
        self.pending.push(update);
        if version.is_some() {
            self.pending_text_version = version;
        }
        self.write(ctx);
    }

    /// A document whose log is empty (made over REST, or before live editing) starts as
    /// its text, written by a server client of its own: two nodes seeding it at once make
    /// the same update, which Yjs applies once.
    fn seed(&mut self, text: &str, version: Option<i64>, ctx: &mut Context<Self>) {
        let update = super::text::seed_update(self.id, text);
        if let Ok(decoded) = Update::decode_v1(&update) {
            let _ = self.awareness.doc().transact_mut().apply_update(decoded);
            self.size = self.size.saturating_add(update.len());
            self.pending.push(update);
            self.pending_text_version = version;
            self.write(ctx);
        }
    }

    /// Nothing applied is left to write: updates, text or compaction.
    fn written(&self) -> bool {
        self.pending.is_empty()
            && !self.writing
            && !self.projecting
            && !self.projection_due
            && !self.compacting
    }

    /// Leaves the map of open documents (if still this actor's) and stops.
    fn unload(&mut self, ctx: &mut Context<Self>) {
        let me = ctx.address();
        self.docs.open.remove_if(&self.id, |_, addr| *addr == me);
        ctx.stop();
    }

    fn notify_flushed(&mut self, ctx: &mut Context<Self>) {
        if self.written() {
            for tx in self.flushed.drain(..) {
                let _ = tx.send(());
            }
            self.maybe_unload(ctx);
        }
    }

    /// Reads what other nodes wrote since the load, in case the bus was not yet bringing
    /// it then.
    fn catch_up(&mut self, ctx: &mut Context<Self>) {
        let store = self.store.clone();
        let (id, after) = (self.id, self.loaded_seq);
        let fut = async move { store.load(id, after).await };
        ctx.spawn(fut.into_actor(self).map(|result, act, _| match result {
            Ok(stored) => act.apply_remote(stored.updates),
            Err(e) => tracing::warn!(document = act.id, error = %e, "cannot read document updates"),
        }));
    }

    /// Replaces the log up to the last written and recorded update with one snapshot of
    /// the document.
    fn compact(&mut self, ctx: &mut Context<Self>) {
        if self.compacting {
            return;
        }
        self.since_compact = 0;
        self.compacting = true;
        let snapshot = self
            .awareness
            .doc()
            .transact()
            .encode_state_as_update_v1(&StateVector::default());
        self.size = snapshot.len();
        self.size_exact = true;
        // Everything applied is in the snapshot; only what is written may be replaced (and
        // the store keeps what is not yet recorded).
        let through = self.last_seq;
        let store = self.store.clone();
        let id = self.id;
        let fut = async move { store.compact(id, &snapshot, through).await };
        ctx.spawn(fut.into_actor(self).map(|result, act, ctx| {
            act.compacting = false;
            if let Err(e) = result {
                tracing::warn!(document = act.id, error = %e, "cannot compact document updates");
            }
            act.notify_flushed(ctx);
        }));
    }

    /// The document as loaded: its log applied, then whatever a stopped node left behind
    /// brought up to date (edits not recorded, a REST write not in the log).
    fn loaded(&mut self, stored: StoredDoc, ctx: &mut Context<Self>) {
        let id = self.id;
        {
            let mut txn = self.awareness.doc().transact_mut();
            for bytes in &stored.updates {
                match Update::decode_v1(bytes) {
                    Ok(u) => {
                        if let Err(e) = txn.apply_update(u) {
                            tracing::error!(document = id, error = %e, "stored update not applied");
                        }
                    }
                    Err(e) => {
                        tracing::error!(document = id, error = %e, "stored update unreadable")
                    }
                }
            }
        }
        self.size = stored.updates.iter().map(Vec::len).sum();
        self.size_exact = stored.updates.len() <= 1;
        self.last_seq = stored.last_seq;
        self.loaded_seq = stored.last_seq;
        self.projected_seq = stored.text_seq;
        let text = stored.text.unwrap_or_default();
        self.saved_text = text.clone();
        if stored.updates.is_empty() && !text.is_empty() {
            self.seed(&text, stored.pending, ctx);
        } else if let Some(version) = stored.pending {
            // A REST write whose node stopped before its text reached the log.
            self.set_text(&text, Some(version), ctx);
        }
        if stored.last_seq > stored.text_seq {
            // Edits a stopped node wrote but never recorded: recorded now, not at the next
            // edit.
            Stats::add(&self.stats().yjs_catch_ups, 1);
            self.schedule_projection(ctx, Duration::ZERO);
        }
        if stored.updates.len() > COMPACT_AFTER / 4 {
            self.compact(ctx);
        }
        if self.env.has_bus() {
            ctx.run_later(CATCH_UP, |act, ctx| act.catch_up(ctx));
        }
    }
}

/// How long a document nobody opened (it took a REST write, or caught up after a crash)
/// stays loaded once its work is written: a moment, so that messages already on their way
/// to it (a socket opening it) still find it.
const UNOPENED_GRACE: Duration = Duration::from_secs(1);

/// Counts `n` edits of `user` in `edits`.
fn count_edits(edits: &mut Vec<(i64, u32)>, user: i64, n: u32) {
    match edits.iter_mut().find(|(u, _)| *u == user) {
        Some((_, m)) => *m = m.saturating_add(n),
        None => edits.push((user, n)),
    }
}

/// The text as the database can keep it: PostgreSQL's `text` cannot hold NUL, which a Yjs
/// client can put in a document (REST refuses it on the way in).
fn storable(text: String) -> String {
    if text.contains('\0') {
        text.replace('\0', "\u{FFFD}")
    } else {
        text
    }
}

impl Actor for DocActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.stats().yjs_documents.fetch_add(1, Ordering::Relaxed);
        // Heard before loading: an update another node writes after the load's read comes
        // by the bus.
        self.env.interest(&[doc_channel(self.id)], true);
        // However it was opened, a document without connections is unloaded once idle.
        let every = (self.env.limits.doc_idle / 2).max(UNOPENED_GRACE);
        ctx.run_interval(every, |act, ctx| act.maybe_unload(ctx));
        let store = self.store.clone();
        let id = self.id;
        let fut = async move { store.load(id, 0).await };
        ctx.wait(
            fut.into_actor(self)
                .map(move |result, act, ctx| match result {
                    Ok(stored) => act.loaded(stored, ctx),
                    Err(e) => {
                        // Its sessions find it gone at their next message and close (1013): the
                        // clients reconnect and a new actor loads the document again.
                        tracing::error!(document = id, error = %e, "cannot load document");
                        act.unload(ctx);
                    }
                }),
        );
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        self.stats().yjs_documents.fetch_sub(1, Ordering::Relaxed);
        if !self.conns.is_empty() {
            self.docs.live.fetch_sub(1, Ordering::Relaxed);
        }
        self.env.interest(&[doc_channel(self.id)], false);
        // A reread asked for and not yet done: the next load reads the whole log anyway.
        self.docs.reread.remove(&self.id);
        self.docs
            .remote_waiting
            .remove_if(&self.id, |_, waiting| waiting.load(Ordering::Acquire) == 0);
    }
}

pub(super) struct Open {
    pub(super) conn: Conn,
    pub(super) user: i64,
    pub(super) writable: bool,
    /// When the socket's access was checked: a revocation or role change after it is
    /// applied to the socket as it opens.
    pub(super) authorized_at: Instant,
}

pub(super) enum DocMsg {
    Open(Open),
    In(u64, Vec<Message>),
    /// A frame that is one update message: the update, and the frame to relay as it came.
    Update(u64, Vec<u8>, Arc<[u8]>),
    Leave(u64),
}

impl actix::Message for DocMsg {
    type Result = ();
}

/// What another node's clients did to the document.
enum Remote {
    Updates(Vec<Vec<u8>>, #[allow(dead_code)] RemoteTicket),
    Awareness(AwarenessUpdate, #[allow(dead_code)] RemoteTicket),
    /// Updates from other nodes were shed: read the log for them.
    Reread,
}

impl actix::Message for Remote {
    type Result = ();
}

impl Handler<Remote> for DocActor {
    type Result = ();
    fn handle(&mut self, msg: Remote, ctx: &mut Context<Self>) {
        match msg {
            Remote::Updates(updates, _) => self.apply_remote(updates),
            Remote::Reread => {
                self.docs.reread.remove(&self.id);
                self.catch_up(ctx);
            }
            Remote::Awareness(update, _) => {
                let relayed: Arc<[u8]> = Message::Awareness(update.clone()).encode_v1().into();
                if self.awareness.apply_update(update).is_ok() {
                    self.relay(&relayed, None);
                }
            }
        }
    }
}

impl Handler<DocMsg> for DocActor {
    type Result = ();
    fn handle(&mut self, msg: DocMsg, ctx: &mut Context<Self>) {
        DocActor::handle(self, msg, ctx);
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct RevokeDoc {
    workspace: Option<i64>,
    user: Option<i64>,
    reason: &'static str,
}

impl Handler<RevokeDoc> for DocActor {
    type Result = ();
    fn handle(&mut self, msg: RevokeDoc, ctx: &mut Context<Self>) {
        if msg.workspace.is_some_and(|w| w != self.workspace) {
            return;
        }
        let gone: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| msg.user.is_none_or(|u| u == c.user))
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            self.drop_conn(id, msg.reason);
        }
        if msg.user.is_none() {
            // The document (or its workspace) is gone: nothing of it is left to write.
            self.pending.clear();
            self.pending_editors.clear();
            self.projection_due = false;
            self.unload(ctx);
        }
    }
}

/// A member's role changed: their connections to the document may write, or no longer.
#[derive(Message)]
#[rtype(result = "()")]
struct RoleChanged {
    workspace: i64,
    user: i64,
    writable: bool,
}

impl Handler<RoleChanged> for DocActor {
    type Result = ();
    fn handle(&mut self, msg: RoleChanged, _ctx: &mut Context<Self>) {
        if msg.workspace != self.workspace {
            return;
        }
        for c in self.conns.values_mut() {
            if c.user != msg.user || c.writable == msg.writable {
                continue;
            }
            c.writable = msg.writable;
            if !msg.writable {
                // From now on its updates are refused; the provider hears why at once.
                let refusal: Arc<[u8]> =
                    Message::Auth(Some("read-only: your role no longer allows editing".into()))
                        .encode_v1()
                        .into();
                if c.conn.push_binary(&refusal) {
                    self.env.stats.sent(crate::stats::Out::Yjs, 1);
                }
            }
        }
    }
}

/// A REST write of the document's text, and the version it made.
#[derive(Message)]
#[rtype(result = "()")]
struct SetText(String, i64);

impl Handler<SetText> for DocActor {
    type Result = ();
    fn handle(&mut self, msg: SetText, ctx: &mut Context<Self>) {
        if msg.1 <= self.rest_version {
            return;
        }
        self.set_text(&msg.0, Some(msg.1), ctx);
    }
}

/// Answered once every update applied before it has been written (however much is applied
/// meanwhile: editors typing on do not hold it back).
pub(crate) struct WrittenBarrier(pub tokio::sync::oneshot::Sender<()>);

impl actix::Message for WrittenBarrier {
    type Result = ();
}

impl Handler<WrittenBarrier> for DocActor {
    type Result = ();
    fn handle(&mut self, msg: WrittenBarrier, ctx: &mut Context<Self>) {
        let need = if !self.pending.is_empty() {
            self.batches_started + 1
        } else if self.writing {
            self.batches_started
        } else {
            let _ = msg.0.send(());
            return;
        };
        self.barriers.push((need, msg.0));
        self.write(ctx);
    }
}

/// Answered once every update applied so far has been written.
pub(crate) struct FlushDoc(pub tokio::sync::oneshot::Sender<()>);

impl actix::Message for FlushDoc {
    type Result = ();
}

impl Handler<FlushDoc> for DocActor {
    type Result = ();
    fn handle(&mut self, msg: FlushDoc, ctx: &mut Context<Self>) {
        self.flushed.push(msg.0);
        if self.projection_due && !self.projecting {
            self.project(ctx);
        }
        self.write(ctx);
        self.notify_flushed(ctx);
    }
}

impl Docs {
    /// A REST write of a document's text (which made `version`), made a Yjs change by the
    /// document's actor on this node (started if need be), from where it reaches every
    /// editor. A document nobody has open closes again once the change is written.
    pub(crate) fn set_text(
        self: &Arc<Self>,
        env: &Arc<Env>,
        document: i64,
        workspace: i64,
        text: String,
        version: i64,
    ) {
        if let Some(addr) = self.actor(env, document, workspace) {
            addr.do_send(SetText(text, version));
        }
    }

    /// Opens documents (id, workspace) whose derived state is behind their log (found at
    /// start-up) and waits until they have caught up and written everything (at most
    /// `limit`); each then closes unless someone opened it meanwhile.
    pub(crate) async fn catch_up(
        self: &Arc<Self>,
        env: &Arc<Env>,
        documents: &[(i64, i64)],
        limit: Duration,
    ) {
        let waits: Vec<_> = documents
            .iter()
            .filter_map(|(document, workspace)| {
                let addr = self.actor(env, *document, *workspace)?;
                let (tx, rx) = tokio::sync::oneshot::channel();
                addr.try_send(FlushDoc(tx)).ok().map(|()| rx)
            })
            .collect();
        let all = async {
            for rx in waits {
                let _ = rx.await;
            }
        };
        let _ = actix::clock::timeout(limit, all).await;
    }

    /// Waits (at most `limit`) until what the document's actor on this node applied before
    /// now is in the log (the actor is started, and loads the document, if need be).
    pub(crate) async fn written(
        self: &Arc<Self>,
        env: &Arc<Env>,
        document: i64,
        workspace: i64,
        limit: Duration,
    ) {
        let Some(addr) = self.actor(env, document, workspace) else {
            return;
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        if addr.try_send(WrittenBarrier(tx)).is_ok() {
            let _ = actix::clock::timeout(limit, rx).await;
        }
    }

    /// Waits (at most `limit`) until every open document has written what it applied.
    pub(crate) async fn flush(&self, limit: Duration) {
        let waits: Vec<_> = self
            .open
            .iter()
            .filter_map(|e| {
                let (tx, rx) = tokio::sync::oneshot::channel();
                e.value().try_send(FlushDoc(tx)).ok().map(|()| rx)
            })
            .collect();
        let all = async {
            for rx in waits {
                let _ = rx.await;
            }
        };
        let _ = actix::clock::timeout(limit, all).await;
    }
}
