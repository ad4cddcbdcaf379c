import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { hasControlCharacter } from "../src/accounts/bounded-fields.js";
import { startTestServer, type TestServer } from "./helpers/fixtures.js";
import { Browser } from "./helpers/dashboard-client.js";
import { errorCode, requestFrom } from "./helpers/loopback-client.js";
import { dropAllDatabases, freshDatabase, TEST_REDIS_URL } from "./helpers/postgres.js";
import { deletePrefix, testPrefix } from "./helpers/redis.js";

const TOKEN = "operator-token-for-control-characters";
const admin = { authorization: `Bearer ${TOKEN}` };
const REDIS_PREFIX = testPrefix("ctrl");

after(dropAllDatabases);
after(() => deletePrefix(REDIS_PREFIX));

/** A key name a member could send to paint over an operator's terminal. */
const HOSTILE = "ok\u001b[2J\u001b[31mFAKE\u001b[0m\r\nline2\u0007";
/** One of each kind: NUL, ESC, DEL, C1 (CSI), a right-to-left override, an isolate, a line separator and lone surrogates. */
const CONTROLS = [
  "a\u0000b",
  "x\u001b[2Jy",
  "del\u007f",
  "c1\u009b31m",
  HOSTILE,
  "invoice\u202Efdp.exe",
  "a\u2066b\u2069",
  "line\u2028two",
  "lone\ud800",
  "\udfffx",
  // Invisible: a zero-width space, direction marks, a soft hyphen, a word joiner and invisible operator, a byte-order mark.
  "\u200b",
  "acme\u200f",
  "ac\u061cme",
  "x\u00adx",
  "\u2060\u2061",
  "a\ufeffb",
];

const BACKENDS: Array<{ name: string; env: () => Promise<Record<string, string>> }> = [
  { name: "SQLite", env: async () => ({ ALVEARE_ADMIN_TOKEN: TOKEN }) },
  {
    name: "PostgreSQL",
    env: async () => ({
      ALVEARE_ADMIN_TOKEN: TOKEN,
      ALVEARE_DATABASE_URL: await freshDatabase(),
      ALVEARE_REDIS_URL: TEST_REDIS_URL,
      ALVEARE_REDIS_PREFIX: REDIS_PREFIX,
    }),
  },
];

describe("what counts as a control character", () => {
  it("every kind above, and no printable text: accents, CJK, characters outside the BMP (surrogate pairs) and joiners in emoji or Persian pass", () => {
    for (const s of CONTROLS) assert.equal(hasControlCharacter(s), true, JSON.stringify(s));
    for (const s of ["Acme GmbH", "Café Ünïcödé", "蜂巢", "Hive 🐝", "𝔄𝔩𝔳𝔢𝔞𝔯𝔢", "👩\u200d💻 team", "می\u200cخواهم"])
      assert.equal(hasControlCharacter(s), false, s);
  });
});

for (const backend of BACKENDS) {
  describe(`control characters in names, e-mails and ids (${backend.name})`, () => {
    let server: TestServer;
    let accountId: string;
    let member: Browser;
    const call = (method: string, path: string, body?: unknown) => requestFrom("127.0.0.1", `${server.url}${path}`, { method, headers: admin, body });
    const refused = (r: { status: number; json: Record<string, unknown> }, param: string, what: string): void => {
      assert.equal(r.status, 400, `${what}: ${JSON.stringify(r.json)}`);
      const error = r.json.error as Record<string, unknown>;
      assert.equal(error.type, "invalid_request_error", what);
      assert.equal(error.code, "invalid_parameter", what);
      assert.equal(error.param, param, what);
      assert.match(String(error.message), /control characters/, what);
    };

    before(async () => {
      server = await startTestServer({}, { gated: true, env: await backend.env() });
      const account = await call("POST", "/admin/api/accounts", { name: "Acme", plan: "starter" });
      assert.equal(account.status, 201);
      accountId = account.json.id as string;
      const invite = await call("POST", `/admin/api/accounts/${accountId}/invitations`, { email: "dev@example.com" });
      const token = /#invite=(\w+)$/.exec(invite.json.invite_path as string)![1]!;
      member = new Browser(server);
      assert.equal((await member.call("POST", "/dashboard/api/invitations/accept", { token, password: "correct horse battery" })).status, 200);
    });
    after(async () => {
      await server.close();
    });

    it("refuses them in account names, key names and e-mails on the admin API with a 400 naming the field", async () => {
      for (const name of CONTROLS) {
        refused(await call("POST", "/admin/api/accounts", { name, plan: "starter" }), "name", JSON.stringify(name));
        refused(await call("POST", `/admin/api/accounts/${accountId}/keys`, { name }), "name", JSON.stringify(name));
        refused(await call("POST", `/admin/api/accounts/${accountId}/invitations`, { email: `${name}@example.com` }), "email", JSON.stringify(name));
      }
      const accounts = await call("GET", "/admin/api/accounts");
      assert.deepEqual(
        (accounts.json.data as Array<{ name: string }>).map((a) => a.name),
        ["Acme"],
      );
    });

    it("refuses a name of joiners alone, which shows nothing, as empty", async () => {
      for (const name of ["\u200d", " \u200c\u200d "]) {
        for (const r of [
          await call("POST", "/admin/api/accounts", { name, plan: "starter" }),
          await call("POST", `/admin/api/accounts/${accountId}/keys`, { name }),
        ]) {
          assert.equal(r.status, 400, JSON.stringify(r.json));
          assert.equal((r.json.error as { param: string }).param, "name");
          assert.match((r.json.error as { message: string }).message, /must not be empty/);
        }
      }
      const named = await call("POST", "/admin/api/accounts", { name: "👩\u200d💻 team", plan: "starter" });
      assert.equal(named.status, 201, "an emoji sequence with its joiner is a name");
    });

    it("refuses them in a member's key name on the dashboard", async () => {
      for (const name of CONTROLS) refused(await member.call("POST", "/dashboard/api/keys", { mode: "live", name }), "name", JSON.stringify(name));
      const keys = await member.call("GET", "/dashboard/api/keys");
      assert.deepEqual(keys.json.data, []);
    });

    it("answers 404 for an id with a NUL, on every route that takes one", async () => {
      for (const [method, path, body] of [
        ["GET", "/admin/api/accounts/acct_%00"],
        ["PATCH", "/admin/api/accounts/acct_%00", { plan: "starter" }],
        ["PATCH", "/admin/api/accounts/acct_%00", { status: "suspended" }],
        ["GET", "/admin/api/accounts/acct_%00/keys"],
        ["POST", "/admin/api/accounts/acct_%00/keys", { name: "k" }],
        ["GET", "/admin/api/accounts/acct_%00/members"],
        ["POST", "/admin/api/accounts/acct_%00/invitations", { email: "new@example.com" }],
        ["GET", "/admin/api/accounts/acct_%00/usage"],
        ["GET", "/admin/api/accounts/acct_%00/usage/breakdown"],
        ["POST", "/admin/api/keys/key_%00/revoke"],
      ] as const) {
        const r = await call(method, path, body);
        assert.equal(r.status, 404, `${method} ${path}: ${JSON.stringify(r.json)}`);
        assert.equal(errorCode(r.json), "not_found");
      }
      const r = await member.call("POST", "/dashboard/api/keys/key_%00/revoke");
      assert.equal(r.status, 404, JSON.stringify(r.json));
    });

    it("finds no audit records for a filter with a NUL", async () => {
      for (const query of ["actor=member:a%00b", "account=acct_%00"]) {
        const r = await call("GET", `/admin/api/audit?${query}`);
        assert.equal(r.status, 200, `${query}: ${JSON.stringify(r.json)}`);
        assert.deepEqual(r.json.data, []);
      }
    });

    it("answers a sign-in with such an e-mail as one with an unknown e-mail", async () => {
      const signIn = (email: string) =>
        requestFrom("127.0.0.9", `${server.url}/dashboard/api/login`, {
          headers: { origin: server.url },
          body: { email, password: "correct horse battery" },
        });
      const unknown = await signIn("nobody@example.com");
      assert.equal(unknown.status, 401);
      for (const email of ["a\u0000@example.com", "dev\u0000@example.com", "dev@example.com\u001b"]) {
        const r = await signIn(email);
        assert.equal(r.status, unknown.status, `${JSON.stringify(email)}: ${JSON.stringify(r.json)}`);
        assert.deepEqual(r.json, unknown.json);
      }
    });
  });
}
