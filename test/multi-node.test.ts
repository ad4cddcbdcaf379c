import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Redis } from "ioredis";
import { billingPeriod } from "../src/metering/billing-period.js";
import { FakeUpstream } from "./helpers/fake-upstream.js";
import { cliJson, postJson, spawnServe, tempDir, tinyModel } from "./helpers/fixtures.js";
import { dropDatabase, freshDatabase } from "./helpers/postgres.js";
import { deletePrefix, SHARED_REDIS_URL, testPrefix } from "./helpers/redis.js";

const ADMIN_TOKEN = "m".repeat(40);
const NODES = 3;

type Response = Awaited<ReturnType<typeof postJson>>;
const codeOf = (r: Response): string | undefined => (r.json.error as { code?: string } | undefined)?.code;

describe("three nodes on one PostgreSQL and one Redis", () => {
  const fake = new FakeUpstream();
  const prefix = testPrefix("nodes");
  let databaseUrl: string;
  let env: NodeJS.ProcessEnv;
  const nodes: Array<{ child: ChildProcess; url: string }> = [];
  const infer = (node: number, auth: Record<string, string>) =>
    postJson(`${nodes[node % nodes.length]!.url}/v1/infer`, { specialist: "echo", prompt: "hi", max_tokens: 4 }, auth).catch(
      (error: unknown) => ({ status: 0, headers: new Headers(), json: { error: { code: String(error) } } }) as Response,
    );
  const cli = (args: string[]) => cliJson(args, env);
  function key(plan: string): { accountId: string; keyId: string; auth: Record<string, string> } {
    const account = cli(["accounts", "create", "--name", `n-${plan}`, "--plan", plan]);
    const created = cli(["keys", "create", "--account", String(account.id)]);
    return { accountId: String(account.id), keyId: String(created.id), auth: { authorization: `Bearer ${String(created.key)}` } };
  }

  before(async () => {
    databaseUrl = await freshDatabase();
    const dir = tempDir();
    const config = join(dir, "config.json");
    writeFileSync(
      config,
      JSON.stringify({
        specialists: { echo: { description: "answers at once", system_prompt: "", remote: { base_url: await fake.start(), model: "m" } } },
        plans: {
          solo: { requests_per_minute: 20, requests_per_month: 100_000, specialists: "*" },
          roomy: { requests_per_minute: 1000, requests_per_month: 100_000, specialists: "*" },
          tight: { requests_per_minute: 1000, requests_per_month: 15, specialists: "*" },
          brief: { requests_per_minute: 3, requests_per_month: 3, specialists: "*" },
        },
      }),
    );
    env = {
      ...process.env,
      ALVEARE_THREADS: "1",
      ALVEARE_LOG_LEVEL: "warn",
      ALVEARE_CONFIG: config,
      ALVEARE_DATA_DIR: join(dir, "data"),
      ALVEARE_DATABASE_URL: databaseUrl,
      ALVEARE_REDIS_URL: SHARED_REDIS_URL,
      ALVEARE_REDIS_PREFIX: prefix,
      ALVEARE_ADMIN_TOKEN: ADMIN_TOKEN,
      // Long enough that a loaded machine never lets a live node's lease run out.
      ALVEARE_NODE_LEASE_SECONDS: "5",
    };
    const model = await tinyModel();
    // One after the other: the first applies the migrations, the others find them applied.
    for (let i = 0; i < NODES; i++) nodes.push(await spawnServe(["--model", model], { ...env, ALVEARE_LOG_LEVEL: "info" }));
  });

  after(async () => {
    for (const { child } of nodes) if (child.exitCode === null) child.kill("SIGKILL");
    fake.release();
    await fake.stop();
    await deletePrefix(prefix);
    await dropDatabase(databaseUrl);
  });

  it("admits exactly 20 of a 200-request burst spread round-robin, and tells the other 180 honestly when to retry", async () => {
    const { auth } = key("solo");
    const results = await Promise.all(Array.from({ length: 200 }, (_, i) => infer(i, auth)));
    const outcomes: Record<string, number> = {};
    for (const r of results) outcomes[`${r.status} ${codeOf(r) ?? ""}`] = (outcomes[`${r.status} ${codeOf(r) ?? ""}`] ?? 0) + 1;
    assert.equal(results.filter((r) => r.status === 200).length, 20, JSON.stringify(outcomes));
    const refused = results.filter((r) => r.status !== 200);
    assert.equal(refused.length, 180);
    for (const r of refused) {
      assert.equal(r.status, 429);
      assert.equal(codeOf(r), "rate_limit_exceeded");
      const ms = Number(r.headers.get("retry-after-ms"));
      const seconds = Number(r.headers.get("retry-after"));
      assert.ok(ms > 0 && ms <= 60_000 && seconds * 1000 >= ms, `Retry-After ${seconds} s / ${ms} ms`);
    }
  });

  it("admits exactly the 10 requests left of a monthly quota out of 60 at once over the nodes", async () => {
    const { auth } = key("tight");
    for (let i = 0; i < 5; i++) assert.equal((await infer(i, auth)).status, 200);
    const results = await Promise.all(Array.from({ length: 60 }, (_, i) => infer(i, auth)));
    assert.equal(results.filter((r) => r.status === 200).length, 10);
    for (const r of results.filter((x) => x.status !== 200)) assert.equal(codeOf(r), "monthly_quota_exceeded");
  });

  it("refuses a burst over a used-up monthly quota as monthly_quota_exceeded: its refusals take no place in the key's window", async () => {
    const { auth, accountId } = key("brief");
    for (let i = 0; i < 3; i++) assert.equal((await infer(i, auth)).status, 200);
    // A second key of the account: its window (3 a minute) is empty, the account's quota (3 a month) used up.
    const other = { authorization: `Bearer ${String(cli(["keys", "create", "--account", accountId]).key)}` };
    const results = await Promise.all(Array.from({ length: 12 }, (_, i) => infer(i, other)));
    const outcomes: Record<string, number> = {};
    for (const r of results) outcomes[`${r.status} ${codeOf(r) ?? ""}`] = (outcomes[`${r.status} ${codeOf(r) ?? ""}`] ?? 0) + 1;
    // Before, the requests the window let in held its places while the quota refused them: the rest got
    // rate_limit_exceeded with a Retry-After of a minute, after which the quota refused them anyway.
    assert.deepEqual(outcomes, { "429 monthly_quota_exceeded": 12 });
    for (const r of results) assert.equal(r.headers.get("x-ratelimit-remaining-requests"), "3");
    // So too once the quota's counter in Redis has run out (each lives a minute, then is read from the ledger again).
    const redis = new Redis(SHARED_REDIS_URL);
    try {
      assert.equal(await redis.del(`${prefix}quota:{${accountId}}:live:${billingPeriod(new Date()).key}`), 1);
    } finally {
      redis.disconnect();
    }
    const again = await Promise.all(Array.from({ length: 12 }, (_, i) => infer(i, other)));
    assert.deepEqual(
      again.map((r) => codeOf(r)),
      again.map(() => "monthly_quota_exceeded"),
    );
  });

  it("refuses a key revoked through the CLI on the very next request on each node", async () => {
    const { auth, keyId } = key("roomy");
    for (let i = 0; i < NODES; i++) assert.equal((await infer(i, auth)).status, 200, "every node has the key cached");
    cli(["keys", "revoke", keyId]);
    for (let i = 0; i < NODES; i++) {
      const r = await infer(i, auth);
      assert.equal(r.status, 401);
      assert.equal(codeOf(r), "revoked_api_key");
    }
  });

  it("applies a plan downgrade through the admin API on the next request on each node", async () => {
    const { auth, accountId } = key("roomy");
    for (let i = 0; i < NODES; i++) assert.equal((await infer(i, auth)).headers.get("x-ratelimit-limit-requests"), "1000");
    const patched = await fetch(`${nodes[1]!.url}/admin/api/accounts/${accountId}`, {
      method: "PATCH",
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ plan: "solo" }),
    });
    assert.equal(patched.status, 200);
    for (let i = 0; i < NODES; i++) assert.equal((await infer(i, auth)).headers.get("x-ratelimit-limit-requests"), "20");
  });

  it("answers GET /v1/usage the same on every node, equal to the ledger", async () => {
    const { auth, accountId } = key("roomy");
    for (let i = 0; i < 7; i++) assert.equal((await infer(i, auth)).status, 200);
    const usages = await Promise.all(nodes.map(async ({ url }) => (await fetch(`${url}/v1/usage`, { headers: auth })).json()));
    for (const usage of usages.slice(1)) assert.deepEqual(usage, usages[0]);
    const ledger = cli(["usage", "--account", accountId]);
    assert.deepEqual(usages[0], ledger);
    assert.equal(ledger.requests_used, 7);
  });

  it("loses nothing when a node is killed mid-burst: every 2xx is in the ledger, the dead node's unfinished rows are settled by the survivors", async () => {
    const { auth, accountId } = key("roomy");
    fake.requests = [];
    fake.fault = "hold";
    const burst = Promise.all(Array.from({ length: 30 }, (_, i) => infer(i, auth)));
    const reached = Date.now() + 60_000;
    while (fake.requests.length < 30) {
      assert.ok(Date.now() < reached, `only ${fake.requests.length} of the 30 requests reached the upstream in a minute`);
      await new Promise((r) => setTimeout(r, 20));
    }
    nodes[2]!.child.kill("SIGKILL");
    await new Promise((r) => nodes[2]!.child.once("exit", r));
    fake.release();
    fake.fault = "ok";
    const results = await burst;
    const served = results.filter((r) => r.status >= 200 && r.status < 300).length;
    assert.equal(served, 20, "the two survivors served theirs");
    // The dead node's 10 rows stay open until its lease runs out; then a survivor closes them as not delivered.
    let used = -1;
    const settled = Date.now() + 60_000; // the 5 s lease, a settling round, and a loaded machine
    for (;;) {
      used = Number(cli(["usage", "--account", accountId]).requests_used);
      if (used === served || Date.now() > settled) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    assert.equal(used, served, "the ledger counts exactly what clients received");
    nodes.pop();
    for (let i = 0; i < NODES - 1; i++) assert.equal((await infer(i, auth)).status, 200, "the survivors go on");
  });
});
