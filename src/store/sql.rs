//! [`Store`] on SQLite or PostgreSQL through sqlx's `Any` driver.
//!
//! The SQL is written once in the dialect both databases share (`$n` placeholders,
//! `RETURNING`, BIGINT millisecond timestamps, TEXT JSON), so there is one implementation to
//! reason about and the conformance suite checks it on both. Each backend keeps its own
//! migrations. SQLite allows one writer at a time, so on SQLite writes go through a pool of
//! one connection (no `SQLITE_BUSY` between our own writers) while reads use the rest, in WAL
//! mode so readers never wait for the writer. On PostgreSQL both pools are the same.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyConnection, AnyPool, ConnectOptions, Executor};

use super::*;
use crate::config::{DatabaseKind, DatabaseSettings};
use crate::domain::now_ms;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Clone)]
pub struct SqlStore {
    reader: AnyPool,
    writer: AnyPool,
    kind: DatabaseKind,
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
                let options = AnyConnectOptions::from_str(&url)?.disable_statement_logging();
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
                let writer = pool(1).connect_with(options.clone()).await?;
                let reader = pool(settings.max_connections.max(1))
                    .connect_with(options)
                    .await?;
                SqlStore {
                    reader,
                    writer,
                    kind,
                }
            }
            DatabaseKind::Postgres => {
                let options =
                    AnyConnectOptions::from_str(&settings.url)?.disable_statement_logging();
                let pool = AnyPoolOptions::new()
                    .max_connections(settings.max_connections)
                    .acquire_timeout(timeout.max(Duration::from_secs(30)))
                    .connect_with(options)
                    .await?;
                SqlStore {
                    reader: pool.clone(),
                    writer: pool,
                    kind,
                }
            }
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> StoreResult<()> {
        let migrator = match self.kind {
            DatabaseKind::Sqlite => &SQLITE_MIGRATIONS,
            DatabaseKind::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&self.writer).await?;
        Ok(())
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
fn sqlite_url(url: &str) -> StoreResult<String> {
    let rest = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Err(StoreError::Invalid {
            field: "database.url",
            message: "SQLite needs a file path (sqlite://data/stoa.db)",
        });
    }
    if let Some(dir) = std::path::Path::new(path).parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Database(e.into()))?;
        }
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
    kind: &'static str,
    actor: UserId,
    subject: String,
    data: Value,
    at: i64,
}

fn event(
    ws: WorkspaceId,
    offset: i64,
    kind: &'static str,
    actor: UserId,
    subject: String,
    data: Value,
    at: i64,
) -> NewEvent {
    NewEvent {
        ws,
        offset,
        kind,
        actor,
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
    .bind(e.kind)
    .bind(e.actor)
    .bind(&e.subject)
    .bind(e.data.to_string())
    .bind(e.at)
    .execute(&mut *conn)
    .await?;
    Ok(Event {
        workspace_id: e.ws,
        offset: e.offset,
        kind: e.kind.to_string(),
        actor_id: Some(e.actor),
        subject: e.subject,
        data: e.data,
        at: e.at,
    })
}

#[derive(sqlx::FromRow)]
struct UserRow {
    id: i64,
    email: String,
    display_name: String,
    disabled_at: Option<i64>,
    created_at: i64,
}

impl From<UserRow> for User {
    fn from(r: UserRow) -> User {
        User {
            id: r.id,
            email: r.email,
            display_name: r.display_name,
            disabled: r.disabled_at.is_some(),
            created_at: r.created_at,
        }
    }
}

#[derive(sqlx::FromRow)]
struct WorkspaceRow {
    id: i64,
    name: String,
    slug: String,
    last_offset: i64,
    created_at: i64,
    updated_at: i64,
    role: Option<String>,
}

impl WorkspaceRow {
    fn split(self) -> StoreResult<(Workspace, Role)> {
        let role = parse_role(self.role.as_deref().unwrap_or_default())?;
        Ok((
            Workspace {
                id: self.id,
                name: self.name,
                slug: self.slug,
                last_offset: self.last_offset,
                created_at: self.created_at,
                updated_at: self.updated_at,
            },
            role,
        ))
    }
}

const WORKSPACE_COLUMNS: &str =
    "w.id, w.name, w.slug, w.last_offset, w.created_at, w.updated_at, m.role";

#[derive(sqlx::FromRow)]
struct MemberRow {
    user_id: i64,
    email: String,
    display_name: String,
    role: String,
    created_at: i64,
    updated_at: i64,
}

impl MemberRow {
    fn into_member(self) -> StoreResult<Member> {
        Ok(Member {
            user_id: self.user_id,
            email: self.email,
            display_name: self.display_name,
            role: parse_role(&self.role)?,
            joined_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

const MEMBER_SELECT: &str =
    "SELECT m.user_id, u.email, u.display_name, m.role, m.created_at, m.updated_at \
     FROM memberships m JOIN users u ON u.id = m.user_id";

async fn member_in(
    conn: &mut AnyConnection,
    ws: WorkspaceId,
    user: UserId,
) -> StoreResult<Option<Member>> {
    let row: Option<MemberRow> = sqlx::query_as(&format!(
        "{MEMBER_SELECT} WHERE m.workspace_id = $1 AND m.user_id = $2"
    ))
    .bind(ws)
    .bind(user)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(MemberRow::into_member).transpose()
}

async fn owner_count(conn: &mut AnyConnection, ws: WorkspaceId) -> StoreResult<i64> {
    Ok(sqlx::query_scalar(
        "SELECT COUNT(*) FROM memberships WHERE workspace_id = $1 AND role = 'owner'",
    )
    .bind(ws)
    .fetch_one(&mut *conn)
    .await?)
}

#[derive(sqlx::FromRow)]
struct DocumentRow {
    id: i64,
    workspace_id: i64,
    title: String,
    content: Option<String>,
    version: i64,
    created_by: Option<i64>,
    updated_by: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

impl From<DocumentRow> for Document {
    fn from(r: DocumentRow) -> Document {
        Document {
            id: r.id,
            workspace_id: r.workspace_id,
            title: r.title,
            content: r.content,
            version: r.version,
            created_by: r.created_by,
            updated_by: r.updated_by,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

const DOCUMENT_COLUMNS: &str = "d.id, d.workspace_id, d.title, d.content, d.version, \
     d.created_by, d.updated_by, d.created_at, d.updated_at";

async fn document_in(conn: &mut AnyConnection, id: DocumentId) -> StoreResult<Option<Document>> {
    let row: Option<DocumentRow> = sqlx::query_as(&format!(
        "SELECT {DOCUMENT_COLUMNS} FROM documents d WHERE d.id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(Document::from))
}

async fn workspace_of_document(
    conn: &mut AnyConnection,
    id: DocumentId,
) -> StoreResult<Option<WorkspaceId>> {
    Ok(
        sqlx::query_scalar("SELECT workspace_id FROM documents WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?,
    )
}

#[derive(sqlx::FromRow)]
struct CommentRow {
    id: i64,
    workspace_id: i64,
    document_id: i64,
    parent_id: Option<i64>,
    author_id: Option<i64>,
    body: String,
    resolved_at: Option<i64>,
    resolved_by: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

impl CommentRow {
    fn into_comment(self, mentions: Vec<UserId>) -> Comment {
        Comment {
            id: self.id,
            workspace_id: self.workspace_id,
            document_id: self.document_id,
            parent_id: self.parent_id,
            author_id: self.author_id,
            body: self.body,
            mentions,
            resolved_at: self.resolved_at,
            resolved_by: self.resolved_by,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

const COMMENT_COLUMNS: &str = "c.id, c.workspace_id, c.document_id, c.parent_id, c.author_id, \
     c.body, c.resolved_at, c.resolved_by, c.created_at, c.updated_at";

async fn comment_in(conn: &mut AnyConnection, id: CommentId) -> StoreResult<Option<Comment>> {
    let row: Option<CommentRow> = sqlx::query_as(&format!(
        "SELECT {COMMENT_COLUMNS} FROM comments c WHERE c.id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let mentions: Vec<i64> = sqlx::query_scalar(
        "SELECT user_id FROM comment_mentions WHERE comment_id = $1 ORDER BY user_id",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    Ok(Some(row.into_comment(mentions)))
}

/// Resolves mentioned e-mail keys to members of the workspace and records them.
async fn record_mentions(
    conn: &mut AnyConnection,
    ws: WorkspaceId,
    comment: CommentId,
    keys: &[String],
) -> StoreResult<Vec<UserId>> {
    sqlx::query("DELETE FROM comment_mentions WHERE comment_id = $1")
        .bind(comment)
        .execute(&mut *conn)
        .await?;
    let mut ids = Vec::new();
    for key in keys.iter().take(50) {
        let id: Option<i64> = sqlx::query_scalar(
            "SELECT u.id FROM users u JOIN memberships m ON m.user_id = u.id \
             WHERE m.workspace_id = $1 AND u.email_key = $2",
        )
        .bind(ws)
        .bind(key.as_str())
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(id) = id {
            if !ids.contains(&id) {
                sqlx::query("INSERT INTO comment_mentions (comment_id, user_id) VALUES ($1, $2)")
                    .bind(comment)
                    .bind(id)
                    .execute(&mut *conn)
                    .await?;
                ids.push(id);
            }
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Inside a write transaction: tells each recipient about an event (never its own actor).
async fn notify(
    conn: &mut AnyConnection,
    ev: &Event,
    recipients: &[(UserId, &'static str)],
) -> StoreResult<()> {
    for (user, kind) in recipients {
        if Some(*user) == ev.actor_id {
            continue;
        }
        sqlx::query(
            "INSERT INTO notifications \
             (user_id, workspace_id, event_offset, kind, actor_id, subject, payload, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(*user)
        .bind(ev.workspace_id)
        .bind(ev.offset)
        .bind(*kind)
        .bind(ev.actor_id)
        .bind(&ev.subject)
        .bind(ev.data.to_string())
        .bind(ev.at)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

#[derive(sqlx::FromRow)]
struct NotificationRow {
    id: i64,
    user_id: i64,
    workspace_id: i64,
    event_offset: i64,
    kind: String,
    actor_id: Option<i64>,
    subject: String,
    payload: String,
    created_at: i64,
    read_at: Option<i64>,
}

impl From<NotificationRow> for Notification {
    fn from(r: NotificationRow) -> Notification {
        Notification {
            id: r.id,
            user_id: r.user_id,
            workspace_id: r.workspace_id,
            event_offset: r.event_offset,
            kind: r.kind,
            actor_id: r.actor_id,
            subject: r.subject,
            data: serde_json::from_str(&r.payload).unwrap_or(Value::Null),
            created_at: r.created_at,
            read_at: r.read_at,
        }
    }
}

const NOTIFICATION_COLUMNS: &str = "id, user_id, workspace_id, event_offset, kind, actor_id, \
     subject, payload, created_at, read_at";

#[derive(sqlx::FromRow)]
struct EventRow {
    event_offset: i64,
    kind: String,
    actor_id: Option<i64>,
    subject: String,
    payload: String,
    created_at: i64,
}

async fn events_after(
    conn: &mut AnyConnection,
    ws: WorkspaceId,
    since: i64,
    limit: u32,
) -> StoreResult<Vec<Event>> {
    let rows: Vec<EventRow> = sqlx::query_as(
        "SELECT event_offset, kind, actor_id, subject, payload, created_at FROM events \
         WHERE workspace_id = $1 AND event_offset > $2 ORDER BY event_offset LIMIT $3",
    )
    .bind(ws)
    .bind(since)
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Event {
            workspace_id: ws,
            offset: r.event_offset,
            kind: r.kind,
            actor_id: r.actor_id,
            subject: r.subject,
            data: serde_json::from_str(&r.payload).unwrap_or(Value::Null),
            at: r.created_at,
        })
        .collect())
}

fn comment_json(c: &Comment) -> Value {
    json!({
        "comment_id": c.id,
        "document_id": c.document_id,
        "parent_id": c.parent_id,
        "author_id": c.author_id,
        "body": c.body,
        "mentions": c.mentions,
        "resolved": c.resolved_at.is_some(),
    })
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

#[async_trait]
impl Store for SqlStore {
    async fn ping(&self) -> StoreResult<()> {
        let mut conn = self.reader.acquire().await?;
        sqlx::query("SELECT 1").execute(&mut *conn).await?;
        Ok(())
    }

    async fn create_user(
        &self,
        email: &Email,
        name: &DisplayName,
        password_hash: &str,
    ) -> StoreResult<User> {
        let now = now_ms();
        let id: Result<i64, sqlx::Error> = sqlx::query_scalar(
            "INSERT INTO users (email, email_key, display_name, password_hash, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5) RETURNING id",
        )
        .bind(email.as_str())
        .bind(email.key())
        .bind(name.as_str())
        .bind(password_hash)
        .bind(now)
        .fetch_one(&self.writer)
        .await;
        match id {
            Ok(id) => Ok(User {
                id,
                email: email.as_str().to_string(),
                display_name: name.as_str().to_string(),
                disabled: false,
                created_at: now,
            }),
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict {
                code: "email_taken",
                detail: "an account with this email already exists".into(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    async fn user(&self, id: UserId) -> StoreResult<Option<User>> {
        let row: Option<UserRow> = sqlx::query_as(
            "SELECT id, email, display_name, disabled_at, created_at FROM users WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.reader)
        .await?;
        Ok(row.map(User::from))
    }

    async fn user_credentials(&self, email_key: &str) -> StoreResult<Option<(User, String)>> {
        #[derive(sqlx::FromRow)]
        struct Row {
            #[sqlx(flatten)]
            user: UserRow,
            password_hash: String,
        }
        let row: Option<Row> = sqlx::query_as(
            "SELECT id, email, display_name, disabled_at, created_at, password_hash \
             FROM users WHERE email_key = $1",
        )
        .bind(email_key)
        .fetch_optional(&self.reader)
        .await?;
        Ok(row.map(|r| (User::from(r.user), r.password_hash)))
    }

    async fn insert_refresh_token(
        &self,
        user_id: UserId,
        family_id: &str,
        token_hash: &str,
        expires_at: i64,
    ) -> StoreResult<()> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        sqlx::query(
            "INSERT INTO refresh_families (id, user_id, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(family_id)
        .bind(user_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO refresh_tokens (user_id, family_id, token_hash, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(user_id)
        .bind(family_id)
        .bind(token_hash)
        .bind(now)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn rotate_refresh_token(
        &self,
        presented_hash: &str,
        new_hash: &str,
        new_expires_at: i64,
        reuse_interval_ms: i64,
    ) -> StoreResult<Rotation> {
        let now = now_ms();
        // Looked up on a reader first: a token that is unknown, expired or of a revoked
        // login never takes the (on SQLite, single) writer, so a flood of made-up tokens
        // cannot hold up anyone's writes.
        let found: Option<(String, i64, Option<i64>, Option<i64>)> = sqlx::query_as(
            "SELECT t.family_id, t.expires_at, t.used_at, f.revoked_at \
             FROM refresh_tokens t JOIN refresh_families f ON f.id = t.family_id \
             WHERE t.token_hash = $1",
        )
        .bind(presented_hash)
        .fetch_optional(&self.reader)
        .await?;
        let Some((family_id, expires_at, used_at, revoked)) = found else {
            return Ok(Rotation::Invalid);
        };
        if expires_at <= now {
            return Ok(Rotation::Invalid);
        }
        if revoked.is_some() {
            // A spent token of a revoked login is still a replay (nothing left to revoke).
            return Ok(match used_at {
                Some(_) => Rotation::Reused,
                None => Rotation::Invalid,
            });
        }
        let mut tx = self.writer.begin().await?;
        // Lock the family for the rest of the transaction (a no-op update takes the row
        // lock on PostgreSQL; SQLite's single writer serialises anyway). A revocation that
        // got there first leaves nothing to lock.
        let live: Option<i64> = sqlx::query_scalar(
            "UPDATE refresh_families SET revoked_at = revoked_at \
             WHERE id = $1 AND revoked_at IS NULL RETURNING user_id",
        )
        .bind(&family_id)
        .fetch_optional(&mut *tx)
        .await?;
        if live.is_none() {
            // Revoked since the lookup: a replay if the token was spent meanwhile.
            let spent: Option<Option<i64>> =
                sqlx::query_scalar("SELECT used_at FROM refresh_tokens WHERE token_hash = $1")
                    .bind(presented_hash)
                    .fetch_optional(&mut *tx)
                    .await?;
            return Ok(match spent {
                Some(Some(_)) => Rotation::Reused,
                _ => Rotation::Invalid,
            });
        }
        // Spending is a single conditional UPDATE, so two concurrent presentations of the
        // same token cannot both spend it.
        let spent: Option<i64> = sqlx::query_scalar(
            "UPDATE refresh_tokens SET used_at = $1, successor_hash = $3 \
             WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1 \
             RETURNING user_id",
        )
        .bind(now)
        .bind(presented_hash)
        .bind(new_hash)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(user_id) = spent {
            let disabled: Option<Option<i64>> =
                sqlx::query_scalar("SELECT disabled_at FROM users WHERE id = $1")
                    .bind(user_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            if !matches!(disabled, Some(None)) {
                tx.commit().await?;
                return Ok(Rotation::Invalid);
            }
            sqlx::query(
                "INSERT INTO refresh_tokens (user_id, family_id, token_hash, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(user_id)
            .bind(&family_id)
            .bind(new_hash)
            .bind(now)
            .bind(new_expires_at)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            return Ok(Rotation::Rotated { user_id });
        }
        // Spent already. Within the reuse interval, the same spent token asking for the
        // same successor (the caller derives it from the token) gets it again, as long as
        // that successor has not been used itself: the honest race of two tabs, or a retry
        // after a lost response. Anything else is a replay: the whole login is revoked.
        let previous: Option<(i64, Option<i64>, Option<String>)> = sqlx::query_as(
            "SELECT user_id, used_at, successor_hash FROM refresh_tokens WHERE token_hash = $1",
        )
        .bind(presented_hash)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((user_id, Some(used_at), Some(successor))) = previous {
            if now - used_at < reuse_interval_ms && successor == new_hash {
                let successor_live: Option<i64> = sqlx::query_scalar(
                    "SELECT id FROM refresh_tokens \
                     WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2",
                )
                .bind(new_hash)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
                if successor_live.is_some() {
                    tx.commit().await?;
                    return Ok(Rotation::Rotated { user_id });
                }
            }
        }
        sqlx::query("UPDATE refresh_families SET revoked_at = $1 WHERE id = $2")
            .bind(now)
            .bind(&family_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Rotation::Reused)
    }

    async fn revoke_refresh_family(&self, presented_hash: &str) -> StoreResult<bool> {
        // Read first, so that unknown tokens never take the writer.
        let family: Option<(String, Option<i64>)> = sqlx::query_as(
            "SELECT t.family_id, f.revoked_at \
             FROM refresh_tokens t JOIN refresh_families f ON f.id = t.family_id \
             WHERE t.token_hash = $1",
        )
        .bind(presented_hash)
        .fetch_optional(&self.reader)
        .await?;
        match family {
            None => Ok(false),
            Some((_, Some(_))) => Ok(true),
            Some((family, None)) => {
                sqlx::query(
                    "UPDATE refresh_families SET revoked_at = $1 \
                     WHERE id = $2 AND revoked_at IS NULL",
                )
                .bind(now_ms())
                .bind(&family)
                .execute(&self.writer)
                .await?;
                Ok(true)
            }
        }
    }

    async fn prune_refresh_tokens(&self, now: i64, spent_before: i64) -> StoreResult<u64> {
        let mut tx = self.writer.begin().await?;
        let tokens = sqlx::query(
            "DELETE FROM refresh_tokens WHERE expires_at <= $1 OR used_at < $2 \
             OR family_id IN (SELECT id FROM refresh_families WHERE revoked_at < $2)",
        )
        .bind(now)
        .bind(spent_before)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query(
            "DELETE FROM refresh_families WHERE NOT EXISTS \
             (SELECT 1 FROM refresh_tokens t WHERE t.family_id = refresh_families.id)",
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(tokens)
    }

    async fn create_workspace(
        &self,
        actor: UserId,
        name: &WorkspaceName,
        slug: Option<&Slug>,
    ) -> StoreResult<(Workspace, Role, Event)> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        let slug = match slug {
            Some(s) => s.clone(),
            None => {
                let derived = Slug::derive(name.as_str());
                let taken: Option<i64> =
                    sqlx::query_scalar("SELECT id FROM workspaces WHERE slug = $1")
                        .bind(derived.as_str())
                        .fetch_optional(&mut *tx)
                        .await?;
                if taken.is_some() {
                    derived.with_suffix(&crate::auth::random_hex(3))
                } else {
                    derived
                }
            }
        };
        let id: Result<i64, sqlx::Error> = sqlx::query_scalar(
            "INSERT INTO workspaces (name, slug, last_offset, created_by, created_at, updated_at) \
             VALUES ($1, $2, 1, $3, $4, $4) RETURNING id",
        )
        .bind(name.as_str())
        .bind(slug.as_str())
        .bind(actor)
        .bind(now)
        .fetch_one(&mut *tx)
        .await;
        let id = match id {
            Ok(id) => id,
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::Conflict {
                    code: "slug_taken",
                    detail: format!("the slug {:?} is already in use", slug.as_str()),
                })
            }
            Err(e) => return Err(e.into()),
        };
        sqlx::query(
            "INSERT INTO memberships (workspace_id, user_id, role, created_at, updated_at) \
             VALUES ($1, $2, 'owner', $3, $3)",
        )
        .bind(id)
        .bind(actor)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let ev = append(
            &mut tx,
            event(
                id,
                1,
                "workspace.created",
                actor,
                format!("workspace:{id}"),
                json!({"name": name.as_str(), "slug": slug.as_str(), "owner_id": actor}),
                now,
            ),
        )
        .await?;
        tx.commit().await?;
        let ws = Workspace {
            id,
            name: name.as_str().to_string(),
            slug: slug.as_str().to_string(),
            last_offset: 1,
            created_at: now,
            updated_at: now,
        };
        Ok((ws, Role::Owner, ev))
    }

    async fn workspaces_of(
        &self,
        user: UserId,
        page: PageRequest,
    ) -> StoreResult<Page<(Workspace, Role)>> {
        let rows: Vec<WorkspaceRow> = sqlx::query_as(&format!(
            "SELECT {WORKSPACE_COLUMNS} FROM memberships m JOIN workspaces w ON w.id = m.workspace_id \
             WHERE m.user_id = $1 AND w.id > $2 ORDER BY w.id LIMIT $3"
        ))
        .bind(user)
        .bind(page.after.unwrap_or(0))
        .bind(fetch_limit(&page))
        .fetch_all(&self.reader)
        .await?;
        let items = rows
            .into_iter()
            .map(WorkspaceRow::split)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(page_of(items, page.limit, |(w, _)| w.id))
    }

    async fn workspace(&self, actor: UserId, id: WorkspaceId) -> StoreResult<(Workspace, Role)> {
        let row: Option<WorkspaceRow> = sqlx::query_as(&format!(
            "SELECT {WORKSPACE_COLUMNS} FROM memberships m JOIN workspaces w ON w.id = m.workspace_id \
             WHERE m.user_id = $1 AND w.id = $2"
        ))
        .bind(actor)
        .bind(id)
        .fetch_optional(&self.reader)
        .await?;
        row.ok_or(StoreError::NotFound("workspace"))?.split()
    }

    async fn update_workspace(
        &self,
        actor: UserId,
        id: WorkspaceId,
        name: Option<&WorkspaceName>,
        slug: Option<&Slug>,
    ) -> StoreResult<(Workspace, Event)> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        let (offset, role) = begin_change(&mut tx, id, actor)
            .await?
            .ok_or(StoreError::NotFound("workspace"))?;
        require(
            role,
            Role::Admin,
            "only admins and owners can change workspace settings",
        )?;
        let updated = sqlx::query(
            "UPDATE workspaces SET name = COALESCE($1, name), slug = COALESCE($2, slug), \
             updated_at = $3 WHERE id = $4",
        )
        .bind(name.map(|n| n.as_str()))
        .bind(slug.map(|s| s.as_str()))
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await;
        match updated {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::Conflict {
                    code: "slug_taken",
                    detail: "that slug is already in use".into(),
                })
            }
            Err(e) => return Err(e.into()),
        }
        let row: WorkspaceRow = sqlx::query_as(&format!(
            "SELECT {WORKSPACE_COLUMNS} FROM memberships m JOIN workspaces w ON w.id = m.workspace_id \
             WHERE m.user_id = $1 AND w.id = $2"
        ))
        .bind(actor)
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        let (ws, _) = row.split()?;
        let ev = append(
            &mut tx,
            event(
                id,
                offset,
                "workspace.updated",
                actor,
                format!("workspace:{id}"),
                json!({"name": ws.name, "slug": ws.slug}),
                now,
            ),
        )
        .await?;
        tx.commit().await?;
        Ok((ws, ev))
    }

    async fn delete_workspace(&self, actor: UserId, id: WorkspaceId) -> StoreResult<Workspace> {
        let mut tx = self.writer.begin().await?;
        let (_, role) = begin_change(&mut tx, id, actor)
            .await?
            .ok_or(StoreError::NotFound("workspace"))?;
        require(role, Role::Owner, "only owners can delete a workspace")?;
        let row: WorkspaceRow = sqlx::query_as(&format!(
            "SELECT {WORKSPACE_COLUMNS} FROM memberships m JOIN workspaces w ON w.id = m.workspace_id \
             WHERE m.user_id = $1 AND w.id = $2"
        ))
        .bind(actor)
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM workspaces WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(row.split()?.0)
    }

    async fn members(
        &self,
        actor: UserId,
        ws: WorkspaceId,
        page: PageRequest,
    ) -> StoreResult<Page<Member>> {
        self.read_role(ws, actor).await?;
        let rows: Vec<MemberRow> = sqlx::query_as(&format!(
            "{MEMBER_SELECT} WHERE m.workspace_id = $1 AND m.user_id > $2 ORDER BY m.user_id LIMIT $3"
        ))
        .bind(ws)
        .bind(page.after.unwrap_or(0))
        .bind(fetch_limit(&page))
        .fetch_all(&self.reader)
        .await?;
        let items = rows
            .into_iter()
            .map(MemberRow::into_member)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(page_of(items, page.limit, |m| m.user_id))
    }

    async fn member(&self, actor: UserId, ws: WorkspaceId, user: UserId) -> StoreResult<Member> {
        self.read_role(ws, actor).await?;
        let mut conn = self.reader.acquire().await?;
        member_in(&mut conn, ws, user)
            .await?
            .ok_or(StoreError::NotFound("member"))
    }

    async fn add_member(
        &self,
        actor: UserId,
        ws: WorkspaceId,
        who: &MemberRef,
        role: Role,
    ) -> StoreResult<(Member, Event)> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        let (offset, actor_role) = begin_change(&mut tx, ws, actor)
            .await?
            .ok_or(StoreError::NotFound("workspace"))?;
        require(
            actor_role,
            Role::Admin,
            "only admins and owners can add members",
        )?;
        if !actor_role.can_manage(role) {
            return Err(StoreError::Forbidden(
                "only owners can grant the owner role",
            ));
        }
        let user_id: Option<i64> = match who {
            MemberRef::Id(id) => {
                sqlx::query_scalar("SELECT id FROM users WHERE id = $1 AND disabled_at IS NULL")
                    .bind(*id)
                    .fetch_optional(&mut *tx)
                    .await?
            }
            MemberRef::Email(email) => {
                sqlx::query_scalar(
                    "SELECT id FROM users WHERE email_key = $1 AND disabled_at IS NULL",
                )
                .bind(email.key())
                .fetch_optional(&mut *tx)
                .await?
            }
        };
        let user_id = user_id.ok_or(StoreError::NotFound("user"))?;
        let inserted = sqlx::query(
            "INSERT INTO memberships (workspace_id, user_id, role, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $4)",
        )
        .bind(ws)
        .bind(user_id)
        .bind(role.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::Conflict {
                    code: "already_member",
                    detail: "that user is already a member of this workspace".into(),
                })
            }
            Err(e) => return Err(e.into()),
        }
        let member = member_in(&mut tx, ws, user_id)
            .await?
            .ok_or(StoreError::NotFound("member"))?;
        let ev = append(
            &mut tx,
            event(
                ws,
                offset,
                "member.added",
                actor,
                format!("user:{user_id}"),
                json!({"user_id": user_id, "role": role}),
                now,
            ),
        )
        .await?;
        notify(&mut tx, &ev, &[(user_id, "member_added")]).await?;
        tx.commit().await?;
        Ok((member, ev))
    }

    async fn change_role(
        &self,
        actor: UserId,
        ws: WorkspaceId,
        user: UserId,
        role: Role,
    ) -> StoreResult<(Member, Option<Event>)> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        let (offset, actor_role) = begin_change(&mut tx, ws, actor)
            .await?
            .ok_or(StoreError::NotFound("workspace"))?;
        require(
            actor_role,
            Role::Admin,
            "only admins and owners can change roles",
        )?;
        let current = member_in(&mut tx, ws, user)
            .await?
            .ok_or(StoreError::NotFound("member"))?;
        if !actor_role.can_manage(current.role) || !actor_role.can_manage(role) {
            return Err(StoreError::Forbidden("only owners can change owner roles"));
        }
        if current.role == role {
            // Nothing changes, so nothing is logged; the reserved offset is rolled back.
            return Ok((current, None));
        }
        if current.role == Role::Owner && owner_count(&mut tx, ws).await? <= 1 {
            return Err(StoreError::Conflict {
                code: "last_owner",
                detail: "the last owner cannot be demoted; make someone else owner first".into(),
            });
        }
        sqlx::query(
            "UPDATE memberships SET role = $1, updated_at = $2 WHERE workspace_id = $3 AND user_id = $4",
        )
        .bind(role.as_str())
        .bind(now)
        .bind(ws)
        .bind(user)
        .execute(&mut *tx)
        .await?;
        let member = Member {
            role,
            updated_at: now,
            ..current.clone()
        };
        let ev = append(
            &mut tx,
            event(
                ws,
                offset,
                "member.role_changed",
                actor,
                format!("user:{user}"),
                json!({"user_id": user, "role": role, "previous_role": current.role}),
                now,
            ),
        )
        .await?;
        notify(&mut tx, &ev, &[(user, "role_changed")]).await?;
        tx.commit().await?;
        Ok((member, Some(ev)))
    }

    async fn remove_member(
        &self,
        actor: UserId,
        ws: WorkspaceId,
        user: UserId,
    ) -> StoreResult<Event> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        let (offset, actor_role) = begin_change(&mut tx, ws, actor)
            .await?
            .ok_or(StoreError::NotFound("workspace"))?;
        let target = member_in(&mut tx, ws, user)
            .await?
            .ok_or(StoreError::NotFound("member"))?;
        let leaving = actor == user;
        if !leaving {
            require(
                actor_role,
                Role::Admin,
                "only admins and owners can remove members",
            )?;
            if !actor_role.can_manage(target.role) {
                return Err(StoreError::Forbidden("only owners can remove owners"));
            }
        }
        if target.role == Role::Owner && owner_count(&mut tx, ws).await? <= 1 {
            return Err(StoreError::Conflict {
                code: "last_owner",
                detail:
                    "the last owner cannot leave; make someone else owner or delete the workspace"
                        .into(),
            });
        }
        sqlx::query("DELETE FROM memberships WHERE workspace_id = $1 AND user_id = $2")
            .bind(ws)
            .bind(user)
            .execute(&mut *tx)
            .await?;
        let ev = append(
            &mut tx,
            event(
                ws,
                offset,
                "member.removed",
                actor,
                format!("user:{user}"),
                json!({"user_id": user, "role": target.role, "left": leaving}),
                now,
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(ev)
    }

    async fn create_document(
        &self,
        actor: UserId,
        ws: WorkspaceId,
        title: &DocumentTitle,
        content: &str,
    ) -> StoreResult<(Document, Event)> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        let (offset, role) = begin_change(&mut tx, ws, actor)
            .await?
            .ok_or(StoreError::NotFound("workspace"))?;
        require(role, Role::Editor, "viewers cannot create documents")?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO documents (workspace_id, title, content, version, created_by, updated_by, created_at, updated_at) \
             VALUES ($1, $2, $3, 1, $4, $4, $5, $5) RETURNING id",
        )
        .bind(ws)
        .bind(title.as_str())
        .bind(content)
        .bind(actor)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let doc = Document {
            id,
            workspace_id: ws,
            title: title.as_str().to_string(),
            content: Some(content.to_string()),
            version: 1,
            created_by: Some(actor),
            updated_by: Some(actor),
            created_at: now,
            updated_at: now,
        };
        let ev = append(
            &mut tx,
            event(
                ws,
                offset,
                "document.created",
                actor,
                format!("document:{id}"),
                json!({"document_id": id, "title": doc.title, "version": 1}),
                now,
            ),
        )
        .await?;
        tx.commit().await?;
        Ok((doc, ev))
    }

    async fn documents(
        &self,
        actor: UserId,
        ws: WorkspaceId,
        page: PageRequest,
    ) -> StoreResult<Page<Document>> {
        self.read_role(ws, actor).await?;
        let rows: Vec<DocumentRow> = sqlx::query_as(
            "SELECT d.id, d.workspace_id, d.title, NULL AS content, d.version, d.created_by, \
             d.updated_by, d.created_at, d.updated_at FROM documents d \
             WHERE d.workspace_id = $1 AND d.id > $2 ORDER BY d.id LIMIT $3",
        )
        .bind(ws)
        .bind(page.after.unwrap_or(0))
        .bind(fetch_limit(&page))
        .fetch_all(&self.reader)
        .await?;
        let items = rows.into_iter().map(Document::from).collect();
        Ok(page_of(items, page.limit, |d: &Document| d.id))
    }

    async fn document(&self, actor: UserId, id: DocumentId) -> StoreResult<(Document, Role)> {
        #[derive(sqlx::FromRow)]
        struct Row {
            #[sqlx(flatten)]
            doc: DocumentRow,
            role: String,
        }
        let row: Option<Row> = sqlx::query_as(&format!(
            "SELECT {DOCUMENT_COLUMNS}, m.role FROM documents d \
             JOIN memberships m ON m.workspace_id = d.workspace_id AND m.user_id = $2 \
             WHERE d.id = $1"
        ))
        .bind(id)
        .bind(actor)
        .fetch_optional(&self.reader)
        .await?;
        let row = row.ok_or(StoreError::NotFound("document"))?;
        Ok((Document::from(row.doc), parse_role(&row.role)?))
    }

    async fn update_document(
        &self,
        actor: UserId,
        id: DocumentId,
        patch: &DocumentPatch,
        expected_version: Option<i64>,
    ) -> StoreResult<(Document, Event)> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        let ws = workspace_of_document(&mut tx, id)
            .await?
            .ok_or(StoreError::NotFound("document"))?;
        let (offset, role) = begin_change(&mut tx, ws, actor)
            .await?
            .ok_or(StoreError::NotFound("document"))?;
        require(role, Role::Editor, "viewers cannot edit documents")?;
        let current = document_in(&mut tx, id)
            .await?
            .ok_or(StoreError::NotFound("document"))?;
        if let Some(expected) = expected_version {
            if expected != current.version {
                return Err(StoreError::VersionMismatch {
                    current: current.version,
                });
            }
        }
        sqlx::query(
            "UPDATE documents SET title = COALESCE($1, title), content = COALESCE($2, content), \
             version = version + 1, updated_by = $3, updated_at = $4 WHERE id = $5",
        )
        .bind(patch.title.as_ref().map(|t| t.as_str()))
        .bind(patch.content.as_deref())
        .bind(actor)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let doc = document_in(&mut tx, id)
            .await?
            .ok_or(StoreError::NotFound("document"))?;
        let mut changed = Vec::new();
        if patch.title.is_some() {
            changed.push("title");
        }
        if patch.content.is_some() {
            changed.push("content");
        }
        let ev = append(
            &mut tx,
            event(
                ws,
                offset,
                "document.updated",
                actor,
                format!("document:{id}"),
                json!({"document_id": id, "title": doc.title, "version": doc.version, "changed": changed}),
                now,
            ),
        )
        .await?;
        tx.commit().await?;
        Ok((doc, ev))
    }

    async fn delete_document(
        &self,
        actor: UserId,
        id: DocumentId,
        expected_version: Option<i64>,
    ) -> StoreResult<Event> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        let ws = workspace_of_document(&mut tx, id)
            .await?
            .ok_or(StoreError::NotFound("document"))?;
        let (offset, role) = begin_change(&mut tx, ws, actor)
            .await?
            .ok_or(StoreError::NotFound("document"))?;
        require(role, Role::Editor, "viewers cannot delete documents")?;
        let current = document_in(&mut tx, id)
            .await?
            .ok_or(StoreError::NotFound("document"))?;
        if let Some(expected) = expected_version {
            if expected != current.version {
                return Err(StoreError::VersionMismatch {
                    current: current.version,
                });
            }
        }
        sqlx::query("DELETE FROM documents WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let ev = append(
            &mut tx,
            event(
                ws,
                offset,
                "document.deleted",
                actor,
                format!("document:{id}"),
                json!({"document_id": id, "title": current.title}),
                now,
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(ev)
    }

    async fn create_comment(
        &self,
        actor: UserId,
        doc: DocumentId,
        parent: Option<CommentId>,
        body: &CommentBody,
        mention_keys: &[String],
    ) -> StoreResult<(Comment, Event)> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        let ws = workspace_of_document(&mut tx, doc)
            .await?
            .ok_or(StoreError::NotFound("document"))?;
        let (offset, role) = begin_change(&mut tx, ws, actor)
            .await?
            .ok_or(StoreError::NotFound("document"))?;
        require(role, Role::Editor, "viewers cannot comment")?;
        let mut parent_author = None;
        if let Some(parent) = parent {
            let parent_row: Option<(i64, Option<i64>)> =
                sqlx::query_as("SELECT document_id, author_id FROM comments WHERE id = $1")
                    .bind(parent)
                    .fetch_optional(&mut *tx)
                    .await?;
            match parent_row {
                Some((parent_doc, author)) if parent_doc == doc => parent_author = author,
                _ => {
                    return Err(StoreError::Invalid {
                        field: "parent_id",
                        message: "no such comment on this document",
                    })
                }
            }
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO comments (workspace_id, document_id, parent_id, author_id, body, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING id",
        )
        .bind(ws)
        .bind(doc)
        .bind(parent)
        .bind(actor)
        .bind(body.as_str())
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let mentions = record_mentions(&mut tx, ws, id, mention_keys).await?;
        let comment = Comment {
            id,
            workspace_id: ws,
            document_id: doc,
            parent_id: parent,
            author_id: Some(actor),
            body: body.as_str().to_string(),
            mentions,
            resolved_at: None,
            resolved_by: None,
            created_at: now,
            updated_at: now,
        };
        let ev = append(
            &mut tx,
            event(
                ws,
                offset,
                "comment.created",
                actor,
                format!("comment:{id}"),
                comment_json(&comment),
                now,
            ),
        )
        .await?;
        let mut recipients: Vec<(UserId, &'static str)> =
            comment.mentions.iter().map(|u| (*u, "mention")).collect();
        if let Some(author) = parent_author.filter(|a| !comment.mentions.contains(a)) {
            recipients.push((author, "reply"));
        }
        notify(&mut tx, &ev, &recipients).await?;
        tx.commit().await?;
        Ok((comment, ev))
    }

    async fn comments(
        &self,
        actor: UserId,
        doc: DocumentId,
        resolved: Option<bool>,
        page: PageRequest,
    ) -> StoreResult<Page<Comment>> {
        let ws: Option<i64> = sqlx::query_scalar(
            "SELECT d.workspace_id FROM documents d \
             JOIN memberships m ON m.workspace_id = d.workspace_id AND m.user_id = $2 WHERE d.id = $1",
        )
        .bind(doc)
        .bind(actor)
        .fetch_optional(&self.reader)
        .await?;
        ws.ok_or(StoreError::NotFound("document"))?;
        let filter = match resolved {
            None => "",
            Some(true) => " AND c.resolved_at IS NOT NULL",
            Some(false) => " AND c.resolved_at IS NULL",
        };
        let rows: Vec<CommentRow> = sqlx::query_as(&format!(
            "SELECT {COMMENT_COLUMNS} FROM comments c WHERE c.document_id = $1 AND c.id > $2{filter} \
             ORDER BY c.id LIMIT $3"
        ))
        .bind(doc)
        .bind(page.after.unwrap_or(0))
        .bind(fetch_limit(&page))
        .fetch_all(&self.reader)
        .await?;
        let (Some(first), Some(last)) = (rows.first().map(|r| r.id), rows.last().map(|r| r.id))
        else {
            return Ok(Page {
                items: Vec::new(),
                next: None,
            });
        };
        let mentions: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT cm.comment_id, cm.user_id FROM comment_mentions cm \
             JOIN comments c ON c.id = cm.comment_id \
             WHERE c.document_id = $1 AND c.id >= $2 AND c.id <= $3 ORDER BY cm.user_id",
        )
        .bind(doc)
        .bind(first)
        .bind(last)
        .fetch_all(&self.reader)
        .await?;
        let items = rows
            .into_iter()
            .map(|r| {
                let m = mentions
                    .iter()
                    .filter(|(c, _)| *c == r.id)
                    .map(|(_, u)| *u)
                    .collect();
                r.into_comment(m)
            })
            .collect();
        Ok(page_of(items, page.limit, |c: &Comment| c.id))
    }

    async fn comment(&self, actor: UserId, id: CommentId) -> StoreResult<Comment> {
        let mut conn = self.reader.acquire().await?;
        let comment = comment_in(&mut conn, id)
            .await?
            .ok_or(StoreError::NotFound("comment"))?;
        role_in(&mut conn, comment.workspace_id, actor)
            .await?
            .ok_or(StoreError::NotFound("comment"))?;
        Ok(comment)
    }

    async fn update_comment(
        &self,
        actor: UserId,
        id: CommentId,
        patch: &CommentPatch,
    ) -> StoreResult<(Comment, Option<Event>)> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        let ws: Option<i64> = sqlx::query_scalar("SELECT workspace_id FROM comments WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let ws = ws.ok_or(StoreError::NotFound("comment"))?;
        let (offset, role) = begin_change(&mut tx, ws, actor)
            .await?
            .ok_or(StoreError::NotFound("comment"))?;
        require(role, Role::Editor, "viewers cannot change comments")?;
        let current = comment_in(&mut tx, id)
            .await?
            .ok_or(StoreError::NotFound("comment"))?;
        let mut changed = Vec::new();
        if let Some((body, keys)) = &patch.body {
            if current.author_id != Some(actor) {
                return Err(StoreError::Forbidden("only the author can edit a comment"));
            }
            if body.as_str() != current.body {
                sqlx::query("UPDATE comments SET body = $1, updated_at = $2 WHERE id = $3")
                    .bind(body.as_str())
                    .bind(now)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                record_mentions(&mut tx, ws, id, keys).await?;
                changed.push("body");
            }
        }
        if let Some(resolved) = patch.resolved {
            if resolved != current.resolved_at.is_some() {
                let (at, by) = if resolved {
                    (Some(now), Some(actor))
                } else {
                    (None, None)
                };
                sqlx::query(
                    "UPDATE comments SET resolved_at = $1, resolved_by = $2, updated_at = $3 WHERE id = $4",
                )
                .bind(at)
                .bind(by)
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
                changed.push("resolved");
            }
        }
        if changed.is_empty() {
            return Ok((current, None));
        }
        let comment = comment_in(&mut tx, id)
            .await?
            .ok_or(StoreError::NotFound("comment"))?;
        let kind = match (changed.as_slice(), comment.resolved_at.is_some()) {
            (["resolved"], true) => "comment.resolved",
            (["resolved"], false) => "comment.unresolved",
            _ => "comment.updated",
        };
        let mut data = comment_json(&comment);
        data["changed"] = json!(changed);
        let ev = append(
            &mut tx,
            event(ws, offset, kind, actor, format!("comment:{id}"), data, now),
        )
        .await?;
        tx.commit().await?;
        Ok((comment, Some(ev)))
    }

    async fn delete_comment(&self, actor: UserId, id: CommentId) -> StoreResult<Event> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        let ws: Option<i64> = sqlx::query_scalar("SELECT workspace_id FROM comments WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let ws = ws.ok_or(StoreError::NotFound("comment"))?;
        let (offset, role) = begin_change(&mut tx, ws, actor)
            .await?
            .ok_or(StoreError::NotFound("comment"))?;
        let current = comment_in(&mut tx, id)
            .await?
            .ok_or(StoreError::NotFound("comment"))?;
        if current.author_id != Some(actor) {
            require(
                role,
                Role::Admin,
                "only the author or an admin can delete a comment",
            )?;
        } else {
            require(role, Role::Editor, "viewers cannot delete comments")?;
        }
        sqlx::query("DELETE FROM comments WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let ev = append(
            &mut tx,
            event(
                ws,
                offset,
                "comment.deleted",
                actor,
                format!("comment:{id}"),
                json!({"comment_id": id, "document_id": current.document_id}),
                now,
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(ev)
    }

    async fn events(
        &self,
        actor: UserId,
        ws: WorkspaceId,
        since: i64,
        limit: u32,
    ) -> StoreResult<EventPage> {
        let mut conn = self.reader.acquire().await?;
        let latest: Option<i64> = sqlx::query_scalar(
            "SELECT w.last_offset FROM workspaces w \
             JOIN memberships m ON m.workspace_id = w.id AND m.user_id = $2 WHERE w.id = $1",
        )
        .bind(ws)
        .bind(actor)
        .fetch_optional(&mut *conn)
        .await?;
        let latest_offset = latest.ok_or(StoreError::NotFound("workspace"))?;
        let events = events_after(&mut conn, ws, since, limit).await?;
        Ok(EventPage {
            events,
            latest_offset,
        })
    }

    async fn log_head(&self, ws: WorkspaceId) -> StoreResult<i64> {
        let mut conn = self.reader.acquire().await?;
        let head: Option<i64> =
            sqlx::query_scalar("SELECT last_offset FROM workspaces WHERE id = $1")
                .bind(ws)
                .fetch_optional(&mut *conn)
                .await?;
        head.ok_or(StoreError::NotFound("workspace"))
    }

    async fn log_after(&self, ws: WorkspaceId, since: i64, limit: u32) -> StoreResult<Vec<Event>> {
        let mut conn = self.reader.acquire().await?;
        events_after(&mut conn, ws, since, limit).await
    }

    async fn role(&self, actor: UserId, ws: WorkspaceId) -> StoreResult<Role> {
        self.read_role(ws, actor).await
    }

    async fn document_role(
        &self,
        actor: UserId,
        doc: DocumentId,
    ) -> StoreResult<(WorkspaceId, Role)> {
        let mut conn = self.reader.acquire().await?;
        let row: Option<(i64, String)> = sqlx::query_as(
            "SELECT d.workspace_id, m.role FROM documents d \
             JOIN memberships m ON m.workspace_id = d.workspace_id AND m.user_id = $2 \
             WHERE d.id = $1",
        )
        .bind(doc)
        .bind(actor)
        .fetch_optional(&mut *conn)
        .await?;
        let (ws, role) = row.ok_or(StoreError::NotFound("document"))?;
        Ok((ws, parse_role(&role)?))
    }

    async fn notifications_of_event(
        &self,
        ws: WorkspaceId,
        offset: i64,
    ) -> StoreResult<Vec<Notification>> {
        let mut conn = self.reader.acquire().await?;
        let rows: Vec<NotificationRow> = sqlx::query_as(&format!(
            "SELECT {NOTIFICATION_COLUMNS} FROM notifications \
             WHERE workspace_id = $1 AND event_offset = $2 ORDER BY id"
        ))
        .bind(ws)
        .bind(offset)
        .fetch_all(&mut *conn)
        .await?;
        Ok(rows.into_iter().map(Notification::from).collect())
    }

    async fn notifications(
        &self,
        user: UserId,
        unread_only: bool,
        page: PageRequest,
    ) -> StoreResult<Page<Notification>> {
        let mut conn = self.reader.acquire().await?;
        let unread = if unread_only {
            " AND read_at IS NULL"
        } else {
            ""
        };
        let rows: Vec<NotificationRow> = sqlx::query_as(&format!(
            "SELECT {NOTIFICATION_COLUMNS} FROM notifications \
             WHERE user_id = $1 AND id < $2{unread} ORDER BY id DESC LIMIT $3"
        ))
        .bind(user)
        .bind(page.after.unwrap_or(i64::MAX))
        .bind(fetch_limit(&page))
        .fetch_all(&mut *conn)
        .await?;
        let items = rows.into_iter().map(Notification::from).collect();
        Ok(page_of(items, page.limit, |n: &Notification| n.id))
    }

    async fn unread_count(&self, user: UserId) -> StoreResult<i64> {
        let mut conn = self.reader.acquire().await?;
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM notifications WHERE user_id = $1 AND read_at IS NULL",
        )
        .bind(user)
        .fetch_one(&mut *conn)
        .await?)
    }

    async fn mark_read(&self, user: UserId, id: i64) -> StoreResult<Notification> {
        let mut tx = self.writer.begin().await?;
        sqlx::query(
            "UPDATE notifications SET read_at = $1 \
             WHERE id = $2 AND user_id = $3 AND read_at IS NULL",
        )
        .bind(now_ms())
        .bind(id)
        .bind(user)
        .execute(&mut *tx)
        .await?;
        let row: Option<NotificationRow> = sqlx::query_as(&format!(
            "SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE id = $1 AND user_id = $2"
        ))
        .bind(id)
        .bind(user)
        .fetch_optional(&mut *tx)
        .await?;
        let row = row.ok_or(StoreError::NotFound("notification"))?;
        tx.commit().await?;
        Ok(row.into())
    }

    async fn mark_all_read(&self, user: UserId) -> StoreResult<u64> {
        let mut conn = self.writer.acquire().await?;
        let done = sqlx::query(
            "UPDATE notifications SET read_at = $1 WHERE user_id = $2 AND read_at IS NULL",
        )
        .bind(now_ms())
        .bind(user)
        .execute(&mut *conn)
        .await?;
        Ok(done.rows_affected())
    }
}
