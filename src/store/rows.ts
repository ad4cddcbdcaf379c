/**
 * The tables' rows as both backends read them (the same column names and
 * ISO-text times in SQLite and PostgreSQL), and their mapping to the store's records.
 */
import type { AuditAction, AuditRecord } from "./audit-log.js";
import type { Account, ApiKeyRecord, Member, Mode, Session } from "./store.js";

export interface KeyRow {
  id: string;
  account_id: string;
  name: string | null;
  mode: Mode;
  prefix: string;
  created_at: string;
  last_used_at: string | null;
  revoked_at: string | null;
  created_by: string | null;
}
export interface AccountRow {
  id: string;
  name: string;
  plan: string;
  status: Account["status"];
  created_at: string;
}

export const toKey = (r: KeyRow): ApiKeyRecord => ({
  id: r.id,
  accountId: r.account_id,
  name: r.name,
  mode: r.mode,
  prefix: r.prefix,
  createdAt: r.created_at,
  lastUsedAt: r.last_used_at,
  revokedAt: r.revoked_at,
  createdBy: r.created_by,
});
export const toAccount = (r: AccountRow): Account => ({ id: r.id, name: r.name, plan: r.plan, status: r.status, createdAt: r.created_at });

export interface MemberRow {
  id: string;
  account_id: string;
  email: string;
  password_hash: string | null;
  created_at: string;
}
export interface SessionRow {
  token_hash: string;
  member_id: string | null;
  admin: number;
  csrf_token: string;
  expires_at: string;
  admin_token_digest: string | null;
}

export const toSession = (r: SessionRow): Session => ({
  tokenHash: r.token_hash,
  memberId: r.member_id,
  admin: r.admin === 1,
  csrfToken: r.csrf_token,
  expiresAt: r.expires_at,
  adminTokenDigest: r.admin_token_digest,
});

export const toMember = (r: MemberRow): Member => ({
  id: r.id,
  accountId: r.account_id,
  email: r.email,
  passwordHash: r.password_hash,
  createdAt: r.created_at,
});

export interface AuditRow {
  id: number;
  at: string;
  actor: string;
  action: string;
  account_id: string | null;
  target: string | null;
  detail: string | null;
  source: string | null;
  request_id: string | null;
  count: number;
}

export const toAuditRecord = (r: AuditRow): AuditRecord => ({
  id: r.id,
  at: r.at,
  actor: r.actor,
  action: r.action as AuditAction,
  accountId: r.account_id,
  target: r.target,
  detail: r.detail === null ? undefined : (JSON.parse(r.detail) as Record<string, string>),
  source: r.source,
  requestId: r.request_id,
  count: r.count,
});
