//! API tokens for services: shown once, kept as a digest, scoped (`read` ⊂ `write` ⊂
//! `admin`, optionally one workspace), expiring, revocable at once; checked against every
//! route group of the REST API, and on the socket.

use awc::http::Method;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, Account, Backend, TestApp};
use crate::ws::Ws;

crate::on_every_backend!(
    every_route_group_answers_each_scope_as_documented,
    tokens_are_shown_once_expire_and_are_revoked_at_once
);

async fn make(app: &TestApp, owner: &Account, body: Value) -> (String, Value) {
    let r = app.post("/api/v1/me/api-tokens", &owner.token, body).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    (
        r.body["token"].as_str().unwrap().to_string(),
        r.body.clone(),
    )
}

async fn every_route_group_answers_each_scope_as_documented(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let ada = app.register("ada").await;
    let bob = app.register("bob").await;
    let ws = app.create_workspace(&ada, "Scoped").await;
    let other = app.create_workspace(&ada, "Elsewhere").await;
    app.add_member(ws, &ada, &bob, "viewer").await;
    let doc = app.create_document(ws, &ada, "Plan").await;
    let far = app.create_document(other, &ada, "Far").await;
    let comment = app.create_comment(doc, &ada, "a remark").await;
    let (read, _) = make(&app, &ada, json!({"name": "reader", "scopes": ["read"]})).await;
    let (write, _) = make(&app, &ada, json!({"name": "writer", "scopes": ["write"]})).await;
    let (admin, _) = make(&app, &ada, json!({"name": "admin", "scopes": ["admin"]})).await;
    let (only, _) = make(
        &app,
        &ada,
        json!({"name": "one workspace", "scopes": ["admin"], "workspace_id": ws}),
    )
    .await;

    // (method, path, body, the scope it needs; None: never an API token's).
    let ws_path = format!("/api/v1/workspaces/{ws}");
    let routes: Vec<(Method, String, Option<Value>, Option<&str>)> = vec![
        (Method::GET, "/api/v1/workspaces".into(), None, Some("read")),
        (Method::GET, ws_path.clone(), None, Some("read")),
        (
            Method::PATCH,
            ws_path.clone(),
            Some(json!({"name": "Scoped!"})),
            Some("admin"),
        ),
        (
            Method::GET,
            format!("{ws_path}/members"),
            None,
            Some("read"),
        ),
        (
            Method::PATCH,
            format!("{ws_path}/members/{}", bob.id),
            Some(json!({"role": "editor"})),
            Some("admin"),
        ),
        (
            Method::GET,
            format!("{ws_path}/invitations"),
            None,
            Some("admin"),
        ),
        (
            Method::DELETE,
            format!("{ws_path}/sso"),
            None,
            Some("admin"),
        ),
        (
            Method::GET,
            format!("{ws_path}/documents"),
            None,
            Some("read"),
        ),
        (
            Method::POST,
            format!("{ws_path}/documents"),
            Some(json!({"title": "By a script"})),
            Some("write"),
        ),
        (
            Method::GET,
            format!("/api/v1/documents/{doc}"),
            None,
            Some("read"),
        ),
        (
            Method::PATCH,
            format!("/api/v1/documents/{doc}"),
            Some(json!({"title": "Plan B"})),
            Some("write"),
        ),
        (
            Method::GET,
            format!("/api/v1/documents/{doc}/comments"),
            None,
            Some("read"),
        ),
        (
            Method::POST,
            format!("/api/v1/documents/{doc}/comments"),
            Some(json!({"body": "from a script"})),
            Some("write"),
        ),
        (
            Method::GET,
            format!("/api/v1/comments/{comment}"),
            None,
            Some("read"),
        ),
        (Method::GET, format!("{ws_path}/events"), None, Some("read")),
        (
            Method::GET,
            format!("{ws_path}/search?q=plan"),
            None,
            Some("read"),
        ),
        (
            Method::GET,
            format!("{ws_path}/reports/overview"),
            None,
            Some("admin"),
        ),
        (
            Method::GET,
            "/api/v1/notifications".into(),
            None,
            Some("read"),
        ),
        (
            Method::POST,
            "/api/v1/notifications/read-all".into(),
            None,
            Some("write"),
        ),
        (Method::GET, "/api/v1/me".into(), None, Some("read")),
        (Method::GET, "/api/v1/me/export".into(), None, Some("read")),
        (
            Method::PATCH,
            "/api/v1/me".into(),
            Some(json!({"display_name": "X"})),
            None,
        ),
        (
            Method::POST,
            "/api/v1/me/password".into(),
            Some(
                json!({"current_password": "correct horse battery", "new_password": "hijacked!!"}),
            ),
            None,
        ),
        (Method::GET, "/api/v1/me/api-tokens".into(), None, None),
        (
            Method::POST,
            "/api/v1/me/api-tokens".into(),
            Some(json!({"name": "more", "scopes": ["admin"]})),
            None,
        ),
    ];
    let rank = |s: &str| {
        ["read", "write", "admin"]
            .iter()
            .position(|x| *x == s)
            .unwrap()
    };
    for (token, held) in [(&read, "read"), (&write, "write"), (&admin, "admin")] {
        for (method, path, body, need) in &routes {
            let r = app
                .call(method.clone(), path, Some(token), body.clone(), &[])
                .await;
            let allowed = need.is_some_and(|n| rank(n) <= rank(held));
            if allowed {
                assert!(
                    r.status < 400,
                    "{held} token, {method} {path}: {} {:?}",
                    r.status,
                    r.body
                );
            } else {
                assert_eq!(r.status, 403, "{held} token, {method} {path}: {:?}", r.body);
                assert_eq!(r.code(), "insufficient_scope", "{method} {path}");
            }
        }
    }
    // A workspace token reaches its workspace, and nothing else.
    for path in [
        format!("/api/v1/workspaces/{other}"),
        format!("/api/v1/documents/{far}"),
        "/api/v1/workspaces".to_string(),
        "/api/v1/search?q=plan".to_string(),
        "/api/v1/notifications".to_string(),
    ] {
        let r = app.get(&path, &only).await;
        assert_eq!(r.status, 403, "{path}: {:?}", r.body);
        assert_eq!(r.code(), "insufficient_scope");
    }
    for path in [
        ws_path.clone(),
        format!("/api/v1/documents/{doc}"),
        format!("/api/v1/comments/{comment}"),
        format!("{ws_path}/reports/overview"),
        "/api/v1/me".to_string(),
    ] {
        let r = app.get(&path, &only).await;
        assert_eq!(r.status, 200, "{path}: {:?}", r.body);
    }
    // A token acts as its owner: no more than the owner's role. Carol is a viewer.
    let carol = app.register("carol").await;
    app.add_member(ws, &ada, &carol, "viewer").await;
    let (bobs, _) = make(
        &app,
        &carol,
        json!({"name": "carol's", "scopes": ["admin"]}),
    )
    .await;
    let r = app
        .post(
            &format!("{ws_path}/documents"),
            &bobs,
            json!({"title": "not a viewer's"}),
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.code(), "forbidden");
    // Sockets: only a token that may write everywhere opens one.
    for token in [&read, &only] {
        let r = app
            .call(
                Method::GET,
                &format!("/socket/websocket?vsn=2.0.0&token={token}"),
                None,
                None,
                &[
                    ("connection", "upgrade"),
                    ("upgrade", "websocket"),
                    ("sec-websocket-version", "13"),
                    ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
                ],
            )
            .await;
        assert_eq!(r.status, 403, "{:?}", r.body);
    }
    let mut socket = Ws::connect(&app, &write).await;
    socket.join_ok(&format!("workspace:{ws}"), json!({})).await;
}

async fn tokens_are_shown_once_expire_and_are_revoked_at_once(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let ada = app.register("ada").await;
    let ws = app.create_workspace(&ada, "Tokens").await;
    let (token, made) = make(
        &app,
        &ada,
        json!({"name": "ci", "scopes": ["write"], "expires_in_days": 30}),
    )
    .await;
    assert!(token.starts_with("stoa_"));
    assert!(made["expires_at"].is_string());
    // Listed without its secret; stored as a digest only.
    let list = app.get("/api/v1/me/api-tokens", &ada.token).await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);
    assert!(!list.body.to_string().contains(&token));
    {
        use stoa::store::Directory;
        let stored = app
            .store
            .api_token(&stoa::auth::token_digest(&token))
            .await
            .unwrap()
            .expect("kept by its digest");
        assert_eq!(stored.name, "ci");
    }
    assert_eq!(
        app.get(&format!("/api/v1/workspaces/{ws}"), &token)
            .await
            .status,
        200
    );
    // Its use is recorded.
    let used = loop {
        let list = app.get("/api/v1/me/api-tokens", &ada.token).await;
        if list.body["items"][0]["last_used_at"].is_string() {
            break list;
        }
        actix_web::rt::task::yield_now().await;
    };
    assert!(used.body["items"][0]["last_used_at"].is_string());
    // Bad input.
    for bad in [
        json!({"name": "", "scopes": ["read"]}),
        json!({"name": "x", "scopes": []}),
        json!({"name": "x", "scopes": ["root"]}),
        json!({"name": "x", "scopes": ["read"], "expires_in_days": 0}),
    ] {
        let r = app
            .post("/api/v1/me/api-tokens", &ada.token, bad.clone())
            .await;
        assert_eq!(r.status, 422, "{bad}");
    }
    let stranger = app.register("stranger").await;
    let r = app
        .post(
            "/api/v1/me/api-tokens",
            &stranger.token,
            json!({"name": "x", "scopes": ["read"], "workspace_id": ws}),
        )
        .await;
    assert_eq!(r.status, 404, "not a workspace of theirs");
    for forged in ["stoa_forged", "stoa_", &format!("{token}x")] {
        assert_eq!(app.get("/api/v1/me", forged).await.status, 401);
    }
    // Revoked: refused at once, and its socket closes.
    let mut socket = Ws::connect(&app, &token).await;
    socket.join_ok(&format!("workspace:{ws}"), json!({})).await;
    let id = made["id"].as_i64().unwrap();
    let r = app
        .delete(&format!("/api/v1/me/api-tokens/{id}"), &ada.token)
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(app.get("/api/v1/me", &token).await.status, 401);
    let reason = socket.until_closed().await.expect("a close reason");
    assert_eq!(reason.description.as_deref(), Some("token_revoked"));
    assert_eq!(
        app.delete(&format!("/api/v1/me/api-tokens/{id}"), &ada.token)
            .await
            .status,
        404
    );
    // An expired token is refused as expired.
    {
        use stoa::store::Directory;
        let past = stoa::domain::now_ms() - 1000;
        app.store
            .create_api_token(
                Some(ada.id),
                None,
                "old",
                &stoa::auth::token_digest("stoa_expired-token"),
                &["read".to_string()],
                Some(past),
            )
            .await
            .unwrap();
    }
    let r = app.get("/api/v1/me", "stoa_expired-token").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.code(), "token_expired");
}
