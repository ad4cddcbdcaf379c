import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Redis } from "ioredis";
import { AccountService } from "../src/accounts/accounts.js";
import { hashKey } from "../src/gate/credentials.js";
import { openRedisBackends } from "../src/gate/redis/shared-backends.js";
import { changeBroadcast } from "../src/server/change-broadcast.js";
import { CLI_CONTEXT } from "../src/store/audit-log.js";
import { createStore } from "../src/store/create-store.js";
import { Browser, type BrowserResponse } from "./helpers/dashboard-client.js";
import { FakeUpstream } from "./helpers/fake-upstream.js";
import { configFor, createKey, postJson, startTestServer, tempDir, type TestServer } from "./helpers/fixtures.js";
import { dropDatabase, freshDatabase } from "./helpers/postgres.js";
import { deletePrefix, PrivateRedis, SHARED_REDIS_URL, testPrefix } from "./helpers/redis.js";
import { closedPort } from "./helpers/ports.js";
import { startTcpProxy, type TcpProxy } from "./helpers/tcp-proxy.js";

const ADMIN_TOKEN = "c".repeat(40);

const remote = (base: string) => ({
  specialists: { echo: { description: "answers at once", system_prompt: "", remote: { base_url: base, model: "m" } } },
  plans: {
    roomy: { requests_per_minute: 1000, requests_per_month: 100_000, specialists: "*" },
    tight: { requests_per_minute: 1000, requests_per_month: 15, specialists: "*" },
  },
});

type Answer = BrowserResponse | Awaited<ReturnType<typeof postJson>>;
const codeOf = (r: Answer): string | undefined => (r.json.error as { code?: string } | undefined)?.code;
const messageOf = (r: Answer): string => String((r.json.error as { message?: string } | undefined)?.message);

/** Shared Redis through a proxy the test can cut: that node alone loses Redis, the other keeps it. */
async function proxyToSharedRedis(): Promise<{ proxy: TcpProxy; url: string }> {
  const shared = new URL(SHARED_REDIS_URL);
  const proxy = await startTcpProxy(Number(shared.port || 6379), shared.hostname);
  const url = new URL(SHARED_REDIS_URL);
  url.hostname = "127.0.0.1";
  url.port = String(proxy.port);
  return { proxy, url: url.toString() };
}

describe("a change made on a node that cannot reach Redis", () => {
  const fake = new FakeUpstream();
  const prefix = testPrefix("broadcast");
  let database: string;
  let proxy: TcpProxy;
  /** Reaches Redis through the proxy. */
  let cutOff: TestServer;
  /** Reaches Redis directly: it serves the keys from its cache until it is told. */
  let other: TestServer;
  let operator: Browser;
  let member: Browser;
  let memberId: string;
  let accountId: string;
  const infer = (server: TestServer, key: string) =>
    postJson(`${server.url}/v1/infer`, { specialist: "echo", prompt: "hi", max_tokens: 4 }, { authorization: `Bearer ${key}` });

  async function redisCheck(ok: boolean): Promise<void> {
    for (let i = 0; i < 100; i++) {
      const ready = (await (await fetch(`${cutOff.url}/ready`)).json()) as { checks: Record<string, { ok: boolean }> };
      if (ready.checks.redis?.ok === ok) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.fail(`the node's Redis never became ${ok ? "reachable" : "unreachable"}`);
  }

  before(async () => {
    database = await freshDatabase();
    const proxied = await proxyToSharedRedis();
    proxy = proxied.proxy;
    const base = await fake.start();
    const env = { ALVEARE_DATABASE_URL: database, ALVEARE_REDIS_PREFIX: prefix, ALVEARE_ADMIN_TOKEN: ADMIN_TOKEN };
    cutOff = await startTestServer(remote(base), { gated: true, env: { ...env, ALVEARE_REDIS_URL: proxied.url } });
    other = await startTestServer(remote(base), { gated: true, env: { ...env, ALVEARE_REDIS_URL: SHARED_REDIS_URL } });
    // Signed in while Redis answers: sign-ins count their failures there.
    operator = new Browser(cutOff);
    assert.equal((await operator.call("POST", "/dashboard/api/admin-login", { token: ADMIN_TOKEN })).status, 200);
    const account = await operator.call("POST", "/admin/api/accounts", { name: "told-co", plan: "roomy" });
    accountId = account.json.id as string;
    const invite = await operator.call("POST", `/admin/api/accounts/${accountId}/invitations`, { email: "told@example.com" });
    memberId = invite.json.member_id as string;
    const token = /#invite=(\w+)$/.exec(invite.json.invite_path as string)![1]!;
    member = new Browser(cutOff);
    assert.equal((await member.call("POST", "/dashboard/api/invitations/accept", { token, password: "correct horse battery" })).status, 200);
  });
  after(async () => {
    proxy.restore();
    await cutOff.close();
    await other.close();
    await proxy.close();
    await fake.stop();
    await deletePrefix(prefix);
    await dropDatabase(database);
  });

  it("is refused 503 with nothing saved (dashboard and admin API), and once Redis is back holds on the other node at its very next request", async () => {
    const memberKey = await member.call("POST", "/dashboard/api/keys", { mode: "live" });
    assert.equal(memberKey.status, 201);
    const dashboardKey = { id: memberKey.json.id as string, key: memberKey.json.key as string };
    const adminKey = await createKey(cutOff, "roomy", "live", accountId);
    for (const key of [dashboardKey.key, adminKey.key]) assert.equal((await infer(other, key)).status, 200, "the other node has it cached");

    proxy.cut();
    await redisCheck(false);
    const refusals: Array<[string, Answer]> = [
      ["dashboard revoke", await member.call("POST", `/dashboard/api/keys/${dashboardKey.id}/revoke`)],
      ["admin API revoke", await operator.call("POST", `/admin/api/keys/${adminKey.keyId}/revoke`)],
      ["admin API suspend", await operator.call("PATCH", `/admin/api/accounts/${accountId}`, { status: "suspended" })],
      ["admin API plan change", await operator.call("PATCH", `/admin/api/accounts/${accountId}`, { plan: "tight" })],
      ["admin API member removal", await operator.call("DELETE", `/admin/api/accounts/${accountId}/members/${memberId}`)],
    ];
    for (const [what, r] of refusals) {
      assert.equal(r.status, 503, `${what}: ${JSON.stringify(r.json)}`);
      assert.equal(codeOf(r), "dependency_unavailable", what);
      assert.ok(Number(r.headers.get("retry-after")) >= 1, `${what}: Retry-After`);
      assert.match(messageOf(r), /nothing was changed/, what);
    }
    const stores = await createStore(cutOff.config);
    try {
      assert.equal((await stores.accounts.getKey(dashboardKey.id))?.revokedAt, null, "the dashboard's key is not revoked");
      assert.equal((await stores.accounts.getKey(adminKey.keyId))?.revokedAt, null, "the admin API's key is not revoked");
      const account = await stores.accounts.getAccount(accountId);
      assert.deepEqual([account?.status, account?.plan], ["active", "roomy"]);
      assert.equal((await stores.people.getMember(memberId))?.accountId, accountId, "the member is still there");
    } finally {
      await stores.close();
    }
    // What the other node serves is what the database holds.
    for (const key of [dashboardKey.key, adminKey.key]) assert.equal((await infer(other, key)).status, 200);

    proxy.restore();
    await redisCheck(true);
    assert.equal((await member.call("POST", `/dashboard/api/keys/${dashboardKey.id}/revoke`)).status, 200);
    assert.equal(codeOf(await infer(other, dashboardKey.key)), "revoked_api_key", "the other node was told");
    assert.equal((await operator.call("POST", `/admin/api/keys/${adminKey.keyId}/revoke`)).status, 200);
    assert.equal(codeOf(await infer(other, adminKey.key)), "revoked_api_key", "the other node was told");
  });

  it("removes a member whose keys are kept, with nothing to tell the other nodes", async () => {
    const invite = await operator.call("POST", `/admin/api/accounts/${accountId}/invitations`, { email: "kept@example.com" });
    const keptId = invite.json.member_id as string;
    proxy.cut();
    await redisCheck(false);
    try {
      const removed = await operator.call("DELETE", `/admin/api/accounts/${accountId}/members/${keptId}?keep_keys=true`);
      assert.equal(removed.status, 204, JSON.stringify(removed.json));
    } finally {
      proxy.restore();
      await redisCheck(true);
    }
    const stores = await createStore(cutOff.config);
    try {
      assert.equal(await stores.people.getMember(keptId), undefined, "the member is gone");
    } finally {
      await stores.close();
    }
  });
});

describe("a change saved just before Redis went away", () => {
  it("says it was saved and the other nodes not told (after a few tries), never that nothing happened", async () => {
    const prefix = testPrefix("broadcast-race");
    const { proxy, url } = await proxyToSharedRedis();
    const stores = await createStore({ dataDir: tempDir() });
    const redis = await openRedisBackends(url, prefix, stores);
    try {
      const broadcast = changeBroadcast(redis);
      const plans = configFor(remote("http://127.0.0.1:1")).plans;
      // Redis answers the check before the write, and is gone for the broadcast after it.
      const ready = async (): Promise<void> => {
        await broadcast.ready();
        proxy.cut();
      };
      const accounts = new AccountService(stores, plans, broadcast.changed, ready);
      const account = await accounts.createAccount(CLI_CONTEXT, "raced", "roomy");
      const { record } = await accounts.createKey(CLI_CONTEXT, account.id, "live");
      const started = Date.now();
      await assert.rejects(accounts.revokeKey(CLI_CONTEXT, record.id), (error: Error & { status?: number; code?: string }) => {
        assert.equal(error.status, 503);
        assert.equal(error.code, "dependency_unavailable");
        assert.match(error.message, /^The change was saved, but the server could not tell the other nodes of it/);
        return true;
      });
      assert.ok(Date.now() - started >= 600, "it tried again before giving up");
      assert.notEqual((await stores.accounts.getKey(record.id))?.revokedAt, null, "saved");
    } finally {
      await redis.close();
      await proxy.close();
      await stores.close();
      await deletePrefix(prefix);
    }
  });

  it("drops the node's own cached copies though the others were not told: a replica's READONLY leaves its subscriber connected", async () => {
    const redis = new PrivateRedis();
    await redis.start();
    const direct = new Redis(redis.url);
    const stores = await createStore({ dataDir: tempDir() });
    const backends = await openRedisBackends(redis.url, "alveare:", stores);
    try {
      const broadcast = changeBroadcast(backends);
      // A failover between the check and the broadcast: the URL now reaches a replica.
      const ready = async (): Promise<void> => {
        await broadcast.ready();
        await direct.call("REPLICAOF", "127.0.0.1", String(await closedPort()));
      };
      const accounts = new AccountService(stores, configFor(remote("http://127.0.0.1:1")).plans, broadcast.changed, ready);
      const account = await accounts.createAccount(CLI_CONTEXT, "raced", "roomy");
      const { record, key } = await accounts.createKey(CLI_CONTEXT, account.id, "live");
      const hash = hashKey(key);
      assert.equal((await backends.parts.keys.find(hash))?.key.revokedAt, null, "this node has it cached");
      await assert.rejects(accounts.revokeKey(CLI_CONTEXT, record.id), { code: "dependency_unavailable", message: /^The change was saved/ });
      await direct.call("REPLICAOF", "NO", "ONE");
      // A replica's refusal makes the node reconnect (to whatever the address reaches after a failover): once it has,
      // it must not serve the revoked key from its cache.
      let found: Awaited<ReturnType<typeof backends.parts.keys.find>>;
      for (let i = 0; ; i++) {
        try {
          found = await backends.parts.keys.find(hash);
          break;
        } catch (error) {
          if (i >= 100) throw error;
          await new Promise((r) => setTimeout(r, 50));
        }
      }
      assert.notEqual(found?.key.revokedAt, null, "this node refuses the key at once");
    } finally {
      await backends.close();
      await stores.close();
      direct.disconnect();
      await redis.kill();
    }
  });
});
