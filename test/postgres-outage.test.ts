import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import pg from "pg";
import { Browser, type BrowserResponse } from "./helpers/dashboard-client.js";
import { createKey, startTestServer, type TestServer } from "./helpers/fixtures.js";
import { dropDatabase, freshDatabase } from "./helpers/postgres.js";
import { deletePrefix, SHARED_REDIS_URL, testConnection, testPrefix } from "./helpers/redis.js";
import { TcpProxy } from "./helpers/tcp-proxy.js";
import { inTransaction, openPool } from "../src/store/postgres/pg-pool.js";
import { isDatabaseConnectionFailure } from "../src/store/postgres/connection-failure.js";
import { freePort, HeldUpstream } from "./helpers/held-upstream.js";

const ADMIN_TOKEN = "o".repeat(40);
const PASSWORD = "correct horse battery";

interface Answer {
  status: number;
  headers: Headers;
  json: Record<string, unknown>;
}
const codeOf = (r: Answer | BrowserResponse): string | undefined => (r.json.error as { code?: string } | undefined)?.code;
const messageOf = (r: Answer | BrowserResponse): string => String((r.json.error as { message?: string } | undefined)?.message);

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
  const whole = new HeldUpstream();
  const streamed = new HeldUpstream();

  const get = async (path: string, headers: Record<string, string> = {}): Promise<Answer> => {
    const r = await fetch(`${server.url}${path}`, { headers });
    return { status: r.status, headers: r.headers, json: (await r.json()) as Record<string, unknown> };
  };
  const admin = { authorization: `Bearer ${ADMIN_TOKEN}` };
  const signIn = () => new Browser(server).call("POST", "/dashboard/api/login", { email: "ops@example.com", password: PASSWORD });
  /** A statement on the database itself, not through the proxy. */
  async function direct(sql: string, values: unknown[] = []): Promise<Array<Record<string, unknown>>> {
    const client = new pg.Client({ connectionString: database });
    await client.connect();
    try {
      return (await client.query(sql, values)).rows as Array<Record<string, unknown>>;
    } finally {
      await client.end();
    }
  }
  const post = async (path: string, body: unknown, headers: Record<string, string>): Promise<Answer & { text: string }> => {
    const r = await fetch(`${server.url}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: JSON.stringify(body),
    });
    const text = await r.text();
    return {
      status: r.status,
      headers: r.headers,
      text,
      json: r.headers.get("content-type")?.includes("json") ? (JSON.parse(text) as Record<string, unknown>) : {},
    };
  };
  /** A metric's value at the node's metrics listener, by its exact labels (0 while the counter is untouched). */
  async function metric(name: string, labels: Record<string, string>): Promise<number> {
    const text = await (await fetch(server.metricsUrl!)).text();
    const wanted = `${name}{${Object.entries(labels)
      .map(([k, v]) => `${k}="${v}"`)
      .join(",")}} `;
    const line = text.split("\n").find((l) => l.startsWith(wanted));
    return line === undefined ? 0 : Number(line.slice(wanted.length));
  }
  const outcomes = (specialist: string, endpoint: string, outcome: string): Promise<number> =>
    metric("alveare_inference_requests_total", { specialist, endpoint, outcome });
  const requestsCounted = async (): Promise<number> =>
    Number((await direct("SELECT requests FROM usage_counters WHERE account_id = $1 AND mode = 'live'", [accountId]))[0]?.requests ?? 0);
  /** Waits until the ledger row of `requestId` is closed, and returns its status. */
  async function closedStatus(requestId: string): Promise<number> {
    let rows: Array<Record<string, unknown>> = [];
    for (let i = 0; i < 150; i++) {
      rows = await direct("SELECT status FROM usage_events WHERE request_id = $1", [requestId]);
      if (rows.length === 1 && rows[0]!.status !== null) return Number(rows[0]!.status);
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.fail(`the ledger row of ${requestId} was never closed: ${JSON.stringify(rows)}`);
  }

  before(async () => {
    database = await freshDatabase();
    const target = new URL(database);
    proxy = new TcpProxy(target.hostname, Number(target.port || "5432"));
    await proxy.start();
    const proxied = new URL(database);
    proxied.hostname = "127.0.0.1";
    proxied.port = String(proxy.port);
    const held = (baseUrl: string) => ({ description: "held upstream", system_prompt: "", remote: { base_url: baseUrl, model: "m" } });
    server = await startTestServer(
      { specialists: { held: held(await whole.start()), heldstream: held(await streamed.start()) } },
      {
        gated: true,
        env: {
          ALVEARE_DATABASE_URL: proxied.toString(),
          ALVEARE_REDIS_URL: SHARED_REDIS_URL,
          ALVEARE_REDIS_PREFIX: prefix,
          ALVEARE_ADMIN_TOKEN: ADMIN_TOKEN,
          ALVEARE_METRICS_PORT: String(await freePort()),
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
    await whole.stop();
    await streamed.stop();
    await proxy.close();
    await deletePrefix(prefix);
    await dropDatabase(database);
  });

  it("answers 503 dependency_unavailable with Retry-After on the dashboard, the admin API and /v1 while cut, and serves again once back, without a restart", async () => {
    assert.equal((await get("/v1/usage", cachedKey)).status, 200, "the key is now cached on the node");
    assert.equal((await signIn()).status, 200);

    proxy.cut();
    assertUnavailable(await signIn(), "dashboard sign-in");
    const adminList = await get("/admin/api/accounts", admin);
    assertUnavailable(adminList, "admin API account list");
    // Said as what it is where it happened: the API admits nothing; the operator's read is just not possible now.
    assert.equal(messageOf(adminList), "The server cannot reach its database right now. Retry shortly.");
    const usage = await get("/v1/usage", cachedKey);
    assertUnavailable(usage, "/v1/usage with a cached key");
    assert.equal(messageOf(usage), "The server cannot reach its database right now, so it admits nothing. Retry shortly.");
    assertUnavailable(await get("/v1/models", unusedKey), "/v1/models with a key the node must look up");
    // An inference request refused at admission is counted under the code its client got, not as an internal error.
    const refusedBefore = await outcomes("classify", "infer", "dependency_unavailable");
    assertUnavailable(await post("/v1/infer", { specialist: "classify", prompt: "hello" }, cachedKey), "an inference request");
    assert.equal(await outcomes("classify", "infer", "dependency_unavailable"), refusedBefore + 1);
    assert.equal(await outcomes("classify", "infer", "internal_error"), 0);
    assert.equal((await fetch(`${server.url}/health`)).status, 200, "liveness stays up");
    const ready = await get("/ready");
    assert.equal(ready.status, 503);
    const database = (ready.json.checks as Record<string, { ok: boolean; error?: string }>).database;
    assert.equal(database?.ok, false);
    // /ready is public: the kind of failure, not the driver's message naming the database's address.
    assert.match(database?.error ?? "", /^(connection refused|connection reset|connection closed|unavailable)$/);
    assert.ok(!JSON.stringify(ready.json).includes(String(proxy.port)), JSON.stringify(ready.json));
    const metrics = await (await fetch(server.metricsUrl!)).text();
    assert.ok(Number(/^alveare_dependency_failures_total\{dependency="database"\} (\d+)$/m.exec(metrics)?.[1]) >= 4, "counted for alerting");
    assert.match(metrics, /^alveare_dependency_failures_total\{dependency="redis"\} 0$/m);
    const warned = server.logs.records().filter((r) => r.msg === "a shared dependency is unavailable");
    // Logged as a warning with the driver's error, at most once in 10 s (each refusal has its request line).
    assert.ok(warned.length >= 1, "the outage is logged as a warning");
    const refusedLines = server.logs.records().filter((r) => r.msg === "request" && r.code === "dependency_unavailable");
    assert.ok(refusedLines.length >= 4 && warned.length < refusedLines.length, `${warned.length} warnings for ${refusedLines.length} refusals`);
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

  // A hang (the regression this guards against) fails here rather than holding the suite.
  it(
    "refuses within 2 s when PostgreSQL stops answering (no hang for the outage), and closes as refused the row an unanswered admission left",
    { timeout: 60_000 },
    async () => {
      // One request first: the node's quota counter in Redis is seeded, so the next one goes straight to its admission.
      const warm = await post("/v1/infer", { specialist: "classify", prompt: "hello" }, cachedKey);
      assert.equal(warm.status, 200, warm.text);
      const counted = await requestsCounted();
      // A connection of the operator's pool is open too, as on any node in use: the statement below goes over it.
      assert.equal((await get("/admin/api/accounts", admin)).status, 200);
      proxy.holdAnswers();
      try {
        // Statements no request waits for (the operator API, the dashboard, the lease) are cut by the node
        // too: before, they waited on the silent connection for as long as TCP took to give up.
        let started = performance.now();
        assertUnavailable(await get("/admin/api/accounts", admin), "the operator API when PostgreSQL does not answer");
        assert.ok(performance.now() - started < 8_000, `refused after ${Math.round(performance.now() - started)} ms`);
        started = performance.now();
        const refused = await post("/v1/infer", { specialist: "classify", prompt: "hello" }, { ...cachedKey, "x-request-id": "unanswered-1" });
        const waited = performance.now() - started;
        assertUnavailable(refused, "an admission PostgreSQL does not answer");
        assert.ok(waited < 4_000, `refused after ${Math.round(waited)} ms, not held for the outage`);
        started = performance.now();
        const ready = await get("/ready");
        assert.equal(ready.status, 503);
        assert.ok(performance.now() - started < 3_500, "/ready does not hang either");
        assert.equal((await fetch(`${server.url}/health`)).status, 200);
      } finally {
        proxy.restore();
      }
      // The statement reached PostgreSQL and committed; the node closes its row as the refusal the client saw.
      assert.equal(await closedStatus("unanswered-1"), 503);
      assert.equal(await requestsCounted(), counted, "the refused request was given back");
    },
  );

  it("does not answer 200 for a request whose outcome cannot be recorded: 503 (or an error event ending the stream), recorded later as that refusal", async () => {
    // An account whose plan has every specialist (the held ones included).
    const scale = await createKey(server, "scale");
    const key = scale.auth;
    const counted = async (): Promise<number> =>
      Number((await direct("SELECT requests FROM usage_counters WHERE account_id = $1 AND mode = 'live'", [scale.accountId]))[0]?.requests ?? 0);
    const warm = await post("/v1/infer", { specialist: "classify", prompt: "hello" }, key);
    assert.equal(warm.status, 200, warm.text);
    const before = await counted();
    const metricsBefore = {
      held: await outcomes("held", "infer", "dependency_unavailable"),
      heldstream: await outcomes("heldstream", "chat.completions", "dependency_unavailable"),
      tokens: await metric("alveare_tokens_total", { specialist: "held", kind: "completion" }),
    };
    const pending = post("/v1/infer", { specialist: "held", prompt: "hello" }, { ...key, "x-request-id": "unrecorded-1" });
    await whole.arrived();
    proxy.cut();
    whole.release();
    const answer = await pending;
    assertUnavailable(answer, "a served request whose completion cannot be written");
    const unrecorded =
      /^The server could not record this request's outcome \(its database is out of reach right now\), so the answer is not delivered\./;
    assert.match(messageOf(answer), unrecorded, "it was admitted: the outcome is what could not be written");

    const stream = post(
      "/v1/chat/completions",
      { model: "alveare-heldstream", messages: [{ role: "user", content: "hello" }], stream: true },
      { ...key, "x-request-id": "unrecorded-2" },
    );
    proxy.restore();
    await streamed.arrived();
    proxy.cut();
    streamed.release();
    const events = (await stream).text.split("\n\n").filter((e) => e.startsWith("data: "));
    assert.ok(!events.includes("data: [DONE]"), "the stream does not end as a success");
    const last = JSON.parse(events.at(-1)!.slice("data: ".length)) as { error?: { code?: string; message?: string } };
    assert.equal(last.error?.code, "dependency_unavailable", String(events.at(-1)));
    assert.match(last.error?.message ?? "", unrecorded);

    proxy.restore();
    assert.equal(await closedStatus("unrecorded-1"), 503);
    assert.equal(await closedStatus("unrecorded-2"), 503);
    assert.equal(await counted(), before, "neither counts: their clients were refused");
    // The metrics say what the clients got: no success (and no tokens) for an answer that was not delivered.
    assert.equal(await outcomes("held", "infer", "dependency_unavailable"), metricsBefore.held + 1);
    assert.equal(await outcomes("heldstream", "chat.completions", "dependency_unavailable"), metricsBefore.heldstream + 1);
    assert.equal(await outcomes("held", "infer", "success"), 0);
    assert.equal(await outcomes("heldstream", "chat.completions", "success"), 0);
    assert.equal(await metric("alveare_tokens_total", { specialist: "held", kind: "completion" }), metricsBefore.tokens);
    // Nor in the node's Redis counter: both were given back there too, which a later admission relies on.
    const redis = await testConnection(prefix);
    try {
      const period = new Date().toISOString().slice(0, 7);
      assert.equal(Number(await redis.redis.get(`${prefix}quota:{${scale.accountId}}:live:${period}`)), before);
    } finally {
      redis.redis.disconnect();
    }
  });

  it("records as the refusal its client got a success whose completion committed but whose answer never came back", async () => {
    const scale = await createKey(server, "scale");
    const usage = async (): Promise<{ requests: number; tokens: number }> => {
      const rows = await direct("SELECT requests, tokens FROM usage_counters WHERE account_id = $1 AND mode = 'live'", [scale.accountId]);
      return { requests: Number(rows[0]?.requests ?? 0), tokens: Number(rows[0]?.tokens ?? 0) };
    };
    const warm = await post("/v1/infer", { specialist: "classify", prompt: "hello" }, scale.auth);
    assert.equal(warm.status, 200, warm.text);
    const before = await usage();
    const pending = post("/v1/infer", { specialist: "held", prompt: "hello" }, { ...scale.auth, "x-request-id": "committed-unanswered-1" });
    await whole.arrived();
    // The completion statement reaches PostgreSQL and commits; its answer is held until the node stopped waiting.
    proxy.holdAnswers();
    whole.release();
    let answer: Awaited<typeof pending>;
    try {
      answer = await pending;
    } finally {
      proxy.restore();
    }
    assertUnavailable(answer, "a success whose record was never confirmed");
    let status: unknown;
    for (let i = 0; i < 150 && status !== 503; i++) {
      await new Promise((r) => setTimeout(r, 100));
      status = (await direct("SELECT status FROM usage_events WHERE request_id = $1", ["committed-unanswered-1"]))[0]?.status;
    }
    assert.equal(status, 503, "the ledger says what the client got, not the success that committed behind its back");
    const [row] = await direct("SELECT prompt_tokens + completion_tokens AS tokens FROM usage_events WHERE request_id = $1", [
      "committed-unanswered-1",
    ]);
    assert.equal(Number(row!.tokens), 0, "a refusal carries no tokens, so the per-key and daily token reports agree with the counters");
    assert.deepEqual(await usage(), before, "neither the request nor its 5 tokens count");
  });

  it(
    "gives up a transaction on a silent database after one statement's limit, not two (no ROLLBACK waits behind it)",
    { timeout: 60_000 },
    async () => {
      const own = new TcpProxy("127.0.0.1", Number(new URL(database).port || "5432"));
      await own.start();
      const url = new URL(database);
      url.hostname = "127.0.0.1";
      url.port = String(own.port);
      const pool = openPool(url.toString(), { max: 1 });
      try {
        await pool.query("SELECT 1");
        own.holdAnswers();
        const started = performance.now();
        await assert.rejects(
          inTransaction(pool, (client) => client.query("SELECT 1")),
          (error: Error) => isDatabaseConnectionFailure(error),
        );
        const waited = performance.now() - started;
        // 6 s for the statement; before, a ROLLBACK queued behind it waited 6 s more.
        assert.ok(waited > 5_000 && waited < 9_000, `gave up after ${Math.round(waited)} ms`);
      } finally {
        own.restore();
        await pool.end().catch(() => undefined);
        await own.close();
      }
    },
  );

  it("reads a connection the server refuses (no such database, connections switched off) as out of reach, not as a bug", async () => {
    const refusedBy = async (url: string): Promise<unknown> => {
      const client = new pg.Client({ connectionString: url });
      try {
        await client.connect();
        return undefined;
      } catch (error) {
        return error;
      } finally {
        await client.end().catch(() => undefined);
      }
    };
    const gone = new URL(database);
    gone.pathname = "/alveare_no_such_database";
    const missing = await refusedBy(gone.toString());
    assert.equal((missing as { code?: string }).code, "3D000");
    assert.equal(isDatabaseConnectionFailure(missing), true);
    const closed = await freshDatabase();
    try {
      await direct(`ALTER DATABASE ${new URL(closed).pathname.slice(1)} ALLOW_CONNECTIONS false`);
      const switchedOff = await refusedBy(closed);
      assert.equal((switchedOff as { code?: string }).code, "55000");
      assert.equal(isDatabaseConnectionFailure(switchedOff), true);
    } finally {
      await direct(`ALTER DATABASE ${new URL(closed).pathname.slice(1)} ALLOW_CONNECTIONS true`);
      await dropDatabase(closed);
    }
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
