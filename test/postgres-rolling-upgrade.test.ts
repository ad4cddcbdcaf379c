import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { migratePostgres, PG_MIGRATIONS } from "../src/store/postgres/migrations.js";
import { openPool } from "../src/store/postgres/pg-pool.js";
import { FakeUpstream } from "./helpers/fake-upstream.js";
import { createKey, postJson, startTestServer, type TestServer } from "./helpers/fixtures.js";
import { dropDatabase, freshDatabase } from "./helpers/postgres.js";
import { deletePrefix, SHARED_REDIS_URL, testPrefix } from "./helpers/redis.js";

const ADMIN_TOKEN = "u".repeat(40);

/**
 * What the next release might add, as every migration within a release must
 * be: nullable columns on tables this release reads and writes, and a table
 * it does not know.
 */
const NEXT_RELEASE_MIGRATION = `
  ALTER TABLE accounts ADD COLUMN billing_email TEXT;
  ALTER TABLE usage_events ADD COLUMN region TEXT;
  CREATE TABLE account_notes (account_id TEXT NOT NULL REFERENCES accounts(id), note TEXT NOT NULL);
`;

const config = (base: string) => ({
  specialists: { echo: { description: "answers at once", system_prompt: "", remote: { base_url: base, model: "m" } } },
  plans: { roomy: { requests_per_minute: 100_000, requests_per_month: 1_000_000, specialists: "*" } },
});

describe("a node of the previous release while a newer one migrates", () => {
  const fake = new FakeUpstream();
  const prefix = testPrefix("upgrade");
  let database: string;
  let env: Record<string, string>;
  let oldNode: TestServer;
  let upstream: string;

  before(async () => {
    database = await freshDatabase();
    env = { ALVEARE_DATABASE_URL: database, ALVEARE_REDIS_URL: SHARED_REDIS_URL, ALVEARE_REDIS_PREFIX: prefix, ALVEARE_ADMIN_TOKEN: ADMIN_TOKEN };
    upstream = await fake.start();
    oldNode = await startTestServer(config(upstream), { gated: true, env });
  });
  after(async () => {
    await oldNode.close();
    await fake.stop();
    await deletePrefix(prefix);
    await dropDatabase(database);
  });

  it("keeps serving, without one error, during and after the newer release's additive migration, and starts again on the newer schema", async () => {
    const { auth, accountId } = await createKey(oldNode, "roomy");
    const admin = { authorization: `Bearer ${ADMIN_TOKEN}` };
    const failures: string[] = [];
    let served = 0;
    let stop = false;
    // Traffic of every kind the old node does: admissions and ledger writes, ledger reads, account reads.
    const traffic = async (node: TestServer): Promise<void> => {
      while (!stop) {
        const answers = await Promise.all([
          postJson(`${node.url}/v1/infer`, { specialist: "echo", prompt: "hi", max_tokens: 4 }, auth).then((r) => [r.status, r.json] as const),
          fetch(`${node.url}/v1/usage`, { headers: auth }).then(async (r) => [r.status, await r.json()] as const),
          fetch(`${node.url}/admin/api/accounts`, { headers: admin }).then(async (r) => [r.status, await r.json()] as const),
        ]);
        for (const [status, body] of answers) if (status !== 200) failures.push(`${status} ${JSON.stringify(body)}`);
        served++;
      }
    };
    const running = traffic(oldNode);
    while (served < 5) await new Promise((r) => setTimeout(r, 20));

    // The newer release, from its own pool: migrates to its version, then writes rows that use the new columns.
    const newer = openPool(database, { max: 2 });
    try {
      assert.deepEqual(await migratePostgres(newer, [...PG_MIGRATIONS, NEXT_RELEASE_MIGRATION]), [PG_MIGRATIONS.length + 1]);
      await newer.query("UPDATE accounts SET billing_email = 'billing@example.com' WHERE id = $1", [accountId]);
      await newer.query("INSERT INTO account_notes (account_id, note) VALUES ($1, 'migrated')", [accountId]);
      const before = served;
      while (served < before + 5) await new Promise((r) => setTimeout(r, 20));
    } finally {
      stop = true;
      await running;
      await newer.end();
    }
    assert.deepEqual(failures, [], "the old node answered everything during and after the migration");

    const usage = (await (await fetch(`${oldNode.url}/v1/usage`, { headers: auth })).json()) as { requests_used: number };
    assert.equal(usage.requests_used, served, "every admission the old node made is in the ledger");

    // The previous release starting again (a restart, a new node of it) accepts the newer schema's version.
    const restarted = await startTestServer(config(upstream), { gated: true, env });
    try {
      stop = false;
      served = 0;
      const again = traffic(restarted);
      while (served < 3) await new Promise((r) => setTimeout(r, 20));
      stop = true;
      await again;
      assert.deepEqual(failures, []);
    } finally {
      await restarted.close();
    }
  });
});
