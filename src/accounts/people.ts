import { isIP } from "node:net";
import { createHash, createHmac } from "node:crypto";
import { ApiError, errors, shortened } from "../errors.js";
import { randomBase62 } from "../ids.js";
import type { AuditAction, AuditContext } from "../store/audit-log.js";
import { acceptable, type ApiKeyRecord, type Member, type PeopleStore, type Session, type Stores } from "../store/store.js";
import { CONTROL_CHARACTER_PROBLEM, FIELD_LIMITS, hasControlCharacter, isEmailAddress } from "./bounded-fields.js";
import { FailureLog, type FailureCounter, type FailureKind, type FailureLogLimits } from "./failure-log.js";
import { checkPasswordPolicy } from "./password-policy.js";
import { Passwords, type KeyDerivation } from "./passwords.js";
import { sameSecret } from "./secrets.js";
import { keyPrefixOf } from "../gate/credentials.js";

const SESSION_MS = 12 * 60 * 60 * 1000;
const INVITATION_MS = 7 * 24 * 60 * 60 * 1000;
/** Session cookies are 43 characters; anything much longer is not worth a database lookup. */
const MAX_SESSION_TOKEN_LENGTH = 128;
const SIGN_IN_LIMITS: Readonly<FailureLogLimits> = { allowed: 5, windowMs: 15 * 60 * 1000, maxKeys: 10_000 };
/**
 * Member sign-ins are limited per e-mail and address together at SIGN_IN_LIMITS,
 * and per e-mail and per address alone at this many failures: one person's typos
 * do not lock out everyone behind the same address (a NAT, a proxy), nor does a
 * stranger lock a member out with five guesses, while spraying many e-mails from
 * one address, or one e-mail from many, is still stopped.
 */
const SPREAD_FAILURES = 30;
/** How long an attempt waits, at most, for attempts being checked to free a place, and how often it looks. */
const BUSY_WAIT_MS = 2000;
const BUSY_POLL_MS = 50;

const sha256 = (s: string): string => createHash("sha256").update(s).digest("hex");

/** The one answer to a sign-in that does not succeed for its credentials: it never says which part was wrong. */
const wrongCredentials = (): ApiError => new ApiError(401, "authentication_error", "invalid_credentials", "Wrong email or password.");

/**
 * What an operator session records of the admin token it was started with: an HMAC keyed by the
 * token over a fixed label, so the database never holds the token (nor a plain hash of it), and a
 * session is accepted only while the server runs with the same token.
 */
const adminTokenDigest = (token: string): string => createHmac("sha256", token).update("alveare operator session").digest("hex");

interface StartedSession {
  /** The cookie value; only its hash is stored. */
  token: string;
  session: Session;
}

interface PeopleOptions {
  /** Replaces scrypt itself, so tests can observe each key derivation. */
  derive?: KeyDerivation | undefined;
  /** Overrides of the sign-in failure limits (tests use a small key cap). */
  signInLimits?: Partial<FailureLogLimits> | undefined;
  /** Shared failure counters (Redis, several nodes); this process's own by default. */
  failures?: ((kind: FailureKind, limits: FailureLogLimits) => FailureCounter) | undefined;
  /**
   * How the nodes hear of keys a member's removal revoked, as for any revocation (see AccountService):
   * `ready` before the change (fails when they cannot be told), `changed` after it.
   */
  keyRevocations?: { ready?: (() => Promise<void>) | undefined; changed?: (() => Promise<void>) | undefined } | undefined;
}

/** A member removed, and the keys they had created that were revoked with them. */
export interface RemovedMember {
  member: Member;
  revokedKeys: ApiKeyRecord[];
}

/**
 * The dashboard's people: members invited into accounts, their passwords and
 * sessions, and the operator's sessions. Failed member sign-ins are limited per
 * e-mail and per client address; failed admin-token checks (operator sign-in and
 * the admin API's bearer token) per client address, on a counter of their own so
 * neither kind of guessing locks out the other.
 *
 * Sign-ins, invitations and joins go to the audit log. Failures that name no
 * known member (unknown e-mails, refusals by the limiter, wrong admin tokens)
 * are counted per client address (an IPv6 /64 whole) and minute rather than
 * recorded one by one, so a flood cannot grow the log without bound.
 */
export class People {
  /** Per e-mail and address pair. */
  private readonly memberFailures: FailureCounter;
  /** Per e-mail and per address, at the higher SPREAD_FAILURES. */
  private readonly spreadFailures: FailureCounter;
  private readonly operatorFailures: FailureCounter;
  private readonly passwords: Passwords;
  /** The current admin token's fingerprint; undefined without a token, when no operator session is valid. */
  private readonly operatorTokenDigest: string | undefined;
  private readonly keyRevocations: NonNullable<PeopleOptions["keyRevocations"]>;

  constructor(
    private readonly stores: Pick<Stores, "accounts" | "people" | "audit">,
    private readonly adminToken: string | undefined,
    options: PeopleOptions = {},
  ) {
    const limits = { ...SIGN_IN_LIMITS, ...options.signInLimits };
    const counter = options.failures ?? ((_kind, l) => new FailureLog(l));
    this.memberFailures = counter("member", limits);
    // Each address brings its e-mails along: more keys, so a flood of addresses does not push a victim's count out sooner.
    this.spreadFailures = counter("member-spread", { ...limits, allowed: Math.max(limits.allowed, SPREAD_FAILURES), maxKeys: limits.maxKeys * 4 });
    this.operatorFailures = counter("operator", limits);
    this.passwords = new Passwords(options.derive);
    this.operatorTokenDigest = adminToken === undefined || adminToken === "" ? undefined : adminTokenDigest(adminToken);
    this.keyRevocations = options.keyRevocations ?? {};
  }

  /** Creates (or re-invites) a member and returns the one-time invitation token; older invitations stop working. */
  async invite(context: AuditContext, accountId: string, email: string): Promise<{ member: Member; token: string; expiresAt: string }> {
    const normalised = normaliseEmail(email);
    if (hasControlCharacter(email)) throw errors.invalidParameter("email", CONTROL_CHARACTER_PROBLEM);
    if (!isEmailAddress(normalised)) throw errors.invalidParameter("email", "must be an email address.");
    if ((await this.stores.accounts.getAccount(accountId)) === undefined)
      throw new ApiError(404, "invalid_request_error", "not_found", `no account '${shortened(accountId)}'`);
    let member = await findMemberByEmail(this.stores.people, email, normalised);
    if (member !== undefined && member.accountId !== accountId) {
      throw errors.invalidParameter("email", "this email already belongs to another account.");
    }
    if (member === undefined) {
      member = { id: `mem_${randomBase62(16)}`, accountId, email: normalised, passwordHash: null, createdAt: new Date().toISOString() };
      await this.stores.people.createMember(member);
    }
    const token = randomBase62(40);
    const expiresAt = new Date(Date.now() + INVITATION_MS).toISOString();
    await this.stores.people.createInvitation(sha256(token), member.id, expiresAt);
    await this.stores.audit.record(context, { action: "member.invited", accountId, target: `member:${member.id}`, detail: { email: normalised } });
    return { member, token, expiresAt };
  }

  /**
   * Removes a member of an account: their sessions end and their invitations stop working at once (they are
   * looked up on every request, so on every node), and the e-mail is free to be invited again. The API keys
   * they created in the dashboard are revoked with them, as a person who leaves should take no working
   * credential along; with `keepKeys` those keys keep working as the account's own. 404 for an unknown
   * member or one of another account.
   */
  async removeMember(context: AuditContext, accountId: string, memberId: string, keepKeys = false): Promise<RemovedMember> {
    const notFound = () => errors.notFoundResource(`no member '${shortened(memberId)}' in account '${shortened(accountId)}'`);
    const member = await this.stores.people.getMember(memberId);
    if (member === undefined || member.accountId !== accountId) throw notFound();
    // Keys kept: nothing for the other nodes to hear of (sessions and invitations are looked up on every request).
    if (!keepKeys) await this.keyRevocations.ready?.();
    const revokedKeys = await this.stores.people.deleteMember(member.id, new Date().toISOString(), keepKeys);
    if (revokedKeys === undefined) throw notFound();
    // The nodes hear of the revocations first, and every audit record is tried whatever happens to the others.
    const records = [
      {
        action: "member.removed" as const,
        accountId,
        target: `member:${member.id}`,
        detail: { email: member.email, keys: keepKeys ? "kept" : `${revokedKeys.length} revoked` },
      },
      ...revokedKeys.map((key) => ({
        action: "key.revoked" as const,
        accountId,
        target: `key:${key.id}`,
        detail: { mode: key.mode, reason: `member ${member.id} removed` },
      })),
    ];
    let failure: unknown;
    try {
      if (revokedKeys.length > 0) await this.keyRevocations.changed?.();
    } catch (error) {
      failure = error;
    }
    for (const record of records) await this.stores.audit.record(context, record).catch((error: unknown) => (failure ??= error));
    if (failure !== undefined) throw failure;
    return { member, revokedKeys };
  }

  /** Sets the password of an invited member (ending the member's other sessions) and signs them in. */
  async acceptInvitation(token: string, password: string, address: string, requestId: string | null = null): Promise<StartedSession> {
    // The link first: one that cannot be accepted is said so whatever the password (the check page's answer). The
    // password next, before the invitation is used, so a refused one does not use it up.
    const tokenHash = sha256(token);
    if (token.length > FIELD_LIMITS.token || !acceptable(await this.stores.people.findInvitation(tokenHash))) throw errors.invitationNotFound();
    checkPasswordPolicy(password);
    // Used by a concurrent acceptance since it was found: the same answer.
    const memberId = await this.stores.people.useInvitation(tokenHash, new Date().toISOString());
    if (memberId === undefined) throw errors.invitationNotFound();
    const passwordHash = await this.passwords.hash(password);
    await this.stores.people.setMemberPassword(memberId, passwordHash);
    const member = await this.stores.people.getMember(memberId);
    if (member !== undefined) {
      await this.stores.audit.record(
        { actor: `member:${member.email}`, source: address, requestId },
        {
          action: "member.joined",
          accountId: member.accountId,
          target: `member:${member.id}`,
        },
      );
    }
    return this.startMemberSession(memberId, passwordHash);
  }

  async signIn(email: string, password: string, address: string, requestId: string | null = null): Promise<StartedSession> {
    const normalised = normaliseEmail(email);
    if (password.length > FIELD_LIMITS.password) throw errors.invalidParameter("password", `must be at most ${FIELD_LIMITS.password} characters.`);
    // JSON keeps the two apart whatever characters the e-mail holds.
    const from = limitedAddress(address);
    const pair = [`pair:${JSON.stringify([normalised, from])}`];
    const spread = [`email:${normalised}`, `addr:${from}`];
    const anonymous: AuditContext = { actor: "anonymous", source: address, requestId };
    // One wait for places, however many counters it spans.
    const deadline = Date.now() + BUSY_WAIT_MS;
    const attempt = await this.startAttempt(this.memberFailures, pair, anonymous, "sign_in.failed", deadline);
    let spreadAttempt: string;
    try {
      spreadAttempt = await this.startAttempt(this.spreadFailures, spread, anonymous, "sign_in.failed", deadline);
    } catch (error) {
      await Promise.resolve(this.memberFailures.settle(pair, attempt, false, Date.now())).catch(() => undefined);
      throw error;
    }
    // Both places are freed even when one counter fails to settle.
    const settle = async (failed: boolean): Promise<void> => {
      const now = Date.now();
      const settled = await Promise.allSettled([
        this.memberFailures.settle(pair, attempt, failed, now),
        this.spreadFailures.settle(spread, spreadAttempt, failed, now),
      ]);
      const failure = settled.find((s) => s.status === "rejected");
      if (failure !== undefined) throw failure.reason;
    };
    let member: Member | undefined;
    let ok: boolean;
    try {
      member = await findMemberByEmail(this.stores.people, email, normalised);
      // An unknown e-mail (or a member without a password yet) is checked against a
      // decoy hash with the same parameters, so timing does not reveal who has an account.
      ok = await this.passwords.verify(password, member?.passwordHash);
    } catch (error) {
      // Not an answer about the password: its place is freed, and nothing is counted against anyone.
      await settle(false);
      throw error;
    }
    if (member === undefined || !ok) {
      await settle(true);
      if (member === undefined) await this.countFailure(anonymous, "sign_in.failed");
      else
        await this.stores.audit.record(anonymous, {
          action: "sign_in.failed",
          accountId: member.accountId,
          target: `member:${member.id}`,
          detail: { email: member.email },
        });
      throw wrongCredentials();
    }
    // The member's failures are forgiven; the address keeps any earlier ones, and a success counts for nothing.
    await settle(false);
    await this.memberFailures.clear(pair[0]!);
    await this.spreadFailures.clear(spread[0]!);
    // The session first: one refused there (the password reset meanwhile) is no success.
    const started = await this.startMemberSession(member.id, member.passwordHash!);
    await this.stores.audit.record(
      { actor: `member:${member.email}`, source: address, requestId },
      {
        action: "sign_in.succeeded",
        accountId: member.accountId,
        target: `member:${member.id}`,
      },
    );
    return started;
  }

  async signInOperator(token: string, address: string, requestId: string | null = null): Promise<StartedSession> {
    const digest = this.operatorTokenDigest;
    if (digest === undefined) throw errors.notFound("POST", "/dashboard/api/admin-login");
    await this.checkAdminToken(token, address, requestId);
    await this.stores.audit.record(
      { actor: "operator", source: address, requestId },
      { action: "operator.signed_in", accountId: null, target: null },
    );
    return this.startOperatorSession(digest);
  }

  /**
   * 401 for a wrong admin token, 429 once the address has guessed wrong too often (even for the right token then).
   * An API key sent instead (a customer's mistake, maybe behind the operator's own NAT) gets a 401 saying so and is
   * not counted: the admin token never has a key's shape (refused at start), so it is no guess, and its answer
   * depends on nothing but what was sent.
   */
  async checkAdminToken(given: string, address: string, requestId: string | null = null): Promise<void> {
    const key = `addr:${limitedAddress(address)}`;
    const now = Date.now();
    const anonymous: AuditContext = { actor: "anonymous", source: address, requestId };
    const keyPrefix = keyPrefixOf(given);
    if (keyPrefix !== undefined) {
      await this.countFailure(anonymous, "admin_token.failed");
      throw errors.apiKeyForAdminToken(keyPrefix);
    }
    const right = this.adminToken !== undefined && given.length <= FIELD_LIMITS.token && sameSecret(given, this.adminToken);
    // The comparison is instant, so only its answer needs the limit: a wrong guess is counted (or refused) in one
    // step, and a right token is refused too while the address is locked out, so a 429 tells a guesser nothing.
    if (right) {
      const wait = await this.operatorFailures.retryAfterMs(key, now);
      if (wait <= 0) return;
      await this.countFailure(anonymous, "admin_token.failed");
      throw errors.tooManySignIns(wait);
    }
    const attempt = await this.startAttempt(this.operatorFailures, [key], anonymous, "admin_token.failed");
    await this.operatorFailures.settle([key], attempt, true, Date.now());
    await this.countFailure(anonymous, "admin_token.failed");
    throw errors.invalidAdminToken();
  }

  /**
   * Takes a place for an attempt on the keys before the secret is checked (the
   * check of the limit and the place are one step, so concurrent guesses cannot
   * all slip past it) and returns its id. 429 while any key has used up its
   * failures, until the oldest leaves the window; while only attempts still
   * being checked fill the places, waits for them a little first (sign-ins at
   * once from one office are not refused for each other). Each refusal is
   * audited as a failure.
   */
  private async startAttempt(
    log: FailureCounter,
    keys: readonly string[],
    context: AuditContext,
    action: AuditAction,
    deadline = Date.now() + BUSY_WAIT_MS,
  ): Promise<string> {
    for (;;) {
      const attempt = await log.attempt(keys, Date.now());
      if (attempt.counted) return attempt.id;
      if (!attempt.busy || Date.now() >= deadline) {
        await this.countFailure(context, action);
        throw errors.tooManySignIns(attempt.retryAfterMs);
      }
      await new Promise((resolve) => setTimeout(resolve, BUSY_POLL_MS));
    }
  }

  /**
   * Counts a failure into the audit log's aggregate of its address as the limiter sees it (an IPv6 /64 whole):
   * bucketed by the exact address, one subscriber's 2^64 addresses would each start a record of their own.
   */
  private countFailure(context: AuditContext, action: AuditAction): Promise<void> {
    return this.stores.audit.count({ ...context, source: context.source === null ? null : limitedAddress(context.source) }, action);
  }

  /** How many keys each failure log holds now (its size is capped). */
  failureLogSizes(): { member: number; memberSpread: number; operator: number } {
    return { member: this.memberFailures.size, memberSpread: this.spreadFailures.size, operator: this.operatorFailures.size };
  }

  /**
   * The session of a cookie, if it is valid. An operator session is valid only under the admin token it
   * was started with: rotating ALVEARE_ADMIN_TOKEN (or unsetting it) ends every older operator session,
   * on every node, since each node compares against its own token.
   */
  async session(token: string | undefined): Promise<Session | undefined> {
    if (token === undefined || token.length === 0 || token.length > MAX_SESSION_TOKEN_LENGTH) return undefined;
    const session = await this.stores.people.findSession(sha256(token), new Date().toISOString());
    if (session?.admin !== true) return session;
    const digest = this.operatorTokenDigest;
    return digest !== undefined && session.adminTokenDigest !== null && sameSecret(session.adminTokenDigest, digest) ? session : undefined;
  }

  async signOut(token: string): Promise<void> {
    await this.stores.people.deleteSession(sha256(token));
  }

  member(id: string): Promise<Member | undefined> {
    return this.stores.people.getMember(id);
  }

  /**
   * A member's session, only while the password just checked is still the
   * member's: one reset meanwhile (a re-invitation accepted, which ends the
   * member's sessions) or a removal gets the wrong-password 401.
   */
  private async startMemberSession(memberId: string, passwordHash: string): Promise<StartedSession> {
    const { token, session } = this.newSession(memberId, null);
    if (!(await this.stores.people.createMemberSession({ ...session, memberId }, passwordHash))) throw wrongCredentials();
    await this.dropExpiredSessions();
    return { token, session };
  }

  /** The operator's session, valid under the admin token whose fingerprint is `adminTokenDigest`. */
  private async startOperatorSession(adminTokenDigest: string): Promise<StartedSession> {
    const started = this.newSession(null, adminTokenDigest);
    await this.stores.people.createSession(started.session);
    await this.dropExpiredSessions();
    return started;
  }

  /**
   * Each sign-in clears the sessions that expired unused, so the table holds about the live ones, not every
   * sign-in ever. Best effort: the new session is stored already, and the next sign-in clears what this one could not.
   */
  private async dropExpiredSessions(): Promise<void> {
    await this.stores.people.deleteExpiredSessions(new Date().toISOString()).catch(() => undefined);
  }

  /** A member's session (`memberId`), or the operator's (`adminTokenDigest`: the token it is valid under). */
  private newSession(memberId: string | null, adminTokenDigest: string | null): StartedSession {
    const token = randomBase62(43);
    const session: Session = {
      tokenHash: sha256(token),
      memberId,
      admin: adminTokenDigest !== null,
      csrfToken: randomBase62(32),
      expiresAt: new Date(Date.now() + SESSION_MS).toISOString(),
      adminTokenDigest,
    };
    return { token, session };
  }
}

/**
 * The address failures are counted against: an IPv4 address itself (IPv4 in
 * IPv6 as IPv4), an IPv6 address by its /64, which one subscriber usually holds
 * whole (a guesser could otherwise take a fresh address for every few tries).
 */
export function limitedAddress(address: string): string {
  const groups = ipv6Groups(address);
  if (groups === undefined) return address;
  // IPv4 mapped into IPv6 (::ffff:a.b.c.d, however written) is that IPv4 address.
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return [groups[6]! >> 8, groups[6]! & 0xff, groups[7]! >> 8, groups[7]! & 0xff].join(".");
  }
  return `${groups
    .slice(0, 4)
    .map((g) => g.toString(16))
    .join(":")}::/64`;
}

/** The eight 16-bit groups of an IPv6 address (zone dropped, `::` expanded, a dotted IPv4 tail as two groups); undefined for anything else. */
function ipv6Groups(address: string): number[] | undefined {
  const bare = address.split("%")[0]!;
  if (isIP(bare) !== 6) return undefined;
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(bare);
  const hex =
    dotted === null
      ? bare
      : `${bare.slice(0, dotted.index)}${((+dotted[1]! << 8) | +dotted[2]!).toString(16)}:${((+dotted[3]! << 8) | +dotted[4]!).toString(16)}`;
  const [head = "", tail] = hex.split("::");
  const part = (text: string | undefined): number[] => (text === undefined || text === "" ? [] : text.split(":").map((g) => parseInt(g, 16)));
  const before = part(head);
  const after = part(tail);
  return tail === undefined ? before : [...before, ...Array<number>(8 - before.length - after.length).fill(0), ...after];
}

/** Trimmed, in Unicode's composed form and lower-cased; 400 beyond the longest address SMTP allows, before it is used as a key anywhere. */
function normaliseEmail(email: string): string {
  const tooLong = (): ApiError => errors.invalidParameter("email", `must be at most ${FIELD_LIMITS.email} characters.`);
  const trimmed = email.trim();
  // Before normalising (bounded work) and after (composing and lower-casing can lengthen it).
  if (trimmed.length > FIELD_LIMITS.email) throw tooLong();
  // NFC: "josé" typed with a combining accent is the same address as with a precomposed é.
  const normalised = trimmed.normalize("NFC").toLowerCase();
  if (normalised.length > FIELD_LIMITS.email) throw tooLong();
  return normalised;
}

/**
 * The member with this e-mail: by its normal form, else (members invited
 * before e-mails were composed to NFC) by the lower-cased text as typed.
 */
async function findMemberByEmail(people: Pick<PeopleStore, "findMemberByEmail">, email: string, normalised: string): Promise<Member | undefined> {
  const found = await people.findMemberByEmail(normalised);
  if (found !== undefined) return found;
  const asTyped = email.trim().toLowerCase();
  return asTyped === normalised ? undefined : people.findMemberByEmail(asTyped);
}
