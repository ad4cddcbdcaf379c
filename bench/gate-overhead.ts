/**
 * The gate's cost per request: POST /v1/infer through the full gate against the
 * same server with the gate off, both on an instant remote upstream, same run.
 * Usage: node dist/bench/gate-overhead.js [--seconds N] [--connections N]
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import autocannon from "autocannon";
import { benchKey } from "./bench-key.js";
import { startProcess } from "./bench-processes.js";

const { values } = parseArgs({
  options: { seconds: { type: "string", default: "10" }, connections: { type: "string", default: "64" }, rounds: { type: "string", default: "2" } },
});
const rounds = Number(values.rounds);
const seconds = Number(values.seconds);
const connections = Number(values.connections);
const here = new URL(".", import.meta.url).pathname;

interface Result {
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  non2xx: number;
}

async function load(url: string, key: string | undefined): Promise<Result> {
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (key) headers.authorization = `Bearer ${key}`;
  const options = {
    url: `${url}/v1/infer`,
    method: "POST" as const,
    headers,
    body: JSON.stringify({ specialist: "classify", prompt: "I love it" }),
    connections,
  };
  await autocannon({ ...options, duration: 2 }); // warm-up: JIT, connection pools, SQLite pages
  const r = await autocannon({ ...options, duration: seconds });
  return { rps: r.requests.average, p50: r.latency.p50, p99: r.latency.p99, errors: r.errors, non2xx: r.non2xx };
}

const upstreamPort = 19000 + Math.floor(Math.random() * 500);
const upstream = await startProcess([join(here, "instant-upstream.js"), String(upstreamPort)]);
const results: Record<string, Result> = {};
try {
  // Alternate the two servers and keep each one's best round, so drift on the machine hits both alike.
  for (const mode of Array.from({ length: rounds }, () => ["open", "gate"] as const).flat()) {
    const dataDir = mkdtempSync(join(tmpdir(), "alveare-gate-bench-"));
    const port = 19500 + Math.floor(Math.random() * 400);
    const key = mode === "gate" ? benchKey(dataDir) : undefined;
    const server = await startProcess([join(here, "serve-for-bench.js"), String(port), String(upstreamPort), dataDir, mode]);
    try {
      const result = await load(`http://127.0.0.1:${port}`, key);
      if (results[mode] === undefined || result.rps > results[mode].rps) results[mode] = result;
    } finally {
      server.kill("SIGTERM");
      await new Promise((r) => server.on("exit", r));
    }
  }
} finally {
  upstream.kill();
}

const open = results.open!;
const gate = results.gate!;
process.stdout.write(
  `POST /v1/infer on an instant upstream, ${connections} connections, ${seconds} s per run, best of ${rounds} alternating rounds\n\n`,
);
process.stdout.write("| server | req/s | p50 ms | p99 ms | errors | non-2xx |\n|---|---|---|---|---|---|\n");
for (const [name, r] of [
  ["gate off", open],
  ["full gate", gate],
] as const) {
  process.stdout.write(`| ${name} | ${r.rps.toFixed(0)} | ${r.p50} | ${r.p99} | ${r.errors} | ${r.non2xx} |\n`);
}
process.stdout.write(
  `\nfull gate / gate off throughput: ${(gate.rps / open.rps).toFixed(3)}x (gate cost ${((1 - gate.rps / open.rps) * 100).toFixed(1)}%)\n`,
);
