// The stock phoenix client over wss:// against a node serving TLS itself
// (server.tls_cert/tls_key). STOA_URL is https://localhost:PORT; the test certificate is
// trusted through NODE_EXTRA_CA_CERTS, as a deployment's own CA would be.
import { test } from "node:test";
import assert from "node:assert/strict";

import { BASE, WS_BASE, api, register, workspaceWith, connect, join, push, deferred } from "../support.mjs";

test("REST over HTTPS carries the security headers, HSTS included", async () => {
  assert.match(BASE, /^https:/);
  // The API's strict policy; the console's own pages (any other path) run only the node's scripts.
  for (const [path, policy] of [
    ["/healthz", /default-src 'none'/],
    ["/api/v1/me", /default-src 'none'/],
    ["/api/no/such/route", /default-src 'none'/],
    ["/no/such/page", /script-src 'self';/],
  ]) {
    const res = await fetch(`${BASE}${path}`);
    assert.equal(res.headers.get("x-content-type-options"), "nosniff", path);
    assert.match(res.headers.get("content-security-policy"), policy, path);
    // Browsers that once reached the node over TLS never try it in the clear for a year.
    assert.equal(res.headers.get("strict-transport-security"), "max-age=31536000", path);
  }
});

test("phoenix.js joins, broadcasts and receives events over wss://", async () => {
  assert.match(WS_BASE, /^wss:/);
  const alice = await register("alice");
  const bob = await register("bob");
  const ws = await workspaceWith(alice, [[bob, "editor"]]);
  const a = connect(alice.token);
  const b = connect(bob.token);
  try {
    const ca = a.channel(`workspace:${ws}`, {});
    const cb = b.channel(`workspace:${ws}`, {});
    await join(ca);
    await join(cb);
    const heard = deferred("the broadcast over wss");
    cb.on("broadcast", (p) => heard.signal(p));
    const event = deferred("the event over wss");
    ca.on("event", (e) => {
      if (e.kind === "document.created") event.signal(e);
    });
    assert.equal((await push(ca, "broadcast", { type: "typing" })).status, "ok");
    assert.deepEqual(await heard.promise, { type: "typing", from: alice.id });
    const doc = await api("POST", `/api/v1/workspaces/${ws}/documents`, bob.token, {
      title: "Over TLS",
      content: "",
    });
    assert.equal(doc.status, 201);
    assert.equal((await event.promise).subject, `document:${doc.body.id}`);
  } finally {
    a.disconnect();
    b.disconnect();
  }
});

test("plain ws:// to the TLS port is refused", async () => {
  const { default: WebSocket } = await import("ws");
  const plain = WS_BASE.replace(/^wss:/, "ws:");
  const done = deferred("the plain socket to fail");
  const sock = new WebSocket(`${plain}/socket/websocket?token=x&vsn=2.0.0`);
  sock.on("open", () => done.signal("open"));
  sock.on("error", () => done.signal("error"));
  sock.on("close", () => done.signal("closed"));
  assert.notEqual(await done.promise, "open");
  sock.terminate();
});
