#![allow(dead_code)] // Shared by several test binaries; each uses a part of it.

//! A session driven without a network: the test feeds its socket's read side and reads
//! what the session queues for the client, against an authoriser the test can hold shut.

pub mod conformance;

use std::collections::HashMap;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value};
use stoa_actors::outbox::{Outbound, OutboxReader, Take};
use stoa_actors::ports::{Authorizer, Denied, EventLog, Grant, Identity, LiveEvent, LogError};
use stoa_actors::{
    DocError, DocStore, Limits, Projection, Realtime, SessionActor, StoredDoc, WireIn,
};
use stoa_protocol::Topic;
use tokio::sync::{mpsc, oneshot};

/// Lets authorisations through, except one the test holds at the gate.
#[derive(Default)]
pub struct Gate {
    pub entered: Mutex<Option<oneshot::Sender<()>>>,
    pub open: Mutex<Option<oneshot::Receiver<()>>>,
}

#[async_trait]
impl Authorizer for Gate {
    async fn authorize(&self, _user: i64, _topic: Topic) -> Result<Grant, Denied> {
        let entered = self.entered.lock().unwrap().take();
        let open = self.open.lock().unwrap().take();
        if let Some(tx) = entered {
            let _ = tx.send(());
        }
        if let Some(rx) = open {
            let _ = rx.await;
        }
        Ok(Grant {
            workspace_id: Some(1),
            info: Map::new(),
        })
    }

    async fn verify_token(&self, _token: &str) -> Result<Identity, Denied> {
        Err(Denied::InvalidToken)
    }
}

pub struct EmptyLog;

#[async_trait]
impl EventLog for EmptyLog {
    async fn latest_offset(&self, _workspace: i64) -> Result<i64, LogError> {
        Ok(0)
    }

    async fn events_after(&self, _: i64, _: i64, _: u32) -> Result<Vec<LiveEvent>, LogError> {
        Ok(Vec::new())
    }
}

/// The socket's read side, fed by the test.
pub struct Wire(pub mpsc::UnboundedReceiver<WireIn>);

impl futures_core::Stream for Wire {
    type Item = WireIn;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<WireIn>> {
        self.0.poll_recv(cx)
    }
}

/// The socket's write side, read by the test.
pub struct Client {
    pub reader: OutboxReader,
    pub frames: VecDeque<Outbound>,
}

impl Client {
    pub async fn next(&mut self) -> Value {
        loop {
            if let Some(item) = self.frames.pop_front() {
                let text = match item {
                    Outbound::Text(t) => t,
                    Outbound::Push { head, tail, .. } => format!("{head}{tail}"),
                    Outbound::Pong(_) | Outbound::Binary(_) => continue,
                };
                return serde_json::from_str(&text).expect("JSON frame");
            }
            let take =
                std::future::poll_fn(|cx| self.reader.poll_take(cx, &mut self.frames, usize::MAX));
            let taken = actix::clock::timeout(Duration::from_secs(10), take)
                .await
                .expect("a frame within 10 s");
            assert!(matches!(taken, Take::Frames { .. }), "socket closed");
        }
    }
}

impl Gate {
    /// Holds the next authorisation: the first receiver fires when it has begun, the
    /// sender lets it finish.
    pub fn hold_next(&self) -> (oneshot::Receiver<()>, oneshot::Sender<()>) {
        let (entered_tx, entered) = oneshot::channel();
        let (open, open_rx) = oneshot::channel();
        *self.entered.lock().unwrap() = Some(entered_tx);
        *self.open.lock().unwrap() = Some(open_rx);
        (entered, open)
    }
}

/// A running session of user 7 and the test's two ends of its socket.
pub struct Harness {
    pub rt: Realtime,
    pub gate: Arc<Gate>,
    pub wire: mpsc::UnboundedSender<WireIn>,
    pub client: Client,
}

impl Harness {
    pub fn start(limits: Limits) -> Harness {
        let gate = Arc::new(Gate::default());
        let rt = Realtime::new(gate.clone(), Arc::new(EmptyLog), limits);
        Self::start_on(rt, gate)
    }

    /// Another session of user 7 on the same node.
    pub fn start_on(rt: Realtime, gate: Arc<Gate>) -> Harness {
        let (wire, incoming) = mpsc::unbounded_channel();
        let permit = rt.admit(7).expect("admitted");
        let (_session, reader) = SessionActor::start(&rt, permit, i64::MAX, Wire(incoming));
        Harness {
            rt,
            gate,
            wire,
            client: Client {
                reader,
                frames: VecDeque::new(),
            },
        }
    }

    pub fn send(&self, frame: Value) {
        self.wire.send(WireIn::Text(frame.to_string())).unwrap();
    }
}

impl Client {
    /// The next frame that is not a presence push.
    pub async fn next_non_presence(&mut self) -> Value {
        loop {
            let v = self.next().await;
            if v[3] != "presence_state" && v[3] != "presence_diff" {
                return v;
            }
        }
    }

    /// Frames until `done` holds for what was read so far, then whatever else arrives
    /// without a pause of 100 ms (a duplicate would come right behind).
    pub async fn until(&mut self, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let mut out = Vec::new();
        while !done(&out) {
            out.push(self.next().await);
        }
        out.extend(self.drain(Duration::from_millis(100)).await);
        out
    }

    /// Frames until nothing more arrives within `quiet`.
    pub async fn drain(&mut self, quiet: Duration) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            match actix::clock::timeout(quiet, self.next()).await {
                Ok(v) => out.push(v),
                Err(_) => return out,
            }
        }
    }
}

/// A node of a cluster in this process: joined to `hub`, with `limits`, every join decided
/// by `gate`.
pub fn node_on(
    hub: &Arc<stoa_actors::LocalHub>,
    id: &str,
    limits: Limits,
    gate: &Arc<Gate>,
    tune: impl FnOnce(&mut stoa_actors::Cluster),
) -> Realtime {
    let mut cluster = stoa_actors::Cluster {
        node_id: id.into(),
        ..stoa_actors::Cluster::default()
    };
    tune(&mut cluster);
    let rt = Realtime::in_cluster(gate.clone(), Arc::new(EmptyLog), limits, cluster);
    rt.connect_bus(Arc::new(hub.endpoint(rt.inbox())));
    rt
}

/// Documents' update logs in memory, shared by every node given them, as the database is.
#[derive(Default)]
pub struct MemDocs(Mutex<HashMap<i64, Vec<Vec<u8>>>>);

#[async_trait]
impl DocStore for MemDocs {
    async fn load(&self, document: i64, after: i64) -> Result<StoredDoc, DocError> {
        let docs = self.0.lock().unwrap();
        let log = docs.get(&document).cloned().unwrap_or_default();
        let from = usize::try_from(after).unwrap_or(0).min(log.len());
        Ok(StoredDoc {
            last_seq: log.len() as i64,
            updates: log[from..].to_vec(),
            ..StoredDoc::default()
        })
    }
    async fn append(
        &self,
        document: i64,
        updates: &[Vec<u8>],
        _: &[(i64, u32)],
    ) -> Result<i64, DocError> {
        let mut docs = self.0.lock().unwrap();
        let log = docs.entry(document).or_default();
        log.extend(updates.iter().cloned());
        Ok(log.len() as i64)
    }
    async fn save_text(&self, _: i64, _: &str, _: i64) -> Result<Projection, DocError> {
        Ok(Projection::default())
    }
    async fn text_in_log(&self, _: i64, _: i64, _: i64) -> Result<(), DocError> {
        Ok(())
    }
    async fn compact(&self, _: i64, _: &[u8], _: i64) -> Result<(), DocError> {
        Ok(())
    }
}
