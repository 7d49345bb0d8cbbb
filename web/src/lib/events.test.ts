import { describe, expect, it } from "vitest";
import { eventText, mergeEvents } from "./events";
import type { StoaEvent } from "./types";

const ev = (offset: number, kind = "document.created", data: Record<string, unknown> = { title: "Plan" }): StoaEvent =>
  ({ offset, kind, actor: 1, subject: "document:1", data, at: "" });

describe("activity feed", () => {
  it("keeps offsets in order without duplicates after a rejoin replays some", () => {
    const feed = mergeEvents([ev(1), ev(2)], [ev(2), ev(3), ev(4)]);
    expect(feed.map((e) => e.offset)).toEqual([1, 2, 3, 4]);
    expect(mergeEvents(feed, [ev(5)], 3).map((e) => e.offset)).toEqual([3, 4, 5]);
  });

  it("says what happened with names", () => {
    const name = (id: number | null) => (id === 1 ? "Ada" : id === 2 ? "Bob" : "someone");
    expect(eventText(ev(1), name)).toBe("Ada created “Plan”");
    expect(eventText(ev(2, "member.added", { user_id: 2, role: "editor" }), name)).toBe("Ada added Bob as editor");
    expect(eventText(ev(3, "invitation.created", { email: "cfo@corp.example", role: "admin" }), name)).toBe(
      "Ada invited cfo@corp.example as admin",
    );
    const system = { ...ev(4, "member.removed", { user_id: 2, granted_by: "claims:https://product.example" }), actor: null };
    expect(eventText(system, name)).toBe("The product's sign-in removed Bob");
    const groups = { ...ev(5, "member.added", { user_id: 2, role: "editor", granted_by: "claims:ldap:ldaps://dc.corp" }), actor: null };
    expect(eventText(groups, name)).toBe("The directory's groups added Bob as editor");
  });
});
