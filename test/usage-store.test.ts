import { CLI_CONTEXT } from "../src/store/audit-log.js";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, statSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { dirname, join } from "node:path";
import { describe, it } from "node:test";
import Database from "better-sqlite3";
import { ApiError } from "../src/errors.js";
import { AccountError, AccountService } from "../src/accounts/accounts.js";
import { DEFAULT_PLANS, parsePlans } from "../src/gate/plans.js";
import { billingPeriod, parsePeriod } from "../src/metering/billing-period.js";
import { CLIENT_CLOSED, countsAgainstQuota, NOT_DELIVERED } from "../src/metering/counting-rule.js";
import { MIGRATIONS } from "../src/store/sqlite/migrations.js";
import { createStore, type StoreOptions } from "../src/store/create-store.js";
import { USAGE_QUERIES } from "../src/store/sqlite/usage-queries.js";
import type { Mode, Stores } from "../src/store/store.js";
import { tempDir } from "./helpers/fixtures.js";

const PERIOD = "2026-03";

/** The stores on the SQLite file at `path` (always `alveare.db` in its data dir). */
const open = (path: string, options?: StoreOptions): Promise<Stores> => createStore({ dataDir: dirname(path) }, options);

/** What every report must say, recomputed from the ledger by the counting rule (unfinished rows count until settled). */
function fromLedger(path: string, accountId: string, mode: Mode, period: string) {
  const db = new Database(path, { readonly: true });
  const rows = db
    .prepare(
      "SELECT specialist, status, prompt_tokens + completion_tokens AS tokens, substr(created_at, 1, 10) AS day FROM usage_events WHERE account_id = ? AND mode = ? AND period = ?",
    )
    .all(accountId, mode, period) as Array<{ specialist: string; status: number | null; tokens: number; day: string }>;
  db.close();
  const counted = rows.filter((r) => r.status === null || countsAgainstQuota(r.status));
  const tally = (key: (r: (typeof rows)[number]) => string): Record<string, number> => {
    const out: Record<string, number> = {};
    for (const r of counted) out[key(r)] = (out[key(r)] ?? 0) + 1;
    return out;
  };
  return {
    requests: counted.length,
    tokens: counted.reduce((sum, r) => sum + r.tokens, 0),
    bySpecialist: tally((r) => r.specialist),
    daily: tally((r) => r.day),
  };
}

async function assertAgreesWithLedger(store: Stores, path: string, accountId: string, mode: Mode, period = PERIOD): Promise<void> {
  const expected = fromLedger(path, accountId, mode, period);
  const usage = await store.ledger.periodUsage(accountId, mode, period);
  assert.deepEqual(
    { ...usage, bySpecialist: { ...usage.bySpecialist } },
    { requests: expected.requests, tokens: expected.tokens, bySpecialist: expected.bySpecialist },
  );
  assert.deepEqual({ ...(await store.ledger.dailyRequests(accountId, mode, period)) }, expected.daily);
}

/** Requests over three days and three specialists with every kind of outcome; one left unfinished. */
const MIXED: Array<{ day: string; specialist: string; status: number | null; tokens: number }> = [
  { day: "01", specialist: "classify", status: 200, tokens: 7 },
  { day: "01", specialist: "classify", status: 200, tokens: 5 },
  { day: "01", specialist: "qa", status: 400, tokens: 0 },
  { day: "02", specialist: "qa", status: CLIENT_CLOSED, tokens: 3 },
  { day: "02", specialist: "chat", status: 500, tokens: 2 },
  { day: "02", specialist: "chat", status: 502, tokens: 0 },
  { day: "03", specialist: "chat", status: 429, tokens: 0 },
  { day: "03", specialist: "summarise", status: 504, tokens: 0 },
  { day: "03", specialist: "classify", status: null, tokens: 0 },
];

async function seed(store: Stores, accountId: string, mode: Mode = "live"): Promise<void> {
  await store.accounts.createAccount({ id: accountId, name: accountId, plan: "scale", status: "active", createdAt: "2026-01-01T00:00:00Z" });
  for (const [i, r] of MIXED.entries()) {
    const at = `${PERIOD}-${r.day}T12:00:00.000Z`;
    const eventId = await store.ledger.admit({
      requestId: `req_${i}`,
      accountId,
      keyId: "key_x",
      mode,
      period: PERIOD,
      endpoint: "infer",
      specialist: r.specialist,
      limit: 1000,
      at,
    });
    assert.ok(eventId !== undefined);
    if (r.status !== null) {
      await store.ledger.complete({
        eventId,
        accountId,
        mode,
        period: PERIOD,
        status: r.status,
        promptTokens: r.tokens,
        completionTokens: 0,
        latencyMs: 1,
        at,
      });
    }
  }
}

describe("usage aggregates", () => {
  it("answers every usage report from aggregate rows, never by scanning the ledger", async () => {
    const path = join(tempDir(), "alveare.db");
    await (await open(path)).close();
    const db = new Database(path, { readonly: true });
    for (const [name, sql] of Object.entries(USAGE_QUERIES)) {
      const plan = db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all("acct", "live", PERIOD) as Array<{ detail: string }>;
      const details = plan.map((p) => p.detail);
      assert.ok(details.length > 0, name);
      for (const detail of details) {
        assert.doesNotMatch(detail, /usage_events/, `${name}: ${details.join(" | ")}`);
        assert.doesNotMatch(detail, /^SCAN/, `${name}: ${details.join(" | ")}`);
      }
      assert.ok(
        details.some((d) =>
          /^SEARCH usage_(daily|counters) USING (PRIMARY KEY|INDEX sqlite_autoindex_usage_counters_1) \(account_id=\? AND mode=\? AND period=\?\)/.test(
            d,
          ),
        ),
        `${name}: ${details.join(" | ")}`,
      );
    }
    db.close();
  });

  it("agrees with the ledger for a mix of outcomes, per specialist and per day", async () => {
    const path = join(tempDir(), "alveare.db");
    const store = await open(path);
    await seed(store, "acct_a");
    await seed(store, "acct_b", "test");
    await assertAgreesWithLedger(store, path, "acct_a", "live");
    await assertAgreesWithLedger(store, path, "acct_b", "test");
    const usage = await store.ledger.periodUsage("acct_a", "live", PERIOD);
    // Served and client-gone count; 4xx/5xx after admission are given back; the unfinished one counts until settled.
    assert.deepEqual({ ...usage.bySpecialist }, { classify: 3, qa: 1 });
    assert.equal(usage.requests, 4);
    assert.equal(usage.tokens, 15);
    assert.deepEqual({ ...(await store.ledger.dailyRequests("acct_a", "live", PERIOD)) }, { "2026-03-01": 2, "2026-03-02": 1, "2026-03-03": 1 });
    assert.deepEqual(await store.ledger.periodUsage("acct_a", "test", PERIOD), { requests: 0, tokens: 0, bySpecialist: {} });
    await store.close();
  });

  it("sums the aggregate moves of requests admitted and completed in one commit", async () => {
    const path = join(tempDir(), "alveare.db");
    const store = await open(path);
    await store.accounts.createAccount({ id: "acct_c", name: "acct_c", plan: "scale", status: "active", createdAt: "2026-01-01T00:00:00Z" });
    const record = (r: (typeof MIXED)[number], i: number) => ({
      requestId: `req_${i}`,
      accountId: "acct_c",
      keyId: "key_x",
      mode: "live" as const,
      period: PERIOD,
      endpoint: "infer",
      specialist: r.specialist,
      limit: 1000,
      at: `${PERIOD}-${r.day}T12:00:00.000Z`,
    });
    // Not awaited one by one: every admission joins the same group commit, then every completion the next.
    const ids = await Promise.all(MIXED.map((r, i) => store.ledger.admit(record(r, i))));
    await Promise.all(
      MIXED.map((r, i) =>
        r.status === null
          ? undefined
          : store.ledger.complete({
              eventId: ids[i]!,
              accountId: "acct_c",
              mode: "live",
              period: PERIOD,
              status: r.status,
              promptTokens: r.tokens,
              completionTokens: 0,
              latencyMs: 1,
              at: record(r, i).at,
            }),
      ),
    );
    await assertAgreesWithLedger(store, path, "acct_c", "live");
    assert.deepEqual(await store.ledger.periodUsage("acct_c", "live", PERIOD), { requests: 4, tokens: 15, bySpecialist: { classify: 3, qa: 1 } });
    await store.close();
  });

  it("keeps nothing of a commit that failed: the next one counts only its own requests", async () => {
    const path = join(tempDir(), "alveare.db");
    const store = await open(path);
    await store.accounts.createAccount({ id: "acct_d", name: "acct_d", plan: "scale", status: "active", createdAt: "2026-01-01T00:00:00Z" });
    const admit = (accountId: string, requestId: string) =>
      store.ledger.admit({
        requestId,
        accountId,
        keyId: "key_x",
        mode: "live",
        period: PERIOD,
        endpoint: "infer",
        specialist: "qa",
        limit: 1000,
        at: `${PERIOD}-05T12:00:00.000Z`,
      });
    // An account that does not exist fails the commit (foreign key): every write in it is rolled back.
    const failed = await Promise.allSettled([admit("acct_missing", "req_1"), admit("acct_d", "req_2")]);
    assert.deepEqual(
      failed.map((f) => f.status),
      ["rejected", "rejected"],
    );
    assert.ok((await admit("acct_d", "req_3")) !== undefined, "the next commit succeeds");
    const db = new Database(path, { readonly: true });
    const node = db.prepare("SELECT n.id FROM usage_events e LEFT JOIN nodes n ON n.id = e.node_id WHERE e.request_id = 'req_3'").get() as {
      id: string | null;
    };
    db.close();
    assert.notEqual(node.id, null, "the node the failed commit registered is registered by the next");
    await assertAgreesWithLedger(store, path, "acct_d", "live");
    assert.equal((await store.ledger.dailyRequests("acct_d", "live", PERIOD))["2026-03-05"], 1);
    await store.close();
  });

  it("backfills the aggregates of a database written before them", async () => {
    const path = join(tempDir(), "alveare.db");
    const old = new Database(path);
    for (const migration of MIGRATIONS.slice(0, 2)) old.exec(migration as string);
    old.pragma("user_version = 2");
    old.prepare("INSERT INTO accounts (id, name, plan, created_at) VALUES ('acct_old', 'old', 'scale', '2026-01-01')").run();
    const insert = old.prepare(
      "INSERT INTO usage_events (request_id, account_id, key_id, mode, period, endpoint, specialist, prompt_tokens, status, created_at) VALUES (?, 'acct_old', 'key_x', 'live', ?, 'infer', ?, ?, ?, ?)",
    );
    for (const [i, r] of MIXED.entries()) insert.run(`req_${i}`, PERIOD, r.specialist, r.tokens, r.status, `${PERIOD}-${r.day}T12:00:00.000Z`);
    insert.run("req_other_month", "2026-02", "classify", 9, 200, "2026-02-28T23:59:59.000Z");
    const counted = MIXED.filter((r) => r.status === null || countsAgainstQuota(r.status));
    old.prepare("INSERT INTO usage_counters (account_id, mode, period, requests, tokens) VALUES ('acct_old', 'live', ?, ?, ?)").run(
      PERIOD,
      counted.length,
      counted.reduce((s, r) => s + r.tokens, 0),
    );
    old.prepare("INSERT INTO usage_counters (account_id, mode, period, requests, tokens) VALUES ('acct_old', 'live', '2026-02', 1, 9)").run();
    old.close();

    const store = await open(path);
    await assertAgreesWithLedger(store, path, "acct_old", "live");
    await assertAgreesWithLedger(store, path, "acct_old", "live", "2026-02");
    assert.deepEqual({ ...(await store.ledger.dailyRequests("acct_old", "live", "2026-02")) }, { "2026-02-28": 1 });
    await store.close();
  });
});

describe("unfinished requests of a dead process", () => {
  const unfinished = (path: string): number => {
    const db = new Database(path, { readonly: true });
    const n = db.prepare("SELECT COUNT(*) FROM usage_events WHERE status IS NULL").pluck().get() as number;
    db.close();
    return n;
  };

  it("are settled as not delivered by the next server on the data dir, and given back", async () => {
    const path = join(tempDir(), "alveare.db");
    const crashed = await open(path);
    await seed(crashed, "acct_a");
    await crashed.close(); // as good as dead: the unfinished row's node is gone from this process
    assert.equal(unfinished(path), 1);

    const cli = await open(path);
    assert.equal(unfinished(path), 1, "a CLI command never settles");
    await cli.close();

    const warnings: string[] = [];
    const server = await open(path, { serving: true, warn: (m) => warnings.push(m) });
    assert.equal(unfinished(path), 0);
    assert.deepEqual(warnings, [
      "gave back 1 request a stopped node admitted and never finished (killed or cut off): settled as not delivered (status 0) and returned to their accounts' monthly quotas, with no tokens billed",
    ]);
    await assertAgreesWithLedger(server, path, "acct_a", "live");
    const usage = await server.ledger.periodUsage("acct_a", "live", PERIOD);
    assert.equal(usage.requests, 3);
    assert.deepEqual({ ...usage.bySpecialist }, { classify: 2, qa: 1 });
    const db = new Database(path, { readonly: true });
    assert.equal(db.prepare("SELECT status FROM usage_events WHERE request_id = 'req_8'").pluck().get(), NOT_DELIVERED);
    db.close();
    await server.close();
  });

  it("are left alone while the process that admitted them is alive", async () => {
    const path = join(tempDir(), "alveare.db");
    const running = await open(path, { serving: true });
    await seed(running, "acct_a");
    const second = await open(path, { serving: true });
    assert.equal(unfinished(path), 1);
    await second.close();
    await running.close();
  });

  it("are settled when their process on this host has exited", async () => {
    const path = join(tempDir(), "alveare.db");
    const store = await open(path);
    await seed(store, "acct_a");
    await store.close();
    const exited = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], { encoding: "utf8" });
    const db = new Database(path);
    db.prepare("INSERT INTO nodes (id, host, pid, process_start, started_at) VALUES ('node_gone', ?, ?, NULL, '2026-03-01')").run(
      hostname(),
      Number(exited.stdout),
    );
    db.prepare("UPDATE usage_events SET node_id = 'node_gone' WHERE status IS NULL").run();
    db.close();
    const server = await open(path, { serving: true });
    assert.equal(unfinished(path), 0);
    assert.equal((await server.ledger.periodUsage("acct_a", "live", PERIOD)).requests, 3);
    await server.close();
  });
});

describe("database file modes", () => {
  const mode = (p: string): number => statSync(p).mode & 0o777;

  it("creates the data dir 0700 and the database and its WAL files 0600 under a permissive umask", async () => {
    const previous = process.umask(0);
    try {
      const dir = join(tempDir(), "data");
      const path = join(dir, "alveare.db");
      const store = await open(path, { serving: true });
      await seed(store, "acct_a");
      assert.equal(mode(dir), 0o700);
      for (const file of [path, `${path}-wal`, `${path}-shm`]) assert.equal(mode(file), 0o600, file);
      await store.close();
    } finally {
      process.umask(previous);
    }
  });

  it("tightens a data dir and database that are already world-readable", async () => {
    const dir = join(tempDir(), "data");
    mkdirSync(dir);
    chmodSync(dir, 0o755);
    const path = join(dir, "alveare.db");
    await (await open(path)).close();
    chmodSync(path, 0o644);
    writeFileSync(`${path}-wal`, "");
    chmodSync(`${path}-wal`, 0o666);
    const store = await open(path);
    assert.equal(mode(dir), 0o700);
    assert.equal(mode(path), 0o600);
    assert.equal(mode(`${path}-wal`), 0o600);
    await store.close();
  });
});

describe("account service rules", () => {
  const service = async (plans = parsePlans({ capped: { requests_per_minute: 10, requests_per_month: 100, specialists: "*", max_keys: 2 } })) => {
    const store = await open(join(tempDir(), "alveare.db"));
    return { store, accounts: new AccountService(store, plans) };
  };
  const refusal =
    (code: string, status: number, param: string | null = null) =>
    (error: unknown): boolean => {
      assert.ok(error instanceof AccountError && error instanceof ApiError);
      assert.equal(error.code, code);
      assert.equal(error.status, status);
      assert.equal(error.param, param);
      return true;
    };

  it("caps unrevoked keys per account and mode at the plan's max_keys", async () => {
    const { store, accounts } = await service();
    const account = await accounts.createAccount(CLI_CONTEXT, "a", "capped");
    const first = await accounts.createKey(CLI_CONTEXT, account.id, "live");
    await accounts.createKey(CLI_CONTEXT, account.id, "live");
    await assert.rejects(accounts.createKey(CLI_CONTEXT, account.id, "live"), refusal("key_limit_reached", 403));
    await accounts.createKey(CLI_CONTEXT, account.id, "test"); // the other mode has its own cap
    await accounts.revokeKey(CLI_CONTEXT, first.record.id);
    await accounts.createKey(CLI_CONTEXT, account.id, "live");
    await assert.rejects(accounts.createKey(CLI_CONTEXT, account.id, "live"), refusal("key_limit_reached", 403));
    await store.close();
  });

  it("reads max_keys from the config's plans and refuses a nonsensical one", () => {
    assert.equal(parsePlans({ solo: { max_keys: 3 } }).solo!.maxKeys, 3);
    assert.equal(parsePlans({ solo: { requests_per_minute: 5 } }).solo!.maxKeys, 25);
    for (const bad of [0, -1, 2.5, "3"]) assert.throws(() => parsePlans({ solo: { max_keys: bad } }), /plans\.solo\.max_keys/);
  });

  it("defaults the cap to 25 keys", async () => {
    const { store, accounts } = await service();
    assert.equal(DEFAULT_PLANS.solo!.maxKeys, 25);
    const account = await accounts.createAccount(CLI_CONTEXT, "a", "solo");
    for (let i = 0; i < 25; i++) await accounts.createKey(CLI_CONTEXT, account.id, "test");
    await assert.rejects(accounts.createKey(CLI_CONTEXT, account.id, "test"), refusal("key_limit_reached", 403));
    await store.close();
  });

  it("refuses new keys while the account is suspended", async () => {
    const { store, accounts } = await service();
    const account = await accounts.createAccount(CLI_CONTEXT, "a", "capped");
    await accounts.setStatus(CLI_CONTEXT, account.id, "suspended");
    await assert.rejects(accounts.createKey(CLI_CONTEXT, account.id, "live"), refusal("account_suspended", 403));
    await accounts.setStatus(CLI_CONTEXT, account.id, "active");
    await accounts.createKey(CLI_CONTEXT, account.id, "live");
    await assert.rejects(accounts.createKey(CLI_CONTEXT, "acct_nope", "live"), refusal("not_found", 404));
    await store.close();
  });

  it("accepts only plans that are defined, never a name the prototype knows", async () => {
    const { store, accounts } = await service();
    const account = await accounts.createAccount(CLI_CONTEXT, "a", "solo");
    for (const name of ["constructor", "__proto__", "hasOwnProperty", "toString", "valueOf", "nope"]) {
      await assert.rejects(accounts.createAccount(CLI_CONTEXT, "b", name), refusal("invalid_parameter", 400, "plan"), name);
      await assert.rejects(accounts.changePlan(CLI_CONTEXT, account.id, name), refusal("invalid_parameter", 400, "plan"), name);
    }
    assert.equal((await accounts.getAccount(account.id)).plan, "solo");
    await store.close();
  });
});

describe("billing periods from requests", () => {
  it("accepts 1970-01 to 9999-12 and nothing else", () => {
    assert.equal(parsePeriod("2026-02")?.start.toISOString(), "2026-02-01T00:00:00.000Z");
    assert.equal(parsePeriod("2026-12")?.next.toISOString(), "2027-01-01T00:00:00.000Z");
    assert.equal(parsePeriod("1970-01")?.key, "1970-01");
    for (const bad of ["0000-01", "0099-05", "1969-12", "2026-00", "2026-13", "2026-1", "26-01", "2026-01-01", ""])
      assert.equal(parsePeriod(bad), undefined, bad);
    assert.equal(billingPeriod(new Date("2026-03-31T23:59:59Z")).key, "2026-03");
  });
});
