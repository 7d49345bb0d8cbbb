//! The operator's commands against a running server: `stoa backup` while writes go on,
//! `stoa restore` (refused while the server runs), and `stoa healthcheck`.

use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use serde_json::json;

use crate::support::*;

fn stoa(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = crate::common::binary::bare();
    cmd.current_dir(dir).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("stoa runs")
}

fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_backup_taken_under_writes_restores_every_acknowledged_write() {
    let _heavy = heavy();
    // Two writers as fast as the server acknowledges, and hundreds of reads after, beyond
    // one user's default allowance.
    let unlimited = [
        ("STOA_HTTP__USER_REQUESTS_PER_SEC", "100000"),
        ("STOA_HTTP__USER_REQUEST_BURST", "100000"),
    ];
    let server = Server::start(&unlimited);
    let (_, token) = server.register("ada");
    let ws = server.workspace_with(&token, &[]);
    let acked = Mutex::new(Vec::<(i64, String)>::new());
    let stop = AtomicBool::new(false);
    let backup = server.dir().join("backup.db");

    let before = std::thread::scope(|s| {
        // Two writers, each creating documents as fast as the server acknowledges them.
        for w in 0..2 {
            let (server, token, acked, stop) = (&server, &token, &acked, &stop);
            s.spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let title = format!("writer {w} document {n}");
                    let r = server.json(
                        "POST",
                        &format!("/api/v1/workspaces/{ws}/documents"),
                        Some(token),
                        json!({"title": title, "content": "x".repeat(2000)}),
                    );
                    assert_eq!(r.status, 201, "{}", r.text());
                    let id = r.value()["id"].as_i64().expect("id");
                    acked.lock().unwrap().push((id, title));
                    n += 1;
                }
            });
        }
        let started = std::time::Instant::now();
        while acked.lock().unwrap().len() < 200 {
            assert!(started.elapsed() < PATIENCE, "the writers stalled");
            std::thread::yield_now();
        }
        let before = acked.lock().unwrap().clone();
        let out = stoa(server.dir(), &["backup", "backup.db"], &[]);
        assert!(out.status.success(), "{}", said(&out));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert!(report["bytes"].as_u64().unwrap_or(0) > 0, "{report}");
        stop.store(true, Ordering::Relaxed);
        before
    });
    let total = acked.lock().unwrap().len();
    assert!(total > before.len(), "no write during the backup");

    // A backup never overwrites.
    let again = stoa(server.dir(), &["backup", "backup.db"], &[]);
    assert!(!again.status.success());
    assert!(said(&again).contains("exists"), "{}", said(&again));
    // Restoring under a running server is refused and changes nothing.
    let refused = stoa(server.dir(), &["restore", "backup.db"], &[]);
    assert!(!refused.status.success());
    assert!(
        said(&refused).contains("a server is using"),
        "{}",
        said(&refused)
    );
    let listed = server.json(
        "GET",
        &format!("/api/v1/workspaces/{ws}/documents?limit=1"),
        Some(&token),
        json!(null),
    );
    assert_eq!(listed.status, 200);
    let last = acked.lock().unwrap().last().cloned().expect("a write");
    let r = server.json(
        "GET",
        &format!("/api/v1/documents/{}", last.0),
        Some(&token),
        json!(null),
    );
    assert_eq!(r.status, 200, "the live database is untouched");

    // Stopped, the server's directory takes the backup back; garbage is refused first.
    let dir = server.stop_keeping_dir();
    std::fs::write(dir.path().join("garbage.db"), b"not a database at all").unwrap();
    let garbage = stoa(dir.path(), &["restore", "garbage.db"], &[]);
    assert!(!garbage.status.success(), "{}", said(&garbage));
    let out = stoa(dir.path(), &["restore", "backup.db"], &[]);
    assert!(out.status.success(), "{}", said(&out));
    assert!(said(&out).contains("before-restore"), "{}", said(&out));

    let server = Server::start_in(dir, &unlimited);
    for (id, title) in &before {
        let r = server.json(
            "GET",
            &format!("/api/v1/documents/{id}"),
            Some(&token),
            json!(null),
        );
        assert_eq!(
            r.status, 200,
            "document {id} acknowledged before the backup"
        );
        assert_eq!(r.value()["title"], title.as_str());
    }
    // The copy is one moment: beyond those it holds some of the writes acknowledged while
    // it was taken (or just after: a commit's answer may still have been on its way).
    let acked = acked.lock().unwrap().clone();
    let mut present = 0;
    for (id, _) in &acked {
        let r = server.json(
            "GET",
            &format!("/api/v1/documents/{id}"),
            Some(&token),
            json!(null),
        );
        if r.status == 200 {
            present += 1;
        }
    }
    assert!(
        present >= before.len() && present <= total,
        "{present} of {total}"
    );
    assert!(backup.exists());
}

#[test]
fn healthcheck_reports_a_ready_node_and_a_missing_one() {
    let server = Server::start(&[]);
    let port = server.port.to_string();
    let ok = stoa(
        server.dir(),
        &["healthcheck"],
        &[("STOA_SERVER__PORT", &port)],
    );
    assert!(ok.status.success(), "{}", said(&ok));
    let url = format!("http://127.0.0.1:{port}/readyz");
    let ok = stoa(server.dir(), &["healthcheck", "--url", &url], &[]);
    assert!(ok.status.success(), "{}", said(&ok));
    drop(server);
    let down = stoa(
        std::path::Path::new("/"),
        &["healthcheck", "--url", &url],
        &[],
    );
    assert_eq!(down.status.code(), Some(1), "{}", said(&down));
}

/// Mode bits of a path.
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn the_data_directory_backups_and_restores_are_private() {
    let server = Server::start(&[]);
    let (_, token) = server.register("ada");
    server.workspace_with(&token, &[]);
    let data = server.dir().join("data");
    assert_eq!(mode(&data), 0o700, "the data directory");
    for file in [
        "stoa.db",
        "stoa.db-wal",
        "stoa.db-shm",
        "jwt_secret",
        "stoa.lock",
    ] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
    let out = stoa(server.dir(), &["backup", "backup.db"], &[]);
    assert!(out.status.success(), "{}", said(&out));
    assert_eq!(mode(&server.dir().join("backup.db")), 0o600, "the backup");

    let dir = server.stop_keeping_dir();
    // A backup someone made world-readable is restored private all the same.
    let backup = dir.path().join("backup.db");
    std::fs::set_permissions(&backup, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let out = stoa(dir.path(), &["restore", "backup.db"], &[]);
    assert!(out.status.success(), "{}", said(&out));
    assert_eq!(
        mode(&dir.path().join("data/stoa.db")),
        0o600,
        "the restored database"
    );
    // Files 0600; directories (the attachments' `blobs/`) 0700, so nothing in them can be
    // reached by another user whatever its own mode.
    for entry in std::fs::read_dir(dir.path().join("data")).unwrap() {
        let path = entry.unwrap().path();
        let want = if path.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode(&path), want, "{}", path.display());
    }
}

#[test]
fn metrics_can_require_a_bearer_token() {
    let token = "scrape-0123456789abcdef";
    let server = Server::start(&[("STOA_METRICS__TOKEN", token)]);
    let r = server.http("GET", "/metrics", &[], b"");
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.value()["code"], "invalid_token");
    for wrong in [
        "Bearer scrape-0123456789abcdeF",
        "Bearer ",
        "scrape-0123456789abcdef",
    ] {
        let r = server.http("GET", "/metrics", &[("Authorization", wrong)], b"");
        assert_eq!(r.status, 401, "{wrong}");
    }
    let bearer = format!("Bearer {token}");
    let r = server.http("GET", "/metrics", &[("Authorization", &bearer)], b"");
    assert_eq!(r.status, 200);
    assert!(r.text().contains("stoa_http_requests_total"));
    // Health and readiness stay open to the orchestrator.
    assert!(server.healthy());
}

#[test]
fn an_operator_disables_an_account_and_its_sessions_end_at_once() {
    let server = Server::start(&[]);
    let (alice_id, alice) = server.register("alice");
    let mut socket = server.ws(&alice);
    socket.join(&format!("user:{alice_id}"), json!({}));

    let out = stoa(server.dir(), &["user", "disable", "Alice@Example.com"], &[]);
    assert!(out.status.success(), "{}", said(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["disabled"], true, "{report}");
    assert_eq!(report["sessions_ended"], true, "{report}");

    // The running node hears of it (it reads the record every second): the socket closes
    // with the reason, the token is refused, and the account cannot sign in.
    assert_eq!(socket.close_code(), Some(1008));
    let me = server.json("GET", "/api/v1/me", Some(&alice), json!(null));
    assert_eq!(me.status, 401, "{}", me.text());
    assert_eq!(me.value()["code"], "session_ended");
    let login = server.json(
        "POST",
        "/api/v1/auth/login",
        None,
        json!({"email": "alice@example.com", "password": "correct horse battery"}),
    );
    assert_eq!(login.status, 403, "{}", login.text());

    // Enabled again, the account signs in; the tokens from before stay ended.
    let out = stoa(server.dir(), &["user", "enable", "alice@example.com"], &[]);
    assert!(out.status.success(), "{}", said(&out));
    let login = server.json(
        "POST",
        "/api/v1/auth/login",
        None,
        json!({"email": "alice@example.com", "password": "correct horse battery"}),
    );
    assert_eq!(login.status, 200, "{}", login.text());
    let fresh = login.value()["access_token"]
        .as_str()
        .expect("token")
        .to_string();
    assert_eq!(
        server
            .json("GET", "/api/v1/me", Some(&fresh), json!(null))
            .status,
        200
    );
    assert_eq!(
        server
            .json("GET", "/api/v1/me", Some(&alice), json!(null))
            .status,
        401
    );
    // Unknown accounts and bad usage are clear errors.
    let out = stoa(
        server.dir(),
        &["user", "disable", "nobody@example.com"],
        &[],
    );
    assert!(!out.status.success());
    assert!(said(&out).contains("no account"), "{}", said(&out));
    let out = stoa(server.dir(), &["user", "remove", "alice@example.com"], &[]);
    assert!(!out.status.success());
}
