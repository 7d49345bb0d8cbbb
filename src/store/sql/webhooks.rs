//! Outgoing webhooks: endpoints, the position of each one's stream in its workspace's log,
//! the lease that lets one node deliver it, and the log of attempts.

use async_trait::async_trait;

use super::{fetch_limit, page_of, SqlStore};
use crate::domain::{now_ms, UserId, WorkspaceId};
use crate::store::{
    Page, PageRequest, StoreResult, Webhook, WebhookDelivery, WebhookPatch, Webhooks,
};

const COLUMNS: &str = "id, workspace_id, url, secret, kinds, delivered_offset, state, \
                       paused_reason, failures, next_attempt_at, created_by, created_at";

const DELIVERY_COLUMNS: &str =
    "id, webhook_id, event_offset, event_kind, attempt, status, error, duration_ms, \
     redelivery, at";

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    workspace_id: i64,
    url: String,
    secret: String,
    kinds: String,
    delivered_offset: i64,
    state: String,
    paused_reason: Option<String>,
    failures: i64,
    next_attempt_at: i64,
    created_by: Option<i64>,
    created_at: i64,
}

impl From<Row> for Webhook {
    fn from(r: Row) -> Webhook {
        Webhook {
            id: r.id,
            workspace_id: r.workspace_id,
            url: r.url,
            secret: r.secret,
            kinds: serde_json::from_str(&r.kinds).unwrap_or_default(),
            delivered_offset: r.delivered_offset,
            state: r.state,
            paused_reason: r.paused_reason,
            failures: r.failures,
            next_attempt_at: r.next_attempt_at,
            created_by: r.created_by,
            created_at: r.created_at,
        }
    }
}

#[derive(sqlx::FromRow)]
struct DeliveryRow {
    id: i64,
    webhook_id: i64,
    event_offset: i64,
    event_kind: String,
    attempt: i64,
    status: Option<i64>,
    error: Option<String>,
    duration_ms: i64,
    redelivery: i64,
    at: i64,
}

impl From<DeliveryRow> for WebhookDelivery {
    fn from(r: DeliveryRow) -> WebhookDelivery {
        WebhookDelivery {
            id: r.id,
            webhook_id: r.webhook_id,
            event_offset: r.event_offset,
            event_kind: r.event_kind,
            attempt: r.attempt,
            status: r.status,
            error: r.error,
            duration_ms: r.duration_ms,
            redelivery: r.redelivery != 0,
            at: r.at,
        }
    }
}

fn kinds_json(kinds: &[String]) -> String {
    serde_json::to_string(kinds).unwrap_or_else(|_| "[]".into())
}

/// The log keeps the newest `keep` attempts of each endpoint.
async fn trim(store: &SqlStore, webhook: i64, keep: u32) -> StoreResult<()> {
    sqlx::query(
        "DELETE FROM webhook_deliveries WHERE webhook_id = $1 AND id <= \
         (SELECT id FROM webhook_deliveries WHERE webhook_id = $1 \
          ORDER BY id DESC LIMIT 1 OFFSET $2)",
    )
    .bind(webhook)
    .bind(i64::from(keep))
    .execute(&store.writer)
    .await?;
    Ok(())
}

#[async_trait]
impl Webhooks for SqlStore {
    async fn create_webhook(
        &self,
        ws: WorkspaceId,
        by: UserId,
        url: &str,
        secret: &str,
        kinds: &[String],
    ) -> StoreResult<Webhook> {
        let row: Row = sqlx::query_as(&format!(
            "INSERT INTO webhooks (workspace_id, url, secret, kinds, delivered_offset, state, \
             created_by, created_at) \
             SELECT id, $2, $3, $4, last_offset, 'active', $5, $6 FROM workspaces WHERE id = $1 \
             RETURNING {COLUMNS}"
        ))
        .bind(ws)
        .bind(url)
        .bind(secret)
        .bind(kinds_json(kinds))
        .bind(by)
        .bind(now_ms())
        .fetch_one(&self.writer)
        .await?;
        Ok(row.into())
    }

    async fn webhooks(&self, ws: WorkspaceId) -> StoreResult<Vec<Webhook>> {
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM webhooks WHERE workspace_id = $1 ORDER BY id"
        ))
        .bind(ws)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows.into_iter().map(Webhook::from).collect())
    }

    async fn webhook(&self, ws: WorkspaceId, id: i64) -> StoreResult<Option<Webhook>> {
        let row: Option<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM webhooks WHERE workspace_id = $1 AND id = $2"
        ))
        .bind(ws)
        .bind(id)
        .fetch_optional(&self.writer)
        .await?;
        Ok(row.map(Webhook::from))
    }

    async fn update_webhook(
        &self,
        ws: WorkspaceId,
        id: i64,
        patch: &WebhookPatch,
    ) -> StoreResult<Option<Webhook>> {
        let resume = patch.state.as_deref() == Some("active");
        let pause = patch.state.as_deref() == Some("paused");
        let row: Option<Row> = sqlx::query_as(&format!(
            "UPDATE webhooks SET url = COALESCE($3, url), kinds = COALESCE($4, kinds), \
             state = COALESCE($5, state), secret = COALESCE($8, secret), \
             paused_reason = CASE WHEN $6 THEN NULL WHEN $7 THEN 'paused by an admin' \
                                  ELSE paused_reason END, \
             failures = CASE WHEN $6 THEN 0 ELSE failures END, \
             next_attempt_at = CASE WHEN $6 THEN 0 ELSE next_attempt_at END \
             WHERE workspace_id = $1 AND id = $2 RETURNING {COLUMNS}"
        ))
        .bind(ws)
        .bind(id)
        .bind(patch.url.as_deref())
        .bind(patch.kinds.as_deref().map(kinds_json))
        .bind(patch.state.as_deref())
        .bind(resume)
        .bind(pause)
        .bind(patch.secret.as_deref())
        .fetch_optional(&self.writer)
        .await?;
        Ok(row.map(Webhook::from))
    }

    async fn delete_webhook(&self, ws: WorkspaceId, id: i64) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM webhooks WHERE workspace_id = $1 AND id = $2")
            .bind(ws)
            .bind(id)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn lease_due_webhooks(
        &self,
        node: &str,
        now: i64,
        until: i64,
        limit: u32,
    ) -> StoreResult<Vec<Webhook>> {
        // Every node asks ten times a second: a read first, so that a server with nothing
        // due (most of the time, or no webhook at all) takes no write lock for it.
        let due: Option<i64> = sqlx::query_scalar(
            "SELECT h.id FROM webhooks h JOIN workspaces w ON w.id = h.workspace_id \
             WHERE h.state = 'active' AND h.next_attempt_at <= $2 \
             AND (h.lease_until < $2 OR h.lease_node = $1) \
             AND h.delivered_offset < w.last_offset LIMIT 1",
        )
        .bind(node)
        .bind(now)
        .fetch_optional(&self.reader)
        .await?;
        if due.is_none() {
            return Ok(Vec::new());
        }
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "UPDATE webhooks SET lease_node = $1, lease_until = $3 WHERE id IN (\
                 SELECT h.id FROM webhooks h JOIN workspaces w ON w.id = h.workspace_id \
                 WHERE h.state = 'active' AND h.next_attempt_at <= $2 \
                 AND (h.lease_until < $2 OR h.lease_node = $1) \
                 AND h.delivered_offset < w.last_offset \
                 ORDER BY h.next_attempt_at, h.id LIMIT $4) \
             AND (lease_until < $2 OR lease_node = $1) \
             RETURNING {COLUMNS}"
        ))
        .bind(node)
        .bind(now)
        .bind(until)
        .bind(i64::from(limit))
        .fetch_all(&self.writer)
        .await?;
        Ok(rows.into_iter().map(Webhook::from).collect())
    }

    async fn webhook_delivered(&self, id: i64, node: &str, offset: i64) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE webhooks SET delivered_offset = $3, failures = 0, next_attempt_at = 0 \
             WHERE id = $1 AND lease_node = $2 AND delivered_offset < $3",
        )
        .bind(id)
        .bind(node)
        .bind(offset)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn webhook_failed(
        &self,
        id: i64,
        node: &str,
        failures: i64,
        next_attempt_at: i64,
        paused_reason: Option<&str>,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE webhooks SET failures = $3, next_attempt_at = $4, \
             state = CASE WHEN $5 IS NULL THEN state ELSE 'paused' END, \
             paused_reason = COALESCE($5, paused_reason) \
             WHERE id = $1 AND lease_node = $2 AND state = 'active'",
        )
        .bind(id)
        .bind(node)
        .bind(failures)
        .bind(next_attempt_at)
        .bind(paused_reason)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn record_webhook_delivery(
        &self,
        d: &WebhookDelivery,
        keep: u32,
    ) -> StoreResult<WebhookDelivery> {
        let row: DeliveryRow = sqlx::query_as(&format!(
            "INSERT INTO webhook_deliveries (webhook_id, event_offset, event_kind, attempt, \
             status, error, duration_ms, redelivery, at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {DELIVERY_COLUMNS}"
        ))
        .bind(d.webhook_id)
        .bind(d.event_offset)
        .bind(&d.event_kind)
        .bind(d.attempt)
        .bind(d.status)
        .bind(d.error.as_deref())
        .bind(d.duration_ms)
        .bind(i64::from(d.redelivery))
        .bind(d.at)
        .fetch_one(&self.writer)
        .await?;
        if row.id % 64 == 0 {
            trim(self, d.webhook_id, keep).await?;
        }
        Ok(row.into())
    }

    async fn record_webhook_deliveries(
        &self,
        deliveries: &[WebhookDelivery],
        keep: u32,
    ) -> StoreResult<()> {
        for chunk in deliveries.chunks(100) {
            let rows: Vec<String> = (0..chunk.len())
                .map(|i| {
                    let b = i * 9;
                    format!(
                        "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                        b + 1,
                        b + 2,
                        b + 3,
                        b + 4,
                        b + 5,
                        b + 6,
                        b + 7,
                        b + 8,
                        b + 9
                    )
                })
                .collect();
            let sql = format!(
                "INSERT INTO webhook_deliveries (webhook_id, event_offset, event_kind, attempt, \
                 status, error, duration_ms, redelivery, at) VALUES {}",
                rows.join(", ")
            );
            let mut q = sqlx::query(&sql);
            for d in chunk {
                q = q
                    .bind(d.webhook_id)
                    .bind(d.event_offset)
                    .bind(d.event_kind.as_str())
                    .bind(d.attempt)
                    .bind(d.status)
                    .bind(d.error.as_deref())
                    .bind(d.duration_ms)
                    .bind(i64::from(d.redelivery))
                    .bind(d.at);
            }
            q.execute(&self.writer).await?;
        }
        if let Some(first) = deliveries.first() {
            trim(self, first.webhook_id, keep).await?;
        }
        Ok(())
    }

    async fn webhook_deliveries(
        &self,
        webhook: i64,
        page: PageRequest,
    ) -> StoreResult<Page<WebhookDelivery>> {
        let rows: Vec<DeliveryRow> = sqlx::query_as(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE webhook_id = $1 \
             AND id < $2 ORDER BY id DESC LIMIT $3"
        ))
        .bind(webhook)
        .bind(page.after.unwrap_or(i64::MAX))
        .bind(fetch_limit(&page))
        .fetch_all(&self.reader)
        .await?;
        let items: Vec<WebhookDelivery> = rows.into_iter().map(WebhookDelivery::from).collect();
        Ok(page_of(items, page.limit, |d| d.id))
    }

    async fn webhook_delivery(
        &self,
        webhook: i64,
        id: i64,
    ) -> StoreResult<Option<WebhookDelivery>> {
        let row: Option<DeliveryRow> = sqlx::query_as(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE webhook_id = $1 AND id = $2"
        ))
        .bind(webhook)
        .bind(id)
        .fetch_optional(&self.reader)
        .await?;
        Ok(row.map(WebhookDelivery::from))
    }
}
