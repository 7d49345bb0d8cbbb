//! What crosses nodes: events, broadcasts, notifications, revocations.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{drain, until, Cluster};
use crate::support::YjsEditor;

#[actix_web::test]
async fn writes_broadcasts_notifications_and_revocations_reach_every_node() {
    let Some(c) = Cluster::start(3, &[]).await else {
        return;
    };
    everything_crosses(&c);
}

/// What crosses three nodes, whichever bus they share.
pub fn everything_crosses(c: &Cluster) {
    let (a, b, n3) = (&c.nodes[0], &c.nodes[1], &c.nodes[2]);
    let (_, alice) = a.register("alice");
    let (bob_id, bob) = b.register("bob");
    let ws = a.workspace_with(&alice, &[(bob_id, "editor")]);
    let topic = format!("workspace:{ws}");
    let mut socks: Vec<_> = c
        .nodes
        .iter()
        .map(|n| {
            let mut s = n.ws(&bob);
            s.join(&topic, json!({"presence": false}));
            s
        })
        .collect();

    // A write through node b reaches bob on every node, once, by the bus (the log check is
    // set far beyond the test).
    let started = Instant::now();
    let r = b.json(
        "POST",
        &format!("/api/v1/workspaces/{ws}/documents"),
        Some(&alice),
        json!({"title": "Plan", "content": ""}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let written = started.elapsed();
    let mut offsets = Vec::new();
    for s in &mut socks {
        let ev = until(s, "the event", |v| v[3] == "event");
        assert_eq!(ev[4]["kind"], "document.created");
        offsets.push(ev[4]["offset"].as_i64().unwrap());
    }
    let took = started.elapsed();
    eprintln!("event on all three nodes after {took:?} (the write took {written:?})");
    // Within 100 ms of the write's answer: the bus, not the log check.
    assert!(took < written + Duration::from_millis(100), "{took:?}");
    assert!(offsets.windows(2).all(|w| w[0] == w[1]));
    for s in &mut socks {
        let again = drain(s, Duration::from_millis(200));
        assert!(
            again.iter().all(|v| v[3] != "event"),
            "an event came twice: {again:?}"
        );
    }

    // A broadcast on b reaches the sockets on the other nodes (a sender never hears its
    // own, and bob's socket on b is the sender).
    let r = socks[1].push(Some("1"), &topic, "broadcast", json!({"type": "typing"}));
    assert_eq!(socks[1].reply(&r)[4]["status"], "ok");
    for i in [0, 2] {
        let heard = until(&mut socks[i], "the broadcast", |v| v[3] == "broadcast");
        assert_eq!(heard[4]["type"], "typing");
        assert_eq!(heard[4]["from"], bob_id);
    }

    // A mention written through the third node notifies bob on the first.
    let mut inbox = a.ws(&bob);
    inbox.join(&format!("user:{bob_id}"), json!({}));
    let docs = n3.http(
        "GET",
        &format!("/api/v1/workspaces/{ws}/documents"),
        &[("Authorization", &format!("Bearer {alice}"))],
        b"",
    );
    let doc_id = docs.value()["items"][0]["id"].as_i64().expect("document");
    let bob_email = "bob@example.com";
    let r = n3.json(
        "POST",
        &format!("/api/v1/documents/{doc_id}/comments"),
        Some(&alice),
        json!({"body": format!("@{bob_email} have a look")}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let note = until(&mut inbox, "the notification", |v| v[3] == "notification");
    assert_eq!(note[4]["kind"], "mention");

    // Removing bob through the first node closes his channel on the third at once.
    let r = a.http(
        "DELETE",
        &format!("/api/v1/workspaces/{ws}/members/{bob_id}"),
        &[("Authorization", &format!("Bearer {alice}"))],
        b"",
    );
    assert_eq!(r.status, 204, "{}", r.text());
    let close = until(&mut socks[2], "the close", |v| v[3] == "phx_close");
    assert_eq!(close[4]["reason"], "membership_revoked");
}

/// A role change made through one node reaches a Yjs socket on another at once.
#[actix_web::test]
async fn a_role_change_reaches_yjs_sockets_on_every_node() {
    let Some(c) = Cluster::start(2, &[]).await else {
        return;
    };
    role_change_crosses(&c);
}

/// Yjs updates and a role change between two nodes, whichever bus they share.
pub fn role_change_crosses(c: &Cluster) {
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    let (_, alice) = a.register("alice");
    let (bob_id, bob) = a.register("bob");
    let ws = a.workspace_with(&alice, &[(bob_id, "editor")]);
    let r = a.json(
        "POST",
        &format!("/api/v1/workspaces/{ws}/documents"),
        Some(&alice),
        json!({"title": "Across"}),
    );
    let doc = r.value()["id"].as_i64().expect("document");
    let mut on_a = YjsEditor::open(a, doc, &alice);
    let mut on_b = YjsEditor::open(b, doc, &bob);
    on_b.type_text("from b. ");
    on_a.until_text("from b. ");

    // Demoted through node a: bob's socket on node b is read-only at once.
    let r = a.json(
        "PATCH",
        &format!("/api/v1/workspaces/{ws}/members/{bob_id}"),
        Some(&alice),
        json!({"role": "viewer"}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(on_b.refusal().starts_with("read-only"));
    on_b.type_text("refused. ");
    assert!(on_b.refusal().starts_with("read-only"));
    on_a.type_text("alice.");
    on_a.settle();
    assert_eq!(on_a.text(), "from b. alice.");
    // A new editor on node a (where alice's edit is applied) has what was stored: what node
    // b refused was neither stored nor sent over the bus.
    let fresh = YjsEditor::open(a, doc, &alice);
    assert_eq!(fresh.text(), "from b. alice.", "nothing refused was stored");
}

/// A logout through one node closes the login's socket on another at once, and an operator
/// disabling an account from the command line ends its sessions on every node.
#[actix_web::test]
async fn sessions_end_on_every_node() {
    let Some(c) = Cluster::start(2, &[]).await else {
        return;
    };
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    let (alice_id, _) = a.register("alice");
    let login = |node: &crate::support::Server| {
        let r = node.json(
            "POST",
            "/api/v1/auth/login",
            None,
            json!({"email": "alice@example.com", "password": "correct horse battery"}),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.value();
        (
            v["access_token"].as_str().expect("access").to_string(),
            v["refresh_token"].as_str().expect("refresh").to_string(),
        )
    };
    let (laptop, laptop_refresh) = login(a);
    let (phone, _) = login(b);
    let topic = format!("user:{alice_id}");
    let mut laptop_on_b = b.ws(&laptop);
    laptop_on_b.join(&topic, json!({}));
    let mut phone_on_b = b.ws(&phone);
    phone_on_b.join(&topic, json!({}));

    // Signed out through node a: the laptop's socket on node b closes at once.
    let started = Instant::now();
    let r = a.json(
        "POST",
        "/api/v1/auth/logout",
        None,
        json!({"refresh_token": laptop_refresh}),
    );
    assert_eq!(r.status, 204);
    assert_eq!(laptop_on_b.close_code(), Some(1008));
    let took = started.elapsed();
    eprintln!("socket on the other node closed {took:?} after the logout");
    assert!(
        took < Duration::from_millis(900),
        "by the bus, not the poll: {took:?}"
    );
    let me = b.json("GET", "/api/v1/me", Some(&laptop), json!(null));
    assert_eq!(me.status, 401);

    // The operator disables the account with the command line (which tells the cluster
    // over Redis): the phone's socket closes and its token is refused everywhere.
    let redis = c.broker.url();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stoa"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("STOA_DATABASE__URL", &c.db.url)
        .env("STOA_REDIS__URL", &redis)
        .env("STOA_AUTH__JWT_SECRET", crate::harness::SECRET)
        .args(["user", "disable", "alice@example.com"])
        .output()
        .expect("stoa runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["cluster_told"], true, "{report}");
    assert_eq!(phone_on_b.close_code(), Some(1008));
    for node in [a, b] {
        let me = node.json("GET", "/api/v1/me", Some(&phone), json!(null));
        assert_eq!(me.status, 401, "{}", me.text());
    }
}
