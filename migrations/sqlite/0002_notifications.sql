-- What a user is told about: mentions, replies, membership and role changes. Written in
-- the same transaction as the event that causes it; removed with the workspace or user.
CREATE TABLE notifications (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id      BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    workspace_id BIGINT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    event_offset BIGINT NOT NULL,
    kind         TEXT   NOT NULL,
    actor_id     BIGINT,
    subject      TEXT   NOT NULL,
    payload      TEXT   NOT NULL,
    created_at   BIGINT NOT NULL,
    read_at      BIGINT
);

CREATE INDEX notifications_by_user ON notifications (user_id, id);
CREATE INDEX notifications_unread ON notifications (user_id) WHERE read_at IS NULL;
CREATE INDEX notifications_by_event ON notifications (workspace_id, event_offset);
