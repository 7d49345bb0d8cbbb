//! Account self-service: the profile, an export of everything the account may read about
//! itself, and deletion (the row stays as "Deleted user", emptied of everything personal, so
//! what the person wrote keeps an author).

use serde_json::{json, Value};
use sqlx::{AnyConnection, Row};

use super::{append, event, parse_role, SqlStore};
use crate::domain::{now_ms, DisplayName, EventKind, UserId};
use crate::store::{Event, SessionEnd, StoreError, StoreResult, User};

/// The name a deleted account's contributions are shown under.
pub const DELETED_NAME: &str = "Deleted user";

/// Rows of one query as JSON objects, the named columns taken as text or integers.
async fn rows(
    conn: &mut AnyConnection,
    sql: &str,
    user: UserId,
    text: &[&str],
    numbers: &[&str],
) -> StoreResult<Vec<Value>> {
    let found = sqlx::query(sql).bind(user).fetch_all(&mut *conn).await?;
    Ok(found
        .iter()
        .map(|r| {
            let mut o = serde_json::Map::new();
            for c in text {
                let v: Option<String> = r.try_get(*c).ok().flatten();
                o.insert((*c).to_string(), v.map_or(Value::Null, Value::String));
            }
            for c in numbers {
                let v: Option<i64> = r.try_get(*c).ok().flatten();
                o.insert((*c).to_string(), v.map_or(Value::Null, Value::from));
            }
            Value::Object(o)
        })
        .collect())
}

impl SqlStore {
    pub(super) async fn export(&self, user: UserId) -> StoreResult<Value> {
        let mut conn = self.reader.acquire().await?;
        let account = rows(
            &mut conn,
            "SELECT email, display_name, notification_preferences, id, created_at, updated_at, \
             email_verified_at FROM users WHERE id = $1",
            user,
            &["email", "display_name", "notification_preferences"],
            &["id", "created_at", "updated_at", "email_verified_at"],
        )
        .await?
        .pop()
        .ok_or(StoreError::NotFound("user"))?;
        let q = |sql: &'static str| sql;
        let memberships = rows(
            &mut conn,
            q(
                "SELECT w.name AS workspace, m.role, m.granted_by, m.workspace_id, m.created_at \
               FROM memberships m JOIN workspaces w ON w.id = m.workspace_id WHERE m.user_id = $1 \
               ORDER BY m.workspace_id",
            ),
            user,
            &["workspace", "role", "granted_by"],
            &["workspace_id", "created_at"],
        )
        .await?;
        let comments = rows(
            &mut conn,
            q(
                "SELECT c.body, c.id, c.document_id, c.parent_id, c.created_at, c.updated_at \
               FROM comments c WHERE c.author_id = $1 ORDER BY c.id",
            ),
            user,
            &["body"],
            &["id", "document_id", "parent_id", "created_at", "updated_at"],
        )
        .await?;
        let documents = rows(
            &mut conn,
            q("SELECT d.title, e.document_id, e.edits FROM document_editors e \
               JOIN documents d ON d.id = e.document_id WHERE e.user_id = $1 ORDER BY e.document_id"),
            user,
            &["title"],
            &["document_id", "edits"],
        )
        .await?;
        let notifications = rows(
            &mut conn,
            q("SELECT kind, subject, payload, id, workspace_id, event_offset, actor_id, read_at, created_at \
               FROM notifications WHERE user_id = $1 ORDER BY id"),
            user,
            &["kind", "subject", "payload"],
            &["id", "workspace_id", "event_offset", "actor_id", "read_at", "created_at"],
        )
        .await?;
        let events = rows(
            &mut conn,
            q("SELECT kind, subject, payload, workspace_id, event_offset, created_at FROM events \
               WHERE actor_id = $1 ORDER BY created_at LIMIT 100000"),
            user,
            &["kind", "subject", "payload"],
            &["workspace_id", "event_offset", "created_at"],
        )
        .await?;
        let sessions = rows(
            &mut conn,
            q("SELECT id, created_at, revoked_at FROM refresh_families WHERE user_id = $1 ORDER BY created_at"),
            user,
            &["id"],
            &["created_at", "revoked_at"],
        )
        .await?;
        let identities = rows(
            &mut conn,
            q("SELECT issuer, subject, created_at FROM external_identities WHERE user_id = $1"),
            user,
            &["issuer", "subject"],
            &["created_at"],
        )
        .await?;
        let invitations = rows(
            &mut conn,
            q(
                "SELECT email, role, id, workspace_id, created_at, accepted_at, revoked_at \
               FROM invitations WHERE invited_by = $1 ORDER BY id",
            ),
            user,
            &["email", "role"],
            &[
                "id",
                "workspace_id",
                "created_at",
                "accepted_at",
                "revoked_at",
            ],
        )
        .await?;
        Ok(json!({
            "exported_at": crate::domain::format_timestamp(now_ms()),
            "account": account,
            "memberships": memberships,
            "documents_edited": documents,
            "comments": comments,
            "notifications": notifications,
            "events": events,
            "sessions": sessions,
            "external_identities": identities,
            "invitations_sent": invitations,
        }))
    }

    pub(super) async fn delete(&self, user: UserId) -> StoreResult<(SessionEnd, Vec<Event>)> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        let email: Option<String> =
            sqlx::query_scalar("SELECT email FROM users WHERE id = $1 AND deleted_at IS NULL")
                .bind(user)
                .fetch_optional(&mut *tx)
                .await?;
        let email = email.ok_or(StoreError::NotFound("user"))?;
        let owned: Vec<(i64, String)> = sqlx::query_as(
            "SELECT w.id, w.name FROM memberships m JOIN workspaces w ON w.id = m.workspace_id \
             WHERE m.user_id = $1 AND m.role = 'owner' AND NOT EXISTS (SELECT 1 FROM memberships o \
             WHERE o.workspace_id = m.workspace_id AND o.role = 'owner' AND o.user_id <> $1) \
             ORDER BY w.id",
        )
        .bind(user)
        .fetch_all(&mut *tx)
        .await?;
        if !owned.is_empty() {
            let names: Vec<String> = owned
                .iter()
                .map(|(id, name)| format!("{name:?} (id {id})"))
                .collect();
            return Err(StoreError::Conflict {
                code: "sole_owner",
                detail: format!(
                    "you are the only owner of {}: make someone else owner, or delete it, first",
                    names.join(", ")
                ),
            });
        }
        // Each membership ends as a removal the others see, in workspace order (one lock
        // order for every transaction that takes several).
        let memberships: Vec<(i64, String)> = sqlx::query_as(
            "SELECT workspace_id, role FROM memberships WHERE user_id = $1 ORDER BY workspace_id",
        )
        .bind(user)
        .fetch_all(&mut *tx)
        .await?;
        let mut events = Vec::new();
        for (ws, role) in memberships {
            let offset: i64 = sqlx::query_scalar(
                "UPDATE workspaces SET last_offset = last_offset + 1 WHERE id = $1 RETURNING last_offset",
            )
            .bind(ws)
            .fetch_one(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM memberships WHERE workspace_id = $1 AND user_id = $2")
                .bind(ws)
                .bind(user)
                .execute(&mut *tx)
                .await?;
            let role = parse_role(&role)?;
            events.push(
                append(
                    &mut tx,
                    event(
                        ws,
                        offset,
                        EventKind::MemberRemoved,
                        user,
                        format!("user:{user}"),
                        json!({"user_id": user, "role": role, "left": true, "account_deleted": true}),
                        now,
                    ),
                )
                .await?,
            );
        }
        for sql in [
            "DELETE FROM notifications WHERE user_id = $1",
            "DELETE FROM comment_mentions WHERE user_id = $1",
            "DELETE FROM external_identities WHERE user_id = $1",
            "DELETE FROM email_tokens WHERE user_id = $1",
            "DELETE FROM api_tokens WHERE user_id = $1",
            "DELETE FROM refresh_tokens WHERE user_id = $1",
        ] {
            sqlx::query(sql).bind(user).execute(&mut *tx).await?;
        }
        sqlx::query(
            "UPDATE refresh_families SET revoked_at = COALESCE(revoked_at, $1) WHERE user_id = $2",
        )
        .bind(now)
        .bind(user)
        .execute(&mut *tx)
        .await?;
        // The invitation that brought them in names their address.
        sqlx::query("UPDATE invitations SET email = '', email_key = $1 WHERE accepted_by = $2")
            .bind(format!("deleted:{user}"))
            .bind(user)
            .execute(&mut *tx)
            .await?;
        // So do the log's events about invitations sent to it.
        if !email.is_empty() {
            let escaped: String = email
                .chars()
                .flat_map(|c| match c {
                    '\\' | '%' | '_' => vec!['\\', c],
                    c => vec![c],
                })
                .collect();
            let pattern = format!("%{escaped}%");
            let named: Vec<(i64, i64, String)> = sqlx::query_as(
                "SELECT workspace_id, event_offset, payload FROM events \
                 WHERE kind LIKE 'invitation.%' AND payload LIKE $1 ESCAPE '\\'",
            )
            .bind(pattern)
            .fetch_all(&mut *tx)
            .await?;
            for (ws, offset, payload) in named {
                let mut data: Value = serde_json::from_str(&payload).unwrap_or(Value::Null);
                if data.get("email").and_then(Value::as_str) == Some(email.as_str()) {
                    data["email"] = Value::String(String::new());
                    sqlx::query(
                        "UPDATE events SET payload = $1 WHERE workspace_id = $2 AND event_offset = $3",
                    )
                    .bind(data.to_string())
                    .bind(ws)
                    .bind(offset)
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        sqlx::query(
            "UPDATE users SET email = '', email_key = $1, display_name = $2, password_hash = $3, \
             notification_preferences = NULL, email_verified_at = NULL, \
             disabled_at = COALESCE(disabled_at, $4), deleted_at = $4, updated_at = $4 WHERE id = $5",
        )
        .bind(format!("deleted:{user}"))
        .bind(DELETED_NAME)
        .bind(super::directory::NO_PASSWORD)
        .bind(now)
        .bind(user)
        .execute(&mut *tx)
        .await?;
        let ended =
            super::accounts::end_sessions(&mut tx, user, None, Some(now), None, "account_deleted")
                .await?;
        tx.commit().await?;
        Ok((ended, events))
    }

    pub(super) async fn profile(
        &self,
        user: UserId,
        name: Option<&DisplayName>,
        preferences: Option<&Value>,
    ) -> StoreResult<User> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        if let Some(name) = name {
            sqlx::query("UPDATE users SET display_name = $1, updated_at = $2 WHERE id = $3")
                .bind(name.as_str())
                .bind(now)
                .bind(user)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(p) = preferences {
            sqlx::query(
                "UPDATE users SET notification_preferences = $1, updated_at = $2 WHERE id = $3",
            )
            .bind(p.to_string())
            .bind(now)
            .bind(user)
            .execute(&mut *tx)
            .await?;
        }
        let row: Option<super::accounts::UserRow> = sqlx::query_as(
            "SELECT id, email, display_name, disabled_at, email_verified_at, created_at \
             FROM users WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(user)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        row.map(User::from).ok_or(StoreError::NotFound("user"))
    }

    pub(super) async fn preferences(&self, user: UserId) -> StoreResult<Value> {
        let p: Option<Option<String>> =
            sqlx::query_scalar("SELECT notification_preferences FROM users WHERE id = $1")
                .bind(user)
                .fetch_optional(&self.reader)
                .await?;
        Ok(p.flatten()
            .and_then(|p| serde_json::from_str(&p).ok())
            .unwrap_or_else(|| json!({})))
    }
}
