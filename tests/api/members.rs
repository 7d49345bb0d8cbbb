//! Membership rules: owners, admins, leaving.

use serde_json::json;

use crate::helpers::{spawn_app, Backend};

crate::on_every_backend!(the_last_owner_stays, members_can_leave_and_be_listed);

async fn the_last_owner_stays(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let ws = app.create_workspace(&alice, "Owned").await;
    let me = format!("/api/v1/workspaces/{ws}/members/{}", alice.id);

    let leave = app.delete(&me, &alice.token).await;
    assert_eq!(leave.status, 409);
    assert_eq!(leave.code(), "last_owner");
    let demote = app.patch(&me, &alice.token, json!({"role": "admin"})).await;
    assert_eq!(demote.status, 409);
    assert_eq!(demote.code(), "last_owner");

    // With a second owner, the first may step down.
    app.add_member(ws, &alice, &bob, "owner").await;
    let demote = app.patch(&me, &alice.token, json!({"role": "admin"})).await;
    assert_eq!(demote.status, 200, "{:?}", demote.body);
    assert_eq!(demote.body["role"], "admin");
    // Now an admin, alice cannot touch bob the owner.
    let bob_path = format!("/api/v1/workspaces/{ws}/members/{}", bob.id);
    assert_eq!(
        app.patch(&bob_path, &alice.token, json!({"role": "viewer"}))
            .await
            .status,
        403
    );
    assert_eq!(app.delete(&bob_path, &alice.token).await.status, 403);
    assert_eq!(app.delete(&bob_path, &bob.token).await.code(), "last_owner");
    let invalid = app
        .patch(&bob_path, &bob.token, json!({"role": "boss"}))
        .await;
    assert_eq!(invalid.status, 422);
    assert_eq!(invalid.body["errors"][0]["field"], "role");
}

async fn members_can_leave_and_be_listed(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    let ws = app.create_workspace(&alice, "Team").await;
    app.add_member(ws, &alice, &bob, "viewer").await;
    let again = app
        .post(
            &format!("/api/v1/workspaces/{ws}/members"),
            &alice.token,
            json!({"user_id": bob.id, "role": "editor"}),
        )
        .await;
    assert_eq!(again.status, 409);
    assert_eq!(again.code(), "already_member");
    let nobody = app
        .post(
            &format!("/api/v1/workspaces/{ws}/members"),
            &alice.token,
            json!({"email": "ghost@example.com", "role": "editor"}),
        )
        .await;
    // The workspace exists; no account has the address: it is invited instead.
    assert_eq!(nobody.status, 202);
    assert_eq!(nobody.body["email"], "ghost@example.com");
    assert_eq!(nobody.body["role"], "editor");
    let ghost = app
        .post(
            &format!("/api/v1/workspaces/{ws}/members"),
            &alice.token,
            json!({"user_id": 999_999, "role": "editor"}),
        )
        .await;
    // By id, there is nobody to invite.
    assert_eq!(ghost.status, 409);
    assert_eq!(ghost.code(), "unknown_user");
    let both = app
        .post(
            &format!("/api/v1/workspaces/{ws}/members"),
            &alice.token,
            json!({"email": carol.email, "user_id": carol.id, "role": "editor"}),
        )
        .await;
    assert_eq!(both.status, 422);
    app.add_member(ws, &alice, &carol, "editor").await;

    let list = app
        .get(
            &format!("/api/v1/workspaces/{ws}/members?limit=2"),
            &bob.token,
        )
        .await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 2);
    let next = list.body["next_cursor"].as_str().unwrap();
    let rest = app
        .get(
            &format!("/api/v1/workspaces/{ws}/members?limit=2&cursor={next}"),
            &bob.token,
        )
        .await;
    assert_eq!(rest.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(rest.body["next_cursor"], json!(null));

    // Bob leaves; the workspace disappears for him.
    assert_eq!(
        app.delete(
            &format!("/api/v1/workspaces/{ws}/members/{}", bob.id),
            &bob.token
        )
        .await
        .status,
        204
    );
    assert_eq!(
        app.get(&format!("/api/v1/workspaces/{ws}"), &bob.token)
            .await
            .status,
        404
    );
    let mine = app.get("/api/v1/workspaces", &bob.token).await;
    assert_eq!(mine.body["items"], json!([]));
}
