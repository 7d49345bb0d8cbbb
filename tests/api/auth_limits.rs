//! The authentication endpoints under pressure: floods of made-up tokens, more password
//! checks than the machine can run at once, and clients lying about their address.

use awc::http::Method;
use futures_util::future::join_all;
use serde_json::json;
use sqlx::{Connection, Executor};

use crate::helpers::{spawn_app_with, Backend, TestApp};

async fn post(
    app: &TestApp,
    path: &str,
    body: serde_json::Value,
    headers: &[(&str, &str)],
) -> crate::helpers::Resp {
    app.call(Method::POST, path, None, Some(body), headers)
        .await
}

#[actix_web::test]
async fn made_up_refresh_tokens_never_wait_for_the_writer() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.auth.token_requests_per_minute = 10_000
    })
    .await
    .expect("sqlite");
    // Another process holds SQLite's write lock: anything that needs the writer now waits
    // (and, past the busy timeout, fails).
    let mut holder = sqlx::SqliteConnection::connect(&app.db_url).await.unwrap();
    holder.execute("BEGIN IMMEDIATE").await.unwrap();
    let refreshes = (0..20).map(|i| {
        post(
            &app,
            "/api/v1/auth/refresh",
            json!({"refresh_token": format!("made-up-{i}")}),
            &[],
        )
    });
    let logouts = (0..20).map(|i| {
        post(
            &app,
            "/api/v1/auth/logout",
            json!({"refresh_token": format!("made-up-{i}")}),
            &[],
        )
    });
    let (refreshed, logged_out) = tokio::join!(join_all(refreshes), join_all(logouts));
    // Answered from a reader while the lock is still held.
    assert!(
        refreshed.iter().all(|r| r.status == 401),
        "{:?}",
        refreshed[0]
    );
    assert!(
        logged_out.iter().all(|r| r.status == 204),
        "{:?}",
        logged_out[0]
    );
    holder.execute("ROLLBACK").await.unwrap();
    // And the writer is fine afterwards.
    app.register("alice").await;
}

#[actix_web::test]
async fn logins_beyond_the_hashing_capacity_are_told_to_retry() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.auth.password_hash_concurrency = 1;
        s.auth.password_hash_queue = 1;
        s.auth.password_hash_memory_kib = 16 * 1024;
        s.auth.password_hash_iterations = 2;
    })
    .await
    .expect("sqlite");
    let alice = app.register("alice").await;
    let attempts = (0..16).map(|_| {
        post(
            &app,
            "/api/v1/auth/login",
            json!({"email": alice.email, "password": "correct horse battery"}),
            &[],
        )
    });
    let answers = join_all(attempts).await;
    let ok = answers.iter().filter(|r| r.status == 200).count();
    let busy: Vec<_> = answers.iter().filter(|r| r.status == 503).collect();
    assert_eq!(
        ok + busy.len(),
        16,
        "{:?}",
        answers.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert!(ok >= 2, "one hashing and one waiting always complete: {ok}");
    assert!(!busy.is_empty(), "a full line is refused");
    for r in busy {
        assert_eq!(r.code(), "busy");
        assert_eq!(r.header("retry-after").as_deref(), Some("1"));
    }
    assert!(app.metric("stoa_password_hash_busy_total").await >= 1.0);
}

#[actix_web::test]
async fn the_client_address_is_read_from_the_right_past_trusted_proxies() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.auth.login_attempts_per_minute = 2;
        s.server.trusted_proxies = vec!["127.0.0.1".into()];
    })
    .await
    .expect("sqlite");
    let app = &app;
    let login = |n: usize, xff: &'static str| {
        let email = format!("nobody{n}@example.com");
        async move {
            post(
                app,
                "/api/v1/auth/login",
                json!({"email": email, "password": "wrong password"}),
                &[("x-forwarded-for", xff)],
            )
            .await
            .status
        }
    };
    // The proxy appended 1.1.1.1; what the client wrote to its left does not count.
    assert_eq!(login(1, "9.9.9.9, 1.1.1.1").await, 401);
    assert_eq!(login(2, "8.8.8.8, 1.1.1.1").await, 401);
    assert_eq!(login(3, "1.1.1.1").await, 429);
    assert_eq!(
        login(4, "2.2.2.2").await,
        401,
        "another client has its own allowance"
    );

    // Without trusted proxies the header is ignored: everyone is the peer.
    let app = spawn_app_with(Backend::Sqlite, |s| s.auth.login_attempts_per_minute = 2)
        .await
        .expect("sqlite");
    let mut statuses = Vec::new();
    for (n, xff) in ["1.1.1.1", "2.2.2.2", "3.3.3.3"].iter().enumerate() {
        let email = format!("nobody{n}@example.com");
        statuses.push(
            post(
                &app,
                "/api/v1/auth/login",
                json!({"email": email, "password": "wrong password"}),
                &[("x-forwarded-for", xff)],
            )
            .await
            .status,
        );
    }
    assert_eq!(statuses, vec![401, 401, 429]);
}

#[actix_web::test]
async fn the_login_limiter_keeps_only_bounded_keys() {
    let app = spawn_app_with(Backend::Sqlite, |_| {})
        .await
        .expect("sqlite");
    // Megabyte-sized and malformed "emails" are refused before anything is stored.
    let junk = "x".repeat(900_000);
    for body in [
        json!({"email": junk, "password": "p"}),
        json!({"email": format!("{junk}@example.com"), "password": "p"}),
        json!({"email": "no at sign", "password": "p"}),
    ] {
        let r = post(&app, "/api/v1/auth/login", body, &[]).await;
        assert_eq!(r.status, 401);
        assert_eq!(r.code(), "invalid_credentials");
    }
    assert_eq!(
        app.metric("stoa_auth_rate_limit_keys").await,
        1.0,
        "only the address"
    );
    for n in 0..5 {
        let email = format!("Someone{n}@Example.com");
        post(
            &app,
            "/api/v1/auth/login",
            json!({"email": email, "password": "p"}),
            &[],
        )
        .await;
    }
    // The address, and per account: this address's attempts at it, and the attempts at it
    // from every address it does not know.
    assert_eq!(app.metric("stoa_auth_rate_limit_keys").await, 11.0);
}

#[actix_web::test]
async fn a_stranger_cannot_lock_an_owner_out_and_spread_guessing_is_bounded() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.auth.login_attempts_per_minute = 3;
        s.auth.account_login_attempts_per_hour = 10;
        s.server.trusted_proxies = vec!["127.0.0.1".into()];
    })
    .await
    .expect("sqlite");
    let alice = app.register("alice").await;
    let login = |password: &'static str, from: String| {
        let app = &app;
        let email = alice.email.clone();
        async move {
            post(
                app,
                "/api/v1/auth/login",
                json!({"email": email, "password": password}),
                &[("x-forwarded-for", &from)],
            )
            .await
            .status
        }
    };
    let right = "correct horse battery";
    // Alice signs in from home: an address her account knows from now on.
    assert_eq!(login(right, "5.5.5.5".into()).await, 200);

    // A stranger at one address guesses until refused...
    let mut stranger = Vec::new();
    for _ in 0..5 {
        stranger.push(login("guess", "6.6.6.6".into()).await);
    }
    assert_eq!(stranger, [401, 401, 401, 429, 429]);
    // ...which stops neither Alice at home nor Alice somewhere new.
    assert_eq!(login(right, "5.5.5.5".into()).await, 200);
    assert_eq!(login(right, "7.7.7.7".into()).await, 200);

    // Guessing spread over many addresses (one attempt each) is bounded for the account:
    // 10 an hour from addresses it does not know, of which the stranger and the first sign-in
    // at 7.7.7.7 took 4 (and the first at home 1).
    let mut spread = Vec::new();
    for i in 0..20 {
        spread.push(login("guess", format!("10.0.{i}.1")).await);
    }
    let guessed = spread.iter().filter(|s| **s == 401).count();
    assert_eq!(guessed, 5, "{spread:?}");
    assert!(spread[guessed..].iter().all(|s| *s == 429), "{spread:?}");
    // The addresses Alice signed in from still let her in; a new one waits for the hour.
    assert_eq!(login(right, "5.5.5.5".into()).await, 200);
    assert_eq!(login(right, "7.7.7.7".into()).await, 200);
    assert_eq!(login(right, "8.8.8.8".into()).await, 429);
}

#[actix_web::test]
async fn each_user_has_an_allowance_of_requests_and_searches_cost_more() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.http.user_requests_per_sec = 1;
        s.http.user_request_burst = 20;
    })
    .await
    .expect("sqlite");
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let mut statuses = Vec::new();
    for _ in 0..22 {
        statuses.push(app.get("/api/v1/me", &alice.token).await.status);
    }
    let ok = statuses.iter().filter(|s| **s == 200).count();
    assert!((20..=21).contains(&ok), "{statuses:?}");
    let refused = app.get("/api/v1/me", &alice.token).await;
    assert_eq!(refused.status, 429);
    assert_eq!(refused.code(), "rate_limited");
    let retry: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    // Bob's allowance is his own.
    assert_eq!(app.get("/api/v1/me", &bob.token).await.status, 200);
    // A search costs ten: Bob's burst holds one more, not twenty.
    assert_eq!(
        app.get("/api/v1/search?q=plan", &bob.token).await.status,
        200
    );
    assert_eq!(
        app.get("/api/v1/search?q=plan", &bob.token).await.status,
        429
    );
    assert!(
        app.metric("stoa_rate_limited_total{limit=\"user_requests\"}")
            .await
            >= 2.0
    );
}

#[actix_web::test]
async fn a_prefix_search_needs_two_characters_before_the_star() {
    let app = spawn_app_with(Backend::Sqlite, |_| {})
        .await
        .expect("sqlite");
    let alice = app.register("alice").await;
    for q in ["a*", "road%20m*", "%C3%A9*"] {
        let r = app
            .get(&format!("/api/v1/search?q={q}"), &alice.token)
            .await;
        assert_eq!(r.status, 422, "{q}: {:?}", r.body);
        assert!(
            r.body.to_string().contains("at least 2 characters"),
            "{:?}",
            r.body
        );
    }
    let r = app.get("/api/v1/search?q=ro*", &alice.token).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}
