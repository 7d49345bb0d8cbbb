//! A join authorised just before the membership behind it is removed must not land after
//! the removal. The authoriser here is a gate the test holds shut while it revokes, so the
//! interleaving is exact rather than left to timing.

mod common;

use std::collections::VecDeque;
use std::sync::Arc;

use common::{Client, EmptyLog, Gate, Wire};
use serde_json::json;
use stoa_actors::ports::LiveEvent;
use stoa_actors::{Limits, Realtime, SessionActor, WireIn};
use tokio::sync::{mpsc, oneshot};

#[actix::test]
async fn a_join_authorised_before_a_removal_does_not_land_after_it() {
    let gate = Arc::new(Gate::default());
    let (entered_tx, entered) = oneshot::channel();
    let (open, open_rx) = oneshot::channel();
    *gate.entered.lock().unwrap() = Some(entered_tx);
    *gate.open.lock().unwrap() = Some(open_rx);
    let rt = Realtime::new(gate.clone(), Arc::new(EmptyLog), Limits::default());
    let (wire, incoming) = mpsc::unbounded_channel();
    let permit = rt.admit(7).expect("admitted");
    let (_session, reader) = SessionActor::start(&rt, permit, i64::MAX, Wire(incoming));
    let mut client = Client {
        reader,
        frames: VecDeque::new(),
    };

    let join = r#"["1","1","workspace:1","phx_join",{}]"#;
    wire.send(WireIn::Text(join.into())).unwrap();
    entered.await.unwrap();
    // The check has read the membership; now it is removed, then the check answers.
    rt.revoke_member(1, 7, "membership_revoked");
    open.send(()).unwrap();
    let reply = client.next().await;
    assert_eq!(reply[3], "phx_reply");
    assert_eq!(reply[4]["status"], "error");
    assert_eq!(reply[4]["response"]["reason"], "unauthorized");

    // A join authorised after the removal (re-added, say) is accepted and live.
    let join = r#"["2","2","workspace:1","phx_join",{}]"#;
    wire.send(WireIn::Text(join.into())).unwrap();
    let reply = client.next().await;
    assert_eq!(
        (reply[1].clone(), reply[4]["status"].clone()),
        (json!("2"), json!("ok"))
    );
    let presence = client.next().await;
    assert_eq!(presence[3], "presence_state");
    rt.publish(LiveEvent {
        workspace_id: 1,
        offset: 1,
        document_id: None,
        payload: Arc::new(json!({"offset": 1})),
        born: 0,
    });
    let event = client.next().await;
    assert_eq!(event[3], "event");
    assert_eq!(event[0], "2");
    let refused = rt
        .stats()
        .joins_refused
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(refused, 1);
}
