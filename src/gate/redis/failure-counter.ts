import { BUSY_RETRY_MS, type AttemptResult, type FailureCounter, type FailureLogLimits } from "../backends.js";
import { mayHaveRun, type RedisConnection } from "./connection.js";
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
 * Starts an attempt on every key, atomically. KEYS come in pairs: a key's
 * failures (a sorted set, scored by time) and its attempts being checked (a
 * sorted set of attempt ids, scored by when their place lapses). Drops failures
 * that left the window and places that lapsed; when a key's failures fill
 * `allowed`, returns the ms until the oldest counted one leaves; when failures
 * and attempts in flight together fill it, returns -1 (busy); else takes a place
 * (ARGV[5], the attempt's id) on every key and returns 0. A place lapses on its
 * own, so the places of a node that died mid-check come back.
 */
const ATTEMPT_SCRIPT = new LuaScript(`
local now, window, allowed, pendingTtl, id = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local wait, busy = 0, false
for i = 1, #KEYS, 2 do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - window)
  redis.call('ZREMRANGEBYSCORE', KEYS[i + 1], '-inf', now)
  local count = redis.call('ZCARD', KEYS[i])
  if count >= allowed then
    local oldest = redis.call('ZRANGE', KEYS[i], count - allowed, count - allowed, 'WITHSCORES')
    wait = math.max(wait, tonumber(oldest[2]) + window - now, 1)
  elseif count + redis.call('ZCARD', KEYS[i + 1]) >= allowed then
    busy = true
  end
end
if wait > 0 then return wait end
if busy then return -1 end
for i = 2, #KEYS, 2 do
  redis.call('ZADD', KEYS[i], now + pendingTtl, id)
  redis.call('PEXPIRE', KEYS[i], pendingTtl)
end
return 0
`);

/**
 * Ends an attempt on every key pair: frees its place (none when it never took
 * one) and, when ARGV[4] is 1, records the failure (keeping the last `allowed`).
 */
const SETTLE_SCRIPT = new LuaScript(`
local now, window, allowed, failed, id = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], ARGV[5]
for i = 1, #KEYS, 2 do
  redis.call('ZREM', KEYS[i + 1], id)
  if failed == '1' then
    redis.call('ZADD', KEYS[i], now, id)
    redis.call('ZREMRANGEBYRANK', KEYS[i], 0, -allowed - 1)
    redis.call('PEXPIRE', KEYS[i], window)
  end
end
return 1
`);

/** How long a place taken by an attempt outlives a node that died before settling it. */
const PENDING_TTL_MS = 60_000;

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

  /**
   * Each key's failures and its attempts in flight, in the pairs the scripts expect. (The attempts' set has
   * a name of its own: nodes of a release that kept a counter under `failures-pending` may run beside it.)
   */
  private pairs(keys: readonly string[]): string[] {
    return keys.flatMap((key) => [this.key(key), `${this.connection.prefix}failures-attempts:${this.kind}:${key}`]);
  }

  async attempt(keys: readonly string[], now: number): Promise<AttemptResult> {
    const id = `${now}:${process.pid}:${sequence++}:${Math.random()}`;
    let answer: number;
    try {
      answer = (await ATTEMPT_SCRIPT.run(this.connection.redis, this.pairs(keys), [
        now,
        this.limits.windowMs,
        this.limits.allowed,
        PENDING_TTL_MS,
        id,
      ])) as number;
    } catch (error) {
      // Redis may have taken the places and only its answer was lost: the sign-in is refused (503), so its places
      // are freed, sent whole behind the script on the same connection. Freeing a place never taken does nothing.
      if (mayHaveRun(error)) {
        void SETTLE_SCRIPT.runInOrder(this.connection.redis, this.pairs(keys), [now, this.limits.windowMs, this.limits.allowed, 0, id]).catch(
          () => undefined,
        );
      }
      throw error;
    }
    if (answer === 0) return { counted: true, id };
    return answer < 0 ? { counted: false, retryAfterMs: BUSY_RETRY_MS, busy: true } : { counted: false, retryAfterMs: answer, busy: false };
  }

  async settle(keys: readonly string[], id: string, failed: boolean, now: number): Promise<void> {
    await SETTLE_SCRIPT.run(this.connection.redis, this.pairs(keys), [now, this.limits.windowMs, this.limits.allowed, failed ? 1 : 0, id]);
  }

  async clear(key: string): Promise<void> {
    await this.connection.redis.del(this.key(key));
  }
}
