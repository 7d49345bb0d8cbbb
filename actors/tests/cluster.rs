//! Two nodes in one process, joined by the in-process bus: what a client on one node sees
//! of what happens on the other. The conformance run here is the same suite the Redis bus
//! passes (tests/cluster/conformance.rs in the server crate).

mod common;
#[path = "../../tests/common/presence.rs"]
mod presence;

use std::sync::Arc;

use common::{Gate, Harness};
use presence::PresenceView;
use serde_json::json;
use stoa_actors::{Limits, LiveEvent, LocalHub, Realtime};

/// Two nodes on one hub.
fn pair() -> (Realtime, Realtime, Arc<Gate>) {
    let gate = Arc::new(Gate::default());
    let hub = LocalHub::new();
    let node = |id: &str| common::node_on(&hub, id, Limits::default(), &gate, |_| {});
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
        born: 0,
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

/// Reads presence frames until `view` holds exactly `want` (key → number of metas).
async fn presence_until(
    client: &mut common::Client,
    view: &mut PresenceView,
    want: &[(&str, usize)],
) {
    loop {
        let done = want.iter().all(|(k, n)| view.count(k) == *n)
            && view.metas() == want.iter().map(|(_, n)| n).sum::<usize>();
        if done {
            return;
        }
        view.apply_frame(&client.next().await);
    }
}

#[actix::test]
async fn presence_is_one_view_across_nodes_and_a_leaving_node_takes_its_metas_along() {
    let (a, b, gate) = pair();
    let mut on_a = Harness::start_on(a.clone(), gate.clone());
    on_a.send(json!(["1", "1", "document:5", "phx_join", {}]));
    let mut view_a = PresenceView::default();
    presence_until(&mut on_a.client, &mut view_a, &[("7", 1)]).await;

    // A second connection of the same user, on the other node: both see two metas.
    let mut on_b = Harness::start_on(b.clone(), gate.clone());
    on_b.send(json!(["1", "1", "document:5", "phx_join", {}]));
    let mut view_b = PresenceView::default();
    presence_until(&mut on_b.client, &mut view_b, &[("7", 2)]).await;
    presence_until(&mut on_a.client, &mut view_a, &[("7", 2)]).await;
    assert_eq!(
        view_a, view_b,
        "one view, with phx_refs unique across nodes"
    );

    // Node b shuts down: its meta leaves a's view at once.
    b.begin_shutdown();
    presence_until(&mut on_a.client, &mut view_a, &[("7", 1)]).await;
}

#[actix::test]
async fn the_in_process_bus_passes_the_conformance_suite() {
    let hub = LocalHub::new();
    common::conformance::run(|rt| Arc::new(hub.endpoint(rt.inbox()))).await;
}

/// Presence from another node waits in a topic's mailbox within the same bound as local
/// messages: while the topic is stalled it is shed (and counted), and once the topic moves
/// again it asks the other nodes for their whole presence, so the view comes out right.
#[actix::test]
async fn presence_shed_by_a_full_topic_is_asked_for_again() {
    let gate = Arc::new(Gate::default());
    let hub = LocalHub::new();
    let limits = Limits {
        topic_mailbox: 4,
        ..Limits::default()
    };
    let node = |id: &str| common::node_on(&hub, id, limits.clone(), &gate, |_| {});
    let (a, b) = (node("a"), node("b"));
    let mut on_a = Harness::start_on(a.clone(), gate.clone());
    on_a.send(json!(["1", "1", "document:5", "phx_join", {}]));
    let mut view_a = PresenceView::default();
    presence_until(&mut on_a.client, &mut view_a, &[("7", 1)]).await;

    let mut on_b = Vec::new();
    // Two rounds: node a's topic stalls, and twelve clients join on node b meanwhile, one
    // after another, each join its own presence message to a. (The first round also
    // outlasts the snapshot request a topic makes as it starts, so the second round's
    // view can only come out right by asking again.)
    for round in 1..=2 {
        let shed_before = a
            .stats()
            .topic_shed
            .load(std::sync::atomic::Ordering::Relaxed);
        assert!(a.inject_stall(
            stoa_protocol::Topic::Document(5),
            std::time::Duration::from_millis(1500)
        ));
        for _ in 0..12 {
            let mut h = Harness::start_on(b.clone(), gate.clone());
            h.send(json!(["1", "1", "document:5", "phx_join", {}]));
            assert_eq!(h.client.next_non_presence().await[4]["status"], "ok");
            on_b.push(h);
            // A presence window on b is 25 ms: each join goes to a on its own.
            actix::clock::sleep(std::time::Duration::from_millis(40)).await;
        }
        let shed = a
            .stats()
            .topic_shed
            .load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            shed > shed_before,
            "round {round}: the stalled topic took everything"
        );
        let want = 1 + 12 * round;
        let converged = actix::clock::timeout(
            std::time::Duration::from_secs(10),
            presence_until(&mut on_a.client, &mut view_a, &[("7", want)]),
        )
        .await;
        assert!(
            converged.is_ok(),
            "round {round}: node a's view stayed at {:?}, not {want}",
            view_a.count("7")
        );
    }
}

/// One bus message per broadcast per node that has subscribers, never one per subscriber,
/// and none to a node without any.
#[actix::test]
async fn a_broadcast_is_one_bus_message_whatever_the_subscribers() {
    use std::sync::atomic::Ordering::Relaxed;
    let gate = Arc::new(Gate::default());
    let hub = LocalHub::new();
    let node = |id: &str| {
        common::node_on(&hub, id, Limits::default(), &gate, |c| {
            c.heartbeat = std::time::Duration::from_secs(600)
        })
    };
    let (a, b, c) = (node("a"), node("b"), node("c"));
    let mut sender = Harness::start_on(a.clone(), gate.clone());
    sender.send(json!(["1", "1", "workspace:1", "phx_join", {"presence": false}]));
    assert_eq!(sender.client.next_non_presence().await[4]["status"], "ok");
    let mut subscribers = Vec::new();
    for _ in 0..5 {
        let mut h = Harness::start_on(b.clone(), gate.clone());
        h.send(json!(["1", "1", "workspace:1", "phx_join", {"presence": false}]));
        assert_eq!(h.client.next_non_presence().await[4]["status"], "ok");
        subscribers.push(h);
    }
    let (out_a, in_b, in_c) = (
        a.stats().bus_out.load(Relaxed),
        b.stats().bus_in.load(Relaxed),
        c.stats().bus_in.load(Relaxed),
    );
    for n in 0..10 {
        sender.send(json!(["1", format!("b{n}"), "workspace:1", "broadcast", {"n": n}]));
    }
    for h in &mut subscribers {
        for n in 0..10 {
            let f = h.client.next_non_presence().await;
            assert_eq!(
                (f[3].as_str(), f[4]["n"].as_i64()),
                (Some("broadcast"), Some(n))
            );
        }
    }
    // At most one control message (a topic's presence request) besides the broadcasts.
    let sent = a.stats().bus_out.load(Relaxed) - out_a;
    let heard_b = b.stats().bus_in.load(Relaxed) - in_b;
    let heard_c = c.stats().bus_in.load(Relaxed) - in_c;
    assert!(
        (10..=11).contains(&sent),
        "node a published {sent} messages"
    );
    assert!(
        (10..=11).contains(&heard_b),
        "node b heard {heard_b} messages"
    );
    assert!(
        heard_c <= 1,
        "node c, with no subscriber, heard {heard_c} messages"
    );
}
