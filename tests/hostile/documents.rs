//! Live documents against what a deployment meets: rights that change while sockets are
//! open, a node killed between writing an edit and recording it, documents opened by REST
//! alone, documents grown past their limit, and text the database cannot keep.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{Backend, TestDb};
use crate::support::*;

fn rest_text(server: &Server, doc: i64, token: &str) -> String {
    let r = server.json(
        "GET",
        &format!("/api/v1/documents/{doc}"),
        Some(token),
        json!(null),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    r.value()["content"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// A fresh database of `backend` for a server process (kept alive by the returned guard).
fn database(backend: Backend) -> Option<TestDb> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(TestDb::create(backend))
}

/// What editors type reaches the REST text (and so search and reports) at most about 2 s
/// later, while they keep typing: the text is saved once per editing window, not only when
/// they stop.
#[test]
fn rest_text_follows_live_editors_within_two_seconds() {
    let server = Server::start(&[]);
    let (_, alice) = server.register("alice");
    let ws = server.workspace_with(&alice, &[]);
    let doc = server.document(&alice, ws, json!({"title": "Live"}));
    let mut a = YjsEditor::open(&server, doc, &alice);
    let mut worst = Duration::ZERO;
    for n in 0..3 {
        let piece = format!("piece {n}. ");
        a.type_text(&piece);
        let typed = Instant::now();
        eventually("the REST text to show the edit", || {
            rest_text(&server, doc, &alice).contains(&piece)
        });
        worst = worst.max(typed.elapsed());
    }
    assert!(
        worst < Duration::from_millis(3000),
        "REST showed an edit {worst:?} after it was typed"
    );
}

#[test]
fn a_demoted_editor_is_read_only_at_once_and_a_promoted_one_may_write() {
    let server = Server::start(&[]);
    let (_, alice) = server.register("alice");
    let (bob_id, bob) = server.register("bob");
    let ws = server.workspace_with(&alice, &[(bob_id, "editor")]);
    let doc = server.document(&alice, ws, json!({"title": "Plan"}));
    let mut a = YjsEditor::open(&server, doc, &alice);
    // Bob on two sockets: one types while he is a viewer, the other only once he is an
    // editor again (a refused edit stays in the client that made it, and what it types
    // after builds on it).
    let mut b = YjsEditor::open(&server, doc, &bob);
    let mut b2 = YjsEditor::open(&server, doc, &bob);

    b.type_text("bob writes. ");
    a.until_text("bob writes. ");
    b2.until_text("bob writes. ");

    let role = |r: &str| {
        let res = server.json(
            "PATCH",
            &format!("/api/v1/workspaces/{ws}/members/{bob_id}"),
            Some(&alice),
            json!({"role": r}),
        );
        assert_eq!(res.status, 200, "{}", res.text());
    };
    role("viewer");
    // Both of Bob's open sockets hear at once that they are read-only...
    assert!(b.refusal().starts_with("read-only"));
    assert!(b2.refusal().starts_with("read-only"));
    // ...and what he types now is refused, neither relayed nor stored.
    b2.type_text("written as a viewer. ");
    assert!(b2.refusal().starts_with("read-only"));
    a.type_text("alice writes.");
    a.settle();
    b.until_text("bob writes. alice writes.");
    assert_eq!(a.text(), "bob writes. alice writes.");
    let fresh = YjsEditor::open(&server, doc, &alice);
    assert_eq!(
        fresh.text(),
        "bob writes. alice writes.",
        "nothing of it was stored"
    );
    drop(fresh);

    // Promoted again, the same socket writes.
    role("editor");
    b.settle();
    b.type_text(" Back.");
    a.until_text("bob writes. alice writes. Back.");
    eventually("the REST text to show bob's edit", || {
        rest_text(&server, doc, &alice) == "bob writes. alice writes. Back."
    });
}

#[test]
fn documents_opened_by_rest_writes_are_unloaded_and_never_fill_the_cap() {
    // Documents with connections are capped at 5; REST writes to 30 others come and go.
    let server = Server::start(&[
        ("STOA_REALTIME__MAX_OPEN_DOCUMENTS", "5"),
        ("STOA_REALTIME__DOCUMENT_IDLE_SECS", "2"),
    ]);
    let (_, alice) = server.register("alice");
    let ws = server.workspace_with(&alice, &[]);
    let docs: Vec<i64> = (0..31)
        .map(|i| server.document(&alice, ws, json!({"title": format!("D{i}")})))
        .collect();
    for (i, doc) in docs[..30].iter().enumerate() {
        let r = server.json(
            "PATCH",
            &format!("/api/v1/documents/{doc}"),
            Some(&alice),
            json!({"content": format!("written over REST {i}")}),
        );
        assert_eq!(r.status, 200, "{}", r.text());
    }
    // The cap counts documents with editors: a socket on a 31st document is served at once.
    let mut editor = YjsEditor::open(&server, docs[30], &alice);
    editor.type_text("live");
    editor.settle();
    // Every document opened by a REST write is unloaded once its change is written.
    eventually("the REST-opened documents to be unloaded", || {
        server.metric("stoa_yjs_documents_open") <= 1.0
    });
    drop(editor);
    eventually(
        "the last document to be unloaded after its editor left",
        || server.metric("stoa_yjs_documents_open") == 0.0,
    );
    // And each REST write reached the document's live content.
    for (i, doc) in docs[..3].iter().enumerate() {
        let e = YjsEditor::open(&server, *doc, &alice);
        assert_eq!(e.text(), format!("written over REST {i}"));
    }
}

fn an_edit_written_before_kill_9_reaches_rest_search_and_the_feed(backend: Backend) {
    let Some(db) = database(backend) else {
        return;
    };
    let env = [
        ("STOA_DATABASE__URL", db.url.as_str()),
        (
            "STOA_AUTH__JWT_SECRET",
            "crash-test-secret-0123456789abcdefGHIJKLMNOPQRSTUV",
        ),
    ];
    let server = Server::start(&env);
    let (alice_id, alice) = server.register("alice");
    let ws = server.workspace_with(&alice, &[]);
    let doc = server.document(&alice, ws, json!({"title": "Notes", "content": "start"}));
    let mut editor = YjsEditor::open(&server, doc, &alice);
    assert_eq!(editor.text(), "start");
    let written = server.metric("stoa_yjs_updates_written_total");
    editor.type_text(" zanzibar");
    editor.settle();
    // The update is in the database (its write is at once); its text, event and search
    // entry are due two seconds later, and the node dies before that.
    eventually("the update to be written", || {
        server.metric("stoa_yjs_updates_written_total") > written
    });
    assert_eq!(rest_text(&server, doc, &alice), "start");
    let dir = server.kill_keeping_dir();
    let started = Instant::now();

    // Restarted, with no client opening the document: within 5 s REST shows the edit.
    let server = Server::start_in(dir, &env);
    eventually("the REST text to catch up", || {
        rest_text(&server, doc, &alice) == "start zanzibar"
    });
    let caught_up = started.elapsed();
    assert!(caught_up < Duration::from_secs(5), "{caught_up:?}");
    // The event feed has Alice's edit, search finds its word, the report counts it.
    let events = server.json(
        "GET",
        &format!("/api/v1/workspaces/{ws}/events?since=0&limit=100"),
        Some(&alice),
        json!(null),
    );
    let edited: Vec<Value> = events.value()["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|e| e["kind"] == "document.edited")
        .cloned()
        .collect();
    assert_eq!(edited.len(), 1, "{}", events.text());
    assert_eq!(edited[0]["actor"], alice_id);
    assert_eq!(edited[0]["data"]["edits"], 1);
    let found = server.json(
        "GET",
        "/api/v1/search?q=zanzibar",
        Some(&alice),
        json!(null),
    );
    assert_eq!(found.value()["items"][0]["id"], doc, "{}", found.text());
    assert_eq!(server.metric("stoa_yjs_catch_ups_total"), 1.0);
    // Opening it now changes nothing more: the edit is recorded once.
    let e = YjsEditor::open(&server, doc, &alice);
    assert_eq!(e.text(), "start zanzibar");
    drop(e);
    let again = server.json(
        "GET",
        &format!("/api/v1/workspaces/{ws}/events?since=0&limit=100"),
        Some(&alice),
        json!(null),
    );
    let count = again.value()["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|e| e["kind"] == "document.edited")
        .count();
    assert_eq!(count, 1);
}

#[test]
fn an_edit_written_before_kill_9_reaches_rest_search_and_the_feed_on_sqlite() {
    an_edit_written_before_kill_9_reaches_rest_search_and_the_feed(Backend::Sqlite);
}

#[test]
fn an_edit_written_before_kill_9_reaches_rest_search_and_the_feed_on_postgres() {
    an_edit_written_before_kill_9_reaches_rest_search_and_the_feed(Backend::Postgres);
}

#[test]
fn a_document_cannot_grow_past_its_limit_over_yjs_or_rest() {
    let server = Server::start(&[("STOA_REALTIME__MAX_DOCUMENT_BYTES", "65536")]);
    let (_, alice) = server.register("alice");
    let (bob_id, bob) = server.register("bob");
    let ws = server.workspace_with(&alice, &[(bob_id, "editor")]);
    let doc = server.document(&alice, ws, json!({"title": "Big"}));
    let mut a = YjsEditor::open(&server, doc, &alice);
    let mut b = YjsEditor::open(&server, doc, &bob);
    let piece = "x".repeat(20_000);
    for _ in 0..3 {
        a.type_text(&piece);
    }
    b.until_text(&piece.repeat(3));
    // The fourth would take it past 64 KiB: refused, with the reason, not relayed.
    a.type_text(&piece);
    let reason = a.refusal();
    assert!(reason.starts_with("document_too_large"), "{reason}");
    // (What Alice types after it builds on the refused text, so the server holds it back
    // as Yjs holds back any update whose predecessors it lacks.)
    a.type_text("small");
    a.settle();
    b.settle();
    assert_eq!(b.text().len(), 60_000, "nothing past the limit reached bob");
    // Smaller edits that fit still go through.
    let mut c = YjsEditor::open(&server, doc, &bob);
    assert_eq!(c.text().len(), 60_000);
    c.type_text("ok");
    b.until_text(&format!("{}ok", piece.repeat(3)));
    // REST holds to the same limit.
    let r = server.json(
        "PATCH",
        &format!("/api/v1/documents/{doc}"),
        Some(&alice),
        json!({"content": "y".repeat(65_537)}),
    );
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("max_document_bytes"), "{}", r.text());
    assert!(server.metric("stoa_yjs_updates_refused_total") >= 1.0);
    assert!(server.healthy());
}

fn a_nul_in_live_text_is_saved_once_without_a_retry_loop(backend: Backend) {
    let Some(db) = database(backend) else {
        return;
    };
    let server = Server::start(&[("STOA_DATABASE__URL", db.url.as_str())]);
    let (_, alice) = server.register("alice");
    let ws = server.workspace_with(&alice, &[]);
    let doc = server.document(&alice, ws, json!({"title": "Nul"}));
    let mut a = YjsEditor::open(&server, doc, &alice);
    a.type_text("before\0after");
    a.settle();
    // The REST text keeps everything but the NUL, which PostgreSQL's text cannot hold.
    eventually("the text to be saved", || {
        rest_text(&server, doc, &alice) == "before\u{FFFD}after"
    });
    a.type_text(" more");
    eventually("the next edit to be saved", || {
        rest_text(&server, doc, &alice).ends_with(" more")
    });
    assert!(
        server
            .log_lines("WARN")
            .iter()
            .all(|l| !l.contains("retrying")),
        "{:?}",
        server.log_lines("WARN")
    );
    assert_eq!(server.metric("stoa_yjs_saves_failed_total"), 0.0);
    // The live content keeps the NUL as the editor typed it.
    let fresh = YjsEditor::open(&server, doc, &alice);
    assert_eq!(fresh.text(), "before\0after more");
}

#[test]
fn a_nul_in_live_text_is_saved_once_without_a_retry_loop_on_sqlite() {
    a_nul_in_live_text_is_saved_once_without_a_retry_loop(Backend::Sqlite);
}

#[test]
fn a_nul_in_live_text_is_saved_once_without_a_retry_loop_on_postgres() {
    a_nul_in_live_text_is_saved_once_without_a_retry_loop(Backend::Postgres);
}
