import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import pg from "pg";
import { createStore } from "../src/store/create-store.js";
import { migratePostgres, PG_MIGRATIONS } from "../src/store/postgres/migrations.js";
import { AdmissionBatch } from "../src/store/postgres/pg-admissions.js";
import { CompletionBatch } from "../src/store/postgres/pg-completions.js";
import { FINISH_ONE, outcomeParams, PgLedger, PG_USAGE_QUERIES } from "../src/store/postgres/pg-ledger.js";
import { openPool } from "../src/store/postgres/pg-pool.js";
import { planTableDifferences } from "../src/store/postgres/pg-nodes.js";
import { parsePlans } from "../src/gate/plans.js";
import { UnrecordedOutcomeError, type CompletionRecord, type Stores } from "../src/store/store.js";
import { createKey, postJson, startTestServer, tempDir, tinyModel } from "./helpers/fixtures.js";
import { startTcpProxy } from "./helpers/tcp-proxy.js";
import { dropAllDatabases, freshDatabase, TEST_REDIS_URL } from "./helpers/postgres.js";
import { deletePrefix, testPrefix } from "./helpers/redis.js";

after(dropAllDatabases);

/** This file's servers keep their Redis keys under a prefix of their own, never the default `alveare:`. */
const REDIS_PREFIX = testPrefix("pgstore");
after(() => deletePrefix(REDIS_PREFIX));

const CLI = new URL("../src/cli/main.js", import.meta.url).pathname;
const CREATE_STORE = new URL("../src/store/create-store.js", import.meta.url).href;

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
/** A completion of ledger row `eventId` (acct_a, live, served with no tokens unless `outcome` says otherwise). */
const completion = (eventId: number, outcome: Partial<CompletionRecord> = {}): CompletionRecord => ({
  eventId,
  accountId: "acct_a",
  mode: "live",
  period: PERIOD,
  status: 200,
  promptTokens: 0,
  completionTokens: 0,
  latencyMs: 1,
  at: AT,
  ...outcome,
});

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

  it("writes the admissions that arrive together in one transaction, each with its own ledger row", async () => {
    const databaseUrl = await freshDatabase();
    const [node] = await openMany(databaseUrl, 1);
    const pool = new pg.Pool({ connectionString: databaseUrl });
    try {
      await node!.accounts.createAccount(account("acct_a"));
      const ids = await Promise.all(Array.from({ length: 50 }, (_, i) => node!.ledger.admit(admission(1000, i))));
      assert.ok(ids.every((id) => id !== undefined));
      const rows = (await pool.query("SELECT id::int AS id, request_id, xmin::text AS tx FROM usage_events")).rows as Array<{
        id: number;
        request_id: string;
        tx: string;
      }>;
      assert.equal(rows.length, 50);
      // Rows inserted by one transaction share its id: 50 admissions of one turn, one commit.
      assert.equal(new Set(rows.map((r) => r.tx)).size, 1);
      const byRequest = new Map(rows.map((r) => [r.request_id, r.id]));
      ids.forEach((id, i) => assert.equal(id, byRequest.get(`req_${i}`), "each admission gets the ledger row of its own request"));
      assert.equal((await node!.ledger.periodUsage("acct_a", "live", PERIOD)).requests, 50);
      const day = (await pool.query("SELECT requests FROM usage_daily")).rows as Array<{ requests: number }>;
      assert.deepEqual(day, [{ requests: 50 }]);
    } finally {
      await pool.end();
      await closeAll([node!]);
    }
  });

  it("admits a batch that does not fit whole up to the limit exactly, first come first served, and keeps repeated request ids apart", async () => {
    const databaseUrl = await freshDatabase();
    const [node] = await openMany(databaseUrl, 1);
    const pool = new pg.Pool({ connectionString: databaseUrl });
    try {
      await node!.accounts.createAccount(account("acct_a"));
      for (let i = 0; i < 25; i++) assert.notEqual(await node!.ledger.admit(admission(30, i)), undefined);
      // 20 arriving together with 5 left: the group is decided one by one, in arrival order.
      const ids = await Promise.all(Array.from({ length: 20 }, (_, i) => node!.ledger.admit(admission(30, 100 + i))));
      assert.deepEqual(
        ids.map((id) => id !== undefined),
        Array.from({ length: 20 }, (_, i) => i < 5),
      );
      assert.equal((await node!.ledger.periodUsage("acct_a", "live", PERIOD)).requests, 30);
      const count = (await pool.query("SELECT COUNT(*)::int AS n FROM usage_events")).rows[0] as { n: number };
      assert.equal(count.n, 30);

      await node!.accounts.createAccount(account("acct_b"));
      const twice = { ...admission(1000, 7), accountId: "acct_b", requestId: "req_same" };
      const [first, second] = await Promise.all([node!.ledger.admit(twice), node!.ledger.admit(twice)]);
      assert.ok(first !== undefined && second !== undefined && first !== second, "a repeated request id still gets a row of its own");
    } finally {
      await pool.end();
      await closeAll([node!]);
    }
  });

  it("fails only the requests still being decided when the database goes away after a batch was written", async () => {
    const databaseUrl = await freshDatabase();
    const stores = await createStore({ dataDir: tempDir(), databaseUrl }, { serving: false });
    const direct = new pg.Pool({ connectionString: databaseUrl });
    const url = new URL(databaseUrl);
    const proxy = await startTcpProxy(Number(url.port || 5432));
    url.port = String(proxy.port);
    const viaProxy = new pg.Pool({ connectionString: url.toString() });
    try {
      await stores.accounts.createAccount(account("acct_a"));
      await stores.accounts.createAccount(account("acct_b"));
      const batch = new AdmissionBatch(
        async <R>(text: string, name: string, values: unknown[]) => {
          const rows = (await viaProxy.query({ name, text, values })).rows as R[];
          if (name === "alveare_admit_many") proxy.cut(); // the database goes away right after the batch committed
          return rows;
        },
        () => "node_x",
      );
      const request = (accountId: string, limit: number, requestId: string) => ({ ...admission(limit, 0), accountId, requestId });
      // acct_a's two fit (limit 100); acct_b's two do not fit whole (limit 1), so they are decided one by one, after the cut.
      const results = await Promise.allSettled([
        batch.admit(request("acct_a", 100, "a1")),
        batch.admit(request("acct_a", 100, "a2")),
        batch.admit(request("acct_b", 1, "b1")),
        batch.admit(request("acct_b", 1, "b2")),
      ]);
      assert.deepEqual(
        results.map((r) => r.status),
        ["fulfilled", "fulfilled", "rejected", "rejected"],
      );
      const rows = (await direct.query("SELECT request_id FROM usage_events ORDER BY request_id")).rows as Array<{ request_id: string }>;
      assert.deepEqual(
        rows.map((r) => r.request_id),
        ["a1", "a2"],
        "the admitted requests are told so; the failed ones left nothing behind",
      );
      const ids = results.slice(0, 2).map((r) => (r as PromiseFulfilledResult<number | undefined>).value);
      assert.ok(
        ids.every((id) => id !== undefined),
        "both got their ledger rows",
      );
    } finally {
      await viaProxy.end().catch(() => undefined);
      await direct.end();
      await proxy.close();
      await stores.close();
    }
  });

  it("batched admissions and batched completions over the same accounts never deadlock, whatever the database's collation", async () => {
    // Mixed-case account ids sort differently in a language collation than bytewise: every statement must take counters in one order.
    const databaseUrl = await freshDatabase({ icuLocale: "en-US" });
    const stores = await createStore({ dataDir: tempDir(), databaseUrl }, { serving: false });
    const pools = [0, 1].map(() => new pg.Pool({ connectionString: databaseUrl, max: 4 }));
    for (const p of pools) p.on("connect", (c) => void c.query("SET deadlock_timeout = '20ms'"));
    let deadlocks = 0;
    const runOn =
      (pool: pg.Pool) =>
      async <R>(text: string, name: string, values: unknown[]): Promise<R[]> => {
        try {
          return (await pool.query({ name, text, values })).rows as R[];
        } catch (error) {
          if ((error as { code?: string }).code === "40P01") deadlocks++;
          throw error;
        }
      };
    try {
      const accounts = ["acct_a", "acct_B"];
      for (const a of accounts) await stores.accounts.createAccount(account(a));
      const nodes = pools.map((pool, i) => ({
        admissions: new AdmissionBatch(runOn(pool), () => `node_${i}`),
        // Each node's completions on the other pool: two connections, as two nodes have.
        completions: new CompletionBatch(runOn(pools[1 - i]!), { text: FINISH_ONE, params: (r) => [...outcomeParams(r), r.eventId] }),
      }));
      let seq = 0;
      const deadline = Date.now() + 3000;
      const worker = async (w: number): Promise<void> => {
        const node = nodes[w % 2]!;
        const order = w % 2 === 0 ? accounts : [...accounts].reverse();
        while (Date.now() < deadline) {
          const ids = await Promise.all(order.map((a) => node.admissions.admit({ ...admission(1_000_000, seq++), accountId: a })));
          await Promise.all(ids.reverse().map((id) => node.completions.add(completion(id!, { promptTokens: 1, completionTokens: 1 }))));
        }
      };
      await Promise.all(Array.from({ length: 6 }, (_, w) => worker(w)));
      assert.ok(seq > 100, `the workers ran (${seq} admissions)`);
      assert.equal(deadlocks, 0);
      const counted = (await pools[0]!.query("SELECT SUM(requests)::int AS n FROM usage_counters")).rows[0] as { n: number };
      assert.equal(counted.n, seq, "every admission counted once");
    } finally {
      await Promise.all(pools.map((p) => p.end()));
      await stores.close();
    }
  });

  it("creates no more keys than the cap when several nodes create keys for one account at once", async () => {
    const databaseUrl = await freshDatabase();
    const nodes = await openMany(databaseUrl, 3);
    try {
      await nodes[0]!.accounts.createAccount(account("acct_a"));
      const key = (i: number) => ({
        id: `key_${i}`,
        accountId: "acct_a",
        name: null,
        mode: "live" as const,
        prefix: `alv_live_${i}`,
        createdAt: AT,
        lastUsedAt: null,
        revokedAt: null,
        createdBy: null,
      });
      const results = await Promise.all(
        Array.from({ length: 24 }, (_, i) => nodes[i % 3]!.accounts.createKey(key(i), `hash_${i}`, { unrevoked: 5 })),
      );
      assert.equal(results.filter((r) => r === "created").length, 5);
      assert.equal(results.filter((r) => r === "limit_reached").length, 19);
      assert.equal((await nodes[2]!.accounts.listKeys("acct_a")).length, 5);
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
      await a!.ledger.complete(completion(first, { status: 503 }));
      assert.notEqual(await b!.ledger.admit(admission(1, 3)), undefined);
    } finally {
      await closeAll([a!, b!]);
    }
  });
});

describe("PostgreSQL: usage aggregates", () => {
  it("answer every usage report without reading the ledger", async () => {
    const databaseUrl = await freshDatabase();
    const pool = openPool(databaseUrl);
    try {
      await migratePostgres(pool);
      for (const [name, sql] of Object.entries(PG_USAGE_QUERIES)) {
        const { rows } = await pool.query<{ "QUERY PLAN": string }>(`EXPLAIN ${sql}`, ["acct", "live", PERIOD]);
        const plan = rows.map((r) => r["QUERY PLAN"]).join(" | ");
        assert.match(plan, /usage_(daily|counters)/, `${name}: ${plan}`);
        assert.doesNotMatch(plan, /usage_events/, `${name}: ${plan}`);
      }
    } finally {
      await pool.end();
    }
  });

  it("agree with the ledger after a mix of outcomes on several nodes, a dead node's settlement included", async () => {
    const databaseUrl = await freshDatabase();
    const nodes = await openMany(databaseUrl, 3);
    const pool = openPool(databaseUrl);
    try {
      await nodes[0]!.accounts.createAccount(account("acct_a"));
      const outcomes = [200, 200, 499, 400, 500, 502, 200, 429, 0, 200];
      const specialists = ["classify", "qa", "summarise"];
      const days = ["2026-03-01T10:00:00.000Z", "2026-03-02T10:00:00.000Z", "2026-03-31T23:59:59.999Z"];
      await Promise.all(
        Array.from({ length: 90 }, async (_, i) => {
          const at = days[i % days.length]!;
          const node = nodes[i % nodes.length]!;
          const id = await node.ledger.admit({ ...admission(1000, i), specialist: specialists[i % specialists.length]!, at });
          assert.ok(id !== undefined);
          const status = outcomes[i % outcomes.length]!;
          if (status === 0) return; // left unfinished: a dead node's
          await node.ledger.complete(completion(id, { status, promptTokens: i, completionTokens: 1, at }));
        }),
      );
      // The unfinished rows' writer is gone (no lease): a serving node settles them at start.
      await pool.query("UPDATE usage_events SET node_id = 'node_gone' WHERE status IS NULL");
      const survivor = await createStore({ dataDir: tempDir(), databaseUrl }, { serving: true });
      nodes.push(survivor);
      const fromLedger = await pool.query<{ specialist: string; day: string; requests: number; tokens: number }>(
        `SELECT specialist, substr(created_at, 1, 10) AS day, COUNT(*)::int AS requests, SUM(prompt_tokens + completion_tokens)::int AS tokens
         FROM usage_events WHERE status BETWEEN 200 AND 299 OR status = 499 GROUP BY 1, 2 ORDER BY 1, 2`,
      );
      const fromAggregates = await pool.query<{ specialist: string; day: string; requests: number; tokens: number }>(
        "SELECT specialist, day, requests, tokens::int AS tokens FROM usage_daily WHERE requests > 0 ORDER BY 1, 2",
      );
      assert.deepEqual(fromAggregates.rows, fromLedger.rows);
      assert.equal((await pool.query("SELECT COUNT(*)::int AS n FROM usage_events WHERE status IS NULL")).rows[0].n, 0, "nothing left unfinished");
      const usage = await survivor.ledger.periodUsage("acct_a", "live", PERIOD);
      assert.equal(
        usage.requests,
        fromLedger.rows.reduce((n, r) => n + r.requests, 0),
      );
      assert.equal(
        usage.tokens,
        fromLedger.rows.reduce((n, r) => n + r.tokens, 0),
      );
    } finally {
      await pool.end();
      await closeAll(nodes);
    }
  });
});

describe("PostgreSQL: completions of one event-loop turn", () => {
  it("are written together with each row's own outcome, and a row completed twice counts once", async () => {
    const databaseUrl = await freshDatabase();
    const [node] = await openMany(databaseUrl, 1);
    const pool = openPool(databaseUrl);
    try {
      await node!.accounts.createAccount(account("acct_a"));
      const days = ["2026-03-01T10:00:00.000Z", "2026-03-02T10:00:00.000Z"];
      const ids: number[] = [];
      for (let i = 0; i < 40; i++) {
        const id = await node!.ledger.admit({ ...admission(1000, i), specialist: i % 3 === 0 ? "qa" : "classify", at: days[i % 2]! });
        assert.ok(id !== undefined);
        ids.push(id);
      }
      const statuses = [200, 503, 499, 400, 200];
      const outcome = (i: number) =>
        completion(ids[i]!, { status: statuses[i % statuses.length]!, promptTokens: i, completionTokens: 2, latencyMs: i + 0.5, at: days[i % 2]! });
      // All in one turn, row 0 twice (a caller's bug); then rows 38 and 39 again in a later turn.
      await Promise.all([...ids.map((_, i) => node!.ledger.complete(outcome(i))), node!.ledger.complete({ ...outcome(0), promptTokens: 100 })]);
      await Promise.all([38, 39].map((i) => node!.ledger.complete({ ...outcome(i), status: 500 })));

      const finished = await pool.query<{ id: number; status: number; latency_ms: number; prompt_tokens: number }>(
        "SELECT id::int AS id, status, latency_ms, prompt_tokens FROM usage_events ORDER BY id",
      );
      assert.equal(finished.rows.length, 40);
      finished.rows.forEach((row, i) => {
        assert.equal(row.status, statuses[i % statuses.length], `row ${i}'s own status`);
        assert.equal(row.latency_ms, i + 0.5);
        if (i !== 0) assert.equal(row.prompt_tokens, i);
      });
      const fromLedger = await pool.query<{ specialist: string; day: string; requests: number; tokens: number }>(
        `SELECT specialist, substr(created_at, 1, 10) AS day, COUNT(*)::int AS requests, SUM(prompt_tokens + completion_tokens)::int AS tokens
         FROM usage_events WHERE status BETWEEN 200 AND 299 OR status = 499 GROUP BY 1, 2 ORDER BY 1, 2`,
      );
      const fromAggregates = await pool.query<{ specialist: string; day: string; requests: number; tokens: number }>(
        "SELECT specialist, day, requests, tokens::int AS tokens FROM usage_daily WHERE requests > 0 ORDER BY 1, 2",
      );
      assert.deepEqual(fromAggregates.rows, fromLedger.rows);
      const usage = await node!.ledger.periodUsage("acct_a", "live", PERIOD);
      assert.equal(
        usage.requests,
        fromLedger.rows.reduce((n, r) => n + r.requests, 0),
      );
      assert.equal(
        usage.tokens,
        fromLedger.rows.reduce((n, r) => n + r.tokens, 0),
      );
      assert.equal(usage.requests, 24, "the 16 rows given back (503, 400) no longer count; every other row counts once");
    } finally {
      await pool.end();
      await node!.close();
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

describe("what differs between two plan tables, as a mismatch names it", () => {
  const tiny = { name: "tiny", requestsPerWindow: 5, windowMs: 60_000, requestsPerMonth: 12, maxKeys: 25, specialists: ["chat"] };
  it("names plans on one side only, then changed fields by their config names (the window in seconds)", () => {
    assert.equal(
      planTableDifferences({ tiny }, { tiny: { ...tiny, requestsPerMonth: 20, windowMs: 30_000 }, pro: tiny }),
      "plan 'pro' only in theirs; plan 'tiny': requests_per_month 12 here, 20 in theirs; plan 'tiny': window_seconds 60 here, 30 in theirs",
    );
    assert.equal(
      planTableDifferences({ tiny: { ...tiny, tokensPerWindow: 100 } }, { tiny }),
      "plan 'tiny': tokens_per_minute 100 here, unset in theirs",
    );
  });
  it("names three and counts the rest", () => {
    assert.equal(
      planTableDifferences({ a: tiny, b: tiny, c: tiny, d: tiny }, {}),
      "plan 'a' only here; plan 'b' only here; plan 'c' only here; and 1 more",
    );
  });
});

describe("a shared-mode node's start-up lines", () => {
  it("name where the nodes meet: the database, Redis and the key prefix", async () => {
    const databaseUrl = await freshDatabase();
    const dir = tempDir();
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      ALVEARE_DATABASE_URL: databaseUrl,
      ALVEARE_REDIS_URL: TEST_REDIS_URL,
      ALVEARE_REDIS_PREFIX: testPrefix(),
      ALVEARE_LOG_FORMAT: "json",
    };
    delete env.ALVEARE_CONFIG;
    const node = spawn(process.execPath, [CLI, "serve", "--port", "0", "--model", await tinyModel(), "--data-dir", dir], { env });
    try {
      let out = "";
      const line = await new Promise<Record<string, unknown>>((resolve, reject) => {
        node.stdout.on("data", (chunk: Buffer) => {
          out += chunk.toString();
          const found = out
            .split("\n")
            .filter((l) => l.startsWith("{"))
            .map((l) => JSON.parse(l) as Record<string, unknown>)
            .find((r) => typeof r.msg === "string" && r.msg.startsWith("database "));
          if (found !== undefined) resolve(found);
        });
        node.on("exit", (code) => reject(new Error(`exited ${code}: ${out}`)));
      });
      assert.match(String(line.msg), /^database PostgreSQL at .+; Redis at redis:\/\/.+, key prefix '.+'$/);
      assert.equal(line.redis_prefix, env.ALVEARE_REDIS_PREFIX);
    } finally {
      node.kill("SIGTERM");
      await new Promise((r) => node.once("exit", r));
      await deletePrefix(env.ALVEARE_REDIS_PREFIX!);
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
        // It names what differs, so the operator finds the wrong file or field.
        assert.match(error.message, /\(plan 'solo': monthly_requests 2000 here, 1000 in theirs\)/);
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

  it("lets a CLI given no config file use the plans the serving nodes recorded, custom ones included", async () => {
    const databaseUrl = await freshDatabase();
    const plans = parsePlans({ tiny: { requests_per_minute: 5, requests_per_month: 8, specialists: ["classify"] } });
    const node = await createStore(
      { dataDir: tempDir(), databaseUrl, redisUrl: TEST_REDIS_URL, redisPrefix: REDIS_PREFIX, plans },
      { serving: true },
    );
    let stopped = false;
    try {
      const env: NodeJS.ProcessEnv = {
        ...process.env,
        ALVEARE_DATABASE_URL: databaseUrl,
        ALVEARE_REDIS_URL: TEST_REDIS_URL,
        ALVEARE_REDIS_PREFIX: REDIS_PREFIX,
      };
      delete env.ALVEARE_CONFIG;
      const cli = (args: string[]) => spawnSync(process.execPath, [CLI, ...args, "--json"], { env, encoding: "utf8" });
      const created = cli(["accounts", "create", "--name", "Small", "--plan", "tiny"]);
      assert.equal(created.status, 0, created.stderr);
      const accountId = (JSON.parse(created.stdout) as { id: string; plan: string }).id;
      const usage = cli(["usage", "--account", accountId]);
      assert.equal(usage.status, 0, usage.stderr);
      assert.equal((JSON.parse(usage.stdout) as { requests_limit: number }).requests_limit, 8, "the usage report reads the recorded plan's quota");
      const table = spawnSync(process.execPath, [CLI, "accounts", "list"], { env, encoding: "utf8" });
      assert.match(table.stderr, /^plans: as the serving nodes recorded them$/m, "the operator is told where the plans come from");
      const unknown = cli(["accounts", "create", "--name", "Big", "--plan", "huge"]);
      assert.equal(unknown.status, 2);
      assert.match(unknown.stderr, /no plan 'huge'\. Plans: tiny, solo, starter, professional, scale/);
      // A config file with another plan table is refused: before, it put an account on a plan no node serves
      // (its every request failed, and its usage page answered 500).
      const ghostConfig = join(tempDir(), "ghost.json");
      writeFileSync(
        ghostConfig,
        JSON.stringify({
          plans: {
            tiny: { requests_per_minute: 5, requests_per_month: 8, specialists: ["classify"] },
            ghost: { requests_per_minute: 5, requests_per_month: 5, specialists: "*" },
          },
        }),
      );
      const ghost = spawnSync(process.execPath, [CLI, "accounts", "update", accountId, "--plan", "ghost", "--config", ghostConfig], {
        env,
        encoding: "utf8",
      });
      assert.equal(ghost.status, 2, ghost.stderr);
      assert.match(ghost.stderr, /the plans in .*ghost\.json differ from the plan table the running nodes recorded in PostgreSQL \(/);
      // What differs, so the operator finds it: here the one plan only the file has.
      assert.match(ghost.stderr, /\(plan 'ghost' only here\)/);
      assert.equal(
        (JSON.parse(cli(["accounts", "list"]).stdout) as Array<{ id: string; plan: string }>).find((a) => a.id === accountId)?.plan,
        "tiny",
      );
      const sameConfig = join(tempDir(), "same.json");
      writeFileSync(sameConfig, JSON.stringify({ plans: { tiny: { requests_per_minute: 5, requests_per_month: 8, specialists: ["classify"] } } }));
      const same = spawnSync(process.execPath, [CLI, "accounts", "list", "--config", sameConfig, "--json"], { env, encoding: "utf8" });
      assert.equal(same.status, 0, "the nodes' own config file is accepted: " + same.stderr);
      // With every node stopped (as to change plans), the new file is the next table: the CLI may use it.
      await node.close();
      stopped = true;
      const afterStop = spawnSync(process.execPath, [CLI, "accounts", "update", accountId, "--plan", "ghost", "--config", ghostConfig], {
        env,
        encoding: "utf8",
      });
      assert.equal(afterStop.status, 0, afterStop.stderr);
    } finally {
      if (!stopped) await node.close();
    }
  });

  it("refuses a node or CLI whose Redis prefix differs from the running nodes', with one line", async () => {
    const databaseUrl = await freshDatabase();
    const shared = (redisPrefix: string) => ({ dataDir: tempDir(), databaseUrl, redisUrl: TEST_REDIS_URL, redisPrefix });
    const first = await createStore(shared("alveare-a:"), { serving: true });
    try {
      const mismatch = (error: Error): boolean => {
        assert.match(error.message, /ALVEARE_REDIS_PREFIX is 'alveare-b:' here but the running nodes use 'alveare-a:'/);
        assert.equal(error.message.split("\n").length, 1);
        return true;
      };
      await assert.rejects(createStore(shared("alveare-b:"), { serving: true }), mismatch);
      await assert.rejects(createStore(shared("alveare-b:")), mismatch, "the CLI refuses too");
      const cli = spawnSync(process.execPath, [CLI, "accounts", "list"], {
        env: { ...process.env, ALVEARE_DATABASE_URL: databaseUrl, ALVEARE_REDIS_URL: TEST_REDIS_URL, ALVEARE_REDIS_PREFIX: "alveare-b:" },
        encoding: "utf8",
      });
      assert.equal(cli.status, 2, "a wrong variable is a wrong command (exit 2)");
      assert.match(cli.stderr, /^alveare: ALVEARE_REDIS_PREFIX is 'alveare-b:' here/m);
      const right = await createStore(shared("alveare-a:"));
      await right.close();
    } finally {
      await first.close();
    }
    const moved = await createStore(shared("alveare-b:"), { serving: true });
    await moved.close(); // once every node is gone, a start records the new prefix
  });

  it("closes, as refused, its own unfinished rows that no request of it holds, never one in flight or just admitted", async () => {
    const databaseUrl = await freshDatabase();
    const node = await createStore({ dataDir: tempDir(), databaseUrl, nodeLeaseMs: 900 }, { serving: true });
    const pool = openPool(databaseUrl);
    try {
      await node.accounts.createAccount(account("acct_a"));
      const nodeId = (await pool.query<{ id: string }>("SELECT id FROM nodes")).rows[0]!.id;
      const inFlight = await node.ledger.admit(admission(10, 1));
      assert.ok(inFlight !== undefined);
      // Rows written under this node's id by an admission whose answer the node never got (another ledger object
      // stands in for the statement that arrived late): one admitted long ago, one just now.
      const late = new PgLedger(pool, () => nodeId);
      const lost = await late.admit(admission(10, 2));
      const recent = await late.admit({ ...admission(10, 3), at: new Date().toISOString() });
      const statusOf = async (id: number | undefined): Promise<unknown> =>
        (await pool.query("SELECT status FROM usage_events WHERE id = $1", [id])).rows[0]?.status;
      let status: unknown = null;
      for (let i = 0; i < 40 && status === null; i++) {
        await new Promise((r) => setTimeout(r, 100));
        status = await statusOf(lost);
      }
      assert.equal(status, 503, "the forgotten row is closed as the refusal its client got");
      await new Promise((r) => setTimeout(r, 700)); // two more sweeps
      assert.equal(await statusOf(inFlight), null, "the node's own request in flight is left alone");
      assert.equal(await statusOf(recent), null, "a row younger than any answer could be is left alone");
      assert.equal((await node.ledger.periodUsage("acct_a", "live", PERIOD)).requests, 2, "the forgotten row was given back");
      await node.ledger.complete(completion(inFlight, { promptTokens: 2, completionTokens: 1 }));
      assert.equal(await statusOf(inFlight), 200);
      assert.deepEqual(await node.ledger.periodUsage("acct_a", "live", PERIOD), { requests: 2, tokens: 3, bySpecialist: { classify: 2 } });
    } finally {
      await pool.end();
      await node.close();
    }
  });

  it("never closes the row of an admission whose answer is on its way when the sweep reads it", async () => {
    const databaseUrl = await freshDatabase();
    const proxy = await startTcpProxy(Number(new URL(databaseUrl).port || 5432), new URL(databaseUrl).hostname);
    const viaProxy = new URL(databaseUrl);
    viaProxy.host = `127.0.0.1:${proxy.port}`;
    const pool = openPool(databaseUrl);
    const requests = openPool(viaProxy.toString());
    try {
      await migratePostgres(pool);
      await pool.query("INSERT INTO accounts (id, name, plan, status, created_at) VALUES ('acct_a', 'a', 'solo', 'active', $1)", [AT]);
      // The admissions' statements go through a proxy that holds their answers; the sweep reads the database directly.
      const ledger = new PgLedger(pool, () => "node_sweeping", requests);
      await ledger.admit(admission(10, 0)); // opens the request pool's connection
      proxy.holdAnswers();
      const admitting = ledger.admit(admission(10, 1));
      let rows = 0;
      for (let i = 0; i < 50 && rows < 2; i++) {
        await new Promise((r) => setTimeout(r, 20));
        rows = (await pool.query("SELECT 1 FROM usage_events")).rows.length;
      }
      assert.equal(rows, 2, "the admission committed; only its answer is held");
      const sweeping = ledger.closeForgotten(0);
      await new Promise((r) => setTimeout(r, 300));
      proxy.restore();
      const id = await admitting;
      assert.ok(id !== undefined);
      assert.equal(await sweeping, 0, "the sweep waited for the admission's answer and left its row alone");
      assert.equal((await pool.query("SELECT status FROM usage_events WHERE id = $1", [id])).rows[0]?.status, null);
    } finally {
      await requests.end();
      await pool.end();
      await proxy.close();
    }
  });

  it("settles the unfinished rows of a node killed with -9 once its lease runs out, and leaves live nodes' rows alone", async () => {
    const databaseUrl = await freshDatabase();
    const leaseMs = 1500;
    const warnings: string[] = [];
    const survivor = await createStore({ dataDir: tempDir(), databaseUrl, nodeLeaseMs: leaseMs }, { serving: true, warn: (m) => warnings.push(m) });
    const pool = openPool(databaseUrl);
    try {
      await survivor.accounts.createAccount(account("acct_a"));
      const mine = await survivor.ledger.admit(admission(10, 3));
      assert.ok(mine !== undefined);
      // Another node, in its own process: it admits two requests and is killed before completing them.
      const dying = spawn(
        process.execPath,
        [
          "--input-type=module",
          "-e",
          `import { createStore } from ${JSON.stringify(CREATE_STORE)};
           const stores = await createStore({ dataDir: "/nonexistent", databaseUrl: ${JSON.stringify(databaseUrl)}, nodeLeaseMs: ${leaseMs} }, { serving: true });
           for (const i of [1, 2]) await stores.ledger.admit(${JSON.stringify(admission(10, 0))});
           process.stdout.write("admitted\\n");
           setInterval(() => undefined, 1000);`,
        ],
        { stdio: ["ignore", "pipe", "inherit"] },
      );
      await new Promise<void>((resolve, reject) => {
        dying.stdout!.on("data", (chunk: Buffer) => chunk.toString().includes("admitted") && resolve());
        dying.once("exit", () => reject(new Error("the node exited before admitting")));
      });
      dying.kill("SIGKILL");
      assert.equal((await survivor.ledger.periodUsage("acct_a", "live", PERIOD)).requests, 3, "until the lease runs out, its rows count");
      let usage = 3;
      for (let i = 0; i < 80 && usage !== 1; i++) {
        await new Promise((r) => setTimeout(r, 250));
        usage = (await survivor.ledger.periodUsage("acct_a", "live", PERIOD)).requests;
      }
      assert.equal(usage, 1, "the dead node's two unfinished rows were given back");
      const statuses = await pool.query<{ status: number | null; n: number }>(
        "SELECT status, COUNT(*)::int AS n FROM usage_events GROUP BY status ORDER BY status NULLS LAST",
      );
      assert.deepEqual(
        statuses.rows,
        [
          { status: 0, n: 2 },
          { status: null, n: 1 },
        ],
        "settled as not delivered; the survivor's own unfinished row untouched",
      );
      // The operator's log says so, once, with the count.
      assert.equal(warnings.length, 1, JSON.stringify(warnings));
      assert.match(warnings[0]!, /^gave back 2 requests a stopped node admitted and never finished .*settled as not delivered/);
      await survivor.ledger.complete(completion(mine, { promptTokens: 2, completionTokens: 1 }));
      assert.deepEqual(await survivor.ledger.periodUsage("acct_a", "live", PERIOD), { requests: 1, tokens: 3, bySpecialist: { classify: 1 } });
    } finally {
      await pool.end();
      await survivor.close();
    }
  });
});

describe("PostgreSQL: a node that missed its lease", () => {
  it("counts a request its node completes after a survivor settled it: once, with its tokens, alone or batched", async () => {
    const databaseUrl = await freshDatabase();
    const survivor = await createStore({ dataDir: tempDir(), databaseUrl, nodeLeaseMs: 600 }, { serving: true });
    const pool = openPool(databaseUrl);
    try {
      await survivor.accounts.createAccount(account("acct_a"));
      // The late node: its lease is gone (never renewed here), as for a node stopped longer than its lease.
      const late = new PgLedger(pool, () => "node_stopped");
      const eventIds: number[] = [];
      for (let i = 0; i < 3; i++) {
        const eventId = await late.admit(admission(10, i + 1));
        assert.ok(eventId !== undefined);
        eventIds.push(eventId);
      }
      let usage = await survivor.ledger.periodUsage("acct_a", "live", PERIOD);
      const deadline = Date.now() + 20_000;
      while (usage.requests !== 0) {
        assert.ok(Date.now() < deadline, "the survivor never settled the late node's rows");
        await new Promise((r) => setTimeout(r, 100));
        usage = await survivor.ledger.periodUsage("acct_a", "live", PERIOD);
      }
      const served = (eventId: number) => completion(eventId, { promptTokens: 4, completionTokens: 3, latencyMs: 5 });
      // Two completions in one event-loop turn go out as one batched statement; the third alone.
      await Promise.all(eventIds.slice(0, 2).map((id) => late.complete(served(id))));
      assert.deepEqual(await survivor.ledger.periodUsage("acct_a", "live", PERIOD), { requests: 2, tokens: 14, bySpecialist: { classify: 2 } });
      await late.complete(served(eventIds[2]!));
      const counted = { requests: 3, tokens: 21, bySpecialist: { classify: 3 } };
      assert.deepEqual(await survivor.ledger.periodUsage("acct_a", "live", PERIOD), counted, "the served requests are in the ledger");
      assert.deepEqual(await survivor.ledger.dailyRequests("acct_a", "live", PERIOD), { "2026-03-10": 3 });
      await Promise.all(eventIds.map((id) => late.complete(served(id))));
      await late.complete(served(eventIds[0]!));
      await new Promise((r) => setTimeout(r, 700)); // a few more settling rounds
      assert.deepEqual(await survivor.ledger.periodUsage("acct_a", "live", PERIOD), counted, "counted exactly once");
      const rows = await pool.query("SELECT status, settled_by FROM usage_events WHERE id = ANY($1) ORDER BY id", [eventIds]);
      assert.deepEqual(
        rows.rows,
        eventIds.map(() => ({ status: 200, settled_by: null })),
      );
    } finally {
      await pool.end();
      await survivor.close();
    }
  });
});

describe("PostgreSQL: a completion while the database is unreachable", () => {
  it("is kept and written once the database answers again, not left open to be settled as not delivered; a success is refused and written as that refusal", async () => {
    const databaseUrl = await freshDatabase();
    const proxy = await startTcpProxy(Number(new URL(databaseUrl).port || 5432), new URL(databaseUrl).hostname);
    const viaProxy = new URL(databaseUrl);
    viaProxy.host = `127.0.0.1:${proxy.port}`;
    const node = await createStore({ dataDir: tempDir(), databaseUrl: viaProxy.toString(), nodeLeaseMs: 60_000 }, { serving: true });
    const direct = await createStore({ dataDir: tempDir(), databaseUrl });
    try {
      await direct.accounts.createAccount(account("acct_a"));
      const failed = await node.ledger.admit(admission(10, 1));
      const served = await node.ledger.admit(admission(10, 2));
      assert.ok(failed !== undefined && served !== undefined);
      proxy.cut();
      // A failure its client sees anyway (an upstream's 502, with the tokens it took) is kept for later.
      await node.ledger.complete(completion(failed, { status: 502, promptTokens: 2, completionTokens: 3 }));
      // A success cannot be answered as one: refused, and kept as that refusal.
      await assert.rejects(node.ledger.complete(completion(served, { promptTokens: 4, completionTokens: 4 })), UnrecordedOutcomeError);
      const open = await direct.ledger.periodUsage("acct_a", "live", PERIOD);
      assert.deepEqual([open.requests, open.tokens], [2, 0], "nothing written while cut off");
      proxy.restore();
      let usage = open;
      const deadline = Date.now() + 30_000;
      while (usage.requests !== 0) {
        assert.ok(Date.now() < deadline, "the kept completions were never written");
        await new Promise((r) => setTimeout(r, 100));
        usage = await direct.ledger.periodUsage("acct_a", "live", PERIOD);
      }
      // Both are written, neither counts (a 502 and a 503 are given back), and neither row is left open.
      assert.deepEqual([usage.requests, usage.tokens], [0, 0]);
      const pool = new pg.Pool({ connectionString: databaseUrl });
      const rows = (await pool.query("SELECT id, status FROM usage_events ORDER BY id")).rows as Array<{ id: number; status: number | null }>;
      await pool.end();
      assert.deepEqual(
        rows.map((r) => r.status),
        [502, 503],
      );
    } finally {
      await node.close();
      await direct.close();
      await proxy.close();
    }
  });
});

describe("PostgreSQL: a server on it", () => {
  it("serves a real inference through the gate and reads it back from /v1/usage", async () => {
    const databaseUrl = await freshDatabase();
    const server = await startTestServer(
      {},
      { gated: true, env: { ALVEARE_DATABASE_URL: databaseUrl, ALVEARE_REDIS_URL: TEST_REDIS_URL, ALVEARE_REDIS_PREFIX: REDIS_PREFIX } },
    );
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
      // A second node whose config file gives solo another minute limit: refused at start, one line, exit 2 (a wrong config).
      const dir = tempDir();
      const config = join(dir, "config.json");
      writeFileSync(config, JSON.stringify({ models: { base: await tinyModel() }, plans: { solo: { requests_per_minute: 21 } } }));
      const env: NodeJS.ProcessEnv = {
        ...process.env,
        ALVEARE_DATABASE_URL: databaseUrl,
        ALVEARE_REDIS_URL: TEST_REDIS_URL,
        ALVEARE_REDIS_PREFIX: REDIS_PREFIX,
        ALVEARE_METRICS_PORT: "0",
      };
      delete env.ALVEARE_MODEL;
      const other = spawnSync(process.execPath, [CLI, "serve", "--port", "0", "--config", config, "--data-dir", dir], {
        env,
        encoding: "utf8",
        timeout: 60_000,
      });
      assert.equal(other.status, 2, other.stderr);
      assert.deepEqual(other.stderr.trim().split("\n").length, 1, other.stderr);
      assert.match(other.stderr, /plan table .* differs .* same config file/);
      assert.match(other.stderr, /\(plan 'solo': requests_per_minute 21 here, 20 in theirs\)/);
      const bad = await postJson(`${server.url}/v1/infer`, { specialist: "classify", prompt: "x" }, { authorization: "Bearer alv_live_nope" });
      assert.equal(bad.status, 401);
    } finally {
      await server.close();
    }
  });
});
