import type { FailureCounter, FailureLogLimits } from "../backends.js";
import { type RedisConnection } from "./connection.js";
import { LuaScript } from "./script.js";

/** Drops failures out of the window; 0 when the key may try, else the ms until the oldest counted failure leaves. */
const RETRY_SCRIPT = new LuaScript(`
local now, window, allowed = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count < allowed then return 0 end
local oldest = redis.call('ZRANGE', KEYS[1], count - allowed, count - allowed, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + window - now)
`);

/** Records a failure and keeps only the last `allowed`: a key never holds more than the check needs. */
const ADD_SCRIPT = new LuaScript(`
local now, window, allowed, id = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
redis.call('ZADD', KEYS[1], now, id)
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -allowed - 1)
redis.call('PEXPIRE', KEYS[1], window)
return 1
`);

let sequence = 0;

/**
 * Failed sign-ins (or admin-token guesses) per key in Redis, so every node
 * counts the same failures. Each key expires with its window, so a flood of
 * distinct keys cannot grow it without bound.
 */
export class RedisFailureCounter implements FailureCounter {
  readonly size = 0;

  constructor(
    private readonly connection: RedisConnection,
    private readonly kind: string,
    private readonly limits: FailureLogLimits,
  ) {}

  private key(key: string): string {
    return `${this.connection.prefix}failures:${this.kind}:${key}`;
  }

  async retryAfterMs(key: string, now: number): Promise<number> {
    return (await RETRY_SCRIPT.run(this.connection.redis, [this.key(key)], [now, this.limits.windowMs, this.limits.allowed])) as number;
  }

  async add(key: string, now: number): Promise<void> {
    const id = `${now}:${process.pid}:${sequence++}:${Math.random()}`;
    await ADD_SCRIPT.run(this.connection.redis, [this.key(key)], [now, this.limits.windowMs, this.limits.allowed, id]);
  }

  async clear(key: string): Promise<void> {
    await this.connection.redis.del(this.key(key));
  }
}
