// The unread count shared by the bell and the notifications page of one tab: whoever marks
// something read says the new count, and the bell shows it.

import { api } from "./api";

type Listener = (count: number) => void;
const listeners = new Set<Listener>();

export function unreadChanged(count: number): void {
  for (const l of listeners) l(count);
}

export function onUnread(l: Listener): () => void {
  listeners.add(l);
  return () => listeners.delete(l);
}

/** Marks one notification (`/api/v1/notifications/{id}/read`) or all read, and tells the bell. */
export async function markRead(path: string): Promise<void> {
  const r = await api.post<{ unread_count: number }>(path);
  unreadChanged(r.unread_count);
}
