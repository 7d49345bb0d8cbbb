// The nodes of a cluster test: the real binary, started, stopped and killed here, on the
// ports, database and Redis that the Rust test running the suite prepared.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";

const BIN = process.env.STOA_BIN;
export const PORTS = (process.env.STOA_PORTS ?? "").split(",").map(Number);
const SECRET = "cluster-e2e-secret-0123456789abcdef-GHIJKLMNOPQRSTUVWX";

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const url = (i) => `http://127.0.0.1:${PORTS[i]}`;
export const wsUrl = (i) => `ws://127.0.0.1:${PORTS[i]}`;

export class Node {
  constructor(i) {
    this.i = i;
    this.child = null;
  }

  async start() {
    this.child = spawn(BIN, [], {
      env: {
        PATH: process.env.PATH,
        STOA_SERVER__PORT: String(PORTS[this.i]),
        STOA_DATABASE__URL: process.env.STOA_DATABASE_URL,
        STOA_REDIS__URL: process.env.STOA_REDIS_URL,
        STOA_CLUSTER__NODE_ID: `node${this.i}`,
        STOA_CLUSTER__HEARTBEAT_MS: "300",
        STOA_CLUSTER__NODE_EXPIRY_MS: "1500",
        STOA_SERVER__DRAIN_SECS: "1",
        STOA_AUTH__JWT_SECRET: SECRET,
        STOA_AUTH__LOGIN_ATTEMPTS_PER_MINUTE: "1000",
        STOA_DATA_DIR: process.env.STOA_DATA_DIR,
        STOA_LOG__LEVEL: "warn",
      },
      stdio: "ignore",
    });
    const deadline = Date.now() + 20000;
    for (;;) {
      try {
        const res = await fetch(`${url(this.i)}/readyz`);
        if ((await res.json()).status === "ok") return;
      } catch {}
      if (Date.now() > deadline) throw new Error(`node${this.i} did not become ready`);
      await sleep(50);
    }
  }

  /** SIGKILL, as a crash would, and wait for the process to end. */
  async kill() {
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGKILL");
    await exited;
  }

  /** SIGTERM, and wait for the process to end. */
  async stop() {
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGTERM");
    await exited;
  }
}

export const nodes = [0, 1, 2].map((i) => new Node(i));

export async function api(i, method, path, token, body) {
  const headers = { "content-type": "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(url(i) + path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

let n = 0;
export async function register(name) {
  n += 1;
  const res = await api(0, "POST", "/api/v1/auth/register", null, {
    email: `${name}.${process.pid}.${n}@example.com`,
    password: "correct horse battery",
    display_name: name,
  });
  assert.equal(res.status, 201, JSON.stringify(res.body));
  return { id: res.body.user.id, token: res.body.access_token };
}


/** A workspace of `owner` with `members` ([user, role] pairs) and one document in it. */
export async function documentFor(owner, members = [], content = undefined) {
  const ws = (await api(0, "POST", "/api/v1/workspaces", owner.token, { name: "Y" })).body.id;
  for (const [who, role] of members) {
    const res = await api(0, "POST", `/api/v1/workspaces/${ws}/members`, owner.token, {
      user_id: who.id,
      role,
    });
    assert.equal(res.status, 201);
  }
  const res = await api(0, "POST", `/api/v1/workspaces/${ws}/documents`, owner.token, {
    title: "Doc",
    content,
  });
  assert.equal(res.status, 201);
  return { ws, doc: res.body.id };
}
