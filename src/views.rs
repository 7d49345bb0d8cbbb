//! What clients see of the store's records: the JSON shapes REST returns (with their
//! OpenAPI schemas) and channels push (events, notifications), one definition for both.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::domain::{format_timestamp, Role};
use crate::store::{Comment, Document, Event, Member, Notification, Page, User, Workspace};

/// A cursor is the position to continue after: up to 18 digits, which every `i64` id of a
/// page fits (the OpenAPI document states the same pattern).
pub fn encode_cursor(after: i64) -> String {
    after.to_string()
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    pub id: i64,
    pub email: String,
    pub display_name: String,
    /// Whether the address was proved (the mailed link followed). Until it is, and with
    /// `auth.require_verified_email` on, the account matches nobody by e-mail: adding the
    /// address to a workspace sends an invitation, and mentions of it reach no one.
    pub email_verified: bool,
    /// RFC 3339.
    pub created_at: String,
}

impl From<&User> for UserView {
    fn from(u: &User) -> UserView {
        UserView {
            id: u.id,
            email: u.email.clone(),
            display_name: u.display_name.clone(),
            email_verified: u.email_verified,
            created_at: format_timestamp(u.created_at),
        }
    }
}

/// What the account wants to be told of by e-mail (sent as digests of what stays unread).
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotificationPreferences {
    /// Mentions of me.
    #[serde(default)]
    pub email_mentions: bool,
    /// Replies to my comments.
    #[serde(default)]
    pub email_replies: bool,
    /// Being added to a workspace, or my role changed.
    #[serde(default)]
    pub email_membership: bool,
}

/// The signed-in account: who it is, and its preferences.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountView {
    pub id: i64,
    pub email: String,
    pub display_name: String,
    pub email_verified: bool,
    pub created_at: String,
    pub notification_preferences: NotificationPreferences,
    /// Whether the account has a password (accounts of single sign-on or of a directory
    /// do not: they confirm a deletion with a fresh sign-in).
    pub has_password: bool,
    /// How this sign-in began: `password`, `ldap` or `oidc:<provider>`; absent for an API
    /// token or a token of the product.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signed_in_with: Option<String>,
}

impl AccountView {
    pub fn new(u: &User, preferences: NotificationPreferences) -> AccountView {
        AccountView {
            id: u.id,
            email: u.email.clone(),
            display_name: u.display_name.clone(),
            email_verified: u.email_verified,
            created_at: format_timestamp(u.created_at),
            notification_preferences: preferences,
            has_password: false,
            signed_in_with: None,
        }
    }
}

/// An invitation by e-mail, pending until accepted, revoked or expired.
#[derive(Debug, Serialize, ToSchema)]
pub struct InvitationView {
    pub id: i64,
    pub workspace_id: i64,
    pub email: String,
    pub role: Role,
    pub invited_by: Option<i64>,
    /// RFC 3339; after it the link no longer works (resend for a new one).
    pub expires_at: String,
    pub expired: bool,
    pub sent_at: String,
    pub created_at: String,
}

impl From<&crate::store::Invitation> for InvitationView {
    fn from(i: &crate::store::Invitation) -> InvitationView {
        InvitationView {
            id: i.id,
            workspace_id: i.workspace_id,
            email: i.email.clone(),
            role: i.role,
            invited_by: i.invited_by,
            expires_at: format_timestamp(i.expires_at),
            expired: i.expires_at <= crate::domain::now_ms(),
            sent_at: format_timestamp(i.sent_at),
            created_at: format_timestamp(i.created_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    /// Short-lived JWT for `Authorization: Bearer`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// Single-use token for `POST /api/v1/auth/refresh`.
    pub refresh_token: String,
    pub user: UserView,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WorkspaceView {
    pub id: i64,
    pub name: String,
    pub slug: String,
    /// The caller's role in this workspace.
    pub role: Role,
    /// Offset of the newest event in the workspace's log.
    pub last_offset: i64,
    pub created_at: String,
    pub updated_at: String,
}

impl WorkspaceView {
    pub fn new(w: &Workspace, role: Role) -> WorkspaceView {
        WorkspaceView {
            id: w.id,
            name: w.name.clone(),
            slug: w.slug.clone(),
            role,
            last_offset: w.last_offset,
            created_at: format_timestamp(w.created_at),
            updated_at: format_timestamp(w.updated_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemberView {
    pub workspace_id: i64,
    pub user_id: i64,
    pub email: String,
    pub display_name: String,
    pub role: Role,
    pub joined_at: String,
    pub updated_at: String,
}

impl From<&Member> for MemberView {
    fn from(m: &Member) -> MemberView {
        MemberView {
            workspace_id: m.workspace_id,
            user_id: m.user_id,
            email: m.email.clone(),
            display_name: m.display_name.clone(),
            role: m.role,
            joined_at: format_timestamp(m.joined_at),
            updated_at: format_timestamp(m.updated_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentView {
    pub id: i64,
    pub workspace_id: i64,
    pub title: String,
    /// Plain-text content; left out of lists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Increases with every change; send it back in `If-Match` to update safely.
    pub version: i64,
    pub created_by: Option<i64>,
    pub updated_by: Option<i64>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&Document> for DocumentView {
    fn from(d: &Document) -> DocumentView {
        DocumentView {
            id: d.id,
            workspace_id: d.workspace_id,
            title: d.title.clone(),
            content: d.content.clone(),
            version: d.version,
            created_by: d.created_by,
            updated_by: d.updated_by,
            created_at: format_timestamp(d.created_at),
            updated_at: format_timestamp(d.updated_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CommentView {
    pub id: i64,
    pub workspace_id: i64,
    pub document_id: i64,
    /// The comment this one replies to.
    pub parent_id: Option<i64>,
    pub author_id: Option<i64>,
    pub body: String,
    /// Members mentioned in the body (`@email`).
    pub mentions: Vec<i64>,
    pub resolved: bool,
    pub resolved_at: Option<String>,
    pub resolved_by: Option<i64>,
    pub created_at: String,
    pub updated_at: String,
    /// The text the comment is pinned to, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anchor: Option<AnchorView>,
}

/// Where an anchored comment's text is now.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AnchorView {
    /// The range's ends as Yjs relative positions (base64 of `Y.encodeRelativePosition`),
    /// for an editor to draw it: `Y.createAbsolutePositionFromRelativePosition`.
    pub start: String,
    pub end: String,
    /// The text it held when the comment was made.
    pub quote: String,
    /// The text it holds now ("" once detached).
    pub text: String,
    /// Its text was deleted: the comment stays, pinned to nothing.
    pub detached: bool,
}

impl From<&Comment> for CommentView {
    fn from(c: &Comment) -> CommentView {
        CommentView {
            id: c.id,
            workspace_id: c.workspace_id,
            document_id: c.document_id,
            parent_id: c.parent_id,
            author_id: c.author_id,
            body: c.body.clone(),
            mentions: c.mentions.clone(),
            resolved: c.resolved_at.is_some(),
            resolved_at: c.resolved_at.map(format_timestamp),
            resolved_by: c.resolved_by,
            created_at: format_timestamp(c.created_at),
            updated_at: format_timestamp(c.updated_at),
            anchor: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EventView {
    /// Position in the workspace's log: 1, 2, 3, … with no gaps.
    pub offset: i64,
    /// e.g. `document.updated`, `member.added`, `comment.created`.
    pub kind: String,
    /// The user who caused it.
    pub actor: Option<i64>,
    /// What it is about, as `type:id` (e.g. `document:12`).
    pub subject: String,
    #[schema(value_type = Object)]
    pub data: Value,
    pub at: String,
}

impl From<&Event> for EventView {
    fn from(e: &Event) -> EventView {
        EventView {
            offset: e.offset,
            kind: e.kind.clone(),
            actor: e.actor_id,
            subject: e.subject.clone(),
            data: e.data.clone(),
            at: format_timestamp(e.at),
        }
    }
}

/// One page of a list. Pass `next_cursor` as `cursor` to get the next page; it is null on
/// the last page. Items are in a stable order (oldest first), so concurrent inserts never
/// cause duplicates or gaps.
#[derive(Debug, Serialize, ToSchema)]
pub struct List<T: ToSchema> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T: ToSchema> List<T> {
    pub fn from_page<S>(page: Page<S>, view: impl Fn(&S) -> T) -> List<T> {
        List {
            items: page.items.iter().map(view).collect(),
            next_cursor: page.next.map(encode_cursor),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventList {
    pub items: Vec<EventView>,
    /// Pass as `since` to continue after this page.
    pub next_since: i64,
    /// The newest offset in the log when this page was read.
    pub latest_offset: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NotificationView {
    pub id: i64,
    /// `mention`, `reply`, `member_added` or `role_changed`.
    pub kind: String,
    pub workspace_id: i64,
    /// Offset of the event that caused it in the workspace's log.
    pub event_offset: i64,
    /// The user who caused it.
    pub actor: Option<i64>,
    /// What it is about, as `type:id` (e.g. `comment:7`).
    pub subject: String,
    /// The causing event's data.
    #[schema(value_type = Object)]
    pub data: Value,
    pub read: bool,
    pub created_at: String,
    pub read_at: Option<String>,
}

impl From<&Notification> for NotificationView {
    fn from(n: &Notification) -> NotificationView {
        NotificationView {
            id: n.id,
            kind: n.kind.clone(),
            workspace_id: n.workspace_id,
            event_offset: n.event_offset,
            actor: n.actor_id,
            subject: n.subject.clone(),
            data: n.data.clone(),
            read: n.read_at.is_some(),
            created_at: format_timestamp(n.created_at),
            read_at: n.read_at.map(format_timestamp),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UnreadCount {
    pub unread_count: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MarkedRead {
    /// How many notifications were unread and are now read.
    pub marked: u64,
    pub unread_count: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`; `degraded` (ready for local work, the bus to the other nodes away) or
    /// `unavailable` (the database), with a reason.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
