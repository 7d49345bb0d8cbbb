// Writes events into one workspace at a steady rate (documents created over REST from
// several keep-alive connections), for loadtest/webhooks.sh.
//
//   node webhook-writer.mjs BASE TOKEN WORKSPACE RATE SECONDS [CONNECTIONS]
import http from "node:http";

const [base, token, ws, rateArg, secondsArg, connArg] = process.argv.slice(2);
const rate = Number(rateArg);
const total = Math.round(rate * Number(secondsArg));
const conns = Number(connArg ?? 32);
const agent = new http.Agent({ keepAlive: true, maxSockets: conns });
const url = new URL(`/api/v1/workspaces/${ws}/documents`, base);
let ok = 0;
let failed = 0;
function post(i) {
  return new Promise((resolve) => {
    const body = JSON.stringify({ title: `Doc ${i}` });
    const req = http.request(
      url,
      {
        method: "POST",
        agent,
        headers: { "content-type": "application/json", authorization: `Bearer ${token}`, "content-length": Buffer.byteLength(body) },
      },
      (res) => {
        res.resume();
        res.on("end", () => {
          if (res.statusCode === 201) ok += 1;
          else failed += 1;
          resolve();
        });
      },
    );
    req.on("error", () => {
      failed += 1;
      resolve();
    });
    req.end(body);
  });
}
const start = performance.now();
const pending = [];
for (let i = 0; i < total; i++) {
  const due = start + (i * 1000) / rate;
  const wait = due - performance.now();
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  pending.push(post(i));
}
await Promise.all(pending);
const secs = (performance.now() - start) / 1000;
console.log(JSON.stringify({ written: ok, failed, seconds: Math.round(secs * 100) / 100, per_sec: Math.round(ok / secs) }));
agent.destroy();
