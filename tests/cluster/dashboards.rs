//! The dashboards against the real thing: Debian's Prometheus scrapes a two-node cluster
//! under a small load of every kind (REST writes and errors, joins, broadcasts and events
//! across nodes, presence, Yjs edits), loads the alert rules, and every panel query of
//! every dashboard in `grafana/dashboards` must parse and return data
//! (`tests/ops/check_dashboards.py` asks Prometheus each one).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use yrs::sync::{Message, SyncMessage};
use yrs::updates::encoder::Encode;
use yrs::{ReadTxn, StateVector, Text, Transact};

use crate::harness::Cluster;
use crate::support::{Got, RawWs, Server, PATIENCE};

const BINARY: u8 = 0x2;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Prometheus on a free port, scraping `targets` every second with Stoa's alert rules.
struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(targets: &[u16]) -> Option<Prometheus> {
        let bin = "/usr/bin/prometheus";
        if !std::path::Path::new(bin).exists() {
            let ci = crate::common::binary::ci();
            assert!(!ci, "the dashboard test needs Debian's prometheus under CI");
            eprintln!("SKIPPED: the dashboard test needs prometheus (apt-get install prometheus)");
            return None;
        }
        let dir = tempfile::tempdir().ok()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let targets: Vec<String> = targets.iter().map(|p| format!("'127.0.0.1:{p}'")).collect();
        let rules = repo().join("grafana/alerts/stoa.rules.yml");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files: ['{}']\n\
             scrape_configs:\n  - job_name: stoa\n    static_configs:\n      - targets: [{}]\n",
            rules.display(),
            targets.join(", ")
        );
        let file = dir.path().join("prometheus.yml");
        std::fs::write(&file, config).ok()?;
        let child = Command::new(bin)
            .arg(format!("--config.file={}", file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus starts");
        let p = Prometheus {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + PATIENCE;
        while p.get("/-/ready").is_none_or(|(status, _)| status != 200) {
            assert!(Instant::now() < deadline, "prometheus never became ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(p)
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A GET on Prometheus's HTTP API: status and body.
    fn get(&self, path: &str) -> Option<(u16, String)> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(PATIENCE)).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        let status = out.split_whitespace().nth(1)?.parse().ok()?;
        let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
        Some((status, body))
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn yjs_editor(server: &Server, doc: i64, token: &str) -> RawWs {
    let mut ws = RawWs::open(server, &format!("/yjs/{doc}?token={token}"))
        .unwrap_or_else(|r| panic!("upgrade refused: {} {}", r.status, r.text()));
    match ws.read(PATIENCE) {
        Some(Got::Binary(b)) => assert_eq!(&b[..2], &[0, 0], "sync step 1 first"),
        other => panic!("expected the server's sync step 1, got {other:?}"),
    }
    ws
}

/// One round of every kind of traffic the dashboards show.
struct Load {
    a: RawWs,
    /// The join ref of `a`'s workspace channel.
    a_ref: String,
    b: RawWs,
    yjs: RawWs,
    editor: yrs::Doc,
    topic: String,
    ws: i64,
    doc: i64,
    round: u64,
}

impl Load {
    fn round(&mut self, nodes: &[Server], alice: &str, bob: &str) {
        self.round += 1;
        let r = self.round;
        // A broadcast on node 0 reaches bob on node 1 over the bus.
        self.a.push(
            Some(&self.a_ref),
            &self.topic,
            "broadcast",
            json!({"round": r}),
        );
        // A write on node 1 reaches alice on node 0 as an event.
        let c = nodes[1].json(
            "POST",
            &format!("/api/v1/documents/{}/comments", self.doc),
            Some(bob),
            json!({"body": format!("comment {r}")}),
        );
        assert_eq!(c.status, 201, "{}", c.text());
        // Errors and a refused token, for the error panels.
        assert_eq!(
            nodes[0]
                .json("GET", "/api/v1/documents/999999", Some(alice), json!(null))
                .status,
            404
        );
        assert_eq!(
            nodes[1]
                .json("GET", "/api/v1/me", Some("forged"), json!(null))
                .status,
            401
        );
        let listed = nodes[r as usize % 2].json(
            "GET",
            &format!("/api/v1/workspaces/{}/documents", self.ws),
            Some(alice),
            json!(null),
        );
        assert_eq!(listed.status, 200);
        // A Yjs edit on node 0, written and relayed to the other node's actor.
        let before = self.editor.transact().state_vector();
        let text = self.editor.get_or_insert_text("content");
        text.push(&mut self.editor.transact_mut(), &format!("edit {r}. "));
        let update = self.editor.transact().encode_state_as_update_v1(&before);
        let msg = Message::Sync(SyncMessage::Update(update)).encode_v1();
        self.yjs
            .send_frame(true, BINARY, &msg)
            .expect("yjs update sent");
        // Read what arrived, so no socket falls behind.
        for ws in [&mut self.a, &mut self.b, &mut self.yjs] {
            while ws.read(Duration::from_millis(5)).is_some() {}
        }
    }
}

#[actix_web::test]
async fn every_panel_of_every_dashboard_returns_data_from_a_live_cluster() {
    // A low login limit, so that the rate-limit panels have something to show.
    let Some(c) = Cluster::start(2, &[("STOA_AUTH__LOGIN_ATTEMPTS_PER_MINUTE", "5")]).await else {
        return;
    };
    let ports: Vec<u16> = c.nodes.iter().map(|n| n.port).collect();
    let Some(prom) = Prometheus::start(&ports) else {
        return;
    };
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    let (_, alice) = a.register("alice");
    let (bob_id, bob) = b.register("bob");
    let ws = a.workspace_with(&alice, &[(bob_id, "editor")]);
    let mut tries = 0;
    while b
        .json(
            "POST",
            "/api/v1/auth/login",
            None,
            json!({"email": "mallory@example.com", "password": "guess"}),
        )
        .status
        != 429
    {
        tries += 1;
        assert!(tries < 10, "the login limit never applied");
    }
    let d = a.json(
        "POST",
        &format!("/api/v1/workspaces/{ws}/documents"),
        Some(&alice),
        json!({"title": "Plan", "content": ""}),
    );
    assert_eq!(d.status, 201, "{}", d.text());
    let doc = d.value()["id"].as_i64().expect("id");
    let topic = format!("workspace:{ws}");
    let mut on_a = a.ws(&alice);
    let a_ref = on_a.join(&topic, json!({}));
    on_a.join(&format!("document:{doc}"), json!({}));
    let mut on_b = b.ws(&bob);
    on_b.join(&topic, json!({}));
    on_b.join(&format!("user:{bob_id}"), json!({}));
    let mut yjs = yjs_editor(a, doc, &alice);
    let step1 = Message::Sync(SyncMessage::SyncStep1(StateVector::default())).encode_v1();
    yjs.send_frame(true, BINARY, &step1).expect("sync step 1");
    let mut load = Load {
        a: on_a,
        a_ref,
        b: on_b,
        yjs,
        editor: yrs::Doc::new(),
        topic,
        ws,
        doc,
        round: 0,
    };

    // The load goes on while the checker asks (rates need two scrapes with a change).
    let done = AtomicBool::new(false);
    let checked = std::thread::scope(|s| {
        let nodes = &c.nodes;
        let (alice, bob, done) = (&alice, &bob, &done);
        s.spawn(move || {
            while !done.load(Ordering::Relaxed) {
                load.round(nodes, alice, bob);
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let out = Command::new("python3")
            .arg(repo().join("tests/ops/check_dashboards.py"))
            .args([
                "--prometheus",
                &prom.url(),
                "--nodes",
                "2",
                "--retry-seconds",
                "90",
            ])
            .arg(repo().join("grafana/dashboards"))
            .output()
            .expect("python3 runs the checker");
        done.store(true, Ordering::Relaxed);
        out
    });
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(checked.status.success(), "{said}");

    // The alert rules loaded and evaluate without error.
    let (status, rules) = prom.get("/api/v1/rules").expect("rules");
    assert_eq!(status, 200);
    let rules: serde_json::Value = serde_json::from_str(&rules).expect("json");
    let all: Vec<serde_json::Value> = rules["data"]["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .collect();
    assert!(all.len() >= 6, "{rules}");
    for rule in &all {
        assert_eq!(rule["health"], "ok", "{rule}");
    }
    // A healthy cluster fires nothing.
    let firing: Vec<_> = all.iter().filter(|r| r["state"] == "firing").collect();
    assert!(firing.is_empty(), "{firing:?}");
}

/// The alert rules are valid and their unit tests pass (`promtool`), and the dashboards are
/// their generator's output and well formed: both variables, the data source variable on every panel, the node filter
/// on every Stoa query, and every query parses as PromQL.
#[test]
fn the_alert_rules_and_dashboards_pass_promtool() {
    if !std::path::Path::new("/usr/bin/promtool").exists() {
        let ci = crate::common::binary::ci();
        assert!(
            !ci,
            "the rule checks need Debian's prometheus (promtool) under CI"
        );
        eprintln!("SKIPPED: the rule checks need promtool (apt-get install prometheus)");
        return;
    }
    let run = |cmd: &mut Command| {
        let out = cmd.current_dir(repo()).output().expect("runs");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{cmd:?}: {said}");
        said
    };
    let said =
        run(Command::new("promtool").args(["check", "rules", "grafana/alerts/stoa.rules.yml"]));
    assert!(said.contains("SUCCESS"), "{said}");
    run(Command::new("promtool").args(["test", "rules", "grafana/alerts/stoa.rules.test.yml"]));
    // The committed dashboards are what their generator makes.
    run(Command::new("python3").args(["grafana/generate.py", "--check"]));
    run(Command::new("python3").args([
        "tests/ops/check_dashboards.py",
        "--check-structure",
        "--promtool",
        "--rules",
        "grafana/alerts/stoa.rules.yml",
        "grafana/dashboards",
    ]));
}
