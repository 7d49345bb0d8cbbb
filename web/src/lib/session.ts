// The signed-in session: tokens kept in localStorage so every tab shares them, refreshed
// before they expire by one tab (the leader, elected with a Web Lock), with one refresh in
// flight across all tabs (another Web Lock, then a look at whether another tab already did
// it), and signed out everywhere at once. Only the leader refreshes on a timer: a write to
// localStorage reaches the other tabs' copies a moment later, so two tabs refreshing at the
// same instant could both still read the old token and spend it twice.

import type { TokenResponse, User } from "./types";

export interface Tokens {
  access: string;
  refresh: string;
  /** When the access token expires, in ms since the epoch. */
  expiresAt: number;
  /** How long an access token lives, in ms (to schedule the next refresh). */
  ttlMs: number;
  user: User;
}

export interface SessionDeps {
  storage: Pick<Storage, "getItem" | "setItem" | "removeItem">;
  /** Calls `POST /api/v1/auth/refresh`; resolves null when the server refuses the token. */
  refresh: (refreshToken: string) => Promise<TokenResponse | null>;
  /** Runs `fn` while no other tab runs it (navigator.locks), or just runs it. */
  exclusive: <T>(fn: () => Promise<T>) => Promise<T>;
  /**
   * Calls `elected` once this tab is the one that refreshes on a timer (a Web Lock held
   * for the tab's life; the next tab takes over when it closes). Without it, every tab is.
   */
  lead?: (elected: () => void) => void;
  now: () => number;
}

export const STORAGE_KEY = "stoa.session";

export function fromResponse(r: TokenResponse, now: number): Tokens {
  const ttlMs = r.expires_in * 1000;
  return { access: r.access_token, refresh: r.refresh_token, expiresAt: now + ttlMs, ttlMs, user: r.user };
}

/** A tab that is not the leader refreshes on demand only this close to expiry, long after the leader would have. */
export const LAST_MOMENT_MS = 2_000;

/** When the leader refreshes: a tenth of the token's life before it ends, at least 5 s and at most 60 s before. */
export function refreshDelay(t: Tokens, now: number): number {
  const margin = Math.min(60_000, Math.max(5_000, t.ttlMs / 10));
  return Math.max(0, t.expiresAt - margin - now);
}

type Listener = (t: Tokens | null) => void;

export class Session {
  private inFlight: Promise<Tokens | null> | null = null;
  private listeners = new Set<Listener>();
  private timer: ReturnType<typeof setTimeout> | null = null;
  private leader: boolean;

  constructor(private deps: SessionDeps) {
    this.leader = deps.lead === undefined;
  }

  /** Whether this tab refreshes on a timer. */
  isLeader(): boolean {
    return this.leader;
  }

  current(): Tokens | null {
    const raw = this.deps.storage.getItem(STORAGE_KEY);
    if (!raw) return null;
    try {
      const t = JSON.parse(raw) as Tokens;
      return typeof t.access === "string" && typeof t.refresh === "string" ? t : null;
    } catch {
      return null;
    }
  }

  set(t: Tokens | null): void {
    if (t) this.deps.storage.setItem(STORAGE_KEY, JSON.stringify(t));
    else this.deps.storage.removeItem(STORAGE_KEY);
    this.changed();
  }

  /** Another tab wrote the tokens (the `storage` event): tell this tab's listeners. */
  changed(): void {
    const t = this.current();
    this.schedule(t);
    for (const l of this.listeners) l(t);
  }

  subscribe(l: Listener): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  /**
   * A fresh access token. One refresh at a time in this tab, and across tabs: the lock
   * holder reads the stored tokens again, and when another tab has already rotated the
   * refresh token it uses that tab's result instead of spending a token of its own.
   */
  refresh(): Promise<Tokens | null> {
    if (this.inFlight) return this.inFlight;
    const seen = this.current();
    const run = this.deps.exclusive(async () => {
      const stored = this.current();
      if (!stored) return null;
      if (seen && stored.refresh !== seen.refresh && stored.expiresAt > this.deps.now()) {
        return stored;
      }
      const answer = await this.deps.refresh(stored.refresh);
      // Signed out (or rotated by another tab) while the request was out: keep what is
      // stored now rather than bring back a session the user ended.
      const after = this.current();
      if (!after || after.refresh !== stored.refresh) return after;
      if (!answer) {
        this.set(null);
        return null;
      }
      const next = fromResponse(answer, this.deps.now());
      this.set(next);
      return next;
    });
    this.inFlight = run.finally(() => {
      this.inFlight = null;
    });
    return this.inFlight;
  }

  /** The access token to send now: refreshed first when it is about to expire. */
  async accessToken(): Promise<string | null> {
    const t = this.current();
    if (!t) return null;
    if (t.expiresAt - this.deps.now() < LAST_MOMENT_MS) return (await this.refresh())?.access ?? null;
    return t.access;
  }

  private schedule(t: Tokens | null): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (!t || !this.leader || typeof window === "undefined") return;
    this.timer = setTimeout(() => {
      this.refresh().catch(() => {
        // Offline or the server away: try again shortly; requests refresh on demand too.
        this.timer = setTimeout(() => this.changed(), 5_000);
      });
    }, refreshDelay(t, this.deps.now()));
  }

  start(): void {
    this.deps.lead?.(() => {
      this.leader = true;
      this.schedule(this.current());
    });
    this.schedule(this.current());
  }
}
