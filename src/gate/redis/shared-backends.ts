import type { FailureCounter, FailureKind, FailureLogLimits } from "../backends.js";
import type { Stores } from "../../store/store.js";
import type { GateParts } from "../account-gate.js";
import { connectRedis, whyDisconnected, type RedisConnection } from "./connection.js";
import { RedisFailureCounter } from "./failure-counter.js";
import { RedisKeyCache } from "./key-cache.js";
import { RedisQuotaCounter } from "./quota-counter.js";
import { RedisRateLimiter } from "./rate-limiter.js";

/** Everything a node shares through Redis, built on one connection (and one subscriber). */
export interface RedisBackends {
  connection: RedisConnection;
  parts: Omit<GateParts, "now">;
  /** Call after every committed change to keys, plans or account status: every node sees it on its next request. */
  invalidate: () => Promise<void>;
  /** The sign-in and admin-token failure counters, shared by every node. */
  failures: (kind: FailureKind, limits: FailureLogLimits) => FailureCounter;
  /** Resolves when Redis answers (/ready). */
  ping: () => Promise<void>;
  /** Resolves to how many request ends could not reach Redis (see RedisRateLimiter.close). */
  close(): Promise<{ endsOwed: number }>;
}

export async function openRedisBackends(url: string, prefix: string, stores: Pick<Stores, "accounts" | "ledger">): Promise<RedisBackends> {
  const connection = await connectRedis(url, prefix);
  const limiter = new RedisRateLimiter(connection);
  const keys = new RedisKeyCache(connection, stores.accounts);
  try {
    await keys.listen(url);
  } catch (error) {
    void limiter.close();
    connection.redis.disconnect();
    throw error;
  }
  return {
    connection,
    parts: { limiter, keys, quota: new RedisQuotaCounter(connection, stores.ledger) },
    invalidate: () => keys.invalidate(),
    failures: (kind, limits) => new RedisFailureCounter(connection, kind, limits),
    // /ready names the kind of failure: a disconnected client's own error ("Stream isn't writeable") has none, its last connection error does.
    ping: async () => {
      try {
        await connection.redis.ping();
      } catch (error) {
        throw whyDisconnected(connection.redis) ?? error;
      }
    },
    close: async () => {
      const endsOwed = await limiter.close();
      await keys.close();
      await connection.redis.quit().catch(() => connection.redis.disconnect());
      return { endsOwed };
    },
  };
}
