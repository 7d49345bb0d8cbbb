//! A transport thread that falls `INBOX_BYTES` behind refuses more: a topic's fan-out it
//! refuses cuts off the subscribers it serves that the push was for, as slow consumers,
//! and nobody else.

mod common;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use common::{EmptyLog, Gate, Harness};
use serde_json::json;
use stoa_actors::outbox::{Delivery, Fanout, Inbox, Take, INBOX_BYTES};
use stoa_actors::{Limits, Realtime};

#[actix::test]
async fn a_thread_too_far_behind_cuts_off_its_subscribers_and_not_the_sender() {
    let gate = Arc::new(Gate::default());
    let rt = Realtime::new(gate.clone(), Arc::new(EmptyLog), Limits::default());
    let mut sender = Harness::start_on(rt.clone(), gate.clone());
    let mut behind = Harness::start_on(rt.clone(), gate);
    // `behind`'s socket is served by a thread that never gets to its inbox.
    let inbox = Inbox::new();
    // A real socket that stays open (and unread) for the rest of the test process.
    let (socket, peer) = std::os::unix::net::UnixStream::pair().expect("socket pair");
    std::mem::forget(peer);
    let fd = std::os::fd::IntoRawFd::into_raw_fd(socket);
    // SAFETY: the descriptor is never closed.
    behind.client.reader.attach(&inbox, unsafe {
        stoa_actors::outbox::SocketHandle::new(fd)
    });

    sender.send(json!(["1", "1", "workspace:1", "phx_join", {}]));
    let _ = sender
        .client
        .until(|seen| seen.iter().any(|f| f[3] == "phx_reply"))
        .await;
    behind.send(json!(["1", "1", "workspace:1", "phx_join", {}]));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while rt.stats().subscriptions.load(Relaxed) < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the second join never subscribed"
        );
        actix::clock::sleep(Duration::from_millis(10)).await;
    }
    // The thread falls behind by the inbox's bound: large deliveries, then the smallest.
    let filler = |tail: &Arc<str>| {
        Delivery::Many(Fanout {
            targets: Arc::default(),
            skip: Vec::new(),
            tail: tail.clone(),
            born: 0,
        })
    };
    let big: Arc<str> = "x".repeat(1 << 20).into();
    let mut held = 0;
    while inbox.deliver(filler(&big)).is_ok() {
        held += 1;
        assert!(held <= INBOX_BYTES >> 20, "the inbox is bounded");
    }
    let empty: Arc<str> = "".into();
    while inbox.deliver(filler(&empty)).is_ok() {}

    sender.send(json!(["1", "2", "workspace:1", "broadcast", {"x": 1}]));
    let take = std::future::poll_fn(|cx| {
        behind
            .client
            .reader
            .poll_take(cx, &mut behind.client.frames, usize::MAX)
    });
    match actix::clock::timeout(Duration::from_secs(10), take).await {
        Ok(Take::Close(reason)) => {
            assert_eq!((reason.code, reason.reason), (1008, "slow_consumer"))
        }
        Ok(Take::Frames { .. }) => panic!("frames instead of the close"),
        Err(_) => panic!("the subscriber behind was not cut off"),
    }
    // The sender, whom the push was not for, is answered and stays.
    let frames = sender
        .client
        .until(|seen| seen.iter().any(|f| f[1] == "2"))
        .await;
    let reply = frames.iter().find(|f| f[1] == "2").expect("the reply");
    assert_eq!(reply[4]["status"], "ok");
    sender.send(json!([null, "3", "phoenix", "heartbeat", {}]));
    let frames = sender
        .client
        .until(|seen| seen.iter().any(|f| f[1] == "3"))
        .await;
    assert!(frames.iter().any(|f| f[1] == "3" && f[4]["status"] == "ok"));
    assert_eq!(rt.stats().slow_consumers.load(Relaxed), 1);
}
