//! Authentication: access tokens (HS256 JWT), password hashing, refresh-token material and
//! the login rate limiter. Nothing here touches HTTP or the database; the API wires it up.

pub mod external;
mod jwt;
pub mod ldap;
pub mod oidc;
mod password;
mod rate_limit;

pub use jwt::{AccessClaims, JwtKeys, TokenError};
pub use password::{PasswordError, PasswordHasher, PasswordParams, PasswordWork};
pub use rate_limit::{address_key, AuthLimits, KeyedLimiter};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// The prefix of every API token: a token is recognisable in a log or a leaked file.
pub const API_TOKEN_PREFIX: &str = "stoa_";

/// A new API token (its prefix and 256 random bits) and the digest it is kept as.
pub fn new_api_token() -> (String, String) {
    let token = format!("{API_TOKEN_PREFIX}{}", random_token(32));
    let digest = token_digest(&token);
    (token, digest)
}

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
/// 32 bytes after decoding); any other text is the key as it is.
///
/// A text is judged by the alphabet it draws from, not by how many of that alphabet's
/// symbols one sample happens to show: hex digits carry 4 bits each (so `openssl rand -hex
/// 32`, 64 digits, always passes, whichever digits it happens to miss), base64 characters 6,
/// other printable text by the character classes it uses; a passphrase of words separated by
/// spaces carries about 12.9 bits a word (a word from a 7,776-word list), so it needs 20
/// words. Whatever the alphabet, a text must not be made of a few pieces repeated: at least
/// half of its three-symbol windows must differ, as they do in any random text (a random 64-digit hex
/// string has about 61.5 distinct windows of 62), while "0123456789abcdef" repeated or
/// `abcd` thirty times have 16 and 4.
pub fn secret_key(text: &str) -> Result<Vec<u8>, String> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};
    const BITS: f64 = 256.0;
    if text.contains("$(") || text.contains('`') {
        return Err(
            "holds a shell command that was never run (`$(…)` or backquotes): \
                    Compose's .env files and systemd's EnvironmentFile take values as written; \
                    run the command once (e.g. `openssl rand -hex 32`) and paste its output"
                .into(),
        );
    }
    if let Some(encoded) = text.strip_prefix("base64:") {
        let encoded = encoded.trim();
        let key = STANDARD
            .decode(encoded)
            .or_else(|_| URL_SAFE.decode(encoded))
            .or_else(|_| URL_SAFE_NO_PAD.decode(encoded))
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(encoded))
            .map_err(|_| "base64: is followed by text that is not base64".to_string())?;
        if key.len() < 32 || !varied(&key) {
            return Err(format!(
                "must decode to at least 32 random bytes (it decodes to {} bytes{})",
                key.len(),
                if varied(&key) {
                    ""
                } else {
                    " of a repeated pattern"
                }
            ));
        }
        return Ok(key);
    }
    let (bits, form) = entropy_bits(text);
    if bits < BITS || !varied(text.as_bytes()) {
        return Err(format!(
            "must carry at least 32 bytes of entropy: as {form} it carries about {bits:.0} bits{}; \
             use `openssl rand -hex 32` (64 hex digits), 44 or more random base64 characters, \
             base64:<32 random bytes> (`base64:$(openssl rand -base64 32)`), or 20 random words",
            if varied(text.as_bytes()) { "" } else { " and repeats itself" }
        ));
    }
    Ok(text.as_bytes().to_vec())
}

/// The bits a secret text carries if drawn at random from the alphabet it belongs to, and
/// that alphabet's name for the error message.
fn entropy_bits(text: &str) -> (f64, String) {
    let chars = text.chars().count() as f64;
    let words: Vec<&str> = text.split([' ', '-']).filter(|w| !w.is_empty()).collect();
    if words.len() >= 3
        && text.contains(' ')
        && words.iter().all(|w| w.chars().all(char::is_alphabetic))
    {
        // A passphrase: its words, not its letters, are the symbols.
        let distinct = words.iter().collect::<std::collections::HashSet<_>>().len();
        return (
            distinct as f64 * 7776f64.log2(),
            format!("a passphrase of {distinct} distinct words"),
        );
    }
    if !text.is_empty() && text.chars().all(|c| c.is_ascii_digit()) {
        return (chars * 10f64.log2(), format!("{chars} decimal digits"));
    }
    let is_hex = |c: char| c.is_ascii_hexdigit();
    if !text.is_empty()
        && text.chars().all(is_hex)
        && !(text.chars().any(|c| c.is_ascii_lowercase())
            && text.chars().any(|c| c.is_ascii_uppercase()))
    {
        return (chars * 4.0, format!("{chars} hex digits"));
    }
    let base64 = |c: char| c.is_ascii_alphanumeric() || "+/-_".contains(c);
    let unpadded = text.trim_end_matches('=');
    if !unpadded.is_empty() && unpadded.chars().all(base64) {
        let n = unpadded.chars().count() as f64;
        // Text that mixes upper and lower case is drawn from base64's alphabet, whether or
        // not this sample happens to show a digit, `+` or `/`.
        let has = |f: fn(&char) -> bool| unpadded.chars().any(|c| f(&c));
        let alphabet = if has(char::is_ascii_lowercase) && has(char::is_ascii_uppercase) {
            64.0
        } else {
            classes(unpadded)
        };
        return (
            n * f64::log2(alphabet),
            format!("{n} characters of an alphabet of {alphabet}"),
        );
    }
    let alphabet = classes(text);
    (
        chars * f64::log2(alphabet),
        format!("{chars} characters of an alphabet of {alphabet}"),
    )
}

/// The size of the alphabet made of the character classes a text uses.
fn classes(text: &str) -> f64 {
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
    f64::from(alphabet.max(2))
}

/// Whether most three-symbol windows of `bytes` differ, as in any random text.
fn varied(bytes: &[u8]) -> bool {
    let windows = bytes.len().saturating_sub(2);
    let distinct = bytes
        .windows(3)
        .collect::<std::collections::HashSet<_>>()
        .len();
    windows > 0 && distinct * 2 >= windows
}

/// Whether two secrets are equal, in time that does not depend on where they differ.
pub fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    // Digests first: equal lengths, so the comparison's time says nothing of the length.
    let (a, b) = (Sha256::digest(given), Sha256::digest(expected));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
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

    #[test]
    fn a_command_pasted_instead_of_its_output_is_named() {
        // What a .env file given to Compose keeps when the example's command is pasted.
        for pasted in [
            "base64:$(openssl rand -base64 32)",
            "$(openssl rand -hex 32)",
            "`openssl rand -hex 32`",
        ] {
            let err = secret_key(pasted).unwrap_err();
            assert!(err.contains("shell command that was never run"), "{err}");
        }
    }

    /// `openssl rand -hex 32` misses one of the 16 digits about one time in four, and two or
    /// three of them now and then: every such secret carries its 256 bits all the same.
    #[test]
    fn any_64_hex_digits_pass_however_many_distinct_digits_they_show() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for shown in [13usize, 14, 15, 16] {
            for _ in 0..200 {
                let digits: Vec<char> = "0123456789abcdef".chars().take(shown).collect();
                let secret: String = (0..64)
                    .map(|_| digits[rng.gen_range(0..digits.len())])
                    .collect();
                assert!(secret_key(&secret).is_ok(), "{secret} refused");
                assert!(
                    secret_key(&secret.to_uppercase()).is_ok(),
                    "{secret} refused"
                );
            }
        }
        for _ in 0..2000 {
            let hex = random_hex(32);
            assert!(secret_key(&hex).is_ok(), "{hex} refused");
        }
        // Fewer than 64 digits carry fewer than 256 bits.
        assert!(secret_key(&random_hex(31)).is_err());
    }

    #[test]
    fn base64_and_passphrase_secrets_are_judged_by_their_alphabet() {
        use base64::engine::general_purpose::STANDARD;
        for _ in 0..2000 {
            let mut bytes = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut bytes);
            let b64 = STANDARD.encode(bytes);
            assert!(secret_key(&b64).is_ok(), "{b64} refused");
            assert!(
                secret_key(&format!("base64:{b64}")).is_ok(),
                "{b64} refused"
            );
            assert!(secret_key(&random_token(33)).is_ok());
        }
        // 32 base64 characters are 192 bits.
        assert!(secret_key(&random_token(24)).is_err());
        // Twenty words from a long list carry 258 bits; five do not, however long they are.
        let twenty = "mosaic thunder lantern quiver saddle orbit pumice velvet walnut harbor \
                      ember canyon frost meadow cobalt juniper tundra parsley glimmer anchor";
        assert!(secret_key(twenty).is_ok());
        assert!(secret_key("correct horse battery staple extraordinarily").is_err());
        let repeated = "mosaic thunder lantern quiver ".repeat(5);
        assert!(secret_key(repeated.trim()).is_err(), "four distinct words");
        let err = secret_key("correct horse battery staple").unwrap_err();
        assert!(err.contains("4 distinct words"), "{err}");
    }
}
