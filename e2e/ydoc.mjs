// The stock y-websocket provider as the Yjs suites use it: a document opened with a token,
// its first sync, and waiting for a text.
import WebSocket from "ws";
import * as Y from "yjs";
import { WebsocketProvider } from "y-websocket";

import { WS_BASE, deferred, until } from "./support.mjs";

/** A provider for `doc` connected with `token`, on a fresh Y.Doc unless `ydoc` is given,
 * to the server at `base` (a ws:// address) or the suite's one. */
export function open(doc, token, { ydoc = new Y.Doc(), base = WS_BASE } = {}) {
  const provider = new WebsocketProvider(`${base}/yjs`, String(doc), ydoc, {
    WebSocketPolyfill: WebSocket,
    params: { token },
    disableBc: true,
    maxBackoffTime: 200,
  });
  return { ydoc, provider, text: ydoc.getText("content") };
}

export function synced(provider) {
  if (provider.synced) return Promise.resolve();
  const { promise, signal } = deferred("sync");
  provider.once("sync", (ok) => ok && signal());
  return promise;
}

export function textIs(client, want) {
  return until(
    `text ${JSON.stringify(want)}`,
    (f) => client.text.observe(f),
    () => client.text.toString() === want,
  );
}
