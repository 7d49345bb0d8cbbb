//! `/api/v1/workspaces` and their members.

use actix_web::{delete, get, patch, post, web, HttpResponse};
use serde::Deserialize;
use utoipa::ToSchema;

use super::error::{ApiError, Problem};
use super::extract::{checked, ApiJson, AuthUser, PageQuery, Validation};
use super::AppState;
use crate::domain::{Email, Role, Slug, WorkspaceName};
use crate::store::MemberRef;
use crate::views::{InvitationView, List, MemberView, WorkspaceView};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWorkspace {
    pub name: String,
    /// Lower-case letters, digits and dashes; derived from the name when left out.
    pub slug: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWorkspace {
    pub name: Option<String>,
    pub slug: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    /// The user to add, by id…
    #[serde(default, deserialize_with = "super::extract::integral")]
    pub user_id: Option<i64>,
    /// …or by email (exactly one of the two).
    pub email: Option<String>,
    pub role: Role,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeRole {
    pub role: Role,
}

/// Create a workspace; the caller becomes its owner.
#[utoipa::path(
    tag = "workspaces",
    request_body = CreateWorkspace,
    responses(
        (status = 201, description = "Created", body = WorkspaceView),
        (status = 409, description = "Slug in use (`slug_taken`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[post("/workspaces")]
pub async fn create_workspace(
    state: web::Data<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<CreateWorkspace>,
) -> Result<HttpResponse, ApiError> {
    let mut v = Validation::default();
    let name = v.check("name", WorkspaceName::parse(&body.name));
    let slug = body
        .slug
        .as_deref()
        .map(|s| v.check("slug", Slug::parse(s)));
    v.finish()?;
    let name = checked(name)?;
    let slug = slug.map(checked).transpose()?;
    let (ws, role, event) = state
        .store
        .create_workspace(user.id, &name, slug.as_ref())
        .await?;
    crate::realtime::committed(&state.realtime, &*state.store, &event).await;
    Ok(HttpResponse::Created().json(WorkspaceView::new(&ws, role)))
}

/// The workspaces the caller belongs to.
#[utoipa::path(
    tag = "workspaces",
    params(PageQuery),
    responses((status = 200, description = "A page of workspaces", body = List<WorkspaceView>)),
    security(("bearer" = []))
)]
#[get("/workspaces")]
pub async fn list_workspaces(
    state: web::Data<AppState>,
    user: AuthUser,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = state
        .store
        .workspaces_of(user.id, query.to_request()?)
        .await?;
    Ok(HttpResponse::Ok().json(List::from_page(page, |(w, r)| WorkspaceView::new(w, *r))))
}

/// One workspace (members only; others get 404).
#[utoipa::path(
    tag = "workspaces",
    params(("id" = i64, Path, description = "Workspace id")),
    responses(
        (status = 200, description = "The workspace", body = WorkspaceView),
        (status = 404, description = "No such workspace, or not a member", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/workspaces/{id}")]
pub async fn get_workspace(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let (ws, role) = state.store.workspace(user.id, *id).await?;
    Ok(HttpResponse::Ok().json(WorkspaceView::new(&ws, role)))
}

/// Rename a workspace or change its slug (admins and owners).
#[utoipa::path(
    tag = "workspaces",
    params(("id" = i64, Path, description = "Workspace id")),
    request_body = UpdateWorkspace,
    responses(
        (status = 200, description = "Updated", body = WorkspaceView),
        (status = 403, description = "Role too low", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such workspace, or not a member", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Slug in use", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[patch("/workspaces/{id}")]
pub async fn update_workspace(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<i64>,
    ApiJson(body): ApiJson<UpdateWorkspace>,
) -> Result<HttpResponse, ApiError> {
    let mut v = Validation::default();
    let name = body
        .name
        .as_deref()
        .map(|n| v.check("name", WorkspaceName::parse(n)));
    let slug = body
        .slug
        .as_deref()
        .map(|s| v.check("slug", Slug::parse(s)));
    if body.name.is_none() && body.slug.is_none() {
        v.fail("body", "give at least one of name, slug");
    }
    v.finish()?;
    let name = name.map(checked).transpose()?;
    let slug = slug.map(checked).transpose()?;
    let (ws, event) = state
        .store
        .update_workspace(user.id, *id, name.as_ref(), slug.as_ref())
        .await?;
    crate::realtime::committed(&state.realtime, &*state.store, &event).await;
    let (_, role) = state.store.workspace(user.id, ws.id).await?;
    Ok(HttpResponse::Ok().json(WorkspaceView::new(&ws, role)))
}

/// Delete a workspace and everything in it (owners only).
#[utoipa::path(
    tag = "workspaces",
    params(("id" = i64, Path, description = "Workspace id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Not an owner", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such workspace, or not a member", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[delete("/workspaces/{id}")]
pub async fn delete_workspace(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    state.store.delete_workspace(user.id, *id).await?;
    // Its attachments' blobs were queued by the commit.
    state.sweeper.nudge();
    state.realtime.close_workspace(*id, "workspace_deleted");
    Ok(HttpResponse::NoContent().finish())
}

/// The members of a workspace.
#[utoipa::path(
    tag = "members",
    params(("id" = i64, Path, description = "Workspace id"), PageQuery),
    responses(
        (status = 200, description = "A page of members, by user id", body = List<MemberView>),
        (status = 404, description = "No such workspace, or not a member", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/workspaces/{id}/members")]
pub async fn list_members(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<i64>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = state
        .store
        .members(user.id, *id, query.to_request()?)
        .await?;
    Ok(HttpResponse::Ok().json(List::from_page(page, |m| MemberView::from(m))))
}

/// Add a user to the workspace (admins; only owners may add owners): by id, or by e-mail.
/// An address with no account (or, with `auth.require_verified_email`, no verified one) is
/// invited instead: it is mailed a link, and the answer is 202 with the invitation.
#[utoipa::path(
    tag = "members",
    params(("id" = i64, Path, description = "Workspace id")),
    request_body = AddMember,
    responses(
        (status = 201, description = "Added", body = MemberView),
        (status = 202, description = "No account has the address yet: invited", body = InvitationView),
        (status = 403, description = "Role too low", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such workspace, or not a member", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already a member (`already_member`), or no such user (`unknown_user`)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[post("/workspaces/{id}/members")]
pub async fn add_member(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<i64>,
    ApiJson(body): ApiJson<AddMember>,
) -> Result<HttpResponse, ApiError> {
    let who = match (body.user_id, body.email.as_deref()) {
        (Some(id), None) => MemberRef::Id(id),
        (None, Some(email)) => {
            MemberRef::Email(Email::parse(email).map_err(|m| ApiError::validation("email", m))?)
        }
        _ => {
            return Err(ApiError::validation(
                "user_id",
                "give exactly one of user_id, email",
            ))
        }
    };
    let added = state.store.add_member(user.id, *id, &who, body.role).await;
    if let (Err(crate::store::StoreError::NotFound("user")), MemberRef::Email(email)) =
        (&added, &who)
    {
        let invitation = super::invitations::invite(&state, user.id, *id, email, body.role).await?;
        return Ok(HttpResponse::Accepted().json(InvitationView::from(&invitation)));
    }
    let (member, event) = added.map_err(|e| match e {
        // The workspace exists (else "workspace not found"); the user to add does not.
        crate::store::StoreError::NotFound("user") => ApiError::Conflict {
            code: "unknown_user",
            detail: "no active account has that id or email".into(),
        },
        e => e.into(),
    })?;
    crate::realtime::committed(&state.realtime, &*state.store, &event).await;
    Ok(HttpResponse::Created().json(MemberView::from(&member)))
}

/// One member.
#[utoipa::path(
    tag = "members",
    params(("id" = i64, Path, description = "Workspace id"), ("user_id" = i64, Path, description = "User id")),
    responses(
        (status = 200, description = "The member", body = MemberView),
        (status = 404, description = "No such workspace or member", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/workspaces/{id}/members/{user_id}")]
pub async fn get_member(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<(i64, i64)>,
) -> Result<HttpResponse, ApiError> {
    let (ws, member) = path.into_inner();
    let member = state.store.member(user.id, ws, member).await?;
    Ok(HttpResponse::Ok().json(MemberView::from(&member)))
}

/// Change a member's role (admins for non-owners; owners for anyone). The last owner
/// cannot be demoted.
#[utoipa::path(
    tag = "members",
    params(("id" = i64, Path, description = "Workspace id"), ("user_id" = i64, Path, description = "User id")),
    request_body = ChangeRole,
    responses(
        (status = 200, description = "The member with the new role", body = MemberView),
        (status = 403, description = "Role too low", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such workspace or member", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Would leave no owner (`last_owner`)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[patch("/workspaces/{id}/members/{user_id}")]
pub async fn change_role(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<(i64, i64)>,
    ApiJson(body): ApiJson<ChangeRole>,
) -> Result<HttpResponse, ApiError> {
    let (ws, member) = path.into_inner();
    let (member, event) = state
        .store
        .change_role(user.id, ws, member, body.role)
        .await?;
    if let Some(event) = &event {
        // Their open documents, on every node, may write from now on, or no longer.
        state
            .realtime
            .role_changed(ws, member.user_id, member.role >= Role::Editor);
        crate::realtime::committed(&state.realtime, &*state.store, event).await;
    }
    Ok(HttpResponse::Ok().json(MemberView::from(&member)))
}

/// Remove a member, or leave (remove yourself). The last owner cannot leave.
#[utoipa::path(
    tag = "members",
    params(("id" = i64, Path, description = "Workspace id"), ("user_id" = i64, Path, description = "User id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 403, description = "Role too low", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such workspace or member", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Would leave no owner (`last_owner`)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[delete("/workspaces/{id}/members/{user_id}")]
pub async fn remove_member(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<(i64, i64)>,
) -> Result<HttpResponse, ApiError> {
    let (ws, member) = path.into_inner();
    let event = state.store.remove_member(user.id, ws, member).await?;
    // Their channels close before the event reaches the others.
    let reason = if member == user.id {
        "left"
    } else {
        "membership_revoked"
    };
    state.realtime.revoke_member(ws, member, reason);
    crate::realtime::committed(&state.realtime, &*state.store, &event).await;
    Ok(HttpResponse::NoContent().finish())
}
