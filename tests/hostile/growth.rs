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

/// Each password hash takes a 19 MiB block (argon2's default cost). Left to itself, glibc's
/// allocator serves such blocks from its arenas after the first one is freed, and keeps
/// them: a node that had hashed a few passwords on a few threads held tens of megabytes
/// more, for good, and more after each burst. The node sets the allocator so that such
/// blocks are returned when freed.
#[test]
fn password_hashes_leave_no_memory_behind() {
    let _heavy = heavy();
    // Twelve registrations from one address, past its default allowance.
    let server = Server::start(&[("STOA_AUTH__LOGIN_ATTEMPTS_PER_MINUTE", "1000")]);
    let fresh = server.rss_kib();
    let mut after = Vec::new();
    for round in 0..3 {
        std::thread::scope(|s| {
            for t in 0..4 {
                let server = &server;
                s.spawn(move || server.register(&format!("user{round}x{t}")));
            }
        });
        after.push(server.rss_kib());
    }
    let grown: Vec<i64> = after
        .iter()
        .map(|kib| (*kib as i64 - fresh as i64) / 1024)
        .collect();
    eprintln!(
        "fresh {} MiB; after each round of 4 hashes: +{grown:?} MiB",
        fresh / 1024
    );
    // What the first round warms up (code paged in, a few threads' arenas) stays, 14–16 MiB
    // in a debug build; one hash's block kept would add 19 MiB more, and each round more.
    assert!(
        grown.iter().all(|mib| *mib < 19) && grown.windows(2).all(|w| w[1] - w[0] < 4),
        "12 password hashes left {grown:?} MiB behind"
    );
}
