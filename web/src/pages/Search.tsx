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
  const key = `${kind}|${q}`;
  // Later pages belong to the query they were asked for: an answer to an older query is dropped.
  const [extra, setExtra] = useState<{ key: string; items: SearchHit[]; next: string | null }>({ key: "", items: [], next: null });
  const [loadingMore, setLoadingMore] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const ask = (cursor?: string | null) =>
    api.get<SearchResults>(`/api/v1/search${qs({ q, kind: kind === "all" ? undefined : kind, limit: 20, cursor })}`);
  const first = useLoad(async () => (q.trim() ? ask() : null), [q, kind]);
  const mine = extra.key === key;
  const hits = [...(first.data?.items ?? []), ...(mine ? extra.items : [])];
  const next = mine ? extra.next : first.data?.next_cursor ?? null;
  const more = async () => {
    setLoadingMore(true);
    try {
      const r = await ask(next);
      // Stored under the query it answers: if the query changed meanwhile, it is not shown.
      setExtra((e) => ({ key, items: [...(e.key === key ? e.items : []), ...r.items], next: r.next_cursor }));
    } catch (e) {
      setError(e);
    } finally {
      setLoadingMore(false);
    }
  };
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
        <Button style={{ marginTop: 12 }} onClick={() => void more()} loading={loadingMore} disabled={loadingMore}>
          More results
        </Button>
      )}
    </>
  );
}
