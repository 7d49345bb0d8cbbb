//! Phoenix's LongPoll transport: the same channel sessions as `/socket/websocket`, for
//! clients whose network refuses WebSocket upgrades.
//!
//! A LongPoll session is an ordinary [`SessionActor`]: every limit, revocation, presence
//! and token rule of a socket applies to it unchanged. Only its two ends differ:
//!
//! - frames in arrive as the lines of `POST /socket/longpoll` (newline-delimited, at most
//!   [`MAX_BATCH`] per request, each line at most `realtime.max_frame_bytes`), and go to the
//!   session in order through a bounded queue (a sender waits when it is full);
//! - frames out wait in the session's outbox (bounded as a socket's is; a client that stops
//!   polling is a slow consumer) until a `GET /socket/longpoll` takes them, or answers
//!   `204` after [`Settings::window`] with nothing to say.
//!
//! Each answer's session token (`lp1.{node}.{session}.{seq}`) names the node that holds the
//! session, the session (128 random bits: the token is the capability, as a socket's
//! connection is), and the last batch handed out. A poll that still carries the batch
//! before gets that batch again: an answer lost on the way (a proxy's timeout, a dropped
//! connection) loses no frame. A newer poll ends an older one's wait with `204`.
//!
//! A session nobody polls for [`Settings::idle`] ends (its presences leave), as a socket's
//! does when its connection drops.
//!
//! In a cluster a request may land on any node, whatever node holds its session: a node
//! that does not hold it relays the request over the bus to the node the token names
//! ([`Realtime::relay`], a channel only that node hears) and answers with what comes back.
//! A forwarded poll that gets no answer in time (the bus lost it) answers `204` with the
//! token it came with, so the next poll gets the lost batch again; a forwarded send
//! answers `500`, on which the client starts over. A token naming a node that is not
//! alive is a session that is gone (`410`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use serde_json::{json, Value};
use stoa_actors::outbox::{Outbound, OutboxReader, Take};
use stoa_actors::{SessionActor, SocketPermit, WireIn};
use tokio::sync::{mpsc, oneshot, Mutex, Notify};

use crate::realtime::Realtime;

/// Lines one `POST` may carry (phoenix.js sends at most 100 at a time).
pub const MAX_BATCH: usize = 100;
/// Frames in a session's input queue before a `POST` waits.
const INPUT_QUEUE: usize = 256;
/// Bytes of frames one poll's answer carries at most (the rest wait for the next poll).
const MAX_ANSWER_BYTES: usize = 1 << 20;
/// What a session token starts with (no access token does).
pub const TOKEN_PREFIX: &str = "lp1.";

#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// How long a poll waits for something to say before answering `204`.
    pub window: Duration,
    /// A session with no poll for this long ends.
    pub idle: Duration,
    /// How long a request forwarded to a node this one has not heard of waits before its
    /// session counts as gone: a node that just started hears every live node within a
    /// heartbeat (`cluster.heartbeat_ms`; this is twice that).
    pub unknown_node_grace: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            window: Duration::from_secs(10),
            idle: Duration::from_secs(15),
            unknown_node_grace: Duration::from_secs(4),
        }
    }
}

/// A request forwarded to another node, waiting for its answer.
struct Pending {
    node: String,
    /// Whether that node was alive (heard from) when the request left.
    known: bool,
    sent: std::time::Instant,
    answer: oneshot::Sender<Answer>,
}

/// What a poll or a send comes to.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// Frames for the client, and the token to poll with next.
    Messages {
        token: String,
        messages: Vec<String>,
    },
    /// Nothing within the window (or a newer poll took over); poll again with `token`.
    Nothing { token: String },
    /// The frames were queued for the session, in order.
    Sent,
    /// No such session (any more): the client starts a new one.
    Gone,
    /// The node holding the session did not answer a forwarded send in time.
    Failed,
}

/// How long a node waits for the answer to a request it forwarded, beyond the window.
const FORWARD_GRACE: Duration = Duration::from_secs(5);

impl Answer {
    fn to_relay(&self, req: u64) -> Value {
        let mut v = match self {
            Answer::Messages { token, messages } => {
                json!({"status": 200, "token": token, "messages": messages})
            }
            Answer::Nothing { token } => json!({"status": 204, "token": token}),
            Answer::Sent => json!({"status": 200}),
            Answer::Gone => json!({"status": 410}),
            Answer::Failed => json!({"status": 500}),
        };
        v["lp"] = json!("answer");
        v["req"] = json!(req);
        v
    }

    fn from_relay(v: &Value) -> Answer {
        let token = v["token"].as_str().map(str::to_string);
        match (v["status"].as_u64(), token) {
            (Some(200), Some(token)) => Answer::Messages {
                token,
                messages: v["messages"]
                    .as_array()
                    .map(|m| {
                        m.iter()
                            .filter_map(|s| s.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default(),
            },
            (Some(200), None) => Answer::Sent,
            (Some(204), Some(token)) => Answer::Nothing { token },
            (Some(410), _) => Answer::Gone,
            _ => Answer::Failed,
        }
    }
}

/// The parts of a session token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionToken {
    pub node: String,
    pub session: String,
    pub seq: u64,
}

impl SessionToken {
    pub fn parse(token: &str) -> Option<SessionToken> {
        let rest = token.strip_prefix(TOKEN_PREFIX)?;
        let mut parts = rest.split('.');
        let node = String::from_utf8(hex_decode(parts.next()?)?).ok()?;
        let session = parts.next()?;
        let seq = parts.next()?.parse().ok()?;
        if parts.next().is_some()
            || session.len() != 32
            || !session.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return None;
        }
        Some(SessionToken {
            node,
            session: session.to_string(),
            seq,
        })
    }

    pub fn encode(&self) -> String {
        format!(
            "{TOKEN_PREFIX}{}.{}.{}",
            hex_encode(self.node.as_bytes()),
            self.session,
            self.seq
        )
    }
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.len() > 256 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

struct PollState {
    /// The last batch handed out, and its number.
    seq: u64,
    unacked: Option<Vec<String>>,
}

struct Session {
    input: mpsc::Sender<WireIn>,
    reader: OutboxReader,
    /// One poll at a time takes frames.
    state: Mutex<PollState>,
    /// Which poll is the newest; an older one stops waiting when it changes.
    newest: AtomicU64,
    newer: Notify,
    /// When a poll or a send last came (ms since the table's start).
    seen_ms: AtomicU64,
    polling: AtomicBool,
}

/// This node's LongPoll sessions.
pub struct LongPolls {
    node: String,
    settings: Settings,
    sessions: DashMap<String, Arc<Session>>,
    started: std::time::Instant,
    gauge: prometheus::IntGauge,
    /// The node's cluster side, once attached: who is alive, and the bus to relay over.
    realtime: std::sync::OnceLock<Realtime>,
    /// Requests forwarded to other nodes, waiting for their answers.
    pending: DashMap<u64, Pending>,
    next_request: AtomicU64,
}

impl LongPolls {
    pub fn new(node: &str, settings: Settings, gauge: prometheus::IntGauge) -> Arc<LongPolls> {
        Arc::new(LongPolls {
            node: node.to_string(),
            settings,
            sessions: DashMap::new(),
            started: std::time::Instant::now(),
            gauge,
            realtime: std::sync::OnceLock::new(),
            pending: DashMap::new(),
            // Random: an answer to a request made before this node restarted (still fresh
            // on the bus) cannot match one made after.
            next_request: AtomicU64::new(rand::random::<u64>() >> 1),
        })
    }

    /// Serves requests other nodes forward here, and forwards those for sessions held
    /// elsewhere, through `realtime`'s bus.
    pub fn attach(self: &Arc<Self>, realtime: &Realtime) {
        if self.realtime.set(realtime.clone()).is_err() {
            return;
        }
        let polls = Arc::downgrade(self);
        realtime.on_relay(move |from, payload| {
            let Some(polls) = polls.upgrade() else { return };
            let req = payload["req"].as_u64().unwrap_or(0);
            match payload["lp"].as_str() {
                Some("answer") => {
                    // Only from the node the request went to.
                    if let Some((_, waiting)) = polls.pending.remove_if(&req, |_, p| p.node == from)
                    {
                        let _ = waiting.answer.send(Answer::from_relay(&payload));
                    }
                }
                Some(kind @ ("poll" | "send")) => {
                    let token = SessionToken {
                        node: polls.node.clone(),
                        session: payload["session"].as_str().unwrap_or("").to_string(),
                        seq: payload["seq"].as_u64().unwrap_or(0),
                    };
                    let send = kind == "send";
                    tokio::spawn(async move {
                        let answer = if send {
                            let body = payload["lines"].as_str().unwrap_or("").as_bytes();
                            match lines(body, polls.max_frame()) {
                                Ok(frames) => polls.send_here(&token, frames).await,
                                Err(_) => Answer::Failed,
                            }
                        } else {
                            polls.poll_here(&token).await
                        };
                        if let Some(realtime) = polls.realtime.get() {
                            realtime.relay(&from, answer.to_relay(req));
                        }
                    });
                }
                _ => {}
            }
        });
    }

    fn max_frame(&self) -> usize {
        self.realtime
            .get()
            .map_or(64 * 1024, |r| r.limits().max_frame_bytes)
    }

    /// Whether `node` is this one.
    fn here(&self, token: &SessionToken) -> bool {
        token.node == self.node
    }

    /// Relays a request for a session held by another node, and waits for its answer;
    /// `None` when none came in time. A node that leaves the cluster meanwhile, or one
    /// never heard of within [`Settings::unknown_node_grace`], has no sessions: `Gone`
    /// (see [`LongPolls::reap`]).
    async fn forward(&self, token: &SessionToken, mut request: Value) -> Option<Answer> {
        let realtime = self.realtime.get()?;
        if !realtime.has_bus() {
            // A node on its own: no other node holds anything.
            return Some(Answer::Gone);
        }
        let known = realtime.nodes().iter().any(|n| n.id == token.node);
        let req = self.next_request.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.insert(
            req,
            Pending {
                node: token.node.clone(),
                known,
                sent: std::time::Instant::now(),
                answer: tx,
            },
        );
        request["req"] = json!(req);
        request["session"] = json!(token.session);
        request["seq"] = json!(token.seq);
        realtime.relay(&token.node, request);
        let answer = tokio::time::timeout(self.settings.window + FORWARD_GRACE, rx).await;
        self.pending.remove(&req);
        answer.ok().and_then(Result::ok)
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn settings(&self) -> Settings {
        self.settings
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Starts a session for an admitted client; the token it polls with.
    pub fn open(&self, realtime: &Realtime, permit: SocketPermit, expires_at: i64) -> String {
        let (input, rx) = mpsc::channel(INPUT_QUEUE);
        let incoming = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|frame| (frame, rx))
        });
        let (_, reader) = SessionActor::start(realtime, permit, expires_at, incoming);
        let id = {
            use rand::RngCore;
            let mut bytes = [0u8; 16];
            rand::thread_rng().fill_bytes(&mut bytes);
            hex_encode(&bytes)
        };
        let session = Arc::new(Session {
            input,
            reader,
            state: Mutex::new(PollState {
                seq: 0,
                unacked: None,
            }),
            newest: AtomicU64::new(0),
            newer: Notify::new(),
            seen_ms: AtomicU64::new(self.now_ms()),
            polling: AtomicBool::new(false),
        });
        self.sessions.insert(id.clone(), session);
        self.gauge.set(self.sessions.len() as i64);
        SessionToken {
            node: self.node.clone(),
            session: id,
            seq: 0,
        }
        .encode()
    }

    fn get(&self, token: &SessionToken) -> Option<Arc<Session>> {
        let session = self.sessions.get(&token.session)?.clone();
        session.seen_ms.store(self.now_ms(), Ordering::Relaxed);
        Some(session)
    }

    fn remove(&self, id: &str) {
        if self.sessions.remove(id).is_some() {
            self.gauge.set(self.sessions.len() as i64);
        }
    }

    /// A `GET`, on whichever node holds the session.
    pub async fn poll(&self, token: &SessionToken) -> Answer {
        if self.here(token) {
            return self.poll_here(token).await;
        }
        match self.forward(token, json!({"lp": "poll"})).await {
            Some(answer) => answer,
            // Lost on the way: the same token again brings the same batch.
            None if self.realtime.get().is_some() => Answer::Nothing {
                token: token.encode(),
            },
            None => Answer::Gone,
        }
    }

    /// A `POST`, on whichever node holds the session (`body` as it came).
    pub async fn send(&self, token: &SessionToken, body: &[u8]) -> Answer {
        if self.here(token) {
            return match lines(body, self.max_frame()) {
                Ok(frames) => self.send_here(token, frames).await,
                Err(_) => Answer::Failed,
            };
        }
        let Ok(text) = std::str::from_utf8(body) else {
            return Answer::Failed;
        };
        match self
            .forward(token, json!({"lp": "send", "lines": text}))
            .await
        {
            Some(answer) => answer,
            None if self.realtime.get().is_some() => Answer::Failed,
            None => Answer::Gone,
        }
    }

    /// A `GET` for a session of this node: frames for the client, waiting up to the
    /// window for some.
    async fn poll_here(&self, token: &SessionToken) -> Answer {
        let Some(session) = self.get(token) else {
            return Answer::Gone;
        };
        // A poll is the client's sign of life, as a pong is a socket's.
        if session.input.try_send(WireIn::Pong).is_err() && session.input.is_closed() {
            self.remove(&token.session);
            return Answer::Gone;
        }
        let me = session.newest.fetch_add(1, Ordering::AcqRel) + 1;
        session.newer.notify_waiters();
        let mut state = session.state.lock().await;
        if session.newest.load(Ordering::Acquire) != me {
            // An even newer poll came while this one waited for the lock. The client's own
            // `seq` goes back: a batch owed to it is still owed (this poll acknowledged
            // nothing).
            return Answer::Nothing {
                token: self.token(token, token.seq),
            };
        }
        if let Some(batch) = &state.unacked {
            if token.seq + 1 == state.seq {
                // The client never got the last answer: it comes again.
                return Answer::Messages {
                    token: self.token(token, state.seq),
                    messages: batch.clone(),
                };
            }
            state.unacked = None;
        }
        // Cleared however the wait ends, also when the request is dropped midway (its
        // client went away): a session is not kept alive by a poll nobody makes.
        struct Polling<'a>(&'a LongPolls, &'a Session);
        impl Drop for Polling<'_> {
            fn drop(&mut self) {
                self.1.polling.store(false, Ordering::Relaxed);
                self.1.seen_ms.store(self.0.now_ms(), Ordering::Relaxed);
            }
        }
        session.polling.store(true, Ordering::Relaxed);
        let _polling = Polling(self, &session);
        self.wait(&session, me, &mut state, token).await
    }

    async fn wait(
        &self,
        session: &Session,
        me: u64,
        state: &mut PollState,
        token: &SessionToken,
    ) -> Answer {
        let mut frames = VecDeque::new();
        let taken =
            std::future::poll_fn(|cx| session.reader.poll_take(cx, &mut frames, MAX_ANSWER_BYTES));
        let newer = async {
            loop {
                let notified = session.newer.notified();
                if session.newest.load(Ordering::Acquire) != me {
                    return;
                }
                notified.await;
            }
        };
        let outcome = tokio::select! {
            taken = taken => Some(taken),
            () = newer => None,
            () = tokio::time::sleep(self.settings.window) => None,
        };
        match outcome {
            Some(Take::Frames { .. }) => {
                let messages: Vec<String> = frames.into_iter().filter_map(text).collect();
                if messages.is_empty() {
                    return Answer::Nothing {
                        token: self.token(token, state.seq),
                    };
                }
                state.seq += 1;
                state.unacked = Some(messages.clone());
                Answer::Messages {
                    token: self.token(token, state.seq),
                    messages,
                }
            }
            Some(Take::Close(reason)) => {
                tracing::debug!(
                    code = reason.code,
                    reason = reason.reason,
                    "longpoll session ended"
                );
                self.remove(&token.session);
                Answer::Gone
            }
            None => Answer::Nothing {
                token: self.token(token, state.seq),
            },
        }
    }

    fn token(&self, token: &SessionToken, seq: u64) -> String {
        SessionToken {
            node: self.node.clone(),
            session: token.session.clone(),
            seq,
        }
        .encode()
    }

    /// A `POST` for a session of this node: the lines, in order, as frames from the client.
    async fn send_here(&self, token: &SessionToken, frames: Vec<WireIn>) -> Answer {
        let Some(session) = self.get(token) else {
            return Answer::Gone;
        };
        for frame in frames {
            if session.input.send(frame).await.is_err() {
                self.remove(&token.session);
                return Answer::Gone;
            }
        }
        Answer::Sent
    }

    /// Ends the sessions nobody has polled for [`Settings::idle`] (their actors stop when
    /// their input closes, and their presences leave).
    pub fn reap(&self) -> usize {
        let now = self.now_ms();
        let idle = u64::try_from(self.settings.idle.as_millis()).unwrap_or(u64::MAX);
        let before = self.sessions.len();
        self.sessions.retain(|_, s| {
            let quiet = now.saturating_sub(s.seen_ms.load(Ordering::Relaxed));
            !s.input.is_closed() && (s.polling.load(Ordering::Relaxed) || quiet <= idle)
        });
        let after = self.sessions.len();
        self.gauge.set(after as i64);
        // Requests forwarded to a node that has since left the cluster, or that was never
        // heard of, get no answer: their sessions are gone with it.
        if let Some(realtime) = self.realtime.get() {
            if !self.pending.is_empty() {
                let alive: std::collections::HashSet<String> =
                    realtime.nodes().into_iter().map(|n| n.id).collect();
                let grace = self.settings.unknown_node_grace;
                let dead: Vec<u64> = self
                    .pending
                    .iter()
                    .filter(|p| !alive.contains(&p.node) && (p.known || p.sent.elapsed() > grace))
                    .map(|p| *p.key())
                    .collect();
                for req in dead {
                    if let Some((_, waiting)) = self.pending.remove(&req) {
                        let _ = waiting.answer.send(Answer::Gone);
                    }
                }
            }
        }
        // (Sessions opened meanwhile can make `after` the larger.)
        before.saturating_sub(after)
    }

    /// Reaps every second, for as long as the node runs.
    pub fn spawn_reaper(self: &Arc<Self>) {
        let polls = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let Some(polls) = polls.upgrade() else { return };
                let ended = polls.reap();
                if ended > 0 {
                    tracing::debug!(ended, "longpoll sessions nobody polled ended");
                }
            }
        });
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }
}

/// A frame as the text the client reads.
fn text(frame: Outbound) -> Option<String> {
    match frame {
        Outbound::Text(t) => Some(t),
        Outbound::Push { head, tail, .. } => {
            let mut s = String::with_capacity(head.len() + tail.len());
            s.push_str(&head.to_string());
            s.push_str(&tail);
            Some(s)
        }
        // No pings over LongPoll, and channels send no binary frames.
        Outbound::Pong(_) | Outbound::Binary(_) => None,
    }
}

/// A `POST`'s body as frames: one per non-empty line; a line over `max_frame` is a frame
/// too large, one that is not a JSON array is a binary frame (both end the session, as on a
/// socket). More than [`MAX_BATCH`] lines is refused whole.
pub fn lines(body: &[u8], max_frame: usize) -> Result<Vec<WireIn>, String> {
    let mut out = Vec::new();
    for line in body.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        if out.len() == MAX_BATCH {
            return Err(format!("at most {MAX_BATCH} messages per request"));
        }
        out.push(if line.len() > max_frame {
            WireIn::TooLarge
        } else if line.first() == Some(&b'[') {
            match std::str::from_utf8(line) {
                Ok(s) => WireIn::Text(s.to_string()),
                Err(_) => WireIn::Invalid("a message that is not UTF-8".into()),
            }
        } else {
            WireIn::Binary(line.to_vec())
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_tokens_round_trip_and_forgeries_are_refused() {
        let t = SessionToken {
            node: "node.1-a".into(),
            session: "0123456789abcdef0123456789abcdef".into(),
            seq: 7,
        };
        let s = t.encode();
        assert!(s.starts_with(TOKEN_PREFIX));
        assert_eq!(SessionToken::parse(&s), Some(t));
        for bad in [
            "",
            "lp1.",
            "lp1.6e.0123.1",
            "lp1.6e.0123456789abcdef0123456789abcdef",
            "lp1.6e.0123456789abcdef0123456789abcdef.x",
            "lp1.6e.0123456789abcdef0123456789abcdef.1.2",
            "lp1.zz.0123456789abcdef0123456789abcdef.1",
            "lp1.6.0123456789abcdef0123456789abcdef.1",
            "eyJhbGciOiJIUzI1NiJ9.e30.sig",
        ] {
            assert_eq!(SessionToken::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_body_is_its_lines_in_order() {
        let got = lines(b"[null,\"1\",\"t\",\"e\",{}]\r\n\n[1]\nAAEC\n", 10).unwrap();
        assert!(matches!(&got[0], WireIn::TooLarge));
        assert!(matches!(&got[1], WireIn::Text(t) if t == "[1]"));
        assert!(matches!(&got[2], WireIn::Binary(_)));
        assert_eq!(got.len(), 3);
        let many = "[1]\n".repeat(MAX_BATCH + 1);
        assert!(lines(many.as_bytes(), 10).is_err());
        assert_eq!(
            lines("[1]\n".repeat(MAX_BATCH).as_bytes(), 10)
                .unwrap()
                .len(),
            MAX_BATCH
        );
    }
}
