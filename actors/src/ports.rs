//! What the actors need from the rest of the server, as traits. Their implementations live
//! in the `stoa` crate (over the store and the JWT keys); the actors only see these.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use stoa_protocol::Topic;

/// One committed entry of a workspace's event log, ready to push.
#[derive(Debug, Clone)]
pub struct LiveEvent {
    pub workspace_id: i64,
    /// Position in the workspace's log (1, 2, 3, … with no gaps).
    pub offset: i64,
    /// The document the event concerns when it is a comment event; such events are also
    /// pushed on `document:{id}`.
    pub document_id: Option<i64>,
    /// The `event` push payload: `{offset, kind, actor, subject, data, at}`.
    pub payload: Arc<Value>,
    /// When it was committed here or arrived from another node ([`crate::hist::stamp`]).
    pub born: u64,
}

/// Who may join a topic, as decided by [`Authorizer::authorize`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Grant {
    /// The workspace whose log feeds the topic (none for `user:{id}`).
    pub workspace_id: Option<i64>,
    /// Extra fields for the join reply (e.g. `unread_count` on `user:{id}`).
    pub info: serde_json::Map<String, Value>,
}

/// Why a join or a token was refused; `reason` is what the client reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// Not a member, not that user, or no such thing: the client may not know which.
    #[error("unauthorized")]
    Unauthorized,
    /// The token is malformed or forged.
    #[error("invalid_token")]
    InvalidToken,
    /// The token was valid and has expired.
    #[error("token_expired")]
    TokenExpired,
    /// The check itself failed (database down); the client should retry.
    #[error("unavailable")]
    Unavailable,
}

impl Denied {
    pub fn reason(&self) -> &'static str {
        match self {
            Denied::Unauthorized => "unauthorized",
            Denied::InvalidToken => "invalid_token",
            Denied::TokenExpired => "token_expired",
            Denied::Unavailable => "unavailable",
        }
    }
}

/// A verified access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user_id: i64,
    /// Expiry, in seconds since the Unix epoch.
    pub expires_at: i64,
    /// When it was issued (milliseconds since the Unix epoch).
    pub issued_at_ms: i64,
    /// The login it belongs to (its refresh family), if it says.
    pub session: Option<String>,
}

#[async_trait]
pub trait Authorizer: Send + Sync + 'static {
    /// Whether `user` may join `topic`: members for workspace and document topics, the
    /// user themself for `user:{id}`.
    async fn authorize(&self, user: i64, topic: Topic) -> Result<Grant, Denied>;

    /// Verifies an access token (the socket's, or one sent later with `access_token`).
    fn verify_token(&self, token: &str) -> Result<Identity, Denied>;

    /// Whether `user` may open `document` live, and edit it: members of its workspace may
    /// read it, editors and above may write.
    async fn document_access(&self, user: i64, document: i64) -> Result<DocAccess, Denied> {
        let _ = (user, document);
        Err(Denied::Unauthorized)
    }
}

/// What a user may do with a document they opened live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocAccess {
    pub workspace_id: i64,
    pub writable: bool,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("event log unavailable: {0}")]
pub struct LogError(pub String);

#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// The newest offset of a workspace's log (0 when empty).
    async fn latest_offset(&self, workspace: i64) -> Result<i64, LogError>;

    /// Up to `limit` events after `since`, oldest first.
    async fn events_after(
        &self,
        workspace: i64,
        since: i64,
        limit: u32,
    ) -> Result<Vec<LiveEvent>, LogError>;
}
