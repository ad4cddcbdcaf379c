import type { FailureCounter, FailureKind, FailureLogLimits } from "../backends.js";
import type { Stores } from "../../store/store.js";
import type { GateParts } from "../account-gate.js";
import { connectRedis, safeUrl, whyDisconnected, type RedisConnection } from "./connection.js";
import { RedisFailureCounter } from "./failure-counter.js";
import { probeWrite, RedisKeyCache } from "./key-cache.js";
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
  /** Resolves when Redis takes writes: a replica, where a failover may leave the URL pointing, answers but takes none. */
  writable: () => Promise<void>;
  /** As `writable`, failing with why the connection is down when it is (/ready names the kind of failure). */
  probe: () => Promise<void>;
  /** Resolves to how many request ends could not reach Redis (see RedisRateLimiter.close). */
  close(): Promise<{ endsOwed: number }>;
}

/** Where a node tells its operator that Redis went away and came back. */
export interface ConnectionLog {
  warn(fields: object, message: string): void;
  info(fields: object, message: string): void;
}

/**
 * One line when the connection is lost and one when it is back, as for remote upstreams: while it is down every
 * request that needs it is refused (503), and those refusals alone do not say when the outage began or ended.
 * The function it returns marks the node's own close, which is no loss and not logged.
 */
function logConnectionChanges(connection: RedisConnection, url: string, log: ConnectionLog): () => void {
  const { redis } = connection;
  let lostAt: number | undefined;
  let closing = false;
  redis.on("close", () => {
    if (closing || lostAt !== undefined) return;
    lostAt = Date.now();
    // No error before the close: Redis ended the connection itself (a shutdown, a kill, a client kill).
    const reason = whyDisconnected(redis)?.message ?? "the server closed the connection";
    log.warn({ redis: safeUrl(url), reason }, "Redis connection lost: reconnecting");
  });
  redis.on("ready", () => {
    if (lostAt === undefined) return;
    log.info({ redis: safeUrl(url), down_ms: Date.now() - lostAt }, "Redis connection back");
    lostAt = undefined;
  });
  return () => {
    closing = true;
  };
}

export async function openRedisBackends(
  url: string,
  prefix: string,
  stores: Pick<Stores, "accounts" | "ledger">,
  log?: ConnectionLog,
): Promise<RedisBackends> {
  const connection = await connectRedis(url, prefix);
  const closing = log === undefined ? () => undefined : logConnectionChanges(connection, url, log);
  const limiter = new RedisRateLimiter(connection);
  const keys = new RedisKeyCache(connection, stores.accounts);
  try {
    await keys.listen(url);
  } catch (error) {
    void limiter.close();
    closing();
    connection.redis.disconnect();
    throw error;
  }
  const writable = (): Promise<void> => probeWrite(connection);
  return {
    connection,
    parts: { limiter, keys, quota: new RedisQuotaCounter(connection, stores.ledger) },
    invalidate: () => keys.invalidate(),
    failures: (kind, limits) => new RedisFailureCounter(connection, kind, limits),
    writable,
    // /ready names the kind of failure: a disconnected client's own error ("Stream isn't writeable") has none, its last connection error does.
    probe: async () => {
      try {
        await writable();
      } catch (error) {
        throw whyDisconnected(connection.redis) ?? error;
      }
    },
    close: async () => {
      const endsOwed = await limiter.close();
      await keys.close();
      closing();
      await connection.redis.quit().catch(() => connection.redis.disconnect());
      return { endsOwed };
    },
  };
}
