//! The one place API errors become responses: `application/problem+json` (RFC 9457) with a
//! stable machine-readable `code`. Handlers return [`ApiError`]; extractor failures, unknown
//! routes and oversized bodies are mapped to it too, so every error looks the same.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::FieldError;
use crate::store::StoreError;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// An error response body.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem (`urn:stoa:problem:<code>`).
    #[serde(rename = "type")]
    pub kind: String,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    /// Stable machine-readable code, e.g. `validation_failed`, `not_found`, `version_mismatch`.
    pub code: &'static str,
    /// The fields that failed validation, when `code` is `validation_failed`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// The document's current version, when `code` is `version_mismatch`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_version: Option<i64>,
    /// The single sign-on provider to sign in through (`/api/v1/auth/oidc/<provider>/start`),
    /// when `code` is `sso_required`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the request has invalid fields")]
    Validation(Vec<FieldError>),
    #[error("{detail}")]
    BadRequest { code: &'static str, detail: String },
    #[error("{detail}")]
    Unauthorized { code: &'static str, detail: String },
    #[error("{0}")]
    Forbidden(String),
    /// A workspace the user belongs to requires single sign-on through `provider` for their
    /// address's domain, and this login did not come from it.
    #[error("a workspace you belong to requires signing in with {display} for your address; sign in with {display}")]
    SsoRequired { provider: String, display: String },
    /// An API token whose scopes or workspace do not cover the request.
    #[error("{0}")]
    InsufficientScope(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{method} is not allowed here; allowed: {allow}")]
    MethodNotAllowed { method: String, allow: String },
    #[error("{detail}")]
    Conflict { code: &'static str, detail: String },
    #[error("the document has changed: it is at version {current}")]
    PreconditionFailed { current: i64 },
    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the request body must be JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    /// Over a limit other than the JSON body's (`file_too_large`, `quota_exceeded`).
    #[error("{detail}")]
    TooLarge { code: &'static str, detail: String },
    /// A file whose sniffed content type is not on `storage.allowed_types`.
    #[error("{0}")]
    UnsupportedType(String),
    /// A `Range` that starts past the end of a file of `size` bytes.
    #[error("the range starts past the end of the file ({size} bytes)")]
    RangeNotSatisfiable { size: u64 },
    #[error("too many attempts; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("this account already has {limit} open sockets on this server; close one first")]
    TooManySockets { limit: u32 },
    #[error("{0}")]
    Unavailable(String),
    #[error("the server is busy; retry in {retry_after_secs} s")]
    Busy { retry_after_secs: u64 },
    #[error("internal error")]
    Internal,
}

impl ApiError {
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::Validation(vec![FieldError::new(field, message)])
    }

    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError::BadRequest {
            code,
            detail: detail.into(),
        }
    }

    pub fn unauthorized(code: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError::Unauthorized {
            code,
            detail: detail.into(),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Validation(_) => "validation_failed",
            ApiError::BadRequest { code, .. }
            | ApiError::Unauthorized { code, .. }
            | ApiError::Conflict { code, .. }
            | ApiError::TooLarge { code, .. } => code,
            ApiError::UnsupportedType(_) => "unsupported_type",
            ApiError::RangeNotSatisfiable { .. } => "range_not_satisfiable",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::SsoRequired { .. } => "sso_required",
            ApiError::InsufficientScope(_) => "insufficient_scope",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::PreconditionFailed { .. } => "version_mismatch",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::TooManySockets { .. } => "too_many_sockets",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Busy { .. } => "busy",
            ApiError::Internal => "internal_error",
        }
    }

    fn title(&self) -> &'static str {
        self.status_code().canonical_reason().unwrap_or("Error")
    }

    pub fn problem(&self) -> Problem {
        let (errors, current_version) = match self {
            ApiError::Validation(errors) => (errors.clone(), None),
            ApiError::PreconditionFailed { current } => (Vec::new(), Some(*current)),
            _ => (Vec::new(), None),
        };
        let detail = match self {
            ApiError::Validation(errors) => errors
                .iter()
                .map(|e| format!("{}: {}", e.field, e.message))
                .collect::<Vec<_>>()
                .join("; "),
            other => other.to_string(),
        };
        Problem {
            kind: format!("urn:stoa:problem:{}", self.code()),
            title: self.title(),
            status: self.status_code().as_u16(),
            detail,
            code: self.code(),
            errors,
            current_version,
            provider: match self {
                ApiError::SsoRequired { provider, .. } => Some(provider.clone()),
                _ => None,
            },
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_)
            | ApiError::InsufficientScope(_)
            | ApiError::SsoRequired { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::PreconditionFailed { .. } => StatusCode::PRECONDITION_FAILED,
            ApiError::PayloadTooLarge { .. } | ApiError::TooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ApiError::UnsupportedMediaType | ApiError::UnsupportedType(_) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            ApiError::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            ApiError::RateLimited { .. } | ApiError::TooManySockets { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::Unavailable(_) | ApiError::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        res.insert_header((header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON)));
        match self {
            ApiError::RateLimited { retry_after_secs } | ApiError::Busy { retry_after_secs } => {
                res.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
            }
            ApiError::MethodNotAllowed { allow, .. } => {
                res.insert_header((header::ALLOW, allow.as_str()));
            }
            ApiError::RangeNotSatisfiable { size } => {
                res.insert_header((header::CONTENT_RANGE, format!("bytes */{size}")));
            }
            ApiError::Unauthorized { code, .. } => {
                let value = if *code == "missing_token" {
                    "Bearer".to_string()
                } else {
                    format!("Bearer error=\"invalid_token\", error_description=\"{code}\"")
                };
                res.insert_header((header::WWW_AUTHENTICATE, value));
            }
            _ => {}
        }
        res.body(serde_json::to_string(&self.problem()).unwrap_or_default())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::NotFound(what) => ApiError::NotFound(format!("{what} not found")),
            StoreError::Forbidden(why) => ApiError::Forbidden(why.to_string()),
            StoreError::Conflict { code, detail } => ApiError::Conflict { code, detail },
            StoreError::TooLarge { code, detail } => ApiError::TooLarge { code, detail },
            StoreError::VersionMismatch { current } => ApiError::PreconditionFailed { current },
            StoreError::Invalid { field, message } => ApiError::validation(field, message),
            StoreError::Database(ref db) if is_unavailable(db) => {
                tracing::error!(error = %e, "database unavailable");
                ApiError::Unavailable("the database is unavailable; retry shortly".into())
            }
            other => {
                tracing::error!(error = %other, "store error");
                ApiError::Internal
            }
        }
    }
}

fn is_unavailable(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_)
    )
}
