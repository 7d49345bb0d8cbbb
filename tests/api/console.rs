//! The web console embedded from `web/dist/`: the page at `/` and at every client route, the
//! bundle's files with their caching, validators and gzip, the console's own security policy,
//! and the API's problems and headers left as they were.

use std::io::Read;
use std::path::PathBuf;

use awc::http::header::HeaderMap;
use awc::http::Method;
use serde_json::Value;

use crate::helpers::{spawn_app, Backend, TestApp};

/// The policy the console's pages carry (and what each part of it is for: src/console.rs).
const CONSOLE_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
    img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; \
    frame-ancestors 'none'; base-uri 'self'; form-action 'self'; object-src 'none'";
/// The API's, byte for byte.
const API_CSP: &str =
    "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'; sandbox";

fn dist() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("web/dist")
}

/// The largest script of the committed bundle, by its path under `web/dist/`.
fn a_script() -> (String, Vec<u8>) {
    let mut scripts: Vec<(String, Vec<u8>)> = std::fs::read_dir(dist().join("assets"))
        .expect("web/dist/assets")
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            name.ends_with(".js").then(|| {
                let body = std::fs::read(dist().join("assets").join(&name)).expect("asset");
                (format!("assets/{name}"), body)
            })
        })
        .collect();
    scripts.sort_by_key(|(_, body)| body.len());
    scripts.pop().expect("a script in web/dist/assets")
}

struct Raw {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// A request whose answer is taken as sent: no `Accept-Encoding` unless given, nothing
/// decompressed.
async fn raw(app: &TestApp, method: Method, path: &str, headers: &[(&str, &str)]) -> Raw {
    let mut req = app.client.request(method, app.url(path)).no_decompress();
    for (name, value) in headers {
        req = req.insert_header((*name, *value));
    }
    let mut res = req.send().await.expect("request sent");
    let body = res.body().limit(64 << 20).await.expect("body read");
    Raw {
        status: res.status().as_u16(),
        headers: res.headers().clone(),
        body: body.to_vec(),
    }
}

/// `Vary` names `Accept-Encoding` (the CORS layer adds the names it varies by).
fn varies_by_encoding(res: &Raw) -> bool {
    res.header("vary").is_some_and(|v| {
        v.split(',')
            .any(|name| name.trim().eq_ignore_ascii_case("accept-encoding"))
    })
}

fn assert_console_headers(res: &Raw, what: &str) {
    assert_eq!(
        res.header("content-security-policy"),
        Some(CONSOLE_CSP),
        "{what}"
    );
    assert_eq!(res.header("x-frame-options"), Some("DENY"), "{what}");
    assert_eq!(
        res.header("x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
    assert_eq!(res.header("referrer-policy"), Some("same-origin"), "{what}");
}

fn assert_api_problem(res: &Raw, status: u16, what: &str) {
    assert_eq!(res.status, status, "{what}");
    assert_eq!(
        res.header("content-type"),
        Some("application/problem+json"),
        "{what}"
    );
    assert_eq!(
        res.header("content-security-policy"),
        Some(API_CSP),
        "{what}"
    );
    assert_eq!(res.header("referrer-policy"), Some("no-referrer"), "{what}");
}

#[actix_web::test]
async fn the_page_is_served_at_the_root_and_at_every_client_route() {
    let app = spawn_app(Backend::Sqlite).await.expect("sqlite");
    let index = std::fs::read(dist().join("index.html")).expect("web/dist/index.html");
    for path in [
        "/",
        "/index.html",
        "/workspaces/1/documents/2",
        "/login?next=%2Fworkspaces",
    ] {
        let res = raw(&app, Method::GET, path, &[]).await;
        assert_eq!(res.status, 200, "{path}");
        assert_eq!(
            res.header("content-type"),
            Some("text/html; charset=utf-8"),
            "{path}"
        );
        assert_eq!(res.header("cache-control"), Some("no-cache"), "{path}");
        assert!(
            res.header("etag").is_some_and(|e| e.starts_with('"')),
            "{path}"
        );
        assert_console_headers(&res, path);
        assert_eq!(res.body, index, "{path}");
    }

    let head = raw(&app, Method::HEAD, "/workspaces/1", &[]).await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(
        head.header("content-length"),
        Some(index.len().to_string().as_str())
    );
    assert_console_headers(&head, "HEAD");

    // Every page and file is one route in the metrics, whatever its path.
    assert_eq!(
        app.metric(r#"stoa_http_requests_total{method="GET",route="console",status="200"}"#)
            .await,
        4.0
    );

    // Another method on a page's path is not the page: 405, and what the path allows.
    for method in [Method::POST, Method::PUT, Method::DELETE] {
        let res = raw(&app, method.clone(), "/", &[]).await;
        assert_api_problem(&res, 405, method.as_str());
        assert_eq!(res.header("allow"), Some("GET, HEAD"), "{method}");
    }
    let res = raw(&app, Method::POST, "/workspaces/1", &[]).await;
    assert_api_problem(&res, 405, "POST /workspaces/1");
    assert_eq!(res.header("allow"), Some("GET, HEAD"));
    // A missing file is missing whatever the method.
    let res = raw(&app, Method::POST, "/assets/gone.js", &[]).await;
    assert_api_problem(&res, 404, "POST /assets/gone.js");
}

#[actix_web::test]
async fn files_carry_their_type_cache_lifetime_validator_and_gzip() {
    let app = spawn_app(Backend::Sqlite).await.expect("sqlite");
    let (name, script) = a_script();
    let path = format!("/{name}");
    assert!(script.len() > 1024, "{name} is large enough to be gzipped");

    let plain = raw(&app, Method::GET, &path, &[]).await;
    assert_eq!(plain.status, 200);
    assert_eq!(
        plain.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(
        plain.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    assert_eq!(plain.header("content-encoding"), None);
    assert!(varies_by_encoding(&plain));
    assert_console_headers(&plain, &path);
    assert_eq!(plain.body, script);
    let etag = plain.header("etag").expect("etag").to_string();
    assert!(
        etag.starts_with('"') && etag.ends_with('"'),
        "strong: {etag}"
    );

    let identity = raw(&app, Method::GET, &path, &[("accept-encoding", "identity")]).await;
    assert_eq!(identity.header("content-encoding"), None);
    assert_eq!(identity.body, script);

    let gzip = raw(
        &app,
        Method::GET,
        &path,
        &[("accept-encoding", "gzip, deflate, br")],
    )
    .await;
    assert_eq!(gzip.status, 200);
    assert_eq!(gzip.header("content-encoding"), Some("gzip"));
    assert!(varies_by_encoding(&gzip));
    assert!(gzip.body.len() < script.len());
    let mut unzipped = Vec::new();
    flate2::read::GzDecoder::new(gzip.body.as_slice())
        .read_to_end(&mut unzipped)
        .expect("gzip");
    assert_eq!(unzipped, script);
    let gzip_etag = gzip.header("etag").expect("etag").to_string();
    assert_ne!(gzip_etag, etag, "each representation has its own validator");
    // Compressed once, the same bytes every time.
    let again = raw(&app, Method::GET, &path, &[("accept-encoding", "gzip")]).await;
    assert_eq!(again.body, gzip.body);

    let unchanged = raw(&app, Method::GET, &path, &[("if-none-match", &etag)]).await;
    assert_eq!(unchanged.status, 304);
    assert!(unchanged.body.is_empty());
    assert_eq!(unchanged.header("etag"), Some(etag.as_str()));
    assert_eq!(
        unchanged.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    let unchanged = raw(
        &app,
        Method::GET,
        &path,
        &[("if-none-match", &gzip_etag), ("accept-encoding", "gzip")],
    )
    .await;
    assert_eq!(unchanged.status, 304);
    let changed = raw(&app, Method::GET, &path, &[("if-none-match", "\"other\"")]).await;
    assert_eq!(changed.status, 200);

    let head = raw(&app, Method::HEAD, &path, &[("accept-encoding", "gzip")]).await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(head.header("content-encoding"), Some("gzip"));
    assert_eq!(
        head.header("content-length"),
        Some(gzip.body.len().to_string().as_str())
    );

    let favicon = raw(
        &app,
        Method::GET,
        "/favicon.svg",
        &[("accept-encoding", "gzip")],
    )
    .await;
    assert_eq!(favicon.status, 200);
    assert_eq!(favicon.header("content-type"), Some("image/svg+xml"));
    assert_eq!(
        favicon.header("cache-control"),
        Some("public, max-age=3600")
    );
    let small = std::fs::read(dist().join("favicon.svg")).expect("favicon");
    if small.len() <= 1024 {
        assert_eq!(
            favicon.header("content-encoding"),
            None,
            "too small to gzip"
        );
        assert_eq!(favicon.body, small);
    }
}

#[actix_web::test]
async fn missing_files_and_the_api_keep_their_problems_and_policy() {
    let app = spawn_app(Backend::Sqlite).await.expect("sqlite");
    for path in [
        "/assets/nope.js",
        "/foo.png",
        "/workspaces/1/.env",
        "/assets/../Cargo.toml",
    ] {
        let res = raw(&app, Method::GET, path, &[]).await;
        assert_api_problem(&res, 404, path);
        assert_eq!(res.json()["code"], "not_found", "{path}");
    }
    for path in ["/api/v1/nope", "/api/nope", "/api", "/socket/nope", "/yjs"] {
        let res = raw(&app, Method::GET, path, &[]).await;
        assert_api_problem(&res, 404, path);
    }
    // A known API path under another method: 405 with `Allow`, as before.
    let res = raw(&app, Method::GET, "/api/v1/auth/login", &[]).await;
    assert_api_problem(&res, 405, "GET /api/v1/auth/login");
    assert_eq!(res.header("allow"), Some("POST"));

    for path in ["/healthz", "/api/openapi.json"] {
        let res = raw(&app, Method::GET, path, &[]).await;
        assert_eq!(res.status, 200, "{path}");
        assert_eq!(
            res.header("content-security-policy"),
            Some(API_CSP),
            "{path}"
        );
        assert_eq!(res.header("x-frame-options"), Some("DENY"), "{path}");
        assert_eq!(
            res.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(res.header("referrer-policy"), Some("no-referrer"), "{path}");
    }

    // The OpenAPI document describes the API alone.
    let doc = raw(&app, Method::GET, "/api/openapi.json", &[])
        .await
        .json();
    let paths = doc["paths"].as_object().expect("paths");
    for path in paths.keys() {
        assert!(
            path.starts_with("/api/")
                || ["/healthz", "/readyz", "/metrics"].contains(&path.as_str()),
            "{path} is not the API's"
        );
    }
}
