//! The Elasticsearch indexer's delivery and search, against a stand-in that speaks the
//! endpoints Stoa uses (create index, `_bulk`, `_delete_by_query`, `_refresh`, `_search`),
//! records what it is sent, and refuses a search whose body is not of the documented shape
//! (a bool query filtered by workspace, phrase groups on `title^10` and `body`, the
//! score-kind-id sort, `search_after` of the same three). No Elasticsearch server can be installed where this suite usually runs; the
//! search conformance suite (search.rs) runs against a real one when
//! `STOA_TEST_ELASTICSEARCH_URL` is set. What is checked here is Stoa's side: bulk requests
//! carry the current rows with their versions and deletes for what is gone, a failing bulk
//! is retried until it succeeds, and the position is saved, so a restarted server resumes
//! where the index stands instead of starting over.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::{json, Value};
use stoa::config::Settings;
use stoa::startup::Application;
use stoa::store::prelude::*;

use crate::helpers::{spawn_app_with, Backend, JWT_SECRET};

#[derive(Default)]
struct Stand {
    /// Bulk requests answered 200, as their lines.
    bulks: Mutex<Vec<Vec<Value>>>,
    /// Bulk requests still to refuse with 503.
    refuse: AtomicU32,
    refused: AtomicU32,
    deleted_documents: Mutex<Vec<i64>>,
    /// `_search` bodies received, in order.
    searches: Mutex<Vec<Value>>,
}

/// What is wrong with a `_search` body, measured against the shape `search_body` documents.
fn search_shape_errors(body: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    let mut check = |ok: bool, what: &str| {
        if !ok {
            errors.push(what.to_string());
        }
    };
    check(
        body["size"].as_u64().is_some_and(|n| (1..=51).contains(&n)),
        "size between 1 and 51",
    );
    check(body["track_total_hits"] == false, "track_total_hits false");
    check(
        body["sort"] == json!([{"_score": "desc"}, {"kind": "asc"}, {"id": "asc"}]),
        "sort by score, kind, id",
    );
    let filter = body["query"]["bool"]["filter"].as_array();
    check(
        filter
            .and_then(|f| f.first())
            .and_then(|f| f["terms"]["workspace_id"].as_array())
            .is_some_and(|ids| !ids.is_empty() && ids.iter().all(Value::is_i64)),
        "the first filter is the caller's workspaces",
    );
    for f in filter.into_iter().flatten().skip(1) {
        let known = f["term"]["kind"].is_string()
            || f["term"]["author_id"].is_i64()
            || f["range"]["at"].is_object();
        check(known, "filters by kind, author or time only");
    }
    let groups = body["query"]["bool"]["must"][0]["bool"]["should"].as_array();
    check(
        groups.is_some_and(|g| !g.is_empty())
            && body["query"]["bool"]["must"][0]["bool"]["minimum_should_match"] == 1,
        "one or more phrase groups, any of which matches",
    );
    for group in groups.into_iter().flatten() {
        let phrases = group["bool"]["must"]
            .as_array()
            .into_iter()
            .chain(group["bool"]["must_not"].as_array())
            .flatten();
        for p in phrases {
            let m = &p["multi_match"];
            check(
                m["query"].is_string()
                    && m["fields"] == json!(["title^10", "body"])
                    && (m["type"] == "phrase" || m["type"] == "phrase_prefix"),
                "phrases over title^10 and body",
            );
        }
    }
    if let Some(after) = body.get("search_after") {
        check(
            after[0].is_number()
                && (after[1] == "document" || after[1] == "comment")
                && after[2].is_i64(),
            "search_after of score, kind and id",
        );
    }
    errors
}

/// The words of a body's phrases that must all be in a hit (the stand-in's whole search).
fn wanted_words(body: &Value) -> Vec<String> {
    body["query"]["bool"]["must"][0]["bool"]["should"][0]["bool"]["must"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["multi_match"]["query"].as_str())
        .flat_map(|q| q.split_whitespace().map(str::to_lowercase))
        .collect()
}

async fn search(stand: web::Data<Arc<Stand>>, body: web::Json<Value>) -> HttpResponse {
    let body = body.into_inner();
    stand.searches.lock().unwrap().push(body.clone());
    let errors = search_shape_errors(&body);
    if !errors.is_empty() {
        return HttpResponse::BadRequest()
            .insert_header(("x-elastic-product", "Elasticsearch"))
            .json(
                json!({"error": {"type": "parsing_exception", "reason": errors}, "status": 400}),
            );
    }
    let workspaces: Vec<i64> = body["query"]["bool"]["filter"][0]["terms"]["workspace_id"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_i64)
        .collect();
    let kind = body["query"]["bool"]["filter"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|f| f["term"]["kind"].as_str().map(str::to_string));
    let words = wanted_words(&body);
    let mut hits: Vec<Value> = final_actions(&stand)
        .into_values()
        .filter(|(action, _)| action == "index")
        .map(|(_, src)| src)
        .filter(|src| workspaces.contains(&src["workspace_id"].as_i64().unwrap_or(-1)))
        .filter(|src| kind.as_deref().is_none_or(|k| src["kind"] == k))
        .filter(|src| {
            let text = format!(
                "{} {}",
                src["title"].as_str().unwrap_or(""),
                src["body"].as_str().unwrap_or("")
            )
            .to_lowercase();
            words.iter().all(|w| text.contains(w.as_str()))
        })
        .map(|src| json!({"_source": src, "sort": [1.0, src["kind"], src["id"]]}))
        .collect();
    hits.sort_by_key(|h| {
        (
            h["sort"][1].as_str().unwrap().to_string(),
            h["sort"][2].as_i64(),
        )
    });
    if let Some(after) = body.get("search_after") {
        let key = (after[1].as_str().unwrap().to_string(), after[2].as_i64());
        hits.retain(|h| {
            (
                h["sort"][1].as_str().unwrap().to_string(),
                h["sort"][2].as_i64(),
            ) > key
        });
    }
    hits.truncate(body["size"].as_u64().unwrap() as usize);
    HttpResponse::Ok()
        .insert_header(("x-elastic-product", "Elasticsearch"))
        .json(json!({"took": 1, "timed_out": false, "hits": {"hits": hits}}))
}

async fn bulk(stand: web::Data<Arc<Stand>>, body: web::Bytes) -> HttpResponse {
    let refuse = stand.refuse.load(Ordering::SeqCst);
    if refuse > 0 {
        stand.refuse.store(refuse - 1, Ordering::SeqCst);
        stand.refused.fetch_add(1, Ordering::SeqCst);
        return HttpResponse::ServiceUnavailable()
            .insert_header(("x-elastic-product", "Elasticsearch"))
            .json(json!({"error": {"type": "cluster_block_exception"}, "status": 503}));
    }
    let lines: Vec<Value> = std::str::from_utf8(&body)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let items: Vec<Value> = lines
        .iter()
        .filter_map(|l| {
            let (action, meta) = l.as_object()?.iter().next()?;
            matches!(action.as_str(), "index" | "delete")
                .then(|| json!({action: {"_id": meta["_id"], "status": 200}}))
        })
        .collect();
    stand.bulks.lock().unwrap().push(lines);
    HttpResponse::Ok()
        .insert_header(("x-elastic-product", "Elasticsearch"))
        .json(json!({"took": 1, "errors": false, "items": items}))
}

async fn delete_by_query(stand: web::Data<Arc<Stand>>, body: web::Json<Value>) -> HttpResponse {
    let ids = body["query"]["bool"]["filter"][1]["terms"]["document_id"].clone();
    for id in ids.as_array().into_iter().flatten() {
        stand
            .deleted_documents
            .lock()
            .unwrap()
            .push(id.as_i64().unwrap());
    }
    HttpResponse::Ok()
        .insert_header(("x-elastic-product", "Elasticsearch"))
        .json(json!({"took": 1, "deleted": 0, "failures": []}))
}

async fn other(req: HttpRequest) -> HttpResponse {
    // Index creation and refresh.
    let _ = req;
    HttpResponse::Ok()
        .insert_header(("x-elastic-product", "Elasticsearch"))
        .json(json!({"acknowledged": true}))
}

fn start_stand(stand: Arc<Stand>) -> String {
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(stand.clone()))
            .route("/{index}/_bulk", web::post().to(bulk))
            .route("/{index}/_delete_by_query", web::post().to(delete_by_query))
            .route("/{index}/_search", web::post().to(search))
            .default_service(web::to(other))
    })
    .workers(1)
    .bind(("127.0.0.1", 0))
    .expect("bind");
    let port = server.addrs()[0].port();
    actix_web::rt::spawn(server.run());
    format!("http://127.0.0.1:{port}")
}

/// The last action on each `_id` across the answered bulk requests.
fn final_actions(stand: &Stand) -> std::collections::BTreeMap<String, (String, Value)> {
    let mut out = std::collections::BTreeMap::new();
    for lines in stand.bulks.lock().unwrap().iter() {
        let mut it = lines.iter();
        while let Some(meta) = it.next() {
            let (action, m) = meta.as_object().unwrap().iter().next().unwrap();
            let id = m["_id"].as_str().unwrap().to_string();
            let source = if action == "index" {
                let mut src = it.next().unwrap().clone();
                src["_version"] = m["version"].clone();
                src["_version_type"] = m["version_type"].clone();
                src
            } else {
                Value::Null
            };
            out.insert(id, (action.clone(), source));
        }
    }
    out
}

#[actix_web::test]
async fn the_indexer_retries_sends_current_rows_and_resumes_from_its_position() {
    let stand = Arc::new(Stand::default());
    stand.refuse.store(2, Ordering::SeqCst);
    let url = start_stand(stand.clone());
    let es_url = url.clone();
    let Some(app) = spawn_app_with(Backend::Sqlite, |s| {
        s.search.elasticsearch_url = es_url;
        s.search.elasticsearch_index = "stoa-stand".into();
    })
    .await
    else {
        return;
    };
    let alice = app.register("alice").await;
    let ws = app.create_workspace(&alice, "Indexed").await;
    let doc = app.create_document(ws, &alice, "First title").await;
    let res = app
        .patch(
            &format!("/api/v1/documents/{doc}"),
            &alice.token,
            json!({"content": "second words"}),
        )
        .await;
    assert_eq!(res.status, 200);
    let kept = app.create_comment(doc, &alice, "kept comment").await;
    let dropped = app.create_comment(doc, &alice, "dropped comment").await;
    let res = app
        .delete(&format!("/api/v1/comments/{dropped}"), &alice.token)
        .await;
    assert_eq!(res.status, 204);
    let gone = app.create_document(ws, &alice, "Gone").await;
    let res = app
        .delete(&format!("/api/v1/documents/{gone}"), &alice.token)
        .await;
    assert_eq!(res.status, 204);
    app.search_settled().await;

    assert_eq!(
        stand.refused.load(Ordering::SeqCst),
        2,
        "two refusals were retried"
    );
    let actions = final_actions(&stand);
    let (action, src) = &actions[&format!("d{doc}")];
    assert_eq!(action, "index");
    assert_eq!(
        src["body"], "second words",
        "the current text is sent: {src}"
    );
    assert_eq!(src["title"], "First title");
    assert_eq!(src["workspace_id"], ws);
    assert_eq!(src["_version"], 2, "the document's version");
    assert_eq!(src["_version_type"], "external_gte");
    assert_eq!(actions[&format!("c{kept}")].0, "index");
    assert_eq!(actions[&format!("c{kept}")].1["document_id"], doc);
    assert_eq!(actions[&format!("c{dropped}")].0, "delete");
    assert_eq!(actions[&format!("d{gone}")].0, "delete");
    assert!(stand.deleted_documents.lock().unwrap().contains(&gone));
    assert!(
        app.store.search_backlog(10).await.unwrap().is_empty(),
        "the position is saved"
    );

    // A second server on the same database starts from the saved position: it sends
    // nothing until something changes, then only that change.
    let sent = stand.bulks.lock().unwrap().len();
    let mut settings = Settings::load_with_env(None, Vec::new()).unwrap();
    settings.server.port = 0;
    settings.server.workers = 1;
    settings.data_dir = tempfile::tempdir().unwrap().keep();
    settings.auth.jwt_secret = JWT_SECRET.into();
    settings.database.url = app.db_url.clone();
    settings.search.elasticsearch_url = url;
    settings.search.elasticsearch_index = "stoa-stand".into();
    let second = Application::build(settings).await.expect("second server");
    let search = second.search();
    let handle = second.handle();
    actix_web::rt::spawn(second.run_until_stopped());
    search.settled().await;
    assert_eq!(
        stand.bulks.lock().unwrap().len(),
        sent,
        "nothing re-sent after a restart"
    );
    let later = app.create_document(ws, &alice, "Later").await;
    search.settled().await;
    let new: Vec<Value> = stand.bulks.lock().unwrap()[sent..]
        .iter()
        .flatten()
        .cloned()
        .collect();
    assert!(
        new.iter().any(|l| l["index"]["_id"] == format!("d{later}")),
        "{new:?}"
    );
    assert!(
        !new.iter().any(|l| l["index"]["_id"] == format!("d{doc}")),
        "{new:?}"
    );
    handle.stop(false).await;
}

#[actix_web::test]
async fn reindex_sends_every_document_and_comment_and_moves_positions_to_the_head() {
    let stand = Arc::new(Stand::default());
    let url = start_stand(stand.clone());
    // The server itself searches its database; only `stoa reindex` talks to the stand.
    let Some(app) = spawn_app_with(Backend::Sqlite, |_| {}).await else {
        return;
    };
    let alice = app.register("alice").await;
    let ws = app.create_workspace(&alice, "Rebuilt").await;
    let mut docs = Vec::new();
    for i in 0..7 {
        docs.push(app.create_document(ws, &alice, &format!("Doc {i}")).await);
    }
    let comment = app.create_comment(docs[0], &alice, "a comment").await;
    assert_eq!(app.store.search_backlog(10).await.unwrap().len(), 1);

    let mut settings = Settings::load_with_env(None, Vec::new()).unwrap();
    settings.search.elasticsearch_url = url;
    settings.search.elasticsearch_index = "stoa-rebuilt".into();
    let es = stoa::search::elastic::Elastic::new(&settings.search).unwrap();
    // Batches of 3: several bulk requests per kind.
    let (documents, comments) = stoa::search::elastic::reindex(&*app.store, &es, 3)
        .await
        .expect("reindex");
    assert_eq!((documents, comments), (7, 1));
    let actions = final_actions(&stand);
    for d in &docs {
        assert_eq!(actions[&format!("d{d}")].0, "index", "d{d}");
    }
    assert_eq!(actions[&format!("c{comment}")].0, "index");
    assert!(stand.bulks.lock().unwrap().len() >= 4, "batches of 3");
    assert!(
        app.store.search_backlog(10).await.unwrap().is_empty(),
        "every position is at its log's head"
    );
}

/// Searches go to Elasticsearch in the documented shape, limited to the caller's
/// workspaces, with filters and pages; what comes back is shown with the database's
/// current text.
#[actix_web::test]
async fn searches_reach_elasticsearch_in_the_documented_shape() {
    let stand = Arc::new(Stand::default());
    let url = start_stand(stand.clone());
    let Some(app) = spawn_app_with(Backend::Sqlite, |s| {
        s.search.elasticsearch_url = url;
        s.search.elasticsearch_index = "stoa-stand".into();
    })
    .await
    else {
        return;
    };
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let ws = app.create_workspace(&alice, "Ours").await;
    let theirs = app.create_workspace(&bob, "Theirs").await;
    let doc = app.create_document(ws, &alice, "Roadmap for spring").await;
    let comment = app
        .create_comment(doc, &alice, "the roadmap needs dates")
        .await;
    app.create_document(theirs, &bob, "Roadmap of another team")
        .await;
    app.search_settled().await;

    let get = |path: String| {
        let app = &app;
        let token = alice.token.clone();
        async move {
            let res = app.get(&path, &token).await;
            assert_eq!(res.status, 200, "{path}: {:?}", res.body);
            assert_eq!(res.body["backend"], "elasticsearch");
            res.body
        }
    };
    let found = |r: &Value| -> Vec<(String, i64)> {
        r["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h["kind"].as_str().unwrap().to_string(),
                    h["id"].as_i64().unwrap(),
                )
            })
            .collect()
    };
    let all = get(format!("/api/v1/workspaces/{ws}/search?q=roadmap")).await;
    assert_eq!(
        found(&all),
        [
            ("comment".to_string(), comment),
            ("document".to_string(), doc)
        ],
        "{all}"
    );
    let sent = stand.searches.lock().unwrap().last().cloned().unwrap();
    assert_eq!(
        sent["query"]["bool"]["filter"][0]["terms"]["workspace_id"],
        json!([ws]),
        "{sent}"
    );
    // A filter and a page of one, then the next page after it.
    let comments = get(format!(
        "/api/v1/workspaces/{ws}/search?q=roadmap&kind=comment"
    ))
    .await;
    assert_eq!(found(&comments), [("comment".to_string(), comment)]);
    let first = get(format!("/api/v1/workspaces/{ws}/search?q=roadmap&limit=1")).await;
    assert_eq!(found(&first).len(), 1);
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_string();
    let second = get(format!(
        "/api/v1/workspaces/{ws}/search?q=roadmap&limit=1&cursor={cursor}"
    ))
    .await;
    assert_eq!(found(&second), [("document".to_string(), doc)]);
    let sent = stand.searches.lock().unwrap().last().cloned().unwrap();
    assert_eq!(sent["search_after"][1], "comment", "{sent}");
    assert_eq!(sent["search_after"][2], comment, "{sent}");
    // Every body the stand-in received had the documented shape.
    for body in stand.searches.lock().unwrap().iter() {
        assert!(search_shape_errors(body).is_empty(), "{body}");
    }
}
