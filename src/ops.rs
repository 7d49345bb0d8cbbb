//! Operator commands: `stoa backup FILE`, `stoa restore FILE` and `stoa healthcheck`, and
//! the lock by which a running server tells `restore` that the data directory is in use.
//!
//! A backup is SQLite's `VACUUM INTO` run on a read-only connection beside the server: a
//! read transaction, so it sees one consistent state (every write committed before it
//! began, none after) while the server goes on writing through WAL. The copy is written
//! under a temporary name, checked and then renamed, so `FILE` is either absent or whole.
//!
//! Every server holds a shared lock on `<data_dir>/stoa.lock` while it runs; `restore`
//! takes it exclusively, so it refuses while any server uses the directory, and a server
//! refuses to start while a restore runs.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sqlx::{ConnectOptions, Connection, Row};

use crate::config::{DatabaseKind, Settings};

const LOCK_FILE: &str = "stoa.lock";

/// Why an operator's command failed: refused (it does not apply here, or would do harm),
/// or failed (a file, the database or the node did not do what was asked). Its text is
/// what `stoa` prints.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpsError {
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Failed(String),
}

impl OpsError {
    pub(crate) fn refused(message: impl Into<String>) -> OpsError {
        OpsError::Refused(message.into())
    }

    pub(crate) fn failed(message: impl std::fmt::Display) -> OpsError {
        OpsError::Failed(message.to_string())
    }
}

impl From<crate::domain::Invalid> for OpsError {
    fn from(invalid: crate::domain::Invalid) -> OpsError {
        OpsError::Refused(invalid.0)
    }
}

/// The running server's hold on its data directory (released when dropped).
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

fn lock_path(data_dir: &Path) -> Result<PathBuf, OpsError> {
    crate::files::private_dir(data_dir)
        .map_err(|e| OpsError::failed(format!("cannot create {}: {e}", data_dir.display())))?;
    Ok(data_dir.join(LOCK_FILE))
}

fn open_lock(data_dir: &Path) -> Result<File, OpsError> {
    let path = lock_path(data_dir)?;
    crate::files::touch_private(&path)
        .map_err(|e| OpsError::failed(format!("cannot open {}: {e}", path.display())))
}

/// Taken by a server at start-up: shared, so several servers may use one directory (with
/// PostgreSQL), but not while a restore holds it.
pub fn hold_data_dir(data_dir: &Path) -> Result<DataDirLock, OpsError> {
    let file = open_lock(data_dir)?;
    match file.try_lock_shared() {
        Ok(()) => Ok(DataDirLock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => Err(OpsError::refused(format!(
            "a restore is running in {}; start the server once it has finished",
            data_dir.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(OpsError::refused(format!(
            "cannot lock the data directory: {e}"
        ))),
    }
}

/// The SQLite file `database.url` names (None for PostgreSQL).
fn sqlite_file(settings: &Settings) -> Result<Option<PathBuf>, OpsError> {
    match settings.database.kind() {
        Some(DatabaseKind::Sqlite) => crate::store::sqlite_path(&settings.database.url)
            .map(|path| Some(PathBuf::from(path)))
            .ok_or_else(|| OpsError::refused("database.url names no SQLite file")),
        Some(DatabaseKind::Postgres) => Ok(None),
        None => Err(OpsError::refused(
            "database.url is neither sqlite:// nor postgres://",
        )),
    }
}

const PG_POINTER: &str = "this server uses PostgreSQL: back it up with pg_dump and restore with \
     pg_restore (see docs/DEPLOY.md); `stoa backup` and `stoa restore` are for the embedded \
     SQLite database";

async fn open(path: &Path, read_only: bool) -> Result<sqlx::SqliteConnection, OpsError> {
    let url = format!("sqlite://{}", path.display());
    SqliteConnectOptions::from_str(&url)
        .map_err(|e| OpsError::failed(e.to_string()))?
        .read_only(read_only)
        .create_if_missing(false)
        .busy_timeout(Duration::from_secs(30))
        .disable_statement_logging()
        .connect()
        .await
        .map_err(|e| OpsError::failed(format!("cannot open {}: {e}", path.display())))
}

/// Checks that `path` is a whole Stoa database: SQLite's own check, and the migrations'
/// table; the number of migrations applied.
async fn verify(path: &Path) -> Result<i64, OpsError> {
    let mut conn = open(path, true).await?;
    let check: String = sqlx::query_scalar("PRAGMA quick_check")
        .fetch_one(&mut conn)
        .await
        .map_err(|e| {
            OpsError::failed(format!(
                "{} is not a readable SQLite database: {e}",
                path.display()
            ))
        })?;
    if check != "ok" {
        return Err(OpsError::refused(format!(
            "{} is damaged: {check}",
            path.display()
        )));
    }
    let migrations = sqlx::query("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&mut conn)
        .await
        .map_err(|_| OpsError::failed(format!("{} is not a Stoa database", path.display())))?
        .try_get::<i64, _>(0)
        .map_err(|e| OpsError::failed(e.to_string()))?;
    let _ = conn.close().await;
    Ok(migrations)
}

/// `stoa backup FILE`: a consistent copy of the SQLite database, taken while the server
/// runs. Refuses to overwrite `FILE`.
pub async fn backup(settings: &Settings, target: &Path) -> Result<Value, OpsError> {
    let Some(source) = sqlite_file(settings)? else {
        return Err(OpsError::refused(PG_POINTER));
    };
    if !source.exists() {
        return Err(OpsError::refused(format!(
            "no database at {}",
            source.display()
        )));
    }
    if target.exists() {
        return Err(OpsError::refused(format!(
            "{} exists; choose a new file (a backup never overwrites)",
            target.display()
        )));
    }
    let partial = with_suffix(target, ".partial");
    let _ = std::fs::remove_file(&partial);
    // VACUUM INTO writes into an empty file that exists: made private first, the backup
    // (which holds every password hash and token digest) is never readable by others.
    crate::files::create_private(&partial)
        .map_err(|e| OpsError::failed(format!("cannot create {}: {e}", partial.display())))?;
    let started = Instant::now();
    let mut conn = open(&source, true).await?;
    let result = sqlx::query("VACUUM INTO ?")
        .bind(partial.to_string_lossy().into_owned())
        .execute(&mut conn)
        .await;
    let _ = conn.close().await;
    if let Err(e) = result {
        let _ = std::fs::remove_file(&partial);
        return Err(OpsError::refused(format!("backup failed: {e}")));
    }
    let migrations = match verify(&partial).await {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    File::open(&partial)
        .and_then(|f| f.sync_all())
        .and_then(|()| std::fs::rename(&partial, target))
        .map_err(|e| OpsError::failed(format!("cannot write {}: {e}", target.display())))?;
    let bytes = std::fs::metadata(target).map(|m| m.len()).unwrap_or(0);
    let blobs = blobs_in(target).await?;
    Ok(json!({
        "backup": target.display().to_string(),
        "from": source.display().to_string(),
        "bytes": bytes,
        "migrations": migrations,
        "seconds": started.elapsed().as_secs_f64(),
        "blobs": {
            "store": crate::blobs::Blobs::describe(&settings.storage, &settings.data_dir),
            "in_backup": false,
            "attachments": blobs.0,
            "bytes": blobs.1,
            "note": BLOBS_NOT_IN_BACKUP,
        },
    }))
}

/// What `stoa backup` and `stoa restore` say of attachments' bytes.
const BLOBS_NOT_IN_BACKUP: &str = "attachments' bytes are not in the backup, only their records: \
     copy the blob store (the directory, or the bucket with versioning) after the backup. Keys \
     are never reused and a blob is removed only after its record is deleted, so a copy made \
     after the backup holds every blob it names but those deleted in between; after a restore, \
     `stoa blobs check` lists records whose bytes are missing and bytes no record names \
     (`--remove-orphans` removes those)";

/// Attachments a database file records, and their bytes.
async fn blobs_in(db: &Path) -> Result<(i64, i64), OpsError> {
    let mut conn = open(db, true).await?;
    let row =
        sqlx::query("SELECT COUNT(*), CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM attachments")
            .fetch_one(&mut conn)
            .await
            .map_err(|e| OpsError::failed(format!("cannot read the attachments: {e}")));
    let _ = conn.close().await;
    let row = row?;
    Ok((row.get(0), row.get(1)))
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// `stoa restore FILE`: puts a backup in the database's place. Refuses while a server uses
/// the data directory. The database it replaces is kept beside it as
/// `<file>.before-restore-<unix seconds>`.
pub async fn restore(settings: &Settings, backup: &Path) -> Result<Value, OpsError> {
    let Some(target) = sqlite_file(settings)? else {
        return Err(OpsError::refused(PG_POINTER));
    };
    let lock = open_lock(&settings.data_dir)?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(OpsError::refused(format!(
                "a server is using {}; stop it first (restore never replaces a database in use)",
                settings.data_dir.display()
            )))
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(OpsError::refused(format!(
                "cannot lock the data directory: {e}"
            )))
        }
    }
    let migrations = verify(backup).await?;
    // Copy beside the target first, so the swap is one rename on the same file system.
    let incoming = with_suffix(&target, ".restoring");
    File::open(backup)
        .and_then(|mut from| {
            let mut to = crate::files::create_private(&incoming)?;
            std::io::copy(&mut from, &mut to)?;
            to.sync_all()
        })
        .map_err(|e| OpsError::failed(format!("cannot copy {}: {e}", backup.display())))?;
    let mut kept = None;
    if target.exists() {
        // Fold the old database's WAL into it, so the copy kept is whole on its own.
        let mut conn = open(&target, false).await?;
        let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&mut conn)
            .await;
        let _ = conn.close().await;
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let aside = with_suffix(&target, &format!(".before-restore-{secs}"));
        std::fs::rename(&target, &aside).map_err(|e| {
            OpsError::failed(format!("cannot move {} aside: {e}", target.display()))
        })?;
        kept = Some(aside.display().to_string());
    }
    // A WAL or shared-memory file left from the old database must not meet the new one.
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(with_suffix(&target, suffix));
    }
    std::fs::rename(&incoming, &target)
        .map_err(|e| OpsError::failed(format!("cannot move the backup into place: {e}")))?;
    // The restored file is opened once in WAL mode, as the server will.
    let conn = SqliteConnectOptions::from_str(&format!("sqlite://{}", target.display()))
        .map_err(|e| OpsError::failed(e.to_string()))?
        .journal_mode(SqliteJournalMode::Wal)
        .disable_statement_logging()
        .connect()
        .await
        .map_err(|e| OpsError::failed(format!("cannot open the restored database: {e}")))?;
    let _ = conn.close().await;
    drop(lock);
    let blobs = blobs_in(&target).await?;
    Ok(json!({
        "restored": target.display().to_string(),
        "from": backup.display().to_string(),
        "migrations": migrations,
        "previous": kept,
        "blobs": {
            "store": crate::blobs::Blobs::describe(&settings.storage, &settings.data_dir),
            "attachments": blobs.0,
            "bytes": blobs.1,
            "note": BLOBS_NOT_IN_BACKUP,
        },
    }))
}

/// `stoa blobs check [--remove-orphans]`: compares the blob store with the attachments the
/// database records (with the server running or not). Reports records whose bytes are
/// missing (after restoring a database newer than the store's copy) and blobs that nothing
/// names (after restoring an older database); with `remove_orphans`, removes the latter.
/// A blob the outbox holds (an upload under way, a removal due) is neither.
pub async fn blobs_check(settings: &Settings, remove_orphans: bool) -> Result<Value, OpsError> {
    use crate::store::Attachments;
    use futures_util::StreamExt;
    let blobs = crate::blobs::Blobs::open(&settings.storage, &settings.data_dir)
        .map_err(|e| OpsError::failed(format!("blob store: {e}")))?;
    let store = crate::store::SqlStore::connect(&settings.database)
        .await
        .map_err(|e| OpsError::failed(format!("database: {e}")))?;
    let result = async {
        let db = |e: crate::store::StoreError| OpsError::failed(format!("database: {e}"));
        let blob = |e: crate::blobs::BlobError| OpsError::failed(e.to_string());
        let mut listed = std::collections::HashMap::new();
        let mut keys = blobs.keys("attachments");
        while let Some(item) = keys.next().await {
            let (key, size) = item.map_err(blob)?;
            listed.insert(key, size);
        }
        let in_store = listed.len();
        let (mut after, mut recorded, mut missing) = (0, 0u64, Vec::new());
        loop {
            let page = store.attachment_keys(after, 1000).await.map_err(db)?;
            let Some(last) = page.last() else { break };
            after = last.0;
            for (id, key, _) in page {
                recorded += 1;
                // Not listed: perhaps uploaded since the listing; asked again to be sure.
                if listed.remove(&key).is_none() && blobs.size(&key).await.map_err(blob)?.is_none() {
                    missing.push(json!({"attachment_id": id, "key": key}));
                }
            }
        }
        let mut orphans = Vec::new();
        for (key, size) in listed {
            if !store.blob_known(&key).await.map_err(db)? {
                orphans.push((key, size));
            }
        }
        let mut removed = 0;
        if remove_orphans {
            for (key, _) in &orphans {
                blobs.remove(key).await.map_err(blob)?;
                removed += 1;
            }
        }
        Ok(json!({
            "store": blobs.description,
            "attachments": recorded,
            "blobs": in_store,
            "missing": missing,
            "orphans": orphans.iter().map(|(k, s)| json!({"key": k, "bytes": s})).collect::<Vec<_>>(),
            "removed": removed,
        }))
    }
    .await;
    store.close().await;
    result
}

/// `stoa user disable|enable EMAIL`: disables an account (or enables it again). Disabling
/// ends every session of the account: recorded in the database, which every node reads
/// within a second, and told to the cluster over Redis at once when `redis.url` is set.
/// Creates an API token and returns it with its record, the token in clear (shown once).
pub async fn create_api_token(
    settings: &Settings,
    name: &str,
    scopes: &[String],
    expires_in_days: Option<u64>,
) -> Result<Value, OpsError> {
    use crate::store::Directory;
    let name = name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err(OpsError::refused("--name must be 1 to 100 characters"));
    }
    let store = crate::store::SqlStore::connect(&settings.database)
        .await
        .map_err(|e| OpsError::failed(format!("database: {e}")))?;
    let (token, digest) = crate::auth::new_api_token();
    let expires_at = expires_in_days.map(|days| {
        crate::domain::now_ms().saturating_add(i64::try_from(days).unwrap_or(3650) * 86_400_000)
    });
    let created = store
        .create_api_token(None, None, name, &digest, scopes, expires_at)
        .await
        .map_err(|e| OpsError::failed(format!("database: {e}")));
    store.close().await;
    let created = created?;
    Ok(serde_json::json!({
        "id": created.id,
        "name": created.name,
        "scopes": created.scopes,
        "expires_at": created.expires_at.map(crate::domain::format_timestamp),
        "token": token,
    }))
}

pub async fn set_user_disabled(
    settings: &Settings,
    email: &str,
    disabled: bool,
) -> Result<Value, OpsError> {
    use crate::store::Accounts;
    let key = crate::domain::Email::parse(email)
        .map(|e| e.key().to_string())
        .map_err(|e| OpsError::failed(format!("{email:?} is not an e-mail address: {e}")))?;
    let store = crate::store::SqlStore::connect(&settings.database)
        .await
        .map_err(|e| OpsError::failed(format!("database: {e}")))?;
    let found = store
        .set_disabled(&key, disabled)
        .await
        .map_err(|e| OpsError::failed(format!("database: {e}")));
    store.close().await;
    let Some((user, ended)) = found? else {
        return Err(OpsError::refused(format!(
            "no account has the e-mail address {email}"
        )));
    };
    let mut told = false;
    // Over a Redis bus the cluster is told at once; over RabbitMQ (or none), nodes read the
    // database within a second.
    let redis = Some(settings.bus_url()).filter(|u| u.starts_with("redis"));
    if let (Some(end), Some(url)) = (&ended, redis) {
        let body = stoa_protocol::bus::Body::SessionEnded(crate::realtime::session_end(end));
        match crate::bus::publish_once(url, settings, body).await {
            Ok(()) => told = true,
            Err(e) => {
                tracing::warn!(error = %e, "cannot tell the cluster over Redis; nodes read the database within a second")
            }
        }
    }
    Ok(json!({
        "user": user.id,
        "email": user.email,
        "disabled": user.disabled,
        "sessions_ended": ended.is_some(),
        "cluster_told": told,
    }))
}

/// `stoa healthcheck [--url URL]`: GETs the node's `/readyz` (by default on 127.0.0.1 at
/// `server.port`, over HTTPS when `server.tls_cert` is set) and succeeds on 200. For
/// container health checks: the image needs no curl. Over HTTPS it checks that this
/// process answers, not who it is, so the certificate is not verified.
pub async fn healthcheck(settings: &Settings, url: Option<&str>) -> Result<(), OpsError> {
    let url = match url {
        Some(u) => u.to_string(),
        None => {
            let scheme = if settings.server.tls_cert.is_empty() {
                "http"
            } else {
                "https"
            };
            format!("{scheme}://127.0.0.1:{}/readyz", settings.server.port)
        }
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .danger_accept_invalid_certs(true)
        .build()
        .map_err(|e| OpsError::failed(e.to_string()))?;
    let res = client
        .get(&url)
        .send()
        .await
        .map_err(|e| OpsError::failed(format!("{url}: {e}")))?;
    if res.status() == reqwest::StatusCode::OK {
        Ok(())
    } else {
        Err(OpsError::refused(format!("{url}: {}", res.status())))
    }
}
