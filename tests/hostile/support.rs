#![allow(dead_code)] // Helpers shared by the suite's files; not every file uses each.

//! The server as a separate process (the `stoa` binary, default settings unless a test says
//! otherwise) and a client that writes whatever bytes it likes: raw HTTP/1.1 and raw
//! WebSocket frames over plain TCP, so nothing between the test and the server tidies up
//! what the test sends. The server's memory is read from `/proc`, outside its own process.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Upper bound for anything a test waits for; reaching it fails the test.
pub const PATIENCE: Duration = Duration::from_secs(15);

pub struct Server {
    child: Child,
    pub port: u16,
    /// Everything the server logged (JSON lines), in order.
    pub log: Arc<Mutex<Vec<String>>>,
    dir: Option<tempfile::TempDir>,
}

impl Server {
    /// Starts the binary in a fresh directory with the defaults plus `env`.
    pub fn start(env: &[(&str, &str)]) -> Server {
        Server::start_in(tempfile::tempdir().expect("temp dir"), env)
    }

    /// Starts the binary in `dir` (whose `data` it may already hold).
    pub fn start_in(dir: tempfile::TempDir, env: &[(&str, &str)]) -> Server {
        let mut cmd = crate::common::binary::server(dir.path());
        cmd.env("STOA_LOG__LEVEL", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("stoa starts");
        let crate::common::binary::Listening { port, log } =
            crate::common::binary::listening(&mut child);
        Server {
            child,
            port,
            log,
            dir: Some(dir),
        }
    }

    /// The directory the server runs in (its `data` directory is inside).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.as_ref().expect("the directory").path()
    }

    /// Stops the server with SIGTERM and hands its directory over, to start again in.
    pub fn stop_keeping_dir(mut self) -> tempfile::TempDir {
        let status = self.terminate();
        assert!(status.success(), "{status:?}");
        self.dir.take().expect("the directory")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory of the server process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("server process alive");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .expect("VmRSS")
    }

    /// Open file descriptors of the server process.
    pub fn open_files(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", self.port)).expect("connects");
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        s.set_write_timeout(Some(PATIENCE)).unwrap();
        s.set_nodelay(true).unwrap();
        s
    }

    /// One HTTP/1.1 request on its own connection.
    pub fn http(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        crate::common::http::send(self.port, method, path, headers, body)
    }

    pub fn json(&self, method: &str, path: &str, token: Option<&str>, body: Value) -> Resp {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(a) = &auth {
            headers.push(("Authorization", a));
        }
        self.http(method, path, &headers, body.to_string().as_bytes())
    }

    /// Registers an account; returns its id and access token.
    pub fn register(&self, name: &str) -> (i64, String) {
        let email = format!("{name}@example.com");
        let r = self.json(
            "POST",
            "/api/v1/auth/register",
            None,
            json!({"email": email, "password": "correct horse battery", "display_name": name}),
        );
        assert_eq!(r.status, 201, "register {name}: {}", r.text());
        let v = r.value();
        (
            v["user"]["id"].as_i64().expect("id"),
            v["access_token"].as_str().expect("token").to_string(),
        )
    }

    /// A new document in `ws_id` with `body` (title, content); its id.
    pub fn document(&self, token: &str, ws_id: i64, body: Value) -> i64 {
        let r = self.json(
            "POST",
            &format!("/api/v1/workspaces/{ws_id}/documents"),
            Some(token),
            body,
        );
        assert_eq!(r.status, 201, "{}", r.text());
        r.value()["id"].as_i64().expect("id")
    }

    pub fn healthy(&self) -> bool {
        self.http("GET", "/healthz", &[], b"").status == 200
    }

    /// Log lines at a level, e.g. `"ERROR"`.
    pub fn log_lines(&self, level: &str) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| {
                serde_json::from_str::<Value>(l).is_ok_and(|v| v["level"].as_str() == Some(level))
            })
            .cloned()
            .collect()
    }

    /// Opens a channel socket with `token`.
    pub fn ws(&self, token: &str) -> RawWs {
        RawWs::open(self, &format!("/socket/websocket?vsn=2.0.0&token={token}"))
            .expect("upgrade accepted")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub use crate::common::http::{read_response, Resp};

pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CONTINUATION: u8 = 0x0;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;

/// What the server sent on a socket.
#[derive(Debug, Clone, PartialEq)]
pub enum Got {
    Text(String),
    Binary(Vec<u8>),
    Close(Option<u16>),
    Pong(Vec<u8>),
    Other(u8),
}

/// A WebSocket client that sends any frame, well formed or not.
pub struct RawWs {
    pub stream: TcpStream,
    buf: Vec<u8>,
    next_ref: u64,
}

impl RawWs {
    /// Upgrades `path`; the refusal response if the server does not switch protocols.
    pub fn open(server: &Server, path: &str) -> Result<RawWs, Resp> {
        let mut s = server.connect();
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        s.write_all(req.as_bytes()).expect("upgrade sent");
        let r = read_response(&mut s);
        if r.status != 101 {
            return Err(r);
        }
        Ok(RawWs {
            stream: s,
            buf: r.body,
            next_ref: 0,
        })
    }

    /// A masked frame header announcing `len` bytes, with a zero mask: the payload goes
    /// out as it is.
    pub fn header(fin: bool, opcode: u8, len: u64) -> Vec<u8> {
        let first = if fin { 0x80 } else { 0 } | opcode;
        stoa_protocol::ws::Header::new(first, len, Some([0; 4]))
            .as_slice()
            .to_vec()
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    pub fn send_frame(&mut self, fin: bool, opcode: u8, payload: &[u8]) -> std::io::Result<()> {
        let mut f = Self::header(fin, opcode, payload.len() as u64);
        f.extend_from_slice(payload);
        self.stream.write_all(&f)
    }

    /// Sends `[join_ref, ref, topic, event, payload]`; returns the ref.
    pub fn push(
        &mut self,
        join_ref: Option<&str>,
        topic: &str,
        event: &str,
        payload: Value,
    ) -> String {
        self.next_ref += 1;
        let r = self.next_ref.to_string();
        let text = json!([join_ref, r, topic, event, payload]).to_string();
        self.send_frame(true, TEXT, text.as_bytes())
            .expect("frame sent");
        r
    }

    /// Joins `topic`; returns the join ref once the reply is ok.
    pub fn join(&mut self, topic: &str, payload: Value) -> String {
        self.next_ref += 1;
        let r = self.next_ref.to_string();
        let text = json!([r, r, topic, "phx_join", payload]).to_string();
        self.send_frame(true, TEXT, text.as_bytes())
            .expect("join sent");
        let reply = self.reply(&r);
        assert_eq!(reply[4]["status"], "ok", "join {topic}: {reply}");
        r
    }

    /// The next frame from the server; `None` on timeout or once the connection ended.
    pub fn read(&mut self, wait: Duration) -> Option<Got> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some((frame, used)) = parse_server_frame(&self.buf) {
                self.buf.drain(..used);
                return Some(frame);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .ok()?;
            let mut chunk = [0u8; 16384];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return None
                }
                Err(_) => return None,
            }
        }
    }

    /// The next text frame as JSON, skipping nothing; panics on anything else.
    pub fn next_json(&mut self) -> Value {
        match self.read(PATIENCE) {
            Some(Got::Text(t)) => serde_json::from_str(&t).expect("server sends JSON"),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// Reads until the reply to `r` arrives.
    pub fn reply(&mut self, r: &str) -> Value {
        loop {
            let v = self.next_json();
            if v[3] == "phx_reply" && v[1] == r {
                return v;
            }
        }
    }

    /// Reads until the server's close frame; its code (`None` if the connection ended
    /// without one or nothing came within `PATIENCE`).
    pub fn close_code(&mut self) -> Option<u16> {
        loop {
            match self.read(PATIENCE)? {
                Got::Close(code) => return code,
                _ => continue,
            }
        }
    }

    /// Whether the server ended the connection (read returns end-of-file or a reset) once
    /// the client has closed its side.
    pub fn ended(&mut self) -> bool {
        let _ = self.stream.shutdown(Shutdown::Write);
        self.hangs_up_within(PATIENCE)
    }

    /// Whether the server ends the connection within `wait`, whatever the client does.
    pub fn hangs_up_within(&mut self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        let mut chunk = [0u8; 16384];
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            if self.stream.set_read_timeout(Some(left)).is_err() {
                return true;
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return false
                }
                Err(_) => return true,
            }
        }
        false
    }
}

/// One unmasked server frame at the start of `buf`, and how many bytes it took.
fn parse_server_frame(buf: &[u8]) -> Option<(Got, usize)> {
    let [first, second, ..] = *buf else {
        return None;
    };
    let opcode = first & 0x0F;
    let (len, at) = match second & 0x7F {
        126 => (u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]) as usize, 4),
        127 => {
            let mut be = [0u8; 8];
            be.copy_from_slice(buf.get(2..10)?);
            (u64::from_be_bytes(be) as usize, 10)
        }
        n => (n as usize, 2),
    };
    let payload = buf.get(at..at + len)?;
    let got = match opcode {
        0x1 => Got::Text(String::from_utf8_lossy(payload).into_owned()),
        0x2 => Got::Binary(payload.to_vec()),
        0x8 => {
            Got::Close((payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]])))
        }
        0xA => Got::Pong(payload.to_vec()),
        other => Got::Other(other),
    };
    Some((got, at + len))
}

/// Writes `total` bytes of filler in 64 KiB chunks until done, the server stops reading
/// (a write stalls for a second) or the connection breaks; returns how much was written.
pub fn stream_filler(stream: &mut TcpStream, total: usize) -> usize {
    stream
        .set_write_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let chunk = vec![b'x'; 64 * 1024];
    let mut sent = 0;
    while sent < total {
        match stream.write(&chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => sent += n,
        }
    }
    sent
}

/// A socket whose session is up: a heartbeat has been answered.
pub fn live_socket(server: &Server, token: &str) -> RawWs {
    let mut ws = server.ws(token);
    let r = ws.push(None, "phoenix", "heartbeat", json!({}));
    assert_eq!(ws.reply(&r)[4]["status"], "ok");
    ws
}

impl RawWs {
    /// Reads and discards everything the server sends on this socket, on a thread of its
    /// own, until the connection ends.
    pub fn discard_incoming(&self) -> std::thread::JoinHandle<()> {
        let mut reader = self.stream.try_clone().expect("clone socket");
        reader.set_read_timeout(None).unwrap();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 65536];
            while matches!(reader.read(&mut chunk), Ok(n) if n > 0) {}
        })
    }
}

impl Server {
    /// A workspace owned by `owner` with the others added in the given roles; its id.
    pub fn workspace_with(&self, owner: &str, members: &[(i64, &str)]) -> i64 {
        let r = self.json(
            "POST",
            "/api/v1/workspaces",
            Some(owner),
            json!({"name": "Team"}),
        );
        assert_eq!(r.status, 201, "{}", r.text());
        let ws = r.value()["id"].as_i64().expect("id");
        for (user, role) in members {
            let r = self.json(
                "POST",
                &format!("/api/v1/workspaces/{ws}/members"),
                Some(owner),
                json!({"user_id": user, "role": role}),
            );
            assert_eq!(r.status, 201, "{}", r.text());
        }
        ws
    }

    /// `n` sockets of `token`'s user, each joined to `topic` without presence.
    pub fn joined_sockets(&self, token: &str, topic: &str, n: usize) -> Vec<RawWs> {
        (0..n)
            .map(|_| {
                let mut ws = self.ws(token);
                ws.join(topic, json!({"presence": false}));
                ws
            })
            .collect()
    }

    /// A series' value (0 before it is first counted; a missing family fails the test).
    pub fn metric(&self, name: &str) -> f64 {
        crate::common::metric_value(&self.http("GET", "/metrics", &[], b"").text(), name)
    }
}

impl Server {
    /// Sends SIGTERM and waits for the process to exit; its exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(Instant::now() < deadline, "stoa did not stop after SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Held by the tests that load the machine (floods, megabytes queued, thousands of sockets)
/// or that depend on a client keeping pace, so that no two of them share the two cores.
static HEAVY: Mutex<()> = Mutex::new(());

pub fn heavy() -> std::sync::MutexGuard<'static, ()> {
    HEAVY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Server {
    /// Kills the server with SIGKILL (nothing is flushed, nothing said goodbye) and hands
    /// its directory over, to start again in.
    pub fn kill_keeping_dir(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.dir.take().expect("the directory")
    }
}

/// A Yjs editor over a raw socket on `/yjs/{id}`: a document of its own that takes every
/// update it hears, as the stock provider's does.
pub struct YjsEditor {
    pub ws: RawWs,
    pub doc: yrs::Doc,
}

impl YjsEditor {
    /// Opens the document and syncs: the server's state is applied before this returns.
    pub fn open(server: &Server, doc: i64, token: &str) -> YjsEditor {
        use yrs::updates::encoder::Encode;
        use yrs::{ReadTxn, Transact};
        let ws = RawWs::open(server, &format!("/yjs/{doc}?token={token}"))
            .unwrap_or_else(|r| panic!("upgrade refused: {} {}", r.status, r.text()));
        let mut editor = YjsEditor {
            ws,
            doc: yrs::Doc::new(),
        };
        let sv = editor.doc.transact().state_vector();
        let step1 = yrs::sync::Message::Sync(yrs::sync::SyncMessage::SyncStep1(sv)).encode_v1();
        editor.ws.send_frame(true, BINARY, &step1).expect("sent");
        editor.until("the server's sync step 2", |m| {
            matches!(
                m,
                yrs::sync::Message::Sync(yrs::sync::SyncMessage::SyncStep2(_))
            )
        });
        editor
    }

    /// Appends `text` to the document's `content` and sends the update.
    pub fn type_text(&mut self, text: &str) {
        use yrs::updates::encoder::Encode;
        use yrs::{ReadTxn, Text, Transact};
        let content = self.doc.get_or_insert_text("content");
        let sv = self.doc.transact().state_vector();
        {
            let mut txn = self.doc.transact_mut();
            let end = content.len(&txn);
            content.insert(&mut txn, end, text);
        }
        let update = self.doc.transact().encode_state_as_update_v1(&sv);
        let msg = yrs::sync::Message::Sync(yrs::sync::SyncMessage::Update(update)).encode_v1();
        self.ws.send_frame(true, BINARY, &msg).expect("sent");
    }

    /// The document's `content` as this editor has it.
    pub fn text(&self) -> String {
        use yrs::{GetString, Transact};
        let content = self.doc.get_or_insert_text("content");
        let txn = self.doc.transact();
        content.get_string(&txn)
    }

    /// The next y-protocol message (updates it carries applied); `None` when nothing comes
    /// within `wait` or the socket ended.
    pub fn next(&mut self, wait: Duration) -> Option<yrs::sync::Message> {
        use yrs::updates::decoder::Decode;
        use yrs::Transact;
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.ws.read(left)? {
                Got::Binary(b) => {
                    let msg = yrs::sync::Message::decode_v1(&b).expect("a y-protocol message");
                    if let yrs::sync::Message::Sync(
                        yrs::sync::SyncMessage::SyncStep2(u) | yrs::sync::SyncMessage::Update(u),
                    ) = &msg
                    {
                        let update = yrs::Update::decode_v1(u).expect("an update");
                        self.doc
                            .transact_mut()
                            .apply_update(update)
                            .expect("applies");
                    }
                    return Some(msg);
                }
                Got::Close(_) => return None,
                _ => {}
            }
        }
    }

    /// Reads until a message satisfies `pred` (within `PATIENCE`); returns it.
    pub fn until(
        &mut self,
        what: &str,
        pred: impl Fn(&yrs::sync::Message) -> bool,
    ) -> yrs::sync::Message {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left) {
                Some(m) if pred(&m) => return m,
                Some(_) => {}
                None => panic!("no {what}: the socket ended or stayed silent"),
            }
        }
    }

    /// Reads until this editor's text is `want`.
    pub fn until_text(&mut self, want: &str) {
        let deadline = Instant::now() + PATIENCE;
        while self.text() != want {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                self.next(left).is_some(),
                "text {:?}, waited for {want:?}",
                self.text()
            );
        }
    }

    /// Waits for the server's `auth` refusal; its reason.
    pub fn refusal(&mut self) -> String {
        match self.until("an auth refusal", |m| {
            matches!(m, yrs::sync::Message::Auth(Some(_)))
        }) {
            yrs::sync::Message::Auth(Some(reason)) => reason,
            _ => unreachable!(),
        }
    }

    /// Makes sure everything sent before has been handled: a sync step 1 is answered in
    /// order. What was heard meanwhile is applied.
    pub fn settle(&mut self) {
        use yrs::updates::encoder::Encode;
        use yrs::{ReadTxn, Transact};
        let sv = self.doc.transact().state_vector();
        let step1 = yrs::sync::Message::Sync(yrs::sync::SyncMessage::SyncStep1(sv)).encode_v1();
        self.ws.send_frame(true, BINARY, &step1).expect("sent");
        self.until("the answer to a sync step", |m| {
            matches!(
                m,
                yrs::sync::Message::Sync(yrs::sync::SyncMessage::SyncStep2(_))
            )
        });
    }
}

/// Waits until `check` holds (within `PATIENCE`), checking every 20 ms; how long it took.
pub fn eventually(what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < PATIENCE, "waited too long for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
    started.elapsed()
}
