// Document history with the stock `yjs` and `y-websocket` clients: versions made by REST
// writes and by name, read back as text and as Yjs state, compared, and restored while two
// editors keep typing.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as Y from "yjs";

import { BASE, api, connect, deferred, join, register, until, workspaceWith } from "./support.mjs";
import { open, synced, textIs, typeThrough } from "./ydoc.mjs";


/** Polls `check` (a REST read) until it holds. */
async function eventually(what, check, ms = 15_000) {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    last = await check();
    if (last === true) return;
    if (Date.now() > end) assert.fail(`timed out waiting for ${what} (last: ${JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test("versions of REST writes and by name read back as text and as Yjs state, and compare", async () => {
  const alice = await register("alice");
  const ws = await workspaceWith(alice);
  const made = await api("POST", `/api/v1/workspaces/${ws}/documents`, alice.token, {
    title: "History",
    content: "one two three",
  });
  assert.equal(made.status, 201);
  const doc = made.body.id;
  const write = await api("PATCH", `/api/v1/documents/${doc}`, alice.token, { content: "one 2 three four" });
  assert.equal(write.status, 200);
  const named = await api("POST", `/api/v1/documents/${doc}/versions`, alice.token, { name: "Before review" });
  assert.equal(named.status, 201, JSON.stringify(named.body));
  assert.equal(named.body.kind, "named");
  assert.equal(named.body.name, "Before review");

  const list = await api("GET", `/api/v1/documents/${doc}/versions`, alice.token);
  assert.equal(list.status, 200);
  assert.deepEqual(
    list.body.items.map((v) => v.kind),
    ["named", "write", "write"],
    "newest first",
  );
  const [, second, first] = list.body.items;
  assert.deepEqual(first.authors, [alice.id]);
  assert.equal(first.size, "one two three".length);
  assert.equal(second.added, 6, "2 and ' four'");
  assert.equal(second.removed, 3, "two");

  const text = await api("GET", `/api/v1/documents/${doc}/versions/${first.id}`, alice.token);
  assert.equal(text.body.text, "one two three");
  // The Yjs state, as a client loads it.
  const res = await fetch(`${BASE}/api/v1/documents/${doc}/versions/${first.id}`, {
    headers: { authorization: `Bearer ${alice.token}`, accept: "application/octet-stream" },
  });
  assert.equal(res.headers.get("content-type"), "application/octet-stream");
  const ydoc = new Y.Doc();
  Y.applyUpdate(ydoc, new Uint8Array(await res.arrayBuffer()));
  assert.equal(ydoc.getText("content").toString(), "one two three");

  const diff = await api("GET", `/api/v1/documents/${doc}/versions/${first.id}/diff?against=${second.id}`, alice.token);
  assert.equal(diff.status, 200);
  assert.deepEqual(
    diff.body.hunks.map((h) => [h.op, h.text]),
    [
      ["equal", "one "],
      ["delete", "2"],
      ["insert", "two"],
      ["equal", " three"],
      ["delete", " four"],
    ],
  );
  const current = await api("GET", `/api/v1/documents/${doc}/versions/${second.id}/diff`, alice.token);
  assert.equal(current.body.against, "current");
  assert.deepEqual(current.body.hunks, [{ op: "equal", text: "one 2 three four", length: 16 }]);

  const missing = await api("GET", `/api/v1/documents/${doc}/versions/999999`, alice.token);
  assert.equal(missing.status, 404);
});

test("two editors type while a third restores a version: all converge on it and on what came after", async () => {
  const alice = await register("alice");
  const bob = await register("bob");
  const carol = await register("carol");
  const ws = await workspaceWith(alice, [
    [bob, "editor"],
    [carol, "editor"],
  ]);
  const made = await api("POST", `/api/v1/workspaces/${ws}/documents`, alice.token, {
    title: "Race",
    content: "The quick brown fox",
  });
  const doc = made.body.id;
  const a = open(doc, alice.token);
  const b = open(doc, bob.token);
  try {
    await Promise.all([synced(a.provider), synced(b.provider)]);
    await textIs(a, "The quick brown fox");
    a.text.insert(a.text.length, " jumps");
    await textIs(b, "The quick brown fox jumps");
    const saved = await api("POST", `/api/v1/documents/${doc}/versions`, carol.token, { name: "Clean" });
    assert.equal(saved.status, 201);
    a.text.insert(0, "AAA ");
    b.text.insert(b.text.length, " over the zebra");
    const messy = "AAA The quick brown fox jumps over the zebra";
    await Promise.all([textIs(a, messy), textIs(b, messy)]);

    // Both keep typing markers while Carol restores; what each types once it has seen the
    // restore must survive.
    const restoredText = "The quick brown fox jumps";
    const { answer: restore, final, typedAfter } = await typeThrough(a, b, "AAA", () =>
      api("POST", `/api/v1/documents/${doc}/versions/${saved.body.id}/restore`, carol.token),
    );
    assert.equal(restore.status, 200, JSON.stringify(restore.body));
    assert.equal(restore.body.version.kind, "restore");
    assert.equal(restore.body.version.restored_from, saved.body.id);
    assert.equal(final.replace(/[12]/g, ""), restoredText, final);
    assert.ok(final.split("1").length - 1 >= typedAfter.a, "no edit after the restore is lost");
    assert.ok(final.split("2").length - 1 >= typedAfter.b, "no edit after the restore is lost");

    // REST and search follow.
    await eventually("the REST text", async () => {
      const r = await api("GET", `/api/v1/documents/${doc}`, alice.token);
      return r.body.content === final || r.body.content;
    });
    await eventually("search forgetting the zebra", async () => {
      const r = await api("GET", `/api/v1/workspaces/${ws}/search?q=zebra`, alice.token);
      return !r.body.items.some((hit) => hit.kind === "document" && hit.id === doc) || r.body.items;
    });
    const events = await api("GET", `/api/v1/workspaces/${ws}/events`, alice.token);
    const restoredEvent = events.body.items.find((e) => e.kind === "document.restored");
    assert.ok(restoredEvent, "a document.restored event");
    assert.equal(restoredEvent.data.restored_from, saved.body.id);
    assert.ok(events.body.items.some((e) => e.kind === "document.versioned" && e.data.name === "Clean"));

    // A viewer may read versions but not restore them.
    const dave = await register("dave");
    await api("POST", `/api/v1/workspaces/${ws}/members`, alice.token, { user_id: dave.id, role: "viewer" });
    assert.equal((await api("GET", `/api/v1/documents/${doc}/versions`, dave.token)).status, 200);
    const refused = await api("POST", `/api/v1/documents/${doc}/versions/${saved.body.id}/restore`, dave.token);
    assert.equal(refused.status, 403);
    const outsider = await register("eve");
    assert.equal((await api("GET", `/api/v1/documents/${doc}/versions`, outsider.token)).status, 404);
  } finally {
    a.provider.destroy();
    b.provider.destroy();
  }
});

test("an editing window becomes an automatic version when the next one begins", async () => {
  const alice = await register("alice");
  const bob = await register("bob");
  const ws = await workspaceWith(alice, [[bob, "editor"]]);
  const made = await api("POST", `/api/v1/workspaces/${ws}/documents`, alice.token, { title: "Auto" });
  const doc = made.body.id;
  const a = open(doc, alice.token);
  const b = open(doc, bob.token);
  try {
    await Promise.all([synced(a.provider), synced(b.provider)]);
    a.text.insert(0, "hello");
    await textIs(b, "hello");
    b.text.insert(5, " world");
    await textIs(a, "hello world");
    // The window is recorded (its text reaches REST)…
    await eventually("the first window recorded", async () => {
      const r = await api("GET", `/api/v1/documents/${doc}`, alice.token);
      return r.body.content === "hello world" || r.body.content;
    });
    // …and once the interval (1 s here) has passed, the next window's record makes the
    // version of the document as the first left it, with its two editors.
    await new Promise((r) => setTimeout(r, 1100));
    a.text.insert(11, "!");
    let auto;
    await eventually("an automatic version", async () => {
      const r = await api("GET", `/api/v1/documents/${doc}/versions`, alice.token);
      auto = r.body.items.find((v) => v.kind === "auto");
      return Boolean(auto) || r.body.items;
    });
    assert.deepEqual([...auto.authors].sort(), [alice.id, bob.id].sort());
    assert.equal(auto.size, "hello world".length);
    const read = await api("GET", `/api/v1/documents/${doc}/versions/${auto.id}`, alice.token);
    assert.equal(read.body.text, "hello world");
    // A version saved by name holds the edits since, and their editor.
    b.text.insert(0, ">> ");
    await textIs(a, ">> hello world!");
    const named = await api("POST", `/api/v1/documents/${doc}/versions`, alice.token, { name: "Now" });
    assert.equal(named.status, 201);
    assert.ok(named.body.authors.includes(bob.id), JSON.stringify(named.body));
    const now = await api("GET", `/api/v1/documents/${doc}/versions/${named.body.id}`, alice.token);
    assert.equal(now.body.text, ">> hello world!");
  } finally {
    a.provider.destroy();
    b.provider.destroy();
  }
});

test("comments pinned to text follow edits around them, reach live editors, and detach when their text goes", async () => {
  const alice = await register("alice");
  const bob = await register("bob");
  const ws = await workspaceWith(alice, [[bob, "editor"]]);
  const made = await api("POST", `/api/v1/workspaces/${ws}/documents`, alice.token, { title: "Pins" });
  const doc = made.body.id;
  const a = open(doc, alice.token);
  const b = open(doc, bob.token);
  const socket = connect(alice.token);
  const channel = socket.channel(`document:${doc}`, {});
  await join(channel);
  const heard = deferred("the anchored comment on the document's channel");
  channel.on("event", (e) => {
    if (e.kind === "comment.created" && e.data.anchor) heard.signal(e);
  });
  const b64 = (bytes) => Buffer.from(bytes).toString("base64");
  try {
    await Promise.all([synced(a.provider), synced(b.provider)]);
    a.text.insert(0, "the quick brown fox jumps");
    await textIs(b, "the quick brown fox jumps");

    // Pinned over REST by a quote…
    const byQuote = await api("POST", `/api/v1/documents/${doc}/comments`, bob.token, {
      body: "which brown?",
      anchor: { quote: "brown" },
    });
    assert.equal(byQuote.status, 201, JSON.stringify(byQuote.body));
    assert.deepEqual(
      { quote: byQuote.body.anchor.quote, text: byQuote.body.anchor.text, detached: byQuote.body.anchor.detached },
      { quote: "brown", text: "brown", detached: false },
    );
    // …which Alice's editor hears, and places in her own document.
    const event = await heard.promise;
    const start = Y.createAbsolutePositionFromRelativePosition(
      Y.decodeRelativePosition(Buffer.from(event.data.anchor.start, "base64")),
      a.ydoc,
    );
    const end = Y.createAbsolutePositionFromRelativePosition(
      Y.decodeRelativePosition(Buffer.from(event.data.anchor.end, "base64")),
      a.ydoc,
    );
    assert.equal(a.text.toString().slice(start.index, end.index), "brown");

    // Pinned by an editor's selection: relative positions as y-prosemirror makes them.
    const sel = {
      start: b64(Y.encodeRelativePosition(Y.createRelativePositionFromTypeIndex(a.text, 4))),
      end: b64(Y.encodeRelativePosition(Y.createRelativePositionFromTypeIndex(a.text, 9, -1))),
    };
    const bySelection = await api("POST", `/api/v1/documents/${doc}/comments`, alice.token, {
      body: "quick indeed",
      anchor: sel,
    });
    assert.equal(bySelection.status, 201, JSON.stringify(bySelection.body));
    assert.equal(bySelection.body.anchor.text, "quick");

    // Edits around both: the pins follow.
    b.text.insert(0, "Look: ");
    a.text.insert(a.text.toString().indexOf("quick") + 5, " and very");
    const around = "Look: the quick and very brown fox jumps";
    await Promise.all([textIs(a, around), textIs(b, around)]);
    await eventually("the pins follow the edits", async () => {
      const list = await api("GET", `/api/v1/documents/${doc}/comments`, alice.token);
      const texts = list.body.items.map((c) => c.anchor?.text);
      return JSON.stringify(texts) === JSON.stringify(["brown", "quick"]) || texts;
    });

    // Bob deletes "brown ": its comment stays, detached; the other is untouched.
    const at = b.text.toString().indexOf("brown ");
    b.text.delete(at, "brown ".length);
    await textIs(a, "Look: the quick and very fox jumps");
    await eventually("the deleted pin detaches", async () => {
      const one = await api("GET", `/api/v1/comments/${byQuote.body.id}`, alice.token);
      return (one.body.anchor.detached && one.body.anchor.text === "" && one.body.anchor.quote === "brown") || one.body;
    });
    const other = await api("GET", `/api/v1/comments/${bySelection.body.id}`, alice.token);
    assert.equal(other.body.anchor.text, "quick");

    // Bad anchors change nothing.
    for (const anchor of [
      { quote: "not in the text" },
      { quote: "quick", occurrence: 2 },
      { start: "!!!", end: "???" },
      { start: sel.start },
      { start: sel.start, end: sel.end, quote: "quick" },
    ]) {
      const r = await api("POST", `/api/v1/documents/${doc}/comments`, alice.token, { body: "x", anchor });
      assert.equal(r.status, 422, `${JSON.stringify(anchor)}: ${JSON.stringify(r.body)}`);
    }
    const reply = await api("POST", `/api/v1/documents/${doc}/comments`, alice.token, {
      body: "a reply",
      parent_id: byQuote.body.id,
      anchor: { quote: "quick" },
    });
    assert.equal(reply.status, 422);
    const all = await api("GET", `/api/v1/documents/${doc}/comments`, alice.token);
    assert.equal(all.body.items.length, 2);
  } finally {
    a.provider.destroy();
    b.provider.destroy();
    socket.disconnect();
  }
});
