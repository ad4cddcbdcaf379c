import assert from "node:assert/strict";
import Database from "better-sqlite3";
import { spawnSync } from "node:child_process";
import { readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { createStore } from "../src/store/create-store.js";
import { cliJson, postJson, startTestServer, tempDir } from "./helpers/fixtures.js";
import { dropAllDatabases, freshDatabase, TEST_REDIS_URL } from "./helpers/postgres.js";
import { deletePrefix, testPrefix } from "./helpers/redis.js";

after(dropAllDatabases);

/** This file's nodes and CLI keep their Redis keys under a prefix of their own, never the default `alveare:`. */
const REDIS_PREFIX = testPrefix("pgmigrate");
after(() => deletePrefix(REDIS_PREFIX));

const CLI = new URL("../src/cli/main.js", import.meta.url).pathname;

/** The environment of an operator's shell: the embedded mode unless `shared` names the database. */
function envFor(databaseUrl?: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ALVEARE_THREADS: "1", ALVEARE_METRICS_PORT: "0" };
  for (const name of ["ALVEARE_MODEL", "ALVEARE_CONFIG", "ALVEARE_DATABASE_URL", "ALVEARE_REDIS_URL", "ALVEARE_DATA_DIR"]) delete env[name];
  return databaseUrl === undefined
    ? env
    : { ...env, ALVEARE_DATABASE_URL: databaseUrl, ALVEARE_REDIS_URL: TEST_REDIS_URL, ALVEARE_REDIS_PREFIX: REDIS_PREFIX };
}

const run = (args: string[], env: NodeJS.ProcessEnv) => spawnSync(process.execPath, [CLI, ...args], { env, encoding: "utf8", timeout: 60_000 });

async function usageOf(url: string, key: string): Promise<Record<string, unknown>> {
  const response = await fetch(`${url}/v1/usage`, { headers: { authorization: `Bearer ${key}` } });
  assert.equal(response.status, 200);
  return (await response.json()) as Record<string, unknown>;
}

describe("alveare migrate", () => {
  it("moves a SQLite deployment to PostgreSQL: same usage, same audit log, old keys work, revoked keys stay revoked", async () => {
    const dataDir = tempDir();
    const sqlite = envFor();
    const account = cliJson(["accounts", "create", "--name", "Acme", "--plan", "professional", "--data-dir", dataDir], sqlite);
    const accountId = String(account.id);
    const key = String(cliJson(["keys", "create", "--account", accountId, "--data-dir", dataDir], sqlite).key);
    const gone = cliJson(["keys", "create", "--account", accountId, "--data-dir", dataDir], sqlite);
    cliJson(["keys", "revoke", String(gone.id), "--data-dir", dataDir], sqlite);
    cliJson(["members", "invite", "--account", accountId, "--email", "dev@example.com", "--data-dir", dataDir], sqlite);
    const solo = cliJson(["accounts", "create", "--name", "Solo", "--plan", "solo", "--data-dir", dataDir], sqlite);
    const soloKey = String(cliJson(["keys", "create", "--account", String(solo.id), "--data-dir", dataDir], sqlite).key);

    const before = await startTestServer({ data_dir: dataDir }, { gated: true });
    let usageBefore: Record<string, unknown>;
    try {
      const served = await postJson(
        `${before.url}/v1/infer`,
        { specialist: "classify", prompt: "I love it", max_tokens: 4 },
        { authorization: `Bearer ${key}` },
      );
      assert.equal(served.status, 200, JSON.stringify(served.json));
      const refused = await postJson(
        `${before.url}/v1/infer`,
        { specialist: "chat", prompt: "hi", max_tokens: 4 },
        { authorization: `Bearer ${soloKey}` },
      );
      assert.equal(refused.status, 403, "chat is outside the solo plan: a refusal, counted apart from the ledger");
      usageBefore = await usageOf(before.url, key);
      assert.equal(usageBefore.requests_used, 1);
    } finally {
      await before.close();
    }
    const cliUsageBefore = cliJson(["usage", "--account", accountId, "--data-dir", dataDir], sqlite);
    const auditBefore = cliJson(["audit", "--data-dir", dataDir], sqlite);
    const accountsBefore = cliJson(["accounts", "list", "--data-dir", dataDir], sqlite);

    const databaseUrl = await freshDatabase();
    const shared = envFor(databaseUrl);
    const copy = cliJson(["migrate", "--from", `sqlite:${dataDir}`], shared);
    const expected = { accounts: 2, api_keys: 3, members: 1, invitations: 1, usage_events: 1, usage_refusals: 1 };
    const copied = copy.copied as Record<string, number>;
    assert.deepEqual(Object.fromEntries(Object.keys(expected).map((t) => [t, copied[t]])), expected);

    const otherDir = tempDir(); // nothing of the SQLite data dir is read from here on
    assert.deepEqual(cliJson(["usage", "--account", accountId, "--data-dir", otherDir], shared), cliUsageBefore);
    assert.deepEqual(cliJson(["audit", "--data-dir", otherDir], shared), auditBefore);
    assert.deepEqual(cliJson(["accounts", "list", "--data-dir", otherDir], shared), accountsBefore);

    const after = await startTestServer(
      {},
      { gated: true, env: { ALVEARE_DATABASE_URL: databaseUrl, ALVEARE_REDIS_URL: TEST_REDIS_URL, ALVEARE_REDIS_PREFIX: REDIS_PREFIX } },
    );
    try {
      assert.deepEqual(await usageOf(after.url, key), usageBefore, "the old key authenticates and sees the same usage object");
      const revoked = await postJson(
        `${after.url}/v1/infer`,
        { specialist: "classify", prompt: "x", max_tokens: 4 },
        { authorization: `Bearer ${String(gone.key)}` },
      );
      assert.equal(revoked.status, 401);
      assert.equal((revoked.json.error as { code: string }).code, "revoked_api_key");
      const served = await postJson(
        `${after.url}/v1/infer`,
        { specialist: "classify", prompt: "again", max_tokens: 4 },
        { authorization: `Bearer ${key}` },
      );
      assert.equal(served.status, 200);
      assert.equal((await usageOf(after.url, key)).requests_used, 2, "new ledger rows continue after the copied ones");
    } finally {
      await after.close();
    }

    const again = run(["migrate", "--from", `sqlite:${dataDir}`], shared);
    assert.equal(again.status, 1, again.stderr);
    assert.match(again.stderr, /already holds accounts.*empty database/);
    assert.equal(
      again.stderr
        .trim()
        .split("\n")
        .filter((l) => !l.startsWith("copying")).length,
      1,
      again.stderr,
    );
  });

  it("moves names an older version stored with a NUL: copied with U+FFFD, each one named in the summary", async () => {
    const dataDir = tempDir();
    const sqlite = envFor();
    const account = String(cliJson(["accounts", "create", "--name", "Acme", "--plan", "solo", "--data-dir", dataDir], sqlite).id);
    const stores = await createStore({ dataDir });
    try {
      const at = new Date().toISOString();
      await stores.accounts.createAccount({ id: "acct_old", name: "a\u0000b", plan: "solo", status: "active", createdAt: at });
      const key = {
        accountId: account,
        mode: "live" as const,
        prefix: "alv_live_old",
        createdAt: at,
        lastUsedAt: null,
        revokedAt: null,
        createdBy: null,
      };
      await stores.accounts.createKey({ ...key, id: "key_old", name: "k\u0000\u001b" }, "hash-old", { unrevoked: 10 });
      await stores.people.createMember({ id: "mem_old", accountId: account, email: "dev\u0000@example.com", passwordHash: null, createdAt: at });
    } finally {
      await stores.close();
    }

    const shared = envFor(await freshDatabase());
    const copy = run(["migrate", "--from", `sqlite:${dataDir}`], shared);
    assert.equal(copy.status, 0, copy.stderr);
    const summary = copy.stdout.trim().split("\n");
    assert.match(summary[0]!, /^copied 2 accounts, 1 api_keys, 1 members/);
    assert.equal(
      summary[1],
      "replaced the NUL characters PostgreSQL text cannot hold with U+FFFD in 3 values: accounts.name of acct_old, api_keys.name of key_old, members.email of mem_old",
    );
    const accounts = cliJson(["accounts", "list", "--data-dir", tempDir()], shared) as unknown as Array<{ id: string; name: string }>;
    assert.equal(accounts.find((a) => a.id === "acct_old")?.name, "a\uFFFDb");
    const keys = cliJson(["keys", "list", "--account", account, "--data-dir", tempDir()], shared) as unknown as Array<{ name: string }>;
    assert.deepEqual(
      keys.map((k) => k.name),
      ["k\uFFFD\u001b"],
      "only the NUL is replaced",
    );

    const asJson = cliJson(["migrate", "--from", `sqlite:${dataDir}`], envFor(await freshDatabase()));
    assert.deepEqual(asJson.replaced, [
      { table: "accounts", column: "name", row: "acct_old" },
      { table: "api_keys", column: "name", row: "key_old" },
      { table: "members", column: "email", row: "mem_old" },
    ]);
  });

  it("applies the schema on SQLite and PostgreSQL, and says when there is nothing to do", async () => {
    const dataDir = tempDir();
    // No database there (a mistyped --data-dir, say): refused, and none is made.
    const nowhere = run(["migrate", "--data-dir", dataDir], envFor());
    assert.equal(nowhere.status, 1);
    assert.match(nowhere.stderr, /^alveare: no database at .*alveare\.db: if the server uses another, pass its data directory .*nothing to migrate/);
    assert.deepEqual(readdirSync(dataDir), []);
    // A database no migration has run on yet (an empty SQLite file) gets every one.
    new Database(join(dataDir, "alveare.db")).close();
    const first = cliJson(["migrate", "--data-dir", dataDir], envFor());
    assert.equal(first.backend, "sqlite");
    assert.ok((first.applied as number[]).length > 0);
    assert.deepEqual(cliJson(["migrate", "--data-dir", dataDir], envFor()).applied, []);
    const shared = envFor(await freshDatabase());
    const pgFirst = cliJson(["migrate"], shared);
    assert.equal(pgFirst.backend, "postgres");
    assert.deepEqual(
      pgFirst.applied,
      Array.from({ length: Number(pgFirst.version) }, (_, i) => i + 1),
    );
    const plain = run(["migrate"], shared);
    assert.equal(plain.status, 0, plain.stderr);
    assert.match(plain.stdout, /is up to date \(schema version \d+\)/);
  });

  it("runs the account commands against PostgreSQL, whatever data dir it is given", async () => {
    const shared = envFor(await freshDatabase());
    const dir = () => ["--data-dir", tempDir()];
    const account = cliJson(["accounts", "create", "--name", "Acme", "--plan", "solo", ...dir()], shared);
    const accountId = String(account.id);
    const key = cliJson(["keys", "create", "--account", accountId, ...dir()], shared);
    cliJson(["keys", "revoke", String(key.id), ...dir()], shared);
    const keys = cliJson(["keys", "list", "--account", accountId, ...dir()], shared) as unknown as Array<Record<string, unknown>>;
    assert.equal(keys.length, 1);
    assert.notEqual(keys[0]!.revoked_at, null);
    cliJson(["accounts", "update", accountId, "--plan", "professional", ...dir()], shared);
    assert.equal((cliJson(["accounts", "list", ...dir()], shared) as unknown as Array<Record<string, unknown>>)[0]!.plan, "professional");
    const invitation = cliJson(["members", "invite", "--account", accountId, "--email", "dev@example.com", ...dir()], shared);
    assert.equal(invitation.email, "dev@example.com");
    assert.equal(cliJson(["usage", "--account", accountId, ...dir()], shared).requests_used, 0);
    const audit = cliJson(["audit", "--account", accountId, ...dir()], shared);
    assert.deepEqual(
      (audit.data as Array<{ action: string }>).map((r) => r.action),
      ["member.invited", "account.plan_changed", "key.revoked", "key.created", "account.created"],
    );
    const table = run(["accounts", "list", ...dir()], shared);
    assert.match(table.stderr, /^using PostgreSQL at 127\.0\.0\.1:5432\/alveare_t_/);
  });

  it("refuses --from without a PostgreSQL database to copy into, or with another source", () => {
    const noTarget = run(["migrate", "--from", `sqlite:${tempDir()}`], envFor());
    assert.equal(noTarget.status, 2);
    assert.match(noTarget.stderr, /ALVEARE_DATABASE_URL/);
    const wrong = run(["migrate", "--from", "mysql://x"], envFor("postgres://postgres@127.0.0.1:5432/test"));
    assert.equal(wrong.status, 2);
    assert.match(wrong.stderr, /sqlite:PATH/);
    const noPath = run(["migrate", "--from", "sqlite:"], envFor("postgres://postgres@127.0.0.1:5432/test"));
    assert.equal(noPath.status, 2, noPath.stderr);
    assert.match(noPath.stderr, /sqlite:PATH/);
  });

  it("names a --from file that is not a SQLite database, in one line", async () => {
    const notADatabase = join(tempDir(), "notes.txt");
    writeFileSync(notADatabase, "not a database, but long enough to look like a file with a header. ".repeat(20));
    const r = run(["migrate", "--from", `sqlite:${notADatabase}`], envFor(await freshDatabase()));
    assert.equal(r.status, 1);
    assert.match(r.stderr, new RegExp(`\nalveare: ${notADatabase} is not a SQLite database\n$`));
    assert.doesNotMatch(r.stderr, /\bat \w+ \(|file is not a database/, "no stack trace, no bare driver message");
  });
});
