//! HS256 access tokens. The algorithm is pinned: a token whose header names anything but
//! HS256 (including `none`) is refused before its signature is even looked at, and issuer,
//! audience, expiry and not-before are always checked.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::domain::UserId;

type HmacSha256 = Hmac<Sha256>;

/// Clock difference tolerated between the node that issued a token and the one checking it.
const LEEWAY_SECS: i64 = 5;

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
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    jti: Option<String>,
}

/// What a verified access token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessClaims {
    pub user_id: UserId,
    /// Expiry, seconds since the Unix epoch.
    pub expires_at: i64,
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    typ: Option<String>,
}

#[derive(Clone)]
pub struct JwtKeys {
    secret: Vec<u8>,
    issuer: String,
    audience: String,
    ttl_secs: i64,
}

impl JwtKeys {
    pub fn new(secret: Vec<u8>, issuer: &str, audience: &str, ttl_secs: u64) -> JwtKeys {
        JwtKeys {
            secret,
            issuer: issuer.to_string(),
            audience: audience.to_string(),
            ttl_secs: i64::try_from(ttl_secs).unwrap_or(i64::MAX / 2),
        }
    }

    pub fn ttl_secs(&self) -> i64 {
        self.ttl_secs
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC accepts keys of any length; this cannot fail.
        HmacSha256::new_from_slice(&self.secret).unwrap_or_else(|_| unreachable!())
    }

    /// Signs an access token for `user`, valid from `now` for the configured lifetime.
    pub fn issue(&self, user: UserId, now: i64) -> (String, i64) {
        let exp = now.saturating_add(self.ttl_secs);
        let claims = Claims {
            sub: user.to_string(),
            iss: self.issuer.clone(),
            aud: Audience::One(self.audience.clone()),
            iat: now,
            exp,
            nbf: Some(now),
            typ: Some("access".into()),
            jti: Some(super::random_hex(8)),
        };
        (self.sign(&claims), exp)
    }

    fn sign(&self, claims: &Claims) -> String {
        let header = Header {
            alg: "HS256".into(),
            typ: Some("JWT".into()),
        };
        let h = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap_or_default());
        let p = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
        let signing_input = format!("{h}.{p}");
        let mut mac = self.mac();
        mac.update(signing_input.as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{signing_input}.{sig}")
    }

    /// Checks a token's algorithm, signature, issuer, audience and validity window.
    pub fn verify(&self, token: &str, now: i64) -> Result<AccessClaims, TokenError> {
        if token.len() > 8192 {
            return Err(TokenError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header: Header = URL_SAFE_NO_PAD
            .decode(h)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TokenError::Malformed)?;
        if header.alg != "HS256" {
            return Err(TokenError::Algorithm);
        }
        let sig = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| TokenError::Malformed)?;
        let mut mac = self.mac();
        mac.update(h.as_bytes());
        mac.update(b".");
        mac.update(p.as_bytes());
        mac.verify_slice(&sig).map_err(|_| TokenError::Signature)?;
        let claims: Claims = URL_SAFE_NO_PAD
            .decode(p)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TokenError::Malformed)?;
        if claims.iss != self.issuer {
            return Err(TokenError::Issuer);
        }
        let audience_ok = match &claims.aud {
            Audience::One(a) => *a == self.audience,
            Audience::Many(all) => all.contains(&self.audience),
        };
        if !audience_ok {
            return Err(TokenError::Audience);
        }
        if claims.typ.as_deref().is_some_and(|t| t != "access") {
            return Err(TokenError::Malformed);
        }
        if claims.exp.saturating_add(LEEWAY_SECS) <= now {
            return Err(TokenError::Expired);
        }
        if claims
            .nbf
            .is_some_and(|nbf| nbf > now.saturating_add(LEEWAY_SECS))
        {
            return Err(TokenError::NotYetValid);
        }
        let user_id = claims.sub.parse().map_err(|_| TokenError::Malformed)?;
        Ok(AccessClaims {
            user_id,
            expires_at: claims.exp,
        })
    }
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
        let (t, exp) = keys().issue(42, NOW);
        assert_eq!(exp, NOW + 900);
        assert_eq!(
            keys().verify(&t, NOW + 10).unwrap(),
            AccessClaims {
                user_id: 42,
                expires_at: NOW + 900
            }
        );
    }

    #[test]
    fn expired_tokens_are_refused() {
        let (t, _) = keys().issue(1, NOW);
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
        let (t, _) = other.issue(1, NOW);
        assert_eq!(keys().verify(&t, NOW), Err(TokenError::Signature));
        let iss = JwtKeys::new(
            b"0123456789abcdef0123456789abcdef".to_vec(),
            "evil",
            "stoa",
            900,
        );
        assert_eq!(
            keys().verify(&iss.issue(1, NOW).0, NOW),
            Err(TokenError::Issuer)
        );
        let aud = JwtKeys::new(
            b"0123456789abcdef0123456789abcdef".to_vec(),
            "stoa",
            "other",
            900,
        );
        assert_eq!(
            keys().verify(&aud.issue(1, NOW).0, NOW),
            Err(TokenError::Audience)
        );
    }

    #[test]
    fn tampered_payloads_and_garbage_are_refused() {
        let (t, _) = keys().issue(1, NOW);
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
}
