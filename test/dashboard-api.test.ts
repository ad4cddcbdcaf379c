import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { postJson, startTestServer, tempDir, type TestServer } from "./helpers/fixtures.js";
import { Browser } from "./helpers/dashboard-client.js";
import { errorCode, requestFrom } from "./helpers/loopback-client.js";
import { hostGuard } from "../src/dashboard/host-guard.js";

const TOKEN = "operator-token-for-dashboard-tests-42";

/** The session read's status and body; without a session it is SIGNED_OUT (a 200: a 401 is an error in every browser console). */
const whoIs = async (browser: Browser): Promise<[number, Record<string, unknown>]> => {
  const r = await browser.call("GET", "/dashboard/api/session");
  return [r.status, r.json];
};
const SIGNED_OUT: [number, Record<string, unknown>] = [200, { kind: "signed_out" }];

describe("dashboard API", () => {
  let server: TestServer;
  let operator: Browser;
  let alice: Browser;
  let mallory: Browser;
  let aliceAccount: string;
  /** A new account on `plan` and its first member, signed in. */
  const join = async (name: string, email: string, plan = "starter"): Promise<[Browser, string]> => {
    const account = await operator.call("POST", "/admin/api/accounts", { name, plan });
    const invite = await operator.call("POST", `/admin/api/accounts/${account.json.id as string}/invitations`, { email });
    assert.equal(invite.status, 201);
    const token = /#invite=(\w+)$/.exec(invite.json.invite_path as string)![1]!;
    const browser = new Browser(server);
    assert.equal((await browser.call("POST", "/dashboard/api/invitations/accept", { token, password: "correct horse battery" })).status, 200);
    return [browser, account.json.id as string];
  };
  before(async () => {
    server = await startTestServer({}, { gated: true, env: { ALVEARE_ADMIN_TOKEN: TOKEN } });
    operator = new Browser(server);
    assert.equal((await operator.call("POST", "/dashboard/api/admin-login", { token: TOKEN })).status, 200);
    [alice, aliceAccount] = await join("alice-co", "alice@example.com");
    [mallory] = await join("mallory-co", "mallory@example.com");
  });
  after(async () => {
    await server.close();
  });

  it("lets a member create a key, see it listed without its secret, use it, and see it counted", async () => {
    const created = await alice.call("POST", "/dashboard/api/keys", { mode: "live", name: "prod" });
    assert.equal(created.status, 201);
    const key = created.json.key as string;
    assert.match(key, /^alv_live_/);
    const listed = await alice.call("GET", "/dashboard/api/keys");
    assert.ok(!JSON.stringify(listed.json).includes(key));
    assert.equal(
      (await postJson(`${server.url}/v1/infer`, { specialist: "classify", prompt: "x", max_tokens: 2 }, { authorization: `Bearer ${key}` })).status,
      200,
    );
    const usage = await alice.call("GET", "/dashboard/api/usage");
    const live = usage.json.live as Record<string, unknown>;
    assert.equal(live.requests_used, 1);
    assert.deepEqual(live.by_specialist, { classify: 1 });
    assert.equal(
      Object.values(live.daily as Record<string, number>).reduce((a, b) => a + b, 0),
      1,
    );
    assert.equal((usage.json.test as Record<string, unknown>).requests_used, 0);
    // The account's first month, which the month picker starts from: this one, for an account made now.
    assert.equal(usage.json.since, new Date().toISOString().slice(0, 7));
    const plan = await alice.call("GET", "/dashboard/api/plan");
    assert.deepEqual(
      (plan.json.specialists as Array<{ id: string }>).map((s) => s.id),
      ["classify", "summarise", "extract", "qa", "chat"],
    );
  });

  it("sends a browser that opens the server's own address to the dashboard; an API client keeps its 404", async () => {
    const browser = await fetch(`${server.url}/`, { headers: { accept: "text/html,application/xhtml+xml,*/*;q=0.8" }, redirect: "manual" });
    assert.equal(browser.status, 302);
    assert.equal(browser.headers.get("location"), "/dashboard/");
    // Its icon is the server's /favicon.ico, which every browser asks for on any page here (a 404 would be in every console).
    assert.match(await (await fetch(`${server.url}/dashboard/`)).text(), /<link rel="icon" href="\/favicon\.ico" type="image\/svg\+xml">/);
    for (const method of ["GET", "HEAD"]) {
      const icon = await fetch(`${server.url}/favicon.ico`, { method });
      assert.equal(icon.status, 200, method);
      assert.equal(icon.headers.get("content-type"), "image/svg+xml");
      assert.match(icon.headers.get("cache-control") ?? "", /max-age=\d+/);
      if (method === "GET") assert.match(await icon.text(), /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"[^]*<\/svg>\n$/);
    }
    for (const accept of ["application/json", "*/*"]) {
      const api = await fetch(`${server.url}/`, { headers: { accept }, redirect: "manual" });
      assert.equal(api.status, 404, accept);
      assert.equal(((await api.json()) as { error: { code: string } }).error.code, "not_found");
    }
  });

  it("tells each specialist of the plan by kind, so the Plan page shows an embeddings model's own route", async () => {
    const [member] = await join("embed-co", "embed@example.com", "professional");
    const plan = await member.call("GET", "/dashboard/api/plan");
    const kinds = Object.fromEntries((plan.json.specialists as Array<{ id: string; kind: string }>).map((s) => [s.id, s.kind]));
    assert.equal(kinds.embed, "embeddings", JSON.stringify(kinds));
    assert.equal(kinds.classify, "generation");
    assert.deepEqual(new Set(Object.values(kinds)), new Set(["embeddings", "generation"]));
  });

  it("takes the key form's blank name as no name (the page's optional field), unlike the CLI and admin API", async () => {
    const [member] = await join("blank-co", "blank@example.com");
    for (const name of ["", "  ", null]) {
      const created = await member.call("POST", "/dashboard/api/keys", { mode: "test", name });
      assert.equal(created.status, 201, JSON.stringify(name));
      assert.equal(created.json.name, null);
    }
  });

  it("answers an AccountError from a dashboard route with its catalogue 4xx, never a 500", async () => {
    const account = await operator.call("POST", "/admin/api/accounts", { name: "paused-co", plan: "starter" });
    const invite = await operator.call("POST", `/admin/api/accounts/${account.json.id as string}/invitations`, { email: "paused@example.com" });
    const member = new Browser(server);
    const token = /#invite=(\w+)$/.exec(invite.json.invite_path as string)![1]!;
    assert.equal((await member.call("POST", "/dashboard/api/invitations/accept", { token, password: "correct horse battery" })).status, 200);
    assert.equal((await operator.call("PATCH", `/admin/api/accounts/${account.json.id as string}`, { status: "suspended" })).status, 200);
    // AccountService refuses a suspended account's new key with an AccountError.
    const refused = await member.call("POST", "/dashboard/api/keys", { mode: "live", name: "late" });
    assert.equal(refused.status, 403, JSON.stringify(refused.json));
    assert.deepEqual(refused.json.error, {
      type: "permission_error",
      code: "account_suspended",
      param: null,
      message: "This account is suspended: it cannot create API keys until it is reactivated.",
    });
    // The same for the admin API's own AccountErrors: an unknown account is the catalogue's 404.
    const missing = await operator.call("GET", "/admin/api/accounts/acct_nosuchaccount/members");
    assert.equal(missing.status, 404);
    assert.equal(errorCode(missing.json), "not_found");
  });

  it("refuses anonymous visitors on every member route; the session read says no one is signed in", async () => {
    const anonymous = new Browser(server);
    assert.deepEqual(await whoIs(anonymous), SIGNED_OUT, "no CSRF token, no member, no 401 for the browser console");
    for (const [method, path] of [
      ["GET", "/dashboard/api/keys"],
      ["POST", "/dashboard/api/keys"],
      ["POST", "/dashboard/api/keys/key_x/revoke"],
      ["GET", "/dashboard/api/usage"],
      ["GET", "/dashboard/api/plan"],
    ] as const) {
      const r = await anonymous.call(method, path, { mode: "live" });
      assert.equal(r.status, 401, `${method} ${path}`);
    }
    for (const [method, path] of [
      ["GET", "/admin/api/accounts"],
      ["POST", "/admin/api/accounts"],
      ["POST", `/admin/api/accounts/${aliceAccount}/invitations`],
    ] as const) {
      assert.equal((await anonymous.call(method, path, { name: "x", plan: "solo", email: "a@b.co" })).status, 401, `${method} ${path}`);
    }
  });

  it("keeps another account's member out: no revoking its keys, no admin API", async () => {
    const aliceKey = await alice.call("POST", "/dashboard/api/keys", { mode: "test" });
    const r = await mallory.call("POST", `/dashboard/api/keys/${aliceKey.json.id as string}/revoke`);
    assert.equal(r.status, 404);
    const keys = await alice.call("GET", "/dashboard/api/keys");
    assert.ok((keys.json.data as Array<{ id: string; revoked_at: string | null }>).find((k) => k.id === aliceKey.json.id)!.revoked_at === null);
    assert.ok(!JSON.stringify((await mallory.call("GET", "/dashboard/api/keys")).json).includes(aliceKey.json.id as string));
    assert.equal((await mallory.call("GET", "/admin/api/accounts")).status, 401);
  });

  it("refuses forged cross-site requests", async () => {
    const forged: Array<Record<string, string>> = [
      { "x-csrf-token": "wrong" },
      { "x-csrf-token": "" },
      { origin: "https://evil.example" },
      { "sec-fetch-site": "cross-site" },
      { "content-type": "application/x-www-form-urlencoded" },
      { "content-type": "text/plain" },
      { "content-type": "multipart/form-data; boundary=x" },
      { "content-type": "application/jsonp" },
    ];
    for (const headers of forged) {
      const r = await alice.call("POST", "/dashboard/api/keys", { mode: "live" }, headers);
      assert.equal(r.status, 403, JSON.stringify(headers));
      assert.equal((r.json.error as { code: string }).code, "csrf_failed");
      const admin = await operator.call("POST", "/admin/api/accounts", { name: "x", plan: "solo" }, headers);
      assert.equal(admin.status, 403, `admin ${JSON.stringify(headers)}`);
    }
    // JSON in any case and with parameters is JSON: media types are case-insensitive, and none of these passes without a preflight.
    for (const type of ["Application/JSON", "application/json;charset=UTF-8", "APPLICATION/JSON ; charset=utf-8"]) {
      const r = await alice.call("POST", "/dashboard/api/keys", { mode: "test" }, { "content-type": type });
      assert.equal(r.status, 201, type);
    }
    const login = await new Browser(server).call(
      "POST",
      "/dashboard/api/login",
      { email: "alice@example.com", password: "correct horse battery" },
      { origin: "https://evil.example" },
    );
    assert.equal(login.status, 403);
    // The session read answers the CSRF token, so a cross-site page is refused it too.
    for (const headers of [{ origin: "https://evil.example" }, { "sec-fetch-site": "cross-site" }] as Array<Record<string, string>>) {
      for (const browser of [alice, operator]) {
        const r = await browser.call("GET", "/dashboard/api/session", undefined, headers);
        assert.equal(r.status, 403, JSON.stringify(headers));
        assert.equal(JSON.stringify(r.json).includes(browser.csrf), false);
      }
    }
    assert.equal((await alice.call("GET", "/dashboard/api/session", undefined, { "sec-fetch-site": "same-origin" })).status, 200);
    // Signed out too: a cross-site page learns nothing from it, not even that no one is signed in.
    assert.equal((await new Browser(server).call("GET", "/dashboard/api/session", undefined, { origin: "https://evil.example" })).status, 403);
  });

  it("refuses a wrong CSRF token of the right length and one of another length alike, with 403 csrf_failed", async () => {
    for (const browser of [alice, operator]) {
      const token = browser.csrf;
      const other = (c: string): string => (c === "a" ? "b" : "a");
      const wrong = [
        token.slice(0, -1) + other(token.at(-1)!), // same length, last character differs
        other(token[0]!) + token.slice(1), // same length, first character differs
        token.slice(0, -1), // shorter
        `${token}a`, // longer
        `${token.slice(0, -1)}é`, // as many characters, one more UTF-8 byte
      ];
      for (const csrf of wrong) {
        const r =
          browser === alice
            ? await alice.call("POST", "/dashboard/api/keys", { mode: "live" }, { "x-csrf-token": csrf })
            : await operator.call("POST", "/admin/api/accounts", { name: "x", plan: "solo" }, { "x-csrf-token": csrf });
        assert.equal(r.status, 403, csrf);
        assert.deepEqual(r.json.error, {
          message: "Missing or wrong CSRF token; reload the page.",
          type: "permission_error",
          code: "csrf_failed",
          param: null,
        });
      }
    }
    assert.equal((await alice.call("POST", "/dashboard/api/keys", { mode: "test" })).status, 201, "the session's own token still passes");
  });

  it("signs in with email and password, limits failures, and signs out", async () => {
    const b = new Browser(server);
    const ok = await b.call("POST", "/dashboard/api/login", { email: "Alice@Example.com", password: "correct horse battery" });
    assert.equal(ok.status, 200);
    const cookie = ok.headers.get("set-cookie")!;
    assert.match(cookie, /HttpOnly/);
    assert.match(cookie, /SameSite=Strict/);
    assert.doesNotMatch(cookie, /Secure/, "plain HTTP on loopback");
    assert.equal((await b.call("GET", "/dashboard/api/session")).json.email, "alice@example.com");
    assert.equal((await b.call("POST", "/dashboard/api/logout")).status, 200);
    assert.deepEqual(await whoIs(b), SIGNED_OUT);

    const guesser = new Browser(server);
    for (let i = 0; i < 5; i++)
      assert.equal((await guesser.call("POST", "/dashboard/api/login", { email: "mallory@example.com", password: `guess-${i}` })).status, 401);
    const limited = await guesser.call("POST", "/dashboard/api/login", { email: "mallory@example.com", password: "correct horse battery" });
    assert.equal(limited.status, 429);
    assert.ok(Number(limited.headers.get("retry-after")) >= 1);
  });

  it("ends the session a browser held when it signs in again, as the same person or another", async () => {
    await join("erin-co", "erin@example.com"); // one whose sign-ins no other test limits
    const b = new Browser(server);
    assert.equal((await b.call("POST", "/dashboard/api/login", { email: "alice@example.com", password: "correct horse battery" })).status, 200);
    const first = b.cookie;
    const copy = new Browser(server);
    copy.cookie = first; // a copy of the cookie, taken while it was live
    assert.equal((await copy.call("GET", "/dashboard/api/session")).json.email, "alice@example.com");
    // The same browser signs in as someone else: the first session is over on the server, not only in the browser.
    assert.equal((await b.call("POST", "/dashboard/api/login", { email: "erin@example.com", password: "correct horse battery" })).status, 200);
    assert.notEqual(b.cookie, first);
    assert.deepEqual(await whoIs(copy), SIGNED_OUT);
    assert.equal((await copy.call("GET", "/dashboard/api/keys")).status, 401);
    assert.equal((await b.call("GET", "/dashboard/api/session")).json.email, "erin@example.com");
    // And the operator's sign-in in that browser ends Erin's session the same way.
    const second = b.cookie;
    assert.equal((await b.call("POST", "/dashboard/api/admin-login", { token: TOKEN })).status, 200);
    copy.cookie = second;
    assert.deepEqual(await whoIs(copy), SIGNED_OUT);
    assert.equal((await b.call("GET", "/dashboard/api/session")).json.kind, "operator");
    // A refused sign-in ends nothing.
    const third = b.cookie;
    assert.equal((await b.call("POST", "/dashboard/api/login", { email: "alice@example.com", password: "wrong password here" })).status, 401);
    copy.cookie = third;
    assert.equal((await copy.call("GET", "/dashboard/api/session")).json.kind, "operator");
  });

  it("refuses over-long fields with a 400 before signing in, and keeps member and operator counters apart", async () => {
    const b = new Browser(server, "127.0.0.60");
    // A body past the dashboard's 16 KiB is refused whole, before it is parsed; a field past its own limit is named.
    const huge = await b.call("POST", "/dashboard/api/login", { email: `${"a".repeat(512 * 1024)}@example.com`, password: "whatever password" });
    assert.equal(huge.status, 413);
    assert.equal((huge.json.error as { code: string }).code, "request_too_large");
    const longEmail = await b.call("POST", "/dashboard/api/login", { email: `${"a".repeat(8 * 1024)}@example.com`, password: "whatever password" });
    assert.equal(longEmail.status, 400);
    assert.equal((longEmail.json.error as { param: string }).param, "email");
    const longPassword = await b.call("POST", "/dashboard/api/login", { email: "alice@example.com", password: "p".repeat(1025) });
    assert.equal((longPassword.json.error as { param: string }).param, "password");
    const longToken = await b.call("POST", "/dashboard/api/admin-login", { token: "t".repeat(1025) });
    assert.equal((longToken.json.error as { param: string }).param, "token");
    const longInvite = await b.call("POST", "/dashboard/api/invitations/accept", { token: "t".repeat(1025), password: "correct horse battery" });
    assert.equal((longInvite.json.error as { param: string }).param, "token");
    // An address spraying e-mails is locked at 30 failures, for every member behind it.
    for (let i = 0; i < 30; i++) await b.call("POST", "/dashboard/api/login", { email: `nobody-${i}@example.com`, password: "wrong password here" });
    assert.equal((await b.call("POST", "/dashboard/api/login", { email: "alice@example.com", password: "correct horse battery" })).status, 429);
    assert.equal((await b.call("POST", "/dashboard/api/admin-login", { token: TOKEN })).status, 200, "member failures do not lock the operator out");
  });

  it("treats an undecodable session cookie as no session and unknown asset names as 404", async () => {
    for (const [method, path] of [
      ["GET", "/dashboard/api/session"],
      ["GET", "/dashboard/api/keys"],
      ["POST", "/dashboard/api/keys"],
      ["GET", "/dashboard/api/usage"],
      ["POST", "/dashboard/api/logout"],
    ] as const) {
      const r = await requestFrom("127.0.0.1", `${server.url}${path}`, {
        method,
        headers: { cookie: "alveare_session=%", origin: server.url, "content-type": "application/json" },
        body: method === "GET" ? undefined : "{}",
      });
      if (path === "/dashboard/api/session") assert.deepEqual([r.status, r.json], SIGNED_OUT);
      else assert.ok(r.status === 401 || (path === "/dashboard/api/logout" && r.status === 200), `${method} ${path}: ${r.status}`);
    }
    for (const name of ["constructor", "__proto__", "toString", "hasOwnProperty", "nope.js"]) {
      const r = await requestFrom("127.0.0.1", `${server.url}/dashboard/assets/${name}`);
      assert.equal(r.status, 404, name);
      assert.equal(errorCode(r.json), "not_found");
    }
  });

  it("ends the member's sessions when a re-invitation resets the password, and keeps one live invitation", async () => {
    const account = await operator.call("POST", "/admin/api/accounts", { name: "carol-co", plan: "solo" });
    const inviteCarol = async () => {
      const invite = await operator.call("POST", `/admin/api/accounts/${account.json.id as string}/invitations`, { email: "carol@example.com" });
      return /#invite=(\w+)$/.exec(invite.json.invite_path as string)![1]!;
    };
    const first = await inviteCarol();
    const second = await inviteCarol();
    const stale = await new Browser(server).call("POST", "/dashboard/api/invitations/accept", { token: first, password: "carol first password" });
    assert.equal(stale.status, 404, "issuing a new invitation invalidates older ones");
    assert.equal((stale.json.error as { code: string }).code, "invitation_not_found");
    const laptop = new Browser(server);
    assert.equal((await laptop.call("POST", "/dashboard/api/invitations/accept", { token: second, password: "carol first password" })).status, 200);
    const phone = new Browser(server, "127.0.0.61");
    assert.equal((await phone.call("POST", "/dashboard/api/login", { email: "carol@example.com", password: "carol first password" })).status, 200);
    assert.equal((await phone.call("GET", "/dashboard/api/session")).status, 200);

    const reset = await inviteCarol();
    const fresh = new Browser(server);
    assert.equal((await fresh.call("POST", "/dashboard/api/invitations/accept", { token: reset, password: "carol second password" })).status, 200);
    assert.deepEqual(await whoIs(laptop), SIGNED_OUT, "old sessions end with the password change");
    assert.equal((await phone.call("GET", "/dashboard/api/keys")).status, 401);
    assert.equal((await fresh.call("GET", "/dashboard/api/session")).json.email, "carol@example.com");
  });

  it("refuses the weakest passwords with a 400 naming password", async () => {
    const account = await operator.call("POST", "/admin/api/accounts", { name: "dave-co", plan: "solo" });
    const invite = await operator.call("POST", `/admin/api/accounts/${account.json.id as string}/invitations`, { email: "dave@example.com" });
    const token = /#invite=(\w+)$/.exec(invite.json.invite_path as string)![1]!;
    for (const weak of ["short pass1", " ".repeat(12), " ".repeat(40), "aaaaaaaaaaaaaaaa", "password1234", "Password1234", "123456789012"]) {
      const r = await new Browser(server).call("POST", "/dashboard/api/invitations/accept", { token, password: weak });
      assert.equal(r.status, 400, JSON.stringify(weak));
      assert.equal((r.json.error as { param: string }).param, "password", JSON.stringify(weak));
    }
    assert.equal(
      (await new Browser(server).call("POST", "/dashboard/api/invitations/accept", { token, password: "a reasonable passphrase" })).status,
      200,
      "refusals do not use the invitation up",
    );
    // Used now: the link is said to be unusable whatever the password, a weak one included (the check page's answer).
    for (const password of ["a reasonable passphrase", "short"]) {
      const used = await new Browser(server).call("POST", "/dashboard/api/invitations/accept", { token, password });
      assert.equal(used.status, 404, password);
      assert.deepEqual(used.json.error, {
        type: "invalid_request_error",
        code: "invitation_not_found",
        param: null,
        message: "This invitation link can no longer be used (it is unknown, already used, expired or replaced by a newer one); ask for a new one.",
      });
    }
  });

  it("uses an invitation once, and refuses short passwords", async () => {
    const account = await operator.call("POST", "/admin/api/accounts", { name: "bob-co", plan: "solo" });
    const invite = await operator.call("POST", `/admin/api/accounts/${account.json.id as string}/invitations`, { email: "bob@example.com" });
    const token = /#invite=(\w+)$/.exec(invite.json.invite_path as string)![1]!;
    assert.equal((await new Browser(server).call("POST", "/dashboard/api/invitations/accept", { token, password: "short" })).status, 400);
    assert.equal(
      (await new Browser(server).call("POST", "/dashboard/api/invitations/accept", { token, password: "long enough password" })).status,
      200,
    );
    assert.equal(
      (await new Browser(server).call("POST", "/dashboard/api/invitations/accept", { token, password: "long enough password" })).status,
      404,
    );
  });

  it("serves the page with a strict content security policy", async () => {
    const r = await fetch(`${server.url}/dashboard/`);
    assert.equal(r.status, 200);
    const csp = r.headers.get("content-security-policy") ?? "";
    assert.match(csp, /script-src 'self'/);
    assert.doesNotMatch(csp, /unsafe-inline/);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.equal(r.headers.get("x-content-type-options"), "nosniff");
    const html = await r.text();
    assert.doesNotMatch(html, /<script>[^<]/, "no inline script");
    assert.doesNotMatch(html, /https?:\/\//, "no external assets");
    assert.equal((await fetch(`${server.url}/dashboard/assets/app.js`)).headers.get("content-type"), "text/javascript; charset=utf-8");
  });
});

describe("operator sessions across a change of ALVEARE_ADMIN_TOKEN", () => {
  const TOKEN_B = "a-rotated-operator-token-for-dashboard-tests";
  const dataDir = tempDir();
  let server: TestServer | undefined;
  /** Stops the running server (if any) and starts another on the same database with this token, or none. */
  const restart = async (token?: string): Promise<TestServer> => {
    await server?.close();
    server = undefined;
    server = await startTestServer({ data_dir: dataDir }, { gated: true, env: token === undefined ? {} : { ALVEARE_ADMIN_TOKEN: token } });
    return server;
  };
  after(async () => {
    await server?.close();
  });

  it("end when the server restarts with another token or none; a session made under the new token works", async () => {
    const underA = new Browser(await restart(TOKEN));
    assert.equal((await underA.call("POST", "/dashboard/api/admin-login", { token: TOKEN })).status, 200);
    assert.equal((await underA.call("GET", "/dashboard/api/session")).json.kind, "operator");

    // Restarted with token B: the old cookie is no operator session on any page or API.
    const sameCookieB = Object.assign(new Browser(await restart(TOKEN_B)), { cookie: underA.cookie, csrf: underA.csrf });
    assert.deepEqual(await whoIs(sameCookieB), SIGNED_OUT, "the dashboard shows signed out");
    assert.equal((await sameCookieB.call("GET", "/admin/api/accounts")).status, 401);
    assert.equal((await sameCookieB.call("POST", "/admin/api/accounts", { name: "x", plan: "solo" })).status, 401);
    const underB = new Browser(sameCookieB.server);
    assert.equal((await underB.call("POST", "/dashboard/api/admin-login", { token: TOKEN_B })).status, 200);
    assert.equal((await underB.call("GET", "/dashboard/api/session")).json.kind, "operator");
    assert.equal((await underB.call("POST", "/admin/api/accounts", { name: "made under B", plan: "solo" })).status, 201);

    // Restarted without a token: no operator session is valid, whichever token made it.
    const without = await restart(undefined);
    for (const cookie of [underA.cookie, underB.cookie]) {
      assert.deepEqual(await whoIs(Object.assign(new Browser(without), { cookie })), SIGNED_OUT);
    }
  });
});

describe("a loopback-only server reached under a name not its own (DNS rebinding)", () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({}, { gated: true, env: { ALVEARE_ADMIN_TOKEN: TOKEN, ALVEARE_PUBLIC_URL: "https://ai.example.com" } });
  });
  after(async () => {
    await server.close();
  });

  it("refuses its dashboard and admin API there, so a rebound page cannot lock the operator out of their own address", async () => {
    const port = new URL(server.url).port;
    // What a page at http://evil.example:PORT sends from the operator's browser once evil.example points at 127.0.0.1.
    const rebound = { host: `evil.example:${port}`, origin: `http://evil.example:${port}` };
    for (let i = 0; i < 6; i++) {
      const guess = await requestFrom("127.0.0.1", `${server.url}/dashboard/api/admin-login`, { body: { token: `guess-${i}` }, headers: rebound });
      assert.equal(guess.status, 403, JSON.stringify(guess.json));
      assert.equal(errorCode(guess.json), "csrf_failed");
      const bearer = await requestFrom("127.0.0.1", `${server.url}/admin/api/accounts`, {
        headers: { host: rebound.host, authorization: `Bearer guess-${i}` },
      });
      assert.equal(bearer.status, 403);
      const member = await requestFrom("127.0.0.1", `${server.url}/dashboard/api/login`, {
        body: { email: "someone@example.com", password: `guess-${i}` },
        headers: rebound,
      });
      assert.equal(member.status, 403);
    }
    const page = await requestFrom("127.0.0.1", `${server.url}/dashboard/`, { headers: { host: rebound.host } });
    assert.equal(page.status, 403);
    assert.match(String(page.headers["content-security-policy"]), /frame-ancestors 'none'/);

    // The operator, at any of the server's own names, was never counted against.
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`, `ai.example.com:${port}`]) {
      const signIn = await requestFrom("127.0.0.1", `${server.url}/dashboard/api/admin-login`, {
        body: { token: TOKEN },
        headers: { host, origin: `http://${host}` },
      });
      assert.equal(signIn.status, 200, host);
      const api = await requestFrom("127.0.0.1", `${server.url}/admin/api/accounts`, { headers: { host, authorization: `Bearer ${TOKEN}` } });
      assert.equal(api.status, 200, host);
    }
  });

  it("is off where the server can be reached directly anyway: on the network, or behind a trusted proxy", () => {
    const loopback = { host: "127.0.0.1", publicUrl: "http://127.0.0.1:8080", trustProxy: false };
    assert.notEqual(hostGuard(loopback), undefined);
    assert.equal(hostGuard({ ...loopback, host: "0.0.0.0", publicUrl: "http://localhost:8080" }), undefined);
    assert.equal(hostGuard({ ...loopback, host: "192.0.2.7" }), undefined);
    assert.equal(hostGuard({ ...loopback, trustProxy: "127.0.0.1".split(",") }), undefined);
  });
});

describe("404s under /dashboard/ and /admin/api/", () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({}, { gated: true, env: { ALVEARE_ADMIN_TOKEN: TOKEN } });
  });
  after(async () => {
    await server.close();
  });

  it("carry the security and cache headers of every dashboard and admin answer, with or without a token", async () => {
    const admin = { authorization: `Bearer ${TOKEN}` };
    const cases: Array<[string, Record<string, string>]> = [
      ["/dashboard/nope", {}],
      ["/dashboard/api/nope", {}],
      ["/dashboard/index.html", {}],
      ["/dashboard/assets/nope.js", {}],
      ["/admin/api/nope", {}],
      ["/admin/api/nope", admin],
      ["/admin/api/accounts/acct_x/nope", admin],
    ];
    for (const [path, headers] of cases) {
      const r = await fetch(`${server.url}${path}`, { headers });
      const what = `${path} ${JSON.stringify(Object.keys(headers))}`;
      assert.equal(r.status, 404, what);
      assert.equal(errorCode((await r.json()) as Record<string, unknown>), "not_found", what);
      assert.match(r.headers.get("content-security-policy") ?? "", /frame-ancestors 'none'/, what);
      assert.equal(r.headers.get("x-frame-options"), "DENY", what);
      assert.equal(r.headers.get("cache-control"), "no-store", what);
      assert.equal(r.headers.get("x-content-type-options"), "nosniff", what);
    }
    const found = await fetch(`${server.url}/admin/api/accounts`, { headers: admin });
    assert.equal(found.status, 200);
    assert.equal(found.headers.get("cache-control"), "no-store", "admin answers (a new key's secret among them) are never cached");
    // A key pasted into the path is not echoed whole, here as on every other 404.
    const key = `alv_live_${"Q".repeat(40)}`;
    for (const path of [`/dashboard/api/keys/${key}`, `/admin/api/keys/${key}/nope`]) {
      const { error } = (await (await fetch(`${server.url}${path}`, { headers: admin })).json()) as { error: { message: string } };
      assert.ok(!error.message.includes(key), error.message);
      assert.match(error.message, /alv_live_…/, path);
    }
    const elsewhere = await fetch(`${server.url}/nope`);
    assert.equal(elsewhere.status, 404);
    assert.equal(elsewhere.headers.get("content-security-policy"), null, "other 404s are the server's own");
  });
});

describe("removing a member", () => {
  let server: TestServer;
  let operator: Browser;
  const PASSWORD = "correct horse battery";
  before(async () => {
    server = await startTestServer({}, { gated: true, env: { ALVEARE_ADMIN_TOKEN: TOKEN } });
    operator = new Browser(server);
    assert.equal((await operator.call("POST", "/dashboard/api/admin-login", { token: TOKEN })).status, 200);
  });
  after(async () => {
    await server.close();
  });

  const newAccount = async (name: string): Promise<string> =>
    (await operator.call("POST", "/admin/api/accounts", { name, plan: "starter" })).json.id as string;
  const invite = async (accountId: string, email: string): Promise<{ memberId: string; token: string }> => {
    const invited = await operator.call("POST", `/admin/api/accounts/${accountId}/invitations`, { email });
    assert.equal(invited.status, 201, JSON.stringify(invited.json));
    return { memberId: invited.json.member_id as string, token: /#invite=(\w+)$/.exec(invited.json.invite_path as string)![1]! };
  };
  const join = async (accountId: string, email: string): Promise<{ memberId: string; browser: Browser }> => {
    const { memberId, token } = await invite(accountId, email);
    const browser = new Browser(server);
    assert.equal((await browser.call("POST", "/dashboard/api/invitations/accept", { token, password: PASSWORD })).status, 200);
    return { memberId, browser };
  };

  it("ends their sessions and password at once, frees the e-mail, and is audited", async () => {
    const accountId = await newAccount("removal-co");
    const { memberId, browser: dana } = await join(accountId, "dana@example.com");
    const phone = new Browser(server, "127.0.0.2");
    assert.equal((await phone.call("POST", "/dashboard/api/login", { email: "dana@example.com", password: PASSWORD })).status, 200);
    const pending = await invite(accountId, "pending@example.com");

    const removed = await operator.call("DELETE", `/admin/api/accounts/${accountId}/members/${memberId}`);
    assert.equal(removed.status, 204, JSON.stringify(removed.json));
    for (const session of [dana, phone]) {
      assert.deepEqual(await whoIs(session), SIGNED_OUT, "every session of the member ends at once");
      assert.equal((await session.call("GET", "/dashboard/api/keys")).status, 401);
    }
    const again = new Browser(server, "127.0.0.3");
    assert.equal(
      (await again.call("POST", "/dashboard/api/login", { email: "dana@example.com", password: PASSWORD })).status,
      401,
      "the password is gone",
    );
    const members = await operator.call("GET", `/admin/api/accounts/${accountId}/members`);
    assert.deepEqual(
      (members.json.data as Array<{ email: string }>).map((m) => m.email),
      ["pending@example.com"],
    );

    // A pending invitation dies with its member.
    assert.equal((await operator.call("DELETE", `/admin/api/accounts/${accountId}/members/${pending.memberId}`)).status, 204);
    const late = await new Browser(server).call("POST", "/dashboard/api/invitations/accept", { token: pending.token, password: PASSWORD });
    assert.equal(late.status, 404, "the removed member's invitation no longer works");

    // The e-mail can be invited again, to this account or another; the old password does not come back.
    const rejoined = await join(accountId, "dana@example.com");
    assert.notEqual(rejoined.memberId, memberId);
    assert.equal((await rejoined.browser.call("GET", "/dashboard/api/session")).json.email, "dana@example.com");
    assert.equal((await operator.call("DELETE", `/admin/api/accounts/${accountId}/members/${rejoined.memberId}`)).status, 204);
    const otherAccount = await newAccount("elsewhere-co");
    await invite(otherAccount, "dana@example.com");
    assert.equal((await again.call("POST", "/dashboard/api/login", { email: "dana@example.com", password: PASSWORD })).status, 401);

    const audit = await operator.call("GET", `/admin/api/audit?action=member.removed&account=${accountId}`);
    const records = audit.json.data as Array<{ actor: string; target: string; detail: { email: string } }>;
    assert.deepEqual(
      records.map((r) => [r.actor, r.target, r.detail.email]),
      [
        ["operator", `member:${rejoined.memberId}`, "dana@example.com"],
        ["operator", `member:${pending.memberId}`, "pending@example.com"],
        ["operator", `member:${memberId}`, "dana@example.com"],
      ],
    );
  });

  it("revokes the API keys the member created, at once, unless the operator keeps them", async () => {
    const accountId = await newAccount("keys-co");
    const { memberId: gina, browser: ginaBrowser } = await join(accountId, "gina@example.com");
    const { memberId: hugo, browser: hugoBrowser } = await join(accountId, "hugo@example.com");
    const made = async (browser: Browser, mode: string) => {
      const r = await browser.call("POST", "/dashboard/api/keys", { mode, name: `${mode} key` });
      assert.equal(r.status, 201, JSON.stringify(r.json));
      return { id: r.json.id as string, key: r.json.key as string, createdBy: r.json.created_by };
    };
    const ginaLive = await made(ginaBrowser, "live");
    const ginaTest = await made(ginaBrowser, "test");
    const hugoLive = await made(hugoBrowser, "live");
    assert.equal(ginaLive.createdBy, gina, "a key made in the dashboard names its member");
    const byOperator = await operator.call("POST", `/admin/api/accounts/${accountId}/keys`, { mode: "live" });
    assert.equal(byOperator.status, 201);
    assert.equal(byOperator.json.created_by, null, "the operator's keys are the account's own");
    const usage = async (key: string) => {
      const r = await fetch(`${server.url}/v1/usage`, { headers: { authorization: `Bearer ${key}` } });
      return { status: r.status, code: r.status === 200 ? null : errorCode((await r.json()) as Record<string, unknown>) };
    };
    // Each key used once first, so the node has it cached when the member goes.
    for (const key of [ginaLive.key, ginaTest.key, hugoLive.key, byOperator.json.key as string]) assert.equal((await usage(key)).status, 200);

    const refused = await operator.call("DELETE", `/admin/api/accounts/${accountId}/members/${gina}?keep_keys=maybe`);
    assert.equal(refused.status, 400);
    assert.equal(errorCode(refused.json), "invalid_parameter");
    assert.equal((await ginaBrowser.call("GET", "/dashboard/api/session")).status, 200, "a refused removal removes no one");

    assert.equal((await operator.call("DELETE", `/admin/api/accounts/${accountId}/members/${gina}`)).status, 204);
    for (const key of [ginaLive.key, ginaTest.key]) assert.deepEqual(await usage(key), { status: 401, code: "revoked_api_key" });
    assert.equal((await usage(hugoLive.key)).status, 200, "another member's key works on");
    assert.equal((await usage(byOperator.json.key as string)).status, 200, "and so does the account's own");
    const keys = (await operator.call("GET", `/admin/api/accounts/${accountId}/keys`)).json.data as Array<Record<string, unknown>>;
    const revoked = Object.fromEntries(keys.map((k) => [k.id, k.revoked_at !== null]));
    assert.deepEqual(revoked, { [ginaLive.id]: true, [ginaTest.id]: true, [hugoLive.id]: false, [byOperator.json.id as string]: false });
    const audit = await operator.call("GET", `/admin/api/audit?action=key.revoked&account=${accountId}`);
    assert.deepEqual(
      (audit.json.data as Array<{ actor: string; target: string; detail: { reason: string } }>)
        .map((r) => [r.actor, r.target, r.detail.reason])
        .sort(),
      [
        ["operator", `key:${ginaLive.id}`, `member ${gina} removed`],
        ["operator", `key:${ginaTest.id}`, `member ${gina} removed`],
      ].sort(),
    );
    const removal = await operator.call("GET", `/admin/api/audit?action=member.removed&account=${accountId}`);
    assert.equal((removal.json.data as Array<{ detail: { keys: string } }>)[0]?.detail.keys, "2 revoked");
    // A member's key list names each key's maker by e-mail: a colleague, none for the account's own or a removed member's.
    const listed = (await hugoBrowser.call("GET", "/dashboard/api/keys")).json.data as Array<Record<string, unknown>>;
    assert.deepEqual(Object.fromEntries(listed.map((k) => [k.id, [k.created_by, k.created_by_email]])), {
      [ginaLive.id]: [gina, null],
      [ginaTest.id]: [gina, null],
      [hugoLive.id]: [hugo, "hugo@example.com"],
      [byOperator.json.id as string]: [null, null],
    });

    // Kept: hugo's key works on as the account's own.
    assert.equal((await operator.call("DELETE", `/admin/api/accounts/${accountId}/members/${hugo}?keep_keys=true`)).status, 204);
    assert.deepEqual(await whoIs(hugoBrowser), SIGNED_OUT);
    assert.equal((await usage(hugoLive.key)).status, 200);
    const kept = ((await operator.call("GET", `/admin/api/accounts/${accountId}/keys`)).json.data as Array<Record<string, unknown>>).find(
      (k) => k.id === hugoLive.id,
    );
    assert.deepEqual([kept?.revoked_at, kept?.created_by], [null, null]);
  });

  it("is 404 for another account's member or an unknown one, and 401 for a member or without the admin token", async () => {
    const ours = await newAccount("ours-co");
    const theirs = await newAccount("theirs-co");
    const { memberId: erin, browser: erinBrowser } = await join(ours, "erin@example.com");
    const { memberId: frank } = await join(theirs, "frank@example.com");
    for (const path of [
      `/admin/api/accounts/${ours}/members/${frank}`,
      `/admin/api/accounts/${ours}/members/mem_nosuchmember`,
      `/admin/api/accounts/acct_nosuch/members/${erin}`,
    ]) {
      const r = await operator.call("DELETE", path);
      assert.equal(r.status, 404, path);
      assert.equal(errorCode(r.json), "not_found", path);
    }
    const path = `/admin/api/accounts/${ours}/members/${erin}`;
    assert.equal((await erinBrowser.call("DELETE", path)).status, 401, "a member's cookie is not the operator's");
    assert.equal((await requestFrom("127.0.0.1", `${server.url}${path}`, { method: "DELETE" })).status, 401, "nor is no token at all");
    assert.equal(
      (await operator.call("DELETE", path, undefined, { "x-csrf-token": "wrong" })).status,
      403,
      "the operator's cookie needs its CSRF token",
    );
    assert.equal((await erinBrowser.call("GET", "/dashboard/api/session")).status, 200, "erin is still a member");
    const byToken = await requestFrom("127.0.0.1", `${server.url}${path}`, { method: "DELETE", headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(byToken.status, 204, "a script removes with the bearer token and no body");
    assert.deepEqual(await whoIs(erinBrowser), SIGNED_OUT);
  });
});
