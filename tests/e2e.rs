//! Runs the Node end-to-end suite (`e2e/`, the stock `phoenix` npm client) against a real
//! server started here on SQLite. Needs `node` and `npm ci --prefix e2e`; without them the
//! suite is skipped with a notice, except under `CI=true`, where it fails.

#[path = "common/mod.rs"]
mod common;

use std::path::Path;
use std::process::Command;

use common::{Backend, TestDb};
use stoa::config::Settings;
use stoa::startup::Application;

fn missing(what: &str) {
    let msg = format!("the e2e suite needs {what}; run `npm ci --prefix e2e` (.ci/run does)");
    if common::binary::ci() {
        panic!("{msg}");
    }
    eprintln!("SKIPPED: {msg}");
}

#[actix_web::test]
async fn stock_phoenix_client_suite() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let suite = root.join("e2e");
    if !suite.join("node_modules/phoenix").is_dir() {
        return missing("e2e/node_modules");
    }
    if Command::new("node").arg("--version").output().is_err() {
        return missing("node");
    }
    let db = TestDb::create(Backend::Sqlite).await.expect("sqlite");
    let mut settings = Settings::load_with_env(None, Vec::new()).expect("default settings");
    settings.server.port = 0;
    settings.server.workers = 2;
    settings.data_dir = db.dir.path().to_path_buf();
    settings.database.url = db.url.clone();
    settings.auth.jwt_secret = "e2e-test-secret-0123456789abcdef-GHIJKLMNOPQRSTUV".into();
    settings.auth.password_hash_memory_kib = 1024;
    settings.auth.password_hash_iterations = 1;
    settings.auth.login_attempts_per_minute = 10_000;
    settings.realtime.messages_per_sec = 200;
    settings.realtime.message_burst = 50;
    // The slow-consumer test fills a socket with broadcasts faster than a topic relays them
    // by default.
    settings.realtime.topic_broadcasts_per_sec = 100_000;
    settings.realtime.topic_broadcast_bytes_per_sec = 1 << 30;
    // The Yjs suite watches a document unload once its editors have left.
    settings.realtime.document_idle_secs = 1;
    // The history suite sees automatic versions of editing windows a second apart.
    settings.documents.version_interval_secs = 1;
    // The LongPoll suite watches a session nobody polls end, and polls wait less.
    settings.realtime.longpoll_window_ms = 2_000;
    settings.realtime.longpoll_idle_ms = 3_000;
    let app = Application::build(settings).await.expect("server starts");
    let url = format!("http://127.0.0.1:{}", app.port());
    let handle = app.handle();
    actix_web::rt::spawn(app.run_until_stopped());

    let output = actix_web::rt::task::spawn_blocking(move || {
        Command::new("node")
            .args([
                "--test",
                "--test-concurrency=1",
                "--test-reporter=spec",
                // A hung test fails with its name instead of hanging the run, and a
                // client left open by a test cannot keep the runner alive afterwards.
                "--test-timeout=60000",
                "--test-force-exit",
            ])
            .current_dir(&suite)
            .env("STOA_URL", &url)
            .output()
    })
    .await
    .expect("node runs")
    .expect("node starts");
    handle.stop(true).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(output.status.success(), "the Node e2e suite failed");
}

/// HTTPS and WSS served by the node itself, with a certificate made here by `openssl`:
/// the stock phoenix client over `wss://` (`e2e/tls/wss.mjs`).
#[actix_web::test]
async fn stock_phoenix_client_over_wss() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let suite = root.join("e2e");
    if !suite.join("node_modules/phoenix").is_dir() {
        return missing("e2e/node_modules");
    }
    let db = TestDb::create(Backend::Sqlite).await.expect("sqlite");
    let (cert, key) = (
        db.dir.path().join("cert.pem"),
        db.dir.path().join("key.pem"),
    );
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output();
    match made {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!("openssl: {}", String::from_utf8_lossy(&out.stderr)),
        Err(_) => return missing("openssl"),
    }
    let mut settings = Settings::load_with_env(None, Vec::new()).expect("default settings");
    settings.server.port = 0;
    settings.server.workers = 2;
    settings.server.tls_cert = cert.display().to_string();
    settings.server.tls_key = key.display().to_string();
    settings.data_dir = db.dir.path().to_path_buf();
    settings.database.url = db.url.clone();
    settings.auth.jwt_secret = "e2e-test-secret-0123456789abcdef-GHIJKLMNOPQRSTUV".into();
    settings.auth.password_hash_memory_kib = 1024;
    settings.auth.password_hash_iterations = 1;
    let app = Application::build(settings).await.expect("server starts");
    let url = format!("https://localhost:{}", app.port());
    let handle = app.handle();
    actix_web::rt::spawn(app.run_until_stopped());
    let output = actix_web::rt::task::spawn_blocking(move || {
        Command::new("node")
            .args(["--test", "--test-reporter=spec", "--test-timeout=60000"])
            .arg("--test-force-exit")
            .arg("tls/wss.mjs")
            .current_dir(&suite)
            .env("STOA_URL", &url)
            .env("NODE_EXTRA_CA_CERTS", &cert)
            .output()
    })
    .await
    .expect("node runs")
    .expect("node starts");
    handle.stop(true).await;
    println!("{}", String::from_utf8_lossy(&output.stdout));
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "phoenix.js over wss:// failed");
}
