import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import pg from "pg";
import { createStore } from "../src/store/create-store.js";
import { migratePostgres, PG_MIGRATIONS } from "../src/store/postgres/migrations.js";
import { openPool } from "../src/store/postgres/pg-pool.js";
import type { Stores } from "../src/store/store.js";
import { createKey, postJson, startTestServer, tempDir } from "./helpers/fixtures.js";
import { dropAllDatabases, freshDatabase, TEST_REDIS_URL } from "./helpers/postgres.js";

after(dropAllDatabases);

const PERIOD = "2026-03";
const AT = "2026-03-10T12:00:00.000Z";
const account = (id: string) => ({ id, name: id, plan: "solo", status: "active" as const, createdAt: AT });
const admission = (limit: number, i: number) => ({
  requestId: `req_${i}`,
  accountId: "acct_a",
  keyId: "k1",
  mode: "live" as const,
  period: PERIOD,
  endpoint: "infer",
  specialist: "classify",
  limit,
  at: AT,
});

async function openMany(databaseUrl: string, n: number, serving = false, plans?: unknown, nodeLeaseMs?: number): Promise<Stores[]> {
  const stores: Stores[] = [];
  for (let i = 0; i < n; i++) stores.push(await createStore({ dataDir: tempDir(), databaseUrl, plans, nodeLeaseMs }, { serving }));
  return stores;
}

const closeAll = (stores: Stores[]): Promise<unknown> => Promise.all(stores.map((s) => s.close()));

describe("PostgreSQL: admission across nodes", () => {
  it("admits exactly the limit from concurrent admissions on several pools, and the ledger agrees", async () => {
    const databaseUrl = await freshDatabase();
    const nodes = await openMany(databaseUrl, 4);
    try {
      await nodes[0]!.accounts.createAccount(account("acct_a"));
      const limit = 25;
      const results = await Promise.all(Array.from({ length: 120 }, (_, i) => nodes[i % nodes.length]!.ledger.admit(admission(limit, i))));
      const admitted = results.filter((id) => id !== undefined);
      assert.equal(admitted.length, limit);
      assert.equal(new Set(admitted).size, limit, "every admission has its own ledger row");
      assert.equal((await nodes[1]!.ledger.periodUsage("acct_a", "live", PERIOD)).requests, limit);
      const pool = new pg.Pool({ connectionString: databaseUrl });
      const rows = (await pool.query("SELECT COUNT(*)::int AS n FROM usage_events")).rows[0] as { n: number };
      await pool.end();
      assert.equal(rows.n, limit, "the ledger holds exactly the admitted requests");
    } finally {
      await closeAll(nodes);
    }
  });

  it("gives a failed request back on every node at once", async () => {
    const databaseUrl = await freshDatabase();
    const [a, b] = await openMany(databaseUrl, 2);
    try {
      await a!.accounts.createAccount(account("acct_a"));
      const first = await a!.ledger.admit(admission(1, 1));
      assert.ok(first !== undefined);
      assert.equal(await b!.ledger.admit(admission(1, 2)), undefined);
      await a!.ledger.complete({
        eventId: first,
        accountId: "acct_a",
        mode: "live",
        period: PERIOD,
        status: 503,
        promptTokens: 0,
        completionTokens: 0,
        latencyMs: 1,
        at: AT,
      });
      assert.notEqual(await b!.ledger.admit(admission(1, 3)), undefined);
    } finally {
      await closeAll([a!, b!]);
    }
  });
});

describe("PostgreSQL: migrations", () => {
  it("apply once when several pools migrate at the same time, and record every version", async () => {
    const databaseUrl = await freshDatabase();
    const pools = Array.from({ length: 4 }, () => openPool(databaseUrl));
    try {
      const applied = await Promise.all(pools.map((p) => migratePostgres(p)));
      const all = applied.flat().sort((x, y) => x - y);
      assert.deepEqual(
        all,
        PG_MIGRATIONS.map((_, i) => i + 1),
        "each version applied by exactly one pool",
      );
      const { rows } = await pools[0]!.query<{ version: number }>("SELECT version FROM schema_migrations ORDER BY version");
      assert.deepEqual(
        rows.map((r) => r.version),
        PG_MIGRATIONS.map((_, i) => i + 1),
      );
      assert.deepEqual(await migratePostgres(pools[1]!), [], "nothing left to apply");
    } finally {
      await Promise.all(pools.map((p) => p.end()));
    }
  });

  it("leave a newer release's versions alone: an older node opens a database migrated further", async () => {
    const databaseUrl = await freshDatabase();
    const pool = openPool(databaseUrl);
    try {
      await migratePostgres(pool);
      // What a newer release adds: an additive table and its version.
      await pool.query("CREATE TABLE future_thing (id TEXT PRIMARY KEY)");
      await pool.query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)", [PG_MIGRATIONS.length + 1, AT]);
      const stores = await createStore({ dataDir: tempDir(), databaseUrl }, { serving: true });
      await stores.accounts.createAccount(account("acct_a"));
      assert.equal((await stores.accounts.getAccount("acct_a"))?.id, "acct_a");
      await stores.close();
    } finally {
      await pool.end();
    }
  });

  it("keep the audit log append-only: no edit, no removal of a record's facts", async () => {
    const databaseUrl = await freshDatabase();
    const [stores] = await openMany(databaseUrl, 1);
    const pool = openPool(databaseUrl);
    try {
      await stores!.audit.record(
        { actor: "cli", source: null, requestId: null },
        { action: "account.created", accountId: "acct_a", target: "account:acct_a" },
      );
      await assert.rejects(pool.query("UPDATE audit_log SET actor = 'someone else'"), /append-only/);
      await stores!.audit.count({ actor: "anonymous", source: "10.0.0.1", requestId: null }, "sign_in.failed", new Date(AT));
      await stores!.audit.count({ actor: "anonymous", source: "10.0.0.1", requestId: null }, "sign_in.failed", new Date(AT));
      const page = await stores!.audit.query({ action: "sign_in.failed", limit: 10 });
      assert.equal(page.records[0]?.count, 2, "an aggregate's count may go up");
      await assert.rejects(pool.query("UPDATE audit_log SET count = 1 WHERE bucket IS NOT NULL"), /append-only/);
      assert.equal(await stores!.audit.prune(new Date("2027-01-01T00:00:00.000Z")), 2, "pruning by age deletes");
    } finally {
      await pool.end();
      await stores!.close();
    }
  });
});

describe("PostgreSQL: nodes", () => {
  const PLANS = { solo: { requests_per_minute: 20, monthly_requests: 1000 } };

  it("refuses a serving node whose plan table differs from the running nodes', with one line saying what to do", async () => {
    const databaseUrl = await freshDatabase();
    const first = await createStore({ dataDir: tempDir(), databaseUrl, plans: PLANS }, { serving: true });
    try {
      const same = await createStore(
        { dataDir: tempDir(), databaseUrl, plans: { solo: { monthly_requests: 1000, requests_per_minute: 20 } } },
        { serving: true },
      );
      await same.close();
      const other = { solo: { requests_per_minute: 20, monthly_requests: 2000 } };
      await assert.rejects(createStore({ dataDir: tempDir(), databaseUrl, plans: other }, { serving: true }), (error: Error) => {
        assert.match(error.message, /plan table/);
        assert.match(error.message, /same config file/);
        assert.equal(error.message.split("\n").length, 1);
        return true;
      });
      const cli = await createStore({ dataDir: tempDir(), databaseUrl, plans: other });
      await cli.close(); // the CLI holds no lease and checks nothing: it admits nothing
    } finally {
      await first.close();
    }
    const restarted = await createStore({ dataDir: tempDir(), databaseUrl, plans: { solo: { requests_per_minute: 5 } } }, { serving: true });
    await restarted.close(); // once every node is gone, a start records the new table
  });

  it("settles the unfinished rows of a node whose lease ran out, once, and leaves live nodes' rows alone", async () => {
    const databaseUrl = await freshDatabase();
    const leaseMs = 1500;
    const dying = await createStore({ dataDir: tempDir(), databaseUrl, nodeLeaseMs: leaseMs }, { serving: true });
    const survivor = await createStore({ dataDir: tempDir(), databaseUrl, nodeLeaseMs: leaseMs }, { serving: true });
    const pool = openPool(databaseUrl);
    try {
      await survivor.accounts.createAccount(account("acct_a"));
      await dying.ledger.admit(admission(10, 1));
      await dying.ledger.admit(admission(10, 2));
      const mine = await survivor.ledger.admit(admission(10, 3));
      assert.ok(mine !== undefined);
      assert.equal((await survivor.ledger.periodUsage("acct_a", "live", PERIOD)).requests, 3);
      // A node killed: its pool is gone without giving its lease up.
      const { rows } = await pool.query<{ id: string }>("SELECT node_id AS id FROM usage_events WHERE request_id = 'req_1'");
      await pool.query("UPDATE nodes SET lease_until = now() + interval '1 hour' WHERE id = $1", [rows[0]!.id]);
      await dying.close(); // its lease row is gone now; put it back as a dead node's lease that will run out
      await pool.query("INSERT INTO nodes (id, host, pid, started_at, lease_until) VALUES ($1, 'elsewhere', 1, $2, now() + interval '1 second')", [
        rows[0]!.id,
        AT,
      ]);
      assert.equal((await survivor.ledger.periodUsage("acct_a", "live", PERIOD)).requests, 3, "a live lease keeps its rows");
      let usage = 3;
      for (let i = 0; i < 60 && usage !== 1; i++) {
        await new Promise((r) => setTimeout(r, 250));
        usage = (await survivor.ledger.periodUsage("acct_a", "live", PERIOD)).requests;
      }
      assert.equal(usage, 1, "the dead node's two unfinished rows were given back");
      const statuses = await pool.query<{ status: number | null; n: number }>(
        "SELECT status, COUNT(*)::int AS n FROM usage_events GROUP BY status ORDER BY status NULLS LAST",
      );
      assert.deepEqual(statuses.rows, [
        { status: 0, n: 2 },
        { status: null, n: 1 },
      ]);
      await survivor.ledger.complete({
        eventId: mine,
        accountId: "acct_a",
        mode: "live",
        period: PERIOD,
        status: 200,
        promptTokens: 2,
        completionTokens: 1,
        latencyMs: 1,
        at: AT,
      });
      assert.deepEqual(await survivor.ledger.periodUsage("acct_a", "live", PERIOD), { requests: 1, tokens: 3, bySpecialist: { classify: 1 } });
    } finally {
      await pool.end();
      await survivor.close();
    }
  });
});

describe("PostgreSQL: a server on it", () => {
  it("serves a real inference through the gate and reads it back from /v1/usage", async () => {
    const databaseUrl = await freshDatabase();
    const server = await startTestServer({}, { gated: true, env: { ALVEARE_DATABASE_URL: databaseUrl, ALVEARE_REDIS_URL: TEST_REDIS_URL } });
    try {
      assert.equal(server.config.databaseUrl, databaseUrl);
      const { auth, accountId } = await createKey(server, "professional");
      const r = await postJson(`${server.url}/v1/infer`, { specialist: "classify", prompt: "I love it", max_tokens: 4 }, auth);
      assert.equal(r.status, 200, JSON.stringify(r.json));
      const usage = (await (await fetch(`${server.url}/v1/usage`, { headers: auth })).json()) as Record<string, unknown>;
      assert.equal(usage.requests_used, 1, JSON.stringify(usage));
      assert.deepEqual(usage.by_specialist, { classify: 1 });
      assert.ok(Number(usage.tokens_used) > 0);
      const pool = new pg.Pool({ connectionString: databaseUrl });
      const row = (await pool.query("SELECT account_id, status, node_id FROM usage_events")).rows;
      await pool.end();
      assert.equal(row.length, 1);
      assert.equal(row[0].account_id, accountId);
      assert.equal(row[0].status, 200);
      assert.match(String(row[0].node_id), /^node_/);
      const bad = await postJson(`${server.url}/v1/infer`, { specialist: "classify", prompt: "x" }, { authorization: "Bearer alv_live_nope" });
      assert.equal(bad.status, 401);
    } finally {
      await server.close();
    }
  });
});
