import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Browser } from "./helpers/dashboard-client.js";
import { postJson, startTestServer, type TestServer } from "./helpers/fixtures.js";

const TOKEN = "operator-token-for-usage-rule-tests-0123";
const admin = { authorization: `Bearer ${TOKEN}` };

describe("what counts, key limits and plan names over HTTP", () => {
  let server: TestServer;
  const call = async (method: string, path: string, body?: unknown) => {
    const response = await fetch(`${server.url}/admin/api${path}`, {
      method,
      headers: { ...admin, ...(body === undefined ? {} : { "content-type": "application/json" }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: response.status, json: (await response.json()) as Record<string, unknown> };
  };
  const errorOf = (json: Record<string, unknown>) => json.error as { type: string; code: string; param: string | null; message: string };
  const newAccount = async (plan = "capped"): Promise<string> => {
    const created = await call("POST", "/accounts", { name: "acme", plan });
    assert.equal(created.status, 201, JSON.stringify(created.json));
    return created.json.id as string;
  };
  const memberOf = async (accountId: string, email: string): Promise<Browser> => {
    const invite = await call("POST", `/accounts/${accountId}/invitations`, { email });
    assert.equal(invite.status, 201);
    const member = new Browser(server);
    const token = /#invite=(\w+)$/.exec(invite.json.invite_path as string)![1]!;
    assert.equal((await member.call("POST", "/dashboard/api/invitations/accept", { token, password: "a long and unusual passphrase" })).status, 200);
    return member;
  };

  before(async () => {
    server = await startTestServer(
      {
        plans: { capped: { requests_per_minute: 100, requests_per_month: 1000, specialists: "*", max_keys: 2 } },
        specialists: { tiny: { description: "tiny context", system_prompt: "Be brief.", context_size: 64 } },
      },
      { gated: true, env: { ALVEARE_ADMIN_TOKEN: TOKEN } },
    );
  });
  after(async () => {
    await server.close();
  });

  it("gives back a 4xx found after admission everywhere: requests, by_specialist, tokens and the daily chart", async () => {
    const accountId = await newAccount();
    const key = await call("POST", `/accounts/${accountId}/keys`, { mode: "live" });
    const auth = { authorization: `Bearer ${key.json.key as string}` };
    const served = await postJson(`${server.url}/v1/infer`, { specialist: "classify", prompt: "ok", max_tokens: 3 }, auth);
    assert.equal(served.status, 200);
    const tooLong = await postJson(`${server.url}/v1/infer`, { specialist: "tiny", prompt: "word ".repeat(200) }, auth);
    assert.equal(tooLong.status, 400);
    assert.equal(errorOf(tooLong.json).code, "context_length_exceeded");

    const expected = { requests_used: 1, tokens_used: served.json.tokens_used, by_specialist: { classify: 1 } };
    const pick = (u: Record<string, unknown>) => ({ requests_used: u.requests_used, tokens_used: u.tokens_used, by_specialist: u.by_specialist });
    const v1 = await fetch(`${server.url}/v1/usage`, { headers: auth });
    assert.deepEqual(pick((await v1.json()) as Record<string, unknown>), expected);
    assert.deepEqual(pick((await call("GET", `/accounts/${accountId}/usage`)).json), expected);
    const dashboard = await (await memberOf(accountId, "rule@example.com")).call("GET", "/dashboard/api/usage");
    const live = dashboard.json.live as Record<string, unknown>;
    assert.deepEqual(pick(live), expected);
    assert.deepEqual(Object.values(live.daily as Record<string, number>), [1]);
  });

  it("caps unrevoked keys per account and mode at the plan's max_keys, through the admin API", async () => {
    const accountId = await newAccount();
    const first = await call("POST", `/accounts/${accountId}/keys`, { mode: "live" });
    assert.equal((await call("POST", `/accounts/${accountId}/keys`, { mode: "live" })).status, 201);
    const third = await call("POST", `/accounts/${accountId}/keys`, { mode: "live" });
    assert.equal(third.status, 403);
    assert.equal(errorOf(third.json).type, "permission_error");
    assert.equal(errorOf(third.json).code, "key_limit_reached");
    assert.equal((await call("POST", `/accounts/${accountId}/keys`, { mode: "test" })).status, 201);
    assert.equal((await call("POST", `/keys/${first.json.id as string}/revoke`)).status, 200);
    assert.equal((await call("POST", `/accounts/${accountId}/keys`, { mode: "live" })).status, 201);
  });

  it("caps a member's key creations per day (create and revoke without end would grow every key list), never the operator's", async () => {
    const accountId = await newAccount();
    const member = await memberOf(accountId, "churn@example.com");
    // max_keys 2: a member may create 4 × 2 = 8 keys of a mode in any 24 hours, revoked ones included.
    for (let i = 0; i < 8; i++) {
      const created = await member.call("POST", "/dashboard/api/keys", { mode: "live" });
      assert.equal(created.status, 201, JSON.stringify(created.json));
      assert.equal((await member.call("POST", `/dashboard/api/keys/${created.json.id as string}/revoke`, {})).status, 200);
    }
    const ninth = await member.call("POST", "/dashboard/api/keys", { mode: "live" });
    assert.equal(ninth.status, 403);
    assert.equal(errorOf(ninth.json).code, "key_limit_reached");
    assert.match(errorOf(ninth.json).message, /created 8 live API keys in the last 24 hours/);
    assert.equal((await member.call("POST", "/dashboard/api/keys", { mode: "test" })).status, 201, "per mode");
    assert.equal((await call("POST", `/accounts/${accountId}/keys`, { mode: "live" })).status, 201, "the operator's are not capped per day");
  });

  it("caps keys created on the dashboard and refuses them while the account is suspended", async () => {
    const accountId = await newAccount();
    const member = await memberOf(accountId, "keys@example.com");
    assert.equal((await member.call("POST", "/dashboard/api/keys", { mode: "live" })).status, 201);
    assert.equal((await member.call("POST", "/dashboard/api/keys", { mode: "live" })).status, 201);
    const third = await member.call("POST", "/dashboard/api/keys", { mode: "live" });
    assert.equal(third.status, 403);
    assert.equal(errorOf(third.json).code, "key_limit_reached");

    assert.equal((await call("PATCH", `/accounts/${accountId}`, { status: "suspended" })).status, 200);
    for (const refused of [
      await member.call("POST", "/dashboard/api/keys", { mode: "test" }),
      await call("POST", `/accounts/${accountId}/keys`, { mode: "test" }),
    ]) {
      assert.equal(refused.status, 403);
      assert.equal(errorOf(refused.json).type, "permission_error");
      assert.equal(errorOf(refused.json).code, "account_suspended");
    }
    assert.equal((await call("PATCH", `/accounts/${accountId}`, { status: "active" })).status, 200);
    assert.equal((await call("POST", `/accounts/${accountId}/keys`, { mode: "test" })).status, 201);
  });

  it("refuses plan names that only the prototype knows, naming the plan parameter", async () => {
    const accountId = await newAccount("solo");
    for (const plan of ["constructor", "__proto__", "hasOwnProperty", "toString", "nope"]) {
      for (const r of [await call("POST", "/accounts", { name: "x", plan }), await call("PATCH", `/accounts/${accountId}`, { plan })]) {
        assert.equal(r.status, 400, `${plan}: ${JSON.stringify(r.json)}`);
        assert.equal(errorOf(r.json).code, "invalid_parameter");
        assert.equal(errorOf(r.json).param, "plan");
      }
    }
    const key = await call("POST", `/accounts/${accountId}/keys`, { mode: "live" });
    const served = await postJson(
      `${server.url}/v1/infer`,
      { specialist: "classify", prompt: "ok", max_tokens: 2 },
      { authorization: `Bearer ${key.json.key as string}` },
    );
    assert.equal(served.status, 200);
    assert.equal(served.headers.get("x-ratelimit-limit-requests"), "20");
  });

  it("validates the dashboard's usage period", async () => {
    const member = await memberOf(await newAccount(), "period@example.com");
    for (const period of ["0000-01", "1969-12", "2026-13", "2026-00", "2026-1"]) {
      const r = await member.call("GET", `/dashboard/api/usage?period=${period}`);
      assert.equal(r.status, 400, period);
      assert.equal(errorOf(r.json).code, "invalid_parameter");
      assert.equal(errorOf(r.json).param, "period");
    }
    const march = await member.call("GET", "/dashboard/api/usage?period=2026-03");
    assert.equal(march.status, 200);
    assert.equal((march.json.live as Record<string, unknown>).period_start, "2026-03-01T00:00:00Z");
    assert.equal((march.json.live as Record<string, unknown>).period_end, "2026-03-31T23:59:59Z");
  });
});
