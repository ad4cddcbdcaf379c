import { ApiError, errors } from "../errors.js";
import { billingPeriod } from "../metering/billing-period.js";
import { countsAgainstQuota } from "../metering/counting-rule.js";
import { refusalOf } from "../metering/refusals.js";
import { UnrecordedOutcomeError, type AccountStore, type KeyLookup, type LedgerStore } from "../store/store.js";
import type { KeyCache, KeyLimits, LimitReport, LimitState, QuotaCounter, RateLimiter } from "./backends.js";
import { bearerToken, hashKey, keyMode } from "./credentials.js";
import type { AdmitDecision, AdmitOptions, AuthenticateOptions, Authentication, Caller, Endpoint, Gate, Outcome } from "./gate.js";
import { InProcessRateLimiter } from "./in-process-limiter.js";
import { findPlan, planAllows, type Plan } from "./plans.js";
import { StoreKeyCache, StoreQuotaCounter } from "./store-backends.js";

/** How often a key's last-used time is written: a write per request would double the ledger's load. */
const TOUCH_INTERVAL_MS = 60_000;

/** What the gate needs of the stores; the default parts are built on them. */
export type GateKeyStore = Pick<AccountStore, "findKeyByHash" | "touchKey">;
export type GateLedger = Pick<LedgerStore, "admit" | "complete" | "countRefusal">;

/** The replaceable parts behind the gate; the in-process ones by default. */
export interface GateParts {
  limiter: RateLimiter;
  quota: QuotaCounter;
  keys: KeyCache;
  now: () => Date;
}

/** Built once per plan object: the limits of a plan are read on every request. */
const limitsByPlan = new WeakMap<Plan, KeyLimits>();

export function limitsOf(plan: Plan): KeyLimits {
  let limits = limitsByPlan.get(plan);
  if (limits === undefined) {
    limits = Object.freeze({
      requests: Object.freeze({ limit: plan.requestsPerWindow, windowMs: plan.windowMs }),
      tokens: plan.tokensPerWindow === undefined ? undefined : Object.freeze({ limit: plan.tokensPerWindow, windowMs: plan.windowMs }),
      maxConcurrent: plan.maxConcurrentRequests,
    });
    limitsByPlan.set(plan, limits);
  }
  return limits;
}

/** A key's id (as lists show it) sent in its place. */
const KEY_ID_HINT = "That is a key's id (key_…), not the key: the key itself is shown once, when it is created.";

/** How long closing waits for admitted requests to finish (their ledger rows and limiter ends): a stalled store's timeout. */
const FINISH_WAIT_MS = 5_000;

/**
 * The full gate: Bearer keys looked up by hash, the account's plan, the
 * per-key limits (requests and tokens per window, requests at once), the
 * monthly quota per account and mode, and one ledger record per admitted
 * request. Each check runs before anything is counted, so a refusal costs
 * the caller nothing.
 */
export class AccountGate implements Gate {
  private readonly touched = new Map<string, number>();
  /** Admissions not finished yet: close() waits for them, so their ends reach the ledger and Redis before those close. */
  private unfinished = 0;
  private allFinished: (() => void) | undefined;
  private closing: Promise<void> | undefined;
  private readonly parts: GateParts;

  constructor(
    private readonly keys: GateKeyStore,
    private readonly ledger: GateLedger,
    private readonly plans: Readonly<Record<string, Plan>>,
    parts: Partial<GateParts> = {},
  ) {
    const now = parts.now ?? (() => new Date());
    this.parts = {
      limiter: parts.limiter ?? new InProcessRateLimiter(),
      quota: parts.quota ?? new StoreQuotaCounter(ledger, now),
      keys: parts.keys ?? new StoreKeyCache(keys),
      now,
    };
  }

  planOf(caller: Caller): Plan {
    const plan = findPlan(this.plans, caller.plan);
    if (plan === undefined) throw errors.planNotServed(caller.plan);
    return plan;
  }

  async authenticate(authorization: string | undefined, options: AuthenticateOptions = {}): Promise<Authentication> {
    if (authorization === undefined) throw errors.missingApiKey();
    const token = bearerToken(authorization);
    if (token === undefined || keyMode(token) === undefined) {
      // "Bearer " and nothing after it is what an unset $KEY in `-H "Authorization: Bearer $KEY"` sends.
      if (/^\s*(Bearer\s*)?$/i.test(authorization)) throw errors.missingApiKey();
      throw errors.malformedApiKey(token?.startsWith("key_") ? KEY_ID_HINT : undefined);
    }
    const keyHash = hashKey(token);
    const found = usable(await this.parts.keys.find(keyHash));
    const caller: Caller = {
      accountId: found.account.id,
      keyId: found.key.id,
      mode: found.key.mode,
      plan: found.account.plan,
      keyHash,
      authenticatedAt: performance.now(),
    };
    try {
      this.planOf(caller);
    } catch (error) {
      throw refusing(error, found);
    }
    const limits = options.limits === false ? undefined : await this.limits(caller);
    this.touch(caller.keyId);
    return { caller, limits };
  }

  async limits(caller: Caller | undefined): Promise<LimitReport | undefined> {
    if (caller === undefined) return undefined;
    return this.parts.limiter.peek(caller.keyId, limitsOf(this.planOf(caller)));
  }

  allows(caller: Caller | undefined, specialistId: string): boolean {
    return caller !== undefined && planAllows(this.planOf(caller), specialistId);
  }

  async admit(
    caller: Caller | undefined,
    specialistId: string,
    endpoint: Endpoint,
    requestId: string,
    options: AdmitOptions = {},
  ): Promise<AdmitDecision> {
    if (caller === undefined) return { admitted: false, error: errors.missingApiKey() };
    const decision = await this.decide(caller, specialistId, endpoint, requestId, options);
    if (!decision.admitted) {
      // Not awaited: a lost counter under-reports the dashboard, while the client must still get its refusal.
      const refusal = refusalOf(caller, decision.error, this.parts.now());
      if (refusal !== undefined) this.ledger.countRefusal(refusal).catch(() => undefined);
    }
    return decision;
  }

  private async decide(given: Caller, specialistId: string, endpoint: Endpoint, requestId: string, options: AdmitOptions): Promise<AdmitDecision> {
    let plan: Plan;
    let caller = given;
    try {
      caller = await this.stillValid(given);
      plan = this.planOf(caller);
    } catch (error) {
      if (error instanceof ApiError) return { admitted: false, error };
      throw error;
    }
    if (!planAllows(plan, specialistId)) return { admitted: false, error: errors.notInPlan(specialistId, plan.name) };
    const limits = limitsOf(plan);
    const asked = options.reserveTokens;
    const reservation = limits.tokens === undefined || asked === undefined ? undefined : typeof asked === "function" ? asked() : asked;
    const reserve = limits.tokens === undefined || reservation === undefined ? 0 : reservation.promptTokens + reservation.completionTokens;
    if (limits.tokens !== undefined && reservation !== undefined && reserve > limits.tokens.limit) {
      return { admitted: false, error: errors.reservationTooLarge(reservation, limits.tokens.limit, limits.tokens.windowMs) };
    }

    const now = this.parts.now();
    const quotaRequest = { requestId, caller, specialistId, endpoint, limit: plan.requestsPerMonth, at: now };
    const counter = this.parts.quota.counterStep?.(quotaRequest);
    let acquired = await this.parts.limiter.acquire(caller.keyId, limits, reserve, counter);
    if (!acquired.granted && acquired.refusedBy === "monthly") {
      const missing = acquired.counterMissing === true;
      if ((await this.parts.quota.hasRoom?.(quotaRequest, missing)) === true) {
        acquired = await this.parts.limiter.acquire(caller.keyId, limits, reserve, counter);
      }
      // Seeded, yet gone again by the limits' step (a counter lives a minute): the quota counter decides after them.
      if (!acquired.granted && acquired.refusedBy === "monthly" && acquired.counterMissing === true) {
        acquired = await this.parts.limiter.acquire(caller.keyId, limits, reserve);
      }
    }
    if (!acquired.granted && acquired.refusedBy === "monthly") {
      return { admitted: false, error: quotaExceeded(plan, now), limits: acquired.report };
    }
    if (!acquired.granted) {
      const error =
        acquired.refusedBy === "requests"
          ? errors.rateLimited(plan.requestsPerWindow, plan.windowMs, acquired.retryAfterMs)
          : acquired.refusedBy === "tokens"
            ? errors.tokenRateLimited(limits.tokens?.limit ?? 0, plan.windowMs, acquired.retryAfterMs, {
                reserved: reserve,
                left: acquired.report?.tokens?.remaining ?? 0,
                generates: (reservation?.completionTokens ?? 0) > 0,
              })
            : errors.concurrencyLimited(limits.maxConcurrent ?? 0, acquired.retryAfterMs);
      return { admitted: false, error, limits: acquired.report };
    }
    const { lease } = acquired;

    let ticket;
    try {
      ticket = await this.parts.quota.take(quotaRequest, acquired.counted === true);
    } catch (error) {
      await lease.cancel();
      throw error;
    }
    if (ticket === undefined) {
      await lease.cancel();
      // The windows as they stand without this request: its place given back, and the reset the real one
      // (the shared limiter's step reports the same when it refuses at the quota itself).
      const report = await this.parts.limiter.peek(caller.keyId, limits).catch(() => withoutRequest(acquired.report, reserve));
      return { admitted: false, error: quotaExceeded(plan, now), limits: report };
    }
    const quotaTicket = ticket;
    this.unfinished++;
    return {
      admitted: true,
      limits: acquired.report,
      admission: {
        accountId: caller.accountId,
        finish: async (outcome: Outcome) => {
          // The same rule as the ledger's: tokens of a request that does not count are not counted in the window either.
          let used = countsAgainstQuota(outcome.status) ? outcome.promptTokens + outcome.completionTokens : 0;
          try {
            await quotaTicket.finish(outcome);
          } catch (error) {
            // A success the ledger could not record is refused to its client (503) and given back: its tokens too.
            if (error instanceof UnrecordedOutcomeError) used = 0;
            throw error;
          } finally {
            try {
              await lease.settle(used);
            } finally {
              this.finished();
            }
          }
        },
      },
    };
  }

  private finished(): void {
    if (--this.unfinished === 0) this.allFinished?.();
  }

  /**
   * The caller as the key stands now, when it was checked long enough ago that
   * it may have changed: a body uploaded for seconds after a key was revoked (or
   * its account suspended, or moved to another plan) is refused, or served on
   * the new plan. A request admitted right after its check (nearly all) costs
   * nothing more.
   */
  private async stillValid(caller: Caller): Promise<Caller> {
    if (caller.keyHash === undefined || caller.authenticatedAt === undefined) return caller;
    if (performance.now() - caller.authenticatedAt < RECHECK_AFTER_MS) return caller;
    const found = usable(await this.parts.keys.find(caller.keyHash));
    return { ...caller, plan: found.account.plan, authenticatedAt: performance.now() };
  }

  private touch(keyId: string): void {
    const now = Date.now();
    if ((this.touched.get(keyId) ?? 0) + TOUCH_INTERVAL_MS > now) return;
    this.touched.set(keyId, now);
    // Best effort: a missed last-used time must never fail (or crash) the request.
    this.keys.touchKey(keyId, new Date(now).toISOString()).catch(() => undefined);
  }

  /**
   * Waits (FINISH_WAIT_MS at most) for the admitted requests still finishing. The server closes the gate once its
   * engines and connections are done, but a request cut at the drain's deadline finishes after its stream has ended:
   * Redis closed under it kept its concurrency slot and token reservation on the other nodes, unsaid, for up to a
   * lease (30 s) or a window. The stores belong to whoever opened them (the server), which closes them after the gate.
   */
  async close(): Promise<void> {
    if (this.unfinished === 0) return;
    // The timer keeps the process up while it waits: nothing else may (a SQLite node has no socket left open).
    this.closing ??= new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, FINISH_WAIT_MS);
      this.allFinished = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    await this.closing;
  }
}

/** The monthly quota's refusal: retry once the month is over. */
function quotaExceeded(plan: Plan, now: Date): ApiError {
  const secondsLeft = Math.ceil((billingPeriod(now).next.getTime() - now.getTime()) / 1000);
  return errors.quotaExceeded(plan.requestsPerMonth, secondsLeft);
}

/** How old a key check may be at admission before the key is looked up again (the key cache's lookups are cheap, not free). */
const RECHECK_AFTER_MS = 100;

/** A key found, not revoked, of an active account; the catalogue's 401 or 403 otherwise. */
function usable(found: KeyLookup | undefined): KeyLookup {
  if (found === undefined) throw errors.invalidApiKey();
  if (found.key.revokedAt !== null) throw refusing(errors.revokedApiKey(), found);
  if (found.account.status !== "active") throw refusing(errors.accountSuspended(), found);
  return found;
}

/** The refusal of a key that was found, naming its account and key for the request's log line (the client sees neither). */
function refusing(error: unknown, found: KeyLookup): unknown {
  if (error instanceof ApiError) error.refusedCaller = { accountId: found.account.id, keyId: found.key.id };
  return error;
}

/** The windows as they stand once a cancelled request's slot and tokens are back: its headers must not count it. */
function withoutRequest(report: LimitReport | undefined, tokens: number): LimitReport | undefined {
  if (report === undefined) return undefined;
  const back = (state: LimitState, n: number): LimitState => ({ ...state, remaining: Math.min(state.limit, state.remaining + n) });
  return { requests: back(report.requests, 1), tokens: report.tokens === undefined ? undefined : back(report.tokens, tokens) };
}
