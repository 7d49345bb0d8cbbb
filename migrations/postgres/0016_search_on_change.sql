-- A document's search vector is worked out when its title or text changes, not on every
-- update of its row. A generated column is recomputed by every UPDATE, whatever it sets:
-- the bookkeeping of live editing (text_seq, version_authors, text_pending…) rewrote the
-- vector of the first 100000 characters each time, about 40 ms of CPU for a 1 MB document,
-- and made its GIN index take the row's words again. A trigger with a WHEN clause does the
-- same work only when the words can have changed. The vector is the same as before
-- (titles weigh A, text D, runs of letters and digits).
--
-- The text is compressed with lz4 where the server has it (PostgreSQL 14 and later, built
-- with lz4, as the common packages are): a 1 MB text is written in about 2 ms instead of
-- pglz's 15.
CREATE FUNCTION stoa_document_search(title TEXT, content TEXT) RETURNS tsvector
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT setweight(to_tsvector('simple', regexp_replace(title, '[^[:alnum:]]+', ' ', 'g')), 'A')
        || setweight(to_tsvector('simple', regexp_replace(left(content, 100000), '[^[:alnum:]]+', ' ', 'g')), 'D')
$$;

CREATE FUNCTION stoa_document_search_refresh() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.search := stoa_document_search(NEW.title, NEW.content);
    RETURN NEW;
END
$$;

ALTER TABLE documents DROP COLUMN search;
ALTER TABLE documents ADD COLUMN search tsvector;
UPDATE documents SET search = stoa_document_search(title, content);
CREATE INDEX documents_search ON documents USING gin (search);

CREATE TRIGGER documents_search_insert BEFORE INSERT ON documents
    FOR EACH ROW EXECUTE FUNCTION stoa_document_search_refresh();
CREATE TRIGGER documents_search_update BEFORE UPDATE OF title, content ON documents
    FOR EACH ROW
    WHEN (OLD.title IS DISTINCT FROM NEW.title OR OLD.content IS DISTINCT FROM NEW.content)
    EXECUTE FUNCTION stoa_document_search_refresh();

DO $$
BEGIN
    ALTER TABLE documents ALTER COLUMN content SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR invalid_parameter_value OR syntax_error THEN
    RAISE NOTICE 'lz4 is not available: document text stays compressed with pglz';
END
$$;
