import { randomUUID } from "node:crypto";
import type { Redis } from "ioredis";
import type { AccountStore, KeyLookup } from "../../store/store.js";
import { GroupWriter } from "../../group-writer.js";
import type { KeyCache } from "../backends.js";
import { isRedisConnectionFailure, redisClient, type RedisConnection } from "./connection.js";

/** Verified keys kept at most; past it the cache starts afresh (a flood of distinct keys cannot grow it). */
const MAX_CACHED = 10_000;
/**
 * The cache starts afresh at least this often, whatever the generation says: a node that never sees a bump (given
 * another Redis than the other nodes by mistake, or a change saved while Redis was away whose nodes were never told)
 * follows a revocation within this long instead of never. Each active key costs one database read per period.
 */
const MAX_CACHE_AGE_MS = 60_000;

/**
 * Verified keys cached in this process, under a generation kept in Redis.
 * Every lookup reads the generation first (a GET sent after it arrived), so a key revoked, an
 * account suspended or a plan changed on any node or by the CLI is seen by
 * every node on its very next request: no TTL window. The broadcast on the
 * channel only drops the copies earlier, before the next lookup has to. As a
 * safety net the cache also starts afresh every MAX_CACHE_AGE_MS.
 */
export class RedisKeyCache implements KeyCache {
  private readonly cached = new Map<string, KeyLookup>();
  private generation: string | null | undefined;
  private clearedAt = performance.now();
  private subscriber: Redis | undefined;

  constructor(
    private readonly connection: RedisConnection,
    private readonly store: Pick<AccountStore, "findKeyByHash">,
    private readonly maxAgeMs = MAX_CACHE_AGE_MS,
  ) {}

  private get generationKey(): string {
    return `${this.connection.prefix}keys:generation`;
  }
  private get channel(): string {
    return `${this.connection.prefix}keys:invalidated`;
  }

  /** Listens for invalidations from other nodes; `url` is the one the connection was made with. */
  async listen(url: string): Promise<void> {
    const subscriber = redisClient(url, "alveare-invalidations");
    // A subscriber's commands may wait for a reconnect.
    subscriber.options.enableOfflineQueue = true;
    // It subscribes again after each reconnect here, not by ioredis: ioredis's own re-subscription
    // leaves its promise unhandled, so a close before Redis answered it was an unhandled rejection.
    // One that fails is no loss of correctness: every lookup reads the generation anyway.
    subscriber.options.autoResubscribe = false;
    let subscribed = false;
    subscriber.on("message", () => this.cached.clear());
    subscriber.on("ready", () => {
      // Messages sent while it was away are lost: drop everything on every (re)connect.
      this.cached.clear();
      if (subscribed) subscriber.subscribe(this.channel).catch(() => undefined);
    });
    try {
      await subscriber.connect();
      await subscriber.subscribe(this.channel);
    } catch (error) {
      // Not kept: it would go on reconnecting for ever behind a node that failed to start.
      subscriber.disconnect();
      throw error;
    }
    subscribed = true;
    this.subscriber = subscriber;
  }

  /**
   * One GET serves every lookup that arrived before it was sent: a lookup
   * arriving while one is in flight waits for the next, so the generation it
   * sees was always read after it arrived (a change committed before the
   * request is never missed), and under load the nodes read it once per
   * round trip rather than once per request.
   */
  private readonly generationReads = new GroupWriter<null, string | null>(async (lookups) => {
    const generation = await this.connection.redis.get(this.generationKey);
    return lookups.map(() => generation);
  }, isRedisConnectionFailure);

  async find(hash: string): Promise<KeyLookup | undefined> {
    const generation = await this.generationReads.add(null);
    const now = performance.now();
    if (generation !== this.generation || this.cached.size >= MAX_CACHED || now - this.clearedAt >= this.maxAgeMs) {
      this.cached.clear();
      this.clearedAt = now;
      this.generation = generation;
    }
    const hit = this.cached.get(hash);
    if (hit !== undefined) return hit;
    const found = await this.store.findKeyByHash(hash);
    // Cached only while the generation read before the lookup is current: a change
    // committed during the lookup has bumped it, and the next request reads again.
    if (found !== undefined && this.generation === generation) this.cached.set(hash, found);
    return found;
  }

  async invalidate(): Promise<void> {
    try {
      await bumpKeyGeneration(this.connection);
    } finally {
      // This node's own copies go whether or not the others were told: the generation it holds may never move.
      this.cached.clear();
    }
  }

  async close(): Promise<void> {
    this.subscriber?.disconnect();
  }
}

/** A write that changes nothing (the key is never set), as cheap as a PING: a replica refuses it (READONLY), as any write. */
export async function probeWrite(connection: RedisConnection): Promise<void> {
  await connection.redis.del(`${connection.prefix}writable-probe`);
}

/** How often a saved change is told to the nodes, and the wait between tries (by the CLI and by a node alike). */
const ANNOUNCE_ATTEMPTS = 3;
const ANNOUNCE_RETRY_MS = 300;

/**
 * Tells the nodes of a saved change: `announce` tried up to ANNOUNCE_ATTEMPTS times while it fails as `retryable`
 * says (another failure is thrown at once). Resolves to undefined once told, else to the last failure.
 */
export async function announceChange(announce: () => Promise<void>, retryable: (error: unknown) => boolean): Promise<unknown> {
  let failure: unknown;
  for (let attempt = 0; attempt < ANNOUNCE_ATTEMPTS; attempt++) {
    if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, ANNOUNCE_RETRY_MS));
    try {
      await announce();
      return undefined;
    } catch (error) {
      if (!retryable(error)) throw error;
      failure = error;
    }
  }
  return failure;
}

/**
 * Bumps the generation every node checks before using a cached key, then tells
 * the nodes to drop their copies. Called after the change is committed to the
 * store (CLI, admin API, dashboard).
 */
export async function bumpKeyGeneration(connection: RedisConnection): Promise<void> {
  const { redis, prefix } = connection;
  // A fresh random value, never a counter: a counter restarting from nothing after a Redis restart could repeat a value some node still holds.
  await redis.set(`${prefix}keys:generation`, randomUUID());
  await redis.publish(`${prefix}keys:invalidated`, "1");
}
