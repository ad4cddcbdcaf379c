import type { FastifyInstance } from "fastify";
import { ApiError } from "../errors.js";
import { AccountError, type AccountService } from "../accounts/accounts.js";
import { requestedMode } from "../gate/credentials.js";
import { requestedPeriod } from "../metering/billing-period.js";
import { breakdownJson } from "../dashboard/usage-breakdown.js";
import type { LedgerStore, PeopleStore } from "../store/store.js";
import { memberJson } from "../api/resources.js";

/**
 * The operator's view of one account beyond its keys: its members (and whether
 * each has accepted the invitation) and where this month's requests went.
 * Registered inside the admin API, behind its authentication.
 */
export function accountDetailRoutes(options: { accounts: AccountService; ledger: LedgerStore; peopleStore: PeopleStore }) {
  const { accounts, ledger, peopleStore } = options;
  const account = (id: string) =>
    accounts.getAccount(id).catch((error: unknown) => {
      if (error instanceof AccountError && error.notFound) throw new ApiError(404, "invalid_request_error", "not_found", error.message);
      throw error;
    });
  return (app: FastifyInstance): void => {
    app.get<{ Params: { id: string } }>("/accounts/:id/members", async (request) => {
      const { id } = await account(request.params.id);
      return { object: "list", data: (await peopleStore.listMembers(id)).map(memberJson) };
    });

    app.get<{ Params: { id: string }; Querystring: { mode?: string; period?: string } }>("/accounts/:id/usage/breakdown", async (request) => {
      const { id } = await account(request.params.id);
      const mode = requestedMode(request.query.mode);
      const period = requestedPeriod(request.query.period).key;
      const breakdown = await ledger.usageBreakdown(id, mode, period);
      const daily = await ledger.dailyRequests(id, mode, period);
      return { period, mode, daily_requests: daily, ...breakdownJson(breakdown, await accounts.listKeys(id)) };
    });
  };
}
