import assert from "node:assert/strict";
import { after, describe, it, type TestContext } from "node:test";
import type { Acquisition, KeyLimits, RateLimiter } from "../src/gate/backends.js";
import { CONCURRENCY_RETRY_MS, InProcessRateLimiter } from "../src/gate/in-process-limiter.js";
import { COMMAND_TIMEOUT_MS, type RedisConnection } from "../src/gate/redis/connection.js";
import { RedisFailureCounter } from "../src/gate/redis/failure-counter.js";
import { LEASE_TTL_MS, RedisRateLimiter } from "../src/gate/redis/rate-limiter.js";
import { deletePrefix, PrivateRedis, testConnection, testPrefix } from "./helpers/redis.js";
import { startTcpProxy } from "./helpers/tcp-proxy.js";

/** A clock the test moves by hand: windows are checked to the millisecond without waiting for them. */
class ManualClock {
  ms = 1_000_000;
  readonly now = (): number => this.ms;
}

const WINDOW = 60_000;
const requestsOnly = (limit: number): KeyLimits => ({ requests: { limit, windowMs: WINDOW } });

function granted(a: Acquisition): Extract<Acquisition, { granted: true }> {
  assert.equal(a.granted, true, "expected the request to be admitted");
  return a as Extract<Acquisition, { granted: true }>;
}
function refused(a: Acquisition): Extract<Acquisition, { granted: false }> {
  assert.equal(a.granted, false, "expected the request to be refused");
  return a as Extract<Acquisition, { granted: false }>;
}

/** The same limits, the same answers: in this process's memory, and in Redis shared by every node. */
const backends: Array<{ name: string; limiter: (clock: () => number) => Promise<RateLimiter>; done: () => Promise<void> }> = [
  { name: "in-process", limiter: async (clock) => new InProcessRateLimiter(clock), done: async () => {} },
  (() => {
    const prefix = testPrefix("limiter");
    const opened: Array<{ connection: RedisConnection; limiter: RedisRateLimiter }> = [];
    let n = 0;
    return {
      name: "redis",
      // A fresh prefix per limiter: each test starts on empty windows, as a new in-process limiter does.
      limiter: async (clock: () => number) => {
        const connection = await testConnection(`${prefix}${n++}:`);
        const limiter = new RedisRateLimiter(connection, clock);
        opened.push({ connection, limiter });
        return limiter;
      },
      done: async () => {
        for (const { connection, limiter } of opened) {
          await limiter.close();
          connection.redis.disconnect();
        }
        await deletePrefix(prefix);
      },
    };
  })(),
];

for (const backend of backends) {
  describe(`${backend.name} limiter`, () => {
    const make = (clock: () => number): Promise<RateLimiter> => backend.limiter(clock);
    after(() => backend.done());

    describe("request window", () => {
      it("admits exactly the limit in a burst, and counts down remaining", async () => {
        const limiter = await make(new ManualClock().now);
        const results = await Promise.all(Array.from({ length: 200 }, () => limiter.acquire("k", requestsOnly(20), 0)));
        assert.equal(results.filter((r) => r.granted).length, 20);
        assert.deepEqual(
          results.slice(0, 3).map((r) => r.report.requests.remaining),
          [19, 18, 17],
        );
        for (const r of results.slice(20)) {
          const no = refused(r);
          assert.equal(no.refusedBy, "requests");
          assert.equal(no.retryAfterMs, WINDOW);
          assert.equal(no.report.requests.remaining, 0);
        }
      });

      it("lets a waiting client in exactly when the oldest admission leaves the window, not a millisecond before", async () => {
        const clock = new ManualClock();
        const limiter = await make(clock.now);
        for (let i = 0; i < 20; i++) {
          granted(await limiter.acquire("k", requestsOnly(20), 0));
          clock.ms += 100; // admissions spread over 2 s
        }
        const no = refused(await limiter.acquire("k", requestsOnly(20), 0));
        // The oldest came in 2 s ago: a window later it leaves.
        assert.equal(no.retryAfterMs, WINDOW - 2000);
        clock.ms += no.retryAfterMs - 1;
        refused(await limiter.acquire("k", requestsOnly(20), 0));
        clock.ms += 1;
        granted(await limiter.acquire("k", requestsOnly(20), 0));
        // Only one slot opened: the next waits for the second oldest, 100 ms later.
        assert.equal(refused(await limiter.acquire("k", requestsOnly(20), 0)).retryAfterMs, 100);
      });

      it("limits each key on its own; peek counts nothing; reset is the time until the window is clear", async () => {
        const clock = new ManualClock();
        const limiter = await make(clock.now);
        granted(await limiter.acquire("a", requestsOnly(3), 0));
        clock.ms += 10_000;
        granted(await limiter.acquire("a", requestsOnly(3), 0));
        assert.equal((await limiter.peek("b", requestsOnly(3))).requests.remaining, 3);
        const peeked = await limiter.peek("a", requestsOnly(3));
        assert.deepEqual(peeked.requests, { limit: 3, remaining: 1, resetMs: WINDOW });
        assert.equal((await limiter.peek("a", requestsOnly(3))).requests.remaining, 1);
        assert.equal(peeked.tokens, undefined, "no token window without a token cap");
      });

      it("gives a cancelled admission back (a request the monthly quota refused), but only once", async () => {
        const limiter = await make(new ManualClock().now);
        const first = granted(await limiter.acquire("k", requestsOnly(1), 0));
        refused(await limiter.acquire("k", requestsOnly(1), 0));
        await first.lease.cancel();
        await first.lease.cancel();
        const again = granted(await limiter.acquire("k", requestsOnly(1), 0));
        assert.equal(again.report.requests.remaining, 0);
      });
      it("gives back a cancelled admission that is not the newest: only it leaves the window", async () => {
        const clock = new ManualClock();
        const limiter = await make(clock.now);
        const a = granted(await limiter.acquire("k", requestsOnly(3), 0));
        clock.ms += 1000;
        granted(await limiter.acquire("k", requestsOnly(3), 0));
        clock.ms += 1000;
        await a.lease.cancel();
        assert.equal((await limiter.peek("k", requestsOnly(3))).requests.remaining, 2, "one admission (B) left in the window");
        granted(await limiter.acquire("k", requestsOnly(3), 0));
        granted(await limiter.acquire("k", requestsOnly(3), 0));
        refused(await limiter.acquire("k", requestsOnly(3), 0));
      });
    });

    describe("token window", () => {
      const tokenCap = (limit: number): KeyLimits => ({ requests: { limit: 1000, windowMs: WINDOW }, tokens: { limit, windowMs: WINDOW } });

      it("holds a burst's reservations to the cap exactly, and a refusal counts nothing", async () => {
        const limiter = await make(new ManualClock().now);
        const results = await Promise.all(Array.from({ length: 50 }, () => limiter.acquire("k", tokenCap(1000), 150)));
        const ok = results.filter((r) => r.granted);
        assert.equal(ok.length, 6, "6 × 150 = 900 fits 1000; a seventh would not");
        assert.equal(ok.at(-1)!.report.tokens!.remaining, 100);
        for (const r of results.filter((x) => !x.granted)) {
          assert.equal(refused(r).refusedBy, "tokens");
          assert.equal(r.report.tokens!.remaining, 100);
        }
        // The refused requests took no request slots either.
        assert.equal((await limiter.peek("k", tokenCap(1000))).requests.remaining, 1000 - 6);
        // A reservation that fits what is left still passes.
        granted(await limiter.acquire("k", tokenCap(1000), 100));
      });

      it("settles a reservation to the tokens really used, giving back the rest at once", async () => {
        const limiter = await make(new ManualClock().now);
        const a = granted(await limiter.acquire("k", tokenCap(1000), 600));
        refused(await limiter.acquire("k", tokenCap(1000), 600));
        await a.lease.settle(40);
        assert.equal((await limiter.peek("k", tokenCap(1000))).tokens!.remaining, 960);
        granted(await limiter.acquire("k", tokenCap(1000), 600));
        // Settling twice changes nothing.
        await a.lease.settle(1000);
        assert.equal((await limiter.peek("k", tokenCap(1000))).tokens!.remaining, 360);
      });

      it("tells a refused request exactly when enough tokens leave the window", async () => {
        const clock = new ManualClock();
        const limiter = await make(clock.now);
        for (const tokens of [300, 300, 300]) {
          await granted(await limiter.acquire("k", tokenCap(1000), tokens)).lease.settle(tokens);
          clock.ms += 1000;
        }
        // 900 used: 500 more fits once the two oldest have left, the second of them 58 s from now.
        const no = refused(await limiter.acquire("k", tokenCap(1000), 500));
        assert.equal(no.retryAfterMs, WINDOW - 2000);
        assert.equal(no.report.tokens!.resetMs, WINDOW - 1000, "the newest leaves last");
        clock.ms += no.retryAfterMs - 1;
        refused(await limiter.acquire("k", tokenCap(1000), 500));
        clock.ms += 1;
        granted(await limiter.acquire("k", tokenCap(1000), 500));
      });

      it("reports the longest wait when requests and tokens both refuse", async () => {
        const clock = new ManualClock();
        const limiter = await make(clock.now);
        const limits: KeyLimits = { requests: { limit: 1, windowMs: 10_000 }, tokens: { limit: 100, windowMs: 20_000 } };
        granted(await limiter.acquire("k", limits, 100));
        const no = refused(await limiter.acquire("k", limits, 50));
        assert.equal(no.refusedBy, "requests");
        assert.equal(no.retryAfterMs, 20_000);
      });
    });

    describe("concurrency cap", () => {
      const concurrency = (max: number): KeyLimits => ({ requests: { limit: 1000, windowMs: WINDOW }, maxConcurrent: max });

      it("admits at most the cap at once; a slot frees when a request settles or is cancelled", async () => {
        const limiter = await make(new ManualClock().now);
        const results = await Promise.all(Array.from({ length: 10 }, () => limiter.acquire("k", concurrency(3), 0)));
        const ok = results.filter((r) => r.granted).map(granted);
        assert.equal(ok.length, 3);
        for (const r of results.filter((x) => !x.granted)) {
          const no = refused(r);
          assert.equal(no.refusedBy, "concurrency");
          assert.equal(no.retryAfterMs, CONCURRENCY_RETRY_MS);
        }
        await ok[0]!.lease.settle(0);
        await ok[0]!.lease.settle(0); // a second settle must not free a second slot
        granted(await limiter.acquire("k", concurrency(3), 0));
        refused(await limiter.acquire("k", concurrency(3), 0));
        await ok[1]!.lease.cancel();
        granted(await limiter.acquire("k", concurrency(3), 0));
        // Other keys have their own slots.
        granted(await limiter.acquire("other", concurrency(3), 0));
      });
    });
  });
}

describe("redis limiter shared by several nodes", () => {
  const prefix = testPrefix("nodes");
  const opened: RedisConnection[] = [];
  const limiters: RedisRateLimiter[] = [];
  /** Three nodes: three connections and limiters on one prefix and one clock. */
  async function nodes(clock: () => number): Promise<RedisRateLimiter[]> {
    const made: RedisRateLimiter[] = [];
    for (let i = 0; i < 3; i++) {
      const connection = await testConnection(prefix);
      opened.push(connection);
      made.push(new RedisRateLimiter(connection, clock));
    }
    limiters.push(...made);
    return made;
  }
  after(async () => {
    for (const l of limiters) await l.close();
    for (const c of opened) c.redis.disconnect();
    await deletePrefix(prefix);
  });

  /** A Redis of the test's own, one connection to it direct, and connections through a forwarder the test can cut. */
  async function redisBehindForwarder(t: TestContext) {
    const redis = new PrivateRedis();
    await redis.start();
    t.after(() => redis.kill());
    const proxy = await startTcpProxy(redis.port);
    t.after(() => proxy.close());
    const direct = await testConnection(prefix, redis.url);
    opened.push(direct);
    const throughProxy = async (): Promise<RedisConnection> => {
      const connection = await testConnection(prefix, `redis://127.0.0.1:${proxy.port}`);
      opened.push(connection);
      return connection;
    };
    return { proxy, direct, throughProxy };
  }

  it("admits exactly the limit of a burst spread over the nodes", async () => {
    const clock = new ManualClock();
    const all = await nodes(clock.now);
    const results = await Promise.all(Array.from({ length: 200 }, (_, i) => all[i % 3]!.acquire("burst", requestsOnly(20), 0)));
    assert.equal(results.filter((r) => r.granted).length, 20);
    for (const r of results.filter((x) => !x.granted)) assert.equal(refused(r).retryAfterMs, WINDOW);
  });

  it("counts a monthly counter in the same step when the limits grant; refuses, counting nothing, when it is missing or at its limit", async () => {
    const clock = new ManualClock();
    const [a, b] = await nodes(clock.now);
    const { redis } = opened[opened.length - 1]!;
    const counter = { key: `${prefix}counter-step`, limit: 3 };
    // No counter yet: refused, counting nothing and creating nothing (the quota counter seeds it from the ledger).
    const missing = refused(await a!.acquire("step", requestsOnly(4), 0, counter));
    assert.deepEqual([missing.refusedBy, missing.counterMissing, missing.report.requests.remaining], ["monthly", true, 4]);
    assert.equal(await redis.get(counter.key), null);
    await redis.set(counter.key, "1");
    assert.equal(granted(await a!.acquire("step", requestsOnly(4), 0, counter)).counted, true);
    assert.equal(granted(await b!.acquire("step", requestsOnly(4), 0, counter)).counted, true);
    assert.equal(await redis.get(counter.key), "3");
    // At its limit: refused as over the quota, and nothing counted in the windows (a quota refusal takes no place in them).
    const full = refused(await b!.acquire("step", requestsOnly(4), 0, counter));
    assert.equal(full.refusedBy, "monthly");
    assert.equal(full.report.requests.remaining, 2, "the 2 admitted, neither refused one");
    assert.equal(await redis.get(counter.key), "3");
    await redis.set(counter.key, "0");
    for (let i = 0; i < 2; i++) assert.equal(granted(await a!.acquire("step", requestsOnly(4), 0, counter)).counted, true);
    // Refused by the request window (4 admitted above): the counter is never touched.
    assert.equal(refused(await a!.acquire("step", requestsOnly(4), 0, counter)).refusedBy, "requests");
    assert.equal(await redis.get(counter.key), "2");
  });

  it("settles a lease without a Redis call when the plan caps neither tokens nor concurrency, and with one when it does", async () => {
    const clock = new ManualClock();
    const first = opened.length;
    const [node] = await nodes(clock.now);
    const { redis } = opened[first]!; // node's own connection
    const realEvalsha = redis.evalsha.bind(redis);
    let scripts = 0;
    redis.evalsha = ((...args: Parameters<typeof redis.evalsha>) => {
      scripts++;
      return realEvalsha(...args);
    }) as typeof redis.evalsha;
    const plain = granted(await node!.acquire("settle-plain", requestsOnly(5), 0));
    scripts = 0;
    await plain.lease.settle(7);
    assert.equal(scripts, 0, "nothing held in Redis, nothing to end");
    const capped = granted(await node!.acquire("settle-capped", { requests: { limit: 5, windowMs: WINDOW }, maxConcurrent: 1 }, 0));
    scripts = 0;
    await capped.lease.settle(7);
    assert.equal(scripts, 1, "the concurrency slot is given back");
    granted(await node!.acquire("settle-capped", { requests: { limit: 5, windowMs: WINDOW }, maxConcurrent: 1 }, 0));
    // A cancel always reaches Redis: it takes the admission back out of the window.
    const cancelled = granted(await node!.acquire("settle-plain", requestsOnly(5), 0));
    scripts = 0;
    await cancelled.lease.cancel();
    assert.equal(scripts, 1);
  });

  it("ends a request that finished while Redis was unreachable once it is back, before the node's next admission, even after Redis forgot its scripts", async (t) => {
    const clock = new ManualClock();
    // A Redis of the test's own, whose script cache the test flushes; one node reaches it through a forwarder the test cuts.
    const { proxy, direct, throughProxy } = await redisBehindForwarder(t);
    const cutOff = await throughProxy();
    const survivor = new RedisRateLimiter(direct, clock.now);
    const blipped = new RedisRateLimiter(cutOff, clock.now);
    limiters.push(survivor, blipped);
    const limits: KeyLimits = { requests: { limit: 1000, windowMs: WINDOW }, tokens: { limit: 1000, windowMs: WINDOW }, maxConcurrent: 1 };
    const lease = granted(await blipped.acquire("blip", limits, 900)).lease;
    proxy.cut();
    while (cutOff.redis.status === "ready") await new Promise((resolve) => setTimeout(resolve, 5));
    await lease.settle(10); // the request is answered; its end cannot reach Redis
    await direct.redis.script("FLUSH"); // as a restart with persistence, or a failover, leaves it
    assert.equal(refused(await survivor.acquire("blip", limits, 0)).refusedBy, "concurrency", "the slot is still held in Redis");
    // The node's first admission once it is back (no lease expiry, no window sliding: the clock stands still).
    const first = new Promise<Acquisition>((resolve, reject) =>
      cutOff.redis.once("ready", () => blipped.acquire("blip", limits, 500).then(resolve, reject)),
    );
    proxy.restore();
    const after = granted(await first);
    assert.equal(after.report.tokens?.remaining, 1000 - 10 - 500, "the reservation was settled to the tokens used first");
    await after.lease.cancel();
  });

  it("takes back what an admission whose answer never came may have counted: its client was refused, so it holds no slot, window entry or tokens", async (t) => {
    const clock = new ManualClock();
    const { proxy, direct, throughProxy } = await redisBehindForwarder(t);
    const silent = await throughProxy();
    const node = new RedisRateLimiter(silent, clock.now);
    const other = new RedisRateLimiter(direct, clock.now);
    limiters.push(node, other);
    const limits: KeyLimits = { requests: { limit: 5, windowMs: WINDOW }, tokens: { limit: 1000, windowMs: WINDOW }, maxConcurrent: 1 };
    granted(await node.acquire("loads-the-script", limits, 0));
    // The script reaches Redis and runs; its answer is held past the command timeout (a silent partition).
    proxy.holdAnswers();
    await assert.rejects(node.acquire("lost-answer", limits, 600), /Command timed out/);
    // Its cancel went once, behind it on the same connection: owed as well, it would be re-sent each round of a
    // long partition, with every other timed-out admission's. Past the cancel's own timeout, nothing is owed.
    await new Promise((resolve) => setTimeout(resolve, COMMAND_TIMEOUT_MS + 300));
    assert.equal(node.owed, 0);
    proxy.restore();
    // The node's next admission sends what it owes first: the same Redis connection runs them in order.
    const next = granted(await node.acquire("lost-answer", limits, 600));
    assert.equal(next.report.requests.remaining, 4, "the refused request left no entry in the window");
    assert.equal(next.report.tokens?.remaining, 1000 - 600, "nor a reservation");
    await next.lease.settle(0);
    granted(await other.acquire("lost-answer", limits, 0)); // nor a concurrency slot, on any node
  });

  it("frees a sign-in attempt's places when its answer never came: a right password is not refused as busy meanwhile", async (t) => {
    const { proxy, direct, throughProxy } = await redisBehindForwarder(t);
    const silent = await throughProxy();
    const limits = { allowed: 5, windowMs: 60_000, maxKeys: 100 };
    const [node, other] = [new RedisFailureCounter(silent, "member", limits), new RedisFailureCounter(direct, "member", limits)];
    const now = Date.now();
    // Four failures already: one more attempt in flight fills the key.
    for (let i = 0; i < 4; i++) {
      const failed = await other.attempt(["a@example.com"], now);
      assert.ok(failed.counted);
      await other.settle(["a@example.com"], failed.id, true, now);
    }
    proxy.holdAnswers(); // the attempt's script runs in Redis; its answer is held past the command timeout
    await assert.rejects(node.attempt(["a@example.com"], now), /Command timed out/);
    proxy.restore();
    await silent.redis.ping(); // answered after what the node sent before it on that connection
    const next = await other.attempt(["a@example.com"], now);
    assert.equal(next.counted, true, `the lost attempt's place was freed: ${JSON.stringify(next)}`);
  });

  it("sends the ends still owed once more when it closes, and says how many Redis could not take", async (t) => {
    const clock = new ManualClock();
    const { proxy, direct, throughProxy } = await redisBehindForwarder(t);
    const [gone, back] = [await throughProxy(), await throughProxy()];
    const survivor = new RedisRateLimiter(direct, clock.now);
    limiters.push(survivor);
    const [stopsWhileCut, stopsOnceBack] = [new RedisRateLimiter(gone, clock.now), new RedisRateLimiter(back, clock.now)];
    const limits: KeyLimits = { requests: { limit: 1000, windowMs: WINDOW }, maxConcurrent: 1 };
    const leases = [granted(await stopsWhileCut.acquire("gone", limits, 0)).lease, granted(await stopsOnceBack.acquire("back", limits, 0)).lease];
    proxy.cut();
    while (gone.redis.status === "ready" || back.redis.status === "ready") await new Promise((resolve) => setTimeout(resolve, 5));
    for (const lease of leases) await lease.settle(0); // answered; their ends cannot reach Redis

    const started = performance.now();
    assert.equal(await stopsWhileCut.close(), 1, "Redis still out of reach: one end owed");
    assert.ok(performance.now() - started < 1500, "the last try gives up within a second");
    assert.equal(refused(await survivor.acquire("gone", limits, 0)).refusedBy, "concurrency", "that slot waits for its lease to expire");

    // Closed in the same turn as its connection is back: no retry timer can have sent the end first.
    const closed = new Promise<number>((resolve, reject) => back.redis.once("ready", () => stopsOnceBack.close().then(resolve, reject)));
    proxy.restore();
    assert.equal(await closed, 0, "the end reached Redis on the last try");
    granted(await survivor.acquire("back", limits, 0)); // the slot was freed at close
  });

  it("frees a dead node's concurrency slots once their lease expires, never before", async () => {
    const clock = new ManualClock();
    const [dying, survivor] = await nodes(clock.now);
    const limits: KeyLimits = { requests: { limit: 1000, windowMs: WINDOW }, maxConcurrent: 2 };
    granted(await dying!.acquire("slots", limits, 0));
    granted(await dying!.acquire("slots", limits, 0));
    void dying!.close(); // the node dies: its leases are never settled nor renewed
    assert.equal(refused(await survivor!.acquire("slots", limits, 0)).refusedBy, "concurrency");
    clock.ms += LEASE_TTL_MS - 1;
    refused(await survivor!.acquire("slots", limits, 0));
    clock.ms += 1;
    granted(await survivor!.acquire("slots", limits, 0));
  });
});
