import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { AccountGate, type GateParts } from "../src/gate/account-gate.js";
import type { Caller } from "../src/gate/gate.js";
import { InProcessRateLimiter } from "../src/gate/in-process-limiter.js";
import { parsePlans } from "../src/gate/plans.js";
import type { RedisConnection } from "../src/gate/redis/connection.js";
import { RedisQuotaCounter } from "../src/gate/redis/quota-counter.js";
import { RedisRateLimiter } from "../src/gate/redis/rate-limiter.js";
import { createStore } from "../src/store/create-store.js";
import { UnrecordedOutcomeError, type Stores } from "../src/store/store.js";
import { tempDir } from "./helpers/fixtures.js";
import { dropAllDatabases, freshDatabase } from "./helpers/postgres.js";
import { deletePrefix, testConnection, testPrefix } from "./helpers/redis.js";
import { startTcpProxy, type TcpProxy } from "./helpers/tcp-proxy.js";

after(dropAllDatabases);

const TOKEN_CAP = 1000;
const plans = parsePlans({ metered: { requests_per_minute: 100, requests_per_month: 1000, specialists: "*", tokens_per_minute: TOKEN_CAP } });

/** The limiter and quota counter of each mode: the in-process limiter on the store's own quota, and the shared mode's Redis pair. */
const backends: Array<{
  name: string;
  parts: (stores: Stores, redis: RedisConnection) => Partial<GateParts>;
  close: (parts: Partial<GateParts>) => void;
}> = [
  { name: "in-process", parts: () => ({ limiter: new InProcessRateLimiter() }), close: () => undefined },
  {
    name: "redis",
    parts: (stores, redis) => ({ limiter: new RedisRateLimiter(redis), quota: new RedisQuotaCounter(redis, stores.ledger) }),
    close: (parts) => (parts.limiter as RedisRateLimiter).close(),
  },
];

// The gate on a real PostgreSQL ledger reached through a proxy the test cuts, as a node in the shared mode sees an outage.
for (const backend of backends) {
  describe(`a success the ledger cannot record (${backend.name} limiter)`, () => {
    it("gives its tokens back in the key's token window, as it gives the request back in the quota", async () => {
      const databaseUrl = await freshDatabase();
      const proxy: TcpProxy = await startTcpProxy(Number(new URL(databaseUrl).port || 5432), new URL(databaseUrl).hostname);
      const viaProxy = new URL(databaseUrl);
      viaProxy.host = `127.0.0.1:${proxy.port}`;
      const prefix = testPrefix("unrecorded-tokens");
      const redis = await testConnection(prefix);
      const stores = await createStore({ dataDir: tempDir(), databaseUrl: viaProxy.toString(), nodeLeaseMs: 60_000 }, { serving: true });
      const parts = backend.parts(stores, redis);
      try {
        await stores.accounts.createAccount({ id: "acct_t", name: "t", plan: "metered", status: "active", createdAt: new Date().toISOString() });
        const gate = new AccountGate(stores.accounts, stores.ledger, plans, parts);
        const caller: Caller = { accountId: "acct_t", keyId: "key_t", mode: "live", plan: "metered" };
        const reserveTokens = { promptTokens: 100, completionTokens: 400 };
        const remaining = async (): Promise<number | undefined> => (await gate.limits(caller))?.tokens?.remaining;

        // Recorded: settled to its real tokens, which stay in the window.
        const served = await gate.admit(caller, "chat", "chat.completions", "req-served", { reserveTokens });
        assert.ok(served.admitted);
        await served.admission.finish({ status: 200, promptTokens: 30, completionTokens: 20, latencyMs: 1 });
        assert.equal(await remaining(), TOKEN_CAP - 50);

        // Not recorded: its client is refused (503), so its tokens leave the window like those of any 5xx.
        const refused = await gate.admit(caller, "chat", "chat.completions", "req-refused", { reserveTokens });
        assert.ok(refused.admitted);
        assert.equal(await remaining(), TOKEN_CAP - 50 - 500, "the reservation is held while it runs");
        proxy.cut();
        try {
          await assert.rejects(
            refused.admission.finish({ status: 200, promptTokens: 30, completionTokens: 20, latencyMs: 1 }),
            UnrecordedOutcomeError,
          );
        } finally {
          proxy.restore();
        }
        assert.equal(await remaining(), TOKEN_CAP - 50, "only the recorded request's tokens are in the window");
      } finally {
        backend.close(parts);
        await stores.close();
        redis.redis.disconnect();
        await proxy.close();
        await deletePrefix(prefix);
      }
    });
  });
}
