/**
 * What the shared mode costs: POST /v1/infer through the full gate on an instant
 * remote upstream, for one node on SQLite, one node on the shared backends, and
 * two nodes on the shared backends with the load split evenly over them (a
 * round-robin balancer's share), alternating rounds in one run. Reports req/s,
 * p50/p99 and the servers' CPU time per request (Linux /proc).
 * Shared backends: PostgreSQL (--database-url, an empty database of its own) + Redis.
 * Also per request: Redis commands (INFO commandstats) and PostgreSQL transactions
 * (pg_stat_database.xact_commit of the benchmark's database, all nodes together).
 * --modes picks modes (sqlite,shared,two); --profile DIR writes every node's .cpuprofile file there (one per run, in run order).
 * --accounts N spreads the load over N accounts, one key each, each connection keeping one key (one account's
 * admissions share its counter row, so one account alone measures that row, not the nodes).
 * The load generator is autocannon, in this process (one JavaScript thread for all nodes: near 10,000 req/s it
 * can be the bottleneck), or with --loader wrk one wrk per node with --loader-threads threads each (there the
 * keys are dealt out per request, not per connection). Its CPU per request is reported either way.
 * Usage: node dist/bench/shared-mode.js [--seconds N] [--connections N] [--rounds N] [--redis-url U] [--database-url U]
 *        [--modes sqlite,shared,two] [--accounts N] [--profile DIR] [--loader autocannon|wrk] [--loader-threads N]
 */
import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import autocannon from "autocannon";
import { Redis } from "ioredis";
import pg from "pg";
import { deletePrefix } from "../test/helpers/redis.js";
import { cpuSeconds, mainThreadCpuSeconds, reapedChildrenCpuSeconds, startProcess } from "./bench-processes.js";
import { autocannonResult, type LoadResult, wrkRun } from "./load-generators.js";

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "5" },
    connections: { type: "string", default: "32" },
    rounds: { type: "string", default: "3" },
    "redis-url": { type: "string", default: "redis://127.0.0.1:6379" },
    "database-url": { type: "string" },
    modes: { type: "string", default: "sqlite,shared,two" },
    accounts: { type: "string", default: "1" },
    profile: { type: "string" },
    loader: { type: "string", default: "autocannon" },
    "loader-threads": { type: "string", default: "2" },
  },
});
if (values.loader !== "autocannon" && values.loader !== "wrk") throw new Error("--loader is autocannon or wrk");
const loaderThreads = Number(values["loader-threads"]);
const rounds = Number(values.rounds);
const seconds = Number(values.seconds);
const connections = Number(values.connections);
const accounts = Number(values.accounts);
if (!Number.isInteger(accounts) || accounts < 1) throw new Error(`--accounts is a whole number from 1, not ${values.accounts}`);
const redisUrl = values["redis-url"];
const databaseUrl = values["database-url"];
if (databaseUrl === undefined) {
  process.stderr.write("shared-mode: --database-url postgres://… (an empty database for the benchmark) is required\n");
  process.exit(2);
}
const here = new URL(".", import.meta.url).pathname;
const prefix = `alveare-bench:${randomBytes(4).toString("hex")}:`;
const adminToken = randomBytes(24).toString("hex");

type Mode = "1 node, SQLite" | "1 node, shared" | "2 nodes, shared";
interface Result {
  rps: number;
  p50: number;
  p99: number;
  cpuMsPerRequest: number;
  /** The nodes' main threads (event loops) alone. */
  mainThreadMsPerRequest: number;
  /** The load generator's CPU (autocannon: this whole process). */
  loaderCpuMsPerRequest: number;
  non2xx: number;
  /** Per request, shared modes only. */
  redisCommands?: number;
  pgTransactions?: number;
  /** CPU ms per request of the nodes' PostgreSQL backends, and of the Redis server (anything else using it counts too). */
  pgCpuMs?: number;
  redisCpuMs?: number;
}

/** `accounts` scale-plan accounts with a key each, made through the running node's admin API. */
async function benchKeys(url: string): Promise<string[]> {
  const keys: string[] = [];
  const admin = async (path: string, body: object): Promise<Record<string, string>> => {
    const response = await fetch(`${url}/admin/api${path}`, {
      method: "POST",
      headers: { authorization: `Bearer ${adminToken}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    if (response.status !== 201) throw new Error(`admin API ${path}: ${response.status} ${await response.text()}`);
    return (await response.json()) as Record<string, string>;
  };
  for (let i = 0; i < accounts; i++) {
    const account = await admin("/accounts", { name: `bench-${i}`, plan: "scale" });
    keys.push((await admin(`/accounts/${account.id}/keys`, {})).key!);
  }
  return keys;
}

/** Loads every node at once, each with its share of the connections; req/s summed, latencies the worst node's. */
async function load(urls: string[], keys: string[], pids: number[], shared: boolean): Promise<Result> {
  let nextKey = 0;
  const body = JSON.stringify({ specialist: "classify", prompt: "I love it" });
  const options = (url: string) => ({
    url: `${url}/v1/infer`,
    method: "POST" as const,
    body,
    connections: Math.max(1, Math.round(connections / urls.length)),
    // Each connection keeps one key, the keys dealt out in turn over all connections of all nodes.
    setupClient: (client: autocannon.Client) =>
      client.setHeaders({ "content-type": "application/json", authorization: `Bearer ${keys[nextKey++ % keys.length]}` }),
  });
  const run = async (duration: number): Promise<{ rs: LoadResult[]; loaderCpu: number }> => {
    if (values.loader === "wrk") {
      const before = reapedChildrenCpuSeconds();
      const share = { connections: Math.max(1, Math.round(connections / urls.length)), threads: loaderThreads, seconds: duration };
      const target = (url: string) => ({ url: `${url}/v1/infer`, headers: { "content-type": "application/json" }, body, keys });
      const rs = await Promise.all(urls.map((url) => wrkRun(target(url), share)));
      return { rs, loaderCpu: reapedChildrenCpuSeconds() - before };
    }
    const before = process.cpuUsage();
    const rs = await Promise.all(urls.map((url) => autocannon({ ...options(url), duration })));
    const used = process.cpuUsage(before);
    return { rs: rs.map(autocannonResult), loaderCpu: (used.user + used.system) / 1e6 };
  };
  await run(2);
  const [redisBefore, pgBefore] = shared ? [await redisCommandCount(), await pgTransactionCount()] : [0, 0];
  const backends = shared ? await backendPids() : [];
  const backendsBefore = cpuOf(backends);
  const before = pids.map(cpuSeconds);
  const mainBefore = pids.map(mainThreadCpuSeconds);
  const { rs, loaderCpu } = await run(seconds);
  const cpu = pids.reduce((sum, pid, i) => sum + cpuSeconds(pid) - before[i]!, 0);
  const main = pids.reduce((sum, pid, i) => sum + mainThreadCpuSeconds(pid) - mainBefore[i]!, 0);
  const total = rs.reduce((n, r) => n + r.total, 0);
  const backendCpu = cpuOf(backends).map((t, i) => ((t - backendsBefore[i]!) * 1000) / Math.max(1, total));
  // The counters include the counting itself (one INFO, a few statements): noise against thousands of requests.
  const counts = shared
    ? {
        redisCommands: ((await redisCommandCount()) - redisBefore) / Math.max(1, total),
        pgTransactions: ((await pgTransactionCount()) - pgBefore) / Math.max(1, total),
        pgCpuMs: backendCpu.slice(0, -1).reduce((a, b) => a + b, 0),
        redisCpuMs: backendCpu.at(-1)!,
      }
    : {};
  return {
    ...counts,
    rps: rs.reduce((n, r) => n + r.rps, 0),
    p50: Math.max(...rs.map((r) => r.p50)),
    p99: Math.max(...rs.map((r) => r.p99)),
    cpuMsPerRequest: (cpu * 1000) / Math.max(1, total),
    mainThreadMsPerRequest: (main * 1000) / Math.max(1, total),
    loaderCpuMsPerRequest: (loaderCpu * 1000) / Math.max(1, total),
    non2xx: rs.reduce((n, r) => n + r.non2xx + r.errors, 0),
  };
}

const MODE_NAMES: Record<string, Mode> = { sqlite: "1 node, SQLite", shared: "1 node, shared", two: "2 nodes, shared" };
const modes: Mode[] = values.modes.split(",").map(
  (m) =>
    MODE_NAMES[m.trim()] ??
    ((): never => {
      throw new Error(`--modes: unknown mode ${m}`);
    })(),
);

/** Redis commands run so far, all of them (INFO commandstats). */
async function redisCommandCount(): Promise<number> {
  const redis = new Redis(redisUrl);
  try {
    const info = await redis.info("commandstats");
    return [...info.matchAll(/calls=(\d+)/g)].reduce((n, m) => n + Number(m[1]), 0);
  } finally {
    redis.disconnect();
  }
}

/** The server pids of the nodes' PostgreSQL connections and of Redis (same machine: the benchmark's setting). */
async function backendPids(): Promise<number[]> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  const redis = new Redis(redisUrl);
  try {
    const { rows } = await client.query<{ pid: number }>(
      "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'alveare'",
    );
    const redisPid = Number(/process_id:(\d+)/.exec(await redis.info("server"))![1]);
    return [...rows.map((r) => r.pid), redisPid];
  } finally {
    await client.end();
    redis.disconnect();
  }
}

/** CPU seconds of each pid, 0 for one that is gone. */
const cpuOf = (pids: number[]): number[] =>
  pids.map((pid) => {
    try {
      return cpuSeconds(pid);
    } catch {
      return 0;
    }
  });

/** Transactions committed in the benchmark's database so far (statistics are flushed about every second, so it waits first). */
async function pgTransactionCount(): Promise<number> {
  await new Promise((r) => setTimeout(r, 1500));
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    await client.query("SELECT pg_stat_clear_snapshot()");
    const { rows } = await client.query<{ n: string }>("SELECT xact_commit AS n FROM pg_stat_database WHERE datname = current_database()");
    return Number(rows[0]!.n);
  } finally {
    await client.end();
  }
}
const upstreamPort = 19000 + Math.floor(Math.random() * 500);
const upstream = await startProcess([join(here, "instant-upstream.js"), String(upstreamPort)], process.env);
const results = new Map<Mode, Result[]>();
try {
  for (const mode of Array.from({ length: rounds }, () => modes).flat()) {
    const dataDir = mkdtempSync(join(tmpdir(), "alveare-shared-bench-"));
    const env: NodeJS.ProcessEnv = { ...process.env, ALVEARE_METRICS_PORT: "0", ALVEARE_ADMIN_TOKEN: adminToken };
    delete env.ALVEARE_DATABASE_URL;
    delete env.ALVEARE_REDIS_URL;
    if (mode !== "1 node, SQLite") {
      Object.assign(env, { ALVEARE_REDIS_URL: redisUrl, ALVEARE_REDIS_PREFIX: prefix });
      env.ALVEARE_DATABASE_URL = databaseUrl;
    }
    const count = mode === "2 nodes, shared" ? 2 : 1;
    const servers: ChildProcess[] = [];
    const urls: string[] = [];
    try {
      for (let i = 0; i < count; i++) {
        const port = 19500 + Math.floor(Math.random() * 400);
        const profile = values.profile !== undefined ? ["--cpu-prof", "--cpu-prof-dir", values.profile] : [];
        servers.push(await startProcess([...profile, join(here, "serve-for-bench.js"), String(port), String(upstreamPort), dataDir, "gate"], env));
        urls.push(`http://127.0.0.1:${port}`);
      }
      const result = await load(
        urls,
        await benchKeys(urls[0]!),
        servers.map((s) => s.pid!),
        mode !== "1 node, SQLite",
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
  await deletePrefix(prefix, redisUrl);
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
process.stdout.write(
  `POST /v1/infer, full gate, instant upstream, ${values.loader}${values.loader === "wrk" ? ` (${loaderThreads} threads a node)` : ""}, ` +
    `${connections} connections in all, ${accounts} account(s), ${seconds} s per run, ` +
    `median of ${rounds} alternating rounds; shared = PostgreSQL + Redis\n\n`,
);
process.stdout.write(
  "| server | req/s | vs 1 node SQLite | p50 ms | p99 ms | node CPU ms / request | of it main thread | PostgreSQL CPU ms / request | Redis CPU ms / request | " +
    "Redis commands / request | PostgreSQL transactions / request | load generator CPU ms / request | non-2xx + errors |\n" +
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
);
const base = median((results.get("1 node, SQLite") ?? [...results.values()][0]!).map((r) => r.rps));
const perRequest = (xs: Array<number | undefined>): string => (xs[0] === undefined ? "–" : median(xs as number[]).toFixed(2));
for (const [mode, rs] of results) {
  const rps = median(rs.map((r) => r.rps));
  process.stdout.write(
    `| ${mode} | ${rps.toFixed(0)} | ${(rps / base).toFixed(2)}x | ${median(rs.map((r) => r.p50))} | ${median(rs.map((r) => r.p99))} | ` +
      `${median(rs.map((r) => r.cpuMsPerRequest)).toFixed(3)} | ${median(rs.map((r) => r.mainThreadMsPerRequest)).toFixed(3)} | ${perRequest(rs.map((r) => r.pgCpuMs))} | ${perRequest(rs.map((r) => r.redisCpuMs))} | ` +
      `${perRequest(rs.map((r) => r.redisCommands))} | ` +
      `${perRequest(rs.map((r) => r.pgTransactions))} | ${median(rs.map((r) => r.loaderCpuMsPerRequest)).toFixed(3)} | ${rs.reduce((n, r) => n + r.non2xx, 0)} |\n`,
  );
}
