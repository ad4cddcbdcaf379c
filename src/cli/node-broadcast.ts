import { connectRedis, type RedisConnection } from "../gate/redis/connection.js";
import { bumpKeyGeneration } from "../gate/redis/key-cache.js";
import { checkSameRedis, RedisServerMismatchError } from "../gate/redis/node-presence.js";
import type { LiveNode } from "../store/store.js";
import { RuntimeError, UsageError } from "./exit.js";

/** How often the CLI tries to tell the nodes of a saved change, and how long it waits between tries. */
const BUMP_ATTEMPTS = 3;
const BUMP_RETRY_MS = 300;

/** How a CLI command that changes keys or accounts tells the running nodes, through their Redis. */
export interface NodeBroadcast {
  /** Before writing: reaches Redis, or refuses with "nothing changed". */
  ready(): Promise<void>;
  /** After writing: bumps the key generation (a few tries), or says the change was saved but not told. */
  changed(): Promise<void>;
  close(): void;
}

/**
 * Several nodes: a committed change must reach every node's key cache, so the
 * CLI bumps the shared generation. It reaches Redis before writing (an
 * unreachable Redis changes nothing) and retries the bump after; running the
 * command again bumps again.
 */
export function nodeBroadcast(redisUrl: string, prefix: string, nodes?: { live: () => Promise<LiveNode[]>; leaseMs: number }): NodeBroadcast {
  let redis: RedisConnection | undefined;
  const connect = async (): Promise<RedisConnection> => (redis ??= await connectRedis(redisUrl, prefix, "alveare-cli"));
  return {
    ready: async () => {
      try {
        const connection = await connect();
        // A bump in another Redis would reach no running node: the change would be saved and never take effect.
        if (nodes !== undefined) await checkSameRedis(connection, redisUrl, nodes.live, { leaseMs: nodes.leaseMs });
      } catch (error) {
        if (error instanceof RedisServerMismatchError) throw new UsageError(`${error.message}; nothing changed`);
        throw new RuntimeError(`${(error as Error).message}; nothing changed (the running nodes could not be told)`);
      }
    },
    changed: async () => {
      let failure: unknown;
      for (let attempt = 0; attempt < BUMP_ATTEMPTS; attempt++) {
        if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, BUMP_RETRY_MS));
        try {
          await bumpKeyGeneration(await connect());
          return;
        } catch (error) {
          failure = error;
        }
      }
      throw new RuntimeError(`saved, but the running nodes were not told (${(failure as Error).message}); run the command again once Redis answers`);
    },
    close: () => redis?.redis.disconnect(),
  };
}
