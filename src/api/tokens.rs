//! `/api/v1/me/api-tokens`: personal API tokens for scripts and services. A token acts as
//! its owner, within its scopes (`read`, `write`, `admin`) and, if given one, its
//! workspace; it is shown once and kept as a digest; it may expire; its last use is kept;
//! revoking it refuses it at once and closes the sockets opened with it.

use actix_web::{delete, get, post, web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, Problem};
use super::extract::{ApiJson, AuthUser};
use super::AppState;
use crate::domain::{format_timestamp, now_ms};
use crate::store::ApiToken;
use crate::views::List;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiToken {
    /// What it is for, 1 to 100 characters.
    pub name: String,
    /// Any of `read`, `write`, `admin` (each includes those before it).
    pub scopes: Vec<String>,
    /// Only this workspace (its REST routes; such a token opens no socket).
    #[serde(default, deserialize_with = "super::extract::integral")]
    pub workspace_id: Option<i64>,
    /// Days until it expires, 1 to 3650; none: until revoked.
    #[serde(default, deserialize_with = "super::extract::integral")]
    pub expires_in_days: Option<i64>,
}

/// A token as listed (never its secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiTokenView {
    pub id: i64,
    pub name: String,
    pub scopes: Vec<String>,
    pub workspace_id: Option<i64>,
    pub expires_at: Option<String>,
    pub last_used_at: Option<String>,
    pub created_at: String,
}

impl From<&ApiToken> for ApiTokenView {
    fn from(t: &ApiToken) -> ApiTokenView {
        ApiTokenView {
            id: t.id,
            name: t.name.clone(),
            scopes: t.scopes.clone(),
            workspace_id: t.workspace_id,
            expires_at: t.expires_at.map(format_timestamp),
            last_used_at: t.last_used_at.map(format_timestamp),
            created_at: format_timestamp(t.created_at),
        }
    }
}

/// A new token, with its secret: shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedApiToken {
    /// `Authorization: Bearer <token>`; it is not shown again.
    pub token: String,
    #[serde(flatten)]
    pub view: ApiTokenView,
}

/// Make an API token (signed in as yourself; a token cannot make tokens).
#[utoipa::path(
    tag = "auth",
    request_body = CreateApiToken,
    responses(
        (status = 201, description = "The token, shown once", body = CreatedApiToken),
        (status = 403, description = "Asked with an API token (`insufficient_scope`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such workspace among yours", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[post("/me/api-tokens")]
pub async fn create_api_token(
    state: web::Data<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<CreateApiToken>,
) -> Result<HttpResponse, ApiError> {
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::validation(
            "name",
            "must be 1 to 100 characters, none of them control characters",
        ));
    }
    let mut scopes: Vec<String> = Vec::new();
    for scope in &body.scopes {
        if !["read", "write", "admin"].contains(&scope.as_str()) {
            return Err(ApiError::validation(
                "scopes",
                format!("{scope:?} is not read, write or admin"),
            ));
        }
        if !scopes.contains(scope) {
            scopes.push(scope.clone());
        }
    }
    if scopes.is_empty() {
        return Err(ApiError::validation("scopes", "give at least one scope"));
    }
    let expires_at = match body.expires_in_days {
        None => None,
        Some(days @ 1..=3650) => Some(now_ms() + days * 86_400_000),
        Some(_) => {
            return Err(ApiError::validation(
                "expires_in_days",
                "must be between 1 and 3650",
            ))
        }
    };
    if let Some(ws) = body.workspace_id {
        // A member's, or nothing: not found otherwise.
        state.store.role(user.id, ws).await?;
    }
    let (token, digest) = crate::auth::new_api_token();
    let made = state
        .store
        .create_api_token(
            Some(user.id),
            body.workspace_id,
            name,
            &digest,
            &scopes,
            expires_at,
        )
        .await?;
    Ok(HttpResponse::Created().json(CreatedApiToken {
        token,
        view: ApiTokenView::from(&made),
    }))
}

/// Your API tokens (not their secrets), newest first.
#[utoipa::path(
    tag = "auth",
    responses((status = 200, description = "Your tokens", body = List<ApiTokenView>)),
    security(("bearer" = []))
)]
#[get("/me/api-tokens")]
pub async fn list_api_tokens(
    state: web::Data<AppState>,
    user: AuthUser,
) -> Result<HttpResponse, ApiError> {
    let items: Vec<ApiTokenView> = state
        .store
        .api_tokens_of(user.id)
        .await?
        .iter()
        .map(ApiTokenView::from)
        .collect();
    Ok(HttpResponse::Ok().json(List {
        items,
        next_cursor: None,
    }))
}

/// Revoke one of your API tokens: refused from now on, its sockets closed on every node.
#[utoipa::path(
    tag = "auth",
    params(("id" = i64, Path, description = "Token id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No such token of yours", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[delete("/me/api-tokens/{id}")]
pub async fn revoke_api_token(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let end = state.store.revoke_api_token(user.id, *id).await?;
    state
        .realtime
        .end_sessions(crate::realtime::session_end(&end));
    Ok(HttpResponse::NoContent().finish())
}
