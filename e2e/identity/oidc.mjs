// Single sign-on through OpenID Connect, with npm's oidc-provider as the identity provider,
// driven through the whole authorization code flow as a browser would (redirects followed,
// cookies kept per browser): first sign-in, linking by a verified address, a tampered
// state, a replayed code, a wrong nonce, an unverified address, another browser, a key
// rotated by the provider, and a workspace that requires the provider for its domain.
// Run by tests/identity.rs, which starts a Stoa configured for the provider
// (auth.oidc name "test", issuer http://127.0.0.1:PROVIDER_PORT) on STOA_URL.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import Provider from "oidc-provider";
import { generateKeyPair, exportJWK } from "jose";
import { existsSync } from "node:fs";

import { BASE, api, connect, deferred } from "../support.mjs";

const PORT = Number(process.env.PROVIDER_PORT);
const ISSUER = `http://127.0.0.1:${PORT}`;
const CALLBACK = `${BASE}/api/v1/auth/oidc/test/callback`;
const PASSWORD = "correct horse battery";

// The provider's people: the login hint Stoa passes on picks who signs in.
const PEOPLE = {
  "alice@acme.test": { email_verified: true, name: "Alice Doe" },
  "bob@acme.test": { email_verified: true, name: "Bob Roe" },
  "mallory@acme.test": { email_verified: false, name: "Mallory" },
  "carol@acme.test": { email_verified: true, name: "Carol Owner" },
  "dave@acme.test": { email_verified: true, name: "Dave Member" },
  // Who signs in when Stoa passes no hint (the console's button).
  "connie@acme.test": { email_verified: true, name: "Connie Console" },
};

async function signingKey() {
  const { privateKey } = await generateKeyPair("RS256", { extractable: true });
  const jwk = await exportJWK(privateKey);
  return { ...jwk, kid: `key-${Math.random().toString(36).slice(2)}`, alg: "RS256", use: "sig" };
}

let server;
async function startProvider(key) {
  const provider = new Provider(ISSUER, {
    clients: [
      {
        client_id: "stoa",
        client_secret: "stoa-client-secret-0123456789",
        redirect_uris: [CALLBACK],
        grant_types: ["authorization_code"],
        response_types: ["code"],
        token_endpoint_auth_method: "client_secret_basic",
      },
    ],
    jwks: { keys: [key] },
    cookies: { keys: ["provider-cookie-key-0123456789"] },
    claims: { openid: ["sub"], email: ["email", "email_verified"], profile: ["name"] },
    pkce: { required: () => true },
    features: { devInteractions: { enabled: false } },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    findAccount: async (ctx, sub) =>
      PEOPLE[sub] && {
        accountId: sub,
        claims: async () => ({ sub, email: sub, ...PEOPLE[sub] }),
      },
    // Stoa is a first-party client: no consent screen.
    loadExistingGrant: async (ctx) => {
      const grant = new ctx.oidc.provider.Grant({
        clientId: ctx.oidc.client.clientId,
        accountId: ctx.oidc.session.accountId,
      });
      grant.addOIDCScope("openid email profile");
      await grant.save();
      return grant;
    },
  });
  const callback = provider.callback();
  server = http.createServer(async (req, res) => {
    if (!req.url.startsWith("/interaction/")) return callback(req, res);
    try {
      const { params } = await provider.interactionDetails(req, res);
      const who = params.login_hint ?? "connie@acme.test";
      const result = PEOPLE[who]
        ? { login: { accountId: who } }
        : { error: "access_denied", error_description: "no such person" };
      await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
    } catch (e) {
      res.statusCode = 500;
      res.end(String(e));
    }
  });
  await new Promise((resolve) => server.listen(PORT, "127.0.0.1", resolve));
}

async function stopProvider() {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
}

after(stopProvider);

/** A browser: cookies kept per host (paths ignored), redirects followed by hand. */
class Browser {
  constructor() {
    this.jar = new Map();
  }
  cookies(url) {
    const host = new URL(url).host;
    const jar = this.jar.get(host) ?? new Map();
    return [...jar].map(([k, v]) => `${k}=${v}`).join("; ");
  }
  keep(url, res) {
    const host = new URL(url).host;
    const jar = this.jar.get(host) ?? new Map();
    for (const line of res.headers.getSetCookie()) {
      const [pair] = line.split(";");
      const i = pair.indexOf("=");
      jar.set(pair.slice(0, i).trim(), pair.slice(i + 1).trim());
    }
    this.jar.set(host, jar);
  }
  async get(url) {
    const res = await fetch(url, { redirect: "manual", headers: { cookie: this.cookies(url) } });
    this.keep(url, res);
    const location = res.headers.get("location");
    return { status: res.status, location: location && new URL(location, url).href, res };
  }
  async post(url, body) {
    const res = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json", cookie: this.cookies(url) },
      body: JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : null };
  }
}

/**
 * Begins a sign-in as `who` and follows the browser to the provider and back, stopping at
 * the callback URL the provider sends the browser to. `tamper` may change the URL Stoa
 * sends the browser to the provider with.
 */
async function toCallback(browser, who, { tamper, next = "/w/1" } = {}) {
  const query = new URLSearchParams({ login_hint: who, next });
  const start = await browser.get(`${BASE}/api/v1/auth/oidc/test/start?${query}`);
  assert.equal(start.status, 302, "the start sends the browser to the provider");
  let location = start.location;
  assert.ok(location.startsWith(`${ISSUER}/auth?`), location);
  const auth = new URL(location);
  assert.equal(auth.searchParams.get("code_challenge_method"), "S256");
  assert.ok(auth.searchParams.get("nonce"), "a nonce is sent");
  assert.ok(auth.searchParams.get("state"), "a state is sent");
  if (tamper) location = tamper(location);
  for (let hops = 0; !location.startsWith(CALLBACK); hops++) {
    assert.ok(hops < 10, `too many redirects; at ${location}`);
    const step = await browser.get(location);
    assert.ok([302, 303].includes(step.status), `${location}: ${step.status} ${await step.res.text()}`);
    location = step.location;
  }
  return location;
}

/** The console page the callback sends the browser to, and its fragment. */
async function callback(browser, url) {
  const res = await browser.get(url);
  assert.equal(res.status, 302, `callback: ${res.status} ${await res.res.text()}`);
  const page = new URL(res.location);
  assert.equal(`${page.origin}${page.pathname}`, `${BASE}/signin/sso`);
  return Object.fromEntries(new URLSearchParams(page.hash.slice(1)));
}

/** A whole sign-in: tokens, as the console gets them. */
async function signIn(who, browser = new Browser()) {
  const outcome = await callback(browser, await toCallback(browser, who));
  assert.ok(outcome.handoff, `signed in: ${JSON.stringify(outcome)}`);
  assert.equal(outcome.next, "/w/1");
  const tokens = await browser.post(`${BASE}/api/v1/auth/oidc/exchange`, {
    handoff: outcome.handoff,
  });
  assert.equal(tokens.status, 200, JSON.stringify(tokens.body));
  return { ...tokens.body, browser, handoff: outcome.handoff };
}

test("the sign-in methods name the provider", async () => {
  await startProvider(await signingKey());
  const methods = await api("GET", "/api/v1/auth/methods");
  assert.deepEqual(methods.body.sso, [{ name: "test", display_name: "Test IdP" }]);
  const unknown = await fetch(`${BASE}/api/v1/auth/oidc/nope/start`, { redirect: "manual" });
  assert.equal(unknown.status, 404);
});

test("a first sign-in makes the account, with the provider's verified address and name", async () => {
  const alice = await signIn("alice@acme.test");
  assert.equal(alice.user.email, "alice@acme.test");
  assert.equal(alice.user.display_name, "Alice Doe");
  const me = await api("GET", "/api/v1/me", alice.access_token);
  assert.equal(me.status, 200);
  assert.equal(me.body.email_verified, true);
  // The same tokens as a password sign-in: they refresh, and the stock client connects.
  const refreshed = await api("POST", "/api/v1/auth/refresh", null, {
    refresh_token: alice.refresh_token,
  });
  assert.equal(refreshed.status, 200, JSON.stringify(refreshed.body));
  const socket = connect(refreshed.body.access_token);
  const opened = deferred("the socket's open");
  socket.onOpen(() => opened.signal());
  socket.connect();
  await opened.promise;
  socket.disconnect();
  // Signing in again finds the same account.
  const again = await signIn("alice@acme.test");
  assert.equal(again.user.id, alice.user.id);
  // The account has no password to sign in with.
  const login = await api("POST", "/api/v1/auth/login", null, {
    email: "alice@acme.test",
    password: PASSWORD,
  });
  assert.equal(login.status, 401);
});

test("the one-time code works once, and only in the browser that signed in", async () => {
  const browser = new Browser();
  const outcome = await callback(browser, await toCallback(browser, "alice@acme.test"));
  const elsewhere = await new Browser().post(`${BASE}/api/v1/auth/oidc/exchange`, {
    handoff: outcome.handoff,
  });
  assert.equal(elsewhere.status, 400);
  assert.equal(elsewhere.body.code, "handoff_invalid");
  // Taken by the attempt from elsewhere: a code is good for one try.
  const again = await browser.post(`${BASE}/api/v1/auth/oidc/exchange`, {
    handoff: outcome.handoff,
  });
  assert.equal(again.status, 400);
  const forged = await browser.post(`${BASE}/api/v1/auth/oidc/exchange`, { handoff: "x".repeat(43) });
  assert.equal(forged.status, 400);
});

test("an account registered with the address, never verified, is claimed: its password and sessions end", async () => {
  const reg = await api("POST", "/api/v1/auth/register", null, {
    email: "bob@acme.test",
    password: PASSWORD,
    display_name: "Squatter",
  });
  assert.equal(reg.status, 201, JSON.stringify(reg.body));
  const bob = await signIn("bob@acme.test");
  assert.equal(bob.user.id, reg.body.user.id, "linked by the verified address");
  const refresh = await api("POST", "/api/v1/auth/refresh", null, {
    refresh_token: reg.body.refresh_token,
  });
  assert.equal(refresh.status, 401, "the squatter's login ended");
  const old = await api("GET", "/api/v1/me", reg.body.access_token);
  assert.equal(old.status, 401);
  const login = await api("POST", "/api/v1/auth/login", null, {
    email: "bob@acme.test",
    password: PASSWORD,
  });
  assert.equal(login.status, 401, "the squatter's password no longer works");
  assert.equal((await api("GET", "/api/v1/me", bob.access_token)).status, 200);
});

test("an address the provider has not verified is refused, and no account is made", async () => {
  const browser = new Browser();
  const outcome = await callback(browser, await toCallback(browser, "mallory@acme.test"));
  assert.equal(outcome.error, "email_not_verified", JSON.stringify(outcome));
  assert.equal(outcome.handoff, undefined);
});

test("a tampered state is refused; the real one works once", async () => {
  const browser = new Browser();
  const url = await toCallback(browser, "alice@acme.test");
  const tampered = new URL(url);
  tampered.searchParams.set("state", tampered.searchParams.get("state") + "x");
  assert.equal((await callback(browser, tampered.href)).error, "state_invalid");
  const missing = new URL(url);
  missing.searchParams.delete("state");
  assert.equal((await callback(browser, missing.href)).error, "state_invalid");
  const ok = await callback(browser, url);
  assert.ok(ok.handoff);
  // The same callback again: its state was spent.
  assert.equal((await callback(browser, url)).error, "state_invalid");
});

test("a code replayed into another sign-in is refused", async () => {
  const browser = new Browser();
  const first = await toCallback(browser, "alice@acme.test");
  assert.ok((await callback(browser, first)).handoff);
  const code = new URL(first).searchParams.get("code");
  // A new sign-in of the same browser, fed the spent code.
  const second = new URL(await toCallback(browser, "alice@acme.test"));
  second.searchParams.set("code", code);
  const outcome = await callback(browser, second.href);
  assert.equal(outcome.error, "code_refused", JSON.stringify(outcome));
});

test("an ID token with another nonce is refused", async () => {
  const browser = new Browser();
  const url = await toCallback(browser, "alice@acme.test", {
    tamper: (location) => {
      const u = new URL(location);
      u.searchParams.set("nonce", "a-nonce-stoa-never-made");
      return u.href;
    },
  });
  const outcome = await callback(browser, url);
  assert.equal(outcome.error, "id_token_invalid", JSON.stringify(outcome));
  assert.match(outcome.error_description, /nonce/i);
});

test("a callback in a browser that did not begin the sign-in is refused", async () => {
  const browser = new Browser();
  const url = await toCallback(browser, "alice@acme.test");
  const outcome = await callback(new Browser(), url);
  assert.equal(outcome.error, "browser_mismatch");
  // Nor was the sign-in spent for its real browser... it was: a state is taken once.
  assert.equal((await callback(browser, url)).error, "state_invalid");
});

test("the page to return to is a path of this server, or the console's home", async () => {
  for (const next of ["//evil.example/x", "https://evil.example/", "/\\evil.example", "w/1"]) {
    const browser = new Browser();
    const outcome = await callback(browser, await toCallback(browser, "alice@acme.test", { next }));
    assert.ok(outcome.handoff);
    assert.equal(outcome.next, "/", `next=${next}`);
  }
});

test("a person who cancels at the provider comes back with access_denied", async () => {
  const browser = new Browser();
  const outcome = await callback(browser, await toCallback(browser, "nobody@acme.test"));
  assert.equal(outcome.error, "access_denied", JSON.stringify(outcome));
});

test("a key the provider rotates in is fetched", async () => {
  await stopProvider();
  await startProvider(await signingKey());
  const alice = await signIn("alice@acme.test");
  assert.equal(alice.user.email, "alice@acme.test");
});

test("a workspace requiring the provider for its domain ends its members' other logins", async () => {
  const carol = await signIn("carol@acme.test");
  const ws = await api("POST", "/api/v1/workspaces", carol.access_token, { name: "Acme" });
  assert.equal(ws.status, 201, JSON.stringify(ws.body));
  // Dave signed in with a password, with a socket open.
  const dave = await api("POST", "/api/v1/auth/register", null, {
    email: "dave@acme.test",
    password: PASSWORD,
    display_name: "Dave",
  });
  assert.equal(dave.status, 201);
  // Erin's address is elsewhere: the rule is not hers.
  const erin = await api("POST", "/api/v1/auth/register", null, {
    email: "erin@elsewhere.test",
    password: PASSWORD,
    display_name: "Erin",
  });
  for (const who of [dave, erin]) {
    const add = await api("POST", `/api/v1/workspaces/${ws.body.id}/members`, carol.access_token, {
      user_id: who.body.user.id,
      role: "editor",
    });
    assert.equal(add.status, 201, JSON.stringify(add.body));
  }
  const socket = connect(dave.body.access_token, { reconnectAfterMs: () => 60_000 });
  const opened = deferred("dave's socket open");
  const closed = deferred("dave's socket close");
  socket.onOpen(() => opened.signal());
  socket.onClose((e) => closed.signal(e));
  socket.connect();
  await opened.promise;

  // Bad rules are refused.
  const unknown = await api("PUT", `/api/v1/workspaces/${ws.body.id}/sso`, carol.access_token, {
    provider: "nope",
    domains: ["acme.test"],
  });
  assert.equal(unknown.status, 422);
  const notDomain = await api("PUT", `/api/v1/workspaces/${ws.body.id}/sso`, carol.access_token, {
    provider: "test",
    domains: ["not a domain"],
  });
  assert.equal(notDomain.status, 422);
  const byEditor = await api("PUT", `/api/v1/workspaces/${ws.body.id}/sso`, dave.body.access_token, {
    provider: "test",
    domains: ["acme.test"],
  });
  assert.equal(byEditor.status, 403);

  const rule = await api("PUT", `/api/v1/workspaces/${ws.body.id}/sso`, carol.access_token, {
    provider: "test",
    domains: ["ACME.test"],
  });
  assert.equal(rule.status, 200, JSON.stringify(rule.body));
  assert.deepEqual(rule.body, { provider: "test", domains: ["acme.test"] });

  // Dave's password login ends at once: the socket, the access token, the refresh token.
  const close = await closed.promise;
  assert.equal(close.code, 1008, `closed with ${close.code} ${close.reason}`);
  assert.equal(close.reason, "sso_required");
  socket.disconnect();
  assert.equal((await api("GET", "/api/v1/me", dave.body.access_token)).status, 401);
  const refresh = await api("POST", "/api/v1/auth/refresh", null, {
    refresh_token: dave.body.refresh_token,
  });
  assert.equal(refresh.status, 401);
  const login = await api("POST", "/api/v1/auth/login", null, {
    email: "dave@acme.test",
    password: PASSWORD,
  });
  assert.equal(login.status, 403);
  assert.equal(login.body.code, "sso_required");
  assert.equal(login.body.provider, "test");
  // Through the provider, Dave is in.
  const daveSso = await signIn("dave@acme.test");
  assert.equal(daveSso.user.id, dave.body.user.id);
  const docs = await api("GET", `/api/v1/workspaces/${ws.body.id}/documents`, daveSso.access_token);
  assert.equal(docs.status, 200);
  // Erin, of another domain, keeps her password.
  const erinLogin = await api("POST", "/api/v1/auth/login", null, {
    email: "erin@elsewhere.test",
    password: PASSWORD,
  });
  assert.equal(erinLogin.status, 200);
  // Carol's own login came from the provider: it stands.
  assert.equal((await api("GET", "/api/v1/me", carol.access_token)).status, 200);
  const got = await api("GET", `/api/v1/workspaces/${ws.body.id}/sso`, erinLogin.body.access_token);
  assert.deepEqual(got.body, { provider: "test", domains: ["acme.test"] });

  // An owner signed in with a password may not set a rule that would sign them out.
  const frank = await api("POST", "/api/v1/auth/register", null, {
    email: "frank@frank.test",
    password: PASSWORD,
    display_name: "Frank",
  });
  const fws = await api("POST", "/api/v1/workspaces", frank.body.access_token, { name: "Frank's" });
  const lockout = await api("PUT", `/api/v1/workspaces/${fws.body.id}/sso`, frank.body.access_token, {
    provider: "test",
    domains: ["frank.test"],
  });
  assert.equal(lockout.status, 409);
  assert.equal(lockout.body.code, "sso_lockout");

  // Lifted: passwords work again.
  assert.equal(
    (await api("DELETE", `/api/v1/workspaces/${ws.body.id}/sso`, carol.access_token)).status,
    204,
  );
  assert.deepEqual(
    (await api("GET", `/api/v1/workspaces/${ws.body.id}/sso`, carol.access_token)).body,
    { provider: null, domains: [] },
  );
});

test("an account without a password is deleted from a fresh single sign-on", async () => {
  const alice = await signIn("alice@acme.test");
  const noPassword = await api("DELETE", "/api/v1/me", alice.access_token, {});
  assert.equal(noPassword.status, 204, JSON.stringify(noPassword.body));
  assert.equal((await api("GET", "/api/v1/me", alice.access_token)).status, 401);
});

// The console, in Debian's Chromium (playwright-core of the console's own packages).
const PLAYWRIGHT = new URL("../../web/node_modules/playwright-core/index.mjs", import.meta.url);
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

test("the console signs in through the provider, and deletes the account with a fresh sign-in", async (t) => {
  if (!existsSync(PLAYWRIGHT) || !existsSync(CHROMIUM)) {
    const why = "the console's part needs npm ci --prefix web and Debian's chromium";
    if (process.env.CI === "true") assert.fail(why);
    t.skip(why);
    return;
  }
  const { chromium } = await import(PLAYWRIGHT.href);
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
  });
  try {
    const page = await (await browser.newContext()).newPage();
    await page.goto(`${BASE}/signin?next=${encodeURIComponent("/account")}`);
    await page.getByRole("button", { name: "Sign in with Test IdP" }).click();
    // To the provider and back, the code traded, and on to the page asked for.
    await page.waitForURL(`${BASE}/account`);
    await page.getByText("Connie Console").first().waitFor();
    assert.equal(new URL(page.url()).hash, "", "the one-time code is gone from the address");
    // No password to change; deletion needs a fresh sign-in, which this one is.
    await page.getByText("Your account has no password").waitFor();
    assert.equal(await page.getByText("Change password").count(), 0);
    await page.getByRole("button", { name: "Delete my account" }).click();
    await page.waitForURL(/\/signin/);
    const gone = await api("POST", "/api/v1/auth/login", null, { email: "connie@acme.test", password: PASSWORD });
    assert.equal(gone.status, 401);

    // A refused sign-in says why on the console's page (a browser the provider knows nobody in).
    const other = await (await browser.newContext()).newPage();
    await other.goto(`${BASE}/api/v1/auth/oidc/test/start?login_hint=mallory%40acme.test`);
    await other.waitForURL(`${BASE}/signin/sso`);
    await other.getByText("the provider has not verified your e-mail address").waitFor();
    await other.getByRole("link", { name: "Back to sign in" }).waitFor();
  } finally {
    await browser.close();
  }
});
