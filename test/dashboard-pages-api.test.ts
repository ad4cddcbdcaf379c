import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import Database from "better-sqlite3";
import { after, before, describe, it } from "node:test";
import { databasePath } from "../src/server/server.js";
import { postJson, startTestServer, type TestServer } from "./helpers/fixtures.js";

const TOKEN = "operator-token-for-dashboard-page-tests";
const PASSWORD = "amber-lantern-quietly-93";

/** A same-origin JSON client that keeps its session cookie and CSRF token, as the dashboard page does. */
function client(server: TestServer) {
  let cookie = "";
  let csrf = "";
  return async (method: string, path: string, body?: unknown) => {
    const headers: Record<string, string> = { origin: server.url };
    if (cookie) headers.cookie = cookie;
    if (method !== "GET") Object.assign(headers, { "content-type": "application/json", ...(csrf ? { "x-csrf-token": csrf } : {}) });
    const response = await fetch(`${server.url}${path}`, { method, headers, body: method === "GET" ? undefined : JSON.stringify(body ?? {}) });
    const setCookie = response.headers.get("set-cookie");
    if (setCookie) cookie = setCookie.split(";")[0]!;
    const json = (await response.json().catch(() => ({}))) as Record<string, unknown>;
    if (typeof json.csrf_token === "string") csrf = json.csrf_token;
    return { status: response.status, headers: response.headers, json };
  };
}

describe("what the dashboard pages read from the server", () => {
  let server: TestServer;
  let operator: ReturnType<typeof client>;
  let accountId: string;
  before(async () => {
    server = await startTestServer({}, { gated: true, env: { ALVEARE_ADMIN_TOKEN: TOKEN } });
    operator = client(server);
    assert.equal((await operator("POST", "/dashboard/api/admin-login", { token: TOKEN })).status, 200);
    accountId = (await operator("POST", "/admin/api/accounts", { name: "globex", plan: "starter" })).json.id as string;
  });
  after(async () => {
    await server.close();
  });

  const invite = async (email: string): Promise<string> => {
    const created = await operator("POST", `/admin/api/accounts/${accountId}/invitations`, { email });
    assert.equal(created.status, 201);
    return /#invite=(\w+)$/.exec(created.json.invite_path as string)![1]!;
  };

  it("says whether operator sign-in is on", async () => {
    assert.deepEqual((await client(server)("GET", "/dashboard/api/sign-in-options")).json, { operator_sign_in: true });
    const plain = await startTestServer({}, { gated: true });
    try {
      const options = await client(plain)("GET", "/dashboard/api/sign-in-options");
      assert.equal(options.status, 200);
      assert.deepEqual(options.json, { operator_sign_in: false });
      assert.match(options.headers.get("content-security-policy") ?? "", /script-src 'self'/);
    } finally {
      await plain.close();
    }
  });

  it("checks an invitation before any password: a valid one names whom it is for; used, expired, replaced and revoked ones tell nothing", async () => {
    const anyone = client(server);
    // A link that cannot be accepted answers as an unknown one does: neither the e-mail nor the account's name.
    const unknownShape = async (token: string, why: string): Promise<void> => {
      const answer = await anyone("POST", "/dashboard/api/invitations/check", { token });
      assert.equal(answer.status, 404, why);
      assert.deepEqual(
        answer.json,
        {
          error: {
            message:
              "This invitation link can no longer be used (it is unknown, already used, expired or replaced by a newer one); ask for a new one.",
            type: "invalid_request_error",
            code: "invitation_not_found",
            param: null,
          },
        },
        why,
      );
      assert.doesNotMatch(JSON.stringify(answer.json), /globex|@/, `${why}: no e-mail, no account name`);
    };
    const token = await invite("hank@globex.example");
    const valid = await anyone("POST", "/dashboard/api/invitations/check", { token });
    assert.equal(valid.status, 200);
    assert.equal(valid.json.state, "valid");
    assert.equal(valid.json.email, "hank@globex.example");
    assert.equal(valid.json.account_name, "globex");
    const days = (Date.parse(valid.json.expires_at as string) - Date.now()) / 86_400_000;
    assert.ok(days > 6.9 && days <= 7, `expires in 7 days (${days})`);

    assert.equal((await anyone("POST", "/dashboard/api/invitations/accept", { token, password: PASSWORD })).status, 200);
    // Before, a used link still answered 200 with the member's e-mail and the account's name, to whoever held it.
    await unknownShape(token, "used");

    const lateToken = await invite("late@globex.example");
    const db = new Database(databasePath(server.config));
    db.prepare("UPDATE invitations SET expires_at = ? WHERE member_id = (SELECT id FROM members WHERE email = ?)").run(
      "2020-01-01T00:00:00.000Z",
      "late@globex.example",
    );
    db.close();
    await unknownShape(lateToken, "expired");

    // Revoked: replaced by a newer invitation of the same member, then with the member removed.
    const first = await invite("gone@globex.example");
    const second = await invite("gone@globex.example");
    await unknownShape(first, "replaced");
    assert.equal((await anyone("POST", "/dashboard/api/invitations/check", { token: second })).json.state, "valid");
    const members = (await operator("GET", `/admin/api/accounts/${accountId}/members`)).json.data as Array<{ id: string; email: string }>;
    const gone = members.find((m) => m.email === "gone@globex.example")!;
    assert.equal((await operator("DELETE", `/admin/api/accounts/${accountId}/members/${gone.id}`)).status, 204);
    await unknownShape(second, "member removed");

    await unknownShape("x".repeat(40), "unknown");
    assert.equal((await anyone("POST", "/dashboard/api/invitations/check", {})).status, 400, "a missing token is a 400, not a 500");
  });

  it("lists an account's members for the operator, invited or active", async () => {
    const members = await operator("GET", `/admin/api/accounts/${accountId}/members`);
    assert.equal(members.status, 200);
    const byEmail = Object.fromEntries((members.json.data as Array<{ email: string; status: string }>).map((m) => [m.email, m.status]));
    assert.deepEqual(byEmail, { "hank@globex.example": "active", "late@globex.example": "invited" });
    assert.equal((await client(server)("GET", `/admin/api/accounts/${accountId}/members`)).status, 401, "not without the operator");
    assert.equal((await operator("GET", "/admin/api/accounts/acct_missing/members")).status, 404);
  });

  it("breaks a month's usage down per key, per outcome and per day, for the member and the operator", async () => {
    const hank = client(server);
    assert.equal((await hank("POST", "/dashboard/api/login", { email: "hank@globex.example", password: PASSWORD })).status, 200);
    const made = async (name: string) => (await hank("POST", "/dashboard/api/keys", { mode: "live", name })).json;
    const prod = await made("prod");
    const ci = await made("ci");
    const infer = (key: unknown) =>
      postJson(`${server.url}/v1/infer`, { specialist: "classify", prompt: "great", max_tokens: 2 }, { authorization: `Bearer ${String(key)}` });
    assert.equal((await infer(prod.key)).status, 200);
    assert.equal((await infer(prod.key)).status, 200);
    assert.equal((await infer(ci.key)).status, 200);

    const mine = await hank("GET", "/dashboard/api/usage/breakdown");
    assert.equal(mine.status, 200);
    const live = mine.json.live as {
      by_key: Array<{ name: string; requests: number; tokens: number }>;
      by_status: Record<string, number>;
      daily_tokens: Record<string, number>;
    };
    assert.deepEqual(
      live.by_key.map((k) => [k.name, k.requests]),
      [
        ["prod", 2],
        ["ci", 1],
      ],
    );
    assert.ok(live.by_key.every((k) => k.tokens > 0));
    assert.deepEqual(live.by_status, { success: 3, client_error: 0, client_closed: 0, rate_limited: 0, server_error: 0 });
    const today = new Date().toISOString().slice(0, 10);
    assert.equal(
      live.daily_tokens[today],
      live.by_key.reduce((sum, k) => sum + k.tokens, 0),
    );
    assert.deepEqual((mine.json.test as { by_key: unknown[] }).by_key, []);

    const seen = await operator("GET", `/admin/api/accounts/${accountId}/usage/breakdown`);
    assert.equal(seen.status, 200);
    assert.deepEqual(seen.json.by_status, live.by_status);
    assert.deepEqual(seen.json.daily_requests, { [today]: 3 });
    assert.equal((await operator("GET", `/admin/api/accounts/${accountId}/usage/breakdown?period=2026-13`)).status, 400);
    assert.equal((await client(server)("GET", "/dashboard/api/usage/breakdown")).status, 401);
  });

  it("serves the charting library from its own origin, as a script", async () => {
    const response = await fetch(`${server.url}/dashboard/assets/chart.umd.min.js`);
    assert.equal(response.status, 200);
    assert.match(response.headers.get("content-type") ?? "", /^text\/javascript/);
    assert.match(await response.text(), /Chart\.js v4\./);
    const page = await (await fetch(`${server.url}/dashboard/`)).text();
    assert.match(page, /<script defer src="\/dashboard\/assets\/chart\.umd\.min\.js"><\/script>/);
  });

  it("serves every module the page's scripts import (a module left out of the served list broke every page)", async () => {
    const built = new URL("../dashboard/", import.meta.url);
    const modules = readdirSync(built).filter((f) => f.endsWith(".js"));
    const imported = new Set(
      modules.flatMap((f) => [...readFileSync(new URL(f, built), "utf8").matchAll(/from "\.\/([\w-]+\.js)"/g)].map((m) => m[1]!)),
    );
    assert.ok(imported.has("keys.js") && imported.has("dom.js"), [...imported].join(", "));
    for (const name of ["app.js", ...imported]) {
      const response = await fetch(`${server.url}/dashboard/assets/${name}`);
      assert.equal(response.status, 200, name);
      assert.match(response.headers.get("content-type") ?? "", /^text\/javascript/, name);
    }
  });
});

describe("requests refused after authentication, in the dashboard's breakdown", () => {
  let server: TestServer;
  before(async () => {
    // Three requests per (hour-long) window, so a burst is refused deterministically.
    server = await startTestServer(
      { plans: { solo: { requests_per_minute: 3, window_seconds: 3600 } } },
      { gated: true, env: { ALVEARE_ADMIN_TOKEN: TOKEN } },
    );
  });
  after(async () => {
    await server.close();
  });

  it("counts a burst over the minute limit and a specialist outside the plan per status and per key, never as usage", async () => {
    const operator = client(server);
    assert.equal((await operator("POST", "/dashboard/api/admin-login", { token: TOKEN })).status, 200);
    const accountId = (await operator("POST", "/admin/api/accounts", { name: "initech", plan: "solo" })).json.id as string;
    const invited = await operator("POST", `/admin/api/accounts/${accountId}/invitations`, { email: "peter@initech.example" });
    const token = /#invite=(\w+)$/.exec(invited.json.invite_path as string)![1]!;
    const peter = client(server);
    assert.equal((await peter("POST", "/dashboard/api/invitations/accept", { token, password: PASSWORD })).status, 200);
    assert.equal((await peter("POST", "/dashboard/api/login", { email: "peter@initech.example", password: PASSWORD })).status, 200);
    const burst = (await peter("POST", "/dashboard/api/keys", { mode: "live", name: "burst" })).json;
    const quiet = (await peter("POST", "/dashboard/api/keys", { mode: "live", name: "quiet" })).json;
    const infer = (key: unknown, specialist = "classify") =>
      postJson(`${server.url}/v1/infer`, { specialist, prompt: "great", max_tokens: 2 }, { authorization: `Bearer ${String(key)}` });

    const results = await Promise.all(Array.from({ length: 8 }, () => infer(burst.key)));
    assert.deepEqual(results.map((r) => r.status).sort(), [200, 200, 200, 429, 429, 429, 429, 429]);
    assert.ok(results.filter((r) => r.status === 429).every((r) => (r.json.error as { code: string }).code === "rate_limit_exceeded"));
    const outside = await infer(quiet.key, "code");
    assert.equal(outside.status, 403);
    assert.equal((outside.json.error as { code: string }).code, "specialist_not_in_plan");
    assert.equal((await infer(quiet.key)).status, 200, "the other key has its own window");
    assert.equal((await fetch(`${server.url}/v1/infer`, { method: "POST" })).status, 401, "an unauthenticated request belongs to no account");

    const mine = await peter("GET", "/dashboard/api/usage/breakdown");
    assert.equal(mine.status, 200);
    const live = mine.json.live as { by_key: Array<{ name: string; requests: number }>; by_status: Record<string, number> };
    assert.deepEqual(live.by_status, { success: 4, client_error: 1, client_closed: 0, rate_limited: 5, server_error: 0 });
    assert.deepEqual(
      live.by_key.map((k) => [k.name, k.requests]),
      [
        ["burst", 8],
        ["quiet", 2],
      ],
    );
    const seen = await operator("GET", `/admin/api/accounts/${accountId}/usage/breakdown`);
    assert.deepEqual(seen.json.by_status, live.by_status);
    const usage = await fetch(`${server.url}/v1/usage`, { headers: { authorization: `Bearer ${String(quiet.key)}` } });
    assert.equal(((await usage.json()) as { requests_used: number }).requests_used, 4, "refusals never count against the quota");
  });
});
