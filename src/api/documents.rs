//! `/api/v1/workspaces/{id}/documents` and `/api/v1/documents/{id}`, with optimistic
//! concurrency: reads carry `ETag: "<version>"`, writes may send `If-Match` and get 412 when
//! the document changed in between.

use actix_web::http::header;
use actix_web::{delete, get, patch, post, web, HttpRequest, HttpResponse};
use serde::Deserialize;
use utoipa::ToSchema;

use super::error::{ApiError, Problem};
use super::extract::{checked, ApiJson, AuthUser, PageQuery, Validation};
use super::AppState;
use crate::domain::DocumentTitle;
use crate::store::{Document, DocumentPatch};
use crate::views::{DocumentView, List};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDocument {
    pub title: String,
    /// Initial plain-text content (empty when left out).
    pub content: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateDocument {
    pub title: Option<String>,
    /// Replaces the whole plain-text content.
    pub content: Option<String>,
}

fn etag(version: i64) -> String {
    format!("\"{version}\"")
}

fn with_etag(mut res: actix_web::HttpResponseBuilder, doc: &Document) -> HttpResponse {
    res.insert_header((header::ETAG, etag(doc.version)))
        .json(DocumentView::from(doc))
}

/// Content is any text but NUL, which PostgreSQL cannot store.
fn check_content(v: &mut Validation, content: Option<&str>, max_bytes: usize) {
    if content.is_some_and(|c| c.contains('\0')) {
        v.fail("content", "content must not contain NUL characters");
    }
    // The limit live editing has (realtime.max_document_bytes): a document REST can write
    // is one its editors can load.
    if content.is_some_and(|c| c.len() > max_bytes) {
        v.fail(
            "content",
            &format!("content must be at most {max_bytes} bytes (realtime.max_document_bytes)"),
        );
    }
}

/// The pattern an `If-Match` value must have: `*`, an ETag such as `"3"` (weak or not), or
/// nothing (the same as no header).
pub const IF_MATCH_PATTERN: &str = "^(\\*|(W/)?\"[0-9]{1,18}\")?$";

/// The version named by `If-Match`, if any (`*` matches every version).
fn if_match(req: &HttpRequest) -> Result<Option<i64>, ApiError> {
    // An empty header is the same as none.
    let Some(value) = req
        .headers()
        .get(header::IF_MATCH)
        .filter(|v| !v.is_empty())
    else {
        return Ok(None);
    };
    let invalid = || {
        ApiError::bad_request(
            "invalid_if_match",
            "If-Match must be * or the document's ETag, e.g. \"3\"",
        )
    };
    let text = value.to_str().map_err(|_| invalid())?;
    if text == "*" {
        return Ok(None);
    }
    let quoted = text.strip_prefix("W/").unwrap_or(text);
    let digits = quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .filter(|d| (1..=18).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(invalid)?;
    digits.parse().map(Some).map_err(|_| invalid())
}

/// Create a document (editors and above).
#[utoipa::path(
    tag = "documents",
    params(("id" = i64, Path, description = "Workspace id")),
    request_body = CreateDocument,
    responses(
        (status = 201, description = "Created", body = DocumentView, headers(("ETag" = String, description = "The version"))),
        (status = 403, description = "Viewers cannot create documents", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such workspace, or not a member", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[post("/workspaces/{id}/documents")]
pub async fn create_document(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<i64>,
    ApiJson(body): ApiJson<CreateDocument>,
) -> Result<HttpResponse, ApiError> {
    let mut v = Validation::default();
    let title = v.check("title", DocumentTitle::parse(&body.title));
    check_content(
        &mut v,
        body.content.as_deref(),
        state.realtime.limits().max_document_bytes,
    );
    v.finish()?;
    let title = checked(title)?;
    let content = body.content.unwrap_or_default();
    let (doc, event) = state
        .store
        .create_document(user.id, *id, &title, &content)
        .await?;
    crate::realtime::committed(&state.realtime, &*state.store, &event).await;
    if !content.is_empty() {
        // Its first version, from the log the document starts (the document's actor puts
        // the text there as its first update).
        let of = crate::history::VersionOf {
            kind: "write",
            name: None,
            authors: vec![user.id],
            created_by: Some(user.id),
            restored_from: None,
            through: None,
        };
        if let Err(e) = super::versions::version_now(&state, doc.id, doc.workspace_id, of).await {
            tracing::warn!(document = doc.id, error = ?e, "cannot make the document's first version");
        }
    }
    Ok(with_etag(HttpResponse::Created(), &doc))
}

/// The documents of a workspace (without content), oldest first.
#[utoipa::path(
    tag = "documents",
    params(("id" = i64, Path, description = "Workspace id"), PageQuery),
    responses(
        (status = 200, description = "A page of documents", body = List<DocumentView>),
        (status = 404, description = "No such workspace, or not a member", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/workspaces/{id}/documents")]
pub async fn list_documents(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<i64>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = state
        .store
        .documents(user.id, *id, query.to_request()?)
        .await?;
    Ok(HttpResponse::Ok().json(List::from_page(page, |d| DocumentView::from(d))))
}

/// One document with its content.
#[utoipa::path(
    tag = "documents",
    params(("id" = i64, Path, description = "Document id")),
    responses(
        (status = 200, description = "The document", body = DocumentView, headers(("ETag" = String, description = "The version"))),
        (status = 404, description = "No such document, or not a member of its workspace", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/documents/{id}")]
pub async fn get_document(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let (doc, _role) = state.store.document(user.id, *id).await?;
    Ok(with_etag(HttpResponse::Ok(), &doc))
}

/// Change a document's title or content (editors and above).
#[utoipa::path(
    tag = "documents",
    params(
        ("id" = i64, Path, description = "Document id"),
        ("If-Match" = Option<String>, Header, description = "The ETag the change is based on"),
    ),
    request_body = UpdateDocument,
    responses(
        (status = 200, description = "Updated", body = DocumentView, headers(("ETag" = String, description = "The new version"))),
        (status = 403, description = "Viewers cannot edit", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such document, or not a member", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "The document changed since that version (`version_mismatch`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[patch("/documents/{id}")]
pub async fn update_document(
    state: web::Data<AppState>,
    user: AuthUser,
    req: HttpRequest,
    id: web::Path<i64>,
    ApiJson(body): ApiJson<UpdateDocument>,
) -> Result<HttpResponse, ApiError> {
    let expected = if_match(&req)?;
    let mut v = Validation::default();
    let title = body
        .title
        .as_deref()
        .map(|t| v.check("title", DocumentTitle::parse(t)));
    check_content(
        &mut v,
        body.content.as_deref(),
        state.realtime.limits().max_document_bytes,
    );
    if body.title.is_none() && body.content.is_none() {
        v.fail("body", "give at least one of title, content");
    }
    v.finish()?;
    let patch = DocumentPatch {
        title: title.map(checked).transpose()?,
        content: body.content,
        restored_from: None,
    };
    let (doc, event) = state
        .store
        .update_document(user.id, *id, &patch, expected)
        .await?;
    crate::realtime::committed(&state.realtime, &*state.store, &event).await;
    if let Some(content) = patch.content {
        // Live editors receive the new text as a Yjs change.
        state
            .realtime
            .document_text_written(doc.id, doc.workspace_id, content, doc.version);
        // A version of the document with the write in it.
        let of = crate::history::VersionOf {
            kind: "write",
            name: None,
            authors: vec![user.id],
            created_by: Some(user.id),
            restored_from: None,
            through: None,
        };
        if let Err(e) = super::versions::version_now(&state, doc.id, doc.workspace_id, of).await {
            tracing::warn!(document = doc.id, error = ?e, "cannot make the version of a REST write");
        }
    }
    Ok(with_etag(HttpResponse::Ok(), &doc))
}

/// Delete a document and its comments (editors and above).
#[utoipa::path(
    tag = "documents",
    params(
        ("id" = i64, Path, description = "Document id"),
        ("If-Match" = Option<String>, Header, description = "Delete only if still at this ETag"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Viewers cannot delete", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such document, or not a member", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "The document changed (`version_mismatch`)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[delete("/documents/{id}")]
pub async fn delete_document(
    state: web::Data<AppState>,
    user: AuthUser,
    req: HttpRequest,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let expected = if_match(&req)?;
    let event = state.store.delete_document(user.id, *id, expected).await?;
    crate::realtime::committed(&state.realtime, &*state.store, &event).await;
    state.realtime.close_document(*id, "document_deleted");
    // Its attachments' blobs were queued by the commit.
    state.sweeper.nudge();
    Ok(HttpResponse::NoContent().finish())
}
