import { useEffect } from "react";
import { Badge, Card, Descriptions, Table, Typography } from "antd";
import { api } from "../lib/api";
import { useLoad } from "../lib/hooks";
import type { ClusterView } from "../lib/types";
import { ProblemAlert } from "../components/ProblemAlert";

/** The cluster as the node serving this page sees it, refreshed every 5 s: every live node
 * with the sessions, editor connections and documents its last heartbeat reported. */
export function Cluster() {
  const c = useLoad(() => api.get<ClusterView>("/api/v1/cluster"), []);
  useEffect(() => {
    const t = setInterval(c.reload, 5_000);
    return () => clearInterval(t);
  }, [c.reload]);
  return (
    <>
      <Typography.Title level={2}>Cluster</Typography.Title>
      <ProblemAlert error={c.error} />
      {c.data && (
        <>
          <Card style={{ marginBottom: 16 }}>
            <Descriptions column={1} size="small">
              <Descriptions.Item label="This node">{c.data.node}</Descriptions.Item>
              <Descriptions.Item label="Bus">
                {c.data.bus.kind}{" "}
                <Badge status={c.data.bus.connected ? "success" : "error"} text={c.data.bus.connected ? "connected" : "disconnected"} />
                {c.data.bus.reason}
              </Descriptions.Item>
            </Descriptions>
          </Card>
          <Table
            rowKey="id"
            pagination={false}
            dataSource={c.data.nodes}
            columns={[
              { title: "Node", dataIndex: "id", render: (id: string) => (id === c.data?.node ? `${id} (this node)` : id) },
              { title: "Channel sessions", dataIndex: "sessions" },
              { title: "Editor connections", dataIndex: "yjs_connections" },
              { title: "Open documents", dataIndex: "documents" },
              {
                title: "Last heard",
                dataIndex: "last_heard_ms",
                render: (ms: number, n: { id: string }) => (n.id === c.data?.node ? "now" : `${(ms / 1000).toFixed(1)} s ago`),
              },
            ]}
          />
        </>
      )}
    </>
  );
}
