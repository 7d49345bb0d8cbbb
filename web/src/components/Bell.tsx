import { useEffect, useState } from "react";
import { Link } from "react-router-dom";
import { BellOutlined } from "@ant-design/icons";
import { Badge, Button, Empty, List, Popover, Space, Typography } from "antd";
import { api } from "../lib/api";
import { useChannel, useLoad } from "../lib/hooks";
import type { Notification, Page } from "../lib/types";
import { markRead, onUnread } from "../lib/unread";
import { ProblemAlert } from "./ProblemAlert";

export function notificationText(n: Notification): string {
  const body = typeof n.data.body === "string" ? n.data.body : "";
  const quote = body ? `: “${body.length > 80 ? `${body.slice(0, 80)}…` : body}”` : "";
  switch (n.kind) {
    case "mention": return `You were mentioned${quote}`;
    case "reply": return `A reply to your comment${quote}`;
    case "member_added": return "You were added to a workspace";
    case "role_changed": return `Your role changed to ${String(n.data.role ?? "")}`;
    default: return n.kind;
  }
}

export function notificationLink(n: Notification): string {
  const doc = (n.data.document_id as number | undefined) ?? null;
  return doc ? `/w/${n.workspace_id}/d/${doc}` : `/w/${n.workspace_id}`;
}

/** The unread count, live over the `user:` channel, and the latest notifications. */
export function Bell({ userId }: { userId: number }) {
  const [unread, setUnread] = useState<number | null>(null);
  const [open, setOpen] = useState(false);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => onUnread(setUnread), []);
  const list = useLoad(() => api.get<Page<Notification>>("/api/v1/notifications?limit=10"), []);
  useChannel(
    `user:${userId}`,
    {
      notification: (p: { unread_count?: number }) => {
        if (typeof p.unread_count === "number") setUnread(p.unread_count);
        list.reload();
      },
    },
    () => ({}),
    (reply: { unread_count?: number }) => {
      if (typeof reply.unread_count === "number") setUnread(reply.unread_count);
    },
  );
  const read = async (path: string) => {
    try {
      await markRead(path);
      setError(null);
      list.reload();
    } catch (e) {
      setError(e);
    }
  };
  const markAll = () => read("/api/v1/notifications/read-all");
  const content = (
    <div style={{ width: 340 }}>
      <Space style={{ justifyContent: "space-between", width: "100%", marginBottom: 8 }}>
        <Typography.Text strong>Notifications</Typography.Text>
        <Button size="small" onClick={() => void markAll()} disabled={!unread}>
          Mark all read
        </Button>
      </Space>
      <ProblemAlert error={error || list.error} onClose={() => setError(null)} />
      {list.data && list.data.items.length === 0 ? (
        <Empty description="Nothing yet" />
      ) : (
        <List
          size="small"
          dataSource={list.data?.items ?? []}
          renderItem={(n) => (
            <List.Item
              actions={
                n.read
                  ? []
                  : [
                      <Button
                        key="read"
                        size="small"
                        type="link"
                        onClick={() => void read(`/api/v1/notifications/${n.id}/read`)}
                      >
                        Mark read
                      </Button>,
                    ]
              }
            >
              <Link to={notificationLink(n)} onClick={() => setOpen(false)} style={{ fontWeight: n.read ? 400 : 600 }}>
                {notificationText(n)}
              </Link>
            </List.Item>
          )}
        />
      )}
      <Link to="/notifications" onClick={() => setOpen(false)}>
        All notifications
      </Link>
    </div>
  );
  return (
    <Popover content={content} trigger="click" open={open} onOpenChange={setOpen} placement="bottomRight">
      <Button type="text" aria-label={unread === null ? "Notifications" : `Notifications, ${unread} unread`} data-testid="bell" style={{ color: "#fff" }}>
        <Badge count={unread ?? 0} size="small" data-testid="unread-count" offset={[6, -2]}>
          <BellOutlined style={{ color: "#fff", fontSize: 18 }} aria-hidden />
        </Badge>
      </Button>
    </Popover>
  );
}
