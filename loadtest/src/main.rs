//! `stoa-loadtest`: drives Stoa's Phoenix Channels endpoint with many clients.
//!
//! ```text
//! stoa-loadtest setup --api http://127.0.0.1:8080
//!     registers a user, creates a workspace; prints TOKEN=… and TOPIC=…
//! stoa-loadtest hold --api URL --token T --topic workspace:1 --connections N
//!     [--source 127.0.0.2] [--expect K] [--out FILE] [--presence 1] [--linger-ms 300]
//!     opens N sockets, joins the topic on each (without presence unless --presence),
//!     prints `ready N`,
//!     then records the latency of every broadcast it receives until each socket has K
//!     (or 15 s pass without any); writes latencies (µs, one per line) to FILE and prints
//!     a summary
//! stoa-loadtest send --api URL --token T --topic workspace:1 --count K --rate R [--size B]
//!     [--via rest] [--senders S]
//!     one socket broadcasting K timestamped messages at R per second; with `--via rest`,
//!     the publish API instead (`POST /api/v1/workspaces/{id}/broadcast`, no socket), from
//!     S keep-alive connections taking turns; prints how many were accepted (202) and
//!     refused, and the requests' own latency
//!
//! `hold` and `send` take `--protocol socketio` to drive a Socket.IO 4 server instead
//! (Engine.IO 4 over a plain WebSocket: `/socket.io/?EIO=4&transport=websocket`, the
//! namespace connect `40`, events as `42["broadcast",{…}]`, pings `2` answered with `3`);
//! see `loadtest/compare.sh`.
//! stoa-loadtest yjs --api URL --token T --docs 1,2,3 --editors E --count K --rate R
//!     [--prefix /yjs] [--out FILE]
//!     E y-websocket editors on each document (`{prefix}/{id}?token=T`; `--prefix ""` for
//!     the y-websocket reference server, which names rooms by path), each inserting K
//!     timestamped pieces of text at R per second as real Yjs updates (a `yrs` document per
//!     editor); every editor records how long the others' updates took to reach it, read
//!     from the update's bytes (`T<µs>e<editor>|`; the generator does not apply them, so it
//!     stays cheap); `--hocuspocus 1` speaks Hocuspocus 2's framing instead (every message
//!     behind the document's name, an auth message first);
//!     prints remote updates delivered per second and latency percentiles
//! stoa-loadtest report FILE…
//!     merges latency files: count, p50, p99, p99.9, max
//! stoa-loadtest floor --port P --connections N --count K --rate R [--size B] [--threads T]
//!     a reference, not Stoa: accepts N sockets (upgrade and join answered without any
//!     checks), then writes K timestamped frames at R per second straight to every socket
//!     from T plain threads (blocking `write`, no framework, no queue). `hold` measures it
//!     exactly as it measures Stoa, which shows what the machine itself costs per delivery.
//! ```
//!
//! A minimal WebSocket client is written here (HTTP upgrade, masked client frames, unmasked
//! server frames) so that the generator stays small and fast.

use std::collections::HashMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use stoa_protocol::ws::{Header, Opcode};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};

mod scenario;
use tokio::net::{TcpSocket, TcpStream};

type Error = Box<dyn std::error::Error + Send + Sync>;

fn args() -> (String, HashMap<String, String>, Vec<String>) {
    let mut it = std::env::args().skip(1);
    let mode = it.next().unwrap_or_default();
    let mut flags = HashMap::new();
    let mut rest = Vec::new();
    while let Some(a) = it.next() {
        if let Some(name) = a.strip_prefix("--") {
            flags.insert(name.to_string(), it.next().unwrap_or_default());
        } else {
            rest.push(a);
        }
    }
    (mode, flags, rest)
}

/// The value of `--name`, or `default` when it is not given. A value that does not parse
/// stops the tool (exit code 2): a measurement taken with a default in place of what was
/// asked would be reported as the one asked for.
fn flag<T: std::str::FromStr>(flags: &HashMap<String, String>, name: &str, default: T) -> T {
    match flags.get(name) {
        None => default,
        Some(text) => text.parse().unwrap_or_else(|_| {
            eprintln!("stoa-loadtest: --{name} {text:?}: not a valid value");
            std::process::exit(2);
        }),
    }
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn main() -> Result<(), Error> {
    let (mode, flags, rest) = args();
    // A holding process runs on one thread: its sockets share nothing, and one thread per
    // process keeps the generator's share of the cores predictable (run several processes).
    // `run` takes `--threads N` (1 by default, for the same reason; 0: one per core).
    let threads: usize = flag(&flags, "threads", 1);
    let runtime = if mode == "hold" || (mode == "run" && threads == 1) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else if mode == "run" && threads > 1 {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
    };
    runtime.block_on(run(mode, flags, rest))
}

async fn run(mode: String, flags: HashMap<String, String>, rest: Vec<String>) -> Result<(), Error> {
    let api = flags
        .get("api")
        .cloned()
        .unwrap_or_else(|| "http://127.0.0.1:8080".into());
    match mode.as_str() {
        "setup" => setup(&api).await,
        "hold" => hold(&api, &flags).await,
        "send" => send(&api, &flags).await,
        "report" => report(&rest),
        "floor" => floor(&flags).await,
        "yjs" => yjs(&api, &flags).await,
        "run" => scenario::run(&flags, &rest).await,
        _ => {
            eprintln!("usage: stoa-loadtest run SCENARIO | setup|hold|send|report|floor|yjs (see the source header)");
            std::process::exit(2);
        }
    }
}

/// `http://host:port` → `host:port`.
fn authority(api: &str) -> String {
    api.trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string()
}

/// A POST with a JSON body on its own connection: the response's JSON.
async fn http_json(
    api: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> Result<serde_json::Value, Error> {
    let body: serde_json::Value = serde_json::from_str(body)?;
    Ok(scenario::http(api, "POST", path, token, &body).await?.1)
}

async fn setup(api: &str) -> Result<(), Error> {
    let email = format!("load.{}@example.com", now_us());
    let user = http_json(
        api,
        "/api/v1/auth/register",
        None,
        &serde_json::json!({"email": email, "password": "load test password", "display_name": "load"}).to_string(),
    )
    .await?;
    let token = user["access_token"].as_str().ok_or("no token")?.to_string();
    let ws = http_json(
        api,
        "/api/v1/workspaces",
        Some(&token),
        r#"{"name":"Load"}"#,
    )
    .await?;
    println!("TOKEN={token}");
    println!("TOPIC=workspace:{}", ws["id"]);
    Ok(())
}

/// Text frames longer than this are read and dropped, not returned (see `read_text`).
const LARGE: u64 = 65536;

/// A client WebSocket over one TCP connection.
struct Ws {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: Writer,
    socketio: bool,
}

/// Which protocol `hold` and `send` speak: Phoenix Channels unless `--protocol socketio`.
fn socketio(flags: &HashMap<String, String>) -> bool {
    flags.get("protocol").map(String::as_str) == Some("socketio")
}

/// The sending half: client frames are masked.
struct Writer {
    half: tokio::net::tcp::OwnedWriteHalf,
    mask_state: u32,
}

impl Ws {
    async fn connect(
        api: &str,
        token: &str,
        source: Option<&str>,
        socketio: bool,
    ) -> Result<Ws, Error> {
        let path = if socketio {
            "/socket.io/?EIO=4&transport=websocket".to_string()
        } else {
            format!("/socket/websocket?vsn=2.0.0&token={token}")
        };
        Ws::connect_path(api, &path, source, socketio).await
    }

    async fn connect_path(
        api: &str,
        path: &str,
        source: Option<&str>,
        socketio: bool,
    ) -> Result<Ws, Error> {
        let host = authority(api);
        let addr: SocketAddr = tokio::net::lookup_host(&host)
            .await?
            .next()
            .ok_or("no address")?;
        let socket = TcpSocket::new_v4()?;
        if let Some(src) = source {
            socket.bind(format!("{src}:0").parse()?)?;
        }
        let stream = socket.connect(addr).await?;
        stream.set_nodelay(true)?;
        let (read, mut writer) = stream.into_split();
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        writer.write_all(req.as_bytes()).await?;
        let mut reader = BufReader::with_capacity(4096, read);
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let b = reader.read_u8().await?;
            head.push(b);
            if head.len() > 8192 {
                return Err("upgrade response too long".into());
            }
        }
        if !head.starts_with(b"HTTP/1.1 101") {
            return Err(format!("upgrade refused: {}", String::from_utf8_lossy(&head)).into());
        }
        Ok(Ws {
            reader,
            writer: Writer {
                half: writer,
                mask_state: 0x9e37_79b9,
            },
            socketio,
        })
    }

    async fn send_text(&mut self, text: &str) -> Result<(), Error> {
        self.writer.send_text(text).await
    }
}

impl Writer {
    async fn send_text(&mut self, text: &str) -> Result<(), Error> {
        self.send(0x1, text.as_bytes()).await
    }

    async fn send(&mut self, opcode: u8, payload: &[u8]) -> Result<(), Error> {
        self.mask_state ^= self.mask_state << 13;
        self.mask_state ^= self.mask_state >> 17;
        self.mask_state ^= self.mask_state << 5;
        let mask = self.mask_state.to_be_bytes();
        let header = Header::new(0x80 | opcode, payload.len() as u64, Some(mask));
        let mut frame = Vec::with_capacity(payload.len() + header.as_slice().len());
        frame.extend_from_slice(header.as_slice());
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.half.write_all(&frame).await?;
        Ok(())
    }
}

impl Ws {
    /// The next text frame's bytes (pings are answered, other control frames skipped;
    /// a text frame over `LARGE` comes back empty).
    async fn read_text(&mut self, buf: &mut Vec<u8>) -> Result<(), Error> {
        loop {
            let b0 = self.reader.read_u8().await?;
            let len = frame_len(&mut self.reader).await?;
            buf.clear();
            if len > LARGE && b0 & 0x0f == 0x1 {
                // A large text frame (a presence_state) is read through and not kept: the
                // generator measures broadcasts, which are small.
                let mut left = len;
                let mut scratch = [0u8; 16384];
                while left > 0 {
                    let n = left.min(scratch.len() as u64) as usize;
                    self.reader.read_exact(&mut scratch[..n]).await?;
                    left -= n as u64;
                }
                return Ok(());
            }
            buf.resize(len as usize, 0);
            self.reader.read_exact(buf).await?;
            match b0 & 0x0f {
                // Engine.IO's ping, answered with its pong.
                0x1 if self.socketio && buf[..] == b"2"[..] => self.send_text("3").await?,
                0x1 => return Ok(()),
                0x8 => return Err("closed by server".into()),
                0x9 => {
                    self.writer
                        .half
                        .write_all(&[0x8a, 0x80, 0, 0, 0, 0])
                        .await?;
                }
                _ => {}
            }
        }
    }

    async fn join(&mut self, topic: &str, presence: bool) -> Result<(), Error> {
        if self.socketio {
            // The open packet, then connect to the default namespace.
            let mut buf = Vec::new();
            self.read_text(&mut buf).await?;
            if !buf.starts_with(b"0") {
                return Err("no Engine.IO open packet".into());
            }
            self.send_text("40").await?;
            loop {
                self.read_text(&mut buf).await?;
                if buf.starts_with(b"40") {
                    return Ok(());
                }
                if buf.starts_with(b"44") {
                    return Err(format!("refused: {}", String::from_utf8_lossy(&buf)).into());
                }
            }
        }
        let payload = if presence {
            "{}"
        } else {
            r#"{"presence":false}"#
        };
        self.send_text(&format!(r#"["1","1","{topic}","phx_join",{payload}]"#))
            .await?;
        let mut buf = Vec::new();
        loop {
            self.read_text(&mut buf).await?;
            let text = String::from_utf8_lossy(&buf);
            if text.contains("phx_reply") {
                return if text.contains(r#""status":"ok""#) {
                    Ok(())
                } else {
                    Err(format!("join refused: {text}").into())
                };
            }
        }
    }
}

/// The `"t":<digits>` send timestamp in a broadcast frame.
fn sent_at(frame: &[u8]) -> Option<u64> {
    let key = b"\"t\":";
    let at = frame.windows(key.len()).position(|w| w == key)? + key.len();
    let digits = frame[at..].iter().take_while(|b| b.is_ascii_digit());
    let mut n: u64 = 0;
    for d in digits {
        n = n * 10 + u64::from(d - b'0');
    }
    Some(n)
}

async fn hold(api: &str, flags: &HashMap<String, String>) -> Result<(), Error> {
    let token: String = flag(flags, "token", String::new());
    let topic: String = flag(flags, "topic", String::new());
    let connections: usize = flag(flags, "connections", 1000);
    let expect: u64 = flag(flags, "expect", 0);
    // How long the sockets stay open after the last delivery (so that the disconnections
    // of one generator do not fall into another's measurement).
    let linger: u64 = flag(flags, "linger-ms", 300);
    let source = flags.get("source").cloned();
    let out = flags.get("out").cloned();
    let presence = flags.contains_key("presence");
    let socketio = socketio(flags);
    let ready = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let received = Arc::new(AtomicU64::new(0));
    let last = Arc::new(AtomicU64::new(0));
    let first = Arc::new(AtomicU64::new(u64::MAX));
    let latencies = Arc::new(Mutex::new(Vec::<u32>::new()));
    let started = Instant::now();
    let mut tasks = Vec::new();
    // Connect in waves so the server's accept queue is not flooded.
    let gate = Arc::new(tokio::sync::Semaphore::new(256));
    for _ in 0..connections {
        let (api, token, topic, source) = (
            api.to_string(),
            token.clone(),
            topic.clone(),
            source.clone(),
        );
        let (ready, failed, received, last, first, latencies, gate) = (
            ready.clone(),
            failed.clone(),
            received.clone(),
            last.clone(),
            first.clone(),
            latencies.clone(),
            gate.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await;
            let mut ws = match Ws::connect(&api, &token, source.as_deref(), socketio).await {
                Ok(ws) => ws,
                Err(e) => {
                    if failed.fetch_add(1, Ordering::Relaxed) < 3 {
                        eprintln!("connect failed: {e}");
                    }
                    return;
                }
            };
            if let Err(e) = ws.join(&topic, presence).await {
                if failed.fetch_add(1, Ordering::Relaxed) < 3 {
                    eprintln!("join failed: {e}");
                }
                return;
            }
            drop(permit);
            ready.fetch_add(1, Ordering::Relaxed);
            let mut mine = Vec::new();
            let mut buf = Vec::with_capacity(512);
            let mut heartbeat = tokio::time::interval(Duration::from_secs(25));
            heartbeat.tick().await;
            let mut got = 0u64;
            loop {
                tokio::select! {
                    r = ws.read_text(&mut buf) => {
                        if r.is_err() { break; }
                        if let Some(t) = sent_at(&buf) {
                            let now = now_us();
                            mine.push(now.saturating_sub(t).min(u64::from(u32::MAX)) as u32);
                            received.fetch_add(1, Ordering::Relaxed);
                            last.fetch_max(now, Ordering::Relaxed);
                            first.fetch_min(now, Ordering::Relaxed);
                            got += 1;
                            if expect > 0 && got >= expect { break; }
                        }
                    }
                    // Socket.IO's heartbeat is the server's ping, answered in `read_text`.
                    _ = heartbeat.tick(), if !socketio => {
                        if ws.send_text(r#"[null,"hb","phoenix","heartbeat",{}]"#).await.is_err() { break; }
                    }
                }
            }
            if let Ok(mut all) = latencies.lock() {
                all.extend(mine);
            }
            // Keep the socket open until the process ends so the count stays stable.
            std::future::pending::<()>().await;
        }));
    }
    // Report readiness once every socket has joined or failed.
    loop {
        let done = ready.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed);
        if done >= connections {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "ready {} failed {} in {:.1}s",
        ready.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
    std::io::stdout().flush()?;
    let joined = ready.load(Ordering::Relaxed) as u64;
    let cpu_at_ready = cpu_ms();
    // Wait for the broadcasts: done when every socket has `expect`, or 15 s of silence.
    let mut seen = 0;
    let mut quiet = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = received.load(Ordering::Relaxed);
        if now != seen {
            seen = now;
            quiet = Instant::now();
        }
        if expect > 0 && now >= expect * joined {
            break;
        }
        let limit = if expect == 0 { 3600 } else { 15 };
        if quiet.elapsed() > Duration::from_secs(limit) {
            break;
        }
    }
    // Said before the sockets close, so that a caller measuring the server can stop at the
    // last delivery rather than take in the disconnections.
    println!("done receiving");
    std::io::stdout().flush()?;
    // Let the tasks push their samples.
    tokio::time::sleep(Duration::from_millis(linger.max(300))).await;
    let samples = latencies.lock().map(|v| v.clone()).unwrap_or_default();
    let span = last
        .load(Ordering::Relaxed)
        .saturating_sub(first.load(Ordering::Relaxed)) as f64
        / 1e6;
    println!(
        "held {joined} received {} over {:.2}s = {:.0} deliveries/s",
        received.load(Ordering::Relaxed),
        span,
        received.load(Ordering::Relaxed) as f64 / span.max(1e-6)
    );
    print_percentiles(&mut samples.clone());
    println!(
        "generator CPU while receiving: {} ms",
        cpu_ms().saturating_sub(cpu_at_ready)
    );
    if let Some(path) = out {
        let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
        for s in samples {
            writeln!(f, "{s}")?;
        }
    }
    std::process::exit(0);
}

/// `send --via rest`: the publish API, at a rate, from `--senders` connections.
async fn send_rest(api: &str, flags: &HashMap<String, String>) -> Result<(), Error> {
    let token: String = flag(flags, "token", String::new());
    let topic: String = flag(flags, "topic", String::new());
    let count: u64 = flag(flags, "count", 100);
    let rate: f64 = flag(flags, "rate", 10.0);
    let size: usize = flag(flags, "size", 64);
    let senders: u64 = flag(flags, "senders", 4u64).max(1);
    let ws = topic
        .strip_prefix("workspace:")
        .ok_or("--via rest needs --topic workspace:ID")?
        .to_string();
    let path = format!("/api/v1/workspaces/{ws}/broadcast");
    let pad = "p".repeat(size);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for k in 0..senders {
        let (api, token, topic, path, pad) = (
            api.to_string(),
            token.clone(),
            topic.clone(),
            path.clone(),
            pad.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut conn = scenario::KeepAlive::new(&api);
            let (mut ok, mut refused) = (0u64, 0u64);
            let mut took = hdrhistogram::Histogram::<u64>::new(3).expect("histogram");
            let mut i = k;
            while i < count {
                let due = start + Duration::from_secs_f64(i as f64 / rate);
                tokio::time::sleep_until(due.into()).await;
                let body =
                    serde_json::json!({"topic": topic, "payload": {"t": now_us(), "pad": pad}});
                let began = Instant::now();
                match conn.call("POST", &path, Some(&token), &body).await {
                    Ok((202, _)) => ok += 1,
                    _ => refused += 1,
                }
                let _ = took.record(began.elapsed().as_micros() as u64);
                i += senders;
            }
            (ok, refused, took)
        }));
    }
    let (mut ok, mut refused) = (0, 0);
    let mut took = hdrhistogram::Histogram::<u64>::new(3)?;
    for t in tasks {
        let (o, r, h) = t.await?;
        ok += o;
        refused += r;
        took.add(h)?;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "published {ok} (refused {refused}) in {secs:.2}s = {:.0}/s; request p50 {} µs, p99 {} µs",
        ok as f64 / secs,
        took.value_at_quantile(0.5),
        took.value_at_quantile(0.99)
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(())
}

async fn send(api: &str, flags: &HashMap<String, String>) -> Result<(), Error> {
    if flags.get("via").map(String::as_str) == Some("rest") {
        return send_rest(api, flags).await;
    }
    let token: String = flag(flags, "token", String::new());
    let topic: String = flag(flags, "topic", String::new());
    let count: u64 = flag(flags, "count", 100);
    let rate: f64 = flag(flags, "rate", 10.0);
    let size: usize = flag(flags, "size", 64);
    let socketio = socketio(flags);
    let mut ws = Ws::connect(api, &token, None, socketio).await?;
    ws.join(&topic, false).await?;
    let pad = "p".repeat(size);
    let Ws {
        mut reader,
        mut writer,
        ..
    } = ws;
    // Drain replies in the background.
    tokio::spawn(async move {
        let mut buf = [0u8; 65536];
        while let Ok(n) = reader.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    });
    let start = Instant::now();
    for i in 0..count {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        let frame = if socketio {
            format!(r#"42["broadcast",{{"t":{},"pad":"{pad}"}}]"#, now_us())
        } else {
            format!(
                r#"["1","{i}","{topic}","broadcast",{{"t":{},"pad":"{pad}"}}]"#,
                now_us()
            )
        };
        writer.send_text(&frame).await?;
    }
    println!("sent {count} in {:.2}s", start.elapsed().as_secs_f64());
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(())
}

/// Reads a frame's second header byte and extended length: the payload length (not
/// counting a mask).
async fn frame_len<R: tokio::io::AsyncRead + Unpin>(r: &mut R) -> std::io::Result<u64> {
    Ok(match r.read_u8().await? & 0x7f {
        126 => u64::from(r.read_u16().await?),
        127 => r.read_u64().await?,
        n => u64::from(n),
    })
}

/// Reads one masked client frame and discards it.
async fn skip_frame(stream: &mut BufReader<TcpStream>) -> Result<(), Error> {
    let _b0 = stream.read_u8().await?;
    let len = frame_len(stream).await?;
    let mut rest = vec![0u8; len as usize + 4];
    stream.read_exact(&mut rest).await?;
    Ok(())
}

/// An unmasked server text frame.
fn server_frame(text: &str) -> Vec<u8> {
    let header = Header::server(Opcode::Text, text.len());
    let mut frame = Vec::with_capacity(text.len() + header.as_slice().len());
    frame.extend_from_slice(header.as_slice());
    frame.extend_from_slice(text.as_bytes());
    frame
}

async fn floor_handshake(stream: TcpStream) -> Result<std::net::TcpStream, Error> {
    let mut stream = BufReader::new(stream);
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(stream.read_u8().await?);
    }
    stream
        .get_mut()
        .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
        .await?;
    skip_frame(&mut stream).await?;
    let reply = server_frame(r#"["1","1","t","phx_reply",{"status":"ok","response":{}}]"#);
    stream.get_mut().write_all(&reply).await?;
    let std = stream.into_inner().into_std()?;
    std.set_nonblocking(false)?;
    Ok(std)
}

async fn floor(flags: &HashMap<String, String>) -> Result<(), Error> {
    let port: u16 = flag(flags, "port", 8090);
    let connections: usize = flag(flags, "connections", 1000);
    let count: u64 = flag(flags, "count", 10);
    let rate: f64 = flag(flags, "rate", 5.0);
    let size: usize = flag(flags, "size", 64);
    let threads: usize = flag(flags, "threads", 2);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening");
    std::io::stdout().flush()?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                if let Ok(s) = floor_handshake(stream).await {
                    let _ = tx.send(s);
                }
            });
        }
    });
    let mut sockets = Vec::with_capacity(connections);
    while sockets.len() < connections {
        sockets.push(rx.recv().await.ok_or("listener stopped")?);
    }
    println!("joined {connections}; writing from {threads} threads");
    std::io::stdout().flush()?;
    let pad = "p".repeat(size);
    let per = connections.div_ceil(threads.max(1));
    let start = Instant::now() + Duration::from_millis(500);
    std::thread::scope(|scope| {
        for share in sockets.chunks_mut(per) {
            let pad = &pad;
            scope.spawn(move || {
                for i in 0..count {
                    let due = start + Duration::from_secs_f64(i as f64 / rate);
                    std::thread::sleep(due.saturating_duration_since(Instant::now()));
                    let text = format!(
                        r#"["1",null,"t","broadcast",{{"t":{},"pad":"{pad}"}}]"#,
                        now_us()
                    );
                    let frame = server_frame(&text);
                    for s in share.iter_mut() {
                        let _ = std::io::Write::write_all(s, &frame);
                    }
                }
            });
        }
    });
    println!("sent {count}");
    tokio::time::sleep(Duration::from_secs(5)).await;
    Ok(())
}

/// This process's CPU time (user + system) in milliseconds, from `/proc/self/stat`.
fn cpu_ms() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields
        .get(11..13)
        .map_or(0, |f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum());
    ticks * 10
}

/// Latencies (µs) as every mode reports them, through the same histogram (3 significant
/// digits) the scenarios use.
fn print_percentiles(samples: &mut [u32]) {
    let mut h = scenario::histogram();
    for &us in samples.iter() {
        h.saturating_record(u64::from(us).max(1));
    }
    if h.is_empty() {
        println!("no samples");
        return;
    }
    let ms = |us: u64| us as f64 / 1000.0;
    println!(
        "latency ms: n={} p50={:.2} p99={:.2} p99.9={:.2} max={:.2}",
        h.len(),
        ms(h.value_at_quantile(0.50)),
        ms(h.value_at_quantile(0.99)),
        ms(h.value_at_quantile(0.999)),
        ms(h.max())
    );
}

fn report(files: &[String]) -> Result<(), Error> {
    let mut all = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f)?;
        all.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
    }
    print_percentiles(&mut all);
    Ok(())
}

/// The `T<µs>e<editor>|` stamps that editors insert, found in an update's bytes: each
/// stamp's time, and the editor that made it.
fn stamps(update: &[u8], mut each: impl FnMut(u64, usize)) {
    let number = |from: usize| {
        let digits = update[from..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        let value = std::str::from_utf8(&update[from..from + digits])
            .ok()
            .and_then(|s| s.parse::<u64>().ok());
        (value, from + digits)
    };
    let mut i = 0;
    while i < update.len() {
        if update[i] == b'T' {
            if let (Some(at), e) = number(i + 1) {
                if update.get(e) == Some(&b'e') {
                    if let (Some(editor), end) = number(e + 1) {
                        if update.get(end) == Some(&b'|') {
                            each(at, editor as usize);
                            i = end + 1;
                            continue;
                        }
                    }
                }
            }
        }
        i += 1;
    }
}

/// The next binary frame's bytes (other frames skipped; a close ends it).
async fn read_binary_from(
    reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    buf: &mut Vec<u8>,
) -> Result<(), Error> {
    loop {
        let b0 = reader.read_u8().await?;
        let len = frame_len(reader).await?;
        buf.clear();
        buf.resize(len as usize, 0);
        reader.read_exact(buf).await?;
        match b0 & 0x0f {
            0x2 => return Ok(()),
            0x8 => return Err("closed by server".into()),
            _ => {}
        }
    }
}

impl Ws {
    async fn read_binary(&mut self) -> Result<Vec<u8>, Error> {
        let mut buf = Vec::new();
        read_binary_from(&mut self.reader, &mut buf).await?;
        Ok(buf)
    }
}

/// A lib0 var-uint.
fn var_uint(mut n: usize, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

async fn yjs(api: &str, flags: &HashMap<String, String>) -> Result<(), Error> {
    let token: String = flag(flags, "token", String::new());
    let docs: Vec<String> = flag::<String>(flags, "docs", String::new())
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let editors: usize = flag(flags, "editors", 3);
    let count: u64 = flag(flags, "count", 30);
    let rate: f64 = flag(flags, "rate", 20.0);
    let prefix: String = flag(flags, "prefix", "/yjs".to_string());
    let hocuspocus = flag::<u8>(flags, "hocuspocus", 0) == 1;
    let out = flags.get("out").cloned();
    let run = yjs_editors(
        api, &token, &docs, editors, count, rate, &prefix, hocuspocus,
    )
    .await?;
    let (got, expected, secs) = (run.got, run.expected, run.secs);
    println!(
        "delivered {got} of {expected} remote updates in {secs:.2} s = {:.0}/s",
        got as f64 / secs
    );
    let mut samples = run.samples;
    print_percentiles(&mut samples);
    if let Some(path) = out {
        let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
        for s in samples {
            writeln!(f, "{s}")?;
        }
    }
    std::process::exit(0);
}

/// What a run of the Yjs editors measured: remote updates received of those expected, in
/// how long, and each one's latency (µs).
pub struct YjsRun {
    pub got: u64,
    pub expected: u64,
    pub secs: f64,
    pub samples: Vec<u32>,
}

/// E editors on each of `docs`, each inserting `count` timestamped pieces at `rate`.
#[allow(clippy::too_many_arguments)]
pub async fn yjs_editors(
    api: &str,
    token: &str,
    docs: &[String],
    editors: usize,
    count: u64,
    rate: f64,
    prefix: &str,
    hocuspocus: bool,
) -> Result<YjsRun, Error> {
    use yrs::{ReadTxn, Text, Transact};
    let latencies = Arc::new(Mutex::new(Vec::<u32>::new()));
    let received = Arc::new(AtomicU64::new(0));
    let ready = Arc::new(tokio::sync::Barrier::new(docs.len() * editors + 1));
    let mut tasks = Vec::new();
    for (d, doc) in docs.iter().enumerate() {
        for e in 0..editors {
            let path = if hocuspocus {
                "/".to_string()
            } else if token.is_empty() {
                format!("{prefix}/{doc}")
            } else {
                format!("{prefix}/{doc}?token={token}")
            };
            let mut ws = Ws::connect_path(api, &path, None, false).await?;
            // Hocuspocus: every message starts with the document's name.
            let mut name = Vec::new();
            if hocuspocus {
                var_uint(doc.len(), &mut name);
                name.extend_from_slice(doc.as_bytes());
                let mut auth = name.clone();
                auth.extend_from_slice(&[2, 0, 0]); // auth, token, ""
                ws.writer.send(0x2, &auth).await?;
            }
            let (latencies, received, ready) = (latencies.clone(), received.clone(), ready.clone());
            let k = d * editors + e;
            tasks.push(tokio::spawn(async move {
                // The server speaks first (sync step 1): the editor is then registered.
                let _ = ws.read_binary().await;
                ready.wait().await;
                let Ws {
                    mut reader,
                    mut writer,
                    ..
                } = ws;
                let skip = name.len();
                let reading = tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut mine = Vec::new();
                    loop {
                        if read_binary_from(&mut reader, &mut buf).await.is_err() {
                            break;
                        }
                        // Sync update messages only (0, 2): what the others typed.
                        let body = buf.get(skip..).unwrap_or(&[]);
                        if body.len() > 2 && body[0] == 0 && body[1] == 2 {
                            let now = now_us();
                            mine.clear();
                            // Some servers send an editor its own updates back: not counted.
                            stamps(&buf, |t, by| {
                                if by != k {
                                    mine.push(now.saturating_sub(t) as u32);
                                }
                            });
                            received.fetch_add(mine.len() as u64, Ordering::Relaxed);
                            if let Ok(mut l) = latencies.lock() {
                                l.extend_from_slice(&mine);
                            }
                        }
                    }
                });
                let doc = yrs::Doc::new();
                let text = doc.get_or_insert_text("content");
                let period = Duration::from_secs_f64(1.0 / rate);
                // Editors start spread over one period, as people do.
                tokio::time::sleep(period.mul_f64((k % 97) as f64 / 97.0)).await;
                let mut tick = tokio::time::interval(period);
                for _ in 0..count {
                    tick.tick().await;
                    let sv = doc.transact().state_vector();
                    {
                        let mut txn = doc.transact_mut();
                        let end = text.len(&txn);
                        text.insert(&mut txn, end, &format!("T{}e{k}|", now_us()));
                    }
                    let update = doc.transact().encode_state_as_update_v1(&sv);
                    let mut msg = name.clone();
                    msg.extend_from_slice(&[0u8, 2]);
                    var_uint(update.len(), &mut msg);
                    msg.extend_from_slice(&update);
                    if writer.send(0x2, &msg).await.is_err() {
                        break;
                    }
                }
                (reading, writer)
            }));
        }
    }
    ready.wait().await;
    eprintln!(
        "ready: {} editors on {} documents",
        docs.len() * editors,
        docs.len()
    );
    let start = Instant::now();
    let mut held = Vec::new();
    for t in tasks {
        if let Ok(pair) = t.await {
            held.push(pair);
        }
    }
    let expected = (docs.len() * editors * (editors - 1)) as u64 * count;
    let deadline = Instant::now() + Duration::from_secs(30);
    while received.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    let got = received.load(Ordering::Relaxed);
    let samples = latencies.lock().map(|v| v.clone()).unwrap_or_default();
    Ok(YjsRun {
        got,
        expected,
        secs,
        samples,
    })
}

#[cfg(test)]
mod tests {
    use super::stamps;

    #[test]
    fn stamps_are_read_from_an_update_with_their_editor() {
        let mut got = Vec::new();
        stamps(b"\x01\x02T1733000000000000e2|xxT17e|T5e1|T99", |t, e| {
            got.push((t, e))
        });
        assert_eq!(got, vec![(1_733_000_000_000_000, 2), (5, 1)]);
    }
}
