import { lazy, Suspense, useEffect, useMemo, useRef, useState } from "react";
import { Link, Route, Routes, useLocation, useNavigate, useParams } from "react-router-dom";
import { Alert, Button, Form, Input, List, Modal, Popconfirm, Select, Space, Spin, Table, Tabs, Tag, Typography } from "antd";
import { api } from "../lib/api";
import { useUser } from "../lib/auth";
import { useChannel, useLoad } from "../lib/hooks";
import { eventText, mergeEvents } from "../lib/events";
import { closeReason } from "../lib/problem";
import { atLeast, type DocumentView, type Invitation, type Member, type Page, type Role, type StoaEvent, type Workspace } from "../lib/types";
import { ProblemAlert } from "../components/ProblemAlert";

const Reports = lazy(() => import("./Reports"));

/** One page per workspace: moving to another starts afresh (its log has offsets of its own). */
export function WorkspacePage({ onChange }: { onChange: () => void }) {
  const { wid } = useParams();
  return <OneWorkspace key={wid} id={Number(wid)} onChange={onChange} />;
}

function OneWorkspace({ id, onChange }: { id: number; onChange: () => void }) {
  const me = useUser();
  const navigate = useNavigate();
  const location = useLocation();
  const ws = useLoad(() => api.get<Workspace>(`/api/v1/workspaces/${id}`), [id]);
  const members = useLoad(() => api.get<Page<Member>>(`/api/v1/workspaces/${id}/members?limit=200`), [id]);
  const docs = useLoad(() => api.get<Page<DocumentView>>(`/api/v1/workspaces/${id}/documents?limit=200`), [id]);
  const [feed, setFeed] = useState<StoaEvent[]>([]);
  const [closed, setClosed] = useState<string | null>(null);
  const lastSeen = useRef<number | null>(null);
  // Events up to the workspace's offset when the page loaded are already in what REST gave:
  // replayed into the feed, they reload nothing.
  const baseline = useRef<number | null>(null);
  if (ws.data && lastSeen.current === null) {
    lastSeen.current = Math.max(0, ws.data.last_offset - 50);
    baseline.current = ws.data.last_offset;
  }
  const catchUp = async (offset: number) => {
    // Too far behind for a replay: the last events over REST, then everything reloaded.
    const from = Math.max(0, offset - 50);
    try {
      const page = await api.get<{ items: StoaEvent[] }>(`/api/v1/workspaces/${id}/events?since=${from}&limit=50`);
      setFeed((f) => mergeEvents(f, page.items));
    } catch {
      // The feed stays as it was; the lists below are reloaded all the same.
    }
    lastSeen.current = Math.max(lastSeen.current ?? 0, offset);
    docs.reload();
    members.reload();
    ws.reload();
  };

  // The workspace's log, live: a rejoin after a reconnect resumes after the last event seen.
  useChannel(
    ws.data ? `workspace:${id}` : null,
    {
      event: (e: StoaEvent) => {
        lastSeen.current = Math.max(lastSeen.current ?? 0, e.offset);
        setFeed((f) => mergeEvents(f, [e]));
        if (e.offset <= (baseline.current ?? 0)) return;
        // Edits change no row of the list but its version: not worth a reload each time.
        if (e.kind.startsWith("document.") && e.kind !== "document.edited") docs.reload();
        if (e.kind.startsWith("member.")) {
          members.reload();
          if (e.data.user_id === me?.id) ws.reload();
        }
        if (e.kind === "workspace.updated") {
          ws.reload();
          onChange();
        }
      },
      // The server's close carries a reason; our own leave (the page unmounting) does not.
      phx_close: (p: unknown) => {
        const reason = (p as { reason?: string } | null)?.reason;
        if (reason) setClosed(closeReason(1000, reason));
      },
    },
    () => ({ since: lastSeen.current ?? 0, presence: false }),
    (reply: { recovered?: boolean; offset?: number }) => {
      if (reply?.recovered === false && typeof reply.offset === "number") void catchUp(reply.offset);
    },
    (reply: { reason?: string }) => setClosed(closeReason(1000, reply?.reason ?? "membership_revoked")),
  );

  const nameOf = useMemo(() => {
    const names = new Map((members.data?.items ?? []).map((m) => [m.user_id, m.display_name]));
    return (uid: number | null) => (uid === null ? "Stoa" : names.get(uid) ?? `user ${uid}`);
  }, [members.data]);

  if (!ws.data) return ws.error ? <ProblemAlert error={ws.error} /> : <Spin aria-label="Loading" />;
  const role = ws.data.role;
  const base = `/w/${id}`;
  const tab = location.pathname.slice(base.length).split("/")[1] || "documents";
  return (
    <>
      <Space align="baseline" style={{ marginBottom: 8 }}>
        <Typography.Title level={2} style={{ margin: 0 }}>
          {ws.data.name}
        </Typography.Title>
        <Tag data-testid="my-role">{role}</Tag>
      </Space>
      {closed && <Alert type="warning" showIcon message={closed} style={{ marginBottom: 16 }} />}
      {ws.error ? <ProblemAlert error={ws.error} /> : null}
      <Tabs
        activeKey={tab}
        onChange={(k) => navigate(k === "documents" ? base : `${base}/${k}`)}
        items={[
          { key: "documents", label: "Documents" },
          { key: "activity", label: "Activity" },
          { key: "members", label: "Members" },
          ...(atLeast(role, "admin") ? [{ key: "reports", label: "Reports" }] : []),
          ...(atLeast(role, "admin") ? [{ key: "settings", label: "Settings" }] : []),
        ]}
      />
      <Routes>
        <Route index element={<Documents ws={ws.data} docs={docs} />} />
        <Route path="activity" element={<Activity feed={feed} nameOf={nameOf} />} />
        <Route path="members" element={<Members ws={ws.data} members={members} />} />
        <Route
          path="reports"
          element={
            <Suspense fallback={<Spin aria-label="Loading" />}>
              <Reports ws={ws.data} nameOf={nameOf} />
            </Suspense>
          }
        />
        <Route path="settings" element={<Settings ws={ws.data} onChange={() => { ws.reload(); onChange(); }} />} />
      </Routes>
    </>
  );
}

function Documents({ ws, docs }: { ws: Workspace; docs: ReturnType<typeof useLoad<Page<DocumentView>>> }) {
  const [filter, setFilter] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [creating, setCreating] = useState(false);
  const [form] = Form.useForm();
  const navigate = useNavigate();
  const canEdit = atLeast(ws.role, "editor");
  const shown = (docs.data?.items ?? []).filter((d) => d.title.toLowerCase().includes(filter.trim().toLowerCase()));
  return (
    <>
      <ProblemAlert error={docs.error || error} onClose={() => setError(null)} />
      <Space style={{ marginBottom: 16 }} wrap>
        <Input.Search
          aria-label="Filter documents by title"
          placeholder="Filter by title"
          allowClear
          value={filter}
          onChange={(e) => setFilter(e.target.value)}
          style={{ width: 280 }}
        />
        {canEdit && (
          <Button type="primary" onClick={() => setCreating(true)}>
            New document
          </Button>
        )}
      </Space>
      {docs.data?.next_cursor && (
        <Alert
          type="info"
          showIcon
          style={{ marginBottom: 12 }}
          message="Showing the first 200 documents, and filtering only those: search finds any of them."
        />
      )}
      <Table<DocumentView>
        rowKey="id"
        loading={docs.loading && !docs.data}
        dataSource={shown}
        pagination={{ pageSize: 20, hideOnSinglePage: true }}
        locale={{ emptyText: filter ? "No title matches" : "No documents yet" }}
        columns={[
          {
            title: "Title",
            dataIndex: "title",
            sorter: (a, b) => a.title.localeCompare(b.title),
            render: (t: string, d) => <Link to={`/w/${ws.id}/d/${d.id}`}>{t}</Link>,
          },
          { title: "Version", dataIndex: "version", width: 100 },
          {
            title: "Updated",
            dataIndex: "updated_at",
            width: 220,
            defaultSortOrder: "descend",
            sorter: (a, b) => a.updated_at.localeCompare(b.updated_at),
            render: (t: string) => new Date(t).toLocaleString(),
          },
          ...(canEdit
            ? [
                {
                  title: <span className="sr-only">Actions</span>,
                  key: "actions",
                  width: 110,
                  render: (_: unknown, d: DocumentView) => (
                    <Popconfirm
                      title={`Delete “${d.title}”?`}
                      okText="Delete"
                      okButtonProps={{ danger: true }}
                      onConfirm={async () => {
                        try {
                          await api.del(`/api/v1/documents/${d.id}`);
                          docs.reload();
                        } catch (e) {
                          setError(e);
                        }
                      }}
                    >
                      <Button danger size="small" aria-label={`Delete ${d.title}`}>
                        Delete
                      </Button>
                    </Popconfirm>
                  ),
                },
              ]
            : []),
        ]}
      />
      <Modal
        title="New document"
        open={creating}
        okText="Create"
        onCancel={() => setCreating(false)}
        onOk={() => form.submit()}
        destroyOnClose
      >
        <Form
          form={form}
          layout="vertical"
          onFinish={async (v: { title: string }) => {
            try {
              const d = await api.post<DocumentView>(`/api/v1/workspaces/${ws.id}/documents`, { title: v.title });
              setCreating(false);
              docs.reload();
              navigate(`/w/${ws.id}/d/${d.id}`);
            } catch (e) {
              setError(e);
              setCreating(false);
            }
          }}
        >
          <Form.Item name="title" label="Title" rules={[{ required: true, message: "A title" }]}>
            <Input autoFocus />
          </Form.Item>
        </Form>
      </Modal>
    </>
  );
}

function Activity({ feed, nameOf }: { feed: StoaEvent[]; nameOf: (id: number | null) => string }) {
  const newest = [...feed].reverse();
  return (
    <List
      data-testid="activity"
      bordered
      locale={{ emptyText: "Nothing has happened yet" }}
      dataSource={newest}
      renderItem={(e) => (
        <List.Item>
          <Space direction="vertical" size={0}>
            <span>{eventText(e, nameOf)}</span>
            <Typography.Text type="secondary" style={{ fontSize: 12 }}>
              #{e.offset} · {new Date(e.at).toLocaleString()}
            </Typography.Text>
          </Space>
        </List.Item>
      )}
    />
  );
}

const ROLES: Role[] = ["viewer", "editor", "admin", "owner"];

/** Pending invitations (admins): resent with a new link, or revoked. */
function Invitations({ ws, invitations, run }: {
  ws: Workspace;
  invitations: ReturnType<typeof useLoad<Page<Invitation>>>;
  run: (f: () => Promise<unknown>) => Promise<void>;
}) {
  const items = invitations.data?.items ?? [];
  if (items.length === 0) return null;
  return (
    <>
      <Typography.Title level={3} style={{ fontSize: 16, marginTop: 24 }}>
        Invited
      </Typography.Title>
      <Table<Invitation>
        rowKey="id"
        dataSource={items}
        pagination={false}
        columns={[
          { title: "E-mail", dataIndex: "email" },
          { title: "Role", dataIndex: "role", render: (r: Role) => <Tag>{r}</Tag> },
          {
            title: "Link",
            key: "expires",
            render: (_: unknown, i: Invitation) =>
              i.expired ? <Tag>expired</Tag> : `works until ${new Date(i.expires_at).toLocaleDateString()}`,
          },
          {
            title: <span className="sr-only">Actions</span>,
            key: "actions",
            render: (_: unknown, i: Invitation) => (
              <span style={{ display: "inline-flex", gap: 8 }}>
                <Button size="small" aria-label={`Send the invitation to ${i.email} again`} onClick={() => run(() => api.post(`/api/v1/invitations/${i.id}/resend`))}>
                  Send again
                </Button>
                <Popconfirm
                  title={`Revoke the invitation of ${i.email} to ${ws.name}?`}
                  okText="Revoke"
                  okButtonProps={{ danger: true }}
                  onConfirm={() => run(() => api.del(`/api/v1/invitations/${i.id}`))}
                >
                  <Button danger size="small" aria-label={`Revoke the invitation of ${i.email}`}>
                    Revoke
                  </Button>
                </Popconfirm>
              </span>
            ),
          },
        ]}
      />
    </>
  );
}

function Members({ ws, members }: { ws: Workspace; members: ReturnType<typeof useLoad<Page<Member>>> }) {
  const [error, setError] = useState<unknown>(null);
  const [invited, setInvited] = useState<string | null>(null);
  const [form] = Form.useForm();
  const admin = atLeast(ws.role, "admin");
  const owner = ws.role === "owner";
  const grantable = ROLES.filter((r) => owner || r !== "owner");
  const invitations = useLoad(
    () => (admin ? api.get<Page<Invitation>>(`/api/v1/workspaces/${ws.id}/invitations`) : Promise.resolve({ items: [], next_cursor: null })),
    [ws.id, admin],
  );
  const run = async (f: () => Promise<unknown>) => {
    setError(null);
    try {
      await f();
      members.reload();
      invitations.reload();
    } catch (e) {
      setError(e);
    }
  };
  return (
    <>
      <ProblemAlert error={members.error || error} onClose={() => setError(null)} />
      {invited && (
        <Alert
          type="info"
          showIcon
          role="status"
          closable
          onClose={() => setInvited(null)}
          style={{ marginBottom: 16 }}
          message={`No account has ${invited} yet: an invitation is on its way. It joins them once they sign up or in with that address.`}
        />
      )}
      {admin && (
        <Form
          form={form}
          layout="inline"
          style={{ marginBottom: 16 }}
          initialValues={{ role: "editor" }}
          onFinish={(v: { email: string; role: Role }) =>
            run(async () => {
              setInvited(null);
              const added = await api.post<Member | Invitation>(`/api/v1/workspaces/${ws.id}/members`, { email: v.email, role: v.role });
              // 202: nobody has (verified) the address yet; it was sent an invitation.
              if (!("user_id" in added)) setInvited(added.email);
              form.resetFields(["email"]);
            })
          }
        >
          <Form.Item name="email" label="Add by e-mail" rules={[{ required: true, message: "An e-mail address" }]}>
            <Input type="email" placeholder="bob@example.com" style={{ width: 240 }} />
          </Form.Item>
          <Form.Item name="role" label="Role">
            <Select aria-label="Role of the new member" style={{ width: 120 }} options={grantable.map((r) => ({ value: r, label: r }))} />
          </Form.Item>
          <Button type="primary" htmlType="submit">
            Add member
          </Button>
        </Form>
      )}
      <Table<Member>
        rowKey="user_id"
        loading={members.loading && !members.data}
        dataSource={members.data?.items ?? []}
        pagination={false}
        columns={[
          { title: "Name", dataIndex: "display_name", sorter: (a, b) => a.display_name.localeCompare(b.display_name) },
          { title: "E-mail", dataIndex: "email" },
          {
            title: "Role",
            dataIndex: "role",
            render: (r: Role, m) =>
              admin && (owner || r !== "owner") ? (
                <Select
                  aria-label={`Role of ${m.display_name}`}
                  value={r}
                  style={{ width: 120 }}
                  options={grantable.map((x) => ({ value: x, label: x }))}
                  onChange={(role) => run(() => api.patch(`/api/v1/workspaces/${ws.id}/members/${m.user_id}`, { role }))}
                />
              ) : (
                <Tag>{r}</Tag>
              ),
          },
          ...(admin
            ? [
                {
                  title: <span className="sr-only">Actions</span>,
                  key: "actions",
                  render: (_: unknown, m: Member) =>
                    owner || m.role !== "owner" ? (
                      <Popconfirm
                        title={`Remove ${m.display_name} from ${ws.name}?`}
                        okText="Remove"
                        okButtonProps={{ danger: true }}
                        onConfirm={() => run(() => api.del(`/api/v1/workspaces/${ws.id}/members/${m.user_id}`))}
                      >
                        <Button danger size="small" aria-label={`Remove ${m.display_name}`}>
                          Remove
                        </Button>
                      </Popconfirm>
                    ) : null,
                },
              ]
            : []),
        ]}
      />
      {admin && <Invitations ws={ws} invitations={invitations} run={run} />}
    </>
  );
}

function Settings({ ws, onChange }: { ws: Workspace; onChange: () => void }) {
  const [error, setError] = useState<unknown>(null);
  const [saved, setSaved] = useState(false);
  const navigate = useNavigate();
  return (
    <div style={{ maxWidth: 520 }}>
      <ProblemAlert error={error} onClose={() => setError(null)} />
      {saved && <Alert type="success" showIcon message="Saved" style={{ marginBottom: 16 }} />}
      <Form
        layout="vertical"
        initialValues={{ name: ws.name }}
        onFinish={async (v: { name: string }) => {
          setError(null);
          setSaved(false);
          try {
            await api.patch(`/api/v1/workspaces/${ws.id}`, { name: v.name });
            setSaved(true);
            onChange();
          } catch (e) {
            setError(e);
          }
        }}
      >
        <Form.Item name="name" label="Workspace name" rules={[{ required: true, message: "A name" }]}>
          <Input />
        </Form.Item>
        <Button type="primary" htmlType="submit">
          Rename
        </Button>
      </Form>
      {atLeast(ws.role, "admin") && <SingleSignOn ws={ws} />}
      {ws.role === "owner" && (
        <div style={{ marginTop: 40 }}>
          <Typography.Title level={3}>Delete the workspace</Typography.Title>
          <p>Its documents, comments and log are deleted, and everyone in it is disconnected.</p>
          <Popconfirm
            title={`Delete ${ws.name} for everyone?`}
            okText="Delete"
            okButtonProps={{ danger: true }}
            onConfirm={async () => {
              try {
                await api.del(`/api/v1/workspaces/${ws.id}`);
                onChange();
                navigate("/");
              } catch (e) {
                setError(e);
              }
            }}
          >
            <Button danger>Delete workspace</Button>
          </Popconfirm>
        </div>
      )}
    </div>
  );
}

type SsoRule = { provider: string; domains: string[] };
type SsoState = { provider: string | null; domains: string[] };

/** The workspace's single sign-on rule, when the server has providers. */
function SingleSignOn({ ws }: { ws: Workspace }) {
  const [providers, setProviders] = useState<{ name: string; display_name: string }[]>([]);
  const [rule, setRule] = useState<SsoRule | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [saved, setSaved] = useState(false);
  const [form] = Form.useForm();
  useEffect(() => {
    let live = true;
    (async () => {
      const methods = await api.get<{ sso?: { name: string; display_name: string }[] }>("/api/v1/auth/methods");
      if (!live) return;
      setProviders(methods.sso ?? []);
      if (!methods.sso?.length) return;
      const r = await api.get<SsoState>(`/api/v1/workspaces/${ws.id}/sso`);
      if (live && r.provider) {
        const current = { provider: r.provider, domains: r.domains };
        setRule(current);
        form.setFieldsValue(current);
      }
    })().catch((e) => live && setError(e));
    return () => {
      live = false;
    };
  }, [ws.id, form]);
  if (providers.length === 0) return null;
  return (
    <div style={{ marginTop: 40 }}>
      <Typography.Title level={3}>Single sign-on</Typography.Title>
      <p>
        Members whose address is in one of these domains sign in through the provider only; their other sign-ins end at
        once.
      </p>
      <ProblemAlert error={error} onClose={() => setError(null)} />
      {saved && <Alert type="success" showIcon message="Saved" style={{ marginBottom: 16 }} />}
      <Form
        form={form}
        layout="vertical"
        initialValues={{ provider: providers[0]?.name, domains: [] }}
        onFinish={async (v: SsoRule) => {
          setError(null);
          setSaved(false);
          try {
            setRule(await api.put<SsoRule>(`/api/v1/workspaces/${ws.id}/sso`, v));
            setSaved(true);
          } catch (e) {
            setError(e);
          }
        }}
      >
        <Form.Item name="provider" label="Provider">
          <Select options={providers.map((p) => ({ value: p.name, label: p.display_name }))} />
        </Form.Item>
        <Form.Item name="domains" label="E-mail domains" rules={[{ required: true, message: "At least one domain" }]}>
          <Select mode="tags" tokenSeparators={[",", " "]} placeholder="example.com" aria-label="E-mail domains" />
        </Form.Item>
        <Space>
          <Button type="primary" htmlType="submit">
            Require single sign-on
          </Button>
          {rule && (
            <Button
              onClick={async () => {
                setError(null);
                try {
                  await api.del(`/api/v1/workspaces/${ws.id}/sso`);
                  setRule(null);
                  setSaved(false);
                  form.setFieldsValue({ domains: [] });
                } catch (e) {
                  setError(e);
                }
              }}
            >
              Lift the rule
            </Button>
          )}
        </Space>
      </Form>
    </div>
  );
}
