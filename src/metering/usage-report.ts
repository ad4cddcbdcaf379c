import type { Usage } from "../api/types.js";
import type { Plan } from "../gate/plans.js";
import type { LedgerStore, Mode } from "../store/store.js";
import { billingPeriod, isoSeconds, type BillingPeriod } from "./billing-period.js";

/** The reference's `GET /v1/usage` object for one account and mode, this UTC month unless told which. */
export async function usageReport(
  ledger: LedgerStore,
  plan: Plan,
  accountId: string,
  mode: Mode,
  period: BillingPeriod = billingPeriod(),
): Promise<Usage> {
  const usage = await ledger.periodUsage(accountId, mode, period.key);
  return {
    period_start: isoSeconds(period.start),
    period_end: isoSeconds(new Date(period.next.getTime() - 1000)),
    requests_used: usage.requests,
    requests_limit: plan.requestsPerMonth,
    tokens_used: usage.tokens,
    by_specialist: usage.bySpecialist,
  };
}
