//! Accounts, login, tokens.

use awc::http::Method;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::json;
use stoa::auth::JwtKeys;
use stoa::domain::now_ms;

use crate::helpers::{spawn_app, spawn_app_with, Backend, TestApp, JWT_SECRET};

crate::on_every_backend!(
    register_login_and_me,
    emails_are_unique_case_insensitively,
    bad_credentials_are_refused_alike,
    login_is_rate_limited_with_retry_after,
    refresh_rotates_and_reuse_revokes_the_family,
    logout_revokes_the_refresh_token,
    two_tabs_refreshing_at_once_both_get_the_same_successor,
    refresh_and_logout_are_rate_limited_per_address,
    forged_expired_and_foreign_tokens_are_refused,
    registration_validates_every_field,
);

async fn login(app: &TestApp, email: &str, password: &str) -> crate::helpers::Resp {
    app.call(
        Method::POST,
        "/api/v1/auth/login",
        None,
        Some(json!({"email": email, "password": password})),
        &[],
    )
    .await
}

async fn refresh(app: &TestApp, token: &str) -> crate::helpers::Resp {
    app.call(
        Method::POST,
        "/api/v1/auth/refresh",
        None,
        Some(json!({"refresh_token": token})),
        &[],
    )
    .await
}

async fn register_login_and_me(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let alice = app.register("alice").await;
    let me = app.get("/api/v1/me", &alice.token).await;
    assert_eq!(me.status, 200);
    assert_eq!(me.body["id"], alice.id);
    assert_eq!(me.body["display_name"], "alice");
    assert!(me.body.get("password_hash").is_none());

    let res = login(&app, &alice.email.to_uppercase(), "correct horse battery").await;
    assert_eq!(res.status, 200, "{:?}", res.body);
    assert_eq!(res.body["token_type"], "Bearer");
    assert_eq!(res.body["expires_in"], 900);
    let token = res.body["access_token"].as_str().unwrap();
    assert_eq!(app.get("/api/v1/me", token).await.body["id"], alice.id);
}

async fn emails_are_unique_case_insensitively(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let alice = app.register("alice").await;
    let res = app
        .call(
            Method::POST,
            "/api/v1/auth/register",
            None,
            Some(json!({"email": alice.email.to_uppercase(), "password": "another password", "display_name": "Impostor"})),
            &[],
        )
        .await;
    assert_eq!(res.status, 409);
    assert_eq!(res.code(), "email_taken");
}

async fn bad_credentials_are_refused_alike(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let alice = app.register("alice").await;
    let wrong_password = login(&app, &alice.email, "wrong password!").await;
    let no_account = login(&app, "nobody@example.com", "wrong password!").await;
    for res in [&wrong_password, &no_account] {
        assert_eq!(res.status, 401);
        assert_eq!(res.code(), "invalid_credentials");
        assert_eq!(
            res.header("content-type").as_deref(),
            Some("application/problem+json")
        );
    }
    assert_eq!(wrong_password.body["detail"], no_account.body["detail"]);
}

async fn login_is_rate_limited_with_retry_after(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |s| s.auth.login_attempts_per_minute = 5).await else {
        return;
    };
    let alice = app.register("alice").await;
    for _ in 0..5 {
        assert_eq!(
            login(&app, &alice.email, "wrong password!").await.status,
            401
        );
    }
    // The sixth attempt within the minute is refused, even with the right password.
    let limited = login(&app, &alice.email, "correct horse battery").await;
    assert_eq!(limited.status, 429, "{:?}", limited.body);
    assert_eq!(limited.code(), "rate_limited");
    let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let metrics = crate::common::without_node(
        app.call(Method::GET, "/metrics", None, None, &[])
            .await
            .body
            .as_str()
            .unwrap_or_default(),
    );
    assert!(metrics.contains("stoa_rate_limited_total{limit=\"login\"}"));
}

async fn refresh_rotates_and_reuse_revokes_the_family(backend: Backend) {
    // No grace: any second presentation of a spent token is a replay.
    let Some(app) = spawn_app_with(backend, |s| s.auth.refresh_reuse_interval_secs = 0).await
    else {
        return;
    };
    let alice = app.register("alice").await;
    let first = refresh(&app, &alice.refresh).await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    let second_token = first.body["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(second_token, alice.refresh);
    let access = first.body["access_token"].as_str().unwrap();
    assert_eq!(app.get("/api/v1/me", access).await.status, 200);

    // The spent token comes back: someone replayed it. The whole family dies, including
    // the token the legitimate client holds now.
    let replay = refresh(&app, &alice.refresh).await;
    assert_eq!(replay.status, 401);
    assert_eq!(replay.code(), "refresh_token_reused");
    let legit = refresh(&app, &second_token).await;
    assert_eq!(legit.status, 401);

    // Another login is a new family and works.
    let res = login(&app, &alice.email, "correct horse battery").await;
    let fresh = res.body["refresh_token"].as_str().unwrap();
    assert_eq!(refresh(&app, fresh).await.status, 200);

    let unknown = refresh(&app, "not-a-token").await;
    assert_eq!(unknown.status, 401);
    assert_eq!(unknown.code(), "invalid_refresh_token");
}

async fn logout_revokes_the_refresh_token(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let alice = app.register("alice").await;
    let res = app
        .call(
            Method::POST,
            "/api/v1/auth/logout",
            None,
            Some(json!({"refresh_token": alice.refresh})),
            &[],
        )
        .await;
    assert_eq!(res.status, 204);
    assert_eq!(refresh(&app, &alice.refresh).await.status, 401);
}

async fn two_tabs_refreshing_at_once_both_get_the_same_successor(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let alice = app.register("alice").await;
    let (a, b) =
        futures_util::future::join(refresh(&app, &alice.refresh), refresh(&app, &alice.refresh))
            .await;
    assert_eq!(
        (a.status, b.status),
        (200, 200),
        "{:?} {:?}",
        a.body,
        b.body
    );
    let next = a.body["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(b.body["refresh_token"], next.as_str());
    // A retry after a lost response gets it too; the login lives on.
    assert_eq!(
        refresh(&app, &alice.refresh).await.body["refresh_token"],
        next.as_str()
    );
    let after = refresh(&app, &next).await;
    assert_eq!(after.status, 200, "{:?}", after.body);
    // Once the successor has been used, the first token is a replay after all.
    let replay = refresh(&app, &alice.refresh).await;
    assert_eq!(replay.code(), "refresh_token_reused");
    let latest = after.body["refresh_token"].as_str().unwrap();
    assert_eq!(refresh(&app, latest).await.status, 401);
}

async fn refresh_and_logout_are_rate_limited_per_address(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |s| s.auth.token_requests_per_minute = 3).await else {
        return;
    };
    let logout = |token: &str| {
        app.call(
            Method::POST,
            "/api/v1/auth/logout",
            None,
            Some(json!({"refresh_token": token})),
            &[],
        )
    };
    assert_eq!(refresh(&app, "made-up-1").await.status, 401);
    assert_eq!(refresh(&app, "made-up-2").await.status, 401);
    assert_eq!(logout("made-up-3").await.status, 204);
    for limited in [refresh(&app, "made-up-4").await, logout("made-up-5").await] {
        assert_eq!(limited.status, 429, "{:?}", limited.body);
        assert!(limited.header("retry-after").is_some());
    }
}

fn forge(header: serde_json::Value, claims: serde_json::Value, sig: &str) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        sig
    )
}

async fn forged_expired_and_foreign_tokens_are_refused(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let alice = app.register("alice").await;
    let now = now_ms() / 1000;
    let right = JwtKeys::new(JWT_SECRET.as_bytes().to_vec(), "stoa", "stoa", 900);
    let other_key = JwtKeys::new(
        b"some-other-secret-some-other-secret".to_vec(),
        "stoa",
        "stoa",
        900,
    );
    let other_aud = JwtKeys::new(JWT_SECRET.as_bytes().to_vec(), "stoa", "elsewhere", 900);
    let other_iss = JwtKeys::new(JWT_SECRET.as_bytes().to_vec(), "mallory", "stoa", 900);
    let claims = json!({"sub": alice.id.to_string(), "iss": "stoa", "aud": "stoa", "iat": now, "exp": now + 600});
    let cases = [
        (
            "expired",
            right.issue(alice.id, now - 3600, None).0,
            "token_expired",
        ),
        (
            "wrong key",
            other_key.issue(alice.id, now, None).0,
            "invalid_token",
        ),
        (
            "wrong audience",
            other_aud.issue(alice.id, now, None).0,
            "invalid_token",
        ),
        (
            "wrong issuer",
            other_iss.issue(alice.id, now, None).0,
            "invalid_token",
        ),
        (
            "alg none",
            forge(json!({"alg": "none", "typ": "JWT"}), claims.clone(), ""),
            "invalid_token",
        ),
        (
            "alg HS512",
            forge(json!({"alg": "HS512"}), claims.clone(), "AAAA"),
            "invalid_token",
        ),
        ("garbage", "not.a.jwt".to_string(), "invalid_token"),
    ];
    for (what, token, code) in cases {
        let res = app.get("/api/v1/me", &token).await;
        assert_eq!(res.status, 401, "{what}: {:?}", res.body);
        assert_eq!(res.code(), code, "{what}");
        assert!(res
            .header("www-authenticate")
            .unwrap()
            .starts_with("Bearer"));
    }
    // The right key, fresh: accepted. (Guards the cases above against passing for a
    // wrong reason.)
    assert_eq!(
        app.get("/api/v1/me", &right.issue(alice.id, now, None).0)
            .await
            .status,
        200
    );
    let none = app.call(Method::GET, "/api/v1/me", None, None, &[]).await;
    assert_eq!(none.status, 401);
    assert_eq!(none.code(), "missing_token");
}

async fn registration_validates_every_field(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let res = app
        .call(
            Method::POST,
            "/api/v1/auth/register",
            None,
            Some(json!({"email": "not-an-email", "password": "short", "display_name": "  "})),
            &[],
        )
        .await;
    assert_eq!(res.status, 422);
    assert_eq!(res.code(), "validation_failed");
    let fields: Vec<&str> = res.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["email", "password", "display_name"]);
}
