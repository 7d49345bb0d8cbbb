// The product's own tokens (auth.external), judged by the stock phoenix and y-websocket
// clients: the example backend (docs/examples/product-backend.mjs) mints them, HS256 with a
// shared secret and RS256 from its JWKS, and rotates its key mid-suite. Run by
// tests/identity.rs, which starts the backend and a Stoa configured for it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHmac, generateKeyPairSync, sign } from "node:crypto";
import WebSocket from "ws";
import * as Y from "yjs";
import { WebsocketProvider } from "y-websocket";

import { BASE, WS_BASE, api, connect, deferred, join, push } from "../support.mjs";

const PRODUCT = process.env.PRODUCT_URL;
const DIRECTORY = process.env.DIRECTORY_TOKEN;
const ISSUER = "https://product.example";
let n = 0;
const unique = (name) => `${name}-${process.pid}-${++n}`;

async function mint(claims) {
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(claims)) {
    if (v !== undefined) query.set(k, typeof v === "string" ? v : JSON.stringify(v));
  }
  const res = await fetch(`${PRODUCT}/token?${query}`);
  return (await res.json()).token;
}

async function directory(method, path, body, token = DIRECTORY) {
  const res = await fetch(`${BASE}/api/v1/directory${path}`, {
    method,
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

/** A workspace the product made, with a document its owner wrote. */
async function productWorkspace() {
  const external = unique("acme");
  const ws = await directory("PUT", `/workspaces/${external}`, { name: "Acme" });
  assert.equal(ws.status, 201, JSON.stringify(ws.body));
  const owner = unique("owner");
  assert.equal((await directory("PUT", `/users/${owner}`, { display_name: "Owner" })).status, 200);
  const put = await directory("PUT", `/workspaces/${external}/members/${owner}`, { role: "owner" });
  assert.equal(put.status, 200, JSON.stringify(put.body));
  const ownerToken = await mint({ sub: owner, alg: "HS256" });
  const doc = await api("POST", `/api/v1/workspaces/${ws.body.id}/documents`, ownerToken, {
    title: "Plan",
    content: "hello",
  });
  assert.equal(doc.status, 201, JSON.stringify(doc.body));
  return { external, id: ws.body.id, doc: doc.body.id, ownerToken };
}

function forge(claims, { alg = "RS256", kid, secret } = {}) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString("base64url");
  const now = Date.now() / 1000;
  const body = { iss: ISSUER, iat: now, exp: Math.floor(now) + 600, ...claims };
  const input = `${b64({ alg, typ: "JWT", kid })}.${b64(body)}`;
  let signature;
  if (alg === "HS256") signature = createHmac("sha256", secret).update(input).digest();
  else if (alg === "none") signature = Buffer.alloc(0);
  else signature = sign("sha256", Buffer.from(input), generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey);
  return `${input}.${signature.toString("base64url")}`;
}

function openDoc(doc, token) {
  const ydoc = new Y.Doc();
  const provider = new WebsocketProvider(`${WS_BASE}/yjs`, String(doc), ydoc, {
    WebSocketPolyfill: WebSocket,
    params: { token },
    disableBc: true,
    maxBackoffTime: 200,
  });
  return { ydoc, provider, text: ydoc.getText("content") };
}

function synced(provider) {
  if (provider.synced) return Promise.resolve();
  const { promise, signal } = deferred("sync");
  provider.once("sync", (ok) => ok && signal());
  return promise;
}

test("an HS256 token provisions its user on first sight, with the claims' e-mail and name", async () => {
  const sub = unique("hs");
  const email = `${sub}@product.example`;
  const token = await mint({ sub, email, name: "Hana Sato", alg: "HS256" });
  const me = await api("GET", "/api/v1/me", token);
  assert.equal(me.status, 200, JSON.stringify(me.body));
  assert.equal(me.body.email, email);
  assert.equal(me.body.display_name, "Hana Sato");
  // The same user on every later token, with a name the product changed.
  const again = await api("GET", "/api/v1/me", await mint({ sub, email, name: "Hana S.", alg: "HS256" }));
  assert.equal(again.body.id, me.body.id);
  assert.equal(again.body.display_name, "Hana S.");
  // No password signs in to an account the product's tokens made.
  const login = await api("POST", "/api/v1/auth/login", null, { email, password: "anything at all" });
  assert.equal(login.status, 401);
});

test("RS256 tokens from the JWKS open channels and documents with the roles their claims grant", async () => {
  const ws = await productWorkspace();
  const sub = unique("rs");
  const token = await mint({ sub, name: "Rui", roles: { [ws.external]: "editor" } });
  const socket = connect(token);
  try {
    const channel = socket.channel(`workspace:${ws.id}`, {});
    await join(channel);
    const member = await api("GET", `/api/v1/workspaces/${ws.id}`, token);
    assert.equal(member.body.role, "editor");
    const editor = openDoc(ws.doc, token);
    try {
      await synced(editor.provider);
      assert.equal(editor.text.toString(), "hello");
    } finally {
      editor.provider.destroy();
    }
  } finally {
    socket.disconnect();
  }
});

test("a role taken away in a refreshed token closes the channel and the editor at once", async () => {
  const ws = await productWorkspace();
  const sub = unique("gone");
  const token = await mint({ sub, roles: { [ws.external]: "editor" } });
  const socket = connect(token);
  const editor = openDoc(ws.doc, token);
  try {
    const channel = socket.channel(`workspace:${ws.id}`, {});
    await join(channel);
    await synced(editor.provider);
    const channelClosed = deferred("the channel's close");
    channel.on("phx_close", (payload) => channelClosed.signal(payload));
    const editorClosed = deferred("the editor's close");
    editor.provider.on("connection-close", (event) => editorClosed.signal(event));
    // The refresh, as a client sends it on its channels (here its own, which stays): a
    // token without the role.
    const me = await api("GET", "/api/v1/me", token);
    const own = socket.channel(`user:${me.body.id}`, {});
    await join(own);
    const fresh = await mint({ sub, roles: {} });
    const reply = await push(own, "access_token", { token: fresh });
    assert.equal(reply.status, "ok", JSON.stringify(reply));
    const closed = await channelClosed.promise;
    assert.equal(closed.reason, "membership_revoked");
    const event = await editorClosed.promise;
    assert.equal(event.reason, "membership_revoked");
    const after = await api("GET", `/api/v1/workspaces/${ws.id}`, fresh);
    assert.equal(after.status, 404);
  } finally {
    editor.provider.destroy();
    socket.disconnect();
  }
});

test("an older token still in use never grants back a role a newer one took away", async () => {
  const ws = await productWorkspace();
  const sub = unique("stale");
  const older = await mint({ sub, roles: { [ws.external]: "admin" } });
  const newer = await mint({ sub, roles: { [ws.external]: "viewer" } });
  assert.equal((await api("GET", `/api/v1/workspaces/${ws.id}`, newer)).body.role, "viewer");
  const stale = await api("GET", `/api/v1/workspaces/${ws.id}`, older);
  assert.equal(stale.status, 200);
  assert.equal(stale.body.role, "viewer", "the older token's admin role was not applied");
  // A viewer's editor is read-only: its edits reach nobody.
  const members = await api("GET", `/api/v1/workspaces/${ws.id}/members`, ws.ownerToken);
  const row = members.body.items.find((m) => m.role === "viewer");
  assert.ok(row, "the viewer is listed as a member");
});

test("tokens signed by anyone else are refused on REST, channels and Yjs", async () => {
  const ws = await productWorkspace();
  const roles = { [ws.external]: "owner" };
  const jwks = await (await fetch(`${PRODUCT}/jwks.json`)).json();
  const forged = [
    // Another RSA key claiming the product's key id.
    forge({ sub: "mallory", stoa_roles: roles }, { kid: jwks.keys[0].kid }),
    // HS256 with a wrong secret.
    forge({ sub: "mallory", stoa_roles: roles }, { alg: "HS256", secret: "not the shared secret, not at all" }),
    // HS256 keyed with the product's public RSA key (the classic algorithm confusion).
    forge({ sub: "mallory", stoa_roles: roles }, { alg: "HS256", secret: JSON.stringify(jwks.keys[0]) }),
    // No signature at all.
    forge({ sub: "mallory", stoa_roles: roles }, { alg: "none" }),
  ];
  for (const token of forged) {
    const rest = await api("GET", `/api/v1/workspaces/${ws.id}`, token);
    assert.equal(rest.status, 401, JSON.stringify(rest.body));
    const upgrade = await new Promise((resolve) => {
      const socket = new WebSocket(`${WS_BASE}/socket/websocket?vsn=2.0.0&token=${token}`);
      socket.on("unexpected-response", (_, res) => resolve(res.statusCode));
      socket.on("open", () => resolve(101));
      socket.on("error", () => resolve("error"));
    });
    assert.equal(upgrade, 401);
    const yjs = await new Promise((resolve) => {
      const socket = new WebSocket(`${WS_BASE}/yjs/${ws.doc}?token=${token}`);
      socket.on("unexpected-response", (_, res) => resolve(res.statusCode));
      socket.on("open", () => resolve(101));
      socket.on("error", () => resolve("error"));
    });
    assert.equal(yjs, 401);
  }
  // Nothing of mallory was made.
  const members = await api("GET", `/api/v1/workspaces/${ws.id}/members`, ws.ownerToken);
  assert.equal(members.body.items.length, 1);
});

test("a key rotated in is used at once; a key rotated out signs nothing new", async () => {
  const sub = unique("rot");
  const before = await mint({ sub });
  const beforeUnused = await mint({ sub: unique("rot") });
  assert.equal((await api("GET", "/api/v1/me", before)).status, 200);
  const rotated = await (await fetch(`${PRODUCT}/rotate`, { method: "POST" })).json();
  const after = await mint({ sub });
  const header = JSON.parse(Buffer.from(after.split(".")[0], "base64url").toString());
  assert.equal(header.kid, rotated.kid);
  const me = await api("GET", "/api/v1/me", after);
  assert.equal(me.status, 200, JSON.stringify(me.body));
  // A token of the old key that Stoa never saw: the key is no longer published.
  const old = await api("GET", "/api/v1/me", beforeUnused);
  assert.equal(old.status, 401);
  assert.match(old.body.detail, /key/);
});

test("the directory API needs an API token with its scope, and names what is wrong", async () => {
  assert.equal((await directory("PUT", "/users/x", {}, "stoa_forged")).status, 401);
  assert.equal((await directory("PUT", "/users/x", {}, await mint({ sub: "x" }))).status, 401);
  const bad = await directory("PUT", "/workspaces/w1", { name: "" });
  assert.equal(bad.status, 422);
  const unknown = await directory("PUT", `/workspaces/${unique("none")}/members/${unique("nobody")}`, { role: "viewer" });
  assert.equal(unknown.status, 404);
  // A membership the directory sets is live for an open socket: a viewer becomes an editor.
  const ws = await productWorkspace();
  const sub = unique("dir");
  await directory("PUT", `/users/${sub}`, { email: `${sub}@product.example`, display_name: "Dee" });
  const put = await directory("PUT", `/workspaces/${ws.external}/members/${sub}`, { role: "viewer" });
  assert.equal(put.status, 200);
  assert.equal(put.body.role, "viewer");
  const token = await mint({ sub });
  assert.equal((await api("GET", `/api/v1/workspaces/${ws.id}`, token)).body.role, "viewer");
  const last = await directory("DELETE", `/workspaces/${ws.external}/members/${unique("nobody")}`);
  assert.equal(last.status, 404);
  const ownerless = await directory("GET", "/users/x");
  assert.equal(ownerless.status, 405);
});

test("the product deletes its user: sessions end, the membership goes, what they wrote stays", async () => {
  const ws = await productWorkspace();
  const sub = unique("leaver");
  const token = await mint({ sub, email: `${sub}@product.example`, name: "Lee", roles: { [ws.external]: "editor" } });
  const comment = await api("POST", `/api/v1/documents/${ws.doc}/comments`, token, { body: "written before leaving" });
  assert.equal(comment.status, 201, JSON.stringify(comment.body));
  const socket = connect(token);
  const me = await api("GET", "/api/v1/me", token);
  const own = socket.channel(`user:${me.body.id}`, {});
  await join(own);
  const closed = deferred("the socket's close");
  socket.onClose((e) => closed.signal(e));
  assert.equal((await api("DELETE", "/api/v1/me", token, { password: "x" })).status, 409, "no password to give");
  const gone = await directory("DELETE", `/users/${sub}`);
  assert.equal(gone.status, 204, JSON.stringify(gone.body));
  assert.equal((await closed.promise).reason, "account_deleted");
  socket.disconnect();
  assert.equal((await api("GET", "/api/v1/me", token)).status, 401);
  const kept = await api("GET", `/api/v1/comments/${comment.body.id}`, ws.ownerToken);
  assert.equal(kept.body.body, "written before leaving");
  const members = await api("GET", `/api/v1/workspaces/${ws.id}/members`, ws.ownerToken);
  assert.ok(!members.body.items.some((m) => m.user_id === me.body.id));
  assert.equal((await directory("DELETE", `/users/${sub}`)).status, 404);
});
