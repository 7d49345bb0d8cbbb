//! Outgoing webhooks over REST: owners and admins register endpoints of their workspace
//! (URL, event kinds, secret), read them and their delivery log, pause, resume and
//! redeliver. Delivery itself is `crate::webhooks`.

use actix_web::{delete, get, patch, post, web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, Problem};
use super::extract::{ApiJson, AuthUser, PageQuery};
use super::AppState;
use crate::domain::{format_timestamp, now_ms, Role};
use crate::store::{Webhook, WebhookDelivery, WebhookPatch};
use crate::views::List;

/// Longest URL, and most kinds, of an endpoint.
const MAX_URL: usize = 2048;
const MAX_KINDS: usize = 64;

/// An endpoint of a workspace.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookView {
    pub id: i64,
    pub workspace_id: i64,
    pub url: String,
    /// Event kinds delivered; empty: every kind.
    pub kinds: Vec<String>,
    /// `active` or `paused`.
    pub state: String,
    /// Why it is paused (an admin, or failures in a row).
    pub paused_reason: Option<String>,
    /// The last offset of the log dealt with: events after it are still to come.
    pub delivered_offset: i64,
    /// Failed attempts in a row at the next event.
    pub failures: i64,
    /// When the next attempt is due, after a failure.
    pub next_attempt_at: Option<String>,
    pub created_by: Option<i64>,
    pub created_at: String,
}

impl From<&Webhook> for WebhookView {
    fn from(h: &Webhook) -> WebhookView {
        WebhookView {
            id: h.id,
            workspace_id: h.workspace_id,
            url: h.url.clone(),
            kinds: h.kinds.clone(),
            state: h.state.clone(),
            paused_reason: h.paused_reason.clone(),
            delivered_offset: h.delivered_offset,
            failures: h.failures,
            next_attempt_at: (h.failures > 0).then(|| format_timestamp(h.next_attempt_at)),
            created_by: h.created_by,
            created_at: format_timestamp(h.created_at),
        }
    }
}

/// A new endpoint, with its secret (shown this once).
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedWebhook {
    #[serde(flatten)]
    pub webhook: WebhookView,
    /// The key of every request's `Stoa-Signature`; not shown again.
    pub secret: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// Where events are POSTed: http or https, not on a private, loopback or link-local
    /// address (unless the server allows it).
    #[schema(
        example = "https://crm.example.com/hooks/stoa",
        pattern = r"^https?://[^\s/?#]+",
        max_length = 2048
    )]
    pub url: String,
    /// Event kinds to deliver (e.g. `document.created`); absent or empty: every kind.
    #[serde(default)]
    pub kinds: Vec<String>,
    /// The signing key, 16 to 256 characters; absent: one is made.
    #[schema(min_length = 16, max_length = 256)]
    pub secret: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhook {
    #[schema(pattern = r"^https?://[^\s/?#]+", max_length = 2048)]
    pub url: Option<String>,
    pub kinds: Option<Vec<String>>,
    /// `paused` stops deliveries (the backlog is kept); `active` resumes them from where
    /// they stopped, failures forgotten.
    #[schema(pattern = "^(active|paused)$")]
    pub state: Option<String>,
    /// A new signing key, 16 to 256 characters (rotation: requests are signed with it from
    /// the next one on).
    #[schema(min_length = 16, max_length = 256)]
    pub secret: Option<String>,
}

/// One attempt to deliver an event.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    pub id: i64,
    pub webhook_id: i64,
    pub event_offset: i64,
    pub event_kind: String,
    /// 1 for the first attempt at this event, 2 for the next…
    pub attempt: i64,
    /// The endpoint's HTTP status, if it answered.
    pub status: Option<i64>,
    /// What went wrong (the answer's first characters, a timeout, a refused target).
    pub error: Option<String>,
    pub duration_ms: i64,
    /// Asked for over REST, apart from the stream.
    pub redelivery: bool,
    pub at: String,
}

impl From<&WebhookDelivery> for DeliveryView {
    fn from(d: &WebhookDelivery) -> DeliveryView {
        DeliveryView {
            id: d.id,
            webhook_id: d.webhook_id,
            event_offset: d.event_offset,
            event_kind: d.event_kind.clone(),
            attempt: d.attempt,
            status: d.status,
            error: d.error.clone(),
            duration_ms: d.duration_ms,
            redelivery: d.redelivery,
            at: format_timestamp(d.at),
        }
    }
}

async fn require_admin(state: &AppState, user: i64, ws: i64) -> Result<(), ApiError> {
    match state.store.role(user, ws).await? {
        Role::Owner | Role::Admin => Ok(()),
        _ => Err(ApiError::Forbidden(
            "only the workspace's owners and admins manage its webhooks".into(),
        )),
    }
}

fn no_webhook() -> ApiError {
    ApiError::NotFound("webhook not found".into())
}

/// Checks a URL as registered: its form, then where it leads.
async fn checked_url(state: &AppState, url: &str) -> Result<String, ApiError> {
    let invalid = |m: String| ApiError::validation("url", m);
    if url.len() > MAX_URL {
        return Err(invalid(format!("at most {MAX_URL} characters")));
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| invalid(format!("not a URL: {e}")))?;
    state
        .webhooks
        .sender
        .guard()
        .check(&parsed)
        .await
        .map_err(invalid)?;
    Ok(parsed.to_string())
}

fn checked_kinds(kinds: &[String]) -> Result<Vec<String>, ApiError> {
    if kinds.len() > MAX_KINDS {
        return Err(ApiError::validation(
            "kinds",
            format!("at most {MAX_KINDS} kinds"),
        ));
    }
    let mut out: Vec<String> = Vec::new();
    for kind in kinds {
        if crate::domain::EventKind::parse(kind).is_none() {
            return Err(ApiError::validation(
                "kinds",
                format!("{kind:?} is not an event kind"),
            ));
        }
        if !out.contains(kind) {
            out.push(kind.clone());
        }
    }
    Ok(out)
}

/// Register an endpoint (owners and admins; an API token needs `admin`). It receives the
/// events written from now on, in offset order, each POSTed as JSON with
/// `Stoa-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>" keyed by the secret>`,
/// `Stoa-Event-Offset` and `Idempotency-Key`; a 2xx answer moves it to the next event.
#[utoipa::path(
    tag = "webhooks",
    params(("id" = i64, Path, description = "Workspace id")),
    request_body = CreateWebhook,
    responses(
        (status = 201, description = "Registered; the secret is shown this once", body = CreatedWebhook),
        (status = 403, description = "Not an owner or admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such workspace, or not a member", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The workspace has its most endpoints already", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid URL (or one on a private address), kinds or secret", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[post("/workspaces/{id}/webhooks")]
pub async fn create_webhook(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<i64>,
    body: ApiJson<CreateWebhook>,
) -> Result<HttpResponse, ApiError> {
    let ws = *id;
    require_admin(&state, user.id, ws).await?;
    let body = body.0;
    let kinds = checked_kinds(&body.kinds)?;
    let secret = match body.secret {
        Some(s) if (16..=256).contains(&s.chars().count()) => s,
        Some(_) => {
            return Err(ApiError::validation(
                "secret",
                "must be 16 to 256 characters",
            ))
        }
        None => crate::auth::random_token(32),
    };
    let url = checked_url(&state, &body.url).await?;
    let have = state.store.webhooks(ws).await?.len();
    if have >= state.webhooks.max_per_workspace as usize {
        return Err(ApiError::Conflict {
            code: "too_many_webhooks",
            detail: format!(
                "this workspace has {have} webhooks, the most it may (webhooks.max_per_workspace)"
            ),
        });
    }
    let hook = state
        .store
        .create_webhook(ws, user.id, &url, &secret, &kinds)
        .await?;
    Ok(HttpResponse::Created().json(CreatedWebhook {
        webhook: WebhookView::from(&hook),
        secret,
    }))
}

/// The workspace's endpoints (owners and admins), without their secrets.
#[utoipa::path(
    tag = "webhooks",
    params(("id" = i64, Path, description = "Workspace id")),
    responses(
        (status = 200, description = "Every endpoint", body = Vec<WebhookView>),
        (status = 403, description = "Not an owner or admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such workspace, or not a member", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/workspaces/{id}/webhooks")]
pub async fn list_webhooks(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&state, user.id, *id).await?;
    let hooks = state.store.webhooks(*id).await?;
    let views: Vec<WebhookView> = hooks.iter().map(WebhookView::from).collect();
    Ok(HttpResponse::Ok().json(views))
}

/// One endpoint (owners and admins).
#[utoipa::path(
    tag = "webhooks",
    params(("id" = i64, Path, description = "Workspace id"), ("hook" = i64, Path, description = "Webhook id")),
    responses(
        (status = 200, description = "The endpoint", body = WebhookView),
        (status = 403, description = "Not an owner or admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such workspace or webhook", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/workspaces/{id}/webhooks/{hook}")]
pub async fn get_webhook(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<(i64, i64)>,
) -> Result<HttpResponse, ApiError> {
    let (ws, hook) = path.into_inner();
    require_admin(&state, user.id, ws).await?;
    let hook = state
        .store
        .webhook(ws, hook)
        .await?
        .ok_or_else(no_webhook)?;
    Ok(HttpResponse::Ok().json(WebhookView::from(&hook)))
}

/// Change an endpoint's URL, kinds or secret, pause it (`state: paused`; its backlog is kept) or
/// resume it (`state: active`: from where it stopped, at once).
#[utoipa::path(
    tag = "webhooks",
    params(("id" = i64, Path, description = "Workspace id"), ("hook" = i64, Path, description = "Webhook id")),
    request_body = UpdateWebhook,
    responses(
        (status = 200, description = "Changed", body = WebhookView),
        (status = 403, description = "Not an owner or admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such workspace or webhook", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid URL, kinds or state", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[patch("/workspaces/{id}/webhooks/{hook}")]
pub async fn update_webhook(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<(i64, i64)>,
    body: ApiJson<UpdateWebhook>,
) -> Result<HttpResponse, ApiError> {
    let (ws, hook) = path.into_inner();
    require_admin(&state, user.id, ws).await?;
    let body = body.0;
    if let Some(s) = &body.state {
        if s != "active" && s != "paused" {
            return Err(ApiError::validation("state", "must be active or paused"));
        }
    }
    if let Some(secret) = &body.secret {
        if !(16..=256).contains(&secret.chars().count()) {
            return Err(ApiError::validation(
                "secret",
                "must be 16 to 256 characters",
            ));
        }
    }
    let kinds = body.kinds.as_deref().map(checked_kinds).transpose()?;
    let url = match &body.url {
        Some(url) => Some(checked_url(&state, url).await?),
        None => None,
    };
    let patch = WebhookPatch {
        url,
        secret: body.secret,
        kinds,
        state: body.state,
    };
    let hook = state
        .store
        .update_webhook(ws, hook, &patch)
        .await?
        .ok_or_else(no_webhook)?;
    crate::webhooks::events_committed();
    Ok(HttpResponse::Ok().json(WebhookView::from(&hook)))
}

/// Remove an endpoint and its delivery log.
#[utoipa::path(
    tag = "webhooks",
    params(("id" = i64, Path, description = "Workspace id"), ("hook" = i64, Path, description = "Webhook id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 403, description = "Not an owner or admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such workspace or webhook", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[delete("/workspaces/{id}/webhooks/{hook}")]
pub async fn delete_webhook(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<(i64, i64)>,
) -> Result<HttpResponse, ApiError> {
    let (ws, hook) = path.into_inner();
    require_admin(&state, user.id, ws).await?;
    if state.store.delete_webhook(ws, hook).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(no_webhook())
    }
}

/// An endpoint's delivery log, newest first (the newest `webhooks.deliveries_kept`).
#[utoipa::path(
    tag = "webhooks",
    params(("id" = i64, Path, description = "Workspace id"), ("hook" = i64, Path, description = "Webhook id"), PageQuery),
    responses(
        (status = 200, description = "A page of attempts", body = List<DeliveryView>),
        (status = 403, description = "Not an owner or admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such workspace or webhook", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/workspaces/{id}/webhooks/{hook}/deliveries")]
pub async fn list_deliveries(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<(i64, i64)>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let (ws, hook) = path.into_inner();
    let page = query.to_request()?;
    require_admin(&state, user.id, ws).await?;
    state
        .store
        .webhook(ws, hook)
        .await?
        .ok_or_else(no_webhook)?;
    let page = state.store.webhook_deliveries(hook, page).await?;
    Ok(HttpResponse::Ok().json(List::from_page(page, |d| DeliveryView::from(d))))
}

/// Send a logged delivery's event again, now, apart from the stream (whose position does
/// not move); the attempt is logged with `redelivery: true`.
#[utoipa::path(
    tag = "webhooks",
    params(
        ("id" = i64, Path, description = "Workspace id"),
        ("hook" = i64, Path, description = "Webhook id"),
        ("delivery" = i64, Path, description = "Delivery id"),
    ),
    responses(
        (status = 200, description = "Sent; the attempt as logged (its status says how the endpoint answered)", body = DeliveryView),
        (status = 403, description = "Not an owner or admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such workspace, webhook or delivery", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[post("/workspaces/{id}/webhooks/{hook}/deliveries/{delivery}/redeliver")]
pub async fn redeliver(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<(i64, i64, i64)>,
) -> Result<HttpResponse, ApiError> {
    let (ws, hook, delivery) = path.into_inner();
    require_admin(&state, user.id, ws).await?;
    let hook = state
        .store
        .webhook(ws, hook)
        .await?
        .ok_or_else(no_webhook)?;
    let delivery = state
        .store
        .webhook_delivery(hook.id, delivery)
        .await?
        .ok_or_else(|| ApiError::NotFound("delivery not found".into()))?;
    let event = state
        .store
        .log_after(ws, delivery.event_offset - 1, 1)
        .await?
        .into_iter()
        .next()
        .filter(|e| e.offset == delivery.event_offset)
        .ok_or_else(|| ApiError::NotFound("that event is no longer in the log".into()))?;
    let body = crate::webhooks::body_of(&hook, &event);
    let outcome = state
        .webhooks
        .sender
        .send(&hook, event.offset, &event.kind, &body)
        .await;
    let logged = state
        .store
        .record_webhook_delivery(
            &WebhookDelivery {
                id: 0,
                webhook_id: hook.id,
                event_offset: event.offset,
                event_kind: event.kind.clone(),
                attempt: 1,
                status: outcome.status.map(i64::from),
                error: outcome.error,
                duration_ms: i64::try_from(outcome.duration.as_millis()).unwrap_or(i64::MAX),
                redelivery: true,
                at: now_ms(),
            },
            state.webhooks.policy.deliveries_kept,
        )
        .await?;
    Ok(HttpResponse::Ok().json(DeliveryView::from(&logged)))
}
