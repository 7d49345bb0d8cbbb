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
    /// Pin the comment to a range of the document's text (not for replies).
    pub anchor: Option<AnchorInput>,
}

/// A range of the document's text: an editor's selection as two Yjs relative positions, or
/// a quoted string and which occurrence of it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnchorInput {
    /// Base64 of `Y.encodeRelativePosition` of the selection's start.
    pub start: Option<String>,
    /// Base64 of `Y.encodeRelativePosition` of the selection's end.
    pub end: Option<String>,
    /// Text of the document to pin to (one line per block for a fragment document).
    pub quote: Option<String>,
    /// Which occurrence of `quote`, 1 for the first (the default).
    pub occurrence: Option<u32>,
}

/// Longest encoded relative position accepted (real ones are a few dozen bytes).
const MAX_POSITION_B64: usize = 512;

/// The anchor a request asks for, checked against the document as its log holds it now.
async fn anchor_of(
    state: &AppState,
    doc: i64,
    input: &AnchorInput,
) -> Result<crate::store::CommentAnchor, ApiError> {
    use base64::Engine;
    use stoa_actors::doc_text::{anchor_range, resolve_anchor, text_of};
    let invalid = |m: &str| ApiError::validation("anchor", m.to_string());
    let current = crate::history::current(&*state.store, doc).await?;
    match (&input.start, &input.end, &input.quote) {
        (Some(start), Some(end), None) => {
            if input.occurrence.is_some() {
                return Err(invalid("occurrence goes with quote"));
            }
            let b64 = base64::engine::general_purpose::STANDARD;
            let decode = |s: &str| {
                (s.len() <= MAX_POSITION_B64)
                    .then(|| b64.decode(s).ok())
                    .flatten()
                    .ok_or_else(|| invalid("start and end must be base64 Yjs relative positions"))
            };
            let (start, end) = (decode(start)?, decode(end)?);
            let (_, _, quote) = resolve_anchor(&current, &start, &end).ok_or_else(|| {
                invalid("start and end are not positions of this document's text")
            })?;
            if quote.is_empty() {
                return Err(invalid("the range is empty"));
            }
            Ok(crate::store::CommentAnchor { start, end, quote })
        }
        (None, None, Some(quote)) => {
            if quote.is_empty() || quote.chars().count() > 10_000 {
                return Err(invalid("quote must be 1 to 10000 characters"));
            }
            let n = input.occurrence.unwrap_or(1);
            if n == 0 {
                return Err(invalid("occurrence counts from 1"));
            }
            let text = text_of(&current);
            let at = text
                .match_indices(quote.as_str())
                .nth(n as usize - 1)
                .map(|(i, _)| i)
                .ok_or_else(|| {
                    invalid("the document's text does not have that occurrence of quote")
                })?;
            let (start, end) = anchor_range(&current, at, at + quote.len())
                .ok_or_else(|| invalid("quote cannot be pinned there"))?;
            Ok(crate::store::CommentAnchor {
                start,
                end,
                quote: quote.clone(),
            })
        }
        _ => Err(invalid("give start and end, or quote")),
    }
}

/// Views of a document's comments, each pinned one with where its text is now.
async fn views(
    state: &AppState,
    doc: i64,
    comments: &[crate::store::Comment],
) -> Result<Vec<CommentView>, ApiError> {
    use base64::Engine;
    let mut out: Vec<CommentView> = comments.iter().map(CommentView::from).collect();
    let anchors = state.store.comment_anchors(doc).await?;
    if !comments.iter().any(|c| anchors.contains_key(&c.id)) {
        return Ok(out);
    }
    let current = crate::history::current(&*state.store, doc).await?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut whole: Option<String> = None;
    for view in &mut out {
        let Some(a) = anchors.get(&view.id) else {
            continue;
        };
        let mut a = a.clone();
        let now = stoa_actors::doc_text::resolve_anchor(&current, &a.start, &a.end);
        let (text, detached) = match now {
            Some((_, _, text)) if !text.is_empty() => (text, false),
            _ => {
                let whole = whole.get_or_insert_with(|| stoa_actors::doc_text::text_of(&current));
                match moved_to(&current, whole, &a.quote) {
                    Some((start, end)) => {
                        state
                            .store
                            .move_comment_anchor(view.id, &start, &end)
                            .await?;
                        (a.start, a.end) = (start, end);
                        (a.quote.clone(), false)
                    }
                    None => (String::new(), true),
                }
            }
        };
        view.anchor = Some(crate::views::AnchorView {
            start: b64.encode(&a.start),
            end: b64.encode(&a.end),
            quote: a.quote,
            text,
            detached,
        });
    }
    Ok(out)
}

/// A quote shorter than this is not followed when its characters go: a word or two found
/// elsewhere is more likely another use of them than the pinned text moved.
const MIN_MOVED_QUOTE: usize = 8;

/// Where a pinned text whose own characters are gone went, if it was moved (cut and pasted
/// elsewhere): the positions of the one place the text holds its quote now. None when the
/// quote is short, nowhere, or in more than one place (which of them is ambiguous): the
/// comment stays detached.
fn moved_to(current: &yrs::Doc, text: &str, quote: &str) -> Option<(Vec<u8>, Vec<u8>)> {
    if quote.trim().chars().count() < MIN_MOVED_QUOTE {
        return None;
    }
    let mut found = text.match_indices(quote).map(|(i, _)| i);
    let at = found.next()?;
    if found.next().is_some() {
        return None;
    }
    stoa_actors::doc_text::anchor_range(current, at, at + quote.len())
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
    let anchor = match &body.anchor {
        Some(_) if body.parent_id.is_some() => {
            return Err(ApiError::validation(
                "anchor",
                "a reply is pinned where its thread is",
            ))
        }
        Some(input) => {
            // What live editors applied is in the log first.
            let (ws, _) = state.store.document_role(user.id, *id).await?;
            state
                .realtime
                .document_written(*id, ws, std::time::Duration::from_secs(5))
                .await;
            Some(anchor_of(&state, *id, input).await?)
        }
        None => None,
    };
    let (comment, event) = state
        .store
        .create_comment(
            user.id,
            *id,
            body.parent_id,
            &text,
            &mentions,
            anchor.as_ref(),
        )
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
    let view = views(&state, *id, std::slice::from_ref(&comment)).await?;
    Ok(HttpResponse::Created().json(&view[0]))
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
    let items = views(&state, *id, &page.items).await?;
    Ok(HttpResponse::Ok().json(List {
        items,
        next_cursor: page.next.map(crate::views::encode_cursor),
    }))
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
    let view = views(&state, comment.document_id, std::slice::from_ref(&comment)).await?;
    Ok(HttpResponse::Ok().json(&view[0]))
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
    let view = views(&state, comment.document_id, std::slice::from_ref(&comment)).await?;
    Ok(HttpResponse::Ok().json(&view[0]))
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
    state.sweeper.nudge();
    crate::realtime::committed(&state.realtime, &*state.store, &event).await;
    Ok(HttpResponse::NoContent().finish())
}
