//! Notifications: created with the event that causes them, pushed live on `user:{id}` to
//! every session of that user, listed and marked read over REST.

use serde_json::json;

use crate::helpers::{spawn_app, Backend};
use crate::ws::Ws;

crate::on_every_backend!(
    mentions_replies_and_membership_changes_notify_live_and_over_rest,
    a_removed_member_is_told_nothing_more_of_the_workspace
);

async fn mentions_replies_and_membership_changes_notify_live_and_over_rest(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let ws_id = app.create_workspace(&alice, "Team").await;
    let topic = format!("user:{}", bob.id);

    // Two sessions of bob, both on his user topic.
    let mut b1 = Ws::connect(&app, &bob.token).await;
    let (_, r) = b1.join_ok(&topic, json!({})).await;
    assert_eq!(r["unread_count"], 0);
    let mut b2 = Ws::connect(&app, &bob.token).await;
    b2.join_ok(&topic, json!({})).await;

    app.add_member(ws_id, &alice, &bob, "editor").await;
    for b in [&mut b1, &mut b2] {
        let n = b.next(&topic, "notification").await.payload;
        assert_eq!(
            (n["kind"].as_str(), n["workspace_id"].as_i64()),
            (Some("member_added"), Some(ws_id))
        );
        assert_eq!(
            (n["actor"].as_i64(), n["read"].as_bool()),
            (Some(alice.id), Some(false))
        );
        assert_eq!(n["unread_count"], 1);
    }

    let doc = app.create_document(ws_id, &alice, "Plan").await;
    let res = app
        .post(
            &format!("/api/v1/documents/{doc}/comments"),
            &alice.token,
            json!({"body": format!("@{} please look", bob.email)}),
        )
        .await;
    assert_eq!(res.status, 201);
    let parent = res.body["id"].as_i64().expect("id");
    for b in [&mut b1, &mut b2] {
        let n = b.next(&topic, "notification").await.payload;
        assert_eq!(
            (n["kind"].as_str(), n["unread_count"].as_i64()),
            (Some("mention"), Some(2))
        );
        assert_eq!(n["subject"], format!("comment:{parent}"));
    }

    // Bob replies: alice is told, bob is not told about his own reply.
    let alice_topic = format!("user:{}", alice.id);
    let mut a = Ws::connect(&app, &alice.token).await;
    a.join_ok(&alice_topic, json!({})).await;
    let res = app
        .post(
            &format!("/api/v1/documents/{doc}/comments"),
            &bob.token,
            json!({"body": "done", "parent_id": parent}),
        )
        .await;
    assert_eq!(res.status, 201);
    let n = a.next(&alice_topic, "notification").await.payload;
    assert_eq!(
        (n["kind"].as_str(), n["actor"].as_i64()),
        (Some("reply"), Some(bob.id))
    );

    let res = app
        .patch(
            &format!("/api/v1/workspaces/{ws_id}/members/{}", bob.id),
            &alice.token,
            json!({"role": "viewer"}),
        )
        .await;
    assert_eq!(res.status, 200, "{:?}", res.body);
    let n = b2.next(&topic, "notification").await.payload;
    assert_eq!(
        (n["kind"].as_str(), n["data"]["role"].as_str()),
        (Some("role_changed"), Some("viewer"))
    );
    b1.next(&topic, "notification").await;
    b1.sync().await;
    let kinds: Vec<_> = b1
        .inbox
        .iter()
        .filter(|m| m.event == "notification")
        .filter_map(|m| m.payload["kind"].as_str().map(str::to_string))
        .collect();
    assert!(
        kinds.is_empty(),
        "each notification once per session: {kinds:?}"
    );

    // REST: newest first, unread filter, count, mark one, mark all.
    let list = app.get("/api/v1/notifications", &bob.token).await;
    assert_eq!(list.status, 200);
    let items = list.body["items"].as_array().expect("items").clone();
    let kinds: Vec<_> = items
        .iter()
        .map(|n| n["kind"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(kinds, ["role_changed", "mention", "member_added"]);
    assert_eq!(
        app.get("/api/v1/notifications/unread-count", &bob.token)
            .await
            .body["unread_count"],
        3
    );
    let first = items[2]["id"].as_i64().expect("id");
    let res = app
        .post(
            &format!("/api/v1/notifications/{first}/read"),
            &bob.token,
            json!({}),
        )
        .await;
    assert_eq!((res.status, res.body["read"].as_bool()), (200, Some(true)));
    let unread = app
        .get("/api/v1/notifications?unread=true", &bob.token)
        .await;
    assert_eq!(unread.body["items"].as_array().map(Vec::len), Some(2));
    // Someone else's notification is not found.
    let res = app
        .post(
            &format!("/api/v1/notifications/{first}/read"),
            &alice.token,
            json!({}),
        )
        .await;
    assert_eq!(res.status, 404);
    let res = app
        .post("/api/v1/notifications/read-all", &bob.token, json!({}))
        .await;
    assert_eq!(
        (
            res.body["marked"].as_i64(),
            res.body["unread_count"].as_i64()
        ),
        (Some(2), Some(0))
    );
    let page = app.get("/api/v1/notifications?limit=1", &bob.token).await;
    assert_eq!(page.body["items"].as_array().map(Vec::len), Some(1));
    assert!(page.body["next_cursor"].is_string());
}

/// Bob comments, is removed, and Alice replies to his comment: the reply reaches Bob
/// neither live nor over REST, and what he was told while a member is no longer listed.
async fn a_removed_member_is_told_nothing_more_of_the_workspace(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    let ws_id = app.create_workspace(&alice, "Team").await;
    app.add_member(ws_id, &alice, &bob, "editor").await;
    let doc = app.create_document(ws_id, &alice, "Plan").await;
    let bobs = app.create_comment(doc, &bob, "my view").await;
    // A mention while Bob is a member: he is told.
    app.create_comment(doc, &alice, &format!("@{} noted", bob.email))
        .await;
    let count = |r: crate::helpers::Resp| r.body["unread_count"].as_i64();
    assert_eq!(
        count(
            app.get("/api/v1/notifications/unread-count", &bob.token)
                .await
        ),
        Some(2),
        "member_added and the mention"
    );

    let topic = format!("user:{}", bob.id);
    let mut live = Ws::connect(&app, &bob.token).await;
    live.join_ok(&topic, json!({})).await;
    let r = app
        .delete(
            &format!("/api/v1/workspaces/{ws_id}/members/{}", bob.id),
            &alice.token,
        )
        .await;
    assert_eq!(r.status, 204);
    let r = app
        .post(
            &format!("/api/v1/documents/{doc}/comments"),
            &alice.token,
            json!({"body": format!("@{} replying to you", bob.email), "parent_id": bobs}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);

    // Another workspace adds Bob: that notification is the next he hears of, not the reply.
    let other = app.create_workspace(&carol, "Elsewhere").await;
    app.add_member(other, &carol, &bob, "viewer").await;
    let n = live.next(&topic, "notification").await.payload;
    assert_eq!(
        (n["kind"].as_str(), n["workspace_id"].as_i64()),
        (Some("member_added"), Some(other)),
        "{n}"
    );
    assert_eq!(
        n["unread_count"], 1,
        "only the new workspace's notification counts"
    );

    let list = app.get("/api/v1/notifications", &bob.token).await;
    let items = list.body["items"].as_array().expect("items").clone();
    assert!(
        items.iter().all(|n| n["workspace_id"] == other),
        "notifications of a workspace Bob left are not listed: {items:?}"
    );
    assert!(
        !list.body.to_string().contains("replying to you"),
        "the reply's text never reaches Bob"
    );
    assert_eq!(
        count(
            app.get("/api/v1/notifications/unread-count", &bob.token)
                .await
        ),
        Some(1)
    );
    // Marking all read marks the one he can see.
    let r = app
        .post("/api/v1/notifications/read-all", &bob.token, json!({}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    // Added back, Bob sees again what he was told as a member, never the reply.
    app.add_member(ws_id, &alice, &bob, "viewer").await;
    let list = app.get("/api/v1/notifications?limit=100", &bob.token).await;
    let kinds: Vec<&str> = list.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|n| n["workspace_id"] == ws_id)
        .filter_map(|n| n["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["member_added", "mention", "member_added"]);
}
