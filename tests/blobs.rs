//! The blob store's conformance suite: the same checks against the `stoa` binary keeping
//! attachments in a directory and in an S3-compatible service (moto's server, from PyPI,
//! started by the test in `.ci/venv`):
//! - a 1 GiB file streamed in and out, its SHA-256 checked both ways, with the server's RSS
//!   read from `/proc` throughout (it must stay flat: the file never sits in memory), a
//!   range from its middle, and on S3 an object made of many parts (a multipart upload);
//! - the quota, by `Content-Length` and mid-stream, with nothing left behind;
//! - a server killed (-9) halfway through an upload: after a restart, the sweep removes
//!   what it had stored;
//! - a server killed between a deletion's commit and its blob's removal (S3 made unreachable
//!   through a proxy the test holds; in a directory, a directory standing where the file
//!   was): after a restart the sweep removes it;
//! - `stoa backup`, `restore` and `blobs check` (a directory).

#[path = "common/binary.rs"]
mod binary;
#[path = "common/http.rs"]
mod http;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const GIB: u64 = 1 << 30;
const BUCKET: &str = "stoa-blobs";

/// moto's S3 server on a free port, stopped when dropped.
struct Moto {
    child: Child,
    port: u16,
}

impl Moto {
    fn start() -> Option<Moto> {
        let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/venv/bin/moto_server");
        if !bin.exists() {
            binary::missing(&format!(
                "moto's S3 server ({}; .ci/run installs it)",
                bin.display()
            ));
            return None;
        }
        let port = free_port();
        let child = Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let moto = Moto { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        let r = http::send(port, "PUT", &format!("/{BUCKET}"), &[], b"");
        assert_eq!(r.status, 200, "bucket: {}", r.text());
        Some(moto)
    }

    /// The bucket's objects: key and ETag.
    fn objects(&self) -> Vec<(String, String)> {
        let r = http::send(
            self.port,
            "GET",
            &format!("/{BUCKET}?list-type=2"),
            &[],
            b"",
        );
        assert_eq!(r.status, 200);
        let text = r.text();
        text.split("<Contents>")
            .skip(1)
            .map(|c| {
                let tag = |t: &str| {
                    c.split(&format!("<{t}>"))
                        .nth(1)
                        .and_then(|s| s.split(&format!("</{t}>")).next())
                        .unwrap_or_default()
                        .replace("&quot;", "\"")
                };
                (tag("Key"), tag("ETag"))
            })
            .collect()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A TCP proxy to moto the test can cut: while cut, connections are accepted and closed at
/// once and open ones are dropped, as a store that has gone away.
struct Proxy {
    port: u16,
    cut: Arc<AtomicBool>,
}

impl Proxy {
    fn to(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let flag = cut.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if flag.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let flag = flag.clone();
                    std::thread::spawn(move || {
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            match from.read(&mut buf) {
                                Ok(n) if n > 0 && !flag.load(Ordering::SeqCst) => {
                                    if to.write_all(&buf[..n]).is_err() {
                                        break;
                                    }
                                }
                                _ => break,
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Both);
                        let _ = from.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Proxy { port, cut }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Directory,
    S3,
}

/// The binary in a data directory of its own, kept across restarts.
struct Stoa {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    child: Option<Child>,
    port: u16,
}

impl Stoa {
    fn new(env: Vec<(String, String)>) -> Stoa {
        let mut stoa = Stoa {
            dir: tempfile::tempdir().unwrap(),
            env,
            child: None,
            port: 0,
        };
        stoa.start();
        stoa
    }

    fn start(&mut self) {
        let mut cmd = binary::server(self.dir.path());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("stoa starts");
        self.port = binary::listening(&mut child).port;
        self.child = Some(child);
    }

    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    fn blob_dir(&self) -> PathBuf {
        self.dir.path().join("data/blobs")
    }

    /// Keys the outbox holds (read from the database file beside the server).
    fn outbox(&self) -> Vec<String> {
        let db = self.dir.path().join("data/stoa.db");
        let out = Command::new("python3")
            .args([
                "-c",
                "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); \
                 print('\\n'.join(r[0] for r in c.execute('select blob_key from blob_deletions')))",
                db.to_str().unwrap(),
            ])
            .output()
            .expect("python3 reads the database");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }

    fn json(&self, method: &str, path: &str, token: Option<&str>, body: Value) -> http::Resp {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(a) = &auth {
            headers.push(("Authorization", a.as_str()));
        }
        http::send(
            self.port,
            method,
            path,
            &headers,
            body.to_string().as_bytes(),
        )
    }

    /// A user, their workspace and a document in it: (token, workspace, document).
    fn owner_with_document(&self) -> (String, i64, i64) {
        let r = self.json(
            "POST",
            "/api/v1/auth/register",
            None,
            json!({"email": "owner@example.com", "password": "correct horse battery", "display_name": "Owner"}),
        );
        assert_eq!(r.status, 201, "{}", r.text());
        let token = r.value()["access_token"].as_str().unwrap().to_string();
        let r = self.json(
            "POST",
            "/api/v1/workspaces",
            Some(&token),
            json!({"name": "W"}),
        );
        let ws = r.value()["id"].as_i64().unwrap();
        let r = self.json(
            "POST",
            &format!("/api/v1/workspaces/{ws}/documents"),
            Some(&token),
            json!({"title": "Files"}),
        );
        let doc = r.value()["id"].as_i64().unwrap();
        (token, ws, doc)
    }
}

impl Drop for Stoa {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The server's resident memory (kB), from outside.
fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// Samples the RSS of `pid` until stopped; the highest seen.
struct RssWatch {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssWatch {
    fn of(pid: u32) -> RssWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(rss_kb(pid)));
        let (s, p) = (stop.clone(), peak.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                p.fetch_max(rss_kb(pid), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        RssWatch {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    fn peak_kb(mut self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.peak.load(Ordering::SeqCst)
    }
}

/// Deterministic bytes that begin as a PDF (an allowed type) and do not compress.
struct Source {
    state: u64,
    first: bool,
}

impl Source {
    fn new(seed: u64) -> Source {
        Source {
            state: seed | 1,
            first: true,
        }
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for word in buf.chunks_mut(8) {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            let bytes = self.state.to_le_bytes();
            word.copy_from_slice(&bytes[..word.len()]);
        }
        if std::mem::take(&mut self.first) {
            buf[..9].copy_from_slice(b"%PDF-1.7\n");
        }
    }
}

/// Uploads `size` bytes from `source`, 1 MiB at a time, with a Content-Length (or chunked,
/// without one); stops after `stop_after` bytes if given (the connection left open). The
/// response (if the upload was finished), the SHA-256 sent and the MB/s.
fn upload(
    port: u16,
    token: &str,
    doc: i64,
    size: u64,
    chunked: bool,
    stop_after: Option<u64>,
) -> (Option<http::Resp>, String, f64, TcpStream) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(300))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(60))).unwrap();
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_string()
    } else {
        format!("Content-Length: {size}")
    };
    write!(
        s,
        "POST /api/v1/documents/{doc}/attachments?name=big.pdf HTTP/1.1\r\nHost: localhost\r\n\
         Authorization: Bearer {token}\r\n{framing}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut source = Source::new(size);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut sent = 0u64;
    let started = Instant::now();
    while sent < size {
        if stop_after.is_some_and(|n| sent >= n) {
            return (None, String::new(), 0.0, s);
        }
        if answered(&s) {
            // Refused before the end (413): the answer is waiting.
            break;
        }
        let n = (size - sent).min(buf.len() as u64) as usize;
        source.fill(&mut buf[..n]);
        hasher.update(&buf[..n]);
        let written = if chunked {
            write!(s, "{n:x}\r\n")
                .and_then(|_| s.write_all(&buf[..n]))
                .and_then(|_| s.write_all(b"\r\n"))
        } else {
            s.write_all(&buf[..n])
        };
        if written.is_err() {
            // Refused before the end (413): the answer is waiting.
            break;
        }
        sent += n as u64;
    }
    if chunked && sent == size {
        let _ = s.write_all(b"0\r\n\r\n");
    }
    let resp = http::read_response(&mut s);
    let secs = started.elapsed().as_secs_f64();
    let sha = hex(&hasher.finalize());
    (Some(resp), sha, size as f64 / secs / 1e6, s)
}

/// Whether the server has answered already (without taking the answer).
fn answered(s: &TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let ready = matches!(s.peek(&mut [0u8; 1]), Ok(n) if n > 0);
    s.set_nonblocking(false).unwrap();
    ready
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Downloads an attachment (with `range`, if given), hashing it as it comes: status, the
/// response's head, bytes read, their SHA-256, MB/s.
fn download(
    port: u16,
    token: &str,
    id: i64,
    range: Option<&str>,
) -> (u16, String, u64, String, f64) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(300))).unwrap();
    let range = range.map(|r| format!("Range: {r}\r\n")).unwrap_or_default();
    write!(
        s,
        "GET /api/v1/attachments/{id}/content HTTP/1.1\r\nHost: localhost\r\n\
         Authorization: Bearer {token}\r\n{range}Connection: close\r\n\r\n"
    )
    .unwrap();
    let started = Instant::now();
    let mut reader = BufReader::with_capacity(1 << 20, s);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" || line.is_empty() {
            break;
        }
        head.push_str(&line);
    }
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut hasher = Sha256::new();
    let mut total = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    let secs = started.elapsed().as_secs_f64();
    (
        status,
        head,
        total,
        hex(&hasher.finalize()),
        total as f64 / secs / 1e6,
    )
}

/// The server's environment for a store of `kind` (S3 through `s3_port`).
fn env_for(kind: Kind, s3_port: Option<u16>, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vec![
        (
            "STOA_STORAGE__MAX_FILE_BYTES".into(),
            (GIB + (GIB >> 2)).to_string(),
        ),
        (
            "STOA_STORAGE__WORKSPACE_QUOTA_BYTES".into(),
            (GIB + (GIB >> 1)).to_string(),
        ),
    ];
    if kind == Kind::S3 {
        let port = s3_port.unwrap();
        env.extend([
            ("STOA_STORAGE__S3_BUCKET".into(), BUCKET.into()),
            (
                "STOA_STORAGE__S3_ENDPOINT".into(),
                format!("http://127.0.0.1:{port}"),
            ),
            ("STOA_STORAGE__S3_ACCESS_KEY_ID".into(), "test".into()),
            ("STOA_STORAGE__S3_SECRET_ACCESS_KEY".into(), "test".into()),
        ]);
    }
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

/// What the store holds: (key, ETag) on S3; files (staged parts included) in a directory.
fn stored(kind: Kind, stoa: &Stoa, moto: Option<&Moto>) -> Vec<(String, String)> {
    match kind {
        Kind::S3 => moto.unwrap().objects(),
        Kind::Directory => {
            fn walk(dir: &Path, out: &mut Vec<(String, String)>) {
                for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                    if e.path().is_dir() {
                        walk(&e.path(), out);
                    } else {
                        out.push((e.path().display().to_string(), String::new()));
                    }
                }
            }
            let mut out = Vec::new();
            walk(&stoa.blob_dir(), &mut out);
            out
        }
    }
}

/// Waits (with a deadline) until the outbox is empty and the store holds `n` blobs.
fn swept_to(kind: Kind, stoa: &Stoa, moto: Option<&Moto>, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (outbox, now) = (stoa.outbox(), stored(kind, stoa, moto));
        if outbox.is_empty() && now.len() == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{kind:?}: outbox {outbox:?}, store {now:?} (wanted {n} blobs)"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn conformance(kind: Kind) {
    let moto = match kind {
        Kind::S3 => match Moto::start() {
            Some(m) => Some(m),
            None => return,
        },
        Kind::Directory => None,
    };
    // S3 through a proxy the test can cut (the store going away).
    let proxy = moto.as_ref().map(|m| Proxy::to(m.port));
    // A long sweep interval: every removal seen here is a nudge's or a start's.
    let mut stoa = Stoa::new(env_for(
        kind,
        proxy.as_ref().map(|p| p.port),
        &[
            ("STOA_STORAGE__SWEEP_EVERY_SECS", "3600"),
            ("STOA_STORAGE__UPLOAD_GRACE_SECS", "1"),
        ],
    ));
    let (token, ws, doc) = stoa.owner_with_document();

    // 1 GiB in, with the server's memory watched from outside.
    let before = rss_kb(stoa.pid());
    let watch = RssWatch::of(stoa.pid());
    let (resp, sha, up_mbs, _) = upload(stoa.port, &token, doc, GIB, false, None);
    let peak = watch.peak_kb();
    let resp = resp.unwrap();
    assert_eq!(resp.status, 201, "{}", resp.text());
    let a = resp.value();
    assert_eq!(a["size"], GIB);
    assert_eq!(a["sha256"], sha.as_str());
    assert_eq!(a["content_type"], "application/pdf");
    let id = a["id"].as_i64().unwrap();
    let grew_mib = peak.saturating_sub(before) / 1024;
    eprintln!(
        "{kind:?}: 1 GiB upload at {up_mbs:.0} MB/s; RSS {} MiB before, peak {} MiB",
        before / 1024,
        peak / 1024
    );
    assert!(
        grew_mib < 96,
        "{kind:?}: the server grew by {grew_mib} MiB while a 1 GiB file went in"
    );
    let blobs = stored(kind, &stoa, moto.as_ref());
    assert_eq!(blobs.len(), 1, "{blobs:?}");
    if kind == Kind::S3 {
        // A multipart upload's ETag is the parts' digest and their count.
        let etag = &blobs[0].1;
        let parts: u32 = etag
            .trim_matches('"')
            .rsplit_once('-')
            .and_then(|(_, n)| n.parse().ok())
            .unwrap_or(0);
        assert!(parts >= 100, "{etag}: not a multipart upload of ≥100 parts");
    }

    // …and out: the same bytes, memory flat again.
    let before = rss_kb(stoa.pid());
    let watch = RssWatch::of(stoa.pid());
    let (status, head, len, got, down_mbs) = download(stoa.port, &token, id, None);
    let peak = watch.peak_kb();
    assert_eq!((status, len), (200, GIB), "{head}");
    assert_eq!(got, sha);
    eprintln!(
        "{kind:?}: 1 GiB download at {down_mbs:.0} MB/s; RSS {} MiB before, peak {} MiB",
        before / 1024,
        peak / 1024
    );
    assert!(
        peak.saturating_sub(before) / 1024 < 96,
        "{kind:?}: grew while serving"
    );
    // A range from the middle: the same bytes as the source has there.
    let (start, n) = (GIB / 2 + 12_345, 3 << 20);
    let (status, head, len, got, _) = download(
        stoa.port,
        &token,
        id,
        Some(&format!("bytes={start}-{}", start + n - 1)),
    );
    assert_eq!((status, len), (206, n), "{head}");
    assert!(
        head.contains(&format!("bytes {start}-{}/{GIB}", start + n - 1)),
        "{head}"
    );
    let mut source = Source::new(GIB);
    let mut whole = vec![0u8; (start + n) as usize];
    for chunk in whole.chunks_mut(1 << 20) {
        source.fill(chunk);
    }
    assert_eq!(got, hex(&Sha256::digest(&whole[start as usize..])));
    drop(whole);

    // The quota (1.5 GiB) has room for 0.5 GiB more: refused by Content-Length at once, and
    // mid-stream without one; nothing of either is kept.
    let (resp, ..) = upload(stoa.port, &token, doc, 600 << 20, false, None);
    let resp = resp.unwrap();
    assert_eq!(
        (resp.status, resp.value()["code"].clone()),
        (413, json!("quota_exceeded"))
    );
    let (resp, ..) = upload(stoa.port, &token, doc, 600 << 20, true, None);
    let resp = resp.unwrap();
    assert_eq!(
        (resp.status, resp.value()["code"].clone()),
        (413, json!("quota_exceeded"))
    );
    swept_to(kind, &stoa, moto.as_ref(), 1);

    // Killed halfway through an upload: after a restart, what it stored is swept (the
    // upload's grace is 1 s here).
    let (_, _, _, open) = upload(stoa.port, &token, doc, 200 << 20, false, Some(40 << 20));
    std::thread::sleep(Duration::from_millis(300));
    stoa.kill9();
    drop(open);
    assert_eq!(stoa.outbox().len(), 1, "the cut-off upload's reservation");
    std::thread::sleep(Duration::from_millis(1100));
    stoa.start();
    swept_to(kind, &stoa, moto.as_ref(), 1);

    // The document goes (committed: 204) while the store cannot remove its blob: S3 cut
    // off, or in a directory a non-empty directory where the file was (which no one, root
    // included, can remove as a file). The server dies before the removal could happen.
    let blob = stored(kind, &stoa, moto.as_ref())[0].0.clone();
    let aside = stoa.dir.path().join("aside");
    match &proxy {
        Some(p) => p.cut.store(true, Ordering::SeqCst),
        None => {
            std::fs::rename(&blob, &aside).unwrap();
            std::fs::create_dir_all(Path::new(&blob).join("in-the-way")).unwrap();
        }
    }
    let r = stoa.json(
        "DELETE",
        &format!("/api/v1/documents/{doc}"),
        Some(&token),
        json!(null),
    );
    assert_eq!(r.status, 204, "{}", r.text());
    stoa.kill9();
    assert_eq!(stoa.outbox().len(), 1, "the outbox names the blob");
    // The store back as it was, the blob still in it; a restart's sweep removes it.
    match &proxy {
        Some(p) => p.cut.store(false, Ordering::SeqCst),
        None => {
            std::fs::remove_dir_all(&blob).unwrap();
            std::fs::rename(&aside, &blob).unwrap();
        }
    }
    assert_eq!(
        stored(kind, &stoa, moto.as_ref()).len(),
        1,
        "the blob outlived the server"
    );
    stoa.start();
    swept_to(kind, &stoa, moto.as_ref(), 0);
    let r = stoa.json(
        "GET",
        &format!("/api/v1/workspaces/{ws}/attachments/usage"),
        Some(&token),
        json!(null),
    );
    assert_eq!(r.value()["bytes"], 0);
}

#[test]
fn a_directory_store_streams_a_gibibyte_keeps_to_its_quota_and_leaves_no_orphans() {
    conformance(Kind::Directory);
}

#[test]
fn an_s3_store_streams_a_gibibyte_in_parts_keeps_to_its_quota_and_leaves_no_orphans() {
    conformance(Kind::S3);
}

#[test]
fn backup_and_restore_say_where_the_bytes_are_and_blobs_check_finds_what_a_restore_leaves() {
    let mut stoa = Stoa::new(Vec::new());
    let (token, _, doc) = stoa.owner_with_document();
    let auth = format!("Bearer {token}");
    let (port, dir) = (stoa.port, stoa.dir.path().to_path_buf());
    let upload = |name: &str, text: &str| {
        let r = http::send(
            port,
            "POST",
            &format!("/api/v1/documents/{doc}/attachments?name={name}"),
            &[("Authorization", &auth)],
            text.as_bytes(),
        );
        assert_eq!(r.status, 201, "{}", r.text());
        r.value()["id"].as_i64().unwrap()
    };
    let command = |args: &[&str]| -> Value {
        let out = binary::bare()
            .current_dir(&dir)
            .args(args)
            .output()
            .expect("stoa runs");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("JSON")
    };
    let kept = upload("kept.txt", "in the backup");
    let backup = dir.join("backup.db");
    let b = command(&["backup", backup.to_str().unwrap()]);
    assert_eq!(b["blobs"]["in_backup"], false);
    assert_eq!(b["blobs"]["attachments"], 1);
    assert_eq!(b["blobs"]["bytes"], 13);
    assert!(b["blobs"]["store"]
        .as_str()
        .unwrap()
        .starts_with("directory "));
    assert!(b["blobs"]["note"]
        .as_str()
        .unwrap()
        .contains("stoa blobs check"));

    // After the backup: one file more, and the backed-up one deleted (its blob removed).
    let later = upload("later.txt", "after the backup");
    let r = stoa.json(
        "DELETE",
        &format!("/api/v1/attachments/{kept}"),
        Some(&token),
        json!(null),
    );
    assert_eq!(r.status, 204);
    swept_to(Kind::Directory, &stoa, None, 1);
    let c = command(&["blobs", "check"]);
    assert_eq!(
        (c["attachments"].clone(), c["blobs"].clone()),
        (json!(1), json!(1))
    );
    assert_eq!(
        (c["missing"].clone(), c["orphans"].clone()),
        (json!([]), json!([]))
    );

    // The backup restored: its record's bytes are missing, the later file's bytes orphaned.
    stoa.kill9();
    let r = command(&["restore", backup.to_str().unwrap()]);
    assert_eq!(r["blobs"]["attachments"], 1);
    let c = command(&["blobs", "check"]);
    let missing = c["missing"].as_array().unwrap();
    assert_eq!(missing.len(), 1, "{c}");
    assert_eq!(missing[0]["attachment_id"], kept);
    let orphans = c["orphans"].as_array().unwrap();
    assert_eq!(orphans.len(), 1, "{c}");
    assert_eq!(orphans[0]["bytes"], 16);
    assert_eq!(c["removed"], 0);
    let c = command(&["blobs", "check", "--remove-orphans"]);
    assert_eq!(c["removed"], 1);
    let c = command(&["blobs", "check"]);
    assert_eq!(
        (c["blobs"].clone(), c["orphans"].clone()),
        (json!(0), json!([]))
    );

    // The server again: the record without bytes answers 404 with a reason, not a 500.
    stoa.start();
    let r = http::send(
        stoa.port,
        "GET",
        &format!("/api/v1/attachments/{kept}/content"),
        &[("Authorization", &auth)],
        b"",
    );
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(
        r.text().contains("missing from the blob store"),
        "{}",
        r.text()
    );
    let _ = later;
}
