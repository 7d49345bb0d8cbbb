//! Collaborative documents over the y-websocket protocol.
//!
//! One [`DocActor`] per open document on this node holds the document (a `yrs` doc) and its
//! awareness, applies what editors send, relays it to the document's other connections and
//! appends every update to the store, in small batches, compacting the log into one
//! snapshot now and then. One [`YjsSession`] per socket reads the client's binary frames,
//! checks that they are well-formed y-protocol messages, limits their rate and hands them
//! to the document; what the document sends the client goes through the socket's
//! [`Outbox`](crate::Outbox) like every other frame, so a Yjs client that cannot keep up is
//! disconnected (`slow_consumer`) as a channel client is.
//!
//! A document is loaded from the store (its snapshot and the updates after it) before any
//! client message is applied: the actor's mailbox waits for the load (`ctx.wait`). It is
//! unloaded once its last connection has gone and `Limits::doc_idle` has passed with its
//! updates written.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use dashmap::DashMap;
use stoa_protocol::bus::{doc_channel, Body};
use yrs::sync::protocol::MessageReader;
use yrs::sync::{Awareness, AwarenessUpdate, Message, SyncMessage};
use yrs::updates::decoder::{Decode, DecoderV1};
use yrs::updates::encoder::Encode;
use yrs::{ReadTxn, StateVector, Transact, Update};

use crate::conn::{self, CloseReason, Conn, Outbound, Outbox, OutboxReader, SessionNotice};
use crate::limit::Limiter;
use crate::ports::LogError;
use crate::registry::{Realtime, Shared, SocketPermit};
use crate::session::WireIn;
use crate::Stats;

/// What a document's log holds: its updates in order (a snapshot is one of them), and the
/// position of the last.
#[derive(Debug, Default, Clone)]
pub struct StoredDoc {
    pub updates: Vec<Vec<u8>>,
    pub last_seq: i64,
    /// The document's text as REST serves it (read with the whole log only).
    pub text: Option<String>,
}

/// Where documents' updates are kept.
#[async_trait]
pub trait DocStore: Send + Sync + 'static {
    /// What is stored for a document after position `after` (0: everything), oldest first.
    async fn load(&self, document: i64, after: i64) -> Result<StoredDoc, LogError>;
    /// Appends updates in one transaction; the position of the last.
    async fn append(&self, document: i64, updates: &[Vec<u8>]) -> Result<i64, LogError>;
    /// Keeps the document's text current for REST, search and reports, and records each
    /// editor's edits since the last call (a `document.edited` event each, returned to be
    /// published).
    async fn save_text(
        &self,
        document: i64,
        text: &str,
        editors: &[(i64, u32)],
    ) -> Result<Vec<crate::LiveEvent>, LogError>;
    /// Replaces every update up to `through` with `snapshot` (which holds them all).
    async fn compact(&self, document: i64, snapshot: &[u8], through: i64) -> Result<(), LogError>;
}

/// Updates appended since the last compaction after which the log is compacted.
const COMPACT_AFTER: usize = 256;
/// How long a failed write waits before it is tried again.
const RETRY: Duration = Duration::from_secs(1);
/// How long edits gather before the document's text is saved and its editors' edits are
/// recorded (one `document.edited` event per editor per window).
const PROJECT_AFTER: Duration = Duration::from_secs(2);
/// Client ids at and above this are the server's own (browsers pick 32-bit ones).
const SERVER_CLIENTS: u64 = 1 << 32;

/// The document's text: its `Y.Text` named `content`, or else its `Y.XmlFragment` named
/// `default` (ProseMirror, TipTap) flattened, one line per block.
pub fn text_of(doc: &yrs::Doc) -> String {
    use yrs::GetString;
    let txn = doc.transact();
    if let Some(text) = txn.get_text("content") {
        let s = text.get_string(&txn);
        if !s.is_empty() {
            return s;
        }
    }
    match txn.get_xml_fragment("default") {
        Some(fragment) => blocks_of(&txn, &fragment).join("\n"),
        None => String::new(),
    }
}

/// The text of each top-level block of a fragment (its text nodes, nested ones included).
fn blocks_of<T: yrs::ReadTxn>(txn: &T, fragment: &yrs::XmlFragmentRef) -> Vec<String> {
    use yrs::types::text::Text as _;
    use yrs::{XmlFragment as _, XmlOut};
    let mut blocks = Vec::new();
    for child in fragment.children(txn) {
        let mut block = String::new();
        let mut add = |t: &yrs::XmlTextRef| {
            for d in t.diff(txn, |_| ()) {
                if let yrs::Out::Any(yrs::Any::String(s)) = d.insert {
                    block.push_str(&s);
                }
            }
        };
        match child {
            XmlOut::Text(t) => add(&t),
            XmlOut::Element(e) => {
                for node in e.successors(txn) {
                    if let XmlOut::Text(t) = node {
                        add(&t);
                    }
                }
            }
            XmlOut::Fragment(_) => {}
        }
        blocks.push(block);
    }
    blocks
}

/// Makes the document's text `text` with the smallest change, as the editors keep it: in
/// the `content` text, or — for a document edited as a ProseMirror/TipTap fragment (an
/// empty `content`, blocks in `default`) — in the fragment, one `paragraph` per line,
/// keeping the blocks (and their formatting) that the write leaves as they were. The
/// update, or `None` when the text is already `text`.
pub fn write_text(doc: &yrs::Doc, text: &str) -> Option<Vec<u8>> {
    use yrs::{GetString, Text, XmlElementPrelim, XmlFragment as _, XmlTextPrelim};
    let blocks = {
        let txn = doc.transact();
        let content_empty = txn
            .get_text("content")
            .is_none_or(|t| t.get_string(&txn).is_empty());
        let fragment = txn
            .get_xml_fragment("default")
            .filter(|f| content_empty && f.len(&txn) > 0);
        fragment.map(|f| blocks_of(&txn, &f))
    };
    let Some(old) = blocks else {
        let content = doc.get_or_insert_text("content");
        let mut txn = doc.transact_mut();
        let old = content.get_string(&txn);
        let (start, end, insert) = changed_span(&old, text);
        if start == end && insert.is_empty() {
            return None;
        }
        if end > start {
            content.remove_range(&mut txn, start as u32, (end - start) as u32);
        }
        if !insert.is_empty() {
            content.insert(&mut txn, start as u32, insert);
        }
        return Some(txn.encode_update_v1());
    };
    let new: Vec<&str> = text.split('\n').collect();
    let same = |a: usize, b: usize| old[a] == new[b];
    let mut head = 0;
    while head < old.len() && head < new.len() && same(head, head) {
        head += 1;
    }
    let mut tail = 0;
    while tail < old.len() - head
        && tail < new.len() - head
        && same(old.len() - 1 - tail, new.len() - 1 - tail)
    {
        tail += 1;
    }
    let (removed, added) = (old.len() - head - tail, &new[head..new.len() - tail]);
    if removed == 0 && added.is_empty() {
        return None;
    }
    let fragment = doc.get_or_insert_xml_fragment("default");
    let mut txn = doc.transact_mut();
    if removed > 0 {
        fragment.remove_range(&mut txn, head as u32, removed as u32);
    }
    for (i, line) in added.iter().enumerate() {
        let p = fragment.insert(
            &mut txn,
            (head + i) as u32,
            XmlElementPrelim::empty("paragraph"),
        );
        if !line.is_empty() {
            p.insert(&mut txn, 0, XmlTextPrelim::new(*line));
        }
    }
    Some(txn.encode_update_v1())
}

/// The byte range of `old` that differs from `new`, and what replaces it.
fn changed_span<'a>(old: &str, new: &'a str) -> (usize, usize, &'a str) {
    let prefix = old
        .char_indices()
        .zip(new.chars())
        .find(|((_, a), b)| a != b)
        .map_or(old.len().min(new.len()), |((i, _), _)| i);
    let prefix = (0..=prefix)
        .rev()
        .find(|i| new.is_char_boundary(*i))
        .unwrap_or(0);
    let (old_rest, new_rest) = (&old[prefix..], &new[prefix..]);
    let suffix = old_rest
        .chars()
        .rev()
        .zip(new_rest.chars().rev())
        .take_while(|(a, b)| a == b)
        .map(|(a, _)| a.len_utf8())
        .sum::<usize>();
    (
        prefix,
        prefix + old_rest.len() - suffix,
        &new_rest[..new_rest.len() - suffix],
    )
}

/// When a loaded document reads the store again for updates written by other nodes between
/// its load and the moment the bus began to bring them (subscribing takes a moment).
const CATCH_UP: Duration = Duration::from_secs(1);

/// The documents open on this node.
#[derive(Default)]
pub(crate) struct Docs {
    store: std::sync::OnceLock<Arc<dyn DocStore>>,
    open: DashMap<i64, Addr<DocActor>>,
}

impl Docs {
    pub(crate) fn set_store(&self, store: Arc<dyn DocStore>) {
        let _ = self.store.set(store);
    }

    pub(crate) fn is_open(&self, document: i64) -> bool {
        self.open.contains_key(&document)
    }

    pub(crate) fn open_count(&self) -> usize {
        self.open.len()
    }

    /// Updates another node applied and wrote.
    pub(crate) fn heard_updates(&self, document: i64, updates: Vec<String>) {
        let Some(addr) = self.open.get(&document).map(|a| a.clone()) else {
            return;
        };
        let updates = updates
            .iter()
            .filter_map(|u| BASE64.decode(u).ok())
            .collect();
        addr.do_send(Remote::Updates(updates));
    }

    /// An awareness change from a client of another node.
    pub(crate) fn heard_awareness(&self, document: i64, update: String) {
        let Some(addr) = self.open.get(&document).map(|a| a.clone()) else {
            return;
        };
        if let Some(update) = BASE64
            .decode(update)
            .ok()
            .and_then(|b| AwarenessUpdate::decode_v1(&b).ok())
        {
            addr.do_send(Remote::Awareness(update));
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
}

/// The document's actor, started on this thread if it is not open.
fn doc_actor(shared: &Arc<Shared>, document: i64, workspace: i64) -> Option<Addr<DocActor>> {
    let store = shared.docs.store.get()?.clone();
    let entry = shared
        .docs
        .open
        .entry(document)
        .and_modify(|addr| {
            if !addr.connected() {
                *addr = DocActor::start_on(shared, document, workspace, store.clone());
            }
        })
        .or_insert_with(|| DocActor::start_on(shared, document, workspace, store.clone()));
    Some(entry.value().clone())
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
    shared: Arc<Shared>,
    store: Arc<dyn DocStore>,
    awareness: Awareness,
    conns: HashMap<u64, DocConn>,
    /// Updates not yet written.
    pending: Vec<Vec<u8>>,
    writing: bool,
    since_compact: usize,
    /// The position of the last update written (here or by the last load).
    last_seq: i64,
    /// The position of the last update the load read.
    loaded_seq: i64,
    /// Told when everything applied has been written.
    flushed: Vec<tokio::sync::oneshot::Sender<()>>,
    last_left: Option<Instant>,
    /// Edits per editor since the text was last saved, in the order editors first edited.
    edits: Vec<(i64, u32)>,
    /// The text as last saved (what REST serves).
    saved_text: String,
    /// A save of the text is scheduled, or under way.
    projection_due: bool,
    projecting: bool,
    /// A compaction is under way.
    compacting: bool,
}

impl DocActor {
    fn start_on(
        shared: &Arc<Shared>,
        id: i64,
        workspace: i64,
        store: Arc<dyn DocStore>,
    ) -> Addr<DocActor> {
        let actor = DocActor {
            id,
            workspace,
            shared: shared.clone(),
            store,
            awareness: Awareness::new(yrs::Doc::new()),
            conns: HashMap::new(),
            pending: Vec::new(),
            writing: false,
            since_compact: 0,
            last_seq: 0,
            loaded_seq: 0,
            flushed: Vec::new(),
            last_left: None,
            edits: Vec::new(),
            saved_text: String::new(),
            projection_due: false,
            projecting: false,
            compacting: false,
        };
        let capacity = shared.limits().topic_mailbox;
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
        self.shared.stats()
    }

    fn send_to(&self, conn: &Conn, bytes: &Arc<[u8]>) {
        if conn.push_binary(bytes) {
            self.stats().sent(crate::Out::Yjs, 1);
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

    fn handle(&mut self, msg: DocMsg, ctx: &mut Context<Self>) {
        match msg {
            DocMsg::Open(open) => {
                let c = DocConn {
                    conn: open.conn,
                    user: open.user,
                    writable: open.writable,
                    clients: HashSet::new(),
                };
                self.greet(&c);
                self.last_left = None;
                self.conns.insert(c.conn.id, c);
            }
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
                    let refusal: Arc<[u8]> =
                        Message::Auth(Some("read-only: viewers cannot edit".into()))
                            .encode_v1()
                            .into();
                    self.send_to(&c.conn, &refusal);
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
        let applied = self.awareness.doc().transact_mut().apply_update(decoded);
        if let Err(e) = applied {
            tracing::debug!(document = self.id, error = %e, "update not applied");
            self.drop_conn(conn_id, "malformed_update");
            return;
        }
        Stats::add(&self.stats().yjs_updates, 1);
        if let Some(user) = self.conns.get(&conn_id).map(|c| c.user) {
            self.count_edits(user, 1);
            self.schedule_projection(ctx);
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
        if self.shared.has_bus() {
            let body = Body::YjsAwareness {
                document: self.id,
                update: BASE64.encode(raw),
            };
            self.shared.bus_send(&doc_channel(self.id), body);
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
        if let Some(c) = self.conns.remove(&conn_id) {
            self.forget_clients(c.clients);
        }
        if self.conns.is_empty() {
            self.last_left = Some(Instant::now());
            let idle = self.shared.limits().doc_idle;
            ctx.run_later(idle, |act, ctx| act.maybe_unload(ctx));
        }
    }

    fn drop_conn(&mut self, conn_id: u64, reason: &'static str) {
        if let Some(c) = self.conns.remove(&conn_id) {
            c.conn.notify(SessionNotice::Dropped {
                topic: reason.to_string(),
                join_ref: None,
            });
            self.forget_clients(c.clients);
        }
    }

    fn maybe_unload(&mut self, ctx: &mut Context<Self>) {
        let idle = self.shared.limits().doc_idle;
        let quiet = self.last_left.is_some_and(|t| t.elapsed() >= idle);
        if self.conns.is_empty() && quiet && self.written() {
            self.unload(ctx);
        } else if self.conns.is_empty() {
            ctx.run_later(idle, |act, ctx| act.maybe_unload(ctx));
        }
    }

    /// Writes what is pending, one batch at a time.
    fn write(&mut self, ctx: &mut Context<Self>) {
        if self.writing {
            return;
        }
        if self.pending.is_empty() {
            self.notify_flushed();
            return;
        }
        self.writing = true;
        let batch = std::mem::take(&mut self.pending);
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
            let result = store.append(id, &batch).await;
            (batch, result)
        };
        ctx.spawn(fut.into_actor(self).map(move |(batch, result), act, ctx| {
            act.writing = false;
            match result {
                Ok(seq) => {
                    if let Some(us) = crate::hist::since(started) {
                        act.stats().yjs_persist_latency.observe(us);
                    }
                    act.last_seq = act.last_seq.max(seq);
                    if act.shared.has_bus() {
                        let body = Body::YjsUpdates {
                            document: act.id,
                            updates: batch.iter().map(|u| BASE64.encode(u)).collect(),
                        };
                        act.shared.bus_send(&doc_channel(act.id), body);
                    }
                    act.since_compact += batch.len();
                    Stats::add(&act.stats().yjs_updates_written, count);
                    if act.since_compact >= COMPACT_AFTER {
                        act.compact(ctx);
                    }
                    act.write(ctx);
                }
                Err(e) => {
                    tracing::warn!(document = act.id, error = %e, "cannot write document updates; retrying");
                    let mut later = batch;
                    later.append(&mut act.pending);
                    act.pending = later;
                    ctx.run_later(RETRY, |act, ctx| act.write(ctx));
                }
            }
        }));
    }

    fn schedule_projection(&mut self, ctx: &mut Context<Self>) {
        if !self.projection_due {
            self.projection_due = true;
            ctx.run_later(PROJECT_AFTER, |act, ctx| act.project(ctx));
        }
    }

    /// Saves the text and records the window's edits.
    fn project(&mut self, ctx: &mut Context<Self>) {
        if self.projecting {
            ctx.run_later(PROJECT_AFTER, |act, ctx| act.project(ctx));
            return;
        }
        self.projection_due = false;
        let text = text_of(self.awareness.doc());
        let editors = std::mem::take(&mut self.edits);
        if editors.is_empty() && text == self.saved_text {
            return;
        }
        self.projecting = true;
        let store = self.store.clone();
        let id = self.id;
        let fut = async move {
            let result = store.save_text(id, &text, &editors).await;
            (text, editors, result)
        };
        ctx.spawn(fut.into_actor(self).map(|(text, editors, result), act, ctx| {
            act.projecting = false;
            match result {
                Ok(events) => {
                    act.saved_text = text;
                    let realtime = Realtime {
                        shared: act.shared.clone(),
                    };
                    for event in events {
                        realtime.publish(event);
                    }
                }
                Err(e) => {
                    tracing::warn!(document = act.id, error = %e, "cannot save the document's text; retrying");
                    for (user, n) in editors {
                        act.count_edits(user, n);
                    }
                    act.schedule_projection(ctx);
                }
            }
            act.notify_flushed();
        }));
    }

    /// Makes the document's text `text` ([`write_text`]: a REST write) as the server's own
    /// edit: live editors receive it, the log and the bus carry it.
    fn set_text(&mut self, text: &str, ctx: &mut Context<Self>) {
        let Some(update) = write_text(self.awareness.doc(), text) else {
            return;
        };
        self.saved_text = text_of(self.awareness.doc());
        let relayed: Arc<[u8]> = Message::Sync(SyncMessage::Update(update.clone()))
            .encode_v1()
            .into();
        self.relay(&relayed, None);
        self.pending.push(update);
        self.write(ctx);
    }

    /// A document whose log is empty (made over REST, or before live editing) starts as
    /// its text, written by a server client of its own: two nodes seeding it at once make
    /// the same update, which Yjs applies once.
    fn seed(&mut self, text: &str, ctx: &mut Context<Self>) {
        use yrs::{ReadTxn, Text};
        let seeder = yrs::Doc::with_options(yrs::Options {
            client_id: yrs::ClientID::new(SERVER_CLIENTS + self.id as u64),
            ..yrs::Options::default()
        });
        let content = seeder.get_or_insert_text("content");
        content.insert(&mut seeder.transact_mut(), 0, text);
        let update = seeder
            .transact()
            .encode_state_as_update_v1(&StateVector::default());
        if let Ok(decoded) = Update::decode_v1(&update) {
            let _ = self.awareness.doc().transact_mut().apply_update(decoded);
            self.pending.push(update);
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
        self.shared
            .docs
            .open
            .remove_if(&self.id, |_, addr| *addr == me);
        ctx.stop();
    }

    /// Counts `n` edits of `user` in the current window.
    fn count_edits(&mut self, user: i64, n: u32) {
        match self.edits.iter_mut().find(|(u, _)| *u == user) {
            Some((_, m)) => *m += n,
            None => self.edits.push((user, n)),
        }
    }

    fn notify_flushed(&mut self) {
        if self.written() {
            for tx in self.flushed.drain(..) {
                let _ = tx.send(());
            }
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

    /// Replaces the log up to the last written update with one snapshot of the document.
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
        // Everything applied is in the snapshot; only what is written may be replaced.
        let through = self.last_seq;
        let store = self.store.clone();
        let id = self.id;
        let fut = async move { store.compact(id, &snapshot, through).await };
        ctx.spawn(fut.into_actor(self).map(|result, act, _| {
            act.compacting = false;
            if let Err(e) = result {
                tracing::warn!(document = act.id, error = %e, "cannot compact document updates");
            }
            act.notify_flushed();
        }));
    }
}

impl Actor for DocActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.stats().yjs_documents.fetch_add(1, Ordering::Relaxed);
        // Heard before loading: an update another node writes after the load's read comes
        // by the bus.
        self.shared.interest(&[doc_channel(self.id)], true);
        let store = self.store.clone();
        let id = self.id;
        let fut = async move { store.load(id, 0).await };
        ctx.wait(fut.into_actor(self).map(move |result, act, ctx| match result {
            Ok(stored) => {
                {
                    let mut txn = act.awareness.doc().transact_mut();
                    for bytes in &stored.updates {
                        match Update::decode_v1(bytes) {
                            Ok(u) => {
                                if let Err(e) = txn.apply_update(u) {
                                    tracing::error!(document = id, error = %e, "stored update not applied");
                                }
                            }
                            Err(e) => tracing::error!(document = id, error = %e, "stored update unreadable"),
                        }
                    }
                }
                act.last_seq = stored.last_seq;
                act.loaded_seq = stored.last_seq;
                let text = stored.text.unwrap_or_default();
                if stored.updates.is_empty() && !text.is_empty() {
                    act.seed(&text, ctx);
                }
                act.saved_text = text;
                if stored.updates.len() > COMPACT_AFTER / 4 {
                    act.compact(ctx);
                }
                if act.shared.has_bus() {
                    ctx.run_later(CATCH_UP, |act, ctx| act.catch_up(ctx));
                }
            }
            Err(e) => {
                // Its sessions find it gone at their next message and close (1013): the
                // clients reconnect and a new actor loads the document again.
                tracing::error!(document = id, error = %e, "cannot load document");
                act.unload(ctx);
            }
        }));
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        self.stats().yjs_documents.fetch_sub(1, Ordering::Relaxed);
        self.shared.interest(&[doc_channel(self.id)], false);
    }
}

struct Open {
    conn: Conn,
    user: i64,
    writable: bool,
}

enum DocMsg {
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
    Updates(Vec<Vec<u8>>),
    Awareness(AwarenessUpdate),
}

impl actix::Message for Remote {
    type Result = ();
}

impl Handler<Remote> for DocActor {
    type Result = ();
    fn handle(&mut self, msg: Remote, _ctx: &mut Context<Self>) {
        match msg {
            Remote::Updates(updates) => self.apply_remote(updates),
            Remote::Awareness(update) => {
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
            self.edits.clear();
            self.projection_due = false;
            self.unload(ctx);
        }
    }
}

/// A REST write of the document's text.
#[derive(Message)]
#[rtype(result = "()")]
struct SetText(String);

impl Handler<SetText> for DocActor {
    type Result = ();
    fn handle(&mut self, msg: SetText, ctx: &mut Context<Self>) {
        self.set_text(&msg.0, ctx);
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
        self.notify_flushed();
    }
}

impl Shared {
    /// A REST write of a document's text, made a Yjs change by the document's actor on
    /// this node (started if need be), from where it reaches every editor.
    pub(crate) fn set_doc_text(self: &Arc<Self>, document: i64, workspace: i64, text: String) {
        if let Some(addr) = doc_actor(self, document, workspace) {
            addr.do_send(SetText(text));
        }
    }

    /// Waits (at most `limit`) until every open document has written what it applied.
    pub(crate) async fn flush_docs(&self, limit: Duration) {
        let waits: Vec<_> = self
            .docs
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

/// A Yjs socket's session: checks and forwards the client's messages to its document.
pub struct YjsSession {
    shared: Arc<Shared>,
    id: u64,
    user: i64,
    doc: Addr<DocActor>,
    writable: bool,
    outbox: Arc<Outbox>,
    limiter: Limiter,
    last_seen: Instant,
    /// When the access token the socket was opened with expires (Unix seconds): the socket
    /// is closed then with 1008 `token_expired` (y-websocket has no message to renew it; a
    /// client reconnects with a fresh token in its URL).
    expires_at: i64,
    closing: bool,
    _permit: SocketPermit,
}

impl YjsSession {
    /// Starts the session of an accepted Yjs socket on `document` (in `workspace`);
    /// `writable` is false for viewers; `expires_at` is the token's expiry (Unix seconds).
    /// `None` when no document store is configured.
    #[allow(clippy::too_many_arguments)]
    pub fn start<S>(
        realtime: &Realtime,
        permit: SocketPermit,
        document: i64,
        workspace: i64,
        writable: bool,
        expires_at: i64,
        incoming: S,
    ) -> Option<OutboxReader>
    where
        S: futures_core::Stream<Item = WireIn> + 'static,
    {
        let shared = realtime.shared.clone();
        let doc = doc_actor(&shared, document, workspace)?;
        let limits = shared.limits();
        let (outbox, reader) = conn::channel(limits.outbound_queue, limits.outbound_queue_bytes);
        // Editors send an update per keystroke and an awareness change per cursor move:
        // a wider allowance than a channel client's.
        let limiter = Limiter::new(
            limits.messages_per_sec.saturating_mul(4),
            limits.message_burst.saturating_mul(4),
        );
        let id = shared.env.next_id();
        let user = permit.user();
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
                last_seen: Instant::now(),
                expires_at,
                closing: false,
                _permit: permit,
            }
        });
        Some(reader)
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
            .insert(self.id, ctx.address().recipient());
        self.doc.do_send(DocMsg::Open(Open {
            conn,
            user: self.user,
            writable: self.writable,
        }));
        let timeout = self.shared.limits().heartbeat_timeout;
        ctx.run_interval(timeout / 4, move |act, ctx| {
            if act.last_seen.elapsed() > timeout {
                act.close(1000, "heartbeat_timeout", false, ctx);
            }
        });
        let left_ms = self
            .expires_at
            .saturating_mul(1000)
            .saturating_sub(crate::now_ms());
        let left = Duration::from_millis(u64::try_from(left_ms).unwrap_or(0));
        ctx.run_later(left, |act, ctx| {
            tracing::debug!(session = act.id, "closing a Yjs socket whose token expired");
            act.close(1008, "token_expired", false, ctx);
        });
        if self.shared.shutting_down() {
            ctx.address().do_send(SessionNotice::GoAway);
        }
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
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
}

impl StreamHandler<WireIn> for YjsSession {
    fn handle(&mut self, item: WireIn, ctx: &mut Context<Self>) {
        self.last_seen = Instant::now();
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
                    "unavailable" => "unavailable",
                    _ => "revoked",
                };
                let code = if reason == "unavailable" { 1011 } else { 1008 };
                self.close(code, reason, false, ctx);
            }
            SessionNotice::GoAway => self.close(1001, "going_away", false, ctx),
            SessionNotice::Crash => panic!("injected session fault"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use yrs::{Text, XmlElementPrelim, XmlFragment, XmlTextPrelim};

    #[test]
    fn the_text_is_the_content_text_or_the_fragment_in_lines() {
        let doc = yrs::Doc::new();
        let fragment = doc.get_or_insert_xml_fragment("default");
        {
            let mut txn = doc.transact_mut();
            for (i, line) in ["First paragraph", "Second one"].into_iter().enumerate() {
                let p = fragment.insert(&mut txn, i as u32, XmlElementPrelim::empty("paragraph"));
                p.insert(&mut txn, 0, XmlTextPrelim::new(line));
            }
        }
        // A client's update, applied to a fresh doc, as the server gets it.
        let update = doc
            .transact()
            .encode_state_as_update_v1(&StateVector::default());
        let server = yrs::Doc::new();
        server
            .transact_mut()
            .apply_update(Update::decode_v1(&update).unwrap())
            .unwrap();
        assert_eq!(text_of(&server), "First paragraph\nSecond one");
        let content = server.get_or_insert_text("content");
        content.insert(&mut server.transact_mut(), 0, "plain");
        assert_eq!(text_of(&server), "plain");
    }

    #[test]
    fn a_rest_write_to_a_fragment_document_edits_its_blocks() {
        let doc = yrs::Doc::new();
        let fragment = doc.get_or_insert_xml_fragment("default");
        {
            let mut txn = doc.transact_mut();
            for (i, line) in ["Title", "keep me", "old", "last"].into_iter().enumerate() {
                let p = fragment.insert(&mut txn, i as u32, XmlElementPrelim::empty("heading"));
                p.insert(&mut txn, 0, XmlTextPrelim::new(line));
            }
        }
        let before = doc.transact().state_vector();
        let replica = yrs::Doc::new();
        let all = doc
            .transact()
            .encode_state_as_update_v1(&StateVector::default());
        replica
            .transact_mut()
            .apply_update(Update::decode_v1(&all).unwrap())
            .unwrap();

        let update = write_text(&doc, "Title\nkeep me\nnew one\n\nlast").expect("a change");
        assert_eq!(text_of(&doc), "Title\nkeep me\nnew one\n\nlast");
        // The text went into the fragment, not into a `content` the editor does not show.
        let txn = doc.transact();
        assert!(txn.get_text("content").is_none_or(|t| t.len(&txn) == 0));
        // Untouched blocks are the same nodes (their element name kept); new ones are
        // paragraphs.
        let names: Vec<String> = fragment
            .children(&txn)
            .map(|c| match c {
                yrs::XmlOut::Element(e) => e.tag().to_string(),
                _ => "text".into(),
            })
            .collect();
        assert_eq!(
            names,
            ["heading", "heading", "paragraph", "paragraph", "heading"]
        );
        drop(txn);
        // Another editor applying the update sees the same.
        replica
            .transact_mut()
            .apply_update(Update::decode_v1(&update).unwrap())
            .unwrap();
        assert_eq!(text_of(&replica), text_of(&doc));
        assert!(doc.transact().state_vector() != before);
        assert_eq!(write_text(&doc, "Title\nkeep me\nnew one\n\nlast"), None);
        // A `content` document is still written in its text.
        let plain = yrs::Doc::new();
        assert!(write_text(&plain, "hello").is_some());
        assert_eq!(text_of(&plain), "hello");
    }

    #[test]
    fn a_fragment_made_by_the_js_client_is_read_as_lines() {
        use base64::Engine;
        // `Y.XmlFragment("default")` with two paragraphs, as yjs 13.6 encodes it.
        let update = BASE64
            .decode("AQb5kKvxCQAHAQdkZWZhdWx0AwlwYXJhZ3JhcGgHAPmQq/EJAAYEAPmQq/EJAQ9GaXJzdCBwYXJhZ3JhcGiH+ZCr8QkAAwlwYXJhZ3JhcGgHAPmQq/EJEQYEAPmQq/EJEgpTZWNvbmQgb25lAA==")
            .unwrap();
        let server = yrs::Doc::new();
        server
            .transact_mut()
            .apply_update(Update::decode_v1(&update).unwrap())
            .unwrap();
        assert_eq!(text_of(&server), "First paragraph\nSecond one");
    }

    #[test]
    fn the_changed_span_is_the_smallest_one() {
        assert_eq!(
            changed_span("hello world", "hello there world"),
            (6, 6, "there ")
        );
        assert_eq!(changed_span("abc", "abc"), (3, 3, ""));
        assert_eq!(changed_span("abc", ""), (0, 3, ""));
        assert_eq!(changed_span("", "new"), (0, 0, "new"));
        assert_eq!(changed_span("aXb", "aYb"), (1, 2, "Y"));
        // Characters of several bytes are never cut.
        assert_eq!(changed_span("héllo", "hallo"), (1, 3, "a"));
        assert_eq!(changed_span("ab", "aéb"), (1, 1, "é"));
    }
}
