import { useState } from "react";
import { Alert, Button, Card, Checkbox, Descriptions, Form, Input, InputNumber, Popconfirm, Select, Table, Tag, Typography } from "antd";
import { api, call, signOut, ssoStartUrl } from "../lib/api";
import { useUser } from "../lib/auth";
import { useLoad } from "../lib/hooks";
import type { Account as AccountView, ApiToken, Page, User, Workspace } from "../lib/types";
import { ProblemAlert } from "../components/ProblemAlert";

/** Whether the address is proved, and the link mailed again if not. */
function Verification({ me }: { me: User }) {
  const [error, setError] = useState<unknown>(null);
  const [sent, setSent] = useState(false);
  if (me.email_verified) return <Tag>verified</Tag>;
  return (
    <>
      <Tag>not verified</Tag>
      {sent ? (
        <span role="status">A new link is on its way.</span>
      ) : (
        <Button
          size="small"
          onClick={async () => {
            setError(null);
            try {
              await api.post("/api/v1/me/verification-email");
              setSent(true);
            } catch (e) {
              setError(e);
            }
          }}
        >
          Mail the link again
        </Button>
      )}
      <ProblemAlert error={error} onClose={() => setError(null)} />
    </>
  );
}

/** A card's form: busy while it runs, its problem kept, a word when done. */
function useCardSubmit() {
  const [error, setError] = useState<unknown>(null);
  const [done, setDone] = useState(false);
  const [busy, setBusy] = useState(false);
  const submit = async (work: () => Promise<void>) => {
    setBusy(true);
    setError(null);
    setDone(false);
    try {
      await work();
      setDone(true);
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  return { error, setError, done, busy, submit };
}

function Profile({ me, onSaved }: { me: AccountView; onSaved: () => void }) {
  const { error, setError, done, busy, submit } = useCardSubmit();
  return (
    <Card title="Profile and e-mail" style={{ marginBottom: 24 }}>
      <ProblemAlert error={error} onClose={() => setError(null)} />
      {done && <Alert type="success" showIcon role="status" style={{ marginBottom: 16 }} message="Saved." />}
      <Form
        name="profile"
        layout="vertical"
        initialValues={{ name: me.display_name, ...me.notification_preferences }}
        onFinish={(v: { name: string; email_mentions: boolean; email_replies: boolean; email_membership: boolean }) =>
          submit(async () => {
            await api.patch("/api/v1/me", {
              display_name: v.name,
              notification_preferences: {
                email_mentions: Boolean(v.email_mentions),
                email_replies: Boolean(v.email_replies),
                email_membership: Boolean(v.email_membership),
              },
            });
            onSaved();
          })
        }
      >
        <Form.Item label="Display name" name="name" rules={[{ required: true, message: "The name others see" }]}>
          <Input autoComplete="name" />
        </Form.Item>
        <Typography.Paragraph style={{ marginBottom: 8 }}>Mail me about what stays unread:</Typography.Paragraph>
        <Form.Item name="email_mentions" valuePropName="checked" style={{ marginBottom: 4 }}>
          <Checkbox>mentions of me</Checkbox>
        </Form.Item>
        <Form.Item name="email_replies" valuePropName="checked" style={{ marginBottom: 4 }}>
          <Checkbox>replies to my comments</Checkbox>
        </Form.Item>
        <Form.Item name="email_membership" valuePropName="checked">
          <Checkbox>being added to a workspace, or a new role</Checkbox>
        </Form.Item>
        <Button type="primary" htmlType="submit" loading={busy}>
          Save
        </Button>
      </Form>
    </Card>
  );
}

function Password() {
  const { error, setError, done, busy, submit } = useCardSubmit();
  const [form] = Form.useForm();
  return (
    <Card title="Change password" style={{ marginBottom: 24 }}>
      <ProblemAlert error={error} onClose={() => setError(null)} />
      {done && (
        <Alert
          type="success"
          showIcon
          role="status"
          style={{ marginBottom: 16 }}
          message="Password changed. Every other sign-in of this account has been ended; this one goes on."
        />
      )}
      <Form
        form={form}
        name="password"
        layout="vertical"
        onFinish={(v: { current: string; next: string }) =>
          submit(async () => {
            await api.post("/api/v1/me/password", { current_password: v.current, new_password: v.next });
            form.resetFields();
          })
        }
      >
        <Form.Item label="Current password" name="current" rules={[{ required: true, message: "Your current password" }]}>
          <Input.Password autoComplete="current-password" />
        </Form.Item>
        <Form.Item label="New password" name="next" rules={[{ required: true, min: 8, message: "At least 8 characters" }]}>
          <Input.Password autoComplete="new-password" />
        </Form.Item>
        <Button type="primary" htmlType="submit" loading={busy}>
          Change password
        </Button>
      </Form>
    </Card>
  );
}

/** Personal API tokens: made (the secret shown once), listed, revoked. */
function Tokens() {
  const tokens = useLoad(() => api.get<Page<ApiToken>>("/api/v1/me/api-tokens"), []);
  const workspaces = useLoad(() => api.get<Page<Workspace>>("/api/v1/workspaces?limit=200"), []);
  const { error, setError, busy, submit } = useCardSubmit();
  const [secret, setSecret] = useState<string | null>(null);
  const [form] = Form.useForm();
  const names = new Map((workspaces.data?.items ?? []).map((w) => [w.id, w.name]));
  return (
    <Card title="API tokens" style={{ marginBottom: 24 }}>
      <ProblemAlert error={error || tokens.error} onClose={() => setError(null)} />
      <Typography.Paragraph>
        A token acts as you, within its scope: for scripts and services that call the API or open a socket.
      </Typography.Paragraph>
      {secret && (
        <Alert
          type="success"
          showIcon
          role="status"
          style={{ marginBottom: 16 }}
          message="Copy the token now: it is not shown again."
          description={
            <Typography.Paragraph copyable={{ text: secret }} style={{ marginBottom: 0 }}>
              <code data-testid="new-token">{secret}</code>
            </Typography.Paragraph>
          }
        />
      )}
      <Form
        form={form}
        name="token"
        layout="vertical"
        initialValues={{ scope: "read" }}
        onFinish={(v: { name: string; scope: string; workspace_id?: number; days?: number }) =>
          submit(async () => {
            const made = await api.post<ApiToken & { token: string }>("/api/v1/me/api-tokens", {
              name: v.name,
              scopes: [v.scope],
              workspace_id: v.workspace_id ?? null,
              expires_in_days: v.days ?? null,
            });
            setSecret(made.token);
            form.resetFields(["name"]);
            tokens.reload();
          })
        }
      >
        <Form.Item label="Token name" name="name" rules={[{ required: true, message: "What it is for" }]}>
          <Input placeholder="nightly export" />
        </Form.Item>
        <Form.Item label="Scope" name="scope">
          <Select
            aria-label="Scope"
            options={[
              { value: "read", label: "read: see what you see" },
              { value: "write", label: "write: and change documents and comments" },
              { value: "admin", label: "admin: and members, invitations, reports" },
            ]}
          />
        </Form.Item>
        <Form.Item label="Workspace" name="workspace_id">
          <Select
            aria-label="Workspace"
            allowClear
            placeholder="every workspace of yours"
            options={(workspaces.data?.items ?? []).map((w) => ({ value: w.id, label: w.name }))}
          />
        </Form.Item>
        <Form.Item label="Expires after (days)" name="days">
          <InputNumber min={1} max={3650} placeholder="never" style={{ width: 160 }} />
        </Form.Item>
        <Button type="primary" htmlType="submit" loading={busy}>
          Make token
        </Button>
      </Form>
      <Table<ApiToken>
        style={{ marginTop: 16 }}
        rowKey="id"
        pagination={false}
        dataSource={tokens.data?.items ?? []}
        columns={[
          { title: "Name", dataIndex: "name" },
          { title: "Scope", key: "scope", render: (_: unknown, t: ApiToken) => t.scopes.join(", ") },
          { title: "Workspace", key: "ws", render: (_: unknown, t: ApiToken) => (t.workspace_id ? names.get(t.workspace_id) ?? `#${t.workspace_id}` : "all") },
          { title: "Last used", key: "used", render: (_: unknown, t: ApiToken) => (t.last_used_at ? new Date(t.last_used_at).toLocaleString() : "never") },
          {
            title: <span className="sr-only">Actions</span>,
            key: "actions",
            render: (_: unknown, t: ApiToken) => (
              <Popconfirm
                title={`Revoke ${t.name}? What uses it stops working at once.`}
                okText="Revoke"
                okButtonProps={{ danger: true }}
                onConfirm={() => submit(async () => { await api.del(`/api/v1/me/api-tokens/${t.id}`); tokens.reload(); })}
              >
                <Button danger size="small" aria-label={`Revoke the token ${t.name}`}>
                  Revoke
                </Button>
              </Popconfirm>
            ),
          },
        ]}
      />
    </Card>
  );
}

/** The export as a file, and deletion with the password (or, without one, a fresh sign-in). */
function YourData({ me }: { me?: AccountView }) {
  const passwordless = me?.has_password === false;
  const provider = me?.signed_in_with?.startsWith("oidc:") ? me.signed_in_with.slice(5) : null;
  const { error, setError, busy, submit } = useCardSubmit();
  return (
    <Card title="Your data">
      <ProblemAlert error={error} onClose={() => setError(null)} />
      <Typography.Paragraph>
        Everything Stoa keeps that you may read about yourself, as one JSON file.
      </Typography.Paragraph>
      <Button
        style={{ marginBottom: 24 }}
        onClick={() =>
          submit(async () => {
            const res = await call<Response>("GET", "/api/v1/me/export", { raw: true });
            const url = URL.createObjectURL(await res.blob());
            const a = document.createElement("a");
            a.href = url;
            a.download = "stoa-account.json";
            document.body.appendChild(a);
            a.click();
            a.remove();
            setTimeout(() => URL.revokeObjectURL(url), 10_000);
          })
        }
      >
        Download my data
      </Button>
      <Typography.Paragraph>
        Deleting your account ends every sign-in and takes you out of every workspace. What you wrote stays, shown as
        written by “Deleted user”. It cannot be undone. Hand over the workspaces you alone own first.
      </Typography.Paragraph>
      {passwordless ? (
        <>
          <Typography.Paragraph type="secondary">
            Your account has no password: deleting it needs a sign-in from the last 10 minutes.
          </Typography.Paragraph>
          {provider && (
            <Button style={{ marginRight: 8 }} onClick={() => window.location.assign(ssoStartUrl(provider, "/account", true))}>
              Sign in again
            </Button>
          )}
          <Button
            danger
            loading={busy}
            onClick={() =>
              submit(async () => {
                await api.del("/api/v1/me", { body: {} });
                await signOut();
                window.location.assign("/signin");
              })
            }
          >
            Delete my account
          </Button>
        </>
      ) : (
        <Form
          name="deletion"
          layout="inline"
          onFinish={(v: { password: string }) =>
            submit(async () => {
              await api.del("/api/v1/me", { body: { password: v.password } });
              await signOut();
              window.location.assign("/signin");
            })
          }
        >
          <Form.Item label="Password" name="password" rules={[{ required: true, message: "Your password" }]}>
            <Input.Password autoComplete="current-password" aria-label="Password to delete the account" />
          </Form.Item>
          <Button danger htmlType="submit" loading={busy}>
            Delete my account
          </Button>
        </Form>
      )}
    </Card>
  );
}

/** Who is signed in: the profile, the password, the data. */
export function Account() {
  const user = useUser();
  const me = useLoad(() => api.get<AccountView>("/api/v1/me"), []);
  if (!user) return null;
  return (
    <div style={{ maxWidth: 560 }}>
      <Typography.Title level={2}>Account</Typography.Title>
      <Descriptions column={1} size="small" style={{ marginBottom: 24 }}>
        <Descriptions.Item label="Name">{me.data?.display_name ?? user.display_name}</Descriptions.Item>
        <Descriptions.Item label="E-mail">
          <span style={{ marginRight: 8 }}>{user.email}</span>
          {me.data && <Verification me={me.data} />}
        </Descriptions.Item>
      </Descriptions>
      {me.data && <Profile me={me.data} onSaved={me.reload} />}
      {me.data?.has_password !== false && <Password />}
      <Tokens />
      <YourData me={me.data} />
    </div>
  );
}
