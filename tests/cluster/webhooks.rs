//! Webhooks in a cluster: one node at a time delivers an endpoint's stream (a lease in the
//! database), and when that node is killed mid-delivery the other takes the stream over
//! once the lease runs out: every event arrives, in order; those the dead node sent after
//! it last wrote its position (at most 64) arrive twice.

use std::time::Instant;

use serde_json::json;

use crate::harness::Cluster;
use crate::receiver::{accepted, Receiver, SECRET};

#[actix_web::test]
async fn a_node_killed_mid_delivery_hands_the_stream_over_and_nothing_is_lost() {
    let env = [
        ("STOA_WEBHOOKS__ALLOW_PRIVATE_TARGETS", "true"),
        ("STOA_WEBHOOKS__LEASE_SECS", "2"),
        ("STOA_WEBHOOKS__BACKOFF_BASE_MS", "50"),
        ("STOA_WEBHOOKS__BACKOFF_MAX_SECS", "1"),
    ];
    let Some(mut c) = Cluster::start(2, &env).await else {
        return;
    };
    // Each request takes the receiver 20 ms: the stream is still being sent when a node dies.
    let receiver = Receiver::start(&["--delay-ms", "20"]);
    let (_, alice) = c.nodes[0].register("alice");
    let ws = c.nodes[0].workspace_with(&alice, &[]);
    let r = c.nodes[0].json(
        "POST",
        &format!("/api/v1/workspaces/{ws}/webhooks"),
        Some(&alice),
        json!({"url": receiver.url("127.0.0.1"), "secret": SECRET}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let hook = r.value()["id"].as_i64().unwrap();
    let from = r.value()["delivered_offset"].as_i64().unwrap();
    for i in 0..60 {
        c.nodes[i % 2].document(&alice, ws, json!({"title": format!("Doc {i}")}));
    }
    receiver
        .until("the first deliveries", |s| accepted(s).len() >= 10)
        .await;

    // Which node holds the stream: it is killed (-9).
    let mut db = {
        use sqlx::Connection;
        sqlx::PgConnection::connect(&c.db.url)
            .await
            .expect("database")
    };
    let holder: String = sqlx::query_scalar("SELECT lease_node FROM webhooks WHERE id = $1")
        .bind(hook)
        .fetch_one(&mut db)
        .await
        .expect("the lease");
    let k = if holder == "node0" { 0 } else { 1 };
    assert_eq!(holder, format!("node{k}"));
    drop(c.nodes.remove(k));
    let killed = Instant::now();
    // The survivor writes on, and takes the stream over.
    for i in 60..80 {
        c.nodes[0].document(&alice, ws, json!({"title": format!("Doc {i}")}));
    }
    let head = from + 80;
    let seen = receiver
        .until("every event after the kill", |s| {
            accepted(s).contains(&head)
        })
        .await;
    eprintln!(
        "the stream was taken over and caught up {:?} after the kill",
        killed.elapsed()
    );
    assert!(seen.iter().all(|v| v["signed"] == true));
    let got = accepted(&seen);
    // One run from the first event, then, where the survivor took over, a run that starts
    // again at the position the dead node last wrote (at most 64 behind what it had sent:
    // those arrive twice) and goes on to the head.
    let breaks: Vec<usize> = (1..got.len())
        .filter(|&i| got[i] != got[i - 1] + 1)
        .collect();
    assert!(breaks.len() <= 1, "one takeover, else in order: {got:?}");
    if let Some(&i) = breaks.first() {
        let (before, after) = (got[i - 1], got[i]);
        assert!(after <= before, "nothing skipped at the takeover: {got:?}");
        assert!(before - after < 64, "at most 64 sent again: {got:?}");
    }
    assert_eq!(got.first(), Some(&(from + 1)));
    assert_eq!(got.last(), Some(&head));
    let mut all = got.clone();
    all.sort_unstable();
    all.dedup();
    let want: Vec<i64> = (from + 1..=head).collect();
    assert_eq!(all, want, "every event arrived");
    let holder: String = sqlx::query_scalar("SELECT lease_node FROM webhooks WHERE id = $1")
        .bind(hook)
        .fetch_one(&mut db)
        .await
        .expect("the lease");
    assert_ne!(holder, format!("node{k}"), "the survivor holds it now");
}
