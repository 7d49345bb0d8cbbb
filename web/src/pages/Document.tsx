import { useEffect, useRef, useState } from "react";
import { Link, useParams } from "react-router-dom";
import { Alert, Avatar, Badge, Breadcrumb, Space, Spin, Tooltip, Typography } from "antd";
import { useEditor, EditorContent } from "@tiptap/react";
import StarterKit from "@tiptap/starter-kit";
import Collaboration from "@tiptap/extension-collaboration";
import CollaborationCursor from "@tiptap/extension-collaboration-cursor";
import * as Y from "yjs";
import { WebsocketProvider } from "y-websocket";
import * as authProtocol from "y-protocols/auth";
import { api, session } from "../lib/api";
import { useUser } from "../lib/auth";
import { useChannel, useLoad } from "../lib/hooks";
import { nextLink, type Link as LinkState, type LinkEvent } from "../lib/connection";
import { ApiProblem, closeReason, TERMINAL_REASONS } from "../lib/problem";
import { colorFor } from "../lib/colors";
import { atLeast, type DocumentView, type Member, type Page, type Workspace } from "../lib/types";
import { ProblemAlert } from "../components/ProblemAlert";
import { Comments } from "../components/Comments";
import { History } from "../components/History";
import { initials } from "./Shell";

interface Peer {
  clientId: number;
  name: string;
  color: string;
}

/** The client id of the one change that moves a document's plain text into the editor's
 * fragment: every browser makes that change under this id, from the same state, so when two
 * do it at once Yjs sees one change twice instead of two copies of the text. */
const ADOPTER_ID = 1;

/**
 * A document written over the API before anyone opened it in an editor keeps its text in
 * `content` (Y.Text). The editor shows the `default` fragment: on first sync an editor moves
 * the text there, one paragraph per line, as one change (the server's REST text stays the same).
 */
export function adoptPlainText(ydoc: Y.Doc): boolean {
  const fragment = ydoc.getXmlFragment("default");
  const text = ydoc.getText("content");
  if (fragment.length > 0 || text.length === 0) return false;
  const copy = new Y.Doc();
  copy.clientID = ADOPTER_ID;
  Y.applyUpdate(copy, Y.encodeStateAsUpdate(ydoc));
  const before = Y.encodeStateVector(copy);
  copy.transact(() => {
    const t = copy.getText("content");
    const lines = t.toString().split("\n");
    copy.getXmlFragment("default").insert(
      0,
      lines.map((line) => {
        const p = new Y.XmlElement("paragraph");
        if (line) p.insert(0, [new Y.XmlText(line)]);
        return p;
      }),
    );
    t.delete(0, t.length);
  });
  Y.applyUpdate(ydoc, Y.encodeStateAsUpdate(copy, before));
  copy.destroy();
  return true;
}

function yjsBase(): string {
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/yjs`;
}

interface Connection {
  ydoc: Y.Doc;
  provider: WebsocketProvider;
}

/**
 * The y-websocket provider of one document, with its connection state, who is here, and
 * what the server said of this user's rights. Made and destroyed by one effect per
 * document, so a re-run (StrictMode, a changed name) never reuses a destroyed provider.
 */
function useProvider(docId: number, name: string, userId: number, canEdit: boolean) {
  const [link, setLink] = useState<LinkState>({ state: "connecting" });
  const [peers, setPeers] = useState<Peer[]>([]);
  const [readOnlyByServer, setReadOnlyByServer] = useState(false);
  const [tooLarge, setTooLarge] = useState(false);
  const [conn, setConn] = useState<Connection | null>(null);

  useEffect(() => {
    const ydoc = new Y.Doc();
    const provider = new WebsocketProvider(yjsBase(), String(docId), ydoc, {
      params: { token: session.current()?.access ?? "" },
      connect: false,
      // A removal or a deletion is final: reconnecting would only be refused.
      shouldReconnect: (ev: CloseEvent) => !TERMINAL_REASONS.has(ev.reason),
    } as ConstructorParameters<typeof WebsocketProvider>[3]);
    let failures = 0;
    let disposed = false;
    const step = (e: LinkEvent) => {
      if (e.type === "close" && e.terminal) provider.disconnect();
      setLink((l) => nextLink(l, e));
    };
    const onStatus = ({ status }: { status: string }) => {
      if (status === "connected") {
        failures = 0;
        setReadOnlyByServer(false);
        step({ type: "open" });
      }
    };
    const freshToken = () => {
      provider.params = { token: session.current()?.access ?? "" };
    };
    const onClose = (ev: CloseEvent | null) => {
      freshToken();
      if (ev?.reason === "token_expired") {
        // Routine: the socket lives as long as its token; the next one carries a fresh token
        // (refreshed here only if the leading tab has not already).
        void session.accessToken().then(freshToken);
        step({ type: "close", reason: null, terminal: false });
      } else if (ev) {
        step({ type: "close", reason: closeReason(ev.code, ev.reason), terminal: TERMINAL_REASONS.has(ev.reason) });
      } else {
        step({ type: "close", reason: null, terminal: false });
      }
    };
    // A refused upgrade reaches the browser without a reason (1006). After a few in a row,
    // ask the API whether the document is still there for this user.
    const onError = () => {
      step({ type: "close", reason: null, terminal: false });
      failures += 1;
      if (failures === 3) {
        api.get(`/api/v1/documents/${docId}`).catch((e) => {
          if (!disposed && e instanceof ApiProblem && e.status === 404) {
            step({ type: "close", reason: "This document was deleted, or you are no longer a member of its workspace.", terminal: true });
          }
        });
      }
    };
    const offline = () => step({ type: "offline" });
    const online = () => step({ type: "online" });
    const unsubscribe = session.subscribe((t) => {
      provider.params = { token: t?.access ?? "" };
    });
    // The server's auth messages: "read-only" when this user may not write, or
    // "document_too_large" when an update would take the document over its limit.
    provider.messageHandlers[2] = (_encoder, decoder, p) => {
      authProtocol.readAuthMessage(decoder, p.doc, (_doc, reason) => {
        if (reason.includes("document_too_large")) setTooLarge(true);
        else setReadOnlyByServer(true);
      });
    };
    provider.on("status", onStatus);
    provider.on("connection-close", onClose);
    provider.on("connection-error", onError);
    window.addEventListener("offline", offline);
    window.addEventListener("online", online);
    if (!navigator.onLine) step({ type: "offline" });
    const awareness = provider.awareness;
    const onAwareness = () => {
      const list: Peer[] = [];
      awareness.getStates().forEach((st, clientId) => {
        const u = st.user as { name?: string; color?: string } | undefined;
        if (u?.name) list.push({ clientId, name: u.name, color: u.color ?? "#555" });
      });
      setPeers(list);
    };
    awareness.on("change", onAwareness);
    provider.connect();
    setConn({ ydoc, provider });
    return () => {
      disposed = true;
      setConn(null);
      unsubscribe();
      awareness.off("change", onAwareness);
      window.removeEventListener("offline", offline);
      window.removeEventListener("online", online);
      provider.destroy();
      ydoc.destroy();
    };
  }, [docId]);

  useEffect(() => {
    conn?.provider.awareness.setLocalStateField("user", { name, color: colorFor(userId), id: userId });
  }, [conn, name, userId]);

  // Made an editor again (the server says nothing then): writable at once.
  useEffect(() => {
    if (canEdit) setReadOnlyByServer(false);
  }, [canEdit]);

  return { conn, link, peers, readOnlyByServer, tooLarge };
}

function LinkBadge({ link }: { link: LinkState }) {
  const status = link.state === "live" ? "success" : link.state === "closed" ? "error" : link.state === "offline" ? "default" : "warning";
  const text = link.state === "connecting" ? "connecting" : link.state;
  return (
    <span data-testid="editor-status" data-state={link.state} aria-live="polite">
      <Badge status={status} text={text} />
    </span>
  );
}

function Editor({ docId, canEdit }: { docId: number; canEdit: boolean }) {
  const user = useUser();
  const { conn, link, peers, readOnlyByServer, tooLarge } = useProvider(docId, user?.display_name ?? "?", user?.id ?? 0, canEdit);
  const editable = canEdit && !readOnlyByServer && !tooLarge && link.state !== "closed";
  return (
    <>
      <Space style={{ justifyContent: "space-between", width: "100%", marginBottom: 8 }} wrap>
        <Space>
          <LinkBadge link={link} />
          {!editable && link.state !== "closed" && <Typography.Text type="secondary" data-testid="read-only">Read only</Typography.Text>}
        </Space>
        <ul data-testid="here" aria-label="Who is here" style={{ display: "flex", gap: 4, listStyle: "none", margin: 0, padding: 0 }}>
          {peers.map((p) => (
            <li key={p.clientId} data-name={p.name}>
              <Tooltip title={p.name}>
                <Avatar style={{ background: p.color }} alt={p.name} aria-label={p.name}>
                  {initials(p.name)}
                </Avatar>
              </Tooltip>
            </li>
          ))}
        </ul>
      </Space>
      {link.state === "closed" && <Alert type="error" showIcon role="alert" data-testid="editor-closed" message={link.reason} style={{ marginBottom: 12 }} />}
      {tooLarge && (
        <Alert
          type="error"
          showIcon
          role="alert"
          message="The document reached its size limit: your last change was not saved. Reload to see the saved document."
          style={{ marginBottom: 12 }}
        />
      )}
      {link.state === "reconnecting" && link.reason && (
        <Alert type="warning" showIcon message={link.reason} style={{ marginBottom: 12 }} />
      )}
      <div style={{ border: "1px solid #d9d9d9", borderRadius: 6, background: editable ? "#fff" : "#fafafa" }}>
        {conn ? <Surface conn={conn} editable={editable} canEdit={canEdit} /> : <Spin aria-label="Loading" />}
      </div>
    </>
  );
}

/** TipTap bound to one provider's document (the `default` fragment) and awareness. */
function Surface({ conn, editable, canEdit }: { conn: Connection; editable: boolean; canEdit: boolean }) {
  const user = useUser();
  const { ydoc, provider } = conn;
  const editor = useEditor(
    {
      extensions: [
        StarterKit.configure({ history: false }),
        Collaboration.configure({ document: ydoc, field: "default" }),
        CollaborationCursor.configure({ provider, user: { name: user?.display_name ?? "?", color: colorFor(user?.id ?? 0) } }),
      ],
      editable,
      editorProps: {
        attributes: {
          "aria-label": "Document text",
          role: "textbox",
          "aria-multiline": "true",
          "data-testid": "editor",
        },
      },
    },
    [ydoc, provider],
  );
  useEffect(() => {
    if (editor && editor.isEditable !== editable) editor.setEditable(editable);
    editor?.view.dom.setAttribute("aria-readonly", String(!editable));
  }, [editor, editable]);
  const ready = useRef(false);
  useEffect(() => {
    const mark = (synced: boolean) => {
      if (synced && !ready.current) {
        ready.current = true;
        performance.mark("stoa:document-synced");
        if (canEdit) adoptPlainText(ydoc);
      }
    };
    if (provider.synced) mark(true);
    provider.on("sync", mark);
    return () => provider.off("sync", mark);
  }, [provider, ydoc, canEdit]);
  // A reader of a document whose text was written over the API and never opened by an
  // editor: the text itself, as it stands (an editor would have moved it into the fragment).
  const [plain, setPlain] = useState<string | null>(null);
  useEffect(() => {
    if (canEdit) return;
    const look = () => {
      const text = ydoc.getText("content").toString();
      setPlain(ydoc.getXmlFragment("default").length === 0 && text ? text : null);
    };
    look();
    ydoc.on("update", look);
    return () => ydoc.off("update", look);
  }, [ydoc, canEdit]);
  if (plain !== null) {
    return (
      <div data-testid="editor" contentEditable={false} aria-label="Document text" role="textbox" aria-readonly="true" className="ProseMirror">
        {plain.split("\n").map((line, i) => (
          <p key={i}>{line}</p>
        ))}
      </div>
    );
  }
  return <EditorContent editor={editor} />;
}

export default function DocumentPage() {
  const { wid, did } = useParams();
  const wsId = Number(wid);
  const docId = Number(did);
  const me = useUser();
  const ws = useLoad(() => api.get<Workspace>(`/api/v1/workspaces/${wsId}`), [wsId]);
  const doc = useLoad(() => api.get<DocumentView>(`/api/v1/documents/${docId}`), [docId]);
  const members = useLoad(() => api.get<Page<Member>>(`/api/v1/workspaces/${wsId}/members?limit=200`), [wsId]);
  const [error, setError] = useState<unknown>(null);
  // Role changes and removals arrive live on the workspace topic.
  useChannel(
    `workspace:${wsId}`,
    {
      event: (e: { kind: string; data: Record<string, unknown> }) => {
        if (e.kind.startsWith("member.") && e.data.user_id === me?.id) ws.reload();
        if ((e.kind === "document.updated" || e.kind === "document.restored") && e.data.document_id === docId) doc.reload();
      },
    },
    () => ({ presence: false }),
  );
  // A failed reload keeps the page (and the live editor) with the problem above it.
  if (!ws.data || !doc.data) return ws.error || doc.error ? <ProblemAlert error={ws.error || doc.error} /> : <Spin aria-label="Loading" />;
  const canEdit = atLeast(ws.data.role, "editor");
  return (
    <>
      <div style={{ display: "flex", justifyContent: "space-between", alignItems: "center", marginBottom: 8 }}>
        <Breadcrumb items={[{ title: <Link to={`/w/${wsId}`}>{ws.data.name}</Link> }, { title: doc.data.title }]} />
        <History docId={docId} canEdit={canEdit} members={members.data?.items ?? []} onRestored={doc.reload} />
      </div>
      <ProblemAlert error={error || ws.error || doc.error} onClose={() => setError(null)} />
      <Typography.Title
        level={2}
        style={{ marginTop: 0 }}
        editable={
          canEdit
            ? {
                triggerType: ["icon"],
                tooltip: "Rename",
                onChange: async (title) => {
                  if (!title.trim() || title === doc.data?.title) return;
                  try {
                    await api.patch(`/api/v1/documents/${docId}`, { title });
                    doc.reload();
                  } catch (e) {
                    setError(e);
                  }
                },
              }
            : false
        }
      >
        {doc.data.title}
      </Typography.Title>
      <div style={{ display: "flex", gap: 24, alignItems: "flex-start", flexWrap: "wrap" }}>
        <section style={{ flex: "3 1 520px", minWidth: 0 }} aria-label="Editor">
          <Editor key={docId} docId={docId} canEdit={canEdit} />
        </section>
        <aside style={{ flex: "1 1 300px" }} aria-label="Comments">
          <Comments docId={docId} role={ws.data.role} members={members.data?.items ?? []} />
        </aside>
      </div>
    </>
  );
}
