import type { FastifyInstance } from "fastify";
import { requestedMode } from "../../gate/credentials.js";
import { reportedPlan } from "../../gate/plans.js";
import { requestedPeriod } from "../../metering/billing-period.js";
import { usageReport } from "../../metering/usage-report.js";
import { breakdownJson } from "../../dashboard/usage-breakdown.js";
import type { AdminApiOptions, IdParams } from "./admin-context.js";

type UsageQuery = { Querystring: { mode?: string; period?: string } };

/** An account's usage this month, and where its requests went. */
export function usageRoutes(app: FastifyInstance, { accounts, ledger, plans }: AdminApiOptions): void {
  app.get<IdParams & UsageQuery>("/accounts/:id/usage", async (request) => {
    const account = await accounts.getAccount(request.params.id);
    return usageReport(ledger, reportedPlan(plans, account), account.id, requestedMode(request.query.mode));
  });

  app.get<IdParams & UsageQuery>("/accounts/:id/usage/breakdown", async (request) => {
    const { id } = await accounts.getAccount(request.params.id);
    const mode = requestedMode(request.query.mode);
    const period = requestedPeriod(request.query.period).key;
    const breakdown = await ledger.usageBreakdown(id, mode, period);
    const daily = await ledger.dailyRequests(id, mode, period);
    return { period, mode, daily_requests: daily, ...breakdownJson(breakdown, await accounts.listKeys(id)) };
  });
}
