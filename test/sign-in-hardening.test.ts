import { CLI_CONTEXT } from "../src/store/audit-log.js";
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { loadConfig } from "../src/config/config.js";
import { ApiError } from "../src/errors.js";
import { isEmailAddress } from "../src/accounts/bounded-fields.js";
import { FailureLog } from "../src/accounts/failure-log.js";
import { checkPasswordPolicy } from "../src/accounts/password-policy.js";
import { scryptDerivation, type KeyDerivation, type ScryptParameters } from "../src/accounts/passwords.js";
import { limitedAddress, People } from "../src/accounts/people.js";
import { createStore } from "../src/store/create-store.js";
import type { Stores } from "../src/store/store.js";
import { tempDir } from "./helpers/fixtures.js";
import { dropAllDatabases, freshDatabase } from "./helpers/postgres.js";

const ADMIN_TOKEN = "an-operator-token-of-at-least-32-characters";
const status = (error: unknown): number | undefined => (error instanceof ApiError ? error.status : undefined);

describe("the sign-in failure log", () => {
  it("stays at or under its cap however many distinct keys fail", () => {
    const log = new FailureLog({ allowed: 5, windowMs: 60_000, maxKeys: 100 });
    for (let i = 0; i < 5000; i++) log.add(`email:user-${i}@example.com`, 1_000 + i);
    assert.equal(log.size, 100);
    assert.equal(log.retryAfterMs("email:user-4999@example.com", 7_000), 0, "one failure is not a lockout");
  });

  it("stores nothing on a read and forgets keys whose failures left the window", () => {
    const log = new FailureLog({ allowed: 2, windowMs: 1_000, maxKeys: 100 });
    for (let i = 0; i < 1000; i++) log.retryAfterMs(`email:${i}`, 0);
    assert.equal(log.size, 0);
    log.add("addr:a", 0);
    log.add("addr:a", 10);
    assert.equal(log.retryAfterMs("addr:a", 20), 980, "locked until the older failure leaves the window");
    for (let i = 0; i < 50; i++) log.add("addr:a", 20 + i);
    assert.equal(log.retryAfterMs("addr:a", 100), 968, "only the last `allowed` failures (68 and 69) are kept");
    log.add("addr:b", 5_000);
    assert.equal(log.size, 1, "addr:a expired and was forgotten");
  });

  it("takes a place on every key in one step; failures and attempts in flight together are at most `allowed`", () => {
    const log = new FailureLog({ allowed: 2, windowMs: 1_000, maxKeys: 100 });
    const first = log.attempt(["email:e", "addr:a"], 0);
    const second = log.attempt(["email:f", "addr:a"], 1);
    assert.ok(first.counted && second.counted);
    // addr:a has two attempts being checked: a third waits for them (busy), and is counted on no key.
    assert.deepEqual(log.attempt(["email:g", "addr:a"], 2), { counted: false, retryAfterMs: 1000, busy: true });
    assert.equal(log.size, 0, "nothing is a failure yet");
    log.settle(["email:e", "addr:a"], first.id, false, 3);
    assert.equal(log.size, 0, "a success leaves no trace");
    const third = log.attempt(["email:g", "addr:a"], 4);
    assert.ok(third.counted, "a settled attempt frees its place");
    log.settle(["email:f", "addr:a"], second.id, true, 5);
    log.settle(["email:g", "addr:a"], third.id, true, 6);
    // Two failures on addr:a: used up until the older one (at 5) leaves the window.
    assert.deepEqual(log.attempt(["email:h", "addr:a"], 7), { counted: false, retryAfterMs: 998, busy: false });
    assert.equal(log.retryAfterMs("email:f", 7), 0, "one failure is not a lockout");
  });
});

describe("People's sign-in", () => {
  let stores: Stores;
  let derivations: ScryptParameters[] = [];
  let salts: number[] = [];
  const recording: KeyDerivation = (password, salt, parameters) => {
    derivations.push({ ...parameters });
    salts.push(salt.length);
    return scryptDerivation(password, salt, parameters);
  };
  let people: People;

  before(async () => {
    stores = await createStore({ dataDir: tempDir() });
    await stores.accounts.createAccount({ id: "acct_people", name: "people", plan: "solo", status: "active", createdAt: new Date().toISOString() });
    people = new People(stores, ADMIN_TOKEN, { derive: recording, signInLimits: { maxKeys: 8 } });
    const { token } = await people.invite(CLI_CONTEXT, "acct_people", "erin@example.com");
    await people.acceptInvitation(token, "erin's real password", "10.0.0.9");
    await people.invite(CLI_CONTEXT, "acct_people", "pending@example.com");
  });
  after(async () => {
    await stores.close();
  });

  it("does one key derivation with identical parameters for a wrong password, an unknown e-mail and a member without a password", async () => {
    const observe = async (email: string) => {
      derivations = [];
      salts = [];
      await assert.rejects(people.signIn(email, "a wrong password", "10.0.0.1"), (e) => status(e) === 401);
      return { derivations, salts };
    };
    const wrongPassword = await observe("erin@example.com");
    const unknown = await observe("nobody@example.com");
    const pending = await observe("pending@example.com");
    assert.equal(wrongPassword.derivations.length, 1);
    assert.deepEqual(unknown, wrongPassword);
    assert.deepEqual(pending, wrongPassword);
    assert.deepEqual(wrongPassword.derivations[0], { N: 32768, r: 8, p: 1, keyLength: 32 });
    assert.deepEqual(wrongPassword.salts, [16]);
  });

  it("clears sessions that expired unused at each sign-in, member's or operator's, so they do not pile up", async () => {
    const store = await createStore({ dataDir: tempDir() });
    try {
      const people = new People(store, ADMIN_TOKEN);
      const abandoned = (tokenHash: string) =>
        store.people.createSession({
          tokenHash,
          memberId: null,
          admin: true,
          csrfToken: "c",
          expiresAt: "2020-01-01T00:00:00.000Z",
          adminTokenDigest: "d",
        });
      const stillThere = async (tokenHash: string) => (await store.people.findSession(tokenHash, "2019-01-01T00:00:00.000Z")) !== undefined;
      await abandoned("expired_1");
      assert.ok(await stillThere("expired_1"));
      const operator = await people.signInOperator(ADMIN_TOKEN, "10.0.0.9");
      assert.equal(await stillThere("expired_1"), false, "the operator's sign-in cleared it");
      await store.accounts.createAccount({ id: "acct_exp", name: "exp", plan: "solo", status: "active", createdAt: new Date().toISOString() });
      const { token } = await people.invite(CLI_CONTEXT, "acct_exp", "exp@example.com");
      await people.acceptInvitation(token, "a member password", "10.0.0.9");
      await abandoned("expired_2");
      await people.signIn("exp@example.com", "a member password", "10.0.0.9");
      assert.equal(await stillThere("expired_2"), false, "a member's sign-in cleared it");
      assert.ok((await people.session(operator.token)) !== undefined, "live sessions stay");
      // Clearing is best effort: a store that cannot delete (its file locked by a backup, say) still signs in.
      store.people.deleteExpiredSessions = () => Promise.reject(new Error("SQLITE_BUSY: database is locked"));
      const again = await people.signInOperator(ADMIN_TOKEN, "10.0.0.9");
      assert.ok((await people.session(again.token)) !== undefined);
    } finally {
      await store.close();
    }
  });

  it("answers 401, not a 500, to a sign-in whose member is removed while the password is checked", async () => {
    const raced = await createStore({ dataDir: tempDir() });
    try {
      await raced.accounts.createAccount({ id: "acct_race", name: "race", plan: "solo", status: "active", createdAt: new Date().toISOString() });
      let duringCheck: (() => Promise<void>) | undefined;
      // The operator removes the member between the password check and the session's insert.
      const derive: KeyDerivation = async (password, salt, parameters) => {
        const key = await scryptDerivation(password, salt, parameters);
        const remove = duringCheck;
        duringCheck = undefined;
        await remove?.();
        return key;
      };
      const racing = new People(raced, ADMIN_TOKEN, { derive });
      const { token } = await racing.invite(CLI_CONTEXT, "acct_race", "gone@example.com");
      const joined = await racing.acceptInvitation(token, "gone member password", "10.0.0.7");
      duringCheck = async () => void (await racing.removeMember(CLI_CONTEXT, "acct_race", joined.session.memberId!));
      await assert.rejects(racing.signIn("gone@example.com", "gone member password", "10.0.0.7"), (e) => status(e) === 401);
      assert.equal(duringCheck, undefined, "the removal ran during the check");
    } finally {
      await raced.close();
    }
  });

  it("gives no session to a sign-in whose password is reset while it is checked (a re-invitation accepted ends every session)", async () => {
    const raced = await createStore({ dataDir: tempDir() });
    try {
      await raced.accounts.createAccount({ id: "acct_reset", name: "reset", plan: "solo", status: "active", createdAt: new Date().toISOString() });
      let duringCheck: (() => Promise<void>) | undefined;
      // Held on the check of the leaked password only (not on the decoy hash made at the first sign-in).
      const derive: KeyDerivation = async (password, salt, parameters) => {
        const key = await scryptDerivation(password, salt, parameters);
        const reset = password === "the leaked password" ? duringCheck : undefined;
        if (reset !== undefined) duringCheck = undefined;
        await reset?.();
        return key;
      };
      const racing = new People(raced, ADMIN_TOKEN, { derive });
      const first = await racing.invite(CLI_CONTEXT, "acct_reset", "stolen@example.com");
      await racing.acceptInvitation(first.token, "the leaked password", "10.0.0.8");
      // The owner resets the password (a new invitation, accepted) while a thief's sign-in with the old one is being checked.
      duringCheck = async () => {
        const again = await racing.invite(CLI_CONTEXT, "acct_reset", "stolen@example.com");
        await racing.acceptInvitation(again.token, "the owner's new password", "10.0.0.9");
      };
      await assert.rejects(racing.signIn("stolen@example.com", "the leaked password", "10.0.0.66"), (e) => status(e) === 401);
      assert.equal(duringCheck, undefined, "the reset ran during the check");
      const owner = await racing.signIn("stolen@example.com", "the owner's new password", "10.0.0.9");
      assert.ok(await racing.session(owner.token), "the new password signs in");
      const successes = await raced.audit.query({ action: "sign_in.succeeded", limit: 10 });
      assert.deepEqual(
        successes.records.map((r) => r.source),
        ["10.0.0.9"],
        "the refused sign-in is not logged as a success",
      );
    } finally {
      await raced.close();
    }
  });

  it("answers an over-long e-mail with a 400 before anything is stored or derived", async () => {
    const fresh = new People(stores, ADMIN_TOKEN, { derive: recording });
    derivations = [];
    await assert.rejects(fresh.signIn(`${"a".repeat(1024 * 1024)}@example.com`, "some password", "10.0.0.2"), (e) => status(e) === 400);
    assert.deepEqual(fresh.failureLogSizes(), { member: 0, memberSpread: 0, operator: 0 });
    assert.equal(derivations.length, 0);
  });

  it("keeps no entry for the e-mails of a locked-out address", async () => {
    const fresh = new People(stores, ADMIN_TOKEN);
    // An address spraying e-mails is stopped at 30 failures, whatever the e-mails.
    for (let i = 0; i < 30; i++) await assert.rejects(fresh.signIn(`guess-${i}@example.com`, "wrong password", "10.0.0.3"), (e) => status(e) === 401);
    const before = fresh.failureLogSizes();
    for (let i = 0; i < 2000; i++) {
      await assert.rejects(fresh.signIn(`flood-${i}-${"x".repeat(200)}@example.com`, "wrong password", "10.0.0.3"), (e) => status(e) === 429);
    }
    assert.deepEqual(fresh.failureLogSizes(), before);
    assert.ok(before.member <= 30 && before.memberSpread <= 31, JSON.stringify(before));
  });

  it("locks out an e-mail and address pair at 5 failures, but neither a colleague behind the same address nor the member elsewhere", async () => {
    const fresh = new People(stores, ADMIN_TOKEN);
    // A stranger guesses erin's password five times from their own address: locked out there only.
    for (let i = 0; i < 5; i++) await assert.rejects(fresh.signIn("erin@example.com", `guess ${i}`, "10.0.0.20"), (e) => status(e) === 401);
    await assert.rejects(fresh.signIn("erin@example.com", "erin's real password", "10.0.0.20"), (e) => status(e) === 429);
    await fresh.signIn("erin@example.com", "erin's real password", "10.0.0.21");
    // Behind one NAT, a colleague's five typos leave erin free to sign in from the same address.
    for (let i = 0; i < 5; i++) await assert.rejects(fresh.signIn("colleague@example.com", `typo ${i}`, "10.0.0.22"), (e) => status(e) === 401);
    await fresh.signIn("erin@example.com", "erin's real password", "10.0.0.22");
    // Her success forgives her own failures, never the address's: 25 more there lock it at 30, for her too.
    for (let i = 0; i < 25; i++) await assert.rejects(fresh.signIn(`spray-${i}@example.com`, "guess", "10.0.0.22"), (e) => status(e) === 401);
    await assert.rejects(fresh.signIn("erin@example.com", "erin's real password", "10.0.0.22"), (e) => status(e) === 429);
    // One e-mail guessed from many addresses is stopped at 30 failures, wherever the next attempt comes from.
    for (let i = 0; i < 30; i++) await assert.rejects(fresh.signIn("target@example.com", "guess", `10.2.0.${i}`), (e) => status(e) === 401);
    await assert.rejects(fresh.signIn("target@example.com", "guess", "10.2.1.1"), (e) => status(e) === 429);
  });

  it("evaluates at most the allowed guesses when they all arrive at once", async () => {
    const fresh = new People(stores, ADMIN_TOKEN, { derive: recording });
    derivations = [];
    const outcomes = await Promise.allSettled(
      Array.from({ length: 40 }, (_, i) => fresh.signIn("erin@example.com", `wrong password number ${i}`, "10.0.0.4")),
    );
    const statuses = outcomes.map((o) => (o.status === "rejected" ? status(o.reason) : 200));
    assert.equal(statuses.filter((s) => s === 401).length, 5, JSON.stringify(statuses));
    assert.equal(statuses.filter((s) => s === 429).length, 35);
    assert.equal(derivations.length, 5, "five passwords were tried, not forty");
    // Wrong admin tokens at once: five 401s, then 429s; the right token is refused as well while locked out.
    const tokens = await Promise.allSettled(Array.from({ length: 40 }, (_, i) => fresh.checkAdminToken(`wrong-${i}`, "10.0.0.5")));
    const tokenStatuses = tokens.map((o) => (o.status === "rejected" ? status(o.reason) : 200));
    assert.equal(tokenStatuses.filter((s) => s === 401).length, 5, JSON.stringify(tokenStatuses));
    assert.equal(tokenStatuses.filter((s) => s === 429).length, 35);
    await assert.rejects(fresh.checkAdminToken(ADMIN_TOKEN, "10.0.0.5"), (e) => status(e) === 429);
  });

  it("serves correct sign-ins that arrive at once from one address, however many", async () => {
    const fresh = new People(stores, ADMIN_TOKEN);
    const sessions = await Promise.all(Array.from({ length: 12 }, () => fresh.signIn("erin@example.com", "erin's real password", "10.0.0.12")));
    assert.equal(new Set(sessions.map((s) => s.token)).size, 12);
    // None of them counted: five failures are still allowed from that address.
    for (let i = 0; i < 5; i++) await assert.rejects(fresh.signIn("nobody@example.com", "wrong password", "10.0.0.12"), (e) => status(e) === 401);
    await assert.rejects(fresh.signIn("nobody@example.com", "wrong password", "10.0.0.12"), (e) => status(e) === 429);
  });

  it("frees an attempt's place when checking it fails for another reason than the password", async () => {
    let broken = true;
    const flaky: KeyDerivation = (password, salt, parameters) =>
      broken ? Promise.reject(new Error("disk on fire")) : scryptDerivation(password, salt, parameters);
    const fresh = new People(stores, ADMIN_TOKEN, { derive: flaky });
    for (let i = 0; i < 8; i++) await assert.rejects(fresh.signIn("erin@example.com", "erin's real password", "10.0.0.13"), /disk on fire/);
    broken = false;
    await fresh.signIn("erin@example.com", "erin's real password", "10.0.0.13");
  });

  it("lets a member sign in after failures, and a success from an address never counts against it", async () => {
    const fresh = new People(stores, ADMIN_TOKEN);
    for (let i = 0; i < 4; i++) await assert.rejects(fresh.signIn("erin@example.com", "wrong password", "10.0.0.6"), (e) => status(e) === 401);
    for (let i = 0; i < 3; i++) await fresh.signIn("erin@example.com", "erin's real password", "10.0.0.6");
    // Her failures were forgiven: five more at her address are allowed before it is locked for her.
    for (let i = 0; i < 5; i++) await assert.rejects(fresh.signIn("erin@example.com", "wrong password", "10.0.0.6"), (e) => status(e) === 401);
    await assert.rejects(fresh.signIn("erin@example.com", "erin's real password", "10.0.0.6"), (e) => status(e) === 429);
    // The right admin token, many times, never locks anyone out.
    for (let i = 0; i < 20; i++) await fresh.checkAdminToken(ADMIN_TOKEN, "10.0.0.7");
  });

  it("caps the failure log when many addresses fail with distinct e-mails", async () => {
    for (let i = 0; i < 10; i++) {
      await assert.rejects(people.signIn(`spray-${i}@example.com`, "wrong password", `10.1.0.${i}`), (e) => status(e) === 401);
    }
    assert.ok(people.failureLogSizes().member <= 8, JSON.stringify(people.failureLogSizes()));
  });
});

describe("e-mail addresses", () => {
  it("are checked in linear time, even on a million dots", () => {
    assert.equal(isEmailAddress(`a@${".".repeat(1_000_000)}b`), false);
    assert.equal(isEmailAddress(`${"a.".repeat(500_000)}@b`), false);
  });

  it("accept ordinary addresses and refuse malformed ones", () => {
    for (const ok of ["a@b.co", "first.last+tag@mail.example.org", "x@sub.domain.example"]) assert.equal(isEmailAddress(ok), true, ok);
    for (const bad of [
      "",
      "a",
      "@b.co",
      "a@",
      "a@b",
      "a@b.",
      "a@.b",
      "a@b..co",
      "a b@c.co",
      "a@b@c.co",
      "a@b.co\u00a0",
      `${"l".repeat(65)}@b.co`,
      `a@${"d".repeat(64)}.co`,
      "alice@a.com\u200b",
      "al\u200dice@a.com",
      "\u202eoc.b@a",
      "a@b.co\ufeff",
      "alice\u034f@a.com",
      "alice@a.com\ufe0f",
      "alice\u3164@a.com",
    ]) {
      assert.equal(isEmailAddress(bad), false, JSON.stringify(bad));
    }
  });

  it("name one member however the same address is typed: composed or combining accents, any case", async () => {
    const stores = await createStore({ dataDir: tempDir() });
    try {
      await stores.accounts.createAccount({ id: "acct_nfc", name: "nfc", plan: "solo", status: "active", createdAt: new Date().toISOString() });
      await stores.accounts.createAccount({ id: "acct_other", name: "other", plan: "solo", status: "active", createdAt: new Date().toISOString() });
      const people = new People(stores, ADMIN_TOKEN);
      const composed = await people.invite(CLI_CONTEXT, "acct_nfc", "jos\u00e9@example.com");
      // The same address with a combining accent cannot become a second, identical-looking member elsewhere.
      await assert.rejects(people.invite(CLI_CONTEXT, "acct_other", "JOSE\u0301@example.com"), (e) => status(e) === 400);
      const again = await people.invite(CLI_CONTEXT, "acct_nfc", "Jose\u0301@Example.com");
      assert.equal(again.member.id, composed.member.id);
      await people.acceptInvitation(again.token, "a long enough passphrase", "10.0.0.5");
      assert.ok(await people.signIn("jose\u0301@example.com", "a long enough passphrase", "10.0.0.5"));
      // Composing can lengthen an address: its length is checked on the composed form too.
      await assert.rejects(people.invite(CLI_CONTEXT, "acct_nfc", `${"\ufb2c".repeat(100)}@example.com`), (e) => status(e) === 400);
      // A member stored before addresses were composed (a combining accent as typed) is still found, and not invited twice.
      await stores.people.createMember({
        id: "mem_legacy",
        accountId: "acct_other",
        email: "rene\u0301@example.com",
        passwordHash: null,
        createdAt: new Date().toISOString(),
      });
      const legacy = await people.invite(CLI_CONTEXT, "acct_other", "Rene\u0301@example.com");
      assert.equal(legacy.member.id, "mem_legacy");
      await people.acceptInvitation(legacy.token, "another long passphrase", "10.0.0.5");
      assert.ok(await people.signIn("rene\u0301@example.com", "another long passphrase", "10.0.0.5"));
    } finally {
      await stores.close();
    }
  });
});

describe("the password policy", () => {
  it("refuses short, whitespace, repeated and common passwords, and common words or keyboard walks with a few digits, naming password", () => {
    for (const weak of [
      "elevenchars",
      " ".repeat(20),
      "\t\n \t\n \t\n \t\n",
      "zzzzzzzzzzzzzz",
      "121212121212",
      " ".repeat(12) + "x",
      "password1234",
      "QWERTY123456",
      "x".repeat(1025),
      "Password123!",
      "Welcome2024!",
      "qwertyuiopas",
      "Asdfghjkl123",
      "Alveare2026!!",
      "hunter2hunter2",
      "Tr0ub4dor&3Tr0ub4dor&3",
      // Twelve different lone surrogates: all hashed as U+FFFD, one character twelve times.
      String.fromCharCode(...Array.from({ length: 12 }, (_, i) => 0xd800 + i)),
      "long enough \udfff password",
    ]) {
      assert.throws(
        () => checkPasswordPolicy(weak),
        (e: unknown) => e instanceof ApiError && e.status === 400 && e.param === "password",
        JSON.stringify(weak),
      );
    }
    for (const fine of [
      "twelve chars",
      "correct horse battery",
      "ünïcödé pässwörd",
      "Password of mine 7",
      "p4ss-Kiwi-Lamp-93",
      "hunter2hunter3",
      "🐝 bee hive honey 🍯",
    ]) {
      assert.doesNotThrow(() => checkPasswordPolicy(fine), fine);
    }
  });
});

describe("ALVEARE_TRUST_PROXY", () => {
  const trust = (value: string) => loadConfig({}, { ALVEARE_TRUST_PROXY: value }).trustProxy;
  it("takes Fastify's forms: booleans, a hop count, addresses and CIDRs", () => {
    assert.equal(loadConfig({}, {}).trustProxy, false);
    assert.equal(trust("false"), false);
    assert.equal(trust("true"), true);
    assert.equal(trust("2"), 2);
    assert.deepEqual(trust("127.0.0.1, 10.0.0.0/8,::1,fd00::/8,loopback"), ["127.0.0.1", "10.0.0.0/8", "::1", "fd00::/8", "loopback"]);
  });
  it("refuses anything else in one line naming the variable", () => {
    for (const bad of ["yes", "10.0.0.0/33", "proxy.example", "127.0.0.1,,10.0.0.1"]) {
      assert.throws(
        () => trust(bad),
        (e: Error) => /^configuration error at ALVEARE_TRUST_PROXY: [^\n]+$/.test(e.message),
        bad,
      );
    }
  });
});

describe("operator sessions and the admin token they were made with", () => {
  after(dropAllDatabases);
  const OTHER_TOKEN = "the-rotated-operator-token-of-32-characters";
  const backends: Array<[string, () => Promise<Stores>]> = [
    ["SQLite", () => createStore({ dataDir: tempDir() })],
    ["PostgreSQL", async () => createStore({ dataDir: tempDir(), databaseUrl: await freshDatabase() })],
  ];
  for (const [name, open] of backends) {
    it(`end when the token is rotated or unset, on every node (${name})`, async () => {
      const stores = await open();
      try {
        const underA = await new People(stores, ADMIN_TOKEN).signInOperator(ADMIN_TOKEN, "10.0.0.1");
        assert.notEqual(underA.session.adminTokenDigest, null);
        assert.ok(!JSON.stringify(underA.session).includes(ADMIN_TOKEN), "the session never holds the token");
        // Another node (or the same one restarted) with the same token accepts it; one with another token or none does not.
        assert.equal((await new People(stores, ADMIN_TOKEN).session(underA.token))?.admin, true);
        assert.equal(await new People(stores, OTHER_TOKEN).session(underA.token), undefined);
        assert.equal(await new People(stores, undefined).session(underA.token), undefined);
        const underB = await new People(stores, OTHER_TOKEN).signInOperator(OTHER_TOKEN, "10.0.0.1");
        assert.equal((await new People(stores, OTHER_TOKEN).session(underB.token))?.admin, true);
        assert.equal(await new People(stores, ADMIN_TOKEN).session(underB.token), undefined);
        // A member's session does not depend on the admin token.
        const admin = new People(stores, ADMIN_TOKEN);
        await stores.accounts.createAccount({ id: "acct_rot", name: "rot", plan: "solo", status: "active", createdAt: new Date().toISOString() });
        const { token } = await admin.invite(CLI_CONTEXT, "acct_rot", "rot@example.com");
        const joined = await admin.acceptInvitation(token, "a member password", "10.0.0.2");
        assert.equal((await new People(stores, undefined).session(joined.token))?.memberId, joined.session.memberId);
      } finally {
        await stores.close();
      }
    });
  }
});

describe("failures counted by address", () => {
  it("count an IPv6 address by its /64 and an IPv4 one (mapped into IPv6 or not) by itself", () => {
    assert.equal(limitedAddress("203.0.113.7"), "203.0.113.7");
    assert.equal(limitedAddress("::ffff:203.0.113.7"), "203.0.113.7");
    assert.equal(limitedAddress("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::/64");
    assert.equal(limitedAddress("2001:0db8:0001:0002::1"), "2001:db8:1:2::/64");
    assert.equal(limitedAddress("2001:db8::1"), "2001:db8:0:0::/64");
    assert.equal(limitedAddress("::1"), "0:0:0:0::/64");
    assert.equal(limitedAddress("fe80::1%eth0"), "fe80:0:0:0::/64");
    assert.equal(limitedAddress("64:ff9b::192.0.2.1"), "64:ff9b:0:0::/64");
    assert.notEqual(limitedAddress("2001:db8:1:3::1"), limitedAddress("2001:db8:1:2::1"));
    // A dotted IPv4 tail is two groups; IPv4 mapped into IPv6 in any spelling is the IPv4 address.
    assert.equal(limitedAddress("1::2:3:4:5:1.2.3.4"), "1:0:2:3::/64");
    assert.equal(limitedAddress("0:0:0:0:0:ffff:1.2.3.4"), "1.2.3.4");
    assert.equal(limitedAddress("::FFFF:0102:0304"), "1.2.3.4");
    assert.equal(limitedAddress("not an address"), "not an address");
  });

  it("lock out a guesser who takes a new address of the same /64 for every try", async () => {
    const stores = await createStore({ dataDir: tempDir() });
    try {
      const people = new People(stores, ADMIN_TOKEN, { derive: () => Promise.resolve(Buffer.alloc(32)) });
      for (let i = 1; i <= 5; i++) {
        await assert.rejects(people.checkAdminToken("a wrong guess of the admin token", `2001:db8:7:7::${i.toString(16)}`), (e) => status(e) === 401);
      }
      await assert.rejects(people.checkAdminToken(ADMIN_TOKEN, "2001:db8:7:7:ffff::6"), (e) => status(e) === 429);
      await people.checkAdminToken(ADMIN_TOKEN, "2001:db8:7:8::1");
    } finally {
      await stores.close();
    }
  });
});
