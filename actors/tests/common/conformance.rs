//! The bus conformance suite: two nodes, each given a bus by `connect`, and what a client
//! on one node must see of what happens on the other. Every bus implementation runs it:
//! the in-process hub (actors/tests/cluster.rs) and Redis (tests/cluster/conformance.rs).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use stoa_actors::{Bus, Cluster, Limits, LiveEvent, Realtime};

use super::{Client, EmptyLog, Gate, Harness};

/// Two nodes, `a` and `b`, joined by the buses `connect` makes.
pub fn pair(
    connect: impl Fn(&Realtime) -> Arc<dyn Bus>,
) -> (Realtime, Realtime, Arc<Gate>, Vec<Arc<dyn Bus>>) {
    let gate = Arc::new(Gate::default());
    let buses = std::cell::RefCell::new(Vec::new());
    let node = |id: &str| {
        let cluster = Cluster {
            node_id: id.into(),
            ..Cluster::default()
        };
        let rt = Realtime::in_cluster(gate.clone(), Arc::new(EmptyLog), Limits::default(), cluster);
        let bus = connect(&rt);
        buses.borrow_mut().push(bus.clone());
        rt.connect_bus(bus);
        rt
    };
    let (a, b) = (node("a"), node("b"));
    (a, b, gate, buses.into_inner())
}

/// Waits (10 s at most) until every bus says it is connected: a message published before
/// a bus is (a broker's connection takes some round trips) may reach no one, which the
/// event log heals in a server but nothing does in this suite.
async fn connected(buses: &[Arc<dyn Bus>]) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !buses.iter().all(|b| b.connected()) {
        assert!(
            std::time::Instant::now() < deadline,
            "a bus did not connect within 10 s"
        );
        actix::clock::sleep(Duration::from_millis(5)).await;
    }
}

async fn next_event(client: &mut Client, event: &str) -> Value {
    loop {
        let f = client.next().await;
        if f[3] == event {
            return f;
        }
    }
}

/// Joins `topic` and waits for the reply; presence off unless `presence`.
async fn joined(h: &mut Harness, r: &str, topic: &str, presence: bool) {
    h.send(json!([r, r, topic, "phx_join", {"presence": presence}]));
    loop {
        let f = h.client.next().await;
        if f[3] == "phx_reply" && f[1] == r {
            assert_eq!(f[4]["status"], "ok", "{f}");
            return;
        }
    }
}

/// phx_refs in a client's presence view, kept up to date by `track`.
#[derive(Default)]
pub struct View(HashMap<String, BTreeSet<String>>);

impl View {
    fn apply(&mut self, f: &Value) {
        let refs = |e: &Value| -> Vec<String> {
            e["metas"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m["phx_ref"].as_str().map(str::to_string))
                .collect()
        };
        if f[3] == "presence_state" {
            self.0.clear();
            for (k, e) in f[4].as_object().into_iter().flatten() {
                self.0.insert(k.clone(), refs(e).into_iter().collect());
            }
        } else if f[3] == "presence_diff" {
            for (k, e) in f[4]["joins"].as_object().into_iter().flatten() {
                self.0.entry(k.clone()).or_default().extend(refs(e));
            }
            for (k, e) in f[4]["leaves"].as_object().into_iter().flatten() {
                if let Some(s) = self.0.get_mut(k) {
                    for r in refs(e) {
                        s.remove(&r);
                    }
                }
            }
            self.0.retain(|_, s| !s.is_empty());
        }
    }

    /// Reads until the view holds `n` metas.
    pub async fn until(&mut self, client: &mut Client, n: usize) {
        while self.0.values().map(BTreeSet::len).sum::<usize>() != n {
            let f = client.next().await;
            self.apply(&f);
        }
    }

    fn refs(&self) -> BTreeSet<String> {
        self.0.values().flatten().cloned().collect()
    }
}

/// Events, broadcasts, notifications, revocations and presence between two nodes.
pub async fn run(connect: impl Fn(&Realtime) -> Arc<dyn Bus>) {
    run_with(connect, false).await;
}

/// The suite, begun once both buses are connected: for a bus whose connection takes a
/// broker some round trips (RabbitMQ), so that what the suite publishes first is not
/// published before anyone can hear it.
pub async fn run_once_connected(connect: impl Fn(&Realtime) -> Arc<dyn Bus>) {
    run_with(connect, true).await;
}

async fn run_with(connect: impl Fn(&Realtime) -> Arc<dyn Bus>, wait: bool) {
    let (a, b, gate, buses) = pair(connect);
    if wait {
        connected(&buses).await;
    }
    let mut on_a = Harness::start_on(a.clone(), gate.clone());
    let mut on_b = Harness::start_on(b.clone(), gate.clone());
    joined(&mut on_a, "1", "workspace:1", false).await;
    joined(&mut on_b, "1", "workspace:1", false).await;

    // An event committed through b reaches a once, in order with what follows.
    for offset in 1..=3 {
        b.publish(LiveEvent {
            workspace_id: 1,
            offset,
            document_id: None,
            payload: Arc::new(json!({"offset": offset})),
            born: 0,
        });
    }
    for offset in 1..=3 {
        assert_eq!(
            next_event(&mut on_a.client, "event").await[4]["offset"],
            offset
        );
    }

    // A broadcast on b reaches a, from the sender the server set.
    on_b.send(json!(["1", "2", "workspace:1", "broadcast", {"type": "typing"}]));
    let heard = next_event(&mut on_a.client, "broadcast").await;
    assert_eq!(
        (heard[4]["type"].clone(), heard[4]["from"].clone()),
        (json!("typing"), json!(7))
    );

    // A notification through b reaches the user's topic on a.
    joined(&mut on_a, "2", "user:7", false).await;
    b.notify_user(7, json!({"kind": "mention"}));
    let note = next_event(&mut on_a.client, "notification").await;
    assert_eq!(note[4]["kind"], "mention");

    // Presence: one view on both nodes, with phx_refs unique across them.
    joined(&mut on_a, "3", "document:9", true).await;
    let mut view_a = View::default();
    view_a.until(&mut on_a.client, 1).await;
    joined(&mut on_b, "3", "document:9", true).await;
    let mut view_b = View::default();
    view_b.until(&mut on_b.client, 2).await;
    view_a.until(&mut on_a.client, 2).await;
    assert_eq!(view_a.refs(), view_b.refs());

    // b leaves: its presences leave a's view at once.
    b.begin_shutdown();
    view_a.until(&mut on_a.client, 1).await;

    // A revocation through b closes the channel on a at once.
    b.revoke_member(1, 7, "membership_revoked");
    let close = next_event(&mut on_a.client, "phx_close").await;
    assert_eq!(close[4]["reason"], "membership_revoked");
}
