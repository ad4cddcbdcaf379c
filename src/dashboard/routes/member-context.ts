import type { FastifyRequest } from "fastify";
import type { AccountService } from "../../accounts/accounts.js";
import type { People } from "../../accounts/people.js";
import type { Plan } from "../../gate/plans.js";
import type { SpecialistDefinition } from "../../specialists/specialist.js";
import type { AuditLog } from "../../store/audit-log.js";
import type { Account, AccountStore, LedgerStore, Member, PeopleStore, Session } from "../../store/store.js";
import { checkCsrf, notSignedIn, readSessionCookie } from "../web-security.js";

/** What the dashboard API's routes work with. */
export interface DashboardOptions {
  people: People;
  accounts: AccountService;
  ledger: LedgerStore;
  audit: AuditLog;
  plans: Readonly<Record<string, Plan>>;
  specialists: readonly SpecialistDefinition[];
  /** Read directly where an invitation is checked before anyone is signed in. */
  stores: { accounts: AccountStore; people: PeopleStore };
  /** Whether ALVEARE_ADMIN_TOKEN is set, so the sign-in page can say how to turn the operator sign-in on. */
  operatorSignIn: boolean;
  /** Refuses a Host a DNS-rebound page would send (see host-guard.ts); absent when there is nothing to guard. */
  checkHost?: ((request: FastifyRequest) => void) | undefined;
}

export type MemberSession = Session & { memberId: string };

/** The member's session, its CSRF token checked for state changes; 401 without one. */
export async function memberSession(people: People, request: FastifyRequest): Promise<MemberSession> {
  const session = await people.session(readSessionCookie(request));
  if (session === undefined || session.memberId === null) throw notSignedIn();
  checkCsrf(request, session);
  return session as MemberSession;
}

/** A session's member and account; 401 once the member is gone. */
export async function memberAccount(options: DashboardOptions, session: MemberSession): Promise<{ member: Member; account: Account }> {
  const member = await options.people.member(session.memberId);
  if (member === undefined) throw notSignedIn();
  return { member, account: await options.accounts.getAccount(member.accountId) };
}

/** The signed-in member of a request and their account: what every member route starts from. */
export const signedInMember = async (options: DashboardOptions, request: FastifyRequest) =>
  memberAccount(options, await memberSession(options.people, request));
