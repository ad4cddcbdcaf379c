import type { AttemptResult, FailureCounter, FailureLogLimits } from "../backends.js";
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

/**
 * One attempt on every key in KEYS, atomically: drops what left the window; when
 * a key holds its `allowed` attempts already, counts nothing and returns the ms
 * until its oldest counted one leaves; else records the attempt on every key
 * (keeping only the last `allowed`) and returns 0.
 */
const ATTEMPT_SCRIPT = new LuaScript(`
local now, window, allowed, id = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local wait = 0
for _, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  local count = redis.call('ZCARD', key)
  if count >= allowed then
    local oldest = redis.call('ZRANGE', key, count - allowed, count - allowed, 'WITHSCORES')
    wait = math.max(wait, tonumber(oldest[2]) + window - now, 1)
  end
end
if wait > 0 then return wait end
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, now, id)
  redis.call('ZREMRANGEBYRANK', key, 0, -allowed - 1)
  redis.call('PEXPIRE', key, window)
end
return 0
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

  async attempt(keys: readonly string[], now: number): Promise<AttemptResult> {
    const id = `${now}:${process.pid}:${sequence++}:${Math.random()}`;
    const wait = (await ATTEMPT_SCRIPT.run(
      this.connection.redis,
      keys.map((key) => this.key(key)),
      [now, this.limits.windowMs, this.limits.allowed, id],
    )) as number;
    return wait > 0 ? { counted: false, retryAfterMs: wait } : { counted: true, id };
  }

  async withdraw(keys: readonly string[], id: string): Promise<void> {
    await Promise.all(keys.map((key) => this.connection.redis.zrem(this.key(key), id)));
  }

  async clear(key: string): Promise<void> {
    await this.connection.redis.del(this.key(key));
  }
}
