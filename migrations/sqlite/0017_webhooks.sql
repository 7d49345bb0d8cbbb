-- Outgoing webhooks: endpoints an admin registers per workspace, each following the
-- workspace's event log in offset order from where it was registered.
CREATE TABLE webhooks (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace_id     BIGINT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    url              TEXT   NOT NULL,
    -- The key of each request's signature (HMAC-SHA256); shown once, when made.
    secret           TEXT   NOT NULL,
    -- Event kinds delivered: a JSON array; empty: every kind.
    kinds            TEXT   NOT NULL,
    -- The last offset of the log dealt with (delivered, or skipped by the filter).
    delivered_offset BIGINT NOT NULL,
    -- 'active' or 'paused' (by an admin, or after failing `pause_after_failures` times).
    state            TEXT   NOT NULL CHECK (state IN ('active', 'paused')),
    paused_reason    TEXT,
    -- Failed attempts in a row at the event after delivered_offset, and when to try again.
    failures         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL DEFAULT 0,
    -- The node delivering this endpoint's stream, until when.
    lease_node       TEXT,
    lease_until      BIGINT NOT NULL DEFAULT 0,
    created_by       BIGINT REFERENCES users (id) ON DELETE SET NULL,
    created_at       BIGINT NOT NULL
);
CREATE INDEX webhooks_by_workspace ON webhooks (workspace_id);
CREATE INDEX webhooks_by_creator ON webhooks (created_by);

-- Each attempt to deliver an event, newest kept (a bounded number per endpoint).
CREATE TABLE webhook_deliveries (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id   BIGINT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_offset BIGINT NOT NULL,
    event_kind   TEXT   NOT NULL,
    attempt      INTEGER NOT NULL,
    -- The HTTP status, or NULL when no answer came (refused target, timeout, connection).
    status       INTEGER,
    error        TEXT,
    duration_ms  BIGINT NOT NULL,
    redelivery   INTEGER NOT NULL DEFAULT 0,
    at           BIGINT NOT NULL
);
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id, id);
