//! Document history over REST: versions listed, read (text, or Yjs state), compared,
//! saved by name and restored. Members read them; editors and above save and restore.

use std::time::Duration;

use actix_web::http::header;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, Problem};
use super::extract::{checked, ApiJson, AuthUser, PageQuery, Validation};
use super::AppState;
use crate::domain::{format_timestamp, Role, VersionName};
use crate::history::{self, Hunk, VersionOf};
use crate::store::{DocumentPatch, StoreError, VersionMeta};
use crate::views::{DocumentView, List};

/// How long a write waits for the document's actor to have put it into the log before its
/// version is made from the log.
const FLUSH_LIMIT: Duration = Duration::from_secs(5);

/// A version of a document.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionView {
    pub id: i64,
    pub document_id: i64,
    /// `auto` (an editing window), `write` (a REST write of the content), `restore` or
    /// `named`.
    pub kind: String,
    pub name: Option<String>,
    /// Whose edits it holds since the version before it.
    pub authors: Vec<i64>,
    /// Who saved or restored it (named and restore versions, REST writes).
    pub created_by: Option<i64>,
    pub created_at: String,
    /// Characters of its text.
    pub size: i64,
    /// Characters added and removed since the version before it.
    pub added: i64,
    pub removed: i64,
    /// The version a restore turned the document back into.
    pub restored_from: Option<i64>,
}

impl From<&VersionMeta> for VersionView {
    fn from(v: &VersionMeta) -> VersionView {
        VersionView {
            id: v.id,
            document_id: v.document_id,
            kind: v.kind.clone(),
            name: v.name.clone(),
            authors: v.authors.clone(),
            created_by: v.created_by,
            created_at: format_timestamp(v.created_at),
            size: v.size,
            added: v.added,
            removed: v.removed,
            restored_from: v.restored_from,
        }
    }
}

/// A version and its text.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionText {
    #[serde(flatten)]
    pub version: VersionView,
    /// The document's text at this version (one line per block for a fragment document).
    pub text: String,
}

/// The difference between two texts of a document.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionDiff {
    /// The version the text goes to.
    pub version: i64,
    /// The version it comes from, or `current`.
    pub against: String,
    /// By characters, or for a fragment document by blocks (lines), each changed block by
    /// characters.
    pub blocks: bool,
    /// Applied in order to the text of `against`, they give the text of `version`.
    pub hunks: Vec<Hunk>,
    pub added: i64,
    pub removed: i64,
}

/// What a restore did.
#[derive(Debug, Serialize, ToSchema)]
pub struct Restored {
    pub document: DocumentView,
    /// The version the restore made.
    pub version: VersionView,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateVersion {
    /// 1 to 100 characters.
    pub name: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DiffQuery {
    /// A version id of the same document, or `current` (the default).
    #[param(pattern = "^(current|[0-9]{1,18})$")]
    pub against: Option<String>,
}

/// The caller's role in the document's workspace (404 for a non-member, as for documents).
async fn role(state: &AppState, user: i64, doc: i64) -> Result<(i64, Role), ApiError> {
    Ok(state.store.document_role(user, doc).await?)
}

fn editor(role: Role) -> Result<(), ApiError> {
    if role >= Role::Editor {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "viewers cannot save or restore versions".into(),
        ))
    }
}

fn no_version() -> ApiError {
    ApiError::NotFound("version not found".into())
}

/// Makes a version of the document as its log holds it once this node's actor has written
/// what it applied (a REST write handed to it, live edits).
pub(super) async fn version_now(
    state: &AppState,
    doc: i64,
    workspace: i64,
    of: VersionOf,
) -> Result<VersionMeta, ApiError> {
    state
        .realtime
        .document_written(doc, workspace, FLUSH_LIMIT)
        .await;
    let (updates, last) = state.store.document_updates(doc, 0).await?;
    let of = VersionOf {
        through: Some(last),
        ..of
    };
    let (meta, event) = history::make_version(&*state.store, doc, updates, of).await?;
    if let Some(event) = event {
        crate::realtime::committed(&state.realtime, &*state.store, &event).await;
    }
    Ok(meta)
}

/// The document's versions, newest first.
#[utoipa::path(
    tag = "documents",
    params(("id" = i64, Path, description = "Document id"), PageQuery),
    responses(
        (status = 200, description = "A page of versions", body = List<VersionView>),
        (status = 404, description = "No such document, or not a member", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/documents/{id}/versions")]
pub async fn list_versions(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<i64>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = query.to_request()?;
    role(&state, user.id, *id).await?;
    let page = state.store.versions(*id, page).await?;
    Ok(HttpResponse::Ok().json(List::from_page(page, |v| VersionView::from(v))))
}

/// Save the document as it is now as a named version (editors and above). Named versions
/// are never thinned away, and are announced in the feed (`document.versioned`).
#[utoipa::path(
    tag = "documents",
    params(("id" = i64, Path, description = "Document id")),
    request_body = CreateVersion,
    responses(
        (status = 201, description = "Saved", body = VersionView),
        (status = 403, description = "Viewers cannot save versions", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such document, or not a member", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid name", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[post("/documents/{id}/versions")]
pub async fn create_version(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<i64>,
    ApiJson(body): ApiJson<CreateVersion>,
) -> Result<HttpResponse, ApiError> {
    let mut v = Validation::default();
    let name = v.check("name", VersionName::parse(&body.name));
    v.finish()?;
    let name = checked(name)?;
    let (ws, role) = role(&state, user.id, *id).await?;
    editor(role)?;
    let meta = version_now(
        &state,
        *id,
        ws,
        VersionOf {
            kind: "named",
            name: Some(name.into_inner()),
            authors: Vec::new(),
            created_by: Some(user.id),
            restored_from: None,
            through: None,
        },
    )
    .await?;
    Ok(HttpResponse::Created().json(VersionView::from(&meta)))
}

/// One version and its text; with `Accept: application/octet-stream`, its Yjs state as
/// one update (what `Y.applyUpdate` loads into an empty document).
#[utoipa::path(
    tag = "documents",
    params(
        ("id" = i64, Path, description = "Document id"),
        ("v" = i64, Path, description = "Version id"),
    ),
    responses(
        (status = 200, description = "The version and its text, or its Yjs state", body = VersionText, content(
            (VersionText = "application/json"),
            (Vec<u8> = "application/octet-stream"),
        )),
        (status = 404, description = "No such document or version, or not a member", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/documents/{id}/versions/{v}")]
pub async fn get_version(
    state: web::Data<AppState>,
    user: AuthUser,
    req: HttpRequest,
    path: web::Path<(i64, i64)>,
) -> Result<HttpResponse, ApiError> {
    let (doc, v) = path.into_inner();
    role(&state, user.id, doc).await?;
    let binary = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("application/octet-stream"));
    if !binary {
        // The newest version keeps its text: no state to rebuild.
        if let Some((meta, Some(z))) = state.store.version(doc, v).await? {
            if let Some(text) = history::inflate_text(&z) {
                return Ok(HttpResponse::Ok().json(VersionText {
                    version: VersionView::from(&meta),
                    text,
                }));
            }
        }
    }
    let version = history::read_version(&*state.store, doc, v)
        .await?
        .ok_or_else(no_version)?;
    if binary {
        return Ok(HttpResponse::Ok()
            .content_type("application/octet-stream")
            .body(version.state()));
    }
    Ok(HttpResponse::Ok().json(VersionText {
        version: VersionView::from(&version.meta),
        text: version.text(),
    }))
}

/// What changed from another version (`against`, or the document as it is now) to this
/// one: hunks of kept, deleted and inserted text.
#[utoipa::path(
    tag = "documents",
    params(
        ("id" = i64, Path, description = "Document id"),
        ("v" = i64, Path, description = "Version id"),
        DiffQuery,
    ),
    responses(
        (status = 200, description = "The difference", body = VersionDiff),
        (status = 404, description = "No such document or version, or not a member", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/documents/{id}/versions/{v}/diff")]
pub async fn diff_version(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<(i64, i64)>,
    query: web::Query<DiffQuery>,
) -> Result<HttpResponse, ApiError> {
    let (doc, v) = path.into_inner();
    let against = query.against.as_deref().unwrap_or("current");
    let other: Option<i64> = match against {
        "current" => None,
        n => Some(
            n.parse()
                .map_err(|_| ApiError::validation("against", "a version id, or current"))?,
        ),
    };
    role(&state, user.id, doc).await?;
    let version = history::read_version(&*state.store, doc, v)
        .await?
        .ok_or_else(no_version)?;
    let (from, from_blocks) = match other {
        Some(w) => {
            let w = history::read_version(&*state.store, doc, w)
                .await?
                .ok_or_else(no_version)?;
            (w.text(), w.is_fragment())
        }
        None => {
            let now = history::current(&*state.store, doc).await?;
            (
                stoa_actors::doc_text::text_of(&now),
                stoa_actors::doc_text::is_fragment(&now),
            )
        }
    };
    let to = version.text();
    let blocks = from_blocks || version.is_fragment();
    let (hunks, counts) = web::block(move || history::diff(&from, &to, blocks))
        .await
        .map_err(|_| ApiError::Internal)?;
    Ok(HttpResponse::Ok().json(VersionDiff {
        version: v,
        against: against.to_string(),
        blocks,
        hunks,
        added: counts.added,
        removed: counts.removed,
    }))
}

/// Turn the document back into this version, as a new change (editors and above): live
/// editors receive it like any edit (a text document by the smallest change; a fragment
/// document by whole blocks, as a REST write), nothing of the history is lost, a
/// `document.restored` event is written and a `restore` version made.
#[utoipa::path(
    tag = "documents",
    params(
        ("id" = i64, Path, description = "Document id"),
        ("v" = i64, Path, description = "Version id"),
    ),
    responses(
        (status = 200, description = "Restored", body = Restored),
        (status = 403, description = "Viewers cannot restore", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such document or version, or not a member", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[post("/documents/{id}/versions/{v}/restore")]
pub async fn restore_version(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<(i64, i64)>,
) -> Result<HttpResponse, ApiError> {
    let (doc, v) = path.into_inner();
    let (ws, role) = role(&state, user.id, doc).await?;
    editor(role)?;
    let version = history::read_version(&*state.store, doc, v)
        .await?
        .ok_or_else(no_version)?;
    let text = version.text();
    let patch = DocumentPatch {
        title: None,
        content: Some(text.clone()),
        restored_from: Some(v),
    };
    let (document, event) = state
        .store
        .update_document(user.id, doc, &patch, None)
        .await
        .map_err(|e| match e {
            StoreError::NotFound(_) => no_version(),
            other => other.into(),
        })?;
    crate::realtime::committed(&state.realtime, &*state.store, &event).await;
    state
        .realtime
        .document_text_written(doc, ws, text, document.version);
    let made = version_now(
        &state,
        doc,
        ws,
        VersionOf {
            kind: "restore",
            name: None,
            authors: vec![user.id],
            created_by: Some(user.id),
            restored_from: Some(v),
            through: None,
        },
    )
    .await?;
    Ok(HttpResponse::Ok().json(Restored {
        document: DocumentView::from(&document),
        version: VersionView::from(&made),
    }))
}
