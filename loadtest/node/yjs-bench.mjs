// Yjs editing load: D documents × E editors, each editor inserting a timestamped piece of
// text COUNT times at RATE per second through the stock y-websocket provider. Every other
// editor of the document records how long each insert took to reach it.
//
//   node yjs-bench.mjs URL DOCS EDITORS COUNT RATE [SERVER_PID]
//
// e.g. node yjs-bench.mjs http://127.0.0.1:8090 200 3 30 20
// Prints remote updates delivered per second, latency p50/p99/max (ms), and, with the
// server's pid, its RSS per open document and the rate at which it wrote updates.
// PEER=y-websocket or PEER=hocuspocus drives a reference server instead of Stoa (no
// accounts; documents by name; Hocuspocus through its own provider). The last line,
// `result …`, is what loadtest/yjs-compare.sh tabulates.
import { readFileSync } from "node:fs";
import WebSocket from "ws";
import * as Y from "yjs";
import { WebsocketProvider } from "y-websocket";
import { HocuspocusProvider } from "@hocuspocus/provider";

const PEER = process.env.PEER;
// Hocuspocus's provider looks for a global WebSocket (Node 20 has none).
if (PEER === "hocuspocus") globalThis.WebSocket = WebSocket;

const [url, docs = 200, editors = 3, count = 30, rate = 20, pid] = process.argv.slice(2);
const [D, E, N, R] = [docs, editors, count, rate].map(Number);
const wsUrl = url.replace(/^http/, "ws");

async function api(method, path, token, body) {
  const headers = { "content-type": "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(url + path, { method, headers, body: JSON.stringify(body) });
  return res.json();
}

const rssKib = () =>
  pid ? Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))[1]) : 0;

async function metric(name) {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(" ")[1]) : 0;
}

const now = () => performance.timeOrigin + performance.now();

let token = "";
const ids = [];
if (PEER) {
  for (let d = 0; d < D; d++) ids.push(`bench-${process.pid}-${d}`);
} else {
  const user = await api("POST", "/api/v1/auth/register", null, {
    email: `bench.${process.pid}.${Date.now()}@example.com`,
    password: "correct horse battery",
    display_name: "Bench",
  });
  token = user.access_token;
  const ws = await api("POST", "/api/v1/workspaces", token, { name: "Bench" });
  for (let d = 0; d < D; d++) {
    ids.push(
      (await api("POST", `/api/v1/workspaces/${ws.id}/documents`, token, { title: `D${d}` })).id,
    );
  }
}

/** A provider of the kind the server speaks, and a promise of its first sync. */
function provide(id, ydoc) {
  if (PEER === "hocuspocus") {
    let done;
    const first = new Promise((r) => (done = r));
    const provider = new HocuspocusProvider({
      url: wsUrl,
      name: String(id),
      document: ydoc,
      WebSocketPolyfill: WebSocket,
      onSynced: () => done(),
    });
    return { provider, first };
  }
  const base = PEER === "y-websocket" ? wsUrl : `${wsUrl}/yjs`;
  const provider = new WebsocketProvider(base, String(id), ydoc, {
    WebSocketPolyfill: WebSocket,
    params: PEER ? {} : { token },
    disableBc: true,
  });
  const first = new Promise((r) => (provider.synced ? r() : provider.once("sync", r)));
  return { provider, first };
}

const rssBefore = rssKib();
const latencies = [];
const clients = [];
const synced = ({ first }) => first;
// Editors connect 64 at a time, as a crowd arriving does: what the server holds for its
// documents, not for a storm of handshakes at once, is what is measured.
for (let i = 0; i < ids.length * E; i += 64) {
  const wave = [];
  for (let k = i; k < Math.min(i + 64, ids.length * E); k++) {
    const id = ids[Math.floor(k / E)];
    const ydoc = new Y.Doc();
    const { provider, first } = provide(id, ydoc);
    // NO_AWARENESS=1: editors without awareness (to measure what it costs).
    if (process.env.NO_AWARENESS) provider.awareness.setLocalState(null);
    const text = ydoc.getText("content");
    text.observe((event) => {
      if (event.transaction.local) return;
      for (const op of event.delta) {
        if (typeof op.insert !== "string") continue;
        for (const stamp of op.insert.split("|")) {
          if (stamp) latencies.push(now() - Number(stamp));
        }
      }
    });
    wave.push({ ydoc, provider, text, first });
  }
  await Promise.all(wave.map(synced));
  clients.push(...wave);
}
const rssOpen = rssKib();
const written0 = PEER ? 0 : await metric("stoa_yjs_updates_written_total");
console.log(`ready: ${clients.length} editors on ${D} documents`);

const start = now();
await Promise.all(
  clients.map(
    ({ text }, k) =>
      new Promise((resolve) => {
        let sent = 0;
        // Editors start spread over one interval, as people do.
        setTimeout(() => {
          const timer = setInterval(() => {
            text.insert(text.length, `${now()}|`);
            if (++sent === N) {
              clearInterval(timer);
              resolve();
            }
          }, 1000 / R);
        }, ((k % 97) / 97) * (1000 / R));
      }),
  ),
);
const expected = D * E * (E - 1) * N;
const deadline = now() + 30000;
while (latencies.length < expected && now() < deadline) await new Promise((r) => setTimeout(r, 10));
const seconds = (now() - start) / 1000;
const written = PEER ? 0 : (await metric("stoa_yjs_updates_written_total")) - written0;
for (const { provider } of clients) provider.destroy();

latencies.sort((a, b) => a - b);
const at = (q) => latencies[Math.min(latencies.length - 1, Math.ceil(latencies.length * q) - 1)] ?? NaN;
console.log(
  `delivered ${latencies.length} of ${expected} remote updates in ${seconds.toFixed(2)} s ` +
    `= ${Math.round(latencies.length / seconds)}/s; latency ms p50=${at(0.5).toFixed(2)} ` +
    `p99=${at(0.99).toFixed(2)} max=${at(1).toFixed(2)}`,
);
if (pid) {
  console.log(
    `server RSS ${rssBefore} KiB before, ${rssOpen} KiB with ${D} documents open = ` +
      `${Math.round(((rssOpen - rssBefore) * 1024) / D)} bytes per open document (with ${E} editors each)`,
  );
  console.log(`updates written: ${written} in ${seconds.toFixed(2)} s = ${Math.round(written / seconds)}/s`);
}
const perDoc = pid ? Math.round(((rssOpen - rssBefore) * 1024) / D) : 0;
console.log(
  `result ${PEER ?? "stoa"} ${Math.round(latencies.length / seconds)} ${at(0.5).toFixed(2)} ` +
    `${at(0.99).toFixed(2)} ${perDoc}`,
);
process.exit(0);
