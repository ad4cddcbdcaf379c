import { CLI_CONTEXT } from "../src/store/audit-log.js";
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { ApiError } from "../src/errors.js";
import { AccountGate } from "../src/gate/account-gate.js";
import { AccountService } from "../src/accounts/accounts.js";
import type { AdmitDecision, Caller } from "../src/gate/gate.js";
import { InProcessRateLimiter } from "../src/gate/in-process-limiter.js";
import { parsePlans } from "../src/gate/plans.js";
import { openSqliteStores } from "../src/store/sqlite/sqlite-store.js";

const plans = parsePlans({
  capped: { requests_per_minute: 100, requests_per_month: 2, specialists: "*", tokens_per_minute: 1000 },
});

async function refusal(decision: Promise<AdmitDecision>): Promise<ApiError> {
  const d = await decision;
  assert.equal(d.admitted, false, "expected a refusal");
  return (d as Extract<AdmitDecision, { admitted: false }>).error;
}

// The gate alone, without HTTP: a real SQLite store in memory and a clock the test holds still.
describe("AccountGate decisions", () => {
  const stores = openSqliteStores(":memory:", { serving: true });
  const gate = new AccountGate(stores.accounts, stores.ledger, plans, { limiter: new InProcessRateLimiter(() => 5_000_000) });
  const accounts = new AccountService(stores, plans);
  const keyOf = async (plan: string): Promise<string> =>
    (await accounts.createKey(CLI_CONTEXT, (await accounts.createAccount(CLI_CONTEXT, "a", plan)).id, "live")).key;
  let cappedKey: string;
  let capped: Caller;
  let solo: Caller;
  const authCode = async (header: string | undefined): Promise<string> => {
    try {
      await gate.authenticate(header);
    } catch (error) {
      assert.ok(error instanceof ApiError);
      assert.equal(error.status, 401);
      return error.code;
    }
    return assert.fail("expected a 401");
  };
  const windowsOf = async (key: string) => (await gate.authenticate(`Bearer ${key}`)).limits!;

  before(async () => {
    cappedKey = await keyOf("capped");
    capped = (await gate.authenticate(`Bearer ${cappedKey}`)).caller;
    solo = (await gate.authenticate(`bearer   ${await keyOf("solo")}  `)).caller;
  });
  after(async () => {
    await gate.close();
  });

  it("authenticates from the Authorization header's value alone, with the catalogue's 401s", async () => {
    assert.equal(await authCode(undefined), "missing_api_key");
    assert.equal(await authCode("  "), "missing_api_key");
    assert.equal(await authCode("Basic abc"), "invalid_api_key");
    const unknown = `Bearer alv_live_${"x".repeat(40)}`;
    assert.equal(await authCode(unknown), "invalid_api_key");
    const { limits } = await gate.authenticate(`Bearer ${await keyOf("capped")}`);
    assert.deepEqual(limits?.tokens, { limit: 1000, remaining: 1000, resetMs: 0 });
  });

  it("refuses a reservation beyond the token cap with a 400 naming max_tokens, counting nothing", async () => {
    const error = await refusal(gate.admit(capped, "classify", "infer", "r1", { reserveTokens: { promptTokens: 40, completionTokens: 961 } }));
    assert.equal(error.status, 400);
    assert.equal(error.code, "invalid_parameter");
    assert.equal(error.param, "max_tokens");
    const limits = await windowsOf(cappedKey);
    assert.equal(limits.requests.remaining, 100);
    assert.equal(limits.tokens?.remaining, 1000);
  });

  it("gives the window back when the monthly quota refuses, and settles tokens to the real count", async () => {
    const first = await gate.admit(capped, "classify", "infer", "r2", { reserveTokens: { promptTokens: 100, completionTokens: 400 } });
    assert.ok(first.admitted);
    assert.deepEqual(first.limits?.tokens, { limit: 1000, remaining: 500, resetMs: 60_000 });
    await first.admission.finish({ status: 200, promptTokens: 7, completionTokens: 3, latencyMs: 1 });
    const second = await gate.admit(capped, "classify", "infer", "r3", { reserveTokens: { promptTokens: 100, completionTokens: 400 } });
    assert.ok(second.admitted);
    assert.equal(second.limits?.tokens?.remaining, 1000 - 10 - 500, "the first settled to 10 tokens");
    // A 4xx found after admission does not count: its tokens leave the window too.
    await second.admission.finish({ status: 400, promptTokens: 50, completionTokens: 0, latencyMs: 1 });
    const third = await gate.admit(capped, "classify", "infer", "r4", { reserveTokens: { promptTokens: 1, completionTokens: 1 } });
    assert.ok(third.admitted);
    assert.equal(third.limits?.requests.remaining, 100 - 3);
    await third.admission.finish({ status: 200, promptTokens: 1, completionTokens: 1, latencyMs: 1 });
    // The quota (2 a month) is now spent: the refusal counts nothing in the key's windows.
    const quota = await refusal(gate.admit(capped, "classify", "infer", "r5", { reserveTokens: { promptTokens: 1, completionTokens: 1 } }));
    assert.equal(quota.code, "monthly_quota_exceeded");
    const limits = await windowsOf(cappedKey);
    assert.equal(limits.requests.remaining, 100 - 3);
    assert.equal(limits.tokens?.remaining, 1000 - 10 - 2);
  });

  it("reports the window's real reset and remaining places on a monthly refusal", async () => {
    let now = 7_000_000;
    const moving = new AccountGate(stores.accounts, stores.ledger, plans, { limiter: new InProcessRateLimiter(() => now) });
    const key = await keyOf("capped");
    const caller = (await moving.authenticate(`Bearer ${key}`)).caller;
    for (const id of ["m1", "m2"]) {
      const d = await moving.admit(caller, "classify", "infer", id);
      assert.ok(d.admitted);
      await d.admission.finish({ status: 200, promptTokens: 1, completionTokens: 1, latencyMs: 1 });
    }
    now += 20_000;
    const refused = await moving.admit(caller, "classify", "infer", "m3");
    assert.equal(refused.admitted, false);
    assert.equal((refused as Extract<AdmitDecision, { admitted: false }>).error.code, "monthly_quota_exceeded");
    // Two places taken 20 s ago: they free in 40 s, and the refused request took none.
    assert.deepEqual(refused.limits?.requests, { limit: 100, remaining: 98, resetMs: 40_000 });
  });

  it("ignores reservations on the shipped plans, which cap no tokens", async () => {
    const d = await gate.admit(solo, "classify", "infer", "r6", { reserveTokens: { promptTokens: 10_000_000, completionTokens: 4096 } });
    assert.ok(d.admitted);
    assert.equal(d.limits?.tokens, undefined);
    await d.admission.finish({ status: 200, promptTokens: 1, completionTokens: 1, latencyMs: 1 });
    assert.equal((await refusal(gate.admit(solo, "code", "infer", "r7"))).code, "specialist_not_in_plan");
    assert.equal((await refusal(gate.admit(undefined, "classify", "infer", "r8"))).code, "missing_api_key");
  });
});
