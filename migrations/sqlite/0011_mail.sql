-- Proving an address, resetting a password, inviting by e-mail.

-- When the account's current address was proved (the link mailed to it followed). NULL:
-- not yet; with auth.require_verified_email on, such an account matches nobody by e-mail.
ALTER TABLE users ADD COLUMN email_verified_at BIGINT;

-- Single-use links mailed to an address: 'verify_email' (for `email`, which must still be
-- the account's when the link is followed) and 'reset_password'. Only the SHA-256 digest of
-- the token in the link is kept.
CREATE TABLE email_tokens (
    digest     TEXT   PRIMARY KEY,
    purpose    TEXT   NOT NULL,
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email      TEXT   NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX email_tokens_by_user ON email_tokens (user_id);

-- A role offered to an address that has no verified account; at most one pending per
-- workspace and address (inviting again sends a new link and makes the old one void).
CREATE TABLE invitations (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace_id BIGINT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    email        TEXT   NOT NULL,
    email_key    TEXT   NOT NULL,
    role         TEXT   NOT NULL CHECK (role IN ('owner', 'admin', 'editor', 'viewer')),
    invited_by   BIGINT REFERENCES users (id) ON DELETE SET NULL,
    digest       TEXT   NOT NULL UNIQUE,
    expires_at   BIGINT NOT NULL,
    sent_at      BIGINT NOT NULL,
    accepted_by  BIGINT REFERENCES users (id) ON DELETE SET NULL,
    accepted_at  BIGINT,
    revoked_at   BIGINT,
    created_at   BIGINT NOT NULL
);
CREATE UNIQUE INDEX invitations_pending ON invitations (workspace_id, email_key)
    WHERE accepted_at IS NULL AND revoked_at IS NULL;
CREATE INDEX invitations_by_workspace ON invitations (workspace_id);
CREATE INDEX invitations_by_inviter ON invitations (invited_by);
CREATE INDEX invitations_by_acceptor ON invitations (accepted_by);
