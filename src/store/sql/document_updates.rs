//! Documents' Yjs updates: appended in batches, loaded in order, a prefix replaced by a
//! snapshot. The snapshot takes the position of the last update it replaces, so the order
//! of what is left stays the order of application.
//!
//! The document's REST text, its `document.edited` events and the rollups that count them
//! are derived from the log. `documents.text_seq` says up to which position they are, and
//! each stored update carries who made it, so that whatever is after that position (a node
//! stopped before it recorded them) can be recorded later, once, by whoever loads the
//! document first.

use async_trait::async_trait;
use serde_json::json;

use super::documents::workspace_of_document;
use super::{append, event, SqlStore};
use crate::domain::{now_ms, DocumentId, EventKind, UserId, WorkspaceId};
use crate::store::{DocumentText, DocumentUpdates, LiveEdit, StoreResult};

/// How long a REST write's text may wait to reach the update log from the node that took
/// the write before another node that records the document's editing puts it there itself
/// (the first node stopped in between). Far longer than the hand-over takes.
const ADOPT_AFTER_MS: i64 = 5_000;

/// The editors of a batch as stored: `[[user, edits], …]`.
fn encode_editors(editors: &[(UserId, u32)]) -> Option<String> {
    (!editors.is_empty()).then(|| json!(editors).to_string())
}

/// The people of `documents.version_authors` (a JSON array of ids).
pub(super) fn parse_authors(stored: Option<&str>) -> Vec<UserId> {
    stored
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default()
}

pub(super) fn encode_authors(authors: &[UserId]) -> Option<String> {
    (!authors.is_empty()).then(|| json!(authors).to_string())
}

/// Adds the editors stored with one update to `into`, in the order they first appear.
fn add_editors(into: &mut Vec<(UserId, u32)>, stored: &str) {
    let Ok(pairs) = serde_json::from_str::<Vec<(UserId, u32)>>(stored) else {
        return;
    };
    for (user, edits) in pairs {
        match into.iter_mut().find(|(u, _)| *u == user) {
            Some((_, n)) => *n = n.saturating_add(edits),
            None => into.push((user, edits)),
        }
    }
}

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
        editors: &[(UserId, u32)],
    ) -> StoreResult<i64> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        let mut last = 0;
        for (i, update) in updates.iter().enumerate() {
            let who = if i + 1 == updates.len() {
                encode_editors(editors)
            } else {
                None
            };
            last = sqlx::query_scalar(
                "INSERT INTO document_updates (document_id, data, created_at, editors) \
                 VALUES ($1, $2, $3, $4) RETURNING seq",
            )
            .bind(doc)
            .bind(update.as_slice())
            .bind(now)
            .bind(who)
            .fetch_one(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(last)
    }

    async fn document_text(&self, doc: DocumentId) -> StoreResult<Option<DocumentText>> {
        let row: Option<(String, i64, i64, Option<i64>)> = sqlx::query_as(
            "SELECT content, version, text_seq, text_pending FROM documents WHERE id = $1",
        )
        .bind(doc)
        .fetch_optional(&self.reader)
        .await?;
        Ok(
            row.map(|(content, version, text_seq, pending)| DocumentText {
                content,
                version,
                text_seq,
                pending,
            }),
        )
    }

    async fn record_live_edit(
        &self,
        doc: DocumentId,
        text: &str,
        through: i64,
        version_interval_ms: i64,
    ) -> StoreResult<LiveEdit> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        let Some(ws) = workspace_of_document(&mut tx, doc).await? else {
            // Deleted meanwhile: nothing to record.
            return Ok(LiveEdit::default());
        };
        // The workspace first, then the document, as every other writer locks them: what
        // is recorded here cannot interleave with a REST write of the same document.
        lock_workspace(&mut tx, ws).await?;
        #[derive(sqlx::FromRow)]
        struct State {
            text_seq: i64,
            text_pending: Option<i64>,
            content: String,
            version: i64,
            updated_at: i64,
            version_authors: Option<String>,
            auto_version_at: i64,
            rest_text_seq: i64,
            version_seq: i64,
        }
        let state: Option<State> = sqlx::query_as(
            "UPDATE documents SET text_seq = text_seq WHERE id = $1 \
             RETURNING text_seq, text_pending, content, version, updated_at, version_authors, \
             auto_version_at, rest_text_seq, version_seq",
        )
        .bind(doc)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(State {
            text_seq,
            text_pending: pending,
            content,
            version,
            updated_at,
            version_authors,
            auto_version_at,
            rest_text_seq,
            version_seq,
        }) = state
        else {
            return Ok(LiveEdit::default());
        };
        let stored: Vec<(i64, String)> = sqlx::query_as(
            "SELECT seq, editors FROM document_updates WHERE document_id = $1 AND seq > $2 \
             AND seq <= $3 AND editors IS NOT NULL ORDER BY seq",
        )
        .bind(doc)
        .bind(text_seq)
        .bind(through)
        .fetch_all(&mut *tx)
        .await?;
        let mut editors = Vec::new();
        // Editors of updates a version already took (a named one, a REST write's) are not
        // the next version's.
        let mut unversioned = Vec::new();
        for (seq, who) in &stored {
            add_editors(&mut editors, who);
            if *seq > version_seq {
                add_editors(&mut unversioned, who);
            }
        }
        // An automatic version of the document as the previous window left it (the log up
        // to the position recorded before this one), when the last is older than the
        // interval and someone edited since. The editors of this window are the next one's.
        let mut authors = parse_authors(version_authors.as_deref());
        let due = !authors.is_empty()
            && text_seq > 0
            && auto_version_at <= now.saturating_sub(version_interval_ms);
        let version_due = if due {
            let updates: Vec<Vec<u8>> = sqlx::query_scalar(
                "SELECT data FROM document_updates WHERE document_id = $1 AND seq <= $2 ORDER BY seq",
            )
            .bind(doc)
            .bind(text_seq)
            .fetch_all(&mut *tx)
            .await?;
            let taken = std::mem::take(&mut authors);
            (!updates.is_empty()).then_some(crate::store::DueVersion {
                updates,
                authors: taken,
            })
        } else {
            None
        };
        for (editor, _) in &unversioned {
            if !authors.contains(editor) {
                authors.push(*editor);
            }
        }
        if due || !unversioned.is_empty() {
            sqlx::query(
                "UPDATE documents SET version_authors = $1, \
                 auto_version_at = CASE WHEN $2 THEN $3 ELSE auto_version_at END, \
                 version_seq = CASE WHEN $2 THEN $5 ELSE version_seq END WHERE id = $4",
            )
            .bind(encode_authors(&authors))
            .bind(version_due.is_some())
            .bind(now)
            .bind(doc)
            .bind(text_seq)
            .execute(&mut *tx)
            .await?;
        }
        // While a REST write's text is on its way into the log, the REST text is ahead of
        // what the editors see: it stays as it is.
        // Nor is the REST text replaced by a text read from the log before that write's
        // text entered it (the recording began before the write reached the actor).
        let changes_text = pending.is_none() && content != text && through >= rest_text_seq;
        let seq = text_seq.max(through);
        let version = if changes_text {
            let last_editor = editors.last().map(|(u, _)| *u);
            sqlx::query_scalar(
                "UPDATE documents SET content = $1, version = version + 1, \
                 updated_by = COALESCE($2, updated_by), updated_at = $3, text_seq = $4 \
                 WHERE id = $5 RETURNING version",
            )
            .bind(text)
            .bind(last_editor)
            .bind(now)
            .bind(seq)
            .bind(doc)
            .fetch_one(&mut *tx)
            .await?
        } else {
            if seq != text_seq {
                sqlx::query("UPDATE documents SET text_seq = $1 WHERE id = $2")
                    .bind(seq)
                    .bind(doc)
                    .execute(&mut *tx)
                    .await?;
            }
            version
        };
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
                EventKind::DocumentEdited,
                editor,
                format!("document:{doc}"),
                json!({"document_id": doc, "edits": edits, "version": version}),
                now,
            );
            events.push(append(&mut tx, ev).await?);
        }
        tx.commit().await?;
        let adopt = pending
            .filter(|_| now - updated_at >= ADOPT_AFTER_MS)
            .map(|v| (content, v));
        Ok(LiveEdit {
            events,
            adopt,
            version: version_due,
        })
    }

    async fn text_in_log(&self, doc: DocumentId, version: i64, seq: i64) -> StoreResult<()> {
        let mut conn = self.writer.acquire().await?;
        sqlx::query(
            "UPDATE documents SET text_pending = NULL, rest_text_seq = $3 \
             WHERE id = $1 AND text_pending = $2",
        )
        .bind(doc)
        .bind(version)
        .bind(seq)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    async fn documents_behind(
        &self,
        after: DocumentId,
        limit: u32,
    ) -> StoreResult<Vec<(DocumentId, WorkspaceId)>> {
        Ok(sqlx::query_as(
            "SELECT d.id, d.workspace_id FROM documents d WHERE d.id > $1 AND \
             (d.text_pending IS NOT NULL OR EXISTS (SELECT 1 FROM document_updates u \
              WHERE u.document_id = d.id AND u.seq > d.text_seq)) \
             ORDER BY d.id LIMIT $2",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?)
    }

    async fn compact_document_updates(
        &self,
        doc: DocumentId,
        snapshot: &[u8],
        through: i64,
    ) -> StoreResult<()> {
        let mut tx = self.writer.begin().await?;
        let recorded: Option<i64> =
            sqlx::query_scalar("SELECT text_seq FROM documents WHERE id = $1")
                .bind(doc)
                .fetch_optional(&mut *tx)
                .await?;
        // Updates whose edits are not recorded yet keep their rows (and their editors).
        let through = through.min(recorded.unwrap_or(0));
        if through <= 0 {
            return Ok(());
        }
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

/// Inside a write transaction: locks the workspace's row (taking no offset), as taking an
/// offset would, so that locks are always taken workspace first.
async fn lock_workspace(conn: &mut sqlx::AnyConnection, ws: WorkspaceId) -> StoreResult<()> {
    sqlx::query("UPDATE workspaces SET last_offset = last_offset WHERE id = $1")
        .bind(ws)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
