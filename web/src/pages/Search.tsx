import { useState } from "react";
import { Link, useSearchParams } from "react-router-dom";
import { Button, Input, List, Segmented, Space, Tag, Typography } from "antd";
import { api, qs } from "../lib/api";
import { useLoad } from "../lib/hooks";
import type { SearchHit, SearchResults } from "../lib/types";
import { ProblemAlert } from "../components/ProblemAlert";

type Kind = "all" | "document" | "comment";

/** Search across every workspace of the user: the server's highlighted snippets (escaped HTML with <mark>). */
export function SearchPage() {
  const [params, setParams] = useSearchParams();
  const q = params.get("q") ?? "";
  const kind = (params.get("kind") as Kind | null) ?? "all";
  const [pages, setPages] = useState<SearchHit[][]>([]);
  const [next, setNext] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(null);
  const first = useLoad(async () => {
    if (!q.trim()) return null;
    const r = await api.get<SearchResults>(`/api/v1/search${qs({ q, kind: kind === "all" ? undefined : kind, limit: 20 })}`);
    setPages([r.items]);
    setNext(r.next_cursor);
    return r;
  }, [q, kind]);
  const more = async () => {
    try {
      const r = await api.get<SearchResults>(
        `/api/v1/search${qs({ q, kind: kind === "all" ? undefined : kind, limit: 20, cursor: next })}`,
      );
      setPages((p) => [...p, r.items]);
      setNext(r.next_cursor);
    } catch (e) {
      setError(e);
    }
  };
  const hits = pages.flat();
  return (
    <>
      <Typography.Title level={2}>Search</Typography.Title>
      <Space wrap style={{ marginBottom: 16 }}>
        <Input.Search
          aria-label="Search words"
          defaultValue={q}
          key={q}
          enterButton="Search"
          style={{ width: 360 }}
          onSearch={(v) => setParams({ q: v, kind })}
        />
        <Segmented
          aria-label="Kind"
          value={kind}
          onChange={(v) => setParams({ q, kind: String(v) })}
          options={[
            { value: "all", label: "All" },
            { value: "document", label: "Documents" },
            { value: "comment", label: "Comments" },
          ]}
        />
      </Space>
      <ProblemAlert error={first.error || error} onClose={() => setError(null)} />
      {q && (
        <List
          data-testid="search-results"
          loading={first.loading}
          bordered
          locale={{ emptyText: `Nothing matches “${q}”` }}
          dataSource={hits}
          renderItem={(h) => (
            <List.Item className="search-hit">
              <Space direction="vertical" size={2}>
                <Space>
                  <Tag>{h.kind}</Tag>
                  <Link to={`/w/${h.workspace_id}/d/${h.document_id}`} dangerouslySetInnerHTML={{ __html: h.title_html }} />
                </Space>
                {h.snippet && <span dangerouslySetInnerHTML={{ __html: h.snippet }} />}
              </Space>
            </List.Item>
          )}
        />
      )}
      {next && (
        <Button style={{ marginTop: 12 }} onClick={() => void more()}>
          More results
        </Button>
      )}
    </>
  );
}
