import { describe, expect, it } from "vitest";
import { slug } from "./Runbooks";
import rules from "../../../grafana/alerts/stoa.rules.yml?raw";
import book from "../../../docs/RUNBOOKS.md?raw";

describe("runbook anchors", () => {
  it("has a heading for every runbook_url of the alert rules", () => {
    const ids = new Set([...book.matchAll(/^#+ (.+)$/gm)].map((m) => slug(m[1] ?? "")));
    const anchors = [...rules.matchAll(/runbook_url: .*\/runbooks#([a-z0-9-]+)/g)].map((m) => m[1]);
    expect(anchors.length).toBeGreaterThan(5);
    for (const a of anchors) expect(ids.has(a ?? ""), `#${a}`).toBe(true);
  });
});
