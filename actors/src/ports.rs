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

    /// Verifies an access token (the socket's, or one sent later with `access_token`). A
    /// product's token may provision its user and apply its role claims on the way.
    async fn verify_token(&self, token: &str) -> Result<Identity, Denied>;

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

/// What a document's log holds: its updates in order (a snapshot is one of them), and the
/// position of the last.
#[derive(Debug, Default, Clone)]
pub struct StoredDoc {
    pub updates: Vec<Vec<u8>>,
    pub last_seq: i64,
    /// The document's text as REST serves it (read with the whole log only).
    pub text: Option<String>,
    /// The log position the text, and the editors' recorded edits, follow up to: updates
    /// after it are still to be recorded (read with the whole log only).
    pub text_seq: i64,
    /// The version of a REST write whose text is not yet in the log.
    pub pending: Option<i64>,
}

/// What saving a document's text did.
#[derive(Debug, Default, Clone)]
pub struct Projection {
    /// The `document.edited` events recorded, to publish.
    pub events: Vec<crate::LiveEvent>,
    /// A REST write whose text has waited too long to reach the log (the node that took it
    /// stopped): its text and version, for this document to put there.
    pub adopt: Option<(String, i64)>,
}

/// Why the document store failed; `permanent` when trying again can only fail the same
/// way (the database refuses the data itself).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct DocError {
    pub message: String,
    pub permanent: bool,
}

/// Where documents' updates are kept.
#[async_trait]
pub trait DocStore: Send + Sync + 'static {
    /// What is stored for a document after position `after` (0: everything), oldest first.
    async fn load(&self, document: i64, after: i64) -> Result<StoredDoc, DocError>;
    /// Appends updates in one transaction, with who made them (user, edits); the position
    /// of the last.
    async fn append(
        &self,
        document: i64,
        updates: &[Vec<u8>],
        editors: &[(i64, u32)],
    ) -> Result<i64, DocError>;
    /// Keeps the document's text current for REST, search and reports, and records the
    /// edits of every stored update up to `through` not recorded yet (a `document.edited`
    /// event per editor, returned to be published).
    async fn save_text(
        &self,
        document: i64,
        text: &str,
        through: i64,
    ) -> Result<Projection, DocError>;
    /// The text of the REST write that made `version` is in the log now, at or before
    /// position `seq`.
    async fn text_in_log(&self, document: i64, version: i64, seq: i64) -> Result<(), DocError>;
    /// Replaces every update up to `through` with `snapshot` (which holds them all).
    async fn compact(&self, document: i64, snapshot: &[u8], through: i64) -> Result<(), DocError>;
}

/// Who publishes a live event to the node's topics and the other nodes (the real-time core):
/// what a document's actor needs to tell of the edits it recorded, without the registry.
pub(crate) trait Publisher: Send + Sync {
    fn publish(&self, event: LiveEvent);
}
