//! `GET /api/v1/workspaces/{id}/events?since=&limit=`: the workspace's log, in offset order.

use actix_web::{get, web, HttpResponse};
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::{ApiError, Problem};
use super::extract::AuthUser;
use super::AppState;
use crate::views::{EventList, EventView};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// Return events with an offset greater than this (default 0: from the start).
    #[param(minimum = 0)]
    pub since: Option<i64>,
    /// At most this many events, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// Page through a workspace's event log.
#[utoipa::path(
    tag = "events",
    params(("id" = i64, Path, description = "Workspace id"), EventQuery),
    responses(
        (status = 200, description = "Events after `since`, oldest first", body = EventList),
        (status = 404, description = "No such workspace, or not a member", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid `since` or `limit`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/workspaces/{id}/events")]
pub async fn list_events(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<i64>,
    query: web::Query<EventQuery>,
) -> Result<HttpResponse, ApiError> {
    let since = query.since.unwrap_or(0);
    if since < 0 {
        return Err(ApiError::validation("since", "must be 0 or greater"));
    }
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::validation("limit", "must be between 1 and 1000"));
    }
    let page = state.store.events(user.id, *id, since, limit).await?;
    let next_since = page.events.last().map_or(since, |e| e.offset);
    Ok(HttpResponse::Ok().json(EventList {
        items: page.events.iter().map(EventView::from).collect(),
        next_since,
        latest_offset: page.latest_offset,
    }))
}
