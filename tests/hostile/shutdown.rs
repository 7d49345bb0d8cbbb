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
    // The clients keep their sockets open past the shutdown timeout.
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
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
    assert!(refused.header("retry-after").is_some());
    for s in &mut sockets {
        assert_eq!(s.close_code(), Some(1001));
    }
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
    assert!(
        server.log_lines("ERROR").is_empty(),
        "{:#?}",
        server.log_lines("ERROR")
    );
}
