-- Sessions ended before their access tokens expire: a logout (one login), a password change
-- (every login but the one that made it), a disabled account (every login), a refresh
-- token replayed (its login). Every node keeps the rows of the last access-token lifetime
-- in memory and refuses the tokens they name; the bus tells the nodes at once, and each node
-- also reads rows it has not seen every second (a node that was away, a Redis outage, the
-- `stoa user disable` command on a node without Redis). Rows older than a token's lifetime
-- name no live token and are pruned.
CREATE TABLE session_ends (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id        BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- One login (its refresh family, the `sid` of its access tokens), or every token of
    -- the user issued at or before `before_ms` except those of `except_session`.
    session        TEXT,
    before_ms      BIGINT,
    except_session TEXT,
    reason         TEXT    NOT NULL,
    created_at     BIGINT  NOT NULL
);
CREATE INDEX session_ends_by_user ON session_ends (user_id);
CREATE INDEX session_ends_by_time ON session_ends (created_at);
