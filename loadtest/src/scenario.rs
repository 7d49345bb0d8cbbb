//! `stoa-loadtest run SCENARIO [flags]`: one tool, one report format for every load.
//!
//! ```text
//! connect   --connections N --concurrency C      connect storm: N sockets, each upgrade +
//!                                                join timed; joins/s
//! fanout    --subscribers N --rate R --duration S one sender broadcasting R/s to N joined
//!                                                subscribers; delivery latency, deliveries/s
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
}

impl Recorder {
    fn new() -> Arc<Recorder> {
        Arc::new(Recorder {
            // 1 µs to 10 minutes, 3 significant figures.
            hist: Mutex::new(Histogram::new_with_bounds(1, 600_000_000, 3).expect("bounds")),
            ops: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        })
    }

    /// Folds a task's own histogram in (tasks record locally, so they do not contend).
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

fn local() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("bounds")
}

/// Prints `name t ops rate errors` every second until `stop`.
fn progress(name: &'static str, rec: Arc<Recorder>, stop: Arc<AtomicBool>) {
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
        .unwrap_or_else(|_| local());
    let ops = rec.ops.load(Ordering::Relaxed);
    let secs = elapsed.as_secs_f64();
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

/// A user and a workspace of theirs on `api`: the token and the workspace id.
async fn workspace(api: &str) -> Result<(Vec<String>, i64), Error> {
    let mut tokens = Vec::new();
    for i in 0..1 {
        let email = format!("load.{}.{i}@example.com", now_us());
        let user = http(
            api,
            "POST",
            "/api/v1/auth/register",
            None,
            &json!({"email": email, "password": "load test password", "display_name": "load"}),
        )
        .await?;
        tokens.push(
            user.1["access_token"]
                .as_str()
                .ok_or("no token")?
                .to_string(),
        );
    }
    let ws = http(
        api,
        "POST",
        "/api/v1/workspaces",
        Some(&tokens[0]),
        &json!({"name": "Load"}),
    )
    .await?;
    let id = ws.1["id"].as_i64().ok_or("no workspace id")?;
    Ok((tokens, id))
}

/// One HTTP/1.1 request on its own connection: status and JSON body (Null when empty).
async fn http(
    api: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &Value,
) -> Result<(u16, Value), Error> {
    let host = crate::authority(api);
    let mut stream = tokio::net::TcpStream::connect(&host).await?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).await?;
    let mut resp = Vec::new();
    stream.read_to_end(&mut resp).await?;
    let text = String::from_utf8_lossy(&resp);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("bad HTTP response")?;
    let (_, body) = text.split_once("\r\n\r\n").ok_or("bad HTTP response")?;
    let value = if body.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(body).unwrap_or(Value::Null)
    };
    Ok((status, value))
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
    let (tokens, ws) = workspace(api).await?;
    let topic = format!("workspace:{ws}");
    progress("connect", rec.clone(), stop.clone());
    let gate = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let held = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for _ in 0..n {
        let (api, token, topic, rec, gate, held) = (
            api.to_string(),
            tokens[0].clone(),
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
                    let mut h = local();
                    let _ = h.record(t.elapsed().as_micros() as u64);
                    rec.merge(&h);
                    rec.ops.fetch_add(1, Ordering::Relaxed);
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
    let (tokens, ws) = workspace(&apis[0]).await?;
    let topic = format!("workspace:{ws}");
    let done = Arc::new(AtomicBool::new(false));
    let mut subs = Vec::new();
    let gate = Arc::new(tokio::sync::Semaphore::new(256));
    let joined = Arc::new(tokio::sync::Barrier::new(n + 1));
    for i in 0..n {
        let (api, token, topic, rec, done, gate, joined) = (
            apis[i % apis.len()].clone(),
            tokens[0].clone(),
            topic.clone(),
            rec.clone(),
            done.clone(),
            gate.clone(),
            joined.clone(),
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
            let mut h = local();
            let mut buf = Vec::with_capacity(512);
            let mut merged = Instant::now();
            while !done.load(Ordering::Relaxed) {
                match tokio::time::timeout(Duration::from_millis(200), ws.read_text(&mut buf)).await
                {
                    Err(_) => continue,
                    Ok(Err(_)) => break,
                    Ok(Ok(())) => {
                        if let Some(t) = sent_at(&buf) {
                            let _ = h.record(now_us().saturating_sub(t).max(1));
                            rec.ops.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                if merged.elapsed() > Duration::from_millis(500) {
                    rec.merge(&h);
                    h.reset();
                    merged = Instant::now();
                }
            }
            rec.merge(&h);
        }));
    }
    joined.wait().await;
    progress("fanout", rec.clone(), stop.clone());
    let mut sender = Ws::connect(&apis[0], &tokens[0], None, false).await?;
    sender.join(&topic, false).await?;
    let pad = "x".repeat(size.saturating_sub(40));
    let started = Instant::now();
    let mut sent = 0u64;
    let mut buf = Vec::new();
    while started.elapsed() < duration {
        let due = Duration::from_secs_f64(sent as f64 / rate.max(0.001));
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        sent += 1;
        let frame = format!(
            r#"["1","{sent}","{topic}","broadcast",{{"t":{},"p":"{pad}"}}]"#,
            now_us()
        );
        sender.send_text(&frame).await?;
        // Read the replies as they come, so the sender's socket never fills.
        while let Ok(Ok(())) =
            tokio::time::timeout(Duration::from_millis(0), sender.read_text(&mut buf)).await
        {
        }
    }
    // Let the last broadcast arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    done.store(true, Ordering::Relaxed);
    for s in subs {
        let _ = s.await;
    }
    Ok(
        json!({"subscribers": n, "rate": rate, "size": size, "broadcasts": sent, "nodes": apis.len()}),
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
    let (tokens, ws) = workspace(api).await?;
    let topic = format!("workspace:{ws}");
    progress("presence", rec.clone(), stop.clone());
    let per_socket = rate / n.max(1) as f64;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..n {
        let (api, token, topic, rec) = (
            api.to_string(),
            tokens[0].clone(),
            topic.clone(),
            rec.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut ws = match Ws::connect(&api, &token, None, false).await {
                Ok(ws) => ws,
                Err(e) => return rec.error("connect", &e),
            };
            let mut h = local();
            let mut round = 0u64;
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
                rec.ops.fetch_add(1, Ordering::Relaxed);
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
    let (tokens, ws) = workspace(api).await?;
    progress("rest", rec.clone(), stop.clone());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let (api, token, rec) = (api.to_string(), tokens[0].clone(), rec.clone());
        tasks.push(tokio::spawn(async move {
            let mut h = local();
            let mut n = 0u64;
            while started.elapsed() < duration {
                n += 1;
                let title = format!("load {w}.{n}");
                let steps: [(&str, String, Value, u16); 1] = [(
                    "POST",
                    format!("/api/v1/workspaces/{ws}/documents"),
                    json!({"title": title, "content": "load"}),
                    201,
                )];
                let mut timed = |t: Instant, status: u16, want: u16, what: &str| {
                    if status == want {
                        let _ = h.record(t.elapsed().as_micros().max(1) as u64);
                        rec.ops.fetch_add(1, Ordering::Relaxed);
                    } else {
                        rec.error(what, &status);
                    }
                };
                let t = Instant::now();
                let (status, doc) =
                    match http(&api, steps[0].0, &steps[0].1, Some(&token), &steps[0].2).await {
                        Ok(r) => r,
                        Err(e) => {
                            rec.error("create", &e);
                            continue;
                        }
                    };
                timed(t, status, 201, "create");
                let Some(id) = doc["id"].as_i64() else {
                    continue;
                };
                let calls: [(&str, String, Value, u16, &str); 5] = [
                    (
                        "GET",
                        format!("/api/v1/documents/{id}"),
                        Value::Null,
                        200,
                        "read",
                    ),
                    (
                        "GET",
                        format!("/api/v1/workspaces/{ws}/documents?limit=20"),
                        Value::Null,
                        200,
                        "list",
                    ),
                    (
                        "PATCH",
                        format!("/api/v1/documents/{id}"),
                        json!({"title": format!("{title} (edited)")}),
                        200,
                        "update",
                    ),
                    (
                        "POST",
                        format!("/api/v1/documents/{id}/comments"),
                        json!({"body": "a comment"}),
                        201,
                        "comment",
                    ),
                    (
                        "DELETE",
                        format!("/api/v1/documents/{id}"),
                        Value::Null,
                        204,
                        "delete",
                    ),
                ];
                for (method, path, body, want, what) in calls {
                    let t = Instant::now();
                    match http(&api, method, &path, Some(&token), &body).await {
                        Ok((status, _)) => timed(t, status, want, what),
                        Err(e) => rec.error(what, &e),
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
    let (tokens, ws) = workspace(api).await?;
    let mut ids = Vec::new();
    for i in 0..docs {
        let (status, doc) = http(
            api,
            "POST",
            &format!("/api/v1/workspaces/{ws}/documents"),
            Some(&tokens[0]),
            &json!({"title": format!("yjs {i}"), "content": ""}),
        )
        .await?;
        if status != 201 {
            return Err(format!("document not created: {status}").into());
        }
        ids.push(doc["id"].as_i64().ok_or("no id")?);
    }
    progress("yjs", rec.clone(), stop.clone());
    let count = (duration.as_secs_f64() * rate).ceil().max(1.0) as u64;
    let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
    let done =
        crate::yjs_editors(api, &tokens[0], &ids, editors, count, rate, "/yjs", false).await?;
    let mut h = local();
    for s in &done.samples {
        let _ = h.record(u64::from(*s).max(1));
    }
    rec.merge(&h);
    rec.ops.fetch_add(done.got, Ordering::Relaxed);
    let observed = done.got;
    rec.errors
        .fetch_add(done.expected.saturating_sub(done.got), Ordering::Relaxed);
    Ok(
        json!({"docs": docs, "editors": editors, "rate": rate, "updates_each": count, "remote_updates": observed}),
    )
}
