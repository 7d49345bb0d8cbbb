//! `stoa-loadtest run SCENARIO [flags]`: one tool, one report format for every load.
//!
//! ```text
//! connect   --connections N --concurrency C      connect storm: N sockets, each upgrade +
//!                                                join timed; joins/s
//! fanout    --subscribers N --rate R --duration S one sender broadcasting R/s to N joined
//!           [--warmup S (2)] [--size B]          subscribers; delivery latency, deliveries/s
//!                                                (the warm-up's broadcasts are not timed)
//! presence  --connections N --rate R --duration S presence churn: N sockets joining and
//!                                                leaving one topic with presence, R joins/s
//!                                                in all; join latency
//! rest      --concurrency C --duration S         CRUD mix (create, read, list, update,
//!                                                comment, delete); request latency
//! yjs       --docs D --editors E --rate R --duration S
//!                                                E y-websocket editors on each of D new
//!                                                documents; remote update latency
//! cluster   --api URL1,URL2,… (+ fanout flags)   fanout with subscribers spread over the
//!                                                nodes and the sender on the first
//! ```
//!
//! Every scenario prints a progress line each second on stderr, and at the end one JSON
//! object on stdout (also written to `--json FILE`): counts, rate, errors and HDR histogram
//! percentiles (µs) of its latency.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{flag, now_us, sent_at, Error, Ws};

/// What every scenario counts: operations done (with their latency), errors.
struct Recorder {
    hist: Mutex<Histogram<u64>>,
    ops: AtomicU64,
    errors: AtomicU64,
    /// When the measured phase began (set up — registering, connecting subscribers — is
    /// not in the rate).
    measuring: Mutex<Option<Instant>>,
    /// When the last operation completed (µs since the epoch; 0: none counted one by one).
    last_op_us: AtomicU64,
}

impl Recorder {
    fn new() -> Arc<Recorder> {
        Arc::new(Recorder {
            // 1 µs to 10 minutes, 3 significant figures.
            hist: Mutex::new(histogram()),
            ops: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            measuring: Mutex::new(None),
            last_op_us: AtomicU64::new(0),
        })
    }

    /// One operation done.
    fn one(&self) {
        self.ops.fetch_add(1, Ordering::Relaxed);
        self.last_op_us.store(now_us(), Ordering::Relaxed);
    }

    /// Folds a task's own histogram in, once at its end: tasks record locally, so they do
    /// not contend (adding one histogram to another walks every bucket).
    fn merge(&self, local: &Histogram<u64>) {
        if let Ok(mut h) = self.hist.lock() {
            let _ = h.add(local);
        }
    }

    fn error(&self, what: &str, e: &dyn std::fmt::Display) {
        if self.errors.fetch_add(1, Ordering::Relaxed) < 3 {
            eprintln!("\n{what}: {e}");
        }
    }
}

/// How often a busy socket says it is alive (the server's limit is a minute of silence).
const HEARTBEAT: Duration = Duration::from_secs(25);

fn heartbeat(n: u64) -> String {
    format!(r#"[null,"hb{n}","phoenix","heartbeat",{{}}]"#)
}

/// The latency histogram every report uses: 1 µs to 10 minutes, 3 significant digits.
pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("bounds")
}

/// Prints `name t ops rate errors` every second until `stop`.
fn progress(name: &'static str, rec: Arc<Recorder>, stop: Arc<AtomicBool>) {
    if let Ok(mut m) = rec.measuring.lock() {
        *m = Some(Instant::now());
    }
    tokio::spawn(async move {
        let started = Instant::now();
        let mut last = 0;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            let ops = rec.ops.load(Ordering::Relaxed);
            eprint!(
                "\r{name}: {:>4.0}s  ops {ops:>10}  {:>9}/s  errors {}   ",
                started.elapsed().as_secs_f64(),
                ops - last,
                rec.errors.load(Ordering::Relaxed)
            );
            last = ops;
        }
        eprintln!();
    });
}

fn summary(name: &str, params: Value, rec: &Recorder, elapsed: Duration) -> Value {
    let h = rec
        .hist
        .lock()
        .map(|h| h.clone())
        .unwrap_or_else(|_| histogram());
    let ops = rec.ops.load(Ordering::Relaxed);
    // From the start of the measured phase (set-up excluded) to the last operation counted
    // (tearing down excluded).
    let last = rec.last_op_us.load(Ordering::Relaxed);
    let until_last = Duration::from_micros(now_us().saturating_sub(last));
    let secs = rec
        .measuring
        .lock()
        .ok()
        .and_then(|m| *m)
        .map_or(elapsed, |t| {
            let since = t.elapsed();
            if last > 0 {
                since.saturating_sub(until_last)
            } else {
                since
            }
        })
        .as_secs_f64();
    json!({
        "scenario": name,
        "params": params,
        "seconds": (secs * 1000.0).round() / 1000.0,
        "ops": ops,
        "ops_per_sec": if secs > 0.0 { (ops as f64 / secs).round() } else { 0.0 },
        "errors": rec.errors.load(Ordering::Relaxed),
        "latency_us": {
            "count": h.len(),
            "p50": h.value_at_quantile(0.50),
            "p90": h.value_at_quantile(0.90),
            "p99": h.value_at_quantile(0.99),
            "p999": h.value_at_quantile(0.999),
            "max": h.max(),
            "mean": h.mean().round(),
        },
    })
}

/// A load user's tokens, kept fresh: a task trades the refresh token for new ones before
/// the access token expires, so a run can last longer than a token lives. Sockets take
/// the new token too (`access_token` on a joined channel; Yjs sockets reconnect with it).
pub(crate) struct Credentials {
    token: Mutex<Arc<str>>,
    /// Bumped at each refresh: a socket that sent an older one sends the new one.
    generation: AtomicU64,
}

impl Credentials {
    pub(crate) fn token(&self) -> Arc<str> {
        self.token
            .lock()
            .map(|t| t.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// Starts refreshing: half-way through each access token's life.
    fn keep_fresh(self: &Arc<Self>, api: &str, refresh: String, lifetime: Duration) {
        let (me, api) = (Arc::downgrade(self), api.to_string());
        tokio::spawn(async move {
            let mut refresh = refresh;
            let mut every = lifetime / 2;
            loop {
                tokio::time::sleep(every.max(Duration::from_secs(1))).await;
                let Some(me) = me.upgrade() else { return };
                match http(
                    &api,
                    "POST",
                    "/api/v1/auth/refresh",
                    None,
                    &json!({"refresh_token": refresh}),
                )
                .await
                {
                    Ok((200, v)) => {
                        if let (Some(t), Some(r)) =
                            (v["access_token"].as_str(), v["refresh_token"].as_str())
                        {
                            *me.token.lock().unwrap_or_else(|e| e.into_inner()) = Arc::from(t);
                            refresh = r.to_string();
                            me.generation.fetch_add(1, Ordering::Relaxed);
                            every =
                                Duration::from_secs(v["expires_in"].as_u64().unwrap_or(900)) / 2;
                        }
                    }
                    // Tried again a second later (the node may be busy).
                    _ => every = Duration::from_secs(1),
                }
            }
        });
    }
}

/// The frame that hands a joined channel (join ref "1") a new access token.
fn token_frame(topic: &str, n: u64, token: &str) -> String {
    format!(r#"["1","at{n}","{topic}","access_token",{{"token":"{token}"}}]"#)
}

/// A new user and a workspace of theirs on `api`: the user's (refreshing) tokens and the
/// workspace id.
async fn workspace(api: &str) -> Result<(Arc<Credentials>, i64), Error> {
    let email = format!("load.{}@example.com", now_us());
    let (_, user) = http(
        api,
        "POST",
        "/api/v1/auth/register",
        None,
        &json!({"email": email, "password": "load test password", "display_name": "load"}),
    )
    .await?;
    let token = user["access_token"].as_str().ok_or("no token")?.to_string();
    let refresh = user["refresh_token"].as_str().ok_or("no refresh token")?;
    let lifetime = Duration::from_secs(user["expires_in"].as_u64().unwrap_or(900));
    let (_, ws) = http(
        api,
        "POST",
        "/api/v1/workspaces",
        Some(&token),
        &json!({"name": "Load"}),
    )
    .await?;
    let creds = Arc::new(Credentials {
        token: Mutex::new(Arc::from(token)),
        generation: AtomicU64::new(0),
    });
    creds.keep_fresh(api, refresh.to_string(), lifetime);
    Ok((creds, ws["id"].as_i64().ok_or("no workspace id")?))
}

/// One HTTP/1.1 request on its own connection: status and JSON body (Null when empty).
pub(crate) async fn http(
    api: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &Value,
) -> Result<(u16, Value), Error> {
    KeepAlive::new(api).call(method, path, token, body).await
}

pub async fn run(flags: &HashMap<String, String>, rest: &[String]) -> Result<(), Error> {
    let Some(name) = rest.first() else {
        return Err(
            "usage: stoa-loadtest run connect|fanout|presence|rest|yjs|cluster [flags]".into(),
        );
    };
    let apis: Vec<String> = flag(flags, "api", "http://127.0.0.1:8080".to_string())
        .split(',')
        .map(str::to_string)
        .collect();
    let duration = Duration::from_secs_f64(flag(flags, "duration", 10.0));
    let rec = Recorder::new();
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let (name, params): (&'static str, Value) = match name.as_str() {
        "connect" => ("connect", connect(&apis[0], flags, &rec, &stop).await?),
        "fanout" => (
            "fanout",
            fanout(&apis[..1], flags, duration, &rec, &stop).await?,
        ),
        "cluster" => {
            if apis.len() < 2 {
                return Err("cluster needs --api URL1,URL2,… (two nodes or more)".into());
            }
            (
                "cluster",
                fanout(&apis, flags, duration, &rec, &stop).await?,
            )
        }
        "presence" => (
            "presence",
            presence(&apis[0], flags, duration, &rec, &stop).await?,
        ),
        "rest" => ("rest", crud(&apis[0], flags, duration, &rec, &stop).await?),
        "yjs" => ("yjs", yjs(&apis[0], flags, duration, &rec, &stop).await?),
        other => return Err(format!("unknown scenario {other:?}").into()),
    };
    stop.store(true, Ordering::Relaxed);
    eprintln!(
        "\r{name}: done in {:.1}s  ops {}  errors {}",
        started.elapsed().as_secs_f64(),
        rec.ops.load(Ordering::Relaxed),
        rec.errors.load(Ordering::Relaxed)
    );
    let report = summary(name, params, &rec, started.elapsed());
    if let Some(file) = flags.get("json") {
        std::fs::write(file, format!("{report:#}\n"))?;
    }
    println!("{report}");
    Ok(())
}

async fn connect(
    api: &str,
    flags: &HashMap<String, String>,
    rec: &Arc<Recorder>,
    stop: &Arc<AtomicBool>,
) -> Result<Value, Error> {
    let n: usize = flag(flags, "connections", 1000);
    let concurrency: usize = flag(flags, "concurrency", 256);
    let (creds, ws) = workspace(api).await?;
    let token = creds.token().to_string();
    let topic = format!("workspace:{ws}");
    progress("connect", rec.clone(), stop.clone());
    let gate = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let held = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for _ in 0..n {
        let (api, token, topic, rec, gate, held) = (
            api.to_string(),
            token.clone(),
            topic.clone(),
            rec.clone(),
            gate.clone(),
            held.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await;
            let t = Instant::now();
            let result = async {
                let mut ws = Ws::connect(&api, &token, None, false).await?;
                ws.join(&topic, false).await?;
                Ok::<_, Error>(ws)
            }
            .await;
            match result {
                Ok(ws) => {
                    let mut h = histogram();
                    let _ = h.record(t.elapsed().as_micros() as u64);
                    rec.merge(&h);
                    rec.one();
                    held.lock().map(|mut v| v.push(ws)).ok();
                }
                Err(e) => rec.error("connect", &e),
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    Ok(json!({"connections": n, "concurrency": concurrency}))
}

async fn fanout(
    apis: &[String],
    flags: &HashMap<String, String>,
    duration: Duration,
    rec: &Arc<Recorder>,
    stop: &Arc<AtomicBool>,
) -> Result<Value, Error> {
    let n: usize = flag(flags, "subscribers", 1000);
    let rate: f64 = flag(flags, "rate", 10.0);
    let size: usize = flag(flags, "size", 64);
    let (creds, ws) = workspace(&apis[0]).await?;
    let token = creds.token().to_string();
    let topic = format!("workspace:{ws}");
    let mut subs = Vec::new();
    let gate = Arc::new(tokio::sync::Semaphore::new(256));
    let joined = Arc::new(tokio::sync::Barrier::new(n + 1));
    for i in 0..n {
        let (api, token, topic, rec, gate, joined, creds) = (
            apis[i % apis.len()].clone(),
            token.clone(),
            topic.clone(),
            rec.clone(),
            gate.clone(),
            joined.clone(),
            creds.clone(),
        );
        subs.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await;
            let mut ws = match Ws::connect(&api, &token, None, false).await {
                Ok(ws) => ws,
                Err(e) => {
                    rec.error("connect", &e);
                    joined.wait().await;
                    return;
                }
            };
            if let Err(e) = ws.join(&topic, false).await {
                rec.error("join", &e);
                joined.wait().await;
                return;
            }
            drop(permit);
            joined.wait().await;
            let mut h = histogram();
            let mut buf = Vec::with_capacity(512);
            // Until the sender's end marker (in order after every broadcast), or the socket
            // ends: no timer per read.
            let mut beat = Instant::now();
            let mut ended = false;
            let mut generation = creds.generation();
            while ws.read_text(&mut buf).await.is_ok() {
                if let Some(t) = sent_at(&buf) {
                    let _ = h.record(now_us().saturating_sub(t).max(1));
                    rec.one();
                } else if buf.windows(5).any(|w| w == b"\"end\"") {
                    ended = true;
                    break;
                }
                // The server closes a socket that sends nothing for a minute, and one whose
                // token has expired.
                if beat.elapsed() > HEARTBEAT {
                    if ws.send_text(&heartbeat(i as u64)).await.is_err() {
                        break;
                    }
                    if creds.generation() != generation {
                        generation = creds.generation();
                        let frame = token_frame(&topic, generation, &creds.token());
                        if ws.send_text(&frame).await.is_err() {
                            break;
                        }
                    }
                    beat = Instant::now();
                }
            }
            if !ended {
                rec.error("subscriber", &"socket ended before the last broadcast");
            }
            rec.merge(&h);
        }));
    }
    joined.wait().await;
    progress("fanout", rec.clone(), stop.clone());
    let mut sender = Ws::connect(&apis[0], &token, None, false).await?;
    sender.join(&topic, false).await?;
    // The replies are drained by a task of their own (a read cut short by a timer would
    // lose its place in the stream).
    let Ws {
        mut reader,
        mut writer,
        ..
    } = sender;
    let drain = tokio::spawn(async move {
        let mut scratch = vec![0u8; 16384];
        while matches!(reader.read(&mut scratch).await, Ok(n) if n > 0) {}
    });
    let pad = "x".repeat(size.saturating_sub(40));
    // Broadcasts of the warm-up carry no timestamp: neither counted nor timed.
    let warmup = Duration::from_secs_f64(flag(flags, "warmup", 2.0));
    let started = Instant::now();
    let mut sent = 0u64;
    let mut beat = Instant::now();
    let mut generation = creds.generation();
    let mut measuring = false;
    while started.elapsed() < warmup + duration {
        if !measuring && started.elapsed() >= warmup {
            measuring = true;
            if let Ok(mut m) = rec.measuring.lock() {
                *m = Some(Instant::now());
            }
        }
        let due = Duration::from_secs_f64(sent as f64 / rate.max(0.001));
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        sent += 1;
        let key = if measuring { "t" } else { "w" };
        let frame = format!(
            r#"["1","{sent}","{topic}","broadcast",{{"{key}":{},"p":"{pad}"}}]"#,
            now_us()
        );
        writer.send_text(&frame).await?;
        if beat.elapsed() > HEARTBEAT {
            writer.send_text(&heartbeat(sent)).await?;
            if creds.generation() != generation {
                generation = creds.generation();
                writer
                    .send_text(&token_frame(&topic, generation, &creds.token()))
                    .await?;
            }
            beat = Instant::now();
        }
    }
    let end = format!(r#"["1","end","{topic}","broadcast",{{"end":true}}]"#);
    writer.send_text(&end).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    for s in subs {
        if tokio::time::timeout_at(deadline, s).await.is_err() {
            rec.error("subscriber", &"no end marker within 30 s");
        }
    }
    drain.abort();
    Ok(
        json!({"subscribers": n, "rate": rate, "size": size, "broadcasts": sent,
               "warmup_secs": warmup.as_secs_f64(), "nodes": apis.len()}),
    )
}

async fn presence(
    api: &str,
    flags: &HashMap<String, String>,
    duration: Duration,
    rec: &Arc<Recorder>,
    stop: &Arc<AtomicBool>,
) -> Result<Value, Error> {
    let n: usize = flag(flags, "connections", 100);
    let rate: f64 = flag(flags, "rate", 100.0);
    let (creds, ws) = workspace(api).await?;
    let topic = format!("workspace:{ws}");
    progress("presence", rec.clone(), stop.clone());
    let per_socket = rate / n.max(1) as f64;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..n {
        let (api, creds, topic, rec) = (api.to_string(), creds.clone(), topic.clone(), rec.clone());
        tasks.push(tokio::spawn(async move {
            let mut ws = match Ws::connect(&api, &creds.token(), None, false).await {
                Ok(ws) => ws,
                Err(e) => return rec.error("connect", &e),
            };
            let mut h = histogram();
            let mut round = 0u64;
            let mut generation = creds.generation();
            while started.elapsed() < duration {
                let due = Duration::from_secs_f64(round as f64 / per_socket.max(0.001));
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
                round += 1;
                let t = Instant::now();
                if let Err(e) = ws.join(&topic, true).await {
                    rec.error("join", &e);
                    break;
                }
                let _ = h.record(t.elapsed().as_micros() as u64);
                rec.one();
                // A new token goes to the joined channel before the socket's expires.
                if creds.generation() != generation {
                    generation = creds.generation();
                    let frame = token_frame(&topic, generation, &creds.token());
                    if let Err(e) = ws.send_text(&frame).await {
                        rec.error("token", &e);
                        break;
                    }
                }
                let leave = format!(r#"["1","{round}l","{topic}","phx_leave",{{}}]"#);
                if let Err(e) = ws.send_text(&leave).await {
                    rec.error("leave", &e);
                    break;
                }
                // The leave's reply, so the next join reads its own.
                let mut buf = Vec::new();
                let marker = format!(r#""{round}l""#);
                loop {
                    if let Err(e) = ws.read_text(&mut buf).await {
                        rec.error("leave", &e);
                        return;
                    }
                    let text = String::from_utf8_lossy(&buf);
                    if text.contains("phx_reply") && text.contains(&marker) {
                        break;
                    }
                }
            }
            rec.merge(&h);
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    Ok(json!({"connections": n, "rate": rate}))
}

async fn crud(
    api: &str,
    flags: &HashMap<String, String>,
    duration: Duration,
    rec: &Arc<Recorder>,
    stop: &Arc<AtomicBool>,
) -> Result<Value, Error> {
    let concurrency: usize = flag(flags, "concurrency", 8);
    let (creds, ws) = workspace(api).await?;
    progress("rest", rec.clone(), stop.clone());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let (api, creds, rec) = (api.to_string(), creds.clone(), rec.clone());
        tasks.push(tokio::spawn(async move {
            let mut h = histogram();
            let mut conn = KeepAlive::new(&api);
            let mut n = 0u64;
            while started.elapsed() < duration {
                n += 1;
                let token = creds.token();
                let title = format!("load {w}.{n}");
                let create = (
                    "POST",
                    format!("/api/v1/workspaces/{ws}/documents"),
                    json!({"title": title, "content": "load"}),
                );
                let t = Instant::now();
                let doc = match conn
                    .call(create.0, &create.1, Some(&*token), &create.2)
                    .await
                {
                    Ok((201, doc)) => {
                        let _ = h.record(t.elapsed().as_micros().max(1) as u64);
                        rec.one();
                        doc
                    }
                    Ok((status, _)) => {
                        rec.error("create", &status);
                        continue;
                    }
                    Err(e) => {
                        rec.error("create", &e);
                        continue;
                    }
                };
                let Some(id) = doc["id"].as_i64() else {
                    continue;
                };
                let calls: [(&str, String, Value, u16); 5] = [
                    ("GET", format!("/api/v1/documents/{id}"), Value::Null, 200),
                    (
                        "GET",
                        format!("/api/v1/workspaces/{ws}/documents?limit=20"),
                        Value::Null,
                        200,
                    ),
                    (
                        "PATCH",
                        format!("/api/v1/documents/{id}"),
                        json!({"title": format!("{title} (edited)")}),
                        200,
                    ),
                    (
                        "POST",
                        format!("/api/v1/documents/{id}/comments"),
                        json!({"body": "a comment"}),
                        201,
                    ),
                    (
                        "DELETE",
                        format!("/api/v1/documents/{id}"),
                        Value::Null,
                        204,
                    ),
                ];
                for (method, path, body, want) in calls {
                    let t = Instant::now();
                    match conn.call(method, &path, Some(&*token), &body).await {
                        Ok((status, _)) if status == want => {
                            let _ = h.record(t.elapsed().as_micros().max(1) as u64);
                            rec.one();
                        }
                        Ok((status, _)) => rec.error(&format!("{method} {path}"), &status),
                        Err(e) => rec.error(&format!("{method} {path}"), &e),
                    }
                }
            }
            rec.merge(&h);
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    Ok(json!({"concurrency": concurrency}))
}

/// D new documents, E editors on each, the existing `yjs` generator's protocol: every
/// remote update's latency from the timestamp in its text.
async fn yjs(
    api: &str,
    flags: &HashMap<String, String>,
    duration: Duration,
    rec: &Arc<Recorder>,
    stop: &Arc<AtomicBool>,
) -> Result<Value, Error> {
    let docs: usize = flag(flags, "docs", 10);
    let editors: usize = flag(flags, "editors", 3);
    let rate: f64 = flag(flags, "rate", 5.0);
    let (creds, ws) = workspace(api).await?;
    let token = creds.token().to_string();
    let mut ids = Vec::new();
    for i in 0..docs {
        let (status, doc) = http(
            api,
            "POST",
            &format!("/api/v1/workspaces/{ws}/documents"),
            Some(&token),
            &json!({"title": format!("yjs {i}"), "content": ""}),
        )
        .await?;
        if status != 201 {
            return Err(format!("document not created: {status}").into());
        }
        ids.push(doc["id"].as_i64().ok_or("no id")?);
    }
    progress("yjs", rec.clone(), stop.clone());
    let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
    // A Yjs socket lives as long as the token it was opened with: a long run is a series
    // of sessions of at most five minutes, each opened with the token of the moment.
    const SESSION: f64 = 300.0;
    let total = duration.as_secs_f64();
    let (mut left, mut observed, mut count, mut secs) = (total, 0u64, 0u64, 0f64);
    let mut h = histogram();
    while left > 0.0 {
        let this = left.min(SESSION);
        left -= this;
        let n = (this * rate).ceil().max(1.0) as u64;
        count += n;
        let token = creds.token();
        let done = crate::yjs_editors(api, &token, &ids, editors, n, rate, "/yjs", false).await?;
        for s in &done.samples {
            let _ = h.record(u64::from(*s).max(1));
        }
        rec.ops.fetch_add(done.got, Ordering::Relaxed);
        rec.errors
            .fetch_add(done.expected.saturating_sub(done.got), Ordering::Relaxed);
        observed += done.got;
        secs += done.secs;
    }
    rec.merge(&h);
    // The editors' own window: from the first update sent to the last one received.
    if let Ok(mut m) = rec.measuring.lock() {
        *m = Instant::now().checked_sub(Duration::from_secs_f64(secs));
    }
    rec.last_op_us.store(now_us(), Ordering::Relaxed);
    let _ = token;
    Ok(
        json!({"docs": docs, "editors": editors, "rate": rate, "updates_each": count, "remote_updates": observed}),
    )
}

/// One keep-alive HTTP/1.1 connection, opened again when the server closes it.
pub(crate) struct KeepAlive {
    host: String,
    stream: Option<tokio::io::BufReader<tokio::net::TcpStream>>,
}

impl KeepAlive {
    pub(crate) fn new(api: &str) -> KeepAlive {
        KeepAlive {
            host: crate::authority(api),
            stream: None,
        }
    }

    pub(crate) async fn call(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> Result<(u16, Value), Error> {
        use tokio::io::AsyncBufReadExt;
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let body = if body.is_null() {
            String::new()
        } else {
            body.to_string()
        };
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\n\r\n{body}",
            self.host,
            body.len()
        );
        for attempt in 0..2 {
            if self.stream.is_none() {
                let s = tokio::net::TcpStream::connect(&self.host).await?;
                s.set_nodelay(true)?;
                self.stream = Some(tokio::io::BufReader::new(s));
            }
            let Some(stream) = self.stream.as_mut() else {
                continue;
            };
            let result: Result<(u16, Value, bool), Error> = async {
                stream.get_mut().write_all(req.as_bytes()).await?;
                let mut line = String::new();
                if stream.read_line(&mut line).await? == 0 {
                    return Err("closed".into());
                }
                let status: u16 = line
                    .split_whitespace()
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .ok_or("bad status line")?;
                let (mut length, mut close) = (0usize, false);
                loop {
                    line.clear();
                    stream.read_line(&mut line).await?;
                    let header = line.trim_end();
                    if header.is_empty() {
                        break;
                    }
                    if let Some((name, value)) = header.split_once(':') {
                        if name.eq_ignore_ascii_case("content-length") {
                            length = value.trim().parse().unwrap_or(0);
                        } else if name.eq_ignore_ascii_case("connection") {
                            close = value.trim().eq_ignore_ascii_case("close");
                        }
                    }
                }
                let mut buf = vec![0; length];
                stream.read_exact(&mut buf).await?;
                let value = serde_json::from_slice(&buf).unwrap_or(Value::Null);
                Ok((status, value, close))
            }
            .await;
            match result {
                Ok((status, value, close)) => {
                    if close {
                        self.stream = None;
                    }
                    return Ok((status, value));
                }
                // A kept connection the server closed meanwhile: once more on a new one.
                Err(e) if attempt == 0 => {
                    self.stream = None;
                    let _ = e;
                }
                Err(e) => return Err(e),
            }
        }
        Err("no connection".into())
    }
}
