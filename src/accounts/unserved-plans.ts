import type { Logger } from "pino";
import { findPlan, type Plan } from "../gate/plans.js";
import type { AccountStore } from "../store/store.js";

/** How many accounts are on each plan the config does not define (removed from the file while accounts were on it). */
export async function unservedPlans(accounts: AccountStore, plans: Readonly<Record<string, Plan>>): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const account of await accounts.listAccounts()) {
    if (findPlan(plans, account.plan) === undefined) counts[account.plan] = (counts[account.plan] ?? 0) + 1;
  }
  return counts;
}

/**
 * Said once at start: such accounts' keys are refused (403) on every request, which the operator would
 * otherwise learn from their users. Best effort: a failed read is no reason not to serve.
 */
export async function warnOfUnservedPlans(accounts: AccountStore, plans: Readonly<Record<string, Plan>>, logger: Logger): Promise<void> {
  const counts = await unservedPlans(accounts, plans).catch(() => ({}));
  if (Object.keys(counts).length === 0) return;
  logger.warn(
    { accounts_by_plan: counts },
    "accounts on plans this server's config does not define: their keys are refused (403) until each is moved to a served plan (`alveare accounts update ID --plan P`, or the dashboard's account page)",
  );
}
