import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import Database from "better-sqlite3";
import { ConfigError } from "../src/config/config-error.js";
import { People } from "../src/accounts/people.js";
import { databasePath } from "../src/server/server.js";
import { openSqliteStores } from "../src/store/sqlite/sqlite-store.js";
import { CLI_CONTEXT } from "../src/store/audit-log.js";
import { Browser } from "./helpers/dashboard-client.js";
import { cliJson, configFor, startTestServer, tempDir, type TestServer } from "./helpers/fixtures.js";
import { errorCode, requestFrom } from "./helpers/loopback-client.js";

const TOKEN = "operator-token-for-audit-tests-0123456789";
const PASSWORD = "audit trail of the hive 42";
const admin = { authorization: `Bearer ${TOKEN}` };

interface AuditJson {
  id: number;
  at: string;
  actor: string;
  action: string;
  account_id: string | null;
  target: string | null;
  detail: Record<string, string> | null;
  source: string | null;
  request_id: string | null;
  count: number;
}
interface AuditListJson {
  object: string;
  data: AuditJson[];
  next_cursor: number | null;
}

describe("audit log over HTTP", () => {
  let server: TestServer;
  let operator: Browser;
  let alice: Browser;
  let mallory: Browser;
  let aliceAccount: string;
  let malloryAccount: string;
  /** Every secret the tests handle; none may appear in any record. */
  const secrets: string[] = [TOKEN, PASSWORD];

  const adminCall = (method: string, path: string, body?: unknown, from = "127.0.0.2") =>
    requestFrom(from, `${server.url}/admin/api${path}`, { method, headers: admin, body });
  const all = async (query = ""): Promise<AuditJson[]> => {
    const r = await adminCall("GET", `/audit?limit=1000${query}`);
    assert.equal(r.status, 200);
    return (r.json as unknown as AuditListJson).data;
  };
  /** The records of one action on one target: each action must leave exactly one. */
  const recordsOf = async (action: string, target: string) => (await all()).filter((r) => r.action === action && r.target === target);
  const only = async (action: string, target: string): Promise<AuditJson> => {
    const found = await recordsOf(action, target);
    assert.equal(found.length, 1, `exactly one ${action} record for ${target}, got ${JSON.stringify(found)}`);
    return found[0]!;
  };

  before(async () => {
    server = await startTestServer({}, { gated: true, env: { ALVEARE_ADMIN_TOKEN: TOKEN } });
    operator = new Browser(server, "127.0.0.3");
    const signIn = await operator.call("POST", "/dashboard/api/admin-login", { token: TOKEN });
    assert.equal(signIn.status, 200);
    secrets.push(operator.cookie.split("=")[1]!, operator.csrf);
    const join = async (name: string, email: string, address: string): Promise<[Browser, string]> => {
      const account = await operator.call("POST", "/admin/api/accounts", { name, plan: "starter" });
      const invite = await operator.call("POST", `/admin/api/accounts/${account.json.id as string}/invitations`, { email });
      const token = /#invite=(\w+)$/.exec(invite.json.invite_path as string)![1]!;
      secrets.push(token);
      const browser = new Browser(server, address);
      assert.equal((await browser.call("POST", "/dashboard/api/invitations/accept", { token, password: PASSWORD })).status, 200);
      secrets.push(browser.cookie.split("=")[1]!, browser.csrf);
      return [browser, account.json.id as string];
    };
    [alice, aliceAccount] = await join("alice-co", "alice@example.com", "127.0.0.4");
    [mallory, malloryAccount] = await join("mallory-co", "mallory@example.com", "127.0.0.5");
  });
  after(async () => {
    await server.close();
  });

  it("records the operator's sign-in, account creation, invitation and the member joining, with actor, source and request id", async () => {
    const signedIn = await all("&action=operator.signed_in");
    assert.equal(signedIn.length, 1);
    assert.equal(signedIn[0]!.actor, "operator");
    assert.equal(signedIn[0]!.source, "127.0.0.3");
    const created = await only("account.created", `account:${aliceAccount}`);
    assert.equal(created.actor, "operator");
    assert.equal(created.account_id, aliceAccount);
    assert.equal(created.source, "127.0.0.3");
    assert.match(created.request_id ?? "", /\S/);
    assert.deepEqual(created.detail, { name: "alice-co", plan: "starter" });
    const invited = await all(`&action=member.invited&account=${aliceAccount}`);
    assert.equal(invited.length, 1);
    assert.equal(invited[0]!.actor, "operator");
    assert.deepEqual(invited[0]!.detail, { email: "alice@example.com" });
    const joined = await only("member.joined", invited[0]!.target!);
    assert.equal(joined.actor, "member:alice@example.com");
    assert.equal(joined.account_id, aliceAccount);
    assert.equal(joined.source, "127.0.0.4");
  });

  it("records plan changes, suspension and reactivation once each, and ties the record to the request id", async () => {
    const account = await adminCall("POST", "/accounts", { name: "changes", plan: "solo" });
    const id = account.json.id as string;
    const patched = await adminCall("PATCH", `/accounts/${id}`, { plan: "scale" });
    assert.equal(patched.status, 200);
    const planChanged = await only("account.plan_changed", `account:${id}`);
    assert.equal(planChanged.actor, "operator");
    assert.equal(planChanged.source, "127.0.0.2");
    assert.equal(planChanged.request_id, patched.headers["x-request-id"]);
    assert.deepEqual(planChanged.detail, { from: "solo", to: "scale" });
    await adminCall("PATCH", `/accounts/${id}`, { plan: "scale" });
    assert.equal(
      (await recordsOf("account.plan_changed", `account:${id}`)).length,
      1,
      "a change to the same plan changes nothing and records nothing",
    );
    await adminCall("PATCH", `/accounts/${id}`, { status: "suspended" });
    await adminCall("PATCH", `/accounts/${id}`, { status: "active" });
    assert.equal((await only("account.suspended", `account:${id}`)).account_id, id);
    assert.equal((await only("account.reactivated", `account:${id}`)).actor, "operator");
  });

  it("records keys created and revoked by a member and by the operator, never the key itself", async () => {
    const mine = await alice.call("POST", "/dashboard/api/keys", { mode: "live", name: "prod" });
    assert.equal(mine.status, 201);
    secrets.push(mine.json.key as string);
    const keyId = mine.json.id as string;
    const created = await only("key.created", `key:${keyId}`);
    assert.equal(created.actor, "member:alice@example.com");
    assert.equal(created.account_id, aliceAccount);
    assert.deepEqual(created.detail, { mode: "live", name: "prod" });
    assert.equal((await alice.call("POST", `/dashboard/api/keys/${keyId}/revoke`)).status, 200);
    assert.equal((await alice.call("POST", `/dashboard/api/keys/${keyId}/revoke`)).status, 200);
    const revoked = await only("key.revoked", `key:${keyId}`);
    assert.equal(revoked.actor, "member:alice@example.com");

    const theirs = await adminCall("POST", `/accounts/${aliceAccount}/keys`, { mode: "test" });
    secrets.push(theirs.json.key as string);
    assert.equal((await only("key.created", `key:${theirs.json.id as string}`)).actor, "operator");
    await adminCall("POST", `/keys/${theirs.json.id as string}/revoke`);
    assert.equal((await only("key.revoked", `key:${theirs.json.id as string}`)).account_id, aliceAccount);
  });

  it("records each use of the admin token with its route, and member sign-ins that succeed or fail", async () => {
    const usesBefore = (await all("&action=admin_token.used")).length;
    const r = await adminCall("GET", `/accounts/${aliceAccount}`, undefined, "127.0.0.6");
    const used = (await all("&action=admin_token.used")).filter((u) => u.request_id === r.headers["x-request-id"]);
    assert.equal(used.length, 1);
    assert.equal(used[0]!.target, "GET /admin/api/accounts/:id");
    assert.equal(used[0]!.source, "127.0.0.6");
    assert.ok((await all("&action=admin_token.used")).length > usesBefore);

    const visitor = new Browser(server, "127.0.0.7");
    assert.equal(
      (await visitor.call("POST", "/dashboard/api/login", { email: "alice@example.com", password: "not her password at all" })).status,
      401,
    );
    const failed = (await all(`&action=sign_in.failed&account=${aliceAccount}`)).filter((f) => f.source === "127.0.0.7");
    assert.equal(failed.length, 1);
    assert.equal(failed[0]!.actor, "anonymous");
    assert.equal(failed[0]!.count, 1);
    assert.equal((await visitor.call("POST", "/dashboard/api/login", { email: "alice@example.com", password: PASSWORD })).status, 200);
    secrets.push(visitor.cookie.split("=")[1]!, visitor.csrf);
    const succeeded = (await all(`&action=sign_in.succeeded&account=${aliceAccount}`)).filter((f) => f.source === "127.0.0.7");
    assert.equal(succeeded.length, 1);
    assert.equal(succeeded[0]!.actor, "member:alice@example.com");
  });

  it("counts wrong admin tokens per address and minute instead of recording each", async () => {
    for (let i = 0; i < 4; i++) {
      const wrong = await requestFrom("127.0.0.8", `${server.url}/admin/api/accounts`, {
        headers: { authorization: `Bearer wrong-${i}-${"x".repeat(40)}` },
      });
      assert.equal(wrong.status, 401);
    }
    const failed = (await all("&action=admin_token.failed")).filter((f) => f.source === "127.0.0.8");
    assert.ok(failed.length >= 1 && failed.length <= 2, "one row per minute");
    assert.equal(
      failed.reduce((n, f) => n + f.count, 0),
      4,
    );
    assert.ok(failed.every((f) => f.actor === "anonymous" && f.account_id === null));
  });

  it("shows a member their own account's records only; another account's are 404", async () => {
    const own = await alice.call("GET", "/dashboard/api/audit");
    assert.equal(own.status, 200);
    const records = (own.json as unknown as AuditListJson).data;
    assert.ok(records.length >= 4);
    assert.ok(records.every((r) => r.account_id === aliceAccount));
    const operatorView = (await all(`&account=${aliceAccount}`)).map((r) => r.id);
    assert.deepEqual(
      records.map((r) => r.id),
      operatorView,
      "the member sees exactly what the operator sees of that account",
    );
    for (const action of [
      "account.created",
      "member.invited",
      "member.joined",
      "key.created",
      "key.revoked",
      "sign_in.failed",
      "sign_in.succeeded",
    ]) {
      assert.ok(
        records.some((r) => r.action === action),
        action,
      );
    }

    // Where the operator acted from is the operator's to see: the member gets null there, their own people's addresses as recorded.
    const operatorRecords = await all(`&account=${aliceAccount}&actor=operator`);
    assert.ok(operatorRecords.length >= 1 && operatorRecords.every((r) => r.source !== null), "the operator sees its own addresses");
    for (const r of records) {
      const asOperator = (await all(`&account=${aliceAccount}`)).find((o) => o.id === r.id)!;
      assert.equal(r.source, r.actor === "operator" || r.actor === "cli" ? null : asOperator.source, `${r.action} by ${r.actor}`);
    }
    const oneOperatorRecord = await alice.call("GET", `/dashboard/api/audit/${operatorRecords[0]!.id}`);
    assert.equal((oneOperatorRecord.json as { source: string | null }).source, null);

    const theirs = await mallory.call("GET", "/dashboard/api/audit");
    assert.ok((theirs.json as unknown as AuditListJson).data.every((r) => r.account_id === malloryAccount));
    assert.ok((theirs.json as unknown as AuditListJson).data.length >= 2);
    const byAccount = await mallory.call("GET", `/dashboard/api/audit?account=${aliceAccount}`);
    assert.equal(byAccount.status, 404);
    assert.equal(errorCode(byAccount.json), "not_found");
    const one = records[0]!.id;
    assert.equal((await mallory.call("GET", `/dashboard/api/audit/${one}`)).status, 404);
    assert.equal((await alice.call("GET", `/dashboard/api/audit/${one}`)).status, 200);
    assert.equal((await new Browser(server, "127.0.0.9").call("GET", "/dashboard/api/audit")).status, 401);
    const serverWide = (await all("&action=operator.signed_in"))[0]!.id;
    assert.equal((await alice.call("GET", `/dashboard/api/audit/${serverWide}`)).status, 404, "server-wide records are the operator's");
  });

  it("filters by action, actor and time, pages with a cursor, and refuses malformed filters with a 400", async () => {
    const everything = await all();
    assert.ok(everything.length > 10);
    assert.ok((await all("&actor=operator")).every((r) => r.actor === "operator"));
    assert.ok((await all("&actor=member")).every((r) => r.actor.startsWith("member:")));
    assert.deepEqual(await all(`&since=${new Date(Date.now() + 60_000).toISOString()}`), []);
    const until = new Date(Date.now() + 60_000).toISOString();
    const beforeUntil = await all(`&until=${until}`);
    assert.ok(beforeUntil.length >= everything.length && beforeUntil.every((r) => r.at < until));
    const since = everything[0]!.at;
    assert.ok((await all(`&since=${since}`)).every((r) => r.at >= since));

    const first = (await adminCall("GET", "/audit?limit=3")).json as unknown as AuditListJson;
    assert.equal(first.data.length, 3);
    assert.equal(first.next_cursor, first.data[2]!.id);
    const second = (await adminCall("GET", `/audit?limit=3&cursor=${first.next_cursor!}`)).json as unknown as AuditListJson;
    assert.ok(
      second.data.every((r) => r.id < first.data[2]!.id),
      "the next page is older",
    );
    // Reading the admin API adds admin_token.used records, always newer than a page already read.
    const ids = (await all()).map((r) => r.id);
    const start = ids.indexOf(first.data[0]!.id);
    assert.deepEqual(
      first.data.concat(second.data).map((r) => r.id),
      ids.slice(start, start + 6),
    );

    for (const [query, param] of [
      ["since=yesterday-ish", "since"],
      ["since=2026-02-30", "since"],
      ["until=2025-02-29", "until"],
      ["since=2026-04-31T10:00:00Z", "since"],
      ["until=2026-13-01", "until"],
      ["since=2026-02-10T24:00:00Z", "since"],
      ["until=2026-02-10T23:59:60Z", "until"],
      ["since=Feb%2030%202026", "since"],
      ["limit=0", "limit"],
      ["limit=5000", "limit"],
      ["cursor=-1", "cursor"],
      ["action=key.deleted", "action"],
      ["actor=bogus", "actor"],
      ["actor=members", "actor"],
      [`account=${"a".repeat(400)}`, "account"],
    ] as const) {
      const r = await adminCall("GET", `/audit?${query}`);
      assert.equal(r.status, 400, query);
      assert.equal((r.json.error as { param: string }).param, param);
    }
    for (const good of [
      "actor=member",
      "actor=member%3Anobody%40example.com",
      "actor=cli",
      "since=2024-02-29",
      "until=2026-11-26T01:30:00Z",
      "since=2026-11-26T01:30:00.250%2B02:00",
      "until=2026-12-31T23:59",
    ]) {
      assert.equal((await adminCall("GET", `/audit?${good}`)).status, 200, good);
    }
  });

  it("keeps no secret in any record: no key, password, admin token, invitation token or session", async () => {
    const everything = JSON.stringify(await all());
    for (const secret of secrets)
      assert.ok(secret.length >= 10 && !everything.includes(secret), `a secret of length ${secret.length} is in the audit log`);
    const db = new Database(databasePath(server.config), { readonly: true });
    const raw = JSON.stringify(db.prepare("SELECT * FROM audit_log").all());
    db.close();
    for (const secret of secrets) assert.ok(!raw.includes(secret));
    for (const secret of secrets) assert.ok(!raw.includes(createHash("sha256").update(secret).digest("hex")), "nor a secret's hash");
  });

  it("aggregates a flood of 2,000 failed sign-ins with unknown e-mails from one address into a handful of rows", async () => {
    const flooder = "127.0.0.66";
    const statuses = new Map<number, number>();
    for (let batch = 0; batch < 100; batch++) {
      const answers = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          requestFrom(flooder, `${server.url}/dashboard/api/login`, {
            headers: { origin: server.url },
            body: { email: `flood-${batch}-${i}@example.com`, password: "wrong password" },
          }),
        ),
      );
      for (const a of answers) statuses.set(a.status, (statuses.get(a.status) ?? 0) + 1);
    }
    assert.equal((statuses.get(401) ?? 0) + (statuses.get(429) ?? 0), 2000);
    const rows = (await all("&action=sign_in.failed")).filter((r) => r.source === flooder);
    assert.ok(rows.length >= 1 && rows.length <= 3, `${rows.length} rows`);
    assert.equal(
      rows.reduce((n, r) => n + r.count, 0),
      2000,
    );
    assert.ok(
      rows.every((r) => r.account_id === null && r.target === null && r.detail === null),
      "an unknown e-mail is not stored",
    );
  });
});

describe("audit log in the store", () => {
  it("aggregates 2,000 failed sign-ins of unknown e-mails that all reach the password check", async () => {
    const store = openSqliteStores(join(tempDir(), "flood.db"));
    try {
      // A cheap derivation and a high limit: every attempt takes the unknown-e-mail path, none is refused early.
      const people = new People(store, undefined, { derive: () => Promise.resolve(Buffer.alloc(32)), signInLimits: { allowed: 10_000 } });
      for (let i = 0; i < 2000; i++) {
        await assert.rejects(
          people.signIn(`nobody-${i}@example.com`, "a wrong password", "10.9.9.9"),
          (e: unknown) => (e as { status: number }).status === 401,
        );
      }
      const page = await store.audit.query({ limit: 1000 });
      assert.ok(page.records.length >= 1 && page.records.length <= 3, `${page.records.length} rows`);
      assert.equal(
        page.records.reduce((n, r) => n + r.count, 0),
        2000,
      );
      assert.ok(page.records.every((r) => r.action === "sign_in.failed" && r.source === "10.9.9.9"));
    } finally {
      await store.close();
    }
  });

  it("aggregates a flood from one IPv6 /64 as one address, however many of its addresses it comes from", async () => {
    const store = openSqliteStores(join(tempDir(), "flood6.db"));
    try {
      // The default limits: the /64 is one address to the limiter, so after 30 failures the rest are refused (429).
      const people = new People(store, "t".repeat(32), { derive: () => Promise.resolve(Buffer.alloc(32)) });
      for (let i = 0; i < 500; i++) {
        const from = `2001:db8:1:2::${(i + 1).toString(16)}`;
        await assert.rejects(people.signIn(`nobody-${i}@example.com`, "a wrong password", from), (e: unknown) =>
          [401, 429].includes((e as { status: number }).status),
        );
        await assert.rejects(people.checkAdminToken(`wrong-${i}`, from), (e: unknown) => [401, 429].includes((e as { status: number }).status));
      }
      const page = await store.audit.query({ limit: 1000 });
      assert.ok(page.records.length >= 2 && page.records.length <= 6, `${page.records.length} rows`);
      assert.equal(
        page.records.reduce((n, r) => n + r.count, 0),
        1000,
      );
      assert.ok(page.records.every((r) => r.source === "2001:db8:1:2::/64"));
    } finally {
      await store.close();
    }
  });

  it("is append-only: the database refuses to rewrite a record", async () => {
    const path = join(tempDir(), "append.db");
    const store = openSqliteStores(path);
    await store.audit.record(CLI_CONTEXT, { action: "account.created", accountId: "acct_x", target: "account:acct_x" });
    await store.close();
    const db = new Database(path);
    try {
      assert.throws(() => db.prepare("UPDATE audit_log SET actor = 'someone else'").run(), /append-only/);
    } finally {
      db.close();
    }
  });

  it("prunes records past ALVEARE_AUDIT_RETENTION_DAYS when the server starts", async () => {
    const dataDir = tempDir();
    const store = openSqliteStores(join(dataDir, "alveare.db"));
    await store.audit.record(CLI_CONTEXT, { action: "account.created", accountId: "acct_old", target: "account:acct_old" });
    await store.audit.record(CLI_CONTEXT, { action: "account.created", accountId: "acct_recent", target: "account:acct_recent" });
    await store.audit.record(CLI_CONTEXT, { action: "account.created", accountId: "acct_new", target: "account:acct_new" });
    await store.close();
    // Age two records as the passing days would (the product itself has no way to).
    const db = new Database(join(dataDir, "alveare.db"));
    const daysAgo = (d: number) => new Date(Date.now() - d * 86_400_000).toISOString();
    db.prepare("DROP TRIGGER audit_log_append_only").run();
    db.prepare("UPDATE audit_log SET at = ? WHERE account_id = 'acct_old'").run(daysAgo(31));
    db.prepare("UPDATE audit_log SET at = ? WHERE account_id = 'acct_recent'").run(daysAgo(29));
    db.close();
    const server = await startTestServer({ data_dir: dataDir }, { gated: true, env: { ALVEARE_AUDIT_RETENTION_DAYS: "30" } });
    try {
      const reader = new Database(join(dataDir, "alveare.db"), { readonly: true });
      const left = reader.prepare<[], { account_id: string }>("SELECT account_id FROM audit_log ORDER BY id").all();
      reader.close();
      assert.deepEqual(
        left.map((r) => r.account_id),
        ["acct_recent", "acct_new"],
      );
    } finally {
      await server.close();
    }
  });

  it("defaults the retention to 400 days and refuses a retention that is not a whole number of days", () => {
    assert.equal(configFor({}).auditRetentionDays, 400);
    assert.equal(configFor({}, { ALVEARE_AUDIT_RETENTION_DAYS: "30" }).auditRetentionDays, 30);
    for (const bad of ["0", "-1", "1.5", "forever"]) assert.throws(() => configFor({}, { ALVEARE_AUDIT_RETENTION_DAYS: bad }), ConfigError, bad);
  });
});

describe("alveare audit", () => {
  it("lists the CLI's own changes with actor cli, as a table or one JSON document, filtered by account", () => {
    const dataDir = tempDir();
    const account = cliJson(["accounts", "create", "--name", "cli-co", "--plan", "solo", "--data-dir", dataDir]);
    const other = cliJson(["accounts", "create", "--name", "other-co", "--plan", "solo", "--data-dir", dataDir]);
    const key = cliJson(["keys", "create", "--account", String(account.id), "--data-dir", dataDir]);
    cliJson(["keys", "revoke", String(key.id), "--data-dir", dataDir]);
    cliJson(["accounts", "update", String(account.id), "--status", "suspended", "--data-dir", dataDir]);
    cliJson(["members", "invite", "--account", String(account.id), "--email", "dev@example.com", "--data-dir", dataDir]);

    const listed = cliJson(["audit", "--account", String(account.id), "--data-dir", dataDir]) as unknown as AuditListJson;
    assert.equal(listed.object, "list");
    assert.deepEqual(
      listed.data.map((r) => r.action),
      ["member.invited", "account.suspended", "key.revoked", "key.created", "account.created"],
    );
    assert.ok(listed.data.every((r) => r.actor === "cli" && r.account_id === account.id && r.source === null));
    assert.equal(listed.data.find((r) => r.action === "key.created")!.target, `key:${String(key.id)}`);
    assert.ok(!JSON.stringify(listed).includes(String(key.key)));
    const everything = cliJson(["audit", "--data-dir", dataDir]) as unknown as AuditListJson;
    assert.ok(everything.data.some((r) => r.account_id === other.id));

    const cli = new URL("../src/cli/main.js", import.meta.url).pathname;
    const table = spawnSync(process.execPath, [cli, "audit", "--account", String(account.id), "--data-dir", dataDir], { encoding: "utf8" });
    assert.equal(table.status, 0, table.stderr);
    const lines = table.stdout.trim().split("\n");
    assert.match(lines[0]!, /^TIME\s+ACTOR\s+ACTION\s+ACCOUNT\s+TARGET\s+SOURCE\s+COUNT\s+DETAIL$/);
    assert.equal(lines.length, 6);
    assert.match(lines[5]!, /cli\s+account\.created .* name=cli-co plan=solo$/);
    const bad = spawnSync(process.execPath, [cli, "audit", "--since", "not a date", "--data-dir", dataDir], { encoding: "utf8" });
    assert.equal(bad.status, 2, "a malformed filter is a usage error");
    assert.match(bad.stderr, /since/);
  });
});
