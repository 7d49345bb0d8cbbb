//! Single sign-on: sign-ins in flight, accounts found or made by a provider's verified
//! address, and the workspaces that require a provider for their members' domain.

use async_trait::async_trait;

use super::accounts::end_sessions;
use super::directory::NO_PASSWORD;
use super::{is_unique_violation, SqlStore};
use crate::domain::{now_ms, DisplayName, Email, UserId, WorkspaceId};
use crate::store::{
    Directory, OidcFlow, SessionEnd, SessionInfo, SingleSignOn, StoreResult, User, WorkspaceSso,
};

#[derive(sqlx::FromRow)]
struct FlowRow {
    id: String,
    kind: String,
    provider: String,
    browser: String,
    nonce: Option<String>,
    verifier: Option<String>,
    next_path: Option<String>,
    user_id: Option<i64>,
    expires_at: i64,
}

impl From<FlowRow> for OidcFlow {
    fn from(r: FlowRow) -> OidcFlow {
        OidcFlow {
            id: r.id,
            kind: r.kind,
            provider: r.provider,
            browser: r.browser,
            nonce: r.nonce,
            verifier: r.verifier,
            next_path: r.next_path,
            user_id: r.user_id,
            expires_at: r.expires_at,
        }
    }
}

/// The domain of an address, in lower case.
pub fn email_domain(email: &str) -> Option<String> {
    email
        .rsplit_once('@')
        .map(|(_, d)| d.to_ascii_lowercase())
        .filter(|d| !d.is_empty())
}

#[async_trait]
impl SingleSignOn for SqlStore {
    async fn insert_oidc_flow(&self, flow: &OidcFlow) -> StoreResult<()> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        sqlx::query("DELETE FROM oidc_flows WHERE expires_at <= $1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO oidc_flows (id, kind, provider, browser, nonce, verifier, next_path, \
             user_id, expires_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&flow.id)
        .bind(&flow.kind)
        .bind(&flow.provider)
        .bind(&flow.browser)
        .bind(&flow.nonce)
        .bind(&flow.verifier)
        .bind(&flow.next_path)
        .bind(flow.user_id)
        .bind(flow.expires_at)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn take_oidc_flow(
        &self,
        id: &str,
        kind: &str,
        now: i64,
    ) -> StoreResult<Option<OidcFlow>> {
        // Unknown ids never take the writer.
        let known: Option<i64> =
            sqlx::query_scalar("SELECT expires_at FROM oidc_flows WHERE id = $1 AND kind = $2")
                .bind(id)
                .bind(kind)
                .fetch_optional(&self.reader)
                .await?;
        if known.is_none() {
            return Ok(None);
        }
        let row: Option<FlowRow> = sqlx::query_as(
            "DELETE FROM oidc_flows WHERE id = $1 AND kind = $2 \
             RETURNING id, kind, provider, browser, nonce, verifier, next_path, user_id, expires_at",
        )
        .bind(id)
        .bind(kind)
        .fetch_optional(&self.writer)
        .await?;
        Ok(row.map(OidcFlow::from).filter(|f| f.expires_at > now))
    }

    async fn sso_user(
        &self,
        issuer: &str,
        subject: &str,
        email: Option<&Email>,
        name: Option<&DisplayName>,
    ) -> StoreResult<(User, Option<SessionEnd>)> {
        if self.external_user_id(issuer, subject).await?.is_some() {
            return Ok((
                self.external_user(issuer, subject, email, name).await?,
                None,
            ));
        }
        let Some(email) = email else {
            return Ok((self.external_user(issuer, subject, None, name).await?, None));
        };
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        let holder: Option<(i64, Option<i64>)> = sqlx::query_as(
            "SELECT id, email_verified_at FROM users WHERE email_key = $1 AND deleted_at IS NULL",
        )
        .bind(email.key())
        .fetch_optional(&mut *tx)
        .await?;
        let Some((id, verified_at)) = holder else {
            drop(tx);
            return Ok((
                self.external_user(issuer, subject, Some(email), name)
                    .await?,
                None,
            ));
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
            Ok(_) => {}
            // Linked by another sign-in at the same moment: that link stands.
            Err(e) if is_unique_violation(&e) => {
                drop(tx);
                return Ok((self.external_user(issuer, subject, None, name).await?, None));
            }
            Err(e) => return Err(e.into()),
        }
        let ended = if verified_at.is_none() {
            // Whoever registered this address never proved it; the provider has. What they
            // could sign in with ends here.
            sqlx::query(
                "UPDATE users SET password_hash = $1, email_verified_at = $2, updated_at = $2 \
                 WHERE id = $3",
            )
            .bind(NO_PASSWORD)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE refresh_families SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            Some(end_sessions(&mut tx, id, None, Some(now), None, "account_claimed").await?)
        } else {
            None
        };
        tx.commit().await?;
        // The name, from the provider.
        let user = self.external_user(issuer, subject, None, name).await?;
        Ok((user, ended))
    }

    async fn session_info(&self, family: &str) -> StoreResult<Option<SessionInfo>> {
        let row: Option<(Option<String>, i64)> =
            sqlx::query_as("SELECT method, created_at FROM refresh_families WHERE id = $1")
                .bind(family)
                .fetch_optional(&self.reader)
                .await?;
        Ok(row.map(|(method, created_at)| SessionInfo { method, created_at }))
    }

    async fn sso_requirement(&self, user: UserId) -> StoreResult<Option<String>> {
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT s.provider, s.domains, u.email FROM workspace_sso s \
             JOIN memberships m ON m.workspace_id = s.workspace_id \
             JOIN users u ON u.id = m.user_id \
             WHERE m.user_id = $1 ORDER BY s.workspace_id",
        )
        .bind(user)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows.into_iter().find_map(|(provider, domains, email)| {
            let domain = email_domain(&email)?;
            domains
                .split_ascii_whitespace()
                .any(|d| d == domain)
                .then_some(provider)
        }))
    }

    async fn workspace_sso(&self, workspace: WorkspaceId) -> StoreResult<Option<WorkspaceSso>> {
        let row: Option<(String, String, i64)> = sqlx::query_as(
            "SELECT provider, domains, updated_at FROM workspace_sso WHERE workspace_id = $1",
        )
        .bind(workspace)
        .fetch_optional(&self.reader)
        .await?;
        Ok(row.map(|(provider, domains, updated_at)| WorkspaceSso {
            provider,
            domains: domains
                .split_ascii_whitespace()
                .map(str::to_string)
                .collect(),
            updated_at,
        }))
    }

    async fn set_workspace_sso(
        &self,
        workspace: WorkspaceId,
        rule: Option<(&str, &[String])>,
    ) -> StoreResult<Option<WorkspaceSso>> {
        let now = now_ms();
        match rule {
            None => {
                sqlx::query("DELETE FROM workspace_sso WHERE workspace_id = $1")
                    .bind(workspace)
                    .execute(&self.writer)
                    .await?;
                Ok(None)
            }
            Some((provider, domains)) => {
                sqlx::query(
                    "INSERT INTO workspace_sso (workspace_id, provider, domains, updated_at) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (workspace_id) DO UPDATE \
                     SET provider = excluded.provider, domains = excluded.domains, \
                     updated_at = excluded.updated_at",
                )
                .bind(workspace)
                .bind(provider)
                .bind(domains.join(" "))
                .bind(now)
                .execute(&self.writer)
                .await?;
                Ok(Some(WorkspaceSso {
                    provider: provider.to_string(),
                    domains: domains.to_vec(),
                    updated_at: now,
                }))
            }
        }
    }

    async fn members_in_domains(
        &self,
        workspace: WorkspaceId,
        domains: &[String],
    ) -> StoreResult<Vec<UserId>> {
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT u.id, u.email FROM memberships m JOIN users u ON u.id = m.user_id \
             WHERE m.workspace_id = $1",
        )
        .bind(workspace)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .into_iter()
            .filter(|(_, email)| email_domain(email).is_some_and(|d| domains.contains(&d)))
            .map(|(id, _)| id)
            .collect())
    }

    async fn end_sessions_not_by(
        &self,
        user: UserId,
        method: &str,
        reason: &str,
    ) -> StoreResult<Vec<SessionEnd>> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        let families: Vec<String> = sqlx::query_scalar(
            "UPDATE refresh_families SET revoked_at = $1 \
             WHERE user_id = $2 AND revoked_at IS NULL AND (method IS NULL OR method <> $3) \
             RETURNING id",
        )
        .bind(now)
        .bind(user)
        .bind(method)
        .fetch_all(&mut *tx)
        .await?;
        let mut ends = Vec::with_capacity(families.len());
        for family in &families {
            ends.push(end_sessions(&mut tx, user, Some(family), None, None, reason).await?);
        }
        tx.commit().await?;
        Ok(ends)
    }
}
