import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import Database from "better-sqlite3";
import { createStore } from "../src/store/create-store.js";
import { migratePostgres, PG_MIGRATIONS } from "../src/store/postgres/migrations.js";
import { openPool } from "../src/store/postgres/pg-pool.js";
import { MIGRATIONS } from "../src/store/sqlite/migrations.js";
import type { Stores } from "../src/store/store.js";
import { tempDir } from "./helpers/fixtures.js";
import { dropAllDatabases, freshDatabase } from "./helpers/postgres.js";
import { until } from "./helpers/until.js";

/** The schema version before keys recorded who created them. */
const BEFORE = 6;

/**
 * Rows as the previous release left them: keys made in the dashboard, by the operator and by the CLI,
 * and the audit records that say who made which. Plain SQL that both backends run.
 */
const OLD_ROWS = [
  "INSERT INTO accounts (id, name, plan, status, created_at) VALUES ('acct_a', 'a', 'solo', 'active', '2026-01-01T00:00:00.000Z')",
  "INSERT INTO accounts (id, name, plan, status, created_at) VALUES ('acct_b', 'b', 'solo', 'active', '2026-01-01T00:00:00.000Z')",
  "INSERT INTO members (id, account_id, email, password_hash, created_at) VALUES ('m_dana', 'acct_a', 'dana@example.com', NULL, '2026-01-01T00:00:00.000Z')",
  // Erin was removed and invited again after her old key was made: the new member did not make it.
  "INSERT INTO members (id, account_id, email, password_hash, created_at) VALUES ('m_erin', 'acct_a', 'erin@example.com', NULL, '2026-03-01T00:00:00.000Z')",
  "INSERT INTO members (id, account_id, email, password_hash, created_at) VALUES ('m_fred', 'acct_b', 'fred@example.com', NULL, '2026-01-01T00:00:00.000Z')",
  ...[
    ["k_dana", "member:dana@example.com", null],
    ["k_dana_revoked", "member:dana@example.com", "2026-02-15T00:00:00.000Z"],
    ["k_erin_before", "member:erin@example.com", null],
    ["k_operator", "operator", null],
    ["k_cli", null, null],
    ["k_fred_elsewhere", "member:fred@example.com", null],
  ].flatMap(([id, actor, revokedAt]) => [
    `INSERT INTO api_keys (id, account_id, name, mode, hash, prefix, created_at, revoked_at)
     VALUES ('${id}', 'acct_a', NULL, 'live', 'hash_${id}', 'alv_live_x', '2026-02-01T00:00:00.000Z', ${revokedAt === null ? "NULL" : `'${revokedAt}'`})`,
    ...(actor === null
      ? []
      : [
          `INSERT INTO audit_log (at, actor, action, account_id, target, detail, source, request_id)
           VALUES ('2026-02-01T00:00:00.000Z', '${actor}', 'key.created', 'acct_a', 'key:${id}', '{"mode":"live"}', NULL, NULL)`,
        ]),
  ]),
];

async function checkBackfill(stores: Stores): Promise<void> {
  const creators = Object.fromEntries((await stores.accounts.listKeys("acct_a")).map((k) => [k.id, k.createdBy]));
  assert.deepEqual(creators, {
    k_dana: "m_dana",
    k_dana_revoked: null,
    k_erin_before: null,
    k_operator: null,
    k_cli: null,
    k_fred_elsewhere: null,
  });
  // And the point of it: removing Dana now revokes the key she made, and only that one.
  const revoked = await stores.people.deleteMember("m_dana", "2026-04-01T00:00:00.000Z", false);
  assert.deepEqual(
    revoked?.map((k) => k.id),
    ["k_dana"],
  );
  assert.equal((await stores.accounts.findKeyByHash("hash_k_dana"))?.key.revokedAt, "2026-04-01T00:00:00.000Z");
  assert.equal((await stores.accounts.findKeyByHash("hash_k_operator"))?.key.revokedAt, null);
}

describe("removing a member on SQLite while another process writes", () => {
  it("waits for the other writer (busy_timeout) instead of failing at once with 'database is locked'", async () => {
    const dataDir = tempDir();
    const stores = await createStore({ dataDir });
    try {
      await stores.accounts.createAccount({ id: "acct_a", name: "a", plan: "solo", status: "active", createdAt: "2026-01-01T00:00:00.000Z" });
      await stores.people.createMember({
        id: "m_a",
        accountId: "acct_a",
        email: "a@example.com",
        passwordHash: null,
        createdAt: "2026-01-01T00:00:00.000Z",
      });
      // A server's ledger, as it were: another process holds the write lock for 300 ms.
      const holder = spawn(
        process.execPath,
        [
          "--input-type=module",
          "-e",
          `import Database from "better-sqlite3";
           const db = new Database(${JSON.stringify(join(dataDir, "alveare.db"))});
           db.exec("BEGIN IMMEDIATE");
           db.exec("UPDATE accounts SET name = 'b' WHERE id = 'acct_a'");
           process.stdout.write("locked\\n");
           setTimeout(() => { const at = Date.now(); db.exec("COMMIT"); db.close(); process.stdout.write("released " + at + "\\n"); }, 300);`,
        ],
        { cwd: process.cwd(), stdio: ["ignore", "pipe", "inherit"] },
      );
      let said = "";
      holder.stdout!.on("data", (chunk: Buffer) => (said += chunk.toString()));
      await until("the other writer's lock", () => said.includes("locked"));
      assert.deepEqual(await stores.people.deleteMember("m_a", "2026-04-01T00:00:00.000Z", false), []);
      const removedAt = Date.now();
      assert.equal(await stores.people.getMember("m_a"), undefined);
      await once(holder, "exit");
      // Done after the other writer let go (one machine's clock; `at` is read before its commit): however late its
      // "locked" arrived here.
      const releasedAt = Number(/released (\d+)/.exec(said)?.[1]);
      assert.ok(removedAt >= releasedAt, `removed at ${removedAt}, released at ${releasedAt}: it waited for the other writer`);
    } finally {
      await stores.close();
    }
  });
});

describe("keys made before their creator was recorded", () => {
  after(async () => {
    await dropAllDatabases();
  });

  it("SQLite: the upgrade names the member who made each unrevoked key, from the audit log", async () => {
    const dataDir = tempDir();
    const old = new Database(join(dataDir, "alveare.db"));
    for (const migration of MIGRATIONS.slice(0, BEFORE)) {
      if (typeof migration === "string") old.exec(migration);
      else migration(old);
    }
    old.pragma(`user_version = ${BEFORE}`);
    for (const sql of OLD_ROWS) old.exec(sql);
    old.close();
    const stores = await createStore({ dataDir });
    try {
      await checkBackfill(stores);
    } finally {
      await stores.close();
    }
  });

  it("PostgreSQL: the same upgrade, the same answer", async () => {
    const databaseUrl = await freshDatabase();
    const pool = openPool(databaseUrl);
    try {
      await migratePostgres(pool, PG_MIGRATIONS.slice(0, BEFORE));
      for (const sql of OLD_ROWS) await pool.query(sql);
    } finally {
      await pool.end();
    }
    const stores = await createStore({ dataDir: tempDir(), databaseUrl });
    try {
      await checkBackfill(stores);
    } finally {
      await stores.close();
    }
  });
});
