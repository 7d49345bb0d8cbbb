//! The kinds of events the log records: one name per change, as the API, the feed, the
//! search indexer and the report rollups know it.

/// What an event of a workspace's log records. Its name (`as_str`) is what the log stores
/// and what clients see in `kind`; a log written by a later release may hold names this
/// one does not know, which [`EventKind::parse`] leaves as `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    WorkspaceCreated,
    WorkspaceUpdated,
    MemberAdded,
    MemberRoleChanged,
    MemberRemoved,
    DocumentCreated,
    /// A REST write (title or content).
    DocumentUpdated,
    /// Live edits over Yjs, recorded once per editing window.
    DocumentEdited,
    DocumentDeleted,
    /// A version saved by name.
    DocumentVersioned,
    /// The content turned back into that of a version (a REST write).
    DocumentRestored,
    CommentCreated,
    CommentUpdated,
    CommentResolved,
    CommentUnresolved,
    CommentDeleted,
    InvitationCreated,
    InvitationResent,
    InvitationRevoked,
    InvitationAccepted,
    /// A file attached to a document or one of its comments.
    AttachmentAdded,
    AttachmentRemoved,
}

impl EventKind {
    pub const ALL: [EventKind; 22] = [
        EventKind::WorkspaceCreated,
        EventKind::WorkspaceUpdated,
        EventKind::MemberAdded,
        EventKind::MemberRoleChanged,
        EventKind::MemberRemoved,
        EventKind::DocumentCreated,
        EventKind::DocumentUpdated,
        EventKind::DocumentEdited,
        EventKind::DocumentDeleted,
        EventKind::DocumentVersioned,
        EventKind::DocumentRestored,
        EventKind::CommentCreated,
        EventKind::CommentUpdated,
        EventKind::CommentResolved,
        EventKind::CommentUnresolved,
        EventKind::CommentDeleted,
        EventKind::InvitationCreated,
        EventKind::InvitationResent,
        EventKind::InvitationRevoked,
        EventKind::InvitationAccepted,
        EventKind::AttachmentAdded,
        EventKind::AttachmentRemoved,
    ];

    /// The name the log stores.
    pub const fn as_str(self) -> &'static str {
        match self {
            EventKind::WorkspaceCreated => "workspace.created",
            EventKind::WorkspaceUpdated => "workspace.updated",
            EventKind::MemberAdded => "member.added",
            EventKind::MemberRoleChanged => "member.role_changed",
            EventKind::MemberRemoved => "member.removed",
            EventKind::DocumentCreated => "document.created",
            EventKind::DocumentUpdated => "document.updated",
            EventKind::DocumentEdited => "document.edited",
            EventKind::DocumentDeleted => "document.deleted",
            EventKind::DocumentVersioned => "document.versioned",
            EventKind::DocumentRestored => "document.restored",
            EventKind::CommentCreated => "comment.created",
            EventKind::CommentUpdated => "comment.updated",
            EventKind::CommentResolved => "comment.resolved",
            EventKind::CommentUnresolved => "comment.unresolved",
            EventKind::CommentDeleted => "comment.deleted",
            EventKind::InvitationCreated => "invitation.created",
            EventKind::InvitationResent => "invitation.resent",
            EventKind::InvitationRevoked => "invitation.revoked",
            EventKind::InvitationAccepted => "invitation.accepted",
            EventKind::AttachmentAdded => "attachment.added",
            EventKind::AttachmentRemoved => "attachment.removed",
        }
    }

    /// The kind a stored name stands for, if this release knows it.
    pub fn parse(name: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// About a comment (its data names `comment_id` and `document_id`).
    pub fn is_comment(self) -> bool {
        matches!(
            self,
            EventKind::CommentCreated
                | EventKind::CommentUpdated
                | EventKind::CommentResolved
                | EventKind::CommentUnresolved
                | EventKind::CommentDeleted
        )
    }

    /// A change of a document's content or title, by REST or live.
    pub fn changes_document(self) -> bool {
        matches!(
            self,
            EventKind::DocumentCreated
                | EventKind::DocumentUpdated
                | EventKind::DocumentEdited
                | EventKind::DocumentRestored
        )
    }

    /// Someone is told of it (a mention, a reply, a membership change).
    pub fn notifies(self) -> bool {
        matches!(
            self,
            EventKind::CommentCreated | EventKind::MemberAdded | EventKind::MemberRoleChanged
        )
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::EventKind;

    #[test]
    fn every_kind_has_one_name_that_parses_back() {
        let mut names: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
        for kind in EventKind::ALL {
            assert_eq!(EventKind::parse(kind.as_str()), Some(kind));
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), EventKind::ALL.len());
        assert_eq!(EventKind::parse("document.archived"), None);
        assert!(EventKind::CommentResolved.is_comment());
        assert!(!EventKind::DocumentDeleted.changes_document());
    }
}
