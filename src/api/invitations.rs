//! Invitations: adding an address that has no (verified) account mails it a link; the
//! person signs up or in with that address and accepts. Admins and owners list, resend and
//! revoke pending invitations. Each step is an event of the workspace's log.

use actix_web::{delete, get, post, web, HttpResponse};
use serde::Deserialize;
use utoipa::ToSchema;

use super::error::{ApiError, Problem};
use super::extract::{ApiJson, AuthUser};
use super::AppState;
use crate::auth::{random_token, token_digest};
use crate::domain::{now_ms, Email, Role};
use crate::store::Invitation;
use crate::views::{InvitationView, List, MemberView};

/// Invites `email` to `ws` with `role`, mails the link, publishes the event: what adding a
/// member by an address without a (verified) account does.
pub async fn invite(
    state: &AppState,
    actor: i64,
    ws: i64,
    email: &Email,
    role: Role,
) -> Result<Invitation, ApiError> {
    let token = random_token(32);
    let expires_at = now_ms() + state.invitation_ttl_ms;
    let (invitation, event) = state
        .store
        .invite(actor, ws, email, role, &token_digest(&token), expires_at)
        .await?;
    mail(state, actor, &invitation, &token).await;
    crate::realtime::committed(&state.realtime, &*state.store, &event).await;
    Ok(invitation)
}

async fn mail(state: &AppState, actor: i64, invitation: &Invitation, token: &str) {
    let inviter = match state.store.user(actor).await {
        Ok(Some(u)) => u.display_name,
        _ => "Someone".into(),
    };
    let workspace = match state.store.workspace(actor, invitation.workspace_id).await {
        Ok((w, _)) => w.name,
        Err(_) => "a workspace".into(),
    };
    let days = (state.invitation_ttl_ms / 86_400_000).max(1);
    state.mailer.send_later(crate::mail::Mail {
        to: invitation.email.clone(),
        subject: format!("{inviter} invited you to {workspace} on Stoa"),
        text: format!(
            "{inviter} invited you to the workspace \"{workspace}\" on Stoa, as {role}.\n\n\
             Accept within {days} days here:\n\n{url}/invitations/accept?token={token}\n\n\
             Sign in, or make an account, with this address ({email}) and the link adds you. \
             If you did not expect this, ignore this mail.",
            role = invitation.role.as_str(),
            url = state.public_url,
            email = invitation.email,
        ),
        unsubscribe: None,
    });
}

/// Pending invitations of a workspace (admins and owners), newest first.
#[utoipa::path(
    tag = "invitations",
    params(("id" = i64, Path, description = "Workspace id")),
    responses(
        (status = 200, description = "Pending invitations (expired ones say so)", body = List<InvitationView>),
        (status = 403, description = "Role too low", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such workspace", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/workspaces/{id}/invitations")]
pub async fn list_invitations(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let items: Vec<InvitationView> = state
        .store
        .invitations(user.id, *id)
        .await?
        .iter()
        .map(InvitationView::from)
        .collect();
    Ok(HttpResponse::Ok().json(List {
        items,
        next_cursor: None,
    }))
}

/// Mail a pending invitation again, with a new link (the old one stops working) and a new
/// expiry.
#[utoipa::path(
    tag = "invitations",
    params(("id" = i64, Path, description = "Invitation id")),
    responses(
        (status = 200, description = "Sent again", body = InvitationView),
        (status = 403, description = "Role too low", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such pending invitation", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[post("/invitations/{id}/resend")]
pub async fn resend_invitation(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let token = random_token(32);
    let expires_at = now_ms() + state.invitation_ttl_ms;
    let (invitation, event) = state
        .store
        .resend_invitation(user.id, *id, &token_digest(&token), expires_at)
        .await?;
    mail(&state, user.id, &invitation, &token).await;
    crate::realtime::committed(&state.realtime, &*state.store, &event).await;
    Ok(HttpResponse::Ok().json(InvitationView::from(&invitation)))
}

/// Revoke a pending invitation: its link stops working.
#[utoipa::path(
    tag = "invitations",
    params(("id" = i64, Path, description = "Invitation id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 403, description = "Role too low", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such pending invitation", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[delete("/invitations/{id}")]
pub async fn revoke_invitation(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let event = state.store.revoke_invitation(user.id, *id).await?;
    crate::realtime::committed(&state.realtime, &*state.store, &event).await;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptInvitation {
    /// The `token` of the mailed link.
    pub token: String,
}

/// Accept an invitation, signed in with the address it was sent to (which it proves).
#[utoipa::path(
    tag = "invitations",
    request_body = AcceptInvitation,
    responses(
        (status = 201, description = "You are a member", body = MemberView),
        (status = 403, description = "The invitation was sent to another address", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown, used or revoked link", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Expired (`invitation_expired`), or already a member (`already_member`)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[post("/me/invitations/accept")]
pub async fn accept_invitation(
    state: web::Data<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<AcceptInvitation>,
) -> Result<HttpResponse, ApiError> {
    if body.token.len() > 200 {
        return Err(ApiError::NotFound("invitation not found".into()));
    }
    let (member, events) = state
        .store
        .accept_invitation(user.id, &token_digest(&body.token))
        .await?;
    for event in &events {
        crate::realtime::committed(&state.realtime, &*state.store, event).await;
    }
    Ok(HttpResponse::Created().json(MemberView::from(&member)))
}
