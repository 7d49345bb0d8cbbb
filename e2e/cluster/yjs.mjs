// Collaborative documents across nodes and restarts, judged by the stock `yjs` and
// `y-websocket` packages: three nodes of the real binary, one PostgreSQL database and a
// private Redis, prepared by tests/cluster/phoenix.rs, which runs this file.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import * as Y from "yjs";

import { documentFor, nodes, register, wsUrl } from "./nodes.mjs";
import { open as openAt, synced } from "../ydoc.mjs";

const open = (i, doc, token, ydoc = new Y.Doc()) => openAt(doc, token, { ydoc, base: wsUrl(i) });

/** Resolves when `check()` holds, re-checked on every change of `ydocs`. */
function until(what, ydocs, check, ms = 15000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`waited too long for ${what}`)), ms);
    const test = () => {
      if (check()) {
        clearTimeout(timer);
        for (const d of ydocs) d.off("update", test);
        resolve();
      }
    };
    for (const d of ydocs) d.on("update", test);
    test();
  });
}

before(async () => {
  for (const node of nodes) await node.start();
});

after(async () => {
  for (const node of nodes) await node.stop();
});

test("editors on different nodes converge, and awareness crosses nodes", async () => {
  const alice = await register("alice");
  const bob = await register("bob");
  const { doc } = await documentFor(alice, [[bob, "editor"]]);
  const a = open(0, doc, alice.token);
  const b = open(1, doc, bob.token);
  try {
    await Promise.all([synced(a.provider), synced(b.provider)]);
    a.text.insert(0, "from node0");
    await until("node0's edit on node1", [b.ydoc], () => b.text.toString() === "from node0");
    a.text.insert(0, "A ");
    b.text.insert(b.text.length, " B");
    await until(
      "convergence",
      [a.ydoc, b.ydoc],
      () => a.text.toString() === b.text.toString() && a.text.length === 14,
    );
    // A node that opens the document late loads it and hears what follows.
    const c = open(2, doc, alice.token);
    try {
      await until("node2 loaded", [c.ydoc], () => c.text.toString() === a.text.toString());
      b.text.insert(0, "!");
      await until("a later edit on node2", [c.ydoc], () => c.text.toString().startsWith("!"));
    } finally {
      c.provider.destroy();
    }
    a.provider.awareness.setLocalStateField("user", { name: "alice" });
    const states = b.provider.awareness;
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("awareness did not cross")), 15000);
      const check = () => {
        if (states.getStates().get(a.ydoc.clientID)?.user?.name === "alice") {
          clearTimeout(timer);
          resolve();
        }
      };
      states.on("change", check);
      check();
    });
  } finally {
    a.provider.destroy();
    b.provider.destroy();
  }
});

test("a restarted node serves every edit it had", async () => {
  const alice = await register("alice");
  const { doc } = await documentFor(alice);
  const a = open(0, doc, alice.token);
  const b = open(0, doc, alice.token);
  await Promise.all([synced(a.provider), synced(b.provider)]);
  for (let i = 0; i < 50; i++) a.text.insert(a.text.length, `${i},`);
  const want = a.text.toString();
  await until("every edit at the second client", [b.ydoc], () => b.text.toString() === want);
  a.provider.destroy();
  b.provider.destroy();
  await nodes[0].stop();
  await nodes[0].start();
  const c = open(0, doc, alice.token);
  try {
    await synced(c.provider);
    assert.equal(c.text.toString(), want);
  } finally {
    c.provider.destroy();
  }
});

test("a node killed mid-edit loses nothing its client holds: it reconnects to another node", async () => {
  const alice = await register("alice");
  const { doc } = await documentFor(alice);
  const a = open(1, doc, alice.token);
  await synced(a.provider);
  // Typing while the node dies.
  let i = 0;
  const typing = setInterval(() => a.text.insert(a.text.length, `${i++},`), 2);
  await new Promise((r) => setTimeout(r, 150));
  await nodes[1].kill();
  await new Promise((r) => setTimeout(r, 50));
  clearInterval(typing);
  const want = a.text.toString();
  a.provider.destroy();
  // The same client (its Y.Doc holds every edit) reconnects through another node.
  const again = open(2, doc, alice.token, a.ydoc);
  try {
    await synced(again.provider);
    const fresh = open(0, doc, alice.token);
    try {
      await until("every edit on a fresh client", [fresh.ydoc], () => fresh.text.toString() === want);
    } finally {
      fresh.provider.destroy();
    }
  } finally {
    again.provider.destroy();
    await nodes[1].start();
  }
});
