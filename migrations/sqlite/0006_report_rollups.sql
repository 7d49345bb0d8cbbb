-- Rollups of the event log that the reports read, so that a report on a workspace with
-- millions of events reads thousands of rows, not millions. Each is updated in the
-- transaction that appends the event it counts (see `append` in src/store/sql/mod.rs), and
-- filled here from the events already logged.
--
-- activity_slots: events per kind per 15-minute UTC slot. Every time zone in use today is
-- offset from UTC by a multiple of 15 minutes, so any zone's hours, days and weeks are
-- whole runs of slots.
CREATE TABLE activity_slots (
    workspace_id BIGINT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    slot         BIGINT NOT NULL,
    kind         TEXT   NOT NULL,
    events       BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, slot, kind)
);

-- activity_hours: the same per UTC hour. A bucket reads its whole hours here and only
-- its partial hours at either end (zones offset by half or quarter hours) from the slots,
-- a quarter of the rows.
CREATE TABLE activity_hours (
    workspace_id BIGINT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    hour         BIGINT NOT NULL,
    kind         TEXT   NOT NULL,
    events       BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, hour, kind)
);

-- member_activity: what each user did in a workspace (kept after they leave it, like the
-- log). documents_edited counts distinct documents (see document_editors).
CREATE TABLE member_activity (
    workspace_id      BIGINT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    user_id           BIGINT NOT NULL,
    events            BIGINT NOT NULL,
    documents_created BIGINT NOT NULL,
    documents_edited  BIGINT NOT NULL,
    edits             BIGINT NOT NULL,
    comments          BIGINT NOT NULL,
    last_active       BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, user_id)
);

-- document_activity: per live document. Edits are `document.updated` (REST) and
-- `document.edited` (a window of live editing by one editor) events.
CREATE TABLE document_activity (
    document_id   BIGINT PRIMARY KEY REFERENCES documents (id) ON DELETE CASCADE,
    workspace_id  BIGINT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    edits         BIGINT NOT NULL,
    comments      BIGINT NOT NULL,
    editors       BIGINT NOT NULL,
    last_activity BIGINT NOT NULL
);
CREATE INDEX document_activity_by_workspace ON document_activity (workspace_id, document_id);

-- document_editors: who edited which document, how often; a new row is a new distinct
-- editor of the document and a new document edited by the member.
CREATE TABLE document_editors (
    document_id BIGINT NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    user_id     BIGINT NOT NULL,
    edits       BIGINT NOT NULL,
    PRIMARY KEY (document_id, user_id)
);

INSERT INTO activity_slots (workspace_id, slot, kind, events)
SELECT workspace_id, (created_at / 900000) * 900000, kind, COUNT(*)
FROM events GROUP BY workspace_id, (created_at / 900000) * 900000, kind;

INSERT INTO activity_hours (workspace_id, hour, kind, events)
SELECT workspace_id, (created_at / 3600000) * 3600000, kind, COUNT(*)
FROM events GROUP BY workspace_id, (created_at / 3600000) * 3600000, kind;

INSERT INTO document_editors (document_id, user_id, edits)
SELECT d.id, e.actor_id, COUNT(*)
FROM events e CROSS JOIN documents d ON d.id = json_extract(e.payload, '$.document_id')
WHERE e.kind IN ('document.updated', 'document.edited') AND e.actor_id IS NOT NULL
GROUP BY d.id, e.actor_id;

INSERT INTO member_activity (workspace_id, user_id, events, documents_created,
                             documents_edited, edits, comments, last_active)
SELECT e.workspace_id, e.actor_id, COUNT(*),
       SUM(CASE WHEN e.kind = 'document.created' THEN 1 ELSE 0 END),
       COALESCE(MAX(x.edited), 0),
       SUM(CASE WHEN e.kind IN ('document.updated', 'document.edited') THEN 1 ELSE 0 END),
       SUM(CASE WHEN e.kind = 'comment.created' THEN 1 ELSE 0 END),
       MAX(e.created_at)
FROM events e
LEFT JOIN (SELECT d.workspace_id, de.user_id, COUNT(*) AS edited
           FROM document_editors de JOIN documents d ON d.id = de.document_id
           GROUP BY d.workspace_id, de.user_id) x
       ON x.workspace_id = e.workspace_id AND x.user_id = e.actor_id
WHERE e.actor_id IS NOT NULL
GROUP BY e.workspace_id, e.actor_id;

INSERT INTO document_activity (document_id, workspace_id, edits, comments, editors, last_activity)
SELECT d.id, d.workspace_id,
       SUM(CASE WHEN e.kind IN ('document.updated', 'document.edited') THEN 1 ELSE 0 END),
       SUM(CASE WHEN e.kind = 'comment.created' THEN 1 ELSE 0 END),
       (SELECT COUNT(*) FROM document_editors x WHERE x.document_id = d.id),
       MAX(e.created_at)
FROM events e CROSS JOIN documents d ON d.id = json_extract(e.payload, '$.document_id')
              AND d.workspace_id = e.workspace_id
GROUP BY d.id, d.workspace_id;
