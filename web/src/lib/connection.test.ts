import { describe, expect, it } from "vitest";
import { nextLink, type Link } from "./connection";
import { closeReason, describe as describeError, ApiProblem, parseRetryAfter } from "./problem";

describe("connection badge", () => {
  it("goes live, then reconnecting with the server's reason, then live again", () => {
    let l: Link = { state: "connecting" };
    l = nextLink(l, { type: "open" });
    expect(l).toEqual({ state: "live" });
    l = nextLink(l, { type: "close", reason: "The server is restarting; reconnecting.", terminal: false });
    expect(l.state).toBe("reconnecting");
    l = nextLink(l, { type: "close", reason: null, terminal: false });
    expect(l).toEqual({ state: "reconnecting", reason: "The server is restarting; reconnecting." });
    expect(nextLink(l, { type: "open" })).toEqual({ state: "live" });
  });

  it("says offline while the browser has no network, whatever the socket reports", () => {
    let l: Link = nextLink({ state: "live" }, { type: "offline" });
    l = nextLink(l, { type: "close", reason: null, terminal: false });
    expect(l).toEqual({ state: "offline" });
    expect(nextLink(l, { type: "online" }).state).toBe("reconnecting");
  });

  it("stays closed after a terminal close such as a removal", () => {
    let l: Link = nextLink({ state: "live" }, { type: "close", reason: "You were removed from this workspace.", terminal: true });
    l = nextLink(l, { type: "open" });
    expect(l).toEqual({ state: "closed", reason: "You were removed from this workspace." });
  });
});

describe("problems in words", () => {
  it("shows title and detail, and when to retry a 429", () => {
    const p = new ApiProblem(429, { title: "Too Many Requests", detail: "slow down", code: "rate_limited" }, "3");
    expect(describeError(p)).toEqual({ title: "Too Many Requests", detail: "slow down", retry: "Try again in 3 seconds.", fields: [] });
  });

  it("says a 503 passes, with or without Retry-After", () => {
    expect(describeError(new ApiProblem(503, { title: "Service Unavailable" }, "1")).retry).toBe("Try again in 1 second.");
    expect(describeError(new ApiProblem(503, null, null)).retry).toBe("Try again in a moment.");
  });

  it("lists the fields a 422 refused", () => {
    const p = new ApiProblem(422, { title: "Unprocessable Entity", errors: [{ field: "email", message: "not an e-mail address" }] }, null);
    expect(describeError(p).fields).toEqual([{ field: "email", message: "not an e-mail address" }]);
  });

  it("reads Retry-After as seconds or as a date", () => {
    expect(parseRetryAfter("2")).toBe(2);
    expect(parseRetryAfter(new Date(Date.now() + 10_000).toUTCString())).toBeGreaterThanOrEqual(9);
    expect(parseRetryAfter(null)).toBeNull();
  });

  it("puts a server's close reason in words", () => {
    expect(closeReason(1008, "membership_revoked")).toBe("You were removed from this workspace.");
    expect(closeReason(1008, "slow_consumer")).toMatch(/could not keep up/);
    expect(closeReason(1009, "")).toMatch(/too large/);
    expect(closeReason(4000, "odd")).toBe("The server closed the connection (odd).");
  });
});

import { nextLink as linkAfter } from "./api";
import { safeNext } from "../pages/SignIn";

describe("links", () => {
  it("follows a report's next page, keeping its path", () => {
    expect(linkAfter('<?format=csv&cursor=abc>; rel="next"', "/api/v1/workspaces/1/reports/members?format=csv&limit=1000")).toBe(
      "/api/v1/workspaces/1/reports/members?format=csv&cursor=abc",
    );
    expect(linkAfter(null, "/x")).toBeNull();
  });

  it("sends a signed-in visitor back only to a page of this console", () => {
    const origin = "http://stoa.test";
    expect(safeNext("/w/1/members?x=1#y", origin)).toBe("/w/1/members?x=1#y");
    expect(safeNext("//evil.example/", origin)).toBe("/");
    expect(safeNext("/\\evil.example", origin)).toBe("/");
    expect(safeNext("/%09/evil.example", origin)).toBe("/%09/evil.example");
    expect(safeNext("https://evil.example/", origin)).toBe("/");
    expect(safeNext(null, origin)).toBe("/");
  });
});
