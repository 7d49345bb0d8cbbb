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
    if std::env::var("CI").is_ok_and(|v| v == "true") {
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
