-- What of a document's update log its REST text (and the events, search entry and rollups
-- that follow it) already reflects, so that what a crash left behind is found and caught up.
--
-- text_seq: the position in document_updates up to which the content was projected and
-- every editor's edits recorded; rows after it are still to be. text_pending: the version of
-- a REST write whose text is not yet in the update log (NULL: none).
ALTER TABLE documents ADD COLUMN text_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE documents ADD COLUMN text_pending BIGINT;
-- Who made each stored update, as JSON [[user id, edits], ...] (NULL: the server's own).
ALTER TABLE document_updates ADD COLUMN editors TEXT;

-- What is stored now was projected when it was written.
UPDATE documents SET text_seq = COALESCE(
    (SELECT MAX(seq) FROM document_updates u WHERE u.document_id = documents.id), 0);
