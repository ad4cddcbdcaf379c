import { connectRedis, type RedisConnection } from "../gate/redis/connection.js";
import { bumpKeyGeneration } from "../gate/redis/key-cache.js";
import { RuntimeError } from "./exit.js";

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
export function nodeBroadcast(redisUrl: string, prefix: string): NodeBroadcast {
  let redis: RedisConnection | undefined;
  const connect = async (): Promise<RedisConnection> => (redis ??= await connectRedis(redisUrl, prefix, "alveare-cli"));
  return {
    ready: async () => {
      try {
        await connect();
      } catch (error) {
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
