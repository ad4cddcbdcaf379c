import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { Redis } from "ioredis";
import pg from "pg";
import { createStore } from "../src/store/create-store.js";
import { FakeUpstream } from "./helpers/fake-upstream.js";
import { CLI_PATH, createKey, postJson, startTestServer, type TestServer } from "./helpers/fixtures.js";
import { closedPort } from "./helpers/ports.js";
import { COMMAND_TIMEOUT_MS } from "../src/gate/redis/connection.js";
import { startTcpProxy, type TcpProxy } from "./helpers/tcp-proxy.js";
import { dropDatabase, freshDatabase, POSTGRES_ADMIN_URL } from "./helpers/postgres.js";
import { deletePrefix, PrivateRedis, SHARED_REDIS_URL, testPrefix } from "./helpers/redis.js";

const ADMIN_TOKEN = "r".repeat(40);

const remote = (base: string) => ({
  specialists: { echo: { description: "answers at once", system_prompt: "", remote: { base_url: base, model: "m" } } },
  plans: { roomy: { requests_per_minute: 1000, requests_per_month: 100_000, specialists: "*" } },
});

type Answer = Awaited<ReturnType<typeof postJson>>;

function assertUnavailable(r: Answer, what: string): void {
  assert.equal(r.status, 503, `${what}: ${JSON.stringify(r.json)}`);
  const error = r.json.error as { code: string; type: string };
  assert.equal(error.code, "dependency_unavailable", what);
  assert.equal(error.type, "server_error", what);
  assert.ok(Number(r.headers.get("retry-after")) >= 1, `${what}: Retry-After`);
}

/** The node's /ready, polled until `done` holds (or a few seconds pass): the answer last seen. */
async function readyUntil(
  server: TestServer,
  done: (status: number, checks: Record<string, { ok: boolean; error?: string }>) => boolean,
): Promise<{ status: number; checks: Record<string, { ok: boolean; error?: string }> }> {
  let last = { status: 0, checks: {} as Record<string, { ok: boolean; error?: string }> };
  for (let i = 0; i < 50; i++) {
    if (i > 0) await new Promise((r) => setTimeout(r, 100));
    const response = await fetch(`${server.url}/ready`);
    last = { status: response.status, checks: ((await response.json()) as { checks: typeof last.checks }).checks };
    if (done(last.status, last.checks)) break;
  }
  return last;
}

function nodeOn(server: () => TestServer) {
  const infer = (auth: Record<string, string>) => postJson(`${server().url}/v1/infer`, { specialist: "echo", prompt: "hi", max_tokens: 4 }, auth);
  const suspend = async (accountId: string): Promise<Answer> => {
    const r = await fetch(`${server().url}/admin/api/accounts/${accountId}`, {
      method: "PATCH",
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ status: "suspended" }),
    });
    return { status: r.status, headers: r.headers, json: (await r.json()) as Record<string, unknown> };
  };
  return { infer, suspend };
}

describe("a PostgreSQL that takes no writes (a standby, default_transaction_read_only)", () => {
  const fake = new FakeUpstream();
  const prefix = testPrefix("pg-read-only");
  let database: string;
  let server: TestServer;
  const { infer, suspend } = nodeOn(() => server);
  const name = (): string => new URL(database).pathname.slice(1);

  /** Sets the database's default, then ends its sessions: the node's new connections open with it, as after a failover. */
  async function readOnly(on: boolean): Promise<void> {
    const admin = new pg.Client({ connectionString: POSTGRES_ADMIN_URL });
    await admin.connect();
    try {
      await admin.query(`ALTER DATABASE ${name()} ${on ? "SET default_transaction_read_only = on" : "RESET default_transaction_read_only"}`);
      await admin.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", [name()]);
    } finally {
      await admin.end();
    }
    // The pool drops the connections it sees ended before they are used again.
    await new Promise((r) => setTimeout(r, 300));
  }

  before(async () => {
    database = await freshDatabase();
    server = await startTestServer(remote(await fake.start()), {
      gated: true,
      env: { ALVEARE_DATABASE_URL: database, ALVEARE_REDIS_URL: SHARED_REDIS_URL, ALVEARE_REDIS_PREFIX: prefix, ALVEARE_ADMIN_TOKEN: ADMIN_TOKEN },
    });
  });
  after(async () => {
    await readOnly(false).catch(() => undefined);
    await server.close();
    await fake.stop();
    await deletePrefix(prefix);
    await dropDatabase(database);
  });

  it("answers 503 dependency_unavailable (not 500), /ready says so, and serves again once it takes writes", async () => {
    const { auth, accountId } = await createKey(server, "roomy");
    assert.equal((await infer(auth)).status, 200);
    assert.equal((await fetch(`${server.url}/ready`)).status, 200);

    await readOnly(true);
    const ready = await readyUntil(server, (status) => status === 503);
    assert.equal(ready.status, 503, "a balancer stops sending requests");
    assert.deepEqual(ready.checks.database, { ok: false, error: "read-only" });
    // One after the other, so none of them is the first use of a connection the database ended.
    for (let i = 0; i < 3; i++) assertUnavailable(await infer(auth), `admission ${i}`);
    assertUnavailable(await suspend(accountId), "an admin API change");
    assert.ok(
      server.logs.records().every((l) => l.msg !== "unhandled error"),
      "no unhandled error logged",
    );

    await readOnly(false);
    assert.equal((await readyUntil(server, (status) => status === 200)).status, 200);
    assert.equal((await infer(auth)).status, 200);
  });
});

describe("a Redis that takes no writes (a replica after a failover), or holds them", () => {
  const fake = new FakeUpstream();
  const redis = new PrivateRedis();
  let database: string;
  let server: TestServer;
  let direct: Redis;
  const { infer, suspend } = nodeOn(() => server);

  before(async () => {
    await redis.start();
    direct = new Redis(redis.url);
    database = await freshDatabase();
    server = await startTestServer(remote(await fake.start()), {
      gated: true,
      env: { ALVEARE_DATABASE_URL: database, ALVEARE_REDIS_URL: redis.url, ALVEARE_REDIS_PREFIX: "alveare:", ALVEARE_ADMIN_TOKEN: ADMIN_TOKEN },
    });
  });
  after(async () => {
    await direct.call("CLIENT", "UNPAUSE").catch(() => undefined);
    await server.close();
    direct.disconnect();
    await redis.kill();
    await fake.stop();
    await dropDatabase(database);
  });

  it("answers 503 dependency_unavailable (not 500), /ready says so, changes nothing, and serves again once it is a primary", async () => {
    const { auth, accountId, keyId } = await createKey(server, "roomy");
    assert.equal((await infer(auth)).status, 200);

    // A replica of a primary that is not there: it answers reads, and refuses every write with READONLY.
    await direct.call("REPLICAOF", "127.0.0.1", String(await closedPort()));
    await assert.rejects(direct.set("probe", "1"), /^ReplyError: READONLY /);
    const ready = await readyUntil(server, (status) => status === 503);
    assert.equal(ready.status, 503, "a balancer stops sending requests");
    assert.deepEqual(ready.checks.redis, { ok: false, error: "read-only replica" });
    for (let i = 0; i < 3; i++) assertUnavailable(await infer(auth), `admission ${i}`);
    assertUnavailable(await suspend(accountId), "an admin API change");
    // The CLI holds to the same rule: a replica takes no announcement, so nothing is saved.
    const env = { ...process.env, ALVEARE_DATABASE_URL: database, ALVEARE_REDIS_URL: redis.url, ALVEARE_REDIS_PREFIX: "alveare:" };
    const cli = spawnSync(process.execPath, [CLI_PATH, "keys", "revoke", keyId, "--json"], { env, encoding: "utf8" });
    assert.equal(cli.status, 1, cli.stderr);
    assert.match(cli.stderr, /nothing changed \(the running nodes could not be told\)/);
    const stores = await createStore(server.config);
    try {
      assert.equal((await stores.accounts.getAccount(accountId))?.status, "active", "the other nodes could not be told: nothing changed");
      assert.equal((await stores.accounts.listKeys(accountId)).find((k) => k.id === keyId)?.revokedAt ?? null, null, "the key is not revoked");
    } finally {
      await stores.close();
    }
    assert.ok(
      server.logs.records().every((l) => l.msg !== "unhandled error"),
      "no unhandled error logged",
    );

    await direct.call("REPLICAOF", "NO", "ONE");
    assert.equal((await readyUntil(server, (status) => status === 200)).status, 200);
    assert.equal((await infer(auth)).status, 200);
  });

  // A Redis that holds its writes (CLIENT PAUSE WRITE, as during a failover).
  it("refuses a request after one command timeout, not a second one for its rate-limit headers", async () => {
    const { auth } = await createKey(server, "roomy");
    assert.equal((await infer(auth)).status, 200);
    await direct.call("CLIENT", "PAUSE", String(COMMAND_TIMEOUT_MS * 3), "WRITE");
    const started = performance.now();
    const refused = await infer(auth);
    const ms = performance.now() - started;
    await direct.call("CLIENT", "UNPAUSE");
    assertUnavailable(refused, "admission");
    // The admission waits one command timeout; looking up the headers afterwards waited a second one.
    assert.ok(ms < COMMAND_TIMEOUT_MS * 1.75, `refused after ${Math.round(ms)} ms`);
  });
});

describe("a failover behind one address: the node's Redis becomes a replica and the address reaches the new primary", () => {
  const fake = new FakeUpstream();
  const demoted = new PrivateRedis();
  const promoted = new PrivateRedis();
  let direct: Redis;
  let proxy: TcpProxy;
  let database: string;
  let server: TestServer;
  const { infer } = nodeOn(() => server);

  before(async () => {
    await demoted.start();
    await promoted.start();
    direct = new Redis(demoted.url);
    proxy = await startTcpProxy(demoted.port);
    database = await freshDatabase();
    server = await startTestServer(remote(await fake.start()), {
      gated: true,
      env: { ALVEARE_DATABASE_URL: database, ALVEARE_REDIS_URL: `redis://127.0.0.1:${proxy.port}`, ALVEARE_REDIS_PREFIX: "alveare:" },
    });
  });
  after(async () => {
    direct.disconnect();
    await server.close();
    await proxy.close();
    await demoted.kill();
    await promoted.kill();
    await fake.stop();
    await dropDatabase(database);
  });

  it("reconnects on the replica's refusal and serves again, without a restart", async () => {
    const { auth } = await createKey(server, "roomy");
    assert.equal((await infer(auth)).status, 200);
    // The old primary follows the new one; the address now leads to the new one (the node's connections stay open).
    await direct.call("REPLICAOF", "127.0.0.1", String(promoted.port));
    proxy.retarget(promoted.port);
    assertUnavailable(await infer(auth), "the first request after the failover meets the replica");
    let status = 0;
    for (let i = 0; i < 50 && status !== 200; i++) {
      await new Promise((r) => setTimeout(r, 100));
      status = (await infer(auth)).status;
    }
    assert.equal(status, 200, "served again once reconnected to the new primary");
    assert.equal((await fetch(`${server.url}/ready`)).status, 200);
  });
});
