// Verified e-mail, invitations and password reset, with a real SMTP server (the npm
// `smtp-server` package) taking Stoa's mail: the suite reads each mail, finds its link and
// follows it as the console page behind it would. Run by tests/identity.rs, which starts
// Stoa with smtp.url pointing here and auth.require_verified_email on.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { SMTPServer } from "smtp-server";

import { BASE, api, connect, deferred, join, register } from "../support.mjs";

const PUBLIC_URL = process.env.PUBLIC_URL;
const inbox = [];
const waiting = [];

const smtp = new SMTPServer({
  authOptional: true,
  disabledCommands: ["STARTTLS"],
  logger: false,
  onData(stream, session, callback) {
    const chunks = [];
    stream.on("data", (c) => chunks.push(c));
    stream.on("end", () => {
      const mail = parse(Buffer.concat(chunks).toString("utf8"));
      mail.to = session.envelope.rcptTo.map((r) => r.address.toLowerCase());
      inbox.push(mail);
      for (const w of [...waiting]) if (w.check(mail)) w.signal(mail);
      callback();
    });
  },
});
await new Promise((resolve) => smtp.listen(Number(process.env.SMTP_PORT), "127.0.0.1", resolve));
after(() => smtp.close());

/** The subject and the plain-text part of a MIME message, quoted-printable decoded. */
function parse(raw) {
  const subject = /^Subject: (.*)$/m.exec(raw)?.[1] ?? "";
  const part = raw.split(/\r?\n--/).find((p) => /Content-Type: text\/plain/i.test(p)) ?? raw;
  let body = part.split(/\r?\n\r?\n/).slice(1).join("\n\n");
  if (/Content-Transfer-Encoding: quoted-printable/i.test(part)) {
    body = body
      .replace(/=\r?\n/g, "")
      .replace(/=([0-9A-F]{2})/gi, (_, h) => String.fromCharCode(parseInt(h, 16)));
    // The escapes are bytes of UTF-8.
    body = Buffer.from(body, "latin1").toString("utf8");
  } else if (/Content-Transfer-Encoding: base64/i.test(part)) {
    body = Buffer.from(body.replace(/\s/g, ""), "base64").toString("utf8");
  }
  return { subject, text: body, raw };
}

/** The next mail to `address` whose subject matches, waited for (never slept for). */
function mailTo(address, subject) {
  const check = (m) => m.to.includes(address.toLowerCase()) && subject.test(m.subject) && !m.taken;
  const found = inbox.find(check);
  if (found) {
    found.taken = true;
    return Promise.resolve(found);
  }
  const { promise, signal } = deferred(`a mail to ${address} (${subject})`);
  const w = {
    check,
    signal: (m) => {
      m.taken = true;
      waiting.splice(waiting.indexOf(w), 1);
      signal(m);
    },
  };
  waiting.push(w);
  return promise;
}

/** The token of the link to `path` in a mail, checking the link starts at the public URL. */
function linkToken(mail, path) {
  const match = new RegExp(`(\\S+)${path}\\?token=([A-Za-z0-9_-]+)`).exec(mail.text);
  assert.ok(match, `a ${path} link in: ${mail.text}`);
  assert.equal(match[1], PUBLIC_URL);
  return match[2];
}

test("registration mails a link; until it is followed the address matches nobody", async () => {
  const alice = await register("alice");
  const bob = await register("bob");
  const me = await api("GET", "/api/v1/me", bob.token);
  assert.equal(me.body.email_verified, false);
  const verify = await mailTo(bob.email, /Confirm your e-mail/);
  const token = linkToken(verify, "/verify-email");
  // Adding bob's (unproved) address invites it rather than handing over the workspace.
  const ws = await api("POST", "/api/v1/workspaces", alice.token, { name: "Unproved" });
  const add = await api("POST", `/api/v1/workspaces/${ws.body.id}/members`, alice.token, {
    email: bob.email,
    role: "editor",
  });
  assert.equal(add.status, 202, JSON.stringify(add.body));
  assert.equal((await api("GET", `/api/v1/workspaces/${ws.body.id}`, bob.token)).status, 404);
  // Made a member by id, bob is still not reached by a mention of his unproved address.
  const byId = await api("POST", `/api/v1/workspaces/${ws.body.id}/members`, alice.token, {
    user_id: bob.id,
    role: "editor",
  });
  assert.equal(byId.status, 201);
  const doc = await api("POST", `/api/v1/workspaces/${ws.body.id}/documents`, alice.token, { title: "D" });
  const unproved = await api("POST", `/api/v1/documents/${doc.body.id}/comments`, alice.token, {
    body: `@${bob.email} please look`,
  });
  assert.deepEqual(unproved.body.mentions, []);
  // Following the link proves it, once.
  const proved = await api("POST", "/api/v1/auth/verify-email", null, { token });
  assert.equal(proved.status, 200, JSON.stringify(proved.body));
  assert.equal(proved.body.email_verified, true);
  const again = await api("POST", "/api/v1/auth/verify-email", null, { token });
  assert.equal(again.status, 400);
  assert.equal(again.body.code, "link_invalid");
  assert.equal((await api("GET", "/api/v1/me", bob.token)).body.email_verified, true);
  const proved2 = await api("POST", `/api/v1/documents/${doc.body.id}/comments`, alice.token, {
    body: `@${bob.email} please look`,
  });
  assert.deepEqual(proved2.body.mentions, [bob.id]);
  // Now the address is bob's: adding it adds him (the pending invitation aside).
  const carolWs = await api("POST", "/api/v1/workspaces", alice.token, { name: "Proved" });
  const added = await api("POST", `/api/v1/workspaces/${carolWs.body.id}/members`, alice.token, {
    email: bob.email,
    role: "viewer",
  });
  assert.equal(added.status, 201, JSON.stringify(added.body));
  assert.equal(added.body.user_id, bob.id);
  // Asking for the link again when proved says so.
  const resend = await api("POST", "/api/v1/me/verification-email", bob.token);
  assert.equal(resend.status, 409);
});

test("an invitation is mailed, resent, accepted after sign-up, and each step is an event", async () => {
  const alice = await register("alice");
  const ws = (await api("POST", "/api/v1/workspaces", alice.token, { name: "Invites" })).body.id;
  const email = `cfo.${process.pid}.${Date.now()}@corp.example`;
  const invited = await api("POST", `/api/v1/workspaces/${ws}/members`, alice.token, { email, role: "admin" });
  assert.equal(invited.status, 202, JSON.stringify(invited.body));
  const first = linkToken(await mailTo(email, /invited you/), "/invitations/accept");
  const listed = await api("GET", `/api/v1/workspaces/${ws}/invitations`, alice.token);
  assert.deepEqual(listed.body.items.map((i) => [i.email, i.role, i.expired]), [[email, "admin", false]]);
  const resent = await api("POST", `/api/v1/invitations/${invited.body.id}/resend`, alice.token);
  assert.equal(resent.status, 200);
  const second = linkToken(await mailTo(email, /invited you/), "/invitations/accept");
  assert.notEqual(first, second);

  // The address's owner signs up; someone else cannot use the link.
  const mallory = await register("mallory");
  const stolen = await api("POST", "/api/v1/me/invitations/accept", mallory.token, { token: second });
  assert.equal(stolen.status, 403);
  const signup = await api("POST", "/api/v1/auth/register", null, {
    email,
    password: "correct horse battery",
    display_name: "Cleo",
  });
  assert.equal(signup.status, 201);
  const cleo = signup.body;
  const old = await api("POST", "/api/v1/me/invitations/accept", cleo.access_token, { token: first });
  assert.equal(old.status, 404, "the first link died with the resend");
  const accepted = await api("POST", "/api/v1/me/invitations/accept", cleo.access_token, { token: second });
  assert.equal(accepted.status, 201, JSON.stringify(accepted.body));
  assert.equal(accepted.body.role, "admin");
  // Following the link proved the address.
  assert.equal((await api("GET", "/api/v1/me", cleo.access_token)).body.email_verified, true);
  const twice = await api("POST", "/api/v1/me/invitations/accept", cleo.access_token, { token: second });
  assert.equal(twice.status, 404);
  assert.deepEqual((await api("GET", `/api/v1/workspaces/${ws}/invitations`, alice.token)).body.items, []);

  // A revoked invitation's link stops working.
  const other = `other.${process.pid}.${Date.now()}@corp.example`;
  const pending = await api("POST", `/api/v1/workspaces/${ws}/members`, alice.token, { email: other, role: "viewer" });
  const otherToken = linkToken(await mailTo(other, /invited you/), "/invitations/accept");
  assert.equal((await api("DELETE", `/api/v1/invitations/${pending.body.id}`, alice.token)).status, 204);
  const otherUser = await api("POST", "/api/v1/auth/register", null, {
    email: other,
    password: "correct horse battery",
    display_name: "Otto",
  });
  const revoked = await api("POST", "/api/v1/me/invitations/accept", otherUser.body.access_token, { token: otherToken });
  assert.equal(revoked.status, 404);

  const events = await api("GET", `/api/v1/workspaces/${ws}/events?limit=50`, alice.token);
  const kinds = events.body.items.map((e) => e.kind);
  for (const kind of ["invitation.created", "invitation.resent", "member.added", "invitation.accepted", "invitation.revoked"]) {
    assert.ok(kinds.includes(kind), `${kind} in ${kinds}`);
  }
});

test("a password reset: same answer for any address, one use, every session ended", async () => {
  const dora = await register("dora");
  const socket = connect(dora.token);
  const closed = deferred("dora's socket closing");
  const channel = socket.channel(`user:${dora.id}`, {});
  await join(channel);
  socket.onClose((e) => closed.signal(e));

  const nobody = await api("POST", "/api/v1/auth/password-reset", null, { email: `nobody.${Date.now()}@example.com` });
  const somebody = await api("POST", "/api/v1/auth/password-reset", null, { email: dora.email });
  assert.equal(nobody.status, 202);
  assert.equal(somebody.status, 202);
  assert.equal(nobody.body, somebody.body);
  const token = linkToken(await mailTo(dora.email, /Reset your Stoa password/), "/reset-password");
  assert.ok(!inbox.some((m) => m.to.some((t) => t.startsWith("nobody."))), "no mail to an unknown address");

  const short = await api("POST", "/api/v1/auth/password-reset/confirm", null, { token, new_password: "short" });
  assert.equal(short.status, 422);
  const reset = await api("POST", "/api/v1/auth/password-reset/confirm", null, {
    token,
    new_password: "a brand new password",
  });
  assert.equal(reset.status, 204, JSON.stringify(reset.body));
  const event = await closed.promise;
  assert.equal(event.reason, "password_reset");
  socket.disconnect();
  assert.equal((await api("GET", "/api/v1/me", dora.token)).status, 401, "the old access token is refused");
  const reused = await api("POST", "/api/v1/auth/password-reset/confirm", null, { token, new_password: "yet another password" });
  assert.equal(reused.status, 400);
  const oldLogin = await api("POST", "/api/v1/auth/login", null, { email: dora.email, password: "correct horse battery" });
  assert.equal(oldLogin.status, 401);
  const login = await api("POST", "/api/v1/auth/login", null, { email: dora.email, password: "a brand new password" });
  assert.equal(login.status, 200);

  // Five mails an hour to one address; the sixth ask is refused.
  let last;
  for (let i = 0; i < 5; i += 1) {
    last = await api("POST", "/api/v1/auth/password-reset", null, { email: dora.email });
  }
  assert.equal(last.status, 429);
});

test("what stays unread is mailed as one digest to those who opted in, and its link unsubscribes", async () => {
  const alice = await register("alice");
  const bob = await register("bob");
  const carol = await register("carol");
  for (const who of [alice, bob, carol]) {
    const token = linkToken(await mailTo(who.email, /Confirm your e-mail/), "/verify-email");
    assert.equal((await api("POST", "/api/v1/auth/verify-email", null, { token })).status, 200);
  }
  // Bob and Carol opt in to mentions; Alice does not.
  for (const who of [bob, carol]) {
    const opted = await api("PATCH", "/api/v1/me", who.token, {
      notification_preferences: { email_mentions: true },
    });
    assert.equal(opted.status, 200, JSON.stringify(opted.body));
    assert.equal(opted.body.notification_preferences.email_mentions, true);
  }
  const ws = (await api("POST", "/api/v1/workspaces", alice.token, { name: "Digest" })).body.id;
  for (const who of [bob, carol]) {
    await api("POST", `/api/v1/workspaces/${ws}/members`, alice.token, { user_id: who.id, role: "editor" });
  }
  const doc = (await api("POST", `/api/v1/workspaces/${ws}/documents`, alice.token, { title: "D" })).body.id;
  for (const text of ["first look", "second look"]) {
    const c = await api("POST", `/api/v1/documents/${doc}/comments`, alice.token, { body: `@${bob.email} ${text}` });
    assert.deepEqual(c.body.mentions, [bob.id]);
  }
  // Carol mentions Alice, who did not opt in: no mail for her.
  await api("POST", `/api/v1/documents/${doc}/comments`, carol.token, { body: `@${alice.email} hello` });

  // Both of Bob's mentions stay unread past the delay: one digest, plain and HTML, with a
  // one-click unsubscribe.
  const digest = await mailTo(bob.email, /unread notification/);
  assert.equal(digest.subject, "2 unread notifications in Stoa");
  assert.match(digest.text, /You were mentioned in a comment: “@\S+ first look”/);
  assert.match(digest.text, /You were mentioned in a comment: “@\S+ second look”/);
  assert.match(digest.raw, /Content-Type: text\/html/i);
  const header = /^List-Unsubscribe: <([^>]+)>/m.exec(digest.raw);
  assert.ok(header, digest.raw);
  assert.match(digest.raw, /^List-Unsubscribe-Post: List-Unsubscribe=One-Click/m);
  const link = /(https:\/\/stoa\.example\.com\/api\/v1\/unsubscribe\?user=\d+&token=[0-9a-f]{64})/.exec(digest.text);
  assert.ok(link, digest.text);
  assert.equal(link[1], header[1], "the text's link is the header's");

  // The link, followed: a page whose button unsubscribes (opening it changes nothing).
  const local = link[1].replace(PUBLIC_URL, BASE);
  const page = await fetch(local);
  assert.equal(page.status, 200);
  assert.match(await page.text(), /<form method="post"/);
  assert.equal((await api("GET", "/api/v1/me", bob.token)).body.notification_preferences.email_mentions, true);
  const forged = await fetch(local.replace(/token=[0-9a-f]{4}/, "token=0000"), { method: "POST" });
  assert.equal(forged.status, 403);
  // The one-click, as a mail client sends it.
  const clicked = await fetch(local, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: "List-Unsubscribe=One-Click",
  });
  assert.equal(clicked.status, 200);
  assert.equal((await api("GET", "/api/v1/me", bob.token)).body.notification_preferences.email_mentions, false);

  // Mentioned again, with Carol: Carol's digest comes, and Bob's does not come with it.
  for (const who of [bob, carol]) {
    await api("POST", `/api/v1/documents/${doc}/comments`, alice.token, { body: `@${who.email} once more` });
  }
  const carols = await mailTo(carol.email, /unread notification/);
  assert.equal(carols.subject, "1 unread notification in Stoa");
  const bobs = inbox.filter((m) => m.to.includes(bob.email.toLowerCase()) && /unread notification/.test(m.subject));
  assert.equal(bobs.length, 1, "one digest for Bob, and none after he unsubscribed");
  const alices = inbox.filter((m) => m.to.includes(alice.email.toLowerCase()) && /unread notification/.test(m.subject));
  assert.equal(alices.length, 0, "Alice never opted in");
});
