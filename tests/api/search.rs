//! Search conformance: ranking, highlighting, filters, pagination, access (other
//! workspaces, lost membership), index freshness after edits and deletes, and hostile query
//! strings. The same suite runs on every backend available: SQLite FTS5 and PostgreSQL
//! full text always, Elasticsearch when `STOA_TEST_ELASTICSEARCH_URL` is set.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with, Account, Backend, TestApp};

/// Where a suite runs: the database's own index on either database, or Elasticsearch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    Sqlite,
    Postgres,
    Elasticsearch,
}

macro_rules! on_every_search_backend {
    ($($name:ident),* $(,)?) => {
        mod sqlite_fts5 {
            $( #[actix_web::test] async fn $name() { super::$name(super::Setup::Sqlite).await } )*
        }
        mod postgres_fts {
            $( #[actix_web::test] async fn $name() { super::$name(super::Setup::Postgres).await } )*
        }
        mod elasticsearch {
            $( #[actix_web::test] async fn $name() { super::$name(super::Setup::Elasticsearch).await } )*
        }
    };
}

on_every_search_backend!(
    search_ranks_highlights_and_filters,
    search_keeps_to_what_the_caller_may_read,
    search_follows_edits_and_deletes,
    search_pages_without_gaps_or_repeats,
    search_survives_hostile_queries
);

/// A server on the backend under test. Elasticsearch runs when `STOA_TEST_ELASTICSEARCH_URL`
/// names a server (none can be installed on the machines this suite usually runs on, so
/// without it those tests say they were skipped), with a fresh index per test.
pub async fn app_for(setup: Setup) -> Option<TestApp> {
    match setup {
        Setup::Sqlite => spawn_app(Backend::Sqlite).await,
        Setup::Postgres => spawn_app(Backend::Postgres).await,
        Setup::Elasticsearch => {
            let url = std::env::var("STOA_TEST_ELASTICSEARCH_URL").unwrap_or_default();
            if url.is_empty() {
                eprintln!("SKIPPED: STOA_TEST_ELASTICSEARCH_URL is not set (no Elasticsearch to run against)");
                return None;
            }
            spawn_app_with(Backend::Sqlite, |s| {
                s.search.elasticsearch_url = url;
                s.search.elasticsearch_index = format!("stoa-test-{}", stoa::auth::random_hex(4));
            })
            .await
        }
    }
}

/// Waits until the search index holds every change committed so far.
pub async fn settle(app: &TestApp) {
    app.search_settled().await;
}

async fn search(app: &TestApp, path: &str, by: &Account) -> Value {
    let res = app.get(path, &by.token).await;
    assert_eq!(res.status, 200, "{path}: {:?}", res.body);
    res.body
}

fn ids(results: &Value) -> Vec<(String, i64)> {
    results["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|h| {
            (
                h["kind"].as_str().unwrap().to_string(),
                h["id"].as_i64().unwrap(),
            )
        })
        .collect()
}

async fn doc(app: &TestApp, ws: i64, by: &Account, title: &str, content: &str) -> i64 {
    let res = app
        .post(
            &format!("/api/v1/workspaces/{ws}/documents"),
            &by.token,
            json!({"title": title, "content": content}),
        )
        .await;
    assert_eq!(res.status, 201, "{:?}", res.body);
    res.body["id"].as_i64().unwrap()
}

async fn search_ranks_highlights_and_filters(setup: Setup) {
    let Some(app) = app_for(setup).await else {
        return;
    };
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let ws = app.create_workspace(&alice, "Plans").await;
    app.add_member(ws, &alice, &bob, "editor").await;
    let body_match = doc(
        &app,
        ws,
        &alice,
        "Weekly notes",
        "We discussed the Roadmap for spring and other things.",
    )
    .await;
    let title_match = doc(&app, ws, &bob, "Roadmap 2027", "Milestones and owners.").await;
    let _other = doc(&app, ws, &alice, "Lunch", "Pizza on Friday.").await;
    let comment = app
        .create_comment(body_match, &bob, "Is the roadmap final?")
        .await;
    let xss = doc(
        &app,
        ws,
        &alice,
        "<img src=x onerror=alert(1)>",
        "<script>alert('roadmap')</script>",
    )
    .await;
    settle(&app).await;

    let r = search(
        &app,
        &format!("/api/v1/workspaces/{ws}/search?q=roadmap"),
        &alice,
    )
    .await;
    let found = ids(&r);
    assert_eq!(found.len(), 4, "{r}");
    assert_eq!(
        found[0],
        ("document".to_string(), title_match),
        "the title match ranks first: {r}"
    );
    let by_id = |kind: &str, id: i64| {
        r["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["kind"] == kind && h["id"] == id)
            .cloned()
            .unwrap()
    };
    let top = by_id("document", title_match);
    assert_eq!(top["title_html"], "<mark>Roadmap</mark> 2027");
    assert!(top["snippet"].is_null(), "{top}");
    let body = by_id("document", body_match);
    assert_eq!(
        body["snippet"],
        "We discussed the <mark>Roadmap</mark> for spring and other things."
    );
    assert_eq!(body["title_html"], "Weekly notes");
    let c = by_id("comment", comment);
    assert_eq!(c["document_id"], body_match);
    assert_eq!(c["title"], "Weekly notes");
    assert_eq!(c["snippet"], "Is the <mark>roadmap</mark> final?");
    let x = by_id("document", xss);
    assert_eq!(x["title_html"], "&lt;img src=x onerror=alert(1)&gt;");
    assert_eq!(
        x["snippet"],
        "&lt;script&gt;alert(&#39;<mark>roadmap</mark>&#39;)&lt;/script&gt;"
    );
    let scores: Vec<f64> = r["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["score"].as_f64().unwrap())
        .collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");

    // Filters: kind, author, dates.
    let r = search(
        &app,
        &format!("/api/v1/workspaces/{ws}/search?q=roadmap&kind=comment"),
        &alice,
    )
    .await;
    assert_eq!(ids(&r), [("comment".to_string(), comment)]);
    let r = search(
        &app,
        &format!("/api/v1/workspaces/{ws}/search?q=roadmap&author={}", bob.id),
        &alice,
    )
    .await;
    assert_eq!(
        ids(&r).into_iter().collect::<BTreeSet<_>>(),
        [
            ("comment".to_string(), comment),
            ("document".to_string(), title_match)
        ]
        .into_iter()
        .collect()
    );
    let r = search(
        &app,
        &format!("/api/v1/workspaces/{ws}/search?q=roadmap&from=2999-01-01"),
        &alice,
    )
    .await;
    assert!(ids(&r).is_empty());
    let r = search(
        &app,
        &format!("/api/v1/workspaces/{ws}/search?q=roadmap&to=2000-01-01"),
        &alice,
    )
    .await;
    assert!(ids(&r).is_empty());

    // Phrases, prefixes, exclusions, alternatives.
    let r = search(
        &app,
        &format!("/api/v1/workspaces/{ws}/search?q=%22roadmap%20for%20spring%22"),
        &alice,
    )
    .await;
    assert_eq!(ids(&r), [("document".to_string(), body_match)]);
    let r = search(
        &app,
        &format!("/api/v1/workspaces/{ws}/search?q=road*&kind=document"),
        &alice,
    )
    .await;
    assert_eq!(ids(&r).len(), 3);
    let r = search(
        &app,
        &format!("/api/v1/workspaces/{ws}/search?q=roadmap%20-spring&kind=document"),
        &alice,
    )
    .await;
    assert!(
        !ids(&r).contains(&("document".to_string(), body_match)),
        "{r}"
    );
    let r = search(
        &app,
        &format!("/api/v1/workspaces/{ws}/search?q=pizza%20OR%20milestones"),
        &alice,
    )
    .await;
    assert_eq!(ids(&r).len(), 2, "{r}");
}

async fn search_keeps_to_what_the_caller_may_read(setup: Setup) {
    let Some(app) = app_for(setup).await else {
        return;
    };
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    let shared = app.create_workspace(&alice, "Shared").await;
    let own = app.create_workspace(&bob, "Own").await;
    let secret = app.create_workspace(&carol, "Secret").await;
    app.add_member(shared, &alice, &bob, "viewer").await;
    let in_shared = doc(&app, shared, &alice, "Budget shared", "").await;
    let in_own = doc(&app, own, &bob, "Budget mine", "").await;
    let _in_secret = doc(&app, secret, &carol, "Budget secret", "budget budget").await;
    settle(&app).await;

    let r = search(&app, "/api/v1/search?q=budget", &bob).await;
    assert_eq!(
        ids(&r).into_iter().collect::<BTreeSet<_>>(),
        [
            ("document".to_string(), in_shared),
            ("document".to_string(), in_own)
        ]
        .into_iter()
        .collect(),
        "{r}"
    );
    let res = app
        .get(
            &format!("/api/v1/workspaces/{secret}/search?q=budget"),
            &bob.token,
        )
        .await;
    assert_eq!(res.status, 404);
    let r = search(
        &app,
        &format!("/api/v1/workspaces/{own}/search?q=budget"),
        &bob,
    )
    .await;
    assert_eq!(ids(&r), [("document".to_string(), in_own)]);

    // Removed from the shared workspace: nothing of it is found from that moment on.
    let res = app
        .delete(
            &format!("/api/v1/workspaces/{shared}/members/{}", bob.id),
            &alice.token,
        )
        .await;
    assert_eq!(res.status, 204, "{:?}", res.body);
    let r = search(&app, "/api/v1/search?q=budget", &bob).await;
    assert_eq!(ids(&r), [("document".to_string(), in_own)]);
    let res = app
        .get(
            &format!("/api/v1/workspaces/{shared}/search?q=budget"),
            &bob.token,
        )
        .await;
    assert_eq!(res.status, 404);
    let res = app
        .call(
            awc::http::Method::GET,
            "/api/v1/search?q=budget",
            None,
            None,
            &[],
        )
        .await;
    assert_eq!(res.status, 401);
}

async fn search_follows_edits_and_deletes(setup: Setup) {
    let Some(app) = app_for(setup).await else {
        return;
    };
    let alice = app.register("alice").await;
    let ws = app.create_workspace(&alice, "Edits").await;
    let d = doc(&app, ws, &alice, "Draft", "original wording").await;
    let c = app.create_comment(d, &alice, "first thought").await;
    settle(&app).await;
    let find = |q: &'static str| {
        let app = &app;
        let alice = &alice;
        async move { ids(&search(app, &format!("/api/v1/workspaces/{ws}/search?q={q}"), alice).await) }
    };
    assert_eq!(find("original").await.len(), 1);
    let res = app
        .patch(
            &format!("/api/v1/documents/{d}"),
            &alice.token,
            json!({"content": "revised wording", "title": "Final"}),
        )
        .await;
    assert_eq!(res.status, 200);
    let res = app
        .patch(
            &format!("/api/v1/comments/{c}"),
            &alice.token,
            json!({"body": "second thought"}),
        )
        .await;
    assert_eq!(res.status, 200, "{:?}", res.body);
    settle(&app).await;
    assert!(find("original").await.is_empty());
    assert!(find("draft").await.is_empty());
    assert_eq!(find("revised").await, [("document".to_string(), d)]);
    assert_eq!(find("final").await, [("document".to_string(), d)]);
    assert!(find("first").await.is_empty());
    assert_eq!(find("second").await, [("comment".to_string(), c)]);
    let res = app
        .delete(&format!("/api/v1/comments/{c}"), &alice.token)
        .await;
    assert_eq!(res.status, 204);
    settle(&app).await;
    assert!(find("second").await.is_empty());
    let res = app
        .delete(&format!("/api/v1/documents/{d}"), &alice.token)
        .await;
    assert_eq!(res.status, 204);
    settle(&app).await;
    assert!(find("revised").await.is_empty());
    // Text past the searchable prefix is kept but not found.
    let long = format!("{} needle", "x ".repeat(stoa::domain::SEARCHABLE_CHARS / 2));
    let big = doc(&app, ws, &alice, "Long", &format!("haystack {long}")).await;
    settle(&app).await;
    assert_eq!(find("haystack").await, [("document".to_string(), big)]);
    assert!(find("needle").await.is_empty());
}

async fn search_pages_without_gaps_or_repeats(setup: Setup) {
    let Some(app) = app_for(setup).await else {
        return;
    };
    let alice = app.register("alice").await;
    let ws = app.create_workspace(&alice, "Many").await;
    let mut made = BTreeSet::new();
    for i in 0..23 {
        // Different lengths give different scores; repeats of one length tie.
        let content = format!("alpha {}", "filler ".repeat(i % 5));
        made.insert((
            "document".to_string(),
            doc(&app, ws, &alice, &format!("Doc {i}"), &content).await,
        ));
    }
    settle(&app).await;
    let mut seen = Vec::new();
    let mut cursor = String::new();
    let mut pages = 0;
    loop {
        let r = search(
            &app,
            &format!("/api/v1/workspaces/{ws}/search?q=alpha&limit=10&cursor={cursor}"),
            &alice,
        )
        .await;
        seen.extend(ids(&r));
        pages += 1;
        match r["next_cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 23, "{seen:?}");
    assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), made);
    for bad in ["%21%21", "AAAA", "bm90LWEta2V5"] {
        let res = app
            .get(
                &format!("/api/v1/workspaces/{ws}/search?q=alpha&cursor={bad}"),
                &alice.token,
            )
            .await;
        assert_eq!(res.status, 400, "{bad}: {:?}", res.body);
    }
}

async fn search_survives_hostile_queries(setup: Setup) {
    let Some(app) = app_for(setup).await else {
        return;
    };
    let alice = app.register("alice").await;
    let ws = app.create_workspace(&alice, "Hostile").await;
    let d = doc(
        &app,
        ws,
        &alice,
        "Quotes \"and\" operators",
        "don't OR NOT AND near(x) col:val 1=1 see stoa.example.org/path at the café 東京",
    )
    .await;
    settle(&app).await;
    let hostile = [
        "%22unclosed",
        "%27%20OR%201%3D1%20--",
        "a%3A*%20%26%20!b%20%7C%20c%20%3C-%3E%20d",
        "NEAR(a%20b)",
        "col%3Aval",
        "((((((",
        "***",
        "-",
        "OR",
        "AND%20OR%20NOT",
        "%5E%24%5C",
        "%E2%80%AE%D7%A9%D7%9C%D7%95%D7%9D",
        "%F0%9F%A6%80",
        "don%27t",
        "%22%22%22%22",
        "a%00b",
        "title%3A%20x",
        "%7B%22match_all%22%3A%7B%7D%7D",
    ];
    for q in hostile {
        let res = app
            .get(
                &format!("/api/v1/workspaces/{ws}/search?q={q}"),
                &alice.token,
            )
            .await;
        assert!(
            res.status == 200 || res.status == 422,
            "{q}: {} {:?}",
            res.status,
            res.body
        );
    }
    // What users type around punctuation still finds the words.
    let r = search(
        &app,
        &format!("/api/v1/workspaces/{ws}/search?q=don%27t"),
        &alice,
    )
    .await;
    assert_eq!(ids(&r), [("document".to_string(), d)]);
    let r = search(
        &app,
        &format!("/api/v1/workspaces/{ws}/search?q=col%3Aval"),
        &alice,
    )
    .await;
    assert_eq!(ids(&r), [("document".to_string(), d)]);
    let r = search(
        &app,
        &format!("/api/v1/workspaces/{ws}/search?q=example.org"),
        &alice,
    )
    .await;
    assert_eq!(
        ids(&r),
        [("document".to_string(), d)],
        "host names are words on every backend"
    );
    let r = search(
        &app,
        &format!("/api/v1/workspaces/{ws}/search?q=%7B%22match_all%22%3A%7B%7D%7D"),
        &alice,
    )
    .await;
    assert!(ids(&r).is_empty(), "{r}");
    for (q, status) in [
        ("", 422),
        ("%20%20", 422),
        (&"a".repeat(600), 422),
        (&"w%20".repeat(40), 422),
        ("-only", 422),
    ] {
        let res = app
            .get(
                &format!("/api/v1/workspaces/{ws}/search?q={q}"),
                &alice.token,
            )
            .await;
        assert_eq!(res.status, status, "{q}: {:?}", res.body);
    }
    let res = app
        .get(&format!("/api/v1/workspaces/{ws}/search"), &alice.token)
        .await;
    assert_eq!(res.status, 400, "q is required: {:?}", res.body);
    let res = app
        .get(
            &format!("/api/v1/workspaces/{ws}/search?q=x&limit=51"),
            &alice.token,
        )
        .await;
    assert_eq!(res.status, 422);
    let res = app
        .get(
            &format!("/api/v1/workspaces/{ws}/search?q=x&kind=folder"),
            &alice.token,
        )
        .await;
    assert_eq!(res.status, 400);
}
