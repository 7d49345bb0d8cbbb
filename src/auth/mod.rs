//! Authentication: access tokens (HS256 JWT), password hashing, refresh-token material and
//! the login rate limiter. Nothing here touches HTTP or the database; the API wires it up.

mod jwt;
mod password;
mod rate_limit;

pub use jwt::{AccessClaims, JwtKeys, TokenError};
pub use password::{PasswordError, PasswordHasher, PasswordParams, PasswordWork};
pub use rate_limit::{address_key, AuthLimits, KeyedLimiter};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// `bytes` random bytes from the OS generator, base64url encoded.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// `bytes` random bytes as lower-case hex.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// The HS256 key a configured secret stands for, if it carries at least 256 bits of
/// entropy. `base64:<text>` is decoded (e.g. `base64:$(openssl rand -base64 32)`, at least
/// 32 bytes after decoding); any other text is the key as it is, and must be random enough:
/// its length times the bits a character of its alphabet can carry must reach 256, and it
/// must not be a few characters repeated. So 44 random base64 characters, or 64 hex digits,
/// pass; "0123456789abcdef" twice, a sentence, or 32 copies of one letter do not.
pub fn secret_key(text: &str) -> Result<Vec<u8>, String> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};
    const BITS: f64 = 256.0;
    if let Some(encoded) = text.strip_prefix("base64:") {
        let encoded = encoded.trim();
        let key = STANDARD
            .decode(encoded)
            .or_else(|_| URL_SAFE.decode(encoded))
            .or_else(|_| URL_SAFE_NO_PAD.decode(encoded))
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(encoded))
            .map_err(|_| "base64: is followed by text that is not base64".to_string())?;
        let distinct = key.iter().collect::<std::collections::HashSet<_>>().len();
        if key.len() < 32 || distinct < 16 {
            return Err(format!(
                "must decode to at least 32 random bytes (it decodes to {} bytes, {distinct} distinct)",
                key.len()
            ));
        }
        return Ok(key);
    }
    let has = |f: fn(&char) -> bool| text.chars().any(|c| f(&c));
    let mut alphabet = 0u32;
    if has(char::is_ascii_lowercase) {
        alphabet += 26;
    }
    if has(char::is_ascii_uppercase) {
        alphabet += 26;
    }
    if has(char::is_ascii_digit) {
        alphabet += 10;
    }
    if has(|c| c.is_ascii_punctuation() || *c == ' ') {
        alphabet += 33;
    }
    if has(|c| !c.is_ascii()) {
        alphabet += 128;
    }
    let chars = text.chars().count();
    let distinct = text.chars().collect::<std::collections::HashSet<_>>().len();
    let bits = chars as f64 * f64::from(alphabet.max(1)).log2();
    if bits < BITS || distinct < 16 || distinct * 4 < chars.min(64) {
        return Err(format!(
            "must carry at least 32 bytes of entropy: {chars} characters from an alphabet of \
             {alphabet} give about {bits:.0} bits ({distinct} distinct characters); use 44 or \
             more random characters, or base64:<32 random bytes> (openssl rand -base64 32)"
        ));
    }
    Ok(text.as_bytes().to_vec())
}

/// Refresh tokens are stored only as this digest, so a database leak yields no usable token.
pub fn token_digest(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    URL_SAFE_NO_PAD.encode(digest)
}

/// The refresh token that replaces `presented`: derived from it under the server's key, so
/// that presenting the same token twice within the reuse interval (two tabs, a retry after a
/// lost response) yields the same successor without the server keeping any token in clear.
/// Without the key, a successor cannot be computed from the token it replaces.
pub fn successor_token(key: &[u8], presented: &str) -> String {
    use hmac::{Hmac, Mac};
    // HMAC takes keys of any length.
    let mut mac = <Hmac<Sha256>>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(b"stoa refresh token successor\0");
    mac.update(presented.as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_material_is_random_and_sized() {
        assert_ne!(random_token(32), random_token(32));
        assert_eq!(random_token(32).len(), 43);
        assert_eq!(random_hex(3).len(), 6);
        assert_eq!(token_digest("a"), token_digest("a"));
        assert_ne!(token_digest("a"), token_digest("b"));
        let next = successor_token(b"key", "token");
        assert_eq!(next, successor_token(b"key", "token"), "deterministic");
        assert_ne!(next, successor_token(b"other key", "token"));
        assert_ne!(next, successor_token(b"key", "other token"));
        assert_eq!(next.len(), 43);
    }

    #[test]
    fn secrets_need_32_bytes_of_entropy_not_32_characters() {
        for weak in [
            "0123456789abcdef0123456789abcdef",
            "correct horse battery staple here",
            &"a".repeat(100),
            &"abcd".repeat(30),
            "base64:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "base64:c2hvcnQ=",
            "base64:not base64 at all!",
        ] {
            assert!(secret_key(weak).is_err(), "{weak:?} accepted");
        }
        // `openssl rand -base64 32`, `openssl rand -hex 32`, and the development secret.
        let b64 = "base64:q3Jx9Xl0m2C8sZt4pVfA7bN1yE6wK5uHd0gR2iT8oQc=";
        assert_eq!(secret_key(b64).unwrap().len(), 32);
        let raw_b64 = "q3Jx9Xl0m2C8sZt4pVfA7bN1yE6wK5uHd0gR2iT8oQc=";
        assert_eq!(secret_key(raw_b64).unwrap(), raw_b64.as_bytes());
        let hex = "9f2c4e7a1b3d5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8";
        assert!(secret_key(hex).is_ok());
        assert!(secret_key(&random_token(48)).is_ok());
    }
}
