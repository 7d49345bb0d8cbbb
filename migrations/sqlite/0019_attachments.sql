-- Attachments: files on documents and comments. Their bytes are in the blob store under
-- `blob_key`; this table is the record of which exist.
CREATE TABLE attachments (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace_id BIGINT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    document_id  BIGINT NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    -- On a comment of the document, or on the document itself.
    comment_id   BIGINT REFERENCES comments (id) ON DELETE CASCADE,
    name         TEXT   NOT NULL,
    size         BIGINT NOT NULL,
    -- Sniffed from the bytes at upload, never taken from the uploader.
    content_type TEXT   NOT NULL,
    sha256       TEXT   NOT NULL,
    blob_key     TEXT   NOT NULL UNIQUE,
    uploaded_by  BIGINT REFERENCES users (id) ON DELETE SET NULL,
    created_at   BIGINT NOT NULL
);
CREATE INDEX attachments_by_document ON attachments (document_id, id);
CREATE INDEX attachments_by_comment ON attachments (comment_id);
CREATE INDEX attachments_by_workspace ON attachments (workspace_id);
CREATE INDEX attachments_by_uploader ON attachments (uploaded_by);

-- Blobs to remove once `not_before` has passed (ms): an outbox written in the transaction
-- that stops naming a blob, so that a crash after the commit leaves a row a sweep finds.
-- An upload's key is put here before its first byte is stored (due after a grace period)
-- and taken out by the transaction that records the attachment.
CREATE TABLE blob_deletions (
    blob_key   TEXT   PRIMARY KEY,
    not_before BIGINT NOT NULL
);
CREATE INDEX blob_deletions_due ON blob_deletions (not_before);

-- Every way a row leaves `attachments` (its deletion, or its comment's, document's or
-- workspace's, by cascade) queues its blob, due at once.
CREATE TRIGGER attachments_blob_deletion AFTER DELETE ON attachments
BEGIN
    INSERT OR REPLACE INTO blob_deletions (blob_key, not_before) VALUES (old.blob_key, 0);
END;
