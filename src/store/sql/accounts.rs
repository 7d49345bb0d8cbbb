//! Accounts: users and their refresh tokens (one family per login, revoked by one flag on
//! the family's row). Lookups that can be answered from a reader never take the writer, so
//! made-up tokens cannot hold up anyone's writes.

use async_trait::async_trait;

use super::{is_unique_violation, SqlStore};
use crate::domain::{now_ms, DisplayName, Email, UserId};
use crate::store::{Accounts, Rotation, SessionEnd, StoreError, StoreResult, User};

/// Inside a write transaction: records the end of one login (`session`) or of every token
/// of `user` issued by `before_ms` but those of `except`.
pub(super) async fn end_sessions(
    conn: &mut sqlx::AnyConnection,
    user: UserId,
    session: Option<&str>,
    before_ms: Option<i64>,
    except: Option<&str>,
    reason: &str,
) -> StoreResult<SessionEnd> {
    let now = now_ms();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO session_ends (user_id, session, before_ms, except_session, reason, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(user)
    .bind(session)
    .bind(before_ms)
    .bind(except)
    .bind(reason)
    .bind(now)
    .fetch_one(&mut *conn)
    .await?;
    Ok(SessionEnd {
        id,
        user_id: user,
        session: session.map(str::to_string),
        before_ms,
        except: except.map(str::to_string),
        reason: reason.to_string(),
        created_at: now,
    })
}

/// Spends a mailed link for `purpose`, once and before it expires: its user and address.
async fn spend_email_token(
    conn: &mut sqlx::AnyConnection,
    digest: &str,
    purpose: &str,
    now: i64,
) -> StoreResult<Option<(UserId, String)>> {
    Ok(sqlx::query_as(
        "UPDATE email_tokens SET used_at = $1 \
         WHERE digest = $2 AND purpose = $3 AND used_at IS NULL AND expires_at > $1 \
         RETURNING user_id, email",
    )
    .bind(now)
    .bind(digest)
    .bind(purpose)
    .fetch_optional(&mut *conn)
    .await?)
}

#[derive(sqlx::FromRow)]
pub(super) struct UserRow {
    id: i64,
    email: String,
    display_name: String,
    disabled_at: Option<i64>,
    email_verified_at: Option<i64>,
    created_at: i64,
}

impl From<UserRow> for User {
    fn from(r: UserRow) -> User {
        User {
            id: r.id,
            email: r.email,
            display_name: r.display_name,
            disabled: r.disabled_at.is_some(),
            email_verified: r.email_verified_at.is_some(),
            created_at: r.created_at,
        }
    }
}

#[async_trait]
impl Accounts for SqlStore {
    async fn create_user(
        &self,
        email: &Email,
        name: &DisplayName,
        password_hash: &str,
    ) -> StoreResult<User> {
        let now = now_ms();
        let id: Result<i64, sqlx::Error> = sqlx::query_scalar(
            "INSERT INTO users (email, email_key, display_name, password_hash, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5) RETURNING id",
        )
        .bind(email.as_str())
        .bind(email.key())
        .bind(name.as_str())
        .bind(password_hash)
        .bind(now)
        .fetch_one(&self.writer)
        .await;
        match id {
            Ok(id) => Ok(User {
                id,
                email: email.as_str().to_string(),
                display_name: name.as_str().to_string(),
                disabled: false,
                email_verified: false,
                created_at: now,
            }),
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict {
                code: "email_taken",
                detail: "an account with this email already exists".into(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    async fn user(&self, id: UserId) -> StoreResult<Option<User>> {
        let row: Option<UserRow> = sqlx::query_as(
            "SELECT id, email, display_name, disabled_at, email_verified_at, created_at FROM users WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.reader)
        .await?;
        Ok(row.map(User::from))
    }

    async fn user_credentials(&self, email_key: &str) -> StoreResult<Option<(User, String)>> {
        #[derive(sqlx::FromRow)]
        struct Row {
            #[sqlx(flatten)]
            user: UserRow,
            password_hash: String,
        }
        let row: Option<Row> = sqlx::query_as(
            "SELECT id, email, display_name, disabled_at, email_verified_at, created_at, password_hash \
             FROM users WHERE email_key = $1",
        )
        .bind(email_key)
        .fetch_optional(&self.reader)
        .await?;
        Ok(row.map(|r| (User::from(r.user), r.password_hash)))
    }

    async fn insert_refresh_token(
        &self,
        user_id: UserId,
        family_id: &str,
        token_hash: &str,
        expires_at: i64,
        method: Option<&str>,
    ) -> StoreResult<()> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        sqlx::query(
            "INSERT INTO refresh_families (id, user_id, created_at, method) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(family_id)
        .bind(user_id)
        .bind(now)
        .bind(method)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO refresh_tokens (user_id, family_id, token_hash, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(user_id)
        .bind(family_id)
        .bind(token_hash)
        .bind(now)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn rotate_refresh_token(
        &self,
        presented_hash: &str,
        new_hash: &str,
        new_expires_at: i64,
        reuse_interval_ms: i64,
    ) -> StoreResult<Rotation> {
        let now = now_ms();
        // Looked up on a reader first: a token that is unknown, expired or of a revoked
        // login never takes the (on SQLite, single) writer, so a flood of made-up tokens
        // cannot hold up anyone's writes.
        let found: Option<(String, i64, Option<i64>, Option<i64>)> = sqlx::query_as(
            "SELECT t.family_id, t.expires_at, t.used_at, f.revoked_at \
             FROM refresh_tokens t JOIN refresh_families f ON f.id = t.family_id \
             WHERE t.token_hash = $1",
        )
        .bind(presented_hash)
        .fetch_optional(&self.reader)
        .await?;
        let Some((family_id, expires_at, used_at, revoked)) = found else {
            return Ok(Rotation::Invalid);
        };
        if expires_at <= now {
            return Ok(Rotation::Invalid);
        }
        if revoked.is_some() {
            // A spent token of a revoked login is still a replay (nothing left to revoke).
            return Ok(match used_at {
                Some(_) => Rotation::Reused { ended: None },
                None => Rotation::Invalid,
            });
        }
        let mut tx = self.writer.begin().await?;
        // Lock the family for the rest of the transaction (a no-op update takes the row
        // lock on PostgreSQL; SQLite's single writer serialises anyway). A revocation that
        // got there first leaves nothing to lock.
        let live: Option<i64> = sqlx::query_scalar(
            "UPDATE refresh_families SET revoked_at = revoked_at \
             WHERE id = $1 AND revoked_at IS NULL RETURNING user_id",
        )
        .bind(&family_id)
        .fetch_optional(&mut *tx)
        .await?;
        if live.is_none() {
            // Revoked since the lookup: a replay if the token was spent meanwhile.
            let spent: Option<Option<i64>> =
                sqlx::query_scalar("SELECT used_at FROM refresh_tokens WHERE token_hash = $1")
                    .bind(presented_hash)
                    .fetch_optional(&mut *tx)
                    .await?;
            return Ok(match spent {
                Some(Some(_)) => Rotation::Reused { ended: None },
                _ => Rotation::Invalid,
            });
        }
        // Spending is a single conditional UPDATE, so two concurrent presentations of the
        // same token cannot both spend it.
        let spent: Option<i64> = sqlx::query_scalar(
            "UPDATE refresh_tokens SET used_at = $1, successor_hash = $3 \
             WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1 \
             RETURNING user_id",
        )
        .bind(now)
        .bind(presented_hash)
        .bind(new_hash)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(user_id) = spent {
            let disabled: Option<Option<i64>> =
                sqlx::query_scalar("SELECT disabled_at FROM users WHERE id = $1")
                    .bind(user_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            if !matches!(disabled, Some(None)) {
                tx.commit().await?;
                return Ok(Rotation::Invalid);
            }
            sqlx::query(
                "INSERT INTO refresh_tokens (user_id, family_id, token_hash, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(user_id)
            .bind(&family_id)
            .bind(new_hash)
            .bind(now)
            .bind(new_expires_at)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            return Ok(Rotation::Rotated { user_id, family_id });
        }
        // Spent already. Within the reuse interval, the same spent token asking for the
        // same successor (the caller derives it from the token) gets it again, as long as
        // that successor has not been used itself: the honest race of two tabs, or a retry
        // after a lost response. Anything else is a replay: the whole login is revoked.
        let previous: Option<(i64, Option<i64>, Option<String>)> = sqlx::query_as(
            "SELECT user_id, used_at, successor_hash FROM refresh_tokens WHERE token_hash = $1",
        )
        .bind(presented_hash)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((user_id, Some(used_at), Some(successor))) = previous {
            if now - used_at < reuse_interval_ms && successor == new_hash {
                let successor_live: Option<i64> = sqlx::query_scalar(
                    "SELECT id FROM refresh_tokens \
                     WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2",
                )
                .bind(new_hash)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
                if successor_live.is_some() {
                    tx.commit().await?;
                    return Ok(Rotation::Rotated { user_id, family_id });
                }
            }
        }
        let owner: Option<i64> = sqlx::query_scalar(
            "UPDATE refresh_families SET revoked_at = $1 WHERE id = $2 RETURNING user_id",
        )
        .bind(now)
        .bind(&family_id)
        .fetch_optional(&mut *tx)
        .await?;
        // The login's access tokens end with it: whoever replayed the token may hold one.
        let ended = match owner {
            Some(user) => Some(
                end_sessions(
                    &mut tx,
                    user,
                    Some(&family_id),
                    None,
                    None,
                    "refresh_token_reused",
                )
                .await?,
            ),
            None => None,
        };
        tx.commit().await?;
        Ok(Rotation::Reused { ended })
    }

    async fn revoke_refresh_family(&self, presented_hash: &str) -> StoreResult<Option<SessionEnd>> {
        // Read first, so that unknown tokens never take the writer.
        let family: Option<(String, Option<i64>)> = sqlx::query_as(
            "SELECT t.family_id, f.revoked_at \
             FROM refresh_tokens t JOIN refresh_families f ON f.id = t.family_id \
             WHERE t.token_hash = $1",
        )
        .bind(presented_hash)
        .fetch_optional(&self.reader)
        .await?;
        let Some((family, None)) = family else {
            return Ok(None);
        };
        let mut tx = self.writer.begin().await?;
        let owner: Option<i64> = sqlx::query_scalar(
            "UPDATE refresh_families SET revoked_at = $1 \
             WHERE id = $2 AND revoked_at IS NULL RETURNING user_id",
        )
        .bind(now_ms())
        .bind(&family)
        .fetch_optional(&mut *tx)
        .await?;
        let ended = match owner {
            Some(user) => {
                Some(end_sessions(&mut tx, user, Some(&family), None, None, "logged_out").await?)
            }
            None => None,
        };
        tx.commit().await?;
        Ok(ended)
    }

    async fn password_hash(&self, user: UserId) -> StoreResult<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
                .bind(user)
                .fetch_optional(&self.reader)
                .await?,
        )
    }

    fn require_verified_email(&self, on: bool) {
        self.require_verified
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    async fn issue_email_token(
        &self,
        user: UserId,
        purpose: &str,
        email: &str,
        digest: &str,
        expires_at: i64,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO email_tokens (digest, purpose, user_id, email, expires_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(digest)
        .bind(purpose)
        .bind(user)
        .bind(email)
        .bind(expires_at)
        .bind(now_ms())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn verify_email(&self, digest: &str) -> StoreResult<Option<User>> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        let Some((user, email)) = spend_email_token(&mut tx, digest, "verify_email", now).await?
        else {
            return Ok(None);
        };
        let row: Option<UserRow> = sqlx::query_as(
            "UPDATE users SET email_verified_at = COALESCE(email_verified_at, $1), updated_at = $1 \
             WHERE id = $2 AND email = $3 \
             RETURNING id, email, display_name, disabled_at, email_verified_at, created_at",
        )
        .bind(now)
        .bind(user)
        .bind(&email)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(row.map(User::from))
    }

    async fn reset_password(
        &self,
        digest: &str,
        password_hash: &str,
    ) -> StoreResult<Option<SessionEnd>> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        let Some((user, email)) = spend_email_token(&mut tx, digest, "reset_password", now).await?
        else {
            return Ok(None);
        };
        // Following the link proved the address too.
        sqlx::query(
            "UPDATE users SET password_hash = $1, updated_at = $2, \
             email_verified_at = CASE WHEN email = $4 THEN COALESCE(email_verified_at, $2) \
             ELSE email_verified_at END WHERE id = $3",
        )
        .bind(password_hash)
        .bind(now)
        .bind(user)
        .bind(&email)
        .execute(&mut *tx)
        .await?;
        // Every link of the account spent with it: an older reset mail is void now.
        sqlx::query(
            "UPDATE email_tokens SET used_at = $1 \
             WHERE user_id = $2 AND purpose = 'reset_password' AND used_at IS NULL",
        )
        .bind(now)
        .bind(user)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE refresh_families SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(user)
        .execute(&mut *tx)
        .await?;
        let ended = end_sessions(&mut tx, user, None, Some(now), None, "password_reset").await?;
        tx.commit().await?;
        Ok(Some(ended))
    }

    async fn user_by_email(&self, email_key: &str) -> StoreResult<Option<User>> {
        let row: Option<UserRow> = sqlx::query_as(
            "SELECT id, email, display_name, disabled_at, email_verified_at, created_at \
             FROM users WHERE email_key = $1",
        )
        .bind(email_key)
        .fetch_optional(&self.reader)
        .await?;
        Ok(row.map(User::from))
    }

    async fn notification_preferences(&self, user: UserId) -> StoreResult<serde_json::Value> {
        self.preferences(user).await
    }

    async fn update_profile(
        &self,
        user: UserId,
        name: Option<&DisplayName>,
        preferences: Option<&serde_json::Value>,
    ) -> StoreResult<User> {
        self.profile(user, name, preferences).await
    }

    async fn export_account(&self, user: UserId) -> StoreResult<serde_json::Value> {
        self.export(user).await
    }

    async fn delete_account(
        &self,
        user: UserId,
    ) -> StoreResult<(SessionEnd, Vec<crate::store::Event>)> {
        self.delete(user).await
    }

    async fn change_password(
        &self,
        user: UserId,
        password_hash: &str,
        keep: Option<&str>,
    ) -> StoreResult<SessionEnd> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        let changed =
            sqlx::query("UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3")
                .bind(password_hash)
                .bind(now)
                .bind(user)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        if changed == 0 {
            return Err(StoreError::NotFound("user"));
        }
        sqlx::query(
            "UPDATE refresh_families SET revoked_at = $1 \
             WHERE user_id = $2 AND revoked_at IS NULL AND id <> $3",
        )
        .bind(now)
        .bind(user)
        .bind(keep.unwrap_or_default())
        .execute(&mut *tx)
        .await?;
        let ended = end_sessions(&mut tx, user, None, Some(now), keep, "password_changed").await?;
        tx.commit().await?;
        Ok(ended)
    }

    async fn set_disabled(
        &self,
        email_key: &str,
        disabled: bool,
    ) -> StoreResult<Option<(User, Option<SessionEnd>)>> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        let row: Option<UserRow> = sqlx::query_as(
            "UPDATE users SET disabled_at = CASE WHEN $1 THEN COALESCE(disabled_at, $2) ELSE NULL END, \
             updated_at = $2 WHERE email_key = $3 \
             RETURNING id, email, display_name, disabled_at, email_verified_at, created_at",
        )
        .bind(disabled)
        .bind(now)
        .bind(email_key)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let user = User::from(row);
        let ended = if disabled {
            sqlx::query(
                "UPDATE refresh_families SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(user.id)
            .execute(&mut *tx)
            .await?;
            Some(end_sessions(&mut tx, user.id, None, Some(now), None, "account_disabled").await?)
        } else {
            None
        };
        tx.commit().await?;
        Ok(Some((user, ended)))
    }

    async fn session_ends_after(&self, after: i64, since: i64) -> StoreResult<Vec<SessionEnd>> {
        #[allow(clippy::type_complexity)]
        let rows: Vec<(
            i64,
            i64,
            Option<String>,
            Option<i64>,
            Option<String>,
            String,
            i64,
        )> = sqlx::query_as(
            "SELECT id, user_id, session, before_ms, except_session, reason, created_at \
                 FROM session_ends WHERE id > $1 AND created_at >= $2 ORDER BY id",
        )
        .bind(after)
        .bind(since)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(id, user_id, session, before_ms, except, reason, created_at)| SessionEnd {
                    id,
                    user_id,
                    session,
                    before_ms,
                    except,
                    reason,
                    created_at,
                },
            )
            .collect())
    }

    async fn prune_session_ends(&self, before: i64) -> StoreResult<u64> {
        let mut conn = self.writer.acquire().await?;
        Ok(
            sqlx::query("DELETE FROM session_ends WHERE created_at < $1")
                .bind(before)
                .execute(&mut *conn)
                .await?
                .rows_affected(),
        )
    }

    async fn prune_refresh_tokens(&self, now: i64, spent_before: i64) -> StoreResult<u64> {
        let mut tx = self.writer.begin().await?;
        let tokens = sqlx::query(
            "DELETE FROM refresh_tokens WHERE expires_at <= $1 OR used_at < $2 \
             OR family_id IN (SELECT id FROM refresh_families WHERE revoked_at < $2)",
        )
        .bind(now)
        .bind(spent_before)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query(
            "DELETE FROM refresh_families WHERE NOT EXISTS \
             (SELECT 1 FROM refresh_tokens t WHERE t.family_id = refresh_families.id)",
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(tokens)
    }
}
