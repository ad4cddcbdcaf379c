import { connectRedis, type RedisConnection } from "../gate/redis/connection.js";
import { announceChange, bumpKeyGeneration, probeWrite } from "../gate/redis/key-cache.js";
import { RuntimeError } from "./exit.js";

/** How a CLI command that changes keys or accounts tells the running nodes, through their Redis. */
export interface NodeBroadcast {
  /** Before writing: Redis takes a write (reached, and no replica), or refuses with "nothing changed". */
  ready(): Promise<void>;
  /** After writing: bumps the key generation (a few tries), or says the change was saved but not told. */
  changed(): Promise<void>;
  close(): void;
}

/**
 * Several nodes: a committed change must reach every node's key cache, so the
 * CLI bumps the shared generation. It checks Redis takes a write before writing
 * (an unreachable Redis, or a replica, changes nothing) and retries the bump
 * after; running the command again bumps again.
 */
export function nodeBroadcast(redisUrl: string, prefix: string): NodeBroadcast {
  let redis: RedisConnection | undefined;
  const connect = async (): Promise<RedisConnection> => (redis ??= await connectRedis(redisUrl, prefix, "alveare-cli"));
  return {
    ready: async () => {
      try {
        await probeWrite(await connect());
      } catch (error) {
        throw new RuntimeError(`${(error as Error).message}; nothing changed (the running nodes could not be told)`);
      }
    },
    changed: async () => {
      const failure = await announceChange(
        async () => bumpKeyGeneration(await connect()),
        () => true,
      );
      if (failure !== undefined)
        throw new RuntimeError(
          `saved, but the running nodes were not told (${(failure as Error).message}); run the command again once Redis answers`,
        );
    },
    close: () => redis?.redis.disconnect(),
  };
}
