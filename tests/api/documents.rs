//! Documents, optimistic concurrency, comments and pagination.

use awc::http::Method;
use serde_json::json;

use crate::helpers::{spawn_app, Backend};

crate::on_every_backend!(
    if_match_guards_against_lost_updates,
    pagination_has_no_duplicates_or_gaps_while_rows_are_inserted,
    comment_threads_mentions_and_resolution,
);

async fn if_match_guards_against_lost_updates(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let alice = app.register("alice").await;
    let ws = app.create_workspace(&alice, "Docs").await;
    let doc = app.create_document(ws, &alice, "Draft").await;
    let path = format!("/api/v1/documents/{doc}");

    let read = app.get(&path, &alice.token).await;
    assert_eq!(read.header("etag").as_deref(), Some("\"1\""));
    assert_eq!(read.body["content"], "text");

    let ok = app
        .call(
            Method::PATCH,
            &path,
            Some(&alice.token),
            Some(json!({"content": "v2"})),
            &[("if-match", "\"1\"")],
        )
        .await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    assert_eq!(ok.header("etag").as_deref(), Some("\"2\""));
    assert_eq!(ok.body["version"], 2);

    // A second writer still holding version 1 must not overwrite v2.
    let stale = app
        .call(
            Method::PATCH,
            &path,
            Some(&alice.token),
            Some(json!({"content": "lost"})),
            &[("if-match", "\"1\"")],
        )
        .await;
    assert_eq!(stale.status, 412);
    assert_eq!(stale.code(), "version_mismatch");
    assert_eq!(stale.body["current_version"], 2);
    let stale_delete = app
        .call(
            Method::DELETE,
            &path,
            Some(&alice.token),
            None,
            &[("if-match", "\"1\"")],
        )
        .await;
    assert_eq!(stale_delete.status, 412);
    assert_eq!(app.get(&path, &alice.token).await.body["content"], "v2");

    // Without If-Match the write is unconditional.
    let blind = app
        .patch(&path, &alice.token, json!({"title": "Final"}))
        .await;
    assert_eq!(blind.body["version"], 3);
    assert_eq!(blind.body["content"], "v2");
    let bad = app
        .call(
            Method::PATCH,
            &path,
            Some(&alice.token),
            Some(json!({"title": "x"})),
            &[("if-match", "yesterday")],
        )
        .await;
    assert_eq!(bad.status, 400);
    let empty = app.patch(&path, &alice.token, json!({})).await;
    assert_eq!(empty.status, 422);
}

async fn pagination_has_no_duplicates_or_gaps_while_rows_are_inserted(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let alice = app.register("alice").await;
    let ws = app.create_workspace(&alice, "Paged").await;
    for i in 0..23 {
        app.create_document(ws, &alice, &format!("doc {i}")).await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/workspaces/{ws}/documents?limit=5&cursor={c}"),
            None => format!("/api/v1/workspaces/{ws}/documents?limit=5"),
        };
        let res = app.get(&path, &alice.token).await;
        assert_eq!(res.status, 200, "{:?}", res.body);
        for d in res.body["items"].as_array().unwrap() {
            assert!(d.get("content").is_none(), "lists leave content out");
            seen.push(d["id"].as_i64().unwrap());
        }
        pages += 1;
        // Someone keeps writing while we page.
        if pages <= 3 {
            app.create_document(ws, &alice, &format!("late {pages}"))
                .await;
        }
        match res.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let all = app
        .get(
            &format!("/api/v1/workspaces/{ws}/documents?limit=200"),
            &alice.token,
        )
        .await;
    let all: Vec<i64> = all.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_i64().unwrap())
        .collect();
    assert_eq!(all.len(), 26);
    assert_eq!(seen, all, "every document exactly once, in order");

    let bad = app
        .get(
            &format!("/api/v1/workspaces/{ws}/documents?cursor=garbage"),
            &alice.token,
        )
        .await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.code(), "invalid_cursor");
    let too_big = app
        .get(
            &format!("/api/v1/workspaces/{ws}/documents?limit=1000"),
            &alice.token,
        )
        .await;
    assert_eq!(too_big.status, 422);
    assert_eq!(too_big.body["errors"][0]["field"], "limit");
}

async fn comment_threads_mentions_and_resolution(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let stranger = app.register("stranger").await;
    let ws = app.create_workspace(&alice, "Talk").await;
    app.add_member(ws, &alice, &bob, "editor").await;
    let doc = app.create_document(ws, &alice, "Agenda").await;

    let body = format!(
        "@{} please check; cc @{} and @{}.",
        bob.email.to_uppercase(),
        alice.email,
        stranger.email
    );
    let root = app
        .post(
            &format!("/api/v1/documents/{doc}/comments"),
            &alice.token,
            json!({"body": body}),
        )
        .await;
    assert_eq!(root.status, 201, "{:?}", root.body);
    let mut expected = vec![alice.id, bob.id];
    expected.sort();
    assert_eq!(
        root.body["mentions"],
        json!(expected),
        "non-members are not mentionable"
    );
    let root_id = root.body["id"].as_i64().unwrap();

    let reply = app
        .post(
            &format!("/api/v1/documents/{doc}/comments"),
            &bob.token,
            json!({"body": "done", "parent_id": root_id}),
        )
        .await;
    assert_eq!(reply.status, 201);
    assert_eq!(reply.body["parent_id"], root_id);

    let resolved = app
        .patch(
            &format!("/api/v1/comments/{root_id}"),
            &bob.token,
            json!({"resolved": true}),
        )
        .await;
    assert_eq!(resolved.status, 200);
    assert_eq!(resolved.body["resolved"], true);
    assert_eq!(resolved.body["resolved_by"], bob.id);

    let open = app
        .get(
            &format!("/api/v1/documents/{doc}/comments?resolved=false"),
            &alice.token,
        )
        .await;
    let open_ids: Vec<i64> = open.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_i64().unwrap())
        .collect();
    assert_eq!(open_ids, vec![reply.body["id"].as_i64().unwrap()]);

    let reopened = app
        .patch(
            &format!("/api/v1/comments/{root_id}"),
            &alice.token,
            json!({"resolved": false}),
        )
        .await;
    assert_eq!(reopened.body["resolved"], false);
    assert_eq!(reopened.body["resolved_at"], json!(null));

    // Deleting the root removes the thread.
    assert_eq!(
        app.delete(&format!("/api/v1/comments/{root_id}"), &alice.token)
            .await
            .status,
        204
    );
    let rest = app
        .get(&format!("/api/v1/documents/{doc}/comments"), &alice.token)
        .await;
    assert_eq!(rest.body["items"], json!([]));

    let kinds: Vec<String> = app
        .all_events(ws, &alice)
        .await
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        kinds,
        [
            "workspace.created",
            "member.added",
            "document.created",
            "comment.created",
            "comment.created",
            "comment.resolved",
            "comment.unresolved",
            "comment.deleted"
        ]
    );
}
