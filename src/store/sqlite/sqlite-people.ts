import type Database from "better-sqlite3";
import { toKey, toMember, toSession, type KeyRow, type MemberRow, type SessionRow } from "../rows.js";
import type { ApiKeyRecord, InvitationRecord, Member, PeopleStore, Session } from "../store.js";
import { whileBusy } from "./busy.js";

/** The dashboard's members, invitations and sessions in SQLite. */
export class SqlitePeopleStore implements PeopleStore {
  private readonly statements;

  constructor(
    private readonly db: Database.Database,
    /** Told when a member's removal revoked keys: the key cache on this connection must forget them. */
    private readonly keysRevoked: () => void = () => {},
  ) {
    this.statements = {
      insertMember: db.prepare(
        "INSERT INTO members (id, account_id, email, password_hash, created_at) VALUES (@id, @accountId, @email, @passwordHash, @createdAt)",
      ),
      getMember: db.prepare<[string], MemberRow>("SELECT * FROM members WHERE id = ?"),
      memberByEmail: db.prepare<[string], MemberRow>("SELECT * FROM members WHERE email = ?"),
      members: db.prepare<[string], MemberRow>("SELECT * FROM members WHERE account_id = ? ORDER BY created_at, id"),
      setPassword: db.prepare("UPDATE members SET password_hash = ? WHERE id = ?"),
      endSessionsOf: db.prepare("DELETE FROM sessions WHERE member_id = ?"),
      dropUnusedInvitations: db.prepare("DELETE FROM invitations WHERE member_id = ? AND used_at IS NULL"),
      insertInvitation: db.prepare("INSERT INTO invitations (token_hash, member_id, expires_at) VALUES (?, ?, ?)"),
      invitation: db.prepare<[string], { member_id: string; expires_at: string; used_at: string | null }>(
        "SELECT member_id, expires_at, used_at FROM invitations WHERE token_hash = ?",
      ),
      useInvitation: db
        .prepare<[string, string, string], string>(
          "UPDATE invitations SET used_at = ? WHERE token_hash = ? AND used_at IS NULL AND expires_at > ? RETURNING member_id",
        )
        .pluck(),
      insertSession: db.prepare(
        "INSERT INTO sessions (token_hash, member_id, admin, csrf_token, expires_at, admin_token_digest) " +
          "VALUES (@tokenHash, @memberId, @admin, @csrfToken, @expiresAt, @adminTokenDigest)",
      ),
      // One statement: SQLite runs it whole, before or after a password change, never across one.
      insertMemberSession: db.prepare(
        "INSERT INTO sessions (token_hash, member_id, admin, csrf_token, expires_at, admin_token_digest) " +
          "SELECT @tokenHash, id, 0, @csrfToken, @expiresAt, NULL FROM members WHERE id = @memberId AND password_hash = @passwordHash",
      ),
      findSession: db.prepare<[string, string], SessionRow>("SELECT * FROM sessions WHERE token_hash = ? AND expires_at > ?"),
      deleteSession: db.prepare("DELETE FROM sessions WHERE token_hash = ?"),
      deleteExpiredSessions: db.prepare("DELETE FROM sessions WHERE expires_at <= ?"),
      dropInvitations: db.prepare("DELETE FROM invitations WHERE member_id = ?"),
      deleteMember: db.prepare("DELETE FROM members WHERE id = ?"),
      revokeKeysOf: db.prepare<[string, string], KeyRow>(
        "UPDATE api_keys SET revoked_at = ? WHERE created_by = ? AND revoked_at IS NULL RETURNING *",
      ),
      handKeysToAccount: db.prepare("UPDATE api_keys SET created_by = NULL WHERE created_by = ?"),
    };
  }

  async createMember(member: Member): Promise<void> {
    await whileBusy(() => this.statements.insertMember.run(member));
  }

  async getMember(id: string): Promise<Member | undefined> {
    const row = await whileBusy(() => this.statements.getMember.get(id));
    return row && toMember(row);
  }

  async findMemberByEmail(email: string): Promise<Member | undefined> {
    const row = await whileBusy(() => this.statements.memberByEmail.get(email));
    return row && toMember(row);
  }

  async listMembers(accountId: string): Promise<Member[]> {
    return (await whileBusy(() => this.statements.members.all(accountId))).map(toMember);
  }

  async setMemberPassword(id: string, passwordHash: string): Promise<void> {
    await whileBusy(() =>
      this.db.transaction(() => {
        this.statements.setPassword.run(passwordHash, id);
        this.statements.endSessionsOf.run(id);
      })(),
    );
  }

  async createInvitation(tokenHash: string, memberId: string, expiresAt: string): Promise<void> {
    await whileBusy(() =>
      this.db.transaction(() => {
        this.statements.dropUnusedInvitations.run(memberId);
        this.statements.insertInvitation.run(tokenHash, memberId, expiresAt);
      })(),
    );
  }

  async findInvitation(tokenHash: string): Promise<InvitationRecord | undefined> {
    const row = await whileBusy(() => this.statements.invitation.get(tokenHash));
    return row && { memberId: row.member_id, expiresAt: row.expires_at, usedAt: row.used_at };
  }

  async useInvitation(tokenHash: string, now: string): Promise<string | undefined> {
    return whileBusy(() => this.statements.useInvitation.get(now, tokenHash, now));
  }

  async createSession(session: Session): Promise<void> {
    await whileBusy(() => this.statements.insertSession.run({ ...session, admin: session.admin ? 1 : 0 }));
  }

  async createMemberSession(session: Session & { memberId: string }, passwordHash: string): Promise<boolean> {
    const { tokenHash, memberId, csrfToken, expiresAt } = session;
    return whileBusy(() => this.statements.insertMemberSession.run({ tokenHash, memberId, csrfToken, expiresAt, passwordHash }).changes === 1);
  }

  async findSession(tokenHash: string, now: string): Promise<Session | undefined> {
    const row = await whileBusy(() => this.statements.findSession.get(tokenHash, now));
    return row && toSession(row);
  }

  async deleteSession(tokenHash: string): Promise<void> {
    await whileBusy(() => this.statements.deleteSession.run(tokenHash));
  }

  async deleteExpiredSessions(now: string): Promise<number> {
    return whileBusy(() => this.statements.deleteExpiredSessions.run(now).changes);
  }

  async deleteMember(id: string, at: string, keepKeys: boolean): Promise<ApiKeyRecord[] | undefined> {
    // IMMEDIATE: it reads before it writes, and SQLite gives a deferred transaction that has read no
    // busy wait when it then finds another process writing (a server's ledger, while the CLI removes).
    const revoked = await whileBusy(() =>
      this.db
        .transaction((): ApiKeyRecord[] | undefined => {
          if (this.statements.getMember.get(id) === undefined) return undefined;
          this.statements.endSessionsOf.run(id);
          this.statements.dropInvitations.run(id);
          let keys: ApiKeyRecord[] = [];
          if (keepKeys) this.statements.handKeysToAccount.run(id);
          else keys = this.statements.revokeKeysOf.all(at, id).map(toKey);
          this.statements.deleteMember.run(id);
          return keys;
        })
        .immediate(),
    );
    if (revoked !== undefined && revoked.length > 0) this.keysRevoked();
    return revoked;
  }
}
