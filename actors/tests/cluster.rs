//! Two nodes in one process, joined by the in-process bus: what a client on one node sees
//! of what happens on the other. The Redis bus passes the same checks between processes
//! (tests/cluster in the server crate).

mod common;

use std::sync::Arc;

use common::{EmptyLog, Gate, Harness};
use serde_json::json;
use stoa_actors::{Cluster, Limits, LiveEvent, LocalHub, Realtime};

/// Two nodes on one hub.
fn pair() -> (Realtime, Realtime, Arc<Gate>) {
    let gate = Arc::new(Gate::default());
    let hub = LocalHub::new();
    let node = |id: &str| {
        let cluster = Cluster {
            node_id: id.into(),
            ..Cluster::default()
        };
        let rt = Realtime::in_cluster(gate.clone(), Arc::new(EmptyLog), Limits::default(), cluster);
        rt.connect_bus(Arc::new(hub.endpoint(rt.inbox())));
        rt
    };
    (node("a"), node("b"), gate)
}

#[actix::test]
async fn events_broadcasts_notifications_and_revocations_cross_nodes() {
    let (a, b, gate) = pair();
    let mut on_a = Harness::start_on(a.clone(), gate.clone());
    let mut on_b = Harness::start_on(b.clone(), gate.clone());
    on_a.send(json!(["1", "1", "workspace:1", "phx_join", {"presence": false}]));
    assert_eq!(on_a.client.next_non_presence().await[4]["status"], "ok");
    on_b.send(json!(["1", "1", "workspace:1", "phx_join", {"presence": false}]));
    assert_eq!(on_b.client.next_non_presence().await[4]["status"], "ok");

    // An event committed through node b reaches the client on node a, once.
    b.publish(LiveEvent {
        workspace_id: 1,
        offset: 1,
        document_id: None,
        payload: Arc::new(json!({"offset": 1})),
    });
    let event = on_a.client.next_non_presence().await;
    assert_eq!(
        (event[3].clone(), event[4]["offset"].clone()),
        (json!("event"), json!(1))
    );
    assert_eq!(on_b.client.next_non_presence().await[4]["offset"], 1);

    // A broadcast on b reaches a (and not its sender).
    on_b.send(json!(["1", "2", "workspace:1", "broadcast", {"type": "typing"}]));
    assert_eq!(on_b.client.next_non_presence().await[4]["status"], "ok");
    let heard = on_a.client.next_non_presence().await;
    assert_eq!(heard[3], "broadcast");
    assert_eq!(heard[4]["type"], "typing");
    assert_eq!(heard[4]["from"], 7);

    // A notification through b reaches user 7's topic on a.
    on_a.send(json!(["2", "2", "user:7", "phx_join", {}]));
    assert_eq!(on_a.client.next_non_presence().await[4]["status"], "ok");
    b.notify_user(7, json!({"kind": "mention"}));
    let note = on_a.client.next_non_presence().await;
    assert_eq!(
        (note[2].clone(), note[3].clone()),
        (json!("user:7"), json!("notification"))
    );

    // Removing the member through b closes the channel on a at once.
    b.revoke_member(1, 7, "membership_revoked");
    let close = on_a.client.next_non_presence().await;
    assert_eq!(close[3], "phx_close");
    assert_eq!(close[4]["reason"], "membership_revoked");
    assert!(a.stats().bus_in.load(std::sync::atomic::Ordering::Relaxed) >= 4);
}
