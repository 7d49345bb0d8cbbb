import { useState } from "react";
import { Alert, Button, Card, Descriptions, Form, Input, Tag, Typography } from "antd";
import { api } from "../lib/api";
import { useUser } from "../lib/auth";
import { useLoad } from "../lib/hooks";
import type { User } from "../lib/types";
import { ProblemAlert } from "../components/ProblemAlert";

/** Whether the address is proved, and the link mailed again if not. */
function Verification() {
  const me = useLoad(() => api.get<User>("/api/v1/me"), []);
  const [error, setError] = useState<unknown>(null);
  const [sent, setSent] = useState(false);
  if (!me.data) return null;
  if (me.data.email_verified) return <Tag>verified</Tag>;
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

/** Who is signed in, and a new password (every other sign-in of the account ends with it). */
export function Account() {
  const user = useUser();
  const [error, setError] = useState<unknown>(null);
  const [done, setDone] = useState(false);
  const [busy, setBusy] = useState(false);
  const [form] = Form.useForm();
  if (!user) return null;
  return (
    <div style={{ maxWidth: 560 }}>
      <Typography.Title level={2}>Account</Typography.Title>
      <Descriptions column={1} size="small" style={{ marginBottom: 24 }}>
        <Descriptions.Item label="Name">{user.display_name}</Descriptions.Item>
        <Descriptions.Item label="E-mail">
          <span style={{ marginRight: 8 }}>{user.email}</span>
          <Verification />
        </Descriptions.Item>
      </Descriptions>
      <Card title="Change password">
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
          layout="vertical"
          onFinish={async (v: { current: string; next: string }) => {
            setBusy(true);
            setError(null);
            setDone(false);
            try {
              await api.post("/api/v1/me/password", { current_password: v.current, new_password: v.next });
              form.resetFields();
              setDone(true);
            } catch (e) {
              setError(e);
            } finally {
              setBusy(false);
            }
          }}
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
    </div>
  );
}
