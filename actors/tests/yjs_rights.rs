//! A Yjs socket whose rights were checked just before they changed must not open with the
//! old ones: a removal closes it as it reaches its document, a role change closes it to be
//! checked again. The test takes the check's time itself, so the order is exact.

mod common;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use common::{EmptyLog, Gate, MemDocs, Wire};
use stoa_actors::outbox::{OutboxReader, Take};
use stoa_actors::{Limits, Realtime, WireIn, YjsSession};
use tokio::sync::mpsc;

/// Opens a Yjs socket of user 7 on document 5 of workspace 1, as an editor checked at
/// `checked`; the test's end of its write side.
fn open(rt: &Realtime, checked: Instant) -> (mpsc::UnboundedSender<WireIn>, OutboxReader) {
    let (wire, incoming) = mpsc::unbounded_channel();
    let permit = rt.admit(7).expect("admitted");
    let reader = YjsSession::start(rt, permit, 5, 1, true, i64::MAX, checked, Wire(incoming))
        .expect("a document store");
    (wire, reader)
}

/// Reads until the socket is closed; its reason (`None` if it stays open for 2 s).
async fn closed(reader: &mut OutboxReader) -> Option<&'static str> {
    let mut frames = VecDeque::new();
    loop {
        let take = std::future::poll_fn(|cx| reader.poll_take(cx, &mut frames, usize::MAX));
        match actix::clock::timeout(std::time::Duration::from_secs(2), take).await {
            Ok(Take::Close(reason)) => return Some(reason.reason),
            Ok(Take::Frames { .. }) => frames.clear(),
            Err(_) => return None,
        }
    }
}

fn node() -> Realtime {
    let rt = Realtime::new(
        Arc::new(Gate::default()),
        Arc::new(EmptyLog),
        Limits::default(),
    );
    rt.set_doc_store(Arc::new(MemDocs::default()));
    rt
}

#[actix::test]
async fn a_yjs_socket_checked_before_a_removal_is_closed_as_it_opens() {
    let rt = node();
    let checked = Instant::now();
    rt.revoke_member(1, 7, "membership_revoked");
    let (_wire, mut reader) = open(&rt, checked);
    assert_eq!(closed(&mut reader).await, Some("membership_revoked"));
}

#[actix::test]
async fn a_yjs_socket_checked_before_a_role_change_is_closed_to_be_checked_again() {
    let rt = node();
    let checked = Instant::now();
    rt.role_changed(1, 7, false);
    let (_wire, mut reader) = open(&rt, checked);
    assert_eq!(closed(&mut reader).await, Some("role_changed"));
    // Checked after the change, a socket opens and stays open.
    let (_wire, mut reader) = open(&rt, Instant::now());
    assert_eq!(closed(&mut reader).await, None);
    // Another member's role change, or another workspace's, is not this socket's.
    let checked = Instant::now();
    rt.role_changed(1, 8, false);
    rt.role_changed(2, 7, false);
    let (_wire, mut reader) = open(&rt, checked);
    assert_eq!(closed(&mut reader).await, None);
}
