// LongPoll beside WebSocket: N stock phoenix.js clients on each transport join one
// workspace topic; a backend publishes COUNT timestamped messages at RATE per second through
// the publish API; each client notes how long each took to arrive. Prints one JSON line per
// transport (latency percentiles in ms, messages received) and one for the whole run.
//
//   node longpoll-bench.mjs BASE N COUNT RATE [WS_BASE]
// (WS_BASE: where the WebSocket clients connect, when BASE is a proxy that refuses them.)
import { LongPoll, Socket } from "phoenix";
import WebSocket from "ws";

const [BASE = "http://127.0.0.1:8092", N = "200", COUNT = "200", RATE = "20", WS_BASE = BASE] =
  process.argv.slice(2);
const n = Number(N);
const count = Number(COUNT);
const now = () => performance.timeOrigin + performance.now();

async function api(method, path, token, body) {
  const res = await fetch(BASE + path, {
    method,
    headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

const email = `bench.${Date.now()}@example.com`;
const reg = await api("POST", "/api/v1/auth/register", null, { email, password: "correct horse battery", display_name: "bench" });
if (reg.status !== 201) throw new Error(JSON.stringify(reg.body));
const token = reg.body.access_token;
const ws = (await api("POST", "/api/v1/workspaces", token, { name: "Bench" })).body.id;

const transports = { websocket: WebSocket, longpoll: LongPoll };
const latencies = { websocket: [], longpoll: [] };
const sockets = [];
let joined = 0;
for (const [name, transport] of Object.entries(transports)) {
  for (let i = 0; i < n; i++) {
    const base = name === "websocket" ? WS_BASE : BASE;
    const socket = new Socket(`${base.replace("http", "ws")}/socket`, {
      transport,
      params: { token },
      longpollerTimeout: 30000,
    });
    socket.connect();
    const ch = socket.channel(`workspace:${ws}`, { presence: false });
    ch.on("bench", (m) => latencies[name].push(now() - m.t));
    await new Promise((resolve, reject) =>
      ch.join(30000).receive("ok", resolve).receive("error", reject).receive("timeout", () => reject(new Error("join timeout"))),
    );
    joined += 1;
    sockets.push(socket);
  }
}
console.error(`joined ${joined} (${n} per transport)`);
await new Promise((r) => setTimeout(r, 1000));

const started = now();
for (let k = 0; k < count; k++) {
  const due = started + (k * 1000) / Number(RATE);
  const wait = due - now();
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  const r = await api("POST", `/api/v1/workspaces/${ws}/broadcast`, token, {
    topic: `workspace:${ws}`,
    event: "bench",
    payload: { t: now(), k },
  });
  if (r.status !== 202) throw new Error(JSON.stringify(r.body));
}
// Everything sent; wait for the stragglers (a poll in flight comes back with the rest).
const expected = count * n;
const deadline = now() + 15000;
while ((latencies.websocket.length < expected || latencies.longpoll.length < expected) && now() < deadline) {
  await new Promise((r) => setTimeout(r, 50));
}
const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? Number(s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)].toFixed(2)) : null;
};
for (const [name, xs] of Object.entries(latencies)) {
  console.log(
    JSON.stringify({
      transport: name,
      clients: n,
      messages: count,
      rate: Number(RATE),
      received: xs.length,
      expected,
      p50_ms: pct(xs, 50),
      p90_ms: pct(xs, 90),
      p99_ms: pct(xs, 99),
      max_ms: pct(xs, 100),
    }),
  );
}
sockets.forEach((s) => s.disconnect());
process.exit(0);
