//! Who a token stands for: Stoa's own access tokens, and the tokens of the product Stoa is
//! built into (`auth.external`), whose users are provisioned on first sight and whose role
//! claims are applied as memberships. REST, `/socket` (at connect and at every
//! `access_token`) and `/yjs` all ask here.

use std::sync::{Arc, OnceLock};

use crate::auth::external::{ExternalIdentity, ExternalTokens, Seen, SeenTokens};
use crate::auth::{AccessClaims, JwtKeys, TokenError};
use crate::domain::{DisplayName, Email};
use crate::realtime::Realtime;
use crate::store::{ApiToken, Store, StoreError};

/// Why a token was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("this account is disabled")]
    Disabled,
    /// The database could not be asked; the client should retry.
    #[error("the check could not be made: {0}")]
    Unavailable(StoreError),
}

/// What an API token may do: its scopes (`read`, `write`, `admin`: each includes the ones
/// before it) and, for a workspace token, the one workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenGrant {
    pub id: i64,
    pub scopes: Vec<String>,
    pub workspace: Option<i64>,
}

impl TokenGrant {
    /// Whether the token's scopes cover `need` (`read`, `write` or `admin`).
    pub fn allows(&self, need: &str) -> bool {
        let rank = |s: &str| match s {
            "read" => 1,
            "write" => 2,
            "admin" => 3,
            _ => 0,
        };
        let held = self.scopes.iter().map(|s| rank(s)).max().unwrap_or(0);
        rank(need) > 0 && held >= rank(need)
    }
}

/// Sockets opened with an API token are closed after this long, as a token's would be at
/// its expiry, and reconnect with the same API token.
const API_TOKEN_SOCKET_SECS: i64 = 30 * 24 * 3600;

pub struct Identities {
    jwt: JwtKeys,
    external: Option<ExternalTokens>,
    store: Arc<dyn Store>,
    realtime: OnceLock<Realtime>,
    seen: SeenTokens,
}

impl Identities {
    pub fn new(jwt: JwtKeys, external: Option<ExternalTokens>, store: Arc<dyn Store>) -> Self {
        Identities {
            jwt,
            external,
            store,
            realtime: OnceLock::new(),
            seen: SeenTokens::default(),
        }
    }

    /// The real-time core, told of memberships that role claims change (set once at start).
    pub fn attach(&self, realtime: Realtime) {
        let _ = self.realtime.set(realtime);
    }

    /// The product's issuer, when its tokens are accepted.
    pub fn external_issuer(&self) -> Option<&str> {
        self.external.as_ref().map(ExternalTokens::issuer)
    }

    /// Checks a token and returns its user. A product token is checked against the
    /// product's keys, its user created or updated, and its role claims applied (once per
    /// token: a token seen again is answered from memory until it expires).
    pub async fn verify(&self, token: &str) -> Result<AccessClaims, IdentityError> {
        self.verify_grant(token).await.map(|(claims, _)| claims)
    }

    /// As [`Identities::verify`], and what an API token may do (`None` for other tokens).
    pub async fn verify_grant(
        &self,
        token: &str,
    ) -> Result<(AccessClaims, Option<TokenGrant>), IdentityError> {
        if token.starts_with(crate::auth::API_TOKEN_PREFIX) {
            return self.api_token(token).await.map(|(c, g)| (c, Some(g)));
        }
        self.verify_jwt(token).await.map(|c| (c, None))
    }

    /// An API token, unexpired and unrevoked, by the token itself. Looked up on every use,
    /// so a revocation holds at once; its use is recorded (at most once a minute).
    pub async fn find_api_token(&self, token: &str) -> Result<ApiToken, IdentityError> {
        let now_ms = crate::domain::now_ms();
        if !token.starts_with(crate::auth::API_TOKEN_PREFIX) || token.len() > 200 {
            return Err(TokenError::Malformed.into());
        }
        let found = self
            .store
            .api_token(&crate::auth::token_digest(token))
            .await
            .map_err(IdentityError::Unavailable)?
            .ok_or(TokenError::Signature)?;
        if found.expires_at.is_some_and(|at| at <= now_ms) {
            return Err(TokenError::Expired.into());
        }
        if found.last_used_at.is_none_or(|at| at < now_ms - 60_000) {
            let store = self.store.clone();
            let id = found.id;
            actix_web::rt::spawn(async move {
                if let Err(e) = store.touch_api_token(id, now_ms).await {
                    tracing::debug!(error = %e, "cannot record an API token's use");
                }
            });
        }
        Ok(found)
    }

    /// A personal API token: unexpired, unrevoked, its account active.
    async fn api_token(&self, token: &str) -> Result<(AccessClaims, TokenGrant), IdentityError> {
        let now_ms = crate::domain::now_ms();
        let found = self.find_api_token(token).await?;
        let Some(user) = found.user_id else {
            return Err(TokenError::Claim(
                "this token is a service's (directory) and acts as nobody here".into(),
            )
            .into());
        };
        match self
            .store
            .user(user)
            .await
            .map_err(IdentityError::Unavailable)?
        {
            Some(u) if !u.disabled => {}
            _ => return Err(IdentityError::Disabled),
        }
        let cap = now_ms / 1000 + API_TOKEN_SOCKET_SECS;
        let claims = AccessClaims {
            user_id: user,
            expires_at: found.expires_at.map_or(cap, |at| (at / 1000).min(cap)),
            // Checked now: only ends recorded from now on (a revocation, the account
            // disabled) cover what it opens.
            issued_at_ms: now_ms,
            session: Some(crate::store::api_token_session(found.id)),
        };
        let grant = TokenGrant {
            id: found.id,
            scopes: found.scopes,
            workspace: found.workspace_id,
        };
        Ok((claims, grant))
    }

    async fn verify_jwt(&self, token: &str) -> Result<AccessClaims, IdentityError> {
        let now = crate::domain::now_ms() / 1000;
        let Some(external) = self
            .external
            .as_ref()
            .filter(|e| ExternalTokens::claims_issuer(token).as_deref() == Some(e.issuer()))
        else {
            return Ok(self.jwt.verify(token, now)?);
        };
        if let Some(seen) = self.seen.get(token, now) {
            return Ok(claims(seen));
        }
        let identity = external.verify(token, now).await?;
        let user = self.provision(&identity).await?;
        let seen = Seen {
            user,
            expires_at: identity.expires_at,
            issued_at_ms: identity.issued_at_ms,
        };
        self.seen.put(token, seen, now);
        Ok(claims(seen))
    }

    async fn provision(&self, id: &ExternalIdentity) -> Result<i64, IdentityError> {
        let email = id.email.as_deref().and_then(|e| Email::parse(e).ok());
        let name = id.name.as_deref().and_then(|n| DisplayName::parse(n).ok());
        let user = self
            .store
            .external_user(&id.issuer, &id.subject, email.as_ref(), name.as_ref())
            .await
            .map_err(IdentityError::Unavailable)?;
        if user.disabled {
            return Err(IdentityError::Disabled);
        }
        if let Some(roles) = &id.roles {
            let changes = self
                .store
                .apply_role_claims(user.id, &id.issuer, &id.subject, roles, id.issued_at_ms)
                .await
                .map_err(IdentityError::Unavailable)?;
            if let Some(realtime) = self.realtime.get() {
                for change in &changes {
                    crate::realtime::membership_changed(realtime, &*self.store, change).await;
                }
            }
        }
        Ok(user.id)
    }
}

fn claims(seen: Seen) -> AccessClaims {
    AccessClaims {
        user_id: seen.user,
        expires_at: seen.expires_at,
        issued_at_ms: seen.issued_at_ms,
        session: None,
    }
}
