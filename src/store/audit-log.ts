/**
 * The audit log: who changed what, when, from where. Append-only from the
 * product's side: there is no way to edit or delete a record, only to prune
 * records older than the retention period. Records never hold a secret (key,
 * password, token): only ids, names, e-mails and plan names.
 */

export type AuditAction =
  | "account.created"
  | "account.plan_changed"
  | "account.suspended"
  | "account.reactivated"
  | "key.created"
  | "key.revoked"
  | "member.invited"
  | "member.joined"
  | "member.removed"
  | "sign_in.succeeded"
  | "sign_in.failed"
  | "operator.signed_in"
  | "admin_token.used"
  | "admin_token.failed";

export const AUDIT_ACTIONS: readonly AuditAction[] = [
  "account.created",
  "account.plan_changed",
  "account.suspended",
  "account.reactivated",
  "key.created",
  "key.revoked",
  "member.invited",
  "member.joined",
  "member.removed",
  "sign_in.succeeded",
  "sign_in.failed",
  "operator.signed_in",
  "admin_token.used",
  "admin_token.failed",
];

/**
 * Who acted and through which request: "operator" (admin token or operator
 * session), "member:<e-mail>", "cli", or "anonymous" (a sign-in attempt).
 */
export interface AuditContext {
  actor: string;
  /** The client address; null for the CLI. */
  source: string | null;
  requestId: string | null;
}

export interface AuditEntry {
  action: AuditAction;
  /** The account the change belongs to; its members see the record. Null for server-wide events. */
  accountId: string | null;
  /** What was acted on: "account:acct_…", "key:key_…", "member:mem_…", or a route for admin-token use. */
  target: string | null;
  /** Non-secret particulars (a plan name, a key's mode and name, an e-mail). */
  detail?: Readonly<Record<string, string>> | undefined;
}

export interface AuditRecord extends AuditEntry {
  id: number;
  /** ISO time of the event; for an aggregate, of the first event of its minute. */
  at: string;
  actor: string;
  source: string | null;
  requestId: string | null;
  /** Events this record stands for: 1, or more for an aggregate (per source address and minute). */
  count: number;
}

export interface AuditQuery {
  accountId?: string | undefined;
  action?: string | undefined;
  actor?: string | undefined;
  /** ISO times, inclusive since and exclusive until. */
  since?: string | undefined;
  until?: string | undefined;
  /** Newest first; records with ids below the cursor (the previous page's next_cursor). */
  cursor?: number | undefined;
  limit: number;
}

export interface AuditPage {
  records: AuditRecord[];
  /** Pass as `cursor` for the next (older) page; null on the last page. */
  nextCursor: number | null;
}

export interface AuditLog {
  /** Appends one record. */
  record(context: AuditContext, entry: AuditEntry): Promise<void>;
  /**
   * Counts one event into the aggregate record of its action, source address and
   * UTC minute, so a flood of failed attempts adds at most one record per minute.
   */
  count(context: AuditContext, action: AuditAction, at?: Date): Promise<void>;
  query(query: AuditQuery): Promise<AuditPage>;
  get(id: number): Promise<AuditRecord | undefined>;
  /** Deletes records older than `before` (the retention period); returns how many. */
  prune(before: Date): Promise<number>;
}

export const CLI_CONTEXT: AuditContext = { actor: "cli", source: null, requestId: null };
export const DEFAULT_AUDIT_RETENTION_DAYS = 400;
