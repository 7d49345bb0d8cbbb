// LongPoll across a cluster, judged by the stock phoenix client: three nodes behind a
// proxy that refuses WebSocket upgrades and sends each request to the next node in turn
// (no stickiness), so a session's polls and sends land on every node. Run by
// tests/cluster/phoenix.rs with a database and a Redis it prepared.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { LongPoll, Presence, Socket } from "phoenix";
import WebSocket from "ws";

import { PORTS, api, nodes, register, sleep } from "./nodes.mjs";

/** Round-robin over the nodes that answer (a health-checked load balancer), upgrades
 * refused, each request's node counted by method. Each method has its own turn, so polls
 * and sends both go round every node whatever their interleaving. */
class Proxy {
  constructor() {
    this.turn = new Map();
    this.served = new Map();
    this.upgradesRefused = 0;
    this.server = http.createServer((req, res) => this.forward(req, res, 0));
    this.server.on("upgrade", (req, socket) => {
      this.upgradesRefused += 1;
      socket.end("HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n");
    });
  }

  listen() {
    return new Promise((r) => this.server.listen(0, "127.0.0.1", () => r(this.server.address().port)));
  }

  next(method) {
    const t = this.turn.get(method) ?? 0;
    this.turn.set(method, t + 1);
    return t % PORTS.length;
  }

  forward(req, res, tries) {
    const i = this.next(req.method);
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => this.send(req, Buffer.concat(chunks), res, i, tries));
  }

  send(req, body, res, i, tries) {
    const out = http.request(
      { host: "127.0.0.1", port: PORTS[i], path: req.url, method: req.method, headers: req.headers },
      (up) => {
        const key = `${req.method} node${i}`;
        if (req.url.startsWith("/socket/longpoll")) this.served.set(key, (this.served.get(key) ?? 0) + 1);
        res.writeHead(up.statusCode, up.headers);
        up.pipe(res);
      },
    );
    out.on("error", () => {
      // That node is down: the next one takes the request, as a balancer's check would.
      if (tries + 1 >= PORTS.length) {
        res.writeHead(502);
        res.end();
        return;
      }
      this.send(req, body, res, this.next(req.method), tries + 1);
    });
    out.end(body);
  }

  nodesServing(method) {
    return [...this.served.keys()].filter((k) => k.startsWith(method)).length;
  }
}

const proxy = new Proxy();
let base;

function behindProxy(token, params = {}) {
  const socket = new Socket(`${base.replace("http", "ws")}/socket`, {
    transport: WebSocket,
    longPollFallbackMs: 300,
    sessionStorage: { getItem: () => null, setItem() {}, removeItem() {} },
    params: { token, ...params },
    reconnectAfterMs: () => 100,
    rejoinAfterMs: () => 100,
  });
  socket.connect();
  return socket;
}

function direct(i, token) {
  const socket = new Socket(`ws://127.0.0.1:${PORTS[i]}/socket`, {
    transport: WebSocket,
    params: { token },
    reconnectAfterMs: () => 100,
    rejoinAfterMs: () => 100,
  });
  socket.connect();
  return socket;
}

function joined(channel) {
  return new Promise((resolve, reject) => {
    channel
      .join(15000)
      .receive("ok", resolve)
      .receive("error", (e) => reject(new Error(JSON.stringify(e))))
      .receive("timeout", () => reject(new Error("join timed out")));
  });
}

async function until(what, check, ms = 20000) {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`waited too long for ${what}`);
    await sleep(20);
  }
}

function push(channel, event, payload) {
  return new Promise((resolve) => {
    channel
      .push(event, payload, 15000)
      .receive("ok", () => resolve("ok"))
      .receive("error", (e) => resolve(`error ${JSON.stringify(e)}`))
      .receive("timeout", () => resolve("timeout"));
  });
}

before(async () => {
  for (const node of nodes) await node.start();
  base = `http://127.0.0.1:${await proxy.listen()}`;
});

after(async () => {
  proxy.server.close();
  for (const node of nodes) await node.stop();
});

test("behind a proxy that refuses WebSockets and spreads requests over every node, the client falls back and gets everything", async () => {
  const alice = await register("alice");
  const bob = await register("bob");
  const ws = (await api(0, "POST", "/api/v1/workspaces", alice.token, { name: "LP" })).body.id;
  assert.equal(
    (await api(0, "POST", `/api/v1/workspaces/${ws}/members`, alice.token, { user_id: bob.id, role: "editor" })).status,
    201,
  );
  const doc = (await api(1, "POST", `/api/v1/workspaces/${ws}/documents`, alice.token, { title: "D" })).body.id;

  const lp = behindProxy(alice.token);
  const events = [];
  const channel = lp.channel(`workspace:${ws}`, { since: 1 });
  channel.on("event", (e) => events.push(e));
  const broadcasts = [];
  channel.on("broadcast", (m) => broadcasts.push(m));
  const presence = new Presence(channel);
  await joined(channel);
  assert.equal(lp.transport, LongPoll);
  assert.ok(proxy.upgradesRefused >= 1);
  await until("the replay", () => events.length >= 2);
  assert.deepEqual(
    events.map((e) => e.offset),
    [2, 3],
  );

  // bob on the third node over a WebSocket: presence, broadcasts both ways.
  const peer = direct(2, bob.token);
  const bobs = peer.channel(`workspace:${ws}`, {});
  const heard = [];
  bobs.on("broadcast", (m) => heard.push(m));
  await joined(bobs);
  await until("both present", () => presence.list().length === 2);
  assert.equal(await push(channel, "broadcast", { type: "from-lp" }), "ok");
  await until("bob hears alice", () => heard.some((m) => m.type === "from-lp" && m.from === alice.id));
  assert.equal(await push(bobs, "broadcast", { type: "from-ws" }), "ok");
  assert.equal(await push(channel, "presence:update", { cursor: 7 }), "ok");
  await until("alice's meta", () =>
    presence.list((id, p) => p.metas.some((m) => m.cursor === 7)).includes(true),
  );
  await until("alice hears bob", () => broadcasts.some((m) => m.type === "from-ws" && m.from === bob.id));

  // Writes through each node arrive once, in order.
  for (const i of [0, 1, 2]) {
    const r = await api(i, "POST", `/api/v1/documents/${doc}/comments`, bob.token, { body: `via node ${i}` });
    assert.equal(r.status, 201);
  }
  await until("three comment events", () => events.length >= 5);
  await sleep(300);
  assert.deepEqual(
    events.map((e) => e.offset),
    [2, 3, 4, 5, 6],
  );

  // Polls and sends were served by all three nodes: two of every three reached a node that
  // does not hold the session.
  assert.equal(proxy.nodesServing("GET"), 3, JSON.stringify([...proxy.served]));
  assert.equal(proxy.nodesServing("POST"), 3, JSON.stringify([...proxy.served]));

  // Removing alice's membership... is removing the owner; remove bob instead, over LongPoll.
  const bobLp = behindProxy(bob.token);
  const bobChannel = bobLp.channel(`workspace:${ws}`, {});
  let closed = false;
  bobChannel.onClose(() => (closed = true));
  await joined(bobChannel);
  const r = await api(1, "DELETE", `/api/v1/workspaces/${ws}/members/${bob.id}`, alice.token);
  assert.equal(r.status, 204);
  await until("bob's LongPoll channel closed", () => closed);
  [lp, peer, bobLp].forEach((s) => s.disconnect());
});

test("the node holding a LongPoll session is killed: the client starts over on another and loses no event", async () => {
  const alice = await register("carol");
  const ws = (await api(0, "POST", "/api/v1/workspaces", alice.token, { name: "K" })).body.id;
  const lp = behindProxy(alice.token);
  const seen = [];
  const channel = lp.channel(`workspace:${ws}`, () => ({ since: seen.at(-1) ?? 0 }));
  channel.on("event", (e) => seen.push(e.offset));
  await joined(channel);
  await until("the first event", () => seen.length >= 1);

  // The node that holds the session: named by the session token.
  const token = lp.conn.token;
  const holder = Number(Buffer.from(token.split(".")[1], "hex").toString().replace("node", ""));
  const writer = [0, 1, 2].find((i) => i !== holder);
  await nodes[holder].kill();
  for (let k = 0; k < 5; k++) {
    const r = await api(writer, "POST", `/api/v1/workspaces/${ws}/documents`, alice.token, { title: `after ${k}` });
    assert.equal(r.status, 201);
  }
  await until("every event after the kill", () => seen.length >= 6, 30000);
  await sleep(300);
  assert.deepEqual(seen, [1, 2, 3, 4, 5, 6]);
  assert.notEqual(lp.conn.token.split(".")[1], token.split(".")[1], "a session on another node");
  lp.disconnect();
  await nodes[holder].start();
});
