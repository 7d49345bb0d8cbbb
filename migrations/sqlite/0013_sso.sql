-- Single sign-on through OpenID Connect providers (`auth.oidc`).

-- How each login began: NULL for a password, 'ldap' for a directory account, 'oidc:<name>'
-- for a provider. A workspace that requires single sign-on for its members' domain refuses
-- (and ends) the other logins of those members.
ALTER TABLE refresh_families ADD COLUMN method TEXT;

-- A sign-in in flight. `kind` 'state': made when the browser is sent to the provider, keyed
-- by the digest of the `state` parameter, holding the PKCE verifier and the nonce. 'handoff':
-- made when the provider sends the browser back, keyed by the digest of the one-time code
-- the console trades for tokens. Both are bound to the browser that began the sign-in (the
-- digest of its cookie), are taken (deleted) on first use, and expire within minutes.
CREATE TABLE oidc_flows (
    id         TEXT   PRIMARY KEY,
    kind       TEXT   NOT NULL,
    provider   TEXT   NOT NULL,
    browser    TEXT   NOT NULL,
    nonce      TEXT,
    verifier   TEXT,
    next_path  TEXT,
    user_id    BIGINT REFERENCES users (id) ON DELETE CASCADE,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX oidc_flows_expiry ON oidc_flows (expires_at);
CREATE INDEX oidc_flows_by_user ON oidc_flows (user_id);

-- A workspace's members whose address is in one of `domains` (space-separated, lower case)
-- must sign in through the provider `provider` (a name of `auth.oidc`).
CREATE TABLE workspace_sso (
    workspace_id BIGINT PRIMARY KEY REFERENCES workspaces (id) ON DELETE CASCADE,
    provider     TEXT   NOT NULL,
    domains      TEXT   NOT NULL,
    updated_at   BIGINT NOT NULL
);
