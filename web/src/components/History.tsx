import { useState } from "react";
import { Alert, Button, Drawer, Empty, Form, Input, List, Popconfirm, Space, Spin, Tag, Typography } from "antd";
import { api } from "../lib/api";
import { useLoad } from "../lib/hooks";
import type { Member, Page } from "../lib/types";
import { ProblemAlert } from "./ProblemAlert";

export interface VersionView {
  id: number;
  kind: "auto" | "write" | "restore" | "named";
  name: string | null;
  authors: number[];
  created_by: number | null;
  created_at: string;
  size: number;
  added: number;
  removed: number;
  restored_from: number | null;
}

interface Hunk {
  op: "equal" | "insert" | "delete";
  text: string;
  length: number;
  elided?: number;
}

interface VersionDiff {
  hunks: Hunk[];
  added: number;
  removed: number;
  blocks: boolean;
}

const KIND: Record<VersionView["kind"], string> = {
  auto: "Edits",
  write: "Written",
  restore: "Restored",
  named: "Named",
};

/** What a version's diff against the document now looks like: kept text grey, taken out struck through, put in green. */
function DiffText({ diff }: { diff: VersionDiff }) {
  if (diff.hunks.every((h) => h.op === "equal")) return <Typography.Text type="secondary">Same as now.</Typography.Text>;
  return (
    <pre aria-label="Differences" style={{ whiteSpace: "pre-wrap", fontFamily: "inherit", margin: 0, maxHeight: "50vh", overflow: "auto" }}>
      {diff.hunks.map((h, i) => {
        if (h.op === "insert") return <ins key={i} style={{ background: "#d9f7be", textDecoration: "none" }}>{h.text}</ins>;
        if (h.op === "delete") return <del key={i} style={{ background: "#ffccc7" }}>{h.text}</del>;
        if (h.elided) {
          const half = Math.floor(h.text.length / 2);
          return (
            <span key={i} style={{ color: "#8c8c8c" }}>
              {h.text.slice(0, half)}
              <Tag style={{ margin: "0 4px" }}>… {h.elided} characters …</Tag>
              {h.text.slice(half)}
            </span>
          );
        }
        return <span key={i} style={{ color: "#8c8c8c" }}>{h.text}</span>;
      })}
    </pre>
  );
}

/** A document's versions: what each changed against now, saving one by name, restoring one. */
export function History({ docId, canEdit, members, onRestored }: {
  docId: number;
  canEdit: boolean;
  members: Member[];
  onRestored: () => void;
}) {
  const [open, setOpen] = useState(false);
  const [picked, setPicked] = useState<VersionView | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const [form] = Form.useForm();
  const versions = useLoad(
    () => (open ? api.get<Page<VersionView>>(`/api/v1/documents/${docId}/versions?limit=100`) : Promise.resolve(null)),
    [docId, open],
  );
  const diff = useLoad(
    () => (picked ? api.get<VersionDiff>(`/api/v1/documents/${docId}/versions/${picked.id}/diff?against=current`) : Promise.resolve(null)),
    [docId, picked?.id],
  );
  const nameOf = (id: number) => members.find((m) => m.user_id === id)?.display_name ?? "Someone";
  const run = async (work: () => Promise<void>) => {
    setBusy(true);
    setError(null);
    try {
      await work();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  return (
    <>
      <Button onClick={() => setOpen(true)}>History</Button>
      <Drawer title="History" open={open} onClose={() => setOpen(false)} width={560} destroyOnClose>
        <ProblemAlert error={error || versions.error} onClose={() => setError(null)} />
        {canEdit && (
          <Form
            form={form}
            layout="inline"
            style={{ marginBottom: 16 }}
            onFinish={(v: { name: string }) =>
              run(async () => {
                await api.post(`/api/v1/documents/${docId}/versions`, { name: v.name });
                form.resetFields();
                versions.reload();
              })
            }
          >
            <Form.Item name="name" rules={[{ required: true, whitespace: true, max: 100, message: "A name, up to 100 characters" }]}>
              <Input placeholder="Name this version" aria-label="Version name" />
            </Form.Item>
            <Button htmlType="submit" loading={busy}>
              Save version
            </Button>
          </Form>
        )}
        {!versions.data ? (
          <Spin aria-label="Loading" />
        ) : versions.data.items.length === 0 ? (
          <Empty description="No versions yet" />
        ) : (
          <List
            size="small"
            dataSource={versions.data.items}
            renderItem={(v) => (
              <List.Item
                style={{ cursor: "pointer", background: picked?.id === v.id ? "#f0f5ff" : undefined }}
                onClick={() => setPicked(v)}
                aria-label={`Version ${v.name ?? KIND[v.kind]} of ${new Date(v.created_at).toLocaleString()}`}
              >
                <Space direction="vertical" size={0} style={{ width: "100%" }}>
                  <Space>
                    <Typography.Text strong>{v.name ?? KIND[v.kind]}</Typography.Text>
                    <Typography.Text type="secondary">{new Date(v.created_at).toLocaleString()}</Typography.Text>
                  </Space>
                  <Typography.Text type="secondary">
                    {v.authors.map(nameOf).join(", ") || "—"} · <span style={{ color: "#389e0d" }}>+{v.added}</span>{" "}
                    <span style={{ color: "#cf1322" }}>−{v.removed}</span>
                  </Typography.Text>
                </Space>
              </List.Item>
            )}
          />
        )}
        {picked && (
          <div style={{ marginTop: 16 }}>
            <Typography.Title level={5}>From now to this version</Typography.Title>
            {diff.error ? <ProblemAlert error={diff.error} /> : diff.data ? <DiffText diff={diff.data} /> : <Spin aria-label="Loading" />}
            {canEdit && (
              <Popconfirm
                title="Restore this version for everyone?"
                description="It becomes a new change; nothing of the history is lost."
                okText="Restore"
                onConfirm={() =>
                  run(async () => {
                    await api.post(`/api/v1/documents/${docId}/versions/${picked.id}/restore`);
                    setPicked(null);
                    versions.reload();
                    onRestored();
                  })
                }
              >
                <Button type="primary" style={{ marginTop: 12 }} loading={busy}>
                  Restore this version
                </Button>
              </Popconfirm>
            )}
            {!canEdit && <Alert type="info" showIcon style={{ marginTop: 12 }} message="Viewers can read versions; editors restore them." />}
          </div>
        )}
      </Drawer>
    </>
  );
}
