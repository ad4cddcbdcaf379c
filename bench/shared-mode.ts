/**
 * What the shared mode costs: POST /v1/infer through the full gate on an instant
 * remote upstream, for one node on SQLite, one node on the shared backends, and
 * two nodes on the shared backends with the load split evenly over them (a
 * round-robin balancer's share), alternating rounds in one run. Reports req/s,
 * p50/p99 and the servers' CPU time per request (Linux /proc).
 * Shared backends: PostgreSQL (--database-url, an empty database of its own) + Redis.
 * Usage: node dist/bench/shared-mode.js [--seconds N] [--connections N] [--rounds N] [--redis-url U] [--database-url U]
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import autocannon from "autocannon";
import { Redis } from "ioredis";

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "5" },
    connections: { type: "string", default: "32" },
    rounds: { type: "string", default: "3" },
    "redis-url": { type: "string", default: "redis://127.0.0.1:6379" },
    "database-url": { type: "string" },
  },
});
const rounds = Number(values.rounds);
const seconds = Number(values.seconds);
const connections = Number(values.connections);
const redisUrl = values["redis-url"];
const databaseUrl = values["database-url"];
if (databaseUrl === undefined) {
  process.stderr.write("shared-mode: --database-url postgres://… (an empty database for the benchmark) is required\n");
  process.exit(2);
}
const here = new URL(".", import.meta.url).pathname;
const CLI = new URL("../src/cli/main.js", import.meta.url).pathname;
const TICKS_PER_SECOND = 100; // USER_HZ on Linux
const prefix = `alveare-bench:${randomBytes(4).toString("hex")}:`;

type Mode = "1 node, SQLite" | "1 node, shared" | "2 nodes, shared";
interface Result {
  rps: number;
  p50: number;
  p99: number;
  cpuMsPerRequest: number;
  non2xx: number;
}

function start(args: string[], env: NodeJS.ProcessEnv, readyOn: "stdout" | "stderr"): Promise<ChildProcess> {
  const child = spawn(process.execPath, args, {
    env,
    stdio: ["ignore", readyOn === "stdout" ? "pipe" : "ignore", readyOn === "stderr" ? "pipe" : "inherit"],
  });
  return new Promise((resolve, reject) => {
    const stream = readyOn === "stdout" ? child.stdout! : child.stderr!;
    stream.on("data", (c: Buffer) => {
      if (c.toString().includes("ready")) resolve(child);
    });
    child.on("exit", (code) => reject(new Error(`${args.join(" ")} exited ${code}`)));
  });
}

function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
}

/** A scale-plan key made through the CLI, in whichever database `env` names. */
function benchKey(dataDir: string, env: NodeJS.ProcessEnv): string {
  const run = (args: string[]) =>
    JSON.parse(spawnSync(process.execPath, [CLI, ...args, "--data-dir", dataDir, "--json"], { env, encoding: "utf8" }).stdout) as Record<
      string,
      string
    >;
  const account = run(["accounts", "create", "--name", "bench", "--plan", "scale"]);
  return run(["keys", "create", "--account", account.id!]).key!;
}

/** Loads every node at once, each with its share of the connections; req/s summed, latencies the worst node's. */
async function load(urls: string[], key: string, pids: number[]): Promise<Result> {
  const options = (url: string) => ({
    url: `${url}/v1/infer`,
    method: "POST" as const,
    headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
    body: JSON.stringify({ specialist: "classify", prompt: "I love it" }),
    connections: Math.max(1, Math.round(connections / urls.length)),
  });
  await Promise.all(urls.map((url) => autocannon({ ...options(url), duration: 2 })));
  const before = pids.map(cpuSeconds);
  const rs = await Promise.all(urls.map((url) => autocannon({ ...options(url), duration: seconds })));
  const cpu = pids.reduce((sum, pid, i) => sum + cpuSeconds(pid) - before[i]!, 0);
  const total = rs.reduce((n, r) => n + r.requests.total, 0);
  return {
    rps: rs.reduce((n, r) => n + r.requests.average, 0),
    p50: Math.max(...rs.map((r) => r.latency.p50)),
    p99: Math.max(...rs.map((r) => r.latency.p99)),
    cpuMsPerRequest: (cpu * 1000) / Math.max(1, total),
    non2xx: rs.reduce((n, r) => n + r.non2xx, 0),
  };
}

const modes: Mode[] = ["1 node, SQLite", "1 node, shared", "2 nodes, shared"];
const upstreamPort = 19000 + Math.floor(Math.random() * 500);
const upstream = await start([join(here, "instant-upstream.js"), String(upstreamPort)], process.env, "stdout");
const results = new Map<Mode, Result[]>();
try {
  for (const mode of Array.from({ length: rounds }, () => modes).flat()) {
    const dataDir = mkdtempSync(join(tmpdir(), "alveare-shared-bench-"));
    const env: NodeJS.ProcessEnv = { ...process.env, ALVEARE_METRICS_PORT: "0" };
    delete env.ALVEARE_DATABASE_URL;
    delete env.ALVEARE_REDIS_URL;
    if (mode !== "1 node, SQLite") {
      Object.assign(env, { ALVEARE_REDIS_URL: redisUrl, ALVEARE_REDIS_PREFIX: prefix });
      env.ALVEARE_DATABASE_URL = databaseUrl;
    }
    const key = benchKey(dataDir, env);
    const count = mode === "2 nodes, shared" ? 2 : 1;
    const servers: ChildProcess[] = [];
    const urls: string[] = [];
    try {
      for (let i = 0; i < count; i++) {
        const port = 19500 + Math.floor(Math.random() * 400);
        servers.push(await start([join(here, "serve-for-bench.js"), String(port), String(upstreamPort), dataDir, "gate"], env, "stderr"));
        urls.push(`http://127.0.0.1:${port}`);
      }
      const result = await load(
        urls,
        key,
        servers.map((s) => s.pid!),
      );
      results.set(mode, [...(results.get(mode) ?? []), result]);
    } finally {
      for (const server of servers) {
        server.kill("SIGTERM");
        await new Promise((r) => server.on("exit", r));
      }
    }
  }
} finally {
  upstream.kill();
  const redis = new Redis(redisUrl);
  let cursor = "0";
  do {
    const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
    cursor = next;
    if (keys.length > 0) await redis.del(...keys);
  } while (cursor !== "0");
  redis.disconnect();
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
process.stdout.write(
  `POST /v1/infer, full gate, instant upstream, ${connections} connections in all, ${seconds} s per run, median of ${rounds} alternating rounds; ` +
    "shared = PostgreSQL + Redis\n\n",
);
process.stdout.write("| server | req/s | vs 1 node SQLite | p50 ms | p99 ms | CPU ms / request | non-2xx |\n|---|---|---|---|---|---|---|\n");
const base = median(results.get("1 node, SQLite")!.map((r) => r.rps));
for (const [mode, rs] of results) {
  const rps = median(rs.map((r) => r.rps));
  process.stdout.write(
    `| ${mode} | ${rps.toFixed(0)} | ${(rps / base).toFixed(2)}x | ${median(rs.map((r) => r.p50))} | ${median(rs.map((r) => r.p99))} | ` +
      `${median(rs.map((r) => r.cpuMsPerRequest)).toFixed(3)} | ${rs.reduce((n, r) => n + r.non2xx, 0)} |\n`,
  );
}
