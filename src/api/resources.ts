import type { Account, ApiKeyRecord, Member } from "../store/store.js";

/**
 * The JSON shapes of accounts, keys and members, written once for the admin
 * API, the dashboard API and the CLI's --json output.
 */

export const accountJson = (a: Account) => ({ id: a.id, name: a.name, plan: a.plan, status: a.status, created_at: a.createdAt });

/** A key as listed: never the key itself. */
export const keyJson = (k: ApiKeyRecord) => ({
  id: k.id,
  account_id: k.accountId,
  name: k.name,
  mode: k.mode,
  prefix: k.prefix,
  created_at: k.createdAt,
  last_used_at: k.lastUsedAt,
  revoked_at: k.revokedAt,
  created_by: k.createdBy,
});

/** A key just created: the only answer that carries the key. */
export const createdKeyJson = (created: { record: ApiKeyRecord; key: string }) => ({ ...keyJson(created.record), key: created.key });

export const memberJson = (m: Member) => ({
  id: m.id,
  email: m.email,
  status: m.passwordHash === null ? "invited" : "active",
  created_at: m.createdAt,
});

/** An invitation link's path; the token travels in the URL fragment, which browsers never send to a server. */
export const invitationJson = (invited: { member: Member; token: string; expiresAt: string }) => ({
  member_id: invited.member.id,
  email: invited.member.email,
  invite_path: `/dashboard/#invite=${invited.token}`,
  expires_at: invited.expiresAt,
});

/** A list answer, as OpenAI writes one. */
export const listJson = <T>(data: T[]) => ({ object: "list" as const, data });

/** The answer to revoking a key. */
export const revokedKeyJson = (id: string) => ({ id, revoked: true as const });
