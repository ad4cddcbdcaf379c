import assert from "node:assert/strict";
import Database from "better-sqlite3";
import { billingPeriod } from "../../src/metering/billing-period.js";
import { CLI_CONTEXT } from "../../src/store/audit-log.js";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { loadConfig, type ServerConfig } from "../../src/config/config.js";
import { createLogger } from "../../src/logger.js";
import { startServer, type RunningServer, type StartOptions } from "../../src/server/server.js";
import { openGate } from "../../src/gate/gate.js";
import { AccountService } from "../../src/accounts/accounts.js";
import { createStore } from "../../src/store/create-store.js";
import type { Mode } from "../../src/store/store.js";
import { TINY_LLAMA, writeRandomLlama, type RandomLlamaOptions } from "../fixtures/gguf/random-llama.js";

export const tempDir = (prefix = "alveare-test-"): string => mkdtempSync(join(tmpdir(), prefix));

const models = new Map<string, Promise<string>>();

/** A tiny random-weight llama GGUF, generated once per test process and options. */
export function tinyModel(options: Partial<RandomLlamaOptions> = {}): Promise<string> {
  const key = JSON.stringify(options);
  let path = models.get(key);
  if (path === undefined) {
    const file = join(tempDir("alveare-model-"), "tiny.gguf");
    path = writeRandomLlama(file, { ...TINY_LLAMA, ...options }).then(() => file);
    models.set(key, path);
  }
  return path;
}

/** Collects a server's JSON log lines so tests can read what it logged. */
export class LogCapture extends Writable {
  readonly lines: string[] = [];
  override _write(chunk: Buffer, _enc: string, done: () => void): void {
    for (const line of chunk.toString("utf8").split("\n")) if (line.length > 0) this.lines.push(line);
    done();
  }
  records(): Array<Record<string, unknown>> {
    return this.lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  }
  requests(): Array<Record<string, unknown>> {
    return this.records().filter((r) => r.msg === "request");
  }
}

export interface TestServer extends RunningServer {
  logs: LogCapture;
  config: ServerConfig;
}

/**
 * Dates an account's creation back (SQLite servers): the Usage page's month picker offers no month before it, and
 * tests that step through months need an account older than this one.
 */
export function backdateAccount(server: TestServer, accountId?: string, createdAt = "2020-01-01T00:00:00.000Z"): void {
  const db = new Database(join(server.config.dataDir, "alveare.db"));
  try {
    // Without an id, every account of the server.
    db.prepare("UPDATE accounts SET created_at = ? WHERE ? IS NULL OR id = ?").run(createdAt, accountId ?? null, accountId ?? null);
  } finally {
    db.close();
  }
}

/**
 * A request the drain's deadline cut, as its log line and the ledger have it: the 503 `overloaded` its client gets,
 * `shutdown_cut` (not `aborted`, which is a client that left), and given back (a 499 would have counted).
 */
export async function assertCutAtShutdown(server: TestServer, line: Record<string, unknown> | undefined, accountId: string): Promise<void> {
  assert.equal(line?.status, 503, JSON.stringify(line));
  assert.equal(line?.code, "overloaded");
  assert.equal(line?.shutdown_cut, true);
  assert.equal(line?.aborted, undefined, "`aborted` is for clients that left");
  const stores = await createStore(server.config);
  try {
    const usage = await stores.ledger.periodUsage(accountId, "live", billingPeriod(new Date()).key);
    assert.deepEqual([usage.requests, usage.tokens], [0, 0]);
  } finally {
    await stores.close();
  }
}

/** Writes a config file and loads it the way `alveare serve --config` does. */
export function configFor(file: Record<string, unknown>, env: Record<string, string> = {}): ServerConfig {
  const dir = tempDir();
  const path = join(dir, "config.json");
  writeFileSync(path, JSON.stringify({ port: 0, data_dir: join(dir, "data"), ...file }));
  // Metrics off unless a test asks: parallel servers must not contend for one metrics port.
  return loadConfig({ config: path }, { ALVEARE_THREADS: "1", ALVEARE_METRICS_PORT: "0", ...env });
}

/**
 * A real server on a real loopback socket, serving the tiny model unless told
 * otherwise. Inference tests run it with the open gate (no keys needed); gate
 * tests pass `gated: true` for the account gate on a fresh SQLite file.
 */
export async function startTestServer(
  file: Record<string, unknown> = {},
  options: Partial<StartOptions> & { env?: Record<string, string>; gated?: boolean } = {},
): Promise<TestServer> {
  const model = await tinyModel();
  const config = configFor({ models: { base: model }, engine: { parallel: 2, queue: 16 }, ...file }, options.env);
  const logs = new LogCapture();
  const logger = createLogger("info", logs);
  const { gated, ...rest } = options;
  const server = await startServer(config, { logger, ...rest, gate: gated ? undefined : (rest.gate ?? openGate) });
  return Object.assign(server, { logs, config });
}

/** Creates an account and a key in a gated server's database, as `alveare accounts/keys create` would. */
export async function createKey(
  server: TestServer,
  plan: string,
  mode: Mode = "live",
  accountId?: string,
): Promise<{ accountId: string; keyId: string; key: string; auth: Record<string, string> }> {
  const stores = await createStore(server.config);
  try {
    const accounts = new AccountService(stores, server.config.plans);
    const account = accountId === undefined ? await accounts.createAccount(CLI_CONTEXT, `acct-${plan}`, plan) : { id: accountId };
    const { record, key } = await accounts.createKey(CLI_CONTEXT, account.id, mode);
    return { accountId: account.id, keyId: record.id, key, auth: { authorization: `Bearer ${key}` } };
  } finally {
    await stores.close();
  }
}

export async function postJson(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Headers; json: Record<string, unknown> }> {
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  return { status: response.status, headers: response.headers, json: (await response.json()) as Record<string, unknown> };
}

export const CLI_PATH = new URL("../../src/cli/main.js", import.meta.url).pathname;

/** Runs `alveare …` as a user would and parses its --json output. */
export function cliJson(args: readonly string[], env: NodeJS.ProcessEnv = process.env): Record<string, unknown> {
  const r = spawnSync(process.execPath, [CLI_PATH, ...args, "--json"], { env, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`alveare ${args.join(" ")} failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as Record<string, unknown>;
}

/** An account on `plan` and one live key in the data dir, made through the CLI. */
export function cliKey(dataDir: string, plan = "professional", env: NodeJS.ProcessEnv = process.env): { accountId: string; key: string } {
  const account = cliJson(["accounts", "create", "--name", "test", "--plan", plan, "--data-dir", dataDir], env);
  const key = cliJson(["keys", "create", "--account", String(account.id), "--data-dir", dataDir], env);
  return { accountId: String(account.id), key: String(key.key) };
}

/**
 * Starts `alveare serve` as its own process (port 0) and resolves once it logs
 * its URL. `output()` returns everything it printed on stdout so far.
 */
export async function spawnServe(
  args: readonly string[],
  env: NodeJS.ProcessEnv,
): Promise<{ child: ChildProcess; url: string; output: () => string }> {
  const child = spawn(process.execPath, [CLI_PATH, "serve", "--port", "0", ...args], { env: { ALVEARE_METRICS_PORT: "0", ...env } });
  let out = "";
  child.stdout!.on("data", (c: Buffer) => (out += c.toString()));
  for (let i = 0; i < 600; i++) {
    const url = /"url":"(http:[^"]+)"/.exec(out)?.[1];
    if (url !== undefined) return { child, url, output: () => out };
    if (child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill("SIGKILL");
  throw new Error(`alveare serve did not start: ${out}`);
}

/** A remote specialist on a fake upstream, for fault injection; plans must list it to be callable. */
export const flakySpecialist = (baseUrl: string): Record<string, unknown> => ({
  description: "fault injection",
  system_prompt: "",
  remote: { base_url: baseUrl, model: "m" },
});

/** Plans the SDK tests drive: a short window to wait out, and a two-request monthly quota. */
export const SDK_TEST_PLANS = {
  burst: { requests_per_minute: 3, window_seconds: 2, requests_per_month: 1000, specialists: "*" },
  tiny: { requests_per_minute: 100, requests_per_month: 2, specialists: "*" },
};
