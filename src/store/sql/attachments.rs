//! Attachments (the record of which files exist; their bytes are in the blob store) and
//! the outbox of blobs to remove (`blob_deletions`, see `crate::blobs`).

use async_trait::async_trait;
use serde_json::json;

use super::documents::workspace_of_document;
use super::{append, begin_change, event, fetch_limit, page_of, placeholders, require, SqlStore};
use crate::domain::{now_ms, DocumentId, EventKind, Role, UserId, WorkspaceId};
use crate::store::{
    Attachment, Attachments, Event, NewAttachment, Page, PageRequest, StoreError, StoreResult,
};

const COLUMNS: &str = "a.id, a.workspace_id, a.document_id, a.comment_id, a.name, a.size, \
                       a.content_type, a.sha256, a.blob_key, a.uploaded_by, a.created_at";

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    workspace_id: i64,
    document_id: i64,
    comment_id: Option<i64>,
    name: String,
    size: i64,
    content_type: String,
    sha256: String,
    blob_key: String,
    uploaded_by: Option<i64>,
    created_at: i64,
}

impl From<Row> for Attachment {
    fn from(r: Row) -> Attachment {
        Attachment {
            id: r.id,
            workspace_id: r.workspace_id,
            document_id: r.document_id,
            comment_id: r.comment_id,
            name: r.name,
            size: r.size,
            content_type: r.content_type,
            sha256: r.sha256,
            blob_key: r.blob_key,
            uploaded_by: r.uploaded_by,
            created_at: r.created_at,
        }
    }
}

/// What `attachment.added` and `attachment.removed` carry.
fn data_of(a: &Attachment) -> serde_json::Value {
    json!({
        "attachment_id": a.id,
        "document_id": a.document_id,
        "comment_id": a.comment_id,
        "name": a.name,
        "size": a.size,
        "content_type": a.content_type,
        "sha256": a.sha256,
    })
}

#[async_trait]
impl Attachments for SqlStore {
    async fn reserve_blob(&self, key: &str, not_before: i64) -> StoreResult<()> {
        sqlx::query("INSERT INTO blob_deletions (blob_key, not_before) VALUES ($1, $2)")
            .bind(key)
            .bind(not_before)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn release_blob(&self, key: &str) -> StoreResult<()> {
        sqlx::query("UPDATE blob_deletions SET not_before = 0 WHERE blob_key = $1")
            .bind(key)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn add_attachment(
        &self,
        actor: UserId,
        new: &NewAttachment,
        quota: i64,
    ) -> StoreResult<(Attachment, Event)> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        let ws = workspace_of_document(&mut tx, new.document_id)
            .await?
            .ok_or(StoreError::NotFound("document"))?;
        // Takes the workspace's row: uploads to one workspace commit one at a time, so the
        // quota below is exact.
        let (offset, role) = begin_change(&mut tx, ws, actor)
            .await?
            .ok_or(StoreError::NotFound("document"))?;
        require(role, Role::Editor, "viewers cannot attach files")?;
        if let Some(comment) = new.comment_id {
            let on: Option<i64> =
                sqlx::query_scalar("SELECT document_id FROM comments WHERE id = $1")
                    .bind(comment)
                    .fetch_optional(&mut *tx)
                    .await?;
            if on != Some(new.document_id) {
                return Err(StoreError::Invalid {
                    field: "comment_id",
                    message: "no such comment on this document",
                });
            }
        }
        let used: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM attachments WHERE workspace_id = $1",
        )
        .bind(ws)
        .fetch_one(&mut *tx)
        .await?;
        if used.saturating_add(new.size) > quota {
            return Err(StoreError::TooLarge {
                code: "quota_exceeded",
                detail: format!(
                    "the workspace's files take {used} of its {quota} bytes; this file ({} bytes) does not fit",
                    new.size
                ),
            });
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO attachments (workspace_id, document_id, comment_id, name, size, \
             content_type, sha256, blob_key, uploaded_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
        )
        .bind(ws)
        .bind(new.document_id)
        .bind(new.comment_id)
        .bind(&new.name)
        .bind(new.size)
        .bind(&new.content_type)
        .bind(&new.sha256)
        .bind(&new.blob_key)
        .bind(actor)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM blob_deletions WHERE blob_key = $1")
            .bind(&new.blob_key)
            .execute(&mut *tx)
            .await?;
        let attachment = Attachment {
            id,
            workspace_id: ws,
            document_id: new.document_id,
            comment_id: new.comment_id,
            name: new.name.clone(),
            size: new.size,
            content_type: new.content_type.clone(),
            sha256: new.sha256.clone(),
            blob_key: new.blob_key.clone(),
            uploaded_by: Some(actor),
            created_at: now,
        };
        let ev = append(
            &mut tx,
            event(
                ws,
                offset,
                EventKind::AttachmentAdded,
                actor,
                format!("document:{}", new.document_id),
                data_of(&attachment),
                now,
            ),
        )
        .await?;
        tx.commit().await?;
        Ok((attachment, ev))
    }

    async fn attachments(
        &self,
        actor: UserId,
        doc: DocumentId,
        page: PageRequest,
    ) -> StoreResult<Page<Attachment>> {
        let (ws, _) = crate::store::Documents::document_role(self, actor, doc).await?;
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM attachments a \
             WHERE a.document_id = $1 AND a.workspace_id = $2 AND a.id > $3 \
             ORDER BY a.id LIMIT $4"
        ))
        .bind(doc)
        .bind(ws)
        .bind(page.after.unwrap_or(0))
        .bind(fetch_limit(&page))
        .fetch_all(&self.reader)
        .await?;
        let items = rows.into_iter().map(Attachment::from).collect();
        Ok(page_of(items, page.limit, |a: &Attachment| a.id))
    }

    async fn attachment(&self, actor: UserId, id: i64) -> StoreResult<Attachment> {
        let row: Option<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM attachments a \
             JOIN memberships m ON m.workspace_id = a.workspace_id AND m.user_id = $2 \
             WHERE a.id = $1"
        ))
        .bind(id)
        .bind(actor)
        .fetch_optional(&self.reader)
        .await?;
        row.map(Attachment::from)
            .ok_or(StoreError::NotFound("attachment"))
    }

    async fn delete_attachment(&self, actor: UserId, id: i64) -> StoreResult<(Attachment, Event)> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        let ws: WorkspaceId =
            sqlx::query_scalar("SELECT workspace_id FROM attachments WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(StoreError::NotFound("attachment"))?;
        let (offset, role) = begin_change(&mut tx, ws, actor)
            .await?
            .ok_or(StoreError::NotFound("attachment"))?;
        require(role, Role::Editor, "viewers cannot remove files")?;
        let row: Row = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM attachments a WHERE a.id = $1"
        ))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound("attachment"))?;
        let attachment = Attachment::from(row);
        // The trigger puts the blob's key into the outbox, in this transaction.
        sqlx::query("DELETE FROM attachments WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let ev = append(
            &mut tx,
            event(
                ws,
                offset,
                EventKind::AttachmentRemoved,
                actor,
                format!("document:{}", attachment.document_id),
                data_of(&attachment),
                now,
            ),
        )
        .await?;
        tx.commit().await?;
        Ok((attachment, ev))
    }

    async fn attachment_usage(&self, actor: UserId, ws: WorkspaceId) -> StoreResult<(i64, i64)> {
        self.read_role(ws, actor).await?;
        let (bytes, files): (i64, i64) = sqlx::query_as(
            "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT), COUNT(*) FROM attachments \
             WHERE workspace_id = $1",
        )
        .bind(ws)
        .fetch_one(&self.reader)
        .await?;
        Ok((bytes, files))
    }

    async fn due_blob_deletions(&self, now: i64, limit: u32) -> StoreResult<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT blob_key FROM blob_deletions WHERE not_before <= $1 \
             ORDER BY not_before, blob_key LIMIT $2",
        )
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?)
    }

    async fn forget_blob_deletions(&self, keys: &[String]) -> StoreResult<()> {
        for chunk in keys.chunks(super::ROWS_PER_STATEMENT) {
            let sql = format!(
                "DELETE FROM blob_deletions WHERE blob_key IN ({})",
                placeholders(1, chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for key in chunk {
                q = q.bind(key);
            }
            q.execute(&self.writer).await?;
        }
        Ok(())
    }

    async fn blob_known(&self, key: &str) -> StoreResult<bool> {
        let n: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM attachments WHERE blob_key = $1) \
             + (SELECT COUNT(*) FROM blob_deletions WHERE blob_key = $1)",
        )
        .bind(key)
        .fetch_one(&self.reader)
        .await?;
        Ok(n > 0)
    }

    async fn attachment_keys(
        &self,
        after: i64,
        limit: u32,
    ) -> StoreResult<Vec<(i64, String, i64)>> {
        Ok(sqlx::query_as(
            "SELECT id, blob_key, size FROM attachments WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?)
    }
}
