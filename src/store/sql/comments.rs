//! Comments on documents: threads (a reply's parent is on the same document), resolution,
//! and the mentions resolved to members of the workspace, which notify those members.

use async_trait::async_trait;
use serde_json::{json, Value};
use sqlx::AnyConnection;

use super::documents::workspace_of_document;
use super::notifications::notify;
use super::{
    append, begin_change, event, fetch_limit, page_of, placeholders, require, role_in, SqlStore,
};
use crate::domain::{
    now_ms, CommentBody, CommentId, DocumentId, EventKind, Role, UserId, WorkspaceId,
};
use crate::store::{
    Comment, CommentAnchor, CommentPatch, Comments, Event, Page, PageRequest, StoreError,
    StoreResult,
};

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

/// How many mention keys of one comment are looked at; the rest are ignored.
const MAX_MENTIONS: usize = 50;

/// Resolves mentioned e-mail keys to members of the workspace (whose address is proved,
/// when `verified` says so) and records them, replacing
/// the comment's previous mentions: one statement resolves and inserts them all.
async fn record_mentions(
    conn: &mut AnyConnection,
    ws: WorkspaceId,
    comment: CommentId,
    keys: &[String],
    verified: &str,
) -> StoreResult<Vec<UserId>> {
    sqlx::query("DELETE FROM comment_mentions WHERE comment_id = $1")
        .bind(comment)
        .execute(&mut *conn)
        .await?;
    let mut wanted: Vec<&str> = Vec::new();
    for key in keys.iter().take(MAX_MENTIONS) {
        if !wanted.contains(&key.as_str()) {
            wanted.push(key);
        }
    }
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    // email_key is unique, so each member is inserted once however often they are named.
    let sql = format!(
        "INSERT INTO comment_mentions (comment_id, user_id) \
         SELECT $1, u.id FROM users u JOIN memberships m ON m.user_id = u.id \
         WHERE m.workspace_id = $2 AND {verified} AND u.email_key IN ({}) RETURNING user_id",
        placeholders(3, wanted.len())
    );
    let mut insert = sqlx::query_scalar(&sql).bind(comment).bind(ws);
    for key in wanted {
        insert = insert.bind(key);
    }
    let mut ids: Vec<i64> = insert.fetch_all(&mut *conn).await?;
    ids.sort_unstable();
    Ok(ids)
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

/// An anchor as events carry it: its positions in base64, as editors decode them.
pub fn anchor_json(a: &CommentAnchor) -> Value {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    json!({"start": b64.encode(&a.start), "end": b64.encode(&a.end), "quote": a.quote})
}

#[async_trait]
impl Comments for SqlStore {
    async fn comment_anchors(
        &self,
        doc: DocumentId,
    ) -> StoreResult<std::collections::HashMap<CommentId, CommentAnchor>> {
        let rows: Vec<(i64, Vec<u8>, Vec<u8>, String)> = sqlx::query_as(
            "SELECT comment_id, anchor_start, anchor_end, quote FROM comment_anchors \
             WHERE document_id = $1",
        )
        .bind(doc)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, start, end, quote)| (id, CommentAnchor { start, end, quote }))
            .collect())
    }

    async fn move_comment_anchor(
        &self,
        id: CommentId,
        start: &[u8],
        end: &[u8],
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE comment_anchors SET anchor_start = $1, anchor_end = $2 WHERE comment_id = $3",
        )
        .bind(start)
        .bind(end)
        .bind(id)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn create_comment(
        &self,
        actor: UserId,
        doc: DocumentId,
        parent: Option<CommentId>,
        body: &CommentBody,
        mention_keys: &[String],
        anchor: Option<&CommentAnchor>,
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
        let mentions =
            record_mentions(&mut tx, ws, id, mention_keys, self.matches_by_email()).await?;
        if let Some(a) = anchor {
            sqlx::query(
                "INSERT INTO comment_anchors (comment_id, document_id, anchor_start, anchor_end, quote) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(id)
            .bind(doc)
            .bind(a.start.as_slice())
            .bind(a.end.as_slice())
            .bind(&a.quote)
            .execute(&mut *tx)
            .await?;
        }
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
                EventKind::CommentCreated,
                actor,
                format!("comment:{id}"),
                {
                    let mut data = comment_json(&comment);
                    if let Some(a) = anchor {
                        data["anchor"] = anchor_json(a);
                    }
                    data
                },
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
                record_mentions(&mut tx, ws, id, keys, self.matches_by_email()).await?;
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
            (["resolved"], true) => EventKind::CommentResolved,
            (["resolved"], false) => EventKind::CommentUnresolved,
            _ => EventKind::CommentUpdated,
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
                EventKind::CommentDeleted,
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
}
