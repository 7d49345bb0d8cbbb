//! Documents' Yjs updates: appended in batches, loaded in order, a prefix replaced by a
//! snapshot. The snapshot takes the position of the last update it replaces, so the order
//! of what is left stays the order of application.

use async_trait::async_trait;
use serde_json::json;

use super::documents::workspace_of_document;
use super::{append, event, SqlStore};
use crate::domain::{now_ms, DocumentId, UserId};
use crate::store::{DocumentUpdates, Event, StoreResult};

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

    async fn document_text(&self, doc: DocumentId) -> StoreResult<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT content FROM documents WHERE id = $1")
                .bind(doc)
                .fetch_optional(&self.reader)
                .await?,
        )
    }

    async fn record_live_edit(
        &self,
        doc: DocumentId,
        text: &str,
        editors: &[(UserId, u32)],
    ) -> StoreResult<Vec<Event>> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        let Some(ws) = workspace_of_document(&mut tx, doc).await? else {
            // Deleted meanwhile: nothing to record.
            return Ok(Vec::new());
        };
        let last_editor = editors.last().map(|(u, _)| *u);
        let version: i64 = sqlx::query_scalar(
            "UPDATE documents SET content = $1, version = version + 1, \
             updated_by = COALESCE($2, updated_by), updated_at = $3 WHERE id = $4 \
             RETURNING version",
        )
        .bind(text)
        .bind(last_editor)
        .bind(now)
        .bind(doc)
        .fetch_one(&mut *tx)
        .await?;
        let mut events = Vec::with_capacity(editors.len());
        for (editor, edits) in editors {
            let offset: i64 = sqlx::query_scalar(
                "UPDATE workspaces SET last_offset = last_offset + 1 WHERE id = $1 \
                 RETURNING last_offset",
            )
            .bind(ws)
            .fetch_one(&mut *tx)
            .await?;
            let ev = event(
                ws,
                offset,
                "document.edited",
                *editor,
                format!("document:{doc}"),
                json!({"document_id": doc, "edits": edits, "version": version}),
                now,
            );
            events.push(append(&mut tx, ev).await?);
        }
        tx.commit().await?;
        Ok(events)
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
