//! LongPoll in real Chromium: two nodes behind HAProxy (round robin, no stickiness) that
//! refuses every WebSocket upgrade, and the stock phoenix.js in the page
//! (`web/browser/longpoll-proxy.mjs`, driven by `playwright-core`). Needs Debian's
//! `haproxy` and `chromium`, `npm ci --prefix web` and `--prefix e2e`; without them the test
//! is skipped with a notice, except under `CI=true`, where it fails.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::Cluster;

fn missing(what: &str) -> bool {
    let msg = format!("the LongPoll browser test needs {what} (.ci/run installs it)");
    if crate::common::binary::ci() {
        panic!("{msg}");
    }
    eprintln!("SKIPPED: {msg}");
    false
}

/// `haproxy` on a free port in front of `nodes`, refusing upgrades; killed when dropped.
struct Haproxy {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    fn start(nodes: &[u16]) -> Haproxy {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = tempfile::tempdir().expect("temp dir");
        let servers: String = nodes
            .iter()
            .enumerate()
            .map(|(i, p)| format!("    server n{i} 127.0.0.1:{p}\n"))
            .collect();
        let config = format!(
            "global\n    maxconn 2000\n\
             defaults\n    mode http\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n\
             frontend stoa\n    bind 127.0.0.1:{port}\n\
             \x20   # What a company proxy that blocks WebSockets does.\n\
             \x20   http-request deny deny_status 403 if {{ req.hdr(upgrade) -i websocket }}\n\
             \x20   default_backend nodes\n\
             backend nodes\n    balance roundrobin\n{servers}"
        );
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config).expect("config written");
        let child = Command::new("haproxy")
            .arg("-f")
            .arg(&path)
            .arg("-db")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy starts");
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "haproxy did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Haproxy {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[actix_web::test]
async fn longpoll_in_chromium_behind_a_proxy_that_refuses_websockets() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let web = root.join("web");
    let phoenix = root.join("e2e/node_modules/phoenix/priv/static/phoenix.js");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !web.join("node_modules/playwright-core").is_dir() && !missing("web/node_modules") {
        return;
    }
    if !phoenix.is_file() && !missing("e2e/node_modules") {
        return;
    }
    if !Path::new(&chromium).exists() && !missing("Debian's chromium") {
        return;
    }
    if Command::new("haproxy").arg("-v").output().is_err() && !missing("Debian's haproxy") {
        return;
    }
    let Some(c) = Cluster::start(2, &[]).await else {
        return;
    };
    let proxy = Haproxy::start(&[c.nodes[0].port, c.nodes[1].port]);
    let nodes: Vec<String> = c
        .nodes
        .iter()
        .map(|n| format!("http://127.0.0.1:{}", n.port))
        .collect();
    let output = actix_web::rt::task::spawn_blocking({
        let web = web.clone();
        let proxy = format!("http://127.0.0.1:{}", proxy.port);
        let nodes = nodes.join(",");
        move || {
            Command::new("node")
                .args([
                    "--test",
                    "--test-reporter=spec",
                    "--test-timeout=120000",
                    "--test-force-exit",
                    "browser/longpoll-proxy.mjs",
                ])
                .current_dir(&web)
                .env("STOA_PROXY", proxy)
                .env("STOA_NODES", nodes)
                .env("PHOENIX_JS", phoenix)
                .env("CHROMIUM", chromium)
                .output()
        }
    })
    .await
    .expect("node runs")
    .expect("node starts");
    println!("{}", String::from_utf8_lossy(&output.stdout));
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "the LongPoll browser test failed");
    drop(proxy);
}
