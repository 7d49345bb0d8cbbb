// Document history under load (loadtest/history.sh): a document of SIZE bytes written by a
// stock y-websocket client, VERSIONS named versions each after a small edit, then the version
// list, reads and diffs timed one request at a time, and a restore while three editors type.
//
//   node history-bench.mjs BASE SIZE VERSIONS N
//
// Prints JSON lines: how long making versions took, p50/p90/p99/max of each request kind,
// and how long each live editor took to see a restore.
import WebSocket from "ws";
import * as Y from "yjs";
import { WebsocketProvider } from "y-websocket";

const [base, sizeArg, versionsArg, nArg] = process.argv.slice(2);
const SIZE = Number(sizeArg);
const VERSIONS = Number(versionsArg);
const N = Number(nArg);
const WS = base.replace(/^http/, "ws");

async function api(method, path, token, body) {
  const res = await fetch(base + path, {
    method,
    headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${text.slice(0, 300)}`);
  return text ? JSON.parse(text) : null;
}

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}
const r = (x) => Math.round(x * 100) / 100;
function report(label, times, extra = {}) {
  const s = [...times].sort((a, b) => a - b);
  console.log(JSON.stringify({
    label, n: s.length, p50_ms: r(percentile(s, 50)), p90_ms: r(percentile(s, 90)),
    p99_ms: r(percentile(s, 99)), max_ms: r(s[s.length - 1]), ...extra,
  }));
}

function open(doc, token) {
  const ydoc = new Y.Doc();
  const provider = new WebsocketProvider(`${WS}/yjs`, String(doc), ydoc, {
    WebSocketPolyfill: WebSocket, params: { token }, disableBc: true,
  });
  return { ydoc, provider, text: ydoc.getText("content") };
}
const synced = (p) => new Promise((resolve) => (p.synced ? resolve() : p.once("sync", resolve)));

const email = `bench.${process.pid}.${Date.now()}@example.com`;
const account = await api("POST", "/api/v1/auth/register", null, {
  email, password: "correct horse battery", display_name: "Bench",
});
const token = account.access_token;
const ws = await api("POST", "/api/v1/workspaces", token, { name: "History bench" });
const doc = (await api("POST", `/api/v1/workspaces/${ws.id}/documents`, token, { title: "Big" })).id;

// The document: SIZE bytes of words, in one editor's inserts.
const writer = open(doc, token);
await synced(writer.provider);
// Words of a 5,000-word vocabulary, skewed as prose is, so that the text compresses about
// as prose does (a handful of repeated words would flatter the storage figures).
let seed = 42;
const rand = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
const vocabulary = Array.from({ length: 5000 }, () =>
  Array.from({ length: 3 + Math.floor(rand() * 7) }, () => String.fromCharCode(97 + Math.floor(rand() * 26))).join(""));
let body = "";
for (let i = 0; body.length < SIZE; i++) {
  body += vocabulary[Math.floor(vocabulary.length * rand() ** 3)] + (i % 12 === 11 ? "\n" : " ");
}
for (let at = 0; at < body.length; at += 256 * 1024) writer.text.insert(at, body.slice(at, at + 256 * 1024));
for (;;) {
  const d = await api("GET", `/api/v1/documents/${doc}`, token);
  if (d.content.length >= SIZE) break;
  await new Promise((r) => setTimeout(r, 200));
}

// VERSIONS versions, each after an edit of a word somewhere.
const made = [];
const t0 = performance.now();
for (let i = 0; i < VERSIONS; i++) {
  const at = Math.floor((i * 7919) % (writer.text.length - 10));
  writer.text.insert(at, ` w${i} `);
  const s = performance.now();
  made.push((await api("POST", `/api/v1/documents/${doc}/versions`, token, { name: `v${i}` })).id);
  if (i % 100 === 99) console.error(`${i + 1} versions`);
  report.last = performance.now() - s;
  (report.make ??= []).push(report.last);
}
report("make a named version (flush, read the log, version it)", report.make, {
  total_s: r((performance.now() - t0) / 1000), document_bytes: writer.text.length,
});

async function timed(label, path, accept) {
  const times = [];
  for (let i = 0; i < N + 5; i++) {
    const p = typeof path === "function" ? path(i) : path;
    const s = performance.now();
    const res = await fetch(base + p, { headers: { authorization: `Bearer ${token}`, ...(accept ? { accept } : {}) } });
    const bytes = (await res.arrayBuffer()).byteLength;
    if (res.status !== 200) throw new Error(`${label}: ${res.status}`);
    if (i >= 5) times.push(performance.now() - s);
    timed.bytes = bytes;
  }
  report(label, times, { bytes: timed.bytes });
}
const pick = (i) => made[(i * 37) % made.length];
await timed("list, newest 50", `/api/v1/documents/${doc}/versions?limit=50`);
await timed("list, a page in the middle", `/api/v1/documents/${doc}/versions?limit=50&cursor=${made[Math.floor(made.length / 2)]}`);
await timed("read an older version's text", (i) => `/api/v1/documents/${doc}/versions/${pick(i)}`);
await timed("read an older version's Yjs state", (i) => `/api/v1/documents/${doc}/versions/${pick(i)}`, "application/octet-stream");
await timed("diff a version against the current text", (i) => `/api/v1/documents/${doc}/versions/${pick(i)}/diff?against=current`);
await timed("diff two versions 100 apart", (i) => {
  const a = (i * 37) % (made.length - 100);
  return `/api/v1/documents/${doc}/versions/${made[a]}/diff?against=${made[a + 100]}`;
});

// A restore while three editors type.
const editors = [open(doc, token), open(doc, token), open(doc, token)];
await Promise.all(editors.map((e) => synced(e.provider)));
let typing = true;
const loops = editors.map((e, k) => (async () => {
  while (typing) {
    e.text.insert(Math.floor(e.text.length / 2), String(k));
    await new Promise((r) => setTimeout(r, 20));
  }
})());
const target = made[Math.floor(made.length / 2)];
const last = `w${VERSIONS - 1} `;
const seen = editors.map((e) => new Promise((resolve) => {
  const check = () => {
    if (!e.text.toString().includes(last)) {
      e.text.unobserve(check);
      resolve(performance.now());
    }
  };
  e.text.observe(check);
}));
const s = performance.now();
await api("POST", `/api/v1/documents/${doc}/versions/${target}/restore`, token);
const answered = performance.now() - s;
const at = await Promise.all(seen);
typing = false;
await Promise.all(loops);
console.log(JSON.stringify({
  label: "restore while 3 editors type", rest_ms: r(answered),
  editors_saw_it_ms: at.map((t) => r(t - s)),
}));
for (const e of [writer, ...editors]) e.provider.destroy();
console.log(JSON.stringify({ document: doc }));
process.exit(0);
