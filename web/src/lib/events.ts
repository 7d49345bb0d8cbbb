import type { StoaEvent } from "./types";

/** One line for an event of the log, as the activity feed shows it. */
export function eventText(e: StoaEvent, nameOf: (id: number | null) => string): string {
  const d = e.data;
  // Changes made by the product that Stoa is built into have no actor of their own.
  const grant = typeof d.granted_by === "string" ? d.granted_by : "";
  const system = grant.startsWith("claims:ldap:")
    ? "The directory's groups"
    : grant.startsWith("claims:")
      ? "The product's sign-in"
      : grant === "directory"
        ? "The product's directory"
        : null;
  const who = e.actor === null && system ? system : nameOf(e.actor);
  const title = typeof d.title === "string" ? `“${d.title}”` : "a document";
  switch (e.kind) {
    case "workspace.created": return `${who} created the workspace`;
    case "workspace.updated": return `${who} renamed the workspace${typeof d.name === "string" ? ` to “${d.name}”` : ""}`;
    case "member.added": return `${who} added ${nameOf(numberOr(d.user_id))} as ${String(d.role ?? "member")}`;
    case "member.role_changed": return `${who} made ${nameOf(numberOr(d.user_id))} ${String(d.role ?? "")}`;
    case "member.removed": return `${who} removed ${nameOf(numberOr(d.user_id))}`;
    case "document.created": return `${who} created ${title}`;
    case "document.updated": return `${who} updated ${title}`;
    case "document.edited": return `${who} edited ${title}`;
    case "document.deleted": return `${who} deleted ${title}`;
    case "document.versioned": return `${who} saved version “${String(d.name ?? "")}” of ${title}`;
    case "document.restored": return `${who} restored ${title} to an earlier version`;
    case "comment.created": return `${who} commented${typeof d.body === "string" ? `: “${d.body}”` : ""}`;
    case "comment.updated": return `${who} edited a comment`;
    case "comment.resolved": return `${who} resolved a comment`;
    case "comment.unresolved": return `${who} reopened a comment`;
    case "comment.deleted": return `${who} deleted a comment`;
    case "invitation.created": return `${who} invited ${String(d.email ?? "someone")} as ${String(d.role ?? "member")}`;
    case "invitation.resent": return `${who} sent the invitation of ${String(d.email ?? "someone")} again`;
    case "invitation.revoked": return `${who} revoked the invitation of ${String(d.email ?? "someone")}`;
    case "invitation.accepted": return `${who} accepted the invitation sent to ${String(d.email ?? "them")}`;
    default: return `${who}: ${e.kind}`;
  }
}

function numberOr(v: unknown): number | null {
  return typeof v === "number" ? v : null;
}

/** Adds live events to a feed: in offset order, no duplicate, at most `keep` of the newest. */
export function mergeEvents(feed: StoaEvent[], incoming: StoaEvent[], keep = 200): StoaEvent[] {
  const seen = new Set(feed.map((e) => e.offset));
  const merged = feed.concat(incoming.filter((e) => !seen.has(e.offset)));
  merged.sort((a, b) => a.offset - b.offset);
  return merged.slice(-keep);
}
