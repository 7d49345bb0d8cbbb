// Phoenix's LongPoll transport (/socket/longpoll), judged by the stock `phoenix` client
// with `transport: LongPoll`, and with `longPollFallbackMs` when WebSockets are refused.
import { test } from "node:test";
import assert from "node:assert/strict";
import { LongPoll, Presence, Socket } from "phoenix";

import { BASE, api, connect, deferred, join, metric, push, register, until, workspaceWith } from "./support.mjs";

/** A phoenix Socket over LongPoll only. */
function longPoll(token, options = {}) {
  const socket = new Socket(`${BASE}/socket`, {
    transport: LongPoll,
    params: { token },
    reconnectAfterMs: () => 50,
    rejoinAfterMs: () => 50,
    ...options,
  });
  socket.connect();
  return socket;
}

/** What a network that refuses WebSocket upgrades leaves a client: every attempt fails. */
class RefusedWebSocket {
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    setTimeout(() => {
      this.readyState = 3;
      this.onerror?.(new Error("upgrade refused by the proxy"));
      this.onclose?.({ code: 1006, reason: "", wasClean: false });
    }, 5);
  }
  send() {
    throw new Error("not open");
  }
  close() {}
}

/** sessionStorage for Node (phoenix.js remembers a fallback there). */
function memoryStorage() {
  const m = new Map();
  return {
    getItem: (k) => (m.has(k) ? m.get(k) : null),
    setItem: (k, v) => m.set(k, String(v)),
    removeItem: (k) => m.delete(k),
  };
}

async function raw(method, query, body) {
  const res = await fetch(`${BASE}/socket/longpoll?vsn=2.0.0&${query}`, {
    method,
    headers: body === undefined ? {} : { "content-type": "application/x-ndjson" },
    body,
  });
  assert.equal(res.status, 200, "LongPoll answers always carry HTTP 200");
  return res.json();
}

test("LongPoll: replay with since, live events, broadcasts and presence with a WebSocket peer, notifications", async () => {
  const alice = await register("alice");
  const bob = await register("bob");
  const ws = await workspaceWith(alice, [[bob, "editor"]]);
  const doc = (await api("POST", `/api/v1/workspaces/${ws}/documents`, alice.token, { title: "Before" }))
    .body.id;

  const lp = longPoll(alice.token);
  const events = [];
  const listeners = [];
  const channel = lp.channel(`workspace:${ws}`, { since: 1 });
  channel.on("event", (e) => {
    events.push(e);
    listeners.forEach((f) => f());
  });
  const presence = new Presence(channel);
  const changes = [];
  presence.onSync(() => changes.forEach((f) => f()));
  await join(channel);
  assert.equal(lp.transport, LongPoll);
  // The replay: what came after offset 1 (bob added, the document).
  await until("the replay", (f) => listeners.push(f), () => events.length >= 2);
  assert.deepEqual(
    events.map((e) => e.offset),
    [2, 3],
  );

  // A WebSocket peer on the same topic: presence shows both, broadcasts cross both ways.
  const wsSocket = connect(bob.token);
  const peer = wsSocket.channel(`workspace:${ws}`, {});
  const heardByPeer = deferred("the LongPoll client's broadcast");
  peer.on("broadcast", (m) => m.type === "from-lp" && heardByPeer.signal(m));
  await join(peer);
  await until(
    "both in presence",
    (f) => changes.push(f),
    () => presence.list((id) => id).sort().join() === [String(alice.id), String(bob.id)].sort().join(),
  );
  const sent = await push(channel, "broadcast", { type: "from-lp", n: 1 });
  assert.equal(sent.status, "ok");
  assert.equal((await heardByPeer.promise).from, alice.id);
  const heardByLp = deferred("the peer's broadcast");
  channel.on("broadcast", (m) => m.type === "from-ws" && heardByLp.signal(m));
  assert.equal((await push(peer, "broadcast", { type: "from-ws" })).status, "ok");
  assert.equal((await heardByLp.promise).from, bob.id);

  // A change through REST arrives as a live event.
  const res = await api("PATCH", `/api/v1/documents/${doc}`, bob.token, { title: "After" });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  await until("the live event", (f) => listeners.push(f), () => events.some((e) => e.kind === "document.updated"));

  // A mention notifies alice on her user topic, over LongPoll.
  const inbox = lp.channel(`user:${alice.id}`, {});
  const note = deferred("the notification");
  inbox.on("notification", (n) => note.signal(n));
  await join(inbox);
  const c = await api("POST", `/api/v1/documents/${doc}/comments`, bob.token, {
    body: `@${alice.email} look`,
  });
  assert.equal(c.status, 201, JSON.stringify(c.body));
  assert.equal((await note.promise).kind, "mention");

  // The peer leaves: presence on the LongPoll side follows.
  wsSocket.disconnect();
  await until("bob gone", (f) => changes.push(f), () => presence.list().length === 1);
  assert.ok((await metric("stoa_longpoll_sessions")) >= 1);
  lp.disconnect();
});

test("LongPoll: a removed member's channel closes, a logout ends the session, and its token is refused after", async () => {
  const alice = await register("alice");
  const bob = await register("bob");
  const ws = await workspaceWith(alice, [[bob, "editor"]]);
  const lp = longPoll(bob.token);
  const channel = lp.channel(`workspace:${ws}`, {});
  const closed = deferred("phx_close");
  channel.onClose(() => closed.signal());
  await join(channel);
  const r = await api("DELETE", `/api/v1/workspaces/${ws}/members/${bob.id}`, alice.token);
  assert.equal(r.status, 204);
  await closed.promise;
  lp.disconnect();

  // A login's logout ends its LongPoll session at once; the token opens no new one.
  const login = await api("POST", "/api/v1/auth/login", null, {
    email: alice.email,
    password: "correct horse battery",
  });
  assert.equal(login.status, 200);
  const token = login.body.access_token;
  const opened = await raw("GET", `token=${encodeURIComponent(token)}`);
  assert.equal(opened.status, 410);
  assert.match(opened.token, /^lp1\./);
  const session = `token=${encodeURIComponent(opened.token)}`;
  const waiting = raw("GET", session);
  const out = await api("POST", "/api/v1/auth/logout", null, { refresh_token: login.body.refresh_token });
  assert.equal(out.status, 204);
  assert.equal((await waiting).status, 410, "the waiting poll learns the session is gone");
  const again = await raw("GET", `token=${encodeURIComponent(token)}`);
  assert.equal(again.status, 403);
  assert.match(again.error, /session/);
});

test("LongPoll: bad input gets a clear answer and changes nothing", async () => {
  const alice = await register("alice");
  const ws = await workspaceWith(alice);
  const open = async () => {
    const o = await raw("GET", `token=${encodeURIComponent(alice.token)}`);
    assert.equal(o.status, 410);
    return `token=${encodeURIComponent(o.token)}`;
  };

  // Forged, truncated and foreign session tokens are gone sessions, not errors.
  for (const t of ["lp1.x", "lp1.6e.00000000000000000000000000000000.0", "lp1.6e6f6465.00000000000000000000000000000000.0"]) {
    assert.equal((await raw("GET", `token=${t}`)).status, 410, t);
    assert.equal((await raw("POST", `token=${t}`, "[null,null,\"phoenix\",\"heartbeat\",{}]")).status, 410, t);
  }
  // No access token, a forged one, another serializer version.
  assert.equal((await raw("GET", "")).status, 403);
  assert.equal((await raw("GET", "token=eyJhbGciOiJIUzI1NiJ9.e30.forged")).status, 403);
  const old = await fetch(`${BASE}/socket/longpoll?vsn=1.0.0&token=${alice.token}`);
  assert.equal((await old.json()).status, 403);

  // More than 100 frames in one request is refused whole; the session goes on.
  const s = await open();
  const many = Array.from({ length: 101 }, (_, i) => `[null,"${i}","phoenix","heartbeat",{}]`).join("\n");
  assert.equal((await raw("POST", s, many)).status, 400);
  // A join and a heartbeat in one request: both are answered (the heartbeat at once, the
  // join once it is authorised, as on a socket).
  const sent = await raw("POST", s, `["1","1","workspace:${ws}","phx_join",{}]\n[null,"2","phoenix","heartbeat",{}]`);
  assert.equal(sent.status, 200);
  let messages = [];
  let token = s;
  while (messages.length < 2) {
    const got = await raw("GET", token);
    assert.ok([200, 204].includes(got.status), JSON.stringify(got));
    token = `token=${encodeURIComponent(got.token)}`;
    messages = messages.concat((got.messages ?? []).map((m) => JSON.parse(m)));
  }
  assert.deepEqual(
    messages.map((m) => [m[1], m[3], m[4].status]).sort(),
    [
      ["1", "phx_reply", "ok"],
      ["2", "phx_reply", "ok"],
    ],
  );
  // A frame over realtime.max_frame_bytes ends the session, as it closes a socket (1009).
  const big = `["1","3","workspace:${ws}","broadcast",{"type":"x","pad":"${"x".repeat(70 * 1024)}"}]`;
  assert.equal((await raw("POST", token, big)).status, 200);
  let end = await raw("GET", token);
  while (end.status === 200 || end.status === 204) {
    end = await raw("GET", `token=${encodeURIComponent(end.token)}`);
  }
  assert.equal(end.status, 410);
});

test("LongPoll: sessions count against realtime.max_sockets_per_user like sockets", async () => {
  const carol = await register("carol");
  // The suite's server allows 100 per user (the default); a WebSocket takes one too.
  const socket = connect(carol.token);
  await until("the socket open", (f) => socket.onOpen(f), () => socket.isConnected());
  const opened = [];
  for (let i = 0; i < 99; i++) {
    const o = await raw("GET", `token=${encodeURIComponent(carol.token)}`);
    assert.equal(o.status, 410, JSON.stringify(o));
    opened.push(o.token);
  }
  const refused = await raw("GET", `token=${encodeURIComponent(carol.token)}`);
  assert.equal(refused.status, 403);
  assert.equal(refused.error, "too_many_sockets");
  socket.disconnect();
});

test("LongPoll: an answer lost on the way is given again to the poll that still holds the old token", async () => {
  const alice = await register("alice");
  const ws = await workspaceWith(alice);
  const o = await raw("GET", `token=${encodeURIComponent(alice.token)}`);
  const first = `token=${encodeURIComponent(o.token)}`;
  assert.equal((await raw("POST", first, `["1","1","workspace:${ws}","phx_join",{}]`)).status, 200);
  const got = await raw("GET", first);
  assert.equal(got.status, 200);
  // The client never read `got`: it polls again with the token it had.
  const again = await raw("GET", first);
  assert.equal(again.status, 200);
  assert.deepEqual(again.messages, got.messages);
  assert.equal(again.token, got.token);
  // With the new token, the batch counts as received: nothing more is pending.
  const r = await api("POST", `/api/v1/workspaces/${ws}/documents`, alice.token, { title: "Next" });
  assert.equal(r.status, 201);
  const next = await raw("GET", `token=${encodeURIComponent(got.token)}`);
  assert.equal(next.status, 200);
  const frames = next.messages.map((m) => JSON.parse(m));
  assert.ok(frames.every((f) => f[3] === "event"), JSON.stringify(frames));
});

test("LongPoll: a session nobody polls ends, and its presence leaves (realtime.longpoll_idle_ms)", async () => {
  const alice = await register("alice");
  const bob = await register("bob");
  const ws = await workspaceWith(alice, [[bob, "editor"]]);
  const watcher = connect(alice.token);
  const channel = watcher.channel(`workspace:${ws}`, {});
  const presence = new Presence(channel);
  const changes = [];
  presence.onSync(() => changes.forEach((f) => f()));
  await join(channel);

  // bob joins over LongPoll by hand, polls for his join reply, then goes silent (a laptop
  // lid closed: no request ever says goodbye).
  const o = await raw("GET", `token=${encodeURIComponent(bob.token)}`);
  const token = `token=${encodeURIComponent(o.token)}`;
  assert.equal((await raw("POST", token, `["1","1","workspace:${ws}","phx_join",{}]`)).status, 200);
  assert.equal((await raw("GET", token)).status, 200);
  await until("bob present", (f) => changes.push(f), () => presence.list().length === 2);
  assert.ok((await metric("stoa_longpoll_sessions")) >= 1);
  const silent = Date.now();
  await until("bob gone", (f) => changes.push(f), () => presence.list().length === 1, 15000);
  const took = Date.now() - silent;
  // The suite's server ends sessions after 3 s without a poll (it checks every second).
  assert.ok(took >= 2500 && took < 6000, `presence left after ${took} ms`);
  assert.equal((await raw("GET", token)).status, 410);
  watcher.disconnect();
});

test("longPollFallbackMs: a client whose WebSocket upgrades are refused falls back to LongPoll and works", async () => {
  const alice = await register("alice");
  const ws = await workspaceWith(alice);
  const storage = memoryStorage();
  const socket = new Socket(`${BASE}/socket`, {
    transport: RefusedWebSocket,
    longPollFallbackMs: 500,
    sessionStorage: storage,
    params: { token: alice.token },
    reconnectAfterMs: () => 50,
    rejoinAfterMs: () => 50,
  });
  socket.connect();
  const channel = socket.channel(`workspace:${ws}`, {});
  const got = deferred("the event over the fallback");
  channel.on("event", (e) => e.kind === "document.created" && got.signal(e));
  await join(channel);
  assert.equal(socket.transport, LongPoll);
  assert.equal(storage.getItem("phx:fallback:LongPoll"), "true", "the fallback is remembered");
  const r = await api("POST", `/api/v1/workspaces/${ws}/documents`, alice.token, { title: "Via LP" });
  assert.equal(r.status, 201);
  assert.equal((await got.promise).data.title, "Via LP");
  socket.disconnect();
});
