//! Single sign-on through OpenID Connect providers (`auth.oidc`), through `openidconnect`:
//! discovery, the authorization code flow with PKCE, and the ID token checked against the
//! provider's keys (signature, issuer, audience, expiry, nonce). The provider's metadata
//! and keys are fetched when first needed and again after `metadata_refresh_secs`, or at
//! once (at most once a minute) when a token names a key Stoa does not hold: a provider
//! that rotates its keys is followed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use openidconnect::core::{
    CoreAuthPrompt, CoreAuthenticationFlow, CoreClient, CoreErrorResponseType,
    CoreJwsSigningAlgorithm, CoreProviderMetadata,
};
use openidconnect::{
    AuthType, AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken,
    IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl,
    RequestTokenError, Scope, SignatureVerificationError, TokenResponse,
};

use crate::config::OidcProviderSettings;

/// What Stoa learns of a person from a provider's ID token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsoPerson {
    /// The provider's issuer (its `iss`), which with `subject` names the person for good.
    pub issuer: String,
    pub subject: String,
    pub email: Option<String>,
    /// The provider vouches for the address (`email_verified`, or `trust_email`).
    pub email_verified: bool,
    pub name: Option<String>,
}

/// A sign-in to begin: where to send the browser, and what to keep until it comes back.
#[derive(Debug)]
pub struct Authorization {
    pub url: String,
    pub state: String,
    pub nonce: String,
    pub verifier: String,
}

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("the identity provider cannot be reached: {0}")]
    Unavailable(String),
    /// The provider refused the code (used already, expired, not this client's, or the PKCE
    /// verifier does not match it).
    #[error("the identity provider refused the sign-in: {0}")]
    Refused(String),
    /// The ID token failed a check (signature, issuer, audience, expiry, nonce).
    #[error("the identity provider's ID token is not valid: {0}")]
    InvalidToken(String),
}

/// Signature algorithms accepted for ID tokens: public-key ones only.
const ALGORITHMS: [CoreJwsSigningAlgorithm; 9] = [
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::RsaSsaPssSha384,
    CoreJwsSigningAlgorithm::RsaSsaPssSha512,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::EcdsaP384Sha384,
    CoreJwsSigningAlgorithm::EdDsa,
];

/// At most one unplanned fetch of a provider's metadata (for an unknown key) a minute.
const REFETCH_INTERVAL: Duration = Duration::from_secs(60);

struct Cached {
    metadata: CoreProviderMetadata,
    fetched: Instant,
}

pub struct OidcProvider {
    pub settings: OidcProviderSettings,
    redirect: RedirectUrl,
    http: reqwest::Client,
    cached: tokio::sync::Mutex<Option<Cached>>,
    last_unplanned: Mutex<Option<Instant>>,
}

impl OidcProvider {
    pub fn name(&self) -> &str {
        &self.settings.name
    }

    pub fn display_name(&self) -> &str {
        if self.settings.display_name.is_empty() {
            &self.settings.name
        } else {
            &self.settings.display_name
        }
    }

    /// The provider's issuer as configured.
    pub fn issuer(&self) -> &str {
        &self.settings.issuer
    }

    /// The provider's metadata: cached, or fetched when missing, older than the refresh
    /// interval, or (`fresh`) asked for again.
    async fn metadata(&self, fresh: bool) -> Result<CoreProviderMetadata, OidcError> {
        let mut cached = self.cached.lock().await;
        let max_age = Duration::from_secs(self.settings.metadata_refresh_secs.max(1));
        if let Some(c) = cached.as_ref() {
            if !fresh && c.fetched.elapsed() < max_age {
                return Ok(c.metadata.clone());
            }
        }
        let issuer = IssuerUrl::new(self.settings.issuer.clone())
            .map_err(|e| OidcError::Unavailable(format!("issuer: {e}")))?;
        match CoreProviderMetadata::discover_async(issuer, &self.http).await {
            Ok(metadata) => {
                *cached = Some(Cached {
                    metadata: metadata.clone(),
                    fetched: Instant::now(),
                });
                Ok(metadata)
            }
            Err(e) => {
                // Keys already held stay in use while the provider is away.
                if let Some(c) = cached.as_ref() {
                    tracing::warn!(provider = %self.settings.name, error = %e, "cannot refresh the identity provider's metadata; keeping what is held");
                    return Ok(c.metadata.clone());
                }
                Err(OidcError::Unavailable(error_chain(&e)))
            }
        }
    }

    fn client(
        &self,
        metadata: CoreProviderMetadata,
    ) -> openidconnect::core::CoreClient<
        openidconnect::EndpointSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointMaybeSet,
        openidconnect::EndpointMaybeSet,
    > {
        let secret = (!self.settings.client_secret.is_empty())
            .then(|| ClientSecret::new(self.settings.client_secret.clone()));
        let auth_type = if self.settings.client_auth == "post" {
            AuthType::RequestBody
        } else {
            AuthType::BasicAuth
        };
        CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(self.settings.client_id.clone()),
            secret,
        )
        .set_redirect_uri(self.redirect.clone())
        .set_auth_type(auth_type)
    }

    /// Where to send the browser to sign in, with a fresh `state`, nonce and PKCE pair.
    /// `login_hint` is passed on; `reauthenticate` asks the provider to check the person
    /// again (`prompt=login`, `max_age=0`) rather than answer from its own session.
    pub async fn authorize(
        &self,
        login_hint: Option<&str>,
        reauthenticate: bool,
    ) -> Result<Authorization, OidcError> {
        let client = self.client(self.metadata(false).await?);
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for scope in self.settings.scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        if let Some(hint) = login_hint.filter(|h| !h.is_empty() && h.len() <= 254) {
            request = request.add_extra_param("login_hint", hint.to_string());
        }
        if reauthenticate {
            request = request
                .add_prompt(CoreAuthPrompt::Login)
                .set_max_age(Duration::ZERO);
        }
        let (url, state, nonce) = request.url();
        Ok(Authorization {
            url: url.to_string(),
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            verifier: verifier.secret().clone(),
        })
    }

    /// Trades the code the provider sent back for its tokens and checks the ID token.
    pub async fn finish(
        &self,
        code: &str,
        verifier: &str,
        nonce: &str,
    ) -> Result<SsoPerson, OidcError> {
        let metadata = self.metadata(false).await?;
        let client = self.client(metadata);
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|e| {
                OidcError::Unavailable(format!("the provider has no token endpoint: {e}"))
            })?
            .set_pkce_verifier(PkceCodeVerifier::new(verifier.to_string()))
            .request_async(&self.http)
            .await
            .map_err(|e| match e {
                RequestTokenError::ServerResponse(r) => {
                    let detail = r.error_description().cloned().unwrap_or_default();
                    match r.error() {
                        CoreErrorResponseType::InvalidGrant
                        | CoreErrorResponseType::InvalidClient
                        | CoreErrorResponseType::UnauthorizedClient
                        | CoreErrorResponseType::InvalidRequest => {
                            OidcError::Refused(format!("{}: {detail}", r.error().as_ref()))
                        }
                        other => OidcError::Unavailable(format!("{}: {detail}", other.as_ref())),
                    }
                }
                RequestTokenError::Request(e) => OidcError::Unavailable(error_chain(&e)),
                other => OidcError::InvalidToken(error_chain(&other)),
            })?;
        let id_token = response
            .id_token()
            .ok_or_else(|| OidcError::InvalidToken("the provider sent no ID token".into()))?
            .clone();
        let nonce = Nonce::new(nonce.to_string());
        let checked = {
            let verifier = client.id_token_verifier().set_allowed_algs(ALGORITHMS);
            id_token.claims(&verifier, &nonce).map(|c| self.person(c))
        };
        let mut person = match checked {
            Ok(person) => person,
            Err(ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            )) if self.may_refetch() => {
                // Keys rotated since they were fetched: fetch them again, once.
                let client = self.client(self.metadata(true).await?);
                let verifier = client.id_token_verifier().set_allowed_algs(ALGORITHMS);
                id_token
                    .claims(&verifier, &nonce)
                    .map(|c| self.person(c))
                    .map_err(|e| OidcError::InvalidToken(e.to_string()))?
            }
            Err(e) => return Err(OidcError::InvalidToken(e.to_string())),
        };
        // Many providers give the address only at the UserInfo endpoint (claims asked for
        // by scope, with a code flow): ask there, for the same subject.
        if person.email.is_none() {
            let subject = openidconnect::SubjectIdentifier::new(person.subject.clone());
            if let Ok(request) = client.user_info(response.access_token().clone(), Some(subject)) {
                let info: openidconnect::core::CoreUserInfoClaims =
                    request.request_async(&self.http).await.map_err(|e| {
                        OidcError::Unavailable(format!("userinfo: {}", error_chain(&e)))
                    })?;
                person.email = info.email().map(|e| e.as_str().to_string());
                person.email_verified =
                    info.email_verified() == Some(true) || self.settings.trust_email;
                if person.name.is_none() {
                    person.name = info
                        .name()
                        .and_then(|n| n.get(None))
                        .map(|n| n.as_str().to_string())
                        .or_else(|| info.preferred_username().map(|n| n.as_str().to_string()));
                }
            }
        }
        Ok(person)
    }

    fn may_refetch(&self) -> bool {
        let mut last = self
            .last_unplanned
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|at| at.elapsed() < REFETCH_INTERVAL) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }

    fn person(&self, claims: &openidconnect::core::CoreIdTokenClaims) -> SsoPerson {
        let name = claims
            .name()
            .and_then(|n| n.get(None))
            .map(|n| n.as_str().to_string())
            .or_else(|| claims.preferred_username().map(|n| n.as_str().to_string()));
        SsoPerson {
            issuer: claims.issuer().as_str().to_string(),
            subject: claims.subject().as_str().to_string(),
            email: claims.email().map(|e| e.as_str().to_string()),
            email_verified: claims.email_verified() == Some(true) || self.settings.trust_email,
            name,
        }
    }
}

/// An error and its sources, on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The configured providers, by name.
pub struct OidcProviders {
    providers: HashMap<String, std::sync::Arc<OidcProvider>>,
    order: Vec<String>,
}

impl OidcProviders {
    /// The providers of `auth.oidc`; each gets the redirect URL
    /// `<public_url>/api/v1/auth/oidc/<name>/callback`.
    pub fn new(
        settings: &[OidcProviderSettings],
        public_url: &str,
    ) -> Result<OidcProviders, String> {
        let mut providers = HashMap::new();
        let mut order = Vec::new();
        if settings.is_empty() {
            return Ok(OidcProviders { providers, order });
        }
        let base = public_url.trim_end_matches('/');
        if base.is_empty() {
            return Err("server.public_url is required: it is the base of the redirect URL registered with the provider".into());
        }
        for p in settings {
            let valid_name = !p.name.is_empty()
                && p.name.len() <= 40
                && p.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !valid_name {
                return Err(format!(
                    "provider name {:?}: 1 to 40 of a-z, 0-9 and -",
                    p.name
                ));
            }
            if providers.contains_key(&p.name) {
                return Err(format!("provider name {:?} is given twice", p.name));
            }
            let issuer =
                url::Url::parse(&p.issuer).map_err(|e| format!("{}: issuer: {e}", p.name))?;
            if !matches!(issuer.scheme(), "https" | "http") {
                return Err(format!("{}: issuer must be an https:// URL", p.name));
            }
            if p.client_id.is_empty() {
                return Err(format!("{}: client_id is required", p.name));
            }
            if !matches!(p.client_auth.as_str(), "basic" | "post") {
                return Err(format!("{}: client_auth must be basic or post", p.name));
            }
            let redirect = RedirectUrl::new(format!("{base}/api/v1/auth/oidc/{}/callback", p.name))
                .map_err(|e| format!("{}: redirect URL: {e}", p.name))?;
            // Never follow redirects: the provider's endpoints answer themselves (SSRF).
            let http = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(p.timeout_secs.max(1)))
                .build()
                .map_err(|e| format!("{}: HTTP client: {e}", p.name))?;
            order.push(p.name.clone());
            providers.insert(
                p.name.clone(),
                std::sync::Arc::new(OidcProvider {
                    settings: p.clone(),
                    redirect,
                    http,
                    cached: tokio::sync::Mutex::new(None),
                    last_unplanned: Mutex::new(None),
                }),
            );
        }
        Ok(OidcProviders { providers, order })
    }

    pub fn get(&self, name: &str) -> Option<std::sync::Arc<OidcProvider>> {
        self.providers.get(name).cloned()
    }

    pub fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }

    /// The providers in the order they were configured.
    pub fn list(&self) -> impl Iterator<Item = &OidcProvider> {
        self.order
            .iter()
            .filter_map(|n| self.providers.get(n).map(|p| &**p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(name: &str) -> OidcProviderSettings {
        OidcProviderSettings {
            name: name.into(),
            display_name: String::new(),
            issuer: "https://idp.example.com".into(),
            client_id: "stoa".into(),
            client_secret: String::new(),
            client_auth: "basic".into(),
            scopes: vec!["openid".into(), "email".into()],
            trust_email: false,
            metadata_refresh_secs: 3600,
            timeout_secs: 10,
        }
    }

    #[test]
    fn each_provider_gets_its_redirect_url_and_bad_settings_are_refused() {
        let ok = OidcProviders::new(
            &[provider("okta"), provider("google-ws")],
            "https://stoa.example.com/",
        )
        .expect("valid");
        let okta = ok.get("okta").expect("configured");
        assert_eq!(
            okta.redirect.as_str(),
            "https://stoa.example.com/api/v1/auth/oidc/okta/callback"
        );
        assert_eq!(okta.display_name(), "okta");
        assert_eq!(
            ok.list().map(|p| p.name()).collect::<Vec<_>>(),
            ["okta", "google-ws"]
        );
        let refused = |settings: Vec<OidcProviderSettings>, public: &str| {
            OidcProviders::new(&settings, public)
                .err()
                .expect("refused")
        };
        assert!(refused(vec![provider("Okta")], "https://s").contains("a-z"));
        assert!(refused(vec![provider("a/b")], "https://s").contains("a-z"));
        assert!(refused(vec![provider("")], "https://s").contains("a-z"));
        assert!(refused(vec![provider("x"), provider("x")], "https://s").contains("twice"));
        assert!(refused(vec![provider("x")], "").contains("public_url"));
        let mut no_client = provider("x");
        no_client.client_id.clear();
        assert!(refused(vec![no_client], "https://s").contains("client_id"));
        let mut bad_issuer = provider("x");
        bad_issuer.issuer = "ftp://idp".into();
        assert!(refused(vec![bad_issuer], "https://s").contains("issuer"));
        let mut bad_auth = provider("x");
        bad_auth.client_auth = "jwt".into();
        assert!(refused(vec![bad_auth], "https://s").contains("client_auth"));
        assert!(OidcProviders::new(&[], "").expect("none").is_empty());
    }
}
