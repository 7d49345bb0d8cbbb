-- A login's refresh tokens form a family. Revoking a family is one flag on one row, and a
-- token is valid only while its family is not revoked, so a token inserted by a rotation
-- running concurrently with the revocation cannot survive it. Rotations lock the family
-- row, which serialises them against revocation on PostgreSQL.
CREATE TABLE refresh_families (
    id         TEXT   PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX refresh_families_by_user ON refresh_families (user_id);

INSERT INTO refresh_families (id, user_id, created_at, revoked_at)
SELECT family_id, MIN(user_id), MIN(created_at), MAX(revoked_at)
FROM refresh_tokens
GROUP BY family_id;

-- The token a spent one was exchanged for: presenting the spent token again within the
-- reuse interval gets this same successor (two tabs refreshing at once, a retried request).
ALTER TABLE refresh_tokens ADD COLUMN successor_hash TEXT;

CREATE INDEX refresh_tokens_by_user ON refresh_tokens (user_id);
CREATE INDEX refresh_tokens_expiry ON refresh_tokens (expires_at);
