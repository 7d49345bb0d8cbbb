//! The product's users (by issuer and subject), workspaces (by external id) and the
//! memberships its tokens and directory API grant; API tokens.

use async_trait::async_trait;
use serde_json::json;
use sqlx::AnyConnection;

use super::notifications::notify;
use super::{append, event, is_unique_violation, parse_role, SqlStore};
use crate::domain::WorkspaceName;
use crate::domain::{now_ms, DisplayName, Email, EventKind, Role, Slug, UserId, WorkspaceId};
use crate::store::{
    ApiToken, Directory, MembershipChange, SessionEnd, StoreError, StoreResult, User, Workspace,
};

/// The session an API token's sockets belong to: revoking the token ends it.
pub fn api_token_session(id: i64) -> String {
    format!("api:{id}")
}

/// What `memberships.granted_by` says of a membership the claims of `issuer` granted (a
/// product's token roles, or a directory's groups).
fn claims_tag(issuer: &str) -> String {
    format!("claims:{issuer}")
}

/// Accounts made for the product's users have no password: this is never a valid hash.
pub(super) const NO_PASSWORD: &str = "!external";

/// The e-mail key of an account whose address another account already holds: unique, and
/// never equal to an address's key, so it matches nobody by e-mail.
fn private_email_key(issuer: &str, subject: &str) -> String {
    format!(
        "external:{}",
        crate::auth::token_digest(&format!("{issuer}\0{subject}"))
    )
}

async fn next_offset(conn: &mut AnyConnection, ws: WorkspaceId) -> StoreResult<i64> {
    sqlx::query_scalar(
        "UPDATE workspaces SET last_offset = last_offset + 1 WHERE id = $1 RETURNING last_offset",
    )
    .bind(ws)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(StoreError::NotFound("workspace"))
}

async fn owners(conn: &mut AnyConnection, ws: WorkspaceId) -> StoreResult<i64> {
    Ok(sqlx::query_scalar(
        "SELECT COUNT(*) FROM memberships WHERE workspace_id = $1 AND role = 'owner'",
    )
    .bind(ws)
    .fetch_one(&mut *conn)
    .await?)
}

/// Sets `user`'s role in `ws` (or removes it), recording who granted it; the event and
/// notification as the REST routes write them, with no actor. `None` when nothing changes,
/// or when the change would leave the workspace without an owner (`Err` if `strict`).
async fn set_role(
    conn: &mut AnyConnection,
    ws: WorkspaceId,
    user: UserId,
    role: Option<Role>,
    granted_by: &str,
    strict: bool,
) -> StoreResult<Option<MembershipChange>> {
    let now = now_ms();
    let current: Option<String> =
        sqlx::query_scalar("SELECT role FROM memberships WHERE workspace_id = $1 AND user_id = $2")
            .bind(ws)
            .bind(user)
            .fetch_optional(&mut *conn)
            .await?;
    let current = current.as_deref().map(parse_role).transpose()?;
    if current == role {
        if role.is_some() {
            // The same role, now held by this grant.
            sqlx::query(
                "UPDATE memberships SET granted_by = $1 WHERE workspace_id = $2 AND user_id = $3",
            )
            .bind(granted_by)
            .bind(ws)
            .bind(user)
            .execute(&mut *conn)
            .await?;
        }
        return Ok(None);
    }
    if current == Some(Role::Owner) && owners(conn, ws).await? <= 1 {
        if strict {
            return Err(StoreError::Conflict {
                code: "last_owner",
                detail:
                    "the last owner cannot be removed or demoted; make someone else owner first"
                        .into(),
            });
        }
        tracing::warn!(
            workspace = ws,
            user,
            "a role claim would leave the workspace without an owner; kept"
        );
        return Ok(None);
    }
    let offset = next_offset(conn, ws).await?;
    let (kind, data, note) = match (current, role) {
        (None, Some(role)) => {
            sqlx::query(
                "INSERT INTO memberships (workspace_id, user_id, role, granted_by, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $5)",
            )
            .bind(ws)
            .bind(user)
            .bind(role.as_str())
            .bind(granted_by)
            .bind(now)
            .execute(&mut *conn)
            .await?;
            (
                EventKind::MemberAdded,
                json!({"user_id": user, "role": role, "granted_by": granted_by}),
                Some("member_added"),
            )
        }
        (Some(previous), Some(role)) => {
            sqlx::query(
                "UPDATE memberships SET role = $1, granted_by = $2, updated_at = $3 \
                 WHERE workspace_id = $4 AND user_id = $5",
            )
            .bind(role.as_str())
            .bind(granted_by)
            .bind(now)
            .bind(ws)
            .bind(user)
            .execute(&mut *conn)
            .await?;
            (
                EventKind::MemberRoleChanged,
                json!({"user_id": user, "role": role, "previous_role": previous, "granted_by": granted_by}),
                Some("role_changed"),
            )
        }
        (Some(previous), None) => {
            sqlx::query("DELETE FROM memberships WHERE workspace_id = $1 AND user_id = $2")
                .bind(ws)
                .bind(user)
                .execute(&mut *conn)
                .await?;
            (
                EventKind::MemberRemoved,
                json!({"user_id": user, "role": previous, "left": false, "granted_by": granted_by}),
                None,
            )
        }
        (None, None) => return Ok(None),
    };
    let ev = append(
        conn,
        event(ws, offset, kind, None, format!("user:{user}"), data, now),
    )
    .await?;
    if let Some(note) = note {
        notify(conn, &ev, &[(user, note)]).await?;
    }
    Ok(Some(MembershipChange {
        workspace_id: ws,
        user_id: user,
        role,
        event: ev,
    }))
}

#[derive(sqlx::FromRow)]
struct TokenRow {
    id: i64,
    name: String,
    scopes: String,
    user_id: Option<i64>,
    workspace_id: Option<i64>,
    expires_at: Option<i64>,
    last_used_at: Option<i64>,
    revoked_at: Option<i64>,
    created_at: i64,
}

impl From<TokenRow> for ApiToken {
    fn from(r: TokenRow) -> ApiToken {
        ApiToken {
            id: r.id,
            name: r.name,
            scopes: r.scopes.split_whitespace().map(str::to_string).collect(),
            user_id: r.user_id,
            workspace_id: r.workspace_id,
            expires_at: r.expires_at,
            last_used_at: r.last_used_at,
            revoked: r.revoked_at.is_some(),
            created_at: r.created_at,
        }
    }
}

#[async_trait]
impl Directory for SqlStore {
    async fn external_user(
        &self,
        issuer: &str,
        subject: &str,
        email: Option<&Email>,
        name: Option<&DisplayName>,
    ) -> StoreResult<User> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        let known: Option<i64> = sqlx::query_scalar(
            "SELECT user_id FROM external_identities WHERE issuer = $1 AND subject = $2",
        )
        .bind(issuer)
        .bind(subject)
        .fetch_optional(&mut *tx)
        .await?;
        let id = match known {
            Some(id) => {
                if let Some(name) = name {
                    sqlx::query(
                        "UPDATE users SET display_name = $1, updated_at = $2 \
                         WHERE id = $3 AND display_name <> $1",
                    )
                    .bind(name.as_str())
                    .bind(now)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                }
                if let Some(email) = email {
                    let changed: Option<String> =
                        sqlx::query_scalar("SELECT email FROM users WHERE id = $1 AND email <> $2")
                            .bind(id)
                            .bind(email.as_str())
                            .fetch_optional(&mut *tx)
                            .await?;
                    if changed.is_some() {
                        let taken: Option<i64> = sqlx::query_scalar(
                            "SELECT id FROM users WHERE email_key = $1 AND id <> $2",
                        )
                        .bind(email.key())
                        .bind(id)
                        .fetch_optional(&mut *tx)
                        .await?;
                        let key = match taken {
                            None => email.key().to_string(),
                            Some(_) => private_email_key(issuer, subject),
                        };
                        // The product vouches for the address it gives, when it is the
                        // account's alone.
                        let verified = (!key.starts_with("external:")).then_some(now);
                        sqlx::query(
                            "UPDATE users SET email = $1, email_key = $2, updated_at = $3, \
                             email_verified_at = $5 WHERE id = $4",
                        )
                        .bind(email.as_str())
                        .bind(key)
                        .bind(now)
                        .bind(id)
                        .bind(verified)
                        .execute(&mut *tx)
                        .await?;
                    }
                }
                id
            }
            None => {
                let display = name.map_or(subject, |n| n.as_str());
                let address = email.map_or("", |e| e.as_str());
                let mut key = match email {
                    Some(email) => {
                        let taken: Option<i64> =
                            sqlx::query_scalar("SELECT id FROM users WHERE email_key = $1")
                                .bind(email.key())
                                .fetch_optional(&mut *tx)
                                .await?;
                        taken.map_or_else(
                            || email.key().to_string(),
                            |_| private_email_key(issuer, subject),
                        )
                    }
                    None => private_email_key(issuer, subject),
                };
                if key.starts_with("external:") && email.is_some() {
                    tracing::warn!(
                        issuer,
                        subject,
                        "the product's user has an e-mail another account holds: it does not match them by e-mail"
                    );
                }
                let id: i64 = loop {
                    let inserted: Result<i64, sqlx::Error> = sqlx::query_scalar(
                        "INSERT INTO users (email, email_key, display_name, password_hash, created_at, updated_at, \
                         email_verified_at) VALUES ($1, $2, $3, $4, $5, $5, $6) RETURNING id",
                    )
                    .bind(address)
                    .bind(&key)
                    .bind(display)
                    .bind(NO_PASSWORD)
                    .bind(now)
                    .bind((!key.starts_with("external:")).then_some(now))
                    .fetch_one(&mut *tx)
                    .await;
                    match inserted {
                        Ok(id) => break id,
                        Err(e) if is_unique_violation(&e) && !key.starts_with("external:") => {
                            key = private_email_key(issuer, subject);
                        }
                        Err(e) => return Err(e.into()),
                    }
                };
                let linked = sqlx::query(
                    "INSERT INTO external_identities (issuer, subject, user_id, created_at) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(issuer)
                .bind(subject)
                .bind(id)
                .bind(now)
                .execute(&mut *tx)
                .await;
                match linked {
                    Ok(_) => id,
                    // Provisioned by another request at the same moment: theirs stands.
                    Err(e) if is_unique_violation(&e) => {
                        drop(tx);
                        return Box::pin(self.external_user(issuer, subject, email, name)).await;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        };
        #[derive(sqlx::FromRow)]
        struct Row {
            email: String,
            display_name: String,
            disabled_at: Option<i64>,
            email_verified_at: Option<i64>,
            created_at: i64,
        }
        let row: Row = sqlx::query_as(
            "SELECT email, display_name, disabled_at, email_verified_at, created_at FROM users WHERE id = $1",
        )
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(User {
            id,
            email: row.email,
            display_name: row.display_name,
            disabled: row.disabled_at.is_some(),
            email_verified: row.email_verified_at.is_some(),
            created_at: row.created_at,
        })
    }

    async fn external_user_id(&self, issuer: &str, subject: &str) -> StoreResult<Option<UserId>> {
        Ok(sqlx::query_scalar(
            "SELECT user_id FROM external_identities WHERE issuer = $1 AND subject = $2",
        )
        .bind(issuer)
        .bind(subject)
        .fetch_optional(&self.reader)
        .await?)
    }

    async fn external_subject(&self, user: UserId, issuer: &str) -> StoreResult<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT subject FROM external_identities WHERE user_id = $1 AND issuer = $2",
        )
        .bind(user)
        .bind(issuer)
        .fetch_optional(&self.reader)
        .await?)
    }

    async fn apply_role_claims(
        &self,
        user: UserId,
        issuer: &str,
        subject: &str,
        roles: &[(String, Role)],
        issued_at_ms: i64,
    ) -> StoreResult<Vec<MembershipChange>> {
        let mut tx = self.writer.begin().await?;
        let newest = sqlx::query(
            "UPDATE external_identities SET roles_issued_at = $1 \
             WHERE issuer = $2 AND subject = $3 AND user_id = $4 AND roles_issued_at <= $1",
        )
        .bind(issued_at_ms)
        .bind(issuer)
        .bind(subject)
        .bind(user)
        .execute(&mut *tx)
        .await?;
        if newest.rows_affected() == 0 {
            // An older token than one already applied: its claims are out of date.
            return Ok(Vec::new());
        }
        let mut wanted: Vec<(WorkspaceId, Role)> = Vec::new();
        for (external_id, role) in roles {
            // By the product's id for it, or by slug for a workspace made in Stoa.
            let id: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM workspaces WHERE external_id = $1 \
                 OR (external_id IS NULL AND slug = $1) ORDER BY external_id IS NULL LIMIT 1",
            )
            .bind(external_id)
            .fetch_optional(&mut *tx)
            .await?;
            match id {
                Some(id) => wanted.push((id, *role)),
                None => tracing::debug!(
                    external_id,
                    "a role claim names a workspace the directory does not have"
                ),
            }
        }
        // Each issuer takes back only what its own claims granted: a product's tokens and a
        // directory's groups do not undo each other.
        let tag = claims_tag(issuer);
        let granted: Vec<i64> = sqlx::query_scalar(
            "SELECT workspace_id FROM memberships WHERE user_id = $1 AND granted_by = $2",
        )
        .bind(user)
        .bind(&tag)
        .fetch_all(&mut *tx)
        .await?;
        let mut plan: Vec<(WorkspaceId, Option<Role>)> =
            wanted.iter().map(|(ws, role)| (*ws, Some(*role))).collect();
        plan.extend(
            granted
                .into_iter()
                .filter(|ws| !wanted.iter().any(|(w, _)| w == ws))
                .map(|ws| (ws, None)),
        );
        // One order for every transaction that locks several workspaces.
        plan.sort_by_key(|(ws, _)| *ws);
        plan.dedup_by_key(|(ws, _)| *ws);
        let mut changes = Vec::new();
        for (ws, role) in plan {
            if let Some(change) = set_role(&mut tx, ws, user, role, &tag, false).await? {
                changes.push(change);
            }
        }
        tx.commit().await?;
        Ok(changes)
    }

    async fn directory_workspace(
        &self,
        external_id: &str,
        name: &WorkspaceName,
        slug: Option<&Slug>,
    ) -> StoreResult<(Workspace, bool)> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        let existing: Option<i64> =
            sqlx::query_scalar("SELECT id FROM workspaces WHERE external_id = $1")
                .bind(external_id)
                .fetch_optional(&mut *tx)
                .await?;
        let slug_taken = |e: &sqlx::Error, slug: &str| {
            is_unique_violation(e).then(|| StoreError::Conflict {
                code: "slug_taken",
                detail: format!("the slug {slug:?} is already in use"),
            })
        };
        let (id, created) = match existing {
            Some(id) => {
                let before: (String, String) =
                    sqlx::query_as("SELECT name, slug FROM workspaces WHERE id = $1")
                        .bind(id)
                        .fetch_one(&mut *tx)
                        .await?;
                let new_slug = slug.map_or(before.1.clone(), |s| s.as_str().to_string());
                if before.0 != name.as_str() || before.1 != new_slug {
                    let offset = next_offset(&mut tx, id).await?;
                    let updated = sqlx::query(
                        "UPDATE workspaces SET name = $1, slug = $2, updated_at = $3 WHERE id = $4",
                    )
                    .bind(name.as_str())
                    .bind(&new_slug)
                    .bind(now)
                    .bind(id)
                    .execute(&mut *tx)
                    .await;
                    if let Err(e) = updated {
                        return Err(slug_taken(&e, &new_slug).unwrap_or(e.into()));
                    }
                    append(
                        &mut tx,
                        event(
                            id,
                            offset,
                            EventKind::WorkspaceUpdated,
                            None,
                            format!("workspace:{id}"),
                            json!({"name": name.as_str(), "slug": new_slug}),
                            now,
                        ),
                    )
                    .await?;
                }
                (id, false)
            }
            None => {
                let slug = super::workspaces::slug_for(&mut tx, name, slug).await?;
                let inserted: Result<i64, sqlx::Error> = sqlx::query_scalar(
                    "INSERT INTO workspaces (name, slug, external_id, last_offset, created_at, updated_at) \
                     VALUES ($1, $2, $3, 1, $4, $4) RETURNING id",
                )
                .bind(name.as_str())
                .bind(slug.as_str())
                .bind(external_id)
                .bind(now)
                .fetch_one(&mut *tx)
                .await;
                let id = match inserted {
                    Ok(id) => id,
                    Err(e) => {
                        // Another request created it a moment ago: read it again (the
                        // transaction given back first: SQLite has one writer connection).
                        drop(tx);
                        let again: Option<i64> =
                            sqlx::query_scalar("SELECT id FROM workspaces WHERE external_id = $1")
                                .bind(external_id)
                                .fetch_optional(&self.writer)
                                .await?;
                        if again.is_some() {
                            return Box::pin(self.directory_workspace(external_id, name, None))
                                .await;
                        }
                        return Err(slug_taken(&e, slug.as_str()).unwrap_or(e.into()));
                    }
                };
                append(
                    &mut tx,
                    event(
                        id,
                        1,
                        EventKind::WorkspaceCreated,
                        None,
                        format!("workspace:{id}"),
                        json!({"name": name.as_str(), "slug": slug.as_str(), "external_id": external_id}),
                        now,
                    ),
                )
                .await?;
                (id, true)
            }
        };
        #[derive(sqlx::FromRow)]
        struct Row {
            id: i64,
            name: String,
            slug: String,
            last_offset: i64,
            created_at: i64,
            updated_at: i64,
        }
        let r: Row = sqlx::query_as(
            "SELECT id, name, slug, last_offset, created_at, updated_at FROM workspaces WHERE id = $1",
        )
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((
            Workspace {
                id: r.id,
                name: r.name,
                slug: r.slug,
                last_offset: r.last_offset,
                created_at: r.created_at,
                updated_at: r.updated_at,
            },
            created,
        ))
    }

    async fn directory_membership(
        &self,
        external_id: &str,
        user: UserId,
        role: Option<Role>,
    ) -> StoreResult<(WorkspaceId, Option<MembershipChange>)> {
        let mut tx = self.writer.begin().await?;
        let ws: i64 = sqlx::query_scalar("SELECT id FROM workspaces WHERE external_id = $1")
            .bind(external_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound("workspace"))?;
        let change = set_role(&mut tx, ws, user, role, "directory", true).await?;
        tx.commit().await?;
        Ok((ws, change))
    }

    async fn create_api_token(
        &self,
        owner: Option<UserId>,
        workspace: Option<WorkspaceId>,
        name: &str,
        digest: &str,
        scopes: &[String],
        expires_at: Option<i64>,
    ) -> StoreResult<ApiToken> {
        let now = now_ms();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO api_tokens (name, digest, scopes, user_id, workspace_id, expires_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(name)
        .bind(digest)
        .bind(scopes.join(" "))
        .bind(owner)
        .bind(workspace)
        .bind(expires_at)
        .bind(now)
        .fetch_one(&self.writer)
        .await?;
        Ok(ApiToken {
            id,
            name: name.to_string(),
            scopes: scopes.to_vec(),
            user_id: owner,
            workspace_id: workspace,
            expires_at,
            last_used_at: None,
            revoked: false,
            created_at: now,
        })
    }

    async fn api_tokens_of(&self, user: UserId) -> StoreResult<Vec<ApiToken>> {
        let rows: Vec<TokenRow> = sqlx::query_as(
            "SELECT id, name, scopes, user_id, workspace_id, expires_at, last_used_at, revoked_at, \
             created_at FROM api_tokens WHERE user_id = $1 AND revoked_at IS NULL ORDER BY id DESC \
             LIMIT 1000",
        )
        .bind(user)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows.into_iter().map(ApiToken::from).collect())
    }

    async fn revoke_api_token(&self, user: UserId, id: i64) -> StoreResult<SessionEnd> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        let revoked = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(id)
        .bind(user)
        .execute(&mut *tx)
        .await?;
        if revoked.rows_affected() == 0 {
            return Err(StoreError::NotFound("api token"));
        }
        let session = api_token_session(id);
        let ended = super::accounts::end_sessions(
            &mut tx,
            user,
            Some(&session),
            None,
            None,
            "token_revoked",
        )
        .await?;
        tx.commit().await?;
        Ok(ended)
    }

    async fn api_token(&self, digest: &str) -> StoreResult<Option<ApiToken>> {
        let row: Option<TokenRow> = sqlx::query_as(
            "SELECT id, name, scopes, user_id, workspace_id, expires_at, last_used_at, revoked_at, \
             created_at FROM api_tokens WHERE digest = $1 AND revoked_at IS NULL",
        )
        .bind(digest)
        .fetch_optional(&self.reader)
        .await?;
        Ok(row.map(ApiToken::from))
    }

    async fn touch_api_token(&self, id: i64, at: i64) -> StoreResult<()> {
        sqlx::query(
            "UPDATE api_tokens SET last_used_at = $1 \
             WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $3)",
        )
        .bind(at)
        .bind(id)
        .bind(at - 60_000)
        .execute(&self.writer)
        .await?;
        Ok(())
    }
}
