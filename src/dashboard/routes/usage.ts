import type { FastifyInstance } from "fastify";
import { findPlan, planAllows, reportedPlan } from "../../gate/plans.js";
import { requestedPeriod } from "../../metering/billing-period.js";
import { usageReport } from "../../metering/usage-report.js";
import type { Mode } from "../../store/store.js";
import { breakdownJson } from "../usage-breakdown.js";
import { checkSameOrigin, notSignedIn, readSessionCookie } from "../web-security.js";
import { signedInMember, type DashboardOptions } from "./member-context.js";

/** The member's usage this month (both modes, with the daily chart), where it went, and what their plan allows. */
export function usageRoutes(app: FastifyInstance, options: DashboardOptions): void {
  const { ledger, plans, people, accounts } = options;

  app.get<{ Querystring: { period?: string } }>("/api/usage", async (request) => {
    const { account } = await signedInMember(options, request);
    const period = requestedPeriod(request.query.period);
    const plan = reportedPlan(plans, account);
    const report = async (mode: Mode) => ({
      ...(await usageReport(ledger, plan, account.id, mode, period)),
      daily: await ledger.dailyRequests(account.id, mode, period.key),
    });
    // `since`: the account's first month, the earliest the month picker offers (earlier ones are empty by definition).
    return { period: period.key, since: account.createdAt.slice(0, 7), live: await report("live"), test: await report("test") };
  });

  // Where the member's requests went, by key and specialist, in both modes.
  app.get<{ Querystring: { period?: string } }>("/api/usage/breakdown", async (request) => {
    checkSameOrigin(request);
    const session = await people.session(readSessionCookie(request));
    const member = session?.memberId ? await people.member(session.memberId) : undefined;
    if (member === undefined) throw notSignedIn();
    const period = requestedPeriod(request.query.period).key;
    const keys = await accounts.listKeys(member.accountId);
    const of = async (mode: Mode) => breakdownJson(await ledger.usageBreakdown(member.accountId, mode, period), keys);
    return { period, live: await of("live"), test: await of("test") };
  });

  app.get("/api/plan", async (request) => {
    const { account } = await signedInMember(options, request);
    const plan = reportedPlan(plans, account);
    return {
      name: plan.name,
      // False for a plan the server's config no longer defines: it allows nothing until the operator moves the account.
      served: findPlan(plans, account.plan) !== undefined,
      requests_per_window: plan.requestsPerWindow,
      window_seconds: plan.windowMs / 1000,
      requests_per_month: plan.requestsPerMonth,
      // The kind says which route serves it: the Plan page shows each specialist's own call.
      specialists: options.specialists
        .filter((s) => planAllows(plan, s.id))
        .map((s) => ({ id: s.id, description: s.description, kind: s.kind ?? "generation" })),
    };
  });
}
