import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { describe, it } from "node:test";
import Database from "better-sqlite3";
import { createStore } from "../src/store/create-store.js";
import { billingPeriod } from "../src/metering/billing-period.js";
import { CLI_PATH, createKey, postJson, startTestServer, tempDir } from "./helpers/fixtures.js";

const run = promisify(execFile);
const cliEnv = (extra: Record<string, string> = {}): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra };
  if (extra.ALVEARE_DATABASE_URL === undefined) delete env.ALVEARE_DATABASE_URL;
  if (extra.ALVEARE_REDIS_URL === undefined) delete env.ALVEARE_REDIS_URL;
  return env;
};

const ask = (url: string, auth: Record<string, string>) =>
  postJson(`${url}/v1/chat/completions`, { model: "alveare-chat", messages: [{ role: "user", content: "hi" }], max_tokens: 2 }, auth);

describe("alveare backup", () => {
  it("copies a serving database, while it takes requests, into a file only its owner reads, which a server then starts on", async () => {
    const server = await startTestServer({}, { gated: true });
    let restored: Awaited<ReturnType<typeof startTestServer>> | undefined;
    try {
      const { auth, accountId, keyId } = await createKey(server, "scale");
      for (let i = 0; i < 3; i++) assert.equal((await ask(server.url, auth)).status, 200);
      const target = join(tempDir(), "alveare-backup.db");
      // The CLI runs beside the server (another process), as an operator's cron job would, while requests go on.
      const traffic = Promise.all(Array.from({ length: 6 }, () => ask(server.url, auth)));
      const backup = await run(process.execPath, [CLI_PATH, "backup", target, "--json", "--data-dir", server.config.dataDir], { env: cliEnv() });
      for (const r of await traffic) assert.equal(r.status, 200);
      const report = JSON.parse(backup.stdout) as { backup: string; bytes: number; schema_version: number; database: string };
      assert.equal(report.backup, target);
      assert.equal(report.database, join(server.config.dataDir, "alveare.db"));
      assert.equal(report.bytes, statSync(target).size);
      assert.ok(report.schema_version > 0);
      // It holds password and key hashes: its owner's alone, as the database is; nothing else is left beside it.
      assert.deepEqual(readdirSync(dirname(target)), ["alveare-backup.db"]);
      assert.equal(statSync(target).mode & 0o777, 0o600);
      const copy = new Database(target, { readonly: true });
      try {
        assert.equal(copy.pragma("integrity_check", { simple: true }), "ok");
        assert.equal((copy.prepare("SELECT account_id FROM api_keys WHERE id = ?").get(keyId) as { account_id: string }).account_id, accountId);
      } finally {
        copy.close();
      }

      // Restored as the README says: the backup copied in as alveare.db of a data directory.
      const dataDir = join(tempDir(), "data");
      mkdirSync(dataDir);
      copyFileSync(target, join(dataDir, "alveare.db"));
      restored = await startTestServer({ data_dir: dataDir }, { gated: true });
      assert.equal((await ask(restored.url, auth)).status, 200, "the key works on the restored database");
      const stores = await createStore(restored.config);
      try {
        const usage = await stores.ledger.periodUsage(accountId, "live", billingPeriod(new Date()).key);
        // The three answered before the backup began, the one just made, and those of the six the snapshot caught.
        assert.ok(usage.requests >= 4 && usage.requests <= 10, `restored usage: ${usage.requests} requests`);
      } finally {
        await stores.close();
      }
    } finally {
      await restored?.close();
      await server.close();
    }
  });

  it("never writes over an existing file, and says what is wrong when there is nothing to back up", () => {
    const dir = tempDir();
    const dataDir = join(dir, "data");
    const created = spawnSync(process.execPath, [CLI_PATH, "accounts", "create", "--name", "a", "--plan", "starter", "--data-dir", dataDir], {
      env: cliEnv(),
      encoding: "utf8",
    });
    assert.equal(created.status, 0, created.stderr);
    const backup = (args: string[], env = cliEnv()) => spawnSync(process.execPath, [CLI_PATH, "backup", ...args], { env, encoding: "utf8" });

    const existing = join(dir, "earlier-backup.db");
    writeFileSync(existing, "an earlier backup");
    const over = backup([existing, "--data-dir", dataDir]);
    assert.equal(over.status, 1);
    assert.match(over.stderr, /already exists: name a new file for the backup/);
    assert.equal(readFileSync(existing, "utf8"), "an earlier backup");

    // Missing directories are made, as `mkdir -p` would (the help's `backups/alveare-$(date +%F).db` on a first run), its owner's only.
    const nested = join(dir, "backups", "daily", "b.db");
    const made = backup([nested, "--data-dir", dataDir]);
    assert.equal(made.status, 0, made.stderr);
    assert.equal(statSync(join(dir, "backups")).mode & 0o777, 0o700);
    assert.equal(statSync(join(dir, "backups", "daily")).mode & 0o777, 0o700);
    assert.equal(statSync(nested).mode & 0o777, 0o600);
    const underFile = backup([join(existing, "b.db"), "--data-dir", dataDir]);
    assert.equal(underFile.status, 1);
    assert.match(underFile.stderr, /earlier-backup\.db is not a directory: name a backup file in one/);

    const noDatabase = backup([join(dir, "b.db"), "--data-dir", join(dir, "elsewhere")]);
    assert.equal(noDatabase.status, 1);
    assert.match(noDatabase.stderr, /no database at .*elsewhere\/alveare\.db/);

    const shared = backup(
      [join(dir, "b.db")],
      cliEnv({ ALVEARE_DATABASE_URL: "postgres://127.0.0.1:5432/test", ALVEARE_REDIS_URL: "redis://127.0.0.1:6379" }),
    );
    assert.equal(shared.status, 2);
    assert.match(shared.stderr, /back it up with PostgreSQL's tools \(pg_dump\)/);

    const notSqlite = join(dir, "junk");
    mkdirSync(notSqlite);
    writeFileSync(join(notSqlite, "alveare.db"), "not a database at all, but long enough to be read as one ".repeat(20));
    const junk = backup([join(dir, "c.db"), "--data-dir", notSqlite]);
    assert.equal(junk.status, 1);
    assert.match(junk.stderr, /is not a SQLite database/);
    // A name SQLite would take for the database's own journal is refused: it deletes such a file when it opens.
    const journal = backup([join(dataDir, "alveare.db-journal"), "--data-dir", dataDir]);
    assert.equal(journal.status, 1);
    assert.match(journal.stderr, /named as the database's own journal or WAL/);
    // No failed backup left a file behind, under the backup's name or a temporary one.
    assert.deepEqual(readdirSync(dir).sort(), ["backups", "data", "earlier-backup.db", "junk"]);
    assert.deepEqual(readdirSync(join(dir, "backups", "daily")), ["b.db"]);
    assert.deepEqual(
      readdirSync(dataDir).filter((f) => !f.startsWith("alveare.db")),
      [],
    );
  });
});
