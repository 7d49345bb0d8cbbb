//! Comments on documents: threads through `parent_id`, `@email` mentions, resolve/unresolve.

use actix_web::{delete, get, patch, post, web, HttpResponse};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, Problem};
use super::extract::{checked, ApiJson, AuthUser, PageQuery, Validation};
use super::AppState;
use crate::domain::{parse_mentions, CommentBody};
use crate::store::CommentPatch;
use crate::views::{CommentView, List};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateComment {
    /// Text; `@name@example.com` mentions a member.
    pub body: String,
    /// Reply to this comment (same document).
    #[serde(default, deserialize_with = "super::extract::integral")]
    pub parent_id: Option<i64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateComment {
    /// New text (author only).
    pub body: Option<String>,
    /// Resolve or reopen the thread (editors and above).
    pub resolved: Option<bool>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CommentQuery {
    /// Only resolved (`true`) or only open (`false`) comments.
    pub resolved: Option<bool>,
    /// Page size, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page; empty is the same as none.
    #[param(pattern = "^([0-9]{1,18})?$")]
    pub cursor: Option<String>,
}

/// Comment on a document (editors and above).
#[utoipa::path(
    tag = "comments",
    params(("id" = i64, Path, description = "Document id")),
    request_body = CreateComment,
    responses(
        (status = 201, description = "Created", body = CommentView),
        (status = 403, description = "Viewers cannot comment", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such document, or not a member", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`parent_id` names no comment of this document (`invalid_parent`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[post("/documents/{id}/comments")]
pub async fn create_comment(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<i64>,
    ApiJson(body): ApiJson<CreateComment>,
) -> Result<HttpResponse, ApiError> {
    let mut v = Validation::default();
    let text = v.check("body", CommentBody::parse(&body.body));
    v.finish()?;
    let text = checked(text)?;
    let mentions = parse_mentions(text.as_str());
    let (comment, event) = state
        .store
        .create_comment(user.id, *id, body.parent_id, &text, &mentions)
        .await
        .map_err(|e| match e {
            // A well-formed id that names no comment of this document: the request is
            // valid, the state does not allow it.
            crate::store::StoreError::Invalid {
                field: "parent_id",
                message,
            } => ApiError::Conflict {
                code: "invalid_parent",
                detail: format!("parent_id: {message}"),
            },
            e => e.into(),
        })?;
    crate::realtime::committed(&state.realtime, &*state.store, &event).await;
    Ok(HttpResponse::Created().json(CommentView::from(&comment)))
}

/// The comments on a document, oldest first.
#[utoipa::path(
    tag = "comments",
    params(("id" = i64, Path, description = "Document id"), CommentQuery),
    responses(
        (status = 200, description = "A page of comments", body = List<CommentView>),
        (status = 404, description = "No such document, or not a member", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/documents/{id}/comments")]
pub async fn list_comments(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<i64>,
    query: web::Query<CommentQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let page = PageQuery {
        limit: query.limit,
        cursor: query.cursor,
    }
    .to_request()?;
    let page = state
        .store
        .comments(user.id, *id, query.resolved, page)
        .await?;
    Ok(HttpResponse::Ok().json(List::from_page(page, |c| CommentView::from(c))))
}

/// One comment.
#[utoipa::path(
    tag = "comments",
    params(("id" = i64, Path, description = "Comment id")),
    responses(
        (status = 200, description = "The comment", body = CommentView),
        (status = 404, description = "No such comment, or not a member", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/comments/{id}")]
pub async fn get_comment(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let comment = state.store.comment(user.id, *id).await?;
    Ok(HttpResponse::Ok().json(CommentView::from(&comment)))
}

/// Edit a comment's body (its author) or resolve/reopen it (editors and above).
#[utoipa::path(
    tag = "comments",
    params(("id" = i64, Path, description = "Comment id")),
    request_body = UpdateComment,
    responses(
        (status = 200, description = "Updated", body = CommentView),
        (status = 403, description = "Not allowed for this role or author", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such comment, or not a member", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[patch("/comments/{id}")]
pub async fn update_comment(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<i64>,
    ApiJson(body): ApiJson<UpdateComment>,
) -> Result<HttpResponse, ApiError> {
    let mut v = Validation::default();
    let text = body
        .body
        .as_deref()
        .map(|b| v.check("body", CommentBody::parse(b)));
    if body.body.is_none() && body.resolved.is_none() {
        v.fail("body", "give at least one of body, resolved");
    }
    v.finish()?;
    let text = text.map(checked).transpose()?;
    let patch = CommentPatch {
        body: text.map(|t| {
            let mentions = parse_mentions(t.as_str());
            (t, mentions)
        }),
        resolved: body.resolved,
    };
    let (comment, event) = state.store.update_comment(user.id, *id, &patch).await?;
    if let Some(event) = &event {
        crate::realtime::committed(&state.realtime, &*state.store, event).await;
    }
    Ok(HttpResponse::Ok().json(CommentView::from(&comment)))
}

/// Delete a comment and its replies (its author, or an admin).
#[utoipa::path(
    tag = "comments",
    params(("id" = i64, Path, description = "Comment id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Not the author and not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such comment, or not a member", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[delete("/comments/{id}")]
pub async fn delete_comment(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let event = state.store.delete_comment(user.id, *id).await?;
    crate::realtime::committed(&state.realtime, &*state.store, &event).await;
    Ok(HttpResponse::NoContent().finish())
}
