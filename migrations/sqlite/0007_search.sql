-- Full-text search over document titles and text and comment bodies: FTS5 indexes kept by
-- triggers, so every write path (REST, live editing, cascading deletes) keeps them current
-- in its own transaction. Contentless (the text already lives in documents and comments),
-- with contentless_delete so rows can be removed. The rowid is the document's or comment's
-- id. Only the first 100000 characters of a text are indexed (SEARCHABLE_CHARS).
CREATE VIRTUAL TABLE document_search USING fts5 (
    title, body, content = '', contentless_delete = 1, tokenize = 'unicode61 remove_diacritics 0'
);
CREATE VIRTUAL TABLE comment_search USING fts5 (
    body, content = '', contentless_delete = 1, tokenize = 'unicode61 remove_diacritics 0'
);

CREATE TRIGGER documents_search_insert AFTER INSERT ON documents BEGIN
    INSERT INTO document_search (rowid, title, body)
    VALUES (new.id, new.title, substr(new.content, 1, 100000));
END;
CREATE TRIGGER documents_search_update AFTER UPDATE OF title, content ON documents BEGIN
    DELETE FROM document_search WHERE rowid = old.id;
    INSERT INTO document_search (rowid, title, body)
    VALUES (new.id, new.title, substr(new.content, 1, 100000));
END;
CREATE TRIGGER documents_search_delete AFTER DELETE ON documents BEGIN
    DELETE FROM document_search WHERE rowid = old.id;
END;

CREATE TRIGGER comments_search_insert AFTER INSERT ON comments BEGIN
    INSERT INTO comment_search (rowid, body) VALUES (new.id, substr(new.body, 1, 100000));
END;
CREATE TRIGGER comments_search_update AFTER UPDATE OF body ON comments BEGIN
    DELETE FROM comment_search WHERE rowid = old.id;
    INSERT INTO comment_search (rowid, body) VALUES (new.id, substr(new.body, 1, 100000));
END;
CREATE TRIGGER comments_search_delete AFTER DELETE ON comments BEGIN
    DELETE FROM comment_search WHERE rowid = old.id;
END;

INSERT INTO document_search (rowid, title, body)
SELECT id, title, substr(content, 1, 100000) FROM documents;
INSERT INTO comment_search (rowid, body) SELECT id, substr(body, 1, 100000) FROM comments;

-- Where the external search index (Elasticsearch) has got to in each workspace's log.
CREATE TABLE search_positions (
    workspace_id BIGINT PRIMARY KEY REFERENCES workspaces (id) ON DELETE CASCADE,
    event_offset BIGINT NOT NULL
);
