import assert from "node:assert/strict";
import Database from "better-sqlite3";
import { request } from "node:http";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Browser } from "./helpers/dashboard-client.js";
import { FakeUpstream } from "./helpers/fake-upstream.js";
import { cliJson, createKey, postJson, startTestServer, type TestServer } from "./helpers/fixtures.js";
import { canFakeRecovery, fakeWalRecovery } from "./helpers/wal-recovery.js";
import { until } from "./helpers/until.js";

const infer = (server: TestServer, auth: Record<string, string>, specialist = "classify") =>
  postJson(`${server.url}/v1/infer`, { specialist, prompt: "I love it", max_tokens: 2 }, auth);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// When a waiting client is let in is tested to the millisecond on the limiter
// with an injected clock (rate-limiter.test.ts); over HTTP only what no timing can change.
describe("per-key window limit", () => {
  let server: TestServer;
  before(async () => {
    // The solo plan as shipped: 20 per 60-second window, longer than any burst here takes.
    server = await startTestServer({ engine: { parallel: 2, queue: 256 } }, { gated: true });
  });
  after(async () => {
    await server.close();
  });

  it("admits exactly the plan's 20 of a 200-request burst; every 429 says when to come back", async () => {
    const { auth } = await createKey(server, "solo");
    const results = await Promise.all(Array.from({ length: 200 }, () => infer(server, auth)));
    const ok = results.filter((r) => r.status === 200);
    const limited = results.filter((r) => r.status === 429);
    assert.equal(ok.length, 20);
    assert.equal(limited.length, 180);
    for (const r of limited) {
      const error = r.json.error as { code: string; type: string };
      assert.equal(error.code, "rate_limit_exceeded");
      assert.equal(error.type, "rate_limit_error");
      const seconds = Number(r.headers.get("retry-after"));
      const ms = Number(r.headers.get("retry-after-ms"));
      assert.ok(Number.isInteger(seconds) && seconds >= 1 && seconds <= 60, `Retry-After ${seconds}`);
      assert.ok(ms > 0 && ms <= 60_000 && seconds * 1000 >= ms, "Retry-After is never shorter than the real wait");
      assert.equal(r.headers.get("x-ratelimit-limit-requests"), "20");
      assert.equal(r.headers.get("x-ratelimit-remaining-requests"), "0");
      assert.equal(r.headers.get("x-ratelimit-limit-tokens"), null, "the shipped plans cap no tokens");
    }
  });

  it("limits each key on its own, and counts down x-ratelimit-remaining-requests", async () => {
    const a = await createKey(server, "solo");
    const b = await createKey(server, "solo", "live", a.accountId);
    const first = await infer(server, a.auth);
    assert.equal(first.headers.get("x-ratelimit-remaining-requests"), "19");
    const second = await infer(server, a.auth);
    assert.equal(second.headers.get("x-ratelimit-remaining-requests"), "18");
    assert.equal((await infer(server, b.auth)).headers.get("x-ratelimit-remaining-requests"), "19");
    const models = await fetch(`${server.url}/v1/models`, { headers: a.auth });
    assert.equal(models.headers.get("x-ratelimit-remaining-requests"), "18", "GET /v1/models consumes nothing");
  });

  it("keeps the place of an admitted request that failed, while the monthly quota gives it back", async () => {
    const { auth } = await createKey(server, "solo");
    assert.equal((await infer(server, auth)).status, 200);
    // Found too long only once formatted, after admission: not counted in the quota, but it spent a place.
    const tooLong = await postJson(`${server.url}/v1/infer`, { specialist: "classify", prompt: "word ".repeat(6000), max_tokens: 2 }, auth);
    assert.equal(tooLong.status, 400);
    assert.equal((tooLong.json.error as { code: string }).code, "context_length_exceeded");
    const after = await infer(server, auth);
    assert.equal(after.headers.get("x-ratelimit-remaining-requests"), "17");
    const usage = (await (await fetch(`${server.url}/v1/usage`, { headers: auth })).json()) as { requests_used: number };
    assert.equal(usage.requests_used, 2);
  });
});

describe("monthly quota", () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer(
      { plans: { tiny: { requests_per_minute: 1000, requests_per_month: 7, specialists: "*" } }, engine: { parallel: 2, queue: 256 } },
      { gated: true },
    );
  });
  after(async () => {
    await server.close();
  });

  it("never lets concurrent requests overshoot it; the rest get a 429 that says not to retry", async () => {
    const { auth, accountId } = await createKey(server, "tiny");
    const results = await Promise.all(Array.from({ length: 40 }, () => infer(server, auth)));
    assert.equal(results.filter((r) => r.status === 200).length, 7);
    const refused = results.filter((r) => r.status === 429);
    assert.equal(refused.length, 33);
    const now = new Date();
    const periodEnd = Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1);
    for (const r of refused) {
      assert.equal((r.json.error as { code: string }).code, "monthly_quota_exceeded");
      assert.equal(r.headers.get("x-should-retry"), "false");
      const seconds = Number(r.headers.get("retry-after"));
      assert.ok(Math.abs(seconds - (periodEnd - Date.now()) / 1000) < 5, `Retry-After ${seconds} is the time to the period's end`);
    }
    const usage = await fetch(`${server.url}/v1/usage`, { headers: auth }).then((r) => r.json() as Promise<Record<string, unknown>>);
    assert.equal(usage.requests_used, 7);
    assert.equal(usage.requests_limit, 7);
    // A refused request is not in the minute window, and its headers do not count it either.
    const again = await infer(server, auth);
    assert.equal(again.status, 429);
    const models = await fetch(`${server.url}/v1/models`, { headers: auth });
    assert.equal(again.headers.get("x-ratelimit-remaining-requests"), models.headers.get("x-ratelimit-remaining-requests"));
    assert.equal(Number(again.headers.get("x-ratelimit-remaining-requests")), 1000 - 7);
    // Sandbox usage is its own ledger: a test key of the same account still works.
    const sandbox = await createKey(server, "tiny", "test", accountId);
    assert.equal((await infer(server, sandbox.auth)).status, 200);
  });
});

describe("the SQLite file locked by another writer", () => {
  it("answers 503 dependency_unavailable, and the admission it could not write is not counted against the quota", async () => {
    const server = await startTestServer(
      { plans: { tiny: { requests_per_minute: 1000, requests_per_month: 2, specialists: "*" } }, engine: { parallel: 1, queue: 8 } },
      { gated: true },
    );
    try {
      const { auth } = await createKey(server, "tiny");
      // An operator's shell holding a write transaction past the server's busy timeout (5 s).
      const shell = new Database(join(server.config.dataDir, "alveare.db"));
      shell.exec("BEGIN IMMEDIATE");
      let refused: Awaited<ReturnType<typeof infer>>;
      try {
        refused = await infer(server, auth);
      } finally {
        shell.exec("ROLLBACK");
        shell.close();
      }
      assert.equal(refused.status, 503);
      assert.equal((refused.json.error as { code: string }).code, "dependency_unavailable");
      assert.ok(Number(refused.headers.get("retry-after")) > 0);
      // The quota of 2 is whole: two requests served, the third refused.
      assert.deepEqual([(await infer(server, auth)).status, (await infer(server, auth)).status, (await infer(server, auth)).status], [200, 200, 429]);
    } finally {
      await server.close();
    }
  });
});

/**
 * Sends `send` while another connection (an operator's shell) holds the SQLite file's write lock, and checks
 * that the server keeps answering meanwhile: SQLite's own busy wait sleeps in the calling thread, so a write
 * waiting on the request path would have held up every request until it gave up. Releases the lock, then
 * resolves to what `send` got.
 */
async function whileLocked<T>(server: TestServer, send: () => Promise<T>): Promise<T> {
  const shell = new Database(join(server.config.dataDir, "alveare.db"));
  shell.exec("BEGIN IMMEDIATE");
  let answered = false;
  const started = performance.now();
  const sent = send().finally(() => {
    answered = true;
  });
  try {
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal((await fetch(`${server.url}/health`)).status, 200);
    assert.ok(performance.now() - started < 2_000, `health answered ${Math.round(performance.now() - started)} ms after the request`);
    assert.equal(answered, false, "the request's write is still waiting for the lock");
  } finally {
    shell.exec("ROLLBACK");
    shell.close();
  }
  return sent;
}

describe("a commit waiting for the SQLite file's lock", () => {
  it("waits off the event loop: the server keeps answering, and the request is admitted once the lock is released", async () => {
    const server = await startTestServer(
      { plans: { tiny: { requests_per_minute: 1000, requests_per_month: 5, specialists: "*" } } },
      { gated: true },
    );
    try {
      const { auth } = await createKey(server, "tiny");
      // The request's writes (its key's last-used time, its admission) hold nothing up.
      assert.equal((await whileLocked(server, () => infer(server, auth))).status, 200);
      const usage = await fetch(`${server.url}/v1/usage`, { headers: auth });
      assert.equal(((await usage.json()) as { requests_used: number }).requests_used, 1);
    } finally {
      await server.close();
    }
  });
});

describe("a failed admin token while another process holds the SQLite file's lock", () => {
  it("is counted in the audit log off the event loop: the server keeps answering meanwhile", async () => {
    const token = "t".repeat(32);
    const server = await startTestServer({}, { gated: true, env: { ALVEARE_ADMIN_TOKEN: token } });
    try {
      // No key and a wrong admin token: anyone can send this, and its failure is counted in the audit log.
      const guess = await whileLocked(server, () => fetch(`${server.url}/admin/api/accounts`, { headers: { authorization: `Bearer ${token}x` } }));
      assert.equal(guess.status, 401);
      const audit = await fetch(`${server.url}/admin/api/audit?action=admin_token.failed`, { headers: { authorization: `Bearer ${token}` } });
      const records = ((await audit.json()) as { data: Array<{ count: number }> }).data;
      assert.equal(
        records.reduce((n, r) => n + r.count, 0),
        1,
      );
    } finally {
      await server.close();
    }
  });
});

describe("dashboard and admin changes while another process holds the SQLite file's lock", () => {
  it("wait off the event loop: the server keeps answering, and each change lands once the lock is released", async () => {
    const token = "t".repeat(32);
    const server = await startTestServer({}, { gated: true, env: { ALVEARE_ADMIN_TOKEN: token } });
    const admin = (method: string, path: string, body?: unknown) =>
      fetch(`${server.url}/admin/api${path}`, {
        method,
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    try {
      // Each: the change's own write, then its audit record.
      const operator = new Browser(server, "127.0.0.3");
      assert.equal((await whileLocked(server, () => operator.call("POST", "/dashboard/api/admin-login", { token }))).status, 200);
      const account = await whileLocked(server, () => admin("POST", "/accounts", { name: "locked-co", plan: "starter" }));
      assert.equal(account.status, 201);
      const accountId = ((await account.json()) as { id: string }).id;
      const key = await whileLocked(server, () => admin("POST", `/accounts/${accountId}/keys`, {}));
      assert.equal(key.status, 201);
      const { id: keyId } = (await key.json()) as { id: string };
      const invite = await whileLocked(server, () =>
        operator.call("POST", `/admin/api/accounts/${accountId}/invitations`, { email: "lock@example.com" }),
      );
      assert.equal(invite.status, 201);
      const invitation = /#invite=(\w+)$/.exec(invite.json.invite_path as string)![1]!;
      const member = new Browser(server, "127.0.0.4");
      const joined = await whileLocked(server, () =>
        member.call("POST", "/dashboard/api/invitations/accept", { token: invitation, password: "a long enough password" }),
      );
      assert.equal(joined.status, 200);
      assert.equal((await whileLocked(server, () => admin("POST", `/keys/${keyId}/revoke`))).status, 200);
      assert.equal((await whileLocked(server, () => admin("PATCH", `/accounts/${accountId}`, { status: "suspended" }))).status, 200);

      const landed = (await (await admin("GET", `/accounts/${accountId}`)).json()) as { status: string };
      assert.equal(landed.status, "suspended");
      const keys = (await (await admin("GET", `/accounts/${accountId}/keys`)).json()) as { data: Array<{ revoked_at: string | null }> };
      assert.notEqual(keys.data[0]!.revoked_at, null);
      const audit = (await (await admin("GET", `/audit?account=${accountId}`)).json()) as { data: Array<{ action: string }> };
      for (const action of ["account.created", "key.created", "member.invited", "member.joined", "key.revoked", "account.suspended"]) {
        assert.ok(
          audit.data.some((r) => r.action === action),
          `${action} in ${audit.data.map((r) => r.action).join(", ")}`,
        );
      }
    } finally {
      await server.close();
    }
  });
});

describe("reads while another process rebuilds the SQLite file's WAL index", () => {
  it("wait for it off the event loop, as writes do, instead of failing at once", { skip: !canFakeRecovery }, async () => {
    const token = "t".repeat(32);
    const server = await startTestServer({}, { gated: true, env: { ALVEARE_ADMIN_TOKEN: token } });
    const admin = (path: string) => fetch(`${server.url}/admin/api${path}`, { headers: { authorization: `Bearer ${token}` } });
    try {
      const { auth } = await createKey(server, "starter");
      const recovery = await fakeWalRecovery(join(server.config.dataDir, "alveare.db"));
      let pending: Array<Promise<number>>;
      try {
        // A key's lookup and its month's counter (every request's reads), an operator's listing and audit query.
        pending = [infer(server, auth).then((r) => r.status), admin("/accounts").then((r) => r.status), admin("/audit").then((r) => r.status)];
        await sleep(300);
        assert.equal((await fetch(`${server.url}/health`)).status, 200);
      } finally {
        await recovery.release();
      }
      assert.deepEqual(await Promise.all(pending), [200, 200, 200]);
    } finally {
      await server.close();
    }
  });
});

describe("metering", () => {
  const fake = new FakeUpstream();
  let server: TestServer;
  before(async () => {
    const base = await fake.start();
    fake.fault = "500";
    server = await startTestServer(
      {
        specialists: { broken: { description: "always fails upstream", system_prompt: "", remote: { base_url: base, model: "m" } } },
        plans: { starter: { specialists: ["classify", "summarise", "extract", "qa", "chat", "broken"] } },
      },
      { gated: true },
    );
  });
  after(async () => {
    await server.close();
    await fake.stop();
  });

  it("adds up a known mix of requests exactly, in /v1/usage and in the CLI", async () => {
    const live = await createKey(server, "starter");
    const sandbox = await createKey(server, "starter", "test", live.accountId);
    let tokens = 0;
    for (const specialist of ["classify", "classify", "summarise"]) {
      const r = await postJson(`${server.url}/v1/infer`, { specialist, prompt: "Revenue grew 23%", max_tokens: 5 }, live.auth);
      assert.equal(r.status, 200);
      tokens += r.json.tokens_used as number;
    }
    const chat = await postJson(
      `${server.url}/v1/chat/completions`,
      { model: "alveare-chat", messages: [{ role: "user", content: "hi" }], max_tokens: 4 },
      live.auth,
    );
    const chatUsage = chat.json.usage as { total_tokens: number };
    tokens += chatUsage.total_tokens;
    // Rejected before admission (4xx): not counted.
    assert.equal((await postJson(`${server.url}/v1/infer`, { specialist: "classify" }, live.auth)).status, 400);
    assert.equal((await postJson(`${server.url}/v1/infer`, { specialist: "code", prompt: "x" }, live.auth)).status, 403);
    // A server error is given back.
    assert.equal((await postJson(`${server.url}/v1/infer`, { specialist: "broken", prompt: "x" }, live.auth)).status, 502);
    // A stream the client abandons is counted, with the tokens actually produced.
    await new Promise<void>((resolve) => {
      const url = new URL(`${server.url}/v1/chat/completions`);
      const req = request(
        { host: url.hostname, port: url.port, path: url.pathname, method: "POST", headers: { "content-type": "application/json", ...live.auth } },
        (res) => {
          res.once("data", () => {
            req.destroy();
            resolve();
          });
        },
      );
      req.on("error", () => resolve());
      req.end(JSON.stringify({ model: "alveare-chat", messages: [{ role: "user", content: "talk" }], max_tokens: 4000, stream: true }));
    });
    // Sandbox traffic never touches the live numbers.
    assert.equal((await postJson(`${server.url}/v1/infer`, { specialist: "qa", prompt: "x", max_tokens: 2 }, sandbox.auth)).status, 200);
    const abandoned = await until("the abandoned stream's line", () => server.logs.requests().find((l) => l.aborted === true));
    tokens += (abandoned.prompt_tokens as number) + (abandoned.completion_tokens as number);

    const usage = await fetch(`${server.url}/v1/usage`, { headers: live.auth }).then((r) => r.json() as Promise<Record<string, unknown>>);
    assert.deepEqual(Object.keys(usage), ["period_start", "period_end", "requests_used", "requests_limit", "tokens_used", "by_specialist"]);
    assert.match(usage.period_start as string, /^\d{4}-\d{2}-01T00:00:00Z$/);
    assert.match(usage.period_end as string, /^\d{4}-\d{2}-(28|29|30|31)T23:59:59Z$/);
    assert.equal(usage.requests_used, 5);
    assert.equal(usage.requests_limit, 100_000);
    assert.equal(usage.tokens_used, tokens);
    assert.deepEqual(usage.by_specialist, { chat: 2, classify: 2, summarise: 1 });
    const sandboxUsage = await fetch(`${server.url}/v1/usage`, { headers: sandbox.auth }).then((r) => r.json() as Promise<Record<string, unknown>>);
    assert.equal(sandboxUsage.requests_used, 1);
    assert.deepEqual(sandboxUsage.by_specialist, { qa: 1 });

    const fromCli = cliJson(["usage", "--account", live.accountId, "--data-dir", server.config.dataDir]);
    assert.deepEqual(fromCli, usage);
  });
});
