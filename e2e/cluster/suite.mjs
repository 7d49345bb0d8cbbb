// The cluster judged by the stock phoenix client: three nodes of the real binary (started
// and restarted here), one PostgreSQL database and a private Redis, both prepared by
// tests/cluster/phoenix.rs, which runs this file.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Socket, Presence } from "phoenix";
import WebSocket from "ws";

import { PORTS, api, nodes, register, sleep } from "./nodes.mjs";

function connect(i, token) {
  const socket = new Socket(`ws://127.0.0.1:${PORTS[i]}/socket`, {
    transport: WebSocket,
    params: { token },
    // phoenix.js's own backoff, shortened: the restarted node is back within seconds.
    reconnectAfterMs: (tries) => [50, 100, 200, 500][tries - 1] ?? 1000,
    rejoinAfterMs: (tries) => [50, 100, 200, 500][tries - 1] ?? 1000,
  });
  socket.connect();
  return socket;
}

function joined(channel) {
  return new Promise((resolve, reject) => {
    channel
      .join(10000)
      .receive("ok", resolve)
      .receive("error", (e) => reject(new Error(JSON.stringify(e))))
      .receive("timeout", () => reject(new Error("join timed out")));
  });
}

async function until(what, check, ms = 15000) {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`waited too long for ${what}`);
    await sleep(20);
  }
}

before(async () => {
  for (const node of nodes) await node.start();
});

after(async () => {
  for (const node of nodes) await node.stop();
});

test("an event written through one node reaches clients on the others once", async () => {
  const alice = await register("alice");
  const ws = (await api(1, "POST", "/api/v1/workspaces", alice.token, { name: "C" })).body.id;
  const sockets = [connect(0, alice.token), connect(2, alice.token)];
  const seen = [[], []];
  for (const [k, socket] of sockets.entries()) {
    const channel = socket.channel(`workspace:${ws}`, { presence: false });
    channel.on("event", (e) => seen[k].push(e.offset));
    await joined(channel);
  }
  const res = await api(1, "POST", `/api/v1/workspaces/${ws}/documents`, alice.token, {
    title: "Plan",
    content: "",
  });
  assert.equal(res.status, 201);
  await until("the event on both nodes", () => seen.every((s) => s.length >= 1));
  await sleep(200);
  assert.deepEqual(seen, [[2], [2]]);
  sockets.forEach((s) => s.disconnect());
});

test("a broadcast on one node reaches the others, with the sender set by the server", async () => {
  const alice = await register("alice");
  const ws = (await api(0, "POST", "/api/v1/workspaces", alice.token, { name: "C" })).body.id;
  const [s0, s1, s2] = [0, 1, 2].map((i) => connect(i, alice.token));
  const heard = [];
  for (const socket of [s0, s2]) {
    const channel = socket.channel(`workspace:${ws}`, { presence: false });
    channel.on("broadcast", (p) => heard.push(p));
    await joined(channel);
  }
  const sender = s1.channel(`workspace:${ws}`, { presence: false });
  await joined(sender);
  await new Promise((resolve) => sender.push("broadcast", { type: "typing" }).receive("ok", resolve));
  await until("the broadcast on both other nodes", () => heard.length === 2);
  assert.ok(heard.every((p) => p.type === "typing" && p.from === alice.id));
  [s0, s1, s2].forEach((s) => s.disconnect());
});

test("a backend's publish through one node reaches phoenix.js clients on every node", async () => {
  const alice = await register("alice");
  const bob = await register("bob");
  const ws = (await api(0, "POST", "/api/v1/workspaces", alice.token, { name: "P" })).body.id;
  await api(0, "POST", `/api/v1/workspaces/${ws}/members`, alice.token, { user_id: bob.id, role: "viewer" });
  const doc = (await api(0, "POST", `/api/v1/workspaces/${ws}/documents`, alice.token, { title: "D" })).body.id;
  // The backend holds an API token of Alice's with the `write` scope, and no socket.
  const made = await api(0, "POST", "/api/v1/me/api-tokens", alice.token, { name: "crm", scopes: ["write"] });
  assert.equal(made.status, 201, JSON.stringify(made.body));
  const service = made.body.token;
  const sockets = [connect(0, bob.token), connect(2, bob.token)];
  const heard = [[], []];
  for (const [k, socket] of sockets.entries()) {
    for (const topic of [`workspace:${ws}`, `document:${doc}`]) {
      const channel = socket.channel(topic, { presence: false });
      channel.on("deal.updated", (p) => heard[k].push([topic, "deal.updated", p]));
      channel.on("broadcast", (p) => heard[k].push([topic, "broadcast", p]));
      await joined(channel);
    }
  }
  const sent = await api(1, "POST", `/api/v1/workspaces/${ws}/broadcast`, service, {
    topic: `workspace:${ws}`,
    event: "deal.updated",
    payload: { deal: 42, stage: "won" },
  });
  assert.equal(sent.status, 202, JSON.stringify(sent.body));
  const plain = await api(1, "POST", `/api/v1/workspaces/${ws}/broadcast`, service, {
    topic: `document:${doc}`,
    payload: { note: "refreshed" },
  });
  assert.equal(plain.status, 202, JSON.stringify(plain.body));
  await until("both pushes on nodes 0 and 2", () => heard.every((h) => h.length === 2));
  const want = [
    [`workspace:${ws}`, "deal.updated", { deal: 42, stage: "won", from: alice.id }],
    [`document:${doc}`, "broadcast", { note: "refreshed", from: alice.id }],
  ];
  // Two topics are two streams: their order against each other is not promised.
  const byTopic = (list) => [...list].sort((x, y) => x[0].localeCompare(y[0]));
  for (const h of heard) assert.deepEqual(byTopic(h), byTopic(want));
  sockets.forEach((s) => s.disconnect());
});

test("presence joined on one node appears on the others, and leaves with it", async () => {
  const alice = await register("alice");
  const bob = await register("bob");
  const ws = (await api(0, "POST", "/api/v1/workspaces", alice.token, { name: "C" })).body.id;
  await api(0, "POST", `/api/v1/workspaces/${ws}/members`, alice.token, { user_id: bob.id, role: "viewer" });
  const sa = connect(0, alice.token);
  const ca = sa.channel(`workspace:${ws}`, {});
  const presence = new Presence(ca);
  await joined(ca);
  const sb = connect(2, bob.token);
  const cb = sb.channel(`workspace:${ws}`, {});
  await joined(cb);
  const ids = () => presence.list((id) => id).sort();
  await until("bob's presence on node 0", () => ids().length === 2);
  assert.deepEqual(ids(), [String(alice.id), String(bob.id)].sort());
  sb.disconnect();
  await until("bob leaving node 0's presence", () => ids().length === 1);
  sa.disconnect();
});

test("restarting every node in turn while clients write and listen loses and repeats nothing", async () => {
  const alice = await register("alice");
  const ws = (await api(0, "POST", "/api/v1/workspaces", alice.token, { name: "R" })).body.id;
  // One listener per node; each resumes after its last offset when it rejoins.
  const listeners = [0, 1, 2].map((i) => {
    const socket = connect(i, alice.token);
    const me = { offsets: [], last: 1 };
    const channel = socket.channel(`workspace:${ws}`, () => ({ since: me.last, presence: false }));
    channel.on("event", (e) => {
      me.offsets.push(e.offset);
      me.last = e.offset;
    });
    me.socket = socket;
    me.joined = joined(channel);
    return me;
  });
  await Promise.all(listeners.map((l) => l.joined));

  // A writer goes round the nodes that are up.
  let writing = true;
  let written = 0;
  const down = new Set();
  const writer = (async () => {
    let k = 0;
    while (writing) {
      k += 1;
      const i = [0, 1, 2].filter((j) => !down.has(j))[k % (3 - down.size)];
      try {
        const res = await api(i, "POST", `/api/v1/workspaces/${ws}/documents`, alice.token, {
          title: `Doc ${k}`,
          content: "",
        });
        if (res.status === 201) written += 1;
      } catch {}
      await sleep(30);
    }
  })();

  for (const node of nodes) {
    await sleep(300);
    down.add(node.i);
    await node.stop();
    await node.start();
    down.delete(node.i);
  }
  await sleep(300);
  writing = false;
  await writer;
  const head = (await api(0, "GET", `/api/v1/workspaces/${ws}/events?since=0&limit=1`, alice.token)).body
    .latest_offset;
  assert.ok(written >= 10, `only ${written} writes`);
  await until("every listener at the head", () => listeners.every((l) => l.last === head), 30000);
  for (const [i, l] of listeners.entries()) {
    const expected = Array.from({ length: head - 1 }, (_, k) => k + 2);
    assert.deepEqual(l.offsets, expected, `listener on node ${i}`);
    l.socket.disconnect();
  }
});
