-- Document history: versions a document can be read, compared and restored at.
--
-- Each version keeps the document's Yjs state as a chain: a `base` version holds the whole
-- state, the versions after it only what changed since the version before them (a Yjs update
-- against that version's state vector). A version is read by applying its chain from the
-- nearest base; a new base is written every so many versions, which bounds that chain.
-- Everything is deflated. The newest version also keeps its text (deflated), which the next
-- version is compared with to count what was added and removed.
CREATE TABLE document_versions (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    document_id   BIGINT NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    -- 'auto' (an editing window), 'write' (a REST write), 'restore', 'named'.
    kind          TEXT   NOT NULL,
    name          TEXT,
    -- The people whose edits it holds since the version before it: a JSON array of ids.
    authors       TEXT   NOT NULL,
    created_by    BIGINT REFERENCES users (id) ON DELETE SET NULL,
    state_vector  BLOB   NOT NULL,
    delta         BLOB   NOT NULL,
    base          BIGINT NOT NULL,
    chain         BIGINT NOT NULL,
    text_z        BLOB,
    -- Characters: the text's length, and those added and removed since the version before.
    size          BIGINT NOT NULL,
    added         BIGINT NOT NULL,
    removed       BIGINT NOT NULL,
    restored_from BIGINT,
    created_at    BIGINT NOT NULL
);
CREATE INDEX document_versions_by_document ON document_versions (document_id, id);
CREATE INDEX document_versions_by_user ON document_versions (created_by);

-- The editors recorded since the document's last version (a JSON array of ids), and when
-- its last automatic version was made (one per `documents.version_interval_secs`).
ALTER TABLE documents ADD COLUMN version_authors TEXT;
ALTER TABLE documents ADD COLUMN auto_version_at BIGINT NOT NULL DEFAULT 0;
-- The log position the last version's authors reach: editors of updates at or before it
-- are that version's, not the next one's.
ALTER TABLE documents ADD COLUMN version_seq BIGINT NOT NULL DEFAULT 0;

-- The log position at which the latest REST write's text entered the update log: live
-- recording made from a snapshot of the log before it (its text computed before the write
-- reached the document's actor) never writes that older text over the REST write.
ALTER TABLE documents ADD COLUMN rest_text_seq BIGINT NOT NULL DEFAULT 0;
