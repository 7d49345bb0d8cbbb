//! The bus is a trust boundary: a client of the Redis server that is not a node can forge
//! nothing (every message is sealed with the cluster's key, and what fails the seal is
//! dropped and counted), and the nodes reach a Redis that asks for a password or speaks TLS.

use std::process::Command;
use std::time::Duration;

use serde_json::json;
use stoa_protocol::bus::{Body, ClusterKey, Envelope, Revocation, CONTROL_CHANNEL};

use crate::harness::{drain, until, Cluster, PrivateRedis};

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

async fn publish(url: &str, channel: &str, message: Vec<u8>) {
    let client = redis::Client::open(url).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis connects");
    redis::cmd("PUBLISH")
        .arg(channel)
        .arg(message)
        .query_async::<i64>(&mut conn)
        .await
        .expect("published");
}

#[actix_web::test]
async fn messages_not_sealed_by_a_node_are_dropped_and_counted() {
    let Some(c) = Cluster::start(2, &[]).await else {
        return;
    };
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    let (_, alice) = a.register("alice");
    let (bob_id, bob) = a.register("bob");
    let ws = a.workspace_with(&alice, &[(bob_id, "editor")]);
    let topic = format!("workspace:{ws}");
    let mut inbox = b.ws(&bob);
    inbox.join(&format!("user:{bob_id}"), json!({}));
    let joined = inbox.join(&topic, json!({"presence": false}));
    let rejected = b.metric("stoa_bus_messages_rejected_total");

    // What a Redis client that is not a node might send: a notification, a broadcast, a
    // revocation of bob, each plain (as nodes used to), sealed with a wrong key, and a
    // real node's sealed message replayed onto another channel.
    let url = c.broker.url();
    let forged = |body: Body| Envelope::new("node0", body).at(now_us());
    let notify = forged(Body::Notify {
        user: bob_id,
        payload: json!({"kind": "mention", "data": {"body": "forged"}}),
    });
    let broadcast = forged(Body::Broadcast {
        topic: topic.clone(),
        payload: serde_json::from_value(json!({"type": "forged"})).unwrap(),
        event: None,
    });
    let revoke = forged(Body::Revoke {
        what: Revocation::Member {
            workspace: ws,
            user: bob_id,
        },
        reason: "membership_revoked".into(),
    });
    let wrong = ClusterKey::derive(b"not the cluster's secret");
    let user_channel = format!("stoa:t:user:{bob_id}");
    let topic_channel = format!("stoa:t:{topic}");
    let mut sent = 0;
    for (channel, envelope) in [
        (&user_channel, &notify),
        (&topic_channel, &broadcast),
        (&CONTROL_CHANNEL.to_string(), &revoke),
    ] {
        publish(&url, channel, envelope.encode()).await;
        publish(&url, channel, wrong.seal(channel, envelope)).await;
        sent += 2;
    }
    // The right key (the one the nodes derive from their secret) on the wrong channel.
    let right = ClusterKey::derive(
        &stoa::auth::secret_key(crate::harness::SECRET).expect("the test secret"),
    );
    publish(&url, &user_channel, right.seal(CONTROL_CHANNEL, &revoke)).await;
    sent += 1;
    // Sealed right, on the right channel, as a publish naming an event the protocol keeps
    // for itself: a node that heard it still delivers nothing (not a `phx_close`).
    let reserved = Envelope::new(
        "node0",
        Body::Broadcast {
            topic: topic.clone(),
            payload: serde_json::from_value(json!({"reason": "forged"})).unwrap(),
            event: Some("phx_close".into()),
        },
    )
    .at(now_us());
    publish(&url, &topic_channel, right.seal(&topic_channel, &reserved)).await;
    // And sealed right but a minute and a half old (a replay).
    let old = Envelope::new("node0", revoke.body.clone()).at(now_us() - 90_000_000);
    publish(&url, CONTROL_CHANNEL, right.seal(CONTROL_CHANNEL, &old)).await;
    sent += 1;

    // A real mention through node a reaches bob on node b, and nothing forged came first.
    let doc = a.json(
        "POST",
        &format!("/api/v1/workspaces/{ws}/documents"),
        Some(&alice),
        json!({"title": "Real"}),
    );
    let doc = doc.value()["id"].as_i64().expect("document");
    let r = a.json(
        "POST",
        &format!("/api/v1/documents/{doc}/comments"),
        Some(&alice),
        json!({"body": "@bob@example.com real"}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    // Every frame before it is checked too: nothing forged may arrive first.
    let note = until(&mut inbox, "the real notification", |v| {
        assert_ne!(v[3], "broadcast", "a forged broadcast arrived: {v}");
        assert_ne!(
            v[3], "phx_close",
            "a forged message closed the channel: {v}"
        );
        assert_ne!(
            v[4]["data"]["body"], "forged",
            "a forged notification arrived: {v}"
        );
        v[3] == "notification"
    });
    assert_eq!(note[4]["kind"], "mention", "{note}");
    let rest = drain(&mut inbox, Duration::from_millis(300));
    for v in &rest {
        assert_ne!(v[3], "broadcast", "a forged broadcast arrived: {v}");
        assert_ne!(
            v[3], "phx_close",
            "a forged revocation closed the channel: {v}"
        );
    }
    // Bob is still a member, still joined.
    let r = inbox.push(
        Some(&joined),
        &topic,
        "broadcast",
        json!({"type": "still here"}),
    );
    assert_eq!(inbox.reply(&r)[4]["status"], "ok");
    let counted = b.metric("stoa_bus_messages_rejected_total") - rejected;
    assert!(counted >= f64::from(sent), "{counted} of {sent} counted");
}

/// A self-signed CA and a certificate for 127.0.0.1 it signed, made with `openssl`, in
/// `dir`: (ca, cert, key).
pub fn certificates(dir: &std::path::Path) -> Option<(String, String, String)> {
    let path = |name: &str| dir.join(name).display().to_string();
    let (ca, ca_key, cert, key, csr) = (
        path("ca.pem"),
        path("ca.key"),
        path("redis.pem"),
        path("redis.key"),
        path("redis.csr"),
    );
    let run = |args: &[&str]| {
        Command::new("openssl")
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let ok = run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=Stoa test CA",
        "-keyout",
        &ca_key,
        "-out",
        &ca,
    ]) && run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        &key,
        "-out",
        &csr,
    ]) && {
        let ext = dir.join("san.ext");
        std::fs::write(&ext, "subjectAltName=IP:127.0.0.1\n").ok();
        run(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &cert,
            "-extfile",
            &ext.display().to_string(),
        ])
    };
    ok.then_some((ca, cert, key))
}

/// A write on the cluster's first node reaches a socket on its second.
pub fn nodes_talk(c: &Cluster) {
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    let (_, alice) = a.register("alice");
    let ws = a.workspace_with(&alice, &[]);
    let mut on_b = b.ws(&alice);
    on_b.join(&format!("workspace:{ws}"), json!({"presence": false}));
    let r = a.json(
        "POST",
        &format!("/api/v1/workspaces/{ws}/documents"),
        Some(&alice),
        json!({"title": "Across"}),
    );
    assert_eq!(r.status, 201);
    let ev = until(&mut on_b, "the event from the other node", |v| {
        v[3] == "event"
    });
    assert_eq!(ev[4]["kind"], "document.created");
    assert_eq!(b.metric("stoa_bus_messages_rejected_total"), 0.0);
}

#[actix_web::test]
async fn nodes_reach_a_redis_that_asks_for_a_password() {
    let Some(redis) = PrivateRedis::start_with(|port, _| {
        (
            vec!["--requirepass".into(), "s3cret-bus-pass".into()],
            format!("redis://:s3cret-bus-pass@127.0.0.1:{port}/"),
        )
    }) else {
        return;
    };
    let wrong = format!("redis://:wrong@127.0.0.1:{}/", redis.port);
    let Some(c) = Cluster::start_on(redis, 2, &[]).await else {
        return;
    };
    nodes_talk(&c);
    // A node with the wrong password serves its own clients and says its bus is away.
    let lone = crate::support::Server::start(&[
        ("STOA_DATABASE__URL", &c.db.url),
        ("STOA_REDIS__URL", &wrong),
        ("STOA_AUTH__JWT_SECRET", crate::harness::SECRET),
    ]);
    let ready = lone.http("GET", "/readyz", &[], b"").value();
    assert_eq!(ready["status"], "degraded", "{ready}");
}

#[actix_web::test]
async fn nodes_reach_a_redis_over_tls() {
    let certs = tempfile::tempdir().unwrap();
    let Some((ca, cert, key)) = certificates(certs.path()) else {
        panic!("openssl cannot make the test's certificates");
    };
    let Some(redis) = PrivateRedis::start_with(|port, _| {
        (
            [
                "--port",
                "0",
                "--tls-port",
                &port.to_string(),
                "--tls-cert-file",
                &cert,
                "--tls-key-file",
                &key,
                "--tls-ca-cert-file",
                &ca,
                "--tls-auth-clients",
                "no",
            ]
            .map(String::from)
            .to_vec(),
            format!("rediss://127.0.0.1:{port}/"),
        )
    }) else {
        return;
    };
    // The nodes trust the private CA the way any rustls client on the host would.
    let Some(c) = Cluster::start_on(redis, 2, &[("SSL_CERT_FILE", ca.as_str())]).await else {
        return;
    };
    nodes_talk(&c);
}
