import { createHash } from "node:crypto";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { ApiError } from "../errors.js";
import type { AccountService } from "../accounts/accounts.js";
import { requestedPeriod } from "../metering/billing-period.js";
import type { AccountStore, LedgerStore, Mode, PeopleStore } from "../store/store.js";
import { dashboardRequests } from "../api/schemas/dashboard.js";
import { parseBody } from "../schema/request-errors.js";
import { breakdownJson } from "./usage-breakdown.js";
import type { People } from "../accounts/people.js";
import { checkSameOrigin, dashboardResponseHeaders, notSignedIn, readCookie, SESSION_COOKIE } from "./web-security.js";

interface PageSupportOptions {
  people: People;
  accounts: AccountService;
  stores: { accounts: AccountStore; ledger: LedgerStore; people: PeopleStore };
  /** Whether ALVEARE_ADMIN_TOKEN is set, so the sign-in page can say how to turn the operator sign-in on. */
  operatorSignIn: boolean;
}

const sha256 = (s: string): string => createHash("sha256").update(s).digest("hex");
const invalidInvitation = (): ApiError =>
  new ApiError(404, "invalid_request_error", "invitation_not_found", "This invitation link is not valid; ask for a new one.");

/**
 * What the dashboard's pages need besides the core member API: which sign-ins
 * exist, an invitation's details before a password is typed, and where a
 * member's requests went this month.
 */
export function pageSupportRoutes(options: PageSupportOptions) {
  const { people, accounts, stores } = options;
  return async (app: FastifyInstance): Promise<void> => {
    app.addHook("onRequest", dashboardResponseHeaders);

    app.get("/api/sign-in-options", async () => ({ operator_sign_in: options.operatorSignIn }));

    // POST so the token travels in a body, never in a URL that logs could keep.
    app.post("/api/invitations/check", async (request) => {
      checkSameOrigin(request);
      const invitation = await stores.people.findInvitation(sha256(parseBody(dashboardRequests.checkInvitation, request.body).token));
      const member = invitation && (await stores.people.getMember(invitation.memberId));
      const account = member && (await stores.accounts.getAccount(member.accountId));
      if (invitation === undefined || member === undefined || account === undefined) throw invalidInvitation();
      const state = invitation.usedAt !== null ? "used" : Date.parse(invitation.expiresAt) <= Date.now() ? "expired" : "valid";
      return { state, email: member.email, account_name: account.name, expires_at: invitation.expiresAt, used_at: invitation.usedAt };
    });

    app.get("/api/usage/breakdown", async (request: FastifyRequest) => {
      checkSameOrigin(request);
      const session = await people.session(readCookie(request, SESSION_COOKIE));
      const member = session?.memberId ? await people.member(session.memberId) : undefined;
      if (member === undefined) throw notSignedIn();
      const period = requestedPeriod((request.query as Record<string, string | undefined>).period).key;
      const keys = await accounts.listKeys(member.accountId);
      const of = async (mode: Mode) => breakdownJson(await stores.ledger.usageBreakdown(member.accountId, mode, period), keys);
      return { period, live: await of("live"), test: await of("test") };
    });
  };
}
