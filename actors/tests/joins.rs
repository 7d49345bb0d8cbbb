//! Phoenix join semantics: every join gets exactly one reply, a join of a topic already
//! joined closes the earlier join first, and whatever a client sends on a topic while its
//! join is being authorised waits behind the join instead of being refused.

mod common;

use std::collections::HashMap;

use common::Harness;
use serde_json::{json, Value};
use stoa_actors::{Limits, WireIn};

fn join(r: &str, topic: &str) -> Value {
    json!([r, r, topic, "phx_join", {}])
}

/// Replies by ref, and the refs that received `phx_close`, among `frames`.
fn replies_and_closes(frames: &[Value]) -> (HashMap<String, Vec<Value>>, Vec<String>) {
    let mut replies: HashMap<String, Vec<Value>> = HashMap::new();
    let mut closes = Vec::new();
    for f in frames {
        match f[3].as_str() {
            Some("phx_reply") => replies
                .entry(f[1].as_str().unwrap_or_default().to_string())
                .or_default()
                .push(f[4].clone()),
            Some("phx_close") => closes.push(f[0].as_str().unwrap_or_default().to_string()),
            _ => {}
        }
    }
    (replies, closes)
}

#[actix::test]
async fn joins_of_one_topic_sent_back_to_back_each_get_one_reply_in_order() {
    let mut h = Harness::start(Limits::default());
    for r in ["j1", "j2", "j3", "j4", "j5"] {
        h.send(join(r, "workspace:1"));
    }
    let frames: Vec<Value> = h
        .client
        .until(|seen| seen.iter().any(|f| f[3] == "phx_reply" && f[1] == "j5"))
        .await
        .into_iter()
        .filter(|f| f[3] != "presence_state" && f[3] != "presence_diff")
        .collect();
    let seen: Vec<(String, String)> = frames
        .iter()
        .map(|f| {
            (
                f[3].as_str().unwrap().to_string(),
                f[1].as_str().or(f[0].as_str()).unwrap().to_string(),
            )
        })
        .collect();
    // j1 ok, j1 closed, j2 ok, j2 closed, …, j5 ok: each earlier join is closed before
    // the next one's reply.
    let mut expected = Vec::new();
    for (i, r) in ["j1", "j2", "j3", "j4", "j5"].iter().enumerate() {
        expected.push(("phx_reply".to_string(), r.to_string()));
        if i < 4 {
            expected.push(("phx_close".to_string(), r.to_string()));
        }
    }
    assert_eq!(seen, expected);
    for f in frames.iter().filter(|f| f[3] == "phx_reply") {
        assert_eq!(f[4]["status"], "ok", "{f}");
    }
}

#[actix::test]
async fn a_burst_of_joins_gets_exactly_one_reply_per_join() {
    // Room for every answer: this client reads only once it has sent everything.
    let mut h = Harness::start(Limits {
        outbound_queue: 4096,
        ..Limits::default()
    });
    // 1,000 joins over five topics: the rate limit admits some, the others are refused,
    // and every one of them hears back exactly once.
    for i in 0..1000 {
        h.send(join(&format!("b{i}"), &format!("workspace:{}", i % 5 + 1)));
    }
    let frames = h
        .client
        .until(|seen| replies_and_closes(seen).0.len() == 1000)
        .await;
    let (replies, _) = replies_and_closes(&frames);
    for i in 0..1000 {
        let r = format!("b{i}");
        let got = replies.get(&r).map_or(0, Vec::len);
        assert_eq!(got, 1, "join {r} got {got} replies");
    }
    // What is not admitted is refused with a reason: over the message rate, or over the
    // number of messages that may wait behind joins still being checked.
    let mut reasons: HashMap<String, usize> = HashMap::new();
    for reply in replies.values() {
        let reason = match reply[0]["status"].as_str() {
            Some("ok") => "ok".to_string(),
            _ => reply[0]["response"]["reason"]
                .as_str()
                .unwrap_or("?")
                .to_string(),
        };
        *reasons.entry(reason).or_default() += 1;
    }
    let ok = reasons.get("ok").copied().unwrap_or(0);
    assert!(ok >= 5, "each topic was joined: {reasons:?}");
    assert!(
        reasons.get("rate_limited").copied().unwrap_or(0) >= 800,
        "{reasons:?}"
    );
    for reason in reasons.keys() {
        assert!(
            ["ok", "rate_limited", "too many messages waiting for joins"]
                .contains(&reason.as_str()),
            "{reasons:?}"
        );
    }
}

/// While a join is being authorised, at most 64 of the connection's messages wait behind
/// it; the 65th and later are refused at once with a reason, and those that waited are
/// handled, in order, once the join is answered.
#[actix::test]
async fn at_most_64_messages_wait_behind_joins() {
    let mut h = Harness::start(Limits {
        messages_per_sec: 1_000,
        message_burst: 1_000,
        user_messages_per_sec: 1_000,
        user_message_burst: 1_000,
        topic_broadcasts_per_sec: 1_000,
        ..Limits::default()
    });
    let (entered, open) = h.gate.hold_next();
    h.send(join("1", "workspace:1"));
    entered.await.unwrap();
    for i in 0..80 {
        h.send(json!(["1", format!("m{i}"), "workspace:1", "broadcast", {"n": i}]));
    }
    // The 16 over the bound are refused while the join still waits.
    let refused = h
        .client
        .until(|seen| seen.iter().filter(|f| f[3] == "phx_reply").count() == 16)
        .await;
    let refused: Vec<String> = refused
        .iter()
        .filter(|f| f[3] == "phx_reply")
        .map(|f| {
            assert_eq!(
                f[4]["response"]["reason"], "too many messages waiting for joins",
                "{f}"
            );
            f[1].as_str().unwrap().to_string()
        })
        .collect();
    let expected: Vec<String> = (64..80).map(|i| format!("m{i}")).collect();
    assert_eq!(refused, expected);
    // The join is answered, then the 64 that waited, in order.
    open.send(()).unwrap();
    let replies = h
        .client
        .until(|seen| seen.iter().filter(|f| f[3] == "phx_reply").count() == 65)
        .await;
    let order: Vec<(String, String)> = replies
        .iter()
        .filter(|f| f[3] == "phx_reply")
        .map(|f| {
            (
                f[1].as_str().unwrap().to_string(),
                f[4]["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(order[0], ("1".to_string(), "ok".to_string()));
    for (i, (r, status)) in order[1..].iter().enumerate() {
        assert_eq!(
            (r.as_str(), status.as_str()),
            (format!("m{i}").as_str(), "ok")
        );
    }
}

/// A join still being authorised when its socket closes leaves nothing behind once the
/// authorisation comes back: the topic holds no subscription and no presence of it.
#[actix::test]
async fn a_join_answered_after_its_socket_closed_leaves_no_subscription() {
    use std::sync::atomic::Ordering::Relaxed;
    let h = Harness::start(Limits::default());
    let rt = h.rt.clone();
    let (entered, open) = h.gate.hold_next();
    h.send(join("1", "workspace:1"));
    entered.await.unwrap();
    h.wire.send(WireIn::Close).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while rt.stats().connections.load(Relaxed) > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the session did not end"
        );
        actix::clock::sleep(std::time::Duration::from_millis(10)).await;
    }
    // The authorisation comes back now, for a socket that is gone (or finds its asker
    // gone: the session's end dropped the wait); then another client joins the same topic,
    // with presence, and sees only itself.
    let _ = open.send(());
    let mut probe = Harness::start_on(rt.clone(), h.gate.clone());
    probe.send(json!(["1", "1", "workspace:1", "phx_join", {}]));
    let frames = probe
        .client
        .until(|seen| seen.iter().any(|f| f[3] == "presence_state"))
        .await;
    let state = frames.iter().find(|f| f[3] == "presence_state").unwrap();
    let metas: usize = state[4]
        .as_object()
        .unwrap()
        .values()
        .map(|e| e["metas"].as_array().unwrap().len())
        .sum();
    assert_eq!(metas, 1, "{state}");
    assert_eq!(rt.stats().subscriptions.load(Relaxed), 1);
}

#[actix::test]
async fn a_push_sent_before_the_join_reply_waits_for_the_join() {
    let mut h = Harness::start(Limits::default());
    let (entered, open) = h.gate.hold_next();
    h.send(join("1", "workspace:1"));
    entered.await.unwrap();
    // While the join is being authorised: a broadcast, a presence update and a leave.
    h.send(json!(["1", "2", "workspace:1", "broadcast", {"type": "typing"}]));
    h.send(json!(["1", "3", "workspace:1", "presence:update", {"cursor": 4}]));
    h.send(json!(["1", "4", "workspace:1", "phx_leave", {}]));
    open.send(()).unwrap();
    let mut order = Vec::new();
    for _ in 0..5 {
        let f = h.client.next_non_presence().await;
        order.push((f[3].clone(), f[1].clone(), f[4]["status"].clone()));
    }
    assert_eq!(
        order,
        vec![
            (json!("phx_reply"), json!("1"), json!("ok")),
            (json!("phx_reply"), json!("2"), json!("ok")),
            (json!("phx_reply"), json!("3"), json!("ok")),
            (json!("phx_reply"), json!("4"), json!("ok")),
            (json!("phx_close"), json!("1"), json!(null)),
        ]
    );
}

#[actix::test]
async fn a_refused_join_still_answers_what_waited_behind_it() {
    let mut h = Harness::start(Limits::default());
    // Revoked while the check runs: the join is refused at the topic.
    let (entered, open) = h.gate.hold_next();
    h.send(join("1", "workspace:1"));
    entered.await.unwrap();
    h.send(json!(["1", "2", "workspace:1", "broadcast", {}]));
    h.send(join("3", "workspace:1"));
    h.rt.revoke_member(1, 7, "membership_revoked");
    open.send(()).unwrap();
    let a = h.client.next_non_presence().await;
    assert_eq!(
        (a[1].clone(), a[4]["status"].clone()),
        (json!("1"), json!("error"))
    );
    let b = h.client.next_non_presence().await;
    assert_eq!(
        (b[1].clone(), b[4]["response"]["reason"].clone()),
        (json!("2"), json!("unmatched topic"))
    );
    let c = h.client.next_non_presence().await;
    assert_eq!(
        (c[1].clone(), c[4]["status"].clone()),
        (json!("3"), json!("ok"))
    );
}
