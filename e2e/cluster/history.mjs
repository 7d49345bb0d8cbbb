// Document history across nodes, judged by the stock `yjs`, `y-websocket` and `phoenix`
// packages: a restore made through one node while editors on two others type, and comments
// pinned through one node to text that editors on two others edit around, move and delete.
// Three nodes of the real binary, one PostgreSQL database and a private Redis, prepared by
// tests/cluster/phoenix.rs, which runs this file.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import * as Y from "yjs";

import { api, documentFor, nodes, register, sleep, wsUrl } from "./nodes.mjs";
import { open as openAt, synced, textIs, typeThrough } from "../ydoc.mjs";
import { connect, deferred, join, until } from "../support.mjs";

const open = (i, doc, token) => openAt(doc, token, { base: wsUrl(i) });

/** Polls `check` (a REST read) until it returns true; fails with what it last returned. */
async function eventually(what, check, ms = 15_000) {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    last = await check();
    if (last === true) return;
    if (Date.now() > end) assert.fail(`timed out waiting for ${what} (last: ${JSON.stringify(last)})`);
    await sleep(50);
  }
}

before(async () => {
  for (const node of nodes) await node.start();
});

after(async () => {
  for (const node of nodes) await node.stop();
});

test("a restore made through a third node reaches editors typing on two others", async () => {
  const alice = await register("alice");
  const bob = await register("bob");
  const carol = await register("carol");
  const { ws, doc } = await documentFor(alice, [[bob, "editor"], [carol, "editor"]], "The quick brown fox");
  const a = open(0, doc, alice.token);
  const b = open(1, doc, bob.token);
  try {
    await Promise.all([synced(a.provider), synced(b.provider)]);
    await textIs(a, "The quick brown fox");
    a.text.insert(a.text.length, " jumps");
    await textIs(b, "The quick brown fox jumps");
    // The version is made on node 2, which holds no editor of the document: it must see
    // the edit made on node 0.
    const saved = await api(2, "POST", `/api/v1/documents/${doc}/versions`, carol.token, { name: "Clean" });
    assert.equal(saved.status, 201, JSON.stringify(saved.body));
    const clean = await api(2, "GET", `/api/v1/documents/${doc}/versions/${saved.body.id}`, carol.token);
    assert.equal(clean.body.text, "The quick brown fox jumps");

    a.text.insert(0, "AAA ");
    b.text.insert(b.text.length, " over the zebra");
    const messy = "AAA The quick brown fox jumps over the zebra";
    await Promise.all([textIs(a, messy), textIs(b, messy)]);

    // Both keep typing markers while Carol restores through node 2; what each types once
    // it has seen the restore must survive.
    const { answer: restore, final, typedAfter } = await typeThrough(a, b, "AAA", () =>
      api(2, "POST", `/api/v1/documents/${doc}/versions/${saved.body.id}/restore`, carol.token),
    );
    assert.equal(restore.status, 200, JSON.stringify(restore.body));
    assert.equal(final.replace(/[12]/g, ""), "The quick brown fox jumps", final);
    assert.ok(final.split("1").length - 1 >= typedAfter.a, "no edit after the restore is lost");
    assert.ok(final.split("2").length - 1 >= typedAfter.b, "no edit after the restore is lost");

    // Every node's REST text follows, and a client opening the document anywhere loads it.
    for (const i of [0, 1, 2]) {
      await eventually(`node${i}'s REST text`, async () => {
        const r = await api(i, "GET", `/api/v1/documents/${doc}`, alice.token);
        return r.body.content === final || r.body.content;
      });
    }
    const late = open(2, doc, carol.token);
    try {
      await synced(late.provider);
      await textIs(late, final);
    } finally {
      late.provider.destroy();
    }
    const events = await api(1, "GET", `/api/v1/workspaces/${ws}/events`, alice.token);
    const restored = events.body.items.find((e) => e.kind === "document.restored");
    assert.equal(restored?.data.restored_from, saved.body.id);
  } finally {
    a.provider.destroy();
    b.provider.destroy();
  }
});

test("comments pinned through one node follow text edited around, moved and deleted on two others", async () => {
  const alice = await register("alice");
  const bob = await register("bob");
  const { doc } = await documentFor(alice, [[bob, "editor"]]);
  const a = open(0, doc, alice.token);
  const b = open(1, doc, bob.token);
  // Alice's console listens on node 1's document channel.
  const socket = connect(alice.token, {}, wsUrl(1));
  const channel = socket.channel(`document:${doc}`, {});
  const pinned = [];
  const heard = deferred("three anchored comments on node 1's document channel");
  channel.on("event", (e) => {
    if (e.kind === "comment.created" && e.data.anchor) pinned.push(e);
    if (pinned.length === 3) heard.signal();
  });
  const b64 = (bytes) => Buffer.from(bytes).toString("base64");
  const comment = (i, id) => api(i, "GET", `/api/v1/comments/${id}`, alice.token);
  try {
    await join(channel);
    await Promise.all([synced(a.provider), synced(b.provider)]);
    const start = "the quick brown fox jumps over the lazy dog";
    a.text.insert(0, start);
    await textIs(b, start);
    // Node 2 holds no editor: it pins to the text once the edit made on node 0 is stored.
    await eventually("node 2 reads the typed text", async () => {
      const r = await api(2, "GET", `/api/v1/documents/${doc}`, alice.token);
      return r.body.content === start || r.body.content;
    });
    const quick = await api(2, "POST", `/api/v1/documents/${doc}/comments`, bob.token, {
      body: "which fox?",
      anchor: { quote: "quick brown" },
    });
    assert.equal(quick.status, 201, JSON.stringify(quick.body));
    const dog = await api(2, "POST", `/api/v1/documents/${doc}/comments`, bob.token, {
      body: "a dog?",
      anchor: { quote: "dog" },
    });
    assert.equal(dog.status, 201, JSON.stringify(dog.body));
    // Bob's selection on node 1, pinned through node 0.
    const lazyAt = start.indexOf("lazy");
    const lazy = await api(0, "POST", `/api/v1/documents/${doc}/comments`, bob.token, {
      body: "not that lazy",
      anchor: {
        start: b64(Y.encodeRelativePosition(Y.createRelativePositionFromTypeIndex(b.text, lazyAt))),
        end: b64(Y.encodeRelativePosition(Y.createRelativePositionFromTypeIndex(b.text, lazyAt + 4, -1))),
      },
    });
    assert.equal(lazy.status, 201, JSON.stringify(lazy.body));
    assert.equal(lazy.body.anchor.text, "lazy");
    await heard.promise;
    const fromNode2 = pinned.find((e) => e.data.comment_id === quick.body.id);
    const at = (p) =>
      Y.createAbsolutePositionFromRelativePosition(Y.decodeRelativePosition(Buffer.from(p, "base64")), a.ydoc).index;
    assert.equal(a.text.toString().slice(at(fromNode2.data.anchor.start), at(fromNode2.data.anchor.end)), "quick brown");

    // Edited around, on both nodes at once.
    a.text.insert(0, "Look: ");
    b.text.insert(b.text.toString().indexOf("lazy"), "very ");
    const around = "Look: the quick brown fox jumps over the very lazy dog";
    await Promise.all([textIs(a, around), textIs(b, around)]);
    // Moved: Alice cuts "quick brown " and pastes it before "dog". Deleted: Bob removes
    // "dog" and writes another one (a short quote is not followed to a copy of it).
    const cut = a.text.toString().indexOf("quick brown ");
    a.text.delete(cut, "quick brown ".length);
    a.text.insert(a.text.toString().indexOf("dog"), "quick brown ");
    await textIs(b, "Look: the fox jumps over the very lazy quick brown dog");
    const dogAt = b.text.toString().indexOf("dog");
    b.text.delete(dogAt, 3);
    b.text.insert(b.text.length, "cat, not a dog");
    const after = "Look: the fox jumps over the very lazy quick brown cat, not a dog";
    await Promise.all([textIs(a, after), textIs(b, after)]);

    await eventually("the pins, read on node 2", async () => {
      const list = await api(2, "GET", `/api/v1/documents/${doc}/comments`, alice.token);
      const got = Object.fromEntries(list.body.items.map((c) => [c.body, [c.anchor.text, c.anchor.detached]]));
      const want = { "which fox?": ["quick brown", false], "a dog?": ["", true], "not that lazy": ["lazy", false] };
      return JSON.stringify(got) === JSON.stringify(want) || got;
    });
    // The moved pin holds its new place: an edit inside it is part of it, read on any node.
    const moved = (await comment(0, quick.body.id)).body.anchor;
    assert.equal(a.text.toString().slice(at(moved.start), at(moved.end)), "quick brown");
    b.text.insert(b.text.toString().indexOf("brown"), "and ");
    await textIs(a, "Look: the fox jumps over the very lazy quick and brown cat, not a dog");
    await eventually("the moved pin takes the edit inside it", async () => {
      const one = (await comment(1, quick.body.id)).body.anchor;
      return (one.text === "quick and brown" && !one.detached) || one;
    });
    const gone = (await comment(0, dog.body.id)).body.anchor;
    assert.deepEqual([gone.quote, gone.text, gone.detached], ["dog", "", true]);
  } finally {
    a.provider.destroy();
    b.provider.destroy();
    socket.disconnect();
  }
});
