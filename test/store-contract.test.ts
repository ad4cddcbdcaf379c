import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { createStore, type StoreOptions } from "../src/store/create-store.js";
import type { Account, ApiKeyRecord, LedgerStore, Member, Mode, Stores } from "../src/store/store.js";
import { NOT_DELIVERED } from "../src/metering/counting-rule.js";
import { tempDir } from "./helpers/fixtures.js";
import { dropAllDatabases, freshDatabase } from "./helpers/postgres.js";

/**
 * What every backend of the three stores must do, whatever database is behind
 * them. A backend hands out fresh, empty locations; each can be opened more than
 * once, so what one opening wrote can be read back by the next.
 */
interface Backend {
  name: string;
  fresh(): Promise<{ open(options?: StoreOptions): Promise<Stores> }>;
}

const BACKENDS: Backend[] = [
  {
    name: "SQLite",
    fresh: async () => {
      const dataDir = tempDir("alveare-contract-");
      return { open: (options) => createStore({ dataDir }, options) };
    },
  },
  {
    name: "PostgreSQL",
    fresh: async () => {
      const databaseUrl = await freshDatabase();
      return { open: (options) => createStore({ dataDir: tempDir("alveare-contract-"), databaseUrl }, options) };
    },
  },
];

after(dropAllDatabases);

const PERIOD = "2026-03";
const NOW = "2026-03-10T12:00:00.000Z";

const account = (id: string, plan = "starter"): Account => ({
  id,
  name: `name of ${id}`,
  plan,
  status: "active",
  createdAt: "2026-01-01T00:00:00.000Z",
});
const key = (id: string, accountId: string, mode: Mode = "live", createdBy: string | null = null): ApiKeyRecord => ({
  id,
  accountId,
  name: `key ${id}`,
  mode,
  prefix: `alv_${mode}_${id}`,
  createdAt: "2026-01-02T00:00:00.000Z",
  lastUsedAt: null,
  revokedAt: null,
  createdBy,
});
const member = (id: string, accountId: string, email: string): Member => ({
  id,
  accountId,
  email,
  passwordHash: null,
  createdAt: "2026-01-03T00:00:00.000Z",
});

/** Opens a fresh location, runs `body` on it, and closes it whatever happens. */
async function withStores(backend: Backend, body: (stores: Stores) => Promise<void>): Promise<void> {
  const stores = await (await backend.fresh()).open();
  try {
    await body(stores);
  } finally {
    await stores.close();
  }
}

/** Admits one request and completes it with `status`; returns the ledger event id. */
async function served(
  ledger: LedgerStore,
  r: { accountId: string; keyId: string; specialist: string; status: number; tokens: number; at?: string; mode?: Mode },
): Promise<number> {
  const at = r.at ?? NOW;
  const mode = r.mode ?? "live";
  const eventId = await ledger.admit({
    requestId: `req_${Math.random()}`,
    accountId: r.accountId,
    keyId: r.keyId,
    mode,
    period: at.slice(0, 7),
    endpoint: "infer",
    specialist: r.specialist,
    limit: 1000,
    at,
  });
  assert.ok(eventId !== undefined);
  await ledger.complete({
    eventId,
    accountId: r.accountId,
    mode,
    period: at.slice(0, 7),
    status: r.status,
    promptTokens: r.tokens,
    completionTokens: 0,
    latencyMs: 1,
    at,
  });
  return eventId;
}

for (const backend of BACKENDS) {
  describe(`store contract (${backend.name}): accounts and keys`, () => {
    it("creates, reads, lists and changes accounts; a change of a missing account says so", async () => {
      await withStores(backend, async ({ accounts }) => {
        await accounts.createAccount(account("acct_b"));
        await accounts.createAccount(account("acct_a"));
        assert.deepEqual(await accounts.getAccount("acct_a"), account("acct_a"));
        assert.equal(await accounts.getAccount("acct_missing"), undefined);
        assert.deepEqual(
          (await accounts.listAccounts()).map((a) => a.id),
          ["acct_a", "acct_b"],
          "same creation time: ordered by id",
        );
        assert.equal(await accounts.updateAccount("acct_a", { plan: "scale" }), true);
        assert.equal(await accounts.updateAccount("acct_a", { status: "suspended" }), true);
        assert.deepEqual(await accounts.getAccount("acct_a"), { ...account("acct_a", "scale"), status: "suspended" });
        assert.equal(await accounts.updateAccount("acct_missing", { plan: "scale" }), false);
        await assert.rejects(accounts.createAccount(account("acct_a")), "an account id is unique");
      });
    });

    it("finds nothing by an id, e-mail or audit filter with a NUL (PostgreSQL text cannot hold one), and fails no lookup", async () => {
      await withStores(backend, async ({ accounts, people, audit }) => {
        await accounts.createAccount(account("acct_a"));
        await accounts.createKey(key("k1", "acct_a"), "hash-k1", { unrevoked: 10 });
        await people.createMember(member("m1", "acct_a", "a@example.com"));
        await audit.record(
          { actor: "member:a@example.com", source: null, requestId: null },
          { action: "key.created", accountId: "acct_a", target: "key:k1" },
        );
        const nul = "\u0000";
        assert.equal(await accounts.getAccount(`acct_a${nul}`), undefined);
        assert.equal(await accounts.updateAccount(`acct_a${nul}`, { plan: "scale" }), false);
        assert.deepEqual(await accounts.listKeys(`acct_a${nul}`), []);
        assert.equal(await accounts.getKey(`k1${nul}`), undefined);
        assert.equal(await accounts.revokeKey(`k1${nul}`, NOW), false);
        assert.equal(await people.getMember(`m1${nul}`), undefined);
        assert.equal(await people.findMemberByEmail(`a${nul}@example.com`), undefined);
        assert.deepEqual(await people.listMembers(`acct_a${nul}`), []);
        for (const filter of [{ actor: `member:a${nul}@example.com` }, { accountId: `acct_a${nul}` }]) {
          assert.deepEqual(await audit.query({ ...filter, limit: 10 }), { records: [], nextCursor: null });
        }
        assert.equal((await accounts.getKey("k1"))?.revokedAt, null, "nothing was changed");
      });
    });

    it("creates keys up to the cap per mode, never for a missing or suspended account", async () => {
      await withStores(backend, async ({ accounts }) => {
        await accounts.createAccount(account("acct_a"));
        assert.equal(await accounts.createKey(key("k1", "acct_a"), "hash1", { unrevoked: 2 }), "created");
        assert.equal(await accounts.createKey(key("k2", "acct_a"), "hash2", { unrevoked: 2 }), "created");
        assert.equal(await accounts.createKey(key("k3", "acct_a"), "hash3", { unrevoked: 2 }), "limit_reached");
        assert.equal(await accounts.createKey(key("t1", "acct_a", "test"), "hasht1", { unrevoked: 2 }), "created", "the cap is per mode");
        assert.equal(await accounts.revokeKey("k1", NOW), true);
        assert.equal(await accounts.createKey(key("k3", "acct_a"), "hash3", { unrevoked: 2 }), "created", "revoked keys do not count");
        assert.equal(await accounts.createKey(key("x1", "acct_missing"), "hashx", { unrevoked: 2 }), "no_account");
        await accounts.updateAccount("acct_a", { status: "suspended" });
        assert.equal(await accounts.createKey(key("k4", "acct_a"), "hash4", { unrevoked: 10 }), "suspended");
        assert.deepEqual(
          (await accounts.listKeys("acct_a")).map((k) => k.id),
          ["k1", "k2", "k3", "t1"].sort(),
        );
        assert.deepEqual(await accounts.listKeys("acct_missing"), []);
      });
    });

    it("caps the keys of a mode created in any 24 hours when asked (a member's), revoked ones included", async () => {
      await withStores(backend, async ({ accounts }) => {
        await accounts.createAccount(account("acct_a"));
        const at = (id: string, createdAt: string, mode: Mode = "live") => ({ ...key(id, "acct_a", mode), createdAt });
        const limits = { unrevoked: 10, perDay: 2 };
        // A day and a second before: outside the window.
        assert.equal(await accounts.createKey(at("old", "2026-01-01T23:59:59.000Z"), "h-old", limits), "created");
        assert.equal(await accounts.createKey(at("a", "2026-01-02T12:00:00.000Z"), "h-a", limits), "created");
        assert.equal(await accounts.revokeKey("a", NOW), true);
        assert.equal(await accounts.createKey(at("b", "2026-01-03T00:00:00.000Z"), "h-b", limits), "created");
        assert.equal(await accounts.revokeKey("b", NOW), true);
        // Two in the 24 hours before, both revoked: the third is refused, and said apart from the unrevoked cap.
        assert.equal(await accounts.createKey(at("c", "2026-01-03T01:00:00.000Z"), "h-c", limits), "daily_limit_reached");
        assert.equal(await accounts.createKey(at("t", "2026-01-03T01:00:00.000Z", "test"), "h-t", limits), "created", "per mode");
        assert.equal(await accounts.createKey(at("c", "2026-01-03T01:00:00.000Z"), "h-c", { unrevoked: 10 }), "created", "no cap asked");
        assert.equal(await accounts.createKey(at("d", "2026-01-03T12:00:01.000Z"), "h-d", limits), "daily_limit_reached");
        assert.equal(await accounts.createKey(at("d", "2026-01-04T00:00:01.000Z"), "h-d", limits), "created", "a day after, room again");
        assert.equal(await accounts.createKey(at("e", "2026-01-04T00:00:02.000Z"), "h-e", { unrevoked: 3, perDay: 9 }), "limit_reached");
      });
    });

    it("finds a key by its hash with its account, and sees a revocation or an account change on the very next lookup", async () => {
      await withStores(backend, async ({ accounts }) => {
        await accounts.createAccount(account("acct_a"));
        await accounts.createKey(key("k1", "acct_a"), "hash1", { unrevoked: 5 });
        assert.deepEqual(await accounts.findKeyByHash("hash1"), { key: key("k1", "acct_a"), account: account("acct_a") });
        assert.equal(await accounts.findKeyByHash("hash-unknown"), undefined);
        await accounts.updateAccount("acct_a", { plan: "scale" });
        assert.equal((await accounts.findKeyByHash("hash1"))?.account.plan, "scale");
        await accounts.updateAccount("acct_a", { status: "suspended" });
        assert.equal((await accounts.findKeyByHash("hash1"))?.account.status, "suspended");
        assert.equal(await accounts.revokeKey("k1", NOW), true);
        assert.equal((await accounts.findKeyByHash("hash1"))?.key.revokedAt, NOW);
        assert.equal(await accounts.revokeKey("k1", "2026-04-01T00:00:00.000Z"), true);
        assert.equal((await accounts.findKeyByHash("hash1"))?.key.revokedAt, NOW, "revoking again keeps the first time");
        assert.equal(await accounts.revokeKey("k_missing", NOW), false);
        await accounts.touchKey("k1", NOW);
        assert.equal((await accounts.listKeys("acct_a"))[0]?.lastUsedAt, NOW);
      });
    });
  });

  describe(`store contract (${backend.name}): the ledger`, () => {
    it("admits up to the period's limit, per account and mode, and gives back what the counting rule says", async () => {
      await withStores(backend, async ({ accounts, ledger }) => {
        await accounts.createAccount(account("acct_a"));
        const admit = (mode: Mode = "live", period = PERIOD) =>
          ledger.admit({
            requestId: "req",
            accountId: "acct_a",
            keyId: "k1",
            mode,
            period,
            endpoint: "infer",
            specialist: "classify",
            limit: 2,
            at: `${period}-10T12:00:00.000Z`,
          });
        const first = await admit();
        const second = await admit();
        assert.ok(first !== undefined && second !== undefined && first !== second);
        assert.equal(await admit(), undefined, "the third of a limit of 2 is refused");
        assert.notEqual(await admit("test"), undefined, "test mode counts on its own");
        assert.notEqual(await admit("live", "2026-04"), undefined, "a new period starts at zero");
        await ledger.complete({
          eventId: second,
          accountId: "acct_a",
          mode: "live",
          period: PERIOD,
          status: 500,
          promptTokens: 0,
          completionTokens: 0,
          latencyMs: 1,
          at: NOW,
        });
        assert.notEqual(await admit(), undefined, "a failed request is given back at once");
        await ledger.complete({
          eventId: first,
          accountId: "acct_a",
          mode: "live",
          period: PERIOD,
          status: 200,
          promptTokens: 4,
          completionTokens: 3,
          latencyMs: 1,
          at: NOW,
        });
        const usage = await ledger.periodUsage("acct_a", "live", PERIOD);
        // The served one and the unfinished one count; the failed one does not.
        assert.deepEqual({ ...usage, bySpecialist: { ...usage.bySpecialist } }, { requests: 2, tokens: 7, bySpecialist: { classify: 2 } });
        assert.deepEqual({ ...(await ledger.dailyRequests("acct_a", "live", PERIOD)) }, { "2026-03-10": 2 });
        assert.deepEqual(await ledger.periodUsage("acct_missing", "live", PERIOD), { requests: 0, tokens: 0, bySpecialist: {} });
      });
    });

    it("breaks a period down per key, per outcome and per day, refusals included and never counted as usage", async () => {
      await withStores(backend, async ({ accounts, ledger }) => {
        await accounts.createAccount(account("acct_a"));
        await served(ledger, { accountId: "acct_a", keyId: "k1", specialist: "classify", status: 200, tokens: 5 });
        await served(ledger, { accountId: "acct_a", keyId: "k1", specialist: "classify", status: 200, tokens: 6, at: "2026-03-11T00:00:00.000Z" });
        await served(ledger, { accountId: "acct_a", keyId: "k2", specialist: "qa", status: 400, tokens: 0 });
        await served(ledger, { accountId: "acct_a", keyId: "k2", specialist: "qa", status: 502, tokens: 0 });
        await served(ledger, { accountId: "acct_a", keyId: "k1", specialist: "qa", status: 499, tokens: 4 });
        const refuse = (keyId: string, status: number, code: string, at = NOW, mode: Mode = "live") =>
          ledger.countRefusal({ accountId: "acct_a", keyId, mode, status, code, at });
        // Refusals of one turn are summed and committed together, as a burst's are.
        await Promise.all([
          refuse("k2", 429, "rate_limit_exceeded"),
          refuse("k2", 429, "rate_limit_exceeded"),
          refuse("k2", 429, "rate_limit_exceeded"),
          refuse("k3", 429, "monthly_quota_exceeded"),
          refuse("k3", 403, "specialist_not_in_plan"),
        ]);
        await refuse("k2", 429, "rate_limit_exceeded", "2026-03-31T23:59:59.999Z");
        await refuse("k2", 429, "rate_limit_exceeded", "2026-04-01T00:00:00.000Z");
        await refuse("k2", 429, "rate_limit_exceeded", "2026-02-28T23:59:59.999Z");
        await refuse("k2", 429, "rate_limit_exceeded", NOW, "test");

        const breakdown = await ledger.usageBreakdown("acct_a", "live", PERIOD);
        assert.deepEqual(breakdown.byKey, [
          { keyId: "k2", requests: 6, tokens: 0 },
          { keyId: "k1", requests: 3, tokens: 15 },
          { keyId: "k3", requests: 2, tokens: 0 },
        ]);
        // A client that left is its own outcome: unlike the 4xx refused, it counts against the quota.
        assert.deepEqual(breakdown.byStatus, { success: 2, clientError: 2, clientClosed: 1, rateLimited: 5, serverError: 1 });
        assert.deepEqual({ ...breakdown.dailyTokens }, { "2026-03-10": 9, "2026-03-11": 6 });
        const usage = await ledger.periodUsage("acct_a", "live", PERIOD);
        assert.equal(usage.requests, 3, "refusals never count against the quota; the 499 does");
        const test = await ledger.usageBreakdown("acct_a", "test", PERIOD);
        assert.deepEqual(test.byStatus, { success: 0, clientError: 0, clientClosed: 0, rateLimited: 1, serverError: 0 });
        assert.deepEqual(test.byKey, [{ keyId: "k2", requests: 1, tokens: 0 }]);
        assert.equal((await ledger.usageBreakdown("acct_a", "live", "2026-04")).byStatus.rateLimited, 1);
      });
    });

    it("counts neither a request settled as not delivered nor one still unfinished as a success, nor per key: the two agree", async () => {
      await withStores(backend, async ({ accounts, ledger }) => {
        await accounts.createAccount(account("acct_a"));
        await served(ledger, { accountId: "acct_a", keyId: "k1", specialist: "classify", status: 200, tokens: 5 });
        await served(ledger, { accountId: "acct_a", keyId: "k1", specialist: "classify", status: 304, tokens: 0 });
        await served(ledger, { accountId: "acct_a", keyId: "k1", specialist: "classify", status: NOT_DELIVERED, tokens: 0 });
        const unfinished = await ledger.admit({
          requestId: "req_unfinished",
          accountId: "acct_a",
          keyId: "k1",
          mode: "live",
          period: PERIOD,
          endpoint: "infer",
          specialist: "classify",
          limit: 1000,
          at: NOW,
        });
        assert.ok(unfinished !== undefined);
        const breakdown = await ledger.usageBreakdown("acct_a", "live", PERIOD);
        assert.deepEqual(breakdown.byStatus, { success: 2, clientError: 0, clientClosed: 0, rateLimited: 0, serverError: 0 });
        assert.deepEqual(breakdown.byKey, [{ keyId: "k1", requests: 2, tokens: 5 }]);
      });
    });

    it("keeps every acknowledged write, admissions and refusals, across a close and a reopen", async () => {
      const location = await backend.fresh();
      const first = await location.open({ serving: true });
      await first.accounts.createAccount(account("acct_a"));
      await served(first.ledger, { accountId: "acct_a", keyId: "k1", specialist: "classify", status: 200, tokens: 3 });
      await first.ledger.countRefusal({ accountId: "acct_a", keyId: "k1", mode: "live", status: 429, code: "rate_limit_exceeded", at: NOW });
      await first.close();
      const second = await location.open({ serving: true });
      try {
        const usage = await second.ledger.periodUsage("acct_a", "live", PERIOD);
        assert.equal(usage.requests, 1);
        assert.equal(usage.tokens, 3);
        assert.deepEqual((await second.ledger.usageBreakdown("acct_a", "live", PERIOD)).byStatus, {
          success: 1,
          clientError: 0,
          clientClosed: 0,
          rateLimited: 1,
          serverError: 0,
        });
      } finally {
        await second.close();
      }
    });
  });

  describe(`store contract (${backend.name}): the audit log`, () => {
    it("appends records, pages them newest first with filters, aggregates a flood per source and minute, and prunes by age", async () => {
      await withStores(backend, async ({ audit }) => {
        const cli = { actor: "cli", source: null, requestId: null };
        await audit.record(cli, { action: "account.created", accountId: "acct_a", target: "account:acct_a", detail: { plan: "solo" } });
        await audit.record(
          { actor: "member:a@example.com", source: "10.0.0.2", requestId: "req_1" },
          {
            action: "key.created",
            accountId: "acct_a",
            target: "key:k1",
          },
        );
        await audit.record(cli, { action: "account.created", accountId: "acct_b", target: "account:acct_b" });
        const minute = new Date("2026-03-10T12:00:05.000Z");
        for (let i = 0; i < 3; i++) await audit.count({ actor: "anonymous", source: "10.0.0.9", requestId: null }, "sign_in.failed", minute);
        await audit.count({ actor: "anonymous", source: "10.0.0.9", requestId: null }, "sign_in.failed", new Date("2026-03-10T12:01:00.000Z"));

        const all = await audit.query({ limit: 10 });
        assert.deepEqual(
          all.records.map((r) => [r.action, r.count]),
          [
            ["sign_in.failed", 1],
            ["sign_in.failed", 3],
            ["account.created", 1],
            ["key.created", 1],
            ["account.created", 1],
          ],
        );
        assert.equal(all.nextCursor, null);
        const first = all.records.at(-1)!;
        assert.deepEqual(await audit.get(first.id), first);
        assert.deepEqual(first.detail, { plan: "solo" });
        assert.equal(first.source, null);
        assert.equal(await audit.get(first.id + 1000), undefined);

        const page1 = await audit.query({ limit: 2 });
        assert.equal(page1.records.length, 2);
        assert.ok(page1.nextCursor !== null);
        const page2 = await audit.query({ limit: 10, cursor: page1.nextCursor });
        assert.deepEqual(
          [...page1.records, ...page2.records].map((r) => r.id),
          all.records.map((r) => r.id),
        );
        assert.deepEqual(
          (await audit.query({ limit: 10, accountId: "acct_a" })).records.map((r) => r.action),
          ["key.created", "account.created"],
        );
        assert.deepEqual(
          (await audit.query({ limit: 10, actor: "member" })).records.map((r) => r.target),
          ["key:k1"],
        );
        assert.equal((await audit.query({ limit: 10, action: "account.created", actor: "cli" })).records.length, 2);
        assert.equal((await audit.query({ limit: 10, since: "2026-03-10T12:01:00.000Z", until: "2026-03-10T12:02:00.000Z" })).records.length, 1);
        assert.equal(await audit.prune(new Date("2026-03-10T12:00:30.000Z")), 1, "the first minute's aggregate is older");
        assert.equal((await audit.query({ limit: 10 })).records.length, 4);
      });
    });
  });

  describe(`store contract (${backend.name}): people`, () => {
    it("keeps members with unique e-mails, each in an existing account", async () => {
      await withStores(backend, async ({ accounts, people }) => {
        await accounts.createAccount(account("acct_a"));
        await people.createMember(member("m2", "acct_a", "b@example.com"));
        await people.createMember(member("m1", "acct_a", "a@example.com"));
        assert.deepEqual(await people.getMember("m1"), member("m1", "acct_a", "a@example.com"));
        assert.deepEqual(await people.findMemberByEmail("b@example.com"), member("m2", "acct_a", "b@example.com"));
        assert.equal(await people.findMemberByEmail("nobody@example.com"), undefined);
        assert.deepEqual(
          (await people.listMembers("acct_a")).map((m) => m.id),
          ["m1", "m2"],
        );
        assert.deepEqual(await people.listMembers("acct_missing"), []);
        await assert.rejects(people.createMember(member("m3", "acct_a", "a@example.com")), "an e-mail belongs to one member");
        await assert.rejects(people.createMember(member("m4", "acct_missing", "c@example.com")), "a member belongs to an account");
      });
    });

    it("keeps one live invitation per member, usable once and only before it expires", async () => {
      await withStores(backend, async ({ accounts, people }) => {
        await accounts.createAccount(account("acct_a"));
        await people.createMember(member("m1", "acct_a", "a@example.com"));
        await people.createInvitation("inv_old", "m1", "2026-03-17T00:00:00.000Z");
        await people.createInvitation("inv_new", "m1", "2026-03-17T00:00:00.000Z");
        assert.equal(await people.findInvitation("inv_old"), undefined, "a new invitation replaces the unused one");
        assert.deepEqual(await people.findInvitation("inv_new"), { memberId: "m1", expiresAt: "2026-03-17T00:00:00.000Z", usedAt: null });
        assert.equal(await people.useInvitation("inv_new", "2026-03-17T00:00:00.000Z"), undefined, "expired at its expiry time");
        assert.equal(await people.useInvitation("inv_new", NOW), "m1");
        assert.equal(await people.useInvitation("inv_new", NOW), undefined, "used once");
        assert.equal((await people.findInvitation("inv_new"))?.usedAt, NOW);
        await people.createInvitation("inv_again", "m1", "2026-03-17T00:00:00.000Z");
        assert.equal((await people.findInvitation("inv_new"))?.usedAt, NOW, "a used invitation stays as a record");
      });
    });

    it("finds sessions until they expire or end; a new password ends the member's sessions", async () => {
      await withStores(backend, async ({ accounts, people }) => {
        await accounts.createAccount(account("acct_a"));
        await people.createMember(member("m1", "acct_a", "a@example.com"));
        const session = {
          tokenHash: "s1",
          memberId: "m1",
          admin: false,
          csrfToken: "csrf1",
          expiresAt: "2026-03-11T00:00:00.000Z",
          adminTokenDigest: null,
        };
        const operator = {
          tokenHash: "s_op",
          memberId: null,
          admin: true,
          csrfToken: "csrf_op",
          expiresAt: "2026-03-11T00:00:00.000Z",
          adminTokenDigest: "digest-of-the-admin-token",
        };
        await people.createSession(session);
        await people.createSession(operator);
        assert.deepEqual(await people.findSession("s1", NOW), session);
        assert.deepEqual(await people.findSession("s_op", NOW), operator);
        assert.equal(await people.findSession("s1", "2026-03-11T00:00:00.000Z"), undefined, "expired");
        await people.setMemberPassword("m1", "scrypt$hash");
        assert.equal((await people.getMember("m1"))?.passwordHash, "scrypt$hash");
        assert.equal(await people.findSession("s1", NOW), undefined, "a password change ends the member's sessions");
        assert.deepEqual(await people.findSession("s_op", NOW), operator, "and no one else's");
        await people.deleteSession("s_op");
        assert.equal(await people.findSession("s_op", NOW), undefined);
        // Expired sessions are deleted, live ones kept.
        const at = (tokenHash: string, expiresAt: string) => ({ ...operator, tokenHash, expiresAt });
        await people.createSession(at("s_old", "2026-03-01T00:00:00.000Z"));
        await people.createSession(at("s_now", NOW));
        await people.createSession(at("s_live", "2026-03-11T00:00:00.000Z"));
        assert.equal(await people.deleteExpiredSessions(NOW), 2, "expired at or before now");
        assert.equal(await people.findSession("s_old", "2026-01-01T00:00:00.000Z"), undefined, "gone, not only expired");
        assert.equal(await people.findSession("s_now", "2026-01-01T00:00:00.000Z"), undefined);
        assert.deepEqual(await people.findSession("s_live", NOW), at("s_live", "2026-03-11T00:00:00.000Z"));
        assert.equal(await people.deleteExpiredSessions(NOW), 0);
      });
    });

    it("stores a member's session only while the password checked is still the member's", async () => {
      await withStores(backend, async ({ accounts, people }) => {
        await accounts.createAccount(account("acct_a"));
        await people.createMember(member("m1", "acct_a", "a@example.com"));
        await people.setMemberPassword("m1", "scrypt$old");
        const session = (tokenHash: string, memberId = "m1") => ({
          tokenHash,
          memberId,
          admin: false,
          csrfToken: `csrf-${tokenHash}`,
          expiresAt: "2026-03-11T00:00:00.000Z",
          adminTokenDigest: null,
        });
        assert.equal(await people.createMemberSession(session("s1"), "scrypt$old"), true);
        assert.deepEqual(await people.findSession("s1", NOW), session("s1"));
        await people.setMemberPassword("m1", "scrypt$new");
        assert.equal(await people.createMemberSession(session("s2"), "scrypt$old"), false, "checked against the old password");
        assert.equal(await people.findSession("s2", NOW), undefined);
        assert.equal(await people.createMemberSession(session("s3", "m_gone"), "scrypt$new"), false, "no such member");
        assert.equal(await people.createMemberSession(session("s4"), "scrypt$new"), true);
      });
    });

    it("deletes a member with their sessions and invitations at once, and frees the e-mail", async () => {
      await withStores(backend, async ({ accounts, people }) => {
        await accounts.createAccount(account("acct_a"));
        await people.createMember(member("m1", "acct_a", "a@example.com"));
        await people.createMember(member("m2", "acct_a", "b@example.com"));
        const expiresAt = "2026-03-11T00:00:00.000Z";
        await people.createSession({ tokenHash: "s1", memberId: "m1", admin: false, csrfToken: "c1", expiresAt, adminTokenDigest: null });
        await people.createSession({ tokenHash: "s2", memberId: "m2", admin: false, csrfToken: "c2", expiresAt, adminTokenDigest: null });
        await people.createInvitation("inv_used", "m1", expiresAt);
        assert.equal(await people.useInvitation("inv_used", NOW), "m1");
        await people.createInvitation("inv_open", "m1", expiresAt);
        assert.deepEqual(await people.deleteMember("m1", NOW, false), []);
        assert.equal(await people.getMember("m1"), undefined);
        assert.equal(await people.findSession("s1", NOW), undefined, "the member's sessions end");
        assert.equal(await people.findInvitation("inv_open"), undefined, "and their invitations, used or not");
        assert.equal(await people.findInvitation("inv_used"), undefined);
        assert.notEqual(await people.findSession("s2", NOW), undefined, "no one else's");
        assert.equal(await people.deleteMember("m1", NOW, false), undefined, "a second removal finds no one");
        await people.createMember(member("m3", "acct_a", "a@example.com"));
        assert.equal((await people.findMemberByEmail("a@example.com"))?.id, "m3", "the e-mail can belong to someone again");
      });
    });

    it("revokes the keys a removed member created, and only theirs, in the same change", async () => {
      await withStores(backend, async ({ accounts, people }) => {
        await accounts.createAccount(account("acct_a"));
        await people.createMember(member("m1", "acct_a", "a@example.com"));
        await people.createMember(member("m2", "acct_a", "b@example.com"));
        assert.equal(await accounts.createKey(key("k_m1", "acct_a", "live", "m1"), "h_m1", { unrevoked: 10 }), "created");
        assert.equal(await accounts.createKey(key("k_m1_test", "acct_a", "test", "m1"), "h_m1_test", { unrevoked: 10 }), "created");
        assert.equal(await accounts.createKey(key("k_m1_old", "acct_a", "live", "m1"), "h_m1_old", { unrevoked: 10 }), "created");
        await accounts.revokeKey("k_m1_old", "2026-02-01T00:00:00.000Z");
        assert.equal(await accounts.createKey(key("k_m2", "acct_a", "live", "m2"), "h_m2", { unrevoked: 10 }), "created");
        assert.equal(await accounts.createKey(key("k_acct", "acct_a"), "h_acct", { unrevoked: 10 }), "created");
        // A lookup first, so a cached key has to be forgotten.
        assert.equal((await accounts.findKeyByHash("h_m1"))?.key.revokedAt, null);
        assert.equal((await accounts.getKey("k_m1"))?.createdBy, "m1");

        const revoked = await people.deleteMember("m1", NOW, false);
        assert.deepEqual(revoked?.map((k) => [k.id, k.revokedAt, k.createdBy]).sort(), [
          ["k_m1", NOW, "m1"],
          ["k_m1_test", NOW, "m1"],
        ]);
        assert.equal((await accounts.findKeyByHash("h_m1"))?.key.revokedAt, NOW, "the very next lookup sees the revocation");
        assert.equal((await accounts.getKey("k_m1_old"))?.revokedAt, "2026-02-01T00:00:00.000Z", "an earlier revocation keeps its time");
        assert.equal((await accounts.getKey("k_m2"))?.revokedAt, null, "another member's key works");
        assert.equal((await accounts.getKey("k_acct"))?.revokedAt, null, "the account's own key works");
        assert.equal(
          await accounts.createKey(key("k_late", "acct_a", "live", "m1"), "h_late", { unrevoked: 10 }),
          "no_member",
          "a removed member cannot create a key (one in flight during the removal)",
        );
        assert.equal(await accounts.getKey("k_late"), undefined);
        assert.equal(await accounts.createKey(key("k_other", "acct_b", "live", "m2"), "h_other", { unrevoked: 10 }), "no_account");
        await accounts.createAccount(account("acct_b"));
        assert.equal(
          await accounts.createKey(key("k_other", "acct_b", "live", "m2"), "h_other", { unrevoked: 10 }),
          "no_member",
          "a member of another account",
        );

        // Kept: the keys work on as the account's own, and a later removal of anyone touches them no more.
        assert.deepEqual(await people.deleteMember("m2", NOW, true), []);
        const kept = await accounts.getKey("k_m2");
        assert.deepEqual([kept?.revokedAt, kept?.createdBy], [null, null]);
      });
    });
  });
}
