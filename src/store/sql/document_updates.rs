//! Documents' Yjs updates: appended in batches, loaded in order, a prefix replaced by a
//! snapshot. The snapshot takes the position of the last update it replaces, so the order
//! of what is left stays the order of application.

use async_trait::async_trait;

use super::SqlStore;
use crate::domain::{now_ms, DocumentId};
use crate::store::{DocumentUpdates, StoreResult};

#[async_trait]
impl DocumentUpdates for SqlStore {
    async fn document_updates(
        &self,
        doc: DocumentId,
        after: i64,
    ) -> StoreResult<(Vec<Vec<u8>>, i64)> {
        let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT seq, data FROM document_updates WHERE document_id = $1 AND seq > $2 \
             ORDER BY seq",
        )
        .bind(doc)
        .bind(after)
        .fetch_all(&self.reader)
        .await?;
        let last = rows.last().map_or(after, |(seq, _)| *seq);
        Ok((rows.into_iter().map(|(_, data)| data).collect(), last))
    }

    async fn append_document_updates(
        &self,
        doc: DocumentId,
        updates: &[Vec<u8>],
    ) -> StoreResult<i64> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        let mut last = 0;
        for update in updates {
            last = sqlx::query_scalar(
                "INSERT INTO document_updates (document_id, data, created_at) \
                 VALUES ($1, $2, $3) RETURNING seq",
            )
            .bind(doc)
            .bind(update.as_slice())
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(last)
    }

    async fn compact_document_updates(
        &self,
        doc: DocumentId,
        snapshot: &[u8],
        through: i64,
    ) -> StoreResult<()> {
        if through <= 0 {
            return Ok(());
        }
        let mut tx = self.writer.begin().await?;
        sqlx::query("DELETE FROM document_updates WHERE document_id = $1 AND seq <= $2")
            .bind(doc)
            .bind(through)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO document_updates (seq, document_id, data, created_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(through)
        .bind(doc)
        .bind(snapshot)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
