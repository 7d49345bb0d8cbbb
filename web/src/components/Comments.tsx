import { useState } from "react";
import { Button, Empty, List, Mentions, Space, Tag, Typography } from "antd";
import { api } from "../lib/api";
import { useChannel, useLoad } from "../lib/hooks";
import { atLeast, type Comment, type Member, type Page, type Role } from "../lib/types";
import { ProblemAlert } from "./ProblemAlert";

function Composer({
  members,
  placeholder,
  label,
  onSend,
}: {
  members: Member[];
  placeholder: string;
  label: string;
  /** Resolves true when sent; the text stays in the box otherwise. */
  onSend: (body: string) => Promise<boolean>;
}) {
  const [body, setBody] = useState("");
  const [busy, setBusy] = useState(false);
  const send = async () => {
    if (!body.trim()) return;
    setBusy(true);
    try {
      if (await onSend(body.trim())) setBody("");
    } finally {
      setBusy(false);
    }
  };
  return (
    <Space.Compact style={{ width: "100%" }} direction="vertical">
      <Mentions
        aria-label={label}
        data-testid="comment-input"
        rows={2}
        value={body}
        onChange={setBody}
        placeholder={placeholder}
        prefix="@"
        options={members.map((m) => ({
          value: m.email,
          key: String(m.user_id),
          label: `${m.display_name} (${m.email})`,
        }))}
        onKeyDown={(e) => {
          if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) void send();
        }}
      />
      <Button type="primary" onClick={() => void send()} loading={busy} disabled={!body.trim()} style={{ alignSelf: "flex-end", marginTop: 6 }}>
        {label}
      </Button>
    </Space.Compact>
  );
}

/** A document's comment threads, live over the `document:` channel. */
export function Comments({ docId, role, members }: { docId: number; role: Role; members: Member[] }) {
  const comments = useLoad(() => api.get<Page<Comment>>(`/api/v1/documents/${docId}/comments?limit=200`), [docId]);
  const [error, setError] = useState<unknown>(null);
  const [replyTo, setReplyTo] = useState<number | null>(null);
  useChannel(
    `document:${docId}`,
    {
      event: (e: { kind: string }) => {
        if (e.kind.startsWith("comment.")) comments.reload();
      },
    },
    () => ({ presence: false }),
  );
  const names = new Map(members.map((m) => [m.user_id, m.display_name]));
  const canComment = atLeast(role, "editor");
  const all = comments.data?.items ?? [];
  const threads = all.filter((c) => c.parent_id === null);
  const replies = (id: number) => all.filter((c) => c.parent_id === id);
  const post = (body: string, parent: number | null) =>
    api
      .post(`/api/v1/documents/${docId}/comments`, parent === null ? { body } : { body, parent_id: parent })
      .then(() => {
        setError(null);
        setReplyTo(null);
        comments.reload();
        return true;
      })
      .catch((e) => {
        setError(e);
        return false;
      });
  const one = (c: Comment) => (
    <div>
      <Space size={6}>
        <Typography.Text strong>{c.author_id === null ? "someone" : names.get(c.author_id) ?? `user ${c.author_id}`}</Typography.Text>
        <Typography.Text type="secondary" style={{ fontSize: 12 }}>
          {new Date(c.created_at).toLocaleString()}
        </Typography.Text>
        {c.resolved && <Tag color="green">resolved</Tag>}
        {c.anchor?.detached && <Tag title="The text it was pinned to was deleted">detached</Tag>}
      </Space>
      {c.anchor && (
        <blockquote style={{ margin: "4px 0", paddingLeft: 8, borderLeft: "3px solid #ffd666", color: "#595959" }}>
          {c.anchor.detached ? <s>{c.anchor.quote}</s> : c.anchor.text}
        </blockquote>
      )}
      <div style={{ whiteSpace: "pre-wrap" }} data-testid="comment-body">
        {c.body}
      </div>
    </div>
  );
  return (
    <section>
      <Typography.Title level={3} style={{ fontSize: 18 }}>
        Comments
      </Typography.Title>
      <ProblemAlert error={comments.error || error} onClose={() => setError(null)} />
      {canComment && (
        <div style={{ marginBottom: 16 }}>
          <Composer members={members} label="Comment" placeholder="Write a comment; @ to mention" onSend={(b) => post(b, null)} />
        </div>
      )}
      {comments.data?.next_cursor && (
        <Typography.Paragraph type="secondary">Showing the first 200 comments.</Typography.Paragraph>
      )}
      {threads.length === 0 && !comments.loading ? (
        <Empty description="No comments yet" />
      ) : (
        <List
          dataSource={threads}
          renderItem={(c) => (
            <List.Item style={{ display: "block" }} data-testid="thread">
              {one(c)}
              <div style={{ marginLeft: 16, marginTop: 8, borderLeft: "2px solid #eee", paddingLeft: 10 }}>
                {replies(c.id).map((r) => (
                  <div key={r.id} style={{ marginBottom: 8 }}>
                    {one(r)}
                  </div>
                ))}
                {canComment && (
                  <Space size={4}>
                    <Button size="small" type="link" onClick={() => setReplyTo(replyTo === c.id ? null : c.id)}>
                      Reply
                    </Button>
                    <Button
                      size="small"
                      type="link"
                      onClick={() =>
                        api
                          .patch(`/api/v1/comments/${c.id}`, { resolved: !c.resolved })
                          .then(comments.reload)
                          .catch(setError)
                      }
                    >
                      {c.resolved ? "Reopen" : "Resolve"}
                    </Button>
                  </Space>
                )}
                {replyTo === c.id && (
                  <Composer members={members} label="Reply" placeholder="Reply; @ to mention" onSend={(b) => post(b, c.id)} />
                )}
              </div>
            </List.Item>
          )}
        />
      )}
    </section>
  );
}
