//! Notifications: written by `notify` inside the transaction of the event that causes them,
//! then listed, counted and marked read by their user.

use std::collections::HashMap;

use async_trait::async_trait;
use serde_json::Value;
use sqlx::AnyConnection;

use super::{fetch_limit, page_of, placeholders, SqlStore, ROWS_PER_STATEMENT};
use crate::domain::{now_ms, UserId, WorkspaceId};
use crate::store::{
    Event, Notification, Notifications, Page, PageRequest, StoreError, StoreResult,
};

/// Inside a write transaction: tells each recipient about an event (never its own actor),
/// with one multi-row INSERT (per thousand recipients; an event has at most 51). Only
/// members of the event's workspace are told, read in the same transaction (which holds the
/// workspace lock, so no membership changes meanwhile): a reply to the comment of someone
/// removed since, or a mention of a former member, reaches nobody outside the workspace.
pub(super) async fn notify(
    conn: &mut AnyConnection,
    ev: &Event,
    recipients: &[(UserId, &'static str)],
) -> StoreResult<()> {
    let candidates: Vec<UserId> = recipients
        .iter()
        .map(|(user, _)| *user)
        .filter(|user| Some(*user) != ev.actor_id)
        .collect();
    let mut members = std::collections::HashSet::new();
    for chunk in candidates.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "SELECT user_id FROM memberships WHERE workspace_id = $1 AND user_id IN ({})",
            placeholders(2, chunk.len())
        );
        let mut select = sqlx::query_scalar::<_, i64>(&sql).bind(ev.workspace_id);
        for user in chunk {
            select = select.bind(*user);
        }
        members.extend(select.fetch_all(&mut *conn).await?);
    }
    let recipients: Vec<(UserId, &'static str)> = recipients
        .iter()
        .copied()
        .filter(|(user, _)| Some(*user) != ev.actor_id && members.contains(user))
        .collect();
    let payload = ev.data.to_string();
    for chunk in recipients.chunks(ROWS_PER_STATEMENT) {
        // $1 to $6 are the event's, shared by every row; each row adds its user and kind.
        let rows = (0..chunk.len())
            .map(|i| {
                let user = 7 + 2 * i;
                let kind = user + 1;
                format!("(${user}, $1, $2, ${kind}, $3, $4, $5, $6)")
            })
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO notifications \
             (user_id, workspace_id, event_offset, kind, actor_id, subject, payload, created_at) \
             VALUES {rows}"
        );
        let mut insert = sqlx::query(&sql)
            .bind(ev.workspace_id)
            .bind(ev.offset)
            .bind(ev.actor_id)
            .bind(&ev.subject)
            .bind(&payload)
            .bind(ev.at);
        for (user, kind) in chunk {
            insert = insert.bind(*user).bind(*kind);
        }
        insert.execute(&mut *conn).await?;
    }
    Ok(())
}

#[derive(sqlx::FromRow)]
struct DigestRow {
    id: i64,
    user_id: i64,
    workspace_id: i64,
    event_offset: i64,
    kind: String,
    actor_id: Option<i64>,
    subject: String,
    payload: String,
    created_at: i64,
    read_at: Option<i64>,
    email: String,
    display_name: String,
    notification_preferences: Option<String>,
}

#[derive(sqlx::FromRow)]
struct NotificationRow {
    id: i64,
    user_id: i64,
    workspace_id: i64,
    event_offset: i64,
    kind: String,
    actor_id: Option<i64>,
    subject: String,
    payload: String,
    created_at: i64,
    read_at: Option<i64>,
}

impl From<NotificationRow> for Notification {
    fn from(r: NotificationRow) -> Notification {
        Notification {
            id: r.id,
            user_id: r.user_id,
            workspace_id: r.workspace_id,
            event_offset: r.event_offset,
            kind: r.kind,
            actor_id: r.actor_id,
            subject: r.subject,
            data: serde_json::from_str(&r.payload).unwrap_or(Value::Null),
            created_at: r.created_at,
            read_at: r.read_at,
        }
    }
}

/// A notification (aliased `n`) of a workspace its user is still a member of: those of
/// workspaces left (or removed from) are kept, but neither listed, counted nor served.
const STILL_MEMBER: &str = "EXISTS (SELECT 1 FROM memberships m \
     WHERE m.workspace_id = n.workspace_id AND m.user_id = n.user_id)";

const NOTIFICATION_COLUMNS: &str = "id, user_id, workspace_id, event_offset, kind, actor_id, \
     subject, payload, created_at, read_at";

#[async_trait]
impl Notifications for SqlStore {
    async fn notifications_of_event(
        &self,
        ws: WorkspaceId,
        offset: i64,
    ) -> StoreResult<Vec<Notification>> {
        let mut conn = self.reader.acquire().await?;
        let rows: Vec<NotificationRow> = sqlx::query_as(&format!(
            "SELECT {NOTIFICATION_COLUMNS} FROM notifications \
             WHERE workspace_id = $1 AND event_offset = $2 ORDER BY id"
        ))
        .bind(ws)
        .bind(offset)
        .fetch_all(&mut *conn)
        .await?;
        Ok(rows.into_iter().map(Notification::from).collect())
    }

    async fn notifications(
        &self,
        user: UserId,
        unread_only: bool,
        page: PageRequest,
    ) -> StoreResult<Page<Notification>> {
        let mut conn = self.reader.acquire().await?;
        let unread = if unread_only {
            " AND read_at IS NULL"
        } else {
            ""
        };
        let rows: Vec<NotificationRow> = sqlx::query_as(&format!(
            "SELECT {NOTIFICATION_COLUMNS} FROM notifications n \
             WHERE user_id = $1 AND id < $2{unread} AND {STILL_MEMBER} \
             ORDER BY id DESC LIMIT $3"
        ))
        .bind(user)
        .bind(page.after.unwrap_or(i64::MAX))
        .bind(fetch_limit(&page))
        .fetch_all(&mut *conn)
        .await?;
        let items = rows.into_iter().map(Notification::from).collect();
        Ok(page_of(items, page.limit, |n: &Notification| n.id))
    }

    async fn unread_count(&self, user: UserId) -> StoreResult<i64> {
        let mut conn = self.reader.acquire().await?;
        Ok(sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM notifications n \
             WHERE user_id = $1 AND read_at IS NULL AND {STILL_MEMBER}"
        ))
        .bind(user)
        .fetch_one(&mut *conn)
        .await?)
    }

    async fn unread_counts(&self, users: &[UserId]) -> StoreResult<HashMap<UserId, i64>> {
        let mut counts: HashMap<UserId, i64> = users.iter().map(|u| (*u, 0)).collect();
        let users: Vec<UserId> = counts.keys().copied().collect();
        if users.is_empty() {
            return Ok(counts);
        }
        let mut conn = self.reader.acquire().await?;
        for chunk in users.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "SELECT user_id, COUNT(*) FROM notifications n \
                 WHERE user_id IN ({}) AND read_at IS NULL AND {STILL_MEMBER} GROUP BY user_id",
                placeholders(1, chunk.len())
            );
            let mut select = sqlx::query_as::<_, (i64, i64)>(&sql);
            for user in chunk {
                select = select.bind(*user);
            }
            for (user, count) in select.fetch_all(&mut *conn).await? {
                counts.insert(user, count);
            }
        }
        Ok(counts)
    }

    async fn mark_read(&self, user: UserId, id: i64) -> StoreResult<Notification> {
        let mut tx = self.writer.begin().await?;
        sqlx::query(
            "UPDATE notifications SET read_at = $1 \
             WHERE id = $2 AND user_id = $3 AND read_at IS NULL",
        )
        .bind(now_ms())
        .bind(id)
        .bind(user)
        .execute(&mut *tx)
        .await?;
        let row: Option<NotificationRow> = sqlx::query_as(&format!(
            "SELECT {NOTIFICATION_COLUMNS} FROM notifications n \
             WHERE id = $1 AND user_id = $2 AND {STILL_MEMBER}"
        ))
        .bind(id)
        .bind(user)
        .fetch_optional(&mut *tx)
        .await?;
        let row = row.ok_or(StoreError::NotFound("notification"))?;
        tx.commit().await?;
        Ok(row.into())
    }

    async fn mark_all_read(&self, user: UserId) -> StoreResult<u64> {
        let mut conn = self.writer.acquire().await?;
        let done = sqlx::query(
            "UPDATE notifications SET read_at = $1 WHERE user_id = $2 AND read_at IS NULL \
             AND EXISTS (SELECT 1 FROM memberships m WHERE m.workspace_id = \
             notifications.workspace_id AND m.user_id = notifications.user_id)",
        )
        .bind(now_ms())
        .bind(user)
        .execute(&mut *conn)
        .await?;
        Ok(done.rows_affected())
    }

    async fn claim_digest_notifications(
        &self,
        now: i64,
        older_than: i64,
        claim_expired_before: i64,
        limit: u32,
    ) -> StoreResult<Vec<crate::store::DigestItem>> {
        // One statement takes the rows: a row another node took meanwhile no longer
        // matches when its lock is had, so each notification goes into one digest.
        let ids: Vec<i64> = sqlx::query_scalar(&format!(
            "UPDATE notifications SET email_claimed_at = $1 WHERE id IN (\
                 SELECT n.id FROM notifications n JOIN users u ON u.id = n.user_id \
                 WHERE n.read_at IS NULL AND n.emailed_at IS NULL AND n.created_at <= $2 \
                 AND (n.email_claimed_at IS NULL OR n.email_claimed_at < $3) \
                 AND u.email_verified_at IS NOT NULL AND u.disabled_at IS NULL AND {STILL_MEMBER} \
                 ORDER BY n.created_at LIMIT $4) \
             AND read_at IS NULL AND emailed_at IS NULL \
             AND (email_claimed_at IS NULL OR email_claimed_at < $3) \
             RETURNING id"
        ))
        .bind(now)
        .bind(older_than)
        .bind(claim_expired_before)
        .bind(i64::from(limit))
        .fetch_all(&self.writer)
        .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for chunk in ids.chunks(super::ROWS_PER_STATEMENT) {
            let sql = format!(
                "SELECT n.id, n.user_id, n.workspace_id, n.event_offset, n.kind, n.actor_id, \
                 n.subject, n.payload, n.created_at, n.read_at, u.email, u.display_name, \
                 u.notification_preferences FROM notifications n \
                 JOIN users u ON u.id = n.user_id WHERE n.id IN ({}) ORDER BY n.id",
                super::placeholders(1, chunk.len())
            );
            let mut q = sqlx::query_as::<_, DigestRow>(&sql);
            for id in chunk {
                q = q.bind(id);
            }
            for row in q.fetch_all(&self.writer).await? {
                out.push(crate::store::DigestItem {
                    email: row.email.clone(),
                    display_name: row.display_name.clone(),
                    preferences: row
                        .notification_preferences
                        .as_deref()
                        .and_then(|p| serde_json::from_str(p).ok())
                        .unwrap_or(Value::Null),
                    notification: Notification::from(NotificationRow {
                        id: row.id,
                        user_id: row.user_id,
                        workspace_id: row.workspace_id,
                        event_offset: row.event_offset,
                        kind: row.kind,
                        actor_id: row.actor_id,
                        subject: row.subject,
                        payload: row.payload,
                        created_at: row.created_at,
                        read_at: row.read_at,
                    }),
                });
            }
        }
        Ok(out)
    }

    async fn notifications_mailed(&self, ids: &[i64], at: i64) -> StoreResult<()> {
        for chunk in ids.chunks(super::ROWS_PER_STATEMENT) {
            let sql = format!(
                "UPDATE notifications SET emailed_at = $1 WHERE id IN ({})",
                super::placeholders(2, chunk.len())
            );
            let mut q = sqlx::query(&sql).bind(at);
            for id in chunk {
                q = q.bind(id);
            }
            q.execute(&self.writer).await?;
        }
        Ok(())
    }

    async fn release_digest_claims(&self, ids: &[i64]) -> StoreResult<()> {
        for chunk in ids.chunks(super::ROWS_PER_STATEMENT) {
            let sql = format!(
                "UPDATE notifications SET email_claimed_at = NULL WHERE id IN ({})",
                super::placeholders(1, chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(id);
            }
            q.execute(&self.writer).await?;
        }
        Ok(())
    }
}
