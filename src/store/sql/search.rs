//! Search in the database's own full-text index (0007_search.sql): FTS5 on SQLite, tsvector
//! with GIN on PostgreSQL. One statement finds documents and comments, keeps what the
//! caller may read (a join on their memberships, so a removed member finds nothing from the
//! moment the removal commits), filters, ranks and pages by keyset.

use std::collections::HashMap;

use async_trait::async_trait;

use super::{placeholders, SqlStore, ROWS_PER_STATEMENT};
use crate::config::DatabaseKind;
use crate::domain::{UserId, WorkspaceId, SEARCHABLE_CHARS};
use crate::store::{HitKind, HitText, Indexable, Search, SearchHit, SearchRequest, StoreResult};

enum Bind {
    Int(i64),
    Float(f64),
    Text(String),
}

/// Numbered placeholders and their values, as a statement is put together.
#[derive(Default)]
struct Binds(Vec<Bind>);

impl Binds {
    fn push(&mut self, b: Bind) -> String {
        self.0.push(b);
        format!("${}", self.0.len())
    }
}

#[derive(sqlx::FromRow)]
struct HitRow {
    kind: String,
    id: i64,
    workspace_id: i64,
    document_id: i64,
    author_id: Option<i64>,
    at: i64,
    score: f64,
}

impl SqlStore {
    fn search_sql(&self, r: &SearchRequest, b: &mut Binds) -> String {
        let user = b.push(Bind::Int(r.user));
        let (doc_match, comment_match, doc_score, comment_score, doc_from, comment_from) =
            match self.kind {
                DatabaseKind::Sqlite => {
                    let q = b.push(Bind::Text(r.query.to_fts5()));
                    (
                        format!("document_search MATCH {q}"),
                        format!("comment_search MATCH {q}"),
                        // bm25 is lower for better matches; a title word weighs ten of the text's.
                        "-bm25(document_search, 10.0, 1.0)".to_string(),
                        "-bm25(comment_search)".to_string(),
                        // CROSS JOIN: SQLite's planner must start from the full-text
                        // matches, not run the match once per row of the other table.
                        "document_search CROSS JOIN documents d ON d.id = document_search.rowid",
                        "comment_search CROSS JOIN comments c ON c.id = comment_search.rowid",
                    )
                }
                DatabaseKind::Postgres => {
                    let q = b.push(Bind::Text(r.query.to_tsquery()));
                    let tsq = format!("to_tsquery('simple', {q})");
                    (
                        format!("d.search @@ {tsq}"),
                        format!("c.search @@ {tsq}"),
                        // Weights D (text) 0.1 and A (title) 1.0, the defaults.
                        format!("CAST(ts_rank(d.search, {tsq}) AS DOUBLE PRECISION)"),
                        format!("CAST(ts_rank(c.search, {tsq}) AS DOUBLE PRECISION)"),
                        "documents d",
                        "comments c",
                    )
                }
            };
        let join = match self.kind {
            DatabaseKind::Sqlite => "CROSS JOIN",
            DatabaseKind::Postgres => "JOIN",
        };
        let mut filters_d = String::new();
        let mut filters_c = String::new();
        if r.workspaces.len() == 1 {
            let ws = b.push(Bind::Int(r.workspaces[0]));
            filters_d += &format!(" AND d.workspace_id = {ws}");
            filters_c += &format!(" AND c.workspace_id = {ws}");
        }
        if let Some(author) = r.author {
            let a = b.push(Bind::Int(author));
            filters_d += &format!(" AND d.created_by = {a}");
            filters_c += &format!(" AND c.author_id = {a}");
        }
        if let Some(from) = r.from {
            let f = b.push(Bind::Int(from));
            filters_d += &format!(" AND d.updated_at >= {f}");
            filters_c += &format!(" AND c.updated_at >= {f}");
        }
        if let Some(to) = r.to {
            let t = b.push(Bind::Int(to));
            filters_d += &format!(" AND d.updated_at < {t}");
            filters_c += &format!(" AND c.updated_at < {t}");
        }
        let documents = format!(
            "SELECT 'document' AS kind, d.id AS id, d.workspace_id AS workspace_id, \
             d.id AS document_id, d.created_by AS author_id, d.updated_at AS at, \
             {doc_score} AS score FROM {doc_from} \
             {join} memberships m ON m.workspace_id = d.workspace_id AND m.user_id = {user} \
             WHERE {doc_match}{filters_d}"
        );
        let comments = format!(
            "SELECT 'comment' AS kind, c.id AS id, c.workspace_id AS workspace_id, \
             c.document_id AS document_id, c.author_id AS author_id, c.updated_at AS at, \
             {comment_score} AS score FROM {comment_from} \
             {join} memberships m ON m.workspace_id = c.workspace_id AND m.user_id = {user} \
             WHERE {comment_match}{filters_c}"
        );
        let hits = match r.kind {
            Some(HitKind::Document) => documents,
            Some(HitKind::Comment) => comments,
            None => format!("{documents} UNION ALL {comments}"),
        };
        let after = match r.after {
            None => String::new(),
            Some(key) => {
                let s = b.push(Bind::Float(key.score));
                let k = b.push(Bind::Text(key.kind.as_str().to_string()));
                let i = b.push(Bind::Int(key.id));
                format!(
                    " WHERE score < {s} OR (score = {s} AND (kind > {k} OR (kind = {k} AND id > {i})))"
                )
            }
        };
        let limit = b.push(Bind::Int(i64::from(r.limit)));
        format!(
            "WITH hits AS MATERIALIZED ({hits}) SELECT kind, id, workspace_id, document_id, \
             author_id, at, score FROM hits{after} ORDER BY score DESC, kind, id LIMIT {limit}"
        )
    }
}

#[async_trait]
impl Search for SqlStore {
    async fn search(&self, request: &SearchRequest) -> StoreResult<Vec<SearchHit>> {
        if request.workspaces.is_empty() {
            return Ok(Vec::new());
        }
        let mut binds = Binds::default();
        let sql = self.search_sql(request, &mut binds);
        let mut query = sqlx::query_as::<_, HitRow>(&sql);
        for b in binds.0 {
            query = match b {
                Bind::Int(v) => query.bind(v),
                Bind::Float(v) => query.bind(v),
                Bind::Text(v) => query.bind(v),
            };
        }
        let rows = query.fetch_all(&self.reader).await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                Some(SearchHit {
                    kind: HitKind::parse(&r.kind)?,
                    id: r.id,
                    workspace_id: r.workspace_id,
                    document_id: r.document_id,
                    author_id: r.author_id,
                    at: r.at,
                    score: r.score,
                })
            })
            .collect())
    }

    async fn hit_texts(&self, hits: &[SearchHit]) -> StoreResult<HashMap<(HitKind, i64), HitText>> {
        let mut out = HashMap::new();
        let ids = |kind| -> Vec<i64> {
            hits.iter()
                .filter(|h| h.kind == kind)
                .map(|h| h.id)
                .collect()
        };
        let mut conn = self.reader.acquire().await?;
        for (kind, select) in [
            (HitKind::Document, "SELECT d.id, d.title, d.content FROM documents d"),
            (
                HitKind::Comment,
                "SELECT c.id, d.title, c.body FROM comments c JOIN documents d ON d.id = c.document_id",
            ),
        ] {
            for chunk in ids(kind).chunks(ROWS_PER_STATEMENT) {
                let sql = format!(
                    "{select} WHERE {}.id IN ({})",
                    alias(kind),
                    placeholders(1, chunk.len())
                );
                let mut q = sqlx::query_as::<_, (i64, String, String)>(&sql);
                for id in chunk {
                    q = q.bind(*id);
                }
                for (id, title, text) in q.fetch_all(&mut *conn).await? {
                    out.insert((kind, id), HitText { title, text });
                }
            }
        }
        Ok(out)
    }

    async fn workspace_ids_of(&self, user: UserId) -> StoreResult<Vec<WorkspaceId>> {
        Ok(sqlx::query_scalar(
            "SELECT workspace_id FROM memberships WHERE user_id = $1 ORDER BY workspace_id",
        )
        .bind(user)
        .fetch_all(&self.reader)
        .await?)
    }

    async fn search_backlog(&self, limit: u32) -> StoreResult<Vec<(WorkspaceId, i64, i64)>> {
        Ok(sqlx::query_as(
            "SELECT w.id, COALESCE(p.event_offset, 0) AS position, w.last_offset FROM workspaces w \
             LEFT JOIN search_positions p ON p.workspace_id = w.id \
             WHERE w.last_offset > COALESCE(p.event_offset, 0) ORDER BY w.id LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?)
    }

    async fn set_search_position(&self, ws: WorkspaceId, offset: i64) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO search_positions (workspace_id, event_offset) \
             SELECT id, $2 FROM workspaces WHERE id = $1 \
             ON CONFLICT (workspace_id) DO UPDATE SET event_offset = \
             CASE WHEN excluded.event_offset > search_positions.event_offset \
             THEN excluded.event_offset ELSE search_positions.event_offset END",
        )
        .bind(ws)
        .bind(offset)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn reset_search_positions(&self, heads: &[(WorkspaceId, i64)]) -> StoreResult<()> {
        let mut tx = self.writer.begin().await?;
        sqlx::query("DELETE FROM search_positions")
            .execute(&mut *tx)
            .await?;
        for (ws, head) in heads {
            sqlx::query(
                "INSERT INTO search_positions (workspace_id, event_offset) \
                 SELECT id, $2 FROM workspaces WHERE id = $1",
            )
            .bind(*ws)
            .bind(*head)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn log_heads(&self) -> StoreResult<Vec<(WorkspaceId, i64)>> {
        Ok(
            sqlx::query_as("SELECT id, last_offset FROM workspaces ORDER BY id")
                .fetch_all(&self.reader)
                .await?,
        )
    }

    async fn indexable(&self, kind: HitKind, ids: &[i64]) -> StoreResult<Vec<Indexable>> {
        let mut out = Vec::with_capacity(ids.len());
        let mut conn = self.reader.acquire().await?;
        for chunk in ids.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "{} WHERE {}.id IN ({})",
                indexable_select(kind),
                alias(kind),
                placeholders(1, chunk.len())
            );
            let mut q = sqlx::query_as::<_, IndexableRow>(&sql);
            for id in chunk {
                q = q.bind(*id);
            }
            out.extend(
                q.fetch_all(&mut *conn)
                    .await?
                    .into_iter()
                    .map(|r| r.into_indexable(kind)),
            );
        }
        Ok(out)
    }

    async fn indexable_after(
        &self,
        kind: HitKind,
        after: i64,
        limit: u32,
    ) -> StoreResult<Vec<Indexable>> {
        let a = alias(kind);
        let sql = format!(
            "{} WHERE {a}.id > $1 ORDER BY {a}.id LIMIT $2",
            indexable_select(kind)
        );
        Ok(sqlx::query_as::<_, IndexableRow>(&sql)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await?
            .into_iter()
            .map(|r| r.into_indexable(kind))
            .collect())
    }
}

#[derive(sqlx::FromRow)]
struct IndexableRow {
    id: i64,
    workspace_id: i64,
    document_id: i64,
    author_id: Option<i64>,
    at: i64,
    version: i64,
    title: String,
    body: String,
}

impl IndexableRow {
    fn into_indexable(self, kind: HitKind) -> Indexable {
        let body = match self.body.char_indices().nth(SEARCHABLE_CHARS) {
            Some((cut, _)) => self.body[..cut].to_string(),
            None => self.body,
        };
        Indexable {
            kind,
            id: self.id,
            workspace_id: self.workspace_id,
            document_id: self.document_id,
            author_id: self.author_id,
            at: self.at,
            version: self.version,
            title: self.title,
            body,
        }
    }
}

fn indexable_select(kind: HitKind) -> &'static str {
    match kind {
        HitKind::Document => {
            "SELECT d.id, d.workspace_id, d.id AS document_id, d.created_by AS author_id, \
             d.updated_at AS at, d.version, d.title, d.content AS body FROM documents d"
        }
        HitKind::Comment => {
            "SELECT c.id, c.workspace_id, c.document_id, c.author_id, c.updated_at AS at, \
             c.updated_at AS version, '' AS title, c.body FROM comments c"
        }
    }
}

fn alias(kind: HitKind) -> &'static str {
    match kind {
        HitKind::Document => "d",
        HitKind::Comment => "c",
    }
}
