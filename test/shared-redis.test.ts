import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createServer, type AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { Redis } from "ioredis";
import { loadConfig } from "../src/config/config.js";
import { People } from "../src/accounts/people.js";
import { scryptDerivation, type KeyDerivation } from "../src/accounts/passwords.js";
import { AccountService } from "../src/accounts/accounts.js";
import { nodeBroadcast } from "../src/cli/node-broadcast.js";
import { hashKey } from "../src/gate/credentials.js";
import { connectRedis, type RedisConnection } from "../src/gate/redis/connection.js";
import { RedisFailureCounter } from "../src/gate/redis/failure-counter.js";
import { RedisKeyCache } from "../src/gate/redis/key-cache.js";
import { RedisQuotaCounter } from "../src/gate/redis/quota-counter.js";
import type { QuotaRequest } from "../src/gate/backends.js";
import { billingPeriod } from "../src/metering/billing-period.js";
import { CLI_CONTEXT } from "../src/store/audit-log.js";
import { createStore } from "../src/store/create-store.js";
import { openPool } from "../src/store/postgres/pg-pool.js";
import type { AccountStore, Stores } from "../src/store/store.js";
import { FakeUpstream } from "./helpers/fake-upstream.js";
import { configFor, createKey, postJson, startTestServer, tempDir, type TestServer } from "./helpers/fixtures.js";
import { closedPort } from "./helpers/ports.js";
import { startTcpProxy } from "./helpers/tcp-proxy.js";
import { dropDatabase, freshDatabase } from "./helpers/postgres.js";
import { deletePrefix, PrivateRedis, SHARED_REDIS_URL, testConnection, testPrefix } from "./helpers/redis.js";

const CLI_PATH = new URL("../src/cli/main.js", import.meta.url).pathname;
const ADMIN_TOKEN = "a".repeat(40);

const remote = (base: string) => ({
  specialists: { echo: { description: "answers at once", system_prompt: "", remote: { base_url: base, model: "m" } } },
  plans: {
    roomy: { requests_per_minute: 1000, requests_per_month: 100_000, specialists: "*" },
    tight: { requests_per_minute: 1000, requests_per_month: 15, specialists: "*" },
    small: { requests_per_minute: 1000, requests_per_month: 5, specialists: "*" },
  },
});

describe("key cache: a change on any node holds on every node's next lookup", () => {
  const prefix = testPrefix("keys");
  let stores: Stores;
  const connections: RedisConnection[] = [];
  after(async () => {
    for (const c of connections) c.redis.disconnect();
    await stores.close();
    await deletePrefix(prefix);
  });

  it("serves from this process until the generation moves, then reads the store again", async () => {
    stores = await createStore({ dataDir: tempDir() });
    let lookups = 0;
    const counting: Pick<AccountStore, "findKeyByHash"> = {
      findKeyByHash: (hash) => {
        lookups++;
        return stores.accounts.findKeyByHash(hash);
      },
    };
    const a = await testConnection(prefix);
    const b = await testConnection(prefix);
    connections.push(a, b);
    const nodeA = new RedisKeyCache(a, counting);
    const nodeB = new RedisKeyCache(b, counting);
    const plans = configFor(remote("http://127.0.0.1:1")).plans;
    const accounts = new AccountService(stores, plans, () => nodeA.invalidate());
    const account = await accounts.createAccount(CLI_CONTEXT, "x", "roomy");
    const { record, key } = await accounts.createKey(CLI_CONTEXT, account.id, "live");
    const hash = hashKey(key);

    assert.equal((await nodeB.find(hash))?.key.revokedAt, null);
    assert.equal((await nodeB.find(hash))?.key.revokedAt, null);
    assert.equal(lookups, 1, "the second lookup came from the cache");

    await accounts.revokeKey(CLI_CONTEXT, record.id);
    assert.notEqual((await nodeB.find(hash))?.key.revokedAt, null, "node B saw the revocation made on node A at once");
    assert.equal(lookups, 2);

    await accounts.changePlan(CLI_CONTEXT, account.id, "tight");
    assert.equal((await nodeB.find(hash))?.account.plan, "tight");
    await accounts.setStatus(CLI_CONTEXT, account.id, "suspended");
    assert.equal((await nodeB.find(hash))?.account.status, "suspended");
    assert.equal(lookups, 4);
  });

  it("reads the store again once its copies are older than the cache's age: a node on another Redis follows a revocation late, not never", async () => {
    const own = await createStore({ dataDir: tempDir() });
    // Another prefix stands for another Redis: this node's generation never moves with the others'.
    const elsewhere = testPrefix("keyage-other");
    try {
      const a = await testConnection(prefix);
      const lost = await testConnection(elsewhere);
      connections.push(a, lost);
      const nodeA = new RedisKeyCache(a, own.accounts);
      const lostNode = new RedisKeyCache(lost, own.accounts, 1000);
      const accounts = new AccountService(own, configFor(remote("http://127.0.0.1:1")).plans, () => nodeA.invalidate());
      const account = await accounts.createAccount(CLI_CONTEXT, "x", "roomy");
      const { record, key } = await accounts.createKey(CLI_CONTEXT, account.id, "live");
      const hash = hashKey(key);
      assert.equal((await lostNode.find(hash))?.key.revokedAt, null);
      await accounts.revokeKey(CLI_CONTEXT, record.id);
      assert.equal((await lostNode.find(hash))?.key.revokedAt, null, "its copy stands while young: the bump never reached it");
      await new Promise((r) => setTimeout(r, 1100));
      assert.notEqual((await lostNode.find(hash))?.key.revokedAt, null, "past the age, it reads the store and sees the revocation");
    } finally {
      await own.close();
      await deletePrefix(elsewhere);
    }
  });
});

describe("redis key cache: one generation read for the lookups of a moment", () => {
  const prefix = testPrefix("keygen");
  const connections: RedisConnection[] = [];
  after(async () => {
    for (const c of connections) c.redis.disconnect();
    await deletePrefix(prefix);
  });

  it("shares a GET among lookups that arrived before it was sent, never with one that arrived after", async () => {
    const stores = await createStore({ dataDir: tempDir() });
    try {
      const a = await testConnection(prefix);
      const b = await testConnection(prefix);
      connections.push(a, b);
      const nodeA = new RedisKeyCache(a, stores.accounts);
      const nodeB = new RedisKeyCache(b, stores.accounts);
      const plans = configFor(remote("http://127.0.0.1:1")).plans;
      const accounts = new AccountService(stores, plans, () => nodeA.invalidate());
      const account = await accounts.createAccount(CLI_CONTEXT, "x", "roomy");
      const { record, key } = await accounts.createKey(CLI_CONTEXT, account.id, "live");
      const hash = hashKey(key);
      await nodeB.find(hash);

      // Node B's GETs are counted; the answer of the first one after `hold` is kept back until the test releases it.
      const realGet = b.redis.get.bind(b.redis);
      let gets = 0;
      let held: Promise<void> | undefined;
      let release: () => void = () => undefined;
      const hold = (): void => void (held = new Promise<void>((resolve) => (release = resolve)));
      b.redis.get = (async (k: string) => {
        gets++;
        const answer = await realGet(k);
        const wait = held;
        held = undefined;
        if (wait !== undefined) await wait;
        return answer;
      }) as typeof b.redis.get;

      const together = await Promise.all(Array.from({ length: 20 }, () => nodeB.find(hash)));
      assert.ok(together.every((found) => found?.key.revokedAt === null));
      assert.equal(gets, 1, "twenty lookups of one moment, one GET");

      gets = 0;
      hold();
      const before = nodeB.find(hash); // its GET has answered (not revoked yet) and is held in flight
      await new Promise((r) => setTimeout(r, 20));
      await accounts.revokeKey(CLI_CONTEXT, record.id);
      const afterRevoke = nodeB.find(hash); // arrives while that GET is in flight
      release();
      assert.equal((await before)?.key.revokedAt, null, "the lookup that arrived before the revocation may pass");
      assert.notEqual((await afterRevoke)?.key.revokedAt, null, "the one that arrived after it reads the generation again");
      assert.equal(gets, 2);
    } finally {
      await stores.close();
    }
  });
});

describe("the invalidation subscriber after a reconnect", () => {
  it("subscribes again after the connection is lost", async () => {
    const url = new URL(SHARED_REDIS_URL);
    const proxy = await startTcpProxy(Number(url.port || 6379), url.hostname);
    const connection = await testConnection(testPrefix("resubscribe"));
    const cache = new RedisKeyCache(connection, { findKeyByHash: async () => undefined });
    const channel = `${connection.prefix}keys:invalidated`;
    const subscribers = async (): Promise<number> => Number(((await connection.redis.pubsub("NUMSUB", channel)) as [string, number])[1]);
    try {
      await cache.listen(`redis://127.0.0.1:${proxy.port}`);
      assert.equal(await subscribers(), 1);
      proxy.cut();
      for (let waited = 0; (await subscribers()) !== 0; waited += 20) {
        assert.ok(waited < 10_000, "Redis saw the subscriber go");
        await new Promise((r) => setTimeout(r, 20));
      }
      proxy.restore();
      for (let waited = 0; (await subscribers()) !== 1; waited += 20) {
        assert.ok(waited < 10_000, "the subscriber subscribed again after reconnecting");
        await new Promise((r) => setTimeout(r, 20));
      }
    } finally {
      await cache.close();
      connection.redis.disconnect();
      await proxy.close();
    }
  });

  it("stops trying when it cannot subscribe at start", async () => {
    // A Redis that takes each connection and drops it at once: the subscriber's start fails.
    let connections = 0;
    const dropping = createServer((socket) => {
      connections++;
      socket.destroy();
    });
    await new Promise<void>((resolve) => dropping.listen(0, "127.0.0.1", resolve));
    const connection = await testConnection(testPrefix("resubscribe"));
    const cache = new RedisKeyCache(connection, { findKeyByHash: async () => undefined });
    try {
      await assert.rejects(cache.listen(`redis://127.0.0.1:${(dropping.address() as AddressInfo).port}`));
      // Its reconnects would come 100, 200, 300 ms apart.
      await new Promise((r) => setTimeout(r, 800));
      assert.equal(connections, 1, "no reconnect after the failed start");
    } finally {
      connection.redis.disconnect();
      await new Promise((r) => dropping.close(r));
    }
  });

  it("closes without an unhandled rejection while its re-subscription is unanswered", async () => {
    const url = new URL(SHARED_REDIS_URL);
    const proxy = await startTcpProxy(Number(url.port || 6379), url.hostname);
    const unhandled: unknown[] = [];
    const record = (reason: unknown): void => void unhandled.push(reason);
    process.on("unhandledRejection", record);
    const connection = await testConnection(testPrefix("resubscribe"));
    const cache = new RedisKeyCache(connection, { findKeyByHash: async () => undefined });
    try {
      await cache.listen(`redis://127.0.0.1:${proxy.port}`);
      // The connection is lost; the subscriber reconnects and subscribes again, and that answer never comes.
      proxy.holdAnswersAfter("subscribe");
      proxy.cut();
      proxy.restore();
      for (let waited = 0; proxy.heldAfterText === 0; waited += 20) {
        assert.ok(waited < 10_000, "the subscriber subscribed again after reconnecting");
        await new Promise((r) => setTimeout(r, 20));
      }
      await cache.close();
      // A rejection nobody handles is reported after the microtasks of its turn.
      await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(unhandled.map(String), []);
    } finally {
      process.removeListener("unhandledRejection", record);
      connection.redis.disconnect();
      await proxy.close();
    }
  });
});

describe("sign-in failures are counted across nodes", () => {
  const prefix = testPrefix("signin");
  let connection: RedisConnection;
  after(async () => {
    connection.redis.disconnect();
    await deletePrefix(prefix);
  });

  it("refuses the sixth wrong admin token whichever node the guesses went to", async () => {
    connection = await testConnection(prefix);
    const stores = await createStore({ dataDir: tempDir() });
    try {
      const failures = (kind: string, limits: ConstructorParameters<typeof RedisFailureCounter>[2]) =>
        new RedisFailureCounter(connection, kind, limits);
      const nodes = [new People(stores, ADMIN_TOKEN, { failures }), new People(stores, ADMIN_TOKEN, { failures })];
      for (let i = 0; i < 5; i++) {
        await assert.rejects(nodes[i % 2]!.checkAdminToken("wrong", "10.0.0.1"), { code: "invalid_admin_token" });
      }
      for (const node of nodes) await assert.rejects(node.checkAdminToken(ADMIN_TOKEN, "10.0.0.1"), { code: "too_many_sign_in_attempts" });
      // Another address is not affected.
      await nodes[0]!.checkAdminToken(ADMIN_TOKEN, "10.0.0.2");
    } finally {
      await stores.close();
    }
  });

  it("counts guesses that arrive at once on two nodes exactly: five are tried, the rest refused", async () => {
    const stores = await createStore({ dataDir: tempDir() });
    try {
      await stores.accounts.createAccount({ id: "acct_race", name: "race", plan: "solo", status: "active", createdAt: new Date().toISOString() });
      const failures = (kind: string, limits: ConstructorParameters<typeof RedisFailureCounter>[2]) =>
        new RedisFailureCounter(connection, kind, limits);
      let derived = 0;
      const derive: KeyDerivation = (password, salt, parameters) => {
        derived++;
        return scryptDerivation(password, salt, parameters);
      };
      const nodes = [new People(stores, ADMIN_TOKEN, { failures, derive }), new People(stores, ADMIN_TOKEN, { failures, derive })];
      const { token } = await nodes[0]!.invite(CLI_CONTEXT, "acct_race", "race@example.com");
      await nodes[0]!.acceptInvitation(token, "the member's real password", "10.0.0.8");
      derived = 0;
      const codes = async (attempts: Array<Promise<unknown>>) =>
        (await Promise.allSettled(attempts)).map((o) => (o.status === "rejected" ? (o.reason as { code: string }).code : "ok"));
      const signIns = await codes(Array.from({ length: 30 }, (_, i) => nodes[i % 2]!.signIn("race@example.com", `guess ${i}`, "10.0.0.9")));
      assert.equal(signIns.filter((c) => c === "invalid_credentials").length, 5, JSON.stringify(signIns));
      assert.equal(signIns.filter((c) => c === "too_many_sign_in_attempts").length, 25);
      assert.equal(derived, 5, "five passwords were tried");
      const tokens = await codes(Array.from({ length: 30 }, (_, i) => nodes[i % 2]!.checkAdminToken(`wrong-${i}`, "10.0.0.10")));
      assert.equal(tokens.filter((c) => c === "invalid_admin_token").length, 5, JSON.stringify(tokens));
      assert.equal(tokens.filter((c) => c === "too_many_sign_in_attempts").length, 25);
      // Right tokens at once from one address are never refused: only failures count.
      assert.deepEqual(
        new Set(await codes(Array.from({ length: 20 }, (_, i) => nodes[i % 2]!.checkAdminToken(ADMIN_TOKEN, "10.0.0.11")))),
        new Set(["ok"]),
      );
    } finally {
      await stores.close();
    }
  });
});

describe("a node on Redis", () => {
  const fake = new FakeUpstream();
  const prefix = testPrefix("node");
  let server: TestServer;
  const infer = (auth: Record<string, string>) => postJson(`${server.url}/v1/infer`, { specialist: "echo", prompt: "hi", max_tokens: 4 }, auth);

  let database: string;

  before(async () => {
    database = await freshDatabase();
    server = await startTestServer(remote(await fake.start()), {
      gated: true,
      env: { ALVEARE_DATABASE_URL: database, ALVEARE_REDIS_URL: SHARED_REDIS_URL, ALVEARE_REDIS_PREFIX: prefix, ALVEARE_ADMIN_TOKEN: ADMIN_TOKEN },
    });
  });
  after(async () => {
    await server.close();
    await fake.stop();
    await deletePrefix(prefix);
    await dropDatabase(database);
  });

  it("admits exactly the 10 requests left of a monthly quota out of 60 at once, and agrees with the ledger", async () => {
    const { auth, accountId } = await createKey(server, "tight");
    for (let i = 0; i < 5; i++) assert.equal((await infer(auth)).status, 200);
    const results = await Promise.all(Array.from({ length: 60 }, () => infer(auth)));
    assert.equal(results.filter((r) => r.status === 200).length, 10);
    for (const r of results.filter((x) => x.status !== 200)) {
      assert.equal(r.status, 429);
      assert.equal((r.json.error as { code: string }).code, "monthly_quota_exceeded");
    }
    const stores = await createStore(server.config);
    try {
      const usage = await stores.ledger.periodUsage(accountId, "live", billingPeriod(new Date()).key);
      assert.equal(usage.requests, 15);
    } finally {
      await stores.close();
    }
    const redis = new Redis(SHARED_REDIS_URL);
    try {
      assert.equal(await redis.get(`${prefix}quota:{${accountId}}:live:${billingPeriod(new Date()).key}`), "15");
    } finally {
      redis.disconnect();
    }
  });

  it("a key revoked through the CLI is refused on the very next request, and the CLI told Redis", async () => {
    const { auth, keyId } = await createKey(server, "roomy");
    assert.equal((await infer(auth)).status, 200);
    const redis = new Redis(SHARED_REDIS_URL);
    try {
      const generation = await redis.get(`${prefix}keys:generation`);
      const env = { ...process.env, ALVEARE_DATABASE_URL: database, ALVEARE_REDIS_URL: SHARED_REDIS_URL, ALVEARE_REDIS_PREFIX: prefix };
      const cli = spawnSync(process.execPath, [CLI_PATH, "keys", "revoke", keyId, "--data-dir", server.config.dataDir, "--json"], {
        env,
        encoding: "utf8",
      });
      assert.equal(cli.status, 0, cli.stderr);
      assert.notEqual(await redis.get(`${prefix}keys:generation`), generation, "the CLI bumped the shared generation");
    } finally {
      redis.disconnect();
    }
    const refused = await infer(auth);
    assert.equal(refused.status, 401);
    assert.equal((refused.json.error as { code: string }).code, "revoked_api_key");
  });

  it("a member removed through the CLI or the admin API: the keys they made are refused on the very next request", async () => {
    const { accountId } = await createKey(server, "roomy");
    const memberKey = async (email: string) => {
      const stores = await createStore(server.config);
      try {
        const { member } = await new People(stores, undefined).invite(CLI_CONTEXT, accountId, email);
        const made = await new AccountService(stores, server.config.plans).createKey(CLI_CONTEXT, accountId, "live", undefined, member.id);
        return { memberId: member.id, auth: { authorization: `Bearer ${made.key}` } };
      } finally {
        await stores.close();
      }
    };
    const viaCli = await memberKey("cli-removed@example.com");
    const viaApi = await memberKey("api-removed@example.com");
    // Both used first, so the node has them cached.
    assert.equal((await infer(viaCli.auth)).status, 200);
    assert.equal((await infer(viaApi.auth)).status, 200);
    const env = { ...process.env, ALVEARE_DATABASE_URL: database, ALVEARE_REDIS_URL: SHARED_REDIS_URL, ALVEARE_REDIS_PREFIX: prefix };
    const cli = spawnSync(
      process.execPath,
      [CLI_PATH, "members", "remove", "--account", accountId, "--member", viaCli.memberId, "--data-dir", server.config.dataDir, "--json"],
      { env, encoding: "utf8" },
    );
    assert.equal(cli.status, 0, cli.stderr);
    assert.equal((JSON.parse(cli.stdout) as { revoked_keys: string[] }).revoked_keys.length, 1);
    const refused = await infer(viaCli.auth);
    assert.equal(refused.status, 401);
    assert.equal((refused.json.error as { code: string }).code, "revoked_api_key");

    assert.equal((await infer(viaApi.auth)).status, 200, "another member's key works on (and is cached again)");
    const removed = await fetch(`${server.url}/admin/api/accounts/${accountId}/members/${viaApi.memberId}`, {
      method: "DELETE",
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    assert.equal(removed.status, 204);
    assert.equal((await infer(viaApi.auth)).status, 401);
  });

  it("a plan changed through the admin API holds on the next request", async () => {
    const { auth, accountId } = await createKey(server, "roomy");
    assert.equal((await infer(auth)).headers.get("x-ratelimit-limit-requests"), "1000");
    const patched = await fetch(`${server.url}/admin/api/accounts/${accountId}`, {
      method: "PATCH",
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ status: "suspended" }),
    });
    assert.equal(patched.status, 200);
    const refused = await infer(auth);
    assert.equal(refused.status, 403);
    assert.equal((refused.json.error as { code: string }).code, "account_suspended");
  });

  it("stops without a Redis warning: the node's own goodbye to Redis is no lost connection", async () => {
    const upstream = new FakeUpstream();
    const other = await startTestServer(remote(await upstream.start()), {
      gated: true,
      env: { ALVEARE_DATABASE_URL: database, ALVEARE_REDIS_URL: SHARED_REDIS_URL, ALVEARE_REDIS_PREFIX: prefix },
    });
    await other.close();
    await upstream.stop();
    const records = other.logs.records();
    assert.deepEqual(
      records.filter((r) => r.component === "redis"),
      [],
    );
  });
  it("shows a redis check in /ready", async () => {
    const ready = await fetch(`${server.url}/ready`);
    const body = (await ready.json()) as { checks: Record<string, { ok: boolean }> };
    assert.equal(ready.status, 200);
    assert.deepEqual(body.checks.redis, { ok: true });
  });
});

describe("Redis down and back", () => {
  const fake = new FakeUpstream();
  const redis = new PrivateRedis();
  let server: TestServer;
  const infer = (auth: Record<string, string>) => postJson(`${server.url}/v1/infer`, { specialist: "echo", prompt: "hi", max_tokens: 4 }, auth);

  let database: string;

  before(async () => {
    await redis.start();
    database = await freshDatabase();
    server = await startTestServer(remote(await fake.start()), {
      gated: true,
      env: { ALVEARE_DATABASE_URL: database, ALVEARE_REDIS_URL: redis.url, ALVEARE_REDIS_PREFIX: "alveare:" },
    });
  });
  after(async () => {
    await server.close();
    await fake.stop();
    await redis.kill();
    await dropDatabase(database);
  });

  it("answers 503 dependency_unavailable while Redis is gone, admits nothing, and recovers by itself with exact counters", async () => {
    const { auth, accountId } = await createKey(server, "small");
    for (let i = 0; i < 3; i++) assert.equal((await infer(auth)).status, 200);
    const upstreamBefore = fake.requests.length;

    await redis.kill();
    const during = await Promise.all(Array.from({ length: 20 }, () => infer(auth)));
    for (const r of during) {
      assert.equal(r.status, 503, JSON.stringify(r.json));
      const error = r.json.error as { code: string; type: string };
      assert.equal(error.code, "dependency_unavailable");
      assert.equal(error.type, "server_error");
      assert.ok(Number(r.headers.get("retry-after")) >= 1);
    }
    assert.equal(fake.requests.length, upstreamBefore, "nothing reached the engine without a limiter");
    // Each refusal has its request line; the warning with the driver's error is written once, not 20 times.
    const records = server.logs.records();
    assert.ok(records.filter((r) => r.msg === "request" && r.code === "dependency_unavailable").length >= 20);
    const warnings = records.filter((r) => r.msg === "a shared dependency is unavailable");
    assert.equal(warnings.length, 1, JSON.stringify(warnings));
    assert.equal(warnings[0]?.dependency, "redis");
    assert.equal((await fetch(`${server.url}/health`)).status, 200, "liveness stays up");
    const ready = await fetch(`${server.url}/ready`);
    assert.equal(ready.status, 503);
    assert.equal(((await ready.json()) as { checks: Record<string, { ok: boolean }> }).checks.redis?.ok, false);
    // It says why, as the database check does: the kind of the connection's failure, not "unavailable".
    let redisCheck: { ok: boolean; error?: string } | undefined;
    for (let i = 0; i < 40 && redisCheck?.error !== "connection refused"; i++) {
      if (i > 0) await new Promise((r) => setTimeout(r, 100));
      redisCheck = ((await (await fetch(`${server.url}/ready`)).json()) as { checks: Record<string, { ok: boolean; error?: string }> }).checks.redis;
    }
    assert.deepEqual(redisCheck, { ok: false, error: "connection refused" });

    // Back, empty (no persistence): the node reconnects by itself and seeds the monthly counter from the ledger.
    await redis.start();
    let first: Awaited<ReturnType<typeof infer>> | undefined;
    for (let i = 0; i < 100; i++) {
      first = await infer(auth);
      if (first.status !== 503) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(first?.status, 200, "traffic flows again within seconds");
    // The outage's start and end, once each, as an operator reads them.
    const lost = server.logs.records().filter((r) => r.msg === "Redis connection lost: reconnecting");
    const back = server.logs.records().filter((r) => r.msg === "Redis connection back");
    assert.equal(lost.length, 1, JSON.stringify(lost));
    assert.equal(lost[0]?.level, 40);
    // Why, also when Redis just went away with no error on the connection (as README promises the field).
    assert.equal(lost[0]?.reason, "the server closed the connection");
    assert.equal(back.length, 1, JSON.stringify(back));
    assert.ok(Number(back[0]?.down_ms) > 0);
    const after = await Promise.all(Array.from({ length: 10 }, () => infer(auth)));
    assert.equal(after.filter((r) => r.status === 200).length, 1, "3 before + 1 + 1 = the month's 5, not a fresh 5");
    const stores = await createStore(server.config);
    try {
      assert.equal((await stores.ledger.periodUsage(accountId, "live", billingPeriod(new Date()).key)).requests, 5);
    } finally {
      await stores.close();
    }
  });
  it("serves a request already admitted when Redis goes away mid-request, and records it in the ledger", async () => {
    const { auth, accountId } = await createKey(server, "small");
    fake.fault = "hold";
    const upstreamBefore = fake.requests.length;
    const held = infer(auth);
    const deadline = Date.now() + 20_000;
    while (fake.requests.length === upstreamBefore) {
      assert.ok(Date.now() < deadline, "the request never reached the upstream");
      await new Promise((r) => setTimeout(r, 20));
    }
    await redis.kill();
    fake.release();
    fake.fault = "ok";
    const answer = await held;
    assert.equal(answer.status, 200, JSON.stringify(answer.json));
    assert.equal((await infer(auth)).status, 503, "the next one is refused while Redis is gone");
    await redis.start();
    const stores = await createStore(server.config);
    try {
      assert.equal((await stores.ledger.periodUsage(accountId, "live", billingPeriod(new Date()).key)).requests, 1);
    } finally {
      await stores.close();
    }
  });
});

describe("changes while Redis is away", () => {
  it("the CLI refuses a revocation it could not tell the nodes of, with one line, and changes nothing", async () => {
    const database = await freshDatabase();
    const dataDir = tempDir();
    const stores = await createStore({ dataDir, databaseUrl: database });
    try {
      const accounts = new AccountService(stores, loadConfig({}, {}).plans);
      const account = await accounts.createAccount(CLI_CONTEXT, "a", "solo");
      const { record: key } = await accounts.createKey(CLI_CONTEXT, account.id, "live");
      const env = { ...process.env, ALVEARE_DATABASE_URL: database, ALVEARE_REDIS_URL: `redis://127.0.0.1:${await closedPort()}` };
      const cli = spawnSync(process.execPath, [CLI_PATH, "keys", "revoke", key.id, "--data-dir", dataDir, "--json"], { env, encoding: "utf8" });
      assert.equal(cli.status, 1);
      assert.match(cli.stderr, /ALVEARE_REDIS_URL.*nothing changed/);
      assert.equal(cli.stderr.trim().split("\n").length, 1, cli.stderr);
      assert.equal((await stores.accounts.getKey(key.id))?.revokedAt, null, "the key still works: nothing was written");
    } finally {
      await stores.close();
      await dropDatabase(database);
    }
  });

  it("the CLI says a saved change was not told when Redis goes away after the write, and telling again bumps again", async () => {
    const gone = nodeBroadcast(`redis://127.0.0.1:${await closedPort()}`, testPrefix("cli"));
    await assert.rejects(gone.changed(), (error: Error) => {
      assert.match(
        error.message,
        /^saved, but the running nodes were not told \(.*connection refused.*\); run the command again once Redis answers$/,
      );
      return true;
    });
    gone.close();
    const prefix = testPrefix("cli");
    const redis = new Redis(SHARED_REDIS_URL);
    const live = nodeBroadcast(SHARED_REDIS_URL, prefix);
    try {
      await live.ready();
      await live.changed();
      const first = await redis.get(`${prefix}keys:generation`);
      await live.changed();
      assert.notEqual(await redis.get(`${prefix}keys:generation`), first, "a second run tells the nodes again");
    } finally {
      live.close();
      redis.disconnect();
      await deletePrefix(prefix);
    }
  });

  it("tells the nodes of a committed change even when its audit record fails", async () => {
    const stores = await createStore({ dataDir: tempDir() });
    try {
      let told = 0;
      const plans = loadConfig({}, {}).plans;
      const setup = new AccountService(stores, plans);
      const account = await setup.createAccount(CLI_CONTEXT, "a", "solo");
      const { record: key } = await setup.createKey(CLI_CONTEXT, account.id, "live");
      const failingAudit = Object.create(stores.audit) as Stores["audit"];
      failingAudit.record = () => Promise.reject(new Error("audit write failed"));
      const accounts = new AccountService({ accounts: stores.accounts, audit: failingAudit }, plans, async () => {
        told++;
      });
      await assert.rejects(accounts.revokeKey(CLI_CONTEXT, key.id), /audit write failed/);
      assert.equal(told, 1, "the broadcast followed the write");
      assert.notEqual((await stores.accounts.getKey(key.id))?.revokedAt, null);
    } finally {
      await stores.close();
    }
  });
});

describe("the monthly counter behind the ledger", () => {
  /**
   * A solo account whose Redis counter is full (3 of 3), and `giveBack(n)`: a survivor settling n of a dead node's
   * rows in the ledger only, so Redis still counts them.
   */
  const withFullCounter = async (
    run: (t: {
      counter: RedisQuotaCounter;
      request: (i: number) => QuotaRequest;
      giveBack: (rows: number) => Promise<void>;
      ledgerRequests: () => Promise<number>;
    }) => Promise<void>,
  ): Promise<void> => {
    const database = await freshDatabase();
    const connection = await testConnection();
    const stores = await createStore({ dataDir: tempDir(), databaseUrl: database });
    try {
      const accounts = new AccountService(stores, loadConfig({}, {}).plans);
      const account = await accounts.createAccount(CLI_CONTEXT, "a", "solo");
      const counter = new RedisQuotaCounter(connection, stores.ledger);
      const request = (i: number): QuotaRequest => ({
        requestId: `req_${i}`,
        caller: { accountId: account.id, keyId: "k", mode: "live" as const, plan: "solo" },
        specialistId: "echo",
        endpoint: "infer" as const,
        limit: 3,
        at: new Date(),
      });
      const period = billingPeriod(new Date()).key;
      const giveBack = async (rows: number): Promise<void> => {
        const pool = openPool(database);
        try {
          const found = await pool.query<{ id: number }>("SELECT id FROM usage_events ORDER BY id LIMIT $1", [rows]);
          for (const { id } of found.rows) {
            await stores.ledger.complete({
              eventId: id,
              accountId: account.id,
              mode: "live",
              period,
              status: 0,
              promptTokens: 0,
              completionTokens: 0,
              latencyMs: 0,
              at: new Date().toISOString(),
            });
          }
        } finally {
          await pool.end();
        }
      };
      for (let i = 0; i < 3; i++) assert.ok(await counter.take(request(i)));
      const ledgerRequests = async () => (await stores.ledger.periodUsage(account.id, "live", period)).requests;
      await run({ counter, request, giveBack, ledgerRequests });
    } finally {
      await stores.close();
      connection.redis.disconnect();
      await deletePrefix(connection.prefix);
      await dropDatabase(database);
    }
  };

  it("admits again once the ledger gave back a dead node's requests, without waiting for the reseed", async () => {
    await withFullCounter(async ({ counter, request, giveBack, ledgerRequests }) => {
      assert.equal(await counter.take(request(3)), undefined, "full");
      assert.equal(await ledgerRequests(), 3);
      await giveBack(1);
      await new Promise((r) => setTimeout(r, 1100)); // the refusal above asked the ledger; the next may ask after a second
      assert.ok(await counter.take(request(4)), "the ledger had room: admitted");
      assert.equal(await counter.take(request(5)), undefined, "and full again");
      assert.equal(await ledgerRequests(), 3);
    });
  });
  it("lets every request refused together at a stale counter share the ledger's answer: the room given back is used whole", async () => {
    await withFullCounter(async ({ counter, request, giveBack, ledgerRequests }) => {
      await giveBack(2);
      // A burst at the full counter: one of them asks the ledger, and the others wait for that answer instead of
      // being refused for the month while two requests are free.
      const tickets = await Promise.all(Array.from({ length: 5 }, (_, i) => counter.take(request(10 + i))));
      assert.equal(tickets.filter((t) => t !== undefined).length, 2);
      assert.equal(await ledgerRequests(), 3);
    });
  });
});

describe("Redis settings at start", () => {
  it("refuses a URL that is not redis:// naming the variable", () => {
    const database = { ALVEARE_DATABASE_URL: "postgres://127.0.0.1/x" };
    assert.throws(() => configFor({}, { ...database, ALVEARE_REDIS_URL: "http://127.0.0.1:6379" }), /ALVEARE_REDIS_URL.*redis:\/\//);
    assert.throws(() => loadConfig({}, { ...database, ALVEARE_REDIS_URL: "not a url" }), /ALVEARE_REDIS_URL/);
  });

  it("stops with one line naming ALVEARE_REDIS_URL when Redis cannot be reached", async () => {
    const port = await closedPort();
    await assert.rejects(connectRedis(`redis://127.0.0.1:${port}`, "x:"), (error: Error) => {
      assert.match(error.message, /^ALVEARE_REDIS_URL: cannot use Redis at redis:\/\/127\.0\.0\.1:\d+\/?: connection refused/);
      assert.doesNotMatch(error.message, /\n/);
      return true;
    });
  });

  it("says why: an unknown host and a database number Redis does not have, each in one line", async () => {
    const oneLine = (pattern: RegExp) => (error: Error) => {
      assert.match(error.message, pattern);
      assert.doesNotMatch(error.message, /\n|Connection is closed/);
      return true;
    };
    await assert.rejects(connectRedis("redis://no-such-host.invalid:6379", "x:"), oneLine(/^ALVEARE_REDIS_URL: .*: unknown host$/));
    const url = new URL(SHARED_REDIS_URL);
    url.pathname = "/99";
    await assert.rejects(connectRedis(url.toString(), "x:"), oneLine(/^ALVEARE_REDIS_URL: .*: the database number in the URL does not exist/));
  });

  it("says what to do when Redis asks for a password the URL does not give", async () => {
    const redis = new PrivateRedis("opsprobe-secret");
    await redis.start();
    try {
      await assert.rejects(connectRedis(redis.url, "x:"), (error: Error) => {
        assert.match(
          error.message,
          /^ALVEARE_REDIS_URL: cannot use Redis at redis:\/\/127\.0\.0\.1:\d+\/?: this Redis requires a password and the URL gives none \(put it in the URL: redis:\/\/:PASSWORD@host:port/,
        );
        assert.doesNotMatch(error.message, /\n|HELLO|NOAUTH/);
        return true;
      });
      const withPassword = new URL(redis.url);
      withPassword.password = "opsprobe-secret";
      const connection = await connectRedis(withPassword.toString(), "x:");
      connection.redis.disconnect();
    } finally {
      await redis.kill();
    }
  });
});
