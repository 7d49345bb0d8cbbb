//! Access tokens minted by the product Stoa is built into (`auth.external`): HS256 with a
//! shared secret, or RS256/RS384/RS512, PS256/384/512, ES256/ES384 and EdDSA checked against
//! the keys of a JWKS URL. The product's backend signs in its users its own way and hands
//! their browsers a token that Stoa accepts on REST, channels and Yjs like its own.
//!
//! What is checked: the algorithm (one the key's family allows: an RSA or EC key is never
//! taken for an HMAC secret), the signature, `iss` (exactly the configured issuer), `aud`
//! (when configured), `exp`, `nbf` (when present) and `iat` (required: role claims are
//! applied in the order tokens were issued), with 5 s of leeway. The user's id, e-mail, name
//! and workspace roles come from configurable claims.
//!
//! The JWKS is fetched when first needed, again when older than `jwks_refresh_secs`, and at
//! once when a token names a `kid` it does not hold (a key rotated in): such fetches are
//! bounded (10 a minute), so forged `kid`s cannot turn Stoa into a flood on the product's
//! JWKS endpoint. A failed fetch keeps the keys already held.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::TokenError;
use crate::config::ExternalAuthSettings;
use crate::domain::Role;

const LEEWAY_SECS: i64 = 5;
/// The largest JWKS document read.
const MAX_JWKS_BYTES: usize = 1 << 20;

/// What a verified product token says about its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalIdentity {
    pub issuer: String,
    /// The product's id of the user (the `user_id_claim`).
    pub subject: String,
    pub email: Option<String>,
    pub name: Option<String>,
    /// Workspace roles by the workspace's external id, when `roles_claim` is configured (a
    /// token without the claim grants none); `None` when it is not.
    pub roles: Option<Vec<(String, Role)>>,
    pub issued_at_ms: i64,
    /// Expiry, seconds since the Unix epoch.
    pub expires_at: i64,
}

struct Key {
    kid: Option<String>,
    alg: Option<Algorithm>,
    key: DecodingKey,
}

struct Jwks {
    url: String,
    client: reqwest::Client,
    refresh: Duration,
    keys: RwLock<(Arc<Vec<Key>>, Option<Instant>)>,
    /// One fetch at a time; the others wait for its keys.
    fetching: tokio::sync::Mutex<()>,
    /// Fetches made because a token named an unknown `kid`.
    unknown_kid_fetches: governor::DefaultDirectRateLimiter,
}

/// The verifier of the product's tokens.
pub struct ExternalTokens {
    settings: ExternalAuthSettings,
    secret: Option<DecodingKey>,
    jwks: Option<Jwks>,
}

impl ExternalTokens {
    /// `None` when no issuer is configured.
    pub fn new(settings: &ExternalAuthSettings) -> Result<Option<ExternalTokens>, String> {
        if settings.issuer.is_empty() {
            return Ok(None);
        }
        super::jwt::install_provider();
        let secret = if settings.hs256_secret.is_empty() {
            None
        } else {
            Some(DecodingKey::from_secret(&super::secret_key(
                &settings.hs256_secret,
            )?))
        };
        let jwks = if settings.jwks_url.is_empty() {
            None
        } else {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .redirect(reqwest::redirect::Policy::limited(3))
                .build()
                .map_err(|e| format!("cannot build the JWKS client: {e}"))?;
            let per_minute =
                governor::Quota::per_minute(NonZeroU32::new(10).unwrap_or(NonZeroU32::MIN));
            Some(Jwks {
                url: settings.jwks_url.clone(),
                client,
                refresh: Duration::from_secs(settings.jwks_refresh_secs.max(1)),
                keys: RwLock::new((Arc::new(Vec::new()), None)),
                fetching: tokio::sync::Mutex::new(()),
                unknown_kid_fetches: governor::RateLimiter::direct(per_minute),
            })
        };
        if secret.is_none() && jwks.is_none() {
            return Err("set hs256_secret, jwks_url or both".into());
        }
        Ok(Some(ExternalTokens {
            settings: settings.clone(),
            secret,
            jwks,
        }))
    }

    pub fn issuer(&self) -> &str {
        &self.settings.issuer
    }

    /// Whether `token` claims to come from the product (its `iss`, read before any check):
    /// which verifier to give it to, nothing more.
    pub fn claims_issuer(token: &str) -> Option<String> {
        use base64::Engine;
        let payload = token.split('.').nth(1)?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .ok()?;
        #[derive(serde::Deserialize)]
        struct Iss {
            iss: Option<String>,
        }
        serde_json::from_slice::<Iss>(&bytes).ok()?.iss
    }

    /// Checks a product token and reads its user.
    pub async fn verify(&self, token: &str, now: i64) -> Result<ExternalIdentity, TokenError> {
        if token.len() > 16_384 {
            return Err(TokenError::Malformed);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        let claims = match header.alg {
            Algorithm::HS256 => {
                let key = self.secret.as_ref().ok_or(TokenError::Algorithm)?;
                self.decode(token, key, Algorithm::HS256)?
            }
            Algorithm::HS384 | Algorithm::HS512 => return Err(TokenError::Algorithm),
            alg => {
                let jwks = self.jwks.as_ref().ok_or(TokenError::Algorithm)?;
                let mut keys = jwks.current().await;
                let mut candidates = matching(&keys, header.kid.as_deref(), alg);
                if candidates.is_empty()
                    && header.kid.is_some()
                    && jwks.unknown_kid_fetches.check().is_ok()
                {
                    keys = jwks.fetch().await;
                    candidates = matching(&keys, header.kid.as_deref(), alg);
                }
                if candidates.is_empty() {
                    return Err(TokenError::UnknownKey);
                }
                let mut last = TokenError::Signature;
                let mut verified = None;
                for key in candidates {
                    match self.decode(token, key, alg) {
                        Ok(claims) => {
                            verified = Some(claims);
                            break;
                        }
                        Err(e) => last = e,
                    }
                }
                verified.ok_or(last)?
            }
        };
        self.identity(claims, now)
    }

    fn decode(
        &self,
        token: &str,
        key: &DecodingKey,
        alg: Algorithm,
    ) -> Result<Map<String, Value>, TokenError> {
        let mut validation = Validation::new(alg);
        validation.set_issuer(&[&self.settings.issuer]);
        if self.settings.audience.is_empty() {
            validation.validate_aud = false;
            validation.set_required_spec_claims(&["iss", "exp"]);
        } else {
            validation.set_audience(&[&self.settings.audience]);
            validation.set_required_spec_claims(&["iss", "aud", "exp"]);
        }
        // Checked against the caller's clock in `identity`.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        use jsonwebtoken::errors::ErrorKind;
        jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidAlgorithm
                | ErrorKind::InvalidAlgorithmName
                | ErrorKind::InvalidKeyFormat => TokenError::Algorithm,
                ErrorKind::InvalidSignature => TokenError::Signature,
                ErrorKind::InvalidIssuer => TokenError::Issuer,
                ErrorKind::InvalidAudience => TokenError::Audience,
                _ => TokenError::Malformed,
            })
    }

    fn identity(
        &self,
        claims: Map<String, Value>,
        now: i64,
    ) -> Result<ExternalIdentity, TokenError> {
        let s = &self.settings;
        // NumericDate may carry a fraction of a second (RFC 7519 §2): `iat` is kept to the
        // millisecond, so two tokens issued within one second are still ordered.
        let seconds = |name: &str| {
            claims
                .get(name)
                .and_then(Value::as_f64)
                .filter(|v| v.is_finite() && v.abs() < 1e12)
        };
        let exp = seconds("exp").ok_or(TokenError::Malformed)?.floor() as i64;
        let iat_ms = (seconds("iat").ok_or_else(|| claim_error("iat", "is required"))? * 1000.0)
            .floor() as i64;
        let iat = iat_ms.div_euclid(1000);
        let number = |name: &str| seconds(name).map(|v| v.floor() as i64);
        if exp.saturating_add(LEEWAY_SECS) <= now {
            return Err(TokenError::Expired);
        }
        let future = now.saturating_add(LEEWAY_SECS);
        if iat > future || number("nbf").is_some_and(|nbf| nbf > future) {
            return Err(TokenError::NotYetValid);
        }
        let subject = match claims.get(&s.user_id_claim) {
            Some(Value::String(id)) if !id.is_empty() && id.len() <= 255 => id.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => {
                return Err(claim_error(
                    &s.user_id_claim,
                    "must be a non-empty string of at most 255 characters",
                ))
            }
        };
        let text = |name: &str| -> Result<Option<String>, TokenError> {
            match claims.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(v)) => Ok(Some(v.clone())),
                Some(_) => Err(claim_error(name, "must be a string")),
            }
        };
        let email = if s.email_claim.is_empty() {
            None
        } else {
            text(&s.email_claim)?
        };
        let name = if s.name_claim.is_empty() {
            None
        } else {
            text(&s.name_claim)?
        };
        let roles = if s.roles_claim.is_empty() {
            None
        } else {
            Some(role_claims(claims.get(&s.roles_claim), &s.roles_claim)?)
        };
        Ok(ExternalIdentity {
            issuer: s.issuer.clone(),
            subject,
            email,
            name,
            roles,
            issued_at_ms: iat_ms,
            expires_at: exp,
        })
    }
}

fn claim_error(claim: &str, problem: &str) -> TokenError {
    TokenError::Claim(format!("the claim {claim:?} {problem}"))
}

/// `{"<workspace external id>": "<role>", …}`; absent or null: no roles.
fn role_claims(value: Option<&Value>, name: &str) -> Result<Vec<(String, Role)>, TokenError> {
    const MAX: usize = 1000;
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let map = value
        .as_object()
        .ok_or_else(|| claim_error(name, "must be an object of workspace external ids to roles"))?;
    if map.len() > MAX {
        return Err(claim_error(name, "names more than 1000 workspaces"));
    }
    map.iter()
        .map(|(ws, role)| {
            let role = role.as_str().and_then(Role::parse).ok_or_else(|| {
                claim_error(
                    name,
                    &format!("gives {ws:?} a role that is not owner, admin, editor or viewer"),
                )
            })?;
            if ws.is_empty() || ws.len() > 255 {
                return Err(claim_error(
                    name,
                    "names a workspace id that is empty or too long",
                ));
            }
            Ok((ws.clone(), role))
        })
        .collect()
}

fn matching<'a>(keys: &'a [Key], kid: Option<&str>, alg: Algorithm) -> Vec<&'a DecodingKey> {
    keys.iter()
        .filter(|k| kid.is_none() || k.kid.as_deref() == kid)
        .filter(|k| k.alg.is_none_or(|a| a == alg))
        .filter(|k| k.key.family() == alg.family())
        .map(|k| &k.key)
        .collect()
}

impl Jwks {
    /// The keys held, fetched first if there are none yet or they are older than the
    /// refresh interval.
    async fn current(&self) -> Arc<Vec<Key>> {
        let (keys, fetched) = {
            let held = self.keys.read().unwrap_or_else(|e| e.into_inner());
            (held.0.clone(), held.1)
        };
        match fetched {
            Some(at) if at.elapsed() < self.refresh => keys,
            _ => self.fetch().await,
        }
    }

    /// Fetches the JWKS (or waits for a fetch under way) and returns the keys then held.
    async fn fetch(&self) -> Arc<Vec<Key>> {
        let started = Instant::now();
        let _one = self.fetching.lock().await;
        {
            let held = self.keys.read().unwrap_or_else(|e| e.into_inner());
            if held.1.is_some_and(|at| at >= started) {
                // Fetched while this one waited.
                return held.0.clone();
            }
        }
        match self.download().await {
            Ok(keys) => {
                tracing::info!(url = %self.url, keys = keys.len(), "fetched the product's JWKS");
                let keys = Arc::new(keys);
                *self.keys.write().unwrap_or_else(|e| e.into_inner()) =
                    (keys.clone(), Some(Instant::now()));
                keys
            }
            Err(e) => {
                tracing::warn!(url = %self.url, error = %e, "cannot fetch the product's JWKS; keeping the keys held");
                let mut held = self.keys.write().unwrap_or_else(|e| e.into_inner());
                // Tried again after a tenth of the interval, not on every token.
                let retry = self.refresh - self.refresh / 10;
                held.1 = Instant::now().checked_sub(retry).or(held.1);
                held.0.clone()
            }
        }
    }

    async fn download(&self) -> Result<Vec<Key>, String> {
        let mut response = self
            .client
            .get(&self.url)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .error_for_status()
            .map_err(|e| e.to_string())?;
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err("the JWKS is larger than 1 MiB".into());
            }
            body.extend_from_slice(&chunk);
        }
        #[derive(serde::Deserialize)]
        struct Set {
            keys: Vec<Value>,
        }
        let set: Set = serde_json::from_slice(&body).map_err(|e| format!("not a JWKS: {e}"))?;
        let mut keys = Vec::new();
        // Each key on its own: one of a kind this crate does not know is skipped, not the set.
        for jwk in set
            .keys
            .into_iter()
            .filter_map(|k| serde_json::from_value::<Jwk>(k).ok())
        {
            let jwk = &jwk;
            if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
                continue;
            }
            let alg = jwk
                .common
                .key_algorithm
                .and_then(|a| a.to_string().parse::<Algorithm>().ok());
            match DecodingKey::from_jwk(jwk) {
                // A symmetric key in a public JWKS is refused: anyone could sign with it.
                Ok(key) if key.family() != jsonwebtoken::AlgorithmFamily::Hmac => keys.push(Key {
                    kid: jwk.common.key_id.clone(),
                    alg,
                    key,
                }),
                _ => {}
            }
        }
        Ok(keys)
    }
}

/// A small cache of recent answers, so that a token seen again (every REST request of a
/// page, say) is not checked and provisioned again: by the token's digest, until it expires.
#[derive(Default)]
pub struct SeenTokens {
    map: std::sync::Mutex<HashMap<[u8; 32], Seen>>,
}

/// A token's user, expiry (seconds) and issue time (milliseconds).
#[derive(Debug, Clone, Copy)]
pub struct Seen {
    pub user: i64,
    pub expires_at: i64,
    pub issued_at_ms: i64,
}

impl SeenTokens {
    const MAX: usize = 50_000;

    /// The user of a token seen before and not expired at `now`.
    pub fn get(&self, token: &str, now: i64) -> Option<Seen> {
        let key = digest(token);
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&key)
            .filter(|seen| seen.expires_at.saturating_add(LEEWAY_SECS) > now)
            .copied()
    }

    pub fn put(&self, token: &str, seen: Seen, now: i64) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= Self::MAX {
            map.retain(|_, s| s.expires_at.saturating_add(LEEWAY_SECS) > now);
            if map.len() >= Self::MAX {
                map.clear();
            }
        }
        map.insert(digest(token), seen);
    }
}

fn digest(token: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair};
    use std::sync::atomic::{AtomicUsize, Ordering};

    const ISSUER: &str = "https://product.example";
    const SECRET: &str = "product-shared-secret-0123456789abcdef-GHIJKLMNOPQRSTUV";

    fn settings(jwks_url: &str) -> ExternalAuthSettings {
        ExternalAuthSettings {
            issuer: ISSUER.into(),
            audience: String::new(),
            hs256_secret: SECRET.into(),
            jwks_url: jwks_url.into(),
            jwks_refresh_secs: 300,
            user_id_claim: "sub".into(),
            email_claim: "email".into(),
            name_claim: "name".into(),
            roles_claim: "roles".into(),
        }
    }

    fn now() -> i64 {
        crate::domain::now_ms() / 1000
    }

    fn b64(v: &serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(v.to_string())
    }

    fn claims(extra: serde_json::Value) -> serde_json::Value {
        let mut c =
            serde_json::json!({"iss": ISSUER, "sub": "42", "iat": now(), "exp": now() + 600});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    }

    fn hs256(claims: &serde_json::Value) -> String {
        use hmac::Mac;
        let input = format!(
            "{}.{}",
            b64(&serde_json::json!({"alg": "HS256"})),
            b64(claims)
        );
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(input.as_bytes());
        format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    }

    /// A JWKS endpoint serving what `keys` holds, counting the requests it answers.
    struct Endpoint {
        url: String,
        keys: Arc<std::sync::Mutex<serde_json::Value>>,
        hits: Arc<AtomicUsize>,
    }

    async fn endpoint() -> Endpoint {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        let keys = Arc::new(std::sync::Mutex::new(serde_json::json!({"keys": []})));
        let hits = Arc::new(AtomicUsize::new(0));
        let (served, counted) = (keys.clone(), hits.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let (served, counted) = (served.clone(), counted.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut read = 0;
                    while !buf[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf[read..]).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => read += n,
                        }
                    }
                    counted.fetch_add(1, Ordering::SeqCst);
                    let body = served.lock().unwrap().to_string();
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(response.as_bytes()).await;
                });
            }
        });
        Endpoint { url, keys, hits }
    }

    struct Ed {
        pair: Ed25519KeyPair,
        kid: String,
    }

    impl Ed {
        fn new(kid: &str) -> Ed {
            let rng = ring::rand::SystemRandom::new();
            let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
            Ed {
                pair: Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap(),
                kid: kid.into(),
            }
        }

        fn jwk(&self) -> serde_json::Value {
            serde_json::json!({"kty": "OKP", "crv": "Ed25519", "use": "sig", "kid": self.kid,
                "x": URL_SAFE_NO_PAD.encode(self.pair.public_key().as_ref())})
        }

        fn sign(&self, claims: &serde_json::Value, kid: &str) -> String {
            let header = serde_json::json!({"alg": "EdDSA", "kid": kid});
            let input = format!("{}.{}", b64(&header), b64(claims));
            let sig = self.pair.sign(input.as_bytes());
            format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
        }
    }

    #[tokio::test]
    async fn jwks_keys_verify_and_a_rotated_key_is_fetched_at_once() {
        let jwks = endpoint().await;
        let first = Ed::new("one");
        *jwks.keys.lock().unwrap() = serde_json::json!({"keys": [first.jwk()]});
        let tokens = ExternalTokens::new(&settings(&jwks.url)).unwrap().unwrap();
        let id = tokens
            .verify(
                &first.sign(&claims(serde_json::json!({"name": "Ada"})), "one"),
                now(),
            )
            .await
            .unwrap();
        assert_eq!(
            (id.subject.as_str(), id.name.as_deref()),
            ("42", Some("Ada"))
        );
        assert_eq!(id.roles, Some(Vec::new()), "no claim: no roles");
        assert_eq!(jwks.hits.load(Ordering::SeqCst), 1);
        // Held keys answer without a fetch.
        tokens
            .verify(&first.sign(&claims(serde_json::json!({})), "one"), now())
            .await
            .unwrap();
        assert_eq!(jwks.hits.load(Ordering::SeqCst), 1);

        // An ES256 key rotated in beside it.
        let rng = ring::rand::SystemRandom::new();
        let alg = &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        let ec = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
        let point = ec.public_key().as_ref();
        let ec_jwk = serde_json::json!({"kty": "EC", "crv": "P-256", "kid": "two", "alg": "ES256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..])});
        *jwks.keys.lock().unwrap() = serde_json::json!({"keys": [ec_jwk]});
        let input = format!(
            "{}.{}",
            b64(&serde_json::json!({"alg": "ES256", "kid": "two"})),
            b64(&claims(serde_json::json!({})))
        );
        let sig = ec.sign(&rng, input.as_bytes()).unwrap();
        let es256 = format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()));
        tokens.verify(&es256, now()).await.unwrap();
        assert_eq!(jwks.hits.load(Ordering::SeqCst), 2);
        // The key rotated out verifies nothing new.
        let gone = tokens
            .verify(
                &first.sign(&claims(serde_json::json!({"sub": "7"})), "one"),
                now(),
            )
            .await;
        assert_eq!(gone, Err(TokenError::UnknownKey));
        // A token of another key under a published kid.
        let mallory = Ed::new("two");
        let forged = tokens
            .verify(&mallory.sign(&claims(serde_json::json!({})), "two"), now())
            .await;
        assert_eq!(
            forged,
            Err(TokenError::UnknownKey),
            "an EdDSA token for an ES256 key"
        );
        *jwks.keys.lock().unwrap() = serde_json::json!({"keys": [first.jwk()]});
        let forged = tokens
            .verify(&mallory.sign(&claims(serde_json::json!({})), "one"), now())
            .await;
        assert_eq!(forged, Err(TokenError::Signature));
    }

    #[tokio::test]
    async fn forged_key_ids_cannot_flood_the_products_jwks() {
        let jwks = endpoint().await;
        let key = Ed::new("real");
        *jwks.keys.lock().unwrap() = serde_json::json!({"keys": [key.jwk()]});
        let tokens = ExternalTokens::new(&settings(&jwks.url)).unwrap().unwrap();
        for i in 0..50 {
            let token = key.sign(&claims(serde_json::json!({})), &format!("forged-{i}"));
            assert_eq!(
                tokens.verify(&token, now()).await,
                Err(TokenError::UnknownKey)
            );
        }
        // The first sight, then at most 10 fetches a minute for unknown key ids.
        let hits = jwks.hits.load(Ordering::SeqCst);
        assert!(hits <= 11, "{hits} fetches");
        tokens
            .verify(&key.sign(&claims(serde_json::json!({})), "real"), now())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn claims_are_checked_and_named() {
        let tokens = ExternalTokens::new(&settings("")).unwrap().unwrap();
        let ok = hs256(&claims(
            serde_json::json!({"roles": {"acme": "editor", "beta": "viewer"}, "iat": now() as f64 + 0.25}),
        ));
        let id = tokens.verify(&ok, now()).await.unwrap();
        assert_eq!(
            id.roles.unwrap(),
            vec![
                ("acme".to_string(), Role::Editor),
                ("beta".to_string(), Role::Viewer)
            ]
        );
        assert_eq!(id.issued_at_ms % 1000, 250, "iat kept to the millisecond");
        for (bad, named) in [
            (serde_json::json!({"roles": {"acme": "superuser"}}), "roles"),
            (serde_json::json!({"roles": ["acme"]}), "roles"),
            (serde_json::json!({"sub": ""}), "sub"),
            (serde_json::json!({"email": 7}), "email"),
            (serde_json::json!({"iat": null}), "iat"),
        ] {
            let mut c = claims(bad.clone());
            if bad.get("iat").is_some() {
                c.as_object_mut().unwrap().remove("iat");
            }
            match tokens.verify(&hs256(&c), now()).await {
                Err(TokenError::Claim(m)) => assert!(m.contains(named), "{m}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
        let expired = hs256(&claims(serde_json::json!({"exp": now() - 60})));
        assert_eq!(
            tokens.verify(&expired, now()).await,
            Err(TokenError::Expired)
        );
        let other = hs256(&claims(serde_json::json!({"iss": "https://evil.example"})));
        assert_eq!(tokens.verify(&other, now()).await, Err(TokenError::Issuer));
        // Without a JWKS, public-key algorithms are refused outright.
        let ed = Ed::new("k").sign(&claims(serde_json::json!({})), "k");
        assert_eq!(tokens.verify(&ed, now()).await, Err(TokenError::Algorithm));
    }
}
