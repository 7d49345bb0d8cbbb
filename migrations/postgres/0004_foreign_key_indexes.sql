-- An index on every foreign-key column that had none. Deleting a referenced row makes the
-- database find the rows that point at it (to cascade or to set them NULL): without an
-- index that is a scan of the whole referencing table, once per deleted row. Deleting a
-- workspace scanned every comment for comments.workspace_id, and deleting a user would
-- scan documents, comments, mentions and workspaces for each column below.
--
-- Already indexed and left alone: refresh_tokens.user_id and refresh_families.user_id
-- (0003), memberships (primary key and memberships_by_user), documents.workspace_id,
-- comments.document_id and comments.parent_id, comment_mentions.comment_id (primary key),
-- events.workspace_id (primary key), notifications.user_id (notifications_by_user) and
-- notifications.workspace_id (notifications_by_event).

CREATE INDEX workspaces_by_creator ON workspaces (created_by);

CREATE INDEX documents_by_creator ON documents (created_by);
CREATE INDEX documents_by_updater ON documents (updated_by);

CREATE INDEX comments_by_workspace ON comments (workspace_id);
CREATE INDEX comments_by_author ON comments (author_id);
CREATE INDEX comments_by_resolver ON comments (resolved_by);

CREATE INDEX comment_mentions_by_user ON comment_mentions (user_id);
