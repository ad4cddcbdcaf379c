import type { LiveNode } from "../../store/store.js";
import { safeUrl, type RedisConnection } from "./connection.js";

/**
 * Every node and CLI of one database must use one Redis: revocations, limits
 * and the monthly counter travel through it. The prefix is checked against the
 * one PostgreSQL records; the server behind ALVEARE_REDIS_URL is checked here.
 * Each serving node keeps a key of its own in Redis, renewed as its lease in
 * PostgreSQL is; a node or CLI that finds none of the live nodes' keys in its
 * Redis is on another one, and refuses to start (or to change anything).
 */

const presenceKey = (prefix: string, nodeId: string): string => `${prefix}node:${nodeId}`;

/** How often a node renews its key: as often as its lease. Its key outlives one missed renewal. */
const renewEvery = (leaseMs: number): number => Math.max(100, Math.floor(leaseMs / 3));

/**
 * Keeps this node's key in its Redis until the returned function is called.
 * A Redis that restarts empty has it again at the next renewal; a failed write
 * is left to the next one (an outage is reported by the requests that need Redis).
 */
export function announcePresence(connection: RedisConnection, nodeId: string, leaseMs: number): { stop: () => Promise<void> } {
  const key = presenceKey(connection.prefix, nodeId);
  const ttl = leaseMs + renewEvery(leaseMs);
  const write = (): Promise<unknown> => connection.redis.set(key, "1", "PX", ttl).catch(() => undefined);
  let writing = write();
  const timer = setInterval(() => void (writing = write()), renewEvery(leaseMs));
  timer.unref();
  return {
    stop: async () => {
      clearInterval(timer);
      await writing;
      await connection.redis.del(key).catch(() => undefined);
    },
  };
}

/** A node or CLI whose Redis holds none of the running nodes' keys. */
export class RedisServerMismatchError extends Error {
  constructor(url: string, prefix: string, nodes: LiveNode[]) {
    const named = nodes
      .slice(0, 3)
      .map((n) => `${n.id} on ${n.host}, pid ${n.pid}`)
      .join("; ");
    super(
      `ALVEARE_REDIS_URL (${safeUrl(url)}) is not the Redis the running nodes use: none of the ${nodes.length} node${nodes.length === 1 ? "" : "s"} ` +
        `with a live lease in PostgreSQL (${named}${nodes.length > 3 ? "; …" : ""}) is present in it under the prefix '${prefix}'; ` +
        "give every node and the CLI the same ALVEARE_REDIS_URL (revocations and limits reach only the nodes on one Redis)",
    );
    this.name = "RedisServerMismatchError";
  }
}

/**
 * Resolves once this Redis is seen to be the running nodes' (one of their keys
 * is in it), or no other node is running; throws RedisServerMismatchError when
 * none of their keys came within one renewal (a Redis that just restarted
 * empty has them back by then).
 */
export async function checkSameRedis(
  connection: RedisConnection,
  url: string,
  liveNodes: () => Promise<LiveNode[]>,
  options: { self?: string | undefined; leaseMs: number },
): Promise<void> {
  const deadline = Date.now() + renewEvery(options.leaseMs) + 1000;
  for (;;) {
    const others = (await liveNodes()).filter((n) => n.id !== options.self);
    if (others.length === 0) return;
    const present = await connection.redis.exists(...others.map((n) => presenceKey(connection.prefix, n.id)));
    if (present > 0) return;
    if (Date.now() >= deadline) throw new RedisServerMismatchError(url, connection.prefix, others);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}
