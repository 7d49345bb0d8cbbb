import { useMemo, useState } from "react";
import { Button, Card, Select, Space, Table, Typography } from "antd";
import { api, download, qs } from "../lib/api";
import { useLoad } from "../lib/hooks";
import type { ActivityReport, BucketUnit, DocumentRow, MemberRow, Workspace } from "../lib/types";
import { ProblemAlert } from "../components/ProblemAlert";

const RANGE_DAYS: Record<BucketUnit, number> = { hour: 2, day: 30, week: 182 };

function zones(): string[] {
  const intl = Intl as unknown as { supportedValuesOf?: (k: string) => string[] };
  const all = intl.supportedValuesOf?.("timeZone") ?? [];
  return all.includes("UTC") ? all : ["UTC", ...all];
}

/** Bars of activity per bucket, drawn as SVG: one bar per bucket the API returns. */
export function ActivityChart({ report }: { report: ActivityReport }) {
  const w = 760;
  const h = 220;
  const pad = { l: 40, b: 36, t: 10, r: 10 };
  const max = Math.max(1, ...report.buckets.map((b) => b.total));
  const n = Math.max(1, report.buckets.length);
  const bw = (w - pad.l - pad.r) / n;
  const fmt = (s: string) => {
    const d = new Date(s);
    return report.bucket === "hour"
      ? d.toLocaleTimeString([], { hour: "2-digit", timeZone: report.tz })
      : d.toLocaleDateString([], { month: "short", day: "numeric", timeZone: report.tz });
  };
  const every = Math.ceil(n / 12);
  return (
    <svg
      viewBox={`0 0 ${w} ${h}`}
      width="100%"
      role="img"
      aria-label={`Activity per ${report.bucket}: ${report.total} events in ${report.buckets.length} buckets`}
      data-testid="activity-chart"
    >
      <line x1={pad.l} y1={h - pad.b} x2={w - pad.r} y2={h - pad.b} stroke="#999" />
      <text x={pad.l - 6} y={pad.t + 10} textAnchor="end" fontSize="11" fill="#555">
        {max}
      </text>
      <text x={pad.l - 6} y={h - pad.b} textAnchor="end" fontSize="11" fill="#555">
        0
      </text>
      {report.buckets.map((b, i) => {
        const bh = ((h - pad.t - pad.b) * b.total) / max;
        const x = pad.l + i * bw;
        return (
          <g key={b.start} data-testid="bucket" data-total={b.total}>
            <rect x={x + 1} y={h - pad.b - bh} width={Math.max(1, bw - 2)} height={bh} fill="#1f4e79">
              <title>{`${fmt(b.start)}: ${b.total}`}</title>
            </rect>
            {i % every === 0 && (
              <text x={x + bw / 2} y={h - pad.b + 14} textAnchor="middle" fontSize="10" fill="#555">
                {fmt(b.start)}
              </text>
            )}
          </g>
        );
      })}
    </svg>
  );
}

export default function Reports({ ws, nameOf }: { ws: Workspace; nameOf: (id: number | null) => string }) {
  const [bucket, setBucket] = useState<BucketUnit>("day");
  const [tz, setTz] = useState(() => Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC");
  const [error, setError] = useState<unknown>(null);
  const range = useMemo(() => {
    const to = new Date();
    const from = new Date(to.getTime() - RANGE_DAYS[bucket] * 86_400_000);
    return { from: from.toISOString(), to: to.toISOString() };
  }, [bucket]);
  const base = `/api/v1/workspaces/${ws.id}/reports`;
  const activityQuery = qs({ bucket, tz, from: range.from, to: range.to });
  const activity = useLoad(() => api.get<ActivityReport>(`${base}/activity${activityQuery}`), [activityQuery]);
  const members = useLoad(() => api.get<{ items: MemberRow[] }>(`${base}/members?limit=200`), [ws.id]);
  const documents = useLoad(() => api.get<{ items: DocumentRow[] }>(`${base}/documents?limit=200`), [ws.id]);
  const csv = (path: string, name: string) => download(path, name).catch(setError);
  const time = (s: string | null) => (s ? new Date(s).toLocaleString() : "—");
  return (
    <Space direction="vertical" size={24} style={{ width: "100%" }}>
      <ProblemAlert error={activity.error || members.error || documents.error || error} onClose={() => setError(null)} />
      <Card
        title="Activity over time"
        extra={
          <Space wrap>
            <Select
              aria-label="Bucket"
              value={bucket}
              onChange={setBucket}
              style={{ width: 110 }}
              options={[
                { value: "hour", label: "Hourly" },
                { value: "day", label: "Daily" },
                { value: "week", label: "Weekly" },
              ]}
            />
            <Select aria-label="Time zone" showSearch value={tz} onChange={setTz} style={{ width: 220 }} options={zones().map((z) => ({ value: z, label: z }))} />
            <Button onClick={() => csv(`${base}/activity${activityQuery}&format=csv`, `activity.csv`)}>Download CSV</Button>
          </Space>
        }
      >
        {activity.data && <ActivityChart report={activity.data} />}
      </Card>
      <Card
        title="Members"
        extra={<Button onClick={() => csv(`${base}/members?format=csv&limit=1000`, "members.csv")}>Download CSV</Button>}
      >
        <Table<MemberRow>
          rowKey="user_id"
          size="small"
          loading={members.loading && !members.data}
          dataSource={members.data?.items ?? []}
          pagination={{ pageSize: 20, hideOnSinglePage: true }}
          columns={[
            { title: "Name", dataIndex: "display_name", sorter: (a, b) => a.display_name.localeCompare(b.display_name) },
            { title: "Role", dataIndex: "role", sorter: (a, b) => a.role.localeCompare(b.role) },
            { title: "Events", dataIndex: "events", sorter: (a, b) => a.events - b.events, defaultSortOrder: "descend" },
            { title: "Edits", dataIndex: "edits", sorter: (a, b) => a.edits - b.edits },
            { title: "Comments", dataIndex: "comments", sorter: (a, b) => a.comments - b.comments },
            { title: "Documents created", dataIndex: "documents_created", sorter: (a, b) => a.documents_created - b.documents_created },
            { title: "Last active", dataIndex: "last_active", render: time, sorter: (a, b) => (a.last_active ?? "").localeCompare(b.last_active ?? "") },
          ]}
        />
      </Card>
      <Card
        title="Documents"
        extra={<Button onClick={() => csv(`${base}/documents?format=csv&limit=1000`, "documents.csv")}>Download CSV</Button>}
      >
        <Table<DocumentRow>
          rowKey="document_id"
          size="small"
          loading={documents.loading && !documents.data}
          dataSource={documents.data?.items ?? []}
          pagination={{ pageSize: 20, hideOnSinglePage: true }}
          columns={[
            { title: "Title", dataIndex: "title", sorter: (a, b) => a.title.localeCompare(b.title) },
            { title: "Created by", dataIndex: "created_by", render: (id: number | null) => nameOf(id) },
            { title: "Edits", dataIndex: "edits", sorter: (a, b) => a.edits - b.edits, defaultSortOrder: "descend" },
            { title: "Editors", dataIndex: "editors", sorter: (a, b) => a.editors - b.editors },
            { title: "Comments", dataIndex: "comments", sorter: (a, b) => a.comments - b.comments },
            { title: "Last activity", dataIndex: "last_activity", render: time, sorter: (a, b) => (a.last_activity ?? "").localeCompare(b.last_activity ?? "") },
          ]}
        />
      </Card>
      <Typography.Text type="secondary">Times are shown in your browser's time zone; the chart's buckets follow the zone chosen above.</Typography.Text>
    </Space>
  );
}
