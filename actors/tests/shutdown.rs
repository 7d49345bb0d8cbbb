//! A socket accepted just as the node begins to drain is sent away too, not left open
//! until the process exits.

mod common;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use common::{EmptyLog, Gate, Wire};
use stoa_actors::outbox::Take;
use stoa_actors::{Limits, Realtime, SessionActor};
use tokio::sync::mpsc;

#[actix::test]
async fn a_session_that_starts_after_the_drain_began_goes_away_with_1001() {
    let rt = Realtime::new(
        Arc::new(Gate::default()),
        Arc::new(EmptyLog),
        Limits::default(),
    );
    // The drain's list of sessions is taken (empty) before this session starts.
    rt.begin_shutdown();
    rt.drain(Duration::from_millis(10)).await;
    let (_wire, incoming) = mpsc::unbounded_channel();
    let permit = rt.admit(7).expect("admitted");
    let (_session, reader) = SessionActor::start(&rt, permit, i64::MAX, Wire(incoming));
    let mut frames = VecDeque::new();
    let closed = actix::clock::timeout(Duration::from_secs(5), async {
        loop {
            let take = std::future::poll_fn(|cx| reader.poll_take(cx, &mut frames, usize::MAX));
            if let Take::Close(reason) = take.await {
                return reason;
            }
        }
    })
    .await
    .expect("the session was sent away");
    assert_eq!((closed.code, closed.reason), (1001, "going_away"));
}
