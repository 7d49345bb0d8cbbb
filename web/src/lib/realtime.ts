// One Phoenix socket per signed-in tab, shared by every page: the token is read at each
// (re)connect, and a refreshed token is pushed on every joined channel so the server does
// not close the socket at the old token's expiry.

import { Socket, type Channel } from "phoenix";
import { session } from "./api";

let socket: Socket | null = null;
const joined = new Set<Channel>();
type StatusListener = (open: boolean, reason: string | null, code: number | null) => void;
const statusListeners = new Set<StatusListener>();

export function realtime(): Socket {
  if (socket) return socket;
  const s = new Socket("/socket", {
    params: () => ({ token: session.current()?.access ?? "" }),
    reconnectAfterMs: (tries: number) => [250, 500, 1000, 2000][tries - 1] ?? 4000,
    heartbeatIntervalMs: 25_000,
  });
  s.onOpen(() => statusListeners.forEach((l) => l(true, null, null)));
  s.onClose((e: unknown) => {
    const ev = e as { code?: number; reason?: string } | undefined;
    // The session ended elsewhere (signed out, password changed, account disabled): this
    // tab signs out too instead of reconnecting into refusals.
    if (ev?.reason === "logged_out" || ev?.reason === "session_ended") {
      session.set(null);
      return;
    }
    // Refreshed only if it is really about to expire (the leading tab may already have).
    if (ev?.reason === "token_expired") void session.accessToken();
    statusListeners.forEach((l) => l(false, ev?.reason ?? null, ev?.code ?? null));
  });
  s.connect();
  socket = s;
  return s;
}

export function onSocketStatus(l: StatusListener): () => void {
  statusListeners.add(l);
  return () => statusListeners.delete(l);
}

/** A channel whose token is kept fresh; leave it with `leave(ch)`. */
export function channel(topic: string, params: () => Record<string, unknown>): Channel {
  const ch = realtime().channel(topic, params);
  joined.add(ch);
  ch.onClose(() => {
    joined.delete(ch);
  });
  return ch;
}

export function leave(ch: Channel): void {
  joined.delete(ch);
  ch.leave();
}

session.subscribe((t) => {
  if (!t) {
    socket?.disconnect();
    socket = null;
    joined.clear();
    return;
  }
  for (const ch of joined) ch.push("access_token", { token: t.access });
});
