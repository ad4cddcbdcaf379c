import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { GroupWriter, NotSentError } from "../src/group-writer.js";
import { isDatabaseConnectionFailure, isUnansweredStatement } from "../src/store/postgres/connection-failure.js";
import { isRedisConnectionFailure } from "../src/gate/redis/connection.js";
import { failureKind } from "../src/failure-kind.js";

describe("group writer", () => {
  it("sends the first item alone, then everything that arrived meanwhile in one call, in order", async () => {
    const calls: number[][] = [];
    let release: () => void = () => undefined;
    const writer = new GroupWriter<number, number>(async (items) => {
      calls.push(items);
      if (calls.length === 1) await new Promise<void>((r) => (release = r));
      return items.map((i) => i * 10);
    });
    const first = writer.add(1);
    await new Promise((r) => setImmediate(r));
    const rest = [2, 3, 4].map((i) => writer.add(i));
    await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(calls, [[1]], "nothing else goes out while a call is in flight");
    release();
    assert.deepEqual(await Promise.all([first, ...rest]), [10, 20, 30, 40]);
    assert.deepEqual(calls, [[1], [2, 3, 4]]);
  });

  it("fails the items that waited behind a call that found the store out of reach, at once, and no others", async () => {
    const calls: string[][] = [];
    let fail: (error: Error) => void = () => undefined;
    const outage = (error: unknown): boolean => (error as Error).message === "no answer";
    const writer = new GroupWriter<string, string>(async (items) => {
      calls.push(items);
      if (calls.length === 1) await new Promise<void>((_resolve, reject) => (fail = reject));
      return items;
    }, outage);
    const first = writer.add("a");
    await new Promise((r) => setImmediate(r));
    const waiting = [writer.add("b"), writer.add("c")];
    fail(new Error("no answer"));
    const settled = await Promise.allSettled([first, ...waiting]);
    assert.deepEqual(
      settled.map((r) => (r.status === "rejected" ? (r.reason as Error).message : r.value)),
      ["no answer", "not sent: no answer", "not sent: no answer"],
    );
    // The waiting items were never sent, and say so: only the call's own items may have been written.
    const waited = (settled[1] as PromiseRejectedResult).reason as NotSentError;
    assert.ok(waited instanceof NotSentError && (waited.cause as Error).message === "no answer");
    // Before, the waiting items went out together in a second call after the first failed: twice the wait in an outage.
    assert.deepEqual(calls, [["a"]], "no second call for items that would wait as long again");
    assert.equal(await writer.add("d"), "d", "a later item goes out as usual");
    // Any other failure fails its own call's items only.
    const other = new GroupWriter<string, string>(async (items) => {
      if (items.includes("bad")) throw new Error("refused");
      return items;
    }, outage);
    const bad = assert.rejects(other.add("bad"), /refused/);
    await new Promise((r) => setImmediate(r));
    const next = other.add("ok");
    await bad;
    assert.equal(await next, "ok");
  });

  it("fails every item of a failed call, and only those; a promise result settles its own item", async () => {
    let n = 0;
    const writer = new GroupWriter<string, string>(async (items) => {
      n++;
      if (items.includes("boom")) throw new Error("statement failed");
      return items.map((i) => (i === "later" ? Promise.reject(new Error("its own failure")) : i.toUpperCase()));
    });
    const failed = await Promise.allSettled([writer.add("a"), writer.add("boom")]);
    assert.deepEqual(
      failed.map((r) => r.status),
      ["rejected", "rejected"],
    );
    const mixed = await Promise.allSettled([writer.add("b"), writer.add("later"), writer.add("c")]);
    assert.deepEqual(
      mixed.map((r) => (r.status === "fulfilled" ? r.value : (r.reason as Error).message)),
      ["B", "its own failure", "C"],
    );
    assert.equal(n, 2);
  });

  it("rejects a call that returns fewer results than items instead of answering some with nothing", async () => {
    const writer = new GroupWriter<number, number>(async (items) => items.slice(1));
    const results = await Promise.allSettled([writer.add(1), writer.add(2)]);
    assert.ok(results.every((r) => r.status === "rejected" && /2 items/.test(String(r.reason))));
  });

  it("an item never sent is an outage to the stores' checks, never a statement that may have committed", () => {
    const unanswered = new Error("Query read timeout");
    assert.equal(isUnansweredStatement(unanswered), true);
    const behind = new NotSentError(unanswered);
    // A 503 to its client, as its own timeout would be, but no row to close later: it was never written.
    assert.equal(isDatabaseConnectionFailure(behind), true);
    assert.equal(isUnansweredStatement(behind), false);
    assert.equal(isRedisConnectionFailure(new NotSentError(new Error("Command timed out"))), true);
    assert.equal(isDatabaseConnectionFailure(new NotSentError(new Error("syntax error"))), false);
  });

  it("a replica's refusal is an outage however Redis words it: READONLY (Redis 7), or inside a script's error (Redis 5 and 6)", () => {
    const reply = (message: string): Error => Object.assign(new Error(message), { name: "ReplyError" });
    const redis7 = reply("READONLY You can't write against a read only replica.");
    const redis6 = reply(
      "ERR Error running script (call to f_3f2a…): @user_script:12: @user_script: 12: -READONLY You can't write against a read only replica. ",
    );
    for (const error of [redis7, redis6]) {
      assert.equal(isRedisConnectionFailure(error), true, error.message);
      assert.equal(failureKind(error), "read-only replica", error.message);
    }
    // A script's own bug stays a bug (a 500), not an outage.
    assert.equal(isRedisConnectionFailure(reply("ERR Error running script (call to f_3f2a…): @user_script:3: attempt to compare nil")), false);
  });
});
