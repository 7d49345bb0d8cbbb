//! `/api/v1/directory`: the product's backend mirrors its users, workspaces and memberships
//! into Stoa, with an API token of scope `directory` (`stoa token create`). Users are named
//! by their id in the product (the `sub` of its tokens, `auth.external`), workspaces by the
//! product's id for them (`external_id`, also the keys of role claims).

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{delete, put, web, FromRequest, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, Problem};
use super::extract::{bearer, checked, ApiJson, Validation};
use super::AppState;
use crate::domain::format_timestamp;
use crate::domain::{DisplayName, Email, Role, Slug, WorkspaceName};

/// A caller holding an unexpired, unrevoked API token with the `directory` scope.
pub struct DirectoryCaller {
    pub token_id: i64,
}

impl FromRequest for DirectoryCaller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<DirectoryCaller, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { api_token(&req, "directory").await })
    }
}

async fn api_token(req: &HttpRequest, scope: &str) -> Result<DirectoryCaller, ApiError> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or(ApiError::Internal)?;
    let token = bearer(req)?;
    let invalid = || {
        ApiError::unauthorized(
            "invalid_token",
            "an API token with the directory scope is required (stoa token create --scope directory)",
        )
    };
    use crate::identity::IdentityError;
    let found = match state.identities.find_api_token(token).await {
        Ok(found) => found,
        Err(IdentityError::Token(crate::auth::TokenError::Expired)) => {
            return Err(ApiError::unauthorized(
                "token_expired",
                "this API token has expired",
            ))
        }
        Err(IdentityError::Unavailable(e)) => return Err(e.into()),
        Err(_) => return Err(invalid()),
    };
    if !found.scopes.iter().any(|s| s == scope) {
        return Err(ApiError::Forbidden(format!(
            "this API token does not have the {scope} scope"
        )));
    }
    // Its own allowance, apart from any person's: keyed by the token, below every user id.
    state
        .user_requests
        .check_n(&-found.id, 1)
        .map_err(|wait| ApiError::RateLimited {
            retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
        })?;
    Ok(DirectoryCaller { token_id: found.id })
}

fn issuer(state: &AppState) -> Result<String, ApiError> {
    state
        .identities
        .external_issuer()
        .map(str::to_string)
        .ok_or_else(|| ApiError::Conflict {
            code: "directory_not_configured",
            detail: "the directory names the product's users by its tokens' subject: set auth.external.issuer".into(),
        })
}

fn check_key(field: &str, value: &str) -> Result<(), ApiError> {
    if value.is_empty() || value.len() > 255 || value.chars().any(char::is_control) {
        return Err(ApiError::validation(
            field,
            "must be 1 to 255 characters, none of them control characters",
        ));
    }
    Ok(())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutUser {
    pub email: Option<String>,
    pub display_name: Option<String>,
}

/// A user of the product, as Stoa knows them.
#[derive(Debug, Serialize, ToSchema)]
pub struct DirectoryUserView {
    pub user_id: i64,
    /// The product's id of the user (its tokens' subject).
    pub subject: String,
    pub email: String,
    pub display_name: String,
    pub created_at: String,
}

/// Create or update the product's user `subject`.
#[utoipa::path(
    tag = "directory",
    params(("subject" = String, Path, description = "The product's id of the user")),
    request_body = PutUser,
    responses(
        (status = 200, description = "The user", body = DirectoryUserView),
        (status = 401, description = "No API token with the directory scope", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "auth.external.issuer is not set (`directory_not_configured`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[put("/directory/users/{subject}")]
pub async fn put_user(
    state: web::Data<AppState>,
    _caller: DirectoryCaller,
    subject: web::Path<String>,
    ApiJson(body): ApiJson<PutUser>,
) -> Result<HttpResponse, ApiError> {
    check_key("subject", &subject)?;
    let mut v = Validation::default();
    let email = body
        .email
        .as_deref()
        .map(|e| v.check("email", Email::parse(e)));
    let name = body
        .display_name
        .as_deref()
        .map(|n| v.check("display_name", DisplayName::parse(n)));
    v.finish()?;
    let email = email.map(checked).transpose()?;
    let name = name.map(checked).transpose()?;
    let issuer = issuer(&state)?;
    let user = state
        .store
        .external_user(&issuer, &subject, email.as_ref(), name.as_ref())
        .await?;
    Ok(HttpResponse::Ok().json(DirectoryUserView {
        user_id: user.id,
        subject: subject.into_inner(),
        email: user.email,
        display_name: user.display_name,
        created_at: format_timestamp(user.created_at),
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutWorkspace {
    pub name: String,
    pub slug: Option<String>,
}

/// A workspace of the product.
#[derive(Debug, Serialize, ToSchema)]
pub struct DirectoryWorkspaceView {
    pub id: i64,
    /// The product's id of the workspace (the key of role claims).
    pub external_id: String,
    pub name: String,
    pub slug: String,
    pub created_at: String,
    pub updated_at: String,
}

/// Create the workspace `external_id`, or rename it. It has no owner until one is given.
#[utoipa::path(
    tag = "directory",
    params(("external_id" = String, Path, description = "The product's id of the workspace")),
    request_body = PutWorkspace,
    responses(
        (status = 200, description = "Updated", body = DirectoryWorkspaceView),
        (status = 201, description = "Created", body = DirectoryWorkspaceView),
        (status = 401, description = "No API token with the directory scope", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Slug in use (`slug_taken`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[put("/directory/workspaces/{external_id}")]
pub async fn put_workspace(
    state: web::Data<AppState>,
    _caller: DirectoryCaller,
    external_id: web::Path<String>,
    ApiJson(body): ApiJson<PutWorkspace>,
) -> Result<HttpResponse, ApiError> {
    check_key("external_id", &external_id)?;
    let mut v = Validation::default();
    let name = v.check("name", WorkspaceName::parse(&body.name));
    let slug = body
        .slug
        .as_deref()
        .map(|s| v.check("slug", Slug::parse(s)));
    v.finish()?;
    let name = checked(name)?;
    let slug = slug.map(checked).transpose()?;
    let (ws, created) = state
        .store
        .directory_workspace(&external_id, &name, slug.as_ref())
        .await?;
    let view = DirectoryWorkspaceView {
        id: ws.id,
        external_id: external_id.into_inner(),
        name: ws.name,
        slug: ws.slug,
        created_at: format_timestamp(ws.created_at),
        updated_at: format_timestamp(ws.updated_at),
    };
    Ok(if created {
        HttpResponse::Created().json(view)
    } else {
        HttpResponse::Ok().json(view)
    })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutMembership {
    pub role: Role,
}

/// A membership the directory set.
#[derive(Debug, Serialize, ToSchema)]
pub struct DirectoryMembershipView {
    pub workspace_id: i64,
    pub user_id: i64,
    pub role: Role,
}

async fn member_of(state: &AppState, subject: &str) -> Result<i64, ApiError> {
    check_key("subject", subject)?;
    let issuer = issuer(state)?;
    state
        .store
        .external_user_id(&issuer, subject)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!(
            "no user {subject:?}: PUT /api/v1/directory/users/{{subject}} first (or let them sign in)"
        )))
}

/// Give the product's user `subject` a role in workspace `external_id` (their open
/// documents follow it live, as a REST role change).
#[utoipa::path(
    tag = "directory",
    params(
        ("external_id" = String, Path, description = "The product's id of the workspace"),
        ("subject" = String, Path, description = "The product's id of the user"),
    ),
    request_body = PutMembership,
    responses(
        (status = 200, description = "The membership", body = DirectoryMembershipView),
        (status = 401, description = "No API token with the directory scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such workspace or user", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Would leave no owner (`last_owner`)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[put("/directory/workspaces/{external_id}/members/{subject}")]
pub async fn put_membership(
    state: web::Data<AppState>,
    _caller: DirectoryCaller,
    path: web::Path<(String, String)>,
    ApiJson(body): ApiJson<PutMembership>,
) -> Result<HttpResponse, ApiError> {
    let (external_id, subject) = path.into_inner();
    check_key("external_id", &external_id)?;
    let user = member_of(&state, &subject).await?;
    let (workspace_id, change) = state
        .store
        .directory_membership(&external_id, user, Some(body.role))
        .await?;
    if let Some(change) = &change {
        crate::realtime::membership_changed(&state.realtime, &*state.store, change).await;
    }
    Ok(HttpResponse::Ok().json(DirectoryMembershipView {
        workspace_id,
        user_id: user,
        role: body.role,
    }))
}

/// Take the product's user `subject` out of workspace `external_id` (their channels and
/// documents there close, as a REST removal).
#[utoipa::path(
    tag = "directory",
    params(
        ("external_id" = String, Path, description = "The product's id of the workspace"),
        ("subject" = String, Path, description = "The product's id of the user"),
    ),
    responses(
        (status = 204, description = "Removed (or was not a member)"),
        (status = 401, description = "No API token with the directory scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such workspace or user", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Would leave no owner (`last_owner`)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[delete("/directory/workspaces/{external_id}/members/{subject}")]
pub async fn delete_membership(
    state: web::Data<AppState>,
    _caller: DirectoryCaller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (external_id, subject) = path.into_inner();
    check_key("external_id", &external_id)?;
    let user = member_of(&state, &subject).await?;
    let (_, change) = state
        .store
        .directory_membership(&external_id, user, None)
        .await?;
    if let Some(change) = &change {
        crate::realtime::membership_changed(&state.realtime, &*state.store, change).await;
    }
    Ok(HttpResponse::NoContent().finish())
}

/// Delete the product's user `subject`, as `DELETE /api/v1/me` does for a person: every
/// sign-in ends on every node, every membership is removed, everything personal is erased,
/// and what they wrote stays, by "Deleted user". Refused while they are the only owner of a
/// workspace (`sole_owner`).
#[utoipa::path(
    tag = "directory",
    params(("subject" = String, Path, description = "The product's id of the user")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No API token with the directory scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The only owner of a workspace (`sole_owner`)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[delete("/directory/users/{subject}")]
pub async fn delete_user(
    state: web::Data<AppState>,
    _caller: DirectoryCaller,
    subject: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let user = member_of(&state, &subject).await?;
    super::auth::delete_account(&state, user).await?;
    Ok(HttpResponse::NoContent().finish())
}
