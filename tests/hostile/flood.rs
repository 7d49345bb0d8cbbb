//! One user floods a topic from many sockets; everyone else on the topic keeps receiving.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

#[test]
fn a_viewer_flooding_a_topic_from_many_sockets_cannot_push_others_out() {
    let _heavy = heavy();
    // Default limits (1 MiB queued per client). Bob's writer is woken by the topic's thread
    // while mallory's sockets keep the worker threads busy reading: unless a socket that is
    // always readable yields after a few messages (`wire::Incoming`), the writer waits
    // behind them and bob is closed as a slow consumer although he reads (1 run in 2 to 6
    // failed that way).
    let server = Server::start(&[]);
    let (_, alice) = server.register("alice");
    let (mallory_id, mallory) = server.register("mallory");
    let (bob_id, bob) = server.register("bob");
    let ws = server.workspace_with(&alice, &[(mallory_id, "viewer"), (bob_id, "editor")]);
    let topic = format!("workspace:{ws}");

    // Bob's client reads at about 1 MB/s, like a phone on a fair connection, from the
    // start of the flood until an event made after it arrives (or its socket closes).
    let mut b = server.ws(&bob);
    b.join(&topic, json!({}));
    let event = Arc::new(AtomicBool::new(false));
    let bob_reader = {
        let event = event.clone();
        std::thread::spawn(move || {
            let mut broadcasts = 0u64;
            let mut closed = None;
            let deadline = Instant::now() + Duration::from_secs(30);
            // Paced by the clock (a 1 MB/s link), so time the thread spends waiting for a
            // core on a loaded machine is made up rather than added.
            let start = Instant::now();
            let mut bytes = 0u64;
            while Instant::now() < deadline {
                match b.read(Duration::from_millis(100)) {
                    Some(Got::Text(t)) if t.contains("document.created") => {
                        event.store(true, Ordering::Relaxed);
                        break;
                    }
                    Some(Got::Text(t)) => {
                        if t.contains("\"broadcast\"") {
                            broadcasts += 1;
                        }
                        bytes += t.len() as u64;
                        let due = start + Duration::from_micros(bytes);
                        std::thread::sleep(due.saturating_duration_since(Instant::now()));
                    }
                    Some(Got::Close(code)) => {
                        closed = Some(code);
                        break;
                    }
                    Some(Got::Other(_) | Got::Pong(_) | Got::Binary(_)) | None => {}
                }
            }
            (broadcasts, closed)
        })
    };

    // Mallory: 20 sockets, each sending 16 KiB broadcasts as fast as it can for 3 s
    // (reading, and discarding, whatever comes back).
    let blob = "x".repeat(16_000);
    let sockets: Vec<_> = (0..20)
        .map(|_| {
            let mut m = server.ws(&mallory);
            let jr = m.join(&topic, json!({"presence": false}));
            (m, jr)
        })
        .collect();
    let flooders: Vec<_> = sockets
        .into_iter()
        .map(|(mut m, jr)| {
            let _drain = m.discard_incoming();
            let text = json!([jr, "1", topic, "broadcast", {"blob": blob}]).to_string();
            std::thread::spawn(move || {
                let until = Instant::now() + Duration::from_secs(3);
                let mut sent = 0u64;
                while Instant::now() < until {
                    if m.send_frame(true, TEXT, text.as_bytes()).is_err() {
                        break;
                    }
                    sent += 1;
                }
                sent
            })
        })
        .collect();
    let attempted: u64 = flooders.into_iter().map(|t| t.join().unwrap()).sum();

    // Bob's channel is live: a change made now reaches him, behind whatever of the flood
    // the topic still relays.
    let r = server.json(
        "POST",
        &format!("/api/v1/workspaces/{ws}/documents"),
        Some(&alice),
        json!({"title": "After the flood", "content": ""}),
    );
    assert_eq!(r.status, 201);
    let (broadcasts, closed) = bob_reader.join().unwrap();

    assert_eq!(
        closed, None,
        "bob was disconnected ({closed:?}) by mallory's flood"
    );
    assert!(broadcasts > 0, "bob received none of the broadcasts");
    // The topic relays at most its budget (200/s, 512 KiB/s, bursts of twice that), so
    // bob got a small share of what mallory sent.
    assert!(
        broadcasts < 400,
        "{broadcasts} broadcasts of {attempted} reached bob"
    );
    assert!(
        server.metric("stoa_ws_user_rate_limited_total")
            + server.metric("stoa_ws_topic_rate_limited_total")
            > 0.0
    );

    assert!(
        event.load(Ordering::Relaxed),
        "the event made after the flood never reached bob"
    );
    assert!(server.healthy());
    assert!(
        server.rss_kib() < 256 * 1024,
        "server RSS {} KiB after the flood",
        server.rss_kib()
    );
}
