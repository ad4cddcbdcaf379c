import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import Database from "better-sqlite3";
import { SqliteStore } from "../src/store/sqlite/sqlite-store.js";
import { cliKey, spawnServe, tempDir, tinyModel } from "./helpers/fixtures.js";

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
          const r = await fetch(`${url}/v1/infer`, { method: "POST", headers: { authorization: `Bearer ${key}` }, body: JSON.stringify({ specialist: "classify", prompt: "ok", max_tokens: 3 }) });
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
    await new Promise((r) => setTimeout(r, 1500));
    child.kill("SIGKILL");
    await new Promise((r) => child.on("exit", r));
    stop = true;
    await Promise.all(workers);
    assert.ok(succeeded.length > 10, `only ${succeeded.length} requests succeeded before the kill`);

    // On restart the database opens (migrations run, WAL recovered) and is consistent.
    const path = join(dataDir, "alveare.db");
    const store = new SqliteStore(path);
    assert.equal(store.integrityCheck(), "ok");
    await store.close();
    const db = new Database(path, { readonly: true });
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
});
