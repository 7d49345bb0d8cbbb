//! The indexer that follows every workspace's event log into the index, and `stoa
//! reindex`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};

use super::client::Elastic;
use super::codec::{bulk_lines, changes_of, Changes};
use crate::search::SearchError;
use crate::store::{HitKind, Store};

/// Events per workspace per pass, and how many workspaces a pass looks at.
const WORKSPACES_PER_PASS: u32 = 100;
/// How often the indexer looks for new events when nothing wakes it.
const POLL: Duration = Duration::from_millis(500);

/// The indexer actor's handle: wake it, or wait until it has caught up.
#[derive(Clone)]
pub struct Indexer {
    wake: Arc<Notify>,
    /// Passes that found nothing left to index, counted.
    idle_passes: watch::Receiver<u64>,
}

impl Indexer {
    /// Starts the actor on the current runtime.
    pub fn start(store: Arc<dyn Store>, es: Arc<Elastic>, batch: u32) -> Indexer {
        let wake = Arc::new(Notify::new());
        let (idle_tx, idle_passes) = watch::channel(0u64);
        let actor = IndexerActor {
            store,
            es,
            batch: batch.clamp(1, 10_000),
            wake: wake.clone(),
            idle: idle_tx,
        };
        tokio::spawn(actor.run());
        Indexer { wake, idle_passes }
    }

    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Returns once a pass that began after this call found nothing left to index (or after
    /// `timeout`).
    pub async fn caught_up(&self, timeout: Duration) {
        let mut idle = self.idle_passes.clone();
        let start = *idle.borrow_and_update();
        self.wake();
        let _ = tokio::time::timeout(timeout, async {
            // Two idle passes: the first may have begun before this call.
            while *idle.borrow() < start + 2 {
                self.wake();
                if idle.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
    }
}

struct IndexerActor {
    store: Arc<dyn Store>,
    es: Arc<Elastic>,
    batch: u32,
    wake: Arc<Notify>,
    idle: watch::Sender<u64>,
}

impl IndexerActor {
    async fn run(self) {
        let mut failures: u32 = 0;
        let mut ready = false;
        loop {
            let pass = async {
                if !ready {
                    self.es.ensure_index().await?;
                    ready = true;
                }
                self.pass().await
            };
            match pass.await {
                Ok(more) => {
                    failures = 0;
                    if !more {
                        self.idle.send_modify(|n| *n += 1);
                        let _ = tokio::time::timeout(POLL, self.wake.notified()).await;
                    }
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let backoff = Duration::from_millis(250u64 << failures.min(7));
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "search indexing failed; retrying from the saved position");
                    tokio::time::sleep(backoff.min(Duration::from_secs(30))).await;
                }
            }
        }
    }

    /// Indexes one batch of events of each workspace that is behind; whether any was.
    async fn pass(&self) -> Result<bool, SearchError> {
        let behind = self.store.search_backlog(WORKSPACES_PER_PASS).await?;
        for (ws, position, _head) in &behind {
            let events = self.store.log_after(*ws, *position, self.batch).await?;
            let Some(last) = events.last().map(|e| e.offset) else {
                continue;
            };
            index_changes(&*self.store, &self.es, &changes_of(&events)).await?;
            self.store.set_search_position(*ws, last).await?;
        }
        Ok(!behind.is_empty())
    }
}

/// Applies a batch's changes to the index: the current rows of what they name, deletes for
/// what is gone.
async fn index_changes(store: &dyn Store, es: &Elastic, c: &Changes) -> Result<(), SearchError> {
    let mut rows = Vec::new();
    let mut gone = c.delete.clone();
    for kind in [HitKind::Document, HitKind::Comment] {
        let ids: Vec<i64> = c
            .refresh
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, id)| *id)
            .collect();
        if ids.is_empty() {
            continue;
        }
        let found = store.indexable(kind, &ids).await?;
        gone.extend(
            ids.iter()
                .filter(|id| !found.iter().any(|r| r.id == **id))
                .map(|id| (kind, *id)),
        );
        rows.extend(found);
    }
    es.bulk(bulk_lines(&rows, &gone)).await?;
    es.delete_comments_of(&c.deleted_documents).await
}

/// Rebuilds the index from the database (`stoa reindex`): drops it, creates it, indexes
/// every document and comment in bulk, then sets every workspace's position to the log head
/// read before the copy began, so the indexer replays whatever changed during it. Returns
/// the documents and comments indexed.
pub async fn reindex(
    store: &dyn Store,
    es: &Elastic,
    batch: u32,
) -> Result<(u64, u64), SearchError> {
    let heads = store.log_heads().await?;
    es.drop_index().await?;
    es.ensure_index().await?;
    let mut counts = [0u64; 2];
    for (i, kind) in [HitKind::Document, HitKind::Comment]
        .into_iter()
        .enumerate()
    {
        let mut after = 0;
        loop {
            let rows = store
                .indexable_after(kind, after, batch.clamp(1, 10_000))
                .await?;
            let Some(last) = rows.last().map(|r| r.id) else {
                break;
            };
            es.bulk(bulk_lines(&rows, &[])).await?;
            counts[i] += rows.len() as u64;
            after = last;
        }
    }
    store.reset_search_positions(&heads).await?;
    es.refresh().await?;
    Ok((counts[0], counts[1]))
}
