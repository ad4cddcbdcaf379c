import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { StoreQuotaCounter } from "../src/gate/store-backends.js";
import { billingPeriod, isoTime, periodKeyAt } from "../src/metering/billing-period.js";
import { createStore } from "../src/store/create-store.js";
import { tempDir } from "./helpers/fixtures.js";

/** The quota counter keeps the last request's month; a request in another month must count in that month. */
describe("StoreQuotaCounter: billing months", () => {
  const opened: Array<{ close(): Promise<void> }> = [];
  after(async () => {
    for (const s of opened) await s.close();
  });

  it("counts each request in its own UTC month across a month boundary, forwards and back", async () => {
    const stores = await createStore({ dataDir: tempDir("alveare-quota-period-") });
    opened.push(stores);
    await stores.accounts.createAccount({ id: "acct_q", name: "Q", plan: "free", status: "active", createdAt: new Date().toISOString() });
    const counter = new StoreQuotaCounter(stores.ledger, () => new Date("2026-02-01T00:00:01Z"));
    const caller = { accountId: "acct_q", keyId: "key_q", mode: "live" as const, plan: "free" };
    const at = [
      "2026-01-31T23:59:59.998Z",
      "2026-01-31T23:59:59.999Z",
      "2026-02-01T00:00:00.000Z",
      "2026-01-15T12:00:00.000Z",
      "2026-03-01T00:00:00.000Z",
    ];
    for (const [i, iso] of at.entries()) {
      const ticket = await counter.take({
        requestId: `req_${i}`,
        caller,
        specialistId: "classify",
        endpoint: "infer",
        limit: 100,
        at: new Date(iso),
      });
      assert.ok(ticket, `request ${i} admitted`);
      await ticket.finish({ status: 200, promptTokens: 1, completionTokens: 1, latencyMs: 1 });
    }
    assert.equal((await stores.ledger.periodUsage("acct_q", "live", "2026-01")).requests, 3);
    assert.equal((await stores.ledger.periodUsage("acct_q", "live", "2026-02")).requests, 1);
    assert.equal((await stores.ledger.periodUsage("acct_q", "live", "2026-03")).requests, 1);
  });
});

describe("periodKeyAt: the month of a request", () => {
  it("is the month billingPeriod names, across month and year boundaries, forwards and back", () => {
    const samples = [
      "2026-01-31T23:59:59.999Z",
      "2026-02-01T00:00:00.000Z",
      "2026-01-31T23:59:59.999Z",
      "2026-12-31T23:59:59.999Z",
      "2027-01-01T00:00:00.000Z",
      "2026-02-28T12:00:00.000Z",
      "2026-03-01T00:00:00.000Z",
      "1970-01-01T00:00:00.000Z",
      "1969-12-31T23:59:59.999Z",
    ];
    for (const iso of samples) assert.equal(periodKeyAt(new Date(iso)), billingPeriod(new Date(iso)).key, iso);
    for (let i = 0; i < 500; i++) {
      const at = new Date(Math.floor(Math.random() * 4e12) - 1e12);
      assert.equal(periodKeyAt(at), billingPeriod(at).key, at.toISOString());
    }
  });
});

describe("isoTime: the ledger's timestamps", () => {
  it("writes what toISOString writes, across seconds, days, years and the unusual years", () => {
    const samples = [
      0,
      1,
      9,
      10,
      99,
      100,
      999,
      1000,
      1001,
      Date.UTC(2026, 1, 28, 23, 59, 59, 999),
      Date.UTC(2026, 2, 1),
      Date.UTC(1969, 11, 31, 23, 59, 59, 5),
      Date.UTC(9999, 11, 31, 23, 59, 59, 999),
      Date.UTC(10000, 0, 1),
      -62198755200001,
      Date.UTC(2026, 10, 26, 6, 0, 0, 7),
    ];
    // Each sample, then a neighbour in the same second and in the next, so the cached second is both reused and replaced.
    for (const t of samples.flatMap((t) => [t, t + 1, t + 999, t - 1, t])) {
      assert.equal(isoTime(new Date(t)), new Date(t).toISOString(), String(t));
    }
    for (let i = 0; i < 2000; i++) {
      const t = Math.floor(Math.random() * 4e12) - 1e12;
      assert.equal(isoTime(new Date(t)), new Date(t).toISOString(), String(t));
    }
    assert.throws(() => isoTime(new Date(Number.NaN)), RangeError);
  });
});
