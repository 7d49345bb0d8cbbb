#![allow(dead_code)] // Shared by several test binaries; each uses a part of it.

//! Fresh databases for tests: a SQLite file in a temporary directory, or a new PostgreSQL
//! database that is dropped when the test ends. Under `CI=true` an unreachable PostgreSQL
//! fails the test; elsewhere the test says it was skipped.

use sqlx::{Connection, Executor};

pub mod binary;
pub mod http;
pub mod presence;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The PostgreSQL server tests create their databases on.
pub fn postgres_admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

use binary::ci;

pub struct TestDb {
    pub url: String,
    pub dir: tempfile::TempDir,
    pg_database: Option<String>,
}

impl TestDb {
    /// A new empty database, or `None` when PostgreSQL is unreachable outside CI.
    pub async fn create(backend: Backend) -> Option<TestDb> {
        let dir = tempfile::tempdir().expect("temp dir");
        match backend {
            Backend::Sqlite => Some(TestDb {
                url: format!("sqlite://{}/stoa.db", dir.path().display()),
                dir,
                pg_database: None,
            }),
            Backend::Postgres => {
                let admin = postgres_admin_url();
                let mut conn = match sqlx::PgConnection::connect(&admin).await {
                    Ok(c) => c,
                    Err(e) if !ci() => {
                        eprintln!(
                            "SKIPPED: PostgreSQL unreachable at {admin}: {e} (CI=true makes this a failure)"
                        );
                        return None;
                    }
                    Err(e) => {
                        panic!("PostgreSQL is required under CI but unreachable at {admin}: {e}")
                    }
                };
                let name = format!("stoa_test_{}", stoa::auth::random_hex(8));
                conn.execute(format!("CREATE DATABASE {name}").as_str())
                    .await
                    .expect("create test database");
                let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
                Some(TestDb {
                    url: format!("{base}/{name}"),
                    dir,
                    pg_database: Some(name),
                })
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.pg_database.take() else {
            return;
        };
        // On a thread of its own: Drop cannot await, and the test's runtime may be ending.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&postgres_admin_url()).await {
                    let _ = conn
                        .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                        .await;
                }
            });
        })
        .join();
    }
}

/// Declares each listed `async fn name(backend: Backend)` as a test on every backend.
#[macro_export]
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[actix_web::test]
                async fn $name() {
                    super::$name($crate::common::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[actix_web::test]
                async fn $name() {
                    super::$name($crate::common::Backend::Postgres).await
                }
            )*
        }
    };
}

/// `/metrics` text without the `node` label every series carries, so a test can look a
/// series up by its other labels (`stoa_ws_connections`, `…{kind="user"}`).
pub fn without_node(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut line = line.to_string();
        if let Some(start) = line.find("node=\"") {
            if let Some(len) = line[start + 6..].find('"') {
                let end = start + 6 + len + 1;
                let before = &line[..start];
                let after = &line[end..];
                line = if let Some(b) = before.strip_suffix(',') {
                    format!("{b}{after}")
                } else if let Some(a) = after.strip_prefix(',') {
                    format!("{before}{a}")
                } else if before.ends_with('{') && after.starts_with('}') {
                    format!("{}{}", &before[..before.len() - 1], &after[1..])
                } else {
                    line
                };
            }
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// The value of one series (`name` or `name{labels}`, the `node` label left out) in a
/// `/metrics` text: 0 when the family is exported but this series has not been counted
/// yet, and a panic when the family itself is missing, so that a renamed metric fails the
/// test that waits for it rather than reading as 0.
pub fn metric_value(metrics: &str, name: &str) -> f64 {
    let text = without_node(metrics);
    let series = text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (k, v) = l.rsplit_once(' ')?;
        (k == name).then(|| v.trim().parse::<f64>().ok()).flatten()
    });
    if let Some(value) = series {
        return value;
    }
    let family = name.split('{').next().unwrap_or(name);
    let base = ["_bucket", "_sum", "_count", "_total"]
        .iter()
        .find_map(|suffix| family.strip_suffix(suffix))
        .unwrap_or(family);
    let exported = text.lines().any(|l| {
        l.strip_prefix("# TYPE ")
            .and_then(|rest| rest.split(' ').next())
            .is_some_and(|f| f == family || f == base)
    });
    assert!(exported, "no metric family {family} in /metrics");
    0.0
}
