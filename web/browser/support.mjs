// The browser suite's parts: the real stoa binary (started, killed with SIGKILL and
// restarted on the same port and data), Debian's Chromium through playwright-core, and
// small waits that end on an event or fail at a deadline.

import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import axe from "axe-core";

export const BIN = process.env.STOA_BIN;
export const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
export const SHOTS = process.env.SCREENSHOTS ?? join(process.cwd(), "..", "target", "console-screenshots");
mkdirSync(SHOTS, { recursive: true });

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** A stoa node on a free port with its own SQLite data; `kill()` is SIGKILL, `start()` again reuses both. */
export async function server(extraEnv = {}) {
  if (!BIN) throw new Error("STOA_BIN must name the stoa binary");
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "stoa-console-"));
  const env = {
    PATH: process.env.PATH,
    STOA_SERVER__PORT: String(port),
    STOA_SERVER__WORKERS: "2",
    STOA_SERVER__DRAIN_SECS: "0",
    STOA_DATA_DIR: dir,
    STOA_DATABASE__URL: `sqlite://${dir}/stoa.db`,
    STOA_AUTH__PASSWORD_HASH_MEMORY_KIB: "1024",
    STOA_AUTH__PASSWORD_HASH_ITERATIONS: "1",
    STOA_AUTH__LOGIN_ATTEMPTS_PER_MINUTE: "1000",
    STOA_LOG__FORMAT: "json",
    ...extraEnv,
  };
  const node = {
    url: `http://127.0.0.1:${port}`,
    port,
    dir,
    child: null,
    log: [],
    async start() {
      const child = spawn(BIN, [], { env, stdio: ["ignore", "pipe", "pipe"] });
      this.child = child;
      const listening = new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`stoa did not listen in 30 s:\n${this.log.slice(-20).join("\n")}`)), 30_000);
        const read = (chunk) => {
          for (const line of String(chunk).split("\n")) {
            if (!line) continue;
            this.log.push(line);
            if (line.includes("stoa listening")) {
              clearTimeout(timer);
              resolve();
            }
          }
        };
        child.stdout.on("data", read);
        child.stderr.on("data", read);
        child.once("exit", (code) => {
          clearTimeout(timer);
          reject(new Error(`stoa exited with ${code}:\n${this.log.slice(-20).join("\n")}`));
        });
      });
      await listening;
      child.removeAllListeners("exit");
    },
    kill() {
      const child = this.child;
      this.child = null;
      if (!child) return Promise.resolve();
      return new Promise((resolve) => {
        child.once("exit", resolve);
        child.kill("SIGKILL");
      });
    },
  };
  await node.start();
  return node;
}

export async function browser() {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
  });
}

/** Polls `check` (async, truthy ends it) until `ms`, then fails naming `what`. */
export async function until(what, check, ms = 10_000, done = (v) => Boolean(v)) {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    try {
      last = await check();
      if (done(last)) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what} (last: ${last})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** REST as a user, with the tokens the console keeps in localStorage. */
export async function rest(base, page, method, path, body) {
  const session = await page.evaluate(() => JSON.parse(localStorage.getItem("stoa.session") ?? "null"));
  const res = await fetch(base + path, {
    method,
    headers: { authorization: `Bearer ${session.access}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

/** Runs axe-core in the page; returns the serious and critical violations. */
export async function accessibility(page) {
  // Evaluated over the DevTools protocol: the console's CSP allows no inline script.
  await page.evaluate(axe.source);
  const result = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await window.axe.run(document, { resultTypes: ["violations"] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(" ")).slice(0, 5) }));
  });
  return result.filter((v) => v.impact === "serious" || v.impact === "critical");
}

export async function shot(page, name) {
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

/** Signs up through the form and lands on the workspaces page. */
export async function signUp(page, base, name, email, password = "correct horse battery") {
  await page.goto(`${base}/register`);
  await page.getByLabel("Name").fill(name);
  await page.getByLabel("E-mail").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Create account" }).click();
  await page.getByRole("heading", { name: "Workspaces" }).waitFor();
}
