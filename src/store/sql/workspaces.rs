//! Workspaces and their members: creating, renaming and deleting a workspace, and adding,
//! changing the roles of and removing members under the workspace lock, with the last-owner
//! rule.

use async_trait::async_trait;
use serde_json::json;
use sqlx::AnyConnection;

use super::notifications::notify;
use super::{
    append, begin_change, event, fetch_limit, is_unique_violation, page_of, parse_role, require,
    SqlStore,
};
use crate::domain::{now_ms, EventKind, Role, Slug, UserId, WorkspaceId, WorkspaceName};
use crate::store::{
    Event, Member, MemberRef, Page, PageRequest, StoreError, StoreResult, Workspace, Workspaces,
};

#[derive(sqlx::FromRow)]
struct WorkspaceRow {
    id: i64,
    name: String,
    slug: String,
    last_offset: i64,
    created_at: i64,
    updated_at: i64,
    role: Option<String>,
}

impl WorkspaceRow {
    fn split(self) -> StoreResult<(Workspace, Role)> {
        let role = parse_role(self.role.as_deref().unwrap_or_default())?;
        Ok((
            Workspace {
                id: self.id,
                name: self.name,
                slug: self.slug,
                last_offset: self.last_offset,
                created_at: self.created_at,
                updated_at: self.updated_at,
            },
            role,
        ))
    }
}

const WORKSPACE_COLUMNS: &str =
    "w.id, w.name, w.slug, w.last_offset, w.created_at, w.updated_at, m.role";

#[derive(sqlx::FromRow)]
pub(super) struct MemberRow {
    workspace_id: i64,
    user_id: i64,
    email: String,
    display_name: String,
    role: String,
    created_at: i64,
    updated_at: i64,
}

impl MemberRow {
    pub(super) fn into_member(self) -> StoreResult<Member> {
        Ok(Member {
            workspace_id: self.workspace_id,
            user_id: self.user_id,
            email: self.email,
            display_name: self.display_name,
            role: parse_role(&self.role)?,
            joined_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

const MEMBER_SELECT: &str =
    "SELECT m.workspace_id, m.user_id, u.email, u.display_name, m.role, m.created_at, m.updated_at \
     FROM memberships m JOIN users u ON u.id = m.user_id";

/// The slug a new workspace gets: the one asked for, or one derived from its name (with a
/// random suffix when another workspace has it).
pub(super) async fn slug_for(
    conn: &mut AnyConnection,
    name: &WorkspaceName,
    asked: Option<&Slug>,
) -> StoreResult<Slug> {
    if let Some(s) = asked {
        return Ok(s.clone());
    }
    let derived = Slug::derive(name.as_str());
    let taken: Option<i64> = sqlx::query_scalar("SELECT id FROM workspaces WHERE slug = $1")
        .bind(derived.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    Ok(match taken {
        Some(_) => derived.with_suffix(&crate::auth::random_hex(3)),
        None => derived,
    })
}

pub(super) async fn member_in(
    conn: &mut AnyConnection,
    ws: WorkspaceId,
    user: UserId,
) -> StoreResult<Option<Member>> {
    let row: Option<MemberRow> = sqlx::query_as(&format!(
        "{MEMBER_SELECT} WHERE m.workspace_id = $1 AND m.user_id = $2"
    ))
    .bind(ws)
    .bind(user)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(MemberRow::into_member).transpose()
}

async fn owner_count(conn: &mut AnyConnection, ws: WorkspaceId) -> StoreResult<i64> {
    Ok(sqlx::query_scalar(
        "SELECT COUNT(*) FROM memberships WHERE workspace_id = $1 AND role = 'owner'",
    )
    .bind(ws)
    .fetch_one(&mut *conn)
    .await?)
}

#[async_trait]
impl Workspaces for SqlStore {
    async fn create_workspace(
        &self,
        actor: UserId,
        name: &WorkspaceName,
        slug: Option<&Slug>,
    ) -> StoreResult<(Workspace, Role, Event)> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        let slug = slug_for(&mut tx, name, slug).await?;
        let id: Result<i64, sqlx::Error> = sqlx::query_scalar(
            "INSERT INTO workspaces (name, slug, last_offset, created_by, created_at, updated_at) \
             VALUES ($1, $2, 1, $3, $4, $4) RETURNING id",
        )
        .bind(name.as_str())
        .bind(slug.as_str())
        .bind(actor)
        .bind(now)
        .fetch_one(&mut *tx)
        .await;
        let id = match id {
            Ok(id) => id,
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::Conflict {
                    code: "slug_taken",
                    detail: format!("the slug {:?} is already in use", slug.as_str()),
                })
            }
            Err(e) => return Err(e.into()),
        };
        sqlx::query(
            "INSERT INTO memberships (workspace_id, user_id, role, created_at, updated_at) \
             VALUES ($1, $2, 'owner', $3, $3)",
        )
        .bind(id)
        .bind(actor)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let ev = append(
            &mut tx,
            event(
                id,
                1,
                EventKind::WorkspaceCreated,
                actor,
                format!("workspace:{id}"),
                json!({"name": name.as_str(), "slug": slug.as_str(), "owner_id": actor}),
                now,
            ),
        )
        .await?;
        tx.commit().await?;
        let ws = Workspace {
            id,
            name: name.as_str().to_string(),
            slug: slug.as_str().to_string(),
            last_offset: 1,
            created_at: now,
            updated_at: now,
        };
        Ok((ws, Role::Owner, ev))
    }

    async fn workspaces_of(
        &self,
        user: UserId,
        page: PageRequest,
    ) -> StoreResult<Page<(Workspace, Role)>> {
        let rows: Vec<WorkspaceRow> = sqlx::query_as(&format!(
            "SELECT {WORKSPACE_COLUMNS} FROM memberships m JOIN workspaces w ON w.id = m.workspace_id \
             WHERE m.user_id = $1 AND w.id > $2 ORDER BY w.id LIMIT $3"
        ))
        .bind(user)
        .bind(page.after.unwrap_or(0))
        .bind(fetch_limit(&page))
        .fetch_all(&self.reader)
        .await?;
        let items = rows
            .into_iter()
            .map(WorkspaceRow::split)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(page_of(items, page.limit, |(w, _)| w.id))
    }

    async fn workspace(&self, actor: UserId, id: WorkspaceId) -> StoreResult<(Workspace, Role)> {
        let row: Option<WorkspaceRow> = sqlx::query_as(&format!(
            "SELECT {WORKSPACE_COLUMNS} FROM memberships m JOIN workspaces w ON w.id = m.workspace_id \
             WHERE m.user_id = $1 AND w.id = $2"
        ))
        .bind(actor)
        .bind(id)
        .fetch_optional(&self.reader)
        .await?;
        row.ok_or(StoreError::NotFound("workspace"))?.split()
    }

    async fn update_workspace(
        &self,
        actor: UserId,
        id: WorkspaceId,
        name: Option<&WorkspaceName>,
        slug: Option<&Slug>,
    ) -> StoreResult<(Workspace, Event)> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        let (offset, role) = begin_change(&mut tx, id, actor)
            .await?
            .ok_or(StoreError::NotFound("workspace"))?;
        require(
            role,
            Role::Admin,
            "only admins and owners can change workspace settings",
        )?;
        let updated = sqlx::query(
            "UPDATE workspaces SET name = COALESCE($1, name), slug = COALESCE($2, slug), \
             updated_at = $3 WHERE id = $4",
        )
        .bind(name.map(|n| n.as_str()))
        .bind(slug.map(|s| s.as_str()))
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await;
        match updated {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::Conflict {
                    code: "slug_taken",
                    detail: "that slug is already in use".into(),
                })
            }
            Err(e) => return Err(e.into()),
        }
        let row: WorkspaceRow = sqlx::query_as(&format!(
            "SELECT {WORKSPACE_COLUMNS} FROM memberships m JOIN workspaces w ON w.id = m.workspace_id \
             WHERE m.user_id = $1 AND w.id = $2"
        ))
        .bind(actor)
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        let (ws, _) = row.split()?;
        let ev = append(
            &mut tx,
            event(
                id,
                offset,
                EventKind::WorkspaceUpdated,
                actor,
                format!("workspace:{id}"),
                json!({"name": ws.name, "slug": ws.slug}),
                now,
            ),
        )
        .await?;
        tx.commit().await?;
        Ok((ws, ev))
    }

    async fn delete_workspace(&self, actor: UserId, id: WorkspaceId) -> StoreResult<Workspace> {
        let mut tx = self.writer.begin().await?;
        let (_, role) = begin_change(&mut tx, id, actor)
            .await?
            .ok_or(StoreError::NotFound("workspace"))?;
        require(role, Role::Owner, "only owners can delete a workspace")?;
        let row: WorkspaceRow = sqlx::query_as(&format!(
            "SELECT {WORKSPACE_COLUMNS} FROM memberships m JOIN workspaces w ON w.id = m.workspace_id \
             WHERE m.user_id = $1 AND w.id = $2"
        ))
        .bind(actor)
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM workspaces WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(row.split()?.0)
    }

    async fn members(
        &self,
        actor: UserId,
        ws: WorkspaceId,
        page: PageRequest,
    ) -> StoreResult<Page<Member>> {
        self.read_role(ws, actor).await?;
        let rows: Vec<MemberRow> = sqlx::query_as(&format!(
            "{MEMBER_SELECT} WHERE m.workspace_id = $1 AND m.user_id > $2 ORDER BY m.user_id LIMIT $3"
        ))
        .bind(ws)
        .bind(page.after.unwrap_or(0))
        .bind(fetch_limit(&page))
        .fetch_all(&self.reader)
        .await?;
        let items = rows
            .into_iter()
            .map(MemberRow::into_member)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(page_of(items, page.limit, |m| m.user_id))
    }

    async fn member(&self, actor: UserId, ws: WorkspaceId, user: UserId) -> StoreResult<Member> {
        self.read_role(ws, actor).await?;
        let mut conn = self.reader.acquire().await?;
        member_in(&mut conn, ws, user)
            .await?
            .ok_or(StoreError::NotFound("member"))
    }

    async fn add_member(
        &self,
        actor: UserId,
        ws: WorkspaceId,
        who: &MemberRef,
        role: Role,
    ) -> StoreResult<(Member, Event)> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        let (offset, actor_role) = begin_change(&mut tx, ws, actor)
            .await?
            .ok_or(StoreError::NotFound("workspace"))?;
        require(
            actor_role,
            Role::Admin,
            "only admins and owners can add members",
        )?;
        if !actor_role.can_manage(role) {
            return Err(StoreError::Forbidden(
                "only owners can grant the owner role",
            ));
        }
        let user_id: Option<i64> = match who {
            MemberRef::Id(id) => {
                sqlx::query_scalar("SELECT id FROM users WHERE id = $1 AND disabled_at IS NULL")
                    .bind(*id)
                    .fetch_optional(&mut *tx)
                    .await?
            }
            MemberRef::Email(email) => {
                sqlx::query_scalar(&format!(
                    "SELECT id FROM users u WHERE email_key = $1 AND disabled_at IS NULL AND {}",
                    self.matches_by_email()
                ))
                .bind(email.key())
                .fetch_optional(&mut *tx)
                .await?
            }
        };
        let user_id = user_id.ok_or(StoreError::NotFound("user"))?;
        let inserted = sqlx::query(
            "INSERT INTO memberships (workspace_id, user_id, role, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $4)",
        )
        .bind(ws)
        .bind(user_id)
        .bind(role.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::Conflict {
                    code: "already_member",
                    detail: "that user is already a member of this workspace".into(),
                })
            }
            Err(e) => return Err(e.into()),
        }
        let member = member_in(&mut tx, ws, user_id)
            .await?
            .ok_or(StoreError::NotFound("member"))?;
        let ev = append(
            &mut tx,
            event(
                ws,
                offset,
                EventKind::MemberAdded,
                actor,
                format!("user:{user_id}"),
                json!({"user_id": user_id, "role": role}),
                now,
            ),
        )
        .await?;
        notify(&mut tx, &ev, &[(user_id, "member_added")]).await?;
        tx.commit().await?;
        Ok((member, ev))
    }

    async fn change_role(
        &self,
        actor: UserId,
        ws: WorkspaceId,
        user: UserId,
        role: Role,
    ) -> StoreResult<(Member, Option<Event>)> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        let (offset, actor_role) = begin_change(&mut tx, ws, actor)
            .await?
            .ok_or(StoreError::NotFound("workspace"))?;
        require(
            actor_role,
            Role::Admin,
            "only admins and owners can change roles",
        )?;
        let current = member_in(&mut tx, ws, user)
            .await?
            .ok_or(StoreError::NotFound("member"))?;
        if !actor_role.can_manage(current.role) || !actor_role.can_manage(role) {
            return Err(StoreError::Forbidden("only owners can change owner roles"));
        }
        if current.role == role {
            // Nothing changes, so nothing is logged; the reserved offset is rolled back.
            return Ok((current, None));
        }
        if current.role == Role::Owner && owner_count(&mut tx, ws).await? <= 1 {
            return Err(StoreError::Conflict {
                code: "last_owner",
                detail: "the last owner cannot be demoted; make someone else owner first".into(),
            });
        }
        sqlx::query(
            "UPDATE memberships SET role = $1, updated_at = $2 WHERE workspace_id = $3 AND user_id = $4",
        )
        .bind(role.as_str())
        .bind(now)
        .bind(ws)
        .bind(user)
        .execute(&mut *tx)
        .await?;
        let member = Member {
            role,
            updated_at: now,
            ..current.clone()
        };
        let ev = append(
            &mut tx,
            event(
                ws,
                offset,
                EventKind::MemberRoleChanged,
                actor,
                format!("user:{user}"),
                json!({"user_id": user, "role": role, "previous_role": current.role}),
                now,
            ),
        )
        .await?;
        notify(&mut tx, &ev, &[(user, "role_changed")]).await?;
        tx.commit().await?;
        Ok((member, Some(ev)))
    }

    async fn remove_member(
        &self,
        actor: UserId,
        ws: WorkspaceId,
        user: UserId,
    ) -> StoreResult<Event> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        let (offset, actor_role) = begin_change(&mut tx, ws, actor)
            .await?
            .ok_or(StoreError::NotFound("workspace"))?;
        let target = member_in(&mut tx, ws, user)
            .await?
            .ok_or(StoreError::NotFound("member"))?;
        let leaving = actor == user;
        if !leaving {
            require(
                actor_role,
                Role::Admin,
                "only admins and owners can remove members",
            )?;
            if !actor_role.can_manage(target.role) {
                return Err(StoreError::Forbidden("only owners can remove owners"));
            }
        }
        if target.role == Role::Owner && owner_count(&mut tx, ws).await? <= 1 {
            return Err(StoreError::Conflict {
                code: "last_owner",
                detail:
                    "the last owner cannot leave; make someone else owner or delete the workspace"
                        .into(),
            });
        }
        sqlx::query("DELETE FROM memberships WHERE workspace_id = $1 AND user_id = $2")
            .bind(ws)
            .bind(user)
            .execute(&mut *tx)
            .await?;
        let ev = append(
            &mut tx,
            event(
                ws,
                offset,
                EventKind::MemberRemoved,
                actor,
                format!("user:{user}"),
                json!({"user_id": user, "role": target.role, "left": leaving}),
                now,
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(ev)
    }

    async fn role(&self, actor: UserId, ws: WorkspaceId) -> StoreResult<Role> {
        self.read_role(ws, actor).await
    }
}
