/**
 * The persistence boundary, in three stores by concern: accounts and their keys,
 * the usage ledger, and the dashboard's people. Callers see only these
 * interfaces (async, so a PostgreSQL implementation can sit behind them) and take
 * only the store they need; each method is one atomic unit of work in whatever
 * database implements it. `createStore` opens all three on one backend.
 */

import type { AuditLog } from "./audit-log.js";
import type { Plan } from "../gate/plans.js";

export type Mode = "live" | "test";

export interface Account {
  id: string;
  name: string;
  plan: string;
  status: "active" | "suspended";
  createdAt: string;
}

export interface ApiKeyRecord {
  id: string;
  accountId: string;
  name: string | null;
  mode: Mode;
  /** The first characters of the key, for people to recognise it; never enough to use it. */
  prefix: string;
  createdAt: string;
  lastUsedAt: string | null;
  revokedAt: string | null;
  /**
   * The member who created the key in the dashboard: it is revoked when they are removed. Null for the
   * account's own keys (made by the operator, the CLI or the admin API, or kept when their member left).
   */
  createdBy: string | null;
}

/** A key found by its hash, with what authentication needs of its account. */
export interface KeyLookup {
  key: ApiKeyRecord;
  account: Account;
}

export interface AdmissionRecord {
  requestId: string;
  accountId: string;
  keyId: string;
  mode: Mode;
  /** Billing period, "YYYY-MM" in UTC. */
  period: string;
  endpoint: string;
  specialist: string;
  /** The period's request limit; admission fails at it. */
  limit: number;
  at: string;
}

export interface CompletionRecord {
  eventId: number;
  accountId: string;
  mode: Mode;
  period: string;
  status: number;
  promptTokens: number;
  completionTokens: number;
  latencyMs: number;
  at: string;
  /**
   * The admitted row's UTC day (its created_at's date) and specialist, when the
   * caller still has them: the SQLite ledger then moves the daily aggregate
   * without reading them back from the row.
   */
  day?: string | undefined;
  specialist?: string | undefined;
}

/** What became of a key creation: the store checks the account and the cap in the same write. */
/** `no_member`: the key's creator is no longer a member of the account (removed while creating it). */
export type KeyCreation = "created" | "no_account" | "suspended" | "limit_reached" | "daily_limit_reached" | "no_member";

/** The ISO time 24 hours before `iso`: the start of the window a member's key creations are counted in. */
export const dayBefore = (iso: string): string => new Date(Date.parse(iso) - 24 * 60 * 60 * 1000).toISOString();

/** How many keys of a mode an account may hold unrevoked, and (for a member's creations) make in any 24 hours. */
export interface KeyLimits {
  unrevoked: number;
  perDay?: number | undefined;
}

export interface PeriodUsage {
  requests: number;
  tokens: number;
  bySpecialist: Record<string, number>;
}

export interface Member {
  id: string;
  accountId: string;
  email: string;
  /** scrypt hash; null until the invitation is accepted. */
  passwordHash: string | null;
  createdAt: string;
}

export interface Session {
  tokenHash: string;
  memberId: string | null;
  admin: boolean;
  csrfToken: string;
  expiresAt: string;
  /**
   * An operator session's fingerprint of the admin token it was started with (never the token):
   * the session is valid only while the server's token has the same one. Null for members.
   */
  adminTokenDigest: string | null;
}

/** An invitation as its link's page shows it before anyone types a password. */
export interface InvitationRecord {
  memberId: string;
  expiresAt: string;
  usedAt: string | null;
}

/** An invitation that may still be accepted: found, unused and not expired. */
export const acceptable = (invitation: InvitationRecord | undefined, now = Date.now()): invitation is InvitationRecord =>
  invitation !== undefined && invitation.usedAt === null && Date.parse(invitation.expiresAt) > now;

/**
 * A request refused after its key was authenticated (over a limit, a specialist
 * outside the plan): never admitted, so not in the ledger, but counted per account,
 * mode, key, code and UTC day so the dashboard's breakdowns show it.
 */
export interface RefusalRecord {
  accountId: string;
  keyId: string;
  mode: Mode;
  /** The HTTP status the client received (429, 403). */
  status: number;
  /** The catalogue code, e.g. rate_limit_exceeded. */
  code: string;
  at: string;
}

/** Where a period's requests went, refusals included: per key, per outcome, and tokens per UTC day. */
export interface UsageBreakdown {
  byKey: Array<{ keyId: string; requests: number; tokens: number }>;
  /** Outcomes clients were given; `clientClosed` (499, a client that left) counts against the quota, the other 4xx do not. */
  byStatus: { success: number; clientError: number; clientClosed: number; rateLimited: number; serverError: number };
  dailyTokens: Record<string, number>;
}

/** Accounts and their API keys: what the gate authenticates against and the operator manages. */
export interface AccountStore {
  createAccount(account: Account): Promise<void>;
  getAccount(id: string): Promise<Account | undefined>;
  listAccounts(): Promise<Account[]>;
  /** Changes an account's plan or status; false when there is no such account. */
  updateAccount(id: string, change: { plan?: string | undefined; status?: Account["status"] | undefined }): Promise<boolean>;
  /** Creates a key unless the account is missing or suspended or already has `maxUnrevoked` unrevoked keys of its mode. */
  createKey(key: ApiKeyRecord, hash: string, limits: KeyLimits): Promise<KeyCreation>;
  listKeys(accountId: string): Promise<ApiKeyRecord[]>;
  getKey(keyId: string): Promise<ApiKeyRecord | undefined>;
  /** Marks a key revoked; false when there is no such key. A revoked key fails its very next lookup. */
  revokeKey(keyId: string, at: string): Promise<boolean>;
  findKeyByHash(hash: string): Promise<KeyLookup | undefined>;
  touchKey(keyId: string, at: string): Promise<void>;
}

/** The usage ledger: admissions, their outcomes, refusals, and every report read from them. */
/**
 * A success the ledger could not record in time: its client must be refused
 * (503, the database out of reach), and the ledger records that refusal, given
 * back, once the database answers.
 */
export class UnrecordedOutcomeError extends Error {
  constructor(override readonly cause: unknown) {
    super(`the outcome could not be recorded: ${(cause as Error | undefined)?.message ?? String(cause)}`);
    this.name = "UnrecordedOutcomeError";
  }
}

export interface LedgerStore {
  /**
   * Counts one request against the period's limit and records it in the ledger,
   * atomically; returns the ledger event id, or undefined when the limit is reached.
   */
  admit(record: AdmissionRecord): Promise<number | undefined>;
  /** Completes a ledger event with its outcome; what it counts follows `countsAgainstQuota`. */
  complete(record: CompletionRecord): Promise<void>;
  /** Counts one refused request; it never counts against the quota. */
  countRefusal(record: RefusalRecord): Promise<void>;
  periodUsage(accountId: string, mode: Mode, period: string): Promise<PeriodUsage>;
  /** Requests per UTC day ("YYYY-MM-DD") in the period, as the usage chart draws them. */
  dailyRequests(accountId: string, mode: Mode, period: string): Promise<Record<string, number>>;
  usageBreakdown(accountId: string, mode: Mode, period: string): Promise<UsageBreakdown>;
}

/** The dashboard's people: members of accounts, their invitations and sessions (the operator's too). */
export interface PeopleStore {
  /** Fails when the e-mail is taken or the account does not exist. */
  createMember(member: Member): Promise<void>;
  getMember(id: string): Promise<Member | undefined>;
  findMemberByEmail(email: string): Promise<Member | undefined>;
  listMembers(accountId: string): Promise<Member[]>;
  /** Sets a member's password and ends all of the member's sessions, atomically. */
  setMemberPassword(id: string, passwordHash: string): Promise<void>;
  /** Stores the member's one live invitation: any earlier unused one stops working. */
  createInvitation(tokenHash: string, memberId: string, expiresAt: string): Promise<void>;
  findInvitation(tokenHash: string): Promise<InvitationRecord | undefined>;
  /** Marks an unexpired, unused invitation used and returns its member; undefined otherwise. */
  useInvitation(tokenHash: string, now: string): Promise<string | undefined>;
  createSession(session: Session): Promise<void>;
  /**
   * A member's session, stored only while the member's password hash is still
   * `passwordHash` (the one the sign-in checked): a reset that lands while the
   * password is checked leaves no session. False when nothing was stored
   * (password changed, or member gone).
   */
  createMemberSession(session: Session & { memberId: string }, passwordHash: string): Promise<boolean>;
  findSession(tokenHash: string, now: string): Promise<Session | undefined>;
  deleteSession(tokenHash: string): Promise<void>;
  /** Deletes the sessions expired by `now` (nothing else would: an abandoned session is never signed out); how many. */
  deleteExpiredSessions(now: string): Promise<number>;
  /**
   * Deletes a member with all of their sessions and invitations and revokes, at `at`, the unrevoked keys
   * they created, all atomically; with `keepKeys` those keys stay and become the account's own instead.
   * Returns the keys it revoked, or undefined when there is no such member.
   */
  deleteMember(id: string, at: string, keepKeys: boolean): Promise<ApiKeyRecord[] | undefined>;
}

/** The three stores of one backend, and the one way to release it. */
export interface Stores {
  accounts: AccountStore;
  ledger: LedgerStore;
  people: PeopleStore;
  /** Who changed what: append-only, in the same database. */
  audit: AuditLog;
  /**
   * The plan table the serving nodes recorded (the shared database only), for a
   * CLI given no config file, or undefined when none was; `serving` tells
   * whether a node holds a live lease now (its table is then the one in force).
   */
  recordedPlans?: (() => Promise<{ plans: Record<string, Plan>; serving: boolean } | undefined>) | undefined;
  /**
   * Resolves when the database takes writes (/ready; the shared database only): a standby, or one switched to
   * read-only, answers queries but refuses every admission.
   */
  writable?: (() => Promise<void>) | undefined;
  /** Commits what is queued, then releases the backend; the stores are unusable after. */
  close(): Promise<void>;
}
