import { randomUUID } from "node:crypto";
import type { Acquisition, CounterStep, KeyLimits, LimitName, LimitReport, RateLimiter } from "../backends.js";
import { CONCURRENCY_RETRY_MS } from "../in-process-limiter.js";
import { mayHaveRun, timedOut, type RedisConnection } from "./connection.js";
import { LUA_NOW, LuaScript } from "./script.js";

/**
 * How long a concurrency slot outlives its node: a live node renews its slots
 * well before, a dead node's slots free themselves after it.
 */
export const LEASE_TTL_MS = 30_000;
const RENEW_EVERY_MS = LEASE_TTL_MS / 3;
/** How soon an end Redis did not take is tried again. */
export const END_RETRY_MS = 1000;

/** A request's end that Redis did not take (it was unreachable), kept to be tried again. */
interface UnendedLease {
  keys: string[];
  args: [id: string, tokens: number, how: "settle" | "cancel"];
  /** When it no longer matters (Date.now()): its slot's lease has expired and its reservation left the token window. */
  moot: number;
}

/**
 * Per key: the request window (sorted set of admission times), the token
 * window (sorted set of admissions plus a hash of their tokens and the sum),
 * the concurrency slots (sorted set of leases by expiry) and the request
 * limit the window was counted under. The checks mirror the in-process
 * limiter's, so both answer the same, headers included.
 * ARGV: now, mode, request limit, request window, token limit (-1: none),
 * token window, reservation, concurrency cap (-1: none), lease id, lease ttl,
 * and with a monthly counter as KEYS[6] (a CounterStep), its limit: a request
 * the windows let in is counted there too, and is refused, counted nowhere,
 * when the counter is at the limit or missing (the last two values returned
 * say which).
 */
const LIMIT_SCRIPT = new LuaScript(`${LUA_NOW}
local acquire = ARGV[2] == 'acquire'
local reqLimit, reqWindow = tonumber(ARGV[3]), tonumber(ARGV[4])
local tokLimit, tokWindow, reserve = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local maxConc, id, leaseTtl = tonumber(ARGV[8]), ARGV[9], tonumber(ARGV[10])
local req, tok, tokens, conc, meta = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]

-- A plan change starts the request window afresh at its new size.
local known = redis.call('HGET', meta, 'limit')
if known and tonumber(known) ~= reqLimit then redis.call('DEL', req) end

redis.call('ZREMRANGEBYSCORE', req, '-inf', now - reqWindow)
local count = redis.call('ZCARD', req)
local reqOk, reqRemaining, reqRetry, reqReset = 1, reqLimit - count, 0, 0
local newest = redis.call('ZRANGE', req, -1, -1, 'WITHSCORES')
if #newest > 0 then reqReset = tonumber(newest[2]) + reqWindow - now end
if count >= reqLimit then
  reqOk, reqRemaining = 0, 0
  local oldest = redis.call('ZRANGE', req, count - reqLimit, count - reqLimit, 'WITHSCORES')
  reqRetry = tonumber(oldest[2]) + reqWindow - now
end
if reqReset < 0 then reqReset = 0 end

local tokOk, tokRemaining, tokRetry, tokReset = 1, 0, 0, 0
if tokLimit >= 0 then
  local used = tonumber(redis.call('HGET', tokens, 'used') or '0')
  local gone = redis.call('ZRANGEBYSCORE', tok, '-inf', now - tokWindow)
  if #gone > 0 then
    for _, e in ipairs(gone) do
      used = used - tonumber(redis.call('HGET', tokens, e) or '0')
      redis.call('HDEL', tokens, e)
    end
    redis.call('ZREMRANGEBYSCORE', tok, '-inf', now - tokWindow)
    redis.call('HSET', tokens, 'used', used)
  end
  local last = redis.call('ZRANGE', tok, -1, -1, 'WITHSCORES')
  if #last > 0 then tokReset = math.max(0, tonumber(last[2]) + tokWindow - now) end
  if used + reserve <= tokLimit then
    tokRemaining = tokLimit - used
  else
    tokOk, tokRemaining, tokRetry = 0, math.max(0, tokLimit - used), tokReset
    -- The reservation fits once enough of the oldest entries have left the window.
    local entries = redis.call('ZRANGE', tok, 0, -1, 'WITHSCORES')
    local freed = 0
    for i = 1, #entries, 2 do
      freed = freed + tonumber(redis.call('HGET', tokens, entries[i]) or '0')
      if used - freed + reserve <= tokLimit then
        tokRetry = tonumber(entries[i + 1]) + tokWindow - now
        break
      end
    end
  end
end

local concOk = 1
if acquire and maxConc >= 0 then
  redis.call('ZREMRANGEBYSCORE', conc, '-inf', now)
  if redis.call('ZCARD', conc) >= maxConc then concOk = 0 end
end

-- A monthly counter at its limit (1), or not there to say (2), refuses what the windows would let in,
-- counting nothing in them: a request refused for the quota must take no place another is refused for.
local full = 0
if acquire and reqOk == 1 and tokOk == 1 and concOk == 1 and KEYS[6] then
  local used = redis.call('GET', KEYS[6])
  if not used then full = 2 elseif tonumber(used) >= tonumber(ARGV[11]) then full = 1 end
end

local granted = 0
if acquire and reqOk == 1 and tokOk == 1 and concOk == 1 and full == 0 then
  granted = 1
  local keep = math.max(reqWindow, tokWindow) * 2 + 60000
  redis.call('ZADD', req, now, id)
  redis.call('PEXPIRE', req, keep)
  redis.call('HSET', meta, 'limit', reqLimit)
  redis.call('PEXPIRE', meta, keep)
  if tokLimit >= 0 then
    redis.call('ZADD', tok, now, id)
    redis.call('HSET', tokens, id, reserve)
    redis.call('HINCRBY', tokens, 'used', reserve)
    redis.call('PEXPIRE', tok, keep)
    redis.call('PEXPIRE', tokens, keep)
  end
  if maxConc >= 0 then
    redis.call('ZADD', conc, now + leaseTtl, id)
    redis.call('PEXPIRE', conc, leaseTtl * 2)
  end
end
local counted = 0
if granted == 1 and KEYS[6] then
  redis.call('INCR', KEYS[6])
  counted = 1
end
return {granted, reqOk, reqRemaining, reqRetry, reqReset, tokOk, tokRemaining, tokRetry, tokReset, concOk, counted, full}
`);

/** Ends a lease: frees its slot, settles its tokens (an entry already out of the window stays out), and on cancel takes back its admission. */
const END_SCRIPT = new LuaScript(`
local req, tok, tokens, conc = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id, real, cancel = ARGV[1], tonumber(ARGV[2]), ARGV[3] == 'cancel'
redis.call('ZREM', conc, id)
local reserved = redis.call('HGET', tokens, id)
if reserved then
  redis.call('HSET', tokens, id, real)
  redis.call('HINCRBY', tokens, 'used', real - tonumber(reserved))
end
if cancel then redis.call('ZREM', req, id) end
return 1
`);

/** Pushes the expiry of this node's live slots forward. */
const RENEW_SCRIPT = new LuaScript(`${LUA_NOW}
local ttl = tonumber(ARGV[2])
for i, conc in ipairs(KEYS) do
  if redis.call('ZSCORE', conc, ARGV[i + 2]) then
    redis.call('ZADD', conc, now + ttl, ARGV[i + 2])
    redis.call('PEXPIRE', conc, ttl * 2)
  end
end
return 1
`);

/**
 * Per-key limits in Redis: one script checks and counts the request window,
 * the token window and the concurrency cap together, so the limits are exact
 * across every node sharing the Redis. Concurrency slots are leases: a node
 * that dies without ending its requests frees their slots after LEASE_TTL_MS.
 */
export class RedisRateLimiter implements RateLimiter {
  /** Slots this node holds, by lease id: renewed until their requests end. */
  private readonly held = new Map<string, string>();
  private readonly renewal: NodeJS.Timeout;
  /**
   * Ends Redis did not take, by lease id: tried again every END_RETRY_MS and before this node's next
   * admission, so a short outage does not keep finished requests' slots and reservations (a key locked
   * out for a lease or a window after its requests ended). Ending twice is harmless: the script is idempotent.
   */
  private readonly unended = new Map<string, UnendedLease>();
  private retryTimer: NodeJS.Timeout | undefined;
  private retrying: Promise<void> | undefined;
  private closed = false;

  /** `clock` in ms for tests; by default Redis's own clock, the same for every node. */
  constructor(
    private readonly connection: RedisConnection,
    private readonly clock?: () => number,
  ) {
    this.renewal = setInterval(() => void this.renew(), RENEW_EVERY_MS);
    this.renewal.unref();
  }

  private keys(keyId: string): string[] {
    // One hash tag per key: a Redis Cluster would keep a key's windows on one shard.
    const base = `${this.connection.prefix}rl:{${keyId}}:`;
    return [`${base}req`, `${base}tok`, `${base}tokens`, `${base}conc`, `${base}meta`];
  }

  private now(): string {
    return this.clock === undefined ? "" : String(this.clock());
  }

  private async run(
    mode: "peek" | "acquire",
    keyId: string,
    limits: KeyLimits,
    reserve: number,
    id: string,
    counter?: CounterStep,
  ): Promise<number[]> {
    const args = [
      this.now(),
      mode,
      limits.requests.limit,
      limits.requests.windowMs,
      limits.tokens?.limit ?? -1,
      limits.tokens?.windowMs ?? 0,
      reserve,
      limits.maxConcurrent ?? -1,
      id,
      LEASE_TTL_MS,
    ];
    const keys = this.keys(keyId);
    if (counter !== undefined) {
      // Another hash tag than the key's windows: one script over both needs a single Redis, not a Cluster.
      keys.push(counter.key);
      args.push(counter.limit);
    }
    return (await LIMIT_SCRIPT.run(this.connection.redis, keys, args)) as number[];
  }

  async peek(keyId: string, limits: KeyLimits): Promise<LimitReport> {
    const r = await this.run("peek", keyId, limits, 0, "");
    return reportOf(r, limits);
  }

  async acquire(keyId: string, limits: KeyLimits, reserveTokens: number, counter?: CounterStep): Promise<Acquisition> {
    // Ends still owed go first: Redis runs one connection's commands in order, so once it is back the
    // first admission sees the slots they free, without waiting a round trip for them.
    if (this.unended.size > 0) void this.retryEnds();
    const id = randomUUID();
    let r: number[];
    try {
      r = await this.run("acquire", keyId, limits, reserveTokens, id, counter);
    } catch (error) {
      // Redis may have run the script and only its answer was lost (a command timeout, a connection dropped
      // under it): its client is refused, so what it may have counted (a slot held for a whole lease, a window
      // entry, a reservation) is taken back as a cancel's. Sent whole after the script on the same connection, it
      // runs after it, even where Redis has forgotten the end script. After a timeout the connection still stands,
      // so the cancel is sent once, behind the script: owing it too would re-send every timed-out admission's
      // cancel each round of a long partition. A dropped connection's is owed until Redis takes it. The monthly
      // counter is the ledger's to correct (its reseed).
      const cancel: UnendedLease = { keys: this.keys(keyId).slice(0, 4), args: [id, 0, "cancel"], moot: this.mootAt(limits, "cancel") };
      if (timedOut(error)) void END_SCRIPT.runInOrder(this.connection.redis, cancel.keys, cancel.args).catch(() => undefined);
      else if (mayHaveRun(error)) void this.endInRedis(id, cancel, true);
      throw error;
    }
    const report = reportOf(r, limits);
    if (r[11] === 1 || r[11] === 2) return { granted: false, report, refusedBy: "monthly", retryAfterMs: 0, counterMissing: r[11] === 2 };
    if (r[0] !== 1) {
      const refusals: Array<[LimitName, number]> = [];
      if (r[1] !== 1) refusals.push(["requests", r[3]!]);
      if (r[5] !== 1) refusals.push(["tokens", r[7]!]);
      if (r[9] !== 1) refusals.push(["concurrency", CONCURRENCY_RETRY_MS]);
      // The longest of the waits: after it, every limit that refused lets the request in.
      return { granted: false, report, refusedBy: refusals[0]![0], retryAfterMs: Math.max(...refusals.map(([, ms]) => ms)) };
    }
    const keys = this.keys(keyId);
    if (limits.maxConcurrent !== undefined) this.held.set(id, keys[3]!);
    let open = true;
    // Without a token or concurrency cap a settled lease holds nothing in Redis: no round trip for it.
    const holdsNothing = limits.maxConcurrent === undefined && limits.tokens === undefined;
    const end = async (tokens: number, how: "settle" | "cancel"): Promise<void> => {
      if (!open) return;
      open = false;
      this.held.delete(id);
      if (how === "settle" && holdsNothing) return;
      await this.endInRedis(id, { keys: keys.slice(0, 4), args: [id, tokens, how], moot: this.mootAt(limits, how) });
    };
    return {
      granted: true,
      report: {
        requests: { limit: limits.requests.limit, remaining: report.requests.remaining - 1, resetMs: limits.requests.windowMs },
        tokens: report.tokens &&
          limits.tokens && { limit: limits.tokens.limit, remaining: report.tokens.remaining - reserveTokens, resetMs: limits.tokens.windowMs },
      },
      lease: { settle: (used) => end(used, "settle"), cancel: () => end(0, "cancel") },
      counted: r[10] === 1,
    };
  }

  /** When an end no longer matters: its slot's lease has expired, its reservation (and, for a cancel, its admission) left the windows. */
  private mootAt(limits: KeyLimits, how: "settle" | "cancel"): number {
    return Date.now() + Math.max(LEASE_TTL_MS, limits.tokens?.windowMs ?? 0, how === "cancel" ? limits.requests.windowMs : 0);
  }

  /**
   * Runs one end; one Redis did not take is kept and tried again (the request is already answered: it
   * must not fail). A retry is sent whole (`runInOrder`), so it reaches Redis before an admission sent
   * after it even when Redis has forgotten its scripts.
   */
  private async endInRedis(id: string, lease: UnendedLease, retry = false): Promise<boolean> {
    try {
      if (retry) await END_SCRIPT.runInOrder(this.connection.redis, lease.keys, lease.args);
      else await END_SCRIPT.run(this.connection.redis, lease.keys, lease.args);
      this.unended.delete(id);
      return true;
    } catch {
      this.unended.set(id, lease);
      this.armRetry();
      return false;
    }
  }

  private armRetry(): void {
    if (this.closed || this.retryTimer !== undefined) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      void this.retryEnds();
    }, END_RETRY_MS).unref();
  }

  /** Sends every end still owed at once (in the caller's tick); one round at a time, and another timer after it while some are owed. */
  private retryEnds(): Promise<void> {
    if (this.retrying !== undefined) return this.retrying;
    const now = Date.now();
    const sent: Array<Promise<boolean>> = [];
    for (const [id, lease] of [...this.unended]) {
      if (lease.moot <= now) this.unended.delete(id);
      else sent.push(this.endInRedis(id, lease, true));
    }
    this.retrying = Promise.all(sent).then(() => {
      this.retrying = undefined;
      // Ends that failed while this round was out (their timer may have fired into it) are tried again too.
      if (this.unended.size > 0) this.armRetry();
    });
    return this.retrying;
  }

  private async renew(): Promise<void> {
    if (this.held.size === 0) return;
    const entries = [...this.held];
    await RENEW_SCRIPT.run(
      this.connection.redis,
      entries.map(([, key]) => key),
      [this.now(), LEASE_TTL_MS, ...entries.map(([id]) => id)],
    ).catch(() => undefined);
  }

  /** Ends Redis has not taken yet, kept and sent again until it does (or they no longer matter). */
  get owed(): number {
    return this.unended.size;
  }

  /**
   * Stops renewing and retrying, after one last try (of at most END_RETRY_MS) of the ends still owed.
   * Resolves to how many are still owed then: those run out with their lease and window.
   */
  async close(): Promise<number> {
    this.closed = true;
    clearInterval(this.renewal);
    clearTimeout(this.retryTimer);
    if (this.unended.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<void>((resolve) => (timer = setTimeout(resolve, END_RETRY_MS)));
      await Promise.race([this.retryEnds(), deadline]);
      clearTimeout(timer);
    }
    return this.unended.size;
  }
}

function reportOf(r: number[], limits: KeyLimits): LimitReport {
  return {
    requests: { limit: limits.requests.limit, remaining: r[2]!, resetMs: r[4]! },
    tokens: limits.tokens && { limit: limits.tokens.limit, remaining: r[6]!, resetMs: r[8]! },
  };
}
