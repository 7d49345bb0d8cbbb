//! The event log: one event per mutation, gap-free offsets under concurrency.

use std::collections::BTreeSet;

use futures_util::future::join_all;
use serde_json::json;

use crate::helpers::{spawn_app, Backend};

crate::on_every_backend!(
    fifty_concurrent_writers_get_offsets_one_to_n,
    events_describe_each_change
);

async fn fifty_concurrent_writers_get_offsets_one_to_n(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let alice = app.register("alice").await;
    let ws = app.create_workspace(&alice, "Busy").await;
    let doc = app.create_document(ws, &alice, "Shared").await;

    // 50 writers at once, mixing document creation, edits and comments on one workspace.
    let writes = (0..50).map(|i| {
        let app = &app;
        let token = alice.token.clone();
        async move {
            let res = match i % 3 {
                0 => {
                    app.post(
                        &format!("/api/v1/workspaces/{ws}/documents"),
                        &token,
                        json!({"title": format!("doc {i}")}),
                    )
                    .await
                }
                1 => {
                    app.patch(
                        &format!("/api/v1/documents/{doc}"),
                        &token,
                        json!({"content": format!("edit {i}")}),
                    )
                    .await
                }
                _ => {
                    app.post(
                        &format!("/api/v1/documents/{doc}/comments"),
                        &token,
                        json!({"body": format!("comment {i}")}),
                    )
                    .await
                }
            };
            res.status
        }
    });
    let statuses = join_all(writes).await;
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 201),
        "{statuses:?}"
    );

    let events = app.all_events(ws, &alice).await;
    let offsets: Vec<i64> = events
        .iter()
        .map(|e| e["offset"].as_i64().unwrap())
        .collect();
    let expected: Vec<i64> = (1..=52).collect();
    assert_eq!(offsets, expected, "offsets are exactly 1..=N in order");
    let unique: BTreeSet<i64> = offsets.iter().copied().collect();
    assert_eq!(unique.len(), 52);
    let ws_view = app
        .get(&format!("/api/v1/workspaces/{ws}"), &alice.token)
        .await;
    assert_eq!(ws_view.body["last_offset"], 52);
    // The document saw exactly the edits that were logged.
    let edits = events
        .iter()
        .filter(|e| e["kind"] == "document.updated")
        .count() as i64;
    let doc_now = app
        .get(&format!("/api/v1/documents/{doc}"), &alice.token)
        .await;
    assert_eq!(doc_now.body["version"].as_i64().unwrap(), 1 + edits);
}

async fn events_describe_each_change(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let ws = app.create_workspace(&alice, "Log").await;
    app.add_member(ws, &alice, &bob, "viewer").await;
    app.patch(
        &format!("/api/v1/workspaces/{ws}/members/{}", bob.id),
        &alice.token,
        json!({"role": "editor"}),
    )
    .await;
    let doc = app.create_document(ws, &bob, "Notes").await;
    app.patch(
        &format!("/api/v1/documents/{doc}"),
        &bob.token,
        json!({"title": "Notes 2"}),
    )
    .await;
    // Refused changes leave no trace in the log.
    let refused = app
        .delete(&format!("/api/v1/workspaces/{ws}"), &bob.token)
        .await;
    assert_eq!(refused.status, 403);
    let noop = app
        .patch(
            &format!("/api/v1/workspaces/{ws}/members/{}", bob.id),
            &alice.token,
            json!({"role": "editor"}),
        )
        .await;
    assert_eq!(noop.status, 200);
    app.delete(
        &format!("/api/v1/workspaces/{ws}/members/{}", bob.id),
        &bob.token,
    )
    .await;

    let events = app.all_events(ws, &alice).await;
    let summary: Vec<(i64, &str, Option<i64>, &str)> = events
        .iter()
        .map(|e| {
            (
                e["offset"].as_i64().unwrap(),
                e["kind"].as_str().unwrap(),
                e["actor"].as_i64(),
                e["subject"].as_str().unwrap(),
            )
        })
        .collect();
    let b = format!("user:{}", bob.id);
    let d = format!("document:{doc}");
    let w = format!("workspace:{ws}");
    assert_eq!(
        summary,
        vec![
            (1, "workspace.created", Some(alice.id), w.as_str()),
            (2, "member.added", Some(alice.id), b.as_str()),
            (3, "member.role_changed", Some(alice.id), b.as_str()),
            (4, "document.created", Some(bob.id), d.as_str()),
            (5, "document.updated", Some(bob.id), d.as_str()),
            (6, "member.removed", Some(bob.id), b.as_str()),
        ]
    );
    assert_eq!(events[2]["data"]["previous_role"], "viewer");
    assert_eq!(events[2]["data"]["role"], "editor");
    assert_eq!(events[4]["data"]["changed"], json!(["title"]));
    assert_eq!(events[5]["data"]["left"], true);
    assert!(events[0]["at"].as_str().unwrap().ends_with('Z'));

    let page = app
        .get(
            &format!("/api/v1/workspaces/{ws}/events?since=4&limit=1"),
            &alice.token,
        )
        .await;
    assert_eq!(page.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(page.body["next_since"], 5);
    assert_eq!(page.body["latest_offset"], 6);
    let bad = app
        .get(
            &format!("/api/v1/workspaces/{ws}/events?since=-1"),
            &alice.token,
        )
        .await;
    assert_eq!(bad.status, 422);
}
