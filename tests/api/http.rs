//! HTTP behaviour shared by every route: error format, limits, operations endpoints,
//! request ids, CORS and the OpenAPI document.

use awc::http::Method;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with, Backend, TestApp};

crate::on_every_backend!(
    bad_input_gets_problem_json_and_changes_nothing,
    operations_endpoints_answer,
);

async fn raw(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    let mut res = app
        .client
        .request(method, app.url(path))
        .insert_header(("authorization", format!("Bearer {token}")))
        .insert_header(("content-type", content_type))
        .send_body(body)
        .await
        .expect("sent");
    let status = res.status().as_u16();
    assert_eq!(
        res.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json"),
        "{path} -> {status}"
    );
    let body: Value = res.json().await.expect("problem body");
    (status, body)
}

async fn bad_input_gets_problem_json_and_changes_nothing(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |s| s.http.max_body_bytes = 64 * 1024).await else {
        return;
    };
    let alice = app.register("alice").await;
    let ws = app.create_workspace(&alice, "Strict").await;
    let docs = format!("/api/v1/workspaces/{ws}/documents");
    let t = alice.token.as_str();

    let huge =
        serde_json::to_vec(&json!({"title": "big", "content": "x".repeat(100 * 1024)})).unwrap();
    let (status, body) = raw(&app, Method::POST, &docs, t, "application/json", huge).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (413, Some("payload_too_large"))
    );

    let (status, body) = raw(
        &app,
        Method::POST,
        &docs,
        t,
        "application/json",
        b"{\"title\": ".to_vec(),
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_json")));

    let (status, body) = raw(
        &app,
        Method::POST,
        &docs,
        t,
        "text/plain",
        b"{\"title\":\"x\"}".to_vec(),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (415, Some("unsupported_media_type"))
    );

    let (status, body) = raw(
        &app,
        Method::POST,
        &docs,
        t,
        "application/json",
        b"{\"content\":\"no title\"}".to_vec(),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("validation_failed"))
    );
    assert_eq!(body["errors"][0]["field"], "title");

    let (status, body) = raw(
        &app,
        Method::POST,
        &docs,
        t,
        "application/json",
        b"{\"title\":[1,2]}".to_vec(),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(body["errors"][0]["field"], "title");

    let (status, body) = raw(
        &app,
        Method::POST,
        &docs,
        t,
        "application/json",
        b"{\"title\":\"ok\",\"owner\":1}".to_vec(),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(body["errors"][0]["field"], "owner");

    let (status, body) = raw(
        &app,
        Method::POST,
        &docs,
        t,
        "application/json",
        vec![0xff, 0xfe, 0x00],
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_json")));

    let (status, body) = raw(
        &app,
        Method::GET,
        "/api/v1/documents/not-a-number",
        t,
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_parameter"))
    );

    let (status, body) = raw(
        &app,
        Method::GET,
        "/api/v1/no/such/route",
        t,
        "application/json",
        vec![],
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    assert_eq!(body["status"], 404);
    assert!(body["type"]
        .as_str()
        .unwrap()
        .starts_with("urn:stoa:problem:"));

    // A method the path does not have: 405, saying which it has.
    let (status, body) = raw(
        &app,
        Method::PUT,
        &docs,
        t,
        "application/json",
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(status, 405);
    assert_eq!(body["code"], "method_not_allowed");
    let res = app.call(Method::PUT, &docs, Some(t), None, &[]).await;
    assert_eq!(res.header("allow").as_deref(), Some("GET, POST"));
    let res = app.call(Method::TRACE, "/healthz", None, None, &[]).await;
    assert_eq!(
        (res.status, res.header("allow").as_deref()),
        (405, Some("GET"))
    );
    let res = app
        .call(Method::PUT, "/api/no/such/path", None, None, &[])
        .await;
    assert_eq!(res.status, 404);
    // Any other path is a page of the console: GET and HEAD only.
    let res = app
        .call(Method::PUT, "/no/such/path", None, None, &[])
        .await;
    assert_eq!(
        (res.status, res.header("allow").as_deref()),
        (405, Some("GET, HEAD"))
    );

    // Nothing above created anything.
    let list = app.get(&docs, t).await;
    assert_eq!(list.body["items"], json!([]));
    assert_eq!(app.all_events(ws, &alice).await.len(), 1);
    // And the server is still perfectly healthy.
    assert_eq!(
        app.call(Method::GET, "/healthz", None, None, &[])
            .await
            .status,
        200
    );
}

async fn operations_endpoints_answer(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let health = app.call(Method::GET, "/healthz", None, None, &[]).await;
    assert_eq!(health.status, 200);
    assert_eq!(health.body["status"], "ok");
    let ready = app.call(Method::GET, "/readyz", None, None, &[]).await;
    assert_eq!(ready.status, 200);

    // Request ids: made up when absent, echoed when sane, replaced when not.
    let generated = health.header("x-request-id").unwrap();
    assert!(generated.len() >= 16);
    let echoed = app
        .call(
            Method::GET,
            "/healthz",
            None,
            None,
            &[("x-request-id", "trace-abc.123")],
        )
        .await;
    assert_eq!(
        echoed.header("x-request-id").as_deref(),
        Some("trace-abc.123")
    );
    let replaced = app
        .call(
            Method::GET,
            "/healthz",
            None,
            None,
            &[("x-request-id", "<script>")],
        )
        .await;
    assert_ne!(replaced.header("x-request-id").as_deref(), Some("<script>"));

    let alice = app.register("alice").await;
    let missing = app.get("/api/v1/documents/424242", &alice.token).await;
    assert_eq!(missing.status, 404);
    let metrics = app.call(Method::GET, "/metrics", None, None, &[]).await;
    let text = &crate::common::without_node(metrics.body.as_str().unwrap());
    assert!(text.contains(
        "stoa_http_requests_total{method=\"GET\",route=\"/api/v1/documents/{id}\",status=\"404\"} 1"
    ), "{text}");
    assert!(text.contains(
        "stoa_http_request_duration_seconds_bucket{method=\"POST\",route=\"/api/v1/auth/register\""
    ));
    assert!(text.contains("stoa_build_info"));

    // A browser app on another origin may call the API in development.
    let preflight = app
        .call(
            Method::OPTIONS,
            "/api/v1/me",
            None,
            None,
            &[
                ("origin", "http://localhost:5173"),
                ("access-control-request-method", "GET"),
                ("access-control-request-headers", "authorization"),
            ],
        )
        .await;
    assert_eq!(preflight.status, 200);
    assert_eq!(
        preflight.header("access-control-allow-origin").as_deref(),
        Some("http://localhost:5173")
    );
}

#[actix_web::test]
async fn production_cors_allows_only_configured_origins() {
    let Some(app) = spawn_app_with(Backend::Sqlite, |s| {
        s.environment = stoa::config::Environment::Production;
        s.http.cors_allowed_origins = vec!["https://app.example.com".into()];
    })
    .await
    else {
        return;
    };
    let ask = |origin: &'static str| {
        let app = &app;
        async move {
            app.call(
                Method::OPTIONS,
                "/api/v1/me",
                None,
                None,
                &[("origin", origin), ("access-control-request-method", "GET")],
            )
            .await
        }
    };
    let allowed = ask("https://app.example.com").await;
    assert_eq!(
        allowed.header("access-control-allow-origin").as_deref(),
        Some("https://app.example.com")
    );
    let refused = ask("https://evil.example.com").await;
    assert_eq!(refused.header("access-control-allow-origin"), None);
}

#[actix_web::test]
async fn openapi_document_covers_every_route() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    let res = app
        .call(Method::GET, "/api/openapi.json", None, None, &[])
        .await;
    assert_eq!(res.status, 200);
    let doc = res.body;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let expected = [
        ("post", "/api/v1/auth/register"),
        ("post", "/api/v1/auth/login"),
        ("post", "/api/v1/auth/refresh"),
        ("post", "/api/v1/auth/logout"),
        ("get", "/api/v1/me"),
        ("post", "/api/v1/me/password"),
        ("get", "/api/v1/workspaces"),
        ("post", "/api/v1/workspaces"),
        ("get", "/api/v1/workspaces/{id}"),
        ("patch", "/api/v1/workspaces/{id}"),
        ("delete", "/api/v1/workspaces/{id}"),
        ("get", "/api/v1/workspaces/{id}/members"),
        ("post", "/api/v1/workspaces/{id}/members"),
        ("get", "/api/v1/workspaces/{id}/members/{user_id}"),
        ("patch", "/api/v1/workspaces/{id}/members/{user_id}"),
        ("delete", "/api/v1/workspaces/{id}/members/{user_id}"),
        ("get", "/api/v1/workspaces/{id}/documents"),
        ("post", "/api/v1/workspaces/{id}/documents"),
        ("get", "/api/v1/documents/{id}"),
        ("patch", "/api/v1/documents/{id}"),
        ("delete", "/api/v1/documents/{id}"),
        ("get", "/api/v1/documents/{id}/comments"),
        ("post", "/api/v1/documents/{id}/comments"),
        ("get", "/api/v1/comments/{id}"),
        ("patch", "/api/v1/comments/{id}"),
        ("delete", "/api/v1/comments/{id}"),
        ("get", "/api/v1/workspaces/{id}/events"),
        ("get", "/api/v1/workspaces/{id}/reports/activity"),
        ("get", "/api/v1/workspaces/{id}/reports/members"),
        ("get", "/api/v1/workspaces/{id}/reports/documents"),
        ("get", "/api/v1/workspaces/{id}/reports/overview"),
        ("get", "/api/v1/workspaces/{id}/search"),
        ("get", "/api/v1/search"),
        ("get", "/api/v1/notifications"),
        ("get", "/api/v1/notifications/unread-count"),
        ("post", "/api/v1/notifications/{id}/read"),
        ("post", "/api/v1/notifications/read-all"),
        ("get", "/api/v1/cluster"),
        ("patch", "/api/v1/me"),
        ("post", "/api/v1/me/api-tokens"),
        ("get", "/api/v1/me/api-tokens"),
        ("delete", "/api/v1/me/api-tokens/{id}"),
        ("delete", "/api/v1/me"),
        ("get", "/api/v1/me/export"),
        ("delete", "/api/v1/directory/users/{subject}"),
        ("post", "/api/v1/auth/verify-email"),
        ("post", "/api/v1/auth/ldap/login"),
        ("get", "/api/v1/auth/methods"),
        ("get", "/api/v1/documents/{id}/versions"),
        ("post", "/api/v1/documents/{id}/attachments"),
        ("get", "/api/v1/documents/{id}/attachments"),
        ("get", "/api/v1/attachments/{id}"),
        ("get", "/api/v1/attachments/{id}/content"),
        ("delete", "/api/v1/attachments/{id}"),
        ("get", "/api/v1/workspaces/{id}/attachments/usage"),
        ("post", "/api/v1/documents/{id}/versions"),
        ("get", "/api/v1/documents/{id}/versions/{v}"),
        ("get", "/api/v1/documents/{id}/versions/{v}/diff"),
        ("post", "/api/v1/documents/{id}/versions/{v}/restore"),
        ("get", "/api/v1/auth/oidc/{provider}/start"),
        ("get", "/api/v1/auth/oidc/{provider}/callback"),
        ("post", "/api/v1/auth/oidc/exchange"),
        ("get", "/api/v1/workspaces/{id}/sso"),
        ("put", "/api/v1/workspaces/{id}/sso"),
        ("delete", "/api/v1/workspaces/{id}/sso"),
        ("post", "/api/v1/me/verification-email"),
        ("post", "/api/v1/auth/password-reset"),
        ("post", "/api/v1/auth/password-reset/confirm"),
        ("get", "/api/v1/workspaces/{id}/invitations"),
        ("post", "/api/v1/invitations/{id}/resend"),
        ("delete", "/api/v1/invitations/{id}"),
        ("post", "/api/v1/me/invitations/accept"),
        ("put", "/api/v1/directory/users/{subject}"),
        ("put", "/api/v1/directory/workspaces/{external_id}"),
        (
            "put",
            "/api/v1/directory/workspaces/{external_id}/members/{subject}",
        ),
        (
            "delete",
            "/api/v1/directory/workspaces/{external_id}/members/{subject}",
        ),
        ("post", "/api/v1/workspaces/{id}/broadcast"),
        ("get", "/api/v1/unsubscribe"),
        ("post", "/api/v1/unsubscribe"),
        ("post", "/api/v1/workspaces/{id}/webhooks"),
        ("get", "/api/v1/workspaces/{id}/webhooks"),
        ("get", "/api/v1/workspaces/{id}/webhooks/{hook}"),
        ("patch", "/api/v1/workspaces/{id}/webhooks/{hook}"),
        ("delete", "/api/v1/workspaces/{id}/webhooks/{hook}"),
        ("get", "/api/v1/workspaces/{id}/webhooks/{hook}/deliveries"),
        (
            "post",
            "/api/v1/workspaces/{id}/webhooks/{hook}/deliveries/{delivery}/redeliver",
        ),
        ("get", "/healthz"),
        ("get", "/readyz"),
        ("get", "/metrics"),
        ("get", "/api/openapi.json"),
    ];
    let paths = doc["paths"].as_object().unwrap();
    let count: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(
        count,
        expected.len(),
        "no undocumented or unexpected operations"
    );
    for (method, path) in expected {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} missing");
        assert!(
            op["responses"].as_object().is_some_and(|r| !r.is_empty()),
            "{method} {path}"
        );
    }
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in [
        "Problem",
        "DocumentView",
        "EventView",
        "TokenResponse",
        "Role",
        "CreateDocument",
    ] {
        assert!(schemas.contains_key(name), "schema {name}");
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}

/// Every kind of API response — JSON, text, an error, a route that does not exist, a refused
/// token — says it is not to be sniffed and carries a policy that lets nothing run. (The
/// console's pages have their own policy: tests/api/console.rs.)
#[actix_web::test]
async fn every_response_carries_the_security_headers() {
    let app = spawn_app(Backend::Sqlite).await.expect("sqlite");
    let alice = app.register("alice").await;
    let ws = app.create_workspace(&alice, "Team").await;
    let responses = [
        app.call(Method::GET, "/healthz", None, None, &[]).await,
        app.call(Method::GET, "/metrics", None, None, &[]).await,
        app.call(Method::GET, "/openapi.json", None, None, &[])
            .await,
        app.call(Method::GET, "/api/no/such/page", None, None, &[])
            .await,
        app.call(Method::POST, "/no/such/page", None, None, &[])
            .await,
        app.call(
            Method::GET,
            "/api/v1/me",
            Some("forged.token.here"),
            None,
            &[],
        )
        .await,
        app.get(
            &format!("/api/v1/workspaces/{ws}/reports/members?format=csv"),
            &alice.token,
        )
        .await,
        app.call(
            Method::POST,
            "/api/v1/workspaces",
            Some(&alice.token),
            Some(json!({"name": ""})),
            &[],
        )
        .await,
    ];
    for res in responses {
        assert_eq!(
            res.header("x-content-type-options").as_deref(),
            Some("nosniff"),
            "{}",
            res.status
        );
        let csp = res.header("content-security-policy").unwrap_or_default();
        assert!(csp.contains("default-src 'none'"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(res.header("x-frame-options").as_deref(), Some("DENY"));
        // Plain HTTP (TLS at a proxy, or none): no HSTS, which only a TLS answer may carry.
        assert_eq!(res.header("strict-transport-security"), None);
    }
}
