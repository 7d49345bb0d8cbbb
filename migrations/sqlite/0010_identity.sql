-- Identity a product plugs in: its users (by the issuer and subject of its tokens), its
-- workspaces (by its own id for them), memberships granted by its tokens' role claims or
-- its directory API, and API tokens for its services.

-- A user the product knows as `subject`. `roles_issued_at` is the issue time (ms) of the
-- newest token whose role claims were applied: an older token still in use never grants
-- back a role a newer one took away.
CREATE TABLE external_identities (
    issuer          TEXT   NOT NULL,
    subject         TEXT   NOT NULL,
    user_id         BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    roles_issued_at BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (issuer, subject)
);
CREATE INDEX external_identities_by_user ON external_identities (user_id);

-- The product's id of a workspace, named by role claims and the directory API.
ALTER TABLE workspaces ADD COLUMN external_id TEXT;
CREATE UNIQUE INDEX workspaces_by_external_id ON workspaces (external_id);

-- Who granted a membership: NULL for a member added in Stoa, 'token' for a role claim
-- (taken away when a newer token no longer carries it), 'directory' for the directory API.
ALTER TABLE memberships ADD COLUMN granted_by TEXT;

-- Tokens for services: only their SHA-256 digest is kept. `scopes` is a space-separated
-- list (e.g. 'directory').
CREATE TABLE api_tokens (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT   NOT NULL,
    digest       TEXT   NOT NULL UNIQUE,
    scopes       TEXT   NOT NULL,
    user_id      BIGINT REFERENCES users (id) ON DELETE CASCADE,
    workspace_id BIGINT REFERENCES workspaces (id) ON DELETE CASCADE,
    expires_at   BIGINT,
    last_used_at BIGINT,
    revoked_at   BIGINT,
    created_at   BIGINT NOT NULL
);
CREATE INDEX api_tokens_by_user ON api_tokens (user_id);
CREATE INDEX api_tokens_by_workspace ON api_tokens (workspace_id);
