/**
 * What observability costs per request: POST /v1/infer through the full gate on
 * an instant remote upstream, with metrics off, metrics on, and metrics plus
 * tracing (to a local OTLP sink that discards), alternating rounds in one run.
 * Reports req/s and the server's CPU time per request (Linux /proc).
 * Usage: node dist/bench/metrics-overhead.js [--seconds N] [--connections N] [--rounds N]
 */
import { mkdtempSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import autocannon from "autocannon";
import { benchKey } from "./bench-key.js";
import { cpuSeconds, startProcess } from "./bench-processes.js";

const { values } = parseArgs({
  options: { seconds: { type: "string", default: "10" }, connections: { type: "string", default: "32" }, rounds: { type: "string", default: "3" } },
});
const rounds = Number(values.rounds);
const seconds = Number(values.seconds);
const connections = Number(values.connections);
const here = new URL(".", import.meta.url).pathname;

type Mode = "metrics off" | "metrics on" | "metrics + tracing";
interface Result {
  rps: number;
  cpuMsPerRequest: number;
  p99: number;
  non2xx: number;
}

async function load(url: string, key: string, pid: number): Promise<Result> {
  const headers = { "content-type": "application/json", authorization: `Bearer ${key}` };
  const options = {
    url: `${url}/v1/infer`,
    method: "POST" as const,
    headers,
    body: JSON.stringify({ specialist: "classify", prompt: "I love it" }),
    connections,
  };
  await autocannon({ ...options, duration: 2 }); // warm-up: JIT, connection pools, SQLite pages
  const cpuBefore = cpuSeconds(pid);
  const r = await autocannon({ ...options, duration: seconds });
  const cpu = cpuSeconds(pid) - cpuBefore;
  return { rps: r.requests.average, cpuMsPerRequest: (cpu * 1000) / Math.max(1, r.requests.total), p99: r.latency.p99, non2xx: r.non2xx };
}

/** Accepts OTLP exports and drops them: tracing pays for building and sending spans, not for a collector. */
async function otlpSink(): Promise<{ url: string; server: Server; received: () => number }> {
  let posts = 0;
  const server = createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      posts++;
      res.writeHead(200, { "content-type": "application/json" }).end("{}");
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server, received: () => posts };
}

const upstreamPort = 19000 + Math.floor(Math.random() * 500);
const upstream = await startProcess([join(here, "instant-upstream.js"), String(upstreamPort)], process.env);
const sink = await otlpSink();
const results = new Map<Mode, Result[]>();
try {
  const modes: Mode[] = ["metrics off", "metrics on", "metrics + tracing"];
  for (const mode of Array.from({ length: rounds }, () => modes).flat()) {
    const dataDir = mkdtempSync(join(tmpdir(), "alveare-metrics-bench-"));
    const port = 19500 + Math.floor(Math.random() * 400);
    const env: NodeJS.ProcessEnv = { ...process.env, ALVEARE_METRICS_PORT: mode === "metrics off" ? "0" : String(port + 1000) };
    delete env.OTEL_EXPORTER_OTLP_ENDPOINT;
    if (mode === "metrics + tracing") env.OTEL_EXPORTER_OTLP_ENDPOINT = sink.url;
    const key = benchKey(dataDir);
    const server = await startProcess([join(here, "serve-for-bench.js"), String(port), String(upstreamPort), dataDir, "gate"], env);
    try {
      const result = await load(`http://127.0.0.1:${port}`, key, server.pid!);
      results.set(mode, [...(results.get(mode) ?? []), result]);
    } finally {
      server.kill("SIGTERM");
      await new Promise((r) => server.on("exit", r));
    }
  }
} finally {
  upstream.kill();
  sink.server.close();
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
process.stdout.write(
  `POST /v1/infer, full gate, instant upstream, ${connections} connections, ${seconds} s per run, median of ${rounds} alternating rounds\n\n`,
);
process.stdout.write("| server | req/s | CPU ms / request | p99 ms | non-2xx |\n|---|---|---|---|---|\n");
const base = median(results.get("metrics off")!.map((r) => r.rps));
for (const [mode, rs] of results) {
  const rps = median(rs.map((r) => r.rps));
  const change = mode === "metrics off" ? "" : ` (${((rps / base - 1) * 100).toFixed(1)}%)`;
  process.stdout.write(
    `| ${mode} | ${rps.toFixed(0)}${change} | ${median(rs.map((r) => r.cpuMsPerRequest)).toFixed(3)} | ${median(rs.map((r) => r.p99))} | ${rs.reduce((n, r) => n + r.non2xx, 0)} |\n`,
  );
}
process.stdout.write(`\nOTLP exports received by the sink: ${sink.received()}\n`);
