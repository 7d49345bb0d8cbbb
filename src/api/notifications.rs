//! `/api/v1/notifications`: the caller's mentions, replies and membership changes.

use actix_web::{get, post, web, HttpResponse};
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::{ApiError, Problem};
use super::extract::{AuthUser, PageQuery};
use super::AppState;
use crate::views::{List, MarkedRead, NotificationView, UnreadCount};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NotificationQuery {
    /// Only unread notifications.
    pub unread: Option<bool>,
    /// Page size, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page; empty is the same as none.
    #[param(pattern = "^([0-9]{1,18})?$")]
    pub cursor: Option<String>,
}

/// The caller's notifications, newest first.
#[utoipa::path(
    tag = "notifications",
    params(NotificationQuery),
    responses(
        (status = 200, description = "A page of notifications", body = List<NotificationView>),
        (status = 400, description = "Bad cursor", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid access token", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/notifications")]
pub async fn list_notifications(
    state: web::Data<AppState>,
    user: AuthUser,
    query: web::Query<NotificationQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let page = PageQuery {
        limit: query.limit,
        cursor: query.cursor,
    }
    .to_request()?;
    let page = state
        .store
        .notifications(user.id, query.unread.unwrap_or(false), page)
        .await?;
    Ok(HttpResponse::Ok().json(List::from_page(page, |n| NotificationView::from(n))))
}

/// How many of the caller's notifications are unread.
#[utoipa::path(
    tag = "notifications",
    responses(
        (status = 200, description = "The unread count", body = UnreadCount),
        (status = 401, description = "No valid access token", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/notifications/unread-count")]
pub async fn get_unread_count(
    state: web::Data<AppState>,
    user: AuthUser,
) -> Result<HttpResponse, ApiError> {
    let unread_count = state.store.unread_count(user.id).await?;
    Ok(HttpResponse::Ok().json(UnreadCount { unread_count }))
}

/// Marks one notification read (idempotent).
#[utoipa::path(
    tag = "notifications",
    params(("id" = i64, Path, description = "Notification id")),
    responses(
        (status = 200, description = "The notification, now read", body = NotificationView),
        (status = 401, description = "No valid access token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such notification of the caller", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[post("/notifications/{id}/read")]
pub async fn mark_read(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let n = state.store.mark_read(user.id, *id).await?;
    Ok(HttpResponse::Ok().json(NotificationView::from(&n)))
}

/// Marks all the caller's notifications read.
#[utoipa::path(
    tag = "notifications",
    responses(
        (status = 200, description = "How many were marked", body = MarkedRead),
        (status = 401, description = "No valid access token", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[post("/notifications/read-all")]
pub async fn mark_all_read(
    state: web::Data<AppState>,
    user: AuthUser,
) -> Result<HttpResponse, ApiError> {
    let marked = state.store.mark_all_read(user.id).await?;
    let unread_count = state.store.unread_count(user.id).await?;
    Ok(HttpResponse::Ok().json(MarkedRead {
        marked,
        unread_count,
    }))
}
