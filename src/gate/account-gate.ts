import type { FastifyReply, FastifyRequest } from "fastify";
import { errors } from "../errors.js";
import { billingPeriod } from "../metering/billing-period.js";
import { refusalOf } from "../metering/refusals.js";
import type { AccountStore, LedgerStore } from "../store/store.js";
import { hashKey, keyMode } from "./api-keys.js";
import type { Admission, Caller, Endpoint, Gate, Outcome } from "./gate.js";
import { MinuteLimiter, type WindowState } from "./minute-limiter.js";
import { findPlan, planAllows, type Plan } from "./plans.js";

/** How often a key's last-used time is written: a write per request would double the ledger's load. */
const TOUCH_INTERVAL_MS = 60_000;
const BEARER = /^Bearer\s+(\S+)\s*$/i;

function setWindowHeaders(reply: FastifyReply, state: WindowState): void {
  reply.header("x-ratelimit-limit-requests", String(state.limit));
  reply.header("x-ratelimit-remaining-requests", String(state.remaining));
  reply.header("x-ratelimit-reset-requests", String(Math.ceil(state.resetMs / 1000)));
}

/**
 * The full gate: Bearer keys looked up by hash in the store, the account's plan,
 * the per-key window limit, the monthly quota per account and mode, and one
 * ledger record per admitted request.
 */
export class AccountGate implements Gate {
  private readonly touched = new Map<string, number>();

  constructor(
    private readonly keys: AccountStore,
    private readonly ledger: LedgerStore,
    private readonly plans: Readonly<Record<string, Plan>>,
    private readonly limiter = new MinuteLimiter(),
    private readonly now: () => Date = () => new Date(),
  ) {}

  planOf(caller: Caller): Plan {
    const plan = findPlan(this.plans, caller.plan);
    if (plan === undefined) throw errors.notInPlan("any", caller.plan);
    return plan;
  }

  async authenticate(request: FastifyRequest, reply: FastifyReply): Promise<Caller> {
    const header = request.headers.authorization;
    if (header === undefined || header.trim() === "") throw errors.missingApiKey();
    const token = BEARER.exec(header)?.[1];
    if (token === undefined || keyMode(token) === undefined) throw errors.malformedApiKey();
    const found = await this.keys.findKeyByHash(hashKey(token));
    if (found === undefined) throw errors.invalidApiKey();
    if (found.key.revokedAt !== null) throw errors.revokedApiKey();
    if (found.account.status !== "active") throw errors.accountSuspended();
    const caller: Caller = { accountId: found.account.id, keyId: found.key.id, mode: found.key.mode, plan: found.account.plan };
    const plan = this.planOf(caller);
    setWindowHeaders(reply, this.limiter.peek(caller.keyId, plan.requestsPerWindow, plan.windowMs));
    this.touch(caller.keyId);
    return caller;
  }

  allows(caller: Caller | undefined, specialistId: string): boolean {
    return caller !== undefined && planAllows(this.planOf(caller), specialistId);
  }

  async admit(request: FastifyRequest, reply: FastifyReply, caller: Caller | undefined, specialistId: string, endpoint: Endpoint): Promise<Admission> {
    if (caller === undefined) throw errors.missingApiKey();
    try {
      return await this.admitCaller(request, reply, caller, specialistId, endpoint);
    } catch (error) {
      // Not awaited: a lost counter under-reports the dashboard, while the client must still get its refusal.
      const refusal = refusalOf(caller, error, this.now());
      if (refusal !== undefined) this.ledger.countRefusal(refusal).catch(() => undefined);
      throw error;
    }
  }

  private async admitCaller(request: FastifyRequest, reply: FastifyReply, caller: Caller, specialistId: string, endpoint: Endpoint): Promise<Admission> {
    const plan = this.planOf(caller);
    if (!planAllows(plan, specialistId)) throw errors.notInPlan(specialistId, plan.name);
    const { state, release } = this.limiter.take(caller.keyId, plan.requestsPerWindow, plan.windowMs);
    setWindowHeaders(reply, state);
    if (!state.allowed) throw errors.rateLimited(plan.requestsPerWindow, plan.windowMs, state.retryAfterMs);
    const now = this.now();
    const period = billingPeriod(now);
    const eventId = await this.ledger.admit({
      requestId: request.id, accountId: caller.accountId, keyId: caller.keyId, mode: caller.mode, period: period.key,
      endpoint, specialist: specialistId, limit: plan.requestsPerMonth, at: now.toISOString(),
    });
    if (eventId === undefined) {
      release();
      throw errors.quotaExceeded(plan.requestsPerMonth, Math.ceil((period.next.getTime() - now.getTime()) / 1000));
    }
    return {
      finish: (outcome: Outcome) =>
        this.ledger.complete({
          eventId, accountId: caller.accountId, mode: caller.mode, period: period.key,
          status: outcome.status, promptTokens: outcome.promptTokens, completionTokens: outcome.completionTokens,
          latencyMs: outcome.latencyMs, at: this.now().toISOString(),
        }),
    };
  }

  private touch(keyId: string): void {
    const now = Date.now();
    if ((this.touched.get(keyId) ?? 0) + TOUCH_INTERVAL_MS > now) return;
    this.touched.set(keyId, now);
    void this.keys.touchKey(keyId, new Date(now).toISOString());
  }

  /** The stores belong to whoever opened them (the server), which closes them after the gate. */
  async close(): Promise<void> {}
}
