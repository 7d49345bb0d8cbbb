//! Documents: their content and version (optimistic concurrency through `If-Match`), and
//! which workspace a document belongs to, which comments and joins look up.

use async_trait::async_trait;
use serde_json::json;
use sqlx::AnyConnection;

use super::{append, begin_change, event, fetch_limit, page_of, parse_role, require, SqlStore};
use crate::domain::{now_ms, DocumentId, DocumentTitle, EventKind, Role, UserId, WorkspaceId};
use crate::store::{
    Document, DocumentPatch, Documents, Event, Page, PageRequest, StoreError, StoreResult,
};

#[derive(sqlx::FromRow)]
pub(super) struct DocumentRow {
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

pub(super) async fn workspace_of_document(
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

#[async_trait]
impl Documents for SqlStore {
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
                EventKind::DocumentCreated,
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
        // Only the version: the text may be megabytes, and is read once, below.
        let current: i64 = sqlx::query_scalar("SELECT version FROM documents WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound("document"))?;
        if let Some(expected) = expected_version {
            if expected != current {
                return Err(StoreError::VersionMismatch { current });
            }
        }
        sqlx::query(
            "UPDATE documents SET title = COALESCE($1, title), content = COALESCE($2, content), \
             text_pending = CASE WHEN $2 IS NULL THEN text_pending ELSE version + 1 END, \
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
        let (kind, data) = match patch.restored_from {
            Some(from) => (
                EventKind::DocumentRestored,
                json!({"document_id": id, "title": doc.title, "version": doc.version, "restored_from": from}),
            ),
            None => (
                EventKind::DocumentUpdated,
                json!({"document_id": id, "title": doc.title, "version": doc.version, "changed": changed}),
            ),
        };
        let ev = append(
            &mut tx,
            event(ws, offset, kind, actor, format!("document:{id}"), data, now),
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
                EventKind::DocumentDeleted,
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
}
