import { createHash } from "node:crypto";
import { ApiError, errors } from "../errors.js";
import { randomBase62 } from "../server/ids.js";
import type { Member, Session, Store } from "../store/store.js";
import { hashPassword, verifyPassword } from "./passwords.js";
import { sameSecret } from "./web-security.js";

const SESSION_MS = 12 * 60 * 60 * 1000;
const INVITATION_MS = 7 * 24 * 60 * 60 * 1000;
const FAILURES_ALLOWED = 5;
const FAILURE_WINDOW_MS = 15 * 60 * 1000;
export const MIN_PASSWORD_LENGTH = 10;

const sha256 = (s: string): string => createHash("sha256").update(s).digest("hex");
const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

/** Failed sign-ins per key (an email, an address) within a sliding window. */
class FailureLog {
  private readonly failures = new Map<string, number[]>();

  recent(key: string, now: number): number[] {
    const list = (this.failures.get(key) ?? []).filter((t) => t > now - FAILURE_WINDOW_MS);
    this.failures.set(key, list);
    return list;
  }

  add(key: string, now: number): void {
    this.recent(key, now).push(now);
  }

  clear(key: string): void {
    this.failures.delete(key);
  }
}

export interface StartedSession {
  /** The cookie value; only its hash is stored. */
  token: string;
  session: Session;
}

/**
 * The dashboard's people: members invited into accounts, their passwords and
 * sessions, and the operator's sessions. Sign-in failures are limited per
 * email and per client address.
 */
export class People {
  private readonly failures = new FailureLog();

  constructor(private readonly store: Store, private readonly adminToken: string | undefined) {}

  /** Creates (or re-invites) a member and returns the one-time invitation token. */
  async invite(accountId: string, email: string): Promise<{ member: Member; token: string }> {
    const normalised = email.trim().toLowerCase();
    if (!EMAIL.test(normalised)) throw errors.invalidParameter("email", "must be an email address.");
    if ((await this.store.getAccount(accountId)) === undefined) throw new ApiError(404, "invalid_request_error", "not_found", `no account '${accountId}'`);
    let member = await this.store.findMemberByEmail(normalised);
    if (member !== undefined && member.accountId !== accountId) {
      throw errors.invalidParameter("email", "this email already belongs to another account.");
    }
    if (member === undefined) {
      member = { id: `mem_${randomBase62(16)}`, accountId, email: normalised, passwordHash: null, createdAt: new Date().toISOString() };
      await this.store.createMember(member);
    }
    const token = randomBase62(40);
    await this.store.createInvitation(sha256(token), member.id, new Date(Date.now() + INVITATION_MS).toISOString());
    return { member, token };
  }

  /** Sets the password of an invited member and signs them in. */
  async acceptInvitation(token: string, password: string): Promise<StartedSession> {
    if (password.length < MIN_PASSWORD_LENGTH) throw errors.invalidParameter("password", `must be at least ${MIN_PASSWORD_LENGTH} characters.`);
    const memberId = await this.store.useInvitation(sha256(token), new Date().toISOString());
    if (memberId === undefined) throw errors.invalidParameter("token", "this invitation is invalid, used or expired; ask for a new one.");
    await this.store.setMemberPassword(memberId, await hashPassword(password));
    return this.startSession(memberId, false);
  }

  async signIn(email: string, password: string, address: string): Promise<StartedSession> {
    const normalised = email.trim().toLowerCase();
    const now = Date.now();
    this.refuseIfLimited([`email:${normalised}`, `addr:${address}`], now);
    const member = await this.store.findMemberByEmail(normalised);
    // Verify even for unknown emails so timing does not reveal who has an account.
    const ok = await verifyPassword(password, member?.passwordHash ?? "scrypt$1024$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAA");
    if (member === undefined || member.passwordHash === null || !ok) {
      this.failures.add(`email:${normalised}`, now);
      this.failures.add(`addr:${address}`, now);
      throw new ApiError(401, "authentication_error", "invalid_credentials", "Wrong email or password.");
    }
    this.failures.clear(`email:${normalised}`);
    return this.startSession(member.id, false);
  }

  async signInOperator(token: string, address: string): Promise<StartedSession> {
    if (this.adminToken === undefined) throw errors.notFound("POST", "/dashboard/api/admin-login");
    const key = `addr:${address}`;
    const now = Date.now();
    this.refuseIfLimited([key], now);
    if (!sameSecret(token, this.adminToken)) {
      this.failures.add(key, now);
      throw errors.invalidAdminToken();
    }
    return this.startSession(null, true);
  }

  async session(token: string | undefined): Promise<Session | undefined> {
    if (token === undefined || token.length === 0) return undefined;
    return this.store.findSession(sha256(token), new Date().toISOString());
  }

  async signOut(token: string): Promise<void> {
    await this.store.deleteSession(sha256(token));
  }

  member(id: string): Promise<Member | undefined> {
    return this.store.getMember(id);
  }

  /** 429 while any of the keys has used up its failed sign-ins, until the oldest leaves the window. */
  private refuseIfLimited(keys: readonly string[], now: number): void {
    for (const key of keys) {
      const recent = this.failures.recent(key, now);
      if (recent.length >= FAILURES_ALLOWED) throw errors.tooManySignIns((recent[0] ?? now) + FAILURE_WINDOW_MS - now);
    }
  }

  private async startSession(memberId: string | null, admin: boolean): Promise<StartedSession> {
    const token = randomBase62(43);
    const session: Session = {
      tokenHash: sha256(token), memberId, admin, csrfToken: randomBase62(32), expiresAt: new Date(Date.now() + SESSION_MS).toISOString(),
    };
    await this.store.createSession(session);
    return { token, session };
  }
}
