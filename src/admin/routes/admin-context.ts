import type { FastifyRequest } from "fastify";
import type { AccountService } from "../../accounts/accounts.js";
import type { People } from "../../accounts/people.js";
import type { Plan } from "../../gate/plans.js";
import type { AuditLog } from "../../store/audit-log.js";
import type { LedgerStore, PeopleStore } from "../../store/store.js";
import { requestContext } from "../audit-query.js";

/** What the admin API's routes work with. */
export interface AdminApiOptions {
  /** ALVEARE_ADMIN_TOKEN; without one the admin API does not exist (404). */
  token: string | undefined;
  accounts: AccountService;
  ledger: LedgerStore;
  peopleStore: PeopleStore;
  plans: Readonly<Record<string, Plan>>;
  people: People;
  audit: AuditLog;
  /**
   * ALVEARE_PUBLIC_URL: where members open the dashboard, so an invitation answer carries its whole link.
   * Unset, the link starts where the operator reached this server (the request's own origin).
   */
  publicUrl: string | undefined;
  /** Refuses a Host a DNS-rebound page would send (see dashboard/host-guard.ts); absent when there is nothing to guard. */
  checkHost?: ((request: FastifyRequest) => void) | undefined;
}

/** Every admin request acts as the operator, from its client address. */
export const operator = (request: FastifyRequest) => requestContext(request, "operator");

export type IdParams = { Params: { id: string } };
