//! Reports, read from the rollups that `append` keeps beside the event log
//! (0006_report_rollups.sql): a report's cost follows the number of buckets, members or
//! documents it shows, not the number of events behind them.

use async_trait::async_trait;
use sqlx::AnyConnection;

use super::documents::DocumentRow;
use super::workspaces::MemberRow;
use super::{fetch_limit, page_of, parse_role, placeholders, require, role_in, SqlStore, HOUR_MS};
use crate::config::DatabaseKind;
use crate::domain::{Role, UserId, WorkspaceId};
use crate::store::{
    DocumentActivity, MemberActivity, Overview, Page, PageRequest, Reports, StoreError, StoreResult,
};

/// Checks that the caller may read the workspace's reports.
async fn reader_of_reports(
    conn: &mut AnyConnection,
    ws: WorkspaceId,
    actor: UserId,
) -> StoreResult<()> {
    let role = role_in(conn, ws, actor)
        .await?
        .ok_or(StoreError::NotFound("workspace"))?;
    require(role, Role::Admin, "reports need the admin role")
}

#[async_trait]
impl Reports for SqlStore {
    async fn activity_report(
        &self,
        actor: UserId,
        ws: WorkspaceId,
        buckets: &[(i64, i64)],
    ) -> StoreResult<Vec<(usize, String, i64)>> {
        let mut conn = self.reader.acquire().await?;
        reader_of_reports(&mut conn, ws, actor).await?;
        // Each bucket reads its whole UTC hours from activity_hours, and the quarter hours
        // at either end that are not whole hours (a zone offset by 30 or 45 minutes) from
        // activity_slots: one index range per bucket and table, in statements of a bounded
        // number of ranges. The partial ends exist only for such zones. `CROSS JOIN` keeps
        // SQLite's planner from scanning the rollup with the ranges inside (it has no
        // statistics to know better); PostgreSQL plans it as any join.
        let mut hours = Vec::with_capacity(buckets.len());
        let mut slots = Vec::new();
        for (i, &(lo, hi)) in buckets.iter().enumerate() {
            let up = if lo.rem_euclid(HOUR_MS) == 0 {
                0
            } else {
                HOUR_MS
            };
            let hlo = (lo.div_euclid(HOUR_MS) * HOUR_MS + up).min(hi);
            let hhi = (hi.div_euclid(HOUR_MS) * HOUR_MS).max(hlo);
            hours.push((i, hlo, hhi));
            for (a, b) in [(lo, hlo), (hhi, hi)] {
                if a < b {
                    slots.push((i, a, b));
                }
            }
        }
        let mut counts: Vec<(usize, String, i64)> = Vec::new();
        for (table, key, ranges) in [
            ("activity_hours", "hour", &hours),
            ("activity_slots", "slot", &slots),
        ] {
            for chunk in ranges.chunks(super::ROWS_PER_STATEMENT / 2) {
                let values = (0..chunk.len())
                    .map(|n| format!("({}, {})", chunk[n].0, placeholders(2 + 2 * n, 2)))
                    .collect::<Vec<_>>()
                    .join(", ");
                let sql = match self.kind {
                    DatabaseKind::Sqlite => format!(
                        "WITH b (i, lo, hi) AS (VALUES {values}) \
                         SELECT b.i, r.kind, CAST(SUM(r.events) AS BIGINT) AS events \
                         FROM b CROSS JOIN {table} r \
                         WHERE r.workspace_id = $1 AND r.{key} >= b.lo AND r.{key} < b.hi \
                         GROUP BY b.i, r.kind"
                    ),
                    // LATERAL: one index range per bucket whatever the statistics say (a
                    // freshly loaded table would otherwise be scanned once per bucket).
                    DatabaseKind::Postgres => format!(
                        "SELECT b.i, x.kind, x.events FROM (VALUES {values}) AS b (i, lo, hi) \
                         CROSS JOIN LATERAL (SELECT r.kind, CAST(SUM(r.events) AS BIGINT) AS events \
                         FROM {table} r WHERE r.workspace_id = $1 AND r.{key} >= b.lo \
                         AND r.{key} < b.hi GROUP BY r.kind) x"
                    ),
                };
                let mut query = sqlx::query_as::<_, (i32, String, i64)>(&sql).bind(ws);
                for &(_, lo, hi) in chunk {
                    query = query.bind(lo).bind(hi);
                }
                for (i, kind, n) in query.fetch_all(&mut *conn).await? {
                    counts.push((i as usize, kind, n));
                }
            }
        }
        // One entry per bucket and kind.
        counts.sort_unstable_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        counts.dedup_by(|later, first| {
            let same = later.0 == first.0 && later.1 == first.1;
            if same {
                first.2 += later.2;
            }
            same
        });
        Ok(counts)
    }

    async fn member_report(
        &self,
        actor: UserId,
        ws: WorkspaceId,
        page: PageRequest,
    ) -> StoreResult<Page<MemberActivity>> {
        #[derive(sqlx::FromRow)]
        struct Row {
            #[sqlx(flatten)]
            member: MemberRow,
            events: i64,
            documents_created: i64,
            documents_edited: i64,
            edits: i64,
            comments: i64,
            last_active: Option<i64>,
        }
        let mut conn = self.reader.acquire().await?;
        reader_of_reports(&mut conn, ws, actor).await?;
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT m.workspace_id, m.user_id, u.email, u.display_name, m.role, m.created_at, m.updated_at, \
             COALESCE(a.events, 0) AS events, \
             COALESCE(a.documents_created, 0) AS documents_created, \
             COALESCE(a.documents_edited, 0) AS documents_edited, \
             COALESCE(a.edits, 0) AS edits, COALESCE(a.comments, 0) AS comments, \
             a.last_active FROM memberships m JOIN users u ON u.id = m.user_id \
             LEFT JOIN member_activity a ON a.workspace_id = m.workspace_id AND a.user_id = m.user_id \
             WHERE m.workspace_id = $1 AND m.user_id > $2 ORDER BY m.user_id LIMIT $3",
        )
        .bind(ws)
        .bind(page.after.unwrap_or(0))
        .bind(fetch_limit(&page))
        .fetch_all(&mut *conn)
        .await?;
        let items = rows
            .into_iter()
            .map(|r| {
                Ok(MemberActivity {
                    member: r.member.into_member()?,
                    events: r.events,
                    documents_created: r.documents_created,
                    documents_edited: r.documents_edited,
                    edits: r.edits,
                    comments: r.comments,
                    last_active: r.last_active,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(page_of(items, page.limit, |a| a.member.user_id))
    }

    async fn document_report(
        &self,
        actor: UserId,
        ws: WorkspaceId,
        page: PageRequest,
    ) -> StoreResult<Page<DocumentActivity>> {
        #[derive(sqlx::FromRow)]
        struct Row {
            #[sqlx(flatten)]
            document: DocumentRow,
            edits: i64,
            comments: i64,
            editors: i64,
            last_activity: Option<i64>,
        }
        let mut conn = self.reader.acquire().await?;
        reader_of_reports(&mut conn, ws, actor).await?;
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT d.id, d.workspace_id, d.title, NULL AS content, d.version, d.created_by, \
             d.updated_by, d.created_at, d.updated_at, \
             COALESCE(a.edits, 0) AS edits, COALESCE(a.comments, 0) AS comments, \
             COALESCE(a.editors, 0) AS editors, a.last_activity \
             FROM documents d LEFT JOIN document_activity a ON a.document_id = d.id \
             WHERE d.workspace_id = $1 AND d.id > $2 ORDER BY d.id LIMIT $3",
        )
        .bind(ws)
        .bind(page.after.unwrap_or(0))
        .bind(fetch_limit(&page))
        .fetch_all(&mut *conn)
        .await?;
        let items = rows
            .into_iter()
            .map(|r| DocumentActivity {
                document: r.document.into(),
                edits: r.edits,
                comments: r.comments,
                editors: r.editors,
                last_activity: r.last_activity,
            })
            .collect();
        Ok(page_of(items, page.limit, |a| a.document.id))
    }

    async fn overview_report(
        &self,
        actor: UserId,
        ws: WorkspaceId,
        active_since: &[i64],
    ) -> StoreResult<Overview> {
        let mut conn = self.reader.acquire().await?;
        reader_of_reports(&mut conn, ws, actor).await?;
        let roles: Vec<(String, i64)> = sqlx::query_as(
            "SELECT role, COUNT(*) FROM memberships WHERE workspace_id = $1 GROUP BY role",
        )
        .bind(ws)
        .fetch_all(&mut *conn)
        .await?;
        let mut members_by_role: Vec<(Role, i64)> =
            Role::ALL.iter().rev().map(|r| (*r, 0)).collect();
        for (role, n) in roles {
            let role = parse_role(&role)?;
            if let Some(slot) = members_by_role.iter_mut().find(|(r, _)| *r == role) {
                slot.1 = n;
            }
        }
        let (documents, comments, events): (i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM documents WHERE workspace_id = $1), \
             (SELECT COUNT(*) FROM comments WHERE workspace_id = $1), \
             (SELECT last_offset FROM workspaces WHERE id = $1)",
        )
        .bind(ws)
        .fetch_one(&mut *conn)
        .await?;
        let mut active_users = Vec::with_capacity(active_since.len());
        for since in active_since {
            let n: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM member_activity WHERE workspace_id = $1 AND last_active >= $2",
            )
            .bind(ws)
            .bind(*since)
            .fetch_one(&mut *conn)
            .await?;
            active_users.push(n);
        }
        Ok(Overview {
            members_by_role,
            documents,
            comments,
            events,
            active_users,
        })
    }
}
