//! Sessions that end before their tokens expire: a logout ends that login's access tokens
//! and closes its sockets; a password change (current password required) ends every other
//! login. What the session end names is refused at once, what it does not goes on.

use serde_json::json;

use crate::helpers::{spawn_app, Backend, TestApp};
use crate::ws::Ws;

crate::on_every_backend!(
    a_logout_ends_that_login_and_closes_its_sockets,
    a_password_change_ends_every_other_login
);

/// Signs in again: another login (session) of the same account; its access and refresh
/// tokens.
async fn sign_in(app: &TestApp, email: &str, password: &str) -> (String, String) {
    let r = app
        .call(
            awc::http::Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"email": email, "password": password})),
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    (
        r.body["access_token"].as_str().expect("access").into(),
        r.body["refresh_token"].as_str().expect("refresh").into(),
    )
}

async fn refresh_status(app: &TestApp, refresh: &str) -> u16 {
    app.call(
        awc::http::Method::POST,
        "/api/v1/auth/refresh",
        None,
        Some(json!({"refresh_token": refresh})),
        &[],
    )
    .await
    .status
}

async fn a_logout_ends_that_login_and_closes_its_sockets(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let alice = app.register("alice").await;
    let (laptop, laptop_refresh) = sign_in(&app, &alice.email, "correct horse battery").await;
    let topic = format!("user:{}", alice.id);
    let mut on_phone = Ws::connect(&app, &alice.token).await;
    on_phone.join_ok(&topic, json!({})).await;
    let mut on_laptop = Ws::connect(&app, &laptop).await;
    on_laptop.join_ok(&topic, json!({})).await;

    // The laptop signs out.
    let r = app
        .call(
            awc::http::Method::POST,
            "/api/v1/auth/logout",
            None,
            Some(json!({"refresh_token": laptop_refresh})),
            &[],
        )
        .await;
    assert_eq!(r.status, 204);
    // Its socket is closed with the reason, its access token refused from now on...
    let reason = on_laptop.until_closed().await.expect("a close reason");
    assert_eq!(u16::from(reason.code), 1008);
    assert_eq!(reason.description.as_deref(), Some("logged_out"));
    let refused = app.get("/api/v1/me", &laptop).await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.code(), "session_ended");
    let upgrade = Ws::try_connect(
        &app,
        &format!("/socket/websocket?vsn=2.0.0&token={laptop}"),
        &[],
    )
    .await;
    assert_eq!(
        upgrade.err(),
        Some(401),
        "a socket with the ended token is refused"
    );
    assert_eq!(refresh_status(&app, &laptop_refresh).await, 401);
    // ...while the phone's login goes on.
    assert_eq!(app.get("/api/v1/me", &alice.token).await.status, 200);
    on_phone.sync().await;
    assert_eq!(refresh_status(&app, &alice.refresh).await, 200);
}

async fn a_password_change_ends_every_other_login(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let alice = app.register("alice").await;
    let old = "correct horse battery";
    let (other, other_refresh) = sign_in(&app, &alice.email, old).await;
    let mut elsewhere = Ws::connect(&app, &other).await;
    elsewhere
        .join_ok(&format!("user:{}", alice.id), json!({}))
        .await;
    let mut here = Ws::connect(&app, &alice.token).await;
    here.join_ok(&format!("user:{}", alice.id), json!({})).await;

    let change = |current: &'static str, new: &'static str| {
        let app = &app;
        let token = alice.token.clone();
        async move {
            app.post(
                "/api/v1/me/password",
                &token,
                json!({"current_password": current, "new_password": new}),
            )
            .await
        }
    };
    // The current password is required, and the new one must be a password.
    let wrong = change("not my password", "a brand new secret").await;
    assert_eq!(wrong.status, 403, "{:?}", wrong.body);
    assert_eq!(change(old, "short").await.status, 422);
    assert_eq!(
        app.get("/api/v1/me", &other).await.status,
        200,
        "nothing ended yet"
    );

    let r = change(old, "a brand new secret").await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    // Every other login ends: its socket closes, its tokens are refused.
    let reason = elsewhere.until_closed().await.expect("a close reason");
    assert_eq!(reason.description.as_deref(), Some("password_changed"));
    assert_eq!(app.get("/api/v1/me", &other).await.status, 401);
    assert_eq!(refresh_status(&app, &other_refresh).await, 401);
    // The login that changed it goes on, socket and tokens.
    assert_eq!(app.get("/api/v1/me", &alice.token).await.status, 200);
    here.sync().await;
    assert_eq!(refresh_status(&app, &alice.refresh).await, 200);
    // The old password no longer signs in; the new one does, and its tokens are good.
    let r = app
        .call(
            awc::http::Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"email": alice.email, "password": old})),
            &[],
        )
        .await;
    assert_eq!(r.status, 401);
    let (fresh, _) = sign_in(&app, &alice.email, "a brand new secret").await;
    assert_eq!(app.get("/api/v1/me", &fresh).await.status, 200);
}
