//! Document history: versions as chains of deflated Yjs updates (`crate::history` makes,
//! reads and thins them; this keeps them).

use async_trait::async_trait;
use serde_json::json;

use super::document_updates::{encode_authors, parse_authors};
use super::documents::workspace_of_document;
use super::{append, event, fetch_limit, page_of, SqlStore};
use crate::domain::{now_ms, DocumentId, EventKind};
use crate::store::{
    Event, NewVersion, Page, PageRequest, StoreError, StoreResult, VersionHead, VersionLink,
    VersionMeta, Versions,
};

const META: &str = "id, document_id, kind, name, authors, created_by, size, added, removed, \
                    restored_from, base, created_at";

#[derive(sqlx::FromRow)]
struct MetaRow {
    id: i64,
    document_id: i64,
    kind: String,
    name: Option<String>,
    authors: String,
    created_by: Option<i64>,
    size: i64,
    added: i64,
    removed: i64,
    restored_from: Option<i64>,
    base: i64,
    created_at: i64,
}

impl From<MetaRow> for VersionMeta {
    fn from(r: MetaRow) -> VersionMeta {
        VersionMeta {
            id: r.id,
            document_id: r.document_id,
            kind: r.kind,
            name: r.name,
            authors: parse_authors(Some(&r.authors)),
            created_by: r.created_by,
            size: r.size,
            added: r.added,
            removed: r.removed,
            restored_from: r.restored_from,
            base: r.base != 0,
            created_at: r.created_at,
        }
    }
}

#[async_trait]
impl Versions for SqlStore {
    async fn version_head(&self, doc: DocumentId) -> StoreResult<Option<VersionHead>> {
        let row: Option<(i64, Vec<u8>, i64, Option<Vec<u8>>)> = sqlx::query_as(
            "SELECT id, state_vector, chain, text_z FROM document_versions \
             WHERE document_id = $1 ORDER BY id DESC LIMIT 1",
        )
        .bind(doc)
        .fetch_optional(&self.reader)
        .await?;
        Ok(row.map(|(id, state_vector, chain, text_z)| VersionHead {
            id,
            state_vector,
            chain,
            text_z,
        }))
    }

    async fn insert_version(
        &self,
        doc: DocumentId,
        v: &NewVersion,
        announce: bool,
    ) -> StoreResult<(VersionMeta, Option<Event>)> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        let ws = workspace_of_document(&mut tx, doc)
            .await?
            .ok_or(StoreError::NotFound("document"))?;
        // The workspace first, then the document, as every writer locks them.
        let offset: Option<i64> = if announce {
            Some(
                sqlx::query_scalar(
                    "UPDATE workspaces SET last_offset = last_offset + 1 WHERE id = $1 \
                     RETURNING last_offset",
                )
                .bind(ws)
                .fetch_one(&mut *tx)
                .await?,
            )
        } else {
            sqlx::query("UPDATE workspaces SET last_offset = last_offset WHERE id = $1")
                .bind(ws)
                .execute(&mut *tx)
                .await?;
            None
        };
        let mut authors = v.authors.clone();
        if v.kind != "auto" {
            // The editors recorded since the last version are in this one.
            // (RETURNING would give the value after the update: read it first.) The
            // editors of updates not recorded yet are this version's too, and the log
            // position it reaches is where the next version's authors begin.
            let recorded: Option<(Option<String>, i64, i64)> = sqlx::query_as(
                "SELECT version_authors, text_seq, version_seq FROM documents WHERE id = $1",
            )
            .bind(doc)
            .fetch_optional(&mut *tx)
            .await?;
            let (stored, text_seq, version_seq) = recorded.unwrap_or((None, 0, 0));
            let mut found = parse_authors(stored.as_deref());
            let pending: Vec<(i64, String)> = sqlx::query_as(
                "SELECT seq, editors FROM document_updates WHERE document_id = $1 AND seq > $2 \
                 AND seq <= $3 AND editors IS NOT NULL ORDER BY seq",
            )
            .bind(doc)
            .bind(text_seq.max(version_seq))
            .bind(v.through.unwrap_or(i64::MAX))
            .fetch_all(&mut *tx)
            .await?;
            let mut reach = text_seq.max(version_seq);
            for (seq, who) in &pending {
                reach = reach.max(*seq);
                if let Ok(pairs) = serde_json::from_str::<Vec<(i64, u32)>>(who) {
                    found.extend(pairs.into_iter().map(|(u, _)| u));
                }
            }
            let last: Option<i64> = match v.through {
                Some(through) => Some(through),
                None => {
                    sqlx::query_scalar(
                        "SELECT MAX(seq) FROM document_updates WHERE document_id = $1",
                    )
                    .bind(doc)
                    .fetch_one(&mut *tx)
                    .await?
                }
            };
            reach = reach.max(last.unwrap_or(0));
            sqlx::query(
                "UPDATE documents SET version_authors = NULL, version_seq = $2 WHERE id = $1",
            )
            .bind(doc)
            .bind(reach)
            .execute(&mut *tx)
            .await?;
            for a in found {
                if !authors.contains(&a) {
                    authors.push(a);
                }
            }
        }
        // Only the newest version keeps its text.
        sqlx::query(
            "UPDATE document_versions SET text_z = NULL \
             WHERE document_id = $1 AND text_z IS NOT NULL",
        )
        .bind(doc)
        .execute(&mut *tx)
        .await?;
        let row: MetaRow = sqlx::query_as(&format!(
            "INSERT INTO document_versions (document_id, kind, name, authors, created_by, \
             state_vector, delta, base, chain, text_z, size, added, removed, restored_from, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
             RETURNING {META}"
        ))
        .bind(doc)
        .bind(v.kind)
        .bind(v.name.as_deref())
        .bind(encode_authors(&authors).unwrap_or_else(|| "[]".into()))
        .bind(v.created_by)
        .bind(v.state_vector.as_slice())
        .bind(v.delta.as_slice())
        .bind(i64::from(v.base))
        .bind(v.chain)
        .bind(v.text_z.as_slice())
        .bind(v.size)
        .bind(v.added)
        .bind(v.removed)
        .bind(v.restored_from)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let meta = VersionMeta::from(row);
        let ev = match (offset, v.created_by) {
            (Some(offset), Some(actor)) => Some(
                append(
                    &mut tx,
                    event(
                        ws,
                        offset,
                        EventKind::DocumentVersioned,
                        actor,
                        format!("document:{doc}"),
                        json!({"document_id": doc, "version_id": meta.id, "name": meta.name}),
                        now,
                    ),
                )
                .await?,
            ),
            _ => None,
        };
        tx.commit().await?;
        Ok((meta, ev))
    }

    async fn versions(&self, doc: DocumentId, page: PageRequest) -> StoreResult<Page<VersionMeta>> {
        let rows: Vec<MetaRow> = sqlx::query_as(&format!(
            "SELECT {META} FROM document_versions WHERE document_id = $1 AND id < $2 \
             ORDER BY id DESC LIMIT $3"
        ))
        .bind(doc)
        .bind(page.after.unwrap_or(i64::MAX))
        .bind(fetch_limit(&page))
        .fetch_all(&self.reader)
        .await?;
        Ok(page_of(
            rows.into_iter().map(VersionMeta::from).collect(),
            page.limit,
            |v| v.id,
        ))
    }

    async fn version(
        &self,
        doc: DocumentId,
        version: i64,
    ) -> StoreResult<Option<(VersionMeta, Option<Vec<u8>>)>> {
        #[derive(sqlx::FromRow)]
        struct Row {
            #[sqlx(flatten)]
            meta: MetaRow,
            text_z: Option<Vec<u8>>,
        }
        let row: Option<Row> = sqlx::query_as(&format!(
            "SELECT {META}, text_z FROM document_versions WHERE document_id = $1 AND id = $2"
        ))
        .bind(doc)
        .bind(version)
        .fetch_optional(&self.reader)
        .await?;
        Ok(row.map(|r| (VersionMeta::from(r.meta), r.text_z)))
    }

    async fn version_chain(&self, doc: DocumentId, version: i64) -> StoreResult<Vec<VersionLink>> {
        let rows: Vec<(i64, Vec<u8>, i64)> = sqlx::query_as(
            "SELECT id, delta, base FROM document_versions WHERE document_id = $1 AND id <= $2 \
             AND id >= COALESCE((SELECT MAX(id) FROM document_versions \
                                 WHERE document_id = $1 AND id <= $2 AND base = 1), 0) \
             ORDER BY id",
        )
        .bind(doc)
        .bind(version)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, delta, base)| VersionLink {
                id,
                delta,
                base: base != 0,
            })
            .collect())
    }

    async fn all_versions(&self, doc: DocumentId) -> StoreResult<Vec<VersionMeta>> {
        let rows: Vec<MetaRow> = sqlx::query_as(&format!(
            "SELECT {META} FROM document_versions WHERE document_id = $1 ORDER BY id"
        ))
        .bind(doc)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows.into_iter().map(VersionMeta::from).collect())
    }

    async fn version_links(
        &self,
        doc: DocumentId,
        version: i64,
        next: i64,
    ) -> StoreResult<Option<(VersionLink, VersionLink)>> {
        let rows: Vec<(i64, Vec<u8>, i64)> = sqlx::query_as(
            "SELECT id, delta, base FROM document_versions \
             WHERE document_id = $1 AND id IN ($2, $3) ORDER BY id",
        )
        .bind(doc)
        .bind(version)
        .bind(next)
        .fetch_all(&self.reader)
        .await?;
        let mut links = rows.into_iter().map(|(id, delta, base)| VersionLink {
            id,
            delta,
            base: base != 0,
        });
        Ok(match (links.next(), links.next()) {
            (Some(a), Some(b)) if a.id == version && b.id == next => Some((a, b)),
            _ => None,
        })
    }

    async fn fold_version(
        &self,
        doc: DocumentId,
        version: i64,
        next: i64,
        merged: &[u8],
        base: bool,
        authors: &[crate::domain::UserId],
    ) -> StoreResult<()> {
        let mut tx = self.writer.begin().await?;
        // Only if both are still there, and still neighbours.
        let between: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM document_versions WHERE document_id = $1 AND id > $2 AND id < $3",
        )
        .bind(doc)
        .bind(version)
        .bind(next)
        .fetch_one(&mut *tx)
        .await?;
        if between != 0 {
            return Ok(());
        }
        let updated = sqlx::query(
            "UPDATE document_versions SET delta = $1, base = CASE WHEN $2 = 1 THEN 1 ELSE base END, \
             authors = $5, \
             added = added + (SELECT v.added FROM document_versions v WHERE v.id = $6), \
             removed = removed + (SELECT v.removed FROM document_versions v WHERE v.id = $6) \
             WHERE document_id = $3 AND id = $4",
        )
        .bind(merged)
        .bind(i64::from(base))
        .bind(doc)
        .bind(next)
        .bind(encode_authors(authors).unwrap_or_else(|| "[]".into()))
        .bind(version)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 1 {
            sqlx::query("DELETE FROM document_versions WHERE document_id = $1 AND id = $2")
                .bind(doc)
                .bind(version)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
