import type Database from "better-sqlite3";
import type { InvitationRecord, Member, Mode, UsageBreakdown } from "../store.js";

interface MemberRow { id: string; account_id: string; email: string; password_hash: string | null; created_at: string }

/**
 * The read-only questions the dashboard asks: an invitation before it is used,
 * an account's members, and where a period's requests went. The breakdown reads
 * the period's ledger rows of one account (indexed by account, mode and period).
 */
export class DashboardQueries {
  private readonly statements;

  /** `settled` resolves once every ledger write queued so far is committed, so a read sees them. */
  constructor(db: Database.Database, private readonly settled: () => Promise<unknown>) {
    this.statements = {
      invitation: db.prepare<[string], { member_id: string; expires_at: string; used_at: string | null }>(
        "SELECT member_id, expires_at, used_at FROM invitations WHERE token_hash = ?",
      ),
      members: db.prepare<[string], MemberRow>("SELECT * FROM members WHERE account_id = ? ORDER BY created_at, id"),
      byKey: db.prepare<[string, string, string], { key_id: string; requests: number; tokens: number }>(
        `SELECT key_id, COUNT(*) AS requests, SUM(prompt_tokens + completion_tokens) AS tokens FROM usage_events
         WHERE account_id = ? AND mode = ? AND period = ? GROUP BY key_id ORDER BY requests DESC, key_id`,
      ),
      byStatus: db.prepare<[string, string, string], { success: number; client_error: number; rate_limited: number; server_error: number }>(
        `SELECT COALESCE(SUM(status < 400 OR status IS NULL), 0) AS success,
                COALESCE(SUM(status >= 400 AND status < 500 AND status <> 429), 0) AS client_error,
                COALESCE(SUM(status = 429), 0) AS rate_limited,
                COALESCE(SUM(status >= 500), 0) AS server_error
         FROM usage_events WHERE account_id = ? AND mode = ? AND period = ?`,
      ),
      dailyTokens: db.prepare<[string, string, string], { day: string; tokens: number }>(
        `SELECT substr(created_at, 1, 10) AS day, SUM(prompt_tokens + completion_tokens) AS tokens FROM usage_events
         WHERE account_id = ? AND mode = ? AND period = ? GROUP BY day ORDER BY day`,
      ),
    };
  }

  async findInvitation(tokenHash: string): Promise<InvitationRecord | undefined> {
    const row = this.statements.invitation.get(tokenHash);
    return row && { memberId: row.member_id, expiresAt: row.expires_at, usedAt: row.used_at };
  }

  async listMembers(accountId: string): Promise<Member[]> {
    return this.statements.members.all(accountId).map((r) => ({
      id: r.id, accountId: r.account_id, email: r.email, passwordHash: r.password_hash, createdAt: r.created_at,
    }));
  }

  async usageBreakdown(accountId: string, mode: Mode, period: string): Promise<UsageBreakdown> {
    await this.settled();
    const status = this.statements.byStatus.get(accountId, mode, period);
    const dailyTokens: Record<string, number> = {};
    for (const row of this.statements.dailyTokens.all(accountId, mode, period)) dailyTokens[row.day] = row.tokens;
    return {
      byKey: this.statements.byKey.all(accountId, mode, period).map((r) => ({ keyId: r.key_id, requests: r.requests, tokens: r.tokens })),
      byStatus: {
        success: status?.success ?? 0, clientError: status?.client_error ?? 0,
        rateLimited: status?.rate_limited ?? 0, serverError: status?.server_error ?? 0,
      },
      dailyTokens,
    };
  }
}
