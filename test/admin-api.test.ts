import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import Database from "better-sqlite3";
import { databasePath, loadConfig } from "../src/config/config.js";
import { createKey, postJson, startTestServer, type TestServer } from "./helpers/fixtures.js";
import { errorCode, requestFrom } from "./helpers/loopback-client.js";
import { until } from "./helpers/until.js";

const TOKEN = "operator-token-for-tests-0123456789";
const admin = { authorization: `Bearer ${TOKEN}` };

/** An admin API call from a loopback address of its own (wrong tokens are limited per address). */
async function call(server: TestServer, method: string, path: string, body?: unknown, headers: Record<string, string> = admin, from = "127.0.0.1") {
  return requestFrom(from, `${server.url}/admin/api${path}`, { method, headers, body });
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
  ["GET", "/plans"],
];

describe("admin API", () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer(
      { plans: { team: { requests_per_minute: 600, requests_per_month: 300_000, tokens_per_minute: 100_000, specialists: ["chat"] } } },
      { gated: true, env: { ALVEARE_ADMIN_TOKEN: TOKEN } },
    );
  });
  after(async () => {
    await server.close();
  });

  it("says an account's plan is gone from the config on the gate, and still shows the operator its usage (a limit of 0), never a 500", async () => {
    const orphan = await createKey(server, "team");
    // As after a config change that removed the plan while accounts were on it.
    const db = new Database(databasePath(server.config));
    db.prepare("UPDATE accounts SET plan = 'retired' WHERE id = ?").run(orphan.accountId);
    db.close();
    const refused = await postJson(`${server.url}/v1/infer`, { specialist: "chat", prompt: "x", max_tokens: 2 }, orphan.auth);
    assert.equal(refused.status, 403);
    assert.equal(errorCode(refused.json), "specialist_not_in_plan");
    // It read "Your plan (retired) does not include the specialist 'any'."
    assert.match((refused.json.error as { message: string }).message, /plan 'retired' is not one this server serves/);
    // The operator's page read this as a 403 and showed nothing of the account, not even its plan control.
    const usage = await call(server, "GET", `/accounts/${orphan.accountId}/usage`);
    assert.equal(usage.status, 200, JSON.stringify(usage.json));
    assert.equal(usage.json.requests_limit, 0, "a plan not served allows no request");
    assert.equal(usage.json.requests_used, 0, "the refused request was not metered");
    // Moved to a served plan, its keys work again.
    assert.equal((await call(server, "PATCH", `/accounts/${orphan.accountId}`, { plan: "team" })).status, 200);
    assert.equal((await postJson(`${server.url}/v1/infer`, { specialist: "chat", prompt: "x", max_tokens: 2 }, orphan.auth)).status, 200);
  });

  it("warns at start of accounts on plans the config does not define, naming the plans and how many", async () => {
    await createKey(server, "team");
    const dataDir = server.config.dataDir;
    const later = await startTestServer({ data_dir: dataDir }, { gated: true, env: { ALVEARE_ADMIN_TOKEN: TOKEN } });
    try {
      const line = await until("the start-up warning", () => later.logs.records().find((r) => String(r.msg).startsWith("accounts on plans")));
      assert.equal(line.level, 40);
      // This server's config has no "team" plan: every account the tests above put on it is counted.
      const teamAccounts = (await call(server, "GET", "/accounts")).json.data as Array<{ plan: string }>;
      assert.equal((line.accounts_by_plan as Record<string, number>).team, teamAccounts.filter((a) => a.plan === "team").length);
      assert.equal((line.accounts_by_plan as Record<string, number>).starter, undefined, "a plan both configs define is not named");
    } finally {
      await later.close();
    }
  });

  it("lists the plans the server serves, its config's own included, smallest monthly quota first", async () => {
    const r = await call(server, "GET", "/plans");
    assert.equal(r.status, 200);
    const plans = (r.json as { object: string; data: Array<Record<string, unknown>> }).data;
    assert.equal((r.json as { object: string }).object, "list");
    // The dashboard offered only the four default plans: an account could be put on no custom one there.
    assert.deepEqual(
      plans.map((p) => p.name),
      ["solo", "starter", "team", "professional", "scale"],
    );
    assert.deepEqual(
      plans.find((p) => p.name === "team"),
      {
        name: "team",
        requests_per_window: 600,
        window_seconds: 60,
        requests_per_month: 300_000,
        tokens_per_window: 100_000,
        max_concurrent_requests: null,
        max_keys: 25,
        specialists: ["chat"],
      },
    );
    assert.equal(plans.find((p) => p.name === "scale")!.specialists, "*");
  });

  for (const [index, [method, path, body]] of ROUTES.entries()) {
    it(`${method} ${path} refuses anonymous callers, wrong tokens and customers' API keys`, async () => {
      const from = `127.0.0.${10 + index}`;
      const anonymous = await call(server, method, path, body, {}, from);
      assert.equal(anonymous.status, 401);
      assert.equal(errorCode(anonymous.json), "missing_admin_token");
      assert.match((anonymous.json.error as { message: string }).message, /admin token \(ALVEARE_ADMIN_TOKEN\)/);
      assert.doesNotMatch((anonymous.json.error as { message: string }).message, /API key|alv_live/);
      const wrong = await call(server, method, path, body, { authorization: `Bearer ${TOKEN}x` }, from);
      assert.equal(wrong.status, 401);
      assert.equal((wrong.json.error as { code: string }).code, "invalid_admin_token");
      const customer = await createKey(server, "scale");
      assert.equal((await call(server, method, path, body, customer.auth, from)).status, 401);
      const broken = await call(server, method, path, body, { cookie: "alveare_session=%" }, from);
      assert.equal(broken.status, 401, "an undecodable session cookie is no session");
    });
  }

  it("answers an API key sent for the admin token with a 401 saying so, not counted toward the address's lockout", async () => {
    const customer = await createKey(server, "scale");
    const sandbox = await createKey(server, "scale", "test", customer.accountId);
    // Six of each, at the admin API and at the operator's sign-in, from one address (a customer behind the operator's NAT).
    const keys = [customer.key, sandbox.key, `alv_live_${"n".repeat(40)}`, "alv_test_", customer.key, sandbox.key];
    const shared = "127.0.0.60";
    const answers = [];
    for (const key of keys) answers.push(await call(server, "GET", "/accounts", undefined, { authorization: `Bearer ${key}` }, shared));
    for (const key of keys) answers.push(await requestFrom(shared, `${server.url}/dashboard/api/admin-login`, { body: { token: key } }));
    for (const [i, answer] of answers.entries()) {
      assert.equal(answer.status, 401, `attempt ${i}: ${JSON.stringify(answer.json)}`);
      // The same code as a wrong token: clients need no new case, only the message is clearer.
      assert.equal(errorCode(answer.json), "invalid_admin_token");
      const message = (answer.json.error as { message: string }).message;
      assert.match(message, /^An API key \(alv_(live|test)_…\) was sent where the operator's admin token \(ALVEARE_ADMIN_TOKEN\) is needed/);
      assert.equal((answer.json.error as { param: unknown }).param, null);
      for (const key of [customer.key, sandbox.key]) assert.ok(!JSON.stringify(answer.json).includes(key.slice(9)), message);
    }
    assert.equal((await call(server, "GET", "/accounts", undefined, admin, shared)).status, 200, "the operator is not locked out");
    const signIn = await requestFrom(shared, `${server.url}/dashboard/api/admin-login`, { body: { token: TOKEN } });
    assert.equal(signIn.status, 200, JSON.stringify(signIn.json));
    // Ordinary wrong tokens are still guesses: the sixth from an address is refused, and so is the right token after them.
    const guesser = "127.0.0.61";
    const guesses = [];
    for (let i = 0; i < 6; i++) {
      guesses.push(
        (await call(server, "GET", "/accounts", undefined, { authorization: `Bearer not-the-token-${i}-${"x".repeat(32)}` }, guesser)).status,
      );
    }
    assert.deepEqual(guesses, [401, 401, 401, 401, 401, 429]);
    assert.equal((await call(server, "GET", "/accounts", undefined, admin, guesser)).status, 429);
    assert.equal((await requestFrom(guesser, `${server.url}/dashboard/api/admin-login`, { body: { token: TOKEN } })).status, 429);
    // A key sent from a locked-out address is still told it is a key: the answer depends on nothing but what was sent.
    const keyWhileLocked = await call(server, "GET", "/accounts", undefined, customer.auth, guesser);
    assert.deepEqual([keyWhileLocked.status, errorCode(keyWhileLocked.json)], [401, "invalid_admin_token"]);
  });

  it("limits wrong bearer tokens per address like the operator's sign-in: 429 with Retry-After, even for the right token", async () => {
    const guesser = "127.0.0.50";
    for (let i = 0; i < 5; i++) {
      assert.equal(
        (await call(server, "GET", "/accounts", undefined, { authorization: `Bearer guess-${i}-${"x".repeat(32)}` }, guesser)).status,
        401,
      );
    }
    const limited = await call(server, "GET", "/accounts", undefined, admin, guesser);
    assert.equal(limited.status, 429);
    assert.equal(errorCode(limited.json), "too_many_sign_in_attempts");
    assert.ok(Number(limited.headers["retry-after"]) >= 1);
    // The message says how long, as Retry-After does: it said only "Wait and try again".
    const minutes = Math.ceil(Number(limited.headers["retry-after"]) / 60);
    assert.equal((limited.json.error as { message: string }).message, `Too many failed sign-ins. Try again in ${minutes} min.`);
    const operatorSignIn = await requestFrom(guesser, `${server.url}/dashboard/api/admin-login`, { body: { token: TOKEN } });
    assert.equal(operatorSignIn.status, 429, "the dashboard's operator sign-in shares the admin-token counter");
    const memberSignIn = await requestFrom(guesser, `${server.url}/dashboard/api/login`, {
      body: { email: "nobody@example.com", password: "not a member password" },
    });
    assert.equal(errorCode(memberSignIn.json), "invalid_credentials", "member sign-in has a counter of its own");
    assert.equal((await call(server, "GET", "/accounts")).status, 200, "another address is not locked out");
  });

  it("bounds every string field and refuses prototype names as plans", async () => {
    const account = await call(server, "POST", "/accounts", { name: "bounds", plan: "solo" });
    const id = account.json.id as string;
    const cases: Array<[string, string, Record<string, unknown>, string]> = [
      ["POST", "/accounts", { name: "n".repeat(201), plan: "solo" }, "name"],
      ["POST", "/accounts", { name: "x", plan: "p".repeat(65) }, "plan"],
      ["PATCH", `/accounts/${id}`, { status: "s".repeat(10_000) }, "status"],
      ["POST", `/accounts/${id}/keys`, { mode: "live", name: "k".repeat(101) }, "name"],
      ["POST", `/accounts/${id}/keys`, { mode: "m".repeat(10_000) }, "mode"],
      ["POST", `/accounts/${id}/invitations`, { email: `${"a".repeat(250)}@example.com` }, "email"],
    ];
    for (const [method, path, body, param] of cases) {
      const r = await call(server, method, path, body);
      assert.equal(r.status, 400, `${method} ${path} ${param}`);
      assert.equal((r.json.error as { param: string }).param, param);
    }
    for (const plan of ["constructor", "__proto__", "toString", "hasOwnProperty"]) {
      const created = await call(server, "POST", "/accounts", { name: "x", plan });
      assert.equal(created.status, 400, plan);
      assert.equal((created.json.error as { param: string }).param, "plan");
      assert.equal((await call(server, "PATCH", `/accounts/${id}`, { plan })).status, 400, plan);
    }
  });

  it("answers a pathological e-mail of 40,000 dots with a 400 naming the length limit", async () => {
    const account = await call(server, "POST", "/accounts", { name: "dots", plan: "solo" });
    const r = await call(server, "POST", `/accounts/${account.json.id as string}/invitations`, { email: `a@${".".repeat(40_000)}` });
    assert.equal(r.status, 400);
    assert.equal((r.json.error as { param: string }).param, "email");
    assert.match((r.json.error as { message: string }).message, /at most 254 characters/);
  });

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

  it("answers an invitation with its whole link: where the operator reached the server, or ALVEARE_PUBLIC_URL", async () => {
    const account = await call(server, "POST", "/accounts", { name: "invite-co", plan: "solo" });
    const invited = await call(server, "POST", `/accounts/${account.json.id as string}/invitations`, { email: "new@example.com" });
    assert.equal(invited.status, 201);
    assert.match(invited.json.invite_path as string, /^\/dashboard\/#invite=\w{40}$/);
    assert.equal(invited.json.url, `${server.url}${invited.json.invite_path as string}`, "not the port 0 the server was started with");
    const behindProxy = await startTestServer(
      {},
      { gated: true, env: { ALVEARE_ADMIN_TOKEN: TOKEN, ALVEARE_PUBLIC_URL: "https://ai.example.com/" } },
    );
    try {
      const other = await call(behindProxy, "POST", "/accounts", { name: "proxied-co", plan: "solo" });
      const link = await call(behindProxy, "POST", `/accounts/${other.json.id as string}/invitations`, { email: "new@example.com" });
      assert.equal(link.json.url, `https://ai.example.com${link.json.invite_path as string}`);
    } finally {
      await behindProxy.close();
    }
  });

  it("answers mistakes in the error shape", async () => {
    const badPlan = await call(server, "POST", "/accounts", { name: "x", plan: "gold" });
    assert.equal(badPlan.status, 400);
    assert.match((badPlan.json.error as { message: string }).message, /gold/);
    assert.equal((await call(server, "POST", "/accounts", { plan: "solo" })).status, 400);
    assert.equal((await call(server, "GET", "/accounts/acct_nope")).status, 404);
    assert.equal((await call(server, "POST", "/keys/key_nope/revoke")).status, 404);
    // Names are counted in characters, as the schema counts them: 200 bees are one name, 201 are too many.
    assert.equal((await call(server, "POST", "/accounts", { name: "🐝".repeat(200), plan: "solo" })).status, 201);
    assert.equal((await call(server, "POST", "/accounts", { name: "🐝".repeat(201), plan: "solo" })).status, 400);
    // An id is echoed cut at 40 characters, however long the caller made it.
    const longId = await call(server, "POST", `/keys/key_${"x".repeat(60)}/revoke`);
    assert.equal(longId.status, 404);
    assert.equal((longId.json.error as { message: string }).message, `no key 'key_${"x".repeat(36)}…'`);
    const longAccount = await call(server, "GET", `/accounts/acct_${"y".repeat(60)}`);
    assert.equal((longAccount.json.error as { message: string }).message, `no account 'acct_${"y".repeat(35)}…'`);
    assert.equal((await call(server, "PATCH", "/accounts/acct_nope", { status: "frozen" })).status, 400);
    // A key's name is optional, but one given must not be blank (as the CLI's --name).
    const keyed = (await call(server, "POST", "/accounts", { name: "keyed", plan: "solo" })).json.id as string;
    for (const name of ["", "  "]) {
      const blank = await call(server, "POST", `/accounts/${keyed}/keys`, { mode: "live", name });
      assert.equal(blank.status, 400, JSON.stringify(name));
      assert.deepEqual(blank.json.error, {
        message: "Invalid 'name': the key name must not be empty; leave it out for a key without a name.",
        type: "invalid_request_error",
        param: "name",
        code: "invalid_parameter",
      });
    }
    assert.deepEqual((await call(server, "GET", `/accounts/${keyed}/keys`)).json.data, [], "nothing was created");
    assert.equal((await call(server, "POST", `/accounts/${keyed}/keys`, { mode: "live" })).json.name, null);
    // Names are kept without their edge spaces, as the dashboard keeps them.
    assert.equal((await call(server, "POST", `/accounts/${keyed}/keys`, { mode: "live", name: "  ci runner   " })).json.name, "ci runner");
    const spaced = await call(server, "POST", "/accounts", { name: " Acme Ltd  ", plan: "solo" });
    assert.equal(spaced.json.name, "Acme Ltd");
    assert.equal((await call(server, "GET", `/accounts/${spaced.json.id as string}`)).json.name, "Acme Ltd");
    // A change that names nothing to change says what it takes.
    const empty = await call(server, "PATCH", `/accounts/${keyed}`, {});
    assert.equal(empty.status, 400);
    assert.deepEqual(empty.json.error, {
      message: "Missing required parameter: send at least one of 'plan', 'status'.",
      type: "invalid_request_error",
      param: "plan",
      code: "missing_parameter",
    });
    // A plan name is looked up as the table's own key, never one its prototype has.
    for (const plan of ["constructor", "toString", "__proto__"]) {
      assert.equal((await call(server, "POST", "/accounts", { name: "x", plan })).status, 400, plan);
    }
    const account = await call(server, "POST", "/accounts", { name: "x", plan: "solo" });
    const patched = await call(server, "PATCH", `/accounts/${String(account.json.id)}`, { plan: "hasOwnProperty" });
    assert.deepEqual([patched.status, (patched.json.error as { code: string }).code], [400, "invalid_parameter"]);
  });
});

describe("ALVEARE_ADMIN_TOKEN", () => {
  it("is refused at start when shorter than 32 characters, in one line naming the variable", () => {
    assert.throws(
      () => loadConfig({}, { ALVEARE_ADMIN_TOKEN: "x".repeat(31) }),
      (error: Error) => {
        assert.match(error.message, /^configuration error at ALVEARE_ADMIN_TOKEN: must be at least 32 characters/);
        assert.doesNotMatch(error.message, /\n/);
        return true;
      },
    );
    assert.equal(loadConfig({}, { ALVEARE_ADMIN_TOKEN: "x".repeat(32) }).adminToken, "x".repeat(32));
  });

  it("is refused at start when it holds whitespace (a Bearer header could never carry it), in one line naming the variable", () => {
    for (const spaced of [
      "correct horse battery staple admin token ",
      `${"x".repeat(32)}\t`,
      ` ${"x".repeat(32)}`,
      `${"x".repeat(16)}\n${"x".repeat(16)}`,
    ]) {
      assert.throws(
        () => loadConfig({}, { ALVEARE_ADMIN_TOKEN: spaced }),
        (error: Error) => /^configuration error at ALVEARE_ADMIN_TOKEN: must not contain spaces or other whitespace[^\n]*$/.test(error.message),
        JSON.stringify(spaced),
      );
    }
  });

  it("is refused at start when it has an API key's shape, in one line naming the variable and not echoing the key", () => {
    for (const mode of ["live", "test"]) {
      const secret = `k${"A1b2C3".repeat(6)}`;
      assert.throws(
        () => loadConfig({}, { ALVEARE_ADMIN_TOKEN: `alv_${mode}_${secret}` }),
        (error: Error) => {
          assert.match(
            error.message,
            new RegExp(`^configuration error at ALVEARE_ADMIN_TOKEN: must not start with alv_${mode}_ like an account's API key`),
          );
          assert.doesNotMatch(error.message, /\n/);
          assert.ok(!error.message.includes(secret), error.message);
          return true;
        },
      );
    }
    // Only the start is a key's shape: these are ordinary tokens.
    for (const ordinary of [`x_alv_live_${"x".repeat(32)}`, `ALV_LIVE_${"x".repeat(32)}`, `alv_other_${"x".repeat(32)}`]) {
      assert.equal(loadConfig({}, { ALVEARE_ADMIN_TOKEN: ordinary }).adminToken, ordinary);
    }
  });
});

describe("admin API without ALVEARE_ADMIN_TOKEN", () => {
  it("is a 404 that says, on its own routes only, how the operator turns it on", async () => {
    const server = await startTestServer({}, { gated: true });
    try {
      const r = await call(server, "GET", "/accounts", undefined, { authorization: "Bearer anything" });
      assert.equal(r.status, 404);
      assert.equal(errorCode(r.json), "not_found");
      assert.match(
        (r.json.error as { message: string }).message,
        /^Unknown route: GET \/admin\/api\/accounts; the admin API is off .*ALVEARE_ADMIN_TOKEN/,
      );
      assert.equal(r.headers["x-frame-options"], "DENY", "with the admin API's headers, as every answer under /admin/api");
      assert.equal(r.headers["cache-control"], "no-store");
      const unknown = await call(server, "GET", "/nothing-here", undefined, { authorization: "Bearer anything" });
      assert.equal(unknown.status, 404);
      assert.equal((unknown.json.error as { message: string }).message, "Unknown route: GET /admin/api/nothing-here");
    } finally {
      await server.close();
    }
  });
});
