//! Spawns the real server on port 0 against a fresh database (a SQLite file in a temporary
//! directory, or a new PostgreSQL database dropped afterwards) and talks to it over HTTP.

use std::time::Duration;

use actix_web::dev::ServerHandle;
use awc::http::Method;
use serde_json::{json, Value};
use stoa::config::Settings;
use stoa::startup::Application;

pub const JWT_SECRET: &str = "integration-test-secret-0123456789abcdef-GHIJKLMNOP";

pub use crate::common::Backend;
use crate::common::TestDb;

pub struct TestApp {
    pub base: String,
    pub client: awc::Client,
    pub realtime: stoa::realtime::Realtime,
    pub store: std::sync::Arc<stoa::store::SqlStore>,
    pub search: std::sync::Arc<dyn stoa::search::SearchBackend>,
    /// The database the server uses.
    pub db_url: String,
    /// The server's `data_dir` (its blobs are under `blobs/`).
    pub data_dir: std::path::PathBuf,
    handle: ServerHandle,
    _db: TestDb,
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub body: Value,
    pub headers: awc::http::header::HeaderMap,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or_default()
    }
}

/// A signed-in user.
#[derive(Debug, Clone)]
pub struct Account {
    pub id: i64,
    pub email: String,
    pub token: String,
    pub refresh: String,
}

/// Settings for a test server; `tweak` may change them before start.
pub async fn spawn_app_with(
    backend: Backend,
    tweak: impl FnOnce(&mut Settings),
) -> Option<TestApp> {
    let db = TestDb::create(backend).await?;
    let mut settings = Settings::load_with_env(None, Vec::new()).expect("default settings");
    settings.server.port = 0;
    settings.server.workers = 2;
    settings.data_dir = db.dir.path().to_path_buf();
    settings.auth.jwt_secret = JWT_SECRET.into();
    // Real argon2id, at a cost suited to tests.
    settings.auth.password_hash_memory_kib = 1024;
    settings.auth.password_hash_iterations = 1;
    settings.auth.login_attempts_per_minute = 1000;
    // The suite makes requests as fast as the server answers; the allowance's own tests
    // set it back.
    settings.http.user_requests_per_sec = 1_000_000;
    settings.http.user_request_burst = 1_000_000;
    settings.database.url = db.url.clone();
    settings.database.max_connections = 8;
    tweak(&mut settings);
    let app = Application::build(settings).await.expect("app starts");
    let port = app.port();
    let handle = app.handle();
    let realtime = app.realtime();
    let store = app.store();
    let search = app.search();
    actix_web::rt::spawn(app.run_until_stopped());
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(60))
        .finish();
    Some(TestApp {
        base: format!("http://127.0.0.1:{port}"),
        client,
        realtime,
        store,
        search,
        db_url: db.url.clone(),
        data_dir: db.dir.path().to_path_buf(),
        handle,
        _db: db,
    })
}

pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, |_| {}).await
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.realtime.begin_shutdown();
        let handle = self.handle.clone();
        actix_web::rt::spawn(async move { handle.stop(false).await });
    }
}

impl TestApp {
    /// Returns once the search index holds everything committed so far.
    pub async fn search_settled(&self) {
        self.search.settled().await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Sends a request; `body` is sent as JSON when given.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut req = self.client.request(method, self.url(path));
        if let Some(t) = token {
            req = req.insert_header(("authorization", format!("Bearer {t}")));
        }
        for (k, v) in headers {
            req = req.insert_header((*k, *v));
        }
        let mut res = match body {
            Some(b) => req.send_json(&b).await,
            None => req.send().await,
        }
        .expect("request sent");
        let bytes = res.body().limit(64 << 20).await.expect("body read");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Resp {
            status: res.status().as_u16(),
            body,
            headers: res.headers().clone(),
        }
    }

    pub async fn get(&self, path: &str, token: &str) -> Resp {
        self.call(Method::GET, path, Some(token), None, &[]).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Resp {
        self.call(Method::POST, path, Some(token), Some(body), &[])
            .await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Resp {
        self.call(Method::PATCH, path, Some(token), Some(body), &[])
            .await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Resp {
        self.call(Method::DELETE, path, Some(token), None, &[])
            .await
    }

    /// Registers a new account with a unique address derived from `name`.
    pub async fn register(&self, name: &str) -> Account {
        let email = format!("{name}.{}@example.com", stoa::auth::random_hex(4));
        let res = self
            .call(
                Method::POST,
                "/api/v1/auth/register",
                None,
                Some(json!({"email": email, "password": "correct horse battery", "display_name": name})),
                &[],
            )
            .await;
        assert_eq!(res.status, 201, "register {name}: {:?}", res.body);
        Account {
            id: res.body["user"]["id"].as_i64().expect("user id"),
            email,
            token: res.body["access_token"].as_str().expect("token").into(),
            refresh: res.body["refresh_token"].as_str().expect("refresh").into(),
        }
    }

    pub async fn create_workspace(&self, owner: &Account, name: &str) -> i64 {
        let res = self
            .post("/api/v1/workspaces", &owner.token, json!({"name": name}))
            .await;
        assert_eq!(res.status, 201, "{:?}", res.body);
        res.body["id"].as_i64().expect("workspace id")
    }

    pub async fn add_member(&self, ws: i64, by: &Account, who: &Account, role: &str) {
        let res = self
            .post(
                &format!("/api/v1/workspaces/{ws}/members"),
                &by.token,
                json!({"user_id": who.id, "role": role}),
            )
            .await;
        assert_eq!(res.status, 201, "{:?}", res.body);
    }

    pub async fn create_document(&self, ws: i64, by: &Account, title: &str) -> i64 {
        let res = self
            .post(
                &format!("/api/v1/workspaces/{ws}/documents"),
                &by.token,
                json!({"title": title, "content": "text"}),
            )
            .await;
        assert_eq!(res.status, 201, "{:?}", res.body);
        res.body["id"].as_i64().expect("document id")
    }

    pub async fn create_comment(&self, doc: i64, by: &Account, body: &str) -> i64 {
        let res = self
            .post(
                &format!("/api/v1/documents/{doc}/comments"),
                &by.token,
                json!({"body": body}),
            )
            .await;
        assert_eq!(res.status, 201, "{:?}", res.body);
        res.body["id"].as_i64().expect("comment id")
    }

    /// A series' value from `/metrics` (0 before it is first counted; a missing family
    /// fails the test).
    pub async fn metric(&self, name: &str) -> f64 {
        let res = self.call(Method::GET, "/metrics", None, None, &[]).await;
        crate::common::metric_value(res.body.as_str().unwrap_or_default(), name)
    }

    /// Every event of a workspace, following `next_since`.
    pub async fn all_events(&self, ws: i64, by: &Account) -> Vec<Value> {
        let mut since = 0;
        let mut out = Vec::new();
        loop {
            let res = self
                .get(
                    &format!("/api/v1/workspaces/{ws}/events?since={since}&limit=7"),
                    &by.token,
                )
                .await;
            assert_eq!(res.status, 200, "{:?}", res.body);
            let items = res.body["items"].as_array().expect("items").clone();
            if items.is_empty() {
                return out;
            }
            since = res.body["next_since"].as_i64().expect("next_since");
            out.extend(items);
        }
    }
}
