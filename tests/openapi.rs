//! The OpenAPI document tells the truth: Schemathesis, with every check and every phase
//! (examples, coverage, fuzzing, stateful), drives the real `stoa` binary from its own
//! `/api/openapi.json` and must find nothing — no 5xx, no undocumented status, no valid
//! request refused, no invalid one accepted, no undeclared method answered but 405 — and
//! the server must log no error for anything a client sent.
//!
//! Schemathesis is pinned and installed by `.ci/run` into `.ci/venv`; set
//! `STOA_SCHEMATHESIS` to use another. Without it the test is skipped with a notice, except
//! under `CI=true`, where it fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

#[path = "common/binary.rs"]
mod binary;
#[path = "common/http.rs"]
mod http;

fn schemathesis() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("STOA_SCHEMATHESIS") {
        return Some(PathBuf::from(path));
    }
    let pinned = Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/venv/bin/schemathesis");
    pinned.exists().then_some(pinned)
}

/// A JSON call that must succeed; its answer.
fn call(port: u16, method: &str, path: &str, token: Option<&str>, body: Value) -> Value {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a));
    }
    let res = http::send(port, method, path, &headers, body.to_string().as_bytes());
    assert!(
        (200..300).contains(&res.status),
        "{method} {path}: {}",
        res.text()
    );
    res.value()
}

#[test]
fn schemathesis_finds_nothing_with_every_check() {
    let Some(st) = schemathesis() else {
        let msg = "schemathesis is not installed; .ci/run installs it into .ci/venv";
        if binary::ci() {
            panic!("{msg}");
        }
        eprintln!("SKIPPED: {msg}");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut server = binary::server(dir.path())
        // Thousands of requests from one account as fast as the server answers: checked
        // for their form, not refused for their number.
        .env("STOA_HTTP__USER_REQUESTS_PER_SEC", "1000000")
        .env("STOA_HTTP__USER_REQUEST_BURST", "1000000")
        .spawn()
        .expect("stoa starts");
    let binary::Listening { port, log } = binary::listening(&mut server);

    // Something to read and change: a user with a workspace, a document and a comment.
    let account = call(
        port,
        "POST",
        "/api/v1/auth/register",
        None,
        json!({"email": "ada@example.com", "password": "correct horse battery", "display_name": "Ada"}),
    );
    let token = account["access_token"].as_str().expect("token").to_string();
    let ws = call(
        port,
        "POST",
        "/api/v1/workspaces",
        Some(&token),
        json!({"name": "Acme"}),
    );
    let ws = ws["id"].as_i64().unwrap();
    let doc = call(
        port,
        "POST",
        &format!("/api/v1/workspaces/{ws}/documents"),
        Some(&token),
        json!({"title": "Plan", "content": "text"}),
    );
    let doc = doc["id"].as_i64().unwrap();
    call(
        port,
        "POST",
        &format!("/api/v1/documents/{doc}/comments"),
        Some(&token),
        json!({"body": "first"}),
    );

    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openapi/schemathesis.toml");
    let output = Command::new(&st)
        .args(["--config-file"])
        .arg(&config)
        .args([
            "run",
            &format!("http://127.0.0.1:{port}/api/openapi.json"),
            "--checks",
            "all",
            "--max-examples",
            "25",
            "--seed",
            "20261125",
            "--no-color",
            "--header",
            &format!("Authorization: Bearer {token}"),
        ])
        .current_dir(dir.path())
        .output()
        .expect("schemathesis runs");
    let _ = server.kill();
    let _ = server.wait();
    let report = String::from_utf8_lossy(&output.stdout);
    println!("{report}");
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "schemathesis found failures (above)"
    );
    let errors: Vec<String> = log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("\"level\":\"ERROR\""))
        .cloned()
        .collect();
    assert!(
        errors.is_empty(),
        "client input caused error logs: {errors:#?}"
    );
}
