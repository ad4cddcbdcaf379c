import assert from "node:assert/strict";
import { mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { describe, it } from "node:test";
import Database from "better-sqlite3";
import { createStore } from "../src/store/create-store.js";
import { cliKey, flakySpecialist, spawnServe, tempDir, tinyModel } from "./helpers/fixtures.js";
import { until } from "./helpers/until.js";

describe("crash safety", () => {
  it("loses no request a client saw succeed when the server is killed with SIGKILL mid-load", async () => {
    const dataDir = tempDir();
    const env = { ...process.env, ALVEARE_THREADS: "1", ALVEARE_LOG_LEVEL: "warn", ALVEARE_DATA_DIR: dataDir, ALVEARE_CONFIG: "" };
    const { key } = cliKey(dataDir, "scale", env);
    const { child, url } = await spawnServe(["--model", await tinyModel()], { ...env, ALVEARE_LOG_LEVEL: "info" });

    const succeeded: string[] = [];
    let stop = false;
    const worker = async (): Promise<void> => {
      while (!stop) {
        try {
          const r = await fetch(`${url}/v1/infer`, {
            method: "POST",
            headers: { authorization: `Bearer ${key}` },
            body: JSON.stringify({ specialist: "classify", prompt: "ok", max_tokens: 3 }),
          });
          if (r.status === 200) {
            await r.json();
            succeeded.push(r.headers.get("x-request-id")!);
          }
        } catch {
          // The server is gone: requests in flight fail, which is what a client sees in a crash.
        }
      }
    };
    const workers = Array.from({ length: 6 }, worker);
    // Killed mid-load once enough requests have succeeded (a fixed 1.5 s was too short on a loaded machine).
    await until("15 requests served", () => succeeded.length >= 15, 60_000);
    child.kill("SIGKILL");
    await new Promise((r) => child.on("exit", r));
    stop = true;
    await Promise.all(workers);
    assert.ok(succeeded.length > 10, `only ${succeeded.length} requests succeeded before the kill`);

    // On restart the database opens (migrations run, WAL recovered) and is consistent.
    const path = join(dataDir, "alveare.db");
    await (await createStore({ dataDir })).close();
    const db = new Database(path, { readonly: true });
    assert.equal(db.pragma("integrity_check", { simple: true }), "ok");
    const recorded = new Set(db.prepare("SELECT request_id FROM usage_events").pluck().all() as string[]);
    const finished = db.prepare("SELECT COUNT(*) FROM usage_events WHERE status = 200").pluck().get() as number;
    const counted = db.prepare("SELECT SUM(requests) FROM usage_counters").pluck().get() as number;
    const events = db.prepare("SELECT COUNT(*) FROM usage_events").pluck().get() as number;
    db.close();
    for (const id of succeeded) assert.ok(recorded.has(id), `request ${id} succeeded but is not in the ledger`);
    assert.ok(finished >= succeeded.length);
    // The quota counter and the ledger never disagree, even across a crash.
    assert.equal(counted, events);
  });

  it("bills only what clients received: requests a killed server never answered are given back at restart", async () => {
    // An upstream that accepts requests and never answers holds them admitted and unfinished.
    const hanging = createServer((req, res) => {
      if (req.method === "GET") res.writeHead(200, { "content-type": "application/json" }).end('{"object":"list","data":[]}');
    });
    await new Promise<void>((r) => hanging.listen(0, "127.0.0.1", r));
    const dataDir = tempDir();
    const config = join(tempDir(), "config.json");
    writeFileSync(
      config,
      JSON.stringify({ specialists: { hang: flakySpecialist(`http://127.0.0.1:${(hanging.address() as AddressInfo).port}/v1`) } }),
    );
    const env = { ...process.env, ALVEARE_THREADS: "1", ALVEARE_LOG_LEVEL: "warn", ALVEARE_DATA_DIR: dataDir, ALVEARE_CONFIG: config };
    const { key } = cliKey(dataDir, "scale", env);
    const model = await tinyModel();
    const first = await spawnServe(["--model", model], { ...env, ALVEARE_LOG_LEVEL: "info" });
    const auth = { authorization: `Bearer ${key}` };
    const infer = (specialist: string) =>
      fetch(`${first.url}/v1/infer`, { method: "POST", headers: auth, body: JSON.stringify({ specialist, prompt: "ok", max_tokens: 3 }) });

    let seen = 0;
    let tokensSeen = 0;
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        for (let i = 0; i < 5; i++) {
          const r = await infer("classify");
          assert.equal(r.status, 200);
          tokensSeen += ((await r.json()) as { tokens_used: number }).tokens_used;
          seen++;
        }
      }),
    );
    const unanswered = Array.from({ length: 3 }, () =>
      infer("hang").then(
        () => "answered",
        () => "connection lost",
      ),
    );
    const path = join(dataDir, "alveare.db");
    const unfinished = (): number => {
      const db = new Database(path, { readonly: true });
      const n = db.prepare("SELECT COUNT(*) FROM usage_events WHERE status IS NULL").pluck().get() as number;
      db.close();
      return n;
    };
    for (let i = 0; i < 400 && unfinished() < 3; i++) await new Promise((r) => setTimeout(r, 25));
    assert.equal(unfinished(), 3, "the three hanging requests were admitted");
    first.child.kill("SIGKILL");
    await new Promise((r) => first.child.on("exit", r));
    assert.deepEqual(await Promise.all(unanswered), ["connection lost", "connection lost", "connection lost"]);

    const second = await spawnServe(["--model", model], { ...env, ALVEARE_LOG_LEVEL: "info" });
    try {
      const usage = (await (await fetch(`${second.url}/v1/usage`, { headers: auth })).json()) as Record<string, unknown>;
      assert.equal(usage.requests_used, seen);
      assert.deepEqual(usage.by_specialist, { classify: seen });
      assert.equal(usage.tokens_used, tokensSeen);
      assert.equal(unfinished(), 0);
    } finally {
      second.child.kill("SIGTERM");
      await new Promise((r) => second.child.on("exit", r));
      hanging.closeAllConnections();
      hanging.close();
    }
  });

  it("a crash is one fatal log line before the process exits with code 1, and leaves no temporary state behind", async () => {
    const dir = tempDir();
    const temp = join(dir, "tmp");
    mkdirSync(temp);
    // Product code has no way to crash on purpose; a preloaded module gives this process an unhandled rejection on SIGUSR2.
    const fault = join(dir, "fault-on-signal.mjs");
    writeFileSync(fault, 'process.on("SIGUSR2", () => { void Promise.reject(new Error("injected fault")); });\n');
    const env = { ...process.env, ALVEARE_THREADS: "1", ALVEARE_DATA_DIR: join(dir, "data"), ALVEARE_CONFIG: "", ALVEARE_LOG_FORMAT: "json" };
    const server = await spawnServe(["--model", await tinyModel()], { ...env, TMPDIR: temp, NODE_OPTIONS: `--import=${fault}` });
    assert.ok(
      readdirSync(temp).some((name) => name.startsWith("alveare-")),
      "the server keeps temporary state (system-prompt snapshots) while it runs",
    );
    const exited = new Promise<number | null>((resolve) => server.child.once("exit", (code) => resolve(code)));
    server.child.kill("SIGUSR2");
    assert.equal(await exited, 1);
    const lines = server
      .output()
      .split("\n")
      .filter((line) => line.startsWith("{"))
      .map((line) => JSON.parse(line) as { level: number; msg: string; origin?: string; err?: { message: string } });
    const fatal = lines.filter((line) => line.level === 60);
    assert.equal(fatal.length, 1, server.output());
    assert.equal(fatal[0]!.origin, "unhandledRejection");
    assert.equal(fatal[0]!.err?.message, "injected fault");
    assert.match(fatal[0]!.msg, /^crashed \(unhandledRejection\): exiting/);
    assert.deepEqual(readdirSync(temp), [], "the snapshots' directory is removed at exit");
  });
});
