//! HS256 access tokens on `jsonwebtoken`. The algorithm is pinned twice: the validation
//! accepts HS256 only (a header naming anything else, `none` included, is refused), and the
//! crypto provider installed for the process signs HS256 and nothing else. It also verifies
//! the public-key algorithms a product's own tokens may use (see [`super::external`]),
//! each only with a key of its own family.
//! Issuer, audience and the presence of `sub`, `iss`, `aud`, `exp`, `nbf`, `iat` and `typ`
//! are checked by the crate; expiry, not-before and issued-at are checked here against the
//! caller's clock (the crate reads the system clock itself), with 5 s of leeway.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::signature::{Error as SignatureError, Signer, Verifier};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::domain::UserId;

/// Clock difference tolerated between the node that issued a token and the one checking it.
const LEEWAY_SECS: i64 = 5;

/// The only kind of token this key signs.
const ACCESS: &str = "access";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token's algorithm is not accepted")]
    Algorithm,
    #[error("the token's signature is invalid")]
    Signature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was issued by someone else")]
    Issuer,
    #[error("the token is meant for someone else")]
    Audience,
    #[error("the token is signed with a key the issuer does not publish")]
    UnknownKey,
    #[error("{0}")]
    Claim(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Claims {
    sub: String,
    iss: String,
    aud: Audience,
    iat: i64,
    exp: i64,
    nbf: i64,
    typ: String,
    #[serde(default)]
    jti: Option<String>,
    /// The login the token belongs to (its refresh family): ending that session ends the
    /// token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sid: Option<String>,
    /// When it was issued, in milliseconds: a session end at a moment (a password change)
    /// tells the tokens issued before it from those issued after, within one second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat_ms: Option<i64>,
}

/// What a verified access token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessClaims {
    pub user_id: UserId,
    /// Expiry, seconds since the Unix epoch.
    pub expires_at: i64,
    /// When it was issued, milliseconds since the Unix epoch.
    pub issued_at_ms: i64,
    /// The login (refresh family) it belongs to.
    pub session: Option<String>,
}

/// HMAC-SHA256, the one algorithm the process can sign or verify with.
struct Hs256(hmac::Hmac<sha2::Sha256>);

impl Hs256 {
    fn new(key: &[u8]) -> Hs256 {
        use hmac::Mac;
        // HMAC accepts keys of any length; this cannot fail.
        Hs256(hmac::Hmac::new_from_slice(key).unwrap_or_else(|_| unreachable!()))
    }
}

impl Signer<Vec<u8>> for Hs256 {
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, SignatureError> {
        use hmac::Mac;
        let mut mac = self.0.clone();
        mac.update(msg);
        Ok(mac.finalize().into_bytes().to_vec())
    }
}

impl Verifier<Vec<u8>> for Hs256 {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> Result<(), SignatureError> {
        use hmac::Mac;
        let mut mac = self.0.clone();
        mac.update(msg);
        // Constant-time comparison.
        mac.verify_slice(signature)
            .map_err(SignatureError::from_source)
    }
}

impl JwtSigner for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

impl JwtVerifier for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

/// A public-key signature check through `ring`, for tokens minted by another party (see
/// [`super::external`]): RSA PKCS#1 v1.5 and PSS, ECDSA P-256 and P-384, Ed25519. Nothing
/// in the process signs with these; only Stoa's own HS256 tokens are signed here.
struct PublicKey {
    algorithm: Algorithm,
    scheme: &'static dyn ring::signature::VerificationAlgorithm,
    key: PublicKeyBytes,
}

enum PublicKeyBytes {
    Rsa { n: Vec<u8>, e: Vec<u8> },
    Raw(Vec<u8>),
}

impl Verifier<Vec<u8>> for PublicKey {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> Result<(), SignatureError> {
        let checked = match &self.key {
            PublicKeyBytes::Rsa { n, e } => {
                // `ring`'s RSA parameters take the components; the scheme fixes the hash.
                let params = match self.algorithm {
                    Algorithm::RS256 => &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                    Algorithm::RS384 => &ring::signature::RSA_PKCS1_2048_8192_SHA384,
                    Algorithm::RS512 => &ring::signature::RSA_PKCS1_2048_8192_SHA512,
                    Algorithm::PS256 => &ring::signature::RSA_PSS_2048_8192_SHA256,
                    Algorithm::PS384 => &ring::signature::RSA_PSS_2048_8192_SHA384,
                    _ => &ring::signature::RSA_PSS_2048_8192_SHA512,
                };
                ring::signature::RsaPublicKeyComponents { n, e }.verify(params, msg, signature)
            }
            PublicKeyBytes::Raw(key) => {
                ring::signature::UnparsedPublicKey::new(self.scheme, key).verify(msg, signature)
            }
        };
        checked.map_err(|_| SignatureError::new())
    }
}

impl JwtVerifier for PublicKey {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

/// The verifier of a public-key algorithm for `key`, if the key is of that algorithm's
/// family: an EC or RSA key is never taken for an HMAC secret, nor one family for another.
fn public_key(alg: Algorithm, key: &DecodingKey) -> jsonwebtoken::errors::Result<PublicKey> {
    use jsonwebtoken::AlgorithmFamily;
    use jsonwebtoken::DecodingKeyKind;
    use ring::signature as sig;
    if key.family() != alg.family() || key.family() == AlgorithmFamily::Hmac {
        return Err(ErrorKind::InvalidKeyFormat.into());
    }
    let scheme: &'static dyn sig::VerificationAlgorithm = match alg {
        Algorithm::ES256 => &sig::ECDSA_P256_SHA256_FIXED,
        Algorithm::ES384 => &sig::ECDSA_P384_SHA384_FIXED,
        Algorithm::EdDSA => &sig::ED25519,
        // RSA: the scheme is chosen in `verify` from the algorithm.
        _ => &sig::RSA_PKCS1_2048_8192_SHA256,
    };
    let bytes = match key.kind() {
        DecodingKeyKind::RsaModulusExponent { n, e } => PublicKeyBytes::Rsa {
            n: n.clone(),
            e: e.clone(),
        },
        DecodingKeyKind::SecretOrDer(raw) if key.family() != AlgorithmFamily::Rsa => {
            PublicKeyBytes::Raw(raw.clone())
        }
        // An RSA key in DER form: not how a JWKS gives one.
        DecodingKeyKind::SecretOrDer(_) => return Err(ErrorKind::InvalidKeyFormat.into()),
    };
    Ok(PublicKey {
        algorithm: alg,
        scheme,
        key: bytes,
    })
}

static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: |alg, key| match alg {
        Algorithm::HS256 => Ok(Box::new(Hs256::new(key.as_bytes()))),
        _ => Err(ErrorKind::InvalidAlgorithm.into()),
    },
    verifier_factory: |alg, key| match alg {
        Algorithm::HS256 if key.family() == jsonwebtoken::AlgorithmFamily::Hmac => {
            Ok(Box::new(Hs256::new(key.try_get_as_bytes()?)))
        }
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512
        | Algorithm::ES256
        | Algorithm::ES384
        | Algorithm::EdDSA => Ok(Box::new(public_key(*alg, key)?)),
        _ => Err(ErrorKind::InvalidAlgorithm.into()),
    },
    key_utils: KeyUtils::new_unimplemented(),
};

/// Installs the provider for the process (once; later calls are no-ops).
pub(super) fn install_provider() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let _ = PROVIDER.install_default();
    });
}

#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
    ttl_secs: i64,
}

impl JwtKeys {
    pub fn new(secret: Vec<u8>, issuer: &str, audience: &str, ttl_secs: u64) -> JwtKeys {
        install_provider();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["sub", "iss", "aud", "exp", "nbf"]);
        validation.leeway = LEEWAY_SECS as u64;
        // Checked below against the caller's clock, not the system's.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        JwtKeys {
            encoding: EncodingKey::from_secret(&secret),
            decoding: DecodingKey::from_secret(&secret),
            validation,
            issuer: issuer.to_string(),
            audience: audience.to_string(),
            ttl_secs: i64::try_from(ttl_secs).unwrap_or(i64::MAX / 2),
        }
    }

    pub fn ttl_secs(&self) -> i64 {
        self.ttl_secs
    }

    /// Signs an access token for `user`, valid from `now` for the configured lifetime.
    /// A token for `user`'s login `session`, issued at `now` (Unix seconds, the
    /// milliseconds read from the clock when `now` is the current second); it and its
    /// expiry.
    pub fn issue(&self, user: UserId, now: i64, session: Option<&str>) -> (String, i64) {
        let exp = now.saturating_add(self.ttl_secs);
        let clock = crate::domain::now_ms();
        let now_ms = if clock.div_euclid(1000) == now {
            clock
        } else {
            now.saturating_mul(1000)
        };
        let claims = Claims {
            sub: user.to_string(),
            iss: self.issuer.clone(),
            aud: Audience::One(self.audience.clone()),
            iat: now,
            exp,
            nbf: now,
            typ: ACCESS.into(),
            jti: Some(super::random_hex(8)),
            sid: session.map(str::to_string),
            iat_ms: Some(now_ms),
        };
        // Serialising these claims and HMAC signing cannot fail.
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .unwrap_or_default();
        (token, exp)
    }

    /// Checks a token's algorithm, signature, issuer, audience, kind and validity window.
    pub fn verify(&self, token: &str, now: i64) -> Result<AccessClaims, TokenError> {
        if token.len() > 8192 {
            return Err(TokenError::Malformed);
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                    TokenError::Algorithm
                }
                ErrorKind::InvalidSignature => TokenError::Signature,
                ErrorKind::InvalidIssuer => TokenError::Issuer,
                ErrorKind::InvalidAudience => TokenError::Audience,
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::ImmatureSignature => TokenError::NotYetValid,
                // A header that names no algorithm this crate knows (`none`, say) fails to
                // parse: refused for its algorithm all the same.
                ErrorKind::Json(_) if names_other_algorithm(token) => TokenError::Algorithm,
                _ => TokenError::Malformed,
            })?;
        let claims = data.claims;
        if claims.typ != ACCESS {
            return Err(TokenError::Malformed);
        }
        if claims.exp.saturating_add(LEEWAY_SECS) <= now {
            return Err(TokenError::Expired);
        }
        let future = now.saturating_add(LEEWAY_SECS);
        if claims.nbf > future || claims.iat > future {
            return Err(TokenError::NotYetValid);
        }
        let user_id = claims.sub.parse().map_err(|_| TokenError::Malformed)?;
        Ok(AccessClaims {
            user_id,
            expires_at: claims.exp,
            issued_at_ms: claims
                .iat_ms
                .filter(|ms| ms.div_euclid(1000) == claims.iat)
                .unwrap_or(claims.iat.saturating_mul(1000)),
            session: claims.sid,
        })
    }
}

/// Whether the token's header names an algorithm other than HS256 (for the error only:
/// such a token is refused either way).
fn names_other_algorithm(token: &str) -> bool {
    #[derive(Deserialize)]
    struct Alg {
        alg: String,
    }
    token
        .split('.')
        .next()
        .and_then(|h| URL_SAFE_NO_PAD.decode(h).ok())
        .and_then(|b| serde_json::from_slice::<Alg>(&b).ok())
        .is_some_and(|h| h.alg != "HS256")
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;

    fn keys() -> JwtKeys {
        JwtKeys::new(
            b"0123456789abcdef0123456789abcdef".to_vec(),
            "stoa",
            "stoa",
            900,
        )
    }

    fn forge(header: &str, claims: &serde_json::Value, sig: &str) -> String {
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims.to_string()),
            sig
        )
    }

    #[test]
    fn issued_tokens_verify() {
        let (t, exp) = keys().issue(42, NOW, Some("login"));
        assert_eq!(exp, NOW + 900);
        assert_eq!(
            keys().verify(&t, NOW + 10).unwrap(),
            AccessClaims {
                user_id: 42,
                expires_at: NOW + 900,
                issued_at_ms: NOW * 1000,
                session: Some("login".into()),
            }
        );
    }

    #[test]
    fn expired_tokens_are_refused() {
        let (t, _) = keys().issue(1, NOW, None);
        assert_eq!(
            keys().verify(&t, NOW + 900 + LEEWAY_SECS),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn alg_none_and_other_algorithms_are_refused() {
        let claims =
            serde_json::json!({"sub":"1","iss":"stoa","aud":"stoa","iat":NOW,"exp":NOW+60});
        let none = forge(r#"{"alg":"none","typ":"JWT"}"#, &claims, "");
        assert_eq!(keys().verify(&none, NOW), Err(TokenError::Algorithm));
        let rs = forge(r#"{"alg":"RS256"}"#, &claims, "c2ln");
        assert_eq!(keys().verify(&rs, NOW), Err(TokenError::Algorithm));
    }

    #[test]
    fn other_keys_issuers_and_audiences_are_refused() {
        let other = JwtKeys::new(
            b"another-secret-another-secret-xx".to_vec(),
            "stoa",
            "stoa",
            900,
        );
        let (t, _) = other.issue(1, NOW, None);
        assert_eq!(keys().verify(&t, NOW), Err(TokenError::Signature));
        let iss = JwtKeys::new(
            b"0123456789abcdef0123456789abcdef".to_vec(),
            "evil",
            "stoa",
            900,
        );
        assert_eq!(
            keys().verify(&iss.issue(1, NOW, None).0, NOW),
            Err(TokenError::Issuer)
        );
        let aud = JwtKeys::new(
            b"0123456789abcdef0123456789abcdef".to_vec(),
            "stoa",
            "other",
            900,
        );
        assert_eq!(
            keys().verify(&aud.issue(1, NOW, None).0, NOW),
            Err(TokenError::Audience)
        );
    }

    #[test]
    fn tampered_payloads_and_garbage_are_refused() {
        let (t, _) = keys().issue(1, NOW, None);
        let mut parts: Vec<&str> = t.split('.').collect();
        let evil = URL_SAFE_NO_PAD.encode(
            serde_json::json!({"sub":"2","iss":"stoa","aud":"stoa","iat":NOW,"exp":NOW+60})
                .to_string(),
        );
        parts[1] = &evil;
        assert_eq!(
            keys().verify(&parts.join("."), NOW),
            Err(TokenError::Signature)
        );
        for garbage in [
            "",
            "a",
            "a.b",
            "a.b.c.d",
            "....",
            "ü.ö.ä",
            &"x".repeat(10_000),
        ] {
            assert!(keys().verify(garbage, NOW).is_err());
        }
    }

    #[test]
    fn the_kind_and_the_issue_time_are_required_and_checked() {
        let k = keys();
        let sign = |claims: serde_json::Value| {
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &k.encoding).unwrap()
        };
        let base = serde_json::json!({"sub":"1","iss":"stoa","aud":"stoa","iat":NOW,"nbf":NOW,"exp":NOW+60,"typ":"access"});
        assert!(k.verify(&sign(base.clone()), NOW).is_ok());
        for (field, value) in [
            ("typ", serde_json::Value::Null),
            ("typ", serde_json::json!("refresh")),
            ("iat", serde_json::Value::Null),
            ("iat", serde_json::json!(NOW + 3600)),
            ("nbf", serde_json::Value::Null),
            ("exp", serde_json::Value::Null),
            ("sub", serde_json::json!("not-a-number")),
        ] {
            let mut claims = base.clone();
            match value.clone() {
                serde_json::Value::Null => {
                    claims.as_object_mut().unwrap().remove(field);
                }
                v => claims[field] = v,
            }
            assert!(k.verify(&sign(claims), NOW).is_err(), "{field} = {value:?}");
        }
    }
}
