//! The bytes of attachments, behind one port with two implementations (both from the
//! `object_store` crate): a directory under `data_dir` (the default, nothing to run) and any
//! S3-compatible service when `storage.s3_bucket` is set.
//!
//! The database is the record of what exists; the store only holds bytes under keys the
//! database names. Keys are never reused. What the database stops naming is removed after
//! the transaction that stopped naming it commits, through an outbox in the same database
//! (`blob_deletions`):
//! - a row leaving `attachments` (its own deletion, or its comment's, document's or
//!   workspace's) puts its key there, by trigger, in the same transaction, due at once;
//! - an upload puts its key there *before* the first byte is stored, due after
//!   `storage.upload_grace_secs`, and the transaction that records the attachment takes it
//!   out again.
//!
//! The [`Sweeper`] removes due keys' blobs and then their outbox rows: right after a commit
//! that queued some (a nudge), and every `storage.sweep_every_secs` on every node. A crash
//! between a commit and the removal, a store that is away, an upload cut off halfway: each
//! leaves a row that a later round finds. Removing a blob that is already gone succeeds, so
//! two nodes sweeping at once, or a round repeated after a crash, do no harm.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use object_store::path::Path as KeyPath;
use object_store::{GetOptions, GetRange, ObjectStore, WriteMultipart};
use tokio::sync::Notify;

use crate::config::StorageSettings;
use crate::store::Store;

/// Outbox rows looked at per sweep round.
const SWEEP_BATCH: u32 = 200;

/// An S3 part (the protocol's minimum is 5 MiB); a directory store writes in smaller steps.
const S3_PART_BYTES: usize = 8 << 20;
const DIR_PART_BYTES: usize = 1 << 20;
/// Parts in flight at once for one upload: with the part being filled, what an upload holds
/// in memory is at most (this + 1) parts, whatever the file's size.
const PARTS_IN_FLIGHT: usize = 2;

/// A blob store failed (unreachable, refused, or the blob is missing).
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("the blob is not in the store")]
    Missing,
    #[error("blob store: {0}")]
    Store(String),
}

impl From<object_store::Error> for BlobError {
    fn from(e: object_store::Error) -> BlobError {
        match e {
            object_store::Error::NotFound { .. } => BlobError::Missing,
            other => BlobError::Store(other.to_string()),
        }
    }
}

/// The blob store and what kind it is.
#[derive(Clone)]
pub struct Blobs {
    store: Arc<dyn ObjectStore>,
    /// For a directory store: its root (to clear what an upload cut off by a crash staged).
    dir: Option<std::path::PathBuf>,
    part_bytes: usize,
    /// `directory /var/lib/stoa/blobs` or `s3 bucket-name`, for the log and `stoa backup`.
    pub description: String,
}

impl std::fmt::Debug for Blobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.description)
    }
}

impl Blobs {
    /// The store `storage` describes: S3 when `s3_bucket` is set, else the directory
    /// `storage.dir` (relative to `data_dir`), created 0700 if missing.
    pub fn open(storage: &StorageSettings, data_dir: &std::path::Path) -> Result<Blobs, String> {
        if !storage.s3_bucket.is_empty() {
            // AWS_* variables fill what the settings leave empty (credentials, region, a
            // web identity), as every AWS tool reads them.
            let mut builder = object_store::aws::AmazonS3Builder::from_env()
                .with_bucket_name(&storage.s3_bucket)
                .with_region(&storage.s3_region)
                // A store that is away fails a request in seconds, not minutes: an upload
                // answers 503, a removal is left to the next sweep.
                .with_retry(object_store::RetryConfig {
                    max_retries: 3,
                    retry_timeout: Duration::from_secs(20),
                    backoff: Default::default(),
                });
            if !storage.s3_endpoint.is_empty() {
                builder = builder
                    .with_endpoint(&storage.s3_endpoint)
                    .with_allow_http(storage.s3_endpoint.starts_with("http://"))
                    .with_virtual_hosted_style_request(storage.s3_virtual_hosted);
            }
            if !storage.s3_access_key_id.is_empty() {
                builder = builder
                    .with_access_key_id(&storage.s3_access_key_id)
                    .with_secret_access_key(&storage.s3_secret_access_key);
            }
            let store = builder.build().map_err(|e| e.to_string())?;
            return Ok(Blobs {
                store: Arc::new(store),
                dir: None,
                part_bytes: S3_PART_BYTES,
                description: Blobs::describe(storage, data_dir),
            });
        }
        let dir = Blobs::dir_of(storage, data_dir);
        crate::files::private_dir(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(&dir)
            .map_err(|e| e.to_string())?;
        Ok(Blobs {
            store: Arc::new(store),
            description: Blobs::describe(storage, data_dir),
            dir: Some(dir),
            part_bytes: DIR_PART_BYTES,
        })
    }

    fn dir_of(storage: &StorageSettings, data_dir: &std::path::Path) -> std::path::PathBuf {
        if storage.dir.is_absolute() {
            storage.dir.clone()
        } else {
            data_dir.join(&storage.dir)
        }
    }

    /// Where `storage` keeps blobs, in words (without opening anything).
    pub fn describe(storage: &StorageSettings, data_dir: &std::path::Path) -> String {
        if storage.s3_bucket.is_empty() {
            format!("directory {}", Blobs::dir_of(storage, data_dir).display())
        } else if storage.s3_endpoint.is_empty() {
            format!("s3 bucket {}", storage.s3_bucket)
        } else {
            format!("s3 bucket {} at {}", storage.s3_bucket, storage.s3_endpoint)
        }
    }

    /// A new key, never used before, under the workspace's prefix.
    pub fn new_key(workspace: i64) -> String {
        let bytes: [u8; 16] = rand::random();
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        format!("attachments/{workspace}/{hex}")
    }

    /// Starts writing a blob (a multipart upload on S3, a staged file in a directory).
    pub async fn writer(&self, key: &str) -> Result<BlobWriter, BlobError> {
        let upload = self.store.put_multipart(&KeyPath::from(key)).await?;
        Ok(BlobWriter {
            inner: WriteMultipart::new_with_chunk_size(upload, self.part_bytes),
            part: bytes::BytesMut::new(),
            part_bytes: self.part_bytes,
            gather: self.dir.is_none(),
        })
    }

    /// The blob's bytes in `range` (all of it without one), as a stream.
    pub async fn read(
        &self,
        key: &str,
        range: Option<Range<u64>>,
    ) -> Result<BoxStream<'static, Result<Bytes, BlobError>>, BlobError> {
        let options = GetOptions {
            range: range.map(GetRange::Bounded),
            ..Default::default()
        };
        let got = self.store.get_opts(&KeyPath::from(key), options).await?;
        let range = got.range.clone();
        Ok(match got.payload {
            object_store::GetResultPayload::File(file, _) => file_stream(file, range),
            object_store::GetResultPayload::Stream(s) => {
                s.map(|r| r.map_err(BlobError::from)).boxed()
            }
        })
    }

    /// Whether the blob is there, and its size.
    pub async fn size(&self, key: &str) -> Result<Option<u64>, BlobError> {
        match self.store.head(&KeyPath::from(key)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes a blob, and in a directory what an upload cut off under its key staged;
    /// succeeds when there is nothing to remove.
    pub async fn remove(&self, key: &str) -> Result<(), BlobError> {
        match self.store.delete(&KeyPath::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        if let Some(dir) = &self.dir {
            // Staged parts are `<key>#<n>` beside where the blob would be.
            let path = dir.join(key);
            let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
                return Ok(());
            };
            let prefix = format!("{}#", name.to_string_lossy());
            if let Ok(entries) = std::fs::read_dir(parent) {
                for entry in entries.flatten() {
                    if entry.file_name().to_string_lossy().starts_with(&prefix) {
                        let _ = std::fs::remove_file(entry.path());
                    }
                }
            }
        }
        Ok(())
    }

    /// Every key under `prefix`, with its size (for `stoa blobs check`).
    pub fn keys(&self, prefix: &str) -> BoxStream<'static, Result<(String, u64), BlobError>> {
        let prefix = KeyPath::from(prefix);
        self.store
            .list(Some(&prefix))
            .map(|r| {
                r.map(|m| (m.location.to_string(), m.size))
                    .map_err(BlobError::from)
            })
            .boxed()
    }
}

/// How much of a file one read of a directory store's blob takes.
const FILE_READ_BYTES: usize = 256 << 10;
/// Reads ahead of the client at most this many of them.
const FILE_READS_AHEAD: usize = 4;

/// `range` of a directory store's file as a stream, read on a blocking thread in 256 KiB
/// steps, at most four ahead of the client. (The crate's own stream reads 8 KiB per blocking
/// task; see docs/BENCHMARKS.md for the difference.)
fn file_stream(
    mut file: std::fs::File,
    range: Range<u64>,
) -> BoxStream<'static, Result<Bytes, BlobError>> {
    use std::io::{Read, Seek, SeekFrom};
    let (tx, rx) = tokio::sync::mpsc::channel(FILE_READS_AHEAD);
    tokio::task::spawn_blocking(move || {
        if let Err(e) = file.seek(SeekFrom::Start(range.start)) {
            let _ = tx.blocking_send(Err(BlobError::Store(e.to_string())));
            return;
        }
        let mut left = range.end - range.start;
        while left > 0 {
            let want = usize::try_from(left)
                .unwrap_or(usize::MAX)
                .min(FILE_READ_BYTES);
            let mut buf = vec![0u8; want];
            let read = match file.read(&mut buf) {
                Ok(0) => Err(BlobError::Store("the file ended early".into())),
                Ok(n) => {
                    buf.truncate(n);
                    Ok(Bytes::from(buf))
                }
                Err(e) => Err(BlobError::Store(e.to_string())),
            };
            let failed = read.is_err();
            left -= read.as_ref().map_or(0, |b| b.len() as u64);
            // The client went away: nothing more to read for it.
            if tx.blocking_send(read).is_err() || failed {
                return;
            }
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
    .boxed()
}

/// A blob being written: bytes go in as they arrive, at most a few parts held at a time.
///
/// A request body arrives in pieces of a few KiB. For S3 each part is gathered into one
/// buffer before it goes, so the service receives a part as one contiguous body rather
/// than a thousand small pieces (1.2–1.4× the upload rate into moto's S3; see
/// docs/BENCHMARKS.md); a directory store writes the pieces as they come (no copy).
pub struct BlobWriter {
    inner: WriteMultipart,
    part: bytes::BytesMut,
    part_bytes: usize,
    /// Gather parts (S3); a directory store writes each piece as it comes.
    gather: bool,
}

impl BlobWriter {
    /// Queues `bytes`, first waiting until the store has taken enough of what came before.
    pub async fn write(&mut self, bytes: Bytes) -> Result<(), BlobError> {
        if !self.gather {
            self.inner.wait_for_capacity(PARTS_IN_FLIGHT).await?;
            self.inner.put(bytes);
            return Ok(());
        }
        if self.part.capacity() == 0 {
            self.part.reserve(self.part_bytes);
        }
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let n = rest.len().min(self.part_bytes - self.part.len());
            self.part.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            if self.part.len() == self.part_bytes {
                self.inner.wait_for_capacity(PARTS_IN_FLIGHT).await?;
                let full = std::mem::replace(
                    &mut self.part,
                    bytes::BytesMut::with_capacity(self.part_bytes),
                );
                self.inner.put(full.freeze());
            }
        }
        Ok(())
    }

    /// Stores what was written as the blob.
    pub async fn finish(mut self) -> Result<(), BlobError> {
        if !self.part.is_empty() {
            self.inner.put(std::mem::take(&mut self.part).freeze());
        }
        self.inner.finish().await?;
        Ok(())
    }

    /// Gives up: what was stored of it is removed.
    pub async fn abort(self) {
        let _ = self.inner.abort().await;
    }
}

/// Removes the blobs the outbox names once they are due.
#[derive(Clone)]
pub struct Sweeper {
    store: Arc<dyn Store>,
    blobs: Blobs,
    nudge: Arc<Notify>,
    every: Duration,
    metrics: crate::metrics::Metrics,
}

impl Sweeper {
    pub fn new(
        store: Arc<dyn Store>,
        blobs: Blobs,
        every: Duration,
        metrics: crate::metrics::Metrics,
    ) -> Sweeper {
        Sweeper {
            store,
            blobs,
            nudge: Arc::new(Notify::new()),
            every,
            metrics,
        }
    }

    /// A commit queued removals: sweep now rather than at the next round.
    pub fn nudge(&self) {
        self.nudge.notify_one();
    }

    /// One round: every due key's blob removed, then its row. Returns how many went.
    pub async fn sweep(&self) -> usize {
        let mut removed = 0;
        loop {
            let now = crate::domain::now_ms();
            let due = match self.store.due_blob_deletions(now, SWEEP_BATCH).await {
                Ok(due) => due,
                Err(e) => {
                    tracing::warn!(error = %e, "blob sweep: cannot read the outbox");
                    return removed;
                }
            };
            let mut done = Vec::with_capacity(due.len());
            for key in &due {
                match self.blobs.remove(key).await {
                    Ok(()) => done.push(key.clone()),
                    Err(e) => {
                        // The row stays: the next round tries again.
                        tracing::warn!(key = %key, error = %e, "blob sweep: cannot remove a blob");
                        self.metrics.blob_sweep_failures.inc();
                    }
                }
            }
            if let Err(e) = self.store.forget_blob_deletions(&done).await {
                tracing::warn!(error = %e, "blob sweep: cannot clear the outbox");
                return removed;
            }
            removed += done.len();
            self.metrics.blobs_removed.inc_by(done.len() as u64);
            // A short batch, or one where nothing could be removed: the round is over.
            if due.len() < SWEEP_BATCH as usize || done.is_empty() {
                return removed;
            }
        }
    }

    /// Sweeps at start, on every nudge and every `every`, until the process ends.
    pub async fn run(self) {
        loop {
            let n = self.sweep().await;
            if n > 0 {
                tracing::debug!(removed = n, "blob sweep");
            }
            tokio::select! {
                _ = self.nudge.notified() => {}
                _ = tokio::time::sleep(self.every) => {}
            }
        }
    }
}
