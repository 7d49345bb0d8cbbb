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

/**
 * Two editors type while `restore()` runs: `a` appends "1", `b` prepends "2", every 5 ms.
 * Each counts what it types once it has seen the restore (its text no longer holds `gone`);
 * once both have typed ten so, they stop. Resolves with `restore()`'s answer, the text both
 * converged on, and the counts.
 */
export async function typeThrough(a, b, gone, restore) {
  const typedAfter = { a: 0, b: 0 };
  const enough = deferred("ten edits each after the restore", 30_000);
  let typing = true;
  const type = (client, key) =>
    (async () => {
      while (typing) {
        const seen = !client.text.toString().includes(gone);
        if (key === "a") client.text.insert(client.text.length, "1");
        else client.text.insert(0, "2");
        if (seen) typedAfter[key] += 1;
        if (typedAfter.a >= 10 && typedAfter.b >= 10) enough.signal();
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
  const loops = [type(a, "a"), type(b, "b")];
  await new Promise((r) => setTimeout(r, 50));
  const answer = await restore();
  await until(
    "both editors see the restore",
    (f) => {
      a.text.observe(f);
      b.text.observe(f);
    },
    () => !a.text.toString().includes(gone) && !b.text.toString().includes(gone),
  );
  await enough.promise;
  typing = false;
  await Promise.all(loops);
  await until(
    "convergence",
    (f) => {
      a.text.observe(f);
      b.text.observe(f);
    },
    () => a.text.toString() === b.text.toString(),
  );
  return { answer, final: a.text.toString(), typedAfter };
}
