import { useState } from "react";
import { Link, useNavigate } from "react-router-dom";
import { Button, Card, Form, Input, List, Space, Tag, Typography } from "antd";
import { api } from "../lib/api";
import { useLoad } from "../lib/hooks";
import type { Workspace } from "../lib/types";
import { ProblemAlert } from "../components/ProblemAlert";

export function Workspaces({ onChange }: { onChange: () => void }) {
  const list = useLoad(() => api.get<{ items: Workspace[] }>("/api/v1/workspaces?limit=100"), []);
  const [error, setError] = useState<unknown>(null);
  const [form] = Form.useForm();
  const navigate = useNavigate();
  return (
    <>
      <Typography.Title level={2}>Workspaces</Typography.Title>
      <ProblemAlert error={list.error || error} />
      <Card title="New workspace" style={{ maxWidth: 560, marginBottom: 24 }}>
        <Form
          form={form}
          layout="inline"
          onFinish={async (v: { name: string }) => {
            setError(null);
            try {
              const w = await api.post<Workspace>("/api/v1/workspaces", { name: v.name });
              form.resetFields();
              onChange();
              navigate(`/w/${w.id}`);
            } catch (e) {
              setError(e);
            }
          }}
        >
          <Form.Item name="name" label="Name" rules={[{ required: true, message: "A name" }]}>
            <Input placeholder="Product team" />
          </Form.Item>
          <Button type="primary" htmlType="submit">
            Create workspace
          </Button>
        </Form>
      </Card>
      <List
        loading={list.loading}
        bordered
        style={{ maxWidth: 760 }}
        locale={{ emptyText: "No workspace yet: create one, or ask a colleague to add you to theirs." }}
        dataSource={list.data?.items ?? []}
        renderItem={(w) => (
          <List.Item>
            <Space>
              <Link to={`/w/${w.id}`}>{w.name}</Link>
              <Tag>{w.role}</Tag>
            </Space>
          </List.Item>
        )}
      />
    </>
  );
}
