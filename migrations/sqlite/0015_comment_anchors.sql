-- Comments pinned to the text they discuss: the range as two Yjs relative positions (as
-- `Y.encodeRelativePosition` writes them), which move with the edits around them, and the
-- text the range held when the comment was made. A comment whose text was deleted keeps its
-- anchor and reads as detached.
CREATE TABLE comment_anchors (
    comment_id   BIGINT PRIMARY KEY REFERENCES comments (id) ON DELETE CASCADE,
    document_id  BIGINT NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    anchor_start BLOB   NOT NULL,
    anchor_end   BLOB   NOT NULL,
    quote        TEXT   NOT NULL
);
CREATE INDEX comment_anchors_by_document ON comment_anchors (document_id);
