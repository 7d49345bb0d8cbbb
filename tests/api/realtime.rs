//! The Phoenix Channels endpoint against the real server: upgrade checks, authorised joins,
//! live events, `since` recovery under concurrent writers, presence, broadcast, limits,
//! revocation and a topic actor crash.

use base64::Engine;
use futures_util::StreamExt;
use serde_json::json;
use stoa_protocol::Topic;

use crate::helpers::{spawn_app, spawn_app_with, Backend, JWT_SECRET};
use crate::ws::{Ws, PATIENCE};

crate::on_every_backend!(since_recovers_every_event_once_while_writers_are_busy);

#[actix_web::test]
async fn the_upgrade_checks_token_version_and_origin() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.http.cors_allowed_origins = vec!["https://app.example".into()];
    })
    .await
    .expect("sqlite");
    let alice = app.register("alice").await;
    let path = |token: &str| format!("/socket/websocket?vsn=2.0.0&token={token}");

    assert_eq!(
        Ws::try_connect(&app, "/socket/websocket?vsn=2.0.0", &[])
            .await
            .err(),
        Some(401)
    );
    let forged = format!("{}x", alice.token);
    assert_eq!(
        Ws::try_connect(&app, &path(&forged), &[]).await.err(),
        Some(401)
    );
    // The refusal says why, in the same words as REST: expired is not forged.
    let keys = stoa::auth::JwtKeys::new(JWT_SECRET.as_bytes().to_vec(), "stoa", "stoa", 60);
    let (expired, _) = keys.issue(alice.id, stoa::domain::now_ms() / 1000 - 3600, None);
    for (token, code) in [
        (expired.as_str(), "token_expired"),
        (forged.as_str(), "invalid_token"),
    ] {
        let res = app
            .call(awc::http::Method::GET, &path(token), None, None, &[])
            .await;
        assert_eq!((res.status, res.code()), (401, code));
        let rest = app.get("/api/v1/me", token).await;
        assert_eq!(rest.code(), code, "REST and the socket agree");
    }
    assert_eq!(
        Ws::try_connect(
            &app,
            &format!("/socket/websocket?vsn=1.0.0&token={}", alice.token),
            &[]
        )
        .await
        .err(),
        Some(400)
    );
    assert_eq!(
        Ws::try_connect(
            &app,
            &path(&alice.token),
            &[("origin", "https://evil.example")]
        )
        .await
        .err(),
        Some(403)
    );
    let mut ws = Ws::try_connect(
        &app,
        &path(&alice.token),
        &[("origin", "https://app.example")],
    )
    .await
    .expect("allowed origin");
    ws.sync().await;

    // phoenix.js's authToken option: the token travels as a subprotocol.
    let encoded = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&alice.token);
    let protocols = format!("phoenix, base64url.bearer.phx.{encoded}");
    let mut ws = Ws::try_connect(
        &app,
        "/socket/websocket?vsn=2.0.0",
        &[("sec-websocket-protocol", &protocols)],
    )
    .await
    .expect("token in subprotocol");
    ws.sync().await;
}

/// The console the node serves opens its sockets from the node's own origin, which is
/// accepted whatever `http.cors_allowed_origins` names; a foreign one still is not.
#[actix_web::test]
async fn the_nodes_own_origin_may_open_sockets_in_production() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.environment = stoa::config::Environment::Production;
        s.http.cors_allowed_origins = vec!["https://app.example".into()];
    })
    .await
    .expect("sqlite");
    let alice = app.register("alice").await;
    let path = format!("/socket/websocket?vsn=2.0.0&token={}", alice.token);
    // awc sends `Host: 127.0.0.1:<port>`, the authority of `app.base`.
    let own = app.base.clone();
    let port: u16 = own.rsplit(':').next().unwrap().parse().unwrap();
    let mut ws = Ws::try_connect(&app, &path, &[("origin", &own)])
        .await
        .expect("the node's own origin");
    ws.sync().await;
    let mut ws = Ws::try_connect(&app, &path, &[("origin", "https://app.example")])
        .await
        .expect("a configured origin");
    ws.sync().await;
    let other_port = format!("http://127.0.0.1:{}", port.wrapping_add(1));
    for origin in [
        "http://evil.example",
        other_port.as_str(),
        "https://127.0.0.1",
        "null",
    ] {
        assert_eq!(
            Ws::try_connect(&app, &path, &[("origin", origin)])
                .await
                .err(),
            Some(403),
            "{origin}"
        );
    }
    // The document socket makes the same check: past it, a missing document is 404.
    let yjs = format!("/yjs/999999?token={}", alice.token);
    assert_eq!(
        Ws::try_connect(&app, &yjs, &[("origin", &own)]).await.err(),
        Some(404)
    );
    assert_eq!(
        Ws::try_connect(&app, &yjs, &[("origin", "http://evil.example")])
            .await
            .err(),
        Some(403)
    );
}

#[actix_web::test]
async fn joins_are_authorised_by_membership_and_identity() {
    let app = spawn_app(Backend::Sqlite).await.expect("sqlite");
    let alice = app.register("alice").await;
    let mallory = app.register("mallory").await;
    let ws_id = app.create_workspace(&alice, "Team").await;
    let doc = app.create_document(ws_id, &alice, "Plan").await;

    let mut a = Ws::connect(&app, &alice.token).await;
    let (_, response) = a.join_ok(&format!("workspace:{ws_id}"), json!({})).await;
    assert_eq!(response["offset"], 2, "created + document.created");
    a.join_ok(&format!("document:{doc}"), json!({})).await;
    let (_, response) = a.join_ok(&format!("user:{}", alice.id), json!({})).await;
    assert_eq!(response["unread_count"], 0);

    let mut m = Ws::connect(&app, &mallory.token).await;
    for topic in [
        format!("workspace:{ws_id}"),
        format!("document:{doc}"),
        format!("user:{}", alice.id),
        "workspace:999999".to_string(),
    ] {
        let (status, response) = m.join(&topic, json!({})).await;
        assert_eq!(
            (status.as_str(), &response["reason"]),
            ("error", &json!("unauthorized")),
            "{topic}"
        );
    }
    for topic in ["room:lobby", "workspace:01"] {
        let (status, response) = m.join(topic, json!({})).await;
        assert_eq!(status, "error", "{topic}");
        assert_eq!(response["reason"], "unknown topic");
    }
    let (status, response) = m
        .join(&format!("workspace:{ws_id}"), json!({"since": -3}))
        .await;
    assert_eq!(status, "error");
    assert!(response["reason"]
        .as_str()
        .unwrap_or_default()
        .contains("since"));
    // A refused join leaves nothing behind: pushes to it are unmatched.
    let r = m
        .push(
            Some("1"),
            &format!("workspace:{ws_id}"),
            "broadcast",
            json!({"x": 1}),
        )
        .await;
    assert_eq!(
        m.reply(&r).await.payload["response"]["reason"],
        "unmatched topic"
    );
}

#[actix_web::test]
async fn rest_changes_arrive_as_events_on_workspace_and_document_topics() {
    let app = spawn_app(Backend::Sqlite).await.expect("sqlite");
    let alice = app.register("alice").await;
    let ws_id = app.create_workspace(&alice, "Team").await;
    let doc = app.create_document(ws_id, &alice, "Plan").await;
    let other = app.create_document(ws_id, &alice, "Other").await;
    let wt = format!("workspace:{ws_id}");
    let dt = format!("document:{doc}");

    let mut s = Ws::connect(&app, &alice.token).await;
    let (wjr, _) = s.join_ok(&wt, json!({})).await;
    let (djr, _) = s.join_ok(&dt, json!({})).await;

    let res = app
        .patch(
            &format!("/api/v1/documents/{doc}"),
            &alice.token,
            json!({"title": "Plan B"}),
        )
        .await;
    assert_eq!(res.status, 200);
    let e = s.next(&wt, "event").await;
    assert_eq!(e.join_ref.as_deref(), Some(wjr.as_str()));
    assert_eq!(e.msg_ref, None);
    assert_eq!(e.payload["offset"], 4);
    assert_eq!(e.payload["kind"], "document.updated");
    assert_eq!(e.payload["actor"], alice.id);
    assert_eq!(e.payload["subject"], format!("document:{doc}"));
    assert_eq!(e.payload["data"]["title"], "Plan B");
    assert!(e.payload["at"].as_str().unwrap_or_default().ends_with('Z'));

    app.create_comment(other, &alice, "elsewhere").await;
    app.create_comment(doc, &alice, "here").await;
    let e = s.next(&wt, "event").await;
    assert_eq!(
        (e.payload["offset"].as_i64(), e.payload["kind"].as_str()),
        (Some(5), Some("comment.created"))
    );
    let e = s.next(&wt, "event").await;
    assert_eq!(e.payload["offset"], 6);
    // The document topic carries its own comment events only.
    let e = s.next(&dt, "event").await;
    assert_eq!(e.join_ref.as_deref(), Some(djr.as_str()));
    assert_eq!(
        (
            e.payload["offset"].as_i64(),
            e.payload["data"]["body"].as_str()
        ),
        (Some(6), Some("here"))
    );
    s.sync().await;
    assert!(
        s.offsets(&dt).is_empty(),
        "document.updated is not a comment event"
    );
}

/// An event goes out as soon as it is written, even right after other frames: with
/// Nagle's algorithm on the server's sockets it would wait for the client's delayed ACK
/// (40 ms on Linux).
#[actix_web::test]
async fn an_event_arrives_at_once_after_other_frames() {
    let app = spawn_app(Backend::Sqlite).await.expect("sqlite");
    let alice = app.register("alice").await;
    let ws_id = app.create_workspace(&alice, "Team").await;
    let wt = format!("workspace:{ws_id}");
    let mut slowest = std::time::Duration::ZERO;
    for round in 0..5 {
        let mut s = Ws::connect(&app, &alice.token).await;
        // The join's reply and presence frames are still unacknowledged when the event
        // is written.
        s.join_ok(&wt, json!({})).await;
        let res = app
            .post(
                &format!("/api/v1/workspaces/{ws_id}/documents"),
                &alice.token,
                json!({"title": format!("Doc {round}"), "content": ""}),
            )
            .await;
        assert_eq!(res.status, 201);
        let answered = std::time::Instant::now();
        s.next(&wt, "event").await;
        slowest = slowest.max(answered.elapsed());
        s.close().await;
    }
    assert!(
        slowest < std::time::Duration::from_millis(25),
        "an event came {slowest:?} after the write's answer"
    );
}

async fn since_recovers_every_event_once_while_writers_are_busy(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let alice = app.register("alice").await;
    let ws_id = app.create_workspace(&alice, "Busy").await;
    let doc = app.create_document(ws_id, &alice, "Shared").await;
    let topic = format!("workspace:{ws_id}");
    const WRITES: usize = 120;

    let writer = async {
        let writes = (0..WRITES).map(|i| {
            let app = &app;
            let token = alice.token.clone();
            async move {
                let res = app
                    .post(
                        &format!("/api/v1/documents/{doc}/comments"),
                        &token,
                        json!({"body": format!("c{i}")}),
                    )
                    .await;
                assert_eq!(res.status, 201);
            }
        });
        // Eight at a time, so commits and publishes interleave.
        let mut writes = futures_util::stream::iter(writes).buffer_unordered(8);
        while writes.next().await.is_some() {}
    };

    // A reader that disconnects twice mid-stream and rejoins with the last offset it saw.
    let reader = async {
        let mut seen: Vec<i64> = Vec::new();
        for round in 0..3 {
            let mut s = Ws::connect(&app, &alice.token).await;
            let since = seen.last().copied().unwrap_or(0);
            let (_, response) = s.join_ok(&topic, json!({"since": since})).await;
            assert_eq!(response["recovered"], true);
            let target = if round < 2 {
                since + 20
            } else {
                (WRITES + 2) as i64
            };
            while seen.last().copied().unwrap_or(0) < target {
                let e = s.next(&topic, "event").await;
                seen.push(e.payload["offset"].as_i64().expect("offset"));
            }
            s.close().await;
        }
        seen
    };
    let ((), seen) = tokio::join!(writer, reader);
    let expected: Vec<i64> = (1..=(WRITES as i64 + 2)).collect();
    assert_eq!(
        seen, expected,
        "every offset once, in order, across two reconnects"
    );

    // And a late joiner replays the whole log from 0.
    let mut late = Ws::connect(&app, &alice.token).await;
    late.join_ok(&topic, json!({"since": 0})).await;
    let mut offsets = Vec::new();
    while offsets.len() < expected.len() {
        offsets.push(
            late.next(&topic, "event").await.payload["offset"]
                .as_i64()
                .expect("offset"),
        );
    }
    assert_eq!(offsets, expected);
    late.sync().await;
    assert!(
        late.offsets(&topic).is_empty(),
        "no duplicates after the replay"
    );
}

#[actix_web::test]
async fn an_event_whose_live_push_was_lost_still_arrives() {
    use stoa::domain::DocumentTitle;
    use stoa::store::prelude::*;
    let app = spawn_app_with(Backend::Sqlite, |s| s.realtime.log_check_ms = 200)
        .await
        .expect("sqlite");
    let alice = app.register("alice").await;
    let ws_id = app.create_workspace(&alice, "Team").await;
    let topic = format!("workspace:{ws_id}");
    let mut s = Ws::connect(&app, &alice.token).await;
    s.join_ok(&topic, json!({})).await;

    // Committed, but never published: as if the writer stopped right after the commit.
    let title = DocumentTitle::parse("Orphan").expect("title");
    app.store
        .create_document(alice.id, ws_id, &title, "")
        .await
        .expect("document created");
    let ev = s.next(&topic, "event").await;
    assert_eq!(ev.payload["offset"], 2);
    assert_eq!(ev.payload["kind"], "document.created");

    // Later events still arrive once, in order.
    app.create_document(ws_id, &alice, "Next").await;
    assert_eq!(s.next(&topic, "event").await.payload["offset"], 3);
    s.sync().await;
    assert_eq!(s.offsets(&topic), Vec::<i64>::new(), "no duplicate");
}

#[actix_web::test]
async fn too_old_or_future_since_is_not_recovered() {
    let app = spawn_app_with(Backend::Sqlite, |s| s.realtime.max_replay_events = 3)
        .await
        .expect("sqlite");
    let alice = app.register("alice").await;
    let ws_id = app.create_workspace(&alice, "Team").await;
    for i in 0..5 {
        app.create_document(ws_id, &alice, &format!("d{i}")).await;
    }
    let topic = format!("workspace:{ws_id}");
    let mut s = Ws::connect(&app, &alice.token).await;
    let (_, r) = s.join_ok(&topic, json!({"since": 1})).await;
    assert_eq!(
        (r["recovered"].as_bool(), r["offset"].as_i64()),
        (Some(false), Some(6))
    );
    let (_, r) = s.join_ok(&topic, json!({"since": 50})).await;
    assert_eq!(r["recovered"], false);
    let (_, r) = s.join_ok(&topic, json!({"since": 3})).await;
    assert_eq!(r["recovered"], true);
    let got: Vec<i64> = [
        s.next(&topic, "event").await,
        s.next(&topic, "event").await,
        s.next(&topic, "event").await,
    ]
    .iter()
    .map(|m| m.payload["offset"].as_i64().expect("offset"))
    .collect();
    assert_eq!(got, vec![4, 5, 6]);
}

#[actix_web::test]
async fn presence_state_then_diffs_across_three_clients() {
    let app = spawn_app(Backend::Sqlite).await.expect("sqlite");
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let ws_id = app.create_workspace(&alice, "Team").await;
    app.add_member(ws_id, &alice, &bob, "viewer").await;
    let doc = app.create_document(ws_id, &alice, "Plan").await;
    let topic = format!("document:{doc}");
    let (a_id, b_id) = (alice.id.to_string(), bob.id.to_string());

    let mut a1 = Ws::connect(&app, &alice.token).await;
    a1.join_ok(&topic, json!({})).await;
    let state = a1.next(&topic, "presence_state").await.payload;
    assert_eq!(state[&a_id]["metas"].as_array().map(Vec::len), Some(1));
    let a1_ref = state[&a_id]["metas"][0]["phx_ref"]
        .as_str()
        .expect("phx_ref")
        .to_string();

    let mut b = Ws::connect(&app, &bob.token).await;
    b.join_ok(&topic, json!({})).await;
    let state = b.next(&topic, "presence_state").await.payload;
    assert_eq!(state.as_object().map(|o| o.len()), Some(2), "{state}");
    let diff = a1.next(&topic, "presence_diff").await.payload;
    assert_eq!(
        diff["joins"][&b_id]["metas"].as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(diff["leaves"], json!({}));

    // A second connection of alice: one more meta under the same key.
    let mut a2 = Ws::connect(&app, &alice.token).await;
    a2.join_ok(&topic, json!({})).await;
    let state = a2.next(&topic, "presence_state").await.payload;
    assert_eq!(state[&a_id]["metas"].as_array().map(Vec::len), Some(2));
    for c in [&mut a1, &mut b] {
        let diff = c.next(&topic, "presence_diff").await.payload;
        assert!(diff["joins"][&a_id]["metas"][0]["phx_ref"].is_string());
    }

    // presence:update replaces a1's meta: a leave of the old ref and a join of the new.
    let r = a1
        .push(
            Some("1"),
            &topic,
            "presence:update",
            json!({"cursor": 42, "status": "typing"}),
        )
        .await;
    assert_eq!(a1.reply(&r).await.payload["status"], "ok");
    for c in [&mut a1, &mut a2, &mut b] {
        let diff = c.next(&topic, "presence_diff").await.payload;
        assert_eq!(
            diff["leaves"][&a_id]["metas"][0]["phx_ref"],
            a1_ref.as_str()
        );
        let meta = &diff["joins"][&a_id]["metas"][0];
        assert_eq!(
            (meta["cursor"].as_i64(), meta["phx_ref_prev"].as_str()),
            (Some(42), Some(a1_ref.as_str()))
        );
        assert!(meta["online_at"].is_i64());
    }
    let r = a1
        .push(
            Some("1"),
            &topic,
            "presence:update",
            json!({"phx_ref": "forged"}),
        )
        .await;
    assert_eq!(a1.reply(&r).await.payload["status"], "error");

    // Disconnecting drops the connection's meta for everyone else.
    b.close().await;
    for c in [&mut a1, &mut a2] {
        let diff = c.next(&topic, "presence_diff").await.payload;
        assert_eq!(
            diff["leaves"][&b_id]["metas"].as_array().map(Vec::len),
            Some(1)
        );
    }
    let mut check = Ws::connect(&app, &alice.token).await;
    check.join_ok(&topic, json!({})).await;
    let state = check.next(&topic, "presence_state").await.payload;
    assert!(state.get(&b_id).is_none(), "{state}");
    assert_eq!(state[&a_id]["metas"].as_array().map(Vec::len), Some(3));
}

use crate::common::presence::PresenceView;

#[actix_web::test]
async fn presence_changes_are_batched_and_converge() {
    // A window long enough that the whole crowd, and the connection that comes and goes,
    // land in the first one even on a loaded machine.
    let app = spawn_app_with(Backend::Sqlite, |s| s.realtime.presence_batch_ms = 3000)
        .await
        .expect("sqlite");
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let ws_id = app.create_workspace(&alice, "Team").await;
    app.add_member(ws_id, &alice, &bob, "viewer").await;
    let doc = app.create_document(ws_id, &alice, "Plan").await;
    let topic = format!("document:{doc}");

    let mut observer = Ws::connect(&app, &alice.token).await;
    observer.join_ok(&topic, json!({})).await;
    let state = observer.next(&topic, "presence_state").await.payload;
    let mut view = PresenceView::from_state(&state);
    let mut diffs = 0;
    let mut joins = 0;

    // A crowd of six connections joins, and one more joins and leaves again at once.
    let mut crowd = Vec::new();
    for who in [&bob, &alice, &bob, &bob, &alice, &bob] {
        let mut s = Ws::connect(&app, &who.token).await;
        s.join_ok(&topic, json!({})).await;
        crowd.push(s);
    }
    let mut brief = Ws::connect(&app, &bob.token).await;
    brief.join_ok(&topic, json!({})).await;
    brief.close_and_wait().await;
    while view.metas() < 7 {
        let diff = observer.next(&topic, "presence_diff").await.payload;
        diffs += 1;
        joins += diff["joins"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(_, e)| PresenceView::refs_of(e).len())
            .sum::<usize>();
        view.apply(&diff);
    }
    assert!(diffs < 7, "seven changes arrived in {diffs} diffs");
    // The crowd joined within one window: each of them gets the same presence_state (one
    // encoding, shared), taken at the window's end, so it already holds the whole crowd
    // and not the connection that came and went.
    let mut states = Vec::new();
    for s in &mut crowd {
        states.push(s.next(&topic, "presence_state").await.payload);
    }
    assert!(states.iter().all(|s| *s == states[0]), "{states:?}");
    let mut last = crowd.pop().expect("crowd");
    let mut last_view = PresenceView::from_state(&states[0]);
    assert_eq!(
        last_view, view,
        "the crowd's state agrees with the observer"
    );

    // Two connections leave: both views lose exactly them.
    for s in crowd.drain(..2) {
        s.close_and_wait().await;
    }
    while view.metas() > 5 {
        view.apply(&observer.next(&topic, "presence_diff").await.payload);
    }
    while last_view.metas() > 5 {
        last_view.apply(&last.next(&topic, "presence_diff").await.payload);
    }
    assert_eq!(view, last_view);
    assert_eq!(view.0.len(), 2, "alice and bob: {view:?}");
    assert_eq!(view.0[&alice.id.to_string()].len(), 2);
    assert_eq!(view.0[&bob.id.to_string()].len(), 3);
    // The connection that came and went within one window never showed up.
    assert!(joins <= 6, "{joins} joins seen for six lasting connections");
}

#[actix_web::test]
async fn broadcast_reaches_the_others_with_a_server_set_sender() {
    let app = spawn_app(Backend::Sqlite).await.expect("sqlite");
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let ws_id = app.create_workspace(&alice, "Team").await;
    app.add_member(ws_id, &alice, &bob, "viewer").await;
    let topic = format!("workspace:{ws_id}");
    let mut a = Ws::connect(&app, &alice.token).await;
    let (ajr, _) = a.join_ok(&topic, json!({})).await;
    let mut b = Ws::connect(&app, &bob.token).await;
    b.join_ok(&topic, json!({})).await;

    let r = a
        .push(
            Some(&ajr),
            &topic,
            "broadcast",
            json!({"type": "typing", "from": 999}),
        )
        .await;
    assert_eq!(a.reply(&r).await.payload["status"], "ok");
    let got = b.next(&topic, "broadcast").await.payload;
    assert_eq!(got, json!({"type": "typing", "from": alice.id}));
    a.sync().await;
    assert!(
        !a.inbox.iter().any(|m| m.event == "broadcast"),
        "not echoed to the sender"
    );

    let big = "x".repeat(20_000);
    let r = a
        .push(Some(&ajr), &topic, "broadcast", json!({"blob": big}))
        .await;
    let reply = a.reply(&r).await.payload;
    assert_eq!(reply["status"], "error");
    assert!(reply["response"]["reason"]
        .as_str()
        .unwrap_or_default()
        .contains("too large"));
    // Nothing was stored: the log still ends at the membership event.
    let events = app.all_events(ws_id, &alice).await;
    assert_eq!(events.len(), 2);
}

/// A topic keeps its subscribers per transport thread and shares that list with the pushes
/// in flight: through joins, leaves, closed sockets and rejoins in a scrambled order, a
/// broadcast reaches exactly the sockets subscribed when it was sent, in order.
#[actix_web::test]
async fn a_broadcast_reaches_exactly_the_subscribers_through_churn() {
    const N: usize = 24;
    let app = spawn_app_with(Backend::Sqlite, |s| s.realtime.max_sockets_per_user = 64)
        .await
        .expect("sqlite");
    let alice = app.register("alice").await;
    let ws_id = app.create_workspace(&alice, "Team").await;
    let topic = format!("workspace:{ws_id}");
    let mut sender = Ws::connect(&app, &alice.token).await;
    let (sjr, _) = sender.join_ok(&topic, json!({})).await;
    let mut socks = Vec::new();
    for _ in 0..N {
        let mut s = Ws::connect(&app, &alice.token).await;
        let (jr, _) = s.join_ok(&topic, json!({})).await;
        socks.push(Some((s, jr)));
    }
    async fn broadcast(sender: &mut Ws, jr: &str, topic: &str, n: u32) {
        let r = sender
            .push(Some(jr), topic, "broadcast", json!({ "n": n }))
            .await;
        assert_eq!(sender.reply(&r).await.payload["status"], "ok");
    }
    // Leaves (every third) and closed sockets (every fifth), in no order the lists keep.
    let mut left = Vec::new();
    for i in [21, 3, 0, 12, 9, 18, 6, 15] {
        let (mut s, jr) = socks[i].take().expect("open");
        let r = s.push(Some(&jr), &topic, "phx_leave", json!({})).await;
        assert_eq!(s.reply(&r).await.payload["status"], "ok");
        left.push((i, s));
    }
    for i in [20, 5, 10] {
        socks[i].take().expect("open").0.close_and_wait().await;
    }
    let subscribed = (N - 8 - 3 + 1) as f64;
    let deadline = std::time::Instant::now() + PATIENCE;
    while app.metric("stoa_ws_subscriptions").await > subscribed {
        assert!(
            std::time::Instant::now() < deadline,
            "the closed sockets' subscriptions were never dropped"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    for n in 1..=3 {
        broadcast(&mut sender, &sjr, &topic, n).await;
    }
    // Two of those that left join again; only what follows is theirs.
    let mut back = Vec::new();
    for _ in 0..2 {
        let (i, mut s) = left.pop().expect("left");
        let (jr, _) = s.join_ok(&topic, json!({})).await;
        back.push((i, s, jr));
    }
    broadcast(&mut sender, &sjr, &topic, 4).await;

    let ns = |ws: &Ws| -> Vec<u64> {
        (ws.inbox.iter())
            .filter(|m| m.topic == topic && m.event == "broadcast")
            .filter_map(|m| m.payload["n"].as_u64())
            .collect()
    };
    for (i, sock) in socks.iter_mut().enumerate() {
        let Some((s, _)) = sock else { continue };
        let mut got = Vec::new();
        for _ in 0..4 {
            got.push(s.next(&topic, "broadcast").await.payload["n"].as_u64());
        }
        assert_eq!(got, [1, 2, 3, 4].map(Some), "socket {i}, in order");
        s.sync().await;
        // The four were taken by `next`; nothing more came.
        assert!(ns(s).is_empty(), "socket {i} got more: {:?}", ns(s));
    }
    for (i, s, _) in &mut back {
        let got = s.next(&topic, "broadcast").await;
        assert_eq!(got.payload["n"], 4, "socket {i} rejoined after 1–3");
        s.sync().await;
        assert!(ns(s).is_empty(), "socket {i} got more: {:?}", ns(s));
    }
    for (i, s) in &mut left {
        s.sync().await;
        assert!(ns(s).is_empty(), "socket {i} left yet got {:?}", ns(s));
    }
}

#[actix_web::test]
async fn flooding_is_answered_with_rate_limited() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.realtime.messages_per_sec = 5;
        s.realtime.message_burst = 5;
    })
    .await
    .expect("sqlite");
    let alice = app.register("alice").await;
    let ws_id = app.create_workspace(&alice, "Team").await;
    let topic = format!("workspace:{ws_id}");
    let mut a = Ws::connect(&app, &alice.token).await;
    let (jr, _) = a.join_ok(&topic, json!({})).await;
    let replies = a
        .push_all(&jr, &topic, "broadcast", (0..30).map(|i| json!({"i": i})))
        .await;
    let limited = crate::ws::refused(&replies, "rate_limited");
    assert!(limited >= 20, "{limited} of 30 refused");
    // Heartbeats are never limited, so the connection stays healthy.
    a.sync().await;
    assert!(app.metric("stoa_ws_rate_limited_total").await >= 20.0);
}

#[actix_web::test]
async fn a_client_that_stops_reading_is_disconnected_and_counted() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.realtime.outbound_queue = 16;
        s.realtime.messages_per_sec = 100_000;
        s.realtime.message_burst = 100_000;
        s.realtime.user_messages_per_sec = 100_000;
        s.realtime.user_message_burst = 100_000;
        s.realtime.topic_broadcasts_per_sec = 100_000;
        s.realtime.topic_broadcast_bytes_per_sec = 1 << 30;
        s.server.tcp_user_timeout_secs = 1;
    })
    .await
    .expect("sqlite");
    let alice = app.register("alice").await;
    let ws_id = app.create_workspace(&alice, "Team").await;
    let topic = format!("workspace:{ws_id}");
    let mut slow = Ws::connect(&app, &alice.token).await;
    slow.join_ok(&topic, json!({})).await;
    let mut fast = Ws::connect(&app, &alice.token).await;
    let (jr, _) = fast.join_ok(&topic, json!({})).await;

    // 15 KB per broadcast: the socket buffers fill after a few MB, then the queue.
    let blob = "y".repeat(15_000);
    let mut sent = 0;
    while app.metric("stoa_ws_slow_consumers_total").await < 1.0 {
        for _ in 0..50 {
            let r = fast
                .push(Some(&jr), &topic, "broadcast", json!({"blob": blob}))
                .await;
            assert_eq!(fast.reply(&r).await.payload["status"], "ok");
        }
        sent += 50;
        assert!(sent < 20_000, "the slow client was never disconnected");
    }
    // Its session is gone at once; its TCP connection, which the server cannot even write a
    // close frame to, is dropped once the peer has acknowledged nothing for the TCP user
    // timeout, without the client ever reading again.
    let waiting = std::time::Instant::now();
    while app.metric("stoa_ws_sockets").await > 1.0 {
        assert!(
            waiting.elapsed() < PATIENCE,
            "the stalled connection was never dropped"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Reading again, the slow client finds its socket closed by the server.
    slow.until_closed().await;
    assert!(slow.inbox.len() < sent, "it did not get everything");
    fast.sync().await;
    assert_eq!(app.metric("stoa_ws_connections").await, 1.0);
}

#[actix_web::test]
async fn a_panicking_topic_actor_restarts_alone() {
    let app = spawn_app(Backend::Sqlite).await.expect("sqlite");
    let alice = app.register("alice").await;
    let ws_id = app.create_workspace(&alice, "Team").await;
    let doc = app.create_document(ws_id, &alice, "Plan").await;
    let wt = format!("workspace:{ws_id}");
    let dt = format!("document:{doc}");
    let mut s = Ws::connect(&app, &alice.token).await;
    let (wjr, _) = s.join_ok(&wt, json!({})).await;
    s.join_ok(&dt, json!({})).await;

    assert!(app.realtime.inject_panic(Topic::Workspace(ws_id)));
    let err = s.next(&wt, "phx_error").await;
    assert_eq!(
        (err.join_ref.as_deref(), err.msg_ref.as_deref()),
        (Some(wjr.as_str()), Some(wjr.as_str()))
    );

    // The other topic is untouched and the node still serves.
    app.create_comment(doc, &alice, "still here").await;
    assert_eq!(s.next(&dt, "event").await.payload["offset"], 3);
    assert_eq!(app.get("/healthz", &alice.token).await.status, 200);

    // Rejoining (as phoenix.js does after phx_error) reaches a fresh actor, with recovery.
    let (_, r) = s.join_ok(&wt, json!({"since": 2})).await;
    assert_eq!(r["recovered"], true);
    assert_eq!(s.next(&wt, "event").await.payload["offset"], 3);
    app.create_document(ws_id, &alice, "After").await;
    assert_eq!(s.next(&wt, "event").await.payload["offset"], 4);
    assert_eq!(app.metric("stoa_ws_topic_crashes_total").await, 1.0);
    // Its supervisor started a fresh actor in its place at once.
    assert_eq!(app.metric("stoa_ws_topic_restarts_total").await, 1.0);
}

#[actix_web::test]
async fn removal_and_deletion_close_channels_at_once() {
    let app = spawn_app(Backend::Sqlite).await.expect("sqlite");
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let ws_id = app.create_workspace(&alice, "Team").await;
    app.add_member(ws_id, &alice, &bob, "editor").await;
    let doc = app.create_document(ws_id, &alice, "Plan").await;
    let wt = format!("workspace:{ws_id}");
    let dt = format!("document:{doc}");

    let mut b = Ws::connect(&app, &bob.token).await;
    b.join_ok(&wt, json!({})).await;
    b.join_ok(&dt, json!({})).await;
    let mut a = Ws::connect(&app, &alice.token).await;
    a.join_ok(&wt, json!({})).await;

    let res = app
        .delete(
            &format!("/api/v1/workspaces/{ws_id}/members/{}", bob.id),
            &alice.token,
        )
        .await;
    assert_eq!(res.status, 204);
    for topic in [&wt, &dt] {
        let close = b.next(topic, "phx_close").await;
        assert_eq!(close.payload["reason"], "membership_revoked");
    }
    let (status, _) = b.join(&wt, json!({})).await;
    assert_eq!(status, "error");
    // Alice sees the removal as an event, and bob's presence leave.
    let e = a.next(&wt, "event").await;
    assert_eq!(e.payload["kind"], "member.removed");
    b.sync().await;
    assert!(
        !b.inbox.iter().any(|m| m.event == "event"),
        "bob got nothing after removal"
    );

    let res = app
        .delete(&format!("/api/v1/workspaces/{ws_id}"), &alice.token)
        .await;
    assert_eq!(res.status, 204);
    assert_eq!(
        a.next(&wt, "phx_close").await.payload["reason"],
        "workspace_deleted"
    );
}

#[actix_web::test]
async fn silent_connections_are_closed_and_heartbeats_keep_them() {
    let app = spawn_app_with(Backend::Sqlite, |s| s.realtime.heartbeat_timeout_secs = 1)
        .await
        .expect("sqlite");
    let alice = app.register("alice").await;
    let mut silent = Ws::connect(&app, &alice.token).await;
    silent.sync().await;
    let mut beating = Ws::connect(&app, &alice.token).await;
    // A client heartbeating every 250 ms (phoenix.js does every 30 s against the default
    // 60 s) for 2.5 timeouts keeps its socket.
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_millis(2500) {
        beating.sync().await;
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    beating.sync().await;
    let reason = silent.until_closed().await.expect("close frame");
    assert_eq!(reason.description.as_deref(), Some("heartbeat_timeout"));
    // Once it falls silent, it goes too.
    let reason = beating.until_closed().await.expect("close frame");
    assert_eq!(reason.description.as_deref(), Some("heartbeat_timeout"));
}

#[actix_web::test]
async fn an_expired_token_ends_the_socket_unless_refreshed() {
    let app = spawn_app_with(Backend::Sqlite, |s| s.auth.access_token_ttl_secs = 2)
        .await
        .expect("sqlite");
    let alice = app.register("alice").await;
    let keys = stoa::auth::JwtKeys::new(JWT_SECRET.as_bytes().to_vec(), "stoa", "stoa", 3600);
    let (fresh, _) = keys.issue(alice.id, stoa::domain::now_ms() / 1000, None);
    let other = app.register("other").await;

    let mut refreshed = Ws::connect(&app, &alice.token).await;
    let r = refreshed
        .push(None, "phoenix", "access_token", json!({"token": fresh}))
        .await;
    // On the phoenix topic the event is unknown; on a channel it is understood.
    assert_eq!(refreshed.reply(&r).await.payload["status"], "error");
    let ws_id = app.create_workspace(&alice, "Team").await;
    let topic = format!("workspace:{ws_id}");
    refreshed.join_ok(&topic, json!({})).await;
    let r = refreshed
        .push(
            Some("1"),
            &topic,
            "access_token",
            json!({"token": other.token}),
        )
        .await;
    assert_eq!(
        refreshed.reply(&r).await.payload["status"],
        "error",
        "another user's token"
    );
    let r = refreshed
        .push(Some("1"), &topic, "access_token", json!({"token": "nope"}))
        .await;
    assert_eq!(
        refreshed.reply(&r).await.payload["response"]["reason"],
        "invalid_token"
    );
    let r = refreshed
        .push(Some("1"), &topic, "access_token", json!({"token": fresh}))
        .await;
    assert_eq!(refreshed.reply(&r).await.payload["status"], "ok");

    let mut stale = Ws::connect(&app, &alice.token).await;
    let reason = stale.until_closed().await.expect("close frame");
    assert_eq!(reason.description.as_deref(), Some("token_expired"));
    refreshed.sync().await;
}

#[actix_web::test]
async fn bad_frames_get_clear_errors_and_change_nothing() {
    let app = spawn_app_with(Backend::Sqlite, |s| s.realtime.max_frame_bytes = 4096)
        .await
        .expect("sqlite");
    let alice = app.register("alice").await;
    let ws_id = app.create_workspace(&alice, "Team").await;
    let mut s = Ws::connect(&app, &alice.token).await;
    for garbage in [
        "not json",
        "{}",
        "[1,2,3]",
        r#"[null,null,"t","e",[]]"#,
        "[\"\u{0}\"]",
    ] {
        s.send_text(garbage.to_string()).await;
        let err = s.next("phoenix", "phx_error").await;
        assert!(err.payload["reason"]
            .as_str()
            .unwrap_or_default()
            .starts_with("bad frame"));
    }
    let topic = format!("workspace:{ws_id}");
    let (jr, _) = s.join_ok(&topic, json!({})).await;
    let r = s.push(Some(&jr), &topic, "launch", json!({})).await;
    let reply = s.reply(&r).await.payload;
    assert_eq!(reply["status"], "error");
    assert!(reply["response"]["reason"]
        .as_str()
        .unwrap_or_default()
        .contains("unknown event"));
    s.sync().await;
    assert_eq!(
        app.all_events(ws_id, &alice).await.len(),
        1,
        "nothing was written"
    );

    // Over the frame limit: the socket is closed with 1009.
    s.send_text(format!(
        "[null,null,\"phoenix\",\"heartbeat\",{{\"p\":\"{}\"}}]",
        "z".repeat(5000)
    ))
    .await;
    let reason = s.until_closed().await.expect("close frame");
    assert_eq!(u16::from(reason.code), 1009);
    // The server is fine.
    let mut again = Ws::connect(&app, &alice.token).await;
    again.sync().await;
}

#[actix_web::test]
async fn fragmented_messages_pings_and_binary_frames() {
    use actix_http::ws::Item;
    use awc::ws::Message;
    let app = spawn_app(Backend::Sqlite).await.expect("sqlite");
    let alice = app.register("alice").await;
    let ws_id = app.create_workspace(&alice, "Team").await;
    let topic = format!("workspace:{ws_id}");
    let mut s = Ws::connect(&app, &alice.token).await;

    // A join sent in three fragments is one message.
    let join = json!(["1", "1", topic, "phx_join", {}]).to_string();
    let (a, rest) = join.split_at(5);
    let (b, c) = rest.split_at(7);
    s.send_raw(Message::Continuation(Item::FirstText(a.to_owned().into())))
        .await;
    s.send_raw(Message::Continuation(Item::Continue(b.to_owned().into())))
        .await;
    s.send_raw(Message::Continuation(Item::Last(c.to_owned().into())))
        .await;
    assert_eq!(s.reply("1").await.payload["status"], "ok");

    // Pings are answered with their payload, in order with everything else.
    s.send_raw(Message::Ping("are you there".into())).await;
    s.sync().await;
    assert_eq!(s.pongs, vec![b"are you there".to_vec()]);

    // Text that is not UTF-8 ends the connection with 1007 (invalid payload data).
    s.send_raw(Message::Continuation(Item::FirstText(
        vec![b'[', 0xff, 0xfe].into(),
    )))
    .await;
    s.send_raw(Message::Continuation(Item::Last("]".into())))
        .await;
    let reason = s.until_closed().await.expect("close frame");
    assert_eq!(u16::from(reason.code), 1007);

    // Binary frames are refused with 1003.
    let mut b = Ws::connect(&app, &alice.token).await;
    b.send_raw(Message::Binary(vec![1, 2, 3].into())).await;
    let reason = b.until_closed().await.expect("close frame");
    assert_eq!(u16::from(reason.code), 1003);
    assert_eq!(
        reason.description.as_deref(),
        Some("binary frames are not supported")
    );

    // The server is fine.
    let mut again = Ws::connect(&app, &alice.token).await;
    again.join_ok(&topic, json!({})).await;
}

#[actix_web::test]
async fn sockets_per_user_are_limited() {
    let app = spawn_app_with(Backend::Sqlite, |s| s.realtime.max_sockets_per_user = 2)
        .await
        .expect("sqlite");
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let path = format!("/socket/websocket?vsn=2.0.0&token={}", alice.token);
    let first = Ws::connect(&app, &alice.token).await;
    let mut second = Ws::connect(&app, &alice.token).await;
    second.sync().await;
    assert_eq!(
        Ws::refusal(&app, &path).await,
        (429, "too_many_sockets".to_string())
    );
    assert_eq!(app.metric("stoa_ws_sockets_refused_total").await, 1.0);
    // Someone else is not affected.
    Ws::connect(&app, &bob.token).await.sync().await;

    // Once the server has answered a close, that socket no longer counts.
    first.close_and_wait().await;
    let mut third = Ws::try_connect(&app, &path, &[]).await.expect("room again");
    third.sync().await;
}

#[actix_web::test]
async fn topics_per_connection_are_limited() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.realtime.max_topics_per_connection = 2
    })
    .await
    .expect("sqlite");
    let alice = app.register("alice").await;
    let ws_id = app.create_workspace(&alice, "Team").await;
    let doc = app.create_document(ws_id, &alice, "Plan").await;
    let mut s = Ws::connect(&app, &alice.token).await;
    s.join_ok(&format!("workspace:{ws_id}"), json!({})).await;
    s.join_ok(&format!("document:{doc}"), json!({})).await;
    let (status, r) = s.join(&format!("user:{}", alice.id), json!({})).await;
    assert_eq!(
        (status.as_str(), &r["reason"]),
        ("error", &json!("too_many_topics"))
    );
    // Leaving frees a slot; leave is answered, then phx_close.
    let r = s
        .push(
            Some("2"),
            &format!("document:{doc}"),
            "phx_leave",
            json!({}),
        )
        .await;
    assert_eq!(s.reply(&r).await.payload["status"], "ok");
    s.next(&format!("document:{doc}"), "phx_close").await;
    s.join_ok(&format!("user:{}", alice.id), json!({})).await;
}

/// The real-time metrics count what happened, by kind and event, and time each delivery.
#[actix_web::test]
async fn metrics_count_joins_frames_and_time_fan_out() {
    let app = spawn_app(Backend::Sqlite).await.expect("sqlite");
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let ws_id = app.create_workspace(&alice, "Team").await;
    app.add_member(ws_id, &alice, &bob, "editor").await;
    let topic = format!("workspace:{ws_id}");
    let mut a = Ws::connect(&app, &alice.token).await;
    let (ajr, _) = a.join_ok(&topic, json!({})).await;
    a.join_ok(&format!("user:{}", alice.id), json!({})).await;
    let mut b = Ws::connect(&app, &bob.token).await;
    b.join_ok(&topic, json!({})).await;

    let r = a
        .push(Some(&ajr), &topic, "broadcast", json!({"type": "typing"}))
        .await;
    assert_eq!(a.reply(&r).await.payload["status"], "ok");
    b.next(&topic, "broadcast").await;
    let doc = app
        .post(
            &format!("/api/v1/workspaces/{ws_id}/documents"),
            &alice.token,
            json!({"title": "Plan"}),
        )
        .await;
    assert_eq!(doc.status, 201, "{:?}", doc.body);
    a.next(&topic, "event").await;
    b.next(&topic, "event").await;

    assert_eq!(
        app.metric("stoa_ws_joins_total{kind=\"workspace\"}").await,
        2.0
    );
    assert_eq!(app.metric("stoa_ws_joins_total{kind=\"user\"}").await, 1.0);
    assert_eq!(
        app.metric("stoa_ws_joins_total{kind=\"document\"}").await,
        0.0
    );
    assert_eq!(
        app.metric("stoa_ws_frames_in_total{event=\"phx_join\"}")
            .await,
        3.0
    );
    assert_eq!(
        app.metric("stoa_ws_frames_in_total{event=\"broadcast\"}")
            .await,
        1.0
    );
    assert_eq!(
        app.metric("stoa_ws_frames_out_total{event=\"broadcast\"}")
            .await,
        1.0
    );
    assert_eq!(
        app.metric("stoa_ws_frames_out_total{event=\"event\"}")
            .await,
        2.0
    );
    // One timed write per delivery (the broadcast to bob, the event to both), merged by the
    // transport threads as they finish a pass.
    let deadline = std::time::Instant::now() + PATIENCE;
    while app.metric("stoa_ws_fanout_latency_seconds_count").await < 3.0 {
        assert!(std::time::Instant::now() < deadline, "deliveries not timed");
        tokio::task::yield_now().await;
    }
    let sum = app.metric("stoa_ws_fanout_latency_seconds_sum").await;
    assert!(sum > 0.0 && sum < 5.0, "{sum} s for three deliveries");
    assert!(app.metric("stoa_ws_outbound_queue_frames_count").await >= 3.0);
    let one_write = app
        .metric("stoa_ws_outbound_queue_frames_bucket{le=\"+Inf\"}")
        .await;
    assert!(one_write >= 3.0);
}
