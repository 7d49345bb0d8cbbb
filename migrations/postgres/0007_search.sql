-- Full-text search over document titles and text and comment bodies: generated tsvector
-- columns, so every write path keeps them current in its own transaction, with GIN
-- indexes. Titles weigh A, text D. Only the first 100000 characters of a text are indexed
-- (SEARCHABLE_CHARS).
--
-- Words are runs of letters and digits, lower-cased, not stemmed, as SQLite's unicode61
-- tokenizer and the query parser (src/domain/search.rs) see them: everything else becomes
-- a space before the `simple` configuration reads the text, so its parser's special tokens
-- (host names, paths, e-mail addresses, HTML tags, which it keeps whole or drops) never
-- arise and `example.com` is found as `example com` on every backend.
ALTER TABLE documents ADD COLUMN search tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('simple', regexp_replace(title, '[^[:alnum:]]+', ' ', 'g')), 'A')
    || setweight(to_tsvector('simple', regexp_replace(left(content, 100000), '[^[:alnum:]]+', ' ', 'g')), 'D')
) STORED;
CREATE INDEX documents_search ON documents USING gin (search);

ALTER TABLE comments ADD COLUMN search tsvector GENERATED ALWAYS AS (
    to_tsvector('simple', regexp_replace(left(body, 100000), '[^[:alnum:]]+', ' ', 'g'))
) STORED;
CREATE INDEX comments_search ON comments USING gin (search);

-- Where the external search index (Elasticsearch) has got to in each workspace's log.
CREATE TABLE search_positions (
    workspace_id BIGINT PRIMARY KEY REFERENCES workspaces (id) ON DELETE CASCADE,
    event_offset BIGINT NOT NULL
);
