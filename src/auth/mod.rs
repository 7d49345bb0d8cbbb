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
}
