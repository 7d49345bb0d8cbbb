//! Bulk loading for benchmarks and fixtures (`stoa seed`): documents, comments and events
//! with given timestamps, written many rows per statement, and the report rollups rebuilt
//! from a workspace's log in set-based statements. These bypass the per-change path (one
//! transaction and one rollup update per event), which is what makes a million events take
//! seconds instead of minutes; the rebuilt rollups are the same as the live ones (a test
//! compares them).

use serde_json::Value;

use super::{placeholders, SqlStore, HOUR_MS, ROWS_PER_STATEMENT, SLOT_MS};
use crate::config::DatabaseKind;
use crate::domain::{DocumentId, EventKind, UserId, WorkspaceId};
use crate::store::StoreResult;

/// An event to put in a workspace's log as it is.
#[derive(Debug, Clone)]
pub struct ImportedEvent {
    pub kind: EventKind,
    pub actor: UserId,
    pub subject: String,
    pub data: Value,
    pub at: i64,
}

impl SqlStore {
    /// Inserts documents `(title, content, created_at)` by `author`; their ids, in order.
    pub async fn import_documents(
        &self,
        ws: WorkspaceId,
        author: UserId,
        docs: &[(String, String, i64)],
    ) -> StoreResult<Vec<DocumentId>> {
        let mut ids = Vec::with_capacity(docs.len());
        let mut tx = self.writer.begin().await?;
        for chunk in docs.chunks(ROWS_PER_STATEMENT / 5) {
            let rows = (0..chunk.len())
                .map(|i| {
                    format!(
                        "($1, {}, 1, $2, $2, ${}, ${})",
                        placeholders(3 + 3 * i, 2),
                        5 + 3 * i,
                        5 + 3 * i
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "INSERT INTO documents (workspace_id, title, content, version, created_by, \
                 updated_by, created_at, updated_at) VALUES {rows} RETURNING id"
            );
            let mut q = sqlx::query_scalar::<_, i64>(&sql).bind(ws).bind(author);
            for (title, content, at) in chunk {
                q = q.bind(title).bind(content).bind(*at);
            }
            let mut got = q.fetch_all(&mut *tx).await?;
            got.sort_unstable();
            ids.extend(got);
        }
        tx.commit().await?;
        Ok(ids)
    }

    /// Inserts comments `(document, author, body, created_at)`.
    pub async fn import_comments(
        &self,
        ws: WorkspaceId,
        comments: &[(DocumentId, UserId, String, i64)],
    ) -> StoreResult<()> {
        let mut tx = self.writer.begin().await?;
        for chunk in comments.chunks(ROWS_PER_STATEMENT / 4) {
            let rows = (0..chunk.len())
                .map(|i| {
                    let p = 2 + 4 * i;
                    format!("($1, ${p}, ${}, ${}, ${}, ${})", p + 1, p + 2, p + 3, p + 3)
                })
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "INSERT INTO comments (workspace_id, document_id, author_id, body, created_at, \
                 updated_at) VALUES {rows}"
            );
            let mut q = sqlx::query(&sql).bind(ws);
            for (doc, author, body, at) in chunk {
                q = q.bind(*doc).bind(*author).bind(body).bind(*at);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Appends events to a workspace's log as given (offsets follow the log's head), in one
    /// transaction. The report rollups are not touched: call
    /// [`SqlStore::rebuild_report_rollups`] when done.
    pub async fn import_events(
        &self,
        ws: WorkspaceId,
        events: &[ImportedEvent],
    ) -> StoreResult<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut tx = self.writer.begin().await?;
        let last: i64 = sqlx::query_scalar(
            "UPDATE workspaces SET last_offset = last_offset + $1 WHERE id = $2 RETURNING last_offset",
        )
        .bind(events.len() as i64)
        .bind(ws)
        .fetch_one(&mut *tx)
        .await?;
        let mut offset = last - events.len() as i64;
        for chunk in events.chunks(ROWS_PER_STATEMENT / 6) {
            let rows = (0..chunk.len())
                .map(|i| format!("($1, {})", placeholders(2 + 6 * i, 6)))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "INSERT INTO events (workspace_id, event_offset, kind, actor_id, subject, payload, \
                 created_at) VALUES {rows}"
            );
            let mut q = sqlx::query(&sql).bind(ws);
            for e in chunk {
                offset += 1;
                q = q
                    .bind(offset)
                    .bind(e.kind.as_str())
                    .bind(e.actor)
                    .bind(&e.subject)
                    .bind(e.data.to_string())
                    .bind(e.at);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Recomputes a workspace's report rollups from its event log, in one transaction.
    pub async fn rebuild_report_rollups(&self, ws: WorkspaceId) -> StoreResult<()> {
        let doc_id = match self.kind {
            DatabaseKind::Sqlite => "json_extract(e.payload, '$.document_id')",
            DatabaseKind::Postgres => "CAST(e.payload::jsonb ->> 'document_id' AS BIGINT)",
        };
        let edit = "e.kind IN ('document.updated', 'document.edited')";
        let statements = [
            "DELETE FROM activity_slots WHERE workspace_id = $1".to_string(),
            "DELETE FROM activity_hours WHERE workspace_id = $1".to_string(),
            "DELETE FROM member_activity WHERE workspace_id = $1".to_string(),
            "DELETE FROM document_activity WHERE workspace_id = $1".to_string(),
            "DELETE FROM document_editors WHERE document_id IN \
             (SELECT id FROM documents WHERE workspace_id = $1)"
                .to_string(),
            format!(
                "INSERT INTO activity_slots (workspace_id, slot, kind, events) \
                 SELECT workspace_id, (created_at / {SLOT_MS}) * {SLOT_MS}, kind, COUNT(*) \
                 FROM events WHERE workspace_id = $1 \
                 GROUP BY workspace_id, (created_at / {SLOT_MS}) * {SLOT_MS}, kind"
            ),
            format!(
                "INSERT INTO activity_hours (workspace_id, hour, kind, events) \
                 SELECT workspace_id, (created_at / {HOUR_MS}) * {HOUR_MS}, kind, COUNT(*) \
                 FROM events WHERE workspace_id = $1 \
                 GROUP BY workspace_id, (created_at / {HOUR_MS}) * {HOUR_MS}, kind"
            ),
            format!(
                "INSERT INTO document_editors (document_id, user_id, edits) \
                 SELECT d.id, e.actor_id, COUNT(*) FROM events e \
                 JOIN documents d ON d.id = {doc_id} AND d.workspace_id = e.workspace_id \
                 WHERE e.workspace_id = $1 AND {edit} AND e.actor_id IS NOT NULL \
                 GROUP BY d.id, e.actor_id"
            ),
            format!(
                "INSERT INTO member_activity (workspace_id, user_id, events, documents_created, \
                 documents_edited, edits, comments, last_active) \
                 SELECT e.workspace_id, e.actor_id, COUNT(*), \
                 SUM(CASE WHEN e.kind = 'document.created' THEN 1 ELSE 0 END), \
                 COALESCE(MAX(x.edited), 0), \
                 SUM(CASE WHEN {edit} THEN 1 ELSE 0 END), \
                 SUM(CASE WHEN e.kind = 'comment.created' THEN 1 ELSE 0 END), \
                 MAX(e.created_at) FROM events e \
                 LEFT JOIN (SELECT de.user_id, COUNT(*) AS edited FROM document_editors de \
                 JOIN documents d ON d.id = de.document_id WHERE d.workspace_id = $1 \
                 GROUP BY de.user_id) x ON x.user_id = e.actor_id \
                 WHERE e.workspace_id = $1 AND e.actor_id IS NOT NULL \
                 GROUP BY e.workspace_id, e.actor_id"
            ),
            format!(
                "INSERT INTO document_activity (document_id, workspace_id, edits, comments, editors, \
                 last_activity) \
                 SELECT d.id, d.workspace_id, SUM(CASE WHEN {edit} THEN 1 ELSE 0 END), \
                 SUM(CASE WHEN e.kind = 'comment.created' THEN 1 ELSE 0 END), \
                 (SELECT COUNT(*) FROM document_editors x WHERE x.document_id = d.id), \
                 MAX(e.created_at) \
                 FROM events e JOIN documents d ON d.id = {doc_id} AND d.workspace_id = e.workspace_id \
                 WHERE e.workspace_id = $1 AND e.kind <> 'document.deleted' \
                 GROUP BY d.id, d.workspace_id"
            ),
        ];
        let mut tx = self.writer.begin().await?;
        for sql in &statements {
            sqlx::query(sql).bind(ws).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
