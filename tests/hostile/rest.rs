//! The HTTP side: bodies that are too big, cut short, malformed or mislabelled, oversized
//! headers, half-sent requests, floods of made-up tokens. Each gets a clear answer (or the
//! connection is dropped), nothing is stored, and the server stays healthy and small.

use std::io::{Read, Write};
use std::time::Duration;

use serde_json::json;

use crate::support::*;

/// Sends raw bytes on a fresh connection and returns what came back (empty if nothing).
fn exchange(server: &Server, bytes: &[u8], then_close: bool) -> String {
    let mut s = server.connect();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(bytes);
    if then_close {
        let _ = s.shutdown(std::net::Shutdown::Write);
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn bad_bodies_get_clear_errors_and_store_nothing() {
    let server = Server::start(&[]);
    let (_, token) = server.register("mallory");
    let ws = server.workspace_with(&token, &[]);
    let docs = format!("/api/v1/workspaces/{ws}/documents");
    let auth = format!("Bearer {token}");
    let before = server.rss_kib();

    // A body announced at 100 MB is refused from its Content-Length.
    let head = format!(
        "POST {docs} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n"
    );
    let mut s = server.connect();
    s.write_all(head.as_bytes()).unwrap();
    let r = read_response(&mut s);
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.value()["code"], "payload_too_large");

    // A chunked body that keeps coming is cut off once over the limit.
    let mut s = server.connect();
    let head = format!(
        "POST {docs} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    let chunk = format!("10000\r\n{}\r\n", "x".repeat(0x10000));
    for _ in 0..64 {
        if s.write_all(chunk.as_bytes()).is_err() {
            break;
        }
    }
    let r = read_response(&mut s);
    assert_eq!(r.status, 413, "{}", r.text());

    // Malformed, mislabelled and non-UTF-8 bodies.
    for (content_type, body, status, code) in [
        (
            "application/json",
            &b"{\"title\": "[..],
            400,
            "invalid_json",
        ),
        ("application/json", &b"\xff\xfe{}"[..], 400, "invalid_json"),
        (
            "text/plain",
            &b"{\"title\": \"x\"}"[..],
            415,
            "unsupported_media_type",
        ),
        ("application/json", &b"[]"[..], 422, "validation_failed"),
        (
            "application/json",
            &b"{\"title\": \"x\", \"evil\": 1}"[..],
            422,
            "validation_failed",
        ),
        (
            "application/json",
            &b"{\"title\": \"\\u0000\"}"[..],
            422,
            "validation_failed",
        ),
    ] {
        let r = server.http(
            "POST",
            &docs,
            &[("Authorization", &auth), ("Content-Type", content_type)],
            body,
        );
        assert_eq!(
            (r.status, r.value()["code"].as_str().unwrap_or("")),
            (status, code),
            "{}",
            String::from_utf8_lossy(body)
        );
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("application/problem+json")
        );
    }

    // A body cut short, and requests abandoned half-way through their headers.
    let cut = format!(
        "POST {docs} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"title\":"
    );
    exchange(&server, cut.as_bytes(), true);
    for partial in [
        "GET /healthz HTT",
        "POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Le",
    ] {
        exchange(&server, partial.as_bytes(), true);
    }
    // Garbage instead of HTTP, and a header far over any sane size: 400 (or 431), or the
    // connection is simply dropped.
    let garbage = exchange(
        &server,
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http\r\n\r\n",
        true,
    );
    assert!(
        garbage.is_empty() || garbage.starts_with("HTTP/1.1 400"),
        "{garbage}"
    );
    let huge = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "y".repeat(200_000)
    );
    let answer = exchange(&server, huge.as_bytes(), false);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 4"),
        "{}",
        &answer[..answer.len().min(200)]
    );

    // Nothing of it was stored; the server is healthy and did not grow.
    let list = server.http("GET", &docs, &[("Authorization", &auth)], b"");
    assert_eq!(list.value()["items"], json!([]));
    assert!(server.healthy());
    let grown = server.rss_kib().saturating_sub(before);
    assert!(grown < 32 * 1024, "RSS grew by {grown} KiB");
    assert!(
        server.log_lines("ERROR").is_empty(),
        "client faults logged as errors: {:#?}",
        server.log_lines("ERROR")
    );
}

#[test]
fn a_flood_of_made_up_tokens_and_logins_leaves_writes_working() {
    let _heavy = heavy();
    let server = Server::start(&[]);
    let (_, token) = server.register("alice");
    let ws = server.workspace_with(&token, &[]);
    let port = server.port;

    // Eight clients send made-up refresh tokens, logouts and logins as fast as they can.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flooders: Vec<_> = (0..8)
        .map(|i| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut answers = std::collections::BTreeMap::<u16, u32>::new();
                let mut n = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let (path, body) = match n % 3 {
                        0 => ("/api/v1/auth/refresh", json!({"refresh_token": format!("made-up-{i}-{n}")})),
                        1 => ("/api/v1/auth/logout", json!({"refresh_token": format!("made-up-{i}-{n}")})),
                        _ => ("/api/v1/auth/login", json!({"email": format!("x{n}@example.com"), "password": "guess guess"})),
                    };
                    n += 1;
                    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
                        continue;
                    };
                    let body = body.to_string();
                    let req = format!(
                        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if s.write_all(req.as_bytes()).is_err() {
                        continue;
                    }
                    let mut out = String::new();
                    let _ = s.read_to_string(&mut out);
                    let status = out.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
                    *answers.entry(status).or_default() += 1;
                }
                answers
            })
        })
        .collect();

    // Meanwhile, every write of a legitimate user goes through.
    for i in 0..30 {
        let r = server.json(
            "POST",
            &format!("/api/v1/workspaces/{ws}/documents"),
            Some(&token),
            json!({"title": format!("Note {i}"), "content": "during the flood"}),
        );
        assert_eq!(r.status, 201, "write {i}: {}", r.text());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut answers = std::collections::BTreeMap::<u16, u32>::new();
    for f in flooders {
        for (status, n) in f.join().unwrap() {
            *answers.entry(status).or_default() += n;
        }
    }
    // The flood was answered, and only with refusals: unknown token, logged out nothing,
    // wrong credentials, or rate limited.
    assert!(answers.values().sum::<u32>() >= 20, "{answers:?}");
    for status in answers.keys() {
        assert!([204, 401, 429].contains(status), "{answers:?}");
    }
    assert!(server.healthy());
}

#[test]
fn unsupported_methods_and_unknown_paths_are_answered_plainly() {
    let server = Server::start(&[]);
    let r = server.http("DELETE", "/healthz", &[], b"");
    assert_eq!((r.status, r.header("allow").as_deref()), (405, Some("GET")));
    let r = server.http("TRACE", "/api/v1/workspaces/1", &[], b"");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow").as_deref(), Some("GET, PATCH, DELETE"));
    let r = server.http("GET", "/api/v1/nothing/here", &[], b"");
    assert_eq!(r.status, 404);
    // Query strings with unknown parameters and odd encodings change nothing.
    let (_, token) = server.register("eve");
    let auth = format!("Bearer {token}");
    let r = server.http(
        "GET",
        "/api/v1/workspaces?_=1&cursor=&limit=5",
        &[("Authorization", &auth)],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = server.http(
        "GET",
        "/api/v1/workspaces?limit=%FF%FE",
        &[("Authorization", &auth)],
        b"",
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(server.healthy());
}
