// Collaborative documents over y-websocket, judged by the stock `yjs` and `y-websocket`
// packages: the WebsocketProvider a browser editor binding uses, unchanged.
import { test } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import * as Y from "yjs";
import { WebsocketProvider } from "y-websocket";

import {
  WS_BASE,
  api,
  connect,
  deferred,
  join,
  metric,
  register,
  until,
  workspaceWith,
} from "./support.mjs";
import { open, synced, textIs } from "./ydoc.mjs";


async function documentIn(ws, owner) {
  const res = await api("POST", `/api/v1/workspaces/${ws}/documents`, owner.token, { title: "Y" });
  assert.equal(res.status, 201);
  return res.body.id;
}

test("two editors converge after concurrent edits", async () => {
  const alice = await register("alice");
  const bob = await register("bob");
  const ws = await workspaceWith(alice, [[bob, "editor"]]);
  const doc = await documentIn(ws, alice);
  const a = open(doc, alice.token);
  const b = open(doc, bob.token);
  try {
    await Promise.all([synced(a.provider), synced(b.provider)]);
    a.text.insert(0, "hello");
    await textIs(b, "hello");
    // Concurrent: both type before seeing the other's edit.
    a.text.insert(5, " alice");
    b.text.insert(0, "bob: ");
    const want = a.ydoc.getText("content").toString();
    await until(
      "convergence",
      (f) => {
        a.text.observe(f);
        b.text.observe(f);
      },
      () => a.text.toString() === b.text.toString() && a.text.toString().length === 16,
    );
    assert.ok(a.text.toString().includes("alice"), want);
    assert.ok(a.text.toString().startsWith("bob: "));
    assert.ok((await metric("stoa_yjs_updates_total")) >= 3);
    assert.ok((await metric("stoa_yjs_documents_open")) >= 1);
    assert.ok((await metric("stoa_yjs_connections")) >= 2);
  } finally {
    a.provider.destroy();
    b.provider.destroy();
  }
});

test("a late joiner receives the document, and awareness is seen and cleared on disconnect", async () => {
  const alice = await register("alice");
  const bob = await register("bob");
  const ws = await workspaceWith(alice, [[bob, "viewer"]]);
  const doc = await documentIn(ws, alice);
  const a = open(doc, alice.token);
  await synced(a.provider);
  a.text.insert(0, "written before bob came");
  a.provider.awareness.setLocalStateField("user", { name: "alice" });

  const b = open(doc, bob.token);
  try {
    await textIs(b, "written before bob came");
    const aliceId = a.ydoc.clientID;
    const states = b.provider.awareness;
    await until(
      "alice's awareness at bob",
      (f) => states.on("change", f),
      () => states.getStates().get(aliceId)?.user?.name === "alice",
    );
    a.provider.destroy();
    await until(
      "alice's awareness cleared",
      (f) => states.on("change", f),
      () => !states.getStates().has(aliceId),
    );
  } finally {
    a.provider.destroy();
    b.provider.destroy();
  }
});

test("a viewer's edit is refused and never reaches the others", async () => {
  const alice = await register("alice");
  const vera = await register("vera");
  const ws = await workspaceWith(alice, [[vera, "viewer"]]);
  const doc = await documentIn(ws, alice);
  const a = open(doc, alice.token);
  const v = open(doc, vera.token);
  try {
    await Promise.all([synced(a.provider), synced(v.provider)]);
    const refused = deferred("permission denied");
    const warn = console.warn;
    console.warn = (...args) => {
      if (String(args[0]).includes("Permission denied")) refused.signal(args.join(" "));
      else warn(...args);
    };
    try {
      v.text.insert(0, "vandalism");
      assert.match(await refused.promise, /read-only/);
    } finally {
      console.warn = warn;
    }
    // An edit made after the refused one reaches the viewer; the refused one reaches no one.
    a.text.insert(0, "fine");
    await until(
      "alice's edit at the viewer",
      (f) => v.text.observe(f),
      () => v.text.toString().includes("fine"),
    );
    const c = open(doc, alice.token);
    try {
      await synced(c.provider);
      assert.equal(c.text.toString(), "fine", "the server's copy has no viewer edit");
    } finally {
      c.provider.destroy();
    }
    assert.equal(a.text.toString(), "fine");
  } finally {
    a.provider.destroy();
    v.provider.destroy();
  }
});

test("a non-member, a forged token and an unknown document are refused before any content", async () => {
  const alice = await register("alice");
  const mallory = await register("mallory");
  const ws = await workspaceWith(alice);
  const doc = await documentIn(ws, alice);
  const status = (path) =>
    new Promise((resolve) => {
      const sock = new WebSocket(`${WS_BASE}${path}`);
      sock.on("unexpected-response", (_req, res) => resolve(res.statusCode));
      sock.on("open", () => {
        sock.close();
        resolve(101);
      });
      sock.on("error", () => {});
    });
  assert.equal(await status(`/yjs/${doc}?token=${mallory.token}`), 404);
  assert.equal(await status(`/yjs/${doc}?token=forged.${alice.token}`), 401);
  assert.equal(await status(`/yjs/${doc}`), 401);
  assert.equal(await status(`/yjs/999999999?token=${alice.token}`), 404);
  assert.equal(await status(`/yjs/not-a-number?token=${alice.token}`), 404);
  assert.equal(await status(`/yjs/${doc}?token=${alice.token}`), 101);
});

test("removing a member closes their Yjs socket at once", async () => {
  const alice = await register("alice");
  const bob = await register("bob");
  const ws = await workspaceWith(alice, [[bob, "editor"]]);
  const doc = await documentIn(ws, alice);
  const b = open(doc, bob.token);
  try {
    await synced(b.provider);
    const closed = deferred("bob's socket closed");
    b.provider.on("connection-close", (event) => closed.signal(event));
    const res = await api("DELETE", `/api/v1/workspaces/${ws}/members/${bob.id}`, alice.token);
    assert.equal(res.status, 204);
    const event = await closed.promise;
    assert.equal(event.code, 1008);
    assert.equal(event.reason, "membership_revoked");
  } finally {
    b.provider.destroy();
  }
});

test("live text reaches REST, edits reach the event feed, and a REST write reaches editors", async () => {
  const alice = await register("alice");
  const bob = await register("bob");
  const ws = await workspaceWith(alice, [[bob, "editor"]]);
  const doc = await documentIn(ws, alice);
  const socket = connect(alice.token);
  const channel = socket.channel(`workspace:${ws}`, {});
  await join(channel);
  const edited = [];
  const heard = deferred("document.edited events from both editors");
  channel.on("event", (e) => {
    if (e.kind !== "document.edited") return;
    edited.push(e);
    if (new Set(edited.map((x) => x.actor)).size === 2) heard.signal();
  });
  const a = open(doc, alice.token);
  const b = open(doc, bob.token);
  try {
    await Promise.all([synced(a.provider), synced(b.provider)]);
    for (const ch of "typed") a.text.insert(a.text.length, ch);
    await textIs(b, "typed");
    b.text.insert(0, "bob ");
    await textIs(a, "bob typed");
    await heard.promise;
    // One event per editor for the window, not one per keystroke.
    assert.equal(edited.filter((e) => e.actor === alice.id).length, 1);
    assert.equal(edited.find((e) => e.actor === alice.id).data.edits, 5);
    const version = edited.at(-1).data.version;
    const rest = await api("GET", `/api/v1/documents/${doc}`, alice.token);
    assert.equal(rest.body.content, "bob typed");
    assert.equal(rest.body.version, version);

    // A REST write with If-Match: editors receive it as a change of their text.
    const stale = await fetch(`${WS_BASE.replace(/^ws/, "http")}/api/v1/documents/${doc}`, {
      method: "PATCH",
      headers: {
        authorization: `Bearer ${alice.token}`,
        "content-type": "application/json",
        "if-match": `"${version - 1}"`,
      },
      body: JSON.stringify({ content: "stale" }),
    });
    assert.equal(stale.status, 412);
    const write = await fetch(`${WS_BASE.replace(/^ws/, "http")}/api/v1/documents/${doc}`, {
      method: "PATCH",
      headers: {
        authorization: `Bearer ${alice.token}`,
        "content-type": "application/json",
        "if-match": `"${version}"`,
      },
      body: JSON.stringify({ content: "bob typed, then REST wrote" }),
    });
    assert.equal(write.status, 200);
    await Promise.all([textIs(a, "bob typed, then REST wrote"), textIs(b, "bob typed, then REST wrote")]);
  } finally {
    a.provider.destroy();
    b.provider.destroy();
    socket.disconnect();
  }
});

test("a document made over REST opens with its text, and a TipTap fragment is read as lines and written in blocks", async () => {
  const alice = await register("alice");
  const ws = await workspaceWith(alice);
  const made = await api("POST", `/api/v1/workspaces/${ws}/documents`, alice.token, {
    title: "R",
    content: "made over REST",
  });
  assert.equal(made.status, 201);
  const a = open(made.body.id, alice.token);
  try {
    await textIs(a, "made over REST");
  } finally {
    a.provider.destroy();
  }

  const doc = await documentIn(ws, alice);
  const t = open(doc, alice.token);
  try {
    await synced(t.provider);
    const socket = connect(alice.token);
    const channel = socket.channel(`workspace:${ws}`, {});
    await join(channel);
    const heard = deferred("document.edited");
    channel.on("event", (e) => e.kind === "document.edited" && heard.signal(e));
    const fragment = t.ydoc.getXmlFragment("default");
    t.ydoc.transact(() => {
      for (const line of ["First paragraph", "Second one"]) {
        const p = new Y.XmlElement("paragraph");
        p.insert(0, [new Y.XmlText(line)]);
        fragment.insert(fragment.length, [p]);
      }
    });
    await heard.promise;
    const rest = await api("GET", `/api/v1/documents/${doc}`, alice.token);
    assert.equal(rest.body.content, "First paragraph\nSecond one");
    // A REST write reaches the editor in its fragment: the block it changed, as a
    // paragraph; the one it kept, the same node.
    const first = fragment.get(0);
    const blocks = () =>
      fragment.toArray().map((p) => p.toArray().map((t) => t.toString()).join(""));
    const write = await api("PATCH", `/api/v1/documents/${doc}`, alice.token, {
      content: "First paragraph\nEdited over REST\nAnd a third",
    });
    assert.equal(write.status, 200);
    await until(
      "the fragment rewritten",
      (f) => fragment.observeDeep(f),
      () => blocks().join("|") === "First paragraph|Edited over REST|And a third",
    );
    assert.equal(fragment.get(0), first);
    assert.equal(fragment.get(2).nodeName, "paragraph");
    assert.equal(t.text.toString(), "", "nothing went into a `content` the editor does not show");
    const after = await api("GET", `/api/v1/documents/${doc}`, alice.token);
    assert.equal(after.body.content, "First paragraph\nEdited over REST\nAnd a third");
    socket.disconnect();
  } finally {
    t.provider.destroy();
  }
});

test("deleting the document closes its Yjs sockets, and a document left alone is unloaded", async () => {
  const alice = await register("alice");
  const ws = await workspaceWith(alice);
  const doc = await documentIn(ws, alice);
  const a = open(doc, alice.token);
  await synced(a.provider);
  a.text.insert(0, "soon gone");
  const closed = deferred("the socket closed");
  a.provider.on("connection-close", (event) => closed.signal(event));
  const res = await api("DELETE", `/api/v1/documents/${doc}`, alice.token);
  assert.equal(res.status, 204);
  const event = await closed.promise;
  assert.equal(event.code, 1008);
  assert.equal(event.reason, "document_deleted");
  a.provider.destroy();

  // Another document, opened and left: unloaded once idle (1 s in this suite's server).
  const other = await documentIn(ws, alice);
  const b = open(other, alice.token);
  await synced(b.provider);
  b.text.insert(0, "kept");
  b.provider.destroy();
  const deadline = Date.now() + 15000;
  while ((await metric("stoa_yjs_documents_open")) > 0) {
    assert.ok(Date.now() < deadline, "documents still open after their editors left");
    await new Promise((r) => setTimeout(r, 100));
  }
  // Unloaded with everything written: it opens again with its text.
  const c = open(other, alice.token);
  try {
    await textIs(c, "kept");
  } finally {
    c.provider.destroy();
  }
});
