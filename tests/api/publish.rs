//! The server-side publish API (`POST /api/v1/workspaces/{id}/broadcast`) against the real
//! server: a push reaches the topic's live subscribers with a server-set `from`, under the
//! event it names; what a client's broadcast would be refused (too large, a reserved event,
//! a topic of another workspace, a viewer, a read-only token, a flood) is refused with a
//! clear problem, and nothing of it reaches anyone.

use serde_json::json;

use crate::helpers::{spawn_app, Backend};
use crate::ws::Ws;

#[actix_web::test]
async fn a_publish_reaches_live_subscribers_and_what_a_broadcast_may_not_do_is_refused() {
    let app = spawn_app(Backend::Sqlite).await.expect("sqlite");
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    let ws = app.create_workspace(&alice, "W").await;
    app.add_member(ws, &alice, &bob, "viewer").await;
    let doc = app.create_document(ws, &alice, "Plan").await;
    let elsewhere = app.create_workspace(&carol, "C").await;
    let their_doc = app.create_document(elsewhere, &carol, "Theirs").await;

    let mut sub = Ws::connect(&app, &bob.token).await;
    let wtopic = format!("workspace:{ws}");
    let dtopic = format!("document:{doc}");
    sub.join_ok(&wtopic, json!({})).await;
    sub.join_ok(&dtopic, json!({})).await;
    let path = format!("/api/v1/workspaces/{ws}/broadcast");

    // A named event, with `from` set by the server whatever the payload says.
    let r = app
        .post(
            &path,
            &alice.token,
            json!({"topic": wtopic, "event": "deal.updated", "payload": {"deal": 7, "from": 999}}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.body, json!({"topic": wtopic, "event": "deal.updated"}));
    let got = sub.next(&wtopic, "deal.updated").await;
    assert_eq!(got.payload, json!({"deal": 7, "from": alice.id}));
    // Without an event, as a client's broadcast arrives.
    let r = app
        .post(
            &path,
            &alice.token,
            json!({"topic": dtopic, "payload": {"typing": true}}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let got = sub.next(&dtopic, "broadcast").await;
    assert_eq!(got.payload, json!({"typing": true, "from": alice.id}));

    // Refused, each with its problem.
    let big = "x".repeat(16 * 1024);
    let refusals = [
        (
            &alice,
            json!({"topic": wtopic, "payload": {"blob": big}}),
            413,
            "payload_too_large",
        ),
        (
            &alice,
            json!({"topic": wtopic, "event": "phx_reply", "payload": {}}),
            422,
            "validation_failed",
        ),
        (
            &alice,
            json!({"topic": wtopic, "event": "event", "payload": {}}),
            422,
            "validation_failed",
        ),
        (
            &alice,
            json!({"topic": wtopic, "event": "presence_diff", "payload": {}}),
            422,
            "validation_failed",
        ),
        (
            &alice,
            json!({"topic": wtopic, "event": "no spaces", "payload": {}}),
            422,
            "validation_failed",
        ),
        (
            &alice,
            json!({"topic": wtopic, "event": "", "payload": {}}),
            422,
            "validation_failed",
        ),
        (
            &alice,
            json!({"topic": wtopic, "event": "e".repeat(65), "payload": {}}),
            422,
            "validation_failed",
        ),
        (
            &alice,
            json!({"topic": format!("user:{}", bob.id), "payload": {}}),
            422,
            "validation_failed",
        ),
        (
            &alice,
            json!({"topic": format!("workspace:{elsewhere}"), "payload": {}}),
            422,
            "validation_failed",
        ),
        (
            &alice,
            json!({"topic": "workspace:007", "payload": {}}),
            422,
            "validation_failed",
        ),
        (
            &alice,
            json!({"topic": format!("document:{their_doc}"), "payload": {}}),
            422,
            "validation_failed",
        ),
        (
            &alice,
            json!({"topic": "document:999999", "payload": {}}),
            422,
            "validation_failed",
        ),
        (
            &alice,
            json!({"topic": wtopic, "payload": [1, 2]}),
            422,
            "validation_failed",
        ),
        (
            &alice,
            json!({"topic": wtopic, "payload": {}, "extra": 1}),
            422,
            "validation_failed",
        ),
        (
            &bob,
            json!({"topic": wtopic, "payload": {}}),
            403,
            "forbidden",
        ),
    ];
    for (who, body, status, code) in &refusals {
        let r = app.post(&path, &who.token, body.clone()).await;
        assert_eq!((r.status, r.code()), (*status, *code), "{body}: {}", r.body);
    }
    let r = app
        .post(
            &format!("/api/v1/workspaces/{elsewhere}/broadcast"),
            &alice.token,
            json!({"topic": format!("workspace:{elsewhere}"), "payload": {}}),
        )
        .await;
    assert_eq!((r.status, r.code()), (404, "not_found"), "not a member");

    // API tokens: `write` may publish, `read` may not.
    let token = |scopes: &[&str]| {
        let body = json!({"name": format!("{scopes:?}"), "scopes": scopes});
        let app = &app;
        let alice = &alice;
        async move {
            let r = app.post("/api/v1/me/api-tokens", &alice.token, body).await;
            assert_eq!(r.status, 201, "{}", r.body);
            r.body["token"].as_str().expect("token").to_string()
        }
    };
    let reader = token(&["read"]).await;
    let r = app
        .post(&path, &reader, json!({"topic": wtopic, "payload": {}}))
        .await;
    assert_eq!((r.status, r.code()), (403, "insufficient_scope"));
    let writer = token(&["write"]).await;
    let r = app
        .post(
            &path,
            &writer,
            json!({"topic": wtopic, "event": "from.service", "payload": {"n": 1}}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let got = sub.next(&wtopic, "from.service").await;
    assert_eq!(got.payload, json!({"n": 1, "from": alice.id}));

    // A flood: the topic's budget (200/s, bursts of 400) holds, then 429 with Retry-After.
    let mut accepted = 0;
    let mut limited = None;
    for i in 0..1000 {
        let r = app
            .post(
                &path,
                &alice.token,
                json!({"topic": dtopic, "event": "tick", "payload": {"i": i}}),
            )
            .await;
        match r.status {
            202 => accepted += 1,
            429 => {
                limited = Some(r);
                break;
            }
            other => panic!("unexpected {other}: {}", r.body),
        }
    }
    let limited = limited.expect("the flood is limited");
    assert_eq!(limited.code(), "rate_limited");
    assert_eq!(limited.header("retry-after").as_deref(), Some("1"));
    assert!(
        (400..1000).contains(&accepted),
        "{accepted} accepted before the limit"
    );
    // The subscriber receives exactly what was accepted, in order, and nothing refused.
    for i in 0..accepted {
        let got = sub.next(&dtopic, "tick").await;
        assert_eq!(got.payload["i"], i);
    }
    sub.sync().await;
    let stray: Vec<_> = sub
        .inbox
        .iter()
        .filter(|m| m.topic == wtopic || m.topic == dtopic)
        .filter(|m| m.event != "presence_state" && m.event != "presence_diff")
        .map(|m| (m.topic.clone(), m.event.clone(), m.payload.clone()))
        .collect();
    assert!(
        stray.is_empty(),
        "nothing refused reached the subscriber: {stray:?}"
    );
}
