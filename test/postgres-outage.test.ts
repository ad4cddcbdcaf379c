import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import pg from "pg";
import { Browser, type BrowserResponse } from "./helpers/dashboard-client.js";
import { createKey, startTestServer, type TestServer } from "./helpers/fixtures.js";
import { dropDatabase, freshDatabase } from "./helpers/postgres.js";
import { deletePrefix, SHARED_REDIS_URL, testPrefix } from "./helpers/redis.js";
import { TcpProxy } from "./helpers/tcp-proxy.js";

const ADMIN_TOKEN = "o".repeat(40);
const PASSWORD = "correct horse battery";

interface Answer {
  status: number;
  headers: Headers;
  json: Record<string, unknown>;
}
const codeOf = (r: Answer | BrowserResponse): string | undefined => (r.json.error as { code?: string } | undefined)?.code;

function assertUnavailable(r: Answer | BrowserResponse, what: string): void {
  assert.equal(r.status, 503, `${what}: ${JSON.stringify(r.json)}`);
  assert.equal(codeOf(r), "dependency_unavailable", what);
  assert.equal((r.json.error as { type: string }).type, "server_error");
  assert.ok(Number(r.headers.get("retry-after")) >= 1, `${what}: Retry-After`);
}

describe("PostgreSQL out of reach in the shared mode", () => {
  const prefix = testPrefix("pg-outage");
  let database: string;
  let proxy: TcpProxy;
  let server: TestServer;
  let cachedKey: Record<string, string>;
  let unusedKey: Record<string, string>;
  let accountId: string;

  const get = async (path: string, headers: Record<string, string> = {}): Promise<Answer> => {
    const r = await fetch(`${server.url}${path}`, { headers });
    return { status: r.status, headers: r.headers, json: (await r.json()) as Record<string, unknown> };
  };
  const admin = { authorization: `Bearer ${ADMIN_TOKEN}` };
  const signIn = () => new Browser(server).call("POST", "/dashboard/api/login", { email: "ops@example.com", password: PASSWORD });
  /** A statement on the database itself, not through the proxy. */
  async function direct(sql: string): Promise<void> {
    const client = new pg.Client({ connectionString: database });
    await client.connect();
    try {
      await client.query(sql);
    } finally {
      await client.end();
    }
  }

  before(async () => {
    database = await freshDatabase();
    const target = new URL(database);
    proxy = new TcpProxy(target.hostname, Number(target.port || "5432"));
    await proxy.start();
    const proxied = new URL(database);
    proxied.hostname = "127.0.0.1";
    proxied.port = String(proxy.port);
    server = await startTestServer(
      {},
      {
        gated: true,
        env: {
          ALVEARE_DATABASE_URL: proxied.toString(),
          ALVEARE_REDIS_URL: SHARED_REDIS_URL,
          ALVEARE_REDIS_PREFIX: prefix,
          ALVEARE_ADMIN_TOKEN: ADMIN_TOKEN,
        },
      },
    );
    const operator = new Browser(server);
    assert.equal((await operator.call("POST", "/dashboard/api/admin-login", { token: ADMIN_TOKEN })).status, 200);
    const account = await operator.call("POST", "/admin/api/accounts", { name: "ops", plan: "starter" });
    accountId = account.json.id as string;
    const invite = await operator.call("POST", `/admin/api/accounts/${accountId}/invitations`, { email: "ops@example.com" });
    const token = /#invite=(\w+)$/.exec(invite.json.invite_path as string)![1]!;
    assert.equal((await new Browser(server).call("POST", "/dashboard/api/invitations/accept", { token, password: PASSWORD })).status, 200);
    cachedKey = (await createKey(server, "starter", "live", accountId)).auth;
    unusedKey = (await createKey(server, "starter", "live", accountId)).auth;
  });
  after(async () => {
    await server.close();
    await proxy.close();
    await deletePrefix(prefix);
    await dropDatabase(database);
  });

  it("answers 503 dependency_unavailable with Retry-After on the dashboard, the admin API and /v1 while cut, and serves again once back, without a restart", async () => {
    assert.equal((await get("/v1/usage", cachedKey)).status, 200, "the key is now cached on the node");
    assert.equal((await signIn()).status, 200);

    proxy.cut();
    assertUnavailable(await signIn(), "dashboard sign-in");
    assertUnavailable(await get("/admin/api/accounts", admin), "admin API account list");
    assertUnavailable(await get("/v1/usage", cachedKey), "/v1/usage with a cached key");
    assertUnavailable(await get("/v1/models", unusedKey), "/v1/models with a key the node must look up");
    assert.equal((await fetch(`${server.url}/health`)).status, 200, "liveness stays up");
    const ready = await get("/ready");
    assert.equal(ready.status, 503);
    assert.equal((ready.json.checks as Record<string, { ok: boolean }>).database?.ok, false);
    const warned = server.logs.records().filter((r) => r.msg === "a shared dependency is unavailable");
    assert.ok(warned.length >= 4, "each refusal is logged as a warning");
    assert.equal(server.logs.records().filter((r) => r.msg === "unhandled error").length, 0, "and never as an unhandled error");

    proxy.restore();
    let list: Answer | undefined;
    for (let i = 0; i < 100; i++) {
      list = await get("/admin/api/accounts", admin);
      if (list.status !== 503) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(list?.status, 200, JSON.stringify(list?.json));
    assert.equal((await signIn()).status, 200);
    assert.equal((await get("/v1/usage", cachedKey)).status, 200);
    assert.equal((await get("/v1/models", unusedKey)).status, 200);
    assert.equal((await get("/ready")).status, 200);
  });

  it("still answers 500 to a database error that is not a connection problem", async () => {
    await direct("ALTER TABLE accounts RENAME TO accounts_elsewhere");
    try {
      const r = await get("/admin/api/accounts", admin);
      assert.equal(r.status, 500, JSON.stringify(r.json));
      assert.equal(codeOf(r), "internal_error");
      assert.ok(server.logs.records().some((l) => l.msg === "unhandled error"));
    } finally {
      await direct("ALTER TABLE accounts_elsewhere RENAME TO accounts");
    }
    assert.equal((await get("/admin/api/accounts", admin)).status, 200);
  });
});
