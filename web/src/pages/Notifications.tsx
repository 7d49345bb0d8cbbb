import { Link } from "react-router-dom";
import { Button, List, Space, Typography } from "antd";
import { api } from "../lib/api";
import { useState } from "react";
import { useLoad } from "../lib/hooks";
import { markRead } from "../lib/unread";
import type { Notification, Page } from "../lib/types";
import { notificationLink, notificationText } from "../components/Bell";
import { ProblemAlert } from "../components/ProblemAlert";

export function NotificationsPage() {
  const list = useLoad(() => api.get<Page<Notification>>("/api/v1/notifications?limit=100"), []);
  const [error, setError] = useState<unknown>(null);
  const read = async (path: string) => {
    try {
      await markRead(path);
      setError(null);
      list.reload();
    } catch (e) {
      setError(e);
    }
  };
  return (
    <>
      <Space style={{ justifyContent: "space-between", width: "100%" }}>
        <Typography.Title level={2}>Notifications</Typography.Title>
        <Button onClick={() => void read("/api/v1/notifications/read-all")}>Mark all read</Button>
      </Space>
      <ProblemAlert error={error || list.error} onClose={() => setError(null)} />
      <List
        bordered
        loading={list.loading}
        dataSource={list.data?.items ?? []}
        locale={{ emptyText: "No notifications" }}
        renderItem={(n) => (
          <List.Item
            actions={n.read ? [] : [<Button key="r" size="small" onClick={() => void read(`/api/v1/notifications/${n.id}/read`)}>Mark read</Button>]}
          >
            <Space direction="vertical" size={0}>
              <Link to={notificationLink(n)} style={{ fontWeight: n.read ? 400 : 600 }}>
                {notificationText(n)}
              </Link>
              <Typography.Text type="secondary" style={{ fontSize: 12 }}>
                {new Date(n.created_at).toLocaleString()}
              </Typography.Text>
            </Space>
          </List.Item>
        )}
      />
    </>
  );
}
