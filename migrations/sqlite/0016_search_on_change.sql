-- A document is indexed again only when its title or text changed, not whenever an UPDATE
-- names them (a rename of a 1 MB document took its whole text out of the index and put it
-- back).
DROP TRIGGER documents_search_update;
CREATE TRIGGER documents_search_update AFTER UPDATE OF title, content ON documents
WHEN old.title IS NOT new.title OR old.content IS NOT new.content
BEGIN
    DELETE FROM document_search WHERE rowid = old.id;
    INSERT INTO document_search (rowid, title, body)
    VALUES (new.id, new.title, substr(new.content, 1, 100000));
END;
