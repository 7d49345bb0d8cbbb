// Helpers for the end-to-end suite: REST calls with fetch, and the stock phoenix client
// (Socket, Channel, Presence) over the `ws` package, against the server at STOA_URL.
import { Socket } from "phoenix";
import WebSocket from "ws";

export const BASE = process.env.STOA_URL ?? "http://127.0.0.1:8080";
export const WS_BASE = BASE.replace(/^http/, "ws");

export async function api(method, path, token, body) {
  const headers = { "content-type": "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(BASE + path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

let counter = 0;
export async function register(name) {
  counter += 1;
  const email = `${name}.${process.pid}.${counter}.${Date.now()}@example.com`;
  const res = await api("POST", "/api/v1/auth/register", null, {
    email,
    password: "correct horse battery",
    display_name: name,
  });
  if (res.status !== 201) throw new Error(`register ${name}: ${JSON.stringify(res.body)}`);
  return { id: res.body.user.id, email, token: res.body.access_token };
}

export async function workspaceWith(owner, members = []) {
  const ws = await api("POST", "/api/v1/workspaces", owner.token, { name: "E2E" });
  for (const [who, role] of members) {
    const res = await api("POST", `/api/v1/workspaces/${ws.body.id}/members`, owner.token, {
      user_id: who.id,
      role,
    });
    if (res.status !== 201) throw new Error(JSON.stringify(res.body));
  }
  return ws.body.id;
}

/** A connected phoenix Socket to the server at `base` (a ws:// address) or the suite's
 * one; `options` are passed to the stock client. */
export function connect(token, options = {}, base = WS_BASE) {
  const socket = new Socket(`${base}/socket`, {
    transport: WebSocket,
    params: { token },
    reconnectAfterMs: () => 50,
    rejoinAfterMs: () => 50,
    ...options,
  });
  socket.connect();
  return socket;
}

/** Joins a channel; resolves with the join response, rejects with the error response. */
export function join(channel, timeoutMs = 10000) {
  return new Promise((resolve, reject) => {
    channel
      .join(timeoutMs)
      .receive("ok", resolve)
      .receive("error", (e) => reject(Object.assign(new Error("join refused"), { response: e })))
      .receive("timeout", () => reject(new Error("join timed out")));
  });
}

/** Resolves with the reply to a push ({status, response}). */
export function push(channel, event, payload) {
  return new Promise((resolve) => {
    channel
      .push(event, payload)
      .receive("ok", (response) => resolve({ status: "ok", response }))
      .receive("error", (response) => resolve({ status: "error", response }))
      .receive("timeout", () => resolve({ status: "timeout" }));
  });
}

/** A promise resolved by `signal(value)`, rejected after `ms` (a bound, not a wait). */
export function deferred(label, ms = 15000) {
  let signal;
  const promise = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${label}`)), ms);
    signal = (v) => {
      clearTimeout(timer);
      resolve(v);
    };
  });
  return { promise, signal };
}

/** Resolves when `check()` holds, re-checking whenever `subscribe` reports a change. */
export function until(label, subscribe, check, ms = 15000) {
  const { promise, signal } = deferred(label, ms);
  const test = () => {
    if (check()) signal();
  };
  subscribe(test);
  test();
  return promise;
}

export async function metric(name) {
  const res = await fetch(`${BASE}/metrics`);
  // Every series carries the node it comes from; look it up by its other labels.
  const text = (await res.text())
    .replace(/\{node="[^"]*"\}/g, "")
    .replace(/,node="[^"]*"/g, "")
    .replace(/\{node="[^"]*",/g, "{");
  for (const line of text.split("\n")) {
    const [key, value] = line.split(" ");
    if (key === name) return Number(value);
  }
  return 0;
}
