-- The live content of documents: each document's Yjs updates in the order they were
-- applied. A prefix of them is now and then replaced by one snapshot (an update holding
-- all of them), so loading a document reads a snapshot and what came after it.
CREATE TABLE document_updates (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    document_id BIGINT  NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    data        BLOB    NOT NULL,
    created_at  BIGINT  NOT NULL
);

CREATE INDEX document_updates_by_document ON document_updates (document_id, seq);
