// Latency of REST reads, one request at a time (after a warm-up), for the reports and
// search benchmark (loadtest/reports-search.sh).
//
//   node http-bench.mjs BASE TOKEN N LABEL=PATH [LABEL=PATH …]
//
// Prints one JSON line per path: requests, p50/p90/p99/max in milliseconds, response bytes.
const [base, token, n, ...targets] = process.argv.slice(2);
const count = Number(n);

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

for (const target of targets) {
  const eq = target.indexOf('=');
  const label = target.slice(0, eq);
  const path = target.slice(eq + 1);
  const headers = { authorization: `Bearer ${token}` };
  if (label.endsWith('.csv')) headers.accept = 'text/csv';
  let bytes = 0;
  const times = [];
  for (let i = 0; i < count + 5; i++) {
    const t0 = performance.now();
    const res = await fetch(base + path, { headers });
    const body = await res.arrayBuffer();
    const ms = performance.now() - t0;
    if (res.status !== 200) {
      console.error(`${label}: ${res.status} ${Buffer.from(body).toString().slice(0, 300)}`);
      process.exit(1);
    }
    bytes = body.byteLength;
    if (i >= 5) times.push(ms);
  }
  times.sort((a, b) => a - b);
  const r = (x) => Math.round(x * 100) / 100;
  console.log(JSON.stringify({
    label, requests: count, p50_ms: r(percentile(times, 50)), p90_ms: r(percentile(times, 90)),
    p99_ms: r(percentile(times, 99)), max_ms: r(times[times.length - 1]), bytes,
  }));
}
