//! Who a token stands for: Stoa's own access tokens, and the tokens of the product Stoa is
//! built into (`auth.external`), whose users are provisioned on first sight and whose role
//! claims are applied as memberships. REST, `/socket` (at connect and at every
//! `access_token`) and `/yjs` all ask here.

use std::sync::{Arc, OnceLock};

use crate::auth::external::{ExternalIdentity, ExternalTokens, Seen, SeenTokens};
use crate::auth::{AccessClaims, JwtKeys, TokenError};
use crate::domain::{DisplayName, Email};
use crate::realtime::Realtime;
use crate::store::{Store, StoreError};

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
