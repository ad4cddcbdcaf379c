import type { FastifyInstance } from "fastify";
import { accountPlan, planAllows } from "../../gate/plans.js";
import { requestedPeriod } from "../../metering/billing-period.js";
import { usageReport } from "../../metering/usage-report.js";
import type { Mode } from "../../store/store.js";
import { signedInMember, type DashboardOptions } from "./member-context.js";

/** The member's usage this month (both modes, with the daily chart) and what their plan allows. */
export function usageRoutes(app: FastifyInstance, options: DashboardOptions): void {
  const { ledger, plans } = options;

  app.get<{ Querystring: { period?: string } }>("/api/usage", async (request) => {
    const { account } = await signedInMember(options, request);
    const period = requestedPeriod(request.query.period);
    const plan = accountPlan(plans, account);
    const report = async (mode: Mode) => ({
      ...(await usageReport(ledger, plan, account.id, mode, period)),
      daily: await ledger.dailyRequests(account.id, mode, period.key),
    });
    return { period: period.key, live: await report("live"), test: await report("test") };
  });

  app.get("/api/plan", async (request) => {
    const { account } = await signedInMember(options, request);
    const plan = accountPlan(plans, account);
    return {
      name: plan.name,
      requests_per_window: plan.requestsPerWindow,
      window_seconds: plan.windowMs / 1000,
      requests_per_month: plan.requestsPerMonth,
      specialists: options.specialists.filter((s) => planAllows(plan, s.id)).map((s) => ({ id: s.id, description: s.description })),
    };
  });
}
