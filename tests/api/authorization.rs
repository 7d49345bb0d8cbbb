//! The role × action matrix, and isolation between workspaces.

use serde_json::json;

use crate::helpers::{spawn_app, Account, Backend, TestApp};

crate::on_every_backend!(role_action_matrix, other_workspaces_are_invisible);

#[derive(Debug, Clone, Copy)]
enum Action {
    ReadWorkspace,
    UpdateWorkspace,
    ListMembers,
    ReadMember,
    AddViewer,
    AddOwner,
    ChangeViewerRole,
    DemoteOwner,
    RemoveViewer,
    CreateDocument,
    ListDocuments,
    ReadDocument,
    UpdateDocument,
    DeleteDocument,
    CreateComment,
    ListComments,
    ReadComment,
    ResolveComment,
    EditOwnersComment,
    DeleteOwnersComment,
    ReadEvents,
    DeleteWorkspace,
}

struct Fixture {
    ws: i64,
    doc: i64,
    comment: i64,
    owner: Account,
}

/// Performs `action` as `actor`, preparing whatever it consumes with the owner's rights.
async fn attempt(app: &TestApp, fx: &Fixture, action: Action, actor: &Account) -> u16 {
    let ws = fx.ws;
    let t = actor.token.as_str();
    use Action::*;
    let res = match action {
        ReadWorkspace => app.get(&format!("/api/v1/workspaces/{ws}"), t).await,
        UpdateWorkspace => {
            app.patch(
                &format!("/api/v1/workspaces/{ws}"),
                t,
                json!({"name": "Renamed"}),
            )
            .await
        }
        ListMembers => {
            app.get(&format!("/api/v1/workspaces/{ws}/members"), t)
                .await
        }
        ReadMember => {
            app.get(
                &format!("/api/v1/workspaces/{ws}/members/{}", fx.owner.id),
                t,
            )
            .await
        }
        AddViewer | AddOwner => {
            let newcomer = app.register("newcomer").await;
            let role = if matches!(action, AddOwner) {
                "owner"
            } else {
                "viewer"
            };
            app.post(
                &format!("/api/v1/workspaces/{ws}/members"),
                t,
                json!({"email": newcomer.email, "role": role}),
            )
            .await
        }
        ChangeViewerRole | DemoteOwner | RemoveViewer => {
            let target = app.register("target").await;
            let role = if matches!(action, DemoteOwner) {
                "owner"
            } else {
                "viewer"
            };
            app.add_member(ws, &fx.owner, &target, role).await;
            let path = format!("/api/v1/workspaces/{ws}/members/{}", target.id);
            match action {
                RemoveViewer => app.delete(&path, t).await,
                DemoteOwner => app.patch(&path, t, json!({"role": "admin"})).await,
                _ => app.patch(&path, t, json!({"role": "editor"})).await,
            }
        }
        CreateDocument => {
            app.post(
                &format!("/api/v1/workspaces/{ws}/documents"),
                t,
                json!({"title": "New"}),
            )
            .await
        }
        ListDocuments => {
            app.get(&format!("/api/v1/workspaces/{ws}/documents"), t)
                .await
        }
        ReadDocument => app.get(&format!("/api/v1/documents/{}", fx.doc), t).await,
        UpdateDocument => {
            app.patch(
                &format!("/api/v1/documents/{}", fx.doc),
                t,
                json!({"content": "changed"}),
            )
            .await
        }
        DeleteDocument => {
            let doc = app.create_document(ws, &fx.owner, "Doomed").await;
            app.delete(&format!("/api/v1/documents/{doc}"), t).await
        }
        CreateComment => {
            app.post(
                &format!("/api/v1/documents/{}/comments", fx.doc),
                t,
                json!({"body": "hello"}),
            )
            .await
        }
        ListComments => {
            app.get(&format!("/api/v1/documents/{}/comments", fx.doc), t)
                .await
        }
        ReadComment => {
            app.get(&format!("/api/v1/comments/{}", fx.comment), t)
                .await
        }
        ResolveComment => {
            let c = app.create_comment(fx.doc, &fx.owner, "resolve me").await;
            app.patch(
                &format!("/api/v1/comments/{c}"),
                t,
                json!({"resolved": true}),
            )
            .await
        }
        EditOwnersComment => {
            let c = app
                .create_comment(fx.doc, &fx.owner, "the owner's words")
                .await;
            app.patch(
                &format!("/api/v1/comments/{c}"),
                t,
                json!({"body": "rewritten"}),
            )
            .await
        }
        DeleteOwnersComment => {
            let c = app.create_comment(fx.doc, &fx.owner, "delete me").await;
            app.delete(&format!("/api/v1/comments/{c}"), t).await
        }
        ReadEvents => app.get(&format!("/api/v1/workspaces/{ws}/events"), t).await,
        DeleteWorkspace => app.delete(&format!("/api/v1/workspaces/{ws}"), t).await,
    };
    if res.status >= 400 {
        assert_eq!(
            res.header("content-type").as_deref(),
            Some("application/problem+json"),
            "{action:?}"
        );
    }
    res.status
}

async fn role_action_matrix(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let owner = app.register("owner").await;
    let admin = app.register("admin").await;
    let editor = app.register("editor").await;
    let viewer = app.register("viewer").await;
    let outsider = app.register("outsider").await;
    let ws = app.create_workspace(&owner, "Matrix").await;
    app.add_member(ws, &owner, &admin, "admin").await;
    app.add_member(ws, &owner, &editor, "editor").await;
    app.add_member(ws, &owner, &viewer, "viewer").await;
    let doc = app.create_document(ws, &owner, "Spec").await;
    let comment = app.create_comment(doc, &owner, "first").await;
    let fx = Fixture {
        ws,
        doc,
        comment,
        owner: owner.clone(),
    };

    use Action::*;
    // Expected status for: outsider, viewer, editor, admin, owner (in that order, so the
    // owner's successful deletion of the workspace comes last).
    let matrix: &[(Action, [u16; 5])] = &[
        (ReadWorkspace, [404, 200, 200, 200, 200]),
        (UpdateWorkspace, [404, 403, 403, 200, 200]),
        (ListMembers, [404, 200, 200, 200, 200]),
        (ReadMember, [404, 200, 200, 200, 200]),
        (AddViewer, [404, 403, 403, 201, 201]),
        (AddOwner, [404, 403, 403, 403, 201]),
        (ChangeViewerRole, [404, 403, 403, 200, 200]),
        (DemoteOwner, [404, 403, 403, 403, 200]),
        (RemoveViewer, [404, 403, 403, 204, 204]),
        (CreateDocument, [404, 403, 201, 201, 201]),
        (ListDocuments, [404, 200, 200, 200, 200]),
        (ReadDocument, [404, 200, 200, 200, 200]),
        (UpdateDocument, [404, 403, 200, 200, 200]),
        (DeleteDocument, [404, 403, 204, 204, 204]),
        (CreateComment, [404, 403, 201, 201, 201]),
        (ListComments, [404, 200, 200, 200, 200]),
        (ReadComment, [404, 200, 200, 200, 200]),
        (ResolveComment, [404, 403, 200, 200, 200]),
        (EditOwnersComment, [404, 403, 403, 403, 200]),
        (DeleteOwnersComment, [404, 403, 403, 204, 204]),
        (ReadEvents, [404, 200, 200, 200, 200]),
        (DeleteWorkspace, [404, 403, 403, 403, 204]),
    ];
    let actors = [&outsider, &viewer, &editor, &admin, &owner];
    let names = ["outsider", "viewer", "editor", "admin", "owner"];
    let mut failures = Vec::new();
    for (action, expected) in matrix {
        for (i, actor) in actors.iter().enumerate() {
            let got = attempt(&app, &fx, *action, actor).await;
            if got != expected[i] {
                failures.push(format!(
                    "{action:?} as {}: expected {}, got {got}",
                    names[i], expected[i]
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The workspace is gone for everyone, owner included.
    assert_eq!(
        app.get(&format!("/api/v1/workspaces/{ws}"), &owner.token)
            .await
            .status,
        404
    );
    assert_eq!(
        app.get(&format!("/api/v1/documents/{doc}"), &owner.token)
            .await
            .status,
        404
    );
}

async fn other_workspaces_are_invisible(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let ws_a = app.create_workspace(&alice, "Alice's").await;
    let ws_b = app.create_workspace(&bob, "Bob's").await;
    let doc_b = app.create_document(ws_b, &bob, "Secret").await;
    let comment_b = app.create_comment(doc_b, &bob, "classified").await;
    let doc_a = app.create_document(ws_a, &alice, "Mine").await;

    // Alice owns a workspace, but nothing of Bob's exists for her: 404, never 403.
    let probes = [
        format!("/api/v1/workspaces/{ws_b}"),
        format!("/api/v1/workspaces/{ws_b}/members"),
        format!("/api/v1/workspaces/{ws_b}/documents"),
        format!("/api/v1/workspaces/{ws_b}/events"),
        format!("/api/v1/documents/{doc_b}"),
        format!("/api/v1/documents/{doc_b}/comments"),
        format!("/api/v1/comments/{comment_b}"),
        "/api/v1/workspaces/999999".to_string(),
        "/api/v1/documents/999999".to_string(),
    ];
    for path in &probes {
        let res = app.get(path, &alice.token).await;
        assert_eq!(res.status, 404, "GET {path}: {:?}", res.body);
        assert_eq!(res.code(), "not_found");
    }
    let writes = [
        app.patch(
            &format!("/api/v1/documents/{doc_b}"),
            &alice.token,
            json!({"title": "x"}),
        )
        .await,
        app.delete(&format!("/api/v1/documents/{doc_b}"), &alice.token)
            .await,
        app.post(
            &format!("/api/v1/documents/{doc_b}/comments"),
            &alice.token,
            json!({"body": "x"}),
        )
        .await,
        app.patch(
            &format!("/api/v1/comments/{comment_b}"),
            &alice.token,
            json!({"resolved": true}),
        )
        .await,
        app.post(
            &format!("/api/v1/workspaces/{ws_b}/members"),
            &alice.token,
            json!({"user_id": alice.id, "role": "owner"}),
        )
        .await,
    ];
    for res in &writes {
        assert_eq!(res.status, 404, "{:?}", res.body);
    }
    // A reply cannot hang off a comment from another workspace's document.
    let res = app
        .post(
            &format!("/api/v1/documents/{doc_a}/comments"),
            &alice.token,
            json!({"body": "reply", "parent_id": comment_b}),
        )
        .await;
    assert_eq!(res.status, 409);
    assert_eq!(res.code(), "invalid_parent");
    // Bob's data is untouched, and Alice's list shows only her workspace.
    let doc = app
        .get(&format!("/api/v1/documents/{doc_b}"), &bob.token)
        .await;
    assert_eq!(doc.body["title"], "Secret");
    assert_eq!(doc.body["version"], 1);
    let list = app.get("/api/v1/workspaces", &alice.token).await;
    let ids: Vec<i64> = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![ws_a]);
    let events = app.all_events(ws_b, &bob).await;
    assert_eq!(events.len(), 3, "only Bob's own three changes are logged");
}
