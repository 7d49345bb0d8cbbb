// Every REST call of the console: the bearer token attached (refreshed first when it is
// about to expire, and once more on a 401 `token_expired`), problems turned into ApiProblem.

import { ApiProblem, Unreachable, type ProblemBody } from "./problem";
import { Session, fromResponse, type Tokens } from "./session";
export type { Tokens };
import type { TokenResponse } from "./types";

async function postRefresh(refreshToken: string): Promise<TokenResponse | null> {
  let res: Response;
  try {
    res = await fetch("/api/v1/auth/refresh", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ refresh_token: refreshToken }),
      // Held under the cross-tab lock: a hung request must not stall every tab.
      signal: AbortSignal.timeout(10_000),
    });
  } catch (e) {
    throw new Unreachable(e);
  }
  if (res.ok) return (await res.json()) as TokenResponse;
  if (res.status === 401 || res.status === 422) return null;
  throw await problemOf(res);
}

function exclusive<T>(fn: () => Promise<T>): Promise<T> {
  if (typeof navigator !== "undefined" && navigator.locks) {
    return navigator.locks.request("stoa.refresh", fn) as Promise<T>;
  }
  return fn();
}

function lead(elected: () => void): void {
  if (typeof navigator === "undefined" || !navigator.locks) return elected();
  // Held until the tab closes; then the next tab in line is granted it.
  void navigator.locks.request("stoa.refresh-leader", () => {
    elected();
    return new Promise<never>(() => {});
  });
}

export const session = new Session({
  storage: window.localStorage,
  refresh: postRefresh,
  exclusive,
  lead,
  now: () => Date.now(),
});

window.addEventListener("storage", (e) => {
  if (e.key === null || e.key === "stoa.session") session.changed();
});

export async function problemOf(res: Response): Promise<ApiProblem> {
  let body: ProblemBody | null = null;
  const type = res.headers.get("content-type") ?? "";
  if (type.includes("json")) {
    try {
      body = (await res.json()) as ProblemBody;
    } catch {
      body = null;
    }
  }
  return new ApiProblem(res.status, body, res.headers.get("retry-after"));
}

export interface CallOptions {
  body?: unknown;
  headers?: Record<string, string>;
  /** Answer with the raw Response (CSV downloads). */
  raw?: boolean;
  anonymous?: boolean;
}

/** Set by the app: called when the session is gone, to go to the sign-in page and back. */
let onSignedOut: () => void = () => {};
export function whenSignedOut(f: () => void): void {
  onSignedOut = f;
}

async function send(method: string, path: string, opts: CallOptions, token: string | null): Promise<Response> {
  const headers: Record<string, string> = { accept: "application/json", ...opts.headers };
  if (opts.body !== undefined) headers["content-type"] = "application/json";
  if (token) headers.authorization = `Bearer ${token}`;
  try {
    return await fetch(path, {
      method,
      headers,
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
    });
  } catch (e) {
    throw new Unreachable(e);
  }
}

export async function call<T>(method: string, path: string, opts: CallOptions = {}): Promise<T> {
  const token = opts.anonymous ? null : await session.accessToken();
  let res = await send(method, path, opts, token);
  if (res.status === 401 && !opts.anonymous) {
    const problem = await problemOf(res);
    if (problem.code === "token_expired" || problem.code === "invalid_token") {
      const fresh = await session.refresh();
      if (fresh) res = await send(method, path, opts, fresh.access);
      else {
        onSignedOut();
        throw problem;
      }
    } else {
      session.set(null);
      onSignedOut();
      throw problem;
    }
  }
  if (!res.ok) throw await problemOf(res);
  if (opts.raw) return res as unknown as T;
  if (res.status === 204) return undefined as T;
  const type = res.headers.get("content-type") ?? "";
  return (type.includes("json") ? await res.json() : await res.text()) as T;
}

export const api = {
  get: <T>(path: string, opts?: CallOptions) => call<T>("GET", path, opts),
  post: <T>(path: string, body?: unknown, opts?: CallOptions) => call<T>("POST", path, { ...opts, body }),
  patch: <T>(path: string, body: unknown, opts?: CallOptions) => call<T>("PATCH", path, { ...opts, body }),
  del: <T>(path: string, opts?: CallOptions) => call<T>("DELETE", path, opts),
  put: <T>(path: string, body: unknown, opts?: CallOptions) => call<T>("PUT", path, { ...opts, body }),
};

export async function signIn(email: string, password: string): Promise<void> {
  const r = await call<TokenResponse>("POST", "/api/v1/auth/login", { body: { email, password }, anonymous: true });
  session.set(fromResponse(r, Date.now()));
}

/** Signs in with a directory (LDAP) account: the same tokens as a password sign-in. */
export async function signInWithDirectory(login: string, password: string): Promise<void> {
  const r = await call<TokenResponse>("POST", "/api/v1/auth/ldap/login", { body: { login, password }, anonymous: true });
  session.set(fromResponse(r, Date.now()));
}

/** Trades the one-time code a finished single sign-on left in the page's URL for tokens. */
export async function signInWithSso(handoff: string): Promise<void> {
  const r = await call<TokenResponse>("POST", "/api/v1/auth/oidc/exchange", { body: { handoff }, anonymous: true });
  session.set(fromResponse(r, Date.now()));
}

/** Where the browser begins a single sign-on through `provider`. */
export function ssoStartUrl(provider: string, next: string, reauthenticate = false): string {
  const query = new URLSearchParams({ next });
  if (reauthenticate) query.set("reauthenticate", "true");
  return `/api/v1/auth/oidc/${encodeURIComponent(provider)}/start?${query}`;
}

export async function register(email: string, password: string, displayName: string): Promise<void> {
  const r = await call<TokenResponse>("POST", "/api/v1/auth/register", {
    body: { email, password, display_name: displayName },
    anonymous: true,
  });
  session.set(fromResponse(r, Date.now()));
}

export async function signOut(): Promise<void> {
  const t = session.current();
  session.set(null);
  if (t) {
    try {
      await call("POST", "/api/v1/auth/logout", { body: { refresh_token: t.refresh }, anonymous: true });
    } catch {
      // The tokens are gone from this browser either way.
    }
  }
}

/** A query string from the defined values only. */
export function qs(params: Record<string, string | number | boolean | null | undefined>): string {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") p.set(k, String(v));
  const s = p.toString();
  return s ? `?${s}` : "";
}

/** The `rel="next"` target of a Link header, resolved against the request's URL. */
export function nextLink(link: string | null, base: string): string | null {
  const m = link ? /<([^>]+)>\s*;\s*rel="next"/.exec(link) : null;
  if (!m?.[1]) return null;
  const url = new URL(m[1], new URL(base, "http://x"));
  return url.pathname + url.search;
}

/**
 * Downloads a CSV report as one file with the server's file name: every page (the server
 * links the next with `Link: <…>; rel="next"`), the header row once.
 */
export async function download(path: string, fallbackName: string): Promise<void> {
  const res = await call<Response>("GET", path, { raw: true, headers: { accept: "text/csv" } });
  const parts = [await res.text()];
  let next = nextLink(res.headers.get("link"), path);
  while (next) {
    const page = await call<Response>("GET", next, { raw: true, headers: { accept: "text/csv" } });
    const text = await page.text();
    parts.push(text.slice(text.indexOf("\n") + 1));
    next = nextLink(page.headers.get("link"), next);
  }
  const blob = new Blob(parts, { type: "text/csv;charset=utf-8" });
  const disposition = res.headers.get("content-disposition") ?? "";
  const name = /filename="([^"]+)"/.exec(disposition)?.[1] ?? fallbackName;
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
