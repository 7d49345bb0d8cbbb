//! Domain types that parse instead of validate: once a value of one of these types exists,
//! it is known to be well formed, so neither the store nor the API checks it again.
//! Nothing here does I/O.

mod calendar;
mod event;
mod mentions;
mod role;
mod search;
mod text;
mod time;

pub use calendar::{BucketUnit, Zone, MAX_BUCKETS};
pub use event::EventKind;
pub use mentions::parse_mentions;
pub use role::Role;
pub use search::{escape_html, snippet, Phrase, SearchQuery, MAX_QUERY_BYTES, SEARCHABLE_CHARS};
pub use text::{
    CommentBody, DisplayName, DocumentTitle, Email, FieldError, Password, Slug, VersionName,
    WorkspaceName, BOUNDED_TEXT_PATTERN, EMAIL_MAX, EMAIL_PATTERN, SLUG_PATTERN,
};
pub use time::{format_timestamp, now_ms};

/// Why a value was refused, in words the client can act on: the domain's one error type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl Invalid {
    pub fn new(message: impl Into<String>) -> Invalid {
        Invalid(message.into())
    }
}

impl From<Invalid> for String {
    fn from(invalid: Invalid) -> String {
        invalid.0
    }
}

impl From<String> for Invalid {
    fn from(message: String) -> Invalid {
        Invalid(message)
    }
}

impl From<&str> for Invalid {
    fn from(message: &str) -> Invalid {
        Invalid(message.to_string())
    }
}

pub type UserId = i64;
pub type WorkspaceId = i64;
pub type DocumentId = i64;
pub type CommentId = i64;
