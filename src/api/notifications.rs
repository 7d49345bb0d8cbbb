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

/// The signed link of an e-mail digest: who, and the proof.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct UnsubscribeQuery {
    /// The user the link was mailed to.
    pub user: i64,
    /// Its signature (hex).
    #[param(pattern = "^[0-9a-f]{64}$")]
    pub token: String,
}

fn unsubscribe_page(title: &str, body: &str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("Cache-Control", "no-store"))
        .body(format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title></head>\
             <body><h1>{title}</h1>{body}</body></html>"
        ))
}

/// Refuses a link the server did not sign.
fn signed_link(state: &AppState, q: &UnsubscribeQuery) -> Result<(), ApiError> {
    if crate::digest::unsubscribe_token_valid(&state.unsubscribe_key, q.user, &q.token) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "this unsubscribe link is not valid".into(),
        ))
    }
}

async fn unsubscribe_user(state: &AppState, q: &UnsubscribeQuery) -> Result<(), ApiError> {
    signed_link(state, q)?;
    let off = serde_json::json!({
        "email_mentions": false, "email_replies": false, "email_membership": false
    });
    match state.store.update_profile(q.user, None, Some(&off)).await {
        Ok(_) | Err(crate::store::StoreError::NotFound(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The unsubscribe link of an e-mail digest, opened: a page whose button unsubscribes (a
/// link a mail scanner follows changes nothing).
#[utoipa::path(
    tag = "notifications",
    params(UnsubscribeQuery),
    responses(
        (status = 200, description = "A page with the button", content_type = "text/html"),
        (status = 403, description = "The link is not valid", body = Problem, content_type = "application/problem+json"),
    ),
)]
#[get("/unsubscribe")]
pub async fn unsubscribe_page_get(
    state: web::Data<AppState>,
    q: web::Query<UnsubscribeQuery>,
) -> Result<HttpResponse, ApiError> {
    signed_link(&state, &q)?;
    Ok(unsubscribe_page(
        "Stop e-mail from Stoa",
        &format!(
            "<form method=\"post\" action=\"/api/v1/unsubscribe?user={}&amp;token={}\">\
             <button type=\"submit\">Stop these e-mails</button></form>",
            q.user, q.token
        ),
    ))
}

/// Unsubscribes from every e-mail digest: the button of the page, or a mail client's
/// one-click (`List-Unsubscribe-Post: List-Unsubscribe=One-Click`, RFC 8058). No sign-in:
/// the signed link is the proof.
#[utoipa::path(
    tag = "notifications",
    params(UnsubscribeQuery),
    responses(
        (status = 200, description = "Unsubscribed", content_type = "text/html"),
        (status = 403, description = "The link is not valid", body = Problem, content_type = "application/problem+json"),
    ),
)]
#[post("/unsubscribe")]
pub async fn unsubscribe(
    state: web::Data<AppState>,
    q: web::Query<UnsubscribeQuery>,
) -> Result<HttpResponse, ApiError> {
    unsubscribe_user(&state, &q).await?;
    Ok(unsubscribe_page(
        "Unsubscribed",
        "<p>You will get no more e-mail digests. Turn them on again in your account settings.</p>",
    ))
}
