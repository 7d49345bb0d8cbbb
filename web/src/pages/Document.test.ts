import { describe, expect, it } from "vitest";
import * as Y from "yjs";
import { adoptPlainText } from "./Document";

function blocks(doc: Y.Doc): string[] {
  return doc.getXmlFragment("default").toArray().map((p) => (p as Y.XmlElement).toArray().map((t) => t.toString()).join(""));
}

describe("plain text written over the API", () => {
  it("moves into the editor's fragment, a paragraph per line", () => {
    const doc = new Y.Doc();
    doc.getText("content").insert(0, "First line\n\nThird line");
    expect(adoptPlainText(doc)).toBe(true);
    expect(blocks(doc)).toEqual(["First line", "", "Third line"]);
    expect(doc.getText("content").toString()).toBe("");
    expect(adoptPlainText(doc)).toBe(false);
  });

  it("is one change when two editors make it at once: the text is not doubled", () => {
    const server = new Y.Doc();
    server.getText("content").insert(0, "Shared text");
    const a = new Y.Doc();
    const b = new Y.Doc();
    Y.applyUpdate(a, Y.encodeStateAsUpdate(server));
    Y.applyUpdate(b, Y.encodeStateAsUpdate(server));
    adoptPlainText(a);
    adoptPlainText(b);
    Y.applyUpdate(a, Y.encodeStateAsUpdate(b));
    Y.applyUpdate(b, Y.encodeStateAsUpdate(a));
    expect(blocks(a)).toEqual(["Shared text"]);
    expect(blocks(b)).toEqual(["Shared text"]);
  });

  it("leaves a document that already has blocks alone", () => {
    const doc = new Y.Doc();
    doc.getXmlFragment("default").insert(0, [new Y.XmlElement("paragraph")]);
    doc.getText("content").insert(0, "stray");
    expect(adoptPlainText(doc)).toBe(false);
  });
});
