//! What a client can make a node keep: metric series, open documents, per-user state. Each
//! test does the work many times over and checks that what the node holds stays bounded.

use crate::support::*;

/// Series of the HTTP families in a `/metrics` text.
fn http_series(text: &str) -> usize {
    text.lines()
        .filter(|l| l.starts_with("stoa_http_request"))
        .count()
}

#[test]
fn made_up_methods_and_paths_add_no_metric_series() {
    let server = Server::start(&[]);
    let (_, token) = server.register("ada");
    let auth = format!("Bearer {token}");
    // Every kind of answer once, so that the families hold their usual series.
    for (method, path) in [
        ("GET", "/api/v1/me"),
        ("GET", "/api/v1/nope"),
        ("XMETHOD", "/api/v1/me"),
    ] {
        server.http(method, path, &[("Authorization", &auth)], b"");
    }
    let before = http_series(&server.http("GET", "/metrics", &[], b"").text());

    for i in 0..1000 {
        let method = format!("XMETHOD{i:04}");
        let path = if i % 2 == 0 {
            "/api/v1/me".to_string()
        } else {
            format!("/api/v1/made-up-{i}")
        };
        let headers: &[(&str, &str)] = if i % 3 == 0 {
            &[("Authorization", &auth)]
        } else {
            &[]
        };
        let r = server.http(&method, &path, headers, b"");
        assert!(
            [400, 401, 404, 405].contains(&r.status),
            "{method} {path}: {}",
            r.status
        );
    }
    let text = server.http("GET", "/metrics", &[], b"").text();
    let after = http_series(&text);
    assert!(
        after <= before + 40,
        "1,000 made-up methods and paths added {} series",
        after - before
    );
    assert!(
        text.contains("method=\"OTHER\""),
        "made-up methods are counted together"
    );
    assert!(!text.contains("XMETHOD"), "no client text becomes a label");
    assert!(server.healthy());
}
