//! Outgoing webhooks against the real server and a receiver in Python that checks every
//! signature with its own `hmac`: the log delivered in order after failures, at least once,
//! filtered by kind; paused after failures in a row with the backlog kept, resumed by an
//! admin; redelivered on request; roles; and targets on private addresses refused, by
//! address, by name and on a redirect.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, Backend, TestApp};
use crate::receiver::{accepted, Receiver, SECRET};

async fn documents(app: &TestApp, ws: i64, by: &crate::helpers::Account, n: usize) {
    for i in 0..n {
        app.create_document(ws, by, &format!("Doc {i}")).await;
    }
}

/// Waits until the endpoint's position, as REST shows it, is `offset` (the position and the
/// delivery log are written together, after the answers).
async fn delivered_to(app: &TestApp, path: &str, token: &str, offset: i64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = app.get(path, token).await;
        if r.body["delivered_offset"] == offset {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "never delivered to {offset}: {}",
            r.body
        );
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn head(app: &TestApp, ws: i64, by: &crate::helpers::Account) -> i64 {
    let r = app
        .get(
            &format!("/api/v1/workspaces/{ws}/events?since=0&limit=1"),
            &by.token,
        )
        .await;
    r.body["latest_offset"].as_i64().expect("latest_offset")
}

crate::on_every_backend!(
    the_log_reaches_an_endpoint_in_order_signed_after_failures_and_pauses_and_resumes
);

async fn the_log_reaches_an_endpoint_in_order_signed_after_failures_and_pauses_and_resumes(
    backend: Backend,
) {
    let Some(app) = spawn_app_with(backend, |s| {
        s.webhooks.allow_private_targets = true;
        s.webhooks.backoff_base_ms = 20;
        s.webhooks.backoff_max_secs = 1;
        s.webhooks.pause_after_failures = 4;
    })
    .await
    else {
        return;
    };
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let ws = app.create_workspace(&alice, "W").await;
    app.add_member(ws, &alice, &bob, "editor").await;
    let hooks = format!("/api/v1/workspaces/{ws}/webhooks");

    // Editors may not; admins may, and see the secret once.
    let flaky = Receiver::start(&["--fail-first", "3"]);
    let r = app
        .post(&hooks, &bob.token, json!({"url": flaky.url("127.0.0.1")}))
        .await;
    assert_eq!((r.status, r.code()), (403, "forbidden"));
    let r = app
        .post(
            &hooks,
            &alice.token,
            json!({"url": flaky.url("127.0.0.1"), "secret": SECRET}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["secret"], SECRET);
    let all = r.body["id"].as_i64().unwrap();
    let from = r.body["delivered_offset"].as_i64().unwrap();
    let comments = Receiver::start(&[]);
    let r = app
        .post(
            &hooks,
            &alice.token,
            json!({"url": comments.url("127.0.0.1"), "secret": SECRET, "kinds": ["comment.created"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let listed = app.get(&hooks, &alice.token).await;
    assert_eq!(listed.body.as_array().unwrap().len(), 2);
    assert!(
        listed.body[0].get("secret").is_none(),
        "never listed with its secret"
    );

    // Twenty documents and a comment: the flaky endpoint gets every event once it stops
    // failing, in order, each signed.
    documents(&app, ws, &alice, 20).await;
    let doc = app.create_document(ws, &alice, "Commented").await;
    app.create_comment(doc, &bob, "a comment").await;
    let last = head(&app, ws, &alice).await;
    let want: Vec<i64> = (from + 1..=last).collect();
    let seen = flaky
        .until("every event at the flaky endpoint", |s| {
            accepted(s).len() >= want.len()
        })
        .await;
    assert_eq!(
        accepted(&seen),
        want,
        "every event, in order, once accepted"
    );
    assert!(
        seen.iter().all(|v| v["signed"] == true),
        "every signature checks: {seen:?}"
    );
    let first: Vec<(i64, i64)> = seen[..4]
        .iter()
        .map(|v| (v["offset"].as_i64().unwrap(), v["status"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        first,
        vec![
            (from + 1, 500),
            (from + 1, 500),
            (from + 1, 500),
            (from + 1, 200)
        ]
    );
    let one = &seen[3];
    assert_eq!(one["body"]["offset"], from + 1);
    assert_eq!(one["body"]["workspace_id"], ws);
    assert_eq!(one["body"]["webhook_id"], all);
    assert_eq!(one["idempotency_key"], format!("{all}-{}", from + 1));
    // Only the comment reached the filtered endpoint.
    let seen = comments.until("the comment", |s| !s.is_empty()).await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["kind"], "comment.created");
    assert_eq!(seen[0]["body"]["data"]["body"], "a comment");

    delivered_to(&app, &format!("{hooks}/{all}"), &alice.token, last).await;
    // The delivery log: three failures, then the fourth attempt succeeds (newest first).
    let log = app
        .get(&format!("{hooks}/{all}/deliveries?limit=200"), &alice.token)
        .await;
    let items = log.body["items"].as_array().unwrap();
    let oldest: Vec<(i64, i64)> = items
        .iter()
        .rev()
        .take(4)
        .map(|d| {
            (
                d["attempt"].as_i64().unwrap(),
                d["status"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(oldest, vec![(1, 500), (2, 500), (3, 500), (4, 200)]);
    let hook = app.get(&format!("{hooks}/{all}"), &alice.token).await;
    assert_eq!(hook.body["delivered_offset"], last);

    // Redelivery of one logged attempt: the endpoint sees that event again; the stream
    // does not move.
    let delivered = items.iter().find(|d| d["status"] == 200).unwrap();
    let id = delivered["id"].as_i64().unwrap();
    let r = app
        .post(
            &format!("{hooks}/{all}/deliveries/{id}/redeliver"),
            &alice.token,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        (r.body["redelivery"].clone(), r.body["status"].clone()),
        (json!(true), json!(200))
    );
    let again = delivered["event_offset"].as_i64().unwrap();
    flaky
        .until("the redelivery", |s| {
            s.iter()
                .filter(|v| v["offset"] == again && v["status"] == 200)
                .count()
                == 2
        })
        .await;

    // A new secret: what follows is signed with it (the receiver, knowing only the old
    // one, says so), and a short one is refused.
    let r = app
        .patch(
            &format!("{hooks}/{all}"),
            &alice.token,
            json!({"secret": "too short"}),
        )
        .await;
    assert_eq!(r.status, 422);
    let r = app
        .patch(
            &format!("{hooks}/{all}"),
            &alice.token,
            json!({"secret": "another-secret-of-the-test"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.get("secret").is_none());
    app.create_document(ws, &alice, "Signed anew").await;
    let rotated = head(&app, ws, &alice).await;
    let seen = flaky
        .until("the event after the rotation", |s| {
            accepted(s).contains(&rotated)
        })
        .await;
    let last_seen = seen.iter().rev().find(|v| v["offset"] == rotated).unwrap();
    assert_eq!(
        last_seen["signed"], false,
        "signed with the new secret, not the old"
    );
    let r = app
        .patch(
            &format!("{hooks}/{all}"),
            &alice.token,
            json!({"secret": SECRET}),
        )
        .await;
    assert_eq!(r.status, 200);
    let last = rotated;
    delivered_to(&app, &format!("{hooks}/{all}"), &alice.token, last).await;

    // Paused by an admin: nothing more arrives, the backlog is kept; resumed: it arrives.
    let r = app
        .patch(
            &format!("{hooks}/{all}"),
            &alice.token,
            json!({"state": "paused"}),
        )
        .await;
    assert_eq!((r.status, r.body["state"].clone()), (200, json!("paused")));
    let before = flaky.seen().len();
    documents(&app, ws, &alice, 3).await;
    comments
        .until("the comment endpoint still runs", |_| true)
        .await;
    let hook = app.get(&format!("{hooks}/{all}"), &alice.token).await;
    assert_eq!(
        hook.body["delivered_offset"], last,
        "paused: nothing delivered"
    );
    assert_eq!(flaky.seen().len(), before);
    let r = app
        .patch(
            &format!("{hooks}/{all}"),
            &alice.token,
            json!({"state": "active"}),
        )
        .await;
    assert_eq!(r.status, 200);
    let now = head(&app, ws, &alice).await;
    flaky
        .until("the backlog after resuming", |s| {
            accepted(s).last() == Some(&now)
        })
        .await;

    // An endpoint that keeps failing is paused by itself after 4 failures in a row, its
    // backlog kept.
    let dead = Receiver::start(&["--fail-always"]);
    let r = app
        .post(
            &hooks,
            &alice.token,
            json!({"url": dead.url("127.0.0.1"), "secret": SECRET}),
        )
        .await;
    let dead_id = r.body["id"].as_i64().unwrap();
    let dead_from = r.body["delivered_offset"].as_i64().unwrap();
    documents(&app, ws, &alice, 2).await;
    dead.until("four attempts", |s| s.len() >= 4).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let paused = loop {
        let h = app.get(&format!("{hooks}/{dead_id}"), &alice.token).await;
        if h.body["state"] == "paused" {
            break h.body;
        }
        assert!(Instant::now() < deadline, "never paused: {}", h.body);
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(paused["delivered_offset"], dead_from, "the backlog is kept");
    assert!(
        paused["paused_reason"]
            .as_str()
            .unwrap()
            .contains("4 failed attempts"),
        "{paused}"
    );
    assert_eq!(dead.seen().len(), 4, "no fifth attempt once paused");
    assert!(dead.seen().iter().all(|v| v["offset"] == dead_from + 1));

    // Removing one: gone with its log.
    let r = app
        .delete(&format!("{hooks}/{dead_id}"), &alice.token)
        .await;
    assert_eq!(r.status, 204);
    let r = app
        .get(&format!("{hooks}/{dead_id}/deliveries"), &alice.token)
        .await;
    assert_eq!(r.status, 404);
}

#[actix_web::test]
async fn targets_on_private_addresses_are_refused_by_address_by_name_and_on_a_redirect() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        // Only 127.0.0.2 is let through, as an operator would allow one internal host.
        s.webhooks.allowed_targets = vec!["127.0.0.2/32".into()];
        s.webhooks.backoff_base_ms = 20;
        s.webhooks.backoff_max_secs = 1;
    })
    .await
    .expect("sqlite");
    let alice = app.register("alice").await;
    let ws = app.create_workspace(&alice, "W").await;
    let hooks = format!("/api/v1/workspaces/{ws}/webhooks");
    let inside = Receiver::start(&[]);
    for url in [
        inside.url("127.0.0.1"),
        inside.url("localhost"),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://[::1]/".to_string(),
        "http://[::ffff:127.0.0.1]/".to_string(),
        "http://10.0.0.1/".to_string(),
        "http://0.0.0.0/".to_string(),
        "ftp://example.com/".to_string(),
        "http://user:pass@127.0.0.2/".to_string(),
        "not a url".to_string(),
    ] {
        let r = app.post(&hooks, &alice.token, json!({"url": url})).await;
        assert_eq!(
            (r.status, r.code()),
            (422, "validation_failed"),
            "{url}: {}",
            r.body
        );
    }
    for kinds in [json!(["no.such.kind"]), json!(["document.created", 7])] {
        let r = app
            .post(
                &hooks,
                &alice.token,
                json!({"url": "http://127.0.0.2/", "kinds": kinds}),
            )
            .await;
        assert_eq!(r.status, 422, "{kinds}: {}", r.body);
    }
    let r = app
        .post(
            &hooks,
            &alice.token,
            json!({"url": "http://127.0.0.2/", "secret": "short"}),
        )
        .await;
    assert_eq!(r.status, 422);

    // An allowed host that redirects to a refused one: the redirect is not followed there.
    let redirector = Receiver::start(&[
        "--host",
        "127.0.0.2",
        "--redirect-to",
        &inside.url("127.0.0.1"),
    ]);
    let r = app
        .post(
            &hooks,
            &alice.token,
            json!({"url": redirector.url("127.0.0.2"), "secret": SECRET}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["id"].as_i64().unwrap();
    app.create_document(ws, &alice, "Doc").await;
    redirector
        .until("the request that redirects", |s| !s.is_empty())
        .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let logged = loop {
        let log = app
            .get(&format!("{hooks}/{id}/deliveries"), &alice.token)
            .await;
        if let Some(first) = log.body["items"].as_array().and_then(|i| i.last()).cloned() {
            break first;
        }
        assert!(Instant::now() < deadline, "no attempt logged");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(logged["status"], Value::Null, "{logged}");
    assert!(
        logged["error"].as_str().unwrap().contains("refused"),
        "{logged}"
    );
    assert!(
        inside.seen().is_empty(),
        "the private target was never reached"
    );
    // Other workspaces' members see nothing of it.
    let mallory = app.register("mallory").await;
    let r = app.get(&hooks, &mallory.token).await;
    assert_eq!(r.status, 404);
}
