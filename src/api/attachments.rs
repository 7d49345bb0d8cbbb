//! Attachments over REST: files uploaded to a document (or one of its comments), listed,
//! downloaded and removed. Members read them; editors and above upload and remove.
//!
//! An upload is the request body itself (any `Content-Type`; the name in `?name=`), streamed
//! into the blob store as it arrives: a 1 GiB file never sits in memory. Its content type
//! is sniffed from its first bytes, never taken from the uploader, and must be on
//! `storage.allowed_types` (415); a file over `storage.max_file_bytes`, or one the
//! workspace's quota cannot take, is 413 (before a byte is read when `Content-Length` says
//! so, else as soon as the count passes the limit).
//!
//! A download is never a page of Stoa's origin: `Content-Disposition: attachment`,
//! `X-Content-Type-Options: nosniff`, and (as on every API response) a
//! `Content-Security-Policy` of `default-src 'none'` with `sandbox`. `Range`
//! (one range) is answered with 206; the ETag is the file's SHA-256.

use actix_web::body::SizedStream;
use actix_web::http::header::{
    self, Charset, ContentDisposition, DispositionParam, DispositionType, ExtendedValue,
};
use actix_web::{delete, get, post, web, HttpRequest, HttpResponse};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, Problem};
use super::extract::{AuthUser, PageQuery};
use super::AppState;
use crate::blobs::{BlobError, Blobs};
use crate::domain::{format_timestamp, Role};
use crate::store::{Attachment, NewAttachment};
use crate::views::List;

/// How much of a file is read before its type is decided.
const SNIFF_BYTES: usize = 8192;
/// The longest file name (bytes).
const MAX_NAME_BYTES: usize = 255;

/// A file on a document or on one of its comments.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttachmentView {
    pub id: i64,
    pub workspace_id: i64,
    pub document_id: i64,
    /// The comment it is on, if it is on one.
    pub comment_id: Option<i64>,
    pub name: String,
    /// Bytes.
    pub size: i64,
    /// Sniffed from the bytes when uploaded.
    pub content_type: String,
    /// Hex SHA-256 of the bytes (also the download's ETag).
    pub sha256: String,
    pub uploaded_by: Option<i64>,
    pub created_at: String,
}

impl From<&Attachment> for AttachmentView {
    fn from(a: &Attachment) -> AttachmentView {
        AttachmentView {
            id: a.id,
            workspace_id: a.workspace_id,
            document_id: a.document_id,
            comment_id: a.comment_id,
            name: a.name.clone(),
            size: a.size,
            content_type: a.content_type.clone(),
            sha256: a.sha256.clone(),
            uploaded_by: a.uploaded_by,
            created_at: format_timestamp(a.created_at),
        }
    }
}

/// What a workspace's files take, and its limits.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttachmentUsage {
    pub files: i64,
    pub bytes: i64,
    pub quota_bytes: u64,
    pub max_file_bytes: u64,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// The file's name (1 to 255 bytes, no `/`, `\` or control characters).
    pub name: String,
    /// Attach it to this comment of the document rather than to the document.
    pub comment_id: Option<i64>,
}

/// The file's name, or why it cannot be one.
fn file_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(ApiError::validation("name", "must be 1 to 255 bytes"));
    }
    if name
        .chars()
        .any(|c| c.is_control() || c == '/' || c == '\\')
        || name == "."
        || name == ".."
    {
        return Err(ApiError::validation(
            "name",
            "must not contain '/', '\\' or control characters",
        ));
    }
    Ok(name.to_string())
}

/// The content type of a file from its first bytes: a known signature's type; text (valid
/// UTF-8, no NUL) without one is `text/plain`; anything else `application/octet-stream`.
pub fn sniff(head: &[u8]) -> &'static str {
    if let Some(kind) = infer::get(head) {
        return kind.mime_type();
    }
    if head.contains(&0) {
        return "application/octet-stream";
    }
    match std::str::from_utf8(head) {
        Ok(_) => "text/plain",
        // Cut inside a character at the end of what was read: still text.
        Err(e) if e.error_len().is_none() => "text/plain",
        Err(_) => "application/octet-stream",
    }
}

fn blob_error(e: BlobError) -> ApiError {
    match e {
        BlobError::Missing => {
            ApiError::NotFound("the file's bytes are missing from the blob store".into())
        }
        BlobError::Store(e) => {
            tracing::error!(error = %e, "blob store");
            ApiError::Unavailable("the blob store is unavailable; retry shortly".into())
        }
    }
}

fn too_large(limit: u64) -> ApiError {
    ApiError::TooLarge {
        code: "file_too_large",
        detail: format!("files may be at most {limit} bytes (storage.max_file_bytes)"),
    }
}

fn quota_exceeded(used: i64, quota: u64, size: u64) -> ApiError {
    ApiError::TooLarge {
        code: "quota_exceeded",
        detail: format!(
            "the workspace's files take {used} of its {quota} bytes; this file ({size} bytes) does not fit"
        ),
    }
}

/// Upload a file to a document (or to one of its comments, with `comment_id`): the body is
/// the file. Its type is sniffed from its bytes. Editors and above. The workspace's feed
/// gets `attachment.added`.
#[utoipa::path(
    tag = "attachments",
    params(("id" = i64, Path, description = "Document id"), UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The file's bytes"),
    responses(
        (status = 201, description = "Stored", body = AttachmentView),
        (status = 403, description = "Viewers cannot attach files", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such document, or not a member", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Over `storage.max_file_bytes` (`file_too_large`) or the workspace's quota (`quota_exceeded`)", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Its sniffed type is not on `storage.allowed_types` (`unsupported_type`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid name, or no such comment on the document", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The blob store is unavailable, or this node receives `storage.max_concurrent_uploads` already (`busy`, with `Retry-After`)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[post("/documents/{id}/attachments")]
pub async fn upload_attachment(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<i64>,
    query: web::Query<UploadQuery>,
    body: web::Payload,
) -> HttpResponse {
    match upload(req, state, user, *id, query.into_inner(), body).await {
        Ok(res) => res,
        // Refused before the body was read to its end: the connection is closed after the
        // answer, so a client still sending is told at once (and holds nothing open).
        Err(e) => {
            let mut res = actix_web::ResponseError::error_response(&e);
            res.head_mut()
                .set_connection_type(actix_web::http::ConnectionType::Close);
            res
        }
    }
}

async fn upload(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: AuthUser,
    doc: i64,
    query: UploadQuery,
    mut body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let name = file_name(&query.name)?;
    let (ws, role) = state.store.document_role(user.id, doc).await?;
    if role < Role::Editor {
        return Err(ApiError::Forbidden("viewers cannot attach files".into()));
    }
    let limits = &state.storage;
    let (used, _) = state.store.attachment_usage(user.id, ws).await?;
    let room = limits
        .workspace_quota_bytes
        .saturating_sub(u64::try_from(used).unwrap_or(0));
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared {
        if len > limits.max_file_bytes {
            return Err(too_large(limits.max_file_bytes));
        }
        if len > room {
            return Err(quota_exceeded(used, limits.workspace_quota_bytes, len));
        }
    }

    let _receiving = Receiving::start(&state)?;
    // The first bytes decide the type before anything is stored.
    let mut head = BytesMut::new();
    let mut ended = false;
    while head.len() < SNIFF_BYTES {
        match body.next().await {
            Some(chunk) => head.extend_from_slice(&chunk.map_err(cut_off)?),
            None => {
                ended = true;
                break;
            }
        }
    }
    let content_type = sniff(&head);
    if !limits.allows(content_type) {
        return Err(ApiError::UnsupportedType(format!(
            "files of type {content_type} (sniffed from its bytes) cannot be attached here; \
             allowed: {}",
            limits.allowed_types.join(", ")
        )));
    }

    let key = Blobs::new_key(ws);
    let grace = i64::try_from(limits.upload_grace_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    state
        .store
        .reserve_blob(&key, crate::domain::now_ms().saturating_add(grace))
        .await?;
    let stored = store_body(&state, &key, head.freeze(), ended, &mut body, room, used).await;
    let (size, sha256) = match stored {
        Ok(done) => done,
        Err(e) => {
            give_up(&state, &key).await;
            return Err(e);
        }
    };
    let new = NewAttachment {
        document_id: doc,
        comment_id: query.comment_id,
        name,
        size: i64::try_from(size).unwrap_or(i64::MAX),
        content_type: content_type.to_string(),
        sha256,
        blob_key: key.clone(),
    };
    let quota = i64::try_from(limits.workspace_quota_bytes).unwrap_or(i64::MAX);
    let (attachment, event) = match state.store.add_attachment(user.id, &new, quota).await {
        Ok(done) => done,
        Err(e) => {
            give_up(&state, &key).await;
            return Err(e.into());
        }
    };
    state
        .metrics
        .attachment_bytes
        .with_label_values(&["in"])
        .inc_by(size);
    crate::realtime::committed(&state.realtime, &*state.store, &event).await;
    Ok(HttpResponse::Created()
        .insert_header((
            header::LOCATION,
            format!("/api/v1/attachments/{}", attachment.id),
        ))
        .json(AttachmentView::from(&attachment)))
}

/// One of the node's `storage.max_concurrent_uploads`, held while an upload is received.
struct Receiving {
    _permit: tokio::sync::OwnedSemaphorePermit,
    gauge: prometheus::IntGauge,
}

impl Receiving {
    /// A permit, or 503 when every one is taken.
    fn start(state: &AppState) -> Result<Receiving, ApiError> {
        let permit = state
            .uploads
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::Busy {
                retry_after_secs: 1,
            })?;
        let gauge = state.metrics.attachment_uploads.clone();
        gauge.inc();
        Ok(Receiving {
            _permit: permit,
            gauge,
        })
    }
}

impl Drop for Receiving {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// The client stopped sending, or sent something actix could not read.
fn cut_off(e: actix_web::error::PayloadError) -> ApiError {
    ApiError::bad_request("upload_incomplete", format!("the upload was cut off: {e}"))
}

/// Streams `head` and the rest of `body` into a new blob under `key`; its size and SHA-256.
/// At most `max_file_bytes`, and at most `room` (what the quota leaves).
async fn store_body(
    state: &AppState,
    key: &str,
    head: Bytes,
    ended: bool,
    body: &mut web::Payload,
    room: u64,
    used: i64,
) -> Result<(u64, String), ApiError> {
    let limits = &state.storage;
    let mut writer = state.blobs.writer(key).await.map_err(blob_error)?;
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    let mut next = Some(head);
    let mut ended = ended;
    loop {
        let chunk = match next.take() {
            Some(chunk) => chunk,
            None if ended => break,
            None => match body.next().await {
                Some(Ok(chunk)) => chunk,
                Some(Err(e)) => {
                    writer.abort().await;
                    return Err(cut_off(e));
                }
                None => {
                    ended = true;
                    continue;
                }
            },
        };
        size += chunk.len() as u64;
        if size > limits.max_file_bytes || size > room {
            writer.abort().await;
            return Err(if size > limits.max_file_bytes {
                too_large(limits.max_file_bytes)
            } else {
                quota_exceeded(used, limits.workspace_quota_bytes, size)
            });
        }
        hasher.update(&chunk);
        if let Err(e) = writer.write(chunk).await {
            writer.abort().await;
            return Err(blob_error(e));
        }
    }
    writer.finish().await.map_err(blob_error)?;
    let sha256 = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((size, sha256))
}

/// An upload that will not be recorded: its blob is removed now (or, if the store or the
/// database is away, by a later sweep: the reservation stays).
async fn give_up(state: &AppState, key: &str) {
    match state.store.release_blob(key).await {
        Ok(()) => state.sweeper.nudge(),
        Err(e) => tracing::warn!(key, error = %e, "an abandoned upload is left to the sweep"),
    }
}

/// The document's attachments (its comments' included), oldest first.
#[utoipa::path(
    tag = "attachments",
    params(("id" = i64, Path, description = "Document id"), PageQuery),
    responses(
        (status = 200, description = "A page of attachments", body = List<AttachmentView>),
        (status = 404, description = "No such document, or not a member", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/documents/{id}/attachments")]
pub async fn list_attachments(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<i64>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = query.to_request()?;
    let page = state.store.attachments(user.id, *id, page).await?;
    Ok(HttpResponse::Ok().json(List::from_page(page, |a| AttachmentView::from(a))))
}

/// One attachment's metadata.
#[utoipa::path(
    tag = "attachments",
    params(("id" = i64, Path, description = "Attachment id")),
    responses(
        (status = 200, description = "The attachment", body = AttachmentView),
        (status = 404, description = "No such attachment, or not a member", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/attachments/{id}")]
pub async fn get_attachment(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let a = state.store.attachment(user.id, *id).await?;
    Ok(HttpResponse::Ok().json(AttachmentView::from(&a)))
}

/// The one range a `Range` header asks of a file of `size` bytes: `Ok(None)` for the whole
/// file (no header, several ranges, or one that is not `bytes=`: RFC 9110 lets a server
/// ignore those); an error when it starts past the end.
pub fn requested_range(
    value: Option<&str>,
    size: u64,
) -> Result<Option<std::ops::Range<u64>>, ApiError> {
    let Some(spec) = value.and_then(|v| v.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let (first, last) = (first.trim(), last.trim());
    let range = if first.is_empty() {
        // The last `n` bytes.
        let Ok(n) = last.parse::<u64>() else {
            return Ok(None);
        };
        if n == 0 || size == 0 {
            return Err(ApiError::RangeNotSatisfiable { size });
        }
        size.saturating_sub(n)..size
    } else {
        let Ok(start) = first.parse::<u64>() else {
            return Ok(None);
        };
        let end = if last.is_empty() {
            size
        } else {
            match last.parse::<u64>() {
                Ok(l) if l >= start => l.saturating_add(1).min(size),
                _ => return Ok(None),
            }
        };
        if start >= size {
            return Err(ApiError::RangeNotSatisfiable { size });
        }
        start..end
    };
    Ok(Some(range))
}

/// `Content-Disposition: attachment` with the name as ASCII (others replaced) and as UTF-8.
fn disposition(name: &str) -> ContentDisposition {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() && c != '"' && c != '\\' {
                c
            } else {
                '_'
            }
        })
        .collect();
    ContentDisposition {
        disposition: DispositionType::Attachment,
        parameters: vec![
            DispositionParam::Filename(ascii),
            DispositionParam::FilenameExt(ExtendedValue {
                charset: Charset::Ext("UTF-8".into()),
                language_tag: None,
                value: name.as_bytes().to_vec(),
            }),
        ],
    }
}

/// Download an attachment: its bytes, as an attachment (never rendered as a page), with
/// `Range` (one range, 206) and `If-None-Match` (the ETag is its SHA-256).
#[utoipa::path(
    tag = "attachments",
    params(
        ("id" = i64, Path, description = "Attachment id"),
        ("Range" = Option<String>, Header, description = "`bytes=first-last`, `bytes=first-` or `bytes=-suffix`"),
    ),
    responses(
        (status = 200, description = "The file, as its type sniffed at upload", body = Vec<u8>, content_type = "*/*"),
        (status = 206, description = "The range asked for", body = Vec<u8>, content_type = "*/*"),
        (status = 304, description = "`If-None-Match` names its ETag"),
        (status = 404, description = "No such attachment, or not a member", body = Problem, content_type = "application/problem+json"),
        (status = 416, description = "The range starts past the end (`Content-Range: bytes */size`)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The blob store is unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/attachments/{id}/content")]
pub async fn download_attachment(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let a = state.store.attachment(user.id, *id).await?;
    let size = u64::try_from(a.size).unwrap_or(0);
    let etag = format!("\"{}\"", a.sha256);
    let headers = req.headers();
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &header::HeaderValue| v.to_str().ok())
    };
    if text(header::IF_NONE_MATCH)
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    {
        return Ok(HttpResponse::NotModified()
            .insert_header((header::ETAG, etag))
            .finish());
    }
    // `If-Range` with another ETag: the file changed since the part the client has.
    let range = match text(header::IF_RANGE) {
        Some(tag) if tag.trim() != etag => None,
        _ => requested_range(text(header::RANGE), size)?,
    };
    let (status, range) = match range {
        Some(r) if !(r.start == 0 && r.end == size) => {
            (actix_web::http::StatusCode::PARTIAL_CONTENT, Some(r))
        }
        _ => (actix_web::http::StatusCode::OK, None),
    };
    let length = range.as_ref().map_or(size, |r| r.end - r.start);
    let stream = if size == 0 {
        futures_util::stream::empty().boxed()
    } else {
        state
            .blobs
            .read(&a.blob_key, range.clone())
            .await
            .map_err(blob_error)?
    };
    let served = state.metrics.attachment_bytes.with_label_values(&["out"]);
    let stream = stream.inspect(move |chunk| {
        if let Ok(chunk) = chunk {
            served.inc_by(chunk.len() as u64);
        }
    });
    let mut res = HttpResponse::build(status);
    res.insert_header((header::CONTENT_TYPE, a.content_type.as_str()))
        .insert_header(disposition(&a.name))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header(("Cross-Origin-Resource-Policy", "same-origin"))
        .insert_header((header::CACHE_CONTROL, "private, no-cache"))
        .insert_header((header::ACCEPT_RANGES, "bytes"))
        .insert_header((header::ETAG, etag));
    if let Some(r) = &range {
        res.insert_header((
            header::CONTENT_RANGE,
            format!("bytes {}-{}/{size}", r.start, r.end - 1),
        ));
    }
    Ok(res.body(SizedStream::new(length, stream)))
}

/// Remove an attachment (editors and above): `attachment.removed` in the feed; its bytes
/// are removed from the blob store after the commit.
#[utoipa::path(
    tag = "attachments",
    params(("id" = i64, Path, description = "Attachment id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 403, description = "Viewers cannot remove files", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such attachment, or not a member", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[delete("/attachments/{id}")]
pub async fn delete_attachment(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let (_, event) = state.store.delete_attachment(user.id, *id).await?;
    state.sweeper.nudge();
    crate::realtime::committed(&state.realtime, &*state.store, &event).await;
    Ok(HttpResponse::NoContent().finish())
}

/// What the workspace's files take, and its limits (members).
#[utoipa::path(
    tag = "attachments",
    params(("id" = i64, Path, description = "Workspace id")),
    responses(
        (status = 200, description = "Usage and limits", body = AttachmentUsage),
        (status = 404, description = "No such workspace, or not a member", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/workspaces/{id}/attachments/usage")]
pub async fn attachment_usage(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let (bytes, files) = state.store.attachment_usage(user.id, *id).await?;
    Ok(HttpResponse::Ok().json(AttachmentUsage {
        files,
        bytes,
        quota_bytes: state.storage.workspace_quota_bytes,
        max_file_bytes: state.storage.max_file_bytes,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_read_as_rfc_9110_says() {
        let r = |v: &str, size| requested_range(Some(v), size).map_err(|e| e.code());
        assert_eq!(r("bytes=0-9", 100), Ok(Some(0..10)));
        assert_eq!(r("bytes=90-", 100), Ok(Some(90..100)));
        assert_eq!(r("bytes=-10", 100), Ok(Some(90..100)));
        assert_eq!(r("bytes=-500", 100), Ok(Some(0..100)));
        assert_eq!(r("bytes=50-500", 100), Ok(Some(50..100)));
        assert_eq!(r("bytes=100-", 100), Err("range_not_satisfiable"));
        assert_eq!(r("bytes=-0", 100), Err("range_not_satisfiable"));
        // Ignored (the whole file): several ranges, other units, nonsense, last < first.
        assert_eq!(r("bytes=0-1,5-6", 100), Ok(None));
        assert_eq!(r("items=0-1", 100), Ok(None));
        assert_eq!(r("bytes=x-y", 100), Ok(None));
        assert_eq!(r("bytes=9-3", 100), Ok(None));
        assert_eq!(requested_range(None, 100).map_err(|e| e.code()), Ok(None));
    }

    #[test]
    fn types_are_sniffed_from_bytes_not_names() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), "image/png");
        assert_eq!(sniff(b"%PDF-1.7\n"), "application/pdf");
        assert_eq!(sniff("plain text, ünïcode".as_bytes()), "text/plain");
        // A character cut at the end of the sniffed prefix is still text.
        assert_eq!(sniff(&"é".as_bytes()[..1]), "text/plain");
        assert_eq!(sniff(b"\0\0\0\x01\xff\xfe"), "application/octet-stream");
        assert_eq!(
            sniff(b"MZ\x90\0"),
            "application/vnd.microsoft.portable-executable"
        );
    }

    #[test]
    fn names_with_paths_or_controls_are_refused() {
        assert!(file_name("report.pdf").is_ok());
        assert!(file_name("Überblick 2026.pdf").is_ok());
        for bad in [
            "",
            "  ",
            "../etc/passwd",
            "a\\b",
            "a\nb",
            "..",
            &"x".repeat(256),
        ] {
            assert!(file_name(bad).is_err(), "{bad:?}");
        }
    }
}
