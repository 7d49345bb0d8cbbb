import { describe, expect, it } from "vitest";
import { Session, STORAGE_KEY, fromResponse, refreshDelay } from "./session";
import type { TokenResponse } from "./types";

function memoryStorage() {
  const m = new Map<string, string>();
  return {
    getItem: (k: string) => m.get(k) ?? null,
    setItem: (k: string, v: string) => void m.set(k, v),
    removeItem: (k: string) => void m.delete(k),
  };
}

const user = { id: 1, email: "a@example.com", display_name: "Ada", email_verified: true, created_at: "" };
function answer(n: number): TokenResponse {
  return { access_token: `a${n}`, refresh_token: `r${n}`, expires_in: 900, token_type: "Bearer", user };
}

/** One lock shared by every "tab" of a test, as navigator.locks is shared by a browser's tabs. */
function sharedLock() {
  let tail: Promise<unknown> = Promise.resolve();
  return <T>(fn: () => Promise<T>): Promise<T> => {
    const run = tail.then(fn, fn);
    tail = run.catch(() => undefined);
    return run;
  };
}

describe("token refresh", () => {
  it("sends one refresh for many callers in one tab", async () => {
    const storage = memoryStorage();
    let calls = 0;
    const s = new Session({
      storage,
      refresh: async () => { calls += 1; return answer(calls + 1); },
      exclusive: sharedLock(),
      now: () => 0,
    });
    s.set(fromResponse(answer(1), 0));
    const all = await Promise.all([s.refresh(), s.refresh(), s.refresh()]);
    expect(calls).toBe(1);
    expect(all.map((t) => t?.access)).toEqual(["a2", "a2", "a2"]);
  });

  it("lets a second tab reuse the first tab's refresh instead of spending its token again", async () => {
    const storage = memoryStorage(); // localStorage is shared by the tabs
    const lock = sharedLock();
    const spent: string[] = [];
    const refresh = async (token: string) => { spent.push(token); return answer(spent.length + 1); };
    const tab1 = new Session({ storage, refresh, exclusive: lock, now: () => 0 });
    const tab2 = new Session({ storage, refresh, exclusive: lock, now: () => 0 });
    tab1.set(fromResponse(answer(1), 0));
    const [a, b] = await Promise.all([tab1.refresh(), tab2.refresh()]);
    expect(spent).toEqual(["r1"]);
    expect(a?.access).toBe("a2");
    expect(b?.access).toBe("a2");
  });

  it("signs out when the server refuses the refresh token", async () => {
    const storage = memoryStorage();
    const s = new Session({ storage, refresh: async () => null, exclusive: sharedLock(), now: () => 0 });
    s.set(fromResponse(answer(1), 0));
    const seen: unknown[] = [];
    s.subscribe((t) => seen.push(t));
    expect(await s.refresh()).toBeNull();
    expect(storage.getItem(STORAGE_KEY)).toBeNull();
    expect(seen).toEqual([null]);
  });

  it("refreshes before expiry, earlier for longer tokens", () => {
    const t = fromResponse(answer(1), 0); // 900 s
    expect(refreshDelay(t, 0)).toBe(900_000 - 60_000);
    const short = { ...t, ttlMs: 20_000, expiresAt: 20_000 };
    expect(refreshDelay(short, 0)).toBe(15_000);
    expect(refreshDelay(short, 19_000)).toBe(0);
  });

  it("refreshes on a timer only in the leading tab; the others follow its tokens", async () => {
    const storage = memoryStorage();
    let elect: () => void = () => {};
    const follower = new Session({
      storage,
      refresh: async () => answer(2),
      exclusive: sharedLock(),
      lead: (elected) => { elect = elected; },
      now: () => 0,
    });
    follower.start();
    expect(follower.isLeader()).toBe(false);
    elect();
    expect(follower.isLeader()).toBe(true);
  });

  it("gives a token that is about to expire only after refreshing it", async () => {
    const storage = memoryStorage();
    let now = 0;
    const s = new Session({ storage, refresh: async () => answer(2), exclusive: sharedLock(), now: () => now });
    s.set(fromResponse(answer(1), 0));
    expect(await s.accessToken()).toBe("a1");
    now = 899_000;
    expect(await s.accessToken()).toBe("a2");
  });
});
