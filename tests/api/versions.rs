//! Document history over REST, on SQLite and PostgreSQL: versions of REST writes, by name
//! and of restores; roles; bad input; retention folding versions without changing any
//! version kept.

use serde_json::json;

use crate::helpers::{spawn_app, Backend};

crate::on_every_backend!(
    versions_are_made_read_compared_and_restored,
    bad_version_requests_change_nothing,
    retention_thins_automatic_versions_and_every_kept_version_reads_the_same,
);

async fn versions_are_made_read_compared_and_restored(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let alice = app.register("alice").await;
    let viewer = app.register("viewer").await;
    let ws = app.create_workspace(&alice, "History").await;
    let add = app
        .post(
            &format!("/api/v1/workspaces/{ws}/members"),
            &alice.token,
            json!({"user_id": viewer.id, "role": "viewer"}),
        )
        .await;
    assert_eq!(add.status, 201);
    let made = app
        .post(
            &format!("/api/v1/workspaces/{ws}/documents"),
            &alice.token,
            json!({"title": "Plan", "content": "alpha beta"}),
        )
        .await;
    assert_eq!(made.status, 201);
    let doc = made.body["id"].as_i64().unwrap();
    let path = format!("/api/v1/documents/{doc}");
    let write = app
        .patch(&path, &alice.token, json!({"content": "alpha gamma"}))
        .await;
    assert_eq!(write.status, 200);
    let named = app
        .post(
            &format!("{path}/versions"),
            &alice.token,
            json!({"name": "  Before review  "}),
        )
        .await;
    assert_eq!(named.status, 201, "{:?}", named.body);
    assert_eq!(named.body["name"], "Before review", "trimmed");

    let list = app.get(&format!("{path}/versions"), &viewer.token).await;
    assert_eq!(list.status, 200);
    let items = list.body["items"].as_array().unwrap();
    let kinds: Vec<&str> = items.iter().map(|v| v["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["named", "write", "write"]);
    let first = items[2]["id"].as_i64().unwrap();
    assert_eq!(items[1]["added"], 5);
    assert_eq!(items[1]["removed"], 4);
    // Paginated, newest first.
    let page = app
        .get(&format!("{path}/versions?limit=2"), &viewer.token)
        .await;
    assert_eq!(page.body["items"].as_array().unwrap().len(), 2);
    let cursor = page.body["next_cursor"].as_str().unwrap().to_string();
    let rest = app
        .get(
            &format!("{path}/versions?limit=2&cursor={cursor}"),
            &viewer.token,
        )
        .await;
    assert_eq!(rest.body["items"][0]["id"], first);

    // Old versions are read back from their chain; the newest from its kept text.
    let old = app
        .get(&format!("{path}/versions/{first}"), &viewer.token)
        .await;
    assert_eq!(old.body["text"], "alpha beta");
    let newest = named.body["id"].as_i64().unwrap();
    let new = app
        .get(&format!("{path}/versions/{newest}"), &viewer.token)
        .await;
    assert_eq!(new.body["text"], "alpha gamma");

    let diff = app
        .get(
            &format!("{path}/versions/{first}/diff?against={newest}"),
            &viewer.token,
        )
        .await;
    assert_eq!(diff.status, 200, "{:?}", diff.body);
    assert_eq!(diff.body["added"], 4, "beta");
    assert_eq!(diff.body["removed"], 5, "gamma");

    // Viewers read but neither save nor restore.
    let refused = app
        .post(
            &format!("{path}/versions"),
            &viewer.token,
            json!({"name": "mine"}),
        )
        .await;
    assert_eq!(refused.status, 403);
    let refused = app
        .post(
            &format!("{path}/versions/{first}/restore"),
            &viewer.token,
            json!({}),
        )
        .await;
    assert_eq!(refused.status, 403);

    let restored = app
        .post(
            &format!("{path}/versions/{first}/restore"),
            &alice.token,
            json!({}),
        )
        .await;
    assert_eq!(restored.status, 200, "{:?}", restored.body);
    assert_eq!(restored.body["document"]["content"], "alpha beta");
    assert_eq!(restored.body["version"]["kind"], "restore");
    assert_eq!(restored.body["version"]["restored_from"], first);
    let now = app.get(&path, &alice.token).await;
    assert_eq!(now.body["content"], "alpha beta");
    // Nothing of the history is lost: the version restored from is still there, and the
    // one before the restore too.
    let list = app.get(&format!("{path}/versions"), &alice.token).await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 4);
    let events = app
        .get(&format!("/api/v1/workspaces/{ws}/events"), &alice.token)
        .await;
    let kinds: Vec<&str> = events.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"document.versioned"), "{kinds:?}");
    assert!(kinds.contains(&"document.restored"), "{kinds:?}");
    // Restores count as edits in the reports: the REST write and the restore.
    let report = app
        .get(
            &format!("/api/v1/workspaces/{ws}/reports/documents"),
            &alice.token,
        )
        .await;
    assert_eq!(report.status, 200, "{:?}", report.body);
    let row = report.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["document_id"] == doc)
        .expect("the document's row")
        .clone();
    assert_eq!(row["edits"], 2, "{row}");
}

async fn bad_version_requests_change_nothing(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let alice = app.register("alice").await;
    let outsider = app.register("outsider").await;
    let ws = app.create_workspace(&alice, "History").await;
    let doc = app.create_document(ws, &alice, "Draft").await;
    let path = format!("/api/v1/documents/{doc}");
    for name in [
        json!(""),
        json!("   "),
        json!("x".repeat(101)),
        json!("bell\u{7}"),
    ] {
        let r = app
            .post(
                &format!("{path}/versions"),
                &alice.token,
                json!({"name": name}),
            )
            .await;
        assert_eq!(r.status, 422, "{name}: {:?}", r.body);
    }
    let r = app
        .post(
            &format!("{path}/versions"),
            &alice.token,
            json!({"name": "x", "extra": 1}),
        )
        .await;
    assert_eq!(r.status, 422);
    let before = app.get(&format!("{path}/versions"), &alice.token).await;
    for (method_path, status) in [
        (format!("{path}/versions/999999"), 404),
        (format!("{path}/versions/999999/diff"), 404),
        (format!("{path}/versions/1/diff?against=yesterday"), 422),
        ("/api/v1/documents/999999/versions".to_string(), 404),
    ] {
        let r = app.get(&method_path, &alice.token).await;
        assert_eq!(r.status, status, "{method_path}: {:?}", r.body);
    }
    assert_eq!(
        app.get(&format!("{path}/versions"), &outsider.token)
            .await
            .status,
        404,
        "a non-member learns nothing"
    );
    let r = app
        .post(
            &format!("{path}/versions/999999/restore"),
            &alice.token,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 404);
    let after = app.get(&format!("{path}/versions"), &alice.token).await;
    assert_eq!(before.body, after.body, "refused requests made no version");
    assert_eq!(app.get(&path, &alice.token).await.body["version"], 1);
}

async fn retention_thins_automatic_versions_and_every_kept_version_reads_the_same(
    backend: Backend,
) {
    use stoa::history::{make_version, read_version, thin, Retention, VersionOf};
    use yrs::{Text, Transact};
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let alice = app.register("alice").await;
    let ws = app.create_workspace(&alice, "History").await;
    let doc = app.create_document(ws, &alice, "Draft").await;
    let store = app.store.clone();
    // A client types; a version after each burst (with a name for one of them).
    let ydoc = yrs::Doc::with_client_id(7);
    let content = ydoc.get_or_insert_text("content");
    let mut updates = Vec::new();
    let mut ids = Vec::new();
    for i in 0..40 {
        let before = ydoc.transact().state_vector();
        {
            let mut txn = ydoc.transact_mut();
            if i % 5 == 4 {
                content.remove_range(&mut txn, 0, 2);
            }
            let len = content.len(&txn);
            content.insert(&mut txn, len, &format!("word{i} "));
        }
        use yrs::ReadTxn;
        updates.push(ydoc.transact().encode_state_as_update_v1(&before));
        let (kind, name) = if i == 10 {
            ("named", Some("kept".to_string()))
        } else {
            ("auto", None)
        };
        let (meta, _) = make_version(
            &*store,
            doc,
            updates.clone(),
            VersionOf {
                kind,
                name,
                authors: vec![alice.id],
                created_by: Some(alice.id),
                restored_from: None,
                through: None,
            },
        )
        .await
        .expect("version made");
        ids.push(meta.id);
    }
    let mut texts = std::collections::HashMap::new();
    for id in &ids {
        let v = read_version(&*store, doc, *id).await.unwrap().unwrap();
        texts.insert(*id, v.text());
    }
    // Forty days on, everything made today is in one day's bucket: only the newest, and
    // the named one, are left.
    let retention = Retention {
        keep_all: std::time::Duration::from_secs(24 * 3600),
        keep_hourly: std::time::Duration::from_secs(30 * 24 * 3600),
    };
    let later = stoa::domain::now_ms() + 40 * 24 * 3_600_000;
    let dropped = thin(&*store, doc, retention, later).await.unwrap();
    // The document's first version (made with it) and 38 of the 40 made here.
    assert_eq!(dropped, 39);
    let list = app
        .get(&format!("/api/v1/documents/{doc}/versions"), &alice.token)
        .await;
    let left: Vec<i64> = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_i64().unwrap())
        .collect();
    assert_eq!(left, [ids[39], ids[10]]);
    for id in left {
        let v = read_version(&*store, doc, id).await.unwrap().unwrap();
        assert_eq!(&v.text(), &texts[&id], "version {id} reads as before");
    }
    // Today, nothing is thinned.
    assert_eq!(
        thin(&*store, doc, retention, stoa::domain::now_ms())
            .await
            .unwrap(),
        0
    );
}
