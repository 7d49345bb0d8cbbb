// The shapes the REST API answers (see /api/openapi.json).

export type Role = "viewer" | "editor" | "admin" | "owner";

export interface User {
  id: number;
  email: string;
  display_name: string;
  email_verified: boolean;
  created_at: string;
}

export interface NotificationPreferences {
  email_mentions: boolean;
  email_replies: boolean;
  email_membership: boolean;
}

/** `GET /api/v1/me`: the account and its preferences. */
export interface Account extends User {
  notification_preferences: NotificationPreferences;
  /** False for accounts of single sign-on or a directory. */
  has_password?: boolean;
  /** How this sign-in began: `password`, `ldap` or `oidc:<provider>`. */
  signed_in_with?: string;
}

export interface ApiToken {
  id: number;
  name: string;
  scopes: string[];
  workspace_id: number | null;
  expires_at: string | null;
  last_used_at: string | null;
  created_at: string;
}

export interface TokenResponse {
  access_token: string;
  token_type: string;
  expires_in: number;
  refresh_token: string;
  user: User;
}

export interface Workspace {
  id: number;
  name: string;
  slug: string;
  role: Role;
  last_offset: number;
  created_at: string;
  updated_at: string;
}

export interface Member {
  workspace_id: number;
  user_id: number;
  email: string;
  display_name: string;
  role: Role;
  joined_at: string;
  updated_at: string;
}

export interface Invitation {
  id: number;
  workspace_id: number;
  email: string;
  role: Role;
  invited_by: number | null;
  expires_at: string;
  expired: boolean;
  sent_at: string;
  created_at: string;
}

export interface DocumentView {
  id: number;
  workspace_id: number;
  title: string;
  content?: string | null;
  version: number;
  created_by: number | null;
  updated_by: number | null;
  created_at: string;
  updated_at: string;
}

export interface Comment {
  id: number;
  workspace_id: number;
  document_id: number;
  parent_id: number | null;
  author_id: number | null;
  body: string;
  mentions: number[];
  resolved: boolean;
  resolved_at: string | null;
  resolved_by: number | null;
  created_at: string;
  updated_at: string;
  /** The text the comment is pinned to, where it is now. */
  anchor?: { start: string; end: string; quote: string; text: string; detached: boolean };
}

export interface StoaEvent {
  offset: number;
  kind: string;
  actor: number | null;
  subject: string;
  data: Record<string, unknown>;
  at: string;
}

export interface EventList {
  items: StoaEvent[];
  next_since: number;
  latest_offset: number;
}

export interface Notification {
  id: number;
  kind: string;
  workspace_id: number;
  event_offset: number;
  actor: number | null;
  subject: string;
  data: Record<string, unknown>;
  read: boolean;
  created_at: string;
  read_at: string | null;
}

export interface Page<T> {
  items: T[];
  next_cursor: string | null;
}

export interface SearchHit {
  kind: "document" | "comment";
  id: number;
  workspace_id: number;
  document_id: number;
  title: string;
  title_html: string;
  snippet: string | null;
  author_id: number | null;
  updated_at: string;
  score: number;
}

export interface SearchResults extends Page<SearchHit> {
  backend: string;
}

export type BucketUnit = "hour" | "day" | "week";

export interface ActivityBucket {
  start: string;
  end: string;
  total: number;
  by_kind: Record<string, number>;
}

export interface ActivityReport {
  workspace_id: number;
  bucket: BucketUnit;
  tz: string;
  from: string;
  to: string;
  total: number;
  kinds: string[];
  buckets: ActivityBucket[];
}

export interface MemberRow {
  user_id: number;
  display_name: string;
  email: string;
  role: Role;
  joined_at: string;
  events: number;
  documents_created: number;
  documents_edited: number;
  edits: number;
  comments: number;
  last_active: string | null;
}

export interface DocumentRow {
  document_id: number;
  title: string;
  version: number;
  created_by: number | null;
  created_at: string;
  edits: number;
  comments: number;
  editors: number;
  last_activity: string | null;
}

export interface ClusterView {
  node: string;
  bus: { kind: string; connected: boolean; reason?: string | null };
  nodes: { id: string; last_heard_ms: number; sessions: number; yjs_connections: number; documents: number }[];
}

export const ROLE_RANK: Record<Role, number> = { viewer: 0, editor: 1, admin: 2, owner: 3 };

export function atLeast(role: Role | undefined, needed: Role): boolean {
  return role !== undefined && ROLE_RANK[role] >= ROLE_RANK[needed];
}
