/**
 * The gateway path: POST /v1/chat/completions through our full gate (key,
 * plan, window limit, quota, ledger on SQLite) to an instant upstream, against
 * the Portkey gateway forwarding the same request to the same upstream, and
 * against the upstream itself. Alternating rounds in one run, medians.
 * CPU per request is each server process's user+system time from /proc over
 * the measured run, so the load generator's CPU is not counted.
 * The load generator is autocannon (in this process) or, with --loader wrk,
 * wrk (C, one thread; Debian's `wrk` package, about half of autocannon's CPU
 * per request). The load generator shares the machine with the servers, so its
 * CPU per request is reported too, and so is the server's main thread alone
 * (a Node server is bound by its event loop, not by its total CPU).
 * The "floor" side (asked for with --only) is bench/bare-proxy.ts: node:http and undici with JSON in and out and
 * nothing else, the least a Node gateway pays per request on this machine, to judge the CPU per request against.
 * Usage: node dist/bench/gateway-vs-portkey.js [--seconds N] [--connections N] [--pipelining N] [--rounds N]
 *   [--only alveare,portkey,upstream,floor,...] [--profile DIR] [--baseline PATH-OF-ANOTHER-BUILT-CHECKOUT] [--loader autocannon|wrk] [--pin]
 * --pin puts every server under test on the last CPU, and the bench, its load generator and the upstream on the
 * others (Linux `taskset`): each server then has a core of its own, as with a load generator on another machine.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { createRequire } from "node:module";
import { availableParallelism, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { parseArgs } from "node:util";
import autocannon from "autocannon";
import { benchKey } from "./bench-key.js";
import { cpuSeconds, mainThreadCpuSeconds, mainThreadRunQueueSeconds, reapedChildrenCpuSeconds, startProcess } from "./bench-processes.js";
import { autocannonResult, type LoadResult, wrkRun } from "./load-generators.js";

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "5" },
    connections: { type: "string", default: "16" },
    pipelining: { type: "string", default: "1" },
    rounds: { type: "string", default: "3" },
    profile: { type: "string" },
    only: { type: "string" },
    /** Another checkout's build (its dist/bench/serve-for-bench.js), measured as a fourth side: before/after in one run. */
    baseline: { type: "string" },
    loader: { type: "string", default: "autocannon" },
    pin: { type: "boolean", default: false },
  },
});
if (values.loader !== "autocannon" && values.loader !== "wrk") throw new Error("--loader is autocannon or wrk");
if (values.loader === "wrk" && values.pipelining !== "1") throw new Error("--pipelining needs --loader autocannon");
const rounds = Number(values.rounds);
const seconds = Number(values.seconds);
const connections = Number(values.connections);
const pipelining = Number(values.pipelining);
const here = new URL(".", import.meta.url).pathname;

type Side = "alveare" | "baseline" | "portkey" | "upstream" | "floor";
interface Result {
  rps: number;
  p50: number;
  p99: number;
  cpuUsPerRequest: number;
  mainThreadUsPerRequest: number;
  /** Share of the run the main thread was on a CPU. */
  mainThreadBusy: number;
  /** Share of the run the main thread was ready but waiting for a CPU. */
  mainThreadWaiting: number;
  upstreamCpuUsPerRequest: number;
  non2xx: number;
  errors: number;
  loaderCpuUsPerRequest: number;
}

const upstreamPort = 21000 + Math.floor(Math.random() * 500);
const ourPort = 21500 + Math.floor(Math.random() * 500);
const portkeyPort = 22000 + Math.floor(Math.random() * 500);
const upstreamBase = `http://127.0.0.1:${upstreamPort}/v1`;
const dataDir = mkdtempSync(join(tmpdir(), "alveare-gateway-bench-"));
const key = benchKey(dataDir);
const messages = [{ role: "user", content: "I love it" }];

const baselinePort = 22500 + Math.floor(Math.random() * 500);
const floorPort = 23000 + Math.floor(Math.random() * 500);
const baselineDir = mkdtempSync(join(tmpdir(), "alveare-gateway-bench-"));
const baselineKey = values.baseline === undefined ? "" : benchKey(baselineDir);
const targets: Record<Side, { url: string; headers: Record<string, string>; body: string }> = {
  baseline: {
    url: `http://127.0.0.1:${baselinePort}/v1/chat/completions`,
    headers: { "content-type": "application/json", authorization: `Bearer ${baselineKey}` },
    body: JSON.stringify({ model: "alveare-classify", messages }),
  },
  alveare: {
    url: `http://127.0.0.1:${ourPort}/v1/chat/completions`,
    headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
    body: JSON.stringify({ model: "alveare-classify", messages }),
  },
  portkey: {
    url: `http://127.0.0.1:${portkeyPort}/v1/chat/completions`,
    headers: {
      "content-type": "application/json",
      authorization: "Bearer unused",
      "x-portkey-provider": "openai",
      "x-portkey-custom-host": upstreamBase,
    },
    body: JSON.stringify({ model: "instant", messages }),
  },
  floor: {
    url: `http://127.0.0.1:${floorPort}/v1/chat/completions`,
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "alveare-classify", messages }),
  },
  upstream: {
    url: `${upstreamBase}/chat/completions`,
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "instant", messages }),
  },
};

/** All threads of `pid` onto `cpus` (a taskset list such as "1" or "0-14"). */
const pin = (pid: number, cpus: string): void => void execFileSync("taskset", ["-a", "-p", "-c", cpus, String(pid)], { stdio: "ignore" });
const lastCpu = availableParallelism() - 1;
if (values.pin) {
  if (lastCpu < 1) throw new Error("--pin needs at least two CPUs");
  // Before anything starts: the upstream and wrk inherit the bench's CPUs.
  pin(process.pid, lastCpu === 1 ? "0" : `0-${lastCpu - 1}`);
}

const upstream = await startProcess([join(here, "instant-upstream.js"), String(upstreamPort)], process.env, /ready/);
const profileArgs = values.profile ? ["--cpu-prof", `--cpu-prof-dir=${values.profile}`] : [];
const ours = await startProcess(
  [...profileArgs, join(here, "serve-for-bench.js"), String(ourPort), String(upstreamPort), dataDir, "gate"],
  { ...process.env, ALVEARE_METRICS_PORT: "0" },
  /ready/,
);
const portkeyMain = join(dirname(createRequire(import.meta.url).resolve("@portkey-ai/gateway/package.json")), "build", "start-server.js");
const portkey = await startProcess([portkeyMain, "--headless", `--port=${portkeyPort}`], process.env, new RegExp(String(portkeyPort)));
const baseline =
  values.baseline === undefined
    ? undefined
    : await startProcess(
        [join(values.baseline, "dist", "bench", "serve-for-bench.js"), String(baselinePort), String(upstreamPort), baselineDir, "gate"],
        { ...process.env, ALVEARE_METRICS_PORT: "0" },
        /ready/,
      );
const floor = await startProcess([join(here, "bare-proxy.js"), String(floorPort), String(upstreamPort)], process.env, /ready/);
if (values.pin) for (const server of [ours, portkey, baseline, floor]) if (server !== undefined) pin(server.pid!, String(lastCpu));
const pids: Record<Side, number> = {
  alveare: ours.pid!,
  baseline: baseline?.pid ?? 0,
  portkey: portkey.pid!,
  upstream: upstream.pid!,
  floor: floor.pid!,
};

/** What one measured run gives, whichever load generator made it. */
interface LoaderRun extends LoadResult {
  /** CPU seconds the load generator used in the run. */
  cpu: number;
}

async function autocannonRun(t: (typeof targets)[Side], duration: number): Promise<LoaderRun> {
  const before = process.cpuUsage();
  const r = await autocannon({ url: t.url, method: "POST", headers: t.headers, body: t.body, connections, pipelining, duration });
  const used = process.cpuUsage(before);
  return { ...autocannonResult(r), cpu: (used.user + used.system) / 1e6 };
}

/** wrk with one thread. */
async function wrkOnce(t: (typeof targets)[Side], duration: number): Promise<LoaderRun> {
  // wrk's CPU: what this process's reaped children used (the servers are alive, so only wrk is in it).
  const before = reapedChildrenCpuSeconds();
  const r = await wrkRun(t, { connections, threads: 1, seconds: duration });
  return { ...r, cpu: reapedChildrenCpuSeconds() - before };
}

async function load(side: Side, duration: number): Promise<Result> {
  const t = targets[side];
  const cpuBefore = cpuSeconds(pids[side]);
  const mainBefore = mainThreadCpuSeconds(pids[side]);
  const waitBefore = mainThreadRunQueueSeconds(pids[side]);
  const upBefore = cpuSeconds(upstream.pid!);
  const startedAt = performance.now();
  const r = values.loader === "wrk" ? await wrkOnce(t, duration) : await autocannonRun(t, duration);
  const cpu = cpuSeconds(pids[side]) - cpuBefore;
  const main = mainThreadCpuSeconds(pids[side]) - mainBefore;
  const waiting = mainThreadRunQueueSeconds(pids[side]) - waitBefore;
  const elapsed = (performance.now() - startedAt) / 1000;
  const up = cpuSeconds(upstream.pid!) - upBefore;
  const n = Math.max(1, r.total);
  return {
    rps: r.rps,
    p50: r.p50,
    p99: r.p99,
    cpuUsPerRequest: (cpu * 1e6) / n,
    mainThreadUsPerRequest: (main * 1e6) / n,
    mainThreadBusy: main / elapsed,
    mainThreadWaiting: waiting / elapsed,
    upstreamCpuUsPerRequest: side === "upstream" ? 0 : (up * 1e6) / n,
    non2xx: r.non2xx,
    errors: r.errors,
    loaderCpuUsPerRequest: (r.cpu * 1e6) / n,
  };
}

const sides: Side[] = values.only
  ? (values.only.split(",") as Side[])
  : values.baseline === undefined
    ? ["alveare", "portkey", "upstream"]
    : ["alveare", "baseline", "portkey", "upstream"];
const results = new Map<Side, Result[]>();
try {
  // Check each side answers 200 with a completion before measuring it.
  for (const side of sides) {
    const t = targets[side];
    const res = await fetch(t.url, { method: "POST", headers: t.headers, body: t.body });
    const text = await res.text();
    if (res.status !== 200 || !text.includes("positive")) throw new Error(`${side} answered ${res.status}: ${text.slice(0, 500)}`);
  }
  for (const side of sides) await load(side, 2); // warm-up: JIT, pools, SQLite pages
  for (let round = 0; round < rounds; round++) {
    // Rotate the order each round, so drift on the machine hits every side alike.
    for (let i = 0; i < sides.length; i++) {
      const side = sides[(i + round) % sides.length]!;
      results.set(side, [...(results.get(side) ?? []), await load(side, seconds)]);
    }
  }
} finally {
  for (const child of [ours, baseline, portkey, upstream, floor]) child?.kill("SIGTERM");
  await new Promise((r) => setTimeout(r, 1500));
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const m = (side: Side, f: (r: Result) => number): number => median(results.get(side)!.map(f));
/** A latency as wrk and autocannon report it, to three significant digits (wrk's microseconds become 0.286, not 0.28600000000000003). */
const latency = (ms: number): string => String(Number(ms.toPrecision(3)));
const percent = (share: number): string => `${Math.round(share * 100)}%`;
process.stdout.write(
  `POST /v1/chat/completions to an instant upstream, ${values.loader}, ${connections} connections, pipelining ${pipelining}, ${seconds} s per run, median of ${rounds} alternating rounds${values.pin ? `, each server pinned to CPU ${lastCpu}` : ""}\n\n`,
);
process.stdout.write(
  "| server | req/s | p50 ms | p99 ms | server CPU µs / request | of it main thread | main thread busy / waiting for a CPU | upstream CPU µs / request | load generator CPU µs / request | non-2xx + errors |\n",
);
process.stdout.write("|---|---|---|---|---|---|---|---|---|---|\n");
const names: Record<Side, string> = {
  alveare: "Alveare (full gate)",
  baseline: `Alveare baseline (${values.baseline ?? ""})`,
  portkey: "Portkey gateway",
  upstream: "upstream direct",
  floor: "bare Node proxy (floor)",
};
for (const side of sides) {
  const rs = results.get(side)!;
  process.stdout.write(
    `| ${names[side]} | ${m(side, (r) => r.rps).toFixed(0)} | ${latency(m(side, (r) => r.p50))} | ${latency(m(side, (r) => r.p99))} | ${m(side, (r) => r.cpuUsPerRequest).toFixed(0)} | ${m(side, (r) => r.mainThreadUsPerRequest).toFixed(0)} | ${percent(m(side, (r) => r.mainThreadBusy))} / ${percent(m(side, (r) => r.mainThreadWaiting))} | ${side === "upstream" ? "—" : m(side, (r) => r.upstreamCpuUsPerRequest).toFixed(0)} | ${m(side, (r) => r.loaderCpuUsPerRequest).toFixed(0)} | ${rs.reduce((n, r) => n + r.non2xx + r.errors, 0)} |\n`,
  );
}
const ratio = (a: Side, b: Side, f: (r: Result) => number): string => (m(a, f) / m(b, f)).toFixed(2);
if (sides.includes("baseline") && sides.includes("alveare")) {
  // Each round's two runs were next to each other in time: their ratio cancels more of the machine's drift.
  const ours = results.get("alveare")!;
  const theirs = results.get("baseline")!;
  const perRound = ours.map((r, i) => r.cpuUsPerRequest / theirs[i]!.cpuUsPerRequest);
  const perRoundMain = ours.map((r, i) => r.mainThreadUsPerRequest / theirs[i]!.mainThreadUsPerRequest);
  process.stdout.write(
    `\nper-round server CPU µs / request: alveare ${ours.map((r) => r.cpuUsPerRequest.toFixed(0)).join("/")}, baseline ${theirs.map((r) => r.cpuUsPerRequest.toFixed(0)).join("/")}\n`,
  );
  process.stdout.write(`Alveare / baseline CPU per request, median of per-round ratios: ${median(perRound).toFixed(3)}x\n`);
  process.stdout.write(`Alveare / baseline main-thread CPU per request, median of per-round ratios: ${median(perRoundMain).toFixed(3)}x\n`);
}
if (sides.includes("floor") && sides.includes("alveare")) {
  const perRound = results.get("alveare")!.map((r, i) => r.cpuUsPerRequest / results.get("floor")![i]!.cpuUsPerRequest);
  process.stdout.write(`\nAlveare / bare Node proxy CPU per request, median of per-round ratios: ${median(perRound).toFixed(3)}x\n`);
}
if (!sides.includes("portkey") || !sides.includes("upstream")) process.exit(0);
process.stdout.write(`\nAlveare / Portkey: ${ratio("alveare", "portkey", (r) => r.rps)}x throughput, `);
process.stdout.write(`${ratio("portkey", "alveare", (r) => r.cpuUsPerRequest)}x less server CPU per request\n`);
process.stdout.write(`Alveare / upstream direct: ${ratio("alveare", "upstream", (r) => r.rps)}x throughput\n`);
if (sides.includes("baseline")) {
  process.stdout.write(`Alveare / baseline: ${ratio("alveare", "baseline", (r) => r.rps)}x throughput, `);
  process.stdout.write(`${ratio("alveare", "baseline", (r) => r.cpuUsPerRequest)}x the server CPU per request\n`);
}
process.stdout.write(
  `per-round req/s: ${sides
    .map(
      (s) =>
        `${s} ${results
          .get(s)!
          .map((r) => r.rps.toFixed(0))
          .join("/")}`,
    )
    .join(", ")}\n`,
);
