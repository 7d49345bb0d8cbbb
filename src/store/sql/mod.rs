//! [`Store`] on SQLite or PostgreSQL through sqlx's `Any` driver.
//!
//! The SQL is written once in the dialect both databases share (`$n` placeholders,
//! `RETURNING`, BIGINT millisecond timestamps, TEXT JSON), so there is one implementation to
//! reason about and the conformance suite checks it on both. Each backend keeps its own
//! migrations. SQLite allows one writer at a time, so on SQLite writes go through a pool of
//! one connection (no `SQLITE_BUSY` between our own writers) while reads use the rest, in WAL
//! mode so readers never wait for the writer. On PostgreSQL both pools are the same.
//!
//! This module owns the connection, the pools and the migrations, and the helpers every
//! aggregate's writes share: the workspace lock and offset (`begin_change`), the role check,
//! appending to the event log and paging. Each aggregate's queries live in a module of their
//! own.

mod account;
mod accounts;
mod attachments;
mod comments;
pub mod directory;
mod document_updates;
mod documents;
mod events;
mod invitations;
mod reports;
mod search;
mod seed;
pub mod sso;
mod versions;
mod webhooks;

pub use seed::ImportedEvent;
mod notifications;
mod workspaces;

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyConnection, AnyPool, ConnectOptions, Executor};

use super::{Event, Page, PageRequest, Store, StoreError, StoreResult};
use crate::config::{DatabaseKind, DatabaseSettings};
use crate::domain::{EventKind, Role, UserId, WorkspaceId};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Clone)]
pub struct SqlStore {
    reader: AnyPool,
    writer: AnyPool,
    kind: DatabaseKind,
    /// `auth.require_verified_email`: only proved addresses match accounts by e-mail.
    require_verified: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// `connect`, given up after `timeout` (`database.connect_timeout_secs`): the pool itself
/// would keep trying for its acquire timeout (at least 30 s, which a request under load may
/// need), and start-up should not.
async fn within(
    timeout: Duration,
    connect: impl std::future::Future<Output = Result<AnyPool, sqlx::Error>>,
) -> StoreResult<AnyPool> {
    match tokio::time::timeout(timeout, connect).await {
        Ok(pool) => Ok(pool?),
        Err(_) => Err(StoreError::Database(sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "no connection within {} s (database.connect_timeout_secs)",
                timeout.as_secs()
            ),
        )))),
    }
}

impl SqlStore {
    /// Connects to the configured database (creating a SQLite file and its directory if
    /// needed) and applies pending migrations.
    pub async fn connect(settings: &DatabaseSettings) -> StoreResult<SqlStore> {
        sqlx::any::install_default_drivers();
        let kind = settings.kind().ok_or(StoreError::Invalid {
            field: "database.url",
            message: "unsupported database URL",
        })?;
        let timeout = Duration::from_secs(settings.connect_timeout_secs.max(1));
        let store = match kind {
            DatabaseKind::Sqlite => {
                let url = sqlite_url(&settings.url)?;
                let options = statement_reports(AnyConnectOptions::from_str(&url)?);
                let pool = |max: u32| {
                    AnyPoolOptions::new()
                        .max_connections(max)
                        .acquire_timeout(timeout.max(Duration::from_secs(30)))
                        .after_connect(|conn, _| {
                            Box::pin(async move {
                                conn.execute(
                                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                                     PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;",
                                )
                                .await?;
                                Ok(())
                            })
                        })
                };
                let writer = within(timeout, pool(1).connect_with(options.clone())).await?;
                let reader = within(
                    timeout,
                    pool(settings.max_connections.max(1)).connect_with(options),
                )
                .await?;
                SqlStore {
                    reader,
                    writer,
                    kind,
                    require_verified: Default::default(),
                }
            }
            DatabaseKind::Postgres => {
                let options = statement_reports(AnyConnectOptions::from_str(&settings.url)?);
                let pool = within(
                    timeout,
                    AnyPoolOptions::new()
                        .max_connections(settings.max_connections)
                        .acquire_timeout(timeout.max(Duration::from_secs(30)))
                        .connect_with(options),
                )
                .await?;
                SqlStore {
                    reader: pool.clone(),
                    writer: pool,
                    kind,
                    require_verified: Default::default(),
                }
            }
        };
        store.migrate().await?;
        Ok(store)
    }

    /// The SQL condition on `users` alias `u` an account must meet to match by e-mail.
    fn matches_by_email(&self) -> &'static str {
        if self
            .require_verified
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            "u.email_verified_at IS NOT NULL"
        } else {
            "TRUE"
        }
    }

    async fn migrate(&self) -> StoreResult<()> {
        let migrator = match self.kind {
            DatabaseKind::Sqlite => &SQLITE_MIGRATIONS,
            DatabaseKind::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&self.writer).await?;
        Ok(())
    }

    /// Each pool's connections: its name, connections open, of them idle, and its maximum.
    /// SQLite has a reader pool and a one-connection writer pool; PostgreSQL one pool for
    /// both, reported as `shared`.
    pub fn pool_use(&self) -> Vec<(&'static str, u32, u32, u32)> {
        let one = |pool: &AnyPool| {
            let idle = u32::try_from(pool.num_idle()).unwrap_or(u32::MAX);
            (pool.size(), idle, pool.options().get_max_connections())
        };
        match self.kind {
            DatabaseKind::Sqlite => {
                let (r, w) = (one(&self.reader), one(&self.writer));
                vec![("reader", r.0, r.1, r.2), ("writer", w.0, w.1, w.2)]
            }
            DatabaseKind::Postgres => {
                let p = one(&self.reader);
                vec![("shared", p.0, p.1, p.2)]
            }
        }
    }

    pub fn kind(&self) -> DatabaseKind {
        self.kind
    }

    /// Closes both pools, waiting for connections in use to be returned.
    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }

    /// The caller's role in a workspace, read outside any write transaction.
    async fn read_role(&self, ws: WorkspaceId, user: UserId) -> StoreResult<Role> {
        let mut conn = self.reader.acquire().await?;
        role_in(&mut conn, ws, user)
            .await?
            .ok_or(StoreError::NotFound("workspace"))
    }
}

/// `sqlite://path` with the directory created and `mode=rwc` so the file is too.
/// The driver reports every statement at DEBUG (which the metrics layer counts, see
/// [`crate::telemetry`]) and a statement slower than a second at WARN (which the log shows).
fn statement_reports(options: AnyConnectOptions) -> AnyConnectOptions {
    options
        .log_statements(tracing::log::LevelFilter::Debug)
        .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1))
}

/// The file a `sqlite://` URL names (None for none, or an in-memory database).
pub fn sqlite_path(url: &str) -> Option<&str> {
    let rest = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && path != ":memory:").then_some(path)
}

fn sqlite_url(url: &str) -> StoreResult<String> {
    let Some(path) = sqlite_path(url) else {
        return Err(StoreError::Invalid {
            field: "database.url",
            message: "SQLite needs a file path (sqlite://data/stoa.db)",
        });
    };
    let file = std::path::Path::new(path);
    if let Some(dir) = file.parent() {
        crate::files::private_dir(dir).map_err(|e| StoreError::Database(e.into()))?;
    }
    // Created private before SQLite opens it: its WAL and shared-memory files take the
    // database's permissions.
    if !file.exists() {
        crate::files::touch_private(file).map_err(|e| StoreError::Database(e.into()))?;
    }
    Ok(if url.contains("mode=") {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    })
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

fn parse_role(s: &str) -> StoreResult<Role> {
    Role::parse(s).ok_or_else(|| {
        StoreError::Database(sqlx::Error::Decode(
            format!("unknown role {s:?} in database").into(),
        ))
    })
}

fn require(role: Role, needed: Role, what: &'static str) -> StoreResult<()> {
    if role >= needed {
        Ok(())
    } else {
        Err(StoreError::Forbidden(what))
    }
}

/// Inside a write transaction: takes the workspace's next offset (locking the workspace row
/// until commit) and the actor's role. Non-members and missing workspaces are both `None`.
async fn begin_change(
    conn: &mut AnyConnection,
    ws: WorkspaceId,
    actor: UserId,
) -> StoreResult<Option<(i64, Role)>> {
    let offset: Option<i64> = sqlx::query_scalar(
        "UPDATE workspaces SET last_offset = last_offset + 1 WHERE id = $1 RETURNING last_offset",
    )
    .bind(ws)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(offset) = offset else {
        return Ok(None);
    };
    Ok(role_in(conn, ws, actor).await?.map(|role| (offset, role)))
}

async fn role_in(
    conn: &mut AnyConnection,
    ws: WorkspaceId,
    user: UserId,
) -> StoreResult<Option<Role>> {
    let role: Option<String> =
        sqlx::query_scalar("SELECT role FROM memberships WHERE workspace_id = $1 AND user_id = $2")
            .bind(ws)
            .bind(user)
            .fetch_optional(&mut *conn)
            .await?;
    role.as_deref().map(parse_role).transpose()
}

struct NewEvent {
    ws: WorkspaceId,
    offset: i64,
    kind: EventKind,
    /// `None`: the system (the product's tokens or directory API), not a person.
    actor: Option<UserId>,
    subject: String,
    data: Value,
    at: i64,
}

fn event(
    ws: WorkspaceId,
    offset: i64,
    kind: EventKind,
    actor: impl Into<Option<UserId>>,
    subject: String,
    data: Value,
    at: i64,
) -> NewEvent {
    NewEvent {
        ws,
        offset,
        kind,
        actor: actor.into(),
        subject,
        data,
        at,
    }
}

async fn append(conn: &mut AnyConnection, e: NewEvent) -> StoreResult<Event> {
    sqlx::query(
        "INSERT INTO events (workspace_id, event_offset, kind, actor_id, subject, payload, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(e.ws)
    .bind(e.offset)
    .bind(e.kind.as_str())
    .bind(e.actor)
    .bind(&e.subject)
    .bind(e.data.to_string())
    .bind(e.at)
    .execute(&mut *conn)
    .await?;
    count_for_reports(conn, &e).await?;
    Ok(Event {
        workspace_id: e.ws,
        offset: e.offset,
        kind: e.kind.as_str().to_string(),
        actor_id: e.actor,
        subject: e.subject,
        data: e.data,
        at: e.at,
    })
}

/// The length of an `activity_slots` slot: 15 minutes, in milliseconds.
pub(super) const SLOT_MS: i64 = 15 * 60 * 1000;
/// The length of an `activity_hours` row: an hour, in milliseconds.
pub(super) const HOUR_MS: i64 = 3_600_000;

/// Counts one appended event in the report rollups (0006_report_rollups.sql), in the
/// event's transaction: its kind in its 15-minute slot, its actor's activity and, for an
/// event about a document that still exists, the document's.
async fn count_for_reports(conn: &mut AnyConnection, e: &NewEvent) -> StoreResult<()> {
    let edit = i64::from(matches!(
        e.kind,
        EventKind::DocumentUpdated | EventKind::DocumentEdited | EventKind::DocumentRestored
    ));
    let comment = i64::from(e.kind == EventKind::CommentCreated);
    let created = i64::from(e.kind == EventKind::DocumentCreated);
    for (table, key, width) in [
        ("activity_slots", "slot", SLOT_MS),
        ("activity_hours", "hour", HOUR_MS),
    ] {
        sqlx::query(&format!(
            "INSERT INTO {table} (workspace_id, {key}, kind, events) VALUES ($1, $2, $3, 1) \
             ON CONFLICT (workspace_id, {key}, kind) DO UPDATE SET events = {table}.events + 1"
        ))
        .bind(e.ws)
        .bind(e.at.div_euclid(width) * width)
        .bind(e.kind.as_str())
        .execute(&mut *conn)
        .await?;
    }
    // The system's own changes (a product's token or directory API) are no one's activity.
    let Some(actor) = e.actor else {
        return Ok(());
    };
    let doc = match e.kind {
        EventKind::DocumentDeleted => None,
        _ => e.data.get("document_id").and_then(Value::as_i64),
    };
    // A first edit of a document by this actor makes them one more of its editors, and it
    // one more of the documents they edited.
    let mut new_editor = 0;
    if let (Some(doc), 1) = (doc, edit) {
        let edits: Option<i64> = sqlx::query_scalar(
            "INSERT INTO document_editors (document_id, user_id, edits) \
             SELECT id, $2, 1 FROM documents WHERE id = $1 \
             ON CONFLICT (document_id, user_id) DO UPDATE SET edits = document_editors.edits + 1 \
             RETURNING edits",
        )
        .bind(doc)
        .bind(actor)
        .fetch_optional(&mut *conn)
        .await?;
        new_editor = i64::from(edits == Some(1));
    }
    sqlx::query(
        "INSERT INTO member_activity (workspace_id, user_id, events, documents_created, \
         documents_edited, edits, comments, last_active) VALUES ($1, $2, 1, $3, $4, $5, $6, $7) \
         ON CONFLICT (workspace_id, user_id) DO UPDATE SET \
         events = member_activity.events + 1, \
         documents_created = member_activity.documents_created + excluded.documents_created, \
         documents_edited = member_activity.documents_edited + excluded.documents_edited, \
         edits = member_activity.edits + excluded.edits, \
         comments = member_activity.comments + excluded.comments, \
         last_active = CASE WHEN excluded.last_active > member_activity.last_active \
                       THEN excluded.last_active ELSE member_activity.last_active END",
    )
    .bind(e.ws)
    .bind(actor)
    .bind(created)
    .bind(new_editor)
    .bind(edit)
    .bind(comment)
    .bind(e.at)
    .execute(&mut *conn)
    .await?;
    if let Some(doc) = doc {
        sqlx::query(
            "INSERT INTO document_activity (document_id, workspace_id, edits, comments, editors, \
             last_activity) SELECT id, workspace_id, $2, $3, $4, $5 FROM documents WHERE id = $1 \
             ON CONFLICT (document_id) DO UPDATE SET \
             edits = document_activity.edits + excluded.edits, \
             comments = document_activity.comments + excluded.comments, \
             editors = document_activity.editors + excluded.editors, \
             last_activity = CASE WHEN excluded.last_activity > document_activity.last_activity \
                             THEN excluded.last_activity ELSE document_activity.last_activity END",
        )
        .bind(doc)
        .bind(edit)
        .bind(comment)
        .bind(new_editor)
        .bind(e.at)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

fn page_of<T>(mut items: Vec<T>, limit: u32, key: impl Fn(&T) -> i64) -> Page<T> {
    let limit = limit as usize;
    let next = if items.len() > limit {
        items.truncate(limit);
        items.last().map(key)
    } else {
        None
    };
    Page { items, next }
}

fn fetch_limit(page: &PageRequest) -> i64 {
    i64::from(page.limit) + 1
}

/// At most this many rows (or list items) per set-based statement, which keeps the number
/// of bound values far below both databases' limits (32766 on SQLite, 65535 on PostgreSQL).
const ROWS_PER_STATEMENT: usize = 1000;

/// `$first, $first+1, …`: `count` numbered placeholders, for an `IN (…)` list.
fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[async_trait]
impl Store for SqlStore {
    async fn ping(&self) -> StoreResult<()> {
        let mut conn = self.reader.acquire().await?;
        sqlx::query("SELECT 1").execute(&mut *conn).await?;
        Ok(())
    }
}
