//! Stopping the server with clients connected is not a crash of theirs.

use serde_json::json;

use crate::support::*;

#[test]
fn stopping_with_sockets_open_reports_no_crash() {
    let mut server = Server::start(&[("STOA_SERVER__SHUTDOWN_TIMEOUT_SECS", "1")]);
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
