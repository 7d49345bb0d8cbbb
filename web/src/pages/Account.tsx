import { useState } from "react";
import { Alert, Button, Card, Descriptions, Form, Input, Typography } from "antd";
import { api } from "../lib/api";
import { useUser } from "../lib/auth";
import { ProblemAlert } from "../components/ProblemAlert";

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
        <Descriptions.Item label="E-mail">{user.email}</Descriptions.Item>
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
