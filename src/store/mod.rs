//! The storage port: everything Stoa keeps lives behind [`Store`].
//!
//! Each method is one database transaction. Mutations inside a workspace take the
//! workspace's offset counter first (which serialises writers of that workspace), check the
//! caller's role under that lock, apply the change and append exactly one event per change,
//! so the event log and the data can never disagree. Authorisation rules themselves live in
//! [`crate::domain`]; the store only applies them where the data is.
//!
//! The methods are declared in one trait per aggregate ([`Accounts`], [`Workspaces`],
//! [`Documents`], [`Comments`], [`Events`], [`Notifications`], [`Reports`]); [`Store`] is all of them
//! together, so `Arc<dyn Store>` is the one handle callers hold. Code that calls them on a
//! concrete store imports [`prelude`].

mod sql;

pub use sql::directory::api_token_session;
pub use sql::sso::email_domain;
pub use sql::{sqlite_path, ImportedEvent, SqlStore};

use std::collections::HashMap;

use async_trait::async_trait;
use serde_json::Value;

use crate::domain::{
    CommentBody, CommentId, DisplayName, DocumentId, DocumentTitle, Email, Role, SearchQuery, Slug,
    UserId, WorkspaceId, WorkspaceName,
};

/// Why a store operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The thing does not exist, or the caller may not know that it does.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The caller is a member but their role does not allow this.
    #[error("{0}")]
    Forbidden(&'static str),
    /// The change conflicts with the current state (`code` is machine readable).
    #[error("{detail}")]
    Conflict { code: &'static str, detail: String },
    /// `If-Match` named another version than the current one.
    #[error("document is at version {current}")]
    VersionMismatch { current: i64 },
    /// A field refers to something that cannot be used (e.g. a parent comment elsewhere).
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: &'static str,
    },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The change would take something past a limit (`code`: `quota_exceeded`); 413.
    #[error("{detail}")]
    TooLarge { code: &'static str, detail: String },
    /// Stored data that cannot be read back (a version's state).
    #[error("stored data cannot be read: {0}")]
    Corrupt(String),
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    /// Whether connecting failed because of how the database is configured rather than
    /// because it is away: a URL that cannot be used, a password or role it refuses
    /// (SQLSTATE class 28), a database that does not exist (3D000).
    pub fn is_configuration(&self) -> bool {
        match self {
            StoreError::Invalid { .. } | StoreError::Database(sqlx::Error::Configuration(_)) => {
                true
            }
            StoreError::Database(sqlx::Error::Database(e)) => e
                .code()
                .is_some_and(|c| c.starts_with("28") || c == "3D000"),
            _ => false,
        }
    }

    /// Whether trying the same thing again can only fail the same way: the database refused
    /// the data itself (a value it cannot hold, a row that is gone), rather than being away
    /// or busy.
    pub fn is_permanent(&self) -> bool {
        use sqlx::error::ErrorKind;
        match self {
            StoreError::Database(sqlx::Error::Database(e)) => {
                !matches!(e.kind(), ErrorKind::Other)
                    // SQLSTATE class 22 (data exception): e.g. a NUL in PostgreSQL text.
                    || e.code().is_some_and(|c| c.starts_with("22"))
            }
            StoreError::Database(
                sqlx::Error::Decode(_)
                | sqlx::Error::ColumnDecode { .. }
                | sqlx::Error::TypeNotFound { .. }
                | sqlx::Error::Encode(_),
            ) => true,
            StoreError::Database(_) | StoreError::Migrate(_) => false,
            StoreError::NotFound(_)
            | StoreError::Forbidden(_)
            | StoreError::Conflict { .. }
            | StoreError::TooLarge { .. }
            | StoreError::VersionMismatch { .. }
            | StoreError::Invalid { .. }
            | StoreError::Corrupt(_) => true,
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// One page of a list in a stable order; `next` is the key to continue after.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<i64>,
}

/// Where a list starts and how long it may be.
#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    pub after: Option<i64>,
    pub limit: u32,
}

#[derive(Debug, Clone)]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub display_name: String,
    pub disabled: bool,
    /// Whether the account's current address was proved (a mailed link followed, or the
    /// product's token vouched for it).
    pub email_verified: bool,
    pub created_at: i64,
}

#[derive(Debug, Clone)]
pub struct Workspace {
    pub id: WorkspaceId,
    pub name: String,
    pub slug: String,
    pub last_offset: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone)]
pub struct Member {
    pub workspace_id: WorkspaceId,
    pub user_id: UserId,
    pub email: String,
    pub display_name: String,
    pub role: Role,
    pub joined_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone)]
pub struct Document {
    pub id: DocumentId,
    pub workspace_id: WorkspaceId,
    pub title: String,
    /// `None` in list results, which leave the content out.
    pub content: Option<String>,
    pub version: i64,
    pub created_by: Option<UserId>,
    pub updated_by: Option<UserId>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone)]
pub struct Comment {
    pub id: CommentId,
    pub workspace_id: WorkspaceId,
    pub document_id: DocumentId,
    pub parent_id: Option<CommentId>,
    pub author_id: Option<UserId>,
    pub body: String,
    pub mentions: Vec<UserId>,
    pub resolved_at: Option<i64>,
    pub resolved_by: Option<UserId>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The text a comment is pinned to: two Yjs relative positions (encoded) and the text
/// between them when the comment was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommentAnchor {
    pub start: Vec<u8>,
    pub end: Vec<u8>,
    pub quote: String,
}

/// One entry of a workspace's append-only log.
#[derive(Debug, Clone)]
pub struct Event {
    pub workspace_id: WorkspaceId,
    pub offset: i64,
    pub kind: String,
    pub actor_id: Option<UserId>,
    /// What the event is about, as `type:id` (e.g. `document:12`).
    pub subject: String,
    pub data: Value,
    pub at: i64,
}

impl Event {
    /// Its kind, if this release knows it (a log shared with a later release may hold
    /// others).
    pub fn known_kind(&self) -> Option<crate::domain::EventKind> {
        crate::domain::EventKind::parse(&self.kind)
    }
}

/// Something a user is told about, caused by one event of a workspace's log.
#[derive(Debug, Clone)]
pub struct Notification {
    pub id: i64,
    pub user_id: UserId,
    pub workspace_id: WorkspaceId,
    /// The event that caused it.
    pub event_offset: i64,
    /// `mention`, `reply`, `member_added` or `role_changed`.
    pub kind: String,
    pub actor_id: Option<UserId>,
    pub subject: String,
    pub data: Value,
    pub created_at: i64,
    pub read_at: Option<i64>,
}

/// A notification taken for a digest, with what the digest needs of its user.
#[derive(Debug, Clone)]
pub struct DigestItem {
    pub notification: Notification,
    pub email: String,
    pub display_name: String,
    pub preferences: Value,
}

/// The outcome of presenting a refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The token was live; it is now spent and the new one replaces it. `family_id` names
    /// the login (the `sid` of its access tokens).
    Rotated { user_id: UserId, family_id: String },
    /// The token had already been spent or revoked: its whole family is now revoked, and
    /// `ended` is that login's end when this presentation revoked it.
    Reused { ended: Option<SessionEnd> },
    /// No such token, it expired, its login was revoked (logout, or reuse detected
    /// earlier), or its user is disabled.
    Invalid,
}

/// Sessions ended before their tokens expire: one login (`session`), or every token of
/// the user issued at or before `before_ms` but those of `except`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEnd {
    pub id: i64,
    pub user_id: UserId,
    pub session: Option<String>,
    pub before_ms: Option<i64>,
    pub except: Option<String>,
    /// `logged_out`, `password_changed`, `account_disabled`, `refresh_token_reused`.
    pub reason: String,
    pub created_at: i64,
}

/// Who a new member is.
#[derive(Debug, Clone)]
pub enum MemberRef {
    Id(UserId),
    Email(Email),
}

#[derive(Debug, Clone, Default)]
pub struct DocumentPatch {
    pub title: Option<DocumentTitle>,
    pub content: Option<String>,
    /// The content is that of this version, restored: the event is `document.restored`.
    pub restored_from: Option<i64>,
}

#[derive(Debug, Clone, Default)]
pub struct CommentPatch {
    /// New body with the mention keys parsed from it.
    pub body: Option<(CommentBody, Vec<String>)>,
    pub resolved: Option<bool>,
}

/// A page of the event log plus the newest offset at the time of reading.
#[derive(Debug, Clone)]
pub struct EventPage {
    pub events: Vec<Event>,
    pub latest_offset: i64,
}

/// Everything the server keeps, as one object: `Arc<dyn Store>` is what the API, the
/// real-time core and the tests hold. The methods live in one trait per aggregate below;
/// bring them into scope with `use crate::store::prelude::*`.
#[async_trait]
pub trait Store:
    Accounts
    + Workspaces
    + Documents
    + DocumentUpdates
    + Comments
    + Events
    + Notifications
    + Reports
    + Search
    + Directory
    + Invitations
    + SingleSignOn
    + Versions
    + Webhooks
    + Attachments
    + Send
    + Sync
    + 'static
{
    /// Whether the database answers.
    async fn ping(&self) -> StoreResult<()>;
}

/// The aggregate traits, for `use crate::store::prelude::*` wherever store methods are called.
pub mod prelude {
    pub use super::{
        Accounts, Attachments, Comments, Directory, DocumentUpdates, Documents, Events,
        Invitations, Notifications, Reports, Search, SingleSignOn, Store, Versions, Webhooks,
        Workspaces,
    };
}

/// A version of a document (see `document_versions`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionMeta {
    pub id: i64,
    pub document_id: DocumentId,
    /// `auto`, `write`, `restore` or `named`.
    pub kind: String,
    pub name: Option<String>,
    /// Whose edits it holds since the version before it.
    pub authors: Vec<UserId>,
    pub created_by: Option<UserId>,
    /// Characters of its text, and those added and removed since the version before.
    pub size: i64,
    pub added: i64,
    pub removed: i64,
    pub restored_from: Option<i64>,
    pub base: bool,
    pub created_at: i64,
}

/// A version to store: its state as a link of its chain, and what it says of itself.
#[derive(Debug, Clone)]
pub struct NewVersion {
    pub kind: &'static str,
    pub name: Option<String>,
    pub authors: Vec<UserId>,
    pub created_by: Option<UserId>,
    pub state_vector: Vec<u8>,
    /// Deflated: the whole state (`base`) or what changed since the newest version.
    pub delta: Vec<u8>,
    pub base: bool,
    pub chain: i64,
    /// Deflated text, kept while this is the newest version.
    pub text_z: Vec<u8>,
    pub size: i64,
    pub added: i64,
    pub removed: i64,
    pub restored_from: Option<i64>,
    /// The log position the state reaches (what was read to make it).
    pub through: Option<i64>,
}

/// The newest version of a document, which the next one is made against.
#[derive(Debug, Clone)]
pub struct VersionHead {
    pub id: i64,
    pub state_vector: Vec<u8>,
    pub chain: i64,
    pub text_z: Option<Vec<u8>>,
}

/// One link of a version's chain: a deflated update, the whole state when `base`.
#[derive(Debug, Clone)]
pub struct VersionLink {
    pub id: i64,
    pub delta: Vec<u8>,
    pub base: bool,
}

/// An automatic version due when a document's editing was recorded: the log up to the
/// position recorded before (the document as the last window left it) and its authors.
#[derive(Debug, Clone, Default)]
pub struct DueVersion {
    pub updates: Vec<Vec<u8>>,
    pub authors: Vec<UserId>,
}

/// Document history: versions stored as chains of Yjs updates (`crate::history` makes and
/// reads them).
#[async_trait]
pub trait Versions: Send + Sync {
    async fn version_head(&self, doc: DocumentId) -> StoreResult<Option<VersionHead>>;
    /// Stores a version (the newest, from now on). Versions other than automatic ones also
    /// take the editors recorded since the last version as authors. `announce`: a
    /// `document.versioned` event by `created_by` (a named version).
    async fn insert_version(
        &self,
        doc: DocumentId,
        version: &NewVersion,
        announce: bool,
    ) -> StoreResult<(VersionMeta, Option<Event>)>;
    /// The document's versions, newest first.
    async fn versions(&self, doc: DocumentId, page: PageRequest) -> StoreResult<Page<VersionMeta>>;
    /// One version and, for the newest, its deflated text.
    async fn version(
        &self,
        doc: DocumentId,
        version: i64,
    ) -> StoreResult<Option<(VersionMeta, Option<Vec<u8>>)>>;
    /// The chain that makes `version`: from the nearest base at or before it, in order.
    async fn version_chain(&self, doc: DocumentId, version: i64) -> StoreResult<Vec<VersionLink>>;
    /// Every version of the document, oldest first (for thinning).
    async fn all_versions(&self, doc: DocumentId) -> StoreResult<Vec<VersionMeta>>;
    /// Removes `version`, its change folded into the version after it (`next`, now
    /// holding `merged`, a base if `base`, with both versions' authors and counts).
    async fn fold_version(
        &self,
        doc: DocumentId,
        version: i64,
        next: i64,
        merged: &[u8],
        base: bool,
        authors: &[UserId],
    ) -> StoreResult<()>;
    /// The two links `fold_version` merges: the version's and the next one's.
    async fn version_links(
        &self,
        doc: DocumentId,
        version: i64,
        next: i64,
    ) -> StoreResult<Option<(VersionLink, VersionLink)>>;
}

/// A sign-in through an OpenID Connect provider in flight (see `oidc_flows`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcFlow {
    /// The digest of the `state` parameter (kind `state`) or of the one-time code the
    /// console trades for tokens (kind `handoff`).
    pub id: String,
    pub kind: String,
    pub provider: String,
    /// The digest of the cookie of the browser that began the sign-in.
    pub browser: String,
    pub nonce: Option<String>,
    pub verifier: Option<String>,
    /// Where the console goes once signed in (a path of its own).
    pub next_path: Option<String>,
    pub user_id: Option<UserId>,
    pub expires_at: i64,
}

/// How a login began and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// `None` for a password, `ldap`, or `oidc:<provider name>`.
    pub method: Option<String>,
    pub created_at: i64,
}

/// A workspace's single sign-on rule: members whose address is in one of `domains` sign
/// in through `provider` only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceSso {
    pub provider: String,
    pub domains: Vec<String>,
    pub updated_at: i64,
}

/// Single sign-on: sign-ins in flight, accounts found or made by a provider's verified
/// address, and workspaces that require it.
#[async_trait]
pub trait SingleSignOn: Send + Sync {
    /// Stores a sign-in in flight (and drops those that have expired).
    async fn insert_oidc_flow(&self, flow: &OidcFlow) -> StoreResult<()>;
    /// Takes (deletes and returns) the unexpired flow of this id and kind: a second take of
    /// the same one finds nothing.
    async fn take_oidc_flow(&self, id: &str, kind: &str, now: i64)
        -> StoreResult<Option<OidcFlow>>;
    /// The account of a provider's person: the one linked to (`issuer`, `subject`);
    /// otherwise the account holding the address the provider has verified, now linked; or
    /// a new account. An account found by an address it had not verified itself loses its
    /// password and its logins (returned): whoever registered the address without owning
    /// it keeps nothing of it.
    async fn sso_user(
        &self,
        issuer: &str,
        subject: &str,
        email: Option<&Email>,
        name: Option<&DisplayName>,
    ) -> StoreResult<(User, Option<SessionEnd>)>;
    /// How a login (refresh family) began.
    async fn session_info(&self, family: &str) -> StoreResult<Option<SessionInfo>>;
    /// The provider the user must sign in through: that of a workspace they are a member of
    /// whose single sign-on rule names their address's domain.
    async fn sso_requirement(&self, user: UserId) -> StoreResult<Option<String>>;
    async fn workspace_sso(&self, workspace: WorkspaceId) -> StoreResult<Option<WorkspaceSso>>;
    /// Sets (or, with `None`, lifts) the workspace's rule.
    async fn set_workspace_sso(
        &self,
        workspace: WorkspaceId,
        rule: Option<(&str, &[String])>,
    ) -> StoreResult<Option<WorkspaceSso>>;
    /// The workspace's members whose address is in one of `domains`.
    async fn members_in_domains(
        &self,
        workspace: WorkspaceId,
        domains: &[String],
    ) -> StoreResult<Vec<UserId>>;
    /// Ends every live login of the user that did not begin with `method`: their refresh
    /// families revoked, their access tokens refused. Returns the ends to tell the nodes.
    async fn end_sessions_not_by(
        &self,
        user: UserId,
        method: &str,
        reason: &str,
    ) -> StoreResult<Vec<SessionEnd>>;
}

/// Users and their refresh tokens.
#[async_trait]
pub trait Accounts: Send + Sync {
    async fn create_user(
        &self,
        email: &Email,
        name: &DisplayName,
        password_hash: &str,
    ) -> StoreResult<User>;
    async fn user(&self, id: UserId) -> StoreResult<Option<User>>;
    /// A user and their password hash, by e-mail key.
    async fn user_credentials(&self, email_key: &str) -> StoreResult<Option<(User, String)>>;
    async fn insert_refresh_token(
        &self,
        user_id: UserId,
        family_id: &str,
        token_hash: &str,
        expires_at: i64,
        method: Option<&str>,
    ) -> StoreResult<()>;
    /// Spends `presented_hash` and stores `new_hash` in the same family, atomically. A
    /// token spent within the last `reuse_interval_ms` and presented again with the same
    /// `new_hash` is answered as rotated again (its successor, unused, stays the current
    /// token); any other presentation of a spent token revokes the family.
    async fn rotate_refresh_token(
        &self,
        presented_hash: &str,
        new_hash: &str,
        new_expires_at: i64,
        reuse_interval_ms: i64,
    ) -> StoreResult<Rotation>;
    /// Revokes the family of a refresh token (logout), recording the end of that login's
    /// session; `None` if the token is unknown or its login already ended.
    async fn revoke_refresh_family(&self, presented_hash: &str) -> StoreResult<Option<SessionEnd>>;
    /// The user's password hash.
    async fn password_hash(&self, user: UserId) -> StoreResult<Option<String>>;
    /// Sets a new password and ends every other login of the user (their refresh
    /// families revoked, their access tokens refused), keeping `keep` (the login that
    /// changed it).
    async fn change_password(
        &self,
        user: UserId,
        password_hash: &str,
        keep: Option<&str>,
    ) -> StoreResult<SessionEnd>;
    /// Disables (or enables again) the account with this e-mail key; disabling ends every
    /// login. `None`: no such account.
    async fn set_disabled(
        &self,
        email_key: &str,
        disabled: bool,
    ) -> StoreResult<Option<(User, Option<SessionEnd>)>>;
    /// Session ends recorded after `after` (an id) and no earlier than `since` (ms), in
    /// order.
    async fn session_ends_after(&self, after: i64, since: i64) -> StoreResult<Vec<SessionEnd>>;
    /// Deletes session ends recorded before `before` (ms): the tokens they name have
    /// expired.
    async fn prune_session_ends(&self, before: i64) -> StoreResult<u64>;
    /// Whether only verified addresses match accounts by e-mail (members, mentions).
    fn require_verified_email(&self, on: bool);
    /// Keeps a mailed link's digest for `user` (`purpose`: `verify_email` for `email`, or
    /// `reset_password`), good until `expires_at` (ms) and once.
    async fn issue_email_token(
        &self,
        user: UserId,
        purpose: &str,
        email: &str,
        digest: &str,
        expires_at: i64,
    ) -> StoreResult<()>;
    /// Spends a verification link: the account's address is proved if it is still the one
    /// the link was sent to. `None`: unknown, spent or expired.
    async fn verify_email(&self, digest: &str) -> StoreResult<Option<User>>;
    /// Spends a reset link and sets the new password, ending every login of the account.
    /// `None`: unknown, spent or expired.
    async fn reset_password(
        &self,
        digest: &str,
        password_hash: &str,
    ) -> StoreResult<Option<SessionEnd>>;
    /// The account with this e-mail key, if any.
    async fn user_by_email(&self, email_key: &str) -> StoreResult<Option<User>>;
    /// The account's notification preferences (JSON; `{}` when never set).
    async fn notification_preferences(&self, user: UserId) -> StoreResult<Value>;
    /// Changes the display name and/or the notification preferences.
    async fn update_profile(
        &self,
        user: UserId,
        name: Option<&DisplayName>,
        preferences: Option<&Value>,
    ) -> StoreResult<User>;
    /// Everything the account may read about itself, as one JSON document.
    async fn export_account(&self, user: UserId) -> StoreResult<Value>;
    /// Deletes the account: every login ends, its memberships are removed (one event each),
    /// and everything personal is erased; what it wrote stays, by "Deleted user". Refused
    /// (`sole_owner`) while it is the only owner of a workspace.
    async fn delete_account(&self, user: UserId) -> StoreResult<(SessionEnd, Vec<Event>)>;
    /// Deletes refresh tokens that expired by `now` or were spent (or revoked) before
    /// `spent_before`, and families left without tokens; returns the tokens deleted.
    async fn prune_refresh_tokens(&self, now: i64, spent_before: i64) -> StoreResult<u64>;
}

/// A membership changed by the system (a token's role claims, the directory API), for the
/// caller to tell the live side as the REST member routes do.
#[derive(Debug, Clone)]
pub struct MembershipChange {
    pub workspace_id: WorkspaceId,
    pub user_id: UserId,
    /// The role now held; `None`: removed.
    pub role: Option<Role>,
    pub event: Event,
}

/// A service's API token, as stored (its secret is only ever held as a digest).
#[derive(Debug, Clone)]
pub struct ApiToken {
    pub id: i64,
    pub name: String,
    pub scopes: Vec<String>,
    pub user_id: Option<UserId>,
    pub workspace_id: Option<WorkspaceId>,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub revoked: bool,
    pub created_at: i64,
}

/// The product's users, workspaces and memberships, as its tokens and directory API name
/// them; and API tokens.
#[async_trait]
pub trait Directory: Send + Sync {
    /// The user the product knows as `subject` (created on first sight; its e-mail and name
    /// kept up to date when given). A new user's e-mail already held by another account is
    /// kept for display but does not match the account by e-mail.
    async fn external_user(
        &self,
        issuer: &str,
        subject: &str,
        email: Option<&Email>,
        name: Option<&DisplayName>,
    ) -> StoreResult<User>;
    /// The user known as `subject`, if any.
    async fn external_user_id(&self, issuer: &str, subject: &str) -> StoreResult<Option<UserId>>;
    /// The subject `user` is known by at `issuer`, if any.
    async fn external_subject(&self, user: UserId, issuer: &str) -> StoreResult<Option<String>>;
    /// Applies the role claims of a token issued at `issued_at_ms`: each named workspace
    /// (by external id; unknown ones are skipped) gets the role, and a membership an earlier
    /// token granted that this one no longer names is removed. A token older than the last
    /// applied changes nothing. The last owner of a workspace is never removed or demoted.
    async fn apply_role_claims(
        &self,
        user: UserId,
        issuer: &str,
        subject: &str,
        roles: &[(String, Role)],
        issued_at_ms: i64,
    ) -> StoreResult<Vec<MembershipChange>>;
    /// Creates the workspace with this external id, or renames it; `true` if created.
    async fn directory_workspace(
        &self,
        external_id: &str,
        name: &WorkspaceName,
        slug: Option<&Slug>,
    ) -> StoreResult<(Workspace, bool)>;
    /// Sets (or with `None` removes) a user's role in the workspace with this external id.
    async fn directory_membership(
        &self,
        external_id: &str,
        user: UserId,
        role: Option<Role>,
    ) -> StoreResult<(WorkspaceId, Option<MembershipChange>)>;
    /// A token of `owner` (personal, optionally for one workspace), or of nobody (a
    /// service's, such as the directory's).
    #[allow(clippy::too_many_arguments)]
    async fn create_api_token(
        &self,
        owner: Option<UserId>,
        workspace: Option<WorkspaceId>,
        name: &str,
        digest: &str,
        scopes: &[String],
        expires_at: Option<i64>,
    ) -> StoreResult<ApiToken>;
    /// The user's tokens that are not revoked, newest first.
    async fn api_tokens_of(&self, user: UserId) -> StoreResult<Vec<ApiToken>>;
    /// Revokes one of the user's tokens, recording the end of its sessions (sockets opened
    /// with it close); `NotFound` if it is not theirs or already revoked.
    async fn revoke_api_token(&self, user: UserId, id: i64) -> StoreResult<SessionEnd>;
    /// The token with this digest, unless revoked.
    async fn api_token(&self, digest: &str) -> StoreResult<Option<ApiToken>>;
    /// Records a use (at most once a minute is written).
    async fn touch_api_token(&self, id: i64, at: i64) -> StoreResult<()>;
}

/// A role offered to an address that has no (verified) account yet.
#[derive(Debug, Clone)]
pub struct Invitation {
    pub id: i64,
    pub workspace_id: WorkspaceId,
    pub email: String,
    pub role: Role,
    pub invited_by: Option<UserId>,
    pub expires_at: i64,
    pub sent_at: i64,
    pub created_at: i64,
}

/// Invitations by e-mail, for admins and owners of a workspace.
#[async_trait]
pub trait Invitations: Send + Sync {
    /// Invites `email` with `role` (the caller may grant it), with the link's digest; an
    /// address already invited gets the new link and role (the old link is void).
    async fn invite(
        &self,
        actor: UserId,
        ws: WorkspaceId,
        email: &Email,
        role: Role,
        digest: &str,
        expires_at: i64,
    ) -> StoreResult<(Invitation, Event)>;
    /// Pending invitations of a workspace, newest first (expired ones included).
    async fn invitations(&self, actor: UserId, ws: WorkspaceId) -> StoreResult<Vec<Invitation>>;
    /// A new link for a pending invitation.
    async fn resend_invitation(
        &self,
        actor: UserId,
        id: i64,
        digest: &str,
        expires_at: i64,
    ) -> StoreResult<(Invitation, Event)>;
    async fn revoke_invitation(&self, actor: UserId, id: i64) -> StoreResult<Event>;
    /// Accepts the invitation whose link has this digest, for `user`, whose address must be
    /// the one invited (following the link proves it). The membership's event and the
    /// invitation's.
    async fn accept_invitation(
        &self,
        user: UserId,
        digest: &str,
    ) -> StoreResult<(Member, Vec<Event>)>;
}

/// Workspaces and their members.
#[async_trait]
pub trait Workspaces: Send + Sync {
    async fn create_workspace(
        &self,
        actor: UserId,
        name: &WorkspaceName,
        slug: Option<&Slug>,
    ) -> StoreResult<(Workspace, Role, Event)>;
    async fn workspaces_of(
        &self,
        user: UserId,
        page: PageRequest,
    ) -> StoreResult<Page<(Workspace, Role)>>;
    /// The workspace and the caller's role in it; `NotFound` for non-members.
    async fn workspace(&self, actor: UserId, id: WorkspaceId) -> StoreResult<(Workspace, Role)>;
    async fn update_workspace(
        &self,
        actor: UserId,
        id: WorkspaceId,
        name: Option<&WorkspaceName>,
        slug: Option<&Slug>,
    ) -> StoreResult<(Workspace, Event)>;
    /// Deletes the workspace with everything in it (owners only).
    async fn delete_workspace(&self, actor: UserId, id: WorkspaceId) -> StoreResult<Workspace>;

    async fn members(
        &self,
        actor: UserId,
        ws: WorkspaceId,
        page: PageRequest,
    ) -> StoreResult<Page<Member>>;
    async fn member(&self, actor: UserId, ws: WorkspaceId, user: UserId) -> StoreResult<Member>;
    async fn add_member(
        &self,
        actor: UserId,
        ws: WorkspaceId,
        who: &MemberRef,
        role: Role,
    ) -> StoreResult<(Member, Event)>;
    async fn change_role(
        &self,
        actor: UserId,
        ws: WorkspaceId,
        user: UserId,
        role: Role,
    ) -> StoreResult<(Member, Option<Event>)>;
    /// Removes a member; a member may always remove themselves (leave) unless last owner.
    async fn remove_member(
        &self,
        actor: UserId,
        ws: WorkspaceId,
        user: UserId,
    ) -> StoreResult<Event>;
    /// The caller's role in a workspace; `NotFound` for non-members.
    async fn role(&self, actor: UserId, ws: WorkspaceId) -> StoreResult<Role>;
}

/// Documents.
#[async_trait]
pub trait Documents: Send + Sync {
    async fn create_document(
        &self,
        actor: UserId,
        ws: WorkspaceId,
        title: &DocumentTitle,
        content: &str,
    ) -> StoreResult<(Document, Event)>;
    async fn documents(
        &self,
        actor: UserId,
        ws: WorkspaceId,
        page: PageRequest,
    ) -> StoreResult<Page<Document>>;
    async fn document(&self, actor: UserId, id: DocumentId) -> StoreResult<(Document, Role)>;
    async fn update_document(
        &self,
        actor: UserId,
        id: DocumentId,
        patch: &DocumentPatch,
        expected_version: Option<i64>,
    ) -> StoreResult<(Document, Event)>;
    async fn delete_document(
        &self,
        actor: UserId,
        id: DocumentId,
        expected_version: Option<i64>,
    ) -> StoreResult<Event>;
    /// The workspace a document belongs to and the caller's role there; `NotFound` for
    /// non-members and missing documents alike.
    async fn document_role(
        &self,
        actor: UserId,
        doc: DocumentId,
    ) -> StoreResult<(WorkspaceId, Role)>;
}

/// The Yjs updates of documents' live content: an append-only log per document, of which
/// a prefix is now and then replaced by one snapshot update that holds it.
#[async_trait]
pub trait DocumentUpdates: Send + Sync {
    /// The stored updates of a document after position `after` (0: all), oldest first,
    /// and the position of the last (`after` when there is none).
    async fn document_updates(
        &self,
        doc: DocumentId,
        after: i64,
    ) -> StoreResult<(Vec<Vec<u8>>, i64)>;
    /// Appends updates in one transaction, `editors` (who made them, with their edits)
    /// kept with the last; the position of the last.
    async fn append_document_updates(
        &self,
        doc: DocumentId,
        updates: &[Vec<u8>],
        editors: &[(UserId, u32)],
    ) -> StoreResult<i64>;
    /// The document's text as REST serves it and how far it follows the update log
    /// (`None`: no such document).
    async fn document_text(&self, doc: DocumentId) -> StoreResult<Option<DocumentText>>;
    /// Records live editing up to log position `through`: the document's text becomes
    /// `text` (a new version, unless a REST write's text is still to reach the log), and
    /// the edits of every stored update after the last recorded position and up to
    /// `through` are one `document.edited` event per editor. Each update's edits are
    /// recorded once, whichever node (or start-up catch-up) gets there first.
    async fn record_live_edit(
        &self,
        doc: DocumentId,
        text: &str,
        through: i64,
        version_interval_ms: i64,
    ) -> StoreResult<LiveEdit>;
    /// The text of the REST write that made `version` is in the update log now.
    async fn text_in_log(&self, doc: DocumentId, version: i64, seq: i64) -> StoreResult<()>;
    /// Documents (and their workspaces) after `after`, in id order, whose text, events or
    /// rollups are behind their update log, or whose REST text is not in it.
    async fn documents_behind(
        &self,
        after: DocumentId,
        limit: u32,
    ) -> StoreResult<Vec<(DocumentId, WorkspaceId)>>;
    /// Replaces the updates up to `through` with `snapshot`, in one transaction; never
    /// past the last recorded position, whose later updates' editors are still needed.
    async fn compact_document_updates(
        &self,
        doc: DocumentId,
        snapshot: &[u8],
        through: i64,
    ) -> StoreResult<()>;
}

/// A document's text as REST serves it, and what of its update log it reflects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentText {
    pub content: String,
    pub version: i64,
    /// The log position up to which the text and the edits' events were recorded.
    pub text_seq: i64,
    /// The version of a REST write whose text is not yet in the update log.
    pub pending: Option<i64>,
}

/// What recording live editing did.
#[derive(Debug, Clone, Default)]
pub struct LiveEdit {
    /// One `document.edited` per editor.
    pub events: Vec<Event>,
    /// A REST write whose text no node has put into the update log for a while (its node
    /// stopped in between): its text and version, for the caller to put there.
    pub adopt: Option<(String, i64)>,
    /// An automatic version is due (none was made for `version_interval_ms` and the
    /// document changed since the last one): the document as the previous window left it.
    pub version: Option<DueVersion>,
}

/// Comments on documents and the members they mention.
#[async_trait]
pub trait Comments: Send + Sync {
    async fn create_comment(
        &self,
        actor: UserId,
        doc: DocumentId,
        parent: Option<CommentId>,
        body: &CommentBody,
        mention_keys: &[String],
        anchor: Option<&CommentAnchor>,
    ) -> StoreResult<(Comment, Event)>;
    /// The anchors of the document's comments, by comment.
    async fn comment_anchors(
        &self,
        doc: DocumentId,
    ) -> StoreResult<HashMap<CommentId, CommentAnchor>>;
    /// Pins a comment to new positions (its quote, moved elsewhere in the text).
    async fn move_comment_anchor(&self, id: CommentId, start: &[u8], end: &[u8])
        -> StoreResult<()>;
    async fn comments(
        &self,
        actor: UserId,
        doc: DocumentId,
        resolved: Option<bool>,
        page: PageRequest,
    ) -> StoreResult<Page<Comment>>;
    async fn comment(&self, actor: UserId, id: CommentId) -> StoreResult<Comment>;
    async fn update_comment(
        &self,
        actor: UserId,
        id: CommentId,
        patch: &CommentPatch,
    ) -> StoreResult<(Comment, Option<Event>)>;
    async fn delete_comment(&self, actor: UserId, id: CommentId) -> StoreResult<Event>;
}

/// Reading a workspace's event log (the log is written by the other aggregates, one event
/// per change, in the change's transaction).
#[async_trait]
pub trait Events: Send + Sync {
    async fn events(
        &self,
        actor: UserId,
        ws: WorkspaceId,
        since: i64,
        limit: u32,
    ) -> StoreResult<EventPage>;
    /// The newest offset of a workspace's log, for the server itself (no membership check).
    async fn log_head(&self, ws: WorkspaceId) -> StoreResult<i64>;
    /// Up to `limit` events after `since`, for the server itself (no membership check).
    async fn log_after(&self, ws: WorkspaceId, since: i64, limit: u32) -> StoreResult<Vec<Event>>;
}

/// Notifications (written with the events that cause them) and their read state.
#[async_trait]
pub trait Notifications: Send + Sync {
    /// The notifications one event created (to push them once it is committed).
    async fn notifications_of_event(
        &self,
        ws: WorkspaceId,
        offset: i64,
    ) -> StoreResult<Vec<Notification>>;
    /// The caller's notifications, newest first.
    async fn notifications(
        &self,
        user: UserId,
        unread_only: bool,
        page: PageRequest,
    ) -> StoreResult<Page<Notification>>;
    async fn unread_count(&self, user: UserId) -> StoreResult<i64>;
    /// The unread counts of several users at once (every user asked about is in the map,
    /// with 0 if they have nothing unread).
    async fn unread_counts(&self, users: &[UserId]) -> StoreResult<HashMap<UserId, i64>>;
    /// Marks one of the caller's notifications read; `NotFound` if it is not theirs.
    async fn mark_read(&self, user: UserId, id: i64) -> StoreResult<Notification>;
    /// Marks all the caller's notifications read; returns how many were unread.
    async fn mark_all_read(&self, user: UserId) -> StoreResult<u64>;
    /// Takes up to `limit` notifications unread since before `older_than`, not yet mailed,
    /// and not taken since `claim_expired_before` (a node that took them and died), of
    /// users with a verified address, for this node to mail; each with its user's address,
    /// name and preferences.
    async fn claim_digest_notifications(
        &self,
        now: i64,
        older_than: i64,
        claim_expired_before: i64,
        limit: u32,
    ) -> StoreResult<Vec<DigestItem>>;
    /// The notifications were mailed (or are not to be: the user did not opt in).
    async fn notifications_mailed(&self, ids: &[i64], at: i64) -> StoreResult<()>;
    /// Sending failed: the notifications may be taken again at once.
    async fn release_digest_claims(&self, ids: &[i64]) -> StoreResult<()>;
}

/// One member's activity in a workspace, for the member report.
#[derive(Debug, Clone)]
pub struct MemberActivity {
    pub member: Member,
    /// Events in the log with this member as actor.
    pub events: i64,
    pub documents_created: i64,
    /// Distinct documents they edited (deleted ones included).
    pub documents_edited: i64,
    /// Edit events: REST updates and windows of live editing.
    pub edits: i64,
    /// Comments they wrote.
    pub comments: i64,
    pub last_active: Option<i64>,
}

/// One document's activity, for the document report.
#[derive(Debug, Clone)]
pub struct DocumentActivity {
    pub document: Document,
    pub edits: i64,
    pub comments: i64,
    /// Distinct members who edited it.
    pub editors: i64,
    pub last_activity: Option<i64>,
}

/// A workspace at a glance.
#[derive(Debug, Clone)]
pub struct Overview {
    /// Members per role, every role present (0 if none).
    pub members_by_role: Vec<(Role, i64)>,
    pub documents: i64,
    pub comments: i64,
    /// The offset of the newest event, which is the number of events logged.
    pub events: i64,
    /// Distinct users with an event at or after each of the instants asked about.
    pub active_users: Vec<i64>,
}

/// Activity reports, read from rollups kept with the event log. Each needs the admin role
/// (`Forbidden` below it, `NotFound` for non-members).
#[async_trait]
pub trait Reports: Send + Sync {
    /// Events per kind in each of `buckets` (`[start, end)` in milliseconds, aligned to
    /// 15-minute slots): `(bucket index, kind, events)`, zero counts left out.
    async fn activity_report(
        &self,
        actor: UserId,
        ws: WorkspaceId,
        buckets: &[(i64, i64)],
    ) -> StoreResult<Vec<(usize, String, i64)>>;
    /// Current members by user id.
    async fn member_report(
        &self,
        actor: UserId,
        ws: WorkspaceId,
        page: PageRequest,
    ) -> StoreResult<Page<MemberActivity>>;
    /// Current documents by id (without their content).
    async fn document_report(
        &self,
        actor: UserId,
        ws: WorkspaceId,
        page: PageRequest,
    ) -> StoreResult<Page<DocumentActivity>>;
    /// Totals, with the active users since each of `active_since` (milliseconds).
    async fn overview_report(
        &self,
        actor: UserId,
        ws: WorkspaceId,
        active_since: &[i64],
    ) -> StoreResult<Overview>;
}

/// What search finds: a document (by its title or text) or a comment.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum HitKind {
    Comment,
    Document,
}

impl HitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            HitKind::Comment => "comment",
            HitKind::Document => "document",
        }
    }

    pub fn parse(s: &str) -> Option<HitKind> {
        match s {
            "comment" => Some(HitKind::Comment),
            "document" => Some(HitKind::Document),
            _ => None,
        }
    }
}

/// Where a page of hits continues: after this score, kind and id (hits are ordered by score,
/// highest first, then kind and id).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HitKey {
    pub score: f64,
    pub kind: HitKind,
    pub id: i64,
}

/// A search, already parsed and authorised: `workspaces` are the ones the caller may read
/// (the backend must not return anything outside them).
#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub user: UserId,
    pub workspaces: Vec<WorkspaceId>,
    pub query: SearchQuery,
    pub kind: Option<HitKind>,
    pub author: Option<UserId>,
    /// Last changed at or after (milliseconds).
    pub from: Option<i64>,
    /// Last changed before.
    pub to: Option<i64>,
    pub after: Option<HitKey>,
    pub limit: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    pub kind: HitKind,
    pub id: i64,
    pub workspace_id: WorkspaceId,
    pub document_id: DocumentId,
    pub author_id: Option<UserId>,
    /// Last changed (milliseconds).
    pub at: i64,
    /// Higher is better; comparable only within one search.
    pub score: f64,
}

/// The texts a hit shows: the document's title, and the text matched (document text or
/// comment body).
#[derive(Debug, Clone)]
pub struct HitText {
    pub title: String,
    pub text: String,
}

/// Full-text search in the database's own index (SQLite FTS5, PostgreSQL tsvector), and the
/// texts that hits of any backend are shown with.
#[async_trait]
pub trait Search: Send + Sync {
    /// Matches in `request.workspaces` that the user is still a member of, best first.
    async fn search(&self, request: &SearchRequest) -> StoreResult<Vec<SearchHit>>;
    /// The texts of hits that still exist, by `(kind, id)`.
    async fn hit_texts(&self, hits: &[SearchHit]) -> StoreResult<HashMap<(HitKind, i64), HitText>>;
    /// The workspaces the user is a member of.
    async fn workspace_ids_of(&self, user: UserId) -> StoreResult<Vec<WorkspaceId>>;

    // For an external index that follows the event log.

    /// Up to `limit` workspaces whose log is ahead of the external index's position there:
    /// `(workspace, position, head)`.
    async fn search_backlog(&self, limit: u32) -> StoreResult<Vec<(WorkspaceId, i64, i64)>>;
    /// Moves the external index's position in a workspace forward (never back).
    async fn set_search_position(&self, ws: WorkspaceId, offset: i64) -> StoreResult<()>;
    /// Every workspace's position becomes its log's head, as read when this is called
    /// (after a rebuild that started later).
    async fn reset_search_positions(&self, heads: &[(WorkspaceId, i64)]) -> StoreResult<()>;
    /// Every workspace and its log's head.
    async fn log_heads(&self) -> StoreResult<Vec<(WorkspaceId, i64)>>;
    /// Documents and comments as the external index stores them: those of `ids` that exist.
    async fn indexable(&self, kind: HitKind, ids: &[i64]) -> StoreResult<Vec<Indexable>>;
    /// Up to `limit` documents or comments with an id above `after`, in id order.
    async fn indexable_after(
        &self,
        kind: HitKind,
        after: i64,
        limit: u32,
    ) -> StoreResult<Vec<Indexable>>;
}

/// A document or a comment as an external search index holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Indexable {
    pub kind: HitKind,
    pub id: i64,
    pub workspace_id: WorkspaceId,
    pub document_id: DocumentId,
    pub author_id: Option<UserId>,
    pub at: i64,
    /// Increases with every change: the document's version, a comment's `updated_at`.
    pub version: i64,
    /// Documents only.
    pub title: String,
    /// The searchable prefix of the text.
    pub body: String,
}

/// A file on a document or on one of its comments (its bytes in the blob store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub id: i64,
    pub workspace_id: WorkspaceId,
    pub document_id: DocumentId,
    pub comment_id: Option<CommentId>,
    pub name: String,
    pub size: i64,
    pub content_type: String,
    /// Hex.
    pub sha256: String,
    pub blob_key: String,
    pub uploaded_by: Option<UserId>,
    pub created_at: i64,
}

/// An attachment whose bytes are stored, to be recorded.
#[derive(Debug, Clone)]
pub struct NewAttachment {
    pub document_id: DocumentId,
    pub comment_id: Option<CommentId>,
    pub name: String,
    pub size: i64,
    pub content_type: String,
    pub sha256: String,
    pub blob_key: String,
}

/// Attachments, and the outbox of blobs to remove (see `blobs`).
#[async_trait]
pub trait Attachments: Send + Sync {
    /// Puts an upload's key in the outbox, due at `not_before` (ms), before its first byte
    /// is stored: an upload that never finishes leaves it there for a sweep.
    async fn reserve_blob(&self, key: &str, not_before: i64) -> StoreResult<()>;
    /// Makes an outbox row due now (an upload given up, or refused after its bytes were
    /// stored).
    async fn release_blob(&self, key: &str) -> StoreResult<()>;
    /// Records an attachment of an editor (or above) and takes its key out of the outbox,
    /// in one transaction with its `attachment.added`; `TooLarge` when the workspace's
    /// files would then take more than `quota` bytes.
    async fn add_attachment(
        &self,
        actor: UserId,
        new: &NewAttachment,
        quota: i64,
    ) -> StoreResult<(Attachment, Event)>;
    /// A document's attachments, to its workspace's members.
    async fn attachments(
        &self,
        actor: UserId,
        doc: DocumentId,
        page: PageRequest,
    ) -> StoreResult<Page<Attachment>>;
    /// One attachment, to its workspace's members (`NotFound` to anyone else).
    async fn attachment(&self, actor: UserId, id: i64) -> StoreResult<Attachment>;
    /// Deletes an attachment (editors and above) with its `attachment.removed`; its blob
    /// goes into the outbox in the same transaction.
    async fn delete_attachment(&self, actor: UserId, id: i64) -> StoreResult<(Attachment, Event)>;
    /// What a workspace's files take (bytes, files), to its members.
    async fn attachment_usage(&self, actor: UserId, ws: WorkspaceId) -> StoreResult<(i64, i64)>;
    /// Up to `limit` outbox keys due at `now`, oldest due first.
    async fn due_blob_deletions(&self, now: i64, limit: u32) -> StoreResult<Vec<String>>;
    /// Takes removed keys out of the outbox.
    async fn forget_blob_deletions(&self, keys: &[String]) -> StoreResult<()>;
    /// Whether any attachment names `key`, or the outbox holds it (for `stoa blobs`).
    async fn blob_known(&self, key: &str) -> StoreResult<bool>;
    /// Every attachment's (id, blob key, size) with an id above `after`, up to `limit`, by
    /// id (for `stoa blobs`).
    async fn attachment_keys(&self, after: i64, limit: u32)
        -> StoreResult<Vec<(i64, String, i64)>>;
}

/// An outgoing webhook of a workspace (see `webhooks`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub id: i64,
    pub workspace_id: WorkspaceId,
    pub url: String,
    pub secret: String,
    /// Event kinds delivered; empty: every kind.
    pub kinds: Vec<String>,
    /// The last offset dealt with (delivered, or not of its kinds).
    pub delivered_offset: i64,
    /// `active` or `paused`.
    pub state: String,
    pub paused_reason: Option<String>,
    /// Failed attempts in a row at the next event, and when the next attempt is due.
    pub failures: i64,
    pub next_attempt_at: i64,
    pub created_by: Option<UserId>,
    pub created_at: i64,
}

/// What changes in a webhook (`None`: unchanged).
#[derive(Debug, Clone, Default)]
pub struct WebhookPatch {
    pub url: Option<String>,
    /// A new signing key.
    pub secret: Option<String>,
    pub kinds: Option<Vec<String>>,
    /// `active` (resumes: failures forgotten, due at once) or `paused` (by an admin).
    pub state: Option<String>,
}

/// One attempt to deliver an event to a webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookDelivery {
    pub id: i64,
    pub webhook_id: i64,
    pub event_offset: i64,
    pub event_kind: String,
    pub attempt: i64,
    /// The HTTP status, if an answer came.
    pub status: Option<i64>,
    pub error: Option<String>,
    pub duration_ms: i64,
    /// Asked for over REST, apart from the stream.
    pub redelivery: bool,
    pub at: i64,
}

/// Outgoing webhooks: endpoints, the streams' positions and leases, and the delivery log.
#[async_trait]
pub trait Webhooks: Send + Sync {
    /// Registers an endpoint that follows the log from its head now.
    async fn create_webhook(
        &self,
        ws: WorkspaceId,
        by: UserId,
        url: &str,
        secret: &str,
        kinds: &[String],
    ) -> StoreResult<Webhook>;
    async fn webhooks(&self, ws: WorkspaceId) -> StoreResult<Vec<Webhook>>;
    async fn webhook(&self, ws: WorkspaceId, id: i64) -> StoreResult<Option<Webhook>>;
    async fn update_webhook(
        &self,
        ws: WorkspaceId,
        id: i64,
        patch: &WebhookPatch,
    ) -> StoreResult<Option<Webhook>>;
    async fn delete_webhook(&self, ws: WorkspaceId, id: i64) -> StoreResult<bool>;
    /// Takes (or keeps) the lease of up to `limit` active endpoints that are due and behind
    /// their workspace's log, for `node` until `until`; returns them.
    async fn lease_due_webhooks(
        &self,
        node: &str,
        now: i64,
        until: i64,
        limit: u32,
    ) -> StoreResult<Vec<Webhook>>;
    /// Moves an endpoint's stream past `offset` (delivered, or skipped by its filter) if
    /// `node` still holds its lease; false when it no longer does.
    async fn webhook_delivered(&self, id: i64, node: &str, offset: i64) -> StoreResult<bool>;
    /// An attempt failed: counts it and says when to try again, or pauses the endpoint
    /// (`paused_reason`), if `node` still holds its lease.
    async fn webhook_failed(
        &self,
        id: i64,
        node: &str,
        failures: i64,
        next_attempt_at: i64,
        paused_reason: Option<&str>,
    ) -> StoreResult<bool>;
    /// Logs an attempt; keeps the newest `keep` of the endpoint's.
    async fn record_webhook_delivery(
        &self,
        delivery: &WebhookDelivery,
        keep: u32,
    ) -> StoreResult<WebhookDelivery>;
    /// Logs attempts of the stream, in one statement; keeps the newest `keep` of each
    /// endpoint's.
    async fn record_webhook_deliveries(
        &self,
        deliveries: &[WebhookDelivery],
        keep: u32,
    ) -> StoreResult<()>;
    /// An endpoint's attempts, newest first.
    async fn webhook_deliveries(
        &self,
        webhook: i64,
        page: PageRequest,
    ) -> StoreResult<Page<WebhookDelivery>>;
    async fn webhook_delivery(&self, webhook: i64, id: i64)
        -> StoreResult<Option<WebhookDelivery>>;
}
