import type { Usage } from "../api/types.js";
import type { Plan } from "../gate/plans.js";
import type { Mode, Store } from "../store/store.js";
import { billingPeriod, isoSeconds } from "./billing-period.js";

/** The reference's `GET /v1/usage` object for one account and mode, this UTC month. */
export async function usageReport(store: Store, plan: Plan, accountId: string, mode: Mode, now: Date = new Date()): Promise<Usage> {
  const period = billingPeriod(now);
  const usage = await store.periodUsage(accountId, mode, period.key);
  return {
    period_start: isoSeconds(period.start),
    period_end: isoSeconds(new Date(period.next.getTime() - 1000)),
    requests_used: usage.requests,
    requests_limit: plan.requestsPerMonth,
    tokens_used: usage.tokens,
    by_specialist: usage.bySpecialist,
  };
}
