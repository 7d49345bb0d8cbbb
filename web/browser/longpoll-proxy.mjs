// LongPoll in real Chromium, run by tests/cluster/browser.rs: two Stoa nodes behind
// HAProxy, which sends each request to the next node and refuses every WebSocket upgrade
// (a company proxy that blocks WebSockets). Each page runs the stock phoenix.js with
// `longPollFallbackMs`: its WebSocket is refused, it falls back to LongPoll, and its polls
// and sends land on both nodes. (Not a `*.test.mjs`: the console's suite does not run it.)

import { test, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { browser, until } from "./support.mjs";

const PROXY = process.env.STOA_PROXY;
const NODES = (process.env.STOA_NODES ?? "").split(",");
const PHOENIX = readFileSync(process.env.PHOENIX_JS, "utf8");

const browsers = [];
after(async () => {
  for (const b of browsers) await b.close().catch(() => {});
});

async function api(method, path, token, body) {
  const res = await fetch(NODES[0] + path, {
    method,
    headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

async function register(name) {
  const email = `${name}.${Date.now()}@example.com`;
  const r = await api("POST", "/api/v1/auth/register", null, { email, password: "correct horse battery", display_name: name });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return { id: r.body.user.id, email, token: r.body.access_token };
}

/** LongPoll requests each node has served (its own metrics). */
async function longpollRequests(node) {
  const text = await (await fetch(`${node}/metrics`)).text();
  return text
    .split("\n")
    .filter((l) => l.startsWith("stoa_http_requests_total{") && l.includes('route="/socket/longpoll"'))
    .reduce((s, l) => s + Number(l.split(" ").at(-1)), 0);
}

/** A page at the proxy's origin running phoenix.js: a socket joined to the workspace and
 * the user's inbox, what arrives kept in `window.t`. */
async function client(b, user, ws) {
  const page = await (await b.newContext()).newPage();
  await page.goto(`${PROXY}/login`);
  // Over the DevTools protocol: the console's CSP allows no inline script.
  await page.evaluate(`${PHOENIX};window.Phoenix = Phoenix;`);
  await page.evaluate(
    ({ token, ws, user }) => {
      const { Socket, Presence, LongPoll } = window.Phoenix;
      const socket = new Socket("/socket", {
        params: { token },
        longPollFallbackMs: 1000,
        reconnectAfterMs: () => 200,
        rejoinAfterMs: () => 200,
      });
      const t = (window.t = { socket, LongPoll, events: [], broadcasts: [], notes: [], joined: false, errors: [] });
      socket.onError((e) => t.errors.push(String(e?.type ?? e)));
      socket.connect();
      t.ch = socket.channel(`workspace:${ws}`, { since: 1 });
      t.ch.on("event", (e) => t.events.push(e.offset));
      t.ch.on("broadcast", (m) => t.broadcasts.push(m));
      t.presence = new Presence(t.ch);
      t.ch.join().receive("ok", () => (t.joined = true));
      const inbox = socket.channel(`user:${user}`, {});
      inbox.on("notification", (n) => t.notes.push(n.kind));
      inbox.join();
    },
    { token: user.token, ws, user: user.id },
  );
  return page;
}

test("behind HAProxy refusing WebSockets, phoenix.js in Chromium falls back to LongPoll over both nodes and gets everything", async () => {
  const b = await browser();
  browsers.push(b);
  const alice = await register("alice");
  const bob = await register("bob");
  const ws = (await api("POST", "/api/v1/workspaces", alice.token, { name: "Proxy" })).body.id;
  assert.equal((await api("POST", `/api/v1/workspaces/${ws}/members`, alice.token, { user_id: bob.id, role: "editor" })).status, 201);
  const doc = (await api("POST", `/api/v1/workspaces/${ws}/documents`, alice.token, { title: "Plan" })).body.id;
  const before = await Promise.all(NODES.map(longpollRequests));

  const a = await client(b, alice, ws);
  const o = await client(b, bob, ws);
  for (const [name, page] of [["alice", a], ["bob", o]]) {
    await until(`${name} joined`, () => page.evaluate(() => window.t.joined), 20_000);
    assert.equal(await page.evaluate(() => window.t.socket.transport === window.t.LongPoll), true, `${name} on LongPoll`);
    // The replay after offset 1: bob added, the document.
    await until(`${name}'s replay`, () => page.evaluate(() => window.t.events.join() === "2,3"));
  }

  // Presence: both pages see both people.
  for (const page of [a, o]) {
    await until("both present", () => page.evaluate(() => window.t.presence.list().length === 2));
  }
  // A broadcast from one page reaches the other, with the server's `from`.
  await a.evaluate(() => window.t.ch.push("broadcast", { type: "typing" }));
  await until("bob hears alice", () => o.evaluate((id) => window.t.broadcasts.some((m) => m.type === "typing" && m.from === id), alice.id));
  // A write through REST arrives as an event; a mention as a notification.
  const c = await api("POST", `/api/v1/documents/${doc}/comments`, alice.token, { body: `@${bob.email} look` });
  assert.equal(c.status, 201);
  await until("the comment event on both", async () =>
    (await a.evaluate(() => window.t.events.join())) === "2,3,4" && (await o.evaluate(() => window.t.events.join())) === "2,3,4",
  );
  await until("bob's notification", () => o.evaluate(() => window.t.notes.includes("mention")));

  // Both nodes served LongPoll requests: the proxy spread them, no stickiness.
  const after = await Promise.all(NODES.map(longpollRequests));
  for (const [i, n] of after.entries()) assert.ok(n - before[i] >= 3, `node ${i} served ${n - before[i]} LongPoll requests`);
  // Nothing went wrong on the way (the WebSocket refusals before the fallback aside).
  for (const page of [a, o]) {
    const { events, errors } = await page.evaluate(() => ({ events: window.t.events, errors: window.t.errors }));
    assert.deepEqual(events, [2, 3, 4]);
    assert.ok(errors.length <= 2, JSON.stringify(errors));
  }
});
