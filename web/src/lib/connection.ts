// The connection badge's state, from what a socket reports: live, reconnecting (the socket
// is down and being retried), offline (the browser has no network), or closed for good with
// the server's reason.

export type Link =
  | { state: "connecting" }
  | { state: "live" }
  | { state: "reconnecting"; reason: string | null }
  | { state: "offline" }
  | { state: "closed"; reason: string };

export type LinkEvent =
  | { type: "open" }
  | { type: "close"; reason: string | null; terminal: boolean }
  | { type: "offline" }
  | { type: "online" };

export function nextLink(current: Link, e: LinkEvent): Link {
  if (current.state === "closed") return current; // nothing reopens a closed editor but a reload
  switch (e.type) {
    case "open":
      return { state: "live" };
    case "close":
      if (e.terminal) return { state: "closed", reason: e.reason ?? "closed" };
      if (current.state === "offline") return current;
      return { state: "reconnecting", reason: e.reason ?? (current.state === "reconnecting" ? current.reason : null) };
    case "offline":
      return { state: "offline" };
    case "online":
      return current.state === "offline" ? { state: "reconnecting", reason: null } : current;
  }
}

export function linkLabel(l: Link): string {
  switch (l.state) {
    case "connecting": return "connecting";
    case "live": return "live";
    case "reconnecting": return "reconnecting";
    case "offline": return "offline";
    case "closed": return "closed";
  }
}
