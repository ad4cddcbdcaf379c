import type pg from "pg";
import type { ApiKeyRecord, InvitationRecord, Member, PeopleStore, Session } from "../store.js";
import { KEY_COLUMNS } from "./pg-accounts.js";
import { inTransaction } from "./pg-pool.js";
import { holdsNul } from "./pg-text.js";
import { toKey, toMember, toSession, type KeyRow, type MemberRow, type SessionRow } from "../rows.js";

/** The dashboard's members, invitations and sessions in PostgreSQL. */
export class PgPeopleStore implements PeopleStore {
  constructor(private readonly pool: pg.Pool) {}

  async createMember(m: Member): Promise<void> {
    await this.pool.query("INSERT INTO members (id, account_id, email, password_hash, created_at) VALUES ($1, $2, $3, $4, $5)", [
      m.id,
      m.accountId,
      m.email,
      m.passwordHash,
      m.createdAt,
    ]);
  }

  async getMember(id: string): Promise<Member | undefined> {
    if (holdsNul(id)) return undefined;
    const { rows } = await this.pool.query<MemberRow>("SELECT * FROM members WHERE id = $1", [id]);
    return rows[0] && toMember(rows[0]);
  }

  async findMemberByEmail(email: string): Promise<Member | undefined> {
    // Reached before any check by an unauthenticated sign-in: such an e-mail is simply unknown.
    if (holdsNul(email)) return undefined;
    const { rows } = await this.pool.query<MemberRow>("SELECT * FROM members WHERE email = $1", [email]);
    return rows[0] && toMember(rows[0]);
  }

  async listMembers(accountId: string): Promise<Member[]> {
    if (holdsNul(accountId)) return [];
    const { rows } = await this.pool.query<MemberRow>("SELECT * FROM members WHERE account_id = $1 ORDER BY created_at, id", [accountId]);
    return rows.map(toMember);
  }

  async setMemberPassword(id: string, passwordHash: string): Promise<void> {
    await inTransaction(this.pool, async (client) => {
      await client.query("UPDATE members SET password_hash = $1 WHERE id = $2", [passwordHash, id]);
      await client.query("DELETE FROM sessions WHERE member_id = $1", [id]);
    });
  }

  async createInvitation(tokenHash: string, memberId: string, expiresAt: string): Promise<void> {
    await inTransaction(this.pool, async (client) => {
      // Two invitations of one member on two nodes at once: the second waits here and removes the first.
      await client.query("SELECT 1 FROM members WHERE id = $1 FOR UPDATE", [memberId]);
      await client.query("DELETE FROM invitations WHERE member_id = $1 AND used_at IS NULL", [memberId]);
      await client.query("INSERT INTO invitations (token_hash, member_id, expires_at) VALUES ($1, $2, $3)", [tokenHash, memberId, expiresAt]);
    });
  }

  async findInvitation(tokenHash: string): Promise<InvitationRecord | undefined> {
    const { rows } = await this.pool.query<{ member_id: string; expires_at: string; used_at: string | null }>(
      "SELECT member_id, expires_at, used_at FROM invitations WHERE token_hash = $1",
      [tokenHash],
    );
    const row = rows[0];
    return row && { memberId: row.member_id, expiresAt: row.expires_at, usedAt: row.used_at };
  }

  async useInvitation(tokenHash: string, now: string): Promise<string | undefined> {
    const { rows } = await this.pool.query<{ member_id: string }>(
      "UPDATE invitations SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1 RETURNING member_id",
      [now, tokenHash],
    );
    return rows[0]?.member_id;
  }

  async createSession(s: Session): Promise<void> {
    await this.pool.query(
      "INSERT INTO sessions (token_hash, member_id, admin, csrf_token, expires_at, admin_token_digest) VALUES ($1, $2, $3, $4, $5, $6)",
      [s.tokenHash, s.memberId, s.admin ? 1 : 0, s.csrfToken, s.expiresAt, s.adminTokenDigest],
    );
  }

  async createMemberSession(s: Session & { memberId: string }, passwordHash: string): Promise<boolean> {
    // FOR SHARE: a password change under way (its UPDATE holds the row) is waited for and its new hash read, so
    // no session is stored across it; one that starts later waits for this insert and then deletes its session.
    const { rowCount } = await this.pool.query(
      `INSERT INTO sessions (token_hash, member_id, admin, csrf_token, expires_at, admin_token_digest)
       SELECT $1, id, 0, $2, $3, NULL FROM members WHERE id = $4 AND password_hash = $5 FOR SHARE`,
      [s.tokenHash, s.csrfToken, s.expiresAt, s.memberId, passwordHash],
    );
    return rowCount === 1;
  }

  async findSession(tokenHash: string, now: string): Promise<Session | undefined> {
    const { rows } = await this.pool.query<SessionRow>("SELECT * FROM sessions WHERE token_hash = $1 AND expires_at > $2", [tokenHash, now]);
    return rows[0] && toSession(rows[0]);
  }

  async deleteSession(tokenHash: string): Promise<void> {
    await this.pool.query("DELETE FROM sessions WHERE token_hash = $1", [tokenHash]);
  }

  async deleteExpiredSessions(now: string): Promise<number> {
    return (await this.pool.query("DELETE FROM sessions WHERE expires_at <= $1", [now])).rowCount ?? 0;
  }

  async deleteMember(id: string, at: string, keepKeys: boolean): Promise<ApiKeyRecord[] | undefined> {
    if (holdsNul(id)) return undefined;
    return inTransaction(this.pool, async (client) => {
      const owner = await client.query<{ account_id: string }>("SELECT account_id FROM members WHERE id = $1", [id]);
      const accountId = owner.rows[0]?.account_id;
      if (accountId === undefined) return undefined;
      // The account's row first, as a key's creation locks it: a key this member is creating on another
      // node right now either commits before (and is revoked below) or finds no member after.
      await client.query("SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE", [accountId]);
      // Then the member: a sign-in or invitation of this member on another node waits, then finds no member.
      const found = await client.query("SELECT 1 FROM members WHERE id = $1 FOR UPDATE", [id]);
      if (found.rowCount === 0) return undefined;
      await client.query("DELETE FROM sessions WHERE member_id = $1", [id]);
      await client.query("DELETE FROM invitations WHERE member_id = $1", [id]);
      let revoked: ApiKeyRecord[] = [];
      if (keepKeys) await client.query("UPDATE api_keys SET created_by = NULL WHERE created_by = $1", [id]);
      else
        revoked = (
          await client.query<KeyRow>(`UPDATE api_keys SET revoked_at = $2 WHERE created_by = $1 AND revoked_at IS NULL RETURNING ${KEY_COLUMNS}`, [
            id,
            at,
          ])
        ).rows.map(toKey);
      await client.query("DELETE FROM members WHERE id = $1", [id]);
      return revoked;
    });
  }
}
