//! Account self-service and data rights: the profile, the export, and deletion, after
//! which nothing of the person is left in the database but their id on what they wrote,
//! shown as "Deleted user", and their sockets are closed.

use awc::http::Method;
use serde_json::json;

use crate::helpers::{spawn_app, Backend, TestApp};
use crate::ws::Ws;

crate::on_every_backend!(
    the_profile_and_the_export_are_the_persons_own,
    deleting_an_account_leaves_only_the_attribution
);

async fn the_profile_and_the_export_are_the_persons_own(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let ada = app.register("ada").await;
    let ws = app.create_workspace(&ada, "Analytical").await;
    let doc = app.create_document(ws, &ada, "Notes").await;
    app.create_comment(doc, &ada, "on the engine").await;
    let r = app
        .patch(
            "/api/v1/me",
            &ada.token,
            json!({"display_name": "Ada Lovelace", "notification_preferences": {"email_mentions": true}}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["display_name"], "Ada Lovelace");
    assert_eq!(
        r.body["notification_preferences"],
        json!({"email_mentions": true, "email_replies": false, "email_membership": false})
    );
    let me = app.get("/api/v1/me", &ada.token).await;
    assert_eq!(me.body["notification_preferences"]["email_mentions"], true);
    for bad in [
        json!({}),
        json!({"display_name": ""}),
        json!({"notification_preferences": {"sms": true}}),
        json!({"email": "other@example.com"}),
    ] {
        let r = app.patch("/api/v1/me", &ada.token, bad.clone()).await;
        assert_eq!(r.status, 422, "{bad}: {:?}", r.body);
    }
    let export = app.get("/api/v1/me/export", &ada.token).await;
    assert_eq!(export.status, 200);
    assert!(export
        .header("content-disposition")
        .is_some_and(|d| d.starts_with("attachment")));
    let e = &export.body;
    assert_eq!(e["account"]["email"], ada.email.as_str());
    assert_eq!(e["account"]["display_name"], "Ada Lovelace");
    assert_eq!(e["memberships"][0]["workspace"], "Analytical");
    assert_eq!(e["memberships"][0]["role"], "owner");
    assert_eq!(e["comments"][0]["body"], "on the engine");
    assert!(e["events"].as_array().is_some_and(|ev| ev.len() >= 3));
    assert_eq!(e["sessions"].as_array().map(Vec::len), Some(1));
    // Only one's own: another account's export holds none of it.
    let bob = app.register("bob").await;
    let theirs = app.get("/api/v1/me/export", &bob.token).await;
    assert!(!theirs.body.to_string().contains("on the engine"));
    assert_eq!(app.get("/api/v1/me/export", "forged").await.status, 401);
}

async fn delete_me(app: &TestApp, token: &str, password: &str) -> crate::helpers::Resp {
    app.call(
        Method::DELETE,
        "/api/v1/me",
        Some(token),
        Some(json!({"password": password})),
        &[],
    )
    .await
}

async fn deleting_an_account_leaves_only_the_attribution(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let ada = app.register("ada").await;
    let bob = app.register("bob").await;
    let ws = app.create_workspace(&ada, "Analytical").await;
    app.add_member(ws, &ada, &bob, "editor").await;
    let doc = app.create_document(ws, &ada, "Plan").await;
    let comment = app.create_comment(doc, &ada, "my words stay").await;
    // Bob invites her address to a workspace of his, and she accepts: the invitation and
    // its events name her address.
    let ws2 = app.create_workspace(&bob, "Difference").await;
    {
        use stoa::store::Invitations;
        let email = stoa::domain::Email::parse(&ada.email).unwrap();
        let digest = stoa::auth::token_digest("ada-invitation-link");
        let expires = stoa::domain::now_ms() + 3_600_000;
        app.store
            .invite(
                bob.id,
                ws2,
                &email,
                stoa::domain::Role::Viewer,
                &digest,
                expires,
            )
            .await
            .expect("invited");
    }
    let accepted = app
        .post(
            "/api/v1/me/invitations/accept",
            &ada.token,
            json!({"token": "ada-invitation-link"}),
        )
        .await;
    assert_eq!(accepted.status, 201, "{:?}", accepted.body);
    assert_eq!(accepted.body["workspace_id"], ws2);
    let name = "Ada Lovelace-Byron";
    let r = app
        .patch("/api/v1/me", &ada.token, json!({"display_name": name}))
        .await;
    assert_eq!(r.status, 200);

    assert_eq!(
        delete_me(&app, &ada.token, "not my password").await.status,
        403
    );
    let sole = delete_me(&app, &ada.token, "correct horse battery").await;
    assert_eq!(sole.status, 409, "{:?}", sole.body);
    assert_eq!(sole.code(), "sole_owner");
    assert!(sole.body["detail"].as_str().unwrap().contains("Analytical"));
    let handed = app
        .patch(
            &format!("/api/v1/workspaces/{ws}/members/{}", bob.id),
            &ada.token,
            json!({"role": "owner"}),
        )
        .await;
    assert_eq!(handed.status, 200);

    let mut socket = Ws::connect(&app, &ada.token).await;
    socket.join_ok(&format!("user:{}", ada.id), json!({})).await;
    let gone = delete_me(&app, &ada.token, "correct horse battery").await;
    assert_eq!(gone.status, 204, "{:?}", gone.body);
    let reason = socket.until_closed().await.expect("a close reason");
    assert_eq!(reason.description.as_deref(), Some("account_deleted"));
    assert_eq!(app.get("/api/v1/me", &ada.token).await.status, 401);
    let login = app
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"email": ada.email, "password": "correct horse battery"})),
            &[],
        )
        .await;
    assert_eq!(login.status, 401);
    let refresh = app
        .call(
            Method::POST,
            "/api/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": ada.refresh})),
            &[],
        )
        .await;
    assert_eq!(refresh.status, 401);

    // What she wrote stays, by her id; she is no longer a member.
    let c = app
        .get(&format!("/api/v1/comments/{comment}"), &bob.token)
        .await;
    assert_eq!(c.status, 200);
    assert_eq!(c.body["body"], "my words stay");
    assert_eq!(c.body["author_id"], ada.id);
    let members = app
        .get(&format!("/api/v1/workspaces/{ws}/members"), &bob.token)
        .await;
    let ids: Vec<i64> = members.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["user_id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![bob.id]);
    let events = app.all_events(ws, &bob).await;
    assert!(events
        .iter()
        .any(|e| e["kind"] == "member.removed" && e["data"]["account_deleted"] == true));

    // Nothing of the person left anywhere in the database (where the scan does see a
    // living account's address).
    assert!(!scan(&app, &bob.email).await.is_empty());
    for needle in [ada.email.as_str(), name] {
        let found = scan(&app, needle).await;
        assert!(found.is_empty(), "{needle:?} still in {found:?}");
    }
}

/// The tables (and row texts) of the server's database that hold `needle`.
async fn scan(app: &TestApp, needle: &str) -> Vec<String> {
    use sqlx::{Connection, Row};
    let mut found = Vec::new();
    if app.db_url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(&app.db_url).await.unwrap();
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        for table in tables {
            let Ok(rows) = sqlx::query(&format!("SELECT * FROM \"{table}\""))
                .fetch_all(&mut conn)
                .await
            else {
                continue;
            };
            for row in rows {
                for i in 0..row.len() {
                    let text: Option<String> = row.try_get(i).ok().flatten();
                    let bytes: Option<Vec<u8>> = row.try_get(i).ok().flatten();
                    let blob = bytes.map(|b| String::from_utf8_lossy(&b).into_owned());
                    if text.iter().chain(blob.iter()).any(|t| t.contains(needle)) {
                        found.push(format!("{table}: {text:?}"));
                    }
                }
            }
        }
    } else {
        let mut conn = sqlx::PgConnection::connect(&app.db_url).await.unwrap();
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        for table in tables {
            let rows: Vec<String> =
                sqlx::query_scalar(&format!("SELECT row_to_json(t)::text FROM \"{table}\" t"))
                    .fetch_all(&mut conn)
                    .await
                    .unwrap();
            found.extend(
                rows.into_iter()
                    .filter(|r| r.contains(needle))
                    .map(|r| format!("{table}: {r}")),
            );
        }
    }
    found
}
