//! Text values a client supplies, each parsed once at the edge.

use super::Invalid;
use serde::Serialize;

/// One field of a request that failed validation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// The field's path in the request body, e.g. `email` or `members[2].role`.
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Characters a text field may not contain: control characters, except newline and tab.
fn forbidden(c: char) -> bool {
    c.is_control() && c != '\n' && c != '\t'
}

/// Text of at most `max` characters as sent, with at least one that is not whitespace and no
/// control characters (but newline and tab), kept without its surrounding whitespace. These
/// are exactly the rules `BOUNDED_TEXT_PATTERN` and `maxLength` state in the OpenAPI
/// document, so a request the document calls valid is never refused, and the reverse.
fn bounded(value: &str, max: usize, what: &str) -> Result<String, Invalid> {
    if value.chars().count() > max {
        return Err(Invalid::from(format!(
            "{what} must be at most {max} characters"
        )));
    }
    if value.chars().any(forbidden) {
        return Err(Invalid::from(format!(
            "{what} must not contain control characters"
        )));
    }
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(Invalid::from(format!("{what} must not be empty")));
    }
    Ok(trimmed.to_string())
}

/// The JSON Schema pattern of [`bounded`] text: no control characters but newline and
/// tab, and at least one character that is not whitespace.
pub const BOUNDED_TEXT_PATTERN: &str = "^[^\\u0000-\\u0008\\u000B-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u0008\\u000B-\\u001F\\u007F-\\u009F]*$";

/// The JSON Schema pattern of an [`Email`] (see there).
pub const EMAIL_PATTERN: &str = "^[ \\t\\r\\n]*[A-Za-z0-9%+'_-]+(\\.[A-Za-z0-9%+'_-]+)*@[A-Za-z0-9%+'_-]+(\\.[A-Za-z0-9%+'_-]+)+[ \\t\\r\\n]*$";

/// The JSON Schema pattern of a [`Slug`].
pub const SLUG_PATTERN: &str = "^[a-z0-9]+(-[a-z0-9]+)*$";

/// Longest e-mail address, in characters as sent.
pub const EMAIL_MAX: usize = 254;

/// An e-mail address, kept as given (without surrounding spaces), compared through its
/// lower-case key. At most 254 characters; a local part and a domain of ASCII letters,
/// digits and `%+'_-`, in dot-separated runs, the domain with at least one dot. Internal
/// spaces, quoted local parts and address literals are refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    display: String,
    key: String,
}

impl Email {
    pub fn parse(value: &str) -> Result<Email, Invalid> {
        if value.chars().count() > EMAIL_MAX {
            return Err(Invalid::from(format!(
                "email must be at most {EMAIL_MAX} characters"
            )));
        }
        let v = value.trim_matches([' ', '\t', '\r', '\n']);
        if v.is_empty() {
            return Err(Invalid::from("email must not be empty"));
        }
        let Some((local, domain)) = v.split_once('@') else {
            return Err(Invalid::from("email must contain @"));
        };
        let atom = |c: char| c.is_ascii_alphanumeric() || "%+'_-".contains(c);
        let dotted = |p: &str| {
            !p.is_empty()
                && p.split('.')
                    .all(|run| !run.is_empty() && run.chars().all(atom))
        };
        if !dotted(local) || !dotted(domain) || !domain.contains('.') {
            return Err(Invalid::from("email is not a valid address"));
        }
        Ok(Email {
            display: v.to_string(),
            key: v.to_lowercase(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.display
    }

    /// The case-insensitive identity of the address.
    pub fn key(&self) -> &str {
        &self.key
    }
}

macro_rules! bounded_text {
    ($(#[$doc:meta])* $name:ident, $max:expr, $what:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name(String);

        impl $name {
            pub fn parse(value: &str) -> Result<$name, Invalid> {
                bounded(value, $max, $what).map($name)
            }

            /// Longest value, in characters as sent.
            pub const MAX: usize = $max;

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_inner(self) -> String {
                self.0
            }
        }
    };
}

bounded_text!(
    /// A user's display name: 1 to 100 characters.
    DisplayName, 100, "display name"
);
bounded_text!(
    /// A workspace's name: 1 to 100 characters.
    WorkspaceName, 100, "name"
);
bounded_text!(
    /// A document's title: 1 to 200 characters.
    DocumentTitle, 200, "title"
);
bounded_text!(
    /// A comment's body: 1 to 10,000 characters.
    CommentBody, 10_000, "body"
);
bounded_text!(
    /// A document version's name: 1 to 100 characters.
    VersionName, 100, "name"
);

/// A password: 8 to 256 characters. The upper bound keeps hashing cost bounded.
pub struct Password(String);

impl Password {
    pub fn parse(value: &str) -> Result<Password, Invalid> {
        let len = value.chars().count();
        if len < 8 {
            return Err(Invalid::from("password must be at least 8 characters"));
        }
        if len > 256 {
            return Err(Invalid::from("password must be at most 256 characters"));
        }
        Ok(Password(value.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

/// A workspace slug: lower-case letters, digits and single dashes, 2 to 64 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slug(String);

impl Slug {
    pub fn parse(value: &str) -> Result<Slug, Invalid> {
        let v = value;
        let valid_chars = v
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if v.len() < 2 || v.len() > 64 {
            return Err(Invalid::from("slug must be 2 to 64 characters"));
        }
        if !valid_chars || v.starts_with('-') || v.ends_with('-') || v.contains("--") {
            return Err(Invalid::from(
                "slug may contain only a-z, 0-9 and single dashes between them",
            ));
        }
        Ok(Slug(v.to_string()))
    }

    /// Derives a slug from a name: ASCII letters and digits kept, everything else a dash.
    pub fn derive(name: &str) -> Slug {
        let mut out = String::new();
        for c in name.chars() {
            if c.is_ascii_alphanumeric() {
                out.push(c.to_ascii_lowercase());
            } else if !out.ends_with('-') && !out.is_empty() {
                out.push('-');
            }
            if out.len() >= 48 {
                break;
            }
        }
        let trimmed = out.trim_end_matches('-');
        if trimmed.len() < 2 {
            Slug("workspace".to_string())
        } else {
            Slug(trimmed.to_string())
        }
    }

    /// This slug with a random suffix, for when the derived one is taken.
    pub fn with_suffix(&self, suffix: &str) -> Slug {
        Slug(format!("{}-{}", self.0, suffix))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_keeps_case_but_compares_lowercase() {
        let e = Email::parse(" \tAlice@Example.COM\n").unwrap();
        assert_eq!(e.as_str(), "Alice@Example.COM");
        assert_eq!(e.key(), "alice@example.com");
    }

    #[test]
    fn email_rejects_garbage() {
        for bad in [
            "a!b@c.de",
            "a@b.c d",
            "\"q\"@b.cd",
            &format!("{}@example.com", "x".repeat(250)),
            "",
            "a",
            "a@",
            "@b.c",
            "a@b",
            "a b@c.d",
            "a@@b.c",
            "a@b..c",
            &"x".repeat(300),
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bounded_text_is_trimmed_and_limited() {
        assert_eq!(WorkspaceName::parse("  Acme ").unwrap().as_str(), "Acme");
        assert!(WorkspaceName::parse("   ").is_err());
        assert!(WorkspaceName::parse(&"x".repeat(101)).is_err());
        assert!(DocumentTitle::parse("a\u{0}b").is_err());
        assert!(CommentBody::parse("line one\nline two").is_ok());
        // Length counts what was sent; control characters are refused even at the edges.
        assert!(WorkspaceName::parse(&format!("a{}", " ".repeat(100))).is_err());
        assert!(WorkspaceName::parse("Acme\r").is_err());
    }

    #[test]
    fn slugs() {
        assert!(Slug::parse("acme-inc").is_ok());
        for bad in ["A", "-a", "a-", "a--b", "Acme", "a b", "é1"] {
            assert!(Slug::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Slug::derive("Acme, Inc.!").as_str(), "acme-inc");
        assert_eq!(Slug::derive("日本").as_str(), "workspace");
        assert!(Slug::parse(Slug::derive(&"Long name ".repeat(20)).as_str()).is_ok());
    }

    #[test]
    fn passwords() {
        assert!(Password::parse("short").is_err());
        assert!(Password::parse("long enough").is_ok());
        assert!(Password::parse(&"p".repeat(257)).is_err());
        assert_eq!(
            format!("{:?}", Password::parse("secret-pass").unwrap()),
            "Password(***)"
        );
    }
}
