import { lazy, Suspense, useEffect, useState } from "react";
import { Link, Route, Routes, useLocation, useNavigate } from "react-router-dom";
import { Avatar, Badge, Button, Dropdown, Input, Layout, Menu, Spin, Tooltip, Typography } from "antd";
import { useUser } from "../lib/auth";
import { api, signOut } from "../lib/api";
import { useLoad } from "../lib/hooks";
import { onSocketStatus, realtime } from "../lib/realtime";
import type { Workspace } from "../lib/types";
import { Bell } from "../components/Bell";
import { Boundary } from "../components/Boundary";
import { Workspaces } from "./Workspaces";
import { WorkspacePage } from "./Workspace";
import { SearchPage } from "./Search";
import { Cluster } from "./Cluster";
import { NotificationsPage } from "./Notifications";
import { Account } from "./Account";
import { AcceptInvitation } from "./Links";
import { closeReason } from "../lib/problem";

const DocumentPage = lazy(() => import("./Document"));

export function initials(name: string): string {
  return name.split(/\s+/).filter(Boolean).slice(0, 2).map((w) => w[0]?.toUpperCase() ?? "").join("") || "?";
}

/** The realtime socket's state, shown beside the user's name. */
function SocketBadge() {
  const [state, setState] = useState<{ open: boolean; why: string | null }>({ open: false, why: null });
  useEffect(() => {
    realtime();
    return onSocketStatus((open, reason, code) =>
      setState({ open, why: open ? null : closeReason(code ?? 1006, reason ?? "") }),
    );
  }, []);
  return (
    <Tooltip title={state.open ? "Live updates are on" : state.why ?? "Connecting"}>
      <Badge
        status={state.open ? "success" : "warning"}
        text={<span style={{ color: "#fff" }}>{state.open ? "live" : "reconnecting"}</span>}
        data-testid="socket-status"
      />
    </Tooltip>
  );
}

export default function Shell() {
  const user = useUser();
  const navigate = useNavigate();
  const location = useLocation();
  const workspaces = useLoad(() => api.get<{ items: Workspace[] }>("/api/v1/workspaces?limit=100"), []);
  const [query, setQuery] = useState("");
  const selected = /^\/w\/(\d+)/.exec(location.pathname)?.[1];
  if (!user) return null;
  return (
    <Layout style={{ minHeight: "100vh" }}>
      <Layout.Header style={{ display: "flex", alignItems: "center", gap: 16, paddingInline: 20 }}>
        <Link to="/" style={{ color: "#fff", fontWeight: 700, fontSize: 20 }}>
          Stoa
        </Link>
        <form
          role="search"
          style={{ flex: 1, maxWidth: 420 }}
          // Input.Search navigates on Enter and on its button: the form only keeps the page.
          onSubmit={(e) => e.preventDefault()}
        >
          <Input.Search
            aria-label="Search all workspaces"
            placeholder="Search documents and comments"
            value={query}
            onChange={(e) => setQuery(e.target.value)}
            onSearch={(v) => v.trim() && navigate(`/search?q=${encodeURIComponent(v.trim())}`)}
          />
        </form>
        <div style={{ flex: 1 }} />
        <SocketBadge />
        <Bell userId={user.id} />
        <Dropdown
          trigger={["click"]}
          menu={{
            items: [
              { key: "who", label: user.email, disabled: true },
              { key: "account", label: <Link to="/account">Account</Link> },
              { key: "cluster", label: <Link to="/cluster">Cluster</Link> },
              { key: "runbooks", label: <Link to="/runbooks">Runbooks</Link> },
              { key: "out", label: "Sign out", onClick: () => void signOut().then(() => navigate("/signin")) },
            ],
          }}
        >
          <Button type="text" style={{ color: "#fff" }}>
            <Avatar size="small" style={{ background: "#2b5a8a", marginRight: 8 }}>
              {initials(user.display_name)}
            </Avatar>
            {user.display_name}
          </Button>
        </Dropdown>
      </Layout.Header>
      <Layout>
        <Layout.Sider width={220} theme="light" breakpoint="md" collapsedWidth={0}>
          <nav aria-label="Workspaces">
            <Typography.Text type="secondary" style={{ display: "block", padding: "16px 24px 4px" }}>
              Workspaces
            </Typography.Text>
            <Menu
              mode="inline"
              selectedKeys={selected ? [selected] : []}
              items={(workspaces.data?.items ?? []).map((w) => ({
                key: String(w.id),
                label: <Link to={`/w/${w.id}`}>{w.name}</Link>,
              }))}
            />
            <div style={{ padding: "8px 24px" }}>
              <Link to="/">All workspaces</Link>
            </div>
          </nav>
        </Layout.Sider>
        <Layout.Content style={{ padding: 24, background: "#fff" }}>
          <main>
            <Boundary key={location.pathname}>
            <Suspense fallback={<Spin aria-label="Loading" />}>
              <Routes>
                <Route path="/" element={<Workspaces onChange={workspaces.reload} />} />
                <Route path="/w/:wid/d/:did" element={<DocumentPage />} />
                <Route path="/w/:wid/*" element={<WorkspacePage onChange={workspaces.reload} />} />
                <Route path="/search" element={<SearchPage />} />
                <Route path="/notifications" element={<NotificationsPage />} />
                <Route path="/cluster" element={<Cluster />} />
                <Route path="/account" element={<Account />} />
                <Route path="/invitations/accept" element={<AcceptInvitation />} />
                <Route path="*" element={<Typography.Title level={2}>No such page</Typography.Title>} />
              </Routes>
            </Suspense>
            </Boundary>
          </main>
        </Layout.Content>
      </Layout>
    </Layout>
  );
}
