//! The cluster suites of the stock clients: phoenix (`e2e/cluster/suite.mjs`: cross-node
//! events, broadcasts and presence, and a rolling restart of every node) and yjs with
//! y-websocket (`e2e/cluster/yjs.mjs`: editors on different nodes, a restart, a kill -9), and
//! document history (`e2e/cluster/history.mjs`: a restore and pinned comments across nodes),
//! and LongPoll behind a proxy that refuses WebSockets and sends each request to the next
//! node (`e2e/cluster/longpoll.mjs`).

use std::path::Path;
use std::process::Command;

use crate::common::{Backend, TestDb};
use crate::harness::PrivateRedis;

#[actix_web::test]
async fn the_stock_phoenix_client_across_nodes_and_a_rolling_restart() {
    run("cluster/suite.mjs").await;
}

#[actix_web::test]
async fn the_stock_yjs_provider_across_nodes_a_restart_and_a_kill() {
    run("cluster/yjs.mjs").await;
}

/// LongPoll behind a proxy that refuses upgrades and spreads requests over every node.
#[actix_web::test]
async fn the_stock_phoenix_client_over_longpoll_across_nodes_and_a_kill() {
    run("cluster/longpoll.mjs").await;
}

#[actix_web::test]
async fn document_history_and_pinned_comments_across_nodes() {
    run("cluster/history.mjs").await;
}

/// Runs one Node suite against three nodes it starts itself, sharing one PostgreSQL
/// database and a private Redis prepared here.
async fn run(suite: &'static str) {
    let e2e = Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e");
    if !e2e.join("node_modules/phoenix").is_dir() {
        let msg = "the cluster e2e suite needs e2e/node_modules (npm ci --prefix e2e)";
        if crate::common::binary::ci() {
            panic!("{msg}");
        }
        eprintln!("SKIPPED: {msg}");
        return;
    }
    let Some(redis) = PrivateRedis::start() else {
        return;
    };
    let Some(db) = TestDb::create(Backend::Postgres).await else {
        return;
    };
    let ports: Vec<String> = (0..3)
        .map(|_| {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            l.local_addr().expect("port").port().to_string()
        })
        .collect();
    // A scratch data directory for the nodes (the database is PostgreSQL).
    let data = tempfile::tempdir().expect("temp dir");
    let output = actix_web::rt::task::spawn_blocking({
        let redis = redis.url();
        let db = db.url.clone();
        let data = data.path().display().to_string();
        move || {
            Command::new("node")
                .args([
                    "--test",
                    "--test-concurrency=1",
                    "--test-reporter=spec",
                    "--test-timeout=120000",
                    "--test-force-exit",
                    suite,
                ])
                .current_dir(&e2e)
                .env("STOA_BIN", env!("CARGO_BIN_EXE_stoa"))
                .env("STOA_PORTS", ports.join(","))
                .env("STOA_DATABASE_URL", db)
                .env("STOA_REDIS_URL", redis)
                .env("STOA_DATA_DIR", data)
                .output()
        }
    })
    .await
    .expect("node runs")
    .expect("node starts");
    println!("{}", String::from_utf8_lossy(&output.stdout));
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "the cluster e2e suite {suite} failed"
    );
    drop(redis);
}
