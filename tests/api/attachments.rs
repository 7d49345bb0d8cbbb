//! Attachments against the real server and its default blob store (a directory under
//! `data_dir`), on SQLite and PostgreSQL: what is uploaded comes back byte for byte, typed by
//! its bytes and never as a page; ranges; limits and quota refused with 413 and nothing
//! stored; types off the allow-list refused with 415; roles; the events; and every way an
//! attachment goes (itself, its comment, its document, its workspace) removing its blob.

use std::path::Path;
use std::time::{Duration, Instant};

use awc::http::Method;
use bytes::Bytes;
use serde_json::Value;
use stoa::store::Attachments;

use crate::helpers::{spawn_app_with, Account, Backend, TestApp};

const MAX_FILE: u64 = 64 * 1024;
const QUOTA: u64 = 100 * 1024;

fn png(len: usize) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    bytes.extend((0..len.saturating_sub(16)).map(|i| (i * 31 % 251) as u8));
    bytes
}

fn pdf(len: usize) -> Vec<u8> {
    let mut bytes = b"%PDF-1.7\n".to_vec();
    bytes.extend((0..len.saturating_sub(9)).map(|i| b'a' + (i % 26) as u8));
    bytes
}

/// Files in the blob directory (staged parts included).
fn blob_files(dir: &Path) -> usize {
    fn walk(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| {
                        let p = e.path();
                        if p.is_dir() {
                            walk(&p)
                        } else {
                            1
                        }
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
    walk(&dir.join("blobs"))
}

/// Waits (with a deadline) until the outbox is empty and the directory holds `files`.
async fn swept_to(app: &TestApp, files: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let outbox = app.store.due_blob_deletions(i64::MAX, 100).await.unwrap();
        let now = blob_files(&app.data_dir);
        if outbox.is_empty() && now == files {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the sweep left {now} files (wanted {files}) and outbox {outbox:?}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Raw {
    status: u16,
    headers: awc::http::header::HeaderMap,
    body: Bytes,
}

impl Raw {
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

async fn raw(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> Raw {
    let mut req = app
        .client
        .request(method, app.url(path))
        .insert_header(("authorization", format!("Bearer {token}")));
    for (k, v) in headers {
        req = req.insert_header((*k, *v));
    }
    let mut res = match body {
        Some(b) => req.send_body(b).await,
        None => req.send().await,
    }
    .expect("request sent");
    let body = res.body().limit(16 << 20).await.expect("body read");
    Raw {
        status: res.status().as_u16(),
        headers: res.headers().clone(),
        body,
    }
}

async fn upload(app: &TestApp, doc: i64, by: &Account, name: &str, bytes: Vec<u8>) -> Raw {
    let path = format!(
        "/api/v1/documents/{doc}/attachments?name={}",
        url::form_urlencoded::byte_serialize(name.as_bytes()).collect::<String>()
    );
    // What the uploader says the type is counts for nothing.
    raw(
        app,
        Method::POST,
        &path,
        &by.token,
        &[("content-type", "text/html")],
        Some(bytes),
    )
    .await
}

crate::on_every_backend!(
    files_come_back_byte_for_byte_typed_by_their_bytes_and_never_as_a_page,
    limits_quota_and_types_are_refused_before_anything_is_kept,
    every_way_an_attachment_goes_removes_its_blob,
);

#[actix_web::test]
async fn uploads_past_the_nodes_limit_wait_their_turn_with_503() {
    let app = spawn_app_with(Backend::Sqlite, |s| s.storage.max_concurrent_uploads = 1)
        .await
        .expect("sqlite");
    let alice = app.register("alice").await;
    let ws = app.create_workspace(&alice, "W").await;
    let doc = app.create_document(ws, &alice, "Plan").await;

    // One upload under way: its body comes as the test feeds it.
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Result<Bytes, std::io::Error>>();
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let first = app
        .client
        .post(app.url(&format!(
            "/api/v1/documents/{doc}/attachments?name=slow.pdf"
        )))
        .insert_header(("authorization", format!("Bearer {}", alice.token)))
        .send_stream(body);
    let first = actix_web::rt::spawn(first);
    tx.send(Ok(Bytes::from(pdf(10_000)))).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.metric("stoa_attachment_uploads_in_progress").await < 1.0 {
        assert!(Instant::now() < deadline, "the first upload never began");
        actix_web::rt::time::sleep(Duration::from_millis(10)).await;
    }

    // Another: refused at once, told when to come back; nothing of it kept.
    let r = upload(&app, doc, &alice, "second.pdf", pdf(1000)).await;
    assert_eq!((r.status, r.json()["code"].as_str()), (503, Some("busy")));
    assert_eq!(r.header("retry-after").as_deref(), Some("1"));

    // The first finishes; then there is room again.
    tx.send(Ok(Bytes::from(vec![b'x'; 5000]))).unwrap();
    drop(tx);
    let mut res = first.await.unwrap().expect("first answered");
    assert_eq!(res.status().as_u16(), 201);
    let created: Value = serde_json::from_slice(&res.body().await.unwrap()).unwrap();
    assert_eq!(created["size"], 15_000);
    let r = upload(&app, doc, &alice, "second.pdf", pdf(1000)).await;
    assert_eq!(r.status, 201);
    assert_eq!(app.metric("stoa_attachment_uploads_in_progress").await, 0.0);
}

async fn files_come_back_byte_for_byte_typed_by_their_bytes_and_never_as_a_page(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |_| {}).await else {
        return;
    };
    let alice = app.register("alice").await;
    let viewer = app.register("victor").await;
    let stranger = app.register("sam").await;
    let ws = app.create_workspace(&alice, "W").await;
    app.add_member(ws, &alice, &viewer, "viewer").await;
    let doc = app.create_document(ws, &alice, "Plan").await;
    let other_doc = app.create_document(ws, &alice, "Other").await;
    let comment = app.create_comment(doc, &alice, "see the chart").await;

    let report = pdf(20_000);
    let r = upload(&app, doc, &alice, "Bericht Q3 «final».pdf", report.clone()).await;
    assert_eq!(r.status, 201, "{:?}", r.json());
    let a = r.json();
    let id = a["id"].as_i64().unwrap();
    assert_eq!(a["name"], "Bericht Q3 «final».pdf");
    assert_eq!(a["size"], 20_000);
    assert_eq!(a["content_type"], "application/pdf");
    assert_eq!(a["comment_id"], Value::Null);
    assert_eq!(a["uploaded_by"], alice.id);
    let sha = {
        use sha2::Digest;
        sha2::Sha256::digest(&report)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    assert_eq!(a["sha256"], sha.as_str());
    assert_eq!(
        r.header("location").as_deref(),
        Some(format!("/api/v1/attachments/{id}").as_str())
    );

    // On a comment: a PNG, whatever its name says.
    let chart = png(3000);
    let r = raw(
        &app,
        Method::POST,
        &format!("/api/v1/documents/{doc}/attachments?name=chart.txt&comment_id={comment}"),
        &alice.token,
        &[],
        Some(chart.clone()),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.json());
    assert_eq!(r.json()["content_type"], "image/png");
    assert_eq!(r.json()["comment_id"], comment);
    let chart_id = r.json()["id"].as_i64().unwrap();
    // A comment of another document is no place for it.
    let r = raw(
        &app,
        Method::POST,
        &format!("/api/v1/documents/{other_doc}/attachments?name=x.png&comment_id={comment}"),
        &alice.token,
        &[],
        Some(png(100)),
    )
    .await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (422, Some("validation_failed"))
    );

    // Listed, oldest first, to a viewer too.
    let list = app
        .get(
            &format!("/api/v1/documents/{doc}/attachments"),
            &viewer.token,
        )
        .await;
    assert_eq!(list.status, 200);
    let ids: Vec<i64> = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![id, chart_id]);
    let meta = app
        .get(&format!("/api/v1/attachments/{id}"), &viewer.token)
        .await;
    assert_eq!(meta.body["sha256"], sha.as_str());

    // Downloaded whole: the bytes, as a download, never sniffed or rendered.
    let content = format!("/api/v1/attachments/{id}/content");
    let r = raw(&app, Method::GET, &content, &viewer.token, &[], None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.as_ref(), report.as_slice());
    assert_eq!(r.header("content-type").as_deref(), Some("application/pdf"));
    assert_eq!(r.header("content-length").as_deref(), Some("20000"));
    assert_eq!(
        r.header("x-content-type-options").as_deref(),
        Some("nosniff")
    );
    assert_eq!(r.header("accept-ranges").as_deref(), Some("bytes"));
    let disposition = r.header("content-disposition").unwrap();
    assert!(disposition.starts_with("attachment;"), "{disposition}");
    assert!(
        disposition.contains("filename*=UTF-8''Bericht%20Q3%20%C2%ABfinal%C2%BB.pdf"),
        "{disposition}"
    );
    let csp = r.header("content-security-policy").unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("sandbox"),
        "{csp}"
    );
    let etag = r.header("etag").unwrap();
    assert_eq!(etag, format!("\"{sha}\""));

    // Ranges.
    for (range, want) in [
        ("bytes=0-99", 0..100),
        ("bytes=19990-", 19_990..20_000),
        ("bytes=-10", 19_990..20_000),
        ("bytes=5000-5000", 5000..5001),
        ("bytes=19000-99999", 19_000..20_000),
    ] {
        let r = raw(
            &app,
            Method::GET,
            &content,
            &viewer.token,
            &[("range", range)],
            None,
        )
        .await;
        assert_eq!(r.status, 206, "{range}");
        assert_eq!(r.body.as_ref(), &report[want.clone()], "{range}");
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes {}-{}/20000", want.start, want.end - 1)),
            "{range}"
        );
    }
    let r = raw(
        &app,
        Method::GET,
        &content,
        &viewer.token,
        &[("range", "bytes=20000-")],
        None,
    )
    .await;
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range").as_deref(), Some("bytes */20000"));
    assert_eq!(r.json()["code"], "range_not_satisfiable");
    // Several ranges: the whole file (a server may ignore them).
    let r = raw(
        &app,
        Method::GET,
        &content,
        &viewer.token,
        &[("range", "bytes=0-1,5-6")],
        None,
    )
    .await;
    assert_eq!((r.status, r.body.len()), (200, 20_000));
    // If-Range with a stale ETag: the whole file.
    let r = raw(
        &app,
        Method::GET,
        &content,
        &viewer.token,
        &[("range", "bytes=0-9"), ("if-range", "\"stale\"")],
        None,
    )
    .await;
    assert_eq!((r.status, r.body.len()), (200, 20_000));
    let r = raw(
        &app,
        Method::GET,
        &content,
        &viewer.token,
        &[("if-none-match", &etag)],
        None,
    )
    .await;
    assert_eq!((r.status, r.body.len()), (304, 0));

    // Roles: a viewer reads but neither uploads nor removes; a stranger sees nothing.
    let r = upload(&app, doc, &viewer, "v.pdf", pdf(100)).await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (403, Some("forbidden"))
    );
    let r = app
        .delete(&format!("/api/v1/attachments/{id}"), &viewer.token)
        .await;
    assert_eq!(r.status, 403);
    for path in [
        format!("/api/v1/attachments/{id}"),
        content.clone(),
        format!("/api/v1/documents/{doc}/attachments"),
    ] {
        let r = raw(&app, Method::GET, &path, &stranger.token, &[], None).await;
        assert_eq!(r.status, 404, "{path}");
    }
    let r = upload(&app, doc, &stranger, "s.pdf", pdf(100)).await;
    assert_eq!(r.status, 404);
    let r = raw(
        &app,
        Method::GET,
        "/api/v1/attachments/999999/content",
        &alice.token,
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, 404);

    // The feed.
    let events = app.all_events(ws, &alice).await;
    let added: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "attachment.added")
        .collect();
    assert_eq!(added.len(), 2);
    assert_eq!(added[0]["data"]["attachment_id"], id);
    assert_eq!(added[0]["data"]["sha256"], sha.as_str());
    assert_eq!(added[1]["data"]["comment_id"], comment);
    let r = app
        .delete(&format!("/api/v1/attachments/{id}"), &alice.token)
        .await;
    assert_eq!(r.status, 204);
    let events = app.all_events(ws, &alice).await;
    let removed = events
        .iter()
        .find(|e| e["kind"] == "attachment.removed")
        .expect("attachment.removed");
    assert_eq!(removed["data"]["attachment_id"], id);
    assert_eq!(removed["actor"], alice.id);
    let r = raw(&app, Method::GET, &content, &alice.token, &[], None).await;
    assert_eq!(r.status, 404);
    swept_to(&app, 1).await;
}

async fn limits_quota_and_types_are_refused_before_anything_is_kept(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |s| {
        s.storage.max_file_bytes = MAX_FILE;
        s.storage.workspace_quota_bytes = QUOTA;
    })
    .await
    else {
        return;
    };
    let alice = app.register("alice").await;
    let ws = app.create_workspace(&alice, "W").await;
    let doc = app.create_document(ws, &alice, "Plan").await;
    let usage = format!("/api/v1/workspaces/{ws}/attachments/usage");

    // Over the file limit, said by Content-Length: refused before a byte is read.
    let r = upload(&app, doc, &alice, "big.pdf", pdf(MAX_FILE as usize + 1)).await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (413, Some("file_too_large"))
    );
    // Over it without a Content-Length (chunked): refused when the count passes the limit.
    let chunks: Vec<Result<Bytes, std::io::Error>> = pdf(MAX_FILE as usize + 10_000)
        .chunks(7000)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let mut res = app
        .client
        .post(app.url(&format!("/api/v1/documents/{doc}/attachments?name=c.pdf")))
        .insert_header(("authorization", format!("Bearer {}", alice.token)))
        .send_stream(futures_util::stream::iter(chunks))
        .await
        .expect("sent");
    assert_eq!(res.status().as_u16(), 413);
    let body: Value = serde_json::from_slice(&res.body().await.unwrap()).unwrap();
    assert_eq!(body["code"], "file_too_large");
    swept_to(&app, 0).await;

    // At the limit: stored. Then the quota (100 KiB) has no room for another 64 KiB.
    let r = upload(&app, doc, &alice, "max.pdf", pdf(MAX_FILE as usize)).await;
    assert_eq!(r.status, 201, "{:?}", r.json());
    let r = upload(&app, doc, &alice, "more.pdf", pdf(MAX_FILE as usize)).await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (413, Some("quota_exceeded"))
    );
    assert!(r.json()["detail"]
        .as_str()
        .unwrap()
        .contains("65536 of its 102400"));
    let u = app.get(&usage, &alice.token).await;
    assert_eq!(u.body["bytes"], MAX_FILE);
    assert_eq!(u.body["files"], 1);
    assert_eq!(u.body["quota_bytes"], QUOTA);
    // What fits still fits.
    let r = upload(&app, doc, &alice, "small.pdf", pdf(30_000)).await;
    assert_eq!(r.status, 201);

    // Types off the allow-list, whatever the name or the declared type: nothing kept.
    for (name, bytes) in [
        (
            "page.pdf",
            b"<!DOCTYPE html><html><script>alert(document.cookie)</script>".to_vec(),
        ),
        (
            "setup.pdf",
            b"MZ\x90\0\x03\0\0\0\x04\0\0\0\xff\xff\0\0".to_vec(),
        ),
        ("blob.pdf", vec![0u8, 159, 146, 150, 0, 1, 2, 255]),
    ] {
        let r = upload(&app, doc, &alice, name, bytes).await;
        assert_eq!(
            (r.status, r.json()["code"].as_str()),
            (415, Some("unsupported_type")),
            "{name}"
        );
    }
    // Names that are paths or hold control characters; a name missing.
    for name in ["../../etc/passwd", "a\u{1}b", ""] {
        let r = upload(&app, doc, &alice, name, pdf(100)).await;
        assert_eq!(r.status, 422, "{name:?}");
    }
    let r = raw(
        &app,
        Method::POST,
        &format!("/api/v1/documents/{doc}/attachments"),
        &alice.token,
        &[],
        Some(pdf(100)),
    )
    .await;
    assert_eq!(r.status, 400);
    let r = upload(&app, 999_999, &alice, "x.pdf", pdf(100)).await;
    assert_eq!(r.status, 404);

    let u = app.get(&usage, &alice.token).await;
    assert_eq!(u.body["files"], 2);
    assert_eq!(u.body["bytes"], MAX_FILE + 30_000);
    swept_to(&app, 2).await;
    // Empty text is a file too.
    let r = upload(&app, doc, &alice, "empty.txt", Vec::new()).await;
    assert_eq!(
        (r.status, r.json()["content_type"].as_str()),
        (201, Some("text/plain"))
    );
    let id = r.json()["id"].as_i64().unwrap();
    let r = raw(
        &app,
        Method::GET,
        &format!("/api/v1/attachments/{id}/content"),
        &alice.token,
        &[],
        None,
    )
    .await;
    assert_eq!((r.status, r.body.len()), (200, 0));
}

async fn every_way_an_attachment_goes_removes_its_blob(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |_| {}).await else {
        return;
    };
    let alice = app.register("alice").await;
    let ws = app.create_workspace(&alice, "W").await;
    let other_ws = app.create_workspace(&alice, "Other").await;
    let doc = app.create_document(ws, &alice, "Plan").await;
    let doc2 = app.create_document(ws, &alice, "Notes").await;
    let doc3 = app.create_document(other_ws, &alice, "Elsewhere").await;
    let comment = app.create_comment(doc, &alice, "here").await;

    for (d, c) in [
        (doc, Some(comment)),
        (doc, None),
        (doc2, None),
        (doc2, None),
        (doc3, None),
    ] {
        let path = match c {
            Some(c) => format!("/api/v1/documents/{d}/attachments?name=f.png&comment_id={c}"),
            None => format!("/api/v1/documents/{d}/attachments?name=f.png"),
        };
        let r = raw(
            &app,
            Method::POST,
            &path,
            &alice.token,
            &[],
            Some(png(5000)),
        )
        .await;
        assert_eq!(r.status, 201, "{:?}", r.json());
    }
    swept_to(&app, 5).await;
    // The comment goes: its file with it.
    let r = app
        .delete(&format!("/api/v1/comments/{comment}"), &alice.token)
        .await;
    assert_eq!(r.status, 204);
    swept_to(&app, 4).await;
    // The document goes: its file.
    let r = app
        .delete(&format!("/api/v1/documents/{doc}"), &alice.token)
        .await;
    assert_eq!(r.status, 204);
    swept_to(&app, 3).await;
    let r = app
        .get(
            &format!("/api/v1/documents/{doc2}/attachments"),
            &alice.token,
        )
        .await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 2);
    // The workspace goes: both files of its other document; the other workspace's stays.
    let r = app
        .delete(&format!("/api/v1/workspaces/{ws}"), &alice.token)
        .await;
    assert_eq!(r.status, 204);
    swept_to(&app, 1).await;
    let r = app
        .get(
            &format!("/api/v1/documents/{doc3}/attachments"),
            &alice.token,
        )
        .await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1);
    assert!(app.metric("stoa_blobs_removed_total").await >= 4.0);
}
