//! Stopping the server with clients connected is not a crash of theirs.

use serde_json::json;

use crate::support::*;

#[test]
fn stopping_with_sockets_open_reports_no_crash() {
    // No drain: the sockets are still open when the server stops.
    let mut server = Server::start(&[
        ("STOA_SERVER__SHUTDOWN_TIMEOUT_SECS", "1"),
        ("STOA_SERVER__DRAIN_SECS", "0"),
    ]);
    let (_, token) = server.register("ada");
    let ws = server.workspace_with(&token, &[]);
    let mut sockets: Vec<RawWs> = (0..3).map(|_| server.ws(&token)).collect();
    for s in &mut sockets {
        s.join(&format!("workspace:{ws}"), json!({}));
    }
    // The clients keep their sockets open past the shutdown timeout and never answer the
    // close: the node waits for them at most 3 s, then 1 s (`shutdown_timeout_secs`) for
    // requests in flight, and stops.
    let asked = std::time::Instant::now();
    let status = server.terminate();
    let took = asked.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(
        took < std::time::Duration::from_secs(7),
        "stopping took {took:?} with silent sockets open"
    );
    let log = server.log.lock().unwrap().clone();
    assert!(log.iter().any(|l| l.contains("stoa stopped")), "{log:#?}");
    let errors = server.log_lines("ERROR");
    assert!(errors.is_empty(), "shutdown logged errors: {errors:#?}");
    drop(sockets);
}

#[test]
fn a_draining_server_sends_every_socket_away_with_1001_and_takes_no_new_ones() {
    let mut server = Server::start(&[("STOA_SERVER__DRAIN_SECS", "2")]);
    let (_, token) = server.register("ada");
    let ws = server.workspace_with(&token, &[]);
    let mut sockets: Vec<RawWs> = (0..6).map(|_| server.ws(&token)).collect();
    for s in &mut sockets {
        s.join(&format!("workspace:{ws}"), json!({}));
    }
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status();
    // Once the signal is taken, a new socket is refused (503, retry). One opened before
    // that is an ordinary socket, sent away with the others.
    let path = format!("/socket/websocket?vsn=2.0.0&token={token}");
    let refused = loop {
        match RawWs::open(&server, &path) {
            Ok(early) => sockets.push(early),
            Err(refused) => break refused,
        }
    };
    assert_eq!(refused.status, 503);
    assert_eq!(refused.header("retry-after").as_deref(), Some("1"));
    // Each socket is sent away at its own moment over `drain_secs` (2 s), not all at once:
    // the clients come back spread out too.
    let readers: Vec<_> = sockets
        .drain(..)
        .map(|mut s| {
            std::thread::spawn(move || {
                let code = s.close_code();
                (code, std::time::Instant::now())
            })
        })
        .collect();
    let mut at = Vec::new();
    for reader in readers {
        let (code, when) = reader.join().unwrap();
        assert_eq!(code, Some(1001));
        at.push(when);
    }
    at.sort();
    let spread = at[at.len() - 1] - at[0];
    assert!(
        spread >= std::time::Duration::from_millis(1000)
            && spread <= std::time::Duration::from_millis(3500),
        "the closes spread over {spread:?}, not about the 2 s drain"
    );
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
    assert!(
        server.log_lines("ERROR").is_empty(),
        "{:#?}",
        server.log_lines("ERROR")
    );
}

/// SIGTERM while the server is still starting (here: a database that accepts the
/// connection and never answers) stops it at once, rather than after the connect timeout
/// or a long migration.
#[test]
fn a_signal_during_start_up_stops_it_at_once() {
    use std::process::{Command, Stdio};
    // Connections are accepted by the kernel and then left unanswered.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let mut child = crate::common::binary::server(dir.path())
        .env(
            "STOA_DATABASE__URL",
            format!("postgres://stoa@127.0.0.1:{port}/stoa"),
        )
        .env("STOA_DATABASE__CONNECT_TIMEOUT_SECS", "60")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("stoa starts");
    let mut lines = crate::common::binary::Lines::of(&mut child);
    let (starting, log) = lines.until(|l| l.contains("stoa starting"));
    assert!(starting, "no start-up line: {log:#?}");
    let sent = std::time::Instant::now();
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            sent.elapsed() < std::time::Duration::from_secs(5),
            "still starting 5 s after SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    let rest = lines.rest();
    assert!(
        rest.iter().any(|l| l.contains("stopped during start-up")),
        "{rest:#?}"
    );
    drop(silent);
}
