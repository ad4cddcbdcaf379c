import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { startTestServer, type TestServer } from "./helpers/fixtures.js";
import { startForwardingProxy, type ForwardingProxy } from "./helpers/forwarding-proxy.js";
import { errorCode, requestFrom, type LoopbackResponse } from "./helpers/loopback-client.js";

const TOKEN = "operator-token-for-the-proxy-tests-0123456789";
const PUBLIC_ORIGIN = "https://alveare.example";
const PASSWORD = "frank's long password";
const CLIENT_A = "127.0.0.2";
const CLIENT_B = "127.0.0.3";

const cookieOf = (r: LoopbackResponse): string => String(r.headers["set-cookie"]?.[0] ?? "");

/** A JSON POST as the dashboard page sends it from the public origin. */
const post = (from: string, url: string, body: unknown, headers: Record<string, string> = {}) =>
  requestFrom(from, url, { method: "POST", body, headers: { origin: PUBLIC_ORIGIN, ...headers } });

async function inviteMember(server: TestServer, email: string): Promise<string> {
  const auth = { authorization: `Bearer ${TOKEN}` };
  const account = await requestFrom("127.0.0.1", `${server.url}/admin/api/accounts`, { body: { name: "proxied", plan: "solo" }, headers: auth });
  const invite = await requestFrom("127.0.0.1", `${server.url}/admin/api/accounts/${account.json.id as string}/invitations`, {
    body: { email },
    headers: auth,
  });
  return /#invite=(\w+)$/.exec(invite.json.invite_path as string)![1]!;
}

// The proxy's own address, and a hop count (which trusts whatever connects directly).
for (const trust of ["127.0.0.1", "1"]) {
  describe(`behind a TLS-terminating reverse proxy with ALVEARE_TRUST_PROXY=${trust}`, () => {
    let server: TestServer;
    let proxy: ForwardingProxy;
    before(async () => {
      server = await startTestServer({}, { gated: true, env: { ALVEARE_ADMIN_TOKEN: TOKEN, ALVEARE_TRUST_PROXY: trust } });
      proxy = await startForwardingProxy(server.url, "alveare.example");
    });
    after(async () => {
      await proxy.close();
      await server.close();
    });

    it("accepts the https origin and sets Secure cookies", async () => {
      const operator = await post(CLIENT_A, `${proxy.url}/dashboard/api/admin-login`, { token: TOKEN });
      assert.equal(operator.status, 200);
      assert.match(cookieOf(operator), /; Secure/);
      const token = await inviteMember(server, "frank@example.com");
      const accepted = await post(CLIENT_A, `${proxy.url}/dashboard/api/invitations/accept`, { token, password: PASSWORD });
      assert.equal(accepted.status, 200);
      assert.match(cookieOf(accepted), /HttpOnly; SameSite=Strict; Max-Age=\d+; Secure/);
      const session = await requestFrom(CLIENT_A, `${proxy.url}/dashboard/api/session`, { headers: { cookie: cookieOf(accepted).split(";")[0]! } });
      assert.equal(session.json.email, "frank@example.com");
      const foreign = await post(
        CLIENT_A,
        `${proxy.url}/dashboard/api/login`,
        { email: "frank@example.com", password: PASSWORD },
        { origin: "https://evil.example" },
      );
      assert.equal(errorCode(foreign.json), "csrf_failed");
    });

    it("names the session cookie __Host- over TLS, so a session planted under the plain name cannot shadow it", async () => {
      // Mallory's own valid session, as a sibling subdomain (Domain=.example) or an injected http:// answer can plant
      // it under the plain name with a longer Path: the browser then sends it before the victim's own cookie.
      const mallory = await post(CLIENT_A, `${proxy.url}/dashboard/api/invitations/accept`, {
        token: await inviteMember(server, "mallory@example.com"),
        password: PASSWORD,
      });
      assert.equal(mallory.status, 200);
      const planted = `alveare_session=${cookieOf(mallory).split(";")[0]!.split("=")[1]!}`;

      const victim = await post(CLIENT_B, `${proxy.url}/dashboard/api/invitations/accept`, {
        token: await inviteMember(server, "victim@example.com"),
        password: PASSWORD,
      });
      assert.equal(victim.status, 200);
      const own = cookieOf(victim).split(";")[0]!;
      const session = await requestFrom(CLIENT_B, `${proxy.url}/dashboard/api/session`, { headers: { cookie: `${planted}; ${own}` } });
      assert.equal(session.json.email, "victim@example.com", "the victim stays in their own account");
      assert.match(
        cookieOf(victim),
        /^__Host-alveare_session=\w+; Path=\/; HttpOnly; SameSite=Strict; Max-Age=\d+; Secure$/,
        "no Domain, Path=/, Secure",
      );
      const plantedOnly = await requestFrom(CLIENT_B, `${proxy.url}/dashboard/api/session`, { headers: { cookie: planted } });
      assert.deepEqual(plantedOnly.json, { kind: "signed_out" }, "over TLS the plain name is no session");

      const out = await post(CLIENT_B, `${proxy.url}/dashboard/api/logout`, {}, { cookie: own, "x-csrf-token": victim.json.csrf_token as string });
      assert.equal(out.status, 200);
      assert.match(cookieOf(out), /^__Host-alveare_session=; Path=\/; .*Max-Age=0; Secure$/, "signing out clears the __Host- cookie");
      assert.deepEqual((await requestFrom(CLIENT_B, `${proxy.url}/dashboard/api/session`, { headers: { cookie: own } })).json, {
        kind: "signed_out",
      });
    });

    it("reads the forwarded scheme case-insensitively: HTTPS is https, and the cookie is Secure", async () => {
      const upper = await requestFrom("127.0.0.1", `${server.url}/dashboard/api/admin-login`, {
        method: "POST",
        body: { token: TOKEN },
        headers: { origin: PUBLIC_ORIGIN, "x-forwarded-proto": "HTTPS", "x-forwarded-host": "alveare.example", "x-forwarded-for": CLIENT_B },
      });
      assert.equal(upper.status, 200);
      assert.match(cookieOf(upper), /; Secure/);
    });

    it("limits sign-in failures per real client address, and member and operator apart", async () => {
      // Spraying e-mails from one client address locks that address at 30 failures.
      for (let i = 0; i < 30; i++) {
        const r = await post(CLIENT_A, `${proxy.url}/dashboard/api/login`, { email: `stranger-${i}@example.com`, password: "a wrong password" });
        assert.equal(errorCode(r.json), "invalid_credentials");
      }
      const locked = await post(CLIENT_A, `${proxy.url}/dashboard/api/login`, { email: "frank@example.com", password: PASSWORD });
      assert.equal(locked.status, 429);
      assert.ok(Number(locked.headers["retry-after"]) >= 1);
      const spoofed = await post(
        CLIENT_A,
        `${proxy.url}/dashboard/api/login`,
        { email: "frank@example.com", password: PASSWORD },
        { "x-forwarded-for": "198.51.100.7" },
      );
      assert.equal(spoofed.status, 429, "an address the client adds in front of the proxy's is not believed");

      const other = await post(CLIENT_B, `${proxy.url}/dashboard/api/login`, { email: "frank@example.com", password: PASSWORD });
      assert.equal(other.status, 200, "another client behind the same proxy is not locked out");
      assert.match(cookieOf(other), /; Secure/);
      assert.equal(
        (await post(CLIENT_A, `${proxy.url}/dashboard/api/admin-login`, { token: TOKEN })).status,
        200,
        "member failures do not lock the operator",
      );

      for (let i = 0; i < 5; i++) assert.equal((await post(CLIENT_B, `${proxy.url}/dashboard/api/admin-login`, { token: `wrong-${i}` })).status, 401);
      assert.equal((await post(CLIENT_B, `${proxy.url}/dashboard/api/admin-login`, { token: TOKEN })).status, 429);
      assert.equal(
        (await post(CLIENT_B, `${proxy.url}/dashboard/api/login`, { email: "frank@example.com", password: PASSWORD })).status,
        200,
        "operator failures do not lock members",
      );
    });
  });
}

describe("without ALVEARE_TRUST_PROXY", () => {
  let server: TestServer;
  let proxy: ForwardingProxy;
  before(async () => {
    server = await startTestServer({}, { gated: true, env: { ALVEARE_ADMIN_TOKEN: TOKEN } });
    proxy = await startForwardingProxy(server.url, "alveare.example");
  });
  after(async () => {
    await proxy.close();
    await server.close();
  });

  it("ignores X-Forwarded-* headers: no https origin, no Secure, one address for everyone", async () => {
    const viaProxy = await post(CLIENT_A, `${proxy.url}/dashboard/api/admin-login`, { token: TOKEN });
    assert.equal(viaProxy.status, 403);
    assert.equal(errorCode(viaProxy.json), "csrf_failed");

    const forged = { origin: server.url, "x-forwarded-proto": "https", "x-forwarded-host": "alveare.example" };
    const direct = await post("127.0.0.1", `${server.url}/dashboard/api/admin-login`, { token: TOKEN }, forged);
    assert.equal(direct.status, 200);
    assert.doesNotMatch(cookieOf(direct), /Secure/);

    const token = await inviteMember(server, "frank@example.com");
    assert.equal((await post("127.0.0.1", `${server.url}/dashboard/api/invitations/accept`, { token, password: PASSWORD }, forged)).status, 200);
    for (let i = 0; i < 30; i++) {
      const r = await post(
        "127.0.0.1",
        `${server.url}/dashboard/api/login`,
        { email: `stranger-${i}@example.com`, password: "a wrong password" },
        { ...forged, "x-forwarded-for": `198.51.100.${i}` },
      );
      assert.equal(r.status, 401);
    }
    const locked = await post(
      "127.0.0.1",
      `${server.url}/dashboard/api/login`,
      { email: "frank@example.com", password: PASSWORD },
      { ...forged, "x-forwarded-for": "198.51.100.99" },
    );
    assert.equal(locked.status, 429, "a forwarded address does not escape the limit");
  });
});
