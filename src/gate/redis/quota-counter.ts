import { periodKeyAt } from "../../metering/billing-period.js";
import { countsAgainstQuota } from "../../metering/counting-rule.js";
import { UnrecordedOutcomeError, type LedgerStore } from "../../store/store.js";
import type { CounterStep, QuotaCounter, QuotaRequest, QuotaTicket } from "../backends.js";
import type { Outcome } from "../gate.js";
import { admissionRecord, completionRecord } from "../store-backends.js";
import { type RedisConnection } from "./connection.js";
import { LuaScript } from "./script.js";

/**
 * How long a counter lives before it is seeded again from the ledger: what it
 * could drift from the ledger by (a node killed before giving back its
 * unfinished requests, which the survivors settle in the ledger) heals then.
 */
export const QUOTA_RESEED_MS = 60_000;

/** How often a counter at its limit checks the ledger for requests given back meanwhile. */
const LEDGER_CHECK_MS = 1000;
/** Counters remembered for that; past it the memory starts over (a few more ledger reads). */
const LEDGER_CHECKS_KEPT = 10_000;

/** Counts one request unless the counter is at the limit; -1 when there is no counter yet (seed it first). */
const TAKE_SCRIPT = new LuaScript(`
local used = redis.call('GET', KEYS[1])
if not used then return -1 end
if tonumber(used) >= tonumber(ARGV[1]) then return 0 end
redis.call('INCR', KEYS[1])
return 1
`);

/** Gives one request back, never below zero, and only to a counter that still exists (a reseeded one already knows). */
const GIVE_BACK_SCRIPT = new LuaScript(`
local used = redis.call('GET', KEYS[1])
if used and tonumber(used) > 0 then redis.call('DECR', KEYS[1]) end
return 1
`);

/**
 * The monthly quota per account, mode and period in Redis, in front of the
 * ledger: the counter refuses at the limit in one atomic step on any node, so
 * a burst at the limit never reaches the database; the ledger's own limit
 * check stays authoritative, and the counter is seeded from the ledger
 * whenever it is missing (a Redis restart loses nothing) and reseeded when the
 * two disagree.
 */
export class RedisQuotaCounter implements QuotaCounter {
  /** When each counter last refused after asking the ledger: a counter at its limit asks at most once a second. */
  private readonly ledgerChecked = new Map<string, number>();
  /** The ledger checks under way, by counter: requests refused while one is out wait for its answer. */
  private readonly ledgerChecking = new Map<string, Promise<boolean>>();

  constructor(
    private readonly connection: RedisConnection,
    private readonly ledger: Pick<LedgerStore, "admit" | "complete" | "periodUsage">,
    private readonly now: () => Date = () => new Date(),
  ) {}

  private key(accountId: string, mode: string, period: string): string {
    return `${this.connection.prefix}quota:{${accountId}}:${mode}:${period}`;
  }

  /** Sets the counter to the ledger's count: only if missing (`NX`), or over whatever it holds. */
  private async seed(key: string, accountId: string, mode: QuotaRequest["caller"]["mode"], period: string, overwrite: boolean): Promise<void> {
    const usage = await this.ledger.periodUsage(accountId, mode, period);
    const { redis } = this.connection;
    if (overwrite) await redis.set(key, usage.requests, "PX", QUOTA_RESEED_MS);
    else await redis.set(key, usage.requests, "PX", QUOTA_RESEED_MS, "NX");
  }

  /**
   * A full counter may be behind the ledger: survivors gave back a dead node's
   * unfinished requests in the ledger only. Before refusing, the ledger is
   * asked (once a second per counter) and, when it has room, the counter is
   * set to it. Requests refused while that check is out share its answer:
   * a burst at a stale counter is refused together, and each of them, not
   * only the one that asked, may then take the room the ledger has (the
   * counter decides which, one at a time).
   */
  private ledgerHasRoom(key: string, accountId: string, mode: QuotaRequest["caller"]["mode"], period: string, limit: number): Promise<boolean> {
    const pending = this.ledgerChecking.get(key);
    if (pending !== undefined) return pending;
    const now = Date.now();
    if (now - (this.ledgerChecked.get(key) ?? -Infinity) < LEDGER_CHECK_MS) return Promise.resolve(false);
    if (this.ledgerChecked.size >= LEDGER_CHECKS_KEPT) this.ledgerChecked.clear();
    this.ledgerChecked.set(key, now);
    const check = (async () => {
      const usage = await this.ledger.periodUsage(accountId, mode, period);
      if (usage.requests >= limit) return false;
      await this.connection.redis.set(key, usage.requests, "PX", QUOTA_RESEED_MS);
      return true;
    })().finally(() => this.ledgerChecking.delete(key));
    this.ledgerChecking.set(key, check);
    return check;
  }

  /** The limiter counts in this counter in its own script: one round trip per admission instead of two. */
  counterStep(r: QuotaRequest): CounterStep {
    return { key: this.key(r.caller.accountId, r.caller.mode, periodKeyAt(r.at)), limit: r.limit };
  }

  async hasRoom(r: QuotaRequest, counterMissing: boolean): Promise<boolean> {
    const { accountId, mode } = r.caller;
    const period = periodKeyAt(r.at);
    const key = this.key(accountId, mode, period);
    if (!counterMissing) return this.ledgerHasRoom(key, accountId, mode, period, r.limit);
    await this.seed(key, accountId, mode, period, false);
    return true;
  }

  async take(r: QuotaRequest, counted = false): Promise<QuotaTicket | undefined> {
    const period = periodKeyAt(r.at);
    const { accountId, mode } = r.caller;
    const key = this.key(accountId, mode, period);
    const { redis } = this.connection;
    let taken = counted ? 1 : ((await TAKE_SCRIPT.run(redis, [key], [r.limit])) as number);
    if (taken === -1) {
      await this.seed(key, accountId, mode, period, false);
      taken = (await TAKE_SCRIPT.run(redis, [key], [r.limit])) as number;
    }
    if (taken === 0 && (await this.ledgerHasRoom(key, accountId, mode, period, r.limit))) {
      taken = (await TAKE_SCRIPT.run(redis, [key], [r.limit])) as number;
    }
    if (taken !== 1) return undefined;

    const giveBack = (): Promise<unknown> => GIVE_BACK_SCRIPT.run(redis, [key], []).catch(() => undefined);
    let eventId: number | undefined;
    try {
      eventId = await this.ledger.admit(admissionRecord(r, period));
    } catch (error) {
      await giveBack();
      throw error;
    }
    if (eventId === undefined) {
      // The ledger says the limit is reached where the counter did not: the ledger is right.
      await this.seed(key, accountId, mode, period, true).catch(() => undefined);
      return undefined;
    }
    const admitted = eventId;
    return {
      finish: async (outcome: Outcome) => {
        try {
          await this.ledger.complete(completionRecord(r, period, admitted, outcome, this.now()));
        } catch (error) {
          // Not recorded as served, so not answered as served: the ledger will record the refusal, given back.
          if (error instanceof UnrecordedOutcomeError) await giveBack();
          throw error;
        }
        if (!countsAgainstQuota(outcome.status)) await giveBack();
      },
    };
  }
}
