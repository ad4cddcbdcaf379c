import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createKey, postJson, startTestServer, type TestServer } from "./helpers/fixtures.js";

const TOKEN = "operator-token-for-tests-0123456789";
const admin = { authorization: `Bearer ${TOKEN}` };

async function call(server: TestServer, method: string, path: string, body?: unknown, headers: Record<string, string> = admin) {
  const response = await fetch(`${server.url}/admin/api${path}`, {
    method, headers: { ...(body === undefined ? {} : { "content-type": "application/json" }), ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: response.status, json: (await response.json()) as Record<string, unknown> };
}

const ROUTES: Array<[string, string, unknown?]> = [
  ["GET", "/accounts"],
  ["POST", "/accounts", { name: "x", plan: "solo" }],
  ["GET", "/accounts/acct_x"],
  ["PATCH", "/accounts/acct_x", { plan: "solo" }],
  ["GET", "/accounts/acct_x/keys"],
  ["POST", "/accounts/acct_x/keys", { mode: "live" }],
  ["POST", "/keys/key_x/revoke"],
  ["GET", "/accounts/acct_x/usage"],
];

describe("admin API", () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({}, { gated: true, env: { ALVEARE_ADMIN_TOKEN: TOKEN } });
  });
  after(async () => {
    await server.close();
  });

  for (const [method, path, body] of ROUTES) {
    it(`${method} ${path} refuses anonymous callers, wrong tokens and customers' API keys`, async () => {
      const anonymous = await call(server, method, path, body, {});
      assert.equal(anonymous.status, 401);
      const wrong = await call(server, method, path, body, { authorization: `Bearer ${TOKEN}x` });
      assert.equal(wrong.status, 401);
      assert.equal((wrong.json.error as { code: string }).code, "invalid_admin_token");
      const customer = await createKey(server, "scale");
      assert.equal((await call(server, method, path, body, customer.auth)).status, 401);
    });
  }

  it("runs an account's life: create, key, plan change, suspension, usage, revocation", async () => {
    const created = await call(server, "POST", "/accounts", { name: "acme", plan: "professional" });
    assert.equal(created.status, 201);
    const id = created.json.id as string;
    assert.match(id, /^acct_/);
    assert.ok(((await call(server, "GET", "/accounts")).json.data as Array<{ id: string }>).some((a) => a.id === id));

    const key = await call(server, "POST", `/accounts/${id}/keys`, { mode: "live", name: "ci" });
    assert.equal(key.status, 201);
    const secret = key.json.key as string;
    assert.match(secret, /^alv_live_[0-9A-Za-z]{40}$/);
    const auth = { authorization: `Bearer ${secret}` };
    assert.equal((await postJson(`${server.url}/v1/infer`, { specialist: "code", prompt: "x", max_tokens: 2 }, auth)).status, 200);

    const keys = await call(server, "GET", `/accounts/${id}/keys`);
    const listed = (keys.json.data as Array<Record<string, unknown>>)[0]!;
    assert.equal(listed.name, "ci");
    assert.ok(!JSON.stringify(keys.json).includes(secret), "the secret is shown once, never listed");
    assert.ok(listed.last_used_at, "last use is recorded");

    const usage = await call(server, "GET", `/accounts/${id}/usage`);
    assert.equal(usage.json.requests_used, 1);
    assert.deepEqual(usage.json.by_specialist, { code: 1 });

    assert.equal((await call(server, "PATCH", `/accounts/${id}`, { plan: "solo" })).json.plan, "solo");
    const denied = await postJson(`${server.url}/v1/infer`, { specialist: "code", prompt: "x" }, auth);
    assert.equal((denied.json.error as { code: string }).code, "specialist_not_in_plan");

    assert.equal((await call(server, "PATCH", `/accounts/${id}`, { status: "suspended" })).json.status, "suspended");
    const suspended = await postJson(`${server.url}/v1/infer`, { specialist: "classify", prompt: "x" }, auth);
    assert.equal(suspended.status, 403);
    assert.equal((suspended.json.error as { code: string }).code, "account_suspended");
    await call(server, "PATCH", `/accounts/${id}`, { status: "active" });
    assert.equal((await postJson(`${server.url}/v1/infer`, { specialist: "classify", prompt: "x", max_tokens: 2 }, auth)).status, 200);

    assert.equal((await call(server, "POST", `/keys/${key.json.id as string}/revoke`)).status, 200);
    const revoked = await postJson(`${server.url}/v1/infer`, { specialist: "classify", prompt: "x" }, auth);
    assert.equal((revoked.json.error as { code: string }).code, "revoked_api_key");
  });

  it("answers mistakes in the error shape", async () => {
    const badPlan = await call(server, "POST", "/accounts", { name: "x", plan: "gold" });
    assert.equal(badPlan.status, 400);
    assert.match((badPlan.json.error as { message: string }).message, /gold/);
    assert.equal((await call(server, "POST", "/accounts", { plan: "solo" })).status, 400);
    assert.equal((await call(server, "GET", "/accounts/acct_nope")).status, 404);
    assert.equal((await call(server, "POST", "/keys/key_nope/revoke")).status, 404);
    assert.equal((await call(server, "PATCH", "/accounts/acct_nope", { status: "frozen" })).status, 400);
    // A plan name is looked up as the table's own key, never one its prototype has.
    for (const plan of ["constructor", "toString", "__proto__"]) {
      assert.equal((await call(server, "POST", "/accounts", { name: "x", plan })).status, 400, plan);
    }
    const account = await call(server, "POST", "/accounts", { name: "x", plan: "solo" });
    const patched = await call(server, "PATCH", `/accounts/${String(account.json.id)}`, { plan: "hasOwnProperty" });
    assert.deepEqual([patched.status, (patched.json.error as { code: string }).code], [400, "invalid_parameter"]);
  });
});

describe("admin API without ALVEARE_ADMIN_TOKEN", () => {
  it("does not exist", async () => {
    const server = await startTestServer({}, { gated: true });
    try {
      const r = await call(server, "GET", "/accounts", undefined, { authorization: "Bearer anything" });
      assert.equal(r.status, 404);
    } finally {
      await server.close();
    }
  });
});
