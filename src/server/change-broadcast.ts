import { errors } from "../errors.js";
import { isRedisConnectionFailure } from "../gate/redis/connection.js";
import { announceChange } from "../gate/redis/key-cache.js";
import type { RedisBackends } from "../gate/redis/shared-backends.js";

/** How the admin API and the dashboard tell the other nodes of a change to keys or accounts (see AccountService). */
export interface ChangeBroadcast {
  /** Before saving: Redis takes a write, or 503 saying nothing was changed. */
  ready(): Promise<void>;
  /** After saving: the key generation is bumped (a few tries), or 503 saying the change was saved but not told. */
  changed(): Promise<void>;
}

/**
 * A node's broadcast, held to the CLI's rule (see nodeBroadcast): a change the other nodes could not be told of
 * is not saved, since they would serve a revoked key from their caches meanwhile; one saved while Redis went away
 * says so, never "nothing happened". Any failure but an outage stays what it is (a bug: 500).
 */
export function changeBroadcast(redis: Pick<RedisBackends, "writable" | "invalidate">): ChangeBroadcast {
  return {
    ready: async () => {
      try {
        await redis.writable();
      } catch (error) {
        throw isRedisConnectionFailure(error) ? errors.dependencyUnavailable("redis", error, "change") : error;
      }
    },
    changed: async () => {
      const failure = await announceChange(() => redis.invalidate(), isRedisConnectionFailure);
      if (failure !== undefined) throw errors.dependencyUnavailable("redis", failure, "announcement");
    },
  };
}
