//! Nodes and Redis failing: a killed node's presences leave the others in time; a Redis
//! outage loses no event and leaves presence consistent.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::presence::PresenceView;
use crate::harness::{until, Cluster};
use crate::support::{RawWs, PATIENCE};

const HEARTBEAT_MS: &str = "300";
const EXPIRY_MS: &str = "1500";
pub const ENV: [(&str, &str); 2] = [
    ("STOA_CLUSTER__HEARTBEAT_MS", HEARTBEAT_MS),
    ("STOA_CLUSTER__NODE_EXPIRY_MS", EXPIRY_MS),
];

/// A client's view of a topic's presence, with a wait for a given set of nodes' metas.
#[derive(Default)]
struct View(PresenceView);

impl View {
    fn apply(&mut self, frame: &Value) {
        self.0.apply_frame(frame);
    }

    fn refs(&self) -> BTreeSet<String> {
        self.0.refs()
    }

    /// Reads `ws` until the view holds exactly refs starting with each of `nodes`, once
    /// each (per the multiplicity given).
    fn until(&mut self, ws: &mut RawWs, want: &[&str]) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let mut have: Vec<String> = self
                .refs()
                .iter()
                .map(|r| r.split('-').next().unwrap_or("").to_string())
                .collect();
            have.sort();
            let mut wanted: Vec<String> = want.iter().map(|s| s.to_string()).collect();
            wanted.sort();
            if have == wanted {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "presence never became {want:?}: {:?}",
                self.0
            );
            let frame = until(ws, "presence", |v| {
                v[3] == "presence_state" || v[3] == "presence_diff"
            });
            self.apply(&frame);
        }
    }
}

#[actix_web::test]
async fn presence_crosses_nodes_and_a_killed_node_leaves_within_the_expiry() {
    let Some(c) = Cluster::start(3, &ENV).await else {
        return;
    };
    a_killed_node_leaves(c);
}

/// Three nodes started with `ENV`'s heartbeat and expiry: presence crosses them, and the
/// third's presences leave the first within the expiry of its kill -9.
pub fn a_killed_node_leaves(mut c: Cluster) {
    let (_, alice) = c.nodes[0].register("alice");
    let ws = c.nodes[0].workspace_with(&alice, &[]);
    let topic = format!("workspace:{ws}");
    let mut on_a = c.nodes[0].ws(&alice);
    on_a.join(&topic, json!({}));
    let mut view = View::default();
    view.until(&mut on_a, &["node0"]);
    // Joined on the third node: it appears on the first.
    let mut on_c = c.nodes[2].ws(&alice);
    on_c.join(&topic, json!({}));
    view.until(&mut on_a, &["node0", "node2"]);
    let mut view_c = View::default();
    view_c.until(&mut on_c, &["node0", "node2"]);
    assert_eq!(view.refs(), view_c.refs(), "one view on both nodes");

    // kill -9 the third node: its presence leaves the first within the expiry.
    let killed = Instant::now();
    drop(c.nodes.remove(2));
    view.until(&mut on_a, &["node0"]);
    let took = killed.elapsed();
    eprintln!("a killed node's presence left after {took:?}");
    let bound = Duration::from_millis(1500 + 2 * 300 + 1000);
    assert!(took < bound, "took {took:?}, bound {bound:?}");
    // And the cluster view says so: this node first, then the one still alive, each with
    // the load its heartbeat carries (a session opened on the second shows on the first).
    let mut on_b = c.nodes[1].ws(&alice);
    on_b.join(&topic, json!({}));
    let deadline = Instant::now() + Duration::from_secs(5);
    let body = loop {
        let r = c.nodes[0].http(
            "GET",
            "/api/v1/cluster",
            &[("Authorization", &format!("Bearer {alice}"))],
            b"",
        );
        let body = r.value();
        let nodes: Vec<(&str, u64)> = body["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| (n["id"].as_str().unwrap(), n["sessions"].as_u64().unwrap()))
            .collect();
        if nodes == vec![("node0", 1), ("node1", 1)] {
            break body;
        }
        assert!(Instant::now() < deadline, "{}", r.text());
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(body["nodes"][0]["last_heard_ms"], 0);
    assert_eq!(body["nodes"][1]["documents"], 0);
    assert!(c.nodes[0].metric("stoa_cluster_nodes_expired_total") >= 1.0);
}

#[actix_web::test]
async fn a_node_restarted_under_its_id_before_expiry_drops_its_earlier_presences() {
    // Expiry far beyond the test: only the restart can make the old presence leave.
    let env = [
        ("STOA_CLUSTER__HEARTBEAT_MS", HEARTBEAT_MS),
        ("STOA_CLUSTER__NODE_EXPIRY_MS", "600000"),
    ];
    let Some(mut c) = Cluster::start(2, &env).await else {
        return;
    };
    let (_, alice) = c.nodes[0].register("alice");
    let ws = c.nodes[0].workspace_with(&alice, &[]);
    let topic = format!("workspace:{ws}");
    let mut on_a = c.nodes[0].ws(&alice);
    on_a.join(&topic, json!({}));
    let mut view = View::default();
    let mut on_b = c.nodes[1].ws(&alice);
    on_b.join(&topic, json!({}));
    view.until(&mut on_a, &["node0", "node1"]);
    let before = view.refs();

    // kill -9 the second node and start it again at once, under the same id. Nobody
    // joins the topic there: only its first heartbeat can tell the first node that the
    // presence it held is gone.
    drop(c.nodes.remove(1));
    let again = c.node("node1", &env);
    view.until(&mut on_a, &["node0"]);
    // Joined there again: the new presence shows on both nodes, the dead one nowhere.
    let mut on_b = again.ws(&alice);
    on_b.join(&topic, json!({}));
    view.until(&mut on_a, &["node0", "node1"]);
    let after = view.refs();
    assert!(
        before.intersection(&after).count() == 1,
        "{before:?} {after:?}"
    );
    let mut view_b = View::default();
    view_b.until(&mut on_b, &["node0", "node1"]);
    assert_eq!(view_b.refs(), after);
}

#[actix_web::test]
async fn a_redis_outage_loses_no_event_and_presence_reconciles() {
    let Some(c) = Cluster::start(3, &[]).await else {
        return;
    };
    an_outage_loses_nothing(c);
}

/// Three nodes lose their bus (killed), are written to through each meanwhile, and get it
/// back: every client has every event, in order, once, and presence is reconciled.
pub fn an_outage_loses_nothing(mut c: Cluster) {
    let (_, alice) = c.nodes[0].register("alice");
    let ws = c.nodes[0].workspace_with(&alice, &[]);
    let topic = format!("workspace:{ws}");
    let mut socks: Vec<RawWs> = c
        .nodes
        .iter()
        .map(|n| {
            let mut s = n.ws(&alice);
            s.join(&topic, json!({}));
            s
        })
        .collect();
    let mut view = View::default();
    view.until(&mut socks[0], &["node0", "node1", "node2"]);

    c.broker.stop();
    for n in &c.nodes {
        let deadline = Instant::now() + PATIENCE;
        while n.http("GET", "/readyz", &[], b"").value()["status"] != "degraded" {
            assert!(Instant::now() < deadline, "the bus never reported degraded");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // During the outage: three writes through each node, the third node's socket goes
    // away, and a new one joins on the second.
    for n in &c.nodes {
        for i in 0..3 {
            let r = n.json(
                "POST",
                &format!("/api/v1/workspaces/{ws}/documents"),
                Some(&alice),
                json!({"title": format!("During {i}"), "content": ""}),
            );
            assert_eq!(r.status, 201, "{}", r.text());
        }
    }
    let gone = socks.pop().unwrap();
    drop(gone);
    let mut late = c.nodes[1].ws(&alice);
    late.join(&topic, json!({}));
    c.broker.resume();

    // Every client gets every event, in order, once.
    let head = 1 + 9; // workspace.created, then nine documents
    for (i, s) in socks.iter_mut().enumerate() {
        let mut seen = Vec::new();
        while seen.len() < 9 {
            let ev = until(s, "the outage's events", |v| v[3] == "event");
            seen.push(ev[4]["offset"].as_i64().unwrap());
        }
        let expected: Vec<i64> = (2..=head).collect();
        assert_eq!(seen, expected, "socket {i}");
    }
    // Presence is reconciled: the socket that went away is gone, the new one is there.
    view.until(&mut socks[0], &["node0", "node1", "node1"]);
}
