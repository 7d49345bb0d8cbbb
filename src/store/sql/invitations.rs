//! Invitations by e-mail: offered by admins and owners under the workspace lock, accepted
//! by the account whose address was invited (following the mailed link proves it).

use async_trait::async_trait;
use serde_json::json;
use sqlx::AnyConnection;

use super::{append, begin_change, event, parse_role, require, SqlStore};
use crate::domain::{now_ms, Email, EventKind, Role, UserId, WorkspaceId};
use crate::store::{Event, Invitation, Invitations, Member, StoreError, StoreResult};

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    workspace_id: i64,
    email: String,
    role: String,
    invited_by: Option<i64>,
    expires_at: i64,
    sent_at: i64,
    created_at: i64,
}

impl Row {
    fn into_invitation(self) -> StoreResult<Invitation> {
        Ok(Invitation {
            id: self.id,
            workspace_id: self.workspace_id,
            email: self.email,
            role: parse_role(&self.role)?,
            invited_by: self.invited_by,
            expires_at: self.expires_at,
            sent_at: self.sent_at,
            created_at: self.created_at,
        })
    }
}

const COLUMNS: &str = "id, workspace_id, email, role, invited_by, expires_at, sent_at, created_at";

/// The pending invitation `id`, for an admin or owner of its workspace (taking the
/// workspace's next offset): the invitation and the offset.
async fn pending_for_admin(
    conn: &mut AnyConnection,
    actor: UserId,
    id: i64,
) -> StoreResult<(Invitation, i64)> {
    let ws: Option<i64> = sqlx::query_scalar(
        "SELECT workspace_id FROM invitations \
         WHERE id = $1 AND accepted_at IS NULL AND revoked_at IS NULL",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let ws = ws.ok_or(StoreError::NotFound("invitation"))?;
    let (offset, role) = begin_change(conn, ws, actor)
        .await?
        .ok_or(StoreError::NotFound("invitation"))?;
    require(
        role,
        Role::Admin,
        "only admins and owners manage invitations",
    )?;
    let row: Row = sqlx::query_as(&format!("SELECT {COLUMNS} FROM invitations WHERE id = $1"))
        .bind(id)
        .fetch_one(&mut *conn)
        .await?;
    let invitation = row.into_invitation()?;
    if !role.can_manage(invitation.role) {
        return Err(StoreError::Forbidden(
            "only owners manage invitations to the owner role",
        ));
    }
    Ok((invitation, offset))
}

fn view(i: &Invitation) -> serde_json::Value {
    json!({"invitation_id": i.id, "email": i.email, "role": i.role, "expires_at": i.expires_at})
}

#[async_trait]
impl Invitations for SqlStore {
    async fn invite(
        &self,
        actor: UserId,
        ws: WorkspaceId,
        email: &Email,
        role: Role,
        digest: &str,
        expires_at: i64,
    ) -> StoreResult<(Invitation, Event)> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        let (offset, actor_role) = begin_change(&mut tx, ws, actor)
            .await?
            .ok_or(StoreError::NotFound("workspace"))?;
        require(actor_role, Role::Admin, "only admins and owners can invite")?;
        if !actor_role.can_manage(role) {
            return Err(StoreError::Forbidden(
                "only owners can grant the owner role",
            ));
        }
        let member: Option<i64> = sqlx::query_scalar(
            "SELECT m.user_id FROM memberships m JOIN users u ON u.id = m.user_id \
             WHERE m.workspace_id = $1 AND u.email_key = $2",
        )
        .bind(ws)
        .bind(email.key())
        .fetch_optional(&mut *tx)
        .await?;
        if member.is_some() {
            return Err(StoreError::Conflict {
                code: "already_member",
                detail: "the account with that address is already a member of this workspace"
                    .into(),
            });
        }
        let existing: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM invitations WHERE workspace_id = $1 AND email_key = $2 \
             AND accepted_at IS NULL AND revoked_at IS NULL",
        )
        .bind(ws)
        .bind(email.key())
        .fetch_optional(&mut *tx)
        .await?;
        let (id, kind) = match existing {
            Some(id) => {
                sqlx::query(
                    "UPDATE invitations SET role = $1, digest = $2, expires_at = $3, sent_at = $4, \
                     invited_by = $5, email = $6 WHERE id = $7",
                )
                .bind(role.as_str())
                .bind(digest)
                .bind(expires_at)
                .bind(now)
                .bind(actor)
                .bind(email.as_str())
                .bind(id)
                .execute(&mut *tx)
                .await?;
                (id, EventKind::InvitationResent)
            }
            None => {
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO invitations (workspace_id, email, email_key, role, invited_by, \
                     digest, expires_at, sent_at, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) RETURNING id",
                )
                .bind(ws)
                .bind(email.as_str())
                .bind(email.key())
                .bind(role.as_str())
                .bind(actor)
                .bind(digest)
                .bind(expires_at)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                (id, EventKind::InvitationCreated)
            }
        };
        let row: Row = sqlx::query_as(&format!("SELECT {COLUMNS} FROM invitations WHERE id = $1"))
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        let invitation = row.into_invitation()?;
        let ev = append(
            &mut tx,
            event(
                ws,
                offset,
                kind,
                actor,
                format!("invitation:{id}"),
                view(&invitation),
                now,
            ),
        )
        .await?;
        tx.commit().await?;
        Ok((invitation, ev))
    }

    async fn invitations(&self, actor: UserId, ws: WorkspaceId) -> StoreResult<Vec<Invitation>> {
        let role = self.read_role(ws, actor).await?;
        require(role, Role::Admin, "only admins and owners see invitations")?;
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM invitations WHERE workspace_id = $1 \
             AND accepted_at IS NULL AND revoked_at IS NULL ORDER BY id DESC LIMIT 1000"
        ))
        .bind(ws)
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter().map(Row::into_invitation).collect()
    }

    async fn resend_invitation(
        &self,
        actor: UserId,
        id: i64,
        digest: &str,
        expires_at: i64,
    ) -> StoreResult<(Invitation, Event)> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        let (invitation, offset) = pending_for_admin(&mut tx, actor, id).await?;
        sqlx::query(
            "UPDATE invitations SET digest = $1, expires_at = $2, sent_at = $3 WHERE id = $4",
        )
        .bind(digest)
        .bind(expires_at)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let invitation = Invitation {
            expires_at,
            sent_at: now,
            ..invitation
        };
        let ev = append(
            &mut tx,
            event(
                invitation.workspace_id,
                offset,
                EventKind::InvitationResent,
                actor,
                format!("invitation:{id}"),
                view(&invitation),
                now,
            ),
        )
        .await?;
        tx.commit().await?;
        Ok((invitation, ev))
    }

    async fn revoke_invitation(&self, actor: UserId, id: i64) -> StoreResult<Event> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        let (invitation, offset) = pending_for_admin(&mut tx, actor, id).await?;
        sqlx::query("UPDATE invitations SET revoked_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let ev = append(
            &mut tx,
            event(
                invitation.workspace_id,
                offset,
                EventKind::InvitationRevoked,
                actor,
                format!("invitation:{id}"),
                view(&invitation),
                now,
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(ev)
    }

    async fn accept_invitation(
        &self,
        user: UserId,
        digest: &str,
    ) -> StoreResult<(Member, Vec<Event>)> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        #[derive(sqlx::FromRow)]
        struct Found {
            #[sqlx(flatten)]
            row: Row,
            email_key: String,
        }
        let found: Option<Found> = sqlx::query_as(&format!(
            "SELECT {COLUMNS}, email_key FROM invitations \
             WHERE digest = $1 AND accepted_at IS NULL AND revoked_at IS NULL"
        ))
        .bind(digest)
        .fetch_optional(&mut *tx)
        .await?;
        let found = found.ok_or(StoreError::NotFound("invitation"))?;
        let key = found.email_key;
        let invitation = found.row.into_invitation()?;
        if invitation.expires_at <= now {
            return Err(StoreError::Conflict {
                code: "invitation_expired",
                detail: "this invitation has expired; ask for a new one".into(),
            });
        }
        let (email_key, email): (String, String) =
            sqlx::query_as("SELECT email_key, email FROM users WHERE id = $1")
                .bind(user)
                .fetch_one(&mut *tx)
                .await?;
        if email_key != key {
            return Err(StoreError::Forbidden(
                "this invitation was sent to another address: sign in with that one",
            ));
        }
        let ws = invitation.workspace_id;
        let offset: i64 = sqlx::query_scalar(
            "UPDATE workspaces SET last_offset = last_offset + 2 WHERE id = $1 RETURNING last_offset",
        )
        .bind(ws)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound("invitation"))?;
        let inserted = sqlx::query(
            "INSERT INTO memberships (workspace_id, user_id, role, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $4)",
        )
        .bind(ws)
        .bind(user)
        .bind(invitation.role.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await;
        if let Err(e) = inserted {
            if super::is_unique_violation(&e) {
                return Err(StoreError::Conflict {
                    code: "already_member",
                    detail: "you are already a member of this workspace".into(),
                });
            }
            return Err(e.into());
        }
        sqlx::query("UPDATE invitations SET accepted_at = $1, accepted_by = $2 WHERE id = $3")
            .bind(now)
            .bind(user)
            .bind(invitation.id)
            .execute(&mut *tx)
            .await?;
        // The link reached this address: it is proved.
        sqlx::query(
            "UPDATE users SET email_verified_at = COALESCE(email_verified_at, $1) \
             WHERE id = $2 AND email = $3",
        )
        .bind(now)
        .bind(user)
        .bind(&email)
        .execute(&mut *tx)
        .await?;
        let added = append(
            &mut tx,
            event(
                ws,
                offset - 1,
                EventKind::MemberAdded,
                invitation.invited_by,
                format!("user:{user}"),
                json!({"user_id": user, "role": invitation.role, "invitation_id": invitation.id}),
                now,
            ),
        )
        .await?;
        let accepted = append(
            &mut tx,
            event(
                ws,
                offset,
                EventKind::InvitationAccepted,
                user,
                format!("invitation:{}", invitation.id),
                view(&invitation),
                now,
            ),
        )
        .await?;
        let member = super::workspaces::member_in(&mut tx, ws, user)
            .await?
            .ok_or(StoreError::NotFound("member"))?;
        tx.commit().await?;
        Ok((member, vec![added, accepted]))
    }
}
