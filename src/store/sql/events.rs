//! Reading the event log. Events are appended by the other aggregates, in the transaction of
//! the change they record (see `append`); this module only reads them.

use async_trait::async_trait;
use serde_json::Value;
use sqlx::AnyConnection;

use super::SqlStore;
use crate::domain::{UserId, WorkspaceId};
use crate::store::{Event, EventPage, Events, StoreError, StoreResult};

#[derive(sqlx::FromRow)]
struct EventRow {
    event_offset: i64,
    kind: String,
    actor_id: Option<i64>,
    subject: String,
    payload: String,
    created_at: i64,
}

async fn events_after(
    conn: &mut AnyConnection,
    ws: WorkspaceId,
    since: i64,
    limit: u32,
) -> StoreResult<Vec<Event>> {
    let rows: Vec<EventRow> = sqlx::query_as(
        "SELECT event_offset, kind, actor_id, subject, payload, created_at FROM events \
         WHERE workspace_id = $1 AND event_offset > $2 ORDER BY event_offset LIMIT $3",
    )
    .bind(ws)
    .bind(since)
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().map(|r| event_of(ws, r)).collect())
}

fn event_of(ws: WorkspaceId, r: EventRow) -> Event {
    Event {
        workspace_id: ws,
        offset: r.event_offset,
        kind: r.kind,
        actor_id: r.actor_id,
        subject: r.subject,
        data: serde_json::from_str(&r.payload).unwrap_or(Value::Null),
        at: r.created_at,
    }
}

#[async_trait]
impl Events for SqlStore {
    async fn events(
        &self,
        actor: UserId,
        ws: WorkspaceId,
        since: i64,
        limit: u32,
    ) -> StoreResult<EventPage> {
        // One statement, so the page and the head are read in one snapshot on both databases
        // (two statements under PostgreSQL's READ COMMITTED, or two autocommit reads on
        // SQLite, could return a page reaching past its head, or stopping short of it). A
        // member always gets the workspace's row, with the page's events joined to it (none:
        // one row of NULLs); a non-member gets no row at all.
        #[derive(sqlx::FromRow)]
        struct Row {
            last_offset: i64,
            event_offset: Option<i64>,
            kind: Option<String>,
            actor_id: Option<i64>,
            subject: Option<String>,
            payload: Option<String>,
            created_at: Option<i64>,
        }
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT w.last_offset, e.event_offset, e.kind, e.actor_id, e.subject, e.payload, \
             e.created_at FROM workspaces w \
             JOIN memberships m ON m.workspace_id = w.id AND m.user_id = $2 \
             LEFT JOIN (SELECT event_offset, kind, actor_id, subject, payload, created_at \
                        FROM events WHERE workspace_id = $1 AND event_offset > $3 \
                        ORDER BY event_offset LIMIT $4) e ON TRUE \
             WHERE w.id = $1 ORDER BY e.event_offset",
        )
        .bind(ws)
        .bind(actor)
        .bind(since)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        let latest_offset = rows
            .first()
            .ok_or(StoreError::NotFound("workspace"))?
            .last_offset;
        let events = rows
            .into_iter()
            .filter_map(|r| {
                Some(event_of(
                    ws,
                    EventRow {
                        event_offset: r.event_offset?,
                        kind: r.kind?,
                        actor_id: r.actor_id,
                        subject: r.subject?,
                        payload: r.payload?,
                        created_at: r.created_at?,
                    },
                ))
            })
            .collect();
        Ok(EventPage {
            events,
            latest_offset,
        })
    }

    async fn log_head(&self, ws: WorkspaceId) -> StoreResult<i64> {
        let mut conn = self.reader.acquire().await?;
        let head: Option<i64> =
            sqlx::query_scalar("SELECT last_offset FROM workspaces WHERE id = $1")
                .bind(ws)
                .fetch_optional(&mut *conn)
                .await?;
        head.ok_or(StoreError::NotFound("workspace"))
    }

    async fn log_after(&self, ws: WorkspaceId, since: i64, limit: u32) -> StoreResult<Vec<Event>> {
        let mut conn = self.reader.acquire().await?;
        events_after(&mut conn, ws, since, limit).await
    }
}
