// The Phoenix Channels endpoint, judged by the stock `phoenix` npm client.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Presence } from "phoenix";
import WebSocket from "ws";

import {
  WS_BASE,
  api,
  connect,
  deferred,
  join,
  metric,
  push,
  register,
  until,
  workspaceWith,
} from "./support.mjs";

test("join, receive REST changes as events, leave", async () => {
  const alice = await register("alice");
  const ws = await workspaceWith(alice);
  const socket = connect(alice.token);
  const channel = socket.channel(`workspace:${ws}`, {});
  const joined = await join(channel);
  assert.equal(joined.offset, 1);

  const got = deferred("document.created event");
  channel.on("event", (e) => e.kind === "document.created" && got.signal(e));
  const res = await api("POST", `/api/v1/workspaces/${ws}/documents`, alice.token, {
    title: "Plan",
  });
  assert.equal(res.status, 201);
  const event = await got.promise;
  assert.equal(event.offset, 2);
  assert.equal(event.actor, alice.id);
  assert.equal(event.subject, `document:${res.body.id}`);
  assert.equal(event.data.title, "Plan");

  const left = deferred("leave ok");
  channel.leave().receive("ok", () => left.signal());
  await left.promise;
  assert.equal(channel.state, "closed");
  socket.disconnect();
});

test("presence converges across three clients, including leave on disconnect", async () => {
  const alice = await register("alice");
  const bob = await register("bob");
  const carol = await register("carol");
  const ws = await workspaceWith(alice, [
    [bob, "editor"],
    [carol, "viewer"],
  ]);
  const doc = (await api("POST", `/api/v1/workspaces/${ws}/documents`, alice.token, { title: "P" }))
    .body.id;
  const users = [alice, bob, carol];
  const clients = users.map((u) => {
    const socket = connect(u.token);
    const channel = socket.channel(`document:${doc}`, {});
    const presence = new Presence(channel);
    const listeners = [];
    presence.onSync(() => listeners.forEach((f) => f()));
    return { user: u, socket, channel, presence, onChange: (f) => listeners.push(f) };
  });
  for (const c of clients) await join(c.channel);

  const keys = (c) => c.presence.list((id) => Number(id)).sort((a, b) => a - b);
  const everyone = users.map((u) => u.id).sort((a, b) => a - b);
  for (const c of clients) {
    await until("all three present", c.onChange, () => keys(c).join() === everyone.join());
  }

  // A meta update (cursor) reaches the others as one meta per connection.
  const [a, b, c] = clients;
  assert.equal((await push(a.channel, "presence:update", { cursor: 7 })).status, "ok");
  const cursorOf = (client) =>
    client.presence.list((id, { metas }) => (Number(id) === alice.id ? metas : null)).find(Boolean);
  await until("bob sees alice's cursor", b.onChange, () => {
    const metas = cursorOf(b);
    return metas?.length === 1 && metas[0].cursor === 7;
  });

  // Carol's connection drops: the other two see her leave.
  c.socket.disconnect();
  const rest = everyone.filter((id) => id !== carol.id).join();
  await until("carol gone for alice", a.onChange, () => keys(a).join() === rest);
  await until("carol gone for bob", b.onChange, () => keys(b).join() === rest);
  a.socket.disconnect();
  b.socket.disconnect();
});

test("forced disconnects with rejoin from `since` lose and duplicate nothing while another client writes", async () => {
  const alice = await register("alice");
  const writer = await register("writer");
  const ws = await workspaceWith(alice, [[writer, "editor"]]);
  const doc = (await api("POST", `/api/v1/workspaces/${ws}/documents`, alice.token, { title: "P" }))
    .body.id;
  const WRITES = 150;
  const total = 3 + WRITES; // workspace.created, member.added, document.created, comments

  const seen = [];
  const socket = connect(alice.token);
  // The stock client re-evaluates join params at every rejoin: resume after what we saw.
  const channel = socket.channel(`workspace:${ws}`, () => ({ since: seen.at(-1) ?? 0 }));
  const listeners = [];
  channel.on("event", (e) => {
    seen.push(e.offset);
    listeners.forEach((f) => f());
  });
  let rejoins = 0;
  await join(channel);

  const writes = (async () => {
    let next = 0;
    const worker = async () => {
      while (next < WRITES) {
        const i = next++;
        const res = await api("POST", `/api/v1/documents/${doc}/comments`, writer.token, {
          body: `comment ${i}`,
        });
        assert.equal(res.status, 201);
      }
    };
    await Promise.all(Array.from({ length: 6 }, worker));
  })();

  // Cut the connection twice while writes are under way; phoenix.js reconnects and rejoins.
  const onEvent = (f) => listeners.push(f);
  for (const mark of [30, 90]) {
    await until(`${mark} events`, onEvent, () => seen.length >= mark);
    const rejoined = deferred("rejoin");
    const before = socket.conn;
    socket.onOpen(() => socket.conn !== before && rejoined.signal());
    socket.conn.close(4000, "test cut");
    await rejoined.promise;
    rejoins += 1;
  }
  await writes;
  await until("every event", onEvent, () => seen.length >= total);
  assert.equal(rejoins, 2);
  assert.deepEqual(
    seen,
    Array.from({ length: total }, (_, i) => i + 1),
    "offsets 1..n, each once, in order",
  );
  socket.disconnect();
});

test("unauthorised sockets and non-member joins are refused", async () => {
  const alice = await register("alice");
  const mallory = await register("mallory");
  const ws = await workspaceWith(alice);

  const bad = connect("not-a-token", { reconnectAfterMs: () => 60000 });
  const refused = deferred("socket error");
  bad.onError(() => refused.signal());
  await refused.promise;
  bad.disconnect();

  const socket = connect(mallory.token);
  for (const topic of [`workspace:${ws}`, `user:${alice.id}`]) {
    const channel = socket.channel(topic, {});
    await assert.rejects(join(channel), (e) => e.response?.reason === "unauthorized");
    channel.leave();
  }
  socket.disconnect();
});

test("a flood is answered with rate_limited", async () => {
  const alice = await register("alice");
  const ws = await workspaceWith(alice);
  const socket = connect(alice.token);
  const channel = socket.channel(`workspace:${ws}`, {});
  await join(channel);
  const replies = await Promise.all(
    Array.from({ length: 80 }, (_, i) => push(channel, "broadcast", { i })),
  );
  const limited = replies.filter((r) => r.status === "error" && r.response.reason === "rate_limited");
  assert.ok(limited.length >= 20, `${limited.length} of 80 refused`);
  assert.ok(replies.some((r) => r.status === "ok"));
  socket.disconnect();
});

test("a client that stops reading is disconnected with a reason", async () => {
  const alice = await register("alice");
  const ws = await workspaceWith(alice);
  const topic = `workspace:${ws}`;

  // A raw socket that joins, then stops reading from TCP.
  const raw = new WebSocket(`${WS_BASE}/socket/websocket?vsn=2.0.0&token=${alice.token}`);
  await new Promise((resolve, reject) => {
    raw.once("open", resolve);
    raw.once("error", reject);
  });
  const joined = deferred("raw join reply");
  raw.on("message", (data) => {
    const [, ref, , event] = JSON.parse(data.toString());
    if (ref === "1" && event === "phx_reply") joined.signal();
  });
  raw.send(JSON.stringify(["1", "1", topic, "phx_join", { presence: false }]));
  await joined.promise;
  const closed = deferred("slow consumer closed", 60000);
  raw.on("close", (code, reason) => closed.signal({ code, reason: reason.toString() }));
  raw._socket.pause();

  const socket = connect(alice.token);
  const channel = socket.channel(topic, {});
  await join(channel);
  const blob = "z".repeat(15000);
  const before = await metric("stoa_ws_slow_consumers_total");
  let sent = 0;
  while ((await metric("stoa_ws_slow_consumers_total")) <= before) {
    const batch = Array.from({ length: 20 }, () => push(channel, "broadcast", { blob }));
    for (const r of await Promise.all(batch)) {
      assert.ok(r.status === "ok" || r.response?.reason === "rate_limited", JSON.stringify(r));
    }
    sent += 20;
    assert.ok(sent < 20000, "never disconnected");
  }
  raw._socket.resume();
  const { code } = await closed.promise;
  assert.ok([1006, 1008].includes(code), `closed with ${code}`);
  socket.disconnect();
});
