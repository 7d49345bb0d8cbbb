//! Reports against a hand-counted fixture: figures per member and document, the overview,
//! activity in the buckets of a time zone across daylight-saving changes, CSV that a CSV
//! library reads back, live rollups equal to rollups rebuilt from the log, and role checks.

use serde_json::{json, Value};
use stoa::domain::EventKind;
use stoa::store::ImportedEvent;

use crate::helpers::{spawn_app, Account, Backend, Resp, TestApp};

crate::on_every_backend!(
    reports_match_a_hand_counted_workspace,
    activity_buckets_follow_the_zone_across_daylight_saving,
    reports_need_admin_and_refuse_bad_parameters
);

async fn patch_content(app: &TestApp, doc: i64, by: &Account, text: &str) {
    let res = app
        .patch(
            &format!("/api/v1/documents/{doc}"),
            &by.token,
            json!({"content": text}),
        )
        .await;
    assert_eq!(res.status, 200, "{:?}", res.body);
}

async fn csv_of(app: &TestApp, path: &str, by: &Account) -> (Resp, Vec<Vec<String>>) {
    let res = app
        .call(
            awc::http::Method::GET,
            path,
            Some(&by.token),
            None,
            &[("accept", "text/csv")],
        )
        .await;
    assert_eq!(res.status, 200, "{path}: {:?}", res.body);
    let text = res.body.as_str().expect("CSV text").to_string();
    let rows = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(text.as_bytes())
        .records()
        .map(|r| r.expect("valid CSV").iter().map(str::to_string).collect())
        .collect();
    (res, rows)
}

fn row<'a>(items: &'a Value, key: &str, id: i64) -> &'a Value {
    items["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|r| r[key] == id)
        .unwrap_or_else(|| panic!("no row with {key} {id} in {items}"))
}

async fn reports_match_a_hand_counted_workspace(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    // A display name a spreadsheet would run as a formula.
    let res = app
        .call(
            awc::http::Method::POST,
            "/api/v1/auth/register",
            None,
            Some(json!({"email": "carol@example.com", "password": "correct horse battery", "display_name": "=carol"})),
            &[],
        )
        .await;
    assert_eq!(res.status, 201, "{:?}", res.body);
    let carol = Account {
        id: res.body["user"]["id"].as_i64().unwrap(),
        email: "carol@example.com".into(),
        token: res.body["access_token"].as_str().unwrap().into(),
        refresh: String::new(),
    };
    let dave = app.register("dave").await;
    let ws = app.create_workspace(&alice, "Counted").await; // 1 event (alice)
    app.add_member(ws, &alice, &bob, "admin").await; // 3 events (alice)
    app.add_member(ws, &alice, &carol, "editor").await;
    app.add_member(ws, &alice, &dave, "viewer").await;
    let a = app.create_document(ws, &carol, "Plan, \"quoted\"").await; // carol
    let b = app.create_document(ws, &carol, "Notes").await; // carol
    let c = app.create_document(ws, &alice, "Scratch").await; // alice
    patch_content(&app, a, &carol, "one").await;
    patch_content(&app, a, &carol, "two").await;
    patch_content(&app, a, &bob, "three").await;
    patch_content(&app, b, &carol, "four").await;
    app.create_comment(a, &bob, "first").await;
    app.create_comment(a, &bob, "second").await;
    app.create_comment(b, &carol, "third").await;
    let res = app
        .delete(&format!("/api/v1/documents/{c}"), &alice.token)
        .await;
    assert_eq!(res.status, 204, "{:?}", res.body);
    // alice 6 events, carol 6, bob 3: 15 in all.

    let members = app
        .get(
            &format!("/api/v1/workspaces/{ws}/reports/members"),
            &bob.token,
        )
        .await;
    assert_eq!(members.status, 200, "{:?}", members.body);
    assert_eq!(members.body["items"].as_array().unwrap().len(), 4);
    let expect = [
        (&alice, 6, 1, 0, 0, 0),
        (&carol, 6, 2, 2, 3, 1),
        (&bob, 3, 0, 1, 1, 2),
        (&dave, 0, 0, 0, 0, 0),
    ];
    for (who, events, created, edited, edits, comments) in expect {
        let r = row(&members.body, "user_id", who.id);
        assert_eq!(
            (
                r["events"].as_i64().unwrap(),
                r["documents_created"].as_i64().unwrap(),
                r["documents_edited"].as_i64().unwrap(),
                r["edits"].as_i64().unwrap(),
                r["comments"].as_i64().unwrap()
            ),
            (events, created, edited, edits, comments),
            "{r}"
        );
        assert_eq!(r["last_active"].is_null(), events == 0, "{r}");
    }

    let docs = app
        .get(
            &format!("/api/v1/workspaces/{ws}/reports/documents"),
            &alice.token,
        )
        .await;
    assert_eq!(docs.status, 200, "{:?}", docs.body);
    assert_eq!(
        docs.body["items"].as_array().unwrap().len(),
        2,
        "the deleted one is gone"
    );
    let ra = row(&docs.body, "document_id", a);
    assert_eq!(
        (
            ra["edits"].as_i64(),
            ra["comments"].as_i64(),
            ra["editors"].as_i64()
        ),
        (Some(3), Some(2), Some(2))
    );
    let rb = row(&docs.body, "document_id", b);
    assert_eq!(
        (
            rb["edits"].as_i64(),
            rb["comments"].as_i64(),
            rb["editors"].as_i64()
        ),
        (Some(1), Some(1), Some(1))
    );

    let overview = app
        .get(
            &format!("/api/v1/workspaces/{ws}/reports/overview"),
            &alice.token,
        )
        .await;
    assert_eq!(overview.status, 200, "{:?}", overview.body);
    let o = &overview.body;
    assert_eq!(o["members"], 4);
    assert_eq!(
        o["members_by_role"],
        json!({"owner": 1, "admin": 1, "editor": 1, "viewer": 1})
    );
    assert_eq!(
        (
            o["documents"].as_i64(),
            o["comments"].as_i64(),
            o["events"].as_i64()
        ),
        (Some(2), Some(3), Some(15))
    );
    assert_eq!(
        (
            o["active_users_7d"].as_i64(),
            o["active_users_30d"].as_i64()
        ),
        (Some(3), Some(3))
    );

    let activity = app
        .get(
            &format!("/api/v1/workspaces/{ws}/reports/activity?bucket=hour&tz=Asia/Kolkata"),
            &alice.token,
        )
        .await;
    assert_eq!(activity.status, 200, "{:?}", activity.body);
    let act = &activity.body;
    assert_eq!(act["total"], 15);
    assert_eq!(
        act["buckets"].as_array().unwrap().len(),
        30 * 24 + 1,
        "{}",
        act["from"]
    );
    let by_kind: Value = act["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["total"].as_i64() > Some(0))
        .fold(json!({}), |mut acc, b| {
            for (k, v) in b["by_kind"].as_object().unwrap() {
                acc[k] = json!(acc[k].as_i64().unwrap_or(0) + v.as_i64().unwrap());
            }
            acc
        });
    assert_eq!(
        by_kind,
        json!({"workspace.created": 1, "member.added": 3, "document.created": 3,
               "document.updated": 4, "comment.created": 3, "document.deleted": 1})
    );
    assert!(
        act["from"].as_str().unwrap().ends_with("+05:30"),
        "{}",
        act["from"]
    );

    // CSV: the same figures, read back by a CSV library, with quoting and defused formulas.
    let (res, rows) = csv_of(
        &app,
        &format!("/api/v1/workspaces/{ws}/reports/members"),
        &alice,
    )
    .await;
    assert!(res.header("content-type").unwrap().starts_with("text/csv"));
    let disposition = res.header("content-disposition").unwrap();
    assert!(
        disposition.starts_with(&format!("attachment; filename=\"workspace-{ws}-members-")),
        "{disposition}"
    );
    assert_eq!(rows[0][..3], ["user_id", "display_name", "email"]);
    assert_eq!(rows.len(), 5);
    let carol_row = rows.iter().find(|r| r[0] == carol.id.to_string()).unwrap();
    assert_eq!(carol_row[1], "'=carol", "a formula-like name is defused");
    assert_eq!(carol_row[5..10], ["6", "2", "2", "3", "1"]);
    let (_, rows) = csv_of(
        &app,
        &format!("/api/v1/workspaces/{ws}/reports/documents?format=csv"),
        &alice,
    )
    .await;
    let a_row = rows.iter().find(|r| r[0] == a.to_string()).unwrap();
    assert_eq!(a_row[1], "Plan, \"quoted\"");
    let (_, rows) = csv_of(
        &app,
        &format!("/api/v1/workspaces/{ws}/reports/overview"),
        &alice,
    )
    .await;
    assert_eq!(rows[0][1], "members");
    assert_eq!(rows[1][1..9], ["4", "1", "1", "1", "1", "2", "3", "15"]);
    let (_, rows) = csv_of(
        &app,
        &format!("/api/v1/workspaces/{ws}/reports/activity"),
        &alice,
    )
    .await;
    assert_eq!(rows[0][..3], ["start", "end", "total"]);
    let total: i64 = rows[1..].iter().map(|r| r[2].parse::<i64>().unwrap()).sum();
    assert_eq!(total, 15);

    // Pagination: one member per page, in user id order, and the CSV's Link header.
    let page = app
        .get(
            &format!("/api/v1/workspaces/{ws}/reports/members?limit=1"),
            &alice.token,
        )
        .await;
    assert_eq!(page.body["items"][0]["user_id"], alice.id);
    let next = page.body["next_cursor"].as_str().unwrap().to_string();
    let page2 = app
        .get(
            &format!("/api/v1/workspaces/{ws}/reports/members?limit=1&cursor={next}"),
            &alice.token,
        )
        .await;
    assert_eq!(page2.body["items"][0]["user_id"], bob.id);
    let (res, _) = csv_of(
        &app,
        &format!("/api/v1/workspaces/{ws}/reports/members?limit=1"),
        &alice,
    )
    .await;
    assert_eq!(
        res.header("link").unwrap(),
        format!("<?format=csv&cursor={next}>; rel=\"next\"")
    );

    // Rollups rebuilt from the log are the ones kept live.
    let before = reports(&app, ws, &alice).await;
    app.store.rebuild_report_rollups(ws).await.expect("rebuild");
    assert_eq!(reports(&app, ws, &alice).await, before);
}

async fn reports(app: &TestApp, ws: i64, by: &Account) -> Vec<Value> {
    let mut out = Vec::new();
    for r in [
        "members",
        "documents",
        "activity?bucket=week&tz=Europe/Berlin",
    ] {
        let res = app
            .get(&format!("/api/v1/workspaces/{ws}/reports/{r}"), &by.token)
            .await;
        assert_eq!(res.status, 200, "{:?}", res.body);
        out.push(res.body);
    }
    out
}

fn at(rfc3339: &str) -> i64 {
    let ts: jiff::Timestamp = rfc3339.parse().unwrap();
    ts.as_millisecond()
}

async fn activity_buckets_follow_the_zone_across_daylight_saving(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let alice = app.register("alice").await;
    let ws = app.create_workspace(&alice, "Berlin").await;
    let doc = app.create_document(ws, &alice, "Zeit").await;
    // Berlin moves from +01:00 to +02:00 at 01:00 UTC on 29 March 2026.
    let placed = [
        ("2026-03-28T22:30:00Z", "comment.created"), // 23:30 on the 28th
        ("2026-03-28T23:30:00Z", "comment.created"), // 00:30 on the 29th (+01:00)
        ("2026-03-29T00:59:00Z", "document.edited"), // 01:59 on the 29th, last minute of winter
        ("2026-03-29T01:00:00Z", "document.edited"), // 03:00 on the 29th (+02:00)
        ("2026-03-29T21:59:00Z", "document.edited"), // 23:59 on the 29th
        ("2026-03-29T22:00:00Z", "comment.created"), // 00:00 on the 30th
    ];
    let events: Vec<ImportedEvent> = placed
        .iter()
        .map(|(t, kind)| ImportedEvent {
            kind: EventKind::parse(kind).expect("a kind the log knows"),
            actor: alice.id,
            subject: format!("document:{doc}"),
            data: json!({"document_id": doc}),
            at: at(t),
        })
        .collect();
    app.store.import_events(ws, &events).await.expect("import");
    app.store.rebuild_report_rollups(ws).await.expect("rebuild");

    let get = |q: String| {
        let app = &app;
        let token = alice.token.clone();
        async move {
            let res = app
                .get(
                    &format!("/api/v1/workspaces/{ws}/reports/activity?{q}"),
                    &token,
                )
                .await;
            assert_eq!(res.status, 200, "{q}: {:?}", res.body);
            res.body
        }
    };
    let berlin = get("bucket=day&tz=Europe/Berlin&from=2026-03-28&to=2026-03-31".into()).await;
    let days: Vec<(String, String, i64)> = berlin["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["start"].as_str().unwrap().into(),
                b["end"].as_str().unwrap().into(),
                b["total"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        days,
        [
            (
                "2026-03-28T00:00:00+01:00".into(),
                "2026-03-29T00:00:00+01:00".into(),
                1
            ),
            (
                "2026-03-29T00:00:00+01:00".into(),
                "2026-03-30T00:00:00+02:00".into(),
                4
            ),
            (
                "2026-03-30T00:00:00+02:00".into(),
                "2026-03-31T00:00:00+02:00".into(),
                1
            ),
        ]
    );
    assert_eq!(
        berlin["buckets"][1]["by_kind"],
        json!({"comment.created": 1, "document.edited": 3})
    );
    // The same events in UTC days: 28th 2, 29th 4, 30th 0.
    let utc = get("bucket=day&from=2026-03-28&to=2026-03-31".into()).await;
    let totals: Vec<i64> = utc["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["total"].as_i64().unwrap())
        .collect();
    assert_eq!(totals, [2, 4, 0]);
    // The short day has 23 hour buckets; the hour 02:00-03:00 does not exist in Berlin.
    let hours = get("bucket=hour&tz=Europe/Berlin&from=2026-03-29&to=2026-03-30".into()).await;
    let hours = hours["buckets"].as_array().unwrap();
    assert_eq!(hours.len(), 23);
    assert_eq!(hours[1]["start"], "2026-03-29T01:00:00+01:00");
    assert_eq!(hours[2]["start"], "2026-03-29T03:00:00+02:00");
    assert_eq!(
        (hours[1]["total"].as_i64(), hours[2]["total"].as_i64()),
        (Some(1), Some(1))
    );
    // A week bucket starts on Monday 23 March at local midnight and holds all six.
    let week = get(
        "bucket=week&tz=Europe/Berlin&from=2026-03-28T12:00:00Z&to=2026-03-29T12:00:00Z".into(),
    )
    .await;
    assert_eq!(week["buckets"][0]["start"], "2026-03-23T00:00:00+01:00");
    assert_eq!(week["buckets"][0]["end"], "2026-03-30T00:00:00+02:00");
    assert_eq!(
        week["buckets"][0]["total"], 5,
        "the one at 00:00 on the 30th is next week's"
    );
    // Half-hour zone: 22:30 UTC on the 28th is 04:00 on the 29th in Kolkata.
    // and 21:59 UTC on the 29th is 03:29 on the 30th.
    let kolkata = get("bucket=day&tz=Asia/Kolkata&from=2026-03-28&to=2026-03-31".into()).await;
    let totals: Vec<i64> = kolkata["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["total"].as_i64().unwrap())
        .collect();
    assert_eq!(totals, [0, 4, 2]);
}

async fn reports_need_admin_and_refuse_bad_parameters(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let owner = app.register("owner").await;
    let editor = app.register("editor").await;
    let viewer = app.register("viewer").await;
    let stranger = app.register("stranger").await;
    let ws = app.create_workspace(&owner, "Private").await;
    app.add_member(ws, &owner, &editor, "editor").await;
    app.add_member(ws, &owner, &viewer, "viewer").await;
    for report in ["activity", "members", "documents", "overview"] {
        let path = format!("/api/v1/workspaces/{ws}/reports/{report}");
        for (who, status) in [(&editor, 403), (&viewer, 403), (&stranger, 404)] {
            let res = app.get(&path, &who.token).await;
            assert_eq!(res.status, status, "{path}: {:?}", res.body);
        }
        let res = app
            .get(
                &format!("/api/v1/workspaces/999999/reports/{report}"),
                &owner.token,
            )
            .await;
        assert_eq!(res.status, 404);
        let res = app
            .call(awc::http::Method::GET, &path, None, None, &[])
            .await;
        assert_eq!(res.status, 401);
    }
    let base = format!("/api/v1/workspaces/{ws}/reports");
    for (query, status) in [
        ("activity?tz=../../etc/passwd", 422),
        ("activity?tz=Mars/Olympus", 422),
        ("activity?tz=%00", 422),
        ("activity?bucket=minute", 400),
        ("activity?from=2026-03-02&to=2026-03-01", 422),
        ("activity?from=2020-01-01&to=2026-01-01&bucket=hour", 422),
        ("activity?from=yesterday", 422),
        ("activity?to=2026-02-30", 422),
        ("activity?from=99999-01-01", 422),
        ("activity?format=xml", 400),
        ("members?limit=0", 422),
        ("members?limit=20000", 422),
        ("documents?cursor=abc", 400),
        ("documents?cursor=99999999999999999999", 400),
    ] {
        let res = app.get(&format!("{base}/{query}"), &owner.token).await;
        assert_eq!(res.status, status, "{query}: {:?}", res.body);
        assert!(
            res.header("content-type")
                .unwrap()
                .starts_with("application/problem+json"),
            "{query}"
        );
    }
    // At most 1,000 buckets: 1,000 hours are answered, one more is refused.
    let hours = |to: &str| format!("{base}/activity?bucket=hour&from=2026-01-01T00:00:00Z&to={to}");
    let res = app.get(&hours("2026-02-11T16:00:00Z"), &owner.token).await;
    assert_eq!(res.status, 200, "{:?}", res.body);
    assert_eq!(res.body["buckets"].as_array().unwrap().len(), 1000);
    let res = app.get(&hours("2026-02-11T17:00:00Z"), &owner.token).await;
    assert_eq!(res.status, 422, "{:?}", res.body);
    assert!(
        res.body["detail"].as_str().unwrap_or("").contains("1000"),
        "{:?}",
        res.body
    );
}
