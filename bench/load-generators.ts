import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type autocannon from "autocannon";

/** What one run of a load generator measured (latencies in ms). */
export interface LoadResult {
  total: number;
  rps: number;
  p50: number;
  p99: number;
  non2xx: number;
  errors: number;
}

export interface WrkTarget {
  url: string;
  headers: Record<string, string>;
  body: string;
  /** When given, each request carries the next of these keys as its bearer token (the keys dealt out in turn). */
  keys?: string[];
}

/**
 * wrk (C; Debian's `wrk` package) POSTing `target.body` for `seconds`; the request is set by a Lua script.
 * The caller measures wrk's CPU (it is a child: reapedChildrenCpuSeconds() around the call), so several
 * runs can go at once.
 */
export async function wrkRun(target: WrkTarget, options: { connections: number; threads: number; seconds: number }): Promise<LoadResult> {
  const dir = mkdtempSync(join(tmpdir(), "alveare-wrk-"));
  const script = join(dir, "request.lua");
  const lines = [`wrk.method = "POST"`, `wrk.body = ${JSON.stringify(target.body)}`].concat(
    Object.entries(target.headers).map(([k, v]) => `wrk.headers[${JSON.stringify(k)}] = ${JSON.stringify(v)}`),
  );
  if (target.keys !== undefined) {
    // Each wrk thread has its own Lua state, so each deals the keys out in turn from the first.
    lines.push(
      `local keys = { ${target.keys.map((k) => JSON.stringify(`Bearer ${k}`)).join(", ")} }`,
      "local n = 0",
      "request = function()",
      "  n = n % #keys + 1",
      `  wrk.headers["authorization"] = keys[n]`,
      "  return wrk.format()",
      "end",
    );
  }
  writeFileSync(script, lines.join("\n"));
  const args = [`-t${options.threads}`, `-c${options.connections}`, `-d${options.seconds}s`, "--latency", "-s", script, target.url];
  const out = await new Promise<string>((resolve, reject) =>
    execFile("wrk", args, (error, stdout) => (error ? reject(error) : resolve(stdout))),
  ).finally(() => rmSync(dir, { recursive: true, force: true }));
  const ms = (label: string): number => {
    const m = new RegExp(`^\\s*${label}\\s+([\\d.]+)(us|ms|s)`, "m").exec(out);
    if (m === null) throw new Error(`wrk printed no ${label} latency: ${out}`);
    return Number(m[1]) * ({ us: 0.001, ms: 1, s: 1000 } as Record<string, number>)[m[2]!]!;
  };
  const socketErrors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  return {
    total: Number(/(\d+) requests in/.exec(out)?.[1] ?? 0),
    rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? 0),
    p50: ms("50%"),
    p99: ms("99%"),
    non2xx: Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0),
    errors: socketErrors === null ? 0 : socketErrors.slice(1).reduce((n, x) => n + Number(x), 0),
  };
}

/** autocannon's result in the same shape. */
export function autocannonResult(r: autocannon.Result): LoadResult {
  return { total: r.requests.total, rps: r.requests.average, p50: r.latency.p50, p99: r.latency.p99, non2xx: r.non2xx, errors: r.errors };
}
